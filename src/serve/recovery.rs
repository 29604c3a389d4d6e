//! The last measured recovery time, for `/metrics`: the duration of the newest passed full
//! restore test (`backups verify --scratch-db`, or the scheduled verify with
//! `backup.scratch_db`) found in the verification records beside the backups of `backup.to`,
//! exported as `kasm_db_restore_last_duration_seconds{target}` with the time of that test
//! (`kasm_db_restore_last_test_timestamp_seconds{target}`). An operator states an RTO from it.
//!
//! Read at `serve`'s start (so a test run from the command line counts) and after each
//! scheduled verify. Best effort: a target that cannot be read leaves the series absent with a
//! warning, never fails `serve`. Labels hold the target as configured (no secret: targets carry
//! none), never a credential.

use super::metrics::Metrics;
use crate::archive::storage::Storage;
use crate::archive::verification::{self, Verification};

/// How many of the newest backups are looked at for a passed restore test.
const LOOK_BACK: usize = 30;

/// The newest passed restore test among the newest [`LOOK_BACK`] complete backups.
pub async fn newest(storage: &dyn Storage) -> crate::error::Result<Option<Verification>> {
    let manifests = crate::archive::catalog::complete(storage).await?;
    let mut best: Option<Verification> = None;
    for m in manifests.iter().take(LOOK_BACK) {
        // Best effort: an unreadable record is no measured recovery time (the check says more).
        if let Ok(Some(v)) = verification::latest(storage, &m.id).await
            && v.recovery_s().is_some()
            && best.as_ref().is_none_or(|b| v.at > b.at)
        {
            best = Some(v);
        }
    }
    Ok(best)
}

/// Export `v`'s recovery time for `target`.
pub fn export(metrics: &Metrics, target: &str, v: &Verification) {
    if let Some(secs) = v.recovery_s() {
        metrics.set("restore_last_duration_seconds", &[("target", target)], secs);
        metrics.set(
            "restore_last_test_timestamp_seconds",
            &[("target", target)],
            v.at.timestamp() as f64,
        );
    }
}

/// Read the newest passed restore test at `backup.to` and export it; a warning on failure.
pub async fn load(metrics: &Metrics, config: &crate::config::Config) {
    let Some(to) = &config.backup.to else {
        return;
    };
    let r = async {
        let target = crate::archive::target::Target::parse(to)?;
        let storage = crate::archive::storage::open(&target, config).await?;
        Ok::<_, crate::Error>((target.to_string(), newest(storage.as_ref()).await?))
    }
    .await;
    match r {
        Ok((target, Some(v))) => export(metrics, &target, &v),
        Ok((_, None)) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the last restore test's duration"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::verification::Check;

    #[test]
    fn only_a_passed_restore_test_is_a_recovery_time() {
        let m = Metrics::default();
        let mut v = Verification::now(Check::Checksum, true, None, 1.5);
        export(&m, "s3://b/p", &v);
        assert!(!m.render().contains("restore_last_duration_seconds"));
        v.check = Check::Restore;
        v.duration_s = Some(42.25);
        export(&m, "s3://b/p", &v);
        let text = m.render();
        assert!(
            text.contains("kasm_db_restore_last_duration_seconds{target=\"s3://b/p\"} 42.25\n"),
            "{text}"
        );
        assert!(text.contains("kasm_db_restore_last_test_timestamp_seconds{target=\"s3://b/p\"}"));
    }
}
