//! `serve` following files that real writers rotate: Python's `RotatingFileHandler` (rename
//! rotation, many times a second in bursts) and Debian's `logrotate` in `create` mode (with
//! Python's `WatchedFileHandler`, which reopens) and in `copytruncate` mode (with a plain
//! `FileHandler`, which never does), with a glob that matches only the current name
//! (`*_json.log`) and one that matches the rotated names too (`*_json.log*`). Every record must
//! be stored exactly once, also across a kill -9 of `serve` in the middle of it; compressed and
//! older rotated files are left alone; offsets of files that are gone are forgotten.

use crate::common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Writes `bursts` bursts of `per_burst` records ("r-N") through Python's logging; between
/// bursts, logrotate rotates the file (modes `create`, `copytruncate`) or the handler rotates
/// it by itself (`rotating`, at `max_bytes`). Prints the number of records written.
const WRITER: &str = r#"
import logging, logging.handlers, subprocess, sys, time
mode, path, bursts, per_burst, pause, max_bytes, conf, state = sys.argv[1:9]
bursts, per_burst, pause, max_bytes = int(bursts), int(per_burst), float(pause), int(max_bytes)
if mode == "rotating":
    h = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=900)
elif mode == "create":
    h = logging.handlers.WatchedFileHandler(path)
else:
    h = logging.FileHandler(path)
h.setFormatter(logging.Formatter(
    '{"levelname":"%(levelname)s","message":"%(message)s","application":"pytest","padding":"'
    + "x" * 40 + '"}'))
log = logging.getLogger("kasm")
log.setLevel(logging.INFO)
log.propagate = False
log.addHandler(h)
n = 0
for b in range(bursts):
    for _ in range(per_burst):
        log.info("r-%d", n)
        n += 1
    h.flush()
    if mode != "rotating":
        subprocess.run(["logrotate", "-f", "-s", state, conf], check=True)
    time.sleep(pause)
print(n)
"#;

const TOKEN: &str = "follow-test-token-1b7c";

struct Serve {
    child: Option<Child>,
    log: tempfile::NamedTempFile,
}

impl Serve {
    /// Start `serve` following `glob`; return once its database is ready.
    fn start(url: &str, glob: &str, env: &[(&str, &str)]) -> Serve {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = kasm_db(&["serve", "--db", url])
            .env("KASM_DB_SERVER_LISTEN", "127.0.0.1:0")
            .env("KASM_DB_SERVER_TOKEN", TOKEN)
            .env("KASM_DB_INGEST_PATHS", glob)
            .env("KASM_DB_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("spawn kasm-db serve");
        let mut s = Serve {
            child: Some(child),
            log,
        };
        let path = s.log.path().to_path_buf();
        let stderr = || std::fs::read_to_string(&path).unwrap_or_default();
        let child = s.child.as_mut().unwrap();
        wait_until_with(
            Duration::from_secs(60),
            "serve's database to be ready",
            || {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("serve exited ({status}): {}", stderr());
                }
                stderr().contains("database ready")
            },
            stderr,
        );
        s
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    fn kill9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn count(url: &str, filter: &str) -> u64 {
    psql(url, &format!("SELECT count(*) FROM logs {filter}"))
        .parse()
        .unwrap()
}

/// Wait until `want` records "r-N" are stored, then check that it stays so, each exactly once.
fn assert_stored_exactly_once(url: &str, want: u64, s: &Serve, what: &str) {
    let stored = |u: &str| count(u, "WHERE message LIKE 'r-%'");
    wait_until_with(
        Duration::from_secs(180),
        format_args!("{what}: {want} records stored"),
        || stored(url) >= want,
        || format!("{} stored\n{}", stored(url), s.stderr()),
    );
    // And no more than that: time for a duplicate to be stored (none must).
    std::thread::sleep(Duration::from_millis(1500));
    let total = stored(url);
    let distinct: u64 = psql(
        url,
        "SELECT count(DISTINCT message) FROM logs WHERE message LIKE 'r-%'",
    )
    .parse()
    .unwrap();
    let max: i64 = psql(
        url,
        "SELECT coalesce(max(substr(message, 3)::int), -1) FROM logs WHERE message LIKE 'r-%'",
    )
    .parse()
    .unwrap();
    eprintln!("{what}: written {want}, stored {total}, distinct {distinct}");
    if total != distinct {
        let dups = psql(
            url,
            "SELECT string_agg(message || ' x' || n, ' ') FROM (SELECT message, count(*) n,
             min(substr(message, 3)::int) k FROM logs WHERE message LIKE 'r-%' GROUP BY message
             HAVING count(*) > 1 ORDER BY k) d",
        );
        eprintln!("duplicated: {}", &dups[..dups.len().min(3000)]);
    }
    assert_eq!(
        (total, distinct, max),
        (want, want, want as i64 - 1),
        "{what}: stored, distinct, highest:\n{}",
        s.stderr()
    );
}

struct Writer {
    child: Child,
}

impl Writer {
    /// Run the Python writer in `mode` on `log` (logrotate config and state beside it).
    fn start(mode: &str, log: &Path, bursts: u32, per_burst: u32, max_bytes: u32) -> Writer {
        let dir = log.parent().unwrap().parent().unwrap();
        let script = dir.join("writer.py");
        std::fs::write(&script, WRITER).unwrap();
        let conf = dir.join("logrotate.conf");
        let how = if mode == "copytruncate" {
            "copytruncate"
        } else {
            "create"
        };
        std::fs::write(
            &conf,
            format!(
                "{} {{\n    rotate 900\n    {how}\n    missingok\n    nocompress\n}}\n",
                log.display()
            ),
        )
        .unwrap();
        let child = Command::new("python3")
            .arg(&script)
            .arg(mode)
            .arg(log)
            .arg(bursts.to_string())
            .arg(per_burst.to_string())
            .arg("0.15")
            .arg(max_bytes.to_string())
            .arg(&conf)
            .arg(dir.join("logrotate.state"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3");
        Writer { child }
    }

    /// Wait for the end; the number of records written.
    fn finish(self) -> u64 {
        let out = self.child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "writer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }
}

/// A folder for the logs (inside a temp dir that holds the writer's files).
fn log_dir() -> (tempfile::TempDir, PathBuf) {
    let top = tempfile::tempdir().unwrap();
    let logs = top.path().join("log");
    std::fs::create_dir(&logs).unwrap();
    (top, logs)
}

fn glob(logs: &Path, wide: bool) -> String {
    format!(
        "{}/*_json.log{}",
        logs.display(),
        if wide { "*" } else { "" }
    )
}

fn rotated_files(logs: &Path) -> usize {
    std::fs::read_dir(logs)
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            let n = n.to_string_lossy();
            n.starts_with("app_json.log.") && !n.ends_with(".gz")
        })
        .count()
}

/// Wait until `n` records are stored (any count in between is fine).
fn wait_at_least(url: &str, n: u64, s: &Serve) {
    wait_until_with(
        Duration::from_secs(120),
        format_args!("{n} records stored"),
        || count(url, "WHERE message LIKE 'r-%'") >= n,
        || s.stderr(),
    );
}

/// Python's RotatingFileHandler, bursts of 2,000 records rotating at 20 kB (about ten
/// rotations a burst, many between two scans); serve killed -9 a third of the way through and
/// started again. Before it starts, the folder holds an older rotated file and a compressed one.
fn python_rotating(wide: bool) {
    let url = fresh_db();
    let (_top, logs) = log_dir();
    let log = logs.join("app_json.log");
    // Rotated before kasm-db ever looked (an hour old), and compressed.
    std::fs::write(
        logs.join("app_json.log.950"),
        "{\"levelname\":\"INFO\",\"message\":\"old-1\"}\n",
    )
    .unwrap();
    let old = std::fs::File::options()
        .write(true)
        .open(logs.join("app_json.log.950"))
        .unwrap();
    old.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(logs.join("app_json.log.951.gz")).unwrap(),
        flate2::Compression::default(),
    );
    gz.write_all(b"{\"levelname\":\"INFO\",\"message\":\"gz-1\"}\n")
        .unwrap();
    gz.finish().unwrap();

    let g = glob(&logs, wide);
    let mut s = Serve::start(&url, &g, &[]);
    let (bursts, per_burst) = (15, 2000);
    let writer = Writer::start("rotating", &log, bursts, per_burst, 20_000);
    let total = u64::from(bursts * per_burst);
    wait_at_least(&url, total / 3, &s);
    s.kill9();
    let s = Serve::start(&url, &g, &[]);
    assert_eq!(writer.finish(), total);
    assert!(rotated_files(&logs) > 50, "the handler rotated too little");
    let what = format!("RotatingFileHandler, {g}, kill -9 midway");
    assert_stored_exactly_once(&url, total, &s, &what);
    assert_eq!(
        count(&url, "WHERE message = 'gz-1'"),
        0,
        "compressed file read"
    );
    // The glob names the older rotated file only in the wide style.
    let old_read = count(&url, "WHERE message = 'old-1'");
    assert_eq!(old_read, u64::from(wide), "{}", s.stderr());
}

#[test]
fn python_rotating_file_handler_narrow_glob_stores_every_record_once() {
    python_rotating(false);
}

#[test]
fn python_rotating_file_handler_wide_glob_stores_every_record_once() {
    python_rotating(true);
}

/// A generation rotated away after `serve` began following but before its first commit of that
/// name, and not read before `serve` was killed (rotated names are read once quiet, 2 s), is
/// read by the next `serve`: "following began" is the first follower's start, not the time of
/// its first commit. (Under load the writer rotates many times before the first commit; this
/// lost one file's worth of records in the RotatingFileHandler test.) The next `serve` sees only
/// the folder and the database, so the file is put in place after the kill, as it was then.
#[test]
fn rotated_before_the_first_commit_and_not_read_is_read_after_a_restart() {
    let url = fresh_db();
    let (_top, logs) = log_dir();
    let log = logs.join("app_json.log");
    let g = glob(&logs, false);
    let mut s = Serve::start(&url, &g, &[]);
    // The point: rotated_at falls after the follower began (less its 1 s margin, `first_seen`)
    // and clearly before the first commit; the folder is empty, nothing shows the start.
    std::thread::sleep(Duration::from_millis(1500));
    let rotated_at = std::time::SystemTime::now(); // following, nothing committed yet
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(&log, "{\"levelname\":\"INFO\",\"message\":\"r-0\"}\n").unwrap();
    wait_at_least(&url, 1, &s);
    s.kill9();
    let first_commit: f64 = psql(
        &url,
        "SELECT extract(epoch FROM min(updated_at)) FROM follow_offsets",
    )
    .parse()
    .unwrap();
    let at = rotated_at.duration_since(std::time::UNIX_EPOCH).unwrap();
    assert!(
        at.as_secs_f64() < first_commit,
        "rotated after the first commit"
    );
    let rotated = logs.join("app_json.log.1");
    let mut text = String::new();
    for i in 1..200 {
        text += &format!("{{\"levelname\":\"INFO\",\"message\":\"r-{i}\"}}\n");
    }
    std::fs::write(&rotated, text).unwrap();
    let f = std::fs::File::options().write(true).open(&rotated).unwrap();
    f.set_modified(rotated_at).unwrap();
    drop(f);
    // Started again well after that (as after a third of the records in that test).
    while rotated_at.elapsed().unwrap() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = Serve::start(&url, &g, &[]);
    assert_stored_exactly_once(&url, 200, &s, "rotated before the first commit, kill -9");
}

/// logrotate in `mode`, run after every burst of 300 records, many times a second.
fn logrotate(mode: &str, wide: bool, kill: bool, forget: bool) {
    let url = fresh_db();
    let (_top, logs) = log_dir();
    let log = logs.join("app_json.log");
    std::fs::write(&log, "").unwrap();
    let g = glob(&logs, wide);
    let env: &[(&str, &str)] = if forget {
        &[("KASM_DB_INGEST_FORGET_AFTER", "2s")]
    } else {
        &[]
    };
    let mut s = Serve::start(&url, &g, env);
    let (bursts, per_burst) = (30, 300);
    let writer = Writer::start(mode, &log, bursts, per_burst, 0);
    let total = u64::from(bursts * per_burst);
    if kill {
        wait_at_least(&url, total / 3, &s);
        s.kill9();
        s = Serve::start(&url, &g, env);
    }
    assert_eq!(writer.finish(), total);
    assert!(rotated_files(&logs) >= 30, "logrotate rotated too little");
    let what = format!(
        "logrotate {mode}, {g}{}",
        if kill { ", kill -9 midway" } else { "" }
    );
    assert_stored_exactly_once(&url, total, &s, &what);
    if forget {
        // Files that are gone are forgotten after the grace period; the current one is kept.
        let rows = |u: &str| -> u64 {
            psql(u, "SELECT count(*) FROM follow_offsets")
                .parse()
                .unwrap()
        };
        assert!(rows(&url) > 1);
        // The current file holds a line again (logrotate's last run left it empty).
        std::fs::write(&log, "{\"levelname\":\"INFO\",\"message\":\"last\"}\n").unwrap();
        wait_until_with(
            Duration::from_secs(60),
            "the last line to be read",
            || count(&url, "WHERE message = 'last'") > 0,
            || s.stderr(),
        );
        for e in std::fs::read_dir(&logs).unwrap() {
            let p = e.unwrap().path();
            if p != log {
                std::fs::remove_file(p).unwrap();
            }
        }
        wait_until_with(
            Duration::from_secs(60),
            "the offsets of gone files to be forgotten",
            || rows(&url) <= 1,
            || s.stderr(),
        );
        let kept = psql(&url, "SELECT path FROM follow_offsets");
        assert_eq!(kept, log.display().to_string());
    }
}

#[test]
fn logrotate_create_narrow_glob_stores_every_record_once_and_forgets_gone_files() {
    logrotate("create", false, false, true);
}

#[test]
fn logrotate_create_wide_glob_with_kill_9_stores_every_record_once() {
    logrotate("create", true, true, false);
}

#[test]
fn logrotate_copytruncate_narrow_glob_with_kill_9_stores_every_record_once() {
    logrotate("copytruncate", false, true, false);
}

#[test]
fn logrotate_copytruncate_wide_glob_stores_every_record_once() {
    logrotate("copytruncate", true, false, false);
}

fn write_gz(path: &Path, from: u64, to: u64) {
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::default(),
    );
    for i in from..to {
        writeln!(gz, "{{\"levelname\":\"INFO\",\"message\":\"r-{i}\"}}").unwrap();
    }
    gz.finish().unwrap();
}

/// A glob that names compressed files reads them (uncompressed), once, also after a restart.
#[test]
fn gzip_files_the_glob_names_are_read_once() {
    let url = fresh_db();
    let (_top, logs) = log_dir();
    write_gz(&logs.join("app_json.log.1.gz"), 0, 500);
    std::fs::write(
        logs.join("app_json.log"),
        "{\"levelname\":\"INFO\",\"message\":\"plain\"}\n",
    )
    .unwrap();
    let g = format!("{}/*.gz", logs.display());
    let mut s = Serve::start(&url, &g, &[]);
    assert_stored_exactly_once(&url, 500, &s, "gzip named by the glob");
    s.kill9();
    write_gz(&logs.join("app_json.log.2.gz"), 500, 800);
    let s = Serve::start(&url, &g, &[]);
    assert_stored_exactly_once(&url, 800, &s, "gzip named by the glob, after kill -9");
    assert_eq!(count(&url, "WHERE message = 'plain'"), 0);
}

/// Migration 0005 on offsets written by earlier versions (keyed by path): one row per file
/// (the path read last), its fingerprint unknown (the inode alone decides until it is re-taken).
#[test]
fn migration_0005_keys_existing_offsets_by_file() {
    let url = fresh_db();
    psql(&url, include_str!("../../sql/0003_serve.sql"));
    psql(
        &url,
        "INSERT INTO follow_offsets (path, dev, inode, byte_offset, updated_at) VALUES
         ('/l/a_json.log', 1, 10, 100, now() - interval '1 hour'),
         ('/l/hard_link_json.log', 1, 10, 120, now()),
         ('/l/b_json.log', 1, 11, 7, now())",
    );
    psql(&url, include_str!("../../sql/0005_follow_identity.sql"));
    let rows = psql(
        &url,
        "SELECT string_agg(format('%s:%s:%s:%s', inode, path, byte_offset, fp_len), ' ' ORDER BY inode)
         FROM follow_offsets",
    );
    assert_eq!(rows, "10:/l/hard_link_json.log:120:0 11:/l/b_json.log:7:0");
    let empty = psql(
        &url,
        "SELECT count(*) FROM follow_offsets WHERE fingerprint = sha256(''::bytea)",
    );
    assert_eq!(empty, "2");
}
