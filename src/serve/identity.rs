//! What a followed file *is*, independent of where it is: its device and inode, plus a
//! fingerprint (SHA-256) of its first bytes, which tells a reused inode or a file truncated and
//! written again from a file that only grew. Also the name rules of rotation: which names are
//! rotated copies of a followed name (`x.log.1`, `x.log-20250101`) and which are compressed.
//!
//! The fingerprint covers the first `len` bytes only (at most [`FP_MAX`]), so it stays valid
//! while the file grows; it is extended as more of the file is read. It never reads more than
//! `FP_MAX` bytes of a file and never decides what to do with a file: `follow.rs` does.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;

/// Bytes of a file's beginning that its fingerprint covers once the file is that long.
pub const FP_MAX: u64 = 1024;

/// Where a file lives on this machine, whatever its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    pub dev: u64,
    pub inode: u64,
}

impl FileId {
    pub fn of(m: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId {
            dev: m.dev(),
            inode: m.ino(),
        }
    }
}

/// SHA-256 of a file's first `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    pub len: u32,
    pub hash: [u8; 32],
}

impl Fingerprint {
    /// Of no bytes: every file starts like this (no information).
    pub fn empty() -> Fingerprint {
        Fingerprint::of(&[])
    }

    pub fn of(bytes: &[u8]) -> Fingerprint {
        Fingerprint {
            len: bytes.len() as u32,
            hash: Sha256::digest(bytes).into(),
        }
    }

    /// Rebuild from what the database holds (None when the hash is not 32 bytes).
    pub fn from_parts(len: i32, hash: &[u8]) -> Option<Fingerprint> {
        Some(Fingerprint {
            len: u32::try_from(len).ok()?,
            hash: hash.try_into().ok()?,
        })
    }

    /// Whether `file` (still) starts with the bytes this fingerprint was taken of.
    pub fn matches(&self, file: &File) -> std::io::Result<bool> {
        Ok(head(file, self.len as u64)?.is_some_and(|b| Fingerprint::of(&b) == *self))
    }

    /// The fingerprint of `file`'s first `upto` bytes (at most [`FP_MAX`]), provided the file
    /// still starts with the bytes of `self`; None when it does not (truncated, rewritten).
    pub fn extend(&self, file: &File, upto: u64) -> std::io::Result<Option<Fingerprint>> {
        let n = upto.min(FP_MAX).max(self.len as u64);
        let Some(bytes) = head(file, n)? else {
            return Ok(None);
        };
        if Fingerprint::of(&bytes[..self.len as usize]) != *self {
            return Ok(None);
        }
        Ok(Some(Fingerprint::of(&bytes)))
    }
}

/// The first `n` bytes of `file`, or None when it is shorter.
fn head(file: &File, n: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0; n as usize];
    match file.read_exact_at(&mut buf, 0) {
        Ok(()) => Ok(Some(buf)),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

const COMPRESSED: &[&str] = &[".gz", ".bz2", ".xz", ".zst", ".lz4", ".z", ".zip"];

/// A compressed file's name (logrotate's `compress`, or by hand).
pub fn is_compressed(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    COMPRESSED.iter().any(|ext| lower.ends_with(ext))
}

/// Whether a glob names compressed files itself (`*.gz`, `x.log.*.gz`): only then are they read.
pub fn glob_names_compressed(glob: &str) -> bool {
    let last = glob.rsplit('/').next().unwrap_or(glob);
    is_compressed(last)
}

/// Whether `name` is a rotated copy of `base`: `base` followed by `.`, `-` or `_` and more
/// (`x.log.1`, `x.log.1.gz`, `x.log-20250101`, `x.log_old`).
pub fn rotated_name_of(base: &str, name: &str) -> bool {
    name.strip_prefix(base)
        .and_then(|rest| rest.strip_prefix(['.', '-', '_']))
        .is_some_and(|rest| !rest.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn rotated_and_compressed_names() {
        assert!(rotated_name_of("api_json.log", "api_json.log.1"));
        assert!(rotated_name_of("api_json.log", "api_json.log.12.gz"));
        assert!(rotated_name_of("api_json.log", "api_json.log-20250101"));
        assert!(!rotated_name_of("api_json.log", "api_json.log"));
        assert!(!rotated_name_of("api_json.log", "api_json.log."));
        assert!(!rotated_name_of("api_json.log", "api_json.logs"));
        assert!(!rotated_name_of("api_json.log", "other_json.log.1"));
        assert!(is_compressed("x.log.2.gz") && is_compressed("x.log.2.XZ"));
        assert!(!is_compressed("x.log.2") && !is_compressed("x_gz.log"));
        assert!(glob_names_compressed("/var/log/*.log.*.gz"));
        assert!(!glob_names_compressed("/var/log/*_json.log*"));
        assert!(!glob_names_compressed("/data.gz/*.log"));
    }

    #[test]
    fn fingerprints_follow_growth_and_see_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"first line\n").unwrap();
        let f = File::open(&path).unwrap();
        let short = Fingerprint::empty().extend(&f, 11).unwrap().unwrap();
        assert_eq!(short.len, 11);
        assert!(short.matches(&f).unwrap());
        // Growing keeps it valid and lets it cover more, up to FP_MAX.
        let mut w = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        w.write_all(&[b'x'; 2000]).unwrap();
        assert!(short.matches(&f).unwrap());
        let long = short.extend(&f, 5000).unwrap().unwrap();
        assert_eq!(long.len as u64, FP_MAX);
        assert_ne!(long, short);
        // Rewritten with other first bytes, or shorter than the fingerprint: no longer this file.
        std::fs::write(&path, b"other line\n").unwrap();
        assert!(!short.matches(&f).unwrap());
        assert!(short.extend(&f, 11).unwrap().is_none());
        std::fs::write(&path, b"first").unwrap();
        assert!(!short.matches(&f).unwrap());
        // Stored and rebuilt.
        let back = Fingerprint::from_parts(long.len as i32, &long.hash).unwrap();
        assert_eq!(back, long);
        assert!(Fingerprint::from_parts(3, b"short").is_none());
    }
}
