//! Step 1 of a restore: bring a backup's object to local scratch space as a plain pg_dump
//! archive, checking it on the way. The stored bytes are hashed (SHA-256 and size, compared
//! with the manifest) while they are decrypted (when kasm-db encrypted them) and decompressed
//! (gzip or zstd, as the manifest's `compression.kind` says) into one scratch file, so the
//! object is read once and nothing else is buffered. When the manifest records where each
//! member is (`compression.members`), members are decompressed on several threads while the
//! object is still being read and hashed ([`ParallelUnpacker`]); older manifests unpack on
//! one.
//!
//! The file is a real file because parallel `pg_restore -j` needs a seekable archive. Free
//! space is checked first (the manifest says how large the archive is). The scratch file is
//! removed when the returned [`Fetched`] is dropped, also when the fetch is cancelled. A restore
//! that is killed (`kill -9`, a lost node) cannot remove its file: each one holds an exclusive
//! `flock` on its file while it lives, and the next fetch removes the scratch files no one
//! holds that were not modified for [`STALE_AFTER`] ([`remove_stale`]), as the next restore drops
//! a stale database. Never touches a database; never prints or logs the encryption key (only
//! its public id).

use crate::archive::compress::{Codec, Digest, Unpacker};
use crate::archive::crypt::{self, Key};
use crate::archive::manifest::Manifest;
use crate::archive::members::{Layout, ParallelUnpacker};
use crate::archive::storage::Storage;
use crate::error::{Error, Result};
use bytes::Bytes;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// Free space kept beyond the archive's size.
const MARGIN_BYTES: u64 = 64 << 20;
const READ_BYTES: usize = 256 << 10;
const CHANNEL_CHUNKS: usize = 8;

/// How restore's scratch files are named in the scratch directory.
const SCRATCH_PREFIX: &str = "kasm-db-restore-";
const SCRATCH_SUFFIX: &str = ".dump";
/// A scratch file no restore holds and unmodified this long was left by a killed restore (a
/// new file is locked microseconds after it is created; one being written is modified).
pub const STALE_AFTER: Duration = Duration::from_secs(60);

/// The plain archive in scratch space; the file is deleted on drop.
pub struct Fetched {
    pub path: tempfile::TempPath,
    /// Holds the `flock` that tells [`remove_stale`] the file is in use, until the drop.
    _lock: std::fs::File,
    /// Bytes read from storage (the object's size).
    pub stored_bytes: u64,
    /// Bytes of the plain pg_dump archive.
    pub dump_bytes: u64,
}

/// Bytes free for an unprivileged writer under `dir`.
pub fn free_bytes(dir: &Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| Error::usage(format!("scratch directory {} has a NUL", dir.display())))?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return Err(Error::failed(format!(
            "cannot check free space in {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        )));
    }
    Ok(s.f_bavail as u64 * s.f_frsize as u64)
}

/// Refuse early when the archive cannot fit (pure).
pub fn check_space(dir: &Path, need: u64, free: u64) -> Result<()> {
    if free < need.saturating_add(MARGIN_BYTES) {
        return Err(Error::failed(format!(
            "not enough scratch space in {}: the archive needs {} and {} are free; point TMPDIR \
             at a larger disk",
            dir.display(),
            crate::sizing::bytes(need + MARGIN_BYTES),
            crate::sizing::bytes(free)
        )));
    }
    Ok(())
}

/// The key for an encrypted backup, checked against the manifest's key id before any byte is
/// read; `None` for a plain backup.
pub fn key_for(m: &Manifest, key_file: Option<&Path>) -> Result<Option<Key>> {
    let Some(enc) = &m.encryption else {
        return Ok(None);
    };
    crypt::key_for(&format!("backup {}", m.id), &enc.key_id, key_file).map(Some)
}

/// A blocking reader over the chunks the async side sends; EOF when the channel closes.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// Counts what goes through to the file.
struct Counting<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Where the object's members are, when the manifest says and it fits the object.
fn layout(m: &Manifest) -> Option<Layout> {
    let members = m.compression.members.as_ref()?;
    let sealed = match &m.encryption {
        None => None,
        Some(e) => {
            // A scheme this build does not know has no layout: read in order, and the
            // unsealing says what it is.
            let header = crypt::header_bytes(&e.kind)? as u64;
            let per = crypt::CHUNK_OVERHEAD as u64;
            Some((per, header + per))
        }
    };
    match Layout::check(
        members,
        m.compression.block_bytes,
        m.dump_bytes,
        m.size_bytes,
        sealed,
    ) {
        Ok(l) => Some(l),
        Err(why) => {
            tracing::warn!(
                "backup {}: the manifest's member list does not fit the object ({why}); \
                 unpacking it sequentially",
                m.id
            );
            None
        }
    }
}

/// Threads that decompress members.
fn unpack_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Decrypt (when keyed) and unpack everything `rx` delivers into `unpacker`.
fn pump<U: Write>(
    rx: mpsc::Receiver<Bytes>,
    key: Option<&Key>,
    unpacker: &mut U,
    unpacking: &dyn Fn() -> String,
) -> Result<()> {
    let mut reader = ChannelReader {
        rx,
        cur: Bytes::new(),
    };
    match key {
        Some(k) => {
            crypt::decrypt(k, &mut reader, unpacker)?;
        }
        None => {
            std::io::copy(&mut reader, unpacker)
                .map_err(|e| Error::failed(format!("{}: {e}", unpacking())))?;
        }
    }
    Ok(())
}

fn decode<W: Write + Send + 'static>(
    rx: mpsc::Receiver<Bytes>,
    key: Option<Key>,
    codec: Codec,
    layout: Option<Layout>,
    sink: W,
    what: &str,
) -> Result<u64> {
    let out = Counting {
        inner: std::io::BufWriter::with_capacity(1 << 20, sink),
        n: 0,
    };
    let unpacking = || format!("cannot unpack the object ({} to {what})", codec.name());
    let finished = match layout {
        Some(layout) => {
            let mut u = ParallelUnpacker::new(codec, layout, out, unpack_workers())?;
            let pumped = pump(rx, key.as_ref(), &mut u, &unpacking);
            // The unpacker's own error (a damaged member) says more than the pump's.
            match (pumped, u.finish()) {
                (Err(e), Ok(_)) => return Err(e),
                (_, done) => done,
            }
        }
        None => {
            let mut u = Unpacker::new(codec, out)?;
            pump(rx, key.as_ref(), &mut u, &unpacking)?;
            u.finish()
        }
    };
    let mut out = finished.map_err(|e| Error::failed(format!("{}: {e}", unpacking())))?;
    out.flush()?;
    Ok(out.n)
}

/// Fetch, check and unpack the object of `m` into `scratch_dir`. `progress` gets the stored
/// bytes read so far. Fails (before anything else happens) on a size or SHA-256 mismatch.
pub async fn fetch(
    storage: &dyn Storage,
    m: &Manifest,
    key: Option<Key>,
    scratch_dir: &Path,
    progress: impl Fn(u64),
) -> Result<Fetched> {
    for stale in remove_stale(scratch_dir, SystemTime::now()) {
        tracing::info!(path = %stale.display(), "removed a scratch file left by an interrupted restore");
    }
    let free = free_bytes(scratch_dir)?;
    check_space(scratch_dir, m.dump_bytes, free)?;
    let tmp = tempfile::Builder::new()
        .prefix("kasm-db-restore-")
        .suffix(".dump")
        .tempfile_in(scratch_dir)
        .map_err(|e| {
            Error::failed(format!(
                "cannot create a scratch file in {}: {e}",
                scratch_dir.display()
            ))
        })?;
    if !try_lock(tmp.as_file())? {
        return Err(Error::failed(format!(
            "the new scratch file {} is locked by another process",
            tmp.path().display()
        )));
    }
    let lock = tmp.as_file().try_clone()?;
    let (file, path) = tmp.into_parts();
    let streamed = stream_into(storage, m, key, file, "scratch space", progress).await?;
    Ok(Fetched {
        path,
        _lock: lock,
        stored_bytes: streamed.stored_bytes,
        dump_bytes: streamed.dump_bytes,
    })
}

/// What [`stream_into`] read and wrote.
#[derive(Debug, Clone, Copy)]
pub struct Streamed {
    /// Bytes read from storage (the object's size, checked against the manifest).
    pub stored_bytes: u64,
    /// Bytes written to the sink (the plain archive's size, checked against the manifest).
    pub dump_bytes: u64,
}

/// Read the object of `m` once, hashing what is read while it is decrypted (with `key`) and
/// decompressed into `sink` on a blocking thread; `sink` is dropped (closed) at the end.
/// `what` names the sink in messages. Ok only when the size and SHA-256 match the manifest
/// and the archive unpacked to the manifest's size: on any error the caller must throw away
/// whatever the sink made of the bytes, which are then not the backup's.
pub async fn stream_into<W: Write + Send + 'static>(
    storage: &dyn Storage,
    m: &Manifest,
    key: Option<Key>,
    sink: W,
    what: &'static str,
    progress: impl Fn(u64),
) -> Result<Streamed> {
    let codec = m.compression.codec()?;
    let Some(mut object) = storage.get(&m.object).await? else {
        return Err(Error::failed(format!(
            "backup {}: its object {} is missing from {}",
            m.id,
            m.object,
            storage.describe()
        )));
    };
    let (tx, rx) = mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
    let members = layout(m);
    let decoder = tokio::task::spawn_blocking(move || decode(rx, key, codec, members, sink, what));
    let mut digest = Digest::default();
    let mut buf = vec![0u8; READ_BYTES];
    let mut tx = Some(tx);
    let mut read = 0u64;
    loop {
        let n = object.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        digest.update(&buf[..n]);
        // When the decoder has stopped (a damaged stream), keep hashing: the checksum says
        // whether the object is corrupt, which is the better message.
        if let Some(t) = &tx {
            if t.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                tx = None;
            }
        }
        read += n as u64;
        progress(read);
    }
    drop(tx);
    let decoded = decoder
        .await
        .map_err(|e| Error::failed(format!("decompression task: {e}")))?;
    let (sha, size) = digest.finish();
    if size != m.size_bytes {
        return Err(Error::failed(format!(
            "backup {} is corrupt: its object is {size} bytes, the manifest says {}; refused \
             before touching the target",
            m.id, m.size_bytes
        )));
    }
    if sha != m.sha256 {
        return Err(Error::failed(format!(
            "backup {} is corrupt: the SHA-256 of its object differs from the manifest; refused \
             before touching the target",
            m.id
        )));
    }
    let dump_bytes = decoded.map_err(|e| e.context(format!("backup {}", m.id)))?;
    if dump_bytes != m.dump_bytes {
        return Err(Error::failed(format!(
            "backup {}: the archive unpacks to {dump_bytes} bytes, the manifest says {}",
            m.id, m.dump_bytes
        )));
    }
    Ok(Streamed {
        stored_bytes: size,
        dump_bytes,
    })
}

/// An exclusive `flock` on `file`'s (or a directory's) open file description (held until every handle to it is
/// closed): true when had, false when another holds it.
pub(crate) fn try_lock(file: &std::fs::File) -> Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor this handle owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        return Ok(false);
    }
    Err(Error::failed(format!("cannot lock a scratch file: {e}")))
}

/// Remove the scratch files that killed restores left in `dir`: named as [`fetch`] names them,
/// ours (same owner), locked by no running restore, and not modified for [`STALE_AFTER`] before
/// `now`. Best effort: what cannot be inspected or removed is left. Returns what was removed.
pub fn remove_stale(dir: &Path, now: SystemTime) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    remove_unheld(
        dir,
        now,
        |name| name.starts_with(SCRATCH_PREFIX) && name.ends_with(SCRATCH_SUFFIX),
        |meta| meta.is_file() && meta.uid() == me,
    )
}

/// Remove what killed restores left in `dir`: the entries `named` accepts by name and `is_ours`
/// by metadata (not following links), not modified for [`STALE_AFTER`] before `now`, whose
/// `flock` no running restore holds (a live restore holds its file's or folder's from the
/// moment it makes it). Files are removed, folders with what they hold. Best effort: what
/// cannot be inspected, locked or removed is left. Returns what was removed.
pub(crate) fn remove_unheld(
    dir: &Path,
    now: SystemTime,
    named: impl Fn(&str) -> bool,
    is_ours: impl Fn(&std::fs::Metadata) -> bool,
) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        if !named(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age >= STALE_AFTER);
        if !old || !is_ours(&meta) {
            continue;
        }
        let Ok(handle) = std::fs::File::open(&path) else {
            continue;
        };
        // Held: a running restore's. Removed while we hold the lock.
        if !try_lock(&handle).unwrap_or(false) {
            continue;
        }
        let gone = if meta.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if gone.is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// Where scratch files go: `TMPDIR` from the (explicitly passed) environment, else /tmp.
pub fn scratch_dir(env: &std::collections::BTreeMap<String, String>) -> PathBuf {
    env.get("TMPDIR")
        .filter(|d| d.starts_with('/'))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stale_scratch_files_no_restore_holds_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let hour_ago = now - Duration::from_secs(3600);
        let make = |name: &str, modified: SystemTime| {
            let p = dir.path().join(name);
            let f = std::fs::File::create(&p).unwrap();
            f.set_modified(modified).unwrap();
            p
        };
        let stale = make("kasm-db-restore-aaaaaa.dump", hour_ago);
        let fresh = make("kasm-db-restore-bbbbbb.dump", now);
        let held = make("kasm-db-restore-cccccc.dump", hour_ago);
        let other = make("kasm-db-other-dddddd.dump", hour_ago);
        let holder = std::fs::File::open(&held).unwrap();
        assert!(try_lock(&holder).unwrap());
        assert_eq!(remove_stale(dir.path(), now), vec![stale.clone()]);
        assert!(!stale.exists() && fresh.exists() && held.exists() && other.exists());
        // Its restore gone (the lock released with it), the held one is stale too.
        drop(holder);
        assert_eq!(remove_stale(dir.path(), now), vec![held.clone()]);
        assert!(remove_stale(Path::new("/nonexistent/kasm-db"), now).is_empty());
    }

    #[test]
    fn space_check_says_what_to_do() {
        assert!(check_space(Path::new("/s"), 10 << 20, 1 << 30).is_ok());
        let e = check_space(Path::new("/s"), 1 << 30, 100 << 20).unwrap_err();
        assert!(e.to_string().contains("TMPDIR"), "{e}");
        assert!(e.to_string().contains("/s"), "{e}");
        assert!(free_bytes(Path::new("/tmp")).unwrap() > 0);
    }
}
