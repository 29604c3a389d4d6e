//! `size`'s view of the size cap (`retention.max_bytes`): warnings, in sentences an operator
//! can act on, when the cap rather than the retention windows decides how long logs stay: the
//! `logs` relation is over the cap or near it, the observed ingest rate would fill the windows
//! past it (with the retention the cap leaves instead), or a class's oldest record is younger
//! than its window while the relation is at a good part of the cap (the cap dropped the older
//! partitions).
//!
//! Pure: no I/O, no clock (`now` is the database's). It only judges; `purge` drops.

use super::assess::ClassStats;
use crate::config::{ByteSize, RetentionConfig, Window};
use crate::sizing::{bytes, num};
use chrono::{DateTime, Duration, Utc};

/// "Near the cap" from this fraction of it.
pub const NEAR_FRACTION: f64 = 0.9;
/// A class younger than its window counts as cut by the cap only when the relation holds at
/// least this fraction of the cap (below it, logs are probably just young).
pub const DECIDING_FRACTION: f64 = 0.5;

/// The warnings for the managed classes (`debug`, `logs`) measured at `now` under `retention`
/// (none without a cap).
pub fn warnings(
    classes: &[ClassStats],
    retention: &RetentionConfig,
    now: DateTime<Utc>,
) -> Vec<String> {
    let Some(cap) = retention.max_bytes else {
        return Vec::new();
    };
    let max = cap.bytes();
    let mut out = Vec::new();
    let logs_bytes: u64 = classes.iter().map(|c| c.bytes).sum();
    let what = cap_text(cap);
    if logs_bytes > max {
        out.push(format!(
            "The logs relation ({}) is over {what}: the next purge drops its oldest partitions, \
             debug first, before their retention windows end, until it fits.",
            bytes(logs_bytes)
        ));
    } else if logs_bytes as f64 >= max as f64 * NEAR_FRACTION {
        out.push(format!(
            "The logs relation ({}) is at {}% of {what}: purge is about to drop partitions before \
             their retention windows end (debug first). Raise the cap if the disk allows, shorten \
             the windows, or forward logs to a SIEM.",
            bytes(logs_bytes),
            num((logs_bytes as f64 / max as f64 * 100.0).floor())
        ));
    }
    if let Some(w) = projection(classes, retention, max, &what) {
        out.push(w);
    }
    if logs_bytes as f64 >= max as f64 * DECIDING_FRACTION {
        for c in classes {
            let (Some(oldest), Some(window_s)) = (c.oldest, c.retention_s) else {
                continue;
            };
            if window_s == 0 {
                continue;
            }
            let cutoff = now - Duration::seconds(window_s as i64);
            let span = crate::logs::partition_plan::span(if c.class == "debug" {
                crate::logs::record::Class::Debug
            } else {
                crate::logs::record::Class::Logs
            });
            if oldest > cutoff + span {
                out.push(format!(
                    "The oldest {} record is from {}, {} old, although its {} window keeps records \
                     since {}: unless logs were first stored after that, {what} dropped the older \
                     partitions early, and the cap, not the window, is deciding how long these \
                     records stay (`purge --json` lists each such partition under cap.dropped).",
                    class_name(&c.class),
                    oldest.format("%Y-%m-%d %H:%M UTC"),
                    age((now - oldest).num_seconds()),
                    Window::from_secs(window_s),
                    cutoff.format("%Y-%m-%d %H:%M UTC"),
                ));
            }
        }
    }
    out
}

/// "retention.max_bytes 40GB (37.3 GiB)".
fn cap_text(cap: ByteSize) -> String {
    format!("retention.max_bytes {cap} ({})", bytes(cap.bytes()))
}

fn class_name(class: &str) -> &str {
    match class {
        "debug" => "debug",
        _ => "non-debug",
    }
}

/// When the windows would keep more than the cap at the observed ingest rate: how much they
/// would keep, and what the cap leaves instead (debug goes first).
fn projection(
    classes: &[ClassStats],
    retention: &RetentionConfig,
    max: u64,
    what: &str,
) -> Option<String> {
    let class = |name: &str| classes.iter().find(|c| c.class == name);
    let (debug, logs) = (class("debug")?, class("logs")?);
    if debug.projected_bytes.is_none() && logs.projected_bytes.is_none() {
        return None;
    }
    let pd = debug.projected_bytes.unwrap_or(debug.bytes);
    let pl = logs.projected_bytes.unwrap_or(logs.bytes);
    if pd + pl <= max {
        return None;
    }
    let rate = |p: u64, window: u64| (window > 0).then(|| p as f64 / window as f64);
    let wd = retention.debug.as_duration().as_secs();
    let wl = retention.logs.as_duration().as_secs();
    let (keep_debug, keep_logs) = if pl >= max {
        let logs_s = rate(pl, wl).map(|r| max as f64 / r).unwrap_or(0.0);
        ("only the current hour".to_string(), age(logs_s as i64))
    } else {
        let debug_s = rate(pd, wd)
            .map(|r| ((max - pl) as f64 / r).min(wd as f64))
            .unwrap_or(0.0);
        (format!("about {}", age(debug_s as i64)), age(wl as i64))
    };
    Some(format!(
        "At the observed ingest rate the windows (debug {}, the rest {}) would keep {} of logs, \
         more than {what}: the cap, not the windows, decides how long records stay: about \
         {keep_logs} of the other levels and {keep_debug} of debug. Raise the cap if the disk \
         allows, or forward logs to a SIEM.",
        retention.debug,
        retention.logs,
        bytes(pd + pl),
    ))
}

/// A duration as people say it: "40 minutes", "5 hours", "3.5 days".
fn age(secs: i64) -> String {
    let s = secs.max(0) as f64;
    if s >= 2.0 * 86_400.0 {
        format!("{} days", num((s / 86_400.0 * 10.0).floor() / 10.0))
    } else if s >= 2.0 * 3600.0 {
        format!("{} hours", num((s / 3600.0).floor()))
    } else {
        format!("{} minutes", num((s / 60.0).floor()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 30, 0).unwrap()
    }

    fn class(name: &str, bytes: u64, oldest_h: i64, window: u64, projected: u64) -> ClassStats {
        ClassStats {
            class: name.into(),
            bytes,
            rows: 1000,
            oldest: Some(now() - Duration::hours(oldest_h)),
            newest: Some(now()),
            partitions: 3,
            retention_s: Some(window),
            projected_bytes: Some(projected),
        }
    }

    fn retention(cap: Option<u64>) -> RetentionConfig {
        RetentionConfig {
            debug: Window::from_secs(4 * 3600),
            logs: Window::from_secs(7 * 86_400),
            max_bytes: cap.map(ByteSize::from_bytes),
        }
    }

    const D: u64 = 4 * 3600;
    const L: u64 = 7 * 86_400;

    #[test]
    fn no_cap_no_warnings() {
        let c = [
            class("debug", 900, 1, D, 10_000),
            class("logs", 900, 24, L, 10_000),
        ];
        assert!(warnings(&c, &retention(None), now()).is_empty());
    }

    #[test]
    fn well_within_the_cap_and_the_windows_full_no_warnings() {
        // Windows full (oldest at the window's edge), projected at the current size.
        let c = [
            class("debug", 100, 4, D, 100),
            class("logs", 700, 168, L, 700),
        ];
        assert!(warnings(&c, &retention(Some(10_000)), now()).is_empty());
    }

    #[test]
    fn over_and_near_the_cap_say_what_purge_will_do() {
        let c = [
            class("debug", 100, 4, D, 100),
            class("logs", 1000, 168, L, 1000),
        ];
        let w = warnings(&c, &retention(Some(1000)), now());
        assert!(w[0].contains("over retention.max_bytes 1kB"), "{w:?}");
        assert!(w[0].contains("debug first"), "{w:?}");
        let w = warnings(&c, &retention(Some(1200)), now());
        assert!(w[0].contains("at 91% of retention.max_bytes"), "{w:?}");
    }

    #[test]
    fn a_projection_past_the_cap_says_what_retention_the_cap_leaves() {
        // Logs would keep 7 GB in 7 days (1 GB a day); the cap is 3.5 GB: 3.5 days of logs.
        let gb = 1_000_000_000;
        let c = [
            class("debug", gb / 10, 4, D, gb / 10),
            class("logs", gb, 24, L, 7 * gb),
        ];
        let w = warnings(&c, &retention(Some(7 * gb / 2)), now());
        let p = w
            .iter()
            .find(|w| w.contains("observed ingest rate"))
            .unwrap();
        assert!(
            p.contains("about 3.5 days of the other levels and only the current hour of debug"),
            "{p}"
        );
        // A cap above the logs' share leaves debug part of its window: 7.05 GB, 0.4 GB of debug
        // in 4 hours, cap 7.2 GB: 0.2 GB for debug, 2 hours.
        let c = [
            class("debug", gb / 10, 4, D, 4 * gb / 10),
            class("logs", gb, 24, L, 7 * gb),
        ];
        let w = warnings(&c, &retention(Some(72 * gb / 10)), now());
        let p = w
            .iter()
            .find(|w| w.contains("observed ingest rate"))
            .unwrap();
        assert!(
            p.contains("7 days of the other levels and about 2 hours of debug"),
            "{p}"
        );
    }

    #[test]
    fn a_class_younger_than_its_window_near_the_cap_is_the_cap_deciding() {
        // The non-debug class starts 3 days back under a 7-day window, at 80% of the cap.
        let c = [
            class("debug", 100, 4, D, 100),
            class("logs", 700, 72, L, 700),
        ];
        let w = warnings(&c, &retention(Some(1000)), now());
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("The oldest non-debug record is from 2026-11-21 12:30 UTC, 3 days old"),
            "{w:?}"
        );
        assert!(
            w[0].contains("the cap, not the window, is deciding"),
            "{w:?}"
        );
        // Far below the cap the same young data is just young: no warning.
        assert!(warnings(&c, &retention(Some(10_000)), now()).is_empty());
    }
}
