//! Finding and running the real `pg_restore`: the operator's (`--pg-bindir`), else one of the
//! target server's major version (or the closest newer, see [`crate::pgtools`]), never older
//! than the `pg_dump` that wrote the archive. It restores the
//! scratch archive into the new database with `--jobs`, stops at the first error, and reports
//! progress (tables whose data is in) from its `--verbose` output.
//!
//! The archive was written by pg_dump to a pipe, so its table of contents had no data offsets;
//! [`super::offsets`] writes them in before this runs, so `-j` seeks to each table's data and
//! starts the largest first. When it could not (an archive version it does not know),
//! pg_restore still restores the file with `-j`: its workers find the blocks by reading forward.
//!
//! pg_restore runs with a cleared environment plus [`pgtools::child_env`] (PATH, locale, the
//! loader's library path). Connection settings reach it through its environment
//! ([`DbTarget::libpq_env`]):
//! the password is never on a command line, in a message or a log. Dropping the returned
//! future kills pg_restore.

use super::plan::{self, Line};
use crate::db::DbTarget;
use crate::error::{Error, Result};
use crate::pgtools::{self, Search, parse_version};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use tokio::io::AsyncBufReadExt;

/// How much of pg_restore's non-verbose stderr is kept for the error message.
const KEEP_MAX: usize = 8 << 10;

/// The pg_restore found: path, version as printed, major.
pub type PgRestore = pgtools::Tool;

/// The pg_restore for a server of `server_major` (see [`crate::pgtools`]: the operator's
/// `--pg-bindir` / `backup.pg_bindir`, else one of the server's major where packages install
/// it, else PATH), refused when older than the archive's pg_dump (`dump_version`, as recorded
/// in the manifest).
pub fn find(server_major: u32, dump_version: &str, search: Search<'_>) -> Result<PgRestore> {
    let dump_major = parse_version(dump_version).map(|v| v.1).unwrap_or(0);
    let chosen = pgtools::find("pg_restore", server_major, dump_major, search)?;
    check(&chosen, dump_version)?;
    Ok(chosen)
}

/// Refuse a pg_restore older than the pg_dump that wrote the archive (pure).
pub fn check(p: &PgRestore, dump_version: &str) -> Result<()> {
    let dump_major = parse_version(dump_version).map(|v| v.1).unwrap_or(0);
    if p.major < dump_major {
        return Err(Error::failed(format!(
            "{} is version {}, older than the pg_dump {dump_version} that wrote the backup: \
             install the PostgreSQL {dump_major} client tools (Debian: apt install \
             postgresql-client-{dump_major}) or name their directory with backup.pg_bindir / \
             --pg-bindir",
            p.path.display(),
            p.version
        )));
    }
    Ok(())
}

/// One pg_restore run.
pub struct PgRestoreRun<'a> {
    pub bin: &'a PgRestore,
    pub archive: &'a Path,
    /// The new database (on the target server) to restore into.
    pub db: &'a DbTarget,
    pub jobs: u32,
    pub no_owner: bool,
    /// The process environment (only [`pgtools::child_env`] of it is passed on).
    pub env: &'a BTreeMap<String, String>,
}

/// The arguments (no secrets: the connection is in the environment).
pub fn args(job: &PgRestoreRun<'_>) -> Vec<String> {
    let mut a = vec![
        format!("--dbname={}", job.db.dbname()),
        format!("--jobs={}", job.jobs.max(1)),
        "--exit-on-error".to_string(),
        "--no-password".to_string(),
        "--verbose".to_string(),
    ];
    if job.no_owner {
        a.push("--no-owner".to_string());
    }
    a.push(job.archive.display().to_string());
    a
}

/// Run pg_restore to the end; `on_table` is called with the number of tables whose data is in
/// and, when pg_restore runs in parallel, the name (tag) of the table whose data it has just
/// committed ([`plan::finished_table_data`]).
pub async fn run(job: PgRestoreRun<'_>, on_table: impl FnMut(usize, Option<&str>)) -> Result<()> {
    run_with(job, &[], on_table).await
}

/// [`run`] with `extra` arguments before the archive (`--section=...`, `-L LIST`).
pub async fn run_with(
    job: PgRestoreRun<'_>,
    extra: &[String],
    mut on_table: impl FnMut(usize, Option<&str>),
) -> Result<()> {
    let mut a = args(&job);
    let archive = a.pop();
    a.extend(extra.iter().cloned());
    a.extend(archive);
    let mut cmd = tokio::process::Command::new(&job.bin.path);
    cmd.args(a)
        .env_clear()
        .envs(pgtools::child_env(job.env))
        .envs(job.db.libpq_env())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::failed(format!("cannot run {}: {e}", job.bin.path.display())))?;
    let stderr = child.stderr.take().expect("piped");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let mut kept = String::new();
    let mut tables = 0usize;
    while let Some(line) = lines.next_line().await? {
        match plan::classify(&line) {
            Line::TableData => {
                let finished = plan::finished_table_data(&line);
                // In parallel, workers print "processing data" as they start and the leader
                // "finished item" once committed: count each table once.
                if job.jobs <= 1 || finished.is_some() {
                    tables += 1;
                    on_table(tables, finished);
                }
            }
            Line::Verbose => {}
            Line::Keep => {
                if kept.len() < KEEP_MAX {
                    kept.push_str(line.trim_end());
                    kept.push('\n');
                }
            }
        }
    }
    let status = child.wait().await?;
    if status.success() {
        return Ok(());
    }
    let kept = kept.trim();
    if kept.contains("unrecognized configuration parameter") {
        return Err(Error::failed(format!(
            "pg_restore failed ({status}): {kept}\nThe archive sets a parameter this server does \
             not know: it was written by a newer pg_dump than the server, and PostgreSQL does not \
             promise that such an archive restores onto an older server. Restore it onto a server \
             at least as new as the backup's pg_dump, or take the backups with the client tools \
             of the server's major (backup.pg_bindir / --pg-bindir)"
        )));
    }
    if let Some(role) = plan::missing_role(kept) {
        return Err(Error::failed(format!(
            "pg_restore failed: role {role:?} does not exist on the target; pass \
             --create-roles to create the backup's roles, create it (CREATE ROLE {}) or pass \
             --no-owner",
            crate::db::ident(&role)
        )));
    }
    Err(Error::failed(format!(
        "pg_restore failed ({status}): {}",
        if kept.is_empty() { "no message" } else { kept }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_pg_restore_is_refused_and_args_hold_no_secret() {
        let p = PgRestore {
            path: "/usr/bin/pg_restore".into(),
            version: "14.2".into(),
            major: 14,
        };
        let e = check(&p, "16.4").unwrap_err();
        assert!(e.to_string().contains("postgresql-client-16"), "{e}");
        assert!(check(&p, "14.9").is_ok());
        assert!(check(&p, "13.1").is_ok());
        let env = BTreeMap::new();
        let db = DbTarget::resolve(Some("postgres://u:sekrit@h:5/kasm_restore_1"), &env).unwrap();
        let a = args(&PgRestoreRun {
            bin: &p,
            archive: Path::new("/tmp/x.dump"),
            db: &db,
            jobs: 0,
            no_owner: true,
            env: &env,
        });
        assert!(a.contains(&"--dbname=kasm_restore_1".to_string()));
        assert!(a.contains(&"--jobs=1".to_string()));
        assert!(a.contains(&"--no-owner".to_string()));
        assert!(!a.join(" ").contains("sekrit"));
    }
}
