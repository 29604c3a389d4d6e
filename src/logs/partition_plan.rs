//! Partition arithmetic for `logs`: which range partition holds an instant (debug hourly, logs
//! daily, UTC), what it is called, and what purge must do to the partitions that exist.
//!
//! Pure: no I/O, no clock (callers pass `now`). The purge plan is exact: a partition whose
//! upper bound is at or before the cutoff is dropped whole; the one partition that straddles
//! the cutoff has only its rows before the cutoff deleted; nothing later is touched.

use super::record::Class;
use crate::config::{RetentionConfig, Window};
use chrono::{DateTime, Duration, DurationRound, Utc};

/// A range partition of one class: rows with `lower <= ingest_date < upper`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub class: Class,
    pub lower: DateTime<Utc>,
    pub upper: DateTime<Utc>,
}

/// The width of a class's partitions.
pub fn span(class: Class) -> Duration {
    match class {
        Class::Debug => Duration::hours(1),
        Class::Logs => Duration::days(1),
    }
}

/// The class's parent partition (LIST partition of `logs`).
pub fn parent(class: Class) -> &'static str {
    match class {
        Class::Debug => "logs_debug",
        Class::Logs => "logs_logs",
    }
}

/// The partition that holds `t` for `class`.
pub fn containing(class: Class, t: DateTime<Utc>) -> Partition {
    let lower = t
        .duration_trunc(span(class))
        .expect("UTC truncation to an hour or a day cannot overflow");
    at(class, lower)
}

/// The partitions that hold these (class, instant) pairs, each once, in order of first need.
pub fn containing_all(items: impl IntoIterator<Item = (Class, DateTime<Utc>)>) -> Vec<Partition> {
    let mut needed: Vec<Partition> = Vec::new();
    for (class, t) in items {
        let p = containing(class, t);
        if !needed.iter().any(|n| n.name == p.name) {
            needed.push(p);
        }
    }
    needed
}

fn at(class: Class, lower: DateTime<Utc>) -> Partition {
    let name = match class {
        Class::Debug => format!("{}_p{}", parent(class), lower.format("%Y%m%d%H")),
        Class::Logs => format!("{}_p{}", parent(class), lower.format("%Y%m%d")),
    };
    Partition {
        name,
        class,
        lower,
        upper: lower + span(class),
    }
}

/// The partitions to create ahead of `now`: the current one and the next few, so that ingest
/// rarely has to create one on its hot path (debug: 3 hours ahead, logs: 2 days ahead).
pub fn premake(class: Class, now: DateTime<Utc>) -> Vec<Partition> {
    let ahead = match class {
        Class::Debug => 3,
        Class::Logs => 2,
    };
    let first = containing(class, now);
    (0..=ahead)
        .map(|i| at(class, first.lower + span(class) * i))
        .collect()
}

/// The window of a class under the retention config.
pub fn window(retention: &RetentionConfig, class: Class) -> Window {
    match class {
        Class::Debug => retention.debug,
        Class::Logs => retention.logs,
    }
}

/// The cutoff of a class as of `now`: rows with `ingest_date < cutoff` are past the window.
/// A zero window keeps none: the cutoff is the end of time.
pub fn cutoff(window: Window, now: DateTime<Utc>) -> DateTime<Utc> {
    if window.is_zero() {
        DateTime::<Utc>::MAX_UTC
    } else {
        now - window.as_chrono()
    }
}

/// What purge does to one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Every row is past the window: drop the partition.
    Drop(Partition),
    /// The partition straddles the cutoff: delete its rows before `cutoff`.
    Trim(Partition, DateTime<Utc>),
}

/// Plan the purge of `existing` partitions as of `now`.
pub fn plan_purge(
    existing: &[Partition],
    retention: &RetentionConfig,
    now: DateTime<Utc>,
) -> Vec<Action> {
    let mut actions = Vec::new();
    for p in existing {
        let cut = cutoff(window(retention, p.class), now);
        if p.upper <= cut {
            actions.push(Action::Drop(p.clone()));
        } else if p.lower < cut {
            actions.push(Action::Trim(p.clone(), cut));
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn containing_all_names_each_partition_once_in_order_of_need() {
        let got: Vec<String> = containing_all([
            (Class::Logs, t("2026-11-24T23:00:00Z")),
            (Class::Debug, t("2026-11-24T10:05:00Z")),
            (Class::Logs, t("2026-11-24T01:00:00Z")),
            (Class::Debug, t("2026-11-24T11:00:00Z")),
            (Class::Debug, t("2026-11-24T10:59:00Z")),
        ])
        .into_iter()
        .map(|p| p.name)
        .collect();
        assert_eq!(
            got,
            [
                "logs_logs_p20261124",
                "logs_debug_p2026112410",
                "logs_debug_p2026112411"
            ]
        );
    }

    #[test]
    fn names_and_bounds() {
        let p = containing(Class::Debug, t("2026-11-24T10:59:59.999Z"));
        assert_eq!(p.name, "logs_debug_p2026112410");
        assert_eq!(
            (p.lower, p.upper),
            (t("2026-11-24T10:00:00Z"), t("2026-11-24T11:00:00Z"))
        );
        let p = containing(Class::Logs, t("2026-11-24T23:59:59Z"));
        assert_eq!(p.name, "logs_logs_p20261124");
        assert_eq!(
            (p.lower, p.upper),
            (t("2026-11-24T00:00:00Z"), t("2026-11-25T00:00:00Z"))
        );
        assert_eq!(
            containing(Class::Logs, t("2026-11-25T00:00:00Z")).name,
            "logs_logs_p20261125"
        );
    }

    #[test]
    fn premake_covers_now_and_ahead() {
        let ps = premake(Class::Debug, t("2026-11-24T10:30:00Z"));
        assert_eq!(ps.len(), 4);
        assert_eq!(ps[0].name, "logs_debug_p2026112410");
        assert_eq!(ps[3].name, "logs_debug_p2026112413");
        for w in ps.windows(2) {
            assert_eq!(w[0].upper, w[1].lower);
        }
    }

    #[test]
    fn purge_plan_is_exact_at_the_boundary() {
        let retention = RetentionConfig {
            debug: Window::from_secs(4 * 3600),
            logs: Window::from_secs(7 * 86_400),
            max_bytes: None,
        };
        let now = t("2026-11-24T12:30:00Z");
        let existing: Vec<Partition> = (0..8)
            .map(|h| {
                containing(
                    Class::Debug,
                    Utc.with_ymd_and_hms(2026, 11, 24, 5 + h, 0, 0).unwrap(),
                )
            })
            .collect();
        let plan = plan_purge(&existing, &retention, now);
        // Cutoff 08:30: 05, 06, 07 end at or before it; 08 straddles; 09.. untouched.
        let dropped: Vec<_> = plan
            .iter()
            .filter_map(|a| {
                if let Action::Drop(p) = a {
                    Some(p.name.as_str())
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(
            dropped,
            [
                "logs_debug_p2026112405",
                "logs_debug_p2026112406",
                "logs_debug_p2026112407"
            ]
        );
        let trims: Vec<_> = plan
            .iter()
            .filter_map(|a| {
                if let Action::Trim(p, c) = a {
                    Some((p.name.as_str(), *c))
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(
            trims,
            [("logs_debug_p2026112408", t("2026-11-24T08:30:00Z"))]
        );
    }

    #[test]
    fn a_cutoff_on_a_partition_edge_drops_without_trimming() {
        let retention = RetentionConfig {
            debug: Window::from_secs(3600),
            logs: Window::from_secs(86_400),
            max_bytes: None,
        };
        let existing = vec![
            containing(Class::Debug, t("2026-11-24T09:10:00Z")),
            containing(Class::Debug, t("2026-11-24T10:10:00Z")),
        ];
        let plan = plan_purge(&existing, &retention, t("2026-11-24T11:00:00Z"));
        assert_eq!(plan, vec![Action::Drop(existing[0].clone())]);
    }

    #[test]
    fn retention_zero_removes_the_whole_class() {
        let retention = RetentionConfig {
            debug: Window::ZERO,
            logs: Window::from_secs(86_400),
            max_bytes: None,
        };
        let now = t("2026-11-24T12:00:00Z");
        let existing = vec![
            containing(Class::Debug, now),
            containing(Class::Debug, now + Duration::hours(2)),
            containing(Class::Logs, now),
        ];
        let plan = plan_purge(&existing, &retention, now);
        assert_eq!(
            plan,
            vec![
                Action::Drop(existing[0].clone()),
                Action::Drop(existing[1].clone())
            ]
        );
    }
}
