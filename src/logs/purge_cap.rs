//! The size cap of `purge` (`retention.max_bytes`) on the database: measure the `logs`
//! relation after the windows, and when it is over the cap drop the partitions
//! [`cap_plan::plan_cap`] names, with purge's own batched, lock-aware drop
//! ([`purge_drop::drop_expired`]: short transactions of one class, partitions held by readers left
//! out), and report each partition dropped early with its class, range, rows and bytes.
//!
//! Built to work on a nearly full disk: it only measures (catalog functions, no scan, no temp
//! space) and DROPs whole partitions; it never DELETEs a row, never sorts, never holds a
//! transaction across batches. It never drops the partitions receiving inserts: when even the
//! rest is not enough it says so in a warning. Runs only inside [`super::purge::purge`], under its
//! purge lock; `dry_run` measures and plans and changes nothing.

use super::cap_plan::{self, Sized};
use super::partition_ddl;
use super::partition_plan::Partition;
use super::purge_drop;
use super::record::Class;
use crate::config::ByteSize;
use crate::db::ident;
use crate::error::Result;
use crate::sizing::bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashMap;
use tokio_postgres::Client;

/// How many times the cap re-plans around partitions that long readers hold.
const CAP_ROUNDS: usize = 3;

/// What the cap did in one purge (`cap` in `purge --json`).
#[derive(Debug, Clone, Serialize)]
pub struct CapReport {
    /// `retention.max_bytes` in bytes.
    pub max_bytes: u64,
    /// The `logs` relation (every partition's heap, indexes and TOAST) after the windows were
    /// applied, before the cap.
    pub before_bytes: u64,
    /// After the cap (measured again; with --dry-run the expected size).
    pub after_bytes: u64,
    /// Whether `after_bytes` is within the cap.
    pub within: bool,
    /// The partitions dropped early (or that would be), in drop order.
    pub dropped: Vec<CapDrop>,
    /// Partitions the cap wanted but a long reader held: left for the next purge.
    pub held: Vec<String>,
    /// Why the relation is still over the cap, when it is.
    pub warning: Option<String>,
}

/// One partition the cap dropped although its rows were inside the retention window.
#[derive(Debug, Clone, Serialize)]
pub struct CapDrop {
    pub partition: String,
    pub class: Class,
    pub range: Range,
    pub rows: u64,
    pub bytes: u64,
}

/// The `ingest_date` range of a partition: `from <= ingest_date < to`.
#[derive(Debug, Clone, Serialize)]
pub struct Range {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// What [`apply`] needs besides the connection.
pub struct CapInput<'a> {
    pub schema: &'a str,
    pub max: ByteSize,
    /// The partitions holding this instant, and later ones, are never dropped.
    pub current: DateTime<Utc>,
    pub dry_run: bool,
    /// With `dry_run`, the partitions the windows would drop (counted as gone already).
    pub gone: &'a [String],
    /// Partitions not to drop (the windows' held partitions, emptied instead).
    pub excluded: &'a [String],
}

/// Apply the cap after the windows (see the module's documentation).
pub async fn apply(client: &mut Client, input: CapInput<'_>) -> Result<CapReport> {
    let CapInput {
        schema,
        max,
        current,
        dry_run,
        gone,
        excluded,
    } = input;
    let max_bytes = max.bytes();
    let mut sizes = leaf_sizes(client, schema).await?;
    sizes.retain(|name, _| !gone.contains(name));
    let candidates: Vec<Sized> = partition_ddl::list(client, schema)
        .await?
        .into_iter()
        .filter(|p| !gone.contains(&p.name))
        .map(|p| Sized {
            bytes: sizes.get(&p.name).copied().unwrap_or(0),
            partition: p,
        })
        .collect();
    let before_bytes: u64 = sizes.values().sum();
    let mut total = before_bytes;
    let mut excluded: Vec<String> = excluded.to_vec();
    let mut dropped: Vec<CapDrop> = Vec::new();
    let mut held: Vec<String> = Vec::new();
    let mut plan = cap_plan::plan_cap(total, &candidates, max_bytes, current, &excluded);
    for _ in 0..CAP_ROUNDS {
        if plan.drop.is_empty() {
            break;
        }
        let parts: Vec<Partition> = plan.drop.iter().map(|s| s.partition.clone()).collect();
        let size_of = |p: &Partition| sizes.get(&p.name).copied().unwrap_or(0);
        if dry_run {
            let tables: Vec<String> = parts.iter().map(|p| purge_drop::table(schema, p)).collect();
            let rows = purge_drop::rows_in(&*client, &tables).await?;
            for (p, n) in parts.iter().zip(rows) {
                dropped.push(early(p, n, size_of(p)));
            }
            total = plan.after_bytes;
            break;
        }
        let outcome = purge_drop::drop_expired(client, None, schema, parts.clone()).await?;
        // In the plan's order (debug first, oldest first), whatever order the batches ran in.
        for p in &parts {
            if let Some((_, n)) = outcome.dropped.iter().find(|(d, _)| d.name == p.name) {
                let b = size_of(p);
                tracing::warn!(
                    partition = %p.name, class = %p.class, from = %p.lower, to = %p.upper,
                    rows = n, bytes = b,
                    "dropped before its retention window ended: the logs relation was over retention.max_bytes ({max})"
                );
                dropped.push(early(p, *n, b));
                total = total.saturating_sub(b);
            }
        }
        if outcome.left.is_empty() {
            break;
        }
        for p in outcome.left {
            tracing::warn!(partition = %p.name, "held by a long reader: the size cap leaves it to the next purge (it never deletes rows)");
            excluded.push(p.name.clone());
            held.push(p.name);
        }
        let remaining: Vec<Sized> = candidates
            .iter()
            .filter(|s| !dropped.iter().any(|d| d.partition == s.partition.name))
            .cloned()
            .collect();
        plan = cap_plan::plan_cap(total, &remaining, max_bytes, current, &excluded);
    }
    let after_bytes = if dry_run || dropped.is_empty() {
        total
    } else {
        leaf_sizes(client, schema).await?.values().sum()
    };
    let within = after_bytes <= max_bytes;
    let warning = (!within).then(|| {
        let mut w = format!(
            "the logs relation is {} after the size cap, still over retention.max_bytes {max} ({}): ",
            bytes(after_bytes),
            bytes(max_bytes)
        );
        if held.is_empty() {
            w.push_str(
                "only the partitions receiving inserts are left, which are never dropped early; \
                 raise retention.max_bytes, shorten the windows, or forward logs to a SIEM with \
                 retention 0",
            );
        } else {
            w.push_str(&format!(
                "long-running queries hold {}; the next purge tries again",
                held.join(", ")
            ));
        }
        w
    });
    if let Some(w) = &warning {
        tracing::warn!("{w}");
    }
    Ok(CapReport {
        max_bytes,
        before_bytes,
        after_bytes,
        within,
        dropped,
        held,
        warning,
    })
}

fn early(p: &Partition, rows: u64, bytes: u64) -> CapDrop {
    CapDrop {
        partition: p.name.clone(),
        class: p.class,
        range: Range {
            from: p.lower,
            to: p.upper,
        },
        rows,
        bytes,
    }
}

/// Every leaf partition of `logs` with its size (heap, indexes, TOAST): catalog functions
/// only, no scan.
async fn leaf_sizes(client: &Client, schema: &str) -> Result<HashMap<String, u64>> {
    let logs = format!("{}.{}", ident(schema), ident("logs"));
    let rows = client
        .query(
            "SELECT c.relname::text, pg_total_relation_size(t.relid)
             FROM pg_partition_tree(to_regclass($1)) t JOIN pg_class c ON c.oid = t.relid
             WHERE t.isleaf",
            &[&logs],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1).max(0) as u64))
        .collect())
}
