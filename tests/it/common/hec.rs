//! A Splunk HTTP Event Collector for the tests, on 127.0.0.1, answering like Splunk: token
//! checks (401 code 2 "Token is required", 401 code 3 "Invalid authorization", 403 code 4
//! "Invalid token"), gzip bodies, concatenated envelopes, 400 code 5 "No data", 400 code 6
//! "Invalid data format" with `invalid-event-number` (events before it are indexed, none after),
//! 503 code 9 "Server is busy", indexer acknowledgement (code 14 "ACK is disabled" when off),
//! and scripted dropped connections. It records every event it indexed.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What the next event POST gets instead of normal handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 503 `{"text":"Server is busy","code":9}`; nothing indexed.
    Busy,
    /// The connection is closed before any answer; nothing indexed.
    Drop,
    /// Everything is indexed, then the connection is closed without an answer.
    DropAfterIndex,
}

#[derive(Default)]
pub struct State {
    pub token: String,
    pub ack_enabled: bool,
    /// Answer every event POST with 503 busy while set.
    pub busy: AtomicBool,
    /// When non-zero, a POST of more events than this is refused with 413.
    pub max_events: std::sync::atomic::AtomicUsize,
    faults: Mutex<VecDeque<Fault>>,
    /// The envelopes indexed, in order.
    pub events: Mutex<Vec<Value>>,
    pub posts: AtomicU64,
    pub gzip_posts: AtomicU64,
    pub ack_polls: AtomicU64,
    pub auth_failures: AtomicU64,
    next_ack: AtomicU64,
    /// Every Authorization header value seen (to check what the client sent).
    pub auth_headers: Mutex<Vec<String>>,
    pub channels: Mutex<HashMap<String, u64>>,
}

impl State {
    pub fn push_faults(&self, faults: &[Fault]) {
        self.faults.lock().unwrap().extend(faults.iter().copied());
    }
    pub fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }
    /// The `seq` field of every indexed event, and how many arrived more than once.
    pub fn seqs(&self) -> (std::collections::BTreeSet<u64>, u64) {
        let mut set = std::collections::BTreeSet::new();
        let mut dups = 0;
        for e in self.events.lock().unwrap().iter() {
            if let Some(s) = e["event"]["seq"].as_u64() {
                if !set.insert(s) {
                    dups += 1;
                }
            }
        }
        (set, dups)
    }
}

pub struct Hec {
    pub url: String,
    pub state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hec {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Start a receiver on a random loopback port (on the current tokio runtime).
pub async fn start(token: &str, ack_enabled: bool) -> Hec {
    start_with(token, ack_enabled, None).await
}

/// Like [`start`], over HTTPS with the given server configuration.
pub async fn start_with(
    token: &str,
    ack_enabled: bool,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Hec {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(State {
        token: token.to_string(),
        ack_enabled,
        ..State::default()
    });
    let st = state.clone();
    let https = tls.is_some();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (st, tls) = (st.clone(), tls.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle(st.clone(), req));
                let http = hyper::server::conn::http1::Builder::new();
                match tls {
                    None => {
                        let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                    }
                    Some(cfg) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
                        if let Ok(s) = acceptor.accept(stream).await {
                            let _ = http.serve_connection(TokioIo::new(s), svc).await;
                        }
                    }
                }
            });
        }
    });
    let scheme = if https { "https" } else { "http" };
    Hec {
        url: format!("{scheme}://{addr}/services/collector/event"),
        state,
        task,
    }
}

type Resp = Result<Response<Full<Bytes>>, std::io::Error>;

fn answer(status: u16, body: Value) -> Resp {
    Ok(Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap())
}

fn dropped() -> Resp {
    Err(std::io::Error::other(
        "connection dropped by the test receiver",
    ))
}

fn check_auth(st: &State, req: &Request<Incoming>) -> Option<Resp> {
    let Some(h) = req.headers().get("authorization") else {
        st.auth_failures.fetch_add(1, Ordering::Relaxed);
        return Some(answer(401, json!({"text":"Token is required","code":2})));
    };
    let h = h.to_str().unwrap_or("").to_string();
    st.auth_headers.lock().unwrap().push(h.clone());
    let Some(tok) = h.strip_prefix("Splunk ") else {
        st.auth_failures.fetch_add(1, Ordering::Relaxed);
        return Some(answer(
            401,
            json!({"text":"Invalid authorization","code":3}),
        ));
    };
    if tok != st.token {
        st.auth_failures.fetch_add(1, Ordering::Relaxed);
        return Some(answer(403, json!({"text":"Invalid token","code":4})));
    }
    None
}

async fn handle(st: Arc<State>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    if path == "/services/collector/health" {
        return answer(200, json!({"text":"HEC is healthy","code":17}));
    }
    if let Some(r) = check_auth(&st, &req) {
        return r;
    }
    let channel = req
        .headers()
        .get("x-splunk-request-channel")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let gzip = req
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v == "gzip");
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    match path.as_str() {
        "/services/collector/ack" => {
            st.ack_polls.fetch_add(1, Ordering::Relaxed);
            if !st.ack_enabled {
                return answer(400, json!({"text":"ACK is disabled","code":14}));
            }
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let mut acks = serde_json::Map::new();
            for id in v["acks"].as_array().cloned().unwrap_or_default() {
                acks.insert(id.to_string(), Value::Bool(true));
            }
            answer(200, json!({ "acks": acks }))
        }
        "/services/collector/event" | "/services/collector" => {
            st.posts.fetch_add(1, Ordering::Relaxed);
            let fault = st.faults.lock().unwrap().pop_front();
            if fault == Some(Fault::Busy) || st.busy.load(Ordering::Relaxed) {
                return answer(503, json!({"text":"Server is busy","code":9}));
            }
            if fault == Some(Fault::Drop) {
                return dropped();
            }
            let body = if gzip {
                st.gzip_posts.fetch_add(1, Ordering::Relaxed);
                let mut out = Vec::new();
                if flate2::read::GzDecoder::new(&body[..])
                    .read_to_end(&mut out)
                    .is_err()
                {
                    return answer(400, json!({"text":"Invalid data format","code":6}));
                }
                out
            } else {
                body.to_vec()
            };
            if st.ack_enabled && channel.is_none() {
                return answer(400, json!({"text":"Data channel is missing","code":10}));
            }
            let mut parsed = Vec::new();
            let mut bad: Option<(usize, u64, &str)> = None;
            for (i, item) in serde_json::Deserializer::from_slice(&body)
                .into_iter::<Value>()
                .enumerate()
            {
                match item {
                    Err(_) => {
                        bad = Some((i, 6, "Invalid data format"));
                        break;
                    }
                    Ok(v) if v.get("event").is_none() => {
                        bad = Some((i, 12, "Event field is required"));
                        break;
                    }
                    Ok(v) if v["event"]["poison"] == Value::Bool(true) => {
                        bad = Some((i, 6, "Invalid data format"));
                        break;
                    }
                    Ok(v) => parsed.push(v),
                }
            }
            let max = st.max_events.load(Ordering::Relaxed);
            if max > 0 && parsed.len() > max {
                let text = format!(
                    "Content too large: {} events (maximum is {max})",
                    parsed.len()
                );
                return answer(413, json!({ "text": text, "code": 27 }));
            }
            if parsed.is_empty() && bad.is_none() {
                return answer(400, json!({"text":"No data","code":5}));
            }
            st.events.lock().unwrap().extend(parsed);
            if let Some((i, code, text)) = bad {
                return answer(
                    400,
                    json!({"text":text,"code":code,"invalid-event-number":i}),
                );
            }
            if fault == Some(Fault::DropAfterIndex) {
                return dropped();
            }
            if st.ack_enabled {
                let id = st.next_ack.fetch_add(1, Ordering::Relaxed);
                return answer(200, json!({"text":"Success","code":0,"ackId":id}));
            }
            answer(200, json!({"text":"Success","code":0}))
        }
        _ => answer(
            404,
            json!({"text":"The requested URL was not found on this server.","code":404}),
        ),
    }
}
