//! Directory storage (a local disk or an NFS mount). Objects are written under a temporary
//! name in their final directory (`.<name>.partial-<uuid>`), fsynced, renamed into place, and
//! the directory fsynced, so a crash leaves either the complete object or a temporary file
//! (which `backups prune` removes once it is a day old) — never a torn object under its name.
//!
//! Files and the folders it creates are private whatever the umask (`backup.file_mode`, default
//! files 0600 and folders 0700; see [`crate::private`]); a world-writable root gets a warning
//! before the first write. Never writes outside its root, never follows a name containing `..`.

use super::{ObjectInfo, Piece, Reader, Retain, Storage};
use crate::error::{Error, Result, ResultExt};
use crate::private::{self, FileMode};
use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::BoxFuture;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

pub struct FsStorage {
    root: PathBuf,
    mode: FileMode,
    /// The world-writable check runs once, before the first write.
    checked_root: std::sync::Once,
}

impl FsStorage {
    pub fn new(root: PathBuf, mode: FileMode) -> Self {
        FsStorage {
            root,
            mode,
            checked_root: std::sync::Once::new(),
        }
    }

    fn path(&self, name: &str) -> Result<PathBuf> {
        if name
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(Error::failed(format!("invalid object name {name:?}")));
        }
        Ok(self.root.join(name))
    }

    /// Write everything from `body` to a temporary file beside `name`, then rename it in place.
    async fn write_atomically(&self, name: &str, mut body: mpsc::Receiver<Piece>) -> Result<u64> {
        let path = self.path(name)?;
        let dir = path.parent().expect("joined under root").to_path_buf();
        self.checked_root.call_once(|| {
            private::warn_if_world_writable(&self.root, "the backup folder");
        });
        let mode = self.mode;
        let d = dir.clone();
        tokio::task::spawn_blocking(move || private::create_dir_all(&d, mode))
            .await
            .map_err(|e| Error::failed(format!("mkdir task: {e}")))?
            .with_ctx(|| format!("cannot create directory {}", dir.display()))?;
        let file_name = path.file_name().expect("non-empty name").to_string_lossy();
        let tmp = dir.join(format!(
            ".{file_name}.partial-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let result = async {
            let t = tmp.clone();
            let mut f = tokio::task::spawn_blocking(move || private::create(&t, mode))
                .await
                .map_err(|e| Error::failed(format!("create task: {e}")))?
                .map(tokio::fs::File::from_std)
                .with_ctx(|| format!("cannot create {}", tmp.display()))?;
            let mut n = 0u64;
            let mut complete = false;
            while let Some(piece) = body.recv().await {
                match piece {
                    Piece::Data(b) => {
                        f.write_all(&b)
                            .await
                            .with_ctx(|| format!("cannot write {}", tmp.display()))?;
                        n += b.len() as u64;
                    }
                    Piece::End => {
                        complete = true;
                        break;
                    }
                }
            }
            if !complete {
                return Err(Error::failed(
                    "the backup stream ended early; nothing was kept",
                ));
            }
            f.flush().await?;
            f.sync_all()
                .await
                .with_ctx(|| format!("cannot fsync {}", tmp.display()))?;
            drop(f);
            tokio::fs::rename(&tmp, &path)
                .await
                .with_ctx(|| format!("cannot rename into {}", path.display()))?;
            sync_dir(&dir).await?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent).await?;
            }
            Ok(n)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
            let _ = tokio::fs::remove_dir(&dir).await; // only if now empty
        }
        result
    }
}

async fn sync_dir(dir: &Path) -> Result<()> {
    let d = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(&d)?.sync_all())
        .await
        .map_err(|e| Error::failed(format!("fsync task: {e}")))?
        .with_ctx(|| format!("cannot fsync directory {}", dir.display()))
}

fn walk(root: &Path, rel: &str, out: &mut Vec<ObjectInfo>) -> std::io::Result<()> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel_name = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let meta = entry.metadata()?;
        if meta.is_dir() {
            walk(root, &rel_name, out)?;
        } else if meta.is_file() {
            out.push(ObjectInfo {
                name: rel_name,
                size: meta.len(),
                modified: meta
                    .modified()
                    .map(DateTime::<Utc>::from)
                    .unwrap_or_default(),
            });
        }
    }
    Ok(())
}

impl Storage for FsStorage {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn put_stream<'a>(
        &'a self,
        name: &'a str,
        body: mpsc::Receiver<Piece>,
        _retain: Retain,
    ) -> BoxFuture<'a, Result<u64>> {
        self.write_atomically(name, body).boxed()
    }

    fn put_small<'a>(
        &'a self,
        name: &'a str,
        bytes: Vec<u8>,
        _retain: Retain,
    ) -> BoxFuture<'a, Result<()>> {
        async move {
            let (tx, rx) = mpsc::channel(2);
            tx.try_send(Piece::Data(bytes.into())).expect("room");
            tx.try_send(Piece::End).expect("room");
            self.write_atomically(name, rx).await.map(|_| ())
        }
        .boxed()
    }

    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Reader>>> {
        async move {
            let path = self.path(name)?;
            match tokio::fs::File::open(&path).await {
                Ok(f) => Ok(Some(Box::pin(f) as Reader)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::from(e).context(format!("cannot open {}", path.display()))),
            }
        }
        .boxed()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<ObjectInfo>>> {
        async move {
            let root = self.root.clone();
            // A directory that is not there is not an empty one: never "no backups".
            match tokio::fs::metadata(&root).await {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(super::missing(format!(
                        "the backup directory {} does not exist (a mistyped path, or a share \
                         not mounted?)",
                        root.display()
                    )));
                }
                _ => {}
            }
            let mut out = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                walk(&root, "", &mut out).map(|_| out)
            })
            .await
            .map_err(|e| Error::failed(format!("listing task: {e}")))?
            .with_ctx(|| format!("cannot list {}", self.root.display()))?;
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        }
        .boxed()
    }

    fn list_after<'a>(
        &'a self,
        prefix: &'a str,
        after: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>>> {
        async move {
            // A directory that is not there is not an empty archive (see `list`).
            if let Err(e) = tokio::fs::metadata(&self.root).await {
                if e.kind() == std::io::ErrorKind::NotFound {
                    return Err(super::missing(format!(
                        "the backup directory {} does not exist (a mistyped path, or a share \
                         not mounted?)",
                        self.root.display()
                    )));
                }
            }
            // Only the prefix's folder is walked (the WAL of one timeline, not every backup).
            let folder = prefix.trim_end_matches('/').to_string();
            self.path(&folder)?;
            let root = self.root.clone();
            let walked = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                match walk(&root, &folder, &mut out) {
                    Ok(()) => Ok(out),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                    Err(e) => Err(e),
                }
            })
            .await
            .map_err(|e| Error::failed(format!("listing task: {e}")))?
            .with_ctx(|| format!("cannot list {}", self.root.display()))?;
            let mut names: Vec<String> = walked
                .into_iter()
                .map(|o| o.name)
                .filter(|n| n.starts_with(prefix) && n.as_str() > after)
                .collect();
            names.sort();
            names.truncate(limit);
            Ok(names)
        }
        .boxed()
    }

    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>> {
        async move {
            let path = self.path(name)?;
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::from(e).context(format!("cannot delete {}", path.display())));
                }
            }
            // Remove the backup's directory once it is empty.
            if let Some(dir) = path.parent() {
                if dir != self.root {
                    let _ = tokio::fs::remove_dir(dir).await;
                }
            }
            Ok(())
        }
        .boxed()
    }

    fn abort_stale_uploads(&self, _before: DateTime<Utc>) -> BoxFuture<'_, Result<Vec<String>>> {
        async { Ok(Vec::new()) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commit_and_abort() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::new(dir.path().join("root"), FileMode::PRIVATE);
        let (tx, rx) = mpsc::channel(4);
        tx.send(Piece::Data("abc".into())).await.unwrap();
        tx.send(Piece::End).await.unwrap();
        assert_eq!(s.put_stream("b1/obj", rx, Retain::No).await.unwrap(), 3);
        // An aborted stream leaves nothing, not even its directory.
        let (tx, rx) = mpsc::channel(4);
        tx.send(Piece::Data("partial".into())).await.unwrap();
        drop(tx);
        assert!(s.put_stream("b2/obj", rx, Retain::No).await.is_err());
        let names: Vec<String> = s
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(names, ["b1/obj"]);
        assert!(!dir.path().join("root/b2").exists());
        assert_eq!(
            super::super::get_small(&s, "b1/obj")
                .await
                .unwrap()
                .unwrap(),
            b"abc"
        );
        assert!(s.get("nope/obj").await.unwrap().is_none());
        s.delete("b1/obj").await.unwrap();
        s.delete("b1/obj").await.unwrap();
        assert!(s.list().await.unwrap().is_empty());
        assert!(s.path("../x").is_err());
    }

    #[tokio::test]
    async fn the_temporary_file_is_private_while_it_is_written() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let s = std::sync::Arc::new(FsStorage::new(
            root.clone(),
            FileMode::parse("0640").unwrap(),
        ));
        let (tx, rx) = mpsc::channel(4);
        let writer = {
            let s = s.clone();
            tokio::spawn(async move { s.put_stream("b1/dump.gz", rx, Retain::No).await })
        };
        tx.send(Piece::Data("secret rows".into())).await.unwrap();
        let partial = loop {
            let found = std::fs::read_dir(root.join("b1")).ok().and_then(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .find(|p| p.to_string_lossy().contains(".partial-"))
            });
            if let Some(p) = found {
                break p;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        };
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&partial), 0o640);
        assert_eq!(mode(&root), 0o750);
        assert_eq!(mode(&root.join("b1")), 0o750);
        tx.send(Piece::End).await.unwrap();
        assert_eq!(writer.await.unwrap().unwrap(), 11);
        assert_eq!(mode(&root.join("b1/dump.gz")), 0o640);
    }

    #[tokio::test]
    async fn a_missing_root_is_an_error_an_empty_one_lists_empty() {
        let s = FsStorage::new("/nonexistent/kasm-db-test".into(), FileMode::PRIVATE);
        let e = s.list().await.unwrap_err();
        assert!(super::super::is_missing(&e), "{e}");
        assert_eq!(e.kind(), crate::error::Kind::Temporary);
        assert!(e.to_string().contains("/nonexistent/kasm-db-test"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::new(dir.path().to_path_buf(), FileMode::PRIVATE);
        assert!(s.list().await.unwrap().is_empty());
    }
}
