//! Remote debugging over TCP against a stand-in for the daemon's debugging port
//! (daemon-protocol.md §6): registration order and content, sessions over the socket, the daemon's
//! plain-text rejection, reconnection after a drop, and `.env` configuration. The real daemon runs
//! these too, in tests/conformance/ (not in CI; see the README).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

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
    fn accept(listener: &TcpListener, within: Duration) -> Connection {
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + within;
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    stream.set_nodelay(true).unwrap();
                    stream.set_read_timeout(Some(support::WAIT)).unwrap();
                    let writer = stream.try_clone().unwrap();
                    let storage = dify_plugin::host::MemoryStorage::new();
                    return Connection { reader: BufReader::new(stream), writer, storage };
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(err) => panic!("no connection from the plugin within {within:?}: {err}"),
            }
        }
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
            Err(text) => vec![("error", text.leak() as &str, Value::Null)],
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

fn dispatch_line(session_id: &str, webhook_id: &str) -> String {
    let now = unix_now();
    let body = event_body("batch.completed", "evt_remote", now, &json!({"id": "batch_remote"}));
    let raw = RawRequest::signed(SECRET, webhook_id, now, body);
    support::request_line(session_id, &support::dispatch_data(&raw.bytes(), SECRET, ENDPOINT))
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "plugin still running after {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
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

#[test]
fn a_rejected_registration_prints_the_reason_and_exits_non_zero() {
    let (listener, mut plugin) = start_remote("not-a-valid-key");
    let mut daemon = Connection::accept(&listener, support::WAIT);
    let handshake = daemon.next_json();
    assert_eq!(handshake["type"], "handshake");
    // What the daemon does with a bad key: one plain-text line, then close (§6.4).
    daemon.send("handshake failed, invalid key");
    drop(daemon);
    let status = wait_exit(&mut plugin, support::WAIT);
    assert_eq!(status.code(), Some(1));
    let mut stderr = String::new();
    std::io::Read::read_to_string(plugin.stderr.as_mut().unwrap(), &mut stderr).unwrap();
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

/// A daemon that was never reachable is a wrong address, not a drop: a few tries over 7 s, then a
/// clear error naming the address and what to check (instead of retrying forever).
#[test]
fn an_unreachable_first_connection_fails_clearly_after_a_bounded_try() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let output = support::command(&["remote", "--url", &format!("127.0.0.1:{port}"), "--key", KEY]).output().unwrap();
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("cannot reach the daemon's debugging port at 127.0.0.1:{port}")), "{stderr}");
    assert!(stderr.contains("Plugins → Debug") && stderr.contains("PLUGIN_REMOTE_INSTALLING_ENABLED"), "{stderr}");
    assert!(!stderr.contains(KEY), "the key is never printed");
    assert!(took >= Duration::from_secs(6) && took < Duration::from_secs(20), "gave up after {took:?}");
}

/// A close without a reason line is the daemon going away (restarts do that), not a rejection:
/// the plugin reconnects. And after each registered connection the backoff starts over at 1 s,
/// so a daemon restarted again and again is rejoined quickly every time.
#[test]
fn a_silent_close_is_a_drop_and_the_backoff_starts_over_after_each_registration() {
    let (listener, mut plugin) = start_remote(KEY);

    // Closed right after `end`, inside the window where a rejection line would come.
    let mut daemon = Connection::accept(&listener, support::WAIT);
    daemon.registration();
    drop(daemon);

    for round in 0..3 {
        let mut daemon = Connection::accept(&listener, Duration::from_secs(5));
        daemon.registration();
        daemon.send(&dispatch_line(&format!("round-{round}"), &format!("wh_round_{round}")));
        daemon.answer(&format!("round-{round}"));
        drop(daemon);
        // Doubling without a reset would wait 2, 4, then 8 s here.
        let reconnect = Instant::now();
        let next = Connection::accept(&listener, Duration::from_secs(5));
        assert!(
            reconnect.elapsed() < Duration::from_millis(2500),
            "round {round}: reconnected after {:?}",
            reconnect.elapsed()
        );
        drop(next);
        if round < 2 {
            // The accepted-then-closed probe above was unregistered; let the plugin come back once more.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    assert!(plugin.try_wait().unwrap().is_none(), "the plugin must still be running");
    plugin.kill().unwrap();
    let _ = plugin.wait();
}
