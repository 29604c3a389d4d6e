//! The size measurement of `kasm-db size` and the demo: measures the database (size, the `logs` relation by retention class, the
//! largest tables, dead tuples, size samples) and hands the numbers to the pure judgement in
//! [`super::assess`]. Read-only: never writes, never takes a lock beyond a plain SELECT, and
//! works on any database (Kasm's own included) whether or not kasm-db's schema is there. (The
//! command records a size sample beside it, [`super::samples::record_if_free`], and adds the
//! backups' verdict; both are fields of the report that `measure` leaves empty.)

use super::assess::{self, ClassStats, DeadTuples, Judgement, Measured, Status, Trend};
use super::cap_check;
use super::samples;
use crate::backup::check::TargetVerdict;
use crate::config::{Config, Window};
use crate::db::{ident, migrate};
use crate::error::Result;
use crate::sizing::bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

/// One of the largest tables.
#[derive(Debug, Clone, Serialize)]
pub struct TableSize {
    pub table: String,
    /// Heap, indexes and TOAST.
    pub bytes: u64,
    /// The planner's estimate (pg_class.reltuples); -1 when never analyzed.
    pub rows_estimate: i64,
}

/// The `size --json` document (the contract's fields first).
#[derive(Debug, Serialize)]
pub struct SizeReport {
    pub database_bytes: u64,
    pub logs_bytes: u64,
    pub logs_rows: i64,
    pub sessions: Option<u32>,
    pub tier: Option<crate::sizing::database::Tier>,
    pub status: Status,
    pub advice: Vec<String>,
    /// When the size cap (`retention.max_bytes`), not the windows, decides how long logs stay:
    /// over or near the cap, a projection past it, a class cut short by it (raises `status` to
    /// `warn`).
    pub warnings: Vec<String>,
    pub database: String,
    /// `kasm-db` (partitioned, managed by purge), `plain` (a `logs` table kasm-db did not
    /// create, such as Kasm's own), or `absent`.
    pub logs_relation: &'static str,
    pub classes: Vec<ClassStats>,
    pub projected_logs_bytes: Option<u64>,
    pub projected_database_bytes: Option<u64>,
    pub largest_tables: Vec<TableSize>,
    pub dead_tuples: Vec<DeadTuples>,
    pub trend: Option<Trend>,
    pub measured_at: DateTime<Utc>,
    /// The verdict of `backups check` (default criteria) on `backup.to`; null without one.
    pub backups: Option<TargetVerdict>,
    /// Whether this run recorded a size sample (`kasm-db size`; null when not asked to).
    pub sample: Option<super::samples::SampleRecord>,
    /// The replication slot of point-in-time recovery (`backup.wal_slot`) on this server, when
    /// it exists: whether something streams from it, and how much WAL it holds back.
    pub wal_slot: Option<SlotState>,
}

/// A physical replication slot as `pg_replication_slots` shows it (the slot guard's reading).
pub type SlotState = crate::db::replication::Slot;

/// The advice for a slot (pure): a slot nobody streams from keeps WAL on the primary until its
/// disk is full.
pub fn slot_advice(slot: &SlotState) -> Option<String> {
    (!slot.active).then(|| {
        format!(
            "the replication slot {} has no WAL stream{}: the server keeps every WAL segment \
             for it until its disk is full; start `kasm-db wal stream` (or serve with \
             backup.wal = true), or drop the slot when point-in-time recovery is no longer \
             wanted: SELECT pg_drop_replication_slot('{}')",
            slot.name,
            slot.retained_bytes
                .map(|b| format!(" and holds {} of WAL", crate::sizing::bytes(b)))
                .unwrap_or_default(),
            slot.name
        )
    })
}

/// Measure the database behind `client` and judge it for `sessions`.
pub async fn measure(
    client: &Client,
    config: &Config,
    sessions: Option<u32>,
) -> Result<SizeReport> {
    let schema = config.database.schema.as_str();
    let row = client
        .query_one(
            "SELECT current_database()::text, pg_database_size(current_database()), now()",
            &[],
        )
        .await?;
    let (database, database_bytes, now): (String, i64, DateTime<Utc>) =
        (row.get(0), row.get(1), row.get(2));
    let database_bytes = database_bytes.max(0) as u64;

    let managed = migrate::current_version(client, schema).await?.is_some()
        && regclass_exists(client, &qualified(schema, "logs_debug")).await?
        && regclass_exists(client, &qualified(schema, "logs_logs")).await?;
    let mut unreadable = Vec::new();
    let (logs_relation, classes) = if managed {
        let r = &config.retention;
        let mut classes = Vec::new();
        for (class, rel, window) in [
            ("debug", "logs_debug", r.debug),
            ("logs", "logs_logs", r.logs),
        ] {
            classes.push(
                class_stats(client, schema, class, rel, Some(window), &mut unreadable).await?,
            );
        }
        ("kasm-db", classes)
    } else if regclass_exists(client, &qualified(schema, "logs")).await? {
        (
            "plain",
            vec![class_stats(client, schema, "all", "logs", None, &mut unreadable).await?],
        )
    } else {
        ("absent", Vec::new())
    };

    let largest_tables = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname), pg_total_relation_size(c.oid), c.reltuples::bigint
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname !~ '^pg_toast' AND n.nspname !~ '^pg_temp'
             ORDER BY 2 DESC, 1 LIMIT 10",
            &[],
        )
        .await?
        .iter()
        .map(|r| TableSize {
            table: r.get(0),
            bytes: r.get::<_, i64>(1).max(0) as u64,
            rows_estimate: r.get(2),
        })
        .collect();
    let dead_tuples: Vec<DeadTuples> = client
        .query(
            "SELECT format('%I.%I', schemaname, relname), n_live_tup, n_dead_tup
             FROM pg_stat_user_tables WHERE n_dead_tup > 0
             ORDER BY n_dead_tup DESC, 1 LIMIT 10",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            let (live, dead): (i64, i64) = (r.get(1), r.get(2));
            DeadTuples {
                table: r.get(0),
                live,
                dead,
                ratio: dead as f64 / (live + dead).max(1) as f64,
            }
        })
        .collect();

    let tier_disk = sessions.map(|s| crate::sizing::database::tier(s).disk_gb as u64 * assess::GB);
    let sampled = samples::read_samples(client, schema, now - chrono::Duration::days(30)).await?;
    let trend = assess::trend(&sampled, database_bytes, tier_disk);
    let Judgement {
        tier,
        status,
        advice,
        projected_logs_bytes,
        projected_database_bytes,
    } = assess::judge(&Measured {
        database_bytes,
        classes: (logs_relation != "absent").then_some(&classes[..]),
        managed,
        sessions,
        retention: config.retention,
        dead: &dead_tuples,
        trend: trend.as_ref(),
        now,
    });
    let mut advice = advice;
    let mut status = status;
    let wal_slot = crate::db::replication::slot(client, &config.backup.wal_slot)
        .await
        .ok()
        .and_then(|r| r.slot);
    if let Some(a) = wal_slot.as_ref().and_then(slot_advice) {
        tracing::warn!("{a}");
        advice.insert(0, a);
        status = status.max(Status::Warn);
    }
    let warnings = if managed {
        cap_check::warnings(&classes, &config.retention, now)
    } else {
        Vec::new()
    };
    if !warnings.is_empty() {
        status = status.max(Status::Warn);
    }
    for rel in unreadable {
        let w = format!(
            "this role may not read {rel}: its rows are the planner's estimate and its time range \
             is unknown (GRANT SELECT ON {rel}, or run size as its owner, for exact figures)"
        );
        tracing::warn!("{w}");
        advice.push(w);
    }
    Ok(SizeReport {
        database_bytes,
        logs_bytes: classes.iter().map(|c| c.bytes).sum(),
        logs_rows: classes.iter().map(|c| c.rows).sum(),
        sessions,
        tier,
        status,
        advice,
        warnings,
        database,
        logs_relation,
        classes,
        projected_logs_bytes,
        projected_database_bytes,
        largest_tables,
        dead_tuples,
        trend,
        measured_at: now,
        backups: None,
        sample: None,
        wal_slot,
    })
}

fn qualified(schema: &str, rel: &str) -> String {
    format!("{}.{}", ident(schema), ident(rel))
}

async fn regclass_exists(client: &Client, name: &str) -> Result<bool> {
    Ok(client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
        .await?
        .get(0))
}

/// Bytes (all leaf partitions, with indexes and TOAST), exact rows and the ingest_date range
/// of one class (or of a plain `logs` table, whose ingest_date column may be absent).
async fn class_stats(
    client: &Client,
    schema: &str,
    class: &str,
    rel: &str,
    window: Option<Window>,
    unreadable: &mut Vec<String>,
) -> Result<ClassStats> {
    let name = qualified(schema, rel);
    let row = client
        .query_one(
            "SELECT CASE WHEN c.relkind = 'p'
                         THEN (SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0) FROM pg_partition_tree(c.oid) t)
                         ELSE pg_total_relation_size(c.oid) END::bigint,
                    (SELECT count(*) FROM pg_partition_tree(c.oid) t WHERE t.isleaf AND c.relkind = 'p')::int
             FROM pg_class c WHERE c.oid = to_regclass($1)",
            &[&name],
        )
        .await?;
    let (bytes, partitions): (i64, i32) = (row.get(0), row.get(1));
    let has_ingest_date: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1)
                 AND attname = 'ingest_date' AND NOT attisdropped)",
            &[&name],
        )
        .await?
        .get(0);
    // The rows inside the window (ingested at most `window` before now) give the ingest rate.
    let window_s = window
        .map(|w| w.as_duration().as_secs() as f64)
        .unwrap_or(0.0);
    let readable: bool = client
        .query_one(
            "SELECT has_table_privilege(to_regclass($1), 'SELECT')",
            &[&name],
        )
        .await?
        .get(0);
    let row = if !readable {
        // Counting would fail half way: the estimate of every leaf instead, and a warning.
        unreadable.push(format!("{schema}.{rel}"));
        client
            .query_one(
                "SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint, NULL::timestamptz,
                        NULL::timestamptz, 0::bigint, NULL::timestamptz
                 FROM pg_class c
                 WHERE c.relkind = 'r' AND (c.oid = to_regclass($1)
                       OR c.oid IN (SELECT relid FROM pg_partition_tree(to_regclass($1))))",
                &[&name],
            )
            .await?
    } else if has_ingest_date {
        let sql = format!(
            "SELECT count(*), min(ingest_date)::timestamptz, max(ingest_date)::timestamptz,
                    count(*) FILTER (WHERE ingest_date >= now() - make_interval(secs => $1)),
                    min(ingest_date) FILTER (WHERE ingest_date >= now() - make_interval(secs => $1))::timestamptz
             FROM {name}"
        );
        client.query_one(&sql, &[&window_s]).await?
    } else {
        let sql = format!(
            "SELECT count(*), NULL::timestamptz, NULL::timestamptz, 0::bigint, NULL::timestamptz FROM {name}"
        );
        client.query_one(&sql, &[]).await?
    };
    let (rows, oldest, newest): (i64, Option<DateTime<Utc>>, Option<DateTime<Utc>>) =
        (row.get(0), row.get(1), row.get(2));
    let (recent_rows, recent_oldest): (i64, Option<DateTime<Utc>>) = (row.get(3), row.get(4));
    let bytes = bytes.max(0) as u64;
    let recent_bytes = (bytes as f64 * recent_rows as f64 / rows.max(1) as f64) as u64;
    Ok(ClassStats {
        class: class.to_string(),
        bytes,
        rows,
        oldest,
        newest,
        partitions: partitions.max(0) as u32,
        retention_s: window.map(|w| w.as_duration().as_secs()),
        projected_bytes: window
            .and_then(|w| assess::project(recent_bytes, recent_oldest, newest, w)),
    })
}

fn day(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "-".into())
}

/// The human rendering.
pub fn render(r: &SizeReport, target: &str) -> String {
    let status = match r.status {
        Status::Ok => "ok".to_string(),
        s => s.as_str().to_uppercase(),
    };
    let mut out = format!(
        "database {} ({target}): {}   status: {status}\n",
        r.database,
        bytes(r.database_bytes)
    );
    if let Some(b) = &r.backups {
        out.push_str(&format!("backups at {}: {}\n", b.target, b.line()));
    }
    match &r.tier {
        Some(t) => out.push_str(&format!(
            "tier for {} sessions: {}-{} sessions, {} CPUs, {} GB RAM, {} GB disk{}\n",
            r.sessions.unwrap_or(0),
            t.sessions_min,
            t.sessions_max,
            t.cpus,
            t.ram_gb,
            t.disk_gb,
            if t.beyond_guide {
                " (EXTRAPOLATED beyond the guide)"
            } else {
                ""
            }
        )),
        None => out.push_str("tier: unknown (no --sessions / sizing.sessions)\n"),
    }
    out.push_str(&format!("\nlogs relation: {}\n", r.logs_relation));
    if !r.classes.is_empty() {
        out.push_str(&format!(
            "  {:<6} {:>12} {:>12} {:>5}  {:<16}  {:<16}  {:>12}\n",
            "class", "bytes", "rows", "parts", "oldest", "newest", "projected"
        ));
        for c in &r.classes {
            out.push_str(&format!(
                "  {:<6} {:>12} {:>12} {:>5}  {:<16}  {:<16}  {:>12}\n",
                c.class,
                bytes(c.bytes),
                c.rows,
                c.partitions,
                day(c.oldest),
                day(c.newest),
                c.projected_bytes.map(bytes).unwrap_or_else(|| "-".into())
            ));
        }
    }
    out.push_str("\nlargest tables:\n");
    for t in &r.largest_tables {
        out.push_str(&format!("  {:>12}  {}\n", bytes(t.bytes), t.table));
    }
    if !r.dead_tuples.is_empty() {
        out.push_str("\ndead tuples:\n");
        for d in &r.dead_tuples {
            out.push_str(&format!(
                "  {:>5.1}%  {:>10} dead  {}\n",
                d.ratio * 100.0,
                d.dead,
                d.table
            ));
        }
    }
    if let Some(t) = &r.trend {
        out.push_str(&format!(
            "\ngrowth: {} per day over {} samples ({} to {})\n",
            bytes(t.bytes_per_day.max(0.0) as u64),
            t.samples,
            day(Some(t.first)),
            day(Some(t.last))
        ));
    }
    if !r.warnings.is_empty() {
        out.push_str("\nsize cap:\n");
        for w in &r.warnings {
            out.push_str(&format!("  ! {w}\n"));
        }
    }
    out.push_str("\nadvice:\n");
    for a in &r.advice {
        out.push_str(&format!("  - {a}\n"));
    }
    if let Some(v) = r.backups.as_ref().and_then(|b| b.verdict.as_ref()) {
        for reason in &v.reasons {
            out.push_str(&format!(
                "  - backups: {reason} (see `kasm-db backups check`)\n"
            ));
        }
    }
    match &r.sample {
        Some(s) if s.recorded => out.push_str(
            "\nsize sample recorded (the size-over-time chart of `kasm-db report`; --no-record skips it)\n",
        ),
        Some(s) => out.push_str(&format!(
            "\nsize sample not recorded: {}\n",
            s.reason.as_deref().unwrap_or("-")
        )),
        None => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_nobody_streams_from_is_advice() {
        let mut s = SlotState {
            name: "kasm_db".into(),
            active: true,
            retained_bytes: Some(3 << 30),
            wal_status: None,
        };
        assert_eq!(slot_advice(&s), None);
        s.active = false;
        let a = slot_advice(&s).unwrap();
        assert!(
            a.contains("pg_drop_replication_slot('kasm_db')") && a.contains("GiB"),
            "{a}"
        );
    }
}
