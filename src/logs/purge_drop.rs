//! The drop machinery purge and its size cap share: whole partitions dropped in batches of one
//! class per transaction (at most [`DROP_BATCH`]), under a short `lock_timeout`, partitions held
//! by another session left for the next round ([`DROP_ROUNDS`] rounds), on two connections at
//! once when the pool hands over a second. Called by [`super::purge`] for the windows and by
//! [`super::purge_cap`] for the size cap; it knows neither.

use super::partition_plan::{self, Partition};
use super::record::Class;
use crate::db::{self, Pool, ident};
use crate::error::Result;
use std::collections::HashMap;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient};

/// How long one purge statement may wait for a lock that ingest may be queued behind (ms).
pub(super) const LOCK_TIMEOUT_MS: u64 = 500;
/// How many rounds purge tries to drop a partition before emptying it instead.
const DROP_ROUNDS: u32 = 3;
/// The most partitions one transaction drops. The class's parent stays locked (ACCESS
/// EXCLUSIVE, which ingest of that class waits for) for the catalog work of one batch; the
/// files are freed at COMMIT after the locks are released. 64 hourly partitions are the expired
/// debug partitions of almost three days.
pub const DROP_BATCH: usize = 64;
/// How long purge waits for the pool to hand it a second connection before going on with one.
const SPARE_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

pub(super) fn table(schema: &str, p: &Partition) -> String {
    format!("{}.{}", ident(schema), ident(&p.name))
}

/// The rows of whole partitions (`tables`: qualified names), in the same order, with one query
/// for all of them. PostgreSQL's table statistics count a table exactly when every write was a
/// committed insert or delete (then `n_live_tup = n_tup_ins - n_tup_del`); a table where they
/// disagree (reset after a crash, an aborted batch, an ANALYZE estimate) is counted. Purge then
/// costs milliseconds instead of a scan of every expired row.
pub(super) async fn rows_in<C: GenericClient>(client: &C, tables: &[String]) -> Result<Vec<u64>> {
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT s.n_live_tup, s.n_tup_ins, s.n_tup_del
             FROM unnest($1::text[]) WITH ORDINALITY AS t(name, i)
             LEFT JOIN pg_stat_all_tables s ON s.relid = t.name::regclass
             ORDER BY t.i",
            &[&tables],
        )
        .await?;
    let mut out = Vec::with_capacity(tables.len());
    for (row, table) in rows.iter().zip(tables) {
        let stats: (Option<i64>, Option<i64>, Option<i64>) = (row.get(0), row.get(1), row.get(2));
        if let (Some(live), Some(ins), Some(del)) = stats {
            if ins > 0 && live == ins - del {
                out.push(live as u64);
                continue;
            }
        }
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await?
            .get(0);
        out.push(n as u64);
    }
    Ok(out)
}

/// What [`drop_expired`] did: partitions dropped with their row counts, and the ones it could
/// not lock within its rounds.
pub(super) struct DropOutcome {
    pub(super) dropped: Vec<(Partition, u64)>,
    pub(super) left: Vec<Partition>,
}

/// Drop `parts` (wholly expired, or named by the size cap) in batches of at most [`DROP_BATCH`]
/// of one class per transaction. Each round first asks which of them another session holds a lock on (a long
/// reader) and leaves those out, so the rest are dropped together; a batch whose locks time out
/// anyway (the class's parent is busy, or a reader arrived meanwhile) goes to the next round
/// with the rest of its class. Partitions only autovacuum holds are batched apart and waited for
/// past `deadlock_timeout`, when PostgreSQL cancels the autovacuum in favour of the waiter (no
/// ingest waits meanwhile: the parent is locked after the partitions). What is left after
/// [`DROP_ROUNDS`] rounds is returned.
///
/// When there is more than one partition to drop and `spare` (the pool) hands over a second
/// connection within [`SPARE_WAIT`], the two connections drop batches at the same time (a
/// [`Queue`] per round): almost all of a drop's time is its COMMIT, where the server gives the
/// files back to the filesystem (after releasing the locks), and two backends do that on two
/// cores (BENCHMARKS.md, issue 15).
/// Two batches of one class take the class's parent lock in turn, each only until its COMMIT
/// begins; two of different classes never wait for each other.
pub(super) async fn drop_expired(
    client: &mut Client,
    spare: Option<&Pool>,
    schema: &str,
    parts: Vec<Partition>,
) -> Result<DropOutcome> {
    let mut second: Option<deadpool_postgres::Object> = None;
    let mut dropped = Vec::with_capacity(parts.len());
    let mut pending = parts;
    let mut vacuum_wait_ms = None;
    for round in 1..=DROP_ROUNDS {
        if pending.is_empty() {
            break;
        }
        let held = held_by_others(client, schema, &pending).await?;
        let mut next = Vec::new();
        let mut work: Vec<ClassWork> = Vec::new();
        for class in Class::ALL {
            let mut w = ClassWork {
                class,
                free: Vec::new(),
                vacuumed: Vec::new(),
            };
            for p in pending.iter().filter(|p| p.class == class) {
                match held.get(&p.name) {
                    None => w.free.push(p.clone()),
                    Some(Holder::Autovacuum) => w.vacuumed.push(p.clone()),
                    Some(Holder::Session) => next.push(p.clone()),
                }
            }
            if !w.vacuumed.is_empty() && vacuum_wait_ms.is_none() {
                vacuum_wait_ms = Some(deadlock_timeout_ms(client).await? + LOCK_TIMEOUT_MS);
            }
            if !w.free.is_empty() || !w.vacuumed.is_empty() {
                work.push(w);
            }
        }
        let wait = vacuum_wait_ms.unwrap_or(LOCK_TIMEOUT_MS);
        let parts: usize = work.iter().map(|w| w.free.len() + w.vacuumed.len()).sum();
        if parts > 1 && second.is_none() {
            if let Some(pool) = spare {
                second = tokio::time::timeout(SPARE_WAIT, db::get(pool))
                    .await
                    .ok()
                    .and_then(|c| c.ok());
            }
        }
        let queue = Queue::new(work, wait, second.is_some());
        let results = match second.as_mut() {
            Some(other) => {
                let (ra, rb) = tokio::try_join!(
                    drop_queued(client, schema, round, &queue, 0),
                    drop_queued(other, schema, round, &queue, 1)
                )?;
                vec![ra, rb]
            }
            None => vec![drop_queued(client, schema, round, &queue, 0).await?],
        };
        for d in results {
            dropped.extend(d);
        }
        next.extend(queue.left());
        pending = next;
        if !pending.is_empty() && round < DROP_ROUNDS {
            tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(round))).await;
        }
    }
    Ok(DropOutcome {
        dropped,
        left: pending,
    })
}

/// One class's partitions for one round of [`drop_expired`]: those no one holds, and those only
/// autovacuum holds.
struct ClassWork {
    class: Class,
    free: Vec<Partition>,
    vacuumed: Vec<Partition>,
}

/// One transaction's worth: partitions of one class and how long to wait for their locks.
struct Batch {
    class: Class,
    parts: Vec<Partition>,
    wait_ms: u64,
}

/// The batches of one round, a queue per class, shared by the connections dropping them. A
/// connection takes from its own class's queue first (connection 0 the first class, 1 the
/// other), then from the other's, so the two finish together even when one class holds most of
/// the bytes (7 daily logs partitions against a few hours of debug ones). A class whose parent
/// lock timed out is closed for the round: the rest of it waits for the next one.
struct Queue {
    queues: std::sync::Mutex<Vec<(Class, std::collections::VecDeque<Batch>, bool)>>,
}

impl Queue {
    /// With two connections a class is cut into at least two batches (each at most
    /// [`DROP_BATCH`]), so that both can work on it.
    fn new(work: Vec<ClassWork>, vacuum_wait_ms: u64, two: bool) -> Queue {
        let queues = work
            .into_iter()
            .map(|w| {
                let n = w.free.len();
                let size = if two { n.div_ceil(2) } else { n }.clamp(1, DROP_BATCH);
                let mut q: std::collections::VecDeque<Batch> = w
                    .free
                    .chunks(size)
                    .map(|c| Batch {
                        class: w.class,
                        parts: c.to_vec(),
                        wait_ms: LOCK_TIMEOUT_MS,
                    })
                    .collect();
                q.extend(w.vacuumed.chunks(DROP_BATCH).map(|c| Batch {
                    class: w.class,
                    parts: c.to_vec(),
                    wait_ms: vacuum_wait_ms,
                }));
                (w.class, q, true)
            })
            .collect();
        Queue {
            queues: std::sync::Mutex::new(queues),
        }
    }

    /// The next batch for connection `me`: its own class's first, then the other's.
    fn take(&self, me: usize) -> Option<Batch> {
        let mut qs = self.queues.lock().expect("purge queue");
        let n = qs.len();
        (0..n).map(|k| (me + k) % n).find_map(|i| match &mut qs[i] {
            (_, q, true) => q.pop_front(),
            _ => None,
        })
    }

    /// `class`'s parent was busy: no more of it this round; `batch` goes back first.
    fn close(&self, batch: Batch) {
        let mut qs = self.queues.lock().expect("purge queue");
        if let Some((_, q, open)) = qs.iter_mut().find(|(c, ..)| *c == batch.class) {
            *open = false;
            q.push_front(batch);
        }
    }

    /// What was not dropped this round.
    fn left(self) -> Vec<Partition> {
        let qs = self.queues.into_inner().expect("purge queue");
        qs.into_iter()
            .flat_map(|(_, q, _)| q)
            .flat_map(|b| b.parts)
            .collect()
    }
}

/// Drop batches from `queue` on `client` until it has none left for this connection: what was
/// dropped, with the rows of each partition.
async fn drop_queued(
    client: &mut Client,
    schema: &str,
    round: u32,
    queue: &Queue,
    me: usize,
) -> Result<Vec<(Partition, u64)>> {
    let mut dropped = Vec::new();
    while let Some(batch) = queue.take(me) {
        match drop_batch(client, schema, batch.class, &batch.parts, batch.wait_ms).await? {
            Some(counts) => dropped.extend(batch.parts.iter().cloned().zip(counts)),
            None => {
                tracing::debug!(round, class = ?batch.class, partitions = batch.parts.len(), "lock not available");
                queue.close(batch);
            }
        }
    }
    Ok(dropped)
}

/// Who holds a lock on a partition purge wants to drop.
enum Holder {
    /// Only autovacuum workers, which PostgreSQL cancels for a waiter after `deadlock_timeout`.
    Autovacuum,
    /// Some other session (a reader): waiting would be long.
    Session,
}

/// Those `parts` some other session holds any lock on now (every lock conflicts with the ACCESS
/// EXCLUSIVE lock DROP needs), by name.
async fn held_by_others(
    client: &Client,
    schema: &str,
    parts: &[Partition],
) -> Result<HashMap<String, Holder>> {
    let tables: Vec<String> = parts.iter().map(|p| table(schema, p)).collect();
    let rows = client
        .query(
            "SELECT t.i, bool_and(coalesce(a.backend_type = 'autovacuum worker', false))
             FROM unnest($1::text[]) WITH ORDINALITY AS t(name, i)
             JOIN pg_locks l ON l.locktype = 'relation' AND l.granted
                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                 AND l.relation = t.name::regclass
                 AND l.pid IS DISTINCT FROM pg_backend_pid()
             LEFT JOIN pg_stat_activity a ON a.pid = l.pid
             GROUP BY t.i",
            &[&tables],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let name = parts[(r.get::<_, i64>(0) - 1) as usize].name.clone();
            let holder = if r.get(1) {
                Holder::Autovacuum
            } else {
                Holder::Session
            };
            (name, holder)
        })
        .collect())
}

/// The server's `deadlock_timeout` in milliseconds.
async fn deadlock_timeout_ms(client: &Client) -> Result<u64> {
    let ms: f64 = client
        .query_one(
            "SELECT (extract(epoch FROM current_setting('deadlock_timeout')::interval) * 1000)::float8",
            &[],
        )
        .await?
        .get(0);
    Ok(ms.max(0.0) as u64)
}

/// Drop `parts` (all of `class`) in one transaction, counting their rows under the same locks:
/// the partitions first, waiting up to `wait_ms` (readers of these old partitions only wait
/// behind that; ingest never writes to them), then the class's parent, waiting at most
/// [`LOCK_TIMEOUT_MS`] (ingest of the class waits behind that). None when a lock was not had in
/// time (nothing changed).
async fn drop_batch(
    client: &mut Client,
    schema: &str,
    class: Class,
    parts: &[Partition],
    wait_ms: u64,
) -> Result<Option<Vec<u64>>> {
    let tables: Vec<String> = parts.iter().map(|p| table(schema, p)).collect();
    let list = tables.join(", ");
    let parent = format!("{}.{}", ident(schema), ident(partition_plan::parent(class)));
    let failed = |e: tokio_postgres::Error| {
        let names: Vec<_> = parts.iter().map(|p| p.name.as_str()).collect();
        crate::Error::from(e).context(format!("cannot drop partitions {}", names.join(", ")))
    };
    let tx = client.transaction().await?;
    let locked = tx
        .batch_execute(&format!(
            "SET LOCAL lock_timeout = '{wait_ms}ms';
             LOCK TABLE {list} IN ACCESS EXCLUSIVE MODE;
             SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms';
             LOCK TABLE ONLY {parent} IN ACCESS EXCLUSIVE MODE"
        ))
        .await;
    match locked {
        Ok(()) => {}
        // Dropping the transaction rolls it back: nothing changed.
        Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => return Ok(None),
        Err(e) => return Err(failed(e)),
    }
    let counts = rows_in(&tx, &tables).await?;
    match tx.batch_execute(&format!("DROP TABLE {list}")).await {
        Ok(()) => {}
        Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => return Ok(None),
        Err(e) => return Err(failed(e)),
    }
    tx.commit().await?;
    Ok(Some(counts))
}
