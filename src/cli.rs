//! The command line: every command and flag of the contract, each documented where it is
//! defined, so that `--help`, the man page and the completions teach the same thing.
//!
//! Parsing only. Nothing here reads config, touches the database or decides exit codes.

use crate::config::Window;
use crate::sizing::{Architecture, UseCase};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "kasm-db",
    version,
    about = "Runs the database side of a Kasm Workspaces deployment",
    long_about = "kasm-db runs the database side of a Kasm Workspaces deployment: component logs in \
(files, stdin, HTTP, Splunk HEC) with exact debug/normal retention windows, SIEM forwarding, \
streamed and checksummed backups to S3 or a directory, safe restore onto a standby, sizing against \
the Kasm sizing guide, and vacuum maintenance.",
    after_help = "Exit codes: 0 success; 1 the job ran and failed (or a check failed); 2 usage error or \
invalid config; 75 temporary: database/target unreachable after retries, or another run holds the lock.\n\
Configuration: flag > KASM_DB_* environment > TOML file (--config) > default. Every key a.b can be set \
as KASM_DB_A_B, e.g. KASM_DB_RETENTION_DEBUG=0.\n\
Notifications: with [notify] urls (and on = start/success/failure, default failure; token), backup, \
backups verify, purge, vacuum and restore POST a JSON body to each URL; an undelivered one is a \
warning, never a different exit code (docs/operations.md, \"Notifications\").\n\
Proxy: HTTP(S) connections (HEC and http SIEM sinks, notifications, S3, Azure) honour https_proxy/\
HTTPS_PROXY, http_proxy, all_proxy and no_proxy/NO_PROXY as curl does (docs/operations.md, \
\"Behind a proxy\")."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// TOML config file (every key and its default: docs/operations.md, "Configuration
    /// reference"). Unknown keys are an error.
    #[arg(long, global = true, env = "KASM_DB_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Database to operate on, as a postgres:// URL or libpq key=value string. Default:
    /// database.url. As in libpq, what the URL leaves out comes from the connection service
    /// (service=NAME or PGSERVICE, in PGSERVICEFILE or ~/.pg_service.conf, then
    /// PGSYSCONFDIR/pg_service.conf), then from PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE,
    /// PGSSLMODE, PGSSLROOTCERT, PGOPTIONS, PGCONNECT_TIMEOUT (default 10 s, 0 waits
    /// indefinitely), PGAPPNAME (default kasm-db), PGTARGETSESSIONATTRS (any, read-write,
    /// read-only). Without a password so far, the password file is read: PGPASSFILE, else
    /// ~/.pgpass (ignored, with a warning, when the group or others may read it). Keep
    /// passwords there or in PGPASSWORD, not in a URL on a command line.
    #[arg(
        long,
        global = true,
        env = "KASM_DB_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub db: Option<String>,

    /// Print the command's result as one JSON document on stdout (for scripts and monitoring).
    #[arg(long, global = true)]
    pub json: bool,

    /// Format of diagnostics on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "KASM_DB_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// More diagnostics on stderr (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Fewer diagnostics on stderr (-q: warnings and errors only, -qq: errors only).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or upgrade kasm-db's schema (idempotent; never touches tables it did not create).
    Migrate,

    /// Read NDJSON log records (files, .gz files, or stdin) and store them by binary COPY,
    /// routed by retention class; classes with retention 0 are forwarded or dropped.
    ///
    /// `--json`: {"read","stored","stored_debug","forwarded","sent","dropped","rejected",..}.
    /// `forwarded` counts records acknowledged by the SIEM or its transport (or durably spooled
    /// for it); with syslog over UDP, which acknowledges nothing, they are counted as `sent`
    /// instead: UDP loses records under load without anyone knowing (see
    /// `siem.udp_max_per_sec`, 2000 datagrams/s by default).
    Ingest(IngestArgs),

    /// Run the sidecar: HTTP and Splunk-HEC ingest, file following, SIEM forwarding, the
    /// [schedule] jobs (purge, backup, verify, vacuum, size samples), health check and
    /// Prometheus metrics.
    ///
    /// The HEC receiver (/services/collector, /services/collector/event) takes what HEC clients
    /// send: an `event` object, or a string holding a JSON object (a logging handler with a
    /// JSON formatter) as the record; the envelope's time, host, source, sourcetype, index and
    /// fields are kept in `data` under "hec". Data channels (X-Splunk-Request-Channel or
    /// ?channel=, a GUID) get an ackId that /services/collector/ack reports as indexed (every
    /// 200 is durable already); GET /services/collector/health answers like Splunk (200 code
    /// 17, or 503 code 18).
    ///
    /// It listens within seconds, without waiting for PostgreSQL: until the database is
    /// reachable and migrated (retried in the background), health answers 503 and records go to
    /// `server.spool_dir` (without one: 503 with Retry-After). SIGTERM/SIGINT: exit 0. Exit 1
    /// when the database refuses for good (authentication, a foreign `logs` table), like
    /// `migrate`, or when `server.listen` is taken; exit 2 for an invalid configuration; exit
    /// 75 when another process holds `siem.spool_dir`.
    ///
    /// Files matched by `ingest.paths` are followed through rotation (rename, `create`,
    /// `copytruncate`): a file is known by its device, inode and first bytes, not its name, so a
    /// glob that also matches rotated names (`*_json.log*`) reads nothing twice, and rotated
    /// copies written since following began are read even when the glob matches only the
    /// current name. Compressed files are read only when the glob names them (`*.gz`); the
    /// offsets of files gone for `ingest.forget_after` (default 1d) are forgotten.
    ///
    /// With backup.wal = true it also streams the primary's WAL to backup.to, as `kasm-db wal
    /// stream` does (one replica leads; the others try again every 15 s).
    Serve,

    /// Apply the retention windows exactly: drop partitions wholly past their window, delete
    /// only the expired rows of the one boundary partition per class.
    ///
    /// With retention.max_bytes (e.g. "40GB"; GB = 10^9 bytes, GiB = 2^30) the `logs` relation
    /// is then capped: while it is over, the oldest whole partitions are dropped, every debug
    /// hour before the other levels, never the partitions receiving inserts (a warning says
    /// when the cap cannot be met). DROP only, before any DELETE, so a nearly full disk can
    /// still be purged. `--json` adds "cap": {"max_bytes","before_bytes","after_bytes",
    /// "within","dropped":[{"partition","class","range","rows","bytes"}],"held","warning"};
    /// --dry-run lists what would be dropped.
    Purge(PurgeArgs),

    /// Send records already stored to the SIEM (a backfill before setting retention to 0).
    ///
    /// `--json`: {"forwarded","sent","read","spooled","dead_lettered","duplicates","sink"};
    /// with syslog over UDP the records are `sent`, never `forwarded` (nothing acknowledges
    /// them; paced to `siem.udp_max_per_sec`).
    Forward(ForwardArgs),

    /// Back the database up with pg_dump, compressed and checksummed, streamed to S3 or a directory.
    ///
    /// Compression is backup.compression: "gzip" (default; standard multi-member gzip at
    /// backup.compression_level, default 5 of 0-12, restores with `gunzip -c | pg_restore`) or
    /// "zstd" (smaller and faster; level 1-19, default 3; restores with `zstd -dc |
    /// pg_restore`). The manifest's `restore` recipe says which; `restore` reads both.
    ///
    /// Afterwards the backup is copied to each backup.copy_to target (checksum checked, manifest
    /// last), and once a backup.keep_* policy is set each target is pruned by it (never the
    /// backup just made; --no-prune skips that). `--json` adds `pruned` and `copies`
    /// ([{"target","ok","bytes","error","pruned"}]). A failed copy or prune exits 1 with the
    /// result printed: the backup itself succeeded and is intact.
    Backup(BackupArgs),

    /// List, verify, check, copy or prune the backups of a target.
    #[command(subcommand)]
    Backups(BackupsCommand),

    /// Restore a backup onto a standby server: verified before the target is touched, restored
    /// into a new database, checked, then swapped in; the old database is kept renamed.
    ///
    /// The source database's own properties come along: owner, encoding and locale,
    /// database-level GRANTs, ALTER DATABASE / ALTER ROLE ... IN DATABASE settings, connection
    /// limit and comment. Roles missing on the target stop the restore before anything is
    /// touched, unless --no-owner (then they are skipped and reported).
    Restore(RestoreArgs),

    /// Database size against the Kasm sizing guide's tiers, with advice.
    ///
    /// Also records a size sample (the size-over-time chart of `report`, so that `size` from
    /// cron is enough without `serve`; --no-record skips it) and, with backup.to set, shows the
    /// verdict of `backups check` (its defaults) for it.
    ///
    /// With retention.max_bytes set, `warnings` (and a "size cap:" block) say when the cap,
    /// not the windows, decides how long logs stay: over or near the cap, an ingest rate that
    /// would fill the windows past it, a class cut short by it (status then `warn`).
    Size(SizeArgs),

    /// Size a whole Kasm deployment from the sizing guide's arithmetic.
    Plan(PlanArgs),

    /// Maintenance: find bloat and wraparound risk, VACUUM (ANALYZE); with --full give space back.
    Vacuum(VacuumArgs),

    /// Walk the whole toolkit end to end on throwaway local PostgreSQL clusters, one line per
    /// stage on stderr (-v adds the operations' own log lines). --json prints the stages'
    /// results as one document; --config and --db are refused (exit 2): the demo makes its own
    /// clusters and configuration.
    Demo,

    /// Write one self-contained HTML page with charts: sizes over time, log volume, backups.
    Report(ReportArgs),

    /// Read the stored logs: the newest records for a filter, older or newer pages, a live
    /// tail, the records around one record, and counts.
    ///
    /// Records are ordered by ingest_date (when kasm-db received them; retention is measured on
    /// it), ties broken by the cursor. `-n N` prints the newest N, oldest first, like `tail`.
    /// Each record has a cursor (`--json`: "cursor"); `--before CURSOR` prints the N before it,
    /// `--after CURSOR` the N after it, without a gap or an overlap. `-f` then prints every new
    /// matching record as it is stored, each exactly once, in the order the records became
    /// visible (a record committed late with an earlier time too); it reconnects by itself after
    /// a database restart and resumes after the last record it printed (Ctrl-C ends it, exit
    /// 0). `-f --after CURSOR` resumes a tail from a record an earlier tail printed.
    ///
    /// Output: one line per record (time, level, host, application, [user], message; colours
    /// on a terminal unless NO_COLOR is set; control characters shown escaped). `--json`:
    /// NDJSON, one record per line with log_id, cursor, ingest_date, log_time, levelname,
    /// host, application, kasm_user_name, message, data (a reader streams: the one exception to
    /// "one JSON document"). `--csv`: a header line, then one row per record. `--count-by X
    /// --json`: {"counts": {VALUE: N, ..}}.
    ///
    /// Examples:
    ///   kasm-db logs --min-level warning --since 2h
    ///   kasm-db logs --host agent-3 --grep "provision" -n 20
    ///   kasm-db logs --user alice@example.com -f
    ///   kasm-db logs --where kasm_id=5f0c... --json
    ///   kasm-db logs --around 0193a1f0-... -C 10
    ///   kasm-db logs --since 7d --min-level error --count-by host
    ///
    /// Bad input (an unparsable time, an unknown level, --where without '=', a malformed cursor)
    /// exits 2 with the reason.
    Logs(LogsArgs),

    /// Print shell completions to stdout.
    Completions {
        /// The shell to generate completions for.
        #[arg(value_enum)]
        shell: Shell,
    },

    /// Print the man page (roff) to stdout.
    Man,

    /// Point-in-time recovery's WAL archive: `wal stream` stores the primary's WAL under the
    /// backup target as it is written.
    #[command(subcommand)]
    Wal(WalCommand),

    /// Write N generated Kasm-style NDJSON log records to stdout (for benchmarks and drills).
    #[command(hide = true)]
    GenLogs {
        /// How many records.
        count: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum WalCommand {
    /// Stream the primary's WAL to the backup target until SIGTERM: the real pg_receivewal of
    /// the server's major on the physical replication slot backup.wal_slot (default kasm_db,
    /// created when missing), each completed segment stored compressed and checksummed as
    /// wal/<timeline>/<segment>.zst (zstd level 1) with its record (<segment>.json, written after it), the
    /// segment still being written stored at least every backup.wal_flush (default 10s): that
    /// is the most committed work a crash of the primary can lose. Each backup.copy_to target
    /// gets every stored segment too (one that is down never holds up the main target, and is
    /// caught up when it is back). A restart (of the primary or of this) resumes from the
    /// slot, no gap. One leader: a second run against the same
    /// database exits 75. Needs a role with REPLICATION and a `host replication` line in
    /// pg_hba.conf; a managed server without replication (Amazon RDS) is refused, pointing to
    /// the provider's own point-in-time recovery. The slot keeps WAL on the primary while
    /// nothing streams: when streaming stops for good, drop it with
    /// `SELECT pg_drop_replication_slot('kasm_db')`. `--json` at exit: {"target","slot",
    /// "segments","partial_copies","last_segment","partial_segment"}.
    Stream {
        /// Where to store the WAL (default: backup.to): s3://, az://, file:// or /dir, beside
        /// the backups.
        #[arg(long, value_name = "TARGET")]
        to: Option<String>,
        /// Where pg_receivewal writes before a segment is stored (created 0700). Keep it on a
        /// persistent disk: segments not yet stored when kasm-db stops are stored at the next
        /// start. Default: <TMPDIR>/kasm-db-wal-<slot>-<digest of the database and target>. One
        /// stream per directory (a second exits 75); WAL another stream staged there is refused,
        /// never stored under this target.
        #[arg(long, value_name = "DIR")]
        staging_dir: Option<PathBuf>,
        /// The directory of the pg_receivewal to use (default: backup.pg_bindir; unset, one of
        /// the server's major is looked for).
        #[arg(long, value_name = "DIR")]
        pg_bindir: Option<PathBuf>,
    },
    /// PostgreSQL's restore_command during `restore --physical`: write the archived WAL file
    /// FILE to PATH, checked against its checksum. Exit 1 when it is not in the archive and
    /// that is normal (the end of the archive); exit 126 (fatal to recovery) when a segment
    /// that must be there is missing or corrupt.
    #[command(hide = true)]
    Fetch {
        /// The file recovery asks for (%f).
        file: String,
        /// Where to write it (%p).
        path: PathBuf,
        /// Where the WAL is (default: backup.to).
        #[arg(long, value_name = "TARGET")]
        from: Option<String>,
        /// The last segment the base backup carries itself: one up to it missing from the
        /// archive is not a gap.
        #[arg(long, value_name = "SEGMENT")]
        through: Option<String>,
        /// The restore's read-ahead folder: a segment already fetched and checked there is
        /// moved into place without reading the archive.
        #[arg(long, value_name = "DIR")]
        cache: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// NDJSON files to read; `-` or none reads stdin. Files ending in .gz are decompressed.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Write every rejected line to FILE as NDJSON ({"source","line","reason","text"}), created
    /// 0600 (it holds the lines).
    #[arg(long, value_name = "FILE")]
    pub rejects: Option<PathBuf>,

    /// Exit 1 if any line was rejected (the good lines are stored all the same).
    #[arg(long)]
    pub strict: bool,

    /// Longest accepted line in bytes (default: ingest.max_line_bytes, 1 MiB).
    #[arg(long, value_name = "BYTES")]
    pub max_line_bytes: Option<usize>,

    /// Record every line as received at this instant (RFC 3339) instead of now, so that
    /// retention of replayed archives counts from when they were first received.
    #[arg(long, value_name = "RFC3339")]
    pub received_at: Option<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Only these levels (repeatable or a comma list: --level warning,error). WARN and FATAL
    /// are read as WARNING and CRITICAL.
    #[arg(long, value_name = "L")]
    pub level: Vec<String>,

    /// Only this level and the ones above it (DEBUG < INFO < WARNING < ERROR < CRITICAL).
    #[arg(long, value_name = "L")]
    pub min_level: Option<String>,

    /// Only records of this application (Kasm's `application`, e.g. kasm_api), exactly.
    #[arg(long, value_name = "A")]
    pub app: Option<String>,

    /// Only records of this host, exactly.
    #[arg(long, value_name = "H")]
    pub host: Option<String>,

    /// Only records of this Kasm user (kasm_user_name), exactly.
    #[arg(long, value_name = "U")]
    pub user: Option<String>,

    /// Only records whose field KEY inside `data` has the text VALUE (repeatable; a.b for a
    /// nested field; numbers compare as their text: --where status=500).
    #[arg(long = "where", value_name = "KEY=VALUE")]
    pub wheres: Vec<String>,

    /// Only records whose message contains TEXT, case-insensitively (TEXT is plain text, not a
    /// pattern: % _ and quotes match themselves).
    #[arg(long, value_name = "TEXT")]
    pub grep: Option<String>,

    /// Only records received at or after T: RFC 3339 (2026-12-07T03:00:00Z) or a span back from
    /// now (90m, 2h, 7d).
    #[arg(long, value_name = "T")]
    pub since: Option<String>,

    /// Only records received before T (RFC 3339 or a span back from now).
    #[arg(long, value_name = "T")]
    pub until: Option<String>,

    /// How many records: the newest N (or N before/after a cursor), printed oldest first.
    #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 100)]
    pub lines: u32,

    /// The N records before this cursor (an older page).
    #[arg(long, value_name = "CURSOR", conflicts_with_all = ["after", "around", "count_by"])]
    pub before: Option<String>,

    /// The N records after this cursor (a newer page); with -f, resume a tail after it.
    #[arg(long, value_name = "CURSOR", conflicts_with_all = ["around", "count_by"])]
    pub after: Option<String>,

    /// Keep printing new matching records as they are stored (Ctrl-C ends).
    #[arg(short = 'f', long, conflicts_with_all = ["around", "count_by", "before", "until"])]
    pub follow: bool,

    /// The record with this log_id and the records around it (see -C).
    #[arg(long, value_name = "LOG_ID", conflicts_with = "count_by")]
    pub around: Option<String>,

    /// With --around: how many records before and after it (default 5).
    #[arg(short = 'C', long = "context", value_name = "N", requires = "around")]
    pub context: Option<u32>,

    /// Count the matching records per level, app, host or user instead of printing them.
    #[arg(long, value_name = "level|app|host|user")]
    pub count_by: Option<String>,

    /// CSV instead of lines (a header, then one row per record).
    #[arg(long)]
    pub csv: bool,
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// Apply the windows as of this instant (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<String>,

    /// Report what would be removed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// Forward records ingested at or after T (RFC 3339).
    #[arg(long, value_name = "T")]
    pub since: Option<String>,

    /// Forward records ingested before T (RFC 3339).
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where to write: s3://bucket/prefix, az://container/prefix (Azure Blob Storage; credentials
    /// from AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY or
    /// AZURE_STORAGE_SAS_TOKEN), file:///abs/dir or /abs/dir (default: backup.to).
    /// In a directory, files are created 0600 and folders 0700 whatever the umask
    /// (backup.file_mode, e.g. "0640" for group read); a world-writable one gets a warning.
    #[arg(long, value_name = "TARGET")]
    pub to: Option<String>,

    /// Leave out the rows of every table named `logs`: kasm-db's partitioned one with its
    /// partitions, and Kasm's own plain one (as Kasm's backups do with
    /// --exclude-table-data=logs). Their definitions are kept; the manifest's `excluded` names
    /// them.
    #[arg(long)]
    pub exclude_logs: bool,

    /// The directory of the pg_dump to use (default: backup.pg_bindir; unset, one of the
    /// server's major is looked for in /usr/lib/postgresql/<major>/bin, /usr/pgsql-<major>/bin,
    /// then PATH).
    #[arg(long, value_name = "DIR")]
    pub pg_bindir: Option<PathBuf>,

    /// A physical base backup of the whole cluster instead of a pg_dump of one database: the
    /// real pg_basebackup of the server's major (-Ft -X fetch, so it restores on its own; the
    /// WAL that `kasm-db wal stream` archives carries it to any later second), compressed and
    /// checksummed like a dump, its manifest of kind "physical" recording the start and stop
    /// WAL positions and the timeline. Needs a role with REPLICATION and a `host replication`
    /// line in pg_hba.conf; a managed server without replication (Amazon RDS) is refused: use
    /// the provider's own point-in-time recovery. `--json` adds "kind": "physical",
    /// "start_lsn", "stop_lsn", "timeline". Restore with `restore --physical --data-dir DIR`.
    #[arg(long)]
    pub physical: bool,

    /// Do not apply the backup.keep_* policy afterwards. Without it, once a policy is set,
    /// every successful backup prunes its target (and each backup.copy_to target) by that
    /// policy, never deleting the backup just made; the result lists what went (`pruned`).
    #[arg(long)]
    pub no_prune: bool,
}

#[derive(Debug, Subcommand)]
pub enum BackupsCommand {
    /// Complete backups of the target, newest first, each with its latest verification.
    List {
        /// The target to read (default: backup.to).
        #[arg(long, value_name = "TARGET")]
        from: Option<String>,
    },
    /// Re-read a backup and check its size and SHA-256 (for a physical backup also the archived
    /// WAL after it: no hole, every segment matching its checksum); with --scratch-db also restore it into
    /// a scratch database and check every table's row count. Exit 1 when not ok. The result is
    /// kept beside the backup as verified.json (best effort), for `backups list` and the report.
    Verify {
        /// Backup id, or `latest`.
        #[arg(default_value = "latest", value_name = "ID|latest")]
        backup: String,
        /// The target to read (default: backup.to).
        #[arg(long, value_name = "TARGET")]
        from: Option<String>,
        /// A server URL for the full restore test; a scratch database is created and dropped.
        #[arg(long, value_name = "URL", hide_env_values = true)]
        scratch_db: Option<String>,
        /// The directory of the pg_restore for the restore test (default: backup.pg_bindir;
        /// unset, one of the scratch server's major is looked for).
        #[arg(long, value_name = "DIR")]
        pg_bindir: Option<PathBuf>,
    },
    /// Copy a complete backup to another target (a second copy, 3-2-1): streamed, its size and
    /// SHA-256 checked against the manifest on the way (a corrupt source is refused and nothing
    /// appears at the destination), the manifest written last. A physical backup's archived
    /// WAL that the destination lacks is copied first. Nothing is pruned.
    ///
    /// `--json`: {"id","target","bytes","already_there"} (+ "wal" for a physical backup).
    Copy {
        /// Backup id, or `latest`.
        #[arg(value_name = "ID|latest")]
        backup: String,
        /// Where to copy it: s3://bucket/prefix, file:///abs/dir or /abs/dir.
        #[arg(long, value_name = "TARGET")]
        to: String,
        /// Where the backup is (default: backup.to).
        #[arg(long, value_name = "TARGET")]
        from: Option<String>,
    },
    /// Check that the backups would save the day: the newest complete backup is at most
    /// --max-age old, there are at least --min-count, and (with --verified-within) the newest
    /// passed a verification recently. A failed verification of the newest backup always fails
    /// the check. When the database answers, the replication slot backup.wal_slot is checked
    /// too (the slot guard): no consumer and more WAL kept on the primary than
    /// backup.wal_slot_max_retained (default 10GB), or its WAL lost, fails the check. Exit 0
    /// when all is met; exit 1 with one reason per condition not met (no backups at all is its
    /// own reason); 75 when the target cannot be read. The first line reads like a
    /// Nagios/Icinga plugin's (`BACKUPS OK - ...` / `BACKUPS CRITICAL - ...`, with performance
    /// data). `--json`: {"ok","reasons","target","count","newest_id","newest_created",
    /// "newest_age_s","last_verification","criteria","checked_at","wal_slot"}.
    Check {
        /// The target to read (default: backup.to).
        #[arg(long, value_name = "TARGET")]
        from: Option<String>,
        /// The newest complete backup may be at most this old ("26h", "2d", "90m"): a daily
        /// backup plus two hours of slack by default.
        #[arg(long, value_name = "DUR", default_value = "26h", value_parser = duration)]
        max_age: Window,
        /// At least N complete backups.
        #[arg(long, value_name = "N", default_value_t = 1)]
        min_count: u32,
        /// The newest backup passed `backups verify` (or the scheduled verify) within DUR
        /// ("8d"); while it awaits its first verification, an older backup's verification that
        /// passed within DUR counts. Not checked unless given.
        #[arg(long, value_name = "DUR", value_parser = duration)]
        verified_within: Option<Window>,
    },
    /// Delete the backups the policy does not keep (GFS: last, daily, weekly, monthly), applied
    /// to logical and physical backups each on its own. The newest complete backup of each kind
    /// is always kept; partial leftovers older than a day are removed, and the archived WAL no
    /// kept physical backup needs (`wal_segments_deleted` in --json; none without one).
    /// On S3, multipart uploads of dead runs older than a day are aborted; a store that does not
    /// implement that gets a warning (`warnings` in --json) and the prune still succeeds. On
    /// Azure, blocks of dead runs are never committed and Azure discards them after 7 days.
    Prune {
        /// The target to prune (default: backup.to).
        #[arg(long, value_name = "TARGET")]
        from: Option<String>,
        /// Keep the N newest backups (default: backup.keep_last).
        #[arg(long, value_name = "N")]
        keep_last: Option<u32>,
        /// Keep the newest backup of each of the last N days that have one (default:
        /// backup.keep_daily).
        #[arg(long, value_name = "N")]
        keep_daily: Option<u32>,
        /// Keep the newest backup of each of the last N ISO weeks that have one (default:
        /// backup.keep_weekly).
        #[arg(long, value_name = "N")]
        keep_weekly: Option<u32>,
        /// Keep the newest backup of each of the last N months that have one (default:
        /// backup.keep_monthly).
        #[arg(long, value_name = "N")]
        keep_monthly: Option<u32>,
        /// Report what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Where the backups are: s3://bucket/prefix, az://container/prefix, file:///abs/dir or
    /// /abs/dir (default: backup.to).
    #[arg(long, value_name = "TARGET")]
    pub from: Option<String>,

    /// Backup id, or `latest`.
    #[arg(long, default_value = "latest", value_name = "ID|latest")]
    pub backup: String,

    /// The database to restore into (postgres:// URL of the standby's database). Its current
    /// content is kept, renamed to <name>_pre_restore_<timestamp>. Not with --physical.
    #[arg(
        long,
        value_name = "URL",
        hide_env_values = true,
        required_unless_present = "physical",
        conflicts_with = "physical"
    )]
    pub target: Option<String>,

    /// Point-in-time recovery of the whole cluster from a physical base backup (`backup
    /// --physical`) and the WAL archived after it (`wal stream`), into a new data directory
    /// (--data-dir) on this host: the base backup's size and SHA-256 are checked before
    /// anything is written, it is unpacked (as root, given to the `postgres` user), PostgreSQL
    /// of the backup's major replays the archived WAL — each segment checked against its
    /// checksum by kasm-db itself as restore_command — up to --to-time or the end of the
    /// archive (--to-latest, the default), is promoted and shut down cleanly. A segment missing
    /// or corrupt in the middle of the chain stops the restore, naming it: never a silent
    /// shorter recovery. As root with a directory target, the `postgres` user must be able to
    /// read it (backup.file_mode = "0644", or an S3/Azure target). `--json`:
    /// {"backup","data_dir","recovered_to","duration_s"}: recovered_to is the last replayed
    /// commit.
    #[arg(long, requires = "data_dir")]
    pub physical: bool,

    /// With --physical: the data directory to create (absent or empty; an absolute path).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// With --physical: recover up to the last commit at or before T (RFC 3339, e.g.
    /// 2026-11-24T14:05:00Z). Recovery fails if the archive ends before T.
    #[arg(
        long,
        value_name = "T",
        requires = "physical",
        conflicts_with = "to_latest"
    )]
    pub to_time: Option<String>,

    /// With --physical: recover everything the archive holds (the default).
    #[arg(long, requires = "physical")]
    pub to_latest: bool,

    /// With --physical: leave the recovered server running on --port (with its own
    /// configuration; its Unix socket in DIR) instead of shut down. The recovery itself runs
    /// on --port: clients get read-only answers there while it replays, under the cluster's own
    /// pg_hba.conf; once promoted it is restarted there without the storage credentials.
    #[arg(long, requires_all = ["physical", "port"])]
    pub start: bool,

    /// With --start or --standby: the port the server is left running on.
    #[arg(long, value_name = "P", requires = "physical")]
    pub port: Option<u16>,

    /// With --physical: leave the server a standby (standby.signal) on --port that keeps
    /// replaying WAL from the target as `wal stream` stores it, so that a failover is a
    /// promotion (`pg_ctl promote -D DIR`), not a restore. No recovery target.
    #[arg(long, requires_all = ["physical", "port"], conflicts_with_all = ["to_time", "start"])]
    pub standby: bool,

    /// Parallel pg_restore jobs (default: the number of cores).
    #[arg(long, value_name = "N")]
    pub jobs: Option<u32>,

    /// Terminate active connections to the target database instead of refusing.
    #[arg(long)]
    pub force: bool,

    /// Do not restore object ownership (for a standby without the primary's roles); the
    /// database's owner, privileges and settings are kept for roles the target has and skipped,
    /// each reported, for the others.
    #[arg(long)]
    pub no_owner: bool,

    /// Create the roles the backup records (the database's owner, the roles in its privileges,
    /// owners of its objects, their memberships) that the target server lacks, once the backup
    /// is verified and before the database is restored, with their attributes and, when the backup carries them, their password
    /// hashes. Existing roles are never altered. Attributes the restoring role may not give
    /// (SUPERUSER, REPLICATION, BYPASSRLS on a managed PostgreSQL) are left out with a
    /// warning; login roles created without a password are listed with the ALTER ROLE that
    /// gives them one.
    #[arg(long)]
    pub create_roles: bool,

    /// The directory of the pg_restore to use (default: backup.pg_bindir; unset, one of the
    /// target server's major is looked for in /usr/lib/postgresql/<major>/bin,
    /// /usr/pgsql-<major>/bin, then PATH). A backup of an older major restores onto a newer
    /// server (the major-upgrade recipe in docs/operations.md).
    #[arg(long, value_name = "DIR")]
    pub pg_bindir: Option<PathBuf>,

    /// Swap the database in before its logs data is loaded (Kasm needs none of it to serve
    /// users), then load the logs into the live database; both times are reported. An
    /// interrupted load is finished by `--logs-later --resume`.
    #[arg(long)]
    pub logs_later: bool,

    /// With --logs-later: only load the logs data that an interrupted --logs-later restore of
    /// --target left missing (each table exactly once); the backup is the one that restore used.
    #[arg(long, requires = "logs_later")]
    pub resume: bool,
}

#[derive(Debug, Args)]
pub struct SizeArgs {
    /// Expected maximum concurrent sessions (default: sizing.sessions).
    #[arg(long, value_name = "N")]
    pub sessions: Option<u32>,

    /// Exit 1 when the status is `exceeded` (for monitoring).
    #[arg(long)]
    pub fail_on_exceed: bool,

    /// Do not record a size sample. By default `size` records one in `size_samples` (as
    /// `serve`'s schedule.size_sample does), so that running it from cron draws the
    /// size-over-time chart of `report`; a database without kasm-db's schema records none.
    #[arg(long)]
    pub no_record: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Expected maximum concurrent sessions.
    #[arg(long, value_name = "N")]
    pub sessions: u32,

    /// The use case, which decides where in the guide's ranges a server lands.
    #[arg(long, value_enum, default_value_t = UseCase::RemoteWork)]
    pub use_case: UseCase,

    /// Deployment architecture.
    #[arg(long, value_enum, default_value_t = Architecture::Standard)]
    pub architecture: Architecture,

    /// CPUs of each workspace (session container).
    #[arg(long, default_value_t = 2.0, value_name = "C")]
    pub workspace_cpus: f64,

    /// RAM of each workspace in GB.
    #[arg(long, default_value_t = 4.0, value_name = "R")]
    pub workspace_ram_gb: f64,

    /// Physical CPUs of each agent.
    #[arg(long, default_value_t = 16.0, value_name = "C")]
    pub agent_cpus: f64,

    /// Physical RAM of each agent in GB.
    #[arg(long, default_value_t = 64.0, value_name = "R")]
    pub agent_ram_gb: f64,

    /// Agent override: the CPU count Kasm uses to place sessions (oversubscription).
    #[arg(long, value_name = "C")]
    pub override_cpus: Option<f64>,

    /// Agent override: the RAM in GB Kasm uses to place sessions (oversubscription).
    #[arg(long, value_name = "R")]
    pub override_ram_gb: Option<f64>,

    /// Session recording is enabled: +1 CPU per workspace, recording disk on the proxies.
    #[arg(long)]
    pub recording: bool,

    /// Disk each session accumulates on its agent, in GB.
    #[arg(long, value_name = "G")]
    pub space_per_user_gb: Option<f64>,

    /// Cores of each connection proxy.
    #[arg(long, value_name = "C")]
    pub proxy_cpus: Option<f64>,

    /// Estimate DNS load-balancing failover: health-check interval in seconds.
    #[arg(long, value_name = "S")]
    pub dns_check_interval_s: Option<f64>,

    /// Estimate DNS load-balancing failover: consecutive failures before removal.
    #[arg(long, value_name = "N")]
    pub dns_failures: Option<u32>,

    /// Estimate DNS load-balancing failover: record TTL in seconds.
    #[arg(long, value_name = "S")]
    pub dns_ttl_s: Option<f64>,
}

#[derive(Debug, Args)]
pub struct VacuumArgs {
    /// Report what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Also rewrite tables with enough reclaimable space (VACUUM FULL, under a lock timeout)
    /// to give the space back to the operating system.
    #[arg(long)]
    pub full: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The HTML file to write.
    #[arg(long, value_name = "FILE")]
    pub html: PathBuf,
}

/// A duration flag in the config's notation ("26h", "8d", "90m").
fn duration(text: &str) -> Result<Window, String> {
    Window::parse(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn globals_before_or_after_the_subcommand() {
        let a =
            Cli::try_parse_from(["kasm-db", "--json", "--db", "postgres://x", "migrate"]).unwrap();
        let b =
            Cli::try_parse_from(["kasm-db", "migrate", "--json", "--db", "postgres://x"]).unwrap();
        assert!(a.global.json && b.global.json);
        assert_eq!(a.global.db, b.global.db);
    }
}
