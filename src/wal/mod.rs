//! Point-in-time recovery's WAL archive (issue 25): [`stream`] runs the real `pg_receivewal`
//! on a physical replication slot and stores each segment under the backup target, compressed
//! and checksummed, the segment still being written every `backup.wal_flush`; [`fetch`] is the
//! other end, PostgreSQL's `restore_command` during `restore --physical`: one segment, checked
//! against its record, or a clear refusal when the archive has a hole where recovery needs WAL;
//! [`copies`] keeps each `backup.copy_to` target's WAL caught up with the main target's;
//! [`guard`] judges the replication slot (WAL kept on the primary while nobody consumes it).
//!
//! The stored form (layout, records, the gap judgement) is [`crate::archive::wal`]'s. This
//! folder imports `archive`, `db` and `pgtools`, never `backup`, `restore` or a command; it
//! never prints, never reads the process environment (the snapshot is passed in), and never
//! puts a password on a command line.

pub mod copies;
pub mod fetch;
pub mod guard;
pub mod stream;
