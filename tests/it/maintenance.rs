//! `size` and `vacuum` on a real throwaway cluster, through the real binary: sizes match
//! PostgreSQL's own functions, both work on a database without kasm-db's schema,
//! `--fail-on-exceed` exit codes, `vacuum --dry-run` changes nothing, `vacuum --full` gives back
//! the space of a table with 90% of its rows deleted and leaves partitions purge will drop.

use crate::common::*;
use serde_json::Value;

fn num(url: &str, sql: &str) -> i64 {
    psql(url, sql)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a number from {sql}"))
}

fn migrated() -> String {
    let url = fresh_db();
    let r = run(kasm_db(&["migrate", "--json", "--db", &url]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("0002_size_samples"), "{}", r.stdout);
    url
}

/// A partition of a kasm-db class for tests (the ingest code creates the real ones).
fn partition(url: &str, class: &str, name: &str, from: &str, to: &str) {
    psql(
        url,
        &format!(
            "CREATE TABLE {name} PARTITION OF logs_{class} FOR VALUES FROM ('{from}') TO ('{to}')"
        ),
    );
}

/// `rows` records of about 1 KB spread evenly over `span_s` seconds ending at `end`.
fn insert_logs(url: &str, level: &str, rows: i64, end: &str, span_s: i64) {
    psql(
        url,
        &format!(
            "INSERT INTO logs (log_id, ingest_date, levelname, host, message, data)
             SELECT gen_random_uuid(), timestamptz '{end}' - make_interval(secs => {span_s} - i * {span_s}.0 / {rows}),
                    '{level}', 'agent-1', repeat(md5(i::text), 30), jsonb_build_object('i', i)
             FROM generate_series(1, {rows}) i"
        ),
    );
}

#[test]
fn size_matches_pg_database_size_and_the_partitions() {
    let url = migrated();
    partition(
        &url,
        "debug",
        "logs_debug_p2026112412",
        "2026-11-24 12:00+00",
        "2026-11-24 13:00+00",
    );
    partition(
        &url,
        "logs",
        "logs_logs_p20261123",
        "2026-11-23 00:00+00",
        "2026-11-24 00:00+00",
    );
    partition(
        &url,
        "logs",
        "logs_logs_p20261124",
        "2026-11-24 00:00+00",
        "2026-11-25 00:00+00",
    );
    insert_logs(&url, "DEBUG", 500, "2026-11-24 12:59:00+00", 3000);
    insert_logs(&url, "INFO", 3000, "2026-11-24 10:00:00+00", 86_400);
    let r = run(kasm_db(&[
        "size",
        "--json",
        "--sessions",
        "10",
        "--db",
        &url,
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r);
    let db = num(&url, "SELECT pg_database_size(current_database())");
    let got = v["database_bytes"].as_i64().unwrap();
    assert!(
        (got - db).abs() <= db / 20,
        "database_bytes {got} vs pg_database_size {db}"
    );
    for (class, parent, rows) in [("debug", "logs_debug", 500), ("logs", "logs_logs", 3000)] {
        let bytes = num(
            &url,
            &format!(
                "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('{parent}') WHERE isleaf"
            ),
        );
        let c = v["classes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["class"] == class)
            .unwrap();
        let got = c["bytes"].as_i64().unwrap();
        // Autovacuum may add a visibility map page or two meanwhile.
        assert!(
            (got - bytes).abs() <= 64 * 1024,
            "{class}: {got} vs {bytes}"
        );
        assert!(got > 100_000, "{class} is {got} bytes");
        assert_eq!(c["rows"], rows);
    }
    assert_eq!(v["logs_rows"], 3500);
    assert_eq!(v["logs_relation"], "kasm-db");
    let classes = v["classes"].as_array().unwrap();
    assert_eq!(classes[1]["partitions"], 2);
    assert_eq!(classes[1]["newest"], "2026-11-24T10:00:00Z");
    assert_eq!(classes[1]["oldest"], "2026-11-23T10:00:28.800Z");
    // The contract's tier for 10 sessions is the guide's minimum.
    assert_eq!(v["sessions"], 10);
    assert_eq!(v["tier"]["cpus"], 2);
    assert_eq!(v["tier"]["disk_gb"], 80);
    assert!(v["tier"]["sessions_min"].is_number() && v["tier"]["sessions_max"].is_number());
    assert!(["ok", "warn", "exceeded"].contains(&v["status"].as_str().unwrap()));
    assert!(!v["advice"].as_array().unwrap().is_empty());
    assert!(v["largest_tables"].as_array().unwrap().len() <= 10);
    // The human rendering names the classes.
    let r = run(kasm_db(&["size", "--sessions", "10", "--db", &url]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("debug") && r.stdout.contains("largest tables"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("pw-"), "password leaked: {}", r.stdout);
}

#[test]
fn size_works_on_a_database_without_kasm_db_schema() {
    // An empty database: no logs at all.
    let url = fresh_db();
    let r = run(kasm_db(&["size", "--json", "--db", &url]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r);
    assert_eq!(v["logs_relation"], "absent");
    assert_eq!(
        (v["logs_bytes"].as_i64(), v["logs_rows"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(v["sessions"], Value::Null);
    assert_eq!(v["status"], "ok");
    // Kasm's own database: a plain logs table kasm-db did not create, and others.
    psql(
        &url,
        "CREATE TABLE logs (log_id uuid, ingest_date timestamptz, message text);
         INSERT INTO logs SELECT gen_random_uuid(), now() - i * interval '1 minute', repeat('m', 200)
         FROM generate_series(1, 2000) i;
         CREATE TABLE users (user_id uuid, username text);",
    );
    let r = run(kasm_db(&[
        "size",
        "--json",
        "--sessions",
        "300",
        "--db",
        &url,
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r);
    assert_eq!(v["logs_relation"], "plain");
    assert_eq!(v["logs_rows"], 2000);
    assert_eq!(
        v["logs_bytes"].as_i64(),
        Some(num(&url, "SELECT pg_total_relation_size('logs')"))
    );
    assert_eq!(v["tier"]["ram_gb"], 8);
    // 300 sessions keeping logs in the database: the guide says forward to a SIEM.
    assert_eq!(v["status"], "warn");
    assert!(v["advice"].to_string().contains("SIEM"), "{}", v["advice"]);
    assert_eq!(
        psql(&url, "SELECT to_regclass('kasm_db_migrations') IS NULL"),
        "t"
    );
}

#[test]
fn size_fail_on_exceed_exit_codes() {
    let url = migrated();
    partition(
        &url,
        "logs",
        "logs_logs_ptest",
        "2000-01-01 00:00+00",
        "2100-01-01 00:00+00",
    );
    // About 3 MB over an hour, ending now.
    let now = psql(&url, "SELECT now()");
    insert_logs(&url, "INFO", 3000, &now, 3700);
    let args = [
        "size",
        "--json",
        "--sessions",
        "10",
        "--fail-on-exceed",
        "--db",
        &url,
    ];
    // Default retention: 3 MB/h x 7 days is about 0.5 GB, well inside 80 GB.
    let r = run(kasm_db(&args));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&r)["status"], "ok", "{}", r.stdout);
    // Ten years of it would not fit the tier's 80 GB: exceeded, exit 1, result still printed.
    let r = run(kasm_db(&args).env("KASM_DB_RETENTION_LOGS", "3650d"));
    assert_eq!(r.code, 1, "{}\n{}", r.stderr, r.stdout);
    let v = json(&r);
    assert_eq!(v["status"], "exceeded");
    assert!(v["projected_database_bytes"].as_i64().unwrap() > 80_000_000_000);
    // Without --fail-on-exceed the same is reported with exit 0.
    let r = run(
        kasm_db(&["size", "--json", "--sessions", "10", "--db", &url])
            .env("KASM_DB_RETENTION_LOGS", "3650d"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&r)["status"], "exceeded");
    // Bad values are usage errors.
    let r = run(kasm_db(&["size", "--sessions", "0", "--db", &url]));
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[test]
fn size_reports_the_growth_trend_from_samples() {
    let url = migrated();
    psql(
        &url,
        "INSERT INTO size_samples (sampled_at, database_bytes)
         SELECT now() - (10 - d) * interval '1 day', 1000000000::bigint + d * 500000000::bigint FROM generate_series(0, 9) d",
    );
    let r = run(kasm_db(&[
        "size",
        "--json",
        "--sessions",
        "10",
        "--no-record",
        "--db",
        &url,
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let t = &json(&r)["trend"];
    assert_eq!(t["samples"], 10);
    let per_day = t["bytes_per_day"].as_f64().unwrap();
    assert!((per_day - 5e8).abs() < 1e6, "{per_day}");
}

/// A plain table of `rows` rows with autovacuum off, `pct`% of them deleted.
fn bloated(url: &str, name: &str, rows: i64, pct: i64) {
    psql(
        url,
        &format!(
            "CREATE TABLE {name} (id int PRIMARY KEY, payload text) WITH (autovacuum_enabled = false);
             INSERT INTO {name} SELECT i, repeat('x', 100) FROM generate_series(1, {rows}) i;
             DELETE FROM {name} WHERE id % 100 >= {};",
            100 - pct
        ),
    );
    // A backend publishes its statistics as it exits, after psql has returned: wait for them
    // (vacuum decides from them, as it would on a live server).
    let want = rows * pct / 100;
    let sql = format!("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = '{name}'");
    wait_until(
        std::time::Duration::from_secs(30),
        format_args!("the statistics to show {want} dead tuples in {name}"),
        || num(url, &sql) == want,
    );
}

#[test]
fn vacuum_dry_run_changes_nothing() {
    let url = fresh_db();
    bloated(&url, "t", 20_000, 50);
    let state = "SELECT n_dead_tup || ' ' || pg_total_relation_size('t') || ' ' ||
                 coalesce(last_vacuum::text, 'never') || ' ' || coalesce(last_analyze::text, 'never')
                 FROM pg_stat_user_tables WHERE relname = 't'";
    let before = psql(&url, state);
    assert!(
        before.starts_with("10000 ") && before.ends_with("never never"),
        "{before}"
    );
    let r = run(kasm_db(&[
        "vacuum",
        "--dry-run",
        "--full",
        "--json",
        "--db",
        &url,
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r);
    assert_eq!(v["released_bytes"], 0);
    let t = report_table(&v, "public.t");
    assert_eq!(t["dead_tuples"], 10_000);
    assert_eq!(t["action"], "vacuum_full");
    assert_eq!(t["done"], false);
    assert!(t["reclaimable_bytes"].as_i64().unwrap() > 0);
    assert_eq!(psql(&url, state), before);
}

#[test]
fn vacuum_full_returns_the_space_of_a_table_with_90_percent_deleted() {
    let url = fresh_db();
    bloated(&url, "t", 200_000, 90);
    let before = num(&url, "SELECT pg_total_relation_size('t')");
    let r = run(kasm_db(&["vacuum", "--full", "--json", "--db", &url]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r);
    let t = report_table(&v, "public.t");
    assert_eq!(t["action"], "vacuum_full");
    assert_eq!(t["done"], true);
    let after = num(&url, "SELECT pg_total_relation_size('t')");
    assert!(after < before / 3, "{before} -> {after}");
    let released = v["released_bytes"].as_i64().unwrap();
    assert!(released > 0);
    assert!(
        (released - (before - after)).abs() <= 64 * 1024,
        "released {released}, measured {}",
        before - after
    );
    assert_eq!(num(&url, "SELECT count(*) FROM t"), 20_000);
    // VACUUM FULL rewrites (no last_vacuum); the report carries the sizes it measured.
    assert_eq!(t["bytes_before"].as_i64(), Some(before));
    assert_eq!(t["bytes_after"].as_i64(), Some(after));
    // A second run finds nothing worth rewriting.
    let r = run(kasm_db(&["vacuum", "--full", "--json", "--db", &url]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_ne!(report_table(&json(&r), "public.t")["action"], "vacuum_full");
}

#[test]
fn vacuum_full_skips_partitions_purge_will_drop_and_analyzes_parents() {
    let url = migrated();
    partition(
        &url,
        "logs",
        "logs_logs_p20200101",
        "2020-01-01 00:00+00",
        "2020-01-02 00:00+00",
    );
    insert_logs(&url, "INFO", 20_000, "2020-01-01 23:00:00+00", 3600);
    psql(
        &url,
        "DELETE FROM logs_logs_p20200101 WHERE (data->>'i')::int % 10 <> 0",
    );
    let r = run(kasm_db(&["vacuum", "--full", "--json", "--db", &url]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r);
    let p = report_table(&v, "public.logs_logs_p20200101");
    assert_ne!(p["action"], "vacuum_full");
    assert!(
        p["skipped"].as_str().unwrap_or_default().contains("purge"),
        "{p}"
    );
    // Partitioned parents are analyzed (autovacuum never does).
    let parent = report_table(&v, "public.logs");
    assert_eq!(
        (parent["action"].as_str(), parent["done"].as_bool()),
        (Some("analyze"), Some(true))
    );
    assert_eq!(
        psql(
            &url,
            "SELECT count(*) > 0 FROM pg_stats WHERE tablename = 'logs' AND inherited"
        ),
        "t"
    );
    assert!(
        v["suggestions"].to_string().contains("autovacuum"),
        "{}",
        v["suggestions"]
    );
}

#[test]
fn record_sample_stores_the_sizes_for_the_trend() {
    let record = |url: &str| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let target = kasm_db::db::DbTarget::resolve(Some(url), &Default::default()).unwrap();
            let client = kasm_db::db::connect(&target, kasm_db::db::Retry::default())
                .await
                .unwrap();
            kasm_db::maintenance::samples::record_sample(&client, "public").await
        })
    };
    // Without kasm-db's schema it says what to do and creates nothing.
    let bare = fresh_db();
    let e = record(&bare).unwrap_err().to_string();
    assert!(e.contains("kasm-db migrate"), "{e}");
    assert_eq!(
        psql(&bare, "SELECT to_regclass('size_samples') IS NULL"),
        "t"
    );

    let url = migrated();
    partition(
        &url,
        "logs",
        "logs_logs_ptest",
        "2000-01-01 00:00+00",
        "2100-01-01 00:00+00",
    );
    insert_logs(&url, "INFO", 1000, "2026-11-24 10:00:00+00", 3600);
    let s = record(&url).unwrap();
    let db = num(&url, "SELECT pg_database_size(current_database())");
    assert!(
        (s.database_bytes - db).abs() <= db / 20,
        "{} vs {db}",
        s.database_bytes
    );
    let part = num(&url, "SELECT pg_total_relation_size('logs_logs_ptest')");
    assert!(
        (s.logs_logs_bytes - part).abs() <= 64 * 1024,
        "{} vs {part}",
        s.logs_logs_bytes
    );
    assert!(s.logs_logs_bytes > 100_000);
    assert_eq!(s.logs_debug_bytes, 0);
    assert_eq!(num(&url, "SELECT count(*) FROM size_samples"), 1);
    assert_eq!(
        num(&url, "SELECT database_bytes FROM size_samples"),
        s.database_bytes
    );
    // One sample is not a trend.
    let r = run(kasm_db(&["size", "--json", "--no-record", "--db", &url]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&r)["trend"], Value::Null);
    assert_eq!(json(&r)["sample"], Value::Null);
    assert_eq!(num(&url, "SELECT count(*) FROM size_samples"), 1);
}

#[test]
fn size_from_the_command_line_records_a_sample_unless_told_not_to() {
    let url = migrated();
    let r = run(kasm_db(&["size", "--json", "--db", &url]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r);
    assert_eq!(v["sample"]["recorded"], true, "{v}");
    assert_eq!(num(&url, "SELECT count(*) FROM size_samples"), 1);
    let r = run(kasm_db(&["size", "--db", &url]));
    assert!(r.stdout.contains("size sample recorded"), "{}", r.stdout);
    assert_eq!(num(&url, "SELECT count(*) FROM size_samples"), 2);
    let r = run(kasm_db(&["size", "--json", "--no-record", "--db", &url]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&r)["sample"], Value::Null);
    assert_eq!(num(&url, "SELECT count(*) FROM size_samples"), 2);
    // While another session holds the size-sample lock (serve's slot), none is recorded and
    // size still succeeds.
    let holder = kasm_db::db::locks::Lock::SizeSample.key();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
    let hold_url = url.clone();
    let t = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let target =
                kasm_db::db::DbTarget::resolve(Some(&hold_url), &Default::default()).unwrap();
            let c = kasm_db::db::connect(&target, kasm_db::db::Retry::default())
                .await
                .unwrap();
            c.query_one("SELECT pg_advisory_lock($1)", &[&holder])
                .await
                .unwrap();
            held_tx.send(()).unwrap();
            let _ = rx.recv();
        })
    });
    held_rx.recv().unwrap();
    let r = run(kasm_db(&["size", "--json", "--db", &url]));
    tx.send(()).unwrap();
    t.join().unwrap();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r);
    assert_eq!(v["sample"]["recorded"], false, "{v}");
    assert!(
        v["sample"]["reason"]
            .as_str()
            .unwrap()
            .contains("recording one right now")
    );
    assert_eq!(num(&url, "SELECT count(*) FROM size_samples"), 2);
    // A database without kasm-db's schema: nothing recorded, nothing created, exit 0.
    let bare = fresh_db();
    let r = run(kasm_db(&["size", "--json", "--db", &bare]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&r)["sample"]["recorded"], false);
    assert_eq!(
        psql(&bare, "SELECT to_regclass('size_samples') IS NULL"),
        "t"
    );
}

#[test]
fn size_and_vacuum_as_an_application_role_that_owns_nothing() {
    let url = fresh_db();
    bloated(&url, "t", 20_000, 90);
    let role = format!("app_{}", std::process::id());
    psql(
        &url,
        &format!(
            "DO $$ BEGIN CREATE ROLE {role} LOGIN PASSWORD 'app-secret'; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        ),
    );
    let (rest, db) = url.rsplit_once('/').unwrap();
    let host = rest.rsplit_once('@').unwrap().1;
    let app_url = format!("postgres://{role}:app-secret@{host}/{db}");
    let r = run(kasm_db(&["size", "--json", "--db", &app_url]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(json(&r)["database_bytes"].as_i64().unwrap() > 0);
    let r = run(kasm_db(&["vacuum", "--full", "--json", "--db", &app_url]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains("app-secret") && !r.stderr.contains("app-secret"));
    let v = json(&r);
    let t = report_table(&v, "public.t");
    assert_eq!(
        (t["action"].as_str(), t["done"].as_bool()),
        (Some("none"), Some(false))
    );
    assert!(t["reason"].as_str().unwrap().contains("not owned"), "{t}");
    assert_eq!(v["released_bytes"], 0);
}
