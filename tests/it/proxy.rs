//! Every outbound HTTP connection honours the standard proxy variables (issue 26), through a
//! real forward proxy on loopback: Debian's `tinyproxy` (installed by `scripts/setup`, started
//! here as `tinyproxy -d -c <conf>` on a free port, logging every request line to a file).
//!
//! Asserted: a backup to S3 (moto, through the AWS SDK), a HEC forward, an http-sink forward and
//! a notification each appear in the proxy's log (absolute-form request lines for `http://`
//! targets, `CONNECT` for an `https://` HEC), and arrive; with `NO_PROXY=127.0.0.1,localhost` the same jobs bypass it
//! (nothing new in its log) and still arrive. Loopback is routed through the proxy on purpose:
//! only `NO_PROXY` decides what bypasses it. With `BasicAuth` on the proxy, the credentials of
//! `https_proxy` open the tunnel, wrong ones fail with an error naming the proxy by
//! `host:port` and its refusal, and no credential ever appears in kasm-db's output. A backup to
//! Azure (Azurite) goes through it too.

use crate::common::azurite;
use crate::common::hec;
use crate::common::moto;

use crate::common::*;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOKEN: &str = "11111111-2222-3333-4444-tok3n-s3cr3t";
const PROXY_USER: &str = "kasm";
const PROXY_PASS: &str = "pr0xy-s3cret";

/// Every variable that could route (or un-route) a request: a test sets only its own.
const PROXY_VARS: &[&str] = &[
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

// ---- the proxy ----------------------------------------------------------------------------

struct Tinyproxy {
    port: u16,
    log: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Tinyproxy {
    /// A tinyproxy on a free loopback port; with `auth`, `BasicAuth user pass`.
    fn start(auth: bool) -> Tinyproxy {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("tinyproxy.log");
        let conf = dir.path().join("tinyproxy.conf");
        // Timeout: the AWS SDK's uploads through tinyproxy end only when tinyproxy closes the
        // idle connection (its default 600 s; the upload itself is whole at once).
        let mut text = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 5\nLogFile \"{}\"\nLogLevel Info\n\
             MaxClients 100\nAllow 127.0.0.1\nDisableViaHeader Yes\n",
            log.display()
        );
        if auth {
            text.push_str(&format!("BasicAuth {PROXY_USER} {PROXY_PASS}\n"));
        }
        std::fs::write(&conf, text).unwrap();
        std::fs::write(&log, "").unwrap();
        let mut cmd = Command::new("tinyproxy");
        cmd.args(["-d", "-c"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl only, between fork and exec: the proxy dies with the test process.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("tinyproxy (scripts/setup installs it)");
        wait_until(
            Duration::from_secs(10),
            format_args!("tinyproxy to listen on {port}"),
            || {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "tinyproxy exited ({status}): {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            },
        );
        Tinyproxy {
            port,
            log,
            child,
            _dir: dir,
        }
    }

    /// The proxy's URL, with `user:pass@` when given.
    fn url(&self, creds: Option<(&str, &str)>) -> String {
        match creds {
            Some((u, p)) => format!("http://{u}:{p}@127.0.0.1:{}", self.port),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    /// The request lines the proxy logged ("POST http://...", "CONNECT host:port ...").
    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once("): ").map(|(_, r)| r.to_string()))
            .filter(|r| {
                ["GET ", "PUT ", "POST ", "HEAD ", "DELETE ", "CONNECT "]
                    .iter()
                    .any(|m| r.starts_with(m))
            })
            .collect()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kasm-db` with only the given proxy variables set.
fn with_proxy(args: &[&str], vars: &[(&str, String)]) -> Command {
    let mut cmd = kasm_db(args);
    for v in PROXY_VARS {
        cmd.env_remove(v);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

async fn run_async(cmd: Command) -> Run {
    tokio::task::spawn_blocking(move || run(cmd)).await.unwrap()
}

// ---- a notification receiver ----------------------------------------------------------------

struct Receiver {
    port: u16,
    paths: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers 200 to every POST and keeps its path.
async fn receiver() -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let paths: Arc<Mutex<Vec<String>>> = Arc::default();
    let kept = paths.clone();
    let app = axum::Router::new()
        .fallback(move |uri: axum::http::Uri| {
            let kept = kept.clone();
            async move {
                kept.lock().unwrap().push(uri.path().to_string());
                axum::http::StatusCode::OK
            }
        })
        .into_make_service();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Receiver { port, paths, task }
}

// ---- the jobs -------------------------------------------------------------------------------

/// A migrated database with `n` INFO rows for `forward` to send.
fn db_with_rows(n: u64) -> String {
    let url = fresh_db();
    let r = run(kasm_db(&["--db", &url, "migrate"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    psql(
        &url,
        &format!(
            "CREATE TABLE logs_logs_all PARTITION OF logs_logs FOR VALUES FROM (MINVALUE) TO (MAXVALUE);
             INSERT INTO logs (log_id, ingest_date, log_time, levelname, host, application, kasm_user_name, message, data)
             SELECT gen_random_uuid(), timestamptz '2026-11-24 00:00:00+00' + g * interval '1 ms',
                    timestamptz '2026-11-23 00:00:00+00' + g * interval '1 s', 'INFO', 'web1', 'kasm_api', 'alice',
                    'event ' || g, jsonb_build_object('seq', g, 'message', 'event ' || g)
               FROM generate_series(0, {}) g;",
            n - 1
        ),
    );
    url
}

fn siem_config(dir: &Path, url: &str, extra: &str) -> PathBuf {
    let path = dir.join("kasm-db.toml");
    std::fs::write(
        &path,
        format!(
            "[siem]\nkind = \"splunk-hec\"\nurl = \"{url}\"\ntoken = \"{TOKEN}\"\nspool_dir = \"{}\"\n\
             batch_events = 200\nbatch_wait_ms = 5\nrequest_timeout_secs = 5\n{extra}",
            dir.join("spool").display()
        ),
    )
    .unwrap();
    path
}

/// `kasm-db backup` of `db` to `to`, notifying `hook` of its success.
fn backup_notified(db: &str, to: &str, hook: &str, vars: &[(&str, String)]) -> Command {
    let mut cmd = with_proxy(&["backup", "--json", "--db", db, "--to", to], vars);
    cmd.envs(moto::env())
        .env("KASM_DB_NOTIFY_URLS", format!("[\"{hook}\"]"))
        .env("KASM_DB_NOTIFY_ON", "success");
    cmd
}

fn assert_no_secrets(r: &Run) {
    for s in [TOKEN, PROXY_PASS, "wr0ng-pass"] {
        assert!(!r.stdout.contains(s), "{s} in stdout: {}", r.stdout);
        assert!(!r.stderr.contains(s), "{s} in stderr: {}", r.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_hec_and_notifications_go_through_the_proxy_and_no_proxy_bypasses_it() {
    let proxy = Tinyproxy::start(false);
    let hook = receiver().await;
    let hec = hec::start(TOKEN, false).await;
    let port_of = |url: &str| {
        let rest = url.split_once("://").unwrap().1;
        let authority = rest.split('/').next().unwrap();
        authority.rsplit(':').next().unwrap().to_string()
    };
    let hec_port = port_of(&hec.url);
    let moto_port = port_of(&moto::endpoint());
    let (db, rows) = tokio::task::spawn_blocking(|| (fresh_db(), db_with_rows(40)))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let conf = siem_config(dir.path(), &hec.url, "");
    let conf = conf.to_str().unwrap().to_string();

    // Through the proxy: http_proxy routes every http:// target, loopback included.
    let vars = vec![("http_proxy", proxy.url(None))];
    let bucket = tokio::task::spawn_blocking(moto::bucket).await.unwrap();
    let hook_url = format!("http://127.0.0.1:{}/hook/via-proxy", hook.port);
    let r = run_async(backup_notified(
        &db,
        &format!("s3://{bucket}/kasm"),
        &hook_url,
        &vars,
    ))
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r2 = run_async(with_proxy(
        &["--config", &conf, "--db", &rows, "--json", "forward"],
        &vars,
    ))
    .await;
    assert_eq!(r2.code, 0, "{}\n{}", r2.stdout, r2.stderr);
    assert_eq!(hec.state.events().len(), 40);
    assert_eq!(
        hook.paths.lock().unwrap().clone(),
        vec!["/hook/via-proxy".to_string()]
    );
    let seen = proxy.requests();
    let through = |needle: &str| seen.iter().any(|l| l.contains(needle));
    assert!(
        through(&format!("PUT http://127.0.0.1:{moto_port}/{bucket}/")),
        "the S3 upload is not in the proxy's log: {seen:#?}"
    );
    assert!(
        through(&format!(
            "POST http://127.0.0.1:{hec_port}/services/collector"
        )),
        "the HEC POST is not in the proxy's log: {seen:#?}"
    );
    assert!(
        through(&format!("POST {hook_url} ")),
        "the notification is not in the proxy's log: {seen:#?}"
    );
    assert_no_secrets(&r);
    assert_no_secrets(&r2);

    // The http sink (NDJSON) takes the same path.
    let ndjson = format!("http://127.0.0.1:{}/siem/ndjson", hook.port);
    let dir3 = tempfile::tempdir().unwrap();
    let conf3 = dir3.path().join("kasm-db.toml");
    std::fs::write(
        &conf3,
        format!(
            "[siem]\nkind = \"http\"\nurl = \"{ndjson}\"\ntoken = \"{TOKEN}\"\nspool_dir = \"{}\"\n\
             batch_wait_ms = 5\nrequest_timeout_secs = 5\n",
            dir3.path().join("spool").display()
        ),
    )
    .unwrap();
    let rows3 = tokio::task::spawn_blocking(|| db_with_rows(5))
        .await
        .unwrap();
    let r3 = run_async(with_proxy(
        &[
            "--config",
            conf3.to_str().unwrap(),
            "--db",
            &rows3,
            "forward",
        ],
        &vars,
    ))
    .await;
    assert_eq!(r3.code, 0, "{}\n{}", r3.stdout, r3.stderr);
    assert!(hook.paths.lock().unwrap().contains(&"/siem/ndjson".into()));
    assert!(
        proxy
            .requests()
            .iter()
            .any(|l| l.starts_with(&format!("POST {ndjson} "))),
        "the http sink's POST is not in the proxy's log: {:#?}",
        proxy.requests()
    );
    assert_no_secrets(&r3);

    // NO_PROXY names loopback: the same jobs go around the proxy.
    let before = proxy.requests().len();
    let mut vars = vars.clone();
    vars.push(("NO_PROXY", "127.0.0.1,localhost".into()));
    let hook_url = format!("http://127.0.0.1:{}/hook/direct", hook.port);
    let r = run_async(backup_notified(
        &db,
        &format!("s3://{bucket}/direct"),
        &hook_url,
        &vars,
    ))
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows2 = tokio::task::spawn_blocking(|| db_with_rows(10))
        .await
        .unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let conf2 = siem_config(dir2.path(), &hec.url, "");
    let r2 = run_async(with_proxy(
        &[
            "--config",
            conf2.to_str().unwrap(),
            "--db",
            &rows2,
            "forward",
        ],
        &vars,
    ))
    .await;
    assert_eq!(r2.code, 0, "{}\n{}", r2.stdout, r2.stderr);
    assert_eq!(hec.state.events().len(), 50);
    assert!(hook.paths.lock().unwrap().contains(&"/hook/direct".into()));
    let b = bucket.clone();
    let keys = tokio::task::spawn_blocking(move || moto::keys(&b))
        .await
        .unwrap();
    assert!(keys.iter().any(|k| k.starts_with("direct/")), "{keys:?}");
    assert_eq!(
        proxy.requests().len(),
        before,
        "NO_PROXY did not bypass the proxy: {:#?}",
        &proxy.requests()[before..]
    );
}

/// A self-signed server certificate for 127.0.0.1 (openssl).
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

fn server_tls(cert: &Path, key: &Path) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(kasm_db::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    Arc::new(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_hec_tunnels_with_the_proxy_credentials_and_wrong_ones_are_a_clear_error() {
    let proxy = Tinyproxy::start(true);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let hec = hec::start_with(TOKEN, false, Some(server_tls(&cert, &key))).await;
    assert!(hec.url.starts_with("https://"), "{}", hec.url);
    let hec_authority = hec.url.trim_start_matches("https://").to_string();
    let hec_authority = hec_authority.split('/').next().unwrap().to_string();
    let rows = tokio::task::spawn_blocking(|| db_with_rows(30))
        .await
        .unwrap();
    let conf = siem_config(dir.path(), &hec.url, "insecure_skip_verify = true\n");

    // https_proxy with the right credentials: a CONNECT tunnel, TLS to HEC inside it.
    let vars = vec![("HTTPS_PROXY", proxy.url(Some((PROXY_USER, PROXY_PASS))))];
    let r = run_async(with_proxy(
        &[
            "--config",
            conf.to_str().unwrap(),
            "--db",
            &rows,
            "-v",
            "forward",
        ],
        &vars,
    ))
    .await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(hec.state.events().len(), 30);
    let seen = proxy.requests();
    assert!(
        seen.iter()
            .any(|l| l.starts_with(&format!("CONNECT {hec_authority} "))),
        "no CONNECT to {hec_authority} in the proxy's log: {seen:#?}"
    );
    assert_no_secrets(&r);

    // Wrong credentials on a notification to an https URL: the proxy refuses the tunnel (tinyproxy
    // says 401, not 407); the job still succeeds, the warning names the proxy by host:port and
    // its refusal, never the credentials.
    let db = tokio::task::spawn_blocking(fresh_db).await.unwrap();
    let backups = tempfile::tempdir().unwrap();
    let vars = vec![("https_proxy", proxy.url(Some((PROXY_USER, "wr0ng-pass"))))];
    let before = proxy.requests().len();
    let r = run_async(backup_notified(
        &db,
        backups.path().to_str().unwrap(),
        &format!("https://127.0.0.1:{}/hook", free_port()),
        &vars,
    ))
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let named = format!("proxy 127.0.0.1:{} refused to reach 127.0.0.1:", proxy.port);
    assert!(
        r.stderr.contains(&named) && r.stderr.contains("401 Unauthorized"),
        "the warning does not say {named}... 401: {}",
        r.stderr
    );
    assert!(
        proxy.requests()[before..]
            .iter()
            .all(|l| l.starts_with("CONNECT ")),
        "{:#?}",
        proxy.requests()
    );
    assert_no_secrets(&r);
    assert!(!proxy.log_text().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_azure_backup_goes_through_the_proxy_unless_no_proxy_names_it() {
    let proxy = Tinyproxy::start(false);
    let (db, container, endpoint) = tokio::task::spawn_blocking(|| {
        (fresh_db(), azurite::container(), azurite::blob_endpoint())
    })
    .await
    .unwrap();
    let backup = |prefix: &str, vars: &[(&str, String)]| {
        let to = format!("az://{container}/{prefix}");
        let mut cmd = with_proxy(&["backup", "--json", "--db", &db, "--to", &to], vars);
        cmd.envs(azurite::env());
        cmd
    };
    let vars = vec![("http_proxy", proxy.url(None))];
    let r = run_async(backup("via", &vars)).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let seen = proxy.requests();
    let put = format!("PUT {endpoint}/{container}/via/");
    assert!(
        seen.iter().any(|l| l.starts_with(&put)),
        "no {put}... in the proxy's log: {seen:#?}"
    );

    let before = seen.len();
    let mut vars = vars.clone();
    vars.push(("no_proxy", "localhost, .example.com, 127.0.0.1".into()));
    let r = run_async(backup("direct", &vars)).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        proxy.requests().len(),
        before,
        "no_proxy did not bypass the proxy: {:#?}",
        &proxy.requests()[before..]
    );
    let c = container.clone();
    let blobs = tokio::task::spawn_blocking(move || azurite::blobs(&c))
        .await
        .unwrap();
    assert!(blobs.iter().any(|b| b.starts_with("direct/")), "{blobs:?}");
    assert!(blobs.iter().any(|b| b.starts_with("via/")), "{blobs:?}");
}
