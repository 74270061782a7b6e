//! The daemon protocol through the real binary (daemon-protocol.md §1–§5, §12): readiness,
//! framing, one result and one `end` per session, malformed input, EOF, EPIPE and heartbeats.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

fn unknown_action(session_id: &str) -> String {
    request_line(session_id, &json!({"action": "frobnicate", "type": "trigger", "user_id": ""}))
}

fn not_implemented(session_id: &str) -> [String; 2] {
    [error_line(session_id, "NotImplementedError", r#"unknown action "frobnicate""#), end_line(session_id)]
}

#[test]
fn first_line_is_the_heartbeat_and_eof_exits_0() {
    // `start` asserts that the first line is the heartbeat byte for byte.
    let mut plugin = Plugin::start();
    let status = plugin.finish();
    assert!(status.success(), "{status:?}");
    assert!(plugin.transcript.lines.iter().all(|line| line == HEARTBEAT), "{:?}", plugin.transcript.lines);
}

/// Readiness comes first even when requests are already waiting in the pipe (§1.4).
#[test]
fn heartbeat_is_the_first_line_even_with_input_waiting() {
    let mut plugin = Plugin::spawn();
    plugin.send_line("hello");
    plugin.send_line(&unknown_action("early"));
    assert_eq!(plugin.next_line(WAIT).as_deref(), Some(HEARTBEAT));
    plugin.wait_for_sessions(&["early".to_owned()]);
    assert!(plugin.finish().success());
}

#[test]
fn unknown_action_is_not_implemented() {
    let [error, end] = not_implemented("s-1");
    check(&[&unknown_action("s-1")], &[&error, &end]);
}

#[test]
fn unknown_event_with_a_session_gets_error_and_end() {
    let message = r#"unknown event "frobnicate": expected "request" or "backwards_response""#;
    let no_event = r#"unknown event "": expected "request" or "backwards_response""#;
    check(
        &[
            r#"{"session_id":"u-1","conversation_id":null,"event":"frobnicate","data":{}}"#,
            r#"{"session_id":"u-2","data":{"action":"frobnicate"}}"#,
        ],
        &[
            &error_line("u-1", "UnknownEventError", message),
            &end_line("u-1"),
            &error_line("u-2", "UnknownEventError", no_event),
            &end_line("u-2"),
        ],
    );
}

#[test]
fn request_without_a_data_object_gets_error_and_end() {
    let ids = ["d-missing", "d-null", "d-array", "d-string"];
    let input = [
        r#"{"session_id":"d-missing","event":"request"}"#,
        r#"{"session_id":"d-null","event":"request","data":null}"#,
        r#"{"session_id":"d-array","event":"request","data":[{"action":"frobnicate"}]}"#,
        r#"{"session_id":"d-string","event":"request","data":"dispatch_trigger_event"}"#,
    ];
    let expected: Vec<String> = ids
        .iter()
        .flat_map(|id| [error_line(id, "InvalidRequestError", "request has no data object"), end_line(id)])
        .collect();
    check(&input, &expected.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn request_data_without_an_action_gets_error_and_end() {
    check(
        &[&request_line("a-1", &json!({}))],
        &[&error_line("a-1", "InvalidRequestError", r#"request data has no string "action""#), &end_line("a-1")],
    );
}

#[test]
fn malformed_lines_are_logged_and_serving_continues() {
    let [error, end] = not_implemented("after");
    check(
        &[
            "hello",
            r#"{"event":"request","data":{"action":"frobnicate"}}"#,
            r#"{"session_id":"","event":"request","data":{"action":"frobnicate"}}"#,
            r#"{"session_id":"b-1","conversation_id":null,"event":"backwards_response","data":{"backwards_request_id":"r-1","event":"end","message":"","data":null}}"#,
            &unknown_action("after"),
        ],
        &[
            &log_line("warn", "ignored an input line that is not a JSON object (5 bytes)"),
            &log_line("warn", r#"ignored a message without a session_id (event "request")"#),
            &log_line("warn", r#"ignored a message without a session_id (event "request")"#),
            &log_line("warn", "ignored a backwards_response: no backwards request with its id is pending"),
            &error,
            &end,
        ],
    );
}

/// Only JSON objects are protocol messages (daemon-protocol.md §1.2): arrays, scalars and objects
/// with a mistyped `session_id` are logged and skipped, never answered as sessions.
#[test]
fn json_that_is_not_a_message_object_is_logged_and_never_answered() {
    let malformed = [
        r#"[1,2]"#,
        r#"["arr-1","request",{"action":"frobnicate"}]"#,
        r#"["arr-2","request",{"action":"frobnicate"},"extra"]"#,
        "null",
        "42",
        r#""a string""#,
        r#"{"session_id":7,"event":"request","data":{"action":"frobnicate"}}"#,
        r#"{"session_id":"trunc-1","event":"request","data":{"action":"frobnicate""#,
    ];
    let mut plugin = Plugin::start();
    for line in malformed {
        plugin.send_line(line);
    }
    plugin.send_line(&unknown_action("after"));
    plugin.wait_for_sessions(&["after".to_owned()]);
    assert!(plugin.finish().success());
    let answered = plugin.transcript.session_ids();
    assert_eq!(answered, ["after"], "only the well-formed request is a session");
    let skipped = plugin
        .transcript
        .logs
        .iter()
        .filter(|log| log["data"]["message"].as_str().unwrap().starts_with("ignored an input line"))
        .count();
    assert_eq!(skipped, malformed.len(), "one log line per malformed input line: {:#?}", plugin.transcript.logs);
}

#[test]
fn blank_lines_and_crlf_are_tolerated() {
    let mut stdin = Vec::new();
    stdin.extend_from_slice(b"\n\r\n\n");
    stdin.extend_from_slice(unknown_action("crlf").as_bytes());
    stdin.extend_from_slice(b"\r\n\r\n\n");
    stdin.extend_from_slice(unknown_action("lf").as_bytes());
    stdin.extend_from_slice(b"\n\n");
    // The daemon always terminates lines, but an unterminated last line before EOF is still a line.
    stdin.extend_from_slice(unknown_action("unterminated").as_bytes());
    let mut expected = Vec::new();
    for id in ["crlf", "lf", "unterminated"] {
        expected.extend(not_implemented(id));
    }
    check_raw(&stdin, &expected.iter().map(String::as_str).collect::<Vec<_>>());
}

/// A line over 64 MiB is dropped with a `log` event, and the next request still works. The line is
/// written in 1 MiB chunks, so neither side needs it in memory at once on the test's side.
#[test]
fn oversized_line_is_dropped_with_a_log_and_serving_continues() {
    const LIMIT: usize = 64 * 1024 * 1024;
    let mut plugin = Plugin::start();
    // A well-formed request, so a plugin that kept the line would answer session "big".
    let head = br#"{"session_id":"big","event":"request","data":{"action":"frobnicate","pad":""#;
    let tail = b"\"}}\n";
    plugin.send_raw(head);
    let chunk = vec![b'x'; 1 << 20];
    let mut written = head.len();
    while written < LIMIT + 4096 {
        plugin.send_raw(&chunk);
        written += chunk.len();
    }
    plugin.send_raw(tail);
    plugin.send_line(&unknown_action("after-big"));
    plugin.wait_for_sessions(&["after-big".to_owned()]);
    assert!(plugin.finish().success());
    assert_eq!(plugin.transcript.session_ids(), ["after-big"], "the oversized request must not be answered");
    let dropped: Vec<&Value> = plugin
        .transcript
        .logs
        .iter()
        .filter(|log| log["data"]["message"].as_str().unwrap().starts_with("dropped an input line"))
        .collect();
    assert_eq!(dropped.len(), 1, "{:#?}", plugin.transcript.logs);
    assert_eq!(dropped[0]["data"]["level"], "warn");
    let expected = format!("dropped an input line of {} bytes: over the 64 MiB limit", written + tail.len() - 1);
    assert_eq!(dropped[0]["data"]["message"], expected.as_str());
}

/// `slim` closes stdin right after its one request and still expects the answer (§5).
#[test]
fn eof_with_requests_in_flight_still_answers_then_exits_0() {
    let mut plugin = Plugin::start();
    let now = unix_now();
    let mut batch = String::new();
    let mut ids = Vec::new();
    for i in 0..64 {
        let id = format!("inflight-{i}");
        let body = event_body("batch.completed", &format!("evt_inflight_{i}"), now, &json!({"id": "batch_1"}));
        let raw = RawRequest::signed(SECRET, &format!("wh_inflight_{i}"), now, body);
        batch.push_str(&request_line(&id, &dispatch_data(&raw.bytes(), SECRET, ENDPOINT)));
        batch.push('\n');
        ids.push(id);
    }
    plugin.send_raw(batch.as_bytes());
    let status = plugin.finish();
    assert!(status.success(), "{status:?}");
    for id in &ids {
        let dispatched = Dispatched::from_chunk(plugin.transcript.result(id).clone().expect("dispatch succeeds"));
        assert_eq!(dispatched.events, ["batch_completed", "any_event"], "{id}");
    }
}

/// A closed stdout means the daemon is gone: the plugin must exit promptly, with code 0, even
/// though its stdin is still open.
#[test]
fn closed_stdout_makes_the_plugin_exit_0() {
    let mut child = command(&["serve"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the plugin");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).expect("read the first line");
    assert_eq!(first, format!("{HEARTBEAT}\n"));
    drop(stdout);
    let mut stdin = child.stdin.take().unwrap();
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the plugin kept running {WAIT:?} after its stdout closed");
        // Each answer is a write into the closed pipe. Our own write fails once the plugin is gone.
        let _ = stdin.write_all(format!("{}\n", unknown_action("into-the-void")).as_bytes());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    drop(stdin);
}

/// Heartbeats come from their own task every 10 s, whatever the sessions are doing (§3): sessions
/// run back to back, each answered before the next, until a second heartbeat has come between
/// them. The rhythm itself is proven in the runtime's tests under paused time
/// (`heartbeats_keep_their_rhythm_while_every_handler_is_busy`); here the binary's wiring, so this
/// one test takes about ten seconds and asserts no clock.
#[test]
fn a_second_heartbeat_arrives_while_sessions_are_processed() {
    /// Far more sessions than ten seconds hold: running out means no heartbeat task.
    const MOST_SESSIONS: usize = 5_000_000;
    let mut plugin = Plugin::start();
    let now = unix_now();
    let mut sent = 0;
    let mut sessions_before_second = None;
    while sessions_before_second.is_none() {
        assert!(sent < MOST_SESSIONS, "no second heartbeat while {sent} sessions ran");
        let id = plugin.fresh_session();
        let body = event_body("response.completed", &format!("evt_{id}"), now, &json!({"id": "resp_1"}));
        let raw = RawRequest::signed(SECRET, &format!("wh_{id}"), now, body);
        plugin.request(&id, &dispatch_data(&raw.bytes(), SECRET, ENDPOINT));
        plugin.wait_for_sessions(std::slice::from_ref(&id));
        sent += 1;
        if plugin.transcript.heartbeats >= 2 {
            sessions_before_second = Some(sent);
        }
    }
    assert!(sessions_before_second > Some(1), "the second heartbeat came between answered sessions");
    assert!(plugin.finish().success());
}

/// A result that would make a line over 4 MiB becomes an error; no written line exceeds the cap
/// (the harness checks every line of every test).
#[test]
fn an_oversized_result_becomes_an_error_not_a_huge_line() {
    let mut plugin = Plugin::start();
    let huge = "x".repeat(5 * 1024 * 1024);
    let event = json!({"id": "evt_big", "object": "event", "created_at": 1, "type": "video.completed",
        "data": {"id": "video_1", "blob": huge}});
    let payload = json!({"webhook_id": "wh_big", "webhook_timestamp": 1, "event": event});
    let result = plugin.call(&invoke_data("any_event", b"", &payload, &json!({})));
    let error = result.expect_err("a 5 MiB result must not be streamed");
    assert_eq!(error["error_type"], "OutputTooLargeError", "{error}");
    // The plugin keeps serving.
    let result = plugin.call(&json!({"action": "frobnicate", "type": "trigger", "user_id": ""}));
    assert_eq!(result.unwrap_err()["error_type"], "NotImplementedError");
    assert!(plugin.finish().success());
}

/// Every `tests/fixtures/sessions/<name>.in.jsonl` produces exactly `<name>.out.jsonl`.
#[test]
fn golden_session_transcripts() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sessions");
    let mut ran = 0;
    for entry in std::fs::read_dir(&dir).expect("the sessions fixture directory") {
        let input = entry.unwrap().path();
        let Some(name) = input.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".in.jsonl")) else {
            continue;
        };
        let stdin = std::fs::read(&input).unwrap();
        let expected = std::fs::read_to_string(dir.join(format!("{name}.out.jsonl")))
            .unwrap_or_else(|err| panic!("{name}.out.jsonl: {err}"));
        check_raw(&stdin, &expected.lines().collect::<Vec<_>>());
        ran += 1;
    }
    assert!(ran > 0, "no transcripts in {}", dir.display());
}

/// The checks every test relies on are live: each of these transcripts must be refused.
#[test]
fn the_harness_refuses_protocol_violations() {
    let bad: &[(&str, &[&str])] = &[
        ("not JSON", &["hello"]),
        ("not an object", &["[1]"]),
        ("unknown event", &[r#"{"event":"ping","session_id":null,"data":{}}"#]),
        ("heartbeat not byte-exact", &[r#"{"event": "heartbeat","session_id":null,"data":{}}"#]),
        ("end without a result", &[&end_line("s")]),
        (
            "two results",
            &[
                r#"{"event":"session","session_id":"s","data":{"type":"stream","data":{}}}"#,
                r#"{"event":"session","session_id":"s","data":{"type":"stream","data":{}}}"#,
            ],
        ),
        (
            "message after end",
            &[
                r#"{"event":"session","session_id":"s","data":{"type":"stream","data":{}}}"#,
                &end_line("s"),
                &end_line("s"),
            ],
        ),
        (
            "error without args",
            &[
                r#"{"event":"session","session_id":"s","data":{"type":"error","data":{"error_type":"E","message":"m"}}}"#,
            ],
        ),
        (
            "end data null",
            &[
                r#"{"event":"session","session_id":"s","data":{"type":"stream","data":{}}}"#,
                r#"{"event":"session","session_id":"s","data":{"type":"end","data":null}}"#,
            ],
        ),
    ];
    for (label, lines) in bad {
        let refused = std::panic::catch_unwind(|| {
            let mut transcript = Transcript::default();
            for line in *lines {
                transcript.record(format!("{line}\n").into_bytes());
            }
        });
        assert!(refused.is_err(), "the harness accepted: {label}");
    }
    let unterminated = std::panic::catch_unwind(|| Transcript::default().record(HEARTBEAT.as_bytes().to_vec()));
    assert!(unterminated.is_err(), "the harness accepted an unterminated line");
    let oversized = std::panic::catch_unwind(|| {
        let line = format!("{{\"event\":\"log\",\"pad\":\"{}\"}}\n", "x".repeat(MAX_OUTBOUND_LINE));
        Transcript::default().record(line.into_bytes())
    });
    assert!(oversized.is_err(), "the harness accepted a line over 4 MiB");
    // And a correct transcript passes.
    let mut transcript = Transcript::default();
    transcript.record(format!("{HEARTBEAT}\n").into_bytes());
    transcript.record(format!("{}\n", error_line("s", "E", "m")).into_bytes());
    transcript.record(format!("{}\n", end_line("s")).into_bytes());
    assert!(transcript.result("s").is_err());
}

/// Daemon PR #799 (daemon-protocol.md §1.1): a local plugin gets only an allow-listed environment,
/// so the plugin's own settings come from the `.env` of its folder (its working directory). Run
/// with exactly that environment, the plugin passes its core checks (heartbeat, dispatch, invoke,
/// an unknown action, EOF), and `.env`'s OPENAI_TRIGGER_LOG is obeyed: at `info` the skipped
/// invoke is logged, while without the file the daemon's default (`warn`) keeps it quiet.
#[test]
fn under_the_allow_listed_environment_settings_come_from_the_plugin_folders_env_file() {
    const ALLOWED: &[&str] = &[
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "LC_CTYPE",
        "TMPDIR",
        "TEMP",
        "TMP",
        "TZ",
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
    ];
    let run = |dotenv: Option<&str>| {
        let folder = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "allow-listed-{}-{}",
            std::process::id(),
            dotenv.is_some()
        ));
        std::fs::create_dir_all(&folder).unwrap();
        let file = folder.join(".env");
        match dotenv {
            Some(text) => std::fs::write(&file, text).unwrap(),
            None => {
                let _ = std::fs::remove_file(&file);
            }
        }
        let mut command = std::process::Command::new(exe());
        command.arg("serve").current_dir(&folder).env_clear();
        for name in ALLOWED {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        no_internet(&mut command); // only proxy variables, which the list allows
        command.env("INSTALL_METHOD", "local");
        let mut plugin = Plugin::spawn_command(command);
        assert_eq!(plugin.next_line(WAIT).as_deref(), Some(HEARTBEAT), "stderr: {}", plugin.stderr());
        let now = unix_now();
        let body = event_body("batch.completed", "evt_allow", now, &json!({"id": "batch_1"}));
        let raw = RawRequest::signed(SECRET, "wh_allow", now, body.clone());
        let dispatched = plugin.dispatch(&raw, SECRET, ENDPOINT);
        assert_eq!(dispatched.http.status, 200);
        assert_eq!(dispatched.events, ["batch_completed", "any_event"]);
        let payload = json!({"webhook_id": "wh_allow", "webhook_timestamp": now,
            "event": serde_json::from_str::<Value>(&body).unwrap()});
        let invoked = plugin.invoke("batch_completed", &raw.bytes(), &payload, &json!({}));
        assert!(!invoked.cancelled);
        assert_eq!(invoked.variables["batch_id"], "batch_1");
        // Another event's node: skipped, and the skip is logged at info.
        assert!(plugin.invoke("response_completed", &raw.bytes(), &payload, &json!({})).cancelled);
        let unknown = plugin.call(&json!({"action": "frobnicate", "type": "trigger", "user_id": ""}));
        assert_eq!(unknown.unwrap_err()["error_type"], "NotImplementedError");
        assert!(plugin.finish().success());
        plugin.stderr()
    };
    let quiet = run(None);
    assert!(!quiet.contains("event ignored"), "the daemon's default level is warn: {quiet}");
    let told = run(Some("# this plugin's settings\nOPENAI_TRIGGER_LOG=info\nOPENAI_TRIGGER_WORKERS=2\n"));
    assert!(told.contains("event ignored for this workflow"), "OPENAI_TRIGGER_LOG from .env: {told}");
    assert!(!told.contains("not one of"), "{told}");
    let wrong = run(Some("OPENAI_TRIGGER_WORKERS=999\n"));
    assert!(wrong.contains("OPENAI_TRIGGER_WORKERS=\"999\" is not 1-64"), "a bad .env value is reported: {wrong}");
}
