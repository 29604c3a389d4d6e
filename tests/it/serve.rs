//! `kasm-db serve`, run as the real binary: auth, gzip, HEC, 413, health following the
//! database, acknowledged records being in the database (also after kill -9), one replica per
//! scheduled slot, SIGTERM, starting before the database (spool or 503, then migrate and load;
//! errors retrying cannot heal stop it). HTTP is spoken over a plain TcpStream to 127.0.0.1 only.

use crate::common::hec;

use crate::common::serve::*;
use crate::common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

fn count(url: &str, filter: &str) -> u64 {
    psql(url, &format!("SELECT count(*) FROM logs {filter}"))
        .parse()
        .unwrap()
}

#[test]
fn ingest_endpoints_auth_gzip_hec_limits_and_sigterm() {
    let url = fresh_db();
    let mut s = Server::start(&url, &[("KASM_DB_SERVER_MAX_BODY_BYTES", "4096")]);
    let ndjson = b"{\"levelname\":\"INFO\",\"message\":\"m1\",\"host\":\"h\"}\nnot json\n\n{\"levelname\":\"DEBUG\",\"message\":\"m2\"}\n";

    // Auth: missing, wrong, wrong scheme -> 401; nothing stored.
    assert_eq!(s.post("/api/v1/logs", &[], ndjson).status, 401);
    let wrong = format!("Bearer {TOKEN}x");
    assert_eq!(
        s.post("/api/v1/logs", &[("Authorization", &wrong)], ndjson)
            .status,
        401
    );
    let basic = format!("Basic {TOKEN}");
    assert_eq!(
        s.post("/api/v1/logs", &[("Authorization", &basic)], ndjson)
            .status,
        401
    );
    assert_eq!(count(&url, ""), 0);

    // Bearer: NDJSON with one bad line.
    let r = s.post("/api/v1/logs", &[("Authorization", &bearer())], ndjson);
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    assert_eq!(
        (v["accepted"].as_u64(), v["rejected"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(v["errors"][0]["index"], 2);
    assert_eq!(count(&url, "WHERE message IN ('m1','m2')"), 2);

    // Splunk scheme, a JSON array.
    let splunk = format!("Splunk {TOKEN}");
    let r = s.post(
        "/api/v1/logs",
        &[
            ("Authorization", &splunk),
            ("Content-Type", "application/json"),
        ],
        br#"[{"levelname":"ERROR","message":"a1"},{"level":"warn","message":"a2"}]"#,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["accepted"], 2);
    assert_eq!(count(&url, "WHERE message IN ('a1','a2')"), 2);
    assert_eq!(
        count(&url, "WHERE message = 'a2' AND levelname = 'WARNING'"),
        1
    );

    // gzip body.
    let z = gzip(b"{\"message\":\"g1\"}\n{\"message\":\"g2\"}\n{\"message\":\"g3\"}\n");
    let r = s.post(
        "/api/v1/logs",
        &[("Authorization", &bearer()), ("Content-Encoding", "gzip")],
        &z,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["accepted"], 3);
    assert_eq!(count(&url, "WHERE message LIKE 'g_'"), 3);

    // HEC: auth codes, success, concatenated envelopes, a bad event refuses the request.
    let r = s.post("/services/collector/event", &[], b"{\"event\":{}}");
    assert_eq!(
        (r.status, r.json()["code"].as_u64()),
        (401, Some(2)),
        "{r:?}"
    );
    let r = s.post(
        "/services/collector/event",
        &[("Authorization", "Splunk nope")],
        b"{\"event\":{}}",
    );
    assert_eq!(
        (r.status, r.json()["code"].as_u64()),
        (403, Some(4)),
        "{r:?}"
    );
    let hec = br#"{"event":{"levelname":"INFO","message":"h1"},"host":"kasm-1","time":1764000000.25}{"event":"h2 plain","host":"kasm-2"}
{"event":{"message":"h3"}}"#;
    let r = s.post(
        "/services/collector/event",
        &[("Authorization", &splunk)],
        hec,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json(), serde_json::json!({"text": "Success", "code": 0}));
    assert_eq!(count(&url, "WHERE message IN ('h1','h2 plain','h3')"), 3);
    assert_eq!(
        count(
            &url,
            "WHERE message = 'h1' AND host = 'kasm-1' AND log_time IS NOT NULL"
        ),
        1
    );
    let r = s.post(
        "/services/collector",
        &[("Authorization", &splunk)],
        br#"{"event":{"message":"x1"}}{"host":"no event"}"#,
    );
    assert_eq!(
        (r.status, r.json()["code"].as_u64()),
        (400, Some(12)),
        "{r:?}"
    );
    assert_eq!(r.json()["invalid-event-number"], 1);
    assert_eq!(
        count(&url, "WHERE message = 'x1'"),
        0,
        "a refused HEC request stores nothing"
    );
    let r = s.post("/services/collector", &[("Authorization", &splunk)], b"");
    assert_eq!(r.json()["code"], 5);

    // 413: declared length, chunked without a length, and a gzip body that inflates too much.
    let big = vec![b' '; 5000];
    assert_eq!(
        s.post("/api/v1/logs", &[("Authorization", &bearer())], &big)
            .status,
        413
    );
    let mut chunked = Vec::new();
    for _ in 0..5 {
        chunked.extend_from_slice(b"3E8\r\n");
        chunked.extend_from_slice(&[b' '; 1000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let r = s.post(
        "/api/v1/logs",
        &[
            ("Authorization", &bearer()),
            ("Transfer-Encoding", "chunked"),
        ],
        &chunked,
    );
    assert_eq!(r.status, 413, "{r:?}");
    let mut bomb = Vec::new();
    for i in 0..200 {
        bomb.extend_from_slice(format!("{{\"message\":\"bomb {i}\"}}\n").as_bytes());
    }
    let z = gzip(&bomb);
    assert!(z.len() < 4096 && bomb.len() > 4096);
    let r = s.post(
        "/api/v1/logs",
        &[("Authorization", &bearer()), ("Content-Encoding", "gzip")],
        &z,
    );
    assert_eq!(r.status, 413, "{r:?}");
    let r = s.post(
        "/services/collector/event",
        &[("Authorization", &splunk)],
        &big,
    );
    assert_eq!(r.status, 413);
    assert_eq!(count(&url, "WHERE message LIKE 'bomb%'"), 0);

    // Health and metrics.
    let h = s.get("/api/__healthcheck");
    assert_eq!((h.status, h.json()), (200, serde_json::json!({"ok": true})));
    let m = s.get("/metrics");
    assert_eq!(m.status, 200);
    assert!(
        m.body
            .contains("kasm_db_ingested_total{class=\"logs\",source=\"http\"} 6\n"),
        "{}",
        m.body
    );
    assert!(
        m.body
            .contains("kasm_db_ingested_total{class=\"debug\",source=\"http\"} 1\n"),
        "{}",
        m.body
    );
    assert!(
        m.body
            .contains("kasm_db_ingested_total{class=\"logs\",source=\"hec\"} 3\n"),
        "{}",
        m.body
    );
    assert!(
        m.body
            .contains("kasm_db_rejected_total{source=\"http\"} 1\n"),
        "{}",
        m.body
    );
    assert!(!m.body.contains(TOKEN));
    assert!(
        m.body
            .contains("# TYPE kasm_db_database_bytes gauge\nkasm_db_database_bytes "),
        "{}",
        m.body
    );

    // SIGTERM: exit 0 within 10 s; the token never appears in the log.
    let code = s.signal_and_wait(libc::SIGTERM, Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", s.stderr());
    let log = s.stderr();
    assert!(log.contains("shutting down"), "{log}");
    assert!(!log.contains(TOKEN), "{log}");
}

#[test]
fn serve_refuses_to_start_without_a_token() {
    let url = fresh_db();
    let r = run(kasm_db(&["serve", "--db", &url]).env(
        "KASM_DB_SERVER_LISTEN",
        format!("127.0.0.1:{}", free_port()),
    ));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("server.token"), "{}", r.stderr);
}

#[test]
fn health_follows_the_database_and_nothing_acknowledged_is_lost() {
    // A cluster of its own: stopping it must not disturb the other tests.
    let mut cluster =
        kasm_db::pgtemp::Cluster::start(&std::env::vars().collect()).expect("start postgres");
    let db = cluster.fresh_db("h").unwrap();
    let url = cluster.url(&db);
    let s = Server::start(&url, &[]);
    let post = |msg: &str| {
        s.post(
            "/api/v1/logs",
            &[("Authorization", &bearer())],
            format!("{{\"message\":\"{msg}\"}}\n").as_bytes(),
        )
    };
    assert_eq!(s.get("/api/__healthcheck").status, 200);
    assert_eq!(post("before").status, 200);

    cluster.stop().unwrap();
    let h = s.get("/api/__healthcheck");
    assert_eq!(h.status, 503, "{h:?}");
    assert_eq!(h.json()["ok"], false);
    let r = post("during");
    assert_eq!(r.status, 503, "never 200 for what is not durable: {r:?}");
    assert!(r.headers.contains("retry-after:"), "{r:?}");
    let r = s.post(
        "/services/collector/event",
        &[("Authorization", &bearer())],
        b"{\"event\":\"during hec\"}",
    );
    assert_eq!(
        (r.status, r.json()["code"].as_u64()),
        (503, Some(9)),
        "{r:?}"
    );

    cluster.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.get("/api/__healthcheck").status != 200 {
        assert!(
            Instant::now() < deadline,
            "health never came back: {}",
            s.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = post("after");
    assert_eq!(r.status, 200, "{r:?}");
    let rows = cluster
        .psql(
            &db,
            "SELECT string_agg(message, ',' ORDER BY message) FROM logs",
        )
        .unwrap();
    assert_eq!(rows, "after,before");
}

#[test]
fn two_replicas_run_each_scheduled_slot_once_and_never_together() {
    let url = fresh_db();
    let env = [("KASM_DB_SCHEDULE_SIZE_SAMPLE", "* * * * * *")];
    let mut a = Server::start(&url, &env);
    let mut b = Server::start(&url, &env);
    // Both replicas contend for a few slots: until some runs are recorded and one replica
    // has met the other's lock or recorded slot.
    wait_until_with(
        Duration::from_secs(60),
        "3 recorded slots and one skipped by a replica",
        || {
            let runs: u64 = psql(
                &url,
                "SELECT count(*) FROM schedule_runs WHERE job = 'size_sample' AND ok",
            )
            .parse()
            .unwrap();
            let skipped = [a.stderr(), b.stderr()]
                .iter()
                .any(|l| l.contains("not running this slot here"));
            runs >= 3 && skipped
        },
        || format!("{}\n{}", a.stderr(), b.stderr()),
    );
    assert_eq!(
        a.signal_and_wait(libc::SIGTERM, Duration::from_secs(15)),
        Some(0),
        "{}",
        a.stderr()
    );
    assert_eq!(
        b.signal_and_wait(libc::SIGTERM, Duration::from_secs(15)),
        Some(0),
        "{}",
        b.stderr()
    );
    let runs: u64 = psql(
        &url,
        "SELECT count(*) FROM schedule_runs WHERE job = 'size_sample' AND ok",
    )
    .parse()
    .unwrap();
    let samples: u64 = psql(&url, "SELECT count(*) FROM size_samples")
        .parse()
        .unwrap();
    assert!(runs >= 2, "runs {runs}; {}", a.stderr());
    // Had both replicas run a slot, there would be more samples than recorded runs.
    assert_eq!(samples, runs);
    let overlapping: u64 = psql(
        &url,
        "SELECT count(*) FROM schedule_runs x JOIN schedule_runs y
           ON x.job = y.job AND x.slot < y.slot AND y.started_at < x.finished_at",
    )
    .parse()
    .unwrap();
    assert_eq!(overlapping, 0);
    let skipped = [a.stderr(), b.stderr()]
        .iter()
        .map(|l| l.matches("not running this slot here").count())
        .sum::<usize>();
    assert!(
        skipped >= 1,
        "the other replica never met the lock or the recorded slot"
    );
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_record() {
    let url = fresh_db();
    let mut s = Server::start(&url, &[]);
    let port = s.port;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for b in 0..10_000 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let body: String = (0..200)
                        .map(|i| format!("{{\"message\":\"c{c}-b{b}-r{i}\"}}\n"))
                        .collect();
                    let mut st = match TcpStream::connect(("127.0.0.1", port)) {
                        Ok(st) => st,
                        Err(_) => break,
                    };
                    st.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    let req = format!(
                        "POST /api/v1/logs HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if st.write_all(req.as_bytes()).is_err() {
                        break;
                    }
                    let mut out = String::new();
                    if st.read_to_string(&mut out).is_err() {
                        break;
                    }
                    if out.starts_with("HTTP/1.1 200") {
                        acked.push(b);
                    } else {
                        break;
                    }
                }
                (c, acked)
            })
        })
        .collect();
    // Under load: killed once a few batches are stored, while the clients keep posting.
    wait_until_with(
        Duration::from_secs(60),
        "8 batches stored under load",
        || count(&url, "WHERE message LIKE 'c%'") >= 8 * 200,
        || s.stderr(),
    );
    assert_eq!(
        s.signal_and_wait(libc::SIGKILL, Duration::from_secs(10)),
        Some(-1)
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked_total = 0;
    for h in clients {
        let (c, acked) = h.join().unwrap();
        for b in &acked {
            let n = count(&url, &format!("WHERE message LIKE 'c{c}-b{b}-r%'"));
            assert_eq!(
                n, 200,
                "client {c} batch {b} was acknowledged but has {n} rows"
            );
        }
        acked_total += acked.len();
    }
    assert!(
        acked_total >= 4,
        "load too light to mean anything: {acked_total} batches"
    );
}

fn append(path: &std::path::Path, from: usize, to: usize) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for i in from..to {
        writeln!(f, "{{\"levelname\":\"INFO\",\"message\":\"f-{i}\"}}").unwrap();
    }
}

fn wait_rows(url: &str, want: u64, s: &Server) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = count(url, "WHERE message LIKE 'f-%'");
        if n >= want {
            // And no more than that: time for a duplicate to be stored (none must).
            std::thread::sleep(Duration::from_millis(500));
            assert_eq!(
                count(url, "WHERE message LIKE 'f-%'"),
                want,
                "{}",
                s.stderr()
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{n} of {want} rows after 120 s: {}",
            s.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn following_files_across_rotation_truncation_and_a_crash_loses_and_duplicates_nothing() {
    let url = fresh_db();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("api_json.log");
    let glob = format!("{}/*_json.log", dir.path().display());
    let env = [("KASM_DB_INGEST_PATHS", glob.as_str())];
    append(&log, 0, 100);
    let mut s = Server::start(&url, &env);
    wait_rows(&url, 100, &s);

    // Rotation: the writer still appends to the renamed file before the new one appears.
    let mut writer = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::fs::rename(&log, dir.path().join("api_json.log.1")).unwrap();
    for i in 100..150 {
        writeln!(writer, "{{\"message\":\"f-{i}\"}}").unwrap();
    }
    drop(writer);
    append(&log, 150, 200);
    wait_rows(&url, 200, &s);

    // Truncation (copytruncate style): the shorter new content is read from the start.
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&log)
        .unwrap();
    append(&log, 200, 210);
    wait_rows(&url, 210, &s);

    // A line half written when the process dies is read whole after the restart.
    {
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(b"{\"message\":\"f-2").unwrap();
    }
    // Time for the follower to read the half line (nothing shows it: it is not stored).
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        s.signal_and_wait(libc::SIGKILL, Duration::from_secs(10)),
        Some(-1)
    );
    {
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(b"10\"}\n").unwrap();
    }
    append(&log, 211, 260);
    let s = Server::start(&url, &env);
    wait_rows(&url, 260, &s);
    let distinct: u64 = psql(
        &url,
        "SELECT count(DISTINCT message) FROM logs WHERE message LIKE 'f-%'",
    )
    .parse()
    .unwrap();
    assert_eq!(distinct, 260);
    let max: String = psql(
        &url,
        "SELECT max(substr(message, 3)::int) FROM logs WHERE message LIKE 'f-%'",
    );
    assert_eq!(max, "259");
    // The current file's offset (by identity: the rotated file's row may still carry the path
    // it was last read under).
    let meta = std::fs::metadata(&log).unwrap();
    let offset = psql(
        &url,
        &format!(
            "SELECT byte_offset FROM follow_offsets WHERE inode = {}",
            std::os::unix::fs::MetadataExt::ino(&meta)
        ),
    );
    assert_eq!(offset, meta.len().to_string());
}

fn metric(s: &Server, series: &str) -> f64 {
    let text = s.get("/metrics").body;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_failing_job_is_logged_counted_and_retried_at_its_next_slot() {
    let url = fresh_db();
    let s = Server::start(&url, &[("KASM_DB_SCHEDULE_SIZE_SAMPLE", "* * * * * *")]);
    let ok = "kasm_db_job_runs_total{job=\"size_sample\",result=\"ok\"}";
    let failed = "kasm_db_job_runs_total{job=\"size_sample\",result=\"failed\"}";
    let wait_for = |series: &str, at_least: f64| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while metric(&s, series) < at_least {
            assert!(
                Instant::now() < deadline,
                "{series} < {at_least}: {}",
                s.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for(ok, 1.0);
    psql(&url, "ALTER TABLE size_samples RENAME TO size_samples_away");
    wait_for(failed, 2.0);
    assert!(s.stderr().contains("job failed; retried at its next slot"));
    let recorded = psql(
        &url,
        "SELECT count(*) FROM schedule_runs WHERE ok = false AND error LIKE '%size_samples%'",
    );
    assert_ne!(recorded, "0");
    psql(&url, "ALTER TABLE size_samples_away RENAME TO size_samples");
    let before = metric(&s, ok);
    wait_for(ok, before + 1.0);
    assert!(metric(&s, "kasm_db_database_bytes") > 0.0);
}

#[test]
fn while_the_database_is_down_records_are_spooled_and_loaded_even_after_kill_9() {
    let mut cluster =
        kasm_db::pgtemp::Cluster::start(&std::env::vars().collect()).expect("start postgres");
    let db = cluster.fresh_db("sp").unwrap();
    let url = cluster.url(&db);
    let spool = tempfile::tempdir().unwrap();
    let spool_dir = spool.path().to_str().unwrap().to_string();
    let env = [
        ("KASM_DB_SERVER_SPOOL_DIR", spool_dir.as_str()),
        ("KASM_DB_SERVER_SPOOL_MAX_BYTES", "6000"),
    ];
    let mut s = Server::start(&url, &env);
    let batch = |b: usize| -> Vec<u8> {
        (0..10)
            .map(|i| format!("{{\"levelname\":\"INFO\",\"message\":\"sp-{b}-{i}\"}}\n"))
            .collect::<String>()
            .into_bytes()
    };
    assert_eq!(
        s.post("/api/v1/logs", &[("Authorization", &bearer())], &batch(0))
            .status,
        200
    );

    cluster.stop().unwrap();
    assert_eq!(s.get("/api/__healthcheck").status, 503);
    let r = s.post(
        "/services/collector/event",
        &[("Authorization", &bearer())],
        br#"{"event":{"message":"sp-hec"},"host":"h9"}"#,
    );
    assert_eq!(
        (r.status, r.json()["code"].as_u64()),
        (200, Some(0)),
        "{r:?}"
    );
    let mut acked = vec![0];
    let mut full = None;
    for b in 1..20 {
        let r = s.post("/api/v1/logs", &[("Authorization", &bearer())], &batch(b));
        if r.status == 200 {
            assert_eq!(r.json()["spooled"], 10, "{r:?}");
            acked.push(b);
        } else {
            full = Some(r);
            break;
        }
    }
    let full = full.expect("the spool never filled");
    assert_eq!(full.status, 503, "{full:?}");
    assert!(full.headers.contains("retry-after:"), "{full:?}");
    assert!(acked.len() >= 3, "{acked:?}");
    assert!(metric(&s, "kasm_db_spool_bytes") > 0.0);

    // Crash while records are only in the spool; a new process loads them once Postgres is back.
    assert_eq!(
        s.signal_and_wait(libc::SIGKILL, Duration::from_secs(10)),
        Some(-1)
    );
    cluster.restart().unwrap();
    let s = Server::start(&url, &env);
    let want = (acked.len() * 10 + 1).to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let q = "SELECT count(*) FROM logs WHERE message LIKE 'sp-%'";
    while cluster.psql(&db, q).unwrap() != want {
        assert!(
            Instant::now() < deadline,
            "rows never loaded: {}",
            s.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Time for a second load to show (none must).
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(cluster.psql(&db, q).unwrap(), want, "loaded twice?");
    for b in &acked {
        let n = cluster
            .psql(
                &db,
                &format!("SELECT count(DISTINCT message) FROM logs WHERE message LIKE 'sp-{b}-%'"),
            )
            .unwrap();
        assert_eq!(n, "10", "batch {b}");
    }
    assert_eq!(
        cluster
            .psql(&db, "SELECT host FROM logs WHERE message = 'sp-hec'")
            .unwrap(),
        "h9"
    );
    let left: Vec<_> = std::fs::read_dir(spool.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(metric(&s, "kasm_db_spool_bytes"), 0.0);
}

/// A CA and a certificate for 127.0.0.1 signed by it, made with the openssl CLI.
fn make_certs(dir: &std::path::Path) {
    let sh = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    sh(&[
        &["req", "-x509"],
        &ec[..],
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=kasm-db test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    ]
    .concat());
    sh(&[
        &["req"],
        &ec[..],
        &[
            "-keyout",
            "key.pem",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    sh(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

fn https(port: u16, ca: &std::path::Path, path: &str, auth: &str, body: &[u8]) -> String {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(kasm_db::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let method = if body.is_empty() { "GET" } else { "POST" };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: {auth}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).unwrap();
    tls.write_all(body).unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out); // a close without close_notify is fine here
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn tls_when_cert_and_key_are_set_and_never_plain_http() {
    let url = fresh_db();
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let (cert_s, key_s) = (cert.to_str().unwrap(), key.to_str().unwrap());

    // Half a TLS configuration is refused (exit 2), never served as plain HTTP.
    let r = run(kasm_db(&["serve", "--db", &url])
        .env(
            "KASM_DB_SERVER_LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("KASM_DB_SERVER_TOKEN", TOKEN)
        .env("KASM_DB_SERVER_TLS_CERT", cert_s));
    assert_eq!(r.code, 2, "{}", r.stderr);

    let s = Server::start_listening(
        &url,
        &[
            ("KASM_DB_SERVER_TLS_CERT", cert_s),
            ("KASM_DB_SERVER_TLS_KEY", key_s),
        ],
    );
    let ca = dir.path().join("ca.pem");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let health = https(s.port, &ca, "/api/__healthcheck", "none", b"");
        if health.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "{health}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = https(
        s.port,
        &ca,
        "/api/v1/logs",
        &bearer(),
        b"{\"message\":\"over tls\"}\n",
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(count(&url, "WHERE message = 'over tls'"), 1);
    let r = https(
        s.port,
        &ca,
        "/api/v1/logs",
        "Bearer wrong",
        b"{\"message\":\"x\"}\n",
    );
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let _ =
        plain.write_all(b"GET /api/__healthcheck HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut out = Vec::new();
    let _ = plain.read_to_end(&mut out);
    assert!(
        !out.starts_with(b"HTTP/"),
        "{}",
        String::from_utf8_lossy(&out)
    );
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_then_exits_0_with_json_logs() {
    let url = fresh_db();
    let mut s = Server::start(&url, &[("KASM_DB_LOG_FORMAT", "json")]);
    // A request whose body is only half sent when the signal arrives.
    let body = b"{\"message\":\"in flight 1\"}\n{\"message\":\"in flight 2\"}\n";
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST /api/v1/logs HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(&body[..10]).unwrap();
    // Time for serve to take the request in (nothing shows a request waiting for its body).
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill on our own child.
    unsafe {
        libc::kill(s.pid(), libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !s.stderr().contains("shutting down") {
        assert!(Instant::now() < deadline, "{}", s.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    // No new connections once shutting down.
    wait_until(Duration::from_secs(5), "serve to stop listening", || {
        TcpStream::connect(("127.0.0.1", s.port)).is_err()
    });
    c.write_all(&body[10..]).unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(count(&url, "WHERE message LIKE 'in flight %'"), 2);
    assert_eq!(
        s.signal_and_wait(0, Duration::from_secs(10)),
        Some(0),
        "{}",
        s.stderr()
    );
    for line in s.stderr().lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
}

/// With a SIEM configured and retention 0 for DEBUG, `serve` hands DEBUG records to the SIEM
/// (durably spooled before the 200) and stores only the others.
#[test]
fn retention_zero_records_go_to_the_siem_not_the_database() {
    let url = fresh_db();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let hec_token = "hec-t0ken-s3cret";
    let receiver = rt.block_on(hec::start(hec_token, false));
    let spool = tempfile::tempdir().unwrap();
    let s = Server::start(
        &url,
        &[
            ("KASM_DB_RETENTION_DEBUG", "0"),
            ("KASM_DB_SIEM_KIND", "splunk-hec"),
            ("KASM_DB_SIEM_URL", receiver.url.as_str()),
            ("KASM_DB_SIEM_TOKEN", hec_token),
            ("KASM_DB_SIEM_SPOOL_DIR", spool.path().to_str().unwrap()),
            ("KASM_DB_SIEM_BATCH_WAIT_MS", "5"),
        ],
    );
    let mut body = String::new();
    for i in 0..50 {
        let level = if i % 2 == 0 { "DEBUG" } else { "ERROR" };
        body.push_str(&format!(
            "{{\"levelname\":\"{level}\",\"message\":\"s{i}\"}}\n"
        ));
    }
    let r = s.post(
        "/api/v1/logs",
        &[("Authorization", &bearer())],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(count(&url, ""), 25);
    assert_eq!(count(&url, "WHERE levelname = 'DEBUG'"), 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.state.events().len() < 25 {
        assert!(
            Instant::now() < deadline,
            "SIEM got {} of 25",
            receiver.state.events().len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        receiver
            .state
            .events()
            .iter()
            .all(|e| e["event"]["levelname"] == "DEBUG")
    );
    // The forwarder's counters are on /metrics, per sink.
    let sent = "kasm_db_forward_sent_total{sink=\"splunk-hec\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&s, sent) < 25.0 {
        assert!(Instant::now() < deadline, "{}", s.get("/metrics").body);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        metric(
            &s,
            "kasm_db_forward_dead_lettered_total{sink=\"splunk-hec\"}"
        ),
        0.0
    );
    assert!(
        s.get("/metrics")
            .body
            .contains("kasm_db_forward_spool_bytes{sink=\"splunk-hec\"}")
    );
    assert!(!s.get("/metrics").body.contains(hec_token));
    assert!(!s.stderr().contains(hec_token), "{}", s.stderr());
}

/// Run `cmd` (stderr to a file) until it exits or `limit` passes; (exit code or None, stderr).
fn run_until_exit(mut cmd: std::process::Command, limit: Duration) -> (Option<i32>, String) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .expect("spawn kasm-db");
    let deadline = Instant::now() + limit;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (
        code,
        std::fs::read_to_string(log.path()).unwrap_or_default(),
    )
}

/// The password in a postgres:// URL (to check that it never reaches a log).
fn password_of(url: &str) -> String {
    let userinfo = url.split('@').next().unwrap();
    userinfo.rsplit(':').next().unwrap().to_string()
}

#[test]
fn started_before_its_database_serve_spools_then_migrates_and_loads_once_it_is_up() {
    // A fresh database, never migrated, on a cluster that is down when serve starts.
    let mut cluster =
        kasm_db::pgtemp::Cluster::start(&std::env::vars().collect()).expect("start postgres");
    let db = cluster.fresh_db("nodb").unwrap();
    let url = cluster.url(&db);
    cluster.stop().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let spool_dir = spool.path().to_str().unwrap().to_string();
    // A spool file with a line that cannot be loaded (issue 26): the good line is stored, the
    // other kept in `.rejected` beside it, never dropped unseen.
    let good = serde_json::json!({
        "log_id": uuid::Uuid::new_v4(), "ingest_date": chrono::Utc::now(), "log_time": null,
        "level": "INFO", "host": null, "application": null, "kasm_user_name": null,
        "message": "byhand-good", "data": "{\"message\":\"byhand-good\"}"
    });
    std::fs::write(
        spool.path().join("00000000000000000000-byhand.ndjson"),
        format!("{good}\n{{\"log_id\": \"torn-line\n"),
    )
    .unwrap();
    let env = [
        ("KASM_DB_SERVER_SPOOL_DIR", spool_dir.as_str()),
        ("KASM_DB_SCHEDULE_SIZE_SAMPLE", "* * * * * *"),
    ];
    let mut s = Server::start_listening(&url, &env);

    // Up and answering while the database is not there.
    let h = s.get("/api/__healthcheck");
    assert_eq!(h.status, 503, "{h:?}");
    assert_eq!(h.json()["ok"], false);
    assert!(
        h.json()["error"].as_str().unwrap().contains("not ready"),
        "{h:?}"
    );
    let batch = |b: usize| -> Vec<u8> {
        (0..5)
            .map(|i| format!("{{\"levelname\":\"INFO\",\"message\":\"early-{b}-{i}\"}}\n"))
            .collect::<String>()
            .into_bytes()
    };
    for b in 0..3 {
        let r = s.post("/api/v1/logs", &[("Authorization", &bearer())], &batch(b));
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.json()["spooled"], 5, "{r:?}");
    }
    let r = s.post(
        "/services/collector/event",
        &[("Authorization", &bearer())],
        br#"{"event":{"levelname":"DEBUG","message":"early-hec"},"host":"h1"}"#,
    );
    assert_eq!(
        (r.status, r.json()["code"].as_u64()),
        (200, Some(0)),
        "{r:?}"
    );
    let m = s.get("/metrics");
    assert_eq!(m.status, 200);
    assert_eq!(metric(&s, "kasm_db_database_up"), 0.0, "{}", m.body);
    assert!(metric(&s, "kasm_db_spool_bytes") > 0.0, "{}", m.body);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !s.stderr().contains("database not ready yet") {
        assert!(Instant::now() < deadline, "no WARN line: {}", s.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(s.child.as_mut().unwrap().try_wait().unwrap().is_none());
    // The scheduler waits for the database.
    assert!(!s.stderr().contains("job started"), "{}", s.stderr());

    // The database appears: schema made, spool loaded exactly once, health and gauge follow.
    cluster.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.get("/api/__healthcheck").status != 200 {
        assert!(
            Instant::now() < deadline,
            "health never came up: {}",
            s.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(metric(&s, "kasm_db_database_up"), 1.0);
    assert_eq!(
        cluster
            .psql(&db, "SELECT max(version) FROM kasm_db_migrations")
            .unwrap(),
        kasm_db::db::migrate::MIGRATIONS
            .last()
            .unwrap()
            .version
            .to_string(),
        "serve migrated the fresh database"
    );
    let q = "SELECT count(*) FROM logs WHERE message LIKE 'early-%'";
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.psql(&db, q).unwrap() != "16" {
        assert!(
            Instant::now() < deadline,
            "spooled rows never loaded ({}): {}",
            cluster.psql(&db, q).unwrap(),
            s.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Time for a second load to show (none must).
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(cluster.psql(&db, q).unwrap(), "16", "loaded twice?");
    assert_eq!(
        cluster
            .psql(
                &db,
                "SELECT count(DISTINCT message) FROM logs WHERE message LIKE 'early-%'"
            )
            .unwrap(),
        "16"
    );
    assert_eq!(
        cluster
            .psql(&db, "SELECT host FROM logs WHERE message = 'early-hec'")
            .unwrap(),
        "h1"
    );
    assert_eq!(
        cluster
            .psql(
                &db,
                "SELECT count(*) FROM logs WHERE message = 'byhand-good'"
            )
            .unwrap(),
        "1"
    );
    let kept =
        std::fs::read_to_string(spool.path().join("00000000000000000000-byhand.rejected")).unwrap();
    assert!(
        kept.contains("torn-line") && kept.contains("unreadable"),
        "{kept}"
    );
    // New records go straight to the database now; the jobs run.
    let r = s.post(
        "/api/v1/logs",
        &[("Authorization", &bearer())],
        b"{\"message\":\"late\"}\n",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        (r.json()["stored"].as_u64(), r.json()["spooled"].as_u64()),
        (Some(1), Some(0))
    );
    let ok = "kasm_db_job_runs_total{job=\"size_sample\",result=\"ok\"}";
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&s, ok) < 1.0 {
        assert!(Instant::now() < deadline, "no job ran: {}", s.stderr());
        std::thread::sleep(Duration::from_millis(200));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let spooled = || {
        std::fs::read_dir(spool.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_none_or(|x| x != "rejected")
            })
            .count()
    };
    while spooled() > 0 {
        assert!(Instant::now() < deadline, "spool not emptied");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        s.signal_and_wait(libc::SIGTERM, Duration::from_secs(10)),
        Some(0),
        "{}",
        s.stderr()
    );
    let log = s.stderr();
    assert!(!log.contains(&password_of(&url)), "{log}");
    assert!(!log.contains(TOKEN), "{log}");
}

#[test]
fn without_a_spool_serve_answers_503_while_waiting_and_sigterm_exits_0_promptly() {
    // Nothing listens on this port: the database "is not up yet", whatever the wait.
    let url = format!(
        "postgres://kasm:s3cret-pw-never-logged@127.0.0.1:{}/kasm_logs",
        free_port()
    );
    let files = tempfile::tempdir().unwrap();
    append(&files.path().join("api_json.log"), 0, 10);
    let glob = format!("{}/*_json.log", files.path().display());
    let env = [
        ("KASM_DB_INGEST_PATHS", glob.as_str()),
        ("KASM_DB_SCHEDULE_SIZE_SAMPLE", "* * * * * *"),
    ];
    let mut s = Server::start_listening(&url, &env);
    let h = s.get("/api/__healthcheck");
    assert_eq!(h.status, 503, "{h:?}");
    let r = s.post(
        "/api/v1/logs",
        &[("Authorization", &bearer())],
        b"{\"message\":\"nowhere\"}\n",
    );
    assert_eq!(r.status, 503, "never 200 for what is not durable: {r:?}");
    assert!(r.headers.contains("retry-after:"), "{r:?}");
    let r = s.post(
        "/services/collector/event",
        &[("Authorization", &bearer())],
        b"{\"event\":\"nowhere hec\"}",
    );
    assert_eq!(
        (r.status, r.json()["code"].as_u64()),
        (503, Some(9)),
        "{r:?}"
    );
    assert!(r.headers.contains("retry-after:"), "{r:?}");
    assert_eq!(s.get("/metrics").status, 200);
    assert_eq!(metric(&s, "kasm_db_database_up"), 0.0);
    // Two seconds of waiting: the jobs and the follower must not have started.
    std::thread::sleep(Duration::from_secs(2));
    let log = s.stderr();
    assert!(log.contains("database not ready yet"), "{log}");
    assert!(log.contains("no server.spool_dir"), "{log}");
    assert!(!log.contains("job started"), "{log}");
    assert!(!log.contains("following"), "{log}");
    assert_eq!(
        log.matches("database not ready yet").count(),
        1,
        "one WARN line, not one per attempt: {log}"
    );

    let asked = Instant::now();
    assert_eq!(
        s.signal_and_wait(libc::SIGTERM, Duration::from_secs(10)),
        Some(0),
        "{}",
        s.stderr()
    );
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "took {:?}",
        asked.elapsed()
    );
    let log = s.stderr();
    assert!(log.contains("shutting down"), "{log}");
    assert!(!log.contains("s3cret-pw-never-logged"), "{log}");
    assert!(!log.contains(TOKEN), "{log}");
}

#[test]
fn errors_that_retrying_will_not_heal_stop_serve_with_the_exit_code_of_migrate() {
    let serve = |url: &str| {
        let mut cmd = kasm_db(&["serve", "--db", url]);
        cmd.env(
            "KASM_DB_SERVER_LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("KASM_DB_SERVER_TOKEN", TOKEN);
        run_until_exit(cmd, Duration::from_secs(60))
    };

    // A wrong password: exit 1 at once, saying why, never showing the password.
    let url = fresh_db();
    let wrong = url.replace(&password_of(&url), "wr0ng-pw-never-logged");
    let (code, log) = serve(&wrong);
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("password authentication failed"), "{log}");
    assert!(!log.contains("wr0ng-pw-never-logged"), "{log}");

    // A database that does not exist.
    let (base, _) = url.rsplit_once('/').unwrap();
    let (code, log) = serve(&format!("{base}/no_such_database"));
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("does not exist"), "{log}");

    // A foreign `logs` table: refused like `migrate` refuses it.
    let url = fresh_db();
    psql(&url, "CREATE TABLE logs (id int)");
    let (code, log) = serve(&url);
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("refusing to migrate"), "{log}");
    assert!(!log.contains(&password_of(&url)), "{log}");
}

/// `/metrics` of a real `serve` read by Prometheus's own Python client
/// (`prometheus_client.parser.text_string_to_metric_families`, installed by `scripts/setup`):
/// every family has its `# HELP` and `# TYPE`, and a backup target whose path holds a
/// backslash, a double quote and a newline comes back as the same label value.
#[test]
fn metrics_parse_with_prometheus_client_help_type_and_escaped_labels() {
    let url = fresh_db();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("back\\slash \"quoted\"\nnew line");
    std::fs::create_dir(&dir).unwrap();
    let to = dir.to_str().unwrap();
    let s = Server::start(
        &url,
        &[
            ("KASM_DB_BACKUP_TO", to),
            ("KASM_DB_SCHEDULE_SIZE_SAMPLE", "* * * * * *"),
        ],
    );
    let r = s.post(
        "/api/v1/logs",
        &[("Authorization", &bearer())],
        b"{\"levelname\":\"INFO\",\"message\":\"m\"}\nnot json\n",
    );
    assert_eq!(r.status, 200, "{r:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = s.get("/metrics").body;
        if text.contains("kasm_db_backup_count{") && text.contains("kasm_db_job_runs_total{") {
            break text;
        }
        assert!(Instant::now() < deadline, "{text}\n{}", s.stderr());
        std::thread::sleep(Duration::from_millis(100));
    };
    let parser = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "help": f.documentation,
                "samples": [{"name": s.name, "labels": s.labels, "value": repr(s.value)}
                            for s in f.samples]})
print(json.dumps(out))
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", parser])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with prometheus_client (scripts/setup installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let families: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(families.len() >= 10, "{families:?}");
    for f in &families {
        assert_ne!(f["type"], "unknown", "no # TYPE: {f}\n{text}");
        assert!(
            !f["help"].as_str().unwrap().is_empty(),
            "no # HELP: {f}\n{text}"
        );
        assert!(f["name"].as_str().unwrap().starts_with("kasm_db_"), "{f}");
    }
    let count = families
        .iter()
        .find(|f| f["name"] == "kasm_db_backup_count")
        .expect("kasm_db_backup_count");
    assert_eq!(count["type"], "gauge");
    assert_eq!(count["samples"][0]["labels"]["target"], to, "{text}");
    let value: f64 = count["samples"][0]["value"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(value, 0.0, "{text}");
    let ingested = families
        .iter()
        .find(|f| f["name"] == "kasm_db_ingested")
        .expect("kasm_db_ingested_total as the counter family kasm_db_ingested");
    assert_eq!(ingested["type"], "counter");
    // One verification gauge only: the per-target one documented in docs/operations.md.
    assert!(!text.contains("backup_last_verify_ok"), "{text}");
}
