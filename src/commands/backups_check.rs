//! `kasm-db backups check`: read a target's listing, judge it with the pure
//! [`crate::backup::check`] as of now, and shape the verdict: a Nagios-style first line and the
//! details for people, `{"ok","reasons","target",..}` for `--json`, exit 1 when not ok.
//!
//! Reads the clock only here; never writes to the target, never prints a credential (the
//! target is shown as its URL without any).

use super::Ctx;
use crate::archive::storage;
use crate::archive::target::Target;
use crate::backup::check::{self, Criteria, Verdict, human};
use crate::config::Window;
use crate::error::Result;
use crate::output::Outcome;
use chrono::Utc;

/// `kasm-db backups check`.
pub async fn check(
    ctx: &Ctx,
    from: Option<&str>,
    max_age: Window,
    min_count: u32,
    verified_within: Option<Window>,
) -> Result<Outcome> {
    let target = Target::resolve(from, ctx.config.backup.to.as_deref(), "--from")?;
    let store = storage::open(&target, &ctx.config).await?;
    let listed = crate::backup::backups::list(store.as_ref()).await?;
    let criteria = Criteria {
        max_age_s: max_age.as_duration().as_secs(),
        min_count,
        verified_within_s: verified_within.map(|w| w.as_duration().as_secs()),
    };
    let verdict = check::check(&listed, &criteria, Utc::now());
    let label = crate::db::target::redact_url(&target.to_string());
    let mut json = serde_json::to_value(&verdict).unwrap_or_default();
    if let Some(map) = json.as_object_mut() {
        map.insert("target".into(), label.clone().into());
    }
    let outcome = Outcome {
        json,
        text: render(&verdict, &label),
        ok: true,
    };
    Ok(if verdict.ok {
        outcome
    } else {
        outcome.failed_check()
    })
}

/// The text for people: the status line, then what was found and asked.
pub fn render(v: &Verdict, target: &str) -> String {
    let mut out = v.status_line();
    out.push_str(&format!("\ntarget: {target}\n"));
    out.push_str(&format!("complete backups: {}\n", v.count));
    if let (Some(id), Some(created), Some(age)) = (&v.newest_id, v.newest_created, v.newest_age_s) {
        out.push_str(&format!(
            "newest: {id}, made {} UTC ({} ago)\n",
            created.format("%Y-%m-%d %H:%M:%S"),
            human(age)
        ));
    }
    match &v.last_verification {
        Some(lv) => out.push_str(&format!(
            "last verification: {} of {} at {} UTC ({} ago, {}){}\n",
            if lv.ok { "passed" } else { "FAILED" },
            lv.backup,
            lv.at.format("%Y-%m-%d %H:%M:%S"),
            human(lv.age_s),
            match lv.check {
                crate::archive::verification::Check::Checksum => "checksum",
                crate::archive::verification::Check::Restore => "restore test",
            },
            lv.problem
                .as_deref()
                .map(|p| format!(": {p}"))
                .unwrap_or_default()
        )),
        None => out.push_str("last verification: never\n"),
    }
    let c = &v.criteria;
    out.push_str(&format!(
        "required: newest at most {} old, at least {} backup(s), {}\n",
        human(c.max_age_s as i64),
        c.min_count,
        match c.verified_within_s {
            Some(s) => format!("verified within {}", human(s as i64)),
            None => "no verification asked (--verified-within)".into(),
        }
    ));
    for r in &v.reasons {
        out.push_str(&format!("FAILED: {r}\n"));
    }
    out
}
