//! The prune policy, GFS style like restic's `forget`: keep the N newest (`last`), and the newest
//! backup of each of the last N days / ISO weeks / months that have one. The newest backup is
//! always kept, whatever the policy.
//!
//! Pure: takes ids with their creation times, returns which to keep and which to delete. Never
//! deletes anything itself, never reads a clock (callers pass times; tests use fixed ones).

use chrono::{DateTime, Datelike, Utc};
use std::collections::BTreeSet;

/// How many of each kind to keep. `None` means the rule is not in use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    pub last: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
}

impl Policy {
    /// The policy of `backup.keep_*` (empty when none is set).
    pub fn configured(b: &crate::config::BackupConfig) -> Policy {
        Policy {
            last: b.keep_last,
            daily: b.keep_daily,
            weekly: b.keep_weekly,
            monthly: b.keep_monthly,
        }
    }

    /// True when no rule is set (prune would keep only the newest: refused by the command).
    pub fn is_empty(&self) -> bool {
        self.last.is_none()
            && self.daily.is_none()
            && self.weekly.is_none()
            && self.monthly.is_none()
    }
}

/// The decision: ids to keep and ids to delete, both newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    pub keep: Vec<String>,
    pub delete: Vec<String>,
}

/// A calendar period a time falls in (year and day, week or month).
type Bucket = fn(&DateTime<Utc>) -> (i32, u32);

/// Apply `policy` to `backups` (id, created), in any order.
pub fn decide(backups: &[(String, DateTime<Utc>)], policy: Policy) -> Decision {
    let mut sorted: Vec<&(String, DateTime<Utc>)> = backups.iter().collect();
    // Newest first; ties broken by id so the result does not depend on input order.
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    let mut keep: BTreeSet<usize> = BTreeSet::new();
    if !sorted.is_empty() {
        keep.insert(0);
    }
    if let Some(n) = policy.last {
        keep.extend(0..(n as usize).min(sorted.len()));
    }
    let buckets: [(Option<u32>, Bucket); 3] = [
        (policy.daily, |t| (t.year(), t.ordinal())),
        (policy.weekly, |t| {
            let w = t.iso_week();
            (w.year(), w.week())
        }),
        (policy.monthly, |t| (t.year(), t.month())),
    ];
    for (count, bucket) in buckets {
        let Some(mut left) = count else { continue };
        let mut last_bucket = None;
        for (i, (_, created)) in sorted.iter().enumerate() {
            if left == 0 {
                break;
            }
            let b = bucket(created);
            if last_bucket != Some(b) {
                last_bucket = Some(b);
                keep.insert(i);
                left -= 1;
            }
        }
    }
    let mut d = Decision::default();
    for (i, (id, _)) in sorted.iter().enumerate() {
        if keep.contains(&i) {
            d.keep.push(id.clone());
        } else {
            d.delete.push(id.clone());
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    /// Two backups a day (03:00 and 15:00) from 2026-01-01 for `days` days, ids "MMDD-HH".
    fn twice_daily(days: i64) -> Vec<(String, DateTime<Utc>)> {
        let start = at(2026, 1, 1, 3);
        (0..days * 2)
            .map(|i| {
                let t = start + chrono::Duration::hours(12 * i);
                (t.format("%m%d-%H").to_string(), t)
            })
            .collect()
    }

    #[test]
    fn keep_last_keeps_the_newest_n() {
        let d = decide(
            &twice_daily(3),
            Policy {
                last: Some(2),
                ..Policy::default()
            },
        );
        assert_eq!(d.keep, ["0103-15", "0103-03"]);
        assert_eq!(d.delete, ["0102-15", "0102-03", "0101-15", "0101-03"]);
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day() {
        let d = decide(
            &twice_daily(4),
            Policy {
                daily: Some(3),
                ..Policy::default()
            },
        );
        assert_eq!(d.keep, ["0104-15", "0103-15", "0102-15"]);
        assert_eq!(d.delete.len(), 5);
    }

    #[test]
    fn weekly_uses_iso_weeks() {
        // 2026-01-01 is a Thursday: ISO week 1 runs Mon 2025-12-29 .. Sun 2026-01-04.
        let d = decide(
            &twice_daily(20),
            Policy {
                weekly: Some(2),
                ..Policy::default()
            },
        );
        // Newest is 2026-01-20 (week 4); the newest of week 3 is Sun 2026-01-18 15:00.
        assert_eq!(d.keep, ["0120-15", "0118-15"]);
    }

    #[test]
    fn monthly_and_rules_combine() {
        let mut b = twice_daily(40); // into February
        b.push(("1215-03".into(), at(2025, 12, 15, 3)));
        let d = decide(
            &b,
            Policy {
                last: Some(1),
                daily: Some(2),
                monthly: Some(3),
                ..Policy::default()
            },
        );
        assert_eq!(d.keep, ["0209-15", "0208-15", "0131-15", "1215-03"]);
        assert_eq!(d.keep.len() + d.delete.len(), b.len());
    }

    #[test]
    fn the_newest_is_never_deleted() {
        let d = decide(
            &twice_daily(2),
            Policy {
                last: Some(0),
                ..Policy::default()
            },
        );
        assert_eq!(d.keep, ["0102-15"]);
        assert_eq!(d.delete.len(), 3);
        assert_eq!(decide(&[], Policy::default()), Decision::default());
    }

    #[test]
    fn input_order_does_not_matter() {
        let mut b = twice_daily(5);
        let p = Policy {
            last: Some(1),
            daily: Some(2),
            ..Policy::default()
        };
        let d1 = decide(&b, p);
        b.reverse();
        assert_eq!(decide(&b, p), d1);
    }
}
