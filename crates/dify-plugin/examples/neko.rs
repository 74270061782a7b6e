//! An endpoint plugin mirroring the Python SDK's `neko` example (plugin-kinds.md §3.4):
//! `GET /duck/<app_id>` answers a body streamed in pieces, and `POST /echo` answers the request's
//! method, path, query, one header, the endpoint's `greeting` setting and its JSON body. Its YAML
//! is in `examples/neko/` (loaded when it starts, see `google_search.rs` for why).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    reason = "tests, benchmarks and examples fail loudly"
)]
use std::sync::Arc;

use dify_plugin::endpoint::{EndpointRequest, EndpointResponse};
use dify_plugin::{ErrorData, Router, ServeOptions, Session};
use serde_json::{Value, json};

async fn duck(request: EndpointRequest, _session: Session) -> Result<EndpointResponse, ErrorData> {
    let app_id = request.param("app_id").unwrap_or_default().to_owned();
    let greeting = request.setting("greeting").unwrap_or("quack").to_owned();
    let (response, body) = EndpointResponse::stream(200, 4);
    tokio::spawn(async move {
        for piece in [format!("{app_id} <br>"), format!("{greeting} <br>"), "bye".to_owned()] {
            if body.send(piece.into_bytes()).await.is_err() {
                return;
            }
        }
    });
    Ok(response.header("Content-Type", "text/html"))
}

async fn echo(request: EndpointRequest, _session: Session) -> Result<EndpointResponse, ErrorData> {
    let body: Value =
        request.json().map_err(|err| ErrorData::new("ValueError", format!("the body is not JSON: {err}")))?;
    Ok(EndpointResponse::json(
        200,
        &json!({
            "method": request.method, "path": request.path, "query": request.query_value("q"),
            "hook": request.header("dify-hook-id"), "greeting": request.setting("greeting"), "body": body,
        }),
    ))
}

#[tokio::main]
async fn main() -> Result<(), dify_plugin::RunError> {
    let declaration = dify_plugin::build::load(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/neko"))
        .expect("the example's YAML is valid")
        .declaration;
    let router = Router::new()
        .endpoint("GET", "/duck/<app_id>", duck)
        .and_then(|r| r.endpoint("POST", "/echo", echo))
        .expect("valid routes")
        .declaration(declaration.clone());
    router.check(&declaration).expect("every declared tool and endpoint has a handler, and only those");
    dify_plugin::run(Arc::new(router), move || declaration, ServeOptions::default()).await
}
