//! Backup compression against two real clusters (backups made on the primary, restored onto
//! the standby): the default gzip object is standard multi-member gzip that plain `gunzip -c |
//! pg_restore` restores; `backup.compression = "zstd"` writes `dump.zst`, whose manifest recipe
//! says `zstd -dc` and which plain `zstd -dc | pg_restore` restores; `kasm-db restore` and
//! `backups verify --scratch-db` read both (chosen by the manifest); encryption composes with
//! zstd; a corrupt zstd object is refused before the target is touched.

use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const TABLES: [&str; 2] = ["users", "notes"];

/// A source whose dump spans several 1 MiB blocks (so several gzip members / zstd frames).
fn seeded_db() -> String {
    let url = fresh_db();
    psql(
        &url,
        "CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL);
         INSERT INTO users (name) SELECT 'user ' || i FROM generate_series(1, 1000) i;
         CREATE TABLE notes (id bigint, t text);
         INSERT INTO notes SELECT i, md5(i::text) || ' ' || repeat(chr(65 + i % 26), i % 40)
           FROM generate_series(1, 60000) i;",
    );
    url
}

/// Back `url` up into a new directory with extra environment; (dir, backup id, manifest).
fn backup(url: &str, env: &[(&str, &Path)]) -> (tempfile::TempDir, String, Value) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = kasm_db(&[
        "backup",
        "--json",
        "--db",
        url,
        "--to",
        dir.path().to_str().unwrap(),
    ]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let r = run(cmd);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let id = json(&r)["id"].as_str().unwrap().to_string();
    let m: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(&id).join("manifest.json")).unwrap(),
    )
    .unwrap();
    (dir, id, m)
}

fn zstd_env() -> Vec<(&'static str, &'static Path)> {
    vec![("KASM_DB_BACKUP_COMPRESSION", Path::new("zstd"))]
}

/// Run `unpack OBJECT | pg_restore` (plain tools, no kasm-db) into a new database on the
/// primary; its name.
fn plain_restore(unpack: &str, object: &Path) -> String {
    let (bindir, sockdir, port) =
        with_primary(|c| (c.bindir.clone(), c.dir().to_path_buf(), c.port));
    let target = with_primary(|c| c.fresh_db("r").unwrap());
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; {unpack} '{}' | '{}' --no-owner -d '{}'",
            object.display(),
            bindir.join("pg_restore").display(),
            target
        ))
        .env("PGHOST", &sockdir)
        .env("PGPORT", port.to_string())
        .env("PGUSER", "postgres")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{unpack} | pg_restore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    target
}

fn primary_db_matches(source_url: &str, db: &str) {
    for t in TABLES {
        let src = digest(|q| psql(source_url, q), t);
        let dst = digest(|q| with_primary(|c| c.psql(db, q)).unwrap(), t);
        assert_eq!(src, dst, "table {t} differs");
    }
}

fn standby_matches(source_url: &str, db: &str) {
    for t in TABLES {
        let src = digest(|q| psql(source_url, q), t);
        let dst = digest(|q| standby_sql(db, q), t);
        assert_eq!(src, dst, "table {t} differs");
    }
}

fn restore(from: &Path, target_url: &str, env: &[(&str, &Path)]) -> Run {
    let mut cmd = kasm_db(&[
        "restore",
        "--json",
        "--from",
        from.to_str().unwrap(),
        "--target",
        target_url,
    ]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(cmd)
}

/// A new database on the standby for restores into a new name (its name only).
fn new_standby_name() -> String {
    let name = with_standby(|c| c.fresh_db("z")).unwrap();
    standby_sql("postgres", &format!("DROP DATABASE \"{name}\""));
    name
}

#[test]
fn a_gzip_backup_is_multi_member_gzip_that_plain_gunzip_restores() {
    let src = seeded_db();
    let (dir, id, m) = backup(&src, &[]);
    assert_eq!(m["compression"]["kind"], "gzip");
    assert_eq!(
        m["compression"]["level"],
        kasm_db::archive::compress::GZIP_DEFAULT_LEVEL
    );
    assert_eq!(m["object"], format!("{id}/dump.gz"));
    let object: PathBuf = dir.path().join(&id).join("dump.gz");
    assert!(
        m["restore"]
            .as_str()
            .unwrap()
            .contains(&format!("gunzip -c {} | pg_restore", object.display())),
        "{m}"
    );
    // Several members: a single-member decoder stops after the first 1 MiB block, a
    // multi-member one (like gunzip) reads the whole archive.
    let bytes = std::fs::read(&object).unwrap();
    let dump_bytes = m["dump_bytes"].as_u64().unwrap();
    assert!(
        dump_bytes > 2 << 20,
        "dump too small to span blocks: {dump_bytes}"
    );
    let read_all = |mut r: Box<dyn std::io::Read>| {
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        out.len() as u64
    };
    let first = read_all(Box::new(flate2::read::GzDecoder::new(&bytes[..])));
    assert_eq!(first, 1 << 20);
    let whole = read_all(Box::new(flate2::read::MultiGzDecoder::new(&bytes[..])));
    assert_eq!(whole, dump_bytes);
    // An operator restores it with plain gunzip | pg_restore.
    let plain = plain_restore("gunzip -c", &object);
    primary_db_matches(&src, &plain);
    // And kasm-db restores it.
    let name = new_standby_name();
    let r = restore(dir.path(), &standby_url(&name), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    standby_matches(&src, &name);
}

#[test]
fn a_zstd_backup_restores_with_zstd_dc_and_with_kasm_db() {
    let src = seeded_db();
    let (dir, id, m) = backup(&src, &zstd_env());
    assert_eq!(m["compression"]["kind"], "zstd");
    assert_eq!(m["compression"]["level"], 3);
    assert_eq!(m["object"], format!("{id}/dump.zst"));
    assert!(
        m["format_of_dump"].as_str().unwrap().contains("zstd"),
        "{m}"
    );
    let object = dir.path().join(&id).join("dump.zst");
    assert!(!dir.path().join(&id).join("dump.gz").exists());
    let recipe = m["restore"].as_str().unwrap();
    assert!(
        recipe.contains(&format!("zstd -dc {} | pg_restore", object.display())),
        "{recipe}"
    );
    let bytes = std::fs::read(&object).unwrap();
    assert_eq!(&bytes[..4], &[0x28, 0xb5, 0x2f, 0xfd], "not a zstd frame");
    assert_eq!(m["size_bytes"], bytes.len() as u64);
    // The manifest's recipe with plain tools.
    let plain = plain_restore("zstd -dc", &object);
    primary_db_matches(&src, &plain);

    // kasm-db restore onto the standby, chosen by the manifest (no zstd setting needed).
    let name = new_standby_name();
    let r = restore(dir.path(), &standby_url(&name), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&r)["backup"], id.as_str());
    standby_matches(&src, &name);

    // backups verify: the checksum check and the full restore test.
    let v = run(kasm_db(&[
        "backups",
        "verify",
        "--json",
        "--from",
        dir.path().to_str().unwrap(),
    ]));
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert_eq!(json(&v)["ok"], true);
    let v = verify_scratch(dir.path(), &id, |_| {});
    assert_eq!(v.code, 0, "{}\n{}", v.stdout, v.stderr);
    assert_eq!(json(&v)["ok"], true);
}

#[test]
fn an_encrypted_zstd_backup_restores_with_its_key() {
    let src = seeded_db();
    let keydir = tempfile::tempdir().unwrap();
    let keyfile = keydir.path().join("backup.key");
    std::fs::write(&keyfile, hex::encode([0x33u8; 32])).unwrap();
    let mut env = zstd_env();
    env.push(("KASM_DB_BACKUP_ENCRYPTION_KEY_FILE", &keyfile));
    let (dir, id, m) = backup(&src, &env);
    assert_eq!(m["object"], format!("{id}/dump.zst.aes"));
    assert_eq!(m["encryption"]["kind"], "aes-256-gcm-hkdf-stream");
    assert!(m["restore"].as_str().unwrap().contains("zstd -dc"), "{m}");
    // Decrypted with the key, the object is a zstd stream of the archive.
    let object = std::fs::read(dir.path().join(&id).join("dump.zst.aes")).unwrap();
    let key = kasm_db::archive::crypt::Key::from_file(&keyfile).unwrap();
    let mut zst = Vec::new();
    kasm_db::archive::crypt::decrypt(&key, &object[..], &mut zst).unwrap();
    assert_eq!(&zst[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
    // kasm-db restore decrypts and unpacks it.
    let name = new_standby_name();
    let r = restore(
        dir.path(),
        &standby_url(&name),
        &[("KASM_DB_BACKUP_ENCRYPTION_KEY_FILE", &keyfile)],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Its members were found where the manifest says (the sealed header's size known), so it
    // was unpacked in parallel, not read in order after a warning.
    assert!(!r.stderr.contains("does not fit"), "{}", r.stderr);
    standby_matches(&src, &name);
}

#[test]
fn a_corrupt_zstd_object_is_refused_before_the_target_is_touched() {
    let src = seeded_db();
    let (dir, id, _) = backup(&src, &zstd_env());
    let object = dir.path().join(&id).join("dump.zst");
    let mut bytes = std::fs::read(&object).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&object, &bytes).unwrap();
    let target = with_standby(|c| c.fresh_db("tgt")).unwrap();
    standby_sql(
        &target,
        "CREATE TABLE old_marker (v text); INSERT INTO old_marker VALUES ('before restore')",
    );
    let dbs = || {
        standby_sql(
            "postgres",
            &format!(
                "SELECT string_agg(datname, ',') FROM pg_database WHERE starts_with(datname, '{target}')"
            ),
        )
    };
    let r = restore(dir.path(), &standby_url(&target), &[]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("corrupt"), "{}", r.stderr);
    assert!(
        r.stderr.contains("before touching the target"),
        "{}",
        r.stderr
    );
    assert_eq!(
        standby_sql(&target, "SELECT v FROM old_marker"),
        "before restore"
    );
    assert_eq!(dbs(), target);
    // The checksum check says so too.
    let v = run(kasm_db(&[
        "backups",
        "verify",
        "--json",
        "--from",
        dir.path().to_str().unwrap(),
    ]));
    assert_eq!(v.code, 1, "{}", v.stdout);
    assert_eq!(json(&v)["ok"], false);
}
