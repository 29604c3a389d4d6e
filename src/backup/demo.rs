//! The demo's "backup" stage: back the demo database up to a directory under the demo's
//! workdir with the real pipeline, re-read it against its manifest, and report the result in
//! one line. Touches nothing else.

use super::catalog;
use super::run::{self, BackupSpec};
use super::storage;
use super::target::Target;
use crate::demo::{Demo, StageResult};
use crate::error::{Error, Result};
use crate::sizing::bytes;

pub async fn stage(d: &mut Demo) -> Result<StageResult> {
    let target = Target::Dir(d.workdir.path().join("backups"));
    let m = run::run(BackupSpec {
        db: &d.db,
        config: &d.config,
        target: &target,
        exclude_logs: false,
        progress: false,
        env: &d.env,
    })
    .await?;
    let store = storage::open(&target, &d.config).await?;
    let check = catalog::check(store.as_ref(), &m).await?;
    if !check.ok {
        return Err(Error::failed(format!(
            "backup {} does not verify: {}",
            m.id,
            check.problem.unwrap_or_default()
        )));
    }
    Ok(StageResult::Done(format!(
        "backup {} to {}: {}, {} table(s), sha256 {}.. verified",
        m.id,
        target,
        bytes(m.size_bytes),
        m.tables.len(),
        &m.sha256[..16]
    )))
}
