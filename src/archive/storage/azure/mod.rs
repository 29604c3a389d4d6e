//! Azure Blob Storage (`az://container/prefix`) behind the [`Storage`] trait, over the Blob
//! service's REST API: [`account`] (which account, endpoint and authorisation the standard Azure
//! variables name), [`request`] (the calls as signed requests; pure), [`xml`] (the answers;
//! pure), [`conn`] (the connections), `upload` (the streamed block upload) and, here, the
//! service.
//!
//! A streamed object is a block blob built as the dump arrives: blocks are staged (Put Block)
//! a few at a time, growing from 8 MiB so a large dump stays under Azure's 50,000 blocks, and
//! committed in order by one Put Block List when [`Piece::End`] arrives. Until then nothing is
//! listed under the name (uncommitted blocks are invisible to List Blobs and Get Blob), so a
//! backup exists only once its manifest, written last, does. A stream that ends without
//! `Piece::End`, or any failure, leaves the staged blocks uncommitted: Azure has no call to
//! discard them and garbage-collects them itself after seven days, which is why
//! [`Storage::abort_stale_uploads`] has nothing to do here. Transient failures (connection
//! lost, 408/429/500/503) are retried a few times; every call is idempotent. The container must
//! exist (kasm-db does not create it, as it does not create buckets).
//!
//! Never puts a key, a SAS token or a request URI (which carries the SAS) into an error, a log
//! or `describe`.

pub mod account;
pub mod request;
mod upload;
pub mod xml;

use super::{ObjectInfo, Piece, Reader, Retain, Storage};
use crate::config::azure::AzureEnv;
use crate::config::proxy::ProxyEnv;
use crate::error::{Error, Result};
use crate::net::{Answer, Failure, Origin};
use account::Account;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::BoxFuture;
use request::Op;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Transient failures (a 5xx, 408, 429, a lost connection) are tried 4 times, 500 ms
/// apart and doubling: the one retry policy.
const RETRY: crate::retry::Policy =
    crate::retry::Policy::new(4, Duration::from_millis(500), Duration::from_secs(4));
/// The wait for the answer of a call without a large body.
const SMALL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long opening a connection (TCP, a proxy's tunnel, TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

pub struct AzureStorage {
    inner: Arc<Inner>,
    prefix: String,
}

struct Inner {
    account: Account,
    container: String,
    http: Origin,
}

/// What a failed call came to.
enum CallError {
    /// The service answered with an error status.
    Status(Answer),
    /// No (whole) answer.
    Failed(Failure),
    /// The request could not be formed (nothing was sent).
    Invalid(Error),
}

fn transient_status(s: u16) -> bool {
    matches!(s, 408 | 429 | 500 | 502 | 503 | 504)
}

impl Inner {
    fn target(&self) -> String {
        format!("az://{}", self.container)
    }

    /// One call, retried while the failure is transient.
    async fn call(&self, op: &Op<'_>, timeout: Duration) -> std::result::Result<Answer, CallError> {
        let mut attempt = 1;
        loop {
            let req = match request::build(&self.account, &self.container, op, Utc::now()) {
                Ok(r) => r,
                Err(e) => return Err(CallError::Invalid(e)),
            };
            let (retry, err) = match self.http.call(req, timeout).await {
                Ok(a) if a.status.is_success() => return Ok(a),
                Ok(a) => (transient_status(a.status.as_u16()), CallError::Status(a)),
                Err(f) => (true, CallError::Failed(f)),
            };
            if !retry || !RETRY.again_after(attempt) {
                return Err(err);
            }
            tokio::time::sleep(RETRY.delay(attempt, 0.0)).await;
            attempt += 1;
        }
    }

    /// The error for a failed call on `what`: the service's code and first message line, a hint
    /// on authorisation failures; exit 75 for what retrying later may heal.
    fn error(&self, what: &str, e: CallError) -> Error {
        match e {
            CallError::Failed(f) => Error::temporary(format!("{what}: {f}")),
            CallError::Invalid(e) => e.context(what.to_string()),
            CallError::Status(a) => {
                let header = a
                    .headers
                    .get("x-ms-error-code")
                    .and_then(|v| v.to_str().ok());
                let (code, message) = xml::error_of(header, &a.body);
                let status = a.status.as_u16();
                let mut text = format!("{what}: Azure answered {status}");
                if let Some(c) = &code {
                    text.push_str(&format!(" {c}"));
                }
                if let Some(m) = &message {
                    text.push_str(&format!(": {m}"));
                }
                if status == 403 {
                    text.push_str(
                        " (check the account key or the SAS token: its permissions, services \
                         and expiry; the key itself is never shown)",
                    );
                } else if code.as_deref() == Some("ContainerNotFound") {
                    text.push_str(&format!(
                        " (create the container {} first; kasm-db does not create it)",
                        self.container
                    ));
                }
                if code.as_deref() == Some("ContainerNotFound") {
                    // The target does not exist: never "no backups".
                    crate::archive::storage::missing(text)
                } else if transient_status(status) {
                    Error::temporary(text)
                } else {
                    Error::failed(text)
                }
            }
        }
    }

    fn code_of(a: &Answer) -> Option<String> {
        let header = a
            .headers
            .get("x-ms-error-code")
            .and_then(|v| v.to_str().ok());
        xml::error_of(header, &a.body).0
    }

    async fn put_block(self: Arc<Self>, blob: String, n: u32, body: Bytes) -> Result<String> {
        let id = request::block_id(n);
        // A generous wait: at least 256 KiB/s for the block.
        let timeout = SMALL_TIMEOUT + Duration::from_secs(body.len() as u64 / (256 << 10));
        let op = Op::PutBlock {
            blob: &blob,
            id: &id,
            body,
        };
        self.call(&op, timeout).await.map_err(|e| {
            self.error(
                &format!("cannot stage block {n} of {}/{blob}", self.target()),
                e,
            )
        })?;
        Ok(id)
    }

    /// List the blobs under `prefix` (committed only, unless `uncommitted`).
    async fn list(&self, prefix: &str, uncommitted: bool) -> Result<Vec<xml::Listed>> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let op = Op::ListBlobs {
                prefix,
                marker: marker.as_deref(),
                uncommitted,
            };
            let a = self
                .call(&op, SMALL_TIMEOUT)
                .await
                .map_err(|e| self.error(&format!("cannot list {}", self.target()), e))?;
            let page = xml::parse_list(&a.body)?;
            out.extend(page.blobs);
            match page.next_marker {
                Some(m) => marker = Some(m),
                None => break,
            }
        }
        Ok(out)
    }
}

impl AzureStorage {
    /// The storage of `container`/`prefix` in the account the Azure variables name. Makes no
    /// request; missing or malformed credentials are a usage error.
    pub fn open(
        container: String,
        prefix: String,
        env: &AzureEnv,
        proxy: &ProxyEnv,
    ) -> Result<AzureStorage> {
        let account = Account::from_env(env)?;
        let ep = &account.endpoint;
        let target = crate::net::Target {
            https: ep.https,
            host: ep.host.clone(),
            port: ep.port,
        };
        let tls = if ep.https {
            Some(crate::net::client::public_tls()?)
        } else {
            None
        };
        let http = Origin::new(target, tls, proxy, CONNECT_TIMEOUT)
            .map_err(|e| Error::usage(format!("az://{container}: {e}")))?;
        Ok(AzureStorage {
            inner: Arc::new(Inner {
                account,
                container,
                http,
            }),
            prefix,
        })
    }

    fn blob(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    fn list_prefix(&self) -> String {
        if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        }
    }

    fn url(&self, blob: &str) -> String {
        format!("{}/{blob}", self.inner.target())
    }

    /// Create the container (for tests and first-time setup; the backup path never creates
    /// it). An existing container is not an error.
    pub async fn create_container(&self) -> Result<()> {
        match self.inner.call(&Op::CreateContainer, SMALL_TIMEOUT).await {
            Ok(_) => Ok(()),
            Err(CallError::Status(a))
                if Inner::code_of(&a).as_deref() == Some("ContainerAlreadyExists") =>
            {
                Ok(())
            }
            Err(e) => Err(self.inner.error(
                &format!("cannot create the container {}", self.inner.target()),
                e,
            )),
        }
    }

    /// Names (relative to the prefix) of blobs that have staged blocks but were never
    /// committed: what an interrupted upload leaves until Azure discards it.
    pub async fn uncommitted(&self) -> Result<Vec<String>> {
        let strip = self.list_prefix();
        let committed: std::collections::BTreeSet<String> = self
            .inner
            .list(&strip, false)
            .await?
            .into_iter()
            .map(|b| b.name)
            .collect();
        Ok(self
            .inner
            .list(&strip, true)
            .await?
            .into_iter()
            .filter(|b| !committed.contains(&b.name))
            .map(|b| b.name.strip_prefix(&strip).unwrap_or(&b.name).to_string())
            .collect())
    }
}

impl Storage for AzureStorage {
    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            self.inner.target()
        } else {
            format!("{}/{}", self.inner.target(), self.prefix)
        }
    }

    fn put_stream<'a>(
        &'a self,
        name: &'a str,
        body: mpsc::Receiver<Piece>,
        _retain: Retain,
    ) -> BoxFuture<'a, Result<u64>> {
        self.blocks(name, body).boxed()
    }

    fn put_small<'a>(
        &'a self,
        name: &'a str,
        bytes: Vec<u8>,
        _retain: Retain,
    ) -> BoxFuture<'a, Result<()>> {
        async move {
            let blob = self.blob(name);
            let op = Op::PutBlob {
                blob: &blob,
                body: Bytes::from(bytes),
                content_type: "application/json",
            };
            self.inner.call(&op, SMALL_TIMEOUT).await.map_err(|e| {
                self.inner
                    .error(&format!("cannot write {}", self.url(&blob)), e)
            })?;
            Ok(())
        }
        .boxed()
    }

    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Reader>>> {
        async move {
            let blob = self.blob(name);
            let what = format!("cannot read {}", self.url(&blob));
            let mut attempt = 1;
            loop {
                let req = request::build(
                    &self.inner.account,
                    &self.inner.container,
                    &Op::GetBlob { blob: &blob },
                    Utc::now(),
                )?;
                let (retry, err) = match self.inner.http.open(req, SMALL_TIMEOUT).await {
                    Ok(Ok((_, reader))) => return Ok(Some(Box::pin(reader) as Reader)),
                    Ok(Err(a)) if Inner::code_of(&a).as_deref() == Some("BlobNotFound") => {
                        return Ok(None);
                    }
                    Ok(Err(a)) => (transient_status(a.status.as_u16()), CallError::Status(a)),
                    Err(f) => (true, CallError::Failed(f)),
                };
                if !retry || !RETRY.again_after(attempt) {
                    return Err(self.inner.error(&what, err));
                }
                tokio::time::sleep(RETRY.delay(attempt, 0.0)).await;
                attempt += 1;
            }
        }
        .boxed()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<ObjectInfo>>> {
        async move {
            let strip = self.list_prefix();
            let mut out: Vec<ObjectInfo> = self
                .inner
                .list(&strip, false)
                .await
                .map_err(|e| e.context(format!("listing {}", self.describe())))?
                .into_iter()
                .filter_map(|b| {
                    Some(ObjectInfo {
                        name: b.name.strip_prefix(&strip)?.to_string(),
                        size: b.size,
                        modified: b.modified,
                    })
                })
                .collect();
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        }
        .boxed()
    }

    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>> {
        async move {
            let blob = self.blob(name);
            match self
                .inner
                .call(&Op::DeleteBlob { blob: &blob }, SMALL_TIMEOUT)
                .await
            {
                Ok(_) => Ok(()),
                Err(CallError::Status(a))
                    if Inner::code_of(&a).as_deref() == Some("BlobNotFound") =>
                {
                    Ok(())
                }
                Err(e) => Err(self
                    .inner
                    .error(&format!("cannot delete {}", self.url(&blob)), e)),
            }
        }
        .boxed()
    }

    /// Nothing to do: Azure has no call that discards uncommitted blocks, and discards them
    /// itself seven days after they were staged; they are never listed meanwhile.
    fn abort_stale_uploads(&self, _before: DateTime<Utc>) -> BoxFuture<'_, Result<Vec<String>>> {
        async { Ok(Vec::new()) }.boxed()
    }
}
