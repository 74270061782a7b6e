//! `cargo xtask marketplace-check`: every rule the Dify Marketplace applies to a submitted package
//! (marketplace.md §2; the rules as implemented by langgenius/dify-marketplace-toolkit's validators
//! and dify-plugins' workflows), applied to a built `.difypkg`, plus the PR body the submission needs.
//! Errors block a submission; warnings are what the Marketplace shows or asks reviewers to look at.
//!
//! The install test runs exactly as the pre-check workflow does: a fresh venv, `pip install -r
//! requirements.txt` (from a loopback index standing in for PyPI), `INSTALL_METHOD=serverless`
//! (`aws_lambda` without `dify_plugin`) with port 8080, `python3 -m main` in the unpacked folder,
//! a stdout line containing `Serving Flask app` within 20 s, then 3 s later `GET
//! http://127.0.0.1:8080` answered 200 or 404, then SIGTERM. The workflow's own script imports
//! `requests` from that venv, so it must be installed there too.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use regex::Regex;
use serde_json::Value;

use crate::console::say;
use crate::error::{AtPath, Error, Result};
use crate::package::{self, Entry};
use crate::{cmd, index, paths, wheels};

/// `cargo xtask marketplace-check`: the rules on `package`, with the install test when given an
/// index, or wheels to serve one from on loopback, and the PR body rules when given a body.
pub(crate) fn check_command(
    package: &Path,
    index: Option<String>,
    wheel_dir: Option<&Path>,
    pr_body: Option<&Path>,
) -> Result<ExitCode> {
    let body = pr_body.map(|path| std::fs::read_to_string(path).at(path)).transpose()?;
    let mut server = None;
    let index = match (index, wheel_dir) {
        (Some(index), _) => Some(index),
        (None, Some(dir)) => {
            let files = package::archive::read(&std::fs::read(package).at(package)?)?.0;
            let requirements = files
                .iter()
                .find(|e| e.name == "requirements.txt")
                .map(|e| String::from_utf8_lossy(&e.data).into_owned())
                .unwrap_or_default();
            let wheel_files: Vec<PathBuf> = std::fs::read_dir(dir)
                .at(dir)?
                .filter_map(std::result::Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "whl"))
                .collect();
            let root = std::env::temp_dir().join(format!("xtask-index-{}", std::process::id()));
            index::build(
                &root,
                &wheel_files,
                &index::other_requirements(&requirements, wheels::DIST_NAME),
                &index::pythons(),
                &paths::pip_cache(),
            )?;
            let started = index::Server::start(&root, 0)?;
            let url = started.url.clone();
            server = Some(started);
            Some(url)
        }
        (None, None) => None,
    };
    let ok = check(package, index.as_deref(), body.as_deref())?;
    drop(server);
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Runs every Marketplace rule on `package` (with the install test when an index is given, and the
/// PR body rules when a body is given); prints the findings; true when there is no error.
pub(crate) fn check(package: &Path, index: Option<&str>, pr_body: Option<&str>) -> Result<bool> {
    let bytes = std::fs::read(package).at(package)?;
    let (entries, _) = package::archive::read(&bytes)?;
    let modes = package::archive::modes(&bytes)?;
    let mut report = check_entries(&entries, &modes, bytes.len() as u64);
    let dir = std::env::temp_dir().join(format!("xtask-marketplace-{}", std::process::id()));
    let unpacked = unpack(&entries, &modes, &dir)?;
    compileall(&unpacked, &mut report);
    match index {
        Some(index) => {
            let python = index::python312().unwrap_or_else(|| PathBuf::from("python3"));
            install_test(&unpacked, index, &python, &mut report);
        }
        None => report.warnings.push("install test not run: no package index given (--index or --wheels)".into()),
    }
    if let Some(body) = pr_body {
        check_pr_body(body, &capabilities(&entries), &mut report);
    }
    let _ = std::fs::remove_dir_all(&dir);
    say(&format!(
        "marketplace-check {}: {} error(s), {} warning(s)",
        package.display(),
        report.errors.len(),
        report.warnings.len()
    ));
    for error in &report.errors {
        say(&format!("  error: {error}"));
    }
    for warning in &report.warnings {
        say(&format!("  warning: {warning}"));
    }
    Ok(report.errors.is_empty())
}

/// What the check found.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) errors: Vec<String>,
    pub(crate) warnings: Vec<String>,
}

impl Report {
    fn error(&mut self, message: impl Into<String>) {
        self.errors.push(message.into());
    }

    fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }
}

const MAX_PACKAGE_BYTES: u64 = 50 * 1024 * 1024;
const MAX_PACKAGE_FILES: usize = 5000;
const BLOCKED_DIRS: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    ".venv",
    "venv",
    "env",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    ".tox",
    ".nox",
    ".idea",
    ".vscode",
    "node_modules",
    "pycache",
];
const BLOCKED_FILES: &[&str] = &[".DS_Store", ".gitconfig", "Thumbs.db", "desktop.ini", "id_rsa"];
const BLOCKED_SUFFIXES: &[&str] =
    &[".key", ".pem", ".p12", ".pfx", ".pyc", ".pyo", ".log", ".tmp", ".swp", ".swo", ".bak"];
const ARCHIVE_SUFFIXES: &[&str] = &[".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar"];
const BINARY_SUFFIXES: &[&str] = &[".dll", ".dylib", ".exe", ".node", ".pyd", ".so"];
const REVIEW_SUFFIXES: &[&str] = &[".app", ".bin", ".command", ".run", ".sh"];
const MAGIC: &[(&[u8], &str)] = &[
    (b"\x7fELF", "ELF executable or shared object"),
    (b"MZ", "Windows PE executable or DLL"),
    (b"\xfe\xed\xfa\xce", "Mach-O executable"),
    (b"\xfe\xed\xfa\xcf", "Mach-O executable"),
    (b"\xce\xfa\xed\xfe", "Mach-O executable"),
    (b"\xcf\xfa\xed\xfe", "Mach-O executable"),
    (b"\xca\xfe\xba\xbe", "Mach-O universal binary"),
    (b"\xca\xfe\xba\xbf", "Mach-O universal binary"),
];
const SOURCE_HOSTS: &str =
    r"(?:github\.com|gitlab\.com|bitbucket\.org|gitee\.com|codeberg\.org|git\.sr\.ht|gitlab\.anchnet\.com)";
const REQUIRED_MANIFEST: &[&str] = &[
    "author",
    "name",
    "version",
    "type",
    "icon",
    "plugins",
    "privacy",
    "repo",
    "contact",
    "label.en_US",
    "description.en_US",
    "meta.version",
    "meta.arch",
    "meta.runner.language",
    "meta.runner.version",
    "meta.runner.entrypoint",
];
/// The template icon the pre-check refuses (whitespace removed).
const TEMPLATE_ICON: &str = r#"<svgwidth="100"height="100"xmlns="http://www.w3.org/2000/svg"><pathd="M20 20 V80 M20 20 H60 Q80 20 80 40 T60 60 H20"fill="none"stroke="black"stroke-width="5"/></svg>"#;

/// Every static rule on a package's entries (`zip_size`: the .difypkg's own size; `modes`: each
/// entry's Unix mode from the zip).
pub(crate) fn check_entries(entries: &[Entry], modes: &[(String, u32)], zip_size: u64) -> Report {
    let mut report = Report::default();
    contents(entries, zip_size, &mut report);
    binaries(entries, modes, &mut report);
    secrets(entries, &mut report);
    let manifest = manifest(entries, &mut report);
    readme(entries, &mut report);
    dependencies(entries, &mut report);
    icon(entries, &manifest, &mut report);
    scans(entries, &manifest, &mut report);
    report
}

fn suffix_of(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    base.rfind('.').map(|at| base[at..].to_ascii_lowercase()).unwrap_or_default()
}

fn contents(entries: &[Entry], zip_size: u64, report: &mut Report) {
    if zip_size > MAX_PACKAGE_BYTES {
        report.error(format!("package file size exceeds 50 MB: {zip_size} bytes"));
    }
    let total: u64 = entries.iter().map(|e| e.data.len() as u64).sum();
    if total > MAX_PACKAGE_BYTES {
        report.error(format!("package contents size exceeds 50 MB: {total} bytes"));
    }
    if entries.len() > MAX_PACKAGE_FILES {
        report.error(format!("package contains too many files: {} files", entries.len()));
    }
    let mut dirs_reported = BTreeSet::new();
    for entry in entries {
        let parts: Vec<&str> = entry.name.split('/').collect();
        let (file, dirs) = parts.split_last().unwrap_or((&"", &[]));
        for (depth, dir) in dirs.iter().enumerate() {
            let path = parts[..=depth].join("/");
            if BLOCKED_DIRS.contains(dir) && dirs_reported.insert(path.clone()) {
                report.error(format!("blocked directory: {path}/"));
            } else if matches!(*dir, "build" | "dist") && dirs_reported.insert(path.clone()) {
                report.warn(format!("review directory: {path}/"));
            }
        }
        let is_env = *file == ".env"
            || (file.starts_with(".env.") && !matches!(*file, ".env.example" | ".env.sample" | ".env.template"));
        if BLOCKED_FILES.contains(file) || is_env {
            report.error(format!("blocked file: {}", entry.name));
        }
        let suffix = suffix_of(&entry.name);
        if BLOCKED_SUFFIXES.contains(&suffix.as_str()) {
            report.error(format!("blocked file suffix: {}", entry.name));
        }
        if ARCHIVE_SUFFIXES.contains(&suffix.as_str()) {
            report.warn(format!("review archive file: {}", entry.name));
        }
        // Not a toolkit rule, ours: a wheel inside the package would hide a binary from review.
        if suffix == ".whl" {
            report.error(format!("a wheel inside the package hides a binary from review: {}", entry.name));
        }
    }
}

fn binaries(entries: &[Entry], modes: &[(String, u32)], report: &mut Report) {
    let platform_name = Regex::new(r"(?i)^(?:dify-plugin-linux-.+|dify-plugin-darwin-.+|dify-plugin-windows-.+\.exe)$")
        .expect("a valid pattern");
    for entry in entries {
        let inside_wheel = entry.name.split('/').any(|part| part.ends_with(".whl"));
        let mut found = Vec::new();
        if let Some((_, kind)) = MAGIC.iter().find(|(magic, _)| entry.data.starts_with(magic)) {
            found.push(format!("{}: {kind}", entry.name));
        }
        let suffix = suffix_of(&entry.name);
        if BINARY_SUFFIXES.contains(&suffix.as_str()) {
            found.push(format!("{}: binary file suffix {suffix}", entry.name));
        }
        for finding in found {
            if inside_wheel { report.warn(finding) } else { report.error(finding) }
        }
        if REVIEW_SUFFIXES.contains(&suffix.as_str()) {
            report.warn(format!("{}: review executable-style file", entry.name));
        }
        let base = entry.name.rsplit('/').next().unwrap_or_default();
        if platform_name.is_match(base) {
            report.error(format!("{}: platform binary name", entry.name));
        }
    }
    for (name, mode) in modes {
        if mode & 0o111 != 0 {
            report.warn(format!("{name}: has executable permission"));
        }
    }
}

fn secrets(entries: &[Entry], report: &mut Report) {
    let vendor: Vec<(Regex, &str)> = [
        (r"-----BEGIN [A-Z ]*PRIVATE KEY-----", "private key block"),
        (r"\bsk-[A-Za-z0-9_-]{20,}\b", "OpenAI-style API key"),
        (r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9_]{20,}\b", "GitHub token"),
        (r"\bxox[baprs]-[A-Za-z0-9-]{10,}\b", "Slack token"),
        (r"\bAKIA[0-9A-Z]{16}\b", "AWS access key id"),
        (r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b", "JWT"),
    ]
    .into_iter()
    .filter_map(|(pattern, what)| Regex::new(pattern).ok().map(|re| (re, what)))
    .collect();
    let assignment = Regex::new(
        r#"(?ix)(?P<key>[A-Z0-9_.-]*(?:api[_-]?key|access[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret|password|private[_-]?key|secret|token)[A-Z0-9_.-]*)\s*[:=]\s*(?P<value>"[^"]*"|'[^']*'|[^"',\s\#}]+)"#,
    )
    .expect("a valid pattern");
    const CODE: &[&str] = &[
        ".c", ".cc", ".cpp", ".cs", ".go", ".h", ".hpp", ".java", ".js", ".jsx", ".kt", ".m", ".mjs", ".mm", ".php",
        ".py", ".pyi", ".rb", ".rs", ".scala", ".swift", ".ts", ".tsx",
    ];
    for entry in entries {
        if entry.data.len() > 1 << 20 || entry.data.iter().take(4096).any(|&b| b == 0) {
            continue;
        }
        let text = String::from_utf8_lossy(&entry.data);
        let code = CODE.contains(&suffix_of(&entry.name).as_str());
        for (number, line) in text.lines().enumerate() {
            if let Some((_, what)) = vendor.iter().find(|(re, _)| re.is_match(line)) {
                report.error(format!("{}:{}: matched {what}", entry.name, number + 1));
                continue;
            }
            for found in assignment.captures_iter(line) {
                let key = found["key"].to_ascii_lowercase().replace(['-', '.'], "_");
                let keys = [
                    "api_key",
                    "apikey",
                    "access_key",
                    "access_token",
                    "auth_token",
                    "client_secret",
                    "password",
                    "private_key",
                    "secret",
                    "token",
                ];
                if !keys.iter().any(|k| key.contains(k)) {
                    continue;
                }
                let raw = &found["value"];
                let quoted = raw.starts_with('"') || raw.starts_with('\'');
                let value = raw.trim_matches(['"', '\'']);
                if is_placeholder(value) || (code && !quoted) {
                    continue;
                }
                if looks_like_secret(value) {
                    report.error(format!("{}:{}: possible secret in {}", entry.name, number + 1, &found["key"]));
                } else {
                    report.warn(format!(
                        "{}:{}: review possible secret field {}",
                        entry.name,
                        number + 1,
                        &found["key"]
                    ));
                }
            }
        }
    }
}

fn is_placeholder(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    const WORDS: &[&str] = &[
        "changeme",
        "dummy",
        "example",
        "fake",
        "none",
        "null",
        "placeholder",
        "test",
        "todo",
        "xxx",
        "xxxx",
        "your-api-key",
        "your_api_key",
        "your-key",
        "your-secret",
        "your-token",
        "true",
        "false",
        "yes",
        "no",
        "on",
        "off",
    ];
    value.is_empty()
        || WORDS.contains(&lower.as_str())
        || (value.starts_with('<') && value.ends_with('>'))
        || value.starts_with("${")
        || (lower.contains("your") && ["key", "secret", "token", "password"].iter().any(|w| lower.contains(w)))
        || value.chars().all(|c| matches!(c, 'x' | 'X' | '*' | '-' | '_'))
        || value.parse::<f64>().is_ok()
}

fn looks_like_secret(value: &str) -> bool {
    if value.len() < 12 || ["http://", "https://", "./", "../", "/"].iter().any(|p| value.starts_with(p)) {
        return false;
    }
    let entropy = {
        let mut counts = std::collections::HashMap::new();
        for c in value.chars() {
            *counts.entry(c).or_insert(0usize) += 1;
        }
        let n = value.chars().count() as f64;
        counts
            .values()
            .map(|&k| {
                let p = k as f64 / n;
                -p * p.log2()
            })
            .sum::<f64>()
    };
    let hex = value.chars().all(|c| c.is_ascii_hexdigit());
    let token = value.chars().all(|c| c.is_ascii_alphanumeric() || "+/=_.-".contains(c));
    (hex && entropy >= 3.0) || (token && entropy >= 4.5)
}

/// `yq -r '<path> // ""'`: missing, null and false are empty.
fn field<'a>(manifest: &'a Value, path: &str) -> Option<&'a Value> {
    let mut value = manifest;
    for part in path.split('.') {
        value = value.get(part)?;
    }
    match value {
        Value::Null | Value::Bool(false) => None,
        Value::String(s) if s.is_empty() => None,
        other => Some(other),
    }
}

fn find<'a>(entries: &'a [Entry], name: &str) -> Option<&'a Entry> {
    entries.iter().find(|e| e.name == name)
}

fn manifest(entries: &[Entry], report: &mut Report) -> Value {
    let Some(entry) = find(entries, "manifest.yaml") else {
        report.error("missing required file: manifest.yaml");
        return Value::Null;
    };
    let manifest: Value = match serde_yaml::from_slice(&entry.data) {
        Ok(value) => value,
        Err(err) => {
            report.error(format!("failed to parse manifest.yaml: {err}"));
            return Value::Null;
        }
    };
    for path in REQUIRED_MANIFEST {
        if field(&manifest, path).is_none() {
            report.error(format!("missing required field: {path}"));
        }
    }
    if field(&manifest, "meta.minimum_dify_version").is_none() {
        report.warn("recommended field missing: meta.minimum_dify_version");
    }
    let text = |path: &str| field(&manifest, path).and_then(Value::as_str).unwrap_or_default().to_owned();
    let author = text("author");
    if author.contains("langgenius") || author.contains("dify") {
        report.error(format!("author {author:?} must not contain langgenius or dify"));
    }
    if field(&manifest, "type").is_some() && text("type") != "plugin" {
        report.error("type must be plugin");
    }
    let repo = text("repo");
    let repo_re =
        Regex::new(&format!(r#"(?i)^https?://(?:www\.)?{SOURCE_HOSTS}/[^\s)>"]+$"#)).expect("a valid pattern");
    if !repo.is_empty() && !repo_re.is_match(&repo) {
        report.error(format!("repo {repo:?} is not a URL on an allowed source repository host"));
    }
    let contact = text("contact");
    let email =
        Regex::new(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$").expect("a valid pattern");
    if !contact.is_empty() && !email.is_match(&contact) {
        report.error("contact must be a valid email address");
    }
    if find(entries, "PRIVACY.md").is_none() {
        report.error("missing required file: PRIVACY.md");
    }
    let privacy = text("privacy");
    if !privacy.is_empty() && !privacy.starts_with("http://") && !privacy.starts_with("https://") {
        let path = privacy.strip_prefix("./").unwrap_or(&privacy);
        match find(entries, path) {
            None => report.error(format!("privacy file {privacy} is not in the package")),
            Some(file) => {
                let body = String::from_utf8_lossy(&file.data).to_lowercase();
                if body.trim().is_empty() || body.contains("please fill in the privacy policy") {
                    report.error(format!("privacy file {privacy} is empty or the template's"));
                }
                const WORDS: &[&str] = &[
                    "collect",
                    "store",
                    "retain",
                    "persist",
                    "log",
                    "third party",
                    "third-party",
                    "share",
                    "send",
                    "transmit",
                    "external service",
                ];
                if !WORDS.iter().any(|w| body.contains(w)) {
                    report.warn(format!("privacy file {privacy} does not say what data is collected, stored or sent"));
                }
            }
        }
    }
    manifest
}

fn readme(entries: &[Entry], report: &mut Report) {
    let Some(entry) = find(entries, "README.md") else {
        report.error("missing required file: README.md");
        return;
    };
    let text = String::from_utf8_lossy(&entry.data);
    if text.trim().is_empty() {
        report.error("README.md is empty");
        return;
    }
    let repo = Regex::new(&format!(r#"(?i)https?://(?:www\.)?{SOURCE_HOSTS}/[^\s)>"]+"#)).expect("a valid pattern");
    if !repo.is_match(&text) {
        report.error("README.md must include a source repository URL");
    }
    let fences = Regex::new(r"(?s)```.*?```").expect("a valid pattern");
    let prose = fences.replace_all(&text, "");
    let cjk = prose.chars().filter(|c| matches!(*c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF)).count();
    if cjk > 0 {
        report.error(format!("README.md primary content must be English (found {cjk} CJK characters)"));
    }
    let lower = text.to_lowercase();
    for (section, words) in [
        ("setup", &["setup", "install", "configure", "getting started"][..]),
        ("usage", &["usage", "example", "workflow"][..]),
        ("credentials", &["api key", "credential", "token", "secret", "auth"][..]),
        ("connection", &["connect", "endpoint", "url", "host", "network"][..]),
    ] {
        if !words.iter().any(|w| lower.contains(w)) {
            report.warn(format!("README.md does not seem to cover {section}"));
        }
    }
    let localized = Regex::new(r"^README[._-][A-Za-z]{2,3}(?:[_-][A-Za-z0-9]+)?\.md$").expect("a valid pattern");
    let expected = Regex::new(r"^README\.[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]+)?\.md$").expect("a valid pattern");
    for entry in entries.iter().filter(|e| !e.name.contains('/')) {
        if localized.is_match(&entry.name) && !expected.is_match(&entry.name) {
            report.warn(format!("{}: localized README name the Marketplace does not read", entry.name));
        }
    }
}

fn dependencies(entries: &[Entry], report: &mut Report) {
    let Some(entry) = find(entries, "requirements.txt") else { return };
    let constraint = Regex::new(r"(===|==|~=|!=|<=|>=|<|>|\^)").expect("a valid pattern");
    let lower_bound = Regex::new(r"(?:>=|==)\s*([0-9][0-9A-Za-z.+-]*)").expect("a valid pattern");
    let direct_url = Regex::new(r"(^|\s@)\s*(?:https?|ftp|file)://").expect("a valid pattern");
    for raw in String::from_utf8_lossy(&entry.data).lines() {
        let line = raw.split(" #").next().unwrap_or_default().trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let lower = line.to_ascii_lowercase();
        if lower.contains("git+") {
            report.error(format!("requirements.txt: {line}: git-based install is not allowed"));
            continue;
        }
        if direct_url.is_match(line) {
            report.error(format!("requirements.txt: {line}: direct URL install is not allowed"));
            continue;
        }
        if line.starts_with('-') {
            report.warn(format!("requirements.txt: {line}: option line"));
            continue;
        }
        let name: String = line.chars().take_while(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.')).collect();
        if index::normalize(&name) == "dify-plugin" {
            let ok = lower_bound.captures(line).and_then(|c| version_tuple(&c[1])).is_some_and(|v| v >= (0, 9, 0));
            if !ok {
                report.error("requirements.txt: dify_plugin dependency must be >= 0.9.0");
            }
        }
        if !constraint.is_match(line) {
            report.error(format!("requirements.txt: {line}: dependency has no version constraint"));
        }
    }
}

fn version_tuple(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text
        .split('.')
        .map(|p| p.chars().take_while(char::is_ascii_digit).collect::<String>().parse::<u32>().unwrap_or(0));
    Some((parts.next()?, parts.next().unwrap_or(0), parts.next().unwrap_or(0)))
}

fn icon(entries: &[Entry], manifest: &Value, report: &mut Report) {
    let Some(icon) = field(manifest, "icon").and_then(Value::as_str) else { return };
    match find(entries, &format!("_assets/{icon}")) {
        None => report.error(format!("icon _assets/{icon} is missing")),
        Some(file) => {
            let text = String::from_utf8_lossy(&file.data);
            let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            if text.contains("DIFY_MARKETPLACE_TEMPLATE_ICON_DO_NOT_USE") || squeezed == TEMPLATE_ICON {
                report.error("the icon is the plugin template's");
            }
        }
    }
}

/// Capabilities detected in the package's Python code, which the PR's security notes must explain.
pub(crate) fn capabilities(entries: &[Entry]) -> BTreeSet<&'static str> {
    let rules: Vec<(&str, Regex)> = [
        ("command execution", r"\bsubprocess\.(?:run|Popen|call|check_call|check_output)\s*\(|\bos\.(?:system|popen|spawn[a-z_]*|exec[a-z_]*)\s*\("),
        ("filesystem operations", r"(?:^|[^\w.])open\s*\(|\bos\.(?:remove|unlink|rename|replace|makedirs|listdir|walk)\s*\(|\bshutil\.copy"),
        ("network access", r"\brequests\.(?:get|post|put|delete|patch|request|Session)\b|\burlopen\s*\(|\bsocket\.socket\s*\("),
    ]
    .into_iter()
    .filter_map(|(what, pattern)| Regex::new(pattern).ok().map(|re| (what, re)))
    .collect();
    let mut found = BTreeSet::new();
    for entry in entries.iter().filter(|e| matches!(suffix_of(&e.name).as_str(), ".py" | ".js" | ".ts")) {
        let text = String::from_utf8_lossy(&entry.data);
        for (what, re) in &rules {
            if re.is_match(&text) {
                found.insert(*what);
            }
        }
    }
    found
}

fn scans(entries: &[Entry], manifest: &Value, report: &mut Report) {
    for capability in capabilities(entries) {
        report.warn(format!("detected capability: {capability} (explain it in the PR's security notes)"));
    }
    let url = Regex::new(r#"https?://([A-Za-z0-9.-]+)"#).expect("a valid pattern");
    let declared: Vec<&str> =
        manifest["network"]["domains"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    for entry in entries
        .iter()
        .filter(|e| matches!(suffix_of(&e.name).as_str(), ".py" | ".yaml" | ".yml" | ".json" | ".toml" | ".js" | ".ts"))
    {
        for found in url.captures_iter(&String::from_utf8_lossy(&entry.data)) {
            let host = &found[1];
            let covered = declared
                .iter()
                .any(|d| *d == host || d.strip_prefix("*.").is_some_and(|s| host.ends_with(&format!(".{s}"))));
            if !covered && !matches!(host, "127.0.0.1" | "localhost" | "0.0.0.0") {
                report.warn(format!("{}: host {host} is not declared in manifest network.domains", entry.name));
            }
        }
    }
    let financial = Regex::new(r"(?i)\b(payments?|checkout|charge[sd]?|refunds?|payouts?|transactions?|trading|withdraw\w*|deposits?|transfer (?:funds|money))\b").expect("a valid pattern");
    for entry in entries.iter().filter(|e| {
        matches!(suffix_of(&e.name).as_str(), ".md" | ".yaml" | ".yml" | ".json" | ".toml" | ".py" | ".js" | ".ts")
    }) {
        if let Some(word) = financial.find(&String::from_utf8_lossy(&entry.data)) {
            report.warn(format!(
                "{}: mentions {:?} (financial activity gets a strong manual review)",
                entry.name,
                word.as_str()
            ));
        }
    }
}

/// The PR body rules (dify-plugins' pull_request_template.md and its checks).
pub(crate) fn check_pr_body(body: &str, capabilities: &BTreeSet<&str>, report: &mut Report) {
    let heading = Regex::new(r"(?m)^##\s+(.+?)\s*$").expect("a valid pattern");
    let comments = Regex::new(r"(?s)<!--.*?-->").expect("a valid pattern");
    let body = comments.replace_all(body, "");
    let mut sections: Vec<(String, String)> = Vec::new();
    let mut last = None::<(String, usize)>;
    for found in heading.captures_iter(&body) {
        let whole = found.get(0).map(|m| (m.start(), m.end())).unwrap_or((0, 0));
        if let Some((name, start)) = last.take() {
            sections.push((name, body[start..whole.0].to_owned()));
        }
        last = Some((found[1].to_lowercase(), whole.1));
    }
    if let Some((name, start)) = last {
        sections.push((name, body[start..].to_owned()));
    }
    let section = |name: &str| sections.iter().find(|(n, _)| n == name).map(|(_, s)| s.clone());
    for required in [
        "plugin information",
        "submission type",
        "what changed",
        "risk level",
        "required checks",
        "security and privacy notes",
        "local validation",
    ] {
        if section(required).is_none() {
            report.error(format!("PR body: missing section ## {required}"));
        }
    }
    let info = section("plugin information").unwrap_or_default();
    for field in ["Author", "Plugin name", "Version", "Source repository", "Contact"] {
        let re =
            Regex::new(&format!(r"(?m)^[ \t]*-[ \t]*\*\*{field}\*\*:[ \t]*(.*?)[ \t]*$")).expect("a valid pattern");
        match re.captures(&info) {
            Some(c) if !c[1].trim().is_empty() => {
                if field == "Source repository" && !c[1].contains("http") {
                    report.error("PR body: Source repository must be a URL");
                }
            }
            _ => report.error(format!("PR body: Plugin information lacks **{field}**")),
        }
    }
    let checked = |name: &str| {
        let re = Regex::new(r"(?m)^[ \t]*-[ \t]*\[([ xX])\][ \t]*(.+?)[ \t]*$").expect("a valid pattern");
        section(name).map(|s| re.captures_iter(&s).filter(|c| &c[1] != " ").count()).unwrap_or(0)
    };
    if checked("submission type") != 1 {
        report.error("PR body: exactly one submission type must be checked");
    }
    if checked("risk level") != 1 {
        report.error("PR body: exactly one risk level must be checked");
    }
    for name in ["what changed", "local validation"] {
        if section(name).is_some_and(|s| s.trim().is_empty()) {
            report.error(format!("PR body: ## {name} is empty"));
        }
    }
    let notes = section("security and privacy notes").unwrap_or_default();
    let squeezed =
        Regex::new(r"[\s>*_`-]+").map(|re| re.replace_all(notes.trim(), " ").trim().to_lowercase()).unwrap_or_default();
    if notes.trim().is_empty() {
        report.error("PR body: ## Security and privacy notes is empty");
    } else if !capabilities.is_empty()
        && matches!(squeezed.trim_end_matches('.'), "none" | "n/a" | "na" | "not applicable" | "no" | "nothing")
    {
        report.error(format!("PR body: the package uses {capabilities:?}; the security notes must explain it"));
    }
    let cjk = body.chars().filter(|c| matches!(*c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF)).count();
    if cjk > 0 {
        report.error("PR body: must be English");
    }
}

/// `python3 -m compileall -q` over the unpacked package.
pub(crate) fn compileall(dir: &Path, report: &mut Report) {
    match Command::new("python3").args(["-m", "compileall", "-q"]).arg(dir).env("PYTHONDONTWRITEBYTECODE", "1").output()
    {
        Ok(output) if output.status.success() => {}
        Ok(output) => {
            report.error(format!("python -m compileall failed: {}", String::from_utf8_lossy(&output.stdout).trim()))
        }
        Err(err) => report.warn(format!("python3 not available for compileall: {err}")),
    }
}

/// The pre-check's install test (see the module docs), with `index` standing in for PyPI.
pub(crate) fn install_test(dir: &Path, index: &str, python: &Path, report: &mut Report) {
    let venv = dir.with_extension("venv");
    let _ = std::fs::remove_dir_all(&venv);
    let vpython = venv.join("bin/python3");
    let prepared = step(Command::new(python).args(["-m", "venv"]).arg(&venv))
        .and_then(|_| {
            step(
                Command::new(&vpython)
                    .args(["-m", "pip", "install", "--quiet", "--index-url", index, "-r"])
                    .arg(dir.join("requirements.txt")),
            )
        })
        .and_then(|_| {
            step(Command::new(&vpython).args(["-c", "import requests"]))
                .map_err(|err| Error::MissingImport { module: "requests", source: Box::new(err) })
        })
        .and_then(|_| step(Command::new(&vpython).args(["-m", "pip", "list"])));
    let listing = match prepared {
        Ok(listing) => listing,
        Err(err) => {
            report.error(format!("install test: {err}"));
            let _ = std::fs::remove_dir_all(&venv);
            return;
        }
    };
    let has_sdk = listing.lines().any(|l| l.to_ascii_lowercase().replace('_', "-").starts_with("dify-plugin "));
    let mut command = Command::new(&vpython);
    command.args(["-m", "main"]).current_dir(dir).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if has_sdk {
        command.env("INSTALL_METHOD", "serverless").env("SERVERLESS_PORT", "8080").env("SERVERLESS_HOST", "0.0.0.0");
    } else {
        command.env("INSTALL_METHOD", "aws_lambda").env("AWS_LAMBDA_PORT", "8080").env("AWS_LAMBDA_HOST", "0.0.0.0");
    }
    let started = Instant::now();
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) => {
            report.error(format!("install test: cannot run python3 -m main: {err}"));
            return;
        }
    };
    let (lines, banner) = mpsc::channel();
    let stdout = child.stdout.take();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout.expect("piped")).lines().map_while(std::result::Result::ok) {
            if line.contains("Serving Flask app") {
                let _ = lines.send(());
            }
        }
    });
    let outcome = match banner.recv_timeout(Duration::from_secs(20)) {
        Err(_) => {
            Err(Error::Serverless { problem: "no stdout line containing \"Serving Flask app\" within 20 s".to_owned() })
        }
        Ok(()) => {
            std::thread::sleep(Duration::from_secs(3));
            http_get_status("127.0.0.1:8080").and_then(|status| {
                if matches!(status, 200 | 404) {
                    Ok(status)
                } else {
                    Err(Error::Serverless {
                        problem: format!("GET http://127.0.0.1:8080 answered {status}, not 200 or 404"),
                    })
                }
            })
        }
    };
    // SIGTERM, as the workflow's `process.terminate()`.
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut exited = false;
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            exited = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if !exited {
        let _ = child.kill();
        report.error("install test: python3 -m main did not exit within 10 s of SIGTERM");
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let _ = child.wait();
    match outcome {
        Ok(status) => {
            say(&format!("install test: passed in {:.1} s (GET / answered {status})", started.elapsed().as_secs_f64()))
        }
        Err(problem) => report.error(format!(
            "install test: {problem}; stderr: {}",
            stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
        )),
    }
    let _ = std::fs::remove_dir_all(&venv);
}

/// Runs `command` to the end: its stdout, or an error with the last line of its stderr.
fn step(command: &mut Command) -> Result<String> {
    let output = cmd::output(command)?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(Error::FailedSaying {
            command: cmd::describe(command),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or_default().to_owned(),
        })
    }
}

/// The status of `GET /` at `address`.
fn http_get_status(address: &str) -> Result<u16> {
    let network = |source| Error::Network { address: address.to_owned(), source };
    let mut stream = std::net::TcpStream::connect(address).map_err(network)?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(stream, "GET / HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").map_err(network)?;
    let mut head = String::new();
    BufReader::new(stream).read_line(&mut head).map_err(network)?;
    head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| Error::Serverless {
        problem: format!("GET http://{address}/ answered no HTTP status line: {head:?}"),
    })
}

/// Unpacks entries into `dir` as the workflow's `unzip` does (modes kept), for compileall and the
/// install test.
pub(crate) fn unpack(entries: &[Entry], modes: &[(String, u32)], dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_dir_all(dir);
    for entry in entries {
        let path = dir.join(&entry.name);
        let parent = path.parent().unwrap_or(dir);
        std::fs::create_dir_all(parent).at(parent)?;
        std::fs::write(&path, &entry.data).at(&path)?;
        let mode = modes.iter().find(|(n, _)| *n == entry.name).map(|(_, m)| *m & 0o777).unwrap_or(0o644);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(if mode == 0 { 0o644 } else { mode }))
            .at(&path)?;
    }
    Ok(dir.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, data: &str) -> Entry {
        Entry::new(name, data.as_bytes().to_vec())
    }

    fn good() -> Vec<Entry> {
        vec![
            entry(
                "manifest.yaml",
                "author: a\nname: n\nversion: 0.1.0\ntype: plugin\nicon: icon.svg\nplugins: {triggers: [p.yaml]}\nprivacy: PRIVACY.md\nrepo: https://github.com/o/r\ncontact: me@example.org\nlabel: {en_US: L}\ndescription: {en_US: D}\nmeta: {version: 0.0.1, arch: [amd64], runner: {language: python, version: '3.12', entrypoint: main}, minimum_dify_version: 1.10.0}\n",
            ),
            entry("PRIVACY.md", "We store nothing and send nothing to third parties."),
            entry(
                "README.md",
                "# N\nSetup: install. Usage: a workflow. API key. Endpoint URL.\nSource: https://github.com/o/r\n",
            ),
            entry("_assets/icon.svg", "<svg/>"),
            entry("requirements.txt", "pkg==1.0\n"),
        ]
    }

    #[test]
    fn a_good_package_has_no_errors() {
        let report = check_entries(&good(), &[], 100);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
    }

    #[test]
    fn each_blocking_rule_fires() {
        type Mutation = Box<dyn Fn(&mut Vec<Entry>)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|e| e.push(Entry::new("bin/x", b"\x7fELF\x02\x01".to_vec()))), "ELF executable"),
            (Box::new(|e| e.push(Entry::new("lib/x.so", b"text".to_vec()))), "binary file suffix .so"),
            (Box::new(|e| e.push(entry("wheels/x-1.0-py3-none-any.whl", "PK"))), "a wheel inside the package"),
            (Box::new(|e| e.push(entry(".env", "A=1"))), "blocked file: .env"),
            (Box::new(|e| e.push(entry("keys/k.pem", "x"))), "blocked file suffix"),
            (Box::new(|e| e.push(entry("__pycache__/m.cpython.py", "x"))), "blocked directory"),
            (Box::new(|e| e.push(entry("notes.txt", "key = \"sk-abcdefghijklmnopqrstuvwx\""))), "OpenAI-style API key"),
            (Box::new(|e| e[0] = entry("manifest.yaml", "author: dify-fan\n")), "must not contain langgenius or dify"),
            (Box::new(|e| e[2] = entry("README.md", "# N\n没有\nhttps://github.com/o/r")), "must be English"),
            (Box::new(|e| e[2] = entry("README.md", "# N only")), "source repository URL"),
            (Box::new(|e| e[4] = entry("requirements.txt", "flask\n")), "no version constraint"),
            (
                Box::new(|e| e[4] = entry("requirements.txt", "dify_plugin~=0.9.0\n")),
                "dify_plugin dependency must be >= 0.9.0",
            ),
            (Box::new(|e| e[4] = entry("requirements.txt", "x @ https://example.org/x.whl\n")), "direct URL install"),
            (
                Box::new(|e| {
                    e.remove(1);
                }),
                "missing required file: PRIVACY.md",
            ),
        ];
        for (mutate, expected) in cases {
            let mut entries = good();
            mutate(&mut entries);
            let report = check_entries(&entries, &[], 100);
            assert!(report.errors.iter().any(|e| e.contains(expected)), "{expected:?} not in {:?}", report.errors);
        }
        let mut entries = good();
        entries[0] = entry("manifest.yaml", "author: a\nrepo: https://example.com/o/r\ncontact: nope\n");
        let report = check_entries(&entries, &[], 100);
        for expected in [
            "missing required field: privacy",
            "not a URL on an allowed source repository host",
            "contact must be a valid email",
        ] {
            assert!(report.errors.iter().any(|e| e.contains(expected)), "{expected:?} not in {:?}", report.errors);
        }
    }

    #[test]
    fn executable_bits_and_capabilities_are_warnings() {
        let mut entries = good();
        entries.push(entry("main.py", "import os\nos.execv(p, [p])\n"));
        let report = check_entries(&entries, &[("main.py".into(), 0o755)], 100);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert!(report.warnings.iter().any(|w| w.contains("has executable permission")));
        assert!(report.warnings.iter().any(|w| w.contains("command execution")));
    }

    #[test]
    fn pr_body_rules() {
        let capabilities = BTreeSet::from(["command execution"]);
        let body = "## Plugin information\n- **Author**: a\n- **Plugin name**: n\n- **Version**: 1\n- **Source repository**: https://github.com/o/r\n- **Contact**: a@b.org\n## Submission type\n- [x] New plugin\n- [ ] Version update\n## What changed\nAll.\n## Risk level\n- [ ] Low risk\n- [ ] Medium risk\n- [x] High risk\n## Required checks\n- [x] ok\n## Security and privacy notes\nmain.py execs the binary from the pinned wheel.\n## Local validation\nRan it.\n";
        let mut report = Report::default();
        check_pr_body(body, &capabilities, &mut report);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let mut report = Report::default();
        check_pr_body(
            &body
                .replace("- [x] High risk", "- [x] High risk\n- [x] Low risk")
                .replace("main.py execs the binary from the pinned wheel.", "None"),
            &capabilities,
            &mut report,
        );
        assert!(report.errors.iter().any(|e| e.contains("exactly one risk level")), "{:?}", report.errors);
        assert!(report.errors.iter().any(|e| e.contains("security notes must explain")), "{:?}", report.errors);
    }
}
