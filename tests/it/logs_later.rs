//! Failover details of `restore` on real clusters (primary = source, standby = target): Kasm's
//! schema revision (a differing `alembic_version` in the target database is refused without
//! `--force`, naming both; same revision or a fresh database proceeds), `--logs-later` on
//! Kasm's plain `logs` (everything back, counts as in the manifest, the state record gone,
//! durations reported) and on kasm-db's partitioned one interrupted by `kill -9` after the swap
//! (through the documented pause hook), with rows ingested meanwhile, then finished with
//! `--resume`: every backed-up row exactly once, the new rows kept. And the restore test's
//! duration recorded in `verified.json` and exported by `serve` on `/metrics`.

use crate::common::kasm;

use crate::common::*;
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const KASMAPP: &str = "DO $$ BEGIN CREATE ROLE kasmapp LOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$";

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

fn primary(db: &str, sql: &str) -> String {
    with_primary(|c| c.psql(db, sql)).unwrap_or_else(|e| panic!("{e}"))
}

fn standby(db: &str, sql: &str) -> String {
    with_standby(|c| c.psql(db, sql)).unwrap_or_else(|e| panic!("{e}"))
}

/// Kasm's database on the primary (as in tests/it/kasm_shaped.rs); its name.
fn kasm_database() -> String {
    let name = unique("kasm");
    with_primary(|c| {
        c.psql("postgres", KASMAPP)?;
        c.psql("postgres", &format!("CREATE DATABASE {name} OWNER kasmapp"))?;
        c.psql(&name, &format!("SET ROLE kasmapp; {}", kasm::SCHEMA_SQL))
    })
    .unwrap_or_else(|e| panic!("{e}"));
    with_standby(|c| c.psql("postgres", KASMAPP)).unwrap();
    name
}

fn backup(url: &str, to: &Path) -> String {
    let r = run(kasm_db(&[
        "backup",
        "--json",
        "--db",
        url,
        "--to",
        to.to_str().unwrap(),
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    json(&r)["id"].as_str().unwrap().to_string()
}

fn restore_args<'a>(
    from: &'a Path,
    id: &'a str,
    target: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "restore",
        "--json",
        "--from",
        from.to_str().unwrap(),
        "--backup",
        id,
        "--target",
        target,
    ];
    args.extend_from_slice(extra);
    args
}

fn restore(from: &Path, id: &str, target: &str, extra: &[&str]) -> Run {
    run(kasm_db(&restore_args(from, id, target, extra)))
}

fn manifest(dir: &Path, id: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join(id).join("manifest.json")).unwrap()).unwrap()
}

/// Every manifest table's row count in `db` on the standby equals the manifest's.
fn counts_match(m: &Value, db: &str) {
    for t in m["tables"].as_array().unwrap() {
        let rel = format!(
            "\"{}\".\"{}\"",
            t["schema"].as_str().unwrap(),
            t["table"].as_str().unwrap()
        );
        assert_eq!(
            standby(db, &format!("SELECT count(*) FROM ONLY {rel}")),
            t["rows"].as_i64().unwrap().to_string(),
            "{rel}"
        );
    }
}

#[test]
fn a_differing_alembic_version_is_refused_without_force() {
    let db = kasm_database();
    let url = with_primary(|c| c.url(&db));
    let dir = tempfile::tempdir().unwrap();
    let id = backup(&url, dir.path());
    let target = unique("kasm");
    let target_url = with_standby(|c| c.url(&target));
    // A fresh database: nothing to compare with.
    let r = restore(dir.path(), &id, &target_url, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let j = json(&r);
    assert_eq!(j["alembic_version"], kasm::ALEMBIC);
    assert_eq!(j["target_alembic_version"], Value::Null);
    // The same revision: proceeds.
    let r = restore(dir.path(), &id, &target_url, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(json(&r)["target_alembic_version"], kasm::ALEMBIC);
    // The target was upgraded by a Kasm release since: refused, naming both, target unchanged.
    standby(
        &target,
        "UPDATE alembic_version SET version_num = '0a9b8c7d6e5f'",
    );
    standby(&target, "CREATE TABLE after_upgrade (v int)");
    let r = restore(dir.path(), &id, &target_url, &[]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(kasm::ALEMBIC)
            && r.stderr.contains("0a9b8c7d6e5f")
            && r.stderr.contains("--force")
            && r.stderr.contains("not ordered"),
        "{}",
        r.stderr
    );
    assert_eq!(
        standby(&target, "SELECT version_num FROM alembic_version"),
        "0a9b8c7d6e5f"
    );
    assert_eq!(
        standby(&target, "SELECT to_regclass('after_upgrade') IS NOT NULL"),
        "t"
    );
    // A target without the table proceeds.
    standby(&target, "DROP TABLE alembic_version");
    let r = restore(dir.path(), &id, &target_url, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    // --force restores across revisions, and says what it replaced.
    standby(
        &target,
        "UPDATE alembic_version SET version_num = 'ffee00112233'",
    );
    let r = restore(dir.path(), &id, &target_url, &["--force"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let j = json(&r);
    assert_eq!(j["target_alembic_version"], "ffee00112233");
    assert!(j["warnings"].to_string().contains("ffee00112233"), "{j}");
    assert_eq!(
        standby(&target, "SELECT version_num FROM alembic_version"),
        kasm::ALEMBIC
    );
}

#[test]
fn logs_later_brings_kasms_database_back_then_its_plain_logs() {
    let db = kasm_database();
    let url = with_primary(|c| c.url(&db));
    let dir = tempfile::tempdir().unwrap();
    let id = backup(&url, dir.path());
    let target = unique("kasm");
    let r = restore(
        dir.path(),
        &id,
        &with_standby(|c| c.url(&target)),
        &["--logs-later", "--jobs", "2"],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let j = json(&r);
    assert_eq!(j["logs_later"]["tables"], 1, "{j}");
    assert_eq!(j["logs_later"]["rows"], kasm::LOGS, "{j}");
    let d = &j["durations"];
    let (swap, logs, total) = (
        d["until_swap_s"].as_f64().unwrap(),
        d["logs_s"].as_f64().unwrap(),
        d["total_s"].as_f64().unwrap(),
    );
    assert!(
        swap > 0.0 && logs > 0.0 && swap + logs <= total + 0.001,
        "{d}"
    );
    assert_eq!(j["duration_s"].as_f64(), Some(total));
    counts_match(&manifest(dir.path(), &id), &target);
    for t in kasm::TABLES.iter().chain(["logs"].iter()) {
        assert_eq!(
            kasm::digest(|q| standby(&target, q), t),
            kasm::digest(|q| primary(&db, q), t),
            "table {t} differs"
        );
    }
    assert_eq!(
        kasm::logs_definition(|q| standby(&target, q)),
        kasm::logs_definition(|q| primary(&db, q))
    );
    // The state record is gone once everything is loaded; nothing to resume.
    assert_eq!(
        standby(&target, "SELECT to_regnamespace('kasm_db_restore') IS NULL"),
        "t"
    );
    let r = restore(
        dir.path(),
        "latest",
        &with_standby(|c| c.url(&target)),
        &["--logs-later", "--resume"],
    );
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("nothing to resume"), "{}", r.stderr);
}

/// `n` NDJSON records, every third DEBUG, tagged `tag`.
fn records(n: usize, tag: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let level = if i % 3 == 0 { "DEBUG" } else { "INFO" };
        writeln!(
            out,
            r#"{{"levelname":"{level}","message":"{tag} {i}","application":"kasm_api","host":"web1"}}"#
        )
        .unwrap();
    }
    out
}

fn ingest(url: &str, input: &[u8]) {
    let mut child = kasm_db(&["ingest", "--json", "--db", url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_interrupted_logs_load_is_resumed_each_row_once_and_new_rows_kept() {
    let url = fresh_db();
    let r = run(kasm_db(&["migrate", "--db", &url]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    psql(
        &url,
        "CREATE TABLE users (id int PRIMARY KEY); INSERT INTO users SELECT generate_series(1, 500)",
    );
    ingest(&url, &records(9000, "backed-up"));
    let dir = tempfile::tempdir().unwrap();
    let id = backup(&url, dir.path());
    let m = manifest(dir.path(), &id);
    let backed_up: i64 = psql(&url, "SELECT count(*) FROM logs").parse().unwrap();
    assert_eq!(backed_up, 9000);

    // Pause after the first logs partition, then kill -9 once the swap has happened.
    let target = unique("kl");
    let target_url = with_standby(|c| c.url(&target));
    let mut child = kasm_db(&restore_args(
        dir.path(),
        &id,
        &target_url,
        &["--logs-later", "--jobs", "1"],
    ))
    .env("KASMDB_TEST_LOGS_LATER_PAUSE_AFTER", "1")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(dir.path().join("restore.err")).unwrap())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let loaded = "SELECT CASE WHEN to_regclass('kasm_db_restore.logs_later') IS NULL THEN -1
                  ELSE (SELECT count(loaded_at) FROM kasm_db_restore.logs_later) END";
    loop {
        let exists = standby(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{target}'"),
        );
        if exists == "1" && standby(&target, loaded) == "1" {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "restore ended before the pause: {}",
            std::fs::read_to_string(dir.path().join("restore.err")).unwrap()
        );
        assert!(Instant::now() < deadline, "the logs phase never paused");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The application is back: it ingests meanwhile, into the same live partitions.
    ingest(&target_url, &records(50, "after-swap"));
    child.kill().unwrap();
    child.wait().unwrap();
    let pending: i64 = standby(
        &target,
        "SELECT count(*) FROM kasm_db_restore.logs_later WHERE loaded_at IS NULL",
    )
    .parse()
    .unwrap();
    assert!(pending >= 1, "nothing left to resume");

    // Replacing it by accident is refused, saying how to finish.
    let r = restore(dir.path(), &id, &target_url, &[]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("--logs-later --resume"), "{}", r.stderr);

    let r = restore(
        dir.path(),
        "latest",
        &target_url,
        &["--logs-later", "--resume"],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let j = json(&r);
    assert_eq!(j["backup"], id.as_str());
    assert_eq!(j["logs_later"]["tables"].as_i64(), Some(pending), "{j}");
    assert!(j["durations"]["logs_s"].as_f64().unwrap() > 0.0, "{j}");
    assert_eq!(
        standby(&target, "SELECT to_regnamespace('kasm_db_restore') IS NULL"),
        "t"
    );
    // Every backed-up row exactly once, the new ones kept.
    assert_eq!(
        standby(
            &target,
            "SELECT count(*) || ' ' || count(DISTINCT log_id) FROM logs WHERE message LIKE 'backed-up %'"
        ),
        format!("{backed_up} {backed_up}")
    );
    assert_eq!(
        standby(
            &target,
            "SELECT count(*) FROM logs WHERE message LIKE 'after-swap %'"
        ),
        "50"
    );
    assert_eq!(standby(&target, "SELECT count(*) FROM users"), "500");
    // The logs tables hold the manifest's rows plus only the new ones.
    let in_manifest: i64 = m["tables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["table"].as_str().unwrap().starts_with("logs"))
        .map(|t| t["rows"].as_i64().unwrap())
        .sum();
    assert_eq!(in_manifest, backed_up);
    let now: i64 = standby(&target, "SELECT count(*) FROM logs")
        .parse()
        .unwrap();
    assert_eq!(now, backed_up + 50);
}

#[test]
fn the_restore_tests_duration_is_recorded_beside_the_backup() {
    let db = kasm_database();
    let url = with_primary(|c| c.url(&db));
    let dir = tempfile::tempdir().unwrap();
    let id = backup(&url, dir.path());
    let r = verify_scratch(dir.path(), &id, |_| {});
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(&id).join("verified.json")).unwrap())
            .unwrap();
    assert_eq!(
        (v["check"].as_str(), v["ok"].as_bool()),
        (Some("restore"), Some(true))
    );
    let secs = v["duration_s"].as_f64().unwrap();
    assert!(secs > 0.0, "{v}");
    assert_eq!(json(&r)["duration_s"].as_f64(), Some(secs));

    // serve exports it as the last measured recovery time of its backup.to.
    let port = free_port();
    let mut serve = kasm_db(&["serve", "--db", &fresh_db()])
        .env("KASM_DB_SERVER_LISTEN", format!("127.0.0.1:{port}"))
        .env("KASM_DB_SERVER_TOKEN", "t0ken-for-the-metrics-test")
        .env("KASM_DB_BACKUP_TO", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let series = format!(
        "kasm_db_restore_last_duration_seconds{{target=\"{}\"}} ",
        dir.path().display()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let value = loop {
        if let Some(v) = metrics(port)
            .lines()
            .find_map(|l| l.strip_prefix(&series)?.parse::<f64>().ok())
        {
            break v;
        }
        assert!(serve.try_wait().unwrap().is_none(), "serve exited");
        assert!(Instant::now() < deadline, "{}", metrics(port));
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = serve.kill();
    let _ = serve.wait();
    assert_eq!(value, secs);
}

/// The body of `GET /metrics` on `port` (empty while nothing listens).
fn metrics(port: u16) -> String {
    use std::io::Read;
    let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    out
}

/// The restoring role of the fail-closed test on the standby: CREATEDB, not a superuser.
const RESTORER: &str = "kdb_restorer";

fn restorer_password() -> &'static str {
    static PW: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PW.get_or_init(|| format!("restorer-{}", uuid::Uuid::new_v4().simple()))
}

/// The restoring role's URL of database `db` on the standby (with its password).
fn restorer_url(db: &str) -> String {
    with_standby(|c| {
        c.psql(
            "postgres",
            &format!(
                "DO $$ BEGIN CREATE ROLE {RESTORER} LOGIN CREATEDB PASSWORD '{}';
                 EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
                restorer_password()
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        format!(
            "postgres://{RESTORER}:{}@127.0.0.1:{}/{db}",
            restorer_password(),
            c.port
        )
    })
}

/// A restore that must refuse: exit 1, the target untouched (same oid, `marker` still there),
/// no new or kept database of it left, no password shown; stderr returned.
fn refused(dir: &Path, id: &str, target: &str, url: &str) -> String {
    let oid = standby(
        "postgres",
        &format!("SELECT oid FROM pg_database WHERE datname = '{target}'"),
    );
    let count = standby(
        "postgres",
        &format!("SELECT count(*) FROM pg_database WHERE datname LIKE '{target}%'"),
    );
    let r = restore(dir, id, url, &["--no-owner"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    // --json: the failure document on stdout.
    let doc = json(&r);
    assert_eq!(
        (doc["ok"].as_bool(), doc["exit_code"].as_i64()),
        (Some(false), Some(1)),
        "{doc}"
    );
    assert!(
        !r.stdout.contains(restorer_password()) && !r.stderr.contains(restorer_password()),
        "password shown:\n{}\n{}",
        r.stdout,
        r.stderr
    );
    assert!(
        r.stderr.contains("--force") && r.stderr.contains(&format!("{target} is unchanged")),
        "{}",
        r.stderr
    );
    assert_eq!(
        standby(
            "postgres",
            &format!("SELECT oid FROM pg_database WHERE datname = '{target}'")
        ),
        oid
    );
    assert_eq!(
        standby(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname LIKE '{target}%'")
        ),
        count
    );
    r.stderr
}

/// Issue 26: a check that cannot be made refuses. A target whose `alembic_version` the
/// restoring role may not read, one whose unfinished `--logs-later` state it may not read, and
/// one it may not connect to are refused without `--force` (naming what and why, the target
/// unchanged) and replaced with it (saying so in `warnings`).
#[test]
fn a_check_that_cannot_be_made_refuses_without_force() {
    let source = fresh_db();
    psql(
        &source,
        &format!(
            "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
             INSERT INTO alembic_version VALUES ('{}');
             CREATE TABLE settings (k text PRIMARY KEY, v text);
             INSERT INTO settings SELECT 'k' || i, 'v' || i FROM generate_series(1, 50) i;",
            kasm::ALEMBIC
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let id = backup(&source, dir.path());
    let target = unique("kasm");
    let url = restorer_url(&target);
    let r = restore(dir.path(), &id, &url, &["--no-owner"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);

    // alembic_version exists but may not be read: refused, never "no table".
    standby(
        &target,
        &format!(
            "REVOKE ALL ON alembic_version FROM {RESTORER}, PUBLIC; CREATE TABLE marker (v int)"
        ),
    );
    let e = refused(dir.path(), &id, &target, &url);
    assert!(
        e.contains("alembic_version") && e.contains("permission denied"),
        "{e}"
    );
    assert_eq!(
        standby(&target, "SELECT to_regclass('marker') IS NOT NULL"),
        "t"
    );
    let r = restore(dir.path(), &id, &url, &["--no-owner", "--force"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let w = json(&r)["warnings"].to_string();
    assert!(
        w.contains("alembic_version") && w.contains("permission denied"),
        "{w}"
    );

    // An unfinished --logs-later state it may not read (a schema without USAGE): refused.
    standby(
        &target,
        "CREATE SCHEMA kasm_db_restore; CREATE TABLE kasm_db_restore.logs_later (dump_id int);
         CREATE TABLE marker (v int)",
    );
    let e = refused(dir.path(), &id, &target, &url);
    assert!(
        e.contains("kasm_db_restore")
            && e.contains("permission denied")
            && e.contains("--logs-later"),
        "{e}"
    );
    standby(&target, "DROP SCHEMA kasm_db_restore CASCADE");

    // A target database it may not connect to: refused, saying why.
    standby(
        "postgres",
        &format!("REVOKE CONNECT ON DATABASE {target} FROM PUBLIC, {RESTORER}"),
    );
    let e = refused(dir.path(), &id, &target, &url);
    assert!(
        e.contains(&format!("the target database {target}")) && e.contains("CONNECT"),
        "{e}"
    );
    let r = restore(dir.path(), &id, &url, &["--no-owner", "--force"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let j = json(&r);
    assert!(j["warnings"].to_string().contains("CONNECT"), "{j}");
    assert_eq!(standby(&target, "SELECT count(*) FROM settings"), "50");
}
