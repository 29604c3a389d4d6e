//! The demo's "backup" stage: back the demo database up to a directory under the demo's
//! workdir with the real pipeline, re-read it against its manifest (the checksum check of
//! [`crate::verify`]), and report the result in one line. Touches nothing else.

use super::{Demo, StageResult};
use crate::archive::storage;
use crate::archive::target::Target;
use crate::backup::run::{self, BackupSpec};
use crate::error::{Error, Result};
use crate::sizing::bytes;
use crate::verify::{self, How, Verify};

pub async fn stage(d: &mut Demo) -> Result<StageResult> {
    let target = Target::Dir(d.workdir.path().join("backups"));
    let store = storage::open(&target, &d.config).await?;
    let m = run::run(BackupSpec {
        db: &d.db,
        config: &d.config,
        target: &target,
        storage: &store,
        exclude_logs: false,
        progress: false,
        env: &d.env,
    })
    .await?;
    let v = verify::verify(Verify {
        storage: store.as_ref(),
        backup: &m.id,
        key_file: d.config.backup.encryption_key_file.as_deref(),
        how: How::Checksum,
    })
    .await?;
    if !v.checked.ok() {
        return Err(Error::failed(format!(
            "backup {} does not verify: {}",
            m.id,
            v.checked.problem().unwrap_or_default()
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
