//! `az://container/prefix` targets against Azurite (Microsoft's Azure Storage emulator, from
//! npm), configured as an operator would: the standard `AZURE_STORAGE_CONNECTION_STRING` with
//! the account key and a `BlobEndpoint`, or a SAS. kasm-db backs up (a block blob of several
//! blocks, staged as the dump streams and committed at the end), lists, verifies (the stored
//! bytes hash to the manifest's SHA-256), prunes and restores onto a standby cluster. A backup
//! interrupted mid-upload lists nothing (its blocks stay uncommitted); a wrong key or SAS is a
//! clear failure that never shows the secret; missing credentials are a usage error. `backups
//! copy` puts a directory backup into a container, where it lists and verifies.

use crate::common::azurite;

use crate::common::*;
use base64::Engine;
use kasm_db::archive::storage::azure::account::{DEV_ACCOUNT, DEV_KEY};
use serde_json::Value;
use std::process::Stdio;

fn ok(r: Run) -> Run {
    assert_eq!(r.code, 0, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    r
}

fn kasm(args: &[&str]) -> Run {
    run(kasm_db(args).envs(azurite::env()))
}

/// A database whose dump compresses to about `rows / 20_000` MiB (md5 text).
fn source_db_of(rows: u32) -> String {
    let url = fresh_db();
    psql(
        &url,
        &format!(
            "CREATE TABLE users (id int PRIMARY KEY, name text);
             INSERT INTO users SELECT i, 'user ' || i FROM generate_series(1, 1000) i;
             CREATE TABLE blobs AS SELECT i, md5(i::text) || md5((i * 7)::text) || md5((i * 13)::text) AS t
               FROM generate_series(1, {rows}) i;"
        ),
    );
    url
}

fn no_secret(r: &Run, secret: &str) {
    for (what, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        assert!(!text.contains(secret), "the secret is in {what}: {text}");
    }
}

#[test]
fn backup_list_verify_prune_and_restore_against_azurite() {
    // More than one 8 MiB block.
    let src = source_db_of(200_000);
    let container = azurite::container();
    let to = format!("az://{container}/kasm/prod");

    let ids: Vec<String> = (0..2)
        .map(|_| {
            let r = ok(kasm(&["backup", "--json", "--db", &src, "--to", &to]));
            no_secret(&r, DEV_KEY);
            let b = json(&r);
            assert!(
                b["size_bytes"].as_u64().unwrap() > 8 << 20,
                "the dump must take several blocks: {b}"
            );
            b["id"].as_str().unwrap().to_string()
        })
        .collect();
    let blobs = azurite::blobs(&container);
    for id in &ids {
        for f in ["dump.gz", "manifest.json"] {
            assert!(blobs.contains(&format!("kasm/prod/{id}/{f}")), "{blobs:?}");
        }
    }
    assert!(azurite::uncommitted(&container).is_empty());

    let listed = json(&ok(kasm(&["backups", "list", "--json", "--from", &to])));
    let listed_ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed_ids,
        [ids[1].as_str(), ids[0].as_str()],
        "newest first"
    );
    assert_eq!(
        listed[0]["object"],
        format!("az://{container}/kasm/prod/{}/dump.gz", ids[1])
    );

    // The committed blob is exactly what was hashed while streaming, blocks in order.
    let v = json(&ok(kasm(&["backups", "verify", "--json", "--from", &to])));
    assert_eq!(
        (v["id"].as_str(), v["ok"].as_bool()),
        (Some(ids[1].as_str()), Some(true)),
        "{v}"
    );
    assert!(azurite::blobs(&container).contains(&format!("kasm/prod/{}/verified.json", ids[1])));
    let manifest: Value = serde_json::from_slice(&azurite::get(
        &container,
        &format!("kasm/prod/{}/manifest.json", ids[1]),
    ))
    .unwrap();
    let object = azurite::get(&container, &format!("kasm/prod/{}/dump.gz", ids[1]));
    assert_eq!(
        object.len() as u64,
        manifest["size_bytes"].as_u64().unwrap()
    );
    assert_eq!(&object[..2], [0x1f, 0x8b], "a plain gzip stream");
    assert!(
        manifest["restore"].as_str().unwrap().contains(&format!(
            "az storage blob download --container-name {container}"
        )),
        "{manifest}"
    );

    let r = ok(kasm(&[
        "backups",
        "prune",
        "--json",
        "--from",
        &to,
        "--keep-last",
        "1",
    ]));
    let p = json(&r);
    assert_eq!(p["deleted"], serde_json::json!([ids[0]]), "{p}");
    assert_eq!(p["kept"], serde_json::json!([ids[1]]), "{p}");
    assert_eq!(p["warnings"], serde_json::json!([]), "{p}");
    assert!(
        azurite::blobs(&container)
            .iter()
            .all(|k| !k.contains(&ids[0])),
        "{:?}",
        azurite::blobs(&container)
    );
    let listed = json(&ok(kasm(&["backups", "list", "--json", "--from", &to])));
    assert_eq!(listed.as_array().unwrap().len(), 1);

    // Restore onto the standby from the container.
    let target = with_standby(|c| c.fresh_db("az")).unwrap();
    let target_url = with_standby(|c| c.url(&target));
    let r = ok(kasm(&[
        "restore",
        "--json",
        "--from",
        &to,
        "--target",
        &target_url,
    ]));
    no_secret(&r, DEV_KEY);
    assert_eq!(json(&r)["backup"], ids[1].as_str());
    for table in ["users", "blobs"] {
        let want = digest(|sql| psql(&src, sql), table);
        let got = digest(|sql| standby_sql(&target, sql), table);
        assert_eq!(got, want, "{table}");
    }
}

#[test]
fn an_interrupted_backup_lists_nothing_and_leaves_only_uncommitted_blocks() {
    // Several blocks' worth, so a block is staged long before pg_dump could finish.
    let src = source_db_of(800_000);
    let container = azurite::container();
    let to = format!("az://{container}/p");
    let child = kasm_db(&["backup", "--json", "--db", &src, "--to", &to])
        .envs(azurite::env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let pg_dump run in short slices until a block is staged, and leave it stopped.
    let dump = step_pg_dump_until(child.id(), "a block to be staged", || {
        !azurite::uncommitted(&container).is_empty()
    });
    assert_eq!(
        unsafe { libc::kill(dump, 0) },
        0,
        "pg_dump finished before the interruption"
    );
    // Staged, never committed: nothing is listed under any name.
    assert!(
        azurite::blobs(&container).is_empty(),
        "{:?}",
        azurite::blobs(&container)
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(
        stderr.contains("WARN") && stderr.contains("its staged blocks stay uncommitted"),
        "{stderr}"
    );
    assert!(
        azurite::blobs(&container).is_empty(),
        "{:?}",
        azurite::blobs(&container)
    );
    let uncommitted = azurite::uncommitted(&container);
    assert_eq!(uncommitted.len(), 1, "{uncommitted:?}");
    assert!(uncommitted[0].ends_with("/dump.gz"), "{uncommitted:?}");
    let listed = json(&ok(kasm(&["backups", "list", "--json", "--from", &to])));
    assert_eq!(listed, serde_json::json!([]));
    // A prune has nothing to abort and says nothing about it.
    let p = json(&ok(kasm(&[
        "backups",
        "prune",
        "--json",
        "--from",
        &to,
        "--keep-last",
        "1",
    ])));
    assert_eq!(p["uploads_aborted"], serde_json::json!([]), "{p}");
    assert_eq!(p["warnings"], serde_json::json!([]), "{p}");
}

#[test]
fn a_wrong_key_is_a_clear_failure_that_never_shows_the_key() {
    let url = fresh_db();
    let container = azurite::container();
    let to = format!("az://{container}/p");
    let wrong = base64::engine::general_purpose::STANDARD.encode(b"not the account key, secret!!");
    for args in [
        vec!["backup", "--db", url.as_str(), "--to", to.as_str()],
        vec!["backups", "list", "--json", "--from", to.as_str()],
    ] {
        let r = run(kasm_db(&args).env(
            "AZURE_STORAGE_CONNECTION_STRING",
            azurite::connection_string_with_key(&wrong),
        ));
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        // Azure says AuthenticationFailed, Azurite AuthorizationFailure.
        assert!(
            r.stderr.contains("Azure answered 403 AuthenticationFailed")
                || r.stderr.contains("Azure answered 403 AuthorizationFailure"),
            "{}",
            r.stderr
        );
        assert!(r.stderr.contains("account key"), "{}", r.stderr);
        no_secret(&r, &wrong);
        no_secret(&r, "AccountKey=");
    }
    assert!(azurite::blobs(&container).is_empty());
}

#[test]
fn a_missing_container_or_missing_credentials_say_what_to_do() {
    let url = fresh_db();
    let r = kasm(&["backup", "--db", &url, "--to", "az://no-such-container/x"]);
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(r.stderr.contains("ContainerNotFound"), "{}", r.stderr);
    assert!(r.stderr.contains("create the container"), "{}", r.stderr);
    // A container that does not exist is never "no backups" (issue 26).
    for args in [
        vec![
            "backups",
            "list",
            "--json",
            "--from",
            "az://no-such-container/x",
        ],
        vec![
            "backups",
            "check",
            "--json",
            "--from",
            "az://no-such-container/x",
        ],
        vec![
            "backups",
            "verify",
            "latest",
            "--json",
            "--from",
            "az://no-such-container/x",
        ],
    ] {
        let r = kasm(&args);
        assert_eq!(r.code, 75, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("ContainerNotFound"), "{}", r.stderr);
        assert_eq!(json(&r)["exit_code"], 75, "{}", r.stdout);
    }

    let r = run(kasm_db(&["backups", "list", "--from", "az://kasm/x"])
        .env_remove("AZURE_STORAGE_CONNECTION_STRING")
        .env_remove("AZURE_STORAGE_ACCOUNT"));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("AZURE_STORAGE_CONNECTION_STRING"),
        "{}",
        r.stderr
    );
    // A malformed key is named, never shown.
    let r = run(kasm_db(&["backups", "list", "--from", "az://kasm/x"])
        .env_remove("AZURE_STORAGE_CONNECTION_STRING")
        .env("AZURE_STORAGE_ACCOUNT", "acct")
        .env("AZURE_STORAGE_KEY", "%%not-base64-secret%%"));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("AZURE_STORAGE_KEY"), "{}", r.stderr);
    no_secret(&r, "not-base64-secret");
}

/// An account SAS for the development account (the service checks its signature).
fn account_sas(permissions: &str, key: &str) -> String {
    let (version, expiry) = ("2021-12-02", "2099-01-01T00:00:00Z");
    let to_sign = format!("{DEV_ACCOUNT}\n{permissions}\nb\nsco\n\n{expiry}\n\n\n{version}\n\n");
    let key = base64::engine::general_purpose::STANDARD
        .decode(key)
        .unwrap();
    let sig = kasm_db::archive::storage::azure::request::sign(&key, &to_sign);
    format!(
        "sv={version}&ss=b&srt=sco&sp={permissions}&se={}&sig={}",
        kasm_db::archive::storage::azure::request::encode(expiry, false),
        kasm_db::archive::storage::azure::request::encode(&sig, false)
    )
}

#[test]
fn a_sas_token_in_the_connection_string_works_and_a_bad_one_is_never_shown() {
    let url = source_db_of(1_000);
    let container = azurite::container();
    let to = format!("az://{container}/sas");
    let with_sas = |sas: &str| {
        format!(
            "BlobEndpoint={};SharedAccessSignature={sas}",
            azurite::blob_endpoint()
        )
    };
    let sas = account_sas("rwdlac", DEV_KEY);
    let env = [("AZURE_STORAGE_CONNECTION_STRING", with_sas(&sas))];
    let r = ok(run(kasm_db(&[
        "backup", "--json", "--db", &url, "--to", &to,
    ])
    .envs(env.clone())));
    let id = json(&r)["id"].as_str().unwrap().to_string();
    let sig = sas.rsplit_once("sig=").unwrap().1.to_string();
    no_secret(&r, &sig);
    let listed = json(&ok(run(kasm_db(&[
        "backups", "list", "--json", "--from", &to,
    ])
    .envs(env))));
    assert_eq!(listed[0]["id"], id.as_str());

    // Signed with another key: refused, and neither the SAS nor its signature is printed.
    let other = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
    let bad = account_sas("rwdlac", &other);
    let r = run(kasm_db(&["backups", "list", "--json", "--from", &to])
        .env("AZURE_STORAGE_CONNECTION_STRING", with_sas(&bad)));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("403"), "{}", r.stderr);
    assert!(r.stderr.contains("SAS token"), "{}", r.stderr);
    no_secret(&r, bad.rsplit_once("sig=").unwrap().1);
    no_secret(&r, "sig=");
}

#[test]
fn a_backup_is_copied_into_a_container_and_verifies_there() {
    let src = source_db_of(1_000);
    let dir = tempfile::tempdir().unwrap();
    let from = dir.path().join("b");
    let from = from.to_str().unwrap();
    let r = ok(kasm(&["backup", "--json", "--db", &src, "--to", from]));
    let id = json(&r)["id"].as_str().unwrap().to_string();
    let container = azurite::container();
    let to = format!("az://{container}/copies");
    ok(kasm(&["backups", "copy", &id, "--from", from, "--to", &to]));
    let blobs = azurite::blobs(&container);
    assert!(
        blobs.contains(&format!("copies/{id}/manifest.json")),
        "{blobs:?}"
    );
    let listed = json(&ok(kasm(&["backups", "list", "--json", "--from", &to])));
    assert_eq!(listed[0]["id"], id.as_str(), "{listed}");
    let v = json(&ok(kasm(&[
        "backups", "verify", &id, "--json", "--from", &to,
    ])));
    assert_eq!(v["ok"], true, "{v}");
}
