//! The result of `kasm-db vacuum`: the `--json` document (per table, `released_bytes`, the
//! wraparound picture, suggestions) and its human rendering, where wraparound risk is a banner
//! above everything else and a reminder below. Pure: never does I/O.

use super::policy::{self, Action, Wraparound};
use crate::sizing::bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;

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

pub fn action_word(a: Action) -> &'static str {
    match a {
        Action::None => "-",
        Action::Analyze => "ANALYZE",
        Action::Vacuum => "VACUUM (ANALYZE)",
        Action::VacuumFreeze => "VACUUM (FREEZE, ANALYZE)",
        Action::VacuumFull => "VACUUM FULL",
    }
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
