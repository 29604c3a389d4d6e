//! A second, independent S3-protocol server for the tests: `s3rver` (Node.js, installed by
//! `scripts/setup` from npm), one per test binary on a free loopback port with its data in a
//! temporary folder (started on first use, killed and removed at process exit), plus a small
//! S3 client to make buckets and look at what the binary left behind. s3rver checks SigV4
//! signatures, implements multipart uploads, and answers `NotImplemented` to
//! ListMultipartUploads and `MethodNotAllowed` to AbortMultipartUpload, as some S3-compatible
//! stores do.
#![allow(dead_code)]

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// s3rver's built-in credentials.
const KEY: &str = "S3RVER";

struct Server {
    port: u16,
    child: std::sync::Mutex<std::process::Child>,
    _data: tempfile::TempDir,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

extern "C" fn stop_server() {
    if let Some(s) = SERVER.get() {
        if let Ok(mut c) = s.child.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        let data = tempfile::tempdir().expect("s3rver data dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("s3rver")
            .arg("-d")
            .arg(data.path())
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "--silent"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start s3rver (installed by scripts/setup)");
        // SAFETY: registering a plain extern "C" fn with atexit.
        unsafe {
            libc::atexit(stop_server);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3rver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Server {
            port,
            child: std::sync::Mutex::new(child),
            _data: data,
        }
    })
}

/// The server's URL by IP (`http://127.0.0.1:PORT`).
pub fn endpoint() -> String {
    format!("http://127.0.0.1:{}", server().port)
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

/// Run a future on a runtime shared by the test binary.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    RUNTIME
        .get_or_init(|| tokio::runtime::Runtime::new().expect("runtime"))
        .block_on(f)
}

pub fn client() -> Client {
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint())
        .force_path_style(true)
        .credentials_provider(Credentials::new(KEY, KEY, None, None, "test"))
        .build();
    Client::from_conf(conf)
}

/// A new, empty bucket with a unique name.
pub fn bucket() -> String {
    let name = format!("kasm-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    block_on(client().create_bucket().bucket(&name).send()).expect("create bucket");
    name
}

/// Every key in the bucket.
pub fn keys(bucket: &str) -> Vec<String> {
    let out = block_on(client().list_objects_v2().bucket(bucket).send()).expect("list");
    let mut keys: Vec<String> = out
        .contents()
        .iter()
        .filter_map(|o| o.key().map(String::from))
        .collect();
    keys.sort();
    keys
}

pub fn get(bucket: &str, key: &str) -> Vec<u8> {
    block_on(async {
        let out = client()
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .expect("get object");
        out.body
            .collect()
            .await
            .expect("body")
            .into_bytes()
            .to_vec()
    })
}

/// Parts of multipart uploads s3rver holds for `bucket` (it cannot list them over the API:
/// ListMultipartUploads is not implemented). Its store keeps them as
/// `<data>/<bucket>/._S3rver_uploads/<upload id>/<part number>`.
pub fn parts_on_disk(bucket: &str) -> usize {
    let mut n = 0;
    let mut stack = vec![server()._data.path().join(bucket)];
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
