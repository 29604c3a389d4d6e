//! `kasm-db serve`'s HEC receiver against published HEC client libraries, not only the project's
//! own: PyPI's `splunk_handler` with python-json-logger's JsonFormatter (events are strings
//! holding JSON), PyPI's `splunk-data-sender` (health, data channels in the URL and the header,
//! gzip, `_json` with indexed `fields`, indexer acknowledgement), and npm's `splunk-logging`
//! (Splunk's Node.js library, batched, `severity`). `scripts/setup` installs them; the client
//! scripts are in tests/clients/. HTTP goes to 127.0.0.1 only.

use crate::common::*;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "0f1e2d3c-hec-clients-t0ken";

/// `kasm-db serve` on a loopback port it picks (port 0), killed when dropped.
struct Serve {
    child: Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    /// Start it and wait until its database is ready (health 200).
    fn start(url: &str) -> Serve {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = kasm_db(&["serve", "--db", url])
            .env("KASM_DB_SERVER_LISTEN", "127.0.0.1:0")
            .env("KASM_DB_SERVER_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("spawn kasm-db serve");
        let mut s = Serve {
            child,
            port: 0,
            log,
        };
        let path = s.log.path().to_path_buf();
        s.port = crate::common::serve::wait_bound(&mut s.child, &path);
        wait_until_with(
            Duration::from_secs(60),
            "serve's database to be ready (health 200)",
            || s.get("/api/__healthcheck").0 == 200,
            || s.stderr(),
        );
        s
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// A GET over a plain TcpStream: (status, body); status 0 when nothing answers.
    fn get(&self, path: &str) -> (u16, String) {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return (0, String::new());
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        if s.write_all(req.as_bytes()).is_err() {
            return (0, String::new());
        }
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (status, body.to_string())
    }
}

fn client(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

/// Run a client to completion (bounded): its stdout; panics with its output when it fails.
fn run_client(mut cmd: Command) -> String {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the client (installed by scripts/setup)");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{cmd:?}: {stdout}\n{stderr}");
    stdout
}

#[test]
fn python_splunk_handler_with_a_json_formatter_keeps_every_field() {
    let url = fresh_db();
    let s = Serve::start(&url);
    let mut cmd = Command::new("python3");
    cmd.arg(client("hec_splunk_handler.py"))
        .arg(s.port.to_string())
        .arg(TOKEN)
        .arg("250");
    let out = run_client(cmd);
    // The handler reports failed posts on stdout and drops them.
    assert!(!out.contains("[SplunkHandler]"), "{out}");

    assert_eq!(psql(&url, "SELECT count(*) FROM logs"), "250");
    assert_eq!(
        psql(&url, "SELECT count(DISTINCT data->>'seq') FROM logs"),
        "250"
    );
    // Levels, hosts, users and applications come from the JSON inside the string event.
    assert_eq!(
        psql(
            &url,
            "SELECT string_agg(levelname || '=' || n, ',' ORDER BY levelname) FROM \
             (SELECT levelname, count(*) n FROM logs GROUP BY 1) t"
        ),
        "CRITICAL=50,DEBUG=50,ERROR=50,INFO=50,WARNING=50"
    );
    assert_eq!(
        psql(
            &url,
            "SELECT levelname, host, application, kasm_user_name, message, log_time IS NOT NULL \
             FROM logs WHERE data->>'seq' = '8'"
        ),
        "ERROR|web2|kasm_api|user0@example.com|event 8 with \"quotes\" and ünïcode|t"
    );
    // The record is the formatter's object; the envelope's metadata rides along under "hec".
    assert_eq!(
        psql(
            &url,
            "SELECT data->>'levelname', data->>'name', data->'hec'->>'index', \
                    data->'hec'->>'source', data->'hec'->>'sourcetype', data->'hec'->>'host', \
                    jsonb_typeof(data->'hec'->'time') \
             FROM logs WHERE data->>'seq' = '8'"
        ),
        "ERROR|kasm.api|kasm|kasm_api|_json|envelope-host|number"
    );
    assert!(!s.stderr().contains(TOKEN));
}

#[test]
fn python_splunk_data_sender_health_channels_fields_and_acks() {
    let url = fresh_db();
    let s = Serve::start(&url);
    // Splunk's health answer, no token needed.
    let (status, body) = s.get("/services/collector/health");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"text": "HEC is healthy", "code": 17})
    );
    let channel = "7c4a0e2b-3f1d-4b6a-9e8c-1d2f3a4b5c6d";
    let mut cmd = Command::new("python3");
    cmd.arg(client("hec_data_sender.py"))
        .arg(s.port.to_string())
        .arg(TOKEN)
        .arg(channel);
    let out = run_client(cmd);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| {
        panic!("{e}: {out}");
    });
    assert_eq!(v["health"], true, "{v}");
    // One request per channel placement, acknowledged on the same channel: ack ids 0 then 1.
    assert_eq!(
        (&v["url"]["code"], &v["url"]["ackId"]),
        (&0.into(), &0.into()),
        "{v}"
    );
    assert_eq!(v["header"]["ackId"], 1, "{v}");
    assert_eq!(
        v["url_acks"],
        serde_json::json!({"acks": {"0": true}}),
        "{v}"
    );
    assert_eq!(
        v["header_acks"],
        serde_json::json!({"acks": {"1": true}}),
        "{v}"
    );

    assert_eq!(
        psql(&url, "SELECT count(*) FROM logs WHERE levelname = 'ERROR'"),
        "6"
    );
    // `_json` makes the sender add the record as indexed `fields`; they are kept too.
    assert_eq!(
        psql(
            &url,
            "SELECT kasm_user_name, host, data->'hec'->>'source', data->'hec'->'fields'->>'seq' \
             FROM logs WHERE message = 'sender header 2'"
        ),
        "carol|agent-host|kasm-agent|2"
    );
}

#[test]
fn node_splunk_logging_batches_with_severity_and_metadata() {
    let url = fresh_db();
    let s = Serve::start(&url);
    let npm_root = Command::new("npm").args(["root", "-g"]).output().unwrap();
    let mut cmd = Command::new("node");
    cmd.arg(client("hec_splunk_logging.js"))
        .arg(s.port.to_string())
        .arg(TOKEN)
        .arg("45")
        .env(
            "NODE_PATH",
            String::from_utf8_lossy(&npm_root.stdout).trim(),
        );
    run_client(cmd);
    // 45 events in 5 requests of up to 10, each level from `severity`.
    assert_eq!(
        psql(
            &url,
            "SELECT string_agg(levelname || '=' || n, ',' ORDER BY levelname) FROM \
             (SELECT levelname, count(*) n FROM logs GROUP BY 1) t"
        ),
        "DEBUG=12,ERROR=11,INFO=11,WARNING=11"
    );
    assert_eq!(
        psql(
            &url,
            "SELECT host, message, data->>'severity', data->'hec'->>'source', \
                    data->'hec'->>'sourcetype', data->'hec'->>'index', log_time IS NOT NULL \
             FROM logs WHERE message = 'js event 3'"
        ),
        "node-host|js event 3|error|kasm-js|kasm:js|kasm|t"
    );
    let (_, metrics) = s.get("/metrics");
    assert!(
        metrics.contains("kasm_db_http_responses_total{endpoint=\"hec\",code=\"200\"} 5\n"),
        "{metrics}"
    );
}

#[test]
fn a_channel_that_is_not_a_guid_is_refused_like_splunk_does() {
    let url = fresh_db();
    let s = Serve::start(&url);
    let post = |path: &str, headers: &str, body: &str| {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Splunk {TOKEN}\r\n\
             {headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        c.write_all(req.as_bytes()).unwrap();
        let mut text = String::new();
        c.read_to_string(&mut text).unwrap();
        let body = text.split_once("\r\n\r\n").unwrap().1.to_string();
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let ev = r#"{"event":"x"}"#;
    assert_eq!(
        post("/services/collector/event?channel=nope", "", ev),
        serde_json::json!({"text": "Invalid data channel", "code": 11})
    );
    assert_eq!(
        post(
            "/services/collector/event",
            "X-Splunk-Request-Channel: nope\r\n",
            ev
        )["code"],
        11
    );
    assert_eq!(
        post("/services/collector/ack", "", r#"{"acks":[0]}"#),
        serde_json::json!({"text": "Data channel is missing", "code": 10})
    );
    // Ids never handed out on a channel are not acknowledged.
    let g = "5d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a";
    assert_eq!(
        post(
            &format!("/services/collector/ack?channel={g}"),
            "",
            r#"{"acks":[0,3]}"#
        ),
        serde_json::json!({"acks": {"0": false, "3": false}})
    );
    assert_eq!(psql(&url, "SELECT count(*) FROM logs"), "0");
}
