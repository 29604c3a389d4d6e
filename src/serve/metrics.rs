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

fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
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

    /// Prometheus text exposition format 0.0.4.
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
                let _ = writeln!(out, "# TYPE kasm_db_{name} {t}");
                last = name;
            }
            let _ = writeln!(out, "kasm_db_{name}{labels} {v}");
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
}
