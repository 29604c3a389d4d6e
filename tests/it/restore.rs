//! Restore against two real clusters: backups are made on the primary and restored onto the
//! standby cluster (and, for the refusal, onto a hot standby replica made with
//! `pg_basebackup -R`). Covers: restore over an existing database keeps it as `previous` and
//! the new content is identical to the source (row counts and content digests); a corrupt
//! object is refused with the target untouched and no leftover database; SIGTERM mid
//! pg_restore drops the half-made database; SIGKILL leaves the target untouched and the next
//! restore drops the leftover; in-use targets need `--force`; a missing role is named; an
//! encrypted backup needs its key; restore from S3; `backups verify --scratch-db` passes and
//! fails when it should; an unreachable target exits 75; passwords are never printed. The
//! database's own properties (owner, encoding/locale incl. ICU, ACL, database and per-role
//! settings, connection limit, comment) reach a new name and an existing one; roles missing on
//! the target fail the restore before anything is made, or with `--no-owner` are skipped and
//! reported; a manifest written before they were recorded still restores; a locale the target
//! lacks only warns.

use crate::common::moto;

use crate::common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const TABLES: [&str; 4] = ["users", "sessions", "events", "plogs"];

/// A Kasm-like source database on the primary: three tables, an index, a sequence, jsonb.
fn seeded_db() -> String {
    let url = fresh_db();
    psql(
        &url,
        "CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL);
         INSERT INTO users (name) SELECT 'user ' || i FROM generate_series(1, 1000) i;
         CREATE TABLE sessions (id bigint PRIMARY KEY, user_id int REFERENCES users, started timestamptz);
         INSERT INTO sessions SELECT i, 1 + i % 1000, '2026-01-01'::timestamptz + i * interval '1 min'
           FROM generate_series(1, 2500) i;
         CREATE TABLE events (id bigint, data jsonb);
         CREATE INDEX ON events (id);
         INSERT INTO events SELECT i, jsonb_build_object('k', i, 'm', md5(i::text))
           FROM generate_series(1, 3000) i;
         CREATE TABLE plogs (id int, level text) PARTITION BY LIST (level);
         CREATE TABLE plogs_debug PARTITION OF plogs FOR VALUES IN ('DEBUG');
         CREATE TABLE plogs_other PARTITION OF plogs DEFAULT;
         INSERT INTO plogs SELECT i, CASE WHEN i % 4 = 0 THEN 'DEBUG' ELSE 'INFO' END
           FROM generate_series(1, 400) i;",
    );
    url
}

fn name_of(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_string()
}

fn passwords() -> Vec<String> {
    vec![
        with_primary(|c| c.password.expose().to_string()),
        with_standby(|c| c.password.expose().to_string()),
    ]
}

/// `backups verify --scratch-db` on the standby, no password in any attempt's output.
fn verify_scratch_checked(from: &Path, id: &str) -> Run {
    verify_scratch(from, id, no_password)
}

fn no_password(r: &Run) {
    for pw in passwords() {
        assert!(
            !r.stdout.contains(&pw) && !r.stderr.contains(&pw),
            "password leaked:\n{}\n{}",
            r.stdout,
            r.stderr
        );
    }
}

/// A new empty database on the standby holding a marker table: the "existing" target.
fn standby_target() -> String {
    let name = with_standby(|c| c.fresh_db("tgt")).unwrap();
    standby_sql(
        &name,
        "CREATE TABLE old_marker (v text); INSERT INTO old_marker VALUES ('before restore')",
    );
    name
}

fn marker(db: &str) -> String {
    standby_sql(db, "SELECT v FROM old_marker")
}

/// Databases on the standby whose name starts with `prefix`.
fn standby_dbs(prefix: &str) -> Vec<String> {
    let out = standby_sql(
        "postgres",
        &format!(
            "SELECT datname FROM pg_database WHERE starts_with(datname, '{prefix}') ORDER BY 1"
        ),
    );
    out.lines().map(String::from).collect()
}

/// Back `url` up into a new directory; (dir, backup id).
fn backup(url: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let r = run(kasm_db(&[
        "backup",
        "--json",
        "--db",
        url,
        "--to",
        dir.path().to_str().unwrap(),
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let id = json(&r)["id"].as_str().unwrap().to_string();
    (dir, id)
}

fn restore(from: &Path, target_url: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "restore",
        "--json",
        "--from",
        from.to_str().unwrap(),
        "--target",
        target_url,
    ];
    args.extend_from_slice(extra);
    let r = run(kasm_db(&args));
    no_password(&r);
    r
}

fn assert_same_content(source_url: &str, standby_db: &str) {
    for t in TABLES {
        let src = digest(|q| psql(source_url, q), t);
        let dst = digest(|q| standby_sql(standby_db, q), t);
        assert_eq!(src, dst, "table {t} differs");
    }
    // The sequence continues where the source's did.
    assert_eq!(
        standby_sql(standby_db, "SELECT last_value FROM users_id_seq"),
        "1000"
    );
}

#[test]
fn restore_over_an_existing_database_keeps_it_as_previous_and_matches_the_source() {
    let src = seeded_db();
    let (dir, id) = backup(&src);
    let target = standby_target();
    let r = restore(dir.path(), &standby_url(&target), &["--jobs", "2"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let j = json(&r);
    assert_eq!(j["backup"], id.as_str());
    assert_eq!(j["database"], target.as_str());
    // Partitions count as tables (the manifest's unit), the partitioned parent does not.
    assert_eq!(j["tables"], 5);
    assert_eq!(j["rows"], 1000 + 2500 + 3000 + 400);
    assert!(j["duration_s"].as_f64().unwrap() > 0.0);
    let previous = j["previous"].as_str().unwrap().to_string();
    assert!(
        previous.starts_with(&format!("{target}_pre_restore_")),
        "{previous}"
    );
    // The new content is the source's; the old database is kept, untouched, as `previous`.
    assert_same_content(&src, &target);
    assert_eq!(marker(&previous), "before restore");
    assert_eq!(
        standby_sql(&target, "SELECT to_regclass('old_marker') IS NULL"),
        "t"
    );
    // ANALYZE ran: the planner knows the tables' sizes.
    assert_eq!(
        standby_sql(
            &target,
            "SELECT reltuples::bigint FROM pg_class WHERE relname = 'events'"
        ),
        "3000"
    );
    // ... partitions too, and the partitioned parent has its inheritance statistics.
    assert_eq!(
        standby_sql(
            &target,
            "SELECT reltuples::bigint FROM pg_class WHERE relname = 'plogs_debug'"
        ),
        "100"
    );
    assert_ne!(
        standby_sql(
            &target,
            "SELECT count(*) FROM pg_stats WHERE tablename = 'plogs' AND inherited"
        ),
        "0"
    );
    // Each partition was analyzed once: the parent's ANALYZE passed over them.
    assert_eq!(
        standby_sql(
            &target,
            "SELECT string_agg(relname || '=' || analyze_count, ',' ORDER BY relname)
             FROM pg_stat_user_tables WHERE relname LIKE 'plogs\\_%'"
        ),
        "plogs_debug=1,plogs_other=1"
    );
    // No half-made database remains.
    assert!(standby_dbs(&format!("{target}_restore_")).is_empty());

    // Restoring again keeps the first restore as another `previous`.
    let again = restore(dir.path(), &standby_url(&target), &["--backup", &id]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let prev2 = json(&again)["previous"].as_str().unwrap().to_string();
    assert_ne!(prev2, previous);
    assert_eq!(standby_dbs(&format!("{target}_pre_restore_")).len(), 2);
    assert_same_content(&src, &target);
    // The text output says what happened and how long it took.
    let t = run(kasm_db(&[
        "restore",
        "--from",
        dir.path().to_str().unwrap(),
        "--target",
        &standby_url(&format!("{target}_fresh")),
    ]));
    assert_eq!(t.code, 0, "{}", t.stderr);
    assert!(t.stdout.contains("restored backup"), "{}", t.stdout);
    assert!(t.stdout.contains(" s: 5 table(s)"), "{}", t.stdout);
    assert!(
        t.stdout.contains("there was no previous database"),
        "{}",
        t.stdout
    );
}

#[test]
fn restore_into_a_new_name_reports_no_previous() {
    let src = seeded_db();
    let (dir, _) = backup(&src);
    let name = format!("new_{}", &name_of(&src)[2..]);
    let r = restore(dir.path(), &standby_url(&name), &["--jobs", "1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&r)["previous"], Value::Null);
    assert_same_content(&src, &name);
}

#[test]
fn a_corrupt_object_is_refused_before_the_target_is_touched() {
    let src = seeded_db();
    let (dir, id) = backup(&src);
    let object = dir.path().join(&id).join("dump.gz");
    let mut bytes = std::fs::read(&object).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&object, &bytes).unwrap();
    let target = standby_target();
    let r = restore(dir.path(), &standby_url(&target), &[]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("corrupt"), "{}", r.stderr);
    assert!(
        r.stderr.contains("before touching the target"),
        "{}",
        r.stderr
    );
    assert_eq!(marker(&target), "before restore");
    assert_eq!(standby_dbs(&target), vec![target.clone()]);
    // A truncated object too.
    std::fs::write(&object, &bytes[..mid]).unwrap();
    let r = restore(dir.path(), &standby_url(&target), &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("corrupt"), "{}", r.stderr);
    assert_eq!(standby_dbs(&target), vec![target.clone()]);
    assert_eq!(marker(&target), "before restore");
}

/// A source whose restore takes a while: tens of MB of poorly compressible text.
fn big_db() -> String {
    let url = fresh_db();
    psql(
        &url,
        "CREATE TABLE big AS SELECT i, md5(i::text) || md5((i * 7)::text) AS t
         FROM generate_series(1, 300000) i;
         CREATE INDEX ON big (t);",
    );
    url
}

fn wait_for(what: &str, f: impl FnMut() -> bool) {
    wait_until(Duration::from_secs(120), what, f)
}

/// Restore's scratch files in `tmp` (its `TMPDIR`).
fn scratch_files(tmp: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("kasm-db-restore-") && n.ends_with(".dump")
        })
        .collect()
}

fn spawn_restore(from: &Path, target_url: &str, tmp: &Path) -> Child {
    kasm_db(&[
        "restore",
        "--json",
        "--jobs",
        "1",
        "--from",
        from.to_str().unwrap(),
        "--target",
        target_url,
    ])
    .env("TMPDIR", tmp)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap()
}

fn finish(child: Child) -> Run {
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Start a restore and hold its pg_restore stopped once it has created the table `big` in the
/// new database: the restore is then deterministically part way. Returns (child, pg_restore
/// pid, the new database's name).
fn restore_part_way(from: &Path, target: &str, tmp: &Path) -> (Child, i32, String) {
    let child = spawn_restore(from, &standby_url(target), tmp);
    let mut pid = None;
    wait_for("pg_restore to start", || {
        pid = pg_restore_child(child.id());
        pid.is_some()
    });
    let pid = pid.unwrap();
    let new = standby_dbs(&format!("{target}_restore_"));
    assert_eq!(new.len(), 1, "{new:?}");
    let new = new[0].clone();
    step_until(pid, "pg_restore to create big", || {
        standby_sql(&new, "SELECT to_regclass('public.big') IS NOT NULL") == "t"
    });
    (child, pid, new)
}

#[test]
fn sigterm_mid_restore_drops_the_new_database_and_leaves_the_target() {
    let src = big_db();
    let (dir, _) = backup(&src);
    let target = standby_target();
    let tmp = tempfile::tempdir().unwrap();
    let (child, pid, new) = restore_part_way(dir.path(), &target, tmp.path());
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let r = finish(child);
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("interrupted"), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("{new} was dropped")),
        "{}",
        r.stderr
    );
    assert_eq!(standby_dbs(&target), vec![target.clone()]);
    assert_eq!(marker(&target), "before restore");
    assert!(
        scratch_files(tmp.path()).is_empty(),
        "the scratch dump is removed"
    );
}

#[test]
fn sigkill_mid_restore_leaves_the_target_and_the_next_restore_cleans_up() {
    let src = big_db();
    let (dir, _) = backup(&src);
    let target = standby_target();
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, pid, new) = restore_part_way(dir.path(), &target, tmp.path());
    // SAFETY: killing our own child and then the pg_restore it left behind.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    unsafe { libc::kill(pid, libc::SIGKILL) };
    // Nothing could clean up after SIGKILL: the half-made database remains, the target is as it was.
    assert_eq!(marker(&target), "before restore");
    assert_eq!(
        standby_dbs(&format!("{target}_restore_")),
        vec![new.clone()]
    );
    // Nor its scratch dump; made older than a running restore's could be (an hour passes).
    let left = scratch_files(tmp.path());
    assert_eq!(left.len(), 1, "{left:?}");
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&left[0])
        .unwrap()
        .set_modified(an_hour_ago)
        .unwrap();
    // The next restore drops that leftover database (of its own naming only), removes the
    // stale scratch dump, and succeeds, leaving no scratch file of its own.
    let r = run(kasm_db(&[
        "restore",
        "--json",
        "--from",
        dir.path().to_str().unwrap(),
        "--target",
        &standby_url(&target),
    ])
    .env("TMPDIR", tmp.path()));
    no_password(&r);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("removed a scratch file left by an interrupted restore"),
        "{}",
        r.stderr
    );
    assert!(scratch_files(tmp.path()).is_empty());
    assert_eq!(json(&r)["stale_dropped"][0], new.as_str());
    assert!(standby_dbs(&format!("{target}_restore_")).is_empty());
    assert_eq!(
        standby_sql(&target, "SELECT count(*) FROM big"),
        psql(&src, "SELECT count(*) FROM big")
    );
}

#[test]
fn a_hot_standby_replica_is_refused_with_the_reason() {
    let src = seeded_db();
    let (dir, _) = backup(&src);
    let target = standby_target();
    let replica = with_standby(|c| kasm_db::pgtemp::Cluster::replica_of(c)).unwrap();
    assert_eq!(
        replica
            .psql("postgres", "SELECT pg_is_in_recovery()")
            .unwrap(),
        "t"
    );
    let r = restore(dir.path(), &replica.url(&target), &["--force"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("in recovery"), "{}", r.stderr);
    assert!(r.stderr.contains("hot standby"), "{}", r.stderr);
    assert!(r.stderr.contains("pg_promote"), "{}", r.stderr);
    assert_eq!(
        replica.psql(&target, "SELECT v FROM old_marker").unwrap(),
        "before restore"
    );
    assert!(!r.stderr.contains(replica.password.expose()));
}

#[test]
fn an_in_use_target_is_refused_without_force_and_restored_with_it() {
    let src = seeded_db();
    let (dir, _) = backup(&src);
    let target = standby_target();
    // A client connected to the target (like a Kasm API server).
    let (bindir, sock, port) = with_standby(|c| (c.bindir.clone(), c.dir().to_path_buf(), c.port));
    let mut client = std::process::Command::new(bindir.join("psql"))
        .args(["-X", "-q", "-h"])
        .arg(&sock)
        .args(["-p", &port.to_string(), "-U", "postgres", "-d", &target])
        .args(["-c", "SELECT pg_sleep(120)"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the client to connect", || {
        standby_sql(
            "postgres",
            &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{target}'"),
        ) != "0"
    });
    let r = restore(dir.path(), &standby_url(&target), &[]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("active connection"), "{}", r.stderr);
    assert!(r.stderr.contains("--force"), "{}", r.stderr);
    assert_eq!(marker(&target), "before restore");
    assert_eq!(standby_dbs(&target), vec![target.clone()]);

    let r = restore(dir.path(), &standby_url(&target), &["--force"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let previous = json(&r)["previous"].as_str().unwrap().to_string();
    assert_eq!(marker(&previous), "before restore");
    assert_same_content(&src, &target);
    // The client was terminated.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = client.try_wait().unwrap() {
            assert!(!status.success());
            break;
        }
        if Instant::now() > deadline {
            let _ = client.kill();
            panic!("the connected client was not terminated");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_missing_role_is_named_and_no_owner_restores() {
    let src = fresh_db();
    let role = format!("owner_{}", &name_of(&src)[2..]);
    psql(
        &src,
        &format!(
            "CREATE ROLE {role}; CREATE TABLE owned (i int); INSERT INTO owned VALUES (1), (2);
             ALTER TABLE owned OWNER TO {role};"
        ),
    );
    let (dir, _) = backup(&src);
    let target = standby_target();
    let r = restore(dir.path(), &standby_url(&target), &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("role \"{role}\" does not exist on the target")),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--no-owner"), "{}", r.stderr);
    assert_eq!(marker(&target), "before restore");
    assert!(standby_dbs(&format!("{target}_restore_")).is_empty());
    let r = restore(dir.path(), &standby_url(&target), &["--no-owner"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(standby_sql(&target, "SELECT count(*) FROM owned"), "2");
}

#[test]
fn an_encrypted_backup_restores_only_with_its_key() {
    let src = seeded_db();
    let dir = tempfile::tempdir().unwrap();
    let keyfile = dir.path().join("k");
    std::fs::write(&keyfile, hex::encode([0x42u8; 32])).unwrap();
    let other = dir.path().join("other");
    std::fs::write(&other, hex::encode([0x43u8; 32])).unwrap();
    let to = dir.path().join("b");
    let r = run(
        kasm_db(&["backup", "--db", &src, "--to", to.to_str().unwrap()])
            .env("KASM_DB_BACKUP_ENCRYPTION_KEY_FILE", &keyfile),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let target = standby_target();
    let r = restore(&to, &standby_url(&target), &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("is encrypted"), "{}", r.stderr);
    assert!(r.stderr.contains("encryption_key_file"), "{}", r.stderr);
    let mut cmd = kasm_db(&[
        "restore",
        "--from",
        to.to_str().unwrap(),
        "--target",
        &standby_url(&target),
    ]);
    let r = run(cmd.env("KASM_DB_BACKUP_ENCRYPTION_KEY_FILE", &other));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("wrong key"), "{}", r.stderr);
    assert_eq!(marker(&target), "before restore");
    let mut cmd = kasm_db(&[
        "restore",
        "--json",
        "--from",
        to.to_str().unwrap(),
        "--target",
        &standby_url(&target),
    ]);
    let r = run(cmd.env("KASM_DB_BACKUP_ENCRYPTION_KEY_FILE", &keyfile));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains(&hex::encode([0x42u8; 32])));
    assert_same_content(&src, &target);
}

#[test]
fn restore_from_s3() {
    let src = seeded_db();
    let bucket = moto::bucket();
    let to = format!("s3://{bucket}/kasm");
    let r = run(kasm_db(&["backup", "--db", &src, "--to", &to]).envs(moto::env()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let target = standby_target();
    let r = run(kasm_db(&[
        "restore",
        "--json",
        "--from",
        &to,
        "--target",
        &standby_url(&target),
    ])
    .envs(moto::env()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    no_password(&r);
    assert_same_content(&src, &target);
}

#[test]
fn scratch_restore_test_passes_and_fails_when_it_should() {
    let src = seeded_db();
    let (dir, id) = backup(&src);
    let r = verify_scratch_checked(dir.path(), &id);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let j = json(&r);
    assert_eq!(
        (j["id"].as_str(), j["ok"].as_bool()),
        (Some(id.as_str()), Some(true))
    );
    assert_eq!(j["tables"], 5);

    // Tamper with the manifest's row count: the restore test finds the difference.
    let mpath = dir.path().join(&id).join("manifest.json");
    let original = std::fs::read_to_string(&mpath).unwrap();
    let mut m: Value = serde_json::from_str(&original).unwrap();
    for t in m["tables"].as_array_mut().unwrap() {
        if t["table"] == "users" {
            t["rows"] = 999.into();
        }
    }
    std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
    let r = verify_scratch_checked(dir.path(), &id);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let j = json(&r);
    assert_eq!(j["ok"], false);
    assert_eq!(j["differences"][0]["table"], "public.users");
    assert_eq!(j["differences"][0]["rows"], 1000);
    assert_eq!(j["differences"][0]["expected_rows"], 999);

    // A corrupt object fails the test before any restore.
    std::fs::write(&mpath, &original).unwrap();
    let object = dir.path().join(&id).join("dump.gz");
    let mut bytes = std::fs::read(&object).unwrap();
    let n = bytes.len();
    bytes[n / 3] ^= 0xff;
    std::fs::write(&object, &bytes).unwrap();
    let r = verify_scratch_checked(dir.path(), &id);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let j = json(&r);
    assert_eq!(j["ok"], false);
    assert!(j["problem"].as_str().unwrap().contains("corrupt"), "{j}");
}

#[test]
fn an_unreachable_target_exits_75() {
    let src = seeded_db();
    let (dir, _) = backup(&src);
    let port = free_port();
    let url = format!("postgres://postgres:hunter2secret@127.0.0.1:{port}/kasm");
    let r = run(kasm_db(&[
        "restore",
        "--from",
        dir.path().to_str().unwrap(),
        "--target",
        &url,
    ])
    .env("KASM_DB_DATABASE_CONNECT_ATTEMPTS", "1"));
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(!r.stderr.contains("hunter2secret"), "{}", r.stderr);
    // A usage error is exit 2, before anything is read.
    let r = run(kasm_db(&[
        "restore",
        "--jobs",
        "0",
        "--from",
        dir.path().to_str().unwrap(),
        "--target",
        &url,
    ]));
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[test]
fn a_second_restore_of_the_same_database_exits_75() {
    let src = seeded_db();
    let (dir, _) = backup(&src);
    let target = standby_target();
    // Another restore of the target holds the restore lock (on the maintenance database).
    let (bindir, sock, port) = with_standby(|c| (c.bindir.clone(), c.dir().to_path_buf(), c.port));
    let mut holder = std::process::Command::new(bindir.join("psql"))
        .args(["-X", "-q", "-h"])
        .arg(&sock)
        .args(["-p", &port.to_string(), "-U", "postgres", "-d", "postgres"])
        .args([
            "-c",
            &format!(
                "SELECT pg_advisory_lock({})",
                kasm_db::db::locks::Lock::Restore(&target).key()
            ),
            "-c",
            "SELECT pg_sleep(120)",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // This lock (a bigint key: its high half in classid, its low half in objid), not another
    // test's on the same server.
    let key = kasm_db::db::locks::Lock::Restore(&target).key() as u64;
    wait_for("the lock to be held", || {
        standby_sql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
                 AND classid::bigint = {} AND objid::bigint = {} AND objsubid = 1",
                key >> 32,
                key & 0xffff_ffff
            ),
        ) != "0"
    });
    let r = restore(dir.path(), &standby_url(&target), &[]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(r.stderr.contains("another restore"), "{}", r.stderr);
    assert_eq!(marker(&target), "before restore");
    assert_eq!(standby_dbs(&target), vec![target.clone()]);
}

/// `restore::offsets` turns an archive pg_dump wrote to a pipe into the very bytes pg_dump
/// writes to a file (apart from the creation time in the header), with the real pg_dump.
#[test]
fn a_piped_archive_gets_the_offsets_pg_dump_writes_to_a_file() {
    use kasm_db::restore::archive_offsets::{Indexed, index};
    let url = seeded_db();
    let bindir = with_primary(|c| c.bindir.clone());
    let dir = tempfile::tempdir().unwrap();
    let filed = dir.path().join("filed.dump");
    let piped = dir.path().join("piped.dump");
    let st = std::process::Command::new(bindir.join("pg_dump"))
        .args(["-Fc", "-Z0", "-d", &url, "-f"])
        .arg(&filed)
        .status()
        .unwrap();
    assert!(st.success());
    let mut child = std::process::Command::new(bindir.join("pg_dump"))
        .args(["-Fc", "-Z0", "-d", &url])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::fs::File::create(&piped).unwrap();
    std::io::copy(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(child.wait().unwrap().success());
    drop(out);

    let a = std::fs::read(&filed).unwrap();
    let before = std::fs::read(&piped).unwrap();
    assert_eq!(a.len(), before.len());
    let differ = |x: &[u8], y: &[u8]| (0..x.len()).filter(|&i| x[i] != y[i]).collect::<Vec<_>>();
    // Unindexed, the two differ in the TOC (past the header's 51 bytes of fixed fields).
    assert!(differ(&a, &before).iter().any(|&i| i > 60));

    let blocks = match index(&piped).unwrap() {
        Indexed::Written { blocks } => blocks,
        other => panic!("not indexed: {other:?}"),
    };
    // Four tables plus the two partitions hold data, and the sequence value is not a block.
    assert!(blocks >= TABLES.len(), "{blocks}");
    let b = std::fs::read(&piped).unwrap();
    let d = differ(&a, &b);
    assert!(
        d.iter().all(|&i| i < 51),
        "differences past the header at {d:?}"
    );
    assert_eq!(index(&piped).unwrap(), Indexed::AlreadyIndexed);
}

/// With `backup.scratch_db` set, the verify job of `serve` is the full restore test: it passes
/// on a good backup, fails (recorded in `schedule_runs`) on a corrupt one, leaves no scratch
/// database behind and never logs the scratch server's password.
#[test]
fn the_scheduled_verify_is_a_full_restore_test_with_scratch_db() {
    let src = seeded_db();
    let (dir, id) = backup(&src);
    let serve_db = fresh_db();
    let r = run(kasm_db(&["migrate", "--db", &serve_db]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let log = tempfile::NamedTempFile::new().unwrap();
    let port = free_port();
    /// Kills serve if the test fails before it is stopped.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = kasm_db(&["serve", "--db", &serve_db])
        .env("KASM_DB_SERVER_LISTEN", format!("127.0.0.1:{port}"))
        .env("KASM_DB_SERVER_TOKEN", "scheduled-verify-token")
        .env("KASM_DB_SCHEDULE_VERIFY", "* * * * * *")
        .env("KASM_DB_BACKUP_TO", dir.path())
        .env("KASM_DB_BACKUP_SCRATCH_DB", standby_url("postgres"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .map(KillOnDrop)
        .unwrap();
    let runs = |ok: bool| {
        psql(
            &serve_db,
            &format!("SELECT count(*) FROM schedule_runs WHERE job = 'verify' AND ok = {ok}"),
        )
        .trim()
        .parse::<u32>()
        .unwrap_or(0)
    };
    let stderr = || std::fs::read_to_string(log.path()).unwrap_or_default();
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        wait_until_with(Duration::from_secs(90), what, f, stderr);
    };
    wait("a passing scheduled restore test", &|| runs(true) > 0);
    assert!(
        stderr().contains("restored into a scratch database"),
        "{}",
        stderr()
    );
    // Recorded beside the backup, for `backups list` and the report.
    let record: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(&id).join("verified.json")).unwrap())
            .unwrap();
    assert_eq!(
        (record["check"].as_str(), record["ok"].as_bool()),
        (Some("restore"), Some(true))
    );

    let object = dir.path().join(&id).join("dump.gz");
    let mut bytes = std::fs::read(&object).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&object, &bytes).unwrap();
    wait("a failing scheduled restore test", &|| {
        psql(
            &serve_db,
            "SELECT count(*) FROM schedule_runs WHERE job = 'verify' AND ok = false AND error LIKE '%corrupt%'",
        )
        .trim()
            != "0"
    });
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.0.id() as i32, libc::SIGTERM);
    }
    assert!(child.0.wait().unwrap().success(), "{}", stderr());
    let text = stderr();
    for pw in passwords() {
        assert!(!text.contains(&pw), "password leaked: {text}");
    }
    // Another test's scratch restore may be running; ours are gone once serve has stopped.
    let ours = psql(
        &serve_db,
        "SELECT count(*) FROM schedule_runs WHERE job = 'verify' AND finished_at IS NULL",
    );
    assert_eq!(ours.trim(), "0", "a verify run was left unfinished");
}

/// SQL on a primary's database by name.
fn primary_sql(db: &str, sql: &str) -> String {
    with_primary(|c| c.psql(db, sql)).unwrap_or_else(|e| panic!("{e}"))
}

/// Run `sql` on both clusters' `postgres` database (roles are per cluster).
fn on_both(sql: &str) {
    primary_sql("postgres", sql);
    standby_sql("postgres", sql);
}

/// Whether the primary can make ICU databases (PostgreSQL 15+ built with ICU).
fn icu_available() -> bool {
    primary_sql(
        "postgres",
        "SELECT current_setting('server_version_num')::int >= 150000
                AND EXISTS (SELECT 1 FROM pg_collation WHERE collprovider = 'i')",
    ) == "t"
}

/// The database-level facts a restore must carry over, as one comparable text: owner,
/// encoding and locale, connection limit, ACL items (sorted), settings per role, comment.
fn db_facts(sql: impl Fn(&str) -> String, db: &str) -> String {
    sql(&format!(
        "SELECT concat_ws(E'\\n',
           'owner=' || pg_get_userbyid(d.datdba),
           'encoding=' || pg_encoding_to_char(d.encoding),
           'locale=' || d.datcollate || '/' || d.datctype || '/' || coalesce(to_jsonb(d) ->> 'datlocprovider', 'c')
             || '/' || coalesce(to_jsonb(d) ->> 'daticulocale', to_jsonb(d) ->> 'datlocale', '-'),
           'connlimit=' || d.datconnlimit,
           'acl=' || coalesce((SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(d.datacl) a), 'NULL'),
           'settings=' || coalesce((SELECT string_agg(coalesce(r.rolname, '*') || ':' || array_to_string(s.setconfig, '|'), ';' ORDER BY 1)
                                    FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole
                                    WHERE s.setdatabase = d.oid), ''),
           'comment=' || coalesce(shobj_description(d.oid, 'pg_database'), 'NULL'))
         FROM pg_database d WHERE d.datname = '{db}'"
    ))
}

/// A source database with its own properties, owned by `owner` (made on the primary only;
/// the caller creates roles where it wants them). Returns its URL.
fn db_with_properties(owner: &str, app: &str, icu: bool) -> String {
    let url = fresh_db();
    let name = name_of(&url);
    primary_sql("postgres", &format!("DROP DATABASE {name}"));
    primary_sql(
        "postgres",
        &format!(
            "CREATE DATABASE {name} TEMPLATE template0 OWNER {owner} ENCODING 'UTF8'
             LC_COLLATE 'C.utf8' LC_CTYPE 'C.utf8'{}",
            if icu {
                " LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
            } else {
                ""
            }
        ),
    );
    psql(
        &url,
        "CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL);
         INSERT INTO users (name) SELECT 'user ' || i FROM generate_series(1, 100) i;",
    );
    psql(
        &url,
        &format!(
            "REVOKE CONNECT, TEMPORARY ON DATABASE {name} FROM PUBLIC;
             GRANT CONNECT ON DATABASE {name} TO {app};
             GRANT TEMPORARY ON DATABASE {name} TO {app} WITH GRANT OPTION;
             ALTER DATABASE {name} SET work_mem = '12MB';
             ALTER DATABASE {name} SET search_path = \"$user\", public, \"Odd Schema\";
             ALTER ROLE {app} IN DATABASE {name} SET statement_timeout = '5s';
             ALTER DATABASE {name} CONNECTION LIMIT 40;
             COMMENT ON DATABASE {name} IS 'Kasm''s data';"
        ),
    );
    // Sessions of the restore itself (pg_restore, the counts, ANALYZE) must not be bound by
    // the database's settings: given before the swap, after the restore's own work.
    psql(
        &url,
        &format!("ALTER DATABASE {name} SET default_transaction_read_only = on"),
    );
    url
}

#[test]
fn the_databases_own_properties_are_carried_over_to_a_new_name_and_over_an_existing_one() {
    let probe = fresh_db();
    let suffix = &name_of(&probe)[2..];
    let (owner, app) = (format!("own_{suffix}"), format!("app_{suffix}"));
    on_both(&format!(
        "CREATE ROLE {owner} LOGIN; CREATE ROLE {app} LOGIN"
    ));
    let icu = icu_available();
    let src = db_with_properties(&owner, &app, icu);
    let src_name = name_of(&src);
    let expected = db_facts(|q| primary_sql("postgres", q), &src_name);
    assert!(expected.contains(&format!("owner={owner}")), "{expected}");
    assert!(expected.contains("work_mem=12MB"), "{expected}");
    let (dir, id) = backup(&src);
    // The manifest holds the properties as data.
    let m: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(&id).join("manifest.json")).unwrap(),
    )
    .unwrap();
    let p = &m["database_properties"];
    assert_eq!(p["owner"], owner.as_str());
    assert_eq!(p["collate"], "C.utf8");
    assert!(
        p["acl"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["grantee"] != Value::Null),
        "{p}"
    );
    assert_eq!(p["comment"], "Kasm's data");

    // Into a new name: everything as on the source.
    let name = format!("new_{suffix}");
    let r = restore(dir.path(), &standby_url(&name), &["--jobs", "2"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let j = json(&r);
    assert_eq!(j["warnings"], serde_json::json!([]), "{j}");
    let props = &j["database_properties"];
    assert_eq!(props["owner"], owner.as_str());
    assert_eq!(props["from_backup"], true);
    assert_eq!(props["privileges"], true);
    assert_eq!(props["settings"], 4);
    assert_eq!(props["comment"], true);
    assert_eq!(db_facts(|q| standby_sql("postgres", q), &name), expected);
    // Spelled out: the role may connect, PUBLIC may not; the settings are in pg_db_role_setting.
    assert_eq!(
        standby_sql(
            "postgres",
            &format!(
                "SELECT has_database_privilege('{app}', '{name}', 'CONNECT'),
                        EXISTS (SELECT 1 FROM pg_database d, aclexplode(d.datacl) a
                                WHERE d.datname = '{name}' AND a.grantee = 0)"
            )
        ),
        "t|f"
    );
    assert_eq!(
        standby_sql(
            "postgres",
            &format!(
                "SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting s
                 JOIN pg_database d ON d.oid = s.setdatabase
                 WHERE d.datname = '{name}' AND s.setrole = '{app}'::regrole"
            )
        ),
        "statement_timeout=5s"
    );
    assert_eq!(standby_sql(&name, "SELECT count(*) FROM users"), "100");
    if icu {
        assert!(expected.contains("/i/en-US"), "{expected}");
    }

    // Over an existing database (owned by postgres, default locale): the backup's properties
    // win; the previous database keeps its own.
    let target = standby_target();
    let before = db_facts(|q| standby_sql("postgres", q), &target);
    let r = restore(dir.path(), &standby_url(&target), &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let j = json(&r);
    assert_eq!(j["warnings"], serde_json::json!([]), "{j}");
    let previous = j["previous"].as_str().unwrap().to_string();
    assert_eq!(db_facts(|q| standby_sql("postgres", q), &target), expected);
    assert_eq!(db_facts(|q| standby_sql("postgres", q), &previous), before);
    // The text summary says what the database was given.
    let t = run(kasm_db(&[
        "restore",
        "--from",
        dir.path().to_str().unwrap(),
        "--target",
        &standby_url(&format!("{name}_t")),
    ]));
    assert_eq!(t.code, 0, "{}", t.stderr);
    assert!(
        t.stdout
            .contains(&format!("database owned by \"{owner}\", encoding UTF8")),
        "{}",
        t.stdout
    );
    assert!(
        t.stdout.contains(
            "given the source database's privileges, 4 setting(s), connection limit, comment"
        ),
        "{}",
        t.stdout
    );
}

#[test]
fn roles_missing_on_the_target_fail_before_anything_or_are_skipped_with_no_owner() {
    let probe = fresh_db();
    let suffix = &name_of(&probe)[2..];
    // The owner and the app role exist on the primary only; a third role on both.
    let (owner, app, both) = (
        format!("gone_own_{suffix}"),
        format!("gone_app_{suffix}"),
        format!("both_{suffix}"),
    );
    primary_sql(
        "postgres",
        &format!("CREATE ROLE {owner}; CREATE ROLE {app}"),
    );
    on_both(&format!("CREATE ROLE {both}"));
    let src = db_with_properties(&owner, &app, false);
    let src_name = name_of(&src);
    // (From another database: this one's sessions are read-only by default now.)
    primary_sql(
        "postgres",
        &format!("GRANT CONNECT ON DATABASE {src_name} TO {both}"),
    );
    let (dir, id) = backup(&src);
    let target = standby_target();
    let before = db_facts(|q| standby_sql("postgres", q), &target);

    let r = restore(dir.path(), &standby_url(&target), &[]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "roles \"{app}\", \"{owner}\" do not exist on the target"
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!("CREATE ROLE \"{owner}\"")),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--no-owner"), "{}", r.stderr);
    assert!(!r.stderr.contains(&format!("\"{both}\"")), "{}", r.stderr);
    // Refused before anything was made: the target is as it was, nothing is left.
    assert_eq!(marker(&target), "before restore");
    assert_eq!(db_facts(|q| standby_sql("postgres", q), &target), before);
    assert_eq!(standby_dbs(&target), vec![target.clone()]);
    let name = format!("none_{suffix}");
    let r = restore(dir.path(), &standby_url(&name), &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(standby_dbs(&name).is_empty());

    // With --no-owner: restored, owned by the existing database's owner, the rest given, and
    // each skipped item reported.
    let r = restore(dir.path(), &standby_url(&target), &["--no-owner"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let j = json(&r);
    let warnings: Vec<String> = j["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect();
    let all = warnings.join("\n");
    assert!(
        all.contains(&format!(
            "the owner skipped (--no-owner): role \"{owner}\" does not exist on the target; \
             the database is owned by \"postgres\""
        )),
        "{all}"
    );
    assert!(
        all.contains(&format!(
            "GRANT CONNECT ON DATABASE TO \"{app}\" skipped (--no-owner): role \"{app}\" does not exist"
        )),
        "{all}"
    );
    assert!(
        all.contains(&format!(
            "setting statement_timeout for role \"{app}\" skipped (--no-owner)"
        )),
        "{all}"
    );
    assert!(!all.contains("5s"), "{all}");
    assert_eq!(j["database_properties"]["owner"], "postgres");
    let facts = db_facts(|q| standby_sql("postgres", q), &target);
    assert!(facts.contains("owner=postgres"), "{facts}");
    // The owner's privileges went to the new owner; PUBLIC has none; the present role has its.
    assert!(
        facts.contains(&format!("acl={both}=c/postgres,postgres=CTc/postgres\n")),
        "{facts}"
    );
    assert!(facts.contains("settings=*:"), "{facts}");
    assert!(!facts.contains(&app), "{facts}");
    assert!(facts.contains("comment=Kasm's data"), "{facts}");
    assert_eq!(standby_sql(&target, "SELECT count(*) FROM users"), "100");

    // The text summary lists them too.
    let t = run(kasm_db(&[
        "restore",
        "--no-owner",
        "--from",
        dir.path().to_str().unwrap(),
        "--target",
        &standby_url(&name),
    ]));
    assert_eq!(t.code, 0, "{}", t.stderr);
    assert!(
        t.stdout.contains(&format!(
            "\n  warning: setting statement_timeout for role \"{app}\" skipped"
        )),
        "{}",
        t.stdout
    );

    // The scratch restore test (--no-owner always) passes and reports the skipped items.
    let r = verify_scratch_checked(dir.path(), &id);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let j = json(&r);
    assert_eq!(j["ok"], true);
    assert!(
        j["warnings"]
            .to_string()
            .contains(&format!("\\\"{app}\\\"")),
        "{j}"
    );
}

#[test]
fn a_manifest_without_properties_still_restores_and_a_missing_locale_only_warns() {
    let probe = fresh_db();
    let suffix = &name_of(&probe)[2..];
    let (owner, app) = (format!("lo_own_{suffix}"), format!("lo_app_{suffix}"));
    on_both(&format!("CREATE ROLE {owner}; CREATE ROLE {app}"));
    let src = db_with_properties(&owner, &app, false);
    let (dir, id) = backup(&src);
    let mpath = dir.path().join(&id).join("manifest.json");
    let original = std::fs::read_to_string(&mpath).unwrap();
    let mut m: Value = serde_json::from_str(&original).unwrap();

    // Written before kasm-db recorded the properties: restored as before, with a warning.
    m.as_object_mut().unwrap().remove("database_properties");
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let name = format!("old_{suffix}");
    let r = restore(dir.path(), &standby_url(&name), &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let j = json(&r);
    assert_eq!(j["database_properties"]["from_backup"], false);
    assert_eq!(j["database_properties"]["owner"], "postgres");
    assert!(
        j["warnings"][0]
            .as_str()
            .unwrap()
            .contains("made before kasm-db recorded the database's own properties"),
        "{j}"
    );
    let facts = db_facts(|q| standby_sql("postgres", q), &name);
    assert!(facts.contains("acl=NULL"), "{facts}");
    assert!(facts.contains("locale=C/C/"), "{facts}");
    assert_eq!(standby_sql(&name, "SELECT count(*) FROM users"), "100");
    // Over an existing database: its owner and locale, as before.
    let target = standby_target();
    standby_sql(
        "postgres",
        &format!("ALTER DATABASE {target} OWNER TO {owner}"),
    );
    let r = restore(dir.path(), &standby_url(&target), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&r)["database_properties"]["owner"], owner.as_str());

    // A locale the target server does not have: created with the server's default, a warning
    // names the locale, and the rest is still given.
    let mut m: Value = serde_json::from_str(&original).unwrap();
    m["database_properties"]["collate"] = "xx_XX.UTF-8".into();
    m["database_properties"]["ctype"] = "xx_XX.UTF-8".into();
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let name = format!("loc_{suffix}");
    let r = restore(dir.path(), &standby_url(&name), &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let j = json(&r);
    let w = j["warnings"].to_string();
    assert!(w.contains("xx_XX.UTF-8"), "{w}");
    assert!(w.contains("is not available on the target server"), "{w}");
    assert!(
        w.contains("the database was created with encoding UTF8, LC_COLLATE \\\"C\\\""),
        "{w}"
    );
    let facts = db_facts(|q| standby_sql("postgres", q), &name);
    assert!(facts.contains("locale=C/C/"), "{facts}");
    assert!(facts.contains(&format!("owner={owner}")), "{facts}");
    assert!(facts.contains("comment=Kasm's data"), "{facts}");
    assert_eq!(j["database_properties"]["privileges"], true);
}
