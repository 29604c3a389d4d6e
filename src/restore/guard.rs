//! What `restore` checks in the existing target database before it replaces it: Kasm's schema
//! revision (`alembic_version`) against the backup's, and an unfinished `--logs-later` load.
//!
//! The Kasm release that connects must match its database's schema, so restoring a backup of
//! another revision over a Kasm database is a decision (`--force`), not an accident. Alembic
//! revisions are opaque ids, not ordered by their names: this never guesses which is newer. A
//! target without the table, a fresh database (none yet), or the same revision proceeds.
//!
//! Fail closed: a check that could not be made (the database may not be connected to, the
//! table may not be read) refuses without `--force`, naming what could not be read and the
//! server's reason; only a table absent from the catalog means "no table". With `--force` it
//! proceeds and says so in the warnings.
//!
//! Reads only (one connection to the target database); never writes to it. Names databases
//! and revisions, never a password.

use super::logs_later;
use crate::db::inspection::{Inspection, Unreadable};
use crate::db::{self, DbTarget, Retry};
use crate::error::{Error, Kind, Result};

/// What the existing target database holds that matters to a restore over it, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its `alembic_version` (heads joined by `,`); absent without the table (or with no row).
    pub alembic_version: Inspection<String>,
    /// The logs tables a `--logs-later` restore has not loaded yet (`schema.table`); absent
    /// without a state record.
    pub logs_pending: Inspection<Vec<String>>,
}

/// Read the existing target database `target` (its name is the one being replaced). Never
/// fails: what could not be read (the database could not be connected to, a table could not
/// be read) is [`Inspection::Unreadable`], for [`check`] to refuse.
pub async fn inspect(target: &DbTarget, retry: Retry) -> Found {
    let name = target.dbname();
    let client = match db::connect(target, retry).await {
        Ok(c) => c,
        Err(e) => {
            let u = Unreadable::of(format!("the target database {name}"), &e);
            return Found {
                alembic_version: Inspection::Unreadable(u.clone()),
                logs_pending: Inspection::Unreadable(u),
            };
        }
    };
    let within = |u: Unreadable| Unreadable {
        what: format!("{} in the target database {name}", u.what),
        ..u
    };
    let alembic_version = match db::kasm_schema::alembic_version(&client).await {
        Inspection::Unreadable(u) => Inspection::Unreadable(within(u)),
        other => other,
    };
    let logs_pending = match logs_later::pending_names(&client).await {
        Inspection::Unreadable(u) => Inspection::Unreadable(within(u)),
        other => other,
    };
    Found {
        alembic_version,
        logs_pending,
    }
}

/// Both checks on the existing target database `name` as [`inspect`] read it, against the
/// backup's Kasm schema revision `backup`: the warnings to report (with `force`), or the
/// refusal. A check that could not be made refuses without `force` — exit 1, or 75 when the
/// reason was an outage — saying what could not be read and why. Pure.
pub fn check(name: &str, backup: Option<&str>, found: &Found, force: bool) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    // One refusal (or warning) when the database itself could not be read.
    if let (Inspection::Unreadable(a), Inspection::Unreadable(p)) =
        (&found.alembic_version, &found.logs_pending)
    {
        if a == p {
            warnings.extend(unchecked(
                name,
                a,
                "neither its Kasm schema revision (alembic_version) nor an unfinished \
                 --logs-later load could be checked",
                force,
            )?);
            return Ok(warnings);
        }
    }
    warnings.extend(pending(name, &found.logs_pending, force)?);
    warnings.extend(alembic(name, backup, &found.alembic_version, force)?);
    Ok(warnings)
}

/// Refuse without `force` because `u` could not be read (`consequence`: which check that
/// left undone); with it, the warning that says so. Pure.
fn unchecked(name: &str, u: &Unreadable, consequence: &str, force: bool) -> Result<Option<String>> {
    let Unreadable {
        what,
        why,
        temporary,
    } = u;
    if force {
        return Ok(Some(format!(
            "could not read {what} ({why}): {consequence}; {name} was replaced anyway \
             (--force); the old database is kept, renamed"
        )));
    }
    Err(Error::new(
        if *temporary {
            Kind::Temporary
        } else {
            Kind::Failed
        },
        format!(
            "could not read {what} ({why}): {consequence}, and a check that cannot be made \
             refuses the restore. Let the restoring role connect to {name} and read it, or \
             pass --force to replace it anyway (the existing database is kept, renamed); \
             {name} is unchanged"
        ),
    ))
}

/// Refuse a backup of another Kasm schema revision than the target's without `force`; with it,
/// the warning that says what was replaced. Pure.
pub fn alembic(
    name: &str,
    backup: Option<&str>,
    target: &Inspection<String>,
    force: bool,
) -> Result<Option<String>> {
    // A backup without a revision: whatever the target's, nothing is compared.
    let Some(b) = backup else {
        return Ok(None);
    };
    let t = match target {
        Inspection::Absent => return Ok(None),
        Inspection::Found(t) if t == b => return Ok(None),
        Inspection::Found(t) => t,
        Inspection::Unreadable(u) => {
            return unchecked(
                name,
                u,
                &format!(
                    "its Kasm schema revision (alembic_version) was not compared with the \
                     backup's ({b})"
                ),
                force,
            );
        }
    };
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
pub fn pending(
    name: &str,
    pending: &Inspection<Vec<String>>,
    force: bool,
) -> Result<Option<String>> {
    let pending = match pending {
        Inspection::Absent => return Ok(None),
        Inspection::Found(p) if p.is_empty() => return Ok(None),
        Inspection::Found(p) => p,
        Inspection::Unreadable(u) => {
            return unchecked(
                name,
                u,
                "whether it is an unfinished --logs-later restore was not checked",
                force,
            );
        }
    };
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

    fn unreadable(what: &str, temporary: bool) -> Unreadable {
        Unreadable {
            what: what.into(),
            why: "ERROR: permission denied for table alembic_version".into(),
            temporary,
        }
    }

    #[test]
    fn a_differing_revision_is_refused_naming_both_and_never_ordered() {
        let found = |t: &str| Inspection::Found(t.to_string());
        let e = alembic("kasm", Some("a1b2"), &found("ffee"), false).unwrap_err();
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
        let w = alembic("kasm", Some("a1b2"), &found("ffee"), true)
            .unwrap()
            .unwrap();
        assert!(w.contains("ffee") && w.contains("a1b2"), "{w}");
        // Same revision, no table on either side: nothing to say.
        for (b, t) in [
            (Some("a1b2"), found("a1b2")),
            (Some("a1b2"), Inspection::Absent),
            (None, found("a1b2")),
            (None, Inspection::Absent),
            // A backup without a revision compares nothing, whatever the target's.
            (None, Inspection::Unreadable(unreadable("x", false))),
        ] {
            assert_eq!(alembic("kasm", b, &t, false).unwrap(), None);
        }
    }

    #[test]
    fn a_revision_that_cannot_be_read_refuses_without_force() {
        let t = Inspection::Unreadable(unreadable("public.alembic_version in kasm", false));
        let e = alembic("kasm", Some("a1b2"), &t, false).unwrap_err();
        assert_eq!(e.kind(), crate::error::Kind::Failed);
        let text = e.to_string();
        assert!(
            text.contains("public.alembic_version in kasm")
                && text.contains("permission denied")
                && text.contains("--force")
                && text.contains("kasm is unchanged"),
            "{text}"
        );
        let w = alembic("kasm", Some("a1b2"), &t, true).unwrap().unwrap();
        assert!(
            w.contains("permission denied") && w.contains("--force"),
            "{w}"
        );
        // An outage is temporary (exit 75), still a refusal.
        let t = Inspection::Unreadable(unreadable("the target database kasm", true));
        let e = alembic("kasm", Some("a1b2"), &t, false).unwrap_err();
        assert_eq!(e.kind(), crate::error::Kind::Temporary);
    }

    #[test]
    fn an_unfinished_logs_load_is_not_replaced_by_accident() {
        assert_eq!(pending("kasm", &Inspection::Absent, false).unwrap(), None);
        assert_eq!(
            pending("kasm", &Inspection::Found(Vec::new()), false).unwrap(),
            None
        );
        let p = Inspection::Found(vec!["public.logs".to_string()]);
        let e = pending("kasm", &p, false).unwrap_err().to_string();
        assert!(
            e.contains("--logs-later --resume") && e.contains("public.logs"),
            "{e}"
        );
        assert!(pending("kasm", &p, true).unwrap().is_some());
        let u = Inspection::Unreadable(unreadable("kasm_db_restore.logs_later", false));
        let e = pending("kasm", &u, false).unwrap_err().to_string();
        assert!(e.contains("kasm_db_restore.logs_later"), "{e}");
        assert!(pending("kasm", &u, true).unwrap().is_some());
    }

    #[test]
    fn a_database_that_cannot_be_connected_to_is_one_refusal() {
        let u = unreadable("the target database kasm", false);
        let found = Found {
            alembic_version: Inspection::Unreadable(u.clone()),
            logs_pending: Inspection::Unreadable(u),
        };
        let e = check("kasm", None, &found, false).unwrap_err().to_string();
        assert!(
            e.contains("the target database kasm") && e.contains("neither"),
            "{e}"
        );
        assert_eq!(check("kasm", None, &found, true).unwrap().len(), 1);
        let fine = Found {
            alembic_version: Inspection::Absent,
            logs_pending: Inspection::Absent,
        };
        assert!(
            check("kasm", Some("a1b2"), &fine, false)
                .unwrap()
                .is_empty()
        );
    }
}
