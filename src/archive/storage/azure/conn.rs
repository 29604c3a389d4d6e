//! The HTTP/1.1 connections to the blob service (hyper over TCP, rustls with the webpki roots
//! for `https`): a few kept-alive connections reused for the calls that read their whole
//! answer, and a connection of its own for a streamed download. The only I/O of the Azure
//! storage.
//!
//! Its errors name the endpoint's host and port only, never a request's URI or headers (a SAS
//! in the query, a signature in the `Authorization` header).

use super::account::BlobEndpoint;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;

/// How long opening a connection (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections kept for reuse.
const IDLE_MAX: usize = 8;
/// How long a kept connection may take to say it is ready for the next request.
const READY_WAIT: Duration = Duration::from_secs(1);
/// How long a download may go without a byte before it fails (a stalled connection must not
/// hang a restore).
const STALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a call did not get an answer.
#[derive(Debug)]
pub enum Failure {
    /// Nothing was sent: the connection could not be opened.
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

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

pub struct Http {
    endpoint: BlobEndpoint,
    tls: Option<Arc<rustls::ClientConfig>>,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl Http {
    pub fn new(endpoint: BlobEndpoint) -> crate::error::Result<Http> {
        let tls = if endpoint.https {
            let provider = crate::tls::provider();
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| crate::error::Error::failed(format!("TLS setup: {e}")))?
                .with_root_certificates(crate::tls::roots(None, "")?)
                .with_no_client_auth();
            Some(Arc::new(config))
        } else {
            None
        };
        Ok(Http {
            endpoint,
            tls,
            idle: Mutex::new(Vec::new()),
        })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, Failure> {
        let ep = &self.endpoint;
        let work = async {
            let tcp = TcpStream::connect((ep.host.as_str(), ep.port))
                .await
                .map_err(|e| format!("connect to {}: {e}", ep.authority()))?;
            let _ = tcp.set_nodelay(true);
            let stream: Box<dyn Io> = match &self.tls {
                None => Box::new(tcp),
                Some(cfg) => {
                    let name = ServerName::try_from(ep.host.clone())
                        .map_err(|e| format!("TLS server name {}: {e}", ep.host))?;
                    Box::new(
                        tokio_rustls::TlsConnector::from(cfg.clone())
                            .connect(name, tcp)
                            .await
                            .map_err(|e| format!("TLS handshake with {}: {e}", ep.authority()))?,
                    )
                }
            };
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("HTTP handshake with {}: {e}", ep.authority()))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok::<_, String>(sender)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, work).await {
            Ok(r) => r.map_err(Failure::Connect),
            Err(_) => Err(Failure::Connect(format!(
                "connect to {}: timed out",
                ep.authority()
            ))),
        }
    }

    /// A kept connection that is open and ready, else a new one.
    async fn sender(&self) -> Result<SendRequest<Full<Bytes>>, Failure> {
        loop {
            let kept = self.idle.lock().map(|mut v| v.pop()).unwrap_or(None);
            match kept {
                Some(mut s) if !s.is_closed() => {
                    // Ready at once unless the server closed it meanwhile.
                    if let Ok(Ok(())) = tokio::time::timeout(READY_WAIT, s.ready()).await {
                        return Ok(s);
                    }
                }
                Some(_) => {}
                None => return self.connect().await,
            }
        }
    }

    fn keep(&self, s: SendRequest<Full<Bytes>>) {
        if let Ok(mut v) = self.idle.lock() {
            if v.len() < IDLE_MAX {
                v.push(s);
            }
        }
    }

    /// Send `req` and read the whole answer within `timeout`.
    pub async fn call(&self, req: Request<Bytes>, timeout: Duration) -> Result<Answer, Failure> {
        let mut sender = self.sender().await?;
        let authority = self.endpoint.authority();
        let work = async {
            let resp = sender
                .send_request(req.map(Full::new))
                .await
                .map_err(|e| format!("request to {authority}: {e}"))?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("answer from {authority}: {e}"))?
                .to_bytes();
            Ok::<_, String>(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(a)) => {
                self.keep(sender);
                Ok(a)
            }
            Ok(Err(e)) => Err(Failure::Lost(e)),
            Err(_) => Err(Failure::Lost(format!(
                "no answer from {authority} within {timeout:?}"
            ))),
        }
    }

    /// Send `req` and wait for the answer's head within `timeout`: a success streams its body
    /// on a connection of its own; any other status comes back whole.
    pub async fn open(
        &self,
        req: Request<Bytes>,
        timeout: Duration,
    ) -> Result<Result<(HeaderMap, BodyReader), Answer>, Failure> {
        let mut sender = self.sender().await?;
        let authority = self.endpoint.authority();
        let resp =
            match tokio::time::timeout(timeout, sender.send_request(req.map(Full::new))).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Err(Failure::Lost(format!("request to {authority}: {e}"))),
                Err(_) => {
                    return Err(Failure::Lost(format!(
                        "no answer from {authority} within {timeout:?}"
                    )));
                }
            };
        let (parts, body) = resp.into_parts();
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
        Ok(Err(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }))
    }
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
                        format!("reading a blob from Azure: no data for {STALL_TIMEOUT:?}"),
                    )));
                }
            };
            let deadline = tokio::time::Instant::now() + STALL_TIMEOUT;
            self.stall.as_mut().reset(deadline);
            match frame {
                None => return Poll::Ready(Ok(())),
                Some(Err(e)) => {
                    return Poll::Ready(Err(io::Error::other(format!(
                        "reading a blob from Azure: {e}"
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
