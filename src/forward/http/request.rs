//! Building the `http` sink's request and classifying its answer. Pure: the token goes only
//! into the `Authorization` header built here. 2xx = delivered; 408/429/5xx are retried; 413
//! halves the request; 400/422 are dead letters; 401/403/404 get bounded retries.

use crate::config::Secret;
use crate::forward::delivery::Delivery;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};

/// The request for one NDJSON body (pure).
pub fn request(path: &str, token: &Secret, ndjson: &[u8]) -> Request<Full<Bytes>> {
    let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid-token-characters"));
    auth.set_sensitive(true);
    Request::post(path)
        .header(AUTHORIZATION, auth)
        .header(CONTENT_TYPE, "application/x-ndjson")
        .body(Full::new(Bytes::copy_from_slice(ndjson)))
        .unwrap_or_default()
}

/// Classify an answer (pure).
pub fn classify(status: u16, body: &[u8]) -> Delivery {
    let reason = format!(
        "HTTP sink answered {status}: {}",
        String::from_utf8_lossy(body)
            .chars()
            .take(200)
            .collect::<String>()
    );
    match status {
        200..=299 => Delivery::Delivered,
        408 | 429 | 500..=599 => Delivery::Retry {
            reason,
            ambiguous: false,
        },
        413 => Delivery::TooLarge { reason },
        400 | 422 => Delivery::Refused {
            reason,
            permanent: true,
        },
        _ => Delivery::Refused {
            reason,
            permanent: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_classes() {
        let r = request("/ingest", &Secret::new("t0k"), b"{}\n");
        assert_eq!(r.headers()[AUTHORIZATION], "Bearer t0k");
        assert!(!format!("{r:?}").contains("t0k"));
        assert_eq!(classify(204, b""), Delivery::Delivered);
        assert!(matches!(classify(503, b""), Delivery::Retry { .. }));
        assert!(matches!(
            classify(400, b""),
            Delivery::Refused {
                permanent: true,
                ..
            }
        ));
        assert!(matches!(
            classify(401, b""),
            Delivery::Refused {
                permanent: false,
                ..
            }
        ));
    }
}
