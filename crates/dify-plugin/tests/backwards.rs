//! Backwards calls in process (daemon-protocol.md §4): a session calls `storage` through the same
//! stream, a fake daemon side answers (or not), and the answer reaches only the session that asked,
//! matched by `backwards_request_id`. Hits, misses, errors, garbled and unknown answers, slow
//! answers (timeout), and the end of the connection.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    reason = "tests, benchmarks and examples fail loudly"
)]

use std::sync::Arc;
use std::time::Duration;

use dify_plugin::host::MemoryStorage;
use dify_plugin::{Action, BackwardsError, ErrorData, Plugin, Reply, Request, ServeOptions, Session, reply, serve};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::sync::mpsc;

/// `roundtrip` runs exist/set/get/exist/del/get on `data.key`; `exist` runs one exist.
struct StoragePlugin;

impl Plugin for StoragePlugin {
    async fn handle(&self, request: Request, session: &Session) -> Reply {
        let data: Value = request.parse().map_err(|e| ErrorData::new("BadData", e.to_string()))?;
        let key = data["key"].as_str().unwrap_or("k");
        let storage = session.storage();
        let show = |r: Result<Value, BackwardsError>| match r {
            Ok(v) => v,
            Err(e) => json!({"error": e.to_string()}),
        };
        match request.action().map(Action::as_str) {
            Some("roundtrip") => {
                let before = show(storage.exist(key).await.map(Value::from));
                let set = show(storage.set(key, b"\x00value\xff").await.map(|()| json!("ok")));
                let got = show(storage.get(key).await.map(|v| json!(v)));
                let after = show(storage.exist(key).await.map(Value::from));
                let del = show(storage.del(key).await.map(|()| json!("ok")));
                let missing = show(storage.get(key).await.map(|v| json!(v)));
                reply(&json!([before, set, got, after, del, missing]))
            }
            Some("exist") => {
                let storage = match data["timeout_ms"].as_u64() {
                    Some(ms) => storage.within(Duration::from_millis(ms)),
                    None => storage,
                };
                reply(&show(storage.exist(key).await.map(Value::from)))
            }
            other => Err(ErrorData::new("NotImplementedError", format!("{other:?}"))),
        }
    }
}

/// How the fake daemon answers each backwards call.
#[derive(Clone, Copy)]
enum Daemon {
    Storage,
    Deny,
    Silent,
    Garbled,
    WrongId,
}

struct Harness {
    input: mpsc::UnboundedSender<Vec<u8>>,
    results: mpsc::UnboundedReceiver<(String, Value)>,
    invokes: Arc<std::sync::atomic::AtomicUsize>,
}

fn start(daemon: Daemon, storage: MemoryStorage) -> Harness {
    let (to_plugin, plugin_in) = tokio::io::duplex(1 << 16);
    let (plugin_out, from_plugin) = tokio::io::duplex(1 << 16);
    let options = ServeOptions { backwards_timeout: Duration::from_secs(5), ..ServeOptions::default() };
    tokio::spawn(serve(
        BufReader::new(plugin_in),
        plugin_out,
        Arc::new(StoragePlugin),
        options,
        std::future::pending(),
    ));
    let (input, mut lines) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        let mut to_plugin: DuplexStream = to_plugin;
        while let Some(line) = lines.recv().await {
            if to_plugin.write_all(&line).await.is_err() {
                return;
            }
        }
    });
    let (results_tx, results) = mpsc::unbounded_channel();
    let invokes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = invokes.clone();
    let answer = input.clone();
    tokio::spawn(async move {
        let mut reader = BufReader::new(from_plugin);
        let mut line = String::new();
        while reader.read_line(&mut line).await.unwrap_or(0) > 0 {
            let message: Value = serde_json::from_str(&line).unwrap();
            line.clear();
            if message["event"] != "session" {
                continue;
            }
            let session = message["session_id"].as_str().unwrap().to_owned();
            let data = &message["data"];
            match data["type"].as_str() {
                Some("stream") => {
                    let _ = results_tx.send((session, data["data"].clone()));
                }
                Some("invoke") => {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    assert_eq!(data["data"]["type"], "storage");
                    let id = data["data"]["backwards_request_id"].as_str().unwrap().to_owned();
                    let respond = |event: &str, message: &str, body: Value, id: &str| {
                        let line = json!({"session_id": session, "event": "backwards_response",
                            "data": {"backwards_request_id": id, "event": event, "message": message, "data": body}});
                        let _ = answer.send((line.to_string() + "\n").into_bytes());
                    };
                    match daemon {
                        Daemon::Silent => {}
                        Daemon::Deny => {
                            respond(
                                "error",
                                "permission denied, you need to enable storage access in plugin manifest",
                                Value::Null,
                                &id,
                            );
                            respond("end", "", Value::Null, &id);
                        }
                        Daemon::Garbled => {
                            respond("response", "struct", json!({"unexpected": [1, 2]}), &id);
                            respond("end", "", Value::Null, &id);
                        }
                        Daemon::WrongId => {
                            respond("response", "struct", json!({"data": true}), "someone-else");
                            respond("end", "", Value::Null, "someone-else");
                        }
                        Daemon::Storage => match storage.answer(&data["data"]["request"]) {
                            Ok(body) => {
                                respond("response", "struct", body, &id);
                                respond("end", "", Value::Null, &id);
                            }
                            Err(refusal) => {
                                respond("error", &refusal.message, Value::Null, &id);
                                respond("end", "", Value::Null, &id);
                            }
                        },
                    }
                }
                _ => {}
            }
        }
    });
    Harness { input, results, invokes }
}

impl Harness {
    fn send(&self, session: &str, data: Value) {
        let line = json!({"session_id": session, "event": "request", "data": data}).to_string() + "\n";
        self.input.send(line.into_bytes()).unwrap();
    }

    async fn result(&mut self) -> (String, Value) {
        tokio::time::timeout(Duration::from_secs(30), self.results.recv()).await.expect("a result").expect("open")
    }
}

#[tokio::test]
async fn storage_round_trip_through_the_stream() {
    let storage = MemoryStorage::new();
    let mut h = start(Daemon::Storage, storage.clone());
    h.send("s1", json!({"action": "roundtrip", "key": "dedupe/abc"}));
    let (session, result) = h.result().await;
    assert_eq!(session, "s1");
    assert_eq!(
        result,
        json!([
            false,
            "ok",
            [0, 118, 97, 108, 117, 101, 255],
            true,
            "ok",
            {"error": "the daemon answered with an error: load data failed, please check if the key is correct or you have not set it"}
        ])
    );
    assert!(storage.is_empty());
    assert_eq!(h.invokes.load(std::sync::atomic::Ordering::SeqCst), 6);
}

#[tokio::test]
async fn concurrent_sessions_get_their_own_answers() {
    let storage = MemoryStorage::new();
    let mut h = start(Daemon::Storage, storage.clone());
    storage.answer(&json!({"opt": "set", "key": "present", "value": "00"})).unwrap();
    for i in 0..50 {
        let key = if i % 2 == 0 { "present" } else { "absent" };
        h.send(&format!("c{i}"), json!({"action": "exist", "key": key}));
    }
    for _ in 0..50 {
        let (session, result) = h.result().await;
        let i: usize = session[1..].parse().unwrap();
        assert_eq!(result, json!(i % 2 == 0), "{session} got another session's answer");
    }
}

#[tokio::test]
async fn a_daemon_error_is_the_callers_error() {
    let mut h = start(Daemon::Deny, MemoryStorage::new());
    h.send("d", json!({"action": "exist"}));
    assert_eq!(
        h.result().await.1,
        json!({"error": "the daemon answered with an error: permission denied, you need to enable storage access in plugin manifest"})
    );
}

#[tokio::test]
async fn a_garbled_answer_is_malformed() {
    let mut h = start(Daemon::Garbled, MemoryStorage::new());
    h.send("g", json!({"action": "exist"}));
    assert_eq!(h.result().await.1, json!({"error": "the daemon's answer is malformed: unexpected storage answer"}));
}

#[tokio::test(start_paused = true)]
async fn silence_and_answers_for_other_ids_time_out() {
    let mut h = start(Daemon::Silent, MemoryStorage::new());
    h.send("quiet", json!({"action": "exist", "timeout_ms": 200}));
    assert_eq!(h.result().await.1, json!({"error": "no answer from the daemon within 200ms"}));
    let mut h = start(Daemon::WrongId, MemoryStorage::new());
    h.send("wrong", json!({"action": "exist"}));
    assert_eq!(h.result().await.1, json!({"error": "no answer from the daemon within 5s"}), "the default timeout");
}

#[tokio::test]
async fn a_call_pending_when_the_input_ends_fails_as_closed() {
    let (mut to_plugin, plugin_in) = tokio::io::duplex(1 << 16);
    let (plugin_out, from_plugin) = tokio::io::duplex(1 << 16);
    let served = tokio::spawn(serve(
        BufReader::new(plugin_in),
        plugin_out,
        Arc::new(StoragePlugin),
        ServeOptions::default(),
        std::future::pending(),
    ));
    let line = json!({"session_id": "eof", "event": "request", "data": {"action": "exist"}}).to_string() + "\n";
    to_plugin.write_all(line.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(from_plugin);
    let mut text = String::new();
    // Wait for the invoke, then close our side without answering.
    loop {
        text.clear();
        reader.read_line(&mut text).await.unwrap();
        if text.contains("\"invoke\"") {
            break;
        }
    }
    drop(to_plugin);
    let mut result = None;
    loop {
        text.clear();
        if reader.read_line(&mut text).await.unwrap() == 0 {
            break;
        }
        let message: Value = serde_json::from_str(&text).unwrap();
        if message["data"]["type"] == "stream" {
            result = Some(message["data"]["data"].clone());
        }
    }
    assert_eq!(result, Some(json!({"error": "the connection to the daemon closed before it answered"})));
    assert!(served.await.unwrap().is_ok());
}
