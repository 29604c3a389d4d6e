//! `restore --physical`: a physical base backup and the archived WAL after it, recovered into a
//! new data directory up to a point in time (or the end of the archive), promoted, and shut
//! down cleanly — or left running on a port, or left as a standby that keeps replaying WAL.
//!
//! 1. `DIR` must be absent or empty (never written over); the `postgres` of the backup's major
//!    must be there ([`crate::pgtools`]).
//! 2. The base backup is read once: hashed while it is decrypted, decompressed and unpacked
//!    ([`super::untar`], in this process) into a hidden folder of `DIR`
//!    ([`super::fetch::stream_into`]), whose
//!    entries move up into `DIR` only when its size and SHA-256 match the manifest (a corrupt
//!    backup leaves `DIR` as it was); as root the tree is given to `postgres`.
//! 3. Recovery settings go into `postgresql.auto.conf`: `restore_command` runs kasm-db itself
//!    (`wal fetch %f %p --from TARGET --through SEGMENT`, which checks every segment against its
//!    record and stops recovery on a gap or a corrupt segment rather than ending it early), the
//!    target (`recovery_target_time`, or none for the end of the archive), and
//!    `recovery_target_action = promote`; then `recovery.signal` (`standby.signal` with
//!    `--standby`).
//! 4. Without a port, the server starts on a free loopback port with a Unix socket in a
//!    private folder and a `local all all trust` pg_hba of its own (nothing else may connect).
//!    With `--port P` it recovers on P itself, as a hot standby that answers read-only queries
//!    while it replays: the cluster's own configuration and listen addresses, its sockets in
//!    the private folder and DIR (both 0700, the `postgres` user's: only root and postgres
//!    reach them), and a pg_hba of the recovery's own that trusts local connections, for the
//!    watch, before the cluster's own rules for everything else ([`early_rules`]; a cluster
//!    whose rules cannot be carried over as they are recovers privately, as without a port).
//!    Archiving off either way, and the recovery's server stops with kasm-db.
//!    While it replays, the completed segments after the backup's start are read ahead,
//!    fetched and checked into the private folder ([`crate::wal::fetch::prefetch`]), so
//!    `wal fetch --cache` only moves each into place.
//!    Recovery is watched until the server is promoted; `recovered_to` is
//!    `pg_last_xact_replay_timestamp()` then (the last replayed commit). A server that stops
//!    instead fails the restore with the reason from its log (`wal fetch` names the segment).
//! 5. A fast shutdown leaves `DIR` cleanly shut down (the recovery's server log kept as
//!    `DIR/kasm-db-recovery.log`) and `postgresql.auto.conf` as the backup had it (the recovery
//!    settings gone: the promoted cluster is a primary); with a port the server is started
//!    again on it with the cluster's own configuration and pg_hba, without the storage
//!    credentials (Unix socket in `DIR`, its log in `DIR/kasm-db-server.log`): connections made
//!    while it replayed are closed then.
//!
//! Never touches an existing data directory's files, never connects to the primary, never
//! prints a password, never changes the restored cluster's own `pg_hba.conf` or passwords
//! (the recovery's pg_hba is a file of its private folder, named on the server's command line),
//! never leaves a server running with the recovery's pg_hba.

use super::fetch;
use crate::archive::manifest::{BackupKind, Manifest};
use crate::archive::storage::Storage;
use crate::error::{Error, Result};
use crate::wal::fetch as fetch_wal;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Where recovery stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryTarget {
    /// The end of the archive.
    Latest,
    /// The last commit at or before this instant.
    Time(DateTime<Utc>),
}

/// One physical restore.
pub struct PhysicalSpec<'a> {
    pub storage: &'a dyn Storage,
    /// The target's listing, taken once by the caller: what the WAL archive holds is read
    /// from it.
    pub listing: &'a [crate::archive::storage::ObjectInfo],
    pub manifest: &'a Manifest,
    pub data_dir: &'a Path,
    /// The kasm-db program PostgreSQL runs as `restore_command`, and the arguments that find
    /// the archive again (`--from TARGET`, `--config FILE`), already shell-safe words.
    pub fetch_command: Vec<String>,
    pub to: RecoveryTarget,
    /// Leave it a standby replaying WAL from the archive as it arrives (needs `port`).
    pub standby: bool,
    /// Leave the server running on this port.
    pub port: Option<u16>,
    pub pg_bindir: Option<&'a Path>,
    /// `backup.encryption_key_file`: opens an encrypted base backup (its WAL: `wal fetch`).
    pub key_file: Option<&'a Path>,
    /// The environment the server (and so `wal fetch`) runs with: the snapshot's
    /// [`crate::pgtools::child_env`] plus what reaches the target (`KASM_DB_*`, `AWS_*`,
    /// `AZURE_*`), chosen by the caller.
    pub server_env: Vec<(String, String)>,
    pub env: &'a BTreeMap<String, String>,
}

/// What a physical restore came to (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct PhysicalRestored {
    pub backup: String,
    pub data_dir: String,
    /// The last commit replayed (`pg_last_xact_replay_timestamp()`); `None` when recovery
    /// replayed none after the backup.
    pub recovered_to: Option<DateTime<Utc>>,
    pub duration_s: f64,
    /// The port it runs on (`--start --port`, `--standby`); `None` when shut down.
    pub running_on: Option<u16>,
    pub standby: bool,
    /// The newest WAL segment the archive held of the backup's timeline when the restore
    /// began (`None`: none at all).
    pub archive_end: Option<String>,
    /// What the operator should know (an archive with nothing after the backup, holes after
    /// the recovery target), in sentences.
    pub warnings: Vec<String>,
}

/// Run the restore.
pub async fn restore(spec: PhysicalSpec<'_>) -> Result<PhysicalRestored> {
    let started = Instant::now();
    let m = spec.manifest;
    let (BackupKind::Physical, Some(p)) = (m.kind, m.physical.as_ref()) else {
        return Err(Error::usage(format!(
            "backup {} is a logical backup: restore it without --physical",
            m.id
        )));
    };
    if spec.standby && spec.port.is_none() {
        return Err(Error::usage(
            "--standby needs --port P: the standby is left running",
        ));
    }
    // The key first: a missing or wrong one is refused before anything is run or written.
    let key = fetch::key_for(m, spec.key_file)?;
    check_empty(spec.data_dir)?;
    if let Some(port) = spec.port {
        port_free(port)?;
    }
    let major = p.server_major;
    let (bindir, env) = (spec.pg_bindir.map(Path::to_path_buf), spec.env.clone());
    let postgres = tokio::task::spawn_blocking(move || {
        crate::pgtools::find(
            "postgres",
            major,
            major,
            crate::pgtools::Search {
                bindir: bindir.as_deref(),
                env: &env,
            },
        )
    })
    .await
    .map_err(|e| Error::failed(format!("finding postgres: {e}")))??;
    tracing::info!(
        "{} {} found in {:.2} s",
        postgres.path.display(),
        postgres.version,
        started.elapsed().as_secs_f64()
    );
    if postgres.major != major {
        return Err(Error::failed(format!(
            "backup {} is of PostgreSQL {major} ({}), and the postgres found is {} ({}): a \
             physical backup starts only on its own major; install the PostgreSQL {major} \
             server (Debian: apt install postgresql-{major}) or name its directory with \
             --pg-bindir",
            m.id,
            m.server_version,
            postgres.version,
            postgres.path.display()
        )));
    }
    let bindir = postgres
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let parent = parent_of(spec.data_dir)?;
    let run_as = run_as_postgres()?;
    // What a killed restore left beside DIR (its private folders, the WAL read ahead in them).
    for stale in remove_stale_private(&parent, std::time::SystemTime::now()) {
        tracing::info!(path = %stale.display(), "removed what an interrupted restore left");
    }
    // The recovery's private folder: its socket, pg_hba, log and the WAL read ahead; held by
    // an flock while this restore lives.
    let private = tempfile::Builder::new()
        .prefix(PRIVATE_PREFIX)
        .tempdir_in(&parent)?;
    let private_held = std::fs::File::open(private.path())?;
    fetch::try_lock(&private_held)?;
    let cache = private.path().join("wal");
    let command = restore_command(
        &spec.fetch_command,
        &p.stop_segment,
        (!spec.standby).then_some(cache.as_path()),
    );
    let phase = Instant::now();
    probe(&command, &p.stop_segment, &parent, run_as, &spec.server_env).await?;

    let ArchiveState {
        end: archive_end,
        warnings,
        after_start,
        until: stored_until,
        hole,
    } = archive_state(spec.listing, m, p);
    // A time after the archive's end is refused before anything is written: PostgreSQL 13 and
    // later would refuse it only after the unpack and the whole replay, and 12 would end
    // recovery at the end of the archive and promote, a shorter recovery than asked for. So is
    // a time after a hole in the chain, which recovery cannot pass. (A second of slack: S3
    // lists modification times to the second.)
    if let (RecoveryTarget::Time(t), false) = (spec.to, spec.standby) {
        if t > stored_until + chrono::Duration::seconds(1) {
            let end = match &hole {
                Some(h) => format!(
                    "WAL segment {h} is missing from the archive, and recovery cannot pass it: \
                     the WAL before it was stored at {}",
                    stored_until.to_rfc3339()
                ),
                None => format!("its newest WAL was stored at {}", stored_until.to_rfc3339()),
            };
            return Err(Error::usage(format!(
                "the recovery target {} is after the end of the archive: {end} (backup {} \
                 recovers from {}), and nothing after that can be recovered; give a time up to \
                 then, or --to-latest",
                t.to_rfc3339(),
                m.id,
                m.completed.to_rfc3339()
            )));
        }
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }
    tracing::info!(
        "restore_command and archive checked in {:.2} s",
        phase.elapsed().as_secs_f64()
    );

    // 2. Read once: hashed while it is unpacked into a hidden folder of DIR, moved into place
    // only when the SHA-256 matches.
    let phase = Instant::now();
    unpack(spec.storage, m, key, spec.data_dir).await?;
    tracing::info!(
        "backup {} checked and unpacked into {} in {:.2} s",
        m.id,
        spec.data_dir.display(),
        phase.elapsed().as_secs_f64()
    );

    // 3. Recovery settings. Any exit of kasm-db but 0 (fetched) and 1 (not in the archive,
    // normally) becomes 126, which PostgreSQL takes as fatal: a kasm-db that cannot run, parse
    // its arguments or load its configuration stops recovery instead of ending it early.
    let mut conf = format!(
        "\n# kasm-db restore --physical of backup {}\nrestore_command = {}\n",
        m.id,
        conf_quote(&command)
    );
    if !spec.standby {
        if let RecoveryTarget::Time(t) = spec.to {
            conf.push_str(&format!(
                "recovery_target_time = {}\n",
                conf_quote(&t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string())
            ));
        }
        conf.push_str("recovery_target_action = 'promote'\n");
    }
    let auto_conf = spec.data_dir.join("postgresql.auto.conf");
    // As the backup had it: put back once recovery is over (a standby keeps the settings).
    let own_auto_conf = match std::fs::read(&auto_conf) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(Error::failed(format!(
                "cannot read {}: {e}",
                auto_conf.display()
            )));
        }
    };
    append(&auto_conf, &conf)?;
    let signal = if spec.standby {
        "standby.signal"
    } else {
        "recovery.signal"
    };
    std::fs::write(spec.data_dir.join(signal), "")?;
    // Files of the source that must not come along.
    for stale in ["postmaster.pid", "postmaster.opts"] {
        let _ = std::fs::remove_file(spec.data_dir.join(stale));
    }
    if let Some((uid, gid)) = run_as {
        chown_tree(spec.data_dir, uid, gid)?;
    }

    if spec.standby {
        let port = spec.port.expect("checked above");
        let mut server = start_final(&bindir, spec.data_dir, port, run_as, &spec.server_env)?;
        wait_ready(&bindir, spec.data_dir, port, &mut server).await?;
        return Ok(PhysicalRestored {
            backup: m.id.clone(),
            data_dir: spec.data_dir.display().to_string(),
            recovered_to: None,
            duration_s: started.elapsed().as_secs_f64(),
            running_on: Some(port),
            standby: true,
            archive_end,
            warnings,
        });
    }

    // 4. Recover, watched, with the WAL read ahead: on the port asked for when the cluster's
    // own rules can be carried over (it answers read-only queries while it replays), else on
    // a private loopback port.
    std::fs::create_dir_all(&cache)?;
    // The port and the cluster's rules when it recovers on `--port`; `None`: privately.
    let on_port = match spec.port {
        Some(port) => early_rules(&bindir, spec.data_dir, run_as, port)
            .await?
            .map(|own| (port, own)),
        None => None,
    };
    let hba = private.path().join("pg_hba.conf");
    std::fs::write(
        &hba,
        recovery_hba(on_port.as_ref().map(|(_, own)| own.as_str())),
    )?;
    let log_path = private.path().join("server.log");
    let log = std::fs::File::create(&log_path)?;
    if let Some((uid, gid)) = run_as {
        chown_tree(private.path(), uid, gid)?;
    }
    let (port, sockets) = match &on_port {
        Some((port, _)) => (
            *port,
            format!(
                "\"{}\",\"{}\"",
                private.path().display(),
                spec.data_dir.display()
            ),
        ),
        None => (free_port()?, private.path().display().to_string()),
    };
    let mut cmd = command_as(&bindir.join("postgres"), run_as);
    cmd.arg("-D")
        .arg(spec.data_dir)
        .args(["-p", &port.to_string()]);
    if on_port.is_none() {
        cmd.args(["-c", "listen_addresses=127.0.0.1"]);
    }
    cmd.arg("-c")
        .arg(format!("unix_socket_directories={sockets}"))
        .arg("-c")
        .arg(format!("hba_file={}", hba.display()))
        .args(["-c", "archive_mode=off", "-c", "logging_collector=off"])
        .args(["-c", "primary_conninfo=", "-c", "hot_standby=on"]);
    if major >= 14 {
        // The unpack synced the files (syncfs, checked): one syncfs more instead of an fsync
        // of every file of the cluster before recovery starts (0.2 s for 1.1 GB).
        cmd.args(["-c", "recovery_init_sync_method=syncfs"]);
    }
    cmd.env_clear()
        .envs(spec.server_env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl in the forked child before exec is async-signal-safe. The recovering
        // server stops (SIGQUIT) when kasm-db is killed: it is never left half-recovered and
        // running with the recovery's pg_hba.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT);
                Ok(())
            });
        }
    }
    let phase = Instant::now();
    let mut server = cmd
        .spawn()
        .map_err(|e| Error::failed(format!("cannot start {}: {e}", postgres.path.display())))?;
    let watched = {
        let watching = watch(
            &mut server,
            private.path(),
            port,
            &p.superuser,
            &log_path,
            on_port.is_some().then_some(phase),
        );
        let reading = fetch_wal::prefetch(
            spec.storage,
            &after_start,
            &cache,
            READ_AHEAD,
            run_as,
            spec.key_file,
        );
        tokio::pin!(watching, reading);
        let mut read_all = false;
        loop {
            tokio::select! {
                w = &mut watching => break w,
                () = &mut reading, if !read_all => read_all = true,
            }
        }
    };
    let recovered_to = match watched {
        Ok(t) => t,
        Err(e) => {
            stop(&mut server).await;
            return Err(e);
        }
    };
    tracing::info!(
        "recovered and promoted in {:.2} s",
        phase.elapsed().as_secs_f64()
    );
    // 5. A clean shutdown (fast: a shutdown checkpoint, no crash recovery at the next start).
    let phase = Instant::now();
    stop(&mut server).await;
    tracing::info!(
        "recovery server shut down in {:.2} s",
        phase.elapsed().as_secs_f64()
    );
    // The promoted cluster starts as the primary it now is: without the recovery's settings,
    // which would name this restore's archive and target the next time anyone asked it to
    // recover. Written in place, so the file keeps its owner and mode.
    match &own_auto_conf {
        Some(bytes) => std::fs::write(&auto_conf, bytes)?,
        None => std::fs::remove_file(&auto_conf)?,
    }
    // The recovery's server log stays beside the data, for the record.
    let kept_log = spec.data_dir.join("kasm-db-recovery.log");
    if std::fs::copy(&log_path, &kept_log).is_ok() {
        if let Some((uid, gid)) = run_as {
            let _ = std::os::unix::fs::chown(&kept_log, Some(uid), Some(gid));
        }
    }
    let mut running_on = None;
    if let Some(port) = spec.port {
        let phase = Instant::now();
        // Promoted, it never runs the restore_command again: it gets the loader's environment
        // only, not the storage credentials (a superuser could read its environment).
        let own_env: Vec<(String, String)> =
            crate::pgtools::child_env(spec.env).into_iter().collect();
        let mut s = start_final(&bindir, spec.data_dir, port, run_as, &own_env)?;
        wait_ready(&bindir, spec.data_dir, port, &mut s).await?;
        tracing::info!(
            "started on port {port} in {:.2} s",
            phase.elapsed().as_secs_f64()
        );
        running_on = Some(port);
    }
    Ok(PhysicalRestored {
        backup: m.id.clone(),
        data_dir: spec.data_dir.display().to_string(),
        recovered_to,
        duration_s: started.elapsed().as_secs_f64(),
        running_on,
        standby: false,
        archive_end,
        warnings,
    })
}

/// What the archive holds after the backup, before recovery starts: its newest segment on the
/// backup's timeline, warnings for an archive with nothing after the backup (recovery then
/// ends where the backup does) or with holes (recovery stops at the first one it needs), the
/// completed segments after the backup's start, and the latest time it can recover to
/// ([`crate::archive::wal::Archived::reaches`]: when the newest WAL was stored, or the WAL
/// before the first hole; the backup's completion when it holds nothing later) with that hole.
fn archive_state(
    objects: &[crate::archive::storage::ObjectInfo],
    m: &Manifest,
    p: &crate::archive::manifest::Physical,
) -> ArchiveState {
    use crate::archive::wal::{Archived, Lsn};
    let archived = Archived::new(objects.iter().map(|o| (o.name.as_str(), o.modified)));
    let (until, hole) = archived.reaches(
        p.timeline,
        &p.stop_segment,
        p.wal_segment_bytes,
        m.completed,
    );
    let stored = archived.chain(p.timeline);
    let end = stored.newest().map(str::to_string);
    // What recovery asks the archive for first: the segment the backup starts in.
    let first = Lsn::parse(&p.start_lsn)
        .map(|l| l.segment(p.timeline, p.wal_segment_bytes))
        .unwrap_or_else(|| p.stop_segment.clone());
    let after_start: Vec<String> = stored
        .full
        .iter()
        .filter(|s| s.as_str() >= first.as_str())
        .cloned()
        .collect();
    let mut warnings = Vec::new();
    match &end {
        Some(e) if e.as_str() > p.stop_segment.as_str() => {
            let holes = stored.holes_after(&p.stop_segment, p.wal_segment_bytes);
            if let Some(first) = holes.first() {
                warnings.push(format!(
                    "the WAL archive has a hole after this backup ({} segment(s), the first \
                     {first}): recovery cannot go past it, and stops there with an error \
                     unless its target is before it",
                    holes.len()
                ));
            }
        }
        _ => warnings.push(format!(
            "the WAL archive holds nothing after this backup (its last segment is {}): the \
             restore recovers only to the end of the base backup; is `kasm-db wal stream` \
             running?",
            p.stop_segment
        )),
    }
    ArchiveState {
        end,
        warnings,
        after_start,
        until,
        hole,
    }
}

/// What [`archive_state`] found.
struct ArchiveState {
    /// The newest segment of the backup's timeline.
    end: Option<String>,
    warnings: Vec<String>,
    /// The completed segments from the backup's start on.
    after_start: Vec<String>,
    /// The latest time the archive lets the backup be recovered to.
    until: DateTime<Utc>,
    /// The first segment missing from its chain, when one is.
    hole: Option<String>,
}

/// The restore_command: `fetch_command wal fetch %f %p --through SEGMENT [--cache DIR]`, its
/// exit status kept when 0 or 1 and made 126 otherwise.
pub fn restore_command(fetch_command: &[String], through: &str, cache: Option<&Path>) -> String {
    let mut words = fetch_command.to_vec();
    words.extend(["wal", "fetch", "%f", "%p", "--through", through].map(String::from));
    if let Some(cache) = cache {
        words.push("--cache".into());
        words.push(sh_quote(&cache.display().to_string()));
    }
    let pos = words
        .iter()
        .position(|w| w == "--from")
        .filter(|i| i + 1 < words.len());
    // `--from TARGET` belongs to `wal fetch`, after the subcommand.
    if let Some(i) = pos {
        let from: Vec<String> = words.drain(i..i + 2).collect();
        words.extend(from);
    }
    format!(
        "{}; rc=$?; if [ $rc -gt 1 ]; then exit 126; fi; exit $rc",
        words.join(" ")
    )
}

/// Run the restore_command once as the server will (same user, same environment) for the
/// backup's own last segment, before the server starts: it must fetch it or say that the
/// archive does not have it, nothing else.
async fn probe(
    command: &str,
    segment: &str,
    scratch: &Path,
    run_as: Option<(u32, u32)>,
    env: &[(String, String)],
) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix(PROBE_PREFIX)
        .tempdir_in(scratch)?;
    let held = std::fs::File::open(dir.path())?;
    fetch::try_lock(&held)?;
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
    }
    let dest = dir.path().join("probe");
    let line = command
        .replace("%f", segment)
        .replace("%p", &sh_quote(&dest.display().to_string()));
    let mut cmd = command_as(Path::new("/bin/sh"), run_as);
    cmd.arg("-c")
        .arg(&line)
        .env_clear()
        .envs(env.iter().cloned())
        .current_dir(dir.path())
        .stdin(Stdio::null());
    let out = tokio::process::Command::from(cmd)
        .output()
        .await
        .map_err(|e| Error::failed(format!("cannot run the restore_command: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ok = match out.status.code() {
        Some(0) => true,
        Some(1) => stdout.contains("kasm-db wal fetch:"),
        _ => false,
    };
    if !ok {
        return Err(Error::failed(format!(
            "the restore_command does not work as the server would run it ({}): {}; nothing \
             was written",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Whether recovery can run on `port` itself with the cluster's own rules for everyone but
/// the watch, answering read-only queries while it replays: the cluster's pg_hba rules, read
/// from `DIR/pg_hba.conf`, carried into the recovery's own pg_hba after a line that trusts
/// local connections (the sockets are in DIR and the private folder, both 0700 and the
/// `postgres` user's: only root and postgres reach them). `None` (recovery on a private port,
/// as without `--port`) when they cannot be carried over as they are: the cluster's
/// `hba_file` is elsewhere, the file includes others or names files with `@` (both read
/// relative to its own folder), or DIR is open to others.
async fn early_rules(
    bindir: &Path,
    data_dir: &Path,
    run_as: Option<(u32, u32)>,
    port: u16,
) -> Result<Option<String>> {
    use std::os::unix::fs::PermissionsExt;
    let private_only = |why: &str| {
        tracing::info!(
            "recovery runs on a private port, and the server answers on port {port} once \
             promoted: {why}"
        );
        Ok(None)
    };
    let own = data_dir.join("pg_hba.conf");
    if std::fs::metadata(data_dir)?.permissions().mode() & 0o077 != 0 {
        return private_only("the data directory is open to other users");
    }
    if data_dir.to_string_lossy().contains('"') {
        return private_only("the data directory's path has a double quote");
    }
    let mut cmd = command_as(&bindir.join("postgres"), run_as);
    cmd.arg("-D")
        .arg(data_dir)
        .args(["-C", "hba_file"])
        .env_clear()
        .stdin(Stdio::null());
    let out = tokio::process::Command::from(cmd)
        .output()
        .await
        .map_err(|e| Error::failed(format!("cannot run postgres -C hba_file: {e}")))?;
    let named = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || Path::new(&named) != own {
        return private_only("the cluster's pg_hba is not DIR/pg_hba.conf");
    }
    let rules = match std::fs::read_to_string(&own) {
        Ok(r) => r,
        Err(_) => return private_only("DIR/pg_hba.conf cannot be read"),
    };
    if refers_to_files(&rules) {
        return private_only("the cluster's pg_hba includes other files");
    }
    Ok(Some(rules))
}

/// The recovery's own pg_hba: local connections trusted (for the watch; only root and
/// postgres reach the sockets), then the cluster's own rules (`own`) for everything else when
/// it recovers on `--port`, or nothing else.
fn recovery_hba(own: Option<&str>) -> String {
    let trust = "local all all trust\n";
    match own {
        Some(own) => format!(
            "# kasm-db restore --physical: local connections trusted while it recovers (only \
             root and postgres reach the sockets); the cluster's own rules follow\n{trust}{own}"
        ),
        None => trust.to_string(),
    }
}

/// Whether pg_hba rules name other files (`include`, `include_if_exists`, `include_dir`, or
/// `@file` lists), which PostgreSQL reads relative to the rules' own folder: moved elsewhere,
/// they would name other files, or none.
fn refers_to_files(rules: &str) -> bool {
    rules.lines().any(|l| {
        let l = l.split('#').next().unwrap_or("").trim_start();
        l.starts_with("include") || l.contains('@')
    })
}

/// Wait until the server has been promoted; the last replayed commit then. Fails with the
/// reason from the log when the server stops instead.
async fn watch(
    server: &mut std::process::Child,
    socket_dir: &Path,
    port: u16,
    superuser: &str,
    log: &Path,
    mut answering_since: Option<Instant>,
) -> Result<Option<DateTime<Utc>>> {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(socket_dir)
        .port(port)
        .user(superuser)
        .dbname("template1")
        .application_name("kasm-db restore --physical")
        .connect_timeout(Duration::from_secs(5));
    let mut last_note = Instant::now();
    // One connection kept while it works (a new one for every look would cost a backend start).
    let mut client: Option<tokio_postgres::Client> = None;
    loop {
        if let Some(status) = server.try_wait()? {
            return Err(Error::failed(format!(
                "recovery failed: the server stopped ({status}): {}",
                reason(log)
            )));
        }
        if client.is_none() {
            if let Ok((c, conn)) = config.connect(tokio_postgres::NoTls).await {
                tokio::spawn(conn);
                client = Some(c);
            }
        }
        if let Some(c) = &client {
            match c
                .query_one(
                    "SELECT pg_is_in_recovery(), pg_last_xact_replay_timestamp()",
                    &[],
                )
                .await
            {
                Ok(row) => {
                    let in_recovery: bool = row.get(0);
                    if let (true, Some(since)) = (in_recovery, answering_since.take()) {
                        tracing::info!(
                            "answers read-only queries on port {port} while it replays WAL, \
                             {:.2} s after its start",
                            since.elapsed().as_secs_f64()
                        );
                    }
                    if !in_recovery {
                        let t: Option<DateTime<Utc>> = row.get(1);
                        return Ok(t);
                    }
                }
                Err(_) => client = None,
            }
        }
        if last_note.elapsed() > Duration::from_secs(30) {
            tracing::info!("recovery is still replaying WAL");
            last_note = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Why the server stopped, from its log: what `wal fetch` said (it names the segment), else
/// the server's last FATAL or PANIC lines.
pub fn reason_in(log: &str) -> String {
    let ours: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("kasm-db: error:"))
        .collect();
    if let Some(l) = ours.last() {
        return l.trim_start_matches("kasm-db: error: ").to_string();
    }
    let fatal: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("FATAL:") || l.contains("PANIC:"))
        .collect();
    let tail = &fatal[fatal.len().saturating_sub(2)..];
    if tail.is_empty() {
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(3)..].join(" / ")
    } else {
        tail.join(" / ")
    }
}

fn reason(log: &Path) -> String {
    reason_in(&std::fs::read_to_string(log).unwrap_or_default())
}

async fn stop(server: &mut std::process::Child) {
    // SAFETY: signals to our own child, not yet reaped.
    unsafe {
        libc::kill(server.id() as i32, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if server.try_wait().ok().flatten().is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = server.kill();
    let _ = server.wait();
}

/// Start the server on `port` with the cluster's own configuration, detached (its own session,
/// its output in `DIR/kasm-db-server.log`), to be left running.
fn start_final(
    bindir: &Path,
    data_dir: &Path,
    port: u16,
    run_as: Option<(u32, u32)>,
    env: &[(String, String)],
) -> Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let log_path = data_dir.join("kasm-db-server.log");
    let log = std::fs::File::create(&log_path)?;
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(&log_path, Some(uid), Some(gid))?;
    }
    let mut cmd = command_as(&bindir.join("postgres"), run_as);
    cmd.arg("-D")
        .arg(data_dir)
        .args(["-p", &port.to_string()])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", data_dir.display()))
        .env_clear()
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid in the child before exec is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| Error::failed(format!("cannot start postgres: {e}")))
}

/// Wait until the server on `port` accepts connections (`pg_isready` on its socket in DIR).
async fn wait_ready(
    bindir: &Path,
    data_dir: &Path,
    port: u16,
    server: &mut std::process::Child,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(status) = server.try_wait()? {
            return Err(Error::failed(format!(
                "the restored server stopped at start ({status}): {}",
                reason(&data_dir.join("kasm-db-server.log"))
            )));
        }
        let ready = tokio::process::Command::new(bindir.join("pg_isready"))
            .args(["-q", "-h"])
            .arg(data_dir)
            .args(["-p", &port.to_string()])
            .stdin(Stdio::null())
            .status()
            .await
            .map(|s| s.success())
            .unwrap_or(false);
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::failed(format!(
                "the restored server on port {port} did not accept connections within 300 s; \
                 see {}",
                data_dir.join("kasm-db-server.log").display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Segments the read-ahead keeps fetched and checked before the server asks for them (16 MiB
/// each by default).
const READ_AHEAD: usize = 8;

/// The hidden folder of DIR a restore unpacks into; it holds an `flock` on it while it lives.
const UNPACK_PREFIX: &str = ".kasm-db-unpack-";

/// The private folders a restore makes beside DIR, each held by an `flock` while it lives.
const PRIVATE_PREFIX: &str = ".kasm-db-recovery-";
const PROBE_PREFIX: &str = ".kasm-db-probe-";

/// Remove the private folders killed restores left in `parent` (the socket, the log and up to
/// [`READ_AHEAD`] segments of WAL read ahead, decrypted): named as a restore names them, held
/// by no running restore and unmodified for [`fetch::STALE_AFTER`] before `now`. Best effort;
/// returns what was removed.
fn remove_stale_private(parent: &Path, now: std::time::SystemTime) -> Vec<PathBuf> {
    fetch::remove_unheld(
        parent,
        now,
        |name| name.starts_with(PRIVATE_PREFIX) || name.starts_with(PROBE_PREFIX),
        |meta| meta.is_dir(),
    )
}

/// DIR must be absent or empty. A hidden unpack folder a killed restore left there (no restore
/// holds its lock) is removed; one a running restore holds is refused.
fn check_empty(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::failed(format!("cannot read {}: {e}", dir.display()))),
    };
    let mut left = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        // A fresh ext4 volume mounted as DIR has an empty lost+found: left as it is.
        if name == "lost+found"
            && is_dir
            && std::fs::read_dir(entry.path()).is_ok_and(|mut d| d.next().is_none())
        {
            continue;
        }
        let is_ours = name.to_string_lossy().starts_with(UNPACK_PREFIX) && is_dir;
        if !is_ours {
            return Err(Error::usage(format!(
                "--data-dir {} is not empty: a physical restore writes only into an empty \
                 or absent directory",
                dir.display()
            )));
        }
        left.push(entry.path());
    }
    for stale in left {
        let held = !fetch::try_lock(&std::fs::File::open(&stale)?)?;
        if held {
            return Err(Error::usage(format!(
                "--data-dir {}: another restore is unpacking into it ({})",
                dir.display(),
                stale.display()
            )));
        }
        tracing::info!(path = %stale.display(), "removed what an interrupted restore left unpacked");
        std::fs::remove_dir_all(&stale)?;
    }
    Ok(())
}

/// Step 2: the backup's object read once, hashed while it is decrypted, decompressed and
/// unpacked ([`super::untar`]) into a hidden folder of DIR (held by an `flock`), whose
/// entries are moved up into DIR only when size and SHA-256 match the manifest. On any
/// failure the folder (and DIR, when this created it) is removed: DIR is left as it was.
async fn unpack(
    storage: &dyn Storage,
    m: &Manifest,
    key: Option<crate::archive::crypt::Key>,
    data_dir: &Path,
) -> Result<()> {
    let created = !data_dir.exists();
    std::fs::create_dir_all(data_dir)?;
    // One restore at a time in DIR, from here until its entries are in place: two restores
    // that both found it empty would otherwise mix their files there, and the one that failed
    // would remove DIR with the other's data in it.
    let held = std::fs::File::open(data_dir)?;
    if !fetch::try_lock(&held)? {
        return Err(Error::usage(format!(
            "--data-dir {}: another restore is unpacking into it",
            data_dir.display()
        )));
    }
    // Checked again under the lock: another restore may have filled it since.
    check_empty(data_dir)?;
    set_mode(data_dir, 0o700)?;
    let unpacked = unpack_into(storage, m, key, data_dir).await;
    if unpacked.is_err() && created {
        let _ = std::fs::remove_dir_all(data_dir);
    }
    unpacked
}

async fn unpack_into(
    storage: &dyn Storage,
    m: &Manifest,
    key: Option<crate::archive::crypt::Key>,
    data_dir: &Path,
) -> Result<()> {
    fetch::check_space(data_dir, m.dump_bytes, fetch::free_bytes(data_dir)?)?;
    let staging = tempfile::Builder::new()
        .prefix(UNPACK_PREFIX)
        .tempdir_in(data_dir)?;
    let lock = std::fs::File::open(staging.path())?;
    if !fetch::try_lock(&lock)? {
        return Err(Error::failed(format!(
            "the new folder {} is locked by another process",
            staging.path().display()
        )));
    }
    let (sink, unpacking) = super::untar::start(staging.path())?;
    let writeback = Writeback::start(staging.path())?;
    let streamed = fetch::stream_into(storage, m, key, sink, "tar", |_| {}).await;
    let refused = unpacking.refused();
    let unpacked = tokio::task::spawn_blocking(move || unpacking.finish())
        .await
        .map_err(|e| Error::failed(format!("unpacking: {e}")))?;
    drop(writeback);
    let unpack_failed = unpacked
        .map_err(|why| format!("backup {}: {why}", m.id))
        .err();
    match (streamed, unpack_failed) {
        // A corrupt object says so first; an unpack that stopped taking bytes tells its own
        // story. Anything else (a missing object, a storage read that failed midway) is the
        // stream's, whatever the unpack then made of the input cut short.
        (Err(e), Some(why)) if refused && !e.to_string().contains("is corrupt") => {
            return Err(Error::failed(why));
        }
        (Err(e), _) => return Err(e),
        (Ok(_), Some(why)) => return Err(Error::failed(why)),
        (Ok(_), None) => {}
    }
    // On disk before it is in place: what the server finds in DIR is durable, and its own
    // sync of the data directory at start has nothing left to write.
    syncfs(&lock).map_err(|e| {
        Error::failed(format!(
            "writing backup {} to disk under {}: {e}",
            m.id,
            data_dir.display()
        ))
    })?;
    for entry in std::fs::read_dir(staging.path())? {
        let entry = entry?;
        std::fs::rename(entry.path(), data_dir.join(entry.file_name()))?;
    }
    std::fs::File::open(data_dir)?.sync_all()?;
    drop(lock);
    staging.close()?;
    Ok(())
}

/// Writes what tar unpacks back to disk while tar still writes (`syncfs` of the folder's file
/// system every [`WRITEBACK_EVERY`]), so the disk works beside the decompression instead of
/// after it. A server started on a restored base backup syncs its whole data directory before
/// recovery begins: with 1.1 GB left dirty that took 0.9 s (bench/pitr.sh), time a failover
/// waited with the disk otherwise idle during the unpack. Stops when dropped.
struct Writeback {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

const WRITEBACK_EVERY: Duration = Duration::from_millis(250);

impl Writeback {
    fn start(dir: &Path) -> Result<Writeback> {
        let folder = std::fs::File::open(dir)?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(WRITEBACK_EVERY);
                // Best effort: the last sync, after tar, is the one that is checked.
                let _ = syncfs(&folder);
            }
        });
        Ok(Writeback { stop })
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// `syncfs(2)` of the file system `file` is on: everything written there is on disk when it
/// returns (and a write-back error since the file was opened is reported).
fn syncfs(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: syncfs on a file descriptor we own and keep open for the call.
    if unsafe { libc::syncfs(file.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn parent_of(dir: &Path) -> Result<PathBuf> {
    if !dir.is_absolute() {
        return Err(Error::usage(format!(
            "--data-dir {} must be an absolute path",
            dir.display()
        )));
    }
    let parent = dir.parent().unwrap_or(Path::new("/")).to_path_buf();
    std::fs::create_dir_all(&parent)?;
    Ok(parent)
}

/// A value as `postgresql.conf` quotes it.
pub fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A word as `sh` reads it back unchanged (single quotes unless plainly safe).
pub fn sh_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:=@%+,".contains(&b))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if path.is_dir() && !path.is_symlink() {
        for e in std::fs::read_dir(path)? {
            chown_tree(&e?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Refuse a `--port` another process listens on (on loopback), before anything is written:
/// the server would fail to start there only after the unpack.
fn port_free(port: u16) -> Result<()> {
    match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(Error::failed(format!(
            "--port {port} is in use by another process (a server still running?); nothing \
             was written"
        ))),
        // Anything else (no loopback address here) is the server's to find out.
        Err(_) => Ok(()),
    }
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// uid and gid of `postgres` when running as root (PostgreSQL refuses to run as root).
fn run_as_postgres() -> Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = std::ffi::CString::new("postgres").expect("static name");
    // SAFETY: getpwnam returns static storage or null; read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(Error::failed(
            "running as root, and there is no `postgres` user to give the data directory to \
             and run the server as",
        ));
    }
    // SAFETY: pw is non-null and points at a valid passwd record.
    Ok(Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) }))
}

fn command_as(program: &Path, run_as: Option<(u32, u32)>) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let mut c = std::process::Command::new(program);
    if let Some((uid, gid)) = run_as {
        c.uid(uid).gid(gid);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restore_command_puts_from_after_the_subcommand_and_makes_failures_fatal() {
        let c = restore_command(
            &[
                "/usr/bin/kasm-db".into(),
                "--from".into(),
                "s3://b/p".into(),
            ],
            "000000010000000000000002",
            None,
        );
        assert_eq!(
            c,
            "/usr/bin/kasm-db wal fetch %f %p --through 000000010000000000000002 --from s3://b/p; \
             rc=$?; if [ $rc -gt 1 ]; then exit 126; fi; exit $rc"
        );
        let c = restore_command(
            &["/usr/bin/kasm-db".into()],
            "000000010000000000000002",
            Some(Path::new("/var/tmp/a b/wal")),
        );
        assert!(
            c.starts_with(
                "/usr/bin/kasm-db wal fetch %f %p --through 000000010000000000000002 \
                 --cache '/var/tmp/a b/wal'; "
            ),
            "{c}"
        );
    }

    /// A base backup whose object is not in the archive is reported as that, not as what tar
    /// made of the empty input; DIR (made by the restore) is gone again.
    #[tokio::test]
    async fn a_missing_object_is_not_told_as_a_tar_failure() {
        use crate::archive::storage::fs::FsStorage;
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::new(dir.path().join("target"), crate::private::FileMode::PRIVATE);
        std::fs::create_dir_all(dir.path().join("target")).unwrap();
        let m: Manifest = serde_json::from_str(
            r#"{"format":1,"id":"20261207T100000Z-abcdef","created":"2026-12-07T10:00:00Z",
            "completed":"2026-12-07T10:00:01Z","database":"d","dbname":"d",
            "server_version":"15","pg_dump_version":"pg_basebackup 15",
            "object":"20261207T100000Z-abcdef/base.tar.gz","location":"/x","size_bytes":1,
            "sha256":"00","dump_bytes":1,"format_of_dump":"tar",
            "compression":{"kind":"gzip","level":6,"block_bytes":1},"encryption":null,
            "server_side_encryption":null,"exclude_logs":false,"tables":[],
            "timings":{"count_s":0,"dump_s":0,"total_s":0},"restore":"r","kind":"physical",
            "physical":{"start_lsn":"0/2000028","stop_lsn":"0/2000100","timeline":1,
            "wal_segment_bytes":16777216,"stop_segment":"000000010000000000000002",
            "superuser":"postgres","server_major":15}}"#,
        )
        .unwrap();
        let data_dir = dir.path().join("restored");
        let e = unpack(&s, &m, None, &data_dir).await.unwrap_err();
        assert!(e.to_string().contains("is missing"), "{e}");
        assert!(!e.to_string().contains("failed: tar"), "{e}");
        assert!(!data_dir.exists());
        // DIR another restore is unpacking into (it holds DIR's lock), or one it has filled
        // since this restore found it empty: refused, and left as it is.
        std::fs::create_dir_all(&data_dir).unwrap();
        let other = std::fs::File::open(&data_dir).unwrap();
        assert!(fetch::try_lock(&other).unwrap());
        let e = unpack(&s, &m, None, &data_dir).await.unwrap_err();
        assert!(e.to_string().contains("another restore"), "{e}");
        assert!(data_dir.exists());
        drop(other);
        std::fs::write(data_dir.join("PG_VERSION"), "15\n").unwrap();
        let e = unpack(&s, &m, None, &data_dir).await.unwrap_err();
        assert!(e.to_string().contains("not empty"), "{e}");
        assert_eq!(
            std::fs::read_to_string(data_dir.join("PG_VERSION")).unwrap(),
            "15\n"
        );
    }

    #[test]
    fn only_stale_private_folders_no_restore_holds_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let now = std::time::SystemTime::now();
        let hour_ago = now - Duration::from_secs(3600);
        let make = |name: &str, modified: std::time::SystemTime| {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.join("wal")).unwrap();
            std::fs::write(p.join("wal/000000010000000000000003"), "x").unwrap();
            std::fs::File::open(&p)
                .unwrap()
                .set_modified(modified)
                .unwrap();
            p
        };
        let stale = make(".kasm-db-recovery-aaaaaa", hour_ago);
        let probe = make(".kasm-db-probe-bbbbbb", hour_ago);
        let fresh = make(".kasm-db-recovery-cccccc", now);
        let held = make(".kasm-db-recovery-dddddd", hour_ago);
        let other = make("restored", hour_ago);
        let holder = std::fs::File::open(&held).unwrap();
        assert!(fetch::try_lock(&holder).unwrap());
        let mut got = remove_stale_private(dir.path(), now);
        got.sort();
        assert_eq!(got, vec![probe.clone(), stale.clone()]);
        assert!(!stale.exists() && !probe.exists());
        assert!(fresh.exists() && held.exists() && other.exists());
        drop(holder);
        assert_eq!(remove_stale_private(dir.path(), now), vec![held.clone()]);
    }

    #[test]
    fn an_empty_lost_and_found_of_a_mount_point_does_not_make_dir_busy() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("lost+found")).unwrap();
        check_empty(dir.path()).unwrap();
        std::fs::write(dir.path().join("lost+found/#1234"), b"x").unwrap();
        let e = check_empty(dir.path()).unwrap_err();
        assert!(e.to_string().contains("not empty"), "{e}");
        std::fs::remove_file(dir.path().join("lost+found/#1234")).unwrap();
        std::fs::write(dir.path().join("PG_VERSION"), b"16").unwrap();
        assert!(check_empty(dir.path()).is_err());
    }

    #[test]
    fn quoting_survives_the_shell_and_the_config_file() {
        assert_eq!(sh_quote("/usr/bin/kasm-db"), "/usr/bin/kasm-db");
        assert_eq!(sh_quote("%f"), "%f");
        assert_eq!(sh_quote("/a b/it's"), r"'/a b/it'\''s'");
        assert_eq!(conf_quote("a 'b'"), "'a ''b'''");
    }

    #[test]
    fn a_port_in_use_is_refused_before_anything_is_written() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let e = port_free(port).unwrap_err();
        assert!(
            e.to_string().contains(&format!("--port {port} is in use")),
            "{e}"
        );
        drop(held);
        assert!(port_free(port).is_ok());
    }

    #[test]
    fn rules_that_name_other_files_are_not_carried_over() {
        let plain = "# comment @ and include here\nlocal all all trust\n\
                     host all all 127.0.0.1/32 scram-sha-256 # @x\n";
        assert!(!refers_to_files(plain));
        for named in [
            "include other.conf\n",
            "  include_if_exists /etc/x.conf\n",
            "include_dir conf.d\n",
            "host all @admins 10.0.0.0/8 scram-sha-256\n",
            "host @dbs all 10.0.0.0/8 scram-sha-256\n",
        ] {
            assert!(refers_to_files(&format!("{plain}{named}")), "{named}");
        }
    }

    #[test]
    fn the_reason_names_the_segment_when_wal_fetch_refused() {
        let log = "LOG:  starting archive recovery\n\
                   kasm-db: error: WAL segment 000000010000000000000005 is missing in the archive\n\
                   FATAL:  could not restore file \"000000010000000000000005\" from archive\n";
        assert!(reason_in(log).starts_with("WAL segment 000000010000000000000005"));
        assert_eq!(
            reason_in(
                "LOG: x\nFATAL:  recovery ended before configured recovery target was reached\n"
            ),
            "FATAL:  recovery ended before configured recovery target was reached"
        );
    }
}
