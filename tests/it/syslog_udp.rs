//! Syslog over UDP tells the truth: `ingest`/`forward` `--json` count UDP records as `sent`
//! (never `forwarded`), warn at start-up that UDP loses records under load, and pace a burst
//! (`siem.udp_max_per_sec`) so real receivers on loopback take all of it: rsyslogd, and a second,
//! unrelated implementation, aiosyslogd (PyPI; asyncio, writes to SQLite), installed by
//! `scripts/setup`.

use crate::common::rsyslog;

use crate::common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A migrated database.
fn migrated_db() -> String {
    let url = fresh_db();
    let r = run(kasm_db(&["--db", &url, "migrate"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    url
}

fn config(dir: &Path, siem_url: &str, extra: &str) -> PathBuf {
    let path = dir.join("kasm-db.toml");
    std::fs::write(
        &path,
        format!(
            "[siem]\nkind = \"syslog\"\nurl = \"{siem_url}\"\nspool_dir = \"{}\"\n{extra}",
            dir.join("spool").display()
        ),
    )
    .unwrap();
    path
}

/// `n` Kasm-like records, `event <i>` as their message (INFO and DEBUG alternating).
fn records(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        let level = if i % 2 == 0 { "INFO" } else { "DEBUG" };
        s.push_str(&format!(
            "{{\"asctime\":\"2026-11-24 10:00:00,000\",\"levelname\":\"{level}\",\"name\":\"kasm_api.web\",\
             \"application\":\"kasm_api\",\"host\":\"kasm-web-1\",\"kasm_user_name\":\"user{}@example.com\",\
             \"message\":\"GET /api/public/get_user_images 200 event {i}\"}}\n",
            i % 200
        ));
    }
    s
}

/// `kasm-db --json ingest` of `input` with both retention windows 0 (everything to the SIEM).
fn ingest(
    conf: &Path,
    url: &str,
    input: &str,
    env: &[(&str, &str)],
) -> (serde_json::Value, String) {
    let mut child = kasm_db(&[
        "--config",
        conf.to_str().unwrap(),
        "--db",
        url,
        "--json",
        "ingest",
    ])
    .env("KASM_DB_RETENTION_DEBUG", "0")
    .env("KASM_DB_RETENTION_LOGS", "0")
    .envs(env.iter().copied())
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
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
    (serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

/// The `event <i>` numbers in `lines`, each once (duplicates would fail the count check).
fn events(lines: &[String]) -> std::collections::BTreeSet<usize> {
    lines
        .iter()
        .filter_map(|l| l.rsplit("event ").next()?.trim().parse().ok())
        .collect()
}

#[test]
fn ingest_counts_udp_records_as_sent_and_a_paced_burst_reaches_rsyslogd_whole() {
    let rs = rsyslog::start();
    let url = migrated_db();
    let dir = tempfile::tempdir().unwrap();
    let conf = config(dir.path(), &format!("udp://127.0.0.1:{}", rs.udp_port), "");
    let n = 4000;
    let (v, stderr) = ingest(&conf, &url, &records(n), &[]);
    assert_eq!(v["read"], n, "{v}");
    assert_eq!(v["sent"], n, "{v}");
    assert_eq!(v["forwarded"], 0, "UDP acknowledges nothing: {v}");
    assert_eq!(v["sent_spooled"], 0, "{v}");
    assert!(v.get("forwarded_acknowledged").is_none(), "{v}");
    assert!(
        stderr.contains("syslog over UDP has no acknowledgement")
            && stderr.contains("paced to 2000 datagrams/s"),
        "{stderr}"
    );
    // At the default pace every record of the burst arrives, once.
    let lines = rs.wait_lines(n, Duration::from_secs(60));
    assert_eq!(lines.len(), n, "rsyslogd received {} of {n}", lines.len());
    assert_eq!(events(&lines).len(), n);
    assert_eq!(psql(&url, "SELECT count(*) FROM logs"), "0");
}

#[test]
fn forward_counts_udp_records_as_sent_and_tcp_ones_as_forwarded() {
    let rs = rsyslog::start();
    let url = migrated_db();
    let dir = tempfile::tempdir().unwrap();
    let conf = config(
        dir.path(),
        &format!("udp://127.0.0.1:{}", rs.udp_port),
        "udp_max_per_sec = 5000\n",
    );
    // 300 stored records, no SIEM yet.
    let mut child = kasm_db(&["--db", &url, "ingest"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = records(300);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(psql(&url, "SELECT count(*) FROM logs"), "300");
    let r = run(kasm_db(&[
        "--config",
        conf.to_str().unwrap(),
        "--db",
        &url,
        "--json",
        "forward",
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (v["sent"].as_u64(), v["forwarded"].as_u64()),
        (Some(300), Some(0)),
        "{v}"
    );
    assert!(
        r.stderr.contains("paced to 5000 datagrams/s"),
        "{}",
        r.stderr
    );
    assert_eq!(rs.wait_lines(300, Duration::from_secs(30)).len(), 300);

    // The same over TCP: acknowledged by the transport, so `forwarded`.
    let dir = tempfile::tempdir().unwrap();
    let conf = config(dir.path(), &format!("tcp://127.0.0.1:{}", rs.tcp_port), "");
    let r = run(kasm_db(&[
        "--config",
        conf.to_str().unwrap(),
        "--db",
        &url,
        "--json",
        "forward",
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (v["sent"].as_u64(), v["forwarded"].as_u64()),
        (Some(0), Some(300)),
        "{v}"
    );
    assert!(!r.stderr.contains("UDP"), "{}", r.stderr);
    assert_eq!(rs.wait_lines(600, Duration::from_secs(30)).len(), 600);
}

/// aiosyslogd on a free UDP port, writing to SQLite in its own directory; killed when dropped.
struct Aiosyslogd {
    port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl Drop for Aiosyslogd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Aiosyslogd {
    fn start() -> Aiosyslogd {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("aiosyslogd.toml");
        std::fs::write(
            &conf,
            format!(
                "[server]\nbind_ip = \"127.0.0.1\"\nbind_port = {port}\ndebug = false\nlog_dump = false\n\
                 [database]\ndriver = \"sqlite\"\nbatch_size = 100\nbatch_timeout = 1\n\
                 [database.sqlite]\ndatabase = \"{}\"\nretention_months = 0\nsql_dump = false\ndebug = false\n",
                dir.path().join("syslog.sqlite3").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let child = Command::new("aiosyslogd")
            .env("AIOSYSLOGD_CONFIG", &conf)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("aiosyslogd is not installed: run `bash scripts/setup`");
        let s = Aiosyslogd { port, dir, child };
        wait_until_with(
            Duration::from_secs(30),
            "aiosyslogd to start",
            || s.log().contains("Server is running"),
            || s.log(),
        );
        s
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// The stored messages (`SystemEvents.Message` of every monthly file), waiting (bounded)
    /// until there are at least `n`.
    fn wait_messages(&self, n: usize, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let out = Command::new("python3")
                .arg("-c")
                .arg(
                    "import glob, sqlite3, sys\n\
                     for f in sorted(glob.glob(sys.argv[1] + '/syslog*.sqlite3')):\n\
                     \x20   c = sqlite3.connect(f)\n\
                     \x20   try:\n\
                     \x20       rows = c.execute('SELECT Message, SysLogTag, FromHost FROM SystemEvents').fetchall()\n\
                     \x20   except sqlite3.Error:\n\
                     \x20       rows = []\n\
                     \x20   for r in rows: print('|'.join(str(x) for x in r).replace('\\n', ' '))\n",
                )
                .arg(self.dir.path())
                .output()
                .unwrap();
            let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_string)
                .collect();
            if lines.len() >= n || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn a_paced_burst_reaches_a_second_receiver_aiosyslogd_whole() {
    let aio = Aiosyslogd::start();
    let url = migrated_db();
    let dir = tempfile::tempdir().unwrap();
    let conf = config(dir.path(), &format!("udp://127.0.0.1:{}", aio.port), "");
    let n = 2000;
    let (v, _) = ingest(&conf, &url, &records(n), &[]);
    assert_eq!(
        (v["sent"].as_u64(), v["forwarded"].as_u64()),
        (Some(n as u64), Some(0)),
        "{v}"
    );
    let lines = aio.wait_messages(n, Duration::from_secs(60));
    assert_eq!(
        lines.len(),
        n,
        "aiosyslogd stored {} of {n}: {}",
        lines.len(),
        aio.log()
    );
    assert_eq!(
        events(
            &lines
                .iter()
                .map(|l| l.split('|').next().unwrap().to_string())
                .collect::<Vec<_>>()
        )
        .len(),
        n
    );
    // It parsed our RFC 5424 header: the application is the tag, the record's host the host.
    assert!(lines[0].ends_with("|kasm_api|kasm-web-1"), "{}", lines[0]);
}
