//! The `[schedule]` of `serve`: cron expressions (UTC; 5 fields, or 6 with seconds first)
//! parsed into [`ScheduledJob`]s, and the pure arithmetic of their slots.
//!
//! Nothing here runs a job or touches the database (see `jobs.rs`). Invalid expressions are
//! usage errors naming the key.

use crate::config::ScheduleConfig;
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// What a scheduled slot does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Purge,
    Backup,
    Vacuum,
    SizeSample,
    Verify,
}

impl Task {
    pub fn name(self) -> &'static str {
        match self {
            Task::Purge => "purge",
            Task::Backup => "backup",
            Task::Vacuum => "vacuum",
            Task::SizeSample => "size_sample",
            Task::Verify => "verify",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ScheduledJob {
    pub task: Task,
    pub cron: Cron,
}

impl ScheduledJob {
    /// The first slot strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&after, false).ok()
    }
}

/// Parse one expression (5 fields, or 6 with seconds).
pub fn parse(key: &str, expr: &str) -> Result<Cron> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(expr)
        .map_err(|e| {
            Error::usage(format!(
                "schedule.{key} = {expr:?} is not a cron expression: {e}"
            ))
        })
}

/// The configured jobs (absent or empty keys are not scheduled).
pub fn jobs(cfg: &ScheduleConfig) -> Result<Vec<ScheduledJob>> {
    let mut out = Vec::new();
    for (task, expr) in [
        (Task::Purge, &cfg.purge),
        (Task::Backup, &cfg.backup),
        (Task::Vacuum, &cfg.vacuum),
        (Task::SizeSample, &cfg.size_sample),
        (Task::Verify, &cfg.verify),
    ] {
        if let Some(expr) = expr.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
            out.push(ScheduledJob {
                task,
                cron: parse(task.name(), expr)?,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn parses_and_steps() {
        let cfg = ScheduleConfig {
            purge: Some("*/5 * * * *".into()),
            backup: Some("0 3 * * *".into()),
            size_sample: Some("*/2 * * * * *".into()),
            vacuum: Some("  ".into()),
            verify: None,
        };
        let jobs = jobs(&cfg).unwrap();
        assert_eq!(
            jobs.iter().map(|j| j.task).collect::<Vec<_>>(),
            vec![Task::Purge, Task::Backup, Task::SizeSample]
        );
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 13, 2, 7).unwrap();
        assert_eq!(
            jobs[0].next_after(t).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 24, 13, 5, 0).unwrap()
        );
        assert_eq!(
            jobs[1].next_after(t).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 25, 3, 0, 0).unwrap()
        );
        assert_eq!(
            jobs[2].next_after(t).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 24, 13, 2, 8).unwrap()
        );
        // Strictly after: a slot is never returned twice.
        let slot = jobs[0].next_after(t).unwrap();
        assert!(jobs[0].next_after(slot).unwrap() > slot);
    }

    #[test]
    fn bad_expression_is_a_usage_error_naming_the_key() {
        let cfg = ScheduleConfig {
            purge: Some("every five minutes".into()),
            ..Default::default()
        };
        let e = jobs(&cfg).unwrap_err();
        assert_eq!(e.kind(), crate::error::Kind::Usage);
        assert!(e.to_string().contains("schedule.purge"), "{e}");
    }
}
