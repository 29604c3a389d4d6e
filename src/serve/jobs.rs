//! Running the scheduled jobs: one task per job sleeps until its next slot (UTC), then runs it
//! only if this replica wins the job's advisory lock and the slot is not yet recorded in
//! `schedule_runs` (so among several replicas a slot runs once, and never two at a time).
//!
//! The lock is the job's lock of the registry ([`crate::db::locks`]), the one the job's
//! command-line run takes too, so a scheduled job and `kasm-db <job>` never run at once. The
//! backup, purge and vacuum operations take theirs themselves, for both (a slot that finds it
//! held counts as `locked_elsewhere`); the slot takes the others ([`slot_lock`]) on a dedicated
//! connection that is closed after the job, so a crashed replica never keeps it. A job runs to completion before its next slot is computed, so an
//! overrunning job is never started twice; missed slots are skipped, not queued. A failing job
//! is logged, counted in the metrics and tried again at its next slot; it never stops `serve`.

use super::metrics::Metrics;
use super::schedule::{ScheduledJob, Task};
use crate::config::Config;
use crate::db::locks::{self, Lock};
use crate::db::{self, DbTarget, Pool, Retry, ident};
use crate::error::Result;
use crate::notify::{Finish, Job, Notifier};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What jobs need, passed explicitly.
pub struct JobEnv {
    pub pool: Pool,
    pub target: DbTarget,
    pub config: Config,
    pub metrics: Arc<Metrics>,
    /// This replica's name in `schedule_runs` (host:pid).
    pub runner: String,
    /// The process environment, for pg_dump (PATH, HOME) and the S3 credential chain.
    pub env: std::collections::BTreeMap<String, String>,
    /// The backups' state of `/metrics`, listed again after a backup or verify ran here.
    pub backup_status: Option<Arc<super::backup_status::BackupStatus>>,
    /// `[notify]`: the same wrapper the command line runs its jobs in.
    pub notifier: Notifier,
}

/// Run `job` at each of its slots until `stop` turns true.
pub async fn run_job(env: Arc<JobEnv>, job: ScheduledJob, mut stop: watch::Receiver<bool>) {
    let name = job.task.name();
    loop {
        let Some(slot) = job.next_after(Utc::now()) else {
            tracing::warn!(job = name, "schedule has no future slot; not running it");
            return;
        };
        let wait = (slot - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        run_slot(&env, job.task, slot).await;
    }
}

/// The outcome of one slot, as counted in `kasm_db_job_runs_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotResult {
    Ok,
    Failed,
    /// Another replica holds the job's lock (it is running the job).
    Locked,
    /// Another replica already ran this slot.
    AlreadyRun,
    /// The database could not be reached for the lock.
    Unavailable,
    /// A backup or verify slot with no `backup.to` configured.
    NotConfigured,
}

impl SlotResult {
    fn as_str(self) -> &'static str {
        match self {
            SlotResult::Ok => "ok",
            SlotResult::Failed => "failed",
            SlotResult::Locked => "locked_elsewhere",
            SlotResult::AlreadyRun => "already_run",
            SlotResult::Unavailable => "unavailable",
            SlotResult::NotConfigured => "not_configured",
        }
    }
}

pub async fn run_slot(env: &JobEnv, task: Task, slot: DateTime<Utc>) -> SlotResult {
    let r = slot_inner(env, task, slot).await;
    env.metrics.add(
        "job_runs_total",
        &[("job", task.name()), ("result", r.as_str())],
        1,
    );
    r
}

async fn slot_inner(env: &JobEnv, task: Task, slot: DateTime<Utc>) -> SlotResult {
    let name = task.name();
    if matches!(task, Task::Backup | Task::Verify) && env.config.backup.to.is_none() {
        tracing::warn!(job = name, %slot, "no backup.to configured; skipping this slot");
        return SlotResult::NotConfigured;
    }
    let client = match db::connect(&env.target, Retry::once()).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(job = name, %slot, error = %e, "database unavailable; job retried at its next slot");
            return SlotResult::Unavailable;
        }
    };
    let schema = &env.config.database.schema;
    let claimed: Result<Option<SlotResult>> = async {
        if let Some(lock) = slot_lock(task) {
            if !locks::try_lock(&client, lock).await? {
                return Ok(Some(SlotResult::Locked));
            }
        }
        let inserted = client
            .execute(
                &format!(
                    "INSERT INTO {}.schedule_runs (job, slot, runner) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                    ident(schema)
                ),
                &[&name, &slot, &env.runner],
            )
            .await?;
        Ok((inserted == 0).then_some(SlotResult::AlreadyRun))
    }
    .await;
    match claimed {
        Ok(Some(skip)) => {
            tracing::info!(job = name, %slot, reason = skip.as_str(), "not running this slot here");
            return skip;
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(job = name, %slot, error = %e, "cannot claim the slot; job retried at its next slot");
            return SlotResult::Unavailable;
        }
    }
    tracing::info!(job = name, %slot, "job started");
    let started = Instant::now();
    // The job's own time, without its notifications' delivery.
    let took = std::sync::OnceLock::new();
    let work = async {
        let r = execute(env, task).await;
        let _ = took.set(started.elapsed());
        r
    };
    let outcome = match notified_job(task) {
        Some(job) => {
            let target = job_target(env, task);
            env.notifier.around(job, target, work, judge).await
        }
        None => work.await,
    };
    let secs = took
        .get()
        .copied()
        .unwrap_or(started.elapsed())
        .as_secs_f64();
    if let (Task::Backup | Task::Verify, Some(b)) = (task, &env.backup_status) {
        b.invalidate();
    }
    env.metrics
        .set("job_last_duration_seconds", &[("job", name)], secs);
    // The operation's own lock (backup's, purge's, vacuum's) was held: another run has the job.
    let busy = outcome.as_ref().err().is_some_and(locks::is_busy);
    let (ok, error) = match &outcome {
        Ok(summary) => {
            tracing::info!(job = name, %slot, duration_s = secs, result = %summary.summary, "job done");
            env.metrics.set(
                "job_last_success_timestamp_seconds",
                &[("job", name)],
                Utc::now().timestamp() as f64,
            );
            (true, None)
        }
        Err(e) if busy => {
            tracing::info!(job = name, %slot, reason = SlotResult::Locked.as_str(), error = %e, "not running this slot here");
            (false, Some(e.to_string()))
        }
        Err(e) => {
            tracing::error!(job = name, %slot, duration_s = secs, error = %e, "job failed; retried at its next slot");
            (false, Some(e.to_string()))
        }
    };
    let recorded = client
        .execute(
            &format!(
                "UPDATE {}.schedule_runs SET finished_at = clock_timestamp(), ok = $3, error = $4
                 WHERE job = $1 AND slot = $2",
                ident(schema)
            ),
            &[&name, &slot, &ok, &error],
        )
        .await;
    if let Err(e) = recorded {
        tracing::warn!(job = name, %slot, error = %e, "cannot record the job's end");
    }
    // Dropping `client` closes the session, which releases the advisory lock.
    if ok {
        SlotResult::Ok
    } else if busy {
        SlotResult::Locked
    } else {
        SlotResult::Failed
    }
}

/// The lock a slot of `task` is claimed under: the job's lock of the registry. `None` for a
/// backup, a purge and a vacuum, whose operations take theirs ([`Lock::Backup`], [`Lock::Purge`],
/// [`Lock::Vacuum`]) themselves, for the command line and the slot alike (so the two exclude
/// each other there; finding it held counts as `locked_elsewhere`).
pub fn slot_lock(task: Task) -> Option<Lock<'static>> {
    match task {
        Task::Purge | Task::Backup | Task::Vacuum => None,
        Task::SizeSample => Some(Lock::SizeSample),
        Task::Verify => Some(Lock::Verify),
    }
}

/// The job a scheduled task notifies as (`size_sample` does not notify).
fn notified_job(task: Task) -> Option<Job> {
    match task {
        Task::Backup => Some(Job::Backup),
        Task::Verify => Some(Job::Verify),
        Task::Purge => Some(Job::Purge),
        Task::Vacuum => Some(Job::Vacuum),
        Task::SizeSample => None,
    }
}

/// What a task works on, as its notification names it: the backup target or the database.
fn job_target(env: &JobEnv, task: Task) -> Option<String> {
    match task {
        Task::Backup | Task::Verify => env.config.backup.to.as_deref().and_then(|t| {
            crate::archive::target::Target::parse(t)
                .ok()
                .map(|t| t.to_string())
        }),
        _ => Some(env.target.redacted()),
    }
}

/// A slot's result as its notification tells it; another run holding the job's lock is no
/// run of it here (`locked_elsewhere`), so it sends no end notification.
fn judge(r: &Result<Done>) -> Finish {
    match r {
        Ok(done) => Finish::Success {
            backup: done.backup.clone(),
        },
        Err(e) if locks::is_busy(e) => Finish::Silent,
        Err(_) => Finish::of(r),
    }
}

/// A finished job: a one-line summary, and the backup it made or checked.
struct Done {
    summary: String,
    backup: Option<String>,
}

impl From<String> for Done {
    fn from(summary: String) -> Done {
        Done {
            summary,
            backup: None,
        }
    }
}

/// Do the job's work; a one-line summary on success.
async fn execute(env: &JobEnv, task: Task) -> Result<Done> {
    let schema = &env.config.database.schema;
    match task {
        Task::Purge => {
            let r = crate::logs::purge::purge(
                &env.pool,
                &env.target.redacted(),
                schema,
                &env.config.retention,
                Utc::now(),
                false,
            )
            .await?;
            let mut summary = format!(
                "{} debug and {} logs rows deleted, {} partitions dropped",
                r.debug_deleted, r.logs_deleted, r.partitions_dropped
            );
            if let Some(cap) = &r.cap {
                for class in crate::logs::record::Class::ALL {
                    let n = cap.dropped.iter().filter(|d| d.class == class).count();
                    env.metrics.add(
                        "purge_cap_dropped_partitions_total",
                        &[("class", class.as_str())],
                        n as u64,
                    );
                }
                env.metrics
                    .set("logs_cap_within", &[], f64::from(u8::from(cap.within)));
            }
            if let Some(cap) = r
                .cap
                .as_ref()
                .filter(|c| !c.dropped.is_empty() || !c.within)
            {
                let names: Vec<&str> = cap.dropped.iter().map(|d| d.partition.as_str()).collect();
                summary.push_str(&format!(
                    "; size cap retention.max_bytes: {} dropped early ({}), logs {} -> {} bytes{}",
                    names.len(),
                    names.join(", "),
                    cap.before_bytes,
                    cap.after_bytes,
                    if cap.within {
                        ""
                    } else {
                        ", still over the cap"
                    }
                ));
            }
            Ok(summary.into())
        }
        Task::Vacuum => {
            let r = crate::maintenance::vacuum::run(
                &env.pool,
                &env.target.redacted(),
                &env.config,
                false,
                false,
            )
            .await?;
            Ok(format!("{} tables looked at", r.tables.len()).into())
        }
        Task::SizeSample => {
            let client = db::get(&env.pool).await?;
            let s = crate::maintenance::samples::record_sample(&client, schema).await?;
            env.metrics
                .set("database_bytes", &[], s.database_bytes as f64);
            env.metrics.set(
                "logs_bytes",
                &[("class", "debug")],
                s.logs_debug_bytes as f64,
            );
            env.metrics
                .set("logs_bytes", &[("class", "logs")], s.logs_logs_bytes as f64);
            Ok(format!("database {} bytes", s.database_bytes).into())
        }
        Task::Backup => {
            let target = crate::archive::target::Target::resolve(
                None,
                env.config.backup.to.as_deref(),
                "backup.to",
            )?;
            let copy_to = crate::backup::after::copy_targets(&env.config, &target)?;
            // Opened once: the backup, its copies and the prune go through the same storage.
            let primary = crate::archive::storage::open(&target, &env.config).await?;
            let m = crate::backup::run::run(crate::backup::run::BackupSpec {
                db: &env.target,
                config: &env.config,
                target: &target,
                storage: &primary,
                exclude_logs: env.config.backup.exclude_logs,
                progress: false,
                env: &env.env,
            })
            .await?;
            env.metrics.set(
                "backup_last_success_timestamp_seconds",
                &[],
                m.completed.timestamp() as f64,
            );
            env.metrics
                .set("backup_last_duration_seconds", &[], m.timings.total_s);
            env.metrics
                .set("backup_last_size_bytes", &[], m.size_bytes as f64);
            // Copies to backup.copy_to, then the keep_* policy, as after `kasm-db backup`.
            let after = crate::backup::after::run(crate::backup::after::After {
                config: &env.config,
                primary: primary.as_ref(),
                manifest: &m,
                prune: true,
                copy_to: &copy_to,
                now: Utc::now(),
            })
            .await;
            if let Some(why) = after.failure(&m.id) {
                return Err(crate::Error::failed(why));
            }
            let copies = after
                .copies
                .iter()
                .map(|c| format!(", copied to {}", c.target))
                .collect::<String>();
            let summary = format!(
                "backup {} to {target}: {} bytes{copies}; pruned {}",
                m.id,
                m.size_bytes,
                if after.pruned.is_empty() {
                    "nothing".to_string()
                } else {
                    after.pruned.join(", ")
                }
            );
            Ok(Done {
                summary,
                backup: Some(m.id.clone()),
            })
        }
        Task::Verify => {
            use crate::verify::{Checked, How, Scratch, Verify};
            let target = crate::archive::target::Target::resolve(
                None,
                env.config.backup.to.as_deref(),
                "backup.to",
            )?;
            let storage = crate::archive::storage::open(&target, &env.config).await?;
            let scratch = match &env.config.backup.scratch_db {
                Some(url) => Some(crate::db::DbTarget::resolve(Some(url.expose()), &env.env)?),
                None => None,
            };
            let how = match &scratch {
                Some(server) => {
                    How::RestoreTest(Scratch::configured(server, &env.config, &env.env, false))
                }
                None => How::Checksum,
            };
            let v = crate::verify::verify(Verify {
                storage: storage.as_ref(),
                backup: "latest",
                key_file: env.config.backup.encryption_key_file.as_deref(),
                how,
            })
            .await?;
            let (m, ok) = (&v.manifest, v.checked.ok());
            let what = match &v.checked {
                Checked::RestoreTest(r) => match &r.problem {
                    Some(p) => format!("the restore test failed: {p}"),
                    None => format!(
                        "restored into a scratch database on {}: {} tables, {} rows as in the manifest",
                        r.scratch_server, r.tables, r.rows
                    ),
                },
                Checked::Checksum(_) if ok => "size and SHA-256 match the manifest".to_string(),
                Checked::Checksum(_) => "size or SHA-256 differ from the manifest".to_string(),
            };
            super::recovery::export(&env.metrics, &target.to_string(), &v.record);
            if !ok {
                return Err(crate::Error::failed(format!(
                    "backup {} failed verification ({what})",
                    m.id
                )));
            }
            Ok(Done {
                summary: format!("backup {} verified: {what}", m.id),
                backup: Some(m.id.clone()),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_takes_the_lock_of_the_command_line_run() {
        assert_eq!(slot_lock(Task::SizeSample), Some(Lock::SizeSample));
        assert_eq!(slot_lock(Task::Verify), Some(Lock::Verify));
        // backup::run, purge::purge and vacuum::run take theirs themselves, for both.
        assert_eq!(slot_lock(Task::Backup), None);
        assert_eq!(slot_lock(Task::Purge), None);
        assert_eq!(slot_lock(Task::Vacuum), None);
    }
}
