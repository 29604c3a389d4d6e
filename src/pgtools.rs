//! Finding the PostgreSQL programs kasm-db runs, the one place that does: the client tools
//! (`pg_dump`, `pg_restore`) for a server of a given major version and the environment they run
//! with, and the server binaries (`initdb`, `postgres`, `pg_ctl`) of the throwaway clusters of
//! `demo` and the tests ([`server_bindir`], used by `pgtemp`).
//!
//! An operator may name the directory (`backup.pg_bindir`, `--pg-bindir`); then only that one is
//! used. Otherwise the tools of the server's major are looked for where packages put them
//! (Debian/Ubuntu `/usr/lib/postgresql/<major>/bin`, the PGDG RPMs' `/usr/pgsql-<major>/bin`),
//! then on `PATH`, then in the other versioned directories; one of the server's major wins, else
//! the closest newer one (a newer pg_dump dumps an older server), else what was found, which the
//! callers' version checks then refuse with advice.
//!
//! Children run with a cleared environment plus [`child_env`]: PATH, HOME, locale, TZ and the
//! dynamic loader's library path (a build installed outside the system paths needs
//! `LD_LIBRARY_PATH` to start at all). Connection settings and the password are added by the
//! caller ([`crate::db::DbTarget::libpq_env`]), never put on a command line.
//!
//! Never reads the process environment: every search takes the environment snapshot made in
//! `main.rs` (`Ctx::env`, or the one `demo` and the tests pass) and searches its PATH. Runs only
//! `<tool> --version` and `pg_config --bindir` here and never connects anywhere.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Variables of the process environment passed on to pg_dump and pg_restore (everything else
/// is cleared): the search path, home (for libpq's own files), locale, time zone, and the
/// dynamic loader's library path (Linux, macOS).
pub const PASSED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "LD_LIBRARY_PATH",
    "DYLD_LIBRARY_PATH",
];

/// The [`PASSED_ENV`] entries of `env`, for a child whose environment is cleared.
pub fn child_env(env: &BTreeMap<String, String>) -> Vec<(String, String)> {
    PASSED_ENV
        .iter()
        .filter_map(|k| env.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect()
}

/// A client tool found and run once (`--version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    pub path: PathBuf,
    /// As printed, e.g. "16.14".
    pub version: String,
    pub major: u32,
}

/// Where to look.
#[derive(Debug, Clone, Copy)]
pub struct Search<'a> {
    /// The operator's directory (`--pg-bindir` > `backup.pg_bindir`): only this one is used.
    pub bindir: Option<&'a Path>,
    /// The process environment snapshot (its PATH is searched; [`child_env`] of it is what
    /// the tool runs with).
    pub env: &'a BTreeMap<String, String>,
}

/// Parse `pg_dump --version` output ("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)").
/// Returns the version and its major (9 for 9.6, as before PostgreSQL 10).
pub fn parse_version(out: &str) -> Option<(String, u32)> {
    let v = out
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    let v = v.trim_end_matches(|c: char| !c.is_ascii_digit());
    let major = v
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    Some((v.to_string(), major))
}

/// The places `name` is looked for, in order, for a server of `major` (pure: reads only the
/// PATH of `env` and the given list of installed versioned directories).
pub fn candidates(
    name: &str,
    major: u32,
    env: &BTreeMap<String, String>,
    versioned_dirs: &[PathBuf],
) -> Vec<PathBuf> {
    let mut out = vec![
        PathBuf::from(format!("/usr/lib/postgresql/{major}/bin")).join(name),
        PathBuf::from(format!("/usr/pgsql-{major}/bin")).join(name),
    ];
    out.extend(path_dirs(env).into_iter().map(|d| d.join(name)));
    out.extend(versioned_dirs.iter().map(|d| d.join(name)));
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.clone()));
    out
}

/// The absolute directories of the snapshot's PATH, in order (a relative entry would depend on
/// the working directory and is skipped).
pub fn path_dirs(env: &BTreeMap<String, String>) -> Vec<PathBuf> {
    env.get("PATH")
        .map(|path| {
            path.split(':')
                .map(PathBuf::from)
                .filter(|d| d.is_absolute())
                .collect()
        })
        .unwrap_or_default()
}

/// Where the PostgreSQL server binaries live (`initdb`, `postgres` and `pg_ctl` side by side),
/// for a throwaway cluster: what the snapshot's `pg_config --bindir` says, else the newest
/// `/usr/lib/postgresql/<major>/bin`, else a directory of the snapshot's PATH (a wrapper on PATH,
/// such as Debian's pg_wrapper, may have no `postgres` beside it, hence last).
pub fn server_bindir(env: &BTreeMap<String, String>) -> Result<PathBuf> {
    server_bindir_among(env, &versioned_dirs())
}

/// [`server_bindir`] with the installed versioned directories given.
fn server_bindir_among(env: &BTreeMap<String, String>, versioned: &[PathBuf]) -> Result<PathBuf> {
    let has = |d: &Path| {
        d.join("initdb").is_file() && d.join("postgres").is_file() && d.join("pg_ctl").is_file()
    };
    let path = path_dirs(env);
    let pg_config = path
        .iter()
        .map(|d| d.join("pg_config"))
        .find(|p| p.is_file());
    if let Some(pg_config) = pg_config {
        let out = Command::new(pg_config)
            .arg("--bindir")
            .env_clear()
            .envs(child_env(env))
            .stdin(Stdio::null())
            .output();
        if let Ok(out) = out {
            let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if has(&d) {
                return Ok(d);
            }
        }
    }
    let newest = versioned
        .iter()
        .filter(|d| d.starts_with("/usr/lib/postgresql") && has(d))
        .max_by_key(|d| dir_major(d));
    if let Some(d) = newest {
        return Ok(d.clone());
    }
    path.into_iter().find(|d| has(d)).ok_or_else(|| {
        Error::failed(
            "cannot find the PostgreSQL server binaries (initdb, pg_ctl, postgres): install \
             Debian's postgresql package",
        )
    })
}

/// The major of a versioned directory (`/usr/lib/postgresql/16/bin` is 16; 0 if none).
fn dir_major(bin: &Path) -> u32 {
    bin.parent()
        .and_then(|v| v.file_name())
        .and_then(|v| v.to_str())
        .and_then(|v| v.trim_start_matches("pgsql-").parse().ok())
        .unwrap_or(0)
}

/// The temporary directory of the snapshot: `TMPDIR` when it is absolute, else `/tmp` (what the
/// standard library would read from the process environment).
pub fn temp_dir(env: &BTreeMap<String, String>) -> PathBuf {
    env.get("TMPDIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute())
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// The other versioned directories installed here: `/usr/lib/postgresql/*/bin`,
/// `/usr/pgsql-*/bin`.
fn versioned_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    if let Ok(rd) = std::fs::read_dir("/usr") {
        dirs.extend(
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("pgsql-"))
                .map(|e| e.path().join("bin")),
        );
    }
    dirs.sort();
    dirs
}

/// Run `path --version` as the tool itself will run (cleared environment plus
/// [`child_env`]). `Err` carries why it did not run, for the message.
pub fn probe(path: &Path, env: &BTreeMap<String, String>) -> std::result::Result<Tool, String> {
    let out = Command::new(path)
        .arg("--version")
        .env_clear()
        .envs(child_env(env))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match parse_version(&text) {
        Some((version, major)) if out.status.success() => Ok(Tool {
            path: path.to_path_buf(),
            version,
            major,
        }),
        _ => Err(format!(
            "{} --version failed ({}): {}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// Choose among the tools found (pure): one of `want`'s major that is at least `min`; else
/// the closest newer than `want`; else the newest at least `min`; else the newest (which the
/// caller's check refuses with advice).
pub fn pick(found: &[Tool], want: u32, min: u32) -> Option<Tool> {
    let ok = |t: &&Tool| t.major >= min;
    found
        .iter()
        .filter(ok)
        .find(|t| t.major == want)
        .or_else(|| {
            found
                .iter()
                .filter(ok)
                .filter(|t| t.major > want)
                .min_by_key(|t| t.major)
        })
        .or_else(|| found.iter().filter(ok).max_by_key(|t| t.major))
        .or_else(|| found.iter().max_by_key(|t| t.major))
        .cloned()
}

/// Find `name` for a server of major `want`, preferring one of at least `min`.
pub fn find(name: &str, want: u32, min: u32, search: Search<'_>) -> Result<Tool> {
    if let Some(dir) = search.bindir {
        let path = dir.join(name);
        if !path.is_file() {
            return Err(Error::usage(format!(
                "there is no {name} in {} (backup.pg_bindir / --pg-bindir names the directory \
                 of the PostgreSQL client tools, e.g. /usr/lib/postgresql/{want}/bin)",
                dir.display()
            )));
        }
        return probe(&path, search.env).map_err(|why| {
            Error::failed(format!(
                "{why}; if its libraries are installed outside the system paths, set \
                 LD_LIBRARY_PATH for kasm-db"
            ))
        });
    }
    let mut found = Vec::new();
    let mut failed = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for path in candidates(name, want, search.env, &versioned_dirs()) {
        if !path.is_file() {
            continue;
        }
        // The same binary through several names (a symlinked PATH entry) is run once.
        let real = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if !seen.insert(real) {
            continue;
        }
        match probe(&path, search.env) {
            Ok(t) => found.push(t),
            Err(why) => failed.push(why),
        }
    }
    pick(&found, want, min).ok_or_else(|| {
        let mut msg = format!(
            "cannot find {name}: install the PostgreSQL {want} client tools (Debian: apt install \
             postgresql-client-{want}) or name their directory with backup.pg_bindir / --pg-bindir"
        );
        if let Some(why) = failed.first() {
            msg.push_str(&format!(" (found one that does not run: {why})"));
        }
        Error::failed(msg)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(major: u32) -> Tool {
        Tool {
            path: format!("/pg/{major}/bin/pg_dump").into(),
            version: format!("{major}.1"),
            major,
        }
    }

    #[test]
    fn parses_versions() {
        assert_eq!(
            parse_version("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"),
            Some(("15.18".into(), 15))
        );
        assert_eq!(
            parse_version("pg_dump (PostgreSQL) 17beta1").map(|v| v.1),
            Some(17)
        );
        assert_eq!(
            parse_version("pg_dump (PostgreSQL) 9.6.24"),
            Some(("9.6.24".into(), 9))
        );
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn picks_the_servers_major_then_the_closest_newer() {
        let found = [tool(15), tool(18), tool(17), tool(16)];
        assert_eq!(pick(&found, 16, 16).unwrap().major, 16);
        let found = [tool(15), tool(18), tool(17)];
        assert_eq!(pick(&found, 16, 16).unwrap().major, 17);
        // Only older ones: the newest, which the caller's check refuses.
        assert_eq!(pick(&[tool(14), tool(15)], 16, 16).unwrap().major, 15);
        // Restore of a 15 dump onto 16 with only a 15 pg_restore: that one (it is >= min).
        assert_eq!(pick(&[tool(15)], 16, 15).unwrap().major, 15);
        // A 17 dump onto a 16 server: pg_restore 16 is too old; 17 it is.
        assert_eq!(pick(&[tool(16), tool(17)], 16, 17).unwrap().major, 17);
        assert_eq!(pick(&[], 16, 16), None);
    }

    #[test]
    fn looks_where_packages_install_then_on_path() {
        let env = BTreeMap::from([("PATH".to_string(), "/opt/pg/bin:relative:/usr/bin".into())]);
        let c = candidates(
            "pg_dump",
            16,
            &env,
            &["/usr/lib/postgresql/15/bin".into(), "/usr/bin".into()],
        );
        let c: Vec<String> = c.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            c,
            [
                "/usr/lib/postgresql/16/bin/pg_dump",
                "/usr/pgsql-16/bin/pg_dump",
                "/opt/pg/bin/pg_dump",
                "/usr/bin/pg_dump",
                "/usr/lib/postgresql/15/bin/pg_dump",
            ]
        );
    }

    #[test]
    fn path_and_temp_dir_come_from_the_snapshot() {
        let env = BTreeMap::from([
            ("PATH".to_string(), "/a/bin::rel/bin:/b/bin".to_string()),
            ("TMPDIR".to_string(), "/var/tmp/x".to_string()),
        ]);
        assert_eq!(
            path_dirs(&env),
            [PathBuf::from("/a/bin"), PathBuf::from("/b/bin")]
        );
        assert_eq!(temp_dir(&env), PathBuf::from("/var/tmp/x"));
        assert_eq!(temp_dir(&BTreeMap::new()), PathBuf::from("/tmp"));
        assert!(path_dirs(&BTreeMap::new()).is_empty());
        assert_eq!(dir_major(Path::new("/usr/lib/postgresql/16/bin")), 16);
        assert_eq!(dir_major(Path::new("/usr/pgsql-17/bin")), 17);
    }

    #[test]
    fn server_binaries_are_found_on_the_snapshots_path() {
        // A directory holding the three server binaries, named only by the snapshot's PATH:
        // found when nothing is installed system-wide, and never from the process's own PATH.
        let dir = tempfile::tempdir().unwrap();
        for b in ["initdb", "postgres", "pg_ctl"] {
            std::fs::write(dir.path().join(b), "").unwrap();
        }
        let env = BTreeMap::from([(
            "PATH".to_string(),
            format!("/nonexistent/bin:{}", dir.path().display()),
        )]);
        assert_eq!(server_bindir_among(&env, &[]).unwrap(), dir.path());
        let e = server_bindir_among(&BTreeMap::new(), &[]).unwrap_err();
        assert!(e.to_string().contains("initdb"), "{e}");
        // An installed versioned directory wins over PATH; the newest of them.
        let lib = Path::new("/usr/lib/postgresql");
        let installed: Vec<PathBuf> = versioned_dirs()
            .into_iter()
            .filter(|d| d.starts_with(lib) && d.join("initdb").is_file())
            .collect();
        if let Some(newest) = installed.iter().max_by_key(|d| dir_major(d)) {
            assert_eq!(server_bindir_among(&env, &installed).unwrap(), *newest);
        }
    }

    #[test]
    fn children_keep_the_loader_path_and_nothing_else() {
        let env = BTreeMap::from(
            [
                ("PATH", "/usr/bin"),
                ("LD_LIBRARY_PATH", "/opt/pg16/lib"),
                ("AWS_SECRET_ACCESS_KEY", "sekrit"),
                ("KASM_DB_SIEM_TOKEN", "sekrit"),
                ("PGPASSWORD", "sekrit"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let kept = child_env(&env);
        assert_eq!(
            kept,
            [
                ("PATH".to_string(), "/usr/bin".to_string()),
                ("LD_LIBRARY_PATH".to_string(), "/opt/pg16/lib".to_string()),
            ]
        );
    }

    #[test]
    fn a_named_directory_without_the_tool_is_a_usage_error() {
        let env = BTreeMap::new();
        let dir = tempfile::tempdir().unwrap();
        let e = find(
            "pg_dump",
            16,
            16,
            Search {
                bindir: Some(dir.path()),
                env: &env,
            },
        )
        .unwrap_err();
        assert_eq!(e.kind(), crate::error::Kind::Usage);
        assert!(e.to_string().contains("no pg_dump in"), "{e}");
    }
}
