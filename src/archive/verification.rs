//! The latest verification of a backup, kept beside it as `<id>/verified.json`: when, which
//! check (the SHA-256 re-read, or the full restore test into a scratch database), and whether
//! it passed. Written by `backups verify` and the scheduled verify of `serve`, read by
//! `backups list` and the HTML report, deleted with the backup by `prune`.
//!
//! Recording is best effort: a target the verifier may read but not write (read-only S3
//! credentials) still verifies, with a warning. Never written before the manifest exists, and
//! never holds a secret.

use super::storage::{self, Retain, Storage};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Which check was run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// The stored object re-read: size and SHA-256 against the manifest.
    Checksum,
    /// Restored into a scratch database and compared with the manifest's row counts.
    Restore,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub at: DateTime<Utc>,
    pub check: Check,
    pub ok: bool,
    /// Why not ok, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// How long the check took, in seconds: for the full restore test, the measured recovery
    /// time of this backup (fetch, check, pg_restore, row counts). `None` in records written
    /// before kasm-db recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
}

impl Verification {
    /// A verification that ran now.
    pub fn now(check: Check, ok: bool, problem: Option<String>, duration_s: f64) -> Self {
        Verification {
            at: Utc::now(),
            check,
            ok,
            problem: if ok { None } else { problem },
            duration_s: Some(duration_s),
        }
    }

    /// The measured recovery time: the duration of a passed full restore test.
    pub fn recovery_s(&self) -> Option<f64> {
        (self.ok && self.check == Check::Restore)
            .then_some(self.duration_s)
            .flatten()
    }
}

/// The object name of backup `id`'s verification record.
pub fn name(id: &str) -> String {
    format!("{id}/verified.json")
}

/// Record `v` for backup `id`; a failure to write is a warning, not an error.
pub async fn record(storage: &dyn Storage, id: &str, v: &Verification) {
    let bytes = match serde_json::to_vec_pretty(v) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(id, error = %e, "cannot encode the verification record");
            return;
        }
    };
    if let Err(e) = storage.put_small(&name(id), bytes, Retain::No).await {
        tracing::warn!(
            id,
            error = %e,
            "verified, but cannot record the result in {} (read-only?)",
            storage.describe()
        );
    }
}

/// The latest verification of backup `id`: `Ok(None)` when never verified (no record);
/// `Err(why)` when a record is there but cannot be read or parsed — never "never verified",
/// since it may hold a failed verification.
pub async fn latest(storage: &dyn Storage, id: &str) -> Result<Option<Verification>, String> {
    match storage::get_small(storage, &name(id)).await {
        Ok(Some(bytes)) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{} is not a verification record: {e}", name(id))),
        Ok(None) => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", name(id))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_reads_back_and_names_its_check() {
        let v = Verification {
            at: DateTime::parse_from_rfc3339("2026-11-24T03:30:00Z")
                .unwrap()
                .with_timezone(&Utc),
            check: Check::Restore,
            ok: false,
            problem: Some("public.users has 999 rows, the manifest says 1000".into()),
            duration_s: Some(12.5),
        };
        let text = serde_json::to_string(&v).unwrap();
        assert!(text.contains("\"check\":\"restore\""), "{text}");
        assert!(text.contains("\"duration_s\":12.5"), "{text}");
        assert_eq!(serde_json::from_str::<Verification>(&text).unwrap(), v);
        // A failed test measures no recovery time; a passed one does.
        assert_eq!(v.recovery_s(), None);
        let passed = Verification {
            ok: true,
            problem: None,
            ..v.clone()
        };
        assert_eq!(passed.recovery_s(), Some(12.5));
        let checksum = Verification {
            check: Check::Checksum,
            ..passed.clone()
        };
        assert_eq!(checksum.recovery_s(), None);
        // Records written before the duration was kept still read.
        let old: Verification =
            serde_json::from_str(r#"{"at":"2026-11-24T03:30:00Z","check":"restore","ok":true}"#)
                .unwrap();
        assert_eq!((old.duration_s, old.recovery_s()), (None, None));
        assert_eq!(
            name("20261124T030000Z-ab12cd"),
            "20261124T030000Z-ab12cd/verified.json"
        );
    }
}
