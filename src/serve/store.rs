//! Making a batch of records from a request durable: route each by its retention class
//! (retention 0: to the SIEM sink when one is plugged in, else counted dropped), create missing
//! partitions, store the rest by binary COPY (`logs::copy::StoreJob`, poison rows isolated),
//! retrying a lost connection briefly without storing any row twice.
//!
//! It returns Ok only once every stored row is committed (each COPY commits on its own), so the
//! HTTP layer may answer 200. It never answers the client itself and never waits long: when the
//! database stays unreachable it returns a temporary error so the caller can say 503.

use super::spool::{Full, Spool};
use crate::config::RetentionConfig;
use crate::db::Pool;
use crate::error::{Error, Kind, Result};
use crate::logs::copy::Row;
use crate::logs::ingest::RecordSink;
use crate::logs::partition;
use crate::logs::record::{Class, Record};
use crate::logs::store::{Retries, Storer};
use chrono::Utc;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

pub struct Store {
    /// Partitions, COPY and retries (shared with `ingest`).
    pub storer: Storer,
    pub retention: RetentionConfig,
    /// Where retention-0 classes go; None: they are counted dropped.
    pub sink: Option<Arc<dyn RecordSink>>,
    /// Where rows go while the database is unreachable; None: the caller answers 503.
    pub spool: Option<Arc<Spool>>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Stored per class: [debug, logs].
    pub stored: [u64; 2],
    pub forwarded: [u64; 2],
    pub dropped: [u64; 2],
    /// Written to the local spool (database unreachable), loaded later.
    pub spooled: [u64; 2],
    /// Records the database refused: (index in the input, reason).
    pub refused: Vec<(usize, String)>,
}

impl Outcome {
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
        }
    }

    fn keeps(&self, class: Class) -> bool {
        !partition::window(&self.retention, class).is_zero()
    }

    /// Store (or forward) `records`; Ok means durable.
    pub async fn store(&self, records: Vec<Record>) -> Result<Outcome> {
        let mut out = Outcome::default();
        let now = Utc::now();
        let mut rows = Vec::with_capacity(records.len());
        let mut forward = Vec::new();
        let mut index = Vec::with_capacity(records.len());
        for (i, rec) in records.into_iter().enumerate() {
            let class = rec.class();
            if self.keeps(class) {
                index.push(i);
                rows.push(Row {
                    log_id: uuid::Uuid::new_v4(),
                    ingest_date: now,
                    record: rec,
                    origin: (0, i as u64),
                });
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
        let stored = match self.store_rows(&rows).await {
            Ok(s) => s,
            Err(e) if e.kind() == Kind::Temporary && self.spool.is_some() => {
                let spool = self.spool.as_ref().expect("checked");
                match tokio::task::block_in_place(|| spool.put(&rows)) {
                    Ok(Ok(())) => {
                        tracing::warn!(rows = rows.len(), error = %e, "database unavailable; rows spooled");
                        for row in &rows {
                            out.spooled[row.record.class() as usize] += 1;
                        }
                        return Ok(out);
                    }
                    Ok(Err(Full)) => {
                        return Err(Error::temporary(
                            "the database is unavailable and the spool is full",
                        ));
                    }
                    Err(w) => return Err(Error::temporary(format!("{e}; and {w}"))),
                }
            }
            Err(e) => return Err(e),
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
