//! Dispatch as a whole, past verification: the target signs the fuzzed body itself, so every input
//! reaches the body checks, the replay memory and the payload. No input may panic, and what dispatch
//! accepts must be carriable: the result is valid JSON for any reader (numbers in range, valid
//! strings), the payload echoes an object no deeper than the limit, and invoking every fired event
//! with that payload answers.
#![no_main]

use std::sync::Arc;

use dify_plugin::Request;
use dify_plugin::host::trigger;
use libfuzzer_sys::fuzz_target;
use openai_trigger::provider::{OpenAiTrigger, PROVIDER};
use openai_trigger::samples::{DEMO_SECRET, SignedDelivery};
use serde_json::{Value, json};

const NOW: i64 = 1_765_432_100;

fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|body: &[u8]| {
    let plugin = OpenAiTrigger::new(Arc::new(|| NOW));
    let delivery = SignedDelivery::new(DEMO_SECRET, "wh_fuzz", NOW, body.to_vec());
    let raw = delivery.raw_request("/triggers/plugin/fuzz");
    let subscription = trigger::subscription("https://dify.test/triggers/plugin/fuzz", json!({"webhook_secret": DEMO_SECRET}));
    let request = Request::from_data(&trigger::dispatch(PROVIDER, &raw, &subscription));
    let chunk = plugin.dispatch_request(&request).expect("a dispatch always answers");
    let answer: Value = serde_json::from_str(chunk.get()).expect("the answer is JSON any reader can parse");
    assert!(chunk.get().len() < dify_plugin::wire::MAX_OUTBOUND_LINE);
    let events = answer["events"].as_array().expect("events is a list");
    if events.is_empty() {
        return;
    }
    let event = &answer["payload"]["event"];
    assert!(event.is_object() && event["type"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(depth(event) <= openai_trigger::body::MAX_DEPTH, "an accepted body nests too deep");
    // Invoke without a key never calls out; a current-thread runtime drives it.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    for name in events {
        let invoke = trigger::invoke(PROVIDER, name.as_str().unwrap_or(""), &raw, &answer["payload"], &json!({}), &subscription);
        let result = runtime.block_on(plugin.handle_request(&Request::from_data(&invoke))).expect("invoke answers");
        let result: Value = serde_json::from_str(result.get()).expect("JSON");
        assert!(result["variables"].is_object());
    }
});
