//! An agent strategy plugin mirroring the Python SDK's `agent` example and its `function_calling`
//! strategy (plugin-kinds.md §5.5): each round asks the workflow's model (a streamed `llm`
//! backwards call, with the node's tools offered as functions), streams its text, runs the tools
//! it calls (`tool` backwards calls), and feeds their answers back, until the model answers
//! without calling a tool or `maximum_iterations` rounds have run. Every round, model call and
//! tool call is an agent log entry, which Dify renders as the agent's thought process; the run
//! ends with the usage as `execution_metadata`. Its YAML is in `examples/function_calling/`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    reason = "tests, benchmarks and examples fail loudly"
)]
use std::sync::Arc;

use dify_plugin::agent::{AgentOutput, AgentPlugin, AgentRequest, AgentStrategy, ToolEntity};
use dify_plugin::invocation::{LlmText, PromptMessage, ToolInvocation};
use dify_plugin::tool::{LogEntry, LogStatus, ToolMessage};
use dify_plugin::{ErrorData, ServeOptions};
use serde_json::{Map, Value, json};

struct FunctionCalling;

/// Usage summed over the run's model calls.
#[derive(Default)]
struct Totals {
    tokens: u64,
    price: f64,
    currency: Option<String>,
}

impl Totals {
    fn add(&mut self, usage: Option<&Value>) {
        let Some(usage) = usage else { return };
        // The counts come from the model's provider: saturate, never wrap; a price that is not
        // a finite number counts as 0.
        self.tokens = self.tokens.saturating_add(usage["total_tokens"].as_u64().unwrap_or(0));
        let price: f64 = match &usage["total_price"] {
            Value::String(text) => text.parse().unwrap_or(0.0),
            other => other.as_f64().unwrap_or(0.0),
        };
        if price.is_finite() {
            self.price += price;
        }
        if let Some(currency) = usage["currency"].as_str() {
            self.currency = Some(currency.to_owned());
        }
    }
}

/// A tool's answer as the model reads it: its text, links and JSON, joined.
fn observation(chunks: &[Value]) -> String {
    let mut parts = Vec::new();
    for chunk in chunks {
        let message = &chunk["message"];
        match chunk["type"].as_str() {
            Some("text" | "link") => parts.push(message["text"].as_str().unwrap_or_default().to_owned()),
            Some("json") => parts.push(message["json_object"].to_string()),
            Some("image" | "image_link") => {
                parts.push(format!("image: {}", message["text"].as_str().unwrap_or_default()))
            }
            _ => {}
        }
    }
    parts.join("\n")
}

impl AgentStrategy for FunctionCalling {
    async fn invoke(&self, request: AgentRequest, out: AgentOutput) -> Result<(), ErrorData> {
        let model = request.model("model")?;
        let tools: Vec<ToolEntity> = request.tools("tools")?;
        let query: String = request.parameters.parse("query")?;
        let instruction: String = request.parameters.optional("instruction")?.unwrap_or_default();
        let rounds: f64 = request.parameters.optional("maximum_iterations")?.unwrap_or(3.0);
        let rounds = (rounds as u32).clamp(1, 30);
        let session = out.session().clone();

        let mut messages = Vec::new();
        if !instruction.is_empty() {
            messages.push(PromptMessage::system(instruction));
        }
        messages.extend(model.history_prompt_messages.iter().cloned());
        messages.push(PromptMessage::user(query));
        let offered: Vec<_> =
            if model.calls_tools() { tools.iter().map(ToolEntity::prompt_tool).collect() } else { Vec::new() };
        let mut totals = Totals::default();

        for round in 1..=rounds {
            let round_log = LogEntry::new(format!("ROUND {round}"));
            out.send(ToolMessage::log(&round_log, LogStatus::Start, json!({}))).await?;
            let thought = LogEntry::new(format!("{} Thought", model.model)).child_of(&round_log);
            out.send(ToolMessage::log(&thought, LogStatus::Start, json!({}))).await?;
            // Tools are offered until the last round, which must answer.
            let tools_now = if round < rounds { offered.clone() } else { Vec::new() };
            let mut stream = session
                .call_stream(&model.llm_request(messages.clone(), tools_now))
                .await
                .map_err(|err| ErrorData::new("InvokeError", format!("the model call failed: {err}")))?;
            let mut answer = LlmText::default();
            while let Some(chunk) = stream.next().await {
                let chunk =
                    chunk.map_err(|err| ErrorData::new("InvokeError", format!("the model call failed: {err}")))?;
                let piece = chunk.delta.message.text();
                if !piece.is_empty() {
                    out.send(ToolMessage::text(piece)).await?;
                }
                answer.absorb(chunk);
            }
            totals.add(answer.usage.as_ref());
            out.send(ToolMessage::log(
                &thought,
                LogStatus::Success,
                json!({"output": answer.text, "tool_calls": answer.tool_calls, "usage": answer.usage}),
            ))
            .await?;
            if answer.tool_calls.is_empty() {
                out.send(ToolMessage::log(&round_log, LogStatus::Success, json!({"output": answer.text}))).await?;
                break;
            }
            messages.push(PromptMessage::assistant_calls(answer.text.clone(), answer.tool_calls.clone()));
            for call in &answer.tool_calls {
                let call_log = LogEntry::new(format!("CALL {}", call.function.name)).child_of(&round_log);
                let arguments: Map<String, Value> = serde_json::from_str(&call.function.arguments).unwrap_or_default();
                out.send(ToolMessage::log(&call_log, LogStatus::Start, json!({"tool_call_input": arguments}))).await?;
                let result = match tools.iter().find(|t| t.identity.name == call.function.name) {
                    None => format!("there is no tool named {}", call.function.name),
                    Some(tool) => {
                        let invocation: ToolInvocation = tool.invocation(arguments);
                        match session.call_stream(&invocation).await {
                            Ok(stream) => match stream.collect().await {
                                Ok(chunks) => observation(&chunks),
                                Err(err) => format!("the tool failed: {err}"),
                            },
                            Err(err) => format!("the tool failed: {err}"),
                        }
                    }
                };
                out.send(ToolMessage::log(&call_log, LogStatus::Success, json!({"output": result}))).await?;
                messages.push(PromptMessage::tool(call.id.clone(), result));
            }
            out.send(ToolMessage::log(&round_log, LogStatus::Success, json!({}))).await?;
        }
        let metadata = json!({"execution_metadata": {
            "total_tokens": totals.tokens,
            "total_price": totals.price,
            "currency": totals.currency.unwrap_or_else(|| "USD".into()),
        }});
        out.send(ToolMessage::json(&metadata)?).await
    }
}

#[tokio::main]
async fn main() -> Result<(), dify_plugin::RunError> {
    let declaration = dify_plugin::build::load(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/function_calling"))
        .expect("the example's YAML is valid")
        .declaration;
    let plugin = AgentPlugin::new("agent").strategy("function_calling", FunctionCalling).declaration(&declaration);
    plugin.check(&declaration).expect("every declared strategy has a handler, and only those");
    dify_plugin::run(Arc::new(plugin), move || declaration, ServeOptions::default()).await
}
