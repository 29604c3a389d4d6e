//! The range partitions of `logs` as they exist in the database: listing them with their
//! bounds, and creating the ones ingest needs (on demand) or will need soon (premake).
//!
//! Creation runs in its own short transaction under the partitions lock ([`Lock::Partitions`]; two ingesters never race
//! on the same CREATE) with a lock timeout, separate from any purge or COPY transaction.

use super::partition_plan::{self, Partition};
use super::record::Class;
use crate::db::locks::{self, Lock};
use crate::db::{ident, literal};
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use tokio_postgres::Client;

/// Every range partition of both classes, oldest first. Partitions whose bounds are not a
/// plain timestamp range (made by hand) are skipped with a warning.
pub async fn list(client: &Client, schema: &str) -> Result<Vec<Partition>> {
    // Bounds print in the session time zone: make it UTC for this session.
    client.batch_execute("SET TIME ZONE 'UTC'").await?;
    let rows = client
        .query(
            "SELECT c.relname::text, p.relname::text, pg_get_expr(c.relpartbound, c.oid)
             FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             JOIN pg_class p ON p.oid = i.inhparent
             JOIN pg_namespace n ON n.oid = p.relnamespace
             WHERE n.nspname = $1 AND p.relname = ANY($2)",
            &[
                &schema,
                &vec![
                    partition_plan::parent(Class::Debug),
                    partition_plan::parent(Class::Logs),
                ],
            ],
        )
        .await?;
    let mut out = Vec::new();
    for row in rows {
        let name: String = row.get(0);
        let parent: String = row.get(1);
        let bound: String = row.get(2);
        let class = if parent == partition_plan::parent(Class::Debug) {
            Class::Debug
        } else {
            Class::Logs
        };
        match parse_bound(&bound) {
            Some((lower, upper)) => out.push(Partition {
                name,
                class,
                lower,
                upper,
            }),
            None => {
                tracing::warn!(partition = %name, bound = %bound, "partition with unexpected bounds left alone")
            }
        }
    }
    out.sort_by_key(|p| (p.lower, p.class));
    Ok(out)
}

/// "FOR VALUES FROM ('2026-11-24 10:00:00+00') TO ('2026-11-24 11:00:00+00')"
fn parse_bound(text: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let mut quoted = text.split('\'').skip(1).step_by(2);
    let parse = |s: &str| {
        DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%#z")
            .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z"))
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    let lower = parse(quoted.next()?)?;
    let upper = parse(quoted.next()?)?;
    Some((lower, upper))
}

/// How long creating partitions may wait for a parent another session holds.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    retry: crate::retry::Policy,
    lock_timeout: &'static str,
}

impl Patience {
    /// For rows that need their partition: 5 tries of up to 5 s, 200 ms apart and more.
    pub const STORE: Patience = Patience {
        retry: crate::retry::Policy::new(
            5,
            std::time::Duration::from_millis(200),
            std::time::Duration::from_secs(1),
        ),
        lock_timeout: "5s",
    };
    /// For a courtesy premake after purge: one try of up to 500 ms, so a long reader of the
    /// parent never keeps ingest queued behind purge (rows create their own partitions).
    pub const BRIEF: Patience = Patience {
        retry: crate::retry::Policy::once(),
        lock_timeout: "500ms",
    };
}

/// Create `wanted` partitions that do not exist yet, in one transaction.
pub async fn ensure(client: &mut Client, schema: &str, wanted: &[Partition]) -> Result<()> {
    ensure_with(client, schema, wanted, Patience::STORE).await
}

/// [`ensure`] with the given patience for a held parent.
pub async fn ensure_with(
    client: &mut Client,
    schema: &str,
    wanted: &[Partition],
    patience: Patience,
) -> Result<()> {
    if wanted.is_empty() {
        return Ok(());
    }
    let s = ident(schema);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let tx = client.transaction().await?;
        tx.batch_execute(&format!(
            "SET LOCAL lock_timeout = '{}'",
            patience.lock_timeout
        ))
        .await?;
        locks::wait_xact(&tx, Lock::Partitions).await?;
        let mut sql = String::new();
        for p in wanted {
            sql.push_str(&format!(
                "CREATE TABLE IF NOT EXISTS {s}.{} PARTITION OF {s}.{} FOR VALUES FROM ({}) TO ({});\n",
                ident(&p.name),
                ident(partition_plan::parent(p.class)),
                literal(&p.lower.to_rfc3339()),
                literal(&p.upper.to_rfc3339()),
            ));
        }
        match tx.batch_execute(&sql).await {
            Ok(()) => {
                tx.commit().await?;
                return Ok(());
            }
            // 55P03 lock_not_available: a long DDL holds the parent; try again shortly.
            Err(e)
                if patience.retry.again_after(attempt)
                    && e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) =>
            {
                drop(tx);
                tokio::time::sleep(patience.retry.delay(attempt, 0.0)).await;
            }
            Err(e) => {
                let names: Vec<_> = wanted.iter().map(|p| p.name.as_str()).collect();
                return Err(Error::from(e)
                    .context(format!("cannot create partitions {}", names.join(", "))));
            }
        }
    }
}

/// Create the current and next partitions of both classes whose retention keeps anything.
pub async fn premake(
    client: &mut Client,
    schema: &str,
    classes: &[Class],
    now: DateTime<Utc>,
) -> Result<()> {
    premake_with(client, schema, classes, now, Patience::STORE).await
}

/// [`premake`] with the given patience for a held parent.
pub async fn premake_with(
    client: &mut Client,
    schema: &str,
    classes: &[Class],
    now: DateTime<Utc>,
    patience: Patience,
) -> Result<()> {
    let wanted: Vec<Partition> = classes
        .iter()
        .flat_map(|c| partition_plan::premake(*c, now))
        .collect();
    ensure_with(client, schema, &wanted, patience).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_postgres_bounds() {
        let (l, u) =
            parse_bound("FOR VALUES FROM ('2026-11-24 10:00:00+00') TO ('2026-11-24 11:00:00+00')")
                .unwrap();
        assert_eq!(l.to_rfc3339(), "2026-11-24T10:00:00+00:00");
        assert_eq!(u.to_rfc3339(), "2026-11-24T11:00:00+00:00");
        assert!(parse_bound("FOR VALUES FROM (MINVALUE) TO ('2026-11-24 11:00:00+00')").is_none());
        assert!(parse_bound("DEFAULT").is_none());
    }
}
