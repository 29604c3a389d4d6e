//! The pure parts of a restore: the names of the databases it makes (`<name>_restore_<ts>`,
//! `<name>_pre_restore_<ts>`) and how to recognise its own stale leftovers, comparing restored
//! row counts with the manifest, and reading `pg_restore`'s stderr (progress, missing roles).
//!
//! No I/O, no clock: timestamps are passed in. Never produces a name longer than PostgreSQL's
//! 63-byte identifier limit (the base name is shortened instead), so a rename is never
//! silently truncated into a clash.

use crate::archive::manifest::TableRows;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// PostgreSQL's identifier limit (NAMEDATALEN - 1).
pub const MAX_NAME: usize = 63;
const RESTORE_TAG: &str = "_restore_";
const PRE_TAG: &str = "_pre_restore_";
/// `YYYYmmddHHMMSS`.
const TS_LEN: usize = 14;
/// Room kept for a `_NN` suffix on the previous database's name.
const SUFFIX_ROOM: usize = 3;

fn ts(at: DateTime<Utc>) -> String {
    at.format("%Y%m%d%H%M%S").to_string()
}

/// `name` cut (at a character boundary) so that `<base><PRE_TAG><ts>_NN` fits in 63 bytes.
pub fn base(name: &str) -> &str {
    let room = MAX_NAME - PRE_TAG.len() - TS_LEN - SUFFIX_ROOM;
    if name.len() <= room {
        return name;
    }
    let mut end = room;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// The database a restore of `name` builds before the swap.
pub fn new_name(name: &str, at: DateTime<Utc>) -> String {
    format!("{}{RESTORE_TAG}{}", base(name), ts(at))
}

/// The name the existing `name` is kept under: the first of `<base>_pre_restore_<ts>`,
/// `..._2`, `..._3`, ... that is not in `existing`.
pub fn previous_name(name: &str, at: DateTime<Utc>, existing: &[String]) -> String {
    let first = format!("{}{PRE_TAG}{}", base(name), ts(at));
    if !existing.contains(&first) {
        return first;
    }
    (2..100)
        .map(|n| format!("{first}_{n}"))
        .find(|c| !existing.contains(c))
        .unwrap_or_else(|| format!("{first}_99"))
}

/// Whether `candidate` is a database a restore of `name` made and did not finish (the form
/// [`new_name`] produces). Only such databases are ever dropped as stale.
pub fn is_stale_restore_of(name: &str, candidate: &str) -> bool {
    let Some(rest) = candidate.strip_prefix(base(name)) else {
        return false;
    };
    let Some(stamp) = rest.strip_prefix(RESTORE_TAG) else {
        return false;
    };
    stamp.len() == TS_LEN && stamp.bytes().all(|b| b.is_ascii_digit())
}

/// One table whose restored row count differs from the manifest.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Difference {
    pub table: String,
    pub expected_rows: i64,
    /// `None` when the table is missing from the restored database.
    pub rows: Option<i64>,
}

/// Compare the manifest's tables with the counts found (`schema.table` -> rows).
pub fn compare(expected: &[TableRows], found: &BTreeMap<(String, String), i64>) -> Vec<Difference> {
    expected
        .iter()
        .filter_map(|t| {
            let got = found.get(&(t.schema.clone(), t.table.clone())).copied();
            (got != Some(t.rows)).then(|| Difference {
                table: format!("{}.{}", t.schema, t.table),
                expected_rows: t.rows,
                rows: got,
            })
        })
        .collect()
}

/// A sentence for people about the differences (at most a few named).
pub fn describe(diffs: &[Difference]) -> String {
    let mut parts: Vec<String> = diffs
        .iter()
        .take(5)
        .map(|d| match d.rows {
            Some(n) => format!(
                "{} has {n} rows, the manifest says {}",
                d.table, d.expected_rows
            ),
            None => format!("{} is missing", d.table),
        })
        .collect();
    if diffs.len() > 5 {
        parts.push(format!("and {} more", diffs.len() - 5));
    }
    format!(
        "{} table(s) differ from the manifest: {}",
        diffs.len(),
        parts.join("; ")
    )
}

/// What a `pg_restore --verbose` stderr line means to us.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A table's data has been restored (serial: started; parallel: finished).
    TableData,
    /// Chatter of `--verbose`.
    Verbose,
    /// Anything else (errors, warnings, the failing command): kept for the message.
    Keep,
}

pub fn classify(line: &str) -> Line {
    if line.starts_with("pg_restore: processing data for table")
        || (line.starts_with("pg_restore: finished item") && line.contains(" TABLE DATA "))
    {
        Line::TableData
    } else if line.contains("error")
        || line.contains("ERROR")
        || line.contains("warning")
        || line.starts_with("Command was")
        || !line.starts_with("pg_restore: ")
    {
        Line::Keep
    } else {
        Line::Verbose
    }
}

/// The table (pg_restore's tag: the bare name) whose data a parallel pg_restore reports as
/// finished, i.e. committed: `pg_restore: finished item 3345 TABLE DATA users`.
pub fn finished_table_data(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("pg_restore: finished item ")?;
    let (id, rest) = rest.split_once(' ')?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.strip_prefix("TABLE DATA ")
        .map(|t| t.trim_end_matches(['\r', '\n']))
        .filter(|t| !t.is_empty())
}

/// The role named in a `role "X" does not exist` error, if the output has one.
pub fn missing_role(stderr: &str) -> Option<String> {
    let i = stderr.find("role \"")? + 6;
    let rest = &stderr[i..];
    let end = rest.find("\" does not exist")?;
    let role = &rest[..end];
    (!role.contains('"')).then(|| role.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-24T14:05:09Z")
            .unwrap()
            .to_utc()
    }

    #[test]
    fn names_fit_and_are_recognised() {
        assert_eq!(new_name("kasm", at()), "kasm_restore_20261124140509");
        assert_eq!(
            previous_name("kasm", at(), &[]),
            "kasm_pre_restore_20261124140509"
        );
        assert_eq!(
            previous_name("kasm", at(), &["kasm_pre_restore_20261124140509".into()]),
            "kasm_pre_restore_20261124140509_2"
        );
        let long = "é".repeat(40);
        assert!(previous_name(&long, at(), &[]).len() + SUFFIX_ROOM <= MAX_NAME);
        assert!(new_name(&long, at()).len() <= MAX_NAME);
        assert!(is_stale_restore_of(&long, &new_name(&long, at())));
        assert!(is_stale_restore_of("kasm", "kasm_restore_20261124140509"));
        assert!(!is_stale_restore_of(
            "kasm",
            "kasm_pre_restore_20261124140509"
        ));
        assert!(!is_stale_restore_of("kasm", "kasm_restore_2026"));
        assert!(!is_stale_restore_of("kasm", "kasm_restore_2026112414050x"));
        assert!(!is_stale_restore_of("kasm", "kasm"));
        assert!(!is_stale_restore_of("kasm", "other_restore_20261124140509"));
    }

    #[test]
    fn compares_counts() {
        let t = |table: &str, rows| TableRows {
            schema: "public".into(),
            table: table.into(),
            rows,
            data_excluded: false,
        };
        let mut found = BTreeMap::new();
        found.insert(("public".to_string(), "a".to_string()), 3);
        found.insert(("public".to_string(), "b".to_string()), 4);
        assert!(compare(&[t("a", 3), t("b", 4)], &found).is_empty());
        let d = compare(&[t("a", 3), t("b", 5), t("c", 0)], &found);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].rows, Some(4));
        assert_eq!(d[1].rows, None);
        let s = describe(&d);
        assert!(
            s.contains("public.b has 4 rows, the manifest says 5"),
            "{s}"
        );
        assert!(s.contains("public.c is missing"), "{s}");
    }

    #[test]
    fn reads_pg_restore_output() {
        assert_eq!(
            classify("pg_restore: processing data for table \"public.users\""),
            Line::TableData
        );
        assert_eq!(
            classify("pg_restore: finished item 3345 TABLE DATA users"),
            Line::TableData
        );
        assert_eq!(
            classify("pg_restore: creating TABLE \"public.users\""),
            Line::Verbose
        );
        assert_eq!(
            classify(
                "pg_restore: error: could not execute query: ERROR:  role \"kasmapp\" does not exist"
            ),
            Line::Keep
        );
        assert_eq!(
            classify("Command was: ALTER TABLE x OWNER TO kasmapp;"),
            Line::Keep
        );
        assert_eq!(
            finished_table_data("pg_restore: finished item 3345 TABLE DATA users"),
            Some("users")
        );
        assert_eq!(
            finished_table_data("pg_restore: finished item 12 TABLE DATA my table"),
            Some("my table")
        );
        assert_eq!(
            finished_table_data("pg_restore: finished item 3346 INDEX users_pkey"),
            None
        );
        assert_eq!(
            finished_table_data("pg_restore: processing data for table \"public.users\""),
            None
        );
        assert_eq!(
            missing_role("ERROR:  role \"kasmapp\" does not exist\nCommand was: ..."),
            Some("kasmapp".into())
        );
        assert_eq!(missing_role("ERROR: relation \"x\" does not exist"), None);
    }
}
