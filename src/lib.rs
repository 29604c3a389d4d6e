//! kasm-db: the database side of a Kasm Workspaces deployment, as a library behind the
//! `kasm-db` binary. See ARCHITECTURE.md for the map.

pub mod app;
pub mod backup;
pub mod cli;
pub mod config;
pub mod db;
pub mod demo;
pub mod docs;
pub mod error;
pub mod logs;
pub mod maintenance;
pub mod output;
pub mod pgtemp;
pub mod report;
pub mod restore;
pub mod sizing;

pub use error::{Error, Result};
