//! The stored form of a backup, shared by `backup` (which writes it), `restore` (which reads
//! it), `verify` and `report`: where backups are kept ([`target`] parses TARGET, [`storage`] is
//! the only I/O on objects, fs and s3), the object format ([`compress`]: parallel multi-member
//! gzip or multi-frame zstd with a running SHA-256; [`members`]: where each member is, and
//! unpacking them in parallel; [`crypt`]: chunked AES-256-GCM), the [`manifest`] that makes a
//! backup exist and the layout of a backup under its target, the [`catalog`] of what a target
//! holds (list, find, the size and SHA-256 check), the [`verification`] record kept beside
//! each backup (`verified.json`), [`copy`]: a backup copied to another target, checked on
//! the way, and the [`roles`] a backup's database needs (in the manifest, with their password
//! hashes in a separate object, sealed when the backup is encrypted). Archived WAL for
//! point-in-time recovery lives beside the backups under `wal/` ([`wal`]: its layout, the
//! record of each stored segment, and how a missing segment is judged: end or gap).
//!
//! ("Archive" here is the stored backup; the plain pg_dump archive inside it is `restore`'s
//! business.) This module knows nothing of PostgreSQL, pg_dump or pg_restore, and never
//! imports `backup`, `restore` or a command: those depend on it, not the other way round.
//! Never prints or logs a credential or an encryption key.

pub mod catalog;
pub mod compress;
pub mod copy;
pub mod crypt;
pub mod manifest;
pub mod members;
pub mod roles;
pub mod storage;
pub mod target;
pub mod verification;
pub mod wal;
