//! A real S3-protocol server for the backup tests: one `moto_server` per test binary on a free
//! loopback port (started on first use, killed at process exit), plus a small S3 client for
//! setting up buckets and inspecting what the binary left behind (objects, open multipart
//! uploads). `moto_server` is installed by `scripts/setup`.
#![allow(dead_code)]

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

struct Moto {
    port: u16,
    child: std::sync::Mutex<std::process::Child>,
}

static MOTO: OnceLock<Moto> = OnceLock::new();
static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

extern "C" fn stop_moto() {
    if let Some(m) = MOTO.get() {
        if let Ok(mut c) = m.child.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn moto() -> &'static Moto {
    MOTO.get_or_init(|| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start moto_server (installed by scripts/setup)");
        // SAFETY: registering a plain extern "C" fn with atexit.
        unsafe {
            libc::atexit(stop_moto);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            port,
            child: std::sync::Mutex::new(child),
        }
    })
}

/// The server's URL (`http://127.0.0.1:PORT`).
pub fn endpoint() -> String {
    format!("http://127.0.0.1:{}", moto().port)
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
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
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
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(String::from))
        .collect()
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
