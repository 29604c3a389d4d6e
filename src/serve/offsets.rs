//! Committing the rows read from a followed file together with the file's new byte offset, in
//! one transaction: BEGIN; check the offset row is still what this follower last committed
//! (FOR UPDATE); COPY (poison rows isolated under savepoints); upsert the offset; COMMIT.
//!
//! A crash before COMMIT leaves neither rows nor offset, so the lines are read again; after
//! COMMIT both are there, so they are not. It never commits rows without their offset, and never
//! overwrites an offset another replica advanced (that is a [`CommitError::Conflict`]).

use crate::db::{self, Pool, ident};
use crate::error::{Error, Result};
use crate::logs::copy::{Row, copy_once};
use crate::logs::partition::{self, Partition};
use crate::logs::partitions;
use tokio_postgres::Client;

/// Where in which file: (device, inode, byte offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub dev: u64,
    pub inode: u64,
    pub offset: u64,
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

/// The committed position of `path`, if any.
pub async fn load(pool: &Pool, schema: &str, path: &str) -> Result<Option<Position>> {
    let client = db::get(pool).await?;
    let row = client
        .query_opt(
            &format!(
                "SELECT dev, inode, byte_offset FROM {}.follow_offsets WHERE path = $1",
                ident(schema)
            ),
            &[&path],
        )
        .await?;
    Ok(row.map(|r| position(&r)))
}

fn position(r: &tokio_postgres::Row) -> Position {
    Position {
        dev: r.get::<_, i64>(0) as u64,
        inode: r.get::<_, i64>(1) as u64,
        offset: r.get::<_, i64>(2) as u64,
    }
}

/// Store `rows` and move `path` from `expected` to `new`, atomically. Returns the indexes of
/// the rows the database refused (with reasons); the others are committed.
pub async fn commit(
    pool: &Pool,
    schema: &str,
    path: &str,
    expected: Option<Position>,
    new: Position,
    rows: &[Row],
) -> std::result::Result<Vec<(usize, String)>, CommitError> {
    let mut client = db::get(pool).await?;
    let mut needed: Vec<Partition> = Vec::new();
    for row in rows {
        let p = partition::containing(row.record.class(), row.ingest_date);
        if !needed.iter().any(|n| n.name == p.name) {
            needed.push(p);
        }
    }
    partitions::ensure(&mut client, schema, &needed).await?;
    client.batch_execute("BEGIN").await?;
    let result = in_transaction(&client, schema, path, expected, new, rows).await;
    if result.is_err() && !client.is_closed() {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    result
}

async fn in_transaction(
    client: &Client,
    schema: &str,
    path: &str,
    expected: Option<Position>,
    new: Position,
    rows: &[Row],
) -> std::result::Result<Vec<(usize, String)>, CommitError> {
    let s = ident(schema);
    let current = client
        .query_opt(
            &format!(
                "SELECT dev, inode, byte_offset FROM {s}.follow_offsets WHERE path = $1 FOR UPDATE"
            ),
            &[&path],
        )
        .await?
        .map(|r| position(&r));
    if current != expected {
        return Err(CommitError::Conflict);
    }
    let refused = copy_isolating(client, schema, rows).await?;
    let upsert = format!(
        "INSERT INTO {s}.follow_offsets (path, dev, inode, byte_offset) VALUES ($1, $2, $3, $4)
         ON CONFLICT (path) DO UPDATE SET dev = excluded.dev, inode = excluded.inode,
             byte_offset = excluded.byte_offset, updated_at = now()"
    );
    let inserted = client
        .execute(
            &upsert,
            &[
                &path,
                &(new.dev as i64),
                &(new.inode as i64),
                &(new.offset as i64),
            ],
        )
        .await;
    match inserted {
        Ok(_) => {}
        // Two followers inserting the first row of a path at once.
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
            return Err(CommitError::Conflict);
        }
        Err(e) => return Err(e.into()),
    }
    client.batch_execute("COMMIT").await?;
    Ok(refused)
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
