//! The local spool of `serve`: rows accepted while the database is unreachable (or not yet
//! brought up at start), one file per request (written, fsynced, renamed, directory fsynced
//! before the client gets its 200), loaded into the database when it returns (by `serve`'s
//! loader, which starts only once the schema is current).
//!
//! Loading is idempotent: each row keeps the `log_id` and `ingest_date` it was given when
//! accepted, rows already present (a COPY that committed just as the connection broke, or a
//! crash between loading and deleting a file) are skipped, and a file is deleted only after its
//! rows are stored. It never holds more than `max_bytes`: beyond that the caller answers 503.
//! Its folder (when it creates it) and files are private whatever the umask (0700/0600): they
//! hold log records.

use crate::db::{self, Pool, ident};
use crate::error::{Error, Result};
use crate::logs::copy::{Row, StoreJob};
use crate::logs::partition_ddl;
use crate::logs::partition_plan;
use crate::logs::record::{Level, Record};
use crate::private::{self, FileMode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A row as written to the spool.
#[derive(Debug, Serialize, Deserialize)]
struct Spooled {
    log_id: uuid::Uuid,
    ingest_date: DateTime<Utc>,
    log_time: Option<DateTime<Utc>>,
    level: String,
    host: Option<String>,
    application: Option<String>,
    kasm_user_name: Option<String>,
    message: Option<String>,
    data: String,
}

impl Spooled {
    fn of(row: &Row) -> Self {
        let r = &row.record;
        Spooled {
            log_id: row.log_id,
            ingest_date: row.ingest_date,
            log_time: r.log_time,
            level: r.level.as_str().to_string(),
            host: r.host.clone(),
            application: r.application.clone(),
            kasm_user_name: r.kasm_user_name.clone(),
            message: r.message.clone(),
            data: r.data.clone(),
        }
    }

    fn row(self) -> Option<Row> {
        Some(Row {
            log_id: self.log_id,
            ingest_date: self.ingest_date,
            record: Record {
                level: Level::parse(&self.level)?,
                log_time: self.log_time,
                host: self.host,
                application: self.application,
                kasm_user_name: self.kasm_user_name,
                message: self.message,
                data: self.data,
            },
            origin: (0, 0),
        })
    }
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    used: AtomicU64,
}

/// The spool cannot take this batch.
#[derive(Debug)]
pub struct Full;

impl Spool {
    /// Open (creating) the directory and count what it already holds.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool> {
        private::create_dir_all(dir, FileMode::PRIVATE).map_err(|e| {
            Error::usage(format!(
                "cannot create server.spool_dir {}: {e}",
                dir.display()
            ))
        })?;
        private::warn_if_world_writable(dir, "server.spool_dir");
        let spool = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            used: AtomicU64::new(0),
        };
        // A `.tmp` file is a write that died before its client got an answer: not acknowledged.
        for e in std::fs::read_dir(dir)?.filter_map(|e| e.ok()) {
            if e.path().extension().is_some_and(|x| x == "tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let mut used = 0;
        for path in spool.files()? {
            used += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        }
        spool.used.store(used, Ordering::SeqCst);
        Ok(spool)
    }

    pub fn bytes(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    /// Complete spool files, oldest first (names start with the time of writing).
    fn files(&self) -> Result<Vec<PathBuf>> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "ndjson"))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Durably write `rows`; Ok only once they are on disk.
    pub fn put(&self, rows: &[Row]) -> Result<std::result::Result<(), Full>> {
        let mut text = Vec::new();
        for row in rows {
            serde_json::to_writer(&mut text, &Spooled::of(row))
                .map_err(|e| Error::failed(format!("spool: {e}")))?;
            text.push(b'\n');
        }
        let size = text.len() as u64;
        let reserved = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                (u + size <= self.max_bytes).then_some(u + size)
            });
        if reserved.is_err() {
            return Ok(Err(Full));
        }
        let name = format!(
            "{:020}-{}",
            Utc::now().timestamp_nanos_opt().unwrap_or(0),
            uuid::Uuid::new_v4().simple()
        );
        let tmp = self.dir.join(format!("{name}.tmp"));
        let done = self.dir.join(format!("{name}.ndjson"));
        let written = (|| -> std::io::Result<()> {
            let mut f = private::create(&tmp, FileMode::PRIVATE)?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &done)?;
            std::fs::File::open(&self.dir)?.sync_all()
        })();
        if let Err(e) = written {
            self.used.fetch_sub(size, Ordering::SeqCst);
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::failed(format!(
                "cannot write to the spool {}: {e}",
                self.dir.display()
            )));
        }
        Ok(Ok(()))
    }

    /// Load every spool file into the database, oldest first; returns rows stored. Stops at
    /// the first failure (the file stays for the next try).
    pub async fn load(&self, pool: &Pool, schema: &str) -> Result<u64> {
        let mut total = 0;
        for path in self.files()? {
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let text = std::fs::read_to_string(&path)?;
            let mut rows = Vec::new();
            // Lines that cannot be loaded are kept beside the spool, never dropped unseen.
            let mut rejected = Vec::new();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                match serde_json::from_str::<Spooled>(line) {
                    Ok(s) => match s.row() {
                        Some(r) => rows.push(r),
                        None => rejected.push((line.to_string(), "unknown level".to_string())),
                    },
                    Err(e) => rejected.push((line.to_string(), format!("unreadable: {e}"))),
                }
            }
            let (stored, refused) = load_rows(pool, schema, rows).await?;
            total += stored;
            rejected.extend(refused);
            if !rejected.is_empty() {
                keep_rejected(&path, &rejected)?;
            }
            std::fs::remove_file(&path)?;
            self.used
                .fetch_sub(size.min(self.bytes()), Ordering::SeqCst);
            tracing::info!(file = %path.display(), "spool file loaded");
        }
        Ok(total)
    }
}

/// Write the lines of spool file `path` that could not be loaded, with why, to
/// `<name>.rejected` beside it (NDJSON `{"line","reason"}`, private, fsynced) and say so.
fn keep_rejected(path: &Path, rejected: &[(String, String)]) -> Result<()> {
    let out = path.with_extension("rejected");
    let mut text = Vec::new();
    for (line, reason) in rejected {
        serde_json::to_writer(
            &mut text,
            &serde_json::json!({ "line": line, "reason": reason }),
        )
        .map_err(|e| Error::failed(format!("spool: {e}")))?;
        text.push(b'\n');
    }
    (|| -> std::io::Result<()> {
        let mut f = private::create(&out, FileMode::PRIVATE)?;
        f.write_all(&text)?;
        f.sync_all()
    })()
    .map_err(|e| {
        Error::failed(format!(
            "cannot keep the rejected lines of {} in {}: {e}",
            path.display(),
            out.display()
        ))
    })?;
    tracing::error!(
        file = %path.display(),
        rejected = rejected.len(),
        kept = %out.display(),
        "spooled lines the database could not take are kept for the operator"
    );
    Ok(())
}

/// Store the rows not yet in the database (by `log_id` within their `ingest_date`); returns
/// the rows stored and those the database refused (as spooled, with its reason).
async fn load_rows(
    pool: &Pool,
    schema: &str,
    rows: Vec<Row>,
) -> Result<(u64, Vec<(String, String)>)> {
    let mut client = db::get(pool).await?;
    let needed =
        partition_plan::containing_all(rows.iter().map(|r| (r.record.class(), r.ingest_date)));
    partition_ddl::ensure(&mut client, schema, &needed).await?;
    let mut dates: Vec<DateTime<Utc>> = rows.iter().map(|r| r.ingest_date).collect();
    dates.sort();
    dates.dedup();
    let mut present = std::collections::HashSet::new();
    for d in dates {
        let ids: Vec<uuid::Uuid> = rows
            .iter()
            .filter(|r| r.ingest_date == d)
            .map(|r| r.log_id)
            .collect();
        for r in client
            .query(
                &format!(
                    "SELECT log_id FROM {}.logs WHERE ingest_date = $1 AND log_id = ANY($2)",
                    ident(schema)
                ),
                &[&d, &ids],
            )
            .await?
        {
            present.insert(r.get::<_, uuid::Uuid>(0));
        }
    }
    let rows: Vec<Row> = rows
        .into_iter()
        .filter(|r| !present.contains(&r.log_id))
        .collect();
    let mut job = StoreJob::new(rows.len());
    job.run(&client, schema, &rows).await?;
    let mut refused = Vec::new();
    for (i, reason) in &job.out.refused {
        tracing::error!(row = i, reason = %reason, "the database refused a spooled row");
        if let Some(r) = rows.get(*i) {
            let line = serde_json::to_string(&Spooled::of(r)).unwrap_or_default();
            refused.push((line, reason.clone()));
        }
    }
    Ok((job.out.stored, refused))
}
