//! `kasm-db migrate`: apply the embedded migrations ([`crate::db::migrate`]) to the configured
//! schema and say what was applied.

use super::Ctx;
use crate::db;
use crate::error::Result;
use crate::output::Outcome;

/// `kasm-db migrate`.
pub async fn migrate(ctx: &Ctx) -> Result<Outcome> {
    let pool = ctx.pool(1).await?;
    let report = db::migrate::migrate(&pool, &ctx.config.database.schema).await?;
    let text = if report.applied.is_empty() {
        format!(
            "schema {} is up to date at {}",
            ctx.config.database.schema, report.current
        )
    } else {
        format!(
            "applied {} to schema {}; now at {}",
            report.applied.join(", "),
            ctx.config.database.schema,
            report.current
        )
    };
    Ok(Outcome::new(&report, text))
}
