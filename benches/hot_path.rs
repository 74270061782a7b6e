//! Micro-benchmarks of the hot path, each step of one webhook on its own (criterion):
//! hex decoding and HTTP parsing of the raw request, signature verification, the body check,
//! request envelope handling, the whole dispatch and invoke in process, response encoding, and a
//! whole pair through the runtime's session loop in memory.
//! Run with `cargo bench -p openai-trigger --bench hot_path`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmarks fail loudly")]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use dify_plugin::host::trigger;
use dify_plugin::raw_http::{HttpRequest, HttpResponse, encode_hex};
use dify_plugin::{Request, ServeOptions};
use openai_trigger::body;
use openai_trigger::provider::{OpenAiTrigger, PROVIDER};
use openai_trigger::samples::{DEMO_SECRET, SignedDelivery};
use openai_trigger::signature::{self, SecretSet, WebhookHeaders};
use serde_json::{Value, json};

/// The allocator the shipped binary uses (src/main.rs), so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NOW: i64 = 1_765_432_100;
const ENDPOINT: &str = "https://dify.bench/triggers/plugin/5b0e7a52";

/// A `batch.completed` event padded to about 1 KiB, as the benchmark driver sends.
fn body() -> Vec<u8> {
    let mut event = json!({"id": "evt_bench", "object": "event", "created_at": NOW, "type": "batch.completed",
        "data": {"id": "batch_bench"}});
    let base = event.to_string().len();
    event["data"]["metadata"] = json!({"pad": "x".repeat(1024 - base - 30)});
    event.to_string().into_bytes()
}

fn hot_path(c: &mut Criterion) {
    let body = body();
    let delivery = SignedDelivery::new(DEMO_SECRET, "wh_bench", NOW, body.clone());
    let raw = delivery.raw_request("/triggers/plugin/5b0e7a52");
    let raw_hex = encode_hex(&raw);
    let secrets = SecretSet::parse(DEMO_SECRET).unwrap();
    let subscription = trigger::subscription(ENDPOINT, json!({"webhook_secret": DEMO_SECRET}));
    let dispatch_data = trigger::dispatch(PROVIDER, &raw, &subscription);
    let payload = json!({"webhook_id": "wh_bench", "webhook_timestamp": NOW,
        "event": serde_json::from_slice::<Value>(&body).unwrap()});
    let invoke_data = trigger::invoke(PROVIDER, "batch_completed", &raw, &payload, &json!({}), &subscription);
    let dispatch_line =
        serde_json::to_string(&json!({"session_id": "s", "event": "request", "data": dispatch_data})).unwrap();

    c.bench_function("hex decode + HTTP parse (1 KiB body)", |b| {
        b.iter(|| HttpRequest::from_hex(black_box(&raw_hex), 1 << 20).unwrap())
    });
    let parsed = HttpRequest::from_hex(&raw_hex, 1 << 20).unwrap();
    c.bench_function("signature verification (1 KiB body)", |b| {
        let headers = WebhookHeaders {
            id: parsed.header_str(signature::HEADER_ID),
            timestamp: parsed.header_str(signature::HEADER_TIMESTAMP),
            signature: parsed.header_str(signature::HEADER_SIGNATURE),
        };
        b.iter(|| signature::verify(black_box(&secrets), headers, black_box(parsed.body()), NOW).unwrap())
    });
    let text = std::str::from_utf8(&body).unwrap();
    c.bench_function("body check (1 KiB)", |b| b.iter(|| body::check(black_box(text)).unwrap()));
    c.bench_function("request envelope: classify a dispatch line", |b| {
        b.iter(|| dify_plugin::inbound::classify(black_box(dispatch_line.clone().into_bytes())))
    });
    c.bench_function("response encoding (401 rejection)", |b| {
        b.iter(|| HttpResponse::json(401, black_box(&b"{\"status\":\"rejected\"}"[..])).to_hex())
    });
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let plugin = OpenAiTrigger::new(Arc::new(|| NOW));
    let mut n = 0u64;
    c.bench_function("dispatch in process (new delivery, 1 KiB)", |b| {
        b.iter(|| {
            n += 1;
            let delivery = SignedDelivery::new(DEMO_SECRET, &format!("wh_{n}"), NOW, body.clone());
            let data = trigger::dispatch(PROVIDER, &delivery.raw_request("/t"), &subscription);
            plugin.dispatch_request(&Request::from_data(&data)).unwrap()
        })
    });
    let dispatch_request = Request::from_data(&dispatch_data);
    c.bench_function("dispatch in process (duplicate, 1 KiB)", |b| {
        b.iter(|| plugin.dispatch_request(black_box(&dispatch_request)).unwrap())
    });
    let invoke_request = Request::from_data(&invoke_data);
    c.bench_function("invoke in process (1 KiB event)", |b| {
        b.iter(|| runtime.block_on(plugin.handle_request(black_box(&invoke_request))).unwrap())
    });
    c.bench_function("hex encode (4 KiB)", |b| b.iter(|| encode_hex(black_box(&raw[..raw.len().min(4096)]))));
    through_the_runtime(c, &body);
}

/// Whole pairs through the session loop (`dify_plugin::serve`) on one thread, as the binary runs
/// them, with the lines already in memory and the output thrown away: the user-space work of a
/// dispatch+invoke pair, without the pipes and wake-ups `cargo xtask bench` also counts (and
/// without their noise). Storage is unanswered, so, as with a daemon that refuses it, the first
/// dispatch pauses the shared replay memory and the measured ones use the process's own.
fn through_the_runtime(c: &mut Criterion, body: &[u8]) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let now = openai_trigger::provider::unix_now();
    let subscription = trigger::subscription(ENDPOINT, json!({"webhook_secret": DEMO_SECRET}));
    let payload_event: Value = serde_json::from_slice(body).unwrap();
    let lines = |count: u64| {
        let mut input = Vec::new();
        for _ in 0..count {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let raw = SignedDelivery::new(DEMO_SECRET, &format!("wh_{n}"), now, body.to_vec()).raw_request("/t");
            let payload = json!({"webhook_id": format!("wh_{n}"), "webhook_timestamp": now, "event": payload_event});
            let dispatch = trigger::dispatch(PROVIDER, &raw, &subscription);
            let invoke = trigger::invoke(PROVIDER, "batch_completed", &raw, &payload, &json!({}), &subscription);
            for (session, data) in [(2 * n, dispatch), (2 * n + 1, invoke)] {
                let line = json!({"session_id": format!("b-{session}"), "conversation_id": null, "message_id": null,
                    "app_id": null, "endpoint_id": null, "context": null, "event": "request", "data": data});
                serde_json::to_writer(&mut input, &line).unwrap();
                input.push(b'\n');
            }
        }
        input
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let plugin = Arc::new(OpenAiTrigger::with_system_clock().plugin());
    let options = ServeOptions { backwards_timeout: Duration::from_millis(1), ..ServeOptions::default() };
    let serve = |input: &[u8]| {
        runtime.block_on(dify_plugin::serve(
            input,
            tokio::io::sink(),
            plugin.clone(),
            options.clone(),
            std::future::pending(),
        ))
    };
    // The first dispatch's storage call goes unanswered and pauses storage for the rest.
    serve(&lines(1)).unwrap();
    // 64 pairs per session loop, the lines built just before (so in cache, as lines the kernel has
    // just copied in are): one loop over all of them would measure the memory bus instead.
    c.bench_function("a dispatch+invoke pair through the runtime (in memory, 1 KiB body)", |b| {
        b.iter_custom(|pairs| {
            let mut spent = Duration::ZERO;
            let mut left = pairs;
            while left > 0 {
                let batch = left.min(64);
                left -= batch;
                let input = lines(batch);
                let start = Instant::now();
                serve(&input).unwrap();
                spent += start.elapsed();
            }
            spent
        })
    });
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
