//! Reading what a target holds: the complete backups (their manifests, newest first), one
//! backup by id or `latest`, and checking a stored object against its manifest (size and
//! SHA-256, streamed, constant memory; and the role passwords object beside it, when there is
//! one), and the WAL chain after a physical backup. Given the key, encrypted objects are also
//! decrypted on the way (authenticated, the plaintext discarded). Shared by `backups`,
//! `verify` and `restore`.
//!
//! Reads only; never deletes or writes.

use super::compress::Digest;
use super::crypt::{self, Key};
use super::manifest::{self, BackupKind, Manifest};
use super::storage::{self, Storage};
use super::wal;
use crate::error::{Error, Result};
use serde::Serialize;
use tokio::io::AsyncReadExt;

/// What a target holds: its complete backups and the backups whose manifest is there but
/// cannot be read.
#[derive(Debug, Default)]
pub struct Scan {
    /// Newest first.
    pub complete: Vec<Manifest>,
    /// (id, why) of each manifest that could not be parsed or names another backup.
    pub unreadable: Vec<(String, String)>,
}

/// Read every manifest of the target. One that cannot be parsed is in `unreadable`, with a
/// warning (neither listed nor pruned; [`find`] does not take it for absent).
pub async fn scan(storage: &dyn Storage) -> Result<Scan> {
    scan_listed(storage, &storage.list().await?).await
}

/// [`scan`] of a listing the caller already has (one listing for a whole job: on a target
/// holding months of WAL, each listing is many requests).
pub async fn scan_listed(storage: &dyn Storage, objects: &[storage::ObjectInfo]) -> Result<Scan> {
    let listing = manifest::group(objects);
    let mut out = Scan::default();
    for id in listing.with_manifest {
        let name = manifest::manifest_name(&id);
        let Some(bytes) = storage::get_small(storage, &name).await? else {
            continue; // deleted meanwhile
        };
        match serde_json::from_slice::<Manifest>(&bytes) {
            Ok(m) if m.id == id => out.complete.push(m),
            Ok(m) => {
                tracing::warn!(id, manifest_id = %m.id, "manifest names another backup; skipped");
                out.unreadable
                    .push((id, format!("it names another backup, {}", m.id)));
            }
            Err(e) => {
                tracing::warn!(id, error = %e, "unreadable manifest; skipped");
                out.unreadable.push((id, e.to_string()));
            }
        }
    }
    out.complete
        .sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.id.cmp(&a.id)));
    Ok(out)
}

/// The complete backups of a target, newest first. A manifest that cannot be read is skipped
/// with a warning (it is neither listed nor pruned).
pub async fn complete(storage: &dyn Storage) -> Result<Vec<Manifest>> {
    Ok(scan(storage).await?.complete)
}

/// The cause of [`find`]'s error when the target (which exists and was listed) holds no such
/// complete backup; recognised with [`is_no_such_backup`]. A target that could not be listed
/// fails otherwise ([`storage::is_missing`] when it does not exist).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NoSuchBackup(pub String);

/// Whether `e` is [`find`]'s "no such backup" ([`NoSuchBackup`]).
pub fn is_no_such_backup(e: &Error) -> bool {
    e.caused_by::<NoSuchBackup>()
}

/// The backup `id`, or the newest for `latest`. A backup whose manifest cannot be read is
/// never taken for absent: asked for by id, or newer (by id, which starts with its UTC time)
/// than the newest readable one for `latest`, it is an error naming it.
pub async fn find(storage: &dyn Storage, id: &str) -> Result<Manifest> {
    let Scan {
        complete: all,
        unreadable,
    } = scan(storage).await?;
    let damaged = if id == "latest" {
        let newest = all.first().map(|m| m.id.as_str());
        unreadable
            .iter()
            .filter(|(u, _)| newest.is_none_or(|n| u.as_str() > n))
            .max_by(|a, b| a.0.cmp(&b.0))
    } else {
        unreadable.iter().find(|(u, _)| u == id)
    };
    if let Some((u, why)) = damaged {
        return Err(Error::failed(format!(
            "the manifest of backup {u} in {} cannot be read ({why}){}; remove or repair that \
             backup, or name another with its id",
            storage.describe(),
            if id == "latest" {
                ": it is the newest, and `latest` is never taken to mean an older one"
            } else {
                ""
            }
        )));
    }
    let found = if id == "latest" {
        all.into_iter().next()
    } else {
        all.into_iter().find(|m| m.id == id)
    };
    found.ok_or_else(|| {
        no_such_backup(if id == "latest" {
            format!("there is no complete backup in {}", storage.describe())
        } else {
            format!(
                "there is no complete backup {id:?} in {} (see `kasm-db backups list`)",
                storage.describe()
            )
        })
    })
}

fn no_such_backup(msg: String) -> Error {
    Error::with_cause(crate::error::Kind::Failed, NoSuchBackup(msg))
}

/// The backup `id` of `kind`, or the newest of that kind for `latest`. A backup of the other
/// kind named by its id is refused with what restores it; a manifest that cannot be read is
/// never taken for absent (as in [`find`]: for `latest`, one newer than the newest readable
/// backup of `kind` is an error naming it).
pub async fn find_of(storage: &dyn Storage, id: &str, kind: BackupKind) -> Result<Manifest> {
    find_of_in(storage, None, id, kind).await
}

/// [`find_of`], with the target's listing when the caller already has it (`latest` needs one).
pub async fn find_of_in(
    storage: &dyn Storage,
    listing: Option<&[storage::ObjectInfo]>,
    id: &str,
    kind: BackupKind,
) -> Result<Manifest> {
    if id != "latest" {
        let m = find(storage, id).await?;
        if m.kind != kind {
            return Err(Error::usage(match m.kind {
                BackupKind::Physical => format!(
                    "backup {id} is a physical base backup of the whole cluster: restore it with \
                     `kasm-db restore --physical --data-dir DIR --backup {id}`"
                ),
                BackupKind::Logical => format!(
                    "backup {id} is a logical backup (pg_dump of one database): restore it \
                     without --physical"
                ),
            }));
        }
        return Ok(m);
    }
    let Scan {
        complete: all,
        unreadable,
    } = match listing {
        Some(objects) => scan_listed(storage, objects).await?,
        None => scan(storage).await?,
    };
    let newest = all.into_iter().find(|m| m.kind == kind);
    let damaged = unreadable
        .iter()
        .filter(|(u, _)| newest.as_ref().is_none_or(|n| u.as_str() > n.id.as_str()))
        .max_by(|a, b| a.0.cmp(&b.0));
    if let Some((u, why)) = damaged {
        return Err(Error::failed(format!(
            "the manifest of backup {u} in {} cannot be read ({why}): it is newer than the \
             newest {} backup, and `latest` is never taken to mean an older one; remove or \
             repair that backup, or name another with its id",
            storage.describe(),
            kind.name()
        )));
    }
    newest.ok_or_else(|| {
        no_such_backup(format!(
            "there is no complete backup of kind {} in {}{}",
            kind.name(),
            storage.describe(),
            match kind {
                BackupKind::Physical => " (take one with `kasm-db backup --physical`)",
                BackupKind::Logical => "",
            }
        ))
    })
}

/// Result of checking an object against its manifest.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    pub id: String,
    pub ok: bool,
    pub object: String,
    pub expected_size_bytes: u64,
    pub expected_sha256: String,
    /// What was found (absent when the object is missing).
    pub size_bytes: Option<u64>,
    pub sha256: Option<String>,
    /// Why not ok, for people.
    pub problem: Option<String>,
}

/// Re-read the object and compare its size and SHA-256 with the manifest. With `key` (the
/// backup's own, checked by the caller against the manifest's key id) an encrypted object is
/// also decrypted on the way, every chunk authenticated, the plaintext discarded.
pub async fn check(storage: &dyn Storage, m: &Manifest, key: Option<&Key>) -> Result<Check> {
    let mut c = Check {
        id: m.id.clone(),
        ok: false,
        object: m.object.clone(),
        expected_size_bytes: m.size_bytes,
        expected_sha256: m.sha256.clone(),
        size_bytes: None,
        sha256: None,
        problem: None,
    };
    let Some(mut r) = storage.get(&m.object).await? else {
        c.problem = Some(format!("object {} is missing", m.object));
        return Ok(c);
    };
    let (sha, size, opened) = read_checked(&mut r, key.filter(|_| m.encryption.is_some())).await?;
    c.ok = size == m.size_bytes && sha == m.sha256;
    if size != m.size_bytes {
        c.problem = Some(format!(
            "size is {size} bytes, the manifest says {}",
            m.size_bytes
        ));
    } else if sha != m.sha256 {
        c.problem = Some("SHA-256 differs from the manifest: the object is corrupt".into());
    } else if let Err(e) = opened {
        c.ok = false;
        c.problem = Some(format!("the object does not decrypt with its key: {e}"));
    }
    c.size_bytes = Some(size);
    c.sha256 = Some(sha);
    // The role passwords object, when the backup carries one, is part of the backup too.
    if let (true, Some(p)) = (c.ok, m.passwords()) {
        let bytes = storage::get_small(storage, &p.object).await?;
        if let Some(problem) = p.problem(bytes.as_deref()) {
            c.ok = false;
            c.problem = Some(problem);
        }
    }
    Ok(c)
}

/// What the WAL archive holds after a physical backup, checked (`backups verify`): every
/// segment from the backup's last one to the newest stored, each whole and matching its record.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WalChain {
    /// Segments checked (completed ones, and the newest's partial copy).
    pub segments: usize,
    /// The newest segment stored on the backup's timeline.
    pub end: Option<String>,
    /// The first hole or corrupt segment, for people; `None` when the chain is whole.
    pub problem: Option<String>,
}

/// Read `r` to its end: (SHA-256, size) of the bytes read, and with `key` whether they
/// decrypt whole (each chunk authenticated; the plaintext is discarded).
async fn read_checked(
    r: &mut (impl tokio::io::AsyncRead + Unpin),
    key: Option<&Key>,
) -> Result<(String, u64, Result<()>)> {
    let mut digest = Digest::default();
    let mut unsealer = key.map(crypt::Unsealer::new);
    let mut opened = Ok(());
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        digest.update(&buf[..n]);
        if let Some(u) = &mut unsealer {
            if let Err(e) = u.feed(&buf[..n], &mut std::io::sink()) {
                opened = Err(e);
                unsealer = None;
            }
        }
    }
    if let Some(u) = unsealer {
        opened = u.finish().map(|_| ());
    }
    let (sha, size) = digest.finish();
    Ok((sha, size, opened))
}

/// The WAL record `name` (`wal/<timeline>/<file>.json` or `.partial.json`) from `storage`:
/// `None` when it is not there (not stored yet, or pruned or replaced meanwhile). The one reader
/// of WAL records, for the stream, `wal fetch`, the copies and `backups verify`.
pub async fn read_wal_record(storage: &dyn Storage, name: &str) -> Result<Option<wal::Record>> {
    let Some(bytes) = storage::get_small(storage, name).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::failed(format!(
            "the WAL record {name} in {} is unreadable: {e}",
            storage.describe()
        ))
    })
}

/// How a stored WAL file (its object and its record) is retained (`s3.object_lock_days`): a
/// completed segment or history file as a backup's data is; the partial copy of the segment
/// being written never (a new one every `backup.wal_flush` replaces it, and a retained one
/// could never be removed).
pub fn wal_retention(partial: bool) -> storage::Retain {
    if partial {
        storage::Retain::No
    } else {
        storage::Retain::WithBackup
    }
}

/// Write the WAL record `name`, after the object it names is stored: what makes a stored WAL
/// file exist. Retained by [`wal_retention`].
pub async fn write_wal_record(
    storage: &dyn Storage,
    name: &str,
    record: &wal::Record,
) -> Result<()> {
    let body = serde_json::to_vec_pretty(record)
        .map_err(|e| Error::failed(format!("WAL record encoding: {e}")))?;
    storage
        .put_small(name, body, wal_retention(record.partial))
        .await
}

/// Check the chain of archived WAL after the physical backup `m` (nothing to check for a
/// logical one: `None`). Reads every segment after the backup's last: constant memory per
/// segment. A segment stored encrypted needs the key of `key_file` (checked against its
/// record's key id: none or another is refused, [`crypt::KeyProblem`]) and is decrypted on the
/// way, every chunk authenticated.
pub async fn check_wal_chain(
    storage: &dyn Storage,
    m: &Manifest,
    key_file: Option<&std::path::Path>,
) -> Result<Option<WalChain>> {
    use super::wal::Stored;
    let mut key: Option<Key> = None;
    let Some(p) = &m.physical else {
        return Ok(None);
    };
    let tli = format!("{:08X}", p.timeline);
    let names: Vec<String> = storage.list().await?.into_iter().map(|o| o.name).collect();
    let stored = Stored::from_listing(&tli, names.iter().map(String::as_str));
    let mut chain = WalChain {
        segments: 0,
        end: stored.newest().map(str::to_string),
        problem: None,
    };
    let holes = stored.holes_after(&p.stop_segment, p.wal_segment_bytes);
    if let Some(first) = holes.first() {
        chain.problem = Some(format!(
            "the WAL archive has a hole after backup {}: segment {first} is missing{} (recovery \
             stops there)",
            m.id,
            if holes.len() > 1 {
                format!(", and {} more", holes.len() - 1)
            } else {
                String::new()
            }
        ));
        return Ok(Some(chain));
    }
    let newest = chain.end.clone();
    let after: Vec<(String, bool)> = stored
        .full
        .iter()
        .filter(|s| s.as_str() > p.stop_segment.as_str())
        .map(|s| (s.clone(), false))
        .chain(
            stored
                .partial
                .iter()
                .filter(|s| {
                    Some(s.as_str()) == newest.as_deref() && stored.full.binary_search(s).is_err()
                })
                .map(|s| (s.clone(), true)),
        )
        .collect();
    for (seg, partial) in after {
        let name = wal::record_name(&seg, partial).expect("a segment name");
        let Some(record) = read_wal_record(storage, &name).await? else {
            continue; // replaced meanwhile (a partial copy completed)
        };
        let Some(mut r) = storage.get(&record.object).await? else {
            chain.problem = Some(format!(
                "WAL segment {seg}: its object {} is missing",
                record.object
            ));
            return Ok(Some(chain));
        };
        if let Some(sealed) = &record.encryption {
            if key.as_ref().is_none_or(|k| k.id() != sealed.key_id) {
                key = Some(crypt::key_for(&record.what(), &sealed.key_id, key_file)?);
            }
        }
        let opener = key.as_ref().filter(|_| record.encryption.is_some());
        let (sha, size, opened) = read_checked(&mut r, opener).await?;
        if sha != record.sha256 || size != record.size_bytes {
            chain.problem = Some(format!(
                "WAL segment {seg} is corrupt: its object's SHA-256 or size differs from its record"
            ));
            return Ok(Some(chain));
        }
        if let Err(e) = opened {
            chain.problem = Some(format!(
                "WAL segment {seg} does not decrypt with its key: {e}"
            ));
            return Ok(Some(chain));
        }
        chain.segments += 1;
    }
    Ok(Some(chain))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::storage::Retain;
    use crate::archive::storage::fs::FsStorage;
    use crate::private::FileMode;

    #[tokio::test]
    async fn a_damaged_manifest_is_never_taken_for_absent() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::new(dir.path().to_path_buf(), FileMode::PRIVATE);
        let damaged = "20261124T040000Z-bbbbbb";
        s.put_small(
            &manifest::manifest_name(damaged),
            b"{\"id\": tr".to_vec(),
            Retain::WithBackup,
        )
        .await
        .unwrap();
        let scan = scan(&s).await.unwrap();
        assert!(scan.complete.is_empty());
        assert_eq!(scan.unreadable.len(), 1);
        for id in ["latest", damaged] {
            let e = find(&s, id).await.unwrap_err();
            assert!(!is_no_such_backup(&e), "{e}");
            assert!(e.to_string().contains(damaged), "{e}");
        }
        let e = find(&s, "20261124T030000Z-aaaaaa").await.unwrap_err();
        assert!(is_no_such_backup(&e), "{e}");
    }
}
