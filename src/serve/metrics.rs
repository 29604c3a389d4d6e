//! The counters and gauges of `serve`, rendered as Prometheus text (names prefixed `kasm_db_`).
//!
//! In-memory only: a label set per series, updated by the HTTP handlers, the follower, the
//! scheduler and the bootstrap, with the forwarder's counters copied in at scrape time. Never
//! holds a secret or a record's content in a label; labels are fixed words (class, source, sink,
//! endpoint, code, job, result) or a backup target without credentials (`backup_status.rs`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Type {
    Counter,
    Gauge,
}

/// One series key: metric name and its rendered label set (`{a="x",b="y"}` or empty).
type Key = (&'static str, String);

#[derive(Debug, Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<Key, (Type, f64)>>,
}

/// The `# HELP` line of every family, without the `kasm_db_` prefix; a name missing here is
/// caught by the unit test that reads `src/serve/` for the names it sets.
const HELP: &[(&str, &str)] = &[
    (
        "backup_check_ok",
        "1 when the defaults of `backups check` are met at the target, else 0.",
    ),
    ("backup_count", "Complete backups at the target."),
    (
        "backup_last_duration_seconds",
        "Duration of the last scheduled backup.",
    ),
    (
        "backup_last_size_bytes",
        "Size of the last scheduled backup.",
    ),
    (
        "backup_last_success_timestamp_seconds",
        "When the last scheduled backup completed.",
    ),
    (
        "backup_last_verification_ok",
        "1/0: the latest verification of the newest verified backup at the target.",
    ),
    (
        "backup_last_verification_timestamp_seconds",
        "When the newest verified backup at the target was last verified.",
    ),
    (
        "backup_listed_timestamp_seconds",
        "When the listing behind the target's backup gauges was read.",
    ),
    (
        "backup_listing_ok",
        "1 when the latest listing of the target worked, else 0.",
    ),
    (
        "backup_newest_age_seconds",
        "Age of the newest complete backup at the target.",
    ),
    (
        "backup_newest_timestamp_seconds",
        "When the newest complete backup at the target was made.",
    ),
    ("database_bytes", "Size of the database."),
    ("database_up", "1 when the database answers, else 0."),
    (
        "dropped_total",
        "Records dropped by retention 0 with no SIEM.",
    ),
    (
        "forward_dead_lettered_total",
        "Records the SIEM refused, written to the dead-letter file.",
    ),
    (
        "forward_possible_duplicates_total",
        "Records sent again after an unacknowledged attempt.",
    ),
    (
        "forward_replayed_total",
        "Records replayed from the forwarder's spool after a restart.",
    ),
    ("forward_retried_total", "Delivery attempts retried."),
    ("forward_sent_total", "Records delivered to the SIEM."),
    (
        "forward_spool_bytes",
        "Bytes queued in the forwarder's spool.",
    ),
    (
        "forward_spool_corrupt_regions_total",
        "Corrupt regions skipped in the forwarder's spool.",
    ),
    ("forwarded_total", "Records handed to the SIEM forwarder."),
    (
        "http_responses_total",
        "HTTP responses of the ingest endpoints.",
    ),
    ("ingested_total", "Records stored in the database."),
    (
        "job_last_duration_seconds",
        "Duration of the job's last run.",
    ),
    (
        "job_last_success_timestamp_seconds",
        "When the job last succeeded.",
    ),
    ("job_runs_total", "Scheduled slots of the job, by result."),
    ("logs_bytes", "Size of the logs of the class."),
    (
        "logs_cap_within",
        "1 when the logs are within retention.max_bytes after the last purge, else 0.",
    ),
    (
        "notify_deliveries_total",
        "Job notifications sent, by result.",
    ),
    (
        "notify_failures_total",
        "Job notifications that could not be delivered.",
    ),
    (
        "purge_cap_dropped_partitions_total",
        "Partitions the size cap dropped before their windows ended.",
    ),
    (
        "rejected_total",
        "Lines rejected as malformed or refused by the database.",
    ),
    (
        "restore_last_duration_seconds",
        "Duration of the newest passed full restore test of the target.",
    ),
    (
        "restore_last_test_timestamp_seconds",
        "When the newest passed full restore test of the target ran.",
    ),
    (
        "spool_bytes",
        "Bytes waiting in serve's spool for the database.",
    ),
    (
        "spool_loaded_total",
        "Records loaded from serve's spool into the database.",
    ),
    (
        "spooled_total",
        "Records written to serve's spool while the database was unavailable.",
    ),
    (
        "wal_slot_active",
        "1 when the WAL stream's replication slot has a consumer (pg_receivewal), else 0.",
    ),
    (
        "wal_slot_ok",
        "0 when the slot guard finds a problem: no consumer and more WAL kept than backup.wal_slot_max_retained, or WAL lost.",
    ),
    (
        "wal_slot_retained_bytes",
        "WAL the replication slot keeps on the primary (current position minus restart_lsn).",
    ),
    (
        "wal_streaming",
        "1 while this replica streams WAL to the backup target (backup.wal = true).",
    ),
];

fn help(name: &str) -> &'static str {
    HELP.iter()
        .find(|(n, _)| *n == name)
        .map_or("A kasm-db series.", |(_, h)| h)
}

/// A label value as the text format writes it: backslash, double quote and newline escaped.
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value as Prometheus writes it: `+Inf`, `-Inf`, `NaN`, else the number.
fn value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        v.to_string()
    }
}

fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

impl Metrics {
    /// Add `n` to the counter `kasm_db_<name>`.
    pub fn add(&self, name: &'static str, pairs: &[(&str, &str)], n: u64) {
        let mut s = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let e = s
            .entry((name, labels(pairs)))
            .or_insert((Type::Counter, 0.0));
        e.1 += n as f64;
    }

    /// Set the counter `kasm_db_<name>` to `total`, for counters kept elsewhere (the
    /// forwarder's) and copied in at scrape time.
    pub fn set_counter(&self, name: &'static str, pairs: &[(&str, &str)], total: u64) {
        let mut s = self.series.lock().unwrap_or_else(|p| p.into_inner());
        s.insert((name, labels(pairs)), (Type::Counter, total as f64));
    }

    /// Set the gauge `kasm_db_<name>`.
    pub fn set(&self, name: &'static str, pairs: &[(&str, &str)], v: f64) {
        let mut s = self.series.lock().unwrap_or_else(|p| p.into_inner());
        s.insert((name, labels(pairs)), (Type::Gauge, v));
    }

    /// Drop the series `kasm_db_<name>` with these labels (a gauge that no longer applies).
    pub fn remove(&self, name: &'static str, pairs: &[(&str, &str)]) {
        let mut s = self.series.lock().unwrap_or_else(|p| p.into_inner());
        s.remove(&(name, labels(pairs)));
    }

    /// Prometheus text exposition format 0.0.4: `# HELP` and `# TYPE` before each family.
    pub fn render(&self) -> String {
        let s = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        let mut last = "";
        for ((name, labels), (ty, v)) in s.iter() {
            if *name != last {
                let t = match ty {
                    Type::Counter => "counter",
                    Type::Gauge => "gauge",
                };
                // HELP text escapes backslash and newline (ours hold neither).
                let h = help(name).replace('\\', "\\\\").replace('\n', "\\n");
                let _ = writeln!(out, "# HELP kasm_db_{name} {h}");
                let _ = writeln!(out, "# TYPE kasm_db_{name} {t}");
                last = name;
            }
            let _ = writeln!(out, "kasm_db_{name}{labels} {}", value(*v));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.add(
            "ingested_total",
            &[("class", "logs"), ("source", "http")],
            2,
        );
        m.add(
            "ingested_total",
            &[("class", "logs"), ("source", "http")],
            3,
        );
        m.add(
            "ingested_total",
            &[("class", "debug"), ("source", "hec")],
            1,
        );
        m.set("database_bytes", &[], 1234.0);
        m.set("job_up", &[("job", "a\"b")], 1.0);
        let text = m.render();
        assert!(text.contains("# TYPE kasm_db_ingested_total counter\n"));
        assert!(text.contains("kasm_db_ingested_total{class=\"logs\",source=\"http\"} 5\n"));
        assert!(text.contains("kasm_db_ingested_total{class=\"debug\",source=\"hec\"} 1\n"));
        assert!(
            text.contains("# TYPE kasm_db_database_bytes gauge\nkasm_db_database_bytes 1234\n")
        );
        assert!(text.contains("kasm_db_job_up{job=\"a\\\"b\"} 1\n"));
        assert_eq!(text.matches("# TYPE kasm_db_ingested_total").count(), 1);
    }

    #[test]
    fn label_values_and_special_values_are_written_as_prometheus_does() {
        let m = Metrics::default();
        m.set("backup_count", &[("target", "/a\\b\"c\nd")], 1.0);
        m.set(
            "restore_last_duration_seconds",
            &[("target", "x")],
            f64::INFINITY,
        );
        m.set(
            "restore_last_duration_seconds",
            &[("target", "y")],
            f64::NEG_INFINITY,
        );
        m.set(
            "restore_last_duration_seconds",
            &[("target", "z")],
            f64::NAN,
        );
        let text = m.render();
        assert!(
            text.contains("kasm_db_backup_count{target=\"/a\\\\b\\\"c\\nd\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("{target=\"x\"} +Inf\n"), "{text}");
        assert!(text.contains("{target=\"y\"} -Inf\n"), "{text}");
        assert!(text.contains("{target=\"z\"} NaN\n"), "{text}");
        assert!(text.starts_with("# HELP kasm_db_backup_count Complete backups at the target.\n# TYPE kasm_db_backup_count gauge\n"), "{text}");
        assert_eq!(
            text.matches("# HELP kasm_db_restore_last_duration_seconds ")
                .count(),
            1
        );
    }

    /// Every name `src/serve/` sets, adds or removes has its own `# HELP` line.
    #[test]
    fn every_family_set_in_serve_has_help() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/serve");
        let mut names = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "rs") || path.ends_with("metrics.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for call in [".add(", ".set(", ".set_counter(", ".remove("] {
                for (i, _) in text.match_indices(call) {
                    let rest = text[i + call.len()..].trim_start();
                    let Some(rest) = rest.strip_prefix('"') else {
                        continue;
                    };
                    let name = &rest[..rest.find('"').unwrap()];
                    if name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                        names.insert(name.to_string());
                    }
                }
            }
        }
        assert!(
            names.contains("ingested_total") && names.contains("backup_count"),
            "{names:?}"
        );
        let missing: Vec<_> = names
            .iter()
            .filter(|n| !HELP.iter().any(|(h, _)| h == n))
            .collect();
        assert!(missing.is_empty(), "no # HELP for {missing:?}");
    }
}
