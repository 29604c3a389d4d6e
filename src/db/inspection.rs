//! What reading one thing in a database came to, when a decision depends on it: it is not
//! there ([`Inspection::Absent`]: absent from the catalog, or SQLSTATE 42P01 / 3F000 when it
//! vanished meanwhile), it was read ([`Inspection::Found`]), or it could not be read
//! ([`Inspection::Unreadable`]: permission denied (42501), a connection that failed, any other
//! error). A check that could not be made is never "nothing there": callers decide on the
//! variant, never on an error's text.
//!
//! Never holds a password: the reason is the server's message or a connection error described
//! with the target redacted.

use crate::error::{Error, Kind};
use tokio_postgres::error::SqlState;

/// The outcome of reading something a decision depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inspection<T> {
    /// Not there: the catalog has no such relation (or no row in it, where the caller says so).
    Absent,
    /// Read.
    Found(T),
    /// Could not be read; what and why.
    Unreadable(Unreadable),
}

/// Something that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// What could not be read ("public.alembic_version in the database kasm").
    pub what: String,
    /// Why: the server's reason, or the connection's failure (never a password).
    pub why: String,
    /// Whether the reason is an outage that trying again later may heal (exit 75, not 1).
    pub temporary: bool,
}

impl Unreadable {
    /// `what` could not be read because of `e`.
    pub fn of(what: impl Into<String>, e: &Error) -> Self {
        Unreadable {
            what: what.into(),
            why: e.to_string(),
            temporary: e.kind() == Kind::Temporary,
        }
    }

    /// `what` could not be read because a query failed with `e`.
    pub fn of_query(what: impl Into<String>, e: tokio_postgres::Error) -> Self {
        Self::of(what, &Error::from(e))
    }
}

impl<T> Inspection<T> {
    /// What was read, when it was.
    pub fn found(&self) -> Option<&T> {
        match self {
            Inspection::Found(v) => Some(v),
            _ => None,
        }
    }

    /// A query's result: "the relation does not exist" (42P01, or its schema: 3F000) is
    /// [`Inspection::Absent`], any other error [`Inspection::Unreadable`].
    pub fn of_query(what: impl Into<String>, r: Result<T, tokio_postgres::Error>) -> Self {
        match r {
            Ok(v) => Inspection::Found(v),
            Err(e) if is_undefined(&e) => Inspection::Absent,
            Err(e) => Inspection::Unreadable(Unreadable::of_query(what, e)),
        }
    }

    /// The same outcome with the value mapped.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Inspection<U> {
        match self {
            Inspection::Absent => Inspection::Absent,
            Inspection::Found(v) => Inspection::Found(f(v)),
            Inspection::Unreadable(u) => Inspection::Unreadable(u),
        }
    }
}

/// Whether `e` says the relation (or its schema) does not exist: 42P01, 3F000.
pub fn is_undefined(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::UNDEFINED_TABLE || *c == SqlState::INVALID_SCHEMA_NAME
    )
}
