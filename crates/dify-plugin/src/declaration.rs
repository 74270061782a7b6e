/*!
A plugin's declaration as data: the manifest, its providers (of one or several kinds) with their
children inlined, and the icons. Remote-debugging registration sends exactly this
(daemon-protocol.md §6.3, plugin-kinds.md §11); a packaged plugin never sends it (the daemon reads
the package's YAML).

A plugin normally does not build this by hand: its `build.rs` calls
[`build::embed`](crate::build) (feature `build`), which loads and checks the package's YAML by the
daemon's rules, and the binary loads the result with [`include_declaration!`](crate::include_declaration).
*/

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The kind of provider a plugin declares; it names the registration message and the manifest's
/// `plugins.<key>` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Tool,
    Model,
    Endpoint,
    AgentStrategy,
    Datasource,
    Trigger,
}

impl ProviderKind {
    /// Every kind, in the order remote registration sends them (daemon-protocol.md §6.3 step 3,
    /// plugin-kinds.md §11): tool, model, endpoint, agent strategy, datasource, trigger.
    pub const ALL: [ProviderKind; 6] = [
        ProviderKind::Tool,
        ProviderKind::Model,
        ProviderKind::Endpoint,
        ProviderKind::AgentStrategy,
        ProviderKind::Datasource,
        ProviderKind::Trigger,
    ];

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

    /// The key of this kind's list under the manifest's `plugins` (daemon-protocol.md §8.4).
    pub fn manifest_key(self) -> &'static str {
        match self {
            ProviderKind::Tool => "tools",
            ProviderKind::Model => "models",
            ProviderKind::Endpoint => "endpoints",
            ProviderKind::AgentStrategy => "agent_strategies",
            ProviderKind::Datasource => "datasources",
            ProviderKind::Trigger => "triggers",
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
    /// The providers with their kinds, each with its children (tools, endpoints, events, …)
    /// inlined as objects (plugin-kinds.md §11, triggers.md §2.8). Registration sends one
    /// message per kind present, in [`ProviderKind::ALL`] order; the daemon uses the first
    /// provider of each kind (one provider per kind, §8.4).
    pub providers: Vec<(ProviderKind, Value)>,
    pub assets: Vec<Asset>,
}

/// Why an embedded declaration could not be read back (a build-script output that does not match
/// this version of the crate).
#[derive(Debug, thiserror::Error)]
#[error("the embedded declaration is not valid: {0}")]
pub struct EmbeddedError(#[from] serde_json::Error);

/// The JSON written by [`build::embed`](crate::build) and read by [`Declaration::from_embedded`].
#[derive(Serialize, Deserialize)]
pub(crate) struct Embedded {
    pub(crate) manifest: Value,
    pub(crate) providers: Vec<EmbeddedProvider>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct EmbeddedProvider {
    pub(crate) kind: ProviderKind,
    pub(crate) declaration: Value,
}

impl Declaration {
    /// A declaration with `manifest` and nothing else yet.
    pub fn new(manifest: Value) -> Self {
        Declaration { manifest, providers: Vec::new(), assets: Vec::new() }
    }

    /// Adds a provider of `kind` (its children inlined).
    #[must_use]
    pub fn with_provider(mut self, kind: ProviderKind, provider: Value) -> Self {
        self.providers.push((kind, provider));
        self
    }

    /// Adds an asset named `name` (relative to `_assets/`).
    #[must_use]
    pub fn with_asset(mut self, name: impl Into<Cow<'static, str>>, bytes: impl Into<Cow<'static, [u8]>>) -> Self {
        self.assets.push(Asset { name: name.into(), bytes: bytes.into() });
        self
    }

    /// The providers of `kind`, in declaration order.
    pub fn providers_of(&self, kind: ProviderKind) -> impl Iterator<Item = &Value> {
        self.providers.iter().filter(move |(k, _)| *k == kind).map(|(_, provider)| provider)
    }

    /// The kinds present, in registration order ([`ProviderKind::ALL`]), each once.
    pub fn kinds(&self) -> Vec<ProviderKind> {
        ProviderKind::ALL.into_iter().filter(|kind| self.providers.iter().any(|(k, _)| k == kind)).collect()
    }

    /// The declaration a plugin's build script embedded ([`include_declaration!`](crate::include_declaration)
    /// calls this): `json` is the `declaration.json` written by `build::embed`, `assets` the
    /// `_assets/` files by name.
    ///
    /// Errors: [`EmbeddedError`] when `json` is not what `build::embed` writes.
    pub fn from_embedded(json: &str, assets: &[(&'static str, &'static [u8])]) -> Result<Self, EmbeddedError> {
        let embedded: Embedded = serde_json::from_str(json)?;
        Ok(Declaration {
            manifest: embedded.manifest,
            providers: embedded.providers.into_iter().map(|p| (p.kind, p.declaration)).collect(),
            assets: assets.iter().map(|(name, bytes)| Asset { name: (*name).into(), bytes: (*bytes).into() }).collect(),
        })
    }
}

/// The [`Declaration`] a plugin's `build.rs` embedded with `dify_plugin::build::embed` (feature
/// `build`, as a build-dependency): expands to `Declaration::from_embedded(…)` over the files it
/// wrote to `OUT_DIR` (`dify_plugin/declaration.json`, `dify_plugin/assets.rs`), so the binary
/// carries its declaration as data and parses no YAML at run time.
///
/// Evaluates to `Result<Declaration, EmbeddedError>`.
#[macro_export]
macro_rules! include_declaration {
    () => {
        $crate::declaration::Declaration::from_embedded(
            include_str!(concat!(env!("OUT_DIR"), "/dify_plugin/declaration.json")),
            include!(concat!(env!("OUT_DIR"), "/dify_plugin/assets.rs")),
        )
    };
}

/// Declared names without a handler, or handlers for undeclared names ([`crate::Router::check`],
/// [`crate::trigger::Events::check`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("routes and declaration differ: {}", .0.join("; "))]
pub struct Mismatch(pub Vec<String>);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_come_in_registration_order_once() {
        let declaration = Declaration::new(json!({}))
            .with_provider(ProviderKind::Endpoint, json!({}))
            .with_provider(ProviderKind::Tool, json!({}))
            .with_provider(ProviderKind::Endpoint, json!({}));
        assert_eq!(declaration.kinds(), [ProviderKind::Tool, ProviderKind::Endpoint]);
        assert_eq!(declaration.providers_of(ProviderKind::Endpoint).count(), 2);
    }

    #[test]
    fn embedded_round_trip() {
        let json = r#"{"manifest":{"name":"p"},"providers":[{"kind":"agent_strategy","declaration":{"a":1}}]}"#;
        let declaration = Declaration::from_embedded(json, &[("icon.svg", b"<svg/>")]).unwrap();
        assert_eq!(declaration.providers, [(ProviderKind::AgentStrategy, json!({"a": 1}))]);
        assert_eq!(declaration.assets[0].name, "icon.svg");
        assert!(Declaration::from_embedded("{}", &[]).is_err());
    }
}
