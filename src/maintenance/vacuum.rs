//! The vacuum operation, for `kasm-db vacuum` and `serve`'s scheduled vacuum alike: reads every
//! user table's statistics, decides with [`super::policy`] what each needs, and (unless
//! `--dry-run`) runs it: VACUUM (ANALYZE) or ANALYZE where thresholds say so, ANALYZE on
//! partitioned parents, and with `--full` VACUUM FULL under a lock timeout for tables with
//! enough reclaimable space, skipping `logs` partitions purge will drop. It
//! measures the space released; the result and its rendering (where wraparound risk cannot be
//! missed) are in [`super::vacuum_report`].
//!
//! VACUUM cannot run in a transaction block: every statement goes through one plain client
//! connection with `batch_execute`, never inside `transaction()`. `--dry-run` only reads.
//! Never touches system catalogs. Unless `--dry-run`, takes the registry's vacuum lock
//! ([`Lock::Vacuum`]) itself, for every caller, so `kasm-db vacuum` and `serve`'s scheduled
//! vacuum never run at once; one that finds it held fails with [`Lock::busy`] (exit 75,
//! `locked_elsewhere` in `serve`).

use super::policy::{self, Action, TableStat};
use super::vacuum_report::{TableReport, VacuumReport, action_word, wraparound_warnings};
use crate::config::Config;
use crate::db::locks::{self, Lock};
use crate::db::{self, Pool, ident};
use crate::error::{Error, Kind, Result};
use crate::sizing::bytes;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

/// How long VACUUM FULL waits for its exclusive lock before skipping the table.
pub const FULL_LOCK_TIMEOUT: &str = "5s";

struct Settings {
    database: String,
    freeze_max_age: i64,
    server_version_num: i32,
    database_xid_age: i64,
    now: DateTime<Utc>,
}

async fn settings(client: &Client) -> Result<Settings> {
    let r = client
        .query_one(
            "SELECT current_database()::text, current_setting('autovacuum_freeze_max_age')::bigint,
                    current_setting('server_version_num')::int, age(datfrozenxid)::bigint, now()
             FROM pg_database WHERE datname = current_database()",
            &[],
        )
        .await?;
    Ok(Settings {
        database: r.get(0),
        freeze_max_age: r.get(1),
        server_version_num: r.get(2),
        database_xid_age: r.get(3),
        now: r.get(4),
    })
}

/// The statistics of every user table, materialized view and partitioned parent.
pub async fn table_stats(client: &Client) -> Result<Vec<TableStat>> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, c.relkind::text,
                    (SELECT p.relname::text FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
                     WHERE i.inhrelid = c.oid LIMIT 1),
                    coalesce(s.n_live_tup, 0), coalesce(s.n_dead_tup, 0), coalesce(s.n_mod_since_analyze, 0),
                    c.reltuples::float8,
                    (SELECT sum(st.avg_width)::float8 FROM pg_stats st
                     WHERE st.schemaname = n.nspname AND st.tablename = c.relname AND NOT st.inherited),
                    pg_relation_size(c.oid), pg_total_relation_size(c.oid),
                    s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze,
                    CASE WHEN c.relkind = 'p' THEN NULL ELSE age(c.relfrozenxid)::bigint END,
                    pg_has_role(c.relowner, 'USAGE')
                      OR pg_has_role((SELECT datdba FROM pg_database WHERE datname = current_database()), 'USAGE')
                      OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
             WHERE c.relkind IN ('r', 'm', 'p')
               AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname !~ '^pg_toast' AND n.nspname !~ '^pg_temp'
             ORDER BY 1, 2",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| TableStat {
            schema: r.get(0),
            table: r.get(1),
            kind: r.get::<_, String>(2).chars().next().unwrap_or('r'),
            parent: r.get(3),
            live_tuples: r.get(4),
            dead_tuples: r.get(5),
            mod_since_analyze: r.get(6),
            reltuples: r.get(7),
            avg_row_width: r.get(8),
            heap_bytes: r.get::<_, i64>(9).max(0) as u64,
            total_bytes: r.get::<_, i64>(10).max(0) as u64,
            last_vacuum: r.get(11),
            last_autovacuum: r.get(12),
            last_analyze: r.get(13),
            last_autoanalyze: r.get(14),
            xid_age: r.get(15),
            can_maintain: r.get(16),
        })
        .collect())
}

/// Decide and (unless dry-run, under the vacuum lock, which is released before the connection
/// goes back to `pool`) act on every table. `database` names the database in the error of a
/// vacuum that finds the lock held (a redacted description).
pub async fn run(
    pool: &Pool,
    database: &str,
    config: &Config,
    dry_run: bool,
    full: bool,
) -> Result<VacuumReport> {
    let client = db::get(pool).await?;
    if dry_run {
        return run_on(&client, config, true, full).await;
    }
    locks::hold(&client, Lock::Vacuum, database).await?;
    let report = run_on(&client, config, false, full).await;
    locks::release_pooled(client, Lock::Vacuum).await;
    report
}

async fn run_on(
    client: &Client,
    config: &Config,
    dry_run: bool,
    full: bool,
) -> Result<VacuumReport> {
    let s = settings(client).await?;
    let before = table_stats(client).await?;
    let mut reports = Vec::new();
    for t in &before {
        let (mut action, mut reason) = policy::decide(t, s.freeze_max_age);
        let mut skipped = None;
        if full && policy::worth_full(t) {
            if policy::purge_will_drop(t, &config.retention, s.now) {
                skipped = Some("VACUUM FULL skipped: the partition is wholly past its retention window and purge will drop it".to_string());
            } else {
                action = Action::VacuumFull;
                let back = policy::reclaimable_bytes(t);
                reason = format!(
                    "{} of {} reclaimable (at least {} and {}%); the rewrite needs about {} of free disk meanwhile",
                    bytes(back),
                    bytes(t.heap_bytes),
                    bytes(policy::FULL_MIN_BYTES),
                    (policy::FULL_MIN_FRACTION * 100.0) as u32,
                    bytes(t.total_bytes.saturating_sub(back))
                );
            }
        }
        reports.push(TableReport {
            table: t.name(),
            kind: t.kind.to_string(),
            live_tuples: t.live_tuples,
            dead_tuples: t.dead_tuples,
            dead_ratio: t.dead_ratio(),
            last_vacuum: t.last_vacuum,
            last_autovacuum: t.last_autovacuum,
            last_analyze: t.last_analyze,
            last_autoanalyze: t.last_autoanalyze,
            xid_age: t.xid_age,
            wraparound: t.xid_age.map(|a| policy::wraparound(a, s.freeze_max_age)),
            reclaimable_bytes: policy::reclaimable_bytes(t),
            bytes_before: t.total_bytes,
            bytes_after: None,
            action,
            reason,
            done: false,
            skipped,
            error: None,
        });
    }
    let mut warnings = Vec::new();
    if !dry_run {
        // Leaves first, partitioned parents last, so their ANALYZE samples fresh children.
        let mut order: Vec<usize> = (0..before.len()).collect();
        order.sort_by_key(|&i| before[i].kind == 'p');
        for i in order {
            let t = &before[i];
            let r = &mut reports[i];
            let name = format!("{}.{}", ident(&t.schema), ident(&t.table));
            let Some(sql) = r.action.sql(&name) else {
                continue;
            };
            match execute(client, r.action, &sql).await {
                Ok(()) => r.done = true,
                Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                    r.skipped = Some(format!(
                        "VACUUM FULL skipped: its exclusive lock was not granted within {FULL_LOCK_TIMEOUT} (the table is busy); plain VACUUM (ANALYZE) run instead"
                    ));
                    r.action = Action::Vacuum;
                    match execute(
                        client,
                        Action::Vacuum,
                        &Action::Vacuum.sql(&name).unwrap_or_default(),
                    )
                    .await
                    {
                        Ok(()) => r.done = true,
                        Err(e) => fail(r, e, &mut warnings)?,
                    }
                }
                Err(e) => fail(r, e, &mut warnings)?,
            }
        }
        let after: BTreeMap<String, TableStat> = table_stats(client)
            .await?
            .into_iter()
            .map(|t| (t.name(), t))
            .collect();
        for r in &mut reports {
            if let Some(a) = after.get(&r.table) {
                r.bytes_after = Some(a.total_bytes);
                r.xid_age = a.xid_age;
                r.wraparound = a.xid_age.map(|x| policy::wraparound(x, s.freeze_max_age));
            }
        }
    }
    let released_bytes = reports
        .iter()
        .filter(|r| r.done)
        .map(|r| {
            r.bytes_before
                .saturating_sub(r.bytes_after.unwrap_or(r.bytes_before))
        })
        .sum();
    let database_xid_age = if dry_run {
        s.database_xid_age
    } else {
        settings(client).await?.database_xid_age
    };
    let database_wraparound = policy::wraparound(database_xid_age, s.freeze_max_age);
    let mut risks = wraparound_warnings(&s.database, database_xid_age, s.freeze_max_age, &reports);
    risks.append(&mut warnings);
    let warnings = risks;
    let has_logs = before
        .iter()
        .any(|t| t.parent.as_deref() == Some("logs") && t.kind == 'p');
    Ok(VacuumReport {
        tables: reports,
        released_bytes,
        database: s.database,
        dry_run,
        full,
        freeze_max_age: s.freeze_max_age,
        database_xid_age,
        database_wraparound,
        warnings,
        suggestions: policy::autovacuum_suggestions(s.server_version_num, has_logs),
    })
}

/// Run one maintenance statement outside any transaction; VACUUM FULL under the lock timeout.
async fn execute(
    client: &Client,
    action: Action,
    sql: &str,
) -> std::result::Result<(), tokio_postgres::Error> {
    tracing::info!(%sql, "maintenance");
    if action == Action::VacuumFull {
        client
            .batch_execute(&format!("SET lock_timeout = '{FULL_LOCK_TIMEOUT}'"))
            .await?;
        let r = client.batch_execute(sql).await;
        client.batch_execute("RESET lock_timeout").await?;
        r
    } else {
        client.batch_execute(sql).await
    }
}

/// Record a table's failure; a lost connection aborts the whole run.
fn fail(r: &mut TableReport, e: tokio_postgres::Error, warnings: &mut Vec<String>) -> Result<()> {
    let e = Error::from(e);
    if e.kind() == Kind::Temporary {
        return Err(e);
    }
    warnings.push(format!(
        "{} failed on {}: {e}",
        action_word(r.action),
        r.table
    ));
    r.error = Some(e.to_string());
    Ok(())
}
