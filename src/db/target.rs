//! Which database to talk to, resolved the way libpq resolves a connection: each setting comes
//! from the URL (`--db`/`KASM_DB_URL` > `database.url`), else from the connection service
//! (`service=` in the URL, else `PGSERVICE`; see [`super::libpq`]), else from the libpq
//! variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE, PGSSLROOTCERT,
//! PGOPTIONS, PGCONNECT_TIMEOUT, PGAPPNAME, PGTARGETSESSIONATTRS), else from the default. When
//! no password was given that way, the password file is consulted (`passfile=`, the service's
//! `passfile`, PGPASSFILE, else `$HOME/.pgpass`), as libpq does.
//!
//! A [`DbTarget`] knows how to describe itself without its password ([`DbTarget::redacted`]);
//! that is the only form that may appear in logs and errors. The only I/O here is reading
//! libpq's files (through [`super::libpq`]).

use super::libpq::{self, PassFile};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::config::{Host, SslMode, TargetSessionAttrs};

/// kasm-db's connect timeout when none is given (libpq would wait indefinitely).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The application name reported to the server when none is given.
pub const DEFAULT_APPLICATION_NAME: &str = "kasm-db";

/// TLS behaviour, following libpq's `sslmode` (tokio-postgres knows only the first three).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    Disable,
    /// TLS when the server offers it, certificate not verified (libpq's default).
    Prefer,
    /// TLS required, certificate not verified.
    Require,
    /// TLS required, certificate verified against the roots; `Full` also checks the host name.
    VerifyCa,
    VerifyFull,
}

#[derive(Clone)]
pub struct DbTarget {
    pub config: tokio_postgres::Config,
    pub tls: Tls,
    pub root_cert: Option<std::path::PathBuf>,
    /// The password file consulted because no password was given (kept for
    /// [`DbTarget::with_dbname`], whose database may have a line of its own).
    passfile: Option<Arc<PassFile>>,
    /// Whether the password in `config` came from `passfile` (for error messages).
    password_from_file: bool,
}

impl std::fmt::Debug for DbTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DbTarget({})", self.redacted())
    }
}

/// Connection keywords taken out of a URL before tokio-postgres parses it: those it does not
/// know (verify-ca/verify-full, sslrootcert, service, passfile) and those whose libpq meaning
/// differs from its own (connect_timeout 0, target_session_attrs' other values).
const TAKEN: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "service",
    "passfile",
    "connect_timeout",
    "target_session_attrs",
];

/// Service-file keywords that kasm-db applies; other libpq keywords are ignored with a warning.
const APPLIED: &[&str] = &[
    "host",
    "port",
    "user",
    "password",
    "passfile",
    "dbname",
    "options",
    "application_name",
    "sslmode",
    "sslrootcert",
    "connect_timeout",
    "target_session_attrs",
];

impl DbTarget {
    /// Resolve the target from an explicit URL (flag or config), the connection service and
    /// the libpq environment variables, then the password file; `env` is the process
    /// environment snapshot (HOME included).
    pub fn resolve(url: Option<&str>, env: &BTreeMap<String, String>) -> Result<DbTarget> {
        let (text, taken) = match url {
            Some(u) => take_params(u),
            None => (String::new(), BTreeMap::new()),
        };
        let mut config = if text.trim().is_empty() {
            tokio_postgres::Config::new()
        } else {
            tokio_postgres::Config::from_str(&text).map_err(|e| {
                Error::usage(format!("invalid database URL ({}): {e}", redact_url(&text)))
            })?
        };
        let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
        // libpq: the connection string, then the service's settings, then the environment.
        let service = match taken.get("service").cloned().or_else(|| get("PGSERVICE")) {
            Some(name) => libpq::load_service(&name, &libpq::ServiceFiles::from_env(env))?,
            None => BTreeMap::new(),
        };
        for key in service.keys().filter(|k| !APPLIED.contains(&k.as_str())) {
            tracing::warn!(
                "connection service keyword {key:?} is not supported by kasm-db; ignored"
            );
        }
        let later = |key: &str, var: &str| {
            taken
                .get(key)
                .or_else(|| service.get(key))
                .filter(|v| !v.is_empty())
                .cloned()
                .or_else(|| get(var))
        };
        if config.get_hosts().is_empty() {
            match later("host", "PGHOST") {
                Some(h) => {
                    for h in h.split(',') {
                        config.host(h);
                    }
                }
                None => {
                    config.host("localhost");
                }
            }
        }
        if config.get_ports().is_empty() {
            if let Some(p) = later("port", "PGPORT") {
                for p in p.split(',') {
                    let port: u16 = p
                        .parse()
                        .map_err(|_| Error::usage(format!("port {p:?} is not a port number")))?;
                    config.port(port);
                }
            }
        }
        if config.get_user().is_none() {
            let user = later("user", "PGUSER")
                .or_else(|| get("USER"))
                .unwrap_or_else(|| "postgres".into());
            config.user(&user);
        }
        if config.get_password().is_none() {
            if let Some(p) = later("password", "PGPASSWORD") {
                config.password(p);
            }
        }
        if config.get_dbname().is_none() {
            let db = later("dbname", "PGDATABASE")
                .or_else(|| config.get_user().map(String::from))
                .unwrap_or_default();
            config.dbname(&db);
        }
        if config.get_options().is_none() {
            if let Some(o) = later("options", "PGOPTIONS") {
                config.options(&o);
            }
        }
        if config.get_application_name().is_none() {
            let name = later("application_name", "PGAPPNAME");
            config.application_name(name.as_deref().unwrap_or(DEFAULT_APPLICATION_NAME));
        }
        let tls = match later("sslmode", "PGSSLMODE") {
            Some(m) => parse_sslmode(&m)?,
            None => match config.get_ssl_mode() {
                SslMode::Disable => Tls::Disable,
                SslMode::Require => Tls::Require,
                _ => Tls::Prefer,
            },
        };
        config.ssl_mode(match tls {
            Tls::Disable => SslMode::Disable,
            Tls::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        });
        let root_cert = later("sslrootcert", "PGSSLROOTCERT").map(PathBuf::from);
        match later("connect_timeout", "PGCONNECT_TIMEOUT") {
            Some(t) => {
                if let Some(t) = parse_connect_timeout(&t)? {
                    config.connect_timeout(t);
                }
            }
            None => {
                config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
            }
        }
        if let Some(a) = later("target_session_attrs", "PGTARGETSESSIONATTRS") {
            config.target_session_attrs(parse_session_attrs(&a)?);
        }
        let mut target = DbTarget {
            config,
            tls,
            root_cert,
            passfile: None,
            password_from_file: false,
        };
        if target.config.get_password().is_none() {
            let path = later("passfile", "PGPASSFILE")
                .map(PathBuf::from)
                .or_else(|| get("HOME").map(|h| PathBuf::from(h).join(".pgpass")));
            target.passfile = path.and_then(|p| libpq::load_passfile(&p)).map(Arc::new);
            target.password_from_passfile();
        }
        Ok(target)
    }

    /// Take the password for this target's first host, port, database and user from the
    /// password file, if one was consulted and has a matching line.
    fn password_from_passfile(&mut self) -> bool {
        let Some(file) = &self.passfile else {
            return false;
        };
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(h)) => Some(h.clone()),
            Some(Host::Unix(p)) => Some(p.display().to_string()),
            None => self.config.get_hostaddrs().first().map(|a| a.to_string()),
        };
        let found = file.lookup(
            &libpq::pgpass_host(host.as_deref()),
            &self.port().to_string(),
            self.dbname(),
            self.user(),
        );
        match found {
            Some(p) => {
                tracing::debug!(file = %file.path.display(), "password from the password file");
                self.config.password(p);
                self.password_from_file = true;
                true
            }
            None => false,
        }
    }

    /// The password file the password came from, for messages about a refused password.
    pub fn password_file(&self) -> Option<&std::path::Path> {
        self.passfile
            .as_deref()
            .filter(|_| self.password_from_file)
            .map(|f| f.path.as_path())
    }

    /// How long one connection may take to be established, all hosts tried: the connect
    /// timeout applies to each host, as in libpq. `None`: wait indefinitely.
    pub fn connect_deadline(&self) -> Option<Duration> {
        let hosts = self
            .config
            .get_hosts()
            .len()
            .max(self.config.get_hostaddrs().len())
            .max(1) as u32;
        self.config.get_connect_timeout().map(|t| *t * hosts)
    }

    pub fn dbname(&self) -> &str {
        self.config.get_dbname().unwrap_or("")
    }

    pub fn user(&self) -> &str {
        self.config.get_user().unwrap_or("")
    }

    pub fn host(&self) -> String {
        match self.config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        }
    }

    pub fn port(&self) -> u16 {
        self.config.get_ports().first().copied().unwrap_or(5432)
    }

    /// The same server, another database (for restore's new database, scratch tests, ...).
    /// A password found in the password file is looked up again for the new database; when
    /// that database has no line of its own (say, restore's new database), the one found for
    /// the original database is kept.
    pub fn with_dbname(&self, dbname: &str) -> DbTarget {
        let mut t = self.clone();
        t.config.dbname(dbname);
        if t.password_from_file || t.config.get_password().is_none() {
            t.password_from_passfile();
        }
        t
    }

    /// `user@host:port/dbname`: never the password.
    pub fn redacted(&self) -> String {
        format!(
            "{}@{}:{}/{}",
            self.user(),
            self.host(),
            self.port(),
            self.dbname()
        )
    }

    /// Environment for libpq child processes (pg_dump, pg_restore, psql): connection settings
    /// go through the environment so that the password never appears on a command line.
    pub fn libpq_env(&self) -> Vec<(String, String)> {
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(h) => h.clone(),
                Host::Unix(p) => p.display().to_string(),
            })
            .collect();
        let ports: Vec<String> = self
            .config
            .get_ports()
            .iter()
            .map(|p| p.to_string())
            .collect();
        let timeout = self
            .config
            .get_connect_timeout()
            .map_or(0, |t| t.as_secs().max(1));
        let mut env = vec![
            (
                "PGHOST".to_string(),
                non_empty(hosts.join(","), "localhost"),
            ),
            ("PGPORT".to_string(), non_empty(ports.join(","), "5432")),
            ("PGUSER".to_string(), self.user().to_string()),
            ("PGDATABASE".to_string(), self.dbname().to_string()),
            (
                "PGAPPNAME".to_string(),
                self.config
                    .get_application_name()
                    .unwrap_or(DEFAULT_APPLICATION_NAME)
                    .to_string(),
            ),
            ("PGCONNECT_TIMEOUT".to_string(), timeout.to_string()),
            (
                "PGTARGETSESSIONATTRS".to_string(),
                match self.config.get_target_session_attrs() {
                    TargetSessionAttrs::ReadWrite => "read-write",
                    TargetSessionAttrs::ReadOnly => "read-only",
                    _ => "any",
                }
                .to_string(),
            ),
            (
                "PGSSLMODE".to_string(),
                match self.tls {
                    Tls::Disable => "disable",
                    Tls::Prefer => "prefer",
                    Tls::Require => "require",
                    Tls::VerifyCa => "verify-ca",
                    Tls::VerifyFull => "verify-full",
                }
                .to_string(),
            ),
        ];
        if let Some(p) = self.config.get_password() {
            env.push((
                "PGPASSWORD".to_string(),
                String::from_utf8_lossy(p).into_owned(),
            ));
        }
        if let Some(o) = self.config.get_options() {
            env.push(("PGOPTIONS".to_string(), o.to_string()));
        }
        if let Some(c) = &self.root_cert {
            env.push(("PGSSLROOTCERT".to_string(), c.display().to_string()));
        }
        env
    }
}

fn non_empty(s: String, default: &str) -> String {
    if s.is_empty() { default.to_string() } else { s }
}

/// libpq's `connect_timeout`: whole seconds; zero or negative waits indefinitely (`None`); the
/// minimum is 2 s.
fn parse_connect_timeout(t: &str) -> Result<Option<Duration>> {
    let secs: i64 = t.trim().parse().map_err(|_| {
        Error::usage(format!(
            "connect_timeout {t:?} is not a whole number of seconds"
        ))
    })?;
    Ok((secs > 0).then(|| Duration::from_secs(secs.max(2) as u64)))
}

/// libpq's `target_session_attrs`, as far as tokio-postgres implements it.
fn parse_session_attrs(v: &str) -> Result<TargetSessionAttrs> {
    Ok(match v {
        "any" => TargetSessionAttrs::Any,
        "read-write" => TargetSessionAttrs::ReadWrite,
        "read-only" => TargetSessionAttrs::ReadOnly,
        "primary" | "standby" | "prefer-standby" => {
            return Err(Error::usage(format!(
                "target_session_attrs {v:?} is not supported by kasm-db's PostgreSQL driver; \
                 use any, read-write or read-only"
            )));
        }
        other => {
            return Err(Error::usage(format!(
                "target_session_attrs {other:?} is not one of any, read-write, read-only, \
                 primary, standby, prefer-standby"
            )));
        }
    })
}

fn parse_sslmode(m: &str) -> Result<Tls> {
    Ok(match m {
        "disable" | "allow" => Tls::Disable,
        "prefer" => Tls::Prefer,
        "require" => Tls::Require,
        "verify-ca" => Tls::VerifyCa,
        "verify-full" => Tls::VerifyFull,
        other => {
            return Err(Error::usage(format!(
                "sslmode {other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
            )));
        }
    })
}

/// Take the [`TAKEN`] keywords out of a URL or key=value string; return the rest with what was
/// taken (URL values percent-decoded).
fn take_params(text: &str) -> (String, BTreeMap<String, String>) {
    let mut taken = BTreeMap::new();
    let mut take = |k: &str, v: String| {
        if TAKEN.contains(&k) {
            taken.insert(k.to_string(), v);
            true
        } else {
            false
        }
    };
    let url = if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        Some(hosts_without_ports_to_query(text))
    } else {
        None
    };
    let rest = if let Some(text) = url.as_deref() {
        match text.split_once('?') {
            Some((base, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        !take(k, percent_decode(v))
                    })
                    .collect();
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            None => text.to_string(),
        }
    } else {
        match parse_conninfo(text) {
            // Each value quoted again as libpq and tokio-postgres read it: what was one value
            // (`password='a  b'`, a path with a space) stays exactly that value.
            Ok(pairs) => pairs
                .into_iter()
                .filter(|(k, v)| !take(k, v.clone()))
                .map(|(k, v)| format!("{k}={}", quote_conninfo(&v)))
                .collect::<Vec<_>>()
                .join(" "),
            // tokio-postgres refuses it with its own message (redacted by the caller).
            Err(_) => text.to_string(),
        }
    };
    (rest, taken)
}

/// A libpq key=value connection string as libpq's `conninfo_parse` reads it: keywords and
/// values separated by `=` (whitespace around it allowed), values either bare (up to the next
/// whitespace) or in single quotes, a backslash taking the next character literally in both.
/// Pure; the error says what is wrong without repeating any value.
pub fn parse_conninfo(text: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!(
                "missing \"=\" after {key:?} in the connection string"
            ));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => {
                        return Err(format!(
                            "unterminated quoted value of {key:?} in the connection string"
                        ));
                    }
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

/// `value` as a connection string value: bare when it can be, else in single quotes with `\`
/// and `'` escaped by a backslash (as libpq writes and reads them).
fn quote_conninfo(value: &str) -> String {
    if !value.is_empty() && !value.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\') {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\\' || c == '\'' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// tokio-postgres gives a URL host without a port the port 5432, where libpq leaves the port
/// to the service, PGPORT or the default. When no host of the URL names a port (and no `port=`
/// does), move the hosts into a `host=` parameter, which tokio-postgres takes without ports.
fn hosts_without_ports_to_query(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let has_port = |chunk: &str| match chunk.rsplit_once(']') {
        Some((_, after)) => after.starts_with(':'),
        None => chunk.contains(':'),
    };
    let query = tail.split_once('?').map_or("", |(_, q)| q);
    let port_param = query.split('&').any(|kv| kv.starts_with("port="));
    if hosts.is_empty() || port_param || hosts.split(',').any(has_port) {
        return url.to_string();
    }
    let hosts: Vec<String> = hosts
        .split(',')
        .map(|h| format!("host={}", h.trim_start_matches('[').trim_end_matches(']')))
        .collect();
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, format!("?{q}&")),
        None => (tail, "?".to_string()),
    };
    let path = if path.is_empty() { "/" } else { path };
    format!("{scheme}://{userinfo}{path}{query}{}", hosts.join("&"))
}

/// `%XX` escapes of a URL query value (as tokio-postgres decodes the values it parses).
fn percent_decode(v: &str) -> String {
    percent_encoding::percent_decode_str(v)
        .decode_utf8_lossy()
        .into_owned()
}

/// A URL or key=value string with its password replaced, for messages about unparsable input.
pub fn redact_url(text: &str) -> String {
    if let Some(rest) = text.split_once("://").map(|x| x.1) {
        if let Some((creds, _)) = rest.split_once('@') {
            if let Some((user, _)) = creds.split_once(':') {
                return text.replacen(creds, &format!("{user}:<redacted>"), 1);
            }
        }
        return text.to_string();
    }
    match parse_conninfo(text) {
        Ok(pairs) => pairs
            .into_iter()
            .map(|(k, v)| {
                if k == "password" {
                    "password=<redacted>".to_string()
                } else {
                    format!("{k}={}", quote_conninfo(&v))
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
        // Unparsable: keep only what comes before a password keyword.
        Err(_) => match text.find("password") {
            Some(i) => format!("{}password=<redacted>", &text[..i]),
            None => text.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn conninfo_is_read_as_libpq_reads_it() {
        let pairs = parse_conninfo(
            r"host = h  password='a  b\'c\\d' sslrootcert='/etc/my certs/ca.pem' dbname=x\ y user=",
        )
        .unwrap();
        assert_eq!(
            pairs,
            vec![
                ("host".into(), "h".into()),
                ("password".into(), r"a  b'c\d".into()),
                ("sslrootcert".into(), "/etc/my certs/ca.pem".into()),
                ("dbname".into(), "x y".into()),
                ("user".into(), String::new()),
            ]
        );
        assert!(parse_conninfo("host").is_err());
        assert!(parse_conninfo("password='open").is_err());
        // Taken values arrive whole; the rest is quoted again for tokio-postgres.
        let (rest, taken) =
            take_params("host=h sslrootcert='/etc/my certs/ca.pem' password='a  b'");
        assert_eq!(taken["sslrootcert"], "/etc/my certs/ca.pem");
        let t = DbTarget::resolve(Some("host=h password='a  b\\'q' dbname='my db'"), &env(&[]))
            .unwrap();
        assert_eq!(t.config.get_password(), Some(&b"a  b'q"[..]));
        assert_eq!(t.dbname(), "my db");
        assert!(rest.contains("password='a  b'"), "{rest}");
        // Nothing of a password survives redaction, however it is quoted.
        let r = redact_url("host=h password='s3cr  3t' user=u");
        assert!(!r.contains("s3cr") && !r.contains("3t'"), "{r}");
        assert!(!redact_url("host=h password='s3cr  3t").contains("3t"));
        // URL values: percent-decoded by the percent-encoding crate.
        assert_eq!(percent_decode("a%20b%27c%zz"), "a b'c%zz");
    }

    #[test]
    fn url_wins_and_libpq_fills_gaps() {
        let t = DbTarget::resolve(
            Some("postgres://kasmapp@db.example:6543/kasm_logs"),
            &env(&[
                ("PGHOST", "other"),
                ("PGPASSWORD", "pw"),
                ("PGSSLMODE", "require"),
            ]),
        )
        .unwrap();
        assert_eq!(t.redacted(), "kasmapp@db.example:6543/kasm_logs");
        assert_eq!(t.config.get_password(), Some(&b"pw"[..]));
        assert_eq!(t.tls, Tls::Require);
    }

    #[test]
    fn libpq_env_alone() {
        let t = DbTarget::resolve(
            None,
            &env(&[
                ("PGHOST", "h"),
                ("PGPORT", "5433"),
                ("PGUSER", "u"),
                ("PGDATABASE", "d"),
            ]),
        )
        .unwrap();
        assert_eq!(t.redacted(), "u@h:5433/d");
        assert_eq!(t.tls, Tls::Prefer);
    }

    #[test]
    fn verify_full_is_understood() {
        let t = DbTarget::resolve(
            Some("postgres://u@h/d?sslmode=verify-full&sslrootcert=/ca.pem"),
            &env(&[]),
        )
        .unwrap();
        assert_eq!(t.tls, Tls::VerifyFull);
        assert_eq!(
            t.root_cert.as_deref(),
            Some(std::path::Path::new("/ca.pem"))
        );
    }

    #[test]
    fn passwords_never_in_descriptions() {
        let t = DbTarget::resolve(Some("postgres://u:hunter2@h/d"), &env(&[])).unwrap();
        assert!(!t.redacted().contains("hunter2"));
        assert!(!format!("{t:?}").contains("hunter2"));
        assert_eq!(
            redact_url("postgres://u:hunter2@h/d"),
            "postgres://u:<redacted>@h/d"
        );
        assert_eq!(
            redact_url("host=h password=hunter2"),
            "host=h password=<redacted>"
        );
        let e =
            DbTarget::resolve(Some("postgres://u:hunter2@h:notaport/d"), &env(&[])).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    fn secret_file(dir: &std::path::Path, name: &str, text: &str, mode: u32) -> String {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p.to_str().unwrap().to_string()
    }

    #[test]
    fn url_then_service_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let svc = secret_file(
            dir.path(),
            "svc.conf",
            "[kasm]\nhost=svc-host\nport=6000\ndbname=svc_db\napplication_name=svc-app\n\
             connect_timeout=0\nsslmode=require\n",
            0o644,
        );
        let e = env(&[
            ("PGSERVICEFILE", &svc),
            ("PGSERVICE", "kasm"),
            ("PGHOST", "env-host"),
            ("PGPORT", "7000"),
            ("PGUSER", "env-user"),
            ("PGAPPNAME", "env-app"),
            ("PGSSLMODE", "disable"),
        ]);
        let t = DbTarget::resolve(None, &e).unwrap();
        assert_eq!(t.redacted(), "env-user@svc-host:6000/svc_db");
        assert_eq!(t.config.get_application_name(), Some("svc-app"));
        assert_eq!(t.tls, Tls::Require);
        assert_eq!(t.config.get_connect_timeout(), None);
        let t = DbTarget::resolve(Some("postgres://u@url-host:6543/url_db"), &e).unwrap();
        assert_eq!(t.redacted(), "u@url-host:6543/url_db");
        // A URL host without a port takes the service's (libpq; tokio-postgres alone says 5432).
        let t = DbTarget::resolve(Some("postgres://u@url-host/url_db"), &e).unwrap();
        assert_eq!(t.redacted(), "u@url-host:6000/url_db");
        let t =
            DbTarget::resolve(Some("postgres://u@[::1],h2/d?sslmode=disable"), &env(&[])).unwrap();
        assert_eq!(t.host(), "::1");
        assert_eq!(t.config.get_hosts().len(), 2);
        assert_eq!(t.port(), 5432);
        // The URL names the service itself.
        let t = DbTarget::resolve(
            Some("postgresql:///?service=kasm"),
            &env(&[("PGSERVICEFILE", &svc), ("PGPORT", "7000")]),
        )
        .unwrap();
        assert_eq!(t.port(), 6000);
        let err = DbTarget::resolve(None, &env(&[("PGSERVICEFILE", &svc), ("PGSERVICE", "x")]))
            .unwrap_err();
        assert!(err.to_string().contains("\"x\" not found"), "{err}");
    }

    #[test]
    fn password_file_fills_a_missing_password_only() {
        let dir = tempfile::tempdir().unwrap();
        let pass = secret_file(
            dir.path(),
            "pgpass",
            "h:5432:kasm:kasmapp:from-file\nh:5432:*:kasmapp:any-db\n",
            0o600,
        );
        let e = env(&[
            ("PGPASSFILE", &pass),
            ("PGHOST", "h"),
            ("PGUSER", "kasmapp"),
        ]);
        let t = DbTarget::resolve(Some("dbname=kasm"), &e).unwrap();
        assert_eq!(t.config.get_password(), Some(&b"from-file"[..]));
        assert_eq!(t.password_file(), Some(std::path::Path::new(&pass)));
        assert!(!format!("{t:?}").contains("from-file"));
        let child = t.libpq_env();
        assert!(child.contains(&("PGPASSWORD".into(), "from-file".into())));
        // Another database of the same server: its own line.
        let other = t.with_dbname("kasm_restore_1");
        assert_eq!(other.config.get_password(), Some(&b"any-db"[..]));
        // PGPASSWORD (or a password in the URL) wins; the file is not consulted.
        let mut e2 = e.clone();
        e2.insert("PGPASSWORD".into(), "from-env".into());
        let t = DbTarget::resolve(Some("dbname=kasm"), &e2).unwrap();
        assert_eq!(t.config.get_password(), Some(&b"from-env"[..]));
        assert_eq!(t.password_file(), None);
        // ~/.pgpass through HOME; a file open to others is ignored.
        let home = tempfile::tempdir().unwrap();
        secret_file(home.path(), ".pgpass", "*:*:*:*:home-pw\n", 0o600);
        let e3 = env(&[("HOME", home.path().to_str().unwrap())]);
        let t = DbTarget::resolve(None, &e3).unwrap();
        assert_eq!(t.config.get_password(), Some(&b"home-pw"[..]));
        secret_file(home.path(), ".pgpass", "*:*:*:*:home-pw\n", 0o644);
        let t = DbTarget::resolve(None, &e3).unwrap();
        assert_eq!(t.config.get_password(), None);
        // passfile= in the URL wins over PGPASSFILE.
        let url_file = secret_file(dir.path(), "other", "*:*:*:*:url-file\n", 0o600);
        let t = DbTarget::resolve(
            Some(&format!("postgres://kasmapp@h/kasm?passfile={url_file}")),
            &e,
        )
        .unwrap();
        assert_eq!(t.config.get_password(), Some(&b"url-file"[..]));
    }

    #[test]
    fn timeouts_names_and_session_attrs() {
        let t = DbTarget::resolve(None, &env(&[])).unwrap();
        assert_eq!(
            t.config.get_connect_timeout(),
            Some(&DEFAULT_CONNECT_TIMEOUT)
        );
        assert_eq!(t.config.get_application_name(), Some("kasm-db"));
        let t = DbTarget::resolve(
            None,
            &env(&[
                ("PGCONNECT_TIMEOUT", "1"),
                ("PGHOST", "a,b"),
                ("PGTARGETSESSIONATTRS", "read-write"),
                ("PGAPPNAME", "nightly"),
            ]),
        )
        .unwrap();
        assert_eq!(
            t.config.get_connect_timeout(),
            Some(&Duration::from_secs(2))
        );
        assert_eq!(t.connect_deadline(), Some(Duration::from_secs(4)));
        let child: BTreeMap<String, String> = t.libpq_env().into_iter().collect();
        assert_eq!(child["PGHOST"], "a,b");
        assert_eq!(child["PGTARGETSESSIONATTRS"], "read-write");
        assert_eq!(child["PGAPPNAME"], "nightly");
        assert_eq!(child["PGCONNECT_TIMEOUT"], "2");
        let t = DbTarget::resolve(Some("postgres://u@h/d?connect_timeout=0"), &env(&[])).unwrap();
        assert_eq!(t.connect_deadline(), None);
        for bad in ["standby", "bogus"] {
            let e = DbTarget::resolve(None, &env(&[("PGTARGETSESSIONATTRS", bad)])).unwrap_err();
            assert_eq!(e.kind(), crate::error::Kind::Usage, "{e}");
        }
        assert!(DbTarget::resolve(None, &env(&[("PGCONNECT_TIMEOUT", "soon")])).is_err());
    }
}
