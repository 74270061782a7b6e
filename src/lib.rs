/*!
openai-trigger: a Dify trigger plugin that turns OpenAI webhooks into workflow runs, on the
[`dify_plugin`] runtime.

# Layout
- [`provider`]: the trigger actions as a [`dify_plugin::Plugin`] — dispatch (verify, dedupe, route,
  answer the sender) and invoke (event → workflow variables).
- [`signature`]: Standard Webhooks verification (OpenAI's `webhook-signature`).
- [`body`]: the webhook body checked once by the rules its echo must meet (JSON, depth, numbers).
- [`dedupe`]: bounded, time-limited memory of accepted `webhook-id`s (claimed, then confirmed).
- [`shared_dedupe`]: the same memory shared through the daemon's plugin storage (restarts, clusters).
- [`subscription`]: what a subscription stores in `properties`, typed.
- [`constructor`]: API-key subscriptions: the OpenAI webhook endpoint created, checked, repaired,
  rotated and deleted through OpenAI's API.
- [`enrich`]: the object an event is about, fetched in invoke and added to the variables.
- [`openai`]: the outbound HTTPS client (rustls, proxies, retries within a time budget).
- [`events`]: the event table (name ⇄ OpenAI type ⇄ declaration ⇄ family code ⇄ parameters).
- [`declarations`]: the embedded manifest, provider and event declarations.
- [`samples`]: realistic signed OpenAI deliveries for the demo, `send`, tests and benchmarks.
- [`cli`], `demo`, `dev`, [`console`], [`launcher`]: the commands people run.

# Data flow of one webhook
daemon line → `dify_plugin` (one task per session) → [`provider::OpenAiTrigger`] → `raw_http`
parse → `signature::verify` → `dedupe` → `events::names_for` → one `stream` line and one `end`
line through the runtime's single writer.
*/

pub mod body;
pub mod cli;
mod console;
pub mod constructor;
pub mod declarations;
mod dedupe;
mod demo;
mod dev;
pub mod digest;
mod dispatch;
pub mod enrich;
pub mod error;
pub mod events;
mod invoke;
mod launcher;
mod local_plugin;
pub mod openai;
pub mod provider;
pub mod samples;
pub mod shared_dedupe;
pub mod signature;
pub mod subscription;
