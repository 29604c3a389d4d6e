//! The `syslog` sink: configuration and the pipeline step turning a batch of records into
//! RFC 5424 / RFC 3164 / CEF messages ([`encode`]), framed for the transport and written by the
//! [`service`]. UDP messages longer than `max_datagram` are cut (never split into two), and
//! paced ([`pace`]); UDP records are only ever "sent": nothing acknowledges them.
//! Must never put a multi-line record into more than one message.

pub mod encode;
pub mod pace;
pub mod service;

use crate::config::siem::{SiemCommon, SyslogConfig};
use crate::error::{Error, Result};
use crate::forward::delivery::Delivery;
use crate::forward::endpoint::{Endpoint, Scheme};
use crate::logs::record::Record;
use std::time::Duration;

/// Largest UDP datagram sent (safe below common receiver limits and the IPv4 maximum).
pub const MAX_DATAGRAM: usize = 8192;

pub struct SyslogSink {
    encoder: encode::Encoder,
    service: service::SyslogService,
    max_datagram: usize,
}

impl SyslogSink {
    pub fn new(siem: &SiemCommon, syslog: &SyslogConfig) -> Result<SyslogSink> {
        let ep = Endpoint::parse(&siem.url)?;
        if !matches!(ep.scheme, Scheme::Udp | Scheme::Tcp | Scheme::Tls) {
            return Err(Error::usage(format!(
                "siem.url for syslog must be udp://, tcp:// or tls://, not {}",
                siem.url
            )));
        }
        let facility = encode::facility(&syslog.facility).ok_or_else(|| {
            Error::usage(format!(
                "syslog.facility {:?} is not a syslog facility (local0..local7, user, daemon, ...)",
                syslog.facility
            ))
        })?;
        let tls = if ep.tls() {
            Some(crate::forward::tls::client_config(siem)?)
        } else {
            None
        };
        let timeout = Duration::from_secs(siem.request_timeout_secs.max(1));
        Ok(SyslogSink {
            encoder: encode::Encoder {
                format: syslog.format,
                facility,
            },
            service: service::SyslogService::new(ep, tls, timeout, syslog.udp_max_per_sec),
            max_datagram: MAX_DATAGRAM,
        })
    }

    /// False for UDP: a datagram handed to the kernel is sent, never acknowledged.
    pub fn acknowledges(&self) -> bool {
        !self.service.is_udp()
    }

    pub async fn send(&mut self, records: &[Record]) -> Delivery {
        let now = chrono::Utc::now();
        if self.service.is_udp() {
            let msgs: Vec<String> = records
                .iter()
                .map(|r| self.encoder.message(r, now))
                .collect();
            let grams: Vec<&[u8]> = msgs
                .iter()
                .map(|m| encode::datagram(m, self.max_datagram))
                .collect();
            return match self.service.send_datagrams(&grams).await {
                Ok(()) => Delivery::Delivered,
                Err((0, reason)) => Delivery::Retry {
                    reason,
                    ambiguous: false,
                },
                // The first `sent` went out; resend the rest (the pipeline commits the prefix).
                Err((sent, reason)) => Delivery::Retry {
                    reason,
                    ambiguous: sent > 0,
                },
            };
        }
        let mut buf = Vec::with_capacity(records.iter().map(|r| r.data.len() + 128).sum());
        for r in records {
            encode::frame_octet_counted(&self.encoder.message(r, now), &mut buf);
        }
        self.service.write_stream(&buf).await
    }
}
