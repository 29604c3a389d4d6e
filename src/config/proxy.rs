//! The standard proxy variables of the environment snapshot, carried with the configuration so
//! that every HTTP client (`[siem]`'s HEC and http sinks, `[notify]`, `az://` storage) has them
//! without reading the environment itself. Which variable applies to a URL is decided by
//! `net::proxy::proxy_for`.
//!
//! Not a config section: only the variables curl reads set them — `https_proxy`/`HTTPS_PROXY`,
//! `http_proxy` (lowercase only, as curl: a CGI program gets a request's `Proxy:` header as
//! `HTTP_PROXY`, "httpoxy"), `all_proxy`/`ALL_PROXY` and `no_proxy`/`NO_PROXY`; the lowercase
//! form wins when both are set. Pure: it copies strings out of the map it is given. The proxy
//! URLs may carry `user:pass@` and are [`Secret`]s: never printed.

use super::Secret;
use std::collections::BTreeMap;

/// The proxy variables as they were in the environment (blank ones absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    /// `https_proxy` or `HTTPS_PROXY`: the proxy for `https://` URLs.
    pub https: Option<Secret>,
    /// `http_proxy` (never `HTTP_PROXY`): the proxy for `http://` URLs.
    pub http: Option<Secret>,
    /// `all_proxy` or `ALL_PROXY`: the proxy for either when the scheme's own is unset.
    pub all: Option<Secret>,
    /// `no_proxy` or `NO_PROXY`: the hosts reached directly (not a secret).
    pub no_proxy: Option<String>,
}

impl ProxyEnv {
    /// The variables' values in `env`; blank values count as unset.
    pub fn from_env(env: &BTreeMap<String, String>) -> ProxyEnv {
        let get = |names: &[&str]| {
            names.iter().find_map(|name| {
                env.get(*name)
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
            })
        };
        ProxyEnv {
            https: get(&["https_proxy", "HTTPS_PROXY"]).map(Secret::new),
            http: get(&["http_proxy"]).map(Secret::new),
            all: get(&["all_proxy", "ALL_PROXY"]).map(Secret::new),
            no_proxy: get(&["no_proxy", "NO_PROXY"]),
        }
    }

    /// Whether any proxy is configured.
    pub fn any(&self) -> bool {
        self.https.is_some() || self.http.is_some() || self.all.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_the_variables_curl_reads() {
        let p = ProxyEnv::from_env(&env(&[
            ("HTTPS_PROXY", "http://upper:3128"),
            ("https_proxy", "http://lower:3128"),
            ("HTTP_PROXY", "http://httpoxy:1"),
            ("ALL_PROXY", "http://all:3128"),
            ("NO_PROXY", "localhost"),
        ]));
        assert_eq!(
            p.https.as_ref().map(Secret::expose),
            Some("http://lower:3128")
        );
        assert_eq!(p.http, None, "HTTP_PROXY is never read (httpoxy)");
        assert_eq!(p.all.as_ref().map(Secret::expose), Some("http://all:3128"));
        assert_eq!(p.no_proxy.as_deref(), Some("localhost"));
        let p = ProxyEnv::from_env(&env(&[("http_proxy", " "), ("no_proxy", "")]));
        assert_eq!(p, ProxyEnv::default());
        assert!(!p.any());
    }

    #[test]
    fn never_shows_a_proxy_url() {
        let p = ProxyEnv::from_env(&env(&[("https_proxy", "http://u:hunter2@p:3128")]));
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}
