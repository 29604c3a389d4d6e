//! A one-shot ingest (`kasm-db ingest`) as an operation: check the schema is migrated, premake
//! the partitions of the classes kept in the database, start the SIEM [`Forwarder`] when some
//! record will go to it, run the pipeline ([`crate::logs::ingest`]), then wait (bounded) for
//! the SIEM to acknowledge what it was handed and count that into the [`Summary`].
//!
//! It lives here, not in `logs/`, because it joins the two: `forward` imports `logs` (the
//! record), so `logs` must not import `forward`. Takes explicit inputs and returns the typed
//! summary; never sees the command line, never prints (rejects go to the caller's `on_reject`).

use super::Forwarder;
use crate::config::SiemConfig;
use crate::db::Pool;
use crate::error::Result;
use crate::logs::ingest::{self, IngestOptions, RecordSink, RejectEntry, Summary};
use crate::logs::partition_plan;
use crate::logs::reader::Source;
use crate::logs::record::Class;
use chrono::Utc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a one-shot ingest waits for the SIEM to acknowledge what it forwarded; records not
/// acknowledged by then stay durably spooled for the next run (the summary says how many).
const FORWARD_WAIT: Duration = Duration::from_secs(30);

/// What to ingest, where, and where forwarded classes go.
pub struct Ingest<'a> {
    pub pool: &'a Pool,
    pub sources: Vec<Source>,
    pub options: IngestOptions,
    /// The configured SIEM, if any: started only when some record will go to it (a class with
    /// retention 0, or `forward_all`).
    pub siem: Option<&'a SiemConfig>,
    /// Set to `options.bytes_read` while the pipeline runs, cleared when it ends (None: no bar).
    pub progress: Option<indicatif::ProgressBar>,
}

/// Ingest `input.sources`; `on_reject` sees every rejected line as it is found.
pub async fn ingest(
    input: Ingest<'_>,
    on_reject: &mut (dyn FnMut(&RejectEntry) -> Result<()> + Send),
) -> Result<Summary> {
    let opts = &input.options;
    {
        let mut client = crate::db::get(input.pool).await?;
        crate::db::migrate::require_migrated(&client, &opts.schema).await?;
        let classes: Vec<_> = Class::ALL
            .into_iter()
            .filter(|c| !partition_plan::window(&opts.retention, *c).is_zero())
            .collect();
        crate::logs::partition_ddl::premake(&mut client, &opts.schema, &classes, Utc::now())
            .await?;
    }
    // A SIEM sink is started only when some record will go to it.
    let forwards = input.siem.filter(|siem| {
        siem.common.forward_all
            || Class::ALL
                .iter()
                .any(|c| partition_plan::window(&opts.retention, *c).is_zero())
    });
    let forwarder = match forwards {
        Some(siem) => Some(Forwarder::start(siem, Default::default()).await?),
        None => None,
    };
    let sink = forwarder.as_ref().map(|f| f as &dyn RecordSink);
    let refresh = match (&input.progress, &opts.bytes_read) {
        (Some(bar), Some(read)) => Some(refresh(bar.clone(), read.clone())),
        _ => None,
    };
    let result = ingest::ingest(input.pool, input.sources, opts, sink, on_reject).await;
    if let Some(task) = refresh {
        task.abort();
    }
    if let Some(bar) = &input.progress {
        bar.finish_and_clear();
    }
    // Whatever happened, wait for acknowledgements of what was accepted (it is spooled anyway).
    let finished = match forwarder {
        Some(f) => Some((f.acknowledges(), f.finish(FORWARD_WAIT).await?)),
        None => None,
    };
    let mut summary = result?;
    match finished {
        Some((true, f)) => {
            summary.forwarded_acknowledged = Some(f.acknowledged);
            summary.forwarded_spooled = Some(f.spooled);
            summary.dead_lettered = Some(f.dead_lettered);
        }
        Some((false, f)) => {
            // Syslog over UDP: nothing acknowledges these; they were sent, not forwarded.
            summary.sent = std::mem::take(&mut summary.forwarded);
            summary.sent_spooled = Some(f.spooled);
            summary.dead_lettered = Some(f.dead_lettered);
        }
        None => {}
    }
    Ok(summary)
}

/// Refresh `bar` from `read` every 200 ms until aborted.
fn refresh(bar: indicatif::ProgressBar, read: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            bar.set_position(read.load(Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}
