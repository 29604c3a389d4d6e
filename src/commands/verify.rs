//! The `backups verify [ID] [--from TARGET] [--scratch-db URL]` command: resolve the target,
//! the scratch server and the client tools from the command line and the configuration, run
//! [`crate::verify::verify`], and shape its report into the contract's JSON (`{"id","ok",..}`) and a
//! sentence for people, as a failed check (exit 1) when not ok.
//!
//! Never prints a password: the scratch server is shown as host:port.

use super::Ctx;
use crate::archive::storage;
use crate::archive::target::Target;
use crate::db::DbTarget;
use crate::error::Result;
use crate::output::Outcome;
use crate::sizing::bytes;
use crate::verify::{Checked, How, Scratch, Verify};
use std::path::Path;

/// `kasm-db backups verify`: the checksum check, or with `scratch_db` the full restore test.
pub async fn verify(
    ctx: &Ctx,
    from: Option<&str>,
    id: &str,
    scratch_db: Option<&str>,
    pg_bindir: Option<&Path>,
) -> Result<Outcome> {
    let from = Target::resolve(from, ctx.config.backup.to.as_deref(), "--from")?;
    let scratch = match scratch_db {
        Some(url) => Some(DbTarget::resolve(Some(url), &ctx.env)?),
        None => None,
    };
    let store = storage::open(&from, &ctx.config).await?;
    let how = match &scratch {
        Some(server) => How::RestoreTest(Scratch {
            pg_bindir: pg_bindir.or(ctx.config.backup.pg_bindir.as_deref()),
            ..Scratch::configured(server, &ctx.config, &ctx.env, ctx.interactive)
        }),
        None => How::Checksum,
    };
    let v = crate::verify::verify(Verify {
        storage: store.as_ref(),
        backup: id,
        key_file: ctx.config.backup.encryption_key_file.as_deref(),
        how,
    })
    .await?;
    let m = &v.manifest;
    let ok = v.checked.ok();
    let outcome = match &v.checked {
        Checked::Checksum(c) => {
            let text = if c.ok {
                format!(
                    "backup {} ok: {} and SHA-256 {} match the manifest",
                    c.id,
                    bytes(m.size_bytes),
                    m.sha256
                )
            } else {
                format!(
                    "backup {} NOT ok: {}",
                    c.id,
                    c.problem.as_deref().unwrap_or("mismatch")
                )
            };
            Outcome::new(c, text)
        }
        Checked::RestoreTest(r) => {
            let server = &r.scratch_server;
            let text = if r.ok {
                format!(
                    "backup {} ok: size and SHA-256 match, and a restore into a scratch database on \
                     {server} has the manifest's row counts in all {} table(s) ({} rows); {:.1} s, \
                     scratch database dropped",
                    m.id, r.tables, r.rows, r.duration_s
                )
            } else {
                format!(
                    "backup {} NOT ok: {}",
                    m.id,
                    r.problem.as_deref().unwrap_or("restore test failed")
                )
            };
            let text = r
                .warnings
                .iter()
                .fold(text, |t, w| format!("{t}\n  warning: {w}"));
            Outcome::new(r, text)
        }
    };
    Ok(if ok { outcome } else { outcome.failed_check() })
}
