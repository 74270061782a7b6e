//! The crate's example plugins of the other three kinds (issue #21), each run as the daemon runs a
//! plugin — a child process over real stdio pipes with `INSTALL_METHOD=local`, fed request lines
//! shaped as the daemon writes them — against real servers on loopback:
//!
//! - `openai_compat` (model provider) against the mock OpenAI API (`crates/openai-mock`): every
//!   model action, streaming and tool calls, the errors Dify maps;
//! - `function_calling` (agent strategy): its `llm` and `tool` backwards calls answered here, as
//!   Dify's inner API would (plugin-kinds.md §5.4, §10);
//! - `site_crawl` (datasource) crawling a small site served here on 127.0.0.1.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    reason = "tests, benchmarks and examples fail loudly"
)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openai_mock::{MockOpenAi, VALID_KEY};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

fn example(name: &str) -> PathBuf {
    // This test runs from target/<profile>/deps/; cargo puts examples in target/<profile>/examples/.
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_owned();
    let path = deps.parent().unwrap().join("examples").join(name);
    assert!(path.is_file(), "{} is missing: cargo test builds examples", path.display());
    path
}

/// What a session sent: its stream chunks, its error (type, message, args) if any.
#[derive(Debug, Default)]
struct Answer {
    chunks: Vec<Value>,
    error: Option<Value>,
}

impl Answer {
    fn one(&self) -> &Value {
        assert!(self.error.is_none(), "unexpected error: {:?}", self.error);
        assert_eq!(self.chunks.len(), 1, "exactly one chunk: {:?}", self.chunks);
        &self.chunks[0]
    }

    fn error_type(&self) -> &str {
        self.error.as_ref().and_then(|e| e["error_type"].as_str()).unwrap_or_else(|| panic!("no error: {self:?}"))
    }
}

/// A backwards call the plugin made: its type and request.
type Backwards = Arc<Mutex<Vec<(String, Value)>>>;

struct Plugin {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Plugin {
    fn spawn(name: &str) -> Plugin {
        let mut child = Command::new(example(name))
            .env("INSTALL_METHOD", "local")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Plugin { child, stdin, stdout }
    }

    async fn write(&mut self, value: &Value) {
        self.stdin.write_all(format!("{value}\n").as_bytes()).await.unwrap();
    }

    /// Runs one session; backwards calls are answered by `answer(type, request)` with the
    /// `response` events to send (then `end`), and recorded in `seen`.
    async fn call_with(
        &mut self,
        session: &str,
        data: Value,
        answer: &dyn Fn(&str, &Value) -> Vec<Value>,
        seen: &Backwards,
    ) -> Answer {
        self.write(&json!({"session_id": session, "conversation_id": null, "message_id": null, "app_id": null,
            "endpoint_id": null, "context": null, "event": "request", "data": data}))
            .await;
        let mut out = Answer::default();
        loop {
            let next = tokio::time::timeout(Duration::from_secs(30), self.stdout.next_line()).await;
            let line = next.expect("an answer within 30 s").unwrap().expect("the plugin is still running");
            let value: Value = serde_json::from_str(&line).unwrap();
            if value["event"] != "session" {
                continue;
            }
            assert_eq!(value["session_id"], session, "{line}");
            let data = &value["data"];
            match data["type"].as_str().unwrap() {
                "stream" => out.chunks.push(data["data"].clone()),
                "error" => out.error = Some(data["data"].clone()),
                "end" => return out,
                "invoke" => {
                    let call = &data["data"];
                    let kind = call["type"].as_str().unwrap().to_owned();
                    seen.lock().unwrap().push((kind.clone(), call["request"].clone()));
                    let mut events: Vec<Value> = answer(&kind, &call["request"])
                        .into_iter()
                        .map(|data| json!({"event": "response", "message": "stream", "data": data}))
                        .collect();
                    events.push(json!({"event": "end", "message": "", "data": null}));
                    for event in events {
                        let mut data = event;
                        data["backwards_request_id"] = call["backwards_request_id"].clone();
                        self.write(&json!({"session_id": session, "event": "backwards_response", "data": data})).await;
                    }
                }
                other => panic!("unexpected session message {other}: {line}"),
            }
        }
    }

    async fn call(&mut self, session: &str, data: Value) -> Answer {
        self.call_with(session, data, &|kind, _| panic!("unexpected backwards call {kind}"), &Backwards::default())
            .await
    }

    async fn close(mut self) {
        drop(self.stdin);
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "the plugin exits 0 at the end of its input");
    }
}

fn model_data(action: &str, model_type: &str, model: &str, credentials: &Value, extra: Value) -> Value {
    let mut data = json!({"type": "model", "action": action, "provider": "openai_compat", "model": model,
        "model_type": model_type, "credentials": credentials, "user_id": "u-1"});
    for (key, value) in extra.as_object().unwrap() {
        data[key] = value.clone();
    }
    data
}

const USAGE_FIELDS: [&str; 12] = [
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
];

#[tokio::test]
async fn model_plugin_openai_compat() {
    let mock = MockOpenAi::start().unwrap();
    let credentials = json!({"api_key": VALID_KEY, "endpoint_url": format!("{}/", mock.base_url())});
    let mut plugin = Plugin::spawn("openai_compat");

    // Provider credentials: listed models mean valid; the stored credentials come back normalised.
    let data = json!({"type": "model", "action": "validate_provider_credentials", "provider": "openai_compat",
        "credentials": credentials, "user_id": "u-1"});
    let checked = plugin.call("s1", data.clone()).await;
    assert_eq!(checked.one()["result"], true);
    assert_eq!(checked.one()["credentials"]["endpoint_url"], mock.base_url());
    let mut bad = data.clone();
    bad["credentials"]["api_key"] = json!("sk-wrong-key-0000000000000000");
    let refused = plugin.call("s2", bad).await;
    assert_eq!(refused.error_type(), "CredentialsValidateFailedError");
    assert!(!refused.error.unwrap()["message"].as_str().unwrap().contains("sk-wrong-key-0000000000000000"));

    // A streamed chat: pieces, then the last chunk with finish_reason and every usage field.
    let messages = json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]);
    let chat = plugin
        .call("s3", model_data("invoke_llm", "llm", "gpt-4o-mini", &credentials,
            json!({"prompt_messages": messages, "model_parameters": {"temperature": 0.3}, "stop": null, "tools": [], "stream": true})))
        .await;
    assert!(chat.error.is_none(), "{:?}", chat.error);
    assert!(chat.chunks.len() >= 3, "{:?}", chat.chunks);
    let text: String = chat.chunks.iter().map(|c| c["delta"]["message"]["content"].as_str().unwrap()).collect();
    assert_eq!(text, "Echo: hello there");
    for (i, chunk) in chat.chunks.iter().enumerate() {
        assert_eq!(chunk["delta"]["index"], i, "{chunk}");
        assert_eq!(chunk["model"], "gpt-4o-mini");
        assert_eq!(chunk["delta"]["message"]["role"], "assistant");
    }
    let last = &chat.chunks.last().unwrap()["delta"];
    assert_eq!(last["finish_reason"], "stop");
    for field in USAGE_FIELDS {
        assert!(!last["usage"][field].is_null(), "usage.{field} missing: {last}");
    }
    // Prices from gpt-4o-mini.yaml: 0.15 / 0.60 per million tokens.
    assert_eq!(last["usage"]["prompt_unit_price"], "0.15");
    assert_eq!(last["usage"]["completion_price_unit"], "0.000001");
    let sent = mock.requests().into_iter().rfind(|r| r.path == "/v1/chat/completions").unwrap().json();
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["temperature"], 0.3);
    assert_eq!(sent["messages"][1]["content"], "hello there");

    // Tools: the model calls the first one; the call comes whole on one chunk.
    let tools = json!([{"name": "search", "description": "web search", "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}]);
    let called = plugin
        .call(
            "s4",
            model_data(
                "invoke_llm",
                "llm",
                "gpt-4o-mini",
                &credentials,
                json!({"prompt_messages": [{"role": "user", "content": "find rust"}], "tools": tools, "stream": true}),
            ),
        )
        .await;
    let calls: Vec<&Value> =
        called.chunks.iter().flat_map(|c| c["delta"]["message"]["tool_calls"].as_array().unwrap()).collect();
    assert_eq!(calls.len(), 1, "{:?}", called.chunks);
    assert_eq!(calls[0]["function"]["name"], "search");
    let arguments: Value = serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments["query"], "find rust");
    assert_eq!(called.chunks.last().unwrap()["delta"]["finish_reason"], "tool_calls");

    // Not streamed: one chunk with everything.
    let whole = plugin
        .call(
            "s5",
            model_data(
                "invoke_llm",
                "llm",
                "gpt-4.1-nano",
                &credentials,
                json!({"prompt_messages": [{"role": "user", "content": "one two"}], "stream": false}),
            ),
        )
        .await;
    let delta = &whole.one()["delta"];
    assert_eq!(delta["message"]["content"], "Echo: one two");
    assert_eq!(delta["usage"]["prompt_tokens"], 2);
    assert_eq!(delta["usage"]["prompt_unit_price"], "0.1");

    let tokens = plugin
        .call(
            "s6",
            model_data(
                "get_llm_num_tokens",
                "llm",
                "gpt-4o-mini",
                &credentials,
                json!({"prompt_messages": [{"role": "user", "content": "twelve chars"}], "tools": null}),
            ),
        )
        .await;
    assert_eq!(tokens.one()["num_tokens"], 3 + 3);

    // Embeddings: one vector per text, in order, with usage.
    let texts = json!(["alpha", "beta gamma", "delta"]);
    let embedded = plugin
        .call(
            "s7",
            model_data(
                "invoke_text_embedding",
                "text-embedding",
                "text-embedding-3-small",
                &credentials,
                json!({"texts": texts, "input_type": "document"}),
            ),
        )
        .await;
    let result = embedded.one();
    assert_eq!(result["embeddings"].as_array().unwrap().len(), 3);
    assert_eq!(result["embeddings"][0].as_array().unwrap().len(), 8);
    assert_ne!(result["embeddings"][0], result["embeddings"][2]);
    for field in ["tokens", "total_tokens", "unit_price", "price_unit", "total_price", "currency", "latency"] {
        assert!(!result["usage"][field].is_null(), "usage.{field}: {result}");
    }
    let counted = plugin
        .call(
            "s8",
            model_data(
                "get_text_embedding_num_tokens",
                "text-embedding",
                "text-embedding-3-small",
                &credentials,
                json!({"texts": ["abcd", "abcdefgh"]}),
            ),
        )
        .await;
    assert_eq!(counted.one()["num_tokens"], json!([1, 2]));

    // Rerank: sorted by score, top_n applied, indexes into the request's docs.
    let reranked = plugin
        .call("s9", model_data("invoke_rerank", "rerank", "rerank-lite", &credentials,
            json!({"query": "rust plugin", "docs": ["a python plugin", "a rust plugin", "nothing here"], "score_threshold": 0.0, "top_n": 2})))
        .await;
    let docs = reranked.one()["docs"].as_array().unwrap().clone();
    assert_eq!(docs.len(), 2);
    assert_eq!((docs[0]["index"].clone(), docs[0]["text"].clone()), (json!(1), json!("a rust plugin")));
    assert!(docs[0]["score"].as_f64().unwrap() >= docs[1]["score"].as_f64().unwrap());

    // Speech: hex chunks that join into MPEG frames.
    let spoken = plugin
        .call(
            "s10",
            model_data(
                "invoke_tts",
                "tts",
                "tts-1",
                &credentials,
                json!({"content_text": "one two three", "voice": "alloy", "tenant_id": "t"}),
            ),
        )
        .await;
    assert!(spoken.error.is_none(), "{:?}", spoken.error);
    let audio: Vec<u8> =
        spoken.chunks.iter().flat_map(|c| hex::decode(c["result"].as_str().unwrap()).unwrap()).collect();
    assert_eq!(audio.len(), 3 * 417);
    assert_eq!(&audio[..2], &[0xFF, 0xFB]);
    assert_eq!(spoken.chunks[0]["mime_type"], "audio/mpeg");
    let voices = plugin
        .call("s11", model_data("get_tts_model_voices", "tts", "tts-1", &credentials, json!({"language": "fr-FR"})))
        .await;
    assert_eq!(voices.one()["voices"], json!([{"name": "Alloy", "value": "alloy"}]));

    // Transcription of those bytes, moderation both ways.
    let heard = plugin
        .call(
            "s12",
            model_data(
                "invoke_speech2text",
                "speech2text",
                "whisper-1",
                &credentials,
                json!({"file": hex::encode(&audio)}),
            ),
        )
        .await;
    assert_eq!(heard.one()["result"], format!("{} bytes of audio", audio.len()));
    let flagged = plugin
        .call(
            "s13",
            model_data(
                "invoke_moderation",
                "moderation",
                "omni-moderation-latest",
                &credentials,
                json!({"text": "I will kill the process"}),
            ),
        )
        .await;
    assert_eq!(flagged.one()["result"], true);
    let clean = plugin
        .call(
            "s14",
            model_data(
                "invoke_moderation",
                "moderation",
                "omni-moderation-latest",
                &credentials,
                json!({"text": "good morning"}),
            ),
        )
        .await;
    assert_eq!(clean.one()["result"], false);

    // Schemas: a declared model answers its declaration; a customizable one is built from its
    // credentials; other types have none.
    let declared =
        plugin.call("s15", model_data("get_ai_model_schemas", "llm", "gpt-4o-mini", &credentials, json!({}))).await;
    assert_eq!(declared.one()["model_schema"]["pricing"]["input"], "0.15");
    let custom_credentials =
        json!({"endpoint_url": mock.base_url(), "context_size": "32768", "function_calling": "yes"});
    let custom =
        plugin.call("s16", model_data("get_ai_model_schemas", "llm", "my-llama", &custom_credentials, json!({}))).await;
    let schema = &custom.one()["model_schema"];
    assert_eq!(schema["model_properties"]["context_size"], 32768);
    assert_eq!(schema["fetch_from"], "customizable-model");
    assert!(schema["features"].as_array().unwrap().contains(&json!("tool-call")));
    let none =
        plugin.call("s17", model_data("get_ai_model_schemas", "rerank", "my-rerank", &credentials, json!({}))).await;
    assert_eq!(none.one()["model_schema"], Value::Null);
    let model_ok = plugin
        .call(
            "s18",
            model_data(
                "validate_model_credentials",
                "llm",
                "my-llama",
                &json!({"api_key": VALID_KEY, "endpoint_url": mock.base_url()}),
                json!({}),
            ),
        )
        .await;
    assert_eq!(model_ok.one()["result"], true);

    // The errors Dify maps, with their description.
    let limited = plugin
        .call(
            "s19",
            model_data(
                "invoke_llm",
                "llm",
                "mock-rate-limited",
                &credentials,
                json!({"prompt_messages": [{"role": "user", "content": "hi"}], "stream": true}),
            ),
        )
        .await;
    assert_eq!(limited.error_type(), "InvokeRateLimitError");
    assert!(!limited.error.as_ref().unwrap()["args"]["description"].as_str().unwrap().is_empty());
    let down = plugin
        .call(
            "s20",
            model_data(
                "invoke_llm",
                "llm",
                "mock-unavailable",
                &credentials,
                json!({"prompt_messages": [{"role": "user", "content": "hi"}], "stream": false}),
            ),
        )
        .await;
    assert_eq!(down.error_type(), "InvokeServerUnavailableError");
    let unauthorized = plugin
        .call(
            "s21",
            model_data(
                "invoke_text_embedding",
                "text-embedding",
                "text-embedding-3-small",
                &json!({"api_key": "sk-nope-00000000000000000000", "endpoint_url": mock.base_url()}),
                json!({"texts": ["x"]}),
            ),
        )
        .await;
    assert_eq!(unauthorized.error_type(), "InvokeAuthorizationError");
    let unreachable = plugin
        .call(
            "s22",
            model_data(
                "invoke_moderation",
                "moderation",
                "omni-moderation-latest",
                &json!({"api_key": VALID_KEY, "endpoint_url": "http://127.0.0.1:9/v1"}),
                json!({"text": "x"}),
            ),
        )
        .await;
    assert_eq!(unreachable.error_type(), "InvokeConnectionError");

    // Names and shapes the plugin does not serve.
    let mut other = model_data("invoke_llm", "llm", "gpt-4o-mini", &credentials, json!({"prompt_messages": []}));
    other["provider"] = json!("anthropic");
    let unknown = plugin.call("s23", other).await;
    assert_eq!(
        (unknown.error_type(), unknown.error.as_ref().unwrap()["message"].as_str().unwrap()),
        ("ValueError", "Provider `anthropic` not found")
    );
    let wrong = plugin
        .call(
            "s24",
            model_data("invoke_text_embedding", "text-embedding", "x", &credentials, json!({"texts": "sk-not-a-list"})),
        )
        .await;
    assert_eq!(wrong.error_type(), "InvalidRequestError");
    assert!(!wrong.error.unwrap()["message"].as_str().unwrap().contains("sk-not-a-list"));
    plugin.close().await;
}

/// The scripted model the agent test answers `llm` calls with: a tool call while the prompt has
/// tools and no tool answer yet, else a final answer quoting the tool's answer, in two pieces.
fn scripted_llm(request: &Value) -> Vec<Value> {
    let messages = request["prompt_messages"].as_array().unwrap();
    let chunk = |index: u64, content: &str, calls: Value, usage: Value, finish: Value| {
        json!({"model": request["model"], "prompt_messages": [], "delta": {"index": index,
            "message": {"role": "assistant", "content": content, "tool_calls": calls}, "usage": usage, "finish_reason": finish}})
    };
    let usage = |total: u64| {
        json!({"prompt_tokens": total - 2, "prompt_unit_price": "0", "prompt_price_unit": "0", "prompt_price": "0.001",
            "completion_tokens": 2, "completion_unit_price": "0", "completion_price_unit": "0", "completion_price": "0.001",
            "total_tokens": total, "total_price": "0.002", "currency": "USD", "latency": 0.1})
    };
    let tools = request["tools"].as_array().map_or(0, Vec::len);
    match messages.iter().rfind(|m| m["role"] == "tool") {
        None if tools > 0 => {
            let query = messages.iter().rfind(|m| m["role"] == "user").unwrap()["content"].as_str().unwrap();
            let call = json!([{"id": "call_1", "type": "function", "function": {"name": request["tools"][0]["name"],
                "arguments": json!({"query": query}).to_string()}}]);
            vec![chunk(0, "", call, usage(10), json!("tool_calls"))]
        }
        answered => {
            let observed = answered.map_or("nothing", |m| m["content"].as_str().unwrap());
            vec![
                chunk(0, "Final answer: ", json!([]), Value::Null, Value::Null),
                chunk(1, observed, json!([]), usage(20), json!("stop")),
            ]
        }
    }
}

#[tokio::test]
async fn agent_plugin_function_calling() {
    let mut plugin = Plugin::spawn("function_calling");
    let tool = json!({
        "identity": {"author": "langgenius", "name": "google_search", "label": {"en_US": "Search"}, "provider": "langgenius/google/google"},
        "parameters": [{"name": "query", "type": "string", "form": "llm", "required": true, "llm_description": "what to search"},
                       {"name": "num", "type": "number", "form": "form"}],
        "description": {"human": {"en_US": "Search"}, "llm": "Searches the web"},
        "provider_type": "builtin", "runtime_parameters": {"num": 2}, "credential_id": "cred-1", "has_runtime_parameters": false
    });
    let data = json!({"type": "agent_strategy", "action": "invoke_agent_strategy", "agent_strategy_provider": "agent",
        "agent_strategy": "function_calling", "user_id": "u-1", "agent_strategy_params": {
            "model": {"provider": "langgenius/openai/openai", "model": "gpt-4o", "model_type": "llm", "mode": "chat",
                      "completion_params": {"temperature": 0.1}, "history_prompt_messages": [{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "noted"}]},
            "tools": [tool], "instruction": "You are helpful.", "query": "rust plugins", "maximum_iterations": 3}});
    let seen = Backwards::default();
    let answer = |kind: &str, request: &Value| match kind {
        "llm" => scripted_llm(request),
        "tool" => {
            vec![json!({"type": "text", "message": {"text": format!("{} found: {}", request["tool"].as_str().unwrap(),
            request["tool_parameters"]["query"].as_str().unwrap())}, "meta": null})]
        }
        other => panic!("unexpected backwards call {other}"),
    };
    let run = plugin.call_with("a1", data.clone(), &answer, &seen).await;
    assert!(run.error.is_none(), "{:?}", run.error);

    // The backwards calls: the model with the tool offered, the tool with the model's arguments
    // and the workflow's fixed ones, the model again with the tool's answer.
    let calls = seen.lock().unwrap().clone();
    let kinds: Vec<&str> = calls.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["llm", "tool", "llm"]);
    let first = &calls[0].1;
    assert_eq!(first["provider"], "langgenius/openai/openai");
    assert_eq!(first["completion_params"]["temperature"], 0.1);
    assert_eq!(first["tools"][0]["name"], "google_search");
    assert_eq!(first["tools"][0]["parameters"]["required"], json!(["query"]));
    let roles: Vec<&str> =
        first["prompt_messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    let call = &calls[1].1;
    assert_eq!(
        (call["tool_type"].clone(), call["provider"].clone(), call["tool"].clone()),
        (json!("builtin"), json!("langgenius/google/google"), json!("google_search"))
    );
    assert_eq!(call["tool_parameters"], json!({"query": "rust plugins", "num": 2}));
    assert_eq!(call["credential_id"], "cred-1");
    let second: Vec<&str> =
        calls[2].1["prompt_messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(second, ["system", "user", "assistant", "user", "assistant", "tool"]);
    assert_eq!(calls[2].1["prompt_messages"][4]["tool_calls"][0]["id"], "call_1");

    // What Dify shows: log entries (rounds, thoughts, the tool call), the streamed answer, the usage.
    let logs: Vec<(String, String)> = run
        .chunks
        .iter()
        .filter(|c| c["type"] == "log")
        .map(|c| {
            (c["message"]["label"].as_str().unwrap().to_owned(), c["message"]["status"].as_str().unwrap().to_owned())
        })
        .collect();
    for expected in
        [("ROUND 1", "start"), ("gpt-4o Thought", "success"), ("CALL google_search", "success"), ("ROUND 2", "success")]
    {
        assert!(logs.contains(&(expected.0.to_owned(), expected.1.to_owned())), "{expected:?} not in {logs:?}");
    }
    let round = run.chunks.iter().find(|c| c["message"]["label"] == "ROUND 1").unwrap()["message"]["id"].clone();
    let call_log = run.chunks.iter().find(|c| c["message"]["label"] == "CALL google_search").unwrap();
    assert_eq!(call_log["message"]["parent_id"], round, "a tool call nests under its round");
    let text: String =
        run.chunks.iter().filter(|c| c["type"] == "text").map(|c| c["message"]["text"].as_str().unwrap()).collect();
    assert_eq!(text, "Final answer: google_search found: rust plugins");
    let last = run.chunks.last().unwrap();
    assert_eq!(last["type"], "json");
    assert_eq!(last["message"]["json_object"]["execution_metadata"]["total_tokens"], 30);
    assert_eq!(last["message"]["json_object"]["execution_metadata"]["currency"], "USD");

    // Refusals: an unknown strategy, a missing required parameter.
    let mut unknown = data.clone();
    unknown["agent_strategy"] = json!("react");
    let refused = plugin.call("a2", unknown).await;
    assert_eq!(refused.error_type(), "ValueError");
    let mut missing = data.clone();
    missing["agent_strategy_params"].as_object_mut().unwrap().remove("query");
    let refused = plugin.call("a3", missing).await;
    assert_eq!(refused.error_type(), "ToolParameterValidationError");
    plugin.close().await;
}

/// A small site on 127.0.0.1: `/` links to `/a` and `/b` (and off-site), `/a` links back and to a
/// PDF, `/b` to a missing page. Every request must carry the bearer token; records the paths.
async fn site(token: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && socket.read(&mut byte).await.unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                log.lock().unwrap().push(path.clone());
                let authorized =
                    head.lines().any(|l| l.eq_ignore_ascii_case(&format!("authorization: Bearer {token}")));
                let (status, kind, body) = match (authorized, path.as_str()) {
                    (false, _) => ("401 Unauthorized", "text/plain", String::from("no")),
                    (true, "/") => (
                        "200 OK",
                        "text/html; charset=utf-8",
                        String::from(
                            "<html><head><title>Home &amp; more</title><meta name=\"description\" content=\"The start\"></head>\
                         <body><h1>Welcome</h1><p>Start here.</p><a href=\"/a\">A</a> <a href='b#top'>B</a> \
                         <a href=\"http://192.0.2.1/elsewhere\">off-site</a><script>var x = '<a href=\"/hidden\">';</script></body></html>",
                        ),
                    ),
                    (true, "/a") => (
                        "200 OK",
                        "text/html",
                        String::from(
                            "<html><head><title>Page A</title></head><body>Alpha text <a href=\"/\">home</a> <a href=\"/doc.pdf\">pdf</a></body></html>",
                        ),
                    ),
                    (true, "/b") => (
                        "200 OK",
                        "text/html",
                        String::from(
                            "<html><head><title>Page B</title></head><body>Beta text <a href=\"/gone\">gone</a></body></html>",
                        ),
                    ),
                    (true, "/doc.pdf") => ("200 OK", "application/pdf", String::from("%PDF-1.4")),
                    (true, _) => ("404 Not Found", "text/plain", String::from("missing")),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    (base, seen)
}

#[tokio::test]
async fn datasource_plugin_site_crawl() {
    let (base, requested) = site("crawl-secret").await;
    let mut plugin = Plugin::spawn("site_crawl");
    let credentials = json!({"access_token": "crawl-secret"});
    let validate = |credentials: &Value| json!({"type": "datasource", "action": "validate_datasource_credentials", "provider": "site_crawl", "credentials": credentials, "user_id": "u"});
    assert_eq!(plugin.call("d1", validate(&credentials)).await.one()["result"], true);
    let refused = plugin.call("d2", validate(&json!({"access_token": "nope"}))).await;
    assert_eq!(refused.error_type(), "ToolProviderCredentialValidationError");

    let crawl = |parameters: Value| {
        json!({"type": "datasource", "action": "invoke_website_datasource_get_crawl", "provider": "site_crawl",
            "datasource": "crawl", "credentials": credentials, "datasource_parameters": parameters, "user_id": "u"})
    };
    let run = plugin.call("d3", crawl(json!({"url": format!("{base}/"), "limit": 10}))).await;
    assert!(run.error.is_none(), "{:?}", run.error);
    assert!(run.chunks.len() >= 2);
    for snapshot in &run.chunks[..run.chunks.len() - 1] {
        assert_eq!(snapshot["result"]["status"], "processing");
        assert_eq!(snapshot["result"]["web_info_list"], json!([]));
    }
    let done = &run.chunks.last().unwrap()["result"];
    assert_eq!(done["status"], "completed");
    assert_eq!((done["total"].clone(), done["completed"].clone()), (json!(3), json!(3)));
    let pages = done["web_info_list"].as_array().unwrap();
    let titles: Vec<&str> = pages.iter().map(|p| p["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["Home & more", "Page A", "Page B"]);
    assert_eq!(pages[0]["description"], "The start");
    assert_eq!(pages[0]["content"], "Welcome Start here. A B off-site");
    assert_eq!(pages[1]["source_url"], format!("{base}/a"));
    assert_eq!(pages[2]["content"], "Beta text gone");
    let mut paths = requested.lock().unwrap().clone();
    paths.sort();
    assert_eq!(paths, ["/", "/a", "/b", "/doc.pdf", "/gone"], "the same site only, each page once, no script links");

    let limited = plugin.call("d4", crawl(json!({"url": format!("{base}/"), "limit": 2}))).await;
    assert_eq!(limited.chunks.last().unwrap()["result"]["completed"], 2);

    let missing = plugin.call("d5", crawl(json!({"url": format!("{base}/nowhere")}))).await;
    assert_eq!(missing.error_type(), "ValueError");
    assert!(missing.error.as_ref().unwrap()["message"].as_str().unwrap().contains("404"));
    let not_http = plugin.call("d6", crawl(json!({"url": "file:///etc/passwd"}))).await;
    assert_eq!(not_http.error_type(), "ValueError");
    let no_url = plugin.call("d7", crawl(json!({}))).await;
    assert_eq!(no_url.error_type(), "ToolParameterValidationError");
    let mut other = crawl(json!({"url": base}));
    other["datasource"] = json!("notion");
    assert_eq!(plugin.call("d8", other).await.error_type(), "ValueError");
    plugin.close().await;
}

/// A hostile OpenAI-compatible server: `/models` answers 401 quoting the key it got (some do),
/// `/chat/completions` answers by the model's name: a stream cut before `[DONE]`, a body that is
/// not a stream, a tool call numbered far past the others.
async fn hostile_api() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Head and (small) body: read until the body's length is in.
                loop {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request);
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let length = text[..head_end]
                            .lines()
                            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_owned))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= head_end + 4 + length {
                            break;
                        }
                    }
                }
                let text = String::from_utf8_lossy(&request).to_string();
                let key = text.lines().find_map(|l| l.strip_prefix("authorization: ")).unwrap_or("none").to_owned();
                let (status, kind, body) = if text.starts_with("GET /v1/models") {
                    (
                        "401 Unauthorized",
                        "application/json",
                        json!({"error": {"message": format!("Incorrect API key provided: {key}")}}).to_string(),
                    )
                } else if text.contains("\"cut\"") {
                    (
                        "200 OK",
                        "text/event-stream",
                        "data: {\"choices\":[{\"delta\":{\"content\":\"hel\"}}]}\n\ndata: {\"choi".to_owned(),
                    )
                } else if text.contains("\"plain\"") {
                    ("200 OK", "text/plain", "not a stream".to_owned())
                } else {
                    let far = r#"{"choices":[{"delta":{"tool_calls":[{"index":18446744073709551615,"id":"c","function":{"name":"f","arguments":""}}]}}]}"#;
                    ("200 OK", "text/event-stream", format!("data: {far}\n\ndata: [DONE]\n\n"))
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    base
}

#[tokio::test]
async fn model_plugin_refuses_what_a_hostile_api_answers() {
    let base = hostile_api().await;
    let key = "sk-hostile-SECRET-0123456789";
    let credentials = json!({"api_key": key, "endpoint_url": base});
    let mut plugin = Plugin::spawn("openai_compat");
    let data = json!({"type": "model", "action": "validate_provider_credentials", "provider": "openai_compat",
        "credentials": credentials, "user_id": "u-1"});
    let refused = plugin.call("h1", data).await;
    assert_eq!(refused.error_type(), "CredentialsValidateFailedError");
    let message = refused.error.unwrap()["message"].as_str().unwrap().to_owned();
    assert!(message.starts_with("Incorrect API key provided") && !message.contains("SECRET"), "{message}");
    let chat = |model: &str| {
        model_data(
            "invoke_llm",
            "llm",
            model,
            &credentials,
            json!({"prompt_messages": [{"role": "user", "content": "hi"}], "stream": true}),
        )
    };
    let cut = plugin.call("h2", chat("cut")).await;
    assert_eq!(cut.error_type(), "InvokeConnectionError", "a stream without its [DONE] is not a finished answer");
    let plain = plugin.call("h3", chat("plain")).await;
    assert_eq!(plain.error_type(), "InvokeBadRequestError");
    let far = plugin.call("h4", chat("far")).await;
    assert_eq!(far.error_type(), "InvokeBadRequestError", "a tool call index far out must not size our memory");
    plugin.close().await;
}
