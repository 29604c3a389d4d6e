//! Reading what a target holds: the complete backups (their manifests, newest first), one
//! backup by id or `latest`, and checking a stored object against its manifest (size and
//! SHA-256, streamed, constant memory; and the role passwords object beside it, when there is
//! one). Shared by `backups` and `restore`.
//!
//! Reads only; never deletes or writes.

use super::compress::Digest;
use super::manifest::{self, BackupKind, Manifest};
use super::storage::{self, Storage};
use crate::error::{Error, Result};
use serde::Serialize;
use tokio::io::AsyncReadExt;

/// The complete backups of a target, newest first. A manifest that cannot be read is skipped
/// with a warning (it is neither listed nor pruned).
pub async fn complete(storage: &dyn Storage) -> Result<Vec<Manifest>> {
    let listing = manifest::group(&storage.list().await?);
    let mut out = Vec::new();
    for id in listing.with_manifest {
        let name = manifest::manifest_name(&id);
        let Some(bytes) = storage::get_small(storage, &name).await? else {
            continue; // deleted meanwhile
        };
        match serde_json::from_slice::<Manifest>(&bytes) {
            Ok(m) if m.id == id => out.push(m),
            Ok(m) => {
                tracing::warn!(id, manifest_id = %m.id, "manifest names another backup; skipped")
            }
            Err(e) => tracing::warn!(id, error = %e, "unreadable manifest; skipped"),
        }
    }
    out.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.id.cmp(&a.id)));
    Ok(out)
}

/// The backup `id`, or the newest for `latest`.
pub async fn find(storage: &dyn Storage, id: &str) -> Result<Manifest> {
    let all = complete(storage).await?;
    let found = if id == "latest" {
        all.into_iter().next()
    } else {
        all.into_iter().find(|m| m.id == id)
    };
    found.ok_or_else(|| {
        Error::failed(if id == "latest" {
            format!("there is no complete backup in {}", storage.describe())
        } else {
            format!(
                "there is no complete backup {id:?} in {} (see `kasm-db backups list`)",
                storage.describe()
            )
        })
    })
}

/// The backup `id` of `kind`, or the newest of that kind for `latest`. A backup of the other
/// kind named by its id is refused with what restores it.
pub async fn find_of(storage: &dyn Storage, id: &str, kind: BackupKind) -> Result<Manifest> {
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
    complete(storage)
        .await?
        .into_iter()
        .find(|m| m.kind == kind)
        .ok_or_else(|| {
            Error::failed(format!(
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

/// Re-read the object and compare its size and SHA-256 with the manifest.
pub async fn check(storage: &dyn Storage, m: &Manifest) -> Result<Check> {
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
    let mut digest = Digest::default();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        digest.update(&buf[..n]);
    }
    let (sha, size) = digest.finish();
    c.ok = size == m.size_bytes && sha == m.sha256;
    if size != m.size_bytes {
        c.problem = Some(format!(
            "size is {size} bytes, the manifest says {}",
            m.size_bytes
        ));
    } else if sha != m.sha256 {
        c.problem = Some("SHA-256 differs from the manifest: the object is corrupt".into());
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

/// Check the chain of archived WAL after the physical backup `m` (nothing to check for a
/// logical one: `None`). Reads every segment after the backup's last: constant memory per
/// segment.
pub async fn check_wal_chain(storage: &dyn Storage, m: &Manifest) -> Result<Option<WalChain>> {
    use super::wal::{self, Record, Stored};
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
        let Some(bytes) = storage::get_small(storage, &name).await? else {
            continue; // replaced meanwhile (a partial copy completed)
        };
        let record: Record = serde_json::from_slice(&bytes)
            .map_err(|e| Error::failed(format!("the WAL record {name} is unreadable: {e}")))?;
        let Some(mut r) = storage.get(&record.object).await? else {
            chain.problem = Some(format!(
                "WAL segment {seg}: its object {} is missing",
                record.object
            ));
            return Ok(Some(chain));
        };
        let mut digest = Digest::default();
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = r.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            digest.update(&buf[..n]);
        }
        let (sha, size) = digest.finish();
        if sha != record.sha256 || size != record.size_bytes {
            chain.problem = Some(format!(
                "WAL segment {seg} is corrupt: its object's SHA-256 or size differs from its record"
            ));
            return Ok(Some(chain));
        }
        chain.segments += 1;
    }
    Ok(Some(chain))
}
