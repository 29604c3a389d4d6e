//! What a restore shows and listens to while it runs: stage lines and a spinner on stderr (only
//! when asked for, i.e. on a terminal), and SIGINT/SIGTERM as a future the pipeline selects on,
//! so a signal stops pg_restore and drops the half-made database instead of killing the process.
//!
//! Never writes to stdout; the stage lines name databases and sizes, never a password.

use crate::error::Result;
use std::future::Future;
use std::pin::Pin;

/// Resolves when the process is asked to stop.
pub type Stop = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Resolves on SIGINT or SIGTERM; the handlers are installed when this is called, so the
/// process is no longer killed by them from then on.
pub fn interrupted() -> Result<Stop> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(Box::pin(async move {
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
    }))
}

/// Stage lines and a spinner on stderr when `show`.
pub struct Progress {
    pub bar: indicatif::ProgressBar,
}

impl Progress {
    pub fn new(show: bool) -> Progress {
        let bar = if show {
            let b = indicatif::ProgressBar::new_spinner();
            b.set_style(
                indicatif::ProgressStyle::with_template("{spinner} restore: {msg} {elapsed}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(std::time::Duration::from_millis(200));
            b
        } else {
            indicatif::ProgressBar::hidden()
        };
        Progress { bar }
    }
    pub fn stage(&self, msg: impl Into<String>) {
        let msg = msg.into();
        tracing::debug!(stage = %msg, "restore");
        self.bar.set_message(msg);
    }
    pub fn done(&self, line: impl Into<String>) {
        if !self.bar.is_hidden() {
            self.bar.println(format!("  {}", line.into()));
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
