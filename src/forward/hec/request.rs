//! Building Splunk HEC requests: event POST (gzip), ack poll and health check. Pure: the token
//! goes only into the `Authorization` header of the request built here.

use crate::config::Secret;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};

pub const CHANNEL_HEADER: &str = "X-Splunk-Request-Channel";

/// The collector paths derived from `siem.url`'s path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub event: String,
    pub ack: String,
    pub health: String,
}

impl Paths {
    /// `/` or empty → `/services/collector/event`; any other path is used as given.
    pub fn from_url_path(path: &str) -> Paths {
        let event = if path.trim_end_matches('/').is_empty() {
            "/services/collector/event".to_string()
        } else {
            path.to_string()
        };
        let prefix = event
            .find("/services/collector")
            .map(|i| &event[..i])
            .unwrap_or("");
        Paths {
            ack: format!("{prefix}/services/collector/ack"),
            health: format!("{prefix}/services/collector/health"),
            event,
        }
    }
}

fn auth(token: &Secret) -> HeaderValue {
    let mut v = HeaderValue::from_str(&format!("Splunk {}", token.expose()))
        .unwrap_or_else(|_| HeaderValue::from_static("Splunk invalid-token-characters"));
    v.set_sensitive(true);
    v
}

fn base(path: &str, token: &Secret, channel: Option<&str>) -> hyper::http::request::Builder {
    let mut b = Request::post(path).header(AUTHORIZATION, auth(token));
    if let Some(c) = channel {
        b = b.header(CHANNEL_HEADER, c);
    }
    b
}

pub fn events(
    paths: &Paths,
    token: &Secret,
    channel: Option<&str>,
    gz_body: Vec<u8>,
) -> Request<Full<Bytes>> {
    base(&paths.event, token, channel)
        .header(CONTENT_TYPE, "application/json")
        .header(CONTENT_ENCODING, "gzip")
        .body(Full::new(Bytes::from(gz_body)))
        .unwrap_or_default()
}

pub fn ack_poll(paths: &Paths, token: &Secret, channel: &str, ids: &[u64]) -> Request<Full<Bytes>> {
    let body = serde_json::json!({ "acks": ids }).to_string();
    base(&paths.ack, token, Some(channel))
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

pub fn health(paths: &Paths) -> Request<Full<Bytes>> {
    Request::get(&paths.health)
        .body(Full::new(Bytes::new()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_headers() {
        let p = Paths::from_url_path("/");
        assert_eq!(p.event, "/services/collector/event");
        assert_eq!(p.ack, "/services/collector/ack");
        let p = Paths::from_url_path("/splunk/services/collector/event");
        assert_eq!(p.health, "/splunk/services/collector/health");
        let r = events(&p, &Secret::new("tok-1"), Some("ch"), vec![1, 2]);
        assert_eq!(r.headers()[AUTHORIZATION], "Splunk tok-1");
        assert!(r.headers()[AUTHORIZATION].is_sensitive());
        assert_eq!(r.headers()[CHANNEL_HEADER], "ch");
        assert_eq!(r.headers()[CONTENT_ENCODING], "gzip");
        assert!(!format!("{r:?}").contains("tok-1"));
    }
}
