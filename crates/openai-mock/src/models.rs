//! The model routes an OpenAI-compatible model provider plugin calls (the SDK's `openai_compat`
//! example), with OpenAI's documented shapes and deterministic answers. Paths are under `/v1`;
//! every route needs a project key ([`VALID_KEY`](crate::VALID_KEY) or
//! [`READ_ONLY_KEY`](crate::READ_ONLY_KEY)): no key or an unknown one is 401 `invalid_api_key`, the
//! Admin key 403, in OpenAI's error body `{"error":{"message","type","param","code"}}`.
//!
//! | Call | Answer |
//! | --- | --- |
//! | `GET /models` | `{"object":"list","data":[{id,object:"model",created,owned_by}]}` ([`MODELS`]) |
//! | `GET /models/{id}` | one of them; 404 `model_not_found` for any other id |
//! | `POST /chat/completions` `{model,messages,tools?,stream?,stream_options?}` | `chat.completion`, or with `stream` the `chat.completion.chunk` events as SSE, `[DONE]` last |
//! | `POST /embeddings` `{model,input:str\|[str],dimensions?,encoding_format?}` | `{"object":"list","data":[{object:"embedding",index,embedding}],model,usage:{prompt_tokens,total_tokens}}` |
//! | `POST /rerank` `{model,query,documents:[str\|{text}],top_n?}` | `{model,results:[{index,relevance_score,document:{text}}],usage:{total_tokens}}` (the Jina/Cohere route vLLM and Xinference serve) |
//! | `POST /audio/speech` `{model,input,voice,response_format?}` | `audio/mpeg`: one [`MP3_FRAME_LEN`]-byte MPEG-1 Layer III frame ([`MP3_FRAME_HEADER`], then zeros) per word of `input`, at least one |
//! | `POST /audio/transcriptions` multipart `file`, `model`, `response_format?` | `{"text":"<n> bytes of audio"}`, n the size of `file` in bytes (`text/plain` with `response_format=text`) |
//! | `POST /moderations` `{model?,input:str\|[str]}` | `{id:"modr-mock",model,results:[{flagged,categories:{violence,hate},category_scores:{violence,hate}}]}`, one result per input |
//!
//! Units: tokens are whitespace-separated words (`usage` of chat, embeddings and rerank); `created`
//! is a fixed Unix time in seconds ([`CREATED`]); scores are in 0–1; audio sizes are bytes.
//!
//! Chat: the reply is `Echo: ` and the text of the last user or tool message (a message's text is
//! its string content, or the `text` of its parts joined by spaces). With `tools` and no `tool`
//! message yet, it is instead one call (`id` [`TOOL_CALL_ID`]) of the first tool with arguments
//! `{"query": <last user text>}`, content null and `finish_reason` `tool_calls`. `usage`:
//! `prompt_tokens` the words of every message, `completion_tokens` the words of the reply (1 for a
//! tool call). Streamed (the whole `text/event-stream` body in one answer, events
//! `data: <chunk>\n\n`): a first delta `{role:"assistant",content:""}`, one delta per word of the
//! reply (a word keeps the whitespace after it, so the deltas join to the reply), or the tool call
//! as deltas (the id, type and name with arguments `""`, then the arguments in two pieces), a chunk
//! with an empty delta and `finish_reason`, with `stream_options.include_usage` a chunk with
//! `choices: []` and the usage (the others then carry `"usage": null`), then `data: [DONE]`.
//!
//! Embeddings: 8 floats (or `dimensions`, 1–3072) of unit length, a function of the text alone;
//! `encoding_format` `base64` gives the little-endian `f32`s in base64. Rerank: a document's score
//! is the share of the query's distinct words (case-insensitive) among its words; sorted by score
//! descending (ties by index), cut to `top_n` when it is above 0; `total_tokens` the words of the
//! query and the documents. Moderations: flagged when the input, lower-cased, contains "kill"
//! (violence) or "hate" (hate).
//!
//! The model `mock-rate-limited` answers every route 429 `rate_limit_exceeded`, `mock-unavailable`
//! 503 `server_error`. Malformed requests (no `model`, no `messages`, a multipart body without a
//! `file` part, …) are 400 `invalid_request_error`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use crate::http::{Answer, Recorded, answer, error, invalid, raw};

/// The models `GET /models` lists.
pub const MODELS: [&str; 7] = [
    "gpt-4o-mini",
    "gpt-4.1-nano",
    "text-embedding-3-small",
    "rerank-lite",
    "tts-1",
    "whisper-1",
    "omni-moderation-latest",
];

/// `created` of every object, Unix seconds (a fixed time: answers are deterministic).
pub const CREATED: u64 = 1_733_000_000;

/// The id of the one tool call a chat completion makes.
pub const TOOL_CALL_ID: &str = "call_mock_1";

/// One MPEG-1 Layer III frame: 128 kbit/s, 44.1 kHz, no padding (417 bytes).
pub const MP3_FRAME_LEN: usize = 417;

/// The frame header: sync, MPEG-1 Layer III without CRC, 128 kbit/s, 44.1 kHz, joint stereo.
pub const MP3_FRAME_HEADER: [u8; 4] = [0xFF, 0xFB, 0x90, 0x64];

/// The model whose every call is answered 429 `rate_limit_exceeded`.
pub const RATE_LIMITED_MODEL: &str = "mock-rate-limited";

/// The model whose every call is answered 503.
pub const UNAVAILABLE_MODEL: &str = "mock-unavailable";

const CHAT_ID: &str = "chatcmpl-mock";
const FINGERPRINT: &str = "fp_mock";
const ROLES: [&str; 6] = ["system", "developer", "user", "assistant", "tool", "function"];

/// Whether `path` (under `/v1`) is one of these routes.
pub(crate) fn serves(method: &str, path: &str) -> bool {
    let model_id = path.strip_prefix("/models/").is_some_and(|id| !id.is_empty() && !id.contains('/'));
    matches!(
        (method, path),
        ("GET", "/models")
            | (
                "POST",
                "/chat/completions"
                    | "/embeddings"
                    | "/rerank"
                    | "/audio/speech"
                    | "/audio/transcriptions"
                    | "/moderations"
            )
    ) || (method == "GET" && model_id)
}

fn model_object(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": CREATED, "owned_by": "openai"})
}

/// Answers a model route (the key already checked); `body` is the request body as sent (multipart
/// is binary).
pub(crate) fn route(path: &str, request: &Recorded, body: &[u8]) -> Answer {
    if path == "/models" {
        let data: Vec<Value> = MODELS.iter().map(|id| model_object(id)).collect();
        return answer(200, &json!({"object": "list", "data": data}));
    }
    if let Some(id) = path.strip_prefix("/models/") {
        return match MODELS.iter().find(|model| **model == id) {
            Some(model) => answer(200, &model_object(model)),
            None => error(
                404,
                &format!("The model '{id}' does not exist or you do not have access to it."),
                "invalid_request_error",
                None,
                Some("model_not_found"),
            ),
        };
    }
    if path == "/audio/transcriptions" {
        return transcription(request, body);
    }
    let Ok(input) = serde_json::from_slice::<Value>(body) else {
        return invalid("We could not parse the JSON body of your request.", "body");
    };
    if !input.is_object() {
        return invalid("The request body must be a JSON object.", "body");
    }
    // The model is optional for moderations only.
    let model = match input["model"].as_str() {
        Some(model) if !model.is_empty() => model,
        _ if path == "/moderations" && input["model"].is_null() => "omni-moderation-latest",
        _ => return no_model(),
    };
    if let Some(refused) = refusal_of(model) {
        return refused;
    }
    match path {
        "/chat/completions" => chat(model, &input),
        "/embeddings" => embeddings(model, &input),
        "/rerank" => rerank(model, &input),
        "/audio/speech" => speech(&input),
        _ => moderation(model, &input),
    }
}

fn no_model() -> Answer {
    error(400, "you must provide a model parameter", "invalid_request_error", None, None)
}

/// The answer of the error models.
fn refusal_of(model: &str) -> Option<Answer> {
    match model {
        RATE_LIMITED_MODEL => Some(error(
            429,
            "Rate limit reached for requests. Please try again in 20s.",
            "requests",
            None,
            Some("rate_limit_exceeded"),
        )),
        UNAVAILABLE_MODEL => Some(error(503, "The server is overloaded or not ready yet.", "server_error", None, None)),
        _ => None,
    }
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// A message's text: a string, or the `text` of its parts.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join(" "),
        _ => String::new(),
    }
}

/// `text` cut before each word but the first: every piece keeps the whitespace after its word
/// (leading whitespace goes with the first), so the pieces join to `text`.
fn pieces(text: &str) -> Vec<&str> {
    let (mut out, mut start, mut seen_word, mut gap) = (Vec::new(), 0, false, false);
    for (at, c) in text.char_indices() {
        if c.is_whitespace() {
            gap = seen_word;
        } else {
            if gap {
                out.push(&text[start..at]);
                start = at;
                gap = false;
            }
            seen_word = true;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

fn chat(model: &str, input: &Value) -> Answer {
    let Some(messages) = input["messages"].as_array() else {
        return invalid("Missing required parameter: 'messages'.", "messages");
    };
    if messages.is_empty() {
        return invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            "messages",
        );
    }
    for (index, message) in messages.iter().enumerate() {
        let role = message["role"].as_str().unwrap_or_default();
        if !ROLES.contains(&role) {
            return invalid(
                &format!(
                    "Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'."
                ),
                &format!("messages[{index}].role"),
            );
        }
    }
    let stream = input["stream"].as_bool() == Some(true);
    if !stream && !input["stream_options"].is_null() {
        return invalid("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options");
    }
    let include_usage = stream && input["stream_options"]["include_usage"].as_bool() == Some(true);
    let prompt_tokens: u64 = messages.iter().map(|m| words(&text_of(&m["content"]))).sum();
    let last_user = messages.iter().rfind(|m| m["role"] == "user").map(|m| text_of(&m["content"])).unwrap_or_default();
    let answered = messages.iter().any(|m| m["role"] == "tool");
    let call = match input["tools"].as_array().and_then(|t| t.first()).filter(|_| !answered) {
        Some(tool) => match tool["function"]["name"].as_str().filter(|name| !name.is_empty()) {
            Some(name) => Some((name.to_owned(), json!({"query": last_user}).to_string())),
            None => return invalid("Missing required parameter: 'tools[0].function.name'.", "tools[0].function.name"),
        },
        None => None,
    };
    let reply = match &call {
        Some(_) => String::new(),
        None => {
            let last = messages.iter().rfind(|m| m["role"] == "user" || m["role"] == "tool");
            format!("Echo: {}", last.map(|m| text_of(&m["content"])).unwrap_or_default())
        }
    };
    let completion_tokens = if call.is_some() { 1 } else { words(&reply) };
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens});
    let finish = if call.is_some() { "tool_calls" } else { "stop" };
    if !stream {
        let mut message = json!({"role": "assistant", "content": if call.is_some() { Value::Null } else { json!(reply) }, "refusal": null});
        if let Some((name, arguments)) = &call {
            message["tool_calls"] =
                json!([{"id": TOOL_CALL_ID, "type": "function", "function": {"name": name, "arguments": arguments}}]);
        }
        return answer(
            200,
            &json!({"id": CHAT_ID, "object": "chat.completion", "created": CREATED, "model": model,
                "system_fingerprint": FINGERPRINT,
                "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
                "usage": usage}),
        );
    }
    let chunk = |choices: Value, usage: Value| {
        let mut chunk = json!({"id": CHAT_ID, "object": "chat.completion.chunk", "created": CREATED, "model": model,
            "system_fingerprint": FINGERPRINT, "choices": choices});
        if include_usage {
            chunk["usage"] = usage;
        }
        chunk
    };
    let delta = |delta: Value, finish: Option<&str>| {
        chunk(json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]), Value::Null)
    };
    let mut events = vec![delta(json!({"role": "assistant", "content": ""}), None)];
    match &call {
        Some((name, arguments)) => {
            events.push(delta(
                json!({"tool_calls": [{"index": 0, "id": TOOL_CALL_ID, "type": "function", "function": {"name": name, "arguments": ""}}]}),
                None,
            ));
            let middle = arguments.len() / 2;
            let middle = (0..=middle).rev().find(|i| arguments.is_char_boundary(*i)).unwrap_or(0);
            for piece in [&arguments[..middle], &arguments[middle..]] {
                events.push(delta(json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}), None));
            }
        }
        None => {
            for piece in pieces(&reply) {
                events.push(delta(json!({"content": piece}), None));
            }
        }
    }
    events.push(delta(json!({}), Some(finish)));
    if include_usage {
        events.push(chunk(json!([]), usage));
    }
    let mut body = String::new();
    for event in events {
        body.push_str(&format!("data: {event}\n\n"));
    }
    body.push_str("data: [DONE]\n\n");
    raw(200, "text/event-stream", body.into_bytes())
}

/// A deterministic unit vector of `dimensions` floats for `text` (FNV-1a seeded).
fn embedding(text: &str, dimensions: usize) -> Vec<f64> {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut values = Vec::with_capacity(dimensions);
    for i in 0..dimensions {
        for byte in text.bytes().chain([i as u8]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        values.push((hash >> 11) as f64 / (1u64 << 53) as f64 - 0.5);
    }
    let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
    values.iter().map(|v| v / norm).collect()
}

fn embeddings(model: &str, input: &Value) -> Answer {
    let texts: Vec<String> = match &input["input"] {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).map(str::to_owned).collect()
        }
        Value::Null => return invalid("Missing required parameter: 'input'.", "input"),
        _ => return invalid("'input' must be a string or a non-empty array of strings.", "input"),
    };
    let dimensions = match &input["dimensions"] {
        Value::Null => 8,
        value => match value.as_u64().filter(|d| (1..=3072).contains(d)) {
            Some(dimensions) => dimensions as usize,
            None => return invalid("'dimensions' must be an integer between 1 and 3072.", "dimensions"),
        },
    };
    let base64 = match &input["encoding_format"] {
        Value::Null => false,
        format if *format == "float" => false,
        format if *format == "base64" => true,
        _ => return invalid("'encoding_format' must be 'float' or 'base64'.", "encoding_format"),
    };
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let vector = embedding(text, dimensions);
            let encoded = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|v| (*v as f32).to_le_bytes()).collect();
                json!(BASE64.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": encoded})
        })
        .collect();
    let tokens: u64 = texts.iter().map(|t| words(t)).sum();
    answer(
        200,
        &json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
}

fn rerank(model: &str, input: &Value) -> Answer {
    let Some(query) = input["query"].as_str() else {
        return invalid("Missing required parameter: 'query'.", "query");
    };
    let Some(documents) = input["documents"].as_array() else {
        return invalid("Missing required parameter: 'documents'.", "documents");
    };
    let mut texts = Vec::with_capacity(documents.len());
    for document in documents {
        match document.as_str().or_else(|| document["text"].as_str()) {
            Some(text) => texts.push(text),
            None => return invalid("'documents' must be strings or objects with a 'text'.", "documents"),
        }
    }
    let top_n = match &input["top_n"] {
        Value::Null => 0,
        value => match value.as_u64() {
            Some(top_n) => top_n as usize,
            None => return invalid("'top_n' must be a non-negative integer.", "top_n"),
        },
    };
    let mut query_words: Vec<String> = Vec::new();
    for word in query.split_whitespace().map(str::to_lowercase) {
        if !query_words.contains(&word) {
            query_words.push(word);
        }
    }
    let mut results: Vec<(usize, f64, &str)> = texts
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let found: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
            let hits = query_words.iter().filter(|w| found.contains(w)).count();
            let score = if query_words.is_empty() { 0.0 } else { hits as f64 / query_words.len() as f64 };
            (index, score, *text)
        })
        .collect();
    results.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if top_n > 0 {
        results.truncate(top_n);
    }
    let tokens = words(query) + texts.iter().map(|t| words(t)).sum::<u64>();
    let results: Vec<Value> = results
        .into_iter()
        .map(|(index, score, text)| json!({"index": index, "relevance_score": score, "document": {"text": text}}))
        .collect();
    answer(200, &json!({"model": model, "results": results, "usage": {"total_tokens": tokens}}))
}

fn speech(input: &Value) -> Answer {
    let Some(text) = input["input"].as_str().filter(|t| !t.is_empty()) else {
        return invalid("Missing required parameter: 'input'.", "input");
    };
    if input["voice"].as_str().is_none_or(str::is_empty) {
        return invalid("Missing required parameter: 'voice'.", "voice");
    }
    let frames = words(text).max(1) as usize;
    let mut audio = Vec::with_capacity(frames * MP3_FRAME_LEN);
    for _ in 0..frames {
        audio.extend_from_slice(&MP3_FRAME_HEADER);
        audio.resize(audio.len() + MP3_FRAME_LEN - MP3_FRAME_HEADER.len(), 0);
    }
    raw(200, "audio/mpeg", audio)
}

/// One part of a `multipart/form-data` body.
#[derive(Debug, PartialEq, Eq)]
struct Part<'a> {
    name: String,
    filename: Option<String>,
    data: &'a [u8],
}

/// The `;`-separated segments of a header value, `"`-quoted ones unquoted (None when a quote is
/// left open).
fn segments(value: &str) -> Option<Vec<String>> {
    let mut segments = vec![String::new()];
    let mut quoted = false;
    for c in value.chars() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => segments.push(String::new()),
            c => segments.last_mut()?.push(c),
        }
    }
    (!quoted).then_some(segments)
}

/// The value of parameter `wanted` among header value `segments` (the first one is not a parameter).
fn param(segments: &[String], wanted: &str) -> Option<String> {
    segments.iter().skip(1).find_map(|segment| {
        let (key, value) = segment.split_once('=')?;
        key.trim().eq_ignore_ascii_case(wanted).then(|| value.trim().to_owned())
    })
}

/// The boundary of a `multipart/form-data` content type (None for any other type).
fn boundary_of(content_type: &str) -> Option<String> {
    let segments = segments(content_type)?;
    if !segments.first()?.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    param(&segments, "boundary").filter(|boundary| (1..=70).contains(&boundary.len()))
}

/// `name` and `filename` of a `Content-Disposition: form-data; …` value.
fn disposition(value: &str) -> Option<(String, Option<String>)> {
    let segments = segments(value)?;
    if !segments.first()?.trim().eq_ignore_ascii_case("form-data") {
        return None;
    }
    Some((param(&segments, "name")?, param(&segments, "filename")))
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|at| at + from)
}

/// The parts of a `multipart/form-data` body, strictly: the first delimiter at the start, CRLF
/// after each delimiter, headers up to a blank line with a `form-data` disposition naming the
/// part, its bytes up to CRLF and the next delimiter, and the closing `--boundary--`.
fn parse_multipart<'a>(boundary: &str, body: &'a [u8]) -> Result<Vec<Part<'a>>, String> {
    let delimiter = format!("--{boundary}");
    if !body.starts_with(delimiter.as_bytes()) {
        return Err("the body does not start with the boundary".into());
    }
    let closing = format!("\r\n{delimiter}");
    let mut parts = Vec::new();
    let mut at = delimiter.len();
    loop {
        let rest = body.get(at..).unwrap_or_default();
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        if !rest.starts_with(b"\r\n") {
            return Err("a boundary is not followed by CRLF".into());
        }
        let headers_end = find(body, b"\r\n\r\n", at + 2).ok_or("a part's headers do not end")?;
        let headers = String::from_utf8_lossy(body.get(at + 2..headers_end).unwrap_or_default()).into_owned();
        let mut named = None;
        for line in headers.split("\r\n") {
            let (name, value) = line.split_once(':').ok_or("a part header without ':'")?;
            if name.trim().eq_ignore_ascii_case("content-disposition") {
                named = Some(disposition(value).ok_or("a Content-Disposition that is not form-data with a name")?);
            }
        }
        let (name, filename) = named.ok_or("a part without Content-Disposition")?;
        let data_start = headers_end + 4;
        let data_end =
            find(body, closing.as_bytes(), data_start).ok_or("the body ends without its closing boundary")?;
        parts.push(Part { name, filename, data: body.get(data_start..data_end).unwrap_or_default() });
        at = data_end + closing.len();
    }
}

fn transcription(request: &Recorded, body: &[u8]) -> Answer {
    let content_type = request.header("content-type").unwrap_or_default();
    let Some(boundary) = boundary_of(content_type) else {
        return error(
            400,
            &format!("Invalid Content-Type header ({content_type}), expected multipart/form-data with a boundary."),
            "invalid_request_error",
            None,
            None,
        );
    };
    let parts = match parse_multipart(&boundary, body) {
        Ok(parts) => parts,
        Err(why) => {
            return error(400, &format!("Could not parse multipart form: {why}."), "invalid_request_error", None, None);
        }
    };
    let field = |name: &str| parts.iter().find(|part| part.name == name);
    let text = |name: &str| field(name).map(|part| String::from_utf8_lossy(part.data).into_owned());
    let model = text("model").unwrap_or_default();
    if model.is_empty() {
        return no_model();
    }
    if let Some(refused) = refusal_of(&model) {
        return refused;
    }
    let Some(file) = field("file") else {
        return invalid("Missing required parameter: 'file'.", "file");
    };
    let heard = format!("{} bytes of audio", file.data.len());
    match text("response_format").as_deref() {
        Some("text") => raw(200, "text/plain; charset=utf-8", format!("{heard}\n").into_bytes()),
        _ => answer(200, &json!({"text": heard})),
    }
}

fn moderation(model: &str, input: &Value) -> Answer {
    let texts: Vec<String> = match &input["input"] {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).map(str::to_owned).collect()
        }
        // Multi-modal parts ({type: "text", text} and images): one input.
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            vec![text_of(&input["input"])]
        }
        Value::Null => return invalid("Missing required parameter: 'input'.", "input"),
        _ => return invalid("'input' must be a string, an array of strings or an array of parts.", "input"),
    };
    let results: Vec<Value> = texts
        .iter()
        .map(|text| {
            let lower = text.to_lowercase();
            let violence = lower.contains("kill");
            let hate = lower.contains("hate");
            let score = |hit: bool| if hit { 0.97 } else { 0.01 };
            json!({"flagged": violence || hate, "categories": {"violence": violence, "hate": hate},
                "category_scores": {"violence": score(violence), "hate": score(hate)}})
        })
        .collect();
    answer(200, &json!({"id": "modr-mock", "model": model, "results": results}))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use super::*;
    use crate::{ADMIN_KEY, MockOpenAi, READ_ONLY_KEY, VALID_KEY, error_body};

    /// One HTTP/1.1 exchange with the mock over loopback: the status, the content type and the
    /// body's bytes.
    fn exchange(
        mock: &MockOpenAi,
        method: &str,
        path: &str,
        key: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> (u16, String, Vec<u8>) {
        let mut stream = TcpStream::connect(mock.addr()).unwrap();
        let auth = key.map(|key| format!("Authorization: Bearer {key}\r\n")).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).unwrap();
        let split = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8(answer[..split].to_vec()).unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let content_type =
            head.lines().find_map(|line| line.strip_prefix("content-type: ")).unwrap_or_default().to_owned();
        (status, content_type, answer[split + 4..].to_vec())
    }

    fn post(mock: &MockOpenAi, path: &str, body: &Value) -> (u16, Value) {
        post_as(mock, path, Some(VALID_KEY), body)
    }

    fn post_as(mock: &MockOpenAi, path: &str, key: Option<&str>, body: &Value) -> (u16, Value) {
        let (status, _, bytes) = exchange(mock, "POST", path, key, "application/json", body.to_string().as_bytes());
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// A streamed chat completion: the content type and the `data:` payloads in order.
    fn stream(mock: &MockOpenAi, body: &Value) -> (String, Vec<String>) {
        let (status, content_type, bytes) = exchange(
            mock,
            "POST",
            "/v1/chat/completions",
            Some(VALID_KEY),
            "application/json",
            body.to_string().as_bytes(),
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.ends_with("\n\n"), "every event ends with a blank line: {text:?}");
        let events = text
            .split_terminator("\n\n")
            .map(|event| {
                event.strip_prefix("data: ").unwrap_or_else(|| panic!("not a data line: {event:?}")).to_owned()
            })
            .collect();
        (content_type, events)
    }

    fn parse_chunks(events: &[String]) -> Vec<Value> {
        let (done, chunks) = events.split_last().unwrap();
        assert_eq!(done, "[DONE]", "[DONE] comes last");
        chunks.iter().map(|event| serde_json::from_str(event).unwrap()).collect()
    }

    fn is_openai_error(body: &Value, kind: &str, code: Option<&str>) -> bool {
        let error = &body["error"];
        error["message"].as_str().is_some_and(|m| !m.is_empty())
            && error["type"] == kind
            && error.as_object().is_some_and(|e| e.contains_key("param"))
            && error["code"].as_str() == code
    }

    fn multipart(boundary: &str, parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (name, filename, data) in parts {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            let filename = filename.map(|f| format!("; filename=\"{f}\"")).unwrap_or_default();
            body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"{filename}\r\n").as_bytes());
            if filename.is_empty() {
                body.extend_from_slice(b"\r\n");
            } else {
                body.extend_from_slice(b"Content-Type: audio/mpeg\r\n\r\n");
            }
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        body
    }

    fn transcribe(mock: &MockOpenAi, content_type: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
        exchange(mock, "POST", "/v1/audio/transcriptions", Some(VALID_KEY), content_type, body)
    }

    #[test]
    fn the_models_are_listed_and_retrieved() {
        let mock = MockOpenAi::start().unwrap();
        let (status, _, bytes) = exchange(&mock, "GET", "/v1/models", Some(VALID_KEY), "application/json", b"");
        let listed: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(status, 200, "{listed}");
        assert_eq!(listed["object"], "list");
        let data = listed["data"].as_array().unwrap();
        let ids: Vec<&str> = data.iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert_eq!(ids, MODELS);
        for model in data {
            assert_eq!(model["object"], "model");
            assert_eq!(model["created"], CREATED);
            assert!(model["owned_by"].as_str().is_some_and(|o| !o.is_empty()));
            assert_eq!(model.as_object().unwrap().len(), 4, "{model}");
        }
        let (status, _, bytes) =
            exchange(&mock, "GET", "/v1/models/whisper-1", Some(VALID_KEY), "application/json", b"");
        assert_eq!((status, serde_json::from_slice::<Value>(&bytes).unwrap()), (200, data[5].clone()));
        let (status, _, bytes) =
            exchange(&mock, "GET", "/v1/models/gpt-nope", Some(VALID_KEY), "application/json", b"");
        let refused: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(status, 404);
        assert!(is_openai_error(&refused, "invalid_request_error", Some("model_not_found")), "{refused}");
        // The read-only key may call models (its restriction is on webhook endpoints).
        assert_eq!(exchange(&mock, "GET", "/v1/models", Some(READ_ONLY_KEY), "application/json", b"").0, 200);
    }

    #[test]
    fn a_chat_completion_echoes_the_last_user_message() {
        let mock = MockOpenAi::start().unwrap();
        let request = json!({"model": "gpt-4o-mini", "messages": [
            {"role": "system", "content": "be very brief"},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "text", "text": "there"}]}
        ], "max_tokens": 5});
        let (status, completion) = post(&mock, "/v1/chat/completions", &request);
        assert_eq!(status, 200, "{completion}");
        assert_eq!(completion["object"], "chat.completion");
        assert!(completion["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert_eq!(completion["created"], CREATED);
        assert_eq!(completion["model"], "gpt-4o-mini");
        assert!(completion["system_fingerprint"].as_str().unwrap().starts_with("fp_"));
        let choices = completion["choices"].as_array().unwrap();
        assert_eq!(choices.len(), 1);
        assert_eq!(choices[0]["index"], 0);
        assert_eq!(choices[0]["finish_reason"], "stop");
        assert_eq!(choices[0]["message"]["role"], "assistant");
        assert_eq!(choices[0]["message"]["content"], "Echo: hello there");
        assert!(choices[0]["message"].get("tool_calls").is_none());
        // Words: 3 + 2 + 2 + 2 in, "Echo: hello there" out.
        assert_eq!(completion["usage"], json!({"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}));
        // The request is journaled as sent.
        let recorded = mock.requests().pop().unwrap();
        assert_eq!((recorded.method.as_str(), recorded.path.as_str()), ("POST", "/v1/chat/completions"));
        assert_eq!(recorded.json(), request);
    }

    #[test]
    fn a_streamed_completion_sends_role_words_finish_usage_then_done() {
        let mock = MockOpenAi::start().unwrap();
        let request = json!({"model": "gpt-4.1-nano", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "hello  dify\nplugins"}]});
        let (content_type, events) = stream(&mock, &request);
        assert!(content_type.starts_with("text/event-stream"), "{content_type}");
        let chunks = parse_chunks(&events);
        for chunk in &chunks {
            assert_eq!(chunk["object"], "chat.completion.chunk");
            assert_eq!(chunk["id"], chunks[0]["id"]);
            assert_eq!((chunk["created"].clone(), chunk["model"].clone()), (json!(CREATED), json!("gpt-4.1-nano")));
            assert!(chunk["system_fingerprint"].is_string());
        }
        let deltas: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"].get(0)).map(|c| &c["delta"]).collect();
        assert_eq!(*deltas[0], json!({"role": "assistant", "content": ""}));
        let words: Vec<&str> = deltas[1..deltas.len() - 1].iter().map(|d| d["content"].as_str().unwrap()).collect();
        assert_eq!(words, ["Echo: ", "hello  ", "dify\n", "plugins"], "one delta per word, its whitespace kept");
        assert_eq!(words.concat(), "Echo: hello  dify\nplugins");
        // The finish chunk, then the usage chunk without choices, last before [DONE].
        let finish = &chunks[chunks.len() - 2];
        assert_eq!(finish["choices"][0]["delta"], json!({}));
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
        assert!(chunks[..chunks.len() - 2].iter().all(|c| c["choices"][0]["finish_reason"].is_null()));
        let usage = chunks.last().unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"], json!({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}));
        assert!(chunks[..chunks.len() - 1].iter().all(|c| c.get("usage") == Some(&Value::Null)));

        // Without include_usage: no usage chunk and no usage field.
        let (_, events) = stream(
            &mock,
            &json!({"model": "gpt-4o-mini", "stream": true,
            "messages": [{"role": "user", "content": "hi"}]}),
        );
        let chunks = parse_chunks(&events);
        assert_eq!(chunks.len(), 4, "role, 'Echo: ', 'hi', finish: {events:?}");
        assert!(chunks.iter().all(|c| c.get("usage").is_none() && c["choices"].as_array().unwrap().len() == 1));
        assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn tools_get_one_call_until_a_tool_answers() {
        let mock = MockOpenAi::start().unwrap();
        let tools = json!([
            {"type": "function", "function": {"name": "search", "description": "web search",
                "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}},
            {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}}
        ]);
        let messages =
            json!([{"role": "system", "content": "use tools"}, {"role": "user", "content": "find \"rust\" crates"}]);
        let arguments = json!({"query": "find \"rust\" crates"}).to_string();
        let (status, completion) =
            post(&mock, "/v1/chat/completions", &json!({"model": "gpt-4o-mini", "messages": messages, "tools": tools}));
        assert_eq!(status, 200, "{completion}");
        let choice = &completion["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], Value::Null);
        assert_eq!(
            choice["message"]["tool_calls"],
            json!([{"id": "call_mock_1", "type": "function", "function": {"name": "search", "arguments": arguments}}])
        );
        assert_eq!(serde_json::from_str::<Value>(&arguments).unwrap(), json!({"query": "find \"rust\" crates"}));
        assert_eq!(completion["usage"], json!({"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}));

        // Streamed: role, the call's head, the arguments in two pieces, finish, usage, [DONE].
        let (_, events) = stream(
            &mock,
            &json!({"model": "gpt-4o-mini", "messages": messages, "tools": tools,
            "stream": true, "stream_options": {"include_usage": true}}),
        );
        let chunks = parse_chunks(&events);
        assert_eq!(chunks.len(), 6, "{events:?}");
        assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
        assert_eq!(
            chunks[1]["choices"][0]["delta"],
            json!({"tool_calls": [{"index": 0, "id": "call_mock_1", "type": "function", "function": {"name": "search", "arguments": ""}}]})
        );
        let pieces: Vec<&str> = chunks[2..4]
            .iter()
            .map(|c| {
                let call = &c["choices"][0]["delta"]["tool_calls"][0];
                assert_eq!(call["index"], 0);
                assert!(call.get("id").is_none());
                call["function"]["arguments"].as_str().unwrap()
            })
            .collect();
        assert!(pieces.iter().all(|p| !p.is_empty()));
        assert_eq!(pieces.concat(), arguments);
        assert_eq!(chunks[4]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunks[5]["usage"]["completion_tokens"], 1);

        // Once a tool answered, the reply echoes the tool's message.
        let answered = json!([
            {"role": "user", "content": "find rust crates"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_mock_1", "type": "function",
                "function": {"name": "search", "arguments": arguments}}]},
            {"role": "tool", "tool_call_id": "call_mock_1", "content": "serde tokio hyper"}
        ]);
        let (status, completion) =
            post(&mock, "/v1/chat/completions", &json!({"model": "gpt-4o-mini", "messages": answered, "tools": tools}));
        assert_eq!(status, 200);
        assert_eq!(completion["choices"][0]["message"]["content"], "Echo: serde tokio hyper");
        assert_eq!(completion["choices"][0]["finish_reason"], "stop");
        assert!(completion["choices"][0]["message"].get("tool_calls").is_none());
    }

    #[test]
    fn the_error_models_and_bad_keys_get_openai_errors() {
        let mock = MockOpenAi::start().unwrap();
        let chat = |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
        let (status, body) = post(&mock, "/v1/chat/completions", &chat(RATE_LIMITED_MODEL));
        assert_eq!(status, 429);
        assert!(is_openai_error(&body, "requests", Some("rate_limit_exceeded")), "{body}");
        let (status, body) = post(&mock, "/v1/chat/completions", &chat(UNAVAILABLE_MODEL));
        assert_eq!(status, 503);
        assert!(is_openai_error(&body, "server_error", None), "{body}");
        // Every route knows the error models, the multipart one included.
        for (path, body) in [
            ("/v1/embeddings", json!({"model": RATE_LIMITED_MODEL, "input": "x"})),
            ("/v1/rerank", json!({"model": RATE_LIMITED_MODEL, "query": "x", "documents": ["x"]})),
            ("/v1/audio/speech", json!({"model": RATE_LIMITED_MODEL, "input": "x", "voice": "alloy"})),
            ("/v1/moderations", json!({"model": RATE_LIMITED_MODEL, "input": "x"})),
        ] {
            assert_eq!(post(&mock, path, &body).0, 429, "{path}");
        }
        let form = multipart("b", &[("model", None, UNAVAILABLE_MODEL.as_bytes()), ("file", Some("a.mp3"), b"x")]);
        assert_eq!(transcribe(&mock, "multipart/form-data; boundary=b", &form).0, 503);

        // A wrong key: 401 invalid_api_key, the key masked; no key: 401; the Admin key: 403.
        let wrong = "sk-proj-wrong-key-0000000000001234";
        let (status, body) = post_as(&mock, "/v1/chat/completions", Some(wrong), &chat("gpt-4o-mini"));
        assert_eq!(status, 401);
        assert!(is_openai_error(&body, "invalid_request_error", Some("invalid_api_key")), "{body}");
        assert!(!body.to_string().contains(wrong) && body.to_string().contains("1234"), "{body}");
        let (status, _, bytes) = exchange(&mock, "GET", "/v1/models", Some(wrong), "application/json", b"");
        assert_eq!(
            (status, serde_json::from_slice::<Value>(&bytes).unwrap()["error"]["code"].clone()),
            (401, json!("invalid_api_key"))
        );
        assert_eq!(post_as(&mock, "/v1/embeddings", None, &json!({"model": "m", "input": "x"})).0, 401);
        assert_eq!(post_as(&mock, "/v1/embeddings", Some(ADMIN_KEY), &json!({"model": "m", "input": "x"})).0, 403);

        // Malformed requests: 400 invalid_request_error.
        for (path, body) in [
            ("/v1/chat/completions", json!({"messages": [{"role": "user", "content": "hi"}]})),
            ("/v1/chat/completions", json!({"model": "gpt-4o-mini"})),
            ("/v1/chat/completions", json!({"model": "gpt-4o-mini", "messages": []})),
            ("/v1/chat/completions", json!({"model": "gpt-4o-mini", "messages": [{"role": "robot", "content": "x"}]})),
            (
                "/v1/chat/completions",
                json!({"model": "gpt-4o-mini", "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": "hi"}]}),
            ),
            (
                "/v1/chat/completions",
                json!({"model": "gpt-4o-mini", "tools": [{"type": "function", "function": {}}],
                "messages": [{"role": "user", "content": "hi"}]}),
            ),
            ("/v1/embeddings", json!({"model": "text-embedding-3-small"})),
            ("/v1/embeddings", json!({"model": "text-embedding-3-small", "input": [1, 2]})),
            ("/v1/embeddings", json!({"model": "text-embedding-3-small", "input": "x", "dimensions": 0})),
            ("/v1/embeddings", json!({"model": "text-embedding-3-small", "input": "x", "encoding_format": "int8"})),
            ("/v1/rerank", json!({"model": "rerank-lite", "documents": ["x"]})),
            ("/v1/rerank", json!({"model": "rerank-lite", "query": "x", "documents": [1]})),
            ("/v1/rerank", json!({"model": "rerank-lite", "query": "x", "documents": ["x"], "top_n": -1})),
            ("/v1/audio/speech", json!({"model": "tts-1", "voice": "alloy"})),
            ("/v1/audio/speech", json!({"model": "tts-1", "input": "hi"})),
            ("/v1/moderations", json!({"model": "omni-moderation-latest"})),
        ] {
            let (status, refused) = post(&mock, path, &body);
            assert_eq!(status, 400, "{path} {body}: {refused}");
            assert!(is_openai_error(&refused, "invalid_request_error", None), "{path} {body}: {refused}");
        }
        let (status, _, bytes) =
            exchange(&mock, "POST", "/v1/chat/completions", Some(VALID_KEY), "application/json", b"{not json");
        assert_eq!(status, 400);
        assert_eq!(
            serde_json::from_slice::<Value>(&bytes).unwrap(),
            error_body(
                "We could not parse the JSON body of your request.",
                "invalid_request_error",
                Some("body"),
                None
            )
        );
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let mock = MockOpenAi::start().unwrap();
        let (status, list) = post(
            &mock,
            "/v1/embeddings",
            &json!({"model": "text-embedding-3-small", "input": ["alpha beta", "gamma", "alpha beta"], "encoding_format": "float"}),
        );
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["object"], "list");
        assert_eq!(list["model"], "text-embedding-3-small");
        assert_eq!(list["usage"], json!({"prompt_tokens": 5, "total_tokens": 5}));
        let data = list["data"].as_array().unwrap();
        assert_eq!(data.len(), 3);
        let vectors: Vec<Vec<f64>> = data
            .iter()
            .enumerate()
            .map(|(index, item)| {
                assert_eq!((item["object"].clone(), item["index"].clone()), (json!("embedding"), json!(index)));
                item["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
            })
            .collect();
        for vector in &vectors {
            assert_eq!(vector.len(), 8);
            assert!((vector.iter().map(|v| v * v).sum::<f64>() - 1.0).abs() < 1e-9, "{vector:?}");
        }
        assert_eq!(vectors[0], vectors[2], "a function of the text");
        assert_ne!(vectors[0], vectors[1]);

        // A single string; `dimensions`; base64 (little-endian f32s).
        let (_, one) = post(&mock, "/v1/embeddings", &json!({"model": "m", "input": "gamma"}));
        assert_eq!(one["data"][0]["embedding"], data[1]["embedding"]);
        assert_eq!(one["usage"]["prompt_tokens"], 1);
        let (_, short) = post(&mock, "/v1/embeddings", &json!({"model": "m", "input": "gamma", "dimensions": 3}));
        let short: Vec<f64> =
            short["data"][0]["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(short.len(), 3);
        assert!((short.iter().map(|v| v * v).sum::<f64>() - 1.0).abs() < 1e-9);
        let (_, encoded) =
            post(&mock, "/v1/embeddings", &json!({"model": "m", "input": "gamma", "encoding_format": "base64"}));
        let bytes = BASE64.decode(encoded["data"][0]["embedding"].as_str().unwrap()).unwrap();
        let floats: Vec<f32> = bytes.chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        let expected: Vec<f32> = vectors[1].iter().map(|v| *v as f32).collect();
        assert_eq!(floats, expected);
    }

    #[test]
    fn rerank_sorts_by_the_share_of_query_words_and_keeps_top_n() {
        let mock = MockOpenAi::start().unwrap();
        let documents = json!(["Nothing relevant here", "a Plugin for DIFY", "dify docs", {"text": "plugin plugin"}]);
        let (status, ranked) = post(
            &mock,
            "/v1/rerank",
            &json!({"model": "rerank-lite", "query": "dify plugin dify", "documents": documents}),
        );
        assert_eq!(status, 200, "{ranked}");
        assert_eq!(ranked["model"], "rerank-lite");
        // Distinct query words {dify, plugin}; ties keep the documents' order.
        assert_eq!(
            ranked["results"],
            json!([
                {"index": 1, "relevance_score": 1.0, "document": {"text": "a Plugin for DIFY"}},
                {"index": 2, "relevance_score": 0.5, "document": {"text": "dify docs"}},
                {"index": 3, "relevance_score": 0.5, "document": {"text": "plugin plugin"}},
                {"index": 0, "relevance_score": 0.0, "document": {"text": "Nothing relevant here"}}
            ])
        );
        assert_eq!(ranked["usage"], json!({"total_tokens": 3 + 3 + 4 + 2 + 2}));
        let (_, top) = post(
            &mock,
            "/v1/rerank",
            &json!({"model": "rerank-lite", "query": "dify plugin", "documents": documents, "top_n": 2}),
        );
        let indexes: Vec<u64> =
            top["results"].as_array().unwrap().iter().map(|r| r["index"].as_u64().unwrap()).collect();
        assert_eq!(indexes, [1, 2]);
        // top_n 0 (vLLM's default) and a top_n above the count keep every document.
        for top_n in [0, 10] {
            let (_, all) = post(
                &mock,
                "/v1/rerank",
                &json!({"model": "r", "query": "dify", "documents": documents, "top_n": top_n}),
            );
            assert_eq!(all["results"].as_array().unwrap().len(), 4, "top_n {top_n}");
        }
    }

    #[test]
    fn speech_is_one_mp3_frame_per_word() {
        let mock = MockOpenAi::start().unwrap();
        let speak = |input: &str| {
            let body = json!({"model": "tts-1", "input": input, "voice": "alloy", "response_format": "mp3"});
            exchange(
                &mock,
                "POST",
                "/v1/audio/speech",
                Some(VALID_KEY),
                "application/json",
                body.to_string().as_bytes(),
            )
        };
        let (status, content_type, audio) = speak("one two  three\nfour");
        assert_eq!((status, content_type.as_str()), (200, "audio/mpeg"));
        assert_eq!(audio.len(), 4 * 417);
        for frame in audio.chunks(MP3_FRAME_LEN) {
            assert_eq!(frame.len(), 417);
            assert_eq!(frame[..4], [0xFF, 0xFB, 0x90, 0x64]);
            assert!(frame[4..].iter().all(|b| *b == 0));
        }
        // Whitespace only: still one frame.
        let (status, _, audio) = speak("   ");
        assert_eq!((status, audio.len()), (200, 417));
        assert_eq!(audio[..4], MP3_FRAME_HEADER);
    }

    #[test]
    fn a_transcription_counts_the_bytes_of_the_file_part() {
        let mock = MockOpenAi::start().unwrap();
        // Binary audio holding CR LF, dashes, the delimiter without its CRLF and a cut one after CRLF
        // (RFC 2046 rules out the whole CRLF delimiter inside a part).
        let mut audio: Vec<u8> = (0..=255u8).cycle().take(1024).collect();
        audio.extend_from_slice(b"\r\n-\r\n x--Xb0undary\r\n--Xb0undar");
        let form = multipart(
            "Xb0undary",
            &[("model", None, b"whisper-1"), ("file", Some("audio.mp3"), &audio), ("language", None, b"en")],
        );
        let (status, content_type, bytes) = transcribe(&mock, "multipart/form-data; boundary=Xb0undary", &form);
        assert_eq!((status, content_type.as_str()), (200, "application/json"), "{}", String::from_utf8_lossy(&bytes));
        let heard: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(heard, json!({"text": format!("{} bytes of audio", audio.len())}));
        // The journal keeps the request (the body as lossy text).
        let recorded = mock.requests().pop().unwrap();
        assert_eq!(recorded.path, "/v1/audio/transcriptions");
        assert!(recorded.header("content-type").unwrap().contains("boundary=Xb0undary"));

        // A quoted boundary, the file first, response_format text.
        let form = multipart(
            "q;b",
            &[("file", Some("a.wav"), b"RIFF"), ("model", None, b"whisper-1"), ("response_format", None, b"text")],
        );
        let (status, content_type, bytes) = transcribe(&mock, "multipart/form-data; boundary=\"q;b\"", &form);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
        assert!(content_type.starts_with("text/plain"));
        assert_eq!(bytes, b"4 bytes of audio\n");

        // An empty file is 0 bytes.
        let form = multipart("b", &[("model", None, b"whisper-1"), ("file", Some("a.mp3"), b"")]);
        let (_, _, bytes) = transcribe(&mock, "multipart/form-data; boundary=b", &form);
        assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap()["text"], "0 bytes of audio");
    }

    #[test]
    fn a_transcription_without_a_file_or_a_sound_form_is_400() {
        let mock = MockOpenAi::start().unwrap();
        let refused = |content_type: &str, body: &[u8]| {
            let (status, _, bytes) = transcribe(&mock, content_type, body);
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(status, 400, "{content_type}: {body}");
            assert!(is_openai_error(&body, "invalid_request_error", None), "{body}");
            body
        };
        let ct = "multipart/form-data; boundary=b";
        // No file part; a field merely named like a file does not count.
        let body = refused(ct, &multipart("b", &[("model", None, b"whisper-1"), ("files", Some("file"), b"x")]));
        assert_eq!(body["error"]["param"], "file");
        let body = refused(ct, &multipart("b", &[("model", None, b"whisper-1")]));
        assert_eq!(body["error"]["param"], "file");
        // No model.
        refused(ct, &multipart("b", &[("file", Some("a.mp3"), b"x")]));
        // Not multipart, no boundary, a wrong boundary, a truncated body, a part without a name.
        let good = multipart("b", &[("model", None, b"whisper-1"), ("file", Some("a.mp3"), b"x")]);
        refused("application/json", b"{\"model\": \"whisper-1\"}");
        refused("multipart/form-data", &good);
        refused("multipart/form-data; boundary=c", &good);
        refused(ct, &good[..good.len() - 8]);
        refused(ct, b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n");
        refused(ct, b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n");
        refused(ct, b"--bXX\r\n");
        // The parser itself: bytes exact, the closing delimiter needed.
        let parts = parse_multipart("b", &good).unwrap();
        assert_eq!(
            parts,
            [
                Part { name: "model".into(), filename: None, data: b"whisper-1" },
                Part { name: "file".into(), filename: Some("a.mp3".into()), data: b"x" }
            ]
        );
        assert!(parse_multipart("b", b"--b--\r\n").unwrap().is_empty());
        assert_eq!(boundary_of("Multipart/Form-Data; charset=utf-8; Boundary=\"a b\""), Some("a b".into()));
        assert_eq!(boundary_of("text/plain; boundary=b"), None);
    }

    #[test]
    fn moderation_flags_kill_and_hate() {
        let mock = MockOpenAi::start().unwrap();
        let (status, moderated) = post(
            &mock,
            "/v1/moderations",
            &json!({"model": "omni-moderation-latest", "input": "I will KILL the process"}),
        );
        assert_eq!(status, 200, "{moderated}");
        assert_eq!(
            moderated,
            json!({"id": "modr-mock", "model": "omni-moderation-latest", "results": [{"flagged": true,
                "categories": {"violence": true, "hate": false},
                "category_scores": {"violence": 0.97, "hate": 0.01}}]})
        );
        let (_, several) = post(&mock, "/v1/moderations", &json!({"input": ["what a lovely day", "I hate mondays"]}));
        assert_eq!(several["model"], "omni-moderation-latest", "the model is optional");
        let results = several["results"].as_array().unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0]["flagged"], false);
        assert_eq!(results[0]["categories"], json!({"violence": false, "hate": false}));
        assert_eq!(
            (results[1]["flagged"].clone(), results[1]["categories"]["hate"].clone()),
            (json!(true), json!(true))
        );
        assert!(
            results[1]["category_scores"]["hate"].as_f64().unwrap()
                > results[0]["category_scores"]["hate"].as_f64().unwrap()
        );
        let (_, parts) = post(
            &mock,
            "/v1/moderations",
            &json!({"model": "m", "input": [{"type": "text", "text": "kill"}, {"type": "image_url", "image_url": {"url": "https://x"}}]}),
        );
        assert_eq!(parts["results"].as_array().unwrap().len(), 1);
        assert_eq!(parts["results"][0]["flagged"], true);
    }

    #[test]
    fn pieces_keep_the_whitespace_after_each_word() {
        assert_eq!(pieces("Echo: hello there"), ["Echo: ", "hello ", "there"]);
        assert_eq!(pieces(" a\n\nb  "), [" a\n\n", "b  "]);
        assert!(pieces("").is_empty());
    }
}
