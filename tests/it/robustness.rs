//! Hostile input: thousands of deterministic mutations of valid requests (raw HTTP bytes, hex,
//! JSON fields, whole lines). Whatever arrives, the process must not panic or stop, every session
//! must get exactly one answer and one `end` (the transcript checks that), and a dispatch answer
//! must stay a well-formed response with a sensible status.

use serde_json::{Value, json};

use openai_trigger::events;
use openai_trigger::provider::OpenAiTrigger;
use openai_trigger::samples::sample_data;

use crate::support::*;

/// xorshift64*: deterministic, so a failure reproduces from its iteration number.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate_bytes(rng: &mut Rng, mut bytes: Vec<u8>) -> Vec<u8> {
    for _ in 0..=rng.below(4) {
        match rng.below(7) {
            0 if !bytes.is_empty() => {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
            }
            1 => bytes.truncate(rng.below(bytes.len() + 1)),
            2 => {
                let at = rng.below(bytes.len() + 1);
                let junk: Vec<u8> = (0..rng.below(40)).map(|_| rng.next() as u8).collect();
                bytes.splice(at..at, junk);
            }
            3 => {
                // A header line repeated, or a bogus one, inside the head.
                let at = bytes.windows(2).position(|w| w == b"\r\n").map_or(0, |p| p + 2);
                let line: &[u8] = match rng.below(3) {
                    0 => b"Webhook-Id: wh_evil\r\n",
                    1 => b"Webhook-Signature: v1,AAAA v1a,BBBB garbage\r\n",
                    _ => b"X-\xff\xfe: \x00\x01\r\n",
                };
                bytes.splice(at..at, line.iter().copied());
            }
            4 => {
                // The body replaced: not JSON, a JSON array, deep nesting, or a huge string.
                let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n").map_or(bytes.len(), |p| p + 4);
                bytes.truncate(head_end);
                // Large bodies are rare: they cost time (hex doubles them) but must still be covered.
                let body: Vec<u8> = match rng.below(16) {
                    0 => "[".repeat(100_000).into_bytes(),
                    1 => format!("{{\"type\":\"{}\"}}", "x".repeat(1_048_000 + rng.below(2_000))).into_bytes(),
                    2..=5 => b"[1,2,3]".to_vec(),
                    6..=9 => format!("{{\"type\":{}}}", wrong(rng)).into_bytes(),
                    _ => (0..rng.below(500)).map(|_| rng.next() as u8).collect(),
                };
                bytes.extend(body);
            }
            5 => bytes = bytes.iter().map(|&b| if b == b'\n' { b' ' } else { b }).collect(),
            _ => bytes.reverse(),
        }
    }
    bytes
}

/// A JSON value of the wrong shape, to put where the daemon sends something specific.
fn wrong(rng: &mut Rng) -> Value {
    match rng.below(7) {
        0 => Value::Null,
        1 => json!(42.5),
        2 => json!("whsec_not really"),
        3 => json!([1, "two", null]),
        4 => json!({"nested": {"deeper": [{"x": null}]}}),
        5 => json!(true),
        _ => json!(""),
    }
}

fn mutated_request(rng: &mut Rng, i: usize, now: i64) -> Value {
    let types: Vec<&str> = events::known_openai_types().collect();
    let openai_type = types[rng.below(types.len())];
    let body = event_body(openai_type, &format!("evt_fuzz_{i}"), now, &sample_data(openai_type));
    let raw = RawRequest::signed(SECRET, &format!("wh_fuzz_{i}"), now, body.clone());
    let mut bytes = raw.bytes();
    if rng.below(4) > 0 {
        bytes = mutate_bytes(rng, bytes);
    }
    let mut data = if rng.below(3) == 0 {
        let name = events::EVENTS[rng.below(events::EVENTS.len())].name;
        let payload = json!({"webhook_id": format!("wh_fuzz_{i}"), "webhook_timestamp": now,
            "event": serde_json::from_str::<Value>(&body).unwrap()});
        invoke_data(name, &bytes, &payload, &json!({"from_contains": "+1", "event_types": ["batch.completed"]}))
    } else {
        dispatch_data(&bytes, SECRET, ENDPOINT)
    };
    let object = data.as_object_mut().unwrap();
    for _ in 0..rng.below(3) {
        let keys: Vec<String> = object.keys().cloned().collect();
        let key = keys[rng.below(keys.len())].clone();
        match rng.below(4) {
            0 => {
                object.remove(&key);
            }
            1 => {
                object.insert(key, wrong(rng));
            }
            2 => {
                // Corrupt hex: odd length or a non-hex character.
                if let Some(Value::String(hex)) = object.get_mut("raw_http_request") {
                    if rng.below(2) == 0 {
                        hex.push('a');
                    } else {
                        hex.insert(rng.below(hex.len() + 1), 'z');
                    }
                }
            }
            _ => {
                if let Some(payload) = object.get_mut("payload") {
                    *payload = match rng.below(3) {
                        0 => json!({"event": wrong(rng), "webhook_id": wrong(rng), "webhook_timestamp": wrong(rng)}),
                        1 => json!({"type": wrong(rng), "data": wrong(rng)}),
                        _ => wrong(rng),
                    };
                }
            }
        }
    }
    data
}

/// Through the real binary: mutated requests interleaved with garbage lines.
#[test]
fn thousands_of_mutated_requests_never_stop_the_plugin() {
    const SESSIONS: usize = 1500;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let now = unix_now();
    let mut input = Vec::new();
    let mut ids = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        let id = format!("fuzz-{i:05}");
        input.extend_from_slice(request_line(&id, &mutated_request(&mut rng, i, now)).as_bytes());
        input.push(b'\n');
        ids.push(id);
        if i % 10 == 0 {
            // A garbage line with no session: logged and dropped, never answered.
            let junk: Vec<u8> = (0..rng.below(300)).map(|_| rng.next() as u8).filter(|&b| b != b'\n').collect();
            input.extend(junk);
            input.push(b'\n');
        }
    }
    let mut plugin = Plugin::start();
    plugin.send_raw(&input);
    let status = plugin.finish();
    assert!(status.success(), "{status:?}; stderr: {}", plugin.stderr());
    assert!(!plugin.stderr().contains("panicked"), "a panic was reported: {}", plugin.stderr());

    let mut answered = plugin.transcript.session_ids();
    answered.sort();
    assert_eq!(answered, ids, "every mutated session answered exactly once, and nothing else");
    let mut statuses = std::collections::BTreeMap::new();
    for id in &ids {
        if let Ok(chunk) = plugin.transcript.result(id) {
            if chunk.get("events").is_some() {
                let dispatched = Dispatched::from_chunk(chunk.clone());
                *statuses.entry(dispatched.http.status).or_insert(0) += 1;
                assert!(
                    [200, 400, 401, 405, 413].contains(&dispatched.http.status),
                    "{id}: {}",
                    dispatched.http.status
                );
            } else {
                assert!(chunk["variables"].is_object() && chunk["cancelled"].is_boolean(), "{id}: {chunk}");
            }
        }
    }
    // The mutations must reach every branch, or this test proves less than it claims.
    for status in [200, 400, 401, 413] {
        assert!(statuses.get(&status).copied().unwrap_or(0) > 0, "no mutated dispatch got {status}: {statuses:?}");
    }
}

/// In process, many more: no input may make an action panic.
#[test]
fn no_mutated_request_makes_an_action_panic() {
    let plugin = OpenAiTrigger::with_system_clock();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let now = unix_now();
    for i in 0..2_000 {
        let data = dify_plugin::Request::from_data(&mutated_request(&mut rng, i, now));
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(plugin.handle_request(&data))));
        assert!(outcome.is_ok(), "iteration {i} panicked");
    }
}
