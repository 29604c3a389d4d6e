//! The demo's size cap stage (`retention.max_bytes`): records received over the last days and
//! hours (inside their windows), a cap below the `logs` relation's size, then `purge` as the
//! command runs it: `--dry-run` lists, the real run drops the same oldest partitions, debug
//! first, and the demo checks the relation is within the cap and the partitions receiving
//! inserts are whole. The cap stays set for the later stages (so `size` shows its warnings).

use super::{Demo, StageResult};
use crate::config::ByteSize;
use crate::error::{Error, Result};
use crate::logs::generate::write_records;
use crate::logs::ingest::{self, IngestOptions};
use crate::logs::reader::Source;
use crate::logs::{cap_plan, partition_ddl, purge};
use crate::sizing::bytes;
use chrono::{Duration, Utc};
use tracing::Instrument;

/// Records per batch.
const BATCH: u64 = 3_000;

pub async fn stage(d: &mut Demo) -> Result<StageResult> {
    let now = Utc::now();
    // Three days of non-debug logs, two hours of debug: inside their windows (7 d, 4 h).
    for (i, ago) in [
        Duration::days(3),
        Duration::days(2),
        Duration::days(1),
        Duration::hours(2),
        Duration::hours(1),
    ]
    .into_iter()
    .enumerate()
    {
        let path = d.workdir.path().join(format!("cap{i}.ndjson"));
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
        write_records(&mut f, BATCH, now - ago)?;
        std::io::Write::flush(&mut f)?;
        drop(f);
        let opts = IngestOptions {
            schema: d.config.database.schema.clone(),
            retention: d.config.retention,
            max_line_bytes: d.config.ingest.max_line_bytes,
            batch_rows: d.config.ingest.batch_rows,
            received_at: Some(now - ago),
            forward_all: false,
            parallel: d.config.ingest.parallel,
            bytes_read: None,
        };
        ingest::ingest(&d.pool, vec![Source::File(path)], &opts, None, &mut |_| {
            Ok(())
        })
        .await?;
    }
    let schema = d.config.database.schema.clone();
    let target = d.db.redacted();
    // The windows first (the debug hours of those days are past theirs).
    purge::purge(&d.pool, &target, &schema, &d.config.retention, now, false).await?;

    // A cap that half of what may be dropped early makes up for.
    let client = crate::db::get(&d.pool).await?;
    let mut total = 0u64;
    let mut droppable = 0u64;
    for p in partition_ddl::list(&client, &schema).await? {
        let b = relation_bytes(&client, &schema, &p.name).await?;
        total += b;
        if !cap_plan::is_current(&p, now) {
            droppable += b;
        }
    }
    let unit: u64 = if droppable >= 2_000_000 {
        1_000_000
    } else {
        1_000
    };
    let cap = ByteSize::from_bytes((total - droppable / 2) / unit * unit);
    let mut retention = d.config.retention;
    retention.max_bytes = Some(cap);

    let dry = purge::purge(&d.pool, &target, &schema, &retention, now, true).await?;
    // The cap's WARN per partition dropped early is what this stage shows, in its own line.
    let r = purge::purge(&d.pool, &target, &schema, &retention, now, false)
        .instrument(tracing::error_span!(super::EXPECTED_SPAN))
        .await?;
    let (Some(dry), Some(cap_r)) = (dry.cap, r.cap) else {
        return Err(Error::failed("purge reported no size cap"));
    };
    let names = |c: &crate::logs::purge_cap::CapReport| -> Vec<String> {
        c.dropped.iter().map(|d| d.partition.clone()).collect()
    };
    if cap_r.dropped.is_empty() || names(&dry) != names(&cap_r) {
        return Err(Error::failed(format!(
            "the cap dropped {:?}; --dry-run listed {:?}",
            names(&cap_r),
            names(&dry)
        )));
    }
    let mut after = 0u64;
    let mut current = 0usize;
    for p in partition_ddl::list(&client, &schema).await? {
        after += relation_bytes(&client, &schema, &p.name).await?;
        current += usize::from(cap_plan::is_current(&p, now));
    }
    if after > cap.bytes() || !cap_r.within {
        return Err(Error::failed(format!(
            "logs is {} after the cap, over retention.max_bytes {cap}",
            bytes(after)
        )));
    }
    let debug_first = cap_r
        .dropped
        .iter()
        .skip_while(|d| d.class == crate::logs::record::Class::Debug)
        .all(|d| d.class != crate::logs::record::Class::Debug);
    if !debug_first || current == 0 {
        return Err(Error::failed(
            "the cap dropped a non-debug partition before a debug one, or a current partition",
        ));
    }
    d.config.retention.max_bytes = Some(cap);
    let rows: u64 = cap_r.dropped.iter().map(|d| d.rows).sum();
    Ok(StageResult::Done(format!(
        "retention.max_bytes {cap}: logs {} after the windows; --dry-run listed and purge dropped \
         {} partitions early, debug first ({}; {rows} rows), now {}; the partitions receiving \
         inserts kept",
        bytes(cap_r.before_bytes),
        cap_r.dropped.len(),
        names(&cap_r).join(", "),
        bytes(after)
    )))
}

async fn relation_bytes(client: &tokio_postgres::Client, schema: &str, name: &str) -> Result<u64> {
    let b: i64 = client
        .query_one(
            "SELECT pg_total_relation_size(format('%I.%I', $1::text, $2::text)::regclass)",
            &[&schema, &name],
        )
        .await?
        .get(0);
    Ok(b.max(0) as u64)
}
