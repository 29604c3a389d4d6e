//! A real `kasm-db serve` for the tests: started on a free loopback port with the test token,
//! waited for until it listens (or its database is ready), killed on drop; and one-shot
//! HTTP/1.1 requests over a plain TcpStream to 127.0.0.1.
#![allow(dead_code)]

use super::kasm_db;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "t0ken-for-tests-9f3a";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Server {
    pub child: Option<Child>,
    pub port: u16,
    pub log: tempfile::NamedTempFile,
}

impl Server {
    /// Start `serve` on a free port and wait until its database is ready (health 200).
    pub fn start(url: &str, env: &[(&str, &str)]) -> Server {
        let s = Server::start_listening(url, env);
        let deadline = Instant::now() + Duration::from_secs(60);
        while s.get("/api/__healthcheck").status != 200 {
            assert!(
                Instant::now() < deadline,
                "the database never became ready: {}",
                s.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    /// Start `serve` on a free port; return once it listens (whether or not its database is
    /// there). Listening means *our* process logged "serving" (a bare connect could reach
    /// another process that took the port first); a port lost to such a race (exit with
    /// "cannot listen") is retried on another port.
    pub fn start_listening(url: &str, env: &[(&str, &str)]) -> Server {
        for _ in 0..5 {
            let port = free_port();
            let log = tempfile::NamedTempFile::new().unwrap();
            let mut cmd = kasm_db(&["serve", "--db", url]);
            cmd.env("KASM_DB_SERVER_LISTEN", format!("127.0.0.1:{port}"))
                .env("KASM_DB_SERVER_TOKEN", TOKEN)
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log.reopen().unwrap());
            let child = cmd.spawn().expect("spawn kasm-db serve");
            let mut s = Server {
                child: Some(child),
                port,
                log,
            };
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Some(status) = s.child.as_mut().unwrap().try_wait().unwrap() {
                    if s.stderr().contains("cannot listen") {
                        break; // the port was taken meanwhile: try another
                    }
                    panic!("serve exited early ({status}): {}", s.stderr());
                }
                if s.stderr().contains("serving") {
                    return s;
                }
                assert!(
                    Instant::now() < deadline,
                    "serve did not listen: {}",
                    s.stderr()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("no free port for serve after 5 tries");
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
