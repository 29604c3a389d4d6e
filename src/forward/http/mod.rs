//! The `http` sink: a generic NDJSON POST (Elastic ingest pipelines, webhooks) with
//! `Authorization: Bearer <token>`, uncompressed so that any receiver understands it:
//! configuration and the pipeline step ([`encode`], [`request`], sent on an [`HttpConn`]).
//! Must never log or return the token.

pub mod encode;
pub mod request;

use crate::config::Secret;
use crate::config::proxy::ProxyEnv;
use crate::config::siem::{HttpConfig, SiemCommon};
use crate::error::{Error, Result};
use crate::forward::delivery::Delivery;
use crate::forward::endpoint::{Endpoint, Scheme};
use crate::logs::record::Record;
use crate::net::{Failure, Origin};
use request::{classify, request};
use std::time::Duration;

pub struct HttpSink {
    origin: Origin,
    path: String,
    timeout: Duration,
    token: Secret,
}

impl HttpSink {
    pub fn new(siem: &SiemCommon, http: &HttpConfig, proxy: &ProxyEnv) -> Result<HttpSink> {
        let ep = Endpoint::parse(&siem.url)?;
        if !matches!(ep.scheme, Scheme::Http | Scheme::Https) {
            return Err(Error::usage(format!(
                "siem.url for the http sink must be http:// or https://, not {}",
                siem.url
            )));
        }
        let token = http
            .token
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::usage("http.token is required for the http sink"))?;
        let tls = if ep.tls() {
            Some(crate::forward::tls::client_config(siem)?)
        } else {
            None
        };
        let timeout = Duration::from_secs(siem.request_timeout_secs.max(1));
        Ok(HttpSink {
            origin: crate::forward::origin(&ep, tls, proxy, timeout)?,
            path: ep.path.clone(),
            timeout,
            token,
        })
    }

    pub async fn send(&mut self, records: &[Record]) -> Delivery {
        let body = encode::ndjson(records);
        let req = request(&self.path, &self.token, &body);
        match self.origin.call(req, self.timeout).await {
            Ok(a) => classify(a.status.as_u16(), &a.body),
            Err(Failure::Connect(reason)) => Delivery::Retry {
                reason,
                ambiguous: false,
            },
            Err(Failure::Lost(reason)) => Delivery::Retry {
                reason,
                ambiguous: true,
            },
        }
    }
}
