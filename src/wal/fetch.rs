//! `kasm-db wal fetch FILE PATH`: PostgreSQL's `restore_command` during `restore --physical`
//! (hidden). One WAL file from the archive, checked against its record (size and SHA-256 of the
//! stored object, the size of the file unpacked), written to `PATH` whole (a temporary name,
//! then a rename) — or one of two answers PostgreSQL must tell apart:
//!
//! - not found ([`Fetched::NotFound`], exit 1): the end of the archive, a history file of a
//!   timeline that never was, a segment the base backup carries itself. Recovery then ends
//!   there (or, as a standby, asks again later).
//! - abort ([`Kind::Abort`], exit 126, which PostgreSQL takes as fatal): a segment older than
//!   the newest stored is missing or only partly stored (a gap), a stored object does not match
//!   its record (corrupt), or the archive cannot be read. Recovery stops with the segment named
//!   instead of ending early with less than the archive holds.
//!
//! A file stored encrypted is decrypted with `backup.encryption_key_file` after its checksum
//! matched (the key checked against the record's key id first: none or a wrong one aborts,
//! naming the file). The gap judgement is [`crate::archive::wal::judge`]'s. Reads only; never
//! writes to the target; never prints or logs the key.
//!
//! While a restore recovers, it reads ahead ([`prefetch`]): the completed segments after the
//! base backup are fetched and checked here, in order and a few at a time, into a private
//! folder of the restore, while the server replays the ones before; `wal fetch --cache DIR`
//! then only moves the segment asked for into place ([`take_cached`]). A segment the read-ahead
//! has not got (or could not get) is fetched as above, so every judgement stays this module's.

use crate::archive::catalog;
use crate::archive::compress::{Codec, Unpacker};
use crate::archive::crypt;
use crate::archive::storage::Storage;
use crate::archive::wal::{self, Judgement, Record, Stored};
use crate::error::{Error, Kind, Result};
use std::io::Write;
use std::path::Path;
use tokio::io::AsyncReadExt;

/// What a fetch came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// Written to the path: the file, and whether it was the partial copy of the segment being
    /// written when the archive was last stored to.
    Restored { file: String, partial: bool },
    /// Not in the archive, normally (see the module doc): why.
    NotFound(String),
}

/// Fetch `file` into `dest`. `through` is the last segment the base backup carries itself.
/// `key_file` (`backup.encryption_key_file`) opens files stored encrypted; it is read only when
/// one is.
pub async fn fetch(
    storage: &dyn Storage,
    file: &str,
    dest: &Path,
    through: Option<&str>,
    key_file: Option<&Path>,
) -> Result<Fetched> {
    if !(wal::is_segment(file) || wal::is_history(file)) {
        return Ok(Fetched::NotFound(format!(
            "{file} is not archived by kasm-db"
        )));
    }
    // A partial copy may be replaced (or the segment completed) between the listing and the
    // read: try again with the new state.
    for _ in 0..3 {
        if let Some(record) = read_record(storage, file, false).await? {
            restore(storage, &record, dest, key_file).await?;
            return Ok(Fetched::Restored {
                file: file.into(),
                partial: false,
            });
        }
        let tli = wal::timeline_of(file).expect("checked above");
        // Only what sorts after the file: its partial copy and the next segments, if any
        // (enough to tell the end of the archive from a gap; never the whole archive).
        let folder = format!("{}/", wal::timeline_dir(tli));
        let names: Vec<String> = storage
            .list_after(&folder, &format!("{folder}{file}"), AFTER)
            .await
            .map_err(|e| abort(format!("cannot list the WAL archive: {e}")))?;
        let stored = Stored::from_listing(tli, names.iter().map(String::as_str));
        match wal::judge(file, &stored, through) {
            Judgement::Full => continue,
            Judgement::Partial => {
                let Some(record) = read_record(storage, file, true).await? else {
                    continue;
                };
                match restore(storage, &record, dest, key_file).await {
                    Err(e) if e.to_string().contains(MISSING) => continue,
                    r => r?,
                }
                return Ok(Fetched::Restored {
                    file: file.into(),
                    partial: true,
                });
            }
            Judgement::NotFound(why) => return Ok(Fetched::NotFound(why)),
            Judgement::Gap(why) => return Err(abort(why)),
        }
    }
    Err(abort(format!(
        "WAL file {file} kept changing in the archive while it was read"
    )))
}

const MISSING: &str = "is missing from the archive";
/// In the read-ahead folder: the name of the last segment `wal fetch --cache` did not find
/// there (the server's position, for [`prefetch`]).
const ASKED: &str = ".asked";
/// Names listed after the file asked for: its own partial copy's two objects and the next
/// segment's come first.
const AFTER: usize = 64;

fn abort(msg: impl std::fmt::Display) -> Error {
    Error::new(Kind::Abort, msg)
}

async fn read_record(storage: &dyn Storage, file: &str, partial: bool) -> Result<Option<Record>> {
    let name = wal::record_name(file, partial).expect("a WAL file name");
    catalog::read_wal_record(storage, &name)
        .await
        .map_err(|e| abort(format!("cannot read {name} from the archive: {e}")))
}

/// Read the record's object, check it, decrypt it (when sealed), unpack it to `dest`
/// (atomically).
async fn restore(
    storage: &dyn Storage,
    record: &Record,
    dest: &Path,
    key_file: Option<&Path>,
) -> Result<()> {
    let file = &record.file;
    // The key before any byte is read: none, or another than the file was sealed with, stops
    // recovery naming the file and both key ids.
    let key = match &record.encryption {
        Some(sealed) => Some(
            crypt::key_for(&record.what(), &sealed.key_id, key_file)
                .map_err(|e| abort(format!("{e}; recovery stops here")))?,
        ),
        None => None,
    };
    let Some(mut r) = storage
        .get(&record.object)
        .await
        .map_err(|e| abort(format!("cannot read WAL file {file} from the archive: {e}")))?
    else {
        return Err(abort(format!(
            "WAL file {file}: its object {} {MISSING}",
            record.object
        )));
    };
    let mut bytes = Vec::with_capacity(record.size_bytes as usize);
    r.read_to_end(&mut bytes)
        .await
        .map_err(|e| abort(format!("cannot read WAL file {file} from the archive: {e}")))?;
    let (sha, size) = super::stream::digest(&bytes);
    if size != record.size_bytes || sha != record.sha256 {
        return Err(abort(format!(
            "WAL {}{file} is corrupt in the archive: its object {} is {size} bytes with a \
             SHA-256 that {} its record; recovery stops here",
            if wal::is_segment(file) {
                "segment "
            } else {
                "file "
            },
            record.object,
            if sha == record.sha256 {
                "matches, but the size differs from"
            } else {
                "differs from"
            }
        )));
    }
    let codec = Codec::from_kind(&record.compression).map_err(abort)?;
    let dest = dest.to_path_buf();
    let want = record.wal_bytes;
    let pad_to = record.pad_to;
    let file = file.clone();
    tokio::task::spawn_blocking(move || {
        let tmp = dest.with_extension("kasm-db-partial");
        let written = write_out(&tmp, &dest, codec, key, &bytes, want, pad_to, &file);
        // Nothing half written left beside %p (in pg_wal) when the file does not open.
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    })
    .await
    .map_err(|e| abort(format!("unpacking task: {e}")))?
}

/// Decrypt (with `key`) and unpack the stored `bytes` to `tmp`, check its size, pad it, and
/// rename it to `dest`.
#[allow(clippy::too_many_arguments)]
fn write_out(
    tmp: &Path,
    dest: &Path,
    codec: Codec,
    key: Option<crypt::Key>,
    bytes: &[u8],
    want: u64,
    pad_to: Option<u64>,
    file: &str,
) -> Result<()> {
    let out = std::fs::File::create(tmp)
        .map_err(|e| abort(format!("cannot write {}: {e}", tmp.display())))?;
    let mut u = Unpacker::new(codec, std::io::BufWriter::new(out))?;
    let does_not_unpack =
        |e: std::io::Error| abort(format!("WAL file {file} does not unpack: {e}"));
    match &key {
        Some(key) => crypt::decrypt(key, bytes, &mut u)
            .map(drop)
            .map_err(|e| abort(format!("WAL file {file} does not decrypt: {e}")))?,
        None => u.write_all(bytes).map_err(does_not_unpack)?,
    }
    let out = u
        .finish()
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
        .map_err(does_not_unpack)?;
    let len = out.metadata()?.len();
    if len != want {
        return Err(abort(format!(
            "WAL file {file} unpacks to {len} bytes, its record says {want}"
        )));
    }
    // The trailing zeros that were not stored, back (the file is as pg_receivewal wrote it).
    if let Some(size) = pad_to.filter(|p| *p > len) {
        out.set_len(size)?;
    }
    // Not synced: what restore_command writes is recovery's scratch copy, fetched again if
    // the server crashes before it is replayed (PostgreSQL syncs what it keeps itself).
    drop(out);
    std::fs::rename(tmp, dest)?;
    Ok(())
}

/// Move `file` from the read-ahead folder `cache` to `dest` when it is there (a rename, or a
/// copy when `dest` is on another file system): true when it was.
pub fn take_cached(cache: &Path, file: &str, dest: &Path) -> Result<bool> {
    if !(wal::is_segment(file) || wal::is_history(file)) {
        return Ok(false);
    }
    let src = cache.join(file);
    match std::fs::rename(&src, dest) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Tell the read-ahead where the server is: what it has not got yet of the
            // segments before this one, the server fetched itself and will not ask again.
            if wal::is_segment(file) && cache.is_dir() {
                let _ = std::fs::write(cache.join(ASKED), file);
            }
            Ok(false)
        }
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            let tmp = dest.with_extension("kasm-db-partial");
            if let Err(e) = std::fs::copy(&src, &tmp).and_then(|_| std::fs::rename(&tmp, dest)) {
                let _ = std::fs::remove_file(&tmp);
                return Err(abort(format!(
                    "cannot copy {file} from the read-ahead folder {} to {}: {e}",
                    cache.display(),
                    dest.display()
                )));
            }
            let _ = std::fs::remove_file(&src);
            Ok(true)
        }
        Err(e) => Err(abort(format!(
            "cannot move {file} from the read-ahead folder {}: {e}",
            cache.display()
        ))),
    }
}

/// Read ahead for a recovery: fetch and check each of `segments` (completed segments of the
/// archive, in replay order) into `cache`, keeping at most `ahead` there unclaimed (those the
/// server went past, having fetched them itself, dropped: see [`take_cached`]), each file
/// given to `owner` (the server's user) before it appears under its name. Stops at the first
/// segment it cannot get (the server's own `wal fetch` then meets the problem and names it),
/// and when every segment is fetched. Cancelled by dropping the future; a segment half written
/// is under a temporary name in `cache/.incoming`, never under its own.
pub async fn prefetch(
    storage: &dyn Storage,
    segments: &[String],
    cache: &Path,
    ahead: usize,
    owner: Option<(u32, u32)>,
    key_file: Option<&Path>,
) {
    let incoming = cache.join(".incoming");
    if let Err(e) = std::fs::create_dir_all(&incoming) {
        tracing::debug!("no read-ahead: cannot create {}: {e}", incoming.display());
        return;
    }
    // Where the server is: the last segment `wal fetch` did not find here (None: none yet).
    // Segments before it (by number, whatever the timeline) it has already had.
    let passed = |cache: &Path| -> Option<String> {
        std::fs::read_to_string(cache.join(ASKED))
            .ok()
            .filter(|f| wal::is_segment(f))
            .map(|f| f[8..].to_string())
    };
    let behind = |seg: &str, past: &Option<String>| past.as_deref().is_some_and(|p| &seg[8..] < p);
    // The segments waiting to be taken; those the server went past without them (it fetched
    // them itself while they were being read ahead) are removed, not waited for.
    let waiting = |cache: &Path| {
        let past = passed(cache);
        std::fs::read_dir(cache)
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        let name = e.file_name().to_string_lossy().to_string();
                        if !wal::is_segment(&name) {
                            return false;
                        }
                        !(behind(&name, &past) && std::fs::remove_file(e.path()).is_ok())
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    for seg in segments {
        if behind(seg, &passed(cache)) {
            continue;
        }
        while waiting(cache) >= ahead.max(1) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let record = match read_record(storage, seg, false).await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!("read-ahead stops at {seg}: {e}");
                return;
            }
        };
        let tmp = incoming.join(seg);
        if let Err(e) = restore(storage, &record, &tmp, key_file).await {
            tracing::debug!("read-ahead stops at {seg}: {e}");
            let _ = std::fs::remove_file(&tmp);
            return;
        }
        if let Some((uid, gid)) = owner {
            if std::os::unix::fs::chown(&tmp, Some(uid), Some(gid)).is_err() {
                return;
            }
        }
        if std::fs::rename(&tmp, cache.join(seg)).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::compress::{Codec, Method};
    use crate::archive::storage::fs::FsStorage;
    use crate::private::FileMode;

    #[tokio::test]
    async fn the_read_ahead_keeps_a_few_checked_segments_and_stops_at_a_corrupt_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::new(dir.path().join("target"), FileMode::PRIVATE);
        let method = Method {
            codec: Codec::Gzip,
            level: 1,
        };
        let segs: Vec<String> = (1..=4)
            .map(|i| format!("0000000100000000000000{i:02X}"))
            .collect();
        let mut bodies = Vec::new();
        for (i, seg) in segs.iter().enumerate() {
            let body: Vec<u8> = (0..50_000u32)
                .map(|j| ((j + i as u32) % 251) as u8)
                .collect();
            let local = dir.path().join(seg);
            std::fs::write(&local, &body).unwrap();
            crate::wal::stream::store(&s, method, None, &local, seg, None)
                .await
                .unwrap();
            bodies.push(body);
        }
        // The third is corrupt in the archive: read-ahead stops before it.
        let third = crate::archive::wal::object_name(&segs[2], "gz").unwrap();
        let object = dir.path().join("target").join(third);
        let mut bad = std::fs::read(&object).unwrap();
        bad[12] ^= 0xff;
        std::fs::write(&object, bad).unwrap();

        let cache = dir.path().join("cache");
        std::fs::create_dir_all(&cache).unwrap();
        let cached = |c: &Path| -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(c)
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| wal::is_segment(n))
                .collect();
            v.sort();
            v
        };
        // At most one waits unclaimed: the read-ahead holds until it is taken.
        let reading = prefetch(&s, &segs, &cache, 1, None, None);
        tokio::pin!(reading);
        let held = tokio::time::timeout(std::time::Duration::from_millis(300), &mut reading).await;
        assert!(
            held.is_err(),
            "the read-ahead should wait for the first to be taken"
        );
        assert_eq!(cached(&cache), vec![segs[0].clone()]);
        let dest = dir.path().join("RECOVERYXLOG");
        assert!(take_cached(&cache, &segs[0], &dest).unwrap());
        assert_eq!(std::fs::read(&dest).unwrap(), bodies[0]);
        assert!(!take_cached(&cache, &segs[0], &dest).unwrap(), "taken once");
        // Then the second; the corrupt third stops it (it finishes), leaving nothing of it.
        let taker = async {
            loop {
                if take_cached(&cache, &segs[1], &dest).unwrap() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            tokio::join!(reading, taker)
        })
        .await
        .expect("the read-ahead ends at the corrupt segment");
        assert_eq!(std::fs::read(&dest).unwrap(), bodies[1]);
        assert!(cached(&cache).is_empty(), "{:?}", cached(&cache));
        assert!(cached(&cache.join(".incoming")).is_empty());
        // The server's own fetch then names the problem.
        let e = fetch(&s, &segs[2], &dest, None, None).await.unwrap_err();
        assert!(e.to_string().contains("corrupt"), "{e}");
    }

    /// A segment the server fetched itself while it was being read ahead (it asked before the
    /// read-ahead had it) is never taken: it does not hold a place of the read-ahead for ever.
    #[tokio::test]
    async fn a_segment_the_server_went_past_does_not_stall_the_read_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::new(dir.path().join("target"), FileMode::PRIVATE);
        let method = Method {
            codec: Codec::Gzip,
            level: 1,
        };
        let segs: Vec<String> = (1..=3)
            .map(|i| format!("0000000100000000000000{i:02X}"))
            .collect();
        for seg in &segs {
            let local = dir.path().join(seg);
            std::fs::write(&local, seg.repeat(100)).unwrap();
            crate::wal::stream::store(&s, method, None, &local, seg, None)
                .await
                .unwrap();
        }
        let cache = dir.path().join("cache");
        std::fs::create_dir_all(&cache).unwrap();
        let dest = dir.path().join("RECOVERYXLOG");
        // The server asked for the first before it was there (and fetched it itself).
        assert!(!take_cached(&cache, &segs[0], &dest).unwrap());
        let reading = prefetch(&s, &segs, &cache, 1, None, None);
        tokio::pin!(reading);
        let _ = tokio::time::timeout(std::time::Duration::from_millis(300), &mut reading).await;
        assert!(cache.join(&segs[0]).exists());
        // It asks for the second: the first, never to be taken, makes way.
        let taker = async {
            for seg in &segs[1..] {
                while !take_cached(&cache, seg, &dest).unwrap() {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                assert_eq!(std::fs::read(&dest).unwrap(), seg.repeat(100).as_bytes());
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            tokio::join!(reading, taker)
        })
        .await
        .expect("the read-ahead goes on past a segment the server did not take");
        assert!(!cache.join(&segs[0]).exists());
    }

    /// DIR on another file system than the read-ahead folder (a mount point): copied into
    /// place, nothing left behind; a copy that cannot be made leaves nothing half written.
    #[test]
    fn a_cached_segment_crosses_file_systems() {
        let Ok(shm) = tempfile::tempdir_in("/dev/shm") else {
            return;
        };
        let disk = tempfile::tempdir().unwrap();
        let seg = "000000010000000000000009";
        std::fs::write(shm.path().join(seg), b"wal bytes").unwrap();
        let dest = disk.path().join("RECOVERYXLOG");
        assert!(take_cached(shm.path(), seg, &dest).unwrap());
        assert_eq!(std::fs::read(&dest).unwrap(), b"wal bytes");
        assert!(!shm.path().join(seg).exists());
        assert!(!dest.with_extension("kasm-db-partial").exists());
        // Copied, but it cannot take the name (a folder has it): an abort, no partial file.
        std::fs::write(shm.path().join(seg), b"wal bytes").unwrap();
        let taken = disk.path().join("taken");
        std::fs::create_dir(&taken).unwrap();
        let e = take_cached(shm.path(), seg, &taken).unwrap_err();
        assert_eq!(e.kind(), Kind::Abort);
        assert!(!taken.with_extension("kasm-db-partial").exists());
        assert!(shm.path().join(seg).exists());
    }

    /// A segment as pg_receivewal leaves it in `dir`: `len` bytes of WAL (a pattern of
    /// period `period`, never zero), zero-padded to 16 MiB. Its bytes and path.
    fn staged_segment(
        dir: &Path,
        seg: &str,
        len: u32,
        period: u32,
    ) -> (Vec<u8>, std::path::PathBuf) {
        let mut wal: Vec<u8> = (0..len).map(|i| (i % period) as u8 + 1).collect();
        wal.resize(16 << 20, 0);
        let local = dir.join(seg);
        std::fs::write(&local, &wal).unwrap();
        (wal, local)
    }

    #[tokio::test]
    async fn a_segment_comes_back_byte_for_byte_and_a_corrupt_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::new(dir.path().join("target"), FileMode::PRIVATE);
        let seg = "000000010000000000000003";
        // Written at its start, zero-padded to its size as pg_receivewal leaves it.
        let (wal, local) = staged_segment(dir.path(), seg, 70_000, 251);
        let method = Method {
            codec: Codec::Gzip,
            level: 5,
        };
        let r = crate::wal::stream::store(&s, method, None, &local, seg, None)
            .await
            .unwrap();
        assert_eq!((r.wal_bytes, r.pad_to), (70_000, Some(16 << 20)));
        let dest = dir.path().join("RECOVERYXLOG");
        let got = fetch(&s, seg, &dest, None, None).await.unwrap();
        assert_eq!(
            got,
            Fetched::Restored {
                file: seg.into(),
                partial: false
            }
        );
        assert!(std::fs::read(&dest).unwrap() == wal, "not the same bytes");
        // The end of the archive is "not found"; a corrupt object stops recovery.
        let next = "000000010000000000000004";
        assert!(matches!(
            fetch(&s, next, &dest, None, None).await.unwrap(),
            Fetched::NotFound(_)
        ));
        let object = dir.path().join("target").join(&r.object);
        let mut bad = std::fs::read(&object).unwrap();
        bad[10] ^= 0xff;
        std::fs::write(&object, bad).unwrap();
        let e = fetch(&s, seg, &dest, None, None).await.unwrap_err();
        assert_eq!(e.kind(), Kind::Abort);
        assert!(e.to_string().contains("corrupt"), "{e}");
    }

    #[tokio::test]
    async fn what_the_stream_stores_now_comes_back_byte_for_byte() {
        // The stream's own method (zstd, whatever the dumps use); gzip, as archives streamed
        // before stored it, is the test above.
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::new(dir.path().join("target"), FileMode::PRIVATE);
        let seg = "000000010000000000000007";
        let (wal, local) = staged_segment(dir.path(), seg, 3_000_000, 13);
        let r =
            crate::wal::stream::store(&s, crate::wal::stream::WAL_METHOD, None, &local, seg, None)
                .await
                .unwrap();
        assert_eq!(r.compression, "zstd");
        assert!(r.object.ends_with(".zst"), "{}", r.object);
        assert!(
            r.size_bytes < 3_000_000 / 4,
            "{} bytes stored",
            r.size_bytes
        );
        let dest = dir.path().join("RECOVERYXLOG");
        fetch(&s, seg, &dest, None, None).await.unwrap();
        assert!(std::fs::read(&dest).unwrap() == wal, "not the same bytes");
    }

    #[tokio::test]
    async fn an_encrypted_segment_opens_with_its_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::new(dir.path().join("target"), FileMode::PRIVATE);
        let seg = "000000010000000000000007";
        let mut wal = b"kasm-db-marker-row ".repeat(4000);
        wal.resize(16 << 20, 0);
        let local = dir.path().join(seg);
        std::fs::write(&local, &wal).unwrap();
        let method = Method {
            codec: Codec::Zstd,
            level: 3,
        };
        let keyfile = |b: u8| {
            let p = dir.path().join(format!("key{b}"));
            std::fs::write(&p, hex::encode([b; 32])).unwrap();
            p
        };
        let (right, wrong) = (keyfile(1), keyfile(2));
        let key = crypt::Key::from_file(&right).unwrap();
        let r = crate::wal::stream::store(&s, method, Some(&key), &local, seg, Some(5))
            .await
            .unwrap();
        assert!(r.object.ends_with(".partial-5.zst.aes"), "{}", r.object);
        assert_eq!(r.encryption.as_ref().unwrap().key_id, key.id());
        let stored = std::fs::read(dir.path().join("target").join(&r.object)).unwrap();
        assert!(stored.starts_with(crypt::MAGIC));
        // The record's checksum is of the stored (encrypted) bytes: checkable without the key.
        assert_eq!(
            crate::wal::stream::digest(&stored),
            (r.sha256.clone(), r.size_bytes)
        );
        let dest = dir.path().join("RECOVERYXLOG");
        let got = fetch(&s, seg, &dest, None, Some(&right)).await.unwrap();
        assert_eq!(
            got,
            Fetched::Restored {
                file: seg.into(),
                partial: true
            }
        );
        assert!(std::fs::read(&dest).unwrap() == wal, "not the same bytes");
        for (file, want) in [(None, "encryption_key_file"), (Some(&wrong), "wrong key")] {
            let e = fetch(&s, seg, &dest, None, file.map(|p| p.as_path()))
                .await
                .unwrap_err();
            assert_eq!(e.kind(), Kind::Abort);
            assert!(e.to_string().contains(want), "{e}");
            assert!(e.to_string().contains(seg), "{e}");
        }
        // A file that does not decrypt leaves nothing half written beside %p.
        let bad = dir.path().join("target").join(&r.object);
        let mut sealed = std::fs::read(&bad).unwrap();
        let at = sealed.len() - 30;
        sealed[at] ^= 1;
        let r2 = crate::wal::stream::digest(&sealed);
        std::fs::write(&bad, &sealed).unwrap();
        let mut rec = r.clone();
        (rec.sha256, rec.size_bytes) = r2;
        let e = restore(&s, &rec, &dest, Some(&right)).await.unwrap_err();
        assert!(e.to_string().contains("does not decrypt"), "{e}");
        assert!(!dest.with_extension("kasm-db-partial").exists());
    }

    /// `backups verify`'s WAL chain check of encrypted segments: opened with the key (a
    /// chunk that fails authentication is a problem even when the checksum was made to match),
    /// refused without it or with another (the typed key problem).
    #[tokio::test]
    async fn the_chain_check_opens_encrypted_segments_with_the_key_only() {
        use crate::archive::catalog::check_wal_chain;
        use crate::archive::manifest::Manifest;
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::new(dir.path().join("target"), FileMode::PRIVATE);
        let m: Manifest = serde_json::from_str(
            r#"{"format":1,"id":"20261207T100000Z-abcdef","created":"2026-12-07T10:00:00Z",
            "completed":"2026-12-07T10:00:01Z","database":"d","dbname":"d",
            "server_version":"15","pg_dump_version":"pg_basebackup 15",
            "object":"20261207T100000Z-abcdef/base.tar.gz","location":"/x","size_bytes":1,
            "sha256":"00","dump_bytes":1,"format_of_dump":"tar",
            "compression":{"kind":"gzip","level":6,"block_bytes":1},"encryption":null,
            "server_side_encryption":null,"exclude_logs":false,"tables":[],
            "timings":{"count_s":0,"dump_s":0,"total_s":0},"restore":"r","kind":"physical",
            "physical":{"start_lsn":"0/2000028","stop_lsn":"0/2000100","timeline":1,
            "wal_segment_bytes":16777216,"stop_segment":"000000010000000000000002",
            "superuser":"postgres","server_major":15}}"#,
        )
        .unwrap();
        let keyfile = |b: u8| {
            let p = dir.path().join(format!("key{b}"));
            std::fs::write(&p, hex::encode([b; 32])).unwrap();
            p
        };
        let (right, wrong) = (keyfile(3), keyfile(4));
        let key = crypt::Key::from_file(&right).unwrap();
        let method = Method {
            codec: Codec::Gzip,
            level: 6,
        };
        let mut record = None;
        for seg in ["000000010000000000000003", "000000010000000000000004"] {
            let local = dir.path().join(seg);
            std::fs::write(&local, seg.repeat(1000)).unwrap();
            record = Some(
                crate::wal::stream::store(&s, method, Some(&key), &local, seg, None)
                    .await
                    .unwrap(),
            );
        }
        let chain = check_wal_chain(&s, &m, Some(&right))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((chain.segments, chain.problem), (2, None));
        for file in [None, Some(wrong.as_path())] {
            let e = check_wal_chain(&s, &m, file).await.unwrap_err();
            assert!(crypt::is_key_problem(&e), "{e}");
            assert!(e.to_string().contains("000000010000000000000003"), "{e}");
        }
        // A chunk changed and the record's checksum made to match: decrypting finds it.
        let mut r = record.unwrap();
        let object = dir.path().join("target").join(&r.object);
        let mut bad = std::fs::read(&object).unwrap();
        let at = bad.len() - 30;
        bad[at] ^= 1;
        std::fs::write(&object, &bad).unwrap();
        (r.sha256, r.size_bytes) = crate::wal::stream::digest(&bad);
        let name = wal::record_name(&r.file, false).unwrap();
        std::fs::write(
            dir.path().join("target").join(name),
            serde_json::to_vec(&r).unwrap(),
        )
        .unwrap();
        let chain = check_wal_chain(&s, &m, Some(&right))
            .await
            .unwrap()
            .unwrap();
        let problem = chain.problem.unwrap();
        assert!(
            problem.contains("000000010000000000000004") && problem.contains("does not decrypt"),
            "{problem}"
        );
    }
}
