//! The manifest: the record that makes a backup exist. It is written **last**, after the data
//! object is complete, so a backup is listed only once its object and checksum are known. It
//! says what the object is, how to check it (size, sha256) and how to restore it without
//! kasm-db, and carries the per-table row counts taken in the dumped snapshot (for restore's
//! checks) and, read in that same snapshot, the database's own properties that pg_dump leaves
//! out of an archive made without `--create` ([`DatabaseProperties`]: owner, encoding and
//! locale, database-level privileges and settings, comment) — as data, never as SQL. Also the layout of a backup under a target (`<id>/dump.gz`, `<id>/manifest.json`, and
//! `<id>/verified.json` once verified)
//! and grouping of listed objects into complete backups and leftovers.
//!
//! Pure: no I/O. Never holds a password: the database is recorded redacted.

use super::compress::Codec;
use super::storage::ObjectInfo;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Manifest format version.
pub const FORMAT: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";
/// The object's name (gzip; `dump.zst` with zstd).
pub const OBJECT_FILE: &str = "dump.gz";
/// The object's name when it is encrypted by kasm-db (`dump.zst.aes` with zstd).
pub const ENCRYPTED_OBJECT_FILE: &str = "dump.gz.aes";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u32,
    pub id: String,
    /// When the backup started (its snapshot was taken).
    pub created: DateTime<Utc>,
    pub completed: DateTime<Utc>,
    /// `user@host:port/dbname`, never the password.
    pub database: String,
    pub dbname: String,
    pub server_version: String,
    pub pg_dump_version: String,
    /// The data object's name relative to the target, and its full location.
    pub object: String,
    pub location: String,
    /// The stored object's size and SHA-256 (after compression and any encryption).
    pub size_bytes: u64,
    pub sha256: String,
    /// The uncompressed pg_dump archive's size.
    pub dump_bytes: u64,
    pub format_of_dump: String,
    pub compression: Compression,
    /// Client-side encryption; `None` = not encrypted by kasm-db.
    pub encryption: Option<Encryption>,
    /// Server-side encryption asked of S3, if any ("AES256", "aws:kms").
    pub server_side_encryption: Option<String>,
    pub exclude_logs: bool,
    /// The tables whose data was left out (`--exclude-logs`), as `schema.table`: every table
    /// named `logs` (kasm-db's partitioned one stands for all its partitions, Kasm's own plain
    /// one for itself). Their definitions are in the dump. Empty in manifests written before
    /// kasm-db recorded it (see [`Manifest::excluded_tables`]).
    #[serde(default)]
    pub excluded: Vec<String>,
    /// `alembic_version.version_num` in the dumped snapshot (Kasm's schema revision; several
    /// heads joined by `,`); `None` when the database has no `alembic_version` table (or it is
    /// empty or unreadable).
    #[serde(default)]
    pub alembic_version: Option<String>,
    /// Row counts per table in the dumped snapshot (0 for tables whose data was excluded).
    pub tables: Vec<TableRows>,
    pub timings: Timings,
    /// The exact command that restores the object without kasm-db.
    pub restore: String,
    /// The source database's own properties, read in the dumped snapshot. `None` in manifests
    /// written before kasm-db recorded them.
    #[serde(default)]
    pub database_properties: Option<DatabaseProperties>,
    /// The roles the database needs (owner, ACLs, object owners, memberships) with their
    /// attributes, never their password hashes (those are in `roles.passwords`' object).
    /// `None` in manifests written before kasm-db recorded them.
    #[serde(default)]
    pub roles: Option<super::roles::Roles>,
    /// `logical` (a pg_dump archive of one database) or `physical` (a pg_basebackup tar of the
    /// whole cluster, restored with `restore --physical`); manifests written before kasm-db
    /// took physical backups are logical.
    #[serde(default)]
    pub kind: BackupKind,
    /// A physical backup's WAL positions and cluster facts; `None` for a logical one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical: Option<Physical>,
}

/// What a backup is.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    /// `pg_dump` of one database.
    #[default]
    Logical,
    /// `pg_basebackup` of the whole cluster (point-in-time recovery with the archived WAL).
    Physical,
}

impl BackupKind {
    pub fn name(self) -> &'static str {
        match self {
            BackupKind::Logical => "logical",
            BackupKind::Physical => "physical",
        }
    }
}

/// A physical backup's facts, as `pg_basebackup` reported them (`-v`) and the server said.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Physical {
    /// Where the backup's WAL begins and ends (`pg_lsn` text, `0/2000028`): a restore is
    /// consistent once it has replayed up to `stop_lsn`.
    pub start_lsn: String,
    pub stop_lsn: String,
    pub timeline: u32,
    /// The server's `wal_segment_size` in bytes.
    pub wal_segment_bytes: u64,
    /// The segment holding `stop_lsn`: the last one the backup carries in its own `pg_wal`
    /// (`-X fetch`), so that it restores without the archive.
    pub stop_segment: String,
    /// The name of the bootstrap superuser (`oid` 10), the role the restore's local
    /// connection uses to watch the recovery.
    pub superuser: String,
    /// The server's major version (a restore needs the same major's `postgres`).
    pub server_major: u32,
}

impl Manifest {
    /// The tables whose data was left out: [`Manifest::excluded`], or for a manifest written
    /// before that was recorded, the tables marked `data_excluded`.
    pub fn excluded_tables(&self) -> Vec<String> {
        if !self.excluded.is_empty() {
            return self.excluded.clone();
        }
        self.tables
            .iter()
            .filter(|t| t.data_excluded)
            .map(|t| format!("{}.{}", t.schema, t.table))
            .collect()
    }
}

/// What `CREATE DATABASE`, `GRANT ... ON DATABASE`, `ALTER DATABASE ... SET`, `ALTER ROLE ... IN
/// DATABASE ... SET` and `COMMENT ON DATABASE` gave the source database. Role names are as in
/// the catalogs (unquoted); restore quotes them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DatabaseProperties {
    pub owner: String,
    /// `UTF8`, `SQL_ASCII`, ...
    pub encoding: String,
    /// `datcollate` and `datctype`.
    pub collate: String,
    pub ctype: String,
    /// `libc`, `icu` or `builtin` (PostgreSQL 15 and later); `None` from older servers (libc).
    #[serde(default)]
    pub locale_provider: Option<String>,
    /// The ICU or builtin provider's locale (`daticulocale`, `datlocale`); `None` for libc.
    #[serde(default)]
    pub provider_locale: Option<String>,
    /// `daticurules` (PostgreSQL 16 and later), when set.
    #[serde(default)]
    pub icu_rules: Option<String>,
    /// `CONNECTION LIMIT`; `None` = no limit.
    #[serde(default)]
    pub connection_limit: Option<i32>,
    /// The database's privileges; `None` = the defaults (no ACL: the owner has all, PUBLIC has
    /// CONNECT and TEMPORARY), `Some(vec![])` = nobody has any.
    #[serde(default)]
    pub acl: Option<Vec<Grant>>,
    /// `ALTER DATABASE ... SET` (no role) and `ALTER ROLE ... IN DATABASE ... SET`.
    #[serde(default)]
    pub settings: Vec<Setting>,
    #[serde(default)]
    pub comment: Option<String>,
}

/// `datlocprovider`'s letter as the name `CREATE DATABASE ... LOCALE_PROVIDER` takes.
pub fn provider_name(letter: &str) -> String {
    match letter {
        "c" => "libc".into(),
        "i" => "icu".into(),
        "b" => "builtin".into(),
        other => other.into(),
    }
}

/// Privileges one grantor gave one grantee, all with or all without grant option.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Grant {
    /// The role; `None` (`null`) is PUBLIC.
    pub grantee: Option<String>,
    pub grantor: String,
    /// `CREATE`, `CONNECT`, `TEMPORARY`.
    pub privileges: Vec<String>,
    /// WITH GRANT OPTION.
    pub grantable: bool,
}

/// One configuration default of the database, for every role or for one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Setting {
    /// `None` (`null`): `ALTER DATABASE ... SET`, for every role.
    pub role: Option<String>,
    pub name: String,
    /// As the server stores it (`setconfig`'s text after `name=`).
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Compression {
    /// `gzip` or `zstd` ([`Codec::from_kind`]); every manifest from before zstd says `gzip`.
    pub kind: String,
    pub level: u32,
    /// Input bytes per gzip member or zstd frame (the stream is multi-member / multi-frame;
    /// `gunzip` and `zstd -dc` read it whole).
    pub block_bytes: usize,
    /// Each member's (frame's) compressed size, in order, before any encryption: member `i`
    /// unpacks to the archive's bytes from `i * block_bytes` and starts where the sizes before
    /// it add up to, so restore can cut the stream and decompress members in parallel
    /// ([`super::members`]). `None` in manifests written before kasm-db recorded it (those
    /// unpack sequentially).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<super::members::Members>,
}

/// How an object written by the parallel-block pipeline ([`super::compress`]) is stored, as a
/// manifest records it: `format_of_dump` (what the plain archive is, `what`, then the codec and
/// the sealing), `compression` and `encryption`. One description for dumps and base backups.
pub fn stored_form(
    what: &str,
    method: super::compress::Method,
    member_bytes: Vec<u32>,
    key_id: Option<String>,
) -> (String, Compression, Option<Encryption>) {
    let format = format!(
        "{what}, {}{}",
        match method.codec {
            Codec::Gzip => "gzip multi-member",
            Codec::Zstd => "zstd multi-frame",
        },
        if key_id.is_some() {
            ", aes-256-gcm-hkdf-stream"
        } else {
            ""
        }
    );
    let compression = Compression {
        kind: method.codec.name().into(),
        level: method.level,
        block_bytes: super::compress::BLOCK_BYTES,
        members: Some(super::members::Members(member_bytes)),
    };
    let encryption = key_id.map(|key_id| Encryption {
        kind: super::crypt::KIND.into(),
        chunk_bytes: super::compress::BLOCK_BYTES,
        key_id,
    });
    (format, compression, encryption)
}

impl Compression {
    /// The codec this backup's object is read with.
    pub fn codec(&self) -> crate::error::Result<Codec> {
        Codec::from_kind(&self.kind)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Encryption {
    /// `aes-256-gcm-hkdf-stream` (`aes-256-gcm-stream` before; see `archive::crypt`).
    pub kind: String,
    /// Each chunk is one gzip member (zstd frame) of up to this many uncompressed bytes.
    pub chunk_bytes: usize,
    /// Which key (a hash prefix, not the key): restore needs the same key file.
    pub key_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableRows {
    pub schema: String,
    pub table: String,
    /// Rows a restore must find (0 when the data was excluded).
    pub rows: i64,
    /// True when `--exclude-logs` left this table's rows out (its definition is kept).
    #[serde(default)]
    pub data_excluded: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Timings {
    pub count_s: f64,
    pub dump_s: f64,
    pub total_s: f64,
}

/// A new backup id from its start time: sortable, unique enough (`20261124T031500Z-3fa9c1`).
pub fn new_id(created: DateTime<Utc>) -> String {
    let rand = uuid::Uuid::new_v4().simple().to_string();
    format!("{}-{}", created.format("%Y%m%dT%H%M%SZ"), &rand[..6])
}

impl Manifest {
    /// Where the role password hashes are, when the backup carries them.
    pub fn passwords(&self) -> Option<&super::roles::PasswordsObject> {
        self.roles.as_ref().and_then(|r| r.passwords.as_ref())
    }
}

pub fn manifest_name(id: &str) -> String {
    format!("{id}/{MANIFEST_FILE}")
}

pub fn object_name(id: &str, encrypted: bool, codec: Codec) -> String {
    match (codec, encrypted) {
        (c, false) => format!("{id}/dump.{}", c.extension()),
        (c, true) => format!("{id}/dump.{}.aes", c.extension()),
    }
}

/// The shell recipe that restores `location` into a new database `NEWDB` (`gunzip -c` or
/// `zstd -dc` by `codec`). An encrypted object must be decrypted with its key first (kasm-db
/// restore does it); the recipe says so.
pub fn restore_recipe(location: &str, key_id: Option<&str>, codec: Codec) -> String {
    let unpack = codec.unpack_command();
    let fetch = if location.starts_with("s3://") {
        format!("aws s3 cp {location} - | {unpack}")
    } else if let Some((container, blob)) = location
        .strip_prefix("az://")
        .and_then(|l| l.split_once('/'))
    {
        format!(
            "az storage blob download --container-name {container} --name {blob} --file /dev/stdout | {unpack}"
        )
    } else {
        format!("{unpack} {location}")
    };
    match key_id {
        None => format!("createdb NEWDB && {fetch} | pg_restore -d NEWDB"),
        Some(k) => format!(
            "encrypted ({}, key id {k}): restore with `kasm-db restore` and \
             backup.encryption_key_file set to that key; the decrypted stream restores with \
             {unpack} | pg_restore -d NEWDB",
            super::crypt::KIND
        ),
    }
}

/// The recipe of a physical backup `id` stored at `location`: kasm-db's command, and by hand the
/// unpacking (`gunzip -c` or `zstd -dc` by `codec`) into an empty data directory. An encrypted
/// one (`key_id`) is decrypted by kasm-db with that key; the recipe says so.
pub fn physical_recipe(id: &str, location: &str, key_id: Option<&str>, codec: Codec) -> String {
    match key_id {
        None => format!(
            "kasm-db restore --physical --data-dir DIR --backup {id}; without kasm-db: {} \
             {location} | tar -x -C DIR, then recovery.signal and a restore_command for the WAL",
            codec.unpack_command()
        ),
        Some(k) => format!(
            "encrypted ({}, key id {k}, and so is its WAL): kasm-db restore \
             --physical --data-dir DIR --backup {id} with backup.encryption_key_file set to that \
             key; the decrypted stream unpacks with {} | tar -x -C DIR",
            super::crypt::KIND,
            codec.unpack_command()
        ),
    }
}

/// Objects under a target grouped by backup id (the first path component).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// Ids that have a manifest.
    pub with_manifest: Vec<String>,
    /// Ids without a manifest (dead or running backups), with their objects.
    pub leftovers: BTreeMap<String, Vec<ObjectInfo>>,
}

pub fn group(objects: &[ObjectInfo]) -> Listing {
    let mut by_id: BTreeMap<&str, Vec<&ObjectInfo>> = BTreeMap::new();
    for o in objects {
        let Some((id, _)) = o.name.split_once('/') else {
            continue; // not ours
        };
        if id == super::wal::WAL_DIR {
            continue; // archived WAL, not a backup (see `archive::wal`); never a leftover
        }
        by_id.entry(id).or_default().push(o);
    }
    let mut l = Listing::default();
    for (id, objs) in by_id {
        if objs.iter().any(|o| o.name == manifest_name(id)) {
            l.with_manifest.push(id.to_string());
        } else {
            l.leftovers
                .insert(id.to_string(), objs.into_iter().cloned().collect());
        }
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locale_providers_are_named_as_create_database_takes_them() {
        assert_eq!(provider_name("i"), "icu");
        assert_eq!(provider_name("c"), "libc");
        assert_eq!(provider_name("b"), "builtin");
    }

    fn obj(name: &str) -> ObjectInfo {
        ObjectInfo {
            name: name.into(),
            size: 1,
            modified: DateTime::default(),
        }
    }

    #[test]
    fn groups_complete_backups_and_leftovers() {
        let l = group(&[
            obj("a/dump.gz"),
            obj("a/manifest.json"),
            obj("b/.dump.gz.partial-123"),
            obj("c/dump.gz"),
            obj("stray.txt"),
            obj("wal/00000001/000000010000000000000003.gz"),
        ]);
        assert_eq!(l.with_manifest, ["a"]);
        assert_eq!(l.leftovers.keys().collect::<Vec<_>>(), ["b", "c"]);
    }

    #[test]
    fn manifests_without_database_properties_still_read() {
        let t = DateTime::parse_from_rfc3339("2026-11-24T03:15:00Z")
            .unwrap()
            .to_utc();
        let m = Manifest {
            format: FORMAT,
            id: new_id(t),
            created: t,
            completed: t,
            database: "u@h:5432/kasm".into(),
            dbname: "kasm".into(),
            server_version: "17.2".into(),
            pg_dump_version: "17.2".into(),
            object: "x/dump.gz".into(),
            location: "/b/x/dump.gz".into(),
            size_bytes: 1,
            sha256: "00".into(),
            dump_bytes: 1,
            format_of_dump: "pg_dump custom".into(),
            compression: Compression {
                kind: "gzip".into(),
                level: 6,
                block_bytes: 1,
                members: Some(super::super::members::Members(vec![7])),
            },
            encryption: None,
            server_side_encryption: None,
            exclude_logs: false,
            excluded: Vec::new(),
            alembic_version: None,
            tables: Vec::new(),
            timings: Timings {
                count_s: 0.0,
                dump_s: 0.0,
                total_s: 0.0,
            },
            restore: String::new(),
            database_properties: Some(DatabaseProperties {
                owner: "kasmapp".into(),
                encoding: "UTF8".into(),
                collate: "C".into(),
                ctype: "C".into(),
                locale_provider: None,
                provider_locale: None,
                icu_rules: None,
                connection_limit: None,
                acl: Some(vec![Grant {
                    grantee: None,
                    grantor: "kasmapp".into(),
                    privileges: vec!["CONNECT".into()],
                    grantable: false,
                }]),
                settings: Vec::new(),
                comment: None,
            }),
            roles: None,
            kind: BackupKind::Logical,
            physical: None,
        };
        let mut v = serde_json::to_value(&m).unwrap();
        assert_eq!(
            v["database_properties"]["acl"][0]["grantee"],
            serde_json::Value::Null
        );
        let back: Manifest = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(back, m);
        assert_eq!(v["alembic_version"], serde_json::Value::Null);
        assert_eq!(v["excluded"], serde_json::json!([]));
        assert_eq!(v["compression"]["members"], "7");
        v["compression"].as_object_mut().unwrap().remove("members");
        assert_eq!(v["kind"], "logical");
        for key in [
            "kind",
            "database_properties",
            "excluded",
            "alembic_version",
            "roles",
        ] {
            v.as_object_mut().unwrap().remove(key);
        }
        v["exclude_logs"] = true.into();
        v["tables"] = serde_json::json!([
            {"schema": "public", "table": "logs", "rows": 0, "data_excluded": true},
            {"schema": "public", "table": "users", "rows": 3}
        ]);
        let old: Manifest = serde_json::from_value(v).unwrap();
        assert_eq!(old.database_properties, None);
        assert_eq!(old.compression.members, None);
        assert_eq!((&old.alembic_version, old.excluded.len()), (&None, 0));
        // An older manifest's excluded tables come from its per-table marks.
        assert_eq!(old.excluded_tables(), ["public.logs"]);
    }

    #[test]
    fn ids_sort_by_time_and_recipe_is_plain() {
        let t = DateTime::parse_from_rfc3339("2026-11-24T03:15:00Z")
            .unwrap()
            .to_utc();
        let id = new_id(t);
        assert!(id.starts_with("20261124T031500Z-"), "{id}");
        assert_eq!(id.len(), 23);
        assert_eq!(
            restore_recipe("/b/x/dump.gz", None, Codec::Gzip),
            "createdb NEWDB && gunzip -c /b/x/dump.gz | pg_restore -d NEWDB"
        );
        assert!(
            restore_recipe("s3://b/p/x/dump.gz", None, Codec::Gzip)
                .starts_with("createdb NEWDB && aws s3 cp s3://b/p/x/dump.gz - | gunzip -c |")
        );
        assert!(
            restore_recipe("az://c/p/x/dump.gz", None, Codec::Gzip).starts_with(
                "createdb NEWDB && az storage blob download --container-name c --name p/x/dump.gz \
                 --file /dev/stdout | gunzip -c |"
            )
        );
        assert_eq!(
            restore_recipe("/b/x/dump.zst", None, Codec::Zstd),
            "createdb NEWDB && zstd -dc /b/x/dump.zst | pg_restore -d NEWDB"
        );
        assert!(
            restore_recipe("/b/x/dump.zst.aes", Some("k1"), Codec::Zstd).contains("zstd -dc |")
        );
        assert_eq!(object_name("i", false, Codec::Gzip), "i/dump.gz");
        assert_eq!(object_name("i", true, Codec::Gzip), "i/dump.gz.aes");
        assert_eq!(object_name("i", false, Codec::Zstd), "i/dump.zst");
        assert_eq!(object_name("i", true, Codec::Zstd), "i/dump.zst.aes");
    }
}
