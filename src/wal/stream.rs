//! `kasm-db wal stream`: the primary's WAL, continuously, into the backup target.
//!
//! 1. The role must have REPLICATION ([`crate::db::replication::check`]; a managed server
//!    without it is refused, pointing to the provider's own point-in-time recovery).
//! 2. The `WalStream` advisory lock is held on a session of its own for as long as this runs:
//!    one leader among replicas (a second run exits 75). A lost session is reopened and the
//!    lock taken again; if another run took it meanwhile, this one stops (75). The slot admits
//!    one consumer at a time too, so two `pg_receivewal` never both stream.
//! 3. The physical slot `backup.wal_slot` is created when missing (`pg_receivewal
//!    --create-slot --if-not-exists`): the primary keeps every segment until it is streamed,
//!    across restarts of either side, so a restart resumes where the slot stands, no gap.
//! 4. `pg_receivewal` (the server's major or newer) writes segments into a local staging
//!    directory; it reconnects by itself when the primary restarts. Every `backup.wal_flush`
//!    the staging directory is swept: each completed segment (and timeline history file) is
//!    compressed and checksummed like a dump, stored, its record written after it, the partial
//!    copy of it deleted, and then the local file removed; the segment still being written is
//!    stored as a new partial copy when it changed. So the committed work at risk when the
//!    primary dies is at most `wal_flush` old. A file that cannot be stored (the target away,
//!    a dropped connection) is retried ([`STORE_RETRY`], the project's one retry policy) and
//!    otherwise stays staged for the next sweep: nothing leaves staging before it is stored.
//! 5. Each `backup.copy_to` target is kept caught up with the main target's WAL by a task of
//!    its own ([`super::copies`]): a copy that is down never holds up the main target, and
//!    gets what it missed when it is back.
//! 6. SIGTERM/SIGINT stops pg_receivewal, one last sweep stores what it received (and the
//!    copies get one last round), exit 0.
//!
//! With `backup.encryption_key_file` every stored object (completed segment, partial copy,
//! history file) is sealed as a dump is ([`crypt`]); its record names the key id, and its size
//! and SHA-256 are of the stored, encrypted bytes. The local staging files stay as
//! pg_receivewal wrote them (on the stream's own host, mode 0700).
//!
//! Never deletes a local segment before its record is stored; never logs the password or the
//! key.

use crate::archive::catalog;
use crate::archive::compress::{self, Digest, Method};
use crate::archive::crypt;
use crate::archive::storage::{self, Piece, Storage};
use crate::archive::target::Target;
use crate::archive::wal::{self, Record};
use crate::config::Config;
use crate::db::locks::{self, Lock};
use crate::db::{self, DbTarget, Retry, replication};
use crate::error::{Error, Kind, Result};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use tokio::sync::mpsc;

/// One WAL stream to run.
pub struct StreamSpec<'a> {
    pub db: &'a DbTarget,
    pub config: &'a Config,
    pub target: &'a Target,
    /// Where pg_receivewal writes (kept across restarts: completed segments not yet stored
    /// are stored first).
    pub staging: &'a Path,
    /// The process environment (only [`crate::pgtools::child_env`] of it reaches
    /// pg_receivewal).
    pub env: &'a BTreeMap<String, String>,
    /// Called once this run holds the leader's lock (`serve`'s `kasm_db_wal_streaming`: a
    /// replica that only tries, and finds another leading, never reads 1).
    pub leading: Option<&'a (dyn Fn() + Send + Sync)>,
}

/// The staging directory a stream uses unless told (`--staging-dir`): under the temporary
/// directory, named by the slot and by a digest of the database and the target, so streams of
/// different servers or to different targets never share one.
pub fn default_staging(temp: &Path, slot: &str, db: &DbTarget, target: &Target) -> PathBuf {
    let who = format!("{}\n{}\n{slot}", db.redacted(), target);
    let (digest, _) = digest(who.as_bytes());
    temp.join(format!("kasm-db-wal-{slot}-{}", &digest[..12]))
}

/// The file in a staging directory that says whose WAL it holds.
const STAGING_IDENTITY: &str = "kasm-db-stream.json";

/// Make `dir` this stream's alone: an exclusive lock (a second process on it exits 75, so two
/// streams never take each other's segments), and the identity of the stream that staged what
/// is there. WAL staged by another stream (another server, target or slot) is never stored
/// under this one: that is refused, naming both.
fn claim_staging(
    dir: &Path,
    db: &str,
    target: &str,
    slot: &str,
) -> Result<crate::private::DirLock> {
    let lock = match crate::private::try_lock_dir(dir, "stream.lock") {
        Ok(Some(l)) => l,
        Ok(None) => {
            return Err(Error::temporary(format!(
                "the WAL staging directory {} is in use by another `wal stream` (two streams \
                 must never share one: give each its own --staging-dir)",
                dir.display()
            )));
        }
        Err(e) => {
            return Err(Error::failed(format!(
                "cannot lock the WAL staging directory {}: {e}",
                dir.display()
            )));
        }
    };
    let me = serde_json::json!({"database": db, "target": target, "slot": slot});
    let path = dir.join(STAGING_IDENTITY);
    let staged_any = std::fs::read_dir(dir)
        .map_err(|e| Error::failed(format!("cannot read {}: {e}", dir.display())))?
        .filter_map(|e| e.ok())
        .any(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            wal::is_segment(&n) || wal::is_history(&n) || n.ends_with(".partial")
        });
    match std::fs::read(&path) {
        Ok(bytes) => {
            let theirs: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            if theirs != me && staged_any {
                return Err(Error::failed(format!(
                    "the WAL staging directory {} holds WAL staged by another stream ({} to {}, \
                     slot {}); it is not stored under this one ({db} to {target}, slot {slot}): \
                     give this stream its own --staging-dir, or move that directory away once \
                     its WAL is archived where it belongs",
                    dir.display(),
                    theirs["database"].as_str().unwrap_or("?"),
                    theirs["target"].as_str().unwrap_or("?"),
                    theirs["slot"].as_str().unwrap_or("?"),
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if staged_any {
                return Err(Error::failed(format!(
                    "the WAL staging directory {} holds WAL that no stream of this version \
                     staged (no {STAGING_IDENTITY}): it is not stored under {target}; give this \
                     stream its own --staging-dir, or move that directory away",
                    dir.display()
                )));
            }
        }
        Err(e) => {
            return Err(Error::failed(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    }
    let mut f = crate::private::create(&path, crate::private::FileMode::PRIVATE)
        .map_err(|e| Error::failed(format!("cannot write {}: {e}", path.display())))?;
    std::io::Write::write_all(&mut f, me.to_string().as_bytes())
        .map_err(|e| Error::failed(format!("cannot write {}: {e}", path.display())))?;
    Ok(lock)
}

/// What a stream did, when it stopped.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamReport {
    pub target: String,
    pub slot: String,
    /// Completed segments (and history files) stored.
    pub segments: u64,
    /// Partial copies of the segment being written stored.
    pub partial_copies: u64,
    /// The newest completed segment stored by this run.
    pub last_segment: Option<String>,
    /// The segment being written when it stopped, as last stored.
    pub partial_segment: Option<String>,
}

/// A replication slot name as PostgreSQL accepts it (lower-case letters, digits, `_`).
pub fn valid_slot(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Stream until `stop` resolves (or pg_receivewal fails for good).
pub async fn stream(
    spec: StreamSpec<'_>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<StreamReport> {
    let slot = spec.config.backup.wal_slot.clone();
    if !valid_slot(&slot) {
        return Err(Error::usage(format!(
            "backup.wal_slot {slot:?} is not a replication slot name: lower-case letters, \
             digits and _ only, at most 63"
        )));
    }
    // Sealed as the dumps are (each stored object its own salt, so its own key), when keyed.
    let key = match &spec.config.backup.encryption_key_file {
        Some(path) => Some(crypt::Key::from_file(path)?),
        None => None,
    };
    let flush = spec.config.backup.wal_flush.as_duration();
    if flush.is_zero() {
        return Err(Error::usage("backup.wal_flush must be more than 0"));
    }
    let copy_to = crate::archive::target::copy_targets(&spec.config.backup.copy_to, spec.target)?;
    let storage = storage::open(spec.target, spec.config).await?;
    let retry = Retry::configured(&spec.config.database);
    let mut leader = db::connect(spec.db, retry).await?;
    let facts = replication::check(&leader, "wal stream").await?;
    locks::hold(&leader, Lock::WalStream, &spec.db.redacted()).await?;
    if let Some(leading) = spec.leading {
        leading();
    }
    let major = facts.server_major;
    let (bindir, env) = (spec.config.backup.pg_bindir.clone(), spec.env.clone());
    let tool = tokio::task::spawn_blocking(move || {
        crate::pgtools::find(
            "pg_receivewal",
            major,
            major,
            crate::pgtools::Search {
                bindir: bindir.as_deref(),
                env: &env,
            },
        )
    })
    .await
    .map_err(|e| Error::failed(format!("finding pg_receivewal: {e}")))??;
    if tool.major < major {
        return Err(Error::failed(format!(
            "{} is version {}, older than the server ({}): install the PostgreSQL {major} \
             client tools or name their directory with backup.pg_bindir",
            tool.path.display(),
            tool.version,
            facts.server_version
        )));
    }
    crate::private::create_dir_all(spec.staging, crate::private::FileMode::PRIVATE).map_err(
        |e| {
            Error::failed(format!(
                "cannot create the WAL staging directory {}: {e}",
                spec.staging.display()
            ))
        },
    )?;
    let _staging_lock = claim_staging(
        spec.staging,
        &spec.db.redacted(),
        &storage.describe(),
        &slot,
    )?;
    let receivewal = |extra: &[&str]| {
        let mut cmd = tokio::process::Command::new(&tool.path);
        cmd.arg("--directory")
            .arg(spec.staging)
            .args(["--slot", &slot, "--no-password"])
            .args(extra)
            .env_clear()
            .envs(crate::pgtools::child_env(spec.env))
            .env("LC_ALL", "C")
            .envs(spec.db.libpq_env())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        // SAFETY: prctl in the forked child before exec is async-signal-safe. pg_receivewal
        // stops with kasm-db even when kasm-db is killed outright.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        cmd
    };
    let out = receivewal(&["--create-slot", "--if-not-exists"])
        .output()
        .await
        .map_err(|e| Error::failed(format!("cannot run {}: {e}", tool.path.display())))?;
    if !out.status.success() {
        return Err(Error::failed(format!(
            "pg_receivewal could not create the replication slot {slot}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }

    let mut report = StreamReport {
        target: storage.describe(),
        slot: slot.clone(),
        ..StreamReport::default()
    };
    let mut sweeper = Sweeper {
        storage: storage.as_ref(),
        method: WAL_METHOD,
        key,
        dir: spec.staging.to_path_buf(),
        partial_seen: HashMap::new(),
        history_done: HashSet::new(),
    };
    // Each backup.copy_to target is kept caught up beside the sweep (never holding it up).
    let copies = super::copies::start(storage.clone(), copy_to, spec.config, flush);
    // Completed segments a killed run left behind go first. A target that is away now does
    // not stop the stream: pg_receivewal fills the staging directory meanwhile (else the slot
    // keeps the WAL on the primary), and the sweeps store it when the target is back.
    if let Err(e) = sweeper.sweep(&mut report).await {
        tracing::warn!("storing the WAL staged before: {e}; streaming into staging meanwhile");
    }
    // A hole the slot has already moved past (WAL received, never stored, and lost with its
    // staging directory) is said now, not first at a restore that stops there.
    match resume_gap(
        &leader,
        storage.as_ref(),
        spec.staging,
        &slot,
        facts.wal_segment_bytes,
    )
    .await
    {
        Ok(None) => {}
        Ok(Some(missing)) => tracing::error!(
            slot = %slot,
            "the WAL archive has a hole where this stream resumes: segment {missing} is neither \
             stored in {} nor staged in {}, and the primary no longer keeps it for the slot \
             (WAL received and never stored, lost with its staging directory, does this). \
             Recovery cannot pass the hole: take a base backup now (`kasm-db backup \
             --physical`), so that point-in-time recovery starts after it",
            report.target,
            spec.staging.display()
        ),
        Err(e) => tracing::warn!(
            "could not check that the WAL archive continues where the slot resumes: {e}"
        ),
    }

    let mut child = receivewal(&["--verbose"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::failed(format!("cannot run {}: {e}", tool.path.display())))?;
    let (err_tx, mut err_rx) = mpsc::channel::<String>(64);
    let stderr = child.stderr.take().expect("piped");
    // In the caller's span (the demo's stage leaves these INFO lines out).
    tokio::spawn(tracing::Instrument::in_current_span(async move {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(target: "kasm_db::wal", "{line}");
            let _ = err_tx.try_send(line);
        }
    }));
    let mut last_lines: Vec<String> = Vec::new();
    tracing::info!(
        slot = %slot,
        target = %report.target,
        flush_s = flush.as_secs_f64(),
        "streaming WAL"
    );
    let mut tick = tokio::time::interval(flush);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    let outcome: Result<()> = loop {
        tokio::select! {
            _ = &mut stop => break Ok(()),
            status = child.wait() => {
                while let Ok(l) = err_rx.try_recv() { keep(&mut last_lines, l); }
                break Err(Error::failed(format!(
                    "pg_receivewal stopped ({}): {}",
                    status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
                    last_lines.join(" / ")
                )));
            }
            _ = tick.tick() => {
                while let Ok(l) = err_rx.try_recv() { keep(&mut last_lines, l); }
                if let Err(e) = sweeper.sweep(&mut report).await {
                    // The target may be unreachable for a while: the files stay staged and
                    // the next sweep stores them.
                    tracing::warn!("storing WAL: {e}; trying again in {} s", flush.as_secs_f64());
                }
                if leader.is_closed() {
                    match reclaim(spec.db, &leader_lock_on(spec.db)).await {
                        Ok(Some(c)) => leader = c,
                        Ok(None) => {}
                        Err(e) if e.kind() == Kind::Temporary && locks::is_busy(&e) => break Err(e),
                        Err(e) => tracing::warn!("the WAL stream's lock session: {e}"),
                    }
                }
            }
        }
    };
    // Stop pg_receivewal (SIGTERM: it writes out what it has), then store what it received.
    if let Some(pid) = child.id() {
        // SAFETY: kill on the pid of our own child, which has not been reaped yet.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(4), child.wait()).await;
    let _ = child.start_kill();
    let last = sweeper.sweep(&mut report).await;
    copies.finish().await;
    outcome?;
    last?;
    Ok(report)
}

fn keep(lines: &mut Vec<String>, line: String) {
    lines.push(line);
    if lines.len() > 4 {
        lines.remove(0);
    }
}

fn leader_lock_on(db: &DbTarget) -> String {
    db.redacted()
}

/// Reopen the leader's session and take the lock again: `Ok(None)` while the server is not
/// there (try again at the next sweep), [`Lock::busy`] when another run took it meanwhile.
async fn reclaim(db: &DbTarget, on: &str) -> Result<Option<tokio_postgres::Client>> {
    let Ok(client) = db::connect(db, Retry::once()).await else {
        return Ok(None);
    };
    locks::hold(&client, Lock::WalStream, on).await?;
    tracing::info!("the WAL stream's lock session is back");
    Ok(Some(client))
}

/// The segment missing just before where the slot makes pg_receivewal resume: neither staged
/// nor stored, while the archive holds WAL of this timeline before it (a first stream has
/// nothing to continue). `None` when the archive continues.
async fn resume_gap(
    client: &tokio_postgres::Client,
    storage: &dyn Storage,
    staging: &Path,
    slot: &str,
    segment_bytes: u64,
) -> Result<Option<String>> {
    let row = client
        .query_opt(
            "SELECT s.restart_lsn::text, pg_walfile_name(pg_current_wal_lsn()) \
             FROM pg_replication_slots s WHERE s.slot_name = $1",
            &[&slot],
        )
        .await?;
    // A slot with no WAL reserved yet resumes where the server is: nothing to continue.
    let Some((Some(resume), current)) =
        row.map(|r| (r.get::<_, Option<String>>(0), r.get::<_, String>(1)))
    else {
        return Ok(None);
    };
    let resume = wal::Lsn::parse(&resume)
        .ok_or_else(|| Error::failed(format!("the slot's restart_lsn {resume:?} is not an LSN")))?;
    let tli = current.get(..8).unwrap_or_default();
    let timeline = u32::from_str_radix(tli, 16)
        .map_err(|_| Error::failed(format!("{current:?} is not a WAL file name")))?;
    let Some(before) = wal::segment_before(resume, timeline, segment_bytes) else {
        return Ok(None);
    };
    if staging.join(&before).exists() || staging.join(format!("{before}.partial")).exists() {
        return Ok(None);
    }
    let record = wal::record_name(&before, false).expect("a segment's name");
    if catalog::read_wal_record(storage, &record).await?.is_some() {
        return Ok(None);
    }
    let folder = format!("{}/", wal::timeline_dir(tli));
    let first = storage
        .list_after(&folder, &folder, 8)
        .await?
        .into_iter()
        .filter_map(|n| {
            n.strip_prefix(&folder)
                .and_then(|n| n.get(..24))
                .map(str::to_string)
        })
        .find(|n| wal::is_segment(n));
    Ok(first.filter(|f| *f < before).map(|_| before))
}

/// Stores what pg_receivewal wrote.
struct Sweeper<'a> {
    storage: &'a dyn Storage,
    method: Method,
    /// `backup.encryption_key_file`'s key: every object sealed with it.
    key: Option<crypt::Key>,
    dir: PathBuf,
    /// Partial files stored, by name: the modification time stored and the copy's object.
    partial_seen: HashMap<String, (SystemTime, String)>,
    /// History files stored by this run (kept locally: they are tiny).
    history_done: HashSet<String>,
}

impl Sweeper<'_> {
    /// Store every completed segment and history file in the staging directory, then the
    /// partial segment if it changed.
    async fn sweep(&mut self, report: &mut StreamReport) -> Result<()> {
        let mut complete = Vec::new();
        let mut partial = Vec::new();
        let mut history = Vec::new();
        let mut rd = tokio::fs::read_dir(&self.dir).await?;
        while let Some(e) = rd.next_entry().await? {
            let name = e.file_name().to_string_lossy().to_string();
            if wal::is_segment(&name) {
                complete.push(name);
            } else if let Some(seg) = name.strip_suffix(".partial") {
                if wal::is_segment(seg) {
                    partial.push(seg.to_string());
                }
            } else if wal::is_history(&name) && !self.history_done.contains(&name) {
                history.push(name);
            }
        }
        complete.sort();
        partial.sort();
        for name in history {
            store_retrying(
                self.storage,
                self.method,
                self.key.as_ref(),
                &self.dir.join(&name),
                &name,
            )
            .await?;
            self.history_done.insert(name);
            report.segments += 1;
        }
        for name in complete {
            let path = self.dir.join(&name);
            store_retrying(self.storage, self.method, self.key.as_ref(), &path, &name).await?;
            self.drop_partial_copy(&name).await;
            tokio::fs::remove_file(&path).await?;
            report.segments += 1;
            report.last_segment = Some(name);
        }
        // Only the newest partial file is being written; an older one is a leftover of a
        // timeline switch and is stored like the rest (it is never served unless newest).
        for seg in partial {
            let path = self.dir.join(format!("{seg}.partial"));
            let Ok(meta) = tokio::fs::metadata(&path).await else {
                continue; // completed meanwhile: the next sweep stores it
            };
            let modified = meta.modified()?;
            if self
                .partial_seen
                .get(&seg)
                .is_some_and(|(m, _)| *m == modified)
            {
                continue;
            }
            let n = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            // The copy this replaces: this run's, or the one a previous run left recorded.
            let old = match self.partial_seen.get(&seg) {
                Some((_, o)) => Some(o.clone()),
                None => match wal::record_name(&seg, true) {
                    Some(name) => catalog::read_wal_record(self.storage, &name)
                        .await
                        .ok()
                        .flatten()
                        .map(|r| r.object),
                    None => None,
                },
            };
            let stored = store(
                self.storage,
                self.method,
                self.key.as_ref(),
                &path,
                &seg,
                Some(n),
            );
            let record = match stored.await {
                Ok(r) => r,
                // Renamed to its completed name while being read: the next sweep has it.
                Err(_) if !path.exists() => continue,
                Err(e) => return Err(e),
            };
            self.partial_seen
                .insert(seg.clone(), (modified, record.object.clone()));
            // Only after the new record is stored: a reader never finds a record without its
            // object (and one that lost the race reads the record again).
            if let Some(old) = old.filter(|o| *o != record.object) {
                let _ = self.storage.delete(&old).await;
            }
            report.partial_copies += 1;
            report.partial_segment = Some(seg);
        }
        Ok(())
    }

    /// Remove the partial copy of a segment now stored whole: its record first (so it is never
    /// served), then its object.
    async fn drop_partial_copy(&mut self, seg: &str) {
        let Some(record_name) = wal::record_name(seg, true) else {
            return;
        };
        let old = catalog::read_wal_record(self.storage, &record_name)
            .await
            .ok()
            .flatten();
        let _ = self.storage.delete(&record_name).await;
        if let Some(r) = old {
            let _ = self.storage.delete(&r.object).await;
        }
        if let Some((_, obj)) = self.partial_seen.remove(seg) {
            let _ = self.storage.delete(&obj).await;
        }
    }
}

/// WAL is compressed with zstd at level 1, whatever `backup.compression` says for the dumps: the
/// stream takes its CPU from the primary's own host while the primary is busiest. Measured on
/// Kasm-like WAL (bench/pitr_load.sh's ingest): libdeflate's fastest level 330 MB/s at 5.2:1,
/// zstd level 1 470 MB/s at 5.9:1; compression was the stream's largest CPU cost. `wal fetch`
/// reads either codec by the record's `compression`, so archives streamed before stay readable.
pub const WAL_METHOD: Method = Method {
    codec: compress::Codec::Zstd,
    level: 1,
};

/// How storing one completed WAL file is retried within a sweep (a target that drops a
/// connection); after that the file stays staged and the next sweep tries again.
const STORE_RETRY: crate::retry::Policy =
    crate::retry::Policy::new(3, Duration::from_millis(500), Duration::from_secs(4))
        .with_jitter(crate::retry::Jitter::UpToQuarter);

/// [`store`] a completed segment or history file, retried by [`STORE_RETRY`].
async fn store_retrying(
    storage: &dyn Storage,
    method: Method,
    key: Option<&crypt::Key>,
    path: &Path,
    name: &str,
) -> Result<Record> {
    let mut attempt = 1;
    loop {
        match store(storage, method, key, path, name, None).await {
            Ok(r) => return Ok(r),
            Err(e) if STORE_RETRY.again_after(attempt) => {
                let wait = STORE_RETRY.delay(attempt, rand::random());
                tracing::debug!(file = name, "storing WAL: {e}; again in {wait:?}");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(e) => return Err(e.context(format!("storing {name} ({attempt} attempts)"))),
        }
    }
}

/// Store the local file `path` as the WAL file `name` (a completed segment or history file,
/// or with `partial = Some(n)` the `n`th partial copy of a segment): compressed and hashed on
/// the way (and sealed with `key` when given, a new salt and key per object), the record
/// written after the object.
pub async fn store(
    storage: &dyn Storage,
    method: Method,
    key: Option<&crypt::Key>,
    path: &Path,
    name: &str,
    partial: Option<u64>,
) -> Result<Record> {
    let ext = match key {
        Some(_) => format!("{}.aes", method.codec.extension()),
        None => method.codec.extension().to_string(),
    };
    let object = match partial {
        None => wal::object_name(name, &ext),
        Some(n) => wal::partial_object_name(name, n, &ext),
    }
    .ok_or_else(|| Error::failed(format!("{name} is not a WAL file name")))?;
    // Trailing zeros (the padding of a segment not yet written, or switched early) are not
    // stored, only counted: the stream's cost is the WAL written, not 16 MiB per flush. A partial
    // file grows while it is read, only ever past its last non-zero byte (pg_receivewal writes in
    // order over the padding): what lies before it is final, so that much is read, once.
    let file = std::fs::File::open(path)?;
    let (file, pad_to, wal_bytes) = tokio::task::spawn_blocking(move || {
        let size = file.metadata()?.len();
        let len = written_len(&file, size)?;
        Ok::<_, std::io::Error>((file, size, len))
    })
    .await
    .map_err(|e| Error::failed(format!("reading {name}: {e}")))??;
    let bytes = tokio::fs::File::from_std(file).take(wal_bytes);
    let (tx, rx) = mpsc::channel::<Piece>(8);
    let retain = catalog::wal_retention(partial.is_some());
    let put = {
        let object = object.clone();
        async move { storage.put_stream(&object, rx, retain).await }
    };
    let sealer = match key {
        Some(k) => Some(std::sync::Arc::new(crypt::Sealer::new(k)?)),
        None => None,
    };
    let produce = async move {
        let summary = compress::compress_stream(bytes, method, sealer, &tx, |_| {}).await?;
        if summary.input_bytes != wal_bytes {
            return Err(Error::failed(format!(
                "reading {name}: {} of its {wal_bytes} bytes could be read",
                summary.input_bytes
            )));
        }
        tx.send(Piece::End)
            .await
            .map_err(|_| Error::failed(compress::STORAGE_STOPPED))?;
        Ok::<_, Error>(summary)
    };
    let (summary, stored) = tokio::join!(produce, put);
    let stored = stored?;
    let summary = summary?;
    if stored != summary.output_bytes {
        return Err(Error::failed(format!(
            "storing {name}: storage reports {stored} bytes, {} were sent",
            summary.output_bytes
        )));
    }
    let record = Record {
        file: name.to_string(),
        object,
        size_bytes: summary.output_bytes,
        sha256: summary.sha256,
        wal_bytes,
        pad_to: (pad_to > wal_bytes).then_some(pad_to),
        compression: method.codec.name().into(),
        partial: partial.is_some(),
        encryption: key.map(|k| wal::Sealed {
            kind: crypt::KIND.into(),
            key_id: k.id(),
        }),
    };
    let record_name = wal::record_name(name, partial.is_some())
        .ok_or_else(|| Error::failed(format!("{name} is not a WAL file name")))?;
    catalog::write_wal_record(storage, &record_name, &record).await?;
    tracing::debug!(file = name, partial = partial.is_some(), "WAL stored");
    Ok(record)
}

/// The length of `file` (`size` bytes) without its trailing zeros, found from the end (a
/// completed segment has data in its last block; a partial one, only its padding is read),
/// with one buffer: a segment is never held in memory whole.
fn written_len(file: &std::fs::File, size: u64) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 64 << 10];
    let mut end = size;
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|b| *b != 0) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// SHA-256 and size of `bytes` (for [`super::fetch`]'s check).
pub fn digest(bytes: &[u8]) -> (String, u64) {
    let mut d = Digest::default();
    d.update(bytes);
    d.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_length_ignores_only_the_trailing_padding() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let len = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            let f = std::fs::File::open(&path).unwrap();
            written_len(&f, bytes.len() as u64).unwrap()
        };
        let mut seg = vec![0u8; 1 << 20];
        assert_eq!(len(&seg), 0, "all padding");
        seg[5] = 1;
        seg[70_000] = 2; // a zero run inside the data is kept
        assert_eq!(len(&seg), 70_001);
        seg[(64 << 10) - 1] = 3;
        seg[200_000] = 4;
        assert_eq!(len(&seg), 200_001);
        let last = seg.len() - 1;
        seg[last] = 5;
        assert_eq!(len(&seg), seg.len() as u64, "a completed segment is whole");
        assert_eq!(len(&[]), 0);
    }

    #[test]
    fn slot_names_are_checked() {
        assert!(valid_slot("kasm_db"));
        assert!(!valid_slot("kasm-db"));
        assert!(!valid_slot(""));
        assert!(!valid_slot("Kasm"));
    }
}
