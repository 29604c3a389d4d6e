//! The backups' state in `serve`'s `/metrics`, per target: how many complete backups there
//! are, the newest one's time and age, the latest verification's result and time, and the
//! verdict of `backups check` (its default criteria; [`crate::backup::check`], the same pure
//! function as the command, `size` and the report).
//!
//! Listing a target costs requests (S3: one LIST and two GETs per backup), so it is never done
//! on every scrape: a listing is kept for [`REFRESH_AFTER`] (or until a scheduled backup or
//! verify ran here, [`BackupStatus::invalidate`]); a scrape that finds it older starts one
//! refresh in the background and waits for it at most [`SCRAPE_WAIT`], else answers from the
//! previous listing (the ages are always computed at the scrape). The `target` label is the
//! target's URL without credentials; nothing else from the target reaches a label.

use super::metrics::Metrics;
use crate::archive::{storage, target::Target};
use crate::backup::backups::{self, Listed};
use crate::backup::check::{self, Criteria};
use crate::config::Config;
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a listing is used before a scrape lists the target again.
pub const REFRESH_AFTER: Duration = Duration::from_secs(60);
/// How long a scrape waits for a refresh before it answers from the previous listing.
pub const SCRAPE_WAIT: Duration = Duration::from_secs(2);

/// The backup targets `serve` reports on.
pub struct BackupStatus {
    targets: Vec<Arc<Watched>>,
}

struct Watched {
    /// The TARGET as configured (may be parsed, never shown).
    to: String,
    /// The `target` label: the URL without credentials.
    label: String,
    config: Arc<Config>,
    state: Mutex<State>,
    refreshing: AtomicBool,
}

#[derive(Default)]
struct State {
    /// The latest successful listing and when it was read.
    listed: Option<(Arc<Vec<Listed>>, DateTime<Utc>)>,
    /// When the latest attempt ended, and whether it succeeded.
    attempted: Option<(Instant, bool)>,
    /// A job changed the target since.
    stale: bool,
}

impl BackupStatus {
    /// The targets of `config` (`backup.to`); `None` without one.
    pub fn new(config: &Config) -> Option<Arc<BackupStatus>> {
        let config = Arc::new(config.clone());
        let targets: Vec<Arc<Watched>> = config
            .backup
            .to
            .iter()
            .map(|to| {
                Arc::new(Watched {
                    to: to.clone(),
                    label: label(to),
                    config: config.clone(),
                    state: Mutex::new(State::default()),
                    refreshing: AtomicBool::new(false),
                })
            })
            .collect();
        (!targets.is_empty()).then(|| Arc::new(BackupStatus { targets }))
    }

    /// A backup or verify ran: list again at the next scrape.
    pub fn invalidate(&self) {
        for w in &self.targets {
            w.state.lock().unwrap_or_else(|p| p.into_inner()).stale = true;
        }
    }

    /// Refresh what is due (waiting at most [`SCRAPE_WAIT`]) and set the gauges as of now.
    pub async fn scrape(&self, metrics: &Metrics) {
        self.refresh_due().await;
        let now = Utc::now();
        for w in &self.targets {
            w.export(metrics, now);
        }
    }

    /// Each target's verdict as of now (the dashboard's backups), from the same cached listing
    /// as `/metrics` (refreshed when due, waiting at most [`SCRAPE_WAIT`]).
    pub async fn verdicts(&self) -> Vec<check::TargetVerdict> {
        self.refresh_due().await;
        let now = Utc::now();
        self.targets
            .iter()
            .map(|w| {
                let (listed, attempted_ok) = {
                    let st = w.state.lock().unwrap_or_else(|p| p.into_inner());
                    (st.listed.clone(), st.attempted.map(|(_, ok)| ok))
                };
                let listing = match (&listed, attempted_ok) {
                    (Some((l, _)), _) => Ok(&l[..]),
                    (None, Some(false)) => {
                        Err("cannot list the target (the reason is in serve's log)".to_string())
                    }
                    (None, _) => Err("not listed yet".to_string()),
                };
                check::TargetVerdict::judge(w.label.clone(), listing, now)
            })
            .collect()
    }

    async fn refresh_due(&self) {
        let mut pending = Vec::new();
        for w in &self.targets {
            if w.due() && !w.refreshing.swap(true, Ordering::AcqRel) {
                pending.push(tokio::spawn(refresh(w.clone())));
            }
        }
        if !pending.is_empty() {
            // A refresh that takes longer goes on; this scrape answers from the last listing.
            let _ = tokio::time::timeout(SCRAPE_WAIT, futures::future::join_all(pending)).await;
        }
    }
}

/// The `target` label of `to`: no user, password or query (a signed URL's token).
fn label(to: &str) -> String {
    let redacted = crate::db::target::redact_url(to);
    let no_query = redacted.split('?').next().unwrap_or_default();
    match Target::parse(no_query) {
        Ok(t) => t.to_string(),
        Err(_) => no_query.to_string(),
    }
}

async fn refresh(w: Arc<Watched>) {
    let listed = async {
        let target = Target::parse(&w.to)?;
        let store = storage::open(&target, &w.config).await?;
        backups::list(store.as_ref()).await
    }
    .await;
    let ok = listed.is_ok();
    if let Err(e) = &listed {
        tracing::warn!(target = %w.label, error = %e, "cannot list the backups for /metrics");
    }
    {
        let mut st = w.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(l) = listed {
            st.listed = Some((Arc::new(l), Utc::now()));
            st.stale = false;
        }
        st.attempted = Some((Instant::now(), ok));
    }
    w.refreshing.store(false, Ordering::Release);
}

impl Watched {
    fn due(&self) -> bool {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.stale
            || match st.attempted {
                None => true,
                Some((at, _)) => at.elapsed() >= REFRESH_AFTER,
            }
    }

    fn export(&self, m: &Metrics, now: DateTime<Utc>) {
        let (listed, attempted_ok) = {
            let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            (st.listed.clone(), st.attempted.map(|(_, ok)| ok))
        };
        let l = [("target", self.label.as_str())];
        if let Some(ok) = attempted_ok {
            m.set("backup_listing_ok", &l, f(ok));
        }
        let Some((listed, listed_at)) = listed else {
            return;
        };
        m.set(
            "backup_listed_timestamp_seconds",
            &l,
            listed_at.timestamp() as f64,
        );
        let v = check::check(&listed, &Criteria::default(), now);
        m.set("backup_count", &l, v.count as f64);
        m.set("backup_check_ok", &l, f(v.ok));
        match (v.newest_created, v.newest_age_s) {
            (Some(created), Some(age)) => {
                m.set(
                    "backup_newest_timestamp_seconds",
                    &l,
                    created.timestamp() as f64,
                );
                m.set("backup_newest_age_seconds", &l, age as f64);
            }
            _ => {
                m.remove("backup_newest_timestamp_seconds", &l);
                m.remove("backup_newest_age_seconds", &l);
            }
        }
        match &v.last_verification {
            Some(lv) => {
                m.set("backup_last_verification_ok", &l, f(lv.ok));
                m.set(
                    "backup_last_verification_timestamp_seconds",
                    &l,
                    lv.at.timestamp() as f64,
                );
            }
            None => {
                m.remove("backup_last_verification_ok", &l);
                m.remove("backup_last_verification_timestamp_seconds", &l);
            }
        }
    }
}

fn f(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_label_carries_no_credentials() {
        assert_eq!(label("s3://bucket/kasm/prod"), "s3://bucket/kasm/prod");
        assert_eq!(label("file:///mnt/nfs/kasm"), "/mnt/nfs/kasm");
        assert_eq!(label("/mnt/nfs/kasm"), "/mnt/nfs/kasm");
        let l = label("s3://user:s3cr3t@bucket/p?X-Amz-Signature=abc");
        assert!(!l.contains("s3cr3t") && !l.contains("abc"), "{l}");
    }

    #[tokio::test]
    async fn gauges_follow_the_listing_and_ages_are_computed_at_the_scrape() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        assert!(BackupStatus::new(&config).is_none());
        config.backup.to = Some(dir.path().display().to_string());
        let s = BackupStatus::new(&config).unwrap();
        let m = Metrics::default();
        s.scrape(&m).await;
        let text = m.render();
        let t = format!("{{target=\"{}\"}}", dir.path().display());
        assert!(
            text.contains(&format!("kasm_db_backup_count{t} 0\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("kasm_db_backup_check_ok{t} 0\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("kasm_db_backup_listing_ok{t} 1\n")),
            "{text}"
        );
        assert!(
            !text.contains("kasm_db_backup_newest_age_seconds"),
            "{text}"
        );
        // An unreadable target: listing_ok 0, no other gauge, the scrape still answers.
        config.backup.to = Some("relative/dir".into());
        let s = BackupStatus::new(&config).unwrap();
        let m = Metrics::default();
        s.scrape(&m).await;
        assert_eq!(
            m.render(),
            "# HELP kasm_db_backup_listing_ok 1 when the latest listing of the target worked, else 0.\n\
             # TYPE kasm_db_backup_listing_ok gauge\n\
             kasm_db_backup_listing_ok{target=\"relative/dir\"} 0\n"
        );
    }
}
