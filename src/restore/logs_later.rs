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
//! Phase 2 is [`super::logs_load`]. This file is phase 1, the archive's list and the state record.
//!
//! Never deletes or alters rows it did not load, never loads an entry twice, never drops
//! anything but its own state schema; never prints a password.

use super::pgrestore::{self, PgRestore};
use crate::archive::manifest::Manifest;
use crate::db::inspection::Inspection;
use crate::db::{self, DbTarget, Retry};
use crate::error::{Error, Result};
use crate::pgtools;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;

/// The schema and table of the state record in the restored database.
pub const STATE_SCHEMA: &str = "kasm_db_restore";
pub const STATE_TABLE: &str = "kasm_db_restore.logs_later";

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

/// Phase 1, in place of the single pg_restore into the new database `job.db`: the schema, then
/// everything's data and post-data but the logs tables' data; the state record written. Returns
/// the entries left for phase 2. `on_table` as for [`pgrestore::run`].
pub async fn restore_without_logs(
    job: pgrestore::PgRestoreRun<'_>,
    m: &Manifest,
    retry: Retry,
    mut on_table: impl FnMut(usize, Option<&str>),
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
    pgrestore::run_with(job, &["--section=pre-data".to_string()], |_, _| {}).await?;
    let client = db::connect(new, retry).await?;
    let deferred: BTreeSet<(String, String)> = db::kasm_schema::logs_relations(&client)
        .await?
        .1
        .into_iter()
        .collect();
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

/// Whether the state record exists: by the catalog, which every role may read (`to_regclass`
/// would fail, or on some versions say "none", for a role without USAGE on its schema).
async fn has_state(client: &tokio_postgres::Client) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_class c
                            JOIN pg_namespace n ON n.oid = c.relnamespace
                            WHERE n.nspname = $1 AND c.relname = 'logs_later')",
            &[&STATE_SCHEMA],
        )
        .await?
        .get(0))
}

/// The tables an unfinished `--logs-later` load has still to load (`schema.table`), for the
/// guard of a restore over that database: [`Inspection::Absent`] without a state record,
/// [`Inspection::Unreadable`] when it exists but cannot be read (with the server's reason).
pub async fn pending_names(client: &tokio_postgres::Client) -> Inspection<Vec<String>> {
    let names = async {
        if !has_state(client).await? {
            return Ok(None);
        }
        Ok(Some(
            pending_rows(client)
                .await?
                .1
                .iter()
                .map(Entry::name)
                .collect(),
        ))
    };
    match Inspection::of_query(STATE_TABLE, names.await) {
        Inspection::Found(None) => Inspection::Absent,
        other => other.map(Option::unwrap_or_default),
    }
}

/// The backup of the state record and its pending entries (largest first).
pub async fn pending(client: &tokio_postgres::Client) -> Result<(Option<String>, Vec<Entry>)> {
    if !has_state(client).await? {
        return Ok((None, Vec::new()));
    }
    Ok(pending_rows(client).await?)
}

/// [`pending`] once the state record is known to exist.
async fn pending_rows(
    client: &tokio_postgres::Client,
) -> Result<(Option<String>, Vec<Entry>), tokio_postgres::Error> {
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
    }
}
