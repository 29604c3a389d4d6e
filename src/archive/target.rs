//! Where backups go: parse a TARGET (`s3://bucket/prefix`, `az://container/prefix`,
//! `file:///abs/dir`, `/abs/dir`) into a [`Target`], and resolve `--to`/`--from` against
//! `backup.to`.
//!
//! Pure: no I/O. Never accepts a relative path (a cron job's working directory is not a place
//! to keep backups); that is a usage error that says what is accepted.

use crate::error::{Error, Result};
use std::fmt;
use std::path::PathBuf;

/// A parsed backup target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A local directory or a mounted network filesystem (NFS).
    Dir(PathBuf),
    /// An S3 (or S3-compatible) bucket and a key prefix without leading/trailing slashes.
    S3 { bucket: String, prefix: String },
    /// An Azure Blob Storage container (of the account the Azure variables name) and a blob
    /// name prefix without leading/trailing slashes.
    Azure { container: String, prefix: String },
}

/// Azure's rule for container names: 3-63 lowercase letters, digits and single hyphens, starting
/// and ending with a letter or digit (`$root` aside, which kasm-db does not use).
fn valid_container(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

impl Target {
    /// Parse a TARGET string.
    pub fn parse(text: &str) -> Result<Target> {
        let text = text.trim();
        let bad = |why: &str| {
            Error::usage(format!(
                "backup target {text:?} {why}: use s3://bucket/prefix, az://container/prefix, \
                 file:///abs/dir or /abs/dir"
            ))
        };
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("names no bucket"));
            }
            return Ok(Target::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        if let Some(rest) = text.strip_prefix("az://") {
            let (container, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if container.is_empty() {
                return Err(bad("names no container"));
            }
            if !valid_container(container) {
                return Err(bad(
                    "names an invalid Azure container (3-63 lowercase letters, digits and \
                     single hyphens)",
                ));
            }
            return Ok(Target::Azure {
                container: container.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        let path = match text.strip_prefix("file://") {
            Some(p) => p,
            None if text.contains("://") => return Err(bad("has an unknown scheme")),
            None => text,
        };
        if path.is_empty() {
            return Err(bad("is empty"));
        }
        if !path.starts_with('/') {
            return Err(bad("is a relative path"));
        }
        Ok(Target::Dir(PathBuf::from(path)))
    }

    /// `flag` if given, else `backup.to`; neither is a usage error that says how to set one.
    pub fn resolve(
        flag: Option<&str>,
        configured: Option<&str>,
        flag_name: &str,
    ) -> Result<Target> {
        match flag.or(configured) {
            Some(t) if !t.trim().is_empty() => Target::parse(t),
            _ => Err(Error::usage(format!(
                "no backup target: pass {flag_name} TARGET, or set backup.to in the config file \
                 (or KASM_DB_BACKUP_TO), e.g. s3://bucket/prefix or /mnt/nfs/kasm-backups"
            ))),
        }
    }
}

/// `backup.copy_to` parsed: further targets each backup (and the archived WAL) is copied to.
/// A target that is not one, or is the backup's own `primary`, is a usage error (exit 2).
pub fn copy_targets(copy_to: &[String], primary: &Target) -> Result<Vec<Target>> {
    let mut out = Vec::new();
    for text in copy_to {
        let t = Target::parse(text).map_err(|e| Error::usage(format!("backup.copy_to: {e}")))?;
        if &t == primary {
            return Err(Error::usage(format!(
                "backup.copy_to names {t}, the backup's own target: a second copy must be elsewhere"
            )));
        }
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Dir(p) => write!(f, "{}", p.display()),
            Target::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Target::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Target::Azure { container, prefix } if prefix.is_empty() => {
                write!(f, "az://{container}")
            }
            Target::Azure { container, prefix } => write!(f, "az://{container}/{prefix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(
            Target::parse("s3://b/some/prefix/").unwrap(),
            Target::S3 {
                bucket: "b".into(),
                prefix: "some/prefix".into()
            }
        );
        assert_eq!(
            Target::parse("s3://b").unwrap(),
            Target::S3 {
                bucket: "b".into(),
                prefix: "".into()
            }
        );
        assert_eq!(
            Target::parse("file:///mnt/nfs/x").unwrap(),
            Target::Dir("/mnt/nfs/x".into())
        );
        assert_eq!(
            Target::parse("/mnt/nfs/x").unwrap(),
            Target::Dir("/mnt/nfs/x".into())
        );
        assert_eq!(Target::parse("s3://b/p").unwrap().to_string(), "s3://b/p");
    }

    #[test]
    fn parses_azure_containers() {
        assert_eq!(
            Target::parse("az://kasm-backups/prod/db/").unwrap(),
            Target::Azure {
                container: "kasm-backups".into(),
                prefix: "prod/db".into()
            }
        );
        assert_eq!(
            Target::parse("az://kasm").unwrap(),
            Target::Azure {
                container: "kasm".into(),
                prefix: "".into()
            }
        );
        assert_eq!(
            Target::parse("az://abc/p").unwrap().to_string(),
            "az://abc/p"
        );
        assert_eq!(Target::parse("az://abc").unwrap().to_string(), "az://abc");
        for bad in [
            "az://",
            "az:///p",
            "az://Kasm/p",
            "az://ab",
            "az://a--b",
            "az://-ab/p",
        ] {
            let e = Target::parse(bad).unwrap_err();
            assert_eq!(e.kind(), crate::error::Kind::Usage, "{bad}");
            assert!(e.to_string().contains("az://container/prefix"), "{e}");
        }
    }

    #[test]
    fn refuses_relative_and_unknown() {
        for t in [
            "backups",
            "./b",
            "file://rel/dir",
            "gs://b/p",
            "s3:///p",
            "",
        ] {
            let e = Target::parse(t).unwrap_err();
            assert_eq!(e.kind(), crate::error::Kind::Usage, "{t}");
        }
    }

    #[test]
    fn resolve_prefers_the_flag_and_explains_absence() {
        assert_eq!(
            Target::resolve(Some("/a"), Some("/b"), "--to").unwrap(),
            Target::Dir("/a".into())
        );
        assert_eq!(
            Target::resolve(None, Some("/b"), "--to").unwrap(),
            Target::Dir("/b".into())
        );
        let e = Target::resolve(None, None, "--from").unwrap_err();
        assert!(e.to_string().contains("backup.to"), "{e}");
        assert!(e.to_string().contains("--from"), "{e}");
    }
}
