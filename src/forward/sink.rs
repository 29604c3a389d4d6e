//! The configured sink, one of the three kinds, behind one `send` for the pipeline.
//! Construction validates `[siem]` (usage errors, exit 2) and connects nowhere.

use super::delivery::Delivery;
use super::{hec::HecSink, http::HttpSink, syslog::SyslogSink};
use crate::config::{SiemConfig, SiemSink};
use crate::error::Result;
use crate::logs::record::Record;

pub enum Sink {
    Hec(Box<HecSink>),
    Syslog(Box<SyslogSink>),
    Http(Box<HttpSink>),
}

impl Sink {
    pub fn new(siem: &SiemConfig) -> Result<Sink> {
        let common = &siem.common;
        Ok(match &siem.sink {
            SiemSink::SplunkHec(hec) => {
                Sink::Hec(Box::new(HecSink::new(common, hec, &siem.proxy)?))
            }
            SiemSink::Syslog(syslog) => Sink::Syslog(Box::new(SyslogSink::new(common, syslog)?)),
            SiemSink::Http(http) => Sink::Http(Box::new(HttpSink::new(common, http, &siem.proxy)?)),
        })
    }

    /// The metrics label of the sink.
    pub fn name(&self) -> &'static str {
        match self {
            Sink::Hec(_) => "splunk-hec",
            Sink::Syslog(_) => "syslog",
            Sink::Http(_) => "http",
        }
    }

    /// Whether a delivered record was acknowledged by the SIEM or its transport (false for
    /// syslog over UDP: such records are only "sent").
    pub fn acknowledges(&self) -> bool {
        match self {
            Sink::Syslog(s) => s.acknowledges(),
            Sink::Hec(_) | Sink::Http(_) => true,
        }
    }

    pub async fn send(&mut self, records: &[Record]) -> Delivery {
        match self {
            Sink::Hec(s) => s.send(records).await,
            Sink::Syslog(s) => s.send(records).await,
            Sink::Http(s) => s.send(records).await,
        }
    }
}
