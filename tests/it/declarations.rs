//! The tidy test (STYLE.md habit 13): the YAML on disk, the provider's `events:` list and the code's
//! event table agree, and the manifest and every declaration follow the daemon's rules
//! (daemon-protocol.md §8.4, triggers.md §2).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use openai_trigger::events::{self, EVENTS, ParameterKind};

const COMMON_VARIABLES: &[&str] =
    &["id", "object", "created_at", "type", "data", "event_id", "event_type", "webhook_id", "webhook_timestamp"];
const PARAMETER_TYPES: &[&str] = &[
    "string",
    "number",
    "boolean",
    "select",
    "checkbox",
    "file",
    "files",
    "model-selector",
    "app-selector",
    "object",
    "array",
    "dynamic-select",
];

/// The plugin directory: the package's files.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn load(relative: &str) -> Value {
    let text = std::fs::read_to_string(root().join(relative)).unwrap_or_else(|err| panic!("read {relative}: {err}"));
    serde_yaml::from_str(&text).unwrap_or_else(|err| panic!("{relative} is not valid YAML: {err}"))
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|err| panic!("read {}: {err}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml") {
            out.push(path);
        }
    }
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root()).unwrap().to_string_lossy().replace('\\', "/")
}

fn is_name(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_lower_name(text: &str, max: usize) -> bool {
    (1..=max).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// `^\d{1,4}(\.\d{1,4}){2}$`
fn is_xyz(text: &str) -> bool {
    let parts: Vec<&str> = text.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| (1..=4).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

/// RFC 3339 date-time with a zone: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn is_rfc3339_with_zone(text: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (Some(date), Some(rest)) = (text.get(..10), text.get(10..)) else {
        return false;
    };
    let date_ok = date.len() == 10
        && digits(&date[..4])
        && &date[4..5] == "-"
        && digits(&date[5..7])
        && &date[7..8] == "-"
        && digits(&date[8..10]);
    let Some(time) = rest.strip_prefix('T').or_else(|| rest.strip_prefix('t')) else {
        return false;
    };
    let (clock, zone) = match time.find(['Z', 'z', '+', '-']) {
        Some(at) => time.split_at(at),
        None => return false,
    };
    let clock = clock.split_once('.').map_or(clock, |(whole, frac)| if digits(frac) { whole } else { "" });
    let clock_ok = clock.len() == 8
        && digits(&clock[..2])
        && &clock[2..3] == ":"
        && digits(&clock[3..5])
        && &clock[5..6] == ":"
        && digits(&clock[6..8]);
    let zone_ok = zone.eq_ignore_ascii_case("z")
        || (zone.len() == 6 && digits(&zone[1..3]) && &zone[3..4] == ":" && digits(&zone[4..6]));
    date_ok && clock_ok && zone_ok
}

/// Every mapping with an `en_US` key, anywhere in `value`, with its path.
fn i18n_objects<'a>(value: &'a Value, at: String, out: &mut Vec<(String, &'a Value)>) {
    match value {
        Value::Object(map) => {
            if map.contains_key("en_US") {
                out.push((at.clone(), value));
            }
            for (key, item) in map {
                i18n_objects(item, format!("{at}.{key}"), out);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                i18n_objects(item, format!("{at}[{index}]"), out);
            }
        }
        _ => {}
    }
}

fn check_i18n(file: &str, document: &Value, problems: &mut Vec<String>) {
    let mut objects = Vec::new();
    i18n_objects(document, file.to_owned(), &mut objects);
    for (at, object) in objects {
        for language in ["en_US", "zh_Hans", "ja_JP", "pt_BR"] {
            match object[language].as_str() {
                Some(text) if !text.trim().is_empty() && text.chars().count() <= 1023 => {}
                Some(text) => problems.push(format!("{at}.{language} is empty or longer than 1023 ({})", text.len())),
                None => problems.push(format!("{at}.{language} is missing or not a string")),
            }
        }
    }
}

fn require_i18n(at: &str, value: &Value, problems: &mut Vec<String>) {
    if !value.is_object() || !value["en_US"].is_string() {
        problems.push(format!("{at} must be an I18n object with en_US"));
    }
}

#[test]
fn event_files_provider_list_and_event_table_agree() {
    let provider = load("provider/openai_trigger.yaml");
    let listed: Vec<String> = provider["events"]
        .as_array()
        .expect("provider has an events list")
        .iter()
        .map(|entry| entry.as_str().expect("events entries are paths").to_owned())
        .collect();
    let listed_set: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(listed_set.len(), listed.len(), "the provider lists an event twice");

    let mut files = Vec::new();
    yaml_files(&root().join("events"), &mut files);
    let on_disk: BTreeSet<String> = files.iter().map(|path| relative(path)).collect();
    assert_eq!(
        on_disk.difference(&listed_set).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "event files the provider does not list"
    );
    assert_eq!(
        listed_set.difference(&on_disk).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "listed events without a file"
    );

    let table: Vec<String> = EVENTS.iter().map(|spec| spec.path.to_owned()).collect();
    assert_eq!(table, listed, "events::EVENTS and the provider's list, in the same order");

    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    for spec in EVENTS {
        let document = load(spec.path);
        let name = document["identity"]["name"].as_str().unwrap_or_default();
        let stem = Path::new(spec.path).file_stem().unwrap().to_string_lossy();
        if !is_name(name) {
            problems.push(format!("{}: name {name:?} is not ^[a-zA-Z0-9_-]+$", spec.path));
        }
        if name != stem || name != spec.name {
            problems.push(format!("{}: identity.name {name:?}, file {stem:?}, table {:?}", spec.path, spec.name));
        }
        if !names.insert(name.to_owned()) {
            problems.push(format!("{}: event name {name} is declared twice", spec.path));
        }
        if let Some(openai_type) = spec.openai_type {
            if spec.name != openai_type.replace('.', "_") {
                problems.push(format!("{}: name is not the OpenAI type {openai_type} with _ for .", spec.path));
            }
            if events::by_openai_type(openai_type).map(|s| s.name) != Some(spec.name) {
                problems.push(format!("{}: {openai_type} maps to another event", spec.path));
            }
        }
        let embedded: Value = serde_json::from_str(spec.json).unwrap();
        if embedded != document {
            problems.push(format!("{}: the embedded declaration differs from the file", spec.path));
        }
    }
    assert_eq!(
        EVENTS.iter().filter(|spec| spec.openai_type.is_none()).map(|spec| spec.name).collect::<Vec<_>>(),
        [events::ANY_EVENT],
        "only any_event has no OpenAI type"
    );
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn manifest_follows_the_daemon_rules() {
    let manifest = load("manifest.yaml");
    let mut problems = Vec::new();
    let text = |key: &str| manifest[key].as_str().unwrap_or_default().to_owned();
    if !is_xyz(&text("version")) {
        problems.push(format!("version {:?} is not X.Y.Z", manifest["version"]));
    }
    if text("type") != "plugin" {
        problems.push("type must be plugin".into());
    }
    if !is_lower_name(&text("author"), 64) {
        problems.push(format!("author {:?} is not ^[a-z0-9_-]{{1,64}}$", manifest["author"]));
    }
    if !is_lower_name(&text("name"), 128) {
        problems.push(format!("name {:?} is not ^[a-z0-9_-]{{1,128}}$", manifest["name"]));
    }
    require_i18n("manifest.label", &manifest["label"], &mut problems);
    require_i18n("manifest.description", &manifest["description"], &mut problems);
    for icon in ["icon", "icon_dark"] {
        match manifest[icon].as_str() {
            Some(file) if file.len() <= 128 && root().join("_assets").join(file).is_file() => {}
            other => problems.push(format!("manifest {icon} {other:?} is not a file in _assets/")),
        }
    }
    let storage = &manifest["resource"]["permission"]["storage"];
    if storage["enabled"] != true
        || storage["size"].as_u64() != Some(openai_trigger::shared_dedupe::MANIFEST_STORAGE_BYTES as u64)
    {
        problems.push(format!(
            "resource.permission.storage must be enabled with size {} (shared_dedupe::MANIFEST_STORAGE_BYTES), is {storage}",
            openai_trigger::shared_dedupe::MANIFEST_STORAGE_BYTES
        ));
    }
    if manifest["resource"]["memory"].as_u64().is_none_or(|memory| memory == 0) {
        problems.push("resource.memory must be set and non-zero".into());
    }
    let triggers = manifest["plugins"]["triggers"].as_array().cloned().unwrap_or_default();
    if triggers != [Value::from("provider/openai_trigger.yaml")] {
        problems.push(format!("plugins.triggers must be exactly [provider/openai_trigger.yaml], is {triggers:?}"));
    }
    for kind in ["tools", "models", "endpoints", "agent_strategies", "datasources"] {
        if manifest["plugins"][kind].as_array().is_some_and(|list| !list.is_empty()) {
            problems.push(format!("a trigger plugin cannot declare plugins.{kind}"));
        }
    }
    let meta = &manifest["meta"];
    if !meta["version"].as_str().is_some_and(is_xyz) {
        problems.push(format!("meta.version {:?} is not X.Y.Z", meta["version"]));
    }
    let arch: BTreeSet<&str> = meta["arch"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if arch != BTreeSet::from(["amd64", "arm64"]) || meta["arch"].as_array().map(Vec::len) != Some(2) {
        problems.push(format!("meta.arch must be [amd64, arm64], is {}", meta["arch"]));
    }
    let runner = &meta["runner"];
    if (runner["language"].as_str(), runner["version"].as_str(), runner["entrypoint"].as_str())
        != (Some("python"), Some("3.12"), Some("main"))
    {
        problems.push(format!("meta.runner must be python / \"3.12\" / main, is {runner}"));
    }
    if meta["minimum_dify_version"].as_str() != Some("1.10.0") {
        problems.push(format!("meta.minimum_dify_version must be 1.10.0, is {}", meta["minimum_dify_version"]));
    }
    match manifest["created_at"].as_str() {
        Some(at) if is_rfc3339_with_zone(at) => {}
        other => problems.push(format!("created_at {other:?} is not RFC 3339 with a zone")),
    }
    for tag in manifest["tags"].as_array().into_iter().flatten() {
        if !tag.as_str().is_some_and(|tag| dify_plugin::validate::TAGS.contains(&tag)) {
            problems.push(format!("tag {tag} is not an allowed plugin tag"));
        }
    }
    check_i18n("manifest.yaml", &manifest, &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn provider_follows_the_daemon_rules() {
    let provider = load("provider/openai_trigger.yaml");
    let mut problems = Vec::new();
    let identity = &provider["identity"];
    if identity["name"].as_str() != Some(openai_trigger::provider::PROVIDER) {
        problems.push(format!("identity.name {} is not provider::PROVIDER", identity["name"]));
    }
    if !identity["name"].as_str().is_some_and(is_name) || !identity["author"].is_string() {
        problems.push("identity needs an author and a ^[a-zA-Z0-9_-]+$ name".into());
    }
    require_i18n("identity.label", &identity["label"], &mut problems);
    require_i18n("identity.description", &identity["description"], &mut problems);
    for icon in ["icon", "icon_dark"] {
        if let Some(file) = identity[icon].as_str() {
            if !root().join("_assets").join(file).is_file() {
                problems.push(format!("identity.{icon} {file} is not in _assets/"));
            }
        } else if icon == "icon" {
            problems.push("identity.icon is required".into());
        }
    }
    if identity.get("tags").is_some() {
        problems.push("identity.tags: put tags in the manifest (triggers.md §2.2)".into());
    }
    let schema = provider["subscription_schema"].as_array().expect("subscription_schema is a list");
    for (index, config) in schema.iter().enumerate() {
        let at = format!("subscription_schema[{index}]");
        if config["name"].as_str().is_none_or(str::is_empty) || !config["type"].is_string() {
            problems.push(format!("{at} needs a name and a type"));
        }
        require_i18n(&format!("{at}.label"), &config["label"], &mut problems);
    }
    if !schema.iter().any(|config| config["name"] == "webhook_secret" && config["type"] == "secret-input") {
        problems.push("subscription_schema must declare webhook_secret as secret-input".into());
    }
    check_i18n("provider/openai_trigger.yaml", &provider, &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn every_event_declaration_follows_the_daemon_rules() {
    let mut problems = Vec::new();
    for spec in EVENTS {
        let document = load(spec.path);
        let at = spec.path;
        if !document["identity"]["author"].is_string() {
            problems.push(format!("{at}: identity.author is required"));
        }
        require_i18n(&format!("{at}: identity.label"), &document["identity"]["label"], &mut problems);
        require_i18n(&format!("{at}: description"), &document["description"], &mut problems);
        check_i18n(at, &document, &mut problems);
        for (index, parameter) in document["parameters"].as_array().into_iter().flatten().enumerate() {
            let here = format!("{at}: parameters[{index}]");
            for dropped in ["help", "placeholder"] {
                if parameter.get(dropped).is_some() {
                    problems.push(format!("{here} has `{dropped}`, which the daemon drops; use description"));
                }
            }
            if parameter["name"].as_str().is_none_or(str::is_empty) {
                problems.push(format!("{here} needs a name"));
            }
            if !parameter["type"].as_str().is_some_and(|t| PARAMETER_TYPES.contains(&t)) {
                problems.push(format!("{here} type {} is not an EventParameter type", parameter["type"]));
            }
            require_i18n(&format!("{here}.label"), &parameter["label"], &mut problems);
            for (option_index, option) in parameter["options"].as_array().into_iter().flatten().enumerate() {
                if !option["value"].as_str().is_some_and(|value| !value.is_empty() && value.len() <= 127) {
                    problems.push(format!("{here}.options[{option_index}] value must be a non-empty string"));
                }
                require_i18n(&format!("{here}.options[{option_index}].label"), &option["label"], &mut problems);
            }
        }
        let schema = &document["output_schema"];
        let properties = schema["properties"].as_object();
        if schema["type"] != "object" || properties.is_none() {
            problems.push(format!("{at}: output_schema must be an object schema with properties"));
            continue;
        }
        let required: Vec<&str> =
            schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        for variable in COMMON_VARIABLES {
            if !properties.unwrap().contains_key(*variable) || !required.contains(variable) {
                problems.push(format!("{at}: output_schema must declare and require {variable}"));
            }
        }
        for name in &required {
            if !properties.unwrap().contains_key(*name) {
                problems.push(format!("{at}: output_schema requires undeclared {name}"));
            }
        }
        for (name, property) in properties.unwrap() {
            if !property["type"].is_string() && !property["type"].is_array() {
                problems.push(format!("{at}: output_schema.properties.{name} has no type"));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// any_event's `event_types` options are exactly the OpenAI types this release knows, in order.
#[test]
fn any_event_offers_every_known_type() {
    let document = load("events/any/any_event.yaml");
    let parameter = document["parameters"]
        .as_array()
        .and_then(|list| list.iter().find(|p| p["name"] == "event_types"))
        .expect("any_event declares event_types");
    let offered: Vec<&str> =
        parameter["options"].as_array().into_iter().flatten().filter_map(|o| o["value"].as_str()).collect();
    assert_eq!(offered, events::known_openai_types().collect::<Vec<_>>());
}

/// Every parameter an event's YAML declares is one its family's code reads, with the same type,
/// multiplicity and options, and the code reads no parameter the YAML does not declare: renaming
/// `from_contains` in the YAML alone (or in the code alone) fails here.
#[test]
fn declared_parameters_are_the_ones_the_code_reads() {
    let mut problems = Vec::new();
    for spec in EVENTS {
        let document = load(spec.path);
        let declared: Vec<&Value> = document["parameters"].as_array().into_iter().flatten().collect();
        let read = spec.family.parameters();
        let declared_names: Vec<&str> = declared.iter().filter_map(|p| p["name"].as_str()).collect();
        let read_names: Vec<&str> = read.iter().map(|p| p.name).collect();
        if declared_names != read_names {
            problems.push(format!("{}: YAML declares {declared_names:?}, the code reads {read_names:?}", spec.path));
            continue;
        }
        for (yaml, code) in declared.iter().zip(read) {
            let here = format!("{}: parameter {}", spec.path, code.name);
            if yaml["type"] != code.yaml_type() {
                problems.push(format!("{here}: YAML type {} but the code reads a {}", yaml["type"], code.yaml_type()));
            }
            let options: Vec<&str> =
                yaml["options"].as_array().into_iter().flatten().filter_map(|o| o["value"].as_str()).collect();
            let multiple = yaml["multiple"].as_bool().unwrap_or(false);
            let (want_options, want_multiple): (Vec<&str>, bool) = match code.kind {
                ParameterKind::Text => (Vec::new(), false),
                ParameterKind::Select { options, multiple } => (options.to_vec(), multiple),
                ParameterKind::KnownTypes { multiple } => (events::known_openai_types().collect(), multiple),
                ParameterKind::Boolean { default } => {
                    if yaml["default"] != Value::Bool(default) {
                        problems.push(format!(
                            "{here}: YAML default {} but the code defaults to {default}",
                            yaml["default"]
                        ));
                    }
                    (Vec::new(), false)
                }
                ParameterKind::Number { default, min, max } => {
                    for (key, want) in [("default", default), ("min", min), ("max", max)] {
                        if yaml[key].as_i64() != Some(want) {
                            problems.push(format!("{here}: YAML {key} {} but the code uses {want}", yaml[key]));
                        }
                    }
                    (Vec::new(), false)
                }
                ParameterKind::DynamicSelect => (Vec::new(), false),
            };
            if options != want_options {
                problems.push(format!("{here}: YAML options {options:?}, the code expects {want_options:?}"));
            }
            if multiple != want_multiple {
                problems.push(format!("{here}: YAML multiple={multiple}, the code expects {want_multiple}"));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn rfc3339_checker_itself() {
    for good in ["2026-11-26T00:00:00+00:00", "2025-11-27T00:04:40+08:00", "2025-01-01T10:00:00.5Z"] {
        assert!(is_rfc3339_with_zone(good), "{good}");
    }
    for bad in
        ["2026-11-26T00:00:00", "2026-11-26", "2026-11-26 00:00:00Z", "26-11-2026T00:00:00Z", "2026-11-26T0:00:00Z"]
    {
        assert!(!is_rfc3339_with_zone(bad), "{bad}");
    }
}

/// Every variable enrichment adds is declared and required in the event's `output_schema` with the
/// type the code gives it, and described in the four languages (`description` for Dify's editor,
/// `description_i18n` for all four); events that are not enriched declare none of the two common ones.
#[test]
fn enrichment_variables_are_declared_in_four_languages() {
    let mut problems = Vec::new();
    for spec in EVENTS {
        let document = load(spec.path);
        let properties = document["output_schema"]["properties"].as_object().cloned().unwrap_or_default();
        let required: Vec<&str> =
            document["output_schema"]["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let added = openai_trigger::enrich::variables_of(spec.family);
        if added.is_empty() {
            if properties.contains_key("details_error") {
                problems.push(format!("{}: declares details_error but is not enriched", spec.path));
            }
            continue;
        }
        for (name, kind) in added {
            let here = format!("{}: output_schema.properties.{name}", spec.path);
            let Some(property) = properties.get(name) else {
                problems.push(format!("{here} is missing"));
                continue;
            };
            if property["type"] != kind.schema_type() {
                problems.push(format!(
                    "{here} has type {} but the code sets a {}",
                    property["type"],
                    kind.schema_type()
                ));
            }
            if !required.contains(&name) {
                problems.push(format!("{here} is not required (the code always sets it)"));
            }
            let english = property["description"].as_str().unwrap_or_default();
            if english.is_empty() || property["description_i18n"]["en_US"].as_str() != Some(english) {
                problems.push(format!("{here}: description and description_i18n.en_US must be the same text"));
            }
            for language in ["zh_Hans", "ja_JP", "pt_BR"] {
                if property["description_i18n"][language].as_str().is_none_or(str::is_empty) {
                    problems.push(format!("{here}: no {language} description"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The constructor's declaration matches the code: the credentials it reads, the parameters it
/// reads, and `events` as a multiple dynamic select (triggers.md §2.2, §4.8).
#[test]
fn the_subscription_constructor_declares_what_the_code_reads() {
    use openai_trigger::constructor::parameter;
    let provider = load("provider/openai_trigger.yaml");
    let constructor = &provider["subscription_constructor"];
    let credentials: Vec<&str> =
        constructor["credentials_schema"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(credentials, ["api_key", "admin_api_key", "organization", "project", "base_url"]);
    let api_key = &constructor["credentials_schema"][0];
    assert_eq!((api_key["type"].as_str(), api_key["required"].as_bool()), (Some("secret-input"), Some(true)));
    for config in constructor["credentials_schema"].as_array().unwrap() {
        assert!(config["url"].as_str().is_some_and(|url| url.starts_with("https://platform.openai.com/")), "{config}");
    }
    let parameters = constructor["parameters"].as_array().unwrap();
    let names: Vec<&str> = parameters.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, [parameter::EVENTS, parameter::ROTATE_SECRET_DAYS]);
    assert_eq!(parameters[0]["type"], "dynamic-select");
    assert_eq!(parameters[0]["multiple"], true);
    assert_eq!(parameters[1]["type"], "number");
    assert_eq!(parameters[1]["max"].as_i64(), Some(openai_trigger::constructor::MAX_ROTATION_DAYS));
    // Manual subscriptions: the secret, plus the optional key enrichment uses.
    let manual: Vec<(&str, bool)> = provider["subscription_schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap_or(""), c["required"].as_bool().unwrap_or(false)))
        .collect();
    assert_eq!(
        manual,
        [
            ("webhook_secret", true),
            ("api_key", false),
            ("admin_api_key", false),
            ("organization", false),
            ("project", false),
            ("base_url", false)
        ]
    );
}
