//! Charts as inline SVG text: time axes, value axes with readable ticks, line charts with an
//! optional reference line, and (stacked) bar charts. Data in, `<svg>` string out.
//!
//! Pure: no I/O, no clock, no database. It must never emit anything that loads from outside
//! the page (no `href`/`src`, no fonts, no CSS `url()`), and it escapes every label it is given.
//! Every drawn data mark carries `class="mark"`, and the `<svg>` says how many it drew in
//! `data-marks`, so a browser test can compare that with what actually rendered.

pub use super::scale::{Unit, esc, percent};
use super::scale::{label_at, time_ticks, value_ticks};
use chrono::{DateTime, Utc};
use std::fmt::Write;

pub const WIDTH: f64 = 960.0;
pub const HEIGHT: f64 = 260.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 30.0;

/// Maps data to the plot area.
struct Frame {
    x0: f64,
    x1: f64,
    ymax: f64,
}

impl Frame {
    fn x(&self, t: f64) -> f64 {
        let span = (self.x1 - self.x0).max(1e-9);
        LEFT + (t - self.x0) / span * (WIDTH - LEFT - RIGHT)
    }
    fn y(&self, v: f64) -> f64 {
        HEIGHT - BOTTOM - v / self.ymax * (HEIGHT - TOP - BOTTOM)
    }
}

fn open_svg(out: &mut String, label: &str, marks: usize) {
    let _ = write!(
        out,
        r#"<svg class="chart" role="img" aria-label="{}" viewBox="0 0 {WIDTH} {HEIGHT}" preserveAspectRatio="xMidYMid meet" data-marks="{marks}" xmlns="http://www.w3.org/2000/svg">"#,
        esc(label)
    );
}

fn axes(out: &mut String, f: &Frame, step: f64, unit: Unit) {
    value_grid(out, f, step, unit);
    for (t, label) in time_ticks(f.x0, f.x1, 8) {
        x_label(out, f.x(t), &label);
    }
    baseline(out);
}

/// The x axis of a chart by category: the labels of the categories `label_at` picks, each
/// under the middle of its slot (category `i` spans `[i, i + 1)`).
fn category_axes(out: &mut String, f: &Frame, step: f64, unit: Unit, labels: &[String]) {
    value_grid(out, f, step, unit);
    for i in label_at(labels.len(), 8) {
        x_label(out, f.x(i as f64 + 0.5), &labels[i]);
    }
    baseline(out);
}

/// Opens the axis group with the value grid and its labels.
fn value_grid(out: &mut String, f: &Frame, step: f64, unit: Unit) {
    out.push_str(r#"<g class="axis">"#);
    let mut v = 0.0;
    while v <= f.ymax + step * 1e-6 {
        let y = f.y(v);
        let _ = write!(
            out,
            r#"<line class="grid" x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            esc(&unit.format(v))
        );
        v += step;
    }
}

/// A tick and its label under the plot at `x`.
fn x_label(out: &mut String, x: f64, label: &str) {
    // Labels at the edges grow inwards so that they are not cut off.
    let anchor = if x > WIDTH - RIGHT - 45.0 {
        "end"
    } else if x < LEFT + 45.0 {
        "start"
    } else {
        "middle"
    };
    let _ = write!(
        out,
        r#"<line class="tick" x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}"/><text x="{x:.1}" y="{:.1}" text-anchor="{anchor}">{}</text>"#,
        HEIGHT - BOTTOM,
        HEIGHT - BOTTOM + 4.0,
        HEIGHT - BOTTOM + 18.0,
        esc(label)
    );
}

/// The baseline; closes the axis group.
fn baseline(out: &mut String) {
    let _ = write!(
        out,
        r#"<line class="baseline" x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}"/></g>"#,
        WIDTH - RIGHT,
        HEIGHT - BOTTOM,
        HEIGHT - BOTTOM
    );
}

/// One line of a line chart: `(epoch seconds, value)` points, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub color: String,
    pub points: Vec<(f64, f64)>,
}

/// A horizontal line across the chart (the tier's disk, a limit).
#[derive(Debug, Clone, PartialEq)]
pub struct RefLine {
    pub label: String,
    pub value: f64,
}

/// A reference line further above the data than this factor is not drawn to scale (it would
/// flatten the data); it is named at the top of the chart instead.
pub const REF_SCALE_LIMIT: f64 = 4.0;

/// Whether a reference line at `value` is drawn to scale above data reaching `data_max`.
pub fn ref_in_scale(data_max: f64, value: f64) -> bool {
    value > 0.0 && value <= data_max.max(1.0) * REF_SCALE_LIMIT
}

/// A line chart over time. Points are joined per series; each point also gets a marker with a
/// tooltip when there are few enough to see.
pub fn line_chart(
    label: &str,
    series: &[Series],
    reference: Option<&RefLine>,
    unit: Unit,
) -> String {
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .collect();
    let (mut x0, mut x1) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), (t, _)| {
        (a.min(*t), b.max(*t))
    });
    if all.is_empty() {
        (x0, x1) = (0.0, 3600.0);
    }
    if x1 - x0 < 3600.0 {
        // One sample (or a burst): give it an hour either side so it sits mid-chart.
        x0 -= 3600.0;
        x1 += 3600.0;
    }
    let data_max = all.iter().map(|p| p.1).fold(0.0, f64::max);
    let in_scale = reference.filter(|r| ref_in_scale(data_max, r.value));
    let top = in_scale.map_or(data_max, |r| r.value.max(data_max));
    // Room above the data for the off-scale note, so that it never covers a point.
    let off_scale = in_scale.is_none() && reference.is_some_and(|r| r.value > 0.0);
    let headroom = if off_scale { 1.2 } else { 1.05 };
    let (ymax, step) = value_ticks(top * headroom, unit, 5);
    let f = Frame { x0, x1, ymax };
    let markers = all.len() <= 240;
    let marks = series
        .iter()
        .filter(|s| !s.points.is_empty())
        .map(|s| 1 + if markers { s.points.len() } else { 0 })
        .sum();
    let mut out = String::new();
    open_svg(&mut out, label, marks);
    axes(&mut out, &f, step, unit);
    if let Some(r) = in_scale {
        let y = f.y(r.value);
        let _ = write!(
            out,
            r#"<g class="ref"><line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text></g>"#,
            WIDTH - RIGHT,
            WIDTH - RIGHT - 4.0,
            y - 5.0,
            esc(&r.label)
        );
    } else if let Some(r) = reference.filter(|_| off_scale) {
        let _ = write!(
            out,
            r#"<g class="ref off-scale"><text x="{:.1}" y="{:.1}" text-anchor="end">&#9650; {} (off this scale: {} of it used)</text></g>"#,
            WIDTH - RIGHT - 4.0,
            TOP + 10.0,
            esc(&r.label),
            esc(&percent(data_max, r.value))
        );
    }
    for s in series.iter().filter(|s| !s.points.is_empty()) {
        let mut d = String::new();
        for (i, (t, v)) in s.points.iter().enumerate() {
            let _ = write!(
                d,
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { " L" },
                f.x(*t),
                f.y(*v)
            );
        }
        let _ = write!(
            out,
            r#"<path class="mark series" data-series="{}" fill="none" stroke="{}" stroke-width="2" d="{d}"/>"#,
            esc(&s.name),
            esc(&s.color)
        );
        if markers {
            for (t, v) in &s.points {
                let _ = write!(
                    out,
                    r#"<circle class="mark point" cx="{:.1}" cy="{:.1}" r="2.5" fill="{}"><title>{}: {} at {}</title></circle>"#,
                    f.x(*t),
                    f.y(*v),
                    esc(&s.color),
                    esc(&s.name),
                    esc(&unit.format(*v)),
                    esc(&when(*t))
                );
            }
        }
    }
    out.push_str("</svg>");
    out
}

/// One segment of a bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub value: f64,
    pub color: String,
    /// What the segment is, for its tooltip ("ERROR", "kasm_api", "verified").
    pub label: String,
}

/// One bar over the time interval `[t0, t1)` (epoch seconds); segments stack bottom-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub t0: f64,
    pub t1: f64,
    pub segments: Vec<Segment>,
}

/// A (stacked) bar chart over time. Zero-valued segments are not drawn.
pub fn bar_chart(label: &str, bars: &[Bar], unit: Unit) -> String {
    let (mut x0, mut x1) = bars.iter().fold((f64::MAX, f64::MIN), |(a, b), bar| {
        (a.min(bar.t0), b.max(bar.t1))
    });
    if bars.is_empty() {
        (x0, x1) = (0.0, 3600.0);
    }
    if x1 - x0 < 6.0 * 3600.0 {
        // A few bars would be as wide as the chart: keep them bar-shaped.
        let pad = (6.0 * 3600.0 - (x1 - x0)) / 2.0;
        x0 -= pad;
        x1 += pad;
    }
    let (ymax, step) = value_ticks(stack_max(bars) * 1.05, unit, 5);
    let f = Frame { x0, x1, ymax };
    let mut out = String::new();
    open_svg(&mut out, label, marks(bars));
    axes(&mut out, &f, step, unit);
    draw_bars(&mut out, &f, bars, unit, |bar| when(bar.t0));
    out.push_str("</svg>");
    out
}

/// One bar of a chart by category: `label` under it (and in its tooltip).
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryBar {
    pub label: String,
    pub segments: Vec<Segment>,
}

/// A (stacked) bar chart with one equally wide slot per bar, in the order given, whatever
/// the time between them: backups minutes apart are as distinct as backups days apart. Up to
/// eight evenly spaced bars are labelled on the x axis; every bar's tooltip has its label.
pub fn category_bar_chart(label: &str, bars: &[CategoryBar], unit: Unit) -> String {
    let slots: Vec<Bar> = bars
        .iter()
        .enumerate()
        .map(|(i, b)| Bar {
            t0: i as f64,
            t1: i as f64 + 1.0,
            segments: b.segments.clone(),
        })
        .collect();
    let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
    // At least as many slots as a few bars need to stay bar-shaped.
    let x1 = (bars.len() as f64).max(6.0);
    let pad = (x1 - bars.len() as f64) / 2.0;
    let (ymax, step) = value_ticks(stack_max(&slots) * 1.05, unit, 5);
    let f = Frame {
        x0: -pad,
        x1: bars.len() as f64 + pad,
        ymax,
    };
    let mut out = String::new();
    open_svg(&mut out, label, marks(&slots));
    category_axes(&mut out, &f, step, unit, &labels);
    draw_bars(&mut out, &f, &slots, unit, |bar| {
        labels.get(bar.t0 as usize).cloned().unwrap_or_default()
    });
    out.push_str("</svg>");
    out
}

/// The height of the tallest stack.
fn stack_max(bars: &[Bar]) -> f64 {
    bars.iter()
        .map(|b| b.segments.iter().map(|s| s.value.max(0.0)).sum::<f64>())
        .fold(0.0, f64::max)
}

/// The segments drawn (zero-valued ones are not).
fn marks(bars: &[Bar]) -> usize {
    bars.iter()
        .flat_map(|b| &b.segments)
        .filter(|s| s.value > 0.0)
        .count()
}

/// Draw `bars` in `f`; `at` names where a bar is for its tooltip.
fn draw_bars(out: &mut String, f: &Frame, bars: &[Bar], unit: Unit, at: impl Fn(&Bar) -> String) {
    for bar in bars {
        let xa = f.x(bar.t0);
        let w = (f.x(bar.t1) - xa).max(1.0);
        // A gap between neighbours when there is room for one.
        let (xa, w) = if w > 4.0 {
            (xa + w * 0.1, w * 0.8)
        } else {
            (xa, w)
        };
        let mut base = 0.0;
        for s in bar.segments.iter().filter(|s| s.value > 0.0) {
            let y_top = f.y(base + s.value);
            let h = (f.y(base) - y_top).max(0.5);
            let _ = write!(
                out,
                r#"<rect class="mark bar" x="{xa:.1}" y="{y_top:.1}" width="{w:.1}" height="{h:.1}" fill="{}"><title>{}: {} at {}</title></rect>"#,
                esc(&s.color),
                esc(&s.label),
                esc(&unit.format(s.value)),
                esc(&at(bar))
            );
            base += s.value;
        }
    }
}

fn when(t: f64) -> String {
    DateTime::<Utc>::from_timestamp(t as i64, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: f64 = 3600.0;

    fn count(hay: &str, needle: &str) -> usize {
        hay.matches(needle).count()
    }

    #[test]
    fn line_chart_draws_each_series_with_markers_and_counts_them() {
        let s = vec![
            Series {
                name: "database".into(),
                color: "#2563eb".into(),
                points: vec![(0.0, 10.0), (H, 20.0), (2.0 * H, 30.0)],
            },
            Series {
                name: "logs".into(),
                color: "#16a34a".into(),
                points: vec![(0.0, 5.0), (2.0 * H, 8.0)],
            },
        ];
        let svg = line_chart("sizes", &s, None, Unit::Bytes);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(count(&svg, r#"class="mark series""#), 2);
        assert_eq!(count(&svg, r#"class="mark point""#), 5);
        assert!(svg.contains(r#"data-marks="7""#));
        // The highest point is near the top, the lowest near the bottom, in SVG coordinates.
        assert!(
            svg.contains(r#"d="M78.0,"#),
            "first point on the left edge: {svg}"
        );
    }

    #[test]
    fn reference_line_is_drawn_to_scale_or_named_off_scale() {
        let s = [Series {
            name: "database".into(),
            color: "#000".into(),
            points: vec![(0.0, 100.0), (H, 120.0)],
        }];
        let near = RefLine {
            label: "tier disk".into(),
            value: 200.0,
        };
        let svg = line_chart("x", &s, Some(&near), Unit::Count);
        assert!(svg.contains(r#"<g class="ref"><line"#));
        assert!(!svg.contains("off-scale"));
        let far = RefLine {
            label: "tier disk 80 GB".into(),
            value: 80e9,
        };
        let svg = line_chart("x", &s, Some(&far), Unit::Count);
        assert!(
            svg.contains("off-scale") && svg.contains("&lt;0.01%"),
            "{svg}"
        );
        assert!(!svg.contains(r#"<g class="ref"><line"#));
    }

    #[test]
    fn stacked_bars_stack_and_skip_zero_segments() {
        let seg = |v: f64, l: &str| Segment {
            value: v,
            color: "#123456".into(),
            label: l.into(),
        };
        let bars = vec![
            Bar {
                t0: 0.0,
                t1: H,
                segments: vec![seg(10.0, "INFO"), seg(0.0, "DEBUG"), seg(5.0, "ERROR")],
            },
            Bar {
                t0: H,
                t1: 2.0 * H,
                segments: vec![seg(3.0, "INFO")],
            },
        ];
        let svg = bar_chart("volume", &bars, Unit::Count);
        assert_eq!(count(&svg, r#"class="mark bar""#), 3);
        assert!(svg.contains(r#"data-marks="3""#));
        // The stacked ERROR segment sits on top of INFO: its y is above (smaller than) INFO's.
        let ys: Vec<f64> = svg
            .split(r#"class="mark bar""#)
            .skip(1)
            .map(|r| {
                let y = r.split("y=\"").nth(1).unwrap();
                y[..y.find('"').unwrap()].parse().unwrap()
            })
            .collect();
        assert!(ys[1] < ys[0], "{ys:?}");
        let heights: Vec<f64> = svg
            .split("height=\"")
            .skip(1)
            .map(|r| r[..r.find('"').unwrap()].parse().unwrap())
            .collect();
        assert!(heights.iter().all(|h| *h > 0.0));
        // 10 is twice 5: heights in proportion.
        assert!((heights[0] / heights[1] - 2.0).abs() < 0.05, "{heights:?}");
    }

    #[test]
    fn labels_are_escaped_and_nothing_is_loaded_from_outside() {
        let bars = vec![Bar {
            t0: 0.0,
            t1: H,
            segments: vec![Segment {
                value: 1.0,
                color: "#000".into(),
                label: "<script>alert('x')</script>".into(),
            }],
        }];
        let svg = bar_chart("a \"quoted\" & <b>", &bars, Unit::Count);
        assert!(!svg.contains("<script>") && svg.contains("&lt;script&gt;"));
        assert!(svg.contains("a &quot;quoted&quot; &amp; &lt;b&gt;"));
        for bad in ["href=", "src=", "url(", "@import"] {
            assert!(!svg.contains(bad), "{bad}");
        }
    }

    /// The `(x, width)` of every bar rect.
    fn rects(svg: &str) -> Vec<(f64, f64)> {
        let attr = |r: &str, name: &str| -> f64 {
            let v = r.split(&format!(" {name}=\"")).nth(1).unwrap();
            v[..v.find('"').unwrap()].parse().unwrap()
        };
        svg.split(r#"class="mark bar""#)
            .skip(1)
            .map(|r| (attr(r, "x"), attr(r, "width")))
            .collect()
    }

    #[test]
    fn bars_by_category_are_distinct_however_close_in_time() {
        // Five backups two minutes apart: five separate bars of equal width, in order, none
        // overlapping, each labelled (the time axis would draw them as one bar an hour wide).
        let bars: Vec<CategoryBar> = (0..5)
            .map(|i| CategoryBar {
                label: format!("29 Nov 12:{:02}", i * 2),
                segments: vec![Segment {
                    value: 10.0 + i as f64,
                    color: "#16a34a".into(),
                    label: format!("b{i}"),
                }],
            })
            .collect();
        let svg = category_bar_chart("backup size", &bars, Unit::Bytes);
        assert!(svg.contains(r#"data-marks="5""#));
        let r = rects(&svg);
        assert_eq!(r.len(), 5);
        for w in r.windows(2) {
            assert!(w[0].0 + w[0].1 < w[1].0, "bars overlap or touch: {r:?}");
            assert!((w[0].1 - w[1].1).abs() < 0.11, "equal widths: {r:?}");
        }
        assert!(r[0].1 > 40.0, "a few bars stay wide enough to see: {r:?}");
        assert!(r.iter().all(|(x, w)| *x >= LEFT && x + w <= WIDTH - RIGHT));
        for i in 0..5 {
            let l = format!("29 Nov 12:{:02}", i * 2);
            assert_eq!(count(&svg, &format!(">{l}</text>")), 1, "axis label {l}");
            assert!(svg.contains(&format!("b{i}: ")), "tooltip of b{i}");
        }
        // The same instants on the time axis collapse into (nearly) one place.
        let timed: Vec<Bar> = (0..5)
            .map(|i| Bar {
                t0: i as f64 * 120.0,
                t1: i as f64 * 120.0 + 1.0,
                segments: bars[i].segments.clone(),
            })
            .collect();
        let t = rects(&bar_chart("x", &timed, Unit::Bytes));
        assert!(t[4].0 - t[0].0 < 30.0, "{t:?}");
        // Many bars: every one drawn, only every k-th labelled.
        let many: Vec<CategoryBar> = (0..40)
            .map(|i| CategoryBar {
                label: format!("L{i:02}"),
                segments: bars[0].segments.clone(),
            })
            .collect();
        let svg = category_bar_chart("many", &many, Unit::Bytes);
        assert_eq!(rects(&svg).len(), 40);
        assert_eq!(count(&svg, r#"<line class="tick""#), 8);
        assert!(svg.contains(">L00</text>") && !svg.contains(">L01</text>"));
    }

    #[test]
    fn empty_input_still_makes_a_valid_chart_with_no_marks() {
        let svg = category_bar_chart("empty", &[], Unit::Bytes);
        assert!(svg.contains(r#"data-marks="0""#) && svg.ends_with("</svg>"));
        let svg = bar_chart("empty", &[], Unit::Count);
        assert!(svg.contains(r#"data-marks="0""#) && svg.ends_with("</svg>"));
        let svg = line_chart("empty", &[], None, Unit::Bytes);
        assert!(svg.contains(r#"data-marks="0""#));
    }
}
