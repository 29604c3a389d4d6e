//! The demo's ingest and purge stages: generated Kasm logs in (a day's worth received eight
//! days ago plus today's), then purge applies the windows and the demo checks the result.

use super::{Demo, StageResult};
use crate::error::{Error, Result};
use crate::logs::generate::write_records;
use crate::logs::ingest::{self, IngestOptions};
use crate::logs::purge;
use crate::logs::reader::Source;
use chrono::{Duration, Utc};

const OLD: u64 = 20_000;
const NEW: u64 = 30_000;

pub async fn ingest_stage(d: &mut Demo) -> Result<StageResult> {
    let now = Utc::now();
    let mut stored = 0;
    let mut stored_debug = 0;
    let mut read = 0;
    for (name, n, received) in [
        ("old.ndjson", OLD, now - Duration::days(8)),
        ("new.ndjson", NEW, now),
    ] {
        let path = d.workdir.path().join(name);
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
        write_records(&mut f, n, received)?;
        std::io::Write::flush(&mut f)?;
        drop(f);
        let opts = IngestOptions {
            schema: d.config.database.schema.clone(),
            retention: d.config.retention,
            max_line_bytes: d.config.ingest.max_line_bytes,
            batch_rows: d.config.ingest.batch_rows,
            received_at: Some(received),
            forward_all: false,
            parallel: d.config.ingest.parallel,
            bytes_read: None,
        };
        let s = ingest::ingest(&d.pool, vec![Source::File(path)], &opts, None, &mut |_| {
            Ok(())
        })
        .await?;
        if s.rejected > 0 || s.stored != n {
            return Err(Error::failed(format!(
                "stored {} of {n} generated records ({} rejected)",
                s.stored, s.rejected
            )));
        }
        stored += s.stored;
        stored_debug += s.stored_debug;
        read += s.read;
    }
    Ok(StageResult::Done(format!(
        "{read} generated Kasm records stored by binary COPY ({stored_debug} DEBUG, {} other), {OLD} of them received 8 days ago",
        stored - stored_debug
    )))
}

pub async fn purge_stage(d: &mut Demo) -> Result<StageResult> {
    let schema = &d.config.database.schema;
    let r = purge::purge(
        &d.pool,
        &d.db.redacted(),
        schema,
        &d.config.retention,
        Utc::now(),
        false,
    )
    .await?;
    let client = crate::db::get(&d.pool).await?;
    let s = crate::db::ident(schema);
    let stale: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM {s}.logs WHERE (levelname = 'DEBUG' AND ingest_date < now() - make_interval(secs => $1))
                 OR (levelname <> 'DEBUG' AND ingest_date < now() - make_interval(secs => $2))"
            ),
            &[&(d.config.retention.debug.as_duration().as_secs_f64()), &(d.config.retention.logs.as_duration().as_secs_f64())],
        )
        .await?
        .get(0);
    if stale != 0 {
        return Err(Error::failed(format!(
            "{stale} rows older than their window remain after purge"
        )));
    }
    Ok(StageResult::Done(format!(
        "removed {} DEBUG and {} other expired rows by dropping {} partitions; no row is older than its window (debug {}, logs {})",
        r.debug_deleted,
        r.logs_deleted,
        r.partitions_dropped,
        d.config.retention.debug,
        d.config.retention.logs
    )))
}
