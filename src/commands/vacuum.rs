//! `kasm-db vacuum`: takes the vacuum lock of the registry (the one `serve`'s scheduled vacuum
//! takes, so the two never run at once; a dry run only reads and takes none), runs
//! [`crate::maintenance::vacuum::run`] (the same operation as the scheduled vacuum), logs its
//! warnings, and makes wraparound risk or a failed table a failed check.

use super::Ctx;
use crate::cli::VacuumArgs;
use crate::db::{
    self,
    locks::{self, Lock},
};
use crate::error::Result;
use crate::maintenance::policy::Wraparound;
use crate::maintenance::vacuum::run;
use crate::maintenance::vacuum_report::render;
use crate::output::Outcome;

/// `kasm-db vacuum`.
pub async fn vacuum(ctx: &Ctx, args: &VacuumArgs) -> Result<Outcome> {
    let pool = ctx.pool(1).await?;
    let client = db::get(&pool).await?;
    if !args.dry_run {
        // The lock serve's scheduled vacuum takes too: the two never run at once.
        locks::hold(&client, Lock::Vacuum, &ctx.db.redacted()).await?;
    }
    let result = run(&client, &ctx.config, args.dry_run, args.full).await;
    if !args.dry_run {
        let _ = locks::unlock(&client, Lock::Vacuum).await;
    }
    let report = result?;
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
