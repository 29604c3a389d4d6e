//! `kasm-db backups check`: read a target's listing, judge it with the pure
//! [`crate::backup::check`] as of now, and shape the verdict: a Nagios-style first line and the
//! details for people, `{"ok","reasons","target",..}` for `--json`, exit 1 when not ok. Also the
//! slot guard of point-in-time recovery (`wal_slot`): the replication slot `backup.wal_slot`
//! read on the database when it can be reached, failing the check when nothing consumes it and
//! it keeps more than `backup.wal_slot_max_retained`, or when its WAL was lost.
//!
//! Reads the clock only here; never writes to the target or the database (never drops a
//! slot), never prints a credential (the target is shown as its URL without any).

use super::Ctx;
use crate::archive::storage;
use crate::archive::target::Target;
use crate::backup::check::{self, Criteria, Verdict, human};
use crate::config::Window;
use crate::error::Result;
use crate::output::Outcome;
use crate::wal::guard::{self, SlotVerdict};
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
    let mut verdict = check::check(&listed, &criteria, Utc::now());
    let slot = slot_guard(ctx).await;
    if let Some(problem) = slot.as_ref().and_then(|s| s.problem.clone()) {
        verdict.ok = false;
        verdict.reasons.push(problem);
    }
    let label = crate::db::target::redact_url(&target.to_string());
    let mut json = serde_json::to_value(&verdict).unwrap_or_default();
    if let Some(map) = json.as_object_mut() {
        map.insert("target".into(), label.clone().into());
        map.insert(
            "wal_slot".into(),
            serde_json::to_value(&slot).unwrap_or_default(),
        );
    }
    let mut text = render(&verdict, &label);
    if let Some(s) = &slot {
        text.push_str(&render_slot(s));
    }
    let outcome = Outcome {
        json,
        text,
        ok: true,
    };
    Ok(if verdict.ok {
        outcome
    } else {
        outcome.failed_check()
    })
}

/// How long the slot guard waits for the database.
const SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The slot guard ([`crate::wal::guard`]): the replication slot `backup.wal_slot` on the
/// database, when it can be reached. `None` when it cannot and `backup.wal` is off (a
/// database that is not there has no slot to guard); with `backup.wal` on, a verdict whose
/// advice says the slot was not checked: only a note when the database is down or does not
/// answer (not the backups' fault), a problem that fails the check when it answered and
/// refused (a check that cannot be made never passes).
async fn slot_guard(ctx: &Ctx) -> Option<SlotVerdict> {
    let b = &ctx.config.backup;
    let read = async {
        let client = crate::db::connect(&ctx.db, crate::db::Retry::once()).await?;
        crate::db::replication::slot(&client, &b.wal_slot).await
    };
    match tokio::time::timeout(SLOT_WAIT, read).await {
        Ok(Ok(reading)) => Some(guard::judge(
            &reading,
            &b.wal_slot,
            b.wal_slot_max_retained,
            b.wal,
        )),
        // Down or not answering: a note. Reached but refused (authentication, a missing
        // database, a slot that cannot be read): a check that cannot be made fails.
        Ok(Err(e)) if b.wal => {
            let refused = e.kind() != crate::error::Kind::Temporary;
            Some(unchecked(ctx, e.to_string(), refused))
        }
        Err(_) if b.wal => Some(unchecked(ctx, "no answer within 10 s".into(), false)),
        _ => None,
    }
}

fn unchecked(ctx: &Ctx, why: String, refused: bool) -> SlotVerdict {
    let b = &ctx.config.backup;
    let problem = refused.then(|| {
        format!(
            "the replication slot {} could not be checked: {why}",
            b.wal_slot
        )
    });
    SlotVerdict {
        slot: b.wal_slot.clone(),
        exists: false,
        active: None,
        retained_bytes: None,
        wal_status: None,
        limit_bytes: b.wal_slot_max_retained.bytes(),
        max_slot_wal_keep_size_mb: None,
        problem,
        advice: vec![format!(
            "the replication slot {} was not checked: cannot reach the database {} ({why})",
            b.wal_slot,
            ctx.db.redacted()
        )],
    }
}

/// The slot guard's lines for people.
fn render_slot(s: &SlotVerdict) -> String {
    let mut out = String::new();
    if s.exists {
        out.push_str(&format!(
            "replication slot {}: {}, keeps {} bytes of WAL on the primary (limit {} bytes){}\n",
            s.slot,
            if s.active == Some(true) {
                "streaming"
            } else {
                "NO CONSUMER"
            },
            s.retained_bytes
                .map(|b| b.to_string())
                .unwrap_or_else(|| "no".into()),
            s.limit_bytes,
            s.wal_status
                .as_deref()
                .map(|w| format!(", wal_status {w}"))
                .unwrap_or_default()
        ));
    }
    for a in &s.advice {
        out.push_str(&format!("note: {a}\n"));
    }
    out
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
