//! The `forward` backfill as an operation: send records already stored in `logs` to the SIEM
//! (before switching a class's retention to 0), through the same durable [`Forwarder`].
//!
//! Streams one query ordered by `(ingest_date, log_id)`. Progress is kept in
//! `<spool_dir>/forward-state.json` per `(since, until)` range, written only after the records
//! are durable in the spool, so a killed run resumes where it stopped (duplicates possible,
//! loss not) and a later run of an open range sends only newer rows. Takes explicit inputs and
//! returns a [`BackfillReport`]; never sees the command line, never prints, never puts the token
//! in a log or an error.

use super::{FinishReport, ForwardMetrics, Forwarder};
use crate::config::SiemConfig;
use crate::db::Pool;
use crate::error::{Error, Kind, Result};
use crate::logs::record::{Level, Record};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Most records per spool submit.
const CHUNK_MAX: usize = 5000;
/// How long the end of a run waits for the SIEM to acknowledge what is still spooled.
const FINISH_WAIT: Duration = Duration::from_secs(300);
/// How long a full spool may stay full (the SIEM not draining it) before giving up.
const FULL_WAIT: Duration = Duration::from_secs(120);

/// What to send, from where, to which SIEM.
pub struct Backfill<'a> {
    pub pool: &'a Pool,
    /// The schema holding `logs`.
    pub schema: &'a str,
    pub siem: &'a SiemConfig,
    /// Records whose `ingest_date` is at or after this (None: from the first).
    pub since: Option<DateTime<Utc>>,
    /// Records whose `ingest_date` is before this (None: up to the last).
    pub until: Option<DateTime<Utc>>,
    /// Advanced to the number of records handed to the spool and cleared when the query ends
    /// (the caller passes a hidden bar when nobody watches).
    pub progress: indicatif::ProgressBar,
}

/// What a backfill did (the `--json` report of `kasm-db forward`).
#[derive(Debug, Clone, Serialize)]
pub struct BackfillReport {
    /// Acknowledged by the SIEM or its transport.
    pub forwarded: u64,
    /// Syslog over UDP: handed to the network, never acknowledged.
    pub sent: u64,
    pub read: u64,
    pub spooled: u64,
    pub dead_lettered: u64,
    pub duplicates: u64,
    pub sink: &'static str,
    /// Whether the sink acknowledges (false: syslog over UDP, counted in `sent`).
    #[serde(skip)]
    pub acknowledges: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct State {
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    last_ingest_date: Option<DateTime<Utc>>,
    last_log_id: Option<uuid::Uuid>,
    submitted: u64,
}

fn state_path(siem: &SiemConfig) -> PathBuf {
    siem.common.spool_dir.join("forward-state.json")
}

/// Where the backfill of `since..until` stands: from the start without a state file or with
/// one of another range; an error when a state file is there but cannot be read or parsed
/// (never "start over": that would send the whole range to the SIEM again).
fn load_state(
    path: &Path,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Result<State> {
    let fresh = State {
        since,
        until,
        last_ingest_date: None,
        last_log_id: None,
        submitted: 0,
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(fresh),
        Err(e) => {
            return Err(Error::failed(format!(
                "cannot read the backfill's state {}: {e}",
                path.display()
            )));
        }
    };
    let state = serde_json::from_slice::<State>(&bytes).map_err(|e| {
        Error::failed(format!(
            "the backfill's state {} is not readable ({e}): remove it to forward the whole \
             range again",
            path.display()
        ))
    })?;
    Ok(if state.since == since && state.until == until {
        state
    } else {
        fresh
    })
}

fn save_state(path: &Path, state: &State) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec(state).map_err(|e| Error::failed(e.to_string()))?;
    crate::private::create(&tmp, crate::private::FileMode::PRIVATE)
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, &text)?;
            f.sync_all()
        })
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| Error::failed(format!("cannot write {}: {e}", path.display())))
}

/// Submit, waiting (bounded) while the spool is full and the SIEM drains it.
async fn submit(fw: &Forwarder, records: &[Record]) -> Result<()> {
    let deadline = tokio::time::Instant::now() + FULL_WAIT;
    loop {
        match fw.submit(records).await {
            Err(e) if e.kind() == Kind::Temporary && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// Send the range's records not yet submitted by an earlier run of the same range, then wait
/// (bounded) for the SIEM to acknowledge what is spooled. On a failure, what was submitted stays
/// durable and the error says how much was acknowledged.
pub async fn backfill(b: Backfill<'_>) -> Result<BackfillReport> {
    let client = crate::db::get(b.pool).await?;
    let fw = Forwarder::start(b.siem, Arc::new(ForwardMetrics::default())).await?;
    let acknowledges = fw.acknowledges();
    match stream(&b, &client, &fw).await {
        Ok(read) => Ok(report(
            fw.finish(FINISH_WAIT).await?,
            read,
            b.siem,
            acknowledges,
        )),
        Err(e) => {
            // What was submitted is durable; give the SIEM a moment, then report the failure.
            let r = fw.finish(Duration::from_secs(10)).await?;
            Err(e.context(format!(
                "forward stopped after {} records were acknowledged ({} remain spooled)",
                r.acknowledged, r.spooled
            )))
        }
    }
}

async fn stream(b: &Backfill<'_>, client: &tokio_postgres::Client, fw: &Forwarder) -> Result<u64> {
    let sql = format!(
        "SELECT levelname, log_time, host, application, kasm_user_name, message, data::text, \
                ingest_date, log_id
           FROM {}.logs
          WHERE ($1::timestamptz IS NULL OR ingest_date >= $1)
            AND ($2::timestamptz IS NULL OR ingest_date < $2)
            AND ($3::timestamptz IS NULL OR (ingest_date, log_id) > ($3, $4::uuid))
          ORDER BY ingest_date, log_id",
        crate::db::ident(b.schema)
    );
    let stmt = client.prepare(&sql).await?;
    let path = state_path(b.siem);
    let mut state = load_state(&path, b.since, b.until)?;
    // Submits sized to the spool: a small spool fills gradually instead of refusing all.
    let chunk = (b.siem.common.spool_max_bytes / 4 / 1024).clamp(1, CHUNK_MAX as u64) as usize;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [
        &b.since,
        &b.until,
        &state.last_ingest_date,
        &state.last_log_id,
    ];
    // One ordered query, streamed (one sort, however many rows).
    let rows = client.query_raw(&stmt, params).await?;
    futures::pin_mut!(rows);
    let mut read = 0u64;
    let mut records = Vec::with_capacity(chunk);
    let mut last = None;
    loop {
        let row = rows.try_next().await?;
        if let Some(row) = &row {
            let level: String = row.try_get(0)?;
            records.push(Record {
                level: Level::parse(&level).unwrap_or(Level::Info),
                log_time: row.try_get(1)?,
                host: row.try_get(2)?,
                application: row.try_get(3)?,
                kasm_user_name: row.try_get(4)?,
                message: row.try_get(5)?,
                data: row.try_get(6)?,
            });
            last = Some((row.try_get(7)?, row.try_get(8)?));
        }
        if records.len() >= chunk || (row.is_none() && !records.is_empty()) {
            submit(fw, &records).await?;
            let (date, id) = last.take().expect("set with every record");
            state.last_ingest_date = Some(date);
            state.last_log_id = Some(id);
            state.submitted += records.len() as u64;
            save_state(&path, &state)?;
            read += records.len() as u64;
            b.progress.set_position(read);
            records.clear();
        }
        if row.is_none() {
            b.progress.finish_and_clear();
            return Ok(read);
        }
    }
}

fn report(r: FinishReport, read: u64, siem: &SiemConfig, acknowledges: bool) -> BackfillReport {
    let (forwarded, sent) = if acknowledges {
        (r.acknowledged, 0)
    } else {
        (0, r.acknowledged)
    };
    BackfillReport {
        forwarded,
        sent,
        read,
        spooled: r.spooled,
        dead_lettered: r.dead_lettered,
        duplicates: r.duplicates,
        sink: siem.sink.kind(),
        acknowledges,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_per_range_and_survives_a_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("forward-state.json");
        let t = Some("2026-11-24T00:00:00Z".parse::<DateTime<Utc>>().unwrap());
        let mut s = load_state(&path, t, None).unwrap();
        assert_eq!(s.submitted, 0);
        s.last_log_id = Some(uuid::Uuid::nil());
        s.submitted = 5;
        save_state(&path, &s).unwrap();
        assert_eq!(load_state(&path, t, None).unwrap(), s);
        // Another range starts from the beginning.
        assert_eq!(load_state(&path, None, None).unwrap().submitted, 0);
        // A state that cannot be parsed is an error, never "start over".
        std::fs::write(&path, b"{\"since\": tr").unwrap();
        let e = load_state(&path, t, None).unwrap_err().to_string();
        assert!(e.contains("forward-state.json"), "{e}");
    }
}
