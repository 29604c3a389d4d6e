//! Counters of one forwarder's sink, for `serve`'s `/metrics` (issue 5) and run summaries.
//! Plain atomics, updated by the pipeline and the spool. Must never hold a secret or a record.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct ForwardMetrics {
    /// Events the SIEM acknowledged.
    pub sent: AtomicU64,
    /// Delivery attempts that failed and were retried.
    pub retried: AtomicU64,
    /// Events refused for good and written to the dead-letter file.
    pub dead_lettered: AtomicU64,
    /// Bytes of unacknowledged records in the spool.
    pub spool_bytes: AtomicU64,
    /// Events re-sent after an attempt whose outcome was unknown (they may arrive twice).
    pub possible_duplicates: AtomicU64,
    /// Events replayed from the spool that a previous run left unacknowledged.
    pub replayed: AtomicU64,
    /// Corrupt or torn spool regions skipped when the spool was opened.
    pub spool_corrupt_regions: AtomicU64,
}

/// A point-in-time copy of the counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MetricsSnapshot {
    pub sent: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub spool_bytes: u64,
    pub possible_duplicates: u64,
    pub replayed: u64,
    pub spool_corrupt_regions: u64,
}

impl ForwardMetrics {
    pub fn snapshot(&self) -> MetricsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsSnapshot {
            sent: g(&self.sent),
            retried: g(&self.retried),
            dead_lettered: g(&self.dead_lettered),
            spool_bytes: g(&self.spool_bytes),
            possible_duplicates: g(&self.possible_duplicates),
            replayed: g(&self.replayed),
            spool_corrupt_regions: g(&self.spool_corrupt_regions),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
