//! The demo's `size` stage: the same measurement as `kasm-db size`
//! ([`crate::maintenance::size::measure`]) of the demo database, in one line.

use super::{Demo, StageResult};
use crate::db;
use crate::error::Result;
use crate::maintenance::size::measure;
use crate::sizing::bytes;

/// The demo's `size` stage: size the demo database for 200 sessions, in one line.
pub async fn stage(d: &mut Demo) -> Result<StageResult> {
    let client = db::get(&d.pool).await?;
    let sessions = d.config.sizing.sessions.or(Some(200));
    let r = measure(&client, &d.config, sessions).await?;
    let tier = r
        .tier
        .as_ref()
        .map(|t| {
            format!(
                "tier {}-{} ({} CPUs/{} GB/{} GB)",
                t.sessions_min, t.sessions_max, t.cpus, t.ram_gb, t.disk_gb
            )
        })
        .unwrap_or_default();
    let warnings = match r.warnings.len() {
        0 => String::new(),
        n => format!(" ({n} size-cap warning(s): the cap, not the windows, decides)"),
    };
    Ok(StageResult::Done(format!(
        "database {} with logs {} in {} rows; for {} sessions {tier}: status {}{warnings}",
        bytes(r.database_bytes),
        bytes(r.logs_bytes),
        r.logs_rows,
        sessions.unwrap_or(0),
        r.status.as_str()
    )))
}
