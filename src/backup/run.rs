//! The backup pipeline: lock, snapshot, row counts, `pg_dump`, compression, checksum, storage,
//! manifest — in that order, with the manifest last.
//!
//! 1. The backup lock ([`Lock::Backup`]) on the source database (a second backup of the same
//!    database, from the command line or `serve`'s schedule, exits 75 instead of running twice).
//! 2. A REPEATABLE READ, READ ONLY transaction exports its snapshot; it stays open while
//!    `pg_dump --snapshot` dumps exactly that snapshot and the row counts are taken in it. The
//!    database's own properties (owner, locale, privileges, settings, comment: what pg_dump
//!    without `--create` leaves out) are read in it too ([`properties`]), and Kasm's
//!    `alembic_version`, and the roles the database needs ([`roles`]). A role that may not
//!    read every table is refused here, before pg_dump starts, with what to grant. `--exclude-logs` leaves out the data of every table named
//!    `logs` (kasm-db's partitioned one with its partitions, Kasm's own plain one).
//! 3. `pg_dump -Fc -Z0` (custom format, its own compression off) runs with the connection in its
//!    environment ([`DbTarget::libpq_env`]); its stdout is compressed in parallel blocks
//!    (`backup.compression`: gzip members by libdeflate, or zstd frames), hashed and streamed
//!    to storage with bounded memory. No temporary file of the whole dump.
//! 4. With `backup.encryption_key_file`, every gzip member (zstd frame) is also sealed (AES-256-GCM stream,
//!    see [`crypt`]); the manifest records the key id, never the key.
//! 5. The role password hashes, when this role may read `pg_authid`, go into their own object
//!    beside the dump (sealed like it when encrypted), stored after the dump and before the
//!    manifest; the manifest lists the roles and says whether the hashes are there.
//! 6. Any failure, Ctrl-C or SIGTERM kills pg_dump and aborts the upload: nothing is listed.
//!
//! Never puts the password on a command line, in a message or in the manifest.

use super::pgdump;
use super::properties;
use super::roles;
use crate::archive::compress;
use crate::archive::crypt;
use crate::archive::manifest::{self, Manifest, TableRows};
use crate::archive::storage::{Piece, Retain, Storage};
use crate::archive::target::Target;
use crate::config::Config;
use crate::db::inspection::Inspection;
use crate::db::locks::{self, Lock};
use crate::db::{self, DbTarget, Retry};
use crate::error::{Error, Kind, Result};
use chrono::Utc;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// Pieces buffered between compression and storage.
const CHANNEL_PIECES: usize = 8;
/// How much of pg_dump's stderr is kept for the error message.
const STDERR_MAX: usize = 16 << 10;

/// One backup to run.
pub struct BackupSpec<'a> {
    pub db: &'a DbTarget,
    pub config: &'a Config,
    pub target: &'a Target,
    /// The target's storage, opened once by the caller, which goes on to copy and prune
    /// through the same one (`backup::after`).
    pub storage: &'a Arc<dyn Storage>,
    /// Leave out the rows of every table named `logs` and of its partitions.
    pub exclude_logs: bool,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// The process environment (only [`crate::pgtools::child_env`] of it reaches pg_dump).
    pub env: &'a BTreeMap<String, String>,
}

/// Run the backup; returns its manifest once the manifest is stored.
pub async fn run(job: BackupSpec<'_>) -> Result<Manifest> {
    let started = Instant::now();
    let key = match &job.config.backup.encryption_key_file {
        Some(path) => Some(crypt::Key::from_file(path)?),
        None => None,
    };
    let sealer = match &key {
        Some(k) => Some(Arc::new(crypt::Sealer::new(k)?)),
        None => None,
    };
    let storage = job.storage.clone();
    let client = db::connect(job.db, Retry::configured(&job.config.database)).await?;
    locks::hold(&client, Lock::Backup, &job.db.redacted()).await?;
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int, current_setting('server_version')",
            &[],
        )
        .await?;
    let server_major = (row.get::<_, i32>(0) / 10_000) as u32;
    let server_version: String = row.get(1);
    let (bindir, env) = (job.config.backup.pg_bindir.clone(), job.env.clone());
    let pg_dump = tokio::task::spawn_blocking(move || {
        let bindir = bindir.as_deref();
        pgdump::find(server_major, crate::pgtools::Search { bindir, env: &env })
    })
    .await
    .map_err(|e| Error::failed(format!("finding pg_dump: {e}")))??;
    pgdump::check(&pg_dump, server_major, &server_version)?;
    if let Some(w) = pgdump::newer_than_server(&pg_dump, server_major, &server_version) {
        tracing::warn!("{w}");
    }
    let (excluded_roots, excluded) = if job.exclude_logs {
        let found = crate::db::kasm_schema::logs_relations(&client).await?;
        if found.0.is_empty() {
            tracing::warn!(
                "--exclude-logs: this database has no table named logs; nothing excluded"
            );
        }
        found
    } else {
        (Vec::new(), Vec::new())
    };

    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?;
    let snapshot: String = client
        .query_one("SELECT pg_export_snapshot()", &[])
        .await?
        .get(0);
    let tables = user_tables(&client).await?;
    let database_properties = properties::read(&client).await?;
    let (needed_roles, passwords) = roles::read(&client).await?;
    refuse_unreadable(&client, job.db, &database_properties.owner).await?;
    // After the check above: a revision that cannot be read is never recorded as "none".
    let alembic_version = match crate::db::kasm_schema::alembic_version(&client).await {
        Inspection::Found(v) => Some(v),
        Inspection::Absent => None,
        Inspection::Unreadable(u) => {
            return Err(Error::new(
                if u.temporary {
                    Kind::Temporary
                } else {
                    Kind::Failed
                },
                format!(
                    "cannot read Kasm's schema revision ({}) of {}: {}; nothing was written",
                    u.what,
                    job.db.dbname(),
                    u.why
                ),
            ));
        }
    };
    let created = Utc::now();
    let id = manifest::new_id(created);
    let method = job.config.backup.method();
    let object = manifest::object_name(&id, key.is_some(), method.codec);

    let mut cmd = tokio::process::Command::new(&pg_dump.path);
    cmd.args(["--format=custom", "--compress=0", "--no-password"])
        .arg(format!("--snapshot={snapshot}"));
    for (schema, table) in &excluded {
        cmd.arg(format!(
            "--exclude-table-data={}.{}",
            db::ident(schema),
            db::ident(table)
        ));
    }
    cmd.env_clear()
        .envs(crate::pgtools::child_env(job.env))
        .envs(job.db.libpq_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::failed(format!("cannot run {}: {e}", pg_dump.path.display())))?;
    let stdout = child.stdout.take().expect("piped");
    let stderr_task = capture_stderr(child.stderr.take().expect("piped"), STDERR_MAX);

    let stop = interrupted()?;
    let (tx, rx) = mpsc::channel::<Piece>(CHANNEL_PIECES);
    let put = {
        let storage = storage.clone();
        let object = object.clone();
        tokio::spawn(async move { storage.put_stream(&object, rx, Retain::WithBackup).await })
    };
    let bar = progress_bar(job.progress);
    let dump_started = Instant::now();
    let produce = async {
        let dump = async {
            let tx = tx;
            let summary =
                compress::compress_stream(stdout, method, sealer, &tx, |n| bar.set_position(n))
                    .await;
            if summary.is_err() {
                let _ = child.start_kill();
            }
            let status = child.wait().await?;
            let stderr = stderr_task.await.unwrap_or_default();
            let stderr = stderr.trim();
            let summary = summary?;
            if !status.success() {
                return Err(Error::failed(format!(
                    "pg_dump failed ({status}): {}",
                    if stderr.is_empty() {
                        "no message"
                    } else {
                        stderr
                    }
                )));
            }
            tx.send(Piece::End)
                .await
                .map_err(|_| Error::failed(compress::STORAGE_STOPPED))?;
            Ok((summary, dump_started.elapsed().as_secs_f64()))
        };
        tokio::try_join!(dump, count_rows(&client, &tables, &excluded))
    };
    let produced = tokio::select! {
        r = produce => r,
        _ = stop => Err(Error::failed(
            "interrupted by a signal: pg_dump was stopped and the upload aborted; nothing was kept",
        )),
    };
    bar.finish_and_clear();
    let ((summary, dump_s), (rows, count_s)) = match produced {
        Ok(v) => v,
        Err(e) => return Err(failure(e, put).await),
    };
    let stored = put
        .await
        .map_err(|e| Error::failed(format!("upload task: {e}")))??;
    if stored != summary.output_bytes {
        return Err(Error::failed(format!(
            "storage reports {stored} bytes written but {} were sent",
            summary.output_bytes
        )));
    }
    client.batch_execute("COMMIT").await?;
    let needed_roles =
        match roles::store(storage.as_ref(), &id, needed_roles, passwords, key.as_ref()).await {
            Ok(r) => r,
            Err(e) => {
                let _ = storage.delete(&object).await;
                return Err(e.context("nothing was kept"));
            }
        };

    let (format_of_dump, compression, encryption) = manifest::stored_form(
        "pg_dump custom (-Fc -Z0)",
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
        server_version,
        pg_dump_version: pg_dump.version.clone(),
        object: object.clone(),
        restore: manifest::restore_recipe(
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
        exclude_logs: job.exclude_logs,
        excluded: excluded_roots,
        alembic_version,
        tables: rows,
        database_properties: Some(database_properties),
        roles: Some(needed_roles),
        kind: manifest::BackupKind::Logical,
        physical: None,
        timings: manifest::Timings {
            count_s,
            dump_s,
            total_s: started.elapsed().as_secs_f64(),
        },
    };
    let body = serde_json::to_vec_pretty(&m)
        .map_err(|e| Error::failed(format!("manifest encoding: {e}")))?;
    if let Err(e) = storage
        .put_small(&manifest::manifest_name(&id), body, Retain::WithBackup)
        .await
    {
        let _ = storage.delete(&object).await;
        if let Some(p) = m.passwords() {
            let _ = storage.delete(&p.object).await;
        }
        return Err(
            e.context("the dump was stored but its manifest could not be; nothing was kept")
        );
    }
    Ok(m)
}

/// A child's stderr read to its end (so the child never blocks on a full pipe), its first `max`
/// bytes kept for the error message. For pg_dump here and pg_basebackup in `physical.rs`.
pub(super) fn capture_stderr(
    mut stderr: tokio::process::ChildStderr,
    max: usize,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = (&mut stderr).take(max as u64).read_to_end(&mut buf).await;
        let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
        String::from_utf8_lossy(&buf).to_string()
    })
}

/// The error of a backup whose pipeline failed with `e`: once the upload has aborted, the
/// storage's own failure when it was the cause (the compressor saw only that it stopped).
pub(super) async fn failure(e: Error, put: tokio::task::JoinHandle<Result<u64>>) -> Error {
    let put_result = put.await;
    if e.to_string().contains(compress::STORAGE_STOPPED) {
        if let Ok(Err(pe)) = put_result {
            return pe;
        }
    }
    e
}

/// A future that resolves on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed now, when
/// this is called, not when it is first polled: no signal is missed once the upload has begun.
pub(crate) fn interrupted() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
    })
}

pub(super) fn progress_bar(show: bool) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} backup: {bytes} dumped ({binary_bytes_per_sec}) {elapsed}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// Fail before pg_dump starts when this role may not read every table and sequence (pg_dump
/// would stop part way with "permission denied"), naming them and what to grant.
async fn refuse_unreadable(
    client: &tokio_postgres::Client,
    db: &DbTarget,
    owner: &str,
) -> Result<()> {
    let rows = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p', 'S')
               AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
               AND NOT has_table_privilege(c.oid, 'SELECT')
               AND NOT EXISTS (SELECT 1 FROM pg_depend d
                               WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                 AND d.deptype = 'e')
             ORDER BY 1",
            &[],
        )
        .await?;
    if rows.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = rows.iter().take(5).map(|r| r.get(0)).collect();
    let me = db.user();
    Err(Error::failed(format!(
        "the role {me:?} may not read {} table(s) or sequence(s) of {} ({}{}), and pg_dump needs \
         SELECT on all of them: run the backup as the database's owner {owner:?}, or grant this \
         role its privileges (GRANT {} TO {}) or pg_read_all_data (PostgreSQL 14 and later); \
         nothing was written",
        rows.len(),
        db.dbname(),
        names.join(", "),
        if rows.len() > names.len() {
            ", ..."
        } else {
            ""
        },
        db::ident(owner),
        db::ident(me)
    )))
}

/// Ordinary tables (partitions included, partitioned parents not) whose data pg_dump dumps.
async fn user_tables(client: &tokio_postgres::Client) -> Result<Vec<(String, String)>> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'r'
               AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
               AND NOT EXISTS (SELECT 1 FROM pg_depend d
                               WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                 AND d.deptype = 'e')
             ORDER BY 1, 2",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Count each table's rows in the open (exported) snapshot.
async fn count_rows(
    client: &tokio_postgres::Client,
    tables: &[(String, String)],
    excluded: &[(String, String)],
) -> Result<(Vec<TableRows>, f64)> {
    let t = Instant::now();
    let mut out = Vec::with_capacity(tables.len());
    for (schema, table) in tables {
        let data_excluded = excluded.iter().any(|(s, n)| s == schema && n == table);
        let rows = if data_excluded {
            0
        } else {
            client
                .query_one(
                    &format!(
                        "SELECT count(*) FROM {}.{}",
                        db::ident(schema),
                        db::ident(table)
                    ),
                    &[],
                )
                .await?
                .get(0)
        };
        out.push(TableRows {
            schema: schema.clone(),
            table: table.clone(),
            rows,
            data_excluded,
        });
    }
    Ok((out, t.elapsed().as_secs_f64()))
}
