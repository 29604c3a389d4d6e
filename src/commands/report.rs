//! `kasm-db report --html FILE`: gather the data (read-only), render the page, write it
//! atomically (a temporary file in the same directory, then a rename), and say what it holds.
//!
//! Never prints the page, a URL or a secret; the only database name that reaches the page is
//! the redacted `user@host:port/dbname`.

use super::Ctx;
use crate::cli::ReportArgs;
use crate::config::Config;
use crate::db;
use crate::error::{Error, Result, ResultExt};
use crate::output::Outcome;
use crate::report::{Backups, ReportData, page, query};
use serde::Serialize;
use std::io::Write;
use std::path::Path;

/// How far back the size chart looks.
pub const SIZE_WINDOW_DAYS: u32 = 90;
/// How far back the log volume charts look (the Kasm default retention of other logs).
pub const VOLUME_WINDOW_HOURS: u32 = 7 * 24;

/// The `--json` result.
#[derive(Debug, Serialize)]
pub struct ReportSummary {
    pub file: String,
    pub bytes: u64,
    pub size_samples: usize,
    pub log_hours: usize,
    pub log_records: u64,
    /// Backups drawn; null when no target is configured or it could not be read.
    pub backups: Option<usize>,
    /// The verdict of `backups check` (default criteria) shown on the page; null as above.
    pub backups_ok: Option<bool>,
}

/// What the backups section shows: the complete backups of `backup.to` (the same listing as
/// `backups list`) with the verdict of `backups check` as of `now`, or why there are none.
pub async fn backups_for(config: &Config, now: chrono::DateTime<chrono::Utc>) -> Backups {
    let Some((target, listed)) = crate::backup::backups::configured(config).await else {
        return Backups::NotConfigured;
    };
    match listed {
        Ok(listed) => Backups::Listed {
            verdict: Box::new(crate::backup::check::check(
                &listed,
                &Default::default(),
                now,
            )),
            points: listed
                .into_iter()
                .map(|l| crate::report::BackupPoint {
                    id: l.id,
                    created: l.created,
                    size_bytes: l.size_bytes,
                    duration_s: Some(l.duration_s),
                    verified: l.verified.as_ref().map(|v| v.ok),
                    recovery_s: l.verified.as_ref().and_then(|v| v.recovery_s()),
                    alembic_version: l.alembic_version,
                })
                .collect(),
            target,
        },
        Err(reason) => Backups::Unavailable { target, reason },
    }
}

pub async fn report(ctx: &Ctx, args: &ReportArgs) -> Result<Outcome> {
    let schema = ctx.config.database.schema.as_str();
    let pool = ctx.pool(1).await?;
    let client = db::get(&pool).await?;
    let (now, current) = query::current(&client, schema).await?;
    let sizes = query::size_points(
        &client,
        schema,
        now - chrono::Duration::days(SIZE_WINDOW_DAYS.into()),
    )
    .await?;
    let (logs, volume) = query::hourly_volume(
        &client,
        schema,
        now - chrono::Duration::hours(VOLUME_WINDOW_HOURS.into()),
        VOLUME_WINDOW_HOURS,
    )
    .await?;
    let data = ReportData {
        generated_at: now,
        database: ctx.db.redacted(),
        current,
        sizes,
        size_window_days: SIZE_WINDOW_DAYS,
        logs,
        volume,
        sessions: ctx.config.sizing.sessions,
        backups: backups_for(&ctx.config, chrono::Utc::now()).await,
    };
    let html = page::render(&data);
    write_atomic(&args.html, html.as_bytes())?;

    let mut hours: Vec<_> = data.volume.iter().map(|h| h.hour).collect();
    hours.dedup();
    let summary = ReportSummary {
        file: args.html.display().to_string(),
        bytes: html.len() as u64,
        size_samples: data.sizes.as_ref().map_or(0, Vec::len),
        log_hours: hours.len(),
        log_records: data.volume.iter().map(|h| h.count).sum(),
        backups: match &data.backups {
            Backups::Listed { points, .. } => Some(points.len()),
            _ => None,
        },
        backups_ok: match &data.backups {
            Backups::Listed { verdict, .. } => Some(verdict.ok),
            _ => None,
        },
    };
    let text = format!(
        "wrote {} ({}): {} size samples, {} log records over {} hours, backups: {}",
        summary.file,
        crate::sizing::bytes(summary.bytes),
        summary.size_samples,
        summary.log_records,
        summary.log_hours,
        summary
            .backups
            .map_or_else(|| "none shown".to_string(), |n| n.to_string())
    );
    Ok(Outcome::new(&summary, text))
}

/// Write `bytes` to `path` so that a reader sees the old file or the whole new one.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::usage(format!(
            "cannot write {}: directory {} does not exist",
            path.display(),
            dir.display()
        )));
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".kasm-db-report")
        .tempfile_in(dir)
        .with_ctx(|| format!("cannot create a file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .with_ctx(|| format!("cannot write {}", path.display()))?;
    // Readable like any report (the temporary file is created 0600).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    tmp.persist(path)
        .map_err(|e| Error::failed(format!("cannot write {}: {}", path.display(), e.error)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn backups_section_follows_the_configuration() {
        let mut config = Config::default();
        assert_eq!(
            backups_for(&config, chrono::Utc::now()).await,
            Backups::NotConfigured
        );
        config.backup.to = Some("relative/dir".into());
        match backups_for(&config, chrono::Utc::now()).await {
            Backups::Unavailable { target, reason } => {
                assert_eq!(target, "relative/dir");
                assert!(reason.contains("relative"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let dir = tempfile::tempdir().unwrap();
        config.backup.to = Some(dir.path().display().to_string());
        match backups_for(&config, chrono::Utc::now()).await {
            Backups::Listed { points, .. } => assert!(points.is_empty()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn atomic_write_replaces_the_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.html");
        std::fs::write(&path, "old").unwrap();
        write_atomic(&path, b"new page").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new page");
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
        let err = write_atomic(&dir.path().join("missing/r.html"), b"x").unwrap_err();
        assert_eq!(err.kind(), crate::error::Kind::Usage);
    }
}
