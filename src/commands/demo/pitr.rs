//! The demo's "pitr" stage (point-in-time recovery, issue 25), with the operations the commands
//! run: `wal stream` to the demo's directory target (in this process, [`stream::stream`]),
//! `backup --physical` ([`crate::backup::physical::run`]), rows written, a time T recorded,
//! more rows written, the stream stopped (its last sweep stores what it received), then
//! `restore --physical --to-time T --start --port P` ([`crate::restore::physical::restore`],
//! kasm-db itself as the restore_command, as the command builds it) into a new data directory,
//! and the rows counted on the restored server: exactly those committed up to T. One line.
//!
//! Cleans up what it started whichever way it ends (an error, or Ctrl-C dropping the stage):
//! the stream stops (its pg_receivewal is killed with it when dropped), the restored server is
//! stopped ([`Restored`]'s drop), and its directories are under the demo's workdir, removed with
//! it; the slot lives on the demo's own primary, removed with it. Touches only the demo's own
//! cluster.

use super::{Demo, StageResult};
use crate::archive::storage;
use crate::archive::target::Target;
use crate::backup::physical::{self, PhysicalSpec};
use crate::config::Window;
use crate::db;
use crate::error::{Error, Result};
use crate::restore::physical::{self as restore, RecoveryTarget};
use crate::wal::stream::{self, StreamSpec};
use chrono::{DateTime, SecondsFormat, Utc};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Rows committed before T, and after it, in transactions of [`BATCH`].
const BEFORE: i32 = 100;
const AFTER: i32 = 50;
const BATCH: i32 = 10;
const TABLE: &str = "kasm_db_demo_pitr";

pub async fn stage(d: &mut Demo) -> Result<StageResult> {
    let d: &Demo = d;
    let target = Target::Dir(d.workdir.path().join("backups"));
    let top = d.workdir.path().join("pitr");
    let staging = top.join("staging");
    let data_dir = top.join("restored");
    let mut config = d.config.clone();
    // The segment being written is stored every second (the default is 10 s).
    config.backup.wal_flush = Window::from_secs(1);
    // Made here, with the usual mode: as root the restore's own folders in it must be
    // reachable by `postgres` (the stream makes only its staging folder private).
    std::fs::create_dir_all(&top)?;
    let store = storage::open(&target, &config).await?;
    let client = db::get(&d.pool).await?;
    client
        .batch_execute(&format!(
            "CREATE TABLE {TABLE} (n int PRIMARY KEY, at timestamptz NOT NULL DEFAULT \
             clock_timestamp())"
        ))
        .await?;

    // The stream runs beside the work; the work ends by asking it to stop.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let streaming = stream::stream(
        StreamSpec {
            db: &d.db,
            config: &config,
            target: &target,
            staging: &staging,
            env: &d.env,
            leading: None,
        },
        async {
            let _ = stop_rx.await;
        },
    );
    let work = async {
        wait_streaming(&client, &config.backup.wal_slot).await?;
        let base = physical::run(PhysicalSpec {
            db: &d.db,
            config: &config,
            target: &target,
            storage: &store,
            progress: false,
            env: &d.env,
        })
        .await?;
        insert(&client, 1, BEFORE).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t = Utc::now();
        tokio::time::sleep(Duration::from_millis(100)).await;
        insert(&client, BEFORE + 1, BEFORE + AFTER).await?;
        let switched: String = client
            .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
            .await?
            .get(0);
        // The segment holding every row stored whole (within a flush or so; a busy machine
        // takes longer), so the restore finds the archive past the backup.
        let record = crate::archive::wal::record_name(&switched, false)
            .ok_or_else(|| Error::failed(format!("{switched} is not a WAL segment name")))?;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while crate::archive::catalog::read_wal_record(store.as_ref(), &record)
            .await?
            .is_none()
        {
            if std::time::Instant::now() > deadline {
                return Err(Error::failed(format!(
                    "the WAL stream did not store {switched} within 60 s"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok::<_, Error>((base, t))
    };
    tokio::pin!(streaming);
    tokio::pin!(work);
    let worked = tokio::select! {
        r = &mut streaming => {
            return Err(match r {
                Ok(_) => Error::failed("the WAL stream stopped by itself"),
                Err(e) => e.context("the WAL stream"),
            });
        }
        w = &mut work => w,
    };
    let _ = stop_tx.send(());
    let streamed = streaming.await;
    let (base, t) = worked?;
    let streamed = streamed.map_err(|e| e.context("the WAL stream"))?;

    let port = free_port()?;
    let running = Restored(data_dir.clone());
    let listing = store.list().await?;
    let r = restore::restore(restore::PhysicalSpec {
        storage: store.as_ref(),
        listing: &listing,
        manifest: &base.manifest,
        data_dir: &data_dir,
        fetch_command: crate::commands::restore::fetch_command(None, &target)?,
        to: RecoveryTarget::Time(t),
        standby: false,
        port: Some(port),
        pg_bindir: config.backup.pg_bindir.as_deref(),
        key_file: config.backup.encryption_key_file.as_deref(),
        // The loader's variables only: the demo's restore_command must not pick up the real
        // deployment's KASM_DB_* settings (it is told `--from` the demo's target).
        server_env: crate::pgtools::child_env(&d.env),
        env: &d.env,
    })
    .await?;
    let superuser = base
        .manifest
        .physical
        .as_ref()
        .map(|p| p.superuser.clone())
        .unwrap_or_else(|| "postgres".into());
    let (rows, lowest, highest) = count(&data_dir, port, &superuser, d.db.dbname()).await?;
    drop(running);
    if (rows, lowest, highest) != (BEFORE as i64, 1, BEFORE) {
        return Err(Error::failed(format!(
            "the restore to {} has {rows} row(s) ({lowest}..{highest}) of {TABLE}, not exactly \
             the {BEFORE} committed up to it (1..{BEFORE})",
            stamp(t)
        )));
    }
    Ok(StageResult::Done(format!(
        "WAL streamed ({} segment(s)) + base backup {}; restored --to-time {} in {:.1} s: \
         recovered to {}, {rows} of {} rows (exactly those up to T)",
        streamed.segments + u64::from(streamed.partial_segment.is_some()),
        base.manifest.id,
        stamp(t),
        r.duration_s,
        r.recovered_to
            .map(stamp)
            .unwrap_or_else(|| "the base backup's end".into()),
        BEFORE + AFTER,
    )))
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Wait (up to a minute) until the slot has its consumer, the stream's pg_receivewal.
async fn wait_streaming(client: &tokio_postgres::Client, slot: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let active: Option<bool> = client
            .query_opt(
                "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await?
            .map(|r| r.get(0));
        if active == Some(true) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::failed(format!(
                "the WAL stream did not start streaming on slot {slot} within 60 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Rows `from..=to`, one transaction per [`BATCH`].
async fn insert(client: &tokio_postgres::Client, from: i32, to: i32) -> Result<()> {
    let sql = format!("INSERT INTO {TABLE} (n) SELECT generate_series($1::int, $2::int)");
    let mut start = from;
    while start <= to {
        let end = (start + BATCH - 1).min(to);
        client.execute(&sql, &[&start, &end]).await?;
        start = end + 1;
    }
    Ok(())
}

/// (rows, lowest, highest) of the table on the restored server, over its Unix socket in DIR.
async fn count(
    data_dir: &std::path::Path,
    port: u16,
    user: &str,
    dbname: &str,
) -> Result<(i64, i32, i32)> {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(data_dir)
        .port(port)
        .user(user)
        .dbname(dbname)
        .application_name("kasm-db demo")
        .connect_timeout(Duration::from_secs(10));
    let (client, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| Error::failed(format!("connecting to the restored server: {e}")))?;
    tokio::spawn(conn);
    let row = client
        .query_one(
            &format!("SELECT count(*), coalesce(min(n), 0), coalesce(max(n), 0) FROM {TABLE}"),
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1), row.get(2)))
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The server a restore left running in this data directory: stopped (fast shutdown) on drop,
/// whichever way the stage ends. Does nothing when none runs there (no `postmaster.pid`).
struct Restored(PathBuf);

impl Drop for Restored {
    fn drop(&mut self) {
        let Ok(text) = std::fs::read_to_string(self.0.join("postmaster.pid")) else {
            return;
        };
        let Some(pid) = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok())
        else {
            return;
        };
        if pid <= 0 {
            return;
        }
        // SAFETY: signals to the postmaster of the data directory this stage restored (its own
        // postmaster.pid); waitpid reaps it when it is this process's child (else ECHILD).
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // SAFETY: as above.
            let gone = unsafe {
                libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) == pid
                    || libc::kill(pid, 0) != 0
            };
            if gone {
                return;
            }
            if Instant::now() > deadline {
                // SAFETY: as above.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG);
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guard stops (and reaps) the process named by DIR/postmaster.pid, even when it is
    /// this process's own child (a zombie would otherwise look alive), and does nothing without
    /// one.
    #[test]
    // The guard under test is what waits for (reaps) the child.
    #[allow(clippy::zombie_processes)]
    fn the_guard_stops_what_runs_in_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        drop(Restored(dir.path().to_path_buf()));
        let mut sleeper = std::process::Command::new("sleep");
        sleeper.arg("600");
        // SIGINT as the postmaster takes it: a test run in the background (`cmd &`, as CI
        // may) has SIGINT ignored, and a child inherits that.
        // SAFETY: signal() in the forked child before exec is async-signal-safe.
        unsafe {
            use std::os::unix::process::CommandExt;
            sleeper.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
        let child = sleeper.spawn().unwrap();
        let pid = child.id() as i32;
        std::fs::write(dir.path().join("postmaster.pid"), format!("{pid}\n/x\n")).unwrap();
        let t = Instant::now();
        drop(Restored(dir.path().to_path_buf()));
        assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
        // SAFETY: signal 0 only checks whether the (reaped) pid still exists.
        assert_ne!(unsafe { libc::kill(pid, 0) }, 0, "still running");
    }
}
