//! The HTTP surface of `serve` (axum): ingest (`/api/v1/logs`, the HEC receiver with its data
//! channels, ack and health endpoints), health and metrics.
//!
//! A 200 on an ingest endpoint is sent only after `Store::store` returned Ok, i.e. once the rows
//! are committed (or fsynced in the spool); while the database is unreachable, or not yet
//! brought up at start, the answer is 503 with Retry-After unless the spool took the rows,
//! never 200 for what is not durable. Health is 503 until the database is ready. Bodies over `max_body_bytes` (on the wire or once gunzipped) get 413 without being
//! read to the end. The token is never logged or echoed, whatever the request.

use super::auth::{self, Verdict};
use super::body::{self, BodyError};
use super::channels;
use super::metrics::Metrics;
use super::parse::{self, HecError};
use super::store::{Store, StoreReport};
use crate::config::Secret;
use crate::error::Kind;
use crate::logs::record::Class;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Everything the handlers share.
pub struct App {
    pub store: Store,
    pub token: Secret,
    pub max_body_bytes: usize,
    pub max_line_bytes: usize,
    pub metrics: Arc<Metrics>,
    /// The SIEM forwarder's sink name and counters, when `[siem]` is configured.
    pub forward: Option<(&'static str, Arc<crate::forward::ForwardMetrics>)>,
    /// Keeps "answering 503" to a line per interval while the database is away.
    pub unavailable_log: super::throttle::Throttle,
    /// HEC data channels and their (always already durable) ack ids.
    pub channels: super::channels::Channels,
    /// The backup targets' state for `/metrics`; `None` without `backup.to`.
    pub backups: Option<Arc<super::backup_status::BackupStatus>>,
    /// `server.read_token`: a write presenting it gets 403, not 401.
    pub read_token: Option<Secret>,
}

/// The ingest, health and metrics routes, with the read API and the panel merged in when
/// `server.read_token` is set (`read`).
pub fn router(app: Arc<App>, read: Option<Router>) -> Router {
    let base = Router::new()
        .route("/api/v1/logs", post(logs))
        .route("/services/collector", post(hec))
        .route("/services/collector/event", post(hec))
        .route("/services/collector/event/1.0", post(hec))
        .route("/services/collector/ack", post(hec_ack))
        .route("/services/collector/ack/1.0", post(hec_ack))
        .route("/services/collector/health", get(hec_health))
        .route("/services/collector/health/1.0", get(hec_health))
        .route("/api/__healthcheck", get(health))
        .route("/metrics", get(metrics))
        .with_state(app);
    let router = match read {
        Some(read) => base.merge(read),
        None => base,
    };
    // The CSP and the other security headers on every answer: pages, assets and JSON alike.
    router.layer(axum::middleware::map_response(
        super::panel::security_headers,
    ))
}

const RETRY_AFTER_S: &str = "5";

fn json_response(status: StatusCode, v: serde_json::Value) -> Response {
    (status, axum::Json(v)).into_response()
}

fn unavailable(v: serde_json::Value) -> Response {
    let mut r = json_response(StatusCode::SERVICE_UNAVAILABLE, v);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_S));
    r
}

/// The body's bytes after the size limit and gzip, or the error answer.
enum Read {
    Ok(Vec<u8>),
    TooLarge,
    Bad(String),
}

async fn read_body(app: &App, headers: &HeaderMap, body: Body) -> Read {
    let limit = app.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Read::TooLarge;
    }
    let raw = match body::read_limited(body, limit).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return Read::TooLarge,
        Err(BodyError::Read(e) | BodyError::BadGzip(e)) => return Read::Bad(e),
    };
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    if !gzip {
        return Read::Ok(raw);
    }
    match body::gunzip_limited(&raw, limit) {
        Ok(b) => Read::Ok(b),
        Err(BodyError::TooLarge) => Read::TooLarge,
        Err(BodyError::Read(e) | BodyError::BadGzip(e)) => {
            Read::Bad(format!("invalid gzip body: {e}"))
        }
    }
}

fn authorize(app: &App, headers: &HeaderMap) -> Verdict {
    auth::check_write(
        headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()),
        &app.token,
        app.read_token.as_ref(),
    )
}

fn count(app: &App, source: &'static str, out: &StoreReport, parse_rejects: usize) {
    for class in Class::ALL {
        let c = class as usize;
        let l = [("class", class.as_str()), ("source", source)];
        app.metrics.add("ingested_total", &l, out.stored[c]);
        app.metrics.add("dropped_total", &l, out.dropped[c]);
        app.metrics.add("spooled_total", &l, out.spooled[c]);
        app.metrics.add("forwarded_total", &l, out.forwarded[c]);
    }
    app.metrics.add(
        "rejected_total",
        &[("source", source)],
        (out.refused.len() + parse_rejects) as u64,
    );
}

fn status(app: &App, endpoint: &'static str, code: StatusCode) {
    app.metrics.add(
        "http_responses_total",
        &[("endpoint", endpoint), ("code", code.as_str())],
        1,
    );
}

async fn logs(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let r = logs_inner(&app, &headers, body).await;
    status(&app, "logs", r.status());
    r
}

async fn logs_inner(app: &App, headers: &HeaderMap, body: Body) -> Response {
    match authorize(app, headers) {
        Verdict::Ok => {}
        Verdict::Missing => {
            return json_response(
                StatusCode::UNAUTHORIZED,
                json!({"error": "missing token: send Authorization: Bearer <server.token>"}),
            );
        }
        Verdict::Invalid => {
            return json_response(StatusCode::UNAUTHORIZED, json!({"error": "invalid token"}));
        }
        Verdict::Forbidden => {
            return json_response(
                StatusCode::FORBIDDEN,
                json!({"error": "the read token cannot write: use server.token"}),
            );
        }
    }
    let data = match read_body(app, headers, body).await {
        Read::Ok(d) => d,
        Read::TooLarge => {
            return json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error": format!("body over the limit of {} bytes", app.max_body_bytes)}),
            );
        }
        Read::Bad(e) => return json_response(StatusCode::BAD_REQUEST, json!({"error": e})),
    };
    let parsed = match parse::logs_body(&data, app.max_line_bytes) {
        Ok(p) => p,
        Err(parse::Malformed(e)) => {
            return json_response(StatusCode::BAD_REQUEST, json!({"error": e}));
        }
    };
    drop(data);
    let mut refused = parsed.refused;
    let n = parsed.records.len();
    match app.store.store(parsed.records).await {
        Ok(out) => {
            count(app, "http", &out, refused.len());
            for (i, reason) in &out.refused {
                refused.push(parse::Refused {
                    index: *i as u64 + 1,
                    reason: format!("refused by the database: {reason}"),
                });
            }
            let rejected = refused.len();
            refused.truncate(20);
            json_response(
                StatusCode::OK,
                json!({
                    "accepted": out.accepted(),
                    "rejected": rejected,
                    "stored": out.stored.iter().sum::<u64>(),
                    "forwarded": out.forwarded.iter().sum::<u64>(),
                    "dropped": out.dropped.iter().sum::<u64>(),
                    "spooled": out.spooled.iter().sum::<u64>(),
                    "errors": refused,
                }),
            )
        }
        Err(e) if e.kind() == Kind::Temporary => {
            if let Some(also) = app.unavailable_log.allow() {
                tracing::warn!(records = n, earlier_requests_not_logged = also, error = %e,
                    "database unavailable; answering 503 (one line per 30 s while this lasts)");
            }
            unavailable(
                json!({"error": "the database is unavailable; nothing was stored, retry later"}),
            )
        }
        Err(e) => {
            tracing::error!(records = n, error = %e, "storing failed");
            json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "storing failed; see the server log"}),
            )
        }
    }
}

fn hec_error(e: &HecError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = json_response(status, e.body());
    if e.status == 503 {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_S));
    }
    r
}

async fn hec(State(app): State<Arc<App>>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let r = hec_inner(&app, &uri, &headers, body).await;
    status(&app, "hec", r.status());
    r
}

/// The request's data channel (header or `?channel=`), or the HEC error.
fn channel_of(uri: &Uri, headers: &HeaderMap) -> Result<Option<uuid::Uuid>, HecError> {
    let header = headers.get(channels::HEADER).map(|v| v.as_bytes());
    channels::of_request(header, uri.query())
        .map_err(|channels::ChannelError::Invalid| HecError::INVALID_CHANNEL)
}

async fn hec_inner(app: &App, uri: &Uri, headers: &HeaderMap, body: Body) -> Response {
    match authorize(app, headers) {
        Verdict::Ok => {}
        Verdict::Missing => return hec_error(&HecError::TOKEN_REQUIRED),
        Verdict::Invalid | Verdict::Forbidden => return hec_error(&HecError::INVALID_TOKEN),
    }
    let channel = match channel_of(uri, headers) {
        Ok(c) => c,
        Err(e) => return hec_error(&e),
    };
    let data = match read_body(app, headers, body).await {
        Read::Ok(d) => d,
        Read::TooLarge => {
            return json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"text": "Content too large", "code": 27}),
            );
        }
        Read::Bad(_) => return hec_error(&HecError::INVALID_FORMAT),
    };
    let records = match parse::hec_body(&data, app.max_line_bytes) {
        Ok(r) => r,
        Err(e) => {
            app.metrics.add("rejected_total", &[("source", "hec")], 1);
            return hec_error(&e);
        }
    };
    drop(data);
    let n = records.len();
    match app.store.store(records).await {
        Ok(out) => {
            count(app, "hec", &out, 0);
            if out.refused.is_empty() {
                let mut ok = json!({"text": "Success", "code": 0});
                if let Some(c) = channel {
                    // Durable already: the ack id is acknowledged as soon as it is handed out.
                    ok["ackId"] = app.channels.next_ack(c).into();
                }
                json_response(StatusCode::OK, ok)
            } else {
                // The others are stored; name the first refused event like Splunk does.
                let first = out.refused[0].0;
                tracing::warn!(refused = out.refused.len(), "database refused HEC events");
                let mut e = HecError::INVALID_FORMAT;
                e.invalid_event = Some(first);
                hec_error(&e)
            }
        }
        Err(e) if e.kind() == Kind::Temporary => {
            if let Some(also) = app.unavailable_log.allow() {
                tracing::warn!(records = n, earlier_requests_not_logged = also, error = %e,
                    "database unavailable; answering 503 (one line per 30 s while this lasts)");
            }
            hec_error(&HecError::SERVER_BUSY)
        }
        Err(e) => {
            tracing::error!(records = n, error = %e, "storing failed");
            hec_error(&HecError::INTERNAL)
        }
    }
}

async fn hec_ack(
    State(app): State<Arc<App>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let r = hec_ack_inner(&app, &uri, &headers, body).await;
    status(&app, "hec_ack", r.status());
    r
}

/// `POST /services/collector/ack` `{"acks":[ids]}` → `{"acks":{"id":bool}}` on the channel.
async fn hec_ack_inner(app: &App, uri: &Uri, headers: &HeaderMap, body: Body) -> Response {
    match authorize(app, headers) {
        Verdict::Ok => {}
        Verdict::Missing => return hec_error(&HecError::TOKEN_REQUIRED),
        Verdict::Invalid | Verdict::Forbidden => return hec_error(&HecError::INVALID_TOKEN),
    }
    let channel = match channel_of(uri, headers) {
        Ok(Some(c)) => c,
        Ok(None) => return hec_error(&HecError::CHANNEL_MISSING),
        Err(e) => return hec_error(&e),
    };
    #[derive(serde::Deserialize)]
    struct Query {
        acks: Vec<u64>,
    }
    let q = match read_body(app, headers, body).await {
        Read::Ok(d) => serde_json::from_slice::<Query>(&d).ok(),
        Read::TooLarge | Read::Bad(_) => None,
    };
    let Some(q) = q else {
        return hec_error(&HecError::INVALID_FORMAT);
    };
    let acks: serde_json::Map<String, serde_json::Value> = app
        .channels
        .acked(channel, &q.acks)
        .into_iter()
        .map(|(id, done)| (id.to_string(), done.into()))
        .collect();
    json_response(StatusCode::OK, json!({ "acks": acks }))
}

/// Splunk's HEC health check, no token needed: 200 code 17 while records can be taken (the
/// database answers, or `server.spool_dir` takes them), else 503 code 18.
async fn hec_health(State(app): State<Arc<App>>) -> Response {
    let r = if app.store.spool.is_some() || database_answers(&app).await.is_ok() {
        json_response(
            StatusCode::OK,
            json!({"text": "HEC is healthy", "code": 17}),
        )
    } else {
        hec_error(&HecError::UNHEALTHY)
    };
    status(&app, "hec_health", r.status());
    r
}

/// Whether the database was brought up and answers `SELECT 1` within 3 s; else why not.
async fn database_answers(app: &App) -> Result<(), &'static str> {
    if !app.store.ready() {
        return Err("database not ready: waiting for it to become reachable and migrated");
    }
    let probe = async {
        let client = crate::db::get(app.store.storer.pool()).await?;
        client.query_one("SELECT 1", &[]).await?;
        Ok::<_, crate::Error>(())
    };
    match tokio::time::timeout(Duration::from_secs(3), probe).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "health check: database unavailable");
            Err("database unavailable")
        }
        Err(_) => Err("database did not answer within 3 s"),
    }
}

/// 200 when the database was brought up (migrated) and `SELECT 1` answers within 3 s.
async fn health(State(app): State<Arc<App>>) -> Response {
    match database_answers(&app).await {
        Ok(()) => {
            app.metrics.set("database_up", &[], 1.0);
            json_response(StatusCode::OK, json!({"ok": true}))
        }
        Err(error) => {
            app.metrics.set("database_up", &[], 0.0);
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"ok": false, "error": error}),
            )
        }
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    // The database's size at scrape time; on failure (or before it is ready) the last known
    // value stays.
    let size = async {
        if !app.store.ready() {
            return Err(crate::Error::temporary("database not ready"));
        }
        let client = crate::db::get(app.store.storer.pool()).await?;
        let row = client
            .query_one("SELECT pg_database_size(current_database())", &[])
            .await?;
        Ok::<i64, crate::Error>(row.get(0))
    };
    if let Ok(Ok(bytes)) = tokio::time::timeout(Duration::from_secs(1), size).await {
        app.metrics.set("database_bytes", &[], bytes as f64);
    }
    if let Some(spool) = &app.store.spool {
        app.metrics.set("spool_bytes", &[], spool.bytes() as f64);
    }
    if let Some(backups) = &app.backups {
        backups.scrape(&app.metrics).await;
    }
    if let Some((sink, fm)) = &app.forward {
        let f = fm.snapshot();
        let l = [("sink", *sink)];
        let m = &app.metrics;
        m.set_counter("forward_sent_total", &l, f.sent);
        m.set_counter("forward_retried_total", &l, f.retried);
        m.set_counter("forward_dead_lettered_total", &l, f.dead_lettered);
        m.set_counter(
            "forward_possible_duplicates_total",
            &l,
            f.possible_duplicates,
        );
        m.set_counter("forward_replayed_total", &l, f.replayed);
        m.set_counter(
            "forward_spool_corrupt_regions_total",
            &l,
            f.spool_corrupt_regions,
        );
        m.set("forward_spool_bytes", &l, f.spool_bytes as f64);
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        app.metrics.render(),
    )
        .into_response()
}
