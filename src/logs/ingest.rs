//! The ingest pipeline: a parser thread reads and parses lines while the async side stores the
//! previous batch by COPY (the server parses jsonb on the other core), with bounded memory
//! (a small bounded channel of batches).
//!
//! Routing: a record whose class has retention 0 is never written to the database; it goes to
//! the SIEM sink when one is given, else it is counted as `dropped`. With `forward_all`, every
//! record goes to both. Every line ends up counted exactly once as stored, forwarded, dropped
//! or rejected; nothing is lost silently. A broken connection is retried on a new one without
//! storing any row twice.

use super::copy::{Row, Stored};
use super::partition_plan;
use super::reader::{Line, LineReader, Source};
use super::record::{self, Class, Record, Reject};
use super::store::{Retries, Storer};
use crate::config::RetentionConfig;
use crate::db::Pool;
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Where records of forwarded classes go (the SIEM forwarder implements this).
pub trait RecordSink: Send + Sync {
    /// Durably accept `records` (acknowledged by the SIEM or spooled) before returning Ok.
    fn submit<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<()>>;
}

#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub schema: String,
    pub retention: RetentionConfig,
    pub max_line_bytes: usize,
    pub batch_rows: usize,
    /// Use this as every record's ingest_date instead of the time of reading (replaying archives).
    pub received_at: Option<DateTime<Utc>>,
    /// Forward every record, not only the classes with retention 0.
    pub forward_all: bool,
    /// Concurrent COPY streams (the server parses jsonb on one core per stream).
    pub parallel: usize,
    /// Bytes read from the inputs so far (for a progress bar); None: not counted.
    pub bytes_read: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

/// The `--json` summary of the contract, plus details.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    /// Non-blank lines read.
    pub read: u64,
    /// Rows stored in the database (both classes).
    pub stored: u64,
    /// Of which DEBUG.
    pub stored_debug: u64,
    /// Records accepted by the SIEM sink (acknowledged or durably spooled). Syslog over UDP
    /// acknowledges nothing: its records are counted in `sent` instead.
    pub forwarded: u64,
    /// Records handed to a SIEM that cannot acknowledge them (syslog over UDP): sent, or
    /// durably spooled to be sent; a receiver under load may have lost some.
    pub sent: u64,
    /// Records of a retention-0 class with no SIEM configured.
    pub dropped: u64,
    pub rejected: u64,
    pub duration_s: f64,
    /// With a SIEM: records the SIEM acknowledged by the time ingest returned (records replayed
    /// from an earlier run's spool included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded_acknowledged: Option<u64>,
    /// With a SIEM: records durably spooled, not yet acknowledged; sent by the next run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded_spooled: Option<u64>,
    /// With syslog over UDP: records still durably spooled, to be sent by the next run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_spooled: Option<u64>,
    /// With a SIEM: records it refused for good (kept in the spool's dead-letter file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_lettered: Option<u64>,
}

/// One rejected line, as written to `--rejects`.
#[derive(Debug, Clone, Serialize)]
pub struct RejectEntry {
    pub source: String,
    pub line: u64,
    pub reason: String,
    /// The line (lossy UTF-8; only the first KiB of an over-long line).
    pub text: String,
}

/// What the parser thread hands over.
#[derive(Default)]
struct Chunk {
    rows: Vec<Row>,
    forward: Vec<Record>,
    rejects: Vec<RejectEntry>,
    read: u64,
    dropped: u64,
    /// An input error ends the run after this chunk is stored.
    error: Option<String>,
}

/// Ingest `sources` in order. `on_reject` sees every rejected line as it is found.
pub async fn ingest(
    pool: &Pool,
    sources: Vec<Source>,
    opts: &IngestOptions,
    sink: Option<&dyn RecordSink>,
    on_reject: &mut (dyn FnMut(&RejectEntry) -> Result<()> + Send),
) -> Result<Summary> {
    let started = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(opts.parallel.max(1));
    let names: Vec<String> = sources.iter().map(Source::name).collect();
    let parse_opts = opts.clone();
    let has_sink = sink.is_some();
    let parser = std::thread::Builder::new()
        .name("kasm-db-parse".into())
        .spawn(move || parse_all(sources, &parse_opts, has_sink, &tx))
        .map_err(|e| Error::failed(format!("cannot start the parser thread: {e}")))?;

    let mut summary = Summary::default();
    let storer = Storer::new(
        pool.clone(),
        opts.schema.clone(),
        Retries {
            attempts: 6,
            first_wait: Duration::from_millis(500),
        },
    );
    let mut input_error = None;
    let mut in_flight = FuturesUnordered::new();
    let result: Result<()> = async {
        while let Some(mut chunk) = rx.recv().await {
            summary.read += chunk.read;
            summary.dropped += chunk.dropped;
            for r in &chunk.rejects {
                summary.rejected += 1;
                on_reject(r)?;
            }
            if !chunk.forward.is_empty() {
                let sink = sink.expect("records are routed to forwarding only when a sink exists");
                sink.submit(&chunk.forward).await?;
                summary.forwarded += chunk.forward.len() as u64;
            }
            if let Some(e) = chunk.error.take() {
                input_error = Some(e);
            }
            if !chunk.rows.is_empty() {
                let rows = std::mem::take(&mut chunk.rows);
                let storer = &storer;
                in_flight.push(async move {
                    let r = storer.store(&rows).await;
                    (rows, r)
                });
                // Keep `parallel` COPY streams busy: the server parses jsonb on every core.
                while in_flight.len() >= opts.parallel.max(1) {
                    let done = in_flight.next().await.expect("non-empty");
                    account(done, &names, &mut summary, on_reject)?;
                }
            }
        }
        while let Some(done) = in_flight.next().await {
            account(done, &names, &mut summary, on_reject)?;
        }
        Ok(())
    }
    .await;
    // Stop the parser if we bailed out early: dropping the receiver ends its sends.
    drop(rx);
    let _ = parser.join();
    result?;
    summary.duration_s = started.elapsed().as_secs_f64();
    if let Some(e) = input_error {
        return Err(Error::failed(format!(
            "{e} (before that: {} lines read, {} stored, {} rejected)",
            summary.read, summary.stored, summary.rejected
        )));
    }
    Ok(summary)
}

type StoreResult = (Vec<Row>, std::result::Result<Stored, (Stored, Error)>);

/// Add a finished batch to the summary and report the rows the server refused.
fn account(
    (rows, result): StoreResult,
    names: &[String],
    summary: &mut Summary,
    on_reject: &mut (dyn FnMut(&RejectEntry) -> Result<()> + Send),
) -> Result<()> {
    let (stored, error) = match result {
        Ok(s) => (s, None),
        Err((s, e)) => (s, Some(e)),
    };
    summary.stored += stored.stored;
    summary.stored_debug += stored.stored_debug;
    if let Some(e) = error {
        return Err(e.context(format!(
            "storing logs failed after {} rows were stored",
            summary.stored
        )));
    }
    for (i, reason) in stored.refused {
        let row = &rows[i];
        summary.rejected += 1;
        on_reject(&RejectEntry {
            source: names[row.origin.0 as usize].clone(),
            line: row.origin.1,
            reason: Reject::ServerRefused(reason).to_string(),
            text: row.record.data.clone(),
        })?;
    }
    Ok(())
}

/// The parser thread: read every source, parse, route, and send chunks.
fn parse_all(
    sources: Vec<Source>,
    opts: &IngestOptions,
    has_sink: bool,
    tx: &tokio::sync::mpsc::Sender<Chunk>,
) {
    let mut chunk = Chunk::default();
    let route = Routing::new(&opts.retention, opts.forward_all, has_sink);
    for (index, source) in sources.iter().enumerate() {
        let name = source.name();
        let opened = match &opts.bytes_read {
            Some(counter) => source.open_counted(counter.clone()),
            None => source.open(),
        };
        let reader = match opened {
            Ok(r) => r,
            Err(e) => {
                chunk.error = Some(format!("cannot read {name}: {e}"));
                let _ = tx.blocking_send(chunk);
                return;
            }
        };
        let mut lines = LineReader::new(reader, opts.max_line_bytes);
        loop {
            let (line_no, line) = match lines.next_line() {
                Ok(Some(l)) => l,
                Ok(None) => break,
                Err(e) => {
                    chunk.error = Some(format!(
                        "cannot read {name} after line {}: {e}",
                        lines.line_no
                    ));
                    let _ = tx.blocking_send(chunk);
                    return;
                }
            };
            chunk.read += 1;
            let parsed = match line {
                Line::TooLong { len, head } => Err((
                    Reject::TooLong {
                        len,
                        limit: opts.max_line_bytes,
                    },
                    head,
                )),
                Line::Text(text) => {
                    record::parse_line(text, opts.max_line_bytes).map_err(|e| (e, text))
                }
            };
            match parsed {
                Err((reason, text)) => chunk.rejects.push(RejectEntry {
                    source: name.clone(),
                    line: line_no,
                    reason: reason.to_string(),
                    text: String::from_utf8_lossy(text).into_owned(),
                }),
                Ok(rec) => {
                    let (store, forward) = route.of(rec.class());
                    if forward {
                        chunk.forward.push(rec.clone());
                    } else if !store {
                        chunk.dropped += 1;
                    }
                    if store {
                        chunk.rows.push(Row::new(
                            opts.received_at.unwrap_or_else(Utc::now),
                            rec,
                            (index as u32, line_no),
                        ));
                    }
                }
            }
            if chunk.rows.len() >= opts.batch_rows
                || chunk.forward.len() >= opts.batch_rows
                || chunk.rejects.len() >= 10_000
            {
                let full = std::mem::take(&mut chunk);
                if tx.blocking_send(full).is_err() {
                    return; // the consumer stopped (it failed); it reports why
                }
            }
        }
    }
    let _ = tx.blocking_send(chunk);
}

/// Per class: store in the database? forward to the SIEM?
struct Routing {
    store: [bool; 2],
    forward: [bool; 2],
}

impl Routing {
    fn new(retention: &RetentionConfig, forward_all: bool, has_sink: bool) -> Self {
        let keep = |c: Class| !partition_plan::window(retention, c).is_zero();
        let store = [keep(Class::Debug), keep(Class::Logs)];
        let forward = [
            has_sink && (forward_all || !store[0]),
            has_sink && (forward_all || !store[1]),
        ];
        Routing { store, forward }
    }

    fn of(&self, class: Class) -> (bool, bool) {
        let i = class as usize;
        (self.store[i], self.forward[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Window;

    #[test]
    fn routing_follows_retention_and_sink() {
        let r = RetentionConfig {
            debug: Window::ZERO,
            logs: Window::from_secs(3600),
            max_bytes: None,
        };
        let no_sink = Routing::new(&r, false, false);
        assert_eq!(no_sink.of(Class::Debug), (false, false)); // dropped
        assert_eq!(no_sink.of(Class::Logs), (true, false));
        let sink = Routing::new(&r, false, true);
        assert_eq!(sink.of(Class::Debug), (false, true));
        assert_eq!(sink.of(Class::Logs), (true, false));
        let all = Routing::new(&r, true, true);
        assert_eq!(all.of(Class::Logs), (true, true));
    }
}
