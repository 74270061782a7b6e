/*!
The build-script helper (feature `build`): loads a plugin package's YAML — `manifest.yaml`, the
providers its `plugins.{tools,endpoints,triggers}` lists, their tool, endpoint and event files —
checks every file by the daemon's rules ([`validate`](crate::validate)), inlines the children the
way remote registration sends them (plugin-kinds.md §11) and writes the result to `OUT_DIR`, so
the plugin binary carries its declaration as data ([`include_declaration!`](crate::include_declaration))
and a bad declaration fails `cargo build`, naming file, field and rule, instead of failing at the
daemon.

```toml
[build-dependencies]
dify-plugin = { version = "…", features = ["build"] }
```

```rust,no_run
// build.rs
fn main() {
    if let Err(err) = dify_plugin::build::embed(env!("CARGO_MANIFEST_DIR")) {
        panic!("{err}");
    }
}
```

Then in `src/main.rs`, `dify_plugin::include_declaration!()` evaluates to the declaration for
`dify_plugin::run` and `Router::declaration` (a `Result`; it reads `OUT_DIR`, so it compiles only in a
crate whose build script ran [`embed`]).

Every kind is loaded: tool providers with their tools, endpoint groups with their endpoints,
trigger providers with their events, agent strategy providers with their strategies, datasource
providers with their datasources, and model providers with their predefined models — the
`models.<type>.predefined` globs matched as the daemon matches them (Go's `filepath.Match` over
every file of the package, `*` and `?` within one path segment, `_position.yaml` files skipped;
plugin-kinds.md §1.3, §4.1) and inlined as the array remote registration needs, each model's type
checked against its key and the provider's `supported_model_types`, with the order of each
`position` file kept as the provider's `position` (§11).
*/
#![allow(clippy::needless_doctest_main, reason = "the example is a build script: its main is the point")]

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::declaration::{Asset, Declaration, Embedded, EmbeddedProvider, ProviderKind};
use crate::validate::{Checker, Problem};

/// Why a package's declaration cannot be embedded.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A file could not be read (missing, unreadable).
    #[error("{file}: {source}")]
    Io { file: String, source: std::io::Error },
    /// A file is not YAML.
    #[error("{file} is not valid YAML: {message}")]
    Yaml { file: String, message: String },
    /// The files break the daemon's rules: every problem found, as `file: field: rule`.
    #[error("the plugin's declaration breaks {} rule(s):\n{}", .0.len(), list(.0))]
    Invalid(Vec<Problem>),
    /// `OUT_DIR` is not set: `embed` runs only inside a build script.
    #[error("OUT_DIR is not set: call dify_plugin::build::embed from a build script")]
    NoOutDir,
}

fn list(problems: &[Problem]) -> String {
    let mut text = String::new();
    for problem in problems {
        let _ = writeln!(text, "  {problem}");
    }
    text
}

/// A loaded package: its declaration (assets read into memory) and every file read (for
/// `cargo:rerun-if-changed`).
#[derive(Debug)]
pub struct Loaded {
    pub declaration: Declaration,
    pub files: Vec<PathBuf>,
}

/// For a build script: loads and checks the package at `plugin_dir` ([`load`]), writes
/// `$OUT_DIR/dify_plugin/{declaration.json,assets.rs}` and prints `cargo:rerun-if-changed` for
/// every file read and for `_assets/`.
///
/// Errors: see [`BuildError`]; the build script should fail the build with its message.
#[allow(clippy::print_stdout, reason = "cargo reads a build script's instructions from its stdout")]
pub fn embed(plugin_dir: impl AsRef<Path>) -> Result<(), BuildError> {
    let out = std::env::var_os("OUT_DIR").ok_or(BuildError::NoOutDir)?;
    let files = embed_into(plugin_dir.as_ref(), Path::new(&out))?;
    for file in files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    println!("cargo:rerun-if-changed={}", plugin_dir.as_ref().join("_assets").display());
    Ok(())
}

/// [`embed`] into `out_dir`, printing nothing; returns the files read.
///
/// Errors: see [`BuildError`].
pub fn embed_into(plugin_dir: &Path, out_dir: &Path) -> Result<Vec<PathBuf>, BuildError> {
    let loaded = load(plugin_dir)?;
    let dir = out_dir.join("dify_plugin");
    let io = |file: &Path| {
        let file = file.display().to_string();
        move |source| BuildError::Io { file, source }
    };
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    let embedded = Embedded {
        manifest: loaded.declaration.manifest.clone(),
        providers: loaded
            .declaration
            .providers
            .iter()
            .map(|(kind, declaration)| EmbeddedProvider { kind: *kind, declaration: declaration.clone() })
            .collect(),
    };
    let json = serde_json::to_string(&embedded).unwrap_or_default();
    fs::write(dir.join("declaration.json"), json).map_err(io(&dir.join("declaration.json")))?;
    let mut assets = String::from("&[\n");
    for asset in &loaded.declaration.assets {
        let path = plugin_dir.join("_assets").join(asset.name.as_ref());
        let absolute = fs::canonicalize(&path).map_err(io(&path))?;
        let _ =
            writeln!(assets, "    ({:?}, include_bytes!({:?}) as &[u8]),", asset.name, absolute.display().to_string());
    }
    assets.push(']');
    fs::write(dir.join("assets.rs"), assets).map_err(io(&dir.join("assets.rs")))?;
    Ok(loaded.files)
}

/// Loads the package at `plugin_dir`: the manifest, each listed provider with its children
/// inlined (tools, endpoints, events as objects), every file under `_assets/`; and checks them
/// all, collecting every problem before failing.
///
/// Errors: a file that cannot be read or parsed, or [`BuildError::Invalid`] with every broken rule.
pub fn load(plugin_dir: impl AsRef<Path>) -> Result<Loaded, BuildError> {
    let root = plugin_dir.as_ref();
    let asset_dir = root.join("_assets");
    let asset_exists = |name: &str| !name.contains("..") && asset_dir.join(name).is_file();
    let mut problems = Vec::new();
    let mut files = Vec::new();
    let mut read = |path: &str| -> Result<Value, BuildError> {
        // Paths in the YAML are package-relative (plugin-kinds.md §1.3): never read outside it.
        let inside = Path::new(path).components().all(|c| matches!(c, std::path::Component::Normal(_)));
        if !inside {
            let source = std::io::Error::new(std::io::ErrorKind::InvalidInput, "is outside the plugin directory");
            return Err(BuildError::Io { file: path.to_owned(), source });
        }
        let file = root.join(path);
        let bytes = fs::read(&file).map_err(|source| BuildError::Io { file: path.to_owned(), source })?;
        files.push(file);
        serde_yaml::from_slice(&bytes)
            .map_err(|err| BuildError::Yaml { file: path.to_owned(), message: err.to_string() })
    };

    let manifest = read("manifest.yaml")?;
    Checker::new("manifest.yaml", &mut problems, &asset_exists).manifest(&manifest);
    let mut declaration = Declaration::new(manifest.clone());
    for kind in ProviderKind::ALL {
        let paths = manifest.pointer(&format!("/plugins/{}", kind.manifest_key())).and_then(Value::as_array);
        for path in paths.into_iter().flatten().filter_map(Value::as_str) {
            let mut provider = read(path)?;
            let mut check = Checker::new(path, &mut problems, &asset_exists);
            let children_key = match kind {
                ProviderKind::Tool => {
                    check.tool_provider(&provider);
                    "tools"
                }
                ProviderKind::Endpoint => {
                    check.endpoint_group(&provider);
                    "endpoints"
                }
                ProviderKind::Trigger => {
                    check.trigger_provider(&provider);
                    "events"
                }
                ProviderKind::AgentStrategy => {
                    check.agent_provider(&provider);
                    "strategies"
                }
                ProviderKind::Datasource => {
                    check.datasource_provider(&provider);
                    "datasources"
                }
                ProviderKind::Model => {
                    check.model_provider(&provider);
                    let (models, position) =
                        load_models(root, path, &provider, &mut read, &mut problems, &asset_exists)?;
                    provider["models"] = Value::Array(models);
                    if !position.is_empty() {
                        provider["position"] = Value::Object(position);
                    }
                    declaration.providers.push((kind, provider));
                    continue;
                }
            };
            let listed = provider.get(children_key).and_then(Value::as_array).cloned().unwrap_or_default();
            let mut inlined = Vec::new();
            let mut names: Vec<String> = Vec::new();
            for (i, child) in listed.iter().enumerate() {
                let (file, value, field) = match child {
                    Value::String(child_path) => (child_path.clone(), read(child_path)?, "(root)".to_owned()),
                    other => (path.to_owned(), other.clone(), format!("{children_key}[{i}]")),
                };
                let mut check = Checker::new(&file, &mut problems, &asset_exists);
                let name = match kind {
                    ProviderKind::Tool => {
                        check.tool(&value);
                        value.pointer("/identity/name").and_then(Value::as_str).map(str::to_owned)
                    }
                    ProviderKind::Endpoint => {
                        check.endpoint(&value, &field);
                        let method = value.get("method").and_then(Value::as_str).unwrap_or_default();
                        let route = value.get("path").and_then(Value::as_str).unwrap_or_default();
                        Some(format!("{method} {route}"))
                    }
                    ProviderKind::AgentStrategy => {
                        check.agent_strategy(&value);
                        value.pointer("/identity/name").and_then(Value::as_str).map(str::to_owned)
                    }
                    ProviderKind::Datasource => {
                        check.datasource(&value);
                        value.pointer("/identity/name").and_then(Value::as_str).map(str::to_owned)
                    }
                    _ => {
                        check.event(&value);
                        value.pointer("/identity/name").and_then(Value::as_str).map(str::to_owned)
                    }
                };
                if let Some(name) = name {
                    if names.contains(&name) {
                        problems.push(Problem {
                            file: path.to_owned(),
                            field: format!("{children_key}[{i}]"),
                            rule: format!("{name:?} is declared twice: a request could not be routed"),
                        });
                    }
                    names.push(name);
                }
                inlined.push(value);
            }
            provider[children_key] = Value::Array(inlined);
            declaration.providers.push((kind, provider));
        }
    }
    if !problems.is_empty() {
        return Err(BuildError::Invalid(problems));
    }
    declaration.assets = read_assets(&asset_dir)?;
    Ok(Loaded { declaration, files })
}

/// The predefined models of model provider `provider` (at `path`): each `models.<key>.predefined`
/// glob matched against the package's files, every match read and checked; and the `position`
/// lists (plugin-kinds.md §4.1). An inline `models` list is taken as it is (checked).
fn load_models(
    root: &Path,
    path: &str,
    provider: &Value,
    read: &mut dyn FnMut(&str) -> Result<Value, BuildError>,
    problems: &mut Vec<Problem>,
    asset_exists: &dyn Fn(&str) -> bool,
) -> Result<(Vec<Value>, Map<String, Value>), BuildError> {
    let supported: Vec<&str> = provider["supported_model_types"]
        .as_array()
        .map(|types| types.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut models: Vec<(String, Value)> = Vec::new();
    let mut position = Map::new();
    let mut add = |file: &str, field: &str, model: Value, expected: Option<&str>, problems: &mut Vec<Problem>| {
        let mut check = Checker::new(file, problems, asset_exists);
        check.model(&model);
        let kind = model["model_type"].as_str().unwrap_or_default().to_owned();
        let name = model["model"].as_str().unwrap_or_default().to_owned();
        let mut fail = |rule: String| problems.push(Problem { file: file.to_owned(), field: field.to_owned(), rule });
        if let Some(expected) = expected.filter(|e| !kind.is_empty() && *e != kind) {
            fail(format!(
                "model_type {kind:?} is listed under models.{}, which holds {expected} models",
                models_key(expected)
            ));
        }
        if !kind.is_empty() && !supported.contains(&kind.as_str()) {
            fail(format!("model_type {kind:?} is not in the provider's supported_model_types (§4.1)"));
        }
        if models.iter().any(|(k, m)| *k == kind && m["model"].as_str() == Some(name.as_str())) {
            fail(format!("{kind} model {name:?} is declared twice"));
        }
        models.push((kind, model));
    };
    match &provider["models"] {
        Value::Null => {}
        Value::Array(inline) => {
            for (i, model) in inline.iter().enumerate() {
                add(path, &format!("models[{i}]"), model.clone(), None, problems);
            }
        }
        Value::Object(by_type) => {
            let files = package_files(root);
            for (key, entry) in by_type {
                let Some(kind) = model_type_of_key(key) else {
                    problems.push(Problem {
                        file: path.to_owned(),
                        field: format!("models.{key}"),
                        rule: "not read by the daemon: the keys are llm text_embedding rerank tts speech2text moderation (§4.1)"
                            .to_owned(),
                    });
                    continue;
                };
                let globs: Vec<&str> = match &entry["predefined"] {
                    Value::Null => Vec::new(),
                    Value::Array(globs) => globs.iter().filter_map(Value::as_str).collect(),
                    _ => {
                        problems.push(Problem {
                            file: path.to_owned(),
                            field: format!("models.{key}.predefined"),
                            rule: "must be a list of glob patterns".to_owned(),
                        });
                        Vec::new()
                    }
                };
                for glob in globs {
                    let matched: Vec<&String> =
                        files.iter().filter(|f| !f.ends_with("_position.yaml") && glob_match(glob, f)).collect();
                    if matched.is_empty() {
                        let why = if glob.contains('[') {
                            " (character classes [...] are not supported here: list the files)"
                        } else {
                            ""
                        };
                        problems.push(Problem {
                            file: path.to_owned(),
                            field: format!("models.{key}.predefined"),
                            rule: format!("{glob:?} matches no file of the package{why}"),
                        });
                    }
                    for file in matched {
                        let model = read(file)?;
                        add(file, "(root)", model, Some(kind), problems);
                    }
                }
                if let Some(position_file) = entry["position"].as_str() {
                    let names = read(position_file)?;
                    match names.as_array() {
                        Some(list) if list.iter().all(Value::is_string) => {
                            position.insert(key.clone(), names.clone());
                        }
                        _ => problems.push(Problem {
                            file: position_file.to_owned(),
                            field: "(root)".to_owned(),
                            rule: "must be a list of model names (§4.1)".to_owned(),
                        }),
                    }
                }
            }
        }
        _ => problems.push(Problem {
            file: path.to_owned(),
            field: "models".to_owned(),
            rule: "must be a mapping of model types or a list of models (§4.1)".to_owned(),
        }),
    }
    // Declared order: by position where listed, then by name (the daemon's order is the files').
    let rank = |kind: &str, name: &str| {
        let key = models_key(kind);
        position
            .get(key)
            .and_then(Value::as_array)
            .and_then(|list| list.iter().position(|n| n.as_str() == Some(name)))
            .unwrap_or(usize::MAX)
    };
    models.sort_by(|(ka, a), (kb, b)| {
        let (na, nb) = (a["model"].as_str().unwrap_or_default(), b["model"].as_str().unwrap_or_default());
        (ka.as_str(), rank(ka, na), na).cmp(&(kb.as_str(), rank(kb, nb), nb))
    });
    Ok((models.into_iter().map(|(_, m)| m).collect(), position))
}

/// The model type a provider's `models` key holds.
fn model_type_of_key(key: &str) -> Option<&'static str> {
    match key {
        "llm" => Some("llm"),
        "text_embedding" => Some("text-embedding"),
        "rerank" => Some("rerank"),
        "tts" => Some("tts"),
        "speech2text" => Some("speech2text"),
        "moderation" => Some("moderation"),
        _ => None,
    }
}

fn models_key(kind: &str) -> &str {
    match kind {
        "text-embedding" => "text_embedding",
        other => other,
    }
}

/// Every file of the package, relative, with `/` separators (what the daemon matches globs on).
fn package_files(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            // file_type() does not follow symbolic links: a link to a directory is not walked
            // (a link loop would never end).
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else if let Ok(relative) = path.strip_prefix(root) {
                files.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    files.sort();
    files
}

/// Go's `filepath.Match` for `*` and `?` (neither crosses `/`); other characters match themselves
/// (`[…]` classes are not supported: a pattern with one matches nothing, and `build` says so).
/// Segment by segment, each with the linear wildcard walk (one backtrack point), so a pattern of
/// many stars cannot take exponential time.
fn glob_match(pattern: &str, name: &str) -> bool {
    fn segment(p: &[u8], n: &[u8]) -> bool {
        let (mut pi, mut ni) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ni < n.len() {
            if pi < p.len() && (p[pi] == b'?' || p[pi] == n[ni]) && p[pi] != b'*' {
                pi += 1;
                ni += 1;
            } else if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, ni));
                pi += 1;
            } else if let Some((star_p, star_n)) = star {
                pi = star_p + 1;
                ni = star_n + 1;
                star = Some((star_p, star_n + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|c| *c == b'*')
    }
    let patterns: Vec<&str> = pattern.split('/').collect();
    let names: Vec<&str> = name.split('/').collect();
    patterns.len() == names.len() && patterns.iter().zip(&names).all(|(p, n)| segment(p.as_bytes(), n.as_bytes()))
}

fn read_assets(dir: &Path) -> Result<Vec<Asset>, BuildError> {
    let mut assets = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let io = |source| BuildError::Io { file: current.display().to_string(), source };
        let entries = match fs::read_dir(&current) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(io(err)),
        };
        for entry in entries {
            let entry = entry.map_err(io)?;
            let path = entry.path();
            // Not following links to directories: a link loop would never end.
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else {
                let bytes =
                    fs::read(&path).map_err(|source| BuildError::Io { file: path.display().to_string(), source })?;
                let name = path.strip_prefix(dir).unwrap_or(&path).to_string_lossy().replace('\\', "/");
                assets.push(Asset { name: name.into(), bytes: bytes.into() });
            }
        }
    }
    assets.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(assets)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temporary plugin directory with `files` (path, YAML text) and `_assets/icon.svg`.
    fn package(name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dify-plugin-build-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for (path, text) in files.iter().chain([&("_assets/icon.svg", "<svg/>")]) {
            let file = dir.join(path);
            fs::create_dir_all(file.parent().unwrap()).unwrap();
            fs::write(file, text).unwrap();
        }
        dir
    }

    const MANIFEST: &str = "version: 0.0.1\ntype: plugin\nauthor: acme\nname: demo\nlabel:\n  en_US: Demo\n\
        description:\n  en_US: Demo\nicon: icon.svg\nresource:\n  memory: 1048576\ncreated_at: 2025-01-01T00:00:00Z\n\
        plugins:\n  tools:\n    - provider/demo.yaml\n  endpoints:\n    - group/demo.yaml\n\
        meta:\n  version: 0.0.1\n  arch: [amd64]\n  runner:\n    language: python\n    version: '3.12'\n    entrypoint: main\n";
    const PROVIDER: &str = "identity:\n  author: acme\n  name: demo\n  label:\n    en_US: Demo\n  icon: icon.svg\n\
        credentials_for_provider:\n  api_key:\n    type: secret-input\n    required: true\n    label:\n      en_US: Key\n\
        tools:\n  - tools/echo.yaml\n";
    const TOOL: &str = "identity:\n  author: acme\n  name: echo\n  label:\n    en_US: Echo\ndescription:\n  human:\n    en_US: Echo\n  llm: Echo\n\
        parameters:\n  - name: text\n    type: string\n    form: llm\n    required: true\n    label:\n      en_US: Text\n    human_description:\n      en_US: Text\n";
    const GROUP: &str = "settings: []\nendpoints:\n  - endpoints/hello.yaml\n";
    const ENDPOINT: &str = "path: /hello/<name>\nmethod: GET\n";

    #[test]
    fn loads_inlines_and_embeds_a_tools_and_endpoints_package() {
        let dir = package(
            "good",
            &[
                ("manifest.yaml", MANIFEST),
                ("provider/demo.yaml", PROVIDER),
                ("tools/echo.yaml", TOOL),
                ("group/demo.yaml", GROUP),
                ("endpoints/hello.yaml", ENDPOINT),
            ],
        );
        let loaded = load(&dir).unwrap();
        let declaration = &loaded.declaration;
        assert_eq!(declaration.kinds(), [ProviderKind::Tool, ProviderKind::Endpoint]);
        assert_eq!(declaration.providers[0].1["tools"][0]["identity"]["name"], "echo");
        assert_eq!(declaration.providers[1].1["endpoints"][0]["path"], "/hello/<name>");
        assert_eq!(declaration.assets.len(), 1);
        assert_eq!(loaded.files.len(), 5);
        let out = dir.join("out");
        embed_into(&dir, &out).unwrap();
        let json = fs::read_to_string(out.join("dify_plugin/declaration.json")).unwrap();
        let back = Declaration::from_embedded(&json, &[]).unwrap();
        assert_eq!(back.providers, declaration.providers);
        let assets = fs::read_to_string(out.join("dify_plugin/assets.rs")).unwrap();
        assert!(assets.contains("(\"icon.svg\", include_bytes!("), "{assets}");
        let _ = fs::remove_dir_all(dir);
    }

    fn problems(name: &str, files: &[(&str, &str)]) -> Vec<String> {
        let dir = package(name, files);
        let result = load(&dir);
        let _ = fs::remove_dir_all(dir);
        match result {
            Err(BuildError::Invalid(problems)) => problems.iter().map(ToString::to_string).collect(),
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn bad_yaml_is_refused_with_file_field_and_rule() {
        let tool = TOOL
            .replace("name: echo", "name: echo tool")
            .replace("form: llm", "form: model")
            .replace("  llm: Echo\n", "");
        let endpoint = "path: hello\nmethod: OPTIONS\n";
        let provider =
            PROVIDER.replace("icon: icon.svg", "icon: nope.svg").replace("type: secret-input", "type: password");
        let found = problems(
            "bad",
            &[
                ("manifest.yaml", &MANIFEST.replace("en_US: Demo\nicon", "zh_Hans: 演示\nicon")),
                ("provider/demo.yaml", &provider),
                ("tools/echo.yaml", &tool),
                ("group/demo.yaml", GROUP),
                ("endpoints/hello.yaml", endpoint),
            ],
        );
        assert_eq!(
            found,
            [
                "manifest.yaml: description.en_US: required: every I18n text needs en_US (§1.3)",
                "provider/demo.yaml: identity.icon: \"nope.svg\" is not a file under _assets/ (the daemon refuses the package)",
                "provider/demo.yaml: credentials_for_provider.api_key.type: \"password\" is not one of secret-input text-input select boolean model-selector app-selector array[tools]",
                "tools/echo.yaml: identity.name: \"echo tool\" must match ^[a-zA-Z0-9_-]+$ (plugin-kinds.md §2.1)",
                "tools/echo.yaml: description.llm: required",
                "tools/echo.yaml: parameters[0].form: required: one of schema, form, llm (§2.1)",
                "endpoints/hello.yaml: path: must start with '/'",
                "endpoints/hello.yaml: method: OPTIONS validates, but the daemon routes only GET POST PUT DELETE to endpoints (§3.1)",
            ]
        );
    }

    #[test]
    fn missing_files_and_broken_yaml_name_the_file() {
        let dir = package("missing", &[("manifest.yaml", MANIFEST), ("provider/demo.yaml", PROVIDER)]);
        let err = load(&dir).unwrap_err().to_string();
        assert!(err.starts_with("tools/echo.yaml: "), "{err}");
        let _ = fs::remove_dir_all(dir);
        let dir = package("broken", &[("manifest.yaml", "plugins: [")]);
        let err = load(&dir).unwrap_err().to_string();
        assert!(err.starts_with("manifest.yaml is not valid YAML"), "{err}");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn duplicate_tools_are_refused() {
        let provider = PROVIDER.replace("  - tools/echo.yaml\n", "  - tools/echo.yaml\n  - tools/echo.yaml\n");
        let manifest = MANIFEST.replace("  endpoints:\n    - group/demo.yaml\n", "");
        let found = problems(
            "dup",
            &[("manifest.yaml", &manifest), ("provider/demo.yaml", &provider), ("tools/echo.yaml", TOOL)],
        );
        assert_eq!(found, ["provider/demo.yaml: tools[1]: \"echo\" is declared twice: a request could not be routed"]);
    }

    const MODEL_PROVIDER: &str = concat!(
        "provider: demo\nlabel:\n  en_US: Demo\nicon_small:\n  en_US: icon.svg\n",
        "supported_model_types: [llm, text-embedding]\nconfigurate_methods: [predefined-model]\n",
        "provider_credential_schema:\n  credential_form_schemas:\n",
        "    - variable: api_key\n      type: secret-input\n      label:\n        en_US: Key\n",
        "models:\n  llm:\n    predefined:\n      - models/llm/*.yaml\n    position: models/llm/_position.yaml\n",
        "  text_embedding:\n    predefined:\n      - models/embedding/*.yaml\n",
    );

    fn model(name: &str, kind: &str) -> String {
        format!(
            "model: {name}\nlabel:\n  en_US: {name}\nmodel_type: {kind}\nparameter_rules:\n  - name: temperature\n    use_template: temperature\n"
        )
    }

    fn model_manifest() -> String {
        MANIFEST.replace(
            "  tools:\n    - provider/demo.yaml\n  endpoints:\n    - group/demo.yaml\n",
            "  models:\n    - provider/m.yaml\n",
        )
    }

    #[test]
    fn model_providers_inline_their_globbed_models_in_position_order() {
        let dir = package(
            "models",
            &[
                ("manifest.yaml", &model_manifest()),
                ("provider/m.yaml", MODEL_PROVIDER),
                ("models/llm/a.yaml", &model("alpha", "llm")),
                ("models/llm/b.yaml", &model("beta", "llm")),
                ("models/llm/_position.yaml", "- beta\n- alpha\n"),
                ("models/llm/notes.txt", "not a model"),
                ("models/embedding/e.yaml", &model("embed", "text-embedding")),
            ],
        );
        let loaded = load(&dir).unwrap();
        let provider = &loaded.declaration.providers[0];
        assert_eq!(provider.0, ProviderKind::Model);
        let names: Vec<&str> =
            provider.1["models"].as_array().unwrap().iter().map(|m| m["model"].as_str().unwrap()).collect();
        assert_eq!(names, ["beta", "alpha", "embed"]);
        assert_eq!(provider.1["position"]["llm"], serde_json::json!(["beta", "alpha"]));
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn bad_model_declarations_are_refused() {
        let found = problems(
            "badmodels",
            &[
                ("manifest.yaml", &model_manifest()),
                (
                    "provider/m.yaml",
                    &MODEL_PROVIDER
                        .replace("variable: api_key", "name: api_key")
                        .replace("models/embedding/*.yaml", "models/none/*.yaml"),
                ),
                (
                    "models/llm/a.yaml",
                    &model("alpha", "rerank").replace("use_template: temperature", "use_template: warmth"),
                ),
                ("models/llm/_position.yaml", "- alpha\n"),
            ],
        );
        assert_eq!(
            found,
            [
                "provider/m.yaml: provider_credential_schema.credential_form_schemas[0].variable: required",
                "provider/m.yaml: provider_credential_schema.credential_form_schemas[0].name: model credential forms name their key `variable`, not `name` (§4.1)",
                "models/llm/a.yaml: parameter_rules[0].use_template: \"warmth\" is not one of temperature top_p top_k presence_penalty frequency_penalty max_tokens response_format json_schema (the daemon: use_template not found)",
                "models/llm/a.yaml: (root): model_type \"rerank\" is listed under models.llm, which holds llm models",
                "models/llm/a.yaml: (root): model_type \"rerank\" is not in the provider's supported_model_types (§4.1)",
                "provider/m.yaml: models.text_embedding.predefined: \"models/none/*.yaml\" matches no file of the package",
            ]
        );
    }

    #[test]
    fn globs_match_as_go_filepath_match() {
        assert!(glob_match("models/llm/*.yaml", "models/llm/gpt-4o.yaml"));
        assert!(!glob_match("models/llm/*.yaml", "models/llm/sub/x.yaml"), "* does not cross /");
        assert!(glob_match("models/?/x.yaml", "models/a/x.yaml"));
        assert!(!glob_match("models/*.yaml", "models/llm.yml"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        // Many stars against a long name: linear, not exponential.
        let pattern = format!("models/x/{}.yaml", "*a".repeat(25));
        assert!(!glob_match(&pattern, &format!("models/x/{}.yaml", "a".repeat(120) + "b")));
    }
}
