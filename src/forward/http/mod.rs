//! The `http` sink: a generic NDJSON POST (Elastic ingest pipelines, webhooks) with
//! `Authorization: Bearer <token>`, gzip-compressed. 2xx = delivered; 408/429/5xx and transport
//! errors are retried; 413 halves the request; 400/422 are dead letters; 401/403/404 get bounded retries.
//! Must never log or return the token.

pub mod encode;

use crate::config::{Secret, SiemConfig};
use crate::error::{Error, Result};
use crate::forward::endpoint::{Endpoint, Scheme};
use crate::forward::http_client::{HttpConn, HttpError};
use crate::forward::outcome::Outcome;
use crate::logs::record::Record;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};
use std::time::Duration;

pub struct HttpSink {
    conn: HttpConn,
    token: Secret,
}

/// The request for one NDJSON body (pure).
pub fn request(path: &str, token: &Secret, ndjson: &[u8]) -> Request<Full<Bytes>> {
    let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid-token-characters"));
    auth.set_sensitive(true);
    Request::post(path)
        .header(AUTHORIZATION, auth)
        .header(CONTENT_TYPE, "application/x-ndjson")
        .header(CONTENT_ENCODING, "gzip")
        .body(Full::new(Bytes::from(crate::forward::hec::encode::gzip(
            ndjson, 1,
        ))))
        .unwrap_or_default()
}

/// Classify an answer (pure).
pub fn classify(status: u16, body: &[u8]) -> Outcome {
    let reason = format!(
        "HTTP sink answered {status}: {}",
        String::from_utf8_lossy(body)
            .chars()
            .take(200)
            .collect::<String>()
    );
    match status {
        200..=299 => Outcome::Delivered,
        408 | 429 | 500..=599 => Outcome::Retry {
            reason,
            ambiguous: false,
        },
        413 => Outcome::TooLarge { reason },
        400 | 422 => Outcome::Refused {
            reason,
            permanent: true,
        },
        _ => Outcome::Refused {
            reason,
            permanent: false,
        },
    }
}

impl HttpSink {
    pub fn new(siem: &SiemConfig) -> Result<HttpSink> {
        let ep = Endpoint::parse(&siem.url)?;
        if !matches!(ep.scheme, Scheme::Http | Scheme::Https) {
            return Err(Error::usage(format!(
                "siem.url for the http sink must be http:// or https://, not {}",
                siem.url
            )));
        }
        let token = siem
            .token
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::usage("siem.token is required for the http sink"))?;
        let tls = if ep.tls() {
            Some(crate::forward::tls::client_config(siem)?)
        } else {
            None
        };
        let timeout = Duration::from_secs(siem.request_timeout_secs.max(1));
        Ok(HttpSink {
            conn: HttpConn::new(ep, tls, timeout),
            token,
        })
    }

    pub async fn send(&mut self, records: &[Record]) -> Outcome {
        let body = encode::ndjson(records);
        let req = request(&self.conn.endpoint().path.clone(), &self.token, &body);
        match self.conn.send(req).await {
            Ok((status, body)) => classify(status.as_u16(), &body),
            Err(HttpError::Connect(reason)) => Outcome::Retry {
                reason,
                ambiguous: false,
            },
            Err(HttpError::Unknown(reason)) => Outcome::Retry {
                reason,
                ambiguous: true,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_classes() {
        let r = request("/ingest", &Secret::new("t0k"), b"{}\n");
        assert_eq!(r.headers()[AUTHORIZATION], "Bearer t0k");
        assert!(!format!("{r:?}").contains("t0k"));
        assert_eq!(classify(204, b""), Outcome::Delivered);
        assert!(matches!(classify(503, b""), Outcome::Retry { .. }));
        assert!(matches!(
            classify(400, b""),
            Outcome::Refused {
                permanent: true,
                ..
            }
        ));
        assert!(matches!(
            classify(401, b""),
            Outcome::Refused {
                permanent: false,
                ..
            }
        ));
    }
}
