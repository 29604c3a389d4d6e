//! Size samples: `record_sample` measures the database and the `logs` classes (bytes only, no
//! table scans) and stores one row in `size_samples` (migration 0002), for the `serve`
//! scheduler's `schedule.size_sample` cron; `read_samples` gives `size` its growth trend.
//!
//! Never creates or alters tables (that is `migrate`'s job): without the table, recording
//! fails with a clear message and reading returns nothing.

use crate::db::ident;
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
