//! kasm-db on a database shaped like Kasm Workspaces' own (see tests/it/common/kasm.rs): owned by
//! `kasmapp`, a plain `logs` table kasm-db did not create, `alembic_version`, a `pgaudit.log`
//! database setting (a placeholder: pgaudit is not loaded here, as on a restore target that
//! lacks it). `migrate` refuses it and leaves it exactly as it was; `size` and `vacuum` (also
//! `--full`) work on it; `backup --exclude-logs` leaves out the rows of Kasm's plain `logs` (not
//! only kasm-db's partitioned one), keeps its definition, and records `excluded` and
//! `alembic_version` in the manifest and `backups list`; `restore` reports them and brings back
//! an empty `logs` and everything else identical; a full backup restores `logs` too, and passes
//! `backups verify --scratch-db`.

use crate::common::kasm;

use crate::common::*;
use serde_json::Value;
use std::path::Path;

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

const KASMAPP: &str = "DO $$ BEGIN CREATE ROLE kasmapp LOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$";

/// Kasm's database on the primary, as Kasm's installer makes it; returns its name.
fn kasm_database() -> String {
    let name = unique("kasm");
    with_primary(|c| {
        c.psql("postgres", KASMAPP)?;
        c.psql("postgres", &format!("CREATE DATABASE {name} OWNER kasmapp"))?;
        c.psql(
            "postgres",
            &format!("ALTER DATABASE {name} SET pgaudit.log = 'ddl, role'"),
        )?;
        c.psql(&name, &format!("SET ROLE kasmapp; {}", kasm::SCHEMA_SQL))
    })
    .unwrap_or_else(|e| panic!("{e}"));
    name
}

fn primary(db: &str, sql: &str) -> String {
    with_primary(|c| c.psql(db, sql)).unwrap_or_else(|e| panic!("{e}"))
}

fn standby(db: &str, sql: &str) -> String {
    with_standby(|c| c.psql(db, sql)).unwrap_or_else(|e| panic!("{e}"))
}

fn public_relations(db: &str) -> String {
    primary(
        db,
        "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class
         WHERE relnamespace = 'public'::regnamespace",
    )
}

#[test]
fn migrate_refuses_kasms_database_and_leaves_it_as_it_was() {
    let db = kasm_database();
    let url = with_primary(|c| c.url(&db));
    let before = public_relations(&db);
    let r = run(kasm_db(&["migrate", "--db", &url]));
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("public.logs already exists") && r.stderr.contains("kasm_logs"),
        "{}",
        r.stderr
    );
    // Nothing of kasm-db's was left behind, not even its migrations table.
    assert_eq!(public_relations(&db), before);
    assert_eq!(
        primary(&db, "SELECT to_regclass('kasm_db_migrations') IS NULL"),
        "t"
    );
    assert_eq!(primary(&db, "SELECT count(*) FROM logs"), "6000");
}

/// Wait until the statistics show `want` dead tuples in `logs` (backends publish them as
/// they exit, after psql has returned).
fn wait_dead(db: &str, want: i64) {
    wait_until(
        std::time::Duration::from_secs(30),
        format_args!("the statistics to show {want} dead tuples in logs"),
        || {
            primary(
                db,
                "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'logs'",
            )
            .parse::<i64>()
            .unwrap()
                == want
        },
    );
}

#[test]
fn size_and_vacuum_work_on_kasms_database() {
    let db = kasm_database();
    let url = with_primary(|c| c.url(&db));
    let r = run(kasm_db(&[
        "size",
        "--json",
        "--sessions",
        "100",
        "--db",
        &url,
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r);
    assert_eq!(v["logs_relation"], "plain");
    assert_eq!(v["logs_rows"], kasm::LOGS);
    assert_eq!(
        v["logs_bytes"].as_i64().unwrap().to_string(),
        primary(&db, "SELECT pg_total_relation_size('logs')")
    );
    // A role that may not read Kasm's logs (a monitoring login) gets the estimate and a
    // warning, not an error half way; vacuum leaves every table alone and says why.
    primary(
        &db,
        "ANALYZE logs; DO $$ BEGIN CREATE ROLE kasm_monitor LOGIN PASSWORD 'monitor-pw';
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
    );
    let monitor = format!(
        "postgres://kasm_monitor:monitor-pw@127.0.0.1:{}/{db}",
        with_primary(|c| c.port)
    );
    let r = run(kasm_db(&["size", "--json", "--db", &monitor]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r);
    assert_eq!(
        (v["logs_relation"].as_str(), v["logs_rows"].as_i64()),
        (Some("plain"), Some(kasm::LOGS))
    );
    assert!(
        v["advice"].to_string().contains("may not read public.logs"),
        "{v}"
    );
    let r = run(kasm_db(&["vacuum", "--json", "--db", &monitor]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        report_table(&json(&r), "public.logs")["reason"]
            .as_str()
            .unwrap()
            .contains("not owned")
    );
    // Its backup stops before pg_dump starts, saying what to grant, and leaves nothing behind.
    let dir = tempfile::tempdir().unwrap();
    let r = run(kasm_db(&[
        "backup",
        "--db",
        &monitor,
        "--to",
        dir.path().to_str().unwrap(),
    ]));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("\"kasm_monitor\" may not read 7 table(s)")
            && r.stderr.contains("GRANT \"kasmapp\" TO \"kasm_monitor\""),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("monitor-pw"), "{}", r.stderr);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // Kasm trims its own logs: the DEBUG fifth leaves dead tuples past autovacuum's threshold.
    primary(
        &db,
        "ALTER TABLE logs SET (autovacuum_enabled = false); DELETE FROM logs WHERE levelname = 'DEBUG'",
    );
    wait_dead(&db, kasm::LOGS / 5);
    let r = run(kasm_db(&["vacuum", "--json", "--db", &url]));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = json(&r);
    let logs = report_table(&v, "public.logs");
    assert_eq!(
        (logs["action"].as_str(), logs["done"].as_bool()),
        (Some("vacuum"), Some(true))
    );
    assert_ne!(
        primary(
            &db,
            "SELECT coalesce(last_vacuum::text, 'never') FROM pg_stat_user_tables WHERE relname = 'logs'"
        ),
        "never"
    );
    // Most of the rest deleted: VACUUM FULL gives the space back, and keeps every row left.
    primary(
        &db,
        "DELETE FROM logs WHERE ingest_date < now() - interval '10 minutes'",
    );
    let left: i64 = primary(&db, "SELECT count(*) FROM logs").parse().unwrap();
    assert!(left < kasm::LOGS / 5, "{left}");
    wait_dead(&db, kasm::LOGS * 4 / 5 - left);
    let before: i64 = primary(&db, "SELECT pg_total_relation_size('logs')")
        .parse()
        .unwrap();
    let r = run(kasm_db(&["vacuum", "--full", "--json", "--db", &url]));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = json(&r);
    let logs = report_table(&v, "public.logs");
    assert_eq!(
        (logs["action"].as_str(), logs["done"].as_bool()),
        (Some("vacuum_full"), Some(true)),
        "{logs}"
    );
    let after: i64 = primary(&db, "SELECT pg_total_relation_size('logs')")
        .parse()
        .unwrap();
    assert!(after < before, "{before} -> {after}");
    assert!(v["released_bytes"].as_i64().unwrap() > 0);
    assert_eq!(primary(&db, "SELECT count(*) FROM logs"), left.to_string());
}

fn backup(url: &str, to: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "backup",
        "--json",
        "--db",
        url,
        "--to",
        to.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let r = run(kasm_db(&args));
    assert_eq!(r.code, 0, "{}", r.stderr);
    json(&r)
}

fn manifest(dir: &Path, id: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join(id).join("manifest.json")).unwrap()).unwrap()
}

/// The archive's table of contents (`pg_restore -l` of the gunzipped object).
fn toc(dir: &Path, id: &str) -> String {
    use std::io::Read;
    let mut plain = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(dir.join(id).join("dump.gz")).unwrap())
        .read_to_end(&mut plain)
        .unwrap();
    let file = dir.join(format!("{id}.dump"));
    std::fs::write(&file, plain).unwrap();
    let bindir = with_primary(|c| c.bindir.clone());
    let out = std::process::Command::new(bindir.join("pg_restore"))
        .arg("-l")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn restore(dir: &Path, id: &str, target: &str) -> Run {
    run(kasm_db(&[
        "restore",
        "--json",
        "--from",
        dir.to_str().unwrap(),
        "--backup",
        id,
        "--target",
        target,
    ]))
}

#[test]
fn exclude_logs_restores_an_empty_logs_table_and_everything_else_identical() {
    let db = kasm_database();
    let url = with_primary(|c| c.url(&db));
    with_standby(|c| c.psql("postgres", KASMAPP)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let full = backup(&url, dir.path(), &[]);
    let full_id = full["id"].as_str().unwrap().to_string();
    assert_eq!(full["excluded"], serde_json::json!([]));
    assert_eq!(full["alembic_version"], kasm::ALEMBIC);
    let r = run(kasm_db(&[
        "backup",
        "--db",
        &url,
        "--to",
        dir.path().to_str().unwrap(),
        "--exclude-logs",
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The old warning ("there is no logs relation") is gone: Kasm's plain logs is found.
    assert!(!r.stderr.contains("no logs relation"), "{}", r.stderr);
    assert!(
        r.stdout.contains("the data of public.logs was left out"),
        "{}",
        r.stdout
    );
    let id = r.stdout.split_whitespace().nth(1).unwrap().to_string();

    // The manifest says what was left out and Kasm's schema revision.
    let m = manifest(dir.path(), &id);
    assert_eq!(m["exclude_logs"], true);
    assert_eq!(m["excluded"], serde_json::json!(["public.logs"]));
    assert_eq!(m["alembic_version"], kasm::ALEMBIC);
    let row = |name: &str| {
        m["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(
        (
            row("logs")["rows"].as_i64(),
            row("logs")["data_excluded"].as_bool()
        ),
        (Some(0), Some(true))
    );
    assert_eq!(row("users")["rows"], kasm::USERS);
    assert_eq!(row("users")["data_excluded"], false);
    assert_eq!(
        manifest(dir.path(), &full_id)["excluded"],
        serde_json::json!([])
    );
    // The archive keeps the table and its indexes, without its data.
    let excluded_toc = toc(dir.path(), &id);
    assert!(
        excluded_toc.contains("TABLE public logs kasmapp"),
        "{excluded_toc}"
    );
    assert!(
        excluded_toc.contains("INDEX public logs_metric_name_idx"),
        "{excluded_toc}"
    );
    assert!(
        !excluded_toc.contains("TABLE DATA public logs"),
        "{excluded_toc}"
    );
    assert!(
        excluded_toc.contains("TABLE DATA public users"),
        "{excluded_toc}"
    );
    assert!(toc(dir.path(), &full_id).contains("TABLE DATA public logs"));

    // `backups list` carries both fields.
    let r = run(kasm_db(&[
        "backups",
        "list",
        "--json",
        "--from",
        dir.path().to_str().unwrap(),
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let list = json(&r);
    let entry = |id: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(entry(&id)["excluded"], serde_json::json!(["public.logs"]));
    assert_eq!(entry(&id)["alembic_version"], kasm::ALEMBIC);
    assert_eq!(entry(&full_id)["excluded"], serde_json::json!([]));
    let r = run(kasm_db(&[
        "backups",
        "list",
        "--from",
        dir.path().to_str().unwrap(),
    ]));
    assert!(
        r.stdout.contains(&format!(
            "alembic {}; without the data of public.logs",
            kasm::ALEMBIC
        )),
        "{}",
        r.stdout
    );

    // Restore onto the standby: an empty logs table, the rest identical, and it says so.
    let target = unique("kasm");
    let r = restore(dir.path(), &id, &with_standby(|c| c.url(&target)));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let j = json(&r);
    assert_eq!(j["excluded"], serde_json::json!(["public.logs"]));
    assert_eq!(j["alembic_version"], kasm::ALEMBIC);
    assert_eq!(j["database_properties"]["owner"], "kasmapp");
    // The pgaudit.log placeholder is applied by a superuser (the managed test covers the rest).
    assert_eq!(j["database_properties"]["settings"], 1, "{j}");
    assert_eq!(j["warnings"], serde_json::json!([]), "{j}");
    assert_eq!(standby(&target, "SELECT count(*) FROM logs"), "0");
    assert_eq!(
        kasm::logs_definition(|q| standby(&target, q)),
        kasm::logs_definition(|q| primary(&db, q))
    );
    for t in kasm::TABLES {
        assert_eq!(
            kasm::digest(|q| standby(&target, q), t),
            kasm::digest(|q| primary(&db, q), t),
            "table {t} differs"
        );
    }
    assert_eq!(
        standby(
            &target,
            "SELECT tableowner FROM pg_tables WHERE tablename = 'logs'"
        ),
        "kasmapp"
    );
    assert_eq!(
        standby(
            &target,
            "SELECT count(*) FROM user_kasm_counts WHERE kasms = 1"
        ),
        kasm::USERS.to_string()
    );
    assert_eq!(
        standby(
            "postgres",
            &format!(
                "SELECT array_to_string(setconfig, ';') FROM pg_db_role_setting s
                 JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = '{target}'"
            )
        ),
        "pgaudit.log=ddl, role"
    );

    // The full backup passes a restore test and brings the logs back over the same target.
    // On the shared standby: one scratch restore at a time (another module's may be running).
    let r = verify_scratch(dir.path(), &full_id, |_| {});
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(json(&r)["ok"], true);
    let r = restore(dir.path(), &full_id, &with_standby(|c| c.url(&target)));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let j = json(&r);
    assert_eq!(j["excluded"], serde_json::json!([]));
    assert!(j["previous"].as_str().is_some(), "{j}");
    assert_eq!(
        kasm::digest(|q| standby(&target, q), "logs"),
        kasm::digest(|q| primary(&db, q), "logs")
    );
}
