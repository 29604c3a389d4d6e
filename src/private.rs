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

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The permission bits of a data file (e.g. 0o600); folders get the matching x bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode(u32);

impl FileMode {
    /// Owner read and write only: the default for everything that holds data.
    pub const PRIVATE: FileMode = FileMode(0o600);

    /// Parse an octal mode such as `"0640"`, `"640"` or `"0o640"`. The owner must be able to
    /// read and write (kasm-db rewrites and deletes its files); execute, setuid, setgid and
    /// sticky bits are refused (data files are not programs; folders get x from r).
    pub fn parse(text: &str) -> Result<FileMode, String> {
        let t = text.trim();
        let digits = t.strip_prefix("0o").unwrap_or(t);
        let bad = || format!("{text:?} is not an octal file mode like \"0600\" or \"0640\"");
        if digits.is_empty()
            || digits.len() > 4
            || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
        {
            return Err(bad());
        }
        let bits = u32::from_str_radix(digits, 8).map_err(|_| bad())?;
        if bits & !0o666 != 0 {
            return Err(format!(
                "{text:?} has execute or special bits; use read/write bits only (e.g. \"0640\"): \
                 folders get x where the file mode has r"
            ));
        }
        if bits & 0o600 != 0o600 {
            return Err(format!(
                "{text:?} does not let the owner read and write; it must include 0600"
            ));
        }
        Ok(FileMode(bits))
    }

    /// The bits for a file.
    pub fn file(self) -> u32 {
        self.0
    }

    /// The bits for a folder: the file's, plus x wherever the file has r (0640 -> 0750).
    pub fn dir(self) -> u32 {
        self.0 | ((self.0 & 0o444) >> 2)
    }
}

impl Default for FileMode {
    fn default() -> Self {
        FileMode::PRIVATE
    }
}

impl std::fmt::Display for FileMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl Serialize for FileMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for FileMode {
    /// A string (`"0640"`) or, as an environment variable arrives, a number read as octal
    /// (`KASM_DB_BACKUP_FILE_MODE=0640` is coerced to the integer 640).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = crate::config::lenient::string(d)?;
        FileMode::parse(&text).map_err(serde::de::Error::custom)
    }
}

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
    fn modes_parse_as_octal_and_folders_get_x_where_files_have_r() {
        for (text, file, dir) in [
            ("0600", 0o600, 0o700),
            ("600", 0o600, 0o700),
            ("0o640", 0o640, 0o750),
            ("0660", 0o660, 0o770),
            ("0644", 0o644, 0o755),
        ] {
            let m = FileMode::parse(text).unwrap();
            assert_eq!((m.file(), m.dir()), (file, dir), "{text}");
        }
        assert_eq!(FileMode::parse("640").unwrap().to_string(), "0640");
        for bad in [
            "",
            "0x1a4",
            "0800",
            "rw-r-----",
            "0755",
            "4600",
            "0400",
            "0060",
            "07777",
        ] {
            assert!(FileMode::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn created_modes_are_exact_and_existing_folders_keep_theirs() {
        let dir = tempfile::tempdir().unwrap();
        // (The umask is process-wide, so tests/private_files.rs sets it for the binary.)
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
