//! The streamed upload of an Azure object: the dump's pieces are cut into blocks (growing from
//! 8 MiB, [`request::block_size`]), staged a few at a time (Put Block), and committed in order
//! by one Put Block List at [`Piece::End`]. A stream that closes early, or a failed block,
//! commits nothing: the staged blocks stay uncommitted and unlisted until Azure discards them.
//!
//! Never logs or returns a request URI or a credential.

use super::{AzureStorage, SMALL_TIMEOUT, request};
use crate::archive::storage::Piece;
use crate::error::{Error, Result};
use bytes::BytesMut;
use request::Op;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

impl AzureStorage {
    /// Stage the stream's blocks, a few at a time; commit them in order at `Piece::End`.
    pub(super) async fn blocks(&self, name: &str, mut body: mpsc::Receiver<Piece>) -> Result<u64> {
        let blob = self.blob(name);
        let mut inflight: JoinSet<(u32, Result<String>)> = JoinSet::new();
        let mut ids: Vec<(u32, String)> = Vec::new();
        let staged = async {
            let mut buf = BytesMut::with_capacity(request::MIN_BLOCK_BYTES);
            let mut n: u32 = 1;
            let mut total = 0u64;
            loop {
                while let Some(r) = inflight.try_join_next() {
                    ids.push(joined(r)?);
                }
                let last = match body.recv().await {
                    Some(Piece::Data(b)) => {
                        total += b.len() as u64;
                        buf.extend_from_slice(&b);
                        false
                    }
                    Some(Piece::End) => true,
                    None => {
                        return Err(Error::failed(format!(
                            "the backup stream ended early; the blocks staged for {} stay \
                             uncommitted (never listed) until Azure discards them within 7 days",
                            self.url(&blob)
                        )));
                    }
                };
                while buf.len() >= request::block_size(n) || (last && !buf.is_empty()) {
                    if n > request::MAX_BLOCKS {
                        return Err(Error::failed(format!(
                            "the dump needs more than {} blocks",
                            request::MAX_BLOCKS
                        )));
                    }
                    let chunk = buf.split_to(request::block_size(n).min(buf.len())).freeze();
                    while inflight.len() >= request::blocks_in_flight(request::block_size(n)) {
                        if let Some(r) = inflight.join_next().await {
                            ids.push(joined(r)?);
                        }
                    }
                    let inner = self.inner.clone();
                    let b = blob.clone();
                    inflight.spawn(async move { (n, inner.put_block(b, n, chunk).await) });
                    n += 1;
                }
                if last {
                    break;
                }
            }
            while let Some(r) = inflight.join_next().await {
                ids.push(joined(r)?);
            }
            Ok(total)
        }
        .await;
        let total = match staged {
            Ok(t) => t,
            Err(e) => {
                let sent = ids.len() + inflight.len();
                inflight.abort_all();
                while inflight.join_next().await.is_some() {}
                if sent > 0 {
                    tracing::warn!(
                        object = %self.url(&blob),
                        blocks_sent = sent,
                        "the upload stopped: its staged blocks stay uncommitted (never listed, \
                         not a backup) until Azure discards them within 7 days"
                    );
                }
                return Err(e);
            }
        };
        ids.sort_by_key(|(n, _)| *n);
        let ids: Vec<String> = ids.into_iter().map(|(_, id)| id).collect();
        // Committing the same list again is harmless, so a lost answer is simply retried.
        let op = Op::PutBlockList {
            blob: &blob,
            ids: &ids,
            content_type: "application/octet-stream",
        };
        self.inner.call(&op, SMALL_TIMEOUT).await.map_err(|e| {
            self.inner.error(
                &format!("cannot commit the blocks of {}", self.url(&blob)),
                e,
            )
        })?;
        Ok(total)
    }
}

fn joined(
    r: std::result::Result<(u32, Result<String>), tokio::task::JoinError>,
) -> Result<(u32, String)> {
    let (n, id) = r.map_err(|e| Error::failed(format!("upload task: {e}")))?;
    Ok((n, id?))
}
