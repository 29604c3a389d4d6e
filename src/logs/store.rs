//! Storing a batch of rows durably, the one way both `ingest` and `serve` do it: create the
//! partitions the rows need (remembering which exist), then binary COPY them (`copy::StoreJob`,
//! poison rows isolated), retrying on a new connection when the connection or the server goes
//! away, without storing any row twice.
//!
//! It never decides what to answer a client or how to report a reject; it returns what was
//! stored and refused, or the error with what was stored before it.

use super::copy::{Row, StoreJob, Stored};
use super::partition_ddl;
use super::partition_plan;
use crate::db::{self, Pool};
use crate::error::{Error, Kind, Result};
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

/// How a store retries a lost connection: the one retry policy.
pub type Retries = crate::retry::Policy;

/// A store's policy: `attempts` tries, `first_wait` before the second, doubling up to 8 s.
pub const fn retries(attempts: u32, first_wait: Duration) -> Retries {
    crate::retry::Policy::new(attempts, first_wait, Duration::from_secs(8))
}

pub struct Storer {
    pool: Pool,
    schema: String,
    retries: Retries,
    /// Partitions known to exist.
    known: Mutex<HashSet<String>>,
}

impl Storer {
    pub fn new(pool: Pool, schema: String, retries: Retries) -> Self {
        Storer {
            pool,
            schema,
            retries,
            known: Mutex::new(HashSet::new()),
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Store `rows`. Err carries what was stored before the failure (temporary errors only
    /// after the last attempt).
    pub async fn store(&self, rows: &[Row]) -> std::result::Result<Stored, (Stored, Error)> {
        let mut needed =
            partition_plan::containing_all(rows.iter().map(|r| (r.record.class(), r.ingest_date)));
        {
            let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            needed.retain(|p| !known.contains(&p.name));
        }
        let mut job = StoreJob::new(rows.len());
        for attempt in 1..=self.retries.attempts.max(1) {
            let outcome: Result<()> = async {
                let mut client = db::get(&self.pool).await?;
                if !needed.is_empty() {
                    partition_ddl::ensure(&mut client, &self.schema, &needed).await?;
                    let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
                    known.extend(needed.drain(..).map(|p| p.name));
                }
                job.run(&client, &self.schema, rows)
                    .await
                    .map_err(Error::from)
            }
            .await;
            match outcome {
                Ok(()) => return Ok(job.out),
                Err(e) if e.kind() == Kind::Temporary && self.retries.again_after(attempt) => {
                    tracing::warn!(attempt, error = %e, "database unavailable while storing; retrying");
                    tokio::time::sleep(self.retries.delay(attempt, rand::random())).await;
                }
                Err(e) => return Err((job.out, e)),
            }
        }
        unreachable!("the last attempt returns")
    }
}
