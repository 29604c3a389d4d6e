//! Which proxy, if any, a connection goes through, decided as curl decides it from the standard
//! variables ([`ProxyEnv`]): `https_proxy` for `https://` targets, `http_proxy` for `http://`
//! ones, `all_proxy` when the scheme's own is unset, and none for a host `no_proxy` names.
//!
//! `no_proxy` is a comma (or space) separated list, matched case-insensitively: `*` (every host),
//! a host or domain (`example.com` matches it and every name under it, `.example.com` the same),
//! `host:port` (that port only), an IP address as written (`127.0.0.1`, `::1` or `[::1]`), or
//! a CIDR range (`10.0.0.0/8`, `fd00::/8`) that matches a target written as an IP address in
//! it (as curl 7.86 and later; names are never resolved to be matched). Loopback is not
//! special: `localhost` goes through the proxy unless `no_proxy` names it, as with curl.
//!
//! A proxy URL is `[http://][user:pass@]host[:port]` (curl's default port 1080); `https://`
//! (TLS to the proxy) and SOCKS are refused with an error that names the variable, never its
//! value. Pure: parsing and matching only, no I/O. The credentials are [`Secret`]s and must
//! never be printed: a [`Proxy`] shows itself as `host:port`.

use crate::config::Secret;
use crate::config::proxy::ProxyEnv;
use base64::Engine;

/// Where a connection goes: scheme, host (IPv6 without brackets) and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub https: bool,
    pub host: String,
    pub port: u16,
}

impl Target {
    /// `host:port` (IPv6 in brackets), for a Host header, a CONNECT line or a message.
    pub fn authority(&self) -> String {
        authority(&self.host, self.port)
    }
}

/// An HTTP proxy: where it listens and, when the URL had them, its Basic credentials.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Proxy {
    pub host: String,
    pub port: u16,
    /// `Basic <base64(user:pass)>`, the `Proxy-Authorization` value.
    auth: Option<Secret>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Proxy({})", self.authority())
    }
}

impl Proxy {
    /// `host:port` of the proxy: all a message may say about it.
    pub fn authority(&self) -> String {
        authority(&self.host, self.port)
    }

    /// The `Proxy-Authorization` header's value, when the URL had credentials.
    pub fn authorization(&self) -> Option<&Secret> {
        self.auth.as_ref()
    }
}

/// Why a proxy variable cannot be used. Names the variable, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error(
        "{variable}: {scheme}:// proxies are not supported (TLS or SOCKS to the proxy); use an http:// proxy"
    )]
    Unsupported {
        variable: &'static str,
        scheme: String,
    },
    #[error("{variable} is not a valid proxy URL: {why}")]
    Invalid {
        variable: &'static str,
        why: &'static str,
    },
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The proxy `target` is reached through, or `None` for a direct connection.
pub fn proxy_for(target: &Target, env: &ProxyEnv) -> Result<Option<Proxy>, ProxyError> {
    let (variable, url) = match (target.https, &env.https, &env.http, &env.all) {
        (true, Some(u), _, _) => ("https_proxy", u),
        (false, _, Some(u), _) => ("http_proxy", u),
        (_, _, _, Some(u)) => ("all_proxy", u),
        _ => return Ok(None),
    };
    if let Some(list) = &env.no_proxy {
        if bypassed(list, &target.host, target.port) {
            return Ok(None);
        }
    }
    parse(variable, url.expose()).map(Some)
}

/// Whether `no_proxy`'s list names `host` (on `port`).
pub fn bypassed(no_proxy: &str, host: &str, port: u16) -> bool {
    let host = normal(host);
    no_proxy
        .split([',', ' ', '\t'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            if let Some(range) = cidr(entry) {
                return normal(&host).parse().is_ok_and(|ip| range.contains(ip));
            }
            let (name, entry_port) = split_port(entry);
            if entry_port.is_some_and(|p| p != port) {
                return false;
            }
            let name = normal(name.strip_prefix('.').unwrap_or(name));
            if name.is_empty() {
                return false;
            }
            host == name
                || (host.len() > name.len()
                    && host.ends_with(&name)
                    && host.as_bytes()[host.len() - name.len() - 1] == b'.')
        })
}

/// An address range `addr/prefix` of `no_proxy`.
struct Cidr {
    net: core::net::IpAddr,
    prefix: u32,
}

impl Cidr {
    fn contains(&self, ip: core::net::IpAddr) -> bool {
        use core::net::IpAddr;
        let (a, b, bits) = match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (u32::from(n) as u128, u32::from(i) as u128, 32),
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
            _ => return false,
        };
        let keep = bits - self.prefix;
        keep >= bits || (a >> keep) == (b >> keep)
    }
}

/// `entry` as a CIDR range, when it is one (`10.0.0.0/8`, `[fd00::]/8`, `fd00::/8`).
fn cidr(entry: &str) -> Option<Cidr> {
    let (addr, prefix) = entry.split_once('/')?;
    let net: core::net::IpAddr = normal(addr).parse().ok()?;
    let prefix: u32 = prefix.parse().ok()?;
    let max = if net.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some(Cidr { net, prefix })
}

/// Lowercase, without IPv6 brackets or a trailing dot.
fn normal(host: &str) -> String {
    let h = host.trim();
    let h = h
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(h);
    h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase()
}

/// `host:port`, `[v6]:port`, `[v6]`, a bare IPv6 address or a host.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        if let Some((h, after)) = rest.split_once(']') {
            return (h, after.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
        return (entry, None);
    }
    match entry.split_once(':') {
        Some((h, p)) if !p.contains(':') => match p.parse() {
            Ok(p) => (h, Some(p)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

/// Parse a proxy URL as curl does (no scheme means http://, no port 1080).
fn parse(variable: &'static str, url: &str) -> Result<Proxy, ProxyError> {
    let invalid = |why| ProxyError::Invalid { variable, why };
    let rest = match url.split_once("://") {
        Some((scheme, rest)) => {
            let scheme = scheme.to_ascii_lowercase();
            if scheme != "http" {
                return Err(ProxyError::Unsupported { variable, scheme });
            }
            rest
        }
        None => url,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or(invalid("unclosed [ in the host"))?;
        (h, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    let port = match port {
        None | Some("") => 1080,
        Some(p) => p.parse().map_err(|_| invalid("the port is not a number"))?,
    };
    let auth = match userinfo {
        None => None,
        Some(u) => {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|c| c.into_owned())
                    .map_err(|_| invalid("the credentials are not valid UTF-8"))
            };
            let pair = format!("{}:{}", decode(user)?, decode(pass)?);
            Some(Secret::new(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )))
        }
    };
    Ok(Proxy {
        host: host.to_ascii_lowercase(),
        port,
        auth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(
        https: Option<&str>,
        http: Option<&str>,
        all: Option<&str>,
        no: Option<&str>,
    ) -> ProxyEnv {
        ProxyEnv {
            https: https.map(Secret::new),
            http: http.map(Secret::new),
            all: all.map(Secret::new),
            no_proxy: no.map(str::to_string),
        }
    }

    fn t(https: bool, host: &str, port: u16) -> Target {
        Target {
            https,
            host: host.to_string(),
            port,
        }
    }

    fn via(target: &Target, e: &ProxyEnv) -> Option<String> {
        proxy_for(target, e).unwrap().map(|p| p.authority())
    }

    #[test]
    fn picks_the_variable_of_the_scheme_then_all_proxy() {
        let e = env(
            Some("http://s:3128"),
            Some("http://p:8080"),
            Some("a:9"),
            None,
        );
        assert_eq!(via(&t(true, "h", 443), &e).as_deref(), Some("s:3128"));
        assert_eq!(via(&t(false, "h", 80), &e).as_deref(), Some("p:8080"));
        let e = env(None, None, Some("a:9"), None);
        assert_eq!(via(&t(true, "h", 443), &e).as_deref(), Some("a:9"));
        assert_eq!(via(&t(false, "h", 80), &e).as_deref(), Some("a:9"));
        let e = env(Some("http://s:3128"), None, None, None);
        assert_eq!(
            via(&t(false, "h", 80), &e),
            None,
            "https_proxy is not for http"
        );
        assert_eq!(via(&t(true, "h", 443), &ProxyEnv::default()), None);
    }

    #[test]
    fn loopback_is_proxied_unless_no_proxy_names_it() {
        let e = env(Some("p:3128"), Some("p:3128"), None, None);
        assert!(via(&t(false, "127.0.0.1", 8080), &e).is_some());
        assert!(via(&t(true, "localhost", 443), &e).is_some());
        let e = env(Some("p:3128"), None, None, Some("127.0.0.1,localhost"));
        assert_eq!(via(&t(true, "127.0.0.1", 8080), &e), None);
        assert_eq!(via(&t(true, "LOCALHOST", 8080), &e), None);
    }

    #[test]
    fn no_proxy_matches_as_curl_does() {
        let yes = [
            ("*", "anything.example", 1),
            ("example.com", "example.com", 1),
            ("example.com", "www.example.com", 1),
            (".example.com", "www.example.com", 1),
            (".example.com", "example.com", 1),
            ("EXAMPLE.com", "Www.Example.COM.", 1),
            ("other, example.com", "a.example.com", 1),
            ("other example.com", "a.example.com", 1),
            ("example.com:8088", "splunk.example.com", 8088),
            ("127.0.0.1", "127.0.0.1", 1),
            ("::1", "::1", 1),
            ("[::1]", "::1", 1),
            ("[::1]:8080", "::1", 8080),
            ("10.0.0.0/8", "10.20.30.40", 1),
            ("192.168.1.0/24", "192.168.1.255", 1),
            ("127.0.0.1/32", "127.0.0.1", 1),
            ("0.0.0.0/0", "8.8.8.8", 1),
            ("fd00::/8", "fd12::1", 1),
            ("[fd00::]/8", "[fd12::1]", 1),
            ("other, 172.16.0.0/12", "172.31.255.255", 1),
        ];
        for (list, host, port) in yes {
            assert!(
                bypassed(list, host, port),
                "{list} should match {host}:{port}"
            );
        }
        let no = [
            ("example.com", "myexample.com", 1),
            ("www.example.com", "example.com", 1),
            ("example.com:8088", "example.com", 443),
            ("127.0.0.1", "127.0.0.10", 1),
            ("[::1]:8080", "::1", 80),
            ("", "h", 1),
            (".", "h", 1),
            ("*.example.com", "a.example.com", 1),
            ("10.0.0.0/8", "11.0.0.1", 1),
            ("192.168.1.0/24", "192.168.2.1", 1),
            ("172.16.0.0/12", "172.32.0.1", 1),
            ("10.0.0.0/8", "ten.example.com", 1),
            ("10.0.0.0/8", "::ffff:10.0.0.1", 1),
            ("fd00::/8", "10.0.0.1", 1),
            ("10.0.0.0/33", "10.0.0.1", 1),
        ];
        for (list, host, port) in no {
            assert!(
                !bypassed(list, host, port),
                "{list} should not match {host}:{port}"
            );
        }
    }

    #[test]
    fn parses_proxy_urls_with_credentials_never_shown() {
        let e = env(
            Some("http://us%40er:p%3Ass@Proxy.example:3128/"),
            None,
            None,
            None,
        );
        let p = proxy_for(&t(true, "h", 443), &e).unwrap().unwrap();
        assert_eq!(p.authority(), "proxy.example:3128");
        let auth = p.authorization().unwrap().expose();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.strip_prefix("Basic ").unwrap())
            .unwrap();
        assert_eq!(decoded, b"us@er:p:ss");
        assert_eq!(format!("{p:?}"), "Proxy(proxy.example:3128)");
        let p = proxy_for(&t(true, "h", 443), &env(Some("[::1]"), None, None, None))
            .unwrap()
            .unwrap();
        assert_eq!(
            (p.authority(), p.authorization()),
            ("[::1]:1080".into(), None)
        );
    }

    #[test]
    fn refuses_what_it_cannot_speak_naming_the_variable_only() {
        for (url, scheme) in [
            ("https://u:secret@p:443", "https"),
            ("socks5://p:1080", "socks5"),
        ] {
            let e = proxy_for(&t(true, "h", 443), &env(Some(url), None, None, None)).unwrap_err();
            assert_eq!(
                e,
                ProxyError::Unsupported {
                    variable: "https_proxy",
                    scheme: scheme.into()
                }
            );
            assert!(!e.to_string().contains("secret"));
        }
        for url in ["http://:3128", "http://u:secret@p:x", "http://[::1:80"] {
            let e = proxy_for(&t(false, "h", 80), &env(None, None, Some(url), None)).unwrap_err();
            assert!(
                matches!(
                    e,
                    ProxyError::Invalid {
                        variable: "all_proxy",
                        ..
                    }
                ),
                "{url}"
            );
            assert!(!e.to_string().contains("secret"));
        }
    }
}
