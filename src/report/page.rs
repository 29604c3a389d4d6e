//! The report page: [`ReportData`] in, one HTML document out, with its styles, charts (inline
//! SVG from [`super::svg`]) and a few lines of inline script inside it.
//!
//! Pure: no I/O, no clock. The page must work offline and stand alone: it never references a
//! URL, a font, a stylesheet or a script outside itself. The inline script only measures what
//! the browser drew (each chart's `data-drawn`, the body's `data-drawn="yes"`), so the browser
//! test can tell that the charts rendered; the page reads the same without it.

use super::html::{empty, legend, section_open};
use super::svg::{self, Bar, RefLine, Segment, Series, Unit, esc};
use super::{Backups, HourCount, LogsSource, ReportData};
use crate::sizing::{bytes, database::tier};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Colours of the normalised levels, quiet to loud.
pub const LEVELS: [(&str, &str); 5] = [
    ("DEBUG", "#94a3b8"),
    ("INFO", "#3b82f6"),
    ("WARNING", "#f59e0b"),
    ("ERROR", "#ef4444"),
    ("CRITICAL", "#7f1d1d"),
];

/// Applications beyond this many (by volume) are drawn together as "other".
pub const TOP_APPLICATIONS: usize = 8;

const PALETTE: [&str; 9] = [
    "#2563eb", "#16a34a", "#db2777", "#ea580c", "#7c3aed", "#0891b2", "#ca8a04", "#4b5563",
    "#be123c",
];
const OTHER: &str = "#cbd5e1";

const STYLE: &str = r#"
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #0f172a; background: #f8fafc; }
header { background: #0f172a; color: #f8fafc; padding: 18px 28px; }
header h1 { margin: 0; font-size: 20px; font-weight: 600; }
header p { margin: 4px 0 0; color: #cbd5e1; }
main { max-width: 1040px; margin: 0 auto; padding: 12px 28px 40px; }
section { background: #fff; border: 1px solid #e2e8f0; border-radius: 8px; padding: 14px 18px; margin: 16px 0; }
h2 { font-size: 16px; margin: 0 0 4px; }
p.note { margin: 2px 0 8px; color: #475569; }
p.empty { color: #64748b; font-style: italic; padding: 18px 0; }
p.verdict { padding: 8px 12px; border-radius: 6px; margin: 8px 0; }
p.verdict.ok { background: #f0fdf4; color: #166534; } p.verdict.bad { background: #fef2f2; color: #991b1b; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin-top: 16px; }
.card { flex: 1 1 180px; background: #fff; border: 1px solid #e2e8f0; border-radius: 8px; padding: 10px 14px; }
.card .k { color: #64748b; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .v { font-size: 22px; font-weight: 600; }
svg.chart { width: 100%; height: auto; display: block; }
svg.chart text { font-size: 11px; fill: #475569; }
svg.chart .grid { stroke: #e2e8f0; }
svg.chart .tick, svg.chart .baseline { stroke: #94a3b8; }
svg.chart .ref line { stroke: #dc2626; stroke-dasharray: 6 4; stroke-width: 1.5; }
svg.chart .ref text { fill: #dc2626; font-weight: 600; }
ul.legend { list-style: none; padding: 0; margin: 6px 0 0; display: flex; flex-wrap: wrap; gap: 4px 16px; }
ul.legend li { display: flex; align-items: center; gap: 6px; color: #334155; }
ul.legend i { display: inline-block; width: 12px; height: 12px; border-radius: 2px; }
.gauge { height: 14px; background: #e2e8f0; border-radius: 7px; overflow: hidden; margin: 8px 0 4px; }
.gauge div { height: 100%; background: #2563eb; min-width: 2px; }
.gauge.warn div { background: #f59e0b; } .gauge.over div { background: #dc2626; }
table { border-collapse: collapse; width: 100%; margin-top: 10px; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e2e8f0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
footer { color: #94a3b8; font-size: 12px; text-align: center; padding-bottom: 24px; }
"#;

/// After load: count the marks of each chart that have geometry, and say so on the chart.
const SCRIPT: &str = r#"
(function () {
  var charts = document.querySelectorAll('svg.chart');
  for (var i = 0; i < charts.length; i++) {
    var marks = charts[i].querySelectorAll('.mark'), drawn = 0;
    for (var j = 0; j < marks.length; j++) {
      var b = marks[j].getBBox();
      if (b.width > 0 || b.height > 0) { drawn++; }
    }
    charts[i].setAttribute('data-drawn', String(drawn));
  }
  document.body.setAttribute('data-drawn', 'yes');
})();
"#;

/// The whole page.
pub fn render(data: &ReportData) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>kasm-db report: {db}</title><style>{STYLE}</style></head>
<body data-drawn="no"><header><h1>kasm-db report: {db}</h1><p>Generated {gen}. All times UTC.</p></header><main>"#,
        db = esc(&data.database),
        gen = data.generated_at.format("%Y-%m-%d %H:%M UTC"),
    );
    cards(&mut out, data);
    tier_section(&mut out, data);
    sizes_section(&mut out, data);
    volume_sections(&mut out, data);
    super::backups::section(&mut out, &data.backups);
    let _ = writeln!(
        out,
        "</main><footer>kasm-db {} &middot; a self-contained page: no network needed to view it</footer><script>{SCRIPT}</script></body></html>",
        env!("CARGO_PKG_VERSION")
    );
    out
}

fn card(out: &mut String, key: &str, value: &str) {
    let _ = write!(
        out,
        r#"<div class="card"><div class="k">{}</div><div class="v">{}</div></div>"#,
        esc(key),
        esc(value)
    );
}

fn cards(out: &mut String, data: &ReportData) {
    out.push_str(r#"<div class="cards">"#);
    card(out, "database", &bytes(data.current.database_bytes));
    card(out, "logs relation", &bytes(data.current.logs_bytes));
    let total: u64 = data.volume.iter().map(|h| h.count).sum();
    let hours = match &data.logs {
        LogsSource::Table { window_hours, .. } => format!("records, last {window_hours} h"),
        LogsSource::Missing(_) => "records".into(),
    };
    card(out, &hours, &svg::Unit::Count.format(total as f64));
    let backups = match &data.backups {
        Backups::Listed {
            points, verdict, ..
        } => format!(
            "{} {}",
            points.len(),
            if verdict.ok { "OK" } else { "CRITICAL" }
        ),
        Backups::NotConfigured => "not configured".into(),
        Backups::Unavailable { .. } => "unavailable".into(),
    };
    card(out, "backups", &backups);
    out.push_str("</div>");
}

/// Tier disk in bytes (the guide's GB are decimal).
fn tier_disk_bytes(sessions: u32) -> f64 {
    tier(sessions).disk_gb as f64 * 1e9
}

fn tier_section(out: &mut String, data: &ReportData) {
    let Some(sessions) = data.sessions else {
        section_open(out, "tier", "Sizing tier", "");
        empty(
            out,
            "No session count configured: set sizing.sessions (or KASM_DB_SIZING_SESSIONS) to see the tier line.",
        );
        out.push_str("</section>");
        return;
    };
    let t = tier(sessions);
    section_open(
        out,
        "tier",
        &format!("Sizing tier for {sessions} sessions"),
        &t.source,
    );
    let disk = tier_disk_bytes(sessions);
    let used = data.current.database_bytes as f64;
    let share = used / disk;
    let class = if share >= 1.0 {
        "gauge over"
    } else if share >= 0.8 {
        "gauge warn"
    } else {
        "gauge"
    };
    let _ = write!(
        out,
        r#"<div class="{class}" title="{pct}"><div style="width:{w:.2}%"></div></div><p class="note">Database {db} of the tier's {gb} GB disk ({pct}); tier: {cpus} CPUs, {ram} GB RAM.</p></section>"#,
        pct = esc(&svg::percent(used, disk)),
        w = (share * 100.0).clamp(0.0, 100.0),
        db = esc(&bytes(data.current.database_bytes)),
        gb = t.disk_gb,
        cpus = t.cpus,
        ram = t.ram_gb,
    );
}

fn sizes_section(out: &mut String, data: &ReportData) {
    section_open(
        out,
        "sizes",
        "Database and logs size over time",
        &format!(
            "From the size samples of the last {} days (serve records one per schedule.size_sample).",
            data.size_window_days
        ),
    );
    let samples = match &data.sizes {
        None => {
            empty(
                out,
                "No size_samples table in this database: run `kasm-db migrate`, then let `serve` sample sizes.",
            );
            out.push_str("</section>");
            return;
        }
        Some(s) if s.is_empty() => {
            empty(
                out,
                "No size samples yet: `serve` records one on every schedule.size_sample.",
            );
            out.push_str("</section>");
            return;
        }
        Some(s) => s,
    };
    let t = |p: &super::SizePoint| p.at.timestamp() as f64;
    let series = vec![
        Series {
            name: "database".into(),
            color: "#2563eb".into(),
            points: samples
                .iter()
                .map(|p| (t(p), p.database_bytes as f64))
                .collect(),
        },
        Series {
            name: "logs (all levels)".into(),
            color: "#16a34a".into(),
            points: samples
                .iter()
                .map(|p| (t(p), (p.logs_debug_bytes + p.logs_logs_bytes) as f64))
                .collect(),
        },
        Series {
            name: "logs: DEBUG class".into(),
            color: "#94a3b8".into(),
            points: samples
                .iter()
                .map(|p| (t(p), p.logs_debug_bytes as f64))
                .collect(),
        },
    ];
    let reference = data.sessions.map(|s| RefLine {
        label: format!("tier disk {} GB ({s} sessions)", tier(s).disk_gb),
        value: tier_disk_bytes(s),
    });
    out.push_str(&svg::line_chart(
        "database and logs size over time",
        &series,
        reference.as_ref(),
        Unit::Bytes,
    ));
    let mut items: Vec<(String, String)> = series
        .iter()
        .map(|s| (s.name.clone(), s.color.clone()))
        .collect();
    let data_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    if reference
        .as_ref()
        .is_some_and(|r| svg::ref_in_scale(data_max, r.value))
    {
        items.push(("tier disk (dashed)".into(), "#dc2626".into()));
    }
    legend(out, &items);
    out.push_str("</section>");
}

/// Group hourly counts into bars by `key`; `order` fixes the stacking order and colours.
fn hourly_bars(
    volume: &[HourCount],
    key: impl Fn(&HourCount) -> String,
    order: &[(String, String)],
) -> Vec<Bar> {
    let mut by_hour: BTreeMap<i64, BTreeMap<String, u64>> = BTreeMap::new();
    for h in volume {
        *by_hour
            .entry(h.hour.timestamp())
            .or_default()
            .entry(key(h))
            .or_default() += h.count;
    }
    by_hour
        .into_iter()
        .map(|(hour, counts)| Bar {
            t0: hour as f64,
            t1: hour as f64 + 3600.0,
            segments: order
                .iter()
                .map(|(name, color)| Segment {
                    value: counts.get(name).copied().unwrap_or(0) as f64,
                    color: color.clone(),
                    label: name.clone(),
                })
                .collect(),
        })
        .collect()
}

/// The applications drawn on their own (largest first), the rest folded into "other".
pub fn top_applications(volume: &[HourCount], n: usize) -> (Vec<String>, bool) {
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    for h in volume {
        *totals.entry(app_name(&h.application)).or_default() += h.count;
    }
    let mut ranked: Vec<(String, u64)> = totals.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let more = ranked.len() > n;
    (ranked.into_iter().take(n).map(|(a, _)| a).collect(), more)
}

fn app_name(app: &str) -> String {
    if app.is_empty() {
        "(none)".into()
    } else {
        app.to_string()
    }
}

fn volume_sections(out: &mut String, data: &ReportData) {
    let note = match &data.logs {
        LogsSource::Table {
            relation,
            window_hours,
        } => format!(
            "Records in {relation} per hour of ingest_date, over the last {window_hours} hours (what retention has kept)."
        ),
        LogsSource::Missing(why) => why.clone(),
    };
    // By level.
    section_open(out, "volume-level", "Log volume per hour by level", &note);
    if data.volume.is_empty() {
        empty(out, "No log records in this window.");
    } else {
        let order: Vec<(String, String)> = LEVELS
            .iter()
            .map(|(l, c)| (l.to_string(), c.to_string()))
            .collect();
        let bars = hourly_bars(&data.volume, |h| h.level.to_ascii_uppercase(), &order);
        out.push_str(&svg::bar_chart(
            "log records per hour by level",
            &bars,
            Unit::Count,
        ));
        legend(out, &order);
    }
    out.push_str("</section>");

    // By application.
    section_open(
        out,
        "volume-application",
        "Log volume per hour by application",
        &note,
    );
    if data.volume.is_empty() {
        empty(out, "No log records in this window.");
    } else {
        let (top, more) = top_applications(&data.volume, TOP_APPLICATIONS);
        let mut order: Vec<(String, String)> = top
            .iter()
            .enumerate()
            .map(|(i, a)| (a.clone(), PALETTE[i % PALETTE.len()].to_string()))
            .collect();
        if more {
            order.push(("other".into(), OTHER.into()));
        }
        let bars = hourly_bars(
            &data.volume,
            |h| {
                let a = app_name(&h.application);
                if top.contains(&a) { a } else { "other".into() }
            },
            &order,
        );
        out.push_str(&svg::bar_chart(
            "log records per hour by application",
            &bars,
            Unit::Count,
        ));
        legend(out, &order);
    }
    out.push_str("</section>");
}

#[cfg(test)]
mod tests {
    use super::super::{Current, SizePoint};
    use super::*;
    use chrono::{DateTime, Duration, TimeZone, Utc};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap()
    }

    fn data() -> ReportData {
        let mut volume = Vec::new();
        for h in 0..5 {
            for (i, level) in ["DEBUG", "INFO", "ERROR"].iter().enumerate() {
                for (j, app) in ["kasm_api", "kasm_manager", ""].iter().enumerate() {
                    volume.push(HourCount {
                        hour: t0() + Duration::hours(h),
                        level: level.to_string(),
                        application: app.to_string(),
                        count: (10 * (i + 1) + j) as u64,
                    });
                }
            }
        }
        ReportData {
            generated_at: t0() + Duration::hours(6),
            database: "kasmapp@db:5432/kasm_logs".into(),
            current: Current {
                database_bytes: 40 << 20,
                logs_bytes: 20 << 20,
            },
            sizes: Some(
                (0..4)
                    .map(|i| SizePoint {
                        at: t0() + Duration::hours(i),
                        database_bytes: (30 + i as u64) << 20,
                        logs_debug_bytes: 4 << 20,
                        logs_logs_bytes: (10 + i as u64) << 20,
                    })
                    .collect(),
            ),
            size_window_days: 90,
            logs: LogsSource::Table {
                relation: "public.logs".into(),
                window_hours: 168,
            },
            volume,
            sessions: Some(200),
            backups: Backups::NotConfigured,
        }
    }

    #[test]
    fn page_has_every_chart_and_is_self_contained() {
        let html = render(&data());
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert_eq!(html.matches("<svg class=\"chart\"").count(), 3);
        for id in [
            "tier",
            "sizes",
            "volume-level",
            "volume-application",
            "backups",
        ] {
            assert!(html.contains(&format!("<section id=\"{id}\"")), "{id}");
        }
        assert!(html.contains("No backup target configured"));
        assert!(html.contains("Sizing tier for 200 sessions"));
        // 34 MiB against an 80 GB tier: the tier line is named off-scale, not in the legend.
        assert!(html.contains("off this scale") && !html.contains("tier disk (dashed)"));
        // Nothing from outside: the only URL is the SVG namespace, which loads nothing.
        let without_ns = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        for bad in [
            "http://", "https://", "src=", "href=", "url(", "@import", "<link",
        ] {
            assert!(!without_ns.contains(bad), "{bad}");
        }
        assert!(html.contains("<script>") && html.contains("data-drawn"));
    }

    #[test]
    fn level_bars_total_the_counts_and_stack_in_level_order() {
        let d = data();
        let order: Vec<(String, String)> = LEVELS
            .iter()
            .map(|(l, c)| (l.to_string(), c.to_string()))
            .collect();
        let bars = hourly_bars(&d.volume, |h| h.level.clone(), &order);
        assert_eq!(bars.len(), 5);
        let total: f64 = bars.iter().flat_map(|b| &b.segments).map(|s| s.value).sum();
        let want: u64 = d.volume.iter().map(|h| h.count).sum();
        assert_eq!(total as u64, want);
        let labels: Vec<&str> = bars[0].segments.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]);
        assert_eq!(bars[0].segments[3].value, 30.0 + 31.0 + 32.0);
    }

    #[test]
    fn applications_beyond_the_top_are_folded_into_other() {
        let mut volume = Vec::new();
        for i in 0..12u64 {
            volume.push(HourCount {
                hour: t0(),
                level: "INFO".into(),
                application: format!("app{i:02}"),
                count: 100 - i,
            });
        }
        let (top, more) = top_applications(&volume, TOP_APPLICATIONS);
        assert_eq!(top.len(), 8);
        assert!(more);
        assert_eq!(top[0], "app00");
        assert!(!top.contains(&"app11".to_string()));
        let mut d = data();
        d.volume = volume;
        let html = render(&d);
        assert!(html.contains(">other</li>"));
        // app08..app11 fold into other: 92 + 91 + 90 + 89.
        assert!(html.contains("other: 362 at"), "{html}");
    }

    #[test]
    fn empty_states_say_what_to_do() {
        let mut d = data();
        d.sizes = None;
        d.volume.clear();
        d.sessions = None;
        let html = render(&d);
        assert!(html.contains("run `kasm-db migrate`"));
        assert!(html.contains("No log records in this window"));
        assert!(html.contains("set sizing.sessions"));
        assert_eq!(html.matches("<svg class=\"chart\"").count(), 0);
        d.sizes = Some(Vec::new());
        assert!(render(&d).contains("No size samples yet"));
    }

    #[test]
    fn tier_gauge_shows_the_share_of_the_tier_disk() {
        let mut d = data();
        d.current.database_bytes = 60_000_000_000; // 60 of 80 GB: 75%
        let html = render(&d);
        assert!(html.contains(r#"<div class="gauge" title="75%"><div style="width:75.00%">"#));
        d.current.database_bytes = 90_000_000_000;
        assert!(render(&d).contains(r#"class="gauge over""#));
    }
}
