//! Step 4 of a restore: every manifest table's rows counted in the new database, and ANALYZE,
//! overlapped with pg_restore where that is safe.
//!
//! While `pg_restore -j` runs, each table is counted as soon as pg_restore reports its data
//! committed ("finished item N TABLE DATA tag"), on one extra connection, while pg_restore goes
//! on loading other tables and building indexes ([`count_as_loaded`]). A count takes only an
//! ACCESS SHARE lock on one table, for one statement: it can make one of pg_restore's `ALTER
//! TABLE ... ADD PRIMARY KEY` wait for it, never deadlock with it. ANALYZE is not started
//! early: its SHARE UPDATE EXCLUSIVE lock conflicts with the CREATE INDEX that may still be
//! due on the same table, and statistics of expression indexes need the index to exist.
//! After pg_restore, [`finish`] counts the tables not counted yet and runs ANALYZE, on up to
//! `jobs` connections: every table, leaf partitions included, largest first; then each
//! partition tree's partitioned tables, without their leaves a second time
//! ([`analyze_parents`]). Running the trees' ANALYZE beside the tables' instead, from one
//! queue, was measured slower (BENCHMARKS.md, issue 15).
//!
//! Early counting is best effort: anything it could not count (an ambiguous table name, a
//! failed query) is counted by [`finish`]. Every manifest table is counted exactly once
//! against the manifest either way. Never writes to the database but ANALYZE.

use crate::archive::manifest::TableRows;
use crate::db::{self, DbTarget, Retry, ident};
use crate::error::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::mpsc;

/// `(schema, table)` → rows found.
pub type Counts = BTreeMap<(String, String), i64>;

/// The manifest's tables by bare name (pg_restore's tag), only where the name is unique.
fn by_tag(tables: &[TableRows]) -> HashMap<&str, Option<&TableRows>> {
    let mut m: HashMap<&str, Option<&TableRows>> = HashMap::new();
    for t in tables {
        m.entry(t.table.as_str())
            .and_modify(|e| *e = None)
            .or_insert(Some(t));
    }
    m
}

/// Count `schema.table` when it exists as a table (`None` when it does not).
async fn count_one(client: &tokio_postgres::Client, t: &TableRows) -> Result<Option<i64>> {
    let rel = format!("{}.{}", ident(&t.schema), ident(&t.table));
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_class WHERE oid = to_regclass($1)",
            &[&rel],
        )
        .await?
        .is_some();
    if !exists {
        return Ok(None);
    }
    let n: i64 = client
        .query_one(&format!("SELECT count(*) FROM {rel}"), &[])
        .await?
        .get(0);
    Ok(Some(n))
}

/// Count the tables whose tags arrive on `loaded` (sent once pg_restore has committed their
/// data) until the channel closes or `done` is set (pg_restore has finished: what is left is
/// counted in parallel by [`finish`]). Best effort: stops at the first failure.
pub async fn count_as_loaded(
    db: &DbTarget,
    retry: Retry,
    tables: &[TableRows],
    mut loaded: mpsc::UnboundedReceiver<String>,
    done: &AtomicBool,
) -> Counts {
    let tags = by_tag(tables);
    let mut found = Counts::new();
    let mut client = None;
    while let Some(tag) = loaded.recv().await {
        if done.load(Ordering::Acquire) {
            break;
        }
        let Some(Some(t)) = tags.get(tag.as_str()) else {
            continue;
        };
        if client.is_none() {
            match db::connect(db, retry).await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    tracing::debug!("early row counts: {e}; counting after pg_restore");
                    break;
                }
            }
        }
        let c = client.as_ref().expect("connected above");
        match count_one(c, t).await {
            Ok(Some(n)) => {
                found.insert((t.schema.clone(), t.table.clone()), n);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(
                    "early row count of {}: {e}; counting after pg_restore",
                    t.table
                );
                break;
            }
        }
    }
    found
}

/// Count the manifest tables missing from `counted` and ANALYZE every table, on up to
/// `workers` connections (largest tables first); partitions are analyzed through the roots of
/// their trees (which also gives the partitioned parents their statistics). `progress` gets
/// the number of tables done, the early ones included. Tables not found are absent from the
/// result.
pub async fn finish(
    db: &DbTarget,
    retry: Retry,
    tables: &[TableRows],
    counted: Counts,
    workers: usize,
    progress: impl Fn(usize) + Sync,
) -> Result<Counts> {
    let mut order: Vec<&TableRows> = tables.iter().collect();
    order.sort_by_key(|t| std::cmp::Reverse(t.rows));
    let workers = workers.clamp(1, order.len().max(1));
    let mut shares: Vec<Vec<&TableRows>> = vec![Vec::new(); workers];
    for (i, t) in order.into_iter().enumerate() {
        shares[i % workers].push(t);
    }
    let done = AtomicUsize::new(0);
    let (done, progress, counted) = (&done, &progress, &counted);
    let found = futures::future::try_join_all(shares.into_iter().map(|share| async move {
        let client = db::connect(db, retry).await?;
        let mut found = Vec::new();
        for t in share {
            let key = (t.schema.clone(), t.table.clone());
            let rel = format!("{}.{}", ident(&t.schema), ident(&t.table));
            let n = match counted.get(&key) {
                Some(&n) => Some(n),
                None => count_one(&client, t).await?,
            };
            if let Some(n) = n {
                // Partitions too, sharing the connections with the other tables; their parents
                // are analyzed below without analyzing them a second time.
                client.batch_execute(&format!("ANALYZE {rel}")).await?;
                found.push((key, n));
            }
            progress(done.fetch_add(1, Ordering::Relaxed) + 1);
        }
        Ok::<_, Error>(found)
    }))
    .await?;
    let client = db::connect(db, retry).await?;
    let roots: Vec<String> = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'p' AND NOT c.relispartition
               AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    drop(client);
    let found: Counts = found.into_iter().flatten().collect();
    let (roots, analyzed) = (&roots, &found);
    futures::future::try_join_all((0..workers.min(roots.len())).map(|w| async move {
        let client = db::connect(db, retry).await?;
        for rel in roots.iter().skip(w).step_by(workers) {
            analyze_parents(db, retry, &client, rel, analyzed, workers).await?;
        }
        Ok::<_, Error>(())
    }))
    .await?;
    Ok(found)
}

/// ANALYZE the partitioned tables of the tree under `root` (their statistics of the tree as a
/// whole), without analyzing again the leaf partitions [`finish`] has just analyzed in parallel
/// (those in `analyzed`; any other leaf is analyzed here). Before PostgreSQL 18 (`ANALYZE
/// ONLY`) an ANALYZE of a partitioned table always analyzes every partition too; so a second
/// connection holds a SHARE UPDATE EXCLUSIVE lock on the leaves (which ANALYZE needs, and which
/// the tree-wide sampling's ACCESS SHARE locks do not conflict with) while `ANALYZE
/// (SKIP_LOCKED)` of the root passes over them; the partitioned tables under the root are
/// analyzed the same way first, on up to `workers` connections. On a tree of a dozen
/// partitions this halves the step (BENCHMARKS.md, issue 15). With no leaf analyzed yet, or
/// leaves that cannot be locked at once (another session, a role without the privilege), the
/// plain ANALYZE runs.
async fn analyze_parents(
    db: &DbTarget,
    retry: Retry,
    client: &tokio_postgres::Client,
    root: &str,
    analyzed: &Counts,
    workers: usize,
) -> Result<()> {
    let tree = client
        .query(
            "SELECT n.nspname, c.relname, t.isleaf, t.level
             FROM pg_partition_tree($1::text::regclass) t
             JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p')",
            &[&root],
        )
        .await?;
    let (mut leaves, mut parents) = (Vec::new(), Vec::new());
    for r in &tree {
        let key = (r.get::<_, String>(0), r.get::<_, String>(1));
        let rel = format!("{}.{}", ident(&key.0), ident(&key.1));
        if r.get::<_, bool>(2) {
            if analyzed.contains_key(&key) {
                leaves.push(rel);
            }
        } else if r.get::<_, i32>(3) > 0 {
            parents.push(rel);
        }
    }
    let plain = format!("ANALYZE {root}");
    if leaves.is_empty() {
        client.batch_execute(&plain).await?;
        return Ok(());
    }
    let mut holder = db::connect(db, retry).await?;
    let tx = holder.transaction().await?;
    let held = tx
        .batch_execute(&format!(
            "SET LOCAL lock_timeout = '1s';
             LOCK TABLE {} IN SHARE UPDATE EXCLUSIVE MODE",
            leaves.join(", ")
        ))
        .await
        .map_err(|e| tracing::debug!("ANALYZE of {root}: leaves not held ({e}); analyzing all"));
    if held.is_err() {
        drop(tx);
        client.batch_execute(&plain).await?;
        return Ok(());
    }
    // The partitioned tables under the root at the same time, each in a transaction kept open
    // (ANALYZE may run in one) so that it stays locked, and the root's ANALYZE passes over it.
    let parents = &parents;
    let share = workers.min(parents.len());
    let open = futures::future::try_join_all((0..share).map(|w| async move {
        let c = db::connect(db, retry).await?;
        c.batch_execute("BEGIN").await?;
        for rel in parents.iter().skip(w).step_by(share) {
            c.batch_execute(&format!("ANALYZE (SKIP_LOCKED) {rel}"))
                .await?;
        }
        Ok::<_, Error>(c)
    }))
    .await?;
    client
        .batch_execute(&format!("ANALYZE (SKIP_LOCKED) {root}"))
        .await?;
    for c in &open {
        c.batch_execute("COMMIT").await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_map_only_unique_names() {
        let t = |schema: &str, table: &str| TableRows {
            schema: schema.into(),
            table: table.into(),
            rows: 1,
            data_excluded: false,
        };
        let tables = [t("public", "users"), t("public", "logs"), t("kasm", "logs")];
        let m = by_tag(&tables);
        assert_eq!(m["users"].map(|t| t.schema.as_str()), Some("public"));
        assert!(m["logs"].is_none());
        assert!(!m.contains_key("other"));
    }
}
