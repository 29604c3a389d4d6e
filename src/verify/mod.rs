//! One verify of a backup, for `kasm-db backups verify`, `serve`'s scheduled verify and the
//! demo: find the backup (an id or `latest`), run the check asked for — the checksum check
//! (the stored object re-read: size and SHA-256 against the manifest) or the full restore test
//! (restored into a scratch database on a scratch server with the real pipeline, row counts
//! compared with the manifest, the scratch database dropped) — and record the result beside the
//! backup (`verified.json`, best effort). The checksum check of a physical backup also checks
//! the archived WAL after it ([`catalog::check_wal_chain`]: no hole, every segment matching its
//! record): a base backup is only as good as the chain that carries it forward. An encrypted
//! physical backup and its WAL are also decrypted with `backup.encryption_key_file` on the way
//! (the checksums are of the stored, encrypted bytes; decrypting authenticates every chunk):
//! without the key, or with another, the check is refused
//! ([`crate::archive::crypt::KeyProblem`], exit 1), since such a backup could not be restored.
//!
//! An operation: everything arrives as explicit inputs ([`Verify`]) and a typed report
//! ([`Verified`]) goes back; it never sees `Ctx`, the command line or an `Outcome` (the callers
//! shape those). The restore test's lock (one scratch restore per scratch server at a time) is
//! taken by the restore pipeline it runs. A check that fails is a report with `ok: false`, not
//! an error; an unreachable server (exit 75) or a usage error stays an error. Never prints a
//! password: the scratch server is described by host and port.

use crate::archive::catalog;
use crate::archive::crypt;
use crate::archive::manifest::Manifest;
use crate::archive::storage::Storage;
use crate::archive::verification::{self, Verification};
use crate::config::Config;
use crate::db::{DbTarget, Retry};
use crate::error::{Kind, Result};
use crate::restore::plan::{self, Difference};
use crate::restore::run::{self, RestoreSpec, Tested};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// What to verify, and how.
pub struct Verify<'a> {
    pub storage: &'a dyn Storage,
    /// A backup id, or `latest`.
    pub backup: &'a str,
    pub how: How<'a>,
    /// `backup.encryption_key_file`: the checksum check of an encrypted physical backup opens
    /// it and the WAL after it with this key (none, or another, is refused:
    /// [`crate::archive::crypt::KeyProblem`], exit 1). The restore test uses its [`Scratch`]'s.
    pub key_file: Option<&'a Path>,
}

/// Which check to run.
pub enum How<'a> {
    /// Re-read the stored object: size and SHA-256 against the manifest.
    Checksum,
    /// The full restore test into a scratch database.
    RestoreTest(Scratch<'a>),
}

/// Where and with what the restore test runs.
pub struct Scratch<'a> {
    /// Any database on the scratch server (only its server and credentials are used).
    pub server: &'a DbTarget,
    pub key_file: Option<&'a Path>,
    /// The directory of the pg_restore to use (`--pg-bindir` / `backup.pg_bindir`).
    pub pg_bindir: Option<&'a Path>,
    pub env: &'a BTreeMap<String, String>,
    pub retry: Retry,
    pub progress: bool,
}

impl<'a> Scratch<'a> {
    /// The restore test on `server` as the configuration sets it up (`backup.encryption_key_file`,
    /// `backup.pg_bindir`, the one retry policy of `database.connect_attempts`): what
    /// `backups verify --scratch-db` and `serve`'s scheduled verify both start from.
    pub fn configured(
        server: &'a DbTarget,
        config: &'a Config,
        env: &'a BTreeMap<String, String>,
        progress: bool,
    ) -> Scratch<'a> {
        Scratch {
            server,
            key_file: config.backup.encryption_key_file.as_deref(),
            pg_bindir: config.backup.pg_bindir.as_deref(),
            env,
            retry: Retry::configured(&config.database),
            progress,
        }
    }
}

/// A finished verify.
#[derive(Debug)]
pub struct Verified {
    /// The backup verified.
    pub manifest: Manifest,
    pub checked: Checked,
    /// What was recorded beside the backup.
    pub record: Verification,
}

/// The result of the check that ran.
#[derive(Debug)]
pub enum Checked {
    Checksum(catalog::Check),
    RestoreTest(RestoreTest),
}

impl Checked {
    pub fn ok(&self) -> bool {
        match self {
            Checked::Checksum(c) => c.ok,
            Checked::RestoreTest(t) => t.ok,
        }
    }

    /// What was wrong, in a sentence, when not ok.
    pub fn problem(&self) -> Option<&str> {
        match self {
            Checked::Checksum(c) => c.problem.as_deref(),
            Checked::RestoreTest(t) => t.problem.as_deref(),
        }
    }

    fn kind(&self) -> verification::Check {
        match self {
            Checked::Checksum(_) => verification::Check::Checksum,
            Checked::RestoreTest(_) => verification::Check::Restore,
        }
    }
}

/// The outcome of a full restore test (its JSON is `backups verify --scratch-db --json`'s).
#[derive(Debug, Serialize)]
pub struct RestoreTest {
    pub id: String,
    pub ok: bool,
    pub scratch_server: String,
    pub tables: usize,
    pub rows: i64,
    pub differences: Vec<Difference>,
    /// What was wrong, in a sentence, when not ok.
    pub problem: Option<String>,
    pub duration_s: f64,
    /// What the restore skipped or could not carry over (roles the scratch server lacks, a
    /// locale it lacks), which does not fail the test.
    pub warnings: Vec<String>,
    /// The scratch database the backup was restored into (dropped since); `None` when the
    /// restore did not get that far.
    #[serde(skip)]
    pub database: Option<String>,
}

/// Verify a backup and record the result beside it.
pub async fn verify(v: Verify<'_>) -> Result<Verified> {
    // The restore test restores a pg_dump archive: `latest` is then the newest logical backup,
    // and a physical one is refused by name (its checksum check works for both kinds).
    let manifest = match &v.how {
        How::Checksum => catalog::find(v.storage, v.backup).await?,
        How::RestoreTest(_) => {
            catalog::find_of(
                v.storage,
                v.backup,
                crate::archive::manifest::BackupKind::Logical,
            )
            .await?
        }
    };
    let started = Instant::now();
    let checked = match v.how {
        How::Checksum => {
            // An encrypted physical backup is opened with its key (and so is its WAL): the
            // check then says it can be restored with the key this host has.
            let key = match (&manifest.physical, &manifest.encryption) {
                (Some(_), Some(enc)) => Some(crypt::key_for(
                    &format!("backup {}", manifest.id),
                    &enc.key_id,
                    v.key_file,
                )?),
                _ => None,
            };
            let mut c = catalog::check(v.storage, &manifest, key.as_ref()).await?;
            // A physical backup is only as good as the WAL after it: the chain checked too.
            if c.ok {
                if let Some(chain) =
                    catalog::check_wal_chain(v.storage, &manifest, v.key_file).await?
                {
                    tracing::info!(
                        segments = chain.segments,
                        end = chain.end.as_deref().unwrap_or("none"),
                        "WAL after the base backup checked"
                    );
                    if let Some(p) = chain.problem {
                        c.ok = false;
                        c.problem = Some(p);
                    }
                }
            }
            Checked::Checksum(c)
        }
        How::RestoreTest(s) => Checked::RestoreTest(restore_test(v.storage, &manifest, s).await?),
    };
    let record = Verification::now(
        checked.kind(),
        checked.ok(),
        checked.problem().map(str::to_string),
        match &checked {
            Checked::RestoreTest(t) => t.duration_s,
            Checked::Checksum(_) => started.elapsed().as_secs_f64(),
        },
    );
    verification::record(v.storage, &manifest.id, &record).await;
    Ok(Verified {
        manifest,
        checked,
        record,
    })
}

/// Restore the backup into a scratch database on the scratch server, compare, drop it.
async fn restore_test(storage: &dyn Storage, m: &Manifest, s: Scratch<'_>) -> Result<RestoreTest> {
    let started = Instant::now();
    let report = RestoreTest {
        id: m.id.clone(),
        ok: false,
        scratch_server: format!("{}:{}", s.server.host(), s.server.port()),
        tables: m.tables.len(),
        rows: m.tables.iter().map(|t| t.rows).sum(),
        differences: Vec::new(),
        problem: None,
        duration_s: 0.0,
        warnings: Vec::new(),
        database: None,
    };
    let result = run::scratch_test(RestoreSpec {
        storage,
        manifest: m,
        target: s.server,
        jobs: run::default_jobs(),
        force: false,
        no_owner: true,
        create_roles: false,
        key_file: s.key_file,
        pg_bindir: s.pg_bindir,
        env: s.env,
        retry: s.retry,
        progress: s.progress,
        logs_later: false,
    })
    .await;
    judge(report, result, started.elapsed().as_secs_f64())
}

/// Fill in `report` from the scratch restore's result (pure): differing row counts or a
/// restore that failed (kind Failed: a corrupt object, a pg_restore error) are a failed check;
/// any other error (an unreachable server, a usage error) stays an error.
fn judge(mut report: RestoreTest, result: Result<Tested>, elapsed_s: f64) -> Result<RestoreTest> {
    match result {
        Ok(t) => {
            report.ok = t.differences.is_empty();
            report.duration_s = t.duration_s;
            report.warnings = t.warnings;
            if !report.ok {
                report.problem = Some(plan::describe(&t.differences));
            }
            report.differences = t.differences;
            report.database = Some(t.database);
        }
        Err(e) if e.kind() != Kind::Failed => return Err(e),
        Err(e) => {
            report.problem = Some(e.to_string());
            report.duration_s = elapsed_s;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn skeleton() -> RestoreTest {
        RestoreTest {
            id: "20261124T033000Z-ab12cd".into(),
            ok: false,
            scratch_server: "standby:5432".into(),
            tables: 2,
            rows: 1010,
            differences: Vec::new(),
            problem: None,
            duration_s: 0.0,
            warnings: Vec::new(),
            database: None,
        }
    }

    fn tested(differences: Vec<Difference>) -> Tested {
        Tested {
            database: "kasm_db_verify_restore_20261124033000".into(),
            tables: 2,
            rows: 1010,
            differences,
            duration_s: 4.5,
            warnings: vec!["role kasmapp is missing: skipped".into()],
        }
    }

    #[test]
    fn matching_counts_pass_and_name_the_scratch_database() {
        let r = judge(skeleton(), Ok(tested(Vec::new())), 9.0).unwrap();
        assert!(r.ok);
        assert_eq!(r.problem, None);
        assert_eq!(r.duration_s, 4.5);
        assert_eq!(r.warnings.len(), 1);
        assert_eq!(
            r.database.as_deref(),
            Some("kasm_db_verify_restore_20261124033000")
        );
        let c = Checked::RestoreTest(r);
        assert!(c.ok());
        assert_eq!(c.kind(), verification::Check::Restore);
        // The scratch database's name is not part of the JSON.
        let Checked::RestoreTest(r) = c else {
            unreachable!()
        };
        let json = serde_json::to_value(&r).unwrap();
        assert!(json.get("database").is_none(), "{json}");
        assert_eq!(json["scratch_server"], "standby:5432");
    }

    #[test]
    fn differing_counts_fail_the_check_and_say_where() {
        let d = Difference {
            table: "public.users".into(),
            expected_rows: 1000,
            rows: Some(999),
        };
        let r = judge(skeleton(), Ok(tested(vec![d.clone()])), 9.0).unwrap();
        assert!(!r.ok);
        assert_eq!(r.differences, vec![d.clone()]);
        assert_eq!(r.problem, Some(plan::describe(&[d])));
        let c = Checked::RestoreTest(r);
        assert!(!c.ok());
        assert!(c.problem().unwrap().contains("public.users"), "{c:?}");
    }

    #[test]
    fn a_failed_restore_is_a_failed_check_and_an_unreachable_server_an_error() {
        let r = judge(
            skeleton(),
            Err(Error::failed("SHA-256 differs: the object is corrupt")),
            2.5,
        )
        .unwrap();
        assert!(!r.ok);
        assert!(r.problem.as_deref().unwrap().contains("corrupt"));
        assert_eq!((r.duration_s, r.database), (2.5, None));
        let e = judge(skeleton(), Err(Error::temporary("connection refused")), 2.5).unwrap_err();
        assert_eq!(e.kind(), Kind::Temporary);
        let e = judge(skeleton(), Err(Error::usage("bad --scratch-db")), 2.5).unwrap_err();
        assert_eq!(e.kind(), Kind::Usage);
    }
}
