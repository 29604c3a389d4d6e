//! `kasm-db serve` (issue 5): the sidecar that runs next to a Kasm deployment — HTTP and HEC
//! ingest, the `[schedule]` jobs, health and metrics — until SIGTERM/SIGINT.
//!
//! This module only wires the parts together and owns the shutdown sequence: on a signal it stops
//! accepting, lets in-flight requests finish (their answers are only sent once the rows are
//! committed), stops the scheduler, and returns (exit 0) within [`SHUTDOWN_GRACE`]. It never
//! starts without a token and never serves plain HTTP when TLS was asked for (`tls.rs`).

pub mod auth;
pub mod body;
pub mod follow;
pub mod http;
pub mod jobs;
pub mod lines;
pub mod metrics;
pub mod offsets;
pub mod parse;
pub mod schedule;
pub mod spool;
pub mod store;
pub mod tls;

use crate::app::Ctx;
use crate::error::{Error, Result};
use crate::output::Outcome;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// From the signal to the process returning.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(9);

pub async fn serve(ctx: &Ctx) -> Result<Outcome> {
    let cfg = &ctx.config;
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
    let schema = cfg.database.schema.clone();
    let pool = ctx.pool(cfg.ingest.parallel.max(1) * 4 + 4).await?;
    let report = crate::db::migrate::migrate(&pool, &schema).await?;
    if !report.applied.is_empty() {
        tracing::info!(applied = ?report.applied, "schema migrated");
    }
    {
        let mut client = crate::db::get(&pool).await?;
        let classes: Vec<_> = crate::logs::record::Class::ALL
            .into_iter()
            .filter(|c| !crate::logs::partition::window(&cfg.retention, *c).is_zero())
            .collect();
        crate::logs::partitions::premake(&mut client, &schema, &classes, chrono::Utc::now())
            .await?;
    }
    let listener = tokio::net::TcpListener::bind(&cfg.server.listen)
        .await
        .map_err(|e| Error::failed(format!("cannot listen on {}: {e}", cfg.server.listen)))?;
    let metrics = Arc::new(metrics::Metrics::default());
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
    let app = Arc::new(http::App {
        store: store::Store::new(
            pool.clone(),
            schema.clone(),
            cfg.retention,
            sink.clone(),
            spool.clone(),
        ),
        token,
        max_body_bytes: usize::try_from(cfg.server.max_body_bytes).unwrap_or(usize::MAX),
        max_line_bytes: cfg.ingest.max_line_bytes,
        metrics: metrics.clone(),
        forward,
    });
    metrics.set(
        "spool_bytes",
        &[],
        spool.as_ref().map_or(0.0, |s| s.bytes() as f64),
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let env = Arc::new(jobs::JobEnv {
        pool: pool.clone(),
        target: ctx.db.clone(),
        config: cfg.clone(),
        metrics: metrics.clone(),
        runner: runner_name(),
        env: ctx.env.clone(),
    });
    let mut tasks = tokio::task::JoinSet::new();
    for job in jobs {
        tracing::info!(
            job = job.task.name(),
            cron = job.cron.pattern.to_string(),
            "scheduled (UTC)"
        );
        tasks.spawn(jobs::run_job(env.clone(), job, stop_rx.clone()));
    }
    if let Some(spool) = spool.clone() {
        tasks.spawn(load_spool(
            spool,
            pool.clone(),
            schema.clone(),
            metrics.clone(),
            stop_rx.clone(),
        ));
    }
    if !cfg.ingest.paths.is_empty() {
        let follower = follow::Follower {
            pool: pool.clone(),
            schema: schema.clone(),
            retention: cfg.retention,
            globs: cfg.ingest.paths.clone(),
            max_line_bytes: cfg.ingest.max_line_bytes,
            batch_rows: cfg.ingest.batch_rows,
            metrics: metrics.clone(),
            sink: sink.clone(),
        };
        tasks.spawn(follower.run(stop_rx.clone()));
    }

    tracing::info!(listen = %cfg.server.listen, tls = cfg.server.tls_cert.is_some(), "serving");
    let mut stopped = stop_rx.clone();
    let until_stopped = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let router = http::router(app);
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
    let stopped_at: Arc<std::sync::OnceLock<std::time::Instant>> = Arc::default();
    let stopped_at_w = stopped_at.clone();
    let signal_task = tokio::spawn(async move {
        let which = signal().await;
        let _ = stopped_at_w.set(std::time::Instant::now());
        tracing::info!(
            signal = which,
            "shutting down: no new connections, finishing requests"
        );
        let _ = stop_tx.send(true);
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
    signal_task.abort();
    // Running jobs and the follower's current batch get what is left of the grace period; their lock sessions close with them.
    let jobs_done = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(1), jobs_done)
        .await
        .is_err()
    {
        tracing::warn!("a scheduled job was still running at shutdown; it was stopped");
        tasks.abort_all();
    }
    pool.close();
    tracing::info!("stopped");
    Ok(Outcome::text(""))
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

/// Wait for SIGTERM or SIGINT; returns its name.
async fn signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

fn runner_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!("{host}:{}", std::process::id())
}
