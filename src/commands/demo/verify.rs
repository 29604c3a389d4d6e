//! The demo's "verify" stage: the full restore test of the latest demo backup (under the
//! demo's workdir) in a scratch database on the standby cluster, through the same
//! [`crate::verify::verify`] as `backups verify --scratch-db`. One line. Touches only the demo's own
//! clusters and workdir.

use super::{Demo, StageResult};
use crate::archive::storage;
use crate::archive::target::Target;
use crate::db::{DbTarget, Retry};
use crate::error::{Error, Result};
use crate::verify::{Checked, How, RestoreTest, Scratch, Verify};

pub async fn stage(d: &mut Demo) -> Result<StageResult> {
    let target = Target::Dir(d.workdir.path().join("backups"));
    let store = storage::open(&target, &d.config).await?;
    let scratch = DbTarget::resolve(Some(&d.standby.url("postgres")), &Default::default())?;
    let v = crate::verify::verify(Verify {
        storage: store.as_ref(),
        backup: "latest",
        key_file: None,
        how: How::RestoreTest(Scratch {
            server: &scratch,
            key_file: None,
            pg_bindir: d.config.backup.pg_bindir.as_deref(),
            env: &d.env,
            retry: Retry::default(),
            progress: false,
        }),
    })
    .await?;
    match &v.checked {
        Checked::RestoreTest(RestoreTest {
            ok: true,
            database: Some(db),
            tables,
            ..
        }) => Ok(StageResult::Done(format!(
            "backup {}: scratch restore {db} on the standby matched all {tables} table(s), dropped",
            v.manifest.id
        ))),
        c => Err(Error::failed(
            c.problem().unwrap_or("the restore test failed").to_string(),
        )),
    }
}
