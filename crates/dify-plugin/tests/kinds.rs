//! The crate's example plugins of each kind (`examples/google_search.rs` tools,
//! `examples/neko.rs` endpoints, `examples/duck_tools.rs` both), each run as the daemon runs a
//! plugin: a child process over real stdio pipes with `INSTALL_METHOD=local`, fed request lines
//! shaped as the daemon writes them (daemon-protocol.md §2.2: its key order, `data` keys sorted)
//! and checked line by line against the exact answers. `duck_tools` also registers over remote
//! debugging against a loopback TCP stand-in for the daemon (§6.3).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    reason = "tests, benchmarks and examples fail loudly"
)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

fn example(name: &str) -> PathBuf {
    // This test runs from target/<profile>/deps/; cargo puts examples in target/<profile>/examples/.
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_owned();
    let path = deps.parent().unwrap().join("examples").join(name);
    assert!(path.is_file(), "{} is missing: cargo test builds examples", path.display());
    path
}

/// A plugin process under test, spoken to like the daemon does.
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

    /// Sends one request line and returns the session's lines up to and including its `end`
    /// (heartbeats and logs skipped).
    async fn call(&mut self, session: &str, endpoint_id: Option<&str>, data: Value) -> Vec<String> {
        // The daemon's envelope, keys in its order (§2.2); serde_json sorts `data`'s keys as Go does.
        let line = format!(
            r#"{{"session_id":"{session}","conversation_id":null,"message_id":null,"app_id":null,"endpoint_id":{},"context":null,"event":"request","data":{data}}}"#,
            endpoint_id.map_or("null".to_owned(), |id| format!("{id:?}")),
        );
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.write_all(b"\n").await.unwrap();
        let mut lines = Vec::new();
        loop {
            let next = tokio::time::timeout(Duration::from_secs(20), self.stdout.next_line()).await;
            let line = next.expect("an answer within 20 s").unwrap().expect("the plugin is still running");
            let value: Value = serde_json::from_str(&line).unwrap();
            if value["event"] != "session" {
                continue;
            }
            assert_eq!(value["session_id"], session, "{line}");
            let end = value["data"]["type"] == "end";
            lines.push(line);
            if end {
                return lines;
            }
        }
    }

    async fn close(mut self) {
        drop(self.stdin);
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "the plugin exits 0 at the end of its input");
    }
}

fn stream(session: &str, chunk: &str) -> String {
    format!(r#"{{"event":"session","session_id":"{session}","data":{{"type":"stream","data":{chunk}}}}}"#)
}

fn error(session: &str, error_type: &str, message: &str) -> String {
    format!(
        r#"{{"event":"session","session_id":"{session}","data":{{"type":"error","data":{{"error_type":"{error_type}","message":{message:?},"args":{{}}}}}}}}"#
    )
}

fn end(session: &str) -> String {
    format!(r#"{{"event":"session","session_id":"{session}","data":{{"type":"end","data":{{}}}}}}"#)
}

fn tool_data(provider: &str, tool: &str, credentials: Value, parameters: Value) -> Value {
    json!({"action": "invoke_tool", "credential_type": "api-key", "credentials": credentials, "provider": provider,
           "tool": tool, "tool_parameters": parameters, "type": "tool", "user_id": "u-1"})
}

/// `invoke_endpoint` data (plugin-kinds.md §3.2): the request as Go's `http.Request.Write`
/// writes it, with the daemon's `Dify-Hook-*` headers, hex encoded; the decrypted settings.
fn endpoint_data(head: &str, body: &str, settings: Value) -> Value {
    let raw = format!(
        "{head}\r\nHost: dify.test\r\nUser-Agent: curl/8.5.0\r\nDify-Hook-Id: h-1\r\nDify-Hook-Url: https://dify.test/e/h-1\r\n\r\n{body}"
    );
    json!({"action": "invoke_endpoint", "raw_http_request": hex::encode(raw), "settings": settings, "type": "endpoint", "user_id": ""})
}

#[tokio::test]
async fn tool_plugin_google_search() {
    let mut plugin = Plugin::spawn("google_search");
    let key = json!({"serpapi_api_key": "serp-1"});
    let validate = |credentials: Value| json!({"action": "validate_tool_credentials", "credentials": credentials, "provider": "google", "type": "tool", "user_id": "u-1"});
    assert_eq!(
        plugin.call("v-1", None, validate(key.clone())).await,
        [stream("v-1", r#"{"result":true}"#), end("v-1")]
    );
    assert_eq!(
        plugin.call("v-2", None, validate(json!({"serpapi_api_key": "nope"}))).await,
        [error("v-2", "ToolProviderCredentialValidationError", "the SerpApi API key is invalid"), end("v-2")]
    );
    assert_eq!(
        plugin.call("v-3", None, validate(Value::Null)).await,
        [error("v-3", "ToolProviderCredentialValidationError", "credential `serpapi_api_key` is missing"), end("v-3")]
    );

    let search = plugin
        .call(
            "t-1",
            None,
            tool_data("google", "google_search", key.clone(), json!({"query": "dify plugins", "num": 1})),
        )
        .await;
    assert_eq!(
        search,
        [
            stream(
                "t-1",
                r#"{"type":"json","message":{"json_object":{"organic_results":[{"link":"https://dify.ai","snippet":"Dify is an open-source platform for LLM apps.","title":"Dify"}],"query":"dify plugins"}},"meta":null}"#
            ),
            end("t-1")
        ]
    );
    assert_eq!(
        plugin.call("t-2", None, tool_data("google", "google_search", key.clone(), json!({"num": 1}))).await,
        [
            error("t-2", "ToolParameterValidationError", "missing required parameter `query` of tool `google_search`"),
            end("t-2")
        ]
    );
    assert_eq!(
        plugin
            .call("t-3", None, tool_data("google", "google_search", key.clone(), json!({"query": "x", "num": "many"})))
            .await[0],
        error(
            "t-3",
            // serde quotes the value; the runtime leaves it out (a parameter may be a secret).
            "ToolParameterValidationError",
            "parameter `num` is not usize: invalid type: string …, expected usize"
        )
    );
    assert_eq!(
        plugin.call("t-4", None, tool_data("google", "bing_search", key.clone(), json!({}))).await,
        [error("t-4", "ValueError", "Tool `bing_search` not found for provider `google`"), end("t-4")]
    );
    assert_eq!(
        plugin.call("t-5", None, tool_data("yahoo", "search", key.clone(), json!({}))).await,
        [error("t-5", "ValueError", "Provider `yahoo` not found"), end("t-5")]
    );

    // Every message type, in order; the blob's id is random, so it is replaced before comparing.
    let report = plugin.call("t-6", None, tool_data("google", "report", key.clone(), json!({"query": "dify"}))).await;
    let blob_id = serde_json::from_str::<Value>(&report[10]).unwrap()["data"]["data"]["message"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(blob_id.len(), 32);
    let report: Vec<String> = report.iter().map(|l| l.replace(&blob_id, "ID")).collect();
    let csv = base64_of("Dify,https://dify.ai\nDify plugins,https://docs.dify.ai/plugins\n");
    let expected = [
        stream(
            "t-6",
            r#"{"type":"log","message":{"data":{"query":"dify"},"error":null,"id":"search","label":"search dify","metadata":null,"parent_id":null,"status":"start"},"meta":null}"#,
        ),
        stream(
            "t-6",
            r#"{"type":"log","message":{"data":{"count":2},"error":null,"id":"search","label":"search dify","metadata":null,"parent_id":null,"status":"success"},"meta":null}"#,
        ),
        stream("t-6", r#"{"type":"text","message":{"text":"2 results for dify"},"meta":null}"#),
        stream(
            "t-6",
            r#"{"type":"variable","message":{"stream":true,"variable_name":"summary","variable_value":"Dify; "},"meta":null}"#,
        ),
        stream(
            "t-6",
            r#"{"type":"variable","message":{"stream":true,"variable_name":"summary","variable_value":"Dify plugins; "},"meta":null}"#,
        ),
        stream(
            "t-6",
            r#"{"type":"variable","message":{"stream":false,"variable_name":"count","variable_value":2},"meta":null}"#,
        ),
        stream("t-6", r#"{"type":"link","message":{"text":"https://dify.ai"},"meta":null}"#),
        stream("t-6", r#"{"type":"image","message":{"text":"https://dify.ai/logo.png"},"meta":null}"#),
        stream(
            "t-6",
            r#"{"type":"retriever_resources","message":{"context":"dify","retriever_resources":[{"content":"Dify is an open-source platform for LLM apps.","document_name":"Dify","position":1},{"content":"Plugins extend Dify with tools, endpoints and models.","document_name":"Dify plugins","position":2}]},"meta":null}"#,
        ),
        stream(
            "t-6",
            &format!(
                r#"{{"type":"blob_chunk","message":{{"blob":"{csv}","end":false,"id":"ID","sequence":0,"total_length":63}},"meta":{{"filename":"results.csv","mime_type":"text/csv"}}}}"#
            ),
        ),
        stream(
            "t-6",
            r#"{"type":"blob_chunk","message":{"blob":"","end":true,"id":"ID","sequence":1,"total_length":63},"meta":{"filename":"results.csv","mime_type":"text/csv"}}"#,
        ),
        end("t-6"),
    ];
    assert_eq!(report, expected);

    // Never answered by the Python SDK; here the declared parameters.
    let runtime = plugin
        .call("r-1", None, json!({"action": "get_tool_runtime_parameters", "credentials": key, "provider": "google", "tool": "google_search", "type": "tool", "user_id": "u-1"}))
        .await;
    let chunk: Value = serde_json::from_str(&runtime[0]).unwrap();
    let names: Vec<&str> =
        chunk["data"]["data"]["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["query", "num"]);
    assert_eq!(runtime[1], end("r-1"));

    assert_eq!(
        plugin.call("x-1", None, json!({"action": "invoke_llm", "type": "model", "user_id": ""})).await,
        [error("x-1", "NotImplementedError", "action invoke_llm is not served by this plugin"), end("x-1")]
    );
    plugin.close().await;
}

fn base64_of(text: &str) -> String {
    use std::fmt::Write;
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                let _ = write!(out, "=");
            }
        }
    }
    out
}

#[tokio::test]
async fn endpoint_plugin_neko() {
    let mut plugin = Plugin::spawn("neko");
    let settings = json!({"greeting": "meow"});
    let duck = plugin.call("e-1", Some("ep-1"), endpoint_data("GET /duck/app-1 HTTP/1.1", "", settings.clone())).await;
    assert_eq!(
        duck,
        [
            stream("e-1", r#"{"status":200,"headers":{"Content-Type":"text/html"},"result":""}"#),
            stream("e-1", &format!(r#"{{"result":"{}"}}"#, hex::encode("app-1 <br>"))),
            stream("e-1", &format!(r#"{{"result":"{}"}}"#, hex::encode("meow <br>"))),
            stream("e-1", &format!(r#"{{"result":"{}"}}"#, hex::encode("bye"))),
            end("e-1"),
        ]
    );
    let body = r#"{"hello":"world"}"#;
    let head =
        format!("POST /echo?q=a%20b HTTP/1.1\r\nContent-Length: {}\r\nContent-Type: application/json", body.len());
    let echo = plugin.call("e-2", Some("ep-1"), endpoint_data(&head, body, settings.clone())).await;
    let answer =
        r#"{"body":{"hello":"world"},"greeting":"meow","hook":"h-1","method":"POST","path":"/echo","query":"a b"}"#;
    assert_eq!(
        echo,
        [
            stream(
                "e-2",
                &format!(
                    r#"{{"status":200,"headers":{{"Content-Type":"application/json"}},"result":"{}"}}"#,
                    hex::encode(answer)
                )
            ),
            end("e-2"),
        ]
    );
    let bad = plugin.call("e-3", Some("ep-1"), endpoint_data("POST /echo HTTP/1.1", "not json", json!({}))).await;
    let expected_body = hex::encode("the body is not JSON: expected ident at line 1 column 2");
    assert_eq!(
        bad,
        [
            stream(
                "e-3",
                &format!(
                    r#"{{"status":500,"headers":{{"Content-Type":"text/plain; charset=utf-8"}},"result":"{expected_body}"}}"#
                )
            ),
            end("e-3"),
        ]
    );
    let missing = plugin.call("e-4", Some("ep-1"), endpoint_data("GET /cat HTTP/1.1", "", json!({}))).await;
    assert_eq!(
        missing,
        [
            stream(
                "e-4",
                &format!(
                    r#"{{"status":404,"headers":{{"Content-Type":"text/plain; charset=utf-8"}},"result":"{}"}}"#,
                    hex::encode("Not Found")
                )
            ),
            end("e-4"),
        ]
    );
    let wrong_method = plugin.call("e-5", Some("ep-1"), endpoint_data("DELETE /echo HTTP/1.1", "", json!({}))).await;
    assert_eq!(
        wrong_method[0],
        stream(
            "e-5",
            &format!(
                r#"{{"status":405,"headers":{{"Content-Type":"text/plain; charset=utf-8","Allow":"POST"}},"result":"{}"}}"#,
                hex::encode("Method Not Allowed")
            )
        )
    );
    plugin.close().await;
}

#[tokio::test]
async fn tools_and_endpoint_plugin_duck_tools() {
    let mut plugin = Plugin::spawn("duck_tools");
    assert_eq!(
        plugin.call("d-1", None, tool_data("duck", "quack", Value::Null, json!({"times": 2}))).await,
        [stream("d-1", r#"{"type":"text","message":{"text":"quack quack"},"meta":null}"#), end("d-1")]
    );
    // A provider without credentials: validation passes.
    assert_eq!(
        plugin
            .call("d-2", None, json!({"action": "validate_tool_credentials", "credentials": {}, "provider": "duck", "type": "tool", "user_id": ""}))
            .await,
        [stream("d-2", r#"{"result":true}"#), end("d-2")]
    );
    assert_eq!(
        plugin.call("d-3", Some("ep-9"), endpoint_data("GET /pond/3 HTTP/1.1", "", json!({}))).await,
        [
            stream(
                "d-3",
                &format!(
                    r#"{{"status":200,"headers":{{"Content-Type":"text/plain; charset=utf-8"}},"result":"{}"}}"#,
                    hex::encode("3 ducks in the pond")
                )
            ),
            end("d-3"),
        ]
    );
    // `<int:ducks>` does not match a word.
    assert!(
        plugin.call("d-4", Some("ep-9"), endpoint_data("GET /pond/many HTTP/1.1", "", json!({}))).await[0]
            .contains(r#""status":404"#)
    );
    plugin.close().await;
}

/// Remote debugging registers both kinds, in the daemon's order, each as an array with its
/// children inlined (daemon-protocol.md §6.3, plugin-kinds.md §11); then requests flow.
#[tokio::test]
async fn tools_and_endpoint_plugin_registers_both_kinds_remotely() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let mut child = Command::new(example("duck_tools"))
        .env("INSTALL_METHOD", "remote")
        .env("REMOTE_INSTALL_URL", &address)
        .env("REMOTE_INSTALL_KEY", "key-1")
        .env("REMOTE_INSTALL_REJECTION_WINDOW_MS", "100")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (socket, _) = tokio::time::timeout(Duration::from_secs(20), listener.accept()).await.unwrap().unwrap();
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut registration = Vec::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap().unwrap();
        if line.is_empty() {
            continue;
        }
        let message: Value = serde_json::from_str(&line).unwrap();
        let done = message["type"] == "end";
        registration.push(message);
        if done {
            break;
        }
    }
    let types: Vec<&str> = registration.iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["handshake", "manifest_declaration", "tool_declaration", "endpoint_declaration", "asset_chunk", "end"]
    );
    assert_eq!(registration[0]["data"], json!({"key": "key-1"}));
    assert_eq!(
        registration[1]["data"]["plugins"],
        json!({"tools": ["provider/duck.yaml"], "endpoints": ["group/duck.yaml"]})
    );
    let tools = &registration[2]["data"];
    assert_eq!(tools.as_array().unwrap().len(), 1);
    assert_eq!(tools[0]["identity"]["name"], "duck");
    assert_eq!(tools[0]["tools"][0]["identity"]["name"], "quack", "tools are inlined objects, not paths");
    assert_eq!(
        registration[3]["data"],
        json!([{"settings": [], "endpoints": [{"path": "/pond/<int:ducks>", "method": "GET"}]}])
    );
    assert_eq!(registration[4]["data"]["filename"], "icon.svg");
    assert_eq!(registration[4]["data"]["end"], true);

    let request = r#"{"session_id":"rt-1","conversation_id":null,"message_id":null,"app_id":null,"endpoint_id":null,"context":null,"event":"request","data":{"action":"invoke_tool","credentials":null,"provider":"duck","tool":"quack","tool_parameters":{"times":1},"type":"tool","user_id":""}}"#;
    write.write_all(format!("{request}\n").as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    while answer.len() < 2 {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap().unwrap();
        if line.contains(r#""session_id":"rt-1""#) {
            answer.push(line);
        }
    }
    assert_eq!(answer, [stream("rt-1", r#"{"type":"text","message":{"text":"quack"},"meta":null}"#), end("rt-1")]);
    child.kill().await.unwrap();
}

/// Each example's YAML passes the build-time checks and embeds (what a plugin's `build.rs` does).
#[test]
fn example_declarations_embed() {
    for name in
        ["google_search", "neko", "duck_tools", "echo_trigger", "openai_compat", "function_calling", "site_crawl"]
    {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples").join(name);
        let out = std::env::temp_dir().join(format!("dify-plugin-embed-{}-{name}", std::process::id()));
        let files = dify_plugin::build::embed_into(&dir, &out).unwrap();
        assert!(files.len() >= 3, "{name}: {files:?}");
        let json = std::fs::read_to_string(out.join("dify_plugin/declaration.json")).unwrap();
        let declaration = dify_plugin::Declaration::from_embedded(&json, &[]).unwrap();
        assert!(!declaration.providers.is_empty());
        let _ = std::fs::remove_dir_all(out);
    }
    // The model provider's predefined models are inlined, in `_position.yaml` order, with the
    // position kept for remote registration (plugin-kinds.md §11).
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/openai_compat");
    let loaded = dify_plugin::build::load(&dir).unwrap();
    let provider = &loaded.declaration.providers[0].1;
    let models: Vec<(&str, &str)> = provider["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["model_type"].as_str().unwrap(), m["model"].as_str().unwrap()))
        .collect();
    assert_eq!(
        models,
        [
            ("llm", "gpt-4o-mini"),
            ("llm", "gpt-4.1-nano"),
            ("moderation", "omni-moderation-latest"),
            ("rerank", "rerank-lite"),
            ("speech2text", "whisper-1"),
            ("text-embedding", "text-embedding-3-small"),
            ("tts", "tts-1"),
        ]
    );
    assert_eq!(provider["position"]["llm"], json!(["gpt-4o-mini", "gpt-4.1-nano"]));
    assert!(loaded.files.iter().any(|f| f.ends_with("models/llm/_position.yaml")), "packaged with the plugin");
}
