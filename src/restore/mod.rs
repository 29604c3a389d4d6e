//! Restore (issue 7): `kasm-db restore` onto a standby during failover, and the restore
//! pipeline that the full restore test ([`crate::verify`]) runs into a scratch database.
//!
//! Layout: [`plan`] is pure (names, comparisons, reading pg_restore's output), [`creation`] is
//! pure too (the new database's owner and locales, what to do when the server refuses to
//! create it, the report of what it got), [`fetch`] brings a backup to scratch space and
//! checks it, [`offsets`] gives the piped archive the data offsets pg_dump could not write,
//! [`pgrestore`] runs the real `pg_restore`, [`checks`] counts
//! rows against the manifest (overlapped with pg_restore) and analyzes, [`properties`] is pure (the SQL that carries the
//! source database's owner, locale, privileges, settings and comment over), [`server`] is the
//! SQL on the target server, [`roles`] creates the roles a backup records that the target
//! lacks (`--create-roles`; what and how decided in [`role_plan`], pure), [`progress`] the stage lines and the signals, [`run`] is the
//! pipeline; [`physical`] is `restore --physical`, [`untar`] unpacks its base backup. The command (`crate::commands::restore`) and the demo's stage call [`run`]. The stored
//! backup's format is [`crate::archive`]'s; this module never imports `backup` or `verify`.
//! It must never leave the target's existing database changed unless the restore completed
//! and was swapped in, never drop a database it did not create, and never print a password.

pub mod archive_offsets;
pub mod checks;
pub mod creation;
pub mod fetch;
pub mod guard;
pub mod logs_later;
pub mod logs_load;
pub mod pgrestore;
pub mod physical;
pub mod plan;
pub mod progress;
pub mod properties;
pub mod role_plan;
pub mod roles;
pub mod run;
pub mod server;
pub mod untar;
