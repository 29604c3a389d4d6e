//! The slot guard in `serve` (issue 25): every [`EVERY`] the replication slot
//! `backup.wal_slot` is read on the database ([`crate::db::replication::slot`]) and judged
//! ([`crate::wal::guard`]); `/metrics` shows what it keeps (`kasm_db_wal_slot_retained_bytes`,
//! `kasm_db_wal_slot_active`, `kasm_db_wal_slot_ok`, labelled by the slot's name), and a problem
//! (nothing consumes it and it keeps more than `backup.wal_slot_max_retained`, or its WAL was
//! lost) is a `wal` failure notification once per episode, a `wal` success when it is over.
//!
//! Runs on every replica (the leader streams; any of them may see the slot abandoned). Never
//! drops a slot, never writes to the database; a read that fails keeps the last values.

use super::metrics::Metrics;
use crate::config::Config;
use crate::notify::{Job, Notice, Notifier};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the slot is read.
pub const EVERY: Duration = Duration::from_secs(30);

/// Watch the slot until `stop`.
pub async fn watch(
    cfg: Config,
    pool: crate::db::Pool,
    db_label: String,
    metrics: Arc<Metrics>,
    notifier: Notifier,
    mut stop: watch::Receiver<bool>,
) {
    let b = &cfg.backup;
    let slot = b.wal_slot.clone();
    let mut episode = Episode::default();
    loop {
        let read = async {
            let client = crate::db::get(&pool).await?;
            crate::db::replication::slot(&client, &slot).await
        };
        match tokio::time::timeout(Duration::from_secs(10), read).await {
            Ok(Ok(reading)) => {
                let v = crate::wal::guard::judge(&reading, &slot, b.wal_slot_max_retained, b.wal);
                let l = [("slot", slot.as_str())];
                if v.exists {
                    metrics.set(
                        "wal_slot_retained_bytes",
                        &l,
                        v.retained_bytes.unwrap_or(0) as f64,
                    );
                    metrics.set(
                        "wal_slot_active",
                        &l,
                        f64::from(u8::from(v.active == Some(true))),
                    );
                    metrics.set("wal_slot_ok", &l, f64::from(u8::from(v.problem.is_none())));
                } else {
                    for name in ["wal_slot_retained_bytes", "wal_slot_active", "wal_slot_ok"] {
                        metrics.remove(name, &l);
                    }
                }
                match episode.step(v.problem.is_some()) {
                    Some(Turn::Began) => {
                        let problem = v.problem.clone().unwrap_or_default();
                        tracing::warn!("slot guard: {problem}");
                        notify(&notifier, &db_label, Some(problem)).await;
                    }
                    Some(Turn::Ended) => {
                        tracing::info!(slot = %slot, "slot guard: the replication slot is well again");
                        notify(&notifier, &db_label, None).await;
                    }
                    None => {}
                }
            }
            Ok(Err(e)) => tracing::debug!("slot guard: cannot read the slot: {e}"),
            Err(_) => tracing::debug!("slot guard: the database did not answer within 10 s"),
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Whether a problem is going on: one notification when it begins, one when it ends, none
/// for the reads in between.
#[derive(Debug, Default)]
struct Episode {
    on: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Turn {
    Began,
    Ended,
}

impl Episode {
    fn step(&mut self, problem: bool) -> Option<Turn> {
        let turn = match (problem, self.on) {
            (true, false) => Some(Turn::Began),
            (false, true) => Some(Turn::Ended),
            _ => None,
        };
        self.on = problem;
        turn
    }
}

/// A `wal` notification: `failure` with the problem, or `success` when it is over.
async fn notify(notifier: &Notifier, db: &str, problem: Option<String>) {
    let notice = Notice {
        job: Job::Wal,
        status: if problem.is_some() {
            crate::config::notify::Event::Failure
        } else {
            crate::config::notify::Event::Success
        },
        host: crate::notify::host_name(),
        started: chrono::Utc::now(),
        duration_s: None,
        target: Some(db.to_string()),
        backup: None,
        error: problem,
    };
    notifier.send(&notice).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_notification_per_episode() {
        let mut e = Episode::default();
        let turns: Vec<Option<Turn>> = [false, true, true, true, false, false, true]
            .into_iter()
            .map(|p| e.step(p))
            .collect();
        assert_eq!(
            turns,
            [
                None,
                Some(Turn::Began),
                None,
                None,
                Some(Turn::Ended),
                None,
                Some(Turn::Began)
            ]
        );
    }
}
