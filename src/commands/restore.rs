//! The `restore` command: resolve the backup target, the backup and the database URL, run the
//! pipeline, and shape the contract's JSON and a summary for people (with the time taken) into
//! an [`Outcome`]. (The restore test of `backups verify --scratch-db` is [`crate::verify`]'s.)
//!
//! Never prints a password: the target URL is parsed once and only its redacted form or its
//! database name appears in output.

use super::Ctx;
use crate::archive::catalog;
use crate::archive::manifest::{BackupKind, Manifest};
use crate::archive::storage;
use crate::archive::target::Target;
use crate::cli::RestoreArgs;
use crate::db::DbTarget;
use crate::error::{Error, Result};
use crate::output::Outcome;
use crate::restore::creation::PropertiesOutcome;
use crate::restore::role_plan::RolesOutcome;
use crate::restore::run::{self, RestoreSpec};
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
    database_properties: PropertiesOutcome,
    /// What was skipped or not carried over, in sentences (empty when nothing was).
    warnings: Vec<String>,
    /// The tables whose data the backup left out (`backup --exclude-logs`): restored with
    /// their definitions and no rows.
    excluded: Vec<String>,
    /// Kasm's schema revision in the backup (`alembic_version`); null without that table.
    alembic_version: Option<String>,
    /// What `--create-roles` did: roles created, those the target had, login roles left
    /// without a password and the statement for each; null without the flag.
    roles: Option<RolesOutcome>,
    /// The replaced database's revision; null without that table or without a database.
    target_alembic_version: Option<String>,
    /// The recovery time, measured: `until_swap_s` is how long the application had no
    /// database, `logs_s` the `--logs-later` load after it (null without), `total_s` all.
    durations: Durations,
    /// `--logs-later`: what was loaded after the swap (null without the flag).
    logs_later: Option<LogsLater>,
}

#[derive(Serialize)]
struct Durations {
    until_swap_s: f64,
    logs_s: Option<f64>,
    total_s: f64,
    fetch_s: f64,
    restore_s: f64,
    check_s: f64,
}

#[derive(Serialize)]
struct LogsLater {
    tables: usize,
    rows: i64,
    /// Tables dropped since the swap (retention), whose data was not loaded.
    skipped: Vec<String>,
    logs_s: f64,
}

impl From<crate::restore::logs_load::Loaded> for LogsLater {
    fn from(l: crate::restore::logs_load::Loaded) -> Self {
        LogsLater {
            tables: l.tables,
            rows: l.rows,
            skipped: l.skipped,
            logs_s: l.logs_s,
        }
    }
}

/// `kasm-db restore`.
pub async fn restore(ctx: &Ctx, args: &RestoreArgs) -> Result<Outcome> {
    let from = Target::resolve(
        args.from.as_deref(),
        ctx.config.backup.to.as_deref(),
        "--from",
    )?;
    if args.physical {
        return physical(ctx, args, &from).await;
    }
    let target = DbTarget::resolve(args.target.as_deref(), &ctx.env)?;
    if args.jobs == Some(0) {
        return Err(Error::usage("--jobs must be at least 1"));
    }
    let store = storage::open(&from, &ctx.config).await?;
    if args.resume {
        return resume(ctx, args, store.as_ref(), &target).await;
    }
    let m = catalog::find_of(store.as_ref(), &args.backup, BackupKind::Logical).await?;
    let r = run::restore(RestoreSpec {
        storage: store.as_ref(),
        manifest: &m,
        target: &target,
        jobs: args.jobs.unwrap_or_else(run::default_jobs),
        force: args.force,
        no_owner: args.no_owner,
        create_roles: args.create_roles,
        key_file: ctx.config.backup.encryption_key_file.as_deref(),
        pg_bindir: args
            .pg_bindir
            .as_deref()
            .or(ctx.config.backup.pg_bindir.as_deref()),
        env: &ctx.env,
        retry: ctx.retry(),
        progress: ctx.interactive,
        logs_later: args.logs_later,
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
        listed(
            "\n  dropped leftovers of killed restores: ",
            &r.stale_dropped,
            ""
        )
    ) + &excluded_text(&m)
        + &roles_text(r.roles.as_ref())
        + &logs_text(&r)
        + &properties_text(&r.properties, &r.warnings);
    let durations = Durations {
        until_swap_s: r.until_swap_s,
        logs_s: r.logs.as_ref().map(|l| l.logs_s),
        total_s: r.duration_s,
        fetch_s: r.fetch_s,
        restore_s: r.restore_s,
        check_s: r.check_s,
    };
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
        roles: r.roles,
        target_alembic_version: r.target_alembic_version,
        durations,
        logs_later: r.logs.map(LogsLater::from),
    };
    Ok(Outcome::new(&report, text))
}

/// The summary's lines about the time to the swap and the logs loaded after it.
fn logs_text(r: &run::Restored) -> String {
    match &r.logs {
        Some(l) => format!(
            "\n  --logs-later: swapped in after {:.1} s; then {} logs table(s), {} rows loaded into \
             the live database in {:.1} s{}",
            r.until_swap_s,
            l.tables,
            l.rows,
            l.logs_s,
            listed("; gone since the swap, not loaded: ", &l.skipped, "")
        ),
        None => String::new(),
    }
}

#[derive(Serialize)]
struct ResumeReport {
    backup: String,
    database: String,
    resumed: bool,
    durations: ResumeDurations,
    logs_later: LogsLater,
}

#[derive(Serialize)]
struct ResumeDurations {
    fetch_s: f64,
    logs_s: f64,
    total_s: f64,
}

/// `restore --logs-later --resume`: load what an interrupted `--logs-later` restore left.
async fn resume(
    ctx: &Ctx,
    args: &RestoreArgs,
    store: &dyn storage::Storage,
    target: &DbTarget,
) -> Result<Outcome> {
    let name = target.dbname().to_string();
    let Some(id) = crate::restore::logs_later::state_backup(target, ctx.retry()).await? else {
        return Err(Error::failed(format!(
            "{name} has no unfinished --logs-later restore: nothing to resume"
        )));
    };
    if args.backup != "latest" && args.backup != id {
        return Err(Error::usage(format!(
            "the unfinished --logs-later restore of {name} is of backup {id}, not {}",
            args.backup
        )));
    }
    let m = catalog::find(store, &id).await?;
    let r = run::resume_logs(RestoreSpec {
        storage: store,
        manifest: &m,
        target,
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
        logs_later: true,
        create_roles: false,
    })
    .await?;
    let text = format!(
        "loaded the rest of backup {id}'s logs data into {}: {} table(s), {} rows in {:.1} s; \
         nothing is missing now",
        r.database, r.logs.tables, r.logs.rows, r.duration_s
    );
    let report = ResumeReport {
        backup: id,
        database: r.database,
        resumed: true,
        durations: ResumeDurations {
            fetch_s: r.fetch_s,
            logs_s: r.logs.logs_s,
            total_s: r.duration_s,
        },
        logs_later: r.logs.into(),
    };
    Ok(Outcome::new(&report, text))
}

/// `before`, the names joined by ", ", `after`; nothing when there are none.
fn listed(before: &str, names: &[String], after: &str) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!("{before}{}{after}", names.join(", "))
    }
}

/// The summary's line about data the backup left out and Kasm's schema revision.
fn excluded_text(m: &Manifest) -> String {
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

/// The summary's lines about `--create-roles`: what was created, and the statement that gives
/// each login role created without its password one (a placeholder, never a password).
fn roles_text(roles: Option<&RolesOutcome>) -> String {
    let Some(r) = roles else {
        return String::new();
    };
    let mut text = format!(
        "\n  roles: {} created{}, {} already there (left as they were), {} membership(s) granted",
        r.created.len(),
        listed(" (", &r.created, ")"),
        r.existing.len(),
        r.memberships_granted
    );
    if !r.restoring_role_member_of.is_empty() {
        text.push_str(&format!(
            "\n  the restoring role was made a member of {} (created here), to give them the \
             database and its objects",
            r.restoring_role_member_of.join(", ")
        ));
    }
    if !r.need_password.is_empty() {
        text.push_str(
            "\n  the backup carries no password hashes (the backing-up role could not read \
             pg_authid): give these login roles their passwords, with the password the \
             application uses in place of ... (or psql's \\password ROLE):",
        );
        for s in &r.password_statements {
            text.push_str(&format!("\n    {s}"));
        }
    }
    text
}

/// The summary's lines about the database's own properties and the warnings.
fn properties_text(p: &PropertiesOutcome, warnings: &[String]) -> String {
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

/// The restore_command's program and the arguments that find the archive again, as shell-safe
/// words: this very program (`/proc/self/exe`), the configuration file it was given (absolute),
/// `--from TARGET`. For `restore --physical` and the demo's point-in-time stage.
pub(super) fn fetch_command(
    config_file: Option<&std::path::Path>,
    from: &Target,
) -> Result<Vec<String>> {
    use crate::restore::physical::sh_quote;
    let exe = std::fs::read_link("/proc/self/exe")
        .map_err(|e| Error::failed(format!("cannot tell where kasm-db itself is: {e}")))?;
    let mut words = vec![sh_quote(&exe.display().to_string())];
    if let Some(file) = config_file {
        let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
        words.push("--config".into());
        words.push(sh_quote(&file.display().to_string()));
    }
    words.push("--from".into());
    words.push(sh_quote(&from.to_string()));
    Ok(words)
}

/// `kasm-db restore --physical`.
async fn physical(ctx: &Ctx, args: &RestoreArgs, from: &Target) -> Result<Outcome> {
    use crate::restore::physical::{self, PhysicalSpec, RecoveryTarget};
    let data_dir = args
        .data_dir
        .as_deref()
        .ok_or_else(|| Error::usage("--physical needs --data-dir DIR"))?;
    let to = match &args.to_time {
        Some(t) => RecoveryTarget::Time(
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|e| Error::usage(format!("--to-time {t:?} is not RFC 3339: {e}")))?
                .to_utc(),
        ),
        None => RecoveryTarget::Latest,
    };
    let started = std::time::Instant::now();
    let store = storage::open(from, &ctx.config).await?;
    // Listed once, for the backup and for the WAL archive after it: on a target of months of
    // WAL each listing is many requests, and a failover waits for them.
    let listing = store.list().await?;
    let m = catalog::find_of_in(
        store.as_ref(),
        Some(&listing),
        &args.backup,
        BackupKind::Physical,
    )
    .await?;
    tracing::info!(
        "backup {} found in {} in {:.2} s",
        m.id,
        from,
        started.elapsed().as_secs_f64()
    );
    let key_file = ctx.config.backup.encryption_key_file.as_deref();
    let words = fetch_command(ctx.config_file.as_deref(), from)?;
    // The server (and so its restore_command) gets the loader's environment and what reaches
    // the target: kasm-db's own variables and the storage credentials' standard ones.
    let mut server_env = crate::pgtools::child_env(&ctx.env);
    server_env.extend(
        ctx.env
            .iter()
            .filter(|(k, _)| {
                (k.starts_with("KASM_DB_") && k.as_str() != "KASM_DB_URL")
                    || k.starts_with("AWS_")
                    || k.starts_with("AZURE_")
            })
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    let r = physical::restore(PhysicalSpec {
        storage: store.as_ref(),
        listing: &listing,
        manifest: &m,
        data_dir,
        fetch_command: words,
        to,
        standby: args.standby,
        port: if args.start || args.standby {
            args.port
        } else {
            None
        },
        pg_bindir: args
            .pg_bindir
            .as_deref()
            .or(ctx.config.backup.pg_bindir.as_deref()),
        key_file,
        server_env,
        env: &ctx.env,
    })
    .await?;
    let text = if r.standby {
        format!(
            "backup {} restored into {} as a standby on port {}: it replays WAL from {} as it \
             arrives; promote it with `pg_ctl promote -D {}`",
            r.backup,
            r.data_dir,
            r.running_on.unwrap_or(0),
            from,
            r.data_dir
        )
    } else {
        format!(
            "backup {} restored into {} in {:.1} s, recovered to {}; {}",
            r.backup,
            r.data_dir,
            r.duration_s,
            r.recovered_to.map(|t| t.to_rfc3339()).unwrap_or_else(|| {
                "the end of the base backup (no commit replayed after it)".into()
            }),
            match r.running_on {
                Some(p) => format!("running on port {p}"),
                None => "shut down cleanly".into(),
            }
        )
    };
    let mut text = text;
    for w in &r.warnings {
        text.push_str(&format!("\nwarning: {w}"));
    }
    Ok(Outcome::new(&r, text))
}
