//! NDJSON encoding for the `http` sink: each record's own JSON text on its own line. Pure.

use crate::logs::record::Record;

pub fn ndjson(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.iter().map(|r| r.data.len() + 1).sum());
    for r in records {
        out.extend_from_slice(r.data.as_bytes());
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::record::parse_str;

    #[test]
    fn one_line_per_record_byte_exact() {
        let a = parse_str(r#"{"message": "a\nb", "x": 1.50}"#).unwrap();
        let b = parse_str(r#"{"event": {"message": "inner"}}"#).unwrap();
        let out = String::from_utf8(ndjson(&[a, b])).unwrap();
        assert_eq!(
            out,
            "{\"message\": \"a\\nb\", \"x\": 1.50}\n{\"message\": \"inner\"}\n"
        );
    }
}
