//! `kasm-db serve`: hands the resolved configuration, database target and environment snapshot
//! to [`crate::serve::serve`], which runs until a signal; its outcome has nothing to print.

use super::Ctx;
use crate::error::Result;
use crate::output::Outcome;

/// `kasm-db serve`.
pub async fn serve(ctx: &Ctx) -> Result<Outcome> {
    crate::serve::serve(&ctx.config, &ctx.db, &ctx.env).await?;
    Ok(Outcome::text(""))
}
