//! `cargo xtask bench-examples`: each SDK example (`crates/dify-plugin/examples/`) beside the same
//! plugin on the official Python SDK (`bench/python-sdk-examples/`), both run as the daemon runs a
//! plugin (`INSTALL_METHOD=local`, stdio pipes): start-up to the first heartbeat, RSS once idle,
//! CPU per request over `--requests` requests (8 in flight), RSS after them and its peak. The
//! density is how many of ours fit in the idle RSS of one Python plugin (a self-hosted Dify runs
//! one process per installed plugin).
//!
//! What a request needs besides the plugin, the bench provides, the same for both contestants:
//! the model example streams a chat completion from the mock OpenAI API (`openai-mock`, its own
//! process, so its CPU is nobody's); the agent's backwards `llm` calls are answered here, as the
//! daemon answers them, with one scripted text chunk (no tool call, so one round); the datasource
//! crawls a one-page site served here on 127.0.0.1.
//!
//! Each contestant's answers are checked (every request ends with a result, not an error; the agent
//! made its model call), so a broken twin cannot look fast. Figures go to the terminal and to
//! `target/bench/examples-latest.json` with the machine.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cmd;
use crate::console::say;
use crate::error::{AtPath, Error, Result};

/// Requests per contestant, unless `--requests` says otherwise.
pub(crate) const REQUESTS: usize = 10_000;
/// Requests in flight.
const WINDOW: usize = 8;
/// How long a process is left alone after its first heartbeat before its idle RSS is read.
const SETTLE: Duration = Duration::from_secs(1);
/// The key the mock OpenAI API accepts (`crates/openai-mock`).
const MOCK_KEY: &str = "sk-test-mock-full-access-0123456789abcdef";
/// The token the one-page site wants, and the datasource's credential.
const SITE_TOKEN: &str = "crawl-bench";
/// The site's one page: links to itself (followed once) and to another site (not followed).
const SITE_PAGE: &str = "<!doctype html><html><head><title>Bench site</title>\
<meta name=\"description\" content=\"The one page the bench crawls\"><style>p{margin:0}</style></head>\
<body><h1>Bench site</h1><p>One page, <b>crawled</b> ten thousand times.</p>\
<a href=\"/\">home</a> <a href=\"https://example.com/\">elsewhere</a></body></html>";

/// `cargo xtask bench-examples` options.
pub(crate) struct Options {
    /// Only these examples (all when empty).
    pub only: Vec<String>,
    pub requests: usize,
    /// Use the binaries already in `target/release` instead of building them first.
    pub no_build: bool,
}

/// What a request needs besides the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    Nothing,
    /// The mock OpenAI API (`Fixtures::mock_url`).
    OpenAiMock,
    /// The bench answers backwards `llm` calls; each request makes one.
    LlmAnswers,
    /// The one-page site (`Fixtures::site_url`).
    Site,
}

/// What the bench runs for the examples that need it.
#[derive(Default)]
struct Fixtures {
    mock_url: String,
    site_url: String,
}

/// One example: its name, what it needs and the `data` of the request measured.
struct Example {
    name: &'static str,
    needs: Needs,
    data: fn(&Fixtures) -> Value,
}

fn raw(text: &str) -> String {
    hex::encode(text)
}

fn examples() -> Vec<Example> {
    vec![
        Example {
            name: "google_search",
            needs: Needs::Nothing,
            data: |_| {
                json!({"type": "tool", "action": "invoke_tool", "user_id": "u", "provider": "google",
                "tool": "google_search", "tool_parameters": {"query": "dify plugins", "num": 2},
                "credentials": {"serpapi_api_key": "serp-bench"}, "credential_type": "api-key"})
            },
        },
        Example {
            name: "neko",
            needs: Needs::Nothing,
            // POST /echo: one response chunk (a streamed GET holds `end` back, ENDPOINT_END_GRACE).
            data: |_| {
                json!({"type": "endpoint", "action": "invoke_endpoint", "user_id": "u", "settings": {"greeting": "meow"},
                "raw_http_request": raw("POST /echo?q=hi HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}")})
            },
        },
        Example {
            name: "duck_tools",
            needs: Needs::Nothing,
            data: |_| {
                json!({"type": "tool", "action": "invoke_tool", "user_id": "u", "provider": "duck", "tool": "quack",
                "tool_parameters": {"times": 3}, "credentials": {}, "credential_type": "api-key"})
            },
        },
        Example {
            name: "echo_trigger",
            needs: Needs::Nothing,
            data: |_| {
                json!({"type": "trigger", "action": "dispatch_trigger_event", "user_id": "", "provider": "echo",
                "subscription": {"endpoint": "https://d/triggers/plugin/1", "expires_at": -1, "parameters": {}, "properties": {}},
                "raw_http_request": raw("POST /triggers/plugin/1 HTTP/1.1\r\nHost: d\r\nContent-Length: 17\r\n\r\n{\"hello\":\"world\"}"),
                "credentials": {}, "credential_type": "unauthorized"})
            },
        },
        Example {
            name: "openai_compat",
            needs: Needs::OpenAiMock,
            // A streamed chat completion: the mock answers "Echo: …" word by word, then the usage.
            data: |fixtures| {
                json!({"type": "model", "action": "invoke_llm", "user_id": "u", "provider": "openai_compat",
                "model_type": "llm", "model": "gpt-4o-mini",
                "credentials": {"api_key": MOCK_KEY, "endpoint_url": fixtures.mock_url},
                "model_parameters": {"temperature": 0.2, "max_tokens": 64},
                "prompt_messages": [{"role": "user", "content": "hello from the bench"}],
                "tools": [], "stop": [], "stream": true})
            },
        },
        Example {
            name: "function_calling",
            needs: Needs::LlmAnswers,
            // One tool offered; the scripted model answers with text, so one round, no tool call.
            data: |_| {
                json!({"type": "agent_strategy", "action": "invoke_agent_strategy", "user_id": "u",
                "agent_strategy_provider": "agent", "agent_strategy": "function_calling",
                "agent_strategy_params": {
                    "model": {"provider": "langgenius/openai_compat/openai_compat", "model": "gpt-4o-mini",
                        "model_type": "llm", "mode": "chat", "completion_params": {"temperature": 0.2},
                        "history_prompt_messages": []},
                    "tools": [{
                        "identity": {"author": "langgenius", "name": "google_search", "label": {"en_US": "Google search"},
                            "provider": "langgenius/google/google"},
                        "parameters": [{"name": "query", "label": {"en_US": "Query"}, "human_description": {"en_US": "What to search"},
                            "llm_description": "What to search for", "type": "string", "form": "llm", "required": true}],
                        "description": {"human": {"en_US": "Searches the web"}, "llm": "Searches the web"},
                        "provider_type": "builtin", "runtime_parameters": {}, "has_runtime_parameters": false}],
                    "instruction": "You are a helpful assistant.",
                    "query": "What is Dify?",
                    "maximum_iterations": 3}})
            },
        },
        Example {
            name: "site_crawl",
            needs: Needs::Site,
            data: |fixtures| {
                json!({"type": "datasource", "action": "invoke_website_datasource_get_crawl", "user_id": "u",
                "provider": "site_crawl", "datasource": "crawl", "credentials": {"access_token": SITE_TOKEN},
                "datasource_parameters": {"url": fixtures.site_url, "limit": 10}})
            },
        },
    ]
}

/// The scripted answer to a backwards `llm` call: one chunk with the whole text, the usage and
/// `finish_reason` (a model that calls no tool).
fn llm_chunk() -> Value {
    json!({"model": "gpt-4o-mini", "prompt_messages": [], "system_fingerprint": null,
        "delta": {"index": 0,
            "message": {"role": "assistant", "content": "Dify is a platform for building LLM apps.", "name": null, "tool_calls": []},
            "usage": {"prompt_tokens": 40, "prompt_unit_price": "0.15", "prompt_price_unit": "0.000001", "prompt_price": "0.000006",
                "completion_tokens": 9, "completion_unit_price": "0.6", "completion_price_unit": "0.000001",
                "completion_price": "0.0000054", "total_tokens": 49, "total_price": "0.0000114", "currency": "USD",
                "latency": 0.05},
            "finish_reason": "stop"}})
}

/// The daemon's answer to one backwards call (daemon-protocol.md §4.1): `response` events, then
/// `end`; the types the bench does not serve get `error`, then `end`, as the daemon refuses them.
fn backwards_answer(session_id: &str, invoke: &Value) -> Vec<u8> {
    let id = invoke["backwards_request_id"].as_str().unwrap_or_default();
    let events: Vec<(&str, String, Value)> = match invoke["type"].as_str().unwrap_or_default() {
        "llm" => vec![("response", "stream".into(), llm_chunk())],
        "tool" => vec![(
            "response",
            "stream".into(),
            json!({"type": "text", "message": {"text": "Dify is an LLM app platform."}, "meta": null}),
        )],
        other => vec![("error", format!("unsupported invoke type: {other}"), Value::Null)],
    };
    let mut out = Vec::new();
    for (event, message, data) in events.into_iter().chain([("end", String::new(), Value::Null)]) {
        let line = json!({"session_id": session_id, "conversation_id": null, "message_id": null, "app_id": null,
            "endpoint_id": null, "context": null, "event": "backwards_response",
            "data": {"backwards_request_id": id, "event": event, "message": message, "data": data}});
        out.extend_from_slice(line.to_string().as_bytes());
        out.push(b'\n');
    }
    out
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
    /// Lines for the plugin's stdin (one writer thread owns the pipe: requests and backwards answers).
    input: Sender<Vec<u8>>,
    seen: Receiver<Seen>,
    /// Backwards `llm` calls answered.
    llm_calls: Arc<AtomicU64>,
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
        let (input, lines) = mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || write_lines(stdin, lines));
        let (tx, seen) = mpsc::channel();
        let llm_calls = Arc::new(AtomicU64::new(0));
        let (answers, calls) = (input.clone(), llm_calls.clone());
        std::thread::spawn(move || read_messages(stdout, tx, answers, calls));
        Ok((Proc { name, child, input, seen, llm_calls }, started))
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
            line.into_bytes()
        };
        let (mut sent, mut ended) = (0, 0);
        while ended < count {
            while sent < count && sent - ended < WINDOW {
                if self.input.send(line(sent)).is_err() {
                    return Err(self.failed("closed its input".into()));
                }
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

/// The writer thread: every line for the plugin, in the order queued.
fn write_lines(mut stdin: ChildStdin, lines: Receiver<Vec<u8>>) {
    for line in lines {
        if stdin.write_all(&line).and_then(|()| stdin.flush()).is_err() {
            break;
        }
    }
}

/// The reader thread: heartbeats and session ends for the driver; backwards calls answered at once,
/// as the daemon does.
fn read_messages(stdout: ChildStdout, seen: Sender<Seen>, answers: Sender<Vec<u8>>, llm_calls: Arc<AtomicU64>) {
    for line in BufReader::with_capacity(1 << 20, stdout).lines() {
        let Ok(line) = line else { break };
        // The Python SDK prints its manifest and blank lines too: only messages count.
        let Ok(message) = serde_json::from_str::<Value>(&line) else { continue };
        let event = match (message["event"].as_str(), message["data"]["type"].as_str()) {
            (Some("heartbeat"), _) => Seen::Heartbeat(Instant::now()),
            (Some("session"), Some("end")) => Seen::End(true),
            (Some("session"), Some("error")) => Seen::End(false),
            (Some("session"), Some("invoke")) => {
                let invoke = &message["data"]["data"];
                if invoke["type"] == "llm" {
                    llm_calls.fetch_add(1, Ordering::Relaxed);
                }
                let session_id = message["session_id"].as_str().unwrap_or_default();
                if answers.send(backwards_answer(session_id, invoke)).is_err() {
                    break;
                }
                continue;
            }
            _ => continue,
        };
        // An error is followed by its end: count the session once, as failed.
        if let Seen::End(false) = event {
            if seen.send(Seen::End(false)).is_err() {
                break;
            }
            continue;
        }
        if seen.send(event).is_err() {
            break;
        }
    }
    let _ = seen.send(Seen::Closed);
}

/// The mock OpenAI API (`target/release/openai-mock`): serves until its stdin closes.
struct Mock {
    child: Child,
    url: String,
}

impl Mock {
    fn start(program: &Path) -> Result<Mock> {
        let mut command = Command::new(program);
        command.arg("0").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = cmd::spawn(&mut command)?;
        let name = cmd::describe(&command);
        let stdout = child.stdout.take().ok_or_else(|| Error::NoPipe { command: name.clone(), pipe: "stdout" })?;
        let mut url = String::new();
        BufReader::new(stdout).read_line(&mut url).map_err(|source| Error::Child { command: name.clone(), source })?;
        let url = url.trim().to_owned();
        if !url.starts_with("http://") {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Contestant { contestant: "the mock OpenAI API", problem: format!("printed {url:?}") });
        }
        Ok(Mock { child, url })
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves [`SITE_PAGE`] at `/` on 127.0.0.1 (any other path: 404; without the bearer token: 401),
/// HTTP/1.1 with keep-alive, a thread per connection; returns the page's URL. The threads live as
/// long as the bench.
fn start_site() -> Result<String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|source| Error::Network { address: "127.0.0.1:0".into(), source })?;
    let address = listener.local_addr().map_err(|source| Error::Network { address: "127.0.0.1:0".into(), source })?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_site(stream));
        }
    });
    Ok(format!("http://{address}/"))
}

fn serve_site(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    let mut line = String::new();
    loop {
        let (mut request_line, mut authorized) = (String::new(), false);
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if request_line.is_empty() {
                request_line = header.to_owned();
            } else if let Some((name, value)) = header.split_once(':') {
                authorized |=
                    name.eq_ignore_ascii_case("authorization") && value.trim() == format!("Bearer {SITE_TOKEN}");
            }
        }
        let (status, body) = match (request_line.starts_with("GET / "), authorized) {
            (_, false) => ("401 Unauthorized", ""),
            (true, true) => ("200 OK", SITE_PAGE),
            (false, true) => ("404 Not Found", ""),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
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

fn measure(
    name: String,
    program: &Path,
    args: &[&str],
    cwd: &Path,
    example: &Example,
    data: &Value,
    requests: usize,
) -> Result<Figures> {
    let (mut proc, started) = Proc::start(name, program, args, cwd)?;
    let result = (|| {
        let heartbeat = proc.first_heartbeat(Duration::from_secs(60))?;
        std::thread::sleep(SETTLE);
        let rss_idle_kib = proc.status_kib("VmRSS:");
        // One request first, so lazy set-up (imports, routing tables) is not counted as load.
        proc.drive(data, 1)?;
        let before = proc.cpu();
        proc.drive(data, requests)?;
        let cpu = proc.cpu().saturating_sub(before);
        let calls = proc.llm_calls.load(Ordering::Relaxed);
        if example.needs == Needs::LlmAnswers && calls != requests as u64 + 1 {
            return Err(proc.failed(format!("made {calls} model calls for {} requests", requests + 1)));
        }
        Ok(Figures {
            startup: heartbeat.saturating_duration_since(started),
            rss_idle_kib,
            rss_after_kib: proc.status_kib("VmRSS:"),
            peak_kib: proc.status_kib("VmHWM:"),
            cpu_per_request: cpu / u32::try_from(requests.max(1)).unwrap_or(u32::MAX),
        })
    })();
    proc.stop();
    result
}

/// `cargo xtask bench-examples`.
pub(crate) fn bench_examples(root: &Path, options: &Options) -> Result<ExitCode> {
    let all = examples();
    let unknown: Vec<&String> = options.only.iter().filter(|o| !all.iter().any(|e| e.name == o.as_str())).collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = all.iter().map(|e| e.name).collect();
        return Err(Error::Contestant {
            contestant: "--only",
            problem: format!("no example named {unknown:?} (there are {known:?})"),
        });
    }
    let chosen: Vec<Example> =
        all.into_iter().filter(|e| options.only.is_empty() || options.only.iter().any(|o| o == e.name)).collect();
    let needs_mock = chosen.iter().any(|e| e.needs == Needs::OpenAiMock);
    if options.no_build {
        say("==> --no-build: the binaries already in target/release");
    } else {
        say("==> cargo build --release -p dify-plugin --examples");
        cmd::run(
            cmd::cargo().args(["build", "--release", "--locked", "-p", "dify-plugin", "--examples"]).current_dir(root),
        )?;
        if needs_mock {
            say("==> cargo build --release -p openai-mock --bin openai-mock");
            cmd::run(
                cmd::cargo()
                    .args(["build", "--release", "--locked", "-p", "openai-mock", "--bin", "openai-mock"])
                    .current_dir(root),
            )?;
        }
    }
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

    // Started once, shared by both contestants of every example that needs them.
    let mock = if needs_mock { Some(Mock::start(&target.join("release/openai-mock"))?) } else { None };
    let mut fixtures = Fixtures::default();
    if let Some(mock) = &mock {
        fixtures.mock_url = mock.url.clone();
        say(&format!("==> the mock OpenAI API at {}", mock.url));
    }
    if chosen.iter().any(|e| e.needs == Needs::Site) {
        fixtures.site_url = start_site()?;
        say(&format!("==> the one-page site at {}", fixtures.site_url));
    }

    let requests = options.requests.max(1);
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    for example in &chosen {
        say(&format!(
            "==> {}: ours, then the Python SDK twin ({requests} requests each, {WINDOW} in flight)",
            example.name
        ));
        let data = (example.data)(&fixtures);
        let ours_binary = target.join("release/examples").join(example.name);
        let ours = measure(format!("{} (ours)", example.name), &ours_binary, &[], &scratch, example, &data, requests)?;
        let twin_dir = root.join("bench/python-sdk-examples").join(example.name);
        let python = measure(
            format!("{} (Python SDK)", example.name),
            &python,
            &["-m", "main"],
            &twin_dir,
            example,
            &data,
            requests,
        )?;
        json_rows.push(json!({"example": example.name, "ours": ours.json(), "python_sdk": python.json()}));
        rows.push((example.name, ours, python));
    }
    drop(mock);

    let mut out = String::new();
    out.push_str(&format!(
        "{:<17} {:>22} {:>22} {:>24} {:>22} {:>9}\n",
        "example",
        "start-up (ours/py)",
        "RSS idle MiB",
        format!("RSS after {requests} MiB"),
        "CPU/request µs",
        "density"
    ));
    let mib = |kib: u64| kib as f64 / 1024.0;
    for (name, ours, py) in &rows {
        let density = py.rss_idle_kib as f64 / ours.rss_idle_kib.max(1) as f64;
        out.push_str(&format!(
            "{:<17} {:>9.1} ms/{:>7.0} ms {:>9.1} / {:>9.1} {:>11.1} / {:>9.1} {:>9.1} / {:>9.0} {:>8.0}×\n",
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
        json!({"machine": crate::bench::machine(), "requests": requests, "in_flight": WINDOW, "examples": json_rows});
    let dir = target.join("bench");
    std::fs::create_dir_all(&dir).at(&dir)?;
    let path = dir.join("examples-latest.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap_or_default()).at(&path)?;
    say(&format!("wrote {}", path.display()));
    Ok(ExitCode::SUCCESS)
}
