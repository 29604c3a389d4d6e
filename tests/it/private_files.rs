//! Files that hold data are private whatever the umask. The binary runs with the usual umask
//! 022 (and 077 where the test needs a strict one): backups in a directory (objects,
//! manifests, verification records, the folders kasm-db creates), the SIEM spool with its
//! dead letters and backfill state, `serve`'s spool, and `ingest --rejects` are created 0600
//! in 0700 folders; `backup.file_mode = "0640"` gives backups 0640 files in 0750 folders, also
//! under umask 077; a world-writable backup folder gets a warning.
//!
//! Not here: the backup's temporary `.partial-` file (a unit test in `archive::storage::fs`
//! catches it while the stream is open) and restore's scratch file (made by `tempfile`, 0600).

use crate::common::hec;

use crate::common::*;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const TOKEN: &str = "pf-token-never-shown-0b1c";

/// `cmd` with the child's umask set to `mask`.
fn with_umask(mut cmd: Command, mask: libc::mode_t) -> Command {
    // SAFETY: umask is async-signal-safe and only touches the child before exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(mask);
            Ok(())
        });
    }
    cmd
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Every file and folder under `root` (not `root` itself) with its mode.
fn modes_under(root: &Path) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push((
                p.strip_prefix(root).unwrap().display().to_string(),
                mode(&p),
            ));
        }
    }
    out.sort();
    out
}

fn assert_modes(root: &Path, file: u32, dir: u32) {
    let all = modes_under(root);
    assert!(!all.is_empty());
    for (name, m) in &all {
        let want = if root.join(name).is_dir() { dir } else { file };
        assert_eq!(*m, want, "{name} is {m:04o}, want {want:04o}: {all:?}");
    }
}

fn small_db() -> String {
    let url = fresh_db();
    psql(
        &url,
        "CREATE TABLE users (id int PRIMARY KEY, pw_hash text);
         INSERT INTO users SELECT i, md5(i::text) FROM generate_series(1, 100) i;",
    );
    url
}

fn backup(url: &str, to: &Path, mask: libc::mode_t, env: &[(&str, &str)]) -> Run {
    let mut cmd = kasm_db(&[
        "backup",
        "--json",
        "--db",
        url,
        "--to",
        to.to_str().unwrap(),
    ]);
    cmd.envs(env.iter().copied());
    run(with_umask(cmd, mask))
}

#[test]
fn backups_in_a_directory_are_private_under_umask_022() {
    let url = small_db();
    let base = tempfile::tempdir().unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // Neither folder exists yet: kasm-db creates both.
    let to = base.path().join("nfs/kasm-backups");
    let r = backup(&url, &to, 0o022, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("world-writable"), "{}", r.stderr);
    let id = json(&r)["id"].as_str().unwrap().to_string();
    let mut cmd = kasm_db(&["backups", "verify", "--from", to.to_str().unwrap()]);
    cmd.stdin(Stdio::null());
    let v = run(with_umask(cmd, 0o022));
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert_eq!(mode(&base.path().join("nfs")), 0o700);
    assert_eq!(mode(&to), 0o700);
    for f in ["dump.gz", "manifest.json", "verified.json"] {
        assert_eq!(mode(&to.join(&id).join(f)), 0o600, "{f}");
    }
    assert_modes(&to, 0o600, 0o700);

    // A folder anyone may write to: a warning (anyone could plant a backup there), and the
    // files are private all the same. The folder itself is the operator's: left as it is.
    let open = base.path().join("shared");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let r = backup(&url, &open, 0o022, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("world-writable"), "{}", r.stderr);
    assert_eq!(mode(&open), 0o777);
    assert_modes(&open, 0o600, 0o700);
}

#[test]
fn backup_file_mode_gives_the_group_read_access_whatever_the_umask() {
    let url = small_db();
    let base = tempfile::tempdir().unwrap();
    let to = base.path().join("kasm-backups");
    // umask 077 would make 0600/0700; the configured mode is exact.
    let env = [("KASM_DB_BACKUP_FILE_MODE", "0640")];
    let r = backup(&url, &to, 0o077, &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut cmd = kasm_db(&["backups", "verify", "--from", to.to_str().unwrap()]);
    cmd.envs(env);
    let v = run(with_umask(cmd, 0o077));
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert_eq!(mode(&to), 0o750);
    assert_modes(&to, 0o640, 0o750);
    assert_eq!(
        modes_under(&to).len(),
        5,
        "folder, dump, role passwords (a superuser's backup carries them), manifest, verification"
    );

    // A mode with execute bits is a configuration error that says what is accepted.
    let r = backup(&url, &to, 0o022, &[("KASM_DB_BACKUP_FILE_MODE", "0755")]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("KASM_DB_BACKUP_FILE_MODE"),
        "{}",
        r.stderr
    );
}

/// A database with `n` stored records for `forward` to send.
fn db_with_rows(n: u64) -> String {
    let url = fresh_db();
    let r = run(kasm_db(&["--db", &url, "migrate"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    psql(
        &url,
        &format!(
            "CREATE TABLE logs_logs_all PARTITION OF logs_logs FOR VALUES FROM (MINVALUE) TO (MAXVALUE);
             INSERT INTO logs (log_id, ingest_date, levelname, host, kasm_user_name, message, data)
             SELECT gen_random_uuid(), timestamptz '2026-11-24 00:00:00+00' + g * interval '1 ms',
                    'INFO', 'web1', 'alice', 'event ' || g, jsonb_build_object('seq', g)
               FROM generate_series(1, {n}) g;"
        ),
    );
    url
}

#[test]
fn the_siem_spool_dead_letters_and_rejects_are_private_under_umask_022() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The receiver refuses the token: every record ends in dead-letters.ndjson.
    let hec = rt.block_on(hec::start("the-right-token", false));
    let url = db_with_rows(5);
    let base = tempfile::tempdir().unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let spool = base.path().join("spool");
    let env = [
        ("KASM_DB_SIEM_KIND", "splunk-hec".to_string()),
        ("KASM_DB_SIEM_URL", hec.url.clone()),
        ("KASM_DB_SIEM_TOKEN", TOKEN.to_string()),
        ("KASM_DB_SIEM_SPOOL_DIR", spool.display().to_string()),
        ("KASM_DB_SIEM_REQUEST_TIMEOUT_SECS", "5".to_string()),
    ];
    let mut cmd = kasm_db(&["--db", &url, "--json", "forward"]);
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let r = run(with_umask(cmd, 0o022));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(json(&r)["dead_lettered"], 5, "{}", r.stdout);
    assert_eq!(mode(&spool), 0o700);
    let names: Vec<String> = modes_under(&spool).into_iter().map(|(n, _)| n).collect();
    for want in [
        "dead-letters.ndjson",
        "commit",
        "spool.lock",
        "forward-state.json",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    assert!(names.iter().any(|n| n.starts_with("seg-")), "{names:?}");
    assert_modes(&spool, 0o600, 0o700);
    drop(hec);

    // Rejected lines hold log data too.
    let url = fresh_db();
    assert_eq!(run(kasm_db(&["--db", &url, "migrate"])).code, 0);
    let input = base.path().join("in.ndjson");
    std::fs::write(
        &input,
        "{\"message\":\"ok\"}\nnot json, but someone's data\n",
    )
    .unwrap();
    let rejects = base.path().join("rejects.ndjson");
    let cmd = kasm_db(&[
        "--db",
        &url,
        "ingest",
        input.to_str().unwrap(),
        "--rejects",
        rejects.to_str().unwrap(),
    ]);
    let r = run(with_umask(cmd, 0o022));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        std::fs::read_to_string(&rejects)
            .unwrap()
            .contains("someone's data")
    );
    assert_eq!(mode(&rejects), 0o600);
}

#[test]
fn serves_spool_is_private_under_umask_022() {
    // Nothing listens on the database's port: accepted records go to the spool.
    let db = format!("postgres://kasm:pw@127.0.0.1:{}/kasm_logs", free_port());
    let base = tempfile::tempdir().unwrap();
    let spool = base.path().join("server-spool");
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = kasm_db(&["serve", "--db", &db]);
    cmd.env("KASM_DB_SERVER_LISTEN", "127.0.0.1:0")
        .env("KASM_DB_SERVER_TOKEN", TOKEN)
        .env("KASM_DB_SERVER_SPOOL_DIR", &spool)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap());
    let mut child = with_umask(cmd, 0o022).spawn().unwrap();
    let stderr = || std::fs::read_to_string(log.path()).unwrap_or_default();
    let port = crate::common::serve::wait_bound(&mut child, log.path());
    let body = "{\"levelname\":\"INFO\",\"message\":\"while the database is away\"}\n";
    let answer = post(port, body);
    let _ = child.kill();
    let _ = child.wait();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}\n{}", stderr());
    assert_eq!(mode(&spool), 0o700);
    let files = modes_under(&spool);
    assert!(
        files.iter().any(|(n, _)| n.ends_with(".ndjson")),
        "{files:?}"
    );
    assert_modes(&spool, 0o600, 0o700);
}

fn post(port: u16, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "POST /api/v1/logs HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Authorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}
