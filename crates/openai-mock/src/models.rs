//! The model routes an OpenAI-compatible model provider plugin calls (the SDK's `openai_compat`
//! example), with OpenAI's documented shapes and deterministic answers:
//!
//! | Call | Answer |
//! | --- | --- |
//! | `GET /models` | `{"object":"list","data":[{id,object:"model",created,owned_by}]}` ([`MODELS`]) |
//! | `POST /chat/completions` | `chat.completion`, or with `stream` the `chat.completion.chunk` events as SSE, `[DONE]` last |
//! | `POST /embeddings` | `{"object":"list","data":[{object:"embedding",index,embedding}],model,usage}`; 8 floats (or `dimensions`) of unit length per input |
//! | `POST /rerank` | `{model,results:[{index,relevance_score,document:{text}}],usage}` (the Jina/Cohere route vLLM and Xinference serve) |
//! | `POST /audio/speech` | `audio/mpeg`: one 417-byte MPEG-1 Layer III frame (`FF FB 90 64`, then zeros) per word of `input` |
//! | `POST /audio/transcriptions` (multipart `file`, `model`) | `{"text":"<n> bytes of audio"}` |
//! | `POST /moderations` | `{id,model,results:[{flagged,categories,category_scores}]}`; flagged when the input says "kill" or "hate" |
//!
//! The chat reply is `Echo: ` and the last user or tool message's text. With `tools` and no
//! `tool` message yet, it is one call of the first tool with arguments `{"query": <last user
//! text>}` (`finish_reason` `tool_calls`). Tokens are whitespace-separated words. Streamed: a first
//! delta with the role, one delta per word (each keeps its following space), tool calls as deltas
//! (the id and name first, the arguments in two pieces), a chunk with `finish_reason`, a usage
//! chunk with no choices when `stream_options.include_usage`, then `data: [DONE]`. The model
//! `mock-rate-limited` answers 429, `mock-unavailable` 503.

use serde_json::{Value, json};

use crate::{Answer, Recorded, answer, error, invalid, raw};

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

/// `created` of every object (a fixed time: answers are deterministic).
const CREATED: u64 = 1_733_000_000;

/// Whether `path` (under `/v1`) is one of these routes.
pub(crate) fn serves(method: &str, path: &str) -> bool {
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
    )
}

/// Answers a model route; `body` is the request body as sent (multipart is binary).
pub(crate) fn route(path: &str, request: &Recorded, body: &[u8]) -> Answer {
    if path == "/models" {
        let data: Vec<Value> = MODELS
            .iter()
            .map(|id| json!({"id": id, "object": "model", "created": CREATED, "owned_by": "openai"}))
            .collect();
        return answer(200, &json!({"object": "list", "data": data}));
    }
    if path == "/audio/transcriptions" {
        return transcription(request, body);
    }
    let Ok(input) = serde_json::from_slice::<Value>(body) else {
        return invalid("We could not parse the JSON body of your request.", "body");
    };
    let model = input["model"].as_str().unwrap_or_default();
    if model.is_empty() {
        return invalid("you must provide a model parameter", "model");
    }
    match model {
        "mock-rate-limited" => {
            return error(
                429,
                "Rate limit reached for requests. Please try again in 20s.",
                "requests",
                None,
                Some("rate_limit_exceeded"),
            );
        }
        "mock-unavailable" => {
            return error(503, "The server is overloaded or not ready yet.", "server_error", None, None);
        }
        _ => {}
    }
    match path {
        "/chat/completions" => chat(model, &input),
        "/embeddings" => embeddings(model, &input),
        "/rerank" => rerank(model, &input),
        "/audio/speech" => speech(&input),
        _ => moderation(model, &input),
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

fn chat(model: &str, input: &Value) -> Answer {
    let Some(messages) = input["messages"].as_array().filter(|m| !m.is_empty()) else {
        return invalid("'messages' must contain at least one message", "messages");
    };
    let prompt_tokens: u64 = messages.iter().map(|m| words(&text_of(&m["content"]))).sum();
    let last_user = messages.iter().rfind(|m| m["role"] == "user").map(|m| text_of(&m["content"])).unwrap_or_default();
    let answered = messages.iter().any(|m| m["role"] == "tool");
    let tool = input["tools"].as_array().and_then(|t| t.first()).filter(|_| !answered);
    let call = tool.map(|tool| {
        let name = tool["function"]["name"].as_str().unwrap_or_default().to_owned();
        (name, json!({"query": last_user}).to_string())
    });
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
    let id = "chatcmpl-mock";
    let fingerprint = "fp_mock";
    if input["stream"].as_bool() != Some(true) {
        let tool_calls = call.as_ref().map(|(name, arguments)| {
            json!([{"id": "call_mock_1", "type": "function", "function": {"name": name, "arguments": arguments}}])
        });
        let mut message = json!({"role": "assistant", "content": if call.is_some() { Value::Null } else { json!(reply) }, "refusal": null});
        if let Some(calls) = tool_calls {
            message["tool_calls"] = calls;
        }
        return answer(
            200,
            &json!({"id": id, "object": "chat.completion", "created": CREATED, "model": model,
                "system_fingerprint": fingerprint,
                "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
                "usage": usage}),
        );
    }
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({"id": id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
            "system_fingerprint": fingerprint,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
    };
    let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    match &call {
        Some((name, arguments)) => {
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_mock_1", "type": "function", "function": {"name": name, "arguments": ""}}]}),
                None,
            ));
            let middle = arguments.len() / 2;
            let middle = (0..=middle).rev().find(|i| arguments.is_char_boundary(*i)).unwrap_or(0);
            for piece in [&arguments[..middle], &arguments[middle..]] {
                events.push(chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}), None));
            }
        }
        None => {
            for word in reply.split_inclusive(' ') {
                events.push(chunk(json!({"content": word}), None));
            }
        }
    }
    events.push(chunk(json!({}), Some(finish)));
    if input["stream_options"]["include_usage"].as_bool() == Some(true) {
        events.push(json!({"id": id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
            "system_fingerprint": fingerprint, "choices": [], "usage": usage}));
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
        _ => return invalid("'input' must be a string or a non-empty array of strings", "input"),
    };
    let dimensions = input["dimensions"].as_u64().map_or(8, |d| d.clamp(1, 3072) as usize);
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(index, text)| json!({"object": "embedding", "index": index, "embedding": embedding(text, dimensions)}))
        .collect();
    let tokens: u64 = texts.iter().map(|t| words(t)).sum();
    answer(
        200,
        &json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
}

fn rerank(model: &str, input: &Value) -> Answer {
    let Some(query) = input["query"].as_str() else {
        return invalid("'query' is required", "query");
    };
    let Some(documents) = input["documents"].as_array() else {
        return invalid("'documents' must be an array of strings", "documents");
    };
    let query_words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    let mut results: Vec<(usize, f64, String)> = documents
        .iter()
        .enumerate()
        .map(|(index, document)| {
            let text = document.as_str().unwrap_or_default().to_owned();
            let found: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
            let hits = query_words.iter().filter(|w| found.contains(w)).count();
            let score = if query_words.is_empty() { 0.0 } else { hits as f64 / query_words.len() as f64 };
            (index, score, text)
        })
        .collect();
    results.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if let Some(top_n) = input["top_n"].as_u64() {
        results.truncate(top_n as usize);
    }
    let tokens = words(query) + documents.iter().map(|d| words(d.as_str().unwrap_or_default())).sum::<u64>();
    let results: Vec<Value> = results
        .into_iter()
        .map(|(index, score, text)| json!({"index": index, "relevance_score": score, "document": {"text": text}}))
        .collect();
    answer(200, &json!({"model": model, "results": results, "usage": {"total_tokens": tokens}}))
}

/// One MPEG-1 Layer III frame: 128 kbit/s, 44.1 kHz, no padding (417 bytes).
pub const MP3_FRAME_LEN: usize = 417;

fn speech(input: &Value) -> Answer {
    let Some(text) = input["input"].as_str().filter(|t| !t.is_empty()) else {
        return invalid("'input' is required", "input");
    };
    if input["voice"].as_str().is_none_or(str::is_empty) {
        return invalid("'voice' is required", "voice");
    }
    let frames = words(text).max(1) as usize;
    let mut audio = Vec::with_capacity(frames * MP3_FRAME_LEN);
    for _ in 0..frames {
        audio.extend_from_slice(&[0xFF, 0xFB, 0x90, 0x64]);
        audio.resize(audio.len() + MP3_FRAME_LEN - 4, 0);
    }
    raw(200, "audio/mpeg", audio)
}

/// The `file` part of a `multipart/form-data` body, strictly: the boundary from `Content-Type`,
/// each part's headers up to a blank line, its bytes up to `\r\n--boundary`.
fn multipart_file<'a>(content_type: &str, body: &'a [u8]) -> Option<&'a [u8]> {
    let boundary = content_type.split(';').find_map(|p| p.trim().strip_prefix("boundary="))?.trim_matches('"');
    if !content_type.trim_start().starts_with("multipart/form-data") || boundary.is_empty() {
        return None;
    }
    let delimiter = format!("--{boundary}");
    let find = |haystack: &[u8], needle: &[u8], from: usize| {
        haystack.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|at| at + from)
    };
    let mut at = find(body, delimiter.as_bytes(), 0)? + delimiter.len();
    loop {
        if body.get(at..at + 2) == Some(b"--") {
            return None;
        }
        let headers_start = at + 2;
        let headers_end = find(body, b"\r\n\r\n", headers_start)?;
        let headers = String::from_utf8_lossy(&body[headers_start..headers_end]).to_ascii_lowercase();
        let data_start = headers_end + 4;
        let next = find(body, format!("\r\n{delimiter}").as_bytes(), data_start)?;
        if headers.contains("name=\"file\"") {
            return Some(&body[data_start..next]);
        }
        at = next + 2 + delimiter.len();
    }
}

fn transcription(request: &Recorded, body: &[u8]) -> Answer {
    let content_type = request.header("content-type").unwrap_or_default();
    match multipart_file(content_type, body) {
        Some(file) => answer(200, &json!({"text": format!("{} bytes of audio", file.len())})),
        None => invalid("a multipart/form-data body with a 'file' part is required", "file"),
    }
}

fn moderation(model: &str, input: &Value) -> Answer {
    let texts: Vec<String> = match &input["input"] {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) => items.iter().map(text_of).collect(),
        _ => return invalid("'input' is required", "input"),
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
    use super::*;

    #[test]
    fn multipart_finds_the_file_part_byte_exact() {
        let body = b"--b1\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--b1\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp3\"\r\n\r\n\xFF\xFB\x00\r\n--b1--\r\n";
        assert_eq!(multipart_file("multipart/form-data; boundary=b1", body), Some(&b"\xFF\xFB\x00"[..]));
        assert_eq!(multipart_file("application/json", body), None);
        assert_eq!(multipart_file("multipart/form-data; boundary=b1", b"--b1--\r\n"), None);
    }

    #[test]
    fn embeddings_are_unit_length_and_differ_by_text() {
        let a = embedding("alpha", 8);
        let norm: f64 = a.iter().map(|v| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-9);
        assert_ne!(a, embedding("beta", 8));
        assert_eq!(a, embedding("alpha", 8));
    }
}
