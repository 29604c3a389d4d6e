//! Throwaway PostgreSQL clusters on loopback, for `demo` and the tests: `initdb` into a temp
//! directory, start on a free port, hand out fresh databases, stop and delete on drop.
//!
//! Starts the server binaries [`crate::pgtools::server_bindir`] finds for the environment
//! snapshot it is given ([`Cluster::start`]), or those of a given directory
//! ([`Cluster::start_from`]: another major's build). Never reads the process environment: the
//! caller passes its snapshot (`demo` the one `main.rs` made, the tests their own).
//! When running as root it runs the server as the `postgres` user (PostgreSQL refuses root).
//! The postmaster gets SIGQUIT if the thread that started it dies (PR_SET_PDEATHSIG), so a
//! killed test binary leaves no server behind; clusters are started from one long-lived thread
//! for that reason. Never touches a server it did not start.

use crate::config::Secret;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running throwaway cluster. Dropping it stops the server and removes its directory.
pub struct Cluster {
    pub port: u16,
    pub bindir: PathBuf,
    /// Superuser name and password for TCP connections.
    pub user: String,
    pub password: Secret,
    dir: Option<tempfile::TempDir>,
    pid: u32,
    run_as: Option<(u32, u32)>,
    /// Kept so that the child is reaped by whoever owns the cluster.
    child: Option<Child>,
    /// Killed by [`Cluster::crash`] and reaped: its pid must not be signalled again.
    crashed: bool,
}

/// uid/gid of `postgres` when we are root (the server refuses to run as root).
fn run_as_user() -> Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = std::ffi::CString::new("postgres").expect("static name");
    // SAFETY: getpwnam returns a pointer to static storage or null; read immediately.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(Error::failed(
            "running as root but there is no `postgres` user to run the server as",
        ));
    }
    // SAFETY: pw is non-null and points at a valid passwd record.
    Ok(Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) }))
}

fn command_as(program: &Path, run_as: Option<(u32, u32)>) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(program);
    if let Some((uid, gid)) = run_as {
        c.uid(uid).gid(gid);
        c.env("HOME", "/tmp");
    }
    c.env_remove("PGHOST")
        .env_remove("PGPORT")
        .env_remove("PGDATA");
    c
}

const DIR_PREFIX: &str = "kasm-db-pg-";

/// Remove directories of our own earlier clusters whose process was killed before it could
/// clean up (SIGKILL skips every exit hook; PR_SET_PDEATHSIG stopped their server): a
/// `kasm-db-pg-*` directory older than ten minutes with no live postmaster.
fn reap_stale(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let ours = e
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(DIR_PREFIX));
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(600));
        if !ours || !old {
            continue;
        }
        let live = std::fs::read_to_string(path.join("data/postmaster.pid"))
            .ok()
            .and_then(|pid| {
                pid.lines()
                    .next()
                    .and_then(|l| l.trim().parse::<u32>().ok())
            })
            .is_some_and(alive);
        if !live {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl Cluster {
    /// initdb and start a new cluster on a free loopback port, with the server binaries found
    /// for the environment snapshot `env` (its PATH and TMPDIR). Blocks until it accepts
    /// connections.
    pub fn start(env: &BTreeMap<String, String>) -> Result<Cluster> {
        Self::start_from(&crate::pgtools::server_bindir(env)?, &[], env)
    }

    /// Like [`Cluster::start`] with the server binaries (initdb, postgres, pg_isready,
    /// psql) of `bindir`, e.g. another major version than the one installed system-wide, and
    /// extra `postgresql.conf` settings (`("wal_level", "replica")`). When root, the server runs
    /// as `postgres`, which must be able to read and run them.
    pub fn start_from(
        bindir: &Path,
        settings: &[(&str, &str)],
        env: &BTreeMap<String, String>,
    ) -> Result<Cluster> {
        let bindir = bindir.to_path_buf();
        let run_as = run_as_user()?;
        let tmp = crate::pgtools::temp_dir(env);
        reap_stale(&tmp);
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir_in(&tmp)?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data)?;
        let password = Secret::new(format!("pw-{}", uuid::Uuid::new_v4().simple()));
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, password.expose())?;
        if let Some((uid, gid)) = run_as {
            for p in [dir.path(), &data, &pwfile] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid))?;
            }
        }
        let out = command_as(&bindir.join("initdb"), run_as)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .arg("--locale=C")
            .arg(format!("--pwfile={}", pwfile.display()))
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(Error::failed(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        std::fs::remove_file(&pwfile)?;
        let mut conf = String::from(
            "listen_addresses = '127.0.0.1'\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             max_connections = 100\nshared_buffers = 128MB\nmax_wal_size = 2GB\nlog_min_messages = warning\n",
        );
        conf.push_str(&format!(
            "unix_socket_directories = '{}'\n",
            dir.path().display()
        ));
        for (k, v) in settings {
            conf.push_str(&format!("{k} = '{v}'\n"));
        }
        append(&data.join("postgresql.conf"), &conf)?;
        append(
            &data.join("pg_hba.conf"),
            "host replication all 127.0.0.1/32 scram-sha-256\n",
        )?;

        // Bind races with other processes are possible; try a few ports.
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            match spawn_postmaster(&bindir, &data, port, run_as, dir.path()) {
                Ok((pid, child)) => {
                    let cluster = Cluster {
                        port,
                        bindir,
                        user: "postgres".into(),
                        password,
                        dir: Some(dir),
                        pid,
                        run_as,
                        child: Some(child),
                        crashed: false,
                    };
                    return Ok(cluster);
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(Error::failed(format!(
            "could not start a throwaway postgres: {last}"
        )))
    }

    /// A hot standby replica of `primary` (`pg_basebackup -R -c fast`: a spread checkpoint would
    /// make each replica wait minutes), started on a free port; it
    /// streams from the primary and answers read-only queries (`pg_is_in_recovery()` is true).
    pub fn replica_of(primary: &Cluster) -> Result<Cluster> {
        let run_as = primary.run_as;
        // Beside the primary's directory (the temporary directory its caller chose).
        let tmp = primary
            .dir()
            .parent()
            .unwrap_or(primary.dir())
            .to_path_buf();
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir_in(&tmp)?;
        let data = dir.path().join("data");
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        }
        let out = command_as(&primary.bindir.join("pg_basebackup"), run_as)
            .arg("-D")
            .arg(&data)
            .args(["-R", "-X", "stream", "--no-sync", "-c", "fast"])
            .args(["-h", "127.0.0.1", "-U"])
            .arg(&primary.user)
            .args(["-p", &primary.port.to_string()])
            .env("PGPASSWORD", primary.password.expose())
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(Error::failed(format!(
                "pg_basebackup failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        append(
            &data.join("postgresql.conf"),
            &format!(
                "unix_socket_directories = '{}'\nhot_standby = on\n",
                dir.path().display()
            ),
        )?;
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            match spawn_postmaster(&primary.bindir, &data, port, run_as, dir.path()) {
                Ok((pid, child)) => {
                    return Ok(Cluster {
                        port,
                        bindir: primary.bindir.clone(),
                        user: primary.user.clone(),
                        password: primary.password.clone(),
                        dir: Some(dir),
                        pid,
                        run_as,
                        child: Some(child),
                        crashed: false,
                    });
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(Error::failed(format!(
            "could not start the replica: {last}"
        )))
    }

    /// The cluster's directory (data under `data/`, the server log `server.log`).
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .expect("cluster dir present until drop")
            .path()
    }

    /// A postgres:// URL for `dbname` on this cluster, with the password.
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{dbname}",
            self.user,
            self.password.expose(),
            self.port
        )
    }

    /// Run SQL as the superuser through psql over the local socket. Returns stdout.
    pub fn psql(&self, dbname: &str, sql: &str) -> Result<String> {
        let out = Command::new(self.bindir.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.dir())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                dbname,
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(Error::failed(format!(
                "psql: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Create a new empty database with a unique name; return its name.
    pub fn fresh_db(&self, prefix: &str) -> Result<String> {
        let name = format!(
            "{prefix}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(name)
    }

    /// The data directory (`<dir>/data`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir().join("data")
    }

    /// Crash the server: SIGKILL to the postmaster (no shutdown checkpoint; its backends
    /// notice and exit), reaped. The data directory stays until the cluster is dropped.
    pub fn crash(&mut self) {
        if self.crashed {
            return;
        }
        self.signal(libc::SIGKILL);
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        self.crashed = true;
    }

    /// Stop the server (fast shutdown), waiting up to `wait`.
    pub fn stop(&mut self) -> Result<()> {
        if self.crashed {
            return Ok(());
        }
        self.signal(libc::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if child.try_wait().ok().flatten().is_some() {
                    self.child = None;
                    return Ok(());
                }
            } else if !alive(self.pid) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.signal(libc::SIGKILL);
        Ok(())
    }

    /// Start the server again after [`Cluster::stop`], on the same port and data.
    pub fn restart(&mut self) -> Result<()> {
        let data = self.dir().join("data");
        let (pid, child) =
            spawn_postmaster(&self.bindir, &data, self.port, self.run_as, self.dir())?;
        self.pid = pid;
        self.child = Some(child);
        self.crashed = false;
        Ok(())
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill on a pid we started; harmless if it already exited.
        unsafe {
            libc::kill(self.pid as i32, sig);
        }
    }
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks existence.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// Start `postgres` directly (not via pg_ctl, so that it is our child and dies with its parent
/// thread) from a dedicated thread that lives as long as the process, and wait until it accepts
/// connections.
fn spawn_postmaster(
    bindir: &Path,
    data: &Path,
    port: u16,
    run_as: Option<(u32, u32)>,
    dir: &Path,
) -> Result<(u32, Child)> {
    let log = std::fs::File::create(dir.join("server.log"))?;
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(dir.join("server.log"), Some(uid), Some(gid))?;
    }
    let mut cmd = command_as(&bindir.join("postgres"), run_as);
    cmd.arg("-D")
        .arg(data)
        .args(["-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let child = spawn_from_keeper(cmd)?;
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut child = child;
    loop {
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            return Err(Error::failed(format!(
                "postgres exited at start ({status}): {}",
                log.trim()
            )));
        }
        let ready = Command::new(bindir.join("pg_isready"))
            .args(["-q", "-h"])
            .arg(dir)
            .args(["-p", &port.to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ready {
            return Ok((pid, child));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(Error::failed("postgres did not become ready within 60 s"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Spawn `cmd` from the keeper thread so that PR_SET_PDEATHSIG fires only when the process
/// dies, not when some short-lived (test) thread ends.
fn spawn_from_keeper(mut cmd: Command) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    use std::sync::{Mutex, OnceLock};
    type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);
    static KEEPER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    // SAFETY: prctl in the forked child before exec is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT);
            Ok(())
        });
    }
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("pgtemp-keeper".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawn keeper thread");
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    keeper
        .lock()
        .expect("keeper lock")
        .send((cmd, tx))
        .map_err(|_| Error::failed("pgtemp keeper thread gone"))?;
    rx.recv()
        .map_err(|_| Error::failed("pgtemp keeper thread gone"))?
        .map_err(Error::from)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop();
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}
