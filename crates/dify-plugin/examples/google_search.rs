//! A tool plugin mirroring the Python SDK's `google` example (plugin-kinds.md §2.6): the provider
//! `google` checks its SerpApi key, `google_search` answers a JSON message, and `report` answers
//! with every other message type (text, link, image, variables, a streamed variable, a log entry,
//! retriever resources, a CSV file as blob chunks). Its YAML is in `examples/google_search/`.
//!
//! To stay runnable offline (the integration tests run it over stdio), the search reads a small
//! built-in index instead of calling SerpApi; the handler's shape is the one a real call would take.
//! A real plugin embeds its declaration from `build.rs` (`dify_plugin::build::embed`) and loads
//! it with `dify_plugin::include_declaration!()`; an example has no build script of its own, so
//! this one loads its YAML, checked by the same rules, when it starts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    reason = "tests, benchmarks and examples fail loudly"
)]
use std::sync::Arc;

use dify_plugin::tool::{
    BlobMeta, Credentials, LogEntry, LogStatus, RetrieverResource, ToolMessage, ToolRequest, VariableName,
};
use dify_plugin::{ErrorData, Router, ServeOptions, Session, ToolOutput};
use serde_json::json;

/// The built-in index: (title, link, snippet).
const INDEX: [(&str, &str, &str); 3] = [
    ("Dify", "https://dify.ai", "Dify is an open-source platform for LLM apps."),
    ("Dify plugins", "https://docs.dify.ai/plugins", "Plugins extend Dify with tools, endpoints and models."),
    ("Rust", "https://www.rust-lang.org", "A language empowering everyone to build reliable software."),
];

fn search(query: &str, num: usize) -> Vec<(&'static str, &'static str, &'static str)> {
    let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    INDEX
        .iter()
        .filter(|(title, _, snippet)| {
            let text = format!("{title} {snippet}").to_lowercase();
            words.iter().any(|w| text.contains(w.as_str()))
        })
        .take(num)
        .copied()
        .collect()
}

async fn validate(credentials: Credentials, _session: Session) -> Result<(), ErrorData> {
    let key = credentials.require("serpapi_api_key")?;
    if !key.starts_with("serp-") {
        return Err(ErrorData::new("ToolProviderCredentialValidationError", "the SerpApi API key is invalid"));
    }
    Ok(())
}

async fn google_search(request: ToolRequest, _out: ToolOutput) -> Result<Vec<ToolMessage>, ErrorData> {
    let query: String = request.param("query")?;
    let num: usize = request.parameters.optional("num")?.unwrap_or(3);
    let results: Vec<_> = search(&query, num)
        .into_iter()
        .map(|(title, link, snippet)| json!({"title": title, "link": link, "snippet": snippet}))
        .collect();
    Ok(vec![ToolMessage::json(&json!({"query": query, "organic_results": results}))?])
}

async fn report(request: ToolRequest, out: ToolOutput) -> Result<Vec<ToolMessage>, ErrorData> {
    let query: String = request.param("query")?;
    let step = LogEntry {
        id: "search".into(),
        label: format!("search {query}"),
        parent_id: None,
        error: None,
        metadata: None,
    };
    out.send(ToolMessage::log(&step, LogStatus::Start, json!({"query": query}))).await?;
    let results = search(&query, INDEX.len());
    out.send(ToolMessage::log(&step, LogStatus::Success, json!({"count": results.len()}))).await?;
    let summary = VariableName::new("summary")?;
    let mut messages = vec![ToolMessage::text(format!("{} results for {query}", results.len()))];
    for (title, _, _) in &results {
        messages.push(ToolMessage::stream_variable(&summary, &format!("{title}; ")));
    }
    messages.push(ToolMessage::variable(&VariableName::new("count")?, &results.len())?);
    if let Some((_, link, _)) = results.first() {
        messages.push(ToolMessage::link(*link));
        messages.push(ToolMessage::image(format!("{link}/logo.png")));
    }
    let sources: Vec<RetrieverResource> = results
        .iter()
        .enumerate()
        .map(|(i, (title, _, snippet))| RetrieverResource {
            position: Some(i as i64 + 1),
            document_name: Some((*title).into()),
            content: Some((*snippet).into()),
            ..Default::default()
        })
        .collect();
    messages.push(ToolMessage::retriever_resources(&sources, query.clone()));
    let csv: String = results.iter().map(|(title, link, _)| format!("{title},{link}\n")).collect();
    let meta = BlobMeta { mime_type: Some("text/csv".into()), filename: Some("results.csv".into()) };
    messages.push(ToolMessage::blob(csv.into_bytes(), meta));
    Ok(messages)
}

#[tokio::main]
async fn main() -> Result<(), dify_plugin::RunError> {
    let declaration = dify_plugin::build::load(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/google_search"))
        .expect("the example's YAML is valid")
        .declaration;
    let router = Router::new()
        .tool_credentials("google", validate)
        .tool("google", "google_search", google_search)
        .tool("google", "report", report)
        .declaration(declaration.clone());
    router.check(&declaration).expect("every declared tool and endpoint has a handler, and only those");
    dify_plugin::run(Arc::new(router), move || declaration, ServeOptions::default()).await
}
