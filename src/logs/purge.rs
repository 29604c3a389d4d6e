//! `purge`: carry out the exact retention plan of `partition_plan::plan_purge` on the database.
//!
//! Whole partitions are dropped, many per transaction (one lock round-trip and one COMMIT for up
//! to [`DROP_BATCH`] partitions of a class); the boundary partition of each class has only its
//! expired rows deleted. Every statement runs under a short `lock_timeout` so purge never queues
//! for long in front of ingest behind a long reader. Partitions another session holds a lock on
//! are left out of a batch (so one held partition never fails the others) and tried again in
//! the next round; one that stays locked through [`super::purge_drop::DROP_ROUNDS`] rounds is emptied by DELETE
//! instead (row locks only, never blocked by readers) so the windows still hold exactly, and is
//! dropped by a later run. With `retention.max_bytes` set, the size cap ([`super::purge_cap`])
//! runs after the windows' drops and before any DELETE (so a nearly full disk is relieved by
//! DROPs first): the oldest whole partitions, debug first, until the `logs` relation fits.
//! Partition creation (premake) runs afterwards in its own transaction,
//! best effort: one brief try, a warning if a reader holds the parent (rows create their own).
//! The operation takes the registry's purge lock ([`Lock::Purge`]) itself, for every caller
//! (`kasm-db purge`, `serve`'s scheduled purge, `demo`), so two purges of a database never run
//! at once; one that finds it held fails with [`Lock::busy`] (exit 75, `locked_elsewhere` in
//! `serve`). `dry_run` only counts and takes no lock. Never waits longer than [`LOCK_TIMEOUT_MS`] for a lock ingest may be
//! queued behind (a class's parent), and never changes a partition the plan does not name.

use super::partition_ddl;
use super::partition_plan::{self, Action, Partition};
use super::purge_cap;
use super::purge_drop::{DropOutcome, LOCK_TIMEOUT_MS, drop_expired, rows_in, table};
use super::record::Class;
use crate::config::RetentionConfig;
use crate::db::locks::{self, Lock};
use crate::db::{self, Pool};
use crate::error::{Result, ResultExt};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

/// The most partitions one transaction drops ([`super::purge_drop`]).
pub use super::purge_drop::DROP_BATCH;

#[derive(Debug, Default, Serialize)]
pub struct PurgeReport {
    pub debug_deleted: u64,
    pub logs_deleted: u64,
    pub partitions_dropped: u64,
    pub dry_run: bool,
    /// The instant the windows were applied at.
    pub now: String,
    /// Partitions dropped (or that would be, with --dry-run).
    pub dropped: Vec<String>,
    /// Boundary partitions whose expired rows were deleted.
    pub trimmed: Vec<String>,
    /// Partitions emptied by DELETE because a long reader held them; dropped next time.
    pub deferred: Vec<String>,
    /// The size cap (`retention.max_bytes`), when one is set: the sizes before and after it
    /// and each partition it dropped early (also counted in the totals and `dropped` above).
    pub cap: Option<purge_cap::CapReport>,
}

impl PurgeReport {
    fn add_deleted(&mut self, class: Class, n: u64) {
        match class {
            Class::Debug => self.debug_deleted += n,
            Class::Logs => self.logs_deleted += n,
        }
    }
}

/// Apply the retention windows as of `now` (unless `dry_run`, under the purge lock, which is
/// released before the connection goes back to `pool`). `database` names the database in the
/// error of a purge that finds the lock held (a redacted description).
pub async fn purge(
    pool: &Pool,
    database: &str,
    schema: &str,
    retention: &RetentionConfig,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<PurgeReport> {
    let mut client = db::get(pool).await?;
    if dry_run {
        return purge_on(&mut client, None, schema, retention, now, true).await;
    }
    locks::hold(&client, Lock::Purge, database).await?;
    let report = purge_on(&mut client, Some(pool), schema, retention, now, false).await;
    locks::release_pooled(client, Lock::Purge).await;
    report
}

async fn purge_on(
    client: &mut Client,
    spare: Option<&Pool>,
    schema: &str,
    retention: &RetentionConfig,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<PurgeReport> {
    crate::db::migrate::require_migrated(client, schema).await?;
    let existing = partition_ddl::list(client, schema).await?;
    let plan = partition_plan::plan_purge(&existing, retention, now);
    let mut report = PurgeReport {
        dry_run,
        now: now.to_rfc3339(),
        ..Default::default()
    };
    let drops: Vec<Partition> = plan
        .iter()
        .filter_map(|a| match a {
            Action::Drop(p) => Some(p.clone()),
            Action::Trim(..) => None,
        })
        .collect();
    let window_drops: Vec<String> = drops.iter().map(|p| p.name.clone()).collect();
    let outcome = if dry_run {
        let tables: Vec<String> = drops.iter().map(|p| table(schema, p)).collect();
        let counts = rows_in(&*client, &tables).await?;
        DropOutcome {
            dropped: drops.into_iter().zip(counts).collect(),
            left: Vec::new(),
        }
    } else {
        drop_expired(client, spare, schema, drops).await?
    };
    // Reported in plan order (oldest first), whatever order the batches ran in.
    let mut dropped = outcome.dropped;
    dropped.sort_by_key(|(p, _)| (p.lower, p.class));
    for (p, n) in dropped {
        report.add_deleted(p.class, n);
        report.partitions_dropped += 1;
        report.dropped.push(p.name);
    }
    let mut left = outcome.left;
    left.sort_by_key(|p| (p.lower, p.class));
    // The cap runs before any DELETE: on a nearly full disk, DROPs free space, DELETEs need it.
    let mut capped: Vec<String> = Vec::new();
    if let Some(max) = retention.max_bytes {
        let held: Vec<String> = left.iter().map(|p| p.name.clone()).collect();
        let cap = purge_cap::apply(
            client,
            purge_cap::CapInput {
                schema,
                max,
                // Never the partitions receiving inserts: those of now, or of --now if earlier.
                current: now.min(Utc::now()),
                dry_run,
                gone: if dry_run { &window_drops } else { &[] },
                excluded: &held,
            },
        )
        .await?;
        for d in &cap.dropped {
            report.add_deleted(d.class, d.rows);
            report.partitions_dropped += 1;
            report.dropped.push(d.partition.clone());
            capped.push(d.partition.clone());
        }
        report.cap = Some(cap);
    }
    for p in left {
        tracing::warn!(partition = %p.name, "partition held by a long reader: deleting its rows instead; it will be dropped by a later purge");
        let n = delete_before(client, schema, &p, p.upper).await?;
        report.add_deleted(p.class, n);
        report.deferred.push(p.name);
    }
    for action in plan {
        if let Action::Trim(p, cut) = action {
            if capped.contains(&p.name) {
                continue;
            }
            let n = if dry_run {
                let sql = format!(
                    "SELECT count(*) FROM {} WHERE ingest_date < $1",
                    table(schema, &p)
                );
                client.query_one(&sql, &[&cut]).await?.get::<_, i64>(0) as u64
            } else {
                delete_before(client, schema, &p, cut).await?
            };
            report.add_deleted(p.class, n);
            report.trimmed.push(p.name);
        }
    }
    if !dry_run {
        let keep: Vec<Class> = Class::ALL
            .into_iter()
            .filter(|c| !partition_plan::window(retention, *c).is_zero())
            .collect();
        // A courtesy for the next hours' rows, which create their own partitions anyway: a
        // long reader of a parent makes it a warning, never a failed purge or a queue in front
        // of ingest.
        let patience = partition_ddl::Patience::BRIEF;
        if let Err(e) =
            partition_ddl::premake_with(client, schema, &keep, Utc::now().max(now), patience).await
        {
            tracing::warn!(error = %e, "purge done; creating the next partitions ahead was skipped (rows will create them)");
        }
    }
    Ok(report)
}

async fn delete_before(
    client: &Client,
    schema: &str,
    p: &Partition,
    cut: DateTime<Utc>,
) -> Result<u64> {
    let table = table(schema, p);
    client
        .batch_execute(&format!("SET lock_timeout = '{LOCK_TIMEOUT_MS}ms'"))
        .await?;
    let n = client
        .execute(
            &format!("DELETE FROM {table} WHERE ingest_date < $1"),
            &[&cut],
        )
        .await
        .with_ctx(|| format!("cannot delete expired rows of {}", p.name))?;
    client.batch_execute("RESET lock_timeout").await?;
    Ok(n)
}
