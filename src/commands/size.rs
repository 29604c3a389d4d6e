//! `kasm-db size`: the sessions from the flag or the configuration, the measurement of
//! [`crate::maintenance::size`], its rendering, and `--fail-on-exceed` as a failed check.

use super::Ctx;
use crate::cli::SizeArgs;
use crate::db;
use crate::error::{Error, Result};
use crate::maintenance::assess::Status;
use crate::maintenance::size::{measure, render};
use crate::output::Outcome;

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
    let report = measure(&client, &ctx.config, sessions).await?;
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
