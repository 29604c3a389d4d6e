//! Following files (`ingest.paths`, globs) with `tail -F` semantics: new files matching a glob
//! are picked up, a rotated file (renamed, a new one at its path) is read to its end through
//! the open handle before switching to the new file, a truncated file is read again from the
//! start. Each batch of rows is committed with the file's new offset (`offsets.rs`), so after
//! a crash reading resumes exactly after the last committed line.
//!
//! It never advances an offset without committing the rows of the lines it skips over, and
//! never reads from a position it has not committed first (a failed commit is retried from the
//! same offset). File I/O is plain blocking reads of bounded chunks (local log files).

use super::lines;
use super::metrics::Metrics;
use super::offsets::{self, CommitError, Position};
use crate::config::RetentionConfig;
use crate::db::Pool;
use crate::error::Result;
use crate::logs::copy::Row;
use crate::logs::partition;
use crate::logs::record::{self, Class};
use chrono::Utc;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Most bytes read from a file per batch.
const CHUNK: usize = 8 << 20;
const IDLE: Duration = Duration::from_millis(200);
const RESCAN: Duration = Duration::from_secs(1);
/// Pause after a failed step (database down): retried from the committed offset.
const BACKOFF: Duration = Duration::from_secs(2);

pub struct Follower {
    pub pool: Pool,
    pub schema: String,
    pub retention: RetentionConfig,
    pub globs: Vec<String>,
    pub max_line_bytes: usize,
    pub batch_rows: usize,
    pub metrics: Arc<Metrics>,
    /// The SIEM forwarder for retention-0 classes; records are durably handed to it before the
    /// offset that covers them is committed (at-least-once: a crash in between resends them).
    pub sink: Option<Arc<dyn crate::logs::ingest::RecordSink>>,
}

/// One followed path.
struct Tracked {
    path: PathBuf,
    key: String,
    /// The open file (possibly already renamed away) and where reading stands in it.
    file: File,
    pos: Position,
    /// What the database holds for this path (what the next commit expects).
    committed: Option<Position>,
    skipping: bool,
}

impl Follower {
    /// Follow until `stop`; the batch being committed when it turns true is finished first.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut tracked: BTreeMap<PathBuf, Tracked> = BTreeMap::new();
        let mut last_scan: Option<Instant> = None;
        while !*stop.borrow() {
            if last_scan.is_none_or(|t| t.elapsed() >= RESCAN) {
                last_scan = Some(Instant::now());
                for path in self.expand() {
                    if tracked.contains_key(&path) {
                        continue;
                    }
                    match self.open(&path).await {
                        Ok(Some(t)) => {
                            tracing::info!(path = %path.display(), offset = t.pos.offset, "following");
                            tracked.insert(path, t);
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "cannot follow yet")
                        }
                    }
                }
            }
            let mut progressed = false;
            let mut failed = false;
            for t in tracked.values_mut() {
                if *stop.borrow() {
                    break;
                }
                match self.step(t).await {
                    Ok(p) => progressed |= p,
                    Err(e) => {
                        failed = true;
                        tracing::warn!(path = %t.path.display(), error = %e, "following: will retry from the committed offset");
                    }
                }
            }
            if !progressed || failed {
                let pause = if failed { BACKOFF } else { IDLE };
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
            }
        }
    }

    fn expand(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for g in &self.globs {
            match glob::glob(g) {
                Ok(paths) => out.extend(paths.filter_map(|p| p.ok()).filter(|p| p.is_file())),
                Err(e) => tracing::warn!(glob = %g, error = %e, "invalid ingest.paths glob"),
            }
        }
        out
    }

    /// Start following `path` where the database says it stands.
    async fn open(&self, path: &Path) -> Result<Option<Tracked>> {
        let key = path.to_string_lossy().into_owned();
        let committed = offsets::load(&self.pool, &self.schema, &key).await?;
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let m = file.metadata()?;
        let here = Position {
            dev: m.dev(),
            inode: m.ino(),
            offset: 0,
        };
        let (file, pos) = match committed {
            Some(c) if (c.dev, c.inode) == (here.dev, here.inode) => {
                if m.len() < c.offset {
                    tracing::warn!(path = %key, "truncated while not followed; reading from the start");
                    (file, here)
                } else {
                    (file, c)
                }
            }
            Some(c) => match find_inode(path, c.dev, c.inode) {
                // Rotated while not followed: finish the old file first.
                Some(old) => {
                    tracing::info!(path = %key, rotated_to = %old.display(), "finishing the rotated file first");
                    (File::open(&old)?, c)
                }
                None => {
                    tracing::warn!(path = %key, offset = c.offset,
                        "the file followed before was rotated away and is gone; lines written to it after the committed offset could not be read");
                    (file, here)
                }
            },
            None => (file, here),
        };
        Ok(Some(Tracked {
            path: path.to_path_buf(),
            key,
            file,
            pos,
            committed,
            skipping: false,
        }))
    }

    /// Read and commit one batch, or handle rotation/truncation. True when something moved.
    async fn step(&self, t: &mut Tracked) -> Result<bool> {
        let at_path = std::fs::metadata(&t.path).ok();
        let rotated = at_path
            .as_ref()
            .is_some_and(|m| (m.dev(), m.ino()) != (t.pos.dev, t.pos.inode));
        let mut buf = Vec::new();
        t.file.seek(SeekFrom::Start(t.pos.offset))?;
        (&t.file).take(CHUNK as u64).read_to_end(&mut buf)?;
        let last = rotated && buf.len() < CHUNK;
        let cut = lines::cut(
            &buf,
            t.skipping,
            self.max_line_bytes,
            self.batch_rows.max(1),
            last,
        );
        if cut.consumed > 0 {
            let new = Position {
                offset: t.pos.offset + cut.consumed as u64,
                ..t.pos
            };
            self.commit_lines(t, &cut, new).await?;
            t.skipping = cut.skipping;
            return Ok(true);
        }
        if rotated {
            let file = match File::open(&t.path) {
                Ok(f) => f,
                Err(_) => return Ok(false), // gone again; try next round
            };
            let m = file.metadata()?;
            let new = Position {
                dev: m.dev(),
                inode: m.ino(),
                offset: 0,
            };
            self.commit_position(t, new).await?;
            tracing::info!(path = %t.key, "rotated: following the new file");
            t.file = file;
            t.skipping = false;
            return Ok(true);
        }
        if at_path.is_some_and(|m| m.len() < t.pos.offset) {
            tracing::warn!(path = %t.key, offset = t.pos.offset, "truncated: reading from the start");
            let new = Position { offset: 0, ..t.pos };
            self.commit_position(t, new).await?;
            t.skipping = false;
            return Ok(true);
        }
        Ok(false)
    }

    async fn commit_position(&self, t: &mut Tracked, new: Position) -> Result<()> {
        self.commit_rows(t, new, &[]).await.map(|_| ())
    }

    async fn commit_lines(
        &self,
        t: &mut Tracked,
        cut: &lines::Cut<'_>,
        new: Position,
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
                    if partition::window(&self.retention, class).is_zero() {
                        // To the SIEM when one is configured, else counted, not stored.
                        if self.sink.is_some() {
                            forward.push(rec);
                        } else {
                            dropped[class as usize] += 1;
                        }
                        continue;
                    }
                    rows.push(Row {
                        log_id: uuid::Uuid::new_v4(),
                        ingest_date: now,
                        record: rec,
                        origin: (0, 0),
                    });
                }
                Err(e) => {
                    rejected += 1;
                    tracing::warn!(path = %t.key, reason = %e, "rejected a line");
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
        let refused = self.commit_rows(t, new, &rows).await?;
        for (i, reason) in &refused {
            tracing::warn!(path = %t.key, reason = %reason, row = i, "the database refused a line");
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

    /// Commit `rows` with `new` as the path's position; on a conflict, take the database's view.
    async fn commit_rows(
        &self,
        t: &mut Tracked,
        new: Position,
        rows: &[Row],
    ) -> Result<Vec<(usize, String)>> {
        match offsets::commit(&self.pool, &self.schema, &t.key, t.committed, new, rows).await {
            Ok(refused) => {
                t.pos = new;
                t.committed = Some(new);
                Ok(refused)
            }
            Err(CommitError::Db(e)) => Err(e),
            Err(CommitError::Conflict) => {
                tracing::warn!(path = %t.key, "another follower moved this file's offset; taking its position");
                let db = offsets::load(&self.pool, &self.schema, &t.key).await?;
                t.committed = db;
                if let Some(p) = db.filter(|p| (p.dev, p.inode) == (t.pos.dev, t.pos.inode)) {
                    t.pos = p;
                    t.skipping = false;
                }
                Err(crate::Error::temporary("offset moved by another follower"))
            }
        }
    }
}

/// A file in `path`'s directory with this device and inode (a rotated copy), if any.
fn find_inode(path: &Path, dev: u64, inode: u64) -> Option<PathBuf> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .find(|e| {
            e.metadata()
                .is_ok_and(|m| m.is_file() && m.dev() == dev && m.ino() == inode)
        })
        .map(|e| e.path())
}
