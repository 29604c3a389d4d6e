//! The deployment files: systemd units (parsed and checked key by key, then
//! `systemd-analyze verify` when the machine has it), the Kubernetes CronJob, the Dockerfile,
//! the compose file (parsed by python3's yaml module) and the config file it mounts.
//!
//! These tests never start a container or a unit: Docker and systemd as PID 1 are not
//! available here; they check what can be checked without them, and fail loudly when a tool
//! they rely on (python3 with PyYAML) is missing.

use kasm_db::config::Config;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The PostgreSQL majors whose client tools the image installs (`ARG PG_MAJORS="..."`).
fn image_pg_majors() -> Vec<u32> {
    let text = std::fs::read_to_string(root().join("docker/Dockerfile")).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("ARG PG_MAJORS="))
        .expect("ARG PG_MAJORS in the Dockerfile");
    line.trim_matches('"')
        .split_whitespace()
        .map(|m| m.parse().unwrap())
        .collect()
}

/// A unit file as (section, key, value) in file order; continuation lines joined.
fn parse_unit(path: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    let mut section = String::new();
    let mut pending = String::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with(';'))
        {
            continue;
        }
        if let Some(cont) = line.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        let full = format!("{pending}{line}");
        pending.clear();
        if full.starts_with('[') {
            assert!(
                full.ends_with(']'),
                "{}:{}: bad section",
                path.display(),
                n + 1
            );
            section = full[1..full.len() - 1].to_string();
            continue;
        }
        let (k, v) = full
            .split_once('=')
            .unwrap_or_else(|| panic!("{}:{}: not key=value: {raw}", path.display(), n + 1));
        assert!(
            !section.is_empty(),
            "{}: key before any section",
            path.display()
        );
        out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
    }
    out
}

fn values<'a>(unit: &'a [(String, String, String)], section: &str, key: &str) -> Vec<&'a str> {
    unit.iter()
        .filter(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v.as_str())
        .collect()
}

fn one<'a>(unit: &'a [(String, String, String)], section: &str, key: &str) -> &'a str {
    let v = values(unit, section, key);
    assert_eq!(
        v.len(),
        1,
        "[{section}] {key}: expected exactly one, got {v:?}"
    );
    v[0]
}

fn systemd_dir() -> PathBuf {
    root().join("deploy/systemd")
}

const SERVICES: [&str; 3] = [
    "kasm-db-serve.service",
    "kasm-db-backup.service",
    "kasm-db-vacuum.service",
];
const TIMERS: [&str; 2] = ["kasm-db-backup.timer", "kasm-db-vacuum.timer"];

/// Text that must never be on a command line or in a unit: secrets go through
/// LoadCredential= or EnvironmentFile=.
const SECRET_MARKERS: [&str; 8] = [
    "PGPASSWORD",
    "AWS_SECRET",
    "AWS_ACCESS",
    "TOKEN",
    "password",
    "postgres://",
    "postgresql://",
    "--db",
];

#[test]
fn services_are_hardened_and_take_secrets_out_of_band() {
    for name in SERVICES {
        let unit = parse_unit(&systemd_dir().join(name));
        let svc = |k: &str| one(&unit, "Service", k);
        let exec = svc("ExecStart");
        let sub = name
            .trim_start_matches("kasm-db-")
            .trim_end_matches(".service");
        assert_eq!(exec, format!("/usr/local/bin/kasm-db {sub}"), "{name}");
        // A dedicated user (see kasm-db.sysusers.conf) or DynamicUser.
        assert!(
            values(&unit, "Service", "DynamicUser") == ["yes"]
                || values(&unit, "Service", "User") == ["kasm-db"],
            "{name}: needs DynamicUser=yes or User=kasm-db"
        );
        for (key, want) in [
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("PrivateDevices", "yes"),
            ("ProtectKernelTunables", "yes"),
            ("ProtectKernelModules", "yes"),
            ("ProtectControlGroups", "yes"),
            ("RestrictSUIDSGID", "yes"),
            ("LockPersonality", "yes"),
            ("StateDirectory", "kasm-db"),
            ("ReadWritePaths", "/var/lib/kasm-db"),
            ("CapabilityBoundingSet", ""),
            ("UMask", "0077"),
            ("SystemCallArchitectures", "native"),
            ("SystemCallErrorNumber", "EPERM"),
            ("LoadCredential", "kasm-db.toml:/etc/kasm-db/kasm-db.toml"),
            ("Environment", "KASM_DB_CONFIG=%d/kasm-db.toml"),
            ("EnvironmentFile", "-/etc/kasm-db/kasm-db.env"),
        ] {
            assert_eq!(svc(key), want, "{name}: {key}");
        }
        assert!(
            values(&unit, "Service", "SystemCallFilter").contains(&"@system-service"),
            "{name}: SystemCallFilter=@system-service"
        );
        // Exit 2 (usage/config) is never restarted; oneshots restart only on 75.
        let prevent = svc("RestartPreventExitStatus");
        assert!(prevent.split_whitespace().any(|c| c == "2"), "{name}");
        if sub != "serve" {
            assert_eq!(svc("Type"), "oneshot", "{name}");
            assert!(prevent.split_whitespace().any(|c| c == "1"), "{name}");
        } else {
            assert_eq!(one(&unit, "Install", "WantedBy"), "multi-user.target");
        }
        for (section, key, value) in &unit {
            let line = format!("{key}={value}");
            if key.starts_with("Exec") || key == "Environment" {
                for marker in SECRET_MARKERS {
                    assert!(
                        !line.contains(marker),
                        "{name} [{section}]: {line} carries a secret-like {marker:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn timers_fire_daily_and_monthly_and_catch_up() {
    for (name, calendar, service) in [
        (
            "kasm-db-backup.timer",
            "*-*-* 03:00:00 UTC",
            "kasm-db-backup.service",
        ),
        (
            "kasm-db-vacuum.timer",
            "*-*-01 04:00:00 UTC",
            "kasm-db-vacuum.service",
        ),
    ] {
        let unit = parse_unit(&systemd_dir().join(name));
        assert_eq!(one(&unit, "Timer", "OnCalendar"), calendar, "{name}");
        assert_eq!(one(&unit, "Timer", "Persistent"), "yes", "{name}");
        assert_eq!(one(&unit, "Timer", "Unit"), service, "{name}");
        assert_eq!(one(&unit, "Install", "WantedBy"), "timers.target", "{name}");
    }
    // When systemd's own calendar parser is here, it must agree on the spacing of the runs.
    if let Some(next) = calendar_elapses("*-*-* 03:00:00 UTC") {
        for w in next.windows(2) {
            assert_eq!((w[1] - w[0]).num_hours(), 24, "daily: {next:?}");
        }
    }
    if let Some(next) = calendar_elapses("*-*-01 04:00:00 UTC") {
        for w in next.windows(2) {
            let days = (w[1] - w[0]).num_days();
            assert!((28..=31).contains(&days), "monthly: {next:?}");
            assert_eq!(chrono::Datelike::day(&w[1]), 1);
        }
    }
}

/// The next three elapses of a calendar expression per `systemd-analyze calendar`, or None
/// when the tool is not installed.
fn calendar_elapses(expr: &str) -> Option<Vec<chrono::DateTime<chrono::Utc>>> {
    let out = Command::new("systemd-analyze")
        .args(["calendar", "--iterations=3", expr])
        .env("TZ", "UTC")
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let times: Vec<_> = text
        .lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once(':')?;
            let l = l.trim_start();
            if !(l.starts_with("Next elapse") || l.starts_with("Iter.")) {
                return None;
            }
            // "Tue 2026-12-01 04:00:00 UTC"
            let parts: Vec<&str> = rest.split_whitespace().collect();
            let s = format!("{} {}", parts.get(1)?, parts.get(2)?);
            chrono::NaiveDateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S")
                .ok()
                .map(|t| t.and_utc())
        })
        .collect();
    assert_eq!(times.len(), 3, "{text}");
    Some(times)
}

#[test]
fn systemd_analyze_verify_accepts_the_units() {
    let probe = Command::new("systemd-analyze").arg("--version").output();
    if probe.is_err() {
        eprintln!("systemd-analyze is not installed: verify skipped (the key checks above ran)");
        return;
    }
    // verify insists that ExecStart= binaries exist: point them at the built binary.
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_kasm-db");
    let mut files = Vec::new();
    for name in SERVICES.iter().chain(TIMERS.iter()) {
        let text = std::fs::read_to_string(systemd_dir().join(name)).unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text.replace("/usr/local/bin/kasm-db", bin)).unwrap();
        files.push(path);
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&files)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // verify exits 0 on unknown keys and only warns: any diagnostic is a failure here.
    assert!(
        out.status.success() && stderr.trim().is_empty() && stdout.trim().is_empty(),
        "systemd-analyze verify:\n{stdout}{stderr}"
    );
}

#[test]
fn sysusers_snippet_creates_the_service_user() {
    let text = std::fs::read_to_string(systemd_dir().join("kasm-db.sysusers.conf")).unwrap();
    let line = text
        .lines()
        .find(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .expect("a sysusers line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&fields[..3], ["u", "kasm-db", "-"], "{line}");
}

/// A YAML file (all its documents) as JSON, via python3's yaml module (PyYAML, installed by
/// scripts/setup). Fails, rather than skips, when it is missing.
fn yaml_documents(path: &Path) -> Vec<serde_json::Value> {
    let script = "import json,sys,yaml\n\
                  docs=list(yaml.safe_load_all(open(sys.argv[1])))\n\
                  print(json.dumps(docs))";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .expect("python3 is needed to parse YAML (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "{} does not parse as YAML (or PyYAML is missing: run scripts/setup): {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `repo:tag` with a pinned tag (no `latest`, no bare repository).
fn assert_pinned(image: &str, allowed_repos: &[&str]) {
    let (repo, tag) = image
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("image {image} has no tag"));
    assert!(allowed_repos.contains(&repo), "unexpected image {image}");
    assert!(
        !tag.is_empty() && tag != "latest",
        "image {image} is not pinned"
    );
}

#[test]
fn compose_file_parses_and_names_real_pinned_images() {
    // Variables the operator exports for compose must not be named KASM_DB_*: exported in the
    // same shell, kasm-db would read them as config keys and stop with exit 2.
    let raw = std::fs::read_to_string(root().join("docker/compose.yaml")).unwrap();
    assert!(
        !raw.contains("${KASM_DB_"),
        "compose interpolates a KASM_DB_* variable"
    );
    let docs = yaml_documents(&root().join("docker/compose.yaml"));
    assert_eq!(docs.len(), 1);
    let services = docs[0]["services"].as_object().expect("services mapping");
    let image = |s: &str| {
        services[s]["image"]
            .as_str()
            .unwrap_or_else(|| panic!("{s}: image"))
            .to_string()
    };
    // The images of the contract's pieces, from Docker Hub, pinned.
    let pg = image("postgres");
    assert_pinned(&pg, &["postgres"]);
    let major: u32 = pg
        .split(':')
        .nth(1)
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        image_pg_majors().contains(&major),
        "{pg}: the image has no client tools of its major"
    );
    let minio = image("minio");
    assert_pinned(&minio, &["minio/minio"]);
    assert!(minio.contains(":RELEASE."), "{minio}");
    let mc = image("minio-init");
    assert_pinned(&mc, &["minio/mc"]);
    assert!(mc.contains(":RELEASE."), "{mc}");
    // The bucket the config backs up to is the one minio-init creates.
    let config = Config::load(Some(&root().join("docker/kasm-db.toml")), &BTreeMap::new()).unwrap();
    let to = config.backup.to.clone().unwrap();
    let bucket = to.strip_prefix("s3://").unwrap().split('/').next().unwrap();
    let mb = services["minio-init"]["command"].as_array().unwrap();
    assert!(
        mb.iter()
            .any(|a| a.as_str() == Some(&format!("local/{bucket}"))),
        "minio-init must create bucket {bucket}: {mb:?}"
    );

    // The kasm-db services: one built image, serve with a healthcheck, one-shot backup.
    let built = services
        .iter()
        .filter(|(_, s)| s.get("build").is_some())
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>();
    assert_eq!(built, ["migrate"], "the image is built by one service");
    assert_eq!(
        services["migrate"]["build"]["dockerfile"].as_str(),
        Some("docker/Dockerfile")
    );
    for (svc, cmd) in [
        ("migrate", "migrate"),
        ("kasm-db", "serve"),
        ("backup", "backup"),
    ] {
        let s = &services[svc];
        assert_eq!(image(svc), "kasm-db:local");
        assert_eq!(s["command"][0].as_str(), Some(cmd), "{svc}");
        let env = s["environment"].as_object().unwrap();
        assert_eq!(env["KASM_DB_CONFIG"], "/etc/kasm-db/kasm-db.toml", "{svc}");
        assert!(env.contains_key("PGPASSWORD"), "{svc}");
        assert!(
            s["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v == "./kasm-db.toml:/etc/kasm-db/kasm-db.toml:ro"),
            "{svc}"
        );
        // Every KASM_DB_* variable must be one kasm-db accepts (an unknown one is exit 2).
        let vars: BTreeMap<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("KASM_DB_") && *k != "KASM_DB_CONFIG")
            .map(|(k, _)| (k.clone(), "x".to_string()))
            .collect();
        Config::load(None, &vars).unwrap_or_else(|e| panic!("{svc}: {e}"));
    }
    assert_eq!(services["backup"]["restart"], "no");
    assert_eq!(services["backup"]["healthcheck"]["disable"], true);
    assert!(
        services["kasm-db"].get("healthcheck").is_none(),
        "serve keeps the image's HEALTHCHECK"
    );
    assert_eq!(services["kasm-db"]["ports"][0], "127.0.0.1:8514:8514");
    for svc in ["postgres", "minio"] {
        assert!(services[svc]["healthcheck"]["test"].is_array(), "{svc}");
    }
}

#[test]
fn docker_config_is_a_valid_kasm_db_config_without_secrets() {
    let path = root().join("docker/kasm-db.toml");
    let config = Config::load(Some(&path), &BTreeMap::new()).unwrap();
    assert_eq!(config.server.listen, "0.0.0.0:8514");
    assert!(
        config.server.token.is_none(),
        "the token comes from the environment"
    );
    let url = config.database.url.as_ref().unwrap().expose();
    assert!(
        url.starts_with("postgres://kasmapp@postgres:5432/"),
        "{url}"
    );
    assert_eq!(config.s3.endpoint.as_deref(), Some("http://minio:9000"));
    assert_eq!(config.s3.force_path_style, Some(true));
    assert_eq!(config.sizing.sessions, Some(200));
}

#[test]
fn dockerfile_is_multi_stage_non_root_with_a_healthcheck() {
    let text = std::fs::read_to_string(root().join("docker/Dockerfile")).unwrap();
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert!(
        froms[0].starts_with("FROM rust:1-bookworm AS build"),
        "{}",
        froms[0]
    );
    assert!(
        froms[1].starts_with("FROM debian:bookworm-slim"),
        "{}",
        froms[1]
    );
    assert_eq!(image_pg_majors(), [15, 16, 17, 18]);
    assert!(text.contains("postgresql-client-${m}"));
    assert!(text.contains("/usr/lib/postgresql/${m}/bin/pg_dump"));
    assert!(text.contains("COPY --from=build /usr/local/bin/kasm-db /usr/local/bin/kasm-db"));
    let user = text.lines().rfind(|l| l.starts_with("USER ")).unwrap();
    assert!(!user.contains("root") && !user.contains(" 0"), "{user}");
    assert!(text.contains("ENTRYPOINT [\"kasm-db\"]"));
    assert!(text.contains("HEALTHCHECK "));
    assert!(text.contains("/api/__healthcheck"));
    // Environment variables named KASM_DB_* are config keys; the image must set none that
    // kasm-db would reject.
    for line in text.lines().filter(|l| l.starts_with("ENV ")) {
        assert!(!line.contains("KASM_DB_"), "{line}");
    }
    // Every file the build copies exists in the repository, and the context lets it in.
    let ignore = std::fs::read_to_string(root().join("docker/Dockerfile.dockerignore")).unwrap();
    for line in text
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            assert!(root().join(src).exists(), "{line}: {src} missing");
            assert!(
                ignore
                    .lines()
                    .any(|l| l.trim_start_matches('!').starts_with(src)),
                "{src} is not let into the build context"
            );
        }
    }
}

#[test]
fn kubernetes_cronjob_takes_secrets_from_a_secret() {
    let docs = yaml_documents(&root().join("deploy/k8s/backup-cronjob.yaml"));
    let cron = docs
        .iter()
        .find(|d| d["kind"] == "CronJob")
        .expect("a CronJob");
    assert_eq!(cron["apiVersion"], "batch/v1");
    assert_eq!(cron["spec"]["schedule"], "0 3 * * *");
    assert_eq!(cron["spec"]["concurrencyPolicy"], "Forbid");
    let pod = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    assert!(c["command"].to_string().contains("kasm-db backup"));
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    let env = c["env"].as_array().unwrap();
    for secret in ["PGPASSWORD", "AWS_SECRET_ACCESS_KEY"] {
        let e = env
            .iter()
            .find(|e| e["name"] == secret)
            .unwrap_or_else(|| panic!("{secret} missing"));
        assert!(e.get("value").is_none(), "{secret} must not be inline");
        assert!(
            e["valueFrom"]["secretKeyRef"]["name"].is_string(),
            "{secret}"
        );
    }
    // The ConfigMap holds no secret and only keys kasm-db accepts.
    let cm = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    let data = cm["data"].as_object().unwrap();
    let mut vars = BTreeMap::new();
    for (k, v) in data {
        let v = v.as_str().unwrap();
        if k == "KASM_DB_URL" {
            let target = v.split("://").nth(1).unwrap();
            let userinfo = target.split('@').next().unwrap();
            assert!(!userinfo.contains(':'), "password in {k}");
        } else {
            vars.insert(k.clone(), v.to_string());
        }
    }
    Config::load(None, &vars).unwrap();
    for k in data.keys() {
        assert!(
            !k.contains("PASSWORD") && !k.contains("SECRET") && !k.contains("TOKEN"),
            "{k}"
        );
    }
}
