//! What follows a backup (issue 16), against a real cluster, real directories and a real
//! S3-protocol server (moto_server) on loopback: the `keep_*` policy applied after every
//! backup (CLI and `serve`'s schedule; `--no-prune`; a prune that fails exits 1 and leaves the
//! new backup intact), second copies (`backups copy` dir→dir→S3→dir and a restore from the
//! last copy; a corrupt source refused with nothing at the destination; `backup.copy_to` after
//! a backup, each target pruned; an unreachable copy target fails the job, the primary intact),
//! and `s3.object_lock_days` (GetObjectRetention shows GOVERNANCE until now + N days; prune
//! keeps a backup still under retention, with a warning).

use crate::common::moto;

use crate::common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn seeded_db() -> String {
    let url = fresh_db();
    psql(
        &url,
        "CREATE TABLE users (id int PRIMARY KEY, name text);
         INSERT INTO users SELECT i, 'user ' || i FROM generate_series(1, 1000) i;",
    );
    url
}

/// `kasm-db ARGS --json` with `env`, and moto's endpoint and credentials.
fn cmd(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = kasm_db(args);
    c.arg("--json").envs(moto::env()).envs(env.iter().copied());
    run(c)
}

fn backup(url: &str, to: &str, env: &[(&str, &str)], extra: &[&str]) -> Run {
    let mut args = vec!["backup", "--db", url, "--to", to];
    args.extend_from_slice(extra);
    cmd(&args, env)
}

fn ids(from: &str) -> Vec<String> {
    let r = cmd(&["backups", "list", "--from", from], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    json(&r)
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn keep_last_is_applied_after_every_backup_unless_no_prune() {
    let url = seeded_db();
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().to_str().unwrap();
    let env = [("KASM_DB_BACKUP_KEEP_LAST", "2")];
    let mut made = Vec::new();
    for i in 0..3 {
        let r = backup(&url, to, &env, &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let b = json(&r);
        made.push(b["id"].as_str().unwrap().to_string());
        if i < 2 {
            assert!(strings(&b["pruned"]).is_empty(), "{b}");
        } else {
            assert_eq!(strings(&b["pruned"]), [made[0].clone()], "{b}");
            assert_eq!(b["ok"], true);
        }
    }
    assert_eq!(ids(to), [made[2].clone(), made[1].clone()]);
    assert!(!dir.path().join(&made[0]).exists(), "pruned entirely");

    // --no-prune keeps every one.
    let r = backup(&url, to, &env, &["--no-prune"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(strings(&json(&r)["pruned"]).is_empty());
    assert_eq!(ids(to).len(), 3);

    // The text result says what went.
    let mut c = kasm_db(&["backup", "--db", &url, "--to", to]);
    c.envs(env);
    let r = run(c);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("pruned (backup.keep_*): "),
        "{}",
        r.stdout
    );
    assert_eq!(ids(to).len(), 2);
}

/// Make `dir`'s entries undeletable: `chattr +i` as root (permissions do not stop root), else
/// a read-only directory. Returns the command that undoes it.
fn make_undeletable(dir: &Path) -> Box<dyn Fn()> {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let ok = std::process::Command::new("chattr")
            .arg("+i")
            .arg(dir)
            .status()
            .expect("chattr (e2fsprogs)");
        assert!(ok.success(), "chattr +i {} failed", dir.display());
        let d = dir.to_path_buf();
        Box::new(move || {
            std::process::Command::new("chattr")
                .arg("-i")
                .arg(&d)
                .status()
                .unwrap();
        })
    } else {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o500)).unwrap();
        let d = dir.to_path_buf();
        Box::new(move || {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        })
    }
}

#[test]
fn a_failed_prune_exits_1_and_leaves_the_new_backup_intact() {
    let url = seeded_db();
    // Under target/ (ext4 or the like), where chattr works; /tmp may be tmpfs.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let to = dir.path().to_str().unwrap();
    let r = backup(&url, to, &[], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let old = json(&r)["id"].as_str().unwrap().to_string();
    let undo = make_undeletable(&dir.path().join(&old));
    let r = backup(&url, to, &[("KASM_DB_BACKUP_KEEP_LAST", "1")], &[]);
    undo();
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let b = json(&r);
    let new = b["id"].as_str().unwrap().to_string();
    assert_eq!(b["ok"], false);
    assert!(strings(&b["pruned"]).is_empty(), "{b}");
    assert!(
        b["prune_error"].as_str().unwrap().contains("manifest.json"),
        "{b}"
    );
    assert!(
        r.stderr
            .contains(&format!("backup {new} succeeded and is intact")),
        "{}",
        r.stderr
    );
    // The new backup is listed and whole; the old one was not touched either.
    assert_eq!(ids(to), [new.clone(), old]);
    let v = cmd(&["backups", "verify", &new, "--from", to], &[]);
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert_eq!(json(&v)["ok"], true);
}

/// Complete backups (with a manifest) in a directory target.
fn complete_in(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().join("manifest.json").exists())
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn serve_prunes_after_each_scheduled_backup() {
    let url = seeded_db();
    let dir = tempfile::tempdir().unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut c = kasm_db(&["serve", "--db", &url]);
    c.env(
        "KASM_DB_SERVER_LISTEN",
        format!("127.0.0.1:{}", free_port()),
    )
    .env("KASM_DB_SERVER_TOKEN", "t0ken-for-copies-tests")
    .env("KASM_DB_BACKUP_TO", dir.path())
    .env("KASM_DB_BACKUP_KEEP_LAST", "2")
    .env("KASM_DB_SCHEDULE_BACKUP", "*/2 * * * * *")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(log.reopen().unwrap());
    let mut child = c.spawn().unwrap();
    let runs = || -> u64 {
        let migrated = psql(
            &url,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'schedule_runs'",
        );
        if migrated == "0" {
            return 0;
        }
        psql(
            &url,
            "SELECT count(*) FROM schedule_runs WHERE job = 'backup' AND ok",
        )
        .parse()
        .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut most = 0;
    while runs() < 5 {
        let stderr = std::fs::read_to_string(log.path()).unwrap_or_default();
        assert!(Instant::now() < deadline, "too few backups ran: {stderr}");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("serve exited ({status}): {stderr}");
        }
        // Two kept, plus at most the one just made before its prune runs.
        let n = complete_in(dir.path());
        most = most.max(n);
        assert!(n <= 3, "{n} complete backups with keep_last = 2");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    child.wait().unwrap();
    let stderr = std::fs::read_to_string(log.path()).unwrap();
    assert!(most >= 2, "{stderr}");
    // SIGTERM may have come between a backup and its prune: at most one more.
    assert!(complete_in(dir.path()) <= 2 + 1, "{stderr}");
    assert!(stderr.contains("; pruned 20"), "{stderr}");
    assert!(!stderr.contains("job failed"), "{stderr}");
}

fn count_users(url: &str) -> String {
    psql(url, "SELECT count(*) FROM users")
}

#[test]
fn backups_copy_goes_dir_to_dir_to_s3_to_dir_and_the_last_copy_restores() {
    let url = seeded_db();
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (a, b, c) = (
        a.path().to_str().unwrap().to_string(),
        b.path().to_str().unwrap().to_string(),
        c.path().to_str().unwrap().to_string(),
    );
    let bucket = moto::bucket();
    let s3 = format!("s3://{bucket}/second");
    let r = backup(&url, &a, &[], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let made = json(&r);
    let id = made["id"].as_str().unwrap().to_string();

    for (from, to) in [(&a, &b), (&b, &s3), (&s3, &c)] {
        // Server-side encryption asked of the bucket: the copy's manifest says so.
        let r = cmd(
            &["backups", "copy", "latest", "--from", from, "--to", to],
            &[("KASM_DB_S3_SSE", "AES256")],
        );
        assert_eq!(r.code, 0, "{from} -> {to}: {}", r.stderr);
        let j = json(&r);
        assert_eq!(j["id"], id.as_str());
        assert_eq!(j["bytes"], made["size_bytes"], "{j}");
        assert_eq!(j["already_there"], false);
        let listed = cmd(&["backups", "list", "--from", to], &[]);
        let l = json(&listed);
        assert_eq!(l[0]["id"], id.as_str(), "{l}");
        assert_eq!(l[0]["sha256"], made["sha256"], "{l}");
        assert!(
            l[0]["object"].as_str().unwrap().starts_with(to.as_str()),
            "the copy's manifest names its own location: {l}"
        );
    }
    assert_eq!(
        moto::keys(&bucket),
        [
            format!("second/{id}/dump.gz"),
            format!("second/{id}/manifest.json"),
            // The role passwords object travels too (issue 17): a superuser's backup has one.
            format!("second/{id}/role-passwords.json"),
        ]
    );
    let v = cmd(&["backups", "verify", "latest", "--from", &c], &[]);
    assert_eq!(
        v.code, 0,
        "the third copy verifies, passwords object included: {}",
        v.stderr
    );
    let manifest = |bytes: Vec<u8>| serde_json::from_slice::<Value>(&bytes).unwrap();
    let in_s3 = manifest(moto::get(&bucket, &format!("second/{id}/manifest.json")));
    assert_eq!(in_s3["server_side_encryption"], "AES256", "{in_s3}");
    assert_eq!(in_s3["location"], format!("{s3}/{id}/dump.gz"));
    let in_c = manifest(std::fs::read(Path::new(&c).join(&id).join("manifest.json")).unwrap());
    assert_eq!(in_c["server_side_encryption"], Value::Null);
    assert!(
        in_c["restore"]
            .as_str()
            .unwrap()
            .contains(&format!("gunzip -c {c}/{id}/dump.gz")),
        "{in_c}"
    );
    // Again: already there, nothing written.
    let r = cmd(&["backups", "copy", &id, "--from", &a, "--to", &b], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&r)["already_there"], true);

    // The last copy restores, and checks out against the manifest's row counts.
    let target = fresh_db();
    let r = cmd(
        &[
            "restore", "--from", &c, "--backup", &id, "--target", &target,
        ],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(count_users(&target), "1000");
}

/// Flip one byte in the middle of a file.
fn corrupt(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_corrupt_source_is_refused_and_nothing_appears_at_the_destination() {
    let url = seeded_db();
    let a = tempfile::tempdir().unwrap();
    let d = tempfile::tempdir().unwrap();
    let from = a.path().to_str().unwrap();
    let r = backup(&url, from, &[], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let id = json(&r)["id"].as_str().unwrap().to_string();
    corrupt(&a.path().join(&id).join("dump.gz"));
    let bucket = moto::bucket();
    for to in [
        d.path().to_str().unwrap().to_string(),
        format!("s3://{bucket}/p"),
    ] {
        let r = cmd(&["backups", "copy", &id, "--from", from, "--to", &to], &[]);
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(r.stderr.contains("is corrupt"), "{}", r.stderr);
        assert!(ids(&to).is_empty());
    }
    assert_eq!(
        std::fs::read_dir(d.path()).unwrap().count(),
        0,
        "no leftovers"
    );
    assert!(moto::keys(&bucket).is_empty());
    assert!(
        moto::open_uploads(&bucket).is_empty(),
        "the upload was aborted"
    );
}

#[test]
fn copy_to_follows_each_backup_and_each_target_is_pruned() {
    let url = seeded_db();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (
        a.path().to_str().unwrap().to_string(),
        b.path().to_str().unwrap().to_string(),
    );
    let bucket = moto::bucket();
    let s3 = format!("s3://{bucket}/copies");
    let copy_to = format!("[\"{b}\", \"{s3}\"]");
    let env = [
        ("KASM_DB_BACKUP_COPY_TO", copy_to.as_str()),
        ("KASM_DB_BACKUP_KEEP_LAST", "1"),
    ];
    let mut made = Vec::new();
    for _ in 0..2 {
        let r = backup(&url, &a, &env, &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        made.push(json(&r));
    }
    let (first, second) = (
        made[0]["id"].as_str().unwrap().to_string(),
        made[1]["id"].as_str().unwrap().to_string(),
    );
    let copies = made[1]["copies"].as_array().unwrap();
    assert_eq!(copies.len(), 2, "{}", made[1]);
    for (c, target) in copies.iter().zip([&b, &s3]) {
        assert_eq!(c["target"], target.as_str());
        assert_eq!(c["ok"], true, "{c}");
        assert_eq!(c["bytes"], made[1]["size_bytes"]);
        assert_eq!(c["error"], Value::Null);
        assert_eq!(strings(&c["pruned"]), std::slice::from_ref(&first), "{c}");
    }
    assert_eq!(strings(&made[1]["pruned"]), std::slice::from_ref(&first));
    for t in [&a, &b, &s3] {
        assert_eq!(ids(t), std::slice::from_ref(&second), "{t}");
    }
    let v = cmd(&["backups", "verify", "latest", "--from", &s3], &[]);
    assert_eq!(json(&v)["ok"], true, "{}", v.stderr);
}

#[test]
fn an_unreachable_copy_target_fails_the_job_and_the_primary_stays_intact() {
    let url = seeded_db();
    let a = tempfile::tempdir().unwrap();
    let from = a.path().to_str().unwrap();
    // Nothing listens there; the key is one the output must never show.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let secret = "wJalrXUtnFEMI-copies-secret-9d1f";
    let env = [
        ("KASM_DB_BACKUP_COPY_TO", "s3://nowhere/kasm"),
        ("KASM_DB_S3_ENDPOINT", dead.as_str()),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_MAX_ATTEMPTS", "2"),
    ];
    let r = backup(&url, from, &env, &[]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let b = json(&r);
    let id = b["id"].as_str().unwrap().to_string();
    assert_eq!(b["ok"], false);
    let c = &b["copies"][0];
    assert_eq!(c["target"], "s3://nowhere/kasm");
    assert_eq!(c["ok"], false);
    assert!(c["error"].as_str().unwrap().len() > 10, "{c}");
    assert!(
        r.stderr.contains(&format!(
            "backup {id} succeeded and is intact, but the copy to s3://nowhere/kasm failed"
        )),
        "{}",
        r.stderr
    );
    assert!(!r.stdout.contains(secret) && !r.stderr.contains(secret));
    assert_eq!(ids(from), std::slice::from_ref(&id));
    let v = cmd(&["backups", "verify", &id, "--from", from], &[]);
    assert_eq!(json(&v)["ok"], true, "{}", v.stderr);
}

/// A bucket with Object Lock enabled (and so versioning).
pub(crate) fn locked_bucket() -> String {
    let name = format!(
        "kasm-lock-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    moto::block_on(
        moto::client()
            .create_bucket()
            .bucket(&name)
            .object_lock_enabled_for_bucket(true)
            .send(),
    )
    .expect("create bucket with Object Lock");
    name
}

/// The object's retention: (mode, retain-until as epoch seconds). Through HeadObject, which
/// carries the same retention as GetObjectRetention: moto 5.2 does not implement the latter.
pub(crate) fn retention(bucket: &str, key: &str) -> (String, i64) {
    let out = moto::block_on(moto::client().head_object().bucket(bucket).key(key).send())
        .unwrap_or_else(|e| panic!("{key}: {}", aws_sdk_s3::error::DisplayErrorContext(&e)));
    (
        out.object_lock_mode()
            .unwrap_or_else(|| panic!("{key}: no Object Lock mode"))
            .as_str()
            .to_string(),
        out.object_lock_retain_until_date()
            .unwrap_or_else(|| panic!("{key}: no retain-until date"))
            .secs(),
    )
}

#[test]
fn object_lock_days_retains_dump_and_manifest_and_prune_keeps_locked_backups() {
    let url = seeded_db();
    let bucket = locked_bucket();
    let to = format!("s3://{bucket}/locked");
    let env = [("KASM_DB_S3_OBJECT_LOCK_DAYS", "3")];
    let before = chrono::Utc::now().timestamp();
    let mut made = Vec::new();
    for _ in 0..2 {
        let r = backup(&url, &to, &env, &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        made.push(json(&r)["id"].as_str().unwrap().to_string());
    }
    let after = chrono::Utc::now().timestamp();
    for id in &made {
        for file in ["manifest.json", "dump.gz"] {
            let (mode, until) = retention(&bucket, &format!("locked/{id}/{file}"));
            assert_eq!(mode, "GOVERNANCE", "{id}/{file}");
            let days3 = 3 * 86_400;
            assert!(
                (before + days3 - 1..=after + days3 + 1).contains(&until),
                "{id}/{file}: retained until {until}, expected now + 3 days"
            );
        }
    }
    // The policy would delete the older one: it is still retained, so it stays, whole and
    // listed, with a warning; the prune itself succeeds.
    let r = cmd(
        &["backups", "prune", "--from", &to, "--keep-last", "1"],
        &env,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let p = json(&r);
    assert!(strings(&p["deleted"]).is_empty(), "{p}");
    assert_eq!(strings(&p["locked"]), [made[0].clone()], "{p}");
    assert!(
        p["warnings"][0]
            .as_str()
            .unwrap()
            .contains("Object Lock retention"),
        "{p}"
    );
    assert_eq!(ids(&to), [made[1].clone(), made[0].clone()]);
    let v = cmd(&["backups", "verify", &made[0], "--from", &to], &[]);
    assert_eq!(json(&v)["ok"], true, "{}", v.stderr);

    // Without retention (a bucket without Object Lock), the same prune deletes every version.
    let plain = moto::bucket();
    let to = format!("s3://{plain}/p");
    for _ in 0..2 {
        assert_eq!(backup(&url, &to, &[], &[]).code, 0);
    }
    let r = cmd(
        &["backups", "prune", "--from", &to, "--keep-last", "1"],
        &env,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(strings(&json(&r)["deleted"]).len(), 1);
    // The newest backup's dump, manifest and role passwords object (issue 17) remain.
    assert_eq!(moto::keys(&plain).len(), 3, "{:?}", moto::keys(&plain));
}
