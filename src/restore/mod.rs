//! Restore (issue 7): `kasm-db restore` onto a standby during failover, and the full restore
//! test of `backups verify --scratch-db`.
//!
//! Layout: [`plan`] is pure (names, comparisons, reading pg_restore's output), [`fetch`]
//! brings a backup to scratch space and checks it, [`offsets`] gives the
//! piped archive the data offsets pg_dump could not write, [`pgrestore`] runs the real `pg_restore`,
//! [`properties`] is pure too (the SQL that carries the source database's owner, locale,
//! privileges, settings and comment over), [`server`] is the SQL on the target server, [`run`] is the pipeline, [`cmd`] shapes command
//! outcomes, [`demo`] holds the demo's stages. It must never leave the target's existing
//! database changed unless the restore completed and was swapped in, never drop a database it
//! did not create, and never print a password.

pub mod archive_offsets;
pub mod cmd;
pub mod demo;
pub mod fetch;
pub mod pgrestore;
pub mod plan;
pub mod properties;
pub mod run;
pub mod server;
