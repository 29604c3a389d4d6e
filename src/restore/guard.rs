//! What `restore` checks in the existing target database before it replaces it: Kasm's schema
//! revision (`alembic_version`) against the backup's, and an unfinished `--logs-later` load.
//!
//! The Kasm release that connects must match its database's schema, so restoring a backup of
//! another revision over a Kasm database is a decision (`--force`), not an accident. Alembic
//! revisions are opaque ids, not ordered by their names: this never guesses which is newer. A
//! target without the table, a fresh database (none yet), or the same revision proceeds.
//!
//! Reads only (one connection to the target database); never writes to it. Names databases
//! and revisions, never a password.

use super::logs_later;
use crate::db::{self, DbTarget, Retry};
use crate::error::{Error, Result};

/// What the existing target database holds that matters to a restore over it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// Its `alembic_version` (heads joined by `,`); `None` without the table.
    pub alembic_version: Option<String>,
    /// The logs tables a `--logs-later` restore has not loaded yet (`schema.table`).
    pub logs_pending: Vec<String>,
}

/// Read the existing target database `target` (its name is the one being replaced).
pub async fn inspect(target: &DbTarget, retry: Retry) -> Result<Found> {
    let client = db::connect(target, retry).await?;
    Ok(Found {
        alembic_version: db::kasm_schema::alembic_version(&client).await?,
        logs_pending: logs_later::pending_names(&client).await?,
    })
}

/// The warning when the existing target database could not be read.
pub fn uninspected(name: &str, e: &Error) -> String {
    format!(
        "could not read the target database {name} ({e}): its Kasm schema revision \
         (alembic_version) was not compared with the backup's"
    )
}

/// Refuse a backup of another Kasm schema revision than the target's without `force`; with it,
/// the warning that says what was replaced. Pure.
pub fn alembic(
    name: &str,
    backup: Option<&str>,
    target: Option<&str>,
    force: bool,
) -> Result<Option<String>> {
    let (Some(b), Some(t)) = (backup, target) else {
        return Ok(None);
    };
    if b == t {
        return Ok(None);
    }
    if force {
        return Ok(Some(format!(
            "the target database {name} had Kasm schema revision (alembic_version) {t}; the \
             backup's is {b} (restored with --force): the Kasm release that connects must be the \
             one of revision {b}"
        )));
    }
    Err(Error::failed(format!(
        "the backup's Kasm schema revision (alembic_version) is {b}, the target database {name}'s \
         is {t}: the Kasm release that connects must match its database's schema, so restoring \
         across a Kasm upgrade or downgrade is refused without --force. Alembic revisions are not \
         ordered by their names and kasm-db does not guess which is newer: check which Kasm \
         release each belongs to, then pass --force to restore anyway (the existing database is \
         kept, renamed); {name} is unchanged"
    )))
}

/// Refuse to replace a database whose `--logs-later` load is unfinished without `force`, saying
/// how to finish it. Pure.
pub fn pending(name: &str, pending: &[String], force: bool) -> Result<Option<String>> {
    if pending.is_empty() {
        return Ok(None);
    }
    let what = logs_later::describe(pending);
    if force {
        return Ok(Some(format!(
            "the target database {name} was replaced (--force) while a --logs-later restore \
             still had to load {what}; that database is kept, renamed"
        )));
    }
    Err(Error::failed(format!(
        "the target database {name} is a --logs-later restore whose logs data is not all loaded \
         yet ({what} missing): finish it with `kasm-db restore --from TARGET --target URL \
         --logs-later --resume`, or pass --force to replace it with a new restore; {name} is \
         unchanged"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_differing_revision_is_refused_naming_both_and_never_ordered() {
        let e = alembic("kasm", Some("a1b2"), Some("ffee"), false).unwrap_err();
        let text = e.to_string();
        assert_eq!(e.kind(), crate::error::Kind::Failed);
        assert!(
            text.contains("is a1b2") && text.contains("is ffee"),
            "{text}"
        );
        assert!(
            text.contains("--force") && text.contains("does not guess"),
            "{text}"
        );
        assert!(
            !text.contains("newer than") && !text.contains("older than"),
            "{text}"
        );
        let w = alembic("kasm", Some("a1b2"), Some("ffee"), true)
            .unwrap()
            .unwrap();
        assert!(w.contains("ffee") && w.contains("a1b2"), "{w}");
        // Same revision, no table on either side: nothing to say.
        for (b, t) in [
            (Some("a1b2"), Some("a1b2")),
            (Some("a1b2"), None),
            (None, Some("a1b2")),
            (None, None),
        ] {
            assert_eq!(alembic("kasm", b, t, false).unwrap(), None);
        }
    }

    #[test]
    fn an_unfinished_logs_load_is_not_replaced_by_accident() {
        assert_eq!(pending("kasm", &[], false).unwrap(), None);
        let p = vec!["public.logs".to_string()];
        let e = pending("kasm", &p, false).unwrap_err().to_string();
        assert!(
            e.contains("--logs-later --resume") && e.contains("public.logs"),
            "{e}"
        );
        assert!(pending("kasm", &p, true).unwrap().is_some());
    }
}
