//! Object storage behind one trait, so that the backup pipeline, `backups list/verify/prune`
//! and restore do not care whether the target is a directory or a bucket.
//!
//! Object names are relative keys with `/` separators (`<id>/dump.gz`). The rule every
//! implementation keeps: an object becomes visible under its name only once it is complete
//! (temporary name + rename, a completed multipart upload, a committed block list); a stream that ends without
//! [`Piece::End`] leaves nothing under the name and no upload behind. This module is the only
//! place that does I/O on backup objects; it never logs a credential.

pub mod azure;
pub mod fs;
pub mod s3;

use super::target::Target;
use crate::config::Config;
use crate::error::Result;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::AsyncRead;
use tokio::sync::mpsc;

/// One piece of a streamed object.
#[derive(Debug)]
pub enum Piece {
    Data(Bytes),
    /// The stream is complete: commit the object. A channel closed without it means "abort".
    End,
}

/// An object as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Relative name (`<id>/dump.gz`).
    pub name: String,
    pub size: u64,
    pub modified: DateTime<Utc>,
}

/// The cause of an error deleting an object that may not be deleted yet: S3 Object Lock
/// retention (or a legal hold) still in force. `prune` keeps such a backup and warns; it is
/// deleted by a later prune once its retention has passed. Recognised with
/// [`is_locked`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Locked(pub String);

/// Whether `e` is a refused delete of an object under retention ([`Locked`]).
pub fn is_locked(e: &crate::error::Error) -> bool {
    e.caused_by::<Locked>()
}

/// The cause of an error on a target that does not exist: a backup directory that is not
/// there (a mistyped path, an NFS share not mounted), an S3 bucket that does not exist
/// (`NoSuchBucket`), an Azure container that does not (`ContainerNotFound`). Never "no backups":
/// listing, checking, verifying, pruning, copying from or restoring from such a target fails
/// with exit 75 naming it; writing a backup into a directory that is not there creates it
/// (buckets and containers are never created). Recognised with [`is_missing`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Missing(pub String);

/// The error of a missing target (exit 75), [`Missing`] as its cause.
pub fn missing(msg: impl Into<String>) -> crate::error::Error {
    crate::error::Error::with_cause(crate::error::Kind::Temporary, Missing(msg.into()))
}

/// Whether `e` says the target does not exist ([`Missing`]).
pub fn is_missing(e: &crate::error::Error) -> bool {
    e.caused_by::<Missing>()
}

/// Whether a small object is kept under the store's retention (`s3.object_lock_days`) like
/// the dumps: a manifest is ([`Retain::WithBackup`]); a record rewritten later, such as
/// `verified.json`, is not ([`Retain::No`]). Stores without retention ignore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retain {
    WithBackup,
    No,
}

/// A streaming reader over an object's bytes.
pub type Reader = Pin<Box<dyn AsyncRead + Send>>;

/// A place to keep backups.
pub trait Storage: Send + Sync {
    /// The target as an operator would write it (no credentials).
    fn describe(&self) -> String;

    /// Stream `body` into the object `name`; commit it when [`Piece::End`] arrives, abort (leaving
    /// nothing) if the channel closes first or anything fails. Returns the bytes stored. Under
    /// the store's retention when `retain` says so: a backup's data and a completed WAL segment
    /// are, the partial copy of the segment being written (replaced every few seconds) is not.
    fn put_stream<'a>(
        &'a self,
        name: &'a str,
        body: mpsc::Receiver<Piece>,
        retain: Retain,
    ) -> BoxFuture<'a, Result<u64>>;

    /// Store a small object (a manifest) atomically, under the store's retention when `retain`
    /// says so (the caller knows what the object is; the store never reads a backup's layout).
    fn put_small<'a>(
        &'a self,
        name: &'a str,
        bytes: Vec<u8>,
        retain: Retain,
    ) -> BoxFuture<'a, Result<()>>;

    /// Open an object for reading; `None` when it does not exist.
    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Reader>>>;

    /// Every object under the target, including leftovers of dead runs.
    fn list(&self) -> BoxFuture<'_, Result<Vec<ObjectInfo>>>;

    /// Up to `limit` names of objects under `prefix` (a folder, ending in `/`) that sort after
    /// `after`, in order: what the WAL archive needs to tell the end of the archive from a gap
    /// without listing everything (S3's `StartAfter`). By default the whole listing, filtered.
    fn list_after<'a>(
        &'a self,
        prefix: &'a str,
        after: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let mut names: Vec<String> = self
                .list()
                .await?
                .into_iter()
                .map(|o| o.name)
                .filter(|n| n.starts_with(prefix) && n.as_str() > after)
                .collect();
            names.sort();
            names.truncate(limit);
            Ok(names)
        })
    }

    /// Delete an object; deleting a missing object is not an error. An object under retention
    /// fails with a [`Locked`] cause.
    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>>;

    /// Abort uploads left open by dead runs that started before `before` (multipart uploads on
    /// S3; nothing on a directory, whose leftovers are ordinary objects). Returns their names.
    fn abort_stale_uploads(&self, before: DateTime<Utc>) -> BoxFuture<'_, Result<Vec<String>>>;

    /// The server-side encryption this storage asks for on upload ("AES256", "aws:kms"), as a
    /// manifest records it; `None` where there is none (a directory).
    fn server_side_encryption(&self) -> Option<String> {
        None
    }
}

/// Read a whole (small) object; `None` when it does not exist.
pub async fn get_small(storage: &dyn Storage, name: &str) -> Result<Option<Vec<u8>>> {
    use tokio::io::AsyncReadExt;
    let Some(mut r) = storage.get(name).await? else {
        return Ok(None);
    };
    let mut buf = Vec::new();
    r.read_to_end(&mut buf).await?;
    Ok(Some(buf))
}

/// Open the storage for `target`: `[s3]` settings for bucket targets, the Azure variables
/// carried by the configuration for containers, `backup.file_mode` for directories.
pub async fn open(target: &Target, config: &Config) -> Result<Arc<dyn Storage>> {
    Ok(match target {
        Target::Dir(dir) => Arc::new(fs::FsStorage::new(dir.clone(), config.backup.file_mode)),
        Target::S3 { bucket, prefix } => {
            Arc::new(s3::S3Storage::connect(bucket.clone(), prefix.clone(), &config.s3).await?)
        }
        Target::Azure { container, prefix } => Arc::new(azure::AzureStorage::open(
            container.clone(),
            prefix.clone(),
            &config.azure,
            &config.proxy,
        )?),
    })
}
