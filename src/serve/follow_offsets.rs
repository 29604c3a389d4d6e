//! Committing the rows read from a followed file together with the file's new byte offset, in
//! one transaction: BEGIN; check the offset row is still what this follower last committed
//! (FOR UPDATE); COPY (poison rows isolated under savepoints); insert or update the offset;
//! COMMIT. Offsets are keyed by the file's identity (device, inode; see `identity.rs`), with the
//! fingerprint of its first bytes and the path it was last read at.
//!
//! A crash before COMMIT leaves neither rows nor offset, so the lines are read again; after
//! COMMIT both are there, so they are not. It never commits rows without their offset, and never
//! overwrites an offset another replica advanced (that is a [`CommitError::Conflict`]). Rows of
//! files that are gone are forgotten only after a grace period ([`housekeep`]).

use super::identity::{FileId, Fingerprint};
use crate::db::{self, Pool, ident};
use crate::error::{Error, Result};
use crate::logs::copy::{Row, copy_once};
use crate::logs::partition_ddl;
use crate::logs::partition_plan;
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use tokio_postgres::Client;

/// What the database holds for one file: how far it was read, and what it starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub offset: u64,
    pub fp: Fingerprint,
}

#[derive(Debug)]
pub enum CommitError {
    /// The stored offset is not the one expected: another follower moved it. Reload.
    Conflict,
    Db(Error),
}

impl From<Error> for CommitError {
    fn from(e: Error) -> Self {
        CommitError::Db(e)
    }
}

impl From<tokio_postgres::Error> for CommitError {
    fn from(e: tokio_postgres::Error) -> Self {
        CommitError::Db(e.into())
    }
}

const COLUMNS: &str = "byte_offset, fp_len, fingerprint";

fn stored(r: &tokio_postgres::Row) -> Stored {
    let fp = Fingerprint::from_parts(r.get(1), r.get::<_, &[u8]>(2)).unwrap_or_else(|| {
        // Not written by kasm-db: treat as "no information", the inode alone decides.
        Fingerprint::empty()
    });
    Stored {
        offset: r.get::<_, i64>(0) as u64,
        fp,
    }
}

/// What the database holds for file `id`, if anything.
pub async fn load(pool: &Pool, schema: &str, id: FileId) -> Result<Option<Stored>> {
    let client = db::get(pool).await?;
    let row = client
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM {}.follow_offsets WHERE dev = $1 AND inode = $2",
                ident(schema)
            ),
            &[&(id.dev as i64), &(id.inode as i64)],
        )
        .await?;
    Ok(row.map(|r| stored(&r)))
}

/// When following began for the files whose path starts with `base` (a followed name and its
/// rotated copies): the oldest `first_seen` among them (each row holds its follower's start).
pub async fn first_seen(pool: &Pool, schema: &str, base: &str) -> Result<Option<DateTime<Utc>>> {
    let client = db::get(pool).await?;
    let row = client
        .query_one(
            &format!(
                "SELECT min(first_seen) FROM {}.follow_offsets WHERE left(path, length($1)) = $1",
                ident(schema)
            ),
            &[&base],
        )
        .await?;
    Ok(row.get(0))
}

/// Where a file is read, and since when its follower has been following: the time a new row
/// records as `first_seen`. That is when following *began* (the follower's start), not the time
/// of this first commit: a rotated file written in between and not read before a restart is
/// still "written since following began" for the next follower ([`first_seen`]).
#[derive(Debug, Clone, Copy)]
pub struct ReadAt<'a> {
    pub path: &'a str,
    pub following_since: DateTime<Utc>,
}

/// Store `rows` and move file `id` from `expected` to `new` (last read `at`), atomically.
/// Returns the indexes of the rows the database refused (with reasons); the others are committed.
pub async fn commit(
    pool: &Pool,
    schema: &str,
    id: FileId,
    at: ReadAt<'_>,
    expected: Option<Stored>,
    new: Stored,
    rows: &[Row],
) -> std::result::Result<Vec<(usize, String)>, CommitError> {
    let mut client = db::get(pool).await?;
    let needed =
        partition_plan::containing_all(rows.iter().map(|r| (r.record.class(), r.ingest_date)));
    partition_ddl::ensure(&mut client, schema, &needed).await?;
    client.batch_execute("BEGIN").await?;
    let result = in_transaction(&client, schema, id, at, expected, new, rows).await;
    if result.is_err() && !client.is_closed() {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    result
}

async fn in_transaction(
    client: &Client,
    schema: &str,
    id: FileId,
    at: ReadAt<'_>,
    expected: Option<Stored>,
    new: Stored,
    rows: &[Row],
) -> std::result::Result<Vec<(usize, String)>, CommitError> {
    let s = ident(schema);
    let path = at.path;
    let (dev, inode) = (id.dev as i64, id.inode as i64);
    let current = client
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM {s}.follow_offsets WHERE dev = $1 AND inode = $2 FOR UPDATE"
            ),
            &[&dev, &inode],
        )
        .await?
        .map(|r| stored(&r));
    if current != expected {
        return Err(CommitError::Conflict);
    }
    let refused = copy_isolating(client, schema, rows).await?;
    let (offset, fp_len, fp) = (new.offset as i64, new.fp.len as i32, &new.fp.hash[..]);
    let written = if expected.is_some() {
        client
            .execute(
                &format!(
                    "UPDATE {s}.follow_offsets SET path = $3, byte_offset = $4, fp_len = $5,
                         fingerprint = $6, gone_since = NULL, updated_at = now()
                     WHERE dev = $1 AND inode = $2"
                ),
                &[&dev, &inode, &path, &offset, &fp_len, &fp],
            )
            .await
    } else {
        client
            .execute(
                &format!(
                    "INSERT INTO {s}.follow_offsets
                         (dev, inode, path, byte_offset, fp_len, fingerprint, first_seen)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)"
                ),
                &[
                    &dev,
                    &inode,
                    &path,
                    &offset,
                    &fp_len,
                    &fp,
                    &at.following_since,
                ],
            )
            .await
    };
    match written {
        Ok(_) => {}
        // Two followers inserting the first row of a file at once.
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
            return Err(CommitError::Conflict);
        }
        Err(e) => return Err(e.into()),
    }
    client.batch_execute("COMMIT").await?;
    Ok(refused)
}

/// What [`housekeep`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Kept {
    pub marked_gone: u64,
    pub back: u64,
    pub forgotten: u64,
}

/// Forget files that are gone: a row whose last path lies in one of `dirs` (folders this
/// follower lists) while no file there has its identity (`present`) is marked gone, and deleted
/// once it has been gone for `grace`; a file seen again is unmarked. Rows of other folders
/// (another replica's, a glob no longer configured) are left alone.
pub async fn housekeep(
    pool: &Pool,
    schema: &str,
    dirs: &HashSet<PathBuf>,
    present: &HashSet<FileId>,
    grace: std::time::Duration,
) -> Result<Kept> {
    let client = db::get(pool).await?;
    let s = ident(schema);
    let rows = client
        .query(
            &format!("SELECT dev, inode, path, gone_since IS NOT NULL FROM {s}.follow_offsets"),
            &[],
        )
        .await?;
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    let cutoff = Utc::now()
        .checked_sub_signed(grace)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let mut kept = Kept::default();
    for r in rows {
        let (dev, inode, path, gone): (i64, i64, String, bool) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        let watched = Path::new(&path).parent().is_some_and(|d| dirs.contains(d));
        if !watched {
            continue;
        }
        let id = FileId {
            dev: dev as u64,
            inode: inode as u64,
        };
        let key: [&(dyn postgres_types::ToSql + Sync); 2] = [&dev, &inode];
        match (present.contains(&id), gone) {
            (true, false) => {}
            (true, true) => {
                let sql = format!(
                    "UPDATE {s}.follow_offsets SET gone_since = NULL WHERE dev = $1 AND inode = $2"
                );
                kept.back += client.execute(&sql, &key).await?;
            }
            (false, false) => {
                let sql = format!(
                    "UPDATE {s}.follow_offsets SET gone_since = $3
                     WHERE dev = $1 AND inode = $2 AND gone_since IS NULL"
                );
                kept.marked_gone += client.execute(&sql, &[key[0], key[1], &Utc::now()]).await?;
            }
            (false, true) => {
                let sql = format!(
                    "DELETE FROM {s}.follow_offsets
                     WHERE dev = $1 AND inode = $2 AND gone_since <= $3"
                );
                kept.forgotten += client.execute(&sql, &[key[0], key[1], &cutoff]).await?;
            }
        }
    }
    Ok(kept)
}

/// COPY `rows` inside the open transaction; a batch the server refuses for its content is
/// rolled back to its savepoint and split until the refused rows are isolated.
async fn copy_isolating(
    client: &Client,
    schema: &str,
    rows: &[Row],
) -> std::result::Result<Vec<(usize, String)>, CommitError> {
    let mut refused = Vec::new();
    let mut work: Vec<std::ops::Range<usize>> = std::iter::once(0..rows.len()).collect();
    while let Some(range) = work.pop() {
        if range.is_empty() {
            continue;
        }
        let slice: Vec<&Row> = rows[range.clone()].iter().collect();
        client.batch_execute("SAVEPOINT kasm_db_copy").await?;
        match copy_once(client, schema, &slice).await {
            Ok(()) => {
                client
                    .batch_execute("RELEASE SAVEPOINT kasm_db_copy")
                    .await?
            }
            Err(e) if !crate::db::is_transient(&e) && !client.is_closed() => {
                client
                    .batch_execute("ROLLBACK TO SAVEPOINT kasm_db_copy")
                    .await?;
                if range.len() == 1 {
                    let msg = e
                        .as_db_error()
                        .map_or_else(|| e.to_string(), |d| d.message().to_string());
                    refused.push((range.start, msg));
                } else {
                    let mid = range.start + range.len() / 2;
                    work.push(mid..range.end);
                    work.push(range.start..mid);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    refused.sort_by_key(|(i, _)| *i);
    Ok(refused)
}
