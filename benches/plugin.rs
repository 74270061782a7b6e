//! Benchmarks of the real binary over pipes, the way the daemon drives it: start-up to first
//! heartbeat, one webhook's dispatch round trip, pipelined throughput, and memory (peak RSS).
//! Run with `cargo bench --bench plugin`; it prints figures and the targets they are held to.
//! The in-process figure isolates the plugin's own work from pipe and scheduling costs.
#![allow(clippy::print_stdout, clippy::disallowed_methods)] // The report is the benchmark's output.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    reason = "tests, benchmarks and examples fail loudly"
)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use dify_plugin::Request;
use dify_plugin::host::trigger;
use openai_trigger::provider::{OpenAiTrigger, PROVIDER, unix_now};
use openai_trigger::samples::{DEMO_SECRET, SignedDelivery, sample_body};
use serde_json::{Value, json};

const EXE: &str = env!("CARGO_BIN_EXE_openai-trigger");
const ENDPOINT: &str = "https://dify.localhost/triggers/plugin/bench";

fn main() {
    let startup = startup(40);
    let (round_trip, invoke_trip) = round_trips(4000);
    let (throughput, peak_kib, idle_kib) = pipelined(40_000);
    let in_process = in_process(40_000);

    println!("openai-trigger benchmarks ({})", std::env::consts::ARCH);
    println!(
        "  start-up to first heartbeat : median {:>8.2} ms  p95 {:>8.2} ms   (Python SDK plugin: ~600 ms)",
        ms(startup.0),
        ms(startup.1)
    );
    println!(
        "  dispatch round trip (pipes) : median {:>8.1} µs  p99 {:>8.1} µs   (Python SDK plugin: ~1400 µs)",
        us(round_trip.0),
        us(round_trip.1)
    );
    println!("  invoke round trip (pipes)   : median {:>8.1} µs  p99 {:>8.1} µs", us(invoke_trip.0), us(invoke_trip.1));
    println!("  dispatch in process         : mean   {:>8.1} µs", us(in_process));
    println!("  pipelined dispatches        : {:>10.0} per second", throughput);
    println!(
        "  memory: idle RSS {:.1} MiB, peak RSS after {} dispatches {:.1} MiB   (Python SDK plugin: ~66 MiB)",
        idle_kib as f64 / 1024.0,
        40_000,
        peak_kib as f64 / 1024.0
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

struct Plugin {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Plugin {
    fn start() -> (Plugin, Duration) {
        let started = Instant::now();
        let mut child =
            Command::new(EXE).arg("serve").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("spawn");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).expect("heartbeat");
        assert!(line.contains("heartbeat"), "first line was {line:?}");
        (Plugin { child, stdin, stdout }, started.elapsed())
    }

    fn send(&mut self, session: &str, data: &Value) {
        let line = json!({"session_id": session, "conversation_id": null, "message_id": null, "app_id": null, "endpoint_id": null, "context": null, "event": "request", "data": data});
        let mut bytes = serde_json::to_vec(&line).unwrap();
        bytes.push(b'\n');
        self.stdin.write_all(&bytes).unwrap();
    }

    /// Reads until `end` of one session; returns its stream chunk.
    fn answer(&mut self) -> Value {
        let mut chunk = Value::Null;
        let mut line = String::new();
        loop {
            line.clear();
            self.stdout.read_line(&mut line).unwrap();
            let message: Value = serde_json::from_str(&line).unwrap();
            match message["data"]["type"].as_str() {
                Some("stream") => chunk = message["data"]["data"].clone(),
                Some("end") => return chunk,
                Some("error") => panic!("error: {line}"),
                _ => {}
            }
        }
    }

    fn rss_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    fn stop(mut self) {
        drop(self.stdin);
        let _ = self.child.wait();
    }
}

fn percentiles(mut samples: Vec<Duration>, p: f64) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(p))
}

fn startup(runs: usize) -> (Duration, Duration) {
    let samples = (0..runs)
        .map(|_| {
            let (plugin, elapsed) = Plugin::start();
            plugin.stop();
            elapsed
        })
        .collect();
    percentiles(samples, 0.95)
}

fn delivery(i: usize) -> SignedDelivery {
    let now = unix_now();
    SignedDelivery::new(
        DEMO_SECRET,
        &format!("wh_bench_{i}"),
        now,
        sample_body("response.completed", &format!("evt_bench_{i}"), now),
    )
}

fn round_trips(n: usize) -> ((Duration, Duration), (Duration, Duration)) {
    let (mut plugin, _) = Plugin::start();
    let mut dispatches = Vec::with_capacity(n);
    let mut invokes = Vec::with_capacity(n);
    for i in 0..n {
        let raw = delivery(i).raw_request("/triggers/plugin/bench");
        let request = dispatch_request(&raw, DEMO_SECRET, ENDPOINT);
        let started = Instant::now();
        plugin.send(&format!("d{i}"), &request);
        let chunk = plugin.answer();
        dispatches.push(started.elapsed());
        assert_eq!(chunk["events"][0], "response_completed");
        let request = invoke_request("response_completed", &raw, &chunk["payload"], &json!({}), DEMO_SECRET, ENDPOINT);
        let started = Instant::now();
        plugin.send(&format!("i{i}"), &request);
        let chunk = plugin.answer();
        invokes.push(started.elapsed());
        assert_eq!(chunk["cancelled"], false);
    }
    plugin.stop();
    (percentiles(dispatches, 0.99), percentiles(invokes, 0.99))
}

fn pipelined(n: usize) -> (f64, u64, u64) {
    let (mut plugin, _) = Plugin::start();
    std::thread::sleep(Duration::from_millis(50));
    let idle = plugin.rss_kib("VmRSS:");
    let requests: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let raw = delivery(1_000_000 + i).raw_request("/triggers/plugin/bench");
            let line = json!({"session_id": format!("p{i}"), "event": "request", "data": dispatch_request(&raw, DEMO_SECRET, ENDPOINT)});
            let mut bytes = serde_json::to_vec(&line).unwrap();
            bytes.push(b'\n');
            bytes
        })
        .collect();
    let started = Instant::now();
    let mut stdin = plugin.stdin;
    let writer = std::thread::spawn(move || {
        for request in &requests {
            stdin.write_all(request).unwrap();
        }
        stdin
    });
    let mut ended = 0;
    let mut line = String::new();
    while ended < n {
        line.clear();
        plugin.stdout.read_line(&mut line).unwrap();
        if line.contains(r#""type":"end""#) {
            ended += 1;
        }
    }
    let elapsed = started.elapsed();
    plugin.stdin = writer.join().unwrap();
    let peak = plugin.rss_kib("VmHWM:");
    plugin.stop();
    (n as f64 / elapsed.as_secs_f64(), peak, idle)
}

fn in_process(n: usize) -> Duration {
    let plugin = OpenAiTrigger::with_system_clock();
    let requests: Vec<Request> = (0..n)
        .map(|i| {
            Request::from_data(&dispatch_request(&delivery(2_000_000 + i).raw_request("/t"), DEMO_SECRET, ENDPOINT))
        })
        .collect();
    let started = Instant::now();
    for request in &requests {
        let chunk = plugin.dispatch_request(request).expect("dispatch");
        assert!(chunk.get().contains("response_completed"));
    }
    started.elapsed() / n as u32
}

fn dispatch_request(raw: &[u8], secret: &str, endpoint: &str) -> Value {
    trigger::dispatch(PROVIDER, raw, &trigger::subscription(endpoint, json!({"webhook_secret": secret})))
}

fn invoke_request(event: &str, raw: &[u8], payload: &Value, parameters: &Value, secret: &str, endpoint: &str) -> Value {
    let subscription = trigger::subscription(endpoint, json!({"webhook_secret": secret}));
    trigger::invoke(PROVIDER, event, raw, payload, parameters, &subscription)
}
