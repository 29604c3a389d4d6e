//! Opening a byte stream to a SIEM endpoint: TCP, optionally wrapped in TLS. The only place
//! sinks connect. Must never log or return anything but the endpoint's host and port.

use super::endpoint::Endpoint;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type Stream = Box<dyn Io>;

/// Connect within `timeout`; TLS when the endpoint says so (`tls` must then be given).
pub async fn connect(
    ep: &Endpoint,
    tls: Option<&Arc<rustls::ClientConfig>>,
    timeout: Duration,
) -> Result<Stream, String> {
    let work = async {
        let tcp = TcpStream::connect((ep.host.as_str(), ep.port))
            .await
            .map_err(|e| format!("connect to {}: {e}", ep.authority()))?;
        let _ = tcp.set_nodelay(true);
        match (ep.tls(), tls) {
            (false, _) => Ok(Box::new(tcp) as Stream),
            (true, Some(cfg)) => {
                let name = ServerName::try_from(ep.host.clone())
                    .map_err(|e| format!("TLS server name {}: {e}", ep.host))?;
                let s = tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS handshake with {}: {e}", ep.authority()))?;
                Ok(Box::new(s) as Stream)
            }
            (true, None) => Err("TLS endpoint without a TLS configuration".to_string()),
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| Err(format!("connect to {}: timed out", ep.authority())))
}
