//! `kasm-db demo`: the whole toolkit end to end on two throwaway clusters (a primary and a
//! standby), on generated Kasm-style logs, and a point-in-time restore of the primary into a
//! third data directory (`pitr.rs`). Each stage reports one readable line on stderr as it
//! finishes; the summary goes to stdout.
//!
//! Always stops its clusters and removes their directories: on success, on failure and on
//! Ctrl-C (the clusters are owned here and dropped whichever way `run` ends). Never touches a
//! server it did not start. Never reads the process environment: `main.rs`'s snapshot arrives
//! through [`run`] and reaches the clusters and stages as [`Demo::env`].
//!
//! Of the global options it honours `--json` (the stages' results as one document on stdout),
//! `-v`/`-q` and `--log-format`, and refuses `--config` and `--db` on its command line (exit 2):
//! it makes its own clusters and configuration (`KASM_DB_CONFIG` and `KASM_DB_URL` in the
//! environment are for the real deployment and are ignored). Each stage runs inside a
//! [`STAGE_SPAN`], where `main.rs` leaves out the operations' INFO lines, and what is run to
//! provoke warnings inside an [`EXPECTED_SPAN`], where their WARNs are left out too (both shown
//! with `-v`); a stage that fails is a FAILED line and the command's error.

mod backup;
mod cap;
mod logs;
mod notify;
mod pitr;
mod read;
mod restore;
mod size;
mod verify;

use crate::cli::GlobalArgs;
use crate::config::Config;
use crate::db::{self, DbTarget, Retry};
use crate::error::{Error, Result};
use crate::output::Outcome;
use crate::pgtemp::Cluster;
use std::collections::BTreeMap;
use std::time::Instant;
use tracing::Instrument;

/// The name of the span each stage runs in: its operations' INFO lines are the stage's own
/// line's business (`main.rs` shows them with `-v`).
pub const STAGE_SPAN: &str = "demo_stage";
/// The name of the span around what a stage runs to provoke warnings (the size cap): those
/// WARNs are its expected result (`main.rs` shows them with `-v`).
pub const EXPECTED_SPAN: &str = "demo_expected";

/// Refuse what the demo cannot honour: a configuration file or a database given on its command
/// line (exit 2). The same settings from the environment are ignored: they name the real
/// deployment, which the demo never touches.
pub fn refuse_global_options(global: &GlobalArgs, env: &BTreeMap<String, String>) -> Result<()> {
    let from_env = |key: &str, v: &str| env.get(key).is_some_and(|e| e == v);
    let mut given = Vec::new();
    if let Some(c) = &global.config {
        if !from_env("KASM_DB_CONFIG", &c.to_string_lossy()) {
            given.push("--config");
        }
    }
    if let Some(db) = &global.db {
        if !from_env("KASM_DB_URL", db) {
            given.push("--db");
        }
    }
    if given.is_empty() {
        return Ok(());
    }
    Err(Error::usage(format!(
        "demo does not take {}: it makes its own throwaway PostgreSQL clusters and \
         configuration and never touches another server",
        given.join(" or ")
    )))
}

/// Shared state of a demo run, handed from stage to stage.
pub struct Demo {
    pub primary: Cluster,
    pub standby: Cluster,
    pub config: Config,
    pub db: DbTarget,
    pub pool: db::Pool,
    pub workdir: tempfile::TempDir,
    /// The process environment as `main.rs` read it (for the clusters and child processes).
    pub env: BTreeMap<String, String>,
}

/// What a stage did, in one line.
pub enum StageResult {
    Done(String),
    Skipped(String),
}

type StageFn = for<'a> fn(&'a mut Demo) -> futures::future::BoxFuture<'a, Result<StageResult>>;

fn stages() -> Vec<(&'static str, StageFn)> {
    vec![
        ("migrate", |d| Box::pin(stage_migrate(d))),
        ("ingest", |d| Box::pin(logs::ingest_stage(d))),
        ("purge", |d| Box::pin(logs::purge_stage(d))),
        ("read", |d| Box::pin(read::stage(d))),
        ("cap", |d| Box::pin(cap::stage(d))),
        ("size", |d| Box::pin(size::stage(d))),
        ("backup", |d| Box::pin(backup::stage(d))),
        ("restore", |d| Box::pin(restore::restore_stage(d))),
        ("pitr", |d| Box::pin(pitr::stage(d))),
        ("verify", |d| Box::pin(verify::stage(d))),
        ("notify", |d| Box::pin(notify::stage(d))),
    ]
}

pub async fn run(env: BTreeMap<String, String>) -> Result<Outcome> {
    let started = Instant::now();
    eprintln!("kasm-db demo: starting a throwaway primary and standby PostgreSQL on loopback...");
    // Cluster start blocks (initdb); keep it off the async workers.
    let snapshot = env.clone();
    let (primary, standby) = tokio::task::spawn_blocking(move || -> Result<(Cluster, Cluster)> {
        Ok((Cluster::start(&snapshot)?, Cluster::start(&snapshot)?))
    })
    .await
    .map_err(|e| Error::failed(format!("demo setup: {e}")))??;
    eprintln!(
        "  primary on 127.0.0.1:{}, standby on 127.0.0.1:{}",
        primary.port, standby.port
    );
    let dbname = tokio::task::block_in_place(|| primary.fresh_db("kasm_logs"))?;
    let db = DbTarget::resolve(Some(&primary.url(&dbname)), &BTreeMap::new())?;
    let pool = db::pool(&db, Retry::default(), 4).await?;
    // The client tools beside the demo's own server binaries.
    let mut config = Config::default();
    config.backup.pg_bindir = Some(primary.bindir.clone());
    // The clusters stream WAL as they are (wal_level replica, a replication line in pg_hba:
    // see `pgtemp`). As root the restored server of the pitr stage runs as `postgres`, and so
    // does its restore_command, which reads the demo's backup target: readable files there.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        config.backup.file_mode =
            crate::config::file_mode::FileMode::parse("0644").map_err(Error::failed)?;
    }
    let mut demo = Demo {
        primary,
        standby,
        config,
        db,
        pool,
        workdir: tempfile::Builder::new()
            .prefix("kasm-db-demo-")
            .tempdir_in(crate::pgtools::temp_dir(&env))?,
        env,
    };
    let all = stages();
    let total = all.len();
    let mut results = Vec::new();
    for (i, (name, stage)) in all.into_iter().enumerate() {
        let t = Instant::now();
        let span = tracing::error_span!(STAGE_SPAN, stage = name);
        let outcome = tokio::select! {
            r = stage(&mut demo).instrument(span) => r,
            _ = tokio::signal::ctrl_c() => Err(Error::failed("interrupted (Ctrl-C); clusters stopped and removed")),
        };
        let secs = t.elapsed().as_secs_f64();
        let line = match outcome {
            Ok(StageResult::Done(what)) => {
                results.push(serde_json::json!({
                    "stage": name, "result": "ok", "seconds": secs, "what": what,
                }));
                format!(
                    "[{}/{total}] {name:<8} ok      {secs:>6.2} s  {what}",
                    i + 1
                )
            }
            Ok(StageResult::Skipped(why)) => {
                results.push(serde_json::json!({
                    "stage": name, "result": "skipped", "seconds": secs, "what": why,
                }));
                format!("[{}/{total}] {name:<8} skipped           {why}", i + 1)
            }
            Err(e) => {
                eprintln!("[{}/{total}] {name:<8} FAILED  {secs:>6.2} s  {e}", i + 1);
                return Err(e.context(format!("demo stage {name} failed")));
            }
        };
        eprintln!("{line}");
    }
    demo.pool.close();
    drop(demo);
    let done = results.iter().filter(|r| r["result"] == "ok").count();
    let secs = started.elapsed().as_secs_f64();
    let mut outcome = Outcome::text(format!(
        "demo passed: {done} stage(s) ok, {} skipped, in {secs:.1} s; clusters stopped and removed",
        results.len() - done,
    ));
    outcome.json = serde_json::json!({
        "ok": true,
        "stages": results,
        "seconds": secs,
        "clusters_removed": true,
    });
    Ok(outcome)
}

async fn stage_migrate(d: &mut Demo) -> Result<StageResult> {
    let first = db::migrate::migrate(&d.pool, &d.config.database.schema).await?;
    let again = db::migrate::migrate(&d.pool, &d.config.database.schema).await?;
    if !again.applied.is_empty() {
        return Err(Error::failed(
            "second migrate applied something: migrations are not idempotent",
        ));
    }
    Ok(StageResult::Done(format!(
        "applied {} on {}; a second run applied nothing",
        first.applied.join(", "),
        d.db.redacted()
    )))
}
