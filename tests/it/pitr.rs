//! Issue 25 on real clusters: `wal stream` (the real pg_receivewal on a slot) and `backup
//! --physical` (the real pg_basebackup) into a directory target while a writer commits
//! numbered rows; the primary killed with SIGKILL and its data directory deleted, the stream
//! killed too; then `restore --physical` into new data directories: to the end of the archive
//! (every row committed more than a few flush intervals before the crash is there, the rows a
//! prefix), to a time in the middle (exactly the rows committed up to it), and refusals naming
//! a corrupt and a missing segment in the middle of the chain.
//!
//! Also: through an S3 server (moto), with a standby that follows the archive and is promoted;
//! `serve` with `backup.wal = true`; PostgreSQL 16 and 17 (the builds `scripts/setup` unpacks).
//! Each test starts its own cluster (they crash it), not the shared one of `common`.

use crate::common::moto;

use crate::common::{Reaped, free_port, json, kasm_db, run};
use kasm_db::pgtemp::Cluster;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How often the stream stores the segment being written in this test.
const FLUSH_S: u64 = 1;

/// psql as the superuser over a Unix socket.
fn psql(bindir: &Path, socket: &Path, port: u16, db: &str, sql: &str) -> Result<String, String> {
    let out = Command::new(bindir.join("psql"))
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
        .arg(socket)
        .args([
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            db,
            "-c",
            sql,
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// A folder the `postgres` user can read (the restore's restore_command runs as postgres).
fn open_dir(parent: &Path, name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let d = parent.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// Stop a server `restore --start` left running (its pid is in DIR/postmaster.pid).
fn stop_server(data_dir: &Path) {
    let Ok(pid) = std::fs::read_to_string(data_dir.join("postmaster.pid")) else {
        return;
    };
    let pid: i32 = pid.lines().next().unwrap().trim().parse().unwrap();
    // SAFETY: a server this test started through `restore --start`.
    unsafe {
        libc::kill(pid, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    // SAFETY: signal 0 only checks existence.
    while unsafe { libc::kill(pid, 0) } == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Restored {
    rows: Vec<i64>,
    report: serde_json::Value,
}

/// What most tests here start from: a throwaway primary with a `kasm` database, its binaries,
/// socket directory and port, and a work folder of the test's own named `name` (`top`) in a
/// temporary directory (kept while the last value lives).
fn kasm_primary(name: &str) -> (Cluster, PathBuf, PathBuf, u16, PathBuf, tempfile::TempDir) {
    let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let primary = Cluster::start(&env).expect("start the primary");
    let work = tempfile::tempdir().unwrap();
    let top = open_dir(work.path(), name);
    let (bindir, socket, port) = (
        primary.bindir.clone(),
        primary.dir().to_path_buf(),
        primary.port,
    );
    psql(&bindir, &socket, port, "postgres", "CREATE DATABASE kasm").unwrap();
    (primary, bindir, socket, port, top, work)
}

/// `wal stream --db URL --to TARGET --staging-dir STAGING` and `extra`.
fn stream_args<'a>(
    url: &'a str,
    target: &'a str,
    staging: &'a Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "wal",
        "stream",
        "--db",
        url,
        "--to",
        target,
        "--staging-dir",
        staging.to_str().unwrap(),
    ];
    args.extend(extra);
    args
}

/// `restore --physical` into `dir` and start it on a free port; the rows of `t`, then stopped.
fn restore(bindir: &Path, target: &Path, dir: &Path, extra: &[&str]) -> Result<Restored, String> {
    restore_from(bindir, target.to_str().unwrap(), &[], dir, extra)
}

/// [`restore`] from any target, with `env` (an S3 server's endpoint and credentials).
fn restore_from(
    bindir: &Path,
    target: &str,
    env: &[(&str, String)],
    dir: &Path,
    extra: &[&str],
) -> Result<Restored, String> {
    let port = free_port();
    let mut args = vec![
        "restore",
        "--physical",
        "--json",
        "--from",
        target,
        "--data-dir",
        dir.to_str().unwrap(),
        "--start",
    ];
    let port_s = port.to_string();
    args.extend(["--port", &port_s]);
    args.extend(extra);
    let mut cmd = kasm_db(&args);
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let r = run(cmd);
    if r.code != 0 {
        return Err(format!("exit {}: {}", r.code, r.stderr));
    }
    let report = json(&r);
    let rows = psql(bindir, dir, port, "kasm", "SELECT n FROM t ORDER BY n");
    stop_server(dir);
    let rows = rows?;
    Ok(Restored {
        rows: rows.lines().map(|l| l.parse().unwrap()).collect(),
        report,
    })
}

#[test]
fn point_in_time_recovery_after_a_crash() {
    let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let mut primary = Cluster::start(&env).expect("start the primary");
    let work = tempfile::tempdir().unwrap();
    let top = open_dir(work.path(), "pitr");
    let target = open_dir(&top, "target");
    let staging = top.join("staging");
    let (bindir, socket, port) = (
        primary.bindir.clone(),
        primary.dir().to_path_buf(),
        primary.port,
    );
    let sql = |s: &str| psql(&bindir, &socket, port, "kasm", s);
    psql(&bindir, &socket, port, "postgres", "CREATE DATABASE kasm").unwrap();
    sql("CREATE TABLE t (n int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")
        .unwrap();
    let url = primary.url("kasm");
    let with_env = |mut c: Command| {
        c.env("KASM_DB_BACKUP_FILE_MODE", "0644")
            .env("KASM_DB_BACKUP_WAL_FLUSH", format!("{FLUSH_S}s"));
        c
    };

    // The stream first: its slot keeps every segment from now on, the base backup's too.
    let start_stream = |log: &str| {
        with_env(kasm_db(&stream_args(
            &url,
            target.to_str().unwrap(),
            &staging,
            &["--json"],
        )))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(top.join(log)).unwrap())
        .spawn()
        .map(Reaped::from)
        .unwrap()
    };
    let mut stream = start_stream("stream.log");
    let slot_deadline = Instant::now() + Duration::from_secs(60);
    while sql("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'kasm_db' AND active")
        .unwrap()
        != "1"
    {
        assert!(
            Instant::now() < slot_deadline,
            "the stream did not start: {:?}",
            stream.try_wait()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A second stream of the same database is refused: one leader.
    let second = run(with_env(kasm_db(&stream_args(
        &url,
        target.to_str().unwrap(),
        &top.join("staging2"),
        &[],
    ))));
    assert_eq!(second.code, 75, "{}", second.stderr);
    assert!(second.stderr.contains("WAL stream"), "{}", second.stderr);

    // The writer: numbered rows, one transaction each; when each commit returned.
    let committed: Arc<Mutex<Vec<(i64, SystemTime)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let pause_after = Arc::new(Mutex::new(None::<i64>));
    let writer = {
        let (committed, stop, pause_after) = (committed.clone(), stop.clone(), pause_after.clone());
        let (bindir, socket) = (bindir.clone(), socket.clone());
        std::thread::spawn(move || {
            let mut n = 1i64;
            while !stop.load(Ordering::SeqCst) {
                let q = format!("INSERT INTO t (n) VALUES ({n})");
                if psql(&bindir, &socket, port, "kasm", &q).is_err() {
                    // The primary is restarting (or gone): not committed, try again.
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                committed.lock().unwrap().push((n, SystemTime::now()));
                if *pause_after.lock().unwrap() == Some(n) {
                    // The point: a pause in the commits, a time to recover to.
                    std::thread::sleep(Duration::from_millis(800));
                }
                n += 1;
                // Paced: a steady trickle of commits, not a flood.
                std::thread::sleep(Duration::from_millis(15));
            }
        })
    };
    let wait_rows = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while committed.lock().unwrap().len() < n {
            assert!(Instant::now() < deadline, "the writer is stuck");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_rows(20);

    // The base backup, while rows are committed.
    let b = run(with_env(kasm_db(&[
        "backup",
        "--physical",
        "--json",
        "--db",
        &url,
        "--to",
        target.to_str().unwrap(),
    ])));
    assert_eq!(b.code, 0, "{}", b.stderr);
    let b = json(&b);
    assert_eq!(b["kind"], "physical");
    assert_eq!(b["timeline"], 1);
    assert_eq!(b.get("warnings"), None, "the stream runs: {b}");
    assert!(b["start_lsn"].as_str().unwrap().contains('/'), "{b}");
    assert!(b["stop_lsn"].as_str().unwrap().contains('/'), "{b}");
    let list = run(kasm_db(&[
        "backups",
        "list",
        "--json",
        "--from",
        target.to_str().unwrap(),
    ]));
    assert_eq!(list.code, 0, "{}", list.stderr);
    let list = json(&list);
    assert_eq!(list[0]["kind"], "physical", "{list}");
    assert_eq!(list[0]["stop_lsn"], b["stop_lsn"]);

    // A role without REPLICATION (what a managed server gives) is refused, pointing to the
    // provider's own point-in-time recovery.
    sql("CREATE ROLE app LOGIN PASSWORD 'app-pw'").unwrap();
    let app_url = format!("postgres://app:app-pw@127.0.0.1:{port}/kasm");
    for args in [
        &[
            "backup",
            "--physical",
            "--db",
            &app_url,
            "--to",
            target.to_str().unwrap(),
        ][..],
        &[
            "wal",
            "stream",
            "--db",
            &app_url,
            "--to",
            target.to_str().unwrap(),
        ][..],
    ] {
        let r = run(kasm_db(args));
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("REPLICATION") && r.stderr.contains("point-in-time recovery"),
            "{}",
            r.stderr
        );
        assert!(!r.stderr.contains("app-pw"), "{}", r.stderr);
    }

    // The primary restarts under the stream: pg_receivewal reconnects, the leader's lock
    // session is taken again, nothing is lost.
    let have = committed.lock().unwrap().len();
    wait_rows(have + 10);
    primary.stop().unwrap();
    primary.restart().unwrap();
    let have = committed.lock().unwrap().len();
    wait_rows(have + 10);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = std::fs::read_to_string(top.join("stream.log")).unwrap();
        if log.contains("lock session is back")
            && log.matches("starting log streaming").count() >= 2
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stream did not come back: {log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The stream itself stops (SIGTERM: exit 0 with what it stored) and starts again: it
    // resumes from the slot, no gap.
    // SAFETY: the stream is our child.
    unsafe {
        libc::kill(stream.id() as i32, libc::SIGTERM);
    }
    let out = stream.into_inner().wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let stopped: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stopped["slot"], "kasm_db");
    assert!(stopped["segments"].as_u64().unwrap() >= 1, "{stopped}");
    // Meanwhile `size` says the slot keeps WAL with nothing streaming (and how to drop it).
    let size = run(kasm_db(&["size", "--json", "--no-record", "--db", &url]));
    assert_eq!(size.code, 0, "{}", size.stderr);
    let size = json(&size);
    assert_eq!(size["wal_slot"]["active"], false, "{size}");
    assert!(
        size["advice"][0]
            .as_str()
            .unwrap()
            .contains("pg_drop_replication_slot('kasm_db')"),
        "{size}"
    );
    let mut stream = start_stream("stream2.log");

    // More writes over several completed segments; a pause in the middle to recover up to.
    for _ in 0..3 {
        let have = committed.lock().unwrap().len();
        wait_rows(have + 25);
        sql("SELECT pg_switch_wal()").unwrap();
    }
    let mid = committed.lock().unwrap().len() as i64 + 5;
    *pause_after.lock().unwrap() = Some(mid);
    wait_rows(mid as usize + 1);
    let mid_at = committed.lock().unwrap()[mid as usize - 1].1 + Duration::from_millis(300);
    for _ in 0..2 {
        let have = committed.lock().unwrap().len();
        wait_rows(have + 25);
        sql("SELECT pg_switch_wal()").unwrap();
    }
    // Writes go on in the segment being written for a while (stored as partial copies).
    let have = committed.lock().unwrap().len();
    wait_rows(have + 40 + (FLUSH_S as usize * 3 * 1000 / 40));

    // The crash: the primary, its data directory and the stream, all at once.
    let crash_at = SystemTime::now();
    primary.crash();
    // SAFETY: the stream is our child.
    unsafe {
        libc::kill(stream.id() as i32, libc::SIGKILL);
    }
    let _ = stream.wait();
    std::fs::remove_dir_all(primary.data_dir()).unwrap();
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let committed = committed.lock().unwrap().clone();

    // Restore to the end of the archive: every row committed FLUSH_S (plus one sweep's
    // time) before the crash, as a prefix.
    let restored = open_dir(&top, "restored");
    let latest = restore(&bindir, &target, &restored.join("latest"), &["--to-latest"])
        .expect("restore to latest");
    let must: Vec<i64> = committed
        .iter()
        .filter(|(_, at)| *at + Duration::from_secs(3 * FLUSH_S) <= crash_at)
        .map(|(n, _)| *n)
        .collect();
    assert!(must.len() > mid as usize, "the writer wrote too little");
    let got = &latest.rows;
    assert_eq!(
        got,
        &(1..=got.len() as i64).collect::<Vec<_>>(),
        "the rows are a prefix"
    );
    assert!(
        got.len() >= must.len(),
        "lost rows committed well before the crash: restored {}, committed {} by then",
        got.len(),
        must.len()
    );
    assert!(got.len() <= committed.len());
    assert!(
        latest.report["recovered_to"].is_string(),
        "{}",
        latest.report
    );
    assert_eq!(latest.report["backup"], b["id"]);
    // Promoted, the cluster carries none of the recovery's settings (a later recovery.signal
    // would otherwise recover from this archive again, up to this restore's target).
    let auto_conf =
        std::fs::read_to_string(restored.join("latest").join("postgresql.auto.conf")).unwrap();
    assert!(!auto_conf.contains("restore_command"), "{auto_conf}");
    assert!(
        std::fs::read_to_string(restored.join("latest").join("kasm-db-recovery.log"))
            .unwrap()
            .contains("restored log file"),
        "the recovery's log is kept"
    );
    // `backups list` shows the window: up to when the newest WAL was stored, which is after
    // the last commit recovered.
    let list = json(&run(kasm_db(&[
        "backups",
        "list",
        "--json",
        "--from",
        target.to_str().unwrap(),
    ])));
    let when = |v: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("{list}")))
            .unwrap()
    };
    assert!(when(&list[0]["recoverable_until"]) > when(&list[0]["recoverable_from"]));
    assert!(when(&list[0]["recoverable_until"]) >= when(&latest.report["recovered_to"]));

    // Restore to a time in the pause: exactly the rows committed up to it.
    let t = chrono::DateTime::<chrono::Utc>::from(mid_at).to_rfc3339();
    let at_mid = restore(&bindir, &target, &restored.join("mid"), &["--to-time", &t])
        .expect("restore to a time");
    assert_eq!(at_mid.rows, (1..=mid).collect::<Vec<_>>());
    let recovered_to = at_mid.report["recovered_to"].as_str().unwrap();
    assert!(recovered_to <= t.as_str(), "{recovered_to} after {t}");

    // A time after the end of the archive: refused before anything is written (every major:
    // 12 would otherwise promote at the archive's end, a shorter recovery than asked for).
    let later = chrono::DateTime::<chrono::Utc>::from(crash_at + Duration::from_secs(3600));
    let e = restore(
        &bindir,
        &target,
        &restored.join("later"),
        &["--to-time", &later.to_rfc3339()],
    )
    .err()
    .expect("a target past the archive is refused");
    assert!(e.starts_with("exit 2:"), "{e}");
    assert!(
        e.contains("the recovery target") && e.contains("after the end of the archive"),
        "{e}"
    );
    assert!(!restored.join("later").exists(), "nothing written");

    // A corrupt segment in the middle of the chain: refused, named, nothing promoted.
    let stop_segment = {
        let m: serde_json::Value = serde_json::from_slice(
            &std::fs::read(target.join(b["id"].as_str().unwrap()).join("manifest.json")).unwrap(),
        )
        .unwrap();
        m["physical"]["stop_segment"].as_str().unwrap().to_string()
    };
    let wal_dir = target.join("wal/00000001");
    let mut full: Vec<String> = std::fs::read_dir(&wal_dir)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().to_string_lossy().to_string();
            n.strip_suffix(".json")
                .filter(|s| s.len() == 24)
                .map(str::to_string)
        })
        .filter(|s| *s > stop_segment)
        .collect();
    full.sort();
    assert!(
        full.len() >= 3,
        "completed segments after the backup: {full:?}"
    );
    let victim = full[1].clone();
    let id = b["id"].as_str().unwrap();
    let verify = |code: i32| {
        let r = run(kasm_db(&[
            "backups",
            "verify",
            id,
            "--json",
            "--from",
            target.to_str().unwrap(),
        ]));
        assert_eq!(r.code, code, "{}\n{}", r.stdout, r.stderr);
        r.stdout
    };
    // The base backup and the WAL chain after it are whole.
    verify(0);
    let object = wal_dir.join(format!("{victim}.zst"));
    let original = std::fs::read(&object).unwrap();
    let mut bad = original.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x5a;
    std::fs::write(&object, &bad).unwrap();
    let e = restore(&bindir, &target, &restored.join("corrupt"), &[])
        .err()
        .expect("a corrupt segment is refused");
    assert!(e.contains(&victim) && e.contains("corrupt"), "{e}");
    std::fs::write(&object, &original).unwrap();

    // A missing one: refused, named.
    std::fs::remove_file(&object).unwrap();
    std::fs::remove_file(wal_dir.join(format!("{victim}.json"))).unwrap();
    let e = restore(&bindir, &target, &restored.join("missing"), &[])
        .err()
        .expect("a missing segment is refused");
    assert!(e.contains(&victim) && e.contains("missing"), "{e}");
    // `backups verify` finds the hole too.
    let out = verify(1);
    assert!(out.contains(&victim) && out.contains("hole"), "{out}");
    // `backups list` recovers only up to the hole now, and a time past it is refused before
    // anything is written, naming the missing segment.
    let holed = json(&run(kasm_db(&[
        "backups",
        "list",
        "--json",
        "--from",
        target.to_str().unwrap(),
    ])));
    let (until_whole, until_holed) = (
        when(&list[0]["recoverable_until"]),
        when(&holed[0]["recoverable_until"]),
    );
    assert!(
        until_holed + chrono::Duration::seconds(2) < until_whole,
        "{until_holed} vs {until_whole}: {holed}"
    );
    assert!(
        until_holed >= when(&holed[0]["recoverable_from"]),
        "{holed}"
    );
    let e = restore(
        &bindir,
        &target,
        &restored.join("past-hole"),
        &["--to-time", &until_whole.to_rfc3339()],
    )
    .err()
    .expect("a time past the hole is refused");
    assert!(
        e.starts_with("exit 2:") && e.contains(&victim) && e.contains("missing"),
        "{e}"
    );
    assert!(!restored.join("past-hole").exists(), "nothing written");
    // `backups check` (the timer's alarm) fails on the hole, naming it.
    let r = run(kasm_db(&[
        "backups",
        "check",
        "--json",
        "--from",
        target.to_str().unwrap(),
    ]));
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let reasons = json(&r)["reasons"].to_string();
    assert!(
        reasons.contains(&victim) && reasons.contains("point-in-time recovery stops there"),
        "{reasons}"
    );

    // A data directory that is not empty is never written over.
    let e = restore(&bindir, &target, &restored.join("latest"), &[])
        .err()
        .expect("a non-empty data directory is refused");
    assert!(e.contains("not empty"), "{e}");

    // A corrupt base backup: refused by its checksum after being read once (it is unpacked
    // while hashed, into a hidden folder of DIR), and DIR is left as it was: an empty one
    // empty, an absent one absent.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(target.join(id).join("manifest.json")).unwrap())
            .unwrap();
    let base = target.join(manifest["object"].as_str().unwrap());
    let base_original = std::fs::read(&base).unwrap();
    let mut bad = base_original.clone();
    let at = bad.len() * 3 / 4;
    bad[at] ^= 0x5a;
    std::fs::write(&base, &bad).unwrap();
    let empty = restored.join("empty-before");
    std::fs::create_dir_all(&empty).unwrap();
    let e = restore(&bindir, &target, &empty, &[])
        .err()
        .expect("a corrupt base backup is refused");
    assert!(e.contains("corrupt"), "{e}");
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "left in {empty:?}"
    );
    let absent = restored.join("absent-before");
    let e = restore(&bindir, &target, &absent, &[])
        .err()
        .expect("a corrupt base backup is refused");
    assert!(e.contains("corrupt"), "{e}");
    assert!(!absent.exists(), "{absent:?} was created");
    std::fs::write(&base, &base_original).unwrap();

    // What a killed restore left unpacked (a hidden folder no restore holds) is removed by the
    // next restore, which then fails only on the hole left above.
    let left = restored.join("left-behind");
    std::fs::create_dir_all(left.join(".kasm-db-unpack-x1y2z3/base")).unwrap();
    let e = restore(&bindir, &target, &left, &[])
        .err()
        .expect("the hole is still there");
    assert!(e.contains(&victim), "{e}");
    assert!(!left.join(".kasm-db-unpack-x1y2z3").exists());
}

/// The same path through an S3 server (moto): the stream and the base backup stored in a
/// bucket, the restore's restore_command reading it back as the `postgres` user with the
/// S3 settings and credentials handed on to the server's environment.
#[test]
fn point_in_time_recovery_through_s3() {
    let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let mut primary = Cluster::start(&env).expect("start the primary");
    let work = tempfile::tempdir().unwrap();
    let top = open_dir(work.path(), "pitr-s3");
    let (bindir, socket, port) = (
        primary.bindir.clone(),
        primary.dir().to_path_buf(),
        primary.port,
    );
    let sql = |s: &str| psql(&bindir, &socket, port, "kasm", s);
    psql(&bindir, &socket, port, "postgres", "CREATE DATABASE kasm").unwrap();
    sql("CREATE TABLE t (n int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")
        .unwrap();
    let url = primary.url("kasm");
    let bucket = moto::bucket();
    let target = format!("s3://{bucket}/pitr");
    let s3_env = moto::env();
    let kasm = |args: &[&str]| {
        let mut c = kasm_db(args);
        c.envs(s3_env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("KASM_DB_BACKUP_WAL_FLUSH", format!("{FLUSH_S}s"));
        c
    };
    let stream = kasm(&stream_args(
        &url,
        &target,
        &top.join("staging"),
        &["--json"],
    ))
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .map(Reaped::from)
    .unwrap();
    wait_streaming(&sql);
    let insert = |from: i64, to: i64| {
        for n in from..=to {
            sql(&format!("INSERT INTO t (n) VALUES ({n})")).unwrap();
        }
    };
    insert(1, 10);
    let b = run(kasm(&[
        "backup",
        "--physical",
        "--json",
        "--db",
        &url,
        "--to",
        &target,
    ]));
    assert_eq!(b.code, 0, "{}", b.stderr);
    let b = json(&b);
    assert_eq!(b["kind"], "physical");
    insert(11, 30);
    sql("SELECT pg_switch_wal()").unwrap();
    insert(31, 50);
    sql("SELECT pg_switch_wal()").unwrap();
    insert(51, 60);

    // A standby restored from the archive keeps replaying WAL as the stream stores it; a
    // failover is then a promotion.
    let restored = open_dir(&top, "restored");
    let standby_dir = restored.join("standby");
    let standby_port = free_port().to_string();
    let mut c = kasm_db(&[
        "restore",
        "--physical",
        "--json",
        "--from",
        &target,
        "--data-dir",
        standby_dir.to_str().unwrap(),
        "--standby",
        "--port",
        &standby_port,
    ]);
    c.envs(s3_env.iter().map(|(k, v)| (*k, v.as_str())));
    let r = run(c);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&r)["standby"], true);
    let standby_port: u16 = standby_port.parse().unwrap();
    let on_standby = |q: &str| psql(&bindir, &standby_dir, standby_port, "kasm", q);
    assert_eq!(on_standby("SELECT pg_is_in_recovery()").unwrap(), "t");
    insert(61, 70);
    let deadline = Instant::now() + Duration::from_secs(90);
    while on_standby("SELECT max(n) FROM t").unwrap_or_default() != "70" {
        assert!(
            Instant::now() < deadline,
            "the standby does not follow the archive"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    on_standby("SELECT pg_promote()").unwrap();
    on_standby("INSERT INTO t (n) VALUES (1000)").unwrap();
    stop_server(&standby_dir);

    // Stopped with SIGTERM, the stream stores everything it received before it exits.
    // Time to receive the last commits: pg_receivewal reports its position only every 10 s.
    std::thread::sleep(Duration::from_millis(500));
    stop_stream(stream);
    primary.crash();
    std::fs::remove_dir_all(primary.data_dir()).unwrap();
    let keys = moto::keys(&bucket);
    assert!(
        keys.iter()
            .any(|k| k.starts_with("pitr/wal/00000001/") && k.ends_with(".json")),
        "{keys:?}"
    );
    // No partial copy is left behind: at most the newest segment's one, the one its record
    // names, and none of a segment stored whole.
    let partials: Vec<&String> = keys.iter().filter(|k| k.contains(".partial-")).collect();
    assert!(partials.len() <= 1, "{partials:?}");
    for p in partials {
        let seg = p.rsplit('/').next().unwrap().split('.').next().unwrap();
        assert!(
            !keys.contains(&format!("pitr/wal/00000001/{seg}.json")),
            "{keys:?}"
        );
        let record: serde_json::Value = serde_json::from_slice(&moto::get(
            &bucket,
            &format!("pitr/wal/00000001/{seg}.partial.json"),
        ))
        .unwrap();
        assert_eq!(format!("pitr/{}", record["object"].as_str().unwrap()), *p);
    }

    let r = restore_from(&bindir, &target, &s3_env, &restored.join("latest"), &[])
        .expect("restore from S3");
    assert_eq!(r.rows, (1..=70).collect::<Vec<_>>());
    assert_eq!(r.report["backup"], b["id"]);
    assert_eq!(r.report["warnings"], serde_json::json!([]));
}

/// `serve` with `backup.wal = true` streams like `wal stream` (its leader: a `wal stream` of the
/// same database meanwhile exits 75), and stops cleanly on SIGTERM.
#[test]
fn serve_streams_wal_when_backup_wal_is_set() {
    let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let primary = Cluster::start(&env).expect("start the primary");
    let work = tempfile::tempdir().unwrap();
    let target = open_dir(work.path(), "target");
    let (bindir, socket, port) = (
        primary.bindir.clone(),
        primary.dir().to_path_buf(),
        primary.port,
    );
    let sql = |s: &str| psql(&bindir, &socket, port, "postgres", s);
    let url = primary.url("postgres");
    // A base backup with nothing streaming says it restores only to its own end.
    let b = run(kasm_db(&[
        "backup",
        "--physical",
        "--json",
        "--db",
        &url,
        "--to",
        target.to_str().unwrap(),
    ]));
    assert_eq!(b.code, 0, "{}", b.stderr);
    let b = json(&b);
    assert!(
        b["warnings"][0].as_str().unwrap().contains("no WAL stream"),
        "{b}"
    );
    let mut serve = kasm_db(&["serve", "--db", &url])
        .env("KASM_DB_SERVER_LISTEN", "127.0.0.1:0")
        .env("KASM_DB_SERVER_TOKEN", "t0ken-for-the-test")
        .env("KASM_DB_BACKUP_TO", target.to_str().unwrap())
        .env("KASM_DB_BACKUP_WAL", "true")
        .env("KASM_DB_BACKUP_WAL_FLUSH", "1s")
        .env("TMPDIR", work.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Reaped::from)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sql("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'kasm_db' AND active")
        .unwrap()
        != "1"
    {
        assert!(Instant::now() < deadline, "serve does not stream");
        std::thread::sleep(Duration::from_millis(100));
    }
    sql("CREATE TABLE w AS SELECT generate_series(1, 1000) AS n").unwrap();
    let switched = sql("SELECT pg_walfile_name(pg_switch_wal())").unwrap();
    let record = target.join(format!("wal/00000001/{switched}.json"));
    while !record.exists() {
        assert!(Instant::now() < deadline, "{switched} was not stored");
        std::thread::sleep(Duration::from_millis(100));
    }
    let second = run(kasm_db(&stream_args(
        &url,
        target.to_str().unwrap(),
        &work.path().join("other"),
        &[],
    )));
    assert_eq!(second.code, 75, "{}", second.stderr);

    // The keep policy applies to each kind on its own and removes the WAL no kept physical
    // backup needs.
    let first_id = b["id"].as_str().unwrap().to_string();
    let logical = run(kasm_db(&[
        "backup",
        "--json",
        "--db",
        &url,
        "--to",
        target.to_str().unwrap(),
    ]));
    assert_eq!(logical.code, 0, "{}", logical.stderr);
    let logical_id = json(&logical)["id"].as_str().unwrap().to_string();
    sql("SELECT pg_switch_wal()").unwrap();
    let newer = run(kasm_db(&[
        "backup",
        "--physical",
        "--json",
        "--db",
        &url,
        "--to",
        target.to_str().unwrap(),
    ]));
    assert_eq!(newer.code, 0, "{}", newer.stderr);
    let newer = json(&newer);
    let newer_id = newer["id"].as_str().unwrap().to_string();
    let start = {
        let m: serde_json::Value = serde_json::from_slice(
            &std::fs::read(target.join(&newer_id).join("manifest.json")).unwrap(),
        )
        .unwrap();
        let lsn = m["physical"]["start_lsn"].as_str().unwrap().to_string();
        sql(&format!("SELECT pg_walfile_name('{lsn}')")).unwrap()
    };
    // The newer backup's first segment stored whole before the prune.
    sql("SELECT pg_switch_wal()").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !target.join(format!("wal/00000001/{start}.json")).exists() {
        assert!(Instant::now() < deadline, "{start} was not stored");
        std::thread::sleep(Duration::from_millis(100));
    }
    let wal_records = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(target.join("wal/00000001"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".json") && !n.contains("partial"))
            .collect();
        v.sort();
        v
    };
    let before = wal_records();
    let pruned = run(kasm_db(&[
        "backups",
        "prune",
        "--json",
        "--keep-last",
        "1",
        "--from",
        target.to_str().unwrap(),
    ]));
    assert_eq!(pruned.code, 0, "{}", pruned.stderr);
    let pruned = json(&pruned);
    assert_eq!(pruned["deleted"], serde_json::json!([first_id]), "{pruned}");
    let mut kept: Vec<String> = pruned["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    kept.sort();
    let mut want = vec![logical_id, newer_id.clone()];
    want.sort();
    assert_eq!(kept, want);
    let gone = pruned["wal_segments_deleted"].as_u64().unwrap() as usize;
    assert!(gone >= 1, "{pruned}");
    let after = wal_records();
    // What was stored before the prune: gone when older than the kept backup's start, kept
    // otherwise (the stream may have stored more meanwhile).
    for n in &before {
        assert_eq!(
            after.contains(n),
            n.as_str() >= format!("{start}.json").as_str(),
            "{n} (the kept backup starts in {start})"
        );
    }
    assert_eq!(
        before.iter().filter(|n| !after.contains(n)).count(),
        gone,
        "{pruned}"
    );
    assert!(
        after.iter().all(|n| n.as_str() >= start.as_str()),
        "{after:?} before {start}"
    );
    assert!(after.contains(&format!("{start}.json")), "{after:?}");
    // A copy of a base backup is a physical backup there too, with its own recipe.
    let copies = open_dir(work.path(), "copies");
    let c = run(kasm_db(&[
        "backups",
        "copy",
        &newer_id,
        "--from",
        target.to_str().unwrap(),
        "--to",
        copies.to_str().unwrap(),
    ]));
    assert_eq!(c.code, 0, "{}", c.stderr);
    let copied: serde_json::Value = serde_json::from_slice(
        &std::fs::read(copies.join(&newer_id).join("manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(copied["kind"], "physical");
    assert!(
        copied["restore"]
            .as_str()
            .unwrap()
            .contains("restore --physical"),
        "{copied}"
    );
    // The kept base backup and the WAL after it are whole.
    let v = run(kasm_db(&[
        "backups",
        "verify",
        &newer_id,
        "--from",
        target.to_str().unwrap(),
    ]));
    assert_eq!(v.code, 0, "{}", v.stderr);

    // SAFETY: serve is our child.
    unsafe {
        libc::kill(serve.id() as i32, libc::SIGTERM);
    }
    assert!(serve.wait().unwrap().success());
}

/// Where `scripts/setup` unpacks the other majors (the rule of `tests/it/majors.rs`).
fn major_bindir(major: u32) -> PathBuf {
    let cache = match std::env::var_os("PG_MAJORS_CACHE").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        // SAFETY: geteuid has no preconditions.
        None if unsafe { libc::geteuid() } == 0 => PathBuf::from("/var/cache/kasm-db/pg"),
        None => std::env::var_os("XDG_CACHE_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"))
            .join("kasm-db/pg"),
    };
    let d = cache.join(major.to_string()).join("bin");
    for tool in ["postgres", "pg_basebackup", "pg_receivewal"] {
        assert!(
            d.join(tool).is_file(),
            "PostgreSQL {major}'s {tool} is not in {}: run scripts/setup",
            d.display()
        );
    }
    d
}

/// Stream, base backup, writes across segments, the stream stopped, the primary crashed and
/// deleted, a restore to the end of the archive: every row, on the PostgreSQL of `bindir`
/// (named to kasm-db by backup.pg_bindir and --pg-bindir).
fn round_trip_on(bindir: &Path) {
    let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let mut primary = Cluster::start_from(bindir, &[], &env).expect("start the primary");
    let work = tempfile::tempdir().unwrap();
    let top = open_dir(work.path(), "pitr-major");
    let target = open_dir(&top, "target");
    let (socket, port) = (primary.dir().to_path_buf(), primary.port);
    let sql = |s: &str| psql(bindir, &socket, port, "kasm", s);
    psql(bindir, &socket, port, "postgres", "CREATE DATABASE kasm").unwrap();
    sql("CREATE TABLE t (n int PRIMARY KEY)").unwrap();
    let url = primary.url("kasm");
    let kasm = |args: &[&str]| {
        let mut c = kasm_db(args);
        c.env("KASM_DB_BACKUP_PG_BINDIR", bindir)
            .env("KASM_DB_BACKUP_FILE_MODE", "0644")
            .env("KASM_DB_BACKUP_WAL_FLUSH", "1s");
        c
    };
    let stream = kasm(&stream_args(
        &url,
        target.to_str().unwrap(),
        &top.join("staging"),
        &[],
    ))
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .map(Reaped::from)
    .unwrap();
    wait_streaming(&sql);
    sql("INSERT INTO t SELECT generate_series(1, 10)").unwrap();
    let b = run(kasm(&[
        "backup",
        "--physical",
        "--json",
        "--db",
        &url,
        "--to",
        target.to_str().unwrap(),
    ]));
    assert_eq!(b.code, 0, "{}", b.stderr);
    let server_version = json(&b);
    for n in 11..=40 {
        sql(&format!("INSERT INTO t VALUES ({n})")).unwrap();
        if n % 10 == 0 {
            sql("SELECT pg_switch_wal()").unwrap();
        }
    }
    // Time to receive the last commits: pg_receivewal reports its position only every 10 s.
    std::thread::sleep(Duration::from_millis(500));
    stop_stream(stream);
    primary.crash();
    std::fs::remove_dir_all(primary.data_dir()).unwrap();
    let restored = open_dir(&top, "restored");
    let r = restore(
        bindir,
        &target,
        &restored.join("latest"),
        &["--pg-bindir", bindir.to_str().unwrap()],
    )
    .expect("restore");
    assert_eq!(r.rows, (1..=40).collect::<Vec<_>>(), "{server_version}");
}

#[test]
fn point_in_time_recovery_on_postgresql_16() {
    round_trip_on(&major_bindir(16));
}

#[test]
fn point_in_time_recovery_on_postgresql_17() {
    round_trip_on(&major_bindir(17));
}

/// psql over TCP with a password (none: `PGPASSWORD` unset), as a client of the restored
/// cluster would connect.
fn psql_tcp(bindir: &Path, port: u16, password: Option<&str>, sql: &str) -> Result<String, String> {
    let mut cmd = Command::new(bindir.join("psql"));
    cmd.args(["-X", "-q", "-A", "-t", "-w", "-h", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(["-U", "postgres", "-d", "kasm", "-c", sql])
        .env_remove("PGPASSWORD")
        .stdin(Stdio::null());
    if let Some(pw) = password {
        cmd.env("PGPASSWORD", pw);
    }
    let out = cmd.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// `restore --start --port P` recovers on P itself: clients get read-only answers there while
/// it replays, under the cluster's own pg_hba (a password over TCP); the trust kasm-db's watch
/// needs never outlives the recovery, and the cluster's pg_hba.conf is left as it was. Rules
/// that name other files recover on a private port instead; a port in use is refused before
/// anything is written; without `--start` the cluster is left promoted and cleanly shut down.
#[test]
fn a_restore_on_a_port_answers_while_it_replays_under_the_clusters_own_rules() {
    let (primary, bindir, socket, port, top, _work) = kasm_primary("early");
    let target = open_dir(&top, "target");
    let sql = |s: &str| psql(&bindir, &socket, port, "kasm", s);
    sql("CREATE TABLE t (n int PRIMARY KEY)").unwrap();
    let url = primary.url("kasm");
    let password = primary.password.expose().to_string();
    let kasm = |args: &[&str]| {
        let mut c = kasm_db(args);
        c.env("KASM_DB_BACKUP_FILE_MODE", "0644")
            .env("KASM_DB_BACKUP_WAL_FLUSH", "1s");
        c
    };
    let stream = kasm(&stream_args(
        &url,
        target.to_str().unwrap(),
        &top.join("staging"),
        &[],
    ))
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .map(Reaped::from)
    .unwrap();
    wait_streaming(&sql);
    // The cluster's own rules, as the base backup carries them: passwords everywhere (the
    // primary is not reloaded, so this test's own socket connections stay trusted).
    let rules = "local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n\
                 host replication all 127.0.0.1/32 scram-sha-256\n";
    std::fs::write(primary.data_dir().join("pg_hba.conf"), rules).unwrap();
    let backup = || {
        let b = run(kasm(&[
            "backup",
            "--physical",
            "--json",
            "--db",
            &url,
            "--to",
            target.to_str().unwrap(),
        ]));
        assert_eq!(b.code, 0, "{}", b.stderr);
        json(&b)["id"].as_str().unwrap().to_string()
    };
    let first = backup();
    // A second backup whose rules name a file (`@admins`, read beside the rules): they cannot
    // be carried over, and that one recovers on a private port.
    let named = format!("{rules}host all @admins 127.0.0.2/32 scram-sha-256\n");
    std::fs::write(primary.data_dir().join("admins"), "postgres\n").unwrap();
    std::fs::write(primary.data_dir().join("pg_hba.conf"), &named).unwrap();
    let second = backup();
    // WAL to replay, long enough for a client to see it replaying: a segment per row, then
    // a few segments of rows.
    for n in 1..=48 {
        sql(&format!("INSERT INTO t VALUES ({n})")).unwrap();
        sql("SELECT pg_switch_wal()").unwrap();
    }
    sql("INSERT INTO t SELECT generate_series(100001, 400000)").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    stop_stream(stream);

    let dir = top.join("restored");
    let p = free_port();
    let mut restore = kasm(&[
        "restore",
        "--physical",
        "--from",
        target.to_str().unwrap(),
        "--backup",
        &first,
        "--data-dir",
        dir.to_str().unwrap(),
        "--start",
        "--port",
        &p.to_string(),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .map(Reaped::from)
    .unwrap();
    // A client asking over TCP, with the cluster's password, until the restore is done.
    let mut answers = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    while restore.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the restore did not finish");
        if let Ok(a) = psql_tcp(&bindir, p, Some(&password), "SELECT pg_is_in_recovery()") {
            answers.push(a);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = restore.into_inner().wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let said = format!("answers read-only queries on port {p} while it replays WAL");
    assert!(stderr.contains(&said), "{stderr}");
    assert!(
        answers.iter().any(|a| a == "t"),
        "no answer while it replayed: {answers:?}\n{stderr}"
    );
    // Promoted and restarted on P: the cluster's rules, and nothing else.
    assert_eq!(
        psql_tcp(&bindir, p, Some(&password), "SELECT count(*) FROM t").unwrap(),
        "300048"
    );
    let e = psql_tcp(&bindir, p, None, "SELECT 1").unwrap_err();
    assert!(e.contains("password"), "{e}");
    let e = psql(&bindir, &dir, p, "kasm", "SELECT 1").unwrap_err();
    assert!(
        e.contains("password"),
        "a local connection without a password: {e}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("pg_hba.conf")).unwrap(),
        rules
    );
    stop_server(&dir);

    // Rules that name a file: recovered on a private port, answering on P once promoted.
    let dir = top.join("restored-private");
    let p = free_port();
    let r = run(kasm(&[
        "restore",
        "--physical",
        "--from",
        target.to_str().unwrap(),
        "--backup",
        &second,
        "--data-dir",
        dir.to_str().unwrap(),
        "--start",
        "--port",
        &p.to_string(),
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("recovery runs on a private port")
            && r.stderr.contains("includes other files"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("answers read-only"), "{}", r.stderr);
    assert_eq!(
        psql_tcp(&bindir, p, Some(&password), "SELECT count(*) FROM t").unwrap(),
        "300048"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("pg_hba.conf")).unwrap(),
        named
    );
    // A port in use: refused before anything is written.
    let busy = top.join("restored-busy");
    let r = run(kasm(&[
        "restore",
        "--physical",
        "--from",
        target.to_str().unwrap(),
        "--data-dir",
        busy.to_str().unwrap(),
        "--start",
        "--port",
        &p.to_string(),
    ]));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("is in use"), "{}", r.stderr);
    assert!(!busy.exists());
    stop_server(&dir);

    // Without --start: recovered, promoted and cleanly shut down, the recovery settings gone.
    let dir = top.join("restored-down");
    let r = run(kasm(&[
        "restore",
        "--physical",
        "--json",
        "--from",
        target.to_str().unwrap(),
        "--data-dir",
        dir.to_str().unwrap(),
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(json(&r)["recovered_to"].is_string(), "{}", r.stdout);
    assert!(!dir.join("postmaster.pid").exists());
    let control = Command::new(bindir.join("pg_controldata"))
        .arg(&dir)
        .output()
        .unwrap();
    let control = String::from_utf8_lossy(&control.stdout);
    assert!(
        control.contains("Database cluster state:               shut down\n"),
        "{control}"
    );
    let auto = std::fs::read_to_string(dir.join("postgresql.auto.conf")).unwrap_or_default();
    assert!(!auto.contains("restore_command"), "{auto}");
    assert!(!dir.join("recovery.signal").exists());
}

/// SIGTERM to a `wal stream` child; it stores what it received and exits 0.
fn stop_stream(stream: Reaped) {
    // SAFETY: the stream is our child.
    unsafe {
        libc::kill(stream.id() as i32, libc::SIGTERM);
    }
    let out = stream.into_inner().wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Wait until the slot has its consumer (the stream's pg_receivewal).
fn wait_streaming(sql: &dyn Fn(&str) -> Result<String, String>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while sql("SELECT count(*) FROM pg_replication_slots WHERE active").unwrap() != "1" {
        assert!(Instant::now() < deadline, "the stream did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Two streams never share a staging directory: a second one on the same directory exits 75
/// while the first runs, and WAL staged there by another stream (another database or target)
/// is refused, never stored under this target. (Found by bench/pitr.sh: a stray stream of an
/// earlier run on the same default directory took the new stream's segments.)
#[test]
fn a_staging_directory_belongs_to_one_stream() {
    let (primary, bindir, socket, port, top, _work) = kasm_primary("staging-owner");
    psql(&bindir, &socket, port, "postgres", "CREATE DATABASE kasm2").unwrap();
    let url = primary.url("kasm");
    let url2 = primary.url("kasm2");
    let staging = top.join("staging");
    let stream_of = |url: &str, target: &Path| {
        let mut c = kasm_db(&stream_args(url, target.to_str().unwrap(), &staging, &[]));
        c.env("KASM_DB_BACKUP_FILE_MODE", "0644")
            .env("KASM_DB_BACKUP_WAL_FLUSH", "1s");
        c
    };
    let stream_to = |target: &Path| stream_of(&url, target);
    let first_target = open_dir(&top, "first");
    let first = stream_to(&first_target)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map(Reaped::from)
        .unwrap();
    wait_streaming(&|q| psql(&bindir, &socket, port, "kasm", q));
    // A second stream on the same directory (another database and slot, so the server would
    // let it in).
    let second_target = open_dir(&top, "second");
    let r = run(stream_of(&url2, &second_target).env("KASM_DB_BACKUP_WAL_SLOT", "kasm_db_two"));
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(
        r.stderr.contains("in use by another `wal stream`"),
        "{}",
        r.stderr
    );
    stop_stream(first);

    // WAL left in the directory by the first stream is not stored under another target.
    std::fs::write(staging.join("0000000100000000000000FE"), vec![0u8; 1024]).unwrap();
    let r = run(stream_to(&second_target));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("WAL staged by another stream"),
        "{}",
        r.stderr
    );
    assert!(
        !second_target.join("wal").exists()
            || std::fs::read_dir(second_target.join("wal"))
                .unwrap()
                .next()
                .is_none(),
        "nothing of the other stream's WAL reaches this target"
    );
    psql(
        &bindir,
        &socket,
        port,
        "kasm",
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots",
    )
    .unwrap();
}

/// A stream that resumes past a hole says so when it starts (WAL received, never stored, and
/// lost with its staging directory: the slot has moved past it). Simulated by removing the
/// newest stored segment between two runs; a plain restart says nothing of the kind.
#[test]
fn a_stream_resuming_past_a_hole_in_the_archive_says_so() {
    let (primary, bindir, socket, port, top, _work) = kasm_primary("resume-hole");
    let url = primary.url("kasm");
    let sql = |q: &str| psql(&bindir, &socket, port, "kasm", q);
    let target = open_dir(&top, "target");
    let staging = top.join("staging");
    let run_until_stopped = |work: &dyn Fn()| -> String {
        let stream = kasm_db(&stream_args(&url, target.to_str().unwrap(), &staging, &[]))
            .env("KASM_DB_BACKUP_FILE_MODE", "0644")
            .env("KASM_DB_BACKUP_WAL_FLUSH", "1s")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map(Reaped::from)
            .unwrap();
        wait_streaming(&sql);
        work();
        let stream = stream.into_inner();
        // SAFETY: the stream is our child.
        unsafe {
            libc::kill(stream.id() as i32, libc::SIGTERM);
        }
        let out = stream.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{stderr}");
        stderr
    };
    let completed = || -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(target.join("wal/00000001")) else {
            return Vec::new();
        };
        let mut names: Vec<String> = dir
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
            .filter(|n| n.len() == 24)
            .collect();
        names.sort();
        names
    };
    let first = run_until_stopped(&|| {
        for _ in 0..3 {
            sql("CREATE TABLE IF NOT EXISTS t (v text); \
                 INSERT INTO t SELECT repeat('x', 1000) FROM generate_series(1, 2000); \
                 SELECT pg_switch_wal()")
            .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while completed().len() < 3 {
            assert!(Instant::now() < deadline, "stored: {:?}", completed());
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    assert!(!first.contains("has a hole"), "{first}");
    let stored = completed();
    assert!(stored.len() >= 3, "{stored:?}");
    let again = run_until_stopped(&|| {});
    assert!(!again.contains("has a hole"), "a plain restart: {again}");

    // The newest stored segment, gone as if it had never been stored.
    let newest = completed().pop().unwrap();
    for e in std::fs::read_dir(target.join("wal/00000001"))
        .unwrap()
        .flatten()
    {
        let n = e.file_name().to_string_lossy().to_string();
        if n.starts_with(&format!("{newest}.")) && !n.contains("partial") {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    let resumed = run_until_stopped(&|| {});
    assert!(
        resumed.contains("has a hole") && resumed.contains(&newest),
        "the hole at {newest} is not named: {resumed}"
    );
    sql("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots").unwrap();
}

/// Whether any file under `dir` holds `needle` (read whole: the test's trees are small).
fn tree_contains(dir: &Path, needle: &[u8]) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(found) = tree_contains(&p, needle) {
                return Some(found);
            }
        } else if let Ok(bytes) = std::fs::read(&p) {
            if bytes.windows(needle.len()).any(|w| w == needle) {
                return Some(p);
            }
        }
    }
    None
}

/// With `backup.encryption_key_file`, the base backup and every stored WAL object are sealed
/// as the dumps are: no row's text is in the target (gzip level 0 stores blocks, so in the
/// clear it would be), `backups verify` opens the backup and its WAL with the key and refuses
/// without it or with another (exit 1, naming the key), and `restore --physical` refuses a
/// missing or wrong key before writing anything to DIR, and with the key has every row.
#[test]
fn encrypted_base_backup_and_wal_restore_with_the_key_only() {
    const MARKER: &str = "kasm-db-plaintext-marker-7f3a";
    let (primary, bindir, socket, port, top, _work) = kasm_primary("pitr-encrypted");
    let target = open_dir(&top, "target");
    let sql = |s: &str| psql(&bindir, &socket, port, "kasm", s);
    sql("CREATE TABLE t (n int PRIMARY KEY, note text NOT NULL)").unwrap();
    let url = primary.url("kasm");
    // Readable by `postgres`: the restored server runs `wal fetch`, which opens the WAL, as it.
    let key_file = |name: &str, byte: u8| {
        use std::os::unix::fs::PermissionsExt;
        let p = top.join(name);
        std::fs::write(&p, hex::encode([byte; 32])).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        p
    };
    let (key, wrong) = (key_file("backup.key", 0x5a), key_file("other.key", 0x5b));
    let plain = |args: &[&str]| {
        let mut c = kasm_db(args);
        c.env("KASM_DB_BACKUP_FILE_MODE", "0644")
            .env("KASM_DB_BACKUP_WAL_FLUSH", "1s")
            .env("KASM_DB_BACKUP_COMPRESSION_LEVEL", "0");
        c
    };
    let keyed = |args: &[&str], key: &Path| {
        let mut c = plain(args);
        c.env("KASM_DB_BACKUP_ENCRYPTION_KEY_FILE", key);
        c
    };
    let insert = |from: i32, to: i32| {
        sql(&format!(
            "INSERT INTO t SELECT n, '{MARKER}-' || n FROM generate_series({from}, {to}) n"
        ))
        .unwrap();
    };
    let target_s = target.to_str().unwrap();
    let stream = keyed(
        &stream_args(&url, target_s, &top.join("staging"), &[]),
        &key,
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .map(Reaped::from)
    .unwrap();
    wait_streaming(&sql);
    insert(1, 10);
    let b = run(keyed(
        &[
            "backup",
            "--physical",
            "--json",
            "--db",
            &url,
            "--to",
            target_s,
        ],
        &key,
    ));
    assert_eq!(b.code, 0, "{}", b.stderr);
    let id = json(&b)["id"].as_str().unwrap().to_string();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(target.join(&id).join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(
        manifest["encryption"]["kind"], "aes-256-gcm-hkdf-stream",
        "{manifest}"
    );
    assert!(
        manifest["object"].as_str().unwrap().ends_with(".gz.aes"),
        "{manifest}"
    );
    for n in (11..=40).step_by(10) {
        insert(n, n + 9);
        sql("SELECT pg_switch_wal()").unwrap();
    }
    std::thread::sleep(Duration::from_millis(2500));
    stop_stream(stream);

    // Nothing of the rows in the clear under the target; every WAL record names its key.
    assert_eq!(tree_contains(&target, MARKER.as_bytes()), None);
    let mut records = 0;
    for tli in std::fs::read_dir(target.join("wal")).unwrap().flatten() {
        for f in std::fs::read_dir(tli.path()).unwrap().flatten() {
            let name = f.file_name().to_string_lossy().to_string();
            if name.ends_with(".json") {
                let r: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(f.path()).unwrap()).unwrap();
                assert_eq!(
                    r["encryption"]["kind"], "aes-256-gcm-hkdf-stream",
                    "{name}: {r}"
                );
                records += 1;
            } else {
                assert!(name.ends_with(".zst.aes"), "{name}");
            }
        }
    }
    assert!(records >= 3, "{records} WAL records");

    // verify: with the key, the backup and its chain open; without it or with another, refused.
    let verify = |key: Option<&Path>| {
        let args = ["backups", "verify", &id, "--json", "--from", target_s];
        run(match key {
            Some(k) => keyed(&args, k),
            None => plain(&args),
        })
    };
    let v = verify(Some(&key));
    assert_eq!(v.code, 0, "{}\n{}", v.stdout, v.stderr);
    assert_eq!(json(&v)["ok"], true, "{}", v.stdout);
    let v = verify(None);
    assert_eq!(v.code, 1, "{}", v.stderr);
    assert!(
        v.stderr.contains("is encrypted") && v.stderr.contains("encryption_key_file"),
        "{}",
        v.stderr
    );
    let v = verify(Some(&wrong));
    assert_eq!(v.code, 1, "{}", v.stderr);
    assert!(v.stderr.contains("wrong key"), "{}", v.stderr);

    // restore: a missing or wrong key is refused before DIR is written; the key restores all.
    let restored = open_dir(&top, "restored");
    for (k, says) in [(None, "is encrypted"), (Some(&wrong), "wrong key")] {
        let dir = restored.join("refused");
        let mut c = match k {
            Some(k) => keyed(&[], k),
            None => plain(&[]),
        };
        c.args([
            "restore",
            "--physical",
            "--from",
            target_s,
            "--data-dir",
            dir.to_str().unwrap(),
        ]);
        let r = run(c);
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(r.stderr.contains(says), "{}", r.stderr);
        assert!(
            !r.stderr.contains(&hex::encode([0x5au8; 32])),
            "{}",
            r.stderr
        );
        assert!(
            !dir.exists() || std::fs::read_dir(&dir).unwrap().next().is_none(),
            "nothing written to DIR"
        );
    }
    let dir = restored.join("latest");
    let r = restore_from(
        &bindir,
        target_s,
        &[(
            "KASM_DB_BACKUP_ENCRYPTION_KEY_FILE",
            key.to_str().unwrap().to_string(),
        )],
        &dir,
        &[],
    )
    .expect("restore with the key");
    assert_eq!(r.rows, (1..=40).collect::<Vec<_>>(), "{}", r.report);
    // The same search finds the rows in the clear in the restored data directory.
    assert!(tree_contains(&dir, MARKER.as_bytes()).is_some());
}

/// The WAL records (completed segments and history files, not partial copies) under a
/// directory target.
fn wal_records(target: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(timelines) = std::fs::read_dir(target.join("wal")) else {
        return out;
    };
    for tli in timelines.flatten() {
        for f in std::fs::read_dir(tli.path()).unwrap().flatten() {
            let name = f.file_name().to_string_lossy().to_string();
            if name.ends_with(".json") && !name.ends_with(".partial.json") {
                out.push(name);
            }
        }
    }
    out.sort();
    out
}

/// Issue 25, `backup.copy_to`: every segment stored under the main target reaches the copy
/// target too. A copy target that is away (its directory replaced by a file, as a share that is
/// not mounted) does not hold up the main target; when it is back it gets every segment it
/// missed, so `backups verify --from COPY` finds the chain whole and a restore from the copy has
/// every row.
#[test]
fn wal_reaches_a_copy_target_that_was_away() {
    let (primary, bindir, socket, port, top, _work) = kasm_primary("wal-copies");
    let target = open_dir(&top, "target");
    let copy = open_dir(&top, "copy");
    let sql = |s: &str| psql(&bindir, &socket, port, "kasm", s);
    sql("CREATE TABLE t (n int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")
        .unwrap();
    let url = primary.url("kasm");
    let with_env = |mut c: Command| {
        c.env("KASM_DB_BACKUP_FILE_MODE", "0644")
            .env("KASM_DB_BACKUP_WAL_FLUSH", format!("{FLUSH_S}s"))
            .env("KASM_DB_BACKUP_COPY_TO", copy.to_str().unwrap());
        c
    };
    let stream = with_env(kasm_db(&stream_args(
        &url,
        target.to_str().unwrap(),
        &top.join("staging"),
        &["--json"],
    )))
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .map(Reaped::from)
    .unwrap();
    wait_streaming(&sql);
    let insert = |from: i64, to: i64| {
        for n in from..=to {
            sql(&format!("INSERT INTO t (n) VALUES ({n})")).unwrap();
        }
    };
    insert(1, 10);
    let b = run(with_env(kasm_db(&[
        "backup",
        "--physical",
        "--json",
        "--db",
        &url,
        "--to",
        target.to_str().unwrap(),
    ])));
    assert_eq!(b.code, 0, "{}", b.stderr);
    let b = json(&b);
    let id = b["id"].as_str().unwrap().to_string();
    assert!(
        copy.join(&id).join("manifest.json").exists(),
        "the base backup reached the copy: {b}"
    );

    // The copy goes away; the main target keeps taking WAL meanwhile.
    let away = top.join("copy.away");
    std::fs::rename(&copy, &away).unwrap();
    std::fs::write(&copy, b"not mounted").unwrap();
    let before = wal_records(&target).len();
    for i in 0..4 {
        insert(11 + i * 10, 20 + i * 10);
        sql("SELECT pg_switch_wal()").unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while wal_records(&target).len() < before + 4 {
        assert!(
            Instant::now() < deadline,
            "the main target stopped taking WAL while the copy was away: {:?}",
            wal_records(&target)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let missed: Vec<String> = wal_records(&target)
        .into_iter()
        .filter(|r| !wal_records(&away).contains(r))
        .collect();
    assert!(missed.len() >= 4, "the copy missed nothing? {missed:?}");

    // Back: it catches up while the stream runs.
    std::fs::remove_file(&copy).unwrap();
    std::fs::rename(&away, &copy).unwrap();
    insert(51, 60);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (main, copied) = (wal_records(&target), wal_records(&copy));
        if main.iter().all(|r| copied.contains(r)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the copy did not catch up: main {main:?}, copy {copied:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop_stream(stream);

    let verify = run(kasm_db(&[
        "backups",
        "verify",
        &id,
        "--json",
        "--from",
        copy.to_str().unwrap(),
    ]));
    assert_eq!(verify.code, 0, "{}\n{}", verify.stdout, verify.stderr);
    let restored = open_dir(&top, "restored");
    let r = restore(&bindir, &copy, &restored.join("from-copy"), &[]).expect("restore from copy");
    assert_eq!(r.rows, (1..=60).collect::<Vec<_>>());
    assert_eq!(r.report["backup"], b["id"]);
}

/// A plain HTTP/1.0 GET on loopback: the body.
fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// A webhook receiver on loopback: every POST body it got.
fn webhook() -> (std::net::SocketAddr, Arc<Mutex<Vec<serde_json::Value>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let got: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let g = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            if r.read_exact(&mut body).is_ok() {
                if let Ok(v) = serde_json::from_slice(&body) {
                    g.lock().unwrap().push(v);
                }
            }
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (addr, got)
}

/// Issue 25, the slot guard: a replication slot nobody consumes keeps WAL on the primary. Past
/// `backup.wal_slot_max_retained` `backups check` fails naming the slot and the bytes (it
/// passes while the stream consumes it), `serve`'s `/metrics` shows what the slot keeps and
/// that it has no consumer, and one `wal` failure notification is sent. The slot is never
/// dropped.
#[test]
fn the_slot_guard_names_a_slot_nobody_consumes() {
    let (primary, bindir, socket, port, top, work) = kasm_primary("slot-guard");
    let target = open_dir(&top, "target");
    let sql = |s: &str| psql(&bindir, &socket, port, "kasm", s);
    let url = primary.url("kasm");
    let with_env = |mut c: Command| {
        c.env("KASM_DB_BACKUP_FILE_MODE", "0644")
            .env("KASM_DB_BACKUP_WAL_FLUSH", "1s")
            .env("KASM_DB_BACKUP_WAL_SLOT_MAX_RETAINED", "1MB");
        c
    };
    let stream = with_env(kasm_db(&stream_args(
        &url,
        target.to_str().unwrap(),
        &top.join("staging"),
        &[],
    )))
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .map(Reaped::from)
    .unwrap();
    wait_streaming(&sql);
    let b = run(with_env(kasm_db(&[
        "backup",
        "--physical",
        "--db",
        &url,
        "--to",
        target.to_str().unwrap(),
    ])));
    assert_eq!(b.code, 0, "{}", b.stderr);
    let check = || {
        run(with_env(kasm_db(&[
            "backups",
            "check",
            "--json",
            "--db",
            &url,
            "--from",
            target.to_str().unwrap(),
        ])))
    };
    // Consumed: the check passes, and advises the server's own hard limit.
    let r = check();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = json(&r);
    assert_eq!(v["wal_slot"]["active"], true, "{v}");
    assert_eq!(v["wal_slot"]["max_slot_wal_keep_size_mb"], -1, "{v}");
    assert!(
        v["wal_slot"]["advice"][0]
            .as_str()
            .unwrap()
            .contains("max_slot_wal_keep_size"),
        "{v}"
    );

    // Nobody consumes it any more, and WAL is written past the limit.
    stop_stream(stream);
    sql(
        "CREATE TABLE filler AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 30000) g",
    )
    .unwrap();
    sql("SELECT pg_switch_wal()").unwrap();
    let kept: u64 = sql(
        "SELECT (pg_current_wal_lsn() - restart_lsn)::bigint FROM pg_replication_slots \
         WHERE slot_name = 'kasm_db'",
    )
    .unwrap()
    .parse()
    .unwrap();
    assert!(kept > 1_000_000, "{kept}");
    let r = check();
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let v = json(&r);
    let reason = v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .find(|r| r.contains("replication slot kasm_db"))
        .unwrap_or_else(|| panic!("{v}"));
    assert!(
        reason.contains("bytes") && reason.contains("no consumer"),
        "{reason}"
    );
    assert!(
        reason.contains("pg_drop_replication_slot('kasm_db')"),
        "{reason}"
    );
    assert!(
        v["wal_slot"]["retained_bytes"].as_u64().unwrap() >= kept,
        "{v}"
    );
    let text = run(with_env(kasm_db(&[
        "backups",
        "check",
        "--db",
        &url,
        "--from",
        target.to_str().unwrap(),
    ])));
    assert_eq!(text.code, 1);
    assert!(
        text.stdout.starts_with("BACKUPS CRITICAL") && text.stdout.contains("NO CONSUMER"),
        "{}",
        text.stdout
    );

    // `size` reads the same slot (db::replication::slot) and puts it first in its advice.
    let size = run(kasm_db(&["size", "--json", "--no-record", "--db", &url]));
    let size = json(&size);
    assert_eq!(size["wal_slot"]["active"], false, "{size}");
    assert!(
        size["wal_slot"]["retained_bytes"].as_u64().unwrap() >= kept,
        "{size}"
    );
    assert!(
        size["advice"][0]
            .as_str()
            .unwrap()
            .contains("pg_drop_replication_slot('kasm_db')"),
        "{size}"
    );

    // serve (not streaming) shows the slot in /metrics and notifies once.
    let (hook, got) = webhook();
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut serve = with_env(kasm_db(&["serve", "--db", &url]))
        .env("KASM_DB_SERVER_LISTEN", listen.to_string())
        .env("KASM_DB_SERVER_TOKEN", "t0ken-for-the-test")
        .env("KASM_DB_NOTIFY_URLS", format!("[\"http://{hook}/hook\"]"))
        .env("KASM_DB_NOTIFY_ON", "failure")
        .env("TMPDIR", work.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(top.join("serve.log")).unwrap())
        .spawn()
        .map(Reaped::from)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let metrics = loop {
        let m = http_get(listen, "/metrics").unwrap_or_default();
        if m.contains("kasm_db_wal_slot_ok{slot=\"kasm_db\"} 0") {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "no slot in /metrics: {m}\n{}",
            std::fs::read_to_string(top.join("serve.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        metrics.contains("kasm_db_wal_slot_active{slot=\"kasm_db\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE kasm_db_wal_slot_retained_bytes gauge"),
        "{metrics}"
    );
    let retained: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("kasm_db_wal_slot_retained_bytes{slot=\"kasm_db\"} "))
        .unwrap_or_else(|| panic!("{metrics}"))
        .parse()
        .unwrap();
    assert!(retained >= kept as f64, "{retained} < {kept}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no notification");
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: our child.
    unsafe {
        libc::kill(serve.id() as i32, libc::SIGTERM);
    }
    assert!(serve.wait().unwrap().success());
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["job"], "wal", "{got:?}");
    assert_eq!(got[0]["status"], "failure", "{got:?}");
    assert!(
        got[0]["error"].as_str().unwrap().contains("kasm_db"),
        "{got:?}"
    );
    assert_eq!(
        sql("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'kasm_db'").unwrap(),
        "1",
        "the slot is never dropped"
    );
}

/// A loopback TCP relay to an upstream server that the test can cut: every live connection is
/// closed and new ones are dropped as soon as they are accepted, for a while.
struct Relay {
    addr: std::net::SocketAddr,
    cut_until: Arc<Mutex<Option<Instant>>>,
    live: Arc<Mutex<Vec<std::net::TcpStream>>>,
    /// Connections dropped while cut.
    refused: Arc<std::sync::atomic::AtomicUsize>,
}

impl Relay {
    fn start(upstream: std::net::SocketAddr) -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let relay = Relay {
            addr: listener.local_addr().unwrap(),
            cut_until: Arc::default(),
            live: Arc::default(),
            refused: Arc::default(),
        };
        let (cut_until, live, refused) = (
            relay.cut_until.clone(),
            relay.live.clone(),
            relay.refused.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(down) = conn else { continue };
                if cut_until
                    .lock()
                    .unwrap()
                    .is_some_and(|t| Instant::now() < t)
                {
                    refused.fetch_add(1, Ordering::SeqCst);
                    let _ = down.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                let Ok(up) = std::net::TcpStream::connect(upstream) else {
                    continue;
                };
                {
                    let mut l = live.lock().unwrap();
                    l.push(down.try_clone().unwrap());
                    l.push(up.try_clone().unwrap());
                }
                for (mut from, mut to) in [
                    (down.try_clone().unwrap(), up.try_clone().unwrap()),
                    (up, down),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        relay
    }

    /// Close every live connection and drop new ones for `how_long`.
    fn cut(&self, how_long: Duration) {
        *self.cut_until.lock().unwrap() = Some(Instant::now() + how_long);
        for s in self.live.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Issue 25: "the stream survives an S3 server that drops connections, with no gap", and a
/// `wal stream` killed with SIGKILL and started again leaves no gap. `wal stream` stores to moto
/// through a relay that is cut twice (live connections closed, new ones dropped, for seconds)
/// while a writer commits numbered rows and segments are switched; then the stream is killed
/// outright and started again. Afterwards `backups verify` of the base backup taken before the
/// cuts finds the chain whole, and a restore to latest has every row committed.
#[test]
fn wal_stream_survives_a_target_that_drops_connections_and_a_kill() {
    let (primary, bindir, socket, port, top, _work) = kasm_primary("pitr-cuts");
    let sql = |s: &str| psql(&bindir, &socket, port, "kasm", s);
    sql("CREATE TABLE t (n int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")
        .unwrap();
    let url = primary.url("kasm");
    let bucket = moto::bucket();
    let target = format!("s3://{bucket}/pitr");
    let direct = moto::env();
    let upstream: std::net::SocketAddr = moto::endpoint()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let relay = Relay::start(upstream);
    let through_relay: Vec<(&str, String)> = direct
        .iter()
        .map(|(k, v)| {
            if *k == "KASM_DB_S3_ENDPOINT" {
                (*k, format!("http://{}", relay.addr))
            } else {
                (*k, v.clone())
            }
        })
        .collect();
    let kasm = |args: &[&str], env: &[(&str, String)]| {
        let mut c = kasm_db(args);
        c.envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("KASM_DB_BACKUP_WAL_FLUSH", format!("{FLUSH_S}s"));
        c
    };
    let start_stream = |log: &str| {
        kasm(
            &stream_args(&url, &target, &top.join("staging"), &[]),
            &through_relay,
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(top.join(log)).unwrap())
        .spawn()
        .map(Reaped::from)
        .unwrap()
    };
    let mut stream = start_stream("stream-1.log");
    wait_streaming(&sql);

    // The writer: numbered rows, one transaction each, a segment switched every 40 rows.
    let committed: Arc<Mutex<Vec<i64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (committed, stop) = (committed.clone(), stop.clone());
        let (bindir, socket) = (bindir.clone(), socket.clone());
        std::thread::spawn(move || {
            let mut n = 1i64;
            while !stop.load(Ordering::SeqCst) {
                let q = format!("INSERT INTO t (n) VALUES ({n})");
                psql(&bindir, &socket, port, "kasm", &q).unwrap();
                committed.lock().unwrap().push(n);
                if n % 40 == 0 {
                    psql(&bindir, &socket, port, "kasm", "SELECT pg_switch_wal()").unwrap();
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(15));
            }
        })
    };
    let wait_rows = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while committed.lock().unwrap().len() < n {
            assert!(Instant::now() < deadline, "the writer is stuck");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_rows(20);
    let b = run(kasm(
        &[
            "backup",
            "--physical",
            "--json",
            "--db",
            &url,
            "--to",
            &target,
        ],
        &direct,
    ));
    assert_eq!(b.code, 0, "{}", b.stderr);
    let id = json(&b)["id"].as_str().unwrap().to_string();

    // Two cuts while rows are committed and segments completed.
    for _ in 0..2 {
        std::thread::sleep(Duration::from_secs(2));
        relay.cut(Duration::from_secs(5));
        std::thread::sleep(Duration::from_secs(7));
    }
    assert!(
        relay.refused.load(Ordering::SeqCst) > 0,
        "the stream never tried the target while it was cut"
    );
    // Killed outright, and started again on the same staging directory.
    stream.kill().unwrap();
    stream.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while sql("SELECT count(*) FROM pg_replication_slots WHERE active").unwrap() != "0" {
        assert!(
            Instant::now() < deadline,
            "pg_receivewal outlived its stream"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let n_at_kill = committed.lock().unwrap().len();
    wait_rows(n_at_kill + 100); // written while nothing streams: the slot keeps it
    // Started again while the target is away: it streams into staging meanwhile.
    relay.cut(Duration::from_secs(12));
    let mut stream = start_stream("stream-2.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    while sql("SELECT count(*) FROM pg_replication_slots WHERE active").unwrap() != "1" {
        assert!(
            Instant::now() < deadline && stream.try_wait().unwrap().is_none(),
            "the stream did not start again: {}",
            std::fs::read_to_string(top.join("stream-2.log")).unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let n_at_start = committed.lock().unwrap().len();
    wait_rows(n_at_start + 100);
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    std::thread::sleep(Duration::from_secs(FLUSH_S + 1));
    stop_stream(stream);
    let last = *committed.lock().unwrap().last().unwrap();

    let r = run(kasm(
        &["backups", "verify", &id, "--json", "--from", &target],
        &direct,
    ));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let restored = open_dir(&top, "restored");
    let r = restore_from(&bindir, &target, &direct, &restored.join("latest"), &[])
        .expect("restore after the cuts");
    assert_eq!(r.rows, (1..=last).collect::<Vec<_>>());
    assert_eq!(r.report["backup"], serde_json::json!(id));
}

/// The `serve` process (by pid) whose child is a running pg_receivewal, if any.
fn receivewal_parent(candidates: &[u32]) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        if !head.ends_with("(pg_receivewal") {
            continue;
        }
        let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
        if candidates.contains(&ppid) {
            return Some(ppid);
        }
    }
    None
}

/// Two `serve` replicas with `backup.wal = true`: one leads the WAL stream. SIGTERM to the
/// leader stops its stream cleanly (exit 0, what it received stored), and the other replica
/// takes the lead; the archive after a base backup taken under the first leader has no gap and a
/// restore has every row.
#[test]
fn serve_hands_the_wal_stream_to_another_replica_on_sigterm() {
    let (primary, bindir, socket, port, top, _work) = kasm_primary("takeover");
    let target = open_dir(&top, "target");
    let sql = |s: &str| psql(&bindir, &socket, port, "kasm", s);
    sql("CREATE TABLE t (n int PRIMARY KEY)").unwrap();
    let url = primary.url("kasm");
    let replica = |name: &str| {
        let tmp = open_dir(&top, &format!("tmp-{name}"));
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        kasm_db(&["serve", "--db", &url])
            .env("KASM_DB_SERVER_LISTEN", listen.to_string())
            .env("KASM_DB_SERVER_TOKEN", "t0ken-for-the-test")
            .env("KASM_DB_BACKUP_TO", target.to_str().unwrap())
            .env("KASM_DB_BACKUP_FILE_MODE", "0644")
            .env("KASM_DB_BACKUP_WAL", "true")
            .env("KASM_DB_BACKUP_WAL_FLUSH", "1s")
            .env("TMPDIR", &tmp)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(top.join(format!("{name}.log"))).unwrap())
            .spawn()
            .map(|child| (Reaped::from(child), listen))
            .unwrap()
    };
    let (mut a, a_at) = replica("a");
    let (mut b, b_at) = replica("b");
    let pids = [a.id(), b.id()];
    let deadline = Instant::now() + Duration::from_secs(90);
    let first = loop {
        if let Some(p) = receivewal_parent(&pids) {
            break p;
        }
        assert!(Instant::now() < deadline, "no replica streams");
        std::thread::sleep(Duration::from_millis(100));
    };
    wait_streaming(&sql);
    // `kasm_db_wal_streaming` is 1 on the leader only (the other replica has tried and found
    // the lock taken by now: they started together).
    let (leader_at, other_at) = if first == a.id() {
        (a_at, b_at)
    } else {
        (b_at, a_at)
    };
    let streaming = |at| {
        let metrics = http_get(at, "/metrics").unwrap_or_default();
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("kasm_db_wal_streaming "))
            .map(str::to_string)
    };
    crate::common::wait::wait_until(Duration::from_secs(30), "both replicas' /metrics", || {
        streaming(leader_at).is_some() && streaming(other_at).is_some()
    });
    assert_eq!(streaming(leader_at).as_deref(), Some("1"));
    assert_eq!(streaming(other_at).as_deref(), Some("0"));
    let insert = |from: i64, to: i64| {
        for n in from..=to {
            sql(&format!("INSERT INTO t (n) VALUES ({n})")).unwrap();
        }
    };
    insert(1, 10);
    let backup = run(kasm_db(&[
        "backup",
        "--physical",
        "--json",
        "--db",
        &url,
        "--to",
        target.to_str().unwrap(),
    ])
    .env("KASM_DB_BACKUP_FILE_MODE", "0644"));
    assert_eq!(backup.code, 0, "{}", backup.stderr);
    let id = json(&backup)["id"].as_str().unwrap().to_string();
    insert(11, 20);
    let switched = sql("SELECT pg_walfile_name(pg_switch_wal())").unwrap();
    // The leader stores the completed segment within a flush interval or so (pg_receivewal
    // completes it once the rest of it has arrived).
    let record = target.join(format!("wal/00000001/{switched}.json"));
    crate::common::wait::wait_until(
        Duration::from_secs(60),
        "the switched segment stored",
        || record.exists(),
    );

    // SIGTERM to the leader: it stores what it received and exits 0.
    let (leader, other) = if first == a.id() {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    // SAFETY: our child.
    unsafe {
        libc::kill(leader.id() as i32, libc::SIGTERM);
    }
    let status = leader.wait().unwrap();
    assert!(status.success(), "{status}");
    insert(21, 30);

    // The other replica takes the lead (it tries again every 15 s).
    let deadline = Instant::now() + Duration::from_secs(90);
    while receivewal_parent(&[other.id()]).is_none() {
        assert!(Instant::now() < deadline, "no replica took over the stream");
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_streaming(&sql);
    insert(31, 40);
    let switched = sql("SELECT pg_walfile_name(pg_switch_wal())").unwrap();
    let record = target.join(format!("wal/00000001/{switched}.json"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !record.exists() {
        assert!(
            Instant::now() < deadline,
            "the new leader did not store {switched}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: our child.
    unsafe {
        libc::kill(other.id() as i32, libc::SIGTERM);
    }
    assert!(other.wait().unwrap().success());

    let r = run(kasm_db(&[
        "backups",
        "verify",
        &id,
        "--json",
        "--from",
        target.to_str().unwrap(),
    ]));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let restored = open_dir(&top, "restored");
    let r = restore(&bindir, &target, &restored.join("latest"), &[]).expect("restore");
    assert_eq!(r.rows, (1..=40).collect::<Vec<_>>());
}

/// With `s3.object_lock_days`, a completed WAL segment is retained as a backup's data is, and
/// the partial copy of the segment being written is not: a new one every `backup.wal_flush`,
/// each kept for the whole lock period, could never be removed. Superseded by the whole
/// segment, the partial copy is deleted (moto, a bucket with Object Lock).
#[test]
fn object_lock_retains_completed_wal_and_never_the_partial_copies() {
    let (primary, bindir, socket, port, top, _work) = kasm_primary("pitr-lock");
    let sql = |s: &str| psql(&bindir, &socket, port, "kasm", s);
    let url = primary.url("kasm");
    let bucket = crate::copies::locked_bucket();
    let target = format!("s3://{bucket}/pitr");
    let stream = kasm_db(&stream_args(&url, &target, &top.join("staging"), &[]))
        .envs(moto::env())
        .env("KASM_DB_S3_OBJECT_LOCK_DAYS", "2")
        .env("KASM_DB_BACKUP_WAL_FLUSH", "1s")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map(Reaped::from)
        .unwrap();
    wait_streaming(&sql);
    sql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS n").unwrap();
    let segment = sql("SELECT pg_walfile_name(pg_current_wal_lsn())").unwrap();
    let partial_prefix = format!("pitr/wal/00000001/{segment}.partial-");
    let partial = crate::common::wait::wait_for_some(
        Duration::from_secs(60),
        format!("a partial copy of {segment}"),
        || {
            moto::keys(&bucket)
                .into_iter()
                .find(|k| k.starts_with(&partial_prefix))
        },
    );
    let head = moto::block_on(
        moto::client()
            .head_object()
            .bucket(&bucket)
            .key(&partial)
            .send(),
    )
    .unwrap();
    assert_eq!(head.object_lock_mode(), None, "{partial} is retained");
    assert_eq!(head.object_lock_retain_until_date(), None, "{partial}");

    // Completed, the segment is stored whole and retained; its partial copies are gone.
    sql("SELECT pg_switch_wal()").unwrap();
    let whole = format!("pitr/wal/00000001/{segment}.json");
    crate::common::wait::wait_until(
        Duration::from_secs(60),
        format!("{segment} stored whole, its partial copies removed"),
        || {
            let keys = moto::keys(&bucket);
            keys.contains(&whole) && !keys.iter().any(|k| k.starts_with(&partial_prefix))
        },
    );
    let (mode, _) = crate::copies::retention(&bucket, &format!("pitr/wal/00000001/{segment}.zst"));
    assert_eq!(mode, "GOVERNANCE");
    stop_stream(stream);
}
