//! One Kasm log record: parsing an NDJSON line (python-json-logger fields, or a Splunk HEC
//! envelope around them) into the typed columns of `logs` plus the record's own JSON text.
//!
//! Pure and allocation-light: no I/O, no clock. A line either becomes a [`Record`] or a
//! [`Reject`] with a reason; nothing is dropped silently. `data` keeps the record's JSON text
//! byte for byte (after HEC unwrapping), so unicode, quotes, backslashes and escapes survive.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// The normalised levels of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

impl Level {
    pub const ALL: [Level; 5] = [
        Level::Debug,
        Level::Info,
        Level::Warning,
        Level::Error,
        Level::Critical,
    ];

    /// Case-insensitive; WARN → WARNING, FATAL → CRITICAL.
    pub fn parse(text: &str) -> Option<Level> {
        let t = text.trim();
        let eq = |s: &str| t.eq_ignore_ascii_case(s);
        Some(if eq("DEBUG") {
            Level::Debug
        } else if eq("INFO") {
            Level::Info
        } else if eq("WARNING") || eq("WARN") {
            Level::Warning
        } else if eq("ERROR") {
            Level::Error
        } else if eq("CRITICAL") || eq("FATAL") {
            Level::Critical
        } else {
            return None;
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
            Level::Critical => "CRITICAL",
        }
    }

    pub fn class(self) -> Class {
        if self == Level::Debug {
            Class::Debug
        } else {
            Class::Logs
        }
    }
}

/// Retention class: DEBUG records are `debug`, all others `logs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Debug,
    Logs,
}

impl Class {
    pub const ALL: [Class; 2] = [Class::Debug, Class::Logs];
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Debug => "debug",
            Class::Logs => "logs",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed record, ready for the database or a SIEM.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub level: Level,
    pub log_time: Option<DateTime<Utc>>,
    pub host: Option<String>,
    pub application: Option<String>,
    pub kasm_user_name: Option<String>,
    pub message: Option<String>,
    /// The record object's JSON text as received (the inner object of a HEC envelope).
    pub data: String,
}

impl Record {
    pub fn class(&self) -> Class {
        self.level.class()
    }
}

/// Why a line was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    InvalidUtf8,
    TooLong {
        len: usize,
        limit: usize,
    },
    InvalidJson(String),
    NotObject(&'static str),
    BadLevel(String),
    /// jsonb cannot store U+0000; PostgreSQL would refuse the row.
    NulCharacter,
    /// The server refused the row (found by isolating it from its batch).
    ServerRefused(String),
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reject::InvalidUtf8 => write!(f, "not valid UTF-8"),
            Reject::TooLong { len, limit } => {
                write!(f, "line of {len} bytes is over the limit of {limit} bytes")
            }
            Reject::InvalidJson(e) => write!(f, "invalid JSON: {e}"),
            Reject::NotObject(kind) => write!(f, "not a JSON object (a {kind})"),
            Reject::BadLevel(l) => write!(
                f,
                "level {l} is not one of DEBUG, INFO, WARNING (WARN), ERROR, CRITICAL (FATAL)"
            ),
            Reject::NulCharacter => {
                write!(f, "contains \\u0000, which PostgreSQL jsonb cannot store")
            }
            Reject::ServerRefused(e) => write!(f, "refused by the database: {e}"),
        }
    }
}

/// The fields kasm-db reads from a record; everything else stays in `data` untouched.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow, default)]
    levelname: Option<&'a RawValue>,
    #[serde(borrow, default)]
    level: Option<&'a RawValue>,
    /// What HEC logging libraries (splunk-logging for Node.js, ...) name the level; used only
    /// when neither `levelname` nor `level` is there, and only when it names a level.
    #[serde(borrow, default)]
    severity: Option<&'a RawValue>,
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
    #[serde(borrow, default)]
    msg: Option<&'a RawValue>,
    #[serde(borrow, default)]
    host: Option<&'a RawValue>,
    #[serde(borrow, default)]
    application: Option<&'a RawValue>,
    #[serde(borrow, default)]
    kasm_user_name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    asctime: Option<&'a RawValue>,
    #[serde(borrow, default)]
    time: Option<&'a RawValue>,
    /// Present on a Splunk HEC envelope.
    #[serde(borrow, default)]
    event: Option<&'a RawValue>,
    /// A record's own `hec` member (then the envelope's metadata is not added under that name).
    #[serde(borrow, default)]
    hec: Option<&'a RawValue>,
}

/// Parse one line (without its newline). `limit` is the longest accepted line in bytes.
pub fn parse_line(line: &[u8], limit: usize) -> Result<Record, Reject> {
    if line.len() > limit {
        return Err(Reject::TooLong {
            len: line.len(),
            limit,
        });
    }
    let text = std::str::from_utf8(line).map_err(|_| Reject::InvalidUtf8)?;
    parse_str(text.trim_end_matches('\r'))
}

/// Parse one record from JSON text (an object, or a HEC envelope).
///
/// An envelope's `event` is the record: an object as it is; a string holding a JSON object is
/// parsed as that object (what a logging handler with a JSON formatter sends, and what Splunk
/// does for the `_json` sourcetype); any other value is the message. The envelope's other keys
/// (`time`, `host`, `source`, `sourcetype`, `index`, `fields`) are kept in `data` under `"hec"`
/// (unless the record has a `hec` key of its own), and its `time` and `host` fill those columns
/// when the record lacks them. A line without `event` is kept byte for byte.
pub fn parse_str(text: &str) -> Result<Record, Reject> {
    let outer = fields(text)?;
    let Some(event) = outer.event else {
        return build(&outer, text.trim().to_string());
    };
    let inner_text = event.get();
    let decoded = if inner_text.starts_with('"') {
        serde_json::from_str::<String>(inner_text).ok()
    } else {
        None
    };
    let json_in_string = decoded
        .as_deref()
        .map(str::trim)
        .filter(|s| s.starts_with('{'))
        .and_then(|s| fields(s).ok().map(|f| (s, f)));
    let (mut rec, own_hec) = if let Some((obj, f)) = json_in_string {
        (build(&f, obj.to_string())?, f.hec.is_some())
    } else if inner_text.starts_with('{') {
        let f = fields(inner_text)?;
        (build(&f, inner_text.to_string())?, f.hec.is_some())
    } else {
        // HEC allows a plain string (or other value) as the event: it is the message.
        let data = format!("{{\"message\":{inner_text}}}");
        let rec = build(&fields(&data)?, String::new())?;
        (Record { data, ..rec }, false)
    };
    if rec.host.is_none() {
        rec.host = outer.host.map(text_of);
    }
    if rec.log_time.is_none() {
        rec.log_time = outer.time.and_then(epoch_of);
    }
    if !own_hec {
        if let Some(meta) = envelope_meta(text) {
            rec.data = with_member(&rec.data, "hec", &meta);
        }
    }
    Ok(rec)
}

/// The envelope's members other than `event`, as a JSON object (values byte for byte), or None
/// when it has no others.
fn envelope_meta(envelope: &str) -> Option<String> {
    let members: Vec<(String, &RawValue)> = serde_json::from_str::<Members>(envelope).ok()?.0;
    let mut out = String::from("{");
    for (key, value) in members.iter().filter(|(k, _)| k != "event") {
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(key).ok()?);
        out.push(':');
        out.push_str(value.get());
    }
    (out.len() > 1).then(|| out + "}")
}

/// `object` (the text of a JSON object) with `"key": value` added as its last member.
fn with_member(object: &str, key: &str, value: &str) -> String {
    let body = object.trim_end();
    let body = body.strip_suffix('}').unwrap_or(body);
    let empty = body
        .trim_start()
        .strip_prefix('{')
        .is_some_and(|b| b.trim().is_empty());
    let sep = if empty { "" } else { "," };
    format!("{body}{sep}\"{key}\":{value}}}")
}

/// An object's members in order, keys unescaped, values as their JSON text.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Self::Value, M::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

fn fields(text: &str) -> Result<Fields<'_>, Reject> {
    let t = text.trim_start();
    match t.as_bytes().first() {
        Some(b'{') => {}
        Some(b'[') => return Err(kind_or_invalid(t, "array")),
        Some(b'"') => return Err(kind_or_invalid(t, "string")),
        Some(b't' | b'f') => return Err(kind_or_invalid(t, "boolean")),
        Some(b'n') => return Err(kind_or_invalid(t, "null")),
        Some(b'-' | b'0'..=b'9') => return Err(kind_or_invalid(t, "number")),
        _ => return Err(Reject::InvalidJson("expected a JSON object".into())),
    }
    let f: Fields = serde_json::from_str(t).map_err(|e| Reject::InvalidJson(e.to_string()))?;
    // jsonb refuses \u0000 anywhere (keys or values); so does text.
    if t.contains("\\u0000") {
        return Err(Reject::NulCharacter);
    }
    Ok(f)
}

/// For a line that is valid JSON but not an object: say what it is; else say it is invalid.
fn kind_or_invalid(text: &str, kind: &'static str) -> Reject {
    match serde_json::from_str::<serde::de::IgnoredAny>(text) {
        Ok(_) => Reject::NotObject(kind),
        Err(e) => Reject::InvalidJson(e.to_string()),
    }
}

fn build(f: &Fields<'_>, data: String) -> Result<Record, Reject> {
    let level = match f.levelname.or(f.level) {
        None => f
            .severity
            .and_then(string_of)
            .and_then(|s| Level::parse(&s))
            .unwrap_or(Level::Info),
        Some(raw) => match serde_json::from_str::<Cow<str>>(raw.get()) {
            Ok(s) => Level::parse(&s).ok_or_else(|| Reject::BadLevel(raw.get().to_string()))?,
            Err(_) => return Err(Reject::BadLevel(raw.get().to_string())),
        },
    };
    let log_time = f
        .timestamp
        .and_then(rfc3339_of)
        .or_else(|| f.asctime.and_then(asctime_of))
        .or_else(|| f.time.and_then(epoch_of));
    Ok(Record {
        level,
        log_time,
        host: f.host.map(text_of),
        application: f.application.map(text_of),
        kasm_user_name: f.kasm_user_name.map(text_of),
        message: f.message.or(f.msg).map(text_of),
        data,
    })
}

/// A JSON value as column text: strings unescaped, anything else its JSON text.
fn text_of(raw: &RawValue) -> String {
    match serde_json::from_str::<Cow<str>>(raw.get()) {
        Ok(s) => s.into_owned(),
        Err(_) => raw.get().to_string(),
    }
}

fn string_of(raw: &RawValue) -> Option<Cow<'_, str>> {
    serde_json::from_str::<Cow<str>>(raw.get()).ok()
}

fn rfc3339_of(raw: &RawValue) -> Option<DateTime<Utc>> {
    let s = string_of(raw)?;
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| {
            // Tolerate a space instead of the 'T' and a missing offset (taken as UTC).
            NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S%.f")
                .ok()
                .map(|n| Utc.from_utc_datetime(&n))
        })
}

/// python-json-logger's `asctime`: "YYYY-MM-DD HH:MM:SS,mmm", UTC.
fn asctime_of(raw: &RawValue) -> Option<DateTime<Utc>> {
    let s = string_of(raw)?;
    let s = s.trim().replacen(',', ".", 1);
    NaiveDateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|n| Utc.from_utc_datetime(&n))
}

/// Epoch seconds, fractional allowed, as a number or a numeric string.
fn epoch_of(raw: &RawValue) -> Option<DateTime<Utc>> {
    let secs: f64 = match serde_json::from_str::<f64>(raw.get()) {
        Ok(v) => v,
        Err(_) => string_of(raw)?.trim().parse().ok()?,
    };
    if !secs.is_finite() || !(0.0..1e11).contains(&secs) {
        return None;
    }
    let micros = (secs * 1e6).round() as i64;
    DateTime::from_timestamp_micros(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Record {
        parse_line(line.as_bytes(), 1 << 20).unwrap_or_else(|e| panic!("{line}: {e}"))
    }
    fn bad(line: &[u8]) -> Reject {
        parse_line(line, 1 << 20).unwrap_err()
    }

    #[test]
    fn kasm_record_fields() {
        let r = ok(
            r#"{"asctime": "2026-11-24 10:11:12,345", "levelname": "warning", "name": "api", "application": "kasm_api", "host": "web1", "process": 12, "funcName": "f", "lineno": 3, "message": "hi \"there\"", "kasm_user_name": "alice@x", "kasm_id": "abc"}"#,
        );
        assert_eq!(r.level, Level::Warning);
        assert_eq!(r.class(), Class::Logs);
        assert_eq!(
            r.log_time.unwrap().to_rfc3339(),
            "2026-11-24T10:11:12.345+00:00"
        );
        assert_eq!(r.host.as_deref(), Some("web1"));
        assert_eq!(r.application.as_deref(), Some("kasm_api"));
        assert_eq!(r.kasm_user_name.as_deref(), Some("alice@x"));
        assert_eq!(r.message.as_deref(), Some("hi \"there\""));
        assert!(r.data.starts_with(r#"{"asctime""#));
    }

    #[test]
    fn levels_normalise_and_route() {
        let cases = [
            ("debug", Level::Debug),
            ("DEBUG", Level::Debug),
            ("Info", Level::Info),
            ("WARN", Level::Warning),
            ("error", Level::Error),
            ("fatal", Level::Critical),
            ("CRITICAL", Level::Critical),
        ];
        for (text, level) in cases {
            assert_eq!(
                ok(&format!(r#"{{"levelname":"{text}"}}"#)).level,
                level,
                "{text}"
            );
            assert_eq!(
                ok(&format!(r#"{{"level":"{text}"}}"#)).level,
                level,
                "{text}"
            );
        }
        assert_eq!(ok(r#"{"message":"x"}"#).level, Level::Info);
        // `severity` (HEC logging libraries) counts when it names a level; never rejects.
        assert_eq!(ok(r#"{"severity":"error"}"#).level, Level::Error);
        assert_eq!(ok(r#"{"severity":"notice"}"#).level, Level::Info);
        assert_eq!(ok(r#"{"severity":3}"#).level, Level::Info);
        assert_eq!(
            ok(r#"{"level":"debug","severity":"error"}"#).level,
            Level::Debug
        );
        assert_eq!(ok(r#"{"levelname":"DEBUG"}"#).class(), Class::Debug);
        assert!(matches!(
            bad(br#"{"levelname":"VERBOSE"}"#),
            Reject::BadLevel(_)
        ));
        assert!(matches!(bad(br#"{"levelname":20}"#), Reject::BadLevel(_)));
    }

    #[test]
    fn times() {
        let r = ok(r#"{"timestamp":"2026-11-24T10:00:00.5Z"}"#);
        assert_eq!(r.log_time.unwrap().timestamp_millis(), 1_795_514_400_500);
        let r = ok(r#"{"time": 1795514400.25}"#);
        assert_eq!(r.log_time.unwrap().timestamp_millis(), 1_795_514_400_250);
        let r = ok(r#"{"time": "1795514400"}"#);
        assert_eq!(r.log_time.unwrap().timestamp(), 1_795_514_400);
        assert_eq!(ok(r#"{"timestamp":"yesterday"}"#).log_time, None);
    }

    #[test]
    fn hec_envelopes_unwrap() {
        let r = ok(
            r#"{"time": 1795514400.5, "host": "hec-host", "sourcetype": "kasm", "event": {"levelname": "ERROR", "message": "boom"}}"#,
        );
        assert_eq!(r.level, Level::Error);
        assert_eq!(r.host.as_deref(), Some("hec-host"));
        assert_eq!(r.log_time.unwrap().timestamp_millis(), 1_795_514_400_500);
        assert_eq!(
            r.data,
            r#"{"levelname": "ERROR", "message": "boom","hec":{"time":1795514400.5,"host":"hec-host","sourcetype":"kasm"}}"#
        );
        // An envelope with nothing but the event leaves the record byte for byte.
        let r = ok(r#"{"event": {"levelname": "ERROR", "message": "boom"} }"#);
        assert_eq!(r.data, r#"{"levelname": "ERROR", "message": "boom"}"#);
        // The record's own host and time win over the envelope's.
        let r = ok(r#"{"time": 1, "host": "h", "event": {"host": "own", "time": 1795514400}}"#);
        assert_eq!(r.host.as_deref(), Some("own"));
        assert_eq!(r.log_time.unwrap().timestamp(), 1_795_514_400);
        // A string event is the message.
        let r = ok(r#"{"event": "plain text", "host": "h"}"#);
        assert_eq!(r.message.as_deref(), Some("plain text"));
        assert_eq!(r.data, r#"{"message":"plain text","hec":{"host":"h"}}"#);
    }

    #[test]
    fn hec_string_events_holding_json_are_the_record() {
        // What splunk_handler with python-json-logger sends: the record as a JSON string.
        let r = ok(
            r#"{"time": "1795514400.250", "host": "env-host", "source": "kasm_api", "sourcetype": "_json", "index": "kasm", "fields": {"dc": "eu-1"}, "event": "{\"levelname\": \"WARNING\", \"message\": \"disk \\\"low\\\"\", \"host\": \"web7\", \"kasm_user_name\": \"bob\", \"application\": \"kasm_api\"}\n"}"#,
        );
        assert_eq!(r.level, Level::Warning);
        assert_eq!(r.host.as_deref(), Some("web7"));
        assert_eq!(r.kasm_user_name.as_deref(), Some("bob"));
        assert_eq!(r.application.as_deref(), Some("kasm_api"));
        assert_eq!(r.message.as_deref(), Some("disk \"low\""));
        assert_eq!(r.log_time.unwrap().timestamp_millis(), 1_795_514_400_250);
        assert_eq!(
            r.data,
            r#"{"levelname": "WARNING", "message": "disk \"low\"", "host": "web7", "kasm_user_name": "bob", "application": "kasm_api","hec":{"time":"1795514400.250","host":"env-host","source":"kasm_api","sourcetype":"_json","index":"kasm","fields":{"dc": "eu-1"}}}"#
        );
        let v: serde_json::Value = serde_json::from_str(&r.data).unwrap();
        assert_eq!(v["hec"]["fields"]["dc"], "eu-1");
        // A string that is not a JSON object stays the message, escapes intact.
        for text in [
            r#""{not json""#,
            r#""[1, 2]""#,
            r#""  {\"a\": 1} trailing""#,
        ] {
            let r = ok(&format!(r#"{{"event": {text}}}"#));
            let want: String = serde_json::from_str(text).unwrap();
            assert_eq!(r.message.as_deref(), Some(want.as_str()), "{text}");
            assert_eq!(r.level, Level::Info);
        }
        // An empty object in a string, and a record with its own `hec` member (it wins).
        assert_eq!(
            ok(r#"{"event": "{}", "index": "i"}"#).data,
            r#"{"hec":{"index":"i"}}"#
        );
        let r = ok(r#"{"event": {"hec": 1, "message": "m"}, "index": "i"}"#);
        assert_eq!(r.data, r#"{"hec": 1, "message": "m"}"#);
        // A JSON string record with a bad level is rejected like an object one.
        assert!(matches!(
            bad(br#"{"event": "{\"levelname\": \"LOUD\"}"}"#),
            Reject::BadLevel(_)
        ));
    }

    #[test]
    fn special_characters_survive() {
        let line = r#"{"message":"tab\tnl\nquote\"bs\\ü😀\u00e9"}"#;
        let r = ok(line);
        assert_eq!(r.message.as_deref(), Some("tab\tnl\nquote\"bs\\ü😀é"));
        assert_eq!(r.data, line);
    }

    #[test]
    fn rejects() {
        assert_eq!(bad(b"\xff\xfe{}"), Reject::InvalidUtf8);
        assert!(matches!(bad(b"{not json"), Reject::InvalidJson(_)));
        assert!(matches!(bad(b"{\"a\":1} trailing"), Reject::InvalidJson(_)));
        assert_eq!(bad(b"[1,2]"), Reject::NotObject("array"));
        assert_eq!(bad(b"\"str\""), Reject::NotObject("string"));
        assert_eq!(bad(b"42"), Reject::NotObject("number"));
        assert_eq!(bad(b"null"), Reject::NotObject("null"));
        assert!(matches!(bad(b"[1,"), Reject::InvalidJson(_)));
        assert_eq!(bad(br#"{"message":"a\u0000b"}"#), Reject::NulCharacter);
        assert_eq!(
            parse_line(b"{\"a\":\"xxxxxxxx\"}", 8),
            Err(Reject::TooLong { len: 16, limit: 8 })
        );
        // A non-object event is the message.
        assert_eq!(ok(r#"{"event": [1]}"#).message.as_deref(), Some("[1]"));
    }

    #[test]
    fn non_string_fields_become_json_text() {
        let r = ok(r#"{"message": {"k": 1}, "host": 7}"#);
        assert_eq!(r.message.as_deref(), Some(r#"{"k": 1}"#));
        assert_eq!(r.host.as_deref(), Some("7"));
    }
}
