//! The logging panel (`GET /logs`) and the dashboard (`GET /`) that `serve` shows in a browser
//! when `server.read_token` is set: sign-in and sign-out (`POST /logs/signin`,
//! `POST /logs/signout`), the pages and their static assets (`/assets/…`, embedded in the
//! binary), and the dashboard's own JSON (`GET /api/v1/dashboard`, [`dashboard`]). The records
//! themselves come from the read API (`read_api.rs`); the pages fetch it with the session cookie.
//!
//! What it must never do: serve anything without a read token configured (the router is not
//! mounted, so 404); put the read token in a URL, a page, a log line or a response (it is only
//! ever compared, in constant time, with what the sign-in form sent); serve an asset from
//! elsewhere (deployments are offline: everything is `include_str!`ed); render data into HTML
//! (the pages are static: every record is fetched as JSON and shown with `textContent`, and the
//! Content-Security-Policy of [`security_headers`] forbids inline script, so a logged
//! `<script>` or `onerror=` does nothing); or set a session cookie script can read (HttpOnly,
//! SameSite=Strict, Secure under TLS).

pub mod dashboard;

use super::backup_status::BackupStatus;
use super::read_api::ReadApp;
use super::session;
use crate::config::Config;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde::Deserialize;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The Content-Security-Policy of every response: scripts and styles from this origin only,
/// none inline, no plugin, no frame, forms post here only.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What the panel's handlers share.
pub struct Panel {
    /// The read API's state: its own pool, the tokens, readiness. The panel signs in with the
    /// read token and authorizes its JSON exactly as the read API does.
    pub read: Arc<ReadApp>,
    /// `serve` runs TLS: the cookie is `Secure`.
    pub secure: bool,
    pub config: Arc<Config>,
    /// The backup targets' cached listings (shared with `/metrics`); `None` without `backup.to`.
    pub backups: Option<Arc<BackupStatus>>,
    pub cache: dashboard::Cache,
}

/// The panel's routes (merged with the read API's by `serve`, only with a read token).
pub fn router(panel: Arc<Panel>) -> Router {
    Router::new()
        .route("/", get(dashboard_page))
        .route("/logs", get(logs_page))
        .route("/logs/signin", post(signin))
        .route("/logs/signout", post(signout))
        .route("/assets/{name}", get(asset))
        .route("/api/v1/dashboard", get(dashboard::get))
        .with_state(panel)
}

/// Adds the Content-Security-Policy and the other security headers to `r` (all of `serve`'s
/// responses go through it, pages and JSON alike), and `Cache-Control: no-store` to whatever
/// has not chosen its own caching.
pub async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

impl Panel {
    fn signed_in(&self, headers: &HeaderMap) -> bool {
        session::valid(headers, &self.read.read_token, Utc::now())
    }

    fn token_matches(&self, given: &str) -> bool {
        let want = self.read.read_token.expose().as_bytes();
        !want.is_empty() && bool::from(given.as_bytes().ct_eq(want))
    }
}

const LOGS_HTML: &str = include_str!("assets/logs.html");
const DASHBOARD_HTML: &str = include_str!("assets/dashboard.html");
const SIGNIN_HTML: &str = include_str!("assets/signin.html");

/// Where the sign-in form sends the browser afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Logs,
    Dashboard,
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

// HTML escaping for text nodes and attribute values: the report's.
use crate::report::scale::esc as escape;

/// The sign-in page. The form posts to `/logs/signin` with the page's own query (the filters)
/// so that the redirect after it keeps them; `error` is one of this module's fixed sentences.
fn signin_page(
    status: StatusCode,
    query: Option<&str>,
    next: Next,
    error: Option<&str>,
) -> Response {
    let action = match query.filter(|q| !q.is_empty()) {
        Some(q) => format!("/logs/signin?{q}"),
        None => "/logs/signin".to_string(),
    };
    let body = SIGNIN_HTML
        .replace("{{action}}", &escape(&action))
        .replace(
            "{{next}}",
            match next {
                Next::Logs => "logs",
                Next::Dashboard => "dashboard",
            },
        )
        .replace(
            "{{error}}",
            &error
                .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
                .unwrap_or_default(),
        );
    html(status, body)
}

async fn logs_page(
    State(panel): State<Arc<Panel>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if panel.signed_in(&headers) {
        html(StatusCode::OK, LOGS_HTML.to_string())
    } else {
        signin_page(StatusCode::OK, query.as_deref(), Next::Logs, None)
    }
}

async fn dashboard_page(State(panel): State<Arc<Panel>>, headers: HeaderMap) -> Response {
    if panel.signed_in(&headers) {
        html(StatusCode::OK, DASHBOARD_HTML.to_string())
    } else {
        signin_page(StatusCode::OK, None, Next::Dashboard, None)
    }
}

#[derive(Deserialize)]
struct SignIn {
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: String,
}

fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn set_cookie(r: &mut Response, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
}

/// `POST /logs/signin` (form field `token`): the right read token gets the session cookie and
/// a 303 back to the page it came from, filters kept; anything else the form again, 401.
async fn signin(
    State(panel): State<Arc<Panel>>,
    RawQuery(query): RawQuery,
    axum::Form(form): axum::Form<SignIn>,
) -> Response {
    let next = if form.next == "dashboard" {
        Next::Dashboard
    } else {
        Next::Logs
    };
    if !panel.token_matches(form.token.trim()) {
        tracing::info!("panel sign-in refused: wrong read token");
        return signin_page(
            StatusCode::UNAUTHORIZED,
            query.as_deref(),
            next,
            Some("That is not the read token (server.read_token)."),
        );
    }
    let location = match (next, query.as_deref().filter(|q| !q.is_empty())) {
        (Next::Dashboard, _) => "/".to_string(),
        (Next::Logs, Some(q)) => format!("/logs?{q}"),
        (Next::Logs, None) => "/logs".to_string(),
    };
    let mut r = see_other(&location);
    let value = session::issue(&panel.read.read_token, Utc::now());
    set_cookie(&mut r, session::set_cookie(&value, panel.secure));
    r
}

/// `POST /logs/signout`: the cookie is removed and the browser sent to the sign-in form. (The
/// session is stateless: a copy of the cookie taken before stays valid until it expires;
/// changing `server.read_token` ends every session.)
async fn signout(State(panel): State<Arc<Panel>>) -> Response {
    let mut r = see_other("/logs");
    set_cookie(&mut r, session::clear_cookie(panel.secure));
    r
}

/// The embedded assets: (name, content type, bytes).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "panel.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/panel.js"),
    ),
    (
        "common.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/common.js"),
    ),
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/dashboard.js"),
    ),
    (
        "panel.css",
        "text/css; charset=utf-8",
        include_str!("assets/panel.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("assets/favicon.svg"),
    ),
];

/// A static asset, revalidated by ETag (the binary's version and the content's length and
/// hash), so an upgraded `serve` is never shown with an old script.
async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some((_, kind, body)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let etag = format!("\"{}\"", etag_of(body));
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut r = if cached {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, HeaderValue::from_static(kind))],
            *body,
        )
            .into_response()
    };
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    r
}

fn etag_of(body: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(body.as_bytes());
    hex::encode(&digest[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ` onxxx=` attribute.
    fn has_handler(page: &str) -> bool {
        page.match_indices(" on").any(|(i, _)| {
            let rest = &page[i + 3..];
            let name = rest.len()
                - rest
                    .trim_start_matches(|c: char| c.is_ascii_lowercase())
                    .len();
            name > 0 && rest[name..].starts_with('=')
        })
    }

    #[test]
    fn escaping() {
        assert_eq!(
            escape("/logs/signin?q=<b>&x=\"'"),
            "/logs/signin?q=&lt;b&gt;&amp;x=&quot;&#39;"
        );
    }

    #[test]
    fn no_asset_or_page_reaches_outside_or_runs_inline() {
        for (name, _, body) in ASSETS {
            let body = body.replace("http://www.w3.org/2000/svg", "");
            for bad in [
                "http://",
                "https://",
                "//cdn",
                "innerHTML",
                "outerHTML",
                "eval(",
            ] {
                assert!(!body.contains(bad), "{name} contains {bad}");
            }
        }
        for page in [LOGS_HTML, DASHBOARD_HTML, SIGNIN_HTML] {
            let page = page.replace("http://www.w3.org/2000/svg", "");
            assert!(!page.contains("http://") && !page.contains("https://"));
            assert!(!page.contains("<script>"), "inline script");
            assert!(!has_handler(&page), "inline handler");
            assert!(!page.contains("style="), "inline style");
        }
    }
}
