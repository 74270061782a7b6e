//! A complete trigger plugin: every webhook fires the event `ping` and is answered `200 ok`; each
//! invoke hands the workflow the webhook's body as the variable `body`.
//! Run it as the daemon would: `INSTALL_METHOD=local cargo run --example echo_trigger`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    reason = "tests, benchmarks and examples fail loudly"
)]
use std::sync::Arc;

use dify_plugin::{Action, Declaration, ErrorData, Plugin, ProviderKind, Reply, Request, ServeOptions, Session, reply};
use serde_json::{Value, json};

struct EchoTrigger;

impl Plugin for EchoTrigger {
    async fn handle(&self, request: Request, _session: &Session) -> Reply {
        let data: Value = request.parse().map_err(|e| ErrorData::new("TriggerError", e.to_string()))?;
        match request.action() {
            Some(Action::DispatchTriggerEvent) => {
                let raw = hex::decode(data["raw_http_request"].as_str().unwrap_or_default()).unwrap_or_default();
                let body = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|at| &raw[at + 4..]).unwrap_or_default();
                let ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                reply(
                    &json!({"user_id": "", "events": ["ping"], "response": hex::encode(ok), "payload": {"body": String::from_utf8_lossy(body)}}),
                )
            }
            Some(Action::InvokeTriggerEvent) => reply(&json!({"variables": data["payload"], "cancelled": false})),
            other => Err(ErrorData::new("NotImplementedError", format!("{other:?} is not served"))),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), dify_plugin::RunError> {
    let declaration = || Declaration::new(json!({})).with_provider(ProviderKind::Trigger, json!({}));
    dify_plugin::run(Arc::new(EchoTrigger), declaration, ServeOptions::default()).await
}
