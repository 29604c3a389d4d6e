//! SIEM forwarding (issue 4): a durable [`spool`] in front of one sink (Splunk HEC, syslog or
//! NDJSON over HTTP), the [`Forwarder`] handle that `ingest` and `serve` use, and two operations
//! built on it: the `forward` [`backfill`] and the one-shot [`ingest`] (the log pipeline joined to
//! the forwarder).
//!
//! Delivery is at least once: a record leaves the spool only once the SIEM acknowledged it (or
//! refused it for good, into `dead-letters.ndjson`); after a crash it is sent again. Must never
//! drop an accepted record, nor put the token in a log, an error or a metric.

pub mod backfill;
pub mod backoff;
pub mod conn;
pub mod delivery;
pub mod endpoint;
pub mod hec;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod pipeline;
pub mod sink;
pub mod spool;
pub mod syslog;
pub mod tls;

pub use metrics::{ForwardMetrics, MetricsSnapshot};

use crate::config::SiemConfig;
use crate::error::{Error, Result};
use crate::logs::record::Record;
use pipeline::{Limits, Shared};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The shared HTTP client's handle on the HTTP endpoint `ep` (the HEC and http sinks), through
/// the proxy the environment names for it; a proxy variable that cannot be used is a usage
/// error naming the variable.
pub(crate) fn origin(
    ep: &endpoint::Endpoint,
    tls: Option<Arc<rustls::ClientConfig>>,
    proxy: &crate::config::proxy::ProxyEnv,
    timeout: Duration,
) -> Result<crate::net::Origin> {
    let target = crate::net::Target {
        https: ep.tls(),
        host: ep.host.clone(),
        port: ep.port,
    };
    crate::net::Origin::new(target, tls, proxy, timeout)
        .map_err(|e| Error::usage(format!("siem.url {}: {e}", ep.authority())))
}

/// The start-up health check never holds `start` up longer than this.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// What a forwarder did by the time it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FinishReport {
    /// Records the SIEM (or its transport) acknowledged during this run, replayed ones included;
    /// with syslog over UDP: records handed to the kernel, which nothing acknowledges.
    pub acknowledged: u64,
    /// Records still in the spool, durable, to be sent by the next run.
    pub spooled: u64,
    /// Records the SIEM refused for good, kept in `dead-letters.ndjson` with the reason.
    pub dead_lettered: u64,
    /// Records sent again after an attempt whose outcome was unknown: the SIEM may hold them twice.
    pub duplicates: u64,
}

/// Owns the spool and the sink's delivery task.
pub struct Forwarder {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
    sink: &'static str,
    acknowledges: bool,
}

impl Forwarder {
    /// Open the spool (replaying what a previous run left), start delivery.
    pub async fn start(config: &SiemConfig, metrics: Arc<ForwardMetrics>) -> Result<Forwarder> {
        let mut sink = sink::Sink::new(config)?;
        let dir = config.common.spool_dir.clone();
        let max = config.common.spool_max_bytes;
        let segment = (max / 8).clamp(64 << 10, 64 << 20);
        let (spool, opened) =
            tokio::task::spawn_blocking(move || spool::Spool::open(&dir, max, segment))
                .await
                .map_err(|e| Error::failed(format!("spool task failed: {e}")))??;
        ForwardMetrics::add(&metrics.replayed, opened.replay);
        ForwardMetrics::add(&metrics.spool_corrupt_regions, opened.corrupt_regions);
        if opened.corrupt_regions > 0 {
            tracing::warn!(
                regions = opened.corrupt_regions,
                bytes = opened.corrupt_bytes,
                "SIEM spool {}: skipped corrupt or torn data left by a crash",
                config.common.spool_dir.display()
            );
        }
        if opened.replay > 0 {
            tracing::info!(
                records = opened.replay,
                "SIEM spool: replaying records a previous run left"
            );
        }
        if let sink::Sink::Hec(hec) = &mut sink {
            let health = tokio::time::timeout(HEALTH_TIMEOUT, hec.health()).await;
            if let Err(e) = health.unwrap_or_else(|_| Err("no answer".into())) {
                tracing::warn!(
                    "Splunk HEC health check failed ({e}); records stay spooled until it answers"
                );
            }
        }
        let acknowledges = sink.acknowledges();
        if !acknowledges {
            let udp_max_per_sec = match &config.sink {
                crate::config::SiemSink::Syslog(s) => s.udp_max_per_sec,
                _ => 0,
            };
            let pace = match udp_max_per_sec {
                0 => "not rate limited (siem.udp_max_per_sec = 0)".to_string(),
                n => format!("paced to {n} datagrams/s (siem.udp_max_per_sec)"),
            };
            tracing::warn!(
                "syslog over UDP has no acknowledgement: records are counted as sent, not \
                 forwarded, and a receiver under load drops what it cannot take without anyone \
                 knowing; {pace}. Use tcp:// or tls:// to know that records arrived"
            );
        }
        let name = sink.name();
        let shared = Arc::new(Shared::new(spool, metrics));
        shared.update_spool_bytes();
        let limits = Limits {
            events: config.common.batch_events.max(1),
            bytes: config.common.batch_bytes.max(1),
            wait: Duration::from_millis(config.common.batch_wait_ms),
            backoff: backoff::DELIVERY,
        };
        let task = tokio::spawn(pipeline::run(sink, shared.clone(), limits));
        Ok(Forwarder {
            shared,
            task,
            sink: name,
            acknowledges,
        })
    }

    /// Whether what the sink delivers is acknowledged by the SIEM or its transport; false for
    /// syslog over UDP, whose records are only "sent" (`--json` counts them as `sent`).
    pub fn acknowledges(&self) -> bool {
        self.acknowledges
    }

    /// The sink's metrics label (`splunk-hec`, `syslog`, `http`).
    pub fn sink_name(&self) -> &'static str {
        self.sink
    }

    pub fn metrics(&self) -> &Arc<ForwardMetrics> {
        &self.shared.metrics
    }

    /// Records waiting in the spool.
    pub fn pending(&self) -> u64 {
        self.shared.spool.pending()
    }

    /// Durably accept records: appended to the spool and fsynced before returning Ok.
    /// `Err(Error::temporary)` when the spool is full (backpressure): none of them was accepted.
    pub async fn submit(&self, records: &[Record]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let spool = self.shared.spool.clone();
        let records = records.to_vec();
        tokio::task::spawn_blocking(move || spool.append(&records))
            .await
            .map_err(|e| Error::failed(format!("spool task failed: {e}")))??;
        self.shared.update_spool_bytes();
        self.shared.more.notify_one();
        Ok(())
    }

    /// Wait until everything submitted is acknowledged by the SIEM, up to `wait`; then stop.
    pub async fn finish(mut self, wait: Duration) -> Result<FinishReport> {
        let s = &self.shared;
        s.flushing.store(true, Ordering::Relaxed);
        s.more.notify_one();
        let deadline = tokio::time::Instant::now() + wait;
        while s.spool.pending() > 0 && tokio::time::Instant::now() < deadline {
            let progressed = s.progress.notified();
            let _ = tokio::time::timeout_at(
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(100)),
                progressed,
            )
            .await;
        }
        self.task.abort();
        let _ = (&mut self.task).await;
        Ok(FinishReport {
            acknowledged: s.acknowledged.load(Ordering::Relaxed),
            spooled: s.spool.pending(),
            dead_lettered: s.dead_lettered.load(Ordering::Relaxed),
            duplicates: s.duplicates.load(Ordering::Relaxed),
        })
    }
}

/// Dropped without `finish` (an error path): stop delivering; the spool keeps the rest.
impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl crate::logs::ingest::RecordSink for Forwarder {
    fn submit<'a>(&'a self, records: &'a [Record]) -> futures::future::BoxFuture<'a, Result<()>> {
        Box::pin(Forwarder::submit(self, records))
    }
}
