//! What physical backups and WAL streaming need of the server, asked once over an ordinary
//! connection before `pg_basebackup` or `pg_receivewal` start: a role that may open replication
//! connections, `wal_level` at least `replica`, and the cluster facts a physical backup records
//! (major version, WAL segment size, the bootstrap superuser's name).
//!
//! A managed PostgreSQL that gives nobody REPLICATION (Amazon RDS, Aurora, Cloud SQL, Azure's
//! single server) is refused with a message that points to the provider's own point-in-time
//! recovery. Also reads the state of the stream's replication slot ([`slot`]: retained WAL,
//! consumer, `wal_status`) for the slot guard. Reads only; never changes a setting or a role,
//! never drops a slot.

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

/// A replication slot as the server sees it (the slot guard of issue 25).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Slot {
    pub name: String,
    /// A consumer (pg_receivewal) is connected.
    pub active: bool,
    /// WAL the server keeps for the slot: from its `restart_lsn` to the server's current
    /// position. `None` when the slot reserves none (never used, or its WAL was lost).
    pub retained_bytes: Option<u64>,
    /// PostgreSQL 13+: `reserved`, `extended`, `unreserved` or `lost` (WAL it needed removed).
    pub wal_status: Option<String>,
}

/// What the slot guard reads of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotReading {
    /// `None` when no slot of that name exists.
    pub slot: Option<Slot>,
    /// `max_slot_wal_keep_size` in MB (`-1`: no limit); `None` before PostgreSQL 13.
    pub max_slot_wal_keep_mb: Option<i64>,
}

/// Read the replication slot `name` (any role may: `pg_replication_slots` is public).
pub async fn slot(client: &Client, name: &str) -> Result<SlotReading> {
    let major = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await?
        .get::<_, i32>(0)
        / 10_000;
    let status = if major >= 13 {
        "s.wal_status::text"
    } else {
        "NULL::text"
    };
    let row = client
        .query_opt(
            &format!(
                "SELECT s.active,
                        ((CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()
                               ELSE pg_current_wal_lsn() END) - s.restart_lsn)::bigint,
                        {status}
                   FROM pg_replication_slots s WHERE s.slot_name::text = $1"
            ),
            &[&name],
        )
        .await?;
    let slot = row.map(|r| Slot {
        name: name.to_string(),
        active: r.get(0),
        retained_bytes: r.get::<_, Option<i64>>(1).map(|b| b.max(0) as u64),
        wal_status: r.get(2),
    });
    let max_slot_wal_keep_mb = if major >= 13 {
        client
            .query_one(
                "SELECT setting::bigint FROM pg_settings WHERE name = 'max_slot_wal_keep_size'",
                &[],
            )
            .await?
            .get::<_, Option<i64>>(0)
    } else {
        None
    };
    Ok(SlotReading {
        slot,
        max_slot_wal_keep_mb,
    })
}
