//! The serverless transport on a real loopback socket, used the way Dify's serverless runtime uses
//! it (marketplace.md §3, daemon-protocol.md §7): many concurrent `POST /invoke` sessions, a client
//! that disconnects mid-stream, malformed bodies, `GET /health` under load.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    reason = "tests, benchmarks and examples fail loudly"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dify_plugin::{Action, ErrorData, Plugin, Reply, Request, ServeOptions, Session, reply};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct Echo {
    finished: AtomicUsize,
}

impl Plugin for Echo {
    async fn handle(&self, request: Request, session: &Session) -> Reply {
        let data: Value = request.parse().map_err(|e| ErrorData::new("BadData", e.to_string()))?;
        let result = match request.action().map(Action::as_str) {
            Some("echo") => reply(&json!({"session": session.id(), "n": data["n"]})),
            Some("sleep") => {
                tokio::time::sleep(Duration::from_millis(data["ms"].as_u64().unwrap_or(0))).await;
                reply(&json!({"slept": data["ms"]}))
            }
            Some("backwards") => match session.storage().exist("k").await {
                Ok(_) => reply(&json!("unexpected")),
                Err(err) => reply(&json!({"error": err.to_string()})),
            },
            Some("panic") => panic!("handler bug"),
            other => Err(ErrorData::new("NotImplementedError", format!("{other:?}"))),
        };
        self.finished.fetch_add(1, Ordering::SeqCst);
        result
    }
}

async fn start() -> (String, Arc<Echo>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let plugin = Arc::new(Echo::default());
    tokio::spawn(dify_plugin::serverless::serve_listener(
        listener,
        plugin.clone(),
        ServeOptions::default(),
        std::future::pending(),
    ));
    (address, plugin)
}

/// A minimal HTTP/1.1 exchange over a fresh connection: (status, content-type, body).
async fn http(address: &str, method: &str, path: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type: ").map(str::to_owned))
        .unwrap_or_default();
    let mut body = response[split..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, content_type, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16).unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn envelope(session: &str, data: Value) -> Vec<u8> {
    json!({"session_id": session, "conversation_id": null, "message_id": null, "app_id": null, "endpoint_id": null,
           "context": null, "event": "request", "data": data})
    .to_string()
    .into_bytes()
}

fn lines(body: &[u8]) -> Vec<Value> {
    body.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect()
}

#[tokio::test]
async fn invoke_streams_one_sessions_messages_ending_with_end() {
    let (address, _) = start().await;
    let (status, content_type, body) =
        http(&address, "POST", "/invoke?action=echo", &envelope("s-1", json!({"action": "echo", "n": 7}))).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/event-stream");
    assert_eq!(
        lines(&body),
        [
            json!({"event": "session", "session_id": "s-1", "data": {"type": "stream", "data": {"session": "s-1", "n": 7}}}),
            json!({"event": "session", "session_id": "s-1", "data": {"type": "end", "data": {}}}),
        ]
    );
}

#[tokio::test]
async fn errors_panics_and_backwards_calls_answer_like_stdio() {
    let (address, _) = start().await;
    let (_, _, body) = http(&address, "POST", "/invoke", &envelope("p", json!({"action": "panic"}))).await;
    let lines = lines(&body);
    assert_eq!(lines[0]["data"]["data"]["error_type"], "InternalError");
    assert_eq!(lines[1]["data"]["type"], "end");
    let (_, _, body) = http(&address, "POST", "/invoke", &envelope("b", json!({"action": "backwards"}))).await;
    assert_eq!(
        self::lines(&body)[0]["data"]["data"],
        json!({"error": "backwards calls are not available here: Dify's serverless runtime does not route backwards calls (storage, models, tools, apps) to a plugin served over HTTP; they work under the daemon (local) and over remote debugging"})
    );
}

#[tokio::test]
async fn many_concurrent_sessions_each_get_their_own_answer() {
    let (address, plugin) = start().await;
    let mut tasks = Vec::new();
    for n in 0..200 {
        let address = address.clone();
        tasks.push(tokio::spawn(async move {
            let (status, _, body) =
                http(&address, "POST", "/invoke", &envelope(&format!("c{n}"), json!({"action": "echo", "n": n}))).await;
            assert_eq!(status, 200);
            let lines = lines(&body);
            assert_eq!(lines.len(), 2);
            assert_eq!(lines[0]["data"]["data"], json!({"session": format!("c{n}"), "n": n}));
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(plugin.finished.load(Ordering::SeqCst), 200);
}

#[tokio::test]
async fn a_client_that_disconnects_mid_stream_costs_only_its_own_answer() {
    let (address, plugin) = start().await;
    let mut stream = TcpStream::connect(&address).await.unwrap();
    let body = envelope("gone", json!({"action": "sleep", "ms": 300}));
    let head = format!("POST /invoke HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    drop(stream);
    let (status, _, body) =
        http(&address, "POST", "/invoke", &envelope("next", json!({"action": "echo", "n": 1}))).await;
    assert_eq!((status, lines(&body).len()), (200, 2));
    // The abandoned session still ran to its end (its answer had nowhere to go).
    tokio::time::timeout(Duration::from_secs(5), async {
        while plugin.finished.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn malformed_bodies_and_unknown_routes_get_clear_statuses() {
    let (address, _) = start().await;
    for (body, reason) in [
        (&b"not json"[..], "body is not a JSON object"),
        (b"[1,2]", "body is not a JSON object"),
        (b"{\"event\":\"request\",\"data\":{}}", "envelope has no session_id"),
        (
            b"{\"session_id\":\"x\",\"event\":\"cancel\",\"data\":{}}",
            "unknown event \"cancel\": expected \"request\" or \"backwards_response\"",
        ),
        (b"{\"session_id\":\"x\",\"event\":\"request\",\"data\":[]}", "request has no data object"),
        (
            b"{\"session_id\":\"x\",\"event\":\"request\",\"data\":{",
            "body is not a request envelope (invalid JSON or a field of the wrong type at line 1, column 44)",
        ),
        (b"\xff\xfe{}", "body is not a JSON object"),
        (b"{\"a\":\"\xff\"}", "body is not UTF-8"),
    ] {
        let (status, content_type, answer) = http(&address, "POST", "/invoke", body).await;
        assert_eq!((status, content_type.as_str()), (400, "application/json"));
        assert_eq!(
            serde_json::from_slice::<Value>(&answer).unwrap(),
            json!({"errorType": "InvalidRequest", "errorMessage": reason})
        );
    }
    assert_eq!(http(&address, "GET", "/invoke", b"").await.0, 405);
    assert_eq!(http(&address, "GET", "/", b"").await.0, 404);
    let big = vec![b' '; dify_plugin::serverless::MAX_INVOKE_BODY + 1];
    assert_eq!(http(&address, "POST", "/invoke", &big).await.0, 413);
}

#[tokio::test]
async fn health_answers_ok_under_load() {
    let (address, _) = start().await;
    let mut load = Vec::new();
    for n in 0..50 {
        let address = address.clone();
        load.push(tokio::spawn(async move {
            http(&address, "POST", "/invoke", &envelope(&format!("l{n}"), json!({"action": "sleep", "ms": 200}))).await
        }));
    }
    for _ in 0..20 {
        let (status, _, body) = http(&address, "GET", "/health", b"").await;
        assert_eq!((status, body.as_slice()), (200, &b"OK"[..]));
    }
    for task in load {
        assert_eq!(task.await.unwrap().0, 200);
    }
}
