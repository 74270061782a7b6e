//! `cargo xtask bench-examples`: each SDK example (`crates/dify-plugin/examples/`) beside the same
//! plugin on the official Python SDK (`bench/python-sdk-examples/`), both run as the daemon runs a
//! plugin (`INSTALL_METHOD=local`, stdio pipes): start-up to the first heartbeat, RSS once idle,
//! CPU per request over `REQUESTS` requests (8 in flight), RSS after them and its peak. The
//! density is how many of ours fit in the idle RSS of one Python plugin (a self-hosted Dify runs
//! one process per installed plugin).
//!
//! Each contestant's answers are checked (every request ends with a result, not an error), so a
//! broken twin cannot look fast. Figures go to the terminal and to
//! `target/bench/examples-latest.json` with the machine.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cmd;
use crate::console::say;
use crate::error::{AtPath, Error, Result};

/// Requests per contestant.
pub(crate) const REQUESTS: usize = 10_000;
/// Requests in flight.
const WINDOW: usize = 8;
/// How long a process is left alone after its first heartbeat before its idle RSS is read.
const SETTLE: Duration = Duration::from_secs(1);

/// One example: its name and the `data` of the request measured.
struct Example {
    name: &'static str,
    data: Value,
}

fn examples() -> Vec<Example> {
    let raw = |text: &str| hex::encode(text);
    vec![
        Example {
            name: "google_search",
            data: json!({"type": "tool", "action": "invoke_tool", "user_id": "u", "provider": "google",
                "tool": "google_search", "tool_parameters": {"query": "dify plugins", "num": 2},
                "credentials": {"serpapi_api_key": "serp-bench"}, "credential_type": "api-key"}),
        },
        Example {
            name: "neko",
            // POST /echo: one response chunk (a streamed GET holds `end` back, ENDPOINT_END_GRACE).
            data: json!({"type": "endpoint", "action": "invoke_endpoint", "user_id": "u", "settings": {"greeting": "meow"},
                "raw_http_request": raw("POST /echo?q=hi HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}")}),
        },
        Example {
            name: "duck_tools",
            data: json!({"type": "tool", "action": "invoke_tool", "user_id": "u", "provider": "duck", "tool": "quack",
                "tool_parameters": {"times": 3}, "credentials": {}, "credential_type": "api-key"}),
        },
        Example {
            name: "echo_trigger",
            data: json!({"type": "trigger", "action": "dispatch_trigger_event", "user_id": "", "provider": "echo",
                "subscription": {"endpoint": "https://d/triggers/plugin/1", "expires_at": -1, "parameters": {}, "properties": {}},
                "raw_http_request": raw("POST /triggers/plugin/1 HTTP/1.1\r\nHost: d\r\nContent-Length: 17\r\n\r\n{\"hello\":\"world\"}"),
                "credentials": {}, "credential_type": "unauthorized"}),
        },
    ]
}

/// What the reader thread saw.
enum Seen {
    Heartbeat(Instant),
    /// A session ended; whether it carried a result.
    End(bool),
    Closed,
}

struct Proc {
    name: String,
    child: Child,
    stdin: ChildStdin,
    seen: Receiver<Seen>,
}

impl Proc {
    fn start(name: String, program: &Path, args: &[&str], cwd: &Path) -> Result<(Proc, Instant)> {
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(cwd)
            .env("INSTALL_METHOD", "local")
            .env_remove("REMOTE_INSTALL_URL")
            .env_remove("REMOTE_INSTALL_KEY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let started = Instant::now();
        let mut child = cmd::spawn(&mut command)?;
        let no_pipe = |pipe| Error::NoPipe { command: name.clone(), pipe };
        let stdout = child.stdout.take().ok_or_else(|| no_pipe("stdout"))?;
        let stdin = child.stdin.take().ok_or_else(|| no_pipe("stdin"))?;
        let (tx, seen) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::with_capacity(1 << 20, stdout).lines() {
                let Ok(line) = line else { break };
                // The Python SDK prints its manifest and blank lines too: only messages count.
                let Ok(message) = serde_json::from_str::<Value>(&line) else { continue };
                let seen = match (message["event"].as_str(), message["data"]["type"].as_str()) {
                    (Some("heartbeat"), _) => Seen::Heartbeat(Instant::now()),
                    (Some("session"), Some("end")) => Seen::End(true),
                    (Some("session"), Some("error")) => Seen::End(false),
                    _ => continue,
                };
                // An error is followed by its end: count the session once, as failed.
                if let Seen::End(false) = seen {
                    if tx.send(Seen::End(false)).is_err() {
                        break;
                    }
                    continue;
                }
                if tx.send(seen).is_err() {
                    break;
                }
            }
            let _ = tx.send(Seen::Closed);
        });
        Ok((Proc { name, child, stdin, seen }, started))
    }

    fn failed(&self, problem: String) -> Error {
        Error::Contestant { contestant: "an SDK example", problem: format!("{}: {problem}", self.name) }
    }

    fn first_heartbeat(&self, timeout: Duration) -> Result<Instant> {
        match self.seen.recv_timeout(timeout) {
            Ok(Seen::Heartbeat(at)) => Ok(at),
            Ok(_) => Err(self.failed("answered or closed before its first heartbeat".into())),
            Err(_) => Err(self.failed(format!("no heartbeat within {timeout:?}"))),
        }
    }

    /// Sends `count` copies of the request with `WINDOW` in flight; fails on any error answer.
    fn drive(&mut self, data: &Value, count: usize) -> Result<()> {
        let line = |n: usize| {
            let mut line = json!({"session_id": format!("b-{n}"), "event": "request", "data": data}).to_string();
            line.push('\n');
            line
        };
        let (mut sent, mut ended) = (0, 0);
        while ended < count {
            while sent < count && sent - ended < WINDOW {
                let text = line(sent);
                self.stdin
                    .write_all(text.as_bytes())
                    .map_err(|source| Error::Child { command: self.name.clone(), source })?;
                sent += 1;
            }
            match self.seen.recv_timeout(Duration::from_secs(60)) {
                Ok(Seen::End(true)) => ended += 1,
                Ok(Seen::End(false)) => return Err(self.failed(format!("request {ended} was answered with an error"))),
                Ok(Seen::Heartbeat(_)) => {}
                Ok(Seen::Closed) => return Err(self.failed("closed its output".into())),
                Err(_) => return Err(self.failed("no answer within 60 s".into())),
            }
        }
        Ok(())
    }

    fn cpu(&self) -> Duration {
        crate::bench::cpu_of(self.child.id())
    }

    fn status_kib(&self, field: &str) -> u64 {
        crate::bench::status_kib_of(self.child.id(), field)
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One contestant's figures.
struct Figures {
    startup: Duration,
    rss_idle_kib: u64,
    rss_after_kib: u64,
    peak_kib: u64,
    cpu_per_request: Duration,
}

impl Figures {
    fn json(&self) -> Value {
        json!({
            "startup_ms": self.startup.as_secs_f64() * 1e3,
            "rss_idle_kib": self.rss_idle_kib,
            "rss_after_kib": self.rss_after_kib,
            "peak_rss_kib": self.peak_kib,
            "cpu_per_request_us": self.cpu_per_request.as_secs_f64() * 1e6,
        })
    }
}

fn measure(name: String, program: &Path, args: &[&str], cwd: &Path, data: &Value) -> Result<Figures> {
    let (mut proc, started) = Proc::start(name, program, args, cwd)?;
    let result = (|| {
        let heartbeat = proc.first_heartbeat(Duration::from_secs(60))?;
        std::thread::sleep(SETTLE);
        let rss_idle_kib = proc.status_kib("VmRSS:");
        // One request first, so lazy set-up (imports, routing tables) is not counted as load.
        proc.drive(data, 1)?;
        let before = proc.cpu();
        proc.drive(data, REQUESTS)?;
        let cpu = proc.cpu().saturating_sub(before);
        Ok(Figures {
            startup: heartbeat.saturating_duration_since(started),
            rss_idle_kib,
            rss_after_kib: proc.status_kib("VmRSS:"),
            peak_kib: proc.status_kib("VmHWM:"),
            cpu_per_request: cpu / REQUESTS as u32,
        })
    })();
    proc.stop();
    result
}

/// `cargo xtask bench-examples`.
pub(crate) fn bench_examples(root: &Path) -> Result<ExitCode> {
    say("==> cargo build --release -p dify-plugin --examples");
    cmd::run(
        cmd::cargo().args(["build", "--release", "--locked", "-p", "dify-plugin", "--examples"]).current_dir(root),
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let python_dir = root.join("bench/python-sdk-plugin");
    say("==> bash bench/python-sdk-plugin/setup.sh (the official Python SDK, pinned)");
    let mut setup = Command::new("bash");
    setup.arg(python_dir.join("setup.sh")).current_dir(&python_dir).stderr(Stdio::inherit());
    let output = cmd::output(&mut setup)?;
    if !output.status.success() {
        return Err(Error::Failed { command: cmd::describe(&setup), status: output.status });
    }
    let python = PathBuf::from(String::from_utf8_lossy(&output.stdout).lines().last().unwrap_or("").trim());
    let scratch = target.join("bench/examples-cwd");
    std::fs::create_dir_all(&scratch).at(&scratch)?;

    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    for example in examples() {
        say(&format!(
            "==> {}: ours, then the Python SDK twin ({REQUESTS} requests each, {WINDOW} in flight)",
            example.name
        ));
        let ours_binary = target.join("release/examples").join(example.name);
        let ours = measure(format!("{} (ours)", example.name), &ours_binary, &[], &scratch, &example.data)?;
        let twin_dir = root.join("bench/python-sdk-examples").join(example.name);
        let python =
            measure(format!("{} (Python SDK)", example.name), &python, &["-m", "main"], &twin_dir, &example.data)?;
        json_rows.push(json!({"example": example.name, "ours": ours.json(), "python_sdk": python.json()}));
        rows.push((example.name, ours, python));
    }

    let mut out = String::new();
    out.push_str(&format!(
        "{:<14} {:>22} {:>22} {:>24} {:>22} {:>9}\n",
        "example", "start-up (ours/py)", "RSS idle MiB", "RSS after 10k MiB", "CPU/request µs", "density"
    ));
    let mib = |kib: u64| kib as f64 / 1024.0;
    for (name, ours, py) in &rows {
        let density = py.rss_idle_kib as f64 / ours.rss_idle_kib.max(1) as f64;
        out.push_str(&format!(
            "{:<14} {:>9.1} ms/{:>7.0} ms {:>9.1} / {:>9.1} {:>11.1} / {:>9.1} {:>9.1} / {:>9.0} {:>8.0}×\n",
            name,
            ours.startup.as_secs_f64() * 1e3,
            py.startup.as_secs_f64() * 1e3,
            mib(ours.rss_idle_kib),
            mib(py.rss_idle_kib),
            mib(ours.rss_after_kib),
            mib(py.rss_after_kib),
            ours.cpu_per_request.as_secs_f64() * 1e6,
            py.cpu_per_request.as_secs_f64() * 1e6,
            density,
        ));
    }
    say(&out);
    let report =
        json!({"machine": crate::bench::machine(), "requests": REQUESTS, "in_flight": WINDOW, "examples": json_rows});
    let dir = target.join("bench");
    std::fs::create_dir_all(&dir).at(&dir)?;
    let path = dir.join("examples-latest.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap_or_default()).at(&path)?;
    say(&format!("wrote {}", path.display()));
    Ok(ExitCode::SUCCESS)
}
