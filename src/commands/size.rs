//! `kasm-db size`: the sessions from the flag or the configuration, a size sample recorded
//! first (unless `--no-record`, so that cron-only deployments get the size-over-time chart),
//! the measurement of [`crate::maintenance::size`], the backups' verdict
//! ([`crate::backup::check`]) when `backup.to` is set, its rendering, and `--fail-on-exceed`
//! as a failed check.

use super::Ctx;
use crate::backup::check::TargetVerdict;
use crate::cli::SizeArgs;
use crate::db;
use crate::error::{Error, Result};
use crate::maintenance::assess::Status;
use crate::maintenance::samples::record_if_free;
use crate::maintenance::size::{measure, render};
use crate::output::Outcome;
use chrono::Utc;

/// `kasm-db size`.
pub async fn size(ctx: &Ctx, args: &SizeArgs) -> Result<Outcome> {
    let sessions = args.sessions.or(ctx.config.sizing.sessions);
    if sessions == Some(0) {
        return Err(Error::usage(
            "--sessions (or sizing.sessions) must be at least 1: the expected maximum concurrent sessions",
        ));
    }
    let pool = ctx.pool(1).await?;
    let client = db::get(&pool).await?;
    let sample = if args.no_record {
        None
    } else {
        Some(record_if_free(&client, &ctx.config.database.schema).await)
    };
    let mut report = measure(&client, &ctx.config, sessions).await?;
    report.sample = sample;
    report.backups =
        crate::backup::backups::configured(&ctx.config)
            .await
            .map(|(target, listed)| {
                TargetVerdict::judge(target, listed.as_deref().map_err(Clone::clone), Utc::now())
            });
    let text = render(&report, &ctx.db.redacted());
    let outcome = Outcome::new(&report, text);
    Ok(
        if args.fail_on_exceed && report.status == Status::Exceeded {
            outcome.failed_check()
        } else {
            outcome
        },
    )
}
