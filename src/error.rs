//! The one error type of kasm-db and its mapping to the contract's exit codes.
//!
//! Every fallible function in the crate returns [`Result`]; `main.rs` is the only place that turns
//! an [`Error`] into a process exit code. Messages built here must never contain a secret: callers
//! pass redacted descriptions (see `db::target::DbTarget::redacted`), never raw URLs or tokens.
//! This module depends on no other module of the crate: errors of PostgreSQL are classified
//! (and converted) in `db::sqlstate`, never here.

use std::fmt;

/// What kind of failure happened, which decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bad command line or invalid configuration: exit 2.
    Usage,
    /// The job ran and failed, or a check failed: exit 1.
    Failed,
    /// The database or target is unreachable after retries, or another run holds the lock: exit 75.
    Temporary,
    /// Stop for good: exit 126. Only the hidden `wal fetch` (PostgreSQL's `restore_command`)
    /// uses it, for a WAL segment that must be in the archive and is missing or corrupt:
    /// PostgreSQL takes an exit status above 125 as fatal and stops recovery, where 1 would
    /// read as "the end of the archive" and end recovery early, silently.
    Abort,
}

impl Kind {
    /// The process exit code of the contract for this kind.
    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Usage => 2,
            Kind::Failed => 1,
            Kind::Temporary => 75,
            Kind::Abort => 126,
        }
    }
}

/// An error with its exit-code kind and a human message (with optional causes).
pub struct Error {
    kind: Kind,
    /// Whether trying again later may succeed (see [`Error::is_transient`]).
    transient: bool,
    inner: anyhow::Error,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: Kind, msg: impl fmt::Display) -> Self {
        Error {
            kind,
            transient: kind == Kind::Temporary,
            inner: anyhow::anyhow!("{msg}"),
        }
    }
    /// Invalid configuration or usage (exit 2).
    pub fn usage(msg: impl fmt::Display) -> Self {
        Self::new(Kind::Usage, msg)
    }
    /// The job failed (exit 1).
    pub fn failed(msg: impl fmt::Display) -> Self {
        Self::new(Kind::Failed, msg)
    }
    /// Unreachable or locked; worth retrying later (exit 75).
    pub fn temporary(msg: impl fmt::Display) -> Self {
        Self::new(Kind::Temporary, msg)
    }
    /// An error of `kind` that says whether trying again may succeed apart from its kind (a
    /// deadlock fails the job, exit 1, yet is worth retrying); see [`Error::is_transient`].
    pub fn classified(kind: Kind, transient: bool, msg: impl fmt::Display) -> Self {
        Error {
            kind,
            transient: transient || kind == Kind::Temporary,
            inner: anyhow::anyhow!("{msg}"),
        }
    }
    /// An error of `kind` whose message is `cause`, which [`Error::caused_by`] recognises
    /// later, through any context added since.
    pub fn with_cause<E>(kind: Kind, cause: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        Error {
            kind,
            transient: kind == Kind::Temporary,
            inner: anyhow::Error::new(cause),
        }
    }
    /// Whether this error was made by [`Error::with_cause`] from an `E`.
    pub fn caused_by<E>(&self) -> bool
    where
        E: fmt::Display + fmt::Debug + Send + Sync + 'static,
    {
        self.inner.downcast_ref::<E>().is_some()
    }
    pub fn kind(&self) -> Kind {
        self.kind
    }
    /// Whether the same work may succeed if tried again later: every [`Kind::Temporary`] error,
    /// and one made [`Error::classified`] as transient even though it fails the job (a database
    /// deadlock, a lock timeout). A long-running process (`serve`) retries
    /// these; the others (authentication, permissions, a foreign table) need an operator.
    pub fn is_transient(&self) -> bool {
        self.transient
    }
    /// Add context in front of the message, keeping the kind.
    pub fn context(self, ctx: impl fmt::Display + Send + Sync + 'static) -> Self {
        Error {
            kind: self.kind,
            transient: self.transient,
            inner: self.inner.context(ctx),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // "outer: cause: cause" on one line, as operators read it in a cron mail.
        write!(f, "{:#}", self.inner)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {:#}", self.kind, self.inner)
    }
}

impl std::error::Error for Error {}

impl From<anyhow::Error> for Error {
    fn from(inner: anyhow::Error) -> Self {
        Error {
            kind: Kind::Failed,
            transient: false,
            inner,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error {
            kind: Kind::Failed,
            transient: false,
            inner: e.into(),
        }
    }
}

/// Attach context to any `Result` whose error converts into [`Error`], keeping its kind.
pub trait ResultExt<T> {
    fn ctx(self, ctx: impl fmt::Display + Send + Sync + 'static) -> Result<T>;
    fn with_ctx<C: fmt::Display + Send + Sync + 'static>(self, f: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn ctx(self, ctx: impl fmt::Display + Send + Sync + 'static) -> Result<T> {
        self.map_err(|e| e.into().context(ctx))
    }
    fn with_ctx<C: fmt::Display + Send + Sync + 'static>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| e.into().context(f()))
    }
}
