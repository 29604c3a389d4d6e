//! The `ingest` and `purge` commands: turn flags and configuration into calls of the ingest
//! operation ([`crate::forward::ingest`]) and the purge, and their reports into an [`Outcome`].
//! Reject reporting (stderr, --rejects file) and the progress bar live here; the operation only
//! hands rejects over and advances the bar it is given.

use super::Ctx;
use crate::cli::{IngestArgs, PurgeArgs};
use crate::error::{Error, Result};
use crate::forward::ingest::{self, Ingest};
use crate::logs::ingest::{IngestOptions, RejectEntry, Summary};
use crate::logs::reader::Source;
use crate::logs::{purge, purge_cap};
use crate::output::Outcome;
use chrono::{DateTime, Utc};
use std::io::Write;

/// How many rejects are described one by one on stderr before summarising.
const REJECTS_SHOWN: u64 = 20;

pub fn parse_instant(flag: &str, text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            Error::usage(format!(
                "{flag} {text:?} is not an RFC 3339 time (e.g. 2026-11-24T03:00:00Z): {e}"
            ))
        })
}

pub async fn ingest(ctx: &Ctx, args: &IngestArgs) -> Result<Outcome> {
    let mut sources = Vec::new();
    for f in &args.files {
        if f.as_os_str() == "-" {
            sources.push(Source::Stdin);
        } else {
            // Fail before storing anything when an input is missing.
            std::fs::metadata(f)
                .map_err(|e| Error::failed(format!("cannot read {}: {e}", f.display())))?;
            sources.push(Source::File(f.clone()));
        }
    }
    if sources.is_empty() {
        sources.push(Source::Stdin);
    }
    let received_at = args
        .received_at
        .as_deref()
        .map(|t| parse_instant("--received-at", t))
        .transpose()?;
    let opts = IngestOptions {
        schema: ctx.config.database.schema.clone(),
        retention: ctx.config.retention,
        max_line_bytes: args
            .max_line_bytes
            .unwrap_or(ctx.config.ingest.max_line_bytes),
        batch_rows: ctx.config.ingest.batch_rows,
        received_at,
        forward_all: ctx
            .config
            .siem
            .as_ref()
            .is_some_and(|s| s.common.forward_all),
        parallel: ctx.config.ingest.parallel,
        bytes_read: ctx
            .interactive
            .then(|| std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0))),
    };
    let total_bytes: u64 = sources
        .iter()
        .filter_map(|s| match s {
            Source::File(p) => std::fs::metadata(p).ok().map(|m| m.len()),
            Source::Stdin => None,
        })
        .sum();
    let has_stdin = sources.iter().any(|s| matches!(s, Source::Stdin));
    let mut rejects_file = match &args.rejects {
        Some(p) => Some(std::io::BufWriter::new(
            crate::private::create(p, crate::private::FileMode::PRIVATE)
                .map_err(|e| Error::failed(format!("cannot create {}: {e}", p.display())))?,
        )),
        None => None,
    };
    let pool = ctx.pool(opts.parallel + 1).await?;
    let mut shown = 0u64;
    let mut on_reject = |r: &RejectEntry| -> Result<()> {
        shown += 1;
        if shown <= REJECTS_SHOWN {
            tracing::warn!("rejected {}:{}: {}", r.source, r.line, r.reason);
        }
        if let Some(f) = rejects_file.as_mut() {
            serde_json::to_writer(&mut *f, r)
                .map_err(|e| Error::failed(format!("writing rejects: {e}")))?;
            f.write_all(b"\n")?;
        }
        Ok(())
    };
    let progress = opts
        .bytes_read
        .is_some()
        .then(|| progress_bar((!has_stdin).then_some(total_bytes)));
    let input = Ingest {
        pool: &pool,
        sources,
        options: opts,
        siem: ctx.config.siem.as_ref(),
        progress,
    };
    let summary = ingest::ingest(input, &mut on_reject).await?;
    if let Some(mut f) = rejects_file {
        f.flush()?;
    }
    if summary.rejected > REJECTS_SHOWN {
        let hint = if args.rejects.is_some() {
            ""
        } else {
            "; use --rejects FILE to keep them"
        };
        tracing::warn!(
            "{} more rejected lines not shown{hint}",
            summary.rejected - REJECTS_SHOWN
        );
    }
    let text = describe(&summary);
    let outcome = Outcome::new(&summary, text);
    Ok(if args.strict && summary.rejected > 0 {
        outcome.failed_check()
    } else {
        outcome
    })
}

/// A bar of input bytes on stderr (a spinner for stdin), advanced by the operation. Only made
/// when stderr is a terminal; cron and pipes see nothing.
fn progress_bar(total: Option<u64>) -> indicatif::ProgressBar {
    let (bar, template) = match total {
        Some(t) => (
            indicatif::ProgressBar::new(t),
            "ingest {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ),
        None => (
            indicatif::ProgressBar::new_spinner(),
            "ingest {spinner} {bytes} read, {bytes_per_sec}",
        ),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

fn describe(s: &Summary) -> String {
    let rate = if s.duration_s > 0.0 {
        s.read as f64 / s.duration_s
    } else {
        0.0
    };
    let mut t = format!(
        "read {} lines in {:.2} s ({rate:.0}/s): stored {} ({} debug), forwarded {}, dropped {}, rejected {}",
        s.read, s.duration_s, s.stored, s.stored_debug, s.forwarded, s.dropped, s.rejected
    );
    if let Some(spooled) = s.sent_spooled {
        t.push_str(&format!(
            "\nSIEM (syslog over UDP): {} sent, never acknowledged (a receiver under load loses \
             datagrams silently), {spooled} durably spooled for the next run",
            s.sent
        ));
    }
    if let (Some(ack), Some(spooled)) = (s.forwarded_acknowledged, s.forwarded_spooled) {
        t.push_str(&format!(
            "\nSIEM: {ack} acknowledged, {spooled} durably spooled for the next run, {} dead-lettered",
            s.dead_lettered.unwrap_or(0)
        ));
    }
    if s.dropped > 0 {
        t.push_str("\n(dropped: records of a class whose retention is 0, with no [siem] configured to forward them)");
    }
    t
}

pub async fn purge(ctx: &Ctx, args: &PurgeArgs) -> Result<Outcome> {
    let now = match &args.now {
        Some(t) => parse_instant("--now", t)?,
        None => Utc::now(),
    };
    // Two connections: purge drops partitions on both at once.
    let pool = ctx.pool(2).await?;
    // The operation takes the purge lock (serve's scheduled purge takes the same one).
    let r = purge::purge(
        &pool,
        &ctx.db.redacted(),
        &ctx.config.database.schema,
        &ctx.config.retention,
        now,
        args.dry_run,
    )
    .await?;
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    let mut text = format!(
        "{verb} {} debug and {} other rows as of {} (windows: debug {}, logs {}); {} partitions {}",
        r.debug_deleted,
        r.logs_deleted,
        r.now,
        ctx.config.retention.debug,
        ctx.config.retention.logs,
        r.partitions_dropped,
        if r.dry_run {
            "would be dropped"
        } else {
            "dropped"
        },
    );
    if let Some(n) = r.cap.as_ref().map(|c| c.dropped.len()).filter(|n| *n > 0) {
        text.push_str(&format!(" ({n} of them early, by the size cap: see below)"));
    }
    if !r.deferred.is_empty() {
        text.push_str(&format!(
            "\n{} partition(s) held by long-running queries were emptied instead and will be dropped next time: {}",
            r.deferred.len(),
            r.deferred.join(", ")
        ));
    }
    if let Some(cap) = &r.cap {
        text.push('\n');
        text.push_str(&describe_cap(cap, r.dry_run));
    }
    Ok(Outcome::new(&r, text))
}

/// The size cap's part of `purge`'s text: the sizes, and each partition dropped early and why.
fn describe_cap(cap: &purge_cap::CapReport, dry_run: bool) -> String {
    use crate::sizing::bytes;
    let max = crate::config::ByteSize::from_bytes(cap.max_bytes);
    if cap.dropped.is_empty() && cap.within {
        return format!(
            "size cap retention.max_bytes {max}: logs is {} after the windows, within it; nothing dropped early",
            bytes(cap.before_bytes)
        );
    }
    let (verb, now) = if dry_run {
        ("would drop", "would be")
    } else {
        ("dropped", "is now")
    };
    let mut t = format!(
        "size cap retention.max_bytes {max} ({}): logs was {} after the windows, over the cap; \
         {verb} {} partition(s) early, before their retention windows ended (debug first, oldest \
         first); logs {now} {}",
        bytes(cap.max_bytes),
        bytes(cap.before_bytes),
        cap.dropped.len(),
        bytes(cap.after_bytes)
    );
    for d in &cap.dropped {
        t.push_str(&format!(
            "\n  {:<24} {:<5} {} .. {}  {:>10} rows  {:>10}",
            d.partition,
            d.class,
            d.range.from.format("%Y-%m-%d %H:%M"),
            d.range.to.format("%Y-%m-%d %H:%M"),
            d.rows,
            bytes(d.bytes)
        ));
    }
    if !cap.held.is_empty() {
        t.push_str(&format!(
            "\nheld by long-running queries, left for the next purge: {}",
            cap.held.join(", ")
        ));
    }
    if let Some(w) = &cap.warning {
        t.push_str(&format!("\nWARNING: {w}"));
    }
    t
}
