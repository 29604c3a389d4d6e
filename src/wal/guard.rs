//! The slot guard (issue 25): a replication slot that nobody consumes keeps WAL on the primary
//! until its disk is full. [`judge`] reads what [`crate::db::replication::slot`] found against
//! `backup.wal_slot_max_retained` and says whether that is a problem, and what to do:
//!
//! - a slot with no consumer that keeps more than the limit: start the stream again, or drop the
//!   slot if streaming stopped for good;
//! - a slot whose `wal_status` is `lost` (PostgreSQL removed WAL it had not streamed, past
//!   `max_slot_wal_keep_size`): the WAL archive has a gap from there; a new base backup is
//!   needed, and the slot must be dropped and created again.
//!
//! It also advises the server's own hard limit (`max_slot_wal_keep_size`) when none is set.
//! `backups check` fails on a problem, `serve` shows the slot in `/metrics` and notifies once
//! per episode. Pure: no I/O, no clock. Never drops a slot, and never tells anyone to without
//! saying what that costs.

use crate::config::ByteSize;
use crate::db::replication::{Slot, SlotReading};
use serde::Serialize;

/// What the guard found, as `backups check --json` shows it (`wal_slot`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotVerdict {
    pub slot: String,
    /// Whether the slot exists at all.
    pub exists: bool,
    pub active: Option<bool>,
    pub retained_bytes: Option<u64>,
    pub wal_status: Option<String>,
    /// `backup.wal_slot_max_retained`.
    pub limit_bytes: u64,
    /// The server's `max_slot_wal_keep_size` in MB (`-1`: none); `None` before PostgreSQL 13.
    pub max_slot_wal_keep_size_mb: Option<i64>,
    /// What is wrong (a failing `backups check`, a notification), or `None`.
    pub problem: Option<String>,
    /// Advice that is not a failure (the server's hard limit, a slot not created yet).
    pub advice: Vec<String>,
}

/// How to remove the slot, and what that costs.
pub fn drop_advice(slot: &str) -> String {
    format!(
        "if WAL streaming stopped for good, drop the slot on the primary: \
         SELECT pg_drop_replication_slot('{slot}') (point-in-time recovery then ends at the \
         newest stored WAL; a later stream needs a new base backup)"
    )
}

/// Judge the reading of slot `slot` against `limit`; `wal_on` is `backup.wal`.
pub fn judge(reading: &SlotReading, slot: &str, limit: ByteSize, wal_on: bool) -> SlotVerdict {
    let s: Option<&Slot> = reading.slot.as_ref();
    let mut v = SlotVerdict {
        slot: slot.to_string(),
        exists: s.is_some(),
        active: s.map(|s| s.active),
        retained_bytes: s.and_then(|s| s.retained_bytes),
        wal_status: s.and_then(|s| s.wal_status.clone()),
        limit_bytes: limit.bytes(),
        max_slot_wal_keep_size_mb: reading.max_slot_wal_keep_mb,
        problem: None,
        advice: Vec::new(),
    };
    let Some(s) = s else {
        if wal_on {
            v.advice.push(format!(
                "the replication slot {slot} does not exist yet (the WAL stream creates it)"
            ));
        }
        return v;
    };
    if s.wal_status.as_deref() == Some("lost") {
        v.problem = Some(format!(
            "replication slot {slot} has lost WAL (wal_status lost): the server removed \
             segments it had not streamed (max_slot_wal_keep_size), so the WAL archive has a \
             gap from there; drop the slot (SELECT pg_drop_replication_slot('{slot}')), let the \
             stream create it again, and take a new base backup (kasm-db backup --physical): \
             point-in-time recovery works again from that backup on"
        ));
    } else if let Some(kept) = s.retained_bytes.filter(|b| !s.active && *b > limit.bytes()) {
        v.problem = Some(format!(
            "replication slot {slot} has no consumer and keeps {kept} bytes ({}) of WAL on the \
             primary, more than backup.wal_slot_max_retained ({limit}): the primary's disk \
             fills until the WAL stream runs again (serve with backup.wal = true, or kasm-db \
             wal stream); {}",
            approx(kept),
            drop_advice(slot)
        ));
    }
    if reading.max_slot_wal_keep_mb == Some(-1) {
        v.advice.push(format!(
            "the server sets no hard limit on the WAL a slot keeps (max_slot_wal_keep_size = \
             -1): set it in postgresql.conf (e.g. max_slot_wal_keep_size = '{}MB', a reload \
             applies it) so PostgreSQL itself stops the slot before the disk is full",
            (limit.bytes() / 1_000_000).max(1)
        ));
    }
    v
}

/// `12.3 GB`, `456 MB`, `789 kB`: a size for people, in SI units.
fn approx(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.1} kB", b / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(active: bool, kept: Option<u64>, status: &str, max: Option<i64>) -> SlotReading {
        SlotReading {
            slot: Some(Slot {
                name: "kasm_db".into(),
                active,
                retained_bytes: kept,
                wal_status: Some(status.into()),
            }),
            max_slot_wal_keep_mb: max,
        }
    }

    #[test]
    fn an_unconsumed_slot_past_the_limit_is_a_problem_a_consumed_one_is_not() {
        let limit = ByteSize::from_bytes(1_000_000);
        let v = judge(
            &reading(false, Some(2_000_000), "reserved", Some(0)),
            "kasm_db",
            limit,
            false,
        );
        let p = v.problem.unwrap();
        assert!(p.contains("kasm_db") && p.contains("2000000 bytes"), "{p}");
        assert!(p.contains("pg_drop_replication_slot('kasm_db')"), "{p}");
        assert!(v.advice.is_empty());
        let v = judge(
            &reading(true, Some(2_000_000), "reserved", Some(0)),
            "kasm_db",
            limit,
            true,
        );
        assert_eq!(v.problem, None);
        let v = judge(
            &reading(false, Some(999_999), "reserved", Some(-1)),
            "kasm_db",
            limit,
            true,
        );
        assert_eq!(v.problem, None);
        assert!(
            v.advice[0].contains("max_slot_wal_keep_size = '1MB'"),
            "{v:?}"
        );
    }

    #[test]
    fn a_lost_slot_is_a_gap_needing_a_new_base_backup() {
        let v = judge(
            &reading(false, None, "lost", Some(64)),
            "kasm_db",
            ByteSize::from_bytes(10_000_000_000),
            true,
        );
        let p = v.problem.unwrap();
        assert!(p.contains("gap") && p.contains("new base backup"), "{p}");
    }

    #[test]
    fn no_slot_is_no_problem() {
        let none = SlotReading {
            slot: None,
            max_slot_wal_keep_mb: Some(-1),
        };
        let v = judge(&none, "kasm_db", ByteSize::from_bytes(1), false);
        assert!(!v.exists && v.problem.is_none() && v.advice.is_empty());
        let v = judge(&none, "kasm_db", ByteSize::from_bytes(1), true);
        assert!(v.advice[0].contains("does not exist yet"), "{v:?}");
    }
}
