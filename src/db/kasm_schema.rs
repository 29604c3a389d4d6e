//! Kasm's schema revision as the database records it: `alembic_version.version_num`, the table
//! Kasm's migrations (alembic) keep. Read by `backup` (into the manifest) and by `restore` (from
//! the existing target database, to refuse a restore across a Kasm upgrade without `--force`).
//! And Kasm's logs tables ([`logs_relations`]): what `--exclude-logs` leaves out and
//! `--logs-later` loads last.
//!
//! Read-only: never creates, alters or writes the table. Alembic revisions are opaque ids, not
//! ordered by their names: nothing here (or in its callers) compares them for "newer".

use crate::error::Result;

/// Kasm's schema revision: `alembic_version.version_num` (several heads joined by `,`), read in
/// the open snapshot. `None` without such a table (public's first), when it is empty, or when
/// this role may not read it (then with a warning: pg_dump will say more if it matters).
pub async fn alembic_version(client: &tokio_postgres::Client) -> Result<Option<String>> {
    let table: Option<(String, bool)> = client
        .query_opt(
            "SELECT format('%I.%I', n.nspname, c.relname), has_table_privilege(c.oid, 'SELECT')
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'version_num'
                                 AND NOT a.attisdropped
             WHERE c.relname = 'alembic_version' AND c.relkind IN ('r', 'p', 'v')
               AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
             ORDER BY n.nspname <> 'public', n.nspname LIMIT 1",
            &[],
        )
        .await?
        .map(|r| (r.get(0), r.get(1)));
    let Some((table, readable)) = table else {
        return Ok(None);
    };
    if !readable {
        tracing::warn!(
            table,
            "cannot read alembic_version (permission denied); not recorded"
        );
        return Ok(None);
    }
    let heads: Vec<String> = client
        .query(
            &format!(
                "SELECT version_num::text FROM {table} WHERE version_num IS NOT NULL ORDER BY 1"
            ),
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok((!heads.is_empty()).then(|| heads.join(",")))
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
