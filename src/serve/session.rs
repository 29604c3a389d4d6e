//! The panel's session cookie: stateless, signed with a key derived from `server.read_token`,
//! so every replica of `serve` accepts the sessions of the others, and changing the read token
//! ends every session at once.
//!
//! The cookie's value is `v1.<expiry>.<nonce>.<signature>` (expiry in Unix seconds, a random
//! nonce, HMAC-SHA256 over both). It never contains the token or anything derived from it
//! that could be turned back into it, and it is checked in constant time.

use crate::config::Secret;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

/// The cookie's name.
pub const COOKIE: &str = "kasm_db_session";

/// How long a session lasts.
pub const LIFETIME_S: i64 = 12 * 3600;

fn key(read_token: &Secret) -> ring::hmac::Key {
    let mut material = b"kasm-db panel session v1\0".to_vec();
    material.extend_from_slice(read_token.expose().as_bytes());
    let derived = ring::digest::digest(&ring::digest::SHA256, &material);
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref())
}

fn signed_part(expiry: i64, nonce: &str) -> String {
    format!("v1.{expiry}.{nonce}")
}

/// A new session's cookie value, valid until `now` + [`LIFETIME_S`].
pub fn issue(read_token: &Secret, now: DateTime<Utc>) -> String {
    let nonce: [u8; 16] = rand::random();
    let nonce = URL_SAFE_NO_PAD.encode(nonce);
    let part = signed_part(now.timestamp() + LIFETIME_S, &nonce);
    let tag = ring::hmac::sign(&key(read_token), part.as_bytes());
    format!("{part}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// Whether `value` is a session issued for `read_token` and not yet expired.
pub fn verify(value: &str, read_token: &Secret, now: DateTime<Utc>) -> bool {
    if read_token.is_empty() {
        return false;
    }
    let Some((part, tag)) = value.rsplit_once('.') else {
        return false;
    };
    let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else {
        return false;
    };
    if ring::hmac::verify(&key(read_token), part.as_bytes(), &tag).is_err() {
        return false;
    }
    let mut fields = part.split('.');
    let (Some("v1"), Some(expiry)) = (fields.next(), fields.next()) else {
        return false;
    };
    expiry.parse::<i64>().is_ok_and(|e| now.timestamp() < e)
}

/// The session cookie's value among a request's `Cookie` headers.
pub fn from_headers(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
}

/// Whether the request carries a valid session for `read_token`.
pub fn valid(headers: &axum::http::HeaderMap, read_token: &Secret, now: DateTime<Utc>) -> bool {
    from_headers(headers).is_some_and(|v| verify(&v, read_token, now))
}

/// The `Set-Cookie` value that starts a session (HttpOnly, SameSite=Strict; Secure over TLS).
pub fn set_cookie(value: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; Path=/; Max-Age={LIFETIME_S}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends a session.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_sessions_verify_until_expiry_and_only_for_their_token() {
        let t = Secret::new("read-s3cret");
        let now = Utc::now();
        let v = issue(&t, now);
        assert!(!v.contains("read-s3cret"));
        assert!(verify(&v, &t, now));
        assert!(!verify(&v, &Secret::new("other"), now));
        assert!(!verify(
            &v,
            &t,
            now + chrono::Duration::seconds(LIFETIME_S + 1)
        ));
        // A changed expiry breaks the signature.
        let forged = v.replacen("v1.", "v1.9", 1);
        assert!(!verify(&forged, &t, now));
        assert!(!verify("garbage", &t, now));
        assert!(!verify(&v, &Secret::new(""), now));
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            format!("a=b; {COOKIE}={v}").parse().unwrap(),
        );
        assert!(valid(&h, &t, now));
    }
}
