//! A model provider plugin mirroring the Python SDK's `openai_compat` and `openai` examples
//! (plugin-kinds.md §4.8): every model type of an OpenAI-compatible HTTP API — chat with streaming
//! and tool calls, embeddings, rerank (the `/rerank` route vLLM, Xinference and Jina serve), speech,
//! transcription, moderation — with predefined models from YAML (globs, `_position.yaml`, prices)
//! and customizable LLMs whose schema is built from their credentials. Its YAML is in
//! `examples/openai_compat/`.
//!
//! Credentials: `api_key`, `endpoint_url` (default `https://api.openai.com/v1`). The tests point
//! `endpoint_url` at the mock API (`crates/openai-mock`) on 127.0.0.1.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    reason = "tests, benchmarks and examples fail loudly"
)]
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dify_plugin::model::{
    EmbeddingResult, EmbeddingUsage, InvokeError, LargeLanguageModel, LlmChunk, LlmInput, LlmOutput, ModelPlugin,
    ModelProvider, ModelRequest, ModelType, ModerationInput, ModerationModel, NoInput, Object, Pricing, PromptMessage,
    RerankDocument, RerankInput, RerankModel, RerankResult, Speech2TextInput, Speech2TextModel, TextEmbeddingInput,
    TextEmbeddingModel, ToolCall, ToolCallFunction, TtsInput, TtsModel, TtsOutput, Usage, credentials_invalid,
    estimate_tokens,
};
use dify_plugin::tool::Credentials;
use dify_plugin::{ErrorData, ProviderKind, ServeOptions, Session};
use serde_json::{Value, json};

const DEFAULT_ENDPOINT: &str = "https://api.openai.com/v1";
/// The longest line of a streamed answer we buffer (a line is one event), and the longest tool call.
const MAX_EVENT: usize = 1 << 20;
/// Tool calls in one answer, at most.
const MAX_TOOL_CALLS: u64 = 128;

/// The HTTP client (one per process) and each predefined model's prices.
struct Api {
    http: reqwest::Client,
    prices: HashMap<String, Pricing>,
}

fn endpoint(credentials: &Credentials) -> String {
    let url = credentials.get("endpoint_url").filter(|u| !u.is_empty()).unwrap_or(DEFAULT_ENDPOINT);
    url.trim_end_matches('/').to_owned()
}

impl Api {
    fn new(prices: HashMap<String, Pricing>) -> Api {
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .build()
            .expect("the HTTP client builds");
        Api { http, prices }
    }

    fn request(&self, method: reqwest::Method, credentials: &Credentials, path: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, format!("{}/{path}", endpoint(credentials)));
        match credentials.get("api_key").filter(|k| !k.is_empty()) {
            Some(key) => builder.bearer_auth(key),
            None => builder,
        }
    }

    /// Sends `builder`; a non-2xx answer becomes the [`InvokeError`] its status stands for, with
    /// the API's own message, `credentials` redacted from it (some APIs quote the key they refuse).
    async fn send(
        &self,
        credentials: &Credentials,
        builder: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, InvokeError> {
        let response = builder.send().await.map_err(|err| {
            let what = if err.is_timeout() { "timed out" } else { "could not connect" };
            InvokeError::Connection(format!("the model API {what}: {}", without_url(&err)))
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body: Value = read_json(response).await.unwrap_or(Value::Null);
        let message = body
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map(|m| credentials.redact(&m.chars().take(300).collect::<String>()))
            .unwrap_or_else(|| format!("the model API answered HTTP {}", status.as_u16()));
        Err(InvokeError::from_status(status.as_u16(), message))
    }

    async fn post_json(&self, credentials: &Credentials, path: &str, body: &Value) -> Result<Value, InvokeError> {
        let response = self
            .send(
                credentials,
                self.request(reqwest::Method::POST, credentials, path)
                    .header("Content-Type", "application/json")
                    .body(serde_json::to_vec(body).unwrap_or_default()),
            )
            .await?;
        read_json(response)
            .await
            .ok_or_else(|| InvokeError::BadRequest(format!("the model API's {path} answer is not JSON")))
    }
}

/// The most of a whole (not streamed) answer we read.
const MAX_BODY: usize = 32 << 20;

/// A response body as JSON (`None` when it cannot be read, is over [`MAX_BODY`], or is not JSON).
async fn read_json(mut response: reqwest::Response) -> Option<Value> {
    let mut body = Vec::new();
    while let Some(piece) = response.chunk().await.ok()? {
        if body.len() + piece.len() > MAX_BODY {
            return None;
        }
        body.extend_from_slice(&piece);
    }
    serde_json::from_slice(&body).ok()
}

/// A transport error's text without its URL (the query could carry a key).
fn without_url(err: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(err);
    let mut text = String::from("request failed");
    while let Some(cause) = source {
        text = cause.to_string();
        source = cause.source();
    }
    text
}

/// The provider: its credentials are checked by listing the API's models.
struct Provider(Arc<Api>);

impl ModelProvider for Provider {
    async fn validate_provider_credentials(
        &self,
        request: ModelRequest<NoInput>,
        _: &Session,
    ) -> Result<Object, ErrorData> {
        let mut credentials = request.credentials.clone();
        if credentials.get("api_key").is_none_or(str::is_empty) {
            return Err(credentials_invalid("an API key is required"));
        }
        let checked = self.0.send(&credentials, self.0.request(reqwest::Method::GET, &credentials, "models")).await;
        checked.map_err(|err| credentials_invalid(err.to_string()))?;
        credentials.values.insert("endpoint_url".into(), Value::String(endpoint(&credentials)));
        Ok(credentials.values)
    }

    async fn validate_model_credentials(
        &self,
        request: ModelRequest<NoInput>,
        _: &Session,
    ) -> Result<Object, ErrorData> {
        let api = &self.0;
        let credentials = &request.credentials;
        let checked = match request.model_type {
            Some(ModelType::Llm) => {
                let body =
                    json!({"model": request.model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 5});
                api.post_json(credentials, "chat/completions", &body).await.map(drop)
            }
            Some(ModelType::TextEmbedding) => {
                let body = json!({"model": request.model, "input": ["ping"]});
                api.post_json(credentials, "embeddings", &body).await.map(drop)
            }
            _ => api.send(credentials, api.request(reqwest::Method::GET, credentials, "models")).await.map(drop),
        };
        checked.map_err(|err| credentials_invalid(err.to_string()))?;
        Ok(request.credentials.values)
    }

    async fn model_schema(
        &self,
        request: ModelRequest<NoInput>,
        declared: Option<&Value>,
        _: &Session,
    ) -> Result<Option<Value>, ErrorData> {
        if let Some(declared) = declared {
            return Ok(Some(declared.clone()));
        }
        if request.model_type != Some(ModelType::Llm) {
            return Ok(None);
        }
        let context_size =
            request.credentials.get("context_size").and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(4096);
        let features: &[&str] = if request.credentials.get("function_calling") == Some("yes") {
            &["tool-call", "multi-tool-call", "stream-tool-call"]
        } else {
            &[]
        };
        Ok(Some(json!({
            "model": request.model,
            "label": {"en_US": request.model},
            "model_type": "llm",
            "fetch_from": "customizable-model",
            "features": features,
            "model_properties": {"mode": "chat", "context_size": context_size},
            "parameter_rules": [
                {"name": "temperature", "use_template": "temperature"},
                {"name": "top_p", "use_template": "top_p"},
                {"name": "max_tokens", "use_template": "max_tokens", "default": 512, "min": 1, "max": context_size},
            ],
        })))
    }
}

/// A prompt message as the chat API takes it.
fn chat_message(message: &PromptMessage) -> Value {
    let content = match &message.content {
        Value::Array(parts) => Value::Array(
            parts
                .iter()
                .filter_map(|part| match part["type"].as_str() {
                    Some("text") => Some(json!({"type": "text", "text": part["data"]})),
                    Some("image") => {
                        let url = part["url"].as_str().filter(|u| !u.is_empty()).map(str::to_owned).or_else(|| {
                            let data = part["base64_data"].as_str()?;
                            Some(format!("data:{};base64,{data}", part["mime_type"].as_str().unwrap_or("image/png")))
                        })?;
                        Some(json!({"type": "image_url", "image_url": {"url": url, "detail": part["detail"].as_str().unwrap_or("auto")}}))
                    }
                    _ => None,
                })
                .collect(),
        ),
        other => other.clone(),
    };
    let mut out = json!({"role": message.role, "content": content});
    if !message.tool_calls.is_empty() {
        out["tool_calls"] = json!(message.tool_calls);
    }
    if let Some(id) = &message.tool_call_id {
        out["tool_call_id"] = json!(id);
    }
    out
}

fn chat_body(model: &str, input: &LlmInput) -> Value {
    let mut body = json!({
        "model": model,
        "messages": input.prompt_messages.iter().map(chat_message).collect::<Vec<_>>(),
        "stream": input.stream,
    });
    if input.stream {
        body["stream_options"] = json!({"include_usage": true});
    }
    for key in ["temperature", "top_p", "max_tokens", "presence_penalty", "frequency_penalty", "seed"] {
        if let Some(value) = input.model_parameters.get(key).filter(|v| !v.is_null()) {
            body[key] = value.clone();
        }
    }
    if let Some(format) = input.model_parameters.get("response_format").and_then(Value::as_str) {
        body["response_format"] = json!({"type": format});
    }
    if !input.tools.is_empty() {
        body["tools"] = input
            .tools
            .iter()
            .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
            .collect();
    }
    if !input.stop.is_empty() {
        body["stop"] = json!(input.stop);
    }
    body
}

/// The chat model.
struct Llm(Arc<Api>);

impl LargeLanguageModel for Llm {
    async fn invoke(&self, request: ModelRequest<LlmInput>, mut out: LlmOutput) -> Result<(), ErrorData> {
        let started = Instant::now();
        let api = &self.0;
        let pricing = api.prices.get(&request.model);
        let body = chat_body(&request.model, &request.input);
        let prompt_estimate = dify_plugin::model::estimate_prompt_tokens(&request.prompt_messages, &request.tools);
        let mut response = api
            .send(
                &request.credentials,
                api.request(reqwest::Method::POST, &request.credentials, "chat/completions")
                    .header("Content-Type", "application/json")
                    .body(serde_json::to_vec(&body).unwrap_or_default()),
            )
            .await?;
        if !request.stream {
            let answer: Value = read_json(response)
                .await
                .ok_or_else(|| InvokeError::BadRequest("the chat answer is not JSON".into()))?;
            let message = &answer["choices"][0]["message"];
            let calls: Vec<ToolCall> = serde_json::from_value(message["tool_calls"].clone()).unwrap_or_default();
            let text = message["content"].as_str().unwrap_or_default().to_owned();
            let usage = usage_of(&answer["usage"], prompt_estimate, estimate_tokens(&text), pricing, started);
            let reason = answer["choices"][0]["finish_reason"].as_str().unwrap_or("stop").to_owned();
            return out
                .send(LlmChunk { text, tool_calls: calls, usage: Some(usage), finish_reason: Some(reason) })
                .await;
        }
        // Server-sent events: `data: {chunk}` lines, `data: [DONE]` last.
        let event_stream = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !event_stream {
            return Err(
                InvokeError::BadRequest("the chat API did not answer a stream (text/event-stream)".into()).into()
            );
        }
        let mut done = false;
        let mut pending: Vec<u8> = Vec::new();
        let mut calls: Vec<ToolCall> = Vec::new();
        let mut reason = String::from("stop");
        let mut api_usage = Value::Null;
        // Characters of the answer, for the token estimate when the API sends no usage.
        let mut completion_chars = 0u64;
        'read: while let Some(bytes) = response
            .chunk()
            .await
            .map_err(|err| InvokeError::Connection(format!("the chat stream broke: {}", without_url(&err))))?
        {
            pending.extend_from_slice(&bytes);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line);
                let Some(data) = line.trim().strip_prefix("data:").map(str::trim) else { continue };
                if data == "[DONE]" {
                    done = true;
                    break 'read;
                }
                let Ok(event) = serde_json::from_str::<Value>(data) else { continue };
                if let Some(fingerprint) = event["system_fingerprint"].as_str() {
                    out.set_system_fingerprint(fingerprint);
                }
                if !event["usage"].is_null() {
                    api_usage = event["usage"].clone();
                }
                let choice = &event["choices"][0];
                if let Some(text) = choice["delta"]["content"].as_str().filter(|t| !t.is_empty()) {
                    completion_chars += text.chars().count() as u64;
                    out.text(text).await?;
                }
                for delta in choice["delta"]["tool_calls"].as_array().into_iter().flatten() {
                    // The API numbers its calls from 0; an index far past them is not a call we
                    // could have been sent in order (and must not size our memory).
                    let Some(index) = delta["index"].as_u64() else {
                        return Err(InvokeError::BadRequest(
                            "the chat stream sent a tool call without an index".into(),
                        )
                        .into());
                    };
                    if index > calls.len() as u64 || index >= MAX_TOOL_CALLS {
                        return Err(InvokeError::BadRequest(format!(
                            "the chat stream sent tool call index {index} out of order"
                        ))
                        .into());
                    }
                    let index = index as usize;
                    if index == calls.len() {
                        calls.push(ToolCall {
                            id: String::new(),
                            kind: "function".into(),
                            function: ToolCallFunction::default(),
                        });
                    }
                    let call = &mut calls[index];
                    if let Some(id) = delta["id"].as_str() {
                        call.id = id.to_owned();
                    }
                    if let Some(name) = delta["function"]["name"].as_str() {
                        call.function.name.push_str(name);
                    }
                    if let Some(arguments) = delta["function"]["arguments"].as_str() {
                        call.function.arguments.push_str(arguments);
                    }
                    if call.function.name.len() + call.function.arguments.len() > MAX_EVENT {
                        return Err(
                            InvokeError::BadRequest("the chat stream sent a tool call over 1 MiB".into()).into()
                        );
                    }
                }
                if let Some(finish) = choice["finish_reason"].as_str() {
                    reason = finish.to_owned();
                }
            }
            if pending.len() > MAX_EVENT {
                return Err(InvokeError::BadRequest("the chat stream sent an event over 1 MiB".into()).into());
            }
        }
        if !done {
            return Err(InvokeError::Connection("the chat stream ended before its [DONE]".into()).into());
        }
        if !calls.is_empty() {
            out.send(LlmChunk::tool_calls(calls)).await?;
        }
        let usage = usage_of(&api_usage, prompt_estimate, completion_chars.div_ceil(4), pricing, started);
        out.send(LlmChunk::finish(reason, usage)).await
    }
}

/// The API's usage when it sent one, else the estimates.
fn usage_of(api: &Value, prompt: u64, completion: u64, pricing: Option<&Pricing>, started: Instant) -> Usage {
    let prompt = api["prompt_tokens"].as_u64().unwrap_or(prompt);
    let completion = api["completion_tokens"].as_u64().unwrap_or(completion);
    Usage::new(prompt, completion, pricing, started)
}

struct Embedding(Arc<Api>);

impl TextEmbeddingModel for Embedding {
    async fn invoke(&self, request: ModelRequest<TextEmbeddingInput>) -> Result<EmbeddingResult, ErrorData> {
        let started = Instant::now();
        let body = json!({"model": request.model, "input": request.texts, "encoding_format": "float"});
        let answer = self.0.post_json(&request.credentials, "embeddings", &body).await?;
        // One vector per text, each index once, each a non-empty list of numbers.
        let mut embeddings: Vec<Option<Vec<f32>>> = vec![None; request.texts.len()];
        for item in answer["data"].as_array().into_iter().flatten() {
            let vector: Option<Vec<f32>> = serde_json::from_value(item["embedding"].clone())
                .ok()
                .filter(|v: &Vec<f32>| !v.is_empty() && v.iter().all(|x| x.is_finite()));
            let slot = item["index"].as_u64().and_then(|i| embeddings.get_mut(i as usize));
            match (slot, vector) {
                (Some(slot @ None), Some(vector)) => *slot = Some(vector),
                _ => {
                    return Err(
                        InvokeError::BadRequest("the API answered a malformed or repeated embedding".into()).into()
                    );
                }
            }
        }
        let embeddings: Vec<Vec<f32>> = embeddings.into_iter().flatten().collect();
        if embeddings.len() != request.texts.len() {
            return Err(InvokeError::BadRequest(format!(
                "the API answered {} embeddings for {} texts",
                embeddings.len(),
                request.texts.len()
            ))
            .into());
        }
        let tokens = answer["usage"]["total_tokens"]
            .as_u64()
            .unwrap_or_else(|| request.texts.iter().map(|t| estimate_tokens(t)).sum());
        Ok(EmbeddingResult {
            model: request.model.clone(),
            embeddings,
            usage: EmbeddingUsage::new(tokens, self.0.prices.get(&request.model), started),
        })
    }
}

struct Rerank(Arc<Api>);

impl RerankModel for Rerank {
    async fn invoke(&self, request: ModelRequest<RerankInput>) -> Result<RerankResult, ErrorData> {
        let mut body = json!({"model": request.model, "query": request.query, "documents": request.docs});
        if request.top_n > 0 {
            body["top_n"] = json!(request.top_n);
        }
        let answer = self.0.post_json(&request.credentials, "rerank", &body).await?;
        // Each result names one of the request's documents, once, with a finite score.
        let mut docs = Vec::new();
        let mut seen = vec![false; request.docs.len()];
        for result in answer["results"].as_array().into_iter().flatten() {
            let index = result["index"].as_u64().map(|i| i as usize).filter(|i| *i < request.docs.len());
            let score = result["relevance_score"].as_f64().filter(|s| s.is_finite());
            match (index, score) {
                (Some(index), Some(score)) if !seen[index] => {
                    seen[index] = true;
                    docs.push(RerankDocument { index, text: request.docs[index].clone(), score });
                }
                _ => {
                    return Err(InvokeError::BadRequest(
                        "the API answered a malformed or repeated rerank result".into(),
                    )
                    .into());
                }
            }
        }
        Ok(RerankResult::new(request.model.clone(), docs, &request.input))
    }
}

struct Speech(Arc<Api>);

impl TtsModel for Speech {
    async fn invoke(&self, request: ModelRequest<TtsInput>, out: TtsOutput) -> Result<(), ErrorData> {
        let body = json!({"model": request.model, "input": request.content_text, "voice": request.voice, "response_format": "mp3"});
        let builder = self
            .0
            .request(reqwest::Method::POST, &request.credentials, "audio/speech")
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(&body).unwrap_or_default());
        let mut response = self.0.send(&request.credentials, builder).await?;
        while let Some(audio) = response
            .chunk()
            .await
            .map_err(|err| InvokeError::Connection(format!("the audio stream broke: {}", without_url(&err))))?
        {
            out.send(&audio).await?;
        }
        Ok(())
    }
}

struct Transcription(Arc<Api>);

impl Speech2TextModel for Transcription {
    async fn invoke(&self, request: ModelRequest<Speech2TextInput>) -> Result<String, ErrorData> {
        // multipart/form-data by hand: two parts, a boundary that cannot occur in the text parts.
        let boundary = "dify-plugin-audio-boundary-7d1c2b";
        let mut body = Vec::with_capacity(request.file.len() + 512);
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n{}\r\n", request.model)
                .as_bytes(),
        );
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"audio.mp3\"\r\nContent-Type: audio/mpeg\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(&request.file);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let builder = self
            .0
            .request(reqwest::Method::POST, &request.credentials, "audio/transcriptions")
            .header("Content-Type", format!("multipart/form-data; boundary={boundary}"))
            .body(body);
        let answer: Value = self
            .0
            .send(&request.credentials, builder)
            .await
            .map(read_json)?
            .await
            .ok_or_else(|| InvokeError::BadRequest("the transcription answer is not JSON".into()))?;
        Ok(answer["text"].as_str().unwrap_or_default().to_owned())
    }
}

struct Moderation(Arc<Api>);

impl ModerationModel for Moderation {
    async fn invoke(&self, request: ModelRequest<ModerationInput>) -> Result<bool, ErrorData> {
        let answer = self
            .0
            .post_json(&request.credentials, "moderations", &json!({"model": request.model, "input": request.text}))
            .await?;
        Ok(answer["results"].as_array().into_iter().flatten().any(|r| r["flagged"].as_bool() == Some(true)))
    }
}

#[tokio::main]
async fn main() -> Result<(), dify_plugin::RunError> {
    let declaration = dify_plugin::build::load(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/openai_compat"))
        .expect("the example's YAML is valid")
        .declaration;
    // Each predefined model's prices, for the usage of its answers.
    let prices = declaration
        .providers_of(ProviderKind::Model)
        .flat_map(|provider| provider["models"].as_array().cloned().unwrap_or_default())
        .filter_map(|model| Some((model["model"].as_str()?.to_owned(), Pricing::from_declaration(&model)?)))
        .collect();
    let api = Arc::new(Api::new(prices));
    let plugin = ModelPlugin::new("openai_compat", Provider(api.clone()))
        .declaration(&declaration)
        .llm(Llm(api.clone()))
        .text_embedding(Embedding(api.clone()))
        .rerank(Rerank(api.clone()))
        .tts(Speech(api.clone()))
        .speech2text(Transcription(api.clone()))
        .moderation(Moderation(api));
    dify_plugin::run(Arc::new(plugin), move || declaration, ServeOptions::default()).await
}
