//! The report's reads: size samples, the live sizes, and hourly log counts by level and
//! application. Read-only plain SELECTs (no locks beyond them, no writes), on any database:
//! kasm-db's partitioned `logs`, Kasm's own plain `logs` table, or none.
//!
//! Never renders anything and never reads the environment: the schema and windows are passed in.

use super::{Current, HourCount, LogsSource, SizePoint};
use crate::db::ident;
use crate::error::Result;
use crate::maintenance::samples;
use chrono::{DateTime, Utc};
use tokio_postgres::Client;

/// The database's clock (so windows agree with ingest_date), its size and the `logs` size.
pub async fn current(client: &Client, schema: &str) -> Result<(DateTime<Utc>, Current)> {
    let row = client
        .query_one(
            "SELECT now(), pg_database_size(current_database()),
                    coalesce((SELECT sum(pg_total_relation_size(t.relid))
                              FROM pg_partition_tree(to_regclass(format('%I.logs', $1::text))) t), 0)::bigint",
            &[&schema],
        )
        .await?;
    Ok((
        row.get(0),
        Current {
            database_bytes: row.get::<_, i64>(1).max(0) as u64,
            logs_bytes: row.get::<_, i64>(2).max(0) as u64,
        },
    ))
}

/// Size samples taken at or after `since`, oldest first; `None` without the table.
pub async fn size_points(
    client: &Client,
    schema: &str,
    since: DateTime<Utc>,
) -> Result<Option<Vec<SizePoint>>> {
    if !samples::has_table(client, schema).await? {
        return Ok(None);
    }
    let rows = client
        .query(
            &format!(
                "SELECT sampled_at, database_bytes, logs_debug_bytes, logs_logs_bytes
                 FROM {}.size_samples WHERE sampled_at >= $1 ORDER BY sampled_at",
                ident(schema)
            ),
            &[&since],
        )
        .await?;
    let n = |v: i64| v.max(0) as u64;
    Ok(Some(
        rows.iter()
            .map(|r| SizePoint {
                at: r.get(0),
                database_bytes: n(r.get(1)),
                logs_debug_bytes: n(r.get(2)),
                logs_logs_bytes: n(r.get(3)),
            })
            .collect(),
    ))
}

/// Records per hour of ingest_date, level and application since `since`: one scan of the
/// window, grouped in the database. Works on any `logs` relation with `ingest_date` and
/// `levelname` (`application` is optional).
pub async fn hourly_volume(
    client: &Client,
    schema: &str,
    since: DateTime<Utc>,
    window_hours: u32,
) -> Result<(LogsSource, Vec<HourCount>)> {
    let cols: Vec<String> = client
        .query(
            "SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = to_regclass(format('%I.logs', $1::text))
               AND a.attnum > 0 AND NOT a.attisdropped",
            &[&schema],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let relation = format!("{schema}.logs");
    if cols.is_empty() {
        return Ok((
            LogsSource::Missing(format!("There is no {relation} relation in this database.")),
            Vec::new(),
        ));
    }
    if !cols.iter().any(|c| c == "ingest_date") || !cols.iter().any(|c| c == "levelname") {
        return Ok((
            LogsSource::Missing(format!(
                "{relation} has no ingest_date and levelname columns to count by."
            )),
            Vec::new(),
        ));
    }
    let app = if cols.iter().any(|c| c == "application") {
        "coalesce(application::text, '')"
    } else {
        "''"
    };
    let sql = format!(
        "SELECT (floor(extract(epoch FROM ingest_date) / 3600) * 3600)::bigint AS hour,
                upper(coalesce(levelname::text, 'INFO')), {app}, count(*)
         FROM {}.logs WHERE ingest_date >= $1
         GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        ident(schema)
    );
    let rows = client.query(&sql, &[&since]).await?;
    let volume = rows
        .iter()
        .filter_map(|r| {
            Some(HourCount {
                hour: DateTime::<Utc>::from_timestamp(r.get::<_, i64>(0), 0)?,
                level: r.get(1),
                application: r.get(2),
                count: r.get::<_, i64>(3).max(0) as u64,
            })
        })
        .collect();
    Ok((
        LogsSource::Table {
            relation,
            window_hours,
        },
        volume,
    ))
}
