//! The size cap's plan (`retention.max_bytes`): which whole partitions `purge` drops early,
//! after the retention windows, so that the `logs` relation fits the cap.
//!
//! Pure: no I/O, no clock (the caller passes the sizes it measured and the instant whose
//! partitions receive inserts). The order is fixed and explainable: every droppable debug
//! partition, oldest first, before any partition of the other levels, oldest first; the greedy
//! walk stops at the first drop that brings the total within the cap. It never plans to drop
//! the partition that holds `current` or a later one (they receive inserts), nor a partition
//! the caller excludes (one held by a long reader), and it never plans anything but whole
//! partitions: no row is ever DELETEd for the cap (a DELETE frees no disk and writes WAL).

use super::partition_plan::{self, Partition};
use super::record::Class;
use chrono::{DateTime, Utc};

/// A partition with its size (heap, indexes and TOAST).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sized {
    pub partition: Partition,
    pub bytes: u64,
}

/// What the cap asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapPlan {
    /// The partitions to drop, in drop order.
    pub drop: Vec<Sized>,
    /// The expected size of the relation once they are dropped.
    pub after_bytes: u64,
    /// Whether that is within the cap (false: even every droppable partition is not enough).
    pub within: bool,
}

/// True when `p` holds `current` or lies after it: the partitions receiving inserts.
pub fn is_current(p: &Partition, current: DateTime<Utc>) -> bool {
    p.upper > partition_plan::containing(p.class, current).lower
}

/// Plan the cap: the relation measures `total_bytes` (all of its leaves, including any the
/// caller could not describe), `candidates` are its partitions with their sizes, `excluded`
/// names partitions not to drop. Nothing is planned when `total_bytes <= max_bytes`.
pub fn plan_cap(
    total_bytes: u64,
    candidates: &[Sized],
    max_bytes: u64,
    current: DateTime<Utc>,
    excluded: &[String],
) -> CapPlan {
    let mut order: Vec<&Sized> = candidates
        .iter()
        .filter(|s| !is_current(&s.partition, current))
        .filter(|s| !excluded.contains(&s.partition.name))
        .collect();
    order.sort_by_key(|s| (s.partition.class != Class::Debug, s.partition.lower));
    let mut left = total_bytes;
    let mut drop = Vec::new();
    for s in order {
        if left <= max_bytes {
            break;
        }
        left = left.saturating_sub(s.bytes);
        drop.push(s.clone());
    }
    CapPlan {
        drop,
        after_bytes: left,
        within: left <= max_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn sized(class: Class, at: &str, bytes: u64) -> Sized {
        Sized {
            partition: partition_plan::containing(class, t(at)),
            bytes,
        }
    }

    /// Three days of logs (100 each) and four hours of debug (10 each), the last of each
    /// current as of 2026-11-24T10:30Z, plus a premade partition ahead.
    fn relation() -> Vec<Sized> {
        vec![
            sized(Class::Logs, "2026-11-22T00:00:00Z", 100),
            sized(Class::Logs, "2026-11-23T00:00:00Z", 100),
            sized(Class::Logs, "2026-11-24T00:00:00Z", 100),
            sized(Class::Logs, "2026-11-25T00:00:00Z", 1),
            sized(Class::Debug, "2026-11-24T07:00:00Z", 10),
            sized(Class::Debug, "2026-11-24T08:00:00Z", 10),
            sized(Class::Debug, "2026-11-24T09:00:00Z", 10),
            sized(Class::Debug, "2026-11-24T10:00:00Z", 10),
            sized(Class::Debug, "2026-11-24T11:00:00Z", 1),
        ]
    }

    fn names(p: &CapPlan) -> Vec<&str> {
        p.drop.iter().map(|s| s.partition.name.as_str()).collect()
    }

    const NOW: &str = "2026-11-24T10:30:00Z";

    #[test]
    fn within_the_cap_nothing_is_dropped() {
        let p = plan_cap(342, &relation(), 342, t(NOW), &[]);
        assert!(p.drop.is_empty() && p.within);
        assert_eq!(p.after_bytes, 342);
    }

    #[test]
    fn debug_goes_first_oldest_first_and_the_walk_stops_once_within() {
        // 342 against 325: two debug hours are enough.
        let p = plan_cap(342, &relation(), 325, t(NOW), &[]);
        assert_eq!(
            names(&p),
            ["logs_debug_p2026112407", "logs_debug_p2026112408"]
        );
        assert_eq!((p.after_bytes, p.within), (322, true));
        // 342 against 250: every droppable debug hour, then the oldest day of logs.
        let p = plan_cap(342, &relation(), 250, t(NOW), &[]);
        assert_eq!(
            names(&p),
            [
                "logs_debug_p2026112407",
                "logs_debug_p2026112408",
                "logs_debug_p2026112409",
                "logs_logs_p20261122"
            ]
        );
        assert_eq!((p.after_bytes, p.within), (212, true));
    }

    #[test]
    fn current_and_future_partitions_are_never_planned() {
        let p = plan_cap(342, &relation(), 1, t(NOW), &[]);
        assert_eq!(
            names(&p),
            [
                "logs_debug_p2026112407",
                "logs_debug_p2026112408",
                "logs_debug_p2026112409",
                "logs_logs_p20261122",
                "logs_logs_p20261123"
            ]
        );
        // What is left is today's logs, this hour's debug and the premade ones: over the cap.
        assert_eq!((p.after_bytes, p.within), (112, false));
        for s in &p.drop {
            assert!(!is_current(&s.partition, t(NOW)), "{}", s.partition.name);
        }
    }

    #[test]
    fn excluded_partitions_are_passed_over_for_the_next_ones() {
        let held = vec!["logs_debug_p2026112407".to_string()];
        let p = plan_cap(342, &relation(), 325, t(NOW), &held);
        assert_eq!(
            names(&p),
            ["logs_debug_p2026112408", "logs_debug_p2026112409"]
        );
    }

    #[test]
    fn bytes_the_partitions_do_not_account_for_still_count() {
        // 50 bytes in partitions the caller could not describe: the walk goes further.
        let p = plan_cap(392, &relation(), 325, t(NOW), &[]);
        assert_eq!(p.drop.len(), 4);
        assert_eq!(p.after_bytes, 262);
    }
}
