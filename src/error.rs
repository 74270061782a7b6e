//! The one mapping from this plugin's failures to the daemon's `error` messages. `error_type`
//! reuses the Python SDK's class names, which Dify's API recognises (triggers.md §5.4).

use thiserror::Error;

use crate::protocol::ErrorData;

#[derive(Debug, Error)]
pub enum PluginError {
    #[error("{what} is malformed: {detail}")]
    BadRequest { what: String, detail: String },
    #[error(
        "{action} is not available: this provider uses manual subscriptions. Create the webhook endpoint in OpenAI \
         (Settings → Project → Webhooks), then paste its whsec_ signing secret into the subscription"
    )]
    ManualSubscriptionOnly { action: String },
    #[error("unknown action {action:?}")]
    UnknownAction { action: String },
    #[error("event {event:?} is not declared by this provider")]
    UnknownEvent { event: String },
}

impl PluginError {
    /// serde messages quote offending values for some errors; keep only those that name a field,
    /// since a misplaced secret must never be echoed back.
    pub fn bad_request(what: &str, err: &serde_json::Error) -> Self {
        let message = err.to_string();
        let detail = if message.starts_with("missing field") {
            message
        } else {
            format!("a field has the wrong type or the JSON is invalid (line {}, column {})", err.line(), err.column())
        };
        PluginError::BadRequest { what: what.to_owned(), detail }
    }

    pub fn error_type(&self) -> &'static str {
        match self {
            PluginError::BadRequest { what, .. } if what == "dispatch_trigger_event" => "TriggerDispatchError",
            PluginError::BadRequest { .. } => "TriggerError",
            PluginError::ManualSubscriptionOnly { .. } => "TriggerError",
            PluginError::UnknownAction { .. } => "NotImplementedError",
            PluginError::UnknownEvent { .. } => "TriggerError",
        }
    }
}

impl From<PluginError> for ErrorData {
    fn from(err: PluginError) -> Self {
        ErrorData::new(err.error_type(), err.to_string())
    }
}
