//! What the S3-protocol test servers (`moto.rs`, `s3rver.rs`) share: the server as a child
//! process on a free loopback port (started once per test binary, killed at process exit and
//! its data folder removed: the servers live in statics, which Rust never drops), a
//! runtime for the SDK, and a small client to make buckets and look at what the binary left
//! behind. Never talks to anything but loopback.

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// A running server; its process is killed and its data folder removed at exit.
pub struct Server {
    pub port: u16,
    /// Where the server keeps its data, when it takes a folder (removed at exit).
    pub data: Option<std::path::PathBuf>,
}

static CHILDREN: Mutex<Vec<Child>> = Mutex::new(Vec::new());
/// The servers' data folders, removed at exit once their servers are gone (a `TempDir` held by
/// a static is never dropped).
static DATA: Mutex<Vec<tempfile::TempDir>> = Mutex::new(Vec::new());
static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

extern "C" fn stop_servers() {
    if let Ok(mut children) = CHILDREN.lock() {
        for c in children.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    if let Ok(mut data) = DATA.lock() {
        data.clear();
    }
}

impl Server {
    /// Start `program` with the arguments `args(port)` on a free loopback port and wait until
    /// it accepts connections. `data` is removed at exit, after the server is stopped.
    pub fn start(
        program: &str,
        args: impl FnOnce(u16) -> Vec<String>,
        data: Option<tempfile::TempDir>,
    ) -> Server {
        let port = super::free_port();
        let child = Command::new(program)
            .args(args(port))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program} (installed by scripts/setup): {e}"));
        {
            let mut children = CHILDREN.lock().unwrap();
            if children.is_empty() {
                // SAFETY: registering a plain extern "C" fn with atexit.
                unsafe {
                    libc::atexit(stop_servers);
                }
            }
            children.push(child);
        }
        let data = data.map(|d| {
            let path = d.path().to_path_buf();
            DATA.lock().unwrap().push(d);
            path
        });
        super::wait_until(
            Duration::from_secs(60),
            format_args!("{program} to listen on {port}"),
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        );
        Server { port, data }
    }

    /// The server's URL by IP (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Run a future on a runtime shared by the test binary.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    RUNTIME
        .get_or_init(|| tokio::runtime::Runtime::new().expect("runtime"))
        .block_on(f)
}

/// A path-style client of `endpoint` with `key` as access key and secret.
pub fn client(endpoint: &str, key: &str) -> Client {
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(key, key, None, None, "test"))
        .build();
    Client::from_conf(conf)
}

/// A new, empty bucket with a unique name.
pub fn bucket(c: &Client) -> String {
    let name = format!("kasm-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    block_on(c.create_bucket().bucket(&name).send()).expect("create bucket");
    name
}

/// Every key in the bucket, sorted.
pub fn keys(c: &Client, bucket: &str) -> Vec<String> {
    let out = block_on(c.list_objects_v2().bucket(bucket).send()).expect("list");
    let mut keys: Vec<String> = out
        .contents()
        .iter()
        .filter_map(|o| o.key().map(String::from))
        .collect();
    keys.sort();
    keys
}

/// The object's bytes.
pub fn get(c: &Client, bucket: &str, key: &str) -> Vec<u8> {
    block_on(async {
        let out = c
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
