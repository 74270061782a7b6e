/*!
Typed agent strategies (plugin-kinds.md §5): `invoke_agent_strategy` as an [`AgentRequest`] whose
parameters decode to the shapes Dify fills them with ([`AgentModelConfig`] for a `model-selector`,
[`ToolEntity`]s for `array[tools]`), the [`AgentStrategy`] trait a strategy implements, and an
[`AgentPlugin`] that routes by provider and strategy name.

A strategy answers with [`ToolMessage`]s (text, JSON, logs, blobs, …; the same `ToolResponseChunk`s
as a tool, §5.2) through [`AgentOutput`], and does its work through backwards calls on the
session: the workflow's model with [`Session::call_stream`] of an
[`LlmRequest`](crate::invocation::LlmRequest) ([`AgentModelConfig::llm_request`] builds it) and
the tools with a [`ToolInvocation`] ([`ToolEntity::invocation`]). Blobs go out as `blob_chunk`s,
which the daemon merges for agents (§5.3). The manifest must grant `permission.model` (`llm`) and
`permission.tool`.

Dify renders [`ToolMessage::log`] entries as the agent's thought process: start an entry per round,
per model call and per tool call, and finish each with its output (`parent_id` nests them).
*/

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::action::Action;
use crate::declaration::{Declaration, Mismatch, ProviderKind};
use crate::invocation::{LlmMode, LlmRequest, PromptMessage, PromptTool, ToolInvocation};
use crate::lenient::{Object, object_or_null, or_default};
use crate::router::BoxFuture;
use crate::session::{Plugin, Reply, Request, Session, reply};
use crate::tool::{ParameterError, Parameters, ToolMessage};
use crate::wire::ErrorData;

/// One `invoke_agent_strategy` request (plugin-kinds.md §5.2).
#[derive(Debug, Clone)]
pub struct AgentRequest {
    /// `agent_strategy_provider`: the provider's `identity.name`.
    pub provider: String,
    /// `agent_strategy`: the strategy's `identity.name`.
    pub strategy: String,
    /// `agent_strategy_params`, as Dify filled them.
    pub parameters: Parameters,
}

impl AgentRequest {
    /// Reads a request's `data`.
    ///
    /// Errors: `InvalidRequestError` when `agent_strategy_params` is not an object.
    pub fn from_data(data: &Value) -> Result<Self, ErrorData> {
        let text = |key: &str| data.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        let parameters = match data.get("agent_strategy_params") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map.clone(),
            Some(_) => {
                return Err(ErrorData::new("InvalidRequestError", "agent_strategy_params must be an object"));
            }
        };
        Ok(AgentRequest {
            provider: text("agent_strategy_provider"),
            strategy: text("agent_strategy"),
            parameters: Parameters(parameters),
        })
    }

    /// The `model-selector` parameter `name`.
    ///
    /// Errors: `ToolParameterValidationError` when it is missing or of another shape.
    pub fn model(&self, name: &str) -> Result<AgentModelConfig, ParameterError> {
        self.parameters.parse(name)
    }

    /// The `array[tools]` parameter `name` (empty when absent).
    ///
    /// Errors: `ToolParameterValidationError` when it is of another shape.
    pub fn tools(&self, name: &str) -> Result<Vec<ToolEntity>, ParameterError> {
        Ok(self.parameters.optional(name)?.unwrap_or_default())
    }
}

/// A `model-selector` parameter's value (plugin-kinds.md §5.2): the model the workflow picked,
/// its parameters, and (with the `history-messages` feature) the conversation so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentModelConfig {
    pub provider: String,
    pub model: String,
    #[serde(default)]
    pub model_type: Option<String>,
    /// `chat` or `completion` (default chat).
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default, deserialize_with = "object_or_null")]
    pub completion_params: Object,
    /// The model's schema (`AIModelEntity`), when Dify sends it: features, context size.
    #[serde(default)]
    pub entity: Option<Value>,
    #[serde(default, deserialize_with = "or_default")]
    pub history_prompt_messages: Vec<PromptMessage>,
}

impl AgentModelConfig {
    /// A streamed `llm` backwards call of this model with `messages` and `tools`.
    pub fn llm_request(&self, messages: Vec<PromptMessage>, tools: Vec<PromptTool>) -> LlmRequest {
        let mut request = LlmRequest::chat(self.provider.clone(), self.model.clone(), messages);
        request.mode = if self.mode.as_deref() == Some("completion") { LlmMode::Completion } else { LlmMode::Chat };
        request.completion_params = self.completion_params.clone();
        request.tools = tools;
        request
    }

    /// Whether the model's schema says it calls tools (`tool-call`, `multi-tool-call` or
    /// `stream-tool-call`); true when Dify sent no schema.
    pub fn calls_tools(&self) -> bool {
        match self.entity.as_ref().and_then(|e| e.get("features")).and_then(Value::as_array) {
            None => true,
            Some(features) => features
                .iter()
                .any(|f| matches!(f.as_str(), Some("tool-call" | "multi-tool-call" | "stream-tool-call"))),
        }
    }
}

/// A tool's identity within a [`ToolEntity`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolIdentity {
    #[serde(default)]
    pub author: String,
    pub name: String,
    #[serde(default)]
    pub label: Value,
    /// The tool's provider (`author/plugin/provider` for plugin tools).
    #[serde(default)]
    pub provider: String,
}

/// One tool of an `array[tools]` parameter (plugin-kinds.md §5.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolEntity {
    pub identity: ToolIdentity,
    /// The tool's `ToolParameter`s (`{name, type, form, required, llm_description, …}`).
    #[serde(default, deserialize_with = "or_default")]
    pub parameters: Vec<Value>,
    /// `{human, llm}`.
    #[serde(default)]
    pub description: Option<Value>,
    #[serde(default)]
    pub output_schema: Option<Value>,
    #[serde(default)]
    pub credential_id: Option<String>,
    #[serde(default)]
    pub credential_type: Option<String>,
    #[serde(default)]
    pub has_runtime_parameters: bool,
    /// `builtin`, `workflow`, `api`, `mcp`, …: the backwards call's `tool_type`.
    #[serde(default)]
    pub provider_type: String,
    /// Values the workflow fixed (form parameters): merged into every call.
    #[serde(default, deserialize_with = "object_or_null")]
    pub runtime_parameters: Object,
}

impl ToolEntity {
    /// The tool as the model sees it: its name, its description for LLMs, and a JSON Schema of
    /// its `form: llm` parameters (types mapped to JSON types, `select` options as `enum`).
    pub fn prompt_tool(&self) -> PromptTool {
        let mut properties = Map::new();
        let mut required = Vec::new();
        for parameter in &self.parameters {
            if parameter.get("form").and_then(Value::as_str) != Some("llm") {
                continue;
            }
            let Some(name) = parameter.get("name").and_then(Value::as_str) else { continue };
            let kind = match parameter.get("type").and_then(Value::as_str) {
                Some("number") => "number",
                Some("boolean") => "boolean",
                Some("array" | "files") => "array",
                Some("object") => "object",
                _ => "string",
            };
            let mut property = json!({ "type": kind });
            if let Some(text) = parameter.get("llm_description").and_then(Value::as_str) {
                property["description"] = Value::String(text.to_owned());
            }
            if let Some(options) = parameter.get("options").and_then(Value::as_array) {
                let values: Vec<Value> = options.iter().filter_map(|o| o.get("value").cloned()).collect();
                if !values.is_empty() {
                    property["enum"] = Value::Array(values);
                }
            }
            if parameter.get("required").and_then(Value::as_bool) == Some(true) {
                required.push(Value::String(name.to_owned()));
            }
            properties.insert(name.to_owned(), property);
        }
        let description = self.description.as_ref().and_then(|d| d.get("llm")).and_then(Value::as_str);
        PromptTool {
            name: self.identity.name.clone(),
            description: description.unwrap_or_default().to_owned(),
            parameters: json!({"type": "object", "properties": properties, "required": required}),
        }
    }

    /// The backwards `tool` call of this tool with the model's `arguments`, the workflow's
    /// `runtime_parameters` merged over them (they are fixed by the user).
    pub fn invocation(&self, arguments: Object) -> ToolInvocation {
        let mut tool_parameters = arguments;
        for (key, value) in &self.runtime_parameters {
            tool_parameters.insert(key.clone(), value.clone());
        }
        ToolInvocation {
            tool_type: if self.provider_type.is_empty() { "builtin".to_owned() } else { self.provider_type.clone() },
            provider: self.identity.provider.clone(),
            tool: self.identity.name.clone(),
            tool_parameters,
            credential_id: self.credential_id.clone(),
        }
    }
}

/// Where a strategy streams its messages.
#[derive(Debug, Clone)]
pub struct AgentOutput {
    session: Session,
}

impl AgentOutput {
    /// Sends `message` now (a blob as `blob_chunk`s, which the daemon merges for agents, §5.3).
    ///
    /// Errors: `OutputTooLargeError` for a chunk over the line limit, or when the output is closed.
    pub async fn send(&self, message: ToolMessage) -> Result<(), ErrorData> {
        for chunk in message.chunks() {
            let raw = serde_json::value::RawValue::from_string(chunk)
                .map_err(|_| ErrorData::new("InternalError", "a message could not be encoded"))?;
            self.session.stream(&raw).await?;
        }
        Ok(())
    }

    /// The session, for backwards calls (model, tools, storage).
    pub fn session(&self) -> &Session {
        &self.session
    }
}

/// An agent strategy: one `invoke` per run.
pub trait AgentStrategy: Send + Sync + 'static {
    /// Runs the strategy, sending its messages through `out`. An `Err` after some messages ends
    /// the run with that error (Dify shows it on the agent node).
    fn invoke(&self, request: AgentRequest, out: AgentOutput) -> impl Future<Output = Result<(), ErrorData>> + Send;
}

trait DynStrategy: Send + Sync + 'static {
    fn invoke(&self, request: AgentRequest, out: AgentOutput) -> BoxFuture<'_, Result<(), ErrorData>>;
}

impl<S: AgentStrategy> DynStrategy for S {
    fn invoke(&self, request: AgentRequest, out: AgentOutput) -> BoxFuture<'_, Result<(), ErrorData>> {
        Box::pin(AgentStrategy::invoke(self, request, out))
    }
}

/// A [`Plugin`] serving one agent strategy provider: its strategies by name. With the
/// declaration attached, required parameters are checked before a strategy runs.
pub struct AgentPlugin {
    provider: String,
    strategies: HashMap<String, Arc<dyn DynStrategy>>,
    required: HashMap<String, Vec<String>>,
}

impl AgentPlugin {
    /// A plugin for provider `provider` (its `identity.name`).
    pub fn new(provider: impl Into<String>) -> Self {
        AgentPlugin { provider: provider.into(), strategies: HashMap::new(), required: HashMap::new() }
    }

    /// Serves strategy `name` with `strategy`.
    #[must_use]
    pub fn strategy(mut self, name: &str, strategy: impl AgentStrategy) -> Self {
        self.strategies.insert(name.to_owned(), Arc::new(strategy));
        self
    }

    /// Attaches the declaration: each strategy's required parameters are then checked first.
    #[must_use]
    pub fn declaration(mut self, declaration: &Declaration) -> Self {
        for provider in declaration.providers_of(ProviderKind::AgentStrategy) {
            for strategy in provider["strategies"].as_array().into_iter().flatten() {
                let Some(name) = strategy.pointer("/identity/name").and_then(Value::as_str) else { continue };
                let required = strategy["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["required"].as_bool() == Some(true))
                    .filter_map(|p| p["name"].as_str().map(str::to_owned))
                    .collect();
                self.required.insert(name.to_owned(), required);
            }
        }
        self
    }

    /// Checks that every declared strategy has a handler and every handler a declaration.
    ///
    /// Errors: [`Mismatch`] listing each difference.
    pub fn check(&self, declaration: &Declaration) -> Result<(), Mismatch> {
        let declared: Vec<String> = declaration
            .providers_of(ProviderKind::AgentStrategy)
            .flat_map(|p| p["strategies"].as_array().cloned().unwrap_or_default())
            .filter_map(|s| s.pointer("/identity/name").and_then(Value::as_str).map(str::to_owned))
            .collect();
        let mut problems = Vec::new();
        for name in &declared {
            if !self.strategies.contains_key(name) {
                problems.push(format!("strategy {name} is declared but has no handler"));
            }
        }
        for name in self.strategies.keys() {
            if !declared.contains(name) {
                problems.push(format!("strategy {name} has a handler but is not declared"));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(Mismatch(problems)) }
    }
}

impl Plugin for AgentPlugin {
    async fn handle(&self, request: Request, session: &Session) -> Reply {
        if request.action() != Some(&Action::InvokeAgentStrategy) {
            return Err(ErrorData::new(
                "NotImplementedError",
                format!(
                    "action {} is not served by an agent strategy plugin",
                    request.action().map_or("(none)", Action::as_str)
                ),
            ));
        }
        let data: Value = request.parse().map_err(|err| {
            ErrorData::new(
                "InvalidRequestError",
                format!("the agent request is not valid JSON (line {}, column {})", err.line(), err.column()),
            )
        })?;
        let request = AgentRequest::from_data(&data)?;
        if request.provider != self.provider {
            return Err(ErrorData::new(
                "ValueError",
                format!("Agent strategy provider `{}` not found", crate::wire::truncate(&request.provider, 128)),
            ));
        }
        let Some(strategy) = self.strategies.get(&request.strategy).cloned() else {
            return Err(ErrorData::new(
                "ValueError",
                format!("Agent strategy `{}` not found", crate::wire::truncate(&request.strategy, 128)),
            ));
        };
        for name in self.required.get(&request.strategy).into_iter().flatten() {
            if request.parameters.get(name).is_none() {
                return Err(ParameterError::Missing(name.clone()).into());
            }
        }
        strategy.invoke(request, AgentOutput { session: session.clone() }).await?;
        session.mark_streamed();
        reply(&Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity() -> ToolEntity {
        serde_json::from_value(json!({
            "identity": {"author": "a", "name": "search", "label": {"en_US": "Search"}, "provider": "a/p/google"},
            "parameters": [
                {"name": "query", "type": "string", "form": "llm", "required": true, "llm_description": "what to find"},
                {"name": "num", "type": "number", "form": "form"},
                {"name": "lang", "type": "select", "form": "llm", "options": [{"value": "en"}, {"value": "fr"}]}
            ],
            "description": {"human": {"en_US": "x"}, "llm": "Searches the web"},
            "provider_type": "builtin", "runtime_parameters": {"num": 3}, "credential_id": "c1",
            "has_runtime_parameters": false
        }))
        .unwrap()
    }

    #[test]
    fn a_tool_entity_becomes_a_prompt_tool_and_an_invocation() {
        let tool = entity().prompt_tool();
        assert_eq!(tool.name, "search");
        assert_eq!(tool.description, "Searches the web");
        assert_eq!(tool.parameters["required"], json!(["query"]));
        assert_eq!(tool.parameters["properties"]["lang"]["enum"], json!(["en", "fr"]));
        assert!(tool.parameters["properties"].get("num").is_none(), "form parameters are not the model's");
        let mut arguments = Object::new();
        arguments.insert("query".into(), json!("rust"));
        arguments.insert("num".into(), json!(10));
        let call = entity().invocation(arguments);
        assert_eq!(call.tool_parameters["num"], 3, "the workflow's value wins");
        assert_eq!(call.provider, "a/p/google");
        assert_eq!(call.credential_id.as_deref(), Some("c1"));
    }

    #[test]
    fn a_model_config_builds_its_llm_request() {
        let config: AgentModelConfig = serde_json::from_value(json!({
            "provider": "openai", "model": "gpt-4o", "mode": "chat", "completion_params": {"temperature": 0.2},
            "history_prompt_messages": null, "entity": {"features": ["vision"]}
        }))
        .unwrap();
        assert!(!config.calls_tools());
        let request = config.llm_request(vec![PromptMessage::user("hi")], vec![entity().prompt_tool()]);
        let json = serde_json::to_value(&request).unwrap();
        assert_eq!(json["completion_params"]["temperature"], 0.2);
        assert_eq!(json["tools"][0]["name"], "search");
        assert_eq!(json["mode"], "chat");
    }
}
