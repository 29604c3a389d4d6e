//! The `kasm-db` binary: parse the command line, set up diagnostics, run the command, print its
//! result, and map errors to the contract's exit codes (0, 1, 2, 75). This is the only place
//! that prints results or decides an exit code.

use clap::Parser;
use kasm_db::cli::{Cli, LogFormat};
use std::io::Write;
use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: ingest allocates and frees a few strings per record,
/// and glibc's allocator was ~16 % of its client CPU (BENCHMARKS.md, issue 15).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_tracing(&cli);
    let json = cli.global.json;
    let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kasm-db: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(kasm_db::commands::run(cli, env));
    // Do not wait for background tasks (connection drivers, idle pools) at exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(outcome) => {
            let mut stdout = std::io::stdout().lock();
            let printed = if json && !outcome.json.is_null() {
                writeln!(
                    stdout,
                    "{}",
                    serde_json::to_string_pretty(&outcome.json).unwrap_or_default()
                )
            } else if !outcome.text.is_empty() {
                let nl = if outcome.text.ends_with('\n') {
                    ""
                } else {
                    "\n"
                };
                write!(stdout, "{}{nl}", outcome.text)
            } else {
                Ok(())
            };
            // A closed pipe (`kasm-db man | head`) is not a failure.
            if let Err(e) = printed.and_then(|_| stdout.flush()) {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    eprintln!("kasm-db: cannot write output: {e}");
                    return ExitCode::from(1);
                }
            }
            ExitCode::from(if outcome.ok { 0 } else { 1 })
        }
        Err(e) => {
            tracing::debug!(error = ?e, "command failed");
            eprintln!("kasm-db: error: {e}");
            ExitCode::from(e.kind().exit_code() as u8)
        }
    }
}

fn init_tracing(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let level = match (cli.global.verbose, cli.global.quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (v, _) if v >= 2 => "trace",
        (_, 1) => "warn",
        _ => "error",
    };
    let filter = EnvFilter::try_from_env("KASM_DB_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("kasm_db={level},kasm_db::pgtemp=warn,warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match cli.global.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}
