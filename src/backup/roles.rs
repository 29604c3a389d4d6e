//! The roles a backup's database needs, read in the backup's snapshot, and the passwords
//! object written beside the dump: the database's owner, every role named in its ACLs and
//! default privileges (`aclexplode` over databases, schemas, relations, functions, types,
//! large objects, foreign servers...), every owner of an object in it, the roles of its
//! per-role settings and row-level-security policies, then the roles those are members of;
//! their attributes (`pg_roles`) and memberships (`pg_auth_members`, with INHERIT and SET
//! where the server has them). Predefined roles (`pg_*`) exist on every server and are not
//! recorded, though memberships in them are. Objects of extensions, of the system schemas and
//! the others initdb made are left out (the target's extensions and catalogs bring their own),
//! but a grant on one of them to another role than its owner is not.
//!
//! Password hashes (`pg_authid.rolpassword`) are read only when this role may read
//! `pg_authid`; they go into the passwords object (sealed with the backup's key when the
//! backup is encrypted), never into the manifest, a message or a log.

use crate::archive::crypt::Key;
use crate::archive::roles::{self, Membership, Passwords, PasswordsObject, Role, Roles};
use crate::archive::storage::{Retain, Storage};
use crate::config::Secret;
use crate::error::Result;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use tokio_postgres::Client;

/// Catalogs whose rows have an owner (and maybe an ACL), with the columns that say so:
/// (catalog, owner column, namespace column, ACL column).
const OWNED: [(&str, &str, Option<&str>, Option<&str>); 18] = [
    ("pg_class", "relowner", Some("relnamespace"), Some("relacl")),
    ("pg_proc", "proowner", Some("pronamespace"), Some("proacl")),
    ("pg_type", "typowner", Some("typnamespace"), Some("typacl")),
    ("pg_namespace", "nspowner", Some("oid"), Some("nspacl")),
    ("pg_collation", "collowner", Some("collnamespace"), None),
    ("pg_conversion", "conowner", Some("connamespace"), None),
    ("pg_operator", "oprowner", Some("oprnamespace"), None),
    ("pg_opclass", "opcowner", Some("opcnamespace"), None),
    ("pg_opfamily", "opfowner", Some("opfnamespace"), None),
    ("pg_ts_config", "cfgowner", Some("cfgnamespace"), None),
    ("pg_ts_dict", "dictowner", Some("dictnamespace"), None),
    ("pg_statistic_ext", "stxowner", Some("stxnamespace"), None),
    ("pg_foreign_data_wrapper", "fdwowner", None, Some("fdwacl")),
    ("pg_foreign_server", "srvowner", None, Some("srvacl")),
    ("pg_event_trigger", "evtowner", None, None),
    ("pg_publication", "pubowner", None, None),
    ("pg_largeobject_metadata", "lomowner", None, Some("lomacl")),
    ("pg_language", "lanowner", None, Some("lanacl")),
];

/// The first object id not made by initdb (PostgreSQL's `FirstNormalObjectId`).
const FIRST_NORMAL_OID: u32 = 16384;

/// What the database references, one `(role oid, use)` per row: the UNION this builds.
fn references_sql() -> String {
    let mut parts = vec![
        "SELECT datdba AS r, 'owner' AS u FROM pg_database WHERE datname = current_database()"
            .to_string(),
        "SELECT a.grantee, 'privileges' FROM pg_database d, aclexplode(d.datacl) a
         WHERE d.datname = current_database()"
            .to_string(),
        "SELECT a.grantor, 'privileges' FROM pg_database d, aclexplode(d.datacl) a
         WHERE d.datname = current_database()"
            .to_string(),
        "SELECT s.setrole, 'settings' FROM pg_db_role_setting s
         JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = current_database()"
            .to_string(),
        "SELECT defaclrole, 'privileges' FROM pg_default_acl".to_string(),
        "SELECT a.grantee, 'privileges' FROM pg_default_acl x, aclexplode(x.defaclacl) a"
            .to_string(),
        "SELECT a.grantor, 'privileges' FROM pg_default_acl x, aclexplode(x.defaclacl) a"
            .to_string(),
        "SELECT unnest(p.polroles), 'policies' FROM pg_policy p
         JOIN pg_class c ON c.oid = p.polrelid WHERE c.relnamespace IN (SELECT oid FROM user_ns)"
            .to_string(),
        "SELECT umuser, 'objects' FROM pg_user_mappings".to_string(),
    ];
    for (cat, owner, ns, acl) in OWNED {
        let not_ext = format!(
            "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '{cat}'::regclass \
             AND d.objid = x.oid AND d.deptype = 'e')"
        );
        // Objects outside the schemas: those initdb made (built-in languages...) are not
        // the database's own.
        let user = match ns {
            Some(col) => format!("x.{col} IN (SELECT oid FROM user_ns)"),
            None => format!("x.oid >= {FIRST_NORMAL_OID}"),
        };
        parts.push(format!(
            "SELECT x.{owner}, 'objects' FROM {cat} x WHERE {user} AND {not_ext}"
        ));
        if let Some(acl) = acl {
            // A grant on a system object (GRANT EXECUTE ON a pg_catalog function) names a
            // role the dump needs; its grantor there is the bootstrap superuser.
            parts.push(format!(
                "SELECT a.grantee, 'privileges' FROM {cat} x, aclexplode(x.{acl}) a \
                 WHERE a.grantee <> x.{owner} AND {not_ext}"
            ));
            parts.push(format!(
                "SELECT a.grantor, 'privileges' FROM {cat} x, aclexplode(x.{acl}) a \
                 WHERE {user} AND {not_ext}"
            ));
        }
    }
    parts.join("\nUNION ")
}

/// The roles the connection's database needs, with the uses that put each in, and the roles
/// they are members of (recursively). Predefined roles (`pg_*`) and PUBLIC are left out.
fn needed_sql() -> String {
    format!(
        "WITH RECURSIVE user_ns AS (
             SELECT oid FROM pg_namespace
             WHERE nspname <> 'information_schema' AND nspname NOT LIKE 'pg\\_%'),
         refs(r, u) AS ({}),
         direct AS (
             SELECT r.oid, array_agg(DISTINCT refs.u ORDER BY refs.u) AS uses
             FROM refs JOIN pg_roles r ON r.oid = refs.r
             WHERE r.rolname NOT LIKE 'pg\\_%' GROUP BY r.oid),
         needed(oid) AS (
             SELECT oid FROM direct
             UNION
             SELECT m.roleid FROM pg_auth_members m JOIN needed n ON m.member = n.oid
             JOIN pg_roles g ON g.oid = m.roleid WHERE g.rolname NOT LIKE 'pg\\_%')
         SELECT r.rolname::text, coalesce(d.uses, ARRAY['membership']),
                r.rolcanlogin, r.rolsuper, r.rolcreatedb, r.rolcreaterole, r.rolinherit,
                r.rolreplication, r.rolbypassrls, r.rolconnlimit,
                to_json(r.rolvaliduntil) #>> '{{}}'
         FROM needed n JOIN pg_roles r ON r.oid = n.oid LEFT JOIN direct d ON d.oid = n.oid
         ORDER BY 1",
        references_sql()
    )
}

/// Memberships whose member is one of `$1`, in one of `$1` or a predefined role; INHERIT and
/// SET through `to_jsonb` (PostgreSQL 16 and later have them).
const MEMBERSHIPS_SQL: &str = "
    SELECT g.rolname::text, u.rolname::text, m.admin_option,
           (to_jsonb(m) ->> 'inherit_option')::bool, (to_jsonb(m) ->> 'set_option')::bool
    FROM pg_auth_members m
    JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
    WHERE u.rolname = ANY($1) AND (g.rolname = ANY($1) OR g.rolname LIKE 'pg\\_%')
    ORDER BY 1, 2";

/// Read the roles in the open snapshot's transaction; the hashes when `pg_authid` is readable.
pub async fn read(client: &Client) -> Result<(Roles, Option<Passwords>)> {
    let rows = client.query(&needed_sql(), &[]).await?;
    let attributes: Vec<Role> = rows
        .iter()
        .map(|r| {
            let limit: i32 = r.get(9);
            Role {
                name: r.get(0),
                uses: r.get(1),
                login: r.get(2),
                superuser: r.get(3),
                createdb: r.get(4),
                createrole: r.get(5),
                inherit: r.get(6),
                replication: r.get(7),
                bypassrls: r.get(8),
                connection_limit: (limit >= 0).then_some(limit),
                valid_until: r.get(10),
            }
        })
        .collect();
    let names: Vec<String> = attributes.iter().map(|r| r.name.clone()).collect();
    let rows = client.query(MEMBERSHIPS_SQL, &[&names]).await?;
    let memberships = merge_memberships(
        rows.iter()
            .map(|r| Membership {
                role: r.get(0),
                member: r.get(1),
                admin: r.get(2),
                inherit: r.get(3),
                set: r.get(4),
            })
            .collect(),
    );
    let readable: bool = client
        .query_one(
            "SELECT has_table_privilege('pg_catalog.pg_authid', 'SELECT')",
            &[],
        )
        .await?
        .get(0);
    let passwords = if readable {
        let rows = client
            .query(
                "SELECT rolname::text, rolpassword FROM pg_catalog.pg_authid
                 WHERE rolname = ANY($1) AND rolpassword IS NOT NULL",
                &[&names],
            )
            .await?;
        Some(Passwords(
            rows.iter()
                .map(|r| (r.get::<_, String>(0), Secret::new(r.get::<_, String>(1))))
                .collect(),
        ))
    } else {
        tracing::debug!("pg_authid is not readable: role password hashes are not carried");
        None
    };
    let roles = Roles {
        names,
        password_hashes: passwords.is_some(),
        attributes,
        memberships,
        passwords: None,
    };
    Ok((roles, passwords))
}

/// One membership per (role, member): PostgreSQL 16 keeps one per grantor; a restore grants
/// it once, with every option any grantor gave.
pub fn merge_memberships(rows: Vec<Membership>) -> Vec<Membership> {
    let mut out: BTreeMap<(String, String), Membership> = BTreeMap::new();
    for m in rows {
        let or = |a: Option<bool>, b: Option<bool>| match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(false) || b.unwrap_or(false)),
        };
        out.entry((m.role.clone(), m.member.clone()))
            .and_modify(|e| {
                e.admin |= m.admin;
                e.inherit = or(e.inherit, m.inherit);
                e.set = or(e.set, m.set);
            })
            .or_insert(m);
    }
    out.into_values().collect()
}

/// Store the hashes beside the dump (sealed with `key` when the backup is encrypted) and
/// record the object in `roles`. Nothing is written when no role has a hash.
pub async fn store(
    storage: &dyn Storage,
    id: &str,
    mut roles: Roles,
    passwords: Option<Passwords>,
    key: Option<&Key>,
) -> Result<Roles> {
    let Some(passwords) = passwords.filter(|p| !p.0.is_empty()) else {
        return Ok(roles);
    };
    let plain = passwords.to_bytes();
    let bytes = match key {
        Some(k) => roles::seal(k, &plain)?,
        None => plain,
    };
    let object = roles::passwords_name(id, key.is_some());
    let record = PasswordsObject {
        object: object.clone(),
        size_bytes: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(&bytes)),
        encrypted: key.is_some(),
    };
    storage
        .put_small(&object, bytes, Retain::No)
        .await
        .map_err(|e| e.context("storing the role passwords object"))?;
    roles.passwords = Some(record);
    Ok(roles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memberships_of_several_grantors_become_one_grant() {
        let m = |admin, inherit, set| Membership {
            role: "staff".into(),
            member: "kasmapp".into(),
            admin,
            inherit,
            set,
        };
        let merged = merge_memberships(vec![
            m(false, Some(true), Some(false)),
            m(true, Some(false), Some(false)),
        ]);
        assert_eq!(merged, [m(true, Some(true), Some(false))]);
        assert_eq!(
            merge_memberships(vec![m(false, None, None)]),
            [m(false, None, None)]
        );
    }

    #[test]
    fn every_owned_catalog_is_asked_for_owners_and_grants() {
        let sql = needed_sql();
        for (cat, owner, _, acl) in OWNED {
            assert!(sql.contains(&format!("x.{owner}, 'objects' FROM {cat} x")));
            if let Some(acl) = acl {
                assert!(sql.contains(&format!("aclexplode(x.{acl})")), "{cat}");
            }
        }
        assert!(sql.contains("pg_default_acl") && sql.contains("pg_auth_members"));
    }
}
