//! The command layer: the only modules that see the command line ([`crate::cli`]), the
//! resolved invocation ([`Ctx`]) and [`Outcome`]. Each command turns its flags and the
//! configuration into explicit inputs of an operation (a function of a capability module that
//! returns a typed report and never sees `Ctx`, `cli` or `Outcome`), and that report into an
//! `Outcome`. One file per command family; [`run`] dispatches.
//!
//! The configuration is resolved once here (flag > env > file > default) into a [`Ctx`] and
//! passed down explicitly; no operation reads the environment or the command line itself.
//! Commands never hold logic an operation needs elsewhere: `serve`'s scheduled jobs and the
//! `demo` call the same operations. Nothing here prints results or picks an exit code
//! (`main.rs` does).

pub mod backup;
pub mod backups_check;
pub mod demo;
pub mod forward;
pub mod logs;
pub mod migrate;
pub mod notified;
pub mod plan;
pub mod read;
pub mod report;
pub mod restore;
pub mod serve;
pub mod size;
pub mod vacuum;
pub mod verify;
pub mod wal;

use crate::cli::{BackupsCommand, Cli, Command};
use crate::config::Config;
use crate::db::{self, DbTarget, Retry};
use crate::error::Result;
use crate::notify::Job;
use crate::output::Outcome;
use std::collections::BTreeMap;

/// Everything a command needs to know about how it was invoked.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub config: Config,
    /// The database, resolved from --db / KASM_DB_URL / database.url / libpq env.
    pub db: DbTarget,
    /// The process environment as read at start (for child processes and the S3 chain).
    pub env: BTreeMap<String, String>,
    /// Whether stderr is a terminal (progress bars).
    pub interactive: bool,
    /// The configuration file named by --config, if any (what `restore --physical` hands on
    /// to its restore_command).
    pub config_file: Option<std::path::PathBuf>,
    pub json: bool,
}

impl Ctx {
    /// Resolve the configuration and database target from the global flags and `env`.
    pub fn resolve(cli: &Cli, env: BTreeMap<String, String>) -> Result<Ctx> {
        let config = Config::load(cli.global.config.as_deref(), &env)?;
        let url = cli
            .global
            .db
            .clone()
            .or_else(|| config.database.url.as_ref().map(|u| u.expose().to_string()));
        let db = DbTarget::resolve(url.as_deref(), &env)?;
        Ok(Ctx {
            config,
            db,
            env,
            interactive: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            config_file: cli.global.config.clone(),
            json: cli.global.json,
        })
    }

    pub fn retry(&self) -> Retry {
        Retry::configured(&self.config.database)
    }

    /// A pool on the configured database (reachability proven, exit 75 if not).
    pub async fn pool(&self, size: usize) -> Result<db::Pool> {
        db::pool(&self.db, self.retry(), size).await
    }

    /// A pool on the configured database that connects on first use (for `serve`, which starts
    /// before its database may be reachable).
    pub fn pool_unconnected(&self, size: usize) -> Result<db::Pool> {
        db::pool_unconnected(&self.db, size)
    }
}

/// Run the command. Commands that need no configuration (completions, man, plan, demo) do not
/// read it, so they work with a broken or absent config.
pub async fn run(cli: Cli, env: BTreeMap<String, String>) -> Result<Outcome> {
    match &cli.command {
        Command::Completions { shell } => {
            return Ok(Outcome::text(crate::docs::completions(*shell)));
        }
        Command::Man => return Ok(Outcome::text(crate::docs::man_page()?)),
        Command::Plan(args) => return plan::plan(args),
        Command::Demo => {
            demo::refuse_global_options(&cli.global, &env)?;
            return demo::run(env).await;
        }
        Command::GenLogs { count } => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            crate::logs::generate::write_records(&mut out, *count, chrono::Utc::now())?;
            std::io::Write::flush(&mut out)?;
            return Ok(Outcome::text(""));
        }
        _ => {}
    }
    let ctx = match Ctx::resolve(&cli, env) {
        // restore_command: a configuration that does not load must stop recovery, not read as
        // "the end of the archive".
        Err(e)
            if matches!(
                cli.command,
                Command::Wal(crate::cli::WalCommand::Fetch { .. })
            ) =>
        {
            return Err(crate::error::Error::new(crate::error::Kind::Abort, e));
        }
        r => r?,
    };
    match cli.command {
        Command::Migrate => migrate::migrate(&ctx).await,
        Command::Ingest(args) => logs::ingest(&ctx, &args).await,
        Command::Purge(args) if !args.dry_run => {
            let db = Some(ctx.db.redacted());
            notified::run(&ctx, Job::Purge, db, None, logs::purge(&ctx, &args)).await
        }
        Command::Purge(args) => logs::purge(&ctx, &args).await,
        Command::Serve => serve::serve(&ctx).await,
        Command::Forward(args) => forward::forward(&ctx, &args).await,
        Command::Backup(args) => {
            let target = notified::backup_target(args.to.as_deref(), &ctx);
            notified::run(&ctx, Job::Backup, target, None, backup::backup(&ctx, &args)).await
        }
        Command::Backups(cmd) => match &cmd {
            BackupsCommand::Verify {
                backup: id, from, ..
            } => {
                let target = notified::backup_target(from.as_deref(), &ctx);
                let verify = backup::backups(&ctx, &cmd);
                notified::run(&ctx, Job::Verify, target, Some(id), verify).await
            }
            _ => backup::backups(&ctx, &cmd).await,
        },
        Command::Restore(args) => {
            let into = match (&args.target, &args.data_dir) {
                (Some(t), _) => db::DbTarget::resolve(Some(t), &ctx.env)
                    .ok()
                    .map(|t| t.redacted()),
                (None, Some(dir)) => Some(dir.display().to_string()),
                (None, None) => None,
            };
            let restore = restore::restore(&ctx, &args);
            notified::run(&ctx, Job::Restore, into, Some(&args.backup), restore).await
        }
        Command::Size(args) => size::size(&ctx, &args).await,
        Command::Vacuum(args) if !args.dry_run => {
            let db = Some(ctx.db.redacted());
            notified::run(&ctx, Job::Vacuum, db, None, vacuum::vacuum(&ctx, &args)).await
        }
        Command::Vacuum(args) => vacuum::vacuum(&ctx, &args).await,
        Command::Report(args) => report::report(&ctx, &args).await,
        Command::Wal(cmd) => wal::wal(&ctx, &cmd).await,
        Command::Logs(args) => read::logs(&ctx, &args).await,
        Command::Completions { .. }
        | Command::Man
        | Command::Plan(_)
        | Command::Demo
        | Command::GenLogs { .. } => {
            unreachable!("handled above")
        }
    }
}
