//! The advisory lock registry (`db::locks`) seen from outside: a job run by `serve`'s
//! `[schedule]` and the same job run from the command line take the same lock, so they never
//! run at once. While `serve`'s scheduled vacuum, purge and backup hold their locks (each kept
//! waiting on a table lock this test holds), `kasm-db vacuum`, `purge` and `backup` exit 75
//! naming the job; while a session holds a job's registry key, `serve`'s slot of that job
//! counts as `locked_elsewhere`. And the scheduled jobs connect with the one retry policy of the
//! configuration (`database.connect_attempts`), the scheduled verify's scratch server too.

use crate::common::*;
use kasm_db::db::locks::Lock;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The database name of a test URL.
fn dbname(url: &str) -> String {
    url.rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string()
}

/// A psql session on `url`'s database that ran `sql` and stays open (holding what it took)
/// until dropped.
struct Session(Child);

impl Session {
    fn open(url: &str, sql: &str) -> Session {
        let (bindir, sock, port) =
            with_primary(|c| (c.bindir.clone(), c.dir().to_path_buf(), c.port));
        let mut child = Command::new(bindir.join("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&sock)
            .args([
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-d",
                &dbname(url),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        writeln!(child.stdin.as_mut().unwrap(), "{sql}").unwrap();
        Session(child)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

/// Whether some session holds `lock` in `url`'s database (a bigint key shows in `pg_locks` as
/// its high half in `classid` and its low half in `objid`).
fn held(url: &str, lock: Lock) -> bool {
    let key = lock.key() as u64;
    psql(
        url,
        &format!(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND classid::bigint = {} AND objid::bigint = {} AND objsubid = 1",
            key >> 32,
            key & 0xffff_ffff
        ),
    ) != "0"
}

/// Wait (a hang guard of two minutes) until `cond` holds; `what` and `log` explain a timeout.
fn wait_until(what: &str, log: impl Fn() -> String, cond: impl FnMut() -> bool) {
    crate::common::wait_until_with(Duration::from_secs(120), what, cond, log)
}

/// `kasm-db serve` on `url` with the given environment; stderr in a file; killed when dropped.
struct Serve {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Serve {
    fn start(url: &str, env: &[(&str, &str)]) -> Serve {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = kasm_db(&["serve", "--db", url])
            .env("KASM_DB_SERVER_LISTEN", "127.0.0.1:0")
            .env("KASM_DB_SERVER_TOKEN", "t0ken-for-lock-tests-41c7")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("spawn kasm-db serve");
        Serve { child, log }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli(url: &str, args: &[&str], backups: &std::path::Path) -> Run {
    let mut cmd = kasm_db(args);
    // A command that took another lock would wait on this test's table locks: a lock timeout
    // turns that wait into a failure (exit 1) instead of a hang.
    cmd.args(["--db", url])
        .env("KASM_DB_BACKUP_TO", backups)
        .env("PGOPTIONS", "-c lock_timeout=10s");
    run(cmd)
}

#[test]
fn while_serve_runs_a_scheduled_job_the_same_command_exits_75() {
    let url = fresh_db();
    let backups = tempfile::tempdir().unwrap();
    assert_eq!(cli(&url, &["migrate"], backups.path()).code, 0);
    let every_second = "* * * * * *";
    let serve = Serve::start(
        &url,
        &[
            ("KASM_DB_SCHEDULE_VACUUM", every_second),
            ("KASM_DB_SCHEDULE_PURGE", every_second),
            ("KASM_DB_SCHEDULE_BACKUP", every_second),
            ("KASM_DB_BACKUP_TO", backups.path().to_str().unwrap()),
        ],
    );
    wait_until(
        "each scheduled job to run once",
        || serve.stderr(),
        || succeeded_since(&url, "-infinity") == 3,
    );
    // Whatever slot starts once this session holds its table locks waits on them, inside its
    // job lock: vacuum measures (and ANALYZEs) `logs`, purge reads `kasm_db_migrations`, backup
    // counts the rows of both.
    let tables = Session::open(
        &url,
        "BEGIN; LOCK TABLE logs, kasm_db_migrations IN ACCESS EXCLUSIVE MODE;",
    );
    for lock in [Lock::Vacuum, Lock::Purge, Lock::Backup] {
        wait_until(
            &format!("serve's scheduled {} to hold its lock", lock.job()),
            || serve.stderr(),
            || held(&url, lock),
        );
    }
    for (args, job) in [
        (&["vacuum"][..], "vacuum"),
        (&["purge"][..], "purge"),
        (&["backup"][..], "backup"),
    ] {
        let r = cli(&url, args, backups.path());
        assert_eq!(r.code, 75, "kasm-db {job}: {}", r.stderr);
        assert!(
            r.stderr.contains(&format!("another {job} of ")),
            "kasm-db {job}: {}",
            r.stderr
        );
        assert!(
            r.stderr.contains(&format!("kasm-db {job} lock")),
            "{}",
            r.stderr
        );
    }
    // Once the tables are free, the scheduled jobs finish and run again.
    let released = psql(&url, "SELECT now()");
    drop(tables);
    wait_until(
        "the scheduled jobs to succeed again",
        || serve.stderr(),
        || succeeded_since(&url, &released) == 3,
    );
}

/// How many of vacuum, purge and backup succeeded in a slot after `since`.
fn succeeded_since(url: &str, since: &str) -> u32 {
    psql(
        url,
        &format!(
            "SELECT count(DISTINCT job) FROM schedule_runs
             WHERE ok AND job IN ('vacuum', 'purge', 'backup') AND slot > '{since}'"
        ),
    )
    .parse()
    .unwrap()
}

#[test]
fn while_a_command_holds_a_job_lock_serve_counts_the_slot_as_locked_elsewhere() {
    let url = fresh_db();
    let backups = tempfile::tempdir().unwrap();
    assert_eq!(cli(&url, &["migrate"], backups.path()).code, 0);
    // The registry's keys, held as `kasm-db vacuum`, `purge` and `backup` hold them.
    let holder = Session::open(
        &url,
        &format!(
            "SELECT pg_advisory_lock({}), pg_advisory_lock({}), pg_advisory_lock({});",
            Lock::Vacuum.key(),
            Lock::Purge.key(),
            Lock::Backup.key()
        ),
    );
    wait_until("the holder", String::new, || held(&url, Lock::Backup));
    let every_second = "* * * * * *";
    let serve = Serve::start(
        &url,
        &[
            ("KASM_DB_SCHEDULE_VACUUM", every_second),
            ("KASM_DB_SCHEDULE_PURGE", every_second),
            ("KASM_DB_SCHEDULE_BACKUP", every_second),
            ("KASM_DB_BACKUP_TO", backups.path().to_str().unwrap()),
        ],
    );
    for job in ["vacuum", "purge", "backup"] {
        wait_until(
            &format!("a {job} slot locked elsewhere"),
            || serve.stderr(),
            || {
                serve.stderr().lines().any(|l| {
                    l.contains("not running this slot here")
                        && l.contains(&format!("job=\"{job}\""))
                        && l.contains("locked_elsewhere")
                })
            },
        );
    }
    // And the command lines find them held too.
    let r = cli(&url, &["vacuum"], backups.path());
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(r.stderr.contains("another vacuum of "), "{}", r.stderr);
    assert_eq!(
        psql(&url, "SELECT count(*) FROM schedule_runs WHERE ok"),
        "0",
        "nothing ran while the locks were held"
    );
    assert!(
        std::fs::read_dir(backups.path()).unwrap().next().is_none(),
        "no backup was written"
    );
    drop(holder);
    wait_until(
        "the scheduled jobs to succeed once the locks are free",
        || serve.stderr(),
        || succeeded_since(&url, "-infinity") == 3,
    );
}

#[test]
fn the_scheduled_verify_tries_the_scratch_server_database_connect_attempts_times() {
    let url = fresh_db();
    let backups = tempfile::tempdir().unwrap();
    assert_eq!(cli(&url, &["migrate"], backups.path()).code, 0);
    let r = cli(&url, &["backup"], backups.path());
    assert_eq!(r.code, 0, "{}", r.stderr);
    // A scratch server that refuses connections: a port nobody listens on any more.
    let port = free_port();
    let scratch = format!("postgres://verify@127.0.0.1:{port}/postgres");
    let serve = Serve::start(
        &url,
        &[
            ("KASM_DB_SCHEDULE_VERIFY", "* * * * * *"),
            ("KASM_DB_BACKUP_TO", backups.path().to_str().unwrap()),
            ("KASM_DB_BACKUP_SCRATCH_DB", &scratch),
            ("KASM_DB_DATABASE_CONNECT_ATTEMPTS", "2"),
        ],
    );
    let error = || {
        psql(
            &url,
            "SELECT coalesce(max(error), '') FROM schedule_runs WHERE job = 'verify' AND NOT ok",
        )
    };
    wait_until(
        "a failed verify slot",
        || serve.stderr(),
        || !error().is_empty(),
    );
    let e = error();
    assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
    assert!(e.contains("after 2 attempts"), "{e}");
}
