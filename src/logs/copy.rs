//! Storing rows into `logs` by binary COPY (tokio-postgres `BinaryCopyInWriter`).
//!
//! A batch is one COPY statement, hence atomic. When the server refuses a batch because of its
//! content (not because the connection broke), the batch is split in halves and retried until
//! the refused rows are isolated: every good row is stored exactly once and each poison row is
//! returned with the server's reason. Connection failures are returned as errors, never
//! swallowed; the COPY they cut off is "in doubt" (the connection may have died after the
//! COMMIT, before its reply), and the next run on a new connection first looks for one of its
//! rows, so a retried batch is never stored twice. Nothing here creates partitions (see
//! `partition_ddl.rs`).

use super::record::{Class, Record};
use crate::db::ident;
use bytes::BufMut;
use chrono::{DateTime, Utc};
use futures::pin_mut;
use postgres_types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::Client;
use tokio_postgres::binary_copy::BinaryCopyInWriter;

/// A record with what kasm-db adds to it when storing.
#[derive(Debug, Clone)]
pub struct Row {
    pub log_id: uuid::Uuid,
    pub ingest_date: DateTime<Utc>,
    pub record: Record,
    /// Where the row came from, for reporting a refusal (source index, line number).
    pub origin: (u32, u64),
}

/// The outcome of storing a batch.
#[derive(Debug, Default)]
pub struct Stored {
    pub stored: u64,
    pub stored_debug: u64,
    /// Rows the server refused: (index in the batch, reason).
    pub refused: Vec<(usize, String)>,
}

/// jsonb in binary COPY format: version byte 1, then the JSON text as is.
#[derive(Debug)]
struct RawJsonb<'a>(&'a str);

impl ToSql for RawJsonb<'_> {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.put_u8(1);
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }
    to_sql_checked!();
}

const COLUMNS: &str =
    "log_id, ingest_date, log_time, levelname, host, application, kasm_user_name, message, data";
const TYPES: [Type; 9] = [
    Type::UUID,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::JSONB,
];

/// One COPY of `rows` (all or nothing). Public so that `serve` can run it inside its own
/// transaction (rows and file offset committed together).
pub async fn copy_once(
    client: &Client,
    schema: &str,
    rows: &[&Row],
) -> Result<(), tokio_postgres::Error> {
    let sql = format!(
        "COPY {}.logs ({COLUMNS}) FROM STDIN (FORMAT binary)",
        ident(schema)
    );
    let sink = client.copy_in(&sql).await?;
    let writer = BinaryCopyInWriter::new(sink, &TYPES);
    pin_mut!(writer);
    for row in rows {
        let r = &row.record;
        let data = RawJsonb(&r.data);
        let level = r.level.as_str();
        writer
            .as_mut()
            .write(&[
                &row.log_id,
                &row.ingest_date,
                &r.log_time,
                &level,
                &r.host,
                &r.application,
                &r.kasm_user_name,
                &r.message,
                &data,
            ])
            .await?;
    }
    writer.finish().await?;
    Ok(())
}

/// Storing one batch, resumable: when the connection fails part way, the ranges not yet
/// stored stay in the job, and [`StoreJob::run`] can continue on a new connection without
/// storing any row twice.
#[derive(Debug)]
pub struct StoreJob {
    work: Vec<std::ops::Range<usize>>,
    /// The range whose COPY was cut off by a lost connection: it may have committed (the
    /// connection died after COMMIT, before the reply) or not. Settled before anything else.
    in_doubt: Option<std::ops::Range<usize>>,
    pub out: Stored,
}

impl StoreJob {
    pub fn new(rows: usize) -> Self {
        StoreJob {
            work: std::iter::once(0..rows).collect(),
            in_doubt: None,
            out: Stored::default(),
        }
    }

    /// The state after a COPY of all `rows` was cut off by a lost connection (what [`run`]
    /// leaves behind on such an error); for tests of the retry, through
    /// [`crate::testing::store_job_after_lost_connection`].
    ///
    /// [`run`]: StoreJob::run
    pub(crate) fn after_lost_connection(rows: usize) -> Self {
        StoreJob {
            work: std::iter::once(0..rows).collect(),
            in_doubt: Some(0..rows),
            out: Stored::default(),
        }
    }

    /// Store what remains of `rows` (the same slice on every call), isolating refused rows.
    pub async fn run(
        &mut self,
        client: &Client,
        schema: &str,
        rows: &[Row],
    ) -> Result<(), tokio_postgres::Error> {
        if let Some(range) = self.in_doubt.take() {
            if committed(client, schema, &rows[range.start]).await? {
                // The COPY did commit: the range is stored; do not store it twice.
                debug_assert_eq!(self.work.last(), Some(&range));
                self.work.pop();
                self.count_stored(&rows[range]);
            }
        }
        while let Some(range) = self.work.pop() {
            if range.is_empty() {
                continue;
            }
            let slice: Vec<&Row> = rows[range.clone()].iter().collect();
            match copy_once(client, schema, &slice).await {
                Ok(()) => self.count_stored(&rows[range]),
                Err(e) if !crate::db::is_transient(&e) && !client.is_closed() => {
                    if range.len() == 1 {
                        let db = e.as_db_error().expect("checked above");
                        self.out
                            .refused
                            .push((range.start, db.message().to_string()));
                    } else {
                        let mid = range.start + range.len() / 2;
                        // Second half pushed first so the first half is tried first.
                        self.work.push(mid..range.end);
                        self.work.push(range.start..mid);
                    }
                }
                Err(e) => {
                    self.in_doubt = Some(range.clone());
                    self.work.push(range);
                    return Err(e);
                }
            }
        }
        self.out.refused.sort_by_key(|(i, _)| *i);
        Ok(())
    }

    fn count_stored(&mut self, rows: &[Row]) {
        self.out.stored += rows.len() as u64;
        self.out.stored_debug += rows
            .iter()
            .filter(|r| r.record.class() == Class::Debug)
            .count() as u64;
    }
}

/// Whether `row` is in `logs` (one COPY is all or nothing, so one row says whether its whole
/// COPY committed). Pruned to one partition by level and ingest_date, found there through the
/// BRIN index on ingest_date: a few hundred pages at most, no index on log_id needed.
async fn committed(
    client: &Client,
    schema: &str,
    row: &Row,
) -> Result<bool, tokio_postgres::Error> {
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM {}.logs WHERE levelname = $1 AND ingest_date = $2 AND log_id = $3)",
        ident(schema)
    );
    let level = row.record.level.as_str();
    let found = client
        .query_one(&sql, &[&level, &row.ingest_date, &row.log_id])
        .await?;
    Ok(found.get(0))
}
