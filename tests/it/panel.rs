//! The logging panel (`/logs`) and the dashboard (`/`) of a real `serve` on a throwaway cluster
//! (issue 24): over plain HTTP, the sign-in (401 for a wrong token, a 303 keeping the filters
//! and an HttpOnly SameSite=Strict cookie for the right one), the security headers on pages,
//! assets and JSON, the dashboard's JSON and its 401/403, and no panel at all without
//! `server.read_token` (404); then `tests/browser/panel.py` drives Debian's Chromium through
//! Playwright over records that include hostile ones (sign-in, search, a record's data and
//! context, a facet click, live tail with pause, the dashboard, screenshots at 1280 px and on a
//! phone in `target/panel-screenshots/`). The browser step fails the test when Chromium or
//! Playwright is missing (scripts/setup installs both); KASM_DB_SKIP_BROWSER=1 skips only it.

use crate::common::serve::{Resp, Server, TOKEN, http};
use crate::common::*;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

const READ_TOKEN: &str = "read-t0ken-for-panel-tests-5b1e";

/// A header of `r` (the harness keeps the head in lower case: values compare in lower case).
fn header(r: &Resp, name: &str) -> Option<String> {
    r.headers.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == name).then(|| v.trim().to_string())
    })
}

fn get_with(s: &Server, path: &str, headers: &[(&str, &str)]) -> Resp {
    http(s.port, "GET", path, headers, b"")
}

/// `POST path` with a form `body`: the status and the head exactly as sent (the session
/// cookie's value is case-sensitive).
fn post_form(s: &Server, path: &str, body: &str) -> (u16, String) {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    let head = out.split("\r\n\r\n").next().unwrap().to_string();
    (head.split(' ').nth(1).unwrap().parse().unwrap(), head)
}

/// The records the panel is tested on: several hosts, applications, users and levels, Kasm
/// metric records, one record to search for, and hostile ones in message, host and application.
fn records() -> String {
    let mut lines = Vec::new();
    let hosts = ["kasm-web-1", "kasm-web-2", "kasm-agent-1"];
    let apps = ["kasm_api", "kasm_manager", "kasm_agent"];
    let users = ["alice@kasm.local", "bob@kasm.local"];
    let levels = ["DEBUG", "INFO", "INFO", "WARNING", "ERROR"];
    for i in 0..40 {
        lines.push(serde_json::json!({
            "levelname": levels[i % levels.len()],
            "message": format!("request {i} handled"),
            "host": hosts[i % hosts.len()],
            "application": apps[i % apps.len()],
            "kasm_user_name": users[i % users.len()],
            "funcName": "handle",
        }));
    }
    for i in 0..5 {
        lines.push(serde_json::json!({
            "levelname": "INFO",
            "message": format!("kasm {i} provisioned"),
            "host": "kasm-web-1",
            "application": "kasm_api",
            "metric_name": "sessions_provisioned",
            "metric_value": 1,
        }));
    }
    lines.push(serde_json::json!({
        "levelname": "ERROR",
        "message": "provision failed: needle-7f3a quota exceeded",
        "host": "kasm-agent-1",
        "application": "kasm_agent",
        "kasm_user_name": "alice@kasm.local",
        "extra_field": "deep-value-42",
    }));
    lines.push(serde_json::json!({
        "levelname": "WARNING",
        "message": "<script>window.pwned=1</script>",
        "host": "<img src=x onerror=\"window.pwned=1\">",
        "application": "kasm_api",
    }));
    lines.push(serde_json::json!({
        "levelname": "ERROR",
        "message": "<img src=x onerror=\"window.pwned=1\">",
        "host": "kasm-agent-1",
        "application": "<b onmouseover=\"window.pwned=1\">app</b>",
    }));
    for i in 0..10 {
        lines.push(serde_json::json!({
            "levelname": "INFO",
            "message": format!("after the needle {i}"),
            "host": "kasm-web-2",
            "application": "kasm_manager",
        }));
    }
    lines.iter().map(|l| format!("{l}\n")).collect::<String>()
}

fn assert_security_headers(r: &Resp, what: &str) {
    let csp = header(r, "content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no CSP: {}", r.headers));
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{what}: {csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert_eq!(
        header(r, "x-content-type-options").as_deref(),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        header(r, "referrer-policy").as_deref(),
        Some("no-referrer"),
        "{what}"
    );
}

#[test]
fn panel_and_dashboard_over_http_and_in_a_browser() {
    let url = fresh_db();

    // Without a read token: no panel, no dashboard, no assets.
    {
        let s = Server::start(&url, &[]);
        for path in ["/", "/logs", "/assets/panel.js", "/api/v1/dashboard"] {
            assert_eq!(s.get(path).status, 404, "{path} without a read token");
        }
        let r = s.post("/logs/signin", &[], b"token=x");
        assert_eq!(r.status, 404);
    }

    let s = Server::start(
        &url,
        &[
            ("KASM_DB_SERVER_READ_TOKEN", READ_TOKEN),
            ("KASM_DB_SIZING_SESSIONS", "200"),
        ],
    );
    let bearer = format!("Bearer {TOKEN}");
    let r = s.post(
        "/api/v1/logs",
        &[("Authorization", &bearer)],
        records().as_bytes(),
    );
    assert_eq!(r.status, 200, "{r:?}");

    // The sign-in form, with the filters kept in its action; headers on every answer.
    let r = s.get("/logs?since=1h&host=kasm-web-2");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("name=\"token\""), "{}", r.body);
    assert!(
        r.body
            .contains("action=\"/logs/signin?since=1h&amp;host=kasm-web-2\""),
        "{}",
        r.body
    );
    assert_security_headers(&r, "GET /logs");
    for path in [
        "/assets/panel.js",
        "/assets/panel.css",
        "/api/__healthcheck",
    ] {
        assert_security_headers(&s.get(path), path);
    }
    let js = s.get("/assets/panel.js");
    assert!(
        header(&js, "content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    let etag = header(&js, "etag").expect("an ETag");
    let again = get_with(&s, "/assets/panel.js", &[("If-None-Match", &etag)]);
    assert_eq!(again.status, 304);
    assert_eq!(s.get("/assets/nothing.js").status, 404);

    // Sign-in: wrong token 401 and the form again; right token 303 + the cookie.
    let (status, head) = post_form(&s, "/logs/signin?since=1h", "token=wrong&next=logs");
    assert_eq!(status, 401);
    assert!(!head.to_ascii_lowercase().contains("set-cookie"), "{head}");
    let r = http(
        s.port,
        "POST",
        "/logs/signin?since=1h",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"token=wrong&next=logs",
    );
    assert!(r.body.contains("name=\"token\"") && r.body.contains("class=\"error\""));
    let (status, head) = post_form(
        &s,
        "/logs/signin?since=1h&host=kasm-web-2",
        &format!("token={READ_TOKEN}&next=logs"),
    );
    assert_eq!(status, 303, "{head}");
    assert!(
        head.contains("\r\nlocation: /logs?since=1h&host=kasm-web-2\r\n"),
        "{head}"
    );
    let set = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .expect("a session cookie")
        .to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    assert!(!head.contains(READ_TOKEN));
    let cookie = set.split(';').next().unwrap().to_string();
    // From the dashboard's sign-in form, back to the dashboard.
    let r = s.get("/");
    assert!(
        r.body.contains("name=\"next\" value=\"dashboard\""),
        "{}",
        r.body
    );
    let (status, head) = post_form(
        &s,
        "/logs/signin",
        &format!("token={READ_TOKEN}&next=dashboard"),
    );
    assert_eq!(status, 303);
    assert!(head.contains("\r\nlocation: /\r\n"), "{head}");

    // Signed in, the page is the panel; it never carries the token.
    let r = get_with(&s, "/logs", &[("Cookie", &cookie)]);
    assert_eq!(r.status, 200);
    assert!(r.body.contains("name=\"q\"") && !r.body.contains(READ_TOKEN));
    let r = get_with(&s, "/", &[("Cookie", &cookie)]);
    assert!(r.body.contains("dashboard.js"), "{}", r.body);

    // The dashboard's JSON: 401 without, 403 with the ingest token, 200 with the read token
    // or the cookie.
    assert_eq!(s.get("/api/v1/dashboard").status, 401);
    assert_eq!(
        get_with(&s, "/api/v1/dashboard", &[("Authorization", &bearer)]).status,
        403
    );
    let read = format!("Bearer {READ_TOKEN}");
    let r = get_with(&s, "/api/v1/dashboard", &[("Authorization", &read)]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_security_headers(&r, "GET /api/v1/dashboard");
    let d: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let volume: u64 = d["volume"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["count"].as_u64().unwrap())
        .sum();
    assert_eq!(volume, 58, "{d}");
    assert_eq!(d["errors_per_host"][0]["host"], "kasm-agent-1", "{d}");
    assert_eq!(d["metrics"][0]["name"], "sessions_provisioned", "{d}");
    assert_eq!(d["metrics"][0]["count"], 5, "{d}");
    assert!(d["size"]["database_bytes"].as_u64().unwrap() > 0, "{d}");
    assert_eq!(d["size"]["tier"]["disk_gb"], 80, "200 sessions: {d}");
    assert!(d["backups"].is_null(), "{d}");
    let r = get_with(&s, "/api/v1/dashboard", &[("Cookie", &cookie)]);
    assert_eq!(r.status, 200);

    // Sign-out removes the cookie.
    let r = s.post("/logs/signout", &[("Cookie", &cookie)], b"");
    assert_eq!(r.status, 303);
    assert!(header(&r, "set-cookie").unwrap().contains("max-age=0"));

    if std::env::var("KASM_DB_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!("KASM_DB_SKIP_BROWSER=1: skipping the Playwright checks of the panel");
        return;
    }
    browser(&s);
}

/// Run tests/browser/panel.py against `s`; fail with its output unless it passed.
fn browser(s: &Server) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = root.join("target").join("panel-screenshots");
    std::fs::create_dir_all(&out).unwrap();
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "Chromium is needed for the panel's browser test: run scripts/setup (installs Debian's \
         `chromium` and Playwright), or set KASM_DB_SKIP_BROWSER=1 to skip this step"
    );
    let probe = Command::new("python3")
        .args(["-c", "import playwright.sync_api"])
        .output()
        .expect("python3");
    assert!(
        probe.status.success(),
        "the Python package playwright is needed: run scripts/setup, or set \
         KASM_DB_SKIP_BROWSER=1 to skip this step ({})",
        String::from_utf8_lossy(&probe.stderr)
    );
    // The tokens go to the script in files, never on its command line.
    let dir = tempfile::tempdir().unwrap();
    let (read, ingest) = (dir.path().join("read"), dir.path().join("ingest"));
    std::fs::write(&read, READ_TOKEN).unwrap();
    std::fs::write(&ingest, TOKEN).unwrap();
    let run = Command::new("python3")
        .arg(root.join("tests/browser/panel.py"))
        .arg("--base")
        .arg(format!("http://127.0.0.1:{}", s.port))
        .arg("--out")
        .arg(&out)
        .arg("--token-file")
        .arg(&read)
        .arg("--ingest-token-file")
        .arg(&ingest)
        .stdin(Stdio::null())
        .output()
        .expect("run tests/browser/panel.py");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success() && stdout.contains("panel.py: all checks passed"),
        "the browser checks failed ({}):\n{stdout}\n{stderr}\nserve's log:\n{}",
        run.status,
        s.stderr()
    );
    eprintln!("{stdout}");
    for shot in [
        "signin-1280.png",
        "logs-1280.png",
        "record-1280.png",
        "live-1280.png",
        "dashboard-1280.png",
        "logs-phone.png",
        "dashboard-phone.png",
    ] {
        let len = std::fs::metadata(out.join(shot)).map_or(0, |m| m.len());
        assert!(len > 1000, "screenshot {shot} missing or empty");
    }
}
