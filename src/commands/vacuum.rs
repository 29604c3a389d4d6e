//! `kasm-db vacuum`: runs [`crate::maintenance::vacuum::run`] (the same operation as the
//! scheduled vacuum, which takes the registry's vacuum lock itself; a dry run takes none), logs
//! its warnings, and makes wraparound risk or a failed table a failed check.

use super::Ctx;
use crate::cli::VacuumArgs;
use crate::error::Result;
use crate::maintenance::policy::Wraparound;
use crate::maintenance::vacuum::run;
use crate::maintenance::vacuum_report::render;
use crate::output::Outcome;

/// `kasm-db vacuum`.
pub async fn vacuum(ctx: &Ctx, args: &VacuumArgs) -> Result<Outcome> {
    let pool = ctx.pool(1).await?;
    let report = run(
        &pool,
        &ctx.db.redacted(),
        &ctx.config,
        args.dry_run,
        args.full,
    )
    .await?;
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    let critical = report.database_wraparound == Wraparound::Critical
        || report
            .tables
            .iter()
            .any(|t| t.wraparound == Some(Wraparound::Critical));
    let failed = report.tables.iter().any(|t| t.error.is_some());
    let text = render(&report, &ctx.db.redacted());
    let outcome = Outcome::new(&report, text);
    Ok(if critical || failed {
        outcome.failed_check()
    } else {
        outcome
    })
}
