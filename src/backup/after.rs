//! What follows every successful backup, from the command line and from `serve`'s schedule
//! alike: a copy to each `backup.copy_to` target (3-2-1, through [`crate::archive::copy`]),
//! then the `keep_*` policy applied to the backup's own target and to each target the copy
//! reached, through the same prune operation as `backups prune` ([`super::backups`]), never
//! deleting the backup just made.
//!
//! Every step is tried whatever the others did, and each one's outcome is reported; a failed
//! step makes [`AfterReport::failure`] say so (the job fails) but never touches the backup just
//! made: a copy only reads it, a prune protects it. Never prints a credential: targets are
//! described as an operator writes them.

use super::backups::{self, PruneReport};
use super::prune::Policy;
use crate::archive::copy;
use crate::archive::manifest::Manifest;
use crate::archive::storage::{self, Storage};
use crate::archive::target::Target;
use crate::config::Config;
use crate::error::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// The steps after one backup.
pub struct After<'a> {
    pub config: &'a Config,
    /// The backup's own target.
    pub primary: &'a dyn Storage,
    /// The backup just made.
    pub manifest: &'a Manifest,
    /// Apply the `keep_*` policy (false with `backup --no-prune`, or when no policy is set).
    pub prune: bool,
    /// Where to copy it (`backup.copy_to`).
    pub copy_to: &'a [Target],
    pub now: DateTime<Utc>,
}

/// One target's copy, as the backup's result shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CopyOutcome {
    /// The target, as an operator writes it (no credentials).
    pub target: String,
    pub ok: bool,
    /// Bytes of the data object written.
    pub bytes: u64,
    /// Why it failed (null when ok).
    pub error: Option<String>,
    /// The backups the policy deleted there afterwards.
    pub pruned: Vec<String>,
    /// Backups the policy would delete there that are still under Object Lock retention.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locked: Vec<String>,
}

/// What followed the backup.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AfterReport {
    /// The backups the policy deleted from the backup's own target.
    pub pruned: Vec<String>,
    /// Why pruning the backup's own target failed (null when it did not run or succeeded).
    pub prune_error: Option<String>,
    /// Backups kept because they are still under Object Lock retention.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locked: Vec<String>,
    /// Housekeeping warnings of the prunes (the prunes themselves succeeded).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prune_warnings: Vec<String>,
    pub copies: Vec<CopyOutcome>,
}

impl AfterReport {
    /// Why the job failed after its backup succeeded; `None` when every step succeeded.
    pub fn failure(&self, id: &str) -> Option<String> {
        let mut why = Vec::new();
        if let Some(e) = &self.prune_error {
            why.push(format!("pruning failed: {e}"));
        }
        for c in self.copies.iter().filter(|c| !c.ok) {
            why.push(format!(
                "the copy to {} failed: {}",
                c.target,
                c.error.as_deref().unwrap_or("unknown error")
            ));
        }
        (!why.is_empty()).then(|| {
            format!(
                "backup {id} succeeded and is intact, but {}",
                why.join("; and ")
            )
        })
    }
}

/// Copy, then prune; see the module's description.
pub async fn run(a: After<'_>) -> AfterReport {
    let id = a.manifest.id.as_str();
    let policy = Policy::configured(&a.config.backup);
    let prune = a.prune && !policy.is_empty();
    let mut report = AfterReport::default();
    for target in a.copy_to {
        let mut outcome = CopyOutcome {
            target: target.to_string(),
            ok: false,
            bytes: 0,
            error: None,
            pruned: Vec::new(),
            locked: Vec::new(),
        };
        let copied: Result<_> = async {
            let dst = storage::open(target, a.config).await?;
            outcome.target = dst.describe();
            let c = copy::copy_manifest(a.primary, dst.as_ref(), a.manifest).await?;
            Ok((dst, c))
        }
        .await;
        match copied {
            Ok((dst, c)) => {
                outcome.ok = true;
                outcome.bytes = c.bytes;
                if prune {
                    match backups::prune_keeping(dst.as_ref(), policy, false, a.now, Some(id)).await
                    {
                        Ok(p) => {
                            outcome.pruned = p.deleted.clone();
                            outcome.locked = p.locked.clone();
                            report.prune_warnings.extend(warnings(&outcome.target, &p));
                        }
                        Err(e) => {
                            outcome.ok = false;
                            outcome.error = Some(format!("copied, but pruning failed: {e}"));
                        }
                    }
                }
            }
            Err(e) => outcome.error = Some(e.to_string()),
        }
        if let Some(e) = &outcome.error {
            tracing::error!(backup = id, target = %outcome.target, error = %e, "copy failed");
        }
        report.copies.push(outcome);
    }
    if prune {
        match backups::prune_keeping(a.primary, policy, false, a.now, Some(id)).await {
            Ok(p) => {
                report
                    .prune_warnings
                    .extend(warnings(&a.primary.describe(), &p));
                report.pruned = p.deleted;
                report.locked = p.locked;
            }
            Err(e) => {
                tracing::error!(backup = id, target = %a.primary.describe(), error = %e, "prune failed");
                report.prune_error = Some(e.to_string());
            }
        }
    }
    report
}

fn warnings(target: &str, p: &PruneReport) -> Vec<String> {
    p.warnings
        .iter()
        .map(|w| format!("{target}: {w}"))
        .collect()
}

/// `backup.copy_to` parsed; a target that is not one, or is the backup's own `primary`, is a
/// usage error (exit 2) before anything runs.
pub fn copy_targets(config: &Config, primary: &Target) -> Result<Vec<Target>> {
    crate::archive::target::copy_targets(&config.backup.copy_to, primary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_targets_are_parsed_deduplicated_and_never_the_primary() {
        let mut c = Config::default();
        c.backup.copy_to = vec![
            "s3://other/p".into(),
            "/mnt/nfs/kasm".into(),
            "file:///mnt/nfs/kasm".into(),
        ];
        let primary = Target::parse("/var/backups").unwrap();
        let t = copy_targets(&c, &primary).unwrap();
        assert_eq!(
            t.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
            ["s3://other/p", "/mnt/nfs/kasm"]
        );
        c.backup.copy_to.push("file:///var/backups".into());
        let e = copy_targets(&c, &primary).unwrap_err();
        assert_eq!(e.kind(), crate::error::Kind::Usage);
        c.backup.copy_to = vec!["relative/dir".into()];
        let e = copy_targets(&c, &primary).unwrap_err();
        assert!(e.to_string().contains("backup.copy_to"), "{e}");
    }

    #[test]
    fn a_failure_says_the_backup_is_intact_and_names_each_failed_step() {
        let mut r = AfterReport::default();
        assert_eq!(r.failure("B1"), None);
        r.copies.push(CopyOutcome {
            target: "s3://b/p".into(),
            ok: false,
            bytes: 0,
            error: Some("unreachable".into()),
            pruned: vec![],
            locked: vec![],
        });
        r.prune_error = Some("permission denied".into());
        let why = r.failure("B1").unwrap();
        assert!(
            why.starts_with("backup B1 succeeded and is intact, but "),
            "{why}"
        );
        assert!(why.contains("pruning failed: permission denied"), "{why}");
        assert!(
            why.contains("the copy to s3://b/p failed: unreachable"),
            "{why}"
        );
    }
}
