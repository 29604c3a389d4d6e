//! Syslog message encoding: RFC 5424 (default), RFC 3164, and CEF (carried in an RFC 3164
//! header), plus transport framing: RFC 5425/6587 octet counting for TCP/TLS, size-limited
//! datagrams for UDP. Pure: bytes only; the current time is an input (for records without one).

use crate::config::SyslogFormat;
use crate::logs::record::{Level, Record};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// The SD-ID of kasm-db's structured data (32473 is the private enterprise number reserved
/// for documentation, RFC 5612).
pub const SD_ID: &str = "kasm@32473";

/// Facility number for a name (`local0` = 16 ...).
pub fn facility(name: &str) -> Option<u8> {
    const NAMES: [&str; 16] = [
        "kern",
        "user",
        "mail",
        "daemon",
        "auth",
        "syslog",
        "lpr",
        "news",
        "uucp",
        "cron",
        "authpriv",
        "ftp",
        "ntp",
        "security",
        "console",
        "solaris-cron",
    ];
    let n = name.trim().to_ascii_lowercase();
    if let Some(i) = n.strip_prefix("local").and_then(|d| d.parse::<u8>().ok()) {
        return (i <= 7).then_some(16 + i);
    }
    NAMES.iter().position(|x| *x == n).map(|i| i as u8)
}

/// DEBUG→7, INFO→6, WARNING→4, ERROR→3, CRITICAL→2.
pub fn severity(level: Level) -> u8 {
    match level {
        Level::Debug => 7,
        Level::Info => 6,
        Level::Warning => 4,
        Level::Error => 3,
        Level::Critical => 2,
    }
}

/// Fields read from the record's JSON that have no column.
#[derive(Deserialize, Default)]
struct Extra<'a> {
    #[serde(borrow, default)]
    process: Option<&'a RawValue>,
    #[serde(borrow, default)]
    kasm_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    name: Option<&'a RawValue>,
}

fn text(raw: Option<&RawValue>) -> Option<String> {
    let raw = raw?;
    match serde_json::from_str::<Cow<str>>(raw.get()) {
        Ok(s) => Some(s.into_owned()),
        Err(_) if raw.get() == "null" => None,
        Err(_) => Some(raw.get().to_string()),
    }
}

/// A header field: printable US-ASCII without spaces, at most `max` bytes, `-` when empty.
fn header_field(value: Option<&str>, max: usize) -> String {
    let s: String = value
        .unwrap_or("")
        .chars()
        .map(|c| if ('!'..='~').contains(&c) { c } else { '_' })
        .take(max)
        .collect();
    if s.is_empty() { "-".into() } else { s }
}

fn sd_escape(v: &str, out: &mut String) {
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
}

pub struct Encoder {
    pub format: SyslogFormat,
    pub facility: u8,
}

impl Encoder {
    fn pri(&self, r: &Record) -> u16 {
        self.facility as u16 * 8 + severity(r.level) as u16
    }

    /// The message (without framing) for one record.
    pub fn message(&self, r: &Record, now: DateTime<Utc>) -> String {
        let extra: Extra = serde_json::from_str(&r.data).unwrap_or_default();
        let process = text(extra.process);
        let msg = r.message.as_deref().unwrap_or(&r.data);
        match self.format {
            SyslogFormat::Rfc5424 => {
                let ts = r.log_time.map_or("-".to_string(), |t| {
                    t.to_rfc3339_opts(SecondsFormat::Micros, true)
                });
                let mut sd = format!("[{SD_ID} level=\"{}\"", r.level.as_str());
                if let Some(u) = &r.kasm_user_name {
                    sd.push_str(" user=\"");
                    sd_escape(u, &mut sd);
                    sd.push('"');
                }
                if let Some(k) = text(extra.kasm_id) {
                    sd.push_str(" kasm_id=\"");
                    sd_escape(&k, &mut sd);
                    sd.push('"');
                }
                sd.push(']');
                format!(
                    "<{}>1 {ts} {} {} {} {} {sd} {msg}",
                    self.pri(r),
                    header_field(r.host.as_deref(), 255),
                    header_field(r.application.as_deref(), 48),
                    header_field(process.as_deref(), 128),
                    header_field(text(extra.name).as_deref(), 32),
                )
            }
            SyslogFormat::Rfc3164 | SyslogFormat::Cef => {
                let ts = r.log_time.unwrap_or(now).format("%b %e %H:%M:%S");
                let tag: String = r
                    .application
                    .as_deref()
                    .unwrap_or("kasm")
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                    .take(32)
                    .collect();
                let tag = if tag.is_empty() { "kasm".into() } else { tag };
                let pid = process
                    .as_deref()
                    .map(|p| format!("[{}]", header_field(Some(p), 16)));
                let body = match self.format {
                    SyslogFormat::Cef => {
                        cef(r, msg, text(extra.kasm_id).as_deref(), process.as_deref())
                    }
                    _ => msg.to_string(),
                };
                format!(
                    "<{}>{ts} {} {tag}{}: {body}",
                    self.pri(r),
                    header_field(r.host.as_deref(), 255),
                    pid.unwrap_or_default()
                )
            }
        }
    }
}

fn cef_header(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\r', '\n'], " ")
}

fn cef_ext(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace('\r', "\\r")
        .replace('\n', "\\n")
}

/// `CEF:0|Kasm|Workspaces|1.0|<app>|<name>|<severity 0-10>|<extensions>`.
fn cef(r: &Record, msg: &str, kasm_id: Option<&str>, process: Option<&str>) -> String {
    let sev = match r.level {
        Level::Debug => 1,
        Level::Info => 3,
        Level::Warning => 6,
        Level::Error => 8,
        Level::Critical => 10,
    };
    let name: String = msg.chars().take(128).collect();
    let mut out = format!(
        "CEF:0|Kasm|Workspaces|1.0|{}|{}|{sev}|",
        cef_header(r.application.as_deref().unwrap_or("log")),
        cef_header(&name)
    );
    let mut ext = Vec::new();
    if let Some(t) = r.log_time {
        ext.push(format!("rt={}", t.timestamp_millis()));
    }
    let pairs = [
        ("dvchost", r.host.as_deref()),
        ("suser", r.kasm_user_name.as_deref()),
        ("cs1Label", kasm_id.map(|_| "kasm_id")),
        ("cs1", kasm_id),
        ("dproc", r.application.as_deref()),
        ("dpid", process),
        ("msg", Some(msg)),
    ];
    for (k, v) in pairs {
        if let Some(v) = v {
            ext.push(format!("{k}={}", cef_ext(v)));
        }
    }
    out.push_str(&ext.join(" "));
    out
}

/// RFC 6587/5425 octet counting: `LEN SP MSG`.
pub fn frame_octet_counted(msg: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(msg.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(msg.as_bytes());
}

/// A datagram of at most `max` bytes, cut on a character boundary.
pub fn datagram(msg: &str, max: usize) -> &[u8] {
    if msg.len() <= max {
        return msg.as_bytes();
    }
    let mut end = max;
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    &msg.as_bytes()[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::record::parse_str;

    fn rec() -> Record {
        parse_str(r#"{"timestamp":"2026-11-24T10:00:00.5Z","levelname":"ERROR","host":"web 1","application":"kasm_api","process":4242,"name":"api.auth","kasm_user_name":"al\"i]ce\\","kasm_id":"k-1","message":"line1\nline2"}"#).unwrap()
    }
    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_514_400, 0).unwrap()
    }

    #[test]
    fn rfc5424_fields_pri_and_sd_escaping() {
        let e = Encoder {
            format: SyslogFormat::Rfc5424,
            facility: facility("local0").unwrap(),
        };
        let m = e.message(&rec(), now());
        assert_eq!(
            m,
            "<131>1 2026-11-24T10:00:00.500000Z web_1 kasm_api 4242 api.auth [kasm@32473 level=\"ERROR\" user=\"al\\\"i\\]ce\\\\\" kasm_id=\"k-1\"] line1\nline2"
        );
        let levels = [
            ("DEBUG", 7),
            ("INFO", 6),
            ("WARNING", 4),
            ("ERROR", 3),
            ("CRITICAL", 2),
        ];
        for (l, sev) in levels {
            let r = parse_str(&format!(r#"{{"levelname":"{l}"}}"#)).unwrap();
            assert!(
                e.message(&r, now())
                    .starts_with(&format!("<{}>1 - - - - - ", 128 + sev)),
                "{l}"
            );
        }
        assert_eq!(facility("user"), Some(1));
        assert_eq!(facility("local7"), Some(23));
        assert_eq!(facility("local8"), None);
    }

    #[test]
    fn rfc3164_and_cef() {
        let e = Encoder {
            format: SyslogFormat::Rfc3164,
            facility: 16,
        };
        assert_eq!(
            e.message(&rec(), now()),
            "<131>Nov 24 10:00:00 web_1 kasm_api[4242]: line1\nline2"
        );
        let e = Encoder {
            format: SyslogFormat::Cef,
            facility: 16,
        };
        let m = e.message(&rec(), now());
        assert!(m.starts_with("<131>Nov 24 10:00:00 web_1 kasm_api[4242]: CEF:0|Kasm|Workspaces|1.0|kasm_api|line1 line2|8|rt=1795514400500 dvchost=web 1 suser=al\"i]ce\\\\ cs1Label=kasm_id cs1=k-1"), "{m}");
        assert!(m.ends_with("msg=line1\\nline2"), "{m}");
        assert_eq!(cef_ext("a=b|c"), "a\\=b|c");
        assert_eq!(cef_header("a|b\\"), "a\\|b\\\\");
    }

    #[test]
    fn framing() {
        let mut out = Vec::new();
        frame_octet_counted("ab\ncü", &mut out);
        assert_eq!(out, "6 ab\ncü".as_bytes());
        assert_eq!(datagram("aaü", 3), b"aa");
        assert_eq!(datagram("abc", 10), b"abc");
    }
}
