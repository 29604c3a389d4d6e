//! Splunk HEC event encoding: concatenated envelopes
//! `{"time":<epoch.micros>,"host":..,"source":..,"sourcetype":..,"index":..,"event":<record>}`
//! and gzip. Pure: bytes only. The event is the record's own JSON text, untouched.

use crate::logs::record::Record;
use std::io::Write;

/// The envelope fields that come from configuration.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub source: Option<String>,
    pub sourcetype: Option<String>,
    pub index: Option<String>,
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a &str to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Append one envelope for `record`.
pub fn encode_event(record: &Record, meta: &Meta, out: &mut Vec<u8>) {
    out.push(b'{');
    if let Some(t) = record.log_time {
        let us = t.timestamp_micros();
        let _ = write!(
            out,
            "\"time\":{}{}.{:06},",
            if us < 0 { "-" } else { "" },
            us.unsigned_abs() / 1_000_000,
            us.unsigned_abs() % 1_000_000
        );
    }
    let fields = [
        ("host", record.host.as_deref()),
        ("source", meta.source.as_deref()),
        ("sourcetype", meta.sourcetype.as_deref()),
        ("index", meta.index.as_deref()),
    ];
    for (key, value) in fields {
        if let Some(v) = value {
            out.push(b'"');
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
            json_str(out, v);
            out.push(b',');
        }
    }
    out.extend_from_slice(b"\"event\":");
    out.extend_from_slice(record.data.as_bytes());
    out.push(b'}');
}

/// Envelopes for a batch, concatenated with newlines.
pub fn encode_batch(records: &[Record], meta: &Meta) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.iter().map(|r| r.data.len() + 160).sum());
    for r in records {
        encode_event(r, meta, &mut out);
        out.push(b'\n');
    }
    out
}

pub fn gzip(body: &[u8], level: u32) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::new(level.min(9)),
    );
    let _ = enc.write_all(body);
    enc.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::record::parse_str;

    #[test]
    fn envelope_carries_meta_and_the_record_byte_exact() {
        let r = parse_str(
            r#"{"timestamp":"2026-11-24T10:00:00.000042Z","host":"web\"1","message":"ü\n","x":1.50}"#,
        )
        .unwrap();
        let meta = Meta {
            source: Some("kasm-db".into()),
            sourcetype: Some("kasm:log".into()),
            index: Some("kasm".into()),
        };
        let out = encode_batch(std::slice::from_ref(&r), &meta);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(r#"{"time":1795514400.000042,"host":"web\"1","source":"kasm-db","sourcetype":"kasm:log","index":"kasm","event":{"timestamp""#), "{text}");
        assert!(
            text.ends_with(&format!("\"event\":{}}}\n", r.data)),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["event"]["x"], 1.5);
        // No time, no host: omitted (Splunk uses receive time and its own host).
        let bare = parse_str(r#"{"message":"m"}"#).unwrap();
        let mut out = Vec::new();
        encode_event(&bare, &Meta::default(), &mut out);
        assert_eq!(out, br#"{"event":{"message":"m"}}"#);
    }

    #[test]
    fn gzip_round_trips() {
        let body = b"hello hello hello hello".repeat(100);
        let z = gzip(&body, 1);
        assert!(z.len() < body.len());
        let mut d = flate2::read::GzDecoder::new(&z[..]);
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut back).unwrap();
        assert_eq!(back, body);
    }
}
