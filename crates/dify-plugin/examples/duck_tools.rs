//! One plugin with a tool provider and an endpoint group, the only pair of kinds the daemon allows
//! (plugin-kinds.md §1.4): the tool `quack` of provider `duck` quacks `times` times (its runtime
//! parameters come from the declaration), and `GET /pond/<int:ducks>` answers how many ducks swim
//! there. Over remote debugging it registers `tool_declaration` then `endpoint_declaration`.
//! Its YAML is in `examples/duck_tools/` (loaded when it starts, see `google_search.rs` for why).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    reason = "tests, benchmarks and examples fail loudly"
)]
use std::sync::Arc;

use dify_plugin::endpoint::{EndpointRequest, EndpointResponse};
use dify_plugin::tool::{ToolMessage, ToolRequest};
use dify_plugin::{ErrorData, Router, ServeOptions, Session, ToolOutput};

async fn quack(request: ToolRequest, _out: ToolOutput) -> Result<Vec<ToolMessage>, ErrorData> {
    let times: u32 = request.param("times")?;
    Ok(vec![ToolMessage::text(vec!["quack"; times.min(100) as usize].join(" "))])
}

async fn pond(request: EndpointRequest, _session: Session) -> Result<EndpointResponse, ErrorData> {
    let ducks = request.param("ducks").unwrap_or("0");
    Ok(EndpointResponse::text(200, format!("{ducks} ducks in the pond")))
}

#[tokio::main]
async fn main() -> Result<(), dify_plugin::RunError> {
    let declaration = dify_plugin::build::load(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/duck_tools"))
        .expect("the example's YAML is valid")
        .declaration;
    let router = Router::new()
        .tool("duck", "quack", quack)
        .endpoint("GET", "/pond/<int:ducks>", pond)
        .expect("a valid route")
        .declaration(declaration.clone());
    router.check(&declaration).expect("every declared tool and endpoint has a handler, and only those");
    dify_plugin::run(Arc::new(router), move || declaration, ServeOptions::default()).await
}
