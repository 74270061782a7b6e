//! Typed backwards invocations in process (plugin-kinds.md §10): a plugin calls `llm` (streamed,
//! 100 chunks read as they come and joined), `system_summary` (one answer) and `moderation` (refused
//! by the daemon for a missing permission) through the same stream; a fake daemon side checks each
//! request's `type` and fields and answers as the daemon would. A detached session refuses every
//! call with `Unavailable`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    reason = "tests, benchmarks and examples fail loudly"
)]

use std::sync::Arc;
use std::time::Duration;

use dify_plugin::invocation::{LlmRequest, ModerationRequest, PromptMessage, SummaryRequest};
use dify_plugin::{BackwardsError, ErrorData, Plugin, Reply, Request, ServeOptions, Session, reply, serve};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

struct Caller;

impl Plugin for Caller {
    async fn handle(&self, _request: Request, session: &Session) -> Reply {
        let err = |e: BackwardsError| ErrorData::new("BackwardsError", e.to_string());
        let llm = LlmRequest::chat("openai", "gpt-4o", vec![PromptMessage::user("count")]);
        let mut stream = session.call_stream(&llm).await.map_err(err)?;
        // The first chunk is read before the rest are joined: events arrive as they come.
        let first = stream.next().await.unwrap().map_err(err)?;
        let rest = stream.text().await.map_err(err)?;
        let summary = session
            .call(&SummaryRequest { text: "long text".into(), instruction: "shorter".into() })
            .await
            .map_err(err)?;
        let refused = session
            .call(&ModerationRequest { provider: "openai".into(), model: "omni".into(), text: "hi".into() })
            .await
            .unwrap_err();
        reply(&json!({
            "first": first.delta.message.text(),
            "rest": rest.text,
            "finish": rest.finish_reason,
            "usage": rest.usage,
            "summary": summary.summary,
            "refused": refused.to_string(),
        }))
    }
}

#[tokio::test]
async fn typed_calls_stream_answer_and_fail_as_the_daemon_says() {
    let (mut to_plugin, plugin_in) = tokio::io::duplex(1 << 20);
    let (plugin_out, from_plugin) = tokio::io::duplex(1 << 20);
    let options = ServeOptions { backwards_timeout: Duration::from_secs(20), ..ServeOptions::default() };
    tokio::spawn(serve(BufReader::new(plugin_in), plugin_out, Arc::new(Caller), options, std::future::pending()));
    let request = json!({"session_id": "s", "event": "request", "data": {"action": "go"}});
    to_plugin.write_all(format!("{request}\n").as_bytes()).await.unwrap();
    let mut lines = BufReader::new(from_plugin).lines();
    let mut kinds = Vec::new();
    let result = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap().unwrap();
        let message: Value = serde_json::from_str(&line).unwrap();
        let data = &message["data"];
        match data["type"].as_str() {
            Some("invoke") => {
                let call = &data["data"];
                let kind = call["type"].as_str().unwrap().to_owned();
                let id = call["backwards_request_id"].as_str().unwrap();
                let answer = |event: &str, message: &str, body: Value| {
                    let line = json!({"session_id": "s", "event": "backwards_response",
                        "data": {"backwards_request_id": id, "event": event, "message": message, "data": body}});
                    line.to_string() + "\n"
                };
                let mut out = String::new();
                match kind.as_str() {
                    "llm" => {
                        assert_eq!(call["request"]["prompt_messages"], json!([{"role": "user", "content": "count"}]));
                        assert_eq!(call["request"]["mode"], "chat");
                        for i in 0..100 {
                            let mut delta =
                                json!({"index": i, "message": {"role": "assistant", "content": format!("{i},")}});
                            if i == 99 {
                                delta["finish_reason"] = json!("stop");
                                delta["usage"] = json!({"total_tokens": 100});
                            }
                            out += &answer("response", "stream", json!({"model": "gpt-4o", "delta": delta}));
                        }
                        out += &answer("end", "", Value::Null);
                    }
                    "system_summary" => {
                        assert_eq!(call["request"], json!({"text": "long text", "instruction": "shorter"}));
                        out += &answer("response", "struct", json!({"summary": "short"}));
                        out += &answer("end", "", Value::Null);
                    }
                    "moderation" => {
                        out += &answer(
                            "error",
                            "permission denied, you need to enable model access in plugin manifest",
                            Value::Null,
                        );
                        out += &answer("end", "", Value::Null);
                    }
                    other => panic!("unexpected backwards type {other}"),
                }
                kinds.push(kind);
                to_plugin.write_all(out.as_bytes()).await.unwrap();
            }
            Some("stream") => break data["data"].clone(),
            Some("error") => panic!("{data}"),
            _ => {}
        }
    };
    assert_eq!(kinds, ["llm", "system_summary", "moderation"]);
    let joined: String = (1..100).map(|i| format!("{i},")).collect();
    assert_eq!(
        result,
        json!({
            "first": "0,",
            "rest": joined,
            "finish": "stop",
            "usage": {"total_tokens": 100},
            "summary": "short",
            "refused": "the daemon answered with an error: permission denied, you need to enable model access in plugin manifest",
        })
    );
}

#[tokio::test]
async fn a_detached_session_refuses_backwards_calls() {
    let session = Session::detached();
    assert!(!session.can_call_back());
    let err = session.call(&SummaryRequest { text: "t".into(), instruction: "i".into() }).await.unwrap_err();
    assert!(matches!(err, BackwardsError::Unavailable(_)), "{err}");
    let llm = LlmRequest::chat("p", "m", vec![]);
    assert!(matches!(session.call_stream(&llm).await.unwrap_err(), BackwardsError::Unavailable(_)));
}
