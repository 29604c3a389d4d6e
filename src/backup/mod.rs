//! Backups (issue 6): `pg_dump` streamed through parallel gzip and SHA-256 to a directory or S3,
//! with a manifest written last; `backups list`, `prune` (and `verify`, which is
//! [`crate::verify`]'s).
//!
//! Layout: the stored form of a backup (target, storage, compression, encryption, manifest,
//! catalog, verification record) is [`crate::archive`]'s, shared with `restore`; here [`run`] is
//! the pipeline, [`properties`] reads the database's own properties (owner, locale, ACL,
//! settings) for it, [`roles`] the roles it needs (and their password hashes, when readable,
//! into a separate object beside the dump), [`pgdump`] finds and runs pg_dump, [`prune`] is the
//! pure GFS policy, [`backups`] lists a target's backups and applies the policy to it, [`after`]
//! is what follows every successful backup (copies to `backup.copy_to`, then the `keep_*` policy).
//! [`check`] judges that listing (fresh, enough, verified: `backups check`, `size`, the report,
//! `/metrics`; pure).
//! The commands (`crate::commands::backup`), `serve`'s scheduled backup and the demo call
//! [`run::run`].
//! Never imports `restore`. Nothing here prints or stores a password.

pub mod after;
pub mod backups;
pub mod check;
pub mod pgdump;
pub mod physical;
pub mod properties;
pub mod prune;
pub mod roles;
pub mod run;
