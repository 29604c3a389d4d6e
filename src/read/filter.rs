//! The filters of the read side, the same for `kasm-db logs`, the read API and the panel:
//! levels, application, host, user, fields inside `data`, a message search and a time range.
//! Parsing of what operators type (`--since 90m`, `--level warn,error`, `--where k=v`) lives
//! here too, so the CLI and the API refuse the same things with the same words.
//!
//! Pure: no I/O, no clock (callers pass `now`). Nothing here touches SQL text; `sql.rs` turns a
//! [`Filter`] into a WHERE clause with bound parameters.

use crate::config::Window;
use crate::logs::record::Level;
use chrono::{DateTime, Utc};

/// Which records to read. Every part is optional; all given parts must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Any of these levels (empty: any level).
    pub levels: Vec<Level>,
    pub app: Option<String>,
    pub host: Option<String>,
    pub user: Option<String>,
    /// `data #>> path = value` for each (path split on '.').
    pub wheres: Vec<(Vec<String>, String)>,
    /// Case-insensitive substring of the message.
    pub grep: Option<String>,
    /// `ingest_date >= since`.
    pub since: Option<DateTime<Utc>>,
    /// `ingest_date < until`.
    pub until: Option<DateTime<Utc>>,
}

/// The column a `--count-by` or facet groups on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Level,
    App,
    Host,
    User,
}

impl Field {
    pub fn parse(text: &str) -> Result<Field, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "level" | "levelname" => Ok(Field::Level),
            "app" | "application" => Ok(Field::App),
            "host" => Ok(Field::Host),
            "user" | "kasm_user_name" => Ok(Field::User),
            other => Err(format!(
                "cannot count by {other:?}: use level, app, host or user"
            )),
        }
    }
    pub fn column(self) -> &'static str {
        match self {
            Field::Level => "levelname",
            Field::App => "application",
            Field::Host => "host",
            Field::User => "kasm_user_name",
        }
    }
}

/// A level name as the contract normalises it (WARN → WARNING, FATAL → CRITICAL).
pub fn parse_level(text: &str) -> Result<Level, String> {
    Level::parse(text).ok_or_else(|| {
        format!("unknown level {text:?}: use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    })
}

/// Levels from repeated values and comma lists (`--level warn,error --level critical`).
pub fn parse_levels<S: AsRef<str>>(values: &[S]) -> Result<Vec<Level>, String> {
    let mut out = Vec::new();
    for v in values {
        for part in v
            .as_ref()
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let l = parse_level(part)?;
            if !out.contains(&l) {
                out.push(l);
            }
        }
    }
    Ok(out)
}

/// The levels at or above `min`.
pub fn at_least(min: Level) -> Vec<Level> {
    Level::ALL.iter().copied().filter(|l| *l >= min).collect()
}

/// `--level` and `--min-level` together: the levels both allow (an empty intersection is an
/// error, not a filter that silently matches nothing).
pub fn combine_levels(levels: Vec<Level>, min: Option<Level>) -> Result<Vec<Level>, String> {
    match min {
        None => Ok(levels),
        Some(m) if levels.is_empty() => Ok(at_least(m)),
        Some(m) => {
            let kept: Vec<Level> = levels.into_iter().filter(|l| *l >= m).collect();
            if kept.is_empty() {
                Err(format!(
                    "--level and --min-level {} leave no level to show",
                    m.as_str()
                ))
            } else {
                Ok(kept)
            }
        }
    }
}

/// A time as operators write it: RFC 3339 (`2026-12-07T03:00:00Z`), or a span back from
/// `now` (`90m`, `2h`, `7d`, `1d12h`).
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Ok(at.with_timezone(&Utc));
    }
    match Window::parse(t) {
        Ok(span) => now
            .checked_sub_signed(span.as_chrono())
            .ok_or_else(|| format!("{t:?} reaches too far back")),
        Err(_) => Err(format!(
            "{t:?} is neither an RFC 3339 time (2026-12-07T03:00:00Z) nor a span back from now \
             (90m, 2h, 7d)"
        )),
    }
}

/// `KEY=VALUE`, the key a field of `data` (`a.b` for a nested field).
pub fn parse_where(text: &str) -> Result<(Vec<String>, String), String> {
    let Some((k, v)) = text.split_once('=') else {
        return Err(format!(
            "--where {text:?} has no '=': write KEY=VALUE, e.g. --where kasm_id=abc"
        ));
    };
    let key = k.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(format!(
            "--where {text:?}: the key is empty (write KEY=VALUE; a.b for a nested field)"
        ));
    }
    Ok((key.split('.').map(str::to_string).collect(), v.to_string()))
}

/// The time window of a volume histogram: at most this many buckets.
pub const MAX_BUCKETS: i64 = 5000;

/// A bucket width (`1m`, `5m`, `1h`, `1d`), at least one second.
pub fn parse_bucket(text: &str) -> Result<i64, String> {
    let w = Window::parse(text).map_err(|e| format!("bucket {text:?}: {e}"))?;
    let secs = w.as_duration().as_secs() as i64;
    if secs < 1 {
        return Err(format!("bucket {text:?}: at least 1s"));
    }
    Ok(secs)
}

/// A filter as the CLI's flags and the API's query parameters give it: text, not yet parsed.
#[derive(Debug, Default)]
pub struct Given<'a> {
    pub levels: Vec<&'a str>,
    pub min_level: Option<&'a str>,
    pub app: Option<&'a str>,
    pub host: Option<&'a str>,
    pub user: Option<&'a str>,
    pub wheres: Vec<&'a str>,
    pub grep: Option<&'a str>,
    pub since: Option<&'a str>,
    pub until: Option<&'a str>,
}

impl Given<'_> {
    /// The filter, or what is wrong with the text (the same words for the CLI and the API).
    pub fn parse(&self, now: DateTime<Utc>) -> Result<Filter, String> {
        let levels = parse_levels(&self.levels)?;
        let min = self.min_level.map(parse_level).transpose()?;
        let wheres = self
            .wheres
            .iter()
            .map(|w| parse_where(w))
            .collect::<Result<Vec<_>, _>>()?;
        let time = |name: &str, t: Option<&str>| {
            t.map(|t| parse_time(t, now).map_err(|e| format!("{name}: {e}")))
                .transpose()
        };
        let f = Filter {
            levels: combine_levels(levels, min)?,
            app: self.app.map(str::to_string),
            host: self.host.map(str::to_string),
            user: self.user.map(str::to_string),
            wheres,
            grep: self.grep.filter(|g| !g.is_empty()).map(str::to_string),
            since: time("since", self.since)?,
            until: time("until", self.until)?,
        };
        f.check()?;
        Ok(f)
    }
}

impl Filter {
    /// Checks that need the whole filter: a range that is empty by construction is a mistake.
    pub fn check(&self) -> Result<(), String> {
        if let (Some(s), Some(u)) = (self.since, self.until) {
            if s >= u {
                return Err(format!(
                    "since {} is not before until {}: nothing can match",
                    s.to_rfc3339(),
                    u.to_rfc3339()
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn levels() {
        assert_eq!(
            parse_levels(&["warn,error", " critical ", "WARNING"]).unwrap(),
            vec![Level::Warning, Level::Error, Level::Critical]
        );
        assert!(
            parse_levels(&["loud"])
                .unwrap_err()
                .contains("unknown level")
        );
        assert_eq!(
            combine_levels(vec![], Some(Level::Error)).unwrap(),
            vec![Level::Error, Level::Critical]
        );
        assert_eq!(
            combine_levels(vec![Level::Debug, Level::Error], Some(Level::Warning)).unwrap(),
            vec![Level::Error]
        );
        assert!(combine_levels(vec![Level::Debug], Some(Level::Info)).is_err());
    }

    #[test]
    fn times() {
        let now = Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap();
        assert_eq!(
            parse_time("90m", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 12, 7, 10, 30, 0).unwrap()
        );
        assert_eq!(
            parse_time("7d", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap()
        );
        assert_eq!(
            parse_time("2026-12-07T03:00:00+01:00", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 12, 7, 2, 0, 0).unwrap()
        );
        assert!(parse_time("yesterday", now).is_err());
        assert!(parse_time("2026-13-01", now).is_err());
    }

    #[test]
    fn wheres_and_fields() {
        assert_eq!(
            parse_where("a.b=x=y").unwrap(),
            (vec!["a".to_string(), "b".to_string()], "x=y".to_string())
        );
        assert_eq!(parse_where("k=").unwrap().1, "");
        assert!(parse_where("novalue").is_err());
        assert!(parse_where("=v").is_err());
        assert!(parse_where("a..b=v").is_err());
        assert_eq!(Field::parse("APP").unwrap(), Field::App);
        assert!(Field::parse("message").is_err());
        assert_eq!(parse_bucket("5m").unwrap(), 300);
        assert!(parse_bucket("0").is_err());
    }
}
