//! The spool's on-disk frame format and the record codec inside it. Pure: bytes in, bytes out.
//!
//! A frame is `MAGIC (2) | len (u32 LE) | crc32(len ‖ payload) (u32 LE) | payload`. The payload
//! is a [`Record`] in a compact length-prefixed binary form. Decoding never panics on any input:
//! a torn or corrupt region is reported as skipped bytes and decoding resynchronises on the next
//! valid frame. Must never do I/O or allocate beyond the frames it returns.

use crate::logs::record::{Level, Record};
use chrono::DateTime;

pub const MAGIC: [u8; 2] = [0x4b, 0xd5];
pub const HEADER: usize = 10;
/// Frames larger than this are treated as corrupt (a record is at most a few MiB).
pub const MAX_PAYLOAD: usize = 64 << 20;

/// Append one record as a frame to `out`.
pub fn encode(record: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[0; 8]);
    let level = Level::ALL
        .iter()
        .position(|l| *l == record.level)
        .unwrap_or(1) as u8;
    out.push(level);
    let micros = record
        .log_time
        .map(|t| t.timestamp_micros())
        .unwrap_or(i64::MIN);
    out.extend_from_slice(&micros.to_le_bytes());
    for field in [
        record.host.as_deref(),
        record.application.as_deref(),
        record.kasm_user_name.as_deref(),
        record.message.as_deref(),
        Some(record.data.as_str()),
    ] {
        match field {
            None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
            Some(s) => {
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
    let len = (out.len() - start - HEADER) as u32;
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(&out[start + HEADER..]);
    let crc = h.finalize();
    out[start + 2..start + 6].copy_from_slice(&len.to_le_bytes());
    out[start + 6..start + 10].copy_from_slice(&crc.to_le_bytes());
}

/// What decoding a buffer found.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Records with the buffer offset just past each one's frame.
    pub records: Vec<(Record, usize)>,
    /// Offset up to which the buffer was consumed (frames and skipped corrupt bytes).
    pub consumed: usize,
    /// Corrupt regions skipped (each counts once) and their bytes.
    pub corrupt_regions: u64,
    pub corrupt_bytes: u64,
    /// True when the buffer ends inside what may be an incomplete frame.
    pub partial_tail: bool,
}

enum One {
    Frame(Record, usize),
    /// Needs more bytes than the buffer holds.
    Short,
    Bad,
}

fn decode_one(buf: &[u8]) -> One {
    if buf.len() < HEADER {
        return if MAGIC.starts_with(&buf[..buf.len().min(2)]) {
            One::Short
        } else {
            One::Bad
        };
    }
    if buf[..2] != MAGIC {
        return One::Bad;
    }
    let len = u32::from_le_bytes(buf[2..6].try_into().unwrap_or([0; 4])) as usize;
    if len > MAX_PAYLOAD {
        return One::Bad;
    }
    if buf.len() < HEADER + len {
        return One::Short;
    }
    let crc = u32::from_le_bytes(buf[6..10].try_into().unwrap_or([0; 4]));
    let payload = &buf[HEADER..HEADER + len];
    let mut h = crc32fast::Hasher::new();
    h.update(&(len as u32).to_le_bytes());
    h.update(payload);
    if h.finalize() != crc {
        return One::Bad;
    }
    match decode_payload(payload) {
        Some(r) => One::Frame(r, HEADER + len),
        None => One::Bad,
    }
}

/// Decode `buf` up to `max_records`. With `complete` (nothing will ever be appended after the
/// buffer, e.g. a sealed segment), an incomplete trailing frame is corrupt and skipped.
pub fn decode(buf: &[u8], max_records: usize, complete: bool) -> Decoded {
    let mut d = Decoded::default();
    let mut pos = 0;
    while pos < buf.len() && d.records.len() < max_records {
        match decode_one(&buf[pos..]) {
            One::Frame(r, n) => {
                pos += n;
                d.records.push((r, pos));
            }
            One::Short if !complete => {
                d.partial_tail = true;
                break;
            }
            One::Short | One::Bad => {
                // Resynchronise: the next offset where a whole valid frame decodes.
                let start = pos;
                pos += 1;
                while pos < buf.len() {
                    if buf[pos] == MAGIC[0] {
                        match decode_one(&buf[pos..]) {
                            One::Frame(..) => break,
                            One::Short if !complete => break,
                            _ => {}
                        }
                    }
                    pos += 1;
                }
                d.corrupt_regions += 1;
                d.corrupt_bytes += (pos - start) as u64;
            }
        }
    }
    d.consumed = pos;
    d
}

fn decode_payload(p: &[u8]) -> Option<Record> {
    let level = *Level::ALL.get(*p.first()? as usize)?;
    let micros = i64::from_le_bytes(p.get(1..9)?.try_into().ok()?);
    let mut pos = 9;
    let mut fields: [Option<String>; 5] = Default::default();
    for f in fields.iter_mut() {
        let len = u32::from_le_bytes(p.get(pos..pos + 4)?.try_into().ok()?);
        pos += 4;
        if len != u32::MAX {
            let bytes = p.get(pos..pos + len as usize)?;
            *f = Some(String::from_utf8(bytes.to_vec()).ok()?);
            pos += len as usize;
        }
    }
    if pos != p.len() {
        return None;
    }
    let [host, application, kasm_user_name, message, data] = fields;
    Some(Record {
        level,
        log_time: if micros == i64::MIN {
            None
        } else {
            DateTime::from_timestamp_micros(micros)
        },
        host,
        application,
        kasm_user_name,
        message,
        data: data?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::record::parse_str;

    fn rec(i: usize) -> Record {
        parse_str(&format!(
            r#"{{"levelname":"ERROR","host":"h{i}","message":"m\nü{i}","timestamp":"2026-11-24T10:00:00.123456Z","application":"a"}}"#
        ))
        .unwrap()
    }

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        for i in 0..3 {
            encode(&rec(i), &mut buf);
        }
        let mut r = rec(9);
        r.host = None;
        encode(&r, &mut buf);
        let d = decode(&buf, usize::MAX, true);
        assert_eq!(d.records.len(), 4);
        assert_eq!(d.records[1].0, rec(1));
        assert_eq!(d.records[3].0, r);
        assert_eq!(d.consumed, buf.len());
        assert_eq!(d.corrupt_regions, 0);
    }

    #[test]
    fn torn_tail_is_partial_or_skipped() {
        let mut buf = Vec::new();
        encode(&rec(0), &mut buf);
        let one = buf.len();
        encode(&rec(1), &mut buf);
        buf.truncate(buf.len() - 5);
        let d = decode(&buf, usize::MAX, false);
        assert_eq!(
            (d.records.len(), d.consumed, d.partial_tail),
            (1, one, true)
        );
        let d = decode(&buf, usize::MAX, true);
        assert_eq!(d.records.len(), 1);
        assert_eq!((d.corrupt_regions, d.consumed), (1, buf.len()));
    }

    #[test]
    fn corruption_in_the_middle_resyncs() {
        let mut buf = Vec::new();
        for i in 0..3 {
            encode(&rec(i), &mut buf);
        }
        let first = decode(&buf, 1, true).consumed;
        buf[first + 20] ^= 0xff; // flip a byte inside the second frame
        let d = decode(&buf, usize::MAX, true);
        let hosts: Vec<_> = d
            .records
            .iter()
            .map(|r| r.0.host.clone().unwrap())
            .collect();
        assert_eq!(hosts, ["h0", "h2"]);
        assert_eq!(d.corrupt_regions, 1);
        // Garbage never panics.
        for n in 0..64 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 % 251) as u8).collect();
            let _ = decode(&junk, usize::MAX, true);
        }
    }
}
