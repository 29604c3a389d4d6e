//! A second copy of a complete backup on another target (3-2-1): `backups copy` and
//! `backup.copy_to`. Works on any two [`Storage`]s (directory, S3, and whatever comes behind
//! the trait later), streaming: the object is read from the source in bounded pieces, hashed on
//! the way and written to the destination as it arrives, never held whole in memory or on disk.
//!
//! Order, as a backup's: the data object, the role passwords object when there is one, then the manifest (rewritten with the copy's own
//! location, restore recipe and server-side encryption; everything else as the source's), then the latest verification
//! record when the source has one (it speaks of the same bytes). A source whose size or SHA-256
//! differs from its manifest is refused: the destination's upload is aborted before it is
//! committed, so nothing appears there. Never deletes a backup on either side, never writes a
//! manifest before its object is complete, never logs a credential.
//!
//! Archived WAL (point-in-time recovery, `wal/`) is copied by [`copy_wal`]: what the
//! destination lacks, each object checked against its record and the record written after it
//! (a physical backup's copy carries it, and `wal stream` keeps each `backup.copy_to` target
//! caught up with it). Only a superseded partial copy of a segment is ever deleted there.

use super::compress::Digest;
use super::manifest::{self, Manifest};
use super::storage::{self, Piece, Retain, Storage};
use super::{catalog, verification, wal};
use crate::error::{Error, Result};
use serde::Serialize;
use std::collections::HashSet;
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
    /// A physical backup: the archived WAL copied with it (what the destination lacked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal: Option<WalCopied>,
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
        wal: None,
    };
    // A physical backup is restorable only with the WAL after it: the archive's WAL goes
    // first, so the copy's manifest never appears without its chain.
    if m.kind == manifest::BackupKind::Physical {
        done.wal = Some(copy_wal(src, dst).await.map_err(|e| {
            e.context(format!(
                "cannot copy the archived WAL of {} to {}; the backup was not copied",
                m.id,
                dst.describe()
            ))
        })?);
    }
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
    copy_checked(
        src,
        dst,
        &m.object,
        m.size_bytes,
        &m.sha256,
        &format!("backup {}", m.id),
        Retain::WithBackup,
    )
    .await
    .map_err(|e| match e {
        CopyError::Missing => Error::failed(format!(
            "backup {} in {}: its object {} is missing",
            m.id,
            src.describe(),
            m.object
        )),
        CopyError::Other(e) => e,
    })
}

/// Why [`copy_checked`] copied nothing.
enum CopyError {
    /// The source object is not there.
    Missing,
    Other(Error),
}

impl From<Error> for CopyError {
    fn from(e: Error) -> Self {
        CopyError::Other(e)
    }
}

/// Stream `object` from `src` to `dst`, checking its size and SHA-256 against `size` and `sha`
/// before the destination commits it (`what` names it in errors). Returns the bytes written.
async fn copy_checked(
    src: &dyn Storage,
    dst: &dyn Storage,
    object: &str,
    size_expected: u64,
    sha_expected: &str,
    what: &str,
    retain: Retain,
) -> std::result::Result<u64, CopyError> {
    let Some(mut reader) = src.get(object).await? else {
        return Err(CopyError::Missing);
    };
    let (tx, rx) = mpsc::channel::<Piece>(CHANNEL_PIECES);
    let read = async move {
        let mut digest = Digest::default();
        loop {
            let mut buf = vec![0u8; PIECE_BYTES];
            let mut filled = 0;
            while filled < buf.len() {
                let n = reader.read(&mut buf[filled..]).await.map_err(|e| {
                    Error::from(e).context(format!("cannot read {object} from {}", src.describe()))
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
        if size != size_expected || sha != sha_expected {
            // Dropping `tx` without `End` aborts the destination's upload.
            return Err(Error::failed(format!(
                "{what} in {} is corrupt ({}): refused, nothing was copied to {}",
                src.describe(),
                if size != size_expected {
                    format!("{size} bytes, its record says {size_expected}")
                } else {
                    "its SHA-256 differs from its record".to_string()
                },
                dst.describe()
            )));
        }
        let _ = tx.send(Piece::End).await;
        Ok(Some(size))
    };
    let (read, written) = tokio::join!(read, dst.put_stream(object, rx, retain));
    match (read?, written) {
        (Some(size), Ok(n)) if n == size => Ok(n),
        (Some(size), Ok(n)) => Err(Error::failed(format!(
            "{} reports {n} bytes written but {size} were sent",
            dst.describe()
        ))
        .into()),
        (_, Err(e)) => Err(e
            .context(format!("cannot copy {what} to {}", dst.describe()))
            .into()),
        (None, Ok(_)) => Err(Error::failed("the destination stopped reading").into()),
    }
}

/// What one WAL catch-up ([`copy_wal`]) did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WalCopied {
    /// Completed segments and history files copied.
    pub files: u64,
    /// The newest completed segment's or history file's record `dst` now holds, with every
    /// one of `src` before it: where the next round may start listing ([`copy_wal_after`]).
    pub through: Option<String>,
    /// Partial copies of the segment being written copied.
    pub partial: u64,
    /// Bytes of objects written.
    pub bytes: u64,
}

/// The names under `wal/` in `s`: every one, or (with `after`) those that sort after it, a
/// page of [`LIST_PAGE`] at a time.
async fn wal_names(s: &dyn Storage, after: Option<&str>) -> Result<Vec<String>> {
    let prefix = format!("{}/", wal::WAL_DIR);
    let Some(after) = after else {
        return Ok(s
            .list()
            .await?
            .into_iter()
            .map(|o| o.name)
            .filter(|n| n.starts_with(&prefix))
            .collect());
    };
    let mut out: Vec<String> = Vec::new();
    let mut cursor = after.to_string();
    loop {
        let page = s.list_after(&prefix, &cursor, LIST_PAGE).await?;
        let last_page = page.len() < LIST_PAGE;
        out.extend(page);
        match out.last() {
            Some(last) if !last_page => cursor = last.clone(),
            _ => return Ok(out),
        }
    }
}

/// Names asked for at a time by [`wal_names`] (S3's largest page).
const LIST_PAGE: usize = 1000;

/// Bring the archived WAL of `dst` up to `src`'s (`wal/`, [`super::wal`]): every completed
/// segment and history file `src` holds and `dst` lacks is copied in order, object first
/// (checked against its record on the way) and its record after it, so `dst`'s chain has no
/// gap where `src`'s has none; the partial copy of the segment being written follows when
/// `dst`'s differs, its older copy in `dst` deleted once the new record is there, and a partial
/// copy in `dst` of a segment now stored whole there is removed (record first). Both sides are
/// listed each time: a destination that was away (a share unmounted, a bucket unreachable) is
/// caught up from what it really holds. A destination that cannot be listed is not taken for an
/// empty one: nothing is written to it. Deletes nothing else on either side.
pub async fn copy_wal(src: &dyn Storage, dst: &dyn Storage) -> Result<WalCopied> {
    copy_wal_after(src, dst, None).await
}

/// [`copy_wal`] of what sorts after `after` only: `after` is an earlier round's
/// [`WalCopied::through`], below which `dst` holds everything `src` does. The WAL stream's
/// copy rounds, every `backup.wal_flush`, list only the new WAL of both sides (S3's
/// `StartAfter`), not the whole archive of months each time.
pub async fn copy_wal_after(
    src: &dyn Storage,
    dst: &dyn Storage,
    after: Option<&str>,
) -> Result<WalCopied> {
    let mut done = WalCopied {
        through: after.map(str::to_string),
        ..WalCopied::default()
    };
    let src_names = wal_names(src, after).await?;
    if !src_names.iter().any(|n| n.ends_with(".json")) {
        return Ok(done);
    }
    let dst_names: HashSet<String> = wal_names(dst, after)
        .await
        .map_err(|e| {
            e.context(format!(
                "cannot list {}; no WAL was copied to it",
                dst.describe()
            ))
        })?
        .into_iter()
        .collect();
    let src_set: HashSet<&str> = src_names.iter().map(String::as_str).collect();
    let mut whole: Vec<&str> = Vec::new();
    let mut partial: Vec<&str> = Vec::new();
    for n in &src_names {
        if n.ends_with(".partial.json") {
            partial.push(n);
        } else if n.ends_with(".json") {
            whole.push(n);
        }
    }
    // History files first (recovery reads them to find the timelines), then segments in order.
    whole.sort_by_key(|n| (!n.ends_with(".history.json"), n.to_string()));
    // Once this round is through, `dst` holds every completed file listed (copied, there
    // already, or pruned from `src` meanwhile): the next round may start after the newest.
    let through = whole
        .iter()
        .max()
        .map(|n| n.to_string())
        .max(done.through.take());
    for record_name in whole {
        if dst_names.contains(record_name) {
            continue;
        }
        let Some(record) = catalog::read_wal_record(src, record_name).await? else {
            continue; // pruned meanwhile
        };
        match copy_checked(
            src,
            dst,
            &record.object,
            record.size_bytes,
            &record.sha256,
            &format!("WAL file {}", record.file),
            catalog::wal_retention(record.partial),
        )
        .await
        {
            Ok(n) => done.bytes += n,
            Err(CopyError::Missing) => continue, // pruned meanwhile
            Err(CopyError::Other(e)) => return Err(e),
        }
        catalog::write_wal_record(dst, record_name, &record).await?;
        done.files += 1;
        // The destination's partial copy of this segment is now superseded: record first.
        if let Some(p) = wal::record_name(&record.file, true) {
            if dst_names.contains(&p) {
                let old = catalog::read_wal_record(dst, &p).await.ok().flatten();
                dst.delete(&p).await?;
                if let Some(old) = old {
                    let _ = dst.delete(&old.object).await;
                }
            }
        }
    }
    done.through = through;
    for record_name in partial {
        // A segment stored whole at the source has its partial record removed there soon:
        // nothing to copy.
        let whole_name = record_name.replace(".partial.json", ".json");
        if src_set.contains(whole_name.as_str()) {
            continue;
        }
        let Some(record) = catalog::read_wal_record(src, record_name).await? else {
            continue;
        };
        let theirs = if dst_names.contains(record_name) {
            catalog::read_wal_record(dst, record_name).await?
        } else {
            None
        };
        if theirs.as_ref().is_some_and(|t| *t == record) {
            continue;
        }
        match copy_checked(
            src,
            dst,
            &record.object,
            record.size_bytes,
            &record.sha256,
            &format!("WAL file {} (partial)", record.file),
            catalog::wal_retention(record.partial),
        )
        .await
        {
            Ok(n) => done.bytes += n,
            Err(CopyError::Missing) => continue, // replaced by a newer copy meanwhile
            Err(CopyError::Other(e)) => return Err(e),
        }
        catalog::write_wal_record(dst, record_name, &record).await?;
        done.partial += 1;
        if let Some(old) = theirs.filter(|t| t.object != record.object) {
            let _ = dst.delete(&old.object).await;
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::storage::fs::FsStorage;
    use crate::config::file_mode::FileMode;

    /// Archive segment `n` of timeline 1 in `s`: an object and its record written after it,
    /// as the stream leaves them (the bytes themselves are not WAL; only the checks read them).
    async fn stream_segment(s: &dyn Storage, _dir: &std::path::Path, n: u32) -> String {
        let seg = format!("00000001000000000000{n:04X}");
        let bytes = vec![n as u8 + 1; 4096];
        let mut d = crate::archive::compress::Digest::default();
        d.update(&bytes);
        let (sha256, size_bytes) = d.finish();
        let object = format!("wal/00000001/{seg}.zst");
        s.put_small(&object, bytes, Retain::No).await.unwrap();
        let record = wal::Record {
            file: seg.clone(),
            object,
            size_bytes,
            sha256,
            wal_bytes: size_bytes,
            pad_to: None,
            compression: "zstd".into(),
            partial: false,
            encryption: None,
        };
        let name = format!("wal/00000001/{seg}.json");
        catalog::write_wal_record(s, &name, &record).await.unwrap();
        name
    }

    #[tokio::test]
    async fn a_round_after_the_first_lists_only_the_new_wal_and_a_whole_round_heals() {
        let dir = tempfile::tempdir().unwrap();
        let src = FsStorage::new(dir.path().join("src"), FileMode::PRIVATE);
        let dst = FsStorage::new(dir.path().join("dst"), FileMode::PRIVATE);
        std::fs::create_dir_all(dir.path().join("dst")).unwrap();
        let mut records = Vec::new();
        for n in 2..=4 {
            records.push(stream_segment(&src, dir.path(), n).await);
        }
        let first = copy_wal_after(&src, &dst, None).await.unwrap();
        assert_eq!(first.files, 3);
        assert_eq!(first.through.as_deref(), Some(records[2].as_str()));
        // Lost from the copy behind the stream's back, below the watermark: a round from the
        // watermark does not look there (it lists only what is new) ...
        std::fs::remove_file(dir.path().join("dst").join(&records[0])).unwrap();
        records.push(stream_segment(&src, dir.path(), 5).await);
        let next = copy_wal_after(&src, &dst, first.through.as_deref())
            .await
            .unwrap();
        assert_eq!(next.files, 1, "only the new segment");
        assert_eq!(next.through.as_deref(), Some(records[3].as_str()));
        // ... and a round with nothing new copies nothing and keeps the watermark.
        let idle = copy_wal_after(&src, &dst, next.through.as_deref())
            .await
            .unwrap();
        assert_eq!((idle.files, idle.through), (0, next.through.clone()));
        // A whole round (the first, the one after a failure, one an hour) finds it.
        let whole = copy_wal_after(&src, &dst, None).await.unwrap();
        assert_eq!(whole.files, 1);
        assert!(dir.path().join("dst").join(&records[0]).exists());
        assert_eq!(whole.through.as_deref(), Some(records[3].as_str()));
    }
}
