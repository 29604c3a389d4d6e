//! Every command as a managed PostgreSQL's administrator (RDS, Aurora): a role with CREATEDB and
//! CREATEROLE but not SUPERUSER, given what RDS's `rds_superuser` holds (`pg_monitor`,
//! `pg_signal_backend`, `pg_checkpoint`) and without access to `pg_authid`. On kasm-db's own
//! database it creates: migrate, ingest, size, vacuum (plain and `--full`), report, backup,
//! `backups verify --scratch-db`, restore and purge all work. `vacuum --full` on a database it
//! does not own skips the tables it may not maintain and does the others. On Kasm's database
//! (owned by `kasmapp`, a role the administrator is a member of, as Kasm's RDS set-up makes it):
//! migrate refuses it; size, vacuum, `backup --exclude-logs` work; restore onto a server where
//! the administrator is not yet a member of `kasmapp` stops before it touches anything, saying
//! what to grant; once granted it restores, and the `pgaudit.log` setting only a superuser may
//! set is skipped with a warning that says so while the other settings are applied.

use crate::common::kasm;

use crate::common::*;
use serde_json::Value;
use std::sync::OnceLock;

const ADMIN: &str = "kdb_admin";

fn password() -> &'static str {
    static PW: OnceLock<String> = OnceLock::new();
    PW.get_or_init(|| format!("admin-{}", uuid::Uuid::new_v4().simple()))
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

#[derive(Clone, Copy, PartialEq)]
enum Server {
    Primary,
    Standby,
}

/// Clusters of this module's own: its tests create `kasmapp` (which must not exist yet) and
/// make the administrator a member of it, cluster-wide facts the other modules' Kasm databases
/// on the shared clusters would see.
static OWN_PRIMARY: SharedCluster = SharedCluster::new();
static OWN_STANDBY: SharedCluster = SharedCluster::new();

fn on<T>(s: Server, f: impl FnOnce(&mut kasm_db::pgtemp::Cluster) -> T) -> T {
    match s {
        Server::Primary => OWN_PRIMARY.with(f),
        Server::Standby => OWN_STANDBY.with(f),
    }
}

/// The administrator role, as the provider creates it (once per cluster).
fn setup(s: Server) {
    static PRIMARY: OnceLock<()> = OnceLock::new();
    static STANDBY: OnceLock<()> = OnceLock::new();
    let cell = if s == Server::Primary {
        &PRIMARY
    } else {
        &STANDBY
    };
    cell.get_or_init(|| {
        on(s, |c| {
            c.psql(
                "postgres",
                &format!(
                    "CREATE ROLE {ADMIN} LOGIN PASSWORD '{}' CREATEDB CREATEROLE NOSUPERUSER;
                     GRANT pg_monitor, pg_signal_backend, pg_checkpoint TO {ADMIN};",
                    password()
                ),
            )
        })
        .unwrap_or_else(|e| panic!("{e}"));
    });
}

/// SQL as the superuser.
fn su(s: Server, db: &str, sql: &str) -> String {
    on(s, |c| c.psql(db, sql)).unwrap_or_else(|e| panic!("{e}"))
}

/// SQL as the administrator, over TCP with its password.
fn admin(s: Server, db: &str, sql: &str) -> Result<String, String> {
    let (bindir, port) = on(s, |c| (c.bindir.clone(), c.port));
    let out = std::process::Command::new(bindir.join("psql"))
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
        ])
        .args(["-p", &port.to_string(), "-U", ADMIN, "-d", db, "-c", sql])
        .env("PGPASSWORD", password())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn admin_ok(s: Server, db: &str, sql: &str) -> String {
    admin(s, db, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn admin_url(s: Server, db: &str) -> String {
    let port = on(s, |c| c.port);
    format!("postgres://{ADMIN}:{}@127.0.0.1:{port}/{db}", password())
}

/// Run kasm-db; assert the administrator's password appears nowhere in its output.
fn kdb(args: &[&str]) -> Run {
    let r = run(kasm_db(args));
    assert!(
        !r.stdout.contains(password()) && !r.stderr.contains(password()),
        "password leaked:\n{}\n{}",
        r.stdout,
        r.stderr
    );
    r
}

fn ok(args: &[&str]) -> Value {
    let r = kdb(args);
    assert_eq!(r.code, 0, "{args:?}\n{}\n{}", r.stdout, r.stderr);
    json(&r)
}

#[test]
fn the_administrator_is_what_a_managed_service_gives() {
    setup(Server::Primary);
    let e = admin(
        Server::Primary,
        "postgres",
        "SELECT count(*) FROM pg_authid",
    )
    .unwrap_err();
    assert!(e.contains("permission denied"), "{e}");
    assert_eq!(
        admin_ok(
            Server::Primary,
            "postgres",
            "SELECT rolsuper::text || rolcreatedb::text || rolcreaterole::text FROM pg_roles WHERE rolname = current_user"
        ),
        "falsetruetrue"
    );
}

#[test]
fn every_command_on_kasm_dbs_own_database_as_a_managed_admin() {
    setup(Server::Primary);
    setup(Server::Standby);
    let db = unique("kasm_logs");
    admin_ok(
        Server::Primary,
        "postgres",
        &format!("CREATE DATABASE {db}"),
    );
    let url = admin_url(Server::Primary, &db);
    let v = ok(&["migrate", "--json", "--db", &url]);
    assert_eq!(
        v["applied"].as_array().unwrap().len(),
        kasm_db::db::migrate::MIGRATIONS.len(),
        "{v}"
    );

    let work = tempfile::tempdir().unwrap();
    let records = work.path().join("records.ndjson");
    let generated = run(kasm_db(&["gen-logs", "2000"]));
    assert_eq!(generated.code, 0, "{}", generated.stderr);
    std::fs::write(&records, generated.stdout).unwrap();
    let v = ok(&["ingest", "--json", "--db", &url, records.to_str().unwrap()]);
    assert_eq!(
        (v["read"].as_i64(), v["rejected"].as_i64()),
        (Some(2000), Some(0)),
        "{v}"
    );
    assert_eq!(
        admin_ok(Server::Primary, &db, "SELECT count(*) FROM logs"),
        "2000"
    );

    let v = ok(&["size", "--json", "--db", &url]);
    assert_eq!(
        (v["logs_relation"].as_str(), v["logs_rows"].as_i64()),
        (Some("kasm-db"), Some(2000))
    );
    let v = ok(&["vacuum", "--json", "--db", &url]);
    assert!(
        v["tables"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["error"].is_null()),
        "{v}"
    );
    let v = ok(&["vacuum", "--full", "--json", "--db", &url]);
    assert!(
        v["tables"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["error"].is_null()),
        "{v}"
    );
    let html = work.path().join("report.html");
    let r = kdb(&["report", "--db", &url, "--html", html.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(std::fs::metadata(&html).unwrap().len() > 0);

    let backups = work.path().join("backups");
    let to = backups.to_str().unwrap();
    let v = ok(&["backup", "--json", "--db", &url, "--to", to]);
    let id = v["id"].as_str().unwrap().to_string();
    let scratch = admin_url(Server::Standby, "postgres");
    let v = ok(&[
        "backups",
        "verify",
        &id,
        "--json",
        "--from",
        to,
        "--scratch-db",
        &scratch,
    ]);
    assert_eq!(v["ok"], true, "{v}");

    let target = unique("kasm_logs");
    let v = ok(&[
        "restore",
        "--json",
        "--from",
        to,
        "--target",
        &admin_url(Server::Standby, &target),
    ]);
    assert_eq!(v["warnings"], serde_json::json!([]), "{v}");
    assert_eq!(v["database_properties"]["owner"], ADMIN);
    assert_eq!(
        admin_ok(Server::Standby, &target, "SELECT count(*) FROM logs"),
        "2000"
    );

    let now = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let v = ok(&["purge", "--json", "--db", &url, "--now", &now]);
    assert!(v["partitions_dropped"].as_i64().unwrap() > 0, "{v}");
    assert_eq!(
        admin_ok(Server::Primary, &db, "SELECT count(*) FROM logs"),
        "0"
    );
}

/// `rows` rows with autovacuum off, 90% deleted, owned by `owner`; waits for the statistics.
fn bloated(db: &str, name: &str, owner: &str) {
    su(
        Server::Primary,
        db,
        &format!(
            "CREATE TABLE {name} (id int PRIMARY KEY, payload text) WITH (autovacuum_enabled = false);
             INSERT INTO {name} SELECT i, repeat('x', 100) FROM generate_series(1, 40000) i;
             DELETE FROM {name} WHERE id % 10 <> 0;
             ALTER TABLE {name} OWNER TO {owner};"
        ),
    );
    let sql = format!("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = '{name}'");
    wait_until(
        std::time::Duration::from_secs(30),
        format_args!("the statistics to show the dead tuples of {name}"),
        || su(Server::Primary, db, &sql) == "36000",
    );
}

#[test]
fn vacuum_full_does_what_the_admin_may_and_skips_the_rest() {
    setup(Server::Primary);
    su(
        Server::Primary,
        "postgres",
        "DO $$ BEGIN CREATE ROLE kdb_other;
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
    );
    let db = unique("other");
    su(
        Server::Primary,
        "postgres",
        &format!("CREATE DATABASE {db} OWNER kdb_other"),
    );
    bloated(&db, "mine", ADMIN);
    bloated(&db, "theirs", "kdb_other");
    let url = admin_url(Server::Primary, &db);
    let v = ok(&["vacuum", "--full", "--json", "--db", &url]);
    let mine = report_table(&v, "public.mine");
    assert_eq!(
        (mine["action"].as_str(), mine["done"].as_bool()),
        (Some("vacuum_full"), Some(true)),
        "{mine}"
    );
    let theirs = report_table(&v, "public.theirs");
    assert_eq!(
        (theirs["action"].as_str(), theirs["done"].as_bool()),
        (Some("none"), Some(false)),
        "{theirs}"
    );
    assert!(
        theirs["reason"].as_str().unwrap().contains("not owned"),
        "{theirs}"
    );
    assert!(v["released_bytes"].as_i64().unwrap() > 0);
    assert_eq!(
        su(Server::Primary, &db, "SELECT count(*) FROM theirs"),
        "4000"
    );
}

#[test]
fn kasms_database_as_a_managed_admin() {
    setup(Server::Primary);
    setup(Server::Standby);
    // Kasm's set-up on RDS: the administrator makes kasmapp (and so may grant it to itself),
    // and kasmapp's database; the provider (a superuser) set pgaudit.log on it.
    let db = unique("kasm");
    let p = Server::Primary;
    admin_ok(p, "postgres", "CREATE ROLE kasmapp LOGIN");
    admin_ok(p, "postgres", &format!("GRANT kasmapp TO {ADMIN}"));
    admin_ok(
        p,
        "postgres",
        &format!("CREATE DATABASE {db} OWNER kasmapp"),
    );
    su(
        p,
        "postgres",
        &format!("ALTER DATABASE {db} SET pgaudit.log = 'ddl'"),
    );
    admin_ok(
        p,
        "postgres",
        &format!("ALTER DATABASE {db} SET statement_timeout = '60s'"),
    );
    admin_ok(p, &db, &format!("SET ROLE kasmapp; {}", kasm::SCHEMA_SQL));
    let url = admin_url(p, &db);

    let r = kdb(&["migrate", "--db", &url]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("public.logs already exists"),
        "{}",
        r.stderr
    );
    assert_eq!(
        admin_ok(p, &db, "SELECT to_regclass('kasm_db_migrations') IS NULL"),
        "t"
    );
    let v = ok(&["size", "--json", "--db", &url]);
    assert_eq!(
        (v["logs_relation"].as_str(), v["logs_rows"].as_i64()),
        (Some("plain"), Some(kasm::LOGS))
    );
    let v = ok(&["vacuum", "--json", "--db", &url]);
    assert!(
        v["tables"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["error"].is_null()),
        "{v}"
    );

    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().to_str().unwrap();
    let v = ok(&[
        "backup",
        "--json",
        "--exclude-logs",
        "--db",
        &url,
        "--to",
        to,
    ]);
    assert_eq!(v["excluded"], serde_json::json!(["public.logs"]));
    assert_eq!(v["alembic_version"], kasm::ALEMBIC);

    // The standby has kasmapp (Kasm's installer made it) but the administrator is no member.
    let s = Server::Standby;
    su(s, "postgres", "CREATE ROLE kasmapp LOGIN");
    let target = unique("kasm");
    let target_url = admin_url(s, &target);
    let r = kdb(&["restore", "--json", "--from", to, "--target", &target_url]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("must be a member of \"kasmapp\"")
            && r.stderr
                .contains(&format!("GRANT \"kasmapp\" TO \"{ADMIN}\"")),
        "{}",
        r.stderr
    );
    assert_eq!(
        su(
            s,
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname LIKE '{target}%'")
        ),
        "0"
    );
    su(s, "postgres", &format!("GRANT kasmapp TO {ADMIN}"));
    let v = ok(&["restore", "--json", "--from", to, "--target", &target_url]);
    assert_eq!(v["excluded"], serde_json::json!(["public.logs"]));
    assert_eq!(v["database_properties"]["owner"], "kasmapp");
    // statement_timeout is given; pgaudit.log, which only a superuser may set, is skipped.
    assert_eq!(v["database_properties"]["settings"], 1, "{v}");
    let warnings = v["warnings"].to_string();
    assert!(
        warnings.contains("setting pgaudit.log for every role not applied")
            && warnings.contains("permission denied to set parameter")
            && warnings.contains("GRANT SET"),
        "{warnings}"
    );
    assert_eq!(
        su(
            s,
            "postgres",
            &format!(
                "SELECT array_to_string(setconfig, ';') FROM pg_db_role_setting r
                 JOIN pg_database d ON d.oid = r.setdatabase WHERE d.datname = '{target}'"
            )
        ),
        "statement_timeout=60s"
    );
    assert_eq!(admin_ok(s, &target, "SELECT count(*) FROM logs"), "0");
    for t in kasm::TABLES {
        assert_eq!(
            kasm::digest(|q| admin_ok(s, &target, q), t),
            kasm::digest(|q| admin_ok(p, &db, q), t),
            "table {t} differs"
        );
    }
    assert_eq!(
        kasm::logs_definition(|q| admin_ok(s, &target, q)),
        kasm::logs_definition(|q| admin_ok(p, &db, q))
    );
    // The restore test on the primary: another test's may hold the standby's scratch lock.
    let v = ok(&[
        "backups",
        "verify",
        "latest",
        "--json",
        "--from",
        to,
        "--scratch-db",
        &admin_url(p, "postgres"),
    ]);
    assert_eq!(v["ok"], true, "{v}");
}

/// A session of `user` (over the local socket, trusted) on `db` of the standby that sleeps
/// until killed; returns once the server lists it.
fn session(user: &str, db: &str) -> std::process::Child {
    let (bindir, dir, port) = on(Server::Standby, |c| {
        (c.bindir.clone(), c.dir().to_path_buf(), c.port)
    });
    let mut child = std::process::Command::new(bindir.join("psql"))
        .args(["-X", "-q", "-h"])
        .arg(&dir)
        .args([
            "-p",
            &port.to_string(),
            "-U",
            user,
            "-d",
            db,
            "-c",
            "SELECT pg_sleep(600)",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND usename = '{user}'"
    );
    let shown = std::panic::catch_unwind(|| {
        wait_until(
            std::time::Duration::from_secs(30),
            format_args!("the session of {user} to show"),
            || su(Server::Standby, "postgres", &sql) == "1",
        )
    });
    if let Err(e) = shown {
        let _ = child.kill();
        let _ = child.wait();
        std::panic::resume_unwind(e);
    }
    child
}

#[test]
fn restore_force_ends_the_sessions_it_may_and_names_those_it_may_not() {
    setup(Server::Primary);
    setup(Server::Standby);
    let src = unique("src");
    admin_ok(
        Server::Primary,
        "postgres",
        &format!("CREATE DATABASE {src}"),
    );
    admin_ok(
        Server::Primary,
        &src,
        "CREATE TABLE t AS SELECT generate_series(1, 100) AS i",
    );
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().to_str().unwrap();
    ok(&[
        "backup",
        "--json",
        "--db",
        &admin_url(Server::Primary, &src),
        "--to",
        to,
    ]);
    let s = Server::Standby;
    su(
        s,
        "postgres",
        &format!(
            "DO $$ BEGIN CREATE ROLE kdb_app LOGIN;
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
             GRANT kdb_app TO {ADMIN}"
        ),
    );
    let target = unique("tgt");
    admin_ok(s, "postgres", &format!("CREATE DATABASE {target}"));
    admin_ok(s, &target, "CREATE TABLE marker AS SELECT 'old' AS v");
    let target_url = admin_url(s, &target);
    let restore = |extra: &str| {
        kdb(&[
            "restore",
            "--json",
            "--from",
            to,
            "--target",
            &target_url,
            extra,
        ])
    };

    // A role without CREATEDB is told what it lacks, before anything is touched.
    su(
        s,
        "postgres",
        &format!(
            "DO $$ BEGIN CREATE ROLE kdb_nocreatedb LOGIN PASSWORD '{}';
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
            password()
        ),
    );
    let weak = target_url.replacen(ADMIN, "kdb_nocreatedb", 1);
    let r = kdb(&[
        "restore", "--json", "--force", "--from", to, "--target", &weak,
    ]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("needs CREATEDB (ALTER ROLE \"kdb_nocreatedb\" CREATEDB)"),
        "{}",
        r.stderr
    );
    assert_eq!(admin_ok(s, &target, "SELECT v FROM marker"), "old");

    // An application's session (a role the administrator has the privileges of) is ended.
    let mut app = session("kdb_app", &target);
    let v = ok(&[
        "restore",
        "--json",
        "--force",
        "--from",
        to,
        "--target",
        &target_url,
    ]);
    assert!(v["previous"].as_str().is_some(), "{v}");
    assert_eq!(admin_ok(s, &target, "SELECT count(*) FROM t"), "100");
    assert!(!app.wait().unwrap().success());

    // A superuser's session cannot be: a clear error, and the target stays as it was.
    admin_ok(s, &target, "CREATE TABLE marker AS SELECT 'second' AS v");
    let mut root = session("postgres", &target);
    let r = restore("--force");
    let _ = root.kill();
    let _ = root.wait();
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("1 session(s) on the target database")
            && r.stderr.contains("belong to a superuser"),
        "{}",
        r.stderr
    );
    assert_eq!(admin_ok(s, &target, "SELECT v FROM marker"), "second");
    assert_eq!(
        su(
            s,
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname LIKE '{target}_restore%'")
        ),
        "0"
    );
}
