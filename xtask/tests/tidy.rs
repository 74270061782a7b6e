//! Tidy checks on the source tree (rust-analyzer's `xtask/src/tidy.rs` habit), run by
//! `cargo test -p xtask`:
//!
//! - in each crate, no module names the crate root (`crate::item_of_lib_or_main`, or `super::`
//!   climbing to it): the root declares the modules and dispatches; what modules share lives in a
//!   module of its own. And the modules form no dependency cycle.
//! - ARCHITECTURE.md's Codemap names only files, directories and Rust items that exist.
//! - The event files carry no claim of being generated (nothing generates them).
//! - One version and one set of names everywhere.

#![allow(unreachable_pub, reason = "a test crate")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The source directories of the crates whose module graphs are checked.
const CRATE_SOURCES: [&str; 4] = ["crates/dify-plugin/src", "src", "xtask/src", "crates/openai-mock/src"];

/// Every `.rs` file under `dir`, recursively, skipping `target/` and hidden directories.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading Rust source: comments and literals blanked, then tokens, then test-only items dropped.
// ---------------------------------------------------------------------------------------------

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `source` with comments, string literals and character literals blanked (newlines kept, so
/// line numbers stay), leaving only code to scan.
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let after_ident = i > 0 && is_ident_char(chars[i - 1]);
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if let Some(end) = (!after_ident).then(|| raw_string_end(&chars, i)).flatten() {
            while i < end {
                out.push(blank(chars[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // A character literal ('x', '\n', '\'', '\u{1F600}'); anything else is a lifetime or label.
            let close = if next == Some('\\') {
                (i + 3..chars.len()).find(|&at| chars[at] == '\'').unwrap_or(chars.len() - 1)
            } else {
                i + 2
            };
            while i <= close {
                out.push(' ');
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The end (exclusive) of a raw string literal (`r"…"`, `r#"…"#`, `br"…"`) starting at `at`.
fn raw_string_end(chars: &[char], at: usize) -> Option<usize> {
    let mut i = at;
    if chars.get(i) == Some(&'b') {
        i += 1;
    }
    if chars.get(i) != Some(&'r') {
        return None;
    }
    i += 1;
    let hashes = chars[i..].iter().take_while(|&&c| c == '#').count();
    i += hashes;
    if chars.get(i) != Some(&'"') {
        return None;
    }
    i += 1;
    while i < chars.len() {
        if chars[i] == '"' && chars[i + 1..].iter().take(hashes).filter(|&&c| c == '#').count() == hashes {
            return Some(i + 1 + hashes);
        }
        i += 1;
    }
    Some(chars.len())
}

/// A token of code and the line it is on: an identifier, `::`, or one other character.
#[derive(Debug, Clone)]
struct Token {
    text: String,
    line: usize,
}

fn tokens(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if is_ident_char(c) {
            let start = i;
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            out.push(Token { text: chars[start..i].iter().collect(), line });
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push(Token { text: "::".to_owned(), line });
            i += 2;
        } else {
            out.push(Token { text: c.to_string(), line });
            i += 1;
        }
    }
    out
}

fn is(tokens: &[Token], at: usize, text: &str) -> bool {
    tokens.get(at).is_some_and(|token| token.text == text)
}

fn is_ident(tokens: &[Token], at: usize) -> bool {
    tokens.get(at).is_some_and(|token| token.text.starts_with(|c: char| c.is_alphabetic() || c == '_'))
}

/// The index after the bracket that closes the one at `open` (`(`, `[` or `{`).
fn after_closing(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0i32;
    for (at, token) in tokens.iter().enumerate().skip(open) {
        match token.text.as_str() {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => {
                depth -= 1;
                if depth == 0 {
                    return at + 1;
                }
            }
            _ => {}
        }
    }
    tokens.len()
}

/// The index after the item starting at `at`: its `;`, or its `{ … }` body.
fn after_item(tokens: &[Token], mut at: usize) -> usize {
    let mut depth = 0i32;
    while at < tokens.len() {
        match tokens[at].text.as_str() {
            "(" | "[" => depth += 1,
            ")" | "]" => depth -= 1,
            ";" if depth == 0 => return at + 1,
            "{" if depth == 0 => return after_closing(tokens, at),
            "}" if depth == 0 => return at,
            _ => {}
        }
        at += 1;
    }
    at
}

/// `tokens` without the items under `#[cfg(test)]` (test code may reach anywhere); none at all
/// when the file itself is `#![cfg(test)]`.
fn without_test_items(tokens: Vec<Token>) -> Vec<Token> {
    let cfg_test = |at: usize| {
        ["[", "cfg", "(", "test", ")", "]"].iter().enumerate().all(|(offset, text)| is(&tokens, at + offset, text))
    };
    let mut out = Vec::with_capacity(tokens.len());
    let mut at = 0;
    while at < tokens.len() {
        if is(&tokens, at, "#") && is(&tokens, at + 1, "!") && cfg_test(at + 2) {
            return Vec::new();
        }
        if is(&tokens, at, "#") && cfg_test(at + 1) {
            at += 7;
            while is(&tokens, at, "#") && is(&tokens, at + 1, "[") {
                at = after_closing(&tokens, at + 1);
            }
            at = after_item(&tokens, at);
            continue;
        }
        out.push(tokens[at].clone());
        at += 1;
    }
    out
}

/// A file's code as tokens, test-only items left out.
fn shipped_tokens(source: &str) -> Vec<Token> {
    without_test_items(tokens(&code_only(source)))
}

// ---------------------------------------------------------------------------------------------
// The module graph.
// ---------------------------------------------------------------------------------------------

/// The first names after the crate root in the path or `use` tree starting at `at` (just after
/// `crate::`): `x` for `x::…`, each element's first name for `{a::{b, c}, d}`, and `*` or `self`
/// for the root itself.
fn names_after_root(tokens: &[Token], at: usize) -> Vec<String> {
    if is_ident(tokens, at) {
        return vec![tokens[at].text.clone()];
    }
    if is(tokens, at, "*") {
        return vec!["*".to_owned()];
    }
    if !is(tokens, at, "{") {
        return Vec::new();
    }
    let close = after_closing(tokens, at) - 1;
    let mut names = Vec::new();
    let mut element = at + 1;
    while element < close {
        names.extend(names_after_root(tokens, element));
        // On to the next element: past this one's own groups, to the `,` at this level.
        let mut i = element;
        while i < close && !is(tokens, i, ",") {
            i = if matches!(tokens[i].text.as_str(), "{" | "(" | "[") { after_closing(tokens, i) } else { i + 1 };
        }
        element = i + 1;
    }
    names
}

/// A name one file reaches through its crate root.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RootName {
    /// The top-level inline module (`mod x { … }` in the crate root's file) it is written in.
    inline_module: Option<String>,
    /// The first name after the root: a module, an item of the root, or `*`/`self`.
    name: String,
    line: usize,
    /// As written: `crate::x` or `super::x`.
    written: String,
}

/// What one file says about its crate's top-level modules: the names it reaches through the
/// crate root (`crate::x`, and `super::x` where that climbs to the root), and, for a crate
/// root's file, the modules it declares. `depth` is the file's module depth: 0 for the crate
/// root (`lib.rs`, `main.rs`), 1 for `a.rs` and `a/mod.rs`, 2 for `a/b.rs`.
fn scan(tokens: &[Token], depth: usize) -> (Vec<RootName>, Vec<String>) {
    let mut found = Vec::new();
    let mut declared = Vec::new();
    let mut braces = 0usize;
    // Inline modules around the current token: (name, the brace depth of their body).
    let mut inline: Vec<(String, usize)> = Vec::new();
    for at in 0..tokens.len() {
        let text = tokens[at].text.as_str();
        let module_depth = depth + inline.len();
        let inline_module = if depth == 0 { inline.first().map(|(name, _)| name.clone()) } else { None };
        match text {
            "{" => braces += 1,
            "}" => {
                if inline.last().is_some_and(|(_, body)| *body == braces) {
                    inline.pop();
                }
                braces = braces.saturating_sub(1);
            }
            "mod" if is_ident(tokens, at + 1) && (is(tokens, at + 2, "{") || is(tokens, at + 2, ";")) => {
                let name = tokens[at + 1].text.clone();
                if module_depth == 0 {
                    declared.push(name.clone());
                }
                if is(tokens, at + 2, "{") {
                    inline.push((name, braces + 1));
                }
            }
            "crate" if is(tokens, at + 1, "::") && !(at > 0 && is(tokens, at - 1, "::")) => {
                for name in names_after_root(tokens, at + 2) {
                    let written = format!("crate::{name}");
                    found.push(RootName { inline_module: inline_module.clone(), name, line: tokens[at].line, written });
                }
            }
            "super" if is(tokens, at + 1, "::") && !(at > 0 && is(tokens, at - 1, "::")) => {
                let mut climbs = 0;
                while is(tokens, at + 2 * climbs, "super") && is(tokens, at + 2 * climbs + 1, "::") {
                    climbs += 1;
                }
                if climbs == module_depth {
                    for name in names_after_root(tokens, at + 2 * climbs) {
                        let written = format!("{}{name}", "super::".repeat(climbs));
                        found.push(RootName {
                            inline_module: inline_module.clone(),
                            name,
                            line: tokens[at].line,
                            written,
                        });
                    }
                }
            }
            _ => {}
        }
    }
    (found, declared)
}

/// The first names after the crate root that `source` reaches, written at module `depth`.
fn root_names(source: &str, depth: usize) -> BTreeSet<String> {
    scan(&shipped_tokens(source), depth).0.into_iter().map(|found| found.name).collect()
}

/// One crate's graph of top-level modules, its crate roots among the nodes (`lib`, `main`).
#[derive(Debug, Default)]
struct Graph {
    roots: BTreeSet<String>,
    /// (from, to) → where the edge is written: `file:line (written)`, each place.
    edges: BTreeMap<(String, String), Vec<String>>,
}

impl Graph {
    fn add(&mut self, from: &str, to: &str, place: String) {
        if from != to {
            self.edges.entry((from.to_owned(), to.to_owned())).or_default().push(place);
        }
    }

    /// Edges from a module into a crate root.
    fn root_references(&self) -> Vec<String> {
        self.edges
            .iter()
            .filter(|((from, to), _)| !self.roots.contains(from) && self.roots.contains(to))
            .flat_map(|((from, to), places)| places.iter().map(move |place| format!("{from} → {to}: {place}")))
            .collect()
    }

    /// The module-to-module edges, as adjacency.
    fn module_edges(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut adjacency: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, to) in self.edges.keys() {
            if !self.roots.contains(from) && !self.roots.contains(to) {
                adjacency.entry(from.clone()).or_default().insert(to.clone());
            }
        }
        adjacency
    }
}

/// The module graph of the crate(s) whose sources are in `src`. A file's node is its top-level
/// module (`events/call.rs` → `events`); `lib.rs` and `main.rs` are root nodes, and so is
/// `bin/*.rs` (crates of their own, which declare no module here). A root's edges are the
/// modules it declares; a module's are the modules, and the root items, it names through
/// `crate::` (or `super::` up to the root).
fn module_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph = Graph::default();
    let mut modules = BTreeSet::new();
    let mut scanned = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(src).unwrap();
        let parts: Vec<String> =
            relative.components().map(|part| part.as_os_str().to_string_lossy().into_owned()).collect();
        let stem = |part: &str| part.strip_suffix(".rs").unwrap_or(part).to_owned();
        let (node, depth) = match parts.as_slice() {
            [only] if only == "lib.rs" || only == "main.rs" => (stem(only), 0),
            [bin, ..] if bin == "bin" => (format!("bin/{}", stem(&parts[1])), 0),
            [first, ..] => {
                let last = parts.last().unwrap();
                let depth = if last == "mod.rs" { parts.len() - 1 } else { parts.len() };
                (stem(first), depth)
            }
            [] => unreachable!(),
        };
        if depth == 0 {
            graph.roots.insert(node.clone());
        } else {
            modules.insert(node.clone());
        }
        let (found, declared) = scan(&shipped_tokens(&std::fs::read_to_string(file).unwrap()), depth);
        let shown = file.strip_prefix(Path::new(ROOT)).unwrap_or(file).display().to_string();
        scanned.push((shown, node, depth, found, declared));
    }
    // Which root each module belongs to: the one that declares it (`lib` before `main`).
    let mut root_of: BTreeMap<String, String> = BTreeMap::new();
    for (_, node, depth, _, declared) in &scanned {
        if *depth == 0 {
            for module in declared {
                modules.insert(module.clone());
                if !root_of.contains_key(module) || node == "lib" {
                    root_of.insert(module.clone(), node.clone());
                }
            }
        }
    }
    let default_root = if graph.roots.contains("lib") { "lib" } else { "main" }.to_owned();
    for (file, node, depth, found, declared) in &scanned {
        if *depth == 0 {
            for module in declared {
                graph.add(node, module, format!("{file}: mod {module}"));
            }
        }
        for reach in found {
            let from = match (&reach.inline_module, *depth) {
                (Some(inline), 0) => inline.clone(),
                (None, 0) => continue, // the root naming its own items or modules
                _ => node.clone(),
            };
            let root = root_of.get(&from).unwrap_or(&default_root).clone();
            let to = if modules.contains(&reach.name) { reach.name.clone() } else { root };
            graph.add(&from, &to, format!("{file}:{} ({})", reach.line, reach.written));
        }
    }
    graph
}

/// The strongly connected sets of more than one node in `graph`: each holds a cycle.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    let reachable = |start: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![start.to_owned()];
        while let Some(node) = todo.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let nodes: BTreeSet<&String> = graph.iter().flat_map(|(from, to)| std::iter::once(from).chain(to)).collect();
    let reach: BTreeMap<&String, BTreeSet<String>> = nodes.iter().map(|node| (*node, reachable(node))).collect();
    let mut sets: Vec<BTreeSet<String>> = Vec::new();
    for node in &nodes {
        if sets.iter().any(|set| set.contains(*node)) || !reach[node].contains(*node) {
            continue;
        }
        let set: BTreeSet<String> = reach[node].iter().filter(|other| reach[other].contains(*node)).cloned().collect();
        sets.push(set);
    }
    sets
}

/// In every crate of [`CRATE_SOURCES`]: no module names the crate root, and no modules depend on
/// each other in a cycle. (A cycle through the root needs an edge into it, reported as such.)
#[test]
fn library_modules_form_no_dependency_cycle() {
    let mut problems = Vec::new();
    let mut module_edges = 0;
    for krate in CRATE_SOURCES {
        let graph = module_graph(&Path::new(ROOT).join(krate));
        assert!(!graph.roots.is_empty(), "{krate}: no lib.rs or main.rs found; is the scan broken?");
        assert!(!graph.edges.is_empty(), "{krate}: no module found; is the scan broken?");
        for reference in graph.root_references() {
            problems.push(format!("{krate}: a module names the crate root: {reference}"));
        }
        let modules = graph.module_edges();
        module_edges += modules.values().map(BTreeSet::len).sum::<usize>();
        for set in cycles(&modules) {
            let edges: Vec<String> = graph
                .edges
                .iter()
                .filter(|((from, to), _)| set.contains(from) && set.contains(to))
                .map(|((from, to), places)| format!("    {from} → {to}: {}", places.join(", ")))
                .collect();
            problems.push(format!("{krate}: modules in a dependency cycle {set:?}; its edges:\n{}", edges.join("\n")));
        }
    }
    assert!(module_edges > 0, "no module names another one anywhere; is the scan broken?");
    assert!(
        problems.is_empty(),
        "module structure (a module names what it uses by its own module, never through the crate root):\n{}",
        problems.join("\n")
    );
}

/// The parser reads every `use crate::` statement, nested groups and all, and inline paths; it
/// skips comments, strings and test-only items, and follows `super::` when it climbs to the
/// root. (The scan it replaced read the first `use crate::{…}` group of a file up to its first
/// `}`: here that gave `a` and `c`, never `d`, `e`, `i`, `l`, `n` or `o`.)
#[test]
fn the_reference_parser_reads_every_use_tree() {
    let source = r##"
use crate::{a::{b, c}, d};
use std::fmt;
pub(crate) use crate::{
    e::{self, f::{g, h}},
    i as j,
};
/// Docs may say crate::doc_only, and /* crate::block_only */ too.
pub(crate) fn x() -> &'static str {
    crate::k::call(crate::k::ARG, '"');
    let _ = r#"crate::raw_only "#;
    "crate::string_only"
}
#[cfg(test)]
mod tests {
    use crate::test_only;
}
#[cfg(test)]
fn helper() -> [u8; 2] { crate::test_helper_only::make() }
fn after_tests() {
    crate::l::m();
}
pub(super) fn visible() {}
use super::n;
use super::{o, p::q};
mod inner {
    use super::*;
}
"##;
    let expected: BTreeSet<String> = ["a", "d", "e", "i", "k", "l", "n", "o", "p"].map(String::from).into();
    assert_eq!(root_names(source, 1), expected, "in a top-level module");
    // Two levels down, `super::` stays in the module: only `crate::` names reach the root.
    let deeper: BTreeSet<String> = ["a", "d", "e", "i", "k", "l"].map(String::from).into();
    assert_eq!(root_names(source, 2), deeper, "in a submodule");
    assert_eq!(root_names("use crate::*;\nfn f() { crate::Item::new() }", 1), ["*", "Item"].map(String::from).into());
}

#[test]
fn a_crate_roots_inline_modules_are_nodes_and_may_not_name_it() {
    let dir = std::env::temp_dir().join(format!("xtask-tidy-graph-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("b")).unwrap();
    std::fs::write(dir.join("lib.rs"), "mod a;\nmod b;\npub use a::Thing;\nmod ids {\n    use super::Thing;\n}\n")
        .unwrap();
    std::fs::write(dir.join("a.rs"), "use crate::b::helper;\npub struct Thing;\n").unwrap();
    std::fs::write(dir.join("b/mod.rs"), "mod c;\npub fn helper() {}\n").unwrap();
    std::fs::write(dir.join("b/c.rs"), "use crate::{Thing, a};\n").unwrap();
    let graph = module_graph(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    let edges: BTreeSet<(&str, &str)> = graph.edges.keys().map(|(from, to)| (from.as_str(), to.as_str())).collect();
    let expected: BTreeSet<(&str, &str)> =
        [("lib", "a"), ("lib", "b"), ("lib", "ids"), ("a", "b"), ("b", "a"), ("b", "lib"), ("ids", "lib")].into();
    assert_eq!(edges, expected);
    assert_eq!(graph.root_references().len(), 2, "{:?}", graph.root_references());
    assert_eq!(cycles(&graph.module_edges()), vec![BTreeSet::from(["a".to_owned(), "b".to_owned()])]);
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["c".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
        ("d".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]
    .into();
    assert_eq!(cycles(&graph), vec![BTreeSet::from(["a".to_owned(), "b".to_owned(), "c".to_owned()])]);
    let acyclic: BTreeMap<String, BTreeSet<String>> = [("a".to_owned(), BTreeSet::from(["b".to_owned()]))].into();
    assert!(cycles(&acyclic).is_empty());
}

// ---------------------------------------------------------------------------------------------
// ARCHITECTURE.md's Codemap.
// ---------------------------------------------------------------------------------------------

/// The fenced block of ARCHITECTURE.md's "## Codemap" section, as (line number, text) pairs.
fn codemap_block(architecture: &str) -> Vec<(usize, &str)> {
    let lines: Vec<&str> = architecture.lines().collect();
    let heading = lines.iter().position(|line| line.trim_end() == "## Codemap").expect("a \"## Codemap\" section");
    let section_end =
        lines[heading + 1..].iter().position(|line| line.starts_with("## ")).map_or(lines.len(), |at| heading + 1 + at);
    let open = lines[heading..section_end]
        .iter()
        .position(|line| line.starts_with("```"))
        .map(|at| heading + at)
        .expect("a fenced block in the Codemap section");
    let close = lines[open + 1..section_end]
        .iter()
        .position(|line| line.starts_with("```"))
        .map(|at| open + 1 + at)
        .expect("the Codemap's fenced block closed within its section");
    (open + 1..close).map(|at| (at + 1, lines[at])).collect()
}

/// The file extensions that make a word of the Codemap a file path.
const FILE_EXTENSIONS: [&str; 9] = [".rs", ".md", ".py", ".yaml", ".yml", ".toml", ".sh", ".txt", ".json"];

/// `word` as a repository path, when it is written as one: `a/b/` (a directory) or `a/b.rs`
/// (a file of a known kind), around it only punctuation. Prose with slashes (`get/set`,
/// `HTTP/1.1`, `/invoke`), globs (`plugin/*.yaml`) and paths outside the repository (`../x/`)
/// are not paths here.
fn as_path(word: &str) -> Option<&str> {
    let word = word.trim_start_matches(['(', '[', '`', '"', '\'']);
    let word = word.strip_suffix("'s").unwrap_or(word);
    let word = word.trim_end_matches([')', ']', ',', ';', ':', '.', '`', '"', '\'']);
    let path_chars = word.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
    let is_dir =
        word.len() > 1 && word.ends_with('/') && word.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
    let is_file = FILE_EXTENSIONS.iter().any(|extension| word.len() > extension.len() && word.ends_with(extension));
    (path_chars && !word.starts_with("..") && !word.starts_with('/') && (is_dir || is_file)).then_some(word)
}

/// `dir` (`a/b/`, or `` for the repository root) and its ancestors, innermost first.
fn dir_and_ancestors(dir: &str) -> Vec<String> {
    let mut out = vec![dir.to_owned()];
    let mut dir = dir.trim_end_matches('/');
    while !dir.is_empty() {
        dir = dir.rfind('/').map_or("", |at| &dir[..at]);
        out.push(if dir.is_empty() { String::new() } else { format!("{dir}/") });
    }
    out
}

/// The Rust items a Codemap line names in code position: everything in backticks that is
/// shaped like a Rust name (`Request`, `EVENTS`, `fetch_details`, `serve()`, `events::names_for`),
/// and outside backticks what can only be code: `a::b` paths, calls written `name(`, and CamelCase
/// names of two or more humps (`ReplayGuard`; not `OpenAI` or `PyPI`). Each as its `::` segments.
fn codemap_items(line: &str) -> Vec<Vec<String>> {
    let quoted = Regex::new(r"`([^`]*)`").unwrap();
    let rust_name = Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*(?:\(\))?$").unwrap();
    let path = Regex::new(r"\b[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)+").unwrap();
    let call = Regex::new(r"\b([A-Za-z_][A-Za-z0-9_]*)\(").unwrap();
    let camel = Regex::new(r"\b[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]+)+\b").unwrap();
    let segments = |name: &str| name.trim_end_matches("()").split("::").map(str::to_owned).collect::<Vec<_>>();
    let mut items = Vec::new();
    for quote in quoted.captures_iter(line) {
        if rust_name.is_match(&quote[1]) {
            items.push(segments(&quote[1]));
        }
    }
    let outside = quoted.replace_all(line, " ");
    items.extend(path.find_iter(&outside).map(|found| segments(found.as_str())));
    items.extend(call.captures_iter(&outside).map(|found| segments(&found[1])));
    items.extend(camel.find_iter(&outside).map(|found| segments(found.as_str())));
    items
}

/// What the Codemap block gets wrong: paths that do not exist and items defined nowhere.
///
/// Paths: a line that starts with a path is an entry. Its path is relative to the directory of
/// the nearest entry above it with less indentation (the repository root at column 0), and must
/// exist as written; a directory entry (`a/b/`) is the directory for the lines indented under
/// it. Any other path on a line (in its description, or a continuation line's) is relative to
/// its entry, or to a directory around it. Items: see [`codemap_items`]; each `::` segment must be
/// `defined`, unless the path starts with an external crate (`std::…`, a dependency's name).
fn codemap_problems(
    block: &[(usize, &str)],
    exists: &dyn Fn(&str) -> bool,
    defined: &BTreeSet<String>,
    external: &BTreeSet<String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    // (indentation, directory) of the enclosing directory entries.
    let mut stack: Vec<(usize, String)> = Vec::new();
    // The directory an entry's description is relative to.
    let mut context = String::new();
    for &(number, line) in block {
        let indent = line.len() - line.trim_start().len();
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        let mut rest: Vec<&str> = words.collect();
        match as_path(first) {
            Some(entry) if !first.starts_with('(') => {
                while stack.last().is_some_and(|(at, _)| *at >= indent) {
                    stack.pop();
                }
                let base = stack.last().map(|(_, dir)| dir.clone()).unwrap_or_default();
                let full = format!("{base}{entry}");
                if !exists(&full) {
                    problems.push(format!("line {number}: {entry} ({full}) does not exist"));
                }
                if full.ends_with('/') {
                    stack.push((indent, full.clone()));
                    context = full;
                } else {
                    context = full.rfind('/').map_or(String::new(), |at| full[..=at].to_owned());
                }
            }
            _ => rest.insert(0, first),
        }
        for word in rest {
            let Some(path) = as_path(word) else { continue };
            if !dir_and_ancestors(&context).iter().any(|dir| exists(&format!("{dir}{path}"))) {
                problems
                    .push(format!("line {number}: {path} exists neither in {context:?} nor in a directory around it"));
            }
        }
        for item in codemap_items(line) {
            if external.contains(&item[0]) && !defined.contains(&item[0]) {
                continue;
            }
            for segment in &item {
                if !defined.contains(segment) {
                    problems.push(format!(
                        "line {number}: {} names {segment}, which no Rust source of the workspace defines",
                        item.join("::")
                    ));
                }
            }
        }
    }
    problems
}

/// Every name the workspace's Rust sources define: functions, types, traits, type aliases,
/// modules (declared, or a file or directory that is one), constants, statics, enum variants,
/// macros; and the workspace's crate names.
fn definitions(root: &Path) -> BTreeSet<String> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    let mut names = BTreeSet::new();
    for file in &files {
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        if matches!(stem.as_str(), "mod" | "main" | "lib") {
            names.insert(file.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned());
        } else {
            names.insert(stem);
        }
        let tokens = tokens(&code_only(&std::fs::read_to_string(file).unwrap()));
        for at in 0..tokens.len() {
            let mut name_at = at + 1;
            match tokens[at].text.as_str() {
                "fn" | "struct" | "enum" | "trait" | "type" | "mod" | "const" | "union" => {}
                "static" if is(&tokens, at + 1, "mut") => name_at += 1,
                "static" => {}
                "macro_rules" if is(&tokens, at + 1, "!") => name_at += 1,
                _ => continue,
            }
            if !is_ident(&tokens, name_at) || is(&tokens, name_at, "fn") || is(&tokens, name_at, "_") {
                continue;
            }
            names.insert(tokens[name_at].text.clone());
            if tokens[at].text == "enum" {
                names.extend(variants(&tokens, name_at + 1));
            }
        }
    }
    for manifest in ["Cargo.toml", "crates/dify-plugin/Cargo.toml", "crates/openai-mock/Cargo.toml", "xtask/Cargo.toml"]
    {
        let text = std::fs::read_to_string(root.join(manifest)).unwrap();
        for line in text.lines() {
            if let Some(name) = line.strip_prefix("name = \"").and_then(|rest| rest.strip_suffix('"')) {
                names.insert(name.replace('-', "_"));
            }
        }
    }
    names
}

/// The variants of the enum whose generics or body start at `at`.
fn variants(tokens: &[Token], at: usize) -> Vec<String> {
    let Some(open) = (at..tokens.len()).find(|&i| is(tokens, i, "{")) else { return Vec::new() };
    let close = after_closing(tokens, open) - 1;
    let mut names = Vec::new();
    let mut i = open + 1;
    while i < close {
        while is(tokens, i, "#") && is(tokens, i + 1, "[") {
            i = after_closing(tokens, i + 1);
        }
        if is_ident(tokens, i) {
            names.push(tokens[i].text.clone());
        }
        while i < close && !is(tokens, i, ",") {
            i = if matches!(tokens[i].text.as_str(), "{" | "(" | "[") { after_closing(tokens, i) } else { i + 1 };
        }
        i += 1;
    }
    names
}

/// Crates whose items the Codemap may name without this workspace defining them: the standard
/// library and every dependency a manifest lists.
fn external_crates(root: &Path) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = ["std", "core", "alloc"].map(String::from).into();
    for manifest in ["Cargo.toml", "crates/dify-plugin/Cargo.toml", "crates/openai-mock/Cargo.toml", "xtask/Cargo.toml"]
    {
        let text = std::fs::read_to_string(root.join(manifest)).unwrap();
        let mut in_dependencies = false;
        for line in text.lines() {
            if line.starts_with('[') {
                in_dependencies = line.contains("dependencies");
            } else if in_dependencies {
                let key = line.split(['=', '.']).next().unwrap_or_default().trim();
                if !key.is_empty() && !key.starts_with('#') {
                    names.insert(key.replace('-', "_"));
                }
            }
        }
    }
    names
}

#[test]
fn the_codemap_names_only_what_exists() {
    let root = Path::new(ROOT);
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let block = codemap_block(&architecture);
    assert!(block.len() > 10, "the Codemap block is nearly empty: {block:?}");
    let exists = |path: &str| {
        let full = root.join(path);
        if path.ends_with('/') { full.is_dir() } else { full.is_file() }
    };
    let problems = codemap_problems(&block, &exists, &definitions(root), &external_crates(root));
    assert!(problems.is_empty(), "ARCHITECTURE.md's Codemap is out of date:\n{}", problems.join("\n"));
}

#[test]
fn the_codemap_check_catches_stale_names_and_paths_but_not_prose() {
    let block = "\
crates/x/src/
  lib.rs          `Request`, `EVENTS`, serve(): the loop; ReplayGuard::first_sighting
  gone.rs         nothing
  events/         `Family`, one module per family (mod.rs, call.rs, tests/it/main.rs)
    call.rs       `Gone` and std::io::stdout, serde_json::Value
tests/it/         OpenAI, PyPI, HTTP/1.1, get/set/del, /invoke, plugin/*.yaml, INSTALL_METHOD, x86_64, main.rs
                  (continued) main.py's launcher; build.rs
";
    let block: Vec<(usize, &str)> = block.lines().enumerate().map(|(at, line)| (at + 1, line)).collect();
    let existing: BTreeSet<&str> = [
        "crates/x/src/",
        "crates/x/src/lib.rs",
        "crates/x/src/events/",
        "crates/x/src/events/mod.rs",
        "crates/x/src/events/call.rs",
        "tests/it/",
        "tests/it/main.rs",
        "main.py",
    ]
    .into();
    let exists = |path: &str| existing.contains(path);
    let defined: BTreeSet<String> = ["Request", "EVENTS", "serve", "ReplayGuard", "Family"].map(String::from).into();
    let external: BTreeSet<String> = ["std", "serde_json"].map(String::from).into();
    assert_eq!(
        codemap_problems(&block, &exists, &defined, &external),
        [
            "line 2: ReplayGuard::first_sighting names first_sighting, which no Rust source of the workspace defines",
            "line 3: gone.rs (crates/x/src/gone.rs) does not exist",
            "line 5: Gone names Gone, which no Rust source of the workspace defines",
            "line 7: build.rs exists neither in \"tests/it/\" nor in a directory around it",
        ]
    );
}

#[test]
fn the_codemap_is_the_fenced_block_of_its_section() {
    let text = "# A\n\n## Codemap\n\nSome words.\n\n```\nsrc/\n  lib.rs\n```\n\n## Next\n\n```\nother\n```\n";
    assert_eq!(codemap_block(text), vec![(8, "src/"), (9, "  lib.rs")]);
}

#[test]
fn definitions_include_enum_variants_macros_and_crate_names() {
    let defined = definitions(Path::new(ROOT));
    for name in
        ["Command", "Release", "MarketplaceCheck", "Error", "AtPath", "say", "openai_trigger", "dify_plugin", "it"]
    {
        assert!(defined.contains(name), "{name} not found among the definitions");
    }
    assert!(!defined.contains("first_sighting"));
}

#[test]
fn event_files_do_not_claim_to_be_generated() {
    let mut files = Vec::new();
    fn yaml(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                yaml(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                out.push(path);
            }
        }
    }
    files.push(Path::new(ROOT).join("manifest.yaml"));
    for dir in ["provider", "events"] {
        yaml(&Path::new(ROOT).join(dir), &mut files);
    }
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.to_ascii_lowercase().contains("generated"),
            "{} says it is generated, but no generator exists",
            file.display()
        );
    }
}

/// One version everywhere: the crates, the manifest, the wheel requirements.txt pins, and the
/// PyPI project name the launcher and the wheel build agree on.
#[test]
fn versions_and_names_agree() {
    let root = Path::new(ROOT);
    let version = env!("CARGO_PKG_VERSION");
    let manifest: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("manifest.yaml")).unwrap()).unwrap();
    assert_eq!(manifest["version"], version, "manifest.yaml version");
    let requirements = std::fs::read_to_string(root.join("requirements.txt")).unwrap();
    assert!(requirements.lines().any(|l| l == format!("hookwright-openai-trigger=={version}")), "{requirements}");
    for line in requirements.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        assert!(line.contains("=="), "requirements.txt pins exactly: {line}");
    }
    let pyproject = std::fs::read_to_string(root.join("packaging/pypi/pyproject.toml")).unwrap();
    assert!(pyproject.contains("name = \"hookwright-openai-trigger\""), "{pyproject}");
    let launcher = std::fs::read_to_string(root.join("main.py")).unwrap();
    assert!(
        launcher.contains("WHEEL = \"hookwright-openai-trigger\"")
            && launcher.contains("BINARY_NAME = \"openai-trigger\"")
    );
    assert!(
        !manifest.as_object().unwrap().contains_key("repo") && !manifest.as_object().unwrap().contains_key("contact"),
        "repo and contact come from publisher.yaml"
    );
}
