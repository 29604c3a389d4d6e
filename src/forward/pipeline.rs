//! The delivery loop: reads batches from the spool (bounded by events, bytes and time), hands
//! them to the sink, and acts on the [`Delivery`]: commit what the SIEM acknowledged, dead-letter
//! what it refuses for good (with the reason), retry the rest with jittered exponential backoff.
//! Must never commit a record the SIEM has not acknowledged or dead-lettered, nor log a record's
//! content or a token.

use super::backoff::Backoff;
use super::delivery::Delivery;
use super::metrics::ForwardMetrics;
use super::sink::Sink;
use super::spool::{Batch, Cursor, Spool};
use crate::error::{Error, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// Refusals that are not clearly the data's fault (auth, unknown path) are retried this often.
const REFUSAL_RETRIES: u32 = 3;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub events: usize,
    pub bytes: usize,
    pub wait: Duration,
    pub backoff: Backoff,
}

/// State shared by the forwarder handle and its delivery task.
pub struct Shared {
    pub spool: Arc<Spool>,
    pub metrics: Arc<ForwardMetrics>,
    /// Records were appended.
    pub more: Notify,
    /// Something was committed.
    pub progress: Notify,
    /// `finish` was called: send part-filled batches at once.
    pub flushing: AtomicBool,
    pub acknowledged: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub duplicates: AtomicU64,
}

impl Shared {
    pub fn new(spool: Spool, metrics: Arc<ForwardMetrics>) -> Shared {
        Shared {
            spool: Arc::new(spool),
            metrics,
            more: Notify::new(),
            progress: Notify::new(),
            flushing: AtomicBool::new(false),
            acknowledged: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
        }
    }

    pub fn update_spool_bytes(&self) {
        self.metrics
            .spool_bytes
            .store(self.spool.bytes(), Ordering::Relaxed);
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::failed(format!("spool task failed: {e}")))?
}

async fn read(shared: &Arc<Shared>, limits: Limits) -> Result<Batch> {
    let spool = shared.spool.clone();
    blocking(move || spool.read_batch(limits.events, limits.bytes)).await
}

async fn commit(shared: &Arc<Shared>, to: Cursor, count: u64) -> Result<()> {
    let spool = shared.spool.clone();
    blocking(move || spool.commit(to, count)).await?;
    shared.update_spool_bytes();
    shared.progress.notify_waiters();
    Ok(())
}

async fn dead_letter(
    shared: &Arc<Shared>,
    batch: &Batch,
    range: std::ops::Range<usize>,
    reason: &str,
) -> Result<()> {
    let spool = shared.spool.clone();
    let records = batch.records[range.clone()].to_vec();
    let why = reason.to_string();
    blocking(move || spool.dead_letter(&records, &why)).await?;
    let n = range.len() as u64;
    ForwardMetrics::add(&shared.metrics.dead_lettered, n);
    shared.dead_lettered.fetch_add(n, Ordering::Relaxed);
    tracing::warn!(sink_events = n, %reason, "SIEM refused records; kept in dead-letters.ndjson");
    Ok(())
}

/// Run until aborted. Errors of the spool itself (disk) are logged and retried.
pub async fn run(mut sink: Sink, shared: Arc<Shared>, limits: Limits) {
    let mut disk_errors = 0u32;
    loop {
        match step(&mut sink, &shared, limits).await {
            Ok(()) => disk_errors = 0,
            Err(e) => {
                disk_errors += 1;
                tracing::error!(sink = sink.name(), "SIEM spool: {e}");
                shared.spool.rewind();
                tokio::time::sleep(limits.backoff.delay(disk_errors, rand::random())).await;
            }
        }
    }
}

async fn step(sink: &mut Sink, shared: &Arc<Shared>, limits: Limits) -> Result<()> {
    let mut batch = read(shared, limits).await?;
    if batch.records.is_empty() {
        tokio::select! {
            _ = shared.more.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        return Ok(());
    }
    if batch.records.len() < limits.events && !shared.flushing.load(Ordering::Relaxed) {
        // Part-filled: give producers up to `wait` to fill it, then read it again from the
        // start (one batch is in flight at a time, so everything pending is unread).
        let deadline = tokio::time::Instant::now() + limits.wait;
        while (shared.spool.pending() as usize) < limits.events
            && !shared.flushing.load(Ordering::Relaxed)
        {
            tokio::select! {
                _ = shared.more.notified() => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        shared.spool.rewind();
        batch = read(shared, limits).await?;
    }
    deliver(sink, shared, &batch, limits).await
}

async fn deliver(
    sink: &mut Sink,
    shared: &Arc<Shared>,
    batch: &Batch,
    limits: Limits,
) -> Result<()> {
    let n = batch.records.len();
    // The slice `start..end` is in flight; `end` shrinks when the SIEM says it is too large.
    let (mut start, mut end, mut attempt, mut refusals) = (0usize, n, 0u32, 0u32);
    while start < n {
        match sink.send(&batch.records[start..end]).await {
            Delivery::Delivered => {
                // Count before committing: `finish` returns as soon as the spool is empty.
                let count = (end - start) as u64;
                ForwardMetrics::add(&shared.metrics.sent, count);
                shared.acknowledged.fetch_add(count, Ordering::Relaxed);
                commit(shared, batch.ends[end - 1], count).await?;
                (start, end, attempt, refusals) = (end, n, 0, 0);
            }
            Delivery::Partial { accepted, reason } => {
                let bad = start + accepted;
                ForwardMetrics::add(&shared.metrics.sent, accepted as u64);
                shared
                    .acknowledged
                    .fetch_add(accepted as u64, Ordering::Relaxed);
                dead_letter(shared, batch, bad..bad + 1, &reason).await?;
                commit(shared, batch.ends[bad], accepted as u64 + 1).await?;
                (start, attempt) = (bad + 1, 0);
                if start >= end {
                    end = n;
                }
            }
            Delivery::TooLarge { reason } if end - start > 1 => {
                tracing::info!(
                    sink = sink.name(),
                    events = end - start,
                    "{reason}; halving the request"
                );
                end = start + (end - start) / 2;
            }
            Delivery::TooLarge { reason } => {
                dead_letter(shared, batch, start..end, &reason).await?;
                commit(shared, batch.ends[end - 1], 1).await?;
                (start, end) = (end, n);
            }
            Delivery::Refused { reason, permanent } if permanent || refusals >= REFUSAL_RETRIES => {
                dead_letter(shared, batch, start..end, &reason).await?;
                commit(shared, batch.ends[end - 1], (end - start) as u64).await?;
                (start, end, attempt, refusals) = (end, n, 0, 0);
            }
            Delivery::Refused { reason, .. } => {
                refusals += 1;
                attempt += 1;
                ForwardMetrics::add(&shared.metrics.retried, 1);
                tracing::warn!(
                    sink = sink.name(),
                    attempt,
                    "SIEM refused a batch, retrying: {reason}"
                );
                tokio::time::sleep(limits.backoff.delay(attempt, rand::random())).await;
            }
            Delivery::Retry { reason, ambiguous } => {
                attempt += 1;
                ForwardMetrics::add(&shared.metrics.retried, 1);
                if ambiguous {
                    let n = (end - start) as u64;
                    ForwardMetrics::add(&shared.metrics.possible_duplicates, n);
                    shared.duplicates.fetch_add(n, Ordering::Relaxed);
                }
                tracing::warn!(
                    sink = sink.name(),
                    attempt,
                    "SIEM delivery failed, retrying: {reason}"
                );
                tokio::time::sleep(limits.backoff.delay(attempt, rand::random())).await;
            }
        }
    }
    Ok(())
}
