//! The WAL stream's copies to `backup.copy_to` (issue 25): one task per copy target that keeps
//! its `wal/` caught up with the main target's ([`crate::archive::copy::copy_wal_after`]: what
//! the copy lacks, in order, object before record), every `backup.wal_flush`. A round lists
//! only the WAL after the last one copied; the first round, the first after a failed one, and
//! one every [`FULL_ROUND_EVERY`] list both targets whole (a copy emptied behind the stream's
//! back is filled again).
//!
//! The main target is the stream's: a copy target that is down never stops or slows storing
//! there (the tasks run beside the sweep and only read what it stored). While a copy is away its
//! rounds fail (one warning when it goes, one line when it is back); the next round that reaches
//! it copies every segment it missed, so its chain has no gap. When the stream stops, each copy
//! gets one last round, bounded by [`FINAL_ROUND`] so a copy that is down cannot hold the stop.
//!
//! Never writes to the main target, never deletes anything but a superseded partial copy in a
//! copy target, never logs a credential (targets are shown by their description).

use crate::archive::copy;
use crate::archive::storage::{self, Storage};
use crate::archive::target::Target;
use crate::config::Config;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often a round lists both targets whole instead of only the WAL after the last copied.
pub const FULL_ROUND_EVERY: Duration = Duration::from_secs(3600);

/// How long the stop waits for the copies' last round.
pub const FINAL_ROUND: Duration = Duration::from_secs(20);

/// The running copy tasks.
pub struct Copies {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Start one task per target in `targets`, copying from `main` every `every`.
pub fn start(
    main: Arc<dyn Storage>,
    targets: Vec<Target>,
    config: &Config,
    every: Duration,
) -> Copies {
    let (stop, rx) = watch::channel(false);
    let tasks = targets
        .into_iter()
        .map(|t| {
            let (main, config, rx) = (main.clone(), config.clone(), rx.clone());
            tokio::spawn(keep_up(main, t, config, every, rx))
        })
        .collect();
    Copies { stop, tasks }
}

impl Copies {
    /// One last round each (at most [`FINAL_ROUND`]), then stop.
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        for mut task in self.tasks {
            if tokio::time::timeout(FINAL_ROUND, &mut task).await.is_err() {
                tracing::warn!(
                    "a WAL copy target did not take the last WAL within {} s; the next stream \
                     copies what it lacks",
                    FINAL_ROUND.as_secs()
                );
                task.abort();
            }
        }
    }
}

/// Keep `target` caught up with `main` until `stop`, then one last round.
async fn keep_up(
    main: Arc<dyn Storage>,
    target: Target,
    config: Config,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut dst: Option<Arc<dyn Storage>> = None;
    let mut failing = false;
    // Where the next round starts listing (none: both targets whole), and when the last whole
    // listing was.
    let mut through: Option<String> = None;
    let mut whole_at = std::time::Instant::now();
    loop {
        let last = *stop.borrow();
        if whole_at.elapsed() >= FULL_ROUND_EVERY {
            through = None;
        }
        if through.is_none() {
            whole_at = std::time::Instant::now();
        }
        let round = async {
            if dst.is_none() {
                dst = Some(storage::open(&target, &config).await?);
            }
            let dst = dst.as_ref().expect("opened");
            copy::copy_wal_after(main.as_ref(), dst.as_ref(), through.as_deref()).await
        }
        .await;
        match round {
            Ok(done) => {
                through = done.through.clone();
                if failing {
                    tracing::info!(target = %target, files = done.files, "the WAL copy target is back; caught up");
                    failing = false;
                } else if done.files > 0 {
                    tracing::debug!(target = %target, files = done.files, "WAL copied");
                }
            }
            Err(e) => {
                through = None;
                if !failing {
                    tracing::warn!(target = %target, "copying WAL: {e}; the main target is not held up, and what this copy misses is copied when it is back");
                    failing = true;
                } else {
                    tracing::debug!(target = %target, "copying WAL: {e}");
                }
            }
        }
        if last {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            r = stop.wait_for(|s| *s) => {
                if r.is_err() {
                    return; // the stream is gone without a stop (it failed): so is this task
                }
            }
        }
    }
}
