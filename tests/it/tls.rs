//! TLS to PostgreSQL per libpq's sslmode, against a real server with a self-signed certificate.

use crate::common::*;
use kasm_db::pgtemp::Cluster;
use std::process::Command;

/// A cluster serving TLS with a certificate for 127.0.0.1 from a fresh CA; returns the CA's path.
fn tls_cluster() -> (Cluster, std::path::PathBuf, tempfile::TempDir) {
    let mut c = Cluster::start(&std::env::vars().collect()).unwrap();
    let certs = tempfile::tempdir().unwrap();
    let crt = certs.path().join("server.crt");
    let key = certs.path().join("server.key");
    let ca_key = certs.path().join("ca.key");
    let ca = certs.path().join("ca.crt");
    let csr = certs.path().join("server.csr");
    let ext = certs.path().join("ext.cnf");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let p = |x: &std::path::Path| x.to_str().unwrap().to_string();
    let steps: Vec<Vec<String>> = vec![
        vec![
            "req".into(),
            "-x509".into(),
            "-newkey".into(),
            "rsa:2048".into(),
            "-nodes".into(),
            "-days".into(),
            "1".into(),
            "-subj".into(),
            "/CN=kasm-db test CA".into(),
            "-keyout".into(),
            p(&ca_key),
            "-out".into(),
            p(&ca),
        ],
        vec![
            "req".into(),
            "-newkey".into(),
            "rsa:2048".into(),
            "-nodes".into(),
            "-subj".into(),
            "/CN=127.0.0.1".into(),
            "-keyout".into(),
            p(&key),
            "-out".into(),
            p(&csr),
        ],
        vec![
            "x509".into(),
            "-req".into(),
            "-in".into(),
            p(&csr),
            "-CA".into(),
            p(&ca),
            "-CAkey".into(),
            p(&ca_key),
            "-CAcreateserial".into(),
            "-days".into(),
            "1".into(),
            "-extfile".into(),
            p(&ext),
            "-out".into(),
            p(&crt),
        ],
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(&args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    c.stop().unwrap();
    let data = c.dir().join("data");
    std::fs::copy(&crt, data.join("server.crt")).unwrap();
    std::fs::copy(&key, data.join("server.key")).unwrap();
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&data).unwrap());
    for f in ["server.crt", "server.key"] {
        std::os::unix::fs::chown(data.join(f), Some(owner), None).unwrap();
        std::fs::set_permissions(
            data.join(f),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
    }
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))
        .unwrap();
    std::io::Write::write_all(
        &mut conf,
        b"ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
    )
    .unwrap();
    // TCP connections must be TLS: a connection that succeeds proves encryption.
    let hba = std::fs::read_to_string(data.join("pg_hba.conf")).unwrap();
    let hba: String = hba.lines().map(|l| if l.starts_with("host ") { l.replacen("host ", "hostssl ", 1) } else { l.to_string() } + "\n").collect();
    std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
    c.restart().unwrap();
    (c, ca, certs)
}

#[test]
fn sslmodes_behave_like_libpq() {
    let (c, crt, _certs) = tls_cluster();
    let db = c.fresh_db("tls").unwrap();
    let url = c.url(&db);
    // require: encrypted, certificate not verified.
    let r = run(kasm_db(&[
        "migrate",
        "--db",
        &format!("{url}?sslmode=require"),
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    // verify-full against the right root: works; the connection was encrypted.
    let full = format!("{url}?sslmode=verify-full&sslrootcert={}", crt.display());
    let r = run(kasm_db(&["migrate", "--db", &full]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    // PGSSLMODE from the environment is honoured too.
    let r = run(kasm_db(&["migrate", "--db", &url])
        .env("PGSSLMODE", "verify-ca")
        .env("PGSSLROOTCERT", &crt));
    assert_eq!(r.code, 0, "{}", r.stderr);
    // verify-full against the public roots: refused at once (exit 1, not a retried 75), no password shown.
    let r = run(kasm_db(&[
        "migrate",
        "--db",
        &format!("{url}?sslmode=verify-full"),
    ]));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.to_lowercase().contains("certificate") || r.stderr.contains("TLS"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains(c.password.expose()), "{}", r.stderr);
    // Plain TCP is refused by this server (hostssl only), with the reason.
    let r = run(kasm_db(&[
        "migrate",
        "--db",
        &format!("{url}?sslmode=disable"),
    ]));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("no encryption") || r.stderr.contains("pg_hba.conf"),
        "{}",
        r.stderr
    );
}

#[test]
fn require_against_a_server_without_tls_fails_clearly() {
    let url = fresh_db();
    let r = run(kasm_db(&[
        "migrate",
        "--db",
        &format!("{url}?sslmode=disable"),
    ]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(
        kasm_db(&["migrate", "--db", &format!("{url}?sslmode=require")])
            .env("KASM_DB_DATABASE_CONNECT_ATTEMPTS", "1"),
    );
    assert_ne!(r.code, 0);
    assert!(!r.stderr.contains("pw-"), "{}", r.stderr);
}
