//! Deterministic Kasm-style log records for the demo, the tests and the benchmarks: the fields
//! python-json-logger writes for Kasm's components, about 430 bytes a line, with a realistic
//! level mix (about a third DEBUG). Pure: writes to the writer it is given.

use chrono::{DateTime, Duration, Utc};
use std::io::Write;

const APPS: [&str; 5] = [
    "kasm_api",
    "kasm_manager",
    "kasm_agent",
    "kasm_share",
    "kasm_proxy",
];
const LEVELS: [&str; 6] = ["DEBUG", "DEBUG", "INFO", "INFO", "WARNING", "ERROR"];
const FUNCS: [&str; 4] = [
    "request_kasm",
    "get_user_images",
    "check_session",
    "heartbeat",
];

/// Write `n` NDJSON records starting at `start`, one per 10 ms.
pub fn write_records(w: &mut impl Write, n: u64, start: DateTime<Utc>) -> std::io::Result<()> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..n {
        // xorshift: cheap and deterministic.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let t = start + Duration::milliseconds(i as i64 * 10);
        let level = LEVELS[(state % LEVELS.len() as u64) as usize];
        let app = APPS[((state >> 8) % APPS.len() as u64) as usize];
        let func = FUNCS[((state >> 16) % FUNCS.len() as u64) as usize];
        let user = (state >> 24) % 500;
        let host = (state >> 32) % 4;
        writeln!(
            w,
            r#"{{"asctime": "{}", "timestamp": "{}", "levelname": "{level}", "name": "{app}.handler", "application": "{app}", "host": "kasm-web-{host}", "process": {}, "funcName": "{func}", "lineno": {}, "message": "Processed {func} for user{user}@example.com in {} ms: session {:08x}-ok \"quoted\" path C:\\kasm", "kasm_user_name": "user{user}@example.com", "kasm_id": "{:016x}", "exc_info": null}}"#,
            t.format("%Y-%m-%d %H:%M:%S,%3f"),
            t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            1000 + (state >> 40) % 9000,
            10 + (state >> 44) % 900,
            (state >> 20) % 2000,
            state >> 32,
            state,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_and_are_about_430_bytes() {
        let mut buf = Vec::new();
        write_records(&mut buf, 1000, Utc::now()).unwrap();
        let lines: Vec<&[u8]> = buf
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), 1000);
        let avg = buf.len() / 1000;
        assert!((380..=480).contains(&avg), "average line {avg} bytes");
        let debug = lines
            .iter()
            .filter(|l| {
                crate::logs::record::parse_line(l, 4096).unwrap().level
                    == crate::logs::record::Level::Debug
            })
            .count();
        assert!((250..=420).contains(&debug), "{debug} debug records");
    }
}
