//! The syslog service: the only I/O of the syslog sink. UDP sends one datagram per message;
//! TCP and TLS keep one stream open and write octet-counted frames, reconnecting after an
//! error. Syslog has no application-level acknowledgement: a flushed write is "delivered"; a
//! datagram handed to the kernel is only "sent" (paced to `siem.udp_max_per_sec`).
//! Must never split a message across datagrams or write a frame partially without reconnecting.

use crate::forward::conn::{self, Stream};
use crate::forward::delivery::Delivery;
use crate::forward::endpoint::{Endpoint, Scheme};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::UdpSocket;

pub struct SyslogService {
    pub endpoint: Endpoint,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub timeout: Duration,
    stream: Option<Stream>,
    udp: Option<UdpSocket>,
    /// Paces datagrams (`siem.udp_max_per_sec`).
    pacer: super::pace::Pacer,
}

impl SyslogService {
    pub fn new(
        endpoint: Endpoint,
        tls: Option<Arc<rustls::ClientConfig>>,
        timeout: Duration,
        udp_max_per_sec: u64,
    ) -> Self {
        SyslogService {
            endpoint,
            tls,
            timeout,
            stream: None,
            udp: None,
            pacer: super::pace::Pacer::new(udp_max_per_sec),
        }
    }

    pub fn is_udp(&self) -> bool {
        self.endpoint.scheme == Scheme::Udp
    }

    /// Write already framed bytes to the TCP/TLS stream.
    pub async fn write_stream(&mut self, bytes: &[u8]) -> Delivery {
        if self.stream.is_none() {
            match conn::connect(&self.endpoint, self.tls.as_ref(), self.timeout).await {
                Ok(s) => self.stream = Some(s),
                Err(reason) => {
                    return Delivery::Retry {
                        reason,
                        ambiguous: false,
                    };
                }
            }
        }
        let Some(stream) = self.stream.as_mut() else {
            return Delivery::Retry {
                reason: "no connection".into(),
                ambiguous: false,
            };
        };
        let work = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(())) => Delivery::Delivered,
            Ok(Err(e)) => {
                self.stream = None;
                Delivery::Retry {
                    reason: format!("write to syslog {}: {e}", self.endpoint.authority()),
                    ambiguous: true,
                }
            }
            Err(_) => {
                self.stream = None;
                Delivery::Retry {
                    reason: format!("write to syslog {} timed out", self.endpoint.authority()),
                    ambiguous: true,
                }
            }
        }
    }

    /// Send each datagram; `Partial`-free: on an error, the datagrams from `sent` on are retried.
    pub async fn send_datagrams(&mut self, datagrams: &[&[u8]]) -> Result<(), (usize, String)> {
        if self.udp.is_none() {
            let bind = if self.endpoint.host.contains(':') {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            };
            let sock = UdpSocket::bind(bind)
                .await
                .map_err(|e| (0, format!("UDP socket: {e}")))?;
            sock.connect((self.endpoint.host.as_str(), self.endpoint.port))
                .await
                .map_err(|e| (0, format!("UDP {}: {e}", self.endpoint.authority())))?;
            self.udp = Some(sock);
        }
        let Some(sock) = self.udp.as_ref() else {
            return Err((0, "no socket".into()));
        };
        for (i, d) in datagrams.iter().enumerate() {
            self.pacer.wait().await;
            if let Err(e) = sock.send(d).await {
                self.udp = None;
                return Err((i, format!("UDP send to {}: {e}", self.endpoint.authority())));
            }
        }
        Ok(())
    }
}
