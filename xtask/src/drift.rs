//! `cargo xtask openai-drift`: OpenAI's webhook event types, read from an `openai` wheel (the newest
//! on PyPI unless told otherwise), against what the plugin declares. OpenAI adds event types without
//! notice; this says which ones the plugin lacks before a release rather than after.
//!
//! What is read, from the wheel's Python source (never imported, never run):
//! - the types OpenAI delivers: the members of the `UnwrapWebhookEvent` union
//!   ([`UNION_FILE`]), each followed through its import to its module and the `type:
//!   Literal["…"]` field of its class (a module may hold other classes with a `type` field of their
//!   own). The union, not the module list: a module can ship outside it (`safety_identifier.blocked`
//!   in openai 3.63.0, a withdrawn type kept "to preserve generated type compatibility").
//! - the types `POST /v1/webhook_endpoints` accepts: the `event_types` Literal of the SDK's create
//!   params (`openai/types/webhooks/webhook_create_params.py`; the SDK calls the resource `webhooks`,
//!   and its `webhook_endpoint.py` model types the field as `List[str]`), compared with the other
//!   params files that carry the same enum (update, test).
//!
//! The plugin's side is `events::known_openai_types()`, `constructor::fallback_types()` and
//! `constructor::MANUAL_ONLY_TYPES`. A type OpenAI lists that the plugin neither declares nor leaves
//! out on purpose ([`UNDECLARED_ON_PURPOSE`]) is missing, and the command exits 1; everything else
//! is information. CI runs it for information only (the newest release is not reproducible); the
//! README's release steps run it before each release.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use openai_trigger::{constructor, events};
use zip::ZipArchive;
use zip::result::ZipError;

use crate::cmd::run;
use crate::console::say;
use crate::error::{AtPath, Error, Result};
use crate::paths;

/// Types OpenAI lists that the plugin declares no event for, on purpose, and why. `any_event`
/// still fires for them.
const UNDECLARED_ON_PURPOSE: &[(&str, &str)] = &[
    ("video.completed", "the Videos API shut down on 2026-09-24; any_event carries it"),
    ("video.failed", "the Videos API shut down on 2026-09-24; any_event carries it"),
];

/// The module holding the union of every webhook event the SDK parses.
const UNION_FILE: &str = "openai/types/webhooks/unwrap_webhook_event.py";
/// The union's name in [`UNION_FILE`].
const UNION_NAME: &str = "UnwrapWebhookEvent";
/// Where the SDK's types live; the endpoint enum is looked for in its webhook `*_params.py` files.
const TYPES_DIR: &str = "openai/types/";
/// Width of the type column in the report (the longest type today is 29 characters).
const COLUMN: usize = 32;

/// `cargo xtask openai-drift`: reads `wheel`, or downloads the `openai` wheel of `version` (the
/// newest when `None`), and prints the report. Exit 1 when a type is missing.
pub(crate) fn drift_command(version: Option<&str>, wheel: Option<&Path>) -> Result<ExitCode> {
    let (name, bytes) = match wheel {
        Some(path) => (file_name(path), std::fs::read(path).at(path)?),
        None => download(version)?,
    };
    let openai = read_wheel(&name, &bytes)?;
    let plugin = Plugin {
        declared: events::known_openai_types().collect(),
        fallback: constructor::fallback_types(),
        manual_only: constructor::MANUAL_ONLY_TYPES,
    };
    let report = report(&openai, &plugin, UNDECLARED_ON_PURPOSE);
    for line in &report.lines {
        say(line);
    }
    Ok(if report.missing == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// A directory removed when dropped, whatever happened in it.
struct Scratch(PathBuf);

impl Scratch {
    fn new(dir: PathBuf) -> Result<Scratch> {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).at(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `openai` wheel of `version` (the newest when `None`) from the package index pip uses, as
/// (file name, bytes): `pip download` into a scratch directory under the target directory, removed
/// before this returns.
fn download(version: Option<&str>) -> Result<(String, Vec<u8>)> {
    let scratch = Scratch::new(paths::tools_dir().join(format!("openai-drift-{}", std::process::id())))?;
    let requirement = version.map_or_else(|| "openai".to_owned(), |version| format!("openai=={version}"));
    say(&format!("==> pip download {requirement} (the wheel alone) into {}", scratch.0.display()));
    run(Command::new("python3")
        .args(["-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps"])
        .args(["--only-binary=:all:", "--dest"])
        .arg(&scratch.0)
        .arg(&requirement))?;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&scratch.0).at(&scratch.0)? {
        let path = entry.at(&scratch.0)?.path();
        let name = file_name(&path);
        if name.starts_with("openai-") && name.ends_with(".whl") {
            found.push(path);
        }
    }
    match found.as_slice() {
        [wheel] => Ok((file_name(wheel), std::fs::read(wheel).at(wheel)?)),
        _ => Err(Error::WheelCount { arch: "openai", dir: scratch.0.clone(), found }),
    }
}

// ---------------------------------------------------------------------------------------------
// The wheel.
// ---------------------------------------------------------------------------------------------

/// What one `openai` wheel says.
#[derive(Debug)]
struct OpenAiLists {
    /// The wheel's file name.
    wheel: String,
    /// Its version (`Version:` of its METADATA).
    version: String,
    /// The union's event types, in the union's order.
    union: Vec<String>,
    /// The `webhook_endpoints` enum, in the SDK's order.
    endpoint_enum: Vec<String>,
    /// The file the enum was read from.
    enum_file: String,
    /// The other files carrying the enum: (file, the same as `endpoint_enum`?, its values).
    enum_copies: Vec<(String, Vec<String>)>,
}

/// Reads the union, its members' types, and the endpoint enum out of the wheel `bytes`.
fn read_wheel(wheel: &str, bytes: &[u8]) -> Result<OpenAiLists> {
    let mut zip = ZipArchive::new(Cursor::new(bytes))?;
    let names: Vec<String> = zip.file_names().map(str::to_owned).collect();
    let mut text = |name: &str| -> Result<String> {
        let mut file = match zip.by_name(name) {
            Ok(file) => file,
            Err(ZipError::FileNotFound) => {
                return Err(Error::NotInWheel { wheel: PathBuf::from(wheel), entry: name.to_owned() });
            }
            Err(err) => return Err(err.into()),
        };
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(ZipError::Io)?;
        Ok(text)
    };
    let source_error =
        |file: &str, problem: Unreadable| Error::WheelSource { file: file.to_owned(), problem: problem.to_string() };

    let metadata =
        names.iter().find(|name| name.starts_with("openai-") && name.ends_with(".dist-info/METADATA")).ok_or_else(
            || Error::NotInWheel { wheel: PathBuf::from(wheel), entry: "openai-*.dist-info/METADATA".into() },
        )?;
    let metadata_text = text(metadata)?;
    let version =
        metadata_version(&metadata_text).ok_or_else(|| source_error(metadata, Unreadable::NoVersion))?.to_owned();

    let union_source = text(UNION_FILE)?;
    let members = union_members(&union_source, UNION_NAME).map_err(|problem| source_error(UNION_FILE, problem))?;
    let mut union = Vec::with_capacity(members.len());
    for member in members {
        let file = member.module.as_deref().map_or_else(|| UNION_FILE.to_owned(), |m| module_file(UNION_FILE, m));
        let source = text(&file)?;
        union.push(event_type(&source, &member.class).map_err(|problem| source_error(&file, problem))?);
    }

    let mut candidates: Vec<&String> = names
        .iter()
        .filter(|name| name.starts_with(TYPES_DIR) && name.contains("webhook") && name.ends_with("_params.py"))
        .collect();
    candidates.sort();
    let mut enums = Vec::new();
    for file in candidates {
        if let Some(values) = enum_values(&text(file)?) {
            enums.push((file.clone(), values.map_err(|problem| source_error(file, problem))?));
        }
    }
    let primary =
        enums.iter().position(|(file, _)| base_name(file).contains("create")).ok_or_else(|| Error::NotInWheel {
            wheel: PathBuf::from(wheel),
            entry: format!("{TYPES_DIR}…webhook…create_params.py with an event_types Literal"),
        })?;
    let (enum_file, endpoint_enum) = enums.remove(primary);
    Ok(OpenAiLists { wheel: wheel.to_owned(), version, union, endpoint_enum, enum_file, enum_copies: enums })
}

/// A path's last component.
fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The `Version:` of a wheel's METADATA.
fn metadata_version(metadata: &str) -> Option<&str> {
    metadata.lines().take_while(|line| !line.is_empty()).find_map(|line| line.strip_prefix("Version:")).map(str::trim)
}

// ---------------------------------------------------------------------------------------------
// Reading Python source: pure functions over the text.
// ---------------------------------------------------------------------------------------------

/// `source` with its comments and triple-quoted strings (docstrings) blanked, newlines kept: what
/// is left is code and the one-line string literals the readers below look for.
fn code_of(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let triple_at = |i: usize, quote: char| chars.get(i..i + 3).is_some_and(|s| s.iter().all(|&c| c == quote));
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if matches!(c, '"' | '\'') && triple_at(i, c) {
            out.push_str("   ");
            i += 3;
            while i < chars.len() && !triple_at(i, c) {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    out.push(' ');
                    i += 1;
                }
                out.push(blank(chars[i]));
                i += 1;
            }
            while i < chars.len() && chars[i] == c {
                out.push(' ');
                i += 1;
            }
        } else if matches!(c, '"' | '\'') {
            out.push(c);
            i += 1;
            while i < chars.len() && chars[i] != c && chars[i] != '\n' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    out.push(chars[i]);
                    i += 1;
                }
                out.push(chars[i]);
                i += 1;
            }
            if chars.get(i) == Some(&c) {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Walks `code` from `from`, calling `step(at, byte, depth)` for each byte outside string
/// literals, with the bracket depth before that byte; stops when `step` returns true. Returns
/// where it stopped, or the end.
fn walk(code: &str, from: usize, mut step: impl FnMut(usize, u8, usize) -> bool) -> usize {
    let bytes = code.as_bytes();
    let mut depth = 0usize;
    let mut quote = None;
    let mut at = from;
    while at < bytes.len() {
        let byte = bytes[at];
        match quote {
            Some(open) => {
                if byte == b'\\' {
                    at += 1;
                } else if byte == open || byte == b'\n' {
                    quote = None;
                }
            }
            None => {
                if step(at, byte, depth) {
                    return at;
                }
                match byte {
                    b'"' | b'\'' => quote = Some(byte),
                    b'[' | b'(' | b'{' => depth += 1,
                    b']' | b')' | b'}' => depth = depth.saturating_sub(1),
                    _ => {}
                }
            }
        }
        at += 1;
    }
    bytes.len()
}

/// The position of the bracket closing the one at `open`.
fn closing(code: &str, open: usize) -> Option<usize> {
    let end = walk(code, open, |at, byte, depth| at > open && depth == 1 && matches!(byte, b']' | b')' | b'}'));
    (end < code.len()).then_some(end)
}

/// The end of the statement that runs from `from`: the first newline outside brackets that no
/// backslash continues.
fn statement_end(code: &str, from: usize) -> usize {
    let bytes = code.as_bytes();
    walk(code, from, |at, byte, depth| byte == b'\n' && depth == 0 && (at == 0 || bytes[at - 1] != b'\\'))
}

/// `text` split at `separator` outside brackets and strings.
fn split_top_level(text: &str, separator: u8) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    walk(text, 0, |at, byte, depth| {
        if byte == separator && depth == 0 {
            parts.push(&text[start..at]);
            start = at + 1;
        }
        false
    });
    parts.push(&text[start..]);
    parts
}

/// The string literals in `code`, in order (prefixes such as `r` and escapes are not interpreted:
/// event types have neither).
fn string_literals(code: &str) -> Vec<String> {
    let mut literals = Vec::new();
    let mut chars = code.chars();
    while let Some(c) = chars.next() {
        if matches!(c, '"' | '\'') {
            let mut literal = String::new();
            while let Some(next) = chars.next() {
                match next {
                    '\\' => literal.extend(chars.next()),
                    _ if next == c => break,
                    _ => literal.push(next),
                }
            }
            literals.push(literal);
        }
    }
    literals
}

fn is_ident_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// The inside of `name[…]` when `expression` is exactly that subscript (the name possibly qualified:
/// `typing_extensions.Annotated[…]`).
fn subscript<'a>(expression: &'a str, name: &str) -> Option<&'a str> {
    let open = expression.find('[')?;
    let head = expression[..open].trim_end();
    let qualified = head.strip_suffix(name)?;
    if !(qualified.is_empty() || qualified.ends_with('.')) {
        return None;
    }
    let close = closing(expression, open)?;
    expression[close + 1..].trim().is_empty().then(|| &expression[open + 1..close])
}

/// The string values of the first `Literal[…]` in `code`.
fn literal_values(code: &str) -> Option<Vec<String>> {
    let mut from = 0;
    while let Some(found) = code[from..].find("Literal[") {
        let at = from + found;
        if at == 0 || !is_ident_byte(code.as_bytes()[at - 1]) {
            let open = at + "Literal".len();
            let close = closing(code, open)?;
            return Some(string_literals(&code[open + 1..close]));
        }
        from = at + 1;
    }
    None
}

/// What `from X import A, B as C` statements bring in: local name → (module, name in the module).
/// Parenthesised lists may span lines.
fn imports(code: &str) -> BTreeMap<String, (String, String)> {
    let mut names = BTreeMap::new();
    let mut line_start = 0;
    while line_start < code.len() {
        let line_end = code[line_start..].find('\n').map_or(code.len(), |at| line_start + at);
        let mut next = line_end + 1;
        if let Some(rest) = code[line_start..line_end].strip_prefix("from ") {
            let mut words = rest.split_whitespace();
            if let (Some(module), Some("import")) = (words.next(), words.next()) {
                let import_at =
                    line_start + code[line_start..line_end].find(" import ").unwrap_or(0) + " import ".len();
                let list_start = import_at + (code[import_at..].len() - code[import_at..].trim_start().len());
                let list = if code[list_start..].starts_with('(') {
                    let close = closing(code, list_start).unwrap_or(code.len());
                    next = close + 1;
                    &code[list_start + 1..close.min(code.len())]
                } else {
                    let end = statement_end(code, list_start);
                    next = end + 1;
                    &code[list_start..end]
                };
                for item in split_top_level(list, b',') {
                    let words: Vec<&str> = item.split_whitespace().filter(|w| *w != "\\").collect();
                    match words.as_slice() {
                        [name] => names.insert((*name).to_owned(), (module.to_owned(), (*name).to_owned())),
                        [name, "as", alias] => {
                            names.insert((*alias).to_owned(), (module.to_owned(), (*name).to_owned()))
                        }
                        _ => None,
                    };
                }
            }
        }
        line_start = next;
    }
    names
}

/// One member of the union: its class, and the module it is imported from (`None`: defined in the
/// union's own file).
#[derive(Debug, PartialEq)]
struct Member {
    class: String,
    module: Option<String>,
}

/// Why the wheel's Python source could not be read for the types (the parser's own words).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Unreadable {
    #[error("has no Version: line")]
    NoVersion,
    #[error("no assignment to {name}")]
    NoAssignment { name: String },
    #[error("{name} has a member that is not a class name: {part:?}")]
    NotAClass { name: String, part: String },
    #[error("{name}'s member {part} is neither imported nor defined there")]
    Unresolved { name: String, part: String },
    #[error("{name} has no members")]
    NoMembers { name: String },
    #[error("no class {class}")]
    NoClass { class: String },
    #[error("{class}.type is not a Literal")]
    NotLiteral { class: String },
    #[error("{class}.type is a Literal of {count} values, not one")]
    NotOneValue { class: String, count: usize },
    #[error("class {class} has no `type: Literal[…]` field")]
    NoTypeField { class: String },
    #[error("the event_types Literal is empty")]
    EmptyEnum,
}

/// The members of the union assigned to `name` in `source`: `name: TypeAlias = Annotated[Union[A,
/// B, …], …]`, with or without `Annotated`, or `A | B | …`; each resolved through the file's imports
/// (aliases followed to the class's own name).
fn union_members(source: &str, name: &str) -> std::result::Result<Vec<Member>, Unreadable> {
    let code = code_of(source);
    let mut offset = 0;
    let mut equals = None;
    for line in code.split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix(name) {
            let rest_trimmed = rest.trim_start();
            if rest_trimmed.starts_with([':', '=']) && !rest_trimmed.starts_with("==") {
                equals = line.find('=').map(|at| offset + at);
                break;
            }
        }
        offset += line.len();
    }
    let equals = equals.ok_or_else(|| Unreadable::NoAssignment { name: name.to_owned() })?;
    let statement = code[equals + 1..statement_end(&code, equals + 1)].replace("\\\n", " ");
    let mut expression = statement.trim();
    if let Some(inside) = subscript(expression, "Annotated") {
        expression = split_top_level(inside, b',').first().copied().unwrap_or_default().trim();
    }
    let parts = match subscript(expression, "Union") {
        Some(inside) => split_top_level(inside, b','),
        None => split_top_level(expression, b'|'),
    };
    let imported = imports(&code);
    let mut members = Vec::new();
    for part in parts {
        let part = part.trim().trim_matches(['"', '\'']);
        if part.is_empty() {
            continue;
        }
        if !part.bytes().all(is_ident_byte) {
            return Err(Unreadable::NotAClass { name: name.to_owned(), part: part.to_owned() });
        }
        let member = match imported.get(part) {
            Some((module, class)) => Member { class: class.clone(), module: Some(module.clone()) },
            None if class_at(&code, part).is_some() => Member { class: part.to_owned(), module: None },
            None => return Err(Unreadable::Unresolved { name: name.to_owned(), part: part.to_owned() }),
        };
        members.push(member);
    }
    if members.is_empty() {
        return Err(Unreadable::NoMembers { name: name.to_owned() });
    }
    Ok(members)
}

/// The file of `module` imported from `from_file` (`.x` → the same package, `..x` → its parent,
/// `a.b` → from the wheel's root).
fn module_file(from_file: &str, module: &str) -> String {
    let dots = module.bytes().take_while(|&b| b == b'.').count();
    let mut parts: Vec<&str> = if dots == 0 { Vec::new() } else { from_file.split('/').collect() };
    parts.pop();
    for _ in 1..dots {
        parts.pop();
    }
    let rest = &module[dots..];
    if rest.is_empty() {
        parts.push("__init__");
    } else {
        parts.extend(rest.split('.'));
    }
    format!("{}.py", parts.join("/"))
}

/// Where `class <class>` starts in `code` (a `class` statement at any indentation), and its
/// indentation.
fn class_at(code: &str, class: &str) -> Option<(usize, usize)> {
    let mut offset = 0;
    for line in code.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("class ").map(str::trim_start).and_then(|r| r.strip_prefix(class)) {
            if rest.trim_start().starts_with(['(', ':']) {
                let indent = line.len() - trimmed.len();
                return Some((offset + indent, indent));
            }
        }
        offset += line.len();
    }
    None
}

/// The event type of `class` in `source`: its own `type: Literal["…"]` field (not one of a nested
/// or neighbouring class).
fn event_type(source: &str, class: &str) -> std::result::Result<String, Unreadable> {
    let code = code_of(source);
    let (start, indent) = class_at(&code, class).ok_or_else(|| Unreadable::NoClass { class: class.to_owned() })?;
    let mut at = statement_end(&code, start) + 1;
    let mut field_indent = None;
    while at < code.len() {
        let line_end = code[at..].find('\n').map_or(code.len(), |end| at + end);
        let line = &code[at..line_end];
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            at = line_end + 1;
            continue;
        }
        let line_indent = line.len() - trimmed.len();
        if line_indent <= indent {
            break;
        }
        let statement = statement_end(&code, at);
        if *field_indent.get_or_insert(line_indent) == line_indent {
            let field = trimmed.strip_prefix("type").map(str::trim_start);
            if let Some(annotation) = field.and_then(|rest| rest.strip_prefix(':')) {
                let annotation_start = line_end - annotation.len();
                let values = literal_values(&code[annotation_start..statement])
                    .ok_or_else(|| Unreadable::NotLiteral { class: class.to_owned() })?;
                return match values.as_slice() {
                    [one] => Ok(one.clone()),
                    _ => Err(Unreadable::NotOneValue { class: class.to_owned(), count: values.len() }),
                };
            }
        }
        at = statement + 1;
    }
    Err(Unreadable::NoTypeField { class: class.to_owned() })
}

/// The values of the `event_types` (or `event_type`) field's `Literal[…]` in `source`: `None` when
/// no such field has a Literal type.
fn enum_values(source: &str) -> Option<std::result::Result<Vec<String>, Unreadable>> {
    let code = code_of(source);
    let mut offset = 0;
    for line in code.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let field = trimmed.strip_prefix("event_types").or_else(|| trimmed.strip_prefix("event_type"));
        if let Some(annotation) = field.map(str::trim_start).and_then(|rest| rest.strip_prefix(':')) {
            let start = offset + line.len() - annotation.len();
            if let Some(values) = literal_values(&code[start..statement_end(&code, start)]) {
                return Some(if values.is_empty() { Err(Unreadable::EmptyEnum) } else { Ok(values) });
            }
        }
        offset += line.len();
    }
    None
}

// ---------------------------------------------------------------------------------------------
// The report.
// ---------------------------------------------------------------------------------------------

/// What the plugin has.
struct Plugin<'a> {
    /// `events::known_openai_types()`: the types it declares an event for.
    declared: Vec<&'a str>,
    /// `constructor::fallback_types()`: what it offers to subscribe to when OpenAI cannot be asked.
    fallback: Vec<&'a str>,
    /// `constructor::MANUAL_ONLY_TYPES`: declared types a constructor cannot subscribe to.
    manual_only: &'a [&'a str],
}

/// The report's lines, and how many types are missing.
struct Report {
    lines: Vec<String>,
    missing: usize,
}

/// A heading with the count of its items and the items below it (each one or more lines), or
/// `heading: none`.
fn section(lines: &mut Vec<String>, heading: &str, items: Vec<Vec<String>>) {
    lines.push(String::new());
    if items.is_empty() {
        lines.push(format!("{heading}: none"));
    } else {
        lines.push(format!("{heading} ({}):", items.len()));
        lines.extend(items.into_iter().flatten());
    }
}

/// A type and a note, in columns: one item of a [`section`].
fn item(openai_type: &str, note: &str) -> Vec<String> {
    vec![if note.is_empty() { format!("  {openai_type}") } else { format!("  {openai_type:<COLUMN$}{note}") }]
}

/// The first place where `ours` and `theirs` (the values both have, each in its own order) differ.
fn first_order_difference<'a>(theirs: &[&'a str], ours: &[&'a str]) -> Option<(usize, &'a str, &'a str)> {
    let theirs: Vec<&str> = theirs.iter().copied().filter(|t| ours.contains(t)).collect();
    let ours: Vec<&str> = ours.iter().copied().filter(|t| theirs.contains(t)).collect();
    theirs.iter().zip(&ours).enumerate().find(|(_, (a, b))| a != b).map(|(at, (a, b))| (at + 1, *a, *b))
}

/// The report: OpenAI's lists against the plugin's, with `on_purpose` the types left undeclared
/// on purpose and why.
fn report(openai: &OpenAiLists, plugin: &Plugin<'_>, on_purpose: &[(&str, &str)]) -> Report {
    let union: Vec<&str> = openai.union.iter().map(String::as_str).collect();
    let endpoint_enum: Vec<&str> = openai.endpoint_enum.iter().map(String::as_str).collect();
    let where_listed = |t: &str| match (union.contains(&t), endpoint_enum.contains(&t)) {
        (true, true) => "union, enum",
        (true, false) => "union",
        (false, true) => "enum",
        (false, false) => "",
    };
    let mut lines = vec![
        format!("openai {} ({})", openai.version, openai.wheel),
        format!("  union:  {} event types, {UNION_FILE}", union.len()),
        format!("  enum:   {} values, {}", endpoint_enum.len(), openai.enum_file),
    ];
    let (same, differ): (Vec<_>, Vec<_>) =
        openai.enum_copies.iter().partition(|(_, values)| values == &openai.endpoint_enum);
    if !same.is_empty() {
        let names: Vec<&str> = same.iter().map(|(file, _)| base_name(file)).collect();
        lines.push(format!("          the same in {}", names.join(", ")));
    }
    for (file, values) in differ {
        let copy: Vec<&str> = values.iter().map(String::as_str).collect();
        lines.push(format!("          {} differs:", base_name(file)));
        lines.extend(copy.iter().filter(|t| !endpoint_enum.contains(t)).map(|t| format!("            has {t}")));
        lines.extend(endpoint_enum.iter().filter(|t| !copy.contains(t)).map(|t| format!("            lacks {t}")));
        if let Some((at, theirs, ours)) = first_order_difference(&copy, &endpoint_enum) {
            lines.push(format!("            order: {theirs} at {at}, where the enum has {ours}"));
        }
    }
    lines.push(format!(
        "  plugin: {} declared types, fallback_types() {}, MANUAL_ONLY_TYPES {}",
        plugin.declared.len(),
        plugin.fallback.len(),
        plugin.manual_only.len()
    ));

    let mut listed: Vec<&str> = union.iter().chain(&endpoint_enum).copied().collect();
    listed.sort_unstable();
    listed.dedup();
    let is_on_purpose = |t: &str| on_purpose.iter().any(|(undeclared, _)| *undeclared == t);
    let missing: Vec<&str> =
        listed.iter().copied().filter(|t| !plugin.declared.contains(t) && !is_on_purpose(t)).collect();
    section(
        &mut lines,
        "MISSING: OpenAI lists them, the plugin declares no event",
        missing.iter().map(|t| item(t, where_listed(t))).collect(),
    );

    let mut purposeful = Vec::new();
    for (t, why) in on_purpose {
        if plugin.declared.contains(t) {
            purposeful.push(item(t, "declared now: drop it from UNDECLARED_ON_PURPOSE"));
        } else if listed.contains(t) {
            let mut lines = item(t, where_listed(t));
            lines.push(format!("    {why}"));
            purposeful.push(lines);
        } else {
            purposeful.push(item(t, "no longer listed: drop it from UNDECLARED_ON_PURPOSE"));
        }
    }
    section(&mut lines, "Undeclared on purpose", purposeful);

    let mut stale: Vec<&str> = plugin.declared.iter().copied().filter(|t| !union.contains(t)).collect();
    stale.sort_unstable();
    section(
        &mut lines,
        "Declared, no longer in OpenAI's union",
        stale.iter().map(|t| item(t, if endpoint_enum.contains(t) { "still in the enum" } else { "" })).collect(),
    );

    lines.push(String::new());
    lines.push("The webhook_endpoints enum against fallback_types():".to_owned());
    let added: Vec<String> =
        endpoint_enum.iter().filter(|t| !plugin.fallback.contains(t)).map(|t| format!("    {t}")).collect();
    let removed: Vec<String> =
        plugin.fallback.iter().filter(|t| !endpoint_enum.contains(t)).map(|t| format!("    {t}")).collect();
    for (heading, items) in [("  added by OpenAI", added), ("  not in OpenAI's enum", removed)] {
        if items.is_empty() {
            lines.push(format!("{heading}: none"));
        } else {
            lines.push(format!("{heading} ({}):", items.len()));
            lines.extend(items);
        }
    }
    match first_order_difference(&endpoint_enum, &plugin.fallback) {
        None => lines.push("  order: the same".to_owned()),
        Some((at, theirs, ours)) => {
            lines.push(format!("  order: differs; the first difference, at {at} of the values both have:"));
            lines.push(format!("    OpenAI {theirs}, the plugin {ours}"));
        }
    }

    let mut manual = Vec::new();
    for t in plugin.manual_only.iter().filter(|t| endpoint_enum.contains(t)) {
        manual.push(item(t, "manual-only, yet in OpenAI's enum"));
    }
    let mut unsubscribable: Vec<&str> = plugin
        .declared
        .iter()
        .copied()
        .filter(|t| !endpoint_enum.contains(t) && !plugin.manual_only.contains(t))
        .collect();
    unsubscribable.sort_unstable();
    for t in unsubscribable {
        manual.push(item(t, "not in OpenAI's enum, not manual-only"));
    }
    section(&mut lines, "MANUAL_ONLY_TYPES against OpenAI's enum", manual);

    lines.push(String::new());
    lines.push(match missing.len() {
        0 => "openai-drift: nothing missing".to_owned(),
        n => format!("openai-drift: {n} missing (exit 1)"),
    });
    Report { lines, missing: missing.len() }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const UNION: &str = r#"# File generated from our OpenAPI spec. See CONTRIBUTING.md for details.

from typing import Union
from typing_extensions import Annotated, TypeAlias

from ..._utils import PropertyInfo
from .batch_failed_webhook_event import BatchFailedWebhookEvent
from .live_event import (
    LiveEvent as LiveAlias,  # an alias, in a parenthesised list
    Unused,
)
from .blocked_webhook_event import BlockedWebhookEvent

__all__ = ["UnwrapWebhookEvent"]

# UnwrapWebhookEvent = Union[NotThisOne]
UnwrapWebhookEvent: TypeAlias = Annotated[
    Union[
        BatchFailedWebhookEvent,
        # a comment between members, BlockedWebhookEvent,
        LiveAlias,
    ],
    PropertyInfo(discriminator="type"),
]
"#;

    const EVENT: &str = r#"from typing_extensions import Literal

from ..._models import BaseModel

__all__ = ["LiveEvent", "Data"]


class Data(BaseModel):
    """Event data payload.

    type: Literal["not.from.a.docstring"]
    """

    type: Literal["webrtc"]


class LiveEvent(BaseModel):
    id: str
    # type: Literal["not.from.a.comment"]
    data: Data

    object: Literal["event"]

    type: Literal[
        "live.transport.connected"
    ]
    """The type of the event. Always `live.transport.connected`."""
"#;

    const CREATE_PARAMS: &str = r#"from typing import List
from typing_extensions import Literal, Required, TypedDict


class WebhookCreateParams(TypedDict, total=False):
    event_types: Required[
        List[
            Literal[
                "health.alert.triggered",  # new in 3.62.0
                "batch.completed",
                'video.completed',
            ]
        ]
    ]
    """The event types that trigger deliveries to this endpoint."""

    name: Required[str]
"#;

    #[test]
    fn the_union_is_read_not_the_imports() {
        let members = union_members(UNION, "UnwrapWebhookEvent").unwrap();
        assert_eq!(
            members,
            [
                Member { class: "BatchFailedWebhookEvent".into(), module: Some(".batch_failed_webhook_event".into()) },
                Member { class: "LiveEvent".into(), module: Some(".live_event".into()) },
            ]
        );
    }

    #[test]
    fn unions_without_annotated_and_with_bars_and_forward_references() {
        let plain = "from .a import A\nfrom .b import B\n\nX = Union[A, B]\n";
        let bars = "from .a import A\nfrom .b import B\n\nX: TypeAlias = A | \\\n    'B'\n";
        let local = "from .a import A\n\nclass C(BaseModel):\n    type: Literal['c']\n\nX = typing.Union[A, C]\n";
        for source in [plain, bars] {
            let classes: Vec<String> = union_members(source, "X").unwrap().into_iter().map(|m| m.class).collect();
            assert_eq!(classes, ["A", "B"], "{source}");
        }
        assert_eq!(union_members(local, "X").unwrap()[1], Member { class: "C".into(), module: None });
        assert!(
            union_members("from .a import A\nX = Union[A, Missing]\n", "X")
                .unwrap_err()
                .to_string()
                .contains("Missing")
        );
        assert!(union_members("Y = Union[A]\n", "X").unwrap_err().to_string().contains("no assignment"));
    }

    #[test]
    fn an_event_type_is_its_own_classes_type_field() {
        assert_eq!(event_type(EVENT, "LiveEvent").unwrap(), "live.transport.connected");
        assert_eq!(event_type(EVENT, "Data").unwrap(), "webrtc");
        assert!(event_type(EVENT, "Other").unwrap_err().to_string().contains("no class Other"));
        let two = "class E(BaseModel):\n    type: Literal[\"a\", \"b\"]\n";
        assert!(event_type(two, "E").unwrap_err().to_string().contains("2 values"));
        let none = "class E(BaseModel):\n    kind: Literal[\"a\"]\n\n\nclass F:\n    type: Literal[\"f\"]\n";
        assert!(event_type(none, "E").unwrap_err().to_string().contains("no `type"));
        let nested =
            "class E(BaseModel):\n    class Inner:\n        type: Literal[\"inner\"]\n\n    type: Literal['e']\n";
        assert_eq!(event_type(nested, "E").unwrap(), "e");
    }

    #[test]
    fn the_enum_is_the_literal_of_the_event_types_field() {
        assert_eq!(
            enum_values(CREATE_PARAMS).unwrap().unwrap(),
            ["health.alert.triggered", "batch.completed", "video.completed"]
        );
        let test_params = "class P(TypedDict, total=False):\n    event_type: Required[Literal[\"a\", \"b\"]]\n";
        assert_eq!(enum_values(test_params).unwrap().unwrap(), ["a", "b"]);
        // The endpoint model: the field is a plain list of strings, the Literal after it is another field's.
        let model = "class WebhookEndpoint(BaseModel):\n    event_types: List[str]\n    object: Literal[\"webhook_endpoint\"]\n";
        assert!(enum_values(model).is_none());
    }

    #[test]
    fn module_files_resolve_relative_imports() {
        let from = "openai/types/webhooks/unwrap_webhook_event.py";
        assert_eq!(module_file(from, ".batch_failed"), "openai/types/webhooks/batch_failed.py");
        assert_eq!(module_file(from, "..shared.event"), "openai/types/shared/event.py");
        assert_eq!(module_file(from, "openai.types.x"), "openai/types/x.py");
    }

    #[test]
    fn comments_and_docstrings_are_blanked_strings_kept() {
        let code = code_of("a = \"#no\"  # yes\n\"\"\"doc\n'x'\"\"\" b = 'c'\n");
        assert_eq!(code.lines().count(), 3);
        assert!(code.contains("\"#no\"") && !code.contains("yes") && !code.contains("doc") && code.contains("'c'"));
        assert!(!code.contains("'x'"));
        assert_eq!(
            metadata_version("Metadata-Version: 2.3\nName: openai\nVersion: 3.63.0\n\nVersion: 9"),
            Some("3.63.0")
        );
    }

    fn wheel(files: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut out);
        for (name, text) in files {
            zip.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            zip.write_all(text.as_bytes()).unwrap();
        }
        zip.finish().unwrap();
        out.into_inner()
    }

    fn fixture_wheel(update_params: &str) -> Vec<u8> {
        let batch = "class BatchFailedWebhookEvent(BaseModel):\n    type: Literal[\"batch.failed\"]\n";
        let blocked = "class BlockedWebhookEvent(BaseModel):\n    type: Literal[\"safety_identifier.blocked\"]\n";
        wheel(&[
            ("openai-9.1.0.dist-info/METADATA", "Metadata-Version: 2.3\nName: openai\nVersion: 9.1.0\n"),
            (UNION_FILE, UNION),
            ("openai/types/webhooks/batch_failed_webhook_event.py", batch),
            ("openai/types/webhooks/live_event.py", EVENT),
            ("openai/types/webhooks/blocked_webhook_event.py", blocked),
            ("openai/types/webhooks/webhook_create_params.py", CREATE_PARAMS),
            ("openai/types/webhooks/webhook_update_params.py", update_params),
            ("openai/types/webhooks/webhook_list_params.py", "class P(TypedDict):\n    after: str\n"),
            ("openai/types/webhooks/webhook_endpoint.py", "class E:\n    event_types: List[str]\n"),
        ])
    }

    #[test]
    fn a_wheel_is_read_through_its_union_and_its_create_params() {
        let lists = read_wheel("openai-9.1.0-py3-none-any.whl", &fixture_wheel(CREATE_PARAMS)).unwrap();
        assert_eq!(lists.version, "9.1.0");
        assert_eq!(lists.union, ["batch.failed", "live.transport.connected"]);
        assert_eq!(lists.endpoint_enum, ["health.alert.triggered", "batch.completed", "video.completed"]);
        assert_eq!(lists.enum_file, "openai/types/webhooks/webhook_create_params.py");
        assert_eq!(lists.enum_copies.len(), 1);
        let missing = read_wheel("w.whl", &wheel(&[("openai-1.dist-info/METADATA", "Version: 1\n")])).unwrap_err();
        assert!(missing.to_string().contains(UNION_FILE), "{missing}");
    }

    fn lists(union: &[&str], endpoint_enum: &[&str]) -> OpenAiLists {
        OpenAiLists {
            wheel: "openai-9.1.0-py3-none-any.whl".into(),
            version: "9.1.0".into(),
            union: union.iter().map(|t| (*t).to_owned()).collect(),
            endpoint_enum: endpoint_enum.iter().map(|t| (*t).to_owned()).collect(),
            enum_file: "openai/types/webhooks/webhook_create_params.py".into(),
            enum_copies: vec![(
                "openai/types/webhooks/webhook_test_params.py".into(),
                endpoint_enum.iter().map(|t| (*t).to_owned()).collect(),
            )],
        }
    }

    const ON_PURPOSE: &[(&str, &str)] = &[("video.completed", "shut down")];

    #[test]
    fn a_missing_type_is_reported_and_fails() {
        let openai = lists(
            &["batch.failed", "health.alert.triggered", "live.transport.connected", "live.transport.incoming"],
            &["health.alert.triggered", "batch.failed", "video.completed"],
        );
        let plugin = Plugin {
            declared: vec!["batch.failed", "live.transport.incoming", "eval.run.failed"],
            fallback: vec!["video.completed", "batch.failed", "eval.run.failed"],
            manual_only: &["live.transport.incoming"],
        };
        let report = report(&openai, &plugin, ON_PURPOSE);
        assert_eq!(report.missing, 2);
        let text = report.lines.join("\n");
        assert_eq!(
            text,
            "\
openai 9.1.0 (openai-9.1.0-py3-none-any.whl)
  union:  4 event types, openai/types/webhooks/unwrap_webhook_event.py
  enum:   3 values, openai/types/webhooks/webhook_create_params.py
          the same in webhook_test_params.py
  plugin: 3 declared types, fallback_types() 3, MANUAL_ONLY_TYPES 1

MISSING: OpenAI lists them, the plugin declares no event (2):
  health.alert.triggered          union, enum
  live.transport.connected        union

Undeclared on purpose (1):
  video.completed                 enum
    shut down

Declared, no longer in OpenAI's union (1):
  eval.run.failed

The webhook_endpoints enum against fallback_types():
  added by OpenAI (1):
    health.alert.triggered
  not in OpenAI's enum (1):
    eval.run.failed
  order: differs; the first difference, at 1 of the values both have:
    OpenAI batch.failed, the plugin video.completed

MANUAL_ONLY_TYPES against OpenAI's enum (1):
  eval.run.failed                 not in OpenAI's enum, not manual-only

openai-drift: 2 missing (exit 1)"
        );
        assert!(report.lines.iter().all(|line| line.chars().count() <= 80), "{text}");
    }

    #[test]
    fn nothing_missing_passes_and_stale_purposes_are_named() {
        let openai = lists(&["batch.failed"], &["batch.failed"]);
        let plugin = Plugin { declared: vec!["batch.failed"], fallback: vec!["batch.failed"], manual_only: &[] };
        let report = report(&openai, &plugin, ON_PURPOSE);
        assert_eq!(report.missing, 0);
        let text = report.lines.join("\n");
        assert!(text.contains("MISSING: OpenAI lists them, the plugin declares no event: none"), "{text}");
        assert!(text.contains("video.completed                 no longer listed"), "{text}");
        assert!(text.contains("  order: the same"), "{text}");
        assert!(text.ends_with("openai-drift: nothing missing"), "{text}");
    }

    #[test]
    fn the_copies_of_the_enum_are_compared() {
        let update = CREATE_PARAMS.replace("'video.completed',", "'video.failed',");
        let lists = read_wheel("w.whl", &fixture_wheel(&update)).unwrap();
        let plugin = Plugin { declared: vec![], fallback: vec![], manual_only: &[] };
        let text = report(&lists, &plugin, &[]).lines.join("\n");
        assert!(
            text.contains(
                "webhook_update_params.py differs:\n            has video.failed\n            lacks video.completed"
            ),
            "{text}"
        );
    }
}
