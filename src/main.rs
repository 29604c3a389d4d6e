//! The `kasm-db` binary: parse the command line, set up diagnostics, run the command, print its
//! result, and map errors to the contract's exit codes (0, 1, 2, 75). This is the only place
//! that prints results or decides an exit code.

use clap::Parser;
use kasm_db::cli::{Cli, LogFormat};
use kasm_db::commands::demo::{EXPECTED_SPAN, STAGE_SPAN};
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
            // A usage error with --json on the command line still prints its document.
            if code != 0 && json_on_command_line(std::env::args_os().skip(1)) {
                let text = e.to_string();
                let first = text.lines().next().unwrap_or_default();
                print_failure(first.strip_prefix("error: ").unwrap_or(first), code);
            }
            let _ = e.print();
            return ExitCode::from(code as u8);
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
            let msg = format!("cannot start the async runtime: {e}");
            if json {
                print_failure(&msg, 1);
            }
            eprintln!("kasm-db: {msg}");
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
            let code = e.kind().exit_code();
            // The error's Display is redacted where it is made (targets described without
            // their password, secrets as `<redacted>`).
            if json {
                print_failure(&e.to_string(), code);
            }
            eprintln!("kasm-db: error: {e}");
            ExitCode::from(code as u8)
        }
    }
}

/// With `--json`, a command that fails before it has a result still prints one JSON document
/// on stdout: `{"ok": false, "error", "exit_code", "meaning"}` (beside the message on stderr).
fn print_failure(error: &str, exit_code: i32) {
    let meaning = match exit_code {
        2 => "usage error or invalid configuration",
        75 => {
            "temporary: the database or target is unreachable or does not exist, or another \
               run holds the job's lock; try again later"
        }
        _ => "the job ran and failed, or a check failed",
    };
    let doc = serde_json::json!({
        "ok": false,
        "error": error,
        "exit_code": exit_code,
        "meaning": meaning,
    });
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(
        stdout,
        "{}",
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    )
    .and_then(|_| stdout.flush());
}

/// Whether `--json` is on the command line (before any `--`), for errors clap reports before
/// the parsed flags exist.
fn json_on_command_line(args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    args.take_while(|a| a != "--").any(|a| a == "--json")
}

/// Diagnostics on stderr: `KASM_DB_LOG` (an `EnvFilter`), else `-v`/`-q`. Inside the demo's
/// spans ([`STAGE_SPAN`], [`EXPECTED_SPAN`]) the lines that are the expected effect of what it
/// shows are left out unless `-v` or `KASM_DB_LOG` asks for them: INFO chatter in every stage,
/// and also the WARNs of the operation it runs to provoke them (the size cap dropping
/// partitions). ERRORs always show; a stage that fails says so on its own line.
fn init_tracing(cli: &Cli) {
    use tracing_subscriber::{EnvFilter, Layer, filter, fmt, prelude::*};
    let level = match (cli.global.verbose, cli.global.quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (v, _) if v >= 2 => "trace",
        (_, 1) => "warn",
        _ => "error",
    };
    let explicit = std::env::var_os("KASM_DB_LOG").is_some();
    let filter = EnvFilter::try_from_env("KASM_DB_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("kasm_db={level},kasm_db::pgtemp=warn,warn")));
    let all = cli.global.verbose > 0 || explicit;
    let expected = filter::dynamic_filter_fn(move |meta, cx| {
        all || !meta.is_event() || !expected_in_demo(*meta.level(), cx.lookup_current())
    });
    let layer = fmt::layer().with_writer(std::io::stderr).with_target(false);
    match cli.global.log_format {
        LogFormat::Json => tracing_subscriber::registry()
            .with(layer.json().with_filter(filter).with_filter(expected))
            .init(),
        LogFormat::Text => tracing_subscriber::registry()
            .with(
                layer
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_filter(filter)
                    .with_filter(expected),
            )
            .init(),
    }
}

/// Whether an event at `level` inside `span` is the demo's expected chatter (see
/// [`init_tracing`]).
fn expected_in_demo<R>(
    level: tracing::Level,
    span: Option<tracing_subscriber::registry::SpanRef<'_, R>>,
) -> bool
where
    R: for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let Some(span) = span else {
        return false;
    };
    for s in span.scope() {
        if s.name() == EXPECTED_SPAN {
            return level > tracing::Level::ERROR;
        }
        if s.name() == STAGE_SPAN {
            return level > tracing::Level::WARN;
        }
    }
    false
}
