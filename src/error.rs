//! The one mapping from this plugin's failures to the daemon's `error` messages. `error_type`
//! reuses the Python SDK's class names, which Dify's API recognises (triggers.md §5.4). A request
//! of the wrong shape never gets here: the runtime's typed layer answers it
//! (`dify_plugin::trigger::RequestError`, position only).

use dify_plugin::{Action, ErrorData};
use thiserror::Error;

/// Why an action could not be answered with a result.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PluginError {
    /// A field the action needs is absent or null.
    #[error("{action} request is missing {field}")]
    MissingField { action: Action, field: &'static str },
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
    /// `invoke_trigger_event` for an event this provider does not declare.
    #[error("event {event:?} is not declared by this provider")]
    UnknownEvent { event: String },
}

impl PluginError {
    /// The SDK class name Dify maps this error by.
    pub fn error_type(&self) -> &'static str {
        match self {
            PluginError::MissingField { action: Action::DispatchTriggerEvent, .. } => "TriggerDispatchError",
            PluginError::MissingField { .. } => "TriggerError",
            PluginError::UnknownEvent { .. } | PluginError::Options { .. } | PluginError::UnknownParameter { .. } => {
                "TriggerError"
            }
            PluginError::CredentialsRejected { .. } => "TriggerProviderCredentialValidationError",
            PluginError::Subscription { .. } => "SubscriptionError",
        }
    }
}

impl From<PluginError> for ErrorData {
    fn from(err: PluginError) -> Self {
        ErrorData::new(err.error_type(), err.to_string())
    }
}
