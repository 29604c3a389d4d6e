//! What a PostgreSQL error means for kasm-db: [`is_transient`], the one definition of "worth
//! retrying", and the conversion of a `tokio_postgres::Error` into the crate's [`Error`] with its
//! exit-code kind. `error.rs` knows nothing of PostgreSQL; this is where its errors are judged.
//!
//! Never puts a password in a message (tokio-postgres never includes one in its errors).

use crate::error::{Error, Kind};

/// Whether an error is about the connection or the server's state rather than the data sent:
/// the connection broke, the server is shutting down or restarting (class 57), out of resources
/// (53), a connection exception (08), a serialization failure or deadlock (40), or a lock not
/// available (55). Such errors are retried; the others are the data's fault.
pub fn is_transient(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => transient_class(class(code.code())),
        // No SQLSTATE: transient when it is an I/O failure (not, say, a client-side encoding error).
        None => std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

/// The class of a SQLSTATE: its first two characters.
fn class(sqlstate: &str) -> &str {
    sqlstate.get(..2).unwrap_or(sqlstate)
}

/// Whether errors of a SQLSTATE class may heal by trying again.
fn transient_class(class: &str) -> bool {
    matches!(class, "08" | "40" | "53" | "55" | "57" | "58")
}

/// The exit-code kind of an error: a transient one is temporary (exit 75) unless the server ran
/// the statement and refused it for a conflict (40 serialization/deadlock, 55 lock not
/// available): those fail the job (exit 1) yet stay worth retrying.
fn kind(transient: bool, sqlstate: Option<&str>) -> Kind {
    if transient && !matches!(sqlstate.map(class), Some("40" | "55")) {
        Kind::Temporary
    } else {
        Kind::Failed
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        // A closed connection or an I/O failure is temporary; a server error is a failed job.
        let transient = is_transient(&e);
        let kind = kind(transient, e.code().map(|c| c.code()));
        let msg = match e.as_db_error() {
            Some(db) => {
                let mut m = format!("{}: {}", db.severity(), db.message());
                if let Some(d) = db.detail() {
                    m.push_str(&format!(" ({d})"));
                }
                if let Some(h) = db.hint() {
                    m.push_str(&format!("; hint: {h}"));
                }
                m
            }
            None => e.to_string(),
        };
        Error::classified(kind, transient, msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_that_heal_by_waiting_are_transient() {
        for code in [
            "08006", "40001", "40P01", "53300", "55P03", "57P01", "58030",
        ] {
            assert!(transient_class(class(code)), "{code}");
        }
        for code in ["23505", "42P01", "28P01", "3D000", "22P02"] {
            assert!(!transient_class(class(code)), "{code}");
        }
    }

    #[test]
    fn conflicts_fail_the_job_while_outages_are_temporary() {
        assert_eq!(kind(true, Some("57P01")), Kind::Temporary);
        assert_eq!(kind(true, None), Kind::Temporary);
        assert_eq!(kind(true, Some("40P01")), Kind::Failed);
        assert_eq!(kind(true, Some("55P03")), Kind::Failed);
        assert_eq!(kind(false, Some("23505")), Kind::Failed);
    }

    #[test]
    fn a_deadlock_fails_the_job_but_stays_transient() {
        let e = Error::classified(kind(true, Some("40P01")), true, "deadlock detected");
        assert_eq!(e.kind(), Kind::Failed);
        assert!(e.is_transient());
    }
}
