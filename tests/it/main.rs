#![allow(unreachable_pub, reason = "a test crate: pub marks what its modules share")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    reason = "tests, benchmarks and examples fail loudly"
)]

//! The integration suite: one binary, one module per area (STYLE.md §8, habit 14). Every test that
//! needs the plugin runs the real `openai-trigger` binary over pipes through `support`.
mod concurrency; // Hundreds of interleaved sessions on one process.
mod declarations; // The tidy test: YAML on disk ⇄ provider list ⇄ event table, manifest rules.
mod demo; // The human commands: demo, --help, dev + send on loopback.
mod dispatch; // The six trigger actions through the binary, with exact response shapes.
mod hostile; // The table of hostile input across every layer, then the privacy scan of everything written.
mod in_process; // The provider in process on an injected clock: a subscription's days, replay memory, invoke.
mod launcher; // The binary side of main.py's noexec fallback: its temporary copy removes itself.
mod limits; // File descriptors and threads across bursts; SIGTERM drains, flushes, exits 0.
mod openai_api; // API-key subscriptions and enriched events against the mock OpenAI API on loopback.
mod people; // What people see: every --help, the demo at 80 columns, send's answers, each error with its fix (golden files).
mod protocol; // Framing, sessions, heartbeats, malformed input, EOF and EPIPE.
mod regression; // Faults found by issues, one test each, named after the issue and item.
mod remote; // Remote debugging over TCP against a stand-in for the daemon's debugging port.
mod robustness; // Thousands of mutated requests and garbage lines: no panic, every session answered.
// Serverless mode: the Flask front (serverless.py) in front of this binary, under load. It needs
// the Python venv scripts/test.sh prepares, so it belongs to the full tier (`--features full-tests`).
#[cfg(feature = "full-tests")]
mod serverless;
mod shared_dedupe; // The replay memory in the daemon's plugin storage: restarts, two processes, storage trouble.
mod signatures; // signature-vectors.json through `signature::verify` and through dispatch.
mod support;
