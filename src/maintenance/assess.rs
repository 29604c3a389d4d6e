//! The judgement of `size`, as pure functions of what was measured: the projected
//! steady-state size of `logs` under the retention windows, the growth trend from size samples,
//! and the status (ok / warn / exceeded) with advice in sentences. Never does I/O and never
//! reads the clock: `now` is passed in (the database's `now()`).

use crate::config::{RetentionConfig, Window};
use crate::sizing::database::{self, Tier};
use crate::sizing::{bytes, num};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Bytes in one GB of the guide (disks are sold in decimal GB).
pub const GB: u64 = 1_000_000_000;
/// The guide: a single server with default retention uses 250-550 MB.
pub const SINGLE_SERVER_MAX_BYTES: u64 = 550_000_000;
/// Warn at this fraction of the tier's disk.
pub const WARN_FRACTION: f64 = 0.8;
/// Shortest observed span an ingest rate is projected from (shorter spans are too noisy).
pub const MIN_PROJECTION_SPAN_S: i64 = 3600;
/// Warn when the trend fills the tier's disk within this many days.
pub const WARN_DAYS_UNTIL_FULL: f64 = 30.0;

/// One retention class of the `logs` relation as measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassStats {
    /// `debug`, `logs`, or `all` for a plain (unpartitioned) `logs` table such as Kasm's own.
    pub class: String,
    pub bytes: u64,
    pub rows: i64,
    pub oldest: Option<DateTime<Utc>>,
    pub newest: Option<DateTime<Utc>>,
    pub partitions: u32,
    /// The class's retention window in seconds (None for a table kasm-db does not manage).
    pub retention_s: Option<u64>,
    /// Steady-state bytes under the window at the observed ingest rate (None: not enough history).
    pub projected_bytes: Option<u64>,
}

/// Steady state of one class: the `bytes` ingested between `oldest` and `newest`, per second,
/// x the window. Callers pass only the records inside the window (so that records purge has
/// not removed yet do not dilute the rate). Zero for a zero window; None when the history is
/// shorter than the projection needs.
pub fn project(
    bytes: u64,
    oldest: Option<DateTime<Utc>>,
    newest: Option<DateTime<Utc>>,
    window: Window,
) -> Option<u64> {
    if window.is_zero() {
        return Some(0);
    }
    let (oldest, newest) = (oldest?, newest?);
    let span = (newest - oldest).num_seconds();
    let window_s = window.as_duration().as_secs() as i64;
    if span < MIN_PROJECTION_SPAN_S.min(window_s) || span <= 0 {
        return None;
    }
    Some((bytes as f64 / span as f64 * window_s as f64).round() as u64)
}

/// Growth of the database from the recorded size samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trend {
    pub samples: usize,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    /// Least-squares slope of database_bytes, bytes per day.
    pub bytes_per_day: f64,
    /// Days until the tier's disk is full at that rate (growing databases with a tier only).
    pub days_until_full: Option<f64>,
}

/// The trend of `(sampled_at, database_bytes)` samples; None with fewer than 2 samples or
/// less than an hour between the first and the last.
pub fn trend(
    samples: &[(DateTime<Utc>, u64)],
    current_bytes: u64,
    disk_bytes: Option<u64>,
) -> Option<Trend> {
    if samples.len() < 2 {
        return None;
    }
    let first = samples.iter().map(|s| s.0).min()?;
    let last = samples.iter().map(|s| s.0).max()?;
    if (last - first).num_seconds() < 3600 {
        return None;
    }
    let xs: Vec<f64> = samples
        .iter()
        .map(|s| (s.0 - first).num_seconds() as f64 / 86_400.0)
        .collect();
    let ys: Vec<f64> = samples.iter().map(|s| s.1 as f64).collect();
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let days_until_full = match disk_bytes {
        Some(d) if slope > 0.0 => Some((d.saturating_sub(current_bytes)) as f64 / slope),
        _ => None,
    };
    Some(Trend {
        samples: samples.len(),
        first,
        last,
        bytes_per_day: slope,
        days_until_full,
    })
}

/// A table with many dead tuples, as measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadTuples {
    pub table: String,
    pub live: i64,
    pub dead: i64,
    pub ratio: f64,
}

/// Everything the judgement needs.
#[derive(Debug, Clone)]
pub struct Measured<'a> {
    pub database_bytes: u64,
    /// None when there is no `logs` relation at all.
    pub classes: Option<&'a [ClassStats]>,
    /// True when the `logs` relation is kasm-db's (partitioned, retention applied by purge).
    pub managed: bool,
    pub sessions: Option<u32>,
    pub retention: RetentionConfig,
    pub dead: &'a [DeadTuples],
    pub trend: Option<&'a Trend>,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Exceeded,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Exceeded => "exceeded",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgement {
    pub tier: Option<Tier>,
    pub status: Status,
    pub advice: Vec<String>,
    pub projected_logs_bytes: Option<u64>,
    pub projected_database_bytes: Option<u64>,
}

/// Status and advice. Exceeded: the database, or its projected steady state, is at least the
/// tier's disk. Warn: at 80% of it; the trend fills it within 30 days; over 550 MB without a
/// session count of 50 or more (the guide's single server); logs kept in the database at 50 or
/// more sessions (the guide says forward to a SIEM).
pub fn judge(m: &Measured) -> Judgement {
    let mut status = Status::Ok;
    let mut advice = Vec::new();
    let tier = m.sessions.map(database::tier);
    let logs_bytes: u64 = m
        .classes
        .map(|c| c.iter().map(|c| c.bytes).sum())
        .unwrap_or(0);
    let logs_rows: i64 = m
        .classes
        .map(|c| c.iter().map(|c| c.rows).sum())
        .unwrap_or(0);
    let projected_logs = m.classes.and_then(|c| {
        if !m.managed {
            return None;
        }
        // A class without enough history counts at its current size; a size cap
        // (retention.max_bytes) bounds what purge lets the windows keep.
        c.iter().any(|c| c.projected_bytes.is_some()).then(|| {
            let p = c
                .iter()
                .map(|c| c.projected_bytes.unwrap_or(c.bytes))
                .sum::<u64>();
            m.retention.max_bytes.map_or(p, |cap| p.min(cap.bytes()))
        })
    });
    let projected_db = projected_logs.map(|p| m.database_bytes.saturating_sub(logs_bytes) + p);
    let worst = m.database_bytes.max(projected_db.unwrap_or(0));

    match &tier {
        Some(t) => {
            let disk = t.disk_gb as u64 * GB;
            let what = format!(
                "the {}-{} session tier's {} GB disk ({} CPUs, {} GB RAM){}",
                t.sessions_min,
                t.sessions_max,
                t.disk_gb,
                t.cpus,
                t.ram_gb,
                if t.beyond_guide { ", extrapolated beyond the guide" } else { "" }
            );
            if m.database_bytes >= disk {
                status = Status::Exceeded;
                advice.push(format!("The database ({}) has outgrown {what}.", bytes(m.database_bytes)));
            } else if projected_db.is_some_and(|p| p >= disk) {
                status = Status::Exceeded;
                advice.push(format!(
                    "At the observed ingest rate the database will reach {} under the current retention windows, beyond {what}: shorten retention or forward logs to a SIEM.",
                    bytes(worst)
                ));
            } else if worst as f64 >= disk as f64 * WARN_FRACTION {
                status = Status::Warn;
                advice.push(format!(
                    "The database ({}, projected {}) is above {}% of {what}.",
                    bytes(m.database_bytes),
                    bytes(worst),
                    num(WARN_FRACTION * 100.0)
                ));
            } else {
                advice.push(format!(
                    "The database ({}) fits {what}{}.",
                    bytes(m.database_bytes),
                    match projected_db {
                        Some(p) => format!(", also at its projected steady state of {}", bytes(p)),
                        None => String::new(),
                    }
                ));
            }
        }
        None => advice.push(
            "No session count: pass --sessions or set sizing.sessions to compare with the guide's tiers."
                .to_string(),
        ),
    }

    let small = m
        .sessions
        .is_none_or(|s| s < database::SIEM_THRESHOLD_SESSIONS);
    if small && m.database_bytes > SINGLE_SERVER_MAX_BYTES {
        status = status.max(Status::Warn);
        advice.push(format!(
            "The database ({}) is above the 250-550 MB a single server uses with the default retention: check the retention windows, that purge runs, and run kasm-db vacuum.",
            bytes(m.database_bytes)
        ));
    }
    let keeps_logs = !m.retention.debug.is_zero() || !m.retention.logs.is_zero();
    if let Some(s) = m.sessions {
        if s >= database::SIEM_THRESHOLD_SESSIONS && (logs_rows > 0 && (keeps_logs || !m.managed)) {
            status = status.max(Status::Warn);
            advice.push(format!(
                "With {s} concurrent sessions the guide says to forward logs to a SIEM and set the retention to 0 (they hold {} in {logs_rows} rows here); otherwise run monthly maintenance (kasm-db vacuum).",
                bytes(logs_bytes)
            ));
        }
    }
    if let Some(classes) = m.classes.filter(|_| m.managed) {
        for c in classes {
            let (Some(oldest), Some(window)) = (c.oldest, c.retention_s) else {
                continue;
            };
            // An hour of slack: purge runs every few minutes and drops whole partitions.
            if (m.now - oldest).num_seconds() > window as i64 + 3600 {
                status = status.max(Status::Warn);
                advice.push(format!(
                    "The {} class holds records from {oldest}, older than its {} window: is purge running?",
                    c.class,
                    Window::from_secs(window)
                ));
            }
            if c.projected_bytes.is_none() && c.rows > 0 {
                advice.push(format!(
                    "The {} class has less than an hour of history, too little to project its steady-state size.",
                    c.class
                ));
            }
        }
    }
    if let Some(t) = m.trend {
        if let Some(days) = t.days_until_full {
            if days < WARN_DAYS_UNTIL_FULL {
                status = status.max(Status::Warn);
            }
            advice.push(format!(
                "Growing {} per day over {} samples: the tier's disk is full in about {} days.",
                bytes(t.bytes_per_day.max(0.0) as u64),
                t.samples,
                num(days.floor())
            ));
        }
    }
    for d in m.dead.iter().filter(|d| d.ratio >= 0.2 && d.dead >= 1000) {
        advice.push(format!(
            "{} has {}% dead tuples ({} dead): run kasm-db vacuum (with --full to give the space back).",
            d.table,
            num(d.ratio * 100.0),
            d.dead
        ));
    }
    Judgement {
        tier,
        status,
        advice,
        projected_logs_bytes: projected_logs,
        projected_database_bytes: projected_db,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap() + chrono::Duration::hours(h)
    }

    fn class(name: &str, bytes: u64, rows: i64, span_h: (i64, i64), window: u64) -> ClassStats {
        ClassStats {
            class: name.into(),
            bytes,
            rows,
            oldest: Some(t(span_h.0)),
            newest: Some(t(span_h.1)),
            partitions: 1,
            retention_s: Some(window),
            projected_bytes: project(
                bytes,
                Some(t(span_h.0)),
                Some(t(span_h.1)),
                Window::from_secs(window),
            ),
        }
    }

    fn measured<'a>(
        db: u64,
        classes: Option<&'a [ClassStats]>,
        sessions: Option<u32>,
    ) -> Measured<'a> {
        Measured {
            database_bytes: db,
            classes,
            managed: true,
            sessions,
            retention: RetentionConfig::default(),
            dead: &[],
            trend: None,
            now: t(24),
        }
    }

    #[test]
    fn projection_is_rate_times_window() {
        let w = Window::from_secs(7 * 86_400);
        // 24 MB over 24 h -> 1 MB/h -> 168 MB over 7 days.
        assert_eq!(
            project(24_000_000, Some(t(0)), Some(t(24)), w),
            Some(168_000_000)
        );
        // Too little history, or none.
        assert_eq!(project(1000, Some(t(0)), Some(t(0)), w), None);
        assert_eq!(project(1000, None, None, w), None);
        // Retention 0 keeps nothing.
        assert_eq!(
            project(1000, Some(t(0)), Some(t(24)), Window::ZERO),
            Some(0)
        );
        // A window shorter than an hour projects from a span as long as the window.
        assert_eq!(
            project(
                600,
                Some(t(0)),
                Some(t(0) + chrono::Duration::minutes(30)),
                Window::from_secs(1800)
            ),
            Some(600)
        );
    }

    #[test]
    fn status_table() {
        let mb = 1_000_000;
        let steady = [class("logs", 10 * mb, 100, (0, 24), 7 * 86_400)];
        let runaway = [class("logs", 2_000 * mb, 100, (22, 24), 7 * 86_400)];
        // (database bytes, classes, sessions) -> status
        type Case<'a> = (u64, Option<&'a [ClassStats]>, Option<u32>, Status);
        let cases: [Case; 7] = [
            (8 * mb, None, None, Status::Ok),
            (8 * mb, None, Some(10), Status::Ok),
            (600 * mb, None, None, Status::Warn),
            (70 * GB, None, Some(10), Status::Warn),
            (81 * GB, None, Some(10), Status::Exceeded),
            (100 * mb, Some(&steady), Some(10), Status::Ok),
            // 2 GB in 2 h -> 168 GB in a week, beyond 80 GB.
            (2_100 * mb, Some(&runaway), Some(10), Status::Exceeded),
        ];
        for (db, classes, sessions, want) in cases {
            let j = judge(&measured(db, classes, sessions));
            assert_eq!(j.status, want, "{db} {sessions:?}: {:?}", j.advice);
            assert!(!j.advice.is_empty());
        }
        // A size cap bounds the projection: 168 GB a week under a 40 GB cap fits the 80 GB disk.
        let mut capped = measured(2_100 * mb, Some(&runaway), Some(10));
        capped.retention.max_bytes = Some(crate::config::ByteSize::from_bytes(40 * GB));
        let j = judge(&capped);
        assert_eq!(j.projected_logs_bytes, Some(40 * GB));
        assert_ne!(j.status, Status::Exceeded, "{:?}", j.advice);
        assert!(j.advice[0].contains("fits"), "{:?}", j.advice);
        // The same database is fine in a bigger tier.
        assert_eq!(
            judge(&measured(81 * GB, None, Some(600))).status,
            Status::Ok
        );
    }

    #[test]
    fn at_50_sessions_logs_in_the_database_warn_and_say_siem() {
        let c = [class("logs", 1_000_000, 100, (0, 24), 7 * 86_400)];
        let j = judge(&measured(50_000_000, Some(&c), Some(50)));
        assert_eq!(j.status, Status::Warn);
        assert!(
            j.advice.iter().any(|a| a.contains("SIEM")),
            "{:?}",
            j.advice
        );
        assert_eq!(
            judge(&measured(50_000_000, Some(&c), Some(49))).status,
            Status::Ok
        );
    }

    #[test]
    fn old_records_mean_purge_is_not_running() {
        let c = [class("debug", 1_000_000, 100, (0, 24), 4 * 3600)];
        let j = judge(&measured(50_000_000, Some(&c), Some(10)));
        assert_eq!(j.status, Status::Warn);
        assert!(
            j.advice.iter().any(|a| a.contains("purge")),
            "{:?}",
            j.advice
        );
    }

    #[test]
    fn trend_slope_and_days_until_full() {
        let samples: Vec<_> = (0..5)
            .map(|d| (t(24 * d), 1_000_000_000 + d as u64 * 2_000_000_000))
            .collect();
        let tr = trend(&samples, 9 * GB, Some(80 * GB)).unwrap();
        assert!((tr.bytes_per_day - 2e9).abs() < 1.0);
        assert_eq!(tr.days_until_full.map(|d| d.round()), Some(36.0));
        assert!(trend(&samples[..1], 0, None).is_none());
        let mut m = measured(9 * GB, None, Some(10));
        let fast = trend(&samples, 75 * GB, Some(80 * GB)).unwrap();
        m.trend = Some(&fast);
        assert_eq!(judge(&m).status, Status::Warn);
    }
}
