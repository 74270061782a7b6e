//! openai-trigger: a Dify trigger plugin that turns OpenAI webhooks into workflow runs.
//!
//! # Layout
//! - [`protocol`]: the Dify plugin daemon protocol (framing, sessions, heartbeats, shutdown).
//!   Generic over a [`protocol::Handler`]; knows nothing about OpenAI.
//! - [`provider`]: the trigger actions — dispatch (verify, dedupe, route, answer the sender) and
//!   invoke (event → workflow variables) — as a `Handler`.
//! - [`raw_http`]: the hex-encoded raw HTTP request/response Dify exchanges with triggers.
//! - [`signature`]: Standard Webhooks verification (OpenAI's `webhook-signature`).
//! - [`dedupe`]: bounded, time-limited memory of seen `webhook-id`s.
//! - [`events`]: the event table (name ⇄ OpenAI type ⇄ YAML) and one module per event family.
//! - [`declarations`]: the embedded manifest, provider and event YAML, as typed values.
//! - [`samples`]: realistic signed OpenAI deliveries for the demo, `send` and tests.
//! - [`host`]: a stand-in for Dify's side of the protocol (spawns the plugin, runs actions).
//! - [`package`] (feature `tools`): release tooling — `.difypkg`, the daemon's checksum, signing.
//! - [`remote`]: remote debugging over TCP (register with a daemon, then the same protocol).
//! - [`cli`]: the commands: `serve` (default), `remote`, `demo`, `dev`, `send`.
//!
//! # Data flow of one webhook
//! stdin line → `protocol::serve` (one task per session) → `provider::OpenAiTrigger::handle_action`
//! → `raw_http` parse → `signature::verify` → `dedupe` → `events::names_for` → one `stream` line
//! and one `end` line through the single writer task → stdout.

pub mod cli;
pub mod declarations;
pub mod dedupe;
pub mod demo;
pub mod dev;
pub mod error;
pub mod events;
pub mod host;
pub mod package;
pub mod protocol;
pub mod provider;
pub mod raw_http;
pub mod remote;
pub mod samples;
pub mod signature;
