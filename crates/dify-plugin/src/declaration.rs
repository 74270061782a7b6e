/*!
A plugin's declaration as data: the manifest, its providers with their children inlined, and the
icons. Remote-debugging registration sends exactly this (daemon-protocol.md §6.3); a packaged
plugin never sends it (the daemon reads the package's YAML), so the runtime does not validate it
beyond what registration needs.
*/

use std::borrow::Cow;

use serde_json::Value;

/// The kind of provider a plugin declares; it names the registration message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Tool,
    Model,
    Endpoint,
    AgentStrategy,
    Datasource,
    Trigger,
}

impl ProviderKind {
    /// The `type` of the registration message that carries providers of this kind.
    pub fn registration_type(self) -> &'static str {
        match self {
            ProviderKind::Tool => "tool_declaration",
            ProviderKind::Model => "model_declaration",
            ProviderKind::Endpoint => "endpoint_declaration",
            ProviderKind::AgentStrategy => "agent_strategy_declaration",
            ProviderKind::Datasource => "datasource_declaration",
            ProviderKind::Trigger => "trigger_declaration",
        }
    }
}

/// One file under the package's `_assets/`.
#[derive(Debug, Clone)]
pub struct Asset {
    /// Its path relative to `_assets/`, as the manifest and providers refer to it.
    pub name: Cow<'static, str>,
    pub bytes: Cow<'static, [u8]>,
}

/// Everything the daemon needs to install a plugin that registers over remote debugging.
#[derive(Debug, Clone)]
pub struct Declaration {
    /// `manifest.yaml` as JSON (`created_at` must be RFC 3339 with a zone, §6.3).
    pub manifest: Value,
    pub kind: ProviderKind,
    /// The providers, each with its children (tools, events, …) inlined as objects (triggers.md §2.8).
    pub providers: Vec<Value>,
    pub assets: Vec<Asset>,
}
