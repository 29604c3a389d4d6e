//! The report's backups section: the verdict of `backups check` (the same pure check), each
//! complete backup as a bar of its size and one of its duration (one bar per backup, however
//! close in time), coloured by whether it was verified, and a table of the latest ten; or a
//! line saying why there is nothing to show.
//!
//! Pure rendering: never lists, reads or touches a backup target; [`Backups`] is handed in.

use super::html::{empty, legend, section_open};
use super::svg::{self, CategoryBar, Segment, Unit, esc};
use super::{BackupPoint, Backups};
use crate::backup::check::{Verdict, human};
use crate::sizing::bytes;
use std::fmt::Write;

const VERIFIED: (&str, &str) = ("verified", "#16a34a");
const UNVERIFIED: (&str, &str) = ("not verified", "#94a3b8");
const FAILED: (&str, &str) = ("verify failed", "#dc2626");

fn verified_style(b: &BackupPoint) -> (&'static str, &'static str) {
    match b.verified {
        Some(true) => VERIFIED,
        Some(false) => FAILED,
        None => UNVERIFIED,
    }
}

/// One bar per backup, oldest first, in equal slots whatever the time between them (backups
/// minutes apart stay distinct), labelled by when each was made: to the minute, or to the
/// second when two would read the same.
fn backup_bars(points: &[BackupPoint], value: impl Fn(&BackupPoint) -> f64) -> Vec<CategoryBar> {
    let minutes: Vec<String> = points
        .iter()
        .map(|p| p.created.format("%d %b %H:%M").to_string())
        .collect();
    let crowded = minutes.windows(2).any(|w| w[0] == w[1]);
    points
        .iter()
        .zip(minutes)
        .map(|(p, minute)| {
            let (label, color) = verified_style(p);
            CategoryBar {
                label: if crowded {
                    p.created.format("%H:%M:%S").to_string()
                } else {
                    minute
                },
                segments: vec![Segment {
                    value: value(p),
                    color: color.into(),
                    label: format!("{} ({label})", p.id),
                }],
            }
        })
        .collect()
}

/// The verdict of `backups check` (default criteria), as a line above the charts.
fn verdict_line(out: &mut String, v: &Verdict) {
    let (class, head) = if v.ok {
        ("verdict ok", "Backups OK")
    } else {
        ("verdict bad", "Backups CRITICAL")
    };
    let detail = if v.ok {
        let mut d = match (&v.newest_id, v.newest_age_s) {
            (Some(id), Some(a)) => format!("newest {id} is {} old", human(a)),
            _ => String::new(),
        };
        d.push_str(&match &v.last_verification {
            Some(lv) if lv.ok => format!("; last verified {} ago", human(lv.age_s)),
            Some(_) => "; the last verification failed".into(),
            None => "; never verified".into(),
        });
        d
    } else {
        v.reasons.join("; ")
    };
    let _ = write!(
        out,
        r#"<p class="{class}"><strong>{head}</strong> &mdash; {} (the check of <code>kasm-db backups check</code>: newest at most {} old, at least {})</p>"#,
        esc(&detail),
        esc(&human(v.criteria.max_age_s as i64)),
        v.criteria.min_count
    );
}

/// The backups section: size and duration bars coloured by verification, and the latest ten.
pub fn section(out: &mut String, backups: &Backups) {
    match backups {
        Backups::NotConfigured => {
            section_open(out, "backups", "Backups", "");
            empty(
                out,
                "No backup target configured: set backup.to (s3://bucket/prefix or a directory) to see backups here.",
            );
        }
        Backups::Unavailable { target, reason } => {
            section_open(out, "backups", "Backups", &format!("Target {target}."));
            empty(out, &format!("Backups could not be read: {reason}."));
        }
        Backups::Listed {
            target,
            points,
            verdict,
        } if points.is_empty() => {
            section_open(out, "backups", "Backups", &format!("Target {target}."));
            verdict_line(out, verdict);
            empty(out, "No complete backups at this target yet.");
        }
        Backups::Listed {
            target,
            points,
            verdict,
        } => {
            let mut points = points.clone();
            points.sort_by_key(|p| p.created);
            section_open(
                out,
                "backups",
                "Backups over time",
                &format!(
                    "{} complete backups at {target}. Bar colour: verified, not verified, verify failed.",
                    points.len()
                ),
            );
            verdict_line(out, verdict);
            out.push_str("<h3>Size</h3>");
            out.push_str(&svg::category_bar_chart(
                "backup size",
                &backup_bars(&points, |p| p.size_bytes as f64),
                Unit::Bytes,
            ));
            if points.iter().any(|p| p.duration_s.is_some()) {
                out.push_str("<h3>Duration</h3>");
                out.push_str(&svg::category_bar_chart(
                    "backup duration",
                    &backup_bars(&points, |p| p.duration_s.unwrap_or(0.0)),
                    Unit::Seconds,
                ));
            }
            let items: Vec<(String, String)> = [VERIFIED, UNVERIFIED, FAILED]
                .iter()
                .map(|(l, c)| (l.to_string(), c.to_string()))
                .collect();
            legend(out, &items);
            recovery(out, &points);
            out.push_str(r#"<table><thead><tr><th>backup</th><th>created</th><th class="num">size</th><th class="num">duration</th><th>verified</th><th class="num">restore test</th><th>alembic_version</th></tr></thead><tbody>"#);
            for p in points.iter().rev().take(10) {
                let _ = write!(
                    out,
                    r#"<tr><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td><td class="num">{}</td><td>{}</td></tr>"#,
                    esc(&p.id),
                    p.created.format("%Y-%m-%d %H:%M"),
                    esc(&bytes(p.size_bytes)),
                    esc(&p
                        .duration_s
                        .map(|d| Unit::Seconds.format(d))
                        .unwrap_or_default()),
                    verified_style(p).0,
                    esc(&p
                        .recovery_s
                        .map(|d| Unit::Seconds.format(d))
                        .unwrap_or_default()),
                    esc(p.alembic_version.as_deref().unwrap_or(""))
                );
            }
            out.push_str("</tbody></table>");
        }
    }
    out.push_str("</section>");
}

/// The last measured recovery time: the newest backup's passed full restore test.
fn recovery(out: &mut String, points: &[BackupPoint]) {
    match points.iter().rev().find(|p| p.recovery_s.is_some()) {
        Some(p) => {
            let _ = write!(
                out,
                "<p>Last measured recovery time: <b>{}</b> (full restore test of backup {}: fetch, \
                 checksum, pg_restore and row-count checks).</p>",
                esc(&Unit::Seconds.format(p.recovery_s.unwrap_or(0.0))),
                esc(&p.id)
            );
        }
        None => out.push_str(
            "<p>No measured recovery time: no backup has passed a full restore test \
             (backups verify --scratch-db, or schedule.verify with backup.scratch_db).</p>",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone, Utc};

    fn render(b: &Backups) -> String {
        let mut out = String::new();
        section(&mut out, b);
        out
    }

    #[test]
    fn backups_draw_size_and_duration_coloured_by_verification() {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap();
        let mut b = Backups::Listed {
            target: "s3://b/p".into(),
            verdict: Box::new(verdict(true)),
            points: (0..3)
                .map(|i| BackupPoint {
                    id: format!("b{i}"),
                    created: t0 + Duration::days(i),
                    size_bytes: (5 + i as u64) << 20,
                    duration_s: Some(30.0 + i as f64),
                    verified: [Some(true), None, Some(false)][i as usize],
                    alembic_version: Some(format!("rev{i}")),
                    recovery_s: [Some(95.0), None, None][i as usize],
                })
                .collect(),
        };
        let html = render(&b);
        assert!(html.contains("Backups over time"));
        assert!(
            html.contains(
                "Last measured recovery time: <b>95 s</b> (full restore test of backup b0"
            ),
            "{html}"
        );
        assert!(html.contains("<td>rev2</td>"), "{html}");
        assert_eq!(
            html.matches("<svg class=\"chart\"").count(),
            2,
            "size and duration"
        );
        assert_eq!(html.matches("<rect class=\"mark bar\"").count(), 6);
        assert!(html.contains("<rect class=\"mark bar\""));
        for c in [VERIFIED.1, UNVERIFIED.1, FAILED.1] {
            assert!(html.contains(&format!("fill=\"{c}\"")), "{c}");
        }
        assert!(html.contains("<td>b2</td>"));
        b = Backups::Unavailable {
            target: "s3://b/p".into(),
            reason: "not built in".into(),
        };
        assert!(render(&b).contains("Backups could not be read: not built in."));
        assert!(render(&Backups::NotConfigured).contains("No backup target configured"));
        let none = Backups::Listed {
            target: "/mnt/nfs/kasm".into(),
            points: Vec::new(),
            verdict: Box::new(verdict(false)),
        };
        let html = render(&none);
        assert!(html.contains("No complete backups at this target yet"));
        assert!(html.contains("<strong>Backups CRITICAL</strong> &mdash; there is no complete backup at this target"), "{html}");
    }

    fn verdict(some: bool) -> Verdict {
        let now = Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap();
        let listed: Vec<crate::backup::backups::Listed> = if some {
            vec![crate::backup::backups::Listed {
                id: "b2".into(),
                created: now - Duration::hours(3),
                size_bytes: 1,
                sha256: String::new(),
                database: "kasm".into(),
                object: String::new(),
                exclude_logs: false,
                excluded: Vec::new(),
                alembic_version: None,
                verified: None,
                verification_unreadable: None,
                duration_s: 1.0,
                kind: crate::archive::manifest::BackupKind::Logical,
                start_lsn: None,
                stop_lsn: None,
                timeline: None,
                recoverable_from: None,
                recoverable_until: None,
                wal_hole: None,
            }]
        } else {
            Vec::new()
        };
        crate::backup::check::check(&listed, &Default::default(), now)
    }

    #[test]
    fn backups_minutes_apart_are_one_bar_each_with_the_verdict_above() {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 29, 9, 0, 0).unwrap();
        let points: Vec<BackupPoint> = (0..4)
            .map(|i| BackupPoint {
                id: format!("b{i}"),
                created: t0 + Duration::minutes(i),
                size_bytes: 5 << 20,
                duration_s: Some(3.0),
                verified: None,
                alembic_version: None,
                recovery_s: None,
            })
            .collect();
        let html = render(&Backups::Listed {
            target: "/mnt/nfs/kasm".into(),
            points: points.clone(),
            verdict: Box::new(verdict(true)),
        });
        assert!(
            html.contains(
                "<strong>Backups OK</strong> &mdash; newest b2 is 3h old; never verified"
            ),
            "{html}"
        );
        // Four bars per chart, labelled to the minute.
        assert_eq!(html.matches("<rect class=\"mark bar\"").count(), 8);
        for i in 0..4 {
            assert!(html.contains(&format!(">29 Nov 09:0{i}</text>")), "{i}");
        }
        // Two in the same minute: labelled to the second.
        let same: Vec<BackupPoint> = (0..2)
            .map(|i| BackupPoint {
                created: t0 + Duration::seconds(10 * i),
                ..points[0].clone()
            })
            .collect();
        let bars = backup_bars(&same, |p| p.size_bytes as f64);
        assert_eq!(bars[0].label, "09:00:00");
        assert_eq!(bars[1].label, "09:00:10");
    }
}
