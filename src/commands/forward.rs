//! `kasm-db forward [--since T] [--until T]`: send records already stored in `logs` to the SIEM
//! (a backfill before switching a class's retention to 0), through the same durable Forwarder.
//!
//! Streams one query ordered by `(ingest_date, log_id)`. Progress is kept in
//! `<spool_dir>/forward-state.json` per `(since, until)` range, written only after the records
//! are durable in the spool, so a killed run resumes where it stopped (duplicates possible,
//! loss not) and a later run of an open range sends only newer rows. Must never print the token.

use super::Ctx;
use crate::cli::ForwardArgs;
use crate::config::SiemConfig;
use crate::error::{Error, Kind, Result};
use crate::forward::{FinishReport, ForwardMetrics, Forwarder};
use crate::logs::record::{Level, Record};
use crate::output::Outcome;
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct State {
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    last_ingest_date: Option<DateTime<Utc>>,
    last_log_id: Option<uuid::Uuid>,
    submitted: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    /// Acknowledged by the SIEM or its transport.
    forwarded: u64,
    /// Syslog over UDP: handed to the network, never acknowledged.
    sent: u64,
    read: u64,
    spooled: u64,
    dead_lettered: u64,
    duplicates: u64,
    sink: &'static str,
}

fn parse_time(flag: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v.trim())
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| Error::usage(format!("{flag} {v:?} is not an RFC 3339 time: {e}")))
        })
        .transpose()
}

fn state_path(siem: &SiemConfig) -> PathBuf {
    siem.common.spool_dir.join("forward-state.json")
}

fn load_state(path: &Path, since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> State {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<State>(&b).ok())
        .filter(|s| s.since == since && s.until == until)
        .unwrap_or(State {
            since,
            until,
            last_ingest_date: None,
            last_log_id: None,
            submitted: 0,
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

pub async fn forward(ctx: &Ctx, args: &ForwardArgs) -> Result<Outcome> {
    let siem = ctx.config.siem.as_ref().ok_or_else(|| {
        Error::usage(
            "no SIEM is configured: add a [siem] section to the config file (kind = \"splunk-hec\" | \
             \"syslog\" | \"http\", url, token, spool_dir) or set KASM_DB_SIEM_KIND, \
             KASM_DB_SIEM_URL and KASM_DB_SIEM_TOKEN",
        )
    })?;
    let since = parse_time("--since", args.since.as_deref())?;
    let until = parse_time("--until", args.until.as_deref())?;
    if let (Some(s), Some(u)) = (since, until) {
        if s >= u {
            return Err(Error::usage("--since must be before --until"));
        }
    }
    let pool = ctx.pool(1).await?;
    let client = crate::db::get(&pool).await?;
    let fw = Forwarder::start(siem, Arc::new(ForwardMetrics::default())).await?;
    let acknowledges = fw.acknowledges();
    match stream(ctx, &client, siem, &fw, since, until).await {
        Ok(read) => finish(fw.finish(FINISH_WAIT).await?, read, siem, acknowledges),
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

async fn stream(
    ctx: &Ctx,
    client: &tokio_postgres::Client,
    siem: &SiemConfig,
    fw: &Forwarder,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Result<u64> {
    let sql = format!(
        "SELECT levelname, log_time, host, application, kasm_user_name, message, data::text, \
                ingest_date, log_id
           FROM {}.logs
          WHERE ($1::timestamptz IS NULL OR ingest_date >= $1)
            AND ($2::timestamptz IS NULL OR ingest_date < $2)
            AND ($3::timestamptz IS NULL OR (ingest_date, log_id) > ($3, $4::uuid))
          ORDER BY ingest_date, log_id",
        crate::db::ident(&ctx.config.database.schema)
    );
    let stmt = client.prepare(&sql).await?;
    let path = state_path(siem);
    let mut state = load_state(&path, since, until);
    // Submits sized to the spool: a small spool fills gradually instead of refusing all.
    let chunk = (siem.common.spool_max_bytes / 4 / 1024).clamp(1, CHUNK_MAX as u64) as usize;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
        [&since, &until, &state.last_ingest_date, &state.last_log_id];
    // One ordered query, streamed (one sort, however many rows).
    let rows = client.query_raw(&stmt, params).await?;
    futures::pin_mut!(rows);
    let mut read = 0u64;
    // A spinner when a person is watching (stderr is a terminal); nothing under cron.
    let bar = if ctx.interactive {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "forward {spinner} {pos} records handed to the spool ({per_sec})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
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
            bar.set_position(read);
            records.clear();
        }
        if row.is_none() {
            bar.finish_and_clear();
            return Ok(read);
        }
    }
}

fn finish(r: FinishReport, read: u64, siem: &SiemConfig, acknowledges: bool) -> Result<Outcome> {
    if r.spooled > 0 {
        let (done, not_yet) = if acknowledges {
            (
                format!("the SIEM acknowledged {} records", r.acknowledged),
                "acknowledged",
            )
        } else {
            (
                format!("{} records were sent over UDP", r.acknowledged),
                "sent",
            )
        };
        return Err(Error::temporary(format!(
            "{done}; {} more are durably spooled in {} but not yet {not_yet}; run `kasm-db \
             forward` again with the same range to deliver them",
            r.spooled,
            siem.common.spool_dir.display(),
        )));
    }
    let (forwarded, sent) = if acknowledges {
        (r.acknowledged, 0)
    } else {
        (0, r.acknowledged)
    };
    let report = Report {
        forwarded,
        sent,
        read,
        spooled: r.spooled,
        dead_lettered: r.dead_lettered,
        duplicates: r.duplicates,
        sink: siem.sink.kind(),
    };
    let mut text = if acknowledges {
        format!(
            "forwarded {} records to the {} SIEM ({} read from the database)",
            report.forwarded, report.sink, report.read
        )
    } else {
        format!(
            "sent {} records to the syslog SIEM over UDP ({} read from the database); UDP \
             acknowledges nothing: a receiver under load loses datagrams silently",
            report.sent, report.read
        )
    };
    if r.dead_lettered > 0 {
        text.push_str(&format!(
            "; {} refused by the SIEM, kept with the reason in {}",
            r.dead_lettered,
            siem.common.spool_dir.join("dead-letters.ndjson").display()
        ));
    }
    if r.duplicates > 0 {
        text.push_str(&format!("; {} may have arrived twice", r.duplicates));
    }
    let outcome = Outcome::new(&report, text);
    // Records the SIEM refused are a failed job (exit 1), though nothing is lost.
    Ok(if r.dead_lettered > 0 {
        outcome.failed_check()
    } else {
        outcome
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_per_range_and_survives_a_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("forward-state.json");
        let t = parse_time("--since", Some("2026-11-24T00:00:00Z")).unwrap();
        let mut s = load_state(&path, t, None);
        assert_eq!(s.submitted, 0);
        s.last_log_id = Some(uuid::Uuid::nil());
        s.submitted = 5;
        save_state(&path, &s).unwrap();
        assert_eq!(load_state(&path, t, None), s);
        // Another range starts from the beginning.
        assert_eq!(load_state(&path, None, None).submitted, 0);
        let e = parse_time("--until", Some("yesterday")).unwrap_err();
        assert_eq!(e.kind(), Kind::Usage);
    }
}
