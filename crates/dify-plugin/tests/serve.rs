//! The session loop in process: `serve` over `tokio::io::duplex` pipes, with paused time and test
//! handlers, checking each promise the runtime makes (crate docs, daemon-protocol.md §2.4, §3, §12):
//! one result and one `end` per session, also after a panic or at the deadline; the other sessions
//! go on; heartbeats keep their rhythm while handlers are busy; bounded error args; back-pressure
//! from the in-flight bounds; EOF and shutdown drain in-flight sessions.
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

use dify_plugin::{Action, ErrorData, Plugin, Reply, Request, ServeEnd, ServeOptions, Session, reply, serve};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Test handlers, chosen by `data.action` (as `Action::Other`) and `data`'s fields.
#[derive(Default)]
struct TestPlugin {
    running: AtomicUsize,
    most_at_once: AtomicUsize,
}

#[derive(Deserialize)]
struct Data {
    #[serde(default)]
    secs: u64,
}

impl Plugin for TestPlugin {
    async fn handle(&self, request: Request, session: &Session) -> Reply {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_at_once.fetch_max(now, Ordering::SeqCst);
        let data: Data = request.parse().map_err(|e| ErrorData::new("BadData", e.to_string()))?;
        let result = match request.action().map(Action::as_str) {
            Some("echo") => {
                reply(&json!({"session": session.id(), "data": serde_json::from_str::<Value>(request.data()).unwrap()}))
            }
            Some("sleep") => {
                tokio::time::sleep(Duration::from_secs(data.secs)).await;
                reply(&json!({"slept": data.secs}))
            }
            Some("panic") => panic!("handler bug"),
            Some("many_args") => {
                let mut error = ErrorData::new("ManyArgs", "x".repeat(10_000));
                for i in 0..15 {
                    error.args.insert(format!("k{i:02}"), json!(i));
                }
                Err(error)
            }
            Some("huge") => reply(&json!({"blob": "y".repeat(5 << 20)})),
            other => Err(ErrorData::new("NotImplementedError", format!("{other:?}"))),
        };
        self.running.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

struct Harness {
    input: Option<DuplexStream>,
    output: BufReader<DuplexStream>,
    served: JoinHandle<std::io::Result<ServeEnd>>,
    plugin: Arc<TestPlugin>,
    shutdown: Option<oneshot::Sender<()>>,
}

fn options() -> ServeOptions {
    ServeOptions {
        session_deadline: Duration::from_secs(60),
        drain_timeout: Duration::from_secs(30),
        ..ServeOptions::default()
    }
}

impl Harness {
    fn start(options: ServeOptions) -> Harness {
        let (input, plugin_in) = tokio::io::duplex(1 << 16);
        let (plugin_out, output) = tokio::io::duplex(8 << 20);
        let plugin = Arc::new(TestPlugin::default());
        let (shutdown, stop) = oneshot::channel::<()>();
        let served = tokio::spawn(serve(BufReader::new(plugin_in), plugin_out, plugin.clone(), options, async move {
            let _ = stop.await;
        }));
        Harness { input: Some(input), output: BufReader::new(output), served, plugin, shutdown: Some(shutdown) }
    }

    async fn send(&mut self, session_id: &str, data: Value) {
        let line = json!({"session_id": session_id, "event": "request", "data": data}).to_string() + "\n";
        self.input.as_mut().expect("input open").write_all(line.as_bytes()).await.unwrap();
    }

    /// The next line the plugin wrote, parsed; None at the end of its output.
    async fn next(&mut self) -> Option<Value> {
        let mut line = String::new();
        if self.output.read_line(&mut line).await.unwrap() == 0 {
            return None;
        }
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
    }

    /// Lines until `count` sessions have ended, heartbeats and logs skipped: (session, type, data).
    async fn sessions(&mut self, count: usize) -> Vec<(String, String, Value)> {
        let mut seen = Vec::new();
        let mut ended = 0;
        while ended < count {
            let line = self.next().await.expect("output ended early");
            if line["event"] != "session" {
                continue;
            }
            let kind = line["data"]["type"].as_str().unwrap().to_owned();
            if kind == "end" {
                ended += 1;
            }
            seen.push((line["session_id"].as_str().unwrap().to_owned(), kind, line["data"]["data"].clone()));
        }
        seen
    }

    async fn close_input(&mut self) {
        drop(self.input.take());
    }
}

fn result_of<'a>(seen: &'a [(String, String, Value)], session: &str) -> (&'a str, &'a Value) {
    let own: Vec<_> = seen.iter().filter(|(s, _, _)| s == session).collect();
    assert_eq!(own.len(), 2, "{session}: exactly one result and one end, got {own:?}");
    assert_eq!(own[1].1, "end");
    assert_eq!(own[1].2, json!({}), "end carries an empty object");
    (own[0].1.as_str(), &own[0].2)
}

#[tokio::test(start_paused = true)]
async fn first_line_is_a_heartbeat_sent_before_any_input() {
    let mut h = Harness::start(options());
    assert_eq!(h.next().await.unwrap(), json!({"event": "heartbeat", "session_id": null, "data": {}}));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_handler_gives_internal_error_and_the_other_sessions_go_on() {
    let mut h = Harness::start(options());
    h.send("slow", json!({"action": "sleep", "secs": 2})).await;
    h.send("boom", json!({"action": "panic"})).await;
    h.send("fine", json!({"action": "echo"})).await;
    let seen = h.sessions(3).await;
    assert_eq!(
        result_of(&seen, "boom"),
        (
            "error",
            &json!({"error_type": "InternalError", "message": "the plugin failed while handling this request", "args": {}})
        )
    );
    assert_eq!(result_of(&seen, "fine").0, "stream");
    assert_eq!(result_of(&seen, "slow"), ("stream", &json!({"slept": 2})));
    // The process keeps serving after the panic.
    h.send("after", json!({"action": "echo"})).await;
    assert_eq!(result_of(&h.sessions(1).await, "after").0, "stream");
}

#[tokio::test(start_paused = true)]
async fn a_slow_handler_gets_timeout_error_at_the_deadline() {
    let mut h = Harness::start(ServeOptions { session_deadline: Duration::from_secs(5), ..options() });
    let started = tokio::time::Instant::now();
    h.send("slow", json!({"action": "sleep", "secs": 3600})).await;
    h.send("quick", json!({"action": "echo"})).await;
    let seen = h.sessions(2).await;
    assert_eq!(
        result_of(&seen, "slow"),
        ("error", &json!({"error_type": "TimeoutError", "message": "no result within 5 s", "args": {}}))
    );
    assert_eq!(result_of(&seen, "quick").0, "stream");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(5) && waited < Duration::from_secs(6), "answered after {waited:?}");
}

#[tokio::test(start_paused = true)]
async fn error_args_are_capped_at_ten_and_messages_bounded() {
    let mut h = Harness::start(options());
    h.send("e", json!({"action": "many_args"})).await;
    let seen = h.sessions(1).await;
    let (kind, error) = result_of(&seen, "e");
    assert_eq!(kind, "error");
    assert_eq!(error["args"].as_object().unwrap().len(), 10);
    assert!(error["message"].as_str().unwrap().chars().count() <= dify_plugin::wire::MAX_ERROR_MESSAGE + 1);
}

#[tokio::test(start_paused = true)]
async fn an_oversized_result_becomes_an_error_line() {
    let mut h = Harness::start(options());
    h.send("big", json!({"action": "huge"})).await;
    let seen = h.sessions(1).await;
    let (kind, error) = result_of(&seen, "big");
    assert_eq!(kind, "error");
    assert_eq!(error["error_type"], "OutputTooLargeError");
}

#[tokio::test(start_paused = true)]
async fn heartbeats_keep_their_rhythm_while_every_handler_is_busy() {
    let mut h =
        Harness::start(ServeOptions { max_in_flight: 2, session_deadline: Duration::from_secs(600), ..options() });
    let started = tokio::time::Instant::now();
    for i in 0..4 {
        h.send(&format!("busy-{i}"), json!({"action": "sleep", "secs": 45})).await;
    }
    let mut beats = Vec::new();
    while beats.len() < 5 {
        let line = h.next().await.unwrap();
        if line["event"] == "heartbeat" {
            beats.push(started.elapsed().as_secs());
        }
    }
    // The first is immediate, then one every 10 s, although both session slots are taken and the
    // reader is blocked on back-pressure the whole time.
    assert_eq!(beats, [0, 10, 20, 30, 40]);
}

#[tokio::test(start_paused = true)]
async fn the_in_flight_bounds_apply_back_pressure() {
    // At most 3 sessions at once…
    let mut h = Harness::start(ServeOptions { max_in_flight: 3, ..options() });
    for i in 0..12 {
        h.send(&format!("s{i}"), json!({"action": "sleep", "secs": 1})).await;
    }
    h.sessions(12).await;
    assert_eq!(h.plugin.most_at_once.load(Ordering::SeqCst), 3);

    // …and at most this many request bytes at once (each request line is 72 bytes).
    let mut h = Harness::start(ServeOptions { max_request_bytes: 150, ..options() });
    for i in 0..12 {
        h.send(&format!("b{i}"), json!({"action": "sleep", "secs": 1})).await;
    }
    h.sessions(12).await;
    assert_eq!(h.plugin.most_at_once.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn end_of_input_drains_the_sessions_in_flight() {
    let mut h = Harness::start(options());
    h.send("a", json!({"action": "sleep", "secs": 20})).await;
    h.send("b", json!({"action": "sleep", "secs": 10})).await;
    tokio::task::yield_now().await;
    h.close_input().await;
    let seen = h.sessions(2).await;
    assert_eq!(result_of(&seen, "a"), ("stream", &json!({"slept": 20})));
    assert_eq!(result_of(&seen, "b"), ("stream", &json!({"slept": 10})));
    assert_eq!(h.served.await.unwrap().unwrap(), ServeEnd::InputClosed);
}

#[tokio::test(start_paused = true)]
async fn the_drain_is_bounded() {
    let mut h = Harness::start(ServeOptions { drain_timeout: Duration::from_secs(5), ..options() });
    h.send("forever", json!({"action": "sleep", "secs": 50})).await;
    tokio::task::yield_now().await;
    let started = tokio::time::Instant::now();
    h.close_input().await;
    assert_eq!(h.served.await.unwrap().unwrap(), ServeEnd::InputClosed);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(5) && waited < Duration::from_secs(11), "returned after {waited:?}");
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_reading_and_finishes_what_is_in_flight() {
    let mut h = Harness::start(options());
    h.send("inflight", json!({"action": "sleep", "secs": 3})).await;
    tokio::task::yield_now().await;
    let _ = h.shutdown.take().unwrap().send(());
    tokio::task::yield_now().await;
    // Sent after the shutdown: never read (the input may already be closed), never answered.
    let late = json!({"session_id": "late", "event": "request", "data": {"action": "echo"}}).to_string() + "\n";
    let _ = h.input.as_mut().unwrap().write_all(late.as_bytes()).await;
    let seen = h.sessions(1).await;
    assert_eq!(result_of(&seen, "inflight").0, "stream");
    let mut tail = Vec::new();
    while let Some(line) = h.next().await {
        tail.push(line);
    }
    assert_eq!(h.served.await.unwrap().unwrap(), ServeEnd::Shutdown);
    assert!(tail.iter().all(|l| l["session_id"] != "late"), "a request after shutdown was answered: {tail:?}");
}

#[tokio::test(start_paused = true)]
async fn a_broken_output_ends_serving() {
    let h = Harness::start(options());
    let Harness { input, output, served, .. } = h;
    drop(output);
    let mut input = input.unwrap();
    // The writer notices on its next write (the heartbeat at 10 s at the latest).
    let _ = input.write_all(b"{\"session_id\":\"x\",\"event\":\"request\",\"data\":{\"action\":\"echo\"}}\n").await;
    assert_eq!(served.await.unwrap().unwrap(), ServeEnd::OutputClosed);
}

#[tokio::test(start_paused = true)]
async fn requests_without_an_action_and_unknown_events_are_answered_not_dropped() {
    let mut h = Harness::start(options());
    h.send("no-action", json!({"type": "trigger"})).await;
    let line = json!({"session_id": "odd", "event": "cancel", "data": {}}).to_string() + "\n";
    h.input.as_mut().unwrap().write_all(line.as_bytes()).await.unwrap();
    let seen = h.sessions(2).await;
    assert_eq!(result_of(&seen, "no-action").1["error_type"], "InvalidRequestError");
    assert_eq!(result_of(&seen, "odd").1["error_type"], "UnknownEventError");
}

#[tokio::test(start_paused = true)]
async fn a_second_request_under_a_session_id_in_flight_is_refused_unanswered() {
    let mut h = Harness::start(options());
    h.send("same", json!({"action": "sleep", "secs": 5})).await;
    tokio::task::yield_now().await;
    h.send("same", json!({"action": "echo"})).await;
    h.send("other", json!({"action": "echo"})).await;
    let mut logs = Vec::new();
    let mut seen = Vec::new();
    let mut ended = 0;
    while ended < 2 {
        let line = h.next().await.expect("output");
        match line["event"].as_str() {
            Some("log") => logs.push(line["data"]["message"].as_str().unwrap().to_owned()),
            Some("session") => {
                if line["data"]["type"] == "end" {
                    ended += 1;
                }
                seen.push((
                    line["session_id"].as_str().unwrap().to_owned(),
                    line["data"]["type"].as_str().unwrap().to_owned(),
                    line["data"]["data"].clone(),
                ));
            }
            _ => {}
        }
    }
    assert_eq!(result_of(&seen, "same"), ("stream", &json!({"slept": 5})), "the first one alone answers");
    assert_eq!(result_of(&seen, "other").0, "stream");
    assert!(logs.iter().any(|l| l == r#"ignored a request whose session_id "same" is already in flight"#), "{logs:?}");
    // Once it has ended, the id may be used again.
    h.send("same", json!({"action": "echo"})).await;
    assert_eq!(result_of(&h.sessions(1).await, "same").0, "stream");
}

/// After a burst of mixed requests (fine, failing, panicking, timing out, garbage), every task the
/// loop started has ended: nothing leaks per request.
#[tokio::test(start_paused = true)]
async fn no_task_outlives_its_session() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let mut h = Harness::start(ServeOptions { session_deadline: Duration::from_secs(2), ..options() });
    let _ = h.next().await; // the first heartbeat: the loop, writer and heartbeat tasks run
    let baseline = metrics.num_alive_tasks();
    let actions = ["echo", "panic", "many_args", "sleep", "nope"];
    for i in 0..500 {
        let action = actions[i % actions.len()];
        h.send(&format!("burst-{i}"), json!({"action": action, "secs": if action == "sleep" { 30 } else { 0 }})).await;
        if i % 7 == 0 {
            h.input.as_mut().unwrap().write_all(b"not json\n").await.unwrap();
        }
    }
    h.sessions(500).await;
    // Let the finished sessions' tasks be reaped.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(metrics.num_alive_tasks(), baseline, "tasks alive after the burst");
}

/// A malformed message under the id of a session still in flight is logged, not answered: an
/// answer would end that session with the wrong result before its real one.
#[tokio::test]
async fn a_refusal_never_ends_a_session_in_flight() {
    struct Slow;
    impl dify_plugin::Plugin for Slow {
        async fn handle(&self, _request: dify_plugin::Request, _session: &dify_plugin::Session) -> dify_plugin::Reply {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            dify_plugin::reply(&serde_json::json!({"done": true}))
        }
    }
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let (mut to_plugin, plugin_in) = tokio::io::duplex(1 << 16);
    let (plugin_out, from_plugin) = tokio::io::duplex(1 << 16);
    tokio::spawn(dify_plugin::serve(
        tokio::io::BufReader::new(plugin_in),
        plugin_out,
        std::sync::Arc::new(Slow),
        dify_plugin::ServeOptions::default(),
        std::future::pending::<()>(),
    ));
    to_plugin
        .write_all(b"{\"session_id\":\"live\",\"event\":\"request\",\"data\":{\"action\":\"x\"}}\n")
        .await
        .unwrap();
    to_plugin.write_all(b"{\"session_id\":\"live\",\"event\":\"bogus\",\"data\":{}}\n").await.unwrap();
    to_plugin.write_all(b"{\"session_id\":\"live\",\"event\":\"request\",\"data\":\"x\"}\n").await.unwrap();
    let mut lines = tokio::io::BufReader::new(from_plugin).lines();
    let mut messages = Vec::new();
    loop {
        let line = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        if value["session_id"] == "live" {
            let kind = value["data"]["type"].as_str().unwrap().to_owned();
            messages.push(kind.clone());
            if kind == "end" {
                break;
            }
        }
    }
    assert_eq!(messages, ["stream", "end"]);
}
