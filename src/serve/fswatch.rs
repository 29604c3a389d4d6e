//! Filesystem notifications for the follower (inotify through the `notify` crate): a file that
//! appears in a watched folder (created, or renamed into place) is opened at once, on the
//! notifier's own thread, so that its content stays readable through the handle even when the
//! writer rotates it again, and it is deleted, before the follower gets to it. Any change wakes
//! the follower, so appended lines are read without waiting for the next poll.
//!
//! It only opens and hands over; the follower decides what a file is and whether to read it.
//! It never fails the follower: without notifications (a file system that has none, the
//! inotify limits reached), the follower's periodic scan still finds everything it can.

use notify::event::{EventKind, ModifyKind, RenameMode};
use notify::{RecursiveMode, Watcher};
use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};
use tokio::sync::Notify;

/// Files opened as they appeared, and a wake-up for every change.
pub struct Watch {
    watcher: Option<notify::RecommendedWatcher>,
    dirs: HashSet<PathBuf>,
    opened: Mutex<mpsc::Receiver<(PathBuf, File)>>,
    /// Notified on every event in a watched folder.
    pub wake: Arc<Notify>,
    /// Events were lost (queue overflow, an error): scan everything now.
    rescan: Arc<AtomicBool>,
}

impl Default for Watch {
    fn default() -> Watch {
        let (tx, opened) = mpsc::channel();
        let wake = Arc::new(Notify::new());
        let rescan = Arc::new(AtomicBool::new(false));
        let (w, r) = (wake.clone(), rescan.clone());
        let handler = move |res: notify::Result<notify::Event>| {
            match res {
                Ok(ev) => {
                    if ev.need_rescan() {
                        r.store(true, Ordering::Relaxed);
                    }
                    let appeared = match ev.kind {
                        EventKind::Create(_) => ev.paths.last(),
                        EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both)) => {
                            ev.paths.last()
                        }
                        _ => None,
                    };
                    if let Some(path) = appeared {
                        if let Ok(f) = File::open(path) {
                            if f.metadata().is_ok_and(|m| m.is_file()) {
                                let _ = tx.send((path.clone(), f));
                            }
                        }
                        r.store(true, Ordering::Relaxed);
                    }
                }
                Err(_) => r.store(true, Ordering::Relaxed),
            }
            w.notify_one();
        };
        let watcher = match notify::recommended_watcher(handler) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "no filesystem notifications; following by polling only");
                None
            }
        };
        Watch {
            watcher,
            dirs: HashSet::new(),
            opened: Mutex::new(opened),
            wake,
            rescan,
        }
    }
}

impl Watch {
    /// Watch `dir` (not recursively) from now on; once per folder.
    pub fn watch_dir(&mut self, dir: &Path) {
        if self.dirs.contains(dir) {
            return;
        }
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        match w.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                self.dirs.insert(dir.to_path_buf());
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch; this folder is polled only");
                // Not retried every scan.
                self.dirs.insert(dir.to_path_buf());
            }
        }
    }

    /// The files opened since the last call (path at the time, handle), and whether a scan is due.
    pub fn take(&self) -> (Vec<(PathBuf, File)>, bool) {
        let files: Vec<_> = match self.opened.lock() {
            Ok(rx) => rx.try_iter().collect(),
            Err(_) => Vec::new(),
        };
        let rescan = self.rescan.swap(false, Ordering::Relaxed);
        (files, rescan)
    }
}
