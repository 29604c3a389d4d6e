//! The restore pipeline, in the order, and the scratch restore test that shares it:
//!
//! 1. the key (if encrypted) and the target server are checked: not in recovery, the restore
//!    lock held, no other sessions on the target database unless `--force`, and every role the
//!    source database's properties name exists (else, without `--no-owner`, an error naming
//!    them) — with `--create-roles`, the roles the backup records that the server lacks are
//!    planned instead ([`super::roles`]: their passwords object checked, what the restoring
//!    role may give settled);
//! 2. the object is fetched, checked (size, SHA-256) and unpacked to scratch space — a corrupt
//!    backup is refused here, before the target is touched — and given the data offsets pg_dump
//!    could not write to a pipe (`archive_offsets.rs`); then `--create-roles` creates the
//!    missing roles (all or none) and their memberships;
//! 3. stale leftovers of killed restores are dropped, a new database is created — with the
//!    backup's owner and locale when the manifest has them, else the existing target database's,
//!    else the server's defaults; a locale the server lacks falls back with a warning — and the
//!    real `pg_restore -j` fills it;
//! 4. every table's row count is compared with the manifest, then ANALYZE; then the source
//!    database's privileges, settings, connection limit and comment are given to the new
//!    database (after pg_restore and the checks, which those settings must not affect), so it
//!    carries them under its final name;
//! 5. the swap (two renames in one transaction), which is not interrupted once begun.
//!
//! Any failure or signal (SIGINT, SIGTERM) in 1–4 stops pg_restore, drops the new database and
//! leaves the target database as it was. Progress goes to stderr only when asked for. Never
//! prints a password: databases are named, servers described redacted.
//!
//! This file is the I/O that carries the steps out; what to create, with which owner and
//! locale, and what to do when the server refuses, is decided in [`super::creation`] (pure),
//! the names in [`super::plan`] (pure).

use super::archive_offsets::{self, Indexed};
use super::checks;
use super::creation::{self, Next, Properties, PropertiesOutcome, Refusal};
use super::fetch::{self, Fetched};
use super::guard;
use super::logs_later;
use super::logs_load;
use super::pgrestore::{self, PgRestore};
use super::plan::{self, Difference};
use super::progress::{Progress, Stop, interrupted};
use super::properties::{self, Locale};
use super::role_plan::RolesOutcome;
use super::roles;
use super::server::{self, Server};
use crate::archive::manifest::Manifest;
use crate::archive::storage::Storage;
use crate::db::{DbTarget, Retry};
use crate::error::{Error, Result};
use crate::sizing::bytes;
use chrono::Utc;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Base name of the scratch databases of `backups verify --scratch-db`.
pub const SCRATCH_BASE: &str = "kasm_db_verify";

/// What a run needs; everything passed in, nothing read from the environment here.
pub struct RestoreSpec<'a> {
    pub storage: &'a dyn Storage,
    pub manifest: &'a Manifest,
    /// Restore: the target database (its name is what is replaced). Scratch: any database on
    /// the scratch server (only its server and credentials are used).
    pub target: &'a DbTarget,
    pub jobs: u32,
    pub force: bool,
    pub no_owner: bool,
    /// Create the roles the backup records that the target lacks (`--create-roles`).
    pub create_roles: bool,
    pub key_file: Option<&'a Path>,
    /// The directory of the pg_restore to use (`--pg-bindir` / `backup.pg_bindir`).
    pub pg_bindir: Option<&'a Path>,
    pub env: &'a BTreeMap<String, String>,
    pub retry: Retry,
    pub progress: bool,
    /// `--logs-later`: swap in before the logs data is loaded ([`super::logs_later`]).
    pub logs_later: bool,
}

/// A finished restore.
#[derive(Debug, Clone)]
pub struct Restored {
    pub database: String,
    pub previous: Option<String>,
    pub tables: usize,
    pub rows: i64,
    pub stored_bytes: u64,
    pub dump_bytes: u64,
    pub jobs: u32,
    pub stale_dropped: Vec<String>,
    pub fetch_s: f64,
    /// pg_restore and the checks (row counts, ANALYZE).
    pub restore_s: f64,
    /// The checks alone.
    pub check_s: f64,
    pub duration_s: f64,
    /// The restored database's own properties.
    pub properties: PropertiesOutcome,
    /// Items skipped or not carried over (missing roles with `--no-owner`, a missing locale,
    /// a setting the server refused, a backup without properties).
    pub warnings: Vec<String>,
    /// What `--create-roles` did (`None` without it).
    pub roles: Option<RolesOutcome>,
    /// From the start to the swap: how long the application had no database.
    pub until_swap_s: f64,
    /// `--logs-later`: the logs data loaded after the swap.
    pub logs: Option<logs_load::Loaded>,
    /// The existing target database's Kasm schema revision, when it had one.
    pub target_alembic_version: Option<String>,
}

/// A finished scratch restore test (ok when `differences` is empty).
#[derive(Debug, Clone)]
pub struct Tested {
    pub database: String,
    pub tables: usize,
    pub rows: i64,
    pub differences: Vec<Difference>,
    pub duration_s: f64,
    pub warnings: Vec<String>,
}

/// Look up the roles the backup's properties need and settle the new database's owner and
/// locales ([`creation::settle`]).
async fn plan_properties<'m>(
    server: &Server,
    m: &'m Manifest,
    existing: Option<&server::Existing>,
    no_owner: bool,
    server_major: u32,
    will_create: &[String],
) -> Result<Properties<'m>> {
    let names = creation::roles_to_look_up(m);
    let mut present = if names.is_empty() {
        BTreeSet::new()
    } else {
        server.roles_present(&names).await?
    };
    // `--create-roles` creates these before the database.
    present.extend(will_create.iter().filter(|r| names.contains(r)).cloned());
    creation::settle(m, existing, present, no_owner, server_major)
}

/// Create the new database with the planned owner and the first locale the server accepts,
/// as [`creation::after_refusal`] decides after each refusal. Returns the database as created
/// and the warnings.
async fn create_step(
    server: &Server,
    new: &str,
    props: &Properties<'_>,
) -> Result<(server::Existing, Vec<String>)> {
    use tokio_postgres::error::SqlState;
    let mut warnings = Vec::new();
    let mut owner = props.owner.clone();
    let mut i = 0;
    let mut refused: Option<(Locale, String)> = None;
    loop {
        let locale = props.locales[i].as_ref();
        let Err(e) = server
            .create(new, owner.as_deref(), locale, props.server_major)
            .await
        else {
            break;
        };
        let why = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_else(|| e.to_string());
        let denied = e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE);
        // Which privilege is missing, from the catalog (never from the message's wording).
        let (may_create, may_give_owner) = if denied {
            server
                .may_create(owner.as_deref(), props.server_major)
                .await?
        } else {
            (true, true)
        };
        let next = creation::after_refusal(&Refusal {
            new,
            why: &why,
            denied,
            may_create,
            may_give_owner,
            transient: crate::db::is_transient(&e),
            owner: owner.as_deref(),
            locale,
            more_locales: i + 1 < props.locales.len(),
            no_owner: props.no_owner,
            me: server.maintenance.user(),
        });
        match next {
            Next::WithoutOwner(warning) => {
                owner = None;
                warnings.push(warning);
            }
            Next::NextLocale => {
                if refused.is_none() {
                    refused = locale.map(|l| (l.clone(), why));
                }
                i += 1;
            }
            Next::Refused(err) => return Err(err),
            Next::AsIs => {
                return Err(Error::from(e).context(format!("creating the new database {new}")));
            }
        }
    }
    let made = server
        .existing(new)
        .await?
        .ok_or_else(|| Error::failed(format!("the new database {new} vanished")))?;
    if let Some((l, why)) = refused {
        warnings.push(creation::locale_fallback_warning(&l, &why, &made.locale));
    }
    Ok((made, warnings))
}

/// Checks shared by both modes; returns the pg_restore to use and the server's major version.
async fn prepare(server: &Server, job: &RestoreSpec<'_>) -> Result<(PgRestore, u32)> {
    server.refuse_recovery().await?;
    let (major, _) = server.version().await?;
    let dump_version = job.manifest.pg_dump_version.clone();
    let (bindir, env) = (job.pg_bindir.map(Path::to_path_buf), job.env.clone());
    let bin = tokio::task::spawn_blocking(move || {
        let bindir = bindir.as_deref();
        pgrestore::find(
            major,
            &dump_version,
            crate::pgtools::Search { bindir, env: &env },
        )
    })
    .await
    .map_err(|e| Error::failed(format!("finding pg_restore: {e}")))??;
    Ok((bin, major))
}

async fn fetch_step(job: &RestoreSpec<'_>, p: &Progress, stop: &mut Stop) -> Result<Fetched> {
    let key = fetch::key_for(job.manifest, job.key_file)?;
    let m = job.manifest;
    p.stage(format!(
        "fetching and checking {} ({})",
        m.id,
        bytes(m.size_bytes)
    ));
    let total = m.size_bytes;
    let bar = p.bar.clone();
    let scratch = fetch::scratch_dir(job.env);
    let fetched = tokio::select! {
        r = fetch::fetch(job.storage, m, key, &scratch, move |n| {
            bar.set_message(format!("fetching {} of {}", bytes(n), bytes(total)));
        }) => r?,
        _ = stop => return Err(Error::failed(
            "interrupted by a signal while fetching the backup; the target was not touched",
        )),
    };
    p.done(format!(
        "fetched {}: {} stored, {} archive, size and SHA-256 match the manifest",
        m.id,
        bytes(fetched.stored_bytes),
        bytes(fetched.dump_bytes)
    ));
    index_step(&fetched.path).await;
    Ok(fetched)
}

/// Give the archive its data offsets so `pg_restore -j` starts the largest tables first and
/// seeks to each; an archive that cannot be indexed is restored as it is.
async fn index_step(path: &Path) {
    let path = path.to_path_buf();
    let t = Instant::now();
    let r = tokio::task::spawn_blocking(move || archive_offsets::index(&path)).await;
    match r {
        Ok(Ok(Indexed::Written { blocks })) => tracing::debug!(
            blocks,
            secs = t.elapsed().as_secs_f64(),
            "wrote the archive's data offsets for parallel restore"
        ),
        Ok(Ok(Indexed::AlreadyIndexed)) => {}
        Ok(Ok(Indexed::Skipped(why))) => {
            tracing::debug!("archive not indexed: {why}; pg_restore finds the data itself")
        }
        Ok(Err(e)) => tracing::warn!(
            "could not read the archive's data blocks ({e}); pg_restore will find them itself"
        ),
        Err(e) => tracing::warn!("indexing the archive: {e}"),
    }
}

/// pg_restore into `new` and count its rows (each table as soon as its data is in, while
/// pg_restore goes on; see [`checks`]); the caller drops `new` on failure.
async fn load(
    job: &RestoreSpec<'_>,
    bin: &PgRestore,
    archive: &Path,
    new: &DbTarget,
    p: &Progress,
) -> Result<(Vec<Difference>, f64)> {
    let m = job.manifest;
    let ntables = m.tables.len();
    p.stage(format!("pg_restore -j{} into {}", job.jobs, new.dbname()));
    let bar = p.bar.clone();
    let jobs = job.jobs;
    let (loaded_tx, loaded_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let restored = AtomicBool::new(false);
    let run = pgrestore::PgRestoreRun {
        bin,
        archive,
        db: new,
        jobs: job.jobs,
        no_owner: job.no_owner,
        env: job.env,
    };
    let on_table = move |n, finished: Option<&str>| {
        bar.set_message(format!(
            "pg_restore -j{jobs}: {n}/{ntables} table(s) of data in"
        ));
        if let Some(tag) = finished {
            let _ = loaded_tx.send(tag.to_string());
        }
    };
    let restoring = async {
        // With --logs-later the logs tables stay empty until after the swap.
        let r = if job.logs_later {
            logs_later::restore_without_logs(run, m, job.retry, on_table)
                .await
                .map(Some)
        } else {
            pgrestore::run(run, on_table).await.map(|()| None)
        };
        restored.store(true, Ordering::Release);
        r
    };
    let counting = checks::count_as_loaded(new, job.retry, &m.tables, loaded_rx, &restored);
    let (r, early) = tokio::join!(restoring, counting);
    let mut expected = m.tables.clone();
    if let Some(later) = r? {
        for t in expected.iter_mut() {
            if later
                .iter()
                .any(|e| e.schema == t.schema && e.table == t.table)
            {
                t.rows = 0;
            }
        }
    }
    p.done(format!("pg_restore into {} done", new.dbname()));
    p.stage("checking row counts and analyzing");
    let t = Instant::now();
    tracing::debug!(
        early = early.len(),
        "tables counted while pg_restore was running"
    );
    let bar = p.bar.clone();
    let found = checks::finish(new, job.retry, &expected, early, jobs as usize, move |i| {
        bar.set_message(format!(
            "checking row counts, ANALYZE: {i}/{ntables} table(s)"
        ))
    })
    .await?;
    Ok((plan::compare(&expected, &found), t.elapsed().as_secs_f64()))
}

/// What steps 3–4 work with, once the target is checked and the archive fetched.
struct Loaded<'a> {
    job: &'a RestoreSpec<'a>,
    server: &'a Server,
    bin: &'a PgRestore,
    fetched: &'a Fetched,
    p: &'a Progress,
}

/// What [`build`] made.
struct Built {
    name: String,
    diffs: Vec<Difference>,
    check_s: f64,
    properties: PropertiesOutcome,
    warnings: Vec<String>,
}

/// Run steps 3–4 into a new database named from `base`; drop it on failure or signal.
async fn build(
    l: &Loaded<'_>,
    base: &str,
    props: &Properties<'_>,
    stop: &mut Stop,
) -> Result<Built> {
    let Loaded {
        job,
        server,
        bin,
        fetched,
        p,
    } = *l;
    let new_name = plan::new_name(base, Utc::now());
    let new = job.target.with_dbname(&new_name);
    let work = async {
        let (made, mut warnings) = create_step(server, &new_name, props).await?;
        let (diffs, check_s) = load(job, bin, &fetched.path, &new, p).await?;
        let mut done = Vec::new();
        if let (Some(source), true) = (props.from_backup, diffs.is_empty()) {
            p.stage(format!(
                "giving {new_name} the source database's privileges and settings"
            ));
            let plan = properties::steps(&new_name, source, &made.owner, &props.present);
            warnings.extend(plan.warnings);
            let applied = server.apply(&plan.steps).await.map_err(|e| {
                e.context("giving the new database the source database's privileges")
            })?;
            warnings.extend(applied.warnings);
            done = applied.done;
        }
        for w in &warnings {
            tracing::debug!(warning = %w, "restore");
        }
        let properties = PropertiesOutcome::of(props.from_backup.is_some(), made, &done);
        Ok::<_, Error>(Built {
            name: new_name.clone(),
            diffs,
            check_s,
            properties,
            warnings,
        })
    };
    let result = tokio::select! {
        r = work => r,
        _ = stop => Err(Error::failed("interrupted by a signal: pg_restore was stopped")),
    };
    match result {
        Ok(built) => Ok(built),
        Err(e) => {
            // A signal may have cut the properties' transaction short on this connection.
            server.rollback().await;
            let dropped = server.drop_db(&new_name).await;
            Err(match dropped {
                Ok(()) => e.context(format!(
                    "restore failed; the half-made database {new_name} was dropped"
                )),
                Err(de) => e.context(format!(
                    "restore failed, and dropping the half-made database {new_name} failed too \
                     ({de}); the next restore drops it"
                )),
            })
        }
    }
}

/// `kasm-db restore`: steps 1–5.
pub async fn restore(job: RestoreSpec<'_>) -> Result<Restored> {
    let started = Instant::now();
    let mut stop = interrupted()?;
    let p = Progress::new(job.progress);
    let name = job.target.dbname().to_string();
    if name.is_empty() {
        return Err(Error::usage(
            "--target names no database (postgres://.../DBNAME)",
        ));
    }
    let key = fetch::key_for(job.manifest, job.key_file)?;
    p.stage(format!(
        "checking the target server for {}",
        job.target.redacted()
    ));
    let server = Server::connect(job.target, job.retry).await?;
    let (bin, major) = prepare(&server, &job).await?;
    // Keyed by the (possibly shortened) base name, so that no two restores can ever see each
    // other's new database as a stale leftover.
    server.lock(plan::base(&name)).await?;
    let existing = server.existing(&name).await?;
    if existing.is_some() && !job.force {
        server.refuse_in_use(&name).await?;
    }
    // Kasm's schema revision and an unfinished --logs-later load of the existing database: a
    // check that cannot be made refuses without --force (guard::check).
    let mut guarded = Vec::new();
    let mut target_alembic_version = None;
    if existing.is_some() {
        let found = guard::inspect(job.target, job.retry).await;
        guarded = guard::check(
            &name,
            job.manifest.alembic_version.as_deref(),
            &found,
            job.force,
        )?;
        target_alembic_version = found.alembic_version.found().cloned();
    }
    let roles_plan = if job.create_roles {
        Some(roles::prepare(&server, job.storage, job.manifest, key.as_ref()).await?)
    } else {
        None
    };
    let will_create = roles_plan
        .as_ref()
        .map(|r| r.to_create())
        .unwrap_or_default();
    let props = plan_properties(
        &server,
        job.manifest,
        existing.as_ref(),
        job.no_owner,
        major,
        &will_create,
    )
    .await?;
    let t = Instant::now();
    let fetched = fetch_step(&job, &p, &mut stop).await?;
    let fetch_s = t.elapsed().as_secs_f64();
    let (roles_done, mut role_warnings) = match &roles_plan {
        Some(plan) => {
            if !will_create.is_empty() {
                p.stage(format!("creating {} role(s)", will_create.len()));
            }
            let (done, warnings) = roles::create(&server, plan).await?;
            (Some(done), warnings)
        }
        None => (None, Vec::new()),
    };
    let stale_dropped = server.drop_stale(&name).await?;
    let t = Instant::now();
    let loaded = Loaded {
        job: &job,
        server: &server,
        bin: &bin,
        fetched: &fetched,
        p: &p,
    };
    let Built {
        name: new_name,
        diffs,
        check_s,
        properties,
        mut warnings,
    } = build(&loaded, &name, &props, &mut stop)
        .await
        .map_err(|e| roles::kept_on_failure(e, roles_done.as_ref()))?;
    warnings.extend(guarded);
    let restore_s = t.elapsed().as_secs_f64();
    role_warnings.append(&mut warnings);
    let mut warnings = role_warnings;
    if props.from_backup.is_none() {
        warnings.insert(
            0,
            creation::no_properties_warning(&job.manifest.id, existing.is_some()),
        );
    }
    if !diffs.is_empty() {
        let _ = server.drop_db(&new_name).await;
        return Err(Error::failed(format!(
            "the restored database does not match the backup: {}; the new database {new_name} \
             was dropped and {name} is unchanged",
            plan::describe(&diffs)
        )));
    }
    // Step 5: from here on a signal no longer interrupts (the handlers swallow it).
    p.stage(format!("swapping {new_name} in as {name}"));
    let previous = match existing {
        Some(_) => Some(server.previous_name(&name, Utc::now()).await?),
        None => None,
    };
    if let Err(e) = server
        .swap(&name, &new_name, previous.as_deref(), job.force)
        .await
    {
        let _ = server.drop_db(&new_name).await;
        return Err(e.context(format!(
            "{name} is unchanged and the new database {new_name} was dropped"
        )));
    }
    let until_swap_s = started.elapsed().as_secs_f64();
    let logs = if job.logs_later {
        p.stage(format!("{name} is back; loading its logs data"));
        let r = logs_load::load(logs_phase(&job, &bin, &fetched), &mut stop).await;
        Some(r.map_err(|e| unfinished(e, &name, previous.as_deref(), until_swap_s))?)
    } else {
        None
    };
    drop(fetched);
    let m = job.manifest;
    Ok(Restored {
        database: name,
        previous,
        tables: m.tables.len(),
        rows: m.tables.iter().map(|t| t.rows).sum(),
        stored_bytes: m.size_bytes,
        dump_bytes: m.dump_bytes,
        jobs: job.jobs,
        stale_dropped,
        fetch_s,
        restore_s,
        check_s,
        duration_s: started.elapsed().as_secs_f64(),
        properties,
        warnings,
        roles: roles_done,
        until_swap_s,
        logs,
        target_alembic_version,
    })
}

/// The error of a `--logs-later` restore whose logs phase did not finish: what is back, what is
/// missing and the command that finishes it.
fn unfinished(e: Error, name: &str, previous: Option<&str>, until_swap_s: f64) -> Error {
    e.context(format!(
        "the restore was swapped in as {name} after {until_swap_s:.1} s{} and serves, but its \
         logs data is not all loaded; finish it with `kasm-db restore --from TARGET --target \
         URL --logs-later --resume` (the same --from and --target): it loads only what is \
         missing, each table exactly once",
        previous
            .map(|p| format!(" (the previous database is kept as {p})"))
            .unwrap_or_default()
    ))
}

/// Phase 2 of `--logs-later` (after the swap, or on `--resume`): the job's logs data from the
/// fetched archive into the live database.
fn logs_phase<'a>(
    job: &'a RestoreSpec<'_>,
    bin: &'a PgRestore,
    fetched: &'a Fetched,
) -> logs_load::Load<'a> {
    logs_load::Load {
        bin,
        archive: &fetched.path,
        db: job.target,
        retry: job.retry,
        jobs: job.jobs,
        env: job.env,
        backup: &job.manifest.id,
    }
}

/// What `restore --logs-later --resume` did.
#[derive(Debug, Clone)]
pub struct Resumed {
    pub database: String,
    pub logs: logs_load::Loaded,
    pub fetch_s: f64,
    pub duration_s: f64,
}

/// `restore --logs-later --resume`: load the logs data a `--logs-later` restore of
/// `job.target` left pending (the manifest is the state record's backup).
pub async fn resume_logs(job: RestoreSpec<'_>) -> Result<Resumed> {
    let started = Instant::now();
    let mut stop = interrupted()?;
    let p = Progress::new(job.progress);
    let name = job.target.dbname().to_string();
    let server = Server::connect(job.target, job.retry).await?;
    let (bin, _) = prepare(&server, &job).await?;
    server.lock(plan::base(&name)).await?;
    let t = Instant::now();
    let fetched = fetch_step(&job, &p, &mut stop).await?;
    let fetch_s = t.elapsed().as_secs_f64();
    p.stage(format!("loading the logs data into {name}"));
    let logs = logs_load::load(logs_phase(&job, &bin, &fetched), &mut stop)
        .await
        .map_err(|e| {
            e.context(format!(
                "{name} still lacks some logs data; run the same command again to load the rest"
            ))
        })?;
    Ok(Resumed {
        database: name,
        logs,
        fetch_s,
        duration_s: started.elapsed().as_secs_f64(),
    })
}

/// `backups verify --scratch-db`: steps 1, 3 and 4 into a scratch database, always dropped.
/// A checksum, pg_restore or count failure is an error of kind Failed.
pub async fn scratch_test(job: RestoreSpec<'_>) -> Result<Tested> {
    let started = Instant::now();
    let mut stop = interrupted()?;
    let p = Progress::new(job.progress);
    fetch::key_for(job.manifest, job.key_file)?;
    p.stage(format!(
        "checking the scratch server {}",
        job.target.redacted()
    ));
    let server = Server::connect(job.target, job.retry).await?;
    let (bin, major) = prepare(&server, &job).await?;
    server.lock(SCRATCH_BASE).await?;
    let props = plan_properties(&server, job.manifest, None, job.no_owner, major, &[]).await?;
    let fetched = fetch_step(&job, &p, &mut stop).await?;
    server.drop_stale(SCRATCH_BASE).await?;
    let loaded = Loaded {
        job: &job,
        server: &server,
        bin: &bin,
        fetched: &fetched,
        p: &p,
    };
    let built = build(&loaded, SCRATCH_BASE, &props, &mut stop).await?;
    let new_name = built.name;
    drop(fetched);
    server.drop_db(&new_name).await?;
    let m = job.manifest;
    Ok(Tested {
        database: new_name,
        tables: m.tables.len(),
        rows: m.tables.iter().map(|t| t.rows).sum(),
        differences: built.diffs,
        duration_s: started.elapsed().as_secs_f64(),
        warnings: built.warnings,
    })
}

/// Parallel jobs when `--jobs` is not given: the core count.
pub fn default_jobs() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}
