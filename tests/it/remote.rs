//! Remote debugging over TCP against a stand-in for the daemon's debugging port
//! (daemon-protocol.md §6): registration order and content, sessions over the socket, the daemon's
//! plain-text rejection, reconnection after a drop, and `.env` configuration. The real daemon runs
//! these too, in tests/conformance/ (not in CI; see the README). Timing is asserted through the
//! runtime's debug log of its reconnect decisions, with the backoff shrunk through the
//! environment: no test measures a wall-clock window.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{self, ENDPOINT, PROVIDER, RawRequest, SECRET, event_body, unix_now};

const KEY: &str = "9c3df1b4-6daf-4cb4-bcaa-3f05a2dbc3a1";

/// One accepted debugging connection, read line by line. Its storage answers the plugin's
/// backwards `storage` calls, as the daemon's does over the same socket.
struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    storage: dify_plugin::host::MemoryStorage,
}

impl Connection {
    /// The plugin's next connection; panics when none comes `within` (a guard against hanging,
    /// not a measurement).
    fn accept(listener: &TcpListener, within: Duration) -> Connection {
        let listener = listener.try_clone().unwrap();
        let (accepted, arrival) = mpsc::channel();
        std::thread::spawn(move || accepted.send(listener.accept()));
        let (stream, _) = arrival
            .recv_timeout(within)
            .unwrap_or_else(|_| panic!("no connection from the plugin within {within:?}"))
            .expect("accept");
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(support::WAIT)).unwrap();
        let writer = stream.try_clone().unwrap();
        let storage = dify_plugin::host::MemoryStorage::new();
        Connection { reader: BufReader::new(stream), writer, storage }
    }

    /// The next non-empty line as JSON (the SDK separates messages with blank lines; we may not).
    fn next_json(&mut self) -> Value {
        loop {
            let mut line = String::new();
            let read = self.reader.read_line(&mut line).expect("read from plugin");
            assert!(read > 0, "plugin closed the connection");
            if !line.trim().is_empty() {
                return serde_json::from_str(&line).unwrap_or_else(|err| panic!("not JSON ({err}): {line:?}"));
            }
        }
    }

    /// Reads the registration and returns its messages, checking their order (§6.3).
    fn registration(&mut self) -> Vec<Value> {
        let mut messages = Vec::new();
        loop {
            let message = self.next_json();
            let kind = message["type"].as_str().unwrap_or_default().to_owned();
            assert!(message.get("data").is_some(), "registration message without data: {message}");
            messages.push(message);
            if kind == "end" {
                break;
            }
        }
        let kinds: Vec<&str> = messages.iter().map(|m| m["type"].as_str().unwrap()).collect();
        assert_eq!(&kinds[..3], ["handshake", "manifest_declaration", "trigger_declaration"], "{kinds:?}");
        assert!(kinds[3..kinds.len() - 1].iter().all(|k| *k == "asset_chunk"), "{kinds:?}");
        messages
    }

    /// The registration messages after the handshake, up to and including `end`.
    fn registration_after_handshake(&mut self) -> Vec<Value> {
        let mut messages = Vec::new();
        loop {
            let message = self.next_json();
            let end = message["type"] == "end";
            messages.push(message);
            if end {
                return messages;
            }
        }
    }

    /// One line in one write, like the daemon (Go sockets have TCP_NODELAY on; without it, a
    /// separate newline would wait out the peer's delayed ACK).
    fn send(&mut self, line: &str) {
        self.writer.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    /// Answers a backwards storage call over the socket (daemon-protocol.md §4.1).
    fn answer_storage(&mut self, message: &Value) {
        let invoke = &message["data"]["data"];
        assert_eq!(invoke["type"], "storage", "{message}");
        let answers = match self.storage.answer(&invoke["request"]) {
            Ok(data) => vec![("response", "struct", data)],
            Err(refusal) => vec![("error", refusal.message.leak() as &str, Value::Null)],
        };
        for (event, text, data) in answers.into_iter().chain([("end", "", Value::Null)]) {
            let line = json!({
                "session_id": message["session_id"], "conversation_id": null, "message_id": null, "app_id": null,
                "endpoint_id": null, "context": null, "event": "backwards_response",
                "data": {"backwards_request_id": invoke["backwards_request_id"], "event": event, "message": text, "data": data},
            });
            self.send(&line.to_string());
        }
    }

    /// The stream chunk of `session_id`, skipping heartbeats; panics on error or a missing end.
    fn answer(&mut self, session_id: &str) -> Value {
        let mut chunk = None;
        loop {
            let message = self.next_json();
            // Heartbeats, and the plugin's log lines (a storage answer that came too late is one).
            if message["event"] == "heartbeat" || message["event"] == "log" {
                continue;
            }
            if message["data"]["type"] == "invoke" {
                self.answer_storage(&message);
                continue;
            }
            assert_eq!(message["session_id"], session_id, "{message}");
            match message["data"]["type"].as_str() {
                Some("stream") => chunk = Some(message["data"]["data"].clone()),
                Some("end") => return chunk.expect("end before stream"),
                _ => panic!("unexpected {message}"),
            }
        }
    }
}

fn spawn(args: &[&str], dir: Option<&std::path::Path>) -> Child {
    let mut command = support::command(args);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    // The runtime's timing settings keep their defaults unless a test sets them.
    for name in dify_plugin::remote::TIMING_SETTINGS {
        command.env_remove(name);
    }
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).env("OPENAI_TRIGGER_LOG", "info");
    command.spawn().expect("spawn plugin")
}

/// A stand-in debugging port on loopback, and `openai-trigger remote` pointed at it.
fn start_remote(key: &str) -> (TcpListener, Child) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = listener.local_addr().unwrap().to_string();
    let plugin = spawn(&["remote", "--url", &url, "--key", key], None);
    (listener, plugin)
}

/// The plugin in remote mode as the environment selects it (`INSTALL_METHOD=remote`), with
/// `settings` (the runtime's timing) and debug logs, which report every reconnect decision.
fn remote_command(url: &str, settings: &[(&str, &str)]) -> std::process::Command {
    let mut command = support::command(&[]);
    for name in dify_plugin::remote::TIMING_SETTINGS {
        command.env_remove(name);
    }
    command
        .env("INSTALL_METHOD", "remote")
        .env("REMOTE_INSTALL_URL", url)
        .env("REMOTE_INSTALL_KEY", KEY)
        .env("OPENAI_TRIGGER_LOG", "debug")
        .envs(settings.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Numbers logged at debug level by lines containing `marker`, each as the number after `marker`
/// and the number after `then`: `reconnecting in 20 ms (retry 1 …` gives (20, 1).
fn logged(stderr: &str, marker: &str, then: &str) -> Vec<(u64, u32)> {
    let number_after = |text: &str, what: &str| -> Option<String> {
        let rest = &text[text.find(what)? + what.len()..];
        Some(rest.chars().take_while(char::is_ascii_digit).collect())
    };
    stderr
        .lines()
        .filter(|line| line.contains(" DEBUG ") && line.contains(marker))
        .map(|line| {
            let delay = number_after(line, marker).and_then(|n| n.parse().ok());
            let retry = number_after(line, then).and_then(|n| n.parse().ok());
            delay.zip(retry).unwrap_or_else(|| panic!("unexpected log line: {line}"))
        })
        .collect()
}

fn dispatch_line(session_id: &str, webhook_id: &str) -> String {
    let now = unix_now();
    let body = event_body("batch.completed", "evt_remote", now, &json!({"id": "batch_remote"}));
    let raw = RawRequest::signed(SECRET, webhook_id, now, body);
    support::request_line(session_id, &support::dispatch_data(&raw.bytes(), SECRET, ENDPOINT))
}

/// Waits for the plugin to exit, at most `within` (a guard against hanging, not a measurement);
/// answers its exit status and stderr.
fn wait_exit(child: &mut Child, within: Duration) -> (std::process::ExitStatus, String) {
    let mut pipe = BufReader::new(child.stderr.take().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (done, finished) = mpsc::channel();
    let sink = seen.clone();
    std::thread::spawn(move || {
        let mut line = String::new();
        while pipe.read_line(&mut line).is_ok_and(|read| read > 0) {
            sink.lock().unwrap().push_str(&line);
            line.clear();
        }
        let _ = done.send(());
    });
    if finished.recv_timeout(within).is_err() {
        let running = child.try_wait().unwrap().is_none();
        let _ = child.kill();
        panic!("stderr still open after {within:?} (process running: {running}): {}", seen.lock().unwrap());
    }
    let stderr = seen.lock().unwrap().clone();
    (child.wait().unwrap(), stderr)
}

#[test]
fn registers_serves_sessions_and_reconnects_after_a_drop() {
    let (listener, mut plugin) = start_remote(KEY);

    let mut daemon = Connection::accept(&listener, support::WAIT);
    let registration = daemon.registration();
    assert_eq!(registration[0]["data"], json!({"key": KEY}));
    let manifest = &registration[1]["data"];
    assert_eq!(manifest["name"], "openai_trigger");
    assert_eq!(manifest["meta"]["runner"]["language"], "python");
    let providers = registration[2]["data"].as_array().expect("trigger_declaration is an array");
    assert_eq!(providers.len(), 1);
    assert_eq!(providers[0]["identity"]["name"], PROVIDER);
    let events = providers[0]["events"].as_array().expect("events inlined");
    assert_eq!(events.len(), openai_trigger::events::EVENTS.len());
    assert!(events.iter().all(|e| e["identity"]["name"].is_string() && e["output_schema"].is_object()));
    assert!(providers[0]["subscription_schema"].is_array(), "must be a list, never null");
    let icons: Vec<&str> = registration
        .iter()
        .filter(|m| m["type"] == "asset_chunk")
        .map(|m| m["data"]["filename"].as_str().unwrap())
        .collect();
    for icon in [manifest["icon"].as_str().unwrap(), manifest["icon_dark"].as_str().unwrap()] {
        assert!(icons.contains(&icon), "icon {icon} not sent: {icons:?}");
    }

    // After `end`: heartbeats and the same session protocol as stdio.
    let first = daemon.next_json();
    assert_eq!(first, json!({"event": "heartbeat", "session_id": null, "data": {}}));
    daemon.send(&dispatch_line("tcp-1", "wh_remote_1"));
    let chunk = daemon.answer("tcp-1");
    assert_eq!(chunk["events"], json!(["batch_completed", "any_event"]));

    // The daemon goes away: the plugin says so, reconnects and registers again.
    drop(daemon);
    let mut daemon = Connection::accept(&listener, Duration::from_secs(10));
    let again = daemon.registration();
    assert_eq!(again[0]["data"]["key"], KEY);
    daemon.send(&dispatch_line("tcp-2", "wh_remote_1"));
    assert!(daemon.answer("tcp-2")["response"].is_string());

    plugin.kill().unwrap();
    let output = plugin.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("reconnecting"), "stderr should say it reconnects: {stderr}");
    assert!(!stderr.contains(KEY), "the key must not be logged: {stderr}");
    assert!(output.stdout.is_empty(), "nothing on stdout in remote mode");
}

/// Daemon PR #800 (daemon-protocol.md §6.3): a registration message before the handshake has
/// completed closes the connection. The very first bytes on the socket are the handshake line,
/// byte for byte what §6.3 shows (nothing before it: no heartbeat, no blank line), and the rest of
/// the registration waits behind it, before any other line of the session.
#[test]
fn the_handshake_is_the_first_line_on_the_socket() {
    let (listener, mut plugin) = start_remote(KEY);
    let mut daemon = Connection::accept(&listener, support::WAIT);
    let mut first = String::new();
    daemon.reader.read_line(&mut first).expect("read the first line");
    assert_eq!(first, format!("{}\n", json!({"type": "handshake", "data": {"key": KEY}})), "the first line");
    let rest = daemon.registration_after_handshake();
    let kinds: Vec<&str> = rest.iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert_eq!(kinds[..2], ["manifest_declaration", "trigger_declaration"], "{kinds:?}");
    assert!(!kinds.contains(&"handshake"), "one handshake: {kinds:?}");
    drop(daemon);
    let _ = plugin.kill();
    let _ = plugin.wait();
}

#[test]
fn a_rejected_registration_prints_the_reason_and_exits_non_zero() {
    let (listener, mut plugin) = start_remote("not-a-valid-key");
    let mut daemon = Connection::accept(&listener, support::WAIT);
    let handshake = daemon.next_json();
    assert_eq!(handshake["type"], "handshake");
    // What the daemon does with a bad key: one plain-text line, then close (§6.4).
    daemon.send("handshake failed, invalid key");
    drop(daemon);
    let (status, stderr) = wait_exit(&mut plugin, support::WAIT);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("handshake failed, invalid key"), "{stderr}");
}

#[test]
fn dotenv_in_the_working_directory_selects_remote_mode() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("openai-trigger-it-dotenv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(".env"),
        format!("INSTALL_METHOD=remote\nREMOTE_INSTALL_HOST=127.0.0.1\nREMOTE_INSTALL_PORT={port}\nREMOTE_INSTALL_KEY={KEY}\n"),
    )
    .unwrap();
    let mut plugin = spawn(&[], Some(&dir));
    let mut daemon = Connection::accept(&listener, support::WAIT);
    assert_eq!(daemon.registration()[0]["data"]["key"], KEY);
    daemon.send(&dispatch_line("env-1", "wh_remote_env"));
    assert_eq!(daemon.answer("env-1")["events"][0], "batch_completed");
    plugin.kill().unwrap();
    let _ = plugin.wait();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_remote_configuration_is_a_clear_error() {
    let output = support::command(&["remote", "--url", "no-port-here", "--key", KEY]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not host:port"));
    let output = support::command(&[]).env("INSTALL_METHOD", "remote").stdin(Stdio::null()).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("REMOTE_INSTALL_KEY is not set"));
    // An http:// URL is not the debugging port's address: refused at once, with the form to use.
    let output = support::command(&["remote", "--url", "http://127.0.0.1:5003", "--key", KEY]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(r#"--url "http://127.0.0.1:5003" is an HTTP URL"#) && stderr.contains("localhost:5003"),
        "{stderr}"
    );
    let output = support::command(&[]).env("INSTALL_METHOD", "lcoal").stdin(Stdio::null()).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains(r#"INSTALL_METHOD "lcoal" is not one of local, remote, serverless, aws_lambda"#)
    );
}

/// A daemon that was never reachable is a wrong address, not a drop: the first connection is
/// retried with the backoff while the delays fit the first-connection window (1, 2 and 4 s within
/// 7 s by default; here 20, 40 and 80 ms within 140 ms), then a clear error names the address,
/// the attempts and what to check (instead of retrying forever).
#[test]
fn an_unreachable_first_connection_fails_clearly_after_a_bounded_try() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let settings = [("REMOTE_INSTALL_BACKOFF_INITIAL_MS", "20"), ("REMOTE_INSTALL_FIRST_CONNECT_WINDOW_MS", "140")];
    let output = remote_command(&format!("127.0.0.1:{port}"), &settings).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot reach the daemon's debugging port at 127.0.0.1:{port} after 4 attempt(s): ")),
        "{stderr}"
    );
    assert!(stderr.contains("Plugins → Debug") && stderr.contains("PLUGIN_REMOTE_INSTALLING_ENABLED"), "{stderr}");
    // Three retries with the doubling delays, each within the window, then no fourth.
    assert_eq!(logged(&stderr, "connecting again in ", "(retry "), [(20, 1), (40, 2), (80, 3)], "{stderr}");
    assert!(
        stderr.contains("giving up on the first connection to 127.0.0.1:")
            && stderr.contains("after 4 attempt(s): retry 4 in 160 ms would pass the first connection's 140 ms window"),
        "{stderr}"
    );
    assert!(!stderr.contains("reconnecting in"), "an unreachable first connection is not a drop: {stderr}");
    assert!(!stderr.contains(KEY), "the key is never printed");
    assert!(output.stdout.is_empty(), "nothing on stdout in remote mode");

    // A zero window is one attempt and the error.
    let settings = [("REMOTE_INSTALL_FIRST_CONNECT_WINDOW_MS", "0")];
    let output = remote_command(&format!("127.0.0.1:{port}"), &settings).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("after 1 attempt(s): "), "{stderr}");
    assert!(logged(&stderr, "connecting again in ", "(retry ").is_empty(), "{stderr}");
}

/// A timing setting that is not a number of milliseconds is refused at start, naming it.
#[test]
fn a_bad_timing_setting_is_a_clear_error() {
    let output = remote_command("127.0.0.1:9", &[("REMOTE_INSTALL_BACKOFF_INITIAL_MS", "1s")]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            r#"REMOTE_INSTALL_BACKOFF_INITIAL_MS "1s" is not a whole number of milliseconds from 1 to 3600000"#
        ),
        "{stderr}"
    );
}

/// A close without a reason line is the daemon going away (restarts do that), not a rejection:
/// the plugin reconnects. Without a registration in between the backoff doubles; after each
/// registered connection it starts over at the initial delay, so a daemon restarted again and
/// again is rejoined quickly every time. The reconnect decisions are read from the debug log.
#[test]
fn a_silent_close_is_a_drop_and_the_backoff_starts_over_after_each_registration() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = listener.local_addr().unwrap().to_string();
    // A long rejection window: a close right after `end` is always inside it (never taken for an
    // acceptance), however slow the machine; a request line ends the window at once.
    let settings = [("REMOTE_INSTALL_BACKOFF_INITIAL_MS", "20"), ("REMOTE_INSTALL_REJECTION_WINDOW_MS", "60000")];
    let mut plugin = remote_command(&url, &settings).spawn().expect("spawn plugin");
    let mut stderr_pipe = plugin.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr_pipe, &mut text).unwrap();
        text
    });

    // Each connection is registered (a session served over it) or closed right after `end`.
    let registered = [false, false, false, true, false, true, true];
    for (round, &serve) in registered.iter().enumerate() {
        let mut daemon = Connection::accept(&listener, support::WAIT);
        assert_eq!(daemon.registration()[0]["data"]["key"], KEY);
        if serve {
            let session = format!("round-{round}");
            daemon.send(&dispatch_line(&session, &format!("wh_round_{round}")));
            assert_eq!(daemon.answer(&session)["events"][0], "batch_completed");
        }
        drop(daemon);
    }
    // One more connection: the last decision has been made (and logged) before it.
    let mut last = Connection::accept(&listener, support::WAIT);
    last.registration();
    assert!(plugin.try_wait().unwrap().is_none(), "the plugin must still be running");
    plugin.kill().unwrap();
    let _ = plugin.wait();
    let stderr = stderr.join().unwrap();

    let decisions = logged(&stderr, "reconnecting in ", "(retry ");
    assert_eq!(
        decisions,
        [(20, 1), (40, 2), (80, 3), (20, 1), (40, 2), (20, 1), (20, 1)],
        "unregistered closes double the delay, registered ones start it over: {stderr}"
    );
    let causes: Vec<bool> = stderr
        .lines()
        .filter(|line| line.contains(" DEBUG ") && line.contains("reconnecting in "))
        .map(|line| line.contains("after a registered connection closed"))
        .collect();
    assert_eq!(causes, registered, "{stderr}");
    assert_eq!(stderr.matches("registered with the daemon at").count(), 3, "{stderr}");
    assert!(stderr.contains("closed; reconnecting in 20 ms"), "people see the drop: {stderr}");
    assert!(!stderr.contains("rejected"), "{stderr}");
    assert!(!stderr.contains(KEY), "the key must not be logged: {stderr}");
}
