//! The spool directory's lock: an exclusive `flock` on `spool.lock`, held for the life of the
//! open spool, so two processes never share one queue. Must never block: a held lock is an
//! immediate temporary error (exit 75).

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

/// Holds the lock until dropped (the kernel releases it when the file closes, even on kill -9).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

pub fn lock(dir: &Path) -> Result<DirLock> {
    let path = dir.join("spool.lock");
    let mut opts = OpenOptions::new();
    opts.create(true).truncate(false).write(true);
    let file = crate::private::open(&opts, &path, crate::private::FileMode::PRIVATE)
        .map_err(|e| Error::failed(format!("cannot open {}: {e}", path.display())))?;
    // SAFETY: flock on a file descriptor we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(Error::temporary(format!(
            "the SIEM spool {} is in use by another kasm-db process (lock {} is held)",
            dir.display(),
            path.display()
        )));
    }
    Ok(DirLock { _file: file })
}
