//! The demo's read stage: what `kasm-db logs` shows on the generated records, through the same
//! operations (`crate::read`): the newest errors, counts per level, the context of one record,
//! and a tail that sees each record written after it started exactly once.

use super::{Demo, StageResult};
use crate::error::{Error, Result};
use crate::logs::generate::write_records;
use crate::logs::ingest::{self, IngestOptions};
use crate::logs::reader::Source;
use crate::logs::record::Level;
use crate::read::filter::{Field, Filter};
use crate::read::query::{self, PageRequest};
use crate::read::sql::Direction;
use crate::read::{Cursor, render};
use chrono::Utc;

const TAILED: u64 = 500;

pub async fn stage(d: &mut Demo) -> Result<StageResult> {
    let schema = d.config.database.schema.clone();
    let client = crate::db::get(&d.pool).await?;
    let now = Utc::now();
    let errors = Filter {
        levels: vec![Level::Error, Level::Critical],
        ..Filter::default()
    };
    let req = PageRequest {
        filter: errors.clone(),
        limit: 3,
        direction: Direction::Older,
        anchor: None,
        horizon: None,
    };
    let newest = query::page(&client, &schema, &req, now).await?;
    let Some(first) = newest.first() else {
        return Err(Error::failed("no ERROR record to show"));
    };
    let counts = query::count_by(&client, &schema, &Filter::default(), Field::Level).await?;
    let ctx = query::around(&client, &schema, &Filter::default(), first.log_id, 2, now)
        .await?
        .ok_or_else(|| Error::failed("the record just read is not found by its id"))?;

    // A tail started now sees each record written after it exactly once.
    let start = Cursor::tail_start(query::horizon(&client).await?);
    let path = d.workdir.path().join("tail.ndjson");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
    write_records(&mut f, TAILED, now)?;
    std::io::Write::flush(&mut f)?;
    drop(f);
    let opts = IngestOptions {
        schema: schema.clone(),
        retention: d.config.retention,
        max_line_bytes: d.config.ingest.max_line_bytes,
        batch_rows: 100,
        received_at: None,
        forward_all: false,
        parallel: d.config.ingest.parallel,
        bytes_read: None,
    };
    ingest::ingest(&d.pool, vec![Source::File(path)], &opts, None, &mut |_| {
        Ok(())
    })
    .await?;
    let mut seen = std::collections::BTreeSet::new();
    let mut from = start;
    loop {
        let (records, next) = query::tail(&client, &schema, &Filter::default(), &from, 200).await?;
        if records.is_empty() {
            break;
        }
        for r in &records {
            if !seen.insert(r.log_id) {
                return Err(Error::failed(format!(
                    "the tail printed {} twice",
                    r.log_id
                )));
            }
        }
        from = next;
    }
    if seen.len() as u64 != TAILED {
        return Err(Error::failed(format!(
            "the tail saw {} of the {TAILED} records written after it started",
            seen.len()
        )));
    }
    let per_level: Vec<String> = counts
        .iter()
        .map(|(l, n)| format!("{} {n}", l.as_deref().unwrap_or("-")))
        .collect();
    let line = render::line(first, false);
    let shown: String = line.chars().take(90).collect();
    Ok(StageResult::Done(format!(
        "kasm-db logs --min-level error -n 3 → \"{shown}…\"; --count-by level: {}; --around: {}+1+{} records; -f saw each of {TAILED} new records once",
        per_level.join(", "),
        ctx.before.len(),
        ctx.after.len()
    )))
}
