//! The `backup` and `backups list|verify|prune` commands: resolve the target, call the
//! operation ([`crate::backup::run`], [`crate::backup::backups`]; `backups verify` goes to
//! [`super::verify`], `backups check` to [`super::backups_check`]), and shape the contract's
//! JSON and a text for people into an [`Outcome`].
//!
//! Reads the clock only here (prune's "now"); the policy itself is pure. Never prints a
//! password: databases are shown redacted, targets carry no credentials.

use super::Ctx;
use crate::archive::storage;
use crate::archive::target::Target;
use crate::archive::verification;
use crate::backup::after::{self, After, AfterReport};
use crate::backup::prune::Policy;
use crate::backup::run::{self, BackupSpec};
use crate::cli::{BackupArgs, BackupsCommand};
use crate::error::{Error, Result};
use crate::output::Outcome;
use crate::sizing::bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Serialize)]
struct BackupReport {
    id: String,
    target: String,
    size_bytes: u64,
    sha256: String,
    duration_s: f64,
    object: String,
    dump_bytes: u64,
    tables: usize,
    rows: i64,
    /// The tables whose data was left out (`--exclude-logs`).
    excluded: Vec<String>,
    /// Kasm's schema revision (`alembic_version`); null without that table.
    alembic_version: Option<String>,
    /// What followed: `pruned`, `prune_error`, `copies` (see [`crate::backup::after`]).
    #[serde(flatten)]
    after: AfterReport,
    /// False when a copy or the prune failed (the backup itself succeeded).
    ok: bool,
    /// The roles the database needs and whether their password hashes travel (in their own
    /// object, never here).
    roles: Option<RolesSummary>,
    /// `logical` or `physical` (`--physical`).
    kind: crate::archive::manifest::BackupKind,
    /// A physical backup's WAL start and stop positions and timeline.
    #[serde(skip_serializing_if = "Option::is_none")]
    start_lsn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_lsn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeline: Option<u32>,
    /// A physical backup's warnings (no WAL stream running: it restores only to its end).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

#[derive(Serialize)]
struct RolesSummary {
    names: Vec<String>,
    password_hashes: bool,
}

/// `kasm-db backup`.
pub async fn backup(ctx: &Ctx, args: &BackupArgs) -> Result<Outcome> {
    let target = Target::resolve(args.to.as_deref(), ctx.config.backup.to.as_deref(), "--to")?;
    let mut config = ctx.config.clone();
    if let Some(dir) = &args.pg_bindir {
        config.backup.pg_bindir = Some(dir.clone());
    }
    let copy_to = after::copy_targets(&config, &target)?;
    // Opened once: the backup, its copies and the prune go through the same storage.
    let primary = storage::open(&target, &config).await?;
    let mut warnings = Vec::new();
    let m = if args.physical {
        if args.exclude_logs {
            return Err(Error::usage(
                "--exclude-logs is for logical backups: a physical backup copies the whole \
                 cluster",
            ));
        }
        let b = crate::backup::physical::run(crate::backup::physical::PhysicalSpec {
            db: &ctx.db,
            config: &config,
            target: &target,
            storage: &primary,
            progress: ctx.interactive,
            env: &ctx.env,
        })
        .await?;
        warnings = b.warnings;
        b.manifest
    } else {
        run::run(BackupSpec {
            db: &ctx.db,
            config: &config,
            target: &target,
            storage: &primary,
            exclude_logs: args.exclude_logs || ctx.config.backup.exclude_logs,
            progress: ctx.interactive,
            env: &ctx.env,
        })
        .await?
    };
    let followed = after::run(After {
        config: &config,
        primary: primary.as_ref(),
        manifest: &m,
        prune: !args.no_prune,
        copy_to: &copy_to,
        now: Utc::now(),
    })
    .await;
    let failure = followed.failure(&m.id);
    let report = BackupReport {
        id: m.id.clone(),
        target: target.to_string(),
        size_bytes: m.size_bytes,
        sha256: m.sha256.clone(),
        duration_s: m.timings.total_s,
        object: m.location.clone(),
        dump_bytes: m.dump_bytes,
        tables: m.tables.len(),
        rows: m.tables.iter().map(|t| t.rows).sum(),
        excluded: m.excluded.clone(),
        alembic_version: m.alembic_version.clone(),
        after: followed,
        ok: failure.is_none(),
        roles: m.roles.as_ref().map(|r| RolesSummary {
            names: r.names.clone(),
            password_hashes: r.password_hashes,
        }),
        kind: m.kind,
        start_lsn: m.physical.as_ref().map(|p| p.start_lsn.clone()),
        stop_lsn: m.physical.as_ref().map(|p| p.stop_lsn.clone()),
        timeline: m.physical.as_ref().map(|p| p.timeline),
        warnings,
    };
    if let Some(p) = &m.physical {
        let text = format!(
            "physical backup {} of {} written to {}: {} (tar {}), WAL {} to {} on timeline {}, \
             {:.1} s\nsha256 {}\nrestore: {}{}",
            m.id,
            m.database,
            m.location,
            bytes(m.size_bytes),
            bytes(m.dump_bytes),
            p.start_lsn,
            p.stop_lsn,
            p.timeline,
            m.timings.total_s,
            m.sha256,
            m.restore,
            after_text(&report.after)
        );
        let mut text = text;
        for w in &report.warnings {
            text.push_str(&format!("\nwarning: {w}"));
        }
        let outcome = Outcome::new(&report, text);
        return match failure {
            None => Ok(outcome),
            Some(why) => {
                tracing::error!("{why}");
                Ok(outcome.failed_check())
            }
        };
    }
    let mut text = format!(
        "backup {} of {} written to {}: {} (dump {}), {} table(s), {} rows, {:.1} s\nsha256 {}\nrestore: {}",
        m.id,
        m.database,
        m.location,
        bytes(m.size_bytes),
        bytes(m.dump_bytes),
        report.tables,
        report.rows,
        m.timings.total_s,
        m.sha256,
        m.restore
    );
    if m.exclude_logs {
        text.push_str(&if m.excluded.is_empty() {
            "\n--exclude-logs: this database has no table named logs; nothing was left out".into()
        } else {
            format!(
                "\n--exclude-logs: the data of {} was left out (the definitions are in the dump)",
                m.excluded.join(", ")
            )
        });
    }
    if let Some(v) = &m.alembic_version {
        text.push_str(&format!("\nalembic_version {v}"));
    }
    if let Some(r) = &m.roles {
        text.push_str(&format!(
            "\nroles: {}; password hashes {}",
            r.names.join(", "),
            if r.password_hashes && m.encryption.is_some() {
                "carried (in their own object, encrypted like the dump)"
            } else if r.password_hashes {
                "carried (in their own object beside the dump)"
            } else {
                "not carried (this role may not read pg_authid): restore --create-roles will \
                 say which passwords to set"
            }
        ));
    }
    text.push_str(&after_text(&report.after));
    let outcome = Outcome::new(&report, text);
    match failure {
        None => Ok(outcome),
        Some(why) => {
            tracing::error!("{why}");
            Ok(outcome.failed_check())
        }
    }
}

/// The copies and prunes that followed a backup, for people.
fn after_text(a: &AfterReport) -> String {
    let mut t = String::new();
    for c in &a.copies {
        if c.ok {
            t.push_str(&format!("\ncopied to {}: {}", c.target, bytes(c.bytes)));
            if !c.pruned.is_empty() {
                t.push_str(&format!("; pruned there: {}", c.pruned.join(", ")));
            }
        } else {
            t.push_str(&format!(
                "\nFAILED copy to {}: {}",
                c.target,
                c.error.as_deref().unwrap_or("unknown error")
            ));
        }
    }
    if !a.pruned.is_empty() {
        t.push_str(&format!(
            "\npruned (backup.keep_*): {}",
            a.pruned.join(", ")
        ));
    }
    if let Some(e) = &a.prune_error {
        t.push_str(&format!("\nFAILED prune: {e}"));
    }
    for w in &a.prune_warnings {
        t.push_str(&format!("\nwarning: {w}"));
    }
    t
}

/// `kasm-db backups ...`.
pub async fn backups(ctx: &Ctx, cmd: &BackupsCommand) -> Result<Outcome> {
    match cmd {
        BackupsCommand::List { from } => list(ctx, from.as_deref()).await,
        BackupsCommand::Check {
            from,
            max_age,
            min_count,
            verified_within,
        } => {
            super::backups_check::check(
                ctx,
                from.as_deref(),
                *max_age,
                *min_count,
                *verified_within,
            )
            .await
        }
        BackupsCommand::Verify {
            backup,
            from,
            scratch_db,
            pg_bindir,
        } => {
            super::verify::verify(
                ctx,
                from.as_deref(),
                backup,
                scratch_db.as_deref(),
                pg_bindir.as_deref(),
            )
            .await
        }
        BackupsCommand::Copy { backup, to, from } => {
            let src = open(ctx, from.as_deref()).await?;
            let dst = storage::open(&Target::parse(to)?, &ctx.config).await?;
            let c = crate::archive::copy::copy(src.as_ref(), dst.as_ref(), backup).await?;
            let text = if c.already_there {
                format!("backup {} is already in {} (same SHA-256)", c.id, c.target)
            } else {
                format!(
                    "backup {} copied from {} to {}: {} (SHA-256 checked)",
                    c.id,
                    src.describe(),
                    c.target,
                    bytes(c.bytes)
                )
            };
            Ok(Outcome::new(&c, text))
        }
        BackupsCommand::Prune {
            from,
            keep_last,
            keep_daily,
            keep_weekly,
            keep_monthly,
            dry_run,
        } => {
            let b = &ctx.config.backup;
            let policy = Policy {
                last: keep_last.or(b.keep_last),
                daily: keep_daily.or(b.keep_daily),
                weekly: keep_weekly.or(b.keep_weekly),
                monthly: keep_monthly.or(b.keep_monthly),
            };
            prune_cmd(ctx, from.as_deref(), policy, *dry_run, Utc::now()).await
        }
    }
}

async fn open(ctx: &Ctx, from: Option<&str>) -> Result<std::sync::Arc<dyn storage::Storage>> {
    let target = Target::resolve(from, ctx.config.backup.to.as_deref(), "--from")?;
    storage::open(&target, &ctx.config).await
}

async fn list(ctx: &Ctx, from: Option<&str>) -> Result<Outcome> {
    let storage = open(ctx, from).await?;
    let items = crate::backup::backups::list(storage.as_ref()).await?;
    let mut text = if items.is_empty() {
        format!("no complete backups in {}", storage.describe())
    } else {
        format!(
            "{:<24} {:<20} {:>10}  {:<16}  verified\n",
            "id", "created (UTC)", "size", "sha256"
        )
    };
    for i in &items {
        let verified = match &i.verified {
            None => "never".to_string(),
            Some(v) => format!(
                "{} {} {}",
                if v.ok { "ok" } else { "FAILED" },
                match v.check {
                    verification::Check::Checksum => "checksum",
                    verification::Check::Restore => "restore test",
                },
                v.at.format("%Y-%m-%d %H:%M")
            ),
        };
        let mut notes = Vec::new();
        if let (Some(start), Some(stop)) = (&i.start_lsn, &i.stop_lsn) {
            notes.push(format!(
                "physical, WAL {start} to {stop} on timeline {}{}",
                i.timeline.unwrap_or(0),
                i.recoverable_until
                    .map(|t| format!(", recoverable to {}", t.format("%Y-%m-%d %H:%M:%S")))
                    .unwrap_or_default()
            ));
        }
        if let Some(v) = &i.alembic_version {
            notes.push(format!("alembic {v}"));
        }
        if !i.excluded.is_empty() {
            notes.push(format!("without the data of {}", i.excluded.join(", ")));
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!("  ({})", notes.join("; "))
        };
        text.push_str(&format!(
            "{:<24} {:<20} {:>10}  {:<16}  {verified}{notes}\n",
            i.id,
            i.created.format("%Y-%m-%d %H:%M:%S"),
            bytes(i.size_bytes),
            &i.sha256[..i.sha256.len().min(16)]
        ));
    }
    Ok(Outcome::new(&items, text))
}

async fn prune_cmd(
    ctx: &Ctx,
    from: Option<&str>,
    policy: Policy,
    dry_run: bool,
    now: DateTime<Utc>,
) -> Result<Outcome> {
    if policy.is_empty() {
        return Err(Error::usage(
            "no prune policy: pass --keep-last/--keep-daily/--keep-weekly/--keep-monthly N, or \
             set backup.keep_last (etc.) in the config file",
        ));
    }
    let storage = open(ctx, from).await?;
    let report = crate::backup::backups::prune(storage.as_ref(), policy, dry_run, now).await?;
    let verb = if dry_run { "would delete" } else { "deleted" };
    let text = format!(
        "{}: kept {} backup(s), {verb} {}{}; {verb} {} leftover(s) of dead runs{}",
        storage.describe(),
        report.kept.len(),
        report.deleted.len(),
        if report.deleted.is_empty() {
            String::new()
        } else {
            format!(" ({})", report.deleted.join(", "))
        },
        report.leftovers_deleted.len(),
        if report.uploads_aborted.is_empty() {
            String::new()
        } else {
            format!(
                "; aborted {} stale multipart upload(s)",
                report.uploads_aborted.len()
            )
        }
    ) + &if report.locked.is_empty() {
        String::new()
    } else {
        format!(
            "; kept {} still under Object Lock retention ({})",
            report.locked.len(),
            report.locked.join(", ")
        )
    } + &if report.wal_segments_deleted == 0 {
        String::new()
    } else {
        format!(
            "; {verb} {} archived WAL segment(s) no kept physical backup needs",
            report.wal_segments_deleted
        )
    } + &report
        .warnings
        .iter()
        .map(|w| format!("\nwarning: {w}"))
        .collect::<String>();
    Ok(Outcome::new(&report, text))
}
