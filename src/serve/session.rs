//! TEMPORARY STUB on branch `panel` until main's `session.rs` is merged: a stateless signed
//! session cookie (HMAC-SHA256 of the expiry under a key derived from the read token).

use crate::config::Secret;
use axum::http::{HeaderMap, header};
use chrono::{DateTime, Utc};
use ring::hmac;

/// The cookie's name.
pub const COOKIE: &str = "kasm_db_session";
/// How long a session lasts.
pub const LIFETIME_S: i64 = 12 * 3600;

fn key(read_token: &Secret) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, read_token.expose().as_bytes())
}

/// A cookie value valid for [`LIFETIME_S`] from `now`.
pub fn issue(read_token: &Secret, now: DateTime<Utc>) -> String {
    let exp = now.timestamp() + LIFETIME_S;
    let tag = hmac::sign(&key(read_token), exp.to_string().as_bytes());
    format!("{exp}.{}", hex::encode(tag.as_ref()))
}

/// Whether `headers` carry a valid session cookie.
pub fn valid(headers: &HeaderMap, read_token: &Secret, now: DateTime<Utc>) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .any(|v| {
            let Some((exp, tag)) = v.split_once('.') else {
                return false;
            };
            let (Ok(e), Ok(t)) = (exp.parse::<i64>(), hex::decode(tag)) else {
                return false;
            };
            e > now.timestamp() && hmac::verify(&key(read_token), exp.as_bytes(), &t).is_ok()
        })
}
