//! What physical backups and WAL streaming need of the server, asked once over an ordinary
//! connection before `pg_basebackup` or `pg_receivewal` start: a role that may open replication
//! connections, `wal_level` at least `replica`, and the cluster facts a physical backup records
//! (major version, WAL segment size, the bootstrap superuser's name).
//!
//! A managed PostgreSQL that gives nobody REPLICATION (Amazon RDS, Aurora, Cloud SQL, Azure's
//! single server) is refused with a message that points to the provider's own point-in-time
//! recovery. Reads only; never changes a setting or a role.

use crate::error::{Error, Result};
use tokio_postgres::Client;

/// The server, as a physical backup or a WAL stream needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub server_major: u32,
    pub server_version: String,
    /// `wal_segment_size` in bytes.
    pub wal_segment_bytes: u64,
    /// The bootstrap superuser (`oid` 10).
    pub superuser: String,
}

/// Check that this role may stream WAL from this server, and read its facts.
pub async fn check(client: &Client, what: &str) -> Result<Facts> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int,
                    current_setting('server_version'),
                    (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'),
                    (SELECT rolname::text FROM pg_roles WHERE oid = 10),
                    current_user::text,
                    (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user),
                    current_setting('wal_level'),
                    EXISTS (SELECT 1 FROM pg_roles WHERE rolname IN ('rds_superuser',
                            'rds_replication', 'cloudsqlsuperuser', 'azure_pg_admin'))",
            &[],
        )
        .await?;
    let server_major = (row.get::<_, i32>(0) / 10_000) as u32;
    let user: String = row.get(4);
    let replication: Option<bool> = row.get(5);
    let wal_level: String = row.get(6);
    let managed: bool = row.get(7);
    if !replication.unwrap_or(false) {
        return Err(Error::failed(if managed {
            format!(
                "{what} needs a role with the REPLICATION attribute, and {user:?} has none: this \
                 looks like a managed PostgreSQL (Amazon RDS/Aurora, Cloud SQL, Azure), which \
                 does not give replication connections to its users; use the provider's own \
                 point-in-time recovery (automated backups, restore to a point in time) and \
                 keep kasm-db's logical backups (`kasm-db backup`) for copies you hold"
            )
        } else {
            format!(
                "{what} needs a role with the REPLICATION attribute, and {user:?} has none: \
                 `ALTER ROLE {user} REPLICATION` (as a superuser), and let it connect for \
                 replication in pg_hba.conf (`host replication {user} <kasm-db's address> \
                 scram-sha-256`). On a managed PostgreSQL without replication access (Amazon \
                 RDS), use the provider's own point-in-time recovery instead"
            )
        }));
    }
    if wal_level == "minimal" {
        return Err(Error::failed(format!(
            "{what} needs wal_level = replica (or logical), and the server has minimal: set it \
             in postgresql.conf and restart PostgreSQL"
        )));
    }
    Ok(Facts {
        server_major,
        server_version: row.get(1),
        wal_segment_bytes: row.get::<_, i64>(2) as u64,
        superuser: row.get(3),
    })
}
