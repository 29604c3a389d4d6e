//! kasm-db: the database side of a Kasm Workspaces deployment, as a library behind the
//! `kasm-db` binary. See ARCHITECTURE.md for the map.

pub mod archive;
pub mod backup;
pub mod cli;
pub mod commands;
pub mod config;
pub mod db;
pub mod docs;
pub mod error;
pub mod forward;
pub mod logs;
pub mod maintenance;
pub mod net;
pub mod notify;
pub mod output;
pub mod pgtemp;
pub mod pgtools;
pub mod private;
pub mod read;
pub mod report;
pub mod restore;
pub mod retry;
pub mod serve;
pub mod sizing;
pub mod tls;
pub mod verify;
pub mod wal;

/// Test support for the integration tests under `tests/`; not kasm-db's API.
#[doc(hidden)]
pub mod testing;

pub use error::{Error, Result};
