//! `backups check`: whether a target's backups would save the day — the newest complete backup
//! recent enough, enough of them, the newest verified recently — as one verdict with a readable
//! reason per condition not met. The same verdict is shown by `backups check`, `size`, the
//! HTML report and `serve`'s `/metrics`, so they never disagree.
//!
//! Pure: a function of the listing ([`super::backups::list`]) and `now`; never lists, reads a
//! clock or touches a target, and never holds a secret (ids, times and counts only).

use super::backups::Listed;
use crate::archive::verification::{Check, Verification};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// The default `--max-age`: a daily backup plus two hours of slack (a slow dump, a late slot).
pub const DEFAULT_MAX_AGE_S: u64 = 26 * 3600;
/// The default `--min-count`.
pub const DEFAULT_MIN_COUNT: u32 = 1;

/// What is required of a target's backups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Criteria {
    /// The newest complete backup is at most this old (seconds).
    pub max_age_s: u64,
    /// At least this many complete backups.
    pub min_count: u32,
    /// The newest backup passed a verification at most this long ago (seconds); `None` does
    /// not ask for one. While the newest awaits its first verification, the latest
    /// verification of an older backup counts if it passed within the window.
    pub verified_within_s: Option<u64>,
}

impl Default for Criteria {
    fn default() -> Self {
        Criteria {
            max_age_s: DEFAULT_MAX_AGE_S,
            min_count: DEFAULT_MIN_COUNT,
            verified_within_s: None,
        }
    }
}

/// A verification as the verdict reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastVerification {
    /// The backup it was of.
    pub backup: String,
    pub at: DateTime<Utc>,
    pub ok: bool,
    pub check: Check,
    /// Seconds between the verification and `checked_at`.
    pub age_s: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The verdict (`backups check --json`, without the target).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub ok: bool,
    /// One sentence per condition not met; empty when `ok`.
    pub reasons: Vec<String>,
    /// Complete backups at the target.
    pub count: usize,
    pub newest_id: Option<String>,
    pub newest_created: Option<DateTime<Utc>>,
    /// Seconds since the newest complete backup was made (0 for one dated in the future).
    pub newest_age_s: Option<i64>,
    /// The latest verification of the newest backup that has one (usually the newest).
    pub last_verification: Option<LastVerification>,
    pub criteria: Criteria,
    pub checked_at: DateTime<Utc>,
}

/// A duration for people: "3d 4h", "26h" (below three days hours are clearer), "5m 12s".
pub fn human(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    match () {
        _ if s >= 3 * 86_400 => {
            if h == 0 {
                format!("{d}d")
            } else {
                format!("{d}d {h}h")
            }
        }
        _ if s >= 3600 => {
            let h = s / 3600;
            if m == 0 {
                format!("{h}h")
            } else {
                format!("{h}h {m}m")
            }
        }
        _ if s >= 60 => {
            if sec == 0 {
                format!("{m}m")
            } else {
                format!("{m}m {sec}s")
            }
        }
        _ => format!("{sec}s"),
    }
}

/// Judge the complete backups `listed` (any order) against `criteria` as of `now`.
pub fn check(listed: &[Listed], criteria: &Criteria, now: DateTime<Utc>) -> Verdict {
    let mut by_age: Vec<&Listed> = listed.iter().collect();
    by_age.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.id.cmp(&a.id)));
    let newest = by_age.first().copied();
    let mut reasons = Vec::new();
    let age = |t: DateTime<Utc>| (now - t).num_seconds().max(0);

    let last_verification = by_age.iter().find_map(|l| {
        l.verified
            .as_ref()
            .map(|v: &Verification| LastVerification {
                backup: l.id.clone(),
                at: v.at,
                ok: v.ok,
                check: v.check,
                age_s: age(v.at),
                problem: v.problem.clone(),
            })
    });

    match newest {
        None => reasons.push("there is no complete backup at this target".to_string()),
        Some(n) => {
            let a = age(n.created);
            if a as u64 > criteria.max_age_s {
                reasons.push(format!(
                    "the newest backup {} is {} old (max age {})",
                    n.id,
                    human(a),
                    human(criteria.max_age_s as i64)
                ));
            }
            // A verification record that cannot be read may hold a failed verification: a
            // failure whatever is asked, never "not verified".
            if let Some(why) = &n.verification_unreadable {
                reasons.push(format!(
                    "the verification record of the newest backup {} cannot be read ({why}): \
                     whether it passed is unknown",
                    n.id
                ));
            }
            // A failed verification of the newest backup is a failure whatever is asked.
            if let Some(v) = n.verified.as_ref().filter(|v| !v.ok) {
                reasons.push(format!(
                    "the newest backup {} failed its verification {} ago{}",
                    n.id,
                    human(age(v.at)),
                    v.problem
                        .as_deref()
                        .map(|p| format!(": {p}"))
                        .unwrap_or_default()
                ));
            }
        }
    }
    // Point-in-time recovery from the newest base backup stops at a hole in its WAL chain
    // (WAL lost before it was stored): a failure, however fresh the backups are.
    if let Some(p) = by_age
        .iter()
        .find(|l| l.kind == crate::archive::manifest::BackupKind::Physical)
    {
        if let Some(hole) = &p.wal_hole {
            reasons.push(format!(
                "the WAL archive after the newest physical backup {} has a hole: segment {hole} \
                 is missing, so point-in-time recovery stops there; take a base backup \
                 (`kasm-db backup --physical`)",
                p.id
            ));
        }
    }
    if listed.len() < criteria.min_count as usize && !listed.is_empty() {
        reasons.push(format!(
            "{} complete backup{}, fewer than the minimum of {}",
            listed.len(),
            if listed.len() == 1 { "" } else { "s" },
            criteria.min_count
        ));
    }
    // An unreadable record of the newest is its own reason above.
    let judged = newest.filter(|n| n.verification_unreadable.is_none());
    if let (Some(within), Some(n)) = (criteria.verified_within_s, judged) {
        let window = human(within as i64);
        match (&n.verified, &last_verification) {
            // Failed: already a reason above.
            (Some(v), _) if !v.ok => {}
            (Some(v), _) => {
                if age(v.at) as u64 > within {
                    reasons.push(format!(
                        "the newest backup {} last passed a verification {} ago (more than {window})",
                        n.id,
                        human(age(v.at))
                    ));
                }
            }
            (None, Some(lv)) if lv.ok && lv.age_s as u64 <= within => {}
            (None, Some(lv)) => reasons.push(format!(
                "the newest backup {} has not been verified, and the latest verification (of {}, {} ago) {}",
                n.id,
                lv.backup,
                human(lv.age_s),
                if lv.ok {
                    format!("is older than {window}")
                } else {
                    "failed".to_string()
                }
            )),
            (None, None) => reasons.push(format!(
                "the newest backup {} has not been verified (no backup at this target has been; \
                 run `kasm-db backups verify` or set schedule.verify)",
                n.id
            )),
        }
    }
    Verdict {
        ok: reasons.is_empty(),
        reasons,
        count: listed.len(),
        newest_id: newest.map(|n| n.id.clone()),
        newest_created: newest.map(|n| n.created),
        newest_age_s: newest.map(|n| age(n.created)),
        last_verification,
        criteria: *criteria,
        checked_at: now,
    }
}

/// A target's verdict as `size`, the report and `/metrics` show it: the target (without
/// credentials) and the verdict, or why its backups could not be read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetVerdict {
    pub target: String,
    pub verdict: Option<Verdict>,
    /// Why the target could not be listed (no secret in it).
    pub error: Option<String>,
}

impl TargetVerdict {
    /// The verdict of `listing` (or its error) with the default criteria of `backups check`.
    pub fn judge(
        target: String,
        listing: std::result::Result<&[Listed], String>,
        now: DateTime<Utc>,
    ) -> TargetVerdict {
        match listing {
            Ok(l) => TargetVerdict {
                target,
                verdict: Some(check(l, &Criteria::default(), now)),
                error: None,
            },
            Err(e) => TargetVerdict {
                target,
                verdict: None,
                error: Some(e),
            },
        }
    }

    /// One line: the verdict's status line, or `BACKUPS UNKNOWN - cannot read ...`.
    pub fn line(&self) -> String {
        match (&self.verdict, &self.error) {
            (Some(v), _) => v.status_line(),
            (None, e) => format!(
                "BACKUPS UNKNOWN - cannot read the backups: {}",
                e.as_deref().unwrap_or("unknown error")
            ),
        }
    }

    /// `Some(true)` all met, `Some(false)` not, `None` unknown (unreadable).
    pub fn ok(&self) -> Option<bool> {
        self.verdict.as_ref().map(|v| v.ok)
    }
}

impl Verdict {
    /// The Nagios/Icinga-style first line: `BACKUPS OK - ...` or `BACKUPS CRITICAL - ...`, with
    /// performance data after `|` (newest age in seconds against the max age, the count
    /// against the minimum).
    pub fn status_line(&self) -> String {
        let summary = if self.ok {
            match (&self.newest_id, self.newest_age_s) {
                (Some(id), Some(a)) => {
                    let verified = match &self.last_verification {
                        Some(v) if v.ok => format!(", last verified {} ago", human(v.age_s)),
                        Some(_) => ", last verification failed".to_string(),
                        None => ", never verified".to_string(),
                    };
                    format!(
                        "{} backup{}, newest {id} {} old{verified}",
                        self.count,
                        if self.count == 1 { "" } else { "s" },
                        human(a)
                    )
                }
                _ => "no backups required".to_string(),
            }
        } else {
            self.reasons.join("; ")
        };
        let mut perf = String::new();
        if let Some(a) = self.newest_age_s {
            perf.push_str(&format!("newest_age={a}s;;{};0 ", self.criteria.max_age_s));
        }
        perf.push_str(&format!(
            "count={};;{}:;0",
            self.count, self.criteria.min_count
        ));
        format!(
            "BACKUPS {} - {summary} | {perf}",
            if self.ok { "OK" } else { "CRITICAL" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap()
    }

    fn backup(id: &str, hours_ago: i64, verified: Option<(i64, bool)>) -> Listed {
        Listed {
            id: id.into(),
            created: now() - Duration::hours(hours_ago),
            size_bytes: 1 << 20,
            sha256: "ab".repeat(32),
            database: "kasm".into(),
            object: format!("/b/{id}/dump.gz"),
            exclude_logs: false,
            excluded: Vec::new(),
            alembic_version: None,
            verified: verified.map(|(h, ok)| Verification {
                at: now() - Duration::hours(h),
                check: Check::Checksum,
                ok,
                problem: (!ok).then(|| "SHA-256 differs".to_string()),
                duration_s: None,
            }),
            verification_unreadable: None,
            duration_s: 30.0,
            kind: crate::archive::manifest::BackupKind::Logical,
            start_lsn: None,
            stop_lsn: None,
            timeline: None,
            recoverable_from: None,
            recoverable_until: None,
            wal_hole: None,
        }
    }

    fn with_verify(days: u64) -> Criteria {
        Criteria {
            verified_within_s: Some(days * 86_400),
            ..Criteria::default()
        }
    }

    #[test]
    fn a_hole_after_the_newest_physical_backup_fails_the_check() {
        let physical = |id: &str, hours_ago: i64, hole: Option<&str>| {
            let mut b = backup(id, hours_ago, None);
            b.kind = crate::archive::manifest::BackupKind::Physical;
            b.wal_hole = hole.map(str::to_string);
            b
        };
        let seg = "000000010000000000000005";
        // The newest physical backup's chain has a hole: not ok, the segment named.
        let listed = [backup("l3", 1, None), physical("p2", 2, Some(seg))];
        let v = check(&listed, &Criteria::default(), now());
        assert!(!v.ok, "{v:?}");
        assert!(
            v.reasons
                .iter()
                .any(|r| r.contains(seg) && r.contains("p2")),
            "{v:?}"
        );
        // A hole only after an older one, the newest whole: ok.
        let listed = [physical("p2", 2, None), physical("p1", 30, Some(seg))];
        let v = check(&listed, &Criteria::default(), now());
        assert!(v.ok, "{v:?}");
    }

    #[test]
    fn an_unreadable_verification_record_fails_whatever_is_asked() {
        let mut newest = backup("b2", 1, None);
        newest.verification_unreadable = Some("cannot read b2/verified.json: EIO".into());
        let listed = [newest, backup("b1", 25, Some((2, true)))];
        for c in [Criteria::default(), with_verify(7)] {
            let v = check(&listed, &c, now());
            assert!(!v.ok);
            assert_eq!(v.reasons.len(), 1, "{:?}", v.reasons);
            assert!(
                v.reasons[0].contains("b2/verified.json") && v.reasons[0].contains("unknown"),
                "{:?}",
                v.reasons
            );
        }
    }

    #[test]
    fn no_backups_is_a_failure_of_its_own() {
        let v = check(&[], &Criteria::default(), now());
        assert!(!v.ok);
        assert_eq!(v.reasons, ["there is no complete backup at this target"]);
        assert_eq!(
            (v.count, v.newest_id.clone(), v.newest_age_s),
            (0, None, None)
        );
        assert!(
            v.status_line()
                .starts_with("BACKUPS CRITICAL - there is no complete backup")
        );
        // One reason, not also "fewer than the minimum" or "not verified".
        assert_eq!(check(&[], &with_verify(8), now()).reasons.len(), 1);
    }

    #[test]
    fn a_fresh_backup_passes_and_an_old_one_fails_with_its_age() {
        let l = [backup("b2", 2, None), backup("b1", 26, None)];
        let v = check(&l, &Criteria::default(), now());
        assert!(v.ok, "{:?}", v.reasons);
        assert_eq!(v.newest_id.as_deref(), Some("b2"));
        assert_eq!(v.newest_age_s, Some(7200));
        assert_eq!(v.count, 2);
        assert_eq!(
            v.status_line(),
            "BACKUPS OK - 2 backups, newest b2 2h old, never verified | newest_age=7200s;;93600;0 count=2;;1:;0"
        );
        // Listing order does not matter.
        let reversed = [backup("b1", 26, None), backup("b2", 2, None)];
        assert_eq!(
            check(&reversed, &Criteria::default(), now())
                .newest_id
                .as_deref(),
            Some("b2")
        );
        let old = [backup("b1", 27, None)];
        let v = check(&old, &Criteria::default(), now());
        assert!(!v.ok);
        assert_eq!(v.reasons, ["the newest backup b1 is 27h old (max age 26h)"]);
        // Exactly at the limit passes.
        assert!(check(&[backup("b", 26, None)], &Criteria::default(), now()).ok);
    }

    #[test]
    fn too_few_backups_fail() {
        let l = [backup("b2", 1, None), backup("b1", 25, None)];
        let c = Criteria {
            min_count: 3,
            ..Criteria::default()
        };
        let v = check(&l, &c, now());
        assert_eq!(
            v.reasons,
            ["2 complete backups, fewer than the minimum of 3"]
        );
        assert!(check(&l, &Criteria { min_count: 2, ..c }, now()).ok);
    }

    #[test]
    fn verification_within_the_window_is_required_when_asked() {
        // Never verified: fails only when asked.
        let l = [backup("b1", 1, None)];
        assert!(check(&l, &Criteria::default(), now()).ok);
        let v = check(&l, &with_verify(8), now());
        assert!(!v.ok);
        assert!(
            v.reasons[0].contains("b1 has not been verified"),
            "{:?}",
            v.reasons
        );
        // Verified an hour ago: passes, and the verification is reported.
        let l = [backup("b1", 2, Some((1, true)))];
        let v = check(&l, &with_verify(8), now());
        assert!(v.ok, "{:?}", v.reasons);
        let lv = v.last_verification.clone().unwrap();
        assert_eq!((lv.backup.as_str(), lv.ok, lv.age_s), ("b1", true, 3600));
        // Verified 9 days ago (an old newest backup): too long ago.
        let l = [backup("b1", 240, Some((216, true)))];
        let v = check(
            &l,
            &Criteria {
                max_age_s: 30 * 86_400,
                ..with_verify(8)
            },
            now(),
        );
        assert_eq!(
            v.reasons,
            ["the newest backup b1 last passed a verification 9d ago (more than 8d)"]
        );
    }

    #[test]
    fn the_newest_awaiting_its_verification_leans_on_the_last_one_in_the_window() {
        // Backup at 03:00, verify at 03:30: in between, yesterday's passed verification counts.
        let l = [backup("b2", 1, None), backup("b1", 25, Some((24, true)))];
        let v = check(&l, &with_verify(8), now());
        assert!(v.ok, "{:?}", v.reasons);
        assert_eq!(v.last_verification.unwrap().backup, "b1");
        // ... but not once it is older than the window, nor when it failed.
        let l = [backup("b2", 1, None), backup("b1", 25, Some((24, true)))];
        assert!(!check(&l, &with_verify(0), now()).ok);
        let l = [backup("b2", 1, None), backup("b1", 25, Some((24, false)))];
        let v = check(&l, &with_verify(8), now());
        assert_eq!(
            v.reasons,
            [
                "the newest backup b2 has not been verified, and the latest verification (of b1, 24h ago) failed"
            ]
        );
    }

    #[test]
    fn a_failed_verification_of_the_newest_always_fails() {
        let l = [
            backup("b2", 1, Some((0, false))),
            backup("b1", 25, Some((24, true))),
        ];
        for c in [Criteria::default(), with_verify(8)] {
            let v = check(&l, &c, now());
            assert_eq!(
                v.reasons,
                ["the newest backup b2 failed its verification 0s ago: SHA-256 differs"]
            );
            assert!(
                v.status_line()
                    .starts_with("BACKUPS CRITICAL - the newest backup b2 failed")
            );
        }
    }

    #[test]
    fn every_failed_condition_has_its_reason() {
        let l = [backup("b1", 48, None)];
        let c = Criteria {
            min_count: 2,
            ..with_verify(8)
        };
        let v = check(&l, &c, now());
        assert_eq!(v.reasons.len(), 3, "{:?}", v.reasons);
        assert!(
            v.status_line()
                .contains("48h old (max age 26h); 1 complete backup, fewer")
        );
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(human(12), "12s");
        assert_eq!(human(312), "5m 12s");
        assert_eq!(human(3600), "1h");
        assert_eq!(human(26 * 3600 + 60), "26h 1m");
        assert_eq!(human(3 * 86_400 + 4 * 3600 + 59), "3d 4h");
        assert_eq!(human(-5), "0s");
    }
}
