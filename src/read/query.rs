//! The read side's queries against PostgreSQL: pages, the tail, one record and its context,
//! counts, the volume histogram, facets and the streamed export. The only I/O of `read`.
//!
//! Never writes, never holds a transaction open between calls (a follower or a slow export
//! holds no snapshot that keeps vacuum from its work, except the export's own statement), and
//! never holds more than one page or one batch of records in memory.

use super::cursor::Cursor;
use super::filter::{Field, Filter};
use super::sql::{self, Direction, Param, Query};
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

/// A stored record as the read side shows it (the contract's `logs --json` fields).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LogRecord {
    pub log_id: Uuid,
    pub cursor: String,
    pub ingest_date: DateTime<Utc>,
    pub log_time: Option<DateTime<Utc>>,
    pub levelname: String,
    pub host: Option<String>,
    pub application: Option<String>,
    pub kasm_user_name: Option<String>,
    pub message: Option<String>,
    pub data: serde_json::Value,
    #[serde(skip)]
    pub position: Cursor,
}

impl LogRecord {
    fn from_row(row: &tokio_postgres::Row) -> LogRecord {
        let position = Cursor {
            log_id: row.get(0),
            ingest_date: row.get(1),
            txid: row.get(9),
        };
        LogRecord {
            log_id: position.log_id,
            cursor: position.encode(),
            ingest_date: position.ingest_date,
            log_time: row.get(2),
            levelname: row.get(3),
            host: row.get(4),
            application: row.get(5),
            kasm_user_name: row.get(6),
            message: row.get(7),
            data: row.get(8),
            position,
        }
    }
}

fn bound(params: &[Param]) -> Vec<Box<dyn ToSql + Sync + Send>> {
    params
        .iter()
        .map(|p| -> Box<dyn ToSql + Sync + Send> {
            match p {
                Param::Text(t) => Box::new(t.clone()),
                Param::Texts(t) => Box::new(t.clone()),
                Param::Time(t) => Box::new(*t),
                Param::Int(i) => Box::new(*i),
                Param::Float(f) => Box::new(*f),
                Param::Uuid(u) => Box::new(*u),
            }
        })
        .collect()
}

/// The bound values as the client takes them.
fn refs(params: &[Box<dyn ToSql + Sync + Send>]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

async fn rows(client: &Client, q: &Query) -> Result<Vec<tokio_postgres::Row>> {
    let params = bound(&q.params);
    let refs = refs(&params);
    client
        .query(q.text.as_str(), &refs)
        .await
        .map_err(not_migrated)
}

/// A `logs` relation without the read side's column (or none at all) is named as such, not as
/// an SQL error.
fn not_migrated(e: tokio_postgres::Error) -> Error {
    use tokio_postgres::error::SqlState;
    match e.code() {
        Some(c) if *c == SqlState::UNDEFINED_TABLE || *c == SqlState::UNDEFINED_COLUMN => {
            Error::failed(format!(
                "{e}: kasm-db's `logs` relation is missing in this schema, or older than the read \
                 side (migration 6): run `kasm-db migrate` (or point --db/database.schema at \
                 kasm-db's database)"
            ))
        }
        _ => Error::from(e),
    }
}

async fn records(client: &Client, q: &Query) -> Result<Vec<LogRecord>> {
    Ok(rows(client, q)
        .await?
        .iter()
        .map(LogRecord::from_row)
        .collect())
}

/// The widths of the windows a page is looked for in, from its anchor outwards; after the
/// last, the rest of the store.
const WINDOWS_S: [i64; 5] = [600, 4_800, 38_400, 307_200, 2_457_600];

/// How to read one page.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub filter: Filter,
    pub limit: i64,
    /// `Older`: the newest `limit` records below `anchor` (or the newest of all), newest
    /// first. `Newer`: the oldest `limit` records above `anchor`, oldest first.
    pub direction: Direction,
    pub anchor: Option<Cursor>,
    /// Only records of transactions below this id (see [`horizon`]).
    pub horizon: Option<i64>,
}

/// One page in `req.direction`'s order. The records are looked for in widening windows from
/// the anchor (or `now`), each window only the slice of time the previous ones did not cover:
/// once the windows so far hold `limit` matching records they hold the page, since everything
/// outside them is further from the anchor; and no row is read twice, so a rare match costs
/// one scan of its range, not one per window.
pub async fn page(
    client: &Client,
    schema: &str,
    req: &PageRequest,
    now: DateTime<Utc>,
) -> Result<Vec<LogRecord>> {
    if req.limit <= 0 {
        return Ok(Vec::new());
    }
    let f = &req.filter;
    let start = match (req.direction, &req.anchor) {
        (_, Some(a)) => a.ingest_date,
        (Direction::Older, None) => f.until.unwrap_or(now).min(now),
        (Direction::Newer, None) => f.since.unwrap_or(now),
    };
    let mut found: Vec<LogRecord> = Vec::new();
    // The edge of the time covered so far (None: nothing covered yet).
    let mut covered: Option<DateTime<Utc>> = None;
    for w in WINDOWS_S
        .iter()
        .map(|s| Some(chrono::Duration::seconds(*s)))
        .chain([None])
    {
        let (lo, hi, last) = match (req.direction, w) {
            (Direction::Older, Some(w)) => {
                let lo = start - w;
                match f.since {
                    Some(s) if s >= lo => (None, covered, true),
                    _ => (Some(lo), covered, false),
                }
            }
            (Direction::Newer, Some(w)) => {
                let hi = start + w;
                match f.until {
                    Some(u) if u <= hi => (covered, None, true),
                    _ => (covered, Some(hi), false),
                }
            }
            (Direction::Older, None) => (None, covered, true),
            (Direction::Newer, None) => (covered, None, true),
        };
        let q = sql::page(
            schema,
            f,
            req.direction,
            req.anchor.as_ref(),
            lo,
            hi,
            req.horizon,
            req.limit - found.len() as i64,
        );
        found.extend(records(client, &q).await?);
        if last || found.len() as i64 >= req.limit {
            return Ok(found);
        }
        covered = match req.direction {
            Direction::Older => lo,
            Direction::Newer => hi,
        };
    }
    unreachable!("the last window is unbounded")
}

/// The oldest transaction id still running: every record written by a smaller one is final
/// (committed or never to be).
pub async fn horizon(client: &Client) -> Result<i64> {
    Ok(client.query_one(sql::HORIZON, &[]).await?.get(0))
}

/// The next records of the tail after `from`, at most `limit`, and the position to ask from
/// next time (past every record considered, even those the filter left out).
pub async fn tail(
    client: &Client,
    schema: &str,
    f: &Filter,
    from: &Cursor,
    limit: i64,
) -> Result<(Vec<LogRecord>, Cursor)> {
    let h = horizon(client).await?;
    let found = records(client, &sql::tail(schema, f, from, h, limit)).await?;
    let key = |c: &Cursor| (c.txid, c.ingest_date, c.log_id);
    let next = match found.last() {
        Some(r) if found.len() as i64 >= limit => r.position,
        last => {
            // Every final record below the horizon has been seen.
            let end = Cursor::tail_start(h);
            let seen = last.map(|r| r.position).unwrap_or(*from);
            if key(&end) > key(&seen) { end } else { seen }
        }
    };
    Ok((found, next))
}

/// The time a kasm-db log id carries (UUIDv7, made from the record's `ingest_date`).
pub fn id_time(id: &Uuid) -> Option<DateTime<Utc>> {
    if id.get_version_num() != 7 {
        return None;
    }
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    DateTime::from_timestamp(secs as i64, nanos)
}

/// One record by id (a lookup in its millisecond when the id is kasm-db's own UUIDv7, else a
/// scan of the relation).
pub async fn find(client: &Client, schema: &str, id: Uuid) -> Result<Option<LogRecord>> {
    if let Some(t) = id_time(&id) {
        let ms = DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t);
        let hit = records(client, &sql::by_id(schema, id, Some(ms))).await?;
        if let Some(r) = hit.into_iter().next() {
            return Ok(Some(r));
        }
    }
    Ok(records(client, &sql::by_id(schema, id, None))
        .await?
        .into_iter()
        .next())
}

/// A record and the `n` records before and after it that match `f` (oldest first on both
/// sides).
#[derive(Debug, Clone, Serialize)]
pub struct Context {
    pub before: Vec<LogRecord>,
    pub record: LogRecord,
    pub after: Vec<LogRecord>,
}

/// The context of `id`; `Ok(None)` when no such record is stored.
pub async fn around(
    client: &Client,
    schema: &str,
    f: &Filter,
    id: Uuid,
    n: i64,
    now: DateTime<Utc>,
) -> Result<Option<Context>> {
    let Some(record) = find(client, schema, id).await? else {
        return Ok(None);
    };
    let side = |direction| PageRequest {
        filter: f.clone(),
        limit: n,
        direction,
        anchor: Some(record.position),
        horizon: None,
    };
    let mut before = page(client, schema, &side(Direction::Older), now).await?;
    before.reverse();
    let after = page(client, schema, &side(Direction::Newer), now).await?;
    Ok(Some(Context {
        before,
        record,
        after,
    }))
}

/// Counts per value of `field` for `f`, largest first (`None`: records without the field).
pub async fn count_by(
    client: &Client,
    schema: &str,
    f: &Filter,
    field: Field,
) -> Result<Vec<(Option<String>, i64)>> {
    Ok(rows(client, &sql::count_by(schema, f, field))
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// One bucket of the volume histogram.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    pub counts: std::collections::BTreeMap<String, i64>,
}

/// Counts per bucket of `bucket_s` seconds and level for `f`, whose `since` must be set;
/// buckets without records are included (zero counts), so a chart's axis is even.
pub async fn volume(
    client: &Client,
    schema: &str,
    f: &Filter,
    bucket_s: i64,
    now: DateTime<Utc>,
) -> Result<Vec<Bucket>> {
    let since = f
        .since
        .ok_or_else(|| Error::usage("a volume histogram needs a start (since)"))?;
    let until = f.until.unwrap_or(now);
    let span = (until - since).num_seconds().max(0);
    if span / bucket_s > super::filter::MAX_BUCKETS {
        return Err(Error::usage(format!(
            "{} buckets of {bucket_s}s: at most {} (choose a wider bucket or a shorter range)",
            span / bucket_s,
            super::filter::MAX_BUCKETS
        )));
    }
    let found = rows(client, &sql::volume(schema, f, bucket_s)).await?;
    let align = |t: DateTime<Utc>| {
        let s = t.timestamp().div_euclid(bucket_s) * bucket_s;
        DateTime::from_timestamp(s, 0).unwrap_or(t)
    };
    let mut out: Vec<Bucket> = Vec::new();
    let mut at = align(since);
    let end = align(until);
    while at <= end {
        out.push(Bucket {
            start: at,
            counts: Default::default(),
        });
        at += chrono::Duration::seconds(bucket_s);
    }
    for r in &found {
        let start: DateTime<Utc> = r.get(0);
        let level: String = r.get(1);
        let n: i64 = r.get(2);
        let i = (start - align(since)).num_seconds().div_euclid(bucket_s);
        match usize::try_from(i).ok().and_then(|i| out.get_mut(i)) {
            Some(b) => *b.counts.entry(level).or_default() += n,
            // A record past `until` (no until given and written since `now`).
            None => out.push(Bucket {
                start,
                counts: [(level, n)].into_iter().collect(),
            }),
        }
    }
    Ok(out)
}

/// The values present for `f`, with counts.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct Facets {
    pub levels: std::collections::BTreeMap<String, i64>,
    pub hosts: std::collections::BTreeMap<String, i64>,
    pub applications: std::collections::BTreeMap<String, i64>,
    pub users: std::collections::BTreeMap<String, i64>,
}

/// How many values of each facet are kept (the most frequent).
pub const FACET_VALUES: usize = 50;

pub async fn facets(client: &Client, schema: &str, f: &Filter) -> Result<Facets> {
    let mut out = Facets::default();
    let mut taken = [0usize; 4];
    for r in rows(client, &sql::facets(schema, f)).await? {
        let which: i32 = r.get(0);
        let Some(value): Option<String> = r.get(1) else {
            continue;
        };
        let n: i64 = r.get(2);
        let (map, k) = match which {
            0 => (&mut out.levels, 0),
            1 => (&mut out.hosts, 1),
            2 => (&mut out.applications, 2),
            _ => (&mut out.users, 3),
        };
        if taken[k] < FACET_VALUES {
            taken[k] += 1;
            map.insert(value, n);
        }
    }
    Ok(out)
}

/// Records per batch of a streamed export.
pub const EXPORT_BATCH: i32 = 1000;

/// Every record of `f`, oldest first, sent to `to` a batch at a time through a portal (never
/// the whole result in memory: the channel is bounded, so a slow reader slows the query). A
/// reader that goes away stops the export (an error).
pub async fn export(
    client: &mut Client,
    schema: &str,
    f: &Filter,
    to: &tokio::sync::mpsc::Sender<Result<Vec<LogRecord>, String>>,
) -> Result<u64> {
    let q = sql::export(schema, f);
    let params = bound(&q.params);
    let refs = refs(&params);
    let tx = client
        .build_transaction()
        .read_only(true)
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await?;
    let portal = tx
        .bind(q.text.as_str(), &refs)
        .await
        .map_err(not_migrated)?;
    let mut n = 0u64;
    loop {
        let batch = tx.query_portal(&portal, EXPORT_BATCH).await?;
        if batch.is_empty() {
            break;
        }
        let done = (batch.len() as i32) < EXPORT_BATCH;
        n += batch.len() as u64;
        to.send(Ok(batch.iter().map(LogRecord::from_row).collect()))
            .await
            .map_err(|_| Error::failed("the export's reader went away"))?;
        if done {
            break;
        }
    }
    tx.commit().await?;
    Ok(n)
}
