//! Parsing `siem.url` into where to connect. Pure: never resolves or connects.

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
    Udp,
    Tcp,
    Tls,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    /// The path (with query), `/` when absent.
    pub path: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint> {
        let bad = |why: &str| Error::usage(format!("siem.url {url:?}: {why}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("missing scheme"))?;
        let (scheme, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "http" => (Scheme::Http, 80),
            "https" => (Scheme::Https, 443),
            "udp" => (Scheme::Udp, 514),
            "tcp" => (Scheme::Tcp, 514),
            "tls" => (Scheme::Tls, 6514),
            _ => return Err(bad("scheme must be http, https, udp, tcp or tls")),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(bad(
                "credentials in the URL are not supported; use siem.token",
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, p) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in host"))?;
            (h, p.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad("invalid port"))?,
            None => default_port,
        };
        Ok(Endpoint {
            scheme,
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    pub fn tls(&self) -> bool {
        matches!(self.scheme, Scheme::Https | Scheme::Tls)
    }

    /// `host:port` for a Host header or a message (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_contract_forms() {
        let e = Endpoint::parse("https://splunk.example:8088/services/collector/event").unwrap();
        assert_eq!(
            (e.scheme, e.host.as_str(), e.port, e.path.as_str()),
            (
                Scheme::Https,
                "splunk.example",
                8088,
                "/services/collector/event"
            )
        );
        let e = Endpoint::parse("tls://h:6514").unwrap();
        assert_eq!((e.port, e.path.as_str(), e.tls()), (6514, "/", true));
        assert_eq!(Endpoint::parse("udp://h").unwrap().port, 514);
        assert_eq!(
            Endpoint::parse("tcp://[::1]:10514").unwrap().authority(),
            "[::1]:10514"
        );
        for bad in [
            "h:514",
            "ftp://h",
            "tcp://:5",
            "tcp://h:x",
            "https://u:p@h/",
        ] {
            let e = Endpoint::parse(bad).unwrap_err();
            assert_eq!(e.kind(), crate::error::Kind::Usage, "{bad}");
        }
    }
}
