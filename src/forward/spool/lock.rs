//! The spool directory's lock: an exclusive `flock` on `spool.lock`, held for the life of the
//! open spool, so two processes never share one queue. Must never block: a held lock is an
//! immediate temporary error (exit 75).

use crate::error::{Error, Result};
pub use crate::private::DirLock;
use std::path::Path;

pub fn lock(dir: &Path) -> Result<DirLock> {
    let path = dir.join("spool.lock");
    match crate::private::try_lock_dir(dir, "spool.lock") {
        Ok(Some(l)) => Ok(l),
        Ok(None) => Err(Error::temporary(format!(
            "the SIEM spool {} is in use by another kasm-db process (lock {} is held)",
            dir.display(),
            path.display()
        ))),
        Err(e) => Err(Error::failed(format!(
            "cannot open {}: {e}",
            path.display()
        ))),
    }
}
