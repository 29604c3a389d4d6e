//! Kasm's schema revision as the database records it: `alembic_version.version_num`, the table
//! Kasm's migrations (alembic) keep. Read by `backup` (into the manifest) and by `restore` (from
//! the existing target database, to refuse a restore across a Kasm upgrade without `--force`).
//! And Kasm's logs tables ([`logs_relations`]): what `--exclude-logs` leaves out and
//! `--logs-later` loads last.
//!
//! Read-only: never creates, alters or writes the table. Alembic revisions are opaque ids, not
//! ordered by their names: nothing here (or in its callers) compares them for "newer".

use super::inspection::{Inspection, Unreadable};
use crate::error::Result;

/// Kasm's schema revision: `alembic_version.version_num` (several heads joined by `,`), read in
/// the open snapshot (public's table first). [`Inspection::Absent`] without such a table in the
/// catalog (or when it vanished meanwhile: 42P01) or when it is empty;
/// [`Inspection::Unreadable`] when this role may not read it (42501) or the query failed
/// otherwise, with the server's reason. Inside a transaction a failed read aborts it: the
/// caller stops there.
pub async fn alembic_version(client: &tokio_postgres::Client) -> Inspection<String> {
    let table = client
        .query_opt(
            "SELECT format('%I.%I', n.nspname, c.relname)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'version_num'
                                 AND NOT a.attisdropped
             WHERE c.relname = 'alembic_version' AND c.relkind IN ('r', 'p', 'v')
               AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
             ORDER BY n.nspname <> 'public', n.nspname LIMIT 1",
            &[],
        )
        .await
        .map(|r| r.map(|r| r.get::<_, String>(0)));
    let table = match table {
        Ok(Some(t)) => t,
        Ok(None) => return Inspection::Absent,
        Err(e) => {
            return Inspection::Unreadable(Unreadable::of_query("the catalog (pg_class)", e));
        }
    };
    let heads = client
        .query(
            &format!(
                "SELECT version_num::text FROM {table} WHERE version_num IS NOT NULL ORDER BY 1"
            ),
            &[],
        )
        .await
        .map(|rows| rows.iter().map(|r| r.get(0)).collect::<Vec<String>>());
    match Inspection::of_query(table, heads) {
        Inspection::Found(h) if h.is_empty() => Inspection::Absent,
        other => other.map(|h| h.join(",")),
    }
}

/// What `backup --exclude-logs` leaves out and `restore --logs-later` loads last: every table named `logs` outside the system schemas —
/// kasm-db's partitioned one (in `database.schema`) and Kasm's own plain one (`public.logs`),
/// as Kasm's own backups do with `--exclude-table-data=logs`. Returns the tables named
/// (`schema.table`, for the manifest) and every relation whose data pg_dump must skip: each
/// table itself and, when partitioned, all its partitions (PostgreSQL 15's pg_dump does not
/// follow partitions by itself).
pub async fn logs_relations(
    client: &tokio_postgres::Client,
) -> Result<(Vec<String>, Vec<(String, String)>)> {
    let rows = client
        .query(
            "SELECT format('%I.%I', rn.nspname, r.relname), n.nspname::text, c.relname::text
             FROM pg_class r JOIN pg_namespace rn ON rn.oid = r.relnamespace
             CROSS JOIN LATERAL (SELECT r.oid AS relid
                                 UNION SELECT t.relid FROM pg_partition_tree(r.oid) t) tree
             JOIN pg_class c ON c.oid = tree.relid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE r.relname = 'logs' AND r.relkind IN ('r', 'p') AND NOT r.relispartition
               AND rn.nspname <> 'information_schema' AND rn.nspname NOT LIKE 'pg\\_%'
             ORDER BY 1, 2, 3",
            &[],
        )
        .await?;
    let mut roots: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    roots.dedup();
    Ok((roots, rows.iter().map(|r| (r.get(1), r.get(2))).collect()))
}
