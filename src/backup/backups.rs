//! The `backups list` and `backups prune` operations on a target's storage: the complete
//! backups with their latest verification, and applying the pure GFS policy of
//! [`super::prune`] (delete the backups it does not keep, manifest first; leftovers of dead
//! runs older than a day; stale multipart uploads). Typed reports; the command
//! (`crate::commands::backup`) reads the flags and the clock and shapes the output.
//!
//! Never deletes a backup the policy keeps, nor a leftover that may still be running.

use super::prune::{self, Policy};
use crate::archive::catalog;
use crate::archive::manifest;
use crate::archive::storage::{self, Storage};
use crate::archive::verification;
use crate::error::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Leftovers of dead runs younger than this are left alone (they may be running).
const LEFTOVER_AGE: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// One complete backup, as `backups list --json` shows it.
#[derive(Serialize)]
pub struct Listed {
    pub id: String,
    pub created: DateTime<Utc>,
    pub size_bytes: u64,
    pub sha256: String,
    pub database: String,
    pub object: String,
    pub exclude_logs: bool,
    /// The tables whose data was left out.
    pub excluded: Vec<String>,
    /// Kasm's schema revision in the backup; null when the database has no `alembic_version`.
    pub alembic_version: Option<String>,
    /// The latest `backups verify` (or scheduled verify) of this backup; null when never run.
    pub verified: Option<verification::Verification>,
    /// Why its verification record could not be read, when it is there but unreadable (then
    /// `verified` is null and `backups check` fails: it may hold a failed verification).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_unreadable: Option<String>,
    /// How long the backup took, seconds.
    pub duration_s: f64,
    /// `logical` (pg_dump of one database) or `physical` (pg_basebackup of the cluster).
    pub kind: manifest::BackupKind,
    /// A physical backup's WAL start and stop positions and timeline (absent for logical).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_lsn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_lsn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    /// A physical backup's window of point-in-time recovery: from when it completed to when the
    /// newest WAL after it was stored (the completion time when none is), or, when a segment
    /// is missing from its chain, to when the WAL before that hole was stored (recovery cannot
    /// pass it; `backups verify` also checks each segment's SHA-256).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recoverable_from: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recoverable_until: Option<DateTime<Utc>>,
    /// The first WAL segment missing from a physical backup's chain, when one is (`backups
    /// check` fails on one after the newest physical backup).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_hole: Option<String>,
}

/// The complete backups in `storage`, newest first, each with its latest verification.
pub async fn list(storage: &dyn Storage) -> Result<Vec<Listed>> {
    // One listing, for the backups and for the WAL archive after the physical ones.
    let objects = storage.list().await?;
    let all = catalog::scan_listed(storage, &objects).await?.complete;
    let archived =
        crate::archive::wal::Archived::new(objects.iter().map(|o| (o.name.as_str(), o.modified)));
    let mut items: Vec<Listed> = Vec::with_capacity(all.len());
    for m in &all {
        let (verified, verification_unreadable) = match verification::latest(storage, &m.id).await {
            Ok(v) => (v, None),
            Err(why) => {
                tracing::warn!(id = m.id, error = %why, "unreadable verification record");
                (None, Some(why))
            }
        };
        let reach = m.physical.as_ref().map(|p| {
            archived.reaches(
                p.timeline,
                &p.stop_segment,
                p.wal_segment_bytes,
                m.completed,
            )
        });
        items.push(Listed {
            id: m.id.clone(),
            created: m.created,
            size_bytes: m.size_bytes,
            sha256: m.sha256.clone(),
            database: m.database.clone(),
            object: m.location.clone(),
            exclude_logs: m.exclude_logs,
            excluded: m.excluded_tables(),
            alembic_version: m.alembic_version.clone(),
            verified,
            verification_unreadable,
            duration_s: m.timings.total_s,
            kind: m.kind,
            start_lsn: m.physical.as_ref().map(|p| p.start_lsn.clone()),
            stop_lsn: m.physical.as_ref().map(|p| p.stop_lsn.clone()),
            timeline: m.physical.as_ref().map(|p| p.timeline),
            recoverable_from: m.physical.as_ref().map(|_| m.completed),
            // Up to the first hole in its chain: recovery cannot pass one.
            recoverable_until: reach.as_ref().map(|r| r.0),
            wal_hole: reach.and_then(|r| r.1),
        });
    }
    Ok(items)
}

/// How long `size` and the report wait for a listing before they show the backups as unknown.
pub const LIST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The configured target (`backup.to`) listed, for the verdict `size` and the report show:
/// `None` without one; else the target as text (no credentials) and its listing, or why it
/// could not be read (within [`LIST_TIMEOUT`]).
pub async fn configured(
    config: &crate::config::Config,
) -> Option<(String, std::result::Result<Vec<Listed>, String>)> {
    let to = config.backup.to.as_deref()?;
    let label = crate::db::target::redact_url(to);
    let listed = async {
        let target = crate::archive::target::Target::parse(to)?;
        let storage = crate::archive::storage::open(&target, config).await?;
        list(storage.as_ref()).await
    };
    let listed = match tokio::time::timeout(LIST_TIMEOUT, listed).await {
        Ok(Ok(l)) => Ok(l),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no listing within {} s", LIST_TIMEOUT.as_secs())),
    };
    Some((label, listed))
}

/// What a prune did (or, dry, would do): `backups prune --json`.
#[derive(Serialize)]
pub struct PruneReport {
    pub kept: Vec<String>,
    pub deleted: Vec<String>,
    /// Backups without a manifest (dead runs) older than a day, removed.
    pub leftovers_deleted: Vec<String>,
    /// Multipart uploads of dead runs older than a day, aborted (S3).
    pub uploads_aborted: Vec<String>,
    /// Backups the policy would delete that are still under S3 Object Lock retention: kept
    /// (listed, whole) until a later prune finds their retention passed.
    pub locked: Vec<String>,
    /// Archived WAL segments no kept physical backup needs, removed (objects and records
    /// counted once per segment); 0 without physical backups (then no WAL is ever removed).
    pub wal_segments_deleted: usize,
    /// Housekeeping the target could not do (e.g. a store without ListMultipartUploads, an
    /// object still under retention); the prune itself succeeded.
    pub warnings: Vec<String>,
    pub dry_run: bool,
}

/// Apply `policy` to the backups in `storage` as of `now` (a dry run deletes nothing).
pub async fn prune(
    storage: &dyn Storage,
    policy: Policy,
    dry_run: bool,
    now: DateTime<Utc>,
) -> Result<PruneReport> {
    prune_keeping(storage, policy, dry_run, now, None).await
}

/// [`prune`], never deleting the backup `protect` whatever the policy (the one a backup just
/// made: newest by its own clock, but another writer's clock may disagree).
pub async fn prune_keeping(
    storage: &dyn Storage,
    policy: Policy,
    dry_run: bool,
    now: DateTime<Utc>,
    protect: Option<&str>,
) -> Result<PruneReport> {
    let objects = storage.list().await?;
    let all = catalog::complete(storage).await?;
    // The policy applies to each kind on its own: `keep_last = 7` keeps seven dumps and seven
    // base backups, and the newest of each kind is always kept.
    let mut decision = prune::Decision::default();
    for kind in [
        manifest::BackupKind::Logical,
        manifest::BackupKind::Physical,
    ] {
        let d = prune::decide(
            &all.iter()
                .filter(|m| m.kind == kind)
                .map(|m| (m.id.clone(), m.created))
                .collect::<Vec<_>>(),
            policy,
        );
        decision.keep.extend(d.keep);
        decision.delete.extend(d.delete);
    }
    if let Some(p) = protect {
        if let Some(i) = decision.delete.iter().position(|id| id == p) {
            let id = decision.delete.remove(i);
            decision.keep.insert(0, id);
        }
    }
    let listing = manifest::group(&objects);
    let stale: Vec<(String, Vec<String>)> = listing
        .leftovers
        .iter()
        .filter(|(_, objs)| objs.iter().all(|o| o.modified < now - LEFTOVER_AGE))
        .map(|(id, objs)| (id.clone(), objs.iter().map(|o| o.name.clone()).collect()))
        .collect();
    let mut report = PruneReport {
        kept: decision.keep,
        deleted: decision.delete,
        leftovers_deleted: stale.iter().map(|(id, _)| id.clone()).collect(),
        uploads_aborted: Vec::new(),
        locked: Vec::new(),
        wal_segments_deleted: 0,
        warnings: Vec::new(),
        dry_run,
    };
    // WAL no kept physical backup needs (from the backups kept now, and any that stay locked).
    let kept_physical: Vec<(u32, String)> = all
        .iter()
        .filter(|m| report.kept.contains(&m.id))
        .filter_map(|m| {
            let p = m.physical.as_ref()?;
            let start = crate::archive::wal::Lsn::parse(&p.start_lsn)?;
            Some((p.timeline, start.segment(p.timeline, p.wal_segment_bytes)))
        })
        .collect();
    let wal_gone =
        crate::archive::wal::prune_plan(objects.iter().map(|o| o.name.as_str()), &kept_physical);
    report.wal_segments_deleted = wal_gone.iter().filter(|n| n.ends_with(".json")).count();
    if !dry_run {
        let mut deleted = Vec::with_capacity(report.deleted.len());
        for id in std::mem::take(&mut report.deleted) {
            // The manifest first: from then on the backup is no longer listed. One still under
            // retention keeps the whole backup listed until a later prune.
            let mname = manifest::manifest_name(&id);
            match storage.delete(&mname).await {
                Ok(()) => {}
                Err(e) if storage::is_locked(&e) => {
                    tracing::warn!(id, error = %e, "kept: still under S3 Object Lock retention");
                    report
                        .warnings
                        .push(format!("backup {id} kept until its retention passes: {e}"));
                    report.locked.push(id);
                    continue;
                }
                Err(e) => return Err(e),
            }
            for o in objects
                .iter()
                .filter(|o| o.name.starts_with(&format!("{id}/")))
            {
                if o.name != mname {
                    storage.delete(&o.name).await?;
                }
            }
            deleted.push(id);
        }
        report.deleted = deleted;
        // Backups still under retention keep their WAL too.
        if report.locked.is_empty() {
            for n in &wal_gone {
                match storage.delete(n).await {
                    Ok(()) => {}
                    Err(e) if storage::is_locked(&e) => report.warnings.push(e.to_string()),
                    Err(e) => return Err(e),
                }
            }
        } else {
            report.wal_segments_deleted = 0;
        }
        for (_, names) in &stale {
            for n in names {
                match storage.delete(n).await {
                    Ok(()) => {}
                    Err(e) if storage::is_locked(&e) => report.warnings.push(e.to_string()),
                    Err(e) => return Err(e),
                }
            }
        }
        // Housekeeping: a store that cannot list or abort uploads does not fail the prune.
        match storage.abort_stale_uploads(now - LEFTOVER_AGE).await {
            Ok(aborted) => report.uploads_aborted = aborted,
            Err(e) => {
                tracing::warn!(error = %e, "stale multipart uploads were not cleaned");
                report.warnings.push(e.to_string());
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::storage::Retain;
    use crate::archive::storage::fs::FsStorage;
    use crate::config::file_mode::FileMode;

    async fn put_backup(s: &FsStorage, id: &str, created: DateTime<Utc>) {
        // A manifest complete enough for the catalog.
        let text = format!(
            r#"{{"format":1,"id":"{id}","created":"{c}","completed":"{c}","database":"d",
            "dbname":"d","server_version":"17","pg_dump_version":"17","object":"{id}/dump.gz",
            "location":"/x/{id}/dump.gz","size_bytes":1,"sha256":"00","dump_bytes":1,
            "format_of_dump":"custom","compression":{{"kind":"gzip","level":6,"block_bytes":1}},
            "encryption":null,"server_side_encryption":null,"exclude_logs":false,"tables":[],
            "timings":{{"count_s":0,"dump_s":0,"total_s":0}},"restore":"r"}}"#,
            c = created.to_rfc3339()
        );
        s.put_small(&format!("{id}/dump.gz"), b"x".to_vec(), Retain::No)
            .await
            .unwrap();
        s.put_small(
            &manifest::manifest_name(id),
            text.into_bytes(),
            Retain::WithBackup,
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn the_protected_backup_is_kept_whatever_the_clocks_say() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::new(dir.path().to_path_buf(), FileMode::PRIVATE);
        let now = Utc::now();
        // Another writer's clock put its backup in the future of ours.
        put_backup(&s, "ours", now).await;
        put_backup(&s, "theirs", now + chrono::TimeDelta::hours(1)).await;
        let policy = Policy {
            last: Some(1),
            ..Policy::default()
        };
        let dry = prune(&s, policy, true, now).await.unwrap();
        assert_eq!(dry.deleted, ["ours"]);
        let r = prune_keeping(&s, policy, false, now, Some("ours"))
            .await
            .unwrap();
        assert!(r.deleted.is_empty(), "{:?}", r.deleted);
        assert_eq!(r.kept.len(), 2);
        assert_eq!(catalog::complete(&s).await.unwrap().len(), 2);
    }
}
