//! Test harness: one throwaway PostgreSQL cluster for the whole test process (started on first
//! use, stopped and deleted at process exit), a fresh database per test, and a second cluster
//! when a test needs a standby; clusters of a module's own ([`SharedCluster`]) for tests that
//! change what is cluster-wide. Built on `kasm_db::pgtemp`, the same code `demo` uses. Every
//! module of the binary shares these clusters: a test names its databases and roles uniquely
//! (or idempotently) and never changes the cluster's configuration or stops it.
#![allow(dead_code)]

pub mod azurite;
pub mod hec;
pub mod kasm;
pub mod moto;
pub mod ports;
pub mod rsyslog;
pub mod s3;
pub mod s3rver;
pub mod serve;
pub mod wait;

pub use ports::free_port;
pub use wait::{wait_for_some, wait_until, wait_until_with};

use kasm_db::pgtemp::Cluster;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// A cluster started on first use and stopped (its directory deleted) at process exit: Rust
/// never drops a static, so every one started is remembered for an `atexit` hook.
pub struct SharedCluster(OnceLock<Mutex<Option<Cluster>>>);

static STARTED: Mutex<Vec<&'static SharedCluster>> = Mutex::new(Vec::new());

static PRIMARY: SharedCluster = SharedCluster::new();
static STANDBY: SharedCluster = SharedCluster::new();

extern "C" fn stop_clusters() {
    let started = match STARTED.lock() {
        Ok(s) => s.clone(),
        Err(p) => p.into_inner().clone(),
    };
    for cell in started {
        if let Some(m) = cell.0.get() {
            if let Ok(mut guard) = m.lock() {
                drop(guard.take());
            }
        }
    }
}

impl SharedCluster {
    pub const fn new() -> SharedCluster {
        SharedCluster(OnceLock::new())
    }

    /// Run `f` with the cluster, starting it on first use.
    pub fn with<T>(&'static self, f: impl FnOnce(&mut Cluster) -> T) -> T {
        let m = self.0.get_or_init(|| {
            static HOOK: std::sync::Once = std::sync::Once::new();
            // SAFETY: registering a plain extern "C" fn with atexit.
            HOOK.call_once(|| unsafe {
                libc::atexit(stop_clusters);
            });
            STARTED.lock().unwrap_or_else(|p| p.into_inner()).push(self);
            Mutex::new(Some(
                Cluster::start(&std::env::vars().collect()).expect("start throwaway postgres"),
            ))
        });
        let mut guard = m.lock().unwrap_or_else(|p| p.into_inner());
        f(guard.as_mut().expect("cluster present until exit"))
    }
}

/// Run `f` with the process's primary cluster.
pub fn with_primary<T>(f: impl FnOnce(&mut Cluster) -> T) -> T {
    PRIMARY.with(f)
}

/// Run `f` with the process's second cluster (a standby to restore onto).
pub fn with_standby<T>(f: impl FnOnce(&mut Cluster) -> T) -> T {
    STANDBY.with(f)
}

/// A fresh, empty database on the primary; returns its URL (with password).
pub fn fresh_db() -> String {
    with_primary(|c| {
        let name = c.fresh_db("t").expect("create database");
        c.url(&name)
    })
}

/// Run SQL on the primary's database named in `url` (as superuser over the socket).
pub fn psql(url: &str, sql: &str) -> String {
    let db = url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    with_primary(|c| c.psql(&db, sql).expect("psql"))
}

/// A psql session on the primary that runs `sql` in a transaction and then sleeps in it, holding
/// its locks (a long reader); returns once it holds them. End it with [`end_reader`].
pub fn reader(url: &str, sql: &str) -> std::process::Child {
    let db = url.rsplit('/').next().unwrap().to_string();
    let (bindir, sock_dir, port) =
        with_primary(|c| (c.bindir.clone(), c.dir().to_path_buf(), c.port));
    let child = std::process::Command::new(bindir.join("psql"))
        .args(["-X", "-q", "-h"])
        .arg(&sock_dir)
        .args(["-p", &port.to_string(), "-U", "postgres", "-d", &db, "-c"])
        .arg(format!("BEGIN; {sql}; SELECT pg_sleep(30); COMMIT;"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        std::time::Duration::from_secs(10),
        "the reader to hold its locks",
        || {
            psql(
                url,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE '%pg_sleep(30)%' AND state = 'active' AND pid <> pg_backend_pid()",
            ) == "1"
        },
    );
    child
}

/// End a [`reader`] on the server too (killing psql alone leaves pg_sleep running).
pub fn end_reader(url: &str, mut reader: std::process::Child) {
    psql(
        url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()",
    );
    let _ = reader.kill();
    let _ = reader.wait();
}

/// A child process that is killed (SIGKILL) and reaped when dropped still running: a test that
/// fails half-way never leaves a `wal stream` or `serve` behind for the rest of the suite.
/// Derefs to the `Child`; [`Reaped::into_inner`] hands it over for a clean stop.
pub struct Reaped(Option<std::process::Child>);

impl Reaped {
    pub fn into_inner(mut self) -> std::process::Child {
        self.0.take().expect("taken only here")
    }
}

impl From<std::process::Child> for Reaped {
    fn from(c: std::process::Child) -> Reaped {
        Reaped(Some(c))
    }
}

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        self.0.as_ref().expect("present until into_inner")
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("present until into_inner")
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            if c.try_wait().ok().flatten().is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// The built `kasm-db` binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kasm-db"))
}

/// A `kasm-db` command with a clean environment: no KASM_DB_* or PG* variables leak in, nor a
/// proxy (tests/it/proxy.rs sets its own): the tests' servers are on loopback.
pub fn kasm_db(args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(bin());
    for (k, _) in std::env::vars() {
        let proxy = k.to_ascii_lowercase().ends_with("_proxy");
        if k.starts_with("KASM_DB_") || k.starts_with("PG") || proxy {
            cmd.env_remove(k);
        }
    }
    cmd.args(args);
    cmd
}

/// Output of a finished command, with stdout/stderr as text.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(mut cmd: impl std::borrow::BorrowMut<std::process::Command>) -> Run {
    let cmd = cmd.borrow_mut();
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run kasm-db");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Run `cmd` with `input` on its stdin.
pub fn run_with_stdin(mut cmd: std::process::Command, input: &str) -> Run {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kasm-db");
    // A command that exits early may close its stdin: what it said is in its output.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    let out = child.wait_with_output().expect("wait for kasm-db");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A command's stdout as JSON (`--json`), or a panic showing both streams.
pub fn json(r: &Run) -> serde_json::Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}\n{}", r.stdout, r.stderr))
}

/// The entry for table `name` in a report's `tables` (`vacuum --json`, `size --json`).
pub fn report_table<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == name)
        .unwrap_or_else(|| panic!("{name} not in {v}"))
}

/// Row count and content digest of `table`, through `sql` (a query runner of one database).
pub fn digest(sql: impl Fn(&str) -> String, table: &str) -> String {
    sql(&format!(
        "SELECT count(*) || ':' || md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), ''))
         FROM {table} t"
    ))
}

/// Run SQL on database `db` of the process's standby cluster (as superuser over the socket).
pub fn standby_sql(db: &str, sql: &str) -> String {
    with_standby(|c| c.psql(db, sql)).unwrap_or_else(|e| panic!("{e}"))
}

/// The URL of database `db` on the process's standby cluster (with password).
pub fn standby_url(db: &str) -> String {
    with_standby(|c| c.url(db))
}

/// `backups verify ID --json --from FROM --scratch-db <standby>`. Scratch restores take one
/// lock per server (exit 75 while another runs): this process's run one at a time, and a 75
/// from another process's restore test is waited out. `inspect` sees every attempt's output.
pub fn verify_scratch(from: &std::path::Path, id: &str, inspect: fn(&Run)) -> Run {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let r = run(kasm_db(&[
            "backups",
            "verify",
            id,
            "--json",
            "--from",
            from.to_str().unwrap(),
            "--scratch-db",
            &standby_url("postgres"),
        ]));
        inspect(&r);
        if r.code == 75
            && r.stderr.contains("another restore")
            && std::time::Instant::now() < deadline
        {
            // Another process's restore test holds the server's lock: try again shortly.
            std::thread::sleep(std::time::Duration::from_millis(200));
            continue;
        }
        return r;
    }
}

/// The pid of the pg_dump (the one on an exported snapshot) that kasm-db `kasm_pid` runs.
pub fn pg_dump_child(kasm_pid: u32) -> Option<i32> {
    child_of(kasm_pid, "pg_dump", "--snapshot")
}

/// Run the stopped process `pid` in short slices (SIGCONT, 20 ms, SIGSTOP) until `cond` holds,
/// and leave it stopped: whatever it is doing is then deterministically part way.
pub fn step_until(pid: i32, what: &str, mut cond: impl FnMut() -> bool) {
    // SAFETY: signals to a process the calling test started (through kasm-db).
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(100));
        if cond() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        unsafe { libc::kill(pid, libc::SIGCONT) };
        std::thread::sleep(std::time::Duration::from_millis(20));
        unsafe { libc::kill(pid, libc::SIGSTOP) };
    }
}

/// The pg_dump of kasm-db `kasm_pid` (waited for), stepped with [`step_until`] until `cond`
/// holds and left stopped: the backup is then part way for sure. Returns its pid.
pub fn step_pg_dump_until(kasm_pid: u32, what: &str, cond: impl FnMut() -> bool) -> i32 {
    let dump = wait_for_some(
        std::time::Duration::from_secs(120),
        "pg_dump to start",
        || pg_dump_child(kasm_pid),
    );
    step_until(dump, what, cond);
    dump
}

/// The pid of the pg_restore (the restoring one, with `--dbname`) that kasm-db `kasm_pid` runs.
pub fn pg_restore_child(kasm_pid: u32) -> Option<i32> {
    child_of(kasm_pid, "pg_restore", "--dbname")
}

/// The pid of a child of `parent` running `program` with `arg` on its command line.
fn child_of(parent: u32, program: &str, arg: &str) -> Option<i32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((comm, rest)) = stat.split_once(") ") else {
            continue;
        };
        let ppid: u32 = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if ppid == parent
            && comm.ends_with(&format!("({program}"))
            && String::from_utf8_lossy(&cmdline).contains(arg)
        {
            return Some(pid);
        }
    }
    None
}
