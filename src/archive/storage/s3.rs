//! S3 (and S3-compatible: MinIO, Ceph, moto) storage with aws-sdk-s3 and the standard AWS
//! credential chain (env, profile, web identity, instance role), `s3.endpoint`, `s3.region`,
//! `s3.force_path_style`, optional SSE (`AES256` or `aws:kms` with `s3.kms_key_id`).
//!
//! Streams are multipart uploads: parts are cut as the dump arrives, a few are in flight, and
//! the part size grows (see [`part_size`]) so a very large dump stays under S3's 10,000-part
//! limit. Any failure, or a stream that ends without `Piece::End` (error, Ctrl-C, SIGTERM),
//! aborts the multipart upload so that no orphan parts remain and nothing appears under the
//! object's name. Coded to the S3 API, not to any one server's quirks. Never logs credentials.
//!
//! S3-compatible stores implement less than AWS. What a backup needs (multipart upload, put,
//! get, list v2, delete) is required; housekeeping is not: a store that answers
//! `NotImplemented` (or 405/501) to ListMultipartUploads or AbortMultipartUpload gets a
//! warning and the command goes on. No optional call is made unless configured: no tagging,
//! no ACLs, SSE headers only with `s3.sse`, checksums only where the API requires them (no
//! `x-amz-checksum-*` headers or aws-chunked trailers by default). With `s3.endpoint` set,
//! requests are path-style (`endpoint/bucket/key`) unless `s3.force_path_style = false`.
//!
//! With `s3.object_lock_days = N` every data object and manifest is uploaded with Object Lock
//! retention in GOVERNANCE mode until now + N days (with the checksum S3 requires of such
//! uploads; a store that ignores the headers on a multipart upload gets PutObjectRetention
//! after completion). Deletes then remove every version of the object, and a version still
//! under retention fails with a [`Locked`] cause, which `prune` turns into a warning. GOVERNANCE,
//! not COMPLIANCE: an administrator with `s3:BypassGovernanceRetention` can still remove a
//! backup (a mistaken N, a leaked dump), which COMPLIANCE would forbid even to the root account.

use super::{Locked, ObjectInfo, Piece, Reader, Retain, Storage};
use crate::config::S3Config;
use crate::error::{Error, Result};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ObjectLockMode,
    ObjectLockRetention, ServerSideEncryption,
};
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Smallest part (S3's minimum is 5 MiB for all but the last part).
pub const MIN_PART_BYTES: usize = 8 << 20;
/// S3's limit on parts per upload.
pub const MAX_PARTS: i32 = 10_000;
/// Memory budget for parts in flight; the number in flight shrinks as parts grow.
const IN_FLIGHT_BYTES: usize = 32 << 20;

/// Size of part `n` (1-based): 8 MiB, doubling every 2,000 parts up to 128 MiB, so 10,000
/// parts hold about 496 GB of compressed dump.
pub fn part_size(n: i32) -> usize {
    let doublings = ((n.max(1) - 1) / 2000).min(4) as u32;
    MIN_PART_BYTES << doublings
}

/// How many parts of `size` may be in flight at once (1 to 4).
pub fn parts_in_flight(size: usize) -> usize {
    (IN_FLIGHT_BYTES / size).clamp(1, 4)
}

pub struct S3Storage {
    client: Client,
    bucket: String,
    prefix: String,
    sse: Option<ServerSideEncryption>,
    kms_key_id: Option<String>,
    /// `s3.object_lock_days`.
    lock_days: Option<u32>,
}

/// The S3 error code of a bucket that does not exist.
const NO_SUCH_BUCKET: &str = "NoSuchBucket";

/// `s3.request_timeout`'s default: how long one request (an upload part's body included) may
/// wait for the store's answer. An 8 MiB part within it needs 70 KB/s.
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The Object Lock mode of `s3.object_lock_days` (see the module's description).
pub const LOCK_MODE: &str = "GOVERNANCE";

fn s3_err<E, R>(what: impl std::fmt::Display, e: SdkError<E, R>) -> Error
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let temporary = matches!(e, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_));
    let msg = format!("{what}: {}", DisplayErrorContext(&e));
    // The S3 API's own error code (not the message): the bucket does not exist.
    if e.as_service_error().and_then(|s| s.code()) == Some(NO_SUCH_BUCKET) {
        return super::missing(format!("{msg} (create the bucket first; kasm-db does not)"));
    }
    if temporary {
        Error::temporary(msg)
    } else {
        Error::failed(msg)
    }
}

/// Whether the store answered that it does not implement the call (an optional one, for us):
/// S3's `NotImplemented` (501), `MethodNotAllowed` (405), or those statuses without a code.
pub fn is_unsupported<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    let code = e.as_service_error().and_then(|s| s.code());
    let status = e.raw_response().map(|r| r.status().as_u16());
    unsupported(code, status)
}

/// The pure part of [`is_unsupported`].
fn unsupported(code: Option<&str>, status: Option<u16>) -> bool {
    matches!(
        code,
        Some("NotImplemented" | "MethodNotAllowed" | "NotSupported" | "XNotImplemented")
    ) || (code.is_none() && matches!(status, Some(405 | 501)))
}

/// Whether requests go path-style: as configured, else when a custom endpoint is set (most
/// S3-compatible stores serve `endpoint/bucket`; `bucket.endpoint` needs wildcard DNS).
pub fn path_style(cfg: &S3Config) -> bool {
    cfg.force_path_style
        .unwrap_or_else(|| cfg.endpoint.as_deref().is_some_and(|e| !e.is_empty()))
}

impl S3Storage {
    /// Build a client from the standard chain and the `[s3]` settings. Makes no request.
    pub async fn connect(bucket: String, prefix: String, cfg: &S3Config) -> Result<Self> {
        let sse = match cfg.sse.as_deref() {
            None | Some("") => None,
            Some("AES256") => Some(ServerSideEncryption::Aes256),
            Some("aws:kms") => Some(ServerSideEncryption::AwsKms),
            Some(other) => {
                return Err(Error::usage(format!(
                    "s3.sse {other:?} is not \"AES256\" or \"aws:kms\""
                )));
            }
        };
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(r) = cfg.region.as_deref().filter(|r| !r.is_empty()) {
            loader = loader.region(Region::new(r.to_string()));
        }
        let sdk = loader.load().await;
        let mut b = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(path_style(cfg))
            // Our own SHA-256 covers integrity; extra checksums only where the API requires
            // them, which S3-compatible stores also understand.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if sdk.region().is_none() {
            b = b.region(Region::new("us-east-1"));
        }
        if let Some(e) = cfg.endpoint.as_deref().filter(|e| !e.is_empty()) {
            b = b.endpoint_url(e);
        }
        // The SDK sets no limit on the wait for an answer: a store that took the request and
        // went silent would hold a backup (or the WAL stream's sweep) for ever.
        let answer_within = cfg
            .request_timeout
            .map(|w| w.as_duration())
            .filter(|d| !d.is_zero())
            .unwrap_or(ANSWER_TIMEOUT);
        b = b.timeout_config(
            sdk.timeout_config()
                .map(|t| t.to_builder())
                .unwrap_or_else(aws_sdk_s3::config::timeout::TimeoutConfig::builder)
                .read_timeout(answer_within)
                .build(),
        );
        Ok(S3Storage {
            client: Client::from_conf(b.build()),
            bucket,
            prefix,
            sse,
            kms_key_id: cfg.kms_key_id.clone().filter(|k| !k.is_empty()),
            lock_days: cfg.object_lock_days.filter(|d| *d > 0),
        })
    }

    /// The retain-until date of an upload starting now; `None` without `s3.object_lock_days`.
    fn retain_until(&self) -> Option<aws_sdk_s3::primitives::DateTime> {
        let days = self.lock_days?;
        let t = Utc::now() + chrono::TimeDelta::days(days as i64);
        Some(aws_sdk_s3::primitives::DateTime::from_secs(t.timestamp()))
    }

    fn lock_mode(&self) -> Option<ObjectLockMode> {
        self.lock_days.map(|_| ObjectLockMode::Governance)
    }

    /// With Object Lock, a checksum is required on uploads (S3 refuses them without).
    fn checksum(&self) -> Option<ChecksumAlgorithm> {
        self.lock_days.map(|_| ChecksumAlgorithm::Crc32)
    }

    /// Make sure `key` carries the retention (a store may ignore the headers of a multipart
    /// upload): PutObjectRetention when HeadObject shows none.
    async fn ensure_retention(
        &self,
        key: &str,
        until: aws_sdk_s3::primitives::DateTime,
    ) -> Result<()> {
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3_err(format!("cannot read back {}", self.url(key)), e))?;
        if head.object_lock_retain_until_date().is_some() {
            return Ok(());
        }
        self.client
            .put_object_retention()
            .bucket(&self.bucket)
            .key(key)
            .retention(
                ObjectLockRetention::builder()
                    .mode(aws_sdk_s3::types::ObjectLockRetentionMode::Governance)
                    .retain_until_date(until)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                self.write_err(
                    format!("cannot set Object Lock retention on {}", self.url(key)),
                    e,
                )
            })?;
        Ok(())
    }

    /// Delete every version of `key` (Object Lock buckets are versioned: a plain delete would
    /// only hide the object behind a delete marker). A version under retention: [`Locked`].
    async fn delete_versions(&self, key: &str) -> Result<()> {
        let mut versions = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(key)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| s3_err(format!("cannot list versions of {}", self.url(key)), e))?;
            for v in page.versions() {
                if v.key() == Some(key) {
                    versions.push(v.version_id().map(String::from));
                }
            }
            for d in page.delete_markers() {
                if d.key() == Some(key) {
                    versions.push(d.version_id().map(String::from));
                }
            }
            if page.is_truncated() != Some(true) || page.next_key_marker().is_none() {
                break;
            }
            key_marker = page.next_key_marker().map(String::from);
            id_marker = page.next_version_id_marker().map(String::from);
        }
        for version in versions {
            let r = self
                .client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .set_version_id(version)
                .send()
                .await;
            match r {
                Ok(_) => {}
                Err(e)
                    if e.as_service_error()
                        .and_then(|s| s.code())
                        .is_some_and(|c| c == "AccessDenied") =>
                {
                    return Err(Error::with_cause(
                        crate::error::Kind::Failed,
                        Locked(format!(
                            "{} is under S3 Object Lock retention (s3.object_lock_days) and \
                             cannot be deleted before it passes",
                            self.url(key)
                        )),
                    ));
                }
                Err(e) => return Err(s3_err(format!("cannot delete {}", self.url(key)), e)),
            }
        }
        Ok(())
    }

    /// An error of a write; with `s3.sse` set, a refusal may be the store not supporting SSE.
    fn write_err<E>(&self, what: String, e: SdkError<E, HttpResponse>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let refused = e.as_service_error().is_some()
            && e.raw_response()
                .is_some_and(|r| matches!(r.status().as_u16(), 400 | 501));
        let hint = self.sse.is_some() && (refused || is_unsupported(&e));
        let err = s3_err(what, e);
        if hint {
            err.context(
                "s3.sse is set: a store without server-side encryption refuses its header; unset \
                 s3.sse there (or use backup.encryption_key_file for client-side encryption)",
            )
        } else {
            err
        }
    }

    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    fn list_prefix(&self) -> Option<String> {
        (!self.prefix.is_empty()).then(|| format!("{}/", self.prefix))
    }

    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    async fn multipart(
        &self,
        name: &str,
        body: mpsc::Receiver<Piece>,
        retain: Retain,
    ) -> Result<u64> {
        let key = self.key(name);
        let (mode, until) = if retain == Retain::WithBackup {
            (self.lock_mode(), self.retain_until())
        } else {
            (None, None)
        };
        let create = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&key)
            .set_server_side_encryption(self.sse.clone())
            .set_ssekms_key_id(self.kms_key_id.clone())
            .set_object_lock_mode(mode)
            .set_object_lock_retain_until_date(until)
            .set_checksum_algorithm(self.checksum())
            .content_type("application/gzip")
            .send()
            .await
            .map_err(|e| self.write_err(format!("cannot start upload of {}", self.url(&key)), e))?;
        let upload_id = create
            .upload_id()
            .ok_or_else(|| Error::failed("S3 returned no upload id"))?
            .to_string();
        let result = self.upload_parts(&key, &upload_id, body).await;
        let result = match result {
            Ok((parts, n)) => {
                let count = parts.len();
                let done = self
                    .client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&key)
                    .upload_id(&upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await;
                let stored = match done {
                    Ok(_) => Ok(n),
                    // The answer can be lost (network) or unreadable while the object was
                    // committed: ask S3 whether it is there, whole, before calling it failed.
                    Err(e) if self.committed(&key, n, count).await => {
                        tracing::warn!(
                            object = %self.url(&key),
                            error = %DisplayErrorContext(&e),
                            "the completion's answer was not understood, but the object is stored whole"
                        );
                        Ok(n)
                    }
                    Err(e) => Err(s3_err(
                        format!("cannot complete upload of {}", self.url(&key)),
                        e,
                    )),
                };
                match (stored, until) {
                    (Ok(n), Some(until)) => self.ensure_retention(&key, until).await.map(|_| n),
                    (stored, _) => stored,
                }
            }
            Err(e) => Err(e),
        };
        if result.is_err() {
            let abort = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&key)
                .upload_id(&upload_id)
                .send()
                .await;
            match abort {
                Ok(_) => {}
                Err(e) if is_unsupported(&e) => tracing::warn!(
                    object = %self.url(&key),
                    error = %DisplayErrorContext(&e),
                    "this store cannot abort multipart uploads: the parts already sent stay until \
                     its own clean-up (a lifecycle rule) removes them; nothing is listed under the \
                     backup's name"
                ),
                Err(e) => tracing::error!(
                    object = %self.url(&key),
                    error = %DisplayErrorContext(&e),
                    "could not abort the multipart upload; `backups prune` aborts it once it is a day old"
                ),
            }
        }
        result
    }

    /// Whether `key` now holds a completed object of `size` bytes; when its ETag has the
    /// multipart form `"...-<n>"` (AWS and most stores), `n` must be `parts`. Keys are unique
    /// per backup, so this is our object.
    async fn committed(&self, key: &str, size: u64, parts: usize) -> bool {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(h) => {
                h.content_length() == Some(size as i64)
                    && h.e_tag()
                        .and_then(|t| t.trim_matches('"').rsplit_once('-'))
                        .is_none_or(|(_, n)| n == parts.to_string())
            }
            Err(_) => false,
        }
    }

    /// Cut the stream into parts and upload them, a few at a time. Returns the parts in order
    /// and the byte count, or an error after cancelling every part still in flight.
    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        mut body: mpsc::Receiver<Piece>,
    ) -> Result<(Vec<CompletedPart>, u64)> {
        let mut inflight: JoinSet<Result<CompletedPart>> = JoinSet::new();
        let mut done = Vec::new();
        let result = async {
            let mut buf = BytesMut::with_capacity(MIN_PART_BYTES);
            let mut part_no: i32 = 1;
            let mut total = 0u64;
            let mut complete = false;
            loop {
                // Fail fast on a failed part.
                while let Some(r) = inflight.try_join_next() {
                    done.push(joined(r)?);
                }
                let last = match body.recv().await {
                    Some(Piece::Data(b)) => {
                        total += b.len() as u64;
                        buf.extend_from_slice(&b);
                        false
                    }
                    Some(Piece::End) => {
                        complete = true;
                        true
                    }
                    None => true,
                };
                if last && !complete {
                    return Err(Error::failed(
                        "the backup stream ended early; the upload was aborted",
                    ));
                }
                while buf.len() >= part_size(part_no) || (last && (!buf.is_empty() || part_no == 1))
                {
                    if part_no > MAX_PARTS {
                        return Err(Error::failed(format!(
                            "the dump needs more than {MAX_PARTS} parts"
                        )));
                    }
                    let size = part_size(part_no).min(buf.len());
                    let chunk = buf.split_to(size).freeze();
                    while inflight.len() >= parts_in_flight(part_size(part_no)) {
                        if let Some(r) = inflight.join_next().await {
                            done.push(joined(r)?);
                        }
                    }
                    inflight.spawn(upload_part(
                        self.client.clone(),
                        self.bucket.clone(),
                        key.to_string(),
                        upload_id.to_string(),
                        part_no,
                        chunk,
                        self.checksum(),
                    ));
                    part_no += 1;
                    if buf.is_empty() && last {
                        break;
                    }
                }
                if last {
                    break;
                }
            }
            while let Some(r) = inflight.join_next().await {
                done.push(joined(r)?);
            }
            Ok(total)
        }
        .await;
        match result {
            Ok(total) => {
                done.sort_by_key(|p| p.part_number());
                Ok((done, total))
            }
            Err(e) => {
                inflight.abort_all();
                while inflight.join_next().await.is_some() {}
                Err(e)
            }
        }
    }
}

fn joined(
    r: std::result::Result<Result<CompletedPart>, tokio::task::JoinError>,
) -> Result<CompletedPart> {
    r.map_err(|e| Error::failed(format!("upload task: {e}")))?
}

async fn upload_part(
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    part_no: i32,
    chunk: Bytes,
    checksum: Option<ChecksumAlgorithm>,
) -> Result<CompletedPart> {
    let out = client
        .upload_part()
        .bucket(&bucket)
        .key(&key)
        .upload_id(&upload_id)
        .part_number(part_no)
        .content_length(chunk.len() as i64)
        .set_checksum_algorithm(checksum)
        .body(ByteStream::from(chunk))
        .send()
        .await
        .map_err(|e| {
            s3_err(
                format!("cannot upload part {part_no} of s3://{bucket}/{key}"),
                e,
            )
        })?;
    Ok(CompletedPart::builder()
        .set_e_tag(out.e_tag().map(String::from))
        .set_checksum_crc32(out.checksum_crc32().map(String::from))
        .part_number(part_no)
        .build())
}

fn to_chrono(t: Option<&aws_sdk_s3::primitives::DateTime>) -> DateTime<Utc> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
        .unwrap_or_default()
}

impl Storage for S3Storage {
    fn server_side_encryption(&self) -> Option<String> {
        self.sse.as_ref().map(|s| s.as_str().to_string())
    }

    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    fn put_stream<'a>(
        &'a self,
        name: &'a str,
        body: mpsc::Receiver<Piece>,
        retain: Retain,
    ) -> BoxFuture<'a, Result<u64>> {
        self.multipart(name, body, retain).boxed()
    }

    fn put_small<'a>(
        &'a self,
        name: &'a str,
        bytes: Vec<u8>,
        retain: Retain,
    ) -> BoxFuture<'a, Result<()>> {
        async move {
            let key = self.key(name);
            // Manifests are retained with their objects; a verification record is rewritten
            // by every verify and is not: the caller says which.
            let (mode, until, checksum) = if retain == Retain::WithBackup {
                (self.lock_mode(), self.retain_until(), self.checksum())
            } else {
                (None, None, None)
            };
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .set_server_side_encryption(self.sse.clone())
                .set_ssekms_key_id(self.kms_key_id.clone())
                .set_object_lock_mode(mode)
                .set_object_lock_retain_until_date(until)
                .set_checksum_algorithm(checksum)
                .content_type("application/json")
                .body(ByteStream::from(bytes))
                .send()
                .await
                .map_err(|e| self.write_err(format!("cannot write {}", self.url(&key)), e))?;
            Ok(())
        }
        .boxed()
    }

    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Reader>>> {
        async move {
            let key = self.key(name);
            match self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
            {
                Ok(out) => Ok(Some(Box::pin(out.body.into_async_read()) as Reader)),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
                Err(e) => Err(s3_err(format!("cannot read {}", self.url(&key)), e)),
            }
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
            let strip = self.list_prefix().unwrap_or_default();
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(format!("{strip}{prefix}"))
                .start_after(format!("{strip}{after}"))
                .max_keys(i32::try_from(limit).unwrap_or(1000))
                .send()
                .await
                .map_err(|e| s3_err(format!("cannot list {}", self.describe()), e))?;
            let mut out: Vec<String> = page
                .contents()
                .iter()
                .filter_map(|o| o.key()?.strip_prefix(&strip).map(str::to_string))
                .collect();
            out.sort();
            out.truncate(limit);
            Ok(out)
        }
        .boxed()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<ObjectInfo>>> {
        async move {
            let strip = self.list_prefix().unwrap_or_default();
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .set_prefix(self.list_prefix())
                .into_paginator()
                .send();
            let mut out = Vec::new();
            while let Some(page) = pages.next().await {
                let page =
                    page.map_err(|e| s3_err(format!("cannot list {}", self.describe()), e))?;
                for o in page.contents() {
                    let Some(key) = o.key() else { continue };
                    let Some(name) = key.strip_prefix(&strip) else {
                        continue;
                    };
                    out.push(ObjectInfo {
                        name: name.to_string(),
                        size: o.size().unwrap_or(0).max(0) as u64,
                        modified: to_chrono(o.last_modified()),
                    });
                }
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        }
        .boxed()
    }

    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>> {
        async move {
            let key = self.key(name);
            if self.lock_days.is_some() {
                return self.delete_versions(&key).await;
            }
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| s3_err(format!("cannot delete {}", self.url(&key)), e))?;
            Ok(())
        }
        .boxed()
    }

    fn abort_stale_uploads(&self, before: DateTime<Utc>) -> BoxFuture<'_, Result<Vec<String>>> {
        async move {
            let strip = self.list_prefix().unwrap_or_default();
            let mut aborted = Vec::new();
            let mut key_marker: Option<String> = None;
            let mut id_marker: Option<String> = None;
            loop {
                let page = self
                    .client
                    .list_multipart_uploads()
                    .bucket(&self.bucket)
                    .set_prefix(self.list_prefix())
                    .set_key_marker(key_marker.take())
                    .set_upload_id_marker(id_marker.take())
                    .send()
                    .await
                    .map_err(|e| {
                        if is_unsupported(&e) {
                            Error::failed(format!(
                                "{} does not implement ListMultipartUploads ({}): uploads left \
                                 open by dead runs cannot be found from here; a lifecycle rule \
                                 (AbortIncompleteMultipartUpload), where the store has one, \
                                 removes them",
                                self.describe(),
                                e.as_service_error()
                                    .and_then(|s| s.code())
                                    .unwrap_or("not supported")
                            ))
                        } else {
                            s3_err(
                                format!("cannot list open uploads of {}", self.describe()),
                                e,
                            )
                        }
                    })?;
                for u in page.uploads() {
                    let (Some(key), Some(id)) = (u.key(), u.upload_id()) else {
                        continue;
                    };
                    if to_chrono(u.initiated()) >= before {
                        continue;
                    }
                    let abort = self
                        .client
                        .abort_multipart_upload()
                        .bucket(&self.bucket)
                        .key(key)
                        .upload_id(id)
                        .send()
                        .await;
                    match abort {
                        Ok(_) => aborted.push(key.strip_prefix(&strip).unwrap_or(key).to_string()),
                        // One that cannot be aborted does not keep the others open.
                        Err(e) => tracing::warn!(
                            object = %self.url(key),
                            error = %DisplayErrorContext(&e),
                            "cannot abort a stale multipart upload"
                        ),
                    }
                }
                if page.is_truncated() != Some(true) {
                    break;
                }
                key_marker = page.next_key_marker().map(String::from);
                id_marker = page.next_upload_id_marker().map(String::from);
                if key_marker.is_none() {
                    break;
                }
            }
            Ok(aborted)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_calls_a_store_lacks_are_told_from_real_failures() {
        assert!(unsupported(Some("NotImplemented"), Some(501)));
        assert!(unsupported(Some("MethodNotAllowed"), Some(405)));
        assert!(unsupported(None, Some(501)));
        assert!(!unsupported(Some("AccessDenied"), Some(403)));
        assert!(!unsupported(Some("NoSuchBucket"), Some(404)));
        assert!(!unsupported(None, Some(500)));
        assert!(!unsupported(None, None));
    }

    #[test]
    fn a_custom_endpoint_means_path_style_unless_told_otherwise() {
        let mut c = S3Config::default();
        assert!(!path_style(&c), "AWS itself: virtual-host style");
        c.endpoint = Some("http://minio:9000".into());
        assert!(path_style(&c));
        c.force_path_style = Some(false);
        assert!(!path_style(&c));
        c.endpoint = None;
        c.force_path_style = Some(true);
        assert!(path_style(&c));
    }

    #[test]
    fn parts_grow_to_hold_a_large_dump_under_the_limit() {
        let mut total: u64 = 0;
        for n in 1..=MAX_PARTS {
            let s = part_size(n);
            assert!((5 << 20..=5 << 30).contains(&s), "part {n}: {s}");
            assert!(s >= part_size(n - 1).min(s));
            total += s as u64;
        }
        // Well over the largest Kasm database the sizing guide expects.
        assert!(total > 400_000_000_000, "{total}");
        // Memory in flight stays bounded whatever the part size.
        for n in [1, 2001, 4001, 6001, 8001, MAX_PARTS] {
            let s = part_size(n);
            assert!((parts_in_flight(s) + 1) * s <= 256 << 20, "part {n}");
        }
    }
}
