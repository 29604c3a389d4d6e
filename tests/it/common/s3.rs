//! What the S3-protocol test servers (`moto.rs`, `s3rver.rs`) and Azurite share: the server as
//! a child process on a loopback port it picks itself and names in its output (started once
//! per test process, killed at process exit and its data folder and log removed: the servers
//! live in statics, which Rust never drops), a runtime for the SDK, and a small client to make
//! buckets and look at what the binary left behind. Never talks to anything but loopback.

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
    /// Start `program` with the arguments `args(0)`: it binds a free loopback port itself and
    /// names it in its start-up output (`127.0.0.1:PORT`, read from a log removed at exit).
    /// `data` is removed at exit, after the server is stopped.
    pub fn start(
        program: &str,
        args: impl FnOnce(u16) -> Vec<String>,
        data: Option<tempfile::TempDir>,
    ) -> Server {
        let logs = tempfile::tempdir().expect("a folder for the server's log");
        let log = logs.path().join("server.log");
        let out = std::fs::File::create(&log).expect("the server's log");
        let child = Command::new(program)
            .args(args(0))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("the server's log"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start {program} (installed by scripts/setup): {e}"));
        let index = {
            let mut children = CHILDREN.lock().unwrap();
            if children.is_empty() {
                // SAFETY: registering a plain extern "C" fn with atexit.
                unsafe {
                    libc::atexit(stop_servers);
                }
            }
            children.push(child);
            children.len() - 1
        };
        DATA.lock().unwrap().push(logs);
        let data = data.map(|d| {
            let path = d.path().to_path_buf();
            DATA.lock().unwrap().push(d);
            path
        });
        let read = || std::fs::read_to_string(&log).unwrap_or_default();
        let port = super::wait_for_some(
            Duration::from_secs(60),
            format_args!("{program} to name the port it listens on"),
            || {
                let exited = CHILDREN.lock().unwrap()[index].try_wait().unwrap();
                if let Some(status) = exited {
                    panic!("{program} exited ({status}): {}", read());
                }
                announced_port(&read())
            },
        );
        Server { port, data }
    }

    /// The server's URL by IP (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// The first non-zero port of `127.0.0.1:PORT` in a server's output: moto's "Running on
/// http://127.0.0.1:PORT", Azurite's "successfully listens on http://127.0.0.1:PORT" (after
/// "starting on 127.0.0.1:0"), s3rver's "listening on 127.0.0.1:PORT".
fn announced_port(out: &str) -> Option<u16> {
    out.split("127.0.0.1:").skip(1).find_map(|rest| {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok().filter(|&p| p != 0)
    })
}

#[test]
fn the_port_a_server_names_is_read() {
    assert_eq!(
        announced_port(" * Running on http://127.0.0.1:45789\nPress CTRL+C to quit\n"),
        Some(45789)
    );
    assert_eq!(
        announced_port(
            "Azurite Blob service is starting on 127.0.0.1:0\nAzurite Blob service successfully listens on http://127.0.0.1:35663\n"
        ),
        Some(35663)
    );
    assert_eq!(
        announced_port("\nS3rver listening on 127.0.0.1:34437\n"),
        Some(34437)
    );
    assert_eq!(
        announced_port("Azurite Blob service is starting on 127.0.0.1:0\n"),
        None
    );
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
