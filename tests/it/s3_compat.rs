//! Backups against a second, independent S3 implementation: `s3rver` (Node.js, from npm), which
//! checks SigV4 signatures but implements less than AWS and moto (it answers `NotImplemented` to
//! ListMultipartUploads). Configured as an operator would write it first — the standard AWS
//! variables and `s3.endpoint` by host name, no `force_path_style`, no region — kasm-db backs
//! up (a multipart upload of several parts), lists, verifies (the stored bytes hash to the
//! manifest's SHA-256, so no aws-chunked framing or checksum trailer was stored with them),
//! prunes (the stale-upload clean-up the store lacks is a warning, the prune succeeds), and
//! restores onto a standby cluster. A backup interrupted mid-upload, where the store cannot
//! abort the upload either, fails with a warning about the parts and lists nothing.
//!
//! Google Cloud Storage's configuration shape (HMAC keys as the AWS variables, `s3.endpoint`,
//! `region = "auto"`, path style), read from docs/operations.md, backs up against moto with
//! only the endpoint swapped for the local one; real GCS is never contacted.
//!
//! A store that never answers fails the job under `s3.request_timeout` (the same limit leaves
//! moto's answers alone).

use crate::common::moto;
use crate::common::s3rver;

use crate::common::*;
use serde_json::Value;
use std::process::Stdio;

fn ok(r: Run) -> Run {
    assert_eq!(r.code, 0, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    r
}

/// A Kasm-like source whose compressed dump needs more than one multipart part (8 MiB each):
/// users, and about 20 MB of poorly compressible text.
fn source_db() -> String {
    source_db_of(200_000)
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

fn kasm(args: &[&str]) -> Run {
    run(kasm_db(args).envs(s3rver::env()))
}

#[test]
fn backup_list_verify_prune_and_restore_against_s3rver() {
    let src = source_db();
    let bucket = s3rver::bucket();
    let to = format!("s3://{bucket}/kasm/prod");

    let ids: Vec<String> = (0..2)
        .map(|_| {
            let r = ok(kasm(&["backup", "--json", "--db", &src, "--to", &to]));
            let b = json(&r);
            assert!(
                b["size_bytes"].as_u64().unwrap() > 8 << 20,
                "the dump must take several parts: {b}"
            );
            b["id"].as_str().unwrap().to_string()
        })
        .collect();
    let keys = s3rver::keys(&bucket);
    for id in &ids {
        for f in ["dump.gz", "manifest.json"] {
            assert!(keys.contains(&format!("kasm/prod/{id}/{f}")), "{keys:?}");
        }
    }

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

    // The stored bytes are exactly what was hashed while streaming.
    let v = json(&ok(kasm(&["backups", "verify", "--json", "--from", &to])));
    assert_eq!(
        (v["id"].as_str(), v["ok"].as_bool()),
        (Some(ids[1].as_str()), Some(true))
    );
    assert!(s3rver::keys(&bucket).contains(&format!("kasm/prod/{}/verified.json", ids[1])));
    let manifest: Value = serde_json::from_slice(&s3rver::get(
        &bucket,
        &format!("kasm/prod/{}/manifest.json", ids[1]),
    ))
    .unwrap();
    let object = s3rver::get(&bucket, &format!("kasm/prod/{}/dump.gz", ids[1]));
    assert_eq!(
        object.len() as u64,
        manifest["size_bytes"].as_u64().unwrap()
    );
    assert_eq!(
        &object[..2],
        [0x1f, 0x8b],
        "a plain gzip stream, no chunk framing"
    );

    // The store answers NotImplemented to ListMultipartUploads: a warning, not a failed prune.
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
    let warnings = p["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{p}");
    let w = warnings[0].as_str().unwrap();
    assert!(
        w.contains("ListMultipartUploads") && w.contains("NotImplemented"),
        "{w}"
    );
    assert!(r.stderr.contains("WARN"), "{}", r.stderr);
    assert!(
        s3rver::keys(&bucket).iter().all(|k| !k.contains(&ids[0])),
        "{:?}",
        s3rver::keys(&bucket)
    );
    let listed = json(&ok(kasm(&["backups", "list", "--json", "--from", &to])));
    assert_eq!(listed.as_array().unwrap().len(), 1);
    // Without --json a person reads the warning too.
    let r = ok(kasm(&[
        "backups",
        "prune",
        "--from",
        &to,
        "--keep-last",
        "1",
    ]));
    assert!(r.stdout.contains("warning:"), "{}", r.stdout);

    // Restore onto the standby from the store.
    let target = with_standby(|c| c.fresh_db("s3r")).unwrap();
    let target_url = with_standby(|c| c.url(&target));
    let r = ok(kasm(&[
        "restore",
        "--json",
        "--from",
        &to,
        "--target",
        &target_url,
    ]));
    let restored = json(&r);
    assert_eq!(restored["backup"], ids[1].as_str(), "{restored}");
    for (table, rows) in [("users", "1000"), ("blobs", "200000")] {
        let digest = format!(
            "SELECT count(*) || ':' || md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {table} t"
        );
        let want = psql(&src, &digest);
        let got = with_standby(|c| c.psql(&target, &digest)).unwrap();
        assert_eq!(got, want, "{table}");
        assert!(got.starts_with(&format!("{rows}:")), "{got}");
    }
    let secret = with_standby(|c| c.password.expose().to_string());
    assert!(!r.stdout.contains(&secret) && !r.stderr.contains(&secret));
    assert!(!r.stderr.contains("S3RVER"), "a credential in the log");
}

#[test]
fn a_missing_bucket_is_a_clear_failure_not_a_warning() {
    // Only optional calls are forgiven: a bucket that is not there fails the command, as a
    // target that does not exist (exit 75).
    let url = fresh_db();
    let r = kasm(&["backup", "--db", &url, "--to", "s3://no-such-bucket-kasm/x"]);
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(r.stderr.contains("NoSuchBucket"), "{}", r.stderr);
    let r = kasm(&[
        "backups",
        "prune",
        "--from",
        "s3://no-such-bucket-kasm/x",
        "--keep-last",
        "1",
    ]);
    assert_eq!(r.code, 75, "{}", r.stderr);
    assert!(r.stderr.contains("no-such-bucket-kasm"), "{}", r.stderr);
    let r = kasm(&["backups", "list", "--from", "s3://no-such-bucket-kasm/x"]);
    assert_eq!(r.code, 75, "{}", r.stderr);
}

#[test]
fn an_interrupted_backup_lists_nothing_where_the_store_cannot_abort_its_upload() {
    // Several parts' worth, so the first part is on the store long before pg_dump could finish
    // in one of the short slices below (with one part's worth, a busy machine let the whole
    // backup complete before the SIGTERM).
    let src = source_db_of(800_000);
    let bucket = s3rver::bucket();
    let to = format!("s3://{bucket}/p");
    let child = kasm_db(&["backup", "--json", "--db", &src, "--to", &to])
        .envs(s3rver::env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let pg_dump run in short slices until a part is on the store, and leave it stopped: the
    // backup is then part way for sure.
    let dump = step_pg_dump_until(child.id(), "a part to be uploaded", || {
        s3rver::parts_on_disk(&bucket) > 0
    });
    // SAFETY: pg_dump is stopped, so it cannot have finished: the backup is part way.
    assert_eq!(
        unsafe { libc::kill(dump, 0) },
        0,
        "pg_dump finished before the interruption"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    // s3rver answers MethodNotAllowed to AbortMultipartUpload: said plainly, as a warning.
    assert!(
        stderr.contains("cannot abort multipart uploads"),
        "{stderr}"
    );
    assert!(!stderr.contains("ERROR"), "{stderr}");
    assert!(
        s3rver::keys(&bucket).is_empty(),
        "{:?}",
        s3rver::keys(&bucket)
    );
    let listed = json(&ok(kasm(&["backups", "list", "--json", "--from", &to])));
    assert_eq!(listed, serde_json::json!([]));
}

/// The `[backup]`/`[s3]` TOML block of docs/operations.md's "Google Cloud Storage" section.
fn documented_gcs_config() -> String {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"),
    )
    .unwrap();
    let section = doc
        .split("\n## Google Cloud Storage\n")
        .nth(1)
        .expect("the GCS section");
    let block = section
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a toml block in the GCS section");
    block.to_string()
}

#[test]
fn the_documented_google_cloud_storage_configuration_backs_up_through_the_s3_api() {
    let documented = documented_gcs_config();
    let parsed: toml::Table = toml::from_str(&documented).unwrap();
    assert_eq!(
        parsed["s3"]["endpoint"].as_str(),
        Some("https://storage.googleapis.com")
    );
    assert_eq!(parsed["s3"]["region"].as_str(), Some("auto"));
    assert_eq!(parsed["s3"]["force_path_style"].as_bool(), Some(true));
    let to = parsed["backup"]["to"].as_str().unwrap().to_string();
    let bucket = to
        .strip_prefix("s3://")
        .and_then(|r| r.split('/').next())
        .unwrap()
        .to_string();
    moto::block_on(moto::client().create_bucket().bucket(&bucket).send()).expect("bucket");

    // The same file, the endpoint swapped for moto's.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kasm-db.toml");
    std::fs::write(
        &config,
        documented.replace("https://storage.googleapis.com", &moto::endpoint()),
    )
    .unwrap();
    // The shape of a GCS HMAC key: a 61-character access id starting GOOG1, a 40-character secret.
    let access_id = format!("GOOG1E{}", "K".repeat(55));
    let secret = "bGNzLWhtYWMtc2VjcmV0LWZvci10ZXN0cy0wMTIz";
    let gcs = |args: &[&str]| {
        let mut cmd = kasm_db(args);
        cmd.env("KASM_DB_CONFIG", &config)
            .env("AWS_ACCESS_KEY_ID", &access_id)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .env_remove("AWS_ENDPOINT_URL");
        run(cmd)
    };
    let src = source_db_of(1_000);
    let r = ok(gcs(&["backup", "--json", "--db", &src]));
    let id = json(&r)["id"].as_str().unwrap().to_string();
    let listed = json(&ok(gcs(&["backups", "list", "--json"])));
    assert_eq!(listed[0]["id"], id.as_str(), "{listed}");
    assert_eq!(listed[0]["object"], format!("{to}/{id}/dump.gz"));
    let v = json(&ok(gcs(&["backups", "verify", "--json"])));
    assert_eq!(v["ok"], true, "{v}");
    let keys = moto::keys(&bucket);
    assert!(
        keys.contains(&format!("kasm-db/{id}/manifest.json")),
        "{keys:?}"
    );
    assert!(!r.stdout.contains(secret) && !r.stderr.contains(secret));
}

/// A store that takes every request and answers none (wedged behind a load balancer, a host
/// whose disk hung): `s3.request_timeout` cuts each attempt, and the job fails with exit 75
/// instead of holding its lock (and the next night's run) for ever. The same short limit
/// against a store that answers (moto) changes nothing.
#[test]
fn a_store_that_never_answers_fails_the_job_instead_of_holding_it() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in silent.incoming().flatten() {
            // Read every request, answer nothing, keep the connection open.
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut buf = [0u8; 65536];
                while matches!(std::io::Read::read(&mut conn, &mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    let src = source_db_of(1000);
    for args in [
        vec!["backups", "list", "--from", "s3://wedged/x"],
        vec!["backup", "--db", &src, "--to", "s3://wedged/x"],
    ] {
        let mut cmd = kasm_db(&args);
        cmd.envs(moto::env())
            .env("KASM_DB_S3_ENDPOINT", format!("http://{addr}"))
            .env("KASM_DB_S3_REQUEST_TIMEOUT", "1s")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        // A guard for the suite, not a speed check: without the limit this never ends.
        wait_until(
            std::time::Duration::from_secs(120),
            format!("`kasm-db {}` against a silent store to give up", args[0]),
            || child.try_wait().unwrap().is_some(),
        );
        let r = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(75), "{args:?}: {stderr}");
        assert!(
            stderr.to_lowercase().contains("timeout"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("AWS_SECRET") && !stderr.contains("test:test"));
    }
    // A store that answers, under the same limit: as before.
    let bucket = moto::bucket();
    let to = format!("s3://{bucket}/k");
    let r = run(kasm_db(&["backup", "--db", &src, "--to", &to])
        .envs(moto::env())
        .env("KASM_DB_S3_REQUEST_TIMEOUT", "1s"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(kasm_db(&["backups", "list", "--json", "--from", &to])
        .envs(moto::env())
        .env("KASM_DB_S3_REQUEST_TIMEOUT", "1s"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&r).as_array().map(Vec::len), Some(1), "{}", r.stdout);
}
