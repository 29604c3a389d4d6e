//! `kasm-db forward [--since T] [--until T]`: the command line of the backfill
//! ([`crate::forward::backfill`]): flags → a [`Backfill`], its report → an [`Outcome`] (records
//! left spooled are a temporary failure, exit 75; records the SIEM refused exit 1). Must never
//! print the token.

use super::Ctx;
use crate::cli::ForwardArgs;
use crate::error::{Error, Result};
use crate::forward::backfill::{self, Backfill, BackfillReport};
use crate::output::Outcome;
use chrono::{DateTime, Utc};
use std::path::Path;

fn parse_time(flag: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v.trim())
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| Error::usage(format!("{flag} {v:?} is not an RFC 3339 time: {e}")))
        })
        .transpose()
}

pub async fn forward(ctx: &Ctx, args: &ForwardArgs) -> Result<Outcome> {
    let siem = ctx.config.siem.as_ref().ok_or_else(|| {
        Error::usage(
            "no SIEM is configured: add a [siem] section to the config file (kind = \"splunk-hec\" | \
             \"syslog\" | \"http\", url, token, spool_dir) or set KASM_DB_SIEM_KIND, \
             KASM_DB_SIEM_URL and KASM_DB_SIEM_TOKEN",
        )
    })?;
    let since = parse_time("--since", args.since.as_deref())?;
    let until = parse_time("--until", args.until.as_deref())?;
    if let (Some(s), Some(u)) = (since, until) {
        if s >= u {
            return Err(Error::usage("--since must be before --until"));
        }
    }
    let pool = ctx.pool(1).await?;
    // A spinner when a person is watching (stderr is a terminal); nothing under cron.
    let progress = if ctx.interactive {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    };
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "forward {spinner} {pos} records handed to the spool ({per_sec})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let report = backfill::backfill(Backfill {
        pool: &pool,
        schema: &ctx.config.database.schema,
        siem,
        since,
        until,
        progress,
    })
    .await?;
    outcome(&report, &siem.common.spool_dir)
}

fn outcome(report: &BackfillReport, spool_dir: &Path) -> Result<Outcome> {
    if report.spooled > 0 {
        let (done, not_yet) = if report.acknowledges {
            (
                format!("the SIEM acknowledged {} records", report.forwarded),
                "acknowledged",
            )
        } else {
            (
                format!("{} records were sent over UDP", report.sent),
                "sent",
            )
        };
        return Err(Error::temporary(format!(
            "{done}; {} more are durably spooled in {} but not yet {not_yet}; run `kasm-db \
             forward` again with the same range to deliver them",
            report.spooled,
            spool_dir.display(),
        )));
    }
    let mut text = if report.acknowledges {
        format!(
            "forwarded {} records to the {} SIEM ({} read from the database)",
            report.forwarded, report.sink, report.read
        )
    } else {
        format!(
            "sent {} records to the syslog SIEM over UDP ({} read from the database); UDP \
             acknowledges nothing: a receiver under load loses datagrams silently",
            report.sent, report.read
        )
    };
    if report.dead_lettered > 0 {
        text.push_str(&format!(
            "; {} refused by the SIEM, kept with the reason in {}",
            report.dead_lettered,
            spool_dir.join("dead-letters.ndjson").display()
        ));
    }
    if report.duplicates > 0 {
        text.push_str(&format!("; {} may have arrived twice", report.duplicates));
    }
    let outcome = Outcome::new(report, text);
    // Records the SIEM refused are a failed job (exit 1), though nothing is lost.
    Ok(if report.dead_lettered > 0 {
        outcome.failed_check()
    } else {
        outcome
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc_3339() {
        let t = parse_time("--since", Some("2026-11-24T00:00:00Z")).unwrap();
        assert_eq!(t, Some("2026-11-24T00:00:00Z".parse().unwrap()));
        assert_eq!(parse_time("--since", None).unwrap(), None);
        let e = parse_time("--until", Some("yesterday")).unwrap_err();
        assert_eq!(e.kind(), crate::error::Kind::Usage);
    }

    fn report(acknowledges: bool, spooled: u64, dead_lettered: u64) -> BackfillReport {
        BackfillReport {
            forwarded: if acknowledges { 7 } else { 0 },
            sent: if acknowledges { 0 } else { 7 },
            read: 9,
            spooled,
            dead_lettered,
            duplicates: 0,
            sink: if acknowledges { "splunk-hec" } else { "syslog" },
            acknowledges,
        }
    }

    #[test]
    fn the_report_becomes_the_same_json_text_and_exit_code() {
        let dir = Path::new("/spool");
        let o = outcome(&report(true, 0, 0), dir).unwrap();
        assert!(o.ok);
        assert_eq!(
            o.json,
            serde_json::json!({"forwarded": 7, "sent": 0, "read": 9, "spooled": 0,
                "dead_lettered": 0, "duplicates": 0, "sink": "splunk-hec"})
        );
        assert_eq!(
            o.text,
            "forwarded 7 records to the splunk-hec SIEM (9 read from the database)"
        );
        let o = outcome(&report(false, 0, 2), dir).unwrap();
        assert!(!o.ok, "records the SIEM refused fail the job");
        assert!(
            o.text
                .starts_with("sent 7 records to the syslog SIEM over UDP")
        );
        assert!(
            o.text
                .contains("; 2 refused by the SIEM, kept with the reason in /spool/")
        );
        let e = outcome(&report(false, 3, 0), dir).unwrap_err();
        assert_eq!(e.kind(), crate::error::Kind::Temporary);
        assert!(e.to_string().starts_with(
            "7 records were sent over UDP; 3 more are durably spooled in /spool but not yet sent"
        ));
    }
}
