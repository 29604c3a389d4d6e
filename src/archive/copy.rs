//! A second copy of a complete backup on another target (3-2-1): `backups copy` and
//! `backup.copy_to`. Works on any two [`Storage`]s (directory, S3, and whatever comes behind
//! the trait later), streaming: the object is read from the source in bounded pieces, hashed on
//! the way and written to the destination as it arrives, never held whole in memory or on disk.
//!
//! Order, as a backup's: the data object, the role passwords object when there is one, then the manifest (rewritten with the copy's own
//! location, restore recipe and server-side encryption; everything else as the source's), then the latest verification
//! record when the source has one (it speaks of the same bytes). A source whose size or SHA-256
//! differs from its manifest is refused: the destination's upload is aborted before it is
//! committed, so nothing appears there. Never deletes anything on either side, never writes a
//! manifest before its object is complete, never logs a credential.

use super::compress::Digest;
use super::manifest::{self, Manifest};
use super::storage::{self, Piece, Retain, Storage};
use super::{catalog, verification};
use crate::error::{Error, Result};
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// Bytes read from the source per piece.
const PIECE_BYTES: usize = 1 << 20;
/// Pieces buffered between reading and writing.
const CHANNEL_PIECES: usize = 8;

/// What one copy did.
#[derive(Debug, Clone, Serialize)]
pub struct Copied {
    pub id: String,
    /// The destination, as an operator writes it (no credentials).
    pub target: String,
    /// Bytes of the data object written (0 when it was already there).
    pub bytes: u64,
    /// The destination already held this backup, complete and with the same SHA-256.
    pub already_there: bool,
}

/// Copy backup `id` (or `latest`) from `src` to `dst`.
pub async fn copy(src: &dyn Storage, dst: &dyn Storage, id: &str) -> Result<Copied> {
    let m = catalog::find(src, id).await?;
    copy_manifest(src, dst, &m).await
}

/// Copy the backup `m` describes from `src` to `dst`.
pub async fn copy_manifest(src: &dyn Storage, dst: &dyn Storage, m: &Manifest) -> Result<Copied> {
    let mut done = Copied {
        id: m.id.clone(),
        target: dst.describe(),
        bytes: 0,
        already_there: false,
    };
    // Not there yet (or the destination directory not yet made: the write creates it); a
    // destination that cannot be listed is not taken for an empty one.
    match catalog::find(dst, &m.id).await {
        Ok(there) => {
            if there.sha256 == m.sha256 && there.size_bytes == m.size_bytes {
                done.already_there = true;
                return Ok(done);
            }
            return Err(Error::failed(format!(
                "{} already holds a backup {} with another SHA-256; not overwritten",
                dst.describe(),
                m.id
            )));
        }
        Err(e) if catalog::is_no_such_backup(&e) || storage::is_missing(&e) => {}
        Err(e) => {
            return Err(e.context(format!(
                "cannot tell whether {} already holds {}; nothing was copied",
                dst.describe(),
                m.id
            )));
        }
    }
    done.bytes = copy_object(src, dst, m).await?;
    if let Err(e) = copy_passwords(src, dst, m).await {
        let _ = dst.delete(&m.object).await;
        return Err(e);
    }

    let mut copy = m.clone();
    copy.location = format!("{}/{}", dst.describe(), copy.object);
    copy.server_side_encryption = dst.server_side_encryption();
    copy.restore = match copy.kind {
        manifest::BackupKind::Logical => manifest::restore_recipe(
            &copy.location,
            copy.encryption.as_ref().map(|e| e.key_id.as_str()),
            copy.compression.codec()?,
        ),
        manifest::BackupKind::Physical => manifest::physical_recipe(
            &copy.id,
            &copy.location,
            copy.encryption.as_ref().map(|e| e.key_id.as_str()),
            copy.compression.codec()?,
        ),
    };
    let body = serde_json::to_vec_pretty(&copy)
        .map_err(|e| Error::failed(format!("manifest encoding: {e}")))?;
    if let Err(e) = dst
        .put_small(&manifest::manifest_name(&m.id), body, Retain::WithBackup)
        .await
    {
        let _ = dst.delete(&m.object).await;
        if let Some(p) = m.passwords() {
            let _ = dst.delete(&p.object).await;
        }
        return Err(e.context(format!(
            "the copy of {} was stored in {} but its manifest could not be; nothing was kept",
            m.id,
            dst.describe()
        )));
    }
    match verification::latest(src, &m.id).await {
        Ok(Some(v)) => verification::record(dst, &m.id, &v).await,
        Ok(None) => {}
        Err(why) => {
            tracing::warn!(id = m.id, error = %why, "the verification record was not copied")
        }
    }
    Ok(done)
}

/// The role passwords object (issue 17), when the backup carries one: small, checked against
/// the manifest like the object, copied as stored (sealed when the backup is encrypted).
async fn copy_passwords(src: &dyn Storage, dst: &dyn Storage, m: &Manifest) -> Result<()> {
    let Some(p) = m.passwords() else {
        return Ok(());
    };
    let bytes = super::storage::get_small(src, &p.object).await?;
    if let Some(problem) = p.problem(bytes.as_deref()) {
        return Err(Error::failed(format!(
            "backup {} in {}: {problem}; refused, nothing was copied to {}",
            m.id,
            src.describe(),
            dst.describe()
        )));
    }
    dst.put_small(&p.object, bytes.unwrap_or_default(), Retain::No)
        .await
}

/// Stream the data object, checking size and SHA-256 against the manifest before the
/// destination commits it. Returns the bytes written.
async fn copy_object(src: &dyn Storage, dst: &dyn Storage, m: &Manifest) -> Result<u64> {
    let Some(mut reader) = src.get(&m.object).await? else {
        return Err(Error::failed(format!(
            "backup {} in {}: its object {} is missing",
            m.id,
            src.describe(),
            m.object
        )));
    };
    let (tx, rx) = mpsc::channel::<Piece>(CHANNEL_PIECES);
    let read = async move {
        let mut digest = Digest::default();
        loop {
            let mut buf = vec![0u8; PIECE_BYTES];
            let mut filled = 0;
            while filled < buf.len() {
                let n = reader.read(&mut buf[filled..]).await.map_err(|e| {
                    Error::from(e).context(format!(
                        "cannot read {} from {}",
                        m.object,
                        src.describe()
                    ))
                })?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            buf.truncate(filled);
            digest.update(&buf);
            if tx.send(Piece::Data(buf.into())).await.is_err() {
                // The destination stopped; its own error says why.
                return Ok(None);
            }
        }
        let (sha, size) = digest.finish();
        if size != m.size_bytes || sha != m.sha256 {
            // Dropping `tx` without `End` aborts the destination's upload.
            return Err(Error::failed(format!(
                "backup {} in {} is corrupt ({}): refused, nothing was copied to {}",
                m.id,
                src.describe(),
                if size != m.size_bytes {
                    format!("{size} bytes, the manifest says {}", m.size_bytes)
                } else {
                    "its SHA-256 differs from the manifest".to_string()
                },
                dst.describe()
            )));
        }
        let _ = tx.send(Piece::End).await;
        Ok(Some(size))
    };
    let (read, written) = tokio::join!(read, dst.put_stream(&m.object, rx));
    match (read?, written) {
        (Some(size), Ok(n)) if n == size => Ok(n),
        (Some(size), Ok(n)) => Err(Error::failed(format!(
            "{} reports {n} bytes written but {size} were sent",
            dst.describe()
        ))),
        (_, Err(e)) => Err(e.context(format!("cannot copy {} to {}", m.id, dst.describe()))),
        (None, Ok(_)) => Err(Error::failed("the destination stopped reading")),
    }
}
