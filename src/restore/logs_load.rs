//! Phase 2 of `restore --logs-later` (see [`super::logs_later`]): after the swap, load each
//! pending logs entry into the live database — decoded by `pg_restore --data-only -L <entry> -f -`
//! (COPY text) and streamed with COPY into the live table, in one transaction with the update of
//! its state row, the count COPY returns checked against the manifest — on up to `--jobs`
//! connections, largest first. A load cut short rolls back and stays pending; a table dropped
//! meanwhile (retention) is recorded as skipped; when none is pending the state schema is dropped.
//!
//! Testing hook (documented in docs/operations.md): with `KASMDB_TEST_LOGS_LATER_PAUSE_AFTER=N`
//! in the environment, phase 2 stops making progress after N committed entries (as if stuck), so
//! a test can `kill -9` the process at a known point.
//!
//! Never deletes or alters rows it did not load, never loads an entry twice, never drops
//! anything but its own state schema; never prints a password.

use super::logs_later::{Entry, STATE_SCHEMA, STATE_TABLE, describe, pending};
use super::pgrestore::PgRestore;
use super::progress::Stop;
use crate::db::{self, DbTarget, Retry, ident};
use crate::error::{Error, Result};
use crate::pgtools;
use futures::SinkExt;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tokio::io::AsyncBufReadExt;

/// The testing hook's environment variable (see the module's documentation).
pub const PAUSE_ENV: &str = "KASMDB_TEST_LOGS_LATER_PAUSE_AFTER";
/// COPY data is sent in chunks of about this size.
const CHUNK: usize = 256 << 10;

/// What phase 2 needs.
pub struct Load<'a> {
    pub bin: &'a PgRestore,
    pub archive: &'a Path,
    /// The live database.
    pub db: &'a DbTarget,
    pub retry: Retry,
    pub jobs: u32,
    pub env: &'a BTreeMap<String, String>,
    pub backup: &'a str,
}

/// What phase 2 did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Loaded {
    /// Tables (partitions) whose data was loaded by this run.
    pub tables: usize,
    pub rows: i64,
    /// Tables that no longer existed (dropped since the swap, e.g. by retention).
    pub skipped: Vec<String>,
    pub logs_s: f64,
}

/// Phase 2: load every pending entry into the live database; on success drop the state.
pub async fn load(l: Load<'_>, stop: &mut Stop) -> Result<Loaded> {
    let started = Instant::now();
    let client = db::connect(l.db, l.retry).await?;
    let (backup, entries) = pending(&client).await?;
    if let Some(b) = &backup
        && b != l.backup
    {
        return Err(Error::failed(format!(
            "the logs still to load in {} come from backup {b}, not {}",
            l.db.dbname(),
            l.backup
        )));
    }
    let queue = Mutex::new(entries.into_iter().collect::<VecDeque<_>>());
    let out = Mutex::new(Loaded::default());
    let committed = AtomicUsize::new(0);
    let pause: Option<usize> = l.env.get(PAUSE_ENV).and_then(|v| v.parse().ok());
    let workers =
        (l.jobs.max(1) as usize).min(queue.lock().unwrap_or_else(|p| p.into_inner()).len());
    let (queue, out, committed, lref) = (&queue, &out, &committed, &l);
    let work = futures::future::try_join_all((0..workers).map(|_| async move {
        let client = db::connect(lref.db, lref.retry).await?;
        loop {
            if pause.is_some_and(|n| committed.load(Ordering::SeqCst) >= n) {
                tracing::warn!("{PAUSE_ENV}: the logs phase pauses here (testing hook)");
                std::future::pending::<()>().await;
            }
            let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
            let Some(e) = next else { break };
            let done = load_one(&client, lref, &e).await?;
            committed.fetch_add(1, Ordering::SeqCst);
            let mut o = out.lock().unwrap_or_else(|p| p.into_inner());
            match done {
                Some(n) => {
                    o.tables += 1;
                    o.rows += n;
                }
                None => o.skipped.push(e.name()),
            }
        }
        Ok::<_, Error>(())
    }));
    tokio::select! {
        r = work => r?,
        _ = stop => return Err(Error::failed("interrupted by a signal while loading the logs data")),
    };
    let left = pending(&client).await?.1;
    if !left.is_empty() {
        let names: Vec<String> = left.iter().map(Entry::name).collect();
        return Err(Error::failed(format!(
            "{} is still missing",
            describe(&names)
        )));
    }
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {STATE_SCHEMA} CASCADE"))
        .await?;
    let mut o = out.lock().unwrap_or_else(|p| p.into_inner()).clone();
    o.logs_s = started.elapsed().as_secs_f64();
    Ok(o)
}

/// Load one entry in one transaction with its state row. `Some(rows)` loaded, `None` skipped
/// (the table no longer exists).
async fn load_one(client: &tokio_postgres::Client, l: &Load<'_>, e: &Entry) -> Result<Option<i64>> {
    client.batch_execute("BEGIN").await?;
    let r = copy_entry(client, l, e).await;
    let rows = match r {
        Ok(n) => Some(n),
        Err(err) if err.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
            client.batch_execute("ROLLBACK; BEGIN").await?;
            tracing::warn!(table = %e.name(), "gone since the swap (retention?): its logs data is skipped");
            None
        }
        Err(err) => {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(err.context(format!("loading the logs data of {}", e.name())));
        }
    };
    if let Some(n) = rows
        && n != e.rows
    {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(Error::failed(format!(
            "the archive gave {n} rows for {}, the manifest says {}; not loaded",
            e.name(),
            e.rows
        )));
    }
    let note = rows
        .is_none()
        .then_some("skipped: the table no longer exists");
    let updated = client
        .execute(
            &format!(
                "UPDATE {STATE_TABLE} SET loaded_rows = $1, loaded_at = now(), note = $2
                 WHERE dump_id = $3 AND loaded_at IS NULL"
            ),
            &[&rows.unwrap_or(0), &note, &e.dump_id],
        )
        .await;
    match updated {
        Ok(1) => {
            client.batch_execute("COMMIT").await?;
            if rows.is_some() {
                let rel = format!("{}.{}", ident(&e.schema), ident(&e.table));
                if let Err(err) = client.batch_execute(&format!("ANALYZE {rel}")).await {
                    tracing::debug!(error = %err, "ANALYZE {rel}");
                }
            }
            Ok(rows)
        }
        other => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(Error::failed(format!(
                "the state record of {} changed under this load ({other:?}); rolled back",
                e.name()
            )))
        }
    }
}

/// A wrapper so a database error keeps its SQLSTATE up to [`load_one`].
struct CopyError {
    code: Option<tokio_postgres::error::SqlState>,
    err: Error,
}

impl CopyError {
    fn code(&self) -> Option<&tokio_postgres::error::SqlState> {
        self.code.as_ref()
    }
    fn context(self, c: String) -> Error {
        self.err.context(c)
    }
}

impl From<tokio_postgres::Error> for CopyError {
    fn from(e: tokio_postgres::Error) -> Self {
        CopyError {
            code: e.code().cloned(),
            err: e.into(),
        }
    }
}

impl From<Error> for CopyError {
    fn from(err: Error) -> Self {
        CopyError { code: None, err }
    }
}

impl From<std::io::Error> for CopyError {
    fn from(e: std::io::Error) -> Self {
        CopyError {
            code: None,
            err: e.into(),
        }
    }
}

fn list_file(archive: &Path, dump_id: i32) -> PathBuf {
    let mut name = archive.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{dump_id}.list"));
    archive.with_file_name(name)
}

/// Stream one entry's data from `pg_restore -f -` into COPY on `client` (inside the caller's
/// transaction); the rows COPY took.
async fn copy_entry(
    client: &tokio_postgres::Client,
    l: &Load<'_>,
    e: &Entry,
) -> std::result::Result<i64, CopyError> {
    let listed = list_file(l.archive, e.dump_id);
    std::fs::write(&listed, format!("{}\n", e.dump_id))?;
    let mut child = tokio::process::Command::new(&l.bin.path)
        .arg("--data-only")
        .arg("-L")
        .arg(&listed)
        .arg("-f")
        .arg("-")
        .arg(l.archive)
        .env_clear()
        .envs(pgtools::child_env(l.env))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| Error::failed(format!("cannot run {}: {err}", l.bin.path.display())))?;
    let stdout = child.stdout.take().expect("piped");
    let mut reader = tokio::io::BufReader::with_capacity(CHUNK, stdout);
    let mut line = Vec::new();
    let mut rows: Option<i64> = None;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            break;
        }
        let text = String::from_utf8_lossy(&line);
        if text.starts_with("SET client_encoding") {
            client.batch_execute(text.trim()).await?;
        } else if text.starts_with("COPY ") && text.trim_end().ends_with("FROM stdin;") {
            let sink = client
                .copy_in(text.trim_end().trim_end_matches(';'))
                .await?;
            futures::pin_mut!(sink);
            let mut buf = bytes::BytesMut::with_capacity(CHUNK);
            loop {
                line.clear();
                if reader.read_until(b'\n', &mut line).await? == 0 {
                    return Err(Error::failed("pg_restore's COPY data ended early").into());
                }
                if line == b"\\.\n" || line == b"\\.\r\n" {
                    break;
                }
                buf.extend_from_slice(&line);
                if buf.len() >= CHUNK {
                    sink.send(buf.split().freeze()).await?;
                }
            }
            if !buf.is_empty() {
                sink.send(buf.split().freeze()).await?;
            }
            rows = Some(sink.finish().await? as i64);
        }
    }
    let status = child.wait().await?;
    let mut stderr = String::new();
    if let Some(mut s) = child.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = s.read_to_string(&mut stderr).await;
    }
    let _ = std::fs::remove_file(&listed);
    if !status.success() {
        return Err(Error::failed(format!(
            "pg_restore --data-only for {} failed ({status}): {}",
            e.name(),
            stderr.trim()
        ))
        .into());
    }
    rows.ok_or_else(|| {
        Error::failed(format!("the archive has no COPY data for {}", e.name())).into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_entry_gets_its_own_list_beside_the_archive() {
        assert_eq!(
            list_file(Path::new("/s/b1.dump"), 3345),
            Path::new("/s/b1.dump.3345.list")
        );
    }
}
