//! Reading what a target holds: the complete backups (their manifests, newest first), one
//! backup by id or `latest`, and checking a stored object against its manifest (size and
//! SHA-256, streamed, constant memory; and the role passwords object beside it, when there is
//! one). Shared by `backups` and `restore`.
//!
//! Reads only; never deletes or writes.

use super::compress::Digest;
use super::manifest::{self, Manifest};
use super::storage::{self, Storage};
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
    let listing = manifest::group(&storage.list().await?);
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
