//! The `[notify]` section: where job notifications go (`urls`, each gets a POST with a JSON
//! body), which of a job's moments are sent (`on`: `start`, `success`, `failure`; default
//! `["failure"]`) and an optional bearer `token`.
//!
//! Pure: parsing and validation only, no I/O. A URL is checked here (http or https, a host, no
//! credentials in it: those go in `token`), so a typo fails at start-up with exit 2, not at the
//! first failed backup. Never prints a URL whole: ping URLs (healthchecks.io's `/<uuid>`, Slack's
//! `/services/T../B../X..`) are secrets in their path, so [`NotifyUrl`]'s `Debug`, `Display` and
//! `Serialize` show only the scheme, host and port.

use super::{Secret, lenient};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// `[notify]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Each gets a POST with the JSON body of every event `on` names.
    #[serde(deserialize_with = "urls")]
    pub urls: Vec<NotifyUrl>,
    /// The moments of a job that are sent.
    #[serde(deserialize_with = "events")]
    pub on: Vec<Event>,
    /// Sent as `Authorization: Bearer <token>` when set.
    pub token: Option<Secret>,
    /// Not a key: the environment's proxy variables (set with the configuration's).
    #[serde(skip)]
    pub proxy: super::proxy::ProxyEnv,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            urls: Vec::new(),
            on: vec![Event::Failure],
            token: None,
            proxy: Default::default(),
        }
    }
}

impl NotifyConfig {
    /// Whether `event` is sent anywhere.
    pub fn sends(&self, event: Event) -> bool {
        !self.urls.is_empty() && self.on.contains(&event)
    }
}

/// A moment of a job, and the `status` of its notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    Start,
    Success,
    Failure,
}

impl Event {
    pub const ALL: [Event; 3] = [Event::Start, Event::Success, Event::Failure];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::Start => "start",
            Event::Success => "success",
            Event::Failure => "failure",
        }
    }

    pub fn parse(text: &str) -> Result<Event, String> {
        Event::ALL
            .into_iter()
            .find(|e| e.as_str() == text.trim())
            .ok_or_else(|| {
                format!("notify.on: {text:?} is not an event; use any of \"start\", \"success\", \"failure\"")
            })
    }
}

/// A notification URL: http or https, with a host, without credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct NotifyUrl {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// The path with its query, `/` when absent (a secret, like the whole URL: never printed).
    pub path: String,
}

impl NotifyUrl {
    pub fn parse(url: &str) -> Result<NotifyUrl, String> {
        // The message names only what is wrong, never the URL (its path may be a secret).
        let bad = |why: &str| format!("notify.urls: {why}");
        let url = url.trim();
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("a URL must start with http:// or https://"))?;
        let (https, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "http" => (false, 80),
            "https" => (true, 443),
            _ => return Err(bad("the scheme must be http or https")),
        };
        let rest = rest.split('#').next().unwrap_or(rest);
        let cut = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(cut);
        if authority.contains('@') {
            return Err(bad(
                "credentials in a URL are not supported; use notify.token (sent as a bearer token)",
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, p) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in a host"))?;
            (h, p.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(bad("a URL names no host"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad(&format!("invalid port in a URL to {host}")))?,
            None => default_port,
        };
        let path = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        if path.contains(char::is_whitespace) {
            return Err(bad(&format!("the URL to {host} has a space in its path")));
        }
        Ok(NotifyUrl {
            https,
            host: host.to_string(),
            port,
            path,
        })
    }

    /// `scheme://host:port`: how a URL is named in logs and errors (never its path or query).
    pub fn origin(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for NotifyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/<redacted>", self.origin())
    }
}

impl fmt::Display for NotifyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/<redacted>", self.origin())
    }
}

impl Serialize for NotifyUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn urls<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<NotifyUrl>, D::Error> {
    lenient::string_list(d)?
        .iter()
        .map(|u| NotifyUrl::parse(u).map_err(serde::de::Error::custom))
        .collect()
}

fn events<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Event>, D::Error> {
    let mut out = Vec::new();
    for text in lenient::string_list(d)? {
        let e = Event::parse(&text).map_err(serde::de::Error::custom)?;
        if !out.contains(&e) {
            out.push(e);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<NotifyConfig, String> {
        toml::from_str::<NotifyConfig>(toml).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_to_failures_only_and_nowhere() {
        let c = parse("").unwrap();
        assert_eq!(c.on, vec![Event::Failure]);
        assert!(c.urls.is_empty() && !c.sends(Event::Failure));
        let c =
            parse("urls = [\"https://hc-ping.com/0f4e\"]\non = [\"start\", \"success\"]").unwrap();
        assert!(c.sends(Event::Start) && c.sends(Event::Success) && !c.sends(Event::Failure));
        assert_eq!(
            (c.urls[0].https, c.urls[0].port, c.urls[0].path.as_str()),
            (true, 443, "/0f4e")
        );
    }

    #[test]
    fn unknown_events_and_keys_are_refused_by_name() {
        let e = parse("on = [\"failed\"]").unwrap_err();
        assert!(e.contains("\"failed\"") && e.contains("\"failure\""), "{e}");
        let e = parse("url = \"http://x\"").unwrap_err();
        assert!(e.contains("url"), "{e}");
    }

    #[test]
    fn urls_are_http_with_a_host_and_no_credentials() {
        let u = NotifyUrl::parse("http://127.0.0.1:9/hook?k=v").unwrap();
        assert_eq!((u.port, u.path.as_str()), (9, "/hook?k=v"));
        assert_eq!(NotifyUrl::parse("http://h?x=1").unwrap().path, "/?x=1");
        assert_eq!(
            NotifyUrl::parse("http://[::1]:8/").unwrap().origin(),
            "http://[::1]:8"
        );
        for (bad, why) in [
            ("hooks.example/x", "http://"),
            ("ftp://h/x", "scheme"),
            ("https://user:pw-s3cr3t@h/x", "notify.token"),
            ("https:///x", "no host"),
            ("http://h:0/", "port"),
            ("http://h:99999/", "port"),
        ] {
            let e = NotifyUrl::parse(bad).unwrap_err();
            assert!(e.contains(why) && !e.contains("s3cr3t"), "{bad}: {e}");
        }
    }

    #[test]
    fn urls_and_token_are_never_printed() {
        let c =
            parse("urls = [\"https://hc-ping.com/uuid-s3cr3t?k=s3cr3t\"]\ntoken = \"tok-s3cr3t\"")
                .unwrap();
        let shown = format!("{c:?} {} {}", c.urls[0], serde_json::to_string(&c).unwrap());
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("https://hc-ping.com:443"), "{shown}");
    }
}
