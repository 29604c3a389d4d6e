//! The roles a backup's database needs, as the backup carries them: the manifest's
//! [`Roles`] (names, attributes, memberships, and whether password hashes are carried: no
//! hash, ever) and the separate passwords object (`<id>/role-passwords.json`, sealed like the
//! dump into `<id>/role-passwords.json.aes` when the backup is encrypted) that holds the hashes
//! when the backing-up role could read `pg_authid`. The manifest records that object's name,
//! size and SHA-256 so a restore checks it as it checks the dump.
//!
//! Pure but for the sealing itself ([`seal`], [`open`]: in-memory AES-256-GCM through
//! [`super::crypt`]). Never puts a hash in the manifest, a message, a `Debug` output or a log:
//! hashes are [`Secret`]s and leave that type only in [`Passwords::to_bytes`], which writes
//! the passwords object.

use super::crypt::{self, Key, Sealer};
use crate::config::Secret;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The passwords object's name under a backup (plain JSON).
pub const PASSWORDS_FILE: &str = "role-passwords.json";
/// Its name when the backup is encrypted by kasm-db.
pub const ENCRYPTED_PASSWORDS_FILE: &str = "role-passwords.json.aes";

/// The roles a database needs, in the manifest. Role names are as in the catalogs (unquoted).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Roles {
    /// Every role recorded, in name order (the same as `attributes`' names).
    pub names: Vec<String>,
    /// Whether the password hashes travel with the backup (in [`Roles::passwords`]); false
    /// when the backing-up role could not read `pg_authid` (a managed PostgreSQL).
    pub password_hashes: bool,
    /// Each role's attributes.
    pub attributes: Vec<Role>,
    /// Memberships whose member is one of these roles (the granted role is one of them too,
    /// or a predefined `pg_*` role).
    pub memberships: Vec<Membership>,
    /// The passwords object, when hashes are carried.
    #[serde(default)]
    pub passwords: Option<PasswordsObject>,
}

impl Roles {
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.attributes.iter().find(|r| r.name == name)
    }
}

/// One role's attributes (`pg_roles`), as `CREATE ROLE` takes them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    pub login: bool,
    pub superuser: bool,
    pub createdb: bool,
    pub createrole: bool,
    pub inherit: bool,
    pub replication: bool,
    pub bypassrls: bool,
    /// `CONNECTION LIMIT`; `None` = no limit.
    #[serde(default)]
    pub connection_limit: Option<i32>,
    /// `VALID UNTIL`, as an ISO 8601 timestamp or `infinity`; `None` = no limit.
    #[serde(default)]
    pub valid_until: Option<String>,
    /// Why the database needs it: `owner` (of the database), `objects` (owns objects in it),
    /// `privileges` (named in an ACL or a default privilege), `settings`, `policies`,
    /// `membership` (a role one of the others is a member of).
    #[serde(default)]
    pub uses: Vec<String>,
}

/// `GRANT role TO member` (PostgreSQL 16 and later also record INHERIT and SET per grant).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Membership {
    pub role: String,
    pub member: String,
    /// WITH ADMIN OPTION.
    pub admin: bool,
    /// WITH INHERIT (PostgreSQL 16+); `None` from older servers (the member's INHERIT decides).
    #[serde(default)]
    pub inherit: Option<bool>,
    /// WITH SET (PostgreSQL 16+); `None` from older servers (always true there).
    #[serde(default)]
    pub set: Option<bool>,
}

/// Where the hashes are: the object's name relative to the target, its size and SHA-256 as
/// stored (after encryption, when the backup is encrypted).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PasswordsObject {
    pub object: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub encrypted: bool,
}

impl PasswordsObject {
    /// Why `bytes` (as read from storage; `None` = missing) are not this object, if they are
    /// not: the problem in words, naming the object, never its content.
    pub fn problem(&self, bytes: Option<&[u8]>) -> Option<String> {
        let Some(bytes) = bytes else {
            return Some(format!(
                "the role passwords object {} is missing",
                self.object
            ));
        };
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes));
        (bytes.len() as u64 != self.size_bytes || sha != self.sha256).then(|| {
            format!(
                "the role passwords object {} differs from the manifest (size or SHA-256): it is \
                 corrupt",
                self.object
            )
        })
    }
}

/// The passwords object's name for backup `id`.
pub fn passwords_name(id: &str, encrypted: bool) -> String {
    if encrypted {
        format!("{id}/{ENCRYPTED_PASSWORDS_FILE}")
    } else {
        format!("{id}/{PASSWORDS_FILE}")
    }
}

/// The password hashes of the roles that have one (`pg_authid.rolpassword`: SCRAM or MD5
/// strings). `Debug` shows the role names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Passwords(pub BTreeMap<String, Secret>);

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Passwords(<redacted> for {:?})", self.0.keys())
    }
}

#[derive(Serialize, Deserialize)]
struct Wire {
    format: u32,
    password_hashes: BTreeMap<String, String>,
}

impl Passwords {
    /// The object's plain bytes (JSON). The only place a hash leaves its [`Secret`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let wire = Wire {
            format: 1,
            password_hashes: self
                .0
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_string()))
                .collect(),
        };
        serde_json::to_vec(&wire).expect("a map of strings encodes")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Passwords> {
        // The serde error could quote the input: keep it out of the message.
        let wire: Wire = serde_json::from_slice(bytes)
            .map_err(|_| Error::failed("the backup's role passwords object is not readable"))?;
        Ok(Passwords(
            wire.password_hashes
                .into_iter()
                .map(|(k, v)| (k, Secret::new(v)))
                .collect(),
        ))
    }

    pub fn get(&self, role: &str) -> Option<&Secret> {
        self.0.get(role)
    }
}

/// Seal `plain` as one chunk of the backup's encrypted-object format (the same as the dump's).
pub fn seal(key: &Key, plain: &[u8]) -> Result<Vec<u8>> {
    let s = Sealer::new(key)?;
    let mut out = s.header().to_vec();
    out.extend(s.seal(0, false, plain));
    out.extend(s.seal(1, true, b""));
    Ok(out)
}

/// Open what [`seal`] made (or any object of the format).
pub fn open(key: &Key, sealed: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    crypt::decrypt(key, sealed, &mut out)
        .map_err(|e| e.context("the backup's role passwords object"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_round_trip_and_never_show_in_debug() {
        let hash = "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy";
        let p = Passwords([("kasmapp".to_string(), Secret::new(hash))].into());
        assert!(!format!("{p:?}").contains("SCRAM"), "{p:?}");
        assert!(format!("{p:?}").contains("kasmapp"));
        let bytes = p.to_bytes();
        assert_eq!(Passwords::from_bytes(&bytes).unwrap(), p);
        let key = Key::from_material(&[3u8; 32]).unwrap();
        let sealed = seal(&key, &bytes).unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("SCRAM"));
        assert_eq!(open(&key, &sealed).unwrap(), bytes);
        let obj = PasswordsObject {
            object: "i/role-passwords.json.aes".into(),
            size_bytes: sealed.len() as u64,
            sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&sealed)),
            encrypted: true,
        };
        assert_eq!(obj.problem(Some(&sealed)), None);
        assert!(obj.problem(None).unwrap().contains("missing"));
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert!(obj.problem(Some(&bad)).unwrap().contains("corrupt"));
        let e = open(&Key::from_material(&[4u8; 32]).unwrap(), &sealed).unwrap_err();
        assert!(e.to_string().contains("wrong key"), "{e}");
        let e = Passwords::from_bytes(format!("{{\"x\": \"{hash}\"").as_bytes()).unwrap_err();
        assert!(!e.to_string().contains("SCRAM"), "{e}");
    }

    #[test]
    fn the_manifest_part_holds_no_hash_and_old_manifests_read() {
        assert_eq!(passwords_name("i", false), "i/role-passwords.json");
        assert_eq!(passwords_name("i", true), "i/role-passwords.json.aes");
        let r: Roles = serde_json::from_value(serde_json::json!({
            "names": ["kasmapp"], "password_hashes": false,
            "attributes": [{"name": "kasmapp", "login": true, "superuser": false,
                            "createdb": false, "createrole": false, "inherit": true,
                            "replication": false, "bypassrls": false}],
            "memberships": []
        }))
        .unwrap();
        assert_eq!(r.role("kasmapp").unwrap().connection_limit, None);
        assert_eq!(r.passwords, None);
    }
}
