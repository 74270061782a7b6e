//! Tidy checks on the source tree (rust-analyzer's `xtask/src/tidy.rs` habit), run by plain
//! `cargo test`: the modules of each library crate form no dependency cycle, and the event files
//! carry no claim of being generated (nothing generates them).

#![allow(unreachable_pub, reason = "a test crate")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`src/events/call.rs` → `events`).
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.strip_suffix(".rs").unwrap_or(&first).to_owned()
}

/// Top-level module → the other top-level modules its code names through `crate::`.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let from = module_of(src, file);
        if from == "lib" || from == "main" {
            continue; // the crate root re-exports everything
        }
        let text = std::fs::read_to_string(file).unwrap();
        // Test modules may reach anywhere; only the shipped code's graph must be acyclic.
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        let mut rest = text;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if name != from && modules.contains(&name) && name != "lib" {
                graph.entry(from.clone()).or_default().insert(name);
            }
        }
        // `use crate::{a, b}` lists.
        if let Some(list) = text.find("use crate::{") {
            let list = &text[list + "use crate::{".len()..];
            let list = &list[..list.find('}').unwrap_or(0)];
            for name in list.split(',').map(|s| s.trim().split("::").next().unwrap_or("").trim().to_owned()) {
                if name != from && modules.contains(&name) {
                    graph.entry(from.clone()).or_default().insert(name);
                }
            }
        }
    }
    graph
}

/// A cycle in `graph`, if any, as the list of modules along it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn library_modules_form_no_dependency_cycle() {
    for krate in ["crates/dify-plugin", ".", "xtask"] {
        let src = Path::new(ROOT).join(krate).join("src");
        let graph = module_graph(&src);
        assert!(!graph.is_empty(), "{krate}: no module references found; is the scan broken?");
        assert_eq!(find_cycle(&graph), None, "{krate}: module dependency cycle; graph: {graph:#?}");
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["c".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]
    .into();
    assert_eq!(find_cycle(&graph), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
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
