//! The read side's SQL, built from a [`Filter`] with every value a bound parameter.
//!
//! Pure: returns statement text and a list of [`Param`]s (plain values); `query.rs` binds them.
//! A user's value never becomes part of the statement's text, and the only identifiers pasted
//! in are the configured schema (quoted) and the fixed column names.

use super::cursor::Cursor;
use super::filter::{Field, Filter};
use crate::db::ident;
use chrono::{DateTime, Utc};

/// A value to bind.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(String),
    Texts(Vec<String>),
    Time(DateTime<Utc>),
    Int(i64),
    Float(f64),
    Uuid(uuid::Uuid),
}

/// The columns every record query selects, in the order `query.rs` reads them.
pub const COLUMNS: &str = "log_id, ingest_date, log_time, levelname, host, application, \
                           kasm_user_name, message, data, coalesce(txid, 0)";

/// A statement under construction: its WHERE conditions and their parameters.
#[derive(Debug, Default, Clone)]
pub struct Sql {
    conds: Vec<String>,
    pub params: Vec<Param>,
}

impl Sql {
    /// Bind `p`, returning its placeholder (`$n`).
    pub fn bind(&mut self, p: Param) -> String {
        self.params.push(p);
        format!("${}", self.params.len())
    }

    pub fn cond(&mut self, c: String) {
        self.conds.push(c);
    }

    /// ` WHERE a AND b` (or nothing).
    pub fn where_clause(&self) -> String {
        if self.conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conds.join(" AND "))
        }
    }

    /// The conditions of `f`.
    pub fn filter(f: &Filter) -> Sql {
        let mut s = Sql::default();
        if !f.levels.is_empty() {
            let p = s.bind(Param::Texts(
                f.levels.iter().map(|l| l.as_str().to_string()).collect(),
            ));
            s.cond(format!("levelname = ANY({p}::text[])"));
        }
        for (col, v) in [
            ("application", &f.app),
            ("host", &f.host),
            ("kasm_user_name", &f.user),
        ] {
            if let Some(v) = v {
                let p = s.bind(Param::Text(v.clone()));
                s.cond(format!("{col} = {p}"));
            }
        }
        for (path, v) in &f.wheres {
            let p = s.bind(Param::Texts(path.clone()));
            let q = s.bind(Param::Text(v.clone()));
            s.cond(format!("data #>> {p}::text[] = {q}"));
        }
        if let Some(g) = &f.grep {
            let p = s.bind(Param::Text(like_pattern(g)));
            s.cond(format!("message ILIKE {p}"));
        }
        if let Some(t) = f.since {
            let p = s.bind(Param::Time(t));
            s.cond(format!("ingest_date >= {p}"));
        }
        if let Some(t) = f.until {
            let p = s.bind(Param::Time(t));
            s.cond(format!("ingest_date < {p}"));
        }
        s
    }
}

/// `%text%` for ILIKE, with `\`, `%` and `_` escaped (ILIKE's default escape is `\`).
pub fn like_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

fn table(schema: &str) -> String {
    format!("{}.logs", ident(schema))
}

/// Which way a page reads from its anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Newest first, below the anchor.
    Older,
    /// Oldest first, above the anchor.
    Newer,
}

/// One window of a page: records matching `f` with `ingest_date` in `[lo, hi)` (either bound
/// open), strictly beyond `anchor` in `dir`, only those written by transactions before
/// `horizon` (or before migration 6) when given, `limit` of them in `dir`'s order.
#[allow(clippy::too_many_arguments)]
pub fn page(
    schema: &str,
    f: &Filter,
    dir: Direction,
    anchor: Option<&Cursor>,
    lo: Option<DateTime<Utc>>,
    hi: Option<DateTime<Utc>>,
    horizon: Option<i64>,
    limit: i64,
) -> Query {
    let mut s = Sql::filter(f);
    if let Some(lo) = lo {
        let p = s.bind(Param::Time(lo));
        s.cond(format!("ingest_date >= {p}"));
    }
    if let Some(hi) = hi {
        let p = s.bind(Param::Time(hi));
        s.cond(format!("ingest_date < {p}"));
    }
    if let Some(a) = anchor {
        let d = s.bind(Param::Time(a.ingest_date));
        let id = s.bind(Param::Uuid(a.log_id));
        // The plain comparison lets the BRIN index and partition pruning see the bound; the
        // row comparison is the exact one.
        match dir {
            Direction::Older => s.cond(format!(
                "ingest_date <= {d} AND (ingest_date, log_id) < ({d}, {id})"
            )),
            Direction::Newer => s.cond(format!(
                "ingest_date >= {d} AND (ingest_date, log_id) > ({d}, {id})"
            )),
        }
    }
    if let Some(h) = horizon {
        let p = s.bind(Param::Int(h));
        s.cond(format!("(txid < {p} OR txid IS NULL)"));
    }
    let order = match dir {
        Direction::Older => "ingest_date DESC, log_id DESC",
        Direction::Newer => "ingest_date, log_id",
    };
    let l = s.bind(Param::Int(limit));
    let text = format!(
        "SELECT {COLUMNS} FROM {}{} ORDER BY {order} LIMIT {l}",
        table(schema),
        s.where_clause()
    );
    Query {
        text,
        params: s.params,
    }
}

/// A statement and the values it binds.
#[derive(Debug, Clone)]
pub struct Query {
    pub text: String,
    pub params: Vec<Param>,
}

/// The oldest transaction id still running: every record with a smaller `txid` is final.
pub const HORIZON: &str = "SELECT txid_snapshot_xmin(txid_current_snapshot())";

/// The tail after `from`: records matching `f` written by transactions below `horizon`,
/// ordered by `(txid, ingest_date, log_id)` (a transaction's records become visible at once;
/// among them, the order they were received in).
pub fn tail(schema: &str, f: &Filter, from: &Cursor, horizon: i64, limit: i64) -> Query {
    let mut s = Sql::filter(f);
    let t = s.bind(Param::Int(from.txid));
    let d = s.bind(Param::Time(from.ingest_date));
    let id = s.bind(Param::Uuid(from.log_id));
    let h = s.bind(Param::Int(horizon));
    s.cond(format!(
        "txid >= {t} AND (txid, ingest_date, log_id) > ({t}, {d}, {id}) AND txid < {h}"
    ));
    let l = s.bind(Param::Int(limit));
    let text = format!(
        "SELECT {COLUMNS} FROM {}{} ORDER BY txid, ingest_date, log_id LIMIT {l}",
        table(schema),
        s.where_clause()
    );
    Query {
        text,
        params: s.params,
    }
}

/// One record by its id; with `around` (the time its id carries) only that millisecond is
/// searched, so partitions and the BRIN index narrow it to a few pages.
pub fn by_id(schema: &str, id: uuid::Uuid, around: Option<DateTime<Utc>>) -> Query {
    let mut s = Sql::default();
    let p = s.bind(Param::Uuid(id));
    s.cond(format!("log_id = {p}"));
    if let Some(t) = around {
        let lo = s.bind(Param::Time(t));
        let hi = s.bind(Param::Time(t + chrono::Duration::milliseconds(1)));
        s.cond(format!("ingest_date >= {lo} AND ingest_date < {hi}"));
    }
    let text = format!(
        "SELECT {COLUMNS} FROM {}{} LIMIT 1",
        table(schema),
        s.where_clause()
    );
    Query {
        text,
        params: s.params,
    }
}

/// Counts per value of `field` (NULL included), largest first.
pub fn count_by(schema: &str, f: &Filter, field: Field) -> Query {
    let s = Sql::filter(f);
    let c = field.column();
    let text = format!(
        "SELECT {c}, count(*) FROM {}{} GROUP BY 1 ORDER BY 2 DESC, 1",
        table(schema),
        s.where_clause()
    );
    Query {
        text,
        params: s.params,
    }
}

/// Counts per bucket of `bucket_s` seconds (aligned on the Unix epoch) and level.
pub fn volume(schema: &str, f: &Filter, bucket_s: i64) -> Query {
    let mut s = Sql::filter(f);
    let w = s.bind(Param::Float(bucket_s as f64));
    let text = format!(
        "SELECT to_timestamp(floor(extract(epoch FROM ingest_date)::float8 / {w}::float8) * {w}::float8) \
         AS bucket, \
         levelname, count(*) FROM {}{} GROUP BY 1, 2 ORDER BY 1, 2",
        table(schema),
        s.where_clause()
    );
    Query {
        text,
        params: s.params,
    }
}

/// Counts per level, host, application and user in one pass (GROUPING SETS); the first column
/// says which (0 level, 1 host, 2 application, 3 user).
pub fn facets(schema: &str, f: &Filter) -> Query {
    let s = Sql::filter(f);
    let text = format!(
        "SELECT CASE WHEN GROUPING(levelname) = 0 THEN 0 WHEN GROUPING(host) = 0 THEN 1 \
         WHEN GROUPING(application) = 0 THEN 2 ELSE 3 END, \
         coalesce(levelname, host, application, kasm_user_name), count(*) FROM {}{} \
         GROUP BY GROUPING SETS ((levelname), (host), (application), (kasm_user_name)) \
         ORDER BY 1, 3 DESC",
        table(schema),
        s.where_clause()
    );
    Query {
        text,
        params: s.params,
    }
}

/// Every record of `f`, oldest first (an export).
pub fn export(schema: &str, f: &Filter) -> Query {
    let s = Sql::filter(f);
    let text = format!(
        "SELECT {COLUMNS} FROM {}{} ORDER BY ingest_date, log_id",
        table(schema),
        s.where_clause()
    );
    Query {
        text,
        params: s.params,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::record::Level;

    #[test]
    fn values_are_parameters_never_text() {
        let f = Filter {
            levels: vec![Level::Error],
            host: Some("h'; DROP TABLE logs; --".into()),
            grep: Some("50%_\\'".into()),
            wheres: vec![(vec!["a".into(), "b".into()], "x'y".into())],
            ..Filter::default()
        };
        let s = page("public", &f, Direction::Older, None, None, None, None, 100);
        let t = &s.text;
        assert!(!t.contains("DROP"), "{t}");
        assert!(!t.contains("x'y"), "{t}");
        assert!(
            t.contains("ORDER BY ingest_date DESC, log_id DESC LIMIT $6"),
            "{t}"
        );
        assert_eq!(s.params[4], Param::Text("%50\\%\\_\\\\'%".into()));
    }

    #[test]
    fn pages_carry_their_anchor_both_ways() {
        let c = Cursor::tail_start(7);
        let older = page(
            "s",
            &Filter::default(),
            Direction::Older,
            Some(&c),
            None,
            None,
            Some(9),
            5,
        );
        assert!(older.text.contains("(ingest_date, log_id) < ($1, $2)"));
        assert!(older.text.contains("(txid < $3 OR txid IS NULL)"));
        let newer = page(
            "s",
            &Filter::default(),
            Direction::Newer,
            Some(&c),
            None,
            None,
            None,
            5,
        );
        assert!(newer.text.contains("(ingest_date, log_id) > ($1, $2)"));
        assert!(
            newer
                .text
                .ends_with("ORDER BY ingest_date, log_id LIMIT $3")
        );
    }
}
