//! The `restore` command and the `--scratch-db` branch of `backups verify`: resolve the
//! backup target, the backup and the database URL, run the pipeline, and shape the contract's
//! JSON and a summary for people (with the time taken) into an [`Outcome`].
//!
//! Never prints a password: the target URL is parsed once and only its redacted form or its
//! database name appears in output.

use super::run::{self, RestoreSpec};
use crate::app::Ctx;
use crate::backup::catalog;
use crate::backup::storage;
use crate::backup::target::Target;
use crate::cli::RestoreArgs;
use crate::db::DbTarget;
use crate::error::{Error, Result};
use crate::output::Outcome;
use crate::sizing::bytes;
use serde::Serialize;

#[derive(Serialize)]
struct RestoreReport {
    backup: String,
    database: String,
    tables: usize,
    rows: i64,
    duration_s: f64,
    previous: Option<String>,
    server: String,
    jobs: u32,
    stored_bytes: u64,
    dump_bytes: u64,
    fetch_s: f64,
    restore_s: f64,
    check_s: f64,
    stale_dropped: Vec<String>,
    /// The restored database's owner, locale and what it was given of the source's
    /// privileges, settings and comment.
    database_properties: run::PropertiesOutcome,
    /// What was skipped or not carried over, in sentences (empty when nothing was).
    warnings: Vec<String>,
    /// The tables whose data the backup left out (`backup --exclude-logs`): restored with
    /// their definitions and no rows.
    excluded: Vec<String>,
    /// Kasm's schema revision in the backup (`alembic_version`); null without that table.
    alembic_version: Option<String>,
}

/// `kasm-db restore`.
pub async fn restore(ctx: &Ctx, args: &RestoreArgs) -> Result<Outcome> {
    let from = Target::resolve(
        args.from.as_deref(),
        ctx.config.backup.to.as_deref(),
        "--from",
    )?;
    let target = DbTarget::resolve(Some(&args.target), &ctx.env)?;
    if args.jobs == Some(0) {
        return Err(Error::usage("--jobs must be at least 1"));
    }
    let store = storage::open(&from, &ctx.config).await?;
    let m = catalog::find(store.as_ref(), &args.backup).await?;
    let r = run::restore(RestoreSpec {
        storage: store.as_ref(),
        manifest: &m,
        target: &target,
        jobs: args.jobs.unwrap_or_else(run::default_jobs),
        force: args.force,
        no_owner: args.no_owner,
        key_file: ctx.config.backup.encryption_key_file.as_deref(),
        pg_bindir: args
            .pg_bindir
            .as_deref()
            .or(ctx.config.backup.pg_bindir.as_deref()),
        env: &ctx.env,
        retry: ctx.retry(),
        progress: ctx.interactive,
    })
    .await?;
    let text = format!(
        "restored backup {} ({}) into {} on {}:{} in {:.1} s: {} table(s), {} rows, row counts match \
         the manifest{}\n  fetch and check {:.1} s, pg_restore -j{} and checks {:.1} s (checks {:.1} s){}",
        m.id,
        bytes(m.size_bytes),
        r.database,
        target.host(),
        target.port(),
        r.duration_s,
        r.tables,
        r.rows,
        match &r.previous {
            Some(p) => format!("; the previous database is kept as {p}"),
            None => "; there was no previous database".into(),
        },
        r.fetch_s,
        r.jobs,
        r.restore_s,
        r.check_s,
        if r.stale_dropped.is_empty() {
            String::new()
        } else {
            format!(
                "\n  dropped leftovers of killed restores: {}",
                r.stale_dropped.join(", ")
            )
        }
    ) + &excluded_text(&m)
        + &properties_text(&r.properties, &r.warnings);
    let report = RestoreReport {
        backup: m.id.clone(),
        database: r.database,
        tables: r.tables,
        rows: r.rows,
        duration_s: r.duration_s,
        previous: r.previous,
        server: format!("{}:{}", target.host(), target.port()),
        jobs: r.jobs,
        stored_bytes: r.stored_bytes,
        dump_bytes: r.dump_bytes,
        fetch_s: r.fetch_s,
        restore_s: r.restore_s,
        check_s: r.check_s,
        stale_dropped: r.stale_dropped,
        database_properties: r.properties,
        warnings: r.warnings,
        excluded: m.excluded_tables(),
        alembic_version: m.alembic_version.clone(),
    };
    Ok(Outcome::new(&report, text))
}

/// The summary's line about data the backup left out and Kasm's schema revision.
fn excluded_text(m: &crate::backup::manifest::Manifest) -> String {
    let mut text = String::new();
    let excluded = m.excluded_tables();
    if !excluded.is_empty() {
        text.push_str(&format!(
            "\n  the backup left out the data of {} (backup --exclude-logs): restored empty, with \
             their definitions",
            excluded.join(", ")
        ));
    }
    if let Some(v) = &m.alembic_version {
        text.push_str(&format!("\n  alembic_version {v}"));
    }
    text
}

/// The summary's lines about the database's own properties and the warnings.
fn properties_text(p: &run::PropertiesOutcome, warnings: &[String]) -> String {
    let mut given = Vec::new();
    if p.privileges {
        given.push("privileges".to_string());
    }
    if p.settings > 0 {
        given.push(format!("{} setting(s)", p.settings));
    }
    if p.connection_limit {
        given.push("connection limit".to_string());
    }
    if p.comment {
        given.push("comment".to_string());
    }
    let mut text = format!(
        "\n  database owned by {:?}, encoding {}, LC_COLLATE {:?}, LC_CTYPE {:?}{}",
        p.owner,
        p.encoding,
        p.collate,
        p.ctype,
        match (&p.locale_provider, &p.provider_locale) {
            (Some(provider), Some(l)) if provider != "libc" => format!(", {provider} locale {l:?}"),
            _ => String::new(),
        }
    );
    if !given.is_empty() {
        text.push_str(&format!(
            "; given the source database's {}",
            given.join(", ")
        ));
    }
    for w in warnings {
        text.push_str(&format!("\n  warning: {w}"));
    }
    text
}

/// The outcome of a full restore test (`backups verify --scratch-db`, and the scheduled
/// verify when `backup.scratch_db` is set).
#[derive(Debug, Serialize)]
pub struct ScratchReport {
    pub id: String,
    pub ok: bool,
    pub scratch_server: String,
    pub tables: usize,
    pub rows: i64,
    pub differences: Vec<super::plan::Difference>,
    /// What was wrong, in a sentence, when not ok.
    pub problem: Option<String>,
    pub duration_s: f64,
    /// What the restore skipped or could not carry over (roles the scratch server lacks, a
    /// locale it lacks), which does not fail the test.
    pub warnings: Vec<String>,
}

/// What [`scratch_check`] works with.
pub struct ScratchCheck<'a> {
    pub storage: &'a dyn storage::Storage,
    pub manifest: &'a crate::backup::manifest::Manifest,
    pub scratch: &'a DbTarget,
    pub key_file: Option<&'a std::path::Path>,
    /// The directory of the pg_restore to use (`--pg-bindir` / `backup.pg_bindir`).
    pub pg_bindir: Option<&'a std::path::Path>,
    pub env: &'a std::collections::BTreeMap<String, String>,
    pub retry: crate::db::Retry,
    pub progress: bool,
}

/// Restore the backup into a scratch database on the scratch server, compare, drop it. A
/// restore that fails is a failed check (`ok: false` and the problem); an unreachable server
/// (75) or a usage error stays an error.
pub async fn scratch_check(c: ScratchCheck<'_>) -> Result<ScratchReport> {
    let m = c.manifest;
    let started = std::time::Instant::now();
    let result = run::scratch_test(RestoreSpec {
        storage: c.storage,
        manifest: m,
        target: c.scratch,
        jobs: run::default_jobs(),
        force: false,
        no_owner: true,
        key_file: c.key_file,
        pg_bindir: c.pg_bindir,
        env: c.env,
        retry: c.retry,
        progress: c.progress,
    })
    .await;
    let mut report = ScratchReport {
        id: m.id.clone(),
        ok: false,
        scratch_server: format!("{}:{}", c.scratch.host(), c.scratch.port()),
        tables: m.tables.len(),
        rows: m.tables.iter().map(|t| t.rows).sum(),
        differences: Vec::new(),
        problem: None,
        duration_s: 0.0,
        warnings: Vec::new(),
    };
    match result {
        Ok(t) => {
            report.ok = t.differences.is_empty();
            report.duration_s = t.duration_s;
            report.warnings = t.warnings;
            if !report.ok {
                report.problem = Some(super::plan::describe(&t.differences));
            }
            report.differences = t.differences;
        }
        Err(e) if e.kind() != crate::error::Kind::Failed => return Err(e),
        Err(e) => {
            report.problem = Some(e.to_string());
            report.duration_s = started.elapsed().as_secs_f64();
        }
    }
    Ok(report)
}

/// `kasm-db backups verify ID --scratch-db URL`: the full restore test.
pub async fn verify_scratch(
    ctx: &Ctx,
    from: Option<&str>,
    id: &str,
    scratch_url: &str,
    pg_bindir: Option<&std::path::Path>,
) -> Result<Outcome> {
    let from = Target::resolve(from, ctx.config.backup.to.as_deref(), "--from")?;
    let scratch = DbTarget::resolve(Some(scratch_url), &ctx.env)?;
    let store = storage::open(&from, &ctx.config).await?;
    let m = catalog::find(store.as_ref(), id).await?;
    let report = scratch_check(ScratchCheck {
        storage: store.as_ref(),
        manifest: &m,
        scratch: &scratch,
        key_file: ctx.config.backup.encryption_key_file.as_deref(),
        pg_bindir,
        env: &ctx.env,
        retry: ctx.retry(),
        progress: ctx.interactive,
    })
    .await?;
    use crate::backup::verification::{self, Check, Verification};
    let v = Verification::now(Check::Restore, report.ok, report.problem.clone());
    verification::record(store.as_ref(), &m.id, &v).await;
    let server = &report.scratch_server;
    let text = if report.ok {
        format!(
            "backup {} ok: size and SHA-256 match, and a restore into a scratch database on {server} \
             has the manifest's row counts in all {} table(s) ({} rows); {:.1} s, scratch database dropped",
            m.id, report.tables, report.rows, report.duration_s
        )
    } else {
        format!(
            "backup {} NOT ok: {}",
            m.id,
            report.problem.as_deref().unwrap_or("restore test failed")
        )
    };
    let text = report
        .warnings
        .iter()
        .fold(text, |t, w| format!("{t}\n  warning: {w}"));
    let ok = report.ok;
    let outcome = Outcome::new(&report, text);
    Ok(if ok { outcome } else { outcome.failed_check() })
}
