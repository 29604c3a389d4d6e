//! The JSON body of a job notification: what a webhook receiver, a chat relay or a
//! healthchecks.io-style ping gets. Fields (the contract's, and a `text` line for chat hooks
//! that show one): `job`, `status` (`start` | `success` | `failure`), `host`, `started`
//! (RFC 3339, UTC), `duration_s` (null at `start`), `target` (where the job worked: a backup
//! target or a database, as kasm-db shows them elsewhere, without credentials), `backup` (the
//! backup's id, or null), `error` (the failure's message, or null).
//!
//! Pure: no I/O, no clock (the caller gives the times). It must never carry a secret: its
//! inputs are the redacted descriptions the rest of kasm-db prints; a URL with userinfo that
//! still arrives as a `target` is cut down to its scheme and host by [`redact_target`].

use crate::config::notify::Event;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

/// The jobs that notify, named as in the body's `job`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Job {
    Backup,
    Verify,
    Purge,
    Vacuum,
    Restore,
    /// Point-in-time recovery's WAL archive (the slot guard: a slot nobody consumes, lost WAL).
    Wal,
}

impl Job {
    pub fn as_str(self) -> &'static str {
        match self {
            Job::Backup => "backup",
            Job::Verify => "verify",
            Job::Purge => "purge",
            Job::Vacuum => "vacuum",
            Job::Restore => "restore",
            Job::Wal => "wal",
        }
    }
}

/// What one notification says.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub job: Job,
    pub status: Event,
    pub host: String,
    pub started: DateTime<Utc>,
    /// Seconds the job took; `None` at `start`.
    pub duration_s: Option<f64>,
    pub target: Option<String>,
    pub backup: Option<String>,
    pub error: Option<String>,
}

/// Longest `error` sent (a receiver is not a log store).
pub const MAX_ERROR_CHARS: usize = 2000;

#[derive(Serialize)]
struct Body<'a> {
    job: Job,
    status: Event,
    host: &'a str,
    started: String,
    duration_s: Option<f64>,
    target: Option<String>,
    backup: Option<&'a str>,
    error: Option<String>,
    text: String,
}

/// The body of `n`, as JSON bytes.
pub fn encode(n: &Notice) -> Vec<u8> {
    let target = n.target.as_deref().map(redact_target);
    let error = n.error.as_deref().map(|e| {
        let mut e: String = e.chars().take(MAX_ERROR_CHARS).collect();
        if e.len() < n.error.as_deref().map_or(0, str::len) {
            e.push('…');
        }
        e
    });
    let body = Body {
        job: n.job,
        status: n.status,
        host: &n.host,
        started: n.started.to_rfc3339_opts(SecondsFormat::Millis, true),
        duration_s: n.duration_s.map(|d| (d * 1000.0).round() / 1000.0),
        text: text(n, target.as_deref(), error.as_deref()),
        target,
        backup: n.backup.as_deref(),
        error,
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

/// One line for people: "kasm-db backup failed on db1 (s3://b/p) after 12.3 s: ...".
fn text(n: &Notice, target: Option<&str>, error: Option<&str>) -> String {
    let verb = match n.status {
        Event::Start => "started",
        Event::Success => "succeeded",
        Event::Failure => "failed",
    };
    let mut t = format!("kasm-db {} {verb} on {}", n.job.as_str(), n.host);
    if let Some(target) = target {
        t.push_str(&format!(" ({target})"));
    }
    if let Some(d) = n.duration_s {
        t.push_str(&format!(" after {d:.1} s"));
    }
    if let Some(b) = &n.backup {
        t.push_str(&format!(": backup {b}"));
    }
    if let Some(e) = error {
        t.push_str(&format!(": {e}"));
    }
    t
}

/// A target as it may be shown: what kasm-db's own descriptions already are (a directory,
/// `s3://bucket/prefix`, `user@host:port/db`), and any `scheme://…@host/…` cut to
/// `scheme://host/…` with its query dropped, should a credential-bearing URL ever arrive.
pub fn redact_target(target: &str) -> String {
    let Some((scheme, rest)) = target.split_once("://") else {
        return target.to_string();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let cut = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(cut);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(status: Event) -> Notice {
        Notice {
            job: Job::Backup,
            status,
            host: "db1".into(),
            started: DateTime::parse_from_rfc3339("2026-11-29T03:00:00.5Z")
                .unwrap()
                .with_timezone(&Utc),
            duration_s: None,
            target: Some("s3://bucket/kasm".into()),
            backup: None,
            error: None,
        }
    }

    fn json(n: &Notice) -> serde_json::Value {
        serde_json::from_slice(&encode(n)).unwrap()
    }

    #[test]
    fn carries_the_contract_fields() {
        let v = json(&notice(Event::Start));
        assert_eq!(v["job"], "backup");
        assert_eq!(v["status"], "start");
        assert_eq!(v["host"], "db1");
        assert_eq!(v["started"], "2026-11-29T03:00:00.500Z");
        assert!(v["duration_s"].is_null() && v["backup"].is_null() && v["error"].is_null());
        assert_eq!(v["target"], "s3://bucket/kasm");
        let mut n = notice(Event::Success);
        n.duration_s = Some(12.34567);
        n.backup = Some("20261129T030000Z-ab12".into());
        let v = json(&n);
        assert_eq!(
            (v["status"].as_str(), v["duration_s"].as_f64()),
            (Some("success"), Some(12.346))
        );
        assert_eq!(v["backup"], "20261129T030000Z-ab12");
        assert_eq!(
            v["text"],
            "kasm-db backup succeeded on db1 (s3://bucket/kasm) after 12.3 s: backup 20261129T030000Z-ab12"
        );
    }

    #[test]
    fn a_failure_says_why_within_bounds() {
        let mut n = notice(Event::Failure);
        n.job = Job::Purge;
        n.duration_s = Some(0.2);
        n.error = Some("x".repeat(MAX_ERROR_CHARS + 10));
        let v = json(&n);
        assert_eq!(v["job"], "purge");
        assert_eq!(v["status"], "failure");
        let e = v["error"].as_str().unwrap();
        assert_eq!(e.chars().count(), MAX_ERROR_CHARS + 1);
        assert!(e.ends_with('…'));
    }

    #[test]
    fn targets_never_carry_credentials() {
        assert_eq!(redact_target("/mnt/nfs/kasm"), "/mnt/nfs/kasm");
        assert_eq!(redact_target("kasm@db:5432/kasm"), "kasm@db:5432/kasm");
        assert_eq!(
            redact_target("postgres://u:pw-s3cr3t@db:5432/kasm?password=s3cr3t"),
            "postgres://db:5432/kasm"
        );
        assert_eq!(redact_target("s3://bucket/prefix"), "s3://bucket/prefix");
        let mut n = notice(Event::Failure);
        n.target = Some("https://k:s3cr3t@h/x?sig=s3cr3t".into());
        let body = String::from_utf8(encode(&n)).unwrap();
        assert!(!body.contains("s3cr3t"), "{body}");
    }
}
