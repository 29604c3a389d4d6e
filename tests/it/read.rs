//! Issue 24, the read side, against real PostgreSQL: `kasm-db logs` (filters, pages without a
//! gap or an overlap while records are written, context, counts, CSV, bad input), its tail
//! (several writers at once, a record committed late with an earlier time, a database
//! restart: each record printed exactly once), and the read API of a real `serve` (tokens,
//! pages, the SSE stream resumed with Last-Event-ID, export, context, facets, volume).

use crate::common::serve::*;
use crate::common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

const READ_TOKEN: &str = "r3ad-token-for-tests-77c1";

/// `n` Kasm-like records: hosts h0..h2, levels cycling, users u0..u4, message "msg <tag> i".
fn records(tag: &str, n: usize) -> String {
    let levels = ["INFO", "DEBUG", "WARNING", "ERROR", "CRITICAL"];
    (0..n)
        .map(|i| {
            serde_json::json!({
                "levelname": levels[i % 5],
                "host": format!("h{}", i % 3),
                "application": format!("app{}", i % 2),
                "kasm_user_name": format!("u{}", i % 5),
                "message": format!("msg {tag} {i}"),
                "status": if i % 7 == 0 { 500 } else { 200 },
                "nested": {"k": format!("v{}", i % 4)},
            })
            .to_string()
                + "\n"
        })
        .collect()
}

fn ingest(url: &str, ndjson: &str) {
    let r = run_with_stdin(kasm_db(&["ingest", "--db", url, "--json"]), ndjson);
    assert_eq!(r.code, 0, "ingest failed: {}", r.stderr);
}

fn logs(url: &str, args: &[&str]) -> Run {
    let mut all = vec!["logs", "--db", url];
    all.extend_from_slice(args);
    run(kasm_db(&all))
}

fn ndjson(r: &Run) -> Vec<Value> {
    assert_eq!(r.code, 0, "logs failed: {}", r.stderr);
    r.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn ids(v: &[Value]) -> Vec<String> {
    v.iter()
        .map(|r| r["log_id"].as_str().unwrap().to_string())
        .collect()
}

fn migrated_db() -> String {
    let url = fresh_db();
    let r = run(kasm_db(&["migrate", "--db", &url]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    url
}

#[test]
fn logs_filters_counts_context_csv_and_bad_input() {
    let url = migrated_db();
    ingest(&url, &records("a", 300));
    let special = [
        r#"{"levelname":"INFO","message":"it's 100% _done_ \"q\"","host":"hq"}"#,
        r#"{"levelname":"INFO","message":"it is 1000 done","host":"hq"}"#,
    ]
    .join("\n");
    ingest(&url, &special);

    // Every field of the contract, oldest first, the newest N.
    let all = ndjson(&logs(&url, &["-n", "1000", "--json"]));
    assert_eq!(all.len(), 302);
    for k in [
        "log_id",
        "cursor",
        "ingest_date",
        "log_time",
        "levelname",
        "host",
        "application",
        "kasm_user_name",
        "message",
        "data",
    ] {
        assert!(all[0].get(k).is_some(), "field {k} missing: {}", all[0]);
    }
    let newest3 = ndjson(&logs(&url, &["-n", "3", "--json"]));
    assert_eq!(ids(&newest3), ids(&all[299..]));
    assert_eq!(newest3[2]["host"], "hq");

    // Filters against the same questions asked in SQL.
    let count = |sql: &str| -> usize { psql(&url, sql).parse().unwrap() };
    let got = ndjson(&logs(
        &url,
        &[
            "-n",
            "1000",
            "--json",
            "--host",
            "h1",
            "--level",
            "error,critical",
        ],
    ));
    assert_eq!(
        got.len(),
        count("SELECT count(*) FROM logs WHERE host = 'h1' AND levelname IN ('ERROR','CRITICAL')")
    );
    assert!(got.iter().all(|r| r["host"] == "h1"));
    let got = ndjson(&logs(
        &url,
        &["-n", "1000", "--json", "--min-level", "warn"],
    ));
    assert_eq!(
        got.len(),
        count("SELECT count(*) FROM logs WHERE levelname IN ('WARNING','ERROR','CRITICAL')")
    );
    // --grep is text: % and _ and quotes match themselves, case-insensitively.
    let got = ndjson(&logs(&url, &["--json", "--grep", "IT'S 100% _DONE_ \"Q\""]));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(ndjson(&logs(&url, &["--json", "--grep", "100%_"])).len(), 0);
    let got = ndjson(&logs(
        &url,
        &[
            "-n",
            "1000",
            "--json",
            "--where",
            "status=500",
            "--where",
            "nested.k=v0",
        ],
    ));
    assert_eq!(
        got.len(),
        count(
            "SELECT count(*) FROM logs WHERE data->>'status' = '500' AND data#>>'{nested,k}' = 'v0'"
        )
    );
    assert!(!got.is_empty());
    let got = ndjson(&logs(
        &url,
        &["-n", "1000", "--json", "--user", "u3", "--app", "app1"],
    ));
    assert_eq!(
        got.len(),
        count("SELECT count(*) FROM logs WHERE kasm_user_name = 'u3' AND application = 'app1'")
    );
    // Time: the future holds nothing, a span back holds everything.
    assert_eq!(
        ndjson(&logs(&url, &["--json", "--since", "2999-01-01T00:00:00Z"])).len(),
        0
    );
    assert_eq!(
        ndjson(&logs(&url, &["--json", "-n", "1000", "--since", "1h"])).len(),
        302
    );
    assert_eq!(
        ndjson(&logs(&url, &["--json", "--until", "2000-01-01T00:00:00Z"])).len(),
        0
    );

    // Counts as SQL counts them.
    let r = logs(&url, &["--count-by", "host", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let counts = json(&r)["counts"].clone();
    for h in ["h0", "h1", "h2", "hq"] {
        assert_eq!(
            counts[h].as_u64().unwrap() as usize,
            count(&format!("SELECT count(*) FROM logs WHERE host = '{h}'"))
        );
    }
    let text = logs(&url, &["--count-by", "level"]).stdout;
    assert!(text.contains("CRITICAL"), "{text}");

    // Context: two before, the record, two after, in order.
    let mid = &all[150];
    let ctx = ndjson(&logs(
        &url,
        &[
            "--around",
            mid["log_id"].as_str().unwrap(),
            "-C",
            "2",
            "--json",
        ],
    ));
    assert_eq!(ids(&ctx), ids(&all[148..153]));
    let r = logs(&url, &["--around", "01234567-89ab-7def-8123-456789abcdef"]);
    assert_eq!(
        r.code, 1,
        "a missing record is a failed lookup: {}",
        r.stderr
    );

    // CSV: a header and one row per record, quotes doubled.
    let r = logs(&url, &["--csv", "--host", "hq"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut lines = r.stdout.split("\r\n").filter(|l| !l.is_empty());
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("log_id,cursor,ingest_date")
    );
    assert_eq!(lines.clone().count(), 2);
    assert!(
        r.stdout.contains("\"it's 100% _done_ \"\"q\"\"\""),
        "{}",
        r.stdout
    );

    // Text lines: one per record, nothing else on stdout.
    let r = logs(&url, &["-n", "7"]);
    assert_eq!(r.stdout.lines().count(), 7, "{}", r.stdout);

    // Bad input: exit 2 with the reason, nothing on stdout.
    for (args, why) in [
        (vec!["--since", "yesterday"], "RFC 3339"),
        (vec!["--level", "loud"], "unknown level"),
        (vec!["--where", "novalue"], "KEY=VALUE"),
        (vec!["-n", "ten"], "invalid value"),
        (vec!["--before", "not-a-cursor"], "cursor"),
        (vec!["--after", "AAAA"], "cursor"),
        (vec!["--around", "nope"], "log_id"),
        (vec!["--count-by", "message"], "level, app, host or user"),
        (vec!["--level", "debug", "--min-level", "error"], "no level"),
    ] {
        let r = logs(&url, &args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(why), "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
    }

    // A database without kasm-db's schema: the reason and what to do.
    let bare = fresh_db();
    let r = logs(&bare, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("kasm-db migrate"), "{}", r.stderr);
}

#[test]
fn pages_have_no_gap_or_overlap_while_records_are_written() {
    let url = migrated_db();
    ingest(&url, &records("old", 500));
    let total_before = 500;

    // Walk back from the newest in pages of 37 while more records arrive at the top.
    let first = ndjson(&logs(&url, &["-n", "37", "--json"]));
    let mut seen: Vec<String> = ids(&first);
    let mut oldest = first[0]["cursor"].as_str().unwrap().to_string();
    let mut round = 0;
    loop {
        if round < 3 {
            ingest(&url, &records(&format!("new{round}"), 40));
        }
        round += 1;
        let page = ndjson(&logs(&url, &["-n", "37", "--json", "--before", &oldest]));
        if page.is_empty() {
            break;
        }
        let mut got = ids(&page);
        got.extend(seen);
        seen = got;
        oldest = page[0]["cursor"].as_str().unwrap().to_string();
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a record was printed twice");
    assert_eq!(
        seen.len(),
        total_before,
        "every record older than the first page, once"
    );

    // Forward from the oldest: every record, each once, in order, the new ones included.
    let all = ndjson(&logs(&url, &["-n", "100000", "--json"]));
    assert_eq!(all.len(), 620);
    let mut walked = Vec::new();
    let mut after = all[0]["cursor"].as_str().unwrap().to_string();
    walked.push(all[0]["log_id"].as_str().unwrap().to_string());
    loop {
        let page = ndjson(&logs(&url, &["-n", "53", "--json", "--after", &after]));
        if page.is_empty() {
            break;
        }
        after = page.last().unwrap()["cursor"].as_str().unwrap().to_string();
        walked.extend(ids(&page));
    }
    assert_eq!(walked, ids(&all));
}

/// Lines printed by a running `logs -f`, collected by a thread.
struct Follower {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// The thread collecting `lines`: done once the child's stdout is closed.
    collector: std::thread::JoinHandle<()>,
    stderr: tempfile::NamedTempFile,
}

impl Follower {
    fn start(url: &str, args: &[&str]) -> Follower {
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let mut all = vec!["logs", "--db", url, "-f", "--json"];
        all.extend_from_slice(args);
        let mut child = kasm_db(&all)
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().unwrap())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        let collector = std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines() {
                match l {
                    Ok(l) => sink.lock().unwrap().push(l),
                    Err(_) => break,
                }
            }
        });
        Follower {
            child,
            lines,
            collector,
            stderr,
        }
    }
    fn count(&self) -> usize {
        self.lines.lock().unwrap().len()
    }
    fn wait_for(&self, n: usize, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while self.count() < n {
            assert!(
                Instant::now() < deadline,
                "{what}: {} of {n} lines; stderr: {}",
                self.count(),
                std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    /// Ctrl-C; the exit code and every line printed.
    fn stop(mut self) -> (i32, Vec<Value>) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let status = self.child.wait().unwrap();
        // Every line it printed: the collector ends at the end of its stdout.
        self.collector.join().unwrap();
        let lines = self.lines.lock().unwrap().clone();
        (
            status.code().unwrap_or(-1),
            lines
                .iter()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect(),
        )
    }
}

#[test]
fn follow_prints_each_record_once_across_writers_a_late_commit_and_a_restart() {
    // A cluster of its own: this test restarts it.
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let mut cluster = kasm_db::pgtemp::Cluster::start(&env).expect("start postgres");
    let db = cluster.fresh_db("follow").unwrap();
    let url = cluster.url(&db);
    assert_eq!(run(kasm_db(&["migrate", "--db", &url])).code, 0);
    ingest(&url, &records("before", 20));

    let f = Follower::start(&url, &["-n", "5"]);
    f.wait_for(5, "the newest 5");

    // A transaction that writes a record dated an hour back and commits after the writers.
    let late = std::process::Command::new(cluster.bindir.join("psql"))
        .args(["-X", "-q", "-d", &url, "-c"])
        .arg(
            "BEGIN; INSERT INTO logs (log_id, ingest_date, levelname, message, data) \
             VALUES (gen_random_uuid(), now() - interval '1 hour', 'INFO', 'late commit', '{}'); \
             SELECT pg_sleep(4); COMMIT;",
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Two writers at once.
    let writers: Vec<_> = ["w1", "w2"]
        .into_iter()
        .map(|w| {
            let url = url.clone();
            std::thread::spawn(move || {
                for round in 0..4 {
                    ingest(&url, &records(&format!("{w}-{round}"), 500));
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let late_status = { late }.wait_with_output().unwrap().status;
    assert!(late_status.success());
    f.wait_for(5 + 4000 + 1, "the writers' records and the late one");

    // The database stops under the tail (which waits it out) and starts again; the tail resumes
    // after the last record it printed.
    cluster.stop().unwrap();
    // The point: the database stays down a while (the tail retries through it).
    std::thread::sleep(Duration::from_millis(1500));
    cluster.restart().unwrap();
    ingest(&url, &records("after-restart", 50));
    f.wait_for(5 + 4000 + 1 + 50, "the records written after the restart");
    let said = std::fs::read_to_string(f.stderr.path()).unwrap_or_default();
    assert!(
        said.contains("lost the database"),
        "the tail saw no outage: {said}"
    );
    assert!(said.contains("resumes where it was"), "{said}");
    std::thread::sleep(Duration::from_millis(800)); // anything extra would be a duplicate
    let (code, printed) = f.stop();
    assert_eq!(code, 0, "Ctrl-C ends a tail with exit 0");

    let printed_ids = ids(&printed);
    let unique: BTreeSet<&String> = printed_ids.iter().collect();
    assert_eq!(
        unique.len(),
        printed_ids.len(),
        "a record was printed twice"
    );
    assert_eq!(printed.len(), 5 + 4000 + 1 + 50);
    assert!(printed.iter().any(|r| r["message"] == "late commit"));
    // Everything stored since the tail began, exactly: the database agrees.
    let stored: usize = cluster
        .psql(&db, "SELECT count(*) FROM logs")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(stored, 20 + 4000 + 1 + 50);
    // Each writer's records in the order it wrote them (its batches in order, and within a
    // transaction, whose records become visible at once, the order they were received in).
    for w in ["w1", "w2"] {
        let seq: Vec<(usize, usize)> = printed
            .iter()
            .filter_map(|r| r["message"].as_str())
            .filter_map(|m| m.strip_prefix(&format!("msg {w}-")))
            .map(|rest| {
                let (round, i) = rest.split_once(' ').unwrap();
                (round.parse().unwrap(), i.parse().unwrap())
            })
            .collect();
        let mut sorted = seq.clone();
        sorted.sort();
        assert_eq!(seq.len(), 2000);
        assert_eq!(seq, sorted, "{w} out of order");
    }

    // Resuming a tail from a cursor it printed prints exactly what came after it.
    let mid = printed[100]["cursor"].as_str().unwrap().to_string();
    let f2 = Follower::start(&url, &["--after", &mid]);
    f2.wait_for(printed.len() - 101, "the resumed tail");
    // Time for a line too many to show up (none must).
    std::thread::sleep(Duration::from_millis(500));
    let (_, resumed) = f2.stop();
    assert_eq!(ids(&resumed), printed_ids[101..].to_vec());
}

fn get(s: &Server, path: &str, auth: Option<&str>) -> Resp {
    let h;
    let headers: Vec<(&str, &str)> = match auth {
        Some(t) => {
            h = format!("Bearer {t}");
            vec![("Authorization", h.as_str())]
        }
        None => vec![],
    };
    http(s.port, "GET", path, &headers, b"")
}

/// Up to `n` SSE events from `path` (after `last_id` when given), within `limit`.
fn sse(
    port: u16,
    path: &str,
    last_id: Option<&str>,
    n: usize,
    limit: Duration,
    opened: Option<std::sync::mpsc::Sender<()>>,
) -> Vec<(String, Value)> {
    // Told once the response's head is in: the stream's starting point is fixed by then.
    let mut opened = opened;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nAuthorization: Bearer {READ_TOKEN}\r\n"
    );
    if let Some(id) = last_id {
        req.push_str(&format!("Last-Event-ID: {id}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let deadline = Instant::now() + limit;
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    let events = |raw: &[u8]| -> Vec<(String, Value)> {
        let text = String::from_utf8_lossy(raw);
        let mut out = Vec::new();
        let mut id = None;
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("id: ") {
                id = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("data: ") {
                out.push((id.take().unwrap(), serde_json::from_str(v).unwrap()));
            }
        }
        out
    };
    while Instant::now() < deadline && events(&raw).len() < n {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => raw.extend_from_slice(&buf[..k]),
            Err(_) => {}
        }
        if raw.windows(4).any(|w| w == b"\r\n\r\n") {
            if let Some(tx) = opened.take() {
                let _ = tx.send(());
            }
        }
    }
    assert!(
        String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    events(&raw)
}

#[test]
fn the_read_api_tokens_pages_stream_export_and_context() {
    let url = migrated_db();
    ingest(&url, &records("api", 250));
    let hostile = r#"{"levelname":"ERROR","host":"evil","message":"<script>window.pwned=1</script><img src=x onerror=\"window.pwned=1\">"}"#;
    ingest(&url, hostile);

    // Without a read token: no read endpoint at all.
    {
        let s = Server::start(&url, &[]);
        assert_eq!(get(&s, "/api/v1/logs/facets", Some(TOKEN)).status, 404);
        assert_ne!(get(&s, "/api/v1/logs", Some(TOKEN)).status, 200);
    }
    // The same token for both is refused.
    let r = run(kasm_db(&["serve", "--db", &url])
        .env("KASM_DB_SERVER_TOKEN", "same-token")
        .env("KASM_DB_SERVER_READ_TOKEN", "same-token")
        .env("KASM_DB_SERVER_LISTEN", "127.0.0.1:0"));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(!r.stderr.contains("same-token"), "{}", r.stderr);

    let s = Server::start(&url, &[("KASM_DB_SERVER_READ_TOKEN", READ_TOKEN)]);
    // Tokens: none 401, the ingest token 403, a wrong one 401; writing with the read token 403.
    assert_eq!(get(&s, "/api/v1/logs", None).status, 401);
    assert_eq!(get(&s, "/api/v1/logs", Some(TOKEN)).status, 403);
    assert_eq!(get(&s, "/api/v1/logs", Some("nope")).status, 401);
    let read_auth = format!("Bearer {READ_TOKEN}");
    let w = s.post(
        "/api/v1/logs",
        &[("Authorization", &read_auth)],
        b"{\"message\":\"x\"}\n",
    );
    assert_eq!(w.status, 403, "{w:?}");
    let w = s.post(
        "/services/collector/event",
        &[("Authorization", &format!("Splunk {READ_TOKEN}"))],
        b"{\"event\":{\"message\":\"x\"}}",
    );
    assert_eq!(w.status, 403, "{w:?}");
    for r in [
        get(&s, "/api/v1/logs?since=yesterday", Some(READ_TOKEN)),
        get(&s, "/api/v1/logs?limit=many", Some(READ_TOKEN)),
        get(&s, "/api/v1/logs?before=zz", Some(READ_TOKEN)),
        get(&s, "/api/v1/logs/volume?bucket=0", Some(READ_TOKEN)),
        get(&s, "/api/v1/logs/export?format=xml", Some(READ_TOKEN)),
    ] {
        assert_eq!(r.status, 400, "{r:?}");
        assert!(!r.body.contains(READ_TOKEN));
    }

    // Pages newest first, `next` to older ones, every record once.
    let mut seen = Vec::new();
    let mut path = "/api/v1/logs?limit=40".to_string();
    loop {
        let r = get(&s, &path, Some(READ_TOKEN));
        assert_eq!(r.status, 200, "{r:?}");
        let v = r.json();
        let page = v["records"].as_array().unwrap().clone();
        seen.extend(ids(&page));
        match v["next"].as_str() {
            Some(next) => path = format!("/api/v1/logs?limit=40&before={next}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 251);
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 251);
    // Filters, the hostile message as a JSON string.
    let v = get(&s, "/api/v1/logs?host=evil&level=error", Some(READ_TOKEN)).json();
    assert_eq!(v["records"].as_array().unwrap().len(), 1);
    assert!(
        v["records"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("<script>")
    );
    let q = get(
        &s,
        "/api/v1/logs?q=MSG%20API%2012&min_level=debug&limit=1000",
        Some(READ_TOKEN),
    )
    .json();
    assert_eq!(
        q["records"].as_array().unwrap().len(),
        11,
        "msg api 12, 120..129"
    );

    // Facets and volume count what is stored.
    let f = get(&s, "/api/v1/logs/facets", Some(READ_TOKEN)).json();
    let sum: i64 = f["hosts"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(sum, 251);
    assert_eq!(f["levels"]["CRITICAL"], 50);
    let vol = get(
        &s,
        "/api/v1/logs/volume?since=1h&bucket=5m",
        Some(READ_TOKEN),
    )
    .json();
    let buckets = vol["buckets"].as_array().unwrap();
    assert!(buckets.len() >= 12);
    let total: i64 = buckets
        .iter()
        .flat_map(|b| b["counts"].as_object().unwrap().values())
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(total, 251);

    // Context of one record.
    let one = &get(&s, "/api/v1/logs?limit=3", Some(READ_TOKEN)).json()["records"][1];
    let c = get(
        &s,
        &format!(
            "/api/v1/logs/{}/context?n=1",
            one["log_id"].as_str().unwrap()
        ),
        Some(READ_TOKEN),
    )
    .json();
    assert_eq!(c["record"]["log_id"], one["log_id"]);
    assert_eq!(c["before"].as_array().unwrap().len(), 1);
    assert_eq!(c["after"].as_array().unwrap().len(), 1);
    assert_eq!(
        get(
            &s,
            "/api/v1/logs/01234567-89ab-7def-8123-456789abcdef/context",
            Some(READ_TOKEN)
        )
        .status,
        404
    );

    // Export: every matching record, NDJSON or CSV.
    let e = get(&s, "/api/v1/logs/export?format=ndjson", Some(READ_TOKEN));
    assert_eq!(e.status, 200);
    assert!(e.headers.contains("attachment"), "{}", e.headers);
    assert_eq!(e.body.lines().count(), 251);
    let e = get(
        &s,
        "/api/v1/logs/export?format=csv&host=h2",
        Some(READ_TOKEN),
    );
    let rows = e.body.split("\r\n").filter(|l| !l.is_empty()).count();
    assert_eq!(rows, 1 + 83, "a header and host h2's 83 records");

    // The stream: new records as events, id = cursor; Last-Event-ID resumes after it.
    let port = s.port;
    let (opened, is_open) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        sse(
            port,
            "/api/v1/logs/stream?level=warning",
            None,
            3,
            Duration::from_secs(30),
            Some(opened),
        )
    });
    is_open
        .recv_timeout(Duration::from_secs(30))
        .expect("the stream to open (its response head)");
    ingest(&url, &records("live", 15)); // 3 of them WARNING
    let events = reader.join().unwrap();
    assert_eq!(events.len(), 3, "{events:?}");
    for (id, rec) in &events {
        assert_eq!(rec["cursor"].as_str().unwrap(), id);
        assert_eq!(rec["levelname"], "WARNING");
    }
    let again = sse(
        s.port,
        "/api/v1/logs/stream?level=warning",
        Some(&events[0].0),
        2,
        Duration::from_secs(30),
        None,
    );
    assert_eq!(
        again.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(),
        events[1..]
            .iter()
            .map(|(id, _)| id.clone())
            .collect::<Vec<_>>()
    );
    // Nothing secret in what serve logged.
    assert!(!s.stderr().contains(READ_TOKEN));
}
