//! `kasm-db serve` (issue 5): the sidecar that runs next to a Kasm deployment — HTTP and HEC
//! ingest, the `[schedule]` jobs, health and metrics — until SIGTERM/SIGINT.
//!
//! This module only wires the parts together and owns the start-up and shutdown sequences. It
//! checks the configuration (exit 2), binds the listener (a port in use: exit 1) and serves HTTP
//! before it needs the database: `bootstrap.rs` connects, migrates and premakes partitions in the
//! background, retrying while the database is not reachable yet; until then health answers 503
//! and records go to the spool (or get 503), and the jobs, the follower and the spool loader wait
//! for it. A failure retrying will not heal (authentication, a foreign `logs` table) stops
//! `serve` with the exit code `migrate` would give.
//!
//! On a signal it stops accepting, lets in-flight requests finish (their answers are only sent
//! once the rows are committed or spooled), stops the scheduler, and returns (exit 0) within
//! [`SHUTDOWN_GRACE`], also while still waiting for the database. With `backup.wal = true` it
//! runs the WAL stream of point-in-time recovery ([`crate::wal::stream`]) as one more task. It never starts without a
//! token and never serves plain HTTP when TLS was asked for (`tls.rs`).

pub mod auth;
pub mod backup_status;
pub mod body;
pub mod bootstrap;
pub mod channels;
pub mod follow;
pub mod follow_offsets;
pub mod fswatch;
pub mod http;
pub mod identity;
pub mod jobs;
pub mod lines;
pub mod metrics;
pub mod panel;
pub mod parse;
pub mod read_api;
pub mod recovery;
pub mod schedule;
pub mod session;
pub mod slot_guard;
pub mod spool;
pub mod store;
pub mod throttle;
pub mod tls;

use crate::config::Config;
use crate::db::DbTarget;
use crate::error::{Error, Result};
use bootstrap::after_ready;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// From the signal to the process returning.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(9);

/// Connections of the read API's own pool (pages, streams between polls, exports).
const READ_POOL: usize = 4;

/// Serve with the resolved configuration `cfg` on the database `db` until a signal (`Ok`) or
/// a failure retrying cannot heal. `env` is `main.rs`'s environment snapshot (pg_dump's
/// environment and the S3 credential chain of the scheduled backup and verify).
pub async fn serve(
    cfg: &Config,
    db: &DbTarget,
    env: &std::collections::BTreeMap<String, String>,
) -> Result<()> {
    let token = cfg
        .server
        .token
        .clone()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Error::usage(
                "serve needs server.token (env KASM_DB_SERVER_TOKEN): the ingest endpoints require it",
            )
        })?;
    let read_token = cfg.server.read_token.clone().filter(|t| !t.is_empty());
    if read_token
        .as_ref()
        .is_some_and(|r| r.expose() == token.expose())
    {
        return Err(Error::usage(
            "server.read_token must differ from server.token: the ingest token must not read \
             the logs, and the read token must not write them",
        ));
    }
    let tls = match (&cfg.server.tls_cert, &cfg.server.tls_key) {
        (Some(cert), Some(key)) => Some(tls::server_config(cert, key)?),
        (None, None) => None,
        _ => {
            return Err(Error::usage(
                "server.tls_cert and server.tls_key go together: set both (TLS) or neither",
            ));
        }
    };
    let jobs = schedule::jobs(&cfg.schedule)?;
    if cfg.backup.wal && cfg.backup.to.is_none() {
        return Err(Error::usage(
            "backup.wal = true streams WAL to backup.to, which is not set",
        ));
    }
    let schema = cfg.database.schema.clone();
    // Connects on first use: the database may come up after us (see `bootstrap.rs`).
    let pool = crate::db::pool_unconnected(db, cfg.ingest.parallel.max(1) * 4 + 4)?;
    let listener = tokio::net::TcpListener::bind(&cfg.server.listen)
        .await
        .map_err(|e| Error::failed(format!("cannot listen on {}: {e}", cfg.server.listen)))?;
    let metrics = Arc::new(metrics::Metrics::default());
    metrics.set("database_up", &[], 0.0);
    let backup_status = backup_status::BackupStatus::new(cfg);
    let spool = match &cfg.server.spool_dir {
        Some(dir) => Some(Arc::new(spool::Spool::open(
            dir,
            cfg.server.spool_max_bytes,
        )?)),
        None => None,
    };
    // Records of retention-0 classes go to the SIEM when one is configured (durably spooled
    // by the forwarder before a request is answered or a file offset committed).
    let forwarder = match &cfg.siem {
        Some(siem) => Some(Arc::new(
            crate::forward::Forwarder::start(siem, Default::default()).await?,
        )),
        None => None,
    };
    let forward = forwarder
        .as_ref()
        .map(|f| (f.sink_name(), f.metrics().clone()));
    let sink = forwarder.map(|f| f as Arc<dyn crate::logs::ingest::RecordSink>);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = watch::channel(false);
    let app = Arc::new(http::App {
        store: store::Store::new(
            pool.clone(),
            schema.clone(),
            cfg.retention,
            sink.clone(),
            spool.clone(),
            ready_rx.clone(),
        ),
        token,
        max_body_bytes: usize::try_from(cfg.server.max_body_bytes).unwrap_or(usize::MAX),
        max_line_bytes: cfg.ingest.max_line_bytes,
        metrics: metrics.clone(),
        forward,
        unavailable_log: Default::default(),
        channels: Default::default(),
        backups: backup_status.clone(),
        read_token: read_token.clone(),
    });
    metrics.set(
        "spool_bytes",
        &[],
        spool.as_ref().map_or(0.0, |s| s.bytes() as f64),
    );
    // The last measured recovery time (the newest passed restore test), in the background.
    {
        let (metrics, cfg) = (metrics.clone(), cfg.clone());
        tokio::spawn(async move { recovery::load(&metrics, &cfg).await });
    }

    let mut tasks = tokio::task::JoinSet::new();
    // Bringing the database up; a failure it cannot retry away ends up in `fatal_rx`.
    let (fatal_tx, fatal_rx) = oneshot::channel::<Error>();
    let boot = bootstrap::Bootstrap {
        pool: pool.clone(),
        target: db.clone(),
        schema: schema.clone(),
        retention: cfg.retention,
        spooling: spool.is_some(),
        metrics: metrics.clone(),
    };
    let boot_stop = stop_rx.clone();
    tasks.spawn(async move {
        if let Err(e) = boot.run(ready_tx, boot_stop).await {
            let _ = fatal_tx.send(e);
        }
    });
    let env = Arc::new(jobs::JobEnv {
        pool: pool.clone(),
        target: db.clone(),
        config: cfg.clone(),
        metrics: metrics.clone(),
        runner: runner_name(),
        env: env.clone(),
        backup_status: backup_status.clone(),
        notifier: notifier(&cfg.notify, &metrics)?,
    });
    for job in jobs {
        tracing::info!(
            job = job.task.name(),
            cron = job.cron.pattern.to_string(),
            "scheduled (UTC)"
        );
        let work = jobs::run_job(env.clone(), job, stop_rx.clone());
        tasks.spawn(after_ready(ready_rx.clone(), stop_rx.clone(), work));
    }
    if let Some(spool) = spool.clone() {
        let work = load_spool(
            spool,
            pool.clone(),
            schema.clone(),
            metrics.clone(),
            stop_rx.clone(),
        );
        tasks.spawn(after_ready(ready_rx.clone(), stop_rx.clone(), work));
    }
    if !cfg.ingest.paths.is_empty() {
        let follower = follow::Follower {
            pool: pool.clone(),
            schema: schema.clone(),
            retention: cfg.retention,
            globs: cfg.ingest.paths.clone(),
            max_line_bytes: cfg.ingest.max_line_bytes,
            batch_rows: cfg.ingest.batch_rows,
            forget_after: cfg.ingest.forget_after.as_duration(),
            metrics: metrics.clone(),
            sink: sink.clone(),
        };
        let work = follower.run(stop_rx.clone());
        tasks.spawn(after_ready(ready_rx.clone(), stop_rx.clone(), work));
    }

    // The slot guard runs on every replica, streaming or not (a slot left behind is the case
    // it is for).
    {
        let work = slot_guard::watch(
            cfg.clone(),
            pool.clone(),
            db.redacted(),
            metrics.clone(),
            notifier(&cfg.notify, &metrics)?,
            stop_rx.clone(),
        );
        tasks.spawn(after_ready(ready_rx.clone(), stop_rx.clone(), work));
    }
    if cfg.backup.wal {
        let work = stream_wal(
            cfg.clone(),
            db.clone(),
            env.env.clone(),
            metrics.clone(),
            stop_rx.clone(),
        );
        tasks.spawn(after_ready(ready_rx.clone(), stop_rx.clone(), work));
    }

    let signals = Signals::install();
    // The bound address: with port 0 in `server.listen` it says which port was given.
    let bound = listener
        .local_addr()
        .map_or_else(|_| cfg.server.listen.clone(), |a| a.to_string());
    tracing::info!(listen = %bound, tls = cfg.server.tls_cert.is_some(), "serving");
    let mut stopped = stop_rx.clone();
    let until_stopped = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let read = match &read_token {
        Some(read_token) => {
            let read_app = Arc::new(read_api::ReadApp {
                pool: crate::db::pool_unconnected(db, READ_POOL)?,
                schema: schema.clone(),
                read_token: read_token.clone(),
                ingest_token: app.token.clone(),
                ready: ready_rx.clone(),
                stop: stop_rx.clone(),
            });
            // The panel and the dashboard: only with a read token too (else 404).
            let panel = Arc::new(panel::Panel {
                read: read_app.clone(),
                secure: cfg.server.tls_cert.is_some(),
                config: Arc::new(cfg.clone()),
                backups: backup_status.clone(),
                cache: Default::default(),
            });
            Some(read_api::routes(read_app).merge(panel::router(panel)))
        }
        None => None,
    };
    let router = http::router(app, read);
    let server: futures::future::BoxFuture<'static, std::io::Result<()>> = match tls {
        Some(config) => {
            let listener = tls::TlsListener::new(listener, config)?;
            Box::pin(
                axum::serve(listener, router)
                    .with_graceful_shutdown(until_stopped)
                    .into_future(),
            )
        }
        None => Box::pin(
            axum::serve(listener, router)
                .with_graceful_shutdown(until_stopped)
                .into_future(),
        ),
    };
    // When the stop began: the tasks' share of the grace period is counted from it.
    let stop_began = Arc::new(std::sync::OnceLock::new());
    let began = stop_began.clone();
    // Stops everything on a signal, or when bootstrap gave up (then returns its error).
    let stopper = tokio::spawn(async move {
        let fatal = tokio::select! {
            which = signals.recv() => {
                tracing::info!(
                    signal = which,
                    "shutting down: no new connections, finishing requests"
                );
                None
            }
            Ok(e) = fatal_rx => {
                tracing::error!(error = %e, "stopping: the database cannot be brought up");
                Some(e)
            }
        };
        let _ = began.set(std::time::Instant::now());
        let _ = stop_tx.send(true);
        fatal
    });
    let mut stopped = stop_rx.clone();
    let deadline = async move {
        let _ = stopped.wait_for(|s| *s).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        r = server => r.map_err(|e| Error::failed(format!("http server: {e}")))?,
        _ = deadline => tracing::warn!("requests still running at the shutdown deadline; stopping anyway"),
    }
    let fatal = if stopper.is_finished() {
        stopper.await.ok().flatten()
    } else {
        stopper.abort();
        None
    };
    // Running jobs, the follower's current batch and the WAL stream's last sweep (what
    // pg_receivewal received, stored) get what is left of the grace period; their lock sessions
    // close with them.
    let jobs_done = async { while tasks.join_next().await.is_some() {} };
    let left = tasks_budget(stop_began.get().map(|t| t.elapsed()));
    if tokio::time::timeout(left, jobs_done).await.is_err() {
        tracing::warn!("a scheduled job was still running at shutdown; it was stopped");
        tasks.abort_all();
    }
    pool.close();
    if let Some(e) = fatal {
        if let Some(spool) = spool.filter(|s| s.bytes() > 0) {
            tracing::warn!(
                bytes = spool.bytes(),
                "records stay in the spool; they are loaded once serve runs with a working database"
            );
        }
        return Err(e);
    }
    tracing::info!("stopped");
    Ok(())
}

/// What the running tasks get at a stop, `since_stop` after it began: the rest of
/// [`SHUTDOWN_GRACE`], and never less than a second. (It was a flat second, while the HTTP
/// server usually stops at once: the WAL stream's last sweep to a remote target was cut short,
/// leaving received WAL only in the local staging directory, which a container that is removed
/// takes with it.)
fn tasks_budget(since_stop: Option<Duration>) -> Duration {
    SHUTDOWN_GRACE
        .saturating_sub(since_stop.unwrap_or_default())
        .max(Duration::from_secs(1))
}

/// How long a replica that is not the WAL stream's leader waits before it tries again, and how
/// long after a failed stream.
const WAL_RETRY: Duration = Duration::from_secs(15);

/// `backup.wal = true`: the WAL stream of `kasm-db wal stream` ([`crate::wal::stream`]), run
/// until `stop`; one replica leads (the others try again every [`WAL_RETRY`]), a failure is
/// logged and the stream started again. `kasm_db_wal_streaming` is 1 while this replica
/// streams (from the moment it holds the leader's lock).
async fn stream_wal(
    cfg: Config,
    db: DbTarget,
    env: std::collections::BTreeMap<String, String>,
    metrics: Arc<metrics::Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(to) = cfg.backup.to.clone() else {
        return; // refused at start (`check_wal`)
    };
    let target = match crate::archive::target::Target::parse(&to) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("backup.wal: {e}");
            return;
        }
    };
    let staging = crate::wal::stream::default_staging(
        &crate::pgtools::temp_dir(&env),
        &cfg.backup.wal_slot,
        &db,
        &target,
    );
    metrics.set("wal_streaming", &[], 0.0);
    let leading = {
        let metrics = metrics.clone();
        move || metrics.set("wal_streaming", &[], 1.0)
    };
    while !*stop.borrow() {
        let spec = crate::wal::stream::StreamSpec {
            db: &db,
            config: &cfg,
            target: &target,
            staging: &staging,
            env: &env,
            leading: Some(&leading),
        };
        let mut until = stop.clone();
        let r = crate::wal::stream::stream(spec, async move {
            let _ = until.wait_for(|s| *s).await;
        })
        .await;
        metrics.set("wal_streaming", &[], 0.0);
        match r {
            Ok(_) => return,
            Err(e) if crate::db::locks::is_busy(&e) => {
                tracing::debug!("another replica streams WAL; trying again later")
            }
            Err(e) => tracing::warn!("WAL stream stopped: {e}; starting it again"),
        }
        tokio::select! {
            _ = tokio::time::sleep(WAL_RETRY) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }
}

/// Load the spool into the database whenever it holds something, until `stop`.
async fn load_spool(
    spool: Arc<spool::Spool>,
    pool: crate::db::Pool,
    schema: String,
    metrics: Arc<metrics::Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        if spool.bytes() > 0 {
            match spool.load(&pool, &schema).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(rows = n, "spooled rows loaded into the database");
                    metrics.add("spool_loaded_total", &[], n);
                }
                Err(e) => tracing::debug!(error = %e, "spool not loaded yet"),
            }
        }
        metrics.set("spool_bytes", &[], spool.bytes() as f64);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }
}

/// SIGTERM and SIGINT, caught from the moment this is made: made before "serving" is logged, so
/// that a signal sent right after is not lost to the default action.
struct Signals(std::io::Result<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>);

impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        Signals(
            signal(SignalKind::terminate()).and_then(|t| Ok((t, signal(SignalKind::interrupt())?))),
        )
    }

    /// Wait for SIGTERM or SIGINT; returns its name.
    async fn recv(self) -> &'static str {
        match self.0 {
            Ok((mut term, mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
}

/// `[notify]` for the scheduled jobs, each delivery counted in `/metrics`
/// (`kasm_db_notify_deliveries_total{job,result}`, `kasm_db_notify_failures_total{job}`).
fn notifier(
    config: &crate::config::notify::NotifyConfig,
    metrics: &Arc<metrics::Metrics>,
) -> Result<crate::notify::Notifier> {
    let m = metrics.clone();
    let count = move |job: crate::notify::Job, delivered: bool| {
        let result = if delivered { "ok" } else { "failed" };
        m.add(
            "notify_deliveries_total",
            &[("job", job.as_str()), ("result", result)],
            1,
        );
        if !delivered {
            m.add("notify_failures_total", &[("job", job.as_str())], 1);
        }
    };
    if !config.urls.is_empty() {
        use crate::notify::Job;
        for job in [Job::Backup, Job::Verify, Job::Purge, Job::Vacuum, Job::Wal] {
            metrics.add("notify_failures_total", &[("job", job.as_str())], 0);
        }
    }
    Ok(
        crate::notify::Notifier::new(config, crate::notify::host_name())?
            .with_observer(Arc::new(count)),
    )
}

fn runner_name() -> String {
    format!("{}:{}", crate::notify::host_name(), std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_get_the_rest_of_the_grace_period_and_at_least_a_second() {
        assert_eq!(tasks_budget(Some(Duration::ZERO)), SHUTDOWN_GRACE);
        assert_eq!(
            tasks_budget(Some(Duration::from_millis(500))),
            SHUTDOWN_GRACE - Duration::from_millis(500)
        );
        assert_eq!(tasks_budget(None), SHUTDOWN_GRACE);
        assert_eq!(
            tasks_budget(Some(SHUTDOWN_GRACE + Duration::from_secs(3))),
            Duration::from_secs(1)
        );
    }
}
