//! Bringing the database up for `serve` in the background, after the listener is bound: connect,
//! migrate, premake the partitions. A transient failure (the server not started yet, restarting,
//! failing over, out of connection slots: [`crate::Error::is_transient`], i.e. `db::is_transient`) is
//! retried with backoff until it succeeds or shutdown is requested; meanwhile `serve` answers
//! health with 503 and takes records into its spool (or answers 503 without one).
//!
//! Readiness is a `watch` channel that turns true once, when the schema is current. The store,
//! health and metrics read it; the tasks that use the database (scheduled jobs, the file
//! follower, the spool loader) start only once it is true ([`after_ready`]). A failure that
//! retrying will not heal (authentication, permissions, a foreign `logs` table, a database that
//! does not exist) is returned, and `serve` stops with the exit code `migrate` would give.
//!
//! Logging: one WARN line on the first failure and at most one per [`WARN_EVERY`] after that;
//! the database is named by `DbTarget::redacted`, never with its password.

use super::metrics::Metrics;
use crate::config::RetentionConfig;
use crate::db::migrate::{self, MigrateReport};
use crate::db::{self, DbTarget, Pool, Retry};
use crate::error::Result;
use crate::logs::record::Class;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Pause after the first failed attempt; doubled after each one up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(500);
/// Longest pause between attempts: how late `serve` may notice that the database is up.
const MAX_DELAY: Duration = Duration::from_secs(5);
/// At most one WARN line per this period while waiting (the others are DEBUG).
pub const WARN_EVERY: Duration = Duration::from_secs(30);

/// What bringing the database up needs, passed explicitly.
pub struct Bootstrap {
    pub pool: Pool,
    pub target: DbTarget,
    pub schema: String,
    pub retention: RetentionConfig,
    /// Whether `server.spool_dir` is set: what the WARN line says happens meanwhile.
    pub spooling: bool,
    pub metrics: Arc<Metrics>,
}

impl Bootstrap {
    /// Retry until the database is ready (then `ready` turns true and Ok is returned), `stop`
    /// turns true (Ok, `ready` stays false), or a failure that retrying will not heal (Err).
    pub async fn run(
        self,
        ready: watch::Sender<bool>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<()> {
        let started = Instant::now();
        let mut delay = FIRST_DELAY;
        let mut warned: Option<Instant> = None;
        for attempt in 1u64.. {
            // An attempt may hang on a host that drops packets: shutdown does not wait for it.
            let result = tokio::select! {
                r = self.attempt() => r,
                _ = stop.wait_for(|s| *s) => return Ok(()),
            };
            match result {
                Ok(report) => {
                    if !report.applied.is_empty() {
                        tracing::info!(applied = ?report.applied, "schema migrated");
                    }
                    tracing::info!(
                        waited_s = started.elapsed().as_secs(),
                        attempts = attempt,
                        "database ready: storing into it; loading the spool, starting the jobs and the follower"
                    );
                    self.metrics.set("database_up", &[], 1.0);
                    ready.send_replace(true);
                    return Ok(());
                }
                Err(e) if e.is_transient() => {
                    if warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                        warned = Some(Instant::now());
                        tracing::warn!(
                            attempt,
                            waited_s = started.elapsed().as_secs(),
                            "database not ready yet ({e}); {} until it is",
                            self.meanwhile()
                        );
                    } else {
                        tracing::debug!(attempt, error = %e, "database not ready yet");
                    }
                }
                Err(e) => {
                    return Err(e.context(format!(
                        "cannot bring up the database {} (retrying will not help)",
                        self.target.redacted()
                    )));
                }
            }
            let jitter = rand::random_range(0..=delay.as_millis() as u64 / 4);
            tokio::select! {
                _ = tokio::time::sleep(delay + Duration::from_millis(jitter)) => {}
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
            delay = (delay * 2).min(MAX_DELAY);
        }
        unreachable!("the attempts never run out")
    }

    fn meanwhile(&self) -> &'static str {
        if self.spooling {
            "accepting records into the spool (server.spool_dir) and answering health with 503"
        } else {
            "answering ingest and health with 503 (no server.spool_dir)"
        }
    }

    /// One try: reach the server (TLS and authentication classified like every command's
    /// connect), migrate, premake the partitions of the classes kept in the database.
    async fn attempt(&self) -> Result<MigrateReport> {
        drop(db::connect(&self.target, Retry::once()).await?);
        let report = migrate::migrate(&self.pool, &self.schema).await?;
        let mut client = db::get(&self.pool).await?;
        let classes: Vec<Class> = Class::ALL
            .into_iter()
            .filter(|c| !crate::logs::partition_plan::window(&self.retention, *c).is_zero())
            .collect();
        crate::logs::partition_ddl::premake(
            &mut client,
            &self.schema,
            &classes,
            chrono::Utc::now(),
        )
        .await?;
        Ok(report)
    }
}

/// Run `work` once `ready` is true; never when `stop` comes first or bootstrap gave up.
/// (`work` is a future, so nothing of it runs before.)
pub async fn after_ready(
    mut ready: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
    work: impl Future<Output = ()>,
) {
    let go = tokio::select! {
        ok = async { ready.wait_for(|r| *r).await.is_ok() } => ok,
        _ = stop.wait_for(|s| *s) => false,
    };
    if go {
        work.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn flag() -> (Arc<AtomicBool>, impl Future<Output = ()>) {
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        (ran, async move { r.store(true, Ordering::SeqCst) })
    }

    #[tokio::test]
    async fn work_waits_for_ready() {
        let (ready_tx, ready) = watch::channel(false);
        let (_stop_tx, stop) = watch::channel(false);
        let (ran, work) = flag();
        let task = tokio::spawn(after_ready(ready, stop, work));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!ran.load(Ordering::SeqCst));
        ready_tx.send_replace(true);
        drop(ready_tx); // bootstrap returns after turning ready: the value stays true
        task.await.unwrap();
        assert!(ran.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn work_never_runs_when_stopped_or_bootstrap_gave_up() {
        let (_ready_tx, ready) = watch::channel(false);
        let (stop_tx, stop) = watch::channel(false);
        let (ran, work) = flag();
        let task = tokio::spawn(after_ready(ready, stop, work));
        stop_tx.send_replace(true);
        task.await.unwrap();
        assert!(!ran.load(Ordering::SeqCst));

        let (ready_tx, ready) = watch::channel(false);
        let (_stop_tx, stop) = watch::channel(false);
        let (ran, work) = flag();
        drop(ready_tx);
        after_ready(ready, stop, work).await;
        assert!(!ran.load(Ordering::SeqCst));
    }
}
