//! The decisions of `vacuum`, as pure functions of the statistics: what each table needs
//! (nothing, ANALYZE, VACUUM (ANALYZE), VACUUM (FREEZE, ANALYZE), VACUUM FULL), how much space
//! a rewrite would give back, how close a table is to transaction-id wraparound, which `logs`
//! partitions purge will drop anyway, and the autovacuum settings to suggest. Never does I/O
//! and never reads the clock (`now` comes from the database).

use crate::config::RetentionConfig;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Serialize;

/// PostgreSQL's page size and per-page header, per-tuple header and line pointer.
const PAGE: f64 = 8192.0;
const PAGE_HEADER: f64 = 24.0;
const TUPLE_HEADER: f64 = 24.0;
const LINE_POINTER: f64 = 4.0;

/// VACUUM when dead tuples exceed 50 + 10% of the live ones (autovacuum's default trigger is
/// 50 + 20%: this is the monthly catch-up the guide asks for).
pub const VACUUM_THRESHOLD: f64 = 50.0;
pub const VACUUM_SCALE: f64 = 0.1;
/// ANALYZE when rows modified since the last analyze exceed 50 + 10% of the live ones.
pub const ANALYZE_SCALE: f64 = 0.1;
/// VACUUM FULL only when at least this much (and this fraction of the table) comes back.
pub const FULL_MIN_BYTES: u64 = 1 << 20;
pub const FULL_MIN_FRACTION: f64 = 0.2;
/// Freeze when a table's xid age passes this fraction of autovacuum_freeze_max_age.
pub const FREEZE_FRACTION: f64 = 0.5;
/// Half way to wraparound (2^31): critical whatever the settings.
pub const CRITICAL_XID_AGE: i64 = 1_000_000_000;

/// The statistics of one table, as `vacuum` reads them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableStat {
    pub schema: String,
    pub table: String,
    /// `r` table, `m` materialized view, `p` partitioned parent.
    pub kind: char,
    /// The parent of a partition, unqualified (`logs_debug` for `logs_debug_p2026112413`).
    pub parent: Option<String>,
    pub live_tuples: i64,
    pub dead_tuples: i64,
    pub mod_since_analyze: i64,
    /// pg_class.reltuples (-1 when never vacuumed or analyzed).
    pub reltuples: f64,
    /// Sum of the columns' average widths from pg_stats (None before the first ANALYZE).
    pub avg_row_width: Option<f64>,
    pub heap_bytes: u64,
    pub total_bytes: u64,
    pub last_vacuum: Option<DateTime<Utc>>,
    pub last_autovacuum: Option<DateTime<Utc>>,
    pub last_analyze: Option<DateTime<Utc>>,
    pub last_autoanalyze: Option<DateTime<Utc>>,
    /// age(relfrozenxid); None for partitioned parents, which hold no rows.
    pub xid_age: Option<i64>,
    /// Whether this role may VACUUM/ANALYZE it (owner, database owner or superuser);
    /// PostgreSQL silently skips the others with a warning.
    pub can_maintain: bool,
}

impl TableStat {
    pub fn dead_ratio(&self) -> f64 {
        self.dead_tuples as f64 / (self.live_tuples + self.dead_tuples).max(1) as f64
    }
    pub fn name(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }
}

/// What to do with a table, mildest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    None,
    Analyze,
    Vacuum,
    VacuumFreeze,
    VacuumFull,
}

impl Action {
    /// The SQL for a table (already quoted).
    pub fn sql(self, table: &str) -> Option<String> {
        match self {
            Action::None => None,
            Action::Analyze => Some(format!("ANALYZE {table}")),
            Action::Vacuum => Some(format!("VACUUM (ANALYZE) {table}")),
            Action::VacuumFreeze => Some(format!("VACUUM (FREEZE, ANALYZE) {table}")),
            Action::VacuumFull => Some(format!("VACUUM (FULL, ANALYZE) {table}")),
        }
    }
}

/// Bytes a rewrite would give back: the larger of the dead tuples' share of the heap and the
/// heap beyond what the live rows need (free space left by earlier vacuums).
pub fn reclaimable_bytes(t: &TableStat) -> u64 {
    let by_dead = (t.heap_bytes as f64 * t.dead_ratio()) as u64;
    let by_free = match t.avg_row_width {
        Some(width) if t.reltuples >= 0.0 => {
            let tuple = maxalign(TUPLE_HEADER + width) + LINE_POINTER;
            let per_page = ((PAGE - PAGE_HEADER) / tuple).floor().max(1.0);
            let needed = (t.reltuples / per_page).ceil() * PAGE;
            (t.heap_bytes as f64 - needed).max(0.0) as u64
        }
        _ => 0,
    };
    by_dead.max(by_free)
}

fn maxalign(x: f64) -> f64 {
    (x / 8.0).ceil() * 8.0
}

/// How close a table (or the database) is to transaction-id wraparound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Wraparound {
    /// Below half of autovacuum_freeze_max_age.
    Ok,
    /// Past half: freeze it now, on our schedule rather than autovacuum's.
    Freeze,
    /// Past autovacuum_freeze_max_age: an anti-wraparound autovacuum should be running; if the
    /// age keeps growing something (a long transaction, a stale replication slot) blocks it.
    Overdue,
    /// Past 1 billion, half way to the 2^31 limit where PostgreSQL stops writes.
    Critical,
}

pub fn wraparound(xid_age: i64, freeze_max_age: i64) -> Wraparound {
    if xid_age >= CRITICAL_XID_AGE {
        Wraparound::Critical
    } else if xid_age >= freeze_max_age {
        Wraparound::Overdue
    } else if xid_age as f64 >= freeze_max_age as f64 * FREEZE_FRACTION {
        Wraparound::Freeze
    } else {
        Wraparound::Ok
    }
}

/// The maintenance (short of FULL) a table needs, and why.
pub fn decide(t: &TableStat, freeze_max_age: i64) -> (Action, String) {
    if !t.can_maintain {
        return (
            Action::None,
            "not owned by this role: VACUUM and ANALYZE would skip it (run as its owner)".into(),
        );
    }
    if t.kind == 'p' {
        return (
            Action::Analyze,
            "partitioned parent: autovacuum never analyzes it, so the planner's statistics for the whole relation come only from here".into(),
        );
    }
    let live = t.live_tuples.max(0) as f64;
    if let Some(age) = t.xid_age {
        if wraparound(age, freeze_max_age) > Wraparound::Ok {
            return (
                Action::VacuumFreeze,
                format!(
                    "xid age {age} is past half of autovacuum_freeze_max_age ({freeze_max_age})"
                ),
            );
        }
    }
    if t.dead_tuples as f64 > VACUUM_THRESHOLD + VACUUM_SCALE * live {
        return (
            Action::Vacuum,
            format!(
                "{} dead tuples ({:.1}%) exceed 50 + 10% of {} live",
                t.dead_tuples,
                t.dead_ratio() * 100.0,
                t.live_tuples
            ),
        );
    }
    let never_analyzed = t.last_analyze.is_none() && t.last_autoanalyze.is_none();
    if (never_analyzed && t.live_tuples > 0)
        || t.mod_since_analyze as f64 > VACUUM_THRESHOLD + ANALYZE_SCALE * live
    {
        return (
            Action::Analyze,
            if never_analyzed {
                "never analyzed".to_string()
            } else {
                format!(
                    "{} rows modified since the last analyze",
                    t.mod_since_analyze
                )
            },
        );
    }
    (Action::None, "within thresholds".into())
}

/// Whether VACUUM FULL is worth its exclusive lock: at least 1 MiB and 20% of the table back.
pub fn worth_full(t: &TableStat) -> bool {
    if t.kind == 'p' || !t.can_maintain {
        return false;
    }
    let r = reclaimable_bytes(t);
    r >= FULL_MIN_BYTES && r as f64 >= t.heap_bytes as f64 * FULL_MIN_FRACTION
}

/// The time range of a kasm-db `logs` partition from its name (the ingest code's convention:
/// `logs_debug_pYYYYMMDDHH` hourly, `logs_logs_pYYYYMMDD` daily, UTC).
pub fn partition_range(table: &str) -> Option<(&'static str, DateTime<Utc>, DateTime<Utc>)> {
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(h) = table.strip_prefix("logs_debug_p").filter(|h| digits(h, 10)) {
        let t = NaiveDateTime::parse_from_str(&format!("{h}0000"), "%Y%m%d%H%M%S").ok()?;
        let start = t.and_utc();
        return Some(("debug", start, start + chrono::Duration::hours(1)));
    }
    if let Some(d) = table.strip_prefix("logs_logs_p").filter(|d| digits(d, 8)) {
        let start = NaiveDate::parse_from_str(d, "%Y%m%d")
            .ok()?
            .and_hms_opt(0, 0, 0)?
            .and_utc();
        return Some(("logs", start, start + chrono::Duration::days(1)));
    }
    None
}

/// True for a partition of kasm-db's `logs` that lies wholly outside its class's retention
/// window: purge drops it, so rewriting it would be wasted work under an exclusive lock.
pub fn purge_will_drop(t: &TableStat, retention: &RetentionConfig, now: DateTime<Utc>) -> bool {
    let Some(parent) = t.parent.as_deref() else {
        return false;
    };
    let Some((class, _, end)) = partition_range(&t.table) else {
        return false;
    };
    let expected_parent = if class == "debug" {
        "logs_debug"
    } else {
        "logs_logs"
    };
    if parent != expected_parent {
        return false;
    }
    let window = if class == "debug" {
        retention.debug
    } else {
        retention.logs
    };
    end <= now - window.as_chrono()
}

/// Autovacuum settings to suggest for append-only log partitions. PG 13 added insert-driven
/// autovacuum (`autovacuum_vacuum_insert_*`); older servers only get the freeze advice.
pub fn autovacuum_suggestions(server_version_num: i32, has_kasm_db_logs: bool) -> Vec<String> {
    let target = if has_kasm_db_logs {
        "kasm-db's logs partitions (set on each partition, e.g. when it is created; a partitioned parent takes no autovacuum settings)"
    } else {
        "append-only log tables (Kasm's own logs table, for instance)"
    };
    let mut s = Vec::new();
    if server_version_num >= 130_000 {
        s.push(format!(
            "For {target}: ALTER TABLE ... SET (autovacuum_vacuum_insert_threshold = 10000, \
             autovacuum_vacuum_insert_scale_factor = 0.05) so that inserts alone trigger a vacuum that sets the \
             visibility map and freezes early, keeping index-only scans and anti-wraparound vacuums cheap."
        ));
    } else {
        s.push(format!(
            "This server is older than PostgreSQL 13, so inserts never trigger autovacuum; for {target} run \
             kasm-db vacuum on a schedule (schedule.vacuum) or upgrade to get autovacuum_vacuum_insert_threshold."
        ));
    }
    s.push(
        "Also autovacuum_freeze_min_age = 0 on log partitions no longer written, so that a single vacuum freezes them for good."
            .to_string(),
    );
    s.push(
        "Tables that purge or Kasm's retention DELETE from: autovacuum_vacuum_scale_factor = 0.05 and \
         autovacuum_analyze_scale_factor = 0.02 keep dead tuples from piling up between monthly maintenance runs."
            .to_string(),
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn stat(live: i64, dead: i64) -> TableStat {
        TableStat {
            schema: "public".into(),
            table: "t".into(),
            kind: 'r',
            parent: None,
            live_tuples: live,
            dead_tuples: dead,
            mod_since_analyze: 0,
            reltuples: live as f64,
            avg_row_width: None,
            heap_bytes: 0,
            total_bytes: 0,
            last_vacuum: None,
            last_autovacuum: None,
            last_analyze: Some(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()),
            last_autoanalyze: None,
            xid_age: Some(1000),
            can_maintain: true,
        }
    }

    #[test]
    fn decisions_table() {
        let mut never = stat(10, 0);
        never.last_analyze = None;
        let mut parent = stat(0, 0);
        parent.kind = 'p';
        parent.xid_age = None;
        let mut old = stat(10, 0);
        old.xid_age = Some(150_000_000);
        let mut modified = stat(1000, 0);
        modified.mod_since_analyze = 151;
        let cases = [
            (stat(1000, 0), Action::None),
            (stat(1000, 150), Action::None),
            (stat(1000, 151), Action::Vacuum),
            (stat(0, 51), Action::Vacuum),
            (stat(20_000, 180_000), Action::Vacuum),
            (never, Action::Analyze),
            (parent, Action::Analyze),
            (old, Action::VacuumFreeze),
            (modified, Action::Analyze),
            (
                TableStat {
                    can_maintain: false,
                    ..stat(20_000, 180_000)
                },
                Action::None,
            ),
        ];
        for (t, want) in cases {
            assert_eq!(decide(&t, 200_000_000).0, want, "{t:?}");
        }
    }

    #[test]
    fn wraparound_levels() {
        let max = 200_000_000;
        for (age, want) in [
            (1_000, Wraparound::Ok),
            (99_999_999, Wraparound::Ok),
            (100_000_000, Wraparound::Freeze),
            (200_000_000, Wraparound::Overdue),
            (1_000_000_000, Wraparound::Critical),
            (2_100_000_000, Wraparound::Critical),
        ] {
            assert_eq!(wraparound(age, max), want, "{age}");
        }
    }

    #[test]
    fn reclaimable_from_dead_tuples_or_free_space() {
        // 90% dead: 90% of the heap.
        let mut t = stat(20_000, 180_000);
        t.heap_bytes = 28_000_000;
        assert_eq!(reclaimable_bytes(&t), 25_200_000);
        assert!(worth_full(&t));
        // After a plain VACUUM: no dead tuples, but 20k rows of ~105 bytes need ~345 pages.
        let mut v = stat(20_000, 0);
        v.heap_bytes = 3449 * 8192;
        v.avg_row_width = Some(105.0);
        let r = reclaimable_bytes(&v);
        assert_eq!(r, (3449 - 345) * 8192);
        assert!(worth_full(&v));
        // A tight table gives nothing back and is left alone.
        v.heap_bytes = 345 * 8192;
        assert_eq!(reclaimable_bytes(&v), 0);
        assert!(!worth_full(&v));
        // Small wins are not worth an exclusive lock.
        let mut small = stat(10, 90);
        small.heap_bytes = 100_000;
        assert!(!worth_full(&small));
    }

    #[test]
    fn partitions_purge_will_drop() {
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 13, 30, 0).unwrap();
        let r = RetentionConfig::default(); // debug 4h, logs 7d
        let part = |name: &str, parent: &str| {
            let mut t = stat(1, 0);
            t.table = name.into();
            t.parent = Some(parent.into());
            t
        };
        let cases = [
            ("logs_debug_p2026112408", "logs_debug", true),
            ("logs_debug_p2026112412", "logs_debug", false),
            ("logs_logs_p20261116", "logs_logs", true),
            ("logs_logs_p20261117", "logs_logs", false),
            ("logs_logs_p2026111", "logs_logs", false),
            ("logs_logs_p20261116", "other", false),
        ];
        for (name, parent, want) in cases {
            assert_eq!(
                purge_will_drop(&part(name, parent), &r, now),
                want,
                "{name}"
            );
        }
        // 09:00-10:00 is not wholly older than 09:30.
        assert!(!purge_will_drop(
            &part("logs_debug_p2026112409", "logs_debug"),
            &r,
            now
        ));
        // Retention 0: every partition that has ended goes; the current one is purge's
        // boundary partition (rows deleted, not dropped).
        let zero = RetentionConfig {
            debug: crate::config::Window::ZERO,
            logs: crate::config::Window::ZERO,
            max_bytes: None,
        };
        assert!(purge_will_drop(
            &part("logs_logs_p20261123", "logs_logs"),
            &zero,
            now
        ));
        assert!(!purge_will_drop(
            &part("logs_debug_p2026112413", "logs_debug"),
            &zero,
            now
        ));
        assert_eq!(
            partition_range("logs_debug_p2026112413").map(|r| (r.0, r.1.to_rfc3339())),
            Some(("debug", "2026-11-24T13:00:00+00:00".to_string()))
        );
    }

    #[test]
    fn suggestions_depend_on_the_server_version() {
        let new = autovacuum_suggestions(150_004, true);
        assert!(new[0].contains("autovacuum_vacuum_insert_threshold"));
        let old = autovacuum_suggestions(120_010, false);
        assert!(old[0].contains("older than PostgreSQL 13"));
    }
}
