//! The opaque cursor of a stored record: where it sits in both orders of the read side, its
//! `(ingest_date, log_id)` for pages and its `(txid, log_id)` for the tail. Printed as 43
//! characters of unpadded base64url; what is inside is not part of the contract.
//!
//! Pure. A cursor that does not decode is a usage error naming the flag or parameter, never
//! "start from the beginning".

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Where a record sits. `txid` is 0 for records stored before migration 6 (they are older
/// than any tail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub ingest_date: DateTime<Utc>,
    pub log_id: Uuid,
    pub txid: i64,
}

const LEN: usize = 8 + 16 + 8;

impl Cursor {
    /// The tail position "after every record of transactions before `txid`" (its time is
    /// before any record's: the year 1).
    pub fn tail_start(txid: i64) -> Cursor {
        Cursor {
            ingest_date: DateTime::<Utc>::from_timestamp(-62_135_596_800, 0)
                .expect("0001-01-01 is representable"),
            log_id: Uuid::nil(),
            txid,
        }
    }

    pub fn encode(&self) -> String {
        let mut b = [0u8; LEN];
        b[..8].copy_from_slice(&self.ingest_date.timestamp_micros().to_be_bytes());
        b[8..24].copy_from_slice(self.log_id.as_bytes());
        b[24..].copy_from_slice(&self.txid.to_be_bytes());
        URL_SAFE_NO_PAD.encode(b)
    }

    /// Decode a cursor printed by [`Cursor::encode`]; the error says what is wrong with it.
    pub fn decode(text: &str) -> Result<Cursor, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim().as_bytes())
            .map_err(|_| format!("{text:?} is not a cursor printed by kasm-db (not base64url)"))?;
        if bytes.len() != LEN {
            return Err(format!(
                "{text:?} is not a cursor printed by kasm-db (wrong length)"
            ));
        }
        let micros = i64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
        let ingest_date = DateTime::<Utc>::from_timestamp_micros(micros)
            .ok_or_else(|| format!("{text:?} is not a cursor printed by kasm-db (bad time)"))?;
        let log_id = Uuid::from_slice(&bytes[8..24]).expect("16 bytes");
        let txid = i64::from_be_bytes(bytes[24..].try_into().expect("8 bytes"));
        if txid < 0 {
            return Err(format!(
                "{text:?} is not a cursor printed by kasm-db (bad position)"
            ));
        }
        Ok(Cursor {
            ingest_date,
            log_id,
            txid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let c = Cursor {
            ingest_date: DateTime::from_timestamp_micros(1_765_000_000_123_456).unwrap(),
            log_id: Uuid::from_u128(0x0193_1234_5678_7abc_8def_0123_4567_89ab),
            txid: 987_654,
        };
        let s = c.encode();
        assert_eq!(s.len(), 43);
        assert_eq!(Cursor::decode(&s).unwrap(), c);
        assert!(Cursor::decode("").is_err());
        assert!(Cursor::decode("not a cursor!").is_err());
        assert!(Cursor::decode(&s[..40]).is_err());
        // Before 1970 and the tail start survive too.
        let t = Cursor::tail_start(5);
        assert_eq!(Cursor::decode(&t.encode()).unwrap(), t);
    }
}
