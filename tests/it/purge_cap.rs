//! The size cap of `purge` (`retention.max_bytes`) on a real cluster through the real binary:
//! rows ingested over several hours and days, all inside their windows, each in its own
//! partition. Over the cap, purge drops the oldest whole partitions, debug before the rest,
//! until the `logs` relation is within it, and lists them; `--dry-run` lists the same and drops
//! nothing; a cap above the size drops nothing; the partitions receiving inserts are never
//! dropped (a warning says the cap cannot be met); a partition a reader holds is passed over
//! for the next one; `size` warns when the cap decides; `serve`'s scheduled purge applies the
//! cap too; a cap that is not a size is exit 2.

use crate::common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The purge instant: debug window (4 h) cutoff 08:30, logs window (7 d) cutoff 11-17 12:30.
const T0: &str = "2026-11-24T12:30:00Z";

/// (received at, level, rows): one expired debug hour, three debug hours and five days of
/// logs inside their windows, and the partitions receiving inserts at T0 (debug 12:00, logs
/// 11-24).
const BATCHES: &[(&str, &str, usize)] = &[
    ("2026-11-24T06:30:00Z", "DEBUG", 50),
    ("2026-11-24T09:30:00Z", "DEBUG", 200),
    ("2026-11-24T10:30:00Z", "DEBUG", 200),
    ("2026-11-24T11:30:00Z", "DEBUG", 200),
    ("2026-11-24T12:10:00Z", "DEBUG", 200),
    ("2026-11-19T12:00:00Z", "INFO", 200),
    ("2026-11-20T12:00:00Z", "INFO", 200),
    ("2026-11-21T12:00:00Z", "INFO", 200),
    ("2026-11-22T12:00:00Z", "INFO", 200),
    ("2026-11-23T12:00:00Z", "INFO", 200),
    ("2026-11-24T12:05:00Z", "INFO", 200),
];

const EXPIRED: &str = "logs_debug_p2026112406";
const CURRENT: [&str; 2] = ["logs_debug_p2026112412", "logs_logs_p20261124"];

/// A migrated database holding [`BATCHES`].
fn setup() -> String {
    let batches: Vec<(String, &str, usize)> = BATCHES
        .iter()
        .map(|(at, level, rows)| (at.to_string(), *level, *rows))
        .collect();
    setup_with(&batches)
}

/// A migrated database holding `batches`, ingested by `kasm-db ingest --received-at`.
fn setup_with(batches: &[(String, &str, usize)]) -> String {
    let url = fresh_db();
    let r = run(kasm_db(&["migrate", "--db", &url]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dir = tempfile::tempdir().unwrap();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for (i, (at, level, rows)) in batches.iter().enumerate() {
        let mut text = String::new();
        for n in 0..*rows {
            // About 1 KB of incompressible text per record, so partitions have a real size.
            let mut message = String::with_capacity(1024);
            while message.len() < 1000 {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                message.push_str(&format!("{:016x}", seed));
            }
            text.push_str(&format!(
                "{{\"levelname\": \"{level}\", \"host\": \"web{}\", \"application\": \"kasm_api\", \"message\": \"{n} {message}\"}}\n",
                n % 3
            ));
        }
        let file = dir.path().join(format!("batch{i}.ndjson"));
        std::fs::write(&file, text).unwrap();
        let r = run(kasm_db(&[
            "ingest",
            "--strict",
            "--received-at",
            at,
            "--db",
            &url,
            file.to_str().unwrap(),
        ]));
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    url
}

/// Every leaf partition of `logs` with its size, as purge measures it.
fn sizes(url: &str) -> BTreeMap<String, u64> {
    psql(
        url,
        "SELECT string_agg(c.relname || '=' || pg_total_relation_size(c.oid), ',')
         FROM pg_partition_tree('logs') t JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf",
    )
    .split(',')
    .map(|kv| {
        let (k, v) = kv.split_once('=').unwrap();
        (k.to_string(), v.parse().unwrap())
    })
    .collect()
}

fn purge_capped(url: &str, cap: &str, extra: &[&str]) -> Run {
    let mut args = vec!["purge", "--now", T0, "--db", url];
    args.extend_from_slice(extra);
    let mut cmd = kasm_db(&args);
    cmd.env("KASM_DB_RETENTION_MAX_BYTES", cap);
    let r = run(cmd);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    r
}

fn cap_dropped(v: &Value) -> Vec<String> {
    v["cap"]["dropped"]
        .as_array()
        .unwrap_or_else(|| panic!("cap.dropped in {v}"))
        .iter()
        .map(|d| d["partition"].as_str().unwrap().to_string())
        .collect()
}

fn rows_in(url: &str, relation: &str) -> u64 {
    psql(url, &format!("SELECT count(*) FROM {relation}"))
        .parse()
        .unwrap()
}

/// The partitions the cap must drop to get within `cap` as built by [`cap_after`], in order.
const WANT: [&str; 4] = [
    "logs_debug_p2026112409",
    "logs_debug_p2026112410",
    "logs_debug_p2026112411",
    "logs_logs_p20261119",
];

/// A cap that [`WANT`] is exactly enough for: the size after the windows, less the partitions
/// of `WANT`, plus half the next partition (so one fewer is not enough, one more not needed).
fn cap_after(s: &BTreeMap<String, u64>) -> (u64, u64) {
    let after_windows: u64 = s
        .iter()
        .filter(|(k, _)| *k != EXPIRED)
        .map(|(_, v)| v)
        .sum();
    let want: u64 = WANT.iter().map(|k| s[*k]).sum();
    // The oldest logs partition must matter: more than half of the next one.
    assert!(
        s["logs_logs_p20261119"] > s["logs_logs_p20261120"] / 2,
        "{s:?}"
    );
    (
        after_windows,
        after_windows - want + s["logs_logs_p20261120"] / 2,
    )
}

#[test]
fn over_the_cap_the_oldest_partitions_go_debug_first_and_dry_run_only_lists_them() {
    let url = setup();
    let s = sizes(&url);
    let (after_windows, cap) = cap_after(&s);
    let total_rows = rows_in(&url, "logs");

    // --dry-run: the same list, nothing dropped.
    let r = purge_capped(&url, &cap.to_string(), &["--dry-run", "--json"]);
    let v = json(&r);
    assert_eq!(cap_dropped(&v), WANT, "{v}");
    assert_eq!(v["cap"]["max_bytes"].as_u64(), Some(cap), "{v}");
    assert_eq!(
        v["cap"]["before_bytes"].as_u64(),
        Some(after_windows),
        "{v}"
    );
    assert_eq!(v["cap"]["within"], true, "{v}");
    assert!(v["cap"]["after_bytes"].as_u64().unwrap() <= cap, "{v}");
    assert_eq!(sizes(&url), s, "a dry run changed partitions");
    assert_eq!(rows_in(&url, "logs"), total_rows);

    // The real run: the window's expired hour, then the cap's four, debug first, oldest first.
    let r = purge_capped(&url, &cap.to_string(), &["--json"]);
    let v = json(&r);
    assert_eq!(cap_dropped(&v), WANT, "{v}");
    let first = &v["cap"]["dropped"][0];
    assert_eq!(first["class"], "debug", "{v}");
    assert_eq!(first["range"]["from"], "2026-11-24T09:00:00Z", "{v}");
    assert_eq!(first["range"]["to"], "2026-11-24T10:00:00Z", "{v}");
    assert_eq!(first["rows"].as_u64(), Some(200), "{v}");
    assert_eq!(
        first["bytes"].as_u64(),
        Some(s["logs_debug_p2026112409"]),
        "{v}"
    );
    assert_eq!(v["cap"]["dropped"][3]["class"], "logs", "{v}");
    assert_eq!(v["cap"]["dropped"][3]["rows"].as_u64(), Some(200), "{v}");
    assert_eq!(
        v["cap"]["before_bytes"].as_u64(),
        Some(after_windows),
        "{v}"
    );
    assert_eq!(v["cap"]["within"], true, "{v}");
    assert!(v["cap"]["warning"].is_null(), "{v}");
    // The totals count the cap's drops too; `dropped` names the window's first.
    assert_eq!(v["debug_deleted"].as_u64(), Some(50 + 600), "{v}");
    assert_eq!(v["logs_deleted"].as_u64(), Some(200), "{v}");
    assert_eq!(v["partitions_dropped"].as_u64(), Some(5), "{v}");
    let dropped: Vec<&str> = v["dropped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert_eq!(dropped[0], EXPIRED, "{v}");
    assert_eq!(&dropped[1..], WANT, "{v}");
    // Within the cap, measured independently; the next day of logs and the current ones stay.
    let now = sizes(&url);
    assert!(now.values().sum::<u64>() <= cap, "{now:?} over {cap}");
    for gone in WANT.iter().chain([&EXPIRED]) {
        assert!(!now.contains_key(*gone), "{gone} still there");
    }
    for kept in CURRENT.iter().chain([&"logs_logs_p20261120"]) {
        assert!(now.contains_key(*kept), "{kept} was dropped");
    }
    assert_eq!(rows_in(&url, "logs"), total_rows - 50 - 800);

    // Within the cap now: the next run drops nothing early, and says so.
    let r = purge_capped(&url, &cap.to_string(), &[]);
    assert!(
        r.stdout.contains("within it; nothing dropped early"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_cap_above_the_size_drops_nothing_early() {
    let url = setup();
    let s = sizes(&url);
    let r = purge_capped(&url, "1GB", &["--json"]);
    let v = json(&r);
    assert!(cap_dropped(&v).is_empty(), "{v}");
    assert_eq!(v["cap"]["max_bytes"].as_u64(), Some(1_000_000_000), "{v}");
    assert_eq!(v["cap"]["within"], true, "{v}");
    // Only the window's expired hour went.
    assert_eq!(v["partitions_dropped"].as_u64(), Some(1), "{v}");
    let now = sizes(&url);
    for name in s.keys().filter(|k| *k != EXPIRED) {
        assert!(now.contains_key(name), "{name} was dropped");
    }
    // Without a cap there is no cap section at all.
    let r = run(kasm_db(&["purge", "--json", "--now", T0, "--db", &url]));
    assert!(json(&r)["cap"].is_null(), "{}", r.stdout);
}

#[test]
fn the_partitions_receiving_inserts_are_never_dropped_even_when_the_cap_cannot_be_met() {
    let url = setup();
    let current_rows: u64 = CURRENT.iter().map(|p| rows_in(&url, p)).sum();
    let r = purge_capped(&url, "1", &["--json"]);
    let v = json(&r);
    let mut want: Vec<String> = ["09", "10", "11"]
        .iter()
        .map(|h| format!("logs_debug_p20261124{h}"))
        .collect();
    want.extend((19..=23).map(|d| format!("logs_logs_p202611{d}")));
    assert_eq!(cap_dropped(&v), want, "{v}");
    assert_eq!(v["cap"]["within"], false, "{v}");
    let warning = v["cap"]["warning"].as_str().unwrap_or_default();
    assert!(warning.contains("receiving inserts"), "{v}");
    assert!(r.stderr.contains("receiving inserts"), "{}", r.stderr);
    // The current hour of debug and today's logs are whole; so are the partitions made ahead.
    let now = sizes(&url);
    for kept in CURRENT {
        assert!(now.contains_key(kept), "{kept} was dropped");
    }
    assert_eq!(rows_in(&url, "logs"), current_rows);
    assert!(
        now.keys().any(|k| k.as_str() > "logs_logs_p20261124"),
        "{now:?}"
    );
    // In text: the warning, plainly.
    let r = purge_capped(&url, "1", &[]);
    assert!(r.stdout.contains("WARNING:"), "{}", r.stdout);
    assert!(r.stdout.contains("retention.max_bytes 1B"), "{}", r.stdout);
}

#[test]
fn a_partition_a_reader_holds_is_passed_over_for_the_next_one() {
    let url = setup();
    let s = sizes(&url);
    let (_, cap) = cap_after(&s);
    let held = "logs_debug_p2026112409";
    let reader = reader(&url, &format!("SELECT count(*) FROM {held}"));
    let mut cmd = kasm_db(&["purge", "--json", "--now", T0, "--db", &url]);
    cmd.env("KASM_DB_RETENTION_MAX_BYTES", cap.to_string());
    let r = run(cmd);
    end_reader(&url, reader);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r);
    // Without the held hour, the next partition in line makes up for it.
    assert_eq!(
        cap_dropped(&v),
        [
            "logs_debug_p2026112410",
            "logs_debug_p2026112411",
            "logs_logs_p20261119",
            "logs_logs_p20261120"
        ],
        "{v}"
    );
    assert_eq!(v["cap"]["held"][0], held, "{v}");
    assert_eq!(v["cap"]["within"], true, "{v}");
    // Held means untouched: the cap never deletes rows.
    assert_eq!(rows_in(&url, held), 200);
}

#[test]
fn size_warns_when_the_cap_not_the_window_decides() {
    let url = setup_with(&recent());
    let total: u64 = sizes(&url).values().sum();
    let size = |cap: &str| {
        let mut cmd = kasm_db(&["size", "--json", "--db", &url]);
        cmd.env("KASM_DB_RETENTION_MAX_BYTES", cap);
        let r = run(cmd);
        assert_eq!(r.code, 0, "{}", r.stderr);
        json(&r)
    };
    let warnings = |v: &Value| -> Vec<String> {
        v["warnings"]
            .as_array()
            .unwrap_or_else(|| panic!("warnings in {v}"))
            .iter()
            .map(|w| w.as_str().unwrap().to_string())
            .collect()
    };
    // A cap far above the size: nothing to say.
    let v = size("1GB");
    assert!(warnings(&v).is_empty(), "{v}");
    // Over the cap: size says what the next purge does.
    let cap = (total * 3 / 4).to_string();
    let v = size(&cap);
    assert_eq!(v["status"], "warn", "{v}");
    assert!(
        warnings(&v)
            .iter()
            .any(|w| w.contains("is over retention.max_bytes")),
        "{v}"
    );
    // After the purge the oldest partitions are gone although inside their windows: the cap
    // is deciding, and size says so for both classes.
    let mut cmd = kasm_db(&["purge", "--json", "--db", &url]);
    cmd.env("KASM_DB_RETENTION_MAX_BYTES", &cap);
    let r = run(cmd);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!cap_dropped(&json(&r)).is_empty(), "{}", r.stdout);
    let v = size(&cap);
    let w = warnings(&v);
    assert_eq!(v["status"], "warn", "{v}");
    for class in ["The oldest debug record", "The oldest non-debug record"] {
        assert!(
            w.iter()
                .any(|w| w.contains(class) && w.contains("the cap, not the window, is deciding")),
            "{class}: {w:?}"
        );
    }
    // And in text.
    let mut cmd = kasm_db(&["size", "--db", &url]);
    cmd.env("KASM_DB_RETENTION_MAX_BYTES", &cap);
    let r = run(cmd);
    assert!(r.stdout.contains("size cap:"), "{}", r.stdout);
}

/// Records over the last days and hours, relative to the real clock (for `size` and
/// `serve`, which measure against now): three days of logs before today's, two debug hours
/// before the current one.
fn recent() -> Vec<(String, &'static str, usize)> {
    let now = chrono::Utc::now();
    let at = |h: i64| (now - chrono::Duration::hours(h)).to_rfc3339();
    vec![
        (at(72), "INFO", 200),
        (at(48), "INFO", 200),
        (at(24), "INFO", 200),
        (at(0), "INFO", 200),
        (at(2), "DEBUG", 200),
        (at(1), "DEBUG", 200),
        (at(0), "DEBUG", 200),
    ]
}

#[test]
fn serves_scheduled_purge_applies_the_cap_too() {
    let url = setup_with(&recent());
    let before = sizes(&url);
    let cap = before.values().sum::<u64>() * 3 / 4;
    let log = tempfile::NamedTempFile::new().unwrap();
    let port = free_port();
    let mut serve = kasm_db(&["serve", "--db", &url])
        .env("KASM_DB_SERVER_LISTEN", format!("127.0.0.1:{port}"))
        .env("KASM_DB_SERVER_TOKEN", "t0ken-for-the-cap-test")
        .env("KASM_DB_SCHEDULE_PURGE", "* * * * * *")
        .env("KASM_DB_RETENTION_MAX_BYTES", cap.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let ran = loop {
        let done = psql(
            &url,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'schedule_runs'",
        ) == "1"
            && psql(
                &url,
                "SELECT count(*) FROM schedule_runs WHERE job = 'purge' AND ok",
            ) != "0";
        if done || Instant::now() > deadline || serve.try_wait().unwrap().is_some() {
            break done;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let metrics = get_metrics(port);
    // SAFETY: a plain kill(2) of the child this test spawned.
    unsafe {
        libc::kill(serve.id() as i32, libc::SIGTERM);
    }
    let _ = serve.wait();
    let stderr = std::fs::read_to_string(log.path()).unwrap();
    assert!(ran, "no scheduled purge ran: {stderr}");
    // The same operation: the oldest debug hours went first, and the job's summary says so.
    let after = sizes(&url);
    assert!(after.values().sum::<u64>() <= cap, "{after:?} over {cap}");
    let debug_hours: Vec<&String> = before
        .keys()
        .filter(|k| k.starts_with("logs_debug_p") && !after.contains_key(*k))
        .collect();
    assert!(!debug_hours.is_empty(), "{before:?} -> {after:?}");
    assert!(
        stderr.contains("dropped early")
            && stderr.contains("dropped before its retention window ended"),
        "{stderr}"
    );
    // And counts them for monitoring.
    let counted: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("kasm_db_purge_cap_dropped_partitions_total{class=\"debug\"} ")
        })
        .unwrap_or_else(|| panic!("{metrics}"))
        .parse()
        .unwrap();
    assert!(counted >= debug_hours.len() as f64, "{metrics}");
    assert!(metrics.contains("kasm_db_logs_cap_within 1"), "{metrics}");
}

/// `GET /metrics` of a `serve` on `port` (empty when it does not answer).
fn get_metrics(port: u16) -> String {
    use std::io::{Read, Write};
    let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    out
}

#[test]
fn a_cap_that_is_not_a_size_is_a_usage_error() {
    let mut cmd = kasm_db(&["purge", "--db", "postgres://nobody@127.0.0.1:1/x"]);
    cmd.env("KASM_DB_RETENTION_MAX_BYTES", "forty gigs");
    let r = run(cmd);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("KASM_DB_RETENTION_MAX_BYTES") && r.stderr.contains("\"40GB\""),
        "{}",
        r.stderr
    );
}
