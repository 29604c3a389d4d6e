//! Configuration: the TOML file of the contract, overlaid by `KASM_DB_*` environment variables,
//! overlaid by command-line flags (flag > env > file > default).
//!
//! Loading takes the environment as an explicit map, never from a global, so that precedence is
//! testable. Unknown keys are errors that name the key and where it came from (file or variable).
//! Nothing here connects anywhere or prints a secret: tokens are [`Secret`]s.

pub mod azure;
pub mod byte_size;
pub mod compression;
pub mod duration;
pub mod file_mode;
pub mod lenient;
pub mod notify;
pub mod proxy;
pub mod secret;
pub mod siem;

pub use byte_size::ByteSize;
pub use duration::Window;
pub use secret::Secret;
pub use siem::{SiemConfig, SiemSink, SyslogFormat};

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The whole configuration. Every section has defaults, so an empty file is valid.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: DatabaseConfig,
    pub retention: RetentionConfig,
    pub siem: Option<SiemConfig>,
    pub server: ServerConfig,
    pub ingest: IngestConfig,
    pub backup: BackupConfig,
    pub s3: S3Config,
    pub schedule: ScheduleConfig,
    pub sizing: SizingConfig,
    pub notify: notify::NotifyConfig,
    /// Not a section: the standard Azure Storage variables of the environment, for `az://`
    /// targets (set by [`Config::load`] from its `env`; no file key sets them).
    #[serde(skip)]
    pub azure: azure::AzureEnv,
    /// Not a section: the standard proxy variables of the environment, for every HTTP client
    /// (set by [`Config::load`] from its `env`, also into `[siem]` and `[notify]`).
    #[serde(skip)]
    pub proxy: proxy::ProxyEnv,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// postgres:// URL or libpq key=value string; absent = the libpq environment variables.
    /// A secret: it may hold a password (never printed; see `DbTarget::redacted`).
    pub url: Option<Secret>,
    /// The schema kasm-db's own tables live in.
    #[serde(deserialize_with = "lenient::string")]
    pub schema: String,
    /// Connection attempts before giving up with exit 75.
    pub connect_attempts: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            schema: "public".into(),
            connect_attempts: 5,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// How long DEBUG records stay in the database (Kasm default 4 hours).
    pub debug: Window,
    /// How long every other record stays (Kasm default 7 days).
    pub logs: Window,
    /// A cap on the whole `logs` relation (heap, indexes and TOAST of every partition): after
    /// the windows, `purge` drops the oldest whole partitions, debug before the rest, until it
    /// is within. None (the default): the windows alone decide.
    pub max_bytes: Option<ByteSize>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            debug: Window::from_secs(4 * 3600),
            logs: Window::from_secs(7 * 86_400),
            max_bytes: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    #[serde(deserialize_with = "lenient::string")]
    pub listen: String,
    pub token: Option<Secret>,
    /// Reading the stored logs (the read API, the panel and the dashboard) needs this token;
    /// without it `serve` serves no read endpoint.
    pub read_token: Option<Secret>,
    pub max_body_bytes: u64,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Where `serve` keeps accepted records while the database is down (absent: answer 503).
    pub spool_dir: Option<PathBuf>,
    /// Most bytes in that spool; beyond it `serve` answers 503 with Retry-After.
    pub spool_max_bytes: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8514".into(),
            token: None,
            read_token: None,
            max_body_bytes: 16 << 20,
            tls_cert: None,
            tls_key: None,
            spool_dir: None,
            spool_max_bytes: 256 << 20,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Files (globs) that `serve` follows.
    #[serde(deserialize_with = "lenient::string_list")]
    pub paths: Vec<String>,
    /// Longest accepted line; longer lines are rejected (default 1 MiB).
    pub max_line_bytes: usize,
    /// Rows per COPY batch.
    pub batch_rows: usize,
    /// Concurrent COPY streams (default 2: the server parses jsonb on one core per stream).
    pub parallel: usize,
    /// How long a followed file is gone before `serve` forgets its offset (default 1d).
    pub forget_after: Window,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            paths: Vec::new(),
            max_line_bytes: 1 << 20,
            batch_rows: 10_000,
            parallel: 2,
            forget_after: Window::from_secs(86_400),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// s3://bucket/prefix, az://container/prefix, file:///dir or /dir.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub to: Option<String>,
    pub exclude_logs: bool,
    pub keep_last: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    /// How backup objects are compressed: `gzip` (default; standard multi-member gzip,
    /// `gunzip -c | pg_restore`) or `zstd` (smaller and faster; `zstd -dc | pg_restore`).
    pub compression: compression::Codec,
    /// The level for `compression`: gzip 0-12 (libdeflate; default
    /// [`compression::GZIP_DEFAULT_LEVEL`]), zstd 1-19 (default 3).
    pub compression_level: Option<u32>,
    /// A file holding a 32-byte key (raw or hex) for client-side AES-256-GCM encryption.
    pub encryption_key_file: Option<PathBuf>,
    /// A PostgreSQL URL (a secret: it may hold a password) of a server where the scheduled
    /// verify may create and drop a scratch database: set, `[schedule] verify` is the full
    /// restore test of `backups verify --scratch-db`; unset, a size and SHA-256 check.
    pub scratch_db: Option<Secret>,
    /// The directory of the PostgreSQL client tools (pg_dump, pg_restore) to use, e.g.
    /// /usr/lib/postgresql/16/bin; unset, those of the server's major are looked for.
    pub pg_bindir: Option<PathBuf>,
    /// Mode of backup files in a directory target (objects, manifests, verification records,
    /// temporary files), an octal string; folders get x where files have r. Default "0600"
    /// (folders 0700); "0640" (folders 0750) lets the group read.
    pub file_mode: file_mode::FileMode,
    /// Further TARGETs each backup is copied to once complete (3-2-1): checksum checked on the
    /// way, manifest last, each target then pruned by the same `keep_*` policy.
    #[serde(deserialize_with = "lenient::string_list")]
    pub copy_to: Vec<String>,
    /// Point-in-time recovery: `serve` streams the primary's WAL to `to` (what `kasm-db wal
    /// stream` does). Default false.
    pub wal: bool,
    /// How often the WAL segment still being written is stored (default "10s"): at most this
    /// much committed work is lost with the primary.
    pub wal_flush: Window,
    /// The physical replication slot WAL is streamed from (default "kasm_db"), created when
    /// missing. A slot nobody consumes keeps WAL on the primary: drop it with
    /// `SELECT pg_drop_replication_slot('kasm_db')` when streaming stops for good.
    pub wal_slot: String,
    /// The slot guard: WAL the slot may keep on the primary while nothing consumes it before
    /// `backups check` fails and `serve` notifies (default "10GB"). Set the server's own
    /// `max_slot_wal_keep_size` as the hard limit.
    pub wal_slot_max_retained: ByteSize,
}

impl BackupConfig {
    /// The compression level in force: `compression_level`, else the codec's default.
    pub fn level(&self) -> u32 {
        self.compression_level
            .unwrap_or_else(|| self.compression.default_level())
    }

    /// The codec and level backups are written with.
    pub fn method(&self) -> compression::Method {
        compression::Method {
            codec: self.compression,
            level: self.level(),
        }
    }
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            to: None,
            exclude_logs: false,
            keep_last: None,
            keep_daily: None,
            keep_weekly: None,
            keep_monthly: None,
            compression: compression::Codec::Gzip,
            compression_level: None,
            encryption_key_file: None,
            scratch_db: None,
            pg_bindir: None,
            file_mode: file_mode::FileMode::PRIVATE,
            copy_to: Vec::new(),
            wal: false,
            wal_flush: Window::from_secs(10),
            wal_slot: "kasm_db".into(),
            wal_slot_max_retained: ByteSize::from_bytes(10_000_000_000),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    #[serde(deserialize_with = "lenient::opt_string")]
    pub endpoint: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub region: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`). Unset: true when `endpoint` is set (what
    /// MinIO, Ceph and most S3-compatible stores serve), false for AWS itself.
    pub force_path_style: Option<bool>,
    /// Server-side encryption: "AES256" or "aws:kms".
    #[serde(deserialize_with = "lenient::opt_string")]
    pub sse: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub kms_key_id: Option<String>,
    /// S3 Object Lock: every dump and manifest uploaded is retained (GOVERNANCE mode) until
    /// now + this many days. The bucket must have Object Lock enabled.
    pub object_lock_days: Option<u32>,
    /// How long one request waits for the store's answer, from its start (its body, one
    /// upload part at most, included) to the answer's head; default 120s. A store that takes
    /// a request and never answers fails that attempt instead of holding the job for ever;
    /// the attempt is retried, then the job fails (exit 75). A body that stops moving is
    /// cut after 20 s either way (the SDK's stalled-stream protection).
    pub request_timeout: Option<Window>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    #[serde(deserialize_with = "lenient::opt_string")]
    pub purge: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub backup: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub vacuum: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub size_sample: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub verify: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SizingConfig {
    /// Expected maximum concurrent sessions, used by `size`.
    pub sessions: Option<u32>,
}

/// The config file sections; an env var `KASM_DB_<SECTION>_<KEY>` sets `section.key`.
const SECTIONS: &[&str] = &[
    "database",
    "retention",
    "siem",
    "server",
    "ingest",
    "backup",
    "s3",
    "schedule",
    "sizing",
    "notify",
];

/// Env vars of the prefix that are flags, not config keys.
const FLAG_VARS: &[&str] = &[
    "KASM_DB_CONFIG",
    "KASM_DB_URL",
    "KASM_DB_LOG_FORMAT",
    "KASM_DB_LOG",
];

impl Config {
    /// Load the file (if any), overlay the `KASM_DB_*` entries of `env`, validate.
    /// Errors are usage errors (exit 2) naming the file or the variable, and the key.
    pub fn load(file: Option<&Path>, env: &BTreeMap<String, String>) -> Result<Config> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::usage(format!("cannot read config file {}: {e}", path.display()))
                })?;
                let table: toml::Table = toml::from_str(&text).map_err(|e| {
                    Error::usage(format!(
                        "invalid config file {}: {}",
                        path.display(),
                        e.message()
                    ))
                })?;
                // Validate the file alone first so its errors name the file.
                Self::from_table(&table).map_err(|e| {
                    Error::usage(format!("invalid config file {}: {e}", path.display()))
                })?;
                table
            }
            None => toml::Table::new(),
        };
        // Apply every variable first (a section may need several, e.g. siem.kind and siem.url),
        // then validate, naming the variable at fault.
        let mut applied: Vec<(String, String, String)> = Vec::new();
        for (var, value) in env {
            let Some(rest) = var.strip_prefix("KASM_DB_") else {
                continue;
            };
            if FLAG_VARS.contains(&var.as_str()) {
                continue;
            }
            let lower = rest.to_ascii_lowercase();
            let Some(section) = SECTIONS
                .iter()
                .find(|s| lower.starts_with(&format!("{s}_")))
            else {
                return Err(Error::usage(format!(
                    "environment variable {var} does not name a config key (sections: {})",
                    SECTIONS.join(", ")
                )));
            };
            let key = &lower[section.len() + 1..];
            let entry = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(sec) = entry else {
                return Err(Error::usage(format!(
                    "config section [{section}] is not a table"
                )));
            };
            sec.insert(key.to_string(), env_value(value));
            applied.push((var.clone(), section.to_string(), key.to_string()));
        }
        if let Err(e) = Self::from_table(&table) {
            // The culprit: the variable without which the configuration is valid.
            for (var, section, key) in &applied {
                let mut without = table.clone();
                if let Some(toml::Value::Table(sec)) = without.get_mut(section) {
                    sec.remove(key);
                }
                if Self::from_table(&without).is_ok() {
                    return Err(Error::usage(format!(
                        "invalid value in environment variable {var} (config key {section}.{key}): {e}"
                    )));
                }
            }
            let vars: Vec<&str> = applied.iter().map(|(v, _, _)| v.as_str()).collect();
            return Err(Error::usage(format!(
                "invalid configuration from the environment ({}): {e}",
                vars.join(", ")
            )));
        }
        let mut config = Self::from_table(&table)
            .map_err(|e| Error::usage(format!("invalid configuration: {e}")))?;
        config.validate()?;
        config.azure = azure::AzureEnv::from_env(env);
        config.proxy = proxy::ProxyEnv::from_env(env);
        config.notify.proxy = config.proxy.clone();
        if let Some(siem) = &mut config.siem {
            siem.proxy = config.proxy.clone();
        }
        Ok(config)
    }

    fn from_table(table: &toml::Table) -> std::result::Result<Config, String> {
        Config::deserialize(toml::Value::Table(table.clone())).map_err(|e| describe(&e.to_string()))
    }

    /// Cross-field checks that serde cannot express.
    fn validate(&self) -> Result<()> {
        let schema = &self.database.schema;
        if schema.is_empty()
            || !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            || schema.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(Error::usage(format!(
                "database.schema {schema:?} must be a plain identifier (letters, digits, underscore)"
            )));
        }
        let (codec, level) = (self.backup.compression, self.backup.level());
        if !codec.levels().contains(&level) {
            return Err(Error::usage(format!(
                "backup.compression_level {level} is out of range for {}: {}-{}",
                codec.name(),
                codec.levels().start(),
                codec.levels().end()
            )));
        }
        if self.s3.object_lock_days == Some(0) {
            return Err(Error::usage(
                "s3.object_lock_days must be at least 1 (unset it for no Object Lock retention)",
            ));
        }
        if self.ingest.max_line_bytes == 0
            || self.ingest.batch_rows == 0
            || self.ingest.parallel == 0
        {
            return Err(Error::usage(
                "ingest.max_line_bytes, ingest.batch_rows and ingest.parallel must be positive",
            ));
        }
        if let Some(siem) = &self.siem {
            let syslog = matches!(siem.sink, SiemSink::Syslog(_));
            if !syslog && siem.sink.token().is_none_or(Secret::is_empty) {
                return Err(Error::usage(
                    "siem.token is required for splunk-hec and http sinks",
                ));
            }
        }
        Ok(())
    }
}

/// An env var's text as a TOML value: booleans and integers as such, `[..]` as an array,
/// everything else a string (string keys accept scalars, see `lenient`).
fn env_value(text: &str) -> toml::Value {
    let t = text.trim();
    if t == "true" || t == "false" {
        return toml::Value::Boolean(t == "true");
    }
    if let Ok(i) = t.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if t.starts_with('[') {
        if let Ok(v) = toml::from_str::<toml::Table>(&format!("v = {t}")) {
            if let Some(v) = v.get("v") {
                return v.clone();
            }
        }
    }
    toml::Value::String(text.to_string())
}

/// Serde's messages say "unknown field `x`"; operators read config *keys*.
fn describe(msg: &str) -> String {
    msg.trim()
        .replace("unknown field", "unknown key")
        .replace("missing field", "missing key")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn defaults_are_kasms() {
        let c = Config::load(None, &env(&[])).unwrap();
        assert_eq!(c.retention.debug, Window::from_secs(4 * 3600));
        assert_eq!(c.retention.logs, Window::from_secs(7 * 86_400));
        assert_eq!(c.database.schema, "public");
        assert_eq!(c.ingest.max_line_bytes, 1 << 20);
        assert!(c.siem.is_none());
    }

    #[test]
    fn backup_compression_defaults_to_gzip_and_levels_follow_the_codec() {
        use compression::{Codec, GZIP_DEFAULT_LEVEL};
        let c = Config::load(None, &env(&[])).unwrap();
        assert_eq!(c.backup.compression, Codec::Gzip);
        assert_eq!(c.backup.level(), GZIP_DEFAULT_LEVEL);
        let f = file("[backup]\ncompression = \"zstd\"\n");
        let c = Config::load(Some(f.path()), &env(&[])).unwrap();
        assert_eq!((c.backup.compression, c.backup.level()), (Codec::Zstd, 3));
        let c = Config::load(
            None,
            &env(&[
                ("KASM_DB_BACKUP_COMPRESSION", "zstd"),
                ("KASM_DB_BACKUP_COMPRESSION_LEVEL", "19"),
            ]),
        )
        .unwrap();
        assert_eq!((c.backup.compression, c.backup.level()), (Codec::Zstd, 19));
        // 19 is a zstd level, not a gzip one; "lz4" is no codec.
        let e = Config::load(None, &env(&[("KASM_DB_BACKUP_COMPRESSION_LEVEL", "19")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("backup.compression_level") && e.contains("0-12"),
            "{e}"
        );
        let e = Config::load(None, &env(&[("KASM_DB_BACKUP_COMPRESSION", "lz4")])).unwrap_err();
        assert!(e.to_string().contains("KASM_DB_BACKUP_COMPRESSION"), "{e}");
    }

    #[test]
    fn backup_file_mode_is_octal_from_the_file_or_the_environment() {
        use file_mode::FileMode;
        let c = Config::load(None, &env(&[])).unwrap();
        assert_eq!(c.backup.file_mode, FileMode::PRIVATE);
        let f = file("[backup]\nfile_mode = \"0640\"\n");
        let c = Config::load(Some(f.path()), &env(&[])).unwrap();
        assert_eq!(
            (c.backup.file_mode.file(), c.backup.file_mode.dir()),
            (0o640, 0o750)
        );
        // The variable's "0640" arrives as the integer 640 and is still read as octal.
        let c = Config::load(None, &env(&[("KASM_DB_BACKUP_FILE_MODE", "0640")])).unwrap();
        assert_eq!(c.backup.file_mode.file(), 0o640);
        let e = Config::load(None, &env(&[("KASM_DB_BACKUP_FILE_MODE", "0755")])).unwrap_err();
        assert!(e.to_string().contains("KASM_DB_BACKUP_FILE_MODE"), "{e}");
        assert!(e.to_string().contains("execute"), "{e}");
    }

    #[test]
    fn copy_to_and_object_lock_days_from_the_file_or_the_environment() {
        let f = file(
            "[backup]\ncopy_to = [\"s3://other/p\", \"/mnt/nfs/kasm\"]\n[s3]\nobject_lock_days = 30\n",
        );
        let c = Config::load(Some(f.path()), &env(&[])).unwrap();
        assert_eq!(c.backup.copy_to, ["s3://other/p", "/mnt/nfs/kasm"]);
        assert_eq!(c.s3.object_lock_days, Some(30));
        let c = Config::load(
            None,
            &env(&[("KASM_DB_BACKUP_COPY_TO", "s3://a/p, /mnt/b")]),
        )
        .unwrap();
        assert_eq!(c.backup.copy_to, ["s3://a/p", "/mnt/b"]);
        let c = Config::load(None, &env(&[])).unwrap();
        assert!(c.backup.copy_to.is_empty() && c.s3.object_lock_days.is_none());
        let e = Config::load(None, &env(&[("KASM_DB_S3_OBJECT_LOCK_DAYS", "0")])).unwrap_err();
        assert!(e.to_string().contains("s3.object_lock_days"), "{e}");
    }

    #[test]
    fn env_overrides_file() {
        let f = file("[retention]\ndebug = \"2h\"\nlogs = \"3d\"\n");
        let c = Config::load(Some(f.path()), &env(&[("KASM_DB_RETENTION_DEBUG", "0")])).unwrap();
        assert!(c.retention.debug.is_zero());
        assert_eq!(c.retention.logs, Window::from_secs(3 * 86_400));
    }

    #[test]
    fn retention_max_bytes_from_the_file_or_the_environment() {
        assert_eq!(
            Config::load(None, &env(&[])).unwrap().retention.max_bytes,
            None
        );
        let f = file("[retention]\nmax_bytes = \"40GB\"\n");
        let c = Config::load(Some(f.path()), &env(&[])).unwrap();
        assert_eq!(
            c.retention.max_bytes.map(ByteSize::bytes),
            Some(40_000_000_000)
        );
        let f = file("[retention]\nmax_bytes = 1048576\n");
        let c = Config::load(Some(f.path()), &env(&[])).unwrap();
        assert_eq!(c.retention.max_bytes.map(ByteSize::bytes), Some(1 << 20));
        let c = Config::load(
            Some(f.path()),
            &env(&[("KASM_DB_RETENTION_MAX_BYTES", "1.5GiB")]),
        )
        .unwrap();
        assert_eq!(c.retention.max_bytes.map(ByteSize::bytes), Some(3 << 29));
        // Garbage is a usage error (exit 2) naming the key, the file or the variable, and the
        // accepted forms.
        let f = file("[retention]\nmax_bytes = \"forty gigs\"\n");
        let e = Config::load(Some(f.path()), &env(&[])).unwrap_err();
        assert_eq!(e.kind(), crate::error::Kind::Usage);
        let msg = e.to_string();
        assert!(
            msg.contains("retention.max_bytes") && msg.contains(&f.path().display().to_string()),
            "{msg}"
        );
        assert!(msg.contains("forty gigs") && msg.contains("40GB"), "{msg}");
        let e = Config::load(None, &env(&[("KASM_DB_RETENTION_MAX_BYTES", "0")])).unwrap_err();
        assert_eq!(e.kind(), crate::error::Kind::Usage);
        assert!(
            e.to_string().contains("KASM_DB_RETENTION_MAX_BYTES")
                && e.to_string().contains("retention.max_bytes"),
            "{e}"
        );
    }

    #[test]
    fn unknown_file_key_names_key_and_file() {
        let f = file("[retention]\ndebgu = \"2h\"\n");
        let e = Config::load(Some(f.path()), &env(&[])).unwrap_err();
        let msg = e.to_string();
        assert_eq!(e.kind(), crate::error::Kind::Usage);
        assert!(msg.contains("debgu"), "{msg}");
        assert!(msg.contains(&f.path().display().to_string()), "{msg}");
    }

    #[test]
    fn unknown_section_is_an_error() {
        let f = file("[retenshun]\ndebug = \"2h\"\n");
        let msg = Config::load(Some(f.path()), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("retenshun"), "{msg}");
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let e = Config::load(None, &env(&[("KASM_DB_RETENTION_LOGS", "seven days")])).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("KASM_DB_RETENTION_LOGS") && msg.contains("retention.logs"),
            "{msg}"
        );
        let e = Config::load(None, &env(&[("KASM_DB_RETENTION_FOREVER", "1d")])).unwrap_err();
        assert!(e.to_string().contains("forever"), "{e}");
        let e = Config::load(None, &env(&[("KASM_DB_NOPE", "1")])).unwrap_err();
        assert!(e.to_string().contains("KASM_DB_NOPE"), "{e}");
    }

    #[test]
    fn a_section_can_come_wholly_from_the_environment() {
        let c = Config::load(
            None,
            &env(&[
                ("KASM_DB_SIEM_BATCH_WAIT_MS", "5"),
                ("KASM_DB_SIEM_KIND", "splunk-hec"),
                ("KASM_DB_SIEM_TOKEN", "t"),
                (
                    "KASM_DB_SIEM_URL",
                    "http://127.0.0.1:1/services/collector/event",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(c.siem.unwrap().sink.kind(), "splunk-hec");
        // A kind's key from the environment under another kind names the variable and the key.
        let e = Config::load(
            None,
            &env(&[
                ("KASM_DB_SIEM_KIND", "syslog"),
                ("KASM_DB_SIEM_URL", "udp://127.0.0.1:514"),
                ("KASM_DB_SIEM_INDEX", "kasm"),
            ]),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("KASM_DB_SIEM_INDEX") && e.to_string().contains("index"),
            "{e}"
        );
        // Half a section names what is missing.
        let e = Config::load(None, &env(&[("KASM_DB_SIEM_URL", "http://x")])).unwrap_err();
        assert!(
            e.to_string().contains("KASM_DB_SIEM_URL") && e.to_string().contains("kind"),
            "{e}"
        );
    }

    #[test]
    fn env_strings_that_look_like_numbers_stay_strings() {
        let c = Config::load(
            None,
            &env(&[
                ("KASM_DB_SERVER_TOKEN", "123456"),
                ("KASM_DB_SIZING_SESSIONS", "300"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.token.unwrap().expose(), "123456");
        assert_eq!(c.sizing.sessions, Some(300));
    }

    #[test]
    fn env_lists_and_flag_vars() {
        let c = Config::load(
            None,
            &env(&[
                ("KASM_DB_INGEST_PATHS", "/a/*.log, /b/*.log"),
                ("KASM_DB_URL", "postgres://x"),
                ("KASM_DB_CONFIG", "/nope"),
            ]),
        )
        .unwrap();
        assert_eq!(c.ingest.paths, vec!["/a/*.log", "/b/*.log"]);
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let f = file(
            "[database]\nurl = \"postgres://u:db-s3cr3t@h/d\"\n[server]\ntoken = \"s3cr3t-token\"\n[siem]\nkind = \"http\"\nurl = \"http://x\"\ntoken = \"other-s3cr3t\"\n",
        );
        let c = Config::load(Some(f.path()), &env(&[])).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cr3t"), "{dbg}");
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("s3cr3t"), "{json}");
        let url = c.database.url.as_ref().unwrap();
        assert_eq!(url.expose(), "postgres://u:db-s3cr3t@h/d");
        assert_eq!(url.to_string(), "<redacted>");
    }

    #[test]
    fn siem_requires_a_token_for_http_sinks() {
        let f = file("[siem]\nkind = \"splunk-hec\"\nurl = \"http://x\"\n");
        let e = Config::load(Some(f.path()), &env(&[])).unwrap_err();
        assert!(e.to_string().contains("siem.token"), "{e}");
    }

    #[test]
    fn bad_schema_is_refused() {
        let e = Config::load(None, &env(&[("KASM_DB_DATABASE_SCHEMA", "a;drop")])).unwrap_err();
        assert!(e.to_string().contains("database.schema"), "{e}");
    }
}
