//! The one mapping from this plugin's failures to the daemon's `error` messages. `error_type`
//! reuses the Python SDK's class names, which Dify's API recognises (triggers.md §5.4).

use dify_plugin::{Action, ErrorData};
use thiserror::Error;

/// Why an action could not be answered with a result.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PluginError {
    /// A field the action needs is absent or null.
    #[error("{action} request is missing {field}")]
    MissingField { action: Action, field: &'static str },
    /// The request `data` does not have the action's shape. Only the position is reported: serde's
    /// own message can quote values, and a misplaced secret must never be echoed back.
    #[error("{action} request has a field of the wrong type (JSON line {line}, column {column})")]
    WrongShape { action: Action, line: usize, column: usize },
    /// `validate_trigger_credentials` refused the credentials; the UI shows the message.
    #[error("{message}")]
    CredentialsRejected { message: String },
    /// `subscribe_trigger` could not create the endpoint (OpenAI's message, or the fix for a
    /// callback URL OpenAI cannot reach).
    #[error("{message}")]
    Subscription { message: String },
    /// `fetch_parameter_options` could not list the options.
    #[error("{message}")]
    Options { message: String },
    /// `fetch_parameter_options` for a parameter that is not a dynamic select of this provider.
    #[error("{action:?} has no dynamic-select parameter {parameter:?}")]
    UnknownParameter { action: String, parameter: String },
    /// An action this provider does not serve.
    #[error("unknown action {action:?}")]
    UnknownAction { action: String },
    /// A result could not be encoded (cannot happen with our types; an answer rather than a panic).
    #[error("the result could not be encoded: {detail}")]
    Encoding { detail: String },
    /// `invoke_trigger_event` for an event this provider does not declare.
    #[error("event {event:?} is not declared by this provider")]
    UnknownEvent { event: String },
}

impl PluginError {
    /// The error of decoding `action`'s request data.
    pub fn wrong_shape(action: &Action, err: &serde_json::Error) -> Self {
        PluginError::WrongShape { action: action.clone(), line: err.line(), column: err.column() }
    }

    /// The SDK class name Dify maps this error by.
    pub fn error_type(&self) -> &'static str {
        match self {
            PluginError::MissingField { action: Action::DispatchTriggerEvent, .. }
            | PluginError::WrongShape { action: Action::DispatchTriggerEvent, .. } => "TriggerDispatchError",
            PluginError::MissingField { .. } | PluginError::WrongShape { .. } => "TriggerError",
            PluginError::UnknownEvent { .. } | PluginError::Options { .. } | PluginError::UnknownParameter { .. } => {
                "TriggerError"
            }
            PluginError::CredentialsRejected { .. } => "TriggerProviderCredentialValidationError",
            PluginError::Subscription { .. } => "SubscriptionError",
            PluginError::UnknownAction { .. } => "NotImplementedError",
            PluginError::Encoding { .. } => "InternalError",
        }
    }
}

impl From<PluginError> for ErrorData {
    fn from(err: PluginError) -> Self {
        ErrorData::new(err.error_type(), err.to_string())
    }
}
