//! Making a batch of records from a request durable: route each by its retention class
//! (retention 0: to the SIEM sink when one is plugged in, else counted dropped), create missing
//! partitions, store the rest through `logs::store::Storer` (binary COPY, poison rows isolated),
//! retrying a lost connection briefly without storing any row twice.
//!
//! It returns Ok only once every stored row is committed (each COPY commits on its own) or
//! fsynced in the spool, so the HTTP layer may answer 200. It never answers the client itself and
//! never waits long: when the database stays unreachable it spools the rows (with a spool) or
//! returns a temporary error so the caller can say 503. Until `serve`'s bootstrap has made the
//! schema current (`ready`), it does not touch the database at all: rows go to the spool or the
//! caller says 503.

use super::spool::{Full, Spool};
use crate::config::RetentionConfig;
use crate::db::Pool;
use crate::error::{Error, Kind, Result};
use crate::logs::copy::Row;
use crate::logs::ingest::RecordSink;
use crate::logs::partition_plan;
use crate::logs::record::{Class, Record};
use crate::logs::store::{Retries, Storer};
use chrono::Utc;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub struct Store {
    /// Partitions, COPY and retries (shared with `ingest`).
    pub storer: Storer,
    pub retention: RetentionConfig,
    /// Where retention-0 classes go; None: they are counted dropped.
    pub sink: Option<Arc<dyn RecordSink>>,
    /// Where rows go while the database is unreachable; None: the caller answers 503.
    pub spool: Option<Arc<Spool>>,
    /// True once the schema is migrated and the partitions premade (`bootstrap.rs`).
    ready: watch::Receiver<bool>,
    /// Keeps "rows spooled" to a line per interval while the database is away.
    spool_log: super::throttle::Throttle,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StoreReport {
    /// Stored per class: [debug, logs].
    pub stored: [u64; 2],
    pub forwarded: [u64; 2],
    pub dropped: [u64; 2],
    /// Written to the local spool (database unreachable), loaded later.
    pub spooled: [u64; 2],
    /// Records the database refused: (index in the input, reason).
    pub refused: Vec<(usize, String)>,
}

impl StoreReport {
    pub fn accepted(&self) -> u64 {
        (0..2)
            .map(|i| self.stored[i] + self.forwarded[i] + self.dropped[i] + self.spooled[i])
            .sum()
    }
}

/// Connection attempts for one batch before answering "unavailable".
const ATTEMPTS: u32 = 4;

impl Store {
    pub fn new(
        pool: Pool,
        schema: String,
        retention: RetentionConfig,
        sink: Option<Arc<dyn RecordSink>>,
        spool: Option<Arc<Spool>>,
        ready: watch::Receiver<bool>,
    ) -> Self {
        let retries = Retries {
            attempts: ATTEMPTS,
            first_wait: Duration::from_millis(200),
        };
        Store {
            storer: Storer::new(pool, schema, retries),
            retention,
            sink,
            spool,
            ready,
            spool_log: Default::default(),
        }
    }

    /// Whether the database was brought up (it may still be down right now).
    pub fn ready(&self) -> bool {
        *self.ready.borrow()
    }

    fn keeps(&self, class: Class) -> bool {
        !partition_plan::window(&self.retention, class).is_zero()
    }

    /// Store (or forward) `records`; Ok means durable.
    pub async fn store(&self, records: Vec<Record>) -> Result<StoreReport> {
        let mut out = StoreReport::default();
        let now = Utc::now();
        let mut rows = Vec::with_capacity(records.len());
        let mut forward = Vec::new();
        let mut index = Vec::with_capacity(records.len());
        for (i, rec) in records.into_iter().enumerate() {
            let class = rec.class();
            if self.keeps(class) {
                index.push(i);
                rows.push(Row::new(now, rec, (0, i as u64)));
            } else if self.sink.is_some() {
                forward.push(rec);
            } else {
                out.dropped[class as usize] += 1;
            }
        }
        if let Some(sink) = &self.sink {
            if !forward.is_empty() {
                sink.submit(&forward).await?;
                for r in &forward {
                    out.forwarded[r.class() as usize] += 1;
                }
            }
        }
        if rows.is_empty() {
            return Ok(out);
        }
        if !self.ready() {
            return match &self.spool {
                Some(spool) => self.spool_rows(spool, &rows, out, "the database is not ready yet"),
                None => Err(Error::temporary(
                    "the database is not ready yet (serve is waiting for it)",
                )),
            };
        }
        let stored = match (self.store_rows(&rows).await, &self.spool) {
            (Ok(s), _) => s,
            (Err(e), Some(spool)) if e.kind() == Kind::Temporary => {
                return self.spool_rows(spool, &rows, out, &e.to_string());
            }
            (Err(e), _) => return Err(e),
        };
        let refused: HashSet<usize> = stored.refused.iter().map(|(i, _)| *i).collect();
        for (i, row) in rows.iter().enumerate() {
            if !refused.contains(&i) {
                out.stored[row.record.class() as usize] += 1;
            }
        }
        out.refused = stored
            .refused
            .into_iter()
            .map(|(i, reason)| (index[i], reason))
            .collect();
        Ok(out)
    }

    /// Durably write `rows` to the spool instead of the database (`why` it is not the database).
    fn spool_rows(
        &self,
        spool: &Spool,
        rows: &[Row],
        mut out: StoreReport,
        why: &str,
    ) -> Result<StoreReport> {
        match tokio::task::block_in_place(|| spool.put(rows)) {
            Ok(Ok(())) => {
                if let Some(also) = self.spool_log.allow() {
                    tracing::warn!(
                        rows = rows.len(),
                        earlier_requests_not_logged = also,
                        reason = why,
                        "rows spooled (one line per 30 s while this lasts)"
                    );
                }
                for row in rows {
                    out.spooled[row.record.class() as usize] += 1;
                }
                Ok(out)
            }
            Ok(Err(Full)) => Err(Error::temporary(format!("{why}, and the spool is full"))),
            Err(w) => Err(Error::temporary(format!("{why}; and {w}"))),
        }
    }

    async fn store_rows(&self, rows: &[Row]) -> Result<crate::logs::copy::Stored> {
        self.storer.store(rows).await.map_err(|(_, e)| {
            if e.kind() == Kind::Temporary {
                e
            } else {
                e.context("storing logs failed")
            }
        })
    }
}
