//! Ingest and purge on a real cluster through the real binary: counts per level with bad lines
//! mixed in, byte-exact messages, HEC envelopes, poison rows, exact purge windows, retention 0,
//! dry runs, and a long reader that must not make purge hang.

use crate::common::*;
use serde_json::Value;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn migrated_db() -> String {
    let url = fresh_db();
    let r = run(kasm_db(&["migrate", "--db", &url]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    url
}

/// Run `kasm-db ingest --json` with `input` on stdin.
fn ingest_stdin(url: &str, input: &[u8], extra: &[&str], env: &[(&str, &str)]) -> (Run, Value) {
    let mut args = vec!["ingest", "--json", "--db", url];
    args.extend_from_slice(extra);
    let mut cmd = kasm_db(&args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    let v = serde_json::from_str(&r.stdout).unwrap_or(Value::Null);
    (r, v)
}

#[test]
fn counts_per_level_with_bad_lines_mixed_in() {
    let url = migrated_db();
    let dir = tempfile::tempdir().unwrap();
    let rejects = dir.path().join("rejects.ndjson");
    let mut input = Vec::new();
    for i in 0..300 {
        let level = ["debug", "INFO", "warn", "Error", "FATAL", "critical"][i % 6];
        writeln!(
            input,
            r#"{{"levelname":"{level}","message":"m{i}","host":"h{}"}}"#,
            i % 3
        )
        .unwrap();
        match i {
            10 => input.extend_from_slice(b"{not json\n"),
            20 => input.extend_from_slice(b"[1,2,3]\n"),
            30 => input.extend_from_slice(b"{\"levelname\":\"VERBOSE\"}\n"),
            40 => input.extend_from_slice(b"{\"message\":\"\xff\xfe\"}\n"),
            50 => input.extend_from_slice(b"\n   \n"), // blank: ignored, not counted
            60 => writeln!(input, r#"{{"message":"{}"}}"#, "x".repeat(3000)).unwrap(),
            _ => {}
        }
    }
    writeln!(input, r#"{{"message":"no level is INFO"}}"#).unwrap();
    let (r, v) = ingest_stdin(
        &url,
        &input,
        &[
            "--rejects",
            rejects.to_str().unwrap(),
            "--max-line-bytes",
            "2048",
        ],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(v["read"], 306, "{v}");
    assert_eq!(v["stored"], 301, "{v}");
    assert_eq!(v["stored_debug"], 50, "{v}");
    assert_eq!(v["rejected"], 5, "{v}");
    assert_eq!(v["forwarded"], 0);
    assert_eq!(v["dropped"], 0);
    let counts = psql(
        &url,
        "SELECT string_agg(levelname || '=' || n, ',' ORDER BY levelname) FROM (SELECT levelname, count(*) n FROM logs GROUP BY 1) x",
    );
    assert_eq!(counts, "CRITICAL=100,DEBUG=50,ERROR=50,INFO=51,WARNING=50");
    // Rows sit in the class partitions.
    assert_eq!(psql(&url, "SELECT count(*) FROM logs_debug"), "50");
    // Rejects: line numbers and reasons, in input order.
    let lines: Vec<Value> = std::fs::read_to_string(&rejects)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["line"], 12);
    assert_eq!(lines[0]["source"], "stdin");
    assert!(
        lines[0]["reason"]
            .as_str()
            .unwrap()
            .contains("invalid JSON")
    );
    assert!(
        lines[1]["reason"]
            .as_str()
            .unwrap()
            .contains("not a JSON object")
    );
    assert!(lines[2]["reason"].as_str().unwrap().contains("VERBOSE"));
    assert!(lines[3]["reason"].as_str().unwrap().contains("UTF-8"));
    assert!(
        lines[4]["reason"]
            .as_str()
            .unwrap()
            .contains("over the limit")
    );
    assert!(r.stderr.contains("stdin:12"), "{}", r.stderr);
    // --strict: same storing, exit 1.
    let (r, v) = ingest_stdin(&url, b"{\"message\":\"ok\"}\nnope\n", &["--strict"], &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(v["stored"], 1);
    assert_eq!(v["rejected"], 1);
}

#[test]
fn special_characters_are_stored_byte_exact() {
    let url = migrated_db();
    let message =
        "tab\there \"quoted\" back\\slash\nnew line ünïcödé 日本語 😀 '; DROP TABLE logs; --";
    let line = serde_json::json!({"levelname": "INFO", "message": message, "host": "h'1", "kasm_user_name": "ü@x"}).to_string();
    let (r, v) = ingest_stdin(&url, format!("{line}\n").as_bytes(), &[], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(v["stored"], 1);
    let got = psql(
        &url,
        "SELECT encode(convert_to(message, 'UTF8'), 'hex') FROM logs",
    );
    assert_eq!(got, hex(message.as_bytes()));
    let got = psql(
        &url,
        "SELECT encode(convert_to(data->>'message', 'UTF8'), 'hex') || ' ' || host || ' ' || kasm_user_name FROM logs",
    );
    assert_eq!(got, format!("{} h'1 ü@x", hex(message.as_bytes())));
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn hec_envelopes_are_unwrapped() {
    let url = migrated_db();
    let input = concat!(
        r#"{"time": 1795514400.123, "host": "hec-host", "sourcetype": "kasm", "event": {"levelname": "ERROR", "message": "boom", "application": "kasm_api"}}"#,
        "\n",
        r#"{"time": 1795514401, "host": "hec-host", "event": "just text"}"#,
        "\n"
    );
    let (r, v) = ingest_stdin(&url, input.as_bytes(), &[], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(v["stored"], 2);
    let row = psql(
        &url,
        "SELECT levelname, host, application, message, to_char(log_time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'), data ? 'event' FROM logs WHERE message = 'boom'",
    );
    assert_eq!(
        row,
        "ERROR|hec-host|kasm_api|boom|2026-11-24 10:00:00.123|f"
    );
    assert_eq!(
        psql(
            &url,
            "SELECT levelname || ' ' || (data->>'message') FROM logs WHERE message = 'just text'"
        ),
        "INFO just text"
    );
}

#[test]
fn a_poison_row_is_isolated_and_the_rest_stored() {
    let url = migrated_db();
    // A server-side refusal the parser cannot foresee: a constraint on the relation.
    psql(
        &url,
        "ALTER TABLE logs ADD CONSTRAINT no_poison CHECK (message IS DISTINCT FROM 'poison')",
    );
    let mut input = String::new();
    for i in 0..1000 {
        let msg = if i == 123 || i == 777 {
            "poison".to_string()
        } else {
            format!("m{i}")
        };
        input.push_str(&format!("{{\"message\":\"{msg}\"}}\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    let rejects = dir.path().join("r.ndjson");
    let (r, v) = ingest_stdin(
        &url,
        input.as_bytes(),
        &["--rejects", rejects.to_str().unwrap()],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(v["stored"], 998, "{v}");
    assert_eq!(v["rejected"], 2, "{v}");
    assert_eq!(
        psql(&url, "SELECT count(*), count(DISTINCT message) FROM logs"),
        "998|998"
    );
    let text = std::fs::read_to_string(&rejects).unwrap();
    assert!(
        text.contains("\"line\":124")
            && text.contains("\"line\":778")
            && text.contains("no_poison"),
        "{text}"
    );
}

#[test]
fn gzip_files_and_missing_files() {
    let url = migrated_db();
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("a_json.log.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    for i in 0..100 {
        writeln!(enc, r#"{{"levelname":"INFO","message":"g{i}"}}"#).unwrap();
    }
    enc.finish().unwrap();
    let r = run(kasm_db(&[
        "ingest",
        "--json",
        "--db",
        &url,
        gz.to_str().unwrap(),
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        serde_json::from_str::<Value>(&r.stdout).unwrap()["stored"],
        100
    );
    let r = run(kasm_db(&[
        "ingest",
        "--db",
        &url,
        gz.to_str().unwrap(),
        "/nonexistent/x.log",
    ]));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("/nonexistent/x.log"), "{}", r.stderr);
    assert_eq!(
        psql(&url, "SELECT count(*) FROM logs"),
        "100",
        "nothing stored when an input is missing"
    );
}

#[test]
fn ingest_before_migrate_says_so() {
    let url = fresh_db();
    let (r, _) = ingest_stdin(&url, b"{}\n", &[], &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("kasm-db migrate"), "{}", r.stderr);
}

const T0: &str = "2026-11-24T12:30:00Z";

fn at(offset_secs: i64) -> String {
    let t =
        chrono::DateTime::parse_from_rfc3339(T0).unwrap() + chrono::Duration::seconds(offset_secs);
    t.with_timezone(&chrono::Utc).to_rfc3339()
}

/// Ingest one record of `level` with message `msg` as received at `when`.
fn put(url: &str, level: &str, msg: &str, when: &str) {
    let (r, v) = ingest_stdin(
        url,
        format!("{{\"levelname\":\"{level}\",\"message\":\"{msg}\"}}\n").as_bytes(),
        &["--received-at", when],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(v["stored"], 1, "{v}");
}

/// `kasm-db purge --json --now T0` (plus `extra`) on `url`; the result and its deleted counts.
fn purge_at_t0(url: &str, extra: &[&str], env: &[(&str, &str)]) -> (Value, (u64, u64)) {
    let mut args = vec!["purge", "--json", "--now", T0, "--db", url];
    args.extend_from_slice(extra);
    let mut cmd = kasm_db(&args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let r = run(cmd);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let counts = (
        v["debug_deleted"].as_u64().unwrap(),
        v["logs_deleted"].as_u64().unwrap(),
    );
    (v, counts)
}

fn messages(url: &str) -> String {
    psql(
        url,
        "SELECT coalesce(string_agg(message, ',' ORDER BY message), '') FROM logs",
    )
}

#[test]
fn purge_windows_are_exact_at_the_boundary() {
    let url = migrated_db();
    let (debug_w, logs_w) = (4 * 3600, 7 * 86_400);
    put(&url, "DEBUG", "d_old", &at(-debug_w - 1));
    put(&url, "DEBUG", "d_edge", &at(-debug_w));
    put(&url, "DEBUG", "d_new", &at(-debug_w + 1));
    put(&url, "DEBUG", "d_ancient", &at(-debug_w - 5 * 3600));
    put(&url, "INFO", "l_old", &at(-logs_w - 1));
    put(&url, "ERROR", "l_new", &at(-logs_w + 1));
    put(&url, "WARNING", "l_ancient", &at(-logs_w - 3 * 86_400));
    put(&url, "INFO", "l_now", &at(0));
    let partitions_before: i64 = psql(&url, "SELECT count(*) FROM pg_inherits WHERE inhparent IN ('logs_debug'::regclass, 'logs_logs'::regclass)").parse().unwrap();

    // Dry run: reports, changes nothing.
    let (v, deleted) = purge_at_t0(&url, &["--dry-run"], &[]);
    assert_eq!(deleted, (2, 2), "{v}");
    assert!(v["partitions_dropped"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(
        messages(&url),
        "d_ancient,d_edge,d_new,d_old,l_ancient,l_new,l_now,l_old"
    );
    let partitions_after_dry: i64 = psql(&url, "SELECT count(*) FROM pg_inherits WHERE inhparent IN ('logs_debug'::regclass, 'logs_logs'::regclass)").parse().unwrap();
    assert_eq!(partitions_before, partitions_after_dry);

    let (v, deleted) = purge_at_t0(&url, &[], &[]);
    assert_eq!(deleted, (2, 2), "{v}");
    // A record exactly at the cutoff is not older than the window: kept.
    assert_eq!(messages(&url), "d_edge,d_new,l_new,l_now");
    // Whole partitions past the window are gone, not just emptied.
    let old_parts = psql(
        &url,
        &format!(
            "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relname < 'logs_logs_p{}'  AND c.relname LIKE 'logs_logs_p%'",
            "20261114"
        ),
    );
    assert_eq!(old_parts, "0");
    // Idempotent.
    let (v, deleted) = purge_at_t0(&url, &[], &[]);
    assert_eq!(deleted, (0, 0), "{v}");
}

#[test]
fn retention_zero_keeps_a_class_out_and_purges_it_whole() {
    let url = migrated_db();
    put(&url, "DEBUG", "d1", &at(0));
    put(&url, "INFO", "i1", &at(0));
    let input = b"{\"levelname\":\"DEBUG\",\"message\":\"d2\"}\n{\"levelname\":\"INFO\",\"message\":\"i2\"}\n";
    let (r, v) = ingest_stdin(&url, input, &[], &[("KASM_DB_RETENTION_DEBUG", "0")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        (
            v["stored"].as_u64(),
            v["dropped"].as_u64(),
            v["stored_debug"].as_u64()
        ),
        (Some(1), Some(1), Some(0)),
        "{v}"
    );
    assert_eq!(messages(&url), "d1,i1,i2");
    purge_at_t0(&url, &[], &[("KASM_DB_RETENTION_DEBUG", "0")]);
    assert_eq!(messages(&url), "i1,i2");
    assert_eq!(
        psql(
            &url,
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'logs_debug'::regclass"
        ),
        "0"
    );
}

#[test]
fn a_long_reader_does_not_make_purge_hang() {
    let url = migrated_db();
    put(&url, "DEBUG", "d_old", &at(-5 * 3600));
    put(&url, "DEBUG", "d_new", &at(-60));
    // A reader holding locks on every partition of `logs` for 30 s (the admin UI's long query).
    let db = url.rsplit('/').next().unwrap().to_string();
    let (bindir, sock_dir, port) =
        with_primary(|c| (c.bindir.clone(), c.dir().to_path_buf(), c.port));
    let mut reader = std::process::Command::new(bindir.join("psql"))
        .args(["-X", "-q", "-h"])
        .arg(&sock_dir)
        .args(["-p", &port.to_string(), "-U", "postgres", "-d", &db, "-c"])
        .arg("BEGIN; SELECT count(*) FROM logs; SELECT pg_sleep(30); COMMIT;")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the reader holds its locks.
    wait_until(
        Duration::from_secs(10),
        "the reader to hold its locks",
        || {
            psql(
                &url,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE '%pg_sleep(30)%' AND state = 'active' AND pid <> pg_backend_pid()",
            ) == "1"
        },
    );
    let mut purge = kasm_db(&["purge", "--json", "--now", T0, "--db", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Hang detector, not a speed assertion: purge must finish long before the reader does.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = purge.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = purge.kill();
            let _ = reader.kill();
            panic!("purge hung behind a long reader");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = purge.wait_with_output().unwrap();
    // End the reader on the server too (killing psql alone leaves pg_sleep running).
    psql(
        &url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()",
    );
    let _ = reader.kill();
    let _ = reader.wait();
    assert!(status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(v["debug_deleted"], 1, "{v}");
    // The window holds even though the partition could not be dropped.
    assert_eq!(messages(&url), "d_new");
    assert_eq!(v["deferred"].as_array().unwrap().len(), 1, "{v}");
    // And the next purge, with the reader gone, drops it.
    let (v, _) = purge_at_t0(&url, &[], &[]);
    assert!(v["partitions_dropped"].as_u64().unwrap() >= 1, "{v}");
}

#[test]
fn a_database_restart_during_ingest_loses_and_duplicates_nothing() {
    // A dedicated cluster: stopping the shared one would disturb the other tests.
    let mut cluster = kasm_db::pgtemp::Cluster::start(&std::env::vars().collect()).unwrap();
    let db = cluster.fresh_db("restart").unwrap();
    let url = cluster.url(&db);
    assert_eq!(run(kasm_db(&["migrate", "--db", &url])).code, 0);
    let mut child = kasm_db(&["ingest", "--json", "--db", &url])
        .env("KASM_DB_INGEST_BATCH_ROWS", "500")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let total = 6000;
    for i in 0..total {
        writeln!(stdin, r#"{{"levelname":"INFO","message":"r{i}"}}"#).unwrap();
        if i == 2000 {
            stdin.flush().unwrap();
            // Let the first batches land, then take the server away for a moment.
            let deadline = Instant::now() + Duration::from_secs(20);
            while cluster
                .psql(&db, "SELECT count(*) FROM logs")
                .map(|n| n.parse::<u32>().unwrap_or(0))
                .unwrap_or(0)
                < 1000
            {
                assert!(Instant::now() < deadline, "first batches never arrived");
                std::thread::sleep(Duration::from_millis(20));
            }
            cluster.stop().unwrap();
            // The point: the database stays down a while under the ingest.
            std::thread::sleep(Duration::from_millis(1500));
            cluster.restart().unwrap();
        }
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: Value = serde_json::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(v["stored"], total, "{v} {stderr}");
    assert_eq!(v["rejected"], 0, "{v} {stderr}");
    assert_eq!(
        cluster
            .psql(&db, "SELECT count(*), count(DISTINCT message) FROM logs")
            .unwrap(),
        format!("{total}|{total}")
    );
}

#[test]
fn purge_counts_stay_exact_when_batches_were_aborted() {
    let url = migrated_db();
    // Aborted COPYs (poison isolation) leave dead inserts in the statistics.
    psql(
        &url,
        "ALTER TABLE logs ADD CONSTRAINT no_poison CHECK (message IS DISTINCT FROM 'poison')",
    );
    let mut input = String::new();
    for i in 0..500 {
        let msg = if i % 100 == 7 {
            "poison".to_string()
        } else {
            format!("m{i}")
        };
        input.push_str(&format!(
            "{{\"levelname\":\"INFO\",\"message\":\"{msg}\"}}\n"
        ));
    }
    let (r, v) = ingest_stdin(
        &url,
        input.as_bytes(),
        &["--received-at", &at(-8 * 86_400)],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(v["stored"], 495, "{v}");
    let (v, deleted) = purge_at_t0(&url, &["--dry-run"], &[]);
    assert_eq!(deleted, (0, 495), "{v}");
    let (v, deleted) = purge_at_t0(&url, &[], &[]);
    assert_eq!(deleted, (0, 495), "{v}");
    assert_eq!(messages(&url), "");
}

/// A batch whose COPY was cut off by a lost connection is settled on the next connection: when
/// its rows are there (the COPY had committed before the connection died) they are counted and
/// not stored again; when they are not, they are stored.
#[test]
fn a_batch_in_doubt_after_a_lost_connection_is_stored_exactly_once() {
    use kasm_db::logs::copy::{Row, copy_once};
    let url = migrated_db();
    let when = at(0);
    // Creates the partitions of T0 for both classes.
    put(&url, "DEBUG", "first", &when);
    put(&url, "INFO", "first", &when);
    let ingest_date = chrono::DateTime::parse_from_rfc3339(&when)
        .unwrap()
        .with_timezone(&chrono::Utc);
    let rows = |tag: &str| -> Vec<Row> {
        (0..10)
            .map(|i| {
                let level = if i % 3 == 0 { "DEBUG" } else { "ERROR" };
                let line = format!("{{\"levelname\":\"{level}\",\"message\":\"{tag}-{i}\"}}");
                Row {
                    log_id: uuid::Uuid::new_v4(),
                    ingest_date,
                    record: kasm_db::logs::record::parse_str(&line).unwrap(),
                    origin: (0, i),
                }
            })
            .collect()
    };
    let count = |tag: &str| {
        psql(
            &url,
            &format!("SELECT count(*) FROM logs WHERE message LIKE '{tag}-%'"),
        )
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        // Committed before the connection died: found, counted, not stored again.
        let committed = rows("committed");
        let refs: Vec<&Row> = committed.iter().collect();
        copy_once(&client, "public", &refs).await.unwrap();
        let mut job = kasm_db::testing::store_job_after_lost_connection(committed.len());
        job.run(&client, "public", &committed).await.unwrap();
        assert_eq!((job.out.stored, job.out.stored_debug), (10, 4));
        // Never committed: stored now.
        let lost = rows("lost");
        let mut job = kasm_db::testing::store_job_after_lost_connection(lost.len());
        job.run(&client, "public", &lost).await.unwrap();
        assert_eq!((job.out.stored, job.out.stored_debug), (10, 4));
    });
    assert_eq!(count("committed"), "10");
    assert_eq!(count("lost"), "10");
}
