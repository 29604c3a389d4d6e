//! The demo's "restore" stage: restore the backup the backup stage wrote (under the demo's
//! workdir) onto the standby cluster with the real pipeline, in one line. (The "verify" stage,
//! the scratch restore test, is [`super::verify`]'s.) Touches only the demo's own
//! clusters.

use super::{Demo, StageResult};
use crate::archive::catalog;
use crate::archive::storage;
use crate::archive::target::Target;
use crate::db::{DbTarget, Retry};
use crate::error::Result;
use crate::restore::run::{self, RestoreSpec};

/// Restore the latest demo backup onto the standby, under the primary database's name.
pub async fn restore_stage(d: &mut Demo) -> Result<StageResult> {
    let target = Target::Dir(d.workdir.path().join("backups"));
    let store = storage::open(&target, &d.config).await?;
    let m = catalog::find_of(
        store.as_ref(),
        "latest",
        crate::archive::manifest::BackupKind::Logical,
    )
    .await?;
    let url = d.standby.url(d.db.dbname());
    let to = DbTarget::resolve(Some(&url), &Default::default())?;
    let r = run::restore(RestoreSpec {
        storage: store.as_ref(),
        manifest: &m,
        target: &to,
        jobs: run::default_jobs(),
        force: false,
        no_owner: false,
        create_roles: false,
        key_file: None,
        pg_bindir: d.config.backup.pg_bindir.as_deref(),
        env: &d.env,
        retry: Retry::default(),
        progress: false,
        logs_later: false,
    })
    .await?;
    Ok(StageResult::Done(format!(
        "backup {} restored onto the standby as {} ({} table(s), {} rows, counts match) in {:.1} s",
        m.id, r.database, r.tables, r.rows, r.duration_s
    )))
}
