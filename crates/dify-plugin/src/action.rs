/*!
The request actions the daemon sends, parsed once from a request's `data.action`
(daemon-protocol.md §2.3; the daemon's `access_types/access.go`). Handlers match on [`Action`]
instead of comparing strings; an action this runtime does not name is kept as
[`Action::Other`], so a plugin can still serve it, and answers `NotImplementedError` by default.
*/

use serde::Deserialize;

macro_rules! actions {
    ($( $(#[$doc:meta])* $variant:ident = $wire:literal, )*) => {
        /// A daemon request's `data.action`.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum Action {
            $( $(#[$doc])* $variant, )*
            /// Any other action, as sent.
            Other(String),
        }

        impl Action {
            /// The action named `wire`.
            pub fn parse(wire: &str) -> Action {
                match wire {
                    $( $wire => Action::$variant, )*
                    other => Action::Other(other.to_owned()),
                }
            }

            /// The action's name on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Action::$variant => $wire, )*
                    Action::Other(other) => other,
                }
            }
        }
    };
}

actions! {
    /// `trigger`: verify and route one incoming webhook (triggers.md §4.1).
    DispatchTriggerEvent = "dispatch_trigger_event",
    /// `trigger`: turn one routed event into workflow variables (triggers.md §4.2).
    InvokeTriggerEvent = "invoke_trigger_event",
    /// `trigger`: check API-key credentials (triggers.md §4.3).
    ValidateTriggerCredentials = "validate_trigger_credentials",
    /// `trigger`: create the upstream webhook for a subscription (triggers.md §4.4).
    SubscribeTrigger = "subscribe_trigger",
    /// `trigger`: delete the upstream webhook (triggers.md §4.5).
    UnsubscribeTrigger = "unsubscribe_trigger",
    /// `trigger`: renew or repair a subscription before `expires_at` (triggers.md §4.6).
    RefreshTrigger = "refresh_trigger",
    /// `dynamic_parameter`: options of a `dynamic-select` parameter (triggers.md §4.8).
    FetchParameterOptions = "fetch_parameter_options",
    /// `oauth`: the provider's authorization URL (triggers.md §4.7).
    GetAuthorizationUrl = "get_authorization_url",
    /// `oauth`: exchange the OAuth callback for credentials.
    GetCredentials = "get_credentials",
    /// `oauth`: refresh OAuth credentials.
    RefreshCredentials = "refresh_credentials",
    /// `tool`: run a tool.
    InvokeTool = "invoke_tool",
    /// `tool`: check tool credentials.
    ValidateToolCredentials = "validate_tool_credentials",
    /// `tool`: a tool's runtime parameters.
    GetToolRuntimeParameters = "get_tool_runtime_parameters",
    /// `endpoint`: serve one HTTP request of a plugin endpoint.
    InvokeEndpoint = "invoke_endpoint",
    /// `model`: stream an LLM's answer (plugin-kinds.md §4.3).
    InvokeLlm = "invoke_llm",
    /// `model`: count an LLM prompt's tokens.
    GetLlmNumTokens = "get_llm_num_tokens",
    /// `model`: embed texts.
    InvokeTextEmbedding = "invoke_text_embedding",
    /// `model`: embed text and image documents.
    InvokeMultimodalEmbedding = "invoke_multimodal_embedding",
    /// `model`: count texts' tokens for embedding.
    GetTextEmbeddingNumTokens = "get_text_embedding_num_tokens",
    /// `model`: rerank documents against a query.
    InvokeRerank = "invoke_rerank",
    /// `model`: rerank text and image documents.
    InvokeMultimodalRerank = "invoke_multimodal_rerank",
    /// `model`: text to speech, streamed.
    InvokeTts = "invoke_tts",
    /// `model`: a TTS model's voices.
    GetTtsModelVoices = "get_tts_model_voices",
    /// `model`: speech to text.
    InvokeSpeech2Text = "invoke_speech2text",
    /// `model`: moderation (true = flagged).
    InvokeModeration = "invoke_moderation",
    /// `model`: check the provider's credentials.
    ValidateProviderCredentials = "validate_provider_credentials",
    /// `model`: check one model's credentials.
    ValidateModelCredentials = "validate_model_credentials",
    /// `model`: a customizable model's schema.
    GetAiModelSchemas = "get_ai_model_schemas",
    /// `model`: start a polled LLM call (plugin-kinds.md §4.7).
    StartPolling = "start_polling",
    /// `model`: check a polled LLM call.
    CheckPolling = "check_polling",
    /// `agent_strategy`: run a strategy (plugin-kinds.md §5.2).
    InvokeAgentStrategy = "invoke_agent_strategy",
    /// `datasource`: check a datasource provider's credentials (plugin-kinds.md §6.2).
    ValidateDatasourceCredentials = "validate_datasource_credentials",
    /// `datasource`: crawl a website (progress snapshots).
    InvokeWebsiteDatasourceGetCrawl = "invoke_website_datasource_get_crawl",
    /// `datasource`: an online document source's pages.
    InvokeOnlineDocumentDatasourceGetPages = "invoke_online_document_datasource_get_pages",
    /// `datasource`: one online document's content.
    InvokeOnlineDocumentDatasourceGetPageContent = "invoke_online_document_datasource_get_page_content",
    /// `datasource`: list an online drive's files.
    InvokeOnlineDriveBrowseFiles = "invoke_online_drive_browse_files",
    /// `datasource`: download one file of an online drive.
    InvokeOnlineDriveDownloadFile = "invoke_online_drive_download_file",
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads `data.action` from a request's raw `data` object. The daemon marshals `data` from a Go
/// map, so its keys arrive sorted and `action` is almost always the first key: that case is read
/// without parsing the rest of the (possibly megabytes long) object. Anything else takes a full,
/// field-skipping parse. None when there is no string `action`.
pub(crate) fn action_of(data: &str) -> Option<Action> {
    const PREFIX: &str = r#"{"action":""#;
    if let Some(rest) = data.strip_prefix(PREFIX) {
        if let Some(end) = rest.find('"') {
            let name = &rest[..end];
            // An escape inside the name would need decoding: leave that to the full parse.
            if !name.contains('\\') {
                return Some(Action::parse(name));
            }
        }
    }
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(borrow)]
        action: Option<std::borrow::Cow<'a, str>>,
    }
    let probe: Probe<'_> = serde_json::from_str(data).ok()?;
    probe.action.map(|name| Action::parse(&name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in ["dispatch_trigger_event", "invoke_trigger_event", "refresh_trigger", "fetch_parameter_options"] {
            assert_eq!(Action::parse(name).as_str(), name);
            assert!(!matches!(Action::parse(name), Action::Other(_)));
        }
        assert_eq!(Action::parse("launch_rocket"), Action::Other("launch_rocket".into()));
    }

    #[test]
    fn action_is_read_from_sorted_and_unsorted_data() {
        assert_eq!(action_of(r#"{"action":"subscribe_trigger","type":"trigger"}"#), Some(Action::SubscribeTrigger));
        assert_eq!(action_of(r#"{ "type":"trigger", "action":"refresh_trigger"}"#), Some(Action::RefreshTrigger));
        assert_eq!(action_of(r#"{"action":"refresh\u005ftrigger"}"#), Some(Action::RefreshTrigger));
        assert_eq!(action_of(r#"{"type":"trigger"}"#), None);
        assert_eq!(action_of(r#"{"action":7}"#), None);
    }
}
