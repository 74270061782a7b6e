//! The harness every module shares: the real `openai-trigger` binary over pipes, raw lines in and
//! raw lines out, so the tests see exactly the bytes the Dify daemon would.
//!
//! Every line the plugin writes goes through [`Transcript::record`], which enforces the wire rules
//! once for the whole suite: a JSON object, under 4 MiB, newline-terminated, heartbeats byte for
//! byte, and per session exactly one `stream` or one `error`, then exactly one `end`.

#![allow(dead_code)] // Each test module uses its own subset of the helpers.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use dify_plugin::host::MemoryStorage;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

pub const EXE: &str = env!("CARGO_BIN_EXE_openai-trigger");

/// The binary the process-level tests run: this build's, or `OPENAI_TRIGGER_TEST_BINARY` (to run the
/// suite against another build, e.g. to show a regression test fails on an older one).
pub fn exe() -> String {
    std::env::var("OPENAI_TRIGGER_TEST_BINARY").unwrap_or_else(|_| EXE.to_owned())
}
/// How long any single wait may take before the test fails. Generous: the suite runs tests in
/// parallel on small machines, and a bounded wait only costs time when something is wrong.
pub const WAIT: Duration = Duration::from_secs(20);
/// Byte for byte what the SDK sends (daemon-protocol.md §2.1).
pub const HEARTBEAT: &str = r#"{"event":"heartbeat","session_id":null,"data":{}}"#;
/// Our own cap on an output line (the daemon kills a plugin at 5 MiB, daemon-protocol.md §1.2).
pub const MAX_OUTBOUND_LINE: usize = 4 * 1024 * 1024;
pub const PROVIDER: &str = "openai_trigger";
/// base64 of the 32 bytes `integration-tests-signing-key-01`.
pub const SECRET: &str = "whsec_aW50ZWdyYXRpb24tdGVzdHMtc2lnbmluZy1rZXktMDE=";
/// base64 of the 32 bytes `a-different-signing-key-for-test`.
pub const OTHER_SECRET: &str = "whsec_YS1kaWZmZXJlbnQtc2lnbmluZy1rZXktZm9yLXRlc3Q=";
pub const ENDPOINT: &str = "https://dify.test/triggers/plugin/5b0e7a52-4f0c-4d7e-9a43-2f6d1c8b9e10";
pub const OTHER_ENDPOINT: &str = "https://dify.test/triggers/plugin/c2d4e6f8-0a1b-4c3d-8e5f-6a7b8c9d0e1f";
pub const TARGET: &str = "/triggers/plugin/5b0e7a52-4f0c-4d7e-9a43-2f6d1c8b9e10";

/// Environment the plugin must not inherit from whoever runs the tests.
const SCRUBBED_ENV: &[&str] = &[
    "INSTALL_METHOD",
    "REMOTE_INSTALL_URL",
    "REMOTE_INSTALL_HOST",
    "REMOTE_INSTALL_PORT",
    "REMOTE_INSTALL_KEY",
    "OPENAI_WEBHOOK_SECRET",
    "OPENAI_TRIGGER_LOG",
    "OPENAI_TRIGGER_API_TIMEOUT",
    "OPENAI_TRIGGER_WORKERS",
];

/// The binary with `args`, run from a scratch directory (no stray `.env`) with a clean environment.
pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(exe());
    command.args(args).current_dir(env!("CARGO_TARGET_TMPDIR"));
    for name in SCRUBBED_ENV {
        command.env_remove(name);
    }
    no_internet(&mut command);
    command
}

/// Tests talk only to loopback: any HTTP(S) call the plugin makes to another host goes to a proxy
/// address where nothing listens, so it fails at once instead of reaching the internet. Loopback
/// (the mock OpenAI API) is reached directly.
pub fn no_internet(command: &mut Command) {
    for name in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
        command.env(name, "http://127.0.0.1:9");
    }
    command.env("NO_PROXY", "127.0.0.1,localhost,::1").env("no_proxy", "127.0.0.1,localhost,::1");
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_secs() as i64
}

// ---------------------------------------------------------------------------------------------
// The plugin process.

pub struct Plugin {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Option<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    pub transcript: Transcript,
    eof: bool,
    next_session: u64,
    /// The daemon's plugin storage, as the harness answers the plugin's `storage` calls from it
    /// (daemon-protocol.md §4.2). Shared between two `Plugin`s, it is one database behind two
    /// processes.
    pub storage: MemoryStorage,
}

impl Plugin {
    /// Spawns `openai-trigger serve` without reading anything yet.
    pub fn spawn() -> Plugin {
        Plugin::spawn_with(&[])
    }

    pub fn spawn_with(env: &[(&str, &str)]) -> Plugin {
        let mut command = command(&["serve"]);
        command.envs(env.iter().copied());
        Plugin::spawn_command(command)
    }

    /// Spawns `command` (the plugin binary, set up by the caller) with piped stdio.
    pub fn spawn_command(mut command: Command) -> Plugin {
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn the plugin binary");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut stdout = BufReader::with_capacity(1 << 20, stdout);
            loop {
                let mut line = Vec::new();
                match stdout.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(None);
                        return;
                    }
                    Ok(_) => {
                        if tx.send(Some(line)).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    return;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let stdin = child.stdin.take();
        Plugin {
            child,
            stdin,
            lines,
            stderr,
            transcript: Transcript::default(),
            eof: false,
            next_session: 0,
            storage: MemoryStorage::with_quota(openai_trigger::shared_dedupe::MANIFEST_STORAGE_BYTES),
        }
    }

    /// Spawns the plugin and waits for its readiness signal, as the daemon does before routing
    /// any request to it: the first line must be the heartbeat, byte for byte.
    pub fn start() -> Plugin {
        Plugin::start_with(&[])
    }

    pub fn start_with(env: &[(&str, &str)]) -> Plugin {
        let mut plugin = Plugin::spawn_with(env);
        match plugin.next_line(WAIT) {
            Some(line) => assert_eq!(line, HEARTBEAT, "the first line the plugin writes must be the heartbeat"),
            None => panic!("no heartbeat within {WAIT:?}; stderr: {}", plugin.stderr()),
        }
        plugin
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin is still open");
        stdin.write_all(bytes).expect("write to the plugin");
        stdin.flush().expect("flush to the plugin");
    }

    pub fn send_line(&mut self, line: &str) {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.send_raw(&bytes);
    }

    /// Writes one request line as the daemon builds it.
    pub fn request(&mut self, session_id: &str, data: &Value) {
        self.send_line(&request_line(session_id, data));
    }

    pub fn fresh_session(&mut self) -> String {
        self.next_session += 1;
        format!("it-{:04}-{:08x}", self.next_session, self.child.id())
    }

    /// One request session, start to end: its single result (`Ok(stream data)` or `Err(error data)`).
    pub fn call(&mut self, data: &Value) -> Result<Value, Value> {
        let id = self.fresh_session();
        self.request(&id, data);
        self.wait_for_sessions(std::slice::from_ref(&id));
        self.transcript.result(&id).clone()
    }

    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// The next line the plugin wrote (already checked and recorded), or None at EOF.
    /// Panics when nothing arrives within `timeout`.
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        self.try_next_line(timeout)
            .unwrap_or_else(|| panic!("the plugin wrote nothing within {timeout:?}; stderr: {}", self.stderr()))
    }

    /// Like [`next_line`](Self::next_line), but `None` on timeout and `Some(None)` at EOF.
    pub fn try_next_line(&mut self, timeout: Duration) -> Option<Option<String>> {
        if self.eof {
            return Some(None);
        }
        match self.lines.recv_timeout(timeout) {
            Ok(Some(raw)) => {
                let line = self.transcript.record(raw);
                self.answer_backwards(&line);
                Some(Some(line))
            }
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.eof = true;
                Some(None)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => None,
        }
    }

    /// Answers a backwards `storage` call the way the daemon does (others get its permission
    /// error), while stdin is open. Once it is closed, pending calls end with the connection.
    fn answer_backwards(&mut self, line: &str) {
        let Ok(value) = serde_json::from_str::<Value>(line) else { return };
        if value["event"] != "session" || value["data"]["type"] != "invoke" {
            return;
        }
        let invoke = &value["data"]["data"];
        let answers = match (invoke["type"].as_str(), self.storage.answer(&invoke["request"])) {
            (Some("storage"), Ok(data)) => {
                vec![("response", "struct".to_owned(), data), ("end", String::new(), Value::Null)]
            }
            (Some("storage"), Err(refusal)) => {
                vec![("error", refusal.message, Value::Null), ("end", String::new(), Value::Null)]
            }
            (kind, _) => vec![
                (
                    "error",
                    format!("permission denied, you need to enable {} access in plugin manifest", kind.unwrap_or("")),
                    Value::Null,
                ),
                ("end", String::new(), Value::Null),
            ],
        };
        let Some(stdin) = self.stdin.as_mut() else { return };
        for (event, message, data) in answers {
            let line = json!({
                "session_id": value["session_id"], "conversation_id": null, "message_id": null, "app_id": null,
                "endpoint_id": null, "context": null, "event": "backwards_response",
                "data": {"backwards_request_id": invoke["backwards_request_id"], "event": event, "message": message, "data": data},
            });
            let mut bytes = line.to_string().into_bytes();
            bytes.push(b'\n');
            if stdin.write_all(&bytes).and_then(|()| stdin.flush()).is_err() {
                return;
            }
        }
    }

    /// Reads until every session in `ids` has ended. Each read may take up to [`WAIT`].
    pub fn wait_for_sessions(&mut self, ids: &[String]) {
        let mut open: Vec<&String> = ids.iter().filter(|id| !self.transcript.ended(id)).collect();
        while !open.is_empty() {
            if self.next_line(WAIT).is_none() {
                panic!("the plugin closed its output with {} session(s) open, e.g. {}", open.len(), open[0]);
            }
            open.retain(|id| !self.transcript.ended(id));
        }
    }

    /// Reads until a line satisfies `wanted` (bounded by `timeout` overall) and returns it parsed.
    pub fn wait_for_line(&mut self, timeout: Duration, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_next_line(left) {
                Some(Some(line)) => {
                    let value: Value = serde_json::from_str(&line).expect("recorded lines are JSON");
                    if wanted(&value) {
                        return value;
                    }
                }
                Some(None) => panic!("the plugin closed its output before the awaited line"),
                None => panic!("the awaited line did not arrive within {timeout:?}"),
            }
        }
    }

    /// Closes stdin, reads everything up to EOF and waits for the exit (each step bounded).
    pub fn finish(&mut self) -> ExitStatus {
        self.close_stdin();
        self.drain_to_eof();
        self.wait_exit(WAIT)
    }

    pub fn drain_to_eof(&mut self) {
        while self.next_line(WAIT).is_some() {}
    }

    /// Waits (bounded) for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the plugin") {
                return status;
            }
            if Instant::now() >= deadline {
                panic!("the plugin did not exit within {timeout:?}; stderr: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What the plugin wrote, checked line by line.

#[derive(Default)]
pub struct Transcript {
    /// Every line, in order, without its newline.
    pub lines: Vec<String>,
    pub heartbeats: usize,
    pub logs: Vec<Value>,
    /// Backwards calls the plugin made.
    pub invokes: usize,
    sessions: HashMap<String, SessionState>,
}

#[derive(Default)]
struct SessionState {
    result: Option<Result<Value, Value>>,
    ended: bool,
}

impl Transcript {
    /// Checks one raw output line against the wire rules and records it.
    pub fn record(&mut self, raw: Vec<u8>) -> String {
        assert!(raw.ends_with(b"\n"), "the plugin wrote an unterminated line: {:?}", lossy_prefix(&raw));
        let body = &raw[..raw.len() - 1];
        assert!(
            body.len() < MAX_OUTBOUND_LINE,
            "the plugin wrote a line of {} bytes (limit {MAX_OUTBOUND_LINE})",
            body.len()
        );
        assert!(!body.contains(&b'\r'), "output line contains a CR: {:?}", lossy_prefix(body));
        let line = String::from_utf8(body.to_vec()).expect("output lines are UTF-8");
        let value: Value = serde_json::from_str(&line)
            .unwrap_or_else(|err| panic!("the plugin wrote a line that is not JSON ({err}): {:?}", lossy_prefix(body)));
        let object = value.as_object().unwrap_or_else(|| panic!("output line is not a JSON object: {line}"));
        match object.get("event").and_then(Value::as_str) {
            Some("heartbeat") => {
                assert_eq!(line, HEARTBEAT, "heartbeats are byte-exact");
                self.heartbeats += 1;
            }
            Some("log") => {
                assert_eq!(keys(object), ["data", "event", "session_id"], "log envelope: {line}");
                assert_eq!(object["session_id"], Value::Null, "logs carry no session: {line}");
                let data = object["data"].as_object().expect("log data is an object");
                assert_eq!(keys(data), ["level", "message", "timestamp"], "log data: {line}");
                assert!(data["level"].is_string() && data["message"].is_string(), "log data: {line}");
                assert!(data["timestamp"].is_f64(), "log timestamp is a float: {line}");
                self.logs.push(value.clone());
            }
            Some("session") => self.record_session(&line, object),
            _ => panic!("unexpected output line: {line}"),
        }
        self.lines.push(line.clone());
        line
    }

    fn record_session(&mut self, line: &str, object: &Map<String, Value>) {
        assert_eq!(keys(object), ["data", "event", "session_id"], "session envelope: {line}");
        let id = object["session_id"].as_str().filter(|id| !id.is_empty()).expect("session_id is a non-empty string");
        let message = object["data"].as_object().expect("session data is an object");
        assert_eq!(keys(message), ["data", "type"], "session message keys: {line}");
        let state = self.sessions.entry(id.to_owned()).or_default();
        assert!(!state.ended, "session {id} got a message after its end: {line}");
        let payload = message["data"].clone();
        match message["type"].as_str() {
            // A backwards call (daemon-protocol.md §4.1): the harness answers it; it is not a result.
            Some("invoke") => {
                assert!(state.result.is_none(), "session {id} called back after its result: {line}");
                assert!(payload["type"].is_string(), "invoke type: {line}");
                assert!(payload["backwards_request_id"].as_str().is_some_and(|id| !id.is_empty()), "invoke id: {line}");
                assert!(payload["request"].is_object(), "invoke request: {line}");
                self.invokes += 1;
            }
            Some("stream") => {
                assert!(state.result.is_none(), "session {id} got a second result: {line}");
                state.result = Some(Ok(payload));
            }
            Some("error") => {
                assert!(state.result.is_none(), "session {id} got a second result: {line}");
                let error = payload.as_object().expect("error data is an object");
                assert_eq!(keys(error), ["args", "error_type", "message"], "error data keys: {line}");
                assert!(error["error_type"].is_string() && error["message"].is_string(), "error data: {line}");
                let args = error["args"].as_object().expect("error args is an object");
                assert!(args.len() <= 10, "error args has more than 10 keys: {line}");
                state.result = Some(Err(payload));
            }
            Some("end") => {
                assert!(state.result.is_some(), "session {id} ended without a stream or an error");
                assert_eq!(line, end_line(id), "end lines are byte-exact");
                state.ended = true;
            }
            other => panic!("unexpected session message type {other:?}: {line}"),
        }
    }

    pub fn ended(&self, id: &str) -> bool {
        self.sessions.get(id).is_some_and(|state| state.ended)
    }

    /// The single result of an ended session.
    pub fn result(&self, id: &str) -> &Result<Value, Value> {
        let state = self.sessions.get(id).unwrap_or_else(|| panic!("session {id} got no answer"));
        assert!(state.ended, "session {id} has not ended");
        state.result.as_ref().expect("an ended session has a result")
    }

    pub fn answered(&self, id: &str) -> bool {
        self.sessions.contains_key(id)
    }

    pub fn session_ids(&self) -> Vec<String> {
        self.sessions.keys().cloned().collect()
    }
}

fn keys(object: &Map<String, Value>) -> Vec<&str> {
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

fn lossy_prefix(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned()
}

pub fn end_line(session_id: &str) -> String {
    format!(r#"{{"event":"session","session_id":{},"data":{{"type":"end","data":{{}}}}}}"#, json!(session_id))
}

// ---------------------------------------------------------------------------------------------
// Transcript checks: input lines in, exact output lines expected.

/// Runs `input` (one string per line) through a fresh plugin, closes stdin and compares every line
/// the plugin wrote, except heartbeats, with `expected`. Lines of one session (and the log lines)
/// must come in the expected order; different sessions may interleave. Log timestamps are
/// compared as 0. The plugin must then exit with code 0.
pub fn check(input: &[&str], expected: &[&str]) {
    let mut stdin = Vec::new();
    for line in input {
        stdin.extend_from_slice(line.as_bytes());
        stdin.push(b'\n');
    }
    check_raw(&stdin, expected);
}

/// [`check`] with the exact stdin bytes.
pub fn check_raw(stdin: &[u8], expected: &[&str]) {
    let mut plugin = Plugin::start();
    plugin.send_raw(stdin);
    let status = plugin.finish();
    assert!(status.success(), "exit status {status:?}; stderr: {}", plugin.stderr());
    // Heartbeats and backwards calls (the storage of the shared replay memory) are not part of a
    // golden transcript: the first are timing, the second are answered by the harness.
    let actual: Vec<String> = plugin
        .transcript
        .lines
        .iter()
        .filter(|line| *line != HEARTBEAT && !line.contains(r#""data":{"type":"invoke","#))
        .map(|line| zero_log_timestamp(line))
        .collect();
    let expected: Vec<String> = expected.iter().map(|line| (*line).to_owned()).collect();
    let by_stream = |lines: &[String]| {
        let mut groups: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for line in lines {
            let value: Value = serde_json::from_str(line).unwrap_or(Value::Null);
            let key = value["session_id"].as_str().unwrap_or("(no session)").to_owned();
            groups.entry(key).or_default().push(line.clone());
        }
        groups
    };
    assert!(
        by_stream(&actual) == by_stream(&expected),
        "transcript mismatch\n--- expected\n{}\n--- actual\n{}\n",
        expected.join("\n"),
        actual.join("\n")
    );
}

/// `"timestamp":<number>` in a log line becomes `"timestamp":0`.
pub fn zero_log_timestamp(line: &str) -> String {
    const KEY: &str = r#","timestamp":"#;
    if !line.starts_with(r#"{"event":"log""#) {
        return line.to_owned();
    }
    match line.rfind(KEY) {
        Some(at) => {
            let start = at + KEY.len();
            let end = line[start..].find('}').map(|n| start + n).unwrap_or(line.len());
            format!("{}0{}", &line[..start], &line[end..])
        }
        None => line.to_owned(),
    }
}

/// The expected `error` line of a session.
pub fn error_line(session_id: &str, error_type: &str, message: &str) -> String {
    json_line(&json!({"event": "session", "session_id": session_id,
        "data": {"type": "error", "data": {"error_type": error_type, "message": message, "args": {}}}}))
}

/// A log line with its timestamp zeroed, as [`check`] compares them.
pub fn log_line(level: &str, message: &str) -> String {
    format!(
        r#"{{"event":"log","session_id":null,"data":{{"level":{},"message":{},"timestamp":0}}}}"#,
        json!(level),
        json!(message)
    )
}

/// Serialises with the plugin's key order for its own envelopes (event, session_id, data; then
/// type, data; then error_type, message, args), which `json!` would sort alphabetically.
fn json_line(value: &Value) -> String {
    fn ordered(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                const ORDER: &[&str] = &["event", "session_id", "type", "error_type", "message", "args", "data"];
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort_by_key(|k| (ORDER.iter().position(|o| o == k).unwrap_or(ORDER.len()), k.as_str()));
                out.push('{');
                for (i, key) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(key).unwrap());
                    out.push(':');
                    ordered(&map[key], out);
                }
                out.push('}');
            }
            other => out.push_str(&serde_json::to_string(other).unwrap()),
        }
    }
    let mut out = String::new();
    ordered(value, &mut out);
    out
}

// ---------------------------------------------------------------------------------------------
// Request lines, built the way the daemon builds them (daemon-protocol.md §2.2, triggers.md §3.1).

/// `{"session_id":…,"conversation_id":null,…,"event":"request","data":{…}}`: the daemon's key
/// order, `data` keys sorted (Go map marshalling) and `<`, `>`, `&` escaped as Go does.
pub fn request_line(session_id: &str, data: &Value) -> String {
    format!(
        r#"{{"session_id":{},"conversation_id":null,"message_id":null,"app_id":null,"endpoint_id":null,"context":null,"event":"request","data":{}}}"#,
        go_json(&json!(session_id)),
        go_json(data)
    )
}

/// JSON as Go's `json.Marshal` writes it: map keys sorted, HTML characters escaped.
pub fn go_json(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(entries.into_iter().map(|(k, v)| (k.clone(), sorted(v))).collect())
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    // Outside strings JSON has no <, > or &, so a textual replacement only touches string content.
    serde_json::to_string(&sorted(value))
        .expect("json")
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// The subscription object of a manual subscription (triggers.md §4).
pub fn subscription(secret: &str, endpoint: &str) -> Value {
    json!({"endpoint": endpoint, "expires_at": -1, "parameters": {}, "properties": {"webhook_secret": secret}})
}

/// `data` of `dispatch_trigger_event` as the daemon sends it: `credential_type` omitted (it is
/// `omitempty` in the daemon), `credentials` an empty map.
pub fn dispatch_data(raw_http: &[u8], secret: &str, endpoint: &str) -> Value {
    json!({
        "action": "dispatch_trigger_event", "type": "trigger", "user_id": "", "provider": PROVIDER,
        "credentials": {}, "subscription": subscription(secret, endpoint),
        "raw_http_request": hex::encode(raw_http),
    })
}

/// `data` of `invoke_trigger_event` (triggers.md §4.2).
pub fn invoke_data(event: &str, raw_http: &[u8], payload: &Value, parameters: &Value) -> Value {
    json!({
        "action": "invoke_trigger_event", "type": "trigger", "user_id": "", "provider": PROVIDER,
        "event": event, "credentials": {}, "subscription": subscription(SECRET, ENDPOINT),
        "raw_http_request": hex::encode(raw_http), "parameters": parameters, "payload": payload,
    })
}

// ---------------------------------------------------------------------------------------------
// Webhook deliveries: signed here, independently of the plugin's own signing code.

/// `v1,<base64 HMAC-SHA256(key, id.timestamp.body)>` with the key decoded from `whsec_<base64>`.
pub fn sign(secret: &str, webhook_id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = BASE64.decode(secret.strip_prefix("whsec_").unwrap_or(secret)).expect("test secrets are base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(webhook_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// A raw HTTP/1.1 request as Dify's API serialises it (triggers.md §3.3).
#[derive(Debug, Clone)]
pub struct RawRequest {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawRequest {
    /// A POST signed with `secret`, with the headers OpenAI sends, title-cased as Werkzeug does.
    pub fn signed(secret: &str, webhook_id: &str, timestamp: i64, body: impl Into<Vec<u8>>) -> RawRequest {
        let body = body.into();
        let timestamp = timestamp.to_string();
        let signature = sign(secret, webhook_id, &timestamp, &body);
        RawRequest {
            method: "POST".into(),
            target: TARGET.into(),
            headers: vec![
                ("Host".into(), "dify.test".into()),
                ("Content-Type".into(), "application/json".into()),
                ("Content-Length".into(), body.len().to_string()),
                ("User-Agent".into(), "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)".into()),
                ("Webhook-Id".into(), webhook_id.into()),
                ("Webhook-Timestamp".into(), timestamp),
                ("Webhook-Signature".into(), signature),
            ],
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn without(mut self, name: &str) -> RawRequest {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    pub fn set(mut self, name: &str, value: &str) -> RawRequest {
        match self.headers.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some(header) => header.1 = value.to_owned(),
            None => self.headers.push((name.to_owned(), value.to_owned())),
        }
        self
    }

    pub fn method(mut self, method: &str) -> RawRequest {
        self.method = method.to_owned();
        self
    }

    /// Replaces the body without re-signing (and fixes Content-Length, as Werkzeug would).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> RawRequest {
        self.body = body.into();
        let length = self.body.len().to_string();
        self.set("Content-Length", &length)
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target).into_bytes();
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// A compact OpenAI event body.
pub fn event_body(openai_type: &str, event_id: &str, created_at: i64, data: &Value) -> String {
    json!({"id": event_id, "object": "event", "created_at": created_at, "type": openai_type, "data": data}).to_string()
}

// ---------------------------------------------------------------------------------------------
// The HTTP response a dispatch answers with, decoded from hex and checked.

#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub raw: Vec<u8>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpAnswer {
    /// Decodes the `response` hex and checks its framing: lower-case hex, `HTTP/1.1 <code> <reason>`,
    /// CRLF header lines, an exact Content-Length, no Transfer-Encoding.
    pub fn decode(hex_text: &str) -> HttpAnswer {
        assert!(
            hex_text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "response is not lower-case hex"
        );
        let raw = hex::decode(hex_text).expect("response is hex");
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("response has a blank line after its head");
        let head = std::str::from_utf8(&raw[..split]).expect("response head is UTF-8");
        let body = raw[split + 4..].to_vec();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("status line");
        let mut parts = status_line.splitn(3, ' ');
        assert_eq!(parts.next(), Some("HTTP/1.1"), "status line {status_line:?}");
        let status: u16 = parts.next().and_then(|s| s.parse().ok()).expect("numeric status");
        assert!(parts.next().is_some_and(|reason| !reason.is_empty()), "status line has a reason: {status_line:?}");
        let headers: Vec<(String, String)> = lines
            .map(|line| {
                assert!(!line.contains('\n'), "bare LF in the response head");
                let (name, value) = line.split_once(": ").expect("header line is `Name: value`");
                (name.to_owned(), value.to_owned())
            })
            .collect();
        let answer = HttpAnswer { raw, status, headers, body };
        assert_eq!(
            answer.header("content-length"),
            Some(answer.body.len().to_string().as_str()),
            "Content-Length must be exact"
        );
        assert!(answer.header("transfer-encoding").is_none(), "no Transfer-Encoding in the response");
        answer
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let mut found = self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
        let first = found.next().map(|(_, v)| v.as_str());
        assert!(found.next().is_none(), "header {name} appears twice");
        first
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("response body is JSON")
    }

    /// The exact bytes of a JSON response with this status and body, in the plugin's header order.
    pub fn expected_bytes(status_line: &str, extra_headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {status_line}\r\nContent-Type: application/json\r\n").into_bytes();
        for (name, value) in extra_headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        out.extend_from_slice(body);
        out
    }
}

/// A dispatch result, checked for the exact shape of triggers.md §4.1.
#[derive(Debug, Clone)]
pub struct Dispatched {
    pub events: Vec<String>,
    pub http: HttpAnswer,
    pub payload: Value,
    pub chunk: Value,
}

impl Dispatched {
    pub fn from_chunk(chunk: Value) -> Dispatched {
        let object = chunk.as_object().expect("dispatch result is an object");
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["events", "payload", "response", "user_id"], "dispatch result keys: {chunk}");
        assert_eq!(object["user_id"], "", "user_id");
        let events: Vec<String> = object["events"]
            .as_array()
            .expect("events is a list, never null")
            .iter()
            .map(|e| e.as_str().expect("event names are strings").to_owned())
            .collect();
        let http = HttpAnswer::decode(object["response"].as_str().expect("response is a string"));
        // Always an object: `{}` when nothing fires (the daemon drops an empty map, the API reads `{}`).
        let payload = object["payload"].clone();
        assert!(payload.is_object(), "payload is an object: {payload}");
        if events.is_empty() {
            assert_eq!(payload, json!({}), "nothing fired, so the payload is empty");
        }
        Dispatched { events, http, payload, chunk }
    }

    /// Status, the body's `error` code (for rejections) and fired events, for compact asserts.
    pub fn rejection(&self) -> (u16, String) {
        (self.http.status, self.http.json()["error"].as_str().unwrap_or_default().to_owned())
    }
}

impl Plugin {
    /// Dispatches `raw` for a subscription; the result must be a well-formed dispatch answer.
    pub fn dispatch(&mut self, raw: &RawRequest, secret: &str, endpoint: &str) -> Dispatched {
        self.dispatch_data(&dispatch_data(&raw.bytes(), secret, endpoint))
    }

    pub fn dispatch_data(&mut self, data: &Value) -> Dispatched {
        match self.call(data) {
            Ok(chunk) => Dispatched::from_chunk(chunk),
            Err(error) => panic!("dispatch answered with an error: {error}"),
        }
    }

    /// Invokes `event`; the result must be `{"variables": {…}, "cancelled": bool}`.
    pub fn invoke(&mut self, event: &str, raw: &[u8], payload: &Value, parameters: &Value) -> Invoked {
        self.invoke_data(&invoke_data(event, raw, payload, parameters))
    }

    pub fn invoke_data(&mut self, data: &Value) -> Invoked {
        match self.call(data) {
            Ok(chunk) => Invoked::from_chunk(chunk),
            Err(error) => panic!("invoke answered with an error: {error}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Invoked {
    pub variables: Map<String, Value>,
    pub cancelled: bool,
}

impl Invoked {
    pub fn from_chunk(chunk: Value) -> Invoked {
        let object = chunk.as_object().expect("invoke result is an object");
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["cancelled", "variables"], "invoke result keys: {chunk}");
        let variables = object["variables"].as_object().expect("variables is an object, never null").clone();
        let cancelled = object["cancelled"].as_bool().expect("cancelled is a bool");
        if cancelled {
            assert!(variables.is_empty(), "a cancelled invoke carries no variables: {chunk}");
        }
        Invoked { variables, cancelled }
    }
}
