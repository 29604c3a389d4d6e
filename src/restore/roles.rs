//! `restore --create-roles` on the target server: [`prepare`] (before anything is fetched or
//! created) looks up which of the backup's roles the server has and what the restoring role
//! may give, reads the passwords object when the backup carries one (size and SHA-256 checked
//! against the manifest, decrypted with the backup's key) and settles the plan
//! ([`super::role_plan`]); [`create`] (once the dump is fetched and checked) creates the
//! missing roles in one transaction (all or none), then grants their memberships one by one (a
//! membership the server refuses is a warning).
//!
//! Never alters an existing role. Never prints, logs or returns a password hash: no statement
//! text holds one (it is a bound parameter whose `Debug` is redacted, set into a
//! transaction-local setting the server appends to `CREATE ROLE`), and errors carry the
//! server's message only.

use super::role_plan::{self, Capabilities, Plan, RolesOutcome};
use super::server::Server;
use crate::archive::crypt::Key;
use crate::archive::manifest::Manifest;
use crate::archive::roles::{self, Passwords, Role};
use crate::archive::storage::{self, Storage};
use crate::config::Secret;
use crate::error::{Error, Result};
use bytes::BytesMut;
use tokio_postgres::Client;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

/// What [`prepare`] settled.
#[derive(Debug)]
pub struct Prepared {
    pub plan: Plan,
    passwords: Option<Passwords>,
    password_hashes: bool,
    server_major: u32,
}

impl Prepared {
    /// The roles this restore will create (the database's owner may be among them).
    pub fn to_create(&self) -> Vec<String> {
        self.plan.names()
    }
}

/// Settle what to create; refuse (target untouched) when the backup records no roles, the
/// passwords object is missing or corrupt, or the restoring role may not create roles.
pub async fn prepare(
    server: &Server,
    storage: &dyn Storage,
    m: &Manifest,
    key: Option<&Key>,
) -> Result<Prepared> {
    let recorded = m
        .roles
        .as_ref()
        .ok_or_else(|| Error::failed(role_plan::no_roles_recorded(&m.id)))?;
    let present = server.roles_present(&recorded.names).await?;
    let row = server
        .client()
        .query_one(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls,
                    current_setting('server_version_num')::int / 10000
             FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?;
    let caps = Capabilities {
        superuser: row.get(0),
        createrole: row.get(1),
        createdb: row.get(2),
        replication: row.get(3),
        bypassrls: row.get(4),
        server_major: row.get::<_, i32>(5) as u32,
    };
    let missing = recorded.names.iter().any(|n| !present.contains(n));
    let passwords = match (&recorded.passwords, recorded.password_hashes && missing) {
        (Some(_), true) => Some(read_passwords(storage, m, key).await?),
        // Hashes were read but no role had one.
        (None, true) => Some(Passwords::default()),
        (_, false) => None,
    };
    let me = server.maintenance.user().to_string();
    let plan = role_plan::plan(recorded, &present, &caps, passwords.as_ref(), &me)?;
    Ok(Prepared {
        plan,
        passwords,
        password_hashes: recorded.password_hashes,
        server_major: caps.server_major,
    })
}

/// Fetch the passwords object, check it against the manifest, open it.
async fn read_passwords(
    storage: &dyn Storage,
    m: &Manifest,
    key: Option<&Key>,
) -> Result<Passwords> {
    let obj = m.passwords().expect("called with a passwords object");
    let bytes = storage::get_small(storage, &obj.object).await?;
    if let Some(problem) = obj.problem(bytes.as_deref()) {
        return Err(Error::failed(format!(
            "{problem}; nothing was restored and the target is unchanged (restore without \
             --create-roles, creating the roles by hand)"
        )));
    }
    let bytes = bytes.expect("checked above");
    let plain = if obj.encrypted {
        let key = key.ok_or_else(|| {
            Error::failed("the backup's role passwords are encrypted and no key is set")
        })?;
        roles::open(key, &bytes)?
    } else {
        bytes
    };
    Passwords::from_bytes(&plain)
}

/// A failure after `--create-roles` created roles: they stay (roles are the server's, and a
/// second run finds them and leaves them as they are); the error says so.
pub fn kept_on_failure(e: Error, done: Option<&RolesOutcome>) -> Error {
    match done.filter(|d| !d.created.is_empty()) {
        Some(d) => e.context(format!(
            "the roles --create-roles created stay on the server ({}); a second run leaves them \
             as they are",
            d.created.join(", ")
        )),
        None => e,
    }
}

/// A password hash as a bound parameter: its `Debug` (which tokio-postgres's debug log
/// prints for parameters) says `<redacted>`.
struct Hidden<'a>(&'a str);

impl std::fmt::Debug for Hidden<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl ToSql for Hidden<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.0.to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        <&str as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

/// `CREATE ROLE`, with the hash (when carried) bound into a transaction-local setting that the
/// server appends: no statement text holds it.
async fn create_one(client: &Client, role: &Role, hash: Option<&Secret>) -> Result<()> {
    let create = role_plan::create_sql(role);
    let Some(h) = hash else {
        client.batch_execute(&create).await?;
        return Ok(());
    };
    client
        .execute(
            "SELECT set_config($1, $2, true)",
            &[&role_plan::PASSWORD_SETTING, &Hidden(h.expose())],
        )
        .await?;
    client
        .batch_execute(&role_plan::create_with_password_sql(&create))
        .await?;
    client
        .execute(
            "SELECT set_config($1, '', true)",
            &[&role_plan::PASSWORD_SETTING],
        )
        .await?;
    Ok(())
}

/// Create the planned roles (one transaction), then grant their memberships; warnings for
/// what could not be given.
pub async fn create(server: &Server, p: &Prepared) -> Result<(RolesOutcome, Vec<String>)> {
    let client = server.client();
    let mut warnings = p.plan.warnings.clone();
    if !p.plan.create.is_empty() {
        client
            .batch_execute("BEGIN; SET LOCAL standard_conforming_strings = on")
            .await?;
        for c in &p.plan.create {
            let hash = p.passwords.as_ref().and_then(|h| h.get(&c.role.name));
            if let Err(e) = create_one(client, &c.role, hash).await {
                server.rollback().await;
                // The statements hold no hash; should the server ever quote one, it is cut.
                let mut why = e.to_string();
                if let Some(h) = hash {
                    why = why.replace(h.expose(), "<redacted>");
                }
                return Err(Error::classified(
                    e.kind(),
                    e.is_transient(),
                    format!(
                        "--create-roles: creating role {:?}: {why}; no role was created, nothing \
                         was restored and the target database is unchanged",
                        c.role.name
                    ),
                ));
            }
        }
        client.batch_execute("COMMIT").await?;
    }
    let me = server.maintenance.user();
    let mut member_of = Vec::new();
    for role in &p.plan.member_of {
        match client
            .batch_execute(&role_plan::self_grant_sql(role, me))
            .await
        {
            Ok(()) => member_of.push(role.clone()),
            Err(e) => warnings.push(format!(
                "the restoring role {me:?} could not be made a member of {role:?}, which it \
                 created: {}",
                Error::from(e)
            )),
        }
    }
    let mut granted = 0;
    for g in &p.plan.grants {
        match client
            .batch_execute(&role_plan::grant_sql(g, p.server_major))
            .await
        {
            Ok(()) => granted += 1,
            Err(e) => warnings.push(format!(
                "the membership of {:?} in {:?} was not granted: {}",
                g.member,
                g.role,
                Error::from(e)
            )),
        }
    }
    Ok((
        RolesOutcome {
            created: p.plan.names(),
            existing: p.plan.existing.clone(),
            need_password: p.plan.need_password.clone(),
            password_statements: p
                .plan
                .need_password
                .iter()
                .map(|r| role_plan::password_advice(r))
                .collect(),
            password_hashes: p.password_hashes,
            memberships_granted: granted,
            restoring_role_member_of: member_of,
        },
        warnings,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_failure_names_the_roles_that_stay() {
        let done = RolesOutcome {
            created: vec!["kasmapp".into()],
            ..Default::default()
        };
        let e = kept_on_failure(Error::failed("pg_restore failed"), Some(&done)).to_string();
        assert!(e.contains("stay on the server (kasmapp)") && e.contains("pg_restore failed"));
        let none = RolesOutcome::default();
        let e = kept_on_failure(Error::failed("x"), Some(&none)).to_string();
        assert_eq!(e, "x");
        assert_eq!(kept_on_failure(Error::failed("x"), None).to_string(), "x");
    }
}
