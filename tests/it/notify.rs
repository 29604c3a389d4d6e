//! `[notify]` end to end: the real binary's jobs (backup to a directory on a throwaway
//! cluster, `backups verify`, purge, vacuum, restore, and `serve`'s scheduled purge) POST
//! their notifications to real HTTP receivers on loopback: one written here (axum), and one
//! built on Python's standard `http.server` (an HTTP implementation nobody here wrote),
//! reached at a healthchecks.io-style ping path.
//!
//! Asserted: the body's fields on success and on failure (with the job's exit code the same as
//! without notifications), a receiver that is down or never answers costs a warning and never
//! the job's result (the wait is bounded: the job finishes, and the warning says it timed
//! out), a 503 is retried, the token goes in the Authorization header and never into stdout,
//! stderr or `--json`, bad `[notify]` keys are exit 2, and `serve` counts deliveries in
//! `/metrics`.

use crate::common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "notify-t0ken-7c1e5b";
const PING: &str = "/ping/5b7f0e1c-uuid-s3cr3t";

// ---- a receiver written here -------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// 200 to everything.
    Ok,
    /// Takes the request and never answers.
    Hang,
    /// 503 to the first request, then 200.
    FailOnce,
}

#[derive(Debug, Clone)]
struct Got {
    path: String,
    auth: Option<String>,
    content_type: Option<String>,
    body: Value,
}

struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Got>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    fn start(mode: Mode) -> Receiver {
        use axum::extract::State;
        use axum::http::{HeaderMap, StatusCode, Uri};
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        type St = (Arc<Mutex<Vec<Got>>>, Mode);
        async fn handle(
            State((got, mode)): State<St>,
            uri: Uri,
            headers: HeaderMap,
            body: axum::body::Bytes,
        ) -> StatusCode {
            let header = |n: &str| {
                headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .map(String::from)
            };
            let n = {
                let mut g = got.lock().unwrap();
                g.push(Got {
                    path: uri.to_string(),
                    auth: header("authorization"),
                    content_type: header("content-type"),
                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                });
                g.len()
            };
            match mode {
                Mode::Ok => StatusCode::OK,
                Mode::FailOnce if n == 1 => StatusCode::SERVICE_UNAVAILABLE,
                Mode::FailOnce => StatusCode::OK,
                Mode::Hang => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    StatusCode::OK
                }
            }
        }
        let app = axum::Router::new()
            .fallback(axum::routing::post(handle))
            .with_state((got.clone(), mode));
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            port,
            got,
            _runtime: runtime,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

// ---- a receiver on Python's http.server ------------------------------------------------

const PY_RECEIVER: &str = r#"
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

out = open(sys.argv[1], "a", buffering=1)

class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        out.write(json.dumps({"path": self.path,
                              "auth": self.headers.get("Authorization"),
                              "content_type": self.headers.get("Content-Type"),
                              "body": body.decode()}) + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")
    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

struct PyReceiver {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl PyReceiver {
    fn start() -> PyReceiver {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("receiver.py"), PY_RECEIVER).unwrap();
        let mut child = Command::new("python3")
            .arg(dir.path().join("receiver.py"))
            .arg(dir.path().join("got.jsonl"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 (scripts/setup)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the receiver's port");
        PyReceiver { child, port, dir }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn got(&self) -> Vec<Got> {
        let text = std::fs::read_to_string(self.dir.path().join("got.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                Got {
                    path: v["path"].as_str().unwrap().into(),
                    auth: v["auth"].as_str().map(String::from),
                    content_type: v["content_type"].as_str().map(String::from),
                    body: serde_json::from_str(v["body"].as_str().unwrap()).unwrap(),
                }
            })
            .collect()
    }
}

impl Drop for PyReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- helpers ---------------------------------------------------------------------------

/// A loopback port nothing listens on.
fn dead_port() -> u16 {
    free_port()
}

/// `kasm-db` with `[notify]` from the environment.
fn notified(args: &[&str], urls: &[String], on: &str) -> Command {
    let mut cmd = kasm_db(args);
    cmd.env("KASM_DB_NOTIFY_URLS", format!("[{}]", quoted(urls)))
        .env("KASM_DB_NOTIFY_ON", on)
        .env("KASM_DB_NOTIFY_TOKEN", TOKEN);
    cmd
}

fn quoted(urls: &[String]) -> String {
    urls.iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The token and the ping URL's secret appear nowhere the user sees.
fn assert_no_secrets(r: &Run) {
    for s in [TOKEN, "s3cr3t"] {
        assert!(!r.stdout.contains(s), "{s} in stdout: {}", r.stdout);
        assert!(!r.stderr.contains(s), "{s} in stderr: {}", r.stderr);
    }
}

fn backup(db: &str, dir: &Path) -> Vec<String> {
    vec![
        "backup".into(),
        "--json".into(),
        "--db".into(),
        db.into(),
        "--to".into(),
        dir.to_str().unwrap().into(),
    ]
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn statuses(got: &[Got]) -> Vec<String> {
    got.iter()
        .map(|g| {
            format!(
                "{}:{}",
                g.body["job"].as_str().unwrap_or("?"),
                g.body["status"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

// ---- tests -----------------------------------------------------------------------------

#[test]
fn a_backup_notifies_start_and_success_with_its_id_to_both_receivers() {
    let db = fresh_db();
    let dir = tempfile::tempdir().unwrap();
    let ours = Receiver::start(Mode::Ok);
    let py = PyReceiver::start();
    let urls = [ours.url("/kasm-db?source=test"), py.url(PING)];
    let r = run(notified(
        &args(&backup(&db, dir.path())),
        &urls,
        "start,success,failure",
    ));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_no_secrets(&r);
    let id = json(&r)["id"].as_str().unwrap().to_string();
    for (who, got) in [("axum", ours.got()), ("http.server", py.got())] {
        assert_eq!(statuses(&got), ["backup:start", "backup:success"], "{who}");
        for g in &got {
            assert_eq!(
                g.auth.as_deref(),
                Some(format!("Bearer {TOKEN}").as_str()),
                "{who}"
            );
            assert_eq!(g.content_type.as_deref(), Some("application/json"), "{who}");
        }
        let (start, done) = (&got[0].body, &got[1].body);
        assert_eq!(
            got[1].path,
            if who == "axum" {
                "/kasm-db?source=test"
            } else {
                PING
            }
        );
        assert_eq!(done["target"], dir.path().to_str().unwrap(), "{who}");
        assert_eq!(done["backup"], id.as_str(), "{who}");
        assert!(done["error"].is_null(), "{who}: {done}");
        assert!(!done["host"].as_str().unwrap().is_empty(), "{who}");
        assert!(done["duration_s"].as_f64().unwrap() > 0.0, "{who}: {done}");
        assert!(
            start["duration_s"].is_null() && start["backup"].is_null(),
            "{start}"
        );
        // Both moments name the same start, as RFC 3339.
        assert_eq!(start["started"], done["started"]);
        chrono::DateTime::parse_from_rfc3339(done["started"].as_str().unwrap()).unwrap();
        let body = done.to_string();
        assert!(!body.contains(TOKEN) && !body.contains("s3cr3t"), "{body}");
    }
}

#[test]
fn a_failed_backup_notifies_the_error_and_keeps_its_exit_code() {
    // A database nobody listens on: the backup fails the same way with or without [notify].
    let password = "pw-of-an-absent-db-4d2a";
    let db = format!("postgres://kasm:{password}@127.0.0.1:{}/kasm", dead_port());
    let dir = tempfile::tempdir().unwrap();
    let ours = Receiver::start(Mode::Ok);
    let a = backup(&db, dir.path());
    let mut plain = kasm_db(&args(&a));
    plain.env("KASM_DB_DATABASE_CONNECT_ATTEMPTS", "1");
    let plain = run(plain);
    assert_ne!(plain.code, 0);
    let mut cmd = notified(&args(&a), &[ours.url("/hook")], "failure");
    cmd.env("KASM_DB_DATABASE_CONNECT_ATTEMPTS", "1");
    let r = run(cmd);
    assert_eq!(r.code, plain.code, "{}", r.stderr);
    assert_no_secrets(&r);
    let got = ours.got();
    assert_eq!(statuses(&got), ["backup:failure"]);
    let b = &got[0].body;
    assert!(b["backup"].is_null(), "{b}");
    assert!(b["duration_s"].as_f64().is_some(), "{b}");
    let error = b["error"].as_str().unwrap();
    assert!(
        !error.is_empty() && r.stderr.contains(error),
        "{error} / {}",
        r.stderr
    );
    assert!(!b.to_string().contains(password), "{b}");
}

#[test]
fn a_receiver_that_is_down_is_a_warning_and_the_job_still_succeeds() {
    let db = fresh_db();
    let dir = tempfile::tempdir().unwrap();
    let port = dead_port();
    let url = format!("http://127.0.0.1:{port}{PING}?key=s3cr3t");
    let r = run(notified(&args(&backup(&db, dir.path())), &[url], "success"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    json(&r); // stdout is still the report
    assert!(
        r.stderr.contains("notification not delivered")
            && r.stderr
                .contains(&format!("notify.urls[0] http://127.0.0.1:{port}"))
            && r.stderr.contains("attempts=3"),
        "{}",
        r.stderr
    );
    assert_no_secrets(&r);
}

#[test]
fn a_receiver_that_never_answers_is_given_up_on_and_the_job_still_succeeds() {
    let db = fresh_db();
    let dir = tempfile::tempdir().unwrap();
    let slow = Receiver::start(Mode::Hang);
    let r = run(notified(
        &args(&backup(&db, dir.path())),
        &[slow.url("/slow")],
        "success",
    ));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("timed out"), "{}", r.stderr);
    // Each attempt reached the receiver; there were a bounded number of them.
    assert_eq!(statuses(&slow.got()), ["backup:success"; 3]);
    assert_no_secrets(&r);
}

#[test]
fn a_503_is_retried_and_then_delivered_without_a_warning() {
    let db = fresh_db();
    let dir = tempfile::tempdir().unwrap();
    let flaky = Receiver::start(Mode::FailOnce);
    let r = run(notified(
        &args(&backup(&db, dir.path())),
        &[flaky.url("/")],
        "success",
    ));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(statuses(&flaky.got()), ["backup:success"; 2]);
    assert!(!r.stderr.contains("not delivered"), "{}", r.stderr);
}

#[test]
fn verify_purge_vacuum_and_restore_notify_as_their_jobs() {
    let db = fresh_db();
    let r = run(kasm_db(&["migrate", "--db", &db]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dir = tempfile::tempdir().unwrap();
    let ours = Receiver::start(Mode::Ok);
    let urls = [ours.url("/")];
    let from = dir.path().to_str().unwrap();
    let b = run(kasm_db(&args(&backup(&db, dir.path()))));
    assert_eq!(b.code, 0, "{}", b.stderr);
    let id = json(&b)["id"].as_str().unwrap().to_string();
    let on = "success,failure";
    let into = with_primary(|c| c.url("notify_restored"));
    for (cmd, code) in [
        (vec!["backups", "verify", "--json", "--from", from], 0),
        (
            vec![
                "backups",
                "verify",
                "no-such-backup",
                "--json",
                "--from",
                from,
            ],
            1,
        ),
        (vec!["purge", "--json", "--db", &db], 0),
        (vec!["purge", "--dry-run", "--json", "--db", &db], 0),
        (vec!["vacuum", "--json", "--db", &db], 0),
        (
            vec!["restore", "--json", "--from", from, "--target", &into],
            0,
        ),
    ] {
        let r = run(notified(&cmd, &urls, on));
        assert_eq!(r.code, code, "{cmd:?}: {}", r.stderr);
        assert_no_secrets(&r);
    }
    let got = ours.got();
    assert_eq!(
        statuses(&got),
        [
            "verify:success",
            "verify:failure",
            "purge:success",
            // (a dry run is no run of the job: no notification)
            "vacuum:success",
            "restore:success"
        ]
    );
    let body = |i: usize| &got[i].body;
    assert_eq!(
        (body(0)["backup"].as_str(), body(0)["target"].as_str()),
        (Some(id.as_str()), Some(from))
    );
    assert_eq!(body(1)["backup"], "no-such-backup");
    assert!(
        body(1)["error"]
            .as_str()
            .unwrap()
            .contains("no-such-backup"),
        "{}",
        body(1)
    );
    // The database is shown as everywhere else: user@host:port/db, no password.
    let dbname = db.rsplit('/').next().unwrap();
    for i in [2, 3] {
        let t = body(i)["target"].as_str().unwrap();
        assert!(t.ends_with(&format!("/{dbname}")) && t.contains('@'), "{t}");
    }
    let pw = with_primary(|c| c.password.expose().to_string());
    assert_eq!(body(4)["backup"], id.as_str());
    assert!(
        body(4)["target"]
            .as_str()
            .unwrap()
            .ends_with("/notify_restored")
    );
    for g in &got {
        assert!(!g.body.to_string().contains(&pw), "{}", g.body);
    }
}

#[test]
fn bad_notify_settings_are_exit_2_naming_the_key() {
    let db = fresh_db();
    let r = run(notified(
        &["purge", "--db", &db],
        &["http://127.0.0.1:9/".into()],
        "failed",
    ));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("notify.on") && r.stderr.contains("\"failed\""),
        "{}",
        r.stderr
    );
    let r = run(notified(
        &["purge", "--db", &db],
        &["https://user:pw-s3cr3t@hooks.example/x".into()],
        "failure",
    ));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("notify.token"), "{}", r.stderr);
    assert_no_secrets(&r);
    let r = run(notified(
        &["purge", "--db", &db],
        &["ftp://h/x".into()],
        "failure",
    ));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("http or https"), "{}", r.stderr);
}

#[test]
fn serve_notifies_its_scheduled_jobs_and_counts_deliveries() {
    let db = fresh_db();
    let ours = Receiver::start(Mode::Ok);
    let dead = format!("http://127.0.0.1:{}/", dead_port());
    let port = dead_port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = notified(
        &["serve", "--db", &db],
        &[ours.url("/serve"), dead],
        "success",
    );
    cmd.env("KASM_DB_SERVER_LISTEN", format!("127.0.0.1:{port}"))
        .env("KASM_DB_SERVER_TOKEN", "serve-token-for-notify-tests")
        .env("KASM_DB_SCHEDULE_PURGE", "* * * * * *")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap());
    let mut child = cmd.spawn().unwrap();
    let stderr = || std::fs::read_to_string(log.path()).unwrap_or_default();
    let metrics = || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        use std::io::{Read, Write};
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        Some(text)
    };
    let failures = "kasm_db_notify_failures_total{job=\"purge\"} ";
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let text = metrics().unwrap_or_default();
        let failed = text
            .lines()
            .find_map(|l| l.strip_prefix(failures)?.parse::<f64>().ok())
            .unwrap_or(0.0);
        if failed >= 1.0 && !ours.got().is_empty() {
            break text;
        }
        assert!(
            Instant::now() < deadline && child.try_wait().unwrap().is_none(),
            "no scheduled notification: {}",
            stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = child.kill();
    let _ = child.wait();
    let g = &ours.got()[0];
    assert_eq!(g.path, "/serve");
    assert_eq!(
        (g.body["job"].as_str(), g.body["status"].as_str()),
        (Some("purge"), Some("success"))
    );
    assert_eq!(g.auth.as_deref(), Some(format!("Bearer {TOKEN}").as_str()));
    assert!(
        text.contains("kasm_db_notify_deliveries_total{job=\"purge\",result=\"ok\"}"),
        "{text}"
    );
    assert!(
        stderr().contains("notification not delivered"),
        "{}",
        stderr()
    );
    assert!(!stderr().contains(TOKEN) && !text.contains(TOKEN));
}

#[test]
fn an_https_url_is_spoken_to_in_tls_and_a_failed_handshake_is_only_a_warning() {
    // A plain-HTTP receiver behind an https:// URL: the client must try TLS (and fail the
    // handshake), never send the body (or the token) in the clear.
    let db = fresh_db();
    let dir = tempfile::tempdir().unwrap();
    let plain = Receiver::start(Mode::Ok);
    let url = format!("https://127.0.0.1:{}/hook", plain.port);
    let r = run(notified(&args(&backup(&db, dir.path())), &[url], "success"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("notification not delivered") && r.stderr.contains("TLS"),
        "{}",
        r.stderr
    );
    assert!(plain.got().is_empty(), "{:?}", plain.got());
    assert_no_secrets(&r);
}
