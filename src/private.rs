//! Files that hold data are private. Backups in a directory (objects, manifests, verification
//! records, temporary files), the SIEM spool and its dead letters, and `serve`'s spool hold
//! Kasm's users, password hashes, API keys and log records, so they are created with an exact
//! mode whatever the process umask: files 0600 and folders 0700 by default, or the mode an
//! operator sets in `backup.file_mode` (for backups only; folders get an x bit for each r bit).
//!
//! The mode is set at creation (`open(2)` with the mode) and then made exact with `fchmod`, so
//! a loose umask cannot widen it and a strict one cannot narrow what the operator asked for.
//! Folders kasm-db did not create keep their mode; a world-writable one gets a warning. Never
//! changes the mode of anything outside the paths it is given, never fails a write for a mode
//! it could not set on a file it did not create (a warning says so).

use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub use crate::config::file_mode::FileMode;

/// Set `file`'s mode to exactly `bits` unless it already is; a failure (a file another user
/// owns) is a warning, since the file was not ours to change.
fn exact(file: &File, path: &Path, bits: u32) -> io::Result<()> {
    let current = file.metadata()?.permissions().mode() & 0o7777;
    if current != bits {
        if let Err(e) = file.set_permissions(Permissions::from_mode(bits)) {
            tracing::warn!(
                path = %path.display(),
                error = %e,
                "cannot set the file's mode to {bits:04o}; it keeps {current:04o}"
            );
        }
    }
    Ok(())
}

/// Open `path` with `opts`, creating it with `mode` (exactly, whatever the umask) when `opts`
/// creates; an existing file of ours is brought to `mode` too.
pub fn open(opts: &OpenOptions, path: &Path, mode: FileMode) -> io::Result<File> {
    let mut opts = opts.clone();
    opts.mode(mode.file());
    let file = opts.open(path)?;
    exact(&file, path, mode.file())?;
    Ok(file)
}

/// Create (or truncate) `path` for writing with `mode`.
pub fn create(path: &Path, mode: FileMode) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    open(&opts, path, mode)
}

/// Create `path` and any missing parents as folders with `mode.dir()` (exactly, whatever the
/// umask). Folders that exist keep their mode.
pub fn create_dir_all(path: &Path, mode: FileMode) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all(parent, mode)?;
    }
    match std::fs::DirBuilder::new().mode(mode.dir()).create(path) {
        Ok(()) => std::fs::set_permissions(path, Permissions::from_mode(mode.dir())),
        // Made by someone else in the meantime: theirs, keep its mode.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether anyone may create, and (without the sticky bit) remove, entries in `dir`.
pub fn world_writable(dir: &Path) -> bool {
    std::fs::metadata(dir).is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o002 != 0)
}

/// Warn when `dir` (which holds `what`) is world-writable: anyone on the host could plant a
/// backup or a spool file there, or remove ours. Returns whether it warned.
pub fn warn_if_world_writable(dir: &Path, what: &str) -> bool {
    if !world_writable(dir) {
        return false;
    }
    let sticky = std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o1000 != 0);
    tracing::warn!(
        dir = %dir.display(),
        "{what} {} is world-writable: anyone on this host can add files there{}; use a folder \
         only kasm-db's user can write (chmod 0700, or 0750 for a group)",
        dir.display(),
        if sticky { "" } else { " and remove kasm-db's" }
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_modes_are_exact_and_existing_folders_keep_theirs() {
        let dir = tempfile::tempdir().unwrap();
        // (The umask is process-wide, so tests/it/private_files.rs sets it for the binary.)
        let m = FileMode::parse("0640").unwrap();
        let nested = dir.path().join("a/b");
        create_dir_all(&nested, m).unwrap();
        create(&nested.join("f"), m).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&dir.path().join("a")), 0o750);
        assert_eq!(mode(&nested), 0o750);
        assert_eq!(mode(&nested.join("f")), 0o640);
        // An existing file of ours is brought to the mode.
        std::fs::set_permissions(nested.join("f"), Permissions::from_mode(0o644)).unwrap();
        let mut o = OpenOptions::new();
        o.append(true).create(true);
        open(&o, &nested.join("f"), FileMode::PRIVATE).unwrap();
        assert_eq!(mode(&nested.join("f")), 0o600);
        // A folder that exists keeps its mode.
        std::fs::set_permissions(dir.path(), Permissions::from_mode(0o777)).unwrap();
        create_dir_all(dir.path(), FileMode::PRIVATE).unwrap();
        assert_eq!(mode(dir.path()), 0o777);
        assert!(world_writable(dir.path()));
        assert!(!world_writable(&nested));
    }
}

/// An exclusive `flock` on a file in a directory, held until dropped (the kernel releases it
/// when the file closes, even on kill -9): one process per spool or staging directory.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Take the lock `dir/name` without waiting: `Ok(None)` when another process holds it.
pub fn try_lock_dir(dir: &Path, name: &str) -> io::Result<Option<DirLock>> {
    use std::os::fd::AsRawFd;
    let mut opts = OpenOptions::new();
    opts.create(true).truncate(false).write(true);
    let file = open(&opts, &dir.join(name), FileMode::PRIVATE)?;
    // SAFETY: flock on a file descriptor we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::WouldBlock {
            Ok(None)
        } else {
            Err(e)
        };
    }
    Ok(Some(DirLock { _file: file }))
}
