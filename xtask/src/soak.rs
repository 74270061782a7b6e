//! `cargo xtask soak`: the release binary under a long, mixed load over its stdio pipes, the way the
//! daemon drives it, with many requests in flight. Every answer is checked against what its request
//! deserves; memory, open file descriptors and threads are sampled throughout.
//!
//! The mix (by request number): 40 % new deliveries (fire), 10 % retries of a recent one
//! (duplicate), 15 % signed with another secret (401), 5 % not hex (400), 5 % a body that cannot be
//! an event (400), 15 % invokes (variables), 5 % unknown actions (NotImplementedError), 5 % lines that
//! are not JSON (a log, no session).
//!
//! Passes when no answer is unexpected, the process exits 0 at the end of its input, RSS after the
//! warm-up (the replay memory full: 65 536 accepted ids) stays within 10 % + 1 MiB of its level
//! then, and descriptors and threads never change.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use openai_trigger::provider::PROVIDER;
use openai_trigger::samples::{SignedDelivery, sample_body};
use serde_json::{Value, json};

use crate::console::say;
use crate::error::{Error, Result};
use crate::{cmd, paths};

const SECRET: &str = "whsec_c29hay10ZXN0LXNpZ25pbmctc2VjcmV0LTAwMDAwMDE=";
const OTHER: &str = "whsec_YW5vdGhlci1zb2FrLXNlY3JldC1rZXktMDAwMDAwMDI=";
const ENDPOINT: &str = "https://dify.test/triggers/plugin/soak";
/// Accepted ids the plugin remembers: until that many were accepted, memory is still growing.
const REPLAY_CAPACITY: u64 = 65_536;

/// What a request deserves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Class {
    Fires,
    Duplicate,
    Unauthorized,
    BadRequest,
    Variables,
    NotImplemented,
}

fn request(n: u64, now: i64, in_flight: u64) -> (Option<Class>, String) {
    let subscription =
        json!({"endpoint": ENDPOINT, "expires_at": -1, "parameters": {}, "properties": {"webhook_secret": SECRET}});
    let dispatch = |raw: &[u8]| json!({"action": "dispatch_trigger_event", "type": "trigger", "user_id": "", "provider": PROVIDER, "credentials": {}, "subscription": subscription, "raw_http_request": hex::encode(raw)});
    let body = |id: u64| sample_body("batch.completed", &format!("evt_soak_{id}"), now);
    let (class, data) = match n % 20 {
        0..=7 => (
            Class::Fires,
            dispatch(&SignedDelivery::new(SECRET, &format!("wh_soak_{n}"), now, body(n)).raw_request("/t")),
        ),
        8 | 9 => {
            // A retry (same id, same body) of a delivery sent long enough ago to have been answered:
            // twice the in-flight window back.
            let back = (2 * in_flight).div_ceil(20) + 1;
            let (earlier, class) = match (n / 20).checked_sub(back) {
                Some(block) => (block * 20 + 7, Class::Duplicate),
                None => (n, Class::Fires),
            };
            (
                class,
                dispatch(
                    &SignedDelivery::new(SECRET, &format!("wh_soak_{earlier}"), now, body(earlier)).raw_request("/t"),
                ),
            )
        }
        10..=12 => (
            Class::Unauthorized,
            dispatch(&SignedDelivery::new(OTHER, &format!("wh_soak_{n}"), now, body(n)).raw_request("/t")),
        ),
        13 => {
            let mut data = dispatch(b"");
            data["raw_http_request"] = json!("not hex at all");
            (Class::BadRequest, data)
        }
        14 => (
            Class::BadRequest,
            dispatch(
                &SignedDelivery::new(
                    SECRET,
                    &format!("wh_soak_{n}"),
                    now,
                    format!("{{\"type\":\"x\",\"n\":1e400,\"i\":{n}}}"),
                )
                .raw_request("/t"),
            ),
        ),
        15..=17 => {
            let payload = json!({"webhook_id": format!("wh_{n}"), "webhook_timestamp": now, "event": {"id": format!("evt_{n}"), "type": "batch.completed", "data": {"id": "batch_1"}}});
            (
                Class::Variables,
                json!({"action": "invoke_trigger_event", "type": "trigger", "user_id": "", "provider": PROVIDER, "event": "batch_completed", "credentials": {}, "subscription": subscription, "parameters": {}, "payload": payload}),
            )
        }
        18 => (Class::NotImplemented, json!({"action": "launch_rocket", "n": n})),
        _ => return (None, format!("not json, line {n}\n")),
    };
    let line = json!({"session_id": format!("soak-{n}"), "event": "request", "data": data}).to_string() + "\n";
    (Some(class), line)
}

fn classify(result: &Value) -> Option<Class> {
    let data = &result["data"];
    match data["type"].as_str()? {
        "error" if data["data"]["error_type"] == "NotImplementedError" => Some(Class::NotImplemented),
        "stream" if data["data"].get("variables").is_some() => Some(Class::Variables),
        "stream" => {
            let response = hex::decode(data["data"]["response"].as_str()?).ok()?;
            let status = String::from_utf8_lossy(&response).split(' ').nth(1)?.parse::<u16>().ok()?;
            let fired = data["data"]["events"].as_array().is_some_and(|e| !e.is_empty());
            match (status, fired) {
                (200, true) => Some(Class::Fires),
                (200, false) => Some(Class::Duplicate),
                (401, false) => Some(Class::Unauthorized),
                (400, false) => Some(Class::BadRequest),
                _ => None,
            }
        }
        _ => None,
    }
}

fn status_of(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix(field).and_then(|v| v.split_whitespace().next()?.parse().ok()))
        })
        .unwrap_or(0)
}

fn fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count() as u64).unwrap_or(0)
}

/// `cargo xtask soak`.
pub(crate) fn soak(requests: u64, in_flight: u64, binary: Option<&Path>) -> Result<ExitCode> {
    let binary = match binary {
        Some(path) => path.to_owned(),
        None => {
            cmd::run(cmd::cargo().current_dir(paths::workspace_root()).args([
                "build",
                "--release",
                "--locked",
                "-p",
                "openai-trigger",
            ]))?;
            paths::workspace_root().join("target/release/openai-trigger")
        }
    };
    let name = binary.display().to_string();
    let mut child = cmd::spawn(
        Command::new(&binary)
            .env("INSTALL_METHOD", "local")
            .env_remove("OPENAI_TRIGGER_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    )?;
    let pid = child.id();
    let pipe = |source| Error::Child { command: name.clone(), source };
    let mut stdin = child.stdin.take().ok_or_else(|| Error::NoPipe { command: name.clone(), pipe: "stdin" })?;
    let stdout = child.stdout.take().ok_or_else(|| Error::NoPipe { command: name.clone(), pipe: "stdout" })?;
    // (session, Some(result class, None when unrecognised)) for a result; (session, None) for its end.
    let (answers, answered) = mpsc::channel::<(u64, Option<Option<Class>>)>();
    let reader = std::thread::spawn(move || {
        let mut lines = 0u64;
        for line in BufReader::with_capacity(1 << 20, stdout).lines().map_while(std::result::Result::ok) {
            lines += 1;
            let Ok(value) = serde_json::from_str::<Value>(&line) else { continue };
            let Some(id) =
                value["session_id"].as_str().and_then(|s| s.strip_prefix("soak-")).and_then(|n| n.parse().ok())
            else {
                continue;
            };
            let message = if value["data"]["type"] == "end" { None } else { Some(classify(&value)) };
            let _ = answers.send((id, message));
        }
        lines
    });

    let started = Instant::now();
    let now = openai_trigger::provider::unix_now();
    let mut expected: HashMap<u64, Class> = HashMap::new();
    let mut results: HashMap<u64, Option<Class>> = HashMap::new();
    let (mut sent, mut done, mut unexpected, mut accepted) = (0u64, 0u64, 0u64, 0u64);
    let mut samples: Vec<(u64, u64, u64, u64)> = Vec::new(); // (requests done, RSS KiB, fds, threads)
    let mut first_problem: Option<String> = None;
    let sample_every = (requests / 40).max(1);
    while done < requests {
        while sent < requests && sent - done < in_flight {
            let (class, line) = request(sent, now, in_flight);
            stdin.write_all(line.as_bytes()).map_err(pipe)?;
            match class {
                Some(class) => {
                    expected.insert(sent, class);
                }
                None => done += 1, // a line that is not a session: nothing to wait for
            }
            sent += 1;
        }
        stdin.flush().map_err(pipe)?;
        let (id, result) =
            answered.recv_timeout(Duration::from_secs(30)).map_err(|_| Error::SoakStalled { seconds: 30 })?;
        match result {
            Some(class) => {
                results.insert(id, class);
            }
            None => {
                let got = results.remove(&id).flatten();
                let want = expected.remove(&id);
                if got != want {
                    unexpected += 1;
                    first_problem.get_or_insert_with(|| format!("request {id}: expected {want:?}, got {got:?}"));
                }
                if got == Some(Class::Fires) {
                    accepted += 1;
                }
                done += 1;
                if done % sample_every == 0 {
                    samples.push((accepted, status_of(pid, "VmRSS:"), fds(pid), status_of(pid, "Threads:")));
                }
            }
        }
    }
    let elapsed = started.elapsed();
    drop(stdin);
    let status = child.wait().map_err(pipe)?;
    let _ = reader.join();

    let warm: Vec<&(u64, u64, u64, u64)> = samples.iter().filter(|s| s.0 >= REPLAY_CAPACITY).collect();
    let (level, last) = (warm.first().map(|s| s.1), warm.last().map(|s| s.1));
    let rss_flat = match (level, last) {
        (Some(level), Some(last)) => last <= level + level / 10 + 1024,
        _ => false,
    };
    let fds_flat = samples.windows(2).all(|w| w[0].2 == w[1].2);
    let threads_flat = samples.windows(2).all(|w| w[0].3 == w[1].3);
    let peak = status_of(pid, "VmHWM:").max(samples.iter().map(|s| s.1).max().unwrap_or(0));
    say(&format!(
        "soak: {requests} requests ({in_flight} in flight) in {:.1} s = {:.0}/s; {unexpected} unexpected; exit {status}",
        elapsed.as_secs_f64(),
        requests as f64 / elapsed.as_secs_f64()
    ));
    say(&format!(
        "soak: RSS {} KiB when the replay memory filled, {} KiB at the end (peak sampled {peak} KiB); fds {:?}; threads {:?}",
        level.unwrap_or(0),
        last.unwrap_or(0),
        samples.iter().map(|s| s.2).min().zip(samples.iter().map(|s| s.2).max()),
        samples.iter().map(|s| s.3).min().zip(samples.iter().map(|s| s.3).max()),
    ));
    if let Some(problem) = &first_problem {
        say(&format!("soak: first unexpected answer: {problem}"));
    }
    let ok = unexpected == 0 && status.success() && fds_flat && threads_flat && rss_flat;
    if warm.len() < 2 {
        say(
            "soak: too short to judge memory: the replay memory fills after 65 536 accepted deliveries (about 170 000 requests)",
        );
    } else if !rss_flat {
        say("soak: RSS grew after the warm-up");
    }
    say(&format!("soak: {}", if ok { "passed" } else { "FAILED" }));
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
