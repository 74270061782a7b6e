//! A complete trigger plugin on the typed trigger layer: every request to a subscription's URL
//! fires the event `ping` and is answered `200 ok`; each invoke hands the workflow the request's
//! method, path and body. A subscription may set a `token` that requests must carry in
//! `X-Echo-Token` (others get a 401 and fire nothing), and a node may keep only one method (the
//! others are `cancelled` for it). Its YAML is in `examples/echo_trigger/`.
//! Run it as the daemon would: `INSTALL_METHOD=local cargo run --example echo_trigger`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    reason = "tests, benchmarks and examples fail loudly"
)]
use std::sync::Arc;

use dify_plugin::raw_http::HttpResponse;
use dify_plugin::trigger::{DispatchRequest, DispatchResponse, Events, InvokeRequest, InvokeResponse};
use dify_plugin::{ErrorData, ServeOptions, Session, TriggerPlugin, TriggerProvider};
use serde::{Deserialize, Serialize};

/// What a subscription stores (`subscription_schema`).
#[derive(Default, Serialize, Deserialize)]
struct Properties {
    #[serde(default)]
    token: Option<String>,
}

/// What dispatch hands each invoke.
#[derive(Serialize)]
struct Ping {
    method: String,
    path: String,
    body: String,
}

/// The provider, with its events routed by name (`events/ping.yaml`).
struct Echo {
    events: Events<Properties>,
}

/// `ping`: the request as variables, unless the node keeps only another method.
fn ping(request: &InvokeRequest<'_, Properties>) -> Result<InvokeResponse, ErrorData> {
    let wanted = request.parameters.get("method").and_then(|m| m.as_str()).filter(|m| !m.is_empty());
    if wanted.is_some_and(|m| request.payload.get("method").and_then(|v| v.as_str()) != Some(m)) {
        return Ok(InvokeResponse::cancelled());
    }
    Ok(InvokeResponse::variables(request.payload.clone()))
}

impl TriggerProvider for Echo {
    type Properties = Properties;
    type Payload = Ping;

    async fn dispatch(
        &self,
        request: DispatchRequest<'_, Properties>,
        _session: &Session,
    ) -> Result<DispatchResponse<Ping>, ErrorData> {
        let http = match request.http_request(1 << 20) {
            Ok(http) => http,
            Err(err) => {
                let body = serde_json::json!({ "error": err.to_string() }).to_string();
                return Ok(DispatchResponse::answer(&HttpResponse::json(400, body)));
            }
        };
        let token = request.subscription.properties.token.as_deref().filter(|t| !t.is_empty());
        if token.is_some() && http.header_str("x-echo-token") != token {
            return Ok(DispatchResponse::answer(&HttpResponse::json(401, &b"{\"error\":\"bad token\"}"[..])));
        }
        let ping = Ping {
            method: http.method().to_owned(),
            path: http.target().to_owned(),
            body: String::from_utf8_lossy(http.body()).into_owned(),
        };
        let ok = HttpResponse { status: 200, headers: Vec::new(), body: b"ok".to_vec() };
        Ok(DispatchResponse::fire(vec!["ping".into()], ping, &ok))
    }

    async fn invoke(
        &self,
        request: InvokeRequest<'_, Properties>,
        _session: &Session,
    ) -> Result<InvokeResponse, ErrorData> {
        self.events.invoke(&request)
    }
}

#[tokio::main]
async fn main() -> Result<(), dify_plugin::RunError> {
    let plugin = TriggerPlugin::new("echo", Echo { events: Events::new().on("ping", ping) });
    // Loaded (and checked) only for remote debugging; a real plugin embeds it from build.rs.
    let declaration = || {
        dify_plugin::build::load(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/echo_trigger"))
            .expect("the example's YAML is valid")
            .declaration
    };
    dify_plugin::run(Arc::new(plugin), declaration, ServeOptions::default()).await
}
