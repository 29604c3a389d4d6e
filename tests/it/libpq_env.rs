//! libpq's conventions through the real binary, against a throwaway cluster that requires a
//! password over TCP (scram-sha-256): the password file (PGPASSFILE, `~/.pgpass` under HOME,
//! escapes, refused when open to others), the connection service file (PGSERVICEFILE +
//! PGSERVICE, `service=` in `--db`, the service before the environment), PGAPPNAME (and the
//! default `kasm-db`) as the server sees it in pg_stat_activity, PGCONNECT_TIMEOUT bounding a
//! connect to a blackholed address and to a server that never answers, and a backup whose
//! pg_dump child has only a password-file password and a service-defined target. A refused
//! password is never printed.
//!
//! Every run gets its own HOME, so the machine's own `~/.pgpass` never takes part.

use crate::common::*;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

struct Pg {
    port: u16,
    password: String,
    sockdir: PathBuf,
    bindir: PathBuf,
}

fn pg() -> Pg {
    with_primary(|c| Pg {
        port: c.port,
        password: c.password.expose().to_string(),
        sockdir: c.dir().to_path_buf(),
        bindir: c.bindir.clone(),
    })
}

fn dbname(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_string()
}

fn write_mode(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `kasm-db` with an empty HOME of its own and the libpq variables naming the cluster over TCP,
/// but no password.
fn kasm_db_at(home: &Path, db: &str, args: &[&str]) -> Command {
    let mut cmd = kasm_db(args);
    cmd.env("HOME", home)
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", pg().port.to_string())
        .env("PGUSER", "postgres")
        .env("PGDATABASE", db)
        .env("PGSSLMODE", "disable");
    cmd
}

#[test]
fn the_cluster_requires_a_password_and_pgpassfile_gives_it() {
    let db = dbname(&fresh_db());
    let home = tempfile::tempdir().unwrap();
    let r = run(kasm_db_at(home.path(), &db, &["migrate"]));
    assert_eq!(r.code, 1, "without a password: {}", r.stderr);
    assert!(r.stderr.contains("PGPASSFILE"), "a hint: {}", r.stderr);

    let files = tempfile::tempdir().unwrap();
    let pass = files.path().join("kasm.pgpass");
    let p = pg();
    write_mode(
        &pass,
        &format!(
            "# kasm-db\n127.0.0.1:{}:other_db:postgres:not-this-one\n127.0.0.1:{}:{db}:postgres:{}\n",
            p.port, p.port, p.password
        ),
        0o600,
    );
    let r = run(kasm_db_at(home.path(), &db, &["migrate", "--json"]).env("PGPASSFILE", &pass));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("0001_logs"), "{}", r.stdout);
    assert!(!r.stderr.contains(&p.password) && !r.stdout.contains(&p.password));
}

#[test]
fn home_pgpass_with_escapes_and_wildcards() {
    // A role of its own whose password needs libpq's escapes.
    let url = fresh_db();
    let db = dbname(&url);
    let role = format!("pgpass_{}", &db[db.len() - 8..]);
    let password = r"a:b\c#d";
    psql(
        &url,
        &format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{password}'; ALTER DATABASE {db} OWNER TO {role};"
        ),
    );
    let home = tempfile::tempdir().unwrap();
    write_mode(
        &home.path().join(".pgpass"),
        &format!("*:{}:*:{role}:a\\:b\\\\c#d\n", pg().port),
        0o600,
    );
    let r = run(kasm_db_at(home.path(), &db, &["migrate"]).env("PGUSER", &role));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let owner = psql(
        &url,
        "SELECT tableowner FROM pg_tables WHERE tablename = 'logs_logs'",
    );
    assert_eq!(owner, role);
}

#[test]
fn pgpass_open_to_others_is_refused_with_a_warning() {
    let db = dbname(&fresh_db());
    let home = tempfile::tempdir().unwrap();
    let pass = home.path().join(".pgpass");
    let p = pg();
    write_mode(&pass, &format!("*:*:*:*:{}\n", p.password), 0o644);
    let r = run(kasm_db_at(home.path(), &db, &["migrate"]));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("has group or world access") && r.stderr.contains(".pgpass"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains(&p.password), "{}", r.stderr);
    // The same file, made private, is used.
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = run(kasm_db_at(home.path(), &db, &["migrate"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("group or world"), "{}", r.stderr);
}

#[test]
fn a_refused_password_from_a_file_is_never_printed() {
    let db = dbname(&fresh_db());
    let home = tempfile::tempdir().unwrap();
    let wrong = "wrong-pw-3f9a1c";
    write_mode(
        &home.path().join(".pgpass"),
        &format!("*:*:*:*:{wrong}\n"),
        0o600,
    );
    let r = run(kasm_db_at(home.path(), &db, &["migrate", "--json"]));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("password authentication failed")
            && r.stderr.contains("password retrieved from file"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains(wrong) && !r.stdout.contains(wrong),
        "{}",
        r.stderr
    );
    // The same through a service file holding the password.
    let svc = home.path().join("svc.conf");
    write_mode(
        &svc,
        &format!(
            "[kasm]\nhost=127.0.0.1\nport={}\ndbname={db}\nuser=postgres\npassword={wrong}\n",
            pg().port
        ),
        0o600,
    );
    let r = run(kasm_db(&["migrate", "-vv"])
        .env("HOME", home.path())
        .env("PGSERVICEFILE", &svc)
        .env("PGSERVICE", "kasm"));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("password authentication failed"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains(wrong), "{}", r.stderr);
}

#[test]
fn service_file_names_the_target_and_wins_over_the_environment() {
    let db = dbname(&fresh_db());
    let home = tempfile::tempdir().unwrap();
    let p = pg();
    let svc = home.path().join("services.conf");
    write_mode(
        &svc,
        &format!(
            "# Kasm's database\n[other]\nport=1\n\n[kasm]\nhost=127.0.0.1\nport={}\ndbname={db}\n\
             user=postgres\nsslmode=disable\napplication_name=from-service\n",
            p.port
        ),
        0o644,
    );
    write_mode(
        &home.path().join(".pgpass"),
        &format!("127.0.0.1:{}:*:postgres:{}\n", p.port, p.password),
        0o600,
    );
    // PGPORT points nowhere: libpq takes the service's settings before the environment's.
    let r = run(kasm_db(&["migrate", "--json"])
        .env("HOME", home.path())
        .env("PGSERVICEFILE", &svc)
        .env("PGSERVICE", "kasm")
        .env("PGPORT", "1"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("0001_logs"), "{}", r.stdout);
    // `service=` in --db, the password in the service file this time.
    let svc2 = home.path().join("with-password.conf");
    write_mode(
        &svc2,
        &format!(
            "[kasm]\nhost=127.0.0.1\nport={}\ndbname={db}\nuser=postgres\npassword={}\n",
            p.port, p.password
        ),
        0o600,
    );
    let r = run(kasm_db(&["migrate", "--json", "--db", "service=kasm"])
        .env("HOME", "/nonexistent")
        .env("PGSERVICEFILE", &svc2));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains(&p.password));
    // A service that is not defined is a usage error naming it.
    let r = run(kasm_db(&["migrate"])
        .env("HOME", home.path())
        .env("PGSERVICEFILE", &svc)
        .env("PGSERVICE", "nope"));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("\"nope\" not found"), "{}", r.stderr);
}

/// Holds migrate's advisory lock in `db` from a psql session until dropped, so that a
/// `kasm-db migrate` waits, connected, where pg_stat_activity shows it.
struct LockHolder(std::process::Child);

impl LockHolder {
    fn hold(db: &str) -> LockHolder {
        let p = pg();
        let mut child = Command::new(p.bindir.join("psql"))
            .args(["-X", "-q", "-h"])
            .arg(&p.sockdir)
            .args(["-p", &p.port.to_string(), "-U", "postgres", "-d", db])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        writeln!(
            child.stdin.as_mut().unwrap(),
            "SELECT pg_advisory_lock({});",
            kasm_db::db::locks::Lock::Migrate.key()
        )
        .unwrap();
        let held = LockHolder(child);
        wait_for(
            db,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        );
        held
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

/// Poll `sql` (a count) on `db` until it is positive; panics after a minute (a hang guard).
fn wait_for(db: &str, sql: &str) -> String {
    wait_for_some(Duration::from_secs(60), sql, || {
        let n = with_primary(|c| c.psql(db, sql).unwrap());
        (n != "0" && !n.is_empty()).then_some(n)
    })
}

#[test]
fn application_name_is_what_the_server_sees() {
    let db = dbname(&fresh_db());
    let home = tempfile::tempdir().unwrap();
    let pw = pg().password;
    for (appname, expected) in [
        (Some("nightly-maintenance"), "nightly-maintenance"),
        (None, "kasm-db"),
    ] {
        let lock = LockHolder::hold(&db);
        let mut cmd = kasm_db_at(home.path(), &db, &["migrate"]);
        cmd.env("PGPASSWORD", &pw)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(a) = appname {
            cmd.env("PGAPPNAME", a);
        }
        let mut child = cmd.spawn().unwrap();
        let seen = wait_for(
            &db,
            "SELECT string_agg(application_name, ',') FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event = 'advisory'",
        );
        drop(lock);
        assert!(child.wait().unwrap().success());
        assert_eq!(seen, expected);
    }
}

/// A listener whose accept queue is full: the kernel drops further SYNs, as a firewall that
/// blackholes the address would.
fn blackholed() -> (std::net::TcpListener, std::net::TcpStream, u16) {
    use std::os::fd::AsRawFd;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: changing the backlog of a socket we own.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let port = listener.local_addr().unwrap().port();
    let filler = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    (listener, filler, port)
}

/// Run `cmd` to its end, killing it after `guard` (then the test fails: it hung).
fn run_guarded(mut cmd: Command, guard: Duration) -> Run {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(guard) {
        Ok(out) => {
            let out = out.unwrap();
            Run {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        }
        Err(_) => {
            // SAFETY: killing the child we spawned.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
            panic!("kasm-db did not give up connecting within {guard:?}");
        }
    }
}

#[test]
fn connect_timeout_bounds_a_blackholed_address_and_a_silent_server() {
    let home = tempfile::tempdir().unwrap();
    let (_listener, _filler, blackhole) = blackholed();
    // Accepts (in the kernel) and never answers the startup packet.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    for port in [blackhole, silent_port] {
        let mut cmd = kasm_db(&["migrate"]);
        cmd.env("HOME", home.path())
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", port.to_string())
            .env("PGPASSWORD", "unused")
            .env("PGCONNECT_TIMEOUT", "2")
            .env("KASM_DB_DATABASE_CONNECT_ATTEMPTS", "1");
        // Without a bound kasm-db would wait minutes (SYN retries) or forever (silent server).
        let r = run_guarded(cmd, Duration::from_secs(90));
        assert_eq!(r.code, 75, "port {port}: {}", r.stderr);
        assert!(
            r.stderr.contains("timed out after 2 s per host"),
            "port {port}: {}",
            r.stderr
        );
    }
    // libpq's minimum is 2 s: 1 means 2.
    let mut cmd = kasm_db(&["migrate"]);
    cmd.env("HOME", home.path())
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", blackhole.to_string())
        .env("PGCONNECT_TIMEOUT", "1")
        .env("KASM_DB_DATABASE_CONNECT_ATTEMPTS", "1");
    let r = run_guarded(cmd, Duration::from_secs(90));
    assert!(r.stderr.contains("timed out after 2 s"), "{}", r.stderr);
}

#[test]
fn unsupported_session_attrs_are_a_usage_error_and_read_write_connects() {
    let db = dbname(&fresh_db());
    let home = tempfile::tempdir().unwrap();
    let pw = pg().password;
    let r = run(kasm_db_at(home.path(), &db, &["migrate"])
        .env("PGPASSWORD", &pw)
        .env("PGTARGETSESSIONATTRS", "prefer-standby"));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("read-write"), "{}", r.stderr);
    // The attribute reaches the driver: this server is not read-only.
    let r = run(kasm_db_at(home.path(), &db, &["migrate"])
        .env("PGPASSWORD", &pw)
        .env("KASM_DB_DATABASE_CONNECT_ATTEMPTS", "1")
        .env("PGTARGETSESSIONATTRS", "read-only"));
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(r.stderr.contains("read only"), "{}", r.stderr);
    // Two hosts, the first one not listening: read-write finds the primary on the second.
    let r = run(kasm_db_at(home.path(), &db, &["migrate"])
        .env("PGPASSWORD", &pw)
        .env("PGHOST", "127.0.0.1,localhost")
        .env("PGPORT", format!("1,{}", pg().port))
        .env("PGTARGETSESSIONATTRS", "read-write"));
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn backup_with_a_service_target_and_a_password_file_only() {
    let url = fresh_db();
    let db = dbname(&url);
    psql(
        &url,
        "CREATE TABLE users (id int PRIMARY KEY, name text);
         INSERT INTO users SELECT i, 'user ' || i FROM generate_series(1, 500) i;",
    );
    let home = tempfile::tempdir().unwrap();
    let p = pg();
    let svc = home.path().join(".pg_service.conf");
    write_mode(
        &svc,
        &format!(
            "[kasm]\nhost=127.0.0.1\nport={}\ndbname={db}\nuser=postgres\nsslmode=disable\n",
            p.port
        ),
        0o644,
    );
    write_mode(
        &home.path().join(".pgpass"),
        &format!("127.0.0.1:{}:{db}:postgres:{}\n", p.port, p.password),
        0o600,
    );
    let to = tempfile::tempdir().unwrap();
    // ~/.pg_service.conf found through HOME; the password only in ~/.pgpass.
    let r = run(
        kasm_db(&["backup", "--json", "--to", to.path().to_str().unwrap()])
            .env("HOME", home.path())
            .env("PGSERVICE", "kasm"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(v["size_bytes"].as_u64().unwrap() > 0, "{}", r.stdout);
    assert!(!r.stdout.contains(&p.password) && !r.stderr.contains(&p.password));
    // A full restore test into a scratch database on the service's server: pg_restore gets the
    // password-file password too (the scratch database has no line of its own: the one of the
    // database it was found for is kept).
    let verify = run(kasm_db(&[
        "backups",
        "verify",
        "--json",
        "--from",
        to.path().to_str().unwrap(),
        "--scratch-db",
        "service=kasm",
    ])
    .env("HOME", home.path()));
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
    assert!(!verify.stdout.contains(&p.password) && !verify.stderr.contains(&p.password));
    let manifest = std::fs::read_dir(to.path())
        .unwrap()
        .flatten()
        .flat_map(|e| walk(&e.path()))
        .find(|p| p.file_name().is_some_and(|n| n == "manifest.json"))
        .expect("a manifest");
    let text = std::fs::read_to_string(manifest).unwrap();
    assert!(text.contains("users") && text.contains("500"), "{text}");
    assert!(!text.contains(&p.password));
}

fn walk(p: &Path) -> Vec<PathBuf> {
    if p.is_dir() {
        std::fs::read_dir(p)
            .unwrap()
            .flatten()
            .flat_map(|e| walk(&e.path()))
            .collect()
    } else {
        vec![p.to_path_buf()]
    }
}

#[test]
fn help_names_the_libpq_files() {
    let h = run(kasm_db(&["--help"]));
    assert_eq!(h.code, 0);
    for word in [
        "PGPASSFILE",
        "~/.pgpass",
        "PGSERVICE",
        "PGCONNECT_TIMEOUT",
        "PGAPPNAME",
    ] {
        assert!(
            h.stdout.contains(word),
            "--help lacks {word}:\n{}",
            h.stdout
        );
    }
}

/// libpq's own syntax, exactly: the same connection strings reach the same server, role and
/// database through `psql` and `kasm-db` (key=value with quoted values, escapes and spaces; a
/// URL with percent-escapes), a password with two spaces, a quote and a backslash authenticates,
/// and a wrong one fails in both.
#[test]
fn connection_strings_mean_what_they_mean_to_psql() {
    let p = pg();
    let base = fresh_db();
    let suffix = dbname(&base);
    let role = format!("o'q {suffix}");
    let db = format!("my db {suffix}");
    let password = r"p  w'x\y";
    psql(
        &base,
        &format!(
            "CREATE ROLE \"{role}\" LOGIN PASSWORD '{}'",
            password.replace('\'', "''")
        ),
    );
    psql(&base, &format!("CREATE DATABASE \"{db}\" OWNER \"{role}\""));
    let q = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let enc = |v: &str| -> String {
        v.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let keyvalue = |pw: &str| {
        format!(
            "host=127.0.0.1 port = {} sslmode=disable dbname={} user={} password={} application_name='kasm db test'",
            p.port,
            q(&db),
            q(&role),
            q(pw)
        )
    };
    let url = |pw: &str| {
        format!(
            "postgresql://{}:{}@127.0.0.1:{}/{}?sslmode=disable",
            enc(&role),
            enc(pw),
            p.port,
            enc(&db)
        )
    };
    let home = tempfile::tempdir().unwrap();
    for conn in [keyvalue(password), url(password)] {
        // psql reaches the role and database the string names...
        let out = Command::new(p.bindir.join("psql"))
            .args([
                "-X",
                "-At",
                "-c",
                "SELECT current_user || '|' || current_database()",
            ])
            .arg(&conn)
            .env("HOME", home.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{role}|{db}")
        );
        // ...and so does kasm-db: its schema lands in that database, created by that role.
        let r = run(kasm_db(&["migrate", "--db", &conn, "--json"]).env("HOME", home.path()));
        assert_eq!(
            r.code,
            0,
            "kasm-db with {:?}: {}",
            redacted(&conn),
            r.stderr
        );
        let owner = psql(
            &base,
            &format!(
                "SELECT 1 FROM pg_database WHERE datname = '{}'",
                db.replace('\'', "''")
            ),
        );
        assert_eq!(owner, "1");
        assert!(!r.stderr.contains("p  w"), "{}", r.stderr);
    }
    let out = Command::new(p.bindir.join("psql"))
        .args(["-X", "-At", "-h"])
        .arg(&p.sockdir)
        .args(["-p", &p.port.to_string(), "-U", "postgres", "-d", &db, "-c"])
        .arg("SELECT tableowner FROM pg_tables WHERE tablename = 'kasm_db_migrations'")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), role);
    // A wrong password (the right one with one space fewer) fails in both, and is not printed.
    for conn in [keyvalue(r"p w'x\y"), url(r"p w'x\y")] {
        let psql_ok = Command::new(p.bindir.join("psql"))
            .args(["-X", "-At", "-c", "SELECT 1"])
            .arg(&conn)
            .env("HOME", home.path())
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .unwrap()
            .status
            .success();
        assert!(!psql_ok);
        let r = run(kasm_db(&["migrate", "--db", &conn]).env("HOME", home.path()));
        assert_ne!(r.code, 0);
        assert!(r.stderr.contains("password"), "{}", r.stderr);
        assert!(!r.stderr.contains("p w'x"), "{}", r.stderr);
    }
}

fn redacted(conn: &str) -> String {
    conn.replace("p  w", "<pw>")
}
