//! Storing rows into `logs` by binary COPY (rows encoded here, sent in large chunks).
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
use futures::{SinkExt, pin_mut};
use tokio_postgres::Client;

/// A record with what kasm-db adds to it when storing.
#[derive(Debug, Clone)]
pub struct Row {
    pub log_id: uuid::Uuid,
    pub ingest_date: DateTime<Utc>,
    pub record: Record,
    /// Where the row came from, for reporting a refusal (source index, line number).
    pub origin: (u32, u64),
}

impl Row {
    /// A row received at `ingest_date`. Its id is a UUIDv7 carrying that time to the
    /// millisecond, so the read side finds a record by id in one millisecond of one partition
    /// (`read::query::find`) without an index on `log_id`.
    pub fn new(ingest_date: DateTime<Utc>, record: Record, origin: (u32, u64)) -> Row {
        Row {
            log_id: log_id_at(ingest_date),
            ingest_date,
            record,
            origin,
        }
    }
}

/// A new log id for a record received at `t` (UUIDv7: `t`'s milliseconds, then random bits).
pub fn log_id_at(t: DateTime<Utc>) -> uuid::Uuid {
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        t.timestamp().max(0) as u64,
        t.timestamp_subsec_nanos(),
    );
    uuid::Uuid::new_v7(ts)
}

/// The outcome of storing a batch.
#[derive(Debug, Default)]
pub struct Stored {
    pub stored: u64,
    pub stored_debug: u64,
    /// Rows the server refused: (index in the batch, reason).
    pub refused: Vec<(usize, String)>,
}

const COLUMNS: &str =
    "log_id, ingest_date, log_time, levelname, host, application, kasm_user_name, message, data";

/// The encoded rows go to the connection in chunks of about this size. tokio-postgres's
/// `BinaryCopyInWriter` hands over every 4 KiB, each a message to the connection task and a
/// wake-up of it: 56k futex calls per 300k records, a third of ingest's client CPU
/// (BENCHMARKS.md, issue 15).
const COPY_CHUNK: usize = 256 * 1024;

/// PostgreSQL's epoch (2000-01-01 UTC) in Unix microseconds.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The binary COPY header: signature, flags, header extension length.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// One row in PostgreSQL's binary COPY format, in [`COLUMNS`]' order: uuid, timestamptz
/// (microseconds since 2000-01-01), text as UTF-8, jsonb as version byte 1 and the JSON text.
/// Pure; the server checks each value (a time outside its range refuses the row).
fn encode_row(buf: &mut bytes::BytesMut, row: &Row) {
    fn field(buf: &mut bytes::BytesMut, bytes: &[u8]) {
        buf.put_i32(bytes.len() as i32);
        buf.put_slice(bytes);
    }
    fn text(buf: &mut bytes::BytesMut, value: &Option<String>) {
        match value {
            Some(s) => field(buf, s.as_bytes()),
            None => buf.put_i32(-1),
        }
    }
    fn time(buf: &mut bytes::BytesMut, t: &DateTime<Utc>) {
        buf.put_i32(8);
        buf.put_i64(t.timestamp_micros().saturating_sub(PG_EPOCH_MICROS));
    }
    let r = &row.record;
    buf.put_i16(9);
    field(buf, row.log_id.as_bytes());
    time(buf, &row.ingest_date);
    match &r.log_time {
        Some(t) => time(buf, t),
        None => buf.put_i32(-1),
    }
    field(buf, r.level.as_str().as_bytes());
    text(buf, &r.host);
    text(buf, &r.application);
    text(buf, &r.kasm_user_name);
    text(buf, &r.message);
    buf.put_i32(r.data.len() as i32 + 1);
    buf.put_u8(1);
    buf.put_slice(r.data.as_bytes());
}

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
    let sink = client.copy_in::<_, bytes::Bytes>(&sql).await?;
    pin_mut!(sink);
    let mut buf = bytes::BytesMut::with_capacity(COPY_CHUNK * 2);
    buf.put_slice(HEADER);
    for row in rows {
        encode_row(&mut buf, row);
        if buf.len() >= COPY_CHUNK {
            sink.send(buf.split().freeze()).await?;
        }
    }
    buf.put_i16(-1);
    sink.send(buf.split().freeze()).await?;
    sink.finish().await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;

    fn row(log_time: Option<&str>) -> Row {
        let mut record = super::super::record::parse_str(
            r#"{"levelname":"WARNING","host":"kasm-agent-1","message":"é ✓","x":1}"#,
        )
        .unwrap();
        record.log_time = log_time.map(|t| t.parse().unwrap());
        Row {
            log_id: uuid::Uuid::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10),
            ingest_date: "2000-01-01T00:00:01.000002Z".parse().unwrap(),
            record,
            origin: (0, 0),
        }
    }

    /// Field `i` of an encoded row: None for NULL.
    fn fields(mut b: &[u8]) -> Vec<Option<Vec<u8>>> {
        let n = b.get_i16();
        (0..n)
            .map(|_| {
                let len = b.get_i32();
                (len >= 0).then(|| {
                    let v = b[..len as usize].to_vec();
                    b.advance(len as usize);
                    v
                })
            })
            .collect()
    }

    #[test]
    fn rows_are_encoded_in_binary_copy_format() {
        let mut buf = bytes::BytesMut::new();
        encode_row(&mut buf, &row(None));
        let f = fields(&buf);
        assert_eq!(f.len(), 9);
        assert_eq!(f[0].as_deref(), Some(&(1u8..=16).collect::<Vec<_>>()[..]));
        // Microseconds since 2000-01-01 UTC, big-endian.
        assert_eq!(f[1].as_deref(), Some(&1_000_002i64.to_be_bytes()[..]));
        assert_eq!(f[2], None, "no log_time is NULL");
        assert_eq!(f[3].as_deref(), Some(&b"WARNING"[..]));
        assert_eq!(f[4].as_deref(), Some(&b"kasm-agent-1"[..]));
        assert_eq!(f[5], None);
        assert_eq!(f[6], None);
        assert_eq!(f[7].as_deref(), Some("é ✓".as_bytes()));
        let data = f[8].as_deref().unwrap();
        assert_eq!(data[0], 1, "jsonb version byte");
        assert_eq!(&data[1..], row(None).record.data.as_bytes());
    }

    #[test]
    fn times_before_2000_are_negative() {
        let mut buf = bytes::BytesMut::new();
        encode_row(&mut buf, &row(Some("1999-12-31T23:59:59Z")));
        let f = fields(&buf);
        assert_eq!(f[2].as_deref(), Some(&(-1_000_000i64).to_be_bytes()[..]));
    }
}
