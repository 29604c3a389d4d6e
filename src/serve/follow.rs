//! Following files (`ingest.paths`, globs) through rotation. A followed file is known by what it
//! is — device, inode and a fingerprint of its first bytes (`identity.rs`) — not by its name, and
//! its offset belongs to that identity (`follow_offsets.rs`). So a file read as `x_json.log` and renamed
//! to `x_json.log.1` goes on being read through its open handle to its end, wherever it is, and
//! is never read again from the start, whether or not the globs match rotated names.
//!
//! What is read: every file the globs match (compressed names only when the glob names them),
//! plus the rotated copies of those files (`x_json.log.1`, `x_json.log-20250101`) that were
//! written since following began and never read — a generation rotated away between two scans.
//! Following began when the first follower of that name started: every offset row records its
//! follower's start as `first_seen` (not the time of its first commit), so a generation rotated
//! away before the first commit and not read before a restart is still read after it.
//! Rotated files older than that are not read. Files appearing are opened the moment the
//! notifier (`fswatch.rs`) sees them, so a file rotated away again (and deleted) before the next
//! scan is still read through its handle; the scan every second is the fallback.
//!
//! `copytruncate`: a followed file found shorter than its offset, or no longer starting with its
//! fingerprint, was truncated; the rest of its earlier content is read from the copy (a rotated
//! name with the same first bytes) from the same offset, then the file from its start. Lines the
//! writer added between logrotate's copy and its truncation, and not read by then, are lost.
//!
//! Each batch of rows is committed with the file's new offset in one transaction, so after a
//! crash reading resumes exactly after the last committed line. It never advances an offset
//! without committing the rows of the lines it skips over, never reads from a position it has
//! not committed first (a failed commit is retried from the same offset), and never commits
//! bytes read from a file that no longer starts with its fingerprint. File I/O is plain
//! blocking reads of bounded chunks (local log files).

use super::follow_offsets::{self, CommitError, Stored};
use super::fswatch::Watch;
use super::identity::{self, FileId, Fingerprint};
use super::lines;
use super::metrics::Metrics;
use crate::config::RetentionConfig;
use crate::db::Pool;
use crate::error::Result;
use crate::logs::copy::Row;
use crate::logs::partition_plan;
use crate::logs::record::{self, Class};
use chrono::Utc;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{ErrorKind, Read, Seek};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

/// Most bytes read from a file per batch.
const CHUNK: u64 = 8 << 20;
/// Poll when no notification came (notifications wake the follower at once).
const IDLE: Duration = Duration::from_millis(200);
const RESCAN: Duration = Duration::from_secs(1);
/// Pause after a failed step (database down): retried from the committed offset.
const BACKOFF: Duration = Duration::from_secs(2);
/// How often vanished files are looked for in the offset table (more often for a short grace).
const HOUSEKEEP: Duration = Duration::from_secs(30);
/// A file no longer written to for this long is done: its last bytes are a line even without a
/// newline (a rotated file), and a file that is not the writer's current one is closed once
/// read (its handle released; it is looked at again if it changes).
const SETTLED: Duration = Duration::from_secs(2);

pub struct Follower {
    pub pool: Pool,
    pub schema: String,
    pub retention: RetentionConfig,
    pub globs: Vec<String>,
    pub max_line_bytes: usize,
    pub batch_rows: usize,
    /// How long a file is gone before its offset row is deleted (`ingest.forget_after`).
    pub forget_after: Duration,
    pub metrics: Arc<Metrics>,
    /// The SIEM forwarder for retention-0 classes; records are durably handed to it before the
    /// offset that covers them is committed (at-least-once: a crash in between resends them).
    pub sink: Option<Arc<dyn crate::logs::ingest::RecordSink>>,
}

/// One followed file.
struct Tracked {
    /// Where it was last found (or where it was when the notifier opened it).
    path: PathBuf,
    /// The open file, wherever it is now.
    file: File,
    /// Where reading stands (always the committed offset).
    pos: u64,
    /// The first bytes read so far; the file must still start with them.
    fp: Fingerprint,
    /// What the database holds for this file (what the next commit expects).
    committed: Option<Stored>,
    skipping: bool,
    /// At a name the globs match that is not a rotated name: the writer's current file.
    active: bool,
    /// Found at a followed or rotated name by the last scan.
    seen: bool,
    /// A gzip file the glob names: offsets count uncompressed bytes; read once complete.
    gz: bool,
    /// (length, mtime) of a gzip file when it was read to its end.
    gz_done: Option<(u64, SystemTime)>,
    /// When this follower began following (`State::started`): a new offset row's `first_seen`.
    following_since: SystemTime,
}

/// What a name is to the follower.
#[derive(Debug, Clone)]
enum Kind {
    /// Matched by a glob; `active` unless it is a rotated name of another match.
    Matched { active: bool },
    /// A rotated name of the matched file `base`, not matched itself.
    Rotated { base: PathBuf },
}

impl Kind {
    fn active(&self) -> bool {
        matches!(self, Kind::Matched { active: true })
    }
}

/// What one step did with a file.
enum Stepped {
    Idle,
    Moved,
    /// Shorter than its offset, or it no longer starts with its fingerprint.
    Truncated,
    /// Read to its end, quiet, and not the writer's current file: closed.
    Done,
}

struct State {
    tracked: BTreeMap<FileId, Tracked>,
    /// Files left alone until they change, with the (length, mtime) they had then: rotated
    /// files older than following, and files read to their end and closed.
    ignored: HashMap<FileId, (u64, SystemTime)>,
    /// Per followed name: rotated files modified since this are read when never seen.
    since: HashMap<PathBuf, SystemTime>,
    /// When this follower began (less a second): recorded as `first_seen` of the rows it adds.
    started: SystemTime,
    watch: Watch,
    /// Files the notifier opened, not judged yet (kept across a failed scan).
    pending: Vec<(PathBuf, File)>,
    /// Folders the last scan listed, and the identity of every file found in them.
    dirs: HashSet<PathBuf>,
    present: HashSet<FileId>,
}

fn name_of(p: &Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

fn parent_of(p: &Path) -> &Path {
    p.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn settled(m: &std::fs::Metadata) -> bool {
    m.nlink() == 0
        || m.modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= SETTLED)
}

impl Follower {
    /// Follow until `stop`; the batch being committed when it turns true is finished first.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut st = State {
            tracked: BTreeMap::new(),
            ignored: HashMap::new(),
            since: HashMap::new(),
            // Coarse file timestamps may lag the clock a little.
            started: SystemTime::now() - Duration::from_secs(1),
            watch: Watch::default(),
            pending: Vec::new(),
            dirs: HashSet::new(),
            present: HashSet::new(),
        };
        let wake = st.watch.wake.clone();
        let mut last_scan: Option<Instant> = None;
        let mut last_housekeep = Instant::now();
        while !*stop.borrow() {
            let (opened, rescan) = st.watch.take();
            st.pending.extend(opened);
            if rescan || !st.pending.is_empty() || last_scan.is_none_or(|t| t.elapsed() >= RESCAN) {
                last_scan = Some(Instant::now());
                self.scan(&mut st).await;
            }
            let every = HOUSEKEEP.min(self.forget_after.max(Duration::from_secs(1)));
            if last_housekeep.elapsed() >= every && !st.dirs.is_empty() {
                last_housekeep = Instant::now();
                self.housekeep(&st).await;
            }
            let mut progressed = false;
            let mut failed = false;
            let ids: Vec<FileId> = st.tracked.keys().copied().collect();
            for id in ids {
                if *stop.borrow() {
                    break;
                }
                let Some(t) = st.tracked.get_mut(&id) else {
                    continue;
                };
                let r = match self.step(id, t).await {
                    Ok(Stepped::Idle) => Ok(false),
                    Ok(Stepped::Moved) => Ok(true),
                    Ok(Stepped::Done) => {
                        tracing::debug!(path = %t.path.display(), "read to its end and quiet: closed");
                        // Still at a rotated name: looked at again only once it changes.
                        if let (true, Ok(m)) = (t.seen, t.file.metadata()) {
                            if let Ok(mtime) = m.modified() {
                                st.ignored.insert(id, (m.len(), mtime));
                            }
                        }
                        st.tracked.remove(&id);
                        Ok(false)
                    }
                    Ok(Stepped::Truncated) => self.truncated(&mut st, id).await.map(|_| true),
                    Err(e) => Err(e),
                };
                match r {
                    Ok(p) => progressed |= p,
                    Err(e) => {
                        failed = true;
                        let path = st.tracked.get(&id).map(|t| t.path.display().to_string());
                        tracing::warn!(path = path.unwrap_or_default(), error = %e, "following: will retry from the committed offset");
                    }
                }
            }
            if !progressed || failed {
                let pause = if failed { BACKOFF } else { IDLE };
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = wake.notified(), if !failed => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
            }
        }
    }

    /// Find the files to follow: glob matches and their rotated names; judge the new ones.
    async fn scan(&self, st: &mut State) {
        let mut matched: HashSet<PathBuf> = HashSet::new();
        let mut dirs: HashSet<PathBuf> = HashSet::new();
        for g in &self.globs {
            // Watch the folder a glob names even before anything matches in it.
            if let Some(d) = Path::new(g).parent().filter(|d| {
                !d.as_os_str().is_empty() && !d.to_string_lossy().contains(['*', '?', '['])
            }) {
                if d.is_dir() {
                    dirs.insert(d.to_path_buf());
                }
            }
            let paths = match glob::glob(g) {
                Ok(paths) => paths,
                Err(e) => {
                    tracing::warn!(glob = %g, error = %e, "invalid ingest.paths glob");
                    continue;
                }
            };
            let compressed_ok = identity::glob_names_compressed(g);
            for p in paths.filter_map(|p| p.ok()).filter(|p| p.is_file()) {
                let name = name_of(&p);
                if identity::is_compressed(name) && !(compressed_ok && name.ends_with(".gz")) {
                    if compressed_ok {
                        tracing::debug!(path = %p.display(), "only gzip is read of compressed files");
                    }
                    continue;
                }
                dirs.insert(parent_of(&p).to_path_buf());
                matched.insert(p);
            }
        }
        // Each folder listed once: what every file there is to us.
        let mut found: Vec<(PathBuf, Kind)> = Vec::new();
        let mut present = HashSet::new();
        for dir in &dirs {
            st.watch.watch_dir(dir);
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in entries.filter_map(|e| e.ok()) {
                let Ok(m) = e.metadata() else { continue };
                if !m.is_file() {
                    continue;
                }
                present.insert(FileId::of(&m));
                let path = dir.join(e.file_name());
                if let Some(kind) = classify(&path, &matched) {
                    found.push((path, kind));
                }
            }
        }
        st.ignored.retain(|id, _| present.contains(id));
        st.dirs = dirs;
        st.present = present;
        // A followed name before its rotated names (its truncation finds their copies first).
        found.sort_by(|a, b| (name_of(&a.0).len(), &a.0).cmp(&(name_of(&b.0).len(), &b.0)));
        for t in st.tracked.values_mut() {
            t.seen = false;
            t.active = false;
        }
        for (path, kind) in &found {
            if let Err(e) = self.consider(st, path, kind, None).await {
                tracing::warn!(path = %path.display(), error = %e, "cannot follow yet");
            }
        }
        // Opened by the notifier: read even if rotated away and deleted since.
        for (path, file) in std::mem::take(&mut st.pending) {
            let Ok(m) = file.metadata() else { continue };
            let id = FileId::of(&m);
            if st.tracked.contains_key(&id) {
                continue;
            }
            let Some(kind) = classify(&path, &matched) else {
                continue;
            };
            let Ok(again) = file.try_clone() else {
                continue;
            };
            match self.consider(st, &path, &kind, Some(file)).await {
                Ok(false) => st.pending.push((path, again)),
                Ok(true) => {
                    if let Some(t) = st.tracked.get_mut(&id) {
                        // Not at this name any more: read it to its end, then close it.
                        t.seen = false;
                        t.active = false;
                    }
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot follow yet");
                    st.pending.push((path, again));
                }
            }
        }
    }

    /// Judge a file found at `path`: resume it, read it from the start, or leave it alone.
    /// False: not judged yet (a rotated name still being written), to be looked at again.
    async fn consider(
        &self,
        st: &mut State,
        path: &Path,
        kind: &Kind,
        handle: Option<File>,
    ) -> Result<bool> {
        let file = match handle {
            Some(f) => f,
            None => match File::open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(true),
                Err(e) => return Err(e.into()),
            },
        };
        let m = file.metadata()?;
        let id = FileId::of(&m);
        if let Some(t) = st.tracked.get_mut(&id) {
            t.path = path.to_path_buf();
            t.seen = true;
            t.active |= kind.active();
            return Ok(true);
        }
        let mtime = m.modified()?;
        if st.ignored.get(&id) == Some(&(m.len(), mtime)) {
            return Ok(true);
        }
        let gz = name_of(path).ends_with(".gz");
        let (pos, committed) = match follow_offsets::load(&self.pool, &self.schema, id).await? {
            Some(c) if (gz || m.len() >= c.offset) && c.fp.matches(&file)? => {
                tracing::info!(path = %path.display(), offset = c.offset, "following");
                (c.offset, Some(c))
            }
            Some(c) => {
                tracing::warn!(path = %path.display(), offset = c.offset,
                    "truncated or rewritten while not followed: reading it from the start");
                self.finish_copy(st, path, c, false).await?;
                (0, Some(c))
            }
            None => {
                if !kind.active() && !settled(&m) {
                    // Rotated names are judged once quiet: logrotate may still be writing a
                    // copy (copytruncate) that must not be taken for a new file.
                    return Ok(false);
                }
                if let Some(of) = copy_of(st, &file, m.len())? {
                    // A copy (copytruncate) of a file being read: read through the original;
                    // taken up from its offset if the original turns out truncated.
                    tracing::debug!(path = %path.display(), of = %of.display(), "a copy of a followed file");
                    return Ok(true);
                }
                if let Kind::Rotated { base } = kind {
                    if mtime < self.since(st, base).await? {
                        tracing::debug!(path = %path.display(), "rotated before following began: not read");
                        st.ignored.insert(id, (m.len(), mtime));
                        return Ok(true);
                    }
                    tracing::info!(path = %path.display(), "a rotated file never read (rotated between two looks): reading it");
                } else {
                    tracing::info!(path = %path.display(), "following a new file");
                }
                (0, None)
            }
        };
        st.tracked.insert(
            id,
            Tracked {
                path: path.to_path_buf(),
                file,
                pos,
                fp: if pos == 0 {
                    Fingerprint::empty()
                } else {
                    committed.map_or_else(Fingerprint::empty, |c| c.fp)
                },
                committed,
                skipping: false,
                active: kind.active(),
                seen: true,
                gz,
                gz_done: None,
                following_since: st.started,
            },
        );
        Ok(true)
    }

    /// Since when the rotated names of `base` hold files written while following: the first
    /// time any file of that name was read (the database), or this process's start.
    async fn since(&self, st: &mut State, base: &Path) -> Result<SystemTime> {
        if let Some(s) = st.since.get(base) {
            return Ok(*s);
        }
        let first =
            follow_offsets::first_seen(&self.pool, &self.schema, &base.to_string_lossy()).await?;
        let s = first
            .map(SystemTime::from)
            .map_or(st.started, |f| f.min(st.started));
        st.since.insert(base.to_path_buf(), s);
        Ok(s)
    }

    /// A followed file was truncated: finish its earlier content from the copy, if there is
    /// one, then read it from the start.
    async fn truncated(&self, st: &mut State, id: FileId) -> Result<()> {
        let Some(t) = st.tracked.get(&id) else {
            return Ok(());
        };
        let (path, old, skipping) = (
            t.path.clone(),
            Stored {
                offset: t.pos,
                fp: t.fp,
            },
            t.skipping,
        );
        tracing::warn!(path = %path.display(), offset = old.offset, "truncated (copytruncate?): reading it from the start");
        self.finish_copy(st, &path, old, skipping).await?;
        let Some(t) = st.tracked.get_mut(&id) else {
            return Ok(());
        };
        let new = Stored {
            offset: 0,
            fp: Fingerprint::empty(),
        };
        self.commit_rows(id, t, new, &[]).await?;
        t.skipping = false;
        Ok(())
    }

    /// The file at `path` held `old` and was truncated: find the copy logrotate made of it (a
    /// rotated name, never read, starting with the same bytes), register it at `old`'s offset
    /// and follow it from there, so the lines after that offset are read once.
    async fn finish_copy(
        &self,
        st: &mut State,
        path: &Path,
        old: Stored,
        skipping: bool,
    ) -> Result<()> {
        if old.fp.len > 0 {
            let base = name_of(path).to_string();
            let dir = parent_of(path);
            let mut names: Vec<PathBuf> = std::fs::read_dir(dir)?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    let n = name_of(p);
                    identity::rotated_name_of(&base, n) && !identity::is_compressed(n)
                })
                .collect();
            names.sort_by_key(|p| (name_of(p).len(), p.clone()));
            for p in names {
                let Ok(f) = File::open(&p) else { continue };
                let m = f.metadata()?;
                let id = FileId::of(&m);
                if !m.is_file() || st.tracked.contains_key(&id) || !old.fp.matches(&f)? {
                    continue;
                }
                if follow_offsets::load(&self.pool, &self.schema, id)
                    .await?
                    .is_some()
                {
                    continue;
                }
                let start = old.offset.min(m.len());
                tracing::info!(path = %path.display(), copy = %p.display(), from = start,
                    bytes = m.len() - start, "reading the rest of the truncated file from its copy");
                let mut t = Tracked {
                    path: p.clone(),
                    file: f,
                    pos: start,
                    fp: old.fp,
                    committed: None,
                    skipping,
                    active: false,
                    seen: true,
                    gz: false,
                    gz_done: None,
                    following_since: st.started,
                };
                // Registered first: a crash before the original's reset never reads it whole.
                let at = Stored {
                    offset: start,
                    fp: old.fp,
                };
                self.commit_rows(id, &mut t, at, &[]).await?;
                st.tracked.insert(id, t);
                return Ok(());
            }
        }
        tracing::warn!(path = %path.display(), offset = old.offset,
            "no copy of the truncated content found: lines written after this offset before the truncation could not be read");
        Ok(())
    }

    /// Read and commit one batch, or say what happened to the file.
    async fn step(&self, id: FileId, t: &mut Tracked) -> Result<Stepped> {
        let m = t.file.metadata()?;
        if t.gz {
            return self.step_gz(id, t, &m).await;
        }
        let len = m.len();
        if len < t.pos {
            return Ok(Stepped::Truncated);
        }
        if len == t.pos {
            if (!t.seen || !t.active) && settled(&m) {
                return Ok(Stepped::Done);
            }
            return Ok(Stepped::Idle);
        }
        let want = (len - t.pos).min(CHUNK);
        let mut buf = vec![0; want as usize];
        match t.file.read_exact_at(&mut buf, t.pos) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(Stepped::Truncated),
            Err(e) => return Err(e.into()),
        }
        let last = !t.active && want == len - t.pos && settled(&m);
        let cut = lines::cut(
            &buf,
            t.skipping,
            self.max_line_bytes,
            self.batch_rows.max(1),
            last,
        );
        if cut.consumed == 0 {
            return Ok(Stepped::Idle);
        }
        let offset = t.pos + cut.consumed as u64;
        // These bytes count only if the file still starts as it did (not truncated meanwhile).
        let Some(fp) = t.fp.extend(&t.file, offset)? else {
            return Ok(Stepped::Truncated);
        };
        self.commit_lines(id, t, &cut, Stored { offset, fp })
            .await?;
        t.skipping = cut.skipping;
        Ok(Stepped::Moved)
    }

    /// A gzip file the glob names: read once complete (quiet), from the uncompressed offset.
    async fn step_gz(&self, id: FileId, t: &mut Tracked, m: &std::fs::Metadata) -> Result<Stepped> {
        let now = (m.len(), m.modified()?);
        if t.gz_done == Some(now) {
            return Ok(Stepped::Done);
        }
        if !settled(m) {
            return Ok(Stepped::Idle);
        }
        (&t.file).seek(std::io::SeekFrom::Start(0))?;
        let mut dec = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(&t.file));
        let mut buf = Vec::new();
        let read = std::io::copy(&mut (&mut dec).take(t.pos), &mut std::io::sink())
            .and_then(|_| (&mut dec).take(CHUNK).read_to_end(&mut buf));
        if let Err(e) = read {
            tracing::warn!(path = %t.path.display(), error = %e, "not a readable gzip file; skipped");
            t.gz_done = Some(now);
            return Ok(Stepped::Idle);
        }
        let last = (buf.len() as u64) < CHUNK;
        let cut = lines::cut(
            &buf,
            t.skipping,
            self.max_line_bytes,
            self.batch_rows.max(1),
            last,
        );
        if cut.consumed == 0 {
            t.gz_done = Some(now);
            return Ok(Stepped::Idle);
        }
        let offset = t.pos + cut.consumed as u64;
        let Some(fp) = t.fp.extend(&t.file, identity::FP_MAX.min(now.0))? else {
            return Ok(Stepped::Idle);
        };
        self.commit_lines(id, t, &cut, Stored { offset, fp })
            .await?;
        t.skipping = cut.skipping;
        Ok(Stepped::Moved)
    }

    async fn housekeep(&self, st: &State) {
        let mut present = st.present.clone();
        present.extend(st.tracked.keys().copied());
        match follow_offsets::housekeep(
            &self.pool,
            &self.schema,
            &st.dirs,
            &present,
            self.forget_after,
        )
        .await
        {
            Ok(k) if k.forgotten > 0 => {
                tracing::info!(
                    forgotten = k.forgotten,
                    "offsets of files gone for ingest.forget_after deleted"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "offset housekeeping skipped"),
        }
    }

    async fn commit_lines(
        &self,
        id: FileId,
        t: &mut Tracked,
        cut: &lines::Cut<'_>,
        new: Stored,
    ) -> Result<()> {
        let now = Utc::now();
        let mut rows = Vec::new();
        let mut rejected = cut.too_long.len() as u64;
        let mut dropped = [0u64; 2];
        let mut forward = Vec::new();
        for line in &cut.lines {
            if line.trim_ascii().is_empty() {
                continue;
            }
            match record::parse_line(line, self.max_line_bytes) {
                Ok(rec) => {
                    let class = rec.class();
                    if partition_plan::window(&self.retention, class).is_zero() {
                        // To the SIEM when one is configured, else counted, not stored.
                        if self.sink.is_some() {
                            forward.push(rec);
                        } else {
                            dropped[class as usize] += 1;
                        }
                        continue;
                    }
                    rows.push(Row::new(now, rec, (0, 0)));
                }
                Err(e) => {
                    rejected += 1;
                    tracing::warn!(path = %t.path.display(), reason = %e, "rejected a line");
                }
            }
        }
        if let Some(sink) = &self.sink {
            if !forward.is_empty() {
                sink.submit(&forward).await?;
                for class in Class::ALL {
                    let n = forward.iter().filter(|r| r.class() == class).count() as u64;
                    self.metrics.add(
                        "forwarded_total",
                        &[("class", class.as_str()), ("source", "file")],
                        n,
                    );
                }
            }
        }
        let refused = self.commit_rows(id, t, new, &rows).await?;
        for (i, reason) in &refused {
            tracing::warn!(path = %t.path.display(), reason = %reason, row = i, "the database refused a line");
        }
        let mut stored = [0u64; 2];
        for (i, r) in rows.iter().enumerate() {
            if !refused.iter().any(|(j, _)| *j == i) {
                stored[r.record.class() as usize] += 1;
            }
        }
        for class in Class::ALL {
            let l = [("class", class.as_str()), ("source", "file")];
            self.metrics
                .add("ingested_total", &l, stored[class as usize]);
            self.metrics
                .add("dropped_total", &l, dropped[class as usize]);
        }
        self.metrics.add(
            "rejected_total",
            &[("source", "file")],
            rejected + refused.len() as u64,
        );
        Ok(())
    }

    /// Commit `rows` with `new` as the file's position; on a conflict, take the database's view.
    async fn commit_rows(
        &self,
        id: FileId,
        t: &mut Tracked,
        new: Stored,
        rows: &[Row],
    ) -> Result<Vec<(usize, String)>> {
        let path = t.path.to_string_lossy();
        let at = follow_offsets::ReadAt {
            path: &path,
            following_since: t.following_since.into(),
        };
        let r = follow_offsets::commit(&self.pool, &self.schema, id, at, t.committed, new, rows);
        match r.await {
            Ok(refused) => {
                t.pos = new.offset;
                t.fp = new.fp;
                t.committed = Some(new);
                Ok(refused)
            }
            Err(CommitError::Db(e)) => Err(e),
            Err(CommitError::Conflict) => {
                tracing::warn!(path = %t.path.display(), "another follower moved this file's offset; taking its position");
                let db = follow_offsets::load(&self.pool, &self.schema, id).await?;
                t.committed = db;
                if let Some(c) = db {
                    t.pos = c.offset;
                    t.fp = c.fp;
                    t.skipping = false;
                }
                Err(crate::Error::temporary("offset moved by another follower"))
            }
        }
    }
}

/// What the name `path` is to the follower, given the glob matches of this scan.
fn classify(path: &Path, matched: &HashSet<PathBuf>) -> Option<Kind> {
    let dir = parent_of(path);
    let name = name_of(path);
    let base_of = |n: &str| {
        matched
            .iter()
            .filter(|m| parent_of(m) == dir)
            .find(|m| identity::rotated_name_of(name_of(m), n))
            .cloned()
    };
    if matched.contains(path) {
        return Some(Kind::Matched {
            active: base_of(name).is_none(),
        });
    }
    if identity::is_compressed(name) {
        return None;
    }
    base_of(name).map(|base| Kind::Rotated { base })
}

/// The followed file that `file` is a copy of (it starts with the same bytes), if any.
fn copy_of<'a>(st: &'a State, file: &File, len: u64) -> std::io::Result<Option<&'a Path>> {
    for t in st.tracked.values() {
        if t.fp.len > 0 && len >= t.fp.len as u64 && t.fp.matches(file)? {
            return Ok(Some(&t.path));
        }
    }
    Ok(None)
}
