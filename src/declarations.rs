//! The plugin's declarations, embedded at build time from the same YAML files the package ships:
//! `manifest.yaml`, `provider/openai_trigger.yaml` and every event file (through [`events::EVENTS`]).
//! Converted to JSON here for anything that must send them (remote debugging registration).

use serde_json::Value;
use thiserror::Error;

use crate::events::{self, EVENTS};

pub const MANIFEST_PATH: &str = "manifest.yaml";
pub const PROVIDER_PATH: &str = "provider/openai_trigger.yaml";
pub const MANIFEST_YAML: &str = include_str!("../manifest.yaml");
pub const PROVIDER_YAML: &str = include_str!("../provider/openai_trigger.yaml");

/// The icons under `_assets/`, by file name (the name the manifest and provider refer to).
pub const ASSETS: &[(&str, &[u8])] = &[
    ("icon.svg", include_bytes!("../_assets/icon.svg")),
    ("icon-dark.svg", include_bytes!("../_assets/icon-dark.svg")),
];

#[derive(Debug, Error)]
pub enum Error {
    #[error("{path} is not valid YAML: {source}")]
    Yaml { path: String, source: serde_yaml::Error },
    #[error("{path}: {problem}")]
    Invalid { path: String, problem: String },
}

/// Parses one embedded YAML document into JSON.
pub fn yaml_to_json(path: &str, text: &str) -> Result<Value, Error> {
    serde_yaml::from_str::<Value>(text).map_err(|source| Error::Yaml { path: path.to_owned(), source })
}

pub fn manifest() -> Result<Value, Error> {
    yaml_to_json(MANIFEST_PATH, MANIFEST_YAML)
}

/// The provider with its `events` list replaced by the inlined event declarations, in the
/// provider's order: the shape the daemon expects in a `trigger_declaration` (triggers.md §2.8).
pub fn provider_with_events() -> Result<Value, Error> {
    let mut provider = yaml_to_json(PROVIDER_PATH, PROVIDER_YAML)?;
    let paths = listed_event_paths(&provider)?;
    let mut inlined = Vec::with_capacity(paths.len());
    for path in paths {
        let spec = EVENTS.iter().find(|spec| spec.path == path).ok_or_else(|| Error::Invalid {
            path: PROVIDER_PATH.to_owned(),
            problem: format!("lists {path}, which has no handler"),
        })?;
        inlined.push(yaml_to_json(spec.path, spec.yaml)?);
    }
    provider["events"] = Value::Array(inlined);
    Ok(provider)
}

/// The event file paths the provider lists.
pub fn listed_event_paths(provider: &Value) -> Result<Vec<String>, Error> {
    let invalid = |problem: &str| Error::Invalid { path: PROVIDER_PATH.to_owned(), problem: problem.to_owned() };
    provider
        .get("events")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("has no events list"))?
        .iter()
        .map(|entry| entry.as_str().map(str::to_owned).ok_or_else(|| invalid("events entries must be paths")))
        .collect()
}

/// Every declared event name, in table order.
pub fn event_names() -> impl Iterator<Item = &'static str> {
    events::EVENTS.iter().map(|spec| spec.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_declarations_parse_and_inline() {
        let manifest = manifest().unwrap();
        assert_eq!(manifest["plugins"]["triggers"][0], PROVIDER_PATH);
        let provider = provider_with_events().unwrap();
        let inlined = provider["events"].as_array().unwrap();
        assert_eq!(inlined.len(), EVENTS.len());
        for (event, spec) in inlined.iter().zip(EVENTS) {
            assert_eq!(event["identity"]["name"], spec.name);
        }
    }
}
