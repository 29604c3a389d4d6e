//! The registry of kasm-db's PostgreSQL advisory locks: every key, one scheme, each named for
//! the job it guards, and the only SQL that takes or releases one.
//!
//! A job takes the same lock however it is started, so a run from the command line (or a
//! systemd timer, a CronJob) and `serve`'s `[schedule]` slot of the same job exclude each
//! other; the one that finds the lock taken exits 75 (or, in `serve`, counts the slot as
//! `locked_elsewhere`). Who holds it:
//!
//! | lock | held by | scope |
//! |---|---|---|
//! | `migrate` | `db::migrate` (waits for it; `kasm-db migrate`, `serve`'s bootstrap) | the database |
//! | `partitions` | `logs::partition_ddl::ensure`, for one transaction (waits) | the database |
//! | `purge` | the purge operation itself, on its pooled connection (`kasm-db purge`, `serve`'s purge slot, `demo`; not `--dry-run`) | the database |
//! | `backup` | the backup operation itself, on the session that exports the snapshot (`kasm-db backup`, `serve`'s backup slot) | the database |
//! | `vacuum` | the vacuum operation itself, on its pooled connection (`kasm-db vacuum`, `serve`'s vacuum slot; not `--dry-run`) | the database |
//! | `size sample` | `serve`'s size-sample slot | the database |
//! | `verify` | `serve`'s verify slot (`backups verify` needs no database; with a scratch database both take the restore lock of `kasm_db_verify` there) | the database |
//! | `WAL stream` | `wal::stream` for as long as it streams, on its own session (`kasm-db wal stream`; one leader among replicas) | the database |
//! | `restore` | `restore`, `backups verify --scratch-db`, per target database name | the server's maintenance database |
//!
//! Advisory locks belong to the database a session is connected to, so a lock excludes only
//! runs against the same database. Never takes a lock anywhere but through this module: no
//! advisory lock key or `pg_*advisory*` call exists outside it.

use crate::error::{Error, Kind, Result};
use std::fmt;
use tokio_postgres::{Client, Transaction};

/// One advisory lock of kasm-db.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock<'a> {
    /// Applying migrations (waited for, never refused).
    Migrate,
    /// Creating partitions (transaction-scoped, waited for).
    Partitions,
    Purge,
    Backup,
    Vacuum,
    SizeSample,
    Verify,
    /// Streaming WAL to the archive (`wal stream`, `serve` with `backup.wal`): one leader.
    WalStream,
    /// Restoring into the named database (also the scratch database of a restore test).
    Restore(&'a str),
}

/// The high 32 bits of every job lock: "kasm".
const JOB_FAMILY: u32 = 0x6b61_736d;
/// The high 32 bits of every restore lock: "kasr".
const RESTORE_FAMILY: u32 = 0x6b61_7372;

impl Lock<'_> {
    /// Every lock that is one per database (all but [`Lock::Restore`]).
    pub const JOBS: [Lock<'static>; 8] = [
        Lock::Migrate,
        Lock::Partitions,
        Lock::Purge,
        Lock::Backup,
        Lock::Vacuum,
        Lock::SizeSample,
        Lock::Verify,
        Lock::WalStream,
    ];

    /// The job the lock guards, as messages name it.
    pub fn job(&self) -> &'static str {
        match self {
            Lock::Migrate => "migrate",
            Lock::Partitions => "partition creation",
            Lock::Purge => "purge",
            Lock::Backup => "backup",
            Lock::Vacuum => "vacuum",
            Lock::SizeSample => "size sample",
            Lock::Verify => "verify",
            Lock::WalStream => "WAL stream",
            Lock::Restore(_) => "restore",
        }
    }

    /// The 64-bit advisory lock key. One scheme: the high 32 bits name the family, the low 32
    /// bits the lock. Job locks are "kasm" then "db" and the job's number (`0x6b61736d_6462_00nn`,
    /// "kasm-db" + n: the values migrate (1) and partition creation (2) have always had, so
    /// replicas of different versions still exclude each other there); restore locks are
    /// "kasr" then the CRC-32 of the database name. Two families never share a key, and within
    /// the job family the numbers differ (see the tests).
    pub fn key(&self) -> i64 {
        let (family, low) = match self {
            Lock::Restore(database) => (RESTORE_FAMILY, crc32fast::hash(database.as_bytes())),
            job => (JOB_FAMILY, 0x6462_0000 | job.number()),
        };
        (((family as u64) << 32) | low as u64) as i64
    }

    /// The job's number within the job family (restore has none).
    fn number(&self) -> u32 {
        match self {
            Lock::Migrate => 1,
            Lock::Partitions => 2,
            Lock::Purge => 3,
            Lock::Backup => 4,
            Lock::Vacuum => 5,
            Lock::SizeSample => 6,
            Lock::Verify => 7,
            Lock::WalStream => 8,
            Lock::Restore(_) => 0,
        }
    }

    /// The exit-75 error of a run that found the lock taken; `on` says where (a redacted
    /// database description, or "host:port").
    pub fn busy(&self, on: &str) -> Error {
        let message = match self {
            Lock::Restore(database) => format!(
                "another restore into {database} on {on} is running (it holds the kasm-db restore lock); try again later"
            ),
            other => format!(
                "another {job} of {on} is running (it holds the kasm-db {job} lock); try again later",
                job = other.job()
            ),
        };
        Error::with_cause(Kind::Temporary, Busy(message))
    }
}

/// The cause of a [`Lock::busy`] error, so that `serve` can tell "someone else runs this job"
/// from a failure (see [`is_busy`]).
#[derive(Debug)]
pub struct Busy(String);

impl fmt::Display for Busy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Busy {}

/// Whether `e` is (or was caused by) another run holding a job's lock.
pub fn is_busy(e: &Error) -> bool {
    e.caused_by::<Busy>()
}

/// Take `lock` for the session if it is free; `false` when another session holds it.
pub async fn try_lock(client: &Client, lock: Lock<'_>) -> Result<bool> {
    Ok(client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&lock.key()])
        .await?
        .get(0))
}

/// Take `lock` for the session, or fail with [`Lock::busy`] (exit 75) naming `on`.
pub async fn hold(client: &Client, lock: Lock<'_>, on: &str) -> Result<()> {
    if try_lock(client, lock).await? {
        Ok(())
    } else {
        Err(lock.busy(on))
    }
}

/// Take `lock` for the session, waiting for whoever holds it.
pub async fn wait(client: &Client, lock: Lock<'_>) -> Result<()> {
    client
        .query("SELECT pg_advisory_lock($1)", &[&lock.key()])
        .await?;
    Ok(())
}

/// Release a session lock taken with [`try_lock`], [`hold`] or [`wait`] (closing the session
/// releases it too; a pooled connection must release it before going back to the pool).
pub async fn unlock(client: &Client, lock: Lock<'_>) -> Result<()> {
    client
        .query("SELECT pg_advisory_unlock($1)", &[&lock.key()])
        .await?;
    Ok(())
}

/// Release `lock`, held on a pooled connection, before the connection goes back to the pool.
/// A connection that cannot release it (a broken one, say) is closed instead of going back,
/// which releases it too: a pooled connection never returns to the pool holding a lock.
pub async fn release_pooled(client: deadpool_postgres::Object, lock: Lock<'_>) {
    if unlock(&client, lock).await.is_err() {
        drop(deadpool_postgres::Object::take(client));
    }
}

/// Take `lock` until the end of the transaction, waiting for whoever holds it.
pub async fn wait_xact(tx: &Transaction<'_>, lock: Lock<'_>) -> Result<()> {
    tx.query("SELECT pg_advisory_xact_lock($1)", &[&lock.key()])
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_key_is_distinct() {
        let mut locks: Vec<Lock> = Lock::JOBS.to_vec();
        locks.extend(
            ["kasm", "kasm_db_verify", "postgres", "kasm_logs", ""]
                .into_iter()
                .map(Lock::Restore),
        );
        let keys: HashSet<i64> = locks.iter().map(Lock::key).collect();
        assert_eq!(keys.len(), locks.len(), "{locks:?}");
        let jobs: HashSet<&str> = Lock::JOBS.iter().map(Lock::job).collect();
        assert_eq!(jobs.len(), Lock::JOBS.len());
    }

    #[test]
    fn job_and_restore_families_never_meet() {
        for lock in Lock::JOBS {
            assert_eq!((lock.key() as u64) >> 32, JOB_FAMILY as u64, "{lock:?}");
        }
        for name in ["kasm", "kasm_db_verify", "a", "\u{e9}t\u{e9}"] {
            assert_eq!(
                (Lock::Restore(name).key() as u64) >> 32,
                RESTORE_FAMILY as u64
            );
        }
    }

    #[test]
    fn migrate_and_partition_keys_keep_their_values() {
        // An older replica migrating or creating partitions must still exclude a newer one.
        assert_eq!(Lock::Migrate.key(), 0x6b61_736d_6462_0001);
        assert_eq!(Lock::Partitions.key(), 0x6b61_736d_6462_0002);
    }

    #[test]
    fn restore_keys_depend_only_on_the_name() {
        assert_eq!(Lock::Restore("kasm").key(), Lock::Restore("kasm").key());
        assert_ne!(Lock::Restore("kasm").key(), Lock::Restore("kasm2").key());
    }

    #[test]
    fn busy_is_temporary_names_the_job_and_is_recognised() {
        let e = Lock::Vacuum.busy("postgres://u@h/db");
        assert_eq!(e.kind(), Kind::Temporary);
        assert!(
            e.to_string()
                .contains("another vacuum of postgres://u@h/db"),
            "{e}"
        );
        assert!(is_busy(&e));
        assert!(is_busy(&e.context("scheduled vacuum")));
        assert!(!is_busy(&Error::temporary("unreachable")));
        let r = Lock::Restore("kasm").busy("h:5432");
        assert!(
            r.to_string()
                .contains("another restore into kasm on h:5432"),
            "{r}"
        );
    }
}
