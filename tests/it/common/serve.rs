//! A real `kasm-db serve` for the tests: started on port 0 of 127.0.0.1 with the test token (it
//! reports the port it was given), waited for until it listens (or its database is ready),
//! killed on drop; and one-shot HTTP/1.1 requests over a plain TcpStream to 127.0.0.1.
#![allow(dead_code)]

use super::{kasm_db, wait_for_some, wait_until_with};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "t0ken-for-tests-9f3a";

pub struct Server {
    pub child: Option<Child>,
    pub port: u16,
    pub log: tempfile::NamedTempFile,
}

impl Server {
    /// Start `serve` on a port of its own and wait until its database is ready (health 200).
    pub fn start(url: &str, env: &[(&str, &str)]) -> Server {
        let s = Server::start_listening(url, env);
        wait_until_with(
            Duration::from_secs(60),
            "the database of serve to be ready (health 200)",
            || s.get("/api/__healthcheck").status == 200,
            || s.stderr(),
        );
        s
    }

    /// Start `serve` on port 0 of 127.0.0.1; return once it listens (whether or not its
    /// database is there), on the port it reports in its "serving" line. That line is written
    /// by *our* process once it is bound: no other process can have the port.
    pub fn start_listening(url: &str, env: &[(&str, &str)]) -> Server {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = kasm_db(&["serve", "--db", url]);
        cmd.env("KASM_DB_SERVER_LISTEN", "127.0.0.1:0")
            .env("KASM_DB_SERVER_TOKEN", TOKEN)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap());
        let mut s = Server {
            child: Some(cmd.spawn().expect("spawn kasm-db serve")),
            port: 0,
            log,
        };
        // A panic here drops `s`, which kills the child.
        let path = s.log.path().to_path_buf();
        s.port = wait_bound(s.child.as_mut().unwrap(), &path);
        s
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Send `sig`, wait up to `limit` for the exit; its code (None: still running, killed).
    pub fn signal_and_wait(&mut self, sig: i32, limit: Duration) -> Option<i32> {
        // SAFETY: kill on our own child.
        unsafe {
            libc::kill(self.pid(), sig);
        }
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            // Polling for the exit; running out of `limit` is an answer here, not a failure.
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        http(self.port, "POST", path, headers, body)
    }

    pub fn get(&self, path: &str) -> Resp {
        http(self.port, "GET", path, &[], b"")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// One HTTP/1.1 request with `Connection: close`. `headers` may set Transfer-Encoding, in
/// which case `body` is sent as given (already chunked).
pub fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    let chunked = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding"));
    if !chunked {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut wire = req.into_bytes();
    wire.extend_from_slice(body);
    // The server may answer (413) and stop reading before the whole body is sent.
    let _ = s.write_all(&wire);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {text:?}"));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Resp {
        status,
        headers: head.to_ascii_lowercase(),
        body,
    }
}

/// Wait until the `serve` in `child`, its stderr going to `log`, listens; the port it reports
/// (see [`bound_port`]). Panics with its log if it exits first or takes a minute.
pub fn wait_bound(child: &mut Child, log: &std::path::Path) -> u16 {
    let read = || std::fs::read_to_string(log).unwrap_or_default();
    wait_for_some(Duration::from_secs(60), "serve to listen", || {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("serve exited early ({status}): {}", read());
        }
        bound_port(&read())
    })
}

/// The port in `serve`'s "serving" line (`listen=127.0.0.1:PORT` as text,
/// `"listen":"127.0.0.1:PORT"` as JSON), once it is there.
pub fn bound_port(log: &str) -> Option<u16> {
    log.lines().filter(|l| l.contains("serving")).find_map(|l| {
        let (_, rest) = l
            .split_once("listen=")
            .or_else(|| l.split_once("\"listen\":\""))?;
        let addr: String = rest
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '"')
            .collect();
        let port = addr.rsplit_once(':')?.1.parse().ok()?;
        (port != 0).then_some(port)
    })
}

pub fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    out
}

#[test]
fn the_bound_port_is_read_from_text_and_json_serving_lines() {
    let text = "2026-12-07T11:00:00Z  INFO serving listen=127.0.0.1:41234 tls=false\n";
    assert_eq!(bound_port(text), Some(41234));
    let json =
        r#"{"level":"INFO","fields":{"message":"serving","listen":"127.0.0.1:41235","tls":false}}"#;
    assert_eq!(bound_port(json), Some(41235));
    // Not yet bound, or the configured port 0 only: no port.
    assert_eq!(bound_port("INFO scheduled (UTC) job=\"backup\"\n"), None);
    assert_eq!(
        bound_port("INFO serving listen=127.0.0.1:0 tls=false"),
        None
    );
}
