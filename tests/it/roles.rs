//! Roles travel with the backup (issue 17): a backup records the roles its database needs and,
//! when the backing-up role may read `pg_authid`, their password hashes in a separate object
//! (sealed when the backup is encrypted), never in the manifest or any output;
//! `restore --create-roles` onto a bare server (initdb only) creates them before anything else,
//! so that Kasm's `kasmapp` logs in with its old password and reads every table, memberships
//! included, and leaves a role the target already had as it was. From a managed PostgreSQL's
//! administrator (no `pg_authid`) no hash travels: the restore names the login roles that need
//! a password and prints the `ALTER ROLE` for each; an attribute it may not give is left out
//! with a warning. Each test starts its own source and target clusters (roles are per server).

use crate::common::kasm;

use crate::common::*;
use kasm_db::pgtemp::Cluster;
use serde_json::Value;
use std::path::Path;

/// A role name that needs quoting: a space and a double quote.
const RO: &str = "kasm \"ro\" user";
const RO_SQL: &str = "\"kasm \"\"ro\"\" user\"";

fn cluster() -> Cluster {
    Cluster::start(&std::env::vars().collect()).expect("start throwaway postgres")
}

fn sql(c: &Cluster, db: &str, q: &str) -> String {
    c.psql(db, q).unwrap_or_else(|e| panic!("{q}: {e}"))
}

/// `q` as `user` with `password`, over TCP (scram-sha-256 in pg_hba).
fn login(c: &Cluster, user: &str, password: &str, db: &str, q: &str) -> Result<String, String> {
    let out = std::process::Command::new(c.bindir.join("psql"))
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
        .args(["-p", &c.port.to_string(), "-U", user, "-d", db, "-c", q])
        .env("PGPASSWORD", password)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Every byte of every file under `dir`, as (name, bytes).
fn stored(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(stored(&p));
        } else {
            out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The source: Kasm's database owned by `kasmapp` (LOGIN with a password and a connection
/// limit), a read-only login role with a name that needs quoting granted SELECT, a group role
/// both are members of that has USAGE on the schema, and a role only default privileges name.
/// Returns the passwords of kasmapp and the read-only role.
fn kasm_source(c: &Cluster) -> (String, String) {
    let (app_pw, ro_pw) = (unique("app"), unique("ro"));
    sql(
        c,
        "postgres",
        &format!(
            "CREATE ROLE kasmapp LOGIN PASSWORD '{app_pw}' CONNECTION LIMIT 50;
             CREATE ROLE kasm_staff NOLOGIN;
             CREATE ROLE {RO_SQL} LOGIN PASSWORD '{ro_pw}' VALID UNTIL '2099-01-01 00:00:00+00';
             CREATE ROLE kasm_future NOLOGIN;
             GRANT kasm_staff TO kasmapp;
             GRANT kasm_staff TO {RO_SQL} WITH ADMIN OPTION;"
        ),
    );
    sql(c, "postgres", "CREATE DATABASE kasm OWNER kasmapp");
    sql(
        c,
        "kasm",
        &format!("SET ROLE kasmapp; {}", kasm::SCHEMA_SQL),
    );
    sql(
        c,
        "kasm",
        &format!(
            "SET ROLE kasmapp;
             GRANT USAGE ON SCHEMA public TO kasm_staff;
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {RO_SQL};
             ALTER DEFAULT PRIVILEGES FOR ROLE kasmapp GRANT SELECT ON TABLES TO kasm_future;"
        ),
    );
    (app_pw, ro_pw)
}

/// The hashes the source's pg_authid holds for `roles`.
fn hashes(c: &Cluster, roles: &[&str]) -> Vec<String> {
    roles
        .iter()
        .map(|r| {
            let h = sql(
                c,
                "postgres",
                &format!(
                    "SELECT rolpassword FROM pg_authid WHERE rolname = '{}'",
                    r.replace('\'', "''")
                ),
            );
            assert!(h.starts_with("SCRAM-SHA-256$"), "{r}: {h}");
            h
        })
        .collect()
}

fn names(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

#[test]
fn a_bare_server_gets_the_roles_and_kasmapp_logs_in_with_its_old_password() {
    let (src, dst) = (cluster(), cluster());
    let (app_pw, ro_pw) = kasm_source(&src);
    let secrets = hashes(&src, &["kasmapp", RO]);
    let no_secret = |what: &str, text: &str| {
        for s in secrets
            .iter()
            .map(String::as_str)
            .chain([&*app_pw, &*ro_pw])
        {
            assert!(!text.contains(s), "a secret in {what}:\n{text}");
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().to_str().unwrap();
    // With every log line on (tokio-postgres's statements and parameters included).
    let traced = |args: &[&str]| {
        let mut c = kasm_db(args);
        c.env("KASM_DB_LOG", "trace");
        run(c)
    };
    let r = traced(&["backup", "--json", "--db", &src.url("kasm"), "--to", to]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    no_secret("backup's output", &(r.stdout.clone() + &r.stderr));
    let v = json(&r);
    assert_eq!(v["roles"]["password_hashes"], true, "{v}");
    assert_eq!(v["roles"]["names"].as_array().unwrap().len(), 4, "{v}");
    let id = v["id"].as_str().unwrap().to_string();

    // The manifest lists the roles and says the hashes travel; it holds none.
    let manifest = std::fs::read_to_string(dir.path().join(&id).join("manifest.json")).unwrap();
    no_secret("the manifest", &manifest);
    let m: Value = serde_json::from_str(&manifest).unwrap();
    let roles = &m["roles"];
    assert_eq!(
        names(&roles["names"]),
        ["kasm \"ro\" user", "kasm_future", "kasm_staff", "kasmapp"],
        "{roles}"
    );
    assert_eq!(roles["password_hashes"], true, "{roles}");
    let app = roles["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "kasmapp")
        .unwrap();
    assert_eq!(
        (&app["login"], &app["connection_limit"], &app["superuser"]),
        (&Value::from(true), &Value::from(50), &Value::from(false)),
        "{app}"
    );
    assert!(
        roles["memberships"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["role"] == "kasm_staff" && g["member"] == RO && g["admin"] == true),
        "{roles}"
    );
    // The hashes are in their own object (plain: this backup is not encrypted).
    let object = roles["passwords"]["object"].as_str().unwrap();
    let carried = std::fs::read(dir.path().join(object)).unwrap();
    assert!(secrets.iter().all(|h| contains(&carried, h)));
    let listed = run(kasm_db(&["backups", "list", "--json", "--from", to]));
    no_secret("backups list", &(listed.stdout + &listed.stderr));

    // The target is bare but for one role of the same name with other attributes.
    sql(
        &dst,
        "postgres",
        "CREATE ROLE kasm_staff LOGIN CONNECTION LIMIT 3",
    );
    let staff =
        "SELECT rolcanlogin::text || rolconnlimit FROM pg_roles WHERE rolname = 'kasm_staff'";
    assert_eq!(sql(&dst, "postgres", staff), "true3");
    let target = dst.url("kasm");

    // Without the flag, the restore refuses as before, and says what the flag does.
    let r = run(kasm_db(&[
        "restore", "--json", "--from", to, "--target", &target,
    ]));
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("\"kasmapp\" does not exist") && r.stderr.contains("--create-roles"),
        "{}",
        r.stderr
    );
    assert_eq!(
        sql(
            &dst,
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname = 'kasmapp'"
        ),
        "0"
    );

    let r = traced(&[
        "restore",
        "--json",
        "--create-roles",
        "--from",
        to,
        "--target",
        &target,
    ]);
    assert!(
        r.stderr.contains("set_config"),
        "the trace shows statements"
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    no_secret("restore's output", &(r.stdout.clone() + &r.stderr));
    let v = json(&r);
    let roles = &v["roles"];
    assert_eq!(
        names(&roles["created"]),
        ["kasm \"ro\" user", "kasm_future", "kasmapp"],
        "{v}"
    );
    assert_eq!(names(&roles["existing"]), ["kasm_staff"], "{v}");
    assert_eq!(roles["need_password"], serde_json::json!([]), "{v}");
    assert_eq!(roles["password_hashes"], true);
    assert_eq!(roles["memberships_granted"], 2, "{v}");
    assert_eq!(v["database_properties"]["owner"], "kasmapp", "{v}");
    assert_eq!(v["warnings"], serde_json::json!([]), "{v}");

    // kasmapp logs in with its old password over scram-sha-256 and reads every table.
    for t in kasm::TABLES.iter().chain(&["logs"]) {
        let there = kasm::digest(
            |q| login(&dst, "kasmapp", &app_pw, "kasm", q).unwrap_or_else(|e| panic!("{e}")),
            t,
        );
        assert_eq!(
            there,
            kasm::digest(|q| sql(&src, "kasm", q), t),
            "table {t}"
        );
    }
    assert!(login(&dst, "kasmapp", "wrong", "kasm", "SELECT 1").is_err());
    // So does the read-only role, whose name needs quoting, with its own.
    assert_eq!(
        login(&dst, RO, &ro_pw, "kasm", "SELECT count(*) FROM users").unwrap(),
        kasm::USERS.to_string()
    );
    assert!(login(&dst, RO, &ro_pw, "kasm", "DELETE FROM users").is_err());
    // Attributes and memberships as on the source.
    assert_eq!(
        sql(
            &dst,
            "postgres",
            &format!(
                "SELECT string_agg(rolname || ':' || rolcanlogin || ':' || rolconnlimit || ':' ||
                                   coalesce(to_char(rolvaliduntil AT TIME ZONE 'UTC', 'YYYY'), '-'),
                                   ' ' ORDER BY rolname)
                 FROM pg_roles WHERE rolname IN ('kasmapp', 'kasm_future', '{}')",
                RO.replace('\'', "''")
            )
        ),
        "kasm \"ro\" user:true:-1:2099 kasm_future:false:-1:- kasmapp:true:50:-"
    );
    assert_eq!(
        sql(
            &dst,
            "postgres",
            "SELECT string_agg(u.rolname || '>' || g.rolname || ':' || m.admin_option, ' '
                               ORDER BY u.rolname)
             FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
             JOIN pg_roles u ON u.oid = m.member WHERE g.rolname = 'kasm_staff'"
        ),
        "kasm \"ro\" user>kasm_staff:true kasmapp>kasm_staff:false"
    );
    // The default privileges' role exists again, and kasm_staff is exactly as it was.
    assert_eq!(
        sql(&dst, "kasm", "SELECT count(*) FROM pg_default_acl"),
        "1"
    );
    assert_eq!(sql(&dst, "postgres", staff), "true3");
}

#[test]
fn an_encrypted_backup_seals_the_hashes_too() {
    let (src, dst) = (cluster(), cluster());
    let (app_pw, _) = kasm_source(&src);
    let secrets = hashes(&src, &["kasmapp", RO]);
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("backups");
    let keyfile = dir.path().join("key");
    std::fs::write(&keyfile, "ab".repeat(32)).unwrap();
    let with_key = |args: &[&str]| {
        let mut c = kasm_db(args);
        c.env("KASM_DB_BACKUP_ENCRYPTION_KEY_FILE", &keyfile);
        run(c)
    };
    let to_s = to.to_str().unwrap();
    let r = with_key(&["backup", "--json", "--db", &src.url("kasm"), "--to", to_s]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let objects = stored(&to);
    assert!(
        objects
            .iter()
            .any(|(n, _)| n.ends_with("role-passwords.json.aes")),
        "{:?}",
        objects.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    for (name, bytes) in &objects {
        for h in &secrets {
            assert!(!contains(bytes, h), "a hash in plain bytes of {name}");
            // Not even the salt or a part of it.
            let salt = h.split('$').nth(1).unwrap().split(':').nth(1).unwrap();
            assert!(!contains(bytes, salt), "a salt in {name}");
        }
    }
    let r = with_key(&[
        "restore",
        "--json",
        "--create-roles",
        "--from",
        to_s,
        "--target",
        &dst.url("kasm"),
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        secrets
            .iter()
            .all(|h| !r.stdout.contains(h) && !r.stderr.contains(h))
    );
    assert_eq!(
        login(
            &dst,
            "kasmapp",
            &app_pw,
            "kasm",
            "SELECT count(*) FROM users"
        )
        .unwrap(),
        kasm::USERS.to_string()
    );
    // Without the key nothing is created.
    let other = cluster();
    let r = run(kasm_db(&[
        "restore",
        "--create-roles",
        "--from",
        to_s,
        "--target",
        &other.url("kasm"),
    ]));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(
        sql(
            &other,
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname = 'kasmapp'"
        ),
        "0"
    );
    // A damaged passwords object fails `backups verify` and stops the restore before it
    // creates anything.
    let (sealed, _) = objects
        .iter()
        .find(|(n, _)| n.ends_with("role-passwords.json.aes"))
        .unwrap();
    let mut bytes = std::fs::read(sealed).unwrap();
    bytes[30] ^= 1;
    std::fs::write(sealed, bytes).unwrap();
    let r = with_key(&["backups", "verify", "latest", "--json", "--from", to_s]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("role passwords object"), "{}", r.stdout);
    let r = with_key(&[
        "restore",
        "--create-roles",
        "--from",
        to_s,
        "--target",
        &other.url("kasm"),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("corrupt"), "{}", r.stderr);
    assert_eq!(
        sql(
            &other,
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname <> 'postgres' AND rolname NOT LIKE 'pg\\_%'"
        ),
        "0"
    );
}

const ADMIN: &str = "kdb_admin";

/// The managed service's administrator (CREATEDB CREATEROLE, no superuser, no pg_authid).
fn administrator(c: &Cluster) -> String {
    let pw = unique("admin");
    sql(
        c,
        "postgres",
        &format!(
            "CREATE ROLE {ADMIN} LOGIN PASSWORD '{pw}' CREATEDB CREATEROLE NOSUPERUSER;
             GRANT pg_monitor, pg_signal_backend TO {ADMIN};"
        ),
    );
    pw
}

fn admin_url(c: &Cluster, pw: &str, db: &str) -> String {
    format!("postgres://{ADMIN}:{pw}@127.0.0.1:{}/{db}", c.port)
}

#[test]
fn a_managed_source_carries_no_hashes_and_the_restore_says_which_passwords_to_set() {
    managed(cluster(), None);
}

/// The same onto PostgreSQL 17, whose CREATEROLE gives only what its holder has and makes the
/// creator an ADMIN-only member of the roles it creates.
#[test]
fn a_managed_administrator_on_postgresql_17_creates_the_roles_too() {
    let bindir = pg_cache().join("17").join("bin");
    assert!(
        bindir.join("postgres").is_file(),
        "PostgreSQL 17 is not at {}: run scripts/setup",
        bindir.display()
    );
    let dst = Cluster::start_from(&bindir, &[], &std::env::vars().collect()).unwrap();
    managed(dst, Some(&bindir));
}

/// Where `scripts/setup` unpacks the other majors (as tests/it/majors.rs finds them).
fn pg_cache() -> std::path::PathBuf {
    if let Some(d) = std::env::var_os("PG_MAJORS_CACHE").filter(|d| !d.is_empty()) {
        return d.into();
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return "/var/cache/kasm-db/pg".into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache")
        });
    cache.join("kasm-db/pg")
}

/// Back up Kasm's database as a managed administrator on the system's PostgreSQL, restore it
/// with `--create-roles` as the administrator of `dst` (with the client tools of `pg_bindir`).
fn managed(dst: Cluster, pg_bindir: Option<&Path>) {
    let src = cluster();
    let pw = administrator(&src);
    let admin =
        |db: &str, q: &str| login(&src, ADMIN, &pw, db, q).unwrap_or_else(|e| panic!("{q}: {e}"));
    admin("postgres", "SELECT 1");
    assert!(login(&src, ADMIN, &pw, "postgres", "SELECT 1 FROM pg_authid").is_err());
    // Kasm's RDS set-up; the provider (a superuser) added a replication role with SELECT.
    admin(
        "postgres",
        "CREATE ROLE kasmapp LOGIN PASSWORD 'app-secret'",
    );
    admin("postgres", &format!("GRANT kasmapp TO {ADMIN}"));
    admin("postgres", "CREATE DATABASE kasm OWNER kasmapp");
    // Kasm's schema without uuid-ossp, which the PostgreSQL 17 build lacks.
    let schema = kasm::SCHEMA_SQL
        .replace("CREATE EXTENSION IF NOT EXISTS \"uuid-ossp\";", "")
        .replace("uuid_generate_v4()", "gen_random_uuid()");
    admin("kasm", &format!("SET ROLE kasmapp; {schema}"));
    sql(&src, "postgres", "CREATE ROLE kasm_repl LOGIN REPLICATION");
    sql(&src, "kasm", "GRANT SELECT ON settings TO kasm_repl");

    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().to_str().unwrap();
    let r = run(kasm_db(&[
        "backup",
        "--json",
        "--db",
        &admin_url(&src, &pw, "kasm"),
        "--to",
        to,
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r);
    assert_eq!(v["roles"]["password_hashes"], false, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let m: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(&id).join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["roles"]["password_hashes"], false, "{}", m["roles"]);
    assert_eq!(m["roles"]["passwords"], Value::Null);
    assert_eq!(names(&m["roles"]["names"]), ["kasm_repl", "kasmapp"]);
    assert_eq!(
        std::fs::read_dir(dir.path().join(&id)).unwrap().count(),
        2,
        "only the dump and the manifest"
    );

    let dpw = administrator(&dst);
    let target = admin_url(&dst, &dpw, "kasm");
    let bindir = pg_bindir.map(|d| d.to_str().unwrap());
    let restore = |json: bool| {
        let mut args = vec![
            "restore",
            "--create-roles",
            "--from",
            to,
            "--target",
            &target,
        ];
        if let Some(d) = bindir {
            args.extend(["--pg-bindir", d]);
        }
        if json {
            args.push("--json");
        }
        run(kasm_db(&args))
    };
    let r = restore(true);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = json(&r);
    let roles = &v["roles"];
    assert_eq!(names(&roles["created"]), ["kasm_repl", "kasmapp"], "{v}");
    assert_eq!(
        names(&roles["need_password"]),
        ["kasm_repl", "kasmapp"],
        "{v}"
    );
    assert_eq!(roles["password_hashes"], false);
    assert!(
        names(&roles["password_statements"])
            .contains(&"ALTER ROLE \"kasmapp\" PASSWORD '...';".to_string()),
        "{v}"
    );
    assert_eq!(
        names(&roles["restoring_role_member_of"]),
        ["kasmapp"],
        "{v}"
    );
    let warnings = names(&v["warnings"]).join("\n");
    assert!(
        warnings.contains("\"kasm_repl\" was created without REPLICATION")
            && warnings.contains("ALTER ROLE \"kasm_repl\" REPLICATION"),
        "{warnings}"
    );
    assert_eq!(v["database_properties"]["owner"], "kasmapp");
    assert_eq!(
        sql(
            &dst,
            "postgres",
            "SELECT rolreplication::text || rolcanlogin::text || (rolpassword IS NULL)::text
             FROM pg_authid WHERE rolname = 'kasm_repl'"
        ),
        "falsetruetrue"
    );
    assert_eq!(
        sql(
            &dst,
            "kasm",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'users'"
        ),
        "kasmapp"
    );
    // The operator runs the advice; kasmapp then logs in and reads.
    sql(&dst, "postgres", "ALTER ROLE kasmapp PASSWORD 'new-secret'");
    assert_eq!(
        login(
            &dst,
            "kasmapp",
            "new-secret",
            "kasm",
            "SELECT count(*) FROM users"
        )
        .unwrap(),
        kasm::USERS.to_string()
    );

    // For people, the advice is printed as the statement to run.
    sql(&dst, "postgres", "DROP DATABASE kasm");
    sql(&dst, "postgres", "DROP ROLE kasmapp");
    sql(
        &dst,
        "postgres",
        "DROP OWNED BY kasm_repl; DROP ROLE kasm_repl",
    );
    let r = restore(false);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("\n    ALTER ROLE \"kasmapp\" PASSWORD '...';")
            && r.stdout
                .contains("ALTER ROLE \"kasm_repl\" PASSWORD '...';")
            && r.stdout.contains("created without REPLICATION"),
        "{}",
        r.stdout
    );
}
