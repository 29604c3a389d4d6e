//! The SQL a restore runs on the target server, over a maintenance connection (database
//! `postgres`, or `template1` when restoring `postgres` itself): refuse a server in recovery,
//! hold the per-database restore lock, count other sessions, drop our own stale leftovers,
//! look up roles, create (with an owner and a locale) and drop the new database, give it the
//! source database's privileges, settings and comment in one transaction, and
//! swap it in with two renames in one transaction (both or neither) under short lock and
//! statement timeouts.
//!
//! Never drops or alters a database it did not create, except for the two renames of the swap
//! and, with `--force` only, terminating the target database's sessions right before them.
//! Describes the server redacted; never sees the password outside the connection config.

use super::plan;
use super::properties::{self, Kind, Locale, Step};
use crate::db::locks::{self, Lock};
use crate::db::{self, DbTarget, Retry, ident};
use crate::error::{Error, Result};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio_postgres::Client;

/// How often `--force` terminates sessions and retries the swap before giving up.
const FORCE_ATTEMPTS: u32 = 5;
/// SQLSTATE object_in_use: "database is being accessed by other users".
const OBJECT_IN_USE: &str = "55006";

/// `--force`: end the other sessions on database `$1` that this role may end (client sessions
/// whose role it has the privileges of, or any non-superuser's with pg_signal_backend, or any
/// when a superuser), and count those it may not. Processes without a role (autovacuum) are
/// left alone: the rename ends them itself. Never raises "permission denied to terminate".
const TERMINATE_SQL: &str = "
    SELECT count(CASE WHEN may AND pg_terminate_backend(pid) THEN 1 END),
           count(*) FILTER (WHERE NOT may)
    FROM (SELECT a.pid,
                 (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
                 OR (NOT coalesce((SELECT r.rolsuper FROM pg_roles r WHERE r.oid = a.usesysid), false)
                     AND (pg_has_role(a.usesysid, 'USAGE')
                          OR pg_has_role('pg_signal_backend', 'USAGE'))) AS may
          FROM pg_stat_activity a
          WHERE a.datname = $1 AND a.pid <> pg_backend_pid() AND a.usesysid IS NOT NULL) s";

/// A maintenance connection to the server of a target database.
pub struct Server {
    client: Client,
    /// The maintenance database's target (redacted in messages).
    pub maintenance: DbTarget,
}

/// The live facts about the target database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub owner: String,
    pub locale: Locale,
}

/// What [`Server::apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// The kinds of the steps that took effect, in order.
    pub done: Vec<Kind>,
    /// Optional steps the server refused, and why.
    pub warnings: Vec<String>,
}

impl Server {
    /// Connect to the maintenance database beside `target` (exit 75 when unreachable).
    pub async fn connect(target: &DbTarget, retry: Retry) -> Result<Server> {
        let maint = if target.dbname() == "postgres" {
            "template1"
        } else {
            "postgres"
        };
        let maintenance = target.with_dbname(maint);
        let client = db::connect(&maintenance, retry).await?;
        Ok(Server {
            client,
            maintenance,
        })
    }

    /// The maintenance connection, for the role statements of `--create-roles`
    /// ([`super::roles`]).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Refuse a hot standby (it cannot be written), saying how to promote it.
    pub async fn refuse_recovery(&self) -> Result<()> {
        let in_recovery: bool = self
            .client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await?
            .get(0);
        if in_recovery {
            return Err(Error::failed(format!(
                "the target server {}:{} is in recovery: it is a hot standby replica and cannot \
                 be written. Promote it first (`pg_ctl promote -D DATADIR` on its host, or \
                 `SELECT pg_promote();` as a superuser), then run the restore again",
                self.maintenance.host(),
                self.maintenance.port()
            )));
        }
        Ok(())
    }

    /// The server's major version and version string.
    pub async fn version(&self) -> Result<(u32, String)> {
        let row = self
            .client
            .query_one(
                "SELECT current_setting('server_version_num')::int, current_setting('server_version')",
                &[],
            )
            .await?;
        Ok(((row.get::<_, i32>(0) / 10_000) as u32, row.get(1)))
    }

    /// Take the restore lock for `name` for this connection's lifetime; another restore of the
    /// same database holds it: exit 75.
    pub async fn lock(&self, name: &str) -> Result<()> {
        let on = format!("{}:{}", self.maintenance.host(), self.maintenance.port());
        locks::hold(&self.client, Lock::Restore(name), &on).await
    }

    pub async fn existing(&self, name: &str) -> Result<Option<Existing>> {
        let row = self
            .client
            .query_opt(
                "SELECT pg_get_userbyid(d.datdba)::text, pg_encoding_to_char(d.encoding)::text,
                        d.datcollate::text, d.datctype::text, j ->> 'datlocprovider',
                        coalesce(j ->> 'datlocale', j ->> 'daticulocale'), j ->> 'daticurules'
                 FROM pg_database d CROSS JOIN LATERAL to_jsonb(d) j WHERE d.datname = $1",
                &[&name],
            )
            .await?;
        Ok(row.map(|r| Existing {
            owner: r.get(0),
            locale: Locale {
                encoding: r.get(1),
                collate: r.get(2),
                ctype: r.get(3),
                provider: r
                    .get::<_, Option<String>>(4)
                    .map(|p| crate::archive::manifest::provider_name(&p)),
                provider_locale: r.get(5),
                icu_rules: r.get(6),
            },
        }))
    }

    /// Which of `names` are roles on the server.
    pub async fn roles_present(&self, names: &[String]) -> Result<BTreeSet<String>> {
        let rows = self
            .client
            .query(
                "SELECT rolname::text FROM pg_roles WHERE rolname::text = ANY($1::text[])",
                &[&names],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Other sessions on `name`: (count, "user/application" of a few). Processes without a
    /// role (an autovacuum worker) are not sessions: the rename ends them itself, as
    /// [`TERMINATE_SQL`] leaves them alone.
    pub async fn sessions(&self, name: &str) -> Result<(i64, Vec<String>)> {
        let rows = self
            .client
            .query(
                "SELECT coalesce(usename::text, '?') || '/' || coalesce(nullif(application_name, ''), '?')
                 FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid() AND usesysid IS NOT NULL",
                &[&name],
            )
            .await?;
        let who = rows.iter().take(5).map(|r| r.get(0)).collect();
        Ok((rows.len() as i64, who))
    }

    /// Refuse when `name` has other sessions (the check without `--force`).
    pub async fn refuse_in_use(&self, name: &str) -> Result<()> {
        let (n, who) = self.sessions(name).await?;
        if n > 0 {
            return Err(Error::failed(format!(
                "the target database {name} has {n} active connection(s) ({}): stop its clients \
                 (e.g. the Kasm API servers) or pass --force to terminate them right before the swap",
                who.join(", ")
            )));
        }
        Ok(())
    }

    async fn names(&self) -> Result<Vec<String>> {
        let rows = self
            .client
            .query("SELECT datname::text FROM pg_database", &[])
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Drop databases left by earlier restores of `name` that were killed (only names of the
    /// exact form a restore creates; the caller holds the restore lock, so none is running).
    pub async fn drop_stale(&self, name: &str) -> Result<Vec<String>> {
        let stale: Vec<String> = self
            .names()
            .await?
            .into_iter()
            .filter(|d| plan::is_stale_restore_of(name, d))
            .collect();
        for d in &stale {
            tracing::warn!(database = %d, "dropping a stale database left by a killed restore");
            self.drop_db(d).await?;
        }
        Ok(stale)
    }

    /// Create the new, empty database from template0, owned by `owner` (else by the connected
    /// user) with `locale` (else the server's default). The server's error is returned as it is,
    /// for the caller to decide whether another locale or no owner is worth a try.
    /// What the restoring role may do for `CREATE DATABASE`, as the catalog says: CREATEDB
    /// (or superuser), and give the database `owner` (membership; the SET option on
    /// PostgreSQL 16 and later); true without an owner.
    pub async fn may_create(&self, owner: Option<&str>, server_major: u32) -> Result<(bool, bool)> {
        let option = if server_major >= 16 { "SET" } else { "MEMBER" };
        let row = self
            .client
            .query_one(
                "SELECT r.rolcreatedb OR r.rolsuper,
                        CASE WHEN $1::text IS NULL OR r.rolsuper THEN true
                             ELSE pg_has_role(current_user, $1::text::name, $2) END
                 FROM pg_roles r WHERE r.rolname = current_user",
                &[&owner, &option],
            )
            .await?;
        Ok((row.get(0), row.get(1)))
    }

    pub async fn create(
        &self,
        new: &str,
        owner: Option<&str>,
        locale: Option<&Locale>,
        server_major: u32,
    ) -> std::result::Result<(), tokio_postgres::Error> {
        self.client
            .batch_execute(&properties::create_sql(new, owner, locale, server_major))
            .await
    }

    /// Run `steps` on the new database in one transaction: a required step failing rolls all
    /// back and is the error; an optional one is undone alone (savepoint) and becomes a warning.
    pub async fn apply(&self, steps: &[Step]) -> Result<Applied> {
        if steps.is_empty() {
            return Ok(Applied::default());
        }
        // Literals are written with doubled quotes only; make sure backslashes stay literal.
        self.client
            .batch_execute("BEGIN; SET LOCAL standard_conforming_strings = on")
            .await?;
        let r = self.apply_in_transaction(steps).await;
        if r.is_ok() {
            if let Err(e) = self.client.batch_execute("COMMIT").await {
                let _ = self.client.batch_execute("ROLLBACK").await;
                return Err(e.into());
            }
        } else {
            let _ = self.client.batch_execute("ROLLBACK").await;
        }
        r
    }

    /// End a transaction [`Server::apply`] left open when its future was dropped (a signal);
    /// without one, a no-op.
    pub async fn rollback(&self) {
        let _ = self.client.batch_execute("ROLLBACK").await;
    }

    async fn apply_in_transaction(&self, steps: &[Step]) -> Result<Applied> {
        let mut out = Applied::default();
        for s in steps {
            if s.required {
                self.client
                    .batch_execute(&s.sql)
                    .await
                    .map_err(|e| Error::from(e).context(s.what.clone()))?;
                out.done.push(s.kind);
                continue;
            }
            self.client.batch_execute("SAVEPOINT kasm_db_step").await?;
            match self.client.batch_execute(&s.sql).await {
                Ok(()) => {
                    self.client
                        .batch_execute("RELEASE SAVEPOINT kasm_db_step")
                        .await?;
                    out.done.push(s.kind);
                }
                Err(e) => {
                    self.client
                        .batch_execute("ROLLBACK TO SAVEPOINT kasm_db_step")
                        .await?;
                    let why = e
                        .as_db_error()
                        .map(|d| d.message().to_string())
                        .unwrap_or_else(|| e.to_string());
                    let hint = if s.kind == Kind::Setting
                        && e.code()
                            == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
                        && why.contains("set parameter")
                    {
                        " (only a superuser, or a role granted SET on the parameter — GRANT SET \
                         ON PARAMETER, PostgreSQL 15 and later — may set it; on managed \
                         PostgreSQL set it in the server's parameter group, or set it on the \
                         restored database as such a role)"
                    } else {
                        ""
                    };
                    out.warnings
                        .push(format!("{} not applied: {why}{hint}", s.what));
                }
            }
        }
        Ok(out)
    }

    /// Drop a database this restore made (its sessions, e.g. a killed pg_restore's, ended).
    pub async fn drop_db(&self, name: &str) -> Result<()> {
        self.client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                ident(name)
            ))
            .await?;
        Ok(())
    }

    /// Pick the name the existing database will be kept under.
    pub async fn previous_name(
        &self,
        name: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<String> {
        Ok(plan::previous_name(name, at, &self.names().await?))
    }

    /// Rename `name` to `previous` (when given) and `new` to `name`, in one transaction. With
    /// `force`, terminate `name`'s sessions first and retry a few times if clients reconnect.
    pub async fn swap(
        &self,
        name: &str,
        new: &str,
        previous: Option<&str>,
        force: bool,
    ) -> Result<()> {
        let mut sql = String::from(
            "BEGIN; SET LOCAL lock_timeout = '5s'; SET LOCAL statement_timeout = '30s';",
        );
        if let Some(p) = previous {
            sql.push_str(&format!(
                " ALTER DATABASE {} RENAME TO {};",
                ident(name),
                ident(p)
            ));
        }
        sql.push_str(&format!(
            " ALTER DATABASE {} RENAME TO {}; COMMIT;",
            ident(new),
            ident(name)
        ));
        // With --force, sessions that connect between the termination and the swap are ended
        // again, 200 ms apart; without it, one try.
        let swap_retry = if force && previous.is_some() {
            crate::retry::Policy::new(
                FORCE_ATTEMPTS,
                Duration::from_millis(200),
                Duration::from_millis(200),
            )
        } else {
            crate::retry::Policy::once()
        };
        let attempts = swap_retry.attempts;
        let mut last = None;
        // Sessions --force may not end: a superuser's, when this role is not one (managed
        // PostgreSQL), or another role's without pg_signal_backend.
        let mut untouchable = 0i64;
        for attempt in 1..=attempts {
            if force && previous.is_some() {
                let row = self.client.query_one(TERMINATE_SQL, &[&name]).await?;
                let n: i64 = row.get(0);
                untouchable = row.get(1);
                if n > 0 {
                    tracing::warn!(
                        database = name,
                        sessions = n,
                        attempt,
                        "--force: terminated sessions"
                    );
                }
            }
            match self.client.batch_execute(&sql).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let _ = self.client.batch_execute("ROLLBACK").await;
                    let in_use = e.code().is_some_and(|c| c.code() == OBJECT_IN_USE);
                    if !in_use {
                        return Err(Error::from(e).context("swap"));
                    }
                    if untouchable > 0 {
                        return Err(Error::from(e).context(format!(
                            "{untouchable} session(s) on the target database {name} belong to a \
                             superuser or to a role this one may not signal, so --force cannot \
                             end them (a role that is not a superuser needs pg_signal_backend \
                             and may never end a superuser's sessions): end them as a superuser \
                             and run the restore again; {name} is unchanged"
                        )));
                    }
                    last = Some(e);
                    if swap_retry.again_after(attempt) {
                        tokio::time::sleep(swap_retry.delay(attempt, 0.0)).await;
                    }
                }
            }
        }
        let e = last
            .map(Error::from)
            .unwrap_or_else(|| Error::failed("in use"));
        Err(e.context(if force {
            format!("the target database {name} kept getting new connections during the swap")
        } else {
            format!(
                "the target database {name} got a connection before the swap; stop its clients \
                 or pass --force"
            )
        }))
    }
}
