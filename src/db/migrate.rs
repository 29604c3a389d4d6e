//! Versioned migrations of kasm-db's own schema, embedded from `sql/` at build time.
//!
//! Applied in order, each in its own transaction, under a session advisory lock so that two
//! `migrate` runs (or two `serve` replicas starting) never interleave; recorded in
//! `kasm_db_migrations`. Idempotent. Never adopts or alters a relation kasm-db did not create:
//! when a migration would create a relation that already exists unrecorded (Kasm's own `logs`
//! table, say), it refuses and names the relation.

use super::locks::{self, Lock};
use super::{Pool, get, ident};
use crate::error::{Error, Result, ResultExt};
use serde::Serialize;

/// One migration: its version, a name, the relations it creates, and its SQL.
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    /// Relations created by this migration; checked for prior existence before it runs.
    pub creates: &'static [&'static str],
    pub sql: &'static str,
}

/// Every migration, in order. Add new ones at the end; never edit an applied one.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "logs",
        creates: &["logs", "logs_debug", "logs_logs"],
        sql: include_str!("../../sql/0001_logs.sql"),
    },
    Migration {
        version: 2,
        name: "size_samples",
        creates: &["size_samples"],
        sql: include_str!("../../sql/0002_size_samples.sql"),
    },
    Migration {
        version: 3,
        name: "serve",
        creates: &["follow_offsets", "schedule_runs"],
        sql: include_str!("../../sql/0003_serve.sql"),
    },
    Migration {
        version: 4,
        name: "logs_indexes",
        creates: &[],
        sql: include_str!("../../sql/0004_logs_indexes.sql"),
    },
    Migration {
        version: 5,
        name: "follow_identity",
        creates: &[],
        sql: include_str!("../../sql/0005_follow_identity.sql"),
    },
    Migration {
        version: 6,
        name: "read_tail",
        creates: &[],
        sql: include_str!("../../sql/0006_read_tail.sql"),
    },
];

#[derive(Debug, Serialize)]
pub struct MigrateReport {
    /// Versions applied by this run, as "0001_logs".
    pub applied: Vec<String>,
    /// The schema's version after the run.
    pub current: String,
}

fn label(m: &Migration) -> String {
    format!("{:04}_{}", m.version, m.name)
}

/// Bring `schema` up to the newest migration.
pub async fn migrate(pool: &Pool, schema: &str) -> Result<MigrateReport> {
    let mut client = get(pool).await?;
    let s = ident(schema);
    // Only when it is missing: even with IF NOT EXISTS, CREATE SCHEMA needs the CREATE privilege
    // on the database, which a role given only its schema (managed PostgreSQL) does not have.
    let schema_exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&schema],
        )
        .await?
        .get(0);
    if !schema_exists {
        client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {s}"))
            .await
            .ctx(format!("cannot create schema {schema}"))?;
    }
    locks::wait(&client, Lock::Migrate).await?;
    let result = apply_all(&mut client, schema).await;
    // Unlock even when a migration failed; the session ending would release it too.
    let _ = locks::unlock(&client, Lock::Migrate).await;
    result
}

async fn apply_all(client: &mut deadpool_postgres::Object, schema: &str) -> Result<MigrateReport> {
    let s = ident(schema);
    let done: Vec<i32> = if has_migrations_table(client, schema).await? {
        client
            .query(
                &format!("SELECT version FROM {s}.kasm_db_migrations ORDER BY version"),
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect()
    } else {
        Vec::new()
    };
    let pending: Vec<&Migration> = MIGRATIONS
        .iter()
        .filter(|m| !done.contains(&m.version))
        .collect();
    // Every relation the pending migrations create is checked before anything is created: a
    // refusal (Kasm's own `logs`, say) leaves the database exactly as it was.
    for rel in pending.iter().flat_map(|m| m.creates.iter()) {
        let exists: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relname = $2)",
                &[&schema, rel],
            )
            .await?
            .get(0);
        if exists {
            return Err(Error::failed(format!(
                "refusing to migrate: {schema}.{rel} already exists and was not created by kasm-db \
                 (it may be Kasm's own table). kasm-db never adopts or alters a table it did not create: \
                 point --db at a dedicated database (e.g. kasm_logs) or set database.schema to another schema"
            )));
        }
    }
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {s}.kasm_db_migrations (
                version int PRIMARY KEY,
                name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )"
        ))
        .await?;
    let mut applied = Vec::new();
    for m in pending {
        let tx = client.transaction().await?;
        tx.batch_execute(&format!("SET LOCAL search_path TO {s}"))
            .await?;
        tx.batch_execute(m.sql)
            .await
            .with_ctx(|| format!("migration {} failed", label(m)))?;
        tx.execute(
            &format!("INSERT INTO {s}.kasm_db_migrations (version, name) VALUES ($1, $2)"),
            &[&m.version, &m.name],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(migration = %label(m), schema, "applied");
        applied.push(label(m));
    }
    let current = MIGRATIONS.last().map(label).unwrap_or_default();
    Ok(MigrateReport { applied, current })
}

/// Whether `schema` holds kasm-db's migrations table.
async fn has_migrations_table(client: &tokio_postgres::Client, schema: &str) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT to_regclass(format('%I.kasm_db_migrations', $1::text)) IS NOT NULL",
            &[&schema],
        )
        .await?
        .get(0))
}

/// The newest applied version, or None when kasm-db's schema is absent.
pub async fn current_version(client: &tokio_postgres::Client, schema: &str) -> Result<Option<i32>> {
    if !has_migrations_table(client, schema).await? {
        return Ok(None);
    }
    let row = client
        .query_one(
            &format!(
                "SELECT max(version) FROM {}.kasm_db_migrations",
                ident(schema)
            ),
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Fail with a clear message unless `migrate` has been run on this schema.
pub async fn require_migrated(client: &tokio_postgres::Client, schema: &str) -> Result<()> {
    match current_version(client, schema).await? {
        Some(v) if v >= MIGRATIONS.last().map(|m| m.version).unwrap_or(0) => Ok(()),
        Some(v) => Err(Error::failed(format!(
            "the kasm-db schema in {schema} is at version {v}, older than this binary's; run `kasm-db migrate`"
        ))),
        None => Err(Error::failed(format!(
            "no kasm-db schema in {schema}: run `kasm-db migrate` first"
        ))),
    }
}
