//! libpq's two connection files, read and matched the way libpq does (fe-connect.c,
//! `passwordFromFile` and `parseServiceFile`), so that an operator's existing files work
//! unchanged:
//!
//! - the password file (`passfile`, `PGPASSFILE`, else `~/.pgpass`): lines
//!   `hostname:port:database:username:password`, `\` escapes `:` and `\`, a field that is exactly
//!   `*` matches anything, `#` at the start of a line is a comment, the first matching line wins.
//!   A file that is not a regular file, or that the group or others may access, is ignored with
//!   a warning (libpq's rule and wording);
//! - the connection service file (`PGSERVICEFILE`, else `~/.pg_service.conf`; then
//!   `PGSYSCONFDIR/pg_service.conf`, by default Debian's `/etc/postgresql-common`): INI sections
//!   named after services holding `keyword=value` lines. The user's file wins when both define
//!   the service; the first section of that name is used; an unknown keyword is an error.
//!
//! Parsing and matching are pure; only the `load_*` functions touch the filesystem. This module
//! never logs a password, nor returns one in an error or a `Debug` form: warnings and errors
//! name the file and line, never a line's text.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Unix-socket directories that libpq treats as "the default socket directory" when matching
/// `localhost` in the password file: Debian's build (`/var/run/postgresql`) and upstream's
/// (`/tmp`).
const DEFAULT_SOCKET_DIRS: &[&str] = &["/var/run/postgresql", "/tmp"];

/// Where libpq's Debian build looks for the system-wide `pg_service.conf` without
/// `PGSYSCONFDIR` (`pg_config --sysconfdir`).
pub const DEFAULT_SYSCONFDIR: &str = "/etc/postgresql-common";

/// Every connection keyword libpq 15-18 knows. A service file naming anything else is an error
/// (as in libpq); a known keyword that kasm-db does not apply is ignored with a warning.
const LIBPQ_KEYWORDS: &[&str] = &[
    "application_name",
    "channel_binding",
    "client_encoding",
    "connect_timeout",
    "dbname",
    "fallback_application_name",
    "gssdelegation",
    "gssencmode",
    "gsslib",
    "host",
    "hostaddr",
    "keepalives",
    "keepalives_count",
    "keepalives_idle",
    "keepalives_interval",
    "krbsrvname",
    "load_balance_hosts",
    "max_protocol_version",
    "min_protocol_version",
    "oauth_client_id",
    "oauth_client_secret",
    "oauth_issuer",
    "oauth_scope",
    "options",
    "passfile",
    "password",
    "port",
    "replication",
    "require_auth",
    "requirepeer",
    "scram_client_key",
    "scram_server_key",
    "service",
    "servicefile",
    "ssl_max_protocol_version",
    "ssl_min_protocol_version",
    "sslcert",
    "sslcertmode",
    "sslcompression",
    "sslcrl",
    "sslcrldir",
    "sslkey",
    "sslkeylogfile",
    "sslmode",
    "sslnegotiation",
    "sslpassword",
    "sslrootcert",
    "sslsni",
    "target_session_attrs",
    "tcp_user_timeout",
    "user",
];

/// A password file's lines, kept as read and matched on demand (a lookup for another database
/// of the same server needs them again). Its `Debug` shows the path only.
#[derive(Clone)]
pub struct PassFile {
    pub path: PathBuf,
    lines: Vec<Vec<u8>>,
}

impl std::fmt::Debug for PassFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PassFile({})", self.path.display())
    }
}

impl PassFile {
    /// Split `text` into lines as libpq reads them (trailing `\n`/`\r` removed).
    pub fn parse(path: impl Into<PathBuf>, text: &[u8]) -> PassFile {
        let lines = text
            .split(|&b| b == b'\n')
            .map(|l| {
                let mut l = l;
                while let [rest @ .., b'\r'] = l {
                    l = rest;
                }
                l.to_vec()
            })
            .filter(|l| !l.is_empty() && l[0] != b'#')
            .collect();
        PassFile {
            path: path.into(),
            lines,
        }
    }

    /// The password of the first line matching the connection, if any (an empty password is
    /// none). `host` is what [`pgpass_host`] makes of the connection's host.
    pub fn lookup(&self, host: &str, port: &str, dbname: &str, user: &str) -> Option<String> {
        for line in &self.lines {
            let rest = [host, port, dbname, user]
                .iter()
                .try_fold(&line[..], |rest, token| match_field(rest, token.as_bytes()));
            if let Some(rest) = rest {
                let password = unescape_password(rest);
                return (!password.is_empty())
                    .then(|| String::from_utf8_lossy(&password).into_owned());
            }
        }
        None
    }
}

/// libpq's `pwdfMatchesString`: whether the field at the start of `line` matches `token`
/// (`*` alone matches anything, `\` escapes the next byte); the rest after the field's `:`.
fn match_field<'a>(line: &'a [u8], token: &[u8]) -> Option<&'a [u8]> {
    if line.starts_with(b"*:") {
        return Some(&line[2..]);
    }
    let (mut i, mut t, mut escaped) = (0, 0, false);
    while i < line.len() {
        if line[i] == b'\\' && !escaped {
            i += 1;
            escaped = true;
        }
        let c = line.get(i).copied();
        if c == Some(b':') && t == token.len() && !escaped {
            return Some(&line[i + 1..]);
        }
        escaped = false;
        if t == token.len() || c != Some(token[t]) {
            return None;
        }
        i += 1;
        t += 1;
    }
    None
}

/// The password field: up to the first unescaped `:`, escapes removed.
fn unescape_password(rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rest.len());
    let mut i = 0;
    while i < rest.len() && rest[i] != b':' {
        if rest[i] == b'\\' && i + 1 < rest.len() {
            i += 1;
        }
        out.push(rest[i]);
        i += 1;
    }
    out
}

/// The host name a password-file line must match for a connection to `host`: `localhost` for
/// no host or the default Unix-socket directory, else the host (or socket directory) as given.
pub fn pgpass_host(host: Option<&str>) -> String {
    match host {
        None | Some("") => "localhost".into(),
        Some(h) if DEFAULT_SOCKET_DIRS.contains(&h.trim_end_matches('/')) => "localhost".into(),
        Some(h) => h.to_string(),
    }
}

/// Read a password file as libpq does: absent or unreadable is silently nothing; not a regular
/// file, or open to the group or others, is ignored with a warning naming the file.
pub fn load_passfile(path: &Path) -> Option<PassFile> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        tracing::warn!(
            "password file \"{}\" is not a plain file; ignored",
            path.display()
        );
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            "password file \"{}\" has group or world access; permissions should be u=rw (0600) \
             or less; ignored",
            path.display()
        );
        return None;
    }
    let text = std::fs::read(path).ok()?;
    Some(PassFile::parse(path, &text))
}

/// The settings of service `name` in one service file's `text`, as libpq reads it: `None` when
/// the file has no such section. Lines are trimmed of surrounding whitespace; `#` starts a
/// comment line; `key=value` with nothing trimmed around `=`; within the section the first
/// occurrence of a key wins; the section ends at the next `[`.
pub fn parse_service(file: &Path, text: &str, name: &str) -> Result<Option<Vec<(String, String)>>> {
    let mut found: Option<Vec<(String, String)>> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[') {
            if found.is_some() {
                break;
            }
            if section
                .strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(']'))
            {
                found = Some(Vec::new());
            }
            continue;
        }
        let Some(entries) = found.as_mut() else {
            continue;
        };
        let at = || format!("service file \"{}\", line {}", file.display(), n + 1);
        let Some((key, value)) = line.split_once('=') else {
            return Err(Error::usage(format!("syntax error in {}", at())));
        };
        if key == "service" {
            return Err(Error::usage(format!(
                "nested service specifications are not supported ({})",
                at()
            )));
        }
        if !LIBPQ_KEYWORDS.contains(&key) {
            return Err(Error::usage(format!(
                "syntax error in {}: {key:?} is not a libpq connection keyword",
                at()
            )));
        }
        if !entries.iter().any(|(k, _)| k == key) {
            entries.push((key.to_string(), value.to_string()));
        }
    }
    Ok(found)
}

/// Where to look for service definitions, from the environment snapshot.
#[derive(Debug, Clone)]
pub struct ServiceFiles {
    /// `PGSERVICEFILE` (must exist when set) or `~/.pg_service.conf` (used when it exists).
    pub user: Option<(PathBuf, bool)>,
    /// `PGSYSCONFDIR/pg_service.conf`, default [`DEFAULT_SYSCONFDIR`].
    pub system: PathBuf,
}

impl ServiceFiles {
    pub fn from_env(env: &BTreeMap<String, String>) -> ServiceFiles {
        let get = |k: &str| env.get(k).filter(|v| !v.is_empty());
        let user = match get("PGSERVICEFILE") {
            Some(f) => Some((PathBuf::from(f), true)),
            None => get("HOME").map(|h| (Path::new(h).join(".pg_service.conf"), false)),
        };
        let sysconf = get("PGSYSCONFDIR").map_or(DEFAULT_SYSCONFDIR, |s| s.as_str());
        ServiceFiles {
            user,
            system: Path::new(sysconf).join("pg_service.conf"),
        }
    }
}

/// The settings of service `name`: the user's file first, then the system file; an error
/// when neither defines it or a file that defines it is malformed.
pub fn load_service(name: &str, files: &ServiceFiles) -> Result<BTreeMap<String, String>> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| {
            Error::usage(format!(
                "service file \"{}\" cannot be read: {e}",
                path.display()
            ))
        })
    };
    let mut candidates = Vec::new();
    if let Some((path, must_exist)) = &files.user {
        if *must_exist || path.exists() {
            candidates.push(path.as_path());
        }
    }
    if files.system.exists() {
        candidates.push(files.system.as_path());
    }
    for path in candidates {
        if let Some(entries) = parse_service(path, &read(path)?, name)? {
            tracing::debug!(service = name, file = %path.display(), "connection service");
            return Ok(entries.into_iter().collect());
        }
    }
    Err(Error::usage(format!(
        "definition of service {name:?} not found (looked in {}{})",
        files
            .user
            .as_ref()
            .map(|(p, _)| format!("\"{}\" and ", p.display()))
            .unwrap_or_default(),
        format_args!("\"{}\"", files.system.display())
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pf(text: &str) -> PassFile {
        PassFile::parse("/p", text.as_bytes())
    }

    #[test]
    fn first_matching_line_wins_with_wildcards() {
        let f = pf("# comment\n\
                    db.example:5432:kasm:kasmapp:first\n\
                    *:5432:*:kasmapp:second\n\
                    *:*:*:*:fallback\n");
        assert_eq!(
            f.lookup("db.example", "5432", "kasm", "kasmapp").as_deref(),
            Some("first")
        );
        assert_eq!(
            f.lookup("other", "5432", "kasm_logs", "kasmapp").as_deref(),
            Some("second")
        );
        assert_eq!(
            f.lookup("other", "6432", "kasm", "kasmapp").as_deref(),
            Some("fallback")
        );
    }

    #[test]
    fn escapes_and_partial_wildcards() {
        // `\:` and `\\` in any field; a `*` that is not the whole field is literal.
        let f = pf("h\\:x:1:d:u:p\\:a\\\\ss:ignored\nh*:1:d:u:star\n*:1:d:u\\\\v:bs\n");
        assert_eq!(f.lookup("h:x", "1", "d", "u").as_deref(), Some("p:a\\ss"));
        assert_eq!(f.lookup("hx", "1", "d", "u"), None);
        assert_eq!(f.lookup("h*", "1", "d", "u").as_deref(), Some("star"));
        assert_eq!(f.lookup("hy", "1", "d", "u"), None);
        assert_eq!(f.lookup("q", "1", "d", "u\\v").as_deref(), Some("bs"));
    }

    #[test]
    fn short_lines_crlf_and_empty_passwords() {
        let f = pf("h:1:d:u\r\n#h:1:d:v:commented\nh:1:d:w:\nh:1:d:v:crlf\r\n");
        // A line without a password field matches nothing; CR is stripped; a comment is none.
        assert_eq!(f.lookup("h", "1", "d", "u"), None);
        assert_eq!(f.lookup("h", "1", "d", "v").as_deref(), Some("crlf"));
        assert_eq!(f.lookup("h", "1", "d", "w"), None);
        // Prefixes are not matches.
        assert_eq!(f.lookup("h", "12", "d", "v"), None);
        assert_eq!(f.lookup("", "1", "d", "v"), None);
        assert!(!format!("{f:?}").contains("crlf"));
    }

    #[test]
    fn localhost_stands_for_sockets_in_the_default_directory() {
        assert_eq!(pgpass_host(None), "localhost");
        assert_eq!(pgpass_host(Some("")), "localhost");
        assert_eq!(pgpass_host(Some("/var/run/postgresql")), "localhost");
        assert_eq!(pgpass_host(Some("/tmp")), "localhost");
        assert_eq!(pgpass_host(Some("/srv/pg")), "/srv/pg");
        assert_eq!(pgpass_host(Some("127.0.0.1")), "127.0.0.1");
    }

    #[test]
    fn service_sections_as_libpq_reads_them() {
        let text = "# c\n[other]\nport=1\n[kasm]\n  host=db.example  \nport=5433\nport=9\n\
                    password=a=b\n[kasm]\nuser=ignored\n";
        let s = parse_service(Path::new("/s"), text, "kasm")
            .unwrap()
            .unwrap();
        assert_eq!(
            s,
            vec![
                ("host".to_string(), "db.example".to_string()),
                ("port".to_string(), "5433".to_string()),
                ("password".to_string(), "a=b".to_string()),
            ]
        );
        assert!(
            parse_service(Path::new("/s"), text, "kas")
                .unwrap()
                .is_none()
        );
        assert!(
            parse_service(Path::new("/s"), text, "none")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn service_errors_name_file_and_line_not_text() {
        let e = parse_service(Path::new("/s"), "[k]\nhost =h\n", "k").unwrap_err();
        assert!(e.to_string().contains("\"/s\", line 2"), "{e}");
        let e = parse_service(Path::new("/s"), "[k]\nsecretpw\n", "k").unwrap_err();
        assert!(!e.to_string().contains("secretpw"), "{e}");
        let e = parse_service(Path::new("/s"), "[k]\nservice=x\n", "k").unwrap_err();
        assert!(e.to_string().contains("nested"), "{e}");
        // Errors elsewhere in the file do not matter when the section is not reached.
        assert!(
            parse_service(Path::new("/s"), "[a]\nbogus\n[k]\nport=1\n", "k")
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn user_file_wins_over_system_file() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("user.conf");
        let sys = dir.path().join("sys");
        std::fs::create_dir(&sys).unwrap();
        std::fs::write(&user, "[a]\nport=1\n").unwrap();
        std::fs::write(sys.join("pg_service.conf"), "[a]\nport=2\n[b]\nport=3\n").unwrap();
        let env: BTreeMap<String, String> = [
            ("PGSERVICEFILE", user.to_str().unwrap()),
            ("PGSYSCONFDIR", sys.to_str().unwrap()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let files = ServiceFiles::from_env(&env);
        assert_eq!(load_service("a", &files).unwrap()["port"], "1");
        assert_eq!(load_service("b", &files).unwrap()["port"], "3");
        let e = load_service("c", &files).unwrap_err();
        assert!(e.to_string().contains("\"c\" not found"), "{e}");
        let mut env2 = env.clone();
        env2.insert("PGSERVICEFILE".into(), "/nonexistent/x.conf".into());
        assert!(load_service("b", &ServiceFiles::from_env(&env2)).is_err());
    }

    #[test]
    fn passfile_open_to_others_is_ignored() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pgpass");
        std::fs::write(&p, "*:*:*:*:pw\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load_passfile(&p).is_some());
        for mode in [0o640, 0o604, 0o644, 0o610] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            assert!(load_passfile(&p).is_none(), "{mode:o}");
        }
        assert!(load_passfile(dir.path()).is_none());
        assert!(load_passfile(&dir.path().join("absent")).is_none());
    }
}
