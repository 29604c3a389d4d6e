//! Foundation: migrations on a real cluster, the harness with two clusters, config and exit
//! codes through the real binary, and passwords never printed.

use crate::common::*;
use kasm_db::db::migrate::MIGRATIONS;

#[test]
fn migrate_twice_is_idempotent() {
    let url = fresh_db();
    let first = run(kasm_db(&["migrate", "--json", "--db", &url]));
    assert_eq!(first.code, 0, "{}", first.stderr);
    let v: serde_json::Value = serde_json::from_str(&first.stdout).unwrap();
    let all: Vec<String> = MIGRATIONS
        .iter()
        .map(|m| format!("{:04}_{}", m.version, m.name))
        .collect();
    assert_eq!(v["applied"], serde_json::json!(all));
    assert_eq!(v["current"], serde_json::json!(all.last().unwrap()));
    let second = run(kasm_db(&["--json", "--db", &url, "migrate"]));
    assert_eq!(second.code, 0, "{}", second.stderr);
    let v: serde_json::Value = serde_json::from_str(&second.stdout).unwrap();
    assert_eq!(v["applied"], serde_json::json!([]));
    // The relation is partitioned by class, each class by range, with no DEFAULT partition.
    let parts = psql(
        &url,
        "SELECT string_agg(c.relname || ':' || pg_get_expr(c.relpartbound, c.oid), ' ' ORDER BY c.relname)
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'logs'::regclass",
    );
    assert!(
        parts.contains("logs_debug:FOR VALUES IN ('DEBUG')"),
        "{parts}"
    );
    assert!(
        parts.contains("logs_logs:FOR VALUES IN ('INFO', 'WARNING', 'ERROR', 'CRITICAL')"),
        "{parts}"
    );
    assert!(!parts.contains("DEFAULT"), "{parts}");
}

#[test]
fn migrate_refuses_a_logs_table_it_did_not_create() {
    let url = fresh_db();
    // Kasm's own database has a plain `logs` table.
    psql(&url, "CREATE TABLE logs (log_id uuid, message text)");
    let r = run(kasm_db(&["migrate", "--db", &url]));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("public.logs") && r.stderr.contains("kasm_logs"),
        "{}",
        r.stderr
    );
    // Untouched, and another schema works.
    assert_eq!(
        psql(
            &url,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'logs'"
        ),
        "2"
    );
    let r = run(kasm_db(&["migrate", "--db", &url]).env("KASM_DB_DATABASE_SCHEMA", "kasmdb"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        psql(&url, "SELECT to_regclass('kasmdb.logs') IS NOT NULL"),
        "t"
    );
}

#[test]
fn concurrent_migrates_do_not_interleave() {
    let url = fresh_db();
    let children: Vec<_> = (0..4)
        .map(|_| {
            kasm_db(&["migrate", "--db", &url])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        psql(&url, "SELECT count(*) FROM kasm_db_migrations"),
        MIGRATIONS.len().to_string()
    );
}

#[test]
fn harness_runs_two_clusters() {
    let p = with_primary(|c| (c.port, c.psql("postgres", "SHOW port").unwrap()));
    let s = with_standby(|c| (c.port, c.psql("postgres", "SHOW port").unwrap()));
    assert_ne!(p.0, s.0);
    assert_eq!(p.1, p.0.to_string());
    assert_eq!(s.1, s.0.to_string());
}

#[test]
fn unreachable_database_exits_75_without_the_password() {
    // A port nothing listens on.
    let port = free_port();
    let url = format!("postgres://kasm:hunter2-secret@127.0.0.1:{port}/x");
    let r = run(kasm_db(&["migrate", "--db", &url]).env("KASM_DB_DATABASE_CONNECT_ATTEMPTS", "2"));
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(r.stderr.contains("after 2 attempts"), "{}", r.stderr);
    assert!(!r.stderr.contains("hunter2"), "{}", r.stderr);
}

#[test]
fn wrong_password_fails_without_printing_it() {
    let url = fresh_db();
    let bad = url.replacen("pw-", "wrong-pw-", 1);
    let r = run(kasm_db(&["migrate", "--db", &bad]));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("password authentication failed"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("wrong-pw-"), "{}", r.stderr);
}

#[test]
fn libpq_environment_is_honoured() {
    let url = fresh_db();
    let (port, pw, db) = with_primary(|c| {
        (
            c.port,
            c.password.expose().to_string(),
            url.rsplit('/').next().unwrap().to_string(),
        )
    });
    let r = run(kasm_db(&["migrate", "--json"])
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", port.to_string())
        .env("PGUSER", "postgres")
        .env("PGPASSWORD", &pw)
        .env("PGDATABASE", &db)
        .env("PGSSLMODE", "disable"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("0001_logs"));
}

#[test]
fn bad_config_is_exit_2_naming_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kasm-db.toml");
    std::fs::write(&path, "[retention]\ndebug = \"4 hours\"\n").unwrap();
    let r = run(kasm_db(&["migrate", "--config", path.to_str().unwrap()]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("kasm-db.toml") && r.stderr.contains("4 hours"),
        "{}",
        r.stderr
    );
    std::fs::write(&path, "[database]\nurll = \"x\"\n").unwrap();
    let r = run(kasm_db(&["migrate", "--config", path.to_str().unwrap()]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("urll"), "{}", r.stderr);
    let r = run(kasm_db(&["migrate"]).env("KASM_DB_RETENTION_LOGS", "forever"));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("KASM_DB_RETENTION_LOGS"), "{}", r.stderr);
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    assert_eq!(run(kasm_db(&["no-such-command"])).code, 2);
    assert_eq!(run(kasm_db(&["purge", "--bogus"])).code, 2);
    let h = run(kasm_db(&["--help"]));
    assert_eq!(h.code, 0);
    for cmd in [
        "migrate",
        "ingest",
        "serve",
        "purge",
        "forward",
        "backup",
        "backups",
        "restore",
        "size",
        "plan",
        "vacuum",
        "demo",
        "report",
        "completions",
        "man",
    ] {
        assert!(h.stdout.contains(cmd), "--help lacks {cmd}");
    }
    assert!(h.stdout.contains("Exit codes"));
}

#[test]
fn completions_and_man_page_generate() {
    for shell in ["bash", "zsh", "fish"] {
        let r = run(kasm_db(&["completions", shell]));
        assert_eq!(r.code, 0);
        assert!(r.stdout.contains("backups"), "{shell}");
    }
    let r = run(kasm_db(&["man"]));
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains(".TH") && r.stdout.contains("kasm-db"));
}

/// `demo` honours `--json` (the stages' results, one document on stdout, the point-in-time
/// restore's among them) and shows one line per stage on stderr, without the operations' INFO lines or the WARNs its cap stage provokes;
/// `--config` and `--db` on its command line are refused (exit 2), with `--json` as the failure
/// document.
#[test]
fn demo_prints_its_stages_as_json_and_refuses_config_and_db() {
    let r = run(kasm_db(&["demo", "--db", "postgres://127.0.0.1:1/x"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("makes its own"), "{}", r.stderr);
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), "not = [valid").unwrap();
    let r = run(kasm_db(&[
        "demo",
        "--json",
        "--config",
        bad.path().to_str().unwrap(),
    ]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (v["ok"].clone(), v["exit_code"].clone()),
        (false.into(), 2.into())
    );
    assert!(v["error"].as_str().unwrap().contains("--config"), "{v}");

    let r = run(kasm_db(&["demo", "--json"]));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("one JSON document");
    assert_eq!(v["ok"], true, "{v}");
    let stages = v["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 11, "{v}");
    for s in stages {
        assert!(s["result"] == "ok" || s["result"] == "skipped", "{s}");
    }
    assert!(
        stages
            .iter()
            .any(|s| s["stage"] == "cap" && s["result"] == "ok"),
        "{v}"
    );
    // Its own lines only: the header, the clusters' ports, one line per stage (no log lines).
    for line in r.stderr.lines() {
        assert!(
            line.starts_with("kasm-db demo:")
                || line.starts_with("  primary on")
                || (line.starts_with('[') && !line.contains("FAILED")),
            "a passing demo's stderr has its stage lines only: {line}\n{}",
            r.stderr
        );
    }
    assert!(r.stderr.contains("[5/11] cap      ok"), "{}", r.stderr);
    // The point-in-time restore: stream, base backup, restore to T, exactly the rows up to T.
    let pitr = stages
        .iter()
        .find(|s| s["stage"] == "pitr")
        .unwrap_or_else(|| panic!("no pitr stage: {v}"));
    assert_eq!(pitr["result"], "ok", "{pitr}");
    let what = pitr["what"].as_str().unwrap();
    assert!(
        what.contains("100 of 150 rows (exactly those up to T)") && what.contains("recovered to"),
        "{what}"
    );
    assert!(r.stderr.contains("[9/11] pitr     ok"), "{}", r.stderr);
}
