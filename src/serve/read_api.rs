//! The read API of `serve` (issue 24): `GET /api/v1/logs` (a page, newest first, with `next`),
//! `/api/v1/logs/stream` (Server-Sent Events, one event per new record, `id:` its cursor,
//! `Last-Event-ID` resumes), `/api/v1/logs/volume`, `/api/v1/logs/facets`,
//! `/api/v1/logs/{log_id}/context` and `/api/v1/logs/export` (streamed NDJSON or CSV). Mounted
//! only when `server.read_token` is set.
//!
//! Reading needs the read token (`Authorization: Bearer`) or the panel's session cookie: no
//! credential is 401, the ingest token is 403. Every query goes through `crate::read` with
//! bound parameters. Memory per client is bounded: a page, one tail batch for a stream (a slow
//! SSE client is simply read for at its own pace, from the database, losing nothing while the
//! records are retained), one export batch in a bounded channel. Never logs a token, a cookie
//! or a query's values.

// The checks hand back the response that refuses the request; it goes out at once, so its
// size on the stack does not matter.
#![allow(clippy::result_large_err)]

use super::auth::{self, Verdict};
use super::session;
use crate::config::Secret;
use crate::error::{Error, Kind};
use crate::read::Cursor;
use crate::read::filter::{self, Filter};
use crate::read::query::{self, PageRequest};
use crate::read::render;
use crate::read::sql::Direction;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::json;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What the read handlers share.
pub struct ReadApp {
    /// Its own small pool, so that readers never take the ingest path's connections.
    pub pool: crate::db::Pool,
    pub schema: String,
    pub read_token: Secret,
    pub ingest_token: Secret,
    /// True once `bootstrap` has migrated the schema; until then reads answer 503.
    pub ready: watch::Receiver<bool>,
    /// True when `serve` is stopping: streams end so that shutdown is not held up.
    pub stop: watch::Receiver<bool>,
}

/// Most records a page may ask for.
pub const MAX_LIMIT: i64 = 1000;
/// Records per tail query of a stream.
const STREAM_BATCH: i64 = 500;
/// Pause between tail queries of a stream that is caught up.
const STREAM_POLL: Duration = Duration::from_millis(200);

pub fn routes(app: Arc<ReadApp>) -> Router {
    Router::new()
        .route("/api/v1/logs", get(list))
        .route("/api/v1/logs/stream", get(stream))
        .route("/api/v1/logs/volume", get(volume))
        .route("/api/v1/logs/facets", get(facets))
        .route("/api/v1/logs/export", get(export))
        .route("/api/v1/logs/{log_id}/context", get(context))
        .with_state(app)
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({ "error": message.to_string() }))).into_response()
}

/// Whether the request may read: the read token, or a valid session cookie.
pub fn authorize_read(app: &ReadApp, headers: &HeaderMap) -> Result<(), Response> {
    let given = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if given.is_some() {
        return match auth::check(given, &app.read_token) {
            Verdict::Ok => Ok(()),
            Verdict::Invalid if auth::check(given, &app.ingest_token) == Verdict::Ok => Err(error(
                StatusCode::FORBIDDEN,
                "the ingest token cannot read: use server.read_token",
            )),
            Verdict::Missing => Err(error(
                StatusCode::UNAUTHORIZED,
                "missing token: send Authorization: Bearer <server.read_token>",
            )),
            _ => Err(error(StatusCode::UNAUTHORIZED, "invalid token")),
        };
    }
    if session::valid(headers, &app.read_token, Utc::now()) {
        return Ok(());
    }
    Err(error(
        StatusCode::UNAUTHORIZED,
        "sign in (the panel at /logs) or send Authorization: Bearer <server.read_token>",
    ))
}

fn ready(app: &ReadApp) -> Result<(), Response> {
    if *app.ready.borrow() {
        Ok(())
    } else {
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the database is not reachable yet",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        Err(r)
    }
}

fn failed(e: &Error) -> Response {
    match e.kind() {
        Kind::Usage => error(StatusCode::BAD_REQUEST, e),
        Kind::Temporary => error(StatusCode::SERVICE_UNAVAILABLE, e),
        Kind::Failed if e.is_transient() => error(StatusCode::SERVICE_UNAVAILABLE, e),
        Kind::Failed | Kind::Abort => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// The query string's parameters (repeated names kept in order).
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn of(uri: &Uri) -> Params {
        Params(
            form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }
    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    fn one(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }
    fn cursor(&self, name: &str) -> Result<Option<Cursor>, String> {
        self.one(name)
            .map(|c| Cursor::decode(c).map_err(|e| format!("{name}: {e}")))
            .transpose()
    }
    fn number(&self, name: &str, default: i64, max: i64) -> Result<i64, String> {
        match self.one(name) {
            None => Ok(default),
            Some(t) => match t.trim().parse::<i64>() {
                Ok(n) if (0..=max).contains(&n) => Ok(n),
                _ => Err(format!("{name}={t:?}: a number from 0 to {max}")),
            },
        }
    }

    /// The filter the parameters describe: `q`, `level`, `min_level`, `app`, `host`, `user`,
    /// `where` (KEY=VALUE), `since`, `until`.
    pub fn filter(&self, now: DateTime<Utc>) -> Result<Filter, String> {
        filter::Given {
            levels: self.all("level"),
            min_level: self.one("min_level"),
            app: self.one("app"),
            host: self.one("host"),
            user: self.one("user"),
            // An empty `where=` is the panel's unfilled field, not a filter.
            wheres: self
                .all("where")
                .into_iter()
                .filter(|w| !w.is_empty())
                .collect(),
            grep: self.one("q"),
            since: self.one("since"),
            until: self.one("until"),
        }
        .parse(now)
    }
}

/// The auth and readiness checks, the parameters and the filter of a request.
fn begin(app: &ReadApp, headers: &HeaderMap, uri: &Uri) -> Result<(Params, Filter), Response> {
    authorize_read(app, headers)?;
    ready(app)?;
    let p = Params::of(uri);
    let f = p
        .filter(Utc::now())
        .map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
    Ok((p, f))
}

async fn client(app: &ReadApp) -> Result<deadpool_postgres::Object, Response> {
    crate::db::get(&app.pool).await.map_err(|e| failed(&e))
}

/// `GET /api/v1/logs`: `{"records": [..], "next": CURSOR|null, "tail": CURSOR}`, newest
/// first. `next` pages to older records; `tail` is where a stream opened now starts
/// (`/api/v1/logs/stream?after=TAIL`): together with the page it misses nothing (a record may
/// be in both, the panel keeps one).
async fn list(State(app): State<Arc<ReadApp>>, headers: HeaderMap, uri: Uri) -> Response {
    let (p, f) = match begin(&app, &headers, &uri) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (limit, before, after) = match (
        p.number("limit", 100, MAX_LIMIT),
        p.cursor("before"),
        p.cursor("after"),
    ) {
        (Ok(l), Ok(b), Ok(a)) => (l, b, a),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return error(StatusCode::BAD_REQUEST, e);
        }
    };
    let c = match client(&app).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let result = async {
        let h = query::horizon(&c).await?;
        let req = PageRequest {
            filter: f,
            limit,
            direction: if after.is_some() && before.is_none() {
                Direction::Newer
            } else {
                Direction::Older
            },
            anchor: before.or(after),
            horizon: None,
        };
        let mut records = query::page(&c, &app.schema, &req, Utc::now()).await?;
        if req.direction == Direction::Newer {
            records.reverse();
        }
        Ok::<_, Error>((records, h))
    }
    .await;
    match result {
        Ok((records, h)) => {
            let full = records.len() as i64 >= limit && limit > 0;
            let next = match records.last() {
                Some(r) if full || after.is_some() => Some(r.cursor.clone()),
                _ => None,
            };
            axum::Json(json!({
                "records": records,
                "next": next,
                "tail": Cursor::tail_start(h).encode(),
            }))
            .into_response()
        }
        Err(e) => failed(&e),
    }
}

/// The state of one SSE client.
struct Tail {
    app: Arc<ReadApp>,
    filter: Filter,
    from: Cursor,
    pending: VecDeque<query::LogRecord>,
    stop: watch::Receiver<bool>,
    /// Whether the last attempt failed (logged once per outage).
    failing: bool,
}

/// `GET /api/v1/logs/stream`: every new matching record as an event, `id:` its cursor. Starts
/// after `Last-Event-ID` (a reconnecting browser sends it), else after `after`, else at the
/// records stored from now on.
async fn stream(State(app): State<Arc<ReadApp>>, headers: HeaderMap, uri: Uri) -> Response {
    let (p, f) = match begin(&app, &headers, &uri) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
        .map(|v| Cursor::decode(v).map_err(|e| format!("Last-Event-ID: {e}")))
        .transpose();
    let from = match (resume, p.cursor("after")) {
        (Ok(Some(c)), _) | (Ok(None), Ok(Some(c))) => c,
        (Ok(None), Ok(None)) => {
            let c = match client(&app).await {
                Ok(c) => c,
                Err(r) => return r,
            };
            match query::horizon(&c).await {
                Ok(h) => Cursor::tail_start(h),
                Err(e) => return failed(&e),
            }
        }
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    let state = Tail {
        stop: app.stop.clone(),
        app,
        filter: f,
        from,
        pending: VecDeque::new(),
        failing: false,
    };
    let events = futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(r) = st.pending.pop_front() {
                let data = render::json(&r);
                let event = Event::default().id(r.cursor).data(data);
                return Some((Ok::<_, std::convert::Infallible>(event), st));
            }
            if *st.stop.borrow() {
                return None;
            }
            let step = async {
                let c = crate::db::get(&st.app.pool).await?;
                query::tail(&c, &st.app.schema, &st.filter, &st.from, STREAM_BATCH).await
            };
            let wait = match step.await {
                Ok((records, next)) => {
                    st.failing = false;
                    st.from = next;
                    let caught_up = (records.len() as i64) < STREAM_BATCH;
                    st.pending.extend(records);
                    if !st.pending.is_empty() {
                        continue;
                    }
                    if caught_up {
                        STREAM_POLL
                    } else {
                        Duration::ZERO
                    }
                }
                Err(e) => {
                    if !st.failing {
                        tracing::warn!(error = %e, "log stream: reading failed; retrying");
                        st.failing = true;
                    }
                    Duration::from_secs(1)
                }
            };
            let mut stop = st.stop.clone();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => return None,
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// A bucket width giving at most ~120 buckets over `span_s`.
fn auto_bucket(span_s: i64) -> i64 {
    [60, 300, 900, 3600, 6 * 3600, 86_400]
        .into_iter()
        .find(|b| span_s / b <= 120)
        .unwrap_or(7 * 86_400)
}

/// `GET /api/v1/logs/volume?since=T&bucket=DUR` (+ filters; since defaults to 24h back, the
/// bucket to a width giving about 100 buckets): `{"buckets": [{"start", "counts"}, ..]}`.
async fn volume(State(app): State<Arc<ReadApp>>, headers: HeaderMap, uri: Uri) -> Response {
    let (p, mut f) = match begin(&app, &headers, &uri) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let now = Utc::now();
    let since = *f.since.get_or_insert(now - chrono::Duration::hours(24));
    let span = (f.until.unwrap_or(now) - since).num_seconds();
    let bucket = match p.one("bucket").map(filter::parse_bucket).transpose() {
        Ok(b) => b.unwrap_or_else(|| auto_bucket(span)),
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let c = match client(&app).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match query::volume(&c, &app.schema, &f, bucket, now).await {
        Ok(buckets) => {
            axum::Json(json!({ "buckets": buckets, "bucket_s": bucket })).into_response()
        }
        Err(e) => failed(&e),
    }
}

/// `GET /api/v1/logs/facets` (+ filters; since defaults to 24h back).
async fn facets(State(app): State<Arc<ReadApp>>, headers: HeaderMap, uri: Uri) -> Response {
    let (_, mut f) = match begin(&app, &headers, &uri) {
        Ok(x) => x,
        Err(r) => return r,
    };
    f.since
        .get_or_insert(Utc::now() - chrono::Duration::hours(24));
    let c = match client(&app).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match query::facets(&c, &app.schema, &f).await {
        Ok(facets) => axum::Json(facets).into_response(),
        Err(e) => failed(&e),
    }
}

/// `GET /api/v1/logs/{log_id}/context?n=N` (+ filters): `{"before", "record", "after"}`.
async fn context(
    State(app): State<Arc<ReadApp>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let (p, f) = match begin(&app, &headers, &uri) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Ok(id) = uuid::Uuid::parse_str(&id) else {
        return error(StatusCode::BAD_REQUEST, "not a log_id (a UUID)");
    };
    let n = match p.number("n", 5, 100) {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let c = match client(&app).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match query::around(&c, &app.schema, &f, id, n, Utc::now()).await {
        Ok(Some(ctx)) => axum::Json(ctx).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("no record with log_id {id} is stored (it may have been purged)"),
        ),
        Err(e) => failed(&e),
    }
}

/// `GET /api/v1/logs/export?format=ndjson|csv` (+ filters): every matching record, oldest
/// first, streamed a batch at a time (a month of logs is never held in memory); a client that
/// goes away stops the query.
async fn export(State(app): State<Arc<ReadApp>>, headers: HeaderMap, uri: Uri) -> Response {
    let (p, f) = match begin(&app, &headers, &uri) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let csv = match p.one("format").unwrap_or("ndjson") {
        "ndjson" | "json" => false,
        "csv" => true,
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("format={other:?}: ndjson or csv"),
            );
        }
    };
    let mut c = match client(&app).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<query::LogRecord>, String>>(2);
    let schema = app.schema.clone();
    tokio::spawn(async move {
        if let Err(e) = query::export(&mut c, &schema, &f, &tx).await {
            tracing::warn!(error = %e, "log export ended early");
            let _ = tx.send(Err("export failed".into())).await;
        }
    });
    // The CSV header goes first even when nothing matches.
    let mut header = csv;
    let mut rx = rx;
    let chunks = futures::stream::poll_fn(move |cx| {
        if header {
            header = false;
            return std::task::Poll::Ready(Some(Ok(bytes::Bytes::from(render::csv(&[], true)))));
        }
        rx.poll_recv(cx).map(|item| {
            item.map(|batch| match batch {
                Ok(batch) if csv => Ok(bytes::Bytes::from(render::csv(&batch, false))),
                Ok(batch) => {
                    let mut b = Vec::with_capacity(batch.len() * 512);
                    for r in &batch {
                        b.extend_from_slice(render::json(r).as_bytes());
                        b.push(b'\n');
                    }
                    Ok(bytes::Bytes::from(b))
                }
                // Cut the body: the client sees an incomplete download, never a short one that
                // looks complete.
                Err(e) => Err(std::io::Error::other(e)),
            })
        })
    });
    let body = Body::from_stream(chunks);
    let (ext, mime) = if csv {
        ("csv", "text/csv; charset=utf-8")
    } else {
        ("ndjson", "application/x-ndjson")
    };
    let name = format!("kasm-logs-{}.{ext}", Utc::now().format("%Y%m%dT%H%M%SZ"));
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r
}
