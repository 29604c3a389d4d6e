//! Tidy: the layering ARCHITECTURE.md states, checked by reading `src/` as text (in the spirit
//! of rust-analyzer's `tidy.rs`). Fails, naming the file and what it found, when
//!
//! - a capability module (everything under `src/` but `main.rs`, `lib.rs`, `commands/`,
//!   `cli.rs`, `output.rs` and `docs.rs`) imports `app`, `cli`, `commands` or `output`
//!   (`Outcome`): only the command layer sees the command line and shapes outcomes;
//! - a pure module ([`PURE`]) imports an I/O crate or module ([`IO`]) or reads the clock;
//! - `std::env` appears outside `main.rs`;
//! - advisory-lock SQL (`pg_advisory…`, `pg_try_advisory…`) appears outside `db/locks.rs`;
//! - an HTTP client (`hyper::client`, `hyper_util::client`) is used outside `net/`: every
//!   outbound HTTP connection goes through the one client, which honours the proxy variables;
//! - the folder-level import graph between capability folders has a cycle (printed);
//! - the file-level import graph (one node per module file, the command layer included) has a
//!   cycle (printed). A file's use of a module that contains it (`super`, its folder's
//!   `mod.rs`) is no edge: a parent declares its children and they build on it; everything
//!   else is (`crate::`, `super::sibling`, a child named from its parent).
//!
//! Comments are ignored (a doc link is not an import); string literals are ignored for imports
//! but not for the SQL check. Each checker is unit-tested on small broken examples below.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Modules that do no I/O, by path under `src/` (a trailing `/` is a whole folder; `*` one
/// path segment).
const PURE: &[&str] = &[
    "sizing/",
    "forward/*/encode.rs",
    "serve/schedule.rs",
    "serve/lines.rs",
    "backup/prune.rs",
    "backup/check.rs",
    "restore/plan.rs",
    "restore/creation.rs",
    "restore/role_plan.rs",
    "report/svg.rs",
    "report/scale.rs",
    "report/page.rs",
    "report/backups.rs",
    "report/html.rs",
    "logs/record.rs",
    "logs/partition_plan.rs",
    "logs/cap_plan.rs",
    "config/duration.rs",
    "config/siem.rs",
    "config/file_mode.rs",
    "config/byte_size.rs",
    "config/notify.rs",
    "notify/body.rs",
    "config/azure.rs",
    "config/proxy.rs",
    "net/proxy.rs",
    "archive/storage/azure/account.rs",
    "archive/wal.rs",
    "wal/guard.rs",
    "archive/storage/azure/request.rs",
    "archive/storage/azure/xml.rs",
    "maintenance/assess.rs",
    "maintenance/policy.rs",
    "maintenance/cap_check.rs",
    "retry.rs",
    "forward/backoff.rs",
    "read/cursor.rs",
    "read/filter.rs",
    "read/sql.rs",
    "read/render.rs",
];

/// Paths a pure module must not use: I/O crates, std's I/O modules, and kasm-db's modules that
/// talk to the outside.
const IO: &[&str] = &[
    "tokio",
    "tokio_postgres",
    "tokio_rustls",
    "deadpool_postgres",
    "postgres_types",
    "hyper",
    "hyper_util",
    "axum",
    "aws_sdk_s3",
    "aws_config",
    "notify",
    "std::fs",
    "std::net",
    "std::process",
    "std::env",
    "crate::pgtemp",
    "crate::pgtools",
    "crate::private",
    "crate::archive::storage",
    "crate::db::locks",
    "crate::db::migrate",
];

/// Calls that read the clock.
const CLOCK: &[&str] = &["Utc::now", "Local::now", "SystemTime::now", "Instant::now"];

/// What only the command layer may import.
const COMMAND_ONLY: &[&str] = &["app", "cli", "commands", "output"];

/// Files that make up the command layer (or the crate root), exempt from the capability rule.
fn is_command_layer(path: &str) -> bool {
    matches!(
        path,
        "main.rs" | "lib.rs" | "app.rs" | "cli.rs" | "output.rs" | "docs.rs"
    ) || path.starts_with("commands/")
}

fn is_pure(path: &str) -> bool {
    PURE.iter().any(|p| matches_pattern(p, path))
}

fn matches_pattern(pattern: &str, path: &str) -> bool {
    if let Some(folder) = pattern.strip_suffix('/') {
        return path.starts_with(&format!("{folder}/"));
    }
    let (p, f): (Vec<_>, Vec<_>) = (pattern.split('/').collect(), path.split('/').collect());
    p.len() == f.len() && p.iter().zip(&f).all(|(a, b)| *a == "*" || a == b)
}

/// The top-level module a file belongs to: `logs` for `logs/store.rs`, `pgtools` for
/// `pgtools.rs`.
fn folder(path: &str) -> &str {
    let first = path.split('/').next().unwrap_or(path);
    first.strip_suffix(".rs").unwrap_or(first)
}

// ---- lexing -----------------------------------------------------------------------------

/// `code` without its comments (line, block and doc comments), string literals kept.
fn strip_comments(code: &str) -> String {
    lex(code, false)
}

/// `code` without comments and with the contents of string and char literals blanked.
fn strip_comments_and_strings(code: &str) -> String {
    lex(code, true)
}

fn lex(code: &str, blank_strings: bool) -> String {
    let c: Vec<char> = code.chars().collect();
    let mut out = String::with_capacity(code.len());
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c[i] == 'r'
            && (next == Some('"') || next == Some('#'))
            && starts_literal(&c[..i])
            && raw_string_start(&c[i + 1..]).is_some()
        {
            let hashes = raw_string_start(&c[i + 1..]).unwrap_or(0);
            let close: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let start = i;
            i += 2 + hashes;
            while i < c.len() && !c[i..].starts_with(&close) {
                i += 1;
            }
            i = (i + close.len()).min(c.len());
            push_literal(&mut out, &c[start..i], blank_strings);
        } else if c[i] == '"' {
            let start = i;
            i += 1;
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i = (i + 1).min(c.len());
            push_literal(&mut out, &c[start..i], blank_strings);
        } else if c[i] == '\'' && is_char_literal(&c[i..]) {
            let start = i;
            i += if next == Some('\\') { 3 } else { 1 };
            while i < c.len() && c[i] != '\'' {
                i += 1;
            }
            i = (i + 1).min(c.len());
            push_literal(&mut out, &c[start..i], blank_strings);
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Whether a literal may start after `before` (not inside an identifier; `br"…"` is one).
fn starts_literal(before: &[char]) -> bool {
    match before.last() {
        Some('b') => !before[..before.len() - 1]
            .last()
            .is_some_and(|p| is_ident(*p)),
        Some(p) => !is_ident(*p),
        None => true,
    }
}

/// After an `r`: the number of `#`s of a raw string's opening, if `rest` opens one.
fn raw_string_start(rest: &[char]) -> Option<usize> {
    let hashes = rest.iter().take_while(|c| **c == '#').count();
    (rest.get(hashes) == Some(&'"')).then_some(hashes)
}

/// A char literal (`'a'`, `'\n'`, `'\''`), not a lifetime (`'a`).
fn is_char_literal(c: &[char]) -> bool {
    match c.get(1) {
        Some('\\') => true,
        Some(_) => c.get(2) == Some(&'\''),
        None => false,
    }
}

fn push_literal(out: &mut String, lit: &[char], blank: bool) {
    if blank {
        out.push_str("\"\"");
        // Keep line numbers.
        out.extend(lit.iter().filter(|c| **c == '\n'));
    } else {
        out.extend(lit);
    }
}

// ---- paths ------------------------------------------------------------------------------

/// Every path the code names, with its line: `use` trees expanded (`use std::{fs, io}` names
/// `std::fs` and `std::io`) and every `a::b::c` elsewhere. Comments and strings are ignored.
fn paths(code: &str) -> Vec<(usize, String)> {
    let code = strip_comments_and_strings(code);
    let mut out = Vec::new();
    // Inline paths (also the heads of `use` trees).
    let c: Vec<char> = code.chars().collect();
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        if c[i] == '\n' {
            line += 1;
            i += 1;
            continue;
        }
        let word_start = is_ident_start(c[i]) && (i == 0 || !is_ident(c[i - 1]));
        if word_start {
            let start = i;
            let mut end = i;
            loop {
                while end < c.len() && is_ident(c[end]) {
                    end += 1;
                }
                if c[end..].starts_with(&[':', ':'])
                    && c.get(end + 2).is_some_and(|x| is_ident_start(*x))
                {
                    end += 2;
                } else {
                    break;
                }
            }
            let p: String = c[start..end].iter().collect();
            if p.contains("::") {
                out.push((line, p));
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    // `use` trees, wherever they stand (also inside functions and test modules).
    let mut from = 0;
    while let Some(found) = code[from..].find("use ") {
        let at = from + found;
        from = at + 4;
        if code[..at].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let end = code[at..].find(';').map_or(code.len(), |e| at + e);
        let line = code[..at].matches('\n').count() + 1;
        let mut expanded = Vec::new();
        expand("", &code[at + 4..end], &mut expanded);
        out.extend(expanded.into_iter().map(|p| (line, p)));
    }
    let unique: BTreeSet<(usize, String)> = out.into_iter().collect();
    unique.into_iter().collect()
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Expand a `use` tree under `prefix` into full paths.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let tree = tree.trim();
    let join = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_string()
        } else if b == "self" {
            a.to_string()
        } else {
            format!("{a}::{b}")
        }
    };
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim_end_matches("::").trim();
        let inner = tree[open + 1..].trim_end();
        let inner = inner.strip_suffix('}').unwrap_or(inner);
        let base = join(prefix, head);
        for part in split_top(inner) {
            if !part.trim().is_empty() {
                expand(&base, &part, out);
            }
        }
    } else {
        let name = tree.split(" as ").next().unwrap_or(tree).trim();
        if !name.is_empty() {
            out.push(join(prefix, name));
        }
    }
}

/// Split at the commas not inside braces.
fn split_top(s: &str) -> Vec<String> {
    let (mut parts, mut cur, mut depth) = (Vec::new(), String::new(), 0);
    for ch in s.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    parts.push(cur);
    parts
}

/// Whether `path` is `prefix` or lies under it (`std::fs::read` is under `std::fs`, but
/// `tokio_postgres` is not under `tokio`).
fn under(path: &str, prefix: &str) -> bool {
    path == prefix || path.starts_with(&format!("{prefix}::"))
}

// ---- checks -----------------------------------------------------------------------------

/// A file: its path under `src/` and its text.
type File = (String, String);

/// Capability modules importing what only the command layer may.
fn check_capabilities(files: &[File]) -> Vec<String> {
    let mut bad = Vec::new();
    for (path, text) in files.iter().filter(|(p, _)| !is_command_layer(p)) {
        for (line, p) in paths(text) {
            if let Some(m) = COMMAND_ONLY
                .iter()
                .find(|m| under(&p, &format!("crate::{m}")) || under(&p, &format!("kasm_db::{m}")))
            {
                bad.push(format!(
                    "src/{path}:{line}: a capability module imports `{m}` ({p}); only src/commands/ may"
                ));
            }
        }
    }
    bad
}

/// Pure modules doing I/O or reading the clock.
fn check_pure(files: &[File]) -> Vec<String> {
    let mut bad = Vec::new();
    for (path, text) in files.iter().filter(|(p, _)| is_pure(p)) {
        for (line, p) in paths(text) {
            if let Some(io) = IO.iter().find(|io| under(&p, io)) {
                bad.push(format!(
                    "src/{path}:{line}: a pure module uses `{io}` ({p})"
                ));
            }
            if let Some(clock) = CLOCK.iter().find(|c| p.ends_with(*c)) {
                bad.push(format!(
                    "src/{path}:{line}: a pure module reads the clock ({clock})"
                ));
            }
        }
    }
    bad
}

/// `std::env` outside `main.rs`.
fn check_env(files: &[File]) -> Vec<String> {
    let mut bad = Vec::new();
    for (path, text) in files.iter().filter(|(p, _)| p != "main.rs") {
        for (line, p) in paths(text) {
            if under(&p, "std::env") {
                bad.push(format!(
                    "src/{path}:{line}: reads the process environment ({p}); only main.rs may"
                ));
            }
        }
    }
    bad
}

/// Advisory-lock SQL outside the registry.
fn check_locks(files: &[File]) -> Vec<String> {
    let mut bad = Vec::new();
    for (path, text) in files.iter().filter(|(p, _)| p != "db/locks.rs") {
        let code = strip_comments(text);
        for (n, line) in code.lines().enumerate() {
            if line.contains("pg_advisory") || line.contains("pg_try_advisory") {
                bad.push(format!(
                    "src/{path}:{}: advisory-lock SQL outside src/db/locks.rs",
                    n + 1
                ));
            }
        }
    }
    bad
}

/// HTTP clients outside `net/`, the one client that honours the proxy variables.
fn check_http_clients(files: &[File]) -> Vec<String> {
    let mut bad = Vec::new();
    for (path, text) in files.iter().filter(|(p, _)| !p.starts_with("net/")) {
        for (line, p) in paths(text) {
            if under(&p, "hyper::client") || under(&p, "hyper_util::client") {
                bad.push(format!(
                    "src/{path}:{line}: an HTTP client outside src/net/ ({p}); use net::client"
                ));
            }
        }
    }
    bad
}

/// The folder-level import graph between capability modules: folder → the folders it uses.
fn graph(files: &[File]) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<&str> = files
        .iter()
        .filter(|(p, _)| !is_command_layer(p))
        .map(|(p, _)| folder(p))
        .collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, text) in files.iter().filter(|(p, _)| !is_command_layer(p)) {
        let from = folder(path);
        let edges = g.entry(from.to_string()).or_default();
        for (_, p) in paths(text) {
            let mut seg = p.split("::");
            if seg.next() != Some("crate") {
                continue;
            }
            if let Some(to) = seg.next().filter(|to| *to != from && modules.contains(to)) {
                edges.insert(to.to_string());
            }
        }
    }
    g
}

/// A cycle of the graph, as `a -> b -> a`, if there is one.
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    // 0 unvisited, 1 on the stack, 2 done.
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|s| s == m).unwrap_or(0);
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, g, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, g, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn check_cycles(files: &[File]) -> Vec<String> {
    match find_cycle(&graph(files)) {
        Some(c) => vec![format!(
            "a module cycle between capability folders: {}",
            c.join(" -> ")
        )],
        None => Vec::new(),
    }
}

/// The module path of a file: `["logs", "purge"]` for `logs/purge.rs`, `["logs"]` for
/// `logs/mod.rs`, `[]` for the crate roots.
fn module_of(path: &str) -> Vec<String> {
    if matches!(path, "lib.rs" | "main.rs") {
        return Vec::new();
    }
    let mut segs: Vec<String> = path
        .strip_suffix(".rs")
        .unwrap_or(path)
        .split('/')
        .map(str::to_string)
        .collect();
    if segs.last().is_some_and(|s| s == "mod") {
        segs.pop();
    }
    segs
}

/// For each line (index 1 is line 1), how many inline `mod name { … }` blocks enclose its
/// start: there `super` and `self` name modules inside the file.
fn inline_depths(code: &str) -> Vec<usize> {
    let c: Vec<char> = strip_comments_and_strings(code).chars().collect();
    let mut depths = vec![0, 0];
    let (mut braces, mut mods, mut pending) = (0usize, Vec::<usize>::new(), false);
    for i in 0..c.len() {
        match c[i] {
            '\n' => depths.push(mods.len()),
            '{' => {
                braces += 1;
                if std::mem::take(&mut pending) {
                    mods.push(braces);
                }
            }
            '}' => {
                if mods.last() == Some(&braces) {
                    mods.pop();
                }
                braces = braces.saturating_sub(1);
            }
            ';' => pending = false,
            'm' if c[i..].starts_with(&['m', 'o', 'd'])
                && (i == 0 || !is_ident(c[i - 1]))
                && !c.get(i + 3).is_some_and(|x| is_ident(*x)) =>
            {
                pending = true;
            }
            _ => {}
        }
    }
    depths
}

/// The file a path names from `from` (at `depth` inline modules), if it is another module
/// file that does not contain `from`.
fn resolve(
    path: &str,
    from: &str,
    depth: usize,
    modules: &BTreeMap<Vec<String>, String>,
) -> Option<String> {
    let segs: Vec<&str> = path.split("::").collect();
    let me = module_of(from);
    let (base, rest): (Vec<String>, &[&str]) = match segs[0] {
        "crate" => (Vec::new(), &segs[1..]),
        "super" | "self" => {
            let ups = segs.iter().take_while(|s| **s == "super").count();
            let selfs = segs[ups..].iter().take_while(|s| **s == "self").count();
            if (ups == 0 && depth > 0) || (ups > 0 && ups <= depth) {
                return None;
            }
            let up = ups.saturating_sub(depth);
            if up > me.len() {
                return None;
            }
            (me[..me.len() - up].to_vec(), &segs[ups + selfs..])
        }
        first => {
            let mut child = me.clone();
            child.push(first.to_string());
            if depth > 0 || !modules.contains_key(&child) {
                return None;
            }
            (me.clone(), &segs[..])
        }
    };
    let full: Vec<String> = base
        .into_iter()
        .chain(rest.iter().map(|s| s.to_string()))
        .collect();
    let target = (1..=full.len())
        .rev()
        .find_map(|n| modules.get_key_value(&full[..n]))?;
    // The file itself, or a module that contains it (its parent declares it): no edge.
    (!me.starts_with(target.0)).then(|| target.1.clone())
}

/// The file-level import graph: file → the module files it uses (crate roots left out).
fn file_graph(files: &[File]) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeMap<Vec<String>, String> = files
        .iter()
        .filter(|(p, _)| !matches!(p.as_str(), "lib.rs" | "main.rs"))
        .map(|(p, _)| (module_of(p), p.clone()))
        .collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, text) in files
        .iter()
        .filter(|(p, _)| modules.values().any(|m| m == p))
    {
        let depths = inline_depths(text);
        let edges = g.entry(path.clone()).or_default();
        for (line, p) in paths(text) {
            let depth = depths.get(line).copied().unwrap_or(0);
            if let Some(to) = resolve(&p, path, depth, &modules) {
                edges.insert(to);
            }
        }
    }
    g
}

fn check_file_cycles(files: &[File]) -> Vec<String> {
    match find_cycle(&file_graph(files)) {
        Some(c) => {
            let c: Vec<String> = c.iter().map(|f| format!("src/{f}")).collect();
            vec![format!("a module cycle between files: {}", c.join(" -> "))]
        }
        None => Vec::new(),
    }
}

// ---- the tree ---------------------------------------------------------------------------

fn source_files() -> Vec<File> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src/") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(&root)
                    .expect("under src/")
                    .to_string_lossy()
                    .replace('\\', "/");
                let text = std::fs::read_to_string(&path).expect("read a source file");
                files.push((rel, text));
            }
        }
    }
    files.sort();
    files
}

fn assert_clean(what: &str, found: Vec<String>) {
    assert!(found.is_empty(), "{what}:\n{}", found.join("\n"));
}

#[test]
fn the_tree_reads_as_expected() {
    let files = source_files();
    // The checks see the tree they are meant for.
    let names: BTreeSet<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    for expected in [
        "main.rs",
        "commands/mod.rs",
        "db/locks.rs",
        "sizing/plan.rs",
    ] {
        assert!(names.contains(expected), "src/{expected} not found");
    }
    for pattern in PURE {
        assert!(
            files.iter().any(|(p, _)| matches_pattern(pattern, p)),
            "the pure module pattern {pattern} matches no file under src/"
        );
    }
    // The locks registry and main.rs are where the other checks look away from; they must be
    // seen to hold what is checked for, or the checks would be checking nothing.
    let text = |p: &str| &files.iter().find(|(f, _)| f == p).expect(p).1;
    assert!(strip_comments(text("db/locks.rs")).contains("pg_try_advisory"));
    assert!(
        paths(text("main.rs"))
            .iter()
            .any(|(_, p)| under(p, "std::env"))
    );
    assert!(
        graph(&files)["forward"].contains("logs"),
        "the import graph misses forward -> logs"
    );
}

#[test]
fn capabilities_do_not_import_the_command_layer() {
    assert_clean(
        "capability modules importing app/cli/commands/output",
        check_capabilities(&source_files()),
    );
}

#[test]
fn pure_modules_do_no_io() {
    assert_clean("pure modules doing I/O", check_pure(&source_files()));
}

#[test]
fn only_main_reads_the_environment() {
    assert_clean("std::env outside main.rs", check_env(&source_files()));
}

#[test]
fn advisory_locks_only_in_the_registry() {
    assert_clean(
        "advisory-lock SQL outside db/locks.rs",
        check_locks(&source_files()),
    );
}

#[test]
fn http_clients_only_in_net() {
    assert_clean(
        "HTTP clients outside src/net/",
        check_http_clients(&source_files()),
    );
}

#[test]
fn an_http_client_outside_net_is_caught() {
    for bad in [
        "use hyper::client::conn::http1::SendRequest;",
        "fn f() { hyper::client::conn::http1::handshake(io); }",
        "use hyper_util::client::legacy::Client;",
    ] {
        assert_eq!(
            check_http_clients(&[f("notify/service.rs", bad)]).len(),
            1,
            "{bad}"
        );
        assert!(check_http_clients(&[f("net/client.rs", bad)]).is_empty());
    }
    // The server half is not a client.
    assert!(check_http_clients(&[f("serve/mod.rs", "use hyper::server::conn::http1;")]).is_empty());
}

#[test]
fn no_cycles_between_capability_folders() {
    assert_clean("cycles", check_cycles(&source_files()));
}

#[test]
fn no_cycles_between_files() {
    let files = source_files();
    let g = file_graph(&files);
    // The graph sees the edges it is meant for (a parent's child, `super::sibling`, `crate::`).
    for (from, to) in [
        ("archive/storage/mod.rs", "archive/storage/s3.rs"),
        ("logs/purge_cap.rs", "logs/purge_drop.rs"),
        ("report/page.rs", "report/html.rs"),
        ("forward/mod.rs", "logs/ingest.rs"),
    ] {
        assert!(g[from].contains(to), "the file graph misses {from} -> {to}");
    }
    assert_clean("cycles between files", check_file_cycles(&files));
}

// ---- the checkers, on small broken examples ------------------------------------------------

fn f(path: &str, text: &str) -> File {
    (path.to_string(), text.to_string())
}

#[test]
fn use_trees_and_inline_paths_are_found() {
    let p: Vec<String> = paths(
        "use std::{fs, io::{self, Write}};\nuse crate::db::locks::Lock as L;\n\
         fn x() { let _ = tokio::time::sleep(d); crate::logs::record::parse(\"a::b\"); }",
    )
    .into_iter()
    .map(|(_, p)| p)
    .collect();
    for want in [
        "std::fs",
        "std::io",
        "std::io::Write",
        "crate::db::locks::Lock",
        "tokio::time::sleep",
        "crate::logs::record::parse",
    ] {
        assert!(p.iter().any(|x| x == want), "{want} not in {p:?}");
    }
    assert!(
        !p.iter().any(|x| x == "a::b"),
        "a string's text is not a path"
    );
    assert!(under("std::fs::read", "std::fs"));
    assert!(!under("tokio_postgres::Client", "tokio"));
}

#[test]
fn comments_are_not_code_but_strings_are_for_sql() {
    let code = "// use crate::app::Ctx;\n/* crate::cli */ let s = \"// not a comment\"; /// doc\n";
    let stripped = strip_comments(code);
    assert!(!stripped.contains("crate::app"));
    assert!(!stripped.contains("crate::cli"));
    assert!(stripped.contains("\"// not a comment\""));
    assert!(!stripped.contains("doc"));
    let raw = "let q = r#\"SELECT 1 -- \"quoted\" // x\"#; let c = '\"'; let l: &'a str;";
    assert_eq!(
        strip_comments(raw),
        raw,
        "raw strings and char literals are kept whole"
    );
}

#[test]
fn a_capability_importing_the_command_layer_is_caught() {
    for bad in [
        "use crate::app::Ctx;",
        "use crate::cli::SizeArgs;",
        "use crate::{db, output::Outcome};",
        "fn f(c: &crate::commands::Ctx) {}",
    ] {
        let found = check_capabilities(&[f("maintenance/size.rs", bad)]);
        assert_eq!(found.len(), 1, "{bad}: {found:?}");
        assert!(
            found[0].starts_with("src/maintenance/size.rs:1:"),
            "{found:?}"
        );
    }
    // The command layer may; a doc comment naming it is no import.
    assert!(check_capabilities(&[f("commands/size.rs", "use crate::cli::SizeArgs;")]).is_empty());
    assert!(
        check_capabilities(&[f("verify/mod.rs", "//! never sees [`crate::app::Ctx`]")]).is_empty()
    );
}

#[test]
fn a_pure_module_doing_io_is_caught() {
    for bad in [
        "use tokio_postgres::Client;",
        "fn f() { std::fs::read(\"x\"); }",
        "use std::{fmt, process::Command};",
        "use crate::archive::storage::Storage;",
        "fn f() -> DateTime<Utc> { chrono::Utc::now() }",
    ] {
        for path in [
            "sizing/webapp.rs",
            "forward/hec/encode.rs",
            "maintenance/policy.rs",
        ] {
            let found = check_pure(&[f(path, bad)]);
            assert_eq!(found.len(), 1, "{path}: {bad}: {found:?}");
        }
    }
    // The same code in a module that may do I/O passes.
    assert!(check_pure(&[f("logs/store.rs", "use tokio_postgres::Client;")]).is_empty());
    assert!(check_pure(&[f("sizing/plan.rs", "use std::fmt::Write;")]).is_empty());
}

#[test]
fn the_environment_outside_main_is_caught() {
    for bad in [
        "fn f() { std::env::var(\"PATH\"); }",
        "use std::env;",
        "use std::{env, fs};",
    ] {
        assert_eq!(check_env(&[f("pgtools.rs", bad)]).len(), 1, "{bad}");
        assert!(check_env(&[f("main.rs", bad)]).is_empty());
    }
    // `env!` (compile time) and a snapshot named env are not the process environment.
    assert!(
        check_env(&[f(
            "x.rs",
            "let d = env!(\"CARGO_MANIFEST_DIR\"); let e = ctx.env;"
        )])
        .is_empty()
    );
}

#[test]
fn advisory_lock_sql_outside_the_registry_is_caught() {
    let bad = "client.execute(\"SELECT pg_try_advisory_lock($1)\", &[&k]);";
    assert_eq!(check_locks(&[f("serve/jobs.rs", bad)]).len(), 1);
    assert_eq!(
        check_locks(&[f(
            "logs/purge.rs",
            "let q = \"select pg_advisory_xact_lock(1)\";"
        )])
        .len(),
        1
    );
    assert!(check_locks(&[f("db/locks.rs", bad)]).is_empty());
    assert!(check_locks(&[f("serve/jobs.rs", "// no pg_advisory_lock here")]).is_empty());
}

#[test]
fn a_cycle_is_caught_and_printed() {
    let files = [
        f("backup/run.rs", "use crate::verify::verify;"),
        f("verify/mod.rs", "use crate::restore::run;"),
        f(
            "restore/run.rs",
            "fn f() { crate::backup::pgdump::find(); }",
        ),
        f("archive/mod.rs", "use crate::error::Result;"),
        f("error.rs", ""),
    ];
    let found = check_cycles(&files);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("backup -> verify -> restore -> backup"),
        "{found:?}"
    );
    // Break it: no cycle. The command layer may import every capability.
    let acyclic = [
        f("backup/run.rs", "use crate::archive::x;"),
        f("verify/mod.rs", "use crate::restore::run;"),
        f("restore/run.rs", "use crate::archive::y;"),
        f("archive/mod.rs", ""),
        f(
            "commands/backup.rs",
            "use crate::verify; use crate::backup;",
        ),
        f("logs/copy.rs", "/// see [`crate::testing::x`]"),
        f("testing.rs", "use crate::logs::copy;"),
    ];
    assert!(
        check_cycles(&acyclic).is_empty(),
        "{:?}",
        check_cycles(&acyclic)
    );
    // A file's own folder is no edge; an unknown name (`crate::Error`) neither.
    let g = graph(&[f("db/mod.rs", "use crate::db::x; use crate::Error;")]);
    assert!(g["db"].is_empty());
}

#[test]
fn a_file_cycle_is_caught_and_printed() {
    // Within one folder, which the folder check cannot see: the storage layer reading a
    // backup's layout (s3 -> manifest -> storage, which declares s3).
    let files = [
        f("lib.rs", "pub mod archive;"),
        f("archive/mod.rs", "pub mod manifest; pub mod storage;"),
        f(
            "archive/storage/mod.rs",
            "pub mod s3;\nfn open() { s3::S3::connect(); }",
        ),
        f(
            "archive/storage/s3.rs",
            "use super::Storage;\nfn f() { let n = crate::archive::manifest::MANIFEST_FILE; }",
        ),
        f("archive/manifest.rs", "use super::storage::ObjectInfo;"),
    ];
    assert!(check_cycles(&files).is_empty());
    let found = check_file_cycles(&files);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains(
            "src/archive/manifest.rs -> src/archive/storage/mod.rs -> src/archive/storage/s3.rs -> src/archive/manifest.rs"
        ),
        "{found:?}"
    );
    // Two siblings through `super::`, and through a `use super::x` then `x::f()`.
    let found = check_file_cycles(&[
        f(
            "logs/purge.rs",
            "use super::purge_cap;\nfn f() { purge_cap::apply(); }",
        ),
        f("logs/purge_cap.rs", "fn g() { super::purge::table(); }"),
        f("logs/mod.rs", "pub mod purge; pub mod purge_cap;"),
    ]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("src/logs/purge.rs -> src/logs/purge_cap.rs -> src/logs/purge.rs"),
        "{found:?}"
    );
    // Broken: no cycle. A child using its parent is no edge, nor is a test module's `super`
    // (the file itself), nor a doc comment.
    let acyclic = [
        f(
            "logs/mod.rs",
            "pub mod purge; pub mod purge_cap;\nuse purge::x;",
        ),
        f("logs/purge.rs", "use super::purge_cap;\nuse super::Pool;"),
        f(
            "logs/purge_cap.rs",
            "//! see [`super::purge::purge`]\nfn g() {}\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::Pool;\n}",
        ),
    ];
    assert!(
        check_file_cycles(&acyclic).is_empty(),
        "{:?}",
        check_file_cycles(&acyclic)
    );
    let g = file_graph(&acyclic);
    assert!(g["logs/purge_cap.rs"].is_empty(), "{g:?}");
    assert!(g["logs/mod.rs"].contains("logs/purge.rs"), "{g:?}");
    assert!(g["logs/purge.rs"].contains("logs/purge_cap.rs"), "{g:?}");
    assert!(!g["logs/purge.rs"].contains("logs/mod.rs"), "{g:?}");
}

#[test]
fn inline_modules_are_seen() {
    let d = inline_depths(
        "fn a() {}\nmod tests {\n    use super::*;\n    fn x() { let y = '{'; }\n}\nuse b;\n",
    );
    assert_eq!(&d[1..7], &[0, 0, 1, 1, 1, 0]);
}
