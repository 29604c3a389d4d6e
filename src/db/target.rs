//! Which database to talk to: `--db`/`KASM_DB_URL` > `database.url` > the libpq variables
//! (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE, PGSSLROOTCERT), which also fill in
//! whatever a URL leaves out, as libpq does.
//!
//! A [`DbTarget`] knows how to describe itself without its password ([`DbTarget::redacted`]);
//! that is the only form that may appear in logs and errors. No I/O here.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::str::FromStr;
use tokio_postgres::config::{Host, SslMode};

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
}

impl std::fmt::Debug for DbTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DbTarget({})", self.redacted())
    }
}

impl DbTarget {
    /// Resolve the target from an explicit URL (flag or config) and the libpq env variables.
    pub fn resolve(url: Option<&str>, env: &BTreeMap<String, String>) -> Result<DbTarget> {
        let (text, mut tls, mut root_cert) = match url {
            Some(u) => strip_ssl_params(u),
            None => (String::new(), None, None),
        };
        let mut config = if text.trim().is_empty() {
            tokio_postgres::Config::new()
        } else {
            tokio_postgres::Config::from_str(&text).map_err(|e| {
                Error::usage(format!("invalid database URL ({}): {e}", redact_url(&text)))
            })?
        };
        let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
        if config.get_hosts().is_empty() {
            match get("PGHOST") {
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
            if let Some(p) = get("PGPORT") {
                let port: u16 = p
                    .parse()
                    .map_err(|_| Error::usage(format!("PGPORT {p:?} is not a port number")))?;
                config.port(port);
            }
        }
        if config.get_user().is_none() {
            let user = get("PGUSER")
                .or_else(|| get("USER"))
                .unwrap_or_else(|| "postgres".into());
            config.user(&user);
        }
        if config.get_password().is_none() {
            if let Some(p) = get("PGPASSWORD") {
                config.password(p);
            }
        }
        if config.get_dbname().is_none() {
            let db = get("PGDATABASE")
                .or_else(|| config.get_user().map(String::from))
                .unwrap_or_default();
            config.dbname(&db);
        }
        if tls.is_none() {
            if let Some(m) = get("PGSSLMODE") {
                tls = Some(parse_sslmode(&m)?);
            }
        }
        if root_cert.is_none() {
            root_cert = get("PGSSLROOTCERT").map(Into::into);
        }
        let tls = tls.unwrap_or(match config.get_ssl_mode() {
            SslMode::Disable => Tls::Disable,
            SslMode::Require => Tls::Require,
            _ => Tls::Prefer,
        });
        config.ssl_mode(match tls {
            Tls::Disable => SslMode::Disable,
            Tls::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        });
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        config.application_name("kasm-db");
        Ok(DbTarget {
            config,
            tls,
            root_cert,
        })
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
    pub fn with_dbname(&self, dbname: &str) -> DbTarget {
        let mut t = self.clone();
        t.config.dbname(dbname);
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
        let mut env = vec![
            ("PGHOST".to_string(), self.host()),
            ("PGPORT".to_string(), self.port().to_string()),
            ("PGUSER".to_string(), self.user().to_string()),
            ("PGDATABASE".to_string(), self.dbname().to_string()),
            ("PGAPPNAME".to_string(), "kasm-db".to_string()),
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
        if let Some(c) = &self.root_cert {
            env.push(("PGSSLROOTCERT".to_string(), c.display().to_string()));
        }
        env
    }
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

/// Take `sslmode` and `sslrootcert` out of a URL or key=value string (tokio-postgres does not
/// know verify-ca/verify-full nor sslrootcert); return the rest with what was taken.
fn strip_ssl_params(text: &str) -> (String, Option<Tls>, Option<std::path::PathBuf>) {
    let mut tls = None;
    let mut root = None;
    let mut take = |k: &str, v: &str| match k {
        "sslmode" => {
            tls = parse_sslmode(v).ok();
            true
        }
        "sslrootcert" => {
            root = Some(v.into());
            true
        }
        _ => false,
    };
    let rest = if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        match text.split_once('?') {
            Some((base, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        !take(k, v)
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
        text.split_whitespace()
            .filter(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                !take(k, v.trim_matches('\''))
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    (rest, tls, root)
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
    text.split_whitespace()
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=<redacted>"
            } else {
                kv
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
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
}
