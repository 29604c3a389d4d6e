//! `kasm-db backups check` as the real binary, on a real throwaway cluster with a directory
//! target and on a real S3-protocol server (moto_server): no backups is exit 1 with its own
//! reason; a fresh backup passes --max-age but fails --verified-within until `backups verify`
//! has run; --min-count; the --json shape; an old backup (its manifest's time moved back)
//! fails; a failed verification of the newest fails whatever is asked.

use crate::common::moto;

use crate::common::*;
use serde_json::Value;
use std::path::Path;

fn seeded_db() -> String {
    let url = fresh_db();
    psql(
        &url,
        "CREATE TABLE users (id int PRIMARY KEY, name text);
         INSERT INTO users SELECT i, 'user ' || i FROM generate_series(1, 100) i;",
    );
    url
}

fn backup(url: &str, to: &str, env: &[(&'static str, String)]) -> String {
    let r = run(kasm_db(&["backup", "--json", "--db", url, "--to", to]).envs(env.iter().cloned()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    json(&r)["id"].as_str().unwrap().to_string()
}

fn check(to: &str, flags: &[&str], env: &[(&'static str, String)]) -> Run {
    let mut args = vec!["backups", "check", "--from", to];
    args.extend_from_slice(flags);
    run(kasm_db(&args).envs(env.iter().cloned()))
}

fn check_json(to: &str, flags: &[&str], env: &[(&'static str, String)]) -> (i32, Value) {
    let mut f = vec!["--json"];
    f.extend_from_slice(flags);
    let r = check(to, &f, env);
    (r.code, json(&r))
}

fn reasons(v: &Value) -> Vec<String> {
    v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

/// Move backup `id`'s manifest time `hours` back, as if it had been made then.
fn age_manifest(dir: &Path, id: &str, hours: i64) {
    let path = dir.join(id).join("manifest.json");
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let created: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(m["created"].clone()).unwrap();
    m["created"] = serde_json::to_value(created - chrono::Duration::hours(hours)).unwrap();
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

#[test]
fn a_directory_target_from_no_backups_to_fresh_verified_few_and_old() {
    let url = seeded_db();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backups");
    std::fs::create_dir(&dir).unwrap();
    let to = dir.to_str().unwrap();

    // No backups: exit 1, one reason of its own, the Nagios-style line first.
    let r = check(to, &[], &[]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .starts_with("BACKUPS CRITICAL - there is no complete backup at this target"),
        "{}",
        r.stdout
    );
    let (code, v) = check_json(to, &[], &[]);
    assert_eq!(code, 1);
    assert_eq!(v["ok"], false);
    assert_eq!(reasons(&v), ["there is no complete backup at this target"]);
    assert_eq!(
        (v["count"].clone(), v["newest_id"].clone()),
        (0.into(), Value::Null)
    );
    assert_eq!(v["target"], to);

    // A fresh backup passes the default --max-age, fails --verified-within until verified.
    let id = backup(&url, to, &[]);
    let (code, v) = check_json(to, &[], &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["reasons"], serde_json::json!([]));
    assert_eq!(v["count"], 1);
    assert_eq!(v["newest_id"], id.as_str());
    assert!(v["newest_age_s"].as_i64().unwrap() >= 0);
    assert_eq!(v["last_verification"], Value::Null);
    assert_eq!(v["criteria"]["max_age_s"], 26 * 3600);
    assert_eq!(v["criteria"]["min_count"], 1);
    assert_eq!(v["criteria"]["verified_within_s"], Value::Null);
    // `size` shows the same verdict for the configured target.
    let r =
        run(kasm_db(&["size", "--json", "--no-record", "--db", &url]).env("KASM_DB_BACKUP_TO", to));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = json(&r);
    assert_eq!(s["backups"]["target"], to);
    assert_eq!(s["backups"]["verdict"]["ok"], true, "{s}");
    assert_eq!(s["backups"]["verdict"]["newest_id"], id.as_str());
    let r = run(kasm_db(&["size", "--no-record", "--db", &url]).env("KASM_DB_BACKUP_TO", to));
    assert!(
        r.stdout.contains(&format!(
            "backups at {to}: BACKUPS OK - 1 backup, newest {id}"
        )),
        "{}",
        r.stdout
    );
    let r = check(to, &["--max-age", "2h"], &[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stdout
            .starts_with(&format!("BACKUPS OK - 1 backup, newest {id} ")),
        "{}",
        r.stdout
    );
    let (code, v) = check_json(to, &["--verified-within", "8d"], &[]);
    assert_eq!(code, 1);
    assert_eq!(reasons(&v).len(), 1, "{v}");
    assert!(
        reasons(&v)[0].contains(&format!("{id} has not been verified")),
        "{v}"
    );
    assert_eq!(v["criteria"]["verified_within_s"], 8 * 86_400);
    let r = run(kasm_db(&["backups", "verify", "--from", to]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (code, v) = check_json(to, &["--verified-within", "8d"], &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["last_verification"]["backup"], id.as_str());
    assert_eq!(v["last_verification"]["ok"], true);
    assert_eq!(v["last_verification"]["check"], "checksum");

    // --min-count.
    let (code, v) = check_json(to, &["--min-count", "2"], &[]);
    assert_eq!(code, 1);
    assert_eq!(
        reasons(&v),
        ["1 complete backup, fewer than the minimum of 2"]
    );
    let id2 = backup(&url, to, &[]);
    let (code, v) = check_json(to, &["--min-count", "2"], &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["newest_id"], id2.as_str());
    assert_eq!(v["count"], 2);
    // The newest awaits its verification: the first's, minutes old, still counts.
    let (code, v) = check_json(to, &["--verified-within", "8d"], &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["last_verification"]["backup"], id.as_str());

    // Old: both backups made three days ago.
    age_manifest(&dir, &id, 72);
    age_manifest(&dir, &id2, 72);
    let (code, v) = check_json(to, &[], &[]);
    assert_eq!(code, 1);
    let rs = reasons(&v);
    assert_eq!(rs.len(), 1, "{rs:?}");
    assert!(
        rs[0].starts_with(&format!("the newest backup {id2} is 3d")),
        "{rs:?}"
    );
    assert!(rs[0].ends_with("old (max age 26h)"), "{rs:?}");
    assert!(v["newest_age_s"].as_i64().unwrap() >= 72 * 3600);
    let r =
        run(kasm_db(&["size", "--json", "--no-record", "--db", &url]).env("KASM_DB_BACKUP_TO", to));
    let s = json(&r);
    assert_eq!(s["backups"]["verdict"]["ok"], false, "{s}");
    assert_eq!(s["backups"]["verdict"]["reasons"][0], rs[0].as_str());
    let r = run(kasm_db(&["size", "--no-record", "--db", &url]).env("KASM_DB_BACKUP_TO", to));
    assert!(
        r.stdout.contains("BACKUPS CRITICAL - the newest backup"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(&format!("  - backups: {}", rs[0])),
        "{}",
        r.stdout
    );
    assert_eq!(check(to, &["--max-age", "4d"], &[]).code, 0);

    // A failed verification of the newest fails the check whatever is asked.
    std::fs::write(dir.join(&id2).join("dump.gz"), b"corrupt").unwrap();
    let r = run(kasm_db(&["backups", "verify", "--from", to]));
    assert_eq!(r.code, 1, "{}", r.stderr);
    let r = check(to, &["--max-age", "4d"], &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.starts_with(&format!(
            "BACKUPS CRITICAL - the newest backup {id2} failed its verification"
        )),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("FAILED:"), "{}", r.stdout);
}

#[test]
fn usage_errors_are_exit_2_not_a_failed_check() {
    // No target at all: a usage error (2), not a failed check.
    let r = run(kasm_db(&["backups", "check"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = run(kasm_db(&[
        "backups",
        "check",
        "--from",
        "/tmp",
        "--max-age",
        "26",
    ]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no unit"), "{}", r.stderr);
}

#[test]
fn an_s3_target_is_checked_the_same_way() {
    let url = seeded_db();
    let bucket = moto::bucket();
    let to = format!("s3://{bucket}/kasm/prod");
    let env = moto::env();
    let (code, v) = check_json(&to, &[], &env);
    assert_eq!(code, 1, "{v}");
    assert_eq!(reasons(&v), ["there is no complete backup at this target"]);
    assert_eq!(v["target"], to.as_str());
    let id = backup(&url, &to, &env);
    let (code, v) = check_json(&to, &["--verified-within", "1d"], &env);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["newest_id"], id.as_str());
    let r = run(kasm_db(&["backups", "verify", "--from", &to]).envs(env.iter().cloned()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (code, v) = check_json(&to, &["--verified-within", "1d", "--max-age", "1h"], &env);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["ok"], true);
    // A tiny max age after a short wait: too old. (The point: the backup ages past 1 s.)
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (code, v) = check_json(&to, &["--max-age", "1s"], &env);
    assert_eq!(code, 1, "{v}");
    assert!(reasons(&v)[0].contains("(max age 1s)"), "{v}");
}

/// `kasm-db serve` on a free loopback port with `env`, killed on drop.
struct Serve {
    child: std::process::Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl Serve {
    fn start(url: &str, env: &[(&str, &str)]) -> Serve {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = kasm_db(&["serve", "--db", url])
            .env("KASM_DB_SERVER_LISTEN", "127.0.0.1:0")
            .env("KASM_DB_SERVER_TOKEN", "t0ken-for-backups-check")
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let mut s = Serve {
            child,
            port: 0,
            log,
        };
        let path = s.log.path().to_path_buf();
        s.port = crate::common::serve::wait_bound(&mut s.child, &path);
        s.wait_for("kasm_db_database_up 1", |m| {
            m.contains("kasm_db_database_up 1")
        });
        s
    }

    fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return String::new();
        };
        let _ = write!(
            c,
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        );
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        out
    }

    /// Scrape until `pred` holds (20 s at most); the last scrape.
    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            // Health makes the database's readiness show in the metrics.
            let _ = self.get_health();
            let m = self.metrics();
            if pred(&m) {
                return m;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never saw {what}:\n{m}\n{}",
                std::fs::read_to_string(self.log.path()).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    fn get_health(&self) -> Option<()> {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        write!(
            c,
            "GET /api/__healthcheck HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let _ = c.read_to_string(&mut String::new());
        Some(())
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the series `name{labels}` in a scrape.
fn gauge(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_export_the_newest_backup_age_and_its_last_verification_per_target() {
    let url = seeded_db();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backups");
    std::fs::create_dir(&dir).unwrap();
    let to = dir.to_str().unwrap();
    let id = backup(&url, to, &[]);
    let created: chrono::DateTime<chrono::Utc> = serde_json::from_str::<Value>(
        &std::fs::read_to_string(dir.join(&id).join("manifest.json")).unwrap(),
    )
    .map(|m| serde_json::from_value(m["created"].clone()).unwrap())
    .unwrap();
    let t = format!("{{target=\"{to}\"}}");
    let series = |name: &str| format!("kasm_db_{name}{t}");

    // Never verified: age and count, the check ok, no verification gauges.
    let s = Serve::start(&url, &[("KASM_DB_BACKUP_TO", to)]);
    let m = s.wait_for("the backup gauges", |m| m.contains("kasm_db_backup_count{"));
    assert_eq!(gauge(&m, &series("backup_count")), Some(1.0), "{m}");
    assert_eq!(gauge(&m, &series("backup_listing_ok")), Some(1.0), "{m}");
    assert_eq!(gauge(&m, &series("backup_check_ok")), Some(1.0), "{m}");
    assert_eq!(
        gauge(&m, &series("backup_newest_timestamp_seconds")),
        Some(created.timestamp() as f64),
        "{m}"
    );
    let age = gauge(&m, &series("backup_newest_age_seconds")).unwrap();
    assert!((0.0..26.0 * 3600.0).contains(&age), "{m}");
    assert!(!m.contains("kasm_db_backup_last_verification_ok"), "{m}");
    assert!(m.contains("# TYPE kasm_db_backup_newest_age_seconds gauge"));
    drop(s);

    // A scheduled verify every second: its result shows at the next scrape.
    let s = Serve::start(
        &url,
        &[
            ("KASM_DB_BACKUP_TO", to),
            ("KASM_DB_SCHEDULE_VERIFY", "* * * * * *"),
        ],
    );
    let ok = series("backup_last_verification_ok");
    let m = s.wait_for("a passed verification", |m| gauge(m, &ok) == Some(1.0));
    let at = gauge(&m, &series("backup_last_verification_timestamp_seconds")).unwrap();
    assert!(at >= created.timestamp() as f64, "{m}");
    // The backup corrupted: the next verify fails, and so does the check.
    std::fs::write(dir.join(&id).join("dump.gz"), b"corrupt").unwrap();
    let m = s.wait_for("a failed verification", |m| gauge(m, &ok) == Some(0.0));
    assert_eq!(gauge(&m, &series("backup_check_ok")), Some(0.0), "{m}");
    assert!(!m.contains("t0ken-for-backups-check") && !m.contains("postgres://"));
}

/// With `--json`, a failed command's stdout is one document `{"ok": false, "error",
/// "exit_code"}`; returns the error.
fn failure_document(r: &Run, code: i32) -> String {
    assert_eq!(r.code, code, "{}\n{}", r.stdout, r.stderr);
    let v = json(r);
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["exit_code"], code, "{v}");
    v["error"].as_str().unwrap().to_string()
}

/// Every command that reads a target, with `--json`, against `from` (and `env`).
fn readers<'a>(from: &'a str, other: &'a str, db: &'a str) -> Vec<Vec<&'a str>> {
    vec![
        vec!["backups", "list", "--from", from],
        vec!["backups", "check", "--from", from],
        vec!["backups", "verify", "latest", "--from", from],
        vec!["backups", "prune", "--keep-last", "1", "--from", from],
        vec!["backups", "copy", "latest", "--from", from, "--to", other],
        vec!["restore", "--from", from, "--target", db],
    ]
}

/// Issue 26: a backup directory that does not exist is an error naming it (exit 75, and the
/// `--json` failure document), never "no backups"; an empty one is "no backups"; `size` shows
/// it as its backups' failed check; `backup --to` a missing directory creates it.
#[test]
fn a_missing_directory_is_an_error_never_no_backups() {
    let url = seeded_db();
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("not-mounted");
    let other = tmp.path().join("other");
    let (from, to) = (missing.to_str().unwrap(), other.to_str().unwrap());
    for mut args in readers(from, to, &url) {
        args.push("--json");
        let r = run(kasm_db(&args));
        let e = failure_document(&r, 75);
        assert!(
            e.contains(from) && e.contains("does not exist"),
            "{args:?}: {e}"
        );
        assert!(r.stderr.contains(from), "{args:?}: {}", r.stderr);
    }
    assert!(!other.exists(), "copied from nowhere");
    // size: the backups' verdict is a failed check naming the target, size itself runs.
    let r = run(kasm_db(&["size", "--json", "--db", &url]).env("KASM_DB_BACKUP_TO", from));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = json(&r);
    assert!(v["backups"]["verdict"].is_null(), "{v}");
    assert!(
        v["backups"]["error"].as_str().unwrap().contains(from),
        "{v}"
    );

    // An existing, empty directory: no backups (list exit 0, check exit 1 with its reason).
    std::fs::create_dir(&other).unwrap();
    let r = run(kasm_db(&["backups", "list", "--json", "--from", to]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&r), serde_json::json!([]));
    let (code, v) = check_json(to, &[], &[]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(reasons(&v), ["there is no complete backup at this target"]);

    // backup --to a directory that is not there yet creates it, as it always has.
    let id = backup(&url, from, &[]);
    let r = run(kasm_db(&["backups", "list", "--json", "--from", from]));
    assert_eq!(json(&r)[0]["id"], id.as_str());

    // The database down: size --json still prints one document, without the password.
    let down = "postgres://kasm:pw-never-shown@127.0.0.1:1/kasm";
    let r =
        run(kasm_db(&["size", "--json", "--db", down])
            .env("KASM_DB_DATABASE_CONNECT_ATTEMPTS", "1"));
    let e = failure_document(&r, 75);
    assert!(e.contains("127.0.0.1:1"), "{e}");
    assert!(
        !r.stdout.contains("pw-never-shown") && !r.stderr.contains("pw-never-shown"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    // A usage error with --json on the command line: the document too (exit 2).
    let r = run(kasm_db(&["backups", "lisst", "--json"]));
    assert!(failure_document(&r, 2).contains("lisst"));
}

/// Issue 26 on S3 (moto): a bucket that does not exist (NoSuchBucket) is the same error.
#[test]
fn a_missing_bucket_is_an_error_never_no_backups() {
    let url = seeded_db();
    let env = moto::env();
    let from = "s3://kasm-no-such-bucket-26/prod";
    let tmp = tempfile::tempdir().unwrap();
    for mut args in readers(from, tmp.path().to_str().unwrap(), &url) {
        args.push("--json");
        let r = run(kasm_db(&args).envs(env.iter().cloned()));
        let e = failure_document(&r, 75);
        assert!(
            e.contains("kasm-no-such-bucket-26") && e.contains("NoSuchBucket"),
            "{args:?}: {e}"
        );
    }
    let r =
        run(kasm_db(&["backup", "--json", "--db", &url, "--to", from]).envs(env.iter().cloned()));
    assert!(failure_document(&r, 75).contains("create the bucket"));
}

/// Issue 26: a verification record that cannot be read is never "not verified": `backups
/// check` fails on it whatever is asked, and `backups list` says why.
#[test]
fn an_unreadable_verification_record_fails_the_check() {
    let url = seeded_db();
    let tmp = tempfile::tempdir().unwrap();
    let to = tmp.path().to_str().unwrap();
    let id = backup(&url, to, &[]);
    let r = run(kasm_db(&["backups", "verify", &id, "--from", to]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (code, _) = check_json(to, &[], &[]);
    assert_eq!(code, 0);
    std::fs::write(
        tmp.path().join(&id).join("verified.json"),
        b"{\"at\": trunc",
    )
    .unwrap();
    let (code, v) = check_json(to, &[], &[]);
    assert_eq!(code, 1, "{v}");
    let why = reasons(&v).join("; ");
    assert!(
        why.contains("verified.json") && why.contains("unknown"),
        "{why}"
    );
    let r = run(kasm_db(&["backups", "list", "--json", "--from", to]));
    assert!(
        json(&r)[0]["verification_unreadable"].is_string(),
        "{}",
        r.stdout
    );
}

/// With `backup.wal` on, the slot guard that cannot be made: a database that is down (nothing
/// listening) is a note and the backups' verdict stands; one that answers and refuses (here a
/// database that does not exist) fails the check, naming the slot, never passes.
#[test]
fn a_slot_guard_that_cannot_be_made_fails_unless_the_database_is_down() {
    let url = seeded_db();
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().to_str().unwrap();
    backup(&url, to, &[]);
    let wal = [("KASM_DB_BACKUP_WAL", "true".to_string())];

    let down = format!("postgres://postgres@127.0.0.1:{}/kasm", free_port());
    let (code, v) = check_json(to, &["--db", &down], &wal);
    assert_eq!(code, 0, "{v}");
    assert!(
        v["wal_slot"]["advice"][0]
            .as_str()
            .is_some_and(|a| a.contains("was not checked")),
        "{v}"
    );

    let (base, _) = url.rsplit_once('/').unwrap();
    let refused = format!("{base}/no_such_database_here");
    let (code, v) = check_json(to, &["--db", &refused], &wal);
    assert_eq!(code, 1, "{v}");
    assert!(
        reasons(&v)
            .iter()
            .any(|r| r.contains("replication slot kasm_db could not be checked")),
        "{v}"
    );
}
