//! Streaming back-pressure (issue #21, "Throughout"): a model that streams ten thousand chunks to
//! a reader that does not keep up stays within the output budget — the model is held at its next
//! `send` instead of queueing its whole answer in memory — and a second session's answer is not
//! stuck behind the ten thousand chunks: it comes out as soon as the reader takes the lines ahead of
//! it, which the output budget bounds.
//!
//! The clock is tokio's paused test clock: it moves only when every task is blocked, so "the model
//! is held" is observed as a fact (its count after the runtime went idle), not timed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    reason = "tests, benchmarks and examples fail loudly"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dify_plugin::model::{
    LargeLanguageModel, LlmChunk, LlmInput, LlmOutput, ModelPlugin, ModelProvider, ModelRequest, NoInput, Object, Usage,
};
use dify_plugin::{ErrorData, ServeOptions, Session, serve};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const CHUNKS: usize = 10_000;
/// The output budget of this test's runtime, and the pipe to the reader.
const BUDGET: usize = 64 * 1024;
const PIPE: usize = 4096;
/// The writer's own buffer (`serve.rs`, `write_lines`): lines in it have left the budget.
const WRITER: usize = 64 * 1024;

struct Provider;

impl ModelProvider for Provider {
    async fn validate_provider_credentials(
        &self,
        request: ModelRequest<NoInput>,
        _: &Session,
    ) -> Result<Object, ErrorData> {
        Ok(request.credentials.values)
    }
}

/// Streams `CHUNKS` pieces, counting each one `send` accepted.
struct Chatty(Arc<AtomicUsize>);

impl LargeLanguageModel for Chatty {
    async fn invoke(&self, _request: ModelRequest<LlmInput>, mut out: LlmOutput) -> Result<(), ErrorData> {
        let started = std::time::Instant::now();
        for i in 0..CHUNKS {
            out.text(format!("piece {i:05} of a long answer; ")).await?;
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        out.send(LlmChunk::finish("stop", Usage::new(1, CHUNKS as u64, None, started))).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_reader_holds_a_streaming_model_and_other_sessions_still_answer() {
    let sent = Arc::new(AtomicUsize::new(0));
    let plugin = Arc::new(ModelPlugin::new("p", Provider).llm(Chatty(sent.clone())));
    let (mut input, plugin_in) = tokio::io::duplex(1 << 16);
    let (plugin_out, output) = tokio::io::duplex(PIPE);
    let options = ServeOptions {
        max_queued_output: BUDGET,
        heartbeat_interval: Duration::from_secs(3600),
        session_deadline: Duration::from_secs(24 * 3600),
        ..ServeOptions::default()
    };
    let served = tokio::spawn(serve(BufReader::new(plugin_in), plugin_out, plugin, options, std::future::pending()));
    let request = |session: &str, data: Value| {
        json!({"session_id": session, "event": "request", "data": data}).to_string() + "\n"
    };
    let llm = json!({"action": "invoke_llm", "type": "model", "provider": "p", "model": "m", "model_type": "llm",
        "credentials": {}, "prompt_messages": [{"role": "user", "content": "talk"}], "stream": true});
    input.write_all(request("long", llm).as_bytes()).await.unwrap();

    // Nobody reads: once every task is blocked the paused clock moves, and the model must be held
    // at its send with no more than the budget (plus the pipe) of its answer produced.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let held_at = sent.load(Ordering::SeqCst);
    let line_len = r#"{"event":"session","session_id":"long","data":{"type":"stream","data":{"model":"m","system_fingerprint":null,"prompt_messages":[],"delta":{"index":9999,"message":{"role":"assistant","content":"piece 09999 of a long answer; ","name":null,"tool_calls":[]},"usage":null,"finish_reason":null}}}}"#.len();
    assert!(held_at < CHUNKS, "the model ran to the end with nobody reading");
    assert!(
        held_at * line_len <= BUDGET + WRITER + PIPE + 2 * line_len,
        "{held_at} chunks of {line_len} bytes produced: more than the {BUDGET}-byte budget, the writer's buffer and the pipe"
    );

    // Another session meanwhile: a token count.
    let count = json!({"action": "get_llm_num_tokens", "type": "model", "provider": "p", "model": "m",
        "model_type": "llm", "credentials": {}, "prompt_messages": [{"role": "user", "content": "how long is this"}], "tools": []});
    input.write_all(request("short", count).as_bytes()).await.unwrap();
    // Until it is queued behind what the budget holds (the clock moves once everything waits).
    tokio::time::sleep(Duration::from_secs(60)).await;

    // Now read, slowly: one line at a time.
    let mut lines = BufReader::new(output).lines();
    let mut indexes = Vec::new();
    let mut short_done_at = None;
    let mut long_done_at = None;
    let mut read = 0usize;
    while long_done_at.is_none() || short_done_at.is_none() {
        let line = lines.next_line().await.unwrap().expect("output open");
        read += 1;
        let value: Value = serde_json::from_str(&line).unwrap();
        if value["event"] != "session" {
            continue;
        }
        match (value["session_id"].as_str().unwrap(), value["data"]["type"].as_str().unwrap()) {
            ("long", "stream") => indexes.push(value["data"]["data"]["delta"]["index"].as_u64().unwrap()),
            ("long", "end") => long_done_at = Some(read),
            ("short", "stream") => assert!(value["data"]["data"]["num_tokens"].as_u64().unwrap() > 0),
            ("short", "end") => short_done_at = Some(read),
            other => panic!("unexpected {other:?}: {line}"),
        }
        if read % 100 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let (short_done_at, long_done_at) = (short_done_at.unwrap(), long_done_at.unwrap());
    assert!(short_done_at < long_done_at, "the short session waited for the whole long answer");
    // Ahead of it: what was produced before it queued (the budget, the writer's buffer, the pipe),
    // and at most one more budget's worth that the long session may queue when room frees up
    // before the short one is scheduled (the permits are handed out in order, but a task that
    // finds room free sends on without yielding until tokio's cooperative budget stops it).
    assert!(
        short_done_at * line_len <= 2 * BUDGET + WRITER + PIPE + 8 * line_len,
        "the short session's answer came after {short_done_at} lines: more than the budget allows ahead of it"
    );
    assert_eq!(indexes, (0..=CHUNKS as u64).collect::<Vec<_>>(), "every chunk, once, in order");
    drop(input);
    served.await.unwrap().unwrap();
}
