//! A second, independent S3-protocol server for the tests: `s3rver` (Node.js, installed by
//! `scripts/setup` from npm), one per test binary on a free loopback port with its data in a
//! temporary folder (started on first use, killed and removed at process exit), plus a small
//! S3 client to make buckets and look at what the binary left behind. s3rver checks SigV4
//! signatures, implements multipart uploads, and answers `NotImplemented` to
//! ListMultipartUploads and `MethodNotAllowed` to AbortMultipartUpload, as some S3-compatible
//! stores do.
#![allow(dead_code)]

use crate::common::s3::{self, Server};
use aws_sdk_s3::Client;
use std::sync::OnceLock;

/// s3rver's built-in credentials.
const KEY: &str = "S3RVER";

static SERVER: OnceLock<Server> = OnceLock::new();

fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        let data = tempfile::tempdir().expect("s3rver data dir");
        let dir = data.path().to_string_lossy().into_owned();
        Server::start(
            "s3rver",
            |port| {
                [
                    "-d",
                    &dir,
                    "-a",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "--silent",
                ]
                .map(String::from)
                .to_vec()
            },
            Some(data),
        )
    })
}

/// The server's URL by IP (`http://127.0.0.1:PORT`).
pub fn endpoint() -> String {
    server().endpoint()
}

/// The server's URL by host name (`http://localhost:PORT`): virtual-host addressing would send
/// `bucket.localhost`, so this one needs path-style requests.
pub fn endpoint_by_name() -> String {
    format!("http://localhost:{}", server().port)
}

/// Environment for the `kasm-db` binary: the standard AWS variables and `s3.endpoint` only
/// (no `s3.force_path_style`, no region: what an operator would write first).
pub fn env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", KEY.into()),
        ("AWS_SECRET_ACCESS_KEY", KEY.into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("KASM_DB_S3_ENDPOINT", endpoint_by_name()),
    ]
}

pub fn client() -> Client {
    s3::client(&endpoint(), KEY)
}

/// A new, empty bucket with a unique name.
pub fn bucket() -> String {
    s3::bucket(&client())
}

/// Every key in the bucket, sorted.
pub fn keys(bucket: &str) -> Vec<String> {
    s3::keys(&client(), bucket)
}

pub fn get(bucket: &str, key: &str) -> Vec<u8> {
    s3::get(&client(), bucket, key)
}

/// Parts of multipart uploads s3rver holds for `bucket` (it cannot list them over the API:
/// ListMultipartUploads is not implemented). Its store keeps them as
/// `<data>/<bucket>/._S3rver_uploads/<upload id>/<part number>`.
pub fn parts_on_disk(bucket: &str) -> usize {
    let mut n = 0;
    let mut stack = vec![
        server()
            .data
            .as_ref()
            .expect("s3rver data dir")
            .join(bucket),
    ];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .parent()
                .and_then(|u| u.parent())
                .and_then(|u| u.file_name())
                .is_some_and(|u| u.to_string_lossy().ends_with("_uploads"))
                && p.file_name()
                    .is_some_and(|f| f.to_string_lossy().parse::<u32>().is_ok())
            {
                n += 1;
            }
        }
    }
    n
}
