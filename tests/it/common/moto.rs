//! A real S3-protocol server for the backup tests: one `moto_server` per test binary on a free
//! loopback port (started on first use, killed at process exit), plus a small S3 client for
//! setting up buckets and inspecting what the binary left behind (objects, open multipart
//! uploads). `moto_server` is installed by `scripts/setup`.
#![allow(dead_code)]

use crate::common::s3::{self, Server};
use aws_sdk_s3::Client;
use std::sync::OnceLock;

pub use s3::block_on;

static MOTO: OnceLock<Server> = OnceLock::new();

fn moto() -> &'static Server {
    MOTO.get_or_init(|| {
        Server::start(
            "moto_server",
            |port| {
                vec![
                    "-H".into(),
                    "127.0.0.1".into(),
                    "-p".into(),
                    port.to_string(),
                ]
            },
            None,
        )
    })
}

/// The server's URL (`http://127.0.0.1:PORT`).
pub fn endpoint() -> String {
    moto().endpoint()
}

/// Environment for the `kasm-db` binary to reach the server through the standard chain.
pub fn env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("KASM_DB_S3_ENDPOINT", endpoint()),
        ("KASM_DB_S3_FORCE_PATH_STYLE", "true".into()),
        ("KASM_DB_S3_REGION", "us-east-1".into()),
    ]
}

pub fn client() -> Client {
    s3::client(&endpoint(), "test")
}

/// A new, empty bucket with a unique name.
pub fn bucket() -> String {
    s3::bucket(&client())
}

/// Every key in the bucket, sorted.
pub fn keys(bucket: &str) -> Vec<String> {
    s3::keys(&client(), bucket)
}

/// Keys of the multipart uploads still open in the bucket.
pub fn open_uploads(bucket: &str) -> Vec<String> {
    let out =
        block_on(client().list_multipart_uploads().bucket(bucket).send()).expect("list uploads");
    out.uploads()
        .iter()
        .filter_map(|u| u.key().map(String::from))
        .collect()
}

/// Parts uploaded so far to the open uploads of the bucket.
pub fn open_parts(bucket: &str) -> usize {
    let c = client();
    let out = block_on(c.list_multipart_uploads().bucket(bucket).send()).expect("list uploads");
    out.uploads()
        .iter()
        .map(|u| {
            block_on(
                c.list_parts()
                    .bucket(bucket)
                    .key(u.key().unwrap_or_default())
                    .upload_id(u.upload_id().unwrap_or_default())
                    .send(),
            )
            .map(|p| p.parts().len())
            .unwrap_or_else(|e| {
                // moto 5.2 names the document's root ListPartsResponse (S3: ListPartsResult),
                // which the SDK refuses; count the parts in the raw answer then.
                let body = e
                    .raw_response()
                    .and_then(|r| r.body().bytes())
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_else(|| panic!("{}", aws_sdk_s3::error::DisplayErrorContext(&e)));
                body.matches("<Part>").count()
            })
        })
        .sum()
}

pub fn get(bucket: &str, key: &str) -> Vec<u8> {
    s3::get(&client(), bucket, key)
}

pub fn put(bucket: &str, key: &str, body: Vec<u8>) {
    block_on(
        client()
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body.into())
            .send(),
    )
    .expect("put object");
}
