//! One persistent HTTP/1.1 connection to a SIEM endpoint (hyper), reconnected on failure.
//! The I/O of the `splunk-hec` and `http` sinks. Errors say whether the request may have
//! reached the server (so callers can count possible duplicates). Must never put the request's
//! headers (the token) into an error or a log.

use super::conn;
use super::endpoint::Endpoint;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
pub enum HttpError {
    /// Nothing was sent (connection could not be opened).
    Connect(String),
    /// The request may have been received; its outcome is unknown.
    Unknown(String),
}

pub struct HttpConn {
    endpoint: Endpoint,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl HttpConn {
    pub fn new(
        endpoint: Endpoint,
        tls: Option<Arc<rustls::ClientConfig>>,
        timeout: Duration,
    ) -> Self {
        HttpConn {
            endpoint,
            tls,
            timeout,
            sender: None,
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    async fn ready(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, HttpError> {
        if let Some(s) = &mut self.sender {
            if s.ready().await.is_err() {
                self.sender = None;
            }
        }
        if self.sender.is_none() {
            let stream = conn::connect(&self.endpoint, self.tls.as_ref(), self.timeout)
                .await
                .map_err(HttpError::Connect)?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| HttpError::Connect(format!("HTTP handshake: {e}")))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            self.sender = Some(sender);
        }
        Ok(self.sender.as_mut().expect("set above"))
    }

    /// Send `req` (origin-form URI, Host set here) and read the whole response.
    pub async fn send(
        &mut self,
        mut req: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), HttpError> {
        let host = self.endpoint.authority();
        if let Ok(v) = host.parse() {
            req.headers_mut().insert(hyper::header::HOST, v);
        }
        let timeout = self.timeout;
        let authority = host.clone();
        let sender = self.ready().await?;
        let work = async {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| format!("request to {authority}: {e}"))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("response from {authority}: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                self.sender = None;
                Err(HttpError::Unknown(e))
            }
            Err(_) => {
                self.sender = None;
                Err(HttpError::Unknown(format!(
                    "no response from {host} within {timeout:?}"
                )))
            }
        }
    }
}
