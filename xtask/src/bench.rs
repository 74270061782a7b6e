//! `cargo xtask bench`: the plugin against the Python SDK plugin a Dify user runs today
//! (`bench/python-sdk-plugin`), the naive native yardstick (`../shared/bench/naive-plugin`) and the
//! physical floor (the same lines echoed through `cat`), in one run, interleaved run by run.
//!
//! Each contestant is spawned the way the daemon spawns a local plugin: stdin/stdout pipes,
//! `INSTALL_METHOD=local`, its folder as the working directory. The driver builds every request
//! before it starts a clock, writes from one thread and reads from another, and takes the time of
//! a session when its `end` line arrives (for `cat`, when the echoed line does).
//!
//! Measured per contestant and run: cold start (spawn → first heartbeat, spawn → first answered
//! dispatch); a dispatch+invoke pair one at a time (p50, p99, p99.9); pairs per second at 1, 8, 64
//! and 256 in flight, with their latency; plugin CPU per pair at 64 in flight (user + sys from
//! `/proc`); peak RSS (VmHWM); pairs with 1 KiB, 64 KiB and 1 MiB bodies (time per pair and MB/s of
//! body); a bad signature. The report prints medians over the runs and the ratios the targets are
//! stated in, and writes everything with a description of the machine to `target/bench/`.
//!
//! Our plugin's headline configuration is the one the daemon runs when the manifest's storage is
//! granted: the driver answers its plugin-storage calls from memory, as the daemon does, so every
//! new delivery pays its `get` and `set` round trips (`shared_dedupe`) on top of what the other
//! contestants do (none of them has a replay memory shared across processes). That storage is one
//! per bench, shared by every process of ours as the daemon's is, and starts as a full table (every
//! bucket at its 60 live entries, as a tenant's is after 61 440 deliveries in 72 h), so each call
//! carries a bucket's full value and every phase of every run sees the same. `ours_refused` is the
//! same binary with its storage calls refused (a daemon without the permission), a second column.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openai_trigger::provider::{PROVIDER, unix_now};
use openai_trigger::samples::SignedDelivery;
use openai_trigger::shared_dedupe::{BUCKETS, ENTRIES_PER_BUCKET, bucket_key};
use serde_json::{Value, json};

use crate::cmd;
use crate::console::say;
use crate::error::{AtPath, Error, Result};

const SECRET: &str = "whsec_YmVuY2gtc2lnbmluZy1zZWNyZXQtMDAwMDAwMDAwMDA=";
const WRONG: &str = "whsec_d3Jvbmctc2lnbmluZy1zZWNyZXQtMDAwMDAwMDAwMDA=";
const ENDPOINT: &str = "https://dify.bench/triggers/plugin/5b0e7a52-4f0c-4d7e-9a43-2f6d1c8b9e10";
const NAIVE_MANIFEST: &str = "../shared/bench/naive-plugin/Cargo.toml";
const IN_FLIGHT: [usize; 4] = [1, 8, 64, 256];
const BODY_SIZES: [usize; 3] = [1024, 64 * 1024, 1024 * 1024];

/// What `cargo xtask bench` was asked for.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub runs: usize,
    pub quick: bool,
    pub million: bool,
    pub only: Vec<String>,
    /// Our binary, instead of a fresh release build (e.g. one built with symbols, to profile).
    pub binary: Option<PathBuf>,
    /// Only the warm-up and the CPU phase (CPU per pair at 64 in flight, its user/system split,
    /// peak RSS): a quick loop while working on the hot path.
    pub cpu_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// Storage granted: the headline.
    Ours,
    /// Storage refused.
    OursRefused,
    Naive,
    Python,
    Cat,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ours => "openai-trigger",
            Kind::OursRefused => "ours, storage refused",
            Kind::Naive => "naive-plugin",
            Kind::Python => "python-sdk",
            Kind::Cat => "cat (floor)",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::OursRefused => "ours_refused",
            Kind::Naive => "naive",
            Kind::Python => "python",
            Kind::Cat => "cat",
        }
    }

    fn is_plugin(self) -> bool {
        self != Kind::Cat
    }
}

/// How to start one contestant.
struct Launch {
    kind: Kind,
    program: PathBuf,
    args: Vec<String>,
    cwd: PathBuf,
    /// The plugin storage the driver answers from, as the daemon does; None: refused.
    storage: Option<BenchStorage>,
}

/// Something the reader thread saw.
enum Seen {
    Heartbeat(Instant),
    /// A session ended (`cat`: its line came back); whether it carried a result, and its stream
    /// data when the driver asked to keep it.
    End {
        session: u64,
        at: Instant,
        ok: bool,
        kept: Option<String>,
    },
    Closed,
}

/// A running contestant. Its stdin is shared with the reader thread, which answers backwards
/// storage calls as a daemon does while it reads, and runs [`Script`]s.
struct Proc {
    kind: Kind,
    child: Child,
    stdin: Arc<Mutex<ChildStdin>>,
    seen: Receiver<Seen>,
    started: Instant,
    script: Arc<Mutex<Option<Script>>>,
}

/// Requests the reader thread writes itself, each as soon as the previous one ended: one at a time
/// with no hop to another thread between an answer and the next request (what the daemon's
/// reader would do), so the time measured is the contestant's and the pipes'.
struct Script {
    lines: Vec<Vec<u8>>,
    /// Lines per measured unit (2 for a dispatch+invoke pair, 1 for a dispatch alone).
    group: usize,
    next: usize,
    unit_started: Instant,
    latencies: Vec<Duration>,
    done: Sender<Vec<Duration>>,
}

/// Sessions whose stream data the reader keeps (the sanity check reads them).
const KEEP_BELOW: u64 = 4;

impl Proc {
    fn start(launch: &Launch) -> Result<Proc> {
        let mut command = Command::new(&launch.program);
        command
            .args(&launch.args)
            .current_dir(&launch.cwd)
            .env("INSTALL_METHOD", "local")
            .env_remove("REMOTE_INSTALL_URL")
            .env_remove("REMOTE_INSTALL_KEY")
            .env_remove("OPENAI_TRIGGER_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let started = Instant::now();
        let mut child = cmd::spawn(&mut command)?;
        let no_pipe = |pipe| Error::NoPipe { command: launch.kind.name().to_owned(), pipe };
        let stdout = child.stdout.take().ok_or_else(|| no_pipe("stdout"))?;
        let stdin = child.stdin.take().ok_or_else(|| no_pipe("stdin"))?;
        let (tx, seen) = mpsc::channel();
        let kind = launch.kind;
        let stdin = Arc::new(Mutex::new(stdin));
        let script: Arc<Mutex<Option<Script>>> = Arc::new(Mutex::new(None));
        let (answers, scripted, storage) = (stdin.clone(), script.clone(), launch.storage.clone());
        std::thread::spawn(move || {
            read_output(kind, BufReader::with_capacity(1 << 20, stdout), tx, answers, scripted, storage);
        });
        Ok(Proc { kind, child, stdin, seen, started, script })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn send(&mut self, line: &[u8]) -> Result<()> {
        self.stdin
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_all(line)
            .map_err(|source| Error::Child { command: self.kind.name().to_owned(), source })
    }

    /// This contestant failed at something every run needs.
    fn failed(&self, problem: String) -> Error {
        Error::Contestant { contestant: self.kind.name(), problem }
    }

    fn wait_heartbeat(&self, timeout: Duration) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.seen.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Seen::Heartbeat(at)) => return Ok(at),
                Ok(Seen::End { .. }) => continue,
                Ok(Seen::Closed) => return Err(self.failed("exited before a heartbeat".to_owned())),
                Err(_) => return Err(self.failed(format!("no heartbeat within {timeout:?}"))),
            }
        }
    }

    /// The next session end (heartbeats skipped).
    fn next_end(&self, timeout: Duration) -> Result<(u64, Instant, bool, Option<String>)> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.seen.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Seen::End { session, at, ok, kept }) => return Ok((session, at, ok, kept)),
                Ok(Seen::Heartbeat(_)) => continue,
                Ok(Seen::Closed) => return Err(self.failed("closed its output".to_owned())),
                Err(_) => return Err(self.failed(format!("no answer within {timeout:?}"))),
            }
        }
    }

    /// User and system CPU time of the process so far.
    fn cpu(&self) -> (Duration, Duration) {
        cpu_split_of(self.pid())
    }

    fn status_kib(&self, field: &str) -> u64 {
        status_kib_of(self.pid(), field)
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User + system CPU time of process `pid` so far (0 when it is gone).
pub(crate) fn cpu_of(pid: u32) -> Duration {
    let (user, system) = cpu_split_of(pid);
    user + system
}

/// User and system CPU time of process `pid` so far, apart (0 when it is gone).
pub(crate) fn cpu_split_of(pid: u32) -> (Duration, Duration) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name: state is field 3; utime 14 and stime 15.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    let seconds = |t: u64| Duration::from_secs_f64(t as f64 / clock_ticks() as f64);
    (seconds(ticks(11)), seconds(ticks(12)))
}

/// A `… kB` field of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`, …), in KiB; 0 when absent.
pub(crate) fn status_kib_of(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    event: Option<&'a str>,
    #[serde(borrow, default)]
    session_id: Option<&'a str>,
    #[serde(borrow, default)]
    data: Option<&'a serde_json::value::RawValue>,
}

#[derive(serde::Deserialize)]
struct Message<'a> {
    #[serde(borrow, rename = "type", default)]
    kind: Option<&'a str>,
    #[serde(borrow, default)]
    data: Option<&'a serde_json::value::RawValue>,
}

fn session_number(id: &str) -> Option<u64> {
    id.strip_prefix("b-").and_then(|n| n.parse().ok())
}

/// Advances the script, if one runs: the next line is written at once. Answers whether a script
/// took this end.
fn advance(script: &Mutex<Option<Script>>, stdin: &Mutex<ChildStdin>, at: Instant) -> bool {
    let mut guard = script.lock().unwrap_or_else(|p| p.into_inner());
    let Some(running) = guard.as_mut() else { return false };
    if running.next % running.group == 0 {
        running.latencies.push(at.saturating_duration_since(running.unit_started));
        running.unit_started = Instant::now();
    }
    if running.next < running.lines.len() {
        let line = &running.lines[running.next];
        running.next += 1;
        let _ = stdin.lock().unwrap_or_else(|p| p.into_inner()).write_all(line);
    } else if let Some(finished) = guard.take() {
        let _ = finished.done.send(finished.latencies);
    }
    true
}

fn read_output(
    kind: Kind,
    mut reader: impl BufRead,
    tx: Sender<Seen>,
    answers: Arc<Mutex<ChildStdin>>,
    script: Arc<Mutex<Option<Script>>>,
    storage: Option<BenchStorage>,
) {
    let mut line = Vec::new();
    let mut results: HashMap<u64, (bool, Option<String>)> = HashMap::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => {
                let _ = tx.send(Seen::Closed);
                return;
            }
            Ok(_) => {}
        }
        let at = Instant::now();
        let Ok(envelope) = serde_json::from_slice::<Envelope<'_>>(&line) else { continue };
        if kind == Kind::Cat {
            if let Some(session) = envelope.session_id.and_then(session_number) {
                if !advance(&script, &answers, at) {
                    let _ = tx.send(Seen::End { session, at, ok: true, kept: None });
                }
            }
            continue;
        }
        match envelope.event {
            Some("heartbeat") => {
                let _ = tx.send(Seen::Heartbeat(at));
            }
            Some("session") => {
                let Some(id) = envelope.session_id else { continue };
                let Some(message) = envelope.data.and_then(|d| serde_json::from_str::<Message<'_>>(d.get()).ok())
                else {
                    continue;
                };
                let Some(session) = session_number(id) else { continue };
                match message.kind {
                    Some("stream") => {
                        let kept = (session < KEEP_BELOW).then(|| message.data.map(|d| d.get().to_owned())).flatten();
                        results.insert(session, (true, kept));
                    }
                    Some("error") => {
                        let kept = message.data.map(|d| d.get().to_owned());
                        results.insert(session, (false, kept));
                    }
                    Some("invoke") => answer_invoke(&answers, storage.as_ref(), id, message.data),
                    Some("end") => {
                        let (ok, kept) = results.remove(&session).unwrap_or((false, None));
                        if !advance(&script, &answers, at) {
                            let _ = tx.send(Seen::End { session, at, ok, kept });
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

/// The plugin storage the driver answers from when it plays a daemon with storage granted: the
/// daemon's answers (daemon-protocol.md §4.2), each value kept as the hex text it travels as. Lean
/// on purpose: the driver shares the CPUs with the plugin and is built without optimisation, and
/// `host::MemoryStorage`'s decoding, re-encoding and `Value` building cost the driver about 90 µs a
/// call there, more than the plugin's own work, which made the driver the bottleneck. The key rules
/// are `MemoryStorage`'s and the tests' business (`it::shared_dedupe`), not this stand-in's.
#[derive(Clone, Default)]
struct BenchStorage {
    values: Arc<Mutex<HashMap<String, String>>>,
}

/// One backwards `storage` call, borrowed from its line (keys and hex need no JSON escapes).
#[derive(serde::Deserialize)]
struct StorageInvoke<'a> {
    #[serde(borrow)]
    backwards_request_id: &'a str,
    #[serde(borrow)]
    request: StorageRequest<'a>,
}

#[derive(serde::Deserialize)]
struct StorageRequest<'a> {
    #[serde(borrow)]
    opt: &'a str,
    #[serde(borrow)]
    key: &'a str,
    #[serde(borrow, default)]
    value: Option<&'a str>,
}

impl BenchStorage {
    fn put(&self, key: &str, value: &[u8]) {
        self.values.lock().unwrap_or_else(|p| p.into_inner()).insert(key.to_owned(), hex::encode(value));
    }

    /// The `data` of the answer, as JSON text, or the daemon's error message.
    fn answer(&self, request: &StorageRequest<'_>) -> std::result::Result<String, &'static str> {
        let mut values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        match (request.opt, request.value) {
            ("get", _) => match values.get(request.key) {
                Some(value) => Ok(format!(r#"{{"data":"{value}"}}"#)),
                None => Err("load data failed, please check if the key is correct or you have not set it"),
            },
            ("exist", _) => {
                let exists = values.contains_key(request.key);
                Ok(format!(r#"{{"data":{exists},"exist_num":{}}}"#, u8::from(exists)))
            }
            ("set", Some(value)) => {
                values.insert(request.key.to_owned(), value.to_owned());
                Ok(r#"{"data":"ok"}"#.to_owned())
            }
            ("set", None) => Err("decode data failed"),
            ("del", _) => {
                let deleted = values.remove(request.key).is_some();
                Ok(format!(r#"{{"data":"ok","deleted_num":{}}}"#, u8::from(deleted)))
            }
            _ => Err("invalid opt"),
        }
    }
}

/// Answers a backwards storage call: from `storage` when the driver plays a daemon with storage,
/// else with the daemon's permission error.
fn answer_invoke(
    stdin: &Arc<Mutex<ChildStdin>>,
    storage: Option<&BenchStorage>,
    session_id: &str,
    data: Option<&serde_json::value::RawValue>,
) {
    let Some(invoke) = data.and_then(|d| serde_json::from_str::<StorageInvoke<'_>>(d.get()).ok()) else { return };
    let answer = match storage {
        Some(storage) => storage.answer(&invoke.request),
        None => Err("permission denied, you need to enable storage access in plugin manifest"),
    };
    let session = serde_json::to_string(session_id).unwrap_or_default();
    let id = serde_json::to_string(invoke.backwards_request_id).unwrap_or_default();
    let head = format!(
        r#"{{"session_id":{session},"conversation_id":null,"message_id":null,"app_id":null,"endpoint_id":null,"context":null,"event":"backwards_response","data":{{"backwards_request_id":{id},"#
    );
    let first = match answer {
        Ok(data) => format!(r#"{head}"event":"response","message":"struct","data":{data}}}}}"#),
        Err(message) => format!(r#"{head}"event":"error","message":"{message}","data":null}}}}"#),
    };
    let bytes = format!("{first}\n{head}\"event\":\"end\",\"message\":\"\",\"data\":null}}}}\n");
    let _ = stdin.lock().unwrap_or_else(|p| p.into_inner()).write_all(bytes.as_bytes());
}

/// An OpenAI `batch.completed` event of about `size` bytes.
fn body_of_size(id: &str, now: i64, size: usize) -> Vec<u8> {
    let mut event = json!({"id": format!("evt_{id}"), "object": "event", "created_at": now, "type": "batch.completed",
        "data": {"id": format!("batch_{id}")}});
    let base = event.to_string().len();
    if size > base + 40 {
        event["data"]["metadata"] = json!({"pad": "x".repeat(size - base - 30)});
    }
    event.to_string().into_bytes()
}

/// The two request lines of one pair: a signed dispatch and the invoke of its event.
struct Pair {
    dispatch: Vec<u8>,
    invoke: Vec<u8>,
    body_bytes: usize,
}

fn build_pairs(first_session: u64, count: usize, size: usize, secret: &str, tag: &str) -> Vec<Pair> {
    // Request lines are written as text (the daemon's key order: envelope fields, then `data` with
    // its keys sorted), so that building a hundred thousand of them takes seconds, not a minute.
    let now = unix_now();
    let subscription = format!(
        r#"{{"endpoint":"{ENDPOINT}","expires_at":-1,"parameters":{{}},"properties":{{"webhook_secret":"{SECRET}"}}}}"#
    );
    (0..count)
        .map(|i| {
            let id = format!("{tag}{i}");
            let body = body_of_size(&id, now, size);
            let body_bytes = body.len();
            let body_text = String::from_utf8_lossy(&body).into_owned();
            let delivery = SignedDelivery::new(secret, &format!("wh_{id}"), now, body);
            let raw = delivery.raw_request("/triggers/plugin/5b0e7a52-4f0c-4d7e-9a43-2f6d1c8b9e10");
            let raw_hex = dify_plugin::raw_http::encode_hex(&raw);
            let session = first_session + 2 * i as u64;
            let dispatch = format!(
                concat!(
                    r#"{{"session_id":"b-{session}","conversation_id":null,"message_id":null,"app_id":null,"#,
                    r#""endpoint_id":null,"context":null,"event":"request","data":{{"action":"dispatch_trigger_event","#,
                    r#""credential_type":"unauthorized","credentials":{{}},"provider":"{provider}","raw_http_request":"{raw}","#,
                    r#""subscription":{subscription},"type":"trigger","user_id":""}}}}"#,
                    "\n"
                ),
                session = session,
                provider = PROVIDER,
                raw = raw_hex,
                subscription = subscription,
            );
            let invoke = format!(
                concat!(
                    r#"{{"session_id":"b-{session}","conversation_id":null,"message_id":null,"app_id":null,"#,
                    r#""endpoint_id":null,"context":null,"event":"request","data":{{"action":"invoke_trigger_event","#,
                    r#""credential_type":"unauthorized","credentials":{{}},"event":"batch_completed","parameters":{{}},"#,
                    r#""payload":{{"event":{body},"webhook_id":"wh_{id}","webhook_timestamp":{now}}},"provider":"{provider}","#,
                    r#""raw_http_request":"{raw}","subscription":{subscription},"type":"trigger","user_id":""}}}}"#,
                    "\n"
                ),
                session = session + 1,
                body = body_text,
                id = id,
                now = now,
                provider = PROVIDER,
                raw = raw_hex,
                subscription = subscription,
            );
            Pair { dispatch: dispatch.into_bytes(), invoke: invoke.into_bytes(), body_bytes }
        })
        .collect()
}

/// Runs `lines` one at a time on the reader thread; answers the latency of each group of `group`.
fn scripted(proc: &mut Proc, lines: Vec<Vec<u8>>, group: usize) -> Result<Vec<Duration>> {
    if lines.is_empty() {
        return Ok(Vec::new());
    }
    let (done, finished) = mpsc::channel();
    let first = lines[0].clone();
    *proc.script.lock().unwrap_or_else(|p| p.into_inner()) =
        Some(Script { lines, group, next: 1, unit_started: Instant::now(), latencies: Vec::new(), done });
    proc.send(&first)?;
    finished
        .recv_timeout(Duration::from_secs(600))
        .map_err(|_| proc.failed("a one-at-a-time run did not finish within 600 s".to_owned()))
}

/// Latencies of pairs run one at a time. Lines that do not fit a pipe are written from this
/// thread instead (a contestant that echoes while it reads, like `cat`, would otherwise block the
/// reader thread's write against its own full output).
fn one_at_a_time(proc: &mut Proc, pairs: &[Pair]) -> Result<Vec<Duration>> {
    const PIPE: usize = 48 * 1024;
    if pairs.iter().all(|p| p.dispatch.len() < PIPE && p.invoke.len() < PIPE) {
        let lines = pairs.iter().flat_map(|p| [p.dispatch.clone(), p.invoke.clone()]).collect();
        return scripted(proc, lines, 2);
    }
    let mut latencies = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let start = Instant::now();
        proc.send(&pair.dispatch)?;
        proc.next_end(Duration::from_secs(60))?;
        proc.send(&pair.invoke)?;
        let (_, at, _, _) = proc.next_end(Duration::from_secs(60))?;
        latencies.push(at.saturating_duration_since(start));
    }
    Ok(latencies)
}

/// `in_flight` pairs at a time, each pair's invoke sent when its dispatch ended. Answers the
/// elapsed time and every pair's latency.
fn pipelined(
    proc: &mut Proc,
    pairs: &[Pair],
    in_flight: usize,
    first_session: u64,
) -> Result<(Duration, Vec<Duration>)> {
    let mut started = vec![None; pairs.len()];
    let mut latencies = Vec::with_capacity(pairs.len());
    let mut next = 0;
    let begin = Instant::now();
    while next < pairs.len().min(in_flight) {
        started[next] = Some(Instant::now());
        proc.send(&pairs[next].dispatch)?;
        next += 1;
    }
    let mut done = 0;
    while done < pairs.len() {
        let (session, at, _, _) = proc.next_end(Duration::from_secs(120))?;
        let offset = session.saturating_sub(first_session);
        let index = (offset / 2) as usize;
        if index >= pairs.len() {
            continue;
        }
        if offset % 2 == 0 {
            proc.send(&pairs[index].invoke)?;
        } else {
            if let Some(start) = started[index] {
                latencies.push(at.saturating_duration_since(start));
            }
            done += 1;
            if next < pairs.len() {
                started[next] = Some(Instant::now());
                proc.send(&pairs[next].dispatch)?;
                next += 1;
            }
        }
    }
    Ok((begin.elapsed(), latencies))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// One contestant's figures from one run.
#[derive(Debug, Default, Clone, serde::Serialize)]
struct Figures {
    heartbeat_ms: Option<f64>,
    first_dispatch_ms: Option<f64>,
    pair_p50_us: f64,
    pair_p99_us: f64,
    pair_p999_us: f64,
    /// in flight → (pairs per second, p50 µs, p99 µs)
    throughput: Vec<(usize, f64, f64, f64)>,
    cpu_per_pair_us: Option<f64>,
    /// The same CPU, user and system apart (µs per pair).
    cpu_user_system_us: Option<(f64, f64)>,
    /// Times the process went to sleep waiting for input (voluntary context switches), per pair:
    /// how many wake-ups the CPU above is spread over.
    sleeps_per_pair: Option<f64>,
    peak_rss_kib: Option<u64>,
    /// body bytes → (µs per pair, MB/s)
    bodies: Vec<(usize, f64, f64)>,
    bad_signature_p50_us: Option<f64>,
}

struct Sizes {
    warm_up: usize,
    sequential: usize,
    pipelined: usize,
    cpu: usize,
    body_pairs: [usize; 3],
    bad: usize,
}

fn sizes(kind: Kind, quick: bool) -> Sizes {
    let scale = if quick { 4 } else { 1 };
    match kind {
        Kind::Python => Sizes {
            warm_up: 50,
            sequential: 300 / scale,
            pipelined: 1500 / scale,
            cpu: 1500 / scale,
            body_pairs: [100 / scale, 40 / scale, 6],
            bad: 100 / scale,
        },
        _ => Sizes {
            warm_up: 500,
            sequential: 4000 / scale,
            pipelined: 20_000 / scale,
            cpu: 30_000 / scale,
            body_pairs: [2000 / scale, 400 / scale, 40 / scale],
            bad: 2000 / scale,
        },
    }
}

/// One run of every scenario against one contestant (a fresh process).
fn run_one(launch: &Launch, quick: bool, cpu_only: bool, session_base: &mut u64) -> Result<Figures> {
    let mut figures = Figures::default();
    let size = sizes(launch.kind, quick);
    let mut proc = Proc::start(launch)?;
    let warm = build_pairs(0, 2, 1024, SECRET, &format!("w{}-", *session_base));
    if launch.kind.is_plugin() {
        let heartbeat = proc.wait_heartbeat(Duration::from_secs(60))?;
        figures.heartbeat_ms = Some(heartbeat.duration_since(proc.started).as_secs_f64() * 1e3);
    }
    // Spawn → first answered dispatch is measured on a second, fresh process below; here the
    // sanity check: the first pair must fire and invoke, or the run measures errors.
    proc.send(&warm[0].dispatch)?;
    let (_, _, ok, kept) = proc.next_end(Duration::from_secs(60))?;
    if launch.kind.is_plugin() {
        let fired = kept.as_deref().and_then(|k| serde_json::from_str::<Value>(k).ok());
        let events = fired.as_ref().map(|f| f["events"].clone()).unwrap_or(Value::Null);
        if !ok || events != json!(["batch_completed", "any_event"]) {
            return Err(proc.failed(format!("the first dispatch did not fire: {kept:?}")));
        }
    }
    proc.send(&warm[0].invoke)?;
    let (_, _, ok, kept) = proc.next_end(Duration::from_secs(60))?;
    if launch.kind.is_plugin() && !ok {
        return Err(proc.failed(format!("the first invoke failed: {kept:?}")));
    }

    let mut next_session = |count: usize| {
        let first = *session_base;
        *session_base += 2 * count as u64 + 2;
        first
    };
    // Warm-up, unmeasured: page faults, allocator arenas and CPU frequency settle first (without
    // it the first scenario measures them, `cat` included).
    let first = next_session(size.warm_up);
    let pairs = build_pairs(first, size.warm_up, 1024, SECRET, &format!("u{first}-"));
    one_at_a_time(&mut proc, &pairs)?;
    if cpu_only {
        // Warmed at 64 in flight too, as the full run's in-flight phases warm it.
        let first = next_session(size.pipelined);
        let pairs = build_pairs(first, size.pipelined, 1024, SECRET, &format!("v{first}-"));
        pipelined(&mut proc, &pairs, 64, first)?;
        cpu_phase(&mut proc, launch, size.cpu, &mut next_session, &mut figures)?;
        proc.stop();
        return Ok(figures);
    }
    // One at a time.
    let first = next_session(size.sequential);
    let pairs = build_pairs(first, size.sequential, 1024, SECRET, &format!("s{first}-"));
    let mut latencies = one_at_a_time(&mut proc, &pairs)?;
    latencies.sort();
    figures.pair_p50_us = micros(percentile(&latencies, 50.0));
    figures.pair_p99_us = micros(percentile(&latencies, 99.0));
    figures.pair_p999_us = micros(percentile(&latencies, 99.9));
    // In flight.
    for in_flight in IN_FLIGHT {
        let count = size.pipelined.max(in_flight * 4);
        let first = next_session(count);
        let pairs = build_pairs(first, count, 1024, SECRET, &format!("p{first}-"));
        let (elapsed, mut latencies) = pipelined(&mut proc, &pairs, in_flight, first)?;
        latencies.sort();
        figures.throughput.push((
            in_flight,
            count as f64 / elapsed.as_secs_f64(),
            micros(percentile(&latencies, 50.0)),
            micros(percentile(&latencies, 99.0)),
        ));
    }
    cpu_phase(&mut proc, launch, size.cpu, &mut next_session, &mut figures)?;
    // Body sizes, one at a time.
    for (size_bytes, count) in BODY_SIZES.iter().zip(size.body_pairs) {
        let first = next_session(count);
        let pairs = build_pairs(first, count.max(1), *size_bytes, SECRET, &format!("b{first}-"));
        let mut latencies = one_at_a_time(&mut proc, &pairs)?;
        latencies.sort();
        let median = percentile(&latencies, 50.0);
        let body = pairs[0].body_bytes as f64;
        figures.bodies.push((*size_bytes, micros(median), body / median.as_secs_f64() / 1e6));
    }
    // A bad signature: the dispatch alone, one at a time.
    if launch.kind.is_plugin() {
        let first = next_session(size.bad);
        let pairs = build_pairs(first, size.bad, 1024, WRONG, &format!("x{first}-"));
        let mut latencies = scripted(&mut proc, pairs.iter().map(|p| p.dispatch.clone()).collect(), 1)?;
        latencies.sort();
        figures.bad_signature_p50_us = Some(micros(percentile(&latencies, 50.0)));
    }
    proc.stop();

    // Cold start to the first answered dispatch: a fresh process, the dispatch written at once.
    if launch.kind.is_plugin() {
        let first = next_session(1);
        let pairs = build_pairs(first, 1, 1024, SECRET, &format!("f{first}-"));
        let mut fresh = Proc::start(launch)?;
        fresh.send(&pairs[0].dispatch)?;
        let deadline = Duration::from_secs(60);
        loop {
            let (session, at, _, _) = fresh.next_end(deadline)?;
            if session == first {
                figures.first_dispatch_ms = Some(at.duration_since(fresh.started).as_secs_f64() * 1e3);
                break;
            }
        }
        fresh.stop();
    }
    Ok(figures)
}

/// CPU per pair at 64 in flight (plugins only: `cat` is not the one doing the work), and the peak RSS.
fn cpu_phase(
    proc: &mut Proc,
    launch: &Launch,
    count: usize,
    next_session: &mut impl FnMut(usize) -> u64,
    figures: &mut Figures,
) -> Result<()> {
    let first = next_session(count);
    let pairs = build_pairs(first, count, 1024, SECRET, &format!("c{first}-"));
    // OT_BENCH_PROFILE=1: announce the CPU phase and wait, so a profiler can attach to the pid.
    if std::env::var_os("OT_BENCH_PROFILE").is_some() {
        eprintln!("profile: cpu phase of {} pid {} in 2 s", launch.kind.name(), proc.pid());
        std::thread::sleep(Duration::from_secs(2));
    }
    let (user_before, system_before) = proc.cpu();
    let sleeps_before = proc.status_kib("voluntary_ctxt_switches:");
    pipelined(proc, &pairs, 64, first)?;
    let (user_after, system_after) = proc.cpu();
    let sleeps = proc.status_kib("voluntary_ctxt_switches:").saturating_sub(sleeps_before);
    if launch.kind.is_plugin() {
        let per_pair = |d: Duration| micros(d) / count as f64;
        let (user, system) =
            (per_pair(user_after.saturating_sub(user_before)), per_pair(system_after.saturating_sub(system_before)));
        figures.cpu_per_pair_us = Some(user + system);
        figures.cpu_user_system_us = Some((user, system));
        figures.sleeps_per_pair = Some(sleeps as f64 / count as f64);
        figures.peak_rss_kib = Some(proc.status_kib("VmHWM:"));
    }
    Ok(())
}

fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// A full replay table, as a busy tenant's storage holds it: every bucket at its 60 entries, live
/// (an hour old), of deliveries the bench never sends.
fn full_table() -> BenchStorage {
    let storage = BenchStorage::default();
    let recorded_at = u32::try_from(unix_now() - 3600).unwrap_or(0);
    for index in 0..BUCKETS {
        let mut value = Vec::with_capacity(ENTRIES_PER_BUCKET * 16);
        for n in 0..ENTRIES_PER_BUCKET {
            let [hi, lo] = u16::try_from(index).unwrap_or(0).to_be_bytes();
            value.extend_from_slice(&[0xbe, 0x4c, hi, lo, n as u8, 0xee, 0xee, 0xee, 0xee, 0xee]);
            value.extend_from_slice(&recorded_at.to_be_bytes());
            value.extend_from_slice(&0xbe4cu16.to_be_bytes());
        }
        storage.put(&bucket_key(index), &value);
    }
    storage
}

fn launches(root: &Path, options: &Options) -> Result<Vec<Launch>> {
    let want = |kind: Kind| options.only.is_empty() || options.only.iter().any(|o| o == kind.key());
    let mut launches = Vec::new();
    if want(Kind::Ours) || want(Kind::OursRefused) {
        let binary = match &options.binary {
            Some(binary) => binary.clone(),
            None => {
                say("==> cargo build --release -p openai-trigger");
                cmd::run(
                    cmd::cargo().args(["build", "--release", "--locked", "-p", "openai-trigger"]).current_dir(root),
                )?;
                root.join("target/release/openai-trigger")
            }
        };
        for (kind, storage) in [(Kind::Ours, Some(full_table())), (Kind::OursRefused, None)] {
            if want(kind) {
                let (program, args, cwd) = (binary.clone(), vec!["serve".into()], root.to_path_buf());
                launches.push(Launch { kind, program, args, cwd, storage });
            }
        }
    }
    if want(Kind::Naive) {
        let manifest = root.join(NAIVE_MANIFEST);
        if !manifest.is_file() {
            return Err(Error::NoYardstick { manifest });
        }
        let target = root.join("target/bench-naive");
        say(&format!("==> cargo build --release --manifest-path {} (the naive yardstick)", manifest.display()));
        cmd::run(
            cmd::cargo()
                .args(["build", "--release", "--manifest-path"])
                .arg(&manifest)
                .arg("--target-dir")
                .arg(&target),
        )?;
        launches.push(Launch {
            kind: Kind::Naive,
            program: target.join("release/naive-plugin"),
            args: vec![],
            cwd: target.clone(),
            storage: None,
        });
    }
    if want(Kind::Python) {
        let dir = root.join("bench/python-sdk-plugin");
        say("==> bash bench/python-sdk-plugin/setup.sh (the official Python SDK, pinned)");
        let mut setup = Command::new("bash");
        setup.arg(dir.join("setup.sh")).current_dir(&dir).stderr(Stdio::inherit());
        let output = cmd::output(&mut setup)?;
        if !output.status.success() {
            return Err(Error::Failed { command: cmd::describe(&setup), status: output.status });
        }
        let python = String::from_utf8_lossy(&output.stdout).lines().last().unwrap_or("").trim().to_owned();
        launches.push(Launch {
            kind: Kind::Python,
            program: PathBuf::from(python),
            args: vec!["-m".into(), "main".into()],
            cwd: dir,
            storage: None,
        });
    }
    if want(Kind::Cat) {
        let (program, cwd) = (PathBuf::from("cat"), root.to_path_buf());
        launches.push(Launch { kind: Kind::Cat, program, args: vec![], cwd, storage: None });
    }
    Ok(launches)
}

/// `cargo xtask bench`.
pub(crate) fn bench(root: &Path, options: &Options) -> Result<ExitCode> {
    let launches = launches(root, options)?;
    let runs = if options.quick { 1 } else { options.runs.max(1) };
    let mut all: HashMap<Kind, Vec<Figures>> = HashMap::new();
    let mut session_base = 10u64;
    for run in 1..=runs {
        for launch in &launches {
            say(&format!("run {run}/{runs}: {}", launch.kind.name()));
            let figures = run_one(launch, options.quick, options.cpu_only, &mut session_base)?;
            all.entry(launch.kind).or_default().push(figures);
        }
    }
    let million = if options.million && launches.iter().any(|l| l.kind == Kind::Ours) {
        let ours = launches.iter().find(|l| l.kind == Kind::Ours);
        let ours =
            ours.ok_or(Error::Contestant { contestant: Kind::Ours.name(), problem: "not in this run".to_owned() })?;
        Some(million_pairs(ours, &mut session_base)?)
    } else {
        None
    };
    let report = report(&launches, &all, million.as_ref());
    say(&report);
    let machine = machine();
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir).at(&dir)?;
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let path = dir.join(format!("bench-{stamp}.json"));
    let json = json!({
        "machine": machine,
        "runs": runs,
        "quick": options.quick,
        "contestants": all.iter().map(|(k, v)| (k.key().to_owned(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "million_pairs_rss_kib": million,
        "report": report,
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&json).unwrap_or_default()).at(&path)?;
    let latest = dir.join("latest.json");
    std::fs::write(&latest, serde_json::to_vec_pretty(&json).unwrap_or_default()).at(&latest)?;
    say(&format!("wrote {} (and target/bench/latest.json)", path.display()));
    Ok(ExitCode::SUCCESS)
}

/// RSS of our plugin sampled every 100 000 pairs over 1 000 000 pairs at 64 in flight.
fn million_pairs(launch: &Launch, session_base: &mut u64) -> Result<Vec<(usize, u64)>> {
    say("1 000 000 pairs at 64 in flight (RSS every 100 000)");
    let mut proc = Proc::start(launch)?;
    proc.wait_heartbeat(Duration::from_secs(10))?;
    let mut samples = Vec::new();
    for block in 1..=10 {
        let first = *session_base;
        *session_base += 200_002;
        let pairs = build_pairs(first, 100_000, 1024, SECRET, &format!("m{first}-"));
        pipelined(&mut proc, &pairs, 64, first)?;
        samples.push((block * 100_000, proc.status_kib("VmRSS:")));
    }
    // What the memory is: mapped code and data of the binary (file-backed) against the heap and
    // stacks (anonymous); the targets are about the second.
    say(&format!(
        "after 1 000 000 pairs: RSS {} KiB = {} KiB anonymous (heap, stacks) + {} KiB file-backed (the binary's code and data)",
        proc.status_kib("VmRSS:"),
        proc.status_kib("RssAnon:"),
        proc.status_kib("RssFile:")
    ));
    proc.stop();
    Ok(samples)
}

pub(crate) fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:")).map(|l| l.trim().to_owned());
    let output = |program: &str, args: &[&str]| {
        Command::new(program).args(args).output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    json!({
        "cpu": model,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory": memory,
        "kernel": output("uname", &["-sr"]),
        "rustc": output("rustc", &["--version"]),
        "date": output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
    })
}

fn report(launches: &[Launch], all: &HashMap<Kind, Vec<Figures>>, million: Option<&Vec<(usize, u64)>>) -> String {
    let mut out = String::new();
    let kinds: Vec<Kind> = launches.iter().map(|l| l.kind).collect();
    let get = |kind: Kind, f: &dyn Fn(&Figures) -> Option<f64>| -> f64 {
        median(all.get(&kind).into_iter().flatten().filter_map(f))
    };
    let row = |label: &str, f: &dyn Fn(&Figures) -> Option<f64>, unit: &str| -> String {
        let mut line = format!("{label:<36}");
        for kind in &kinds {
            let value = get(*kind, f);
            line.push_str(&format!(
                "{:>24}",
                if value.is_nan() { "—".to_owned() } else { format!("{value:.1} {unit}") }
            ));
        }
        line
    };
    out.push_str(&format!("\n{:<36}", "median of the runs"));
    for kind in &kinds {
        out.push_str(&format!("{:>24}", kind.name()));
    }
    out.push('\n');
    out.push_str(&row("spawn → first heartbeat", &|f| f.heartbeat_ms, "ms"));
    out.push('\n');
    out.push_str(&row("spawn → first answered dispatch", &|f| f.first_dispatch_ms, "ms"));
    out.push('\n');
    out.push_str(&row("pair one at a time, p50", &|f| Some(f.pair_p50_us), "µs"));
    out.push('\n');
    out.push_str(&row("pair one at a time, p99", &|f| Some(f.pair_p99_us), "µs"));
    out.push('\n');
    out.push_str(&row("pair one at a time, p99.9", &|f| Some(f.pair_p999_us), "µs"));
    out.push('\n');
    for (index, in_flight) in IN_FLIGHT.iter().enumerate() {
        out.push_str(&row(
            &format!("pairs/s at {in_flight} in flight"),
            &|f| f.throughput.get(index).map(|t| t.1),
            "/s",
        ));
        out.push('\n');
        out.push_str(&row(
            &format!("  latency p50 / p99 at {in_flight}"),
            &|f| f.throughput.get(index).map(|t| t.2),
            "µs",
        ));
        out.push('\n');
        out.push_str(&row("", &|f| f.throughput.get(index).map(|t| t.3), "µs"));
        out.push('\n');
    }
    out.push_str(&row("CPU per pair at 64 in flight", &|f| f.cpu_per_pair_us, "µs"));
    out.push('\n');
    out.push_str(&row("  of which user", &|f| f.cpu_user_system_us.map(|c| c.0), "µs"));
    out.push('\n');
    out.push_str(&row("  of which system", &|f| f.cpu_user_system_us.map(|c| c.1), "µs"));
    out.push('\n');
    out.push_str(&row("  sleeps (waits for input) per pair", &|f| f.sleeps_per_pair, ""));
    out.push('\n');
    out.push_str(&row("peak RSS (VmHWM)", &|f| f.peak_rss_kib.map(|k| k as f64 / 1024.0), "MiB"));
    out.push('\n');
    for (index, size) in BODY_SIZES.iter().enumerate() {
        out.push_str(&row(
            &format!("pair with a {} KiB body", size / 1024),
            &|f| f.bodies.get(index).map(|b| b.1),
            "µs",
        ));
        out.push('\n');
        out.push_str(&row("  body throughput", &|f| f.bodies.get(index).map(|b| b.2), "MB/s"));
        out.push('\n');
    }
    out.push_str(&row("bad signature, p50", &|f| f.bad_signature_p50_us, "µs"));
    out.push('\n');
    if kinds.contains(&Kind::Ours) || kinds.contains(&Kind::OursRefused) {
        out.push_str(&format!(
            "{}: plugin storage granted, answered from memory as the daemon does (a full table)\n",
            Kind::Ours.name()
        ));
        out.push_str(&format!("{}: the same binary, its storage calls refused\n", Kind::OursRefused.name()));
    }

    // The targets, each a ratio within this run.
    let ours = |f: &dyn Fn(&Figures) -> Option<f64>| get(Kind::Ours, f);
    let naive = |f: &dyn Fn(&Figures) -> Option<f64>| get(Kind::Naive, f);
    let python = |f: &dyn Fn(&Figures) -> Option<f64>| get(Kind::Python, f);
    let floor = get(Kind::Cat, &|f| Some(f.pair_p50_us));
    let floor_p99 = get(Kind::Cat, &|f| Some(f.pair_p99_us));
    let at64 = |f: &Figures| f.throughput.get(2).map(|t| t.1);
    let mut targets: Vec<(String, bool, String)> = Vec::new();
    let cold = ours(&|f| f.first_dispatch_ms) / naive(&|f| f.first_dispatch_ms);
    targets.push(("cold start ≤ 1.3× naive".into(), cold <= 1.3, format!("{cold:.2}×")));
    let p50 = ours(&|f| Some(f.pair_p50_us)) / floor;
    targets.push(("pair p50 ≤ 2× the pipe floor".into(), p50 <= 2.0, format!("{p50:.2}×")));
    let p99 = ours(&|f| Some(f.pair_p99_us)) / floor_p99;
    targets.push(("pair p99 ≤ 4× the pipe floor".into(), p99 <= 4.0, format!("{p99:.2}×")));
    let cpu = ours(&|f| f.cpu_per_pair_us);
    targets.push(("CPU per pair at 64 in flight ≤ 15 µs".into(), cpu <= 15.0, format!("{cpu:.1} µs")));
    let vs_naive = ours(&at64) / naive(&at64);
    targets.push(("pairs/s at 64 ≥ 2× naive".into(), vs_naive >= 2.0, format!("{vs_naive:.2}×")));
    let vs_python = ours(&at64) / python(&at64);
    targets.push(("pairs/s at 64 ≥ 30× Python SDK".into(), vs_python >= 30.0, format!("{vs_python:.0}×")));
    let rss = ours(&|f| f.peak_rss_kib.map(|k| k as f64 / 1024.0));
    targets.push(("peak RSS ≤ 6 MiB".into(), rss <= 6.0, format!("{rss:.1} MiB")));
    let mbps = ours(&|f| f.bodies.get(2).map(|b| b.2));
    targets.push(("≥ 300 MB/s of body at 1 MiB".into(), mbps >= 300.0, format!("{mbps:.0} MB/s")));
    out.push_str("\ntargets (ratios within this run)\n");
    for (label, met, value) in &targets {
        let verdict = if value.contains("NaN") {
            "n/a "
        } else if *met {
            "met "
        } else {
            "MISS"
        };
        out.push_str(&format!("  {verdict} {label:<40} {value}\n"));
    }
    if let Some(samples) = million {
        out.push_str("\nRSS over 1 000 000 pairs (ours): ");
        out.push_str(
            &samples
                .iter()
                .map(|(n, kib)| format!("{}k {:.1} MiB", n / 1000, *kib as f64 / 1024.0))
                .collect::<Vec<_>>()
                .join(", "),
        );
        out.push('\n');
    }
    out
}
