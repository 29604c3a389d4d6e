//! `kasm-db vacuum`: reads every user table's statistics, decides with [`super::policy`] what
//! each needs, and (unless `--dry-run`) runs it: VACUUM (ANALYZE) or ANALYZE where thresholds
//! say so, ANALYZE on partitioned parents, and with `--full` VACUUM FULL under a lock timeout
//! for tables with enough reclaimable space, skipping `logs` partitions purge will drop. It
//! measures the space released and makes wraparound risk impossible to miss.
//!
//! VACUUM cannot run in a transaction block: every statement goes through one plain client
//! connection with `batch_execute`, never inside `transaction()`. `--dry-run` only reads.
//! Never touches system catalogs.

use super::policy::{self, Action, TableStat, Wraparound};
use crate::app::Ctx;
use crate::cli::VacuumArgs;
use crate::config::Config;
use crate::db::{self, ident};
use crate::error::{Error, Kind, Result};
use crate::output::Outcome;
use crate::sizing::bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

/// Advisory lock held by a running (non-dry) vacuum ("kasm-db" + 8).
const VACUUM_LOCK: i64 = 0x6b61_736d_6462_0008;
/// How long VACUUM FULL waits for its exclusive lock before skipping the table.
pub const FULL_LOCK_TIMEOUT: &str = "5s";

/// One table in the `vacuum --json` result.
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    pub table: String,
    pub kind: String,
    pub live_tuples: i64,
    pub dead_tuples: i64,
    pub dead_ratio: f64,
    pub last_vacuum: Option<DateTime<Utc>>,
    pub last_autovacuum: Option<DateTime<Utc>>,
    pub last_analyze: Option<DateTime<Utc>>,
    pub last_autoanalyze: Option<DateTime<Utc>>,
    pub xid_age: Option<i64>,
    pub wraparound: Option<Wraparound>,
    pub reclaimable_bytes: u64,
    pub bytes_before: u64,
    /// After the run (absent with --dry-run).
    pub bytes_after: Option<u64>,
    /// What was (or with --dry-run would be) done.
    pub action: Action,
    pub reason: String,
    pub done: bool,
    pub skipped: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct VacuumReport {
    pub tables: Vec<TableReport>,
    /// Sum over the tables acted on of pg_total_relation_size before minus after.
    pub released_bytes: u64,
    pub database: String,
    pub dry_run: bool,
    pub full: bool,
    pub freeze_max_age: i64,
    pub database_xid_age: i64,
    pub database_wraparound: Wraparound,
    /// Wraparound risks and failures, one sentence each.
    pub warnings: Vec<String>,
    /// Autovacuum settings for append-only log tables.
    pub suggestions: Vec<String>,
}

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

/// Decide and (unless dry-run) act on every table.
pub async fn run(
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

/// One "WRAPAROUND RISK" sentence for the database and each table past
/// autovacuum_freeze_max_age, worst first.
pub fn wraparound_warnings(
    database: &str,
    database_xid_age: i64,
    freeze_max_age: i64,
    tables: &[TableReport],
) -> Vec<String> {
    let mut out = Vec::new();
    let level = policy::wraparound(database_xid_age, freeze_max_age);
    if level >= Wraparound::Overdue {
        out.push(format!(
            "WRAPAROUND RISK ({level:?}): database {database} has xid age {database_xid_age} \
             (autovacuum_freeze_max_age {freeze_max_age}; PostgreSQL stops accepting writes near 2^31 = 2147483648). \
             Find what holds back the xmin horizon (long or prepared transactions, stale replication slots) and vacuum now."
        ));
    }
    let mut at_risk: Vec<&TableReport> = tables
        .iter()
        .filter(|r| r.wraparound >= Some(Wraparound::Overdue))
        .collect();
    at_risk.sort_by_key(|r| std::cmp::Reverse(r.xid_age));
    for r in at_risk {
        out.push(format!(
            "WRAPAROUND RISK ({:?}): {} has xid age {}; it needs VACUUM (FREEZE), and whatever blocks autovacuum removed.",
            r.wraparound.unwrap_or(Wraparound::Ok),
            r.table,
            r.xid_age.unwrap_or(0)
        ));
    }
    out
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

fn action_word(a: Action) -> &'static str {
    match a {
        Action::None => "-",
        Action::Analyze => "ANALYZE",
        Action::Vacuum => "VACUUM (ANALYZE)",
        Action::VacuumFreeze => "VACUUM (FREEZE, ANALYZE)",
        Action::VacuumFull => "VACUUM FULL",
    }
}

/// `kasm-db vacuum`.
pub async fn vacuum(ctx: &Ctx, args: &VacuumArgs) -> Result<Outcome> {
    let pool = ctx.pool(1).await?;
    let client = db::get(&pool).await?;
    if !args.dry_run {
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&VACUUM_LOCK])
            .await?
            .get(0);
        if !got {
            return Err(Error::temporary(format!(
                "another kasm-db vacuum is running on {}; try again later",
                ctx.db.redacted()
            )));
        }
    }
    let result = run(&client, &ctx.config, args.dry_run, args.full).await;
    if !args.dry_run {
        let _ = client
            .query("SELECT pg_advisory_unlock($1)", &[&VACUUM_LOCK])
            .await;
    }
    let report = result?;
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    let critical = report.database_wraparound == Wraparound::Critical
        || report
            .tables
            .iter()
            .any(|t| t.wraparound == Some(Wraparound::Critical));
    let failed = report.tables.iter().any(|t| t.error.is_some());
    let text = render(&report, &ctx.db.redacted());
    let outcome = Outcome::new(&report, text);
    Ok(if critical || failed {
        outcome.failed_check()
    } else {
        outcome
    })
}

pub fn render(r: &VacuumReport, target: &str) -> String {
    let mut out = String::new();
    let risks: Vec<&String> = r
        .warnings
        .iter()
        .filter(|w| w.starts_with("WRAPAROUND"))
        .collect();
    if !risks.is_empty() {
        out.push_str(&format!("{}\n", "!".repeat(78)));
        for w in &risks {
            out.push_str(&format!("!! {w}\n"));
        }
        out.push_str(&format!("{}\n\n", "!".repeat(78)));
    }
    out.push_str(&format!(
        "vacuum of {} ({target}){}{}: database xid age {} of autovacuum_freeze_max_age {}\n\n",
        r.database,
        if r.full { ", --full" } else { "" },
        if r.dry_run {
            ", DRY RUN: nothing changed"
        } else {
            ""
        },
        r.database_xid_age,
        r.freeze_max_age
    ));
    out.push_str(&format!(
        "  {:<44} {:>9} {:>7} {:>11} {:>11}  {}\n",
        "table", "dead", "dead%", "reclaimable", "xid age", "action"
    ));
    let mut quiet = 0;
    for t in &r.tables {
        if t.action == Action::None && t.dead_tuples == 0 && t.skipped.is_none() {
            quiet += 1;
            continue;
        }
        let state = match (&t.error, &t.skipped, t.done, r.dry_run) {
            (Some(e), _, _, _) => format!("FAILED: {e}"),
            (None, _, true, _) => "done".to_string(),
            (None, _, false, true) if t.action != Action::None => "would run".to_string(),
            _ => String::new(),
        };
        out.push_str(&format!(
            "  {:<44} {:>9} {:>6.1}% {:>11} {:>11}  {} {state}\n",
            t.table,
            t.dead_tuples,
            t.dead_ratio * 100.0,
            bytes(t.reclaimable_bytes),
            t.xid_age
                .map(|a| a.to_string())
                .unwrap_or_else(|| "-".into()),
            action_word(t.action),
        ));
        if let Some(s) = &t.skipped {
            out.push_str(&format!("      {s}\n"));
        }
    }
    if quiet > 0 {
        out.push_str(&format!(
            "  ({quiet} more table(s) within thresholds, nothing to do)\n"
        ));
    }
    out.push_str(&format!(
        "\nreleased to the operating system: {}\n",
        bytes(r.released_bytes)
    ));
    for w in r.warnings.iter().filter(|w| !w.starts_with("WRAPAROUND")) {
        out.push_str(&format!("warning: {w}\n"));
    }
    out.push_str("\nautovacuum suggestions:\n");
    for s in &r.suggestions {
        out.push_str(&format!("  - {s}\n"));
    }
    if !risks.is_empty() {
        out.push_str(&format!(
            "\n!! {} WRAPAROUND RISK(S): see the top of this report\n",
            risks.len()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, xid_age: i64) -> TableReport {
        TableReport {
            table: name.into(),
            kind: "r".into(),
            live_tuples: 1,
            dead_tuples: 0,
            dead_ratio: 0.0,
            last_vacuum: None,
            last_autovacuum: None,
            last_analyze: None,
            last_autoanalyze: None,
            xid_age: Some(xid_age),
            wraparound: Some(policy::wraparound(xid_age, 200_000_000)),
            reclaimable_bytes: 0,
            bytes_before: 8192,
            bytes_after: None,
            action: Action::None,
            reason: String::new(),
            done: false,
            skipped: None,
            error: None,
        }
    }

    #[test]
    fn wraparound_risk_cannot_be_missed() {
        let tables = [
            table("public.ok", 1000),
            table("public.old", 250_000_000),
            table("public.worse", 1_200_000_000),
        ];
        let w = wraparound_warnings("kasm", 1_200_000_000, 200_000_000, &tables);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].contains("database kasm") && w[0].contains("Critical"));
        assert!(w[1].contains("public.worse") && w[2].contains("public.old"));
        let report = VacuumReport {
            tables: tables.to_vec(),
            released_bytes: 0,
            database: "kasm".into(),
            dry_run: true,
            full: false,
            freeze_max_age: 200_000_000,
            database_xid_age: 1_200_000_000,
            database_wraparound: Wraparound::Critical,
            warnings: w,
            suggestions: Vec::new(),
        };
        let text = render(&report, "postgres@db/kasm");
        // A banner before anything else, and a reminder at the very end.
        assert!(text.starts_with("!!!!"), "{text}");
        assert!(
            text.lines().nth(1).unwrap().contains("WRAPAROUND RISK"),
            "{text}"
        );
        assert!(
            text.trim_end()
                .ends_with("3 WRAPAROUND RISK(S): see the top of this report"),
            "{text}"
        );
        // Nothing at risk: no banner.
        let calm = wraparound_warnings("kasm", 1000, 200_000_000, &tables[..1]);
        assert!(calm.is_empty());
    }
}
