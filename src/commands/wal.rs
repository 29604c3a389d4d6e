//! The `wal stream` command and the hidden `wal fetch` (PostgreSQL's restore_command during
//! `restore --physical`): resolve the target, the staging directory and the signals, call
//! [`crate::wal`], shape the report. `wal fetch` turns every failure into exit 126 (fatal to
//! recovery) except "not in the archive, normally" (exit 1).

use super::Ctx;
use crate::archive::storage;
use crate::archive::target::Target;
use crate::cli::WalCommand;
use crate::error::{Error, Kind, Result};
use crate::output::Outcome;
use crate::wal::fetch::{self, Fetched};
use crate::wal::stream::{self, StreamSpec};
use serde::Serialize;

/// `kasm-db wal ...`.
pub async fn wal(ctx: &Ctx, cmd: &WalCommand) -> Result<Outcome> {
    match cmd {
        WalCommand::Stream {
            to,
            staging_dir,
            pg_bindir,
        } => {
            let target = Target::resolve(to.as_deref(), ctx.config.backup.to.as_deref(), "--to")?;
            let mut config = ctx.config.clone();
            if let Some(dir) = pg_bindir {
                config.backup.pg_bindir = Some(dir.clone());
            }
            let staging = staging_dir.clone().unwrap_or_else(|| {
                stream::default_staging(
                    &crate::pgtools::temp_dir(&ctx.env),
                    &config.backup.wal_slot,
                    &ctx.db,
                    &target,
                )
            });
            let stop = crate::backup::run::interrupted()?;
            let r = stream::stream(
                StreamSpec {
                    db: &ctx.db,
                    config: &config,
                    target: &target,
                    staging: &staging,
                    env: &ctx.env,
                    leading: None,
                },
                stop,
            )
            .await?;
            let text = format!(
                "WAL stream on slot {} to {} stopped: {} segment(s) stored{}{}",
                r.slot,
                r.target,
                r.segments,
                r.last_segment
                    .as_deref()
                    .map(|s| format!(", the last {s}"))
                    .unwrap_or_default(),
                r.partial_segment
                    .as_deref()
                    .map(|s| format!("; {s} stored as far as it was written"))
                    .unwrap_or_default()
            );
            Ok(Outcome::new(&r, text))
        }
        WalCommand::Fetch {
            file,
            path,
            from,
            through,
            cache,
        } => fetch_one(
            ctx,
            file,
            path,
            from.as_deref(),
            through.as_deref(),
            cache.as_deref(),
        )
        .await
        .map_err(|e| match e.kind() {
            Kind::Abort => e,
            _ => Error::new(Kind::Abort, e),
        }),
    }
}

#[derive(Serialize)]
struct FetchReport<'a> {
    file: &'a str,
    restored: bool,
    partial: bool,
    reason: Option<String>,
}

async fn fetch_one(
    ctx: &Ctx,
    file: &str,
    path: &std::path::Path,
    from: Option<&str>,
    through: Option<&str>,
    cache: Option<&std::path::Path>,
) -> Result<Outcome> {
    if let Some(cache) = cache {
        if fetch::take_cached(cache, file, path)? {
            let report = FetchReport {
                file,
                restored: true,
                partial: false,
                reason: None,
            };
            return Ok(Outcome::new(&report, ""));
        }
    }
    let target = Target::resolve(from, ctx.config.backup.to.as_deref(), "--from")?;
    let store = storage::open(&target, &ctx.config).await?;
    Ok(
        match fetch::fetch(
            store.as_ref(),
            file,
            path,
            through,
            ctx.config.backup.encryption_key_file.as_deref(),
        )
        .await?
        {
            Fetched::Restored { partial, .. } => Outcome::new(
                &FetchReport {
                    file,
                    restored: true,
                    partial,
                    reason: None,
                },
                "",
            ),
            Fetched::NotFound(why) => Outcome::new(
                &FetchReport {
                    file,
                    restored: false,
                    partial: false,
                    reason: Some(why.clone()),
                },
                format!("kasm-db wal fetch: {why}"),
            )
            .failed_check(),
        },
    )
}
