/*!
The plugin's declarations, embedded at build time from the same YAML files the package ships
(`manifest.yaml`, `provider/openai_trigger.yaml` and every event file), converted to
JSON by `build.rs`. Remote-debugging registration sends them as a [`dify_plugin::Declaration`].
*/

use dify_plugin::{Asset, Declaration, ProviderKind};
use serde_json::Value;

use crate::events::EVENTS;

/// The manifest as JSON.
pub const MANIFEST_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/manifest.json"));
/// The provider as JSON, with its `events` list of paths.
pub const PROVIDER_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/provider.json"));
/// The digest of the declaration YAML this binary was built from (`crate::digest`), which
/// `--version` prints and `cargo xtask package` checks against the files it packages.
pub const DIGEST: &str = env!("OPENAI_TRIGGER_DECLARATIONS_SHA256");

/// The icons under `_assets/`, by file name (the name the manifest and provider refer to).
pub const ASSETS: &[(&str, &[u8])] = &[
    ("icon.svg", include_bytes!("../_assets/icon.svg")),
    ("icon-dark.svg", include_bytes!("../_assets/icon-dark.svg")),
];

/// The manifest as a JSON value.
pub fn manifest() -> Value {
    serde_json::from_str(MANIFEST_JSON).unwrap_or(Value::Null)
}

/// The provider with its `events` list replaced by the inlined event declarations, in the
/// provider's order: the shape the daemon expects in a `trigger_declaration` (triggers.md §2.8).
/// A listed path without a row in the event table is skipped here and caught by the tidy test.
pub fn provider_with_events() -> Value {
    let mut provider: Value = serde_json::from_str(PROVIDER_JSON).unwrap_or(Value::Null);
    let inlined: Vec<Value> = listed_event_paths(&provider)
        .iter()
        .filter_map(|path| EVENTS.iter().find(|spec| spec.path == path))
        .filter_map(|spec| serde_json::from_str(spec.json).ok())
        .collect();
    provider["events"] = Value::Array(inlined);
    provider
}

/// The event file paths a provider lists.
pub fn listed_event_paths(provider: &Value) -> Vec<String> {
    provider["events"].as_array().into_iter().flatten().filter_map(|e| e.as_str().map(str::to_owned)).collect()
}

/// What remote debugging registers: manifest, the trigger provider with its events, the icons.
pub fn declaration() -> Declaration {
    Declaration {
        manifest: manifest(),
        providers: vec![(ProviderKind::Trigger, provider_with_events())],
        assets: ASSETS.iter().map(|(name, bytes)| Asset { name: (*name).into(), bytes: (*bytes).into() }).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_declarations_parse_and_inline() {
        let manifest = manifest();
        assert_eq!(manifest["plugins"]["triggers"][0], "provider/openai_trigger.yaml");
        let provider = provider_with_events();
        let inlined = provider["events"].as_array().unwrap();
        assert_eq!(inlined.len(), EVENTS.len());
        for (event, spec) in inlined.iter().zip(EVENTS) {
            assert_eq!(event["identity"]["name"], spec.name);
        }
        assert_eq!(DIGEST.len(), 64);
    }
}
