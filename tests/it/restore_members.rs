//! Restore from the members recorded in the manifest (issue 15): a backup records each gzip
//! member's compressed size (`compression.members`), and restore unpacks the members in
//! parallel from it. Covers: the field is written and fits the object; a multi-member backup
//! restores to the source's content with it, with it removed (a manifest from before it was
//! recorded: unpacked sequentially), and encrypted; a damaged member is detected even when the
//! object's checksum was recorded over the damage (the swap never happens, the target is
//! unchanged and no new database is left behind); a corrupt object is refused before the
//! target is touched.

use crate::common::*;
use serde_json::Value;
use std::path::Path;

/// About 25 MB of poorly compressible text in two tables: a dozen or more 1 MiB members.
fn multi_member_db() -> String {
    let url = fresh_db();
    psql(
        &url,
        "CREATE TABLE notes AS SELECT i, md5(i::text) || md5((i * 7)::text) || md5((i * 13)::text) AS t
         FROM generate_series(1, 200000) i;
         CREATE INDEX ON notes (t);
         CREATE TABLE small (id int PRIMARY KEY, v text);
         INSERT INTO small SELECT i, 'v' || i FROM generate_series(1, 500) i;",
    );
    url
}

/// A database on the standby holding a marker table: the existing target.
fn target() -> String {
    let name = with_standby(|c| c.fresh_db("mtg")).unwrap();
    standby_sql(
        &name,
        "CREATE TABLE old_marker (v text); INSERT INTO old_marker VALUES ('before restore')",
    );
    name
}

fn dbs(prefix: &str) -> Vec<String> {
    standby_sql(
        "postgres",
        &format!(
            "SELECT datname FROM pg_database WHERE starts_with(datname, '{prefix}') ORDER BY 1"
        ),
    )
    .lines()
    .map(String::from)
    .collect()
}

fn restore(from: &Path, db: &str, key: Option<&Path>) -> Run {
    let mut cmd = kasm_db(&[
        "restore",
        "--json",
        "--jobs",
        "2",
        "--from",
        from.to_str().unwrap(),
        "--target",
        &standby_url(db),
    ]);
    if let Some(k) = key {
        cmd.env("KASM_DB_BACKUP_ENCRYPTION_KEY_FILE", k);
    }
    run(cmd)
}

fn same(src: &str, db: &str) {
    for t in ["notes", "small"] {
        assert_eq!(
            digest(|q| psql(src, q), t),
            digest(|q| standby_sql(db, q), t),
            "table {t} differs"
        );
    }
}

fn manifest(dir: &Path, id: &str) -> (std::path::PathBuf, Value) {
    let p = dir.join(id).join("manifest.json");
    let m = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    (p, m)
}

#[test]
fn members_are_recorded_and_restore_with_and_without_them() {
    let src = multi_member_db();
    let dir = tempfile::tempdir().unwrap();
    let r = run(kasm_db(&[
        "backup",
        "--json",
        "--db",
        &src,
        "--to",
        dir.path().to_str().unwrap(),
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let id = json(&r)["id"].as_str().unwrap().to_string();
    let (mpath, m) = manifest(dir.path(), &id);
    let sizes: Vec<u64> = m["compression"]["members"]
        .as_str()
        .unwrap()
        .split(',')
        .map(|n| n.parse().unwrap())
        .collect();
    let block = m["compression"]["block_bytes"].as_u64().unwrap();
    let dump = m["dump_bytes"].as_u64().unwrap();
    assert!(sizes.len() >= 10, "{} members", sizes.len());
    assert_eq!(sizes.len() as u64, dump.div_ceil(block));
    assert_eq!(sizes.iter().sum::<u64>(), m["size_bytes"].as_u64().unwrap());

    // With the members: unpacked in parallel, the same content, no fallback warning.
    let name = format!("mem_{}", &id[..8].to_lowercase());
    let r = restore(dir.path(), &name, None);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(!r.stderr.contains("sequentially"), "{}", r.stderr);
    assert_eq!(json(&r)["rows"], 200_500);
    same(&src, &name);

    // A manifest written before the members were recorded: unpacked sequentially, same result.
    let mut old = m.clone();
    old["compression"]
        .as_object_mut()
        .unwrap()
        .remove("members");
    std::fs::write(&mpath, serde_json::to_vec_pretty(&old).unwrap()).unwrap();
    let name_old = format!("{name}_old");
    let r = restore(dir.path(), &name_old, None);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    same(&src, &name_old);

    // A member list that does not fit the object is not trusted: sequential, with a warning.
    let mut odd = m.clone();
    odd["compression"]["members"] = "1,2,3".into();
    std::fs::write(&mpath, serde_json::to_vec_pretty(&odd).unwrap()).unwrap();
    let name_odd = format!("{name}_odd");
    let r = restore(dir.path(), &name_odd, None);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("does not fit the object"), "{}", r.stderr);
    same(&src, &name_odd);
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();

    // Encrypted: the members are the chunks' plaintexts; still unpacked in parallel.
    let keyfile = dir.path().join("k");
    std::fs::write(&keyfile, hex::encode([0x42u8; 32])).unwrap();
    let enc = dir.path().join("enc");
    let r = run(kasm_db(&[
        "backup",
        "--json",
        "--db",
        &src,
        "--to",
        enc.to_str().unwrap(),
    ])
    .env("KASM_DB_BACKUP_ENCRYPTION_KEY_FILE", &keyfile));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let name_enc = format!("{name}_enc");
    let r = restore(&enc, &name_enc, Some(&keyfile));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(!r.stderr.contains("sequentially"), "{}", r.stderr);
    same(&src, &name_enc);
}

#[test]
fn a_damaged_member_or_object_never_reaches_the_swap() {
    let src = multi_member_db();
    let dir = tempfile::tempdir().unwrap();
    let r = run(kasm_db(&[
        "backup",
        "--json",
        "--db",
        &src,
        "--to",
        dir.path().to_str().unwrap(),
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let id = json(&r)["id"].as_str().unwrap().to_string();
    let (mpath, m) = manifest(dir.path(), &id);
    let sizes: Vec<usize> = m["compression"]["members"]
        .as_str()
        .unwrap()
        .split(',')
        .map(|n| n.parse().unwrap())
        .collect();
    let object = dir.path().join(&id).join("dump.gz");
    let good = std::fs::read(&object).unwrap();
    let tgt = target();

    // A byte flipped in the middle of member 4, and the manifest's checksum recorded over the
    // damage (as if the object had been damaged before it was hashed): the SHA-256 passes, the
    // member's own CRC does not.
    let mut bad = good.clone();
    let at = sizes[..3].iter().sum::<usize>() + sizes[3] / 2;
    bad[at] ^= 0x55;
    std::fs::write(&object, &bad).unwrap();
    let mut lying = m.clone();
    lying["sha256"] = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bad)).into();
    std::fs::write(&mpath, serde_json::to_vec_pretty(&lying).unwrap()).unwrap();
    let r = restore(dir.path(), &tgt, None);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("member 4 of the object is damaged"),
        "{}",
        r.stderr
    );
    assert_eq!(
        standby_sql(&tgt, "SELECT v FROM old_marker"),
        "before restore"
    );
    assert_eq!(dbs(&tgt), vec![tgt.clone()]);

    // The true checksum: refused as corrupt before the target is touched.
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let r = restore(dir.path(), &tgt, None);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("corrupt"), "{}", r.stderr);
    assert!(
        r.stderr.contains("before touching the target"),
        "{}",
        r.stderr
    );
    assert_eq!(
        standby_sql(&tgt, "SELECT v FROM old_marker"),
        "before restore"
    );
    assert_eq!(dbs(&tgt), vec![tgt.clone()]);

    // Undamaged again: it restores over the target.
    std::fs::write(&object, &good).unwrap();
    let r = restore(dir.path(), &tgt, None);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    same(&src, &tgt);
}
