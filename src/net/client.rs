//! The one HTTP/1.1 client of kasm-db (hyper over TCP, rustls for `https`), shared by the
//! `splunk-hec` and `http` SIEM sinks, notifications and the Azure blob storage: one connection
//! pool for the process, keyed by target, TLS configuration and proxy, so a kept-alive
//! connection is reused by every caller of the same origin. (S3 goes through the AWS SDK's own
//! client, which reads the same proxy variables.)
//!
//! Through a proxy ([`super::proxy::proxy_for`]): an `https` target is reached by a `CONNECT`
//! tunnel and TLS to the origin inside it (the proxy sees only the host and port); an `http`
//! target by absolute-form requests to the proxy (`GET http://host:port/path`), as curl does —
//! proxies commonly allow `CONNECT` to port 443 only. A proxy's credentials go only into
//! `Proxy-Authorization` (`CONNECT` or the plain request).
//!
//! Must never put a request's URI, its headers (tokens, signatures, SAS queries) or a proxy's
//! credentials into an error or a log: failures name the target and the proxy by `host:port`.

use super::proxy::{Proxy, ProxyError, Target, proxy_for};
use crate::config::proxy::ProxyEnv;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Connections kept for reuse, per pool key.
const IDLE_MAX: usize = 8;
/// How long a kept connection may take to say it is ready for the next request.
const READY_WAIT: Duration = Duration::from_secs(1);
/// How long a streamed body may go without a byte before it fails (a stalled connection must
/// not hang a restore).
const STALL_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest answer head to a `CONNECT` that is read.
const CONNECT_HEAD_MAX: usize = 16 * 1024;

/// Why a call did not get an answer.
#[derive(Debug)]
pub enum Failure {
    /// Nothing reached the target: the connection (or the proxy's tunnel) could not be opened,
    /// or the proxy refused the request.
    Connect(String),
    /// The request may have arrived; no (whole) answer came.
    Lost(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(e) | Failure::Lost(e) => f.write_str(e),
        }
    }
}

/// A whole answer.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Sender = SendRequest<Full<Bytes>>;

/// A request body the client takes: bytes, or hyper's whole-body type.
pub trait IntoBody {
    fn into_full(self) -> Full<Bytes>;
}

impl IntoBody for Bytes {
    fn into_full(self) -> Full<Bytes> {
        Full::new(self)
    }
}

impl IntoBody for Full<Bytes> {
    fn into_full(self) -> Full<Bytes> {
        self
    }
}

/// The TLS configuration for public services (the webpki roots), built once, so every caller
/// that uses it shares the pool's connections to an origin.
pub fn public_tls() -> crate::error::Result<Arc<rustls::ClientConfig>> {
    static PUBLIC: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    if let Some(c) = PUBLIC.get() {
        return Ok(c.clone());
    }
    let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| crate::error::Error::failed(format!("TLS setup: {e}")))?
        .with_root_certificates(crate::tls::roots(None, "")?)
        .with_no_client_auth();
    Ok(PUBLIC.get_or_init(|| Arc::new(config)).clone())
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    target: Target,
    proxy: Option<Proxy>,
    /// The TLS configuration's identity (its `Arc` is kept beside the connections, so the
    /// address is not reused while they live).
    tls: usize,
}

struct Idle {
    sender: Sender,
    _tls: Option<Arc<rustls::ClientConfig>>,
}

/// The process's connection pool.
static POOL: LazyLock<Mutex<HashMap<Key, Vec<Idle>>>> = LazyLock::new(Default::default);

/// One origin as its callers reach it: target, TLS configuration, the proxy the environment
/// names for it. Cheap to clone; its connections live in the shared pool.
#[derive(Clone)]
pub struct Origin {
    key: Key,
    tls: Option<Arc<rustls::ClientConfig>>,
    connect_timeout: Duration,
}

impl Origin {
    /// `target` reached with `tls` (required for `https`), through the proxy `env` names for
    /// it; opening a connection may take `connect_timeout`. Connects nowhere yet.
    pub fn new(
        target: Target,
        tls: Option<Arc<rustls::ClientConfig>>,
        env: &ProxyEnv,
        connect_timeout: Duration,
    ) -> Result<Origin, ProxyError> {
        let proxy = proxy_for(&target, env)?;
        let id = tls.as_ref().map(|c| Arc::as_ptr(c) as usize).unwrap_or(0);
        Ok(Origin {
            key: Key {
                target,
                proxy,
                tls: id,
            },
            tls,
            connect_timeout,
        })
    }

    pub fn target(&self) -> &Target {
        &self.key.target
    }

    /// The proxy this origin is reached through, if any.
    pub fn proxy(&self) -> Option<&Proxy> {
        self.key.proxy.as_ref()
    }

    /// The target for a message: `host:port`, with ` via proxy host:port` when proxied.
    fn named(&self) -> String {
        match &self.key.proxy {
            Some(p) => format!(
                "{} (via proxy {})",
                self.key.target.authority(),
                p.authority()
            ),
            None => self.key.target.authority(),
        }
    }

    /// Send `req` (origin-form URI) and read the whole answer within `timeout` (opening the
    /// connection, when none is kept, within the connect timeout first).
    pub async fn call<B: IntoBody>(
        &self,
        req: Request<B>,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        let req = self.prepare(req)?;
        let mut sender = self.sender().await?;
        let named = self.named();
        let work = async {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| format!("request to {named}: {e}"))?;
            let (parts, body) = resp.into_parts();
            if self.proxy_refused(parts.status) {
                // A proxy that refuses may close before its body is read: the head says it.
                return Ok(Answer {
                    status: parts.status,
                    headers: parts.headers,
                    body: Bytes::new(),
                });
            }
            let body = body
                .collect()
                .await
                .map_err(|e| format!("answer from {named}: {e}"))?
                .to_bytes();
            Ok::<_, String>(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(a)) => {
                if !self.proxy_refused(a.status) {
                    self.keep(sender);
                }
                self.refused_by_proxy(a)
            }
            Ok(Err(e)) => Err(Failure::Lost(e)),
            Err(_) => Err(Failure::Lost(format!(
                "no answer from {named} within {timeout:?}"
            ))),
        }
    }

    /// Send `req` and wait for the answer's head within `timeout`: a success streams its body
    /// on a connection of its own; any other status comes back whole.
    pub async fn open<B: IntoBody>(
        &self,
        req: Request<B>,
        timeout: Duration,
    ) -> Result<Result<(HeaderMap, BodyReader), Answer>, Failure> {
        let req = self.prepare(req)?;
        let mut sender = self.sender().await?;
        let named = self.named();
        let resp = match tokio::time::timeout(timeout, sender.send_request(req)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(Failure::Lost(format!("request to {named}: {e}"))),
            Err(_) => {
                return Err(Failure::Lost(format!(
                    "no answer from {named} within {timeout:?}"
                )));
            }
        };
        let (parts, body) = resp.into_parts();
        if self.proxy_refused(parts.status) {
            return self
                .refused_by_proxy(Answer {
                    status: parts.status,
                    headers: parts.headers,
                    body: Bytes::new(),
                })
                .map(Err);
        }
        if parts.status.is_success() {
            // The connection closes once the body is read (its sender is dropped here).
            return Ok(Ok((
                parts.headers,
                BodyReader {
                    body,
                    buf: Bytes::new(),
                    stall: Box::pin(tokio::time::sleep(STALL_TIMEOUT)),
                },
            )));
        }
        let body = tokio::time::timeout(timeout, body.collect())
            .await
            .ok()
            .and_then(|r| r.ok())
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        self.refused_by_proxy(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
        .map(Err)
    }

    /// Whether `status`, answering a plain request through a proxy, is the proxy's refusal
    /// (407) rather than the target's answer.
    fn proxy_refused(&self, status: StatusCode) -> bool {
        self.key.proxy.is_some()
            && !self.key.target.https
            && status == StatusCode::PROXY_AUTHENTICATION_REQUIRED
    }

    /// A 407 on a plain request through a proxy is the proxy's refusal, not the target's.
    fn refused_by_proxy(&self, a: Answer) -> Result<Answer, Failure> {
        match &self.key.proxy {
            Some(p) if self.proxy_refused(a.status) => {
                Err(Failure::Connect(refusal(p, &self.key.target, a.status)))
            }
            _ => Ok(a),
        }
    }

    /// The request as it goes on the wire: Host set, and through a proxy to an `http` target
    /// the absolute-form URI and the proxy's credentials.
    fn prepare<B: IntoBody>(&self, req: Request<B>) -> Result<Request<Full<Bytes>>, Failure> {
        let mut req = req.map(IntoBody::into_full);
        let target = &self.key.target;
        if !req.headers().contains_key(header::HOST) {
            if let Ok(v) = HeaderValue::from_str(&target.authority()) {
                req.headers_mut().insert(header::HOST, v);
            }
        }
        if let (Some(proxy), false) = (&self.key.proxy, target.https) {
            let path = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let absolute: Uri = format!("http://{}{path}", target.authority())
                .parse()
                .map_err(|_| Failure::Connect("the request's path is not a valid URI".into()))?;
            *req.uri_mut() = absolute;
            if let Some(auth) = proxy.authorization() {
                let mut v = HeaderValue::from_str(auth.expose()).map_err(|_| {
                    Failure::Connect(format!(
                        "the credentials of proxy {} are not a valid header value",
                        proxy.authority()
                    ))
                })?;
                v.set_sensitive(true);
                req.headers_mut().insert(header::PROXY_AUTHORIZATION, v);
            }
        }
        Ok(req)
    }

    /// A kept connection that is open and ready, else a new one.
    async fn sender(&self) -> Result<Sender, Failure> {
        loop {
            let kept = POOL
                .lock()
                .ok()
                .and_then(|mut p| p.get_mut(&self.key).and_then(Vec::pop));
            match kept {
                Some(mut idle) if !idle.sender.is_closed() => {
                    // Ready at once unless the server closed it meanwhile.
                    if let Ok(Ok(())) = tokio::time::timeout(READY_WAIT, idle.sender.ready()).await
                    {
                        return Ok(idle.sender);
                    }
                }
                Some(_) => {}
                None => return self.connect().await,
            }
        }
    }

    fn keep(&self, sender: Sender) {
        if let Ok(mut pool) = POOL.lock() {
            let v = pool.entry(self.key.clone()).or_default();
            v.retain(|i| !i.sender.is_closed());
            if v.len() < IDLE_MAX {
                v.push(Idle {
                    sender,
                    _tls: self.tls.clone(),
                });
            }
        }
    }

    async fn connect(&self) -> Result<Sender, Failure> {
        let target = &self.key.target;
        let work = async {
            let tcp = match &self.key.proxy {
                Some(p) => TcpStream::connect((p.host.as_str(), p.port))
                    .await
                    .map_err(|e| format!("connect to proxy {}: {e}", p.authority()))?,
                None => TcpStream::connect((target.host.as_str(), target.port))
                    .await
                    .map_err(|e| format!("connect to {}: {e}", target.authority()))?,
            };
            let _ = tcp.set_nodelay(true);
            let tcp = match (&self.key.proxy, target.https) {
                (Some(p), true) => tunnel(tcp, p, target).await?,
                _ => tcp,
            };
            let stream: Box<dyn Io> = match (&self.tls, target.https) {
                (_, false) => Box::new(tcp),
                (Some(cfg), true) => {
                    let name = ServerName::try_from(target.host.clone())
                        .map_err(|e| format!("TLS server name {}: {e}", target.host))?;
                    Box::new(
                        tokio_rustls::TlsConnector::from(cfg.clone())
                            .connect(name, tcp)
                            .await
                            .map_err(|e| format!("TLS handshake with {}: {e}", self.named()))?,
                    )
                }
                (None, true) => return Err("https target without a TLS configuration".into()),
            };
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("HTTP handshake with {}: {e}", self.named()))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok::<_, String>(sender)
        };
        match tokio::time::timeout(self.connect_timeout, work).await {
            Ok(r) => r.map_err(Failure::Connect),
            Err(_) => Err(Failure::Connect(format!(
                "connect to {}: timed out",
                self.named()
            ))),
        }
    }
}

fn refusal(p: &Proxy, target: &Target, status: StatusCode) -> String {
    // 407 is the standard refusal; some proxies (tinyproxy) say 401.
    let hint = if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED
        || status == StatusCode::UNAUTHORIZED
    {
        if p.authorization().is_some() {
            " (it refused the credentials given as user:pass@ in the proxy variable)"
        } else {
            " (it wants credentials: user:pass@ in the proxy variable)"
        }
    } else {
        ""
    };
    format!(
        "proxy {} refused to reach {}: {status}{hint}",
        p.authority(),
        target.authority()
    )
}

/// Ask the proxy for a tunnel to `target`; the stream is the tunnel once it said 2xx.
async fn tunnel(mut tcp: TcpStream, p: &Proxy, target: &Target) -> Result<TcpStream, String> {
    let authority = target.authority();
    let mut head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(auth) = p.authorization() {
        head.push_str("Proxy-Authorization: ");
        head.push_str(auth.expose());
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let lost = |e: io::Error| format!("proxy {}: {e}", p.authority());
    tcp.write_all(head.as_bytes()).await.map_err(lost)?;
    // Byte by byte up to the blank line, so nothing of the tunnel is read here.
    let mut answer = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        if answer.len() >= CONNECT_HEAD_MAX {
            return Err(format!(
                "proxy {}: answer to CONNECT too long",
                p.authority()
            ));
        }
        if tcp.read(&mut byte).await.map_err(lost)? == 0 {
            return Err(format!(
                "proxy {} closed the connection instead of opening a tunnel to {authority}",
                p.authority()
            ));
        }
        answer.push(byte[0]);
    }
    let status = answer
        .split(|b| *b == b' ')
        .nth(1)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or_else(|| format!("proxy {}: not an HTTP answer to CONNECT", p.authority()))?;
    if !status.is_success() {
        return Err(refusal(p, target, status));
    }
    Ok(tcp)
}

/// An answer's body as a byte stream; fails when no byte arrives for [`STALL_TIMEOUT`].
pub struct BodyReader {
    body: Incoming,
    buf: Bytes,
    stall: Pin<Box<tokio::time::Sleep>>,
}

impl AsyncRead for BodyReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.buf.is_empty() {
                let n = out.remaining().min(self.buf.len());
                let chunk = self.buf.split_to(n);
                out.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            let frame = match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Ready(f) => f,
                Poll::Pending => {
                    ready!(self.stall.as_mut().poll(cx));
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("reading an answer's body: no data for {STALL_TIMEOUT:?}"),
                    )));
                }
            };
            let deadline = tokio::time::Instant::now() + STALL_TIMEOUT;
            self.stall.as_mut().reset(deadline);
            match frame {
                None => return Poll::Ready(Ok(())),
                Some(Err(e)) => {
                    return Poll::Ready(Err(io::Error::other(format!(
                        "reading an answer's body: {e}"
                    ))));
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf = data;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A proxy that reads one request head, keeps it, and answers `answer`.
    async fn refusing_proxy(answer: &'static str) -> (u16, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed before the head ended");
                head.extend_from_slice(&buf[..n]);
            }
            s.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8(head).unwrap()
        });
        (port, task)
    }

    fn origin(https: bool, proxy: String) -> Origin {
        let env = ProxyEnv {
            https: Some(Secret::new(proxy.clone())),
            http: Some(Secret::new(proxy)),
            ..ProxyEnv::default()
        };
        let target = Target {
            https,
            host: "siem.example".into(),
            port: 8088,
        };
        let tls = https.then(|| public_tls().unwrap());
        Origin::new(target, tls, &env, Duration::from_secs(5)).unwrap()
    }

    fn request() -> Request<Bytes> {
        Request::post("/services/collector/event")
            .body(Bytes::from_static(b"{}"))
            .unwrap()
    }

    #[tokio::test]
    async fn a_refused_tunnel_names_the_proxy_and_sends_the_credentials_only_to_it() {
        let (port, head) =
            refusing_proxy("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n").await;
        let o = origin(true, format!("http://kasm:s3cret@127.0.0.1:{port}"));
        let Err(Failure::Connect(e)) = o.call(request(), Duration::from_secs(5)).await else {
            panic!("not a connect failure");
        };
        assert_eq!(
            e,
            format!("proxy 127.0.0.1:{port} refused to reach siem.example:8088: 502 Bad Gateway")
        );
        let head = head.await.unwrap();
        assert!(
            head.starts_with("CONNECT siem.example:8088 HTTP/1.1\r\n"),
            "{head}"
        );
        // base64("kasm:s3cret")
        assert!(
            head.contains("Proxy-Authorization: Basic a2FzbTpzM2NyZXQ=\r\n"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn a_407_to_a_plain_request_is_the_proxys_refusal() {
        let (port, head) = refusing_proxy(
            "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\nConnection: close\r\n\r\n",
        )
        .await;
        let o = origin(false, format!("127.0.0.1:{port}"));
        let Err(Failure::Connect(e)) = o.call(request(), Duration::from_secs(5)).await else {
            panic!("not a connect failure");
        };
        assert!(
            e.starts_with(&format!(
                "proxy 127.0.0.1:{port} refused to reach siem.example:8088: 407 Proxy Authentication Required (it wants credentials"
            )),
            "{e}"
        );
        let head = head.await.unwrap();
        assert!(
            head.starts_with("POST http://siem.example:8088/services/collector/event HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(
            !head.to_ascii_lowercase().contains("proxy-authorization"),
            "{head}"
        );
    }
}
