//! The [`Router`] in process (`serve` over `tokio::io::duplex`): what happens to output too long
//! for one line (split into blob chunks or body chunks, or refused with an error, never dropped;
//! issue #19 item 6), messages streamed before an error, the fallback for other actions, and the
//! check of routes against a declaration.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    reason = "tests, benchmarks and examples fail loudly"
)]

use std::sync::Arc;

use dify_plugin::endpoint::{EndpointRequest, EndpointResponse};
use dify_plugin::tool::{BlobMeta, ToolMessage, ToolRequest};
use dify_plugin::{
    Declaration, ErrorData, Plugin, ProviderKind, Reply, Request, Router, ServeOptions, Session, ToolOutput, reply,
    serve, wire,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

struct Trigger;

impl Plugin for Trigger {
    async fn handle(&self, _request: Request, _session: &Session) -> Reply {
        reply(&json!({"result": true}))
    }
}

async fn huge_text(_: ToolRequest, _: ToolOutput) -> Result<Vec<ToolMessage>, ErrorData> {
    Ok(vec![ToolMessage::text("first"), ToolMessage::text("x".repeat(5 << 20)), ToolMessage::text("never")])
}

async fn huge_blob(_: ToolRequest, _: ToolOutput) -> Result<Vec<ToolMessage>, ErrorData> {
    Ok(vec![ToolMessage::blob(vec![7u8; 5 << 20], BlobMeta::default())])
}

async fn streams_then_fails(_: ToolRequest, out: ToolOutput) -> Result<Vec<ToolMessage>, ErrorData> {
    out.send(ToolMessage::text("partial")).await?;
    Err(ErrorData::new("ToolInvokeError", "upstream failed"))
}

async fn big_body(_: EndpointRequest, _: Session) -> Result<EndpointResponse, ErrorData> {
    let (response, body) = EndpointResponse::stream(201, 2);
    tokio::spawn(async move {
        let _ = body.send(vec![b'a'; 3 << 20]).await;
    });
    Ok(response)
}

async fn pieces(_: EndpointRequest, _: Session) -> Result<EndpointResponse, ErrorData> {
    let (response, body) = EndpointResponse::stream(200, 4);
    tokio::spawn(async move {
        for piece in ["a", "b", "c"] {
            let _ = body.send(piece.as_bytes().to_vec()).await;
        }
    });
    Ok(response)
}

async fn small(_: EndpointRequest, _: Session) -> Result<EndpointResponse, ErrorData> {
    Ok(EndpointResponse::text(200, "ok"))
}

fn router() -> Router {
    Router::new()
        .tool("p", "huge_text", huge_text)
        .tool("p", "huge_blob", huge_blob)
        .tool("p", "partial", streams_then_fails)
        .endpoint("GET", "/big", big_body)
        .and_then(|r| r.endpoint("GET", "/pieces", pieces))
        .and_then(|r| r.endpoint("GET", "/small", small))
        .unwrap()
        .fallback(Trigger)
}

/// Runs one request through a router served in process; returns the session's `data` messages.
async fn run(data: Value) -> Vec<(Value, usize)> {
    run_timed(data).await.into_iter().map(|(m, len, _)| (m, len)).collect()
}

/// [`run`], with the (tokio) time each message arrived.
async fn run_timed(data: Value) -> Vec<(Value, usize, tokio::time::Instant)> {
    let (mut daemon_in, plugin_in) = tokio::io::duplex(1 << 20);
    let (plugin_out, daemon_out) = tokio::io::duplex(1 << 20);
    let served = tokio::spawn(serve(
        BufReader::new(plugin_in),
        plugin_out,
        Arc::new(router()),
        ServeOptions::default(),
        std::future::pending(),
    ));
    let line = json!({"session_id": "s", "event": "request", "data": data}).to_string();
    daemon_in.write_all(format!("{line}\n").as_bytes()).await.unwrap();
    let mut lines = BufReader::with_capacity(8 << 20, daemon_out).lines();
    let mut messages = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        assert!(line.len() < wire::MAX_OUTBOUND_LINE);
        let value: Value = serde_json::from_str(&line).unwrap();
        if value["event"] == "session" {
            let end = value["data"]["type"] == "end";
            messages.push((value["data"].clone(), line.len(), tokio::time::Instant::now()));
            if end {
                break;
            }
        }
    }
    drop(daemon_in);
    served.await.unwrap().unwrap();
    messages
}

fn tool(name: &str) -> Value {
    json!({"action": "invoke_tool", "provider": "p", "tool": name, "tool_parameters": {}, "credentials": null})
}

#[tokio::test]
async fn an_oversized_message_is_an_error_not_dropped() {
    let messages = run(tool("huge_text")).await;
    let types: Vec<&str> = messages.iter().map(|(m, _)| m["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["stream", "error", "end"]);
    assert_eq!(messages[0].0["data"]["message"]["text"], "first");
    assert_eq!(messages[1].0["data"]["error_type"], "OutputTooLargeError");
}

#[tokio::test]
async fn a_large_blob_is_split_into_chunks() {
    let messages = run(tool("huge_blob")).await;
    // 5 MiB in 8 KiB pieces, the empty final chunk, end.
    assert_eq!(messages.len(), 640 + 1 + 1);
    assert!(messages[..641].iter().all(|(m, _)| m["data"]["type"] == "blob_chunk"));
    assert_eq!(messages[640].0["data"]["message"]["end"], true);
}

#[tokio::test]
async fn messages_sent_before_an_error_stay_sent() {
    let messages = run(tool("partial")).await;
    assert_eq!(messages[0].0["data"]["message"]["text"], "partial");
    assert_eq!(
        messages[1].0,
        json!({"type": "error", "data": {"error_type": "ToolInvokeError", "message": "upstream failed", "args": {}}})
    );
    assert_eq!(messages[2].0["type"], "end");
}

#[tokio::test]
async fn a_large_streamed_body_goes_in_result_chunks() {
    let raw = hex::encode("GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    let messages = run(json!({"action": "invoke_endpoint", "raw_http_request": raw, "settings": {}})).await;
    assert_eq!(messages[0].0["data"], json!({"status": 201, "headers": {}, "result": ""}));
    let body: usize =
        messages[1..messages.len() - 1].iter().map(|(m, _)| m["data"]["result"].as_str().unwrap().len() / 2).sum();
    assert_eq!((messages.len(), body), (1 + 3 + 1, 3 << 20));
}

fn get(path: &str) -> Value {
    let raw = hex::encode(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
    json!({"action": "invoke_endpoint", "raw_http_request": raw, "settings": {}})
}

/// The daemon drops every body piece after the first `result` chunk when `end` is already in by the
/// time it has read that chunk (`ENDPOINT_END_GRACE`); seen on the real daemon with the neko example.
#[tokio::test(start_paused = true)]
async fn end_waits_after_a_body_in_several_chunks() {
    let messages = run_timed(get("/pieces")).await;
    let results: Vec<&str> =
        messages[..messages.len() - 1].iter().map(|(m, _, _)| m["data"]["result"].as_str().unwrap()).collect();
    assert_eq!(results, ["", "61", "62", "63"]);
    let (head, end) = (messages[0].2, messages[messages.len() - 1].2);
    assert_eq!(messages[messages.len() - 1].0["type"], "end");
    assert!(end - head >= dify_plugin::ENDPOINT_END_GRACE, "end after {:?}", end - head);
}

#[tokio::test(start_paused = true)]
async fn a_body_in_one_chunk_ends_at_once() {
    let messages = run_timed(get("/small")).await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].0["data"]["result"], hex::encode("ok"));
    assert!(messages[1].2 - messages[0].2 < dify_plugin::ENDPOINT_END_GRACE);
}

#[tokio::test]
async fn other_actions_go_to_the_fallback() {
    let messages = run(json!({"action": "dispatch_trigger_event", "provider": "t"})).await;
    assert_eq!(messages[0].0, json!({"type": "stream", "data": {"result": true}}));
}

#[test]
fn routes_are_checked_against_the_declaration() {
    let declaration = Declaration::new(json!({}))
        .with_provider(ProviderKind::Tool, json!({"identity": {"name": "p"}, "tools": [{"identity": {"name": "huge_text"}}, {"identity": {"name": "missing"}}]}))
        .with_provider(
            ProviderKind::Endpoint,
            json!({"endpoints": [{"path": "/big", "method": "GET"}, {"path": "/pieces", "method": "GET"}, {"path": "/small", "method": "GET"}]}),
        );
    let mismatch = router().check(&declaration).unwrap_err();
    let mut problems = mismatch.0;
    problems.sort();
    assert_eq!(
        problems,
        [
            "tool p/huge_blob has a handler but is not declared",
            "tool p/missing is declared but has no handler",
            "tool p/partial has a handler but is not declared",
        ]
    );
    assert!(Router::new().endpoint("HEAD", "/x", big_body).is_err());
    assert!(Router::new().endpoint("GET", "x", big_body).is_err());
}
