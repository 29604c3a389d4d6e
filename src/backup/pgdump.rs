//! Finding the right `pg_dump` (see [`crate::pgtools`]: the operator's `backup.pg_bindir` /
//! `--pg-bindir`, else one of the server's major where packages install it, else PATH) and
//! refusing one older than the server (an older pg_dump cannot dump a newer server correctly).
//!
//! Runs only `pg_dump --version`; never connects anywhere and never sees a password.

use crate::error::{Error, Result};
pub use crate::pgtools::parse_version;
use crate::pgtools::{self, Search};

/// The pg_dump found: path, version as printed, major.
pub type PgDump = pgtools::Tool;

/// Refuse a pg_dump older than the server, with what to do about it.
pub fn check(p: &PgDump, server_major: u32, server_version: &str) -> Result<()> {
    if p.major < server_major {
        return Err(Error::failed(format!(
            "{} is version {}, older than the server ({server_version}): an older pg_dump cannot \
             dump a newer server; install the PostgreSQL {server_major} client tools \
             (Debian: apt install postgresql-client-{server_major}) or name their directory \
             with backup.pg_bindir / --pg-bindir",
            p.path.display(),
            p.version
        )));
    }
    Ok(())
}

/// The warning for a pg_dump newer than the server (pure): its archive may not restore onto a
/// server of the source's major (pg_dump 17's sets `transaction_timeout`, which 16 refuses).
pub fn newer_than_server(p: &PgDump, server_major: u32, server_version: &str) -> Option<String> {
    (p.major > server_major).then(|| {
        format!(
            "{} is version {}, newer than the server ({server_version}): PostgreSQL does not \
             promise that a newer pg_dump's archive restores onto an older server (pg_dump 17's \
             does not restore onto 16), so this backup may restore only onto PostgreSQL {} or \
             newer; to keep restoring onto {server_major}, install the PostgreSQL \
             {server_major} client tools or name them with backup.pg_bindir / --pg-bindir",
            p.path.display(),
            p.version,
            p.major
        )
    })
}

/// The pg_dump to use for a server of `server_major`: of the same major if there is one, else
/// the closest newer, else the newest found (which [`check`] then refuses).
pub fn find(server_major: u32, search: Search<'_>) -> Result<PgDump> {
    pgtools::find("pg_dump", server_major, server_major, search)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(e.to_string().contains("--pg-bindir"), "{e}");
        assert!(check(&p, 14, "14.9").is_ok());
        assert!(check(&p, 13, "13.1").is_ok());
        assert_eq!(newer_than_server(&p, 14, "14.9"), None);
        let w = newer_than_server(&p, 13, "13.1").unwrap();
        assert!(w.contains("newer than the server (13.1)"), "{w}");
        assert!(w.contains("PostgreSQL 13 client tools"), "{w}");
    }
}
