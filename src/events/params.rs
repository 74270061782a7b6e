//! Node parameters: what an event's YAML declares under `parameters` and what the family code reads
//! from `invoke_trigger_event`'s `parameters` (triggers.md §4.2: constants only, multi-selects as
//! arrays, unset ones absent or null). Declaring them here, next to the code that reads them, lets
//! the tidy test hold the YAML to exactly these names, types and options.

use serde_json::{Map, Value};

/// A workflow node's parameter values.
pub type Parameters = Map<String, Value>;

/// The type of a parameter, as the event YAML declares it (triggers.md §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParameterKind {
    /// `type: string`.
    Text,
    /// `type: select`, with exactly these option values (`multiple` when a node may pick several).
    Select { options: &'static [&'static str], multiple: bool },
    /// `type: select` whose options are every OpenAI type this release knows.
    KnownTypes { multiple: bool },
    /// `type: boolean` with this default.
    Boolean { default: bool },
    /// `type: number` with this default and range.
    Number { default: i64, min: i64, max: i64 },
    /// `type: dynamic-select`: options come from `fetch_parameter_options` (triggers.md §4.8).
    DynamicSelect,
}

/// One parameter an event declares and its family's code reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parameter {
    pub name: &'static str,
    pub kind: ParameterKind,
}

impl Parameter {
    pub(super) const fn text(name: &'static str) -> Self {
        Parameter { name, kind: ParameterKind::Text }
    }

    /// The YAML `type` this parameter must have.
    pub fn yaml_type(&self) -> &'static str {
        match self.kind {
            ParameterKind::Text => "string",
            ParameterKind::Select { .. } | ParameterKind::KnownTypes { .. } => "select",
            ParameterKind::Boolean { .. } => "boolean",
            ParameterKind::Number { .. } => "number",
            ParameterKind::DynamicSelect => "dynamic-select",
        }
    }

    /// The node's text value; None when unset or blank.
    pub(super) fn text_in<'a>(&self, parameters: &'a Parameters) -> Option<&'a str> {
        parameters.get(self.name).and_then(Value::as_str).map(str::trim).filter(|value| !value.is_empty())
    }

    /// The node's choices, single or multiple (a comma-separated string is split); empty when unset.
    pub(super) fn choices_in<'a>(&self, parameters: &'a Parameters) -> Vec<&'a str> {
        match parameters.get(self.name) {
            Some(Value::String(one)) => one.split(',').map(str::trim).filter(|v| !v.is_empty()).collect(),
            Some(Value::Array(many)) => {
                many.iter().filter_map(Value::as_str).map(str::trim).filter(|v| !v.is_empty()).collect()
            }
            _ => Vec::new(),
        }
    }
}
