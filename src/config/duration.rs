//! Retention windows and other durations as operators write them: "4h", "90m", "7d", "168h",
//! "1d12h", "30s", and "0" (or the integer 0) meaning "keep none". Pure parsing, no I/O.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A non-negative duration parsed from the config's notation. Zero is meaningful: for a
/// retention window it means "keep none in the database".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Window(Duration);

impl Window {
    pub const ZERO: Window = Window(Duration::ZERO);

    pub fn from_secs(secs: u64) -> Self {
        Window(Duration::from_secs(secs))
    }
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
    pub fn as_duration(&self) -> Duration {
        self.0
    }
    pub fn as_chrono(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.0).unwrap_or(chrono::Duration::MAX)
    }

    /// Parse "4h", "7d", "1d12h", "90m", "30s", "0". Units: s, m, h, d, w.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err("empty duration; write e.g. \"4h\", \"7d\" or \"0\"".into());
        }
        if t.chars().all(|c| c.is_ascii_digit()) {
            let n: u64 = t
                .parse()
                .map_err(|_| format!("duration {t:?} is too large"))?;
            if n == 0 {
                return Ok(Window::ZERO);
            }
            return Err(format!(
                "duration {t:?} has no unit; write e.g. \"{n}h\" or \"{n}d\" (units: s, m, h, d, w)"
            ));
        }
        let mut total: u64 = 0;
        let mut num = String::new();
        for c in t.chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            if c.is_whitespace() {
                continue;
            }
            let unit = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                'w' => 604_800,
                _ => {
                    return Err(format!(
                        "duration {t:?}: unknown unit {c:?} (units: s, m, h, d, w)"
                    ));
                }
            };
            if num.is_empty() {
                return Err(format!("duration {t:?}: unit {c:?} without a number"));
            }
            let n: u64 = num
                .parse()
                .map_err(|_| format!("duration {t:?} is too large"))?;
            total = n
                .checked_mul(unit)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| format!("duration {t:?} is too large"))?;
            num.clear();
        }
        if !num.is_empty() {
            return Err(format!("duration {t:?}: trailing number without a unit"));
        }
        Ok(Window::from_secs(total))
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        if s == 0 {
            return write!(f, "0");
        }
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
            if s % size == 0 {
                return write!(f, "{}{unit}", s / size);
            }
        }
        write!(f, "{s}s")
    }
}

impl Serialize for Window {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(0) => Ok(Window::ZERO),
            Raw::Int(n) => Err(serde::de::Error::custom(format!(
                "duration {n} has no unit; write e.g. \"{n}h\" or \"{n}d\", or 0 to keep none"
            ))),
            Raw::Text(t) => Window::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_notations_of_the_contract() {
        let cases = [
            ("4h", 4 * 3600),
            ("90m", 90 * 60),
            ("7d", 7 * 86_400),
            ("168h", 168 * 3600),
            ("1d12h", 36 * 3600),
            ("30s", 30),
            ("2w", 14 * 86_400),
            ("0", 0),
            (" 4h ", 4 * 3600),
        ];
        for (text, secs) in cases {
            assert_eq!(
                Window::parse(text).unwrap(),
                Window::from_secs(secs),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in ["", "4", "h", "4x", "4h3", "-4h", "99999999999999999999d"] {
            assert!(Window::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn displays_in_the_largest_whole_unit() {
        assert_eq!(Window::parse("168h").unwrap().to_string(), "7d");
        assert_eq!(Window::parse("90m").unwrap().to_string(), "90m");
        assert_eq!(Window::parse("0").unwrap().to_string(), "0");
        assert_eq!(Window::parse("61s").unwrap().to_string(), "61s");
    }

    #[test]
    fn deserializes_strings_and_integer_zero() {
        #[derive(Deserialize)]
        struct T {
            w: Window,
        }
        let t: T = toml::from_str("w = 0").unwrap();
        assert!(t.w.is_zero());
        let t: T = toml::from_str("w = \"4h\"").unwrap();
        assert_eq!(t.w, Window::from_secs(14_400));
        assert!(toml::from_str::<T>("w = 5").is_err());
    }
}
