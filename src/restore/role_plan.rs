//! `restore --create-roles`, decided from inputs: which of the roles a backup records the
//! target server lacks, which attributes the restoring role may give them (a managed
//! PostgreSQL's administrator cannot give SUPERUSER, nor REPLICATION or BYPASSRLS it lacks:
//! those are left out with a warning), the `CREATE ROLE` and `GRANT` statements, which login
//! roles are left without a password and the exact `ALTER ROLE` that gives them one.
//!
//! Existing roles are never altered: they are only listed, and memberships are granted only
//! to roles this restore creates. Pure: no I/O, no clock. Identifiers are quoted
//! ([`ident`]). No statement text ever holds a password hash: the hash reaches the server as a
//! bound parameter into a transaction-local setting ([`PASSWORD_SETTING`]), and
//! [`create_with_password_sql`] has the server append it to `CREATE ROLE`, so neither a
//! client-side statement log nor the server's `log_statement` sees it. Every output names
//! roles, never a hash.

use crate::archive::roles::{Membership, Passwords, Role, Roles};
use crate::db::{ident, literal};
use crate::error::{Error, Result};
use serde::Serialize;
use std::collections::BTreeSet;

/// What the restoring role may give, on a server of `server_major`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub superuser: bool,
    pub createrole: bool,
    pub createdb: bool,
    pub replication: bool,
    pub bypassrls: bool,
    pub server_major: u32,
}

/// One role to create, with the attributes it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creation {
    pub role: Role,
    /// Attributes the backup records that the restoring role cannot give (`SUPERUSER`...).
    pub dropped: Vec<&'static str>,
}

/// The plan: settled before anything is fetched, carried out after the backup is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub create: Vec<Creation>,
    pub existing: Vec<String>,
    /// Memberships to grant (their member is created here).
    pub grants: Vec<Membership>,
    /// Login roles created without a password (the backup carries no hash for them).
    pub need_password: Vec<String>,
    /// Created roles that own the database or objects in it, which a restoring role that is
    /// no superuser must be a member of to give them their database and objects (as on a
    /// managed PostgreSQL, where the administrator is made a member of the roles it creates).
    pub member_of: Vec<String>,
    pub warnings: Vec<String>,
}

impl Plan {
    /// The names of the roles to create.
    pub fn names(&self) -> Vec<String> {
        self.create.iter().map(|c| c.role.name.clone()).collect()
    }
}

/// What `--create-roles` did: `restore --json`'s `roles`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RolesOutcome {
    pub created: Vec<String>,
    /// Roles the backup records that the target already had (left exactly as they were).
    pub existing: Vec<String>,
    /// Login roles created without their password: each needs [`password_advice`].
    pub need_password: Vec<String>,
    /// The statement that gives each of them one (`ALTER ROLE "kasmapp" PASSWORD '...';`,
    /// with the placeholder `...`, never a password).
    pub password_statements: Vec<String>,
    /// Whether the backup carried password hashes.
    pub password_hashes: bool,
    pub memberships_granted: usize,
    /// Created owner roles the restoring role (no superuser) was made a member of, so that it
    /// could give them the database and its objects.
    pub restoring_role_member_of: Vec<String>,
}

/// Decide what to create. `present` are the recorded roles the target has; `hashes` the
/// hashes the backup carries (`None` when it could not read them; empty when no role had one).
pub fn plan(
    roles: &Roles,
    present: &BTreeSet<String>,
    caps: &Capabilities,
    hashes: Option<&Passwords>,
    me: &str,
) -> Result<Plan> {
    let mut p = Plan::default();
    for r in &roles.attributes {
        if present.contains(&r.name) {
            p.existing.push(r.name.clone());
            continue;
        }
        let (role, dropped) = attainable(r, caps);
        if !dropped.is_empty() {
            p.warnings.push(format!(
                "role {:?} was created without {} (the restoring role {me:?} may not give {}); \
                 a superuser can add {}: ALTER ROLE {} {}",
                r.name,
                dropped.join(", "),
                if dropped.len() == 1 { "it" } else { "them" },
                if dropped.len() == 1 { "it" } else { "them" },
                ident(&r.name),
                dropped.join(" ")
            ));
        }
        // Hashes read: a role without one had no password. Not read: any login role may.
        if r.login && hashes.is_none() {
            p.need_password.push(r.name.clone());
        }
        let owns = r.uses.iter().any(|u| u == "owner" || u == "objects");
        if owns && !caps.superuser {
            p.member_of.push(r.name.clone());
        }
        p.create.push(Creation { role, dropped });
    }
    if !p.create.is_empty() && !caps.superuser && !caps.createrole {
        return Err(Error::failed(format!(
            "--create-roles: the restoring role {me:?} may not create roles (it needs CREATEROLE: \
             ALTER ROLE {} CREATEROLE, as a superuser), and the target lacks {}; nothing was \
             restored and the target is unchanged",
            ident(me),
            quoted_list(&p.names())
        )));
    }
    let created: BTreeSet<&str> = p.create.iter().map(|c| c.role.name.as_str()).collect();
    for m in &roles.memberships {
        if !created.contains(m.member.as_str()) {
            continue; // an existing role is never altered
        }
        if caps.server_major < 16 && (m.set == Some(false) || m.inherit.is_some_and(|i| !i)) {
            p.warnings.push(format!(
                "the membership of {:?} in {:?} had INHERIT/SET options PostgreSQL {} cannot \
                 express: granted with its defaults",
                m.member, m.role, caps.server_major
            ));
        }
        p.grants.push(m.clone());
    }
    Ok(p)
}

/// The role as the restoring role may create it, and the attributes left out.
fn attainable(r: &Role, caps: &Capabilities) -> (Role, Vec<&'static str>) {
    let mut role = r.clone();
    let mut dropped = Vec::new();
    // PostgreSQL 16 made CREATEROLE give only the attributes its holder has.
    let v16 = caps.server_major >= 16;
    let may = |has: bool, before_16: bool| caps.superuser || if v16 { has } else { before_16 };
    if role.superuser && !caps.superuser {
        role.superuser = false;
        dropped.push("SUPERUSER");
    }
    if role.replication && !may(caps.replication, false) {
        role.replication = false;
        dropped.push("REPLICATION");
    }
    if role.bypassrls && !may(caps.bypassrls, false) {
        role.bypassrls = false;
        dropped.push("BYPASSRLS");
    }
    if role.createdb && !may(caps.createdb, true) {
        role.createdb = false;
        dropped.push("CREATEDB");
    }
    if role.createrole && !may(caps.createrole, true) {
        role.createrole = false;
        dropped.push("CREATEROLE");
    }
    (role, dropped)
}

fn flag(on: bool, yes: &str, no: &str) -> String {
    if on { yes.into() } else { no.into() }
}

/// The transaction-local setting the hash is bound into (`set_config($1, $2, true)`) for
/// [`create_with_password_sql`].
pub const PASSWORD_SETTING: &str = "kasm_db.role_password_hash";

/// `CREATE ROLE` with every attribute (the password is [`create_with_password_sql`]'s).
pub fn create_sql(r: &Role) -> String {
    let mut sql = format!(
        "CREATE ROLE {} WITH {} {} {} {} {} {} {}",
        ident(&r.name),
        flag(r.superuser, "SUPERUSER", "NOSUPERUSER"),
        flag(r.createdb, "CREATEDB", "NOCREATEDB"),
        flag(r.createrole, "CREATEROLE", "NOCREATEROLE"),
        flag(r.inherit, "INHERIT", "NOINHERIT"),
        flag(r.login, "LOGIN", "NOLOGIN"),
        flag(r.replication, "REPLICATION", "NOREPLICATION"),
        flag(r.bypassrls, "BYPASSRLS", "NOBYPASSRLS"),
    );
    if let Some(n) = r.connection_limit {
        sql.push_str(&format!(" CONNECTION LIMIT {n}"));
    }
    if let Some(v) = &r.valid_until {
        sql.push_str(&format!(" VALID UNTIL {}", literal(v)));
    }
    sql
}

/// `create` (a [`create_sql`] statement) with `PASSWORD` and the hash set in
/// [`PASSWORD_SETTING`], run by the server: a `DO` block whose text holds no secret. A SCRAM or
/// MD5 hash is stored as it is, never hashed again.
pub fn create_with_password_sql(create: &str) -> String {
    let body = format!(
        "BEGIN EXECUTE {} || ' PASSWORD ' || quote_literal(current_setting({})); END",
        literal(create),
        literal(PASSWORD_SETTING)
    );
    // A dollar-quote tag the body (role names included) does not contain.
    let tag = (0..)
        .map(|n| format!("$kasm_db{n}$"))
        .find(|t| !body.contains(t.as_str()))
        .expect("some tag is free");
    format!("DO {tag}{body}{tag}")
}

/// `GRANT role TO member`, with the options the target's major can express.
pub fn grant_sql(m: &Membership, server_major: u32) -> String {
    let mut sql = format!("GRANT {} TO {}", ident(&m.role), ident(&m.member));
    if server_major >= 16 {
        let mut opts = vec![format!("ADMIN {}", m.admin.to_string().to_uppercase())];
        if let Some(i) = m.inherit {
            opts.push(format!("INHERIT {}", i.to_string().to_uppercase()));
        }
        if let Some(s) = m.set {
            opts.push(format!("SET {}", s.to_string().to_uppercase()));
        }
        sql.push_str(&format!(" WITH {}", opts.join(", ")));
    } else if m.admin {
        sql.push_str(" WITH ADMIN OPTION");
    }
    sql
}

/// `GRANT role TO me`: the restoring role becomes a member of a role it created (PostgreSQL's
/// defaults: it inherits and may SET ROLE, as `CREATE DATABASE ... OWNER` and pg_restore's
/// `ALTER ... OWNER TO` need).
pub fn self_grant_sql(role: &str, me: &str) -> String {
    format!("GRANT {} TO {}", ident(role), ident(me))
}

/// The statement an operator runs to give `role` its password (a placeholder, never one).
pub fn password_advice(role: &str) -> String {
    format!("ALTER ROLE {} PASSWORD '...';", ident(role))
}

/// The message when `--create-roles` is asked of a backup that records no roles.
pub fn no_roles_recorded(id: &str) -> String {
    format!(
        "--create-roles: backup {id} was made before kasm-db recorded the roles a database needs; \
         create them on the target by hand (or pass --no-owner); nothing was restored and the \
         target is unchanged"
    )
}

fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn role(name: &str, login: bool) -> Role {
        Role {
            name: name.into(),
            login,
            superuser: false,
            createdb: false,
            createrole: false,
            inherit: true,
            replication: false,
            bypassrls: false,
            connection_limit: None,
            valid_until: None,
            uses: vec!["owner".into()],
        }
    }

    fn caps(superuser: bool, major: u32) -> Capabilities {
        Capabilities {
            superuser,
            createrole: true,
            createdb: true,
            replication: false,
            bypassrls: false,
            server_major: major,
        }
    }

    fn roles(hashes: bool) -> Roles {
        let mut admin = role("kasm admin \"x\"", true);
        admin.superuser = true;
        admin.replication = true;
        admin.createdb = true;
        Roles {
            names: vec![],
            password_hashes: hashes,
            attributes: vec![role("kasmapp", true), role("staff", false), admin],
            memberships: vec![
                Membership {
                    role: "staff".into(),
                    member: "kasmapp".into(),
                    admin: false,
                    inherit: Some(true),
                    set: Some(false),
                },
                Membership {
                    role: "staff".into(),
                    member: "existing".into(),
                    admin: true,
                    inherit: None,
                    set: None,
                },
            ],
            passwords: None,
        }
    }

    #[test]
    fn missing_roles_are_created_existing_ones_only_listed() {
        let present: BTreeSet<String> = ["staff".to_string()].into();
        let hashes = Passwords([("kasmapp".to_string(), Secret::new("SCRAM-SHA-256$x"))].into());
        let p = plan(
            &roles(true),
            &present,
            &caps(true, 17),
            Some(&hashes),
            "postgres",
        )
        .unwrap();
        assert_eq!(p.names(), ["kasmapp", "kasm admin \"x\""]);
        assert_eq!(p.existing, ["staff"]);
        // Hashes were read: the admin had no password, kasmapp's travels.
        assert!(p.need_password.is_empty(), "{p:?}");
        assert!(p.warnings.is_empty(), "{p:?}");
        assert!(p.member_of.is_empty(), "a superuser needs no membership");
        assert_eq!(p.grants.len(), 1);
        assert_eq!(p.grants[0].member, "kasmapp");
        assert!(hashes.get("kasmapp").is_some());
        let sql = create_sql(&p.create[0].role);
        assert!(
            sql.starts_with("CREATE ROLE \"kasmapp\" WITH NOSUPERUSER"),
            "{sql}"
        );
        assert!(sql.ends_with(" LOGIN NOREPLICATION NOBYPASSRLS"), "{sql}");
        let with = create_with_password_sql(&sql);
        assert_eq!(
            with,
            format!(
                "DO $kasm_db0$BEGIN EXECUTE '{}' || ' PASSWORD ' || \
                 quote_literal(current_setting('{PASSWORD_SETTING}')); END$kasm_db0$",
                sql.replace('\'', "''")
            )
        );
        assert!(!with.contains("SCRAM"));
        // A role name holding the first tag gets another.
        let tricky = create_with_password_sql(&create_sql(&role("x$kasm_db0$'y", true)));
        assert!(
            tricky.starts_with("DO $kasm_db1$BEGIN EXECUTE 'CREATE ROLE \"x$kasm_db0$''y\""),
            "{tricky}"
        );
        let sql = create_sql(&p.create[1].role);
        assert!(sql.starts_with("CREATE ROLE \"kasm admin \"\"x\"\"\" WITH SUPERUSER CREATEDB"));
        assert!(!sql.contains("PASSWORD"));
    }

    #[test]
    fn a_managed_administrator_creates_what_it_may_and_says_what_it_left_out() {
        let mut c = caps(false, 17);
        c.createdb = false;
        let p = plan(&roles(false), &BTreeSet::new(), &c, None, "admin").unwrap();
        assert_eq!(p.need_password, ["kasmapp", "kasm admin \"x\""]);
        let admin = &p.create[2];
        assert_eq!(admin.dropped, ["SUPERUSER", "REPLICATION", "CREATEDB"]);
        assert!(!admin.role.superuser && !admin.role.replication && !admin.role.createdb);
        // Not a superuser: made a member of the owners it creates.
        assert_eq!(p.member_of.len(), 3);
        assert_eq!(
            self_grant_sql("kasmapp", "ad\"min"),
            "GRANT \"kasmapp\" TO \"ad\"\"min\""
        );
        let w = &p.warnings[0];
        assert!(
            w.contains("SUPERUSER, REPLICATION, CREATEDB")
                && w.contains("ALTER ROLE \"kasm admin \"\"x\"\"\" SUPERUSER REPLICATION CREATEDB"),
            "{w}"
        );
        // Before 16 CREATEROLE could give CREATEDB whatever its holder had.
        let p = plan(&roles(false), &BTreeSet::new(), &caps(false, 15), None, "a").unwrap();
        assert_eq!(p.create[2].dropped, ["SUPERUSER", "REPLICATION"]);
        // Without CREATEROLE nothing can be created: refused, naming the roles.
        let mut none = caps(false, 17);
        none.createrole = false;
        let e = plan(&roles(false), &BTreeSet::new(), &none, None, "admin").unwrap_err();
        assert!(
            e.to_string().contains("needs CREATEROLE") && e.to_string().contains("\"kasmapp\"")
        );
        // Everything present: nothing to create, nothing refused.
        let all: BTreeSet<String> = roles(false)
            .attributes
            .iter()
            .map(|r| r.name.clone())
            .collect();
        let p = plan(&roles(false), &all, &none, None, "admin").unwrap();
        assert!(p.create.is_empty() && p.grants.is_empty() && p.existing.len() == 3);
    }

    #[test]
    fn grants_carry_the_options_the_server_can_express() {
        let m = &roles(true).memberships[0];
        assert_eq!(
            grant_sql(m, 17),
            "GRANT \"staff\" TO \"kasmapp\" WITH ADMIN FALSE, INHERIT TRUE, SET FALSE"
        );
        assert_eq!(grant_sql(m, 15), "GRANT \"staff\" TO \"kasmapp\"");
        let p = plan(&roles(true), &BTreeSet::new(), &caps(true, 15), None, "p").unwrap();
        assert!(
            p.warnings.iter().any(|w| w.contains("INHERIT/SET")),
            "{p:?}"
        );
        let mut admin = m.clone();
        admin.admin = true;
        admin.inherit = None;
        admin.set = None;
        assert_eq!(
            grant_sql(&admin, 15),
            "GRANT \"staff\" TO \"kasmapp\" WITH ADMIN OPTION"
        );
        assert_eq!(
            grant_sql(&admin, 16),
            "GRANT \"staff\" TO \"kasmapp\" WITH ADMIN TRUE"
        );
        assert_eq!(
            password_advice("kasm \"app\""),
            "ALTER ROLE \"kasm \"\"app\"\"\" PASSWORD '...';"
        );
    }

    #[test]
    fn limits_and_expiry_are_carried() {
        let mut r = role("it's", true);
        r.connection_limit = Some(20);
        r.valid_until = Some("2030-01-01T00:00:00+00:00".into());
        let sql = create_sql(&r);
        assert!(sql.starts_with("CREATE ROLE \"it's\""));
        assert!(sql.ends_with(" CONNECTION LIMIT 20 VALID UNTIL '2030-01-01T00:00:00+00:00'"));
    }
}
