//! The demo's "notify" stage: `[notify]` end to end without leaving the machine. Starts an
//! HTTP receiver in this process on a free loopback port, runs a real purge of the demo
//! database inside [`crate::notify::Notifier::around`] (the wrapper the command line and
//! `serve`'s schedule use) with `on = ["start", "success", "failure"]`, and shows what the
//! receiver got. Touches only the demo's database and its own receiver, which stops with the
//! stage.

use super::{Demo, StageResult};
use crate::config::notify::{Event, NotifyConfig, NotifyUrl};
use crate::error::{Error, Result};
use crate::notify::{Finish, Job, Notifier, host_name};
use chrono::Utc;
use std::sync::{Arc, Mutex};

pub async fn stage(d: &mut Demo) -> Result<StageResult> {
    let got: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let keep = got.clone();
    let app = axum::Router::new().fallback(axum::routing::post(
        move |body: axum::body::Bytes| async move {
            let v = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            keep.lock().unwrap_or_else(|p| p.into_inner()).push(v);
            "ok"
        },
    ));
    let receiver = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let url = format!("http://127.0.0.1:{port}/kasm-db");
    let config = NotifyConfig {
        urls: vec![NotifyUrl::parse(&url).map_err(Error::failed)?],
        on: Event::ALL.to_vec(),
        token: None,
        // The receiver is in this process, on loopback: reached directly, whatever proxy the
        // environment names.
        proxy: Default::default(),
    };
    let notifier = Notifier::new(&config, host_name())?;
    let schema = d.config.database.schema.clone();
    let shown = d.db.redacted();
    let purge = crate::logs::purge::purge(
        &d.pool,
        &shown,
        &schema,
        &d.config.retention,
        Utc::now(),
        false,
    );
    let r = notifier
        .around(Job::Purge, Some(shown.clone()), purge, Finish::of)
        .await;
    receiver.abort();
    r?;
    let got = got.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let seen: Vec<&str> = got.iter().filter_map(|v| v["status"].as_str()).collect();
    let Some(last) = got.last().filter(|_| seen == ["start", "success"]) else {
        return Err(Error::failed(format!(
            "the receiver got {seen:?}, not a start and a success"
        )));
    };
    Ok(StageResult::Done(format!(
        "a purge POSTed start and success to {url}; the last body: {last}"
    )))
}
