//! SIEM forwarding end to end: the Forwarder against a Splunk-like HEC receiver and a real
//! rsyslogd on loopback, the spool across a kill -9, backpressure, and `kasm-db forward`.

use crate::common;
use crate::common::hec;
use crate::common::rsyslog;

use hec::Fault;
use kasm_db::config::SiemConfig;
use kasm_db::forward::{ForwardMetrics, Forwarder};
use kasm_db::logs::record::{Record, parse_str};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

const TOKEN: &str = "11111111-2222-3333-4444-tok3n-s3cr3t";

fn siem(kind: &str, url: &str, token: &str, spool: &Path, extra: &str) -> SiemConfig {
    // Each kind takes only its own keys: a token for HEC and http, the envelope for HEC.
    let own = match kind {
        "splunk-hec" => {
            format!("token = \"{token}\"\nindex = \"kasm\"\nsourcetype = \"kasm:log\"\n")
        }
        "http" => format!("token = \"{token}\"\n"),
        _ => String::new(),
    };
    let text = format!(
        "kind = \"{kind}\"\nurl = \"{url}\"\n{own}spool_dir = \"{}\"\n\
         batch_events = 50\nbatch_wait_ms = 5\nrequest_timeout_secs = 5\n{extra}",
        spool.display()
    );
    toml::from_str(&text).unwrap()
}

fn rec(seq: u64) -> Record {
    parse_str(&format!(
        r#"{{"timestamp":"2026-11-24T10:00:00.{:06}Z","levelname":"INFO","host":"web1","application":"kasm_api","seq":{seq},"message":"event {seq}"}}"#,
        seq % 1_000_000
    ))
    .unwrap()
}

fn recs(range: std::ops::Range<u64>) -> Vec<Record> {
    range.map(rec).collect()
}

async fn submit_all(fw: &Forwarder, records: &[Record]) {
    for chunk in records.chunks(37) {
        fw.submit(chunk).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hec_every_record_arrives_through_busy_drops_and_code_6() {
    // This test's thread only: a global subscriber would take every other test's events too.
    let _log =
        tracing::subscriber::set_default(tracing_subscriber::fmt().with_test_writer().finish());
    let hec = hec::start(TOKEN, false).await;
    hec.state
        .push_faults(&[Fault::Busy, Fault::Drop, Fault::DropAfterIndex, Fault::Busy]);
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(ForwardMetrics::default());
    let fw = Forwarder::start(
        &siem("splunk-hec", &hec.url, TOKEN, dir.path(), ""),
        metrics.clone(),
    )
    .await
    .unwrap();
    let mut records = recs(0..400);
    // One event HEC refuses (code 6, invalid-event-number): dead-lettered, the rest resent.
    records[123] = parse_str(r#"{"levelname":"ERROR","poison":true,"seq":9999}"#).unwrap();
    submit_all(&fw, &records).await;
    let report = fw.finish(Duration::from_secs(60)).await.unwrap();

    let (seqs, receiver_dups) = hec.state.seqs();
    let expected: std::collections::BTreeSet<u64> = (0..400).filter(|s| *s != 123).collect();
    assert_eq!(seqs, expected, "every record but the refused one arrives");
    assert_eq!(report.spooled, 0);
    assert_eq!(report.dead_lettered, 1);
    assert!(report.acknowledged >= 399, "{report:?}");
    // Duplicates happen only where the outcome was unknown, and are reported.
    assert!(receiver_dups > 0, "DropAfterIndex must cause a resend");
    assert!(
        receiver_dups <= report.duplicates,
        "{receiver_dups} > {report:?}"
    );
    let m = metrics.snapshot();
    assert!(m.retried >= 4, "{m:?}");
    assert_eq!(m.dead_lettered, 1);
    assert_eq!(m.spool_bytes, 0);
    // Gzip, the envelope, the token header.
    assert_eq!(
        hec.state.gzip_posts.load(Ordering::Relaxed),
        // Two busy answers and one dropped connection come before decoding; all else is gzip.
        hec.state.posts.load(Ordering::Relaxed) - 3,
    );
    let e = hec
        .state
        .events()
        .into_iter()
        .find(|e| e["event"]["seq"] == 7)
        .unwrap();
    assert_eq!(e["time"].to_string(), "1795514400.000007");
    assert_eq!(
        (e["host"].as_str(), e["index"].as_str()),
        (Some("web1"), Some("kasm"))
    );
    assert_eq!(e["sourcetype"], "kasm:log");
    assert!(
        hec.state
            .auth_headers
            .lock()
            .unwrap()
            .iter()
            .all(|h| h == &format!("Splunk {TOKEN}"))
    );
    let dead = std::fs::read_to_string(dir.path().join("dead-letters.ndjson")).unwrap();
    assert!(
        dead.contains("\"seq\":9999") && dead.contains("code 6"),
        "{dead}"
    );
    assert!(!dead.contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hec_bad_token_is_not_retried_forever_and_never_shown() {
    let hec = hec::start("the-right-token", false).await;
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(ForwardMetrics::default());
    let fw = Forwarder::start(
        &siem("splunk-hec", &hec.url, TOKEN, dir.path(), ""),
        metrics.clone(),
    )
    .await
    .unwrap();
    submit_all(&fw, &recs(0..10)).await;
    let report = fw.finish(Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        (report.acknowledged, report.spooled, report.dead_lettered),
        (0, 0, 10)
    );
    assert!(hec.state.auth_failures.load(Ordering::Relaxed) >= 2);
    assert!(hec.state.events().is_empty());
    let dead = std::fs::read_to_string(dir.path().join("dead-letters.ndjson")).unwrap();
    assert!(
        dead.contains("Invalid token") && dead.contains("403"),
        "{dead}"
    );
    assert!(!dead.contains(TOKEN));
    assert!(!format!("{:?}", metrics.snapshot()).contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hec_indexer_ack_and_fallback_when_acks_are_off() {
    for enabled in [true, false] {
        let hec = hec::start(TOKEN, enabled).await;
        let dir = tempfile::tempdir().unwrap();
        let cfg = siem("splunk-hec", &hec.url, TOKEN, dir.path(), "ack = true\n");
        let fw = Forwarder::start(&cfg, Arc::new(ForwardMetrics::default()))
            .await
            .unwrap();
        submit_all(&fw, &recs(0..120)).await;
        let report = fw.finish(Duration::from_secs(30)).await.unwrap();
        assert_eq!(
            (report.acknowledged, report.spooled),
            (120, 0),
            "acks {enabled}"
        );
        assert_eq!(hec.state.seqs().0.len(), 120);
        if enabled {
            assert!(hec.state.ack_polls.load(Ordering::Relaxed) > 0);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_pushes_back_and_nothing_refused_is_sent() {
    let hec = hec::start(TOKEN, false).await;
    hec.state.busy.store(true, Ordering::Relaxed);
    let dir = tempfile::tempdir().unwrap();
    let cfg = siem(
        "splunk-hec",
        &hec.url,
        TOKEN,
        dir.path(),
        "spool_max_bytes = 20000\n",
    );
    let fw = Forwarder::start(&cfg, Arc::new(ForwardMetrics::default()))
        .await
        .unwrap();
    let mut accepted = 0u64;
    let refused = loop {
        match fw.submit(&recs(accepted..accepted + 10)).await {
            Ok(()) => accepted += 10,
            Err(e) => break e,
        }
        assert!(accepted < 10_000, "the spool never pushed back");
    };
    assert_eq!(refused.kind(), kasm_db::error::Kind::Temporary);
    assert!(refused.to_string().contains("full"), "{refused}");
    assert!(fw.metrics().snapshot().spool_bytes <= 20_000);
    hec.state.busy.store(false, Ordering::Relaxed);
    let report = fw.finish(Duration::from_secs(60)).await.unwrap();
    assert_eq!((report.acknowledged, report.spooled), (accepted, 0));
    let (seqs, _) = hec.state.seqs();
    assert_eq!(
        seqs,
        (0..accepted).collect(),
        "exactly the accepted records arrive"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_records_stay_spooled_and_the_next_run_sends_them() {
    let hec = hec::start(TOKEN, false).await;
    hec.state.busy.store(true, Ordering::Relaxed);
    let dir = tempfile::tempdir().unwrap();
    let cfg = siem("splunk-hec", &hec.url, TOKEN, dir.path(), "");
    let fw = Forwarder::start(&cfg, Arc::new(ForwardMetrics::default()))
        .await
        .unwrap();
    submit_all(&fw, &recs(0..200)).await;
    let report = fw.finish(Duration::from_millis(300)).await.unwrap();
    assert_eq!((report.acknowledged, report.spooled), (0, 200));
    hec.state.busy.store(false, Ordering::Relaxed);
    let metrics = Arc::new(ForwardMetrics::default());
    let fw = Forwarder::start(&cfg, metrics.clone()).await.unwrap();
    assert_eq!(metrics.snapshot().replayed, 200);
    let report = fw.finish(Duration::from_secs(30)).await.unwrap();
    assert_eq!((report.acknowledged, report.spooled), (200, 0));
    assert_eq!(hec.state.seqs().0, (0..200).collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sink_posts_ndjson_with_a_bearer_token() {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let g = got.clone();
    let server = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let g = g.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let g = g.clone();
                        async move {
                            let auth = req.headers()["authorization"].to_str().unwrap().to_string();
                            let plain = !req.headers().contains_key("content-encoding");
                            let b = req.into_body().collect().await.unwrap().to_bytes();
                            assert!(plain, "the generic sink sends plain NDJSON");
                            let body = String::from_utf8(b.to_vec()).unwrap();
                            g.lock().unwrap().push((auth, body));
                            Ok::<_, std::io::Error>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::new()),
                            ))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = siem(
        "http",
        &format!("http://{addr}/ingest"),
        TOKEN,
        dir.path(),
        "",
    );
    let fw = Forwarder::start(&cfg, Arc::new(ForwardMetrics::default()))
        .await
        .unwrap();
    let records = recs(0..75);
    submit_all(&fw, &records).await;
    let report = fw.finish(Duration::from_secs(30)).await.unwrap();
    server.abort();
    assert_eq!(report.acknowledged, 75);
    let got = got.lock().unwrap();
    assert!(got.iter().all(|(a, _)| a == &format!("Bearer {TOKEN}")));
    let lines: Vec<String> = got
        .iter()
        .flat_map(|(_, b)| b.lines().map(str::to_string))
        .collect();
    let expected: Vec<String> = records.iter().map(|r| r.data.clone()).collect();
    assert_eq!(lines, expected, "NDJSON of the records' own JSON, in order");
}

fn multi_line() -> Record {
    parse_str(r#"{"timestamp":"2026-11-24T10:00:00Z","levelname":"ERROR","host":"web1","application":"kasm_api","process":4242,"name":"api.auth","kasm_user_name":"alice@x","kasm_id":"k-9","message":"first line\nsecond \"line\""}"#).unwrap()
}

/// Lines of rsyslog's output that carry `event N`, as N → count.
fn event_counts(lines: &[String]) -> std::collections::BTreeMap<u64, usize> {
    let mut m = std::collections::BTreeMap::new();
    for l in lines {
        if let Some(n) = l
            .rsplit("event ")
            .next()
            .and_then(|t| t.trim().parse().ok())
        {
            *m.entry(n).or_insert(0) += 1;
        }
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_tcp_octet_counted_to_a_real_rsyslogd() {
    let rs = tokio::task::spawn_blocking(rsyslog::start).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("tcp://127.0.0.1:{}", rs.tcp_port);
    let fw = Forwarder::start(
        &siem("syslog", &url, "", dir.path(), ""),
        Arc::new(ForwardMetrics::default()),
    )
    .await
    .unwrap();
    let mut records = recs(0..300);
    records.insert(150, multi_line());
    submit_all(&fw, &records).await;
    let report = fw.finish(Duration::from_secs(30)).await.unwrap();
    assert_eq!((report.acknowledged, report.spooled), (301, 0));
    let lines = rs.wait_lines(301, Duration::from_secs(20));
    assert_eq!(
        lines.len(),
        301,
        "one line per message: {:?}",
        &lines[..lines.len().min(3)]
    );
    let counts = event_counts(&lines);
    assert_eq!(
        counts.keys().copied().collect::<Vec<_>>(),
        (0..300).collect::<Vec<_>>()
    );
    assert!(counts.values().all(|c| *c == 1));
    // The multi-line record is one message (rsyslog shows the newline as #012), fields parsed.
    let ml: Vec<&String> = lines.iter().filter(|l| l.contains("first line")).collect();
    assert_eq!(ml.len(), 1, "{lines:?}");
    assert_eq!(
        ml[0].as_str(),
        r#"131|web1|kasm_api|4242|api.auth|[kasm@32473 level="ERROR" user="alice@x" kasm_id="k-9"]|first line#012second "line""#
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("134|web1|kasm_api|-|-|") && l.ends_with("event 7")),
        "{:?}",
        &lines[..3]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_udp_datagrams_and_rfc3164_to_a_real_rsyslogd() {
    let rs = tokio::task::spawn_blocking(rsyslog::start).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("udp://127.0.0.1:{}", rs.udp_port);
    let cfg = siem(
        "syslog",
        &url,
        "",
        dir.path(),
        "format = \"rfc3164\"\nfacility = \"local3\"\n",
    );
    let fw = Forwarder::start(&cfg, Arc::new(ForwardMetrics::default()))
        .await
        .unwrap();
    let mut records = recs(0..60);
    records.push(multi_line());
    // Slow down a little so loopback UDP buffers never overflow: UDP has no acknowledgement.
    for chunk in records.chunks(10) {
        fw.submit(chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = fw.finish(Duration::from_secs(30)).await.unwrap();
    assert_eq!(report.acknowledged, 61);
    let lines = rs.wait_lines(61, Duration::from_secs(20));
    assert_eq!(lines.len(), 61, "{lines:?}");
    assert_eq!(event_counts(&lines).len(), 60);
    let ml: Vec<&String> = lines.iter().filter(|l| l.contains("first line")).collect();
    assert_eq!(ml.len(), 1, "{lines:?}");
    // local3 = 19: PRI 19*8+3 = 155; the tag and pid come from application and process.
    assert!(ml[0].starts_with("155|web1|kasm_api|4242|"), "{}", ml[0]);
}

/// A migrated database with `n` INFO rows (seq 0..n) in one catch-all partition.
fn db_with_rows(n: u64) -> String {
    let url = common::fresh_db();
    let r = common::run(common::kasm_db(&["--db", &url, "migrate"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    common::psql(
        &url,
        &format!(
            "CREATE TABLE logs_logs_all PARTITION OF logs_logs FOR VALUES FROM (MINVALUE) TO (MAXVALUE);
             INSERT INTO logs (log_id, ingest_date, log_time, levelname, host, application, kasm_user_name, message, data)
             SELECT gen_random_uuid(), timestamptz '2026-11-24 00:00:00+00' + g * interval '1 ms',
                    timestamptz '2026-11-23 00:00:00+00' + g * interval '1 s', 'INFO', 'web1', 'kasm_api', 'alice',
                    'event ' || g, jsonb_build_object('seq', g, 'message', 'event ' || g, 'pad', repeat('x', 100))
               FROM generate_series(0, {}) g;",
            n - 1
        ),
    );
    url
}

fn config_file(dir: &Path, url: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join("kasm-db.toml");
    std::fs::write(
        &path,
        format!(
            "[siem]\nkind = \"splunk-hec\"\nurl = \"{url}\"\ntoken = \"{TOKEN}\"\nspool_dir = \"{}\"\n\
             batch_events = 200\nbatch_wait_ms = 5\nrequest_timeout_secs = 5\n{extra}",
            dir.join("spool").display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn forward_without_siem_is_a_usage_error_that_says_how_to_configure_it() {
    let r = common::run(common::kasm_db(&[
        "--db",
        "postgres://nobody@127.0.0.1:1/x",
        "forward",
    ]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("[siem]") && r.stderr.contains("KASM_DB_SIEM_URL"),
        "{}",
        r.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_backfill_survives_kill_9_mid_way_and_resumes() {
    let db = tokio::task::spawn_blocking(|| db_with_rows(3000))
        .await
        .unwrap();
    let hec = hec::start(TOKEN, false).await;
    hec.state.busy.store(true, Ordering::Relaxed);
    let dir = tempfile::tempdir().unwrap();
    // A small spool: the first run fills it while HEC is busy and blocks mid-stream.
    let conf = config_file(dir.path(), &hec.url, "spool_max_bytes = 150000\n");
    let conf = conf.to_str().unwrap().to_string();
    let args: Vec<String> = ["--config", &conf, "--db", &db, "--json", "-v", "forward"]
        .map(String::from)
        .to_vec();
    let cmd = |a: &[String]| common::kasm_db(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let mut first = tokio::process::Command::from(cmd(&args))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let state = dir.path().join("spool/forward-state.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let submitted = loop {
        let s: Option<serde_json::Value> = std::fs::read(&state)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if let Some(n) = s.and_then(|s| s["submitted"].as_u64()) {
            if n > 0 && hec.state.posts.load(Ordering::Relaxed) > 2 {
                break n;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first run never spooled anything"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        submitted < 3000,
        "the first run should be blocked by the full spool"
    );
    first.start_kill().unwrap(); // SIGKILL
    let out = first.wait_with_output().await.unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(TOKEN), "token in the log: {stderr}");
    assert!(hec.state.events().is_empty());

    hec.state.busy.store(false, Ordering::Relaxed);
    let again = args.clone();
    let second = tokio::task::spawn_blocking(move || common::run(cmd(&again)))
        .await
        .unwrap();
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(!second.stderr.contains(TOKEN) && !second.stdout.contains(TOKEN));
    let v: serde_json::Value = serde_json::from_str(&second.stdout).unwrap();
    // At least once: a kill between the spool's append and the state file's save (its fsync)
    // leaves one submitted chunk (spool_max_bytes / 4 / 1024 = 36 records here) that the next
    // run reads again. Nothing may be lost, and no more than that chunk may come twice.
    const CHUNK: u64 = 150_000 / 4 / 1024;
    let forwarded = v["forwarded"].as_u64().unwrap();
    assert!((3000..=3000 + CHUNK).contains(&forwarded), "{v}");
    assert_eq!(v["spooled"].as_u64(), Some(0));
    let (seqs, dups) = hec.state.seqs();
    assert_eq!(seqs, (0..3000).collect(), "every stored record arrives");
    assert_eq!(dups, forwarded - 3000, "{v}");
    let sample = hec
        .state
        .events()
        .into_iter()
        .find(|e| e["event"]["seq"] == 5)
        .unwrap();
    assert_eq!(sample["time"].as_f64(), Some(1_795_392_005.0));
    assert_eq!(sample["event"]["message"], "event 5");

    // An open range is incremental: a rerun sends only rows stored since.
    let third = tokio::task::spawn_blocking(move || common::run(cmd(&args)))
        .await
        .unwrap();
    assert_eq!(third.code, 0, "{}", third.stderr);
    let v: serde_json::Value = serde_json::from_str(&third.stdout).unwrap();
    assert_eq!(v["forwarded"].as_u64(), Some(0), "{v}");
}

/// A test CA and a server certificate for 127.0.0.1 signed by it (openssl), as
/// (ca.pem, cert.pem, key.pem).
fn test_pki(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let p = |n: &str| dir.join(n);
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "1",
                "-subj",
                "/CN=kasm-db test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "key.pem",
                "-out",
                "leaf.csr",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        p("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "leaf.ext",
        "-out",
        "cert.pem",
    ]);
    (p("ca.pem"), p("cert.pem"), p("key.pem"))
}

fn server_tls(cert: &Path, key: &Path) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(kasm_db::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    Arc::new(config)
}

/// A TLS syslog receiver (RFC 5425): parses octet-counted frames and keeps the messages.
async fn tls_syslog_receiver(cert: &Path, key: &Path) -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::AsyncReadExt;
    let acceptor = tokio_rustls::TlsAcceptor::from(server_tls(cert, key));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = got.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, g) = (acceptor.clone(), g.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                while let Ok(n) = tls.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    // Octet counting: "LEN SP MSG", repeatedly.
                    while let Some(sp) = buf.iter().position(|b| *b == b' ') {
                        let len: usize = std::str::from_utf8(&buf[..sp]).unwrap().parse().unwrap();
                        if buf.len() < sp + 1 + len {
                            break;
                        }
                        let msg = String::from_utf8(buf[sp + 1..sp + 1 + len].to_vec()).unwrap();
                        g.lock().unwrap().push(msg);
                        buf.drain(..sp + 1 + len);
                    }
                }
            });
        }
    });
    (port, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_over_tls_verifies_the_server_with_tls_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_pki(dir.path());
    let (port, got) = tls_syslog_receiver(&cert, &key).await;
    let url = format!("tls://127.0.0.1:{port}");
    // Without the CA the server is not trusted: nothing is sent, everything stays spooled.
    let spool = dir.path().join("spool-untrusted");
    let fw = Forwarder::start(
        &siem("syslog", &url, "", &spool, ""),
        Arc::new(ForwardMetrics::default()),
    )
    .await
    .unwrap();
    submit_all(&fw, &recs(0..20)).await;
    let report = fw.finish(Duration::from_millis(500)).await.unwrap();
    assert_eq!((report.acknowledged, report.spooled), (0, 20));
    assert!(got.lock().unwrap().is_empty());
    // With siem.tls_ca: the same spool is delivered, the multi-line record as one message.
    let cfg = siem(
        "syslog",
        &url,
        "",
        &spool,
        &format!("tls_ca = \"{}\"\n", ca.display()),
    );
    let fw = Forwarder::start(&cfg, Arc::new(ForwardMetrics::default()))
        .await
        .unwrap();
    fw.submit(&[multi_line()]).await.unwrap();
    let report = fw.finish(Duration::from_secs(30)).await.unwrap();
    assert_eq!((report.acknowledged, report.spooled), (21, 0));
    // Acknowledged means written to the TLS stream: the receiver task may still be reading.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while got.lock().unwrap().len() < 21 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 21);
    assert!(
        got[..20]
            .iter()
            .enumerate()
            .all(|(i, m)| m.starts_with("<134>1 ") && m.ends_with(&format!(" event {i}")))
    );
    assert!(
        got[20].ends_with("] first line\nsecond \"line\""),
        "{}",
        got[20]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_with_a_refused_token_fails_says_why_and_never_prints_the_token() {
    let db = tokio::task::spawn_blocking(|| db_with_rows(5))
        .await
        .unwrap();
    let hec = hec::start("the-right-token", false).await;
    let dir = tempfile::tempdir().unwrap();
    let conf = config_file(dir.path(), &hec.url, "")
        .to_str()
        .unwrap()
        .to_string();
    let r = tokio::task::spawn_blocking(move || {
        common::run(common::kasm_db(&[
            "--config", &conf, "--db", &db, "--json", "-v", "forward",
        ]))
    })
    .await
    .unwrap();
    assert_eq!(r.code, 1, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (v["forwarded"].as_u64(), v["dead_lettered"].as_u64()),
        (Some(0), Some(5)),
        "{v}"
    );
    assert!(r.stderr.contains("Invalid token"), "{}", r.stderr);
    for text in [&r.stdout, &r.stderr] {
        assert!(!text.contains(TOKEN), "token shown: {text}");
    }
    let dead = std::fs::read_to_string(dir.path().join("spool/dead-letters.ndjson")).unwrap();
    assert_eq!(dead.lines().count(), 5);
    assert!(!dead.contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hec_over_https_with_tls_ca_and_insecure_skip_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_pki(dir.path());
    let hec = hec::start_with(TOKEN, false, Some(server_tls(&cert, &key))).await;
    assert!(hec.url.starts_with("https://127.0.0.1:"));
    for (name, extra) in [
        ("ca", format!("tls_ca = \"{}\"\n", ca.display())),
        ("skip", "insecure_skip_verify = true\n".to_string()),
    ] {
        let spool = dir.path().join(name);
        let fw = Forwarder::start(
            &siem("splunk-hec", &hec.url, TOKEN, &spool, &extra),
            Arc::new(ForwardMetrics::default()),
        )
        .await
        .unwrap();
        submit_all(&fw, &recs(0..100)).await;
        let report = fw.finish(Duration::from_secs(30)).await.unwrap();
        assert_eq!((report.acknowledged, report.spooled), (100, 0), "{name}");
    }
    assert_eq!(hec.state.seqs().0, (0..100).collect());
    // Without the CA (webpki roots only) the server is not trusted and nothing is sent.
    let spool = dir.path().join("untrusted");
    let fw = Forwarder::start(
        &siem("splunk-hec", &hec.url, TOKEN, &spool, ""),
        Arc::new(ForwardMetrics::default()),
    )
    .await
    .unwrap();
    let posts = hec.state.posts.load(Ordering::Relaxed);
    submit_all(&fw, &recs(0..10)).await;
    let report = fw.finish(Duration::from_millis(500)).await.unwrap();
    assert_eq!((report.acknowledged, report.spooled), (0, 10));
    assert_eq!(hec.state.posts.load(Ordering::Relaxed), posts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hec_413_halves_requests_until_they_fit() {
    let hec = hec::start(TOKEN, false).await;
    hec.state.max_events.store(7, Ordering::Relaxed);
    let dir = tempfile::tempdir().unwrap();
    let fw = Forwarder::start(
        &siem("splunk-hec", &hec.url, TOKEN, dir.path(), ""),
        Arc::new(ForwardMetrics::default()),
    )
    .await
    .unwrap();
    submit_all(&fw, &recs(0..300)).await;
    let report = fw.finish(Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        (report.acknowledged, report.spooled, report.dead_lettered),
        (300, 0, 0)
    );
    let (seqs, dups) = hec.state.seqs();
    assert_eq!((seqs, dups), ((0..300).collect(), 0));
}

/// `kasm-db ingest` with retention 0 for DEBUG: DEBUG records go to the SIEM only, the others
/// to the database only; with `forward_all`, every record goes to both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_sends_retention_zero_classes_to_the_siem_and_never_to_the_database() {
    let url = tokio::task::spawn_blocking(|| {
        let url = common::fresh_db();
        assert_eq!(
            common::run(common::kasm_db(&["migrate", "--db", &url])).code,
            0
        );
        url
    })
    .await
    .unwrap();
    let hec = hec::start(TOKEN, false).await;
    let dir = tempfile::tempdir().unwrap();
    let conf = config_file(dir.path(), &hec.url, "");
    let mut input = String::new();
    for i in 0..300 {
        let level = if i % 3 == 0 { "DEBUG" } else { "INFO" };
        input.push_str(&format!(
            "{{\"levelname\":\"{level}\",\"message\":\"m{i}\",\"seq\":{i}}}\n"
        ));
    }
    let run_ingest = |extra_env: Vec<(&'static str, &'static str)>| {
        let conf = conf.clone();
        let url = url.clone();
        let input = input.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut cmd = common::kasm_db(&[
                "--config",
                conf.to_str().unwrap(),
                "--db",
                &url,
                "--json",
                "ingest",
            ]);
            cmd.env("KASM_DB_RETENTION_DEBUG", "0");
            for (k, v) in extra_env {
                cmd.env(k, v);
            }
            let mut child = cmd
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "{stderr}");
            assert!(!stderr.contains(TOKEN), "{stderr}");
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
        })
    };
    let v = run_ingest(vec![]).await.unwrap();
    assert_eq!(v["read"], 300, "{v}");
    assert_eq!(v["stored"], 200, "{v}");
    assert_eq!(v["stored_debug"], 0, "{v}");
    assert_eq!(v["forwarded"], 100, "{v}");
    assert_eq!(v["dropped"], 0, "{v}");
    assert_eq!(v["forwarded_acknowledged"], 100, "{v}");
    assert_eq!(v["forwarded_spooled"], 0, "{v}");
    let events = hec.state.events();
    assert_eq!(events.len(), 100);
    assert!(
        events.iter().all(|e| e["event"]["levelname"] == "DEBUG"),
        "only DEBUG reached the SIEM"
    );
    let db_levels = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            common::psql(&url, "SELECT string_agg(DISTINCT levelname, ',') FROM logs")
        })
        .await
        .unwrap()
    };
    assert_eq!(db_levels, "INFO", "no DEBUG record reached the database");

    // forward_all: every record to the SIEM too; DEBUG still kept out of the database.
    let v = run_ingest(vec![("KASM_DB_SIEM_FORWARD_ALL", "true")])
        .await
        .unwrap();
    assert_eq!(
        (v["stored"].as_u64(), v["forwarded"].as_u64()),
        (Some(200), Some(300)),
        "{v}"
    );
    assert_eq!(hec.state.events().len(), 400);
}
