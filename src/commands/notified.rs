//! The command line's side of `[notify]`: a command of a notifying job (backup, `backups
//! verify`, purge, vacuum, restore) runs inside [`crate::notify::Notifier::around`], the same
//! wrapper `serve`'s schedule uses; here only how a command's [`Outcome`] reads as a
//! notification (a failed check is a failure; the backup's id from the contract's JSON).
//!
//! Never changes the command's result or exit code; an undelivered notification is the
//! notifier's warning on stderr. Shows targets only as the rest of kasm-db does (no credentials).

use super::Ctx;
use crate::archive::target::Target;
use crate::error::Result;
use crate::notify::{Finish, Job, Notifier, host_name};
use crate::output::Outcome;
use std::future::Future;

/// Run `command` as `job` on `target`, notifying as `[notify]` asks. `requested` is the backup
/// the command was asked for (`verify`, `restore`), named when it fails before finding it.
pub async fn run(
    ctx: &Ctx,
    job: Job,
    target: Option<String>,
    requested: Option<&str>,
    command: impl Future<Output = Result<Outcome>>,
) -> Result<Outcome> {
    if ctx.config.notify.urls.is_empty() {
        return command.await;
    }
    let notifier = match Notifier::new(&ctx.config.notify, host_name()) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "notifications are off for this run");
            return command.await;
        }
    };
    let requested = requested.filter(|id| *id != "latest").map(String::from);
    notifier
        .around(job, target, command, |r| judge(job, requested, r))
        .await
}

/// A backup target as the notification names it: `--to`/`--from`, else `backup.to`.
pub fn backup_target(flag: Option<&str>, ctx: &Ctx) -> Option<String> {
    Target::resolve(flag, ctx.config.backup.to.as_deref(), "--to")
        .ok()
        .map(|t| t.to_string())
}

fn judge(job: Job, requested: Option<String>, r: &Result<Outcome>) -> Finish {
    match r {
        Ok(o) => {
            let key = match job {
                Job::Backup | Job::Verify => "id",
                Job::Restore => "backup",
                Job::Purge | Job::Vacuum | Job::Wal => "",
            };
            let backup = o
                .json
                .get(key)
                .and_then(|v| v.as_str())
                .map(String::from)
                .or(requested);
            if o.ok {
                Finish::Success { backup }
            } else {
                Finish::Failure {
                    backup,
                    error: after_backup(&o.json).unwrap_or_else(|| failed_check(&o.text)),
                }
            }
        }
        Err(e) => Finish::Failure {
            backup: requested,
            error: e.to_string(),
        },
    }
}

/// Why a backup that was made still failed: its prune or a copy (`backup --json`'s
/// `prune_error`, `copies[].error`), named before the backup's own first line would be.
fn after_backup(json: &serde_json::Value) -> Option<String> {
    let copies = json.get("copies").and_then(|c| c.as_array());
    let copy_errors = copies.into_iter().flatten().filter_map(|c| {
        let error = c.get("error")?.as_str()?;
        let target = c.get("target").and_then(|t| t.as_str()).unwrap_or("?");
        Some(format!("copy to {target} failed: {error}"))
    });
    let prune = json
        .get("prune_error")
        .and_then(|e| e.as_str())
        .map(|e| format!("prune failed: {e}"));
    let all: Vec<String> = prune.into_iter().chain(copy_errors).collect();
    (!all.is_empty()).then(|| all.join("; "))
}

/// The reason of a failed check: the first line of its text that says something (a vacuum's
/// `!! WRAPAROUND ...` banner line, a verify's `backup X NOT ok: ...`).
fn failed_check(text: &str) -> String {
    text.lines()
        .map(|l| l.trim().trim_start_matches('!').trim())
        .find(|l| !l.is_empty())
        .map_or_else(
            || "the check failed".to_string(),
            |l| format!("check failed: {l}"),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_check_is_a_failure_with_its_first_line() {
        let o = Outcome::new(
            &serde_json::json!({"id": "b1", "ok": false}),
            "backup b1 NOT ok: sha256 differs\nmore",
        )
        .failed_check();
        assert_eq!(
            judge(Job::Verify, None, &Ok(o)),
            Finish::Failure {
                backup: Some("b1".into()),
                error: "check failed: backup b1 NOT ok: sha256 differs".into()
            }
        );
        let pruned = Outcome::new(
            &serde_json::json!({"id": "b0", "ok": false, "prune_error": "permission denied",
                "copies": [{"target": "/nfs", "ok": false, "error": "disk full"}]}),
            "backup b0 of kasm written to /x",
        )
        .failed_check();
        assert_eq!(
            judge(Job::Backup, None, &Ok(pruned)),
            Finish::Failure {
                backup: Some("b0".into()),
                error: "prune failed: permission denied; copy to /nfs failed: disk full".into()
            }
        );
        let banner = format!("{}\n!! WRAPAROUND risk in t\n", "!".repeat(78));
        assert_eq!(failed_check(&banner), "check failed: WRAPAROUND risk in t");
        let ok = Outcome::new(&serde_json::json!({"backup": "b2"}), "restored");
        assert_eq!(
            judge(Job::Restore, None, &Ok(ok)),
            Finish::Success {
                backup: Some("b2".into())
            }
        );
        let e = crate::Error::failed("no such backup");
        assert_eq!(
            judge(Job::Restore, Some("b3".into()), &Err(e)),
            Finish::Failure {
                backup: Some("b3".into()),
                error: "no such backup".into()
            }
        );
    }
}
