//! Backups (issue 6): `pg_dump` streamed through parallel gzip and SHA-256 to a directory or S3,
//! with a manifest written last; `backups list`, `verify`, `prune`.
//!
//! Layout: [`target`] parses TARGET, [`storage`] is the only I/O on objects (fs, s3),
//! [`compress`] and [`prune`] and [`manifest`] are pure cores, [`run`] is the pipeline,
//! [`properties`] reads the database's own properties (owner, locale, ACL, settings) for it,
//! [`catalog`] reads what a target holds, [`verification`] records each check beside its backup,
//! [`crypt`] is the client-side encryption, [`pgdump`] finds and runs pg_dump, [`cmd`] turns it
//! all into command outcomes.
//! Nothing here prints or stores a password.

pub mod catalog;
pub mod cmd;
pub mod compress;
pub mod crypt;
pub mod demo;
pub mod manifest;
pub mod pgdump;
pub mod properties;
pub mod prune;
pub mod run;
pub mod storage;
pub mod target;
pub mod verification;
