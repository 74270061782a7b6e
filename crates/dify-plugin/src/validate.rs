/*!
The daemon's declaration rules, checked on JSON values: the manifest (daemon-protocol.md §8.4), tool
providers and tools (plugin-kinds.md §2.1), endpoint groups and endpoints (§3.1), trigger providers
and events (triggers.md §2), the shared blocks (I18n, `ProviderConfig`, options, `scope`; §1.3).

The daemon struct-validates provider and tool files only at remote-debug registration
(plugin-kinds.md §1.3), so a package with a bad declaration installs and fails later, or loses a
field silently; [`build::embed`](crate::build) runs these checks at build time instead. Each
problem names the file, the field (a dotted path, `parameters[0].type`) and the rule it breaks.
No IO here: whether an asset exists is asked through a closure.
*/

use serde_json::{Map, Value};

/// One broken rule: where and which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, relative to the plugin's root (`provider/google.yaml`).
    pub file: String,
    /// The field, as a dotted path (`identity.name`, `parameters[2].form`).
    pub field: String,
    /// The rule, with the spec section that states it.
    pub rule: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.field, self.rule)
    }
}

/// Tags the manifest and providers may carry (daemon-protocol.md §8.4).
pub const TAGS: [&str; 19] = [
    "search",
    "image",
    "videos",
    "weather",
    "finance",
    "design",
    "travel",
    "social",
    "news",
    "medical",
    "productivity",
    "education",
    "business",
    "entertainment",
    "utilities",
    "agent",
    "rag",
    "other",
    "trigger",
];

/// Tool parameter types (`isToolParameterType`, plugin-kinds.md §2.1).
pub const TOOL_PARAMETER_TYPES: [&str; 16] = [
    "string",
    "number",
    "boolean",
    "select",
    "secret-input",
    "file",
    "files",
    "app-selector",
    "model-selector",
    "any",
    "dynamic-select",
    "array",
    "object",
    "checkbox",
    "date",
    "date-range",
];

/// `ProviderConfig.type` values (triggers.md §2.3, plugin-kinds.md §1.3).
pub const PROVIDER_CONFIG_TYPES: [&str; 7] =
    ["secret-input", "text-input", "select", "boolean", "model-selector", "app-selector", "array[tools]"];

/// Endpoint methods the daemon's HTTP router can reach (plugin-kinds.md §3.1: HEAD and OPTIONS
/// validate but are never routed to `/e/{hook_id}/*path`).
pub const ENDPOINT_METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];

/// Names a tool's `output_schema` may not use: the tool node's own outputs (`text`, `files`,
/// `json`), which variable messages may not use either (plugin-kinds.md §2.3).
pub const RESERVED_VARIABLE_NAMES: [&str; 3] = ["json", "text", "files"];

/// Collects problems for one file.
pub struct Checker<'a> {
    file: &'a str,
    problems: &'a mut Vec<Problem>,
    asset_exists: &'a dyn Fn(&str) -> bool,
}

impl<'a> Checker<'a> {
    /// A checker for `file` that adds to `problems`; `asset_exists(name)` says whether
    /// `_assets/<name>` exists.
    pub fn new(file: &'a str, problems: &'a mut Vec<Problem>, asset_exists: &'a dyn Fn(&str) -> bool) -> Self {
        Checker { file, problems, asset_exists }
    }

    fn fail(&mut self, field: &str, rule: impl Into<String>) {
        self.problems.push(Problem { file: self.file.to_owned(), field: field.to_owned(), rule: rule.into() });
    }

    fn object<'v>(&mut self, value: &'v Value, field: &str) -> Option<&'v Map<String, Value>> {
        match value {
            Value::Object(map) => Some(map),
            Value::Null => {
                self.fail(field, "required");
                None
            }
            _ => {
                self.fail(field, "must be a mapping");
                None
            }
        }
    }

    fn string<'v>(&mut self, value: &'v Value, field: &str, required: bool) -> Option<&'v str> {
        match value {
            Value::String(text) if required && text.is_empty() => {
                self.fail(field, "must not be empty");
                None
            }
            Value::String(text) => Some(text),
            Value::Null if !required => None,
            Value::Null => {
                self.fail(field, "required");
                None
            }
            _ => {
                self.fail(field, "must be a string");
                None
            }
        }
    }

    fn bool(&mut self, value: &Value, field: &str) {
        if !matches!(value, Value::Null | Value::Bool(_)) {
            self.fail(field, "must be true or false");
        }
    }

    /// An `I18nObject` (plugin-kinds.md §1.3): `en_US` 1–1023 characters, the others < 1024.
    pub fn i18n(&mut self, value: &Value, field: &str, required: bool) {
        if value.is_null() && !required {
            return;
        }
        let Some(map) = self.object(value, field) else { return };
        match map.get("en_US") {
            Some(Value::String(text)) if !text.is_empty() && text.chars().count() < 1024 => {}
            Some(Value::String(_)) => {
                self.fail(&format!("{field}.en_US"), "must be 1–1023 characters (I18nObject, §1.3)")
            }
            _ => self.fail(&format!("{field}.en_US"), "required: every I18n text needs en_US (§1.3)"),
        }
        for (locale, text) in map {
            match text {
                Value::String(text) if text.chars().count() < 1024 => {}
                Value::Null => {}
                _ => self.fail(&format!("{field}.{locale}"), "must be a string under 1024 characters"),
            }
        }
    }

    fn name(&mut self, value: &Value, field: &str) -> Option<String> {
        let name = self.string(value, field, true)?;
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            self.fail(field, format!("{name:?} must match ^[a-zA-Z0-9_-]+$ (plugin-kinds.md §2.1)"));
            return None;
        }
        Some(name.to_owned())
    }

    fn asset(&mut self, value: &Value, field: &str, required: bool) {
        let Some(name) = self.string(value, field, required) else { return };
        if name.chars().count() > 128 {
            self.fail(field, "at most 128 characters (§8.4)");
        } else if !(self.asset_exists)(name) {
            self.fail(field, format!("{name:?} is not a file under _assets/ (the daemon refuses the package)"));
        }
    }

    fn tags(&mut self, value: &Value, field: &str) {
        match value {
            Value::Null => {}
            Value::Array(tags) => {
                for (i, tag) in tags.iter().enumerate() {
                    if !tag.as_str().is_some_and(|t| TAGS.contains(&t)) {
                        self.fail(&format!("{field}[{i}]"), format!("{tag} is not one of {} (§8.4)", TAGS.join(" ")));
                    }
                }
            }
            _ => self.fail(field, "must be a list"),
        }
    }

    /// `manifest.yaml` (daemon-protocol.md §8.4), including the provider-kind rules.
    pub fn manifest(&mut self, manifest: &Value) {
        let Some(map) = self.object(manifest, "(root)") else { return };
        let get = |key: &str| map.get(key).unwrap_or(&Value::Null);
        if let Some(version) = self.string(get("version"), "version", true) {
            if !is_version(version, true) {
                self.fail("version", format!("{version:?} must be X.Y.Z (digits, optional -suffix; §8.4)"));
            }
        }
        if get("type").as_str() != Some("plugin") {
            self.fail("type", "must be \"plugin\" (§8.4)");
        }
        for (key, max) in [("author", 64), ("name", 128)] {
            if let Some(value) = self.string(get(key), key, true) {
                let ok = value.len() <= max
                    && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
                if !ok {
                    self.fail(key, format!("{value:?} must match ^[a-z0-9_-]{{1,{max}}}$ (lower case; §8.4)"));
                }
            }
        }
        self.i18n(get("label"), "label", true);
        self.i18n(get("description"), "description", true);
        self.asset(get("icon"), "icon", true);
        self.asset(get("icon_dark"), "icon_dark", false);
        match get("resource").get("memory") {
            Some(Value::Number(n)) if n.as_u64().is_some_and(|m| m > 0) => {}
            _ => self.fail("resource.memory", "required: a non-zero number of bytes (§8.4)"),
        }
        let storage = get("resource").pointer("/permission/storage").unwrap_or(&Value::Null);
        if storage.get("enabled").and_then(Value::as_bool) == Some(true) {
            match storage.get("size").and_then(Value::as_u64) {
                Some(size) if (1024..=1_073_741_824).contains(&size) => {}
                _ => self.fail(
                    "resource.permission.storage.size",
                    "must be 1024…1073741824 bytes when storage is enabled (§8.4)",
                ),
            }
        }
        if let Some(created) = self.string(get("created_at"), "created_at", true) {
            if !is_rfc3339(created) {
                self.fail(
                    "created_at",
                    format!("{created:?} must be RFC 3339 with a zone, e.g. 2025-01-01T00:00:00Z (§6.3)"),
                );
            }
        }
        self.tags(get("tags"), "tags");
        let meta = get("meta");
        if let Some(version) = self.string(meta.get("version").unwrap_or(&Value::Null), "meta.version", true) {
            if !is_version(version, false) {
                self.fail("meta.version", format!("{version:?} must be X.Y.Z (§8.4)"));
            }
        }
        match meta.get("arch").and_then(Value::as_array) {
            Some(arch) if !arch.is_empty() => {
                for (i, a) in arch.iter().enumerate() {
                    if !matches!(a.as_str(), Some("amd64" | "arm64")) {
                        self.fail(&format!("meta.arch[{i}]"), "must be amd64 or arm64 (§8.4)");
                    }
                }
            }
            _ => self.fail("meta.arch", "required: a list of amd64/arm64 (§8.4)"),
        }
        let runner = meta.get("runner").unwrap_or(&Value::Null);
        if runner.get("language").and_then(Value::as_str) != Some("python") {
            self.fail("meta.runner.language", "must be \"python\": the only runner the daemon starts (§8.4, §8.6)");
        }
        for (key, max) in [("version", 128), ("entrypoint", 256)] {
            let field = format!("meta.runner.{key}");
            if let Some(value) = self.string(runner.get(key).unwrap_or(&Value::Null), &field, true) {
                if value.chars().count() > max {
                    self.fail(&field, format!("at most {max} characters (§8.4)"));
                }
            }
        }
        let plugins = get("plugins");
        let mut present = Vec::new();
        for key in ["tools", "models", "endpoints", "agent_strategies", "datasources", "triggers"] {
            match plugins.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::Array(paths)) => {
                    if !paths.is_empty() {
                        present.push(key);
                    }
                    if paths.len() > 1 {
                        self.fail(
                            &format!("plugins.{key}"),
                            "one provider per kind: the daemon keeps only the last (§8.4)",
                        );
                    }
                    for (i, path) in paths.iter().enumerate() {
                        if !path.as_str().is_some_and(|p| !p.is_empty() && p.chars().count() <= 128) {
                            self.fail(
                                &format!("plugins.{key}[{i}]"),
                                "must be a path of at most 128 characters (§8.4)",
                            );
                        }
                    }
                }
                Some(_) => self.fail(&format!("plugins.{key}"), "must be a list of paths"),
            }
        }
        match present.as_slice() {
            [] => self.fail("plugins", "declares no provider: at least one kind is required (§8.4)"),
            [_] | ["tools", "endpoints"] => {}
            kinds => self.fail(
                "plugins",
                format!(
                    "{} cannot be combined: tools + endpoints is the only allowed pair (plugin-kinds.md §1.4)",
                    kinds.join(" + ")
                ),
            ),
        }
    }

    /// A `ProviderConfig` list, or (where `map_allowed`) a map `name → ProviderConfig`
    /// (triggers.md §2.3).
    pub fn provider_configs(&mut self, value: &Value, field: &str, map_allowed: bool) {
        match value {
            Value::Null => {}
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.provider_config(item, &format!("{field}[{i}]"), None);
                }
            }
            Value::Object(map) if map_allowed => {
                for (name, item) in map {
                    self.provider_config(item, &format!("{field}.{name}"), Some(name));
                }
            }
            _ => self.fail(field, if map_allowed { "must be a list or a mapping" } else { "must be a list" }),
        }
    }

    fn provider_config(&mut self, item: &Value, field: &str, key: Option<&str>) {
        let Some(map) = self.object(item, field) else { return };
        let get = |k: &str| map.get(k).unwrap_or(&Value::Null);
        if key.is_none() {
            if let Some(name) = self.string(get("name"), &format!("{field}.name"), true) {
                if name.chars().count() >= 1024 {
                    self.fail(&format!("{field}.name"), "must be under 1024 characters");
                }
            }
        }
        let kind = self.string(get("type"), &format!("{field}.type"), true).map(str::to_owned);
        if let Some(kind) = &kind {
            if !PROVIDER_CONFIG_TYPES.contains(&kind.as_str()) {
                self.fail(
                    &format!("{field}.type"),
                    format!("{kind:?} is not one of {}", PROVIDER_CONFIG_TYPES.join(" ")),
                );
            }
        }
        self.i18n(get("label"), &format!("{field}.label"), true);
        for key in ["help", "placeholder"] {
            self.i18n(get(key), &format!("{field}.{key}"), false);
        }
        self.bool(get("required"), &format!("{field}.required"));
        self.scope(get("scope"), &format!("{field}.scope"), kind.as_deref());
        self.options(get("options"), &format!("{field}.options"));
    }

    fn options(&mut self, value: &Value, field: &str) {
        match value {
            Value::Null => {}
            Value::Array(options) => {
                if options.len() >= 128 {
                    self.fail(field, "fewer than 128 options");
                }
                for (i, option) in options.iter().enumerate() {
                    let field = format!("{field}[{i}]");
                    let Some(map) = self.object(option, &field) else { continue };
                    match map.get("value") {
                        Some(Value::String(v)) if !v.is_empty() => {}
                        _ => self.fail(&format!("{field}.value"), "required: a non-empty string (§1.3)"),
                    }
                    self.i18n(map.get("label").unwrap_or(&Value::Null), &format!("{field}.label"), true);
                }
            }
            _ => self.fail(field, "must be a list"),
        }
    }

    /// `scope` is allowed only on app-selector, model-selector and any (plugin-kinds.md §1.3).
    fn scope(&mut self, value: &Value, field: &str, kind: Option<&str>) {
        let Some(scope) = value.as_str().filter(|s| !s.is_empty()) else { return };
        let allowed: &[&str] = match kind {
            Some("app-selector") => &["all", "chat", "workflow", "completion"],
            Some("model-selector") => &[
                "llm",
                "text-embedding",
                "rerank",
                "tts",
                "speech2text",
                "moderation",
                "vision",
                "document",
                "tool-call",
            ],
            Some("any") => {
                &["string", "number", "object", "array[number]", "array[string]", "array[object]", "array[file]"]
            }
            _ => {
                self.fail(field, "scope is allowed only on app-selector, model-selector and any (§1.3)");
                return;
            }
        };
        if !scope.split('&').any(|segment| allowed.contains(&segment)) {
            self.fail(field, format!("{scope:?} is not one of {}", allowed.join(" ")));
        }
    }

    /// A provider's `identity` (tool, agent strategy and trigger providers share it; §2.1).
    fn provider_identity(&mut self, identity: &Value) {
        if self.object(identity, "identity").is_none() {
            return;
        }
        let get = |k: &str| identity.get(k).unwrap_or(&Value::Null);
        self.string(get("author"), "identity.author", true);
        self.name(get("name"), "identity.name");
        self.i18n(get("label"), "identity.label", true);
        self.i18n(get("description"), "identity.description", false);
        self.asset(get("icon"), "identity.icon", true);
        self.asset(get("icon_dark"), "identity.icon_dark", false);
        self.tags(get("tags"), "identity.tags");
    }

    /// A provider's `oauth_schema` (plugin-kinds.md §8): its client and credentials forms.
    fn oauth_schema(&mut self, provider: &Value) {
        if let Some(oauth) = provider.get("oauth_schema").filter(|v| !v.is_null()) {
            let client = oauth.get("client_schema").unwrap_or(&Value::Null);
            self.provider_configs(client, "oauth_schema.client_schema", false);
            let credentials = oauth.get("credentials_schema").unwrap_or(&Value::Null);
            self.provider_configs(credentials, "oauth_schema.credentials_schema", false);
        }
    }

    /// A provider's list of children under `key` (their files, or inline): required, not empty.
    fn children(&mut self, provider: &Value, key: &str, what: &str) {
        if provider.get(key).and_then(Value::as_array).is_none_or(|children| children.is_empty()) {
            self.fail(key, format!("required: a non-empty list of {what}"));
        }
    }

    /// A tool's, event's, strategy's or datasource's `identity`: author, name, label.
    fn child_identity(&mut self, identity: &Value) {
        if self.object(identity, "identity").is_some() {
            self.string(identity.get("author").unwrap_or(&Value::Null), "identity.author", true);
            self.name(identity.get("name").unwrap_or(&Value::Null), "identity.name");
            self.i18n(identity.get("label").unwrap_or(&Value::Null), "identity.label", true);
        }
    }

    /// A tool provider YAML, before its `tools` are inlined (plugin-kinds.md §2.1).
    pub fn tool_provider(&mut self, provider: &Value) {
        if self.object(provider, "(root)").is_none() {
            return;
        }
        self.provider_identity(provider.get("identity").unwrap_or(&Value::Null));
        self.provider_configs(provider.get("credentials_schema").unwrap_or(&Value::Null), "credentials_schema", true);
        self.provider_configs(
            provider.get("credentials_for_provider").unwrap_or(&Value::Null),
            "credentials_for_provider",
            true,
        );
        self.oauth_schema(provider);
        self.children(provider, "tools", "tool files (§2.1)");
    }

    /// A tool YAML (plugin-kinds.md §2.1).
    pub fn tool(&mut self, tool: &Value) {
        if self.object(tool, "(root)").is_none() {
            return;
        }
        let identity = tool.get("identity").unwrap_or(&Value::Null);
        self.child_identity(identity);
        let description = tool.get("description").unwrap_or(&Value::Null);
        if self.object(description, "description").is_some() {
            self.i18n(description.get("human").unwrap_or(&Value::Null), "description.human", true);
            self.string(description.get("llm").unwrap_or(&Value::Null), "description.llm", true);
        }
        self.bool(tool.get("has_runtime_parameters").unwrap_or(&Value::Null), "has_runtime_parameters");
        match tool.get("parameters") {
            None | Some(Value::Null) => {}
            Some(Value::Array(parameters)) => {
                let mut seen = Vec::new();
                for (i, parameter) in parameters.iter().enumerate() {
                    if let Some(name) = self.tool_parameter(parameter, &format!("parameters[{i}]")) {
                        if seen.contains(&name) {
                            self.fail(&format!("parameters[{i}].name"), format!("{name:?} is declared twice"));
                        }
                        seen.push(name);
                    }
                }
            }
            Some(_) => self.fail("parameters", "must be a list"),
        }
        if let Some(properties) = tool.pointer("/output_schema/properties").and_then(Value::as_object) {
            for name in properties.keys() {
                if RESERVED_VARIABLE_NAMES.contains(&name.as_str()) {
                    self.fail(
                        &format!("output_schema.properties.{name}"),
                        "reserved: text, files and json are the tool node's own outputs (plugin-kinds.md §2.3)",
                    );
                }
            }
        }
    }

    fn tool_parameter(&mut self, parameter: &Value, field: &str) -> Option<String> {
        let map = self.object(parameter, field)?;
        let get = |k: &str| map.get(k).unwrap_or(&Value::Null);
        let name = self.string(get("name"), &format!("{field}.name"), true).map(str::to_owned);
        if name.as_ref().is_some_and(|n| n.chars().count() >= 1024) {
            self.fail(&format!("{field}.name"), "must be 1–1023 characters");
        }
        self.i18n(get("label"), &format!("{field}.label"), true);
        self.i18n(get("human_description"), &format!("{field}.human_description"), true);
        let kind = self.string(get("type"), &format!("{field}.type"), true).map(str::to_owned);
        if let Some(kind) = &kind {
            if !TOOL_PARAMETER_TYPES.contains(&kind.as_str()) {
                self.fail(&format!("{field}.type"), format!("{kind:?} is not a tool parameter type (§2.1)"));
            }
        }
        match get("form").as_str() {
            Some("schema" | "form" | "llm") => {}
            _ => self.fail(&format!("{field}.form"), "required: one of schema, form, llm (§2.1)"),
        }
        self.bool(get("required"), &format!("{field}.required"));
        self.scope(get("scope"), &format!("{field}.scope"), kind.as_deref());
        self.options(get("options"), &format!("{field}.options"));
        if get("multiple").as_bool() == Some(true) {
            if !matches!(kind.as_deref(), Some("select" | "dynamic-select")) {
                self.fail(
                    &format!("{field}.multiple"),
                    "only select and dynamic-select parameters may be multiple (§2.1)",
                );
            } else if !matches!(get("default"), Value::Null | Value::Array(_)) {
                self.fail(&format!("{field}.default"), "a multiple parameter's default must be a list (§2.1)");
            }
        }
        if kind.as_deref() == Some("select") && get("options").as_array().is_none_or(|o| o.is_empty()) {
            self.fail(&format!("{field}.options"), "a select parameter needs options");
        }
        name
    }

    /// An endpoint group YAML, before its `endpoints` are inlined (plugin-kinds.md §3.1).
    pub fn endpoint_group(&mut self, group: &Value) {
        if self.object(group, "(root)").is_none() {
            return;
        }
        self.provider_configs(group.get("settings").unwrap_or(&Value::Null), "settings", false);
        self.children(group, "endpoints", "endpoint files (§3.1)");
    }

    /// An endpoint YAML, or an inline `{path, method, hidden}` (plugin-kinds.md §3.1).
    pub fn endpoint(&mut self, endpoint: &Value, field: &str) {
        if self.object(endpoint, field).is_none() {
            return;
        }
        let at = |key: &str| if field == "(root)" { key.to_owned() } else { format!("{field}.{key}") };
        if let Some(path) = self.string(endpoint.get("path").unwrap_or(&Value::Null), &at("path"), true) {
            if let Err(why) = crate::endpoint::PathPattern::parse(path) {
                self.fail(&at("path"), why.to_string());
            }
        }
        if let Some(method) = self.string(endpoint.get("method").unwrap_or(&Value::Null), &at("method"), true) {
            if !ENDPOINT_METHODS.contains(&method) {
                let why = if matches!(method, "HEAD" | "OPTIONS") {
                    format!("{method} validates, but the daemon routes only GET POST PUT DELETE to endpoints (§3.1)")
                } else {
                    format!("{method:?} must be one of GET POST PUT DELETE, upper case (§3.1)")
                };
                self.fail(&at("method"), why);
            }
        }
        self.bool(endpoint.get("hidden").unwrap_or(&Value::Null), &at("hidden"));
    }

    /// A trigger provider YAML, before its `events` are inlined (triggers.md §2.1–2.3).
    pub fn trigger_provider(&mut self, provider: &Value) {
        if self.object(provider, "(root)").is_none() {
            return;
        }
        self.provider_identity(provider.get("identity").unwrap_or(&Value::Null));
        match provider.get("subscription_schema") {
            None => self.fail("subscription_schema", "required (may be empty; triggers.md §2.2)"),
            Some(schema) => self.provider_configs(schema, "subscription_schema", true),
        }
        if let Some(constructor) = provider.get("subscription_constructor").filter(|v| !v.is_null()) {
            let credentials = constructor.get("credentials_schema").unwrap_or(&Value::Null);
            self.provider_configs(credentials, "subscription_constructor.credentials_schema", true);
        }
        self.children(provider, "events", "event files (triggers.md §2.2)");
    }

    /// A trigger event YAML (triggers.md §2.4).
    pub fn event(&mut self, event: &Value) {
        if self.object(event, "(root)").is_none() {
            return;
        }
        let identity = event.get("identity").unwrap_or(&Value::Null);
        self.child_identity(identity);
        self.i18n(event.get("description").unwrap_or(&Value::Null), "description", true);
    }
}

/// Model types (`isModelType`, plugin-kinds.md §4.1).
pub const MODEL_TYPES: [&str; 9] = [
    "llm",
    "text-embedding",
    "rerank",
    "speech2text",
    "moderation",
    "tts",
    "text2img",
    "multimodal-embedding",
    "multimodal-rerank",
];

/// Credential form types of model providers (`isModelProviderFormType`, plugin-kinds.md §4.1).
pub const MODEL_FORM_TYPES: [&str; 5] = ["text-input", "secret-input", "select", "radio", "switch"];

/// `use_template` names of model parameter rules (plugin-kinds.md §4.2).
pub const PARAMETER_TEMPLATES: [&str; 8] = [
    "temperature",
    "top_p",
    "top_k",
    "presence_penalty",
    "frequency_penalty",
    "max_tokens",
    "response_format",
    "json_schema",
];

/// Agent strategy parameter types the daemon accepts (plugin-kinds.md §5.1; the Python SDK's
/// `object` and `array` fail daemon validation).
pub const AGENT_PARAMETER_TYPES: [&str; 11] = [
    "string",
    "number",
    "boolean",
    "select",
    "secret-input",
    "file",
    "files",
    "app-selector",
    "model-selector",
    "array[tools]",
    "any",
];

/// Datasource parameter types (plugin-kinds.md §6.1).
pub const DATASOURCE_PARAMETER_TYPES: [&str; 5] = ["string", "number", "boolean", "select", "secret-input"];

/// Datasource provider types (plugin-kinds.md §6.1).
pub const DATASOURCE_PROVIDER_TYPES: [&str; 3] = ["website_crawl", "online_document", "online_drive"];

impl Checker<'_> {
    fn list<'v>(&mut self, value: &'v Value, field: &str, max: usize) -> &'v [Value] {
        match value {
            Value::Null => &[],
            Value::Array(items) => {
                if items.len() > max {
                    self.fail(field, format!("at most {max} items"));
                }
                items
            }
            _ => {
                self.fail(field, "must be a list");
                &[]
            }
        }
    }

    fn short(&mut self, value: &Value, field: &str, required: bool) -> Option<String> {
        let text = self.string(value, field, required)?;
        if text.chars().count() >= 256 {
            self.fail(field, "must be under 256 characters");
        }
        Some(text.to_owned())
    }

    fn i18n_asset(&mut self, value: &Value, field: &str) {
        let Some(map) = value.as_object() else {
            if !value.is_null() {
                self.fail(field, "must be an I18n mapping of file names (§4.1)");
            }
            return;
        };
        for (locale, name) in map {
            self.asset(name, &format!("{field}.{locale}"), false);
        }
    }

    /// A model provider YAML (plugin-kinds.md §4.1), before its models are inlined.
    pub fn model_provider(&mut self, provider: &Value) {
        let Some(map) = self.object(provider, "(root)") else { return };
        let get = |k: &str| map.get(k).unwrap_or(&Value::Null);
        self.short(get("provider"), "provider", true);
        self.i18n(get("label"), "label", true);
        self.i18n(get("description"), "description", false);
        for key in ["icon_small", "icon_large", "icon_small_dark", "icon_large_dark"] {
            self.i18n_asset(get(key), key);
        }
        if let Some(help) = map.get("help").filter(|h| !h.is_null()) {
            self.i18n(help.get("title").unwrap_or(&Value::Null), "help.title", true);
            self.i18n(help.get("url").unwrap_or(&Value::Null), "help.url", true);
        }
        let types = self.list(get("supported_model_types"), "supported_model_types", 16);
        if types.is_empty() {
            self.fail("supported_model_types", "required: a non-empty list (§4.1)");
        }
        for (i, kind) in types.iter().enumerate() {
            if !kind.as_str().is_some_and(|k| MODEL_TYPES.contains(&k)) {
                self.fail(
                    &format!("supported_model_types[{i}]"),
                    format!("{kind} is not one of {}", MODEL_TYPES.join(" ")),
                );
            }
        }
        let methods = self.list(get("configurate_methods"), "configurate_methods", 16);
        if methods.is_empty() {
            self.fail("configurate_methods", "required: predefined-model and/or customizable-model (§4.1)");
        }
        let mut customizable = false;
        for (i, method) in methods.iter().enumerate() {
            match method.as_str() {
                Some("predefined-model") => {}
                Some("customizable-model") => customizable = true,
                _ => self.fail(&format!("configurate_methods[{i}]"), "must be predefined-model or customizable-model"),
            }
        }
        let forms = get("provider_credential_schema").get("credential_form_schemas").unwrap_or(&Value::Null).clone();
        self.credential_forms(&forms, "provider_credential_schema.credential_form_schemas");
        let model_schema = get("model_credential_schema");
        if customizable && model_schema.is_null() {
            self.fail(
                "model_credential_schema",
                "required with customizable-model: the form Dify asks per model (§4.1)",
            );
        }
        if !model_schema.is_null() {
            self.i18n(
                model_schema.pointer("/model/label").unwrap_or(&Value::Null),
                "model_credential_schema.model.label",
                true,
            );
            self.i18n(
                model_schema.pointer("/model/placeholder").unwrap_or(&Value::Null),
                "model_credential_schema.model.placeholder",
                false,
            );
            let forms = model_schema.get("credential_form_schemas").unwrap_or(&Value::Null).clone();
            self.credential_forms(&forms, "model_credential_schema.credential_form_schemas");
        }
    }

    fn credential_forms(&mut self, value: &Value, field: &str) {
        let forms = self.list(value, field, 32);
        let mut seen = Vec::new();
        for (i, form) in forms.iter().enumerate() {
            let field = format!("{field}[{i}]");
            let Some(map) = self.object(form, &field) else { continue };
            let get = |k: &str| map.get(k).unwrap_or(&Value::Null);
            if let Some(variable) = self.short(get("variable"), &format!("{field}.variable"), true) {
                if seen.contains(&variable) {
                    self.fail(&format!("{field}.variable"), format!("{variable:?} is declared twice"));
                }
                seen.push(variable);
            }
            if get("name").is_string() && get("variable").is_null() {
                self.fail(
                    &format!("{field}.name"),
                    "model credential forms name their key `variable`, not `name` (§4.1)",
                );
            }
            self.i18n(get("label"), &format!("{field}.label"), true);
            match get("type").as_str() {
                Some(kind) if MODEL_FORM_TYPES.contains(&kind) => {}
                _ => self
                    .fail(&format!("{field}.type"), format!("required: one of {} (§4.1)", MODEL_FORM_TYPES.join(" "))),
            }
            self.bool(get("required"), &format!("{field}.required"));
            if !matches!(get("default"), Value::Null | Value::String(_)) {
                self.fail(&format!("{field}.default"), "must be a string: write '8192', not 8192 (§4.1)");
            }
            for key in ["help", "placeholder"] {
                self.i18n(get(key), &format!("{field}.{key}"), false);
            }
            self.options(get("options"), &format!("{field}.options"));
            for (j, show) in self.list(get("show_on"), &format!("{field}.show_on"), 16).to_vec().iter().enumerate() {
                let at = format!("{field}.show_on[{j}]");
                self.string(show.get("variable").unwrap_or(&Value::Null), &format!("{at}.variable"), true);
                self.string(show.get("value").unwrap_or(&Value::Null), &format!("{at}.value"), true);
            }
        }
    }

    /// A model declaration: a predefined model's YAML or a customizable model's schema
    /// (plugin-kinds.md §4.2).
    pub fn model(&mut self, model: &Value) {
        let Some(map) = self.object(model, "(root)") else { return };
        let get = |k: &str| map.get(k).unwrap_or(&Value::Null);
        self.short(get("model"), "model", true);
        self.i18n(get("label"), "label", true);
        match get("model_type").as_str() {
            Some(kind) if MODEL_TYPES.contains(&kind) => {}
            _ => self.fail("model_type", format!("required: one of {} (§4.2)", MODEL_TYPES.join(" "))),
        }
        for (i, feature) in self.list(get("features"), "features", 256).to_vec().iter().enumerate() {
            if !feature.as_str().is_some_and(|f| !f.is_empty() && f.chars().count() < 256) {
                self.fail(&format!("features[{i}]"), "must be a string under 256 characters");
            }
        }
        if !matches!(get("fetch_from").as_str(), None | Some("predefined-model" | "customizable-model")) {
            self.fail("fetch_from", "must be predefined-model or customizable-model");
        }
        if !matches!(get("model_properties"), Value::Null | Value::Object(_)) {
            self.fail("model_properties", "must be a mapping");
        }
        self.bool(get("deprecated"), "deprecated");
        for (i, rule) in self.list(get("parameter_rules"), "parameter_rules", 128).to_vec().iter().enumerate() {
            let field = format!("parameter_rules[{i}]");
            let Some(rule) = self.object(rule, &field) else { continue };
            let get = |k: &str| rule.get(k).unwrap_or(&Value::Null);
            self.short(get("name"), &format!("{field}.name"), true);
            match get("use_template").as_str() {
                Some(template) if !PARAMETER_TEMPLATES.contains(&template) => self.fail(
                    &format!("{field}.use_template"),
                    format!(
                        "{template:?} is not one of {} (the daemon: use_template not found)",
                        PARAMETER_TEMPLATES.join(" ")
                    ),
                ),
                Some(_) => {}
                None => {
                    self.i18n(get("label"), &format!("{field}.label"), true);
                    match get("type").as_str() {
                        Some("float" | "int" | "string" | "boolean" | "text") => {}
                        _ => self.fail(
                            &format!("{field}.type"),
                            "required without use_template: one of float int string boolean text (§4.2)",
                        ),
                    }
                }
            }
            for (j, option) in
                self.list(get("options"), &format!("{field}.options"), usize::MAX).to_vec().iter().enumerate()
            {
                if option.as_str().is_none_or(|o| o.chars().count() >= 256) {
                    self.fail(&format!("{field}.options[{j}]"), "must be a string under 256 characters");
                }
            }
        }
        if let Some(pricing) = map.get("pricing").filter(|p| !p.is_null()) {
            for key in ["input", "unit"] {
                if !pricing.get(key).is_some_and(is_decimal) {
                    self.fail(&format!("pricing.{key}"), "required: a decimal, e.g. '0.001' (§4.2)");
                }
            }
            if pricing.get("output").is_some_and(|v| !v.is_null() && !is_decimal(v)) {
                self.fail("pricing.output", "must be a decimal, e.g. '0.002' (§4.2)");
            }
            self.string(pricing.get("currency").unwrap_or(&Value::Null), "pricing.currency", true);
        }
    }

    /// An agent strategy provider YAML (plugin-kinds.md §5.1), before its strategies are inlined.
    pub fn agent_provider(&mut self, provider: &Value) {
        if self.object(provider, "(root)").is_none() {
            return;
        }
        self.provider_identity(provider.get("identity").unwrap_or(&Value::Null));
        self.children(provider, "strategies", "strategy files (§5.1)");
    }

    /// An agent strategy YAML (plugin-kinds.md §5.1).
    pub fn agent_strategy(&mut self, strategy: &Value) {
        if self.object(strategy, "(root)").is_none() {
            return;
        }
        let identity = strategy.get("identity").unwrap_or(&Value::Null);
        self.child_identity(identity);
        self.i18n(strategy.get("description").unwrap_or(&Value::Null), "description", true);
        let parameters =
            self.list(strategy.get("parameters").unwrap_or(&Value::Null), "parameters", usize::MAX).to_vec();
        self.parameters(&parameters, &AGENT_PARAMETER_TYPES, false);
    }

    /// Strategy or datasource parameters: name, label, type among `types`, scope, options; a
    /// datasource parameter also needs an I18n `description`.
    fn parameters(&mut self, parameters: &[Value], types: &[&str], description_required: bool) {
        let mut seen = Vec::new();
        for (i, parameter) in parameters.iter().enumerate() {
            let field = format!("parameters[{i}]");
            let Some(map) = self.object(parameter, &field) else { continue };
            let get = |k: &str| map.get(k).unwrap_or(&Value::Null);
            if let Some(name) = self.string(get("name"), &format!("{field}.name"), true) {
                if seen.contains(&name.to_owned()) {
                    self.fail(&format!("{field}.name"), format!("{name:?} is declared twice"));
                }
                seen.push(name.to_owned());
            }
            self.i18n(get("label"), &format!("{field}.label"), true);
            self.i18n(get("help"), &format!("{field}.help"), false);
            if description_required {
                self.i18n(get("description"), &format!("{field}.description"), true);
            }
            let kind = self.string(get("type"), &format!("{field}.type"), true).map(str::to_owned);
            if let Some(kind) = &kind {
                if !types.contains(&kind.as_str()) {
                    self.fail(&format!("{field}.type"), format!("{kind:?} is not one of {}", types.join(" ")));
                }
            }
            self.bool(get("required"), &format!("{field}.required"));
            self.scope(get("scope"), &format!("{field}.scope"), kind.as_deref());
            self.options(get("options"), &format!("{field}.options"));
            if kind.as_deref() == Some("select") && get("options").as_array().is_none_or(|o| o.is_empty()) {
                self.fail(&format!("{field}.options"), "a select parameter needs options");
            }
        }
    }

    /// A datasource provider YAML (plugin-kinds.md §6.1), before its datasources are inlined.
    pub fn datasource_provider(&mut self, provider: &Value) {
        if self.object(provider, "(root)").is_none() {
            return;
        }
        let identity = provider.get("identity").unwrap_or(&Value::Null);
        if self.object(identity, "identity").is_some() {
            let get = |k: &str| identity.get(k).unwrap_or(&Value::Null);
            self.string(get("author"), "identity.author", true);
            self.string(get("name"), "identity.name", true);
            self.i18n(get("label"), "identity.label", true);
            self.i18n(get("description"), "identity.description", true);
            self.asset(get("icon"), "identity.icon", true);
            self.tags(get("tags"), "identity.tags");
        }
        match provider.get("provider_type").and_then(Value::as_str) {
            Some(kind) if DATASOURCE_PROVIDER_TYPES.contains(&kind) => {}
            _ => self.fail("provider_type", format!("required: one of {} (§6.1)", DATASOURCE_PROVIDER_TYPES.join(" "))),
        }
        self.provider_configs(provider.get("credentials_schema").unwrap_or(&Value::Null), "credentials_schema", true);
        self.oauth_schema(provider);
        self.children(provider, "datasources", "datasource files (§6.1)");
    }

    /// A datasource YAML (plugin-kinds.md §6.1).
    pub fn datasource(&mut self, datasource: &Value) {
        if self.object(datasource, "(root)").is_none() {
            return;
        }
        let identity = datasource.get("identity").unwrap_or(&Value::Null);
        self.child_identity(identity);
        self.i18n(datasource.get("description").unwrap_or(&Value::Null), "description", true);
        match datasource.get("parameters") {
            Some(Value::Array(parameters)) => {
                let parameters = parameters.clone();
                self.parameters(&parameters, &DATASOURCE_PARAMETER_TYPES, true);
            }
            _ => self.fail("parameters", "required: a list (write `parameters: []` for none; §6.1)"),
        }
    }
}

fn is_decimal(value: &Value) -> bool {
    match value {
        Value::Number(_) => true,
        Value::String(text) => text.trim().parse::<f64>().is_ok_and(f64::is_finite),
        _ => false,
    }
}

/// `X.Y.Z` with 1–4 digits each, and (when `suffix`) an optional `-word` of up to 16 characters.
fn is_version(text: &str, suffix: bool) -> bool {
    let (core, rest) = match text.split_once('-') {
        Some((core, rest)) if suffix => (core, Some(rest)),
        Some(_) => return false,
        None => (text, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| (1..=4).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
        && rest.is_none_or(|r| (1..=16).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
fn is_rfc3339(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| bytes.get(range).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if bytes.len() < 20
        || !(digits(0..4) && bytes[4] == b'-' && digits(5..7) && bytes[7] == b'-' && digits(8..10))
        || !matches!(bytes[10], b'T' | b't' | b' ')
        || !(digits(11..13) && bytes[13] == b':' && digits(14..16) && bytes[16] == b':' && digits(17..19))
    {
        return false;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let end = fraction.find(|c: char| !c.is_ascii_digit()).unwrap_or(fraction.len());
        if end == 0 {
            return false;
        }
        rest = &fraction[end..];
    }
    match rest.as_bytes() {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(f: impl FnOnce(&mut Checker<'_>)) -> Vec<String> {
        let mut problems = Vec::new();
        let exists = |name: &str| name == "icon.svg";
        f(&mut Checker::new("f.yaml", &mut problems, &exists));
        problems.iter().map(|p| format!("{}: {}", p.field, p.rule)).collect()
    }

    fn manifest() -> Value {
        json!({
            "version": "0.0.1", "type": "plugin", "author": "acme", "name": "demo",
            "label": {"en_US": "Demo"}, "description": {"en_US": "Demo"}, "icon": "icon.svg",
            "resource": {"memory": 1048576}, "created_at": "2025-01-01T00:00:00Z",
            "plugins": {"tools": ["provider/demo.yaml"]},
            "meta": {"version": "0.0.1", "arch": ["amd64"], "runner": {"language": "python", "version": "3.12", "entrypoint": "main"}}
        })
    }

    #[test]
    fn a_good_manifest_passes() {
        assert_eq!(check(|c| c.manifest(&manifest())), Vec::<String>::new());
    }

    #[test]
    fn manifest_rules_name_field_and_rule() {
        let mut bad = manifest();
        bad["author"] = json!("Acme");
        bad["label"] = json!({"zh_Hans": "演示"});
        bad["icon"] = json!("missing.svg");
        bad["created_at"] = json!("2025-01-01 00:00:00");
        bad["plugins"] = json!({"tools": ["a.yaml"], "triggers": ["b.yaml"]});
        bad["meta"]["runner"]["language"] = json!("rust");
        let problems = check(|c| c.manifest(&bad));
        let fields: Vec<&str> = problems.iter().map(|p| p.split(':').next().unwrap()).collect();
        assert_eq!(
            fields,
            ["author", "label.en_US", "icon", "created_at", "meta.runner.language", "plugins"],
            "{problems:#?}"
        );
        assert!(problems[5].contains("tools + triggers cannot be combined"), "{}", problems[5]);
    }

    #[test]
    fn tool_rules() {
        let tool = json!({
            "identity": {"author": "acme", "name": "bad name", "label": {"en_US": "x"}},
            "description": {"human": {"en_US": "x"}},
            "parameters": [
                {"name": "q", "label": {"en_US": "Q"}, "human_description": {"en_US": "q"}, "type": "text", "form": "llm"},
                {"name": "q", "label": {"en_US": "Q"}, "human_description": {"en_US": "q"}, "type": "string", "form": "user", "scope": "all"},
                {"name": "m", "label": {"en_US": "M"}, "human_description": {"en_US": "m"}, "type": "string", "form": "form", "multiple": true}
            ],
            "output_schema": {"type": "object", "properties": {"text": {"type": "string"}}}
        });
        assert_eq!(
            check(|c| c.tool(&tool)),
            [
                "identity.name: \"bad name\" must match ^[a-zA-Z0-9_-]+$ (plugin-kinds.md §2.1)",
                "description.llm: required",
                "parameters[0].type: \"text\" is not a tool parameter type (§2.1)",
                "parameters[1].form: required: one of schema, form, llm (§2.1)",
                "parameters[1].scope: scope is allowed only on app-selector, model-selector and any (§1.3)",
                "parameters[1].name: \"q\" is declared twice",
                "parameters[2].multiple: only select and dynamic-select parameters may be multiple (§2.1)",
                "output_schema.properties.text: reserved: text, files and json are the tool node's own outputs (plugin-kinds.md §2.3)",
            ]
        );
    }

    #[test]
    fn endpoint_rules() {
        assert_eq!(
            check(|c| c.endpoint(&json!({"path": "duck/<app_id>", "method": "get"}), "(root)")),
            ["path: must start with '/'", "method: \"get\" must be one of GET POST PUT DELETE, upper case (§3.1)",]
        );
        assert_eq!(
            check(|c| c.endpoint(&json!({"path": "/x", "method": "HEAD"}), "(root)")),
            ["method: HEAD validates, but the daemon routes only GET POST PUT DELETE to endpoints (§3.1)"]
        );
        assert!(check(|c| c.endpoint(&json!({"path": "/duck/<app_id>", "method": "GET"}), "(root)")).is_empty());
    }

    #[test]
    fn provider_config_rules() {
        let configs = json!({"api_key": {"type": "password", "label": {"en_US": "Key"}}, "mode": {"type": "select", "label": {"en_US": "M"}, "options": [{"label": {"en_US": "a"}}]}});
        assert_eq!(
            check(|c| c.provider_configs(&configs, "credentials_for_provider", true)),
            [
                "credentials_for_provider.api_key.type: \"password\" is not one of secret-input text-input select boolean model-selector app-selector array[tools]",
                "credentials_for_provider.mode.options[0].value: required: a non-empty string (§1.3)",
            ]
        );
        assert_eq!(check(|c| c.provider_configs(&configs, "settings", false)), ["settings: must be a list"]);
    }

    #[test]
    fn dates_and_versions() {
        assert!(is_rfc3339("2025-01-01T00:00:00Z") && is_rfc3339("2025-01-01T00:00:00.123+08:00"));
        assert!(!is_rfc3339("2025-01-01T00:00:00") && !is_rfc3339("2025-01-01"));
        assert!(is_version("0.0.1", true) && is_version("1.2.3-beta", true) && !is_version("1.2", true));
        assert!(!is_version("1.2.3-beta", false));
    }
}
