//! Backups against a real cluster and a real S3-protocol server (moto_server) on loopback:
//! backup/list/verify to a directory and to S3, the object restores with plain
//! `gunzip -c | pg_restore`, corruption fails verify, prune (dry run, policy, leftovers), the
//! lock (a second backup exits 75), `--exclude-logs`, and runs that fail part way (pg_dump
//! killed, SIGTERM to kasm-db) leave nothing listed and no multipart upload open. Passwords
//! never appear in output or manifests.
//!
//! What is not tested here: `kill -9` of kasm-db itself (nothing can abort an upload then; the
//! leftovers are removed by `backups prune` once a day old, which is tested with an aged
//! leftover directory).

use crate::common::moto;

use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

struct Pg {
    bindir: PathBuf,
    sockdir: PathBuf,
    port: u16,
    password: String,
}

fn pg() -> Pg {
    with_primary(|c| Pg {
        bindir: c.bindir.clone(),
        sockdir: c.dir().to_path_buf(),
        port: c.port,
        password: c.password.expose().to_string(),
    })
}

fn dbname(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

/// A Kasm-like database: two ordinary tables and kasm-db's partitioned `logs` with rows in a
/// debug and a logs partition.
fn seeded_db() -> String {
    let url = fresh_db();
    let r = run(kasm_db(&["migrate", "--db", &url]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    psql(
        &url,
        "CREATE TABLE users (id int PRIMARY KEY, name text);
         INSERT INTO users SELECT i, 'user ' || i FROM generate_series(1, 1000) i;
         CREATE TABLE sessions (id bigint, user_id int, started timestamptz);
         INSERT INTO sessions SELECT i, i % 1000, now() FROM generate_series(1, 2500) i;
         CREATE TABLE logs_debug_all PARTITION OF logs_debug FOR VALUES FROM (MINVALUE) TO (MAXVALUE);
         CREATE TABLE logs_logs_all PARTITION OF logs_logs FOR VALUES FROM (MINVALUE) TO (MAXVALUE);
         INSERT INTO logs (log_id, ingest_date, levelname, message, data)
           SELECT gen_random_uuid(), now(), CASE WHEN i % 3 = 0 THEN 'DEBUG' ELSE 'INFO' END,
                  'message ' || i, '{}' FROM generate_series(1, 300) i;",
    );
    url
}

/// A database whose dump takes a while (tens of MB of poorly compressible text).
fn big_db() -> String {
    let url = fresh_db();
    psql(
        &url,
        "CREATE TABLE big AS SELECT i, md5(i::text) || md5((i * 7)::text) || md5((i * 13)::text) AS t
         FROM generate_series(1, 400000) i",
    );
    url
}

fn backup_to(url: &str, to: &str) -> Run {
    run(kasm_db(&["backup", "--json", "--db", url, "--to", to]))
}

fn manifest(dir: &Path, id: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(id).join("manifest.json")).unwrap())
        .unwrap()
}

/// Restore `object` (a path) with plain gunzip and pg_restore into a new database; its name.
fn plain_restore(object: &Path) -> String {
    let p = pg();
    let target = with_primary(|c| c.fresh_db("r").unwrap());
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; gunzip -c '{}' | '{}' --no-owner -d '{}'",
            object.display(),
            p.bindir.join("pg_restore").display(),
            target
        ))
        .env("PGHOST", &p.sockdir)
        .env("PGPORT", p.port.to_string())
        .env("PGUSER", "postgres")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    target
}

fn count(db: &str, table: &str) -> i64 {
    with_primary(|c| c.psql(db, &format!("SELECT count(*) FROM {table}")))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn backup_to_a_directory_lists_verifies_and_restores_with_plain_tools() {
    let url = seeded_db();
    let dir = tempfile::tempdir().unwrap();
    let to = format!("file://{}", dir.path().display());
    let r = backup_to(&url, &to);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let b = json(&r);
    let id = b["id"].as_str().unwrap().to_string();
    assert_eq!(b["target"], dir.path().display().to_string());
    assert!(b["duration_s"].as_f64().unwrap() >= 0.0);
    let object = dir.path().join(&id).join("dump.gz");
    let bytes = std::fs::read(&object).unwrap();
    assert_eq!(b["size_bytes"], bytes.len() as u64);
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    assert_eq!(b["sha256"], sha);

    // The manifest records the counts taken in the dumped snapshot and the recipe.
    let m = manifest(dir.path(), &id);
    assert_eq!(m["sha256"], sha);
    assert_eq!(m["object"], format!("{id}/dump.gz"));
    assert!(
        m["restore"]
            .as_str()
            .unwrap()
            .contains(&format!("gunzip -c {}", object.display())),
        "{m}"
    );
    let rows = |t: &str| {
        m["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["table"] == t)
            .unwrap_or_else(|| panic!("{t} not in manifest"))["rows"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(rows("users"), 1000);
    assert_eq!(rows("sessions"), 2500);
    assert_eq!(rows("logs_debug_all"), 100);
    assert_eq!(rows("logs_logs_all"), 200);

    // list and verify (path form of the target this time).
    let l = run(kasm_db(&[
        "backups",
        "list",
        "--json",
        "--from",
        dir.path().to_str().unwrap(),
    ]));
    assert_eq!(l.code, 0, "{}", l.stderr);
    let l = json(&l);
    assert_eq!(l.as_array().unwrap().len(), 1);
    assert_eq!(l[0]["id"], id.as_str());
    assert_eq!(l[0]["sha256"], sha);
    assert_eq!(l[0]["size_bytes"], bytes.len() as u64);
    assert!(l[0]["created"].as_str().unwrap().starts_with("20"));
    let v = run(kasm_db(&["backups", "verify", "--json", "--from", &to]));
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert_eq!(json(&v)["id"], id.as_str());
    assert_eq!(json(&v)["ok"], true);

    // An operator restores it without kasm-db; every table has the manifest's row count.
    let restored = plain_restore(&object);
    for t in m["tables"].as_array().unwrap() {
        let name = format!(
            "{}.{}",
            t["schema"].as_str().unwrap(),
            t["table"].as_str().unwrap()
        );
        assert_eq!(
            count(&restored, &name),
            t["rows"].as_i64().unwrap(),
            "{name}"
        );
    }

    // The password is nowhere.
    let pw = pg().password;
    let manifest_text =
        std::fs::read_to_string(dir.path().join(&id).join("manifest.json")).unwrap();
    for text in [&r.stdout, &r.stderr, &manifest_text] {
        assert!(!text.contains(&pw), "password leaked: {text}");
    }
    assert!(manifest_text.contains(&format!("postgres@127.0.0.1:{}/", pg().port)));
}

#[test]
fn a_corrupted_or_missing_object_fails_verify() {
    let url = seeded_db();
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().to_str().unwrap();
    let first = json(&backup_to(&url, to))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let second = json(&backup_to(&url, to))["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Flip one byte in the middle of the newest backup's object.
    let object = dir.path().join(&second).join("dump.gz");
    let mut bytes = std::fs::read(&object).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&object, &bytes).unwrap();
    let v = run(kasm_db(&[
        "backups", "verify", "latest", "--json", "--from", to,
    ]));
    assert_eq!(v.code, 1, "{}\n{}", v.stdout, v.stderr);
    assert_eq!(json(&v)["ok"], false);
    assert_eq!(json(&v)["id"], second.as_str());
    // The other backup is still fine.
    let v = run(kasm_db(&[
        "backups", "verify", &first, "--json", "--from", to,
    ]));
    assert_eq!(v.code, 0, "{}", v.stderr);
    // Each verification is recorded beside its backup and listed with it.
    let l = json(&run(kasm_db(&["backups", "list", "--json", "--from", to])));
    assert_eq!(l[0]["id"], second.as_str());
    assert_eq!(l[0]["verified"]["ok"], false, "{l}");
    assert_eq!(l[0]["verified"]["check"], "checksum");
    assert!(
        l[0]["verified"]["problem"]
            .as_str()
            .unwrap()
            .contains("corrupt"),
        "{l}"
    );
    assert_eq!(l[1]["verified"]["ok"], true, "{l}");
    let text = run(kasm_db(&["backups", "list", "--from", to])).stdout;
    assert!(
        text.contains("FAILED checksum") && text.contains("ok checksum"),
        "{text}"
    );
    // A truncated object and a missing one fail too.
    std::fs::write(&object, &bytes[..mid]).unwrap();
    let v = run(kasm_db(&[
        "backups", "verify", &second, "--json", "--from", to,
    ]));
    assert_eq!((v.code, json(&v)["ok"].clone()), (1, Value::Bool(false)));
    std::fs::remove_file(&object).unwrap();
    let v = run(kasm_db(&["backups", "verify", &second, "--from", to]));
    assert_eq!(v.code, 1, "{}", v.stderr);
    assert!(v.stdout.contains("missing"), "{}", v.stdout);
    // An unknown id is an error naming it.
    let v = run(kasm_db(&["backups", "verify", "nope", "--from", to]));
    assert_eq!(v.code, 1);
    assert!(v.stderr.contains("nope"), "{}", v.stderr);
}

#[test]
fn encrypted_backups_verify_and_decrypt_only_with_their_key() {
    let url = seeded_db();
    let dir = tempfile::tempdir().unwrap();
    let keyfile = dir.path().join("backup.key");
    let key_hex = hex::encode([0x5au8; 32]);
    std::fs::write(&keyfile, format!("{key_hex}\n")).unwrap();
    let to = dir.path().join("b");
    let r = run(kasm_db(&[
        "backup",
        "--json",
        "--db",
        &url,
        "--to",
        to.to_str().unwrap(),
    ])
    .env("KASM_DB_BACKUP_ENCRYPTION_KEY_FILE", &keyfile));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let id = json(&r)["id"].as_str().unwrap().to_string();
    let m = manifest(&to, &id);
    assert_eq!(m["encryption"]["kind"], "aes-256-gcm-hkdf-stream");
    let key = kasm_db::archive::crypt::Key::from_material(key_hex.as_bytes()).unwrap();
    assert_eq!(m["encryption"]["key_id"], key.id());
    let manifest_text = std::fs::read_to_string(to.join(&id).join("manifest.json")).unwrap();
    assert!(!manifest_text.contains(&key_hex));
    assert!(!r.stdout.contains(&key_hex) && !r.stderr.contains(&key_hex));
    let object = std::fs::read(to.join(&id).join("dump.gz.aes")).unwrap();
    assert_eq!(&object[..8], b"KASMDBE2");
    // verify needs no key: it checks the stored bytes.
    let v = run(kasm_db(&[
        "backups",
        "verify",
        "--json",
        "--from",
        to.to_str().unwrap(),
    ]));
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert_eq!(json(&v)["ok"], true);
    // The right key gives the plain gzip'd archive, which restores; a wrong key fails clearly.
    let wrong = kasm_db::archive::crypt::Key::from_material(&[1u8; 32]).unwrap();
    let e = kasm_db::archive::crypt::decrypt(&wrong, &object[..], std::io::sink()).unwrap_err();
    assert!(e.to_string().contains("wrong key"), "{e}");
    let plain = dir.path().join("dump.gz");
    let mut f = std::fs::File::create(&plain).unwrap();
    kasm_db::archive::crypt::decrypt(&key, &object[..], &mut f).unwrap();
    drop(f);
    let restored = plain_restore(&plain);
    assert_eq!(count(&restored, "users"), 1000);
    assert_eq!(count(&restored, "logs"), 300);
}

#[test]
fn exclude_logs_keeps_the_definition_and_drops_the_rows() {
    let url = seeded_db();
    let dir = tempfile::tempdir().unwrap();
    let r = run(kasm_db(&[
        "backup",
        "--json",
        "--db",
        &url,
        "--to",
        dir.path().to_str().unwrap(),
        "--exclude-logs",
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let id = json(&r)["id"].as_str().unwrap().to_string();
    let m = manifest(dir.path(), &id);
    assert_eq!(m["exclude_logs"], true);
    // kasm-db's partitioned logs is named once; its partitions are marked in `tables`.
    assert_eq!(m["excluded"], serde_json::json!(["public.logs"]));
    assert_eq!(m["alembic_version"], Value::Null);
    let t = |name: &str| {
        m["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["table"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(t("logs_logs_all")["data_excluded"], true);
    assert_eq!(t("logs_logs_all")["rows"], 0);
    assert_eq!(t("users")["rows"], 1000);
    let restored = plain_restore(&dir.path().join(&id).join("dump.gz"));
    assert_eq!(count(&restored, "logs"), 0);
    assert_eq!(count(&restored, "users"), 1000);
    assert_eq!(
        with_primary(|c| c.psql(&restored, "SELECT count(*) FROM pg_partition_tree('logs')"))
            .unwrap(),
        "5"
    );
}

#[test]
fn prune_applies_the_policy_and_removes_old_leftovers() {
    let url = seeded_db();
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().to_str().unwrap();
    let ids: Vec<String> = (0..3)
        .map(|_| {
            let r = backup_to(&url, to);
            assert_eq!(r.code, 0, "{}", r.stderr);
            json(&r)["id"].as_str().unwrap().to_string()
        })
        .collect();
    // A dead run from two days ago and one from a minute ago (maybe still running).
    for (name, age) in [
        ("20200101T000000Z-dead01", "2 days ago"),
        ("20990101T000000Z-live01", "1 minute ago"),
    ] {
        std::fs::create_dir(dir.path().join(name)).unwrap();
        let f = dir.path().join(name).join(".dump.gz.partial-x");
        std::fs::write(&f, b"partial").unwrap();
        let ok = Command::new("touch")
            .args(["-d", age])
            .arg(&f)
            .status()
            .unwrap();
        assert!(ok.success());
    }
    // No policy at all is a usage error, not "delete all but the newest".
    let r = run(kasm_db(&["backups", "prune", "--from", to]));
    assert_eq!(r.code, 2, "{}", r.stderr);

    let r = run(kasm_db(&[
        "backups",
        "prune",
        "--json",
        "--from",
        to,
        "--keep-last",
        "1",
        "--dry-run",
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let p = json(&r);
    let newest = ids.last().unwrap();
    let listed = json(&run(kasm_db(&["backups", "list", "--json", "--from", to])));
    assert_eq!(listed[0]["id"], newest.as_str(), "list is newest first");
    assert_eq!(p["kept"], serde_json::json!([newest]));
    let mut deleted: Vec<String> = serde_json::from_value(p["deleted"].clone()).unwrap();
    deleted.sort();
    let mut older = ids[..2].to_vec();
    older.sort();
    assert_eq!(deleted, older);
    assert_eq!(
        p["leftovers_deleted"],
        serde_json::json!(["20200101T000000Z-dead01"])
    );
    // Dry run: everything still there.
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert!(dir.path().join("20200101T000000Z-dead01").exists());

    // A verified backup goes with its verification record.
    let v = run(kasm_db(&["backups", "verify", &ids[0], "--from", to]));
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert!(dir.path().join(&ids[0]).join("verified.json").exists());
    // For real, with the policy from the config (env) this time.
    let r =
        run(kasm_db(&["backups", "prune", "--json", "--from", to])
            .env("KASM_DB_BACKUP_KEEP_LAST", "1"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let listed = json(&run(kasm_db(&["backups", "list", "--json", "--from", to])));
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], newest.as_str());
    for id in &ids[..2] {
        assert!(!dir.path().join(id).exists(), "{id} not removed");
    }
    assert!(!dir.path().join("20200101T000000Z-dead01").exists());
    assert!(dir.path().join("20990101T000000Z-live01").exists());
    // keep-last 0 still keeps the newest.
    let r = run(kasm_db(&[
        "backups",
        "prune",
        "--json",
        "--from",
        to,
        "--keep-last",
        "0",
    ]));
    assert_eq!(json(&r)["kept"], serde_json::json!([newest]));
}

#[test]
fn targets_are_required_and_absolute() {
    let url = fresh_db();
    let r = run(kasm_db(&["backup", "--db", &url]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("backup.to"), "{}", r.stderr);
    let r = run(kasm_db(&["backup", "--db", &url, "--to", "relative/dir"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = run(kasm_db(&["backups", "list"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--from"), "{}", r.stderr);
    // A key file that is not a key is refused before anything is written.
    let dir = tempfile::tempdir().unwrap();
    let keyfile = dir.path().join("key");
    std::fs::write(&keyfile, "not a key").unwrap();
    let out = dir.path().join("out");
    let r = run(
        kasm_db(&["backup", "--db", &url, "--to", out.to_str().unwrap()])
            .env("KASM_DB_BACKUP_ENCRYPTION_KEY_FILE", &keyfile),
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("32 raw bytes or 64 hex"), "{}", r.stderr);
    assert!(!out.exists());
    // verify --scratch-db on a target without backups says so (the restore test needs one).
    let r = run(kasm_db(&[
        "backups",
        "verify",
        "--from",
        dir.path().to_str().unwrap(),
        "--scratch-db",
        &url,
    ]));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("no complete backup") && !r.stderr.contains(&pg().password),
        "{}",
        r.stderr
    );
    // backup.to from the environment works.
    let dir = tempfile::tempdir().unwrap();
    let r = run(kasm_db(&["backups", "list", "--json"]).env("KASM_DB_BACKUP_TO", dir.path()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&r), serde_json::json!([]));
}

#[test]
fn a_second_backup_of_the_same_database_exits_75() {
    let url = seeded_db();
    let p = pg();
    // Another backup holds the lock: a session holding the same advisory lock.
    let mut holder = Command::new(p.bindir.join("psql"))
        .args(["-X", "-q", "-h"])
        .arg(&p.sockdir)
        .args([
            "-p",
            &p.port.to_string(),
            "-U",
            "postgres",
            "-d",
            dbname(&url),
        ])
        .args([
            "-c",
            &format!(
                "SELECT pg_advisory_lock({})",
                kasm_db::db::locks::Lock::Backup.key()
            ),
            "-c",
            "SELECT pg_sleep(120)",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(30), "the lock holder to start", || {
        psql(
            &url,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        ) == "1"
    });
    let dir = tempfile::tempdir().unwrap();
    let r = backup_to(&url, dir.path().to_str().unwrap());
    psql(
        &url,
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    );
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(r.stderr.contains("another backup"), "{}", r.stderr);
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    // Once released, a backup runs.
    wait_until(Duration::from_secs(30), "the lock to be released", || {
        psql(
            &url,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        ) == "0"
    });
    assert_eq!(backup_to(&url, dir.path().to_str().unwrap()).code, 0);
}

fn spawn_backup(url: &str, to: &str) -> std::process::Child {
    kasm_db(&["backup", "--json", "--db", url, "--to", to])
        .envs(moto::env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: std::process::Child) -> Run {
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_failed_pg_dump_leaves_nothing_in_a_directory() {
    let url = big_db();
    let dir = tempfile::tempdir().unwrap();
    let child = spawn_backup(&url, dir.path().to_str().unwrap());
    let dump = step_pg_dump_until(child.id(), "data to be written", || {
        walk_size(dir.path()) > 0
    });
    // SAFETY: killing the pg_dump our child started.
    unsafe { libc::kill(dump, libc::SIGKILL) };
    let r = finish(child);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("pg_dump failed"), "{}", r.stderr);
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

fn walk_size(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let m = e.metadata().unwrap();
        n += if m.is_dir() {
            walk_size(&e.path())
        } else {
            m.len()
        };
    }
    n
}

#[test]
fn backup_to_s3_lists_and_verifies() {
    let url = seeded_db();
    let bucket = moto::bucket();
    let to = format!("s3://{bucket}/kasm/prod");
    let r = run(kasm_db(&["backup", "--json", "--db", &url, "--to", &to])
        .envs(moto::env())
        .env("KASM_DB_S3_SSE", "AES256"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let b = json(&r);
    let id = b["id"].as_str().unwrap().to_string();
    assert_eq!(b["target"], to.as_str());
    let mut keys = moto::keys(&bucket);
    keys.sort();
    assert_eq!(
        keys,
        [
            format!("kasm/prod/{id}/dump.gz"),
            format!("kasm/prod/{id}/manifest.json"),
            // A superuser's backup carries the role password hashes in their own object.
            format!("kasm/prod/{id}/role-passwords.json")
        ]
    );
    let object = moto::get(&bucket, &format!("kasm/prod/{id}/dump.gz"));
    assert_eq!(b["size_bytes"], object.len() as u64);
    let sse = moto::block_on(
        moto::client()
            .head_object()
            .bucket(&bucket)
            .key(format!("kasm/prod/{id}/dump.gz"))
            .send(),
    )
    .unwrap();
    assert_eq!(
        sse.server_side_encryption().map(|s| s.as_str()),
        Some("AES256")
    );
    let sse = moto::block_on(
        moto::client()
            .head_object()
            .bucket(&bucket)
            .key(format!("kasm/prod/{id}/role-passwords.json"))
            .send(),
    )
    .unwrap();
    assert_eq!(
        sse.server_side_encryption().map(|s| s.as_str()),
        Some("AES256")
    );
    // The object restores with plain tools after download.
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("dump.gz");
    std::fs::write(&local, &object).unwrap();
    let restored = plain_restore(&local);
    assert_eq!(count(&restored, "sessions"), 2500);

    let l = run(kasm_db(&["backups", "list", "--json", "--from", &to]).envs(moto::env()));
    assert_eq!(l.code, 0, "{}", l.stderr);
    assert_eq!(json(&l)[0]["id"], id.as_str());
    assert_eq!(json(&l)[0]["sha256"], b["sha256"]);
    assert_eq!(json(&l)[0]["verified"], Value::Null);
    let v = run(kasm_db(&["backups", "verify", "--json", "--from", &to]).envs(moto::env()));
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert_eq!(json(&v)["ok"], true);
    assert!(moto::keys(&bucket).contains(&format!("kasm/prod/{id}/verified.json")));
    let l = run(kasm_db(&["backups", "list", "--json", "--from", &to]).envs(moto::env()));
    assert_eq!(json(&l)[0]["verified"]["ok"], true);
    // Corrupt it in the bucket: verify fails.
    let mut bad = object.clone();
    bad[10] ^= 1;
    moto::put(&bucket, &format!("kasm/prod/{id}/dump.gz"), bad);
    let v = run(kasm_db(&["backups", "verify", &id, "--json", "--from", &to]).envs(moto::env()));
    assert_eq!(v.code, 1, "{}", v.stderr);
    assert_eq!(json(&v)["ok"], false);
    // Prune works on a bucket too: keep-last 0 still keeps the only (newest) backup.
    let p = run(kasm_db(&[
        "backups",
        "prune",
        "--json",
        "--from",
        &to,
        "--keep-last",
        "0",
    ])
    .envs(moto::env()));
    assert_eq!(p.code, 0, "{}", p.stderr);
    assert_eq!(json(&p)["kept"], serde_json::json!([id]));
    assert_eq!(
        moto::keys(&bucket).len(),
        4,
        "dump, role passwords, manifest, verification"
    );
    // Password never printed.
    assert!(!r.stderr.contains(&pg().password) && !r.stdout.contains(&pg().password));
    let m =
        String::from_utf8(moto::get(&bucket, &format!("kasm/prod/{id}/manifest.json"))).unwrap();
    assert!(!m.contains(&pg().password));
}

#[test]
fn a_multipart_backup_to_s3_completes_and_verifies() {
    // Large enough for several 8 MiB parts.
    let url = big_db();
    let bucket = moto::bucket();
    let to = format!("s3://{bucket}");
    let r = run(kasm_db(&["backup", "--json", "--db", &url, "--to", &to]).envs(moto::env()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let b = json(&r);
    assert!(b["size_bytes"].as_u64().unwrap() > 8 << 20, "{b}");
    let v = run(kasm_db(&["backups", "verify", "--json", "--from", &to]).envs(moto::env()));
    assert_eq!(json(&v)["ok"], true, "{}", v.stderr);
    assert!(moto::open_uploads(&bucket).is_empty());
}

#[test]
fn pg_dump_killed_mid_upload_aborts_the_multipart_upload() {
    let url = big_db();
    let bucket = moto::bucket();
    let to = format!("s3://{bucket}/p");
    let child = spawn_backup(&url, &to);
    let dump = step_pg_dump_until(child.id(), "a part to be uploaded", || {
        moto::open_parts(&bucket) > 0
    });
    // SAFETY: killing the pg_dump our child started.
    unsafe { libc::kill(dump, libc::SIGKILL) };
    let r = finish(child);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("pg_dump failed"), "{}", r.stderr);
    assert!(moto::open_uploads(&bucket).is_empty(), "orphan upload left");
    assert!(moto::keys(&bucket).is_empty(), "{:?}", moto::keys(&bucket));
    let l = run(kasm_db(&["backups", "list", "--json", "--from", &to]).envs(moto::env()));
    assert_eq!(json(&l), serde_json::json!([]));
}

#[test]
fn sigterm_mid_upload_aborts_and_lists_nothing() {
    let url = big_db();
    let bucket = moto::bucket();
    let to = format!("s3://{bucket}/p");
    let child = spawn_backup(&url, &to);
    step_pg_dump_until(child.id(), "a part to be uploaded", || {
        moto::open_parts(&bucket) > 0
    });
    // SAFETY: signalling the kasm-db we started (its pg_dump is stopped: mid-upload for sure).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let r = finish(child);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("interrupted"), "{}", r.stderr);
    assert!(moto::open_uploads(&bucket).is_empty(), "orphan upload left");
    assert!(moto::keys(&bucket).is_empty(), "{:?}", moto::keys(&bucket));
}
