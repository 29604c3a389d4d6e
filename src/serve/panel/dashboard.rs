//! `GET /api/v1/dashboard`: what the dashboard (`/`) draws, as one JSON document — the last
//! [`WINDOW_HOURS`] hours of log volume per hour by level and application (the report's
//! query, [`crate::report::query::hourly_volume`]), errors (ERROR and CRITICAL) per host, Kasm's
//! own metrics (records whose `data` carries `metric_name`: records per hour per name, and the
//! mean of a numeric `metric_value` when there is one), the database size judged against its
//! sizing tier (`kasm-db size`'s own [`crate::maintenance::size::measure`]) and the backups'
//! verdict per target (the listing `/metrics` keeps, [`super::BackupStatus`]).
//!
//! Read-only plain SELECTs. Never queried per viewer: the document is kept for [`KEEP`] and
//! shared by every browser that asks meanwhile (one computation at a time), and the size
//! measurement, which counts every row, for [`KEEP_SIZE`].

use super::Panel;
use crate::db::ident;
use crate::error::Result;
use crate::serve::read_api::authorize_read;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// How far back the dashboard counts.
pub const WINDOW_HOURS: u32 = 24;
/// How long one computed document is served.
pub const KEEP: Duration = Duration::from_secs(30);
/// How long one size measurement is used.
pub const KEEP_SIZE: Duration = Duration::from_secs(300);
/// How many hosts the errors chart shows.
pub const TOP_HOSTS: i64 = 20;
/// Longest a computation may take before the request gets 503.
const DEADLINE: Duration = Duration::from_secs(25);

/// The last document and the last size measurement, with when they were made.
#[derive(Default)]
pub struct Cache {
    doc: tokio::sync::Mutex<Option<(Instant, Arc<Value>)>>,
    size: tokio::sync::Mutex<Option<(Instant, Value)>>,
}

/// The handler: 401/403 as the read API, 503 while the database is not ready or does not answer.
pub async fn get(State(panel): State<Arc<Panel>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize_read(&panel.read, &headers) {
        return r;
    }
    if !*panel.read.ready.borrow() {
        return unavailable("the database is not ready yet");
    }
    match tokio::time::timeout(DEADLINE, document(&panel)).await {
        Ok(Ok(doc)) => axum::Json(doc.as_ref().clone()).into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "dashboard: the database did not answer");
            unavailable("the database did not answer; see serve's log")
        }
        Err(_) => unavailable("the dashboard took too long to compute"),
    }
}

fn unavailable(error: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({ "error": error })),
    )
        .into_response()
}

/// The cached document, or a new one when it is older than [`KEEP`].
async fn document(panel: &Panel) -> Result<Arc<Value>> {
    let mut doc = panel.cache.doc.lock().await;
    if let Some((at, d)) = doc.as_ref() {
        if at.elapsed() < KEEP {
            return Ok(d.clone());
        }
    }
    let fresh = Arc::new(compute(panel).await?);
    *doc = Some((Instant::now(), fresh.clone()));
    Ok(fresh)
}

async fn compute(panel: &Panel) -> Result<Value> {
    let schema = panel.read.schema.as_str();
    let client = crate::db::get(&panel.read.pool).await?;
    let (now, current) = crate::report::query::current(&client, schema).await?;
    let since = now - chrono::Duration::hours(WINDOW_HOURS.into());
    let (_, volume) =
        crate::report::query::hourly_volume(&client, schema, since, WINDOW_HOURS).await?;
    let errors = errors_per_host(&client, schema, since).await?;
    let metrics = kasm_metrics(&client, schema, since).await?;
    let size = size(panel, &client).await;
    drop(client);
    let backups = match &panel.backups {
        Some(b) => Some(b.verdicts().await),
        None => None,
    };
    Ok(json!({
        "generated_at": now,
        "since": since,
        "window_hours": WINDOW_HOURS,
        "current": current,
        "volume": volume,
        "errors_per_host": errors,
        "metrics": metrics,
        "size": size,
        "backups": backups,
    }))
}

/// ERROR and CRITICAL records per host since `since`, most first.
async fn errors_per_host(client: &Client, schema: &str, since: DateTime<Utc>) -> Result<Value> {
    let rows = client
        .query(
            &format!(
                "SELECT coalesce(host, ''), count(*) FROM {}.logs
                 WHERE ingest_date >= $1 AND levelname IN ('ERROR', 'CRITICAL')
                 GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $2",
                ident(schema)
            ),
            &[&since, &TOP_HOSTS],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| json!({"host": r.get::<_, String>(0), "count": r.get::<_, i64>(1)}))
        .collect())
}

/// Kasm's metric records since `since`: per `metric_name` and hour, how many and the mean of
/// a numeric `metric_value`.
async fn kasm_metrics(client: &Client, schema: &str, since: DateTime<Utc>) -> Result<Value> {
    let rows = client
        .query(
            &format!(
                "SELECT data->>'metric_name',
                        (floor(extract(epoch FROM ingest_date) / 3600) * 3600)::bigint,
                        count(*),
                        avg(CASE WHEN jsonb_typeof(data->'metric_value') = 'number'
                                 THEN (data->>'metric_value')::float8 END)
                 FROM {}.logs
                 WHERE ingest_date >= $1 AND data ? 'metric_name'
                 GROUP BY 1, 2 ORDER BY 1, 2",
                ident(schema)
            ),
            &[&since],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let name: Option<String> = r.get(0);
            let hour = DateTime::<Utc>::from_timestamp(r.get::<_, i64>(1), 0)?;
            Some(json!({
                "name": name.unwrap_or_default(),
                "hour": hour,
                "count": r.get::<_, i64>(2),
                "mean_value": r.get::<_, Option<f64>>(3),
            }))
        })
        .collect())
}

/// `kasm-db size`'s measurement and judgement (sessions from `sizing.sessions`), kept for
/// [`KEEP_SIZE`]; on failure, `{"error": ...}`.
async fn size(panel: &Panel, client: &Client) -> Value {
    let mut cached = panel.cache.size.lock().await;
    if let Some((at, v)) = cached.as_ref() {
        if at.elapsed() < KEEP_SIZE {
            return v.clone();
        }
    }
    let sessions = panel.config.sizing.sessions;
    let v = match crate::maintenance::size::measure(client, &panel.config, sessions).await {
        Ok(r) => json!({
            "database_bytes": r.database_bytes,
            "logs_bytes": r.logs_bytes,
            "logs_rows": r.logs_rows,
            "sessions": r.sessions,
            "tier": r.tier,
            "status": r.status,
            "advice": r.advice,
            "warnings": r.warnings,
            "projected_database_bytes": r.projected_database_bytes,
            "measured_at": r.measured_at,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "dashboard: size measurement failed");
            json!({"error": "the size could not be measured; see serve's log"})
        }
    };
    *cached = Some((Instant::now(), v.clone()));
    v
}
