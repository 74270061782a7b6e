//! The commands for people: `demo`, `--help`, and `dev` + `send` end to end on loopback.

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use openai_trigger::events;

use crate::support::*;

/// Runs the binary to completion (bounded) and returns its output.
pub(crate) fn run(args: &[&str]) -> Output {
    run_with(args, &[])
}

/// [`run`] with extra environment variables.
pub(crate) fn run_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = command(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stdout.read_to_end(&mut buf).map(|_| buf)
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stderr.read_to_end(&mut buf).map(|_| buf)
    });
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("openai-trigger {args:?} did not finish within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output { status, stdout: out.join().unwrap().unwrap(), stderr: err.join().unwrap().unwrap() }
}

#[test]
fn demo_lists_every_event_and_the_bad_deliveries() {
    let output = run(&["demo"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    for openai_type in events::known_openai_types() {
        let name = events::by_openai_type(openai_type).unwrap().name;
        assert!(
            stdout.lines().any(|line| line.starts_with(openai_type) && line.contains(name)),
            "no row for {openai_type}:\n{stdout}"
        );
    }
    for row in ["tampered", "stale", "duplicate", "unknown"] {
        assert!(stdout.lines().any(|line| line.contains(row)), "no {row} row:\n{stdout}");
    }
    assert!(!stdout.contains("UNEXPECTED"), "{stdout}");
}

#[test]
fn help_exits_0_for_every_command() {
    use clap::CommandFactory;
    let subcommands: Vec<String> =
        openai_trigger::cli::Cli::command().get_subcommands().map(|c| c.get_name().to_owned()).collect();
    for expected in ["serve", "demo", "dev", "send"] {
        assert!(subcommands.iter().any(|c| c == expected), "no {expected} subcommand in {subcommands:?}");
    }
    let mut invocations: Vec<Vec<&str>> = vec![vec!["--help"], vec!["help"], vec!["--version"]];
    invocations.extend(subcommands.iter().map(|c| vec![c.as_str(), "--help"]));
    for args in &invocations {
        let output = run(args);
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        assert!(!output.stdout.is_empty(), "{args:?} printed nothing");
    }
    let help = String::from_utf8(run(&["--help"]).stdout).unwrap();
    for command in &subcommands {
        assert!(help.contains(command.as_str()), "--help does not mention {command}:\n{help}");
    }
}

#[test]
fn unknown_arguments_fail() {
    assert!(!run(&["frobnicate"]).status.success());
    assert!(!run(&["send"]).status.success(), "send needs an event type, a URL and a secret");
}

/// `dev` with its stdout read line by line on a thread; killed on drop.
pub(crate) struct Dev {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Dev {
    pub(crate) fn start(secret: &str, port: u16) -> Dev {
        Dev::start_with(secret, port, &["--json"])
    }

    /// `dev` with extra arguments (without `--json`, its lines are for people).
    pub(crate) fn start_with(secret: &str, port: u16, extra: &[&str]) -> Dev {
        let port_text = port.to_string();
        let mut args = vec!["dev", "--secret", secret, "--port", &port_text, "--bind", "127.0.0.1"];
        args.extend_from_slice(extra);
        let mut child = command(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dev");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        // Ready once the port accepts connections.
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(child.try_wait().unwrap().is_none(), "dev exited early");
            assert!(Instant::now() < deadline, "dev did not listen on {port} within {WAIT:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Dev { child, lines }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (bounded) for dev to exit; its status and stderr.
    pub(crate) fn wait_exit(&mut self) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                return (status, stderr);
            }
            assert!(Instant::now() < deadline, "dev did not exit within {WAIT:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts `dev` without --secret, reads what it prints until it listens, stops it, and
    /// returns those lines.
    pub(crate) fn start_without_secret(port: u16) -> Vec<String> {
        let mut child = command(&["dev", "--port", &port.to_string()])
            .env_remove("OPENAI_WEBHOOK_SECRET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dev");
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut lines = Vec::new();
        let mut line = String::new();
        while lines.len() < 4 && reader.read_line(&mut line).unwrap_or(0) > 0 {
            lines.push(std::mem::take(&mut line));
        }
        let _ = child.kill();
        let _ = child.wait();
        lines
    }

    /// The next line dev prints that contains `text` (bounded).
    pub(crate) fn wait_for_line(&self, text: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| panic!("dev printed no line with {text:?}"));
            if line.contains(text) {
                return line;
            }
        }
    }

    /// The next JSON line dev prints that satisfies `wanted` (bounded).
    pub(crate) fn wait_for(&self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| panic!("dev printed no {what} line"));
            if let Ok(value) = serde_json::from_str::<Value>(&line) {
                if wanted(&value) {
                    return value;
                }
            }
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}

#[test]
fn dev_and_send_end_to_end_on_loopback() {
    let port = free_port();
    let dev = Dev::start(SECRET, port);
    let url = format!("http://127.0.0.1:{port}/");

    let sent = run(&["send", "batch.completed", "--url", &url, "--secret", SECRET]);
    assert!(sent.status.success(), "send: {}", String::from_utf8_lossy(&sent.stdout));
    let fired = dev.wait_for("batch_completed", |v| v["event"] == "batch_completed");
    assert_eq!(fired["cancelled"], false, "{fired}");
    let batch_id = fired["variables"]["batch_id"].as_str().unwrap_or_default();
    assert!(batch_id.starts_with("batch_"), "{fired}");
    assert_eq!(fired["variables"]["type"], "batch.completed");
    dev.wait_for("any_event", |v| v["event"] == "any_event");

    let webhook_id = format!("wh_it_{}", std::process::id());
    for attempt in 0..2 {
        let sent = run(&["send", "response.completed", "--url", &url, "--secret", SECRET, "--webhook-id", &webhook_id]);
        assert!(sent.status.success(), "send #{attempt}: {}", String::from_utf8_lossy(&sent.stdout));
    }
    let first = dev.wait_for("response_completed", |v| v["event"] == "response_completed");
    assert_eq!(first["variables"]["webhook_id"], webhook_id.as_str());
    let duplicate = dev.wait_for("duplicate", |v| v["events"].as_array().is_some_and(Vec::is_empty));
    assert_eq!(duplicate["status"], 200, "{duplicate}");
    assert_eq!(duplicate["response"]["status"], "duplicate", "{duplicate}");

    let refused = run(&["send", "batch.completed", "--url", &url, "--secret", OTHER_SECRET, "--json"]);
    assert!(!refused.status.success(), "a delivery signed with the wrong secret must fail");
    let stdout = String::from_utf8_lossy(&refused.stdout);
    let answer: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("send printed {stdout:?}"));
    assert_eq!(answer["status"], 401, "{answer}");
    let rejected = dev.wait_for("rejection", |v| v["status"] == 401);
    assert_eq!(rejected["response"]["error"], "no_matching_signature", "{rejected}");
}
