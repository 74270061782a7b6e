/*!
Typed model providers (plugin-kinds.md §4): the model actions as typed requests, one trait per
model type, response builders that cannot produce a chunk the daemon refuses, and the errors Dify
maps. A [`ModelPlugin`] serves one provider (a model provider is alone in its plugin, §1.4):

| action | request input | served by | answer |
|---|---|---|---|
| `validate_provider_credentials` | – | [`ModelProvider::validate_provider_credentials`] | `{"result":true,"credentials":…}` |
| `validate_model_credentials` | – | [`ModelProvider::validate_model_credentials`] | same |
| `get_ai_model_schemas` | – | [`ModelProvider::model_schema`] (default: the declared model) | `{"model_schema":…\|null}` |
| `invoke_llm` | [`LlmInput`] | [`LargeLanguageModel::invoke`] through [`LlmOutput`] | [`LlmChunk`]s |
| `get_llm_num_tokens` | [`NumTokensInput`] | [`LargeLanguageModel::num_tokens`] | `{"num_tokens":n}` |
| `start_polling`, `check_polling` | [`LlmInput`], [`PollingInput`] | [`LargeLanguageModel::start_polling`], [`check_polling`](LargeLanguageModel::check_polling) | [`PollingResult`] (§4.7) |
| `invoke_text_embedding` | [`TextEmbeddingInput`] | [`TextEmbeddingModel::invoke`] | [`EmbeddingResult`] |
| `invoke_multimodal_embedding` | [`MultimodalEmbeddingInput`] | [`TextEmbeddingModel::invoke_multimodal`] | [`EmbeddingResult`] |
| `get_text_embedding_num_tokens` | [`TextsInput`] | [`TextEmbeddingModel::num_tokens`] | `{"num_tokens":[n,…]}` |
| `invoke_rerank` | [`RerankInput`] | [`RerankModel::invoke`] | [`RerankResult`] |
| `invoke_multimodal_rerank` | [`MultimodalRerankInput`] | [`RerankModel::invoke_multimodal`] | [`RerankResult`] |
| `invoke_tts` | [`TtsInput`] | [`TtsModel::invoke`] through [`TtsOutput`] | `{"result":hex,"mime_type"}` chunks |
| `get_tts_model_voices` | [`VoicesInput`] | [`TtsModel::voices`] (default: the declared `voices`) | `{"voices":[…]}` |
| `invoke_speech2text` | [`Speech2TextInput`] | [`Speech2TextModel::invoke`] | `{"result":text}` |
| `invoke_moderation` | [`ModerationInput`] | [`ModerationModel::invoke`] | `{"result":flagged}` |

Every request names `provider`, `model` and (except the provider check) `model_type`; they and the
credentials come in [`ModelRequest`], which dereferences to the action's input. A request for
another provider is a `ValueError`; a model type the plugin does not serve is a
`NotImplementedError`; a field of the wrong type is an `InvalidRequestError` with its position only
(serde's message could quote a credential). Model plugins cannot call back into Dify (§4.6).

Errors Dify maps ([`InvokeError`], §4.5, daemon-protocol.md §2.5) carry `args.description`, which
Dify shows; credential checks fail with [`credentials_invalid`].
*/

use std::collections::HashMap;
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use crate::action::Action;
use crate::declaration::{Declaration, ProviderKind};
pub use crate::lenient::Object;
use crate::lenient::{object_or_null, or_default};
use crate::router::BoxFuture;
use crate::session::{Plugin, Reply, Request, Session, StreamError, reply};
use crate::tool::Credentials;
use crate::wire::ErrorData;

pub use crate::invocation::{PromptMessage, PromptTool, ToolCall, ToolCallFunction};

/// A model type (plugin-kinds.md §4.1 `supported_model_types`), as the daemon names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ModelType {
    #[serde(rename = "llm")]
    Llm,
    #[serde(rename = "text-embedding")]
    TextEmbedding,
    #[serde(rename = "rerank")]
    Rerank,
    #[serde(rename = "speech2text")]
    Speech2Text,
    #[serde(rename = "moderation")]
    Moderation,
    #[serde(rename = "tts")]
    Tts,
    #[serde(rename = "text2img")]
    Text2Img,
    #[serde(rename = "multimodal-embedding")]
    MultimodalEmbedding,
    #[serde(rename = "multimodal-rerank")]
    MultimodalRerank,
}

impl ModelType {
    /// The type's name on the wire (`llm`, `text-embedding`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ModelType::Llm => "llm",
            ModelType::TextEmbedding => "text-embedding",
            ModelType::Rerank => "rerank",
            ModelType::Speech2Text => "speech2text",
            ModelType::Moderation => "moderation",
            ModelType::Tts => "tts",
            ModelType::Text2Img => "text2img",
            ModelType::MultimodalEmbedding => "multimodal-embedding",
            ModelType::MultimodalRerank => "multimodal-rerank",
        }
    }

    /// The type named `name`, if the daemon knows it.
    pub fn parse(name: &str) -> Option<ModelType> {
        serde_json::from_value(Value::String(name.to_owned())).ok()
    }

    /// The key of the provider YAML's `models` map for this type (§4.1; multimodal types have none).
    pub fn models_key(self) -> Option<&'static str> {
        match self {
            ModelType::Llm => Some("llm"),
            ModelType::TextEmbedding => Some("text_embedding"),
            ModelType::Rerank => Some("rerank"),
            ModelType::Tts => Some("tts"),
            ModelType::Speech2Text => Some("speech2text"),
            ModelType::Moderation => Some("moderation"),
            ModelType::Text2Img | ModelType::MultimodalEmbedding | ModelType::MultimodalRerank => None,
        }
    }
}

/// The invocation errors Dify maps to its own (plugin-kinds.md §4.5): each is sent as its
/// `Invoke…Error` type with the message as `args.description`, which Dify shows the user. Never
/// put a credential in the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// The provider could not be reached (DNS, connect, TLS, a timeout): `InvokeConnectionError`.
    #[error("{0}")]
    Connection(String),
    /// The provider answered 5xx or is overloaded: `InvokeServerUnavailableError`.
    #[error("{0}")]
    ServerUnavailable(String),
    /// The provider answered 429: `InvokeRateLimitError`.
    #[error("{0}")]
    RateLimit(String),
    /// The credentials were refused (401/403): `InvokeAuthorizationError`.
    #[error("{0}")]
    Authorization(String),
    /// The request was refused (400, 404, 422, a context too long): `InvokeBadRequestError`.
    #[error("{0}")]
    BadRequest(String),
}

impl InvokeError {
    /// The error type Dify maps.
    pub fn error_type(&self) -> &'static str {
        match self {
            InvokeError::Connection(_) => "InvokeConnectionError",
            InvokeError::ServerUnavailable(_) => "InvokeServerUnavailableError",
            InvokeError::RateLimit(_) => "InvokeRateLimitError",
            InvokeError::Authorization(_) => "InvokeAuthorizationError",
            InvokeError::BadRequest(_) => "InvokeBadRequestError",
        }
    }

    /// The error an HTTP API's `status` stands for (401/403 authorization, 429 rate limit, 5xx
    /// unavailable, any other bad request), with `message` (the API's own, not the body).
    pub fn from_status(status: u16, message: impl Into<String>) -> InvokeError {
        let message = message.into();
        match status {
            401 | 403 => InvokeError::Authorization(message),
            429 => InvokeError::RateLimit(message),
            500..=599 => InvokeError::ServerUnavailable(message),
            _ => InvokeError::BadRequest(message),
        }
    }
}

impl From<InvokeError> for ErrorData {
    fn from(err: InvokeError) -> Self {
        let mut data = ErrorData::new(err.error_type(), err.to_string());
        data.args.insert("description".to_owned(), Value::String(err.to_string()));
        data
    }
}

/// A refused credential check: `CredentialsValidateFailedError` with `message`, which Dify shows
/// under the form (§4.5).
pub fn credentials_invalid(message: impl Into<String>) -> ErrorData {
    ErrorData::new("CredentialsValidateFailedError", message)
}

/// One model request: its provider, model, model type and credentials, and the action's `input`,
/// which it dereferences to (`request.prompt_messages`).
#[derive(Debug, Clone)]
pub struct ModelRequest<I> {
    /// The provider's name (`provider` in the provider YAML).
    pub provider: String,
    /// The model's name (empty for `validate_provider_credentials`).
    pub model: String,
    /// The model type the request is for (`None` for `validate_provider_credentials`, or a type
    /// this runtime does not know).
    pub model_type: Option<ModelType>,
    /// The provider's (predefined models) or the model's (customizable models) credentials.
    pub credentials: Credentials,
    pub input: I,
}

impl<I> Deref for ModelRequest<I> {
    type Target = I;

    fn deref(&self) -> &I {
        &self.input
    }
}

pub use crate::lenient::NoInput;

/// `tool_choice` of an LLM request: `mode` `auto`, `none`, `required` or `tool` (then `name`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolChoice {
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `invoke_llm` (and `start_polling`): plugin-kinds.md §4.3.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct LlmInput {
    /// `temperature`, `max_tokens`, … as the model's `parameter_rules` name them.
    #[serde(default, deserialize_with = "object_or_null")]
    pub model_parameters: Object,
    #[serde(default, deserialize_with = "or_default")]
    pub prompt_messages: Vec<PromptMessage>,
    #[serde(default, deserialize_with = "or_default")]
    pub tools: Vec<PromptTool>,
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default, deserialize_with = "or_default")]
    pub stop: Vec<String>,
    /// A JSON Schema the answer must follow (structured output), when asked.
    #[serde(default)]
    pub json_schema: Option<Value>,
    /// Whether the caller wants the answer streamed; one chunk is fine either way.
    #[serde(default, deserialize_with = "or_default")]
    pub stream: bool,
}

/// `get_llm_num_tokens`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct NumTokensInput {
    #[serde(default, deserialize_with = "or_default")]
    pub prompt_messages: Vec<PromptMessage>,
    #[serde(default, deserialize_with = "or_default")]
    pub tools: Vec<PromptTool>,
}

/// `check_polling`: the state `start_polling` (or the previous check) returned.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PollingInput {
    #[serde(default, deserialize_with = "object_or_null")]
    pub plugin_state: Object,
}

/// Whether texts are embedded as documents or as a query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingInputType {
    Query,
    #[default]
    #[serde(other)]
    Document,
}

/// `invoke_text_embedding`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TextEmbeddingInput {
    #[serde(default, deserialize_with = "or_default")]
    pub texts: Vec<String>,
    #[serde(default, deserialize_with = "or_default")]
    pub input_type: EmbeddingInputType,
}

/// One multimodal document or query: `content` is text, or an image as a URL or base64 data URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultimodalContent {
    #[serde(default)]
    pub content: String,
    /// `text` or `image`.
    #[serde(default)]
    pub content_type: String,
}

/// `invoke_multimodal_embedding`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct MultimodalEmbeddingInput {
    #[serde(default, deserialize_with = "or_default")]
    pub documents: Vec<MultimodalContent>,
    #[serde(default, deserialize_with = "or_default")]
    pub input_type: EmbeddingInputType,
}

/// `get_text_embedding_num_tokens`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TextsInput {
    #[serde(default, deserialize_with = "or_default")]
    pub texts: Vec<String>,
}

/// `invoke_rerank`: `top_n` 0 and `score_threshold` 0 mean unset (the daemon always sends both).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RerankInput {
    #[serde(default, deserialize_with = "or_default")]
    pub query: String,
    #[serde(default, deserialize_with = "or_default")]
    pub docs: Vec<String>,
    #[serde(default, deserialize_with = "or_default")]
    pub score_threshold: f64,
    #[serde(default, deserialize_with = "or_default")]
    pub top_n: usize,
}

/// `invoke_multimodal_rerank`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MultimodalRerankInput {
    pub query: MultimodalContent,
    #[serde(default, deserialize_with = "or_default")]
    pub docs: Vec<MultimodalContent>,
    #[serde(default, deserialize_with = "or_default")]
    pub score_threshold: f64,
    #[serde(default, deserialize_with = "or_default")]
    pub top_n: usize,
}

/// `invoke_tts`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TtsInput {
    #[serde(default, deserialize_with = "or_default")]
    pub content_text: String,
    #[serde(default, deserialize_with = "or_default")]
    pub voice: String,
    #[serde(default, deserialize_with = "or_default")]
    pub tenant_id: String,
}

/// `get_tts_model_voices`: the voices for `language` (`en-US`…), or all.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct VoicesInput {
    #[serde(default)]
    pub language: Option<String>,
}

/// `invoke_speech2text`: the audio, decoded from the request's hex.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Speech2TextInput {
    #[serde(default, deserialize_with = "hex_bytes")]
    pub file: Vec<u8>,
}

fn hex_bytes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
    hex::decode(text).map_err(|_| serde::de::Error::custom("file is not hex"))
}

/// `invoke_moderation`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ModerationInput {
    #[serde(default, deserialize_with = "or_default")]
    pub text: String,
}

/// A model's `pricing` (plugin-kinds.md §4.2): prices per `unit` tokens, as decimals.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Pricing {
    /// Price per `unit` input tokens.
    pub input: f64,
    /// Price per `unit` output tokens.
    pub output: f64,
    /// The unit multiplier (`0.000001` for prices per million tokens).
    pub unit: f64,
    pub currency: &'static str,
}

impl Pricing {
    /// The `pricing` object of a model declaration (decimals as strings or numbers); `None` when
    /// absent or malformed. Currencies other than USD, EUR and CNY read as USD.
    pub fn from_declaration(model: &Value) -> Option<Pricing> {
        let pricing = model.get("pricing")?;
        let number = |key: &str| match pricing.get(key)? {
            Value::String(text) => text.trim().parse::<f64>().ok(),
            Value::Number(n) => n.as_f64(),
            _ => None,
        };
        let currency = match pricing.get("currency").and_then(Value::as_str) {
            Some("EUR") => "EUR",
            Some("CNY") => "CNY",
            _ => "USD",
        };
        Some(Pricing {
            input: number("input")?,
            output: number("output").unwrap_or(0.0),
            unit: number("unit")?,
            currency,
        })
    }
}

/// A decimal as Dify's `Decimal` fields take it: a string, at most 10 places, no exponent.
fn decimal(value: f64) -> String {
    let text = format!("{:.10}", if value.is_finite() { value } else { 0.0 });
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() || text == "-" { "0".to_owned() } else { text.to_owned() }
}

/// An LLM call's usage, with every field the daemon requires (plugin-kinds.md §4.4): prices are
/// decimals as strings, `latency` in seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub prompt_unit_price: String,
    pub prompt_price_unit: String,
    pub prompt_price: String,
    pub completion_tokens: u64,
    pub completion_unit_price: String,
    pub completion_price_unit: String,
    pub completion_price: String,
    pub total_tokens: u64,
    pub total_price: String,
    pub currency: String,
    /// Seconds from the request to the last chunk.
    pub latency: f64,
}

impl Usage {
    /// The usage of `prompt_tokens` in and `completion_tokens` out at `pricing` (zero prices, USD,
    /// without), `latency` since `started`.
    pub fn new(prompt_tokens: u64, completion_tokens: u64, pricing: Option<&Pricing>, started: Instant) -> Usage {
        let pricing = pricing.copied().unwrap_or(Pricing { currency: "USD", ..Pricing::default() });
        let prompt_price = prompt_tokens as f64 * pricing.input * pricing.unit;
        let completion_price = completion_tokens as f64 * pricing.output * pricing.unit;
        Usage {
            prompt_tokens,
            prompt_unit_price: decimal(pricing.input),
            prompt_price_unit: decimal(pricing.unit),
            prompt_price: decimal(prompt_price),
            completion_tokens,
            completion_unit_price: decimal(pricing.output),
            completion_price_unit: decimal(pricing.unit),
            completion_price: decimal(completion_price),
            // Counts come from the provider's answer: a hostile one must not wrap them.
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            total_price: decimal(prompt_price + completion_price),
            currency: pricing.currency.to_owned(),
            latency: started.elapsed().as_secs_f64(),
        }
    }
}

/// One `LLMResultChunk` (plugin-kinds.md §4.4), built so the daemon accepts it: `content` is never
/// `null` (`""` for a chunk that carries only tool calls or the end), `role` is `assistant`,
/// `usage` is complete when present. [`LlmOutput`] fills `model` and `index`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LlmChunk {
    /// The text piece (may be empty).
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    /// On the last chunk.
    pub usage: Option<Usage>,
    /// On the last chunk (`stop`, `length`, `tool_calls`, …).
    pub finish_reason: Option<String>,
}

impl LlmChunk {
    /// A text piece.
    pub fn text(text: impl Into<String>) -> Self {
        LlmChunk { text: text.into(), ..LlmChunk::default() }
    }

    /// Complete tool calls (content `""`).
    pub fn tool_calls(calls: Vec<ToolCall>) -> Self {
        LlmChunk { tool_calls: calls, ..LlmChunk::default() }
    }

    /// The last chunk: `finish_reason` and `usage`.
    pub fn finish(finish_reason: impl Into<String>, usage: Usage) -> Self {
        LlmChunk { finish_reason: Some(finish_reason.into()), usage: Some(usage), ..LlmChunk::default() }
    }

    fn to_json(&self, model: &str, index: u64, system_fingerprint: Option<&str>) -> Value {
        json!({
            "model": model,
            "system_fingerprint": system_fingerprint,
            "prompt_messages": [],
            "delta": {
                "index": index,
                "message": {"role": "assistant", "content": self.text, "name": null, "tool_calls": self.tool_calls},
                "usage": self.usage,
                "finish_reason": self.finish_reason,
            },
        })
    }
}

/// Where an LLM streams its answer: each [`send`](Self::send) is one `stream` chunk, written when
/// the daemon's pipe takes it (a slow reader slows the model, memory stays bounded).
#[derive(Debug, Clone)]
pub struct LlmOutput {
    session: Session,
    model: Arc<str>,
    index: u64,
    system_fingerprint: Option<String>,
}

impl LlmOutput {
    /// Sets the `system_fingerprint` of the chunks sent after this.
    pub fn set_system_fingerprint(&mut self, fingerprint: impl Into<String>) {
        self.system_fingerprint = Some(fingerprint.into());
    }

    /// Sends `chunk` (`delta.index` counts from 0).
    ///
    /// Errors: `OutputTooLargeError` for a chunk over the line limit, or when the output is closed.
    pub async fn send(&mut self, chunk: LlmChunk) -> Result<(), ErrorData> {
        let value = chunk.to_json(&self.model, self.index, self.system_fingerprint.as_deref());
        self.index += 1;
        stream_value(&self.session, &value).await.map_err(ErrorData::from)
    }

    /// Sends a text piece.
    ///
    /// Errors: as [`send`](Self::send).
    pub async fn text(&mut self, text: impl Into<String>) -> Result<(), ErrorData> {
        self.send(LlmChunk::text(text)).await
    }

    /// The session (model plugins cannot call back into Dify, §4.6; it serves `log`).
    pub fn session(&self) -> &Session {
        &self.session
    }
}

async fn stream_value(session: &Session, value: &impl Serialize) -> Result<(), StreamError> {
    let raw = serde_json::value::to_raw_value(value).map_err(|_| StreamError::Closed)?;
    session.stream(&raw).await
}

/// The result of `start_polling`/`check_polling` (plugin-kinds.md §4.7).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum PollingResult {
    /// Still running: the state the next `check_polling` gets (at least one key).
    Running {
        plugin_state: Object,
        #[serde(skip_serializing_if = "Option::is_none")]
        next_check_after_seconds: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        expires_after_seconds: Option<u64>,
    },
    /// Done: the whole answer, as one `LLMResult` (`{model, message, usage, …}`).
    Succeeded { result: Value },
    /// Failed, with a message.
    Failed { error: String },
}

/// Token usage of an embedding call (all fields required, §4.4).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbeddingUsage {
    pub tokens: u64,
    pub total_tokens: u64,
    pub unit_price: String,
    pub price_unit: String,
    pub total_price: String,
    pub currency: String,
    /// Seconds.
    pub latency: f64,
}

impl EmbeddingUsage {
    /// The usage of `tokens` at `pricing` (its `input` price), `latency` since `started`.
    pub fn new(tokens: u64, pricing: Option<&Pricing>, started: Instant) -> Self {
        let pricing = pricing.copied().unwrap_or(Pricing { currency: "USD", ..Pricing::default() });
        EmbeddingUsage {
            tokens,
            total_tokens: tokens,
            unit_price: decimal(pricing.input),
            price_unit: decimal(pricing.unit),
            total_price: decimal(tokens as f64 * pricing.input * pricing.unit),
            currency: pricing.currency.to_owned(),
            latency: started.elapsed().as_secs_f64(),
        }
    }
}

/// `invoke_text_embedding`'s answer: one vector per text, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbeddingResult {
    pub model: String,
    pub embeddings: Vec<Vec<f32>>,
    pub usage: EmbeddingUsage,
}

/// One reranked document: its position in the request's `docs`, its text, its score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RerankDocument {
    pub index: usize,
    pub text: String,
    pub score: f64,
}

/// `invoke_rerank`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RerankResult {
    pub model: String,
    pub docs: Vec<RerankDocument>,
}

impl RerankResult {
    /// `docs` sorted by score (highest first), without those under `score_threshold` (when > 0),
    /// at most `top_n` (when > 0), as the request asks.
    pub fn new(model: impl Into<String>, mut docs: Vec<RerankDocument>, input: &RerankInput) -> Self {
        docs.sort_by(|a, b| b.score.total_cmp(&a.score));
        if input.score_threshold > 0.0 {
            docs.retain(|d| d.score >= input.score_threshold);
        }
        if input.top_n > 0 {
            docs.truncate(input.top_n);
        }
        RerankResult { model: model.into(), docs }
    }
}

/// A TTS voice: its display `name` and the `value` requests carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Voice {
    pub name: String,
    pub value: String,
}

/// Audio bytes per TTS chunk (hex doubles them on the wire).
pub const TTS_CHUNK: usize = 32 * 1024;

/// Where a TTS model streams its audio: bytes in any pieces, sent as `{"result":hex,"mime_type"}`
/// chunks of at most [`TTS_CHUNK`] bytes each.
#[derive(Debug, Clone)]
pub struct TtsOutput {
    session: Session,
    mime_type: String,
}

impl TtsOutput {
    /// Sets the audio's MIME type (default `audio/mpeg`).
    pub fn set_mime_type(&mut self, mime_type: impl Into<String>) {
        self.mime_type = mime_type.into();
    }

    /// Sends `audio`.
    ///
    /// Errors: `OutputTooLargeError` when the output is closed.
    pub async fn send(&self, audio: &[u8]) -> Result<(), ErrorData> {
        for piece in audio.chunks(TTS_CHUNK) {
            let chunk = json!({"result": hex::encode(piece), "mime_type": self.mime_type});
            stream_value(&self.session, &chunk).await?;
        }
        Ok(())
    }

    pub fn session(&self) -> &Session {
        &self.session
    }
}

/// A token count by the common estimate of four characters per token (what a plugin without
/// the model's tokenizer answers; the Python SDK uses GPT-2's).
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// The estimate of [`estimate_tokens`] for a prompt: 3 per message plus its text, plus the tools'
/// JSON.
pub fn estimate_prompt_tokens(messages: &[PromptMessage], tools: &[PromptTool]) -> u64 {
    let messages: u64 = messages.iter().map(|m| 3 + estimate_tokens(&m.text_content())).sum();
    let tools = if tools.is_empty() { 0 } else { estimate_tokens(&serde_json::to_string(tools).unwrap_or_default()) };
    messages + tools
}

/// The model provider itself: credential checks and schemas (plugin-kinds.md §4.1–4.2).
pub trait ModelProvider: Send + Sync + 'static {
    /// Checks the provider's credentials (predefined models). `Ok` answers `{"result":true}` with
    /// the credentials Dify stores (merged into what it has: return the input, normalised);
    /// refuse with [`credentials_invalid`].
    fn validate_provider_credentials(
        &self,
        request: ModelRequest<NoInput>,
        session: &Session,
    ) -> impl Future<Output = Result<Object, ErrorData>> + Send;

    /// Checks one model's credentials (customizable models; `request.model_type` says which).
    /// Default: accepted as they are.
    fn validate_model_credentials(
        &self,
        request: ModelRequest<NoInput>,
        session: &Session,
    ) -> impl Future<Output = Result<Object, ErrorData>> + Send {
        let _ = session;
        async move { Ok(request.credentials.values) }
    }

    /// The schema of `request.model` (a `ModelDeclaration` as JSON, §4.2), or `None`.
    /// `declared` is the model's own declaration when the plugin declares it (predefined); the
    /// default answers that. A customizable model builds its schema from its credentials. The
    /// answer is checked by the daemon's rules before it is sent.
    fn model_schema(
        &self,
        request: ModelRequest<NoInput>,
        declared: Option<&Value>,
        session: &Session,
    ) -> impl Future<Output = Result<Option<Value>, ErrorData>> + Send {
        let _ = (request, session);
        let declared = declared.cloned();
        async move { Ok(declared) }
    }
}

/// An LLM (`invoke_llm`, `get_llm_num_tokens`, polling).
pub trait LargeLanguageModel: Send + Sync + 'static {
    /// Answers the prompt through `out`: text pieces as they come, tool calls, and last a chunk
    /// with `finish_reason` and [`Usage`] ([`LlmChunk::finish`]). A non-streamed request may get
    /// it all in one chunk.
    fn invoke(
        &self,
        request: ModelRequest<LlmInput>,
        out: LlmOutput,
    ) -> impl Future<Output = Result<(), ErrorData>> + Send;

    /// The prompt's tokens. Default: [`estimate_prompt_tokens`].
    fn num_tokens(&self, request: ModelRequest<NumTokensInput>) -> impl Future<Output = Result<u64, ErrorData>> + Send {
        async move { Ok(estimate_prompt_tokens(&request.prompt_messages, &request.tools)) }
    }

    /// Starts a polled call (models with the `polling` feature, §4.7). Default: not served.
    fn start_polling(
        &self,
        request: ModelRequest<LlmInput>,
    ) -> impl Future<Output = Result<PollingResult, ErrorData>> + Send {
        let _ = request;
        async { Err(not_served("start_polling")) }
    }

    /// Checks a polled call. Default: not served.
    fn check_polling(
        &self,
        request: ModelRequest<PollingInput>,
    ) -> impl Future<Output = Result<PollingResult, ErrorData>> + Send {
        let _ = request;
        async { Err(not_served("check_polling")) }
    }
}

/// A text-embedding model.
pub trait TextEmbeddingModel: Send + Sync + 'static {
    fn invoke(
        &self,
        request: ModelRequest<TextEmbeddingInput>,
    ) -> impl Future<Output = Result<EmbeddingResult, ErrorData>> + Send;

    /// Multimodal documents. Default: not served.
    fn invoke_multimodal(
        &self,
        request: ModelRequest<MultimodalEmbeddingInput>,
    ) -> impl Future<Output = Result<EmbeddingResult, ErrorData>> + Send {
        let _ = request;
        async { Err(not_served("invoke_multimodal_embedding")) }
    }

    /// Tokens per text, in order. Default: [`estimate_tokens`] of each.
    fn num_tokens(
        &self,
        request: ModelRequest<TextsInput>,
    ) -> impl Future<Output = Result<Vec<u64>, ErrorData>> + Send {
        async move { Ok(request.texts.iter().map(|t| estimate_tokens(t)).collect()) }
    }
}

/// A rerank model.
pub trait RerankModel: Send + Sync + 'static {
    /// Build the answer with [`RerankResult::new`], which applies `top_n` and `score_threshold`.
    fn invoke(
        &self,
        request: ModelRequest<RerankInput>,
    ) -> impl Future<Output = Result<RerankResult, ErrorData>> + Send;

    /// Multimodal documents. Default: not served.
    fn invoke_multimodal(
        &self,
        request: ModelRequest<MultimodalRerankInput>,
    ) -> impl Future<Output = Result<RerankResult, ErrorData>> + Send {
        let _ = request;
        async { Err(not_served("invoke_multimodal_rerank")) }
    }
}

/// A text-to-speech model.
pub trait TtsModel: Send + Sync + 'static {
    /// Streams the audio of `content_text` through `out`.
    fn invoke(
        &self,
        request: ModelRequest<TtsInput>,
        out: TtsOutput,
    ) -> impl Future<Output = Result<(), ErrorData>> + Send;

    /// The voices for `request.language`. Default: the declared model's `model_properties.voices`
    /// (`mode` is the value), filtered by language ([`declared_voices`]).
    fn voices(
        &self,
        request: ModelRequest<VoicesInput>,
        declared: Option<&Value>,
    ) -> impl Future<Output = Result<Vec<Voice>, ErrorData>> + Send {
        let voices = declared.map(|model| declared_voices(model, request.language.as_deref())).unwrap_or_default();
        async move { Ok(voices) }
    }
}

/// A speech-to-text model: the transcript of `request.file`.
pub trait Speech2TextModel: Send + Sync + 'static {
    fn invoke(&self, request: ModelRequest<Speech2TextInput>)
    -> impl Future<Output = Result<String, ErrorData>> + Send;
}

/// A moderation model: `true` when the text is flagged (unsafe), §4.4.
pub trait ModerationModel: Send + Sync + 'static {
    fn invoke(&self, request: ModelRequest<ModerationInput>) -> impl Future<Output = Result<bool, ErrorData>> + Send;
}

/// The voices a TTS model declares (`model_properties.voices`: `{mode, name, language}`), those
/// speaking `language` when given.
pub fn declared_voices(model: &Value, language: Option<&str>) -> Vec<Voice> {
    let voices = model.pointer("/model_properties/voices").and_then(Value::as_array);
    voices
        .into_iter()
        .flatten()
        .filter(|voice| match language.filter(|l| !l.is_empty()) {
            None => true,
            Some(language) => {
                voice["language"].as_array().is_some_and(|ls| ls.iter().any(|l| l.as_str() == Some(language)))
            }
        })
        .filter_map(|voice| {
            Some(Voice { name: voice["name"].as_str()?.to_owned(), value: voice["mode"].as_str()?.to_owned() })
        })
        .collect()
}

fn not_served(what: &str) -> ErrorData {
    ErrorData::new("NotImplementedError", format!("{what} is not served by this model provider"))
}

// Object-safe forms of the traits, so one plugin holds any mix.

trait DynProvider: Send + Sync + 'static {
    fn validate_provider<'a>(
        &'a self,
        r: ModelRequest<NoInput>,
        s: &'a Session,
    ) -> BoxFuture<'a, Result<Object, ErrorData>>;
    fn validate_model<'a>(
        &'a self,
        r: ModelRequest<NoInput>,
        s: &'a Session,
    ) -> BoxFuture<'a, Result<Object, ErrorData>>;
    fn schema<'a>(
        &'a self,
        r: ModelRequest<NoInput>,
        declared: Option<&'a Value>,
        s: &'a Session,
    ) -> BoxFuture<'a, Result<Option<Value>, ErrorData>>;
}

impl<P: ModelProvider> DynProvider for P {
    fn validate_provider<'a>(
        &'a self,
        r: ModelRequest<NoInput>,
        s: &'a Session,
    ) -> BoxFuture<'a, Result<Object, ErrorData>> {
        Box::pin(self.validate_provider_credentials(r, s))
    }
    fn validate_model<'a>(
        &'a self,
        r: ModelRequest<NoInput>,
        s: &'a Session,
    ) -> BoxFuture<'a, Result<Object, ErrorData>> {
        Box::pin(self.validate_model_credentials(r, s))
    }
    fn schema<'a>(
        &'a self,
        r: ModelRequest<NoInput>,
        declared: Option<&'a Value>,
        s: &'a Session,
    ) -> BoxFuture<'a, Result<Option<Value>, ErrorData>> {
        Box::pin(self.model_schema(r, declared, s))
    }
}

trait DynLlm: Send + Sync + 'static {
    fn invoke(&self, r: ModelRequest<LlmInput>, out: LlmOutput) -> BoxFuture<'_, Result<(), ErrorData>>;
    fn num_tokens(&self, r: ModelRequest<NumTokensInput>) -> BoxFuture<'_, Result<u64, ErrorData>>;
    fn start_polling(&self, r: ModelRequest<LlmInput>) -> BoxFuture<'_, Result<PollingResult, ErrorData>>;
    fn check_polling(&self, r: ModelRequest<PollingInput>) -> BoxFuture<'_, Result<PollingResult, ErrorData>>;
}

impl<M: LargeLanguageModel> DynLlm for M {
    fn invoke(&self, r: ModelRequest<LlmInput>, out: LlmOutput) -> BoxFuture<'_, Result<(), ErrorData>> {
        Box::pin(LargeLanguageModel::invoke(self, r, out))
    }
    fn num_tokens(&self, r: ModelRequest<NumTokensInput>) -> BoxFuture<'_, Result<u64, ErrorData>> {
        Box::pin(LargeLanguageModel::num_tokens(self, r))
    }
    fn start_polling(&self, r: ModelRequest<LlmInput>) -> BoxFuture<'_, Result<PollingResult, ErrorData>> {
        Box::pin(LargeLanguageModel::start_polling(self, r))
    }
    fn check_polling(&self, r: ModelRequest<PollingInput>) -> BoxFuture<'_, Result<PollingResult, ErrorData>> {
        Box::pin(LargeLanguageModel::check_polling(self, r))
    }
}

trait DynEmbedding: Send + Sync + 'static {
    fn invoke(&self, r: ModelRequest<TextEmbeddingInput>) -> BoxFuture<'_, Result<EmbeddingResult, ErrorData>>;
    fn invoke_multimodal(
        &self,
        r: ModelRequest<MultimodalEmbeddingInput>,
    ) -> BoxFuture<'_, Result<EmbeddingResult, ErrorData>>;
    fn num_tokens(&self, r: ModelRequest<TextsInput>) -> BoxFuture<'_, Result<Vec<u64>, ErrorData>>;
}

impl<M: TextEmbeddingModel> DynEmbedding for M {
    fn invoke(&self, r: ModelRequest<TextEmbeddingInput>) -> BoxFuture<'_, Result<EmbeddingResult, ErrorData>> {
        Box::pin(TextEmbeddingModel::invoke(self, r))
    }
    fn invoke_multimodal(
        &self,
        r: ModelRequest<MultimodalEmbeddingInput>,
    ) -> BoxFuture<'_, Result<EmbeddingResult, ErrorData>> {
        Box::pin(TextEmbeddingModel::invoke_multimodal(self, r))
    }
    fn num_tokens(&self, r: ModelRequest<TextsInput>) -> BoxFuture<'_, Result<Vec<u64>, ErrorData>> {
        Box::pin(TextEmbeddingModel::num_tokens(self, r))
    }
}

trait DynRerank: Send + Sync + 'static {
    fn invoke(&self, r: ModelRequest<RerankInput>) -> BoxFuture<'_, Result<RerankResult, ErrorData>>;
    fn invoke_multimodal(
        &self,
        r: ModelRequest<MultimodalRerankInput>,
    ) -> BoxFuture<'_, Result<RerankResult, ErrorData>>;
}

impl<M: RerankModel> DynRerank for M {
    fn invoke(&self, r: ModelRequest<RerankInput>) -> BoxFuture<'_, Result<RerankResult, ErrorData>> {
        Box::pin(RerankModel::invoke(self, r))
    }
    fn invoke_multimodal(
        &self,
        r: ModelRequest<MultimodalRerankInput>,
    ) -> BoxFuture<'_, Result<RerankResult, ErrorData>> {
        Box::pin(RerankModel::invoke_multimodal(self, r))
    }
}

trait DynTts: Send + Sync + 'static {
    fn invoke(&self, r: ModelRequest<TtsInput>, out: TtsOutput) -> BoxFuture<'_, Result<(), ErrorData>>;
    fn voices<'a>(
        &'a self,
        r: ModelRequest<VoicesInput>,
        declared: Option<&'a Value>,
    ) -> BoxFuture<'a, Result<Vec<Voice>, ErrorData>>;
}

impl<M: TtsModel> DynTts for M {
    fn invoke(&self, r: ModelRequest<TtsInput>, out: TtsOutput) -> BoxFuture<'_, Result<(), ErrorData>> {
        Box::pin(TtsModel::invoke(self, r, out))
    }
    fn voices<'a>(
        &'a self,
        r: ModelRequest<VoicesInput>,
        declared: Option<&'a Value>,
    ) -> BoxFuture<'a, Result<Vec<Voice>, ErrorData>> {
        Box::pin(TtsModel::voices(self, r, declared))
    }
}

trait DynSpeech2Text: Send + Sync + 'static {
    fn invoke(&self, r: ModelRequest<Speech2TextInput>) -> BoxFuture<'_, Result<String, ErrorData>>;
}

impl<M: Speech2TextModel> DynSpeech2Text for M {
    fn invoke(&self, r: ModelRequest<Speech2TextInput>) -> BoxFuture<'_, Result<String, ErrorData>> {
        Box::pin(Speech2TextModel::invoke(self, r))
    }
}

trait DynModeration: Send + Sync + 'static {
    fn invoke(&self, r: ModelRequest<ModerationInput>) -> BoxFuture<'_, Result<bool, ErrorData>>;
}

impl<M: ModerationModel> DynModeration for M {
    fn invoke(&self, r: ModelRequest<ModerationInput>) -> BoxFuture<'_, Result<bool, ErrorData>> {
        Box::pin(ModerationModel::invoke(self, r))
    }
}

/// A [`Plugin`] serving one model provider: its name, the [`ModelProvider`], one model per type
/// it supports, and (optionally) its declaration, whose predefined models answer schemas, prices
/// and voices.
///
/// ```
/// use dify_plugin::model::{ModelPlugin, ModelProvider, ModelRequest, NoInput, Object};
/// use dify_plugin::{ErrorData, Session};
///
/// struct Provider;
/// impl ModelProvider for Provider {
///     async fn validate_provider_credentials(
///         &self,
///         request: ModelRequest<NoInput>,
///         _session: &Session,
///     ) -> Result<Object, ErrorData> {
///         Ok(request.credentials.values)
///     }
/// }
/// let plugin = ModelPlugin::new("my_provider", Provider); // then .llm(…), .text_embedding(…)
/// # let _ = plugin;
/// ```
pub struct ModelPlugin {
    name: String,
    provider: Box<dyn DynProvider>,
    llm: Option<Box<dyn DynLlm>>,
    embedding: Option<Box<dyn DynEmbedding>>,
    rerank: Option<Box<dyn DynRerank>>,
    tts: Option<Box<dyn DynTts>>,
    speech2text: Option<Box<dyn DynSpeech2Text>>,
    moderation: Option<Box<dyn DynModeration>>,
    /// The declared predefined models by (type, name).
    declared: HashMap<(ModelType, String), Value>,
}

impl ModelPlugin {
    /// A plugin for provider `name` (the provider YAML's `provider`).
    pub fn new(name: impl Into<String>, provider: impl ModelProvider) -> Self {
        ModelPlugin {
            name: name.into(),
            provider: Box::new(provider),
            llm: None,
            embedding: None,
            rerank: None,
            tts: None,
            speech2text: None,
            moderation: None,
            declared: HashMap::new(),
        }
    }

    /// Serves `llm` models with `model`.
    #[must_use]
    pub fn llm(mut self, model: impl LargeLanguageModel) -> Self {
        self.llm = Some(Box::new(model));
        self
    }

    /// Serves `text-embedding` (and multimodal embedding) models with `model`.
    #[must_use]
    pub fn text_embedding(mut self, model: impl TextEmbeddingModel) -> Self {
        self.embedding = Some(Box::new(model));
        self
    }

    /// Serves `rerank` (and multimodal rerank) models with `model`.
    #[must_use]
    pub fn rerank(mut self, model: impl RerankModel) -> Self {
        self.rerank = Some(Box::new(model));
        self
    }

    /// Serves `tts` models with `model`.
    #[must_use]
    pub fn tts(mut self, model: impl TtsModel) -> Self {
        self.tts = Some(Box::new(model));
        self
    }

    /// Serves `speech2text` models with `model`.
    #[must_use]
    pub fn speech2text(mut self, model: impl Speech2TextModel) -> Self {
        self.speech2text = Some(Box::new(model));
        self
    }

    /// Serves `moderation` models with `model`.
    #[must_use]
    pub fn moderation(mut self, model: impl ModerationModel) -> Self {
        self.moderation = Some(Box::new(model));
        self
    }

    /// Takes the predefined models of the provider named like this plugin from `declaration`
    /// (as `build` inlines them): they answer `get_ai_model_schemas` and TTS voices by default,
    /// and [`declared_model`](Self::declared_model) gives a model its own pricing.
    #[must_use]
    pub fn declaration(mut self, declaration: &Declaration) -> Self {
        let provider = declaration
            .providers_of(ProviderKind::Model)
            .find(|p| p.get("provider").and_then(Value::as_str) == Some(self.name.as_str()));
        for model in provider.and_then(|p| p["models"].as_array()).into_iter().flatten() {
            let kind = model["model_type"].as_str().and_then(ModelType::parse);
            if let (Some(kind), Some(name)) = (kind, model["model"].as_str()) {
                self.declared.insert((kind, name.to_owned()), model.clone());
            }
        }
        self
    }

    /// The declaration of predefined model `name` of `kind`, if declared.
    pub fn declared_model(&self, kind: ModelType, name: &str) -> Option<&Value> {
        self.declared.get(&(kind, name.to_owned()))
    }

    /// Every declared model's declaration, keyed by type and name (a model handler can keep a
    /// copy for its prices).
    pub fn declared_models(&self) -> &HashMap<(ModelType, String), Value> {
        &self.declared
    }

    fn unserved(&self, kind: Option<ModelType>) -> ErrorData {
        let kind = kind.map_or("(none)", ModelType::as_str);
        ErrorData::new("NotImplementedError", format!("model type {kind} is not served by provider `{}`", self.name))
    }

    async fn serve(&self, request: &Request, session: &Session) -> Reply {
        let data: Value = request.parse().map_err(shape)?;
        let provider = data.get("provider").and_then(Value::as_str).unwrap_or_default();
        if provider != self.name {
            return Err(ErrorData::new(
                "ValueError",
                format!("Provider `{}` not found", crate::wire::truncate(provider, 128)),
            ));
        }
        let action = request.action().cloned();
        match action {
            Some(Action::ValidateProviderCredentials) => {
                let credentials = self.provider.validate_provider(model_request(&data)?, session).await?;
                reply(&json!({"result": true, "credentials": credentials}))
            }
            Some(Action::ValidateModelCredentials) => {
                let credentials = self.provider.validate_model(model_request(&data)?, session).await?;
                reply(&json!({"result": true, "credentials": credentials}))
            }
            Some(Action::GetAiModelSchemas) => {
                let request: ModelRequest<NoInput> = model_request(&data)?;
                let declared = request.model_type.and_then(|k| self.declared_model(k, &request.model));
                let schema = self.provider.schema(request, declared, session).await?;
                if let Some(schema) = &schema {
                    check_schema(schema)?;
                }
                reply(&json!({ "model_schema": schema }))
            }
            Some(Action::InvokeLlm) => {
                let llm = self.llm.as_deref().ok_or_else(|| self.unserved(Some(ModelType::Llm)))?;
                let request: ModelRequest<LlmInput> = model_request(&data)?;
                let out = LlmOutput {
                    session: session.clone(),
                    model: request.model.as_str().into(),
                    index: 0,
                    system_fingerprint: None,
                };
                llm.invoke(request, out).await?;
                session.mark_streamed();
                reply(&Value::Null)
            }
            Some(Action::GetLlmNumTokens) => {
                let llm = self.llm.as_deref().ok_or_else(|| self.unserved(Some(ModelType::Llm)))?;
                reply(&json!({"num_tokens": llm.num_tokens(model_request(&data)?).await?}))
            }
            Some(Action::StartPolling) => {
                let llm = self.llm.as_deref().ok_or_else(|| self.unserved(Some(ModelType::Llm)))?;
                reply(&llm.start_polling(model_request(&data)?).await?)
            }
            Some(Action::CheckPolling) => {
                let llm = self.llm.as_deref().ok_or_else(|| self.unserved(Some(ModelType::Llm)))?;
                reply(&llm.check_polling(model_request(&data)?).await?)
            }
            Some(Action::InvokeTextEmbedding) => {
                let model = self.embedding.as_deref().ok_or_else(|| self.unserved(Some(ModelType::TextEmbedding)))?;
                reply(&model.invoke(model_request(&data)?).await?)
            }
            Some(Action::InvokeMultimodalEmbedding) => {
                let model =
                    self.embedding.as_deref().ok_or_else(|| self.unserved(Some(ModelType::MultimodalEmbedding)))?;
                reply(&model.invoke_multimodal(model_request(&data)?).await?)
            }
            Some(Action::GetTextEmbeddingNumTokens) => {
                let model = self.embedding.as_deref().ok_or_else(|| self.unserved(Some(ModelType::TextEmbedding)))?;
                reply(&json!({"num_tokens": model.num_tokens(model_request(&data)?).await?}))
            }
            Some(Action::InvokeRerank) => {
                let model = self.rerank.as_deref().ok_or_else(|| self.unserved(Some(ModelType::Rerank)))?;
                reply(&model.invoke(model_request(&data)?).await?)
            }
            Some(Action::InvokeMultimodalRerank) => {
                let model = self.rerank.as_deref().ok_or_else(|| self.unserved(Some(ModelType::MultimodalRerank)))?;
                reply(&model.invoke_multimodal(model_request(&data)?).await?)
            }
            Some(Action::InvokeTts) => {
                let model = self.tts.as_deref().ok_or_else(|| self.unserved(Some(ModelType::Tts)))?;
                let out = TtsOutput { session: session.clone(), mime_type: "audio/mpeg".to_owned() };
                model.invoke(model_request(&data)?, out).await?;
                session.mark_streamed();
                reply(&Value::Null)
            }
            Some(Action::GetTtsModelVoices) => {
                let model = self.tts.as_deref().ok_or_else(|| self.unserved(Some(ModelType::Tts)))?;
                let request: ModelRequest<VoicesInput> = model_request(&data)?;
                let declared = self.declared_model(ModelType::Tts, &request.model);
                reply(&json!({"voices": model.voices(request, declared).await?}))
            }
            Some(Action::InvokeSpeech2Text) => {
                let model = self.speech2text.as_deref().ok_or_else(|| self.unserved(Some(ModelType::Speech2Text)))?;
                reply(&json!({"result": model.invoke(model_request(&data)?).await?}))
            }
            Some(Action::InvokeModeration) => {
                let model = self.moderation.as_deref().ok_or_else(|| self.unserved(Some(ModelType::Moderation)))?;
                reply(&json!({"result": model.invoke(model_request(&data)?).await?}))
            }
            other => Err(ErrorData::new(
                "NotImplementedError",
                format!("action {} is not a model action", other.as_ref().map_or("(none)", Action::as_str)),
            )),
        }
    }
}

impl Plugin for ModelPlugin {
    async fn handle(&self, request: Request, session: &Session) -> Reply {
        self.serve(&request, session).await
    }
}

/// A request of the wrong shape, by position only (serde's message may quote a value).
fn shape(err: serde_json::Error) -> ErrorData {
    ErrorData::new(
        "InvalidRequestError",
        format!("the model request has a field of the wrong type (JSON line {}, column {})", err.line(), err.column()),
    )
}

fn model_request<I: DeserializeOwned>(data: &Value) -> Result<ModelRequest<I>, ErrorData> {
    let text = |key: &str| data.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    let input = I::deserialize(data).map_err(|err| {
        ErrorData::new(
            "InvalidRequestError",
            format!("the model request has a field of the wrong type: {}", crate::lenient::expected_of(&err)),
        )
    })?;
    Ok(ModelRequest {
        provider: text("provider"),
        model: text("model"),
        model_type: data.get("model_type").and_then(Value::as_str).and_then(ModelType::parse),
        credentials: Credentials::from_data(data)?,
        input,
    })
}

/// Checks a schema by the daemon's rules before it is sent (the daemon would refuse it with a
/// less helpful `unmarshal_error`).
fn check_schema(schema: &Value) -> Result<(), ErrorData> {
    let mut problems = Vec::new();
    crate::validate::Checker::new("model_schema", &mut problems, &|_| true).model(schema);
    match problems.first() {
        None => Ok(()),
        Some(problem) => Err(ErrorData::new("InvalidModelSchemaError", problem.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_have_no_exponent() {
        assert_eq!(decimal(0.15 * 0.000001 * 10.0), "0.0000015");
        assert_eq!(decimal(0.0), "0");
        assert_eq!(decimal(12.5), "12.5");
        assert_eq!(decimal(f64::NAN), "0");
    }

    #[test]
    fn usage_has_every_field_and_prices_from_pricing() {
        let pricing = Pricing::from_declaration(
            &json!({"pricing": {"input": "0.15", "output": "0.60", "unit": "0.000001", "currency": "USD"}}),
        )
        .unwrap();
        let usage = serde_json::to_value(Usage::new(1000, 500, Some(&pricing), Instant::now())).unwrap();
        for key in [
            "prompt_tokens",
            "prompt_unit_price",
            "prompt_price_unit",
            "prompt_price",
            "completion_tokens",
            "completion_unit_price",
            "completion_price_unit",
            "completion_price",
            "total_tokens",
            "total_price",
            "currency",
            "latency",
        ] {
            assert!(usage.get(key).is_some_and(|v| !v.is_null()), "{key} missing: {usage}");
        }
        assert_eq!(usage["prompt_price"], "0.00015");
        assert_eq!(usage["completion_price"], "0.0003");
        assert_eq!(usage["total_price"], "0.00045");
        assert_eq!(usage["total_tokens"], 1500);
    }

    #[test]
    fn chunks_never_carry_null_content() {
        let chunk =
            LlmChunk::tool_calls(vec![ToolCall::function("c1", "search", &json!({"q": 1}))]).to_json("m", 3, None);
        assert_eq!(chunk["delta"]["message"]["content"], "");
        assert_eq!(chunk["delta"]["index"], 3);
        assert_eq!(chunk["delta"]["message"]["tool_calls"][0]["function"]["arguments"], "{\"q\":1}");
        assert_eq!(chunk["delta"]["message"]["role"], "assistant");
    }

    #[test]
    fn requests_read_leniently_and_errors_do_not_quote_values() {
        let data = json!({"provider": "p", "model": "m", "model_type": "llm", "credentials": null,
            "prompt_messages": [{"role": "user", "content": null}], "tools": null, "stop": null, "stream": true});
        let request: ModelRequest<LlmInput> = model_request(&data).unwrap();
        assert_eq!(request.model_type, Some(ModelType::Llm));
        assert!(request.credentials.values.is_empty());
        assert_eq!(request.prompt_messages[0].content, "");
        assert!(request.stream);
        let data = json!({"provider": "p", "model": "m", "texts": "sk-secret-value"});
        let err = model_request::<TextsInput>(&data).unwrap_err();
        assert_eq!(err.error_type, "InvalidRequestError");
        assert!(!err.message.contains("sk-secret"), "{}", err.message);
        let data = json!({"file": "zz"});
        assert!(model_request::<Speech2TextInput>(&data).is_err());
        let data = json!({"file": "6869"});
        assert_eq!(model_request::<Speech2TextInput>(&data).unwrap().file, b"hi");
    }

    #[test]
    fn rerank_sorts_filters_and_truncates() {
        let docs = vec![
            RerankDocument { index: 0, text: "a".into(), score: 0.2 },
            RerankDocument { index: 1, text: "b".into(), score: 0.9 },
            RerankDocument { index: 2, text: "c".into(), score: 0.5 },
        ];
        let input = RerankInput { score_threshold: 0.3, top_n: 1, ..RerankInput::default() };
        let result = RerankResult::new("r", docs.clone(), &input);
        assert_eq!(result.docs.iter().map(|d| d.index).collect::<Vec<_>>(), [1]);
        let result = RerankResult::new("r", docs, &RerankInput::default());
        assert_eq!(result.docs.iter().map(|d| d.index).collect::<Vec<_>>(), [1, 2, 0]);
    }

    #[test]
    fn invoke_errors_carry_their_description() {
        let err = ErrorData::from(InvokeError::from_status(429, "slow down"));
        assert_eq!(err.error_type, "InvokeRateLimitError");
        assert_eq!(err.args["description"], "slow down");
        assert_eq!(InvokeError::from_status(503, "x").error_type(), "InvokeServerUnavailableError");
        assert_eq!(InvokeError::from_status(401, "x").error_type(), "InvokeAuthorizationError");
        assert_eq!(InvokeError::from_status(422, "x").error_type(), "InvokeBadRequestError");
    }

    #[test]
    fn voices_come_from_the_declaration_by_language() {
        let model = json!({"model_properties": {"voices": [
            {"mode": "alloy", "name": "Alloy", "language": ["en-US", "fr-FR"]},
            {"mode": "echo", "name": "Echo", "language": ["en-US"]}]}});
        assert_eq!(declared_voices(&model, Some("fr-FR")), [Voice { name: "Alloy".into(), value: "alloy".into() }]);
        assert_eq!(declared_voices(&model, None).len(), 2);
        assert_eq!(estimate_tokens("abcdefghi"), 3);
    }
}
