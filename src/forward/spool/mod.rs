//! The durable SIEM spool: an append-only, checksummed, segmented queue in `siem.spool_dir`.
//!
//! Records are framed ([`frame`]), appended to the active segment and fsynced before
//! [`Spool::append`] returns; a reader cursor hands batches to the sink; [`Spool::commit`] moves
//! the durable commit cursor (`commit`: two checksummed slots, one fdatasync) once the SIEM acked,
//! deleting segments wholly behind it. On open, everything after the commit cursor is replayed;
//! corrupt or torn regions are skipped and counted. Must never drop an accepted record, exceed
//! `max_bytes` with the queue and the dead-letter file together (a full spool refuses with a
//! temporary error), or be shared by two processes. Its folder (when it creates it) and every
//! file in it are private whatever the umask (0700/0600, [`crate::private`]): they hold records.

pub mod frame;
pub mod lock;

use crate::error::{Error, Result};
use crate::logs::record::Record;
use crate::private::{self, FileMode};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A position in the spool: segment id and byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cursor {
    pub seg: u64,
    pub off: u64,
}

/// What opening found.
#[derive(Debug, Default, Clone, Copy)]
pub struct OpenReport {
    /// Records left unacknowledged by a previous run, to be replayed.
    pub replay: u64,
    pub corrupt_regions: u64,
    pub corrupt_bytes: u64,
}

/// A batch handed to a sink, with the cursor just past each record.
#[derive(Debug, Default)]
pub struct Batch {
    pub records: Vec<Record>,
    pub ends: Vec<Cursor>,
}

struct State {
    /// Segment id → durable length.
    segments: BTreeMap<u64, u64>,
    active: u64,
    active_file: File,
    commit: Cursor,
    commit_file: File,
    commit_seq: u64,
    read: Cursor,
    pending: u64,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    state: Mutex<State>,
    _lock: lock::DirLock,
}

fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("seg-{id:016}.spool"))
}

/// Open (creating) a spool file, private whatever the umask.
fn open_private(path: &Path, append: bool) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true);
    if append {
        o.append(true);
    } else {
        o.truncate(false).read(true).write(true);
    }
    private::open(&o, path, FileMode::PRIVATE)
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::failed(format!("spool: cannot {what} {}: {e}", path.display()))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("sync", dir, e))
}

/// The commit file holds two 32-byte slots `seq | seg | off | crc32 | pad`, written
/// alternately with one `fdatasync` each: a torn write leaves the other, older slot valid
/// (a little more is replayed: duplicates, never loss).
const SLOT: usize = 32;

fn encode_slot(seq: u64, c: Cursor) -> [u8; SLOT] {
    let mut b = [0u8; SLOT];
    b[0..8].copy_from_slice(&seq.to_le_bytes());
    b[8..16].copy_from_slice(&c.seg.to_le_bytes());
    b[16..24].copy_from_slice(&c.off.to_le_bytes());
    let crc = crc32fast::hash(&b[..24]);
    b[24..28].copy_from_slice(&crc.to_le_bytes());
    b
}

fn decode_slot(b: &[u8]) -> Option<(u64, Cursor)> {
    let b = b.get(..SLOT)?;
    let u = |r: std::ops::Range<usize>| b[r].try_into().ok().map(u64::from_le_bytes);
    if crc32fast::hash(&b[..24]).to_le_bytes() != b[24..28] {
        return None;
    }
    Some((
        u(0..8)?,
        Cursor {
            seg: u(8..16)?,
            off: u(16..24)?,
        },
    ))
}

/// The newest valid commit and its sequence number; `None` without a commit file or with
/// damaged slots. A commit file that is there but cannot be read is an error, not "replay
/// everything".
fn read_commit(dir: &Path) -> Result<Option<(u64, Cursor)>> {
    let path = dir.join("commit");
    let b = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("read", &path, e)),
    };
    let a = decode_slot(&b);
    let c = b.get(SLOT..).and_then(decode_slot);
    Ok([a, c].into_iter().flatten().max_by_key(|(seq, _)| *seq))
}

impl Spool {
    /// Open (creating) the spool in `dir`, lock it, and scan what a previous run left.
    pub fn open(dir: &Path, max_bytes: u64, segment_bytes: u64) -> Result<(Spool, OpenReport)> {
        private::create_dir_all(dir, FileMode::PRIVATE).map_err(|e| io("create", dir, e))?;
        private::warn_if_world_writable(dir, "the SIEM spool folder");
        let lock = lock::lock(dir)?;
        let mut segments = BTreeMap::new();
        for entry in fs::read_dir(dir).map_err(|e| io("list", dir, e))? {
            let entry = entry.map_err(|e| io("list", dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name
                .strip_prefix("seg-")
                .and_then(|s| s.strip_suffix(".spool"))
                .and_then(|s| s.parse::<u64>().ok())
            {
                let len = entry.metadata().map_err(|e| io("stat", dir, e))?.len();
                segments.insert(id, len);
            }
        }
        let first = segments.keys().next().copied().unwrap_or(0);
        // A missing or damaged commit file means: replay everything (duplicates, never loss).
        let stored = read_commit(dir)?;
        let commit_seq = stored.map_or(0, |(seq, _)| seq);
        let commit = match stored.map(|(_, c)| c) {
            Some(c) if segments.contains_key(&c.seg) => c,
            // Its segment was fully consumed and deleted: resume at the next one.
            Some(c) => Cursor {
                seg: segments
                    .range(c.seg..)
                    .next()
                    .map_or(c.seg + 1, |(id, _)| *id),
                off: 0,
            },
            None => Cursor { seg: first, off: 0 },
        };
        for id in segments
            .keys()
            .copied()
            .filter(|id| *id < commit.seg)
            .collect::<Vec<_>>()
        {
            let _ = fs::remove_file(seg_path(dir, id));
            segments.remove(&id);
        }
        let mut report = OpenReport::default();
        for (&id, &len) in &segments {
            let from = if id == commit.seg { commit.off } else { 0 };
            let path = seg_path(dir, id);
            let bytes = fs::read(&path).map_err(|e| io("read", &path, e))?;
            let d = frame::decode(
                bytes.get(from as usize..len as usize).unwrap_or(&[]),
                usize::MAX,
                true,
            );
            report.replay += d.records.len() as u64;
            report.corrupt_regions += d.corrupt_regions;
            report.corrupt_bytes += d.corrupt_bytes;
        }
        let active = segments
            .keys()
            .next_back()
            .map_or(commit.seg.max(1), |l| l + 1);
        let path = seg_path(dir, active);
        let active_file = open_private(&path, true).map_err(|e| io("create", &path, e))?;
        segments.insert(active, 0);
        let commit_path = dir.join("commit");
        let commit_file =
            open_private(&commit_path, false).map_err(|e| io("open", &commit_path, e))?;
        sync_dir(dir)?;
        let commit = if segments.len() == 1 {
            Cursor {
                seg: active,
                off: 0,
            }
        } else {
            commit
        };
        let spool = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes: segment_bytes.max(4096),
            state: Mutex::new(State {
                segments,
                active,
                active_file,
                commit,
                commit_file,
                commit_seq,
                read: commit,
                pending: report.replay,
            }),
            _lock: lock,
        };
        Ok((spool, report))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn live_bytes(s: &State) -> u64 {
        s.segments
            .range(s.commit.seg..)
            .map(|(_, len)| *len)
            .sum::<u64>()
            .saturating_sub(s.commit.off)
    }

    /// Bytes of unacknowledged records on disk.
    pub fn bytes(&self) -> u64 {
        Self::live_bytes(&self.state())
    }

    /// Records appended and not yet committed.
    pub fn pending(&self) -> u64 {
        self.state().pending
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Append and fsync. Refused (temporary) when it would take the spool over `max_bytes`.
    pub fn append(&self, records: &[Record]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(records.iter().map(|r| r.data.len() + 96).sum());
        for r in records {
            frame::encode(r, &mut buf);
        }
        let mut s = self.state();
        let live = Self::live_bytes(&s);
        let dead = self.dead_letter_bytes();
        if live + dead + buf.len() as u64 > self.max_bytes {
            let why = if dead > 0 {
                format!(
                    "{live} bytes waiting for the SIEM and {dead} bytes of records it refused \
                     in {}: deal with them and move that file away",
                    self.dead_letter_path().display()
                )
            } else {
                format!("{live} bytes waiting for the SIEM")
            };
            return Err(Error::temporary(format!(
                "the SIEM spool {} is full ({why}; the limit is {} bytes); refusing {} records \
                 until it drains",
                self.dir.display(),
                self.max_bytes,
                records.len()
            )));
        }
        if s.segments[&s.active] >= self.segment_bytes {
            let id = s.active + 1;
            let path = seg_path(&self.dir, id);
            s.active_file = open_private(&path, true).map_err(|e| io("create", &path, e))?;
            sync_dir(&self.dir)?;
            s.active = id;
            s.segments.insert(id, 0);
        }
        let active = s.active;
        let path = seg_path(&self.dir, active);
        let res = s
            .active_file
            .write_all(&buf)
            .and_then(|_| s.active_file.sync_data());
        if let Err(e) = res {
            // The tail may be torn; later appends go to a fresh segment and readers skip it.
            let len = s.active_file.metadata().map(|m| m.len()).unwrap_or(0);
            s.segments.insert(active, len);
            s.segments.insert(active + 1, 0);
            s.active = active + 1;
            if let Ok(f) = open_private(&seg_path(&self.dir, active + 1), true) {
                s.active_file = f;
            }
            return Err(io("append to", &path, e));
        }
        *s.segments.entry(active).or_default() += buf.len() as u64;
        s.pending += records.len() as u64;
        Ok(())
    }

    /// The next batch after the read cursor: at most `max_events` records and about `max_bytes`
    /// of frames (always at least one record when any is waiting).
    pub fn read_batch(&self, max_events: usize, max_bytes: usize) -> Result<Batch> {
        let (mut read, segments, active) = {
            let s = self.state();
            (s.read, s.segments.clone(), s.active)
        };
        let mut batch = Batch::default();
        let mut chunk = max_bytes.max(4096);
        let mut used = 0usize;
        while batch.records.len() < max_events {
            let Some(&len) = segments.get(&read.seg) else {
                // Deleted behind a commit: continue at the next segment.
                match segments.range(read.seg..).next() {
                    Some((&next, _)) => {
                        read = Cursor { seg: next, off: 0 };
                        continue;
                    }
                    None => break,
                }
            };
            let sealed = read.seg != active;
            if read.off >= len {
                match segments.range(read.seg + 1..).next() {
                    Some((&next, _)) if sealed => {
                        read = Cursor { seg: next, off: 0 };
                        continue;
                    }
                    _ => break,
                }
            }
            let want = (len - read.off).min(chunk as u64) as usize;
            let mut buf = vec![0u8; want];
            let path = seg_path(&self.dir, read.seg);
            File::open(&path)
                .and_then(|f| f.read_exact_at(&mut buf, read.off))
                .map_err(|e| io("read", &path, e))?;
            let whole = read.off + want as u64 == len;
            let d = frame::decode(&buf, max_events - batch.records.len(), sealed && whole);
            if d.records.is_empty() && d.consumed == 0 {
                if whole {
                    break;
                }
                chunk = chunk.saturating_mul(2);
                continue;
            }
            let mut full = false;
            for (r, end) in d.records {
                let size = r.data.len() + 96;
                if !batch.records.is_empty() && used + size > max_bytes {
                    full = true;
                    break;
                }
                used += size;
                batch.records.push(r);
                let end = Cursor {
                    seg: read.seg,
                    off: read.off + end as u64,
                };
                batch.ends.push(end);
            }
            match (full, batch.ends.last()) {
                (true, Some(end)) => read = *end,
                _ => read.off += d.consumed as u64,
            }
            if full || used >= max_bytes || !whole {
                break;
            }
        }
        self.state().read = read;
        Ok(batch)
    }

    /// Forget the read cursor: the next batch starts again at the commit cursor.
    pub fn rewind(&self) {
        let mut s = self.state();
        s.read = s.commit;
    }

    /// Durably mark everything up to `to` (covering `count` records) as done.
    pub fn commit(&self, to: Cursor, count: u64) -> Result<()> {
        let mut s = self.state();
        if to <= s.commit {
            return Ok(());
        }
        let seq = s.commit_seq + 1;
        let slot = encode_slot(seq, to);
        s.commit_file
            .write_all_at(&slot, (seq % 2) * SLOT as u64)
            .and_then(|_| s.commit_file.sync_data())
            .map_err(|e| io("write", &self.dir.join("commit"), e))?;
        s.commit_seq = seq;
        s.pending = s.pending.saturating_sub(count);
        let sealed_and_done = to.seg != s.active && to.off >= s.segments[&to.seg];
        // In memory the cursor never points into a deleted segment; on disk `(seg, len)` of a
        // deleted segment reopens as the start of the next one.
        s.commit = if sealed_and_done {
            let next = s.segments.range(to.seg + 1..).next().map(|(id, _)| *id);
            Cursor {
                seg: next.unwrap_or(s.active),
                off: 0,
            }
        } else {
            to
        };
        if s.read < s.commit {
            s.read = s.commit;
        }
        let old: Vec<u64> = s
            .segments
            .range(..s.commit.seg)
            .map(|(id, _)| *id)
            .collect();
        for id in old {
            let _ = fs::remove_file(seg_path(&self.dir, id));
            s.segments.remove(&id);
        }
        Ok(())
    }

    /// Where records the SIEM refused for good are kept.
    pub fn dead_letter_path(&self) -> PathBuf {
        self.dir.join("dead-letters.ndjson")
    }

    /// Bytes of the dead-letter file. They count against `max_bytes` with the queue, so a
    /// SIEM that refuses everything (a revoked token) fills the spool and pushes back instead
    /// of filling the disk; the operator moving the file away frees the space.
    pub fn dead_letter_bytes(&self) -> u64 {
        fs::metadata(self.dead_letter_path()).map_or(0, |m| m.len())
    }

    /// Keep records the SIEM refused for good, with the reason, in `dead-letters.ndjson`.
    /// Never refused for space: the records move there from the queue, already counted.
    pub fn dead_letter(&self, records: &[Record], reason: &str) -> Result<()> {
        let path = self.dead_letter_path();
        let now = chrono::Utc::now().to_rfc3339();
        let mut out = String::new();
        for r in records {
            let line = serde_json::json!({"time": now, "reason": reason});
            let mut line = line.to_string();
            line.pop();
            out.push_str(&line);
            out.push_str(",\"record\":");
            out.push_str(&r.data);
            out.push_str("}\n");
        }
        open_private(&path, true)
            .and_then(|mut f| f.write_all(out.as_bytes()).and_then(|_| f.sync_data()))
            .map_err(|e| io("append to", &path, e))
    }
}

#[cfg(test)]
mod tests;
