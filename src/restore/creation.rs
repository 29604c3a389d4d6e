//! The new database a restore builds, decided from inputs: which roles the backup's properties
//! need and whether their absence stops the restore, the owner and the locales to try, what to
//! do when the server refuses `CREATE DATABASE` (give up the owner with `--no-owner`, fall back
//! to the next locale, or stop with what the restoring role lacks and how to grant it), and the
//! report of what the database got. `run.rs` asks the server and acts on these answers.
//!
//! Pure: no I/O, no clock. Messages name roles and databases, never a password.

use super::properties::{self, Kind, Locale};
use super::server::Existing;
use crate::archive::manifest::{DatabaseProperties, Manifest};
use crate::db::ident;
use crate::error::{Error, Result};
use std::collections::{BTreeMap, BTreeSet};

/// Where the new database's owner and locale come from, and which roles the target has:
/// settled before anything is fetched or created.
#[derive(Debug)]
pub struct Properties<'m> {
    pub from_backup: Option<&'m DatabaseProperties>,
    pub owner: Option<String>,
    /// The locales to try, in order (`None` = the server's default).
    pub locales: Vec<Option<Locale>>,
    /// The roles the backup's properties name that the target server has.
    pub present: BTreeSet<String>,
    pub server_major: u32,
    pub no_owner: bool,
}

/// The roles the backup's properties name, to look up on the target server.
pub fn roles_to_look_up(m: &Manifest) -> Vec<String> {
    m.database_properties
        .as_ref()
        .map(|p| properties::roles_needed(p).into_keys().collect())
        .unwrap_or_default()
}

/// Settle the new database's owner and the locales to try, given the roles the target server
/// has (`present`): the backup's owner when present, else the existing target database's; a
/// role the properties need and the server lacks is an error naming it, unless `no_owner`.
pub fn settle<'m>(
    m: &'m Manifest,
    existing: Option<&Existing>,
    present: BTreeSet<String>,
    no_owner: bool,
    server_major: u32,
) -> Result<Properties<'m>> {
    let from_backup = m.database_properties.as_ref();
    let mut owner = existing.map(|e| e.owner.clone());
    if let Some(p) = from_backup {
        let missing: BTreeMap<_, _> = properties::roles_needed(p)
            .into_iter()
            .filter(|(r, _)| !present.contains(r))
            .collect();
        if !missing.is_empty() && !no_owner {
            return Err(Error::failed(properties::missing_roles(&missing)));
        }
        if present.contains(&p.owner) {
            owner = Some(p.owner.clone());
        }
    }
    Ok(Properties {
        from_backup,
        owner,
        locales: properties::locale_candidates(
            from_backup.map(Locale::of),
            existing.map(|e| e.locale.clone()),
        ),
        present,
        server_major,
        no_owner,
    })
}

/// A refused `CREATE DATABASE`, as the pipeline saw it.
#[derive(Debug, Clone, Copy)]
pub struct Refusal<'a> {
    /// The database being created.
    pub new: &'a str,
    /// The server's message.
    pub why: &'a str,
    /// SQLSTATE 42501 (insufficient privilege).
    pub denied: bool,
    /// The restoring role has CREATEDB (or is a superuser), as the catalog says.
    pub may_create: bool,
    /// The restoring role may give the database `owner` (a member of it; on PostgreSQL 16
    /// and later with the SET option), as the catalog says; true without an owner.
    pub may_give_owner: bool,
    /// A failure that retrying may heal (never a reason to try another locale).
    pub transient: bool,
    /// The owner asked for.
    pub owner: Option<&'a str>,
    /// The locale asked for (`None` = the server's default).
    pub locale: Option<&'a Locale>,
    /// Whether another locale is left to try.
    pub more_locales: bool,
    pub no_owner: bool,
    /// The restoring role.
    pub me: &'a str,
}

/// What to do after a refused `CREATE DATABASE`.
#[derive(Debug)]
pub enum Next {
    /// Try again without the owner (`--no-owner`); the warning says so.
    WithoutOwner(String),
    /// Try the next locale (this one the server lacks).
    NextLocale,
    /// Stop: the restoring role lacks a privilege; the error says which and how to grant it.
    Refused(Error),
    /// Stop with the server's error as it is.
    AsIs,
}

/// Decide what follows a refused `CREATE DATABASE`: on the SQLSTATE and the role's privileges
/// as the catalog has them (the order PostgreSQL checks them in: CREATEDB, then the owner),
/// never on the message's wording.
pub fn after_refusal(r: &Refusal<'_>) -> Next {
    let Refusal {
        new,
        why,
        denied,
        may_create,
        may_give_owner,
        transient,
        owner,
        locale,
        more_locales,
        no_owner,
        me,
    } = *r;
    if denied && !may_create {
        return Next::Refused(Error::failed(format!(
            "creating the new database {new}: {why}. The restoring role {me:?} needs CREATEDB \
             (ALTER ROLE {} CREATEDB); nothing was restored and the target is unchanged",
            ident(me)
        )));
    }
    if let (true, false, true, Some(o)) = (denied, may_give_owner, no_owner, owner) {
        return Next::WithoutOwner(format!(
            "the owner {o:?} could not be given ({why}): the database is owned by the restoring \
             user (--no-owner)"
        ));
    }
    if !denied && !transient && locale.is_some() && more_locales {
        return Next::NextLocale;
    }
    if let (true, false, Some(o)) = (denied, may_give_owner, owner) {
        // CREATE DATABASE ... OWNER needs membership in the owner role; a managed
        // PostgreSQL's administrator (not a superuser) has it only when granted.
        return Next::Refused(Error::failed(format!(
            "creating the new database {new} owned by {o:?}: {why}. The restoring role {me:?} \
             is not a superuser and must be a member of {o:?} to give it a database: GRANT {} \
             TO {} (a role with CREATEROLE may grant it), or pass --no-owner; nothing was \
             restored and the target is unchanged",
            ident(o),
            ident(me)
        )));
    }
    Next::AsIs
}

/// The warning when the database was created with another locale than the first asked for.
pub fn locale_fallback_warning(asked: &Locale, why: &str, made: &Locale) -> String {
    format!(
        "the locale {} is not available on the target server ({why}): the database was created \
         with {} instead",
        asked.describe(),
        made.describe()
    )
}

/// The warning for a backup made before kasm-db recorded the database's own properties.
pub fn no_properties_warning(id: &str, existing: bool) -> String {
    format!(
        "backup {id} was made before kasm-db recorded the database's own properties: the owner \
         and locale are {}, and its database-level privileges, settings and comment are not \
         restored",
        if existing {
            "the existing database's"
        } else {
            "the server's defaults"
        }
    )
}

/// The new database's own properties once built: its owner and locale as the server has them,
/// and what of the backup's privileges, settings and comment it was given.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PropertiesOutcome {
    /// The manifest recorded the source database's properties (false for older backups).
    pub from_backup: bool,
    pub owner: String,
    pub encoding: String,
    pub collate: String,
    pub ctype: String,
    pub locale_provider: Option<String>,
    pub provider_locale: Option<String>,
    /// The source's database-level privileges (ACL) were given.
    pub privileges: bool,
    /// Settings given (database-wide and per role).
    pub settings: usize,
    pub connection_limit: bool,
    pub comment: bool,
}

impl PropertiesOutcome {
    /// The database as created (`made`) and the kinds of property steps that took effect.
    pub fn of(from_backup: bool, made: Existing, done: &[Kind]) -> PropertiesOutcome {
        PropertiesOutcome {
            from_backup,
            owner: made.owner,
            encoding: made.locale.encoding,
            collate: made.locale.collate,
            ctype: made.locale.ctype,
            locale_provider: made.locale.provider,
            provider_locale: made.locale.provider_locale,
            privileges: done.contains(&Kind::Privileges),
            settings: done.iter().filter(|k| **k == Kind::Setting).count(),
            connection_limit: done.contains(&Kind::ConnectionLimit),
            comment: done.contains(&Kind::Comment),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::manifest::Grant;

    fn locale(collate: &str) -> Locale {
        Locale {
            encoding: "UTF8".into(),
            collate: collate.into(),
            ctype: collate.into(),
            provider: None,
            provider_locale: None,
            icu_rules: None,
        }
    }

    /// A manifest whose source database was owned by `kasmapp`, which `app` may CONNECT to.
    fn manifest(with_properties: bool) -> Manifest {
        let text = r#"{"format":1,"id":"20261124T031500Z-ab12cd","created":"2026-11-24T03:15:00Z",
            "completed":"2026-11-24T03:15:00Z","database":"u@h:5432/kasm","dbname":"kasm",
            "server_version":"17.2","pg_dump_version":"17.2","object":"x/dump.gz",
            "location":"/b/x/dump.gz","size_bytes":1,"sha256":"00","dump_bytes":1,
            "format_of_dump":"pg_dump custom",
            "compression":{"kind":"gzip","level":6,"block_bytes":1},"encryption":null,
            "server_side_encryption":null,"exclude_logs":false,"tables":[],
            "timings":{"count_s":0.0,"dump_s":0.0,"total_s":0.0},"restore":""}"#;
        let mut m: Manifest = serde_json::from_str(text).unwrap();
        if with_properties {
            m.database_properties = Some(DatabaseProperties {
                owner: "kasmapp".into(),
                encoding: "UTF8".into(),
                collate: "en_US.utf8".into(),
                ctype: "en_US.utf8".into(),
                locale_provider: None,
                provider_locale: None,
                icu_rules: None,
                connection_limit: None,
                acl: Some(vec![Grant {
                    grantee: Some("app".into()),
                    grantor: "kasmapp".into(),
                    privileges: vec!["CONNECT".into()],
                    grantable: false,
                }]),
                settings: Vec::new(),
                comment: None,
            });
        }
        m
    }

    fn existing() -> Existing {
        Existing {
            owner: "postgres".into(),
            locale: locale("C.utf8"),
        }
    }

    fn present(roles: &[&str]) -> BTreeSet<String> {
        roles.iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn the_backups_owner_and_locale_come_first_when_its_roles_are_there() {
        let m = manifest(true);
        assert_eq!(roles_to_look_up(&m), ["app", "kasmapp"]);
        let e = existing();
        let p = settle(&m, Some(&e), present(&["app", "kasmapp"]), false, 17).unwrap();
        assert_eq!(p.owner.as_deref(), Some("kasmapp"));
        assert_eq!(
            p.locales,
            [Some(locale("en_US.utf8")), Some(locale("C.utf8")), None]
        );
        assert!(p.from_backup.is_some());
    }

    #[test]
    fn missing_roles_stop_the_restore_unless_no_owner() {
        let m = manifest(true);
        let e = existing();
        let err = settle(&m, Some(&e), present(&["app"]), false, 17).unwrap_err();
        assert!(err.to_string().contains("kasmapp"), "{err}");
        // With --no-owner the existing database's owner stays.
        let p = settle(&m, Some(&e), present(&["app"]), true, 17).unwrap();
        assert_eq!(p.owner.as_deref(), Some("postgres"));
        assert_eq!(p.present, present(&["app"]));
    }

    #[test]
    fn a_backup_without_properties_takes_the_existing_database_or_the_defaults() {
        let m = manifest(false);
        assert!(roles_to_look_up(&m).is_empty());
        let e = existing();
        let p = settle(&m, Some(&e), BTreeSet::new(), false, 16).unwrap();
        assert_eq!(p.owner.as_deref(), Some("postgres"));
        assert_eq!(p.locales, [Some(locale("C.utf8")), None]);
        let p = settle(&m, None, BTreeSet::new(), false, 16).unwrap();
        assert_eq!((p.owner, p.locales), (None, vec![None]));
        assert!(no_properties_warning("b1", true).contains("the existing database's"));
        assert!(no_properties_warning("b1", false).contains("the server's defaults"));
    }

    fn refusal<'a>(why: &'a str, denied: bool, locale: Option<&'a Locale>) -> Refusal<'a> {
        Refusal {
            new: "kasm_restore_20261124031500",
            why,
            denied,
            may_create: true,
            may_give_owner: !denied,
            transient: false,
            owner: Some("kasmapp"),
            locale,
            more_locales: true,
            no_owner: false,
            me: "rds_admin",
        }
    }

    #[test]
    fn an_owner_the_role_may_not_give_is_dropped_only_with_no_owner() {
        for why in [
            "must be member of role \"kasmapp\"",
            "must be able to SET ROLE \"kasmapp\"",
        ] {
            let r = refusal(why, true, None);
            let Next::Refused(e) = after_refusal(&r) else {
                panic!("not refused: {why}")
            };
            let text = e.to_string();
            assert!(text.contains("must be a member of \"kasmapp\""), "{text}");
            assert!(
                text.contains("GRANT \"kasmapp\" TO \"rds_admin\""),
                "{text}"
            );
            assert!(!text.contains("  "), "runs of spaces: {text}");
            let Next::WithoutOwner(w) = after_refusal(&Refusal {
                no_owner: true,
                ..r
            }) else {
                panic!("owner kept with --no-owner: {why}")
            };
            assert!(w.contains("--no-owner") && w.contains("kasmapp"), "{w}");
        }
    }

    #[test]
    fn a_role_without_createdb_is_told_what_it_lacks() {
        let r = Refusal {
            owner: None,
            may_create: false,
            may_give_owner: true,
            ..refusal("permission denied to create database", true, None)
        };
        let Next::Refused(e) = after_refusal(&r) else {
            panic!("not refused")
        };
        assert!(
            e.to_string()
                .contains("needs CREATEDB (ALTER ROLE \"rds_admin\" CREATEDB)"),
            "{e}"
        );
        // Decided by the privileges, not the wording, and before the owner (as PostgreSQL
        // checks them): --no-owner does not hide a missing CREATEDB.
        let r = Refusal {
            may_create: false,
            no_owner: true,
            ..refusal("whatever the server says", true, None)
        };
        assert!(matches!(after_refusal(&r), Next::Refused(_)), "{r:?}");
    }

    #[test]
    fn a_locale_the_server_lacks_falls_back_while_there_is_another() {
        let l = locale("xx_XX.utf8");
        let why = "invalid LC_COLLATE locale name: \"xx_XX.utf8\"";
        assert!(matches!(
            after_refusal(&refusal(why, false, Some(&l))),
            Next::NextLocale
        ));
        // Not for the last candidate, the server's default, or a transient failure.
        for r in [
            Refusal {
                more_locales: false,
                ..refusal(why, false, Some(&l))
            },
            refusal(why, false, None),
            Refusal {
                transient: true,
                ..refusal(why, false, Some(&l))
            },
        ] {
            assert!(matches!(after_refusal(&r), Next::AsIs), "{r:?}");
        }
        let w = locale_fallback_warning(&l, why, &locale("C.utf8"));
        assert!(
            w.contains("xx_XX.utf8") && w.contains("\"C.utf8\" instead"),
            "{w}"
        );
    }

    #[test]
    fn the_outcome_counts_what_was_given() {
        let o = PropertiesOutcome::of(
            true,
            existing(),
            &[
                Kind::Privileges,
                Kind::Setting,
                Kind::Setting,
                Kind::Comment,
            ],
        );
        assert_eq!(
            (
                o.owner.as_str(),
                o.collate.as_str(),
                o.privileges,
                o.settings
            ),
            ("postgres", "C.utf8", true, 2)
        );
        assert!(o.comment && !o.connection_limit && o.from_backup);
    }
}
