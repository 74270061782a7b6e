/*!
Typed tools (plugin-kinds.md §2): the `invoke_tool` request as a [`ToolRequest`] (provider, tool,
credentials and their type, typed parameters including files) and the answer as [`ToolMessage`]s,
one per `ToolResponseChunk` (§2.3), built only through constructors that cannot produce a chunk
the daemon or Dify rejects:

- variable names are a [`VariableName`], which refuses the reserved `text`, `files`, `json`;
- a streamed variable carries a `&str` piece, never another type (Dify requires strings);
- a blob is always sent as `blob_chunk`s of 8192 raw bytes and an empty final chunk (§2.4), so no
  line nears the daemon's 5 MiB limit;
- `json` takes only objects and arrays.

The `file` type is not offered: Dify replaces its message and needs an internal File object
(§2.3). `image_link` and `binary_link` are what Dify itself produces from `image`; they are
offered for completeness.
*/

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::wire::ErrorData;

/// Raw bytes per `blob_chunk`, as the Python SDK sends them and Dify's merger accepts (§2.4).
pub const BLOB_CHUNK: usize = 8192;

/// How the credentials were obtained (`credential_type`; omitted by the daemon when empty, which
/// the Python SDK reads as `api-key`; DP §2.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CredentialType {
    #[default]
    #[serde(rename = "api-key")]
    ApiKey,
    #[serde(rename = "oauth2")]
    OAuth2,
    #[serde(rename = "unauthorized")]
    Unauthorized,
}

/// A provider's credentials: the `credentials_for_provider` keys (API key) or the
/// `oauth_schema.credentials_schema` keys (OAuth), `null` read as empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Credentials {
    pub values: Map<String, Value>,
    pub kind: CredentialType,
}

impl Credentials {
    /// The credential `name` as a string, if present and a string.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).and_then(Value::as_str)
    }

    /// The credential `name`, required.
    ///
    /// Errors: `ToolProviderCredentialValidationError` naming the missing key.
    pub fn require(&self, name: &str) -> Result<&str, ErrorData> {
        self.get(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            ErrorData::new("ToolProviderCredentialValidationError", format!("credential `{name}` is missing"))
        })
    }

    /// `text` with every credential value of 6 characters or more replaced by `***` (and a
    /// `Bearer …` token after it): for a message from an upstream API before it is shown, as
    /// some APIs quote the key they refused.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for value in self.values.values().filter_map(Value::as_str).filter(|v| v.chars().count() >= 6) {
            out = out.replace(value, "***");
        }
        out
    }

    pub(crate) fn from_data(data: &Value) -> Result<Self, ErrorData> {
        let values = match data.get("credentials") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map.clone(),
            Some(_) => return Err(invalid_request("credentials must be an object")),
        };
        let kind = match data.get("credential_type") {
            None | Some(Value::Null) => CredentialType::default(),
            Some(Value::String(s)) if s.is_empty() => CredentialType::default(),
            Some(other) => serde_json::from_value(other.clone()).map_err(|_| {
                invalid_request(format!("credential_type {other} is not api-key, oauth2 or unauthorized"))
            })?,
        };
        Ok(Credentials { values, kind })
    }
}

fn invalid_request(message: impl Into<String>) -> ErrorData {
    ErrorData::new("InvalidRequestError", message)
}

/// Why a parameter could not be read: `ToolParameterValidationError` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParameterError {
    #[error("missing required parameter `{0}`")]
    Missing(String),
    /// `expected` names the type (`String`, `Vec<ToolEntity>`); `detail` is serde's reason with
    /// the values it quotes left out (a parameter may be a secret).
    #[error("parameter `{name}` is not {expected}: {detail}")]
    Invalid { name: String, expected: String, detail: String },
}

impl From<ParameterError> for ErrorData {
    fn from(err: ParameterError) -> Self {
        ErrorData::new("ToolParameterValidationError", err.to_string())
    }
}

/// `alloc::vec::Vec<dify_plugin::agent::ToolEntity>` as `Vec<ToolEntity>`.
fn short_type_name(full: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    for c in full.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            out.push_str(word.rsplit("::").next().unwrap_or_default());
            word.clear();
            out.push(c);
        }
    }
    out.push_str(word.rsplit("::").next().unwrap_or_default());
    out
}

/// serde's message without the values it quotes (`"…"` strings, `` `…` `` numbers).
fn without_values(message: &str) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    for c in message.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '`' => {
                quote = Some(c);
                out.push('…');
            }
            None => out.push(c),
        }
    }
    out
}

/// A tool's `tool_parameters`, as sent (numbers stay numbers, files are objects).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parameters(pub Map<String, Value>);

impl Parameters {
    /// The raw value of `name` (`null` counts as absent).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    /// `name` decoded as `T`, required.
    ///
    /// Errors: [`ParameterError::Missing`] or [`ParameterError::Invalid`].
    pub fn parse<T: DeserializeOwned>(&self, name: &str) -> Result<T, ParameterError> {
        self.optional(name)?.ok_or_else(|| ParameterError::Missing(name.to_owned()))
    }

    /// `name` decoded as `T`, or None when absent or null.
    ///
    /// Errors: [`ParameterError::Invalid`] when present but not a `T`.
    pub fn optional<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ParameterError> {
        let Some(value) = self.get(name) else { return Ok(None) };
        T::deserialize(value).map(Some).map_err(|err| ParameterError::Invalid {
            name: name.to_owned(),
            expected: short_type_name(std::any::type_name::<T>()),
            detail: without_values(&err.to_string()),
        })
    }

    /// The `file` parameter `name` (an object with `dify_model_identity: "__dify__file__"`, §2.2).
    ///
    /// Errors: missing, or not a Dify file object.
    pub fn file(&self, name: &str) -> Result<ToolFile, ParameterError> {
        let value = self.get(name).ok_or_else(|| ParameterError::Missing(name.to_owned()))?;
        ToolFile::from_value(value).map_err(|err| ParameterError::Invalid {
            name: name.to_owned(),
            expected: "a file".to_owned(),
            detail: err.to_string(),
        })
    }

    /// The `files` parameter `name` (a list of file objects); absent is empty.
    ///
    /// Errors: not a list of Dify file objects.
    pub fn files(&self, name: &str) -> Result<Vec<ToolFile>, ParameterError> {
        let Some(value) = self.get(name) else { return Ok(Vec::new()) };
        let invalid = |detail: String| ParameterError::Invalid {
            name: name.to_owned(),
            expected: "a list of files".to_owned(),
            detail,
        };
        let items = value.as_array().ok_or_else(|| invalid("not a list".to_owned()))?;
        items.iter().map(|item| ToolFile::from_value(item).map_err(|err| invalid(err.to_string()))).collect()
    }
}

/// The identity marker of a Dify file object (`S:file/constants.py`).
pub const FILE_IDENTITY: &str = "__dify__file__";

/// A file handed to a tool: where to download it and what it is.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ToolFile {
    /// A signed URL to download the file from.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub mime_type: Option<String>,
    #[serde(default)]
    pub filename: Option<String>,
    #[serde(default)]
    pub extension: Option<String>,
    /// Size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// Dify's file type (`image`, `document`, `audio`, `video`, `custom`).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

impl ToolFile {
    fn from_value(value: &Value) -> Result<Self, FileError> {
        if value.get("dify_model_identity").and_then(Value::as_str) != Some(FILE_IDENTITY) {
            return Err(FileError::NotAFile);
        }
        ToolFile::deserialize(value).map_err(|err| FileError::Shape { detail: err.to_string() })
    }
}

/// Why a parameter value is not a Dify file object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum FileError {
    #[error("not a Dify file object (dify_model_identity is not {FILE_IDENTITY:?})")]
    NotAFile,
    #[error("{detail}")]
    Shape { detail: String },
}

/// One `invoke_tool` request (plugin-kinds.md §2.2).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolRequest {
    /// The provider's `identity.name`.
    pub provider: String,
    /// The tool's `identity.name`.
    pub tool: String,
    pub credentials: Credentials,
    pub parameters: Parameters,
    /// The Dify user, possibly empty.
    pub user_id: String,
}

impl ToolRequest {
    /// From an `invoke_tool` request's `data`.
    ///
    /// Errors: `InvalidRequestError` when `provider` or `tool` is missing or a field has the
    /// wrong type.
    pub fn from_data(data: &Value) -> Result<Self, ErrorData> {
        let string = |key: &str| data.get(key).and_then(Value::as_str).map(str::to_owned);
        let parameters = match data.get("tool_parameters") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map.clone(),
            Some(_) => return Err(invalid_request("tool_parameters must be an object")),
        };
        Ok(ToolRequest {
            provider: string("provider").ok_or_else(|| invalid_request("invoke_tool needs a string provider"))?,
            tool: string("tool").ok_or_else(|| invalid_request("invoke_tool needs a string tool"))?,
            credentials: Credentials::from_data(data)?,
            parameters: Parameters(parameters),
            user_id: string("user_id").unwrap_or_default(),
        })
    }

    /// Shorthand for `self.parameters.parse(name)`.
    ///
    /// Errors: see [`Parameters::parse`].
    pub fn param<T: DeserializeOwned>(&self, name: &str) -> Result<T, ParameterError> {
        self.parameters.parse(name)
    }
}

/// Why a message could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("variable name `{0}` is reserved: text, files and json are the tool node's own outputs")]
    ReservedVariableName(String),
    #[error("variable name must not be empty")]
    EmptyVariableName,
    #[error("a json message holds an object or an array, not {0}")]
    NotObjectOrArray(&'static str),
    #[error("cannot encode the value: {0}")]
    Encode(String),
}

impl From<MessageError> for ErrorData {
    fn from(err: MessageError) -> Self {
        ErrorData::new("ValueError", err.to_string())
    }
}

/// A variable name that Dify accepts: not empty, not `text`, `files` or `json` (API
/// `VariableMessage.transform_variable_name`, plugin-kinds.md §2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VariableName(String);

impl VariableName {
    /// Checks `name`.
    ///
    /// Errors: [`MessageError::ReservedVariableName`], [`MessageError::EmptyVariableName`].
    pub fn new(name: impl Into<String>) -> Result<Self, MessageError> {
        let name = name.into();
        if name.is_empty() {
            return Err(MessageError::EmptyVariableName);
        }
        if crate::validate::RESERVED_VARIABLE_NAMES.contains(&name.as_str()) {
            return Err(MessageError::ReservedVariableName(name));
        }
        Ok(VariableName(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A log entry's status (`log` messages, §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStatus {
    Start,
    Error,
    Success,
}

/// One entry of a `retriever_resources` message (§2.3); every field optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RetrieverResource {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_source_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retriever_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hit_count: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub word_count: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment_position: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_node_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doc_metadata: Option<Value>,
}

/// The `meta` of a blob: what Dify stores the file as.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BlobMeta {
    /// Default on Dify's side: `application/octet-stream`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

/// One tool output message: a `ToolResponseChunk` `{"type","message","meta"}` (§2.3), or for a
/// blob the sequence of `blob_chunk`s it is sent as (§2.4).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolMessage(Repr);

#[derive(Debug, Clone, PartialEq)]
enum Repr {
    Chunk { kind: &'static str, message: Value },
    Blob { bytes: Vec<u8>, meta: BlobMeta },
}

impl ToolMessage {
    fn chunk(kind: &'static str, message: Value) -> Self {
        ToolMessage(Repr::Chunk { kind, message })
    }

    /// `{"type":"text","message":{"text":…}}`.
    pub fn text(text: impl Into<String>) -> Self {
        ToolMessage::chunk("text", json!({ "text": text.into() }))
    }

    /// `{"type":"json","message":{"json_object":…}}`.
    ///
    /// Errors: `value` is not an object or an array, or cannot be serialised.
    pub fn json(value: &impl Serialize) -> Result<Self, MessageError> {
        let value = serde_json::to_value(value).map_err(|e| MessageError::Encode(e.to_string()))?;
        match value {
            Value::Object(_) | Value::Array(_) => Ok(ToolMessage::chunk("json", json!({ "json_object": value }))),
            Value::Null => Err(MessageError::NotObjectOrArray("null")),
            Value::Bool(_) => Err(MessageError::NotObjectOrArray("a boolean")),
            Value::Number(_) => Err(MessageError::NotObjectOrArray("a number")),
            Value::String(_) => Err(MessageError::NotObjectOrArray("a string")),
        }
    }

    /// `{"type":"link","message":{"text":url}}`.
    pub fn link(url: impl Into<String>) -> Self {
        ToolMessage::chunk("link", json!({ "text": url.into() }))
    }

    /// `{"type":"image","message":{"text":url}}`: Dify downloads the image and stores it.
    pub fn image(url: impl Into<String>) -> Self {
        ToolMessage::chunk("image", json!({ "text": url.into() }))
    }

    /// `{"type":"image_link","message":{"text":url}}` (shown as a link to an image, not downloaded).
    pub fn image_link(url: impl Into<String>) -> Self {
        ToolMessage::chunk("image_link", json!({ "text": url.into() }))
    }

    /// `{"type":"binary_link","message":{"text":url}}`.
    pub fn binary_link(url: impl Into<String>) -> Self {
        ToolMessage::chunk("binary_link", json!({ "text": url.into() }))
    }

    /// A file: sent as `blob_chunk`s of [`BLOB_CHUNK`] bytes (base64) with one `id`, `sequence`
    /// from 0, `total_length` the whole size, then `{"blob":"","end":true}`; `meta` on each (§2.4).
    pub fn blob(bytes: impl Into<Vec<u8>>, meta: BlobMeta) -> Self {
        ToolMessage(Repr::Blob { bytes: bytes.into(), meta })
    }

    /// `{"type":"variable","message":{"variable_name","variable_value","stream":false}}`.
    ///
    /// Errors: `value` cannot be serialised.
    pub fn variable(name: &VariableName, value: &impl Serialize) -> Result<Self, MessageError> {
        let value = serde_json::to_value(value).map_err(|e| MessageError::Encode(e.to_string()))?;
        Ok(ToolMessage::chunk("variable", json!({"variable_name": name.0, "variable_value": value, "stream": false})))
    }

    /// One piece of a streamed variable: `{"variable_name","variable_value":piece,"stream":true}`.
    /// Send the pieces in order under one name; Dify concatenates them (strings only).
    pub fn stream_variable(name: &VariableName, piece: &str) -> Self {
        ToolMessage::chunk("variable", json!({"variable_name": name.0, "variable_value": piece, "stream": true}))
    }

    /// `{"type":"log","message":{"id","label","parent_id","error","status","data","metadata"}}`.
    /// Start an entry with status `Start` and finish it with the same `id` and `Success` or
    /// `Error` ([`LogEntry`] keeps the id).
    pub fn log(entry: &LogEntry, status: LogStatus, data: Value) -> Self {
        let error = if status == LogStatus::Error { entry.error.clone() } else { None };
        ToolMessage::chunk(
            "log",
            json!({
                "id": entry.id, "label": entry.label, "parent_id": entry.parent_id, "error": error,
                "status": status, "data": if data.is_null() { json!({}) } else { data }, "metadata": entry.metadata,
            }),
        )
    }

    /// `{"type":"retriever_resources","message":{"retriever_resources":[…],"context":…}}`.
    pub fn retriever_resources(resources: &[RetrieverResource], context: impl Into<String>) -> Self {
        let resources = serde_json::to_value(resources).unwrap_or(Value::Array(Vec::new()));
        ToolMessage::chunk("retriever_resources", json!({"retriever_resources": resources, "context": context.into()}))
    }

    /// The message as one chunk, a blob whole (`{"type":"blob","message":{"blob":base64}}`): for
    /// datasources, whose blobs Dify does not merge (plugin-kinds.md §6.2).
    pub(crate) fn whole_chunk(&self) -> String {
        match &self.0 {
            Repr::Chunk { kind, message } => chunk_text(kind, message, &Value::Null),
            Repr::Blob { bytes, meta } => {
                let blob = base64::engine::general_purpose::STANDARD.encode(bytes);
                let meta = serde_json::to_value(meta).unwrap_or(Value::Null);
                chunk_text("blob", &json!({ "blob": blob }), &meta)
            }
        }
    }

    /// The chunks this message is sent as, each the JSON text of one `stream` chunk.
    pub fn chunks(&self) -> Vec<String> {
        match &self.0 {
            Repr::Chunk { kind, message } => vec![chunk_text(kind, message, &Value::Null)],
            Repr::Blob { bytes, meta } => {
                let id = blob_id();
                let meta = serde_json::to_value(meta).unwrap_or(Value::Null);
                let total = bytes.len();
                let piece = |sequence: usize, blob: &[u8], end: bool| {
                    let blob = base64::engine::general_purpose::STANDARD.encode(blob);
                    let message =
                        json!({"id": id, "sequence": sequence, "total_length": total, "blob": blob, "end": end});
                    chunk_text("blob_chunk", &message, &meta)
                };
                let mut chunks: Vec<String> =
                    bytes.chunks(BLOB_CHUNK).enumerate().map(|(i, chunk)| piece(i, chunk, false)).collect();
                chunks.push(piece(chunks.len(), &[], true));
                chunks
            }
        }
    }
}

/// `{"type":…,"message":…,"meta":…}` in that order.
fn chunk_text(kind: &str, message: &Value, meta: &Value) -> String {
    #[derive(Serialize)]
    struct Chunk<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        message: &'a Value,
        meta: &'a Value,
    }
    serde_json::to_string(&Chunk { kind, message, meta }).unwrap_or_default()
}

/// A log entry's identity, for [`ToolMessage::log`]: the same `id` for its start and finish.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub id: String,
    pub label: String,
    pub parent_id: Option<String>,
    /// Sent with status `Error`.
    pub error: Option<String>,
    /// Keys `started_at finished_at elapsed_time total_price total_tokens provider currency`.
    pub metadata: Option<Value>,
}

impl LogEntry {
    /// An entry with a fresh id and `label`.
    pub fn new(label: impl Into<String>) -> Self {
        LogEntry { id: blob_id(), label: label.into(), parent_id: None, error: None, metadata: None }
    }

    /// A child of `parent` (the log tree Dify shows).
    #[must_use]
    pub fn child_of(mut self, parent: &LogEntry) -> Self {
        self.parent_id = Some(parent.id.clone());
        self
    }
}

/// 32 hex digits, unique in this process and unpredictable across processes (like a uuid4 hex).
fn blob_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let high = hasher.finish();
    hasher.write_u64(std::process::id().into());
    format!("{high:016x}{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(message: ToolMessage) -> String {
        let chunks = message.chunks();
        assert_eq!(chunks.len(), 1);
        chunks.into_iter().next().unwrap()
    }

    #[test]
    fn parameter_errors_and_redaction_do_not_show_secrets() {
        let parameters = Parameters(serde_json::from_value(json!({"model": "sk-secret-model", "n": 5})).unwrap());
        let err = parameters.parse::<Vec<String>>("model").unwrap_err().to_string();
        assert!(!err.contains("sk-secret"), "{err}");
        assert!(err.contains("Vec<String>") && !err.contains("alloc::"), "{err}");
        let err = parameters.parse::<String>("n").unwrap_err().to_string();
        assert!(!err.contains('5'), "{err}");
        let credentials = Credentials {
            values: serde_json::from_value(json!({"api_key": "sk-SECRET-123", "region": "eu"})).unwrap(),
            kind: CredentialType::ApiKey,
        };
        assert_eq!(credentials.redact("Incorrect key: Bearer sk-SECRET-123 (eu)"), "Incorrect key: Bearer *** (eu)");
    }

    #[test]
    fn exact_shapes() {
        assert_eq!(one(ToolMessage::text("hi")), r#"{"type":"text","message":{"text":"hi"},"meta":null}"#);
        assert_eq!(
            one(ToolMessage::json(&json!({"a": 1})).unwrap()),
            r#"{"type":"json","message":{"json_object":{"a":1}},"meta":null}"#
        );
        assert_eq!(
            one(ToolMessage::link("https://x")),
            r#"{"type":"link","message":{"text":"https://x"},"meta":null}"#
        );
        assert_eq!(
            one(ToolMessage::image("https://i")),
            r#"{"type":"image","message":{"text":"https://i"},"meta":null}"#
        );
        let name = VariableName::new("answer").unwrap();
        assert_eq!(
            one(ToolMessage::variable(&name, &json!([1])).unwrap()),
            r#"{"type":"variable","message":{"stream":false,"variable_name":"answer","variable_value":[1]},"meta":null}"#
        );
        assert_eq!(
            one(ToolMessage::stream_variable(&name, "He")),
            r#"{"type":"variable","message":{"stream":true,"variable_name":"answer","variable_value":"He"},"meta":null}"#
        );
        let entry = LogEntry { id: "l1".into(), label: "step".into(), parent_id: None, error: None, metadata: None };
        assert_eq!(
            one(ToolMessage::log(&entry, LogStatus::Start, Value::Null)),
            r#"{"type":"log","message":{"data":{},"error":null,"id":"l1","label":"step","metadata":null,"parent_id":null,"status":"start"},"meta":null}"#
        );
        let resource = RetrieverResource { position: Some(1), content: Some("c".into()), ..Default::default() };
        assert_eq!(
            one(ToolMessage::retriever_resources(&[resource], "ctx")),
            r#"{"type":"retriever_resources","message":{"context":"ctx","retriever_resources":[{"content":"c","position":1}]},"meta":null}"#
        );
    }

    #[test]
    fn rules_enforced_by_construction() {
        for reserved in ["text", "files", "json"] {
            assert_eq!(VariableName::new(reserved), Err(MessageError::ReservedVariableName(reserved.into())));
        }
        assert_eq!(VariableName::new(""), Err(MessageError::EmptyVariableName));
        assert_eq!(ToolMessage::json(&"s"), Err(MessageError::NotObjectOrArray("a string")));
    }

    #[test]
    fn blobs_are_chunked_with_an_empty_final_chunk() {
        let chunks = ToolMessage::blob(
            vec![1u8; BLOB_CHUNK * 2 + 1],
            BlobMeta { mime_type: Some("a/b".into()), filename: None },
        )
        .chunks();
        assert_eq!(chunks.len(), 4);
        let parsed: Vec<Value> = chunks.iter().map(|c| serde_json::from_str(c).unwrap()).collect();
        let id = parsed[0]["message"]["id"].as_str().unwrap();
        assert_eq!(id.len(), 32);
        for (i, chunk) in parsed.iter().enumerate() {
            assert_eq!(chunk["type"], "blob_chunk");
            assert_eq!(chunk["message"]["id"], id);
            assert_eq!(chunk["message"]["sequence"], i);
            assert_eq!(chunk["message"]["total_length"], BLOB_CHUNK * 2 + 1);
            assert_eq!(chunk["meta"], json!({"mime_type": "a/b"}));
        }
        assert_eq!(parsed[2]["message"]["blob"], "AQ==");
        assert_eq!((&parsed[3]["message"]["blob"], &parsed[3]["message"]["end"]), (&json!(""), &json!(true)));
        assert_ne!(
            ToolMessage::blob(vec![], BlobMeta::default()).chunks()[0],
            ToolMessage::blob(vec![], BlobMeta::default()).chunks()[0]
        );
    }

    #[test]
    fn requests_are_read_leniently() {
        let data = json!({"action": "invoke_tool", "provider": "p", "tool": "t", "credentials": null,
            "tool_parameters": {"n": 3, "f": {"dify_model_identity": "__dify__file__", "url": "https://f", "size": 4}}});
        let request = ToolRequest::from_data(&data).unwrap();
        assert_eq!(request.credentials.kind, CredentialType::ApiKey);
        assert_eq!(request.param::<u32>("n"), Ok(3));
        assert_eq!(request.param::<String>("missing"), Err(ParameterError::Missing("missing".into())));
        assert!(matches!(request.param::<String>("n"), Err(ParameterError::Invalid { .. })));
        assert_eq!(request.parameters.file("f").unwrap().size, Some(4));
        assert!(request.parameters.file("n").is_err());
        let oauth =
            json!({"provider": "p", "tool": "t", "credentials": {"access_tokens": "x"}, "credential_type": "oauth2"});
        assert_eq!(ToolRequest::from_data(&oauth).unwrap().credentials.kind, CredentialType::OAuth2);
        assert_eq!(ToolRequest::from_data(&json!({"tool": "t"})).unwrap_err().error_type, "InvalidRequestError");
    }
}
