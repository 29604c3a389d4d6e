//! The `splunk-hec` sink: configuration, and the pipeline step that turns a batch of records
//! into one gzipped HEC request ([`encode`], [`request`]) sent by the [`service`].
//! Must never log or return the token.

pub mod encode;
pub mod request;
pub mod response;
pub mod service;

use crate::config::proxy::ProxyEnv;
use crate::config::siem::{HecConfig, SiemCommon};
use crate::error::{Error, Result};
use crate::forward::delivery::Delivery;
use crate::forward::endpoint::{Endpoint, Scheme};
use crate::logs::record::Record;
use std::time::Duration;

pub struct HecSink {
    meta: encode::Meta,
    gzip_level: u32,
    service: service::HecService,
}

impl HecSink {
    pub fn new(siem: &SiemCommon, hec: &HecConfig, proxy: &ProxyEnv) -> Result<HecSink> {
        let ep = Endpoint::parse(&siem.url)?;
        if !matches!(ep.scheme, Scheme::Http | Scheme::Https) {
            return Err(Error::usage(format!(
                "siem.url for splunk-hec must be http:// or https://, not {}",
                siem.url
            )));
        }
        let token = hec
            .token
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::usage("hec.token is required for the splunk-hec sink"))?;
        let tls = if ep.tls() {
            Some(crate::forward::tls::client_config(siem)?)
        } else {
            None
        };
        let timeout = Duration::from_secs(siem.request_timeout_secs.max(1));
        let paths = request::Paths::from_url_path(&ep.path);
        Ok(HecSink {
            meta: encode::Meta {
                source: hec.source.clone().or_else(|| Some("kasm-db".into())),
                sourcetype: hec.sourcetype.clone(),
                index: hec.index.clone(),
            },
            gzip_level: 1,
            service: service::HecService {
                origin: crate::forward::origin(&ep, tls, proxy, timeout)?,
                timeout,
                paths,
                token,
                channel: hec.ack.then(|| uuid::Uuid::new_v4().to_string()),
                ack_timeout: timeout,
            },
        })
    }

    pub async fn health(&mut self) -> std::result::Result<(), String> {
        self.service.health().await
    }

    pub async fn send(&mut self, records: &[Record]) -> Delivery {
        let body = encode::encode_batch(records, &self.meta);
        let gz = encode::gzip(&body, self.gzip_level);
        self.service.post(gz, records.len()).await
    }
}
