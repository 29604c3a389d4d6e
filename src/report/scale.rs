//! Scales for the report's charts: value axes with round ticks (binary units for bytes,
//! clock units for durations), time axes at round UTC instants, and how numbers, shares and
//! text are written on them (HTML-escaped).
//!
//! Pure: no I/O, no clock; nothing here draws.

use chrono::{DateTime, Utc};

/// How values on the y axis read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Binary units: KiB, MiB, GiB.
    Bytes,
    /// Plain counts: 950, 1.5k, 2M.
    Count,
    /// Durations: 45 s, 3 min, 1.5 h.
    Seconds,
}

impl Unit {
    pub fn format(self, v: f64) -> String {
        match self {
            Unit::Bytes => crate::sizing::bytes(v.max(0.0).round() as u64),
            Unit::Count => {
                let a = v.abs();
                if a >= 1e6 {
                    format!("{}M", crate::sizing::num(v / 1e6))
                } else if a >= 1e3 {
                    format!("{}k", crate::sizing::num(v / 1e3))
                } else {
                    crate::sizing::num(v)
                }
            }
            Unit::Seconds => {
                if v >= 3600.0 {
                    format!("{} h", crate::sizing::num(v / 3600.0))
                } else if v >= 120.0 {
                    format!("{} min", crate::sizing::num(v / 60.0))
                } else {
                    format!("{} s", crate::sizing::num(v))
                }
            }
        }
    }
}

/// Escape text for HTML/SVG content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Round `max` up to a tick-friendly bound and return (bound, step), about `n` steps.
/// Bytes use steps of 1, 2, 5 x 10^k in a binary unit, so labels read "256 MiB".
pub fn value_ticks(max: f64, unit: Unit, n: usize) -> (f64, f64) {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let scale = match unit {
        Unit::Bytes => {
            let mut s = 1.0;
            while max / s >= 1024.0 {
                s *= 1024.0;
            }
            s
        }
        _ => 1.0,
    };
    let raw = max / scale / n.max(1) as f64;
    if unit == Unit::Seconds {
        // Durations step by what a clock shows: 10 s, 30 s, 1 min, 5 min, 15 min, 1 h, ...
        const NICE: [f64; 16] = [
            1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
            3600.0, 7200.0, 21600.0,
        ];
        let step = NICE
            .iter()
            .copied()
            .find(|s| *s >= raw)
            .unwrap_or_else(|| (raw / 21600.0).ceil() * 21600.0);
        return ((max / step).ceil() * step, step);
    }
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    // Counts and bytes never need fractional steps below one unit.
    let step = if unit != Unit::Seconds && scale == 1.0 {
        step.max(1.0)
    } else {
        step
    } * scale;
    let bound = (max / step).ceil() * step;
    (bound, step)
}

/// Time ticks at round UTC instants between `min` and `max` (epoch seconds): about `n` of them.
pub fn time_ticks(min: f64, max: f64, n: usize) -> Vec<(f64, String)> {
    const STEPS: [i64; 12] = [
        3600,
        2 * 3600,
        3 * 3600,
        6 * 3600,
        12 * 3600,
        86_400,
        2 * 86_400,
        7 * 86_400,
        14 * 86_400,
        30 * 86_400,
        91 * 86_400,
        365 * 86_400,
    ];
    let span = (max - min).max(1.0);
    let step = STEPS
        .iter()
        .copied()
        .find(|s| span / *s as f64 <= n as f64)
        .unwrap_or(365 * 86_400);
    let first = (min / step as f64).ceil() as i64 * step;
    let mut out = Vec::new();
    let mut t = first;
    while (t as f64) <= max {
        let fmt = if step < 86_400 {
            "%d %b %H:%M"
        } else {
            "%Y-%m-%d"
        };
        let label = DateTime::<Utc>::from_timestamp(t, 0)
            .map(|d| d.format(fmt).to_string())
            .unwrap_or_default();
        out.push((t as f64, label));
        t += step;
    }
    out
}

/// Which of `n` categories get a label on an axis with room for about `max` of them: every
/// k-th from the first, evenly spaced, so that labels never crowd each other; all of them when
/// they fit.
pub fn label_at(n: usize, max: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let k = n.div_ceil(max.max(1));
    (0..n).step_by(k.max(1)).collect()
}

/// `part` as a share of `whole`, readable for tiny shares ("0.01%", "<0.01%").
pub fn percent(part: f64, whole: f64) -> String {
    if whole <= 0.0 {
        return "n/a".into();
    }
    let p = part / whole * 100.0;
    if p > 0.0 && p < 0.01 {
        "<0.01%".into()
    } else {
        format!("{}%", crate::sizing::num(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: f64 = 3600.0;

    #[test]
    fn value_ticks_are_round_and_cover_the_max() {
        let (bound, step) = value_ticks(950.0, Unit::Count, 5);
        assert_eq!((bound, step), (1000.0, 200.0));
        let (bound, step) = value_ticks(3.0, Unit::Count, 5);
        assert_eq!((bound, step), (3.0, 1.0));
        // 300 MiB in binary units: steps of 100 MiB (not 104857600-ish decimals).
        let (bound, step) = value_ticks(300.0 * 1048576.0, Unit::Bytes, 5);
        assert_eq!(step, 100.0 * 1048576.0);
        assert_eq!(bound, 300.0 * 1048576.0);
        assert_eq!(Unit::Bytes.format(step), "100.0 MiB");
        let (bound, _) = value_ticks(0.0, Unit::Bytes, 5);
        assert!(bound > 0.0, "an empty chart still has a scale");
    }

    #[test]
    fn time_ticks_land_on_round_utc_instants() {
        let t0 = 1_700_000_000.0; // 2023-11-14 22:13:20 UTC
        let ticks = time_ticks(t0, t0 + 10.0 * H, 8);
        assert!(!ticks.is_empty() && ticks.len() <= 9, "{ticks:?}");
        for (t, _) in &ticks {
            assert_eq!(*t as i64 % 7200, 0, "2-hour steps for a 10-hour span");
        }
        assert_eq!(ticks[0].1, "15 Nov 00:00");
        let days = time_ticks(t0, t0 + 60.0 * 86_400.0, 8);
        assert!(
            days.iter()
                .all(|(t, l)| *t as i64 % 86_400 == 0 && l.len() == 10)
        );
    }

    #[test]
    fn category_labels_are_evenly_spaced_and_never_crowd() {
        assert_eq!(label_at(0, 8), Vec::<usize>::new());
        assert_eq!(label_at(3, 8), [0, 1, 2]);
        assert_eq!(label_at(8, 8), (0..8).collect::<Vec<_>>());
        assert_eq!(label_at(9, 8), [0, 2, 4, 6, 8]);
        assert_eq!(label_at(40, 8), [0, 5, 10, 15, 20, 25, 30, 35]);
        assert!(label_at(1000, 8).len() <= 8);
    }

    #[test]
    fn units_read_like_people_write_them() {
        assert_eq!(Unit::Count.format(1500.0), "1.5k");
        assert_eq!(Unit::Count.format(2_000_000.0), "2M");
        assert_eq!(Unit::Seconds.format(90.0), "90 s");
        assert_eq!(Unit::Seconds.format(150.0), "2.5 min");
        // Duration axes step by clock-friendly amounts, never 1.67 min.
        assert_eq!(value_ticks(84.0, Unit::Seconds, 5), (100.0, 20.0));
        assert_eq!(value_ticks(2900.0, Unit::Seconds, 5), (3000.0, 600.0));
        assert_eq!(Unit::Seconds.format(12.0), "12 s");
        assert_eq!(percent(1.0, 4.0), "25%");
        assert_eq!(percent(1.0, 0.0), "n/a");
    }
}
