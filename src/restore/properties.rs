//! The pure side of carrying the source database's own properties over (the manifest's
//! [`DatabaseProperties`]: pg_dump without `--create` leaves them out of the archive, and a
//! restore into a new database under another name could not use `--create` anyway): which
//! roles they need, the `CREATE DATABASE` for an owner and a locale, where the locale may come
//! from when the target server lacks the source's, and the statements that give the new
//! database its privileges, settings, connection limit and comment — with every identifier and
//! literal quoted here, from data, never from SQL text out of the manifest.
//!
//! Roles missing on the target are either an error naming them ([`missing_roles`]) or, with
//! `--no-owner`, skipped one by one with a warning ([`steps`]). Warnings name settings, never
//! their values. No I/O.

use crate::archive::manifest::{DatabaseProperties, Grant, Setting};
use crate::db::{ident, literal};
use std::collections::{BTreeMap, BTreeSet};

/// The privileges `GRANT ... ON DATABASE` takes (anything else in a manifest is skipped).
const DATABASE_PRIVILEGES: [&str; 4] = ["CREATE", "CONNECT", "TEMPORARY", "TEMP"];

/// Settings whose value is a list of separately quoted items (PostgreSQL's GUC_LIST_QUOTE, the
/// list pg_dump keeps): stored as `"$user", public`, they must be set again as `'$user', 'public'`.
const LIST_QUOTE_SETTINGS: [&str; 6] = [
    "local_preload_libraries",
    "search_path",
    "session_preload_libraries",
    "shared_preload_libraries",
    "temp_tablespaces",
    "unix_socket_directories",
];

/// A database's encoding and locale, as `CREATE DATABASE` takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locale {
    pub encoding: String,
    pub collate: String,
    pub ctype: String,
    /// `libc`, `icu`, `builtin`; `None` = libc (a server before PostgreSQL 15).
    pub provider: Option<String>,
    /// The ICU or builtin locale.
    pub provider_locale: Option<String>,
    pub icu_rules: Option<String>,
}

impl Locale {
    pub fn of(p: &DatabaseProperties) -> Locale {
        Locale {
            encoding: p.encoding.clone(),
            collate: p.collate.clone(),
            ctype: p.ctype.clone(),
            provider: p.locale_provider.clone(),
            provider_locale: p.provider_locale.clone(),
            icu_rules: p.icu_rules.clone(),
        }
    }

    fn is_libc(&self) -> bool {
        self.provider.as_deref().is_none_or(|p| p == "libc")
    }

    /// `encoding UTF8, LC_COLLATE "C.utf8", LC_CTYPE "C.utf8"[, icu locale "en-US"]`.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "encoding {}, LC_COLLATE {:?}, LC_CTYPE {:?}",
            self.encoding, self.collate, self.ctype
        );
        if !self.is_libc() {
            let provider = self.provider.as_deref().unwrap_or("libc");
            match &self.provider_locale {
                Some(l) => s.push_str(&format!(", {provider} locale {l:?}")),
                None => s.push_str(&format!(", provider {provider}")),
            }
        }
        if let Some(r) = &self.icu_rules {
            s.push_str(&format!(", ICU rules {r:?}"));
        }
        s
    }
}

/// What a role is needed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Use {
    Owner,
    Privileges,
    Settings,
}

impl Use {
    fn word(self) -> &'static str {
        match self {
            Use::Owner => "owner",
            Use::Privileges => "privileges",
            Use::Settings => "settings",
        }
    }
}

/// Every role the properties name (PUBLIC is not a role), with what for.
pub fn roles_needed(p: &DatabaseProperties) -> BTreeMap<String, BTreeSet<Use>> {
    let mut out: BTreeMap<String, BTreeSet<Use>> = BTreeMap::new();
    out.entry(p.owner.clone()).or_default().insert(Use::Owner);
    for g in p.acl.iter().flatten() {
        if let Some(r) = &g.grantee {
            out.entry(r.clone()).or_default().insert(Use::Privileges);
        }
    }
    for s in &p.settings {
        if let Some(r) = &s.role {
            out.entry(r.clone()).or_default().insert(Use::Settings);
        }
    }
    out
}

fn uses(u: &BTreeSet<Use>) -> String {
    let words: Vec<&str> = u.iter().map(|u| u.word()).collect();
    format!("the source database's {}", words.join(", "))
}

/// The message for roles the properties need that the target lacks (without `--no-owner`),
/// worded like pg_restore's missing-role failure.
pub fn missing_roles(missing: &BTreeMap<String, BTreeSet<Use>>) -> String {
    let creates: Vec<String> = missing
        .keys()
        .map(|r| format!("CREATE ROLE {}", ident(r)))
        .collect();
    if missing.len() == 1 {
        let (role, u) = missing.iter().next().expect("one");
        return format!(
            "role {role:?} does not exist on the target ({}); pass --create-roles to create it \
             from the backup, create it yourself ({}) or pass --no-owner to restore without it; \
             nothing was restored and the target is unchanged",
            uses(u),
            creates[0]
        );
    }
    let named: Vec<String> = missing
        .iter()
        .map(|(r, u)| format!("{r:?}: {}", uses(u)))
        .collect();
    format!(
        "roles {} do not exist on the target ({}); pass --create-roles to create them from the \
         backup, create them yourself ({}) or pass --no-owner to restore without them; nothing was restored and the target is unchanged",
        missing
            .keys()
            .map(|r| format!("{r:?}"))
            .collect::<Vec<_>>()
            .join(", "),
        named.join("; "),
        creates.join("; ")
    )
}

/// The locales to try for the new database, in order: the backup's, the existing target
/// database's, then the server's default (`None`); without repeats.
pub fn locale_candidates(
    from_backup: Option<Locale>,
    existing: Option<Locale>,
) -> Vec<Option<Locale>> {
    let mut out: Vec<Option<Locale>> = Vec::new();
    // A backup without a locale (made before kasm-db recorded it) is skipped, not taken for the
    // server's default: that comes last.
    let known = [from_backup, existing].into_iter().flatten().map(Some);
    for l in known.chain([None]) {
        if !out.contains(&l) {
            out.push(l);
        }
    }
    out
}

/// `CREATE DATABASE new TEMPLATE template0 [OWNER ..] [ENCODING .. LC_COLLATE .. LC_CTYPE ..
/// [LOCALE_PROVIDER ..] [ICU_LOCALE|BUILTIN_LOCALE ..] [ICU_RULES ..]]` for a server of
/// `server_major` (a libc locale names its provider only where the server knows providers).
pub fn create_sql(
    new: &str,
    owner: Option<&str>,
    locale: Option<&Locale>,
    server_major: u32,
) -> String {
    let mut sql = format!("CREATE DATABASE {} TEMPLATE template0", ident(new));
    if let Some(o) = owner {
        sql.push_str(&format!(" OWNER {}", ident(o)));
    }
    let Some(l) = locale else {
        return sql;
    };
    sql.push_str(&format!(
        " ENCODING {} LC_COLLATE {} LC_CTYPE {}",
        literal(&l.encoding),
        literal(&l.collate),
        literal(&l.ctype)
    ));
    match l.provider.as_deref() {
        None | Some("libc") => {
            if server_major >= 15 {
                sql.push_str(" LOCALE_PROVIDER libc");
            }
        }
        Some(p) => {
            let (word, locale_option) = match p {
                "icu" => ("icu".to_string(), "ICU_LOCALE"),
                "builtin" => ("builtin".to_string(), "BUILTIN_LOCALE"),
                other => (ident(other), "LOCALE"),
            };
            sql.push_str(&format!(" LOCALE_PROVIDER {word}"));
            if let Some(pl) = &l.provider_locale {
                sql.push_str(&format!(" {locale_option} {}", literal(pl)));
            }
        }
    }
    if let Some(r) = &l.icu_rules {
        sql.push_str(&format!(" ICU_RULES {}", literal(r)));
    }
    sql
}

/// What a step gives the new database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Privileges,
    Setting,
    ConnectionLimit,
    Comment,
}

/// One statement to run on the new database before the swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub sql: String,
    /// For people: what it does (no values).
    pub what: String,
    pub kind: Kind,
    /// A required step failing fails the restore (privileges: a database must never be swapped
    /// in more open than the source); any other only warns.
    pub required: bool,
}

/// The statements and the items skipped because their role is missing on the target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub warnings: Vec<String>,
}

fn skipped(what: &str, role: &str) -> String {
    format!("{what} skipped (--no-owner): role {role:?} does not exist on the target")
}

/// The statements that give `new` (now owned by `owner`) the source's privileges, settings,
/// connection limit and comment. Roles not in `present` are skipped with a warning (the caller
/// has refused them already unless `--no-owner`); grants to the source's owner go to `owner`.
pub fn steps(new: &str, p: &DatabaseProperties, owner: &str, present: &BTreeSet<String>) -> Plan {
    let db = ident(new);
    let mut plan = Plan::default();
    // (An owner that exists but could not be given is reported where the database is created.)
    if p.owner != owner && !present.contains(&p.owner) {
        plan.warnings.push(format!(
            "{}; the database is owned by {owner:?}",
            skipped("the owner", &p.owner)
        ));
    }
    if let Some(acl) = &p.acl {
        acl_steps(&db, p, acl, owner, present, &mut plan);
    }
    for s in &p.settings {
        setting_step(&db, s, present, &mut plan);
    }
    if let Some(n) = p.connection_limit {
        plan.steps.push(Step {
            sql: format!("ALTER DATABASE {db} CONNECTION LIMIT {n}"),
            what: "the connection limit".into(),
            kind: Kind::ConnectionLimit,
            required: false,
        });
    }
    if let Some(c) = &p.comment {
        plan.steps.push(Step {
            sql: format!("COMMENT ON DATABASE {db} IS {}", literal(c)),
            what: "the comment".into(),
            kind: Kind::Comment,
            required: false,
        });
    }
    plan
}

/// Start from no privileges at all (the new database has the defaults: the owner's and PUBLIC's
/// CONNECT and TEMPORARY), then grant exactly what the source's ACL holds.
fn acl_steps(
    db: &str,
    p: &DatabaseProperties,
    acl: &[Grant],
    owner: &str,
    present: &BTreeSet<String>,
    plan: &mut Plan,
) {
    let step = |sql: String, what: String| Step {
        sql,
        what,
        kind: Kind::Privileges,
        required: true,
    };
    plan.steps.push(step(
        format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC"),
        "REVOKE ALL ON DATABASE FROM PUBLIC".into(),
    ));
    plan.steps.push(step(
        format!("REVOKE ALL ON DATABASE {db} FROM {}", ident(owner)),
        format!("REVOKE ALL ON DATABASE FROM {owner:?}"),
    ));
    for g in acl {
        let mut privileges: Vec<&str> = Vec::new();
        for pr in &g.privileges {
            let upper = pr.to_ascii_uppercase();
            match DATABASE_PRIVILEGES.iter().find(|k| **k == upper) {
                Some(k) => privileges.push(k),
                None => plan
                    .warnings
                    .push(format!("unknown database privilege {pr:?} skipped")),
            }
        }
        if privileges.is_empty() {
            continue;
        }
        let list = privileges.join(", ");
        let (to, to_words) = match &g.grantee {
            None => ("PUBLIC".to_string(), "PUBLIC".to_string()),
            Some(r) if *r == p.owner => (ident(owner), format!("{owner:?}")),
            Some(r) if !present.contains(r) => {
                plan.warnings
                    .push(skipped(&format!("GRANT {list} ON DATABASE TO {r:?}"), r));
                continue;
            }
            Some(r) => (ident(r), format!("{r:?}")),
        };
        // Grant options go to roles only (PUBLIC never holds one).
        let option = if g.grantable && g.grantee.is_some() {
            " WITH GRANT OPTION"
        } else {
            ""
        };
        let what = format!("GRANT {list} ON DATABASE TO {to_words}{option}");
        if g.grantor != p.owner {
            plan.warnings.push(format!(
                "{what}: granted by {:?} on the source, by the owner here",
                g.grantor
            ));
        }
        plan.steps.push(step(
            format!("GRANT {list} ON DATABASE {db} TO {to}{option}"),
            what,
        ));
    }
}

fn setting_step(db: &str, s: &Setting, present: &BTreeSet<String>, plan: &mut Plan) {
    let (target, what) = match &s.role {
        None => (
            format!("ALTER DATABASE {db}"),
            format!("setting {} for every role", s.name),
        ),
        Some(r) => {
            let what = format!("setting {} for role {r:?}", s.name);
            if !present.contains(r) {
                plan.warnings.push(skipped(&what, r));
                return;
            }
            (format!("ALTER ROLE {} IN DATABASE {db}", ident(r)), what)
        }
    };
    plan.steps.push(Step {
        sql: format!(
            "{target} SET {} TO {}",
            ident(&s.name),
            setting_value(&s.name, &s.value)
        ),
        what,
        kind: Kind::Setting,
        required: false,
    });
}

/// A stored setting value as SQL: one literal, or for list settings one literal per item.
pub fn setting_value(name: &str, value: &str) -> String {
    let is_list = LIST_QUOTE_SETTINGS
        .iter()
        .any(|l| l.eq_ignore_ascii_case(name));
    if is_list {
        if let Some(items) = split_guc_list(value).filter(|i| !i.is_empty()) {
            return items
                .iter()
                .map(|i| literal(i))
                .collect::<Vec<_>>()
                .join(", ");
        }
    }
    literal(value)
}

/// PostgreSQL's `SplitGUCList`: comma-separated items, each bare or double-quoted (`""` inside
/// quotes is one `"`), whitespace around them ignored, no case folding. `None` when malformed.
pub fn split_guc_list(raw: &str) -> Option<Vec<String>> {
    let s: Vec<char> = raw.chars().collect();
    let space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c' | '\x0b');
    let mut i = 0;
    let mut out = Vec::new();
    while i < s.len() && space(s[i]) {
        i += 1;
    }
    if i == s.len() {
        return Some(out);
    }
    loop {
        let mut item = String::new();
        if s[i] == '"' {
            i += 1;
            loop {
                match s.get(i) {
                    None => return None,
                    Some('"') if s.get(i + 1) == Some(&'"') => {
                        item.push('"');
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(c) => {
                        item.push(*c);
                        i += 1;
                    }
                }
            }
        } else {
            while i < s.len() && s[i] != ',' && !space(s[i]) {
                item.push(s[i]);
                i += 1;
            }
            if item.is_empty() {
                return None;
            }
        }
        out.push(item);
        while i < s.len() && space(s[i]) {
            i += 1;
        }
        if i == s.len() {
            return Some(out);
        }
        if s[i] != ',' {
            return None;
        }
        i += 1;
        while i < s.len() && space(s[i]) {
            i += 1;
        }
        if i == s.len() {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props() -> DatabaseProperties {
        DatabaseProperties {
            owner: "kasmapp".into(),
            encoding: "UTF8".into(),
            collate: "C.utf8".into(),
            ctype: "C.utf8".into(),
            locale_provider: Some("libc".into()),
            provider_locale: None,
            icu_rules: None,
            connection_limit: None,
            acl: None,
            settings: Vec::new(),
            comment: None,
        }
    }

    fn grant(grantee: Option<&str>, privileges: &[&str], grantable: bool) -> Grant {
        Grant {
            grantee: grantee.map(String::from),
            grantor: "kasmapp".into(),
            privileges: privileges.iter().map(|p| p.to_string()).collect(),
            grantable,
        }
    }

    fn present(roles: &[&str]) -> BTreeSet<String> {
        roles.iter().map(|r| r.to_string()).collect()
    }

    fn sqls(plan: &Plan) -> Vec<&str> {
        plan.steps.iter().map(|s| s.sql.as_str()).collect()
    }

    #[test]
    fn default_privileges_and_no_settings_need_no_statements() {
        let plan = steps(
            "kasm_restore_1",
            &props(),
            "kasmapp",
            &present(&["kasmapp"]),
        );
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn the_acl_is_rebuilt_exactly_with_public_and_grant_options() {
        let mut p = props();
        // REVOKE CONNECT, TEMPORARY ... FROM PUBLIC; GRANT CONNECT ... TO "odd ""role""" WITH
        // GRANT OPTION; the owner keeps all.
        p.acl = Some(vec![
            grant(Some("kasmapp"), &["CREATE", "TEMPORARY", "CONNECT"], false),
            grant(Some("odd \"role\""), &["CONNECT"], true),
            grant(Some("PUBLIC"), &["TEMPORARY"], false),
            grant(None, &["CONNECT"], true),
        ]);
        let plan = steps(
            "new db",
            &p,
            "kasmapp",
            &present(&["kasmapp", "odd \"role\"", "PUBLIC"]),
        );
        assert_eq!(
            sqls(&plan),
            [
                "REVOKE ALL ON DATABASE \"new db\" FROM PUBLIC",
                "REVOKE ALL ON DATABASE \"new db\" FROM \"kasmapp\"",
                "GRANT CREATE, TEMPORARY, CONNECT ON DATABASE \"new db\" TO \"kasmapp\"",
                "GRANT CONNECT ON DATABASE \"new db\" TO \"odd \"\"role\"\"\" WITH GRANT OPTION",
                // A role named "PUBLIC" is a role, quoted; PUBLIC itself is the keyword.
                "GRANT TEMPORARY ON DATABASE \"new db\" TO \"PUBLIC\"",
                "GRANT CONNECT ON DATABASE \"new db\" TO PUBLIC",
            ]
        );
        assert!(plan.steps.iter().all(|s| s.required));
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
        // An empty ACL: nobody keeps anything.
        p.acl = Some(Vec::new());
        let plan = steps("n", &p, "kasmapp", &present(&["kasmapp"]));
        assert_eq!(plan.steps.len(), 2);
    }

    #[test]
    fn missing_roles_are_skipped_and_the_owners_grants_follow_the_new_owner() {
        let mut p = props();
        p.acl = Some(vec![
            grant(Some("kasmapp"), &["CREATE", "CONNECT"], false),
            grant(Some("gone"), &["CONNECT"], false),
            grant(Some("here"), &["CONNECT", "DROP TABLE x; --"], false),
        ]);
        p.settings = vec![
            Setting {
                role: Some("gone".into()),
                name: "statement_timeout".into(),
                value: "5s".into(),
            },
            Setting {
                role: None,
                name: "work_mem".into(),
                value: "12MB".into(),
            },
        ];
        let plan = steps("n", &p, "postgres", &present(&["here", "postgres"]));
        assert_eq!(
            sqls(&plan),
            [
                "REVOKE ALL ON DATABASE \"n\" FROM PUBLIC",
                "REVOKE ALL ON DATABASE \"n\" FROM \"postgres\"",
                "GRANT CREATE, CONNECT ON DATABASE \"n\" TO \"postgres\"",
                "GRANT CONNECT ON DATABASE \"n\" TO \"here\"",
                "ALTER DATABASE \"n\" SET \"work_mem\" TO '12MB'",
            ]
        );
        let w = plan.warnings.join("\n");
        assert!(
            w.contains("the owner skipped (--no-owner): role \"kasmapp\" does not exist on the target; the database is owned by \"postgres\""),
            "{w}"
        );
        assert!(
            w.contains("GRANT CONNECT ON DATABASE TO \"gone\" skipped (--no-owner): role \"gone\""),
            "{w}"
        );
        assert!(
            w.contains("setting statement_timeout for role \"gone\" skipped (--no-owner)"),
            "{w}"
        );
        assert!(w.contains("unknown database privilege"), "{w}");
        // Warnings never carry setting values.
        assert!(!w.contains("5s"), "{w}");
    }

    #[test]
    fn settings_comment_and_limit_are_quoted() {
        let mut p = props();
        p.settings = vec![
            Setting {
                role: Some("o'brien \"x\"".into()),
                name: "search_path".into(),
                value: "\"$user\", public, \"odd \"\"s\"\"\"".into(),
            },
            Setting {
                role: None,
                name: "app.greeting".into(),
                value: "it's".into(),
            },
        ];
        p.connection_limit = Some(40);
        p.comment = Some("Kasm's data".into());
        let plan = steps("n", &p, "kasmapp", &present(&["o'brien \"x\""]));
        assert_eq!(
            sqls(&plan),
            [
                "ALTER ROLE \"o'brien \"\"x\"\"\" IN DATABASE \"n\" SET \"search_path\" TO '$user', 'public', 'odd \"s\"'",
                "ALTER DATABASE \"n\" SET \"app.greeting\" TO 'it''s'",
                "ALTER DATABASE \"n\" CONNECTION LIMIT 40",
                "COMMENT ON DATABASE \"n\" IS 'Kasm''s data'",
            ]
        );
        assert!(plan.steps.iter().all(|s| !s.required));
    }

    #[test]
    fn guc_lists_split_like_postgres() {
        let v = |s: &str| split_guc_list(s);
        assert_eq!(v("a, b"), Some(vec!["a".into(), "b".into()]));
        assert_eq!(v("  "), Some(vec![]));
        assert_eq!(v("\"\""), Some(vec!["".into()]));
        assert_eq!(v("\"a,b\" ,c"), Some(vec!["a,b".into(), "c".into()]));
        assert_eq!(v("\"unterminated"), None);
        assert_eq!(v("a,"), None);
        assert_eq!(v("a b"), None);
        assert_eq!(setting_value("search_path", "\"\""), "''");
        assert_eq!(setting_value("SEARCH_PATH", "a"), "'a'");
        assert_eq!(setting_value("search_path", ""), "''");
        assert_eq!(setting_value("work_mem", "a, b"), "'a, b'");
    }

    #[test]
    fn create_carries_owner_and_locale_for_the_servers_version() {
        let mut l = Locale::of(&props());
        assert_eq!(
            create_sql("n", None, None, 16),
            "CREATE DATABASE \"n\" TEMPLATE template0"
        );
        assert_eq!(
            create_sql("n", Some("kasm app"), Some(&l), 16),
            "CREATE DATABASE \"n\" TEMPLATE template0 OWNER \"kasm app\" ENCODING 'UTF8' \
             LC_COLLATE 'C.utf8' LC_CTYPE 'C.utf8' LOCALE_PROVIDER libc"
        );
        assert!(!create_sql("n", None, Some(&l), 14).contains("LOCALE_PROVIDER"));
        l.provider = Some("icu".into());
        l.provider_locale = Some("en-US".into());
        l.icu_rules = Some("&a < b".into());
        let sql = create_sql("n", None, Some(&l), 16);
        assert!(
            sql.ends_with("LOCALE_PROVIDER icu ICU_LOCALE 'en-US' ICU_RULES '&a < b'"),
            "{sql}"
        );
        assert!(
            l.describe().contains("icu locale \"en-US\""),
            "{}",
            l.describe()
        );
        l.provider = Some("builtin".into());
        l.icu_rules = None;
        assert!(
            create_sql("n", None, Some(&l), 17)
                .ends_with("LOCALE_PROVIDER builtin BUILTIN_LOCALE 'en-US'")
        );
        l.provider = Some("x'; DROP".into());
        assert!(create_sql("n", None, Some(&l), 17).contains("LOCALE_PROVIDER \"x'; DROP\""));
    }

    #[test]
    fn locale_candidates_fall_back_without_repeats() {
        let a = Locale::of(&props());
        let mut b = a.clone();
        b.collate = "C".into();
        assert_eq!(
            locale_candidates(Some(a.clone()), Some(b.clone())),
            vec![Some(a.clone()), Some(b.clone()), None]
        );
        assert_eq!(
            locale_candidates(Some(a.clone()), Some(a.clone())),
            vec![Some(a), None]
        );
        assert_eq!(locale_candidates(None, None), vec![None]);
        // An older backup: the existing database's locale before the server's default.
        assert_eq!(
            locale_candidates(None, Some(b.clone())),
            vec![Some(b), None]
        );
    }

    #[test]
    fn missing_roles_are_named_with_what_they_are_for() {
        let mut p = props();
        p.acl = Some(vec![grant(Some("kasmapp"), &["CONNECT"], false)]);
        p.settings = vec![Setting {
            role: Some("rep\"x".into()),
            name: "work_mem".into(),
            value: "1MB".into(),
        }];
        let needed = roles_needed(&p);
        assert_eq!(needed.len(), 2);
        let one: BTreeMap<_, _> = needed.clone().into_iter().take(1).collect();
        let m = missing_roles(&one);
        assert!(
            m.starts_with("role \"kasmapp\" does not exist on the target (the source database's owner, privileges); pass --create-roles to create it from the backup, create it yourself (CREATE ROLE \"kasmapp\") or pass --no-owner"),
            "{m}"
        );
        let m = missing_roles(&needed);
        assert!(
            m.starts_with("roles \"kasmapp\", \"rep\\\"x\" do not exist on the target"),
            "{m}"
        );
        assert!(m.contains("CREATE ROLE \"rep\"\"x\""), "{m}");
    }
}
