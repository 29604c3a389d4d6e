//! The `logs` command: the CLI reader of the stored logs. Turns flags into a
//! [`crate::read::Filter`] and a request, runs the read side's queries and writes the records
//! to stdout as they come (like `gen-logs`, a stream: records are written while the query
//! pages, and `-f` never ends by itself), reconnecting a tail after a database restart.
//!
//! Every bad flag is a usage error (exit 2) naming it; nothing is written before the filter
//! is known to be valid. A closed pipe (`kasm-db logs | head`) ends the command quietly.

use super::Ctx;
use crate::cli::LogsArgs;
use crate::error::{Error, Kind, Result};
use crate::output::Outcome;
use crate::read::Cursor;
use crate::read::filter::{self, Field, Filter};
use crate::read::query::{self, LogRecord, PageRequest};
use crate::read::render;
use crate::read::sql::Direction;
use chrono::{DateTime, Utc};
use std::io::Write;
use std::time::Duration;

/// How a record is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Lines { colour: bool },
    Json,
    Csv,
}

/// Records per tail query.
const TAIL_BATCH: i64 = 1000;
/// Pause between tail queries when the last one found less than a batch.
const TAIL_POLL: Duration = Duration::from_millis(200);

/// The filter the flags describe.
pub fn filter_of(args: &LogsArgs, now: DateTime<Utc>) -> Result<Filter> {
    filter::Given {
        levels: args.level.iter().map(String::as_str).collect(),
        min_level: args.min_level.as_deref(),
        app: args.app.as_deref(),
        host: args.host.as_deref(),
        user: args.user.as_deref(),
        wheres: args.wheres.iter().map(String::as_str).collect(),
        grep: args.grep.as_deref(),
        since: args.since.as_deref(),
        until: args.until.as_deref(),
    }
    .parse(now)
    .map_err(Error::usage)
}

fn cursor(flag: &str, text: &Option<String>) -> Result<Option<Cursor>> {
    text.as_deref()
        .map(|t| Cursor::decode(t).map_err(|e| Error::usage(format!("{flag}: {e}"))))
        .transpose()
}

/// Where records go: stdout, buffered, flushed after each batch; a closed pipe is remembered.
struct Out {
    w: std::io::BufWriter<std::io::Stdout>,
    format: Format,
    csv_header: bool,
    closed: bool,
}

impl Out {
    fn write(&mut self, records: &[LogRecord]) -> Result<()> {
        if self.closed || records.is_empty() {
            return Ok(());
        }
        let mut written = Ok(());
        match self.format {
            Format::Csv => {
                written = self.w.write_all(&render::csv(records, !self.csv_header));
                self.csv_header = true;
            }
            Format::Json | Format::Lines { .. } => {
                for r in records {
                    let line = match self.format {
                        Format::Json => render::json(r),
                        Format::Lines { colour } => render::line(r, colour),
                        Format::Csv => unreachable!(),
                    };
                    written = writeln!(self.w, "{line}");
                    if written.is_err() {
                        break;
                    }
                }
            }
        }
        match written.and_then(|_| self.w.flush()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(Error::failed(format!("cannot write output: {e}"))),
        }
    }
}

pub async fn logs(ctx: &Ctx, args: &LogsArgs) -> Result<Outcome> {
    let now = Utc::now();
    let f = filter_of(args, now)?;
    if args.csv && ctx.json {
        return Err(Error::usage("--csv and --json: choose one"));
    }
    let before = cursor("--before", &args.before)?;
    let after = cursor("--after", &args.after)?;
    let around = args
        .around
        .as_deref()
        .map(|t| {
            uuid::Uuid::parse_str(t.trim())
                .map_err(|_| Error::usage(format!("--around {t:?} is not a log_id (a UUID)")))
        })
        .transpose()?;
    let count_by = args
        .count_by
        .as_deref()
        .map(Field::parse)
        .transpose()
        .map_err(Error::usage)?;
    let schema = ctx.config.database.schema.clone();
    let pool = ctx.pool(1).await?;
    let client = crate::db::get(&pool).await?;

    if let Some(field) = count_by {
        let counts = query::count_by(&client, &schema, &f, field).await?;
        return Ok(counts_outcome(&counts));
    }

    let colour =
        std::io::IsTerminal::is_terminal(&std::io::stdout()) && !ctx.env.contains_key("NO_COLOR");
    let format = if ctx.json {
        Format::Json
    } else if args.csv {
        Format::Csv
    } else {
        Format::Lines { colour }
    };
    let mut out = Out {
        w: std::io::BufWriter::new(std::io::stdout()),
        format,
        csv_header: false,
        closed: false,
    };
    let n = i64::from(args.lines);

    if let Some(id) = around {
        let c = i64::from(args.context.unwrap_or(5));
        let Some(ctxt) = query::around(&client, &schema, &f, id, c, now).await? else {
            return Err(Error::failed(format!(
                "no record with log_id {id} is stored (it may have been purged)"
            )));
        };
        out.write(&ctxt.before)?;
        out.write(std::slice::from_ref(&ctxt.record))?;
        out.write(&ctxt.after)?;
        return Ok(Outcome::text(""));
    }

    let tail_from = if args.follow {
        match after {
            // Resume a tail: everything stored after that record, in tail order.
            Some(c) => c,
            None => {
                let h = query::horizon(&client).await?;
                let req = PageRequest {
                    filter: f.clone(),
                    limit: n,
                    direction: Direction::Older,
                    anchor: None,
                    horizon: Some(h),
                };
                let mut newest = query::page(&client, &schema, &req, now).await?;
                newest.reverse();
                out.write(&newest)?;
                Cursor::tail_start(h)
            }
        }
    } else {
        let req = PageRequest {
            filter: f.clone(),
            limit: n,
            direction: if after.is_some() {
                Direction::Newer
            } else {
                Direction::Older
            },
            anchor: after.or(before),
            horizon: None,
        };
        let mut page = query::page(&client, &schema, &req, now).await?;
        if req.direction == Direction::Older {
            page.reverse();
        }
        out.write(&page)?;
        if ctx.interactive && !out.closed && format != Format::Json {
            if let (Some(first), Some(last)) = (page.first(), page.last()) {
                tracing::info!(
                    "{} records; older: --before {}  newer: --after {}",
                    page.len(),
                    first.cursor,
                    last.cursor
                );
            } else {
                tracing::info!("no records match");
            }
        }
        return Ok(Outcome::text(""));
    };
    drop(client);
    follow(&pool, &schema, &f, tail_from, &mut out).await
}

/// The tail: poll for records past `from`, write them, until Ctrl-C or a closed pipe. A lost
/// connection is waited out (the database restarting) and the tail resumes where it was.
async fn follow(
    pool: &crate::db::Pool,
    schema: &str,
    f: &Filter,
    mut from: Cursor,
    out: &mut Out,
) -> Result<Outcome> {
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    let mut lost: Option<std::time::Instant> = None;
    loop {
        if out.closed {
            return Ok(Outcome::text(""));
        }
        let step = async {
            let client = crate::db::get(pool).await?;
            query::tail(&client, schema, f, &from, TAIL_BATCH).await
        };
        let result = tokio::select! {
            _ = &mut stop => return Ok(Outcome::text("")),
            r = step => r,
        };
        let wait = match result {
            Ok((records, next)) => {
                if let Some(since) = lost.take() {
                    tracing::info!(
                        "database reachable again after {:.0}s; the tail resumes where it was",
                        since.elapsed().as_secs_f64()
                    );
                }
                out.write(&records)?;
                from = next;
                if (records.len() as i64) < TAIL_BATCH {
                    TAIL_POLL
                } else {
                    Duration::ZERO
                }
            }
            Err(e) if e.is_transient() || e.kind() == Kind::Temporary => {
                if lost.is_none() {
                    tracing::warn!(
                        "lost the database ({e}); retrying, the tail resumes where it was"
                    );
                    lost = Some(std::time::Instant::now());
                }
                // The pool recycles no closed connection: the next step connects anew.
                Duration::from_secs(1)
            }
            Err(e) => return Err(e),
        };
        tokio::select! {
            _ = &mut stop => return Ok(Outcome::text("")),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

fn counts_outcome(counts: &[(Option<String>, i64)]) -> Outcome {
    let map: serde_json::Map<String, serde_json::Value> = counts
        .iter()
        .map(|(v, n)| {
            (
                v.clone().unwrap_or_else(|| "(none)".into()),
                serde_json::Value::from(*n),
            )
        })
        .collect();
    let width = counts
        .iter()
        .map(|(_, n)| n.to_string().len())
        .max()
        .unwrap_or(1);
    let text: String = counts
        .iter()
        .map(|(v, n)| {
            format!(
                "{n:>width$}  {}\n",
                render::printable(v.as_deref().unwrap_or("(none)"))
            )
        })
        .collect();
    Outcome::new(&serde_json::json!({ "counts": map }), text)
}
