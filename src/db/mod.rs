//! Database access: connecting (TLS per sslmode, retries with backoff for transient failures,
//! exit 75 when the server stays unreachable), the connection pool, and the migrations of
//! kasm-db's own schema. [`is_transient`] is the one definition of "worth retrying".
//!
//! This module never logs or returns a password; it describes targets with
//! [`DbTarget::redacted`].

pub mod inspection;
pub mod kasm_schema;
pub mod libpq;
pub mod locks;
pub mod migrate;
pub mod replication;
pub mod sqlstate;
pub mod target;
pub mod tls;

pub use sqlstate::is_transient;
pub use target::DbTarget;

use crate::config::DatabaseConfig;
use crate::error::{Error, Result};
use tokio_postgres::Client;

/// A pool of connections to one database.
pub type Pool = deadpool_postgres::Pool;

/// How hard to try before declaring the database unreachable: the one retry policy
/// ([`crate::retry::Policy`]), by default five attempts from 250 ms doubling to 10 s.
pub type Retry = crate::retry::Policy;

impl crate::retry::Policy {
    /// The policy of the configuration: `database.connect_attempts` tries with the default
    /// backoff. The one place a policy is built from configuration: commands, `serve`'s jobs
    /// (the scheduled backup and verify too) and every connection they make use it.
    pub fn configured(database: &DatabaseConfig) -> Retry {
        Retry {
            attempts: database.connect_attempts,
            ..Retry::default()
        }
    }
}

/// One connection, retried with exponential backoff (with jitter). The connection task is
/// spawned on the current runtime. Failure after the last attempt is [`Error::temporary`].
pub async fn connect(target: &DbTarget, retry: Retry) -> Result<Client> {
    let tls = tls::connector(target)?;
    let mut last = String::new();
    for attempt in 1..=retry.attempts.max(1) {
        // tokio-postgres bounds each socket connect; the deadline also bounds a server that
        // accepts and never answers (libpq's connect_timeout covers the whole handshake).
        let connecting = target.config.connect(tls.clone());
        let result = match target.connect_deadline() {
            Some(deadline) => match tokio::time::timeout(deadline, connecting).await {
                Ok(r) => r.map_err(Some),
                Err(_) => Err(None),
            },
            None => connecting.await.map_err(Some),
        };
        match result {
            Ok((client, conn)) => {
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "postgres connection closed");
                    }
                });
                return Ok(client);
            }
            Err(None) => {
                last = timed_out(target);
            }
            Err(Some(e)) => {
                last = describe(target, &e);
                // Authentication, "database does not exist" or a certificate that does not
                // verify will not heal by retrying; a server starting up or out of connection
                // slots, or one not listening yet, may.
                if !is_transient(&e) || tls_failure(&e) {
                    return Err(Error::failed(format!(
                        "cannot connect to postgres {}: {last}",
                        target.redacted()
                    )));
                }
            }
        }
        if retry.again_after(attempt) {
            tracing::warn!(target = %target.redacted(), attempt, error = %last, "postgres unreachable, retrying");
            tokio::time::sleep(retry.delay(attempt, rand::random())).await;
        }
    }
    let tries = match retry.attempts {
        0 | 1 => String::new(),
        n => format!(" after {n} attempts"),
    };
    Err(Error::temporary(format!(
        "cannot connect to postgres {}{tries}: {last}",
        target.redacted()
    )))
}

/// "timed out after N s (connect_timeout)".
fn timed_out(target: &DbTarget) -> String {
    let per_host = target
        .config
        .get_connect_timeout()
        .map_or(0, |t| t.as_secs());
    format!("timed out after {per_host} s per host (connect_timeout, PGCONNECT_TIMEOUT)")
}

/// A failed connection attempt in words, with libpq's hints: where a refused password came
/// from, and where one could come from when the server asked for one and none was given.
fn describe(target: &DbTarget, e: &tokio_postgres::Error) -> String {
    let timed_out_socket = std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
    if timed_out_socket {
        return timed_out(target);
    }
    match e.as_db_error() {
        Some(db) => {
            let mut text = db.message().to_string();
            // "User does not have CONNECT privilege." and the like.
            if let Some(d) = db.detail() {
                text.push_str(&format!(" ({d})"));
            }
            if db.code() == &tokio_postgres::error::SqlState::INVALID_PASSWORD {
                if let Some(file) = target.password_file() {
                    text.push_str(&format!(
                        " (password retrieved from file \"{}\")",
                        file.display()
                    ));
                }
            }
            text
        }
        None => {
            let text = chain(e);
            if text.contains("password missing") {
                format!(
                    "{text}: the server asks for a password; give it in PGPASSWORD, a password file \
                     (PGPASSFILE, ~/.pgpass, mode 0600) or the connection service"
                )
            } else {
                text
            }
        }
    }
}

/// An error with its causes, "outer: cause: cause" (tokio-postgres hides the TLS reason in them).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// A TLS handshake or certificate failure (as opposed to an unreachable server).
fn tls_failure(e: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
            {
                return true;
            }
        }
        source = s.source();
    }
    e.to_string().contains("TLS handshake")
}

/// A pool of up to `size` connections; the first connection is made (with retries) before
/// returning, so an unreachable database is reported here, once, with exit 75.
pub async fn pool(target: &DbTarget, retry: Retry, size: usize) -> Result<Pool> {
    // Prove reachability with the retry policy, then hand the config to deadpool.
    drop(connect(target, retry).await?);
    pool_unconnected(target, size)
}

/// A pool of up to `size` connections that connects only when a connection is asked for: for
/// `serve`, which starts before its database is reachable. Fails only on a bad TLS setup.
pub fn pool_unconnected(target: &DbTarget, size: usize) -> Result<Pool> {
    let manager = deadpool_postgres::Manager::from_config(
        target.config.clone(),
        tls::connector(target)?,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size.max(1))
        .create_timeout(target.connect_deadline())
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| Error::failed(format!("connection pool: {e}")))
}

/// Get a connection from the pool, mapping pool errors to our kinds.
pub async fn get(pool: &Pool) -> Result<deadpool_postgres::Object> {
    pool.get().await.map_err(|e| match e {
        deadpool_postgres::PoolError::Backend(e) => Error::from(e),
        other => Error::temporary(format!("database connection: {other}")),
    })
}

/// Quote an identifier for SQL (`"name"`, doubling quotes).
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quote a string literal for SQL (`'text'`, doubling quotes). For DDL that cannot take
/// parameters (partition bounds, comments); never for data.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
