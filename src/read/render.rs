//! A stored record for people (one line, colours only when asked), as one NDJSON line, and as
//! CSV for spreadsheets. The same renderings serve `kasm-db logs` and the export endpoint.
//!
//! Pure. A record's text is data, never markup or terminal control: control characters in a
//! message (an ANSI escape, a carriage return) are shown escaped, and a CSV cell a spreadsheet
//! would run as a formula (`=`, `+`, `-`, `@`, tab, CR first) is prefixed with `'` (OWASP's
//! advice for CSV injection).

use super::query::LogRecord;

/// The CSV columns, in order.
pub const CSV_HEADER: [&str; 10] = [
    "log_id",
    "cursor",
    "ingest_date",
    "log_time",
    "levelname",
    "host",
    "application",
    "kasm_user_name",
    "message",
    "data",
];

/// `text` with control characters escaped (`\n`, `\t`, `\u{1b}` ...), so that one record is
/// one line and a logged escape sequence cannot drive the terminal.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

fn level_colour(level: &str) -> &'static str {
    match level {
        "DEBUG" => "\x1b[2m",
        "WARNING" => "\x1b[33m",
        "ERROR" => "\x1b[31m",
        "CRITICAL" => "\x1b[1;31m",
        _ => "\x1b[32m",
    }
}

/// `2026-12-07T08:32:45.622Z INFO     host app [user] message`; `-` for a missing field.
pub fn line(r: &LogRecord, colour: bool) -> String {
    let dash = |v: &Option<String>| printable(v.as_deref().unwrap_or("-")).into_owned();
    let time = r.ingest_date.format("%Y-%m-%dT%H:%M:%S%.3fZ");
    let level = if colour {
        format!("{}{:<8}\x1b[0m", level_colour(&r.levelname), r.levelname)
    } else {
        format!("{:<8}", r.levelname)
    };
    let user = match &r.kasm_user_name {
        Some(u) => format!(" [{}]", printable(u)),
        None => String::new(),
    };
    format!(
        "{time} {level} {} {}{user} {}",
        dash(&r.host),
        dash(&r.application),
        printable(r.message.as_deref().unwrap_or(""))
    )
}

/// One NDJSON line (without the newline).
pub fn json(r: &LogRecord) -> String {
    serde_json::to_string(r).unwrap_or_default()
}

fn cell(text: &str) -> std::borrow::Cow<'_, str> {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => std::borrow::Cow::Owned(format!("'{text}")),
        _ => std::borrow::Cow::Borrowed(text),
    }
}

/// The CSV values of a record, in [`CSV_HEADER`]'s order.
pub fn csv_fields(r: &LogRecord) -> [String; 10] {
    let opt = |v: &Option<String>| cell(v.as_deref().unwrap_or("")).into_owned();
    [
        r.log_id.to_string(),
        r.cursor.clone(),
        r.ingest_date
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        r.log_time
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
            .unwrap_or_default(),
        r.levelname.clone(),
        opt(&r.host),
        opt(&r.application),
        opt(&r.kasm_user_name),
        opt(&r.message),
        cell(&r.data.to_string()).into_owned(),
    ]
}

/// The CSV header and records as bytes (RFC 4180 quoting by the `csv` crate).
pub fn csv(records: &[LogRecord], header: bool) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    if header {
        let _ = w.write_record(CSV_HEADER);
    }
    for r in records {
        let _ = w.write_record(csv_fields(r));
    }
    w.into_inner().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::Cursor;
    use chrono::TimeZone;

    fn rec(message: &str) -> LogRecord {
        let position = Cursor {
            ingest_date: chrono::Utc.with_ymd_and_hms(2026, 12, 7, 8, 0, 0).unwrap(),
            log_id: uuid::Uuid::nil(),
            txid: 1,
        };
        LogRecord {
            log_id: position.log_id,
            cursor: position.encode(),
            ingest_date: position.ingest_date,
            log_time: None,
            levelname: "ERROR".into(),
            host: Some("h1".into()),
            application: None,
            kasm_user_name: Some("alice".into()),
            message: Some(message.into()),
            data: serde_json::json!({"message": message}),
            position,
        }
    }

    #[test]
    fn one_line_no_terminal_control() {
        let l = line(&rec("a\nb\x1b[31mred"), false);
        assert_eq!(
            l,
            "2026-12-07T08:00:00.000Z ERROR    h1 - [alice] a\\nb\\u{1b}[31mred"
        );
        assert!(line(&rec("x"), true).contains("\x1b[31mERROR"));
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let out = String::from_utf8(csv(&[rec("=HYPERLINK(\"x\"), \"q\"")], true)).unwrap();
        let mut lines = out.split("\r\n");
        assert!(
            lines
                .next()
                .unwrap()
                .starts_with("log_id,cursor,ingest_date")
        );
        let row = lines.next().unwrap();
        assert!(
            row.contains(",\"'=HYPERLINK(\"\"x\"\"), \"\"q\"\"\","),
            "{row}"
        );
    }
}
