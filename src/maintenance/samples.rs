//! Size samples: `record_sample` measures the database and the `logs` classes (bytes only, no
//! table scans) and stores one row in `size_samples` (migration 0002), for the `serve`
//! scheduler's `schedule.size_sample` cron; `record_if_free` is the same for `kasm-db size`
//! (under the size-sample lock, never failing the command); `read_samples` gives `size` its
//! growth trend.
//!
//! Never creates or alters tables (that is `migrate`'s job): without the table, recording
//! fails with a clear message and reading returns nothing.

use crate::db::ident;
use crate::db::locks::{self, Lock};
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

/// One recorded sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    pub sampled_at: DateTime<Utc>,
    pub database_bytes: i64,
    pub logs_debug_bytes: i64,
    pub logs_logs_bytes: i64,
    pub logs_rows_estimate: i64,
}

/// Whether `schema.size_samples` exists.
pub async fn has_table(client: &Client, schema: &str) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT to_regclass(format('%I.size_samples', $1::text)) IS NOT NULL",
            &[&schema],
        )
        .await?
        .get(0))
}

/// Measure and store one sample in `schema.size_samples`; returns it.
pub async fn record_sample(client: &Client, schema: &str) -> Result<Sample> {
    if !has_table(client, schema).await? {
        return Err(Error::failed(format!(
            "no size_samples table in schema {schema}: run `kasm-db migrate` first"
        )));
    }
    // Leaf partitions of each class; reltuples is -1 for never-analyzed tables.
    let class = |name: &str| {
        format!(
            "(SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0)::bigint
              FROM pg_partition_tree(to_regclass(format('%I.{name}', $1::text))) t)"
        )
    };
    let sql = format!(
        "INSERT INTO {}.size_samples (database_bytes, logs_debug_bytes, logs_logs_bytes, logs_rows_estimate)
         SELECT pg_database_size(current_database()), {}, {},
                (SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint
                 FROM pg_partition_tree(to_regclass(format('%I.logs', $1::text))) t
                 JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf)
         RETURNING sampled_at, database_bytes, logs_debug_bytes, logs_logs_bytes, logs_rows_estimate",
        ident(schema),
        class("logs_debug"),
        class("logs_logs"),
    );
    let row = client.query_one(&sql, &[&schema]).await?;
    Ok(Sample {
        sampled_at: row.get(0),
        database_bytes: row.get(1),
        logs_debug_bytes: row.get(2),
        logs_logs_bytes: row.get(3),
        logs_rows_estimate: row.get(4),
    })
}

/// Whether `kasm-db size` recorded a sample, and if not why (`size --json`'s `sample`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleRecord {
    pub recorded: bool,
    pub sampled_at: Option<DateTime<Utc>>,
    /// Why none was recorded.
    pub reason: Option<String>,
}

impl SampleRecord {
    pub fn skipped(reason: impl Into<String>) -> Self {
        SampleRecord {
            recorded: false,
            sampled_at: None,
            reason: Some(reason.into()),
        }
    }
}

/// Record one sample as `serve`'s `size_sample` slot does, under the same lock
/// ([`Lock::SizeSample`]), for `kasm-db size` run from cron. Never fails: a database without
/// the table (not migrated, Kasm's own), a standby, the lock held by `serve` recording one
/// right now, or a role that may not insert are reported as not recorded (the last with a
/// warning).
pub async fn record_if_free(client: &Client, schema: &str) -> SampleRecord {
    let r = async {
        if !has_table(client, schema).await? {
            return Ok(SampleRecord::skipped(format!(
                "no size_samples table in schema {schema} (`kasm-db migrate` creates it)"
            )));
        }
        let standby: bool = client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await?
            .get(0);
        if standby {
            return Ok(SampleRecord::skipped(
                "the server is a standby (read-only); samples are recorded on the primary",
            ));
        }
        if !locks::try_lock(client, Lock::SizeSample).await? {
            return Ok(SampleRecord::skipped(
                "another process (serve's size_sample slot) is recording one right now",
            ));
        }
        let recorded = record_sample(client, schema).await;
        locks::unlock(client, Lock::SizeSample).await?;
        let s = recorded?;
        Ok::<_, Error>(SampleRecord {
            recorded: true,
            sampled_at: Some(s.sampled_at),
            reason: None,
        })
    }
    .await;
    r.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "size sample not recorded");
        SampleRecord::skipped(format!("not recorded: {e}"))
    })
}

/// `(sampled_at, database_bytes)` of the samples taken since `since`, oldest first; empty
/// without the table.
pub async fn read_samples(
    client: &Client,
    schema: &str,
    since: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, u64)>> {
    if !has_table(client, schema).await? {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            &format!(
                "SELECT sampled_at, database_bytes FROM {}.size_samples
                 WHERE sampled_at >= $1 ORDER BY sampled_at",
                ident(schema)
            ),
            &[&since],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get::<_, i64>(1).max(0) as u64))
        .collect())
}
