//! Delivering one notification body to one URL: a POST over kasm-db's one HTTP client
//! ([`crate::net::client`], hyper + rustls, through the proxy the environment names), tried as [`Policy::retry`] says (the one retry policy) with a
//! bounded wait per attempt and a short pause between, so a dead or hanging receiver costs a
//! job a few seconds at most. The only I/O of notifications.
//!
//! Must never put the token or the URL's path or query (a ping URL's secret) into an error or
//! a log: failures name the URL by its origin (`https://host:port`) only.

use crate::config::Secret;
use crate::config::notify::NotifyUrl;
use crate::config::proxy::ProxyEnv;
use crate::net::{Failure, Origin, Target};
use bytes::Bytes;
use hyper::{Method, Request, StatusCode, header};
use std::sync::Arc;
use std::time::Duration;

/// How hard a delivery tries: the one retry policy, and how long one attempt may take.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub retry: crate::retry::Policy,
    /// The longest one attempt (connect, send, response) may take.
    pub attempt_timeout: Duration,
}

impl Policy {
    /// 3 attempts of at most 2 s, 250 ms and 500 ms apart: at most 6.75 s per URL.
    pub const DEFAULT: Policy = Policy {
        retry: crate::retry::Policy::new(3, Duration::from_millis(250), Duration::from_secs(2)),
        attempt_timeout: Duration::from_secs(2),
    };

    /// The longest a delivery can take.
    pub fn bound(&self) -> Duration {
        let pauses: Duration = (1..self.retry.attempts)
            .map(|i| self.retry.delay(i, 0.0))
            .sum();
        self.attempt_timeout * self.retry.attempts + pauses
    }
}

/// Why a delivery failed, in words safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub reason: String,
    pub attempts: u32,
}

/// POST `body` to `url`; `Ok` once the receiver answered 2xx.
pub async fn deliver(
    url: &NotifyUrl,
    tls: Option<&Arc<rustls::ClientConfig>>,
    token: Option<&Secret>,
    proxy: &ProxyEnv,
    body: Bytes,
    policy: Policy,
) -> Result<(), Failed> {
    let mut last = String::new();
    for attempt in 1..=policy.retry.attempts.max(1) {
        if attempt > 1 {
            tokio::time::sleep(policy.retry.delay(attempt - 1, 0.0)).await;
        }
        let once = tokio::time::timeout(
            policy.attempt_timeout,
            post(url, tls, token, proxy, body.clone(), policy.attempt_timeout),
        )
        .await;
        match once {
            Ok(Ok(status)) if status.is_success() => return Ok(()),
            Ok(Ok(status)) => {
                last = format!("the receiver answered {status}");
                // A refusal that repeating cannot change (bad path, bad token) ends it.
                let retry = status.is_server_error()
                    || status == StatusCode::REQUEST_TIMEOUT
                    || status == StatusCode::TOO_MANY_REQUESTS;
                if !retry {
                    return Err(Failed {
                        reason: last,
                        attempts: attempt,
                    });
                }
            }
            Ok(Err(e)) => last = e,
            Err(_) => last = format!("timed out: no answer within {:?}", policy.attempt_timeout),
        }
    }
    Err(Failed {
        reason: last,
        attempts: policy.retry.attempts.max(1),
    })
}

/// One attempt (on a kept connection to the URL's origin when there is one).
async fn post(
    url: &NotifyUrl,
    tls: Option<&Arc<rustls::ClientConfig>>,
    token: Option<&Secret>,
    proxy: &ProxyEnv,
    body: Bytes,
    timeout: Duration,
) -> Result<StatusCode, String> {
    let target = Target {
        https: url.https,
        host: url.host.clone(),
        port: url.port,
    };
    // The caller's timeout bounds the attempt; the connection's own is a backstop.
    let backstop = timeout + Duration::from_secs(1);
    let origin = Origin::new(target, tls.cloned(), proxy, backstop).map_err(|e| e.to_string())?;
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(url.path.as_str())
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::USER_AGENT,
            concat!("kasm-db/", env!("CARGO_PKG_VERSION")),
        )
        .body(body)
        .map_err(|_| "cannot build the request (the URL's path is not valid)".to_string())?;
    if let Some(t) = token {
        let value = header::HeaderValue::from_str(&format!("Bearer {}", t.expose()))
            .map_err(|_| "notify.token is not a valid header value".to_string())?;
        req.headers_mut().insert(header::AUTHORIZATION, value);
    }
    match origin.call(req, backstop).await {
        Ok(a) => Ok(a.status),
        Err(Failure::Connect(e) | Failure::Lost(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_is_bounded_to_a_few_seconds() {
        assert_eq!(Policy::DEFAULT.bound(), Duration::from_millis(6750));
    }
}
