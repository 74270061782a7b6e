/*!
Typed backwards invocations (plugin-kinds.md §10, daemon-protocol.md §4): one request type per
backwards `type` the daemon dispatches, each with the shape of its `response` events, called with
[`Session::call`] (one answer) or [`Session::call_stream`] (an LLM's chunks, an app's events, a
tool's messages, as they arrive). Every call has the session's backwards timeout (or its own,
`*_within`), and fails with [`BackwardsError::Unavailable`] where the transport has no way back to
Dify: Dify's serverless runtime does not route backwards calls to a plugin served over HTTP, and a
[`Session::detached`] has no daemon at all.

The daemon adds `tenant_id`, `user_id` and `type` to each request and validates it (required fields
in **bold** in §10); the plugin's manifest must grant the permission (`resource.permission.model`,
`tool`, `app`, `storage`, `node`), else the daemon answers an error.

| type | request | one `response` event | permission |
|---|---|---|---|
| `llm` | [`LlmRequest`] | [`LlmResultChunk`] (streamed) | model.llm |
| `system_summary` | [`SummaryRequest`] | [`Summary`] | model.llm |
| `text_embedding` | [`TextEmbeddingRequest`] | `TextEmbeddingResult` (JSON) | model.text_embedding |
| `rerank` | [`RerankRequest`] | `RerankResult` (JSON) | model.rerank |
| `tts` | [`TtsRequest`] | [`TtsChunk`] (streamed) | model.tts |
| `speech2text` | [`Speech2TextRequest`] | [`TextResult`] | model.speech2text |
| `moderation` | [`ModerationRequest`] | [`Flagged`] | model.moderation |
| `tool` | [`ToolInvocation`] | a `ToolResponseChunk` (JSON, streamed) | tool |
| `app` | [`AppInvocation`] | an app event (JSON, streamed) | app |
| `fetch_app` | [`FetchApp`] | the app's info (JSON) | app |
| `node_parameter_extractor` | [`ParameterExtractor`] | `{inputs, process_data, outputs}` | node |
| `node_question_classifier` | [`QuestionClassifier`] | `{inputs, process_data, outputs}` | node |
| `upload_file` | [`UploadFile`] | [`UploadUrl`] (then `POST` the file there as multipart `file`) | none |
| `storage` | [`Session::storage`](crate::Session::storage) | §4.2 | storage |
*/

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::backwards::{BackwardsError, BackwardsStream};

type Object = Map<String, Value>;

/// A backwards call: its `type` and the shape of one `response` event.
pub trait Invocation: Serialize {
    /// The backwards `type` (`llm`, `tool`, …).
    const KIND: &'static str;
    /// One `response` event's `data`.
    type Response: DeserializeOwned;
}

/// The typed events of a streamed call ([`crate::Session::call_stream`]).
#[derive(Debug)]
pub struct TypedStream<T> {
    pub(crate) inner: BackwardsStream,
    pub(crate) marker: std::marker::PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> TypedStream<T> {
    /// The next event; None after `end`.
    ///
    /// Errors: those of [`BackwardsStream::next`], and [`BackwardsError::Malformed`] for an event of
    /// another shape (the stream goes on).
    pub async fn next(&mut self) -> Option<Result<T, BackwardsError>> {
        let event = self.inner.next().await?;
        Some(event.and_then(|value| {
            serde_json::from_value(value).map_err(|err| {
                BackwardsError::Malformed(format!("unexpected {} event: {err}", std::any::type_name::<T>()))
            })
        }))
    }

    /// Every event, in order.
    ///
    /// Errors: as [`next`](Self::next); the first ends the call.
    pub async fn collect(mut self) -> Result<Vec<T>, BackwardsError> {
        let mut all = Vec::new();
        while let Some(event) = self.next().await {
            all.push(event?);
        }
        Ok(all)
    }
}

impl TypedStream<LlmResultChunk> {
    /// The streamed answer's text, concatenated (text parts of list contents included), and the
    /// last chunk's usage and finish reason.
    ///
    /// Errors: as [`next`](Self::next).
    pub async fn text(mut self) -> Result<LlmText, BackwardsError> {
        let mut out = LlmText::default();
        while let Some(chunk) = self.next().await {
            out.absorb(chunk?);
        }
        Ok(out)
    }
}

/// An LLM's whole answer ([`TypedStream::text`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LlmText {
    pub text: String,
    /// The tool calls, pieces of one call joined.
    pub tool_calls: Vec<ToolCall>,
    pub usage: Option<Value>,
    pub finish_reason: Option<String>,
}

impl LlmText {
    /// Adds one chunk: its text, its tool calls, its usage and finish reason (for a caller that
    /// also handles the chunks as they come, as an agent strategy does).
    pub fn absorb(&mut self, chunk: LlmResultChunk) {
        self.text.push_str(&chunk.delta.message.text());
        for call in chunk.delta.message.tool_calls {
            // A piece without an id continues the previous call (a provider streaming one
            // call's arguments over several chunks); a piece with an id starts a call.
            match self.tool_calls.last_mut() {
                Some(last) if call.id.is_empty() => {
                    last.function.name.push_str(&call.function.name);
                    last.function.arguments.push_str(&call.function.arguments);
                }
                _ => self.tool_calls.push(call),
            }
        }
        if chunk.delta.usage.is_some() {
            self.usage = chunk.delta.usage;
        }
        if chunk.delta.finish_reason.is_some() {
            self.finish_reason = chunk.delta.finish_reason;
        }
    }
}

/// `llm` (§10): a model invocation through the tenant's configured provider.
#[derive(Debug, Clone, Serialize)]
pub struct LlmRequest {
    /// The model provider (`langgenius/openai/openai` or `openai`).
    pub provider: String,
    pub model: String,
    pub mode: LlmMode,
    /// `temperature`, `max_tokens`, … as the model's `parameter_rules` name them.
    pub completion_params: Object,
    pub prompt_messages: Vec<PromptMessage>,
    /// Tool definitions for tool calling.
    pub tools: Vec<PromptTool>,
    pub stop: Vec<String>,
    /// Ask the provider to stream; the daemon streams chunks either way.
    pub stream: bool,
}

impl LlmRequest {
    /// A chat request of `model` of `provider` with `messages`, streamed, no parameters.
    pub fn chat(provider: impl Into<String>, model: impl Into<String>, messages: Vec<PromptMessage>) -> Self {
        LlmRequest {
            provider: provider.into(),
            model: model.into(),
            mode: LlmMode::Chat,
            completion_params: Object::new(),
            prompt_messages: messages,
            tools: Vec::new(),
            stop: Vec::new(),
            stream: true,
        }
    }
}

/// `chat` or `completion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LlmMode {
    Chat,
    Completion,
}

/// One prompt message (plugin-kinds.md §4.3 `PromptMessage`): `role` (`system`, `user`,
/// `assistant`, `tool`) and `content` (a string, or a list of content parts `{type: text|image|
/// audio|video|document, data?, url?, mime_type?, …}`; never `null`, which the daemon refuses);
/// an assistant's `tool_calls`, a tool message's `tool_call_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptMessage {
    pub role: String,
    #[serde(default, deserialize_with = "content_or_empty")]
    pub content: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::lenient::or_default", skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// A `tool` message's call id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

/// `null` content reads as `""` (the daemon refuses `null`, plugin-kinds.md §4.3).
fn content_or_empty<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::Null => Value::String(String::new()),
        other => other,
    })
}

/// One tool call of an assistant message: `{id, type: "function", function: {name, arguments}}`,
/// `arguments` the JSON text of the call's arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    #[serde(default)]
    pub id: String,
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: ToolCallFunction,
}

fn function_type() -> String {
    "function".to_owned()
}

/// The function a [`ToolCall`] names, and its arguments as JSON text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCallFunction {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

impl ToolCall {
    /// A call of `name` with `arguments` (any JSON value, sent as its text).
    pub fn function(id: impl Into<String>, name: impl Into<String>, arguments: &Value) -> Self {
        ToolCall {
            id: id.into(),
            kind: function_type(),
            function: ToolCallFunction { name: name.into(), arguments: arguments.to_string() },
        }
    }
}

/// A tool the model may call (`{name, description, parameters}`: `parameters` a JSON Schema).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptTool {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub parameters: Value,
}

impl PromptMessage {
    fn text(role: &str, text: impl Into<String>) -> Self {
        PromptMessage {
            role: role.to_owned(),
            content: Value::String(text.into()),
            name: None,
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// An assistant message that called `tool_calls` (with its text, possibly empty).
    pub fn assistant_calls(text: impl Into<String>, tool_calls: Vec<ToolCall>) -> Self {
        PromptMessage { tool_calls, ..PromptMessage::text("assistant", text) }
    }

    /// The answer to tool call `call_id`.
    pub fn tool(call_id: impl Into<String>, text: impl Into<String>) -> Self {
        PromptMessage { tool_call_id: Some(call_id.into()), ..PromptMessage::text("tool", text) }
    }

    /// The message's text: the string, or the `data` of its `text` parts.
    pub fn text_content(&self) -> String {
        content_text(&self.content)
    }

    pub fn system(text: impl Into<String>) -> Self {
        PromptMessage::text("system", text)
    }

    pub fn user(text: impl Into<String>) -> Self {
        PromptMessage::text("user", text)
    }

    pub fn assistant(text: impl Into<String>) -> Self {
        PromptMessage::text("assistant", text)
    }
}

/// One streamed chunk of an LLM's answer (`LLMResultChunk`, plugin-kinds.md §4.4).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LlmResultChunk {
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub system_fingerprint: Option<String>,
    pub delta: LlmDelta,
}

/// A chunk's delta: its index, the message piece, and on the last one usage and finish reason.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LlmDelta {
    #[serde(default)]
    pub index: u64,
    pub message: AssistantMessage,
    #[serde(default)]
    pub usage: Option<Value>,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// The assistant's message piece: text (a string, or content parts) and tool calls.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AssistantMessage {
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub content: Value,
    #[serde(default, deserialize_with = "crate::lenient::or_default")]
    pub tool_calls: Vec<ToolCall>,
}

impl AssistantMessage {
    /// The piece's text: the string, or the `data` of its `text` parts.
    pub fn text(&self) -> String {
        content_text(&self.content)
    }
}

/// A content's text: the string, or the `data` of its `text` parts.
pub(crate) fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|p| p.get("data").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// `system_summary`: Dify summarises `text` with the tenant's default model.
#[derive(Debug, Clone, Serialize)]
pub struct SummaryRequest {
    pub text: String,
    pub instruction: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Summary {
    pub summary: String,
}

/// `text_embedding`.
#[derive(Debug, Clone, Serialize)]
pub struct TextEmbeddingRequest {
    pub provider: String,
    pub model: String,
    pub texts: Vec<String>,
    /// `document` or `query`.
    pub input_type: String,
}

/// `rerank`.
#[derive(Debug, Clone, Serialize)]
pub struct RerankRequest {
    pub provider: String,
    pub model: String,
    pub query: String,
    pub docs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score_threshold: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_n: Option<u32>,
}

/// `tts`: speech for `content_text`, streamed as audio pieces.
#[derive(Debug, Clone, Serialize)]
pub struct TtsRequest {
    pub provider: String,
    pub model: String,
    pub content_text: String,
    pub voice: String,
}

/// One piece of audio: hex on the wire.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TtsChunk {
    pub result: String,
    #[serde(default)]
    pub mime_type: Option<String>,
}

impl TtsChunk {
    /// The audio bytes.
    ///
    /// Errors: [`BackwardsError::Malformed`] when `result` is not hex.
    pub fn bytes(&self) -> Result<Vec<u8>, BackwardsError> {
        hex::decode(&self.result).map_err(|_| BackwardsError::Malformed("a tts chunk that is not hex".into()))
    }
}

/// `speech2text`: `file` is the audio's bytes (sent as hex).
#[derive(Debug, Clone, Serialize)]
pub struct Speech2TextRequest {
    pub provider: String,
    pub model: String,
    #[serde(serialize_with = "as_hex")]
    pub file: Vec<u8>,
}

fn as_hex<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&hex::encode(bytes))
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TextResult {
    pub result: String,
}

/// `moderation`: whether `text` is flagged.
#[derive(Debug, Clone, Serialize)]
pub struct ModerationRequest {
    pub provider: String,
    pub model: String,
    pub text: String,
}

/// `true`: flagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Flagged {
    pub result: bool,
}

/// `tool`: another tool, as a workflow would call it.
#[derive(Debug, Clone, Serialize)]
pub struct ToolInvocation {
    /// `builtin` (a plugin's tool), `workflow`, `api` or `mcp`.
    pub tool_type: String,
    pub provider: String,
    pub tool: String,
    pub tool_parameters: Object,
    /// The stored credential to use (default: the provider's default one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
}

/// `app`: run a Dify app (chat, completion or workflow).
#[derive(Debug, Clone, Serialize)]
pub struct AppInvocation {
    pub app_id: String,
    pub inputs: Object,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// `streaming` or `blocking`.
    pub response_mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// `fetch_app`: an app's info.
#[derive(Debug, Clone, Serialize)]
pub struct FetchApp {
    pub app_id: String,
}

/// `node_parameter_extractor`: Dify's parameter-extractor node on `query`.
#[derive(Debug, Clone, Serialize)]
pub struct ParameterExtractor {
    /// `{name, type, options?, description?, required?}` each.
    pub parameters: Vec<Value>,
    /// `{provider, name, mode, completion_params}`.
    pub model: Value,
    pub instruction: String,
    pub query: String,
}

/// `node_question_classifier`: Dify's question-classifier node on `query`.
#[derive(Debug, Clone, Serialize)]
pub struct QuestionClassifier {
    /// `{id, name}` each.
    pub classes: Vec<Value>,
    pub model: Value,
    pub instruction: String,
    pub query: String,
}

/// `upload_file`: a signed URL to upload one file to Dify's storage.
#[derive(Debug, Clone, Serialize)]
pub struct UploadFile {
    pub filename: String,
    pub mimetype: String,
}

/// Where to `POST` the file (multipart field `file`; Dify answers 201 with the file's JSON).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UploadUrl {
    pub url: String,
}

/// `impl Invocation` for each request type: its backwards `type` and its response's type.
macro_rules! invocations {
    ($($request:ty = $kind:literal => $response:ty,)*) => {
        $(impl Invocation for $request {
            const KIND: &'static str = $kind;
            type Response = $response;
        })*
    };
}

invocations! {
    LlmRequest = "llm" => LlmResultChunk,
    SummaryRequest = "system_summary" => Summary,
    TextEmbeddingRequest = "text_embedding" => Value,
    RerankRequest = "rerank" => Value,
    TtsRequest = "tts" => TtsChunk,
    Speech2TextRequest = "speech2text" => TextResult,
    ModerationRequest = "moderation" => Flagged,
    ToolInvocation = "tool" => Value,
    AppInvocation = "app" => Value,
    FetchApp = "fetch_app" => Value,
    ParameterExtractor = "node_parameter_extractor" => Value,
    QuestionClassifier = "node_question_classifier" => Value,
    UploadFile = "upload_file" => UploadUrl,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_have_the_daemons_field_names() {
        let llm =
            LlmRequest::chat("openai", "gpt-4o", vec![PromptMessage::system("be brief"), PromptMessage::user("hi")]);
        assert_eq!(
            serde_json::to_value(&llm).unwrap(),
            json!({"provider": "openai", "model": "gpt-4o", "mode": "chat", "completion_params": {},
                   "prompt_messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
                   "tools": [], "stop": [], "stream": true})
        );
        let s2t = Speech2TextRequest { provider: "p".into(), model: "m".into(), file: vec![0xab, 0x01] };
        assert_eq!(serde_json::to_value(&s2t).unwrap()["file"], json!("ab01"));
        let tool = ToolInvocation {
            tool_type: "builtin".into(),
            provider: "p".into(),
            tool: "t".into(),
            tool_parameters: Object::new(),
            credential_id: None,
        };
        assert_eq!(
            serde_json::to_value(&tool).unwrap(),
            json!({"tool_type": "builtin", "provider": "p", "tool": "t", "tool_parameters": {}})
        );
    }

    #[test]
    fn llm_chunks_read_string_and_part_contents() {
        let chunk: LlmResultChunk = serde_json::from_value(json!({"model": "m", "delta": {"index": 0, "message": {"role": "assistant", "content": [{"type": "text", "data": "a"}, {"type": "image", "data": "x"}, {"type": "text", "data": "b"}]}}})).unwrap();
        assert_eq!(chunk.delta.message.text(), "ab");
        let chunk: LlmResultChunk =
            serde_json::from_value(json!({"delta": {"message": {"content": "hi"}, "finish_reason": "stop"}})).unwrap();
        assert_eq!((chunk.delta.message.text().as_str(), chunk.delta.finish_reason.as_deref()), ("hi", Some("stop")));
    }
}
