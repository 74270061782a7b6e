use std::sync::Arc;

use dify_plugin::tool::{ToolMessage, ToolRequest};
use dify_plugin::{ErrorData, Router, ServeOptions, ToolOutput};

async fn greet(request: ToolRequest, _out: ToolOutput) -> Result<Vec<ToolMessage>, ErrorData> {
    let name: String = request.param("name")?;
    Ok(vec![ToolMessage::text(format!("Hello, {name}!"))])
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), dify_plugin::RunError> {
    // Logs on stderr: stdout belongs to the protocol.
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let declaration = dify_plugin::include_declaration!().expect("build.rs embedded the declaration");
    let router = Router::new().tool("hello", "greet", greet).declaration(declaration.clone());
    // A handler for every declared tool and a declaration for every handler (a typo fails here).
    router.check(&declaration).expect("routes match the YAML");
    dify_plugin::run(Arc::new(router), move || declaration, ServeOptions::default()).await
}
