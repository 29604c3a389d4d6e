//! Finding the right `pg_dump` and refusing one older than the server (an older pg_dump cannot
//! dump a newer server correctly). Prefers the server binaries' directory when its major
//! version matches, then Debian's `/usr/lib/postgresql/<major>/bin`, then `pg_dump` on PATH.
//!
//! Runs only `pg_dump --version`; never connects anywhere and never sees a password.

use crate::error::{Error, Result};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgDump {
    pub path: PathBuf,
    /// As printed, e.g. "15.18".
    pub version: String,
    pub major: u32,
}

/// Parse `pg_dump --version` output ("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)").
/// Returns the version and its major (9 for 9.6, as before PostgreSQL 10).
pub fn parse_version(out: &str) -> Option<(String, u32)> {
    let v = out
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    let v = v.trim_end_matches(|c: char| !c.is_ascii_digit());
    let major = v
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    Some((v.to_string(), major))
}

/// Refuse a pg_dump older than the server, with what to do about it.
pub fn check(p: &PgDump, server_major: u32, server_version: &str) -> Result<()> {
    if p.major < server_major {
        return Err(Error::failed(format!(
            "{} is version {}, older than the server ({server_version}): an older pg_dump cannot \
             dump a newer server; install the PostgreSQL {server_major} client tools \
             (Debian: apt install postgresql-client-{server_major}) and put its pg_dump first on PATH",
            p.path.display(),
            p.version
        )));
    }
    Ok(())
}

fn version_of(path: &PathBuf) -> Option<PgDump> {
    let out = std::process::Command::new(path)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    let (version, major) = parse_version(&String::from_utf8_lossy(&out.stdout))?;
    Some(PgDump {
        path: path.clone(),
        version,
        major,
    })
}

/// The pg_dump to use for a server of `server_major`: one of the same major if there is one,
/// else the newest found (which [`check`] may then refuse).
pub fn find(server_major: u32) -> Result<PgDump> {
    let mut candidates = Vec::new();
    if let Ok(d) = crate::pgtemp::find_bindir() {
        candidates.push(d.join("pg_dump"));
    }
    candidates.push(PathBuf::from(format!(
        "/usr/lib/postgresql/{server_major}/bin/pg_dump"
    )));
    candidates.push(PathBuf::from("pg_dump"));
    let found: Vec<PgDump> = candidates.iter().filter_map(version_of).collect();
    if let Some(p) = found.iter().find(|p| p.major == server_major) {
        return Ok(p.clone());
    }
    found
        .into_iter()
        .max_by_key(|p| p.major)
        .ok_or_else(|| {
            Error::failed(
                "cannot find pg_dump: install the PostgreSQL client tools (Debian: apt install postgresql-client)",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(
            parse_version("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"),
            Some(("15.18".into(), 15))
        );
        assert_eq!(
            parse_version("pg_dump (PostgreSQL) 17beta1").map(|v| v.1),
            Some(17)
        );
        assert_eq!(
            parse_version("pg_dump (PostgreSQL) 9.6.24"),
            Some(("9.6.24".into(), 9))
        );
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn older_pg_dump_is_refused_with_advice() {
        let p = PgDump {
            path: "/usr/bin/pg_dump".into(),
            version: "14.2".into(),
            major: 14,
        };
        let e = check(&p, 16, "16.4").unwrap_err();
        assert!(e.to_string().contains("older than the server"), "{e}");
        assert!(e.to_string().contains("postgresql-client-16"), "{e}");
        assert!(check(&p, 14, "14.9").is_ok());
        assert!(check(&p, 13, "13.1").is_ok());
    }
}
