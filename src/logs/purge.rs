//! `purge`: carry out the exact retention plan of `partition_plan::plan_purge` on the database.
//!
//! Whole partitions are dropped; the boundary partition of each class has only its expired rows
//! deleted. Every statement runs under a short `lock_timeout` so purge never queues for long in
//! front of ingest behind a long reader; a partition that stays locked is emptied by DELETE
//! instead (row locks only, never blocked by readers) so the windows still hold exactly, and is
//! dropped by a later run. Partition creation (premake) runs afterwards in its own transaction.
//! `dry_run` only counts.

use super::partition_ddl;
use super::partition_plan::{self, Action, Partition};
use super::record::Class;
use crate::config::RetentionConfig;
use crate::db::{self, Pool, ident};
use crate::error::{Result, ResultExt};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::error::SqlState;

/// How long one purge statement may wait for a lock, and how often to try.
const LOCK_TIMEOUT: &str = "500ms";
const DROP_ATTEMPTS: u32 = 3;

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
}

impl PurgeReport {
    fn add_deleted(&mut self, class: Class, n: u64) {
        match class {
            Class::Debug => self.debug_deleted += n,
            Class::Logs => self.logs_deleted += n,
        }
    }
}

pub async fn purge(
    pool: &Pool,
    schema: &str,
    retention: &RetentionConfig,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<PurgeReport> {
    let mut client = db::get(pool).await?;
    crate::db::migrate::require_migrated(&client, schema).await?;
    let existing = partition_ddl::list(&client, schema).await?;
    let plan = partition_plan::plan_purge(&existing, retention, now);
    let mut report = PurgeReport {
        dry_run,
        now: now.to_rfc3339(),
        ..Default::default()
    };
    for action in plan {
        match action {
            Action::Drop(p) => {
                if dry_run {
                    let n = count(&client, schema, &p, None).await?;
                    report.add_deleted(p.class, n);
                    report.partitions_dropped += 1;
                    report.dropped.push(p.name);
                    continue;
                }
                match drop_partition(&mut client, schema, &p).await? {
                    Some(n) => {
                        report.add_deleted(p.class, n);
                        report.partitions_dropped += 1;
                        report.dropped.push(p.name);
                    }
                    None => {
                        tracing::warn!(partition = %p.name, "partition held by a long reader: deleting its rows instead; it will be dropped by a later purge");
                        let n = delete_before(&client, schema, &p, p.upper).await?;
                        report.add_deleted(p.class, n);
                        report.deferred.push(p.name);
                    }
                }
            }
            Action::Trim(p, cut) => {
                let n = if dry_run {
                    count(&client, schema, &p, Some(cut)).await?
                } else {
                    delete_before(&client, schema, &p, cut).await?
                };
                report.add_deleted(p.class, n);
                report.trimmed.push(p.name);
            }
        }
    }
    if !dry_run {
        let keep: Vec<Class> = Class::ALL
            .into_iter()
            .filter(|c| !partition_plan::window(retention, *c).is_zero())
            .collect();
        partition_ddl::premake(&mut client, schema, &keep, Utc::now().max(now)).await?;
    }
    Ok(report)
}

async fn count(
    client: &tokio_postgres::Client,
    schema: &str,
    p: &Partition,
    before: Option<DateTime<Utc>>,
) -> Result<u64> {
    let table = format!("{}.{}", ident(schema), ident(&p.name));
    Ok(match before {
        Some(cut) => {
            let sql = format!("SELECT count(*) FROM {table} WHERE ingest_date < $1");
            client.query_one(&sql, &[&cut]).await?.get::<_, i64>(0) as u64
        }
        None => rows_in(client, &table).await?,
    })
}

/// The rows of a whole partition. PostgreSQL's table statistics count them exactly when every
/// write was a committed insert or delete (then `n_live_tup = n_tup_ins - n_tup_del`); when they
/// disagree (reset after a crash, an aborted batch, an ANALYZE estimate) the table is counted.
/// Purge then costs milliseconds instead of a scan of every expired row.
async fn rows_in<C: tokio_postgres::GenericClient>(client: &C, table: &str) -> Result<u64> {
    let stats = client
        .query_opt(
            "SELECT n_live_tup, n_tup_ins, n_tup_del FROM pg_stat_all_tables WHERE relid = $1::text::regclass",
            &[&table],
        )
        .await?;
    if let Some(row) = stats {
        let (live, ins, del): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        if ins > 0 && live == ins - del {
            return Ok(live as u64);
        }
    }
    let n: i64 = client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await?
        .get(0);
    Ok(n as u64)
}

/// Drop a partition, counting its rows under the same lock. None when it stayed locked.
async fn drop_partition(
    client: &mut tokio_postgres::Client,
    schema: &str,
    p: &Partition,
) -> Result<Option<u64>> {
    let table = format!("{}.{}", ident(schema), ident(&p.name));
    for attempt in 1..=DROP_ATTEMPTS {
        let tx = client.transaction().await?;
        tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            .await?;
        let locked = tx
            .batch_execute(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
            .await;
        let result = match locked {
            Ok(()) => {
                let n = rows_in(&tx, &table).await?;
                tx.batch_execute(&format!("DROP TABLE {table}"))
                    .await
                    .map(|()| n)
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(n) => {
                tx.commit().await?;
                return Ok(Some(n));
            }
            Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                drop(tx);
                tracing::debug!(partition = %p.name, attempt, "lock not available");
                tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(attempt)))
                    .await;
            }
            Err(e) => {
                return Err(
                    crate::Error::from(e).context(format!("cannot drop partition {}", p.name))
                );
            }
        }
    }
    Ok(None)
}

async fn delete_before(
    client: &tokio_postgres::Client,
    schema: &str,
    p: &Partition,
    cut: DateTime<Utc>,
) -> Result<u64> {
    let table = format!("{}.{}", ident(schema), ident(&p.name));
    client
        .batch_execute(&format!("SET lock_timeout = '{LOCK_TIMEOUT}'"))
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
