//! `backup --physical`: a base backup of the whole cluster by the real `pg_basebackup`, streamed
//! through the same compression and SHA-256 pipeline as a dump to the same storage, with a
//! manifest (kind `physical`: start and stop LSN, timeline, server version) written last.
//!
//! `pg_basebackup -D - -Ft -X fetch -c fast -v`: one tar on stdout (a cluster with extra
//! tablespaces is refused by pg_basebackup itself in this mode). `-X fetch` puts the WAL from
//! the backup's start to its stop into the tar's `pg_wal`, so a base backup restores to a
//! consistent cluster on its own, even when the WAL archive has a hole or was never started;
//! the archive (`wal stream`) then carries it forward to any later time. The price is that WAL
//! stored twice, a segment or two. The positions come from `-v`'s own lines ("write-ahead
//! log start point: 0/2000028 on timeline 1", "end point: ..."), read with messages in
//! English (`LC_ALL=C`). `-c fast`: the checkpoint is taken now, as an operator asking for a
//! backup expects, rather than spread over `checkpoint_timeout`.
//!
//! Needs a role with REPLICATION (refused before pg_basebackup starts, pointing a managed
//! server at the provider's own point-in-time recovery). Takes the same backup lock as a
//! logical backup. Any failure or signal kills pg_basebackup and aborts the upload: nothing is
//! listed. With `backup.encryption_key_file` the base backup is sealed exactly as a dump is
//! (every member an AES-256-GCM chunk, [`crypt`]; the manifest records the key id, never the
//! key; its size and SHA-256 are of the stored, encrypted object). Never puts the password on
//! a command line, in a message or in the manifest, nor the key anywhere.

use super::run::{capture_stderr, failure, interrupted, progress_bar};
use crate::archive::compress;
use crate::archive::crypt;
use crate::archive::manifest::{self, BackupKind, Manifest, Physical};
use crate::archive::storage::{self, Piece};
use crate::archive::target::Target;
use crate::archive::wal::Lsn;
use crate::config::Config;
use crate::db::locks::{self, Lock};
use crate::db::{self, DbTarget, Retry, replication};
use crate::error::{Error, Result};
use chrono::Utc;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Instant;
use tokio::sync::mpsc;

const CHANNEL_PIECES: usize = 8;
const STDERR_MAX: usize = 64 << 10;

/// One physical backup to run.
pub struct PhysicalSpec<'a> {
    pub db: &'a DbTarget,
    pub config: &'a Config,
    pub target: &'a Target,
    /// The target's storage, opened once by the caller (which copies and prunes through it).
    pub storage: &'a std::sync::Arc<dyn crate::archive::storage::Storage>,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// The process environment (only [`crate::pgtools::child_env`] of it reaches
    /// pg_basebackup).
    pub env: &'a BTreeMap<String, String>,
}

/// The positions `pg_basebackup -v` reports on stderr (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Positions {
    pub start: Lsn,
    pub stop: Lsn,
    pub timeline: u32,
}

/// Read the start point, its timeline and the end point from pg_basebackup's `-v` output.
pub fn parse_positions(stderr: &str) -> Option<Positions> {
    let mut start = None;
    let mut stop = None;
    for line in stderr.lines() {
        if let Some(rest) = line.split("write-ahead log start point: ").nth(1) {
            let mut words = rest.split_whitespace();
            let lsn = words.next().and_then(Lsn::parse);
            let tli = rest
                .split("on timeline ")
                .nth(1)
                .and_then(|t| t.trim().trim_end_matches('.').parse::<u32>().ok());
            if let (Some(l), Some(t)) = (lsn, tli) {
                start = Some((l, t));
            }
        } else if let Some(rest) = line.split("write-ahead log end point: ").nth(1) {
            stop = rest.split_whitespace().next().and_then(Lsn::parse);
        }
    }
    let (start, timeline) = start?;
    Some(Positions {
        start,
        stop: stop?,
        timeline,
    })
}

/// A stored physical backup and what the operator should know about it.
pub struct PhysicalBackup {
    pub manifest: Manifest,
    /// E.g. no WAL stream on `backup.wal_slot`: the backup then restores only to its own end.
    pub warnings: Vec<String>,
}

/// The warning for a base backup taken while nothing streams WAL on `slot` (pure): `active` is
/// the slot's `active`, `None` when there is no such slot.
pub fn stream_warning(slot: &str, active: Option<bool>) -> Option<String> {
    match active {
        Some(true) => None,
        Some(false) => Some(format!(
            "the replication slot {slot} exists but nothing streams from it: until `kasm-db wal \
             stream` runs again, this backup restores only to its own end (the slot keeps the WAL \
             on the primary meanwhile)"
        )),
        None => Some(format!(
            "no WAL stream (no replication slot {slot}): this backup restores only to its own \
             end; start `kasm-db wal stream` (or serve with backup.wal = true) for point-in-time \
             recovery after it"
        )),
    }
}

/// Run the physical backup; returns its manifest once the manifest is stored.
pub async fn run(job: PhysicalSpec<'_>) -> Result<PhysicalBackup> {
    let started = Instant::now();
    // The same client-side encryption as a dump's (see `run.rs`): every member sealed.
    let key = match &job.config.backup.encryption_key_file {
        Some(path) => Some(crypt::Key::from_file(path)?),
        None => None,
    };
    let sealer = match &key {
        Some(k) => Some(std::sync::Arc::new(crypt::Sealer::new(k)?)),
        None => None,
    };
    let storage = job.storage.clone();
    let client = db::connect(job.db, Retry::configured(&job.config.database)).await?;
    let facts = replication::check(&client, "backup --physical").await?;
    locks::hold(&client, Lock::Backup, &job.db.redacted()).await?;
    let (bindir, env) = (job.config.backup.pg_bindir.clone(), job.env.clone());
    let major = facts.server_major;
    let tool = tokio::task::spawn_blocking(move || {
        let bindir = bindir.as_deref();
        crate::pgtools::find(
            "pg_basebackup",
            major,
            major,
            crate::pgtools::Search { bindir, env: &env },
        )
    })
    .await
    .map_err(|e| Error::failed(format!("finding pg_basebackup: {e}")))??;
    if tool.major < major {
        return Err(Error::failed(format!(
            "{} is version {}, older than the server ({}): install the PostgreSQL {major} \
             client tools or name their directory with backup.pg_bindir / --pg-bindir",
            tool.path.display(),
            tool.version,
            facts.server_version
        )));
    }
    let created = Utc::now();
    let id = manifest::new_id(created);
    let method = job.config.backup.method();
    let object = format!(
        "{id}/base.tar.{}{}",
        method.codec.extension(),
        if key.is_some() { ".aes" } else { "" }
    );

    let mut cmd = tokio::process::Command::new(&tool.path);
    cmd.args([
        "-D",
        "-",
        "--format=tar",
        "--wal-method=fetch",
        "--checkpoint=fast",
        "--verbose",
        "--no-password",
    ])
    .env_clear()
    .envs(crate::pgtools::child_env(job.env))
    .env("LC_ALL", "C")
    .envs(job.db.libpq_env())
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::failed(format!("cannot run {}: {e}", tool.path.display())))?;
    let stdout = child.stdout.take().expect("piped");
    let stderr_task = capture_stderr(child.stderr.take().expect("piped"), STDERR_MAX);
    let stop = interrupted()?;
    let (tx, rx) = mpsc::channel::<Piece>(CHANNEL_PIECES);
    let put = {
        let storage = storage.clone();
        let object = object.clone();
        tokio::spawn(async move {
            storage
                .put_stream(&object, rx, storage::Retain::WithBackup)
                .await
        })
    };
    let bar = progress_bar(job.progress);
    let produce = async {
        let tx = tx;
        let summary =
            compress::compress_stream(stdout, method, sealer, &tx, |n| bar.set_position(n)).await;
        if summary.is_err() {
            let _ = child.start_kill();
        }
        let status = child.wait().await?;
        let stderr = stderr_task.await.unwrap_or_default();
        let summary = summary?;
        if !status.success() {
            return Err(Error::failed(format!(
                "pg_basebackup failed ({status}): {}",
                last_lines(&stderr)
            )));
        }
        let positions = parse_positions(&stderr).ok_or_else(|| {
            Error::failed(format!(
                "pg_basebackup did not report its start and end points: {}",
                last_lines(&stderr)
            ))
        })?;
        tx.send(Piece::End)
            .await
            .map_err(|_| Error::failed(compress::STORAGE_STOPPED))?;
        Ok((summary, positions))
    };
    let produced = tokio::select! {
        r = produce => r,
        _ = stop => Err(Error::failed(
            "interrupted by a signal: pg_basebackup was stopped and the upload aborted; nothing \
             was kept",
        )),
    };
    bar.finish_and_clear();
    let (summary, positions) = match produced {
        Ok(v) => v,
        Err(e) => return Err(failure(e, put).await),
    };
    let stored = put
        .await
        .map_err(|e| Error::failed(format!("upload task: {e}")))??;
    if stored != summary.output_bytes {
        let _ = storage.delete(&object).await;
        return Err(Error::failed(format!(
            "storage reports {stored} bytes written but {} were sent",
            summary.output_bytes
        )));
    }
    let (format_of_dump, compression, encryption) = manifest::stored_form(
        "pg_basebackup tar (-Ft -X fetch)",
        method,
        summary.member_bytes,
        key.as_ref().map(|k| k.id()),
    );
    let location = format!("{}/{}", storage.describe(), object);
    let m = Manifest {
        format: manifest::FORMAT,
        id: id.clone(),
        created,
        completed: Utc::now(),
        database: job.db.redacted(),
        dbname: job.db.dbname().to_string(),
        server_version: facts.server_version.clone(),
        pg_dump_version: format!("pg_basebackup {}", tool.version),
        object: object.clone(),
        restore: manifest::physical_recipe(
            &id,
            &location,
            key.as_ref().map(|k| k.id()).as_deref(),
            method.codec,
        ),
        location,
        size_bytes: summary.output_bytes,
        sha256: summary.sha256,
        dump_bytes: summary.input_bytes,
        format_of_dump,
        compression,
        encryption,
        server_side_encryption: storage.server_side_encryption(),
        exclude_logs: false,
        excluded: Vec::new(),
        alembic_version: None,
        tables: Vec::new(),
        database_properties: None,
        roles: None,
        timings: manifest::Timings {
            count_s: 0.0,
            dump_s: started.elapsed().as_secs_f64(),
            total_s: started.elapsed().as_secs_f64(),
        },
        kind: BackupKind::Physical,
        physical: Some(Physical {
            start_lsn: positions.start.to_string(),
            stop_lsn: positions.stop.to_string(),
            timeline: positions.timeline,
            wal_segment_bytes: facts.wal_segment_bytes,
            stop_segment: positions
                .stop
                .segment(positions.timeline, facts.wal_segment_bytes),
            superuser: facts.superuser.clone(),
            server_major: facts.server_major,
        }),
    };
    let body = serde_json::to_vec_pretty(&m)
        .map_err(|e| Error::failed(format!("manifest encoding: {e}")))?;
    if let Err(e) = storage
        .put_small(
            &manifest::manifest_name(&id),
            body,
            storage::Retain::WithBackup,
        )
        .await
    {
        let _ = storage.delete(&object).await;
        return Err(e.context(
            "the base backup was stored but its manifest could not be; nothing was kept",
        ));
    }
    let active: Option<bool> = match client
        .query_opt(
            "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
            &[&job.config.backup.wal_slot],
        )
        .await
    {
        Ok(row) => row.map(|r| r.get(0)),
        Err(_) => Some(true), // not worth failing a stored backup over
    };
    let warnings: Vec<String> = stream_warning(&job.config.backup.wal_slot, active)
        .into_iter()
        .collect();
    for w in &warnings {
        tracing::warn!("{w}");
    }
    Ok(PhysicalBackup {
        manifest: m,
        warnings,
    })
}

/// The last few lines of pg_basebackup's stderr, for an error message.
fn last_lines(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.trim().lines().collect();
    let tail = &lines[lines.len().saturating_sub(4)..];
    if tail.is_empty() {
        "no message".into()
    } else {
        tail.join(" / ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_come_from_the_verbose_lines() {
        let err = "pg_basebackup: initiating base backup, waiting for checkpoint to complete\n\
                   pg_basebackup: checkpoint completed\n\
                   pg_basebackup: write-ahead log start point: 0/2000028 on timeline 1\n\
                   pg_basebackup: write-ahead log end point: 0/2000100\n\
                   pg_basebackup: syncing data to disk ...\n\
                   pg_basebackup: base backup completed\n";
        let p = parse_positions(err).unwrap();
        assert_eq!(p.start.to_string(), "0/2000028");
        assert_eq!(p.stop.to_string(), "0/2000100");
        assert_eq!(p.timeline, 1);
        assert_eq!(
            parse_positions("pg_basebackup: error: connection failed"),
            None
        );
    }

    #[test]
    fn a_backup_without_a_stream_says_so() {
        assert_eq!(stream_warning("kasm_db", Some(true)), None);
        assert!(
            stream_warning("kasm_db", None)
                .unwrap()
                .contains("no WAL stream")
        );
        assert!(
            stream_warning("kasm_db", Some(false))
                .unwrap()
                .contains("nothing streams")
        );
    }
}
