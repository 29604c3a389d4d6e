//! `restore --logs-later`: the database is back before its logs are.
//!
//! Phase 1 (before the swap, in place of the single pg_restore): `pg_restore --section=pre-data`
//! creates every table (the `logs` tables and their partitions too, empty); the new database
//! then says which relations are logs — every table named `logs` outside the system schemas and
//! all its partitions, as `backup --exclude-logs` finds them — and `pg_restore -L` restores the
//! data and post-data sections of everything else from the archive's list with those `TABLE
//! DATA` entries left out. The logs tables get their indexes and constraints (on no rows), so
//! ingest works from the swap on. The entries still to load are written, with the manifest's
//! row counts, into a small state table in the new database itself
//! (`kasm_db_restore.logs_later`), so the record travels with the swap.
//!
//! Phase 2 (after the swap, into the live database, which keeps receiving rows): each entry is
//! decoded by `pg_restore --data-only -L <that entry> -f -` (COPY text) and streamed with COPY
//! into its live table, in one transaction with the update of its state row; the count COPY
//! returns must equal the manifest's. So every entry is loaded exactly once: a load cut short
//! (signal, `kill -9`, a lost connection) rolls back and stays pending, and `restore
//! --logs-later --resume` (or the message of an interrupted run) loads only what is pending. A
//! partition dropped meanwhile (retention) is recorded as skipped. When none is pending the
//! state schema is dropped.
//!
//! Testing hook (documented in docs/operations.md): with `KASMDB_TEST_LOGS_LATER_PAUSE_AFTER=N`
//! in the environment, phase 2 stops making progress after N committed entries (as if stuck), so
//! a test can `kill -9` the process at a known point.
//!
//! Never deletes or alters rows it did not load, never loads an entry twice, never drops
//! anything but its own state schema; never prints a password.

use super::pgrestore::{self, PgRestore};
use super::progress::Stop;
use crate::archive::manifest::Manifest;
use crate::db::{self, DbTarget, Retry, ident};
use crate::error::{Error, Result};
use crate::pgtools;
use futures::SinkExt;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tokio::io::AsyncBufReadExt;

/// The schema and table of the state record in the restored database.
pub const STATE_SCHEMA: &str = "kasm_db_restore";
pub const STATE_TABLE: &str = "kasm_db_restore.logs_later";
/// The testing hook's environment variable (see the module's documentation).
pub const PAUSE_ENV: &str = "KASMDB_TEST_LOGS_LATER_PAUSE_AFTER";
/// COPY data is sent in chunks of about this size.
const CHUNK: usize = 256 << 10;

/// One `TABLE DATA` entry of the archive left for phase 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub dump_id: i32,
    pub schema: String,
    pub table: String,
    /// The manifest's row count.
    pub rows: i64,
}

impl Entry {
    pub fn name(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }
}

/// The `TABLE DATA` lines of a `pg_restore -l` list: (dump id, schema, table).
pub fn data_entries(list: &str) -> Vec<(i32, String, String)> {
    list.lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| {
            let (id, rest) = l.split_once(';')?;
            let id: i32 = id.trim().parse().ok()?;
            let (_, after) = rest.split_once(" TABLE DATA ")?;
            let mut words = after.split(' ');
            Some((id, words.next()?.to_string(), words.next()?.to_string()))
        })
        .collect()
}

/// Split the archive's list: the list without the `deferred` tables' data (for phase 1), and
/// those entries with the manifest's counts (for phase 2). Pure.
pub fn split(
    list: &str,
    deferred: &BTreeSet<(String, String)>,
    m: &Manifest,
) -> (String, Vec<Entry>) {
    let ids: BTreeMap<i32, (String, String)> = data_entries(list)
        .into_iter()
        .filter(|(_, s, t)| deferred.contains(&(s.clone(), t.clone())))
        .map(|(id, s, t)| (id, (s, t)))
        .collect();
    let keep = list
        .lines()
        .filter(|l| {
            let id = l.split_once(';').and_then(|(i, _)| i.trim().parse().ok());
            !id.is_some_and(|i: i32| ids.contains_key(&i))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let entries = ids
        .into_iter()
        .map(|(dump_id, (schema, table))| {
            let rows = m
                .tables
                .iter()
                .find(|t| t.schema == schema && t.table == table)
                .map_or(0, |t| t.rows);
            Entry {
                dump_id,
                schema,
                table,
                rows,
            }
        })
        .collect();
    (keep, entries)
}

/// Up to five names and a count, for messages.
pub fn describe(names: &[String]) -> String {
    let mut s = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        s.push_str(&format!(" and {} more", names.len() - 5));
    }
    format!("the logs data of {} table(s): {s}", names.len())
}

/// Every table named `logs` outside the system schemas and all its partitions (the relations
/// `backup --exclude-logs` leaves out), as (schema, table).
pub async fn logs_relations(client: &tokio_postgres::Client) -> Result<BTreeSet<(String, String)>> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text
             FROM pg_class r JOIN pg_namespace rn ON rn.oid = r.relnamespace
             CROSS JOIN LATERAL (SELECT r.oid AS relid
                                 UNION SELECT t.relid FROM pg_partition_tree(r.oid) t) tree
             JOIN pg_class c ON c.oid = tree.relid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE r.relname = 'logs' AND r.relkind IN ('r', 'p') AND NOT r.relispartition
               AND rn.nspname <> 'information_schema' AND rn.nspname NOT LIKE 'pg\\_%'",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Phase 1, in place of the single pg_restore into the new database `job.db`: the schema, then
/// everything's data and post-data but the logs tables' data; the state record written. Returns
/// the entries left for phase 2. `on_table` as for [`pgrestore::run`].
pub async fn restore_without_logs(
    job: pgrestore::PgRestoreRun<'_>,
    m: &Manifest,
    retry: Retry,
    mut on_table: impl FnMut(usize),
) -> Result<Vec<Entry>> {
    let (bin, archive, new, env) = (job.bin, job.archive, job.db, job.env);
    let second = pgrestore::PgRestoreRun {
        bin: job.bin,
        archive: job.archive,
        db: job.db,
        jobs: job.jobs,
        no_owner: job.no_owner,
        env: job.env,
    };
    pgrestore::run_with(job, &["--section=pre-data".to_string()], |_| {}).await?;
    let client = db::connect(new, retry).await?;
    let deferred = logs_relations(&client).await?;
    let (keep, entries) = split(&list(bin, archive, env).await?, &deferred, m);
    let listed = archive.with_extension("without-logs.list");
    std::fs::write(&listed, keep)?;
    let r = pgrestore::run_with(
        second,
        &[
            "--section=data".to_string(),
            "--section=post-data".to_string(),
            format!("--use-list={}", listed.display()),
        ],
        &mut on_table,
    )
    .await;
    let _ = std::fs::remove_file(&listed);
    r?;
    record(&client, &m.id, &entries).await?;
    Ok(entries)
}

/// `pg_restore -l` of the archive.
pub async fn list(
    bin: &PgRestore,
    archive: &Path,
    env: &BTreeMap<String, String>,
) -> Result<String> {
    let out = tokio::process::Command::new(&bin.path)
        .arg("-l")
        .arg(archive)
        .env_clear()
        .envs(pgtools::child_env(env))
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| Error::failed(format!("cannot run {}: {e}", bin.path.display())))?;
    if !out.status.success() {
        return Err(Error::failed(format!(
            "pg_restore -l failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Create the state record in the (new) database and fill it with the entries to load.
pub async fn record(
    client: &tokio_postgres::Client,
    backup: &str,
    entries: &[Entry],
) -> Result<()> {
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {STATE_SCHEMA};
             COMMENT ON SCHEMA {STATE_SCHEMA} IS 'kasm-db restore --logs-later: the logs data \
             still to load (kasm-db restore --logs-later --resume); dropped once loaded';
             CREATE TABLE {STATE_TABLE} (
                 dump_id integer PRIMARY KEY,
                 backup text NOT NULL,
                 schema_name text NOT NULL,
                 table_name text NOT NULL,
                 expected_rows bigint NOT NULL,
                 loaded_rows bigint,
                 loaded_at timestamptz,
                 note text)"
        ))
        .await?;
    for e in entries {
        client
            .execute(
                &format!(
                    "INSERT INTO {STATE_TABLE} (dump_id, backup, schema_name, table_name, \
                     expected_rows) VALUES ($1, $2, $3, $4, $5)"
                ),
                &[&e.dump_id, &backup, &e.schema, &e.table, &e.rows],
            )
            .await?;
    }
    Ok(())
}

async fn has_state(client: &tokio_postgres::Client) -> Result<bool> {
    Ok(client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&STATE_TABLE])
        .await?
        .get(0))
}

/// The tables still to load (`schema.table`); empty without a state record.
pub async fn pending_names(client: &tokio_postgres::Client) -> Result<Vec<String>> {
    Ok(pending(client).await?.1.iter().map(Entry::name).collect())
}

/// The backup of the state record and its pending entries (largest first).
pub async fn pending(client: &tokio_postgres::Client) -> Result<(Option<String>, Vec<Entry>)> {
    if !has_state(client).await? {
        return Ok((None, Vec::new()));
    }
    let rows = client
        .query(
            &format!(
                "SELECT dump_id, schema_name, table_name, expected_rows, backup FROM {STATE_TABLE}
                 WHERE loaded_at IS NULL ORDER BY expected_rows DESC, dump_id"
            ),
            &[],
        )
        .await?;
    let backup = match rows.first() {
        Some(r) => Some(r.get(4)),
        None => client
            .query_opt(&format!("SELECT backup FROM {STATE_TABLE} LIMIT 1"), &[])
            .await?
            .map(|r| r.get(0)),
    };
    let entries = rows
        .iter()
        .map(|r| Entry {
            dump_id: r.get(0),
            schema: r.get(1),
            table: r.get(2),
            rows: r.get(3),
        })
        .collect();
    Ok((backup, entries))
}

/// The state record's backup, when the database `target` has one (for `--resume`).
pub async fn state_backup(target: &DbTarget, retry: Retry) -> Result<Option<String>> {
    let client = db::connect(target, retry).await?;
    Ok(pending(&client).await?.0)
}

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

    const LIST: &str = ";\n; Archive created at 2026-11-24\n;\n\
        215; 1259 16390 TABLE public logs kasmapp\n\
        216; 1259 16399 TABLE public users kasmapp\n\
        3345; 0 16390 TABLE DATA public logs kasmapp\n\
        3346; 0 16399 TABLE DATA public users kasmapp\n\
        3350; 0 16420 TABLE DATA kasm_logs logs_p20261124 kasm\n\
        3360; 1259 16500 INDEX public logs_ingest_date_idx kasmapp\n";

    fn manifest() -> Manifest {
        let text = r#"{"format":1,"id":"b1","created":"2026-11-24T03:15:00Z",
            "completed":"2026-11-24T03:15:00Z","database":"u@h:5432/kasm","dbname":"kasm",
            "server_version":"17.2","pg_dump_version":"17.2","object":"x/dump.gz",
            "location":"/b/x/dump.gz","size_bytes":1,"sha256":"00","dump_bytes":1,
            "format_of_dump":"pg_dump custom",
            "compression":{"kind":"gzip","level":6,"block_bytes":1},"encryption":null,
            "server_side_encryption":null,"exclude_logs":false,
            "tables":[{"schema":"public","table":"logs","rows":6000,"data_excluded":false},
                      {"schema":"public","table":"users","rows":300,"data_excluded":false},
                      {"schema":"kasm_logs","table":"logs_p20261124","rows":70,"data_excluded":false}],
            "timings":{"count_s":0.0,"dump_s":0.0,"total_s":0.0},"restore":""}"#;
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn the_list_loses_exactly_the_logs_data() {
        assert_eq!(data_entries(LIST).len(), 3);
        let deferred: BTreeSet<(String, String)> = [
            ("public".to_string(), "logs".to_string()),
            ("kasm_logs".to_string(), "logs".to_string()),
            ("kasm_logs".to_string(), "logs_p20261124".to_string()),
        ]
        .into();
        let (keep, entries) = split(LIST, &deferred, &manifest());
        assert!(!keep.contains("3345;") && !keep.contains("3350;"), "{keep}");
        for kept in ["215;", "216;", "3346;", "3360;", "; Archive"] {
            assert!(keep.contains(kept), "{kept} in {keep}");
        }
        assert_eq!(
            entries
                .iter()
                .map(|e| (e.dump_id, e.name(), e.rows))
                .collect::<Vec<_>>(),
            [
                (3345, "public.logs".to_string(), 6000),
                (3350, "kasm_logs.logs_p20261124".to_string(), 70)
            ]
        );
        let d = describe(&entries.iter().map(Entry::name).collect::<Vec<_>>());
        assert_eq!(
            d,
            "the logs data of 2 table(s): public.logs, kasm_logs.logs_p20261124"
        );
        assert_eq!(
            list_file(Path::new("/s/b1.dump"), 3345),
            Path::new("/s/b1.dump.3345.list")
        );
    }
}
