//! `kasm-db report --html FILE`: one self-contained HTML page with the charts an operator
//! would rather look at than read: database and `logs` size over time (size samples), log
//! volume per hour by level and by application, backups over time, and the sizing tier line.
//!
//! Layout: the plain data types here; [`scale`] (axes, units), [`svg`] (charts) and [`page`]
//! (the page) are pure renderers; [`query`] reads the database (read-only); the
//! command (`crate::commands::report`) wires them together and writes the page.
//! The page must never reference anything outside itself (no scripts, styles, fonts or images
//! from elsewhere) and must never contain a secret: it names the database as
//! `user@host:port/dbname`, never its URL.

pub mod backups;
pub mod html;
pub mod page;
pub mod query;
pub mod scale;
pub mod svg;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// One row of `size_samples`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SizePoint {
    pub at: DateTime<Utc>,
    pub database_bytes: u64,
    pub logs_debug_bytes: u64,
    pub logs_logs_bytes: u64,
}

/// Records ingested in one hour with one level and one application.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HourCount {
    /// Start of the hour (UTC).
    pub hour: DateTime<Utc>,
    pub level: String,
    /// Empty when the record named none.
    pub application: String,
    pub count: u64,
}

/// One backup as the report draws it. Built by whoever can list backups; the report only
/// needs these fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackupPoint {
    pub id: String,
    pub created: DateTime<Utc>,
    pub size_bytes: u64,
    pub duration_s: Option<f64>,
    /// `Some(true)` checked and good, `Some(false)` checked and bad, `None` not checked.
    pub verified: Option<bool>,
    /// Kasm's schema revision in the backup (`alembic_version`), when it has one.
    pub alembic_version: Option<String>,
    /// The duration of its last passed full restore test: a measured recovery time.
    pub recovery_s: Option<f64>,
}

/// What the backups section can show.
#[derive(Debug, Clone, PartialEq)]
pub enum Backups {
    /// No `backup.to` in the configuration.
    NotConfigured,
    /// A target is configured but could not be read; the reason, without secrets.
    Unavailable { target: String, reason: String },
    /// The complete backups at `target`, and their verdict (`backups check`'s defaults).
    Listed {
        target: String,
        points: Vec<BackupPoint>,
        verdict: Box<crate::backup::check::Verdict>,
    },
}

/// Live numbers at the time of the report (the samples may be old or absent).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Current {
    pub database_bytes: u64,
    pub logs_bytes: u64,
}

/// Where the log volume came from.
#[derive(Debug, Clone, PartialEq)]
pub enum LogsSource {
    /// `schema.logs` with the columns needed, read over `window_hours`.
    Table { relation: String, window_hours: u32 },
    /// No usable `logs` relation; why.
    Missing(String),
}

/// Everything the page shows. Built by [`query::gather`], rendered by [`page::render`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReportData {
    pub generated_at: DateTime<Utc>,
    /// `user@host:port/dbname`: never the password.
    pub database: String,
    pub current: Current,
    /// `None` when there is no `size_samples` table (not migrated).
    pub sizes: Option<Vec<SizePoint>>,
    pub size_window_days: u32,
    pub logs: LogsSource,
    pub volume: Vec<HourCount>,
    pub sessions: Option<u32>,
    pub backups: Backups,
}
