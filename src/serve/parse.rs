//! Turning a (decompressed) request body into records: NDJSON or a JSON array for
//! `/api/v1/logs`, concatenated HEC envelopes for `/services/collector`.
//!
//! Pure: bytes in, records and rejects out. Every non-blank line or array element ends up either
//! as a record or as a reject with its reason; nothing is dropped silently. No I/O here.

use crate::logs::record::{self, Record};
use serde_json::value::RawValue;

/// One refused record: its 1-based position in the body (line or element) and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Refused {
    pub index: u64,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Parsed {
    pub records: Vec<Record>,
    pub refused: Vec<Refused>,
}

impl Parsed {
    fn push(&mut self, index: u64, r: Result<Record, record::Reject>) {
        match r {
            Ok(rec) => self.records.push(rec),
            Err(e) => self.refused.push(Refused {
                index,
                reason: e.to_string(),
            }),
        }
    }
}

/// A body that cannot be read as a whole (a broken JSON array).
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed(pub String);

/// `/api/v1/logs`: a JSON array of records when the body starts with `[`, else NDJSON.
pub fn logs_body(body: &[u8], max_line: usize) -> Result<Parsed, Malformed> {
    let mut out = Parsed::default();
    if body.trim_ascii_start().first() == Some(&b'[') {
        let items: Vec<&RawValue> = serde_json::from_slice(body)
            .map_err(|e| Malformed(format!("invalid JSON array: {e}")))?;
        for (i, item) in items.iter().enumerate() {
            let text = item.get();
            let r = if text.len() > max_line {
                Err(record::Reject::TooLong {
                    len: text.len(),
                    limit: max_line,
                })
            } else {
                record::parse_str(text)
            };
            out.push(i as u64 + 1, r);
        }
        return Ok(out);
    }
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        if line.trim_ascii().is_empty() {
            continue;
        }
        out.push(i as u64 + 1, record::parse_line(line, max_line));
    }
    Ok(out)
}

/// A HEC error answer: status, HEC code, text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HecError {
    pub status: u16,
    pub code: u32,
    pub text: &'static str,
    /// 0-based number of the offending event, as Splunk reports it.
    pub invalid_event: Option<usize>,
}

impl HecError {
    pub const TOKEN_REQUIRED: HecError = HecError::new(401, 2, "Token is required");
    pub const INVALID_TOKEN: HecError = HecError::new(403, 4, "Invalid token");
    pub const NO_DATA: HecError = HecError::new(400, 5, "No data");
    pub const INVALID_FORMAT: HecError = HecError::new(400, 6, "Invalid data format");
    pub const SERVER_BUSY: HecError = HecError::new(503, 9, "Server is busy");
    pub const EVENT_REQUIRED: HecError = HecError::new(400, 12, "Event field is required");
    pub const EVENT_BLANK: HecError = HecError::new(400, 13, "Event field cannot be blank");
    pub const INTERNAL: HecError = HecError::new(500, 8, "Internal server error");
    pub const CHANNEL_MISSING: HecError = HecError::new(400, 10, "Data channel is missing");
    pub const INVALID_CHANNEL: HecError = HecError::new(400, 11, "Invalid data channel");
    pub const UNHEALTHY: HecError = HecError::new(503, 18, "HEC is unhealthy, queues are full");

    const fn new(status: u16, code: u32, text: &'static str) -> Self {
        HecError {
            status,
            code,
            text,
            invalid_event: None,
        }
    }

    fn at(mut self, n: usize) -> Self {
        self.invalid_event = Some(n);
        self
    }

    pub fn body(&self) -> serde_json::Value {
        let mut v = serde_json::json!({"text": self.text, "code": self.code});
        if let Some(n) = self.invalid_event {
            v["invalid-event-number"] = n.into();
        }
        v
    }
}

#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    event: Option<&'a RawValue>,
}

/// `/services/collector[/event]`: concatenated envelopes. Like Splunk, one bad event refuses the
/// whole request (nothing is stored) and names the event; the client can fix and resend.
pub fn hec_body(body: &[u8], max_line: usize) -> Result<Vec<Record>, HecError> {
    let mut records = Vec::new();
    let stream = serde_json::Deserializer::from_slice(body).into_iter::<&RawValue>();
    for (n, item) in stream.enumerate() {
        let raw = item.map_err(|_| HecError::INVALID_FORMAT.at(n))?;
        let text = raw.get();
        let env: Envelope =
            serde_json::from_str(text).map_err(|_| HecError::INVALID_FORMAT.at(n))?;
        match env.event.map(RawValue::get) {
            None => return Err(HecError::EVENT_REQUIRED.at(n)),
            Some("null" | "\"\"") => return Err(HecError::EVENT_BLANK.at(n)),
            Some(_) => {}
        }
        if text.len() > max_line {
            return Err(HecError::INVALID_FORMAT.at(n));
        }
        records.push(record::parse_str(text).map_err(|_| HecError::INVALID_FORMAT.at(n))?);
    }
    if records.is_empty() {
        return Err(HecError::NO_DATA);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_and_array() {
        let p = logs_body(
            b"{\"levelname\":\"INFO\",\"message\":\"a\"}\n\n  \nnot json\n{\"level\":\"debug\"}",
            1000,
        )
        .unwrap();
        assert_eq!(p.records.len(), 2);
        assert_eq!(p.refused.len(), 1);
        assert_eq!(p.refused[0].index, 4);
        let p = logs_body(b" [{\"message\":\"a\"}, 3, {\"level\":\"nope\"}]", 1000).unwrap();
        assert_eq!(p.records.len(), 1);
        assert_eq!(
            p.refused.iter().map(|r| r.index).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert!(logs_body(b"[{\"message\":", 1000).is_err());
        let p = logs_body(b"[{\"message\":\"long long long\"}]", 10).unwrap();
        assert_eq!(p.refused.len(), 1);
    }

    #[test]
    fn hec_envelopes() {
        let body = br#"{"event":{"levelname":"ERROR","message":"x"},"host":"h1","time":1700000000.5}{"event":"plain text"}
            {"event":{"message":"y"}}"#;
        let r = hec_body(body, 1 << 20).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].host.as_deref(), Some("h1"));
        assert!(r[0].log_time.is_some());
        assert_eq!(r[1].message.as_deref(), Some("plain text"));
        // A logging handler with a JSON formatter: the event is a string holding the record.
        let r = hec_body(
            br#"{"event":"{\"levelname\": \"ERROR\", \"host\": \"w2\"}","source":"api"}"#,
            1 << 20,
        )
        .unwrap();
        assert_eq!(
            (r[0].level, r[0].host.as_deref()),
            (record::Level::Error, Some("w2"))
        );
        assert_eq!(
            r[0].data,
            r#"{"levelname": "ERROR", "host": "w2","hec":{"source":"api"}}"#
        );
        assert_eq!(hec_body(b"", 100).unwrap_err().code, 5);
        let e = hec_body(br#"{"event":{"m":1}}{"host":"x"}"#, 100).unwrap_err();
        assert_eq!((e.code, e.invalid_event), (12, Some(1)));
        assert_eq!(hec_body(br#"{"event":""}"#, 100).unwrap_err().code, 13);
        assert_eq!(hec_body(br#"{"event":{}} {oops"#, 100).unwrap_err().code, 6);
        let e = hec_body(br#"{"event":{"level":"LOUD"}}"#, 100).unwrap_err();
        assert_eq!(e.body()["invalid-event-number"], 0);
    }
}
