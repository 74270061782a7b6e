/*!
Typed trigger plugins (triggers.md §4, plugin-kinds.md §7–§9): the actions a trigger provider
answers, as typed requests and responses, and the [`TriggerProvider`] trait a plugin implements,
one method per action, served by [`TriggerPlugin`] (alone) or [`Router::trigger`](crate::Router::trigger)
(beside tools and endpoints is not allowed by the daemon, plugin-kinds.md §1.4, but OAuth and
dynamic options are).

| action | request | method | answer (one `stream` chunk) |
|---|---|---|---|
| `dispatch_trigger_event` | [`DispatchRequest`] | [`dispatch`](TriggerProvider::dispatch) | [`DispatchResponse`] (§4.1) |
| `invoke_trigger_event` | [`InvokeRequest`] | [`invoke`](TriggerProvider::invoke) | [`InvokeResponse`] (§4.2) |
| `validate_trigger_credentials` | [`CredentialsRequest`] | [`validate_credentials`](TriggerProvider::validate_credentials) | `{"result":true}` (§4.3) |
| `subscribe_trigger` | [`SubscribeRequest`] | [`subscribe`](TriggerProvider::subscribe) | `{"subscription":`[`Subscription`]`}` (§4.4) |
| `unsubscribe_trigger` | [`StoredRequest`] | [`unsubscribe`](TriggerProvider::unsubscribe) | `{"subscription":`[`Unsubscribed`]`}` (§4.5) |
| `refresh_trigger` | [`StoredRequest`] | [`refresh`](TriggerProvider::refresh) | `{"subscription":`[`Subscription`]`}` (§4.6) |
| `fetch_parameter_options` | [`OptionsRequest`] | [`parameter_options`](TriggerProvider::parameter_options) | `{"options":[`[`ParameterOption`]`]}` (§4.8) |
| `get_authorization_url`, `get_credentials`, `refresh_credentials` | [`crate::oauth`] | the `oauth_*` methods | §4.7 |

Decoding is lenient where Dify is (plugin-kinds.md §1.1): `null` maps and absent fields read as
empty, unknown keys are ignored, and a subscription's `properties` are read as a JSON object first
(a key given twice counts once, the last) and then as the provider's own
[`TriggerProvider::Properties`] type. A request of the wrong shape is answered with its position
only ([`RequestError`]): serde's message can quote values, and a misplaced secret must never be
echoed back. The webhook itself stays the hex text it came in ([`DispatchRequest::raw_http_request`],
borrowed from the request line) until the provider decodes it ([`DispatchRequest::http_request`],
[`crate::raw_http`]).
*/

use std::borrow::Cow;
use std::future::Future;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::action::Action;
use crate::declaration::{Declaration, Mismatch, ProviderKind};
use crate::oauth::{AuthorizationUrlRequest, CallbackRequest, OAuthCredentials, RefreshCredentialsRequest};
use crate::raw_http::{self, HttpRequest, HttpResponse};
use crate::session::{Plugin, Reply, Request, Session, reply};
use crate::wire::ErrorData;

pub use crate::lenient::Object;
use crate::lenient::{object_or_null, or_default};

/// How a subscription was authorised (triggers.md §4: `api-key`, `oauth2`, `unauthorized`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CredentialType {
    #[serde(rename = "api-key")]
    ApiKey,
    #[serde(rename = "oauth2")]
    OAuth2,
    /// Manual subscriptions, and the builder phase; also what an absent field means.
    #[default]
    #[serde(rename = "unauthorized", other)]
    Unauthorized,
}

/// A subscription as Dify stores it and sends it (triggers.md §4 "Subscription object"):
/// `properties` (the provider's, secret ones decrypted) typed as `P`.
///
/// Serialised with all four fields, `parameters` never `null` (Dify's model refuses it, §4.4).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Subscription<P = Object> {
    /// Dify's callback URL for this subscription (`…/triggers/plugin/<uuid>`); the bare id in the
    /// builder phase; `""` when absent.
    pub endpoint: String,
    /// Unix seconds; `-1` (also when absent): never expires, never refreshed.
    pub expires_at: i64,
    /// The constructor's parameters (`{}` for manual subscriptions).
    pub parameters: Object,
    pub properties: P,
}

impl<P: Default> Default for Subscription<P> {
    fn default() -> Self {
        Subscription { endpoint: String::new(), expires_at: -1, parameters: Object::new(), properties: P::default() }
    }
}

impl<'de, P: DeserializeOwned + Default> Deserialize<'de> for Subscription<P> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(default)]
            endpoint: Option<String>,
            #[serde(default)]
            expires_at: Option<i64>,
            #[serde(default)]
            parameters: Option<Object>,
            #[serde(default)]
            properties: Option<Object>,
        }
        let wire = Wire::deserialize(deserializer)?;
        // Through a map on purpose: it makes a repeated key count once (the last), keeps error
        // positions in the request, and works under any deserializer (untagged enums, `flatten`,
        // formats other than JSON), which reading `P` straight from the text would not.
        let properties = match wire.properties {
            Some(map) if !map.is_empty() => P::deserialize(Value::Object(map)).map_err(serde::de::Error::custom)?,
            _ => P::default(),
        };
        Ok(Subscription {
            endpoint: wire.endpoint.unwrap_or_default(),
            expires_at: wire.expires_at.unwrap_or(-1),
            parameters: wire.parameters.unwrap_or_default(),
            properties,
        })
    }
}

/// `dispatch_trigger_event` (triggers.md §4.1): one webhook to verify and route.
#[derive(Debug, Deserialize)]
pub struct DispatchRequest<'a, P: DeserializeOwned + Default = Object> {
    /// The provider's `identity.name`.
    #[serde(borrow, default)]
    pub provider: Cow<'a, str>,
    #[serde(default, deserialize_with = "or_default")]
    pub subscription: Subscription<P>,
    /// The webhook as Dify received it: hex of the raw HTTP/1.1 request (§3.3). Read it with
    /// [`http_request`](Self::http_request).
    #[serde(borrow)]
    pub raw_http_request: Cow<'a, str>,
    /// `{}` for manual subscriptions and in the builder phase.
    #[serde(default, deserialize_with = "object_or_null")]
    pub credentials: Object,
    #[serde(default, deserialize_with = "or_default")]
    pub credential_type: CredentialType,
}

impl<P: DeserializeOwned + Default> DispatchRequest<'_, P> {
    /// The webhook, decoded and parsed; a body over `max_body` bytes is refused before it is
    /// decoded.
    ///
    /// Errors: [`raw_http::Error`], naming the broken rule (never quoting the request).
    pub fn http_request(&self, max_body: usize) -> Result<HttpRequest, raw_http::Error> {
        HttpRequest::from_hex(&self.raw_http_request, max_body)
    }
}

/// `dispatch_trigger_event`'s answer (triggers.md §4.1): the events to fire (declared names;
/// empty fires nothing), the HTTP response for the webhook's sender (hex, §3.4), the actor, and
/// the payload every invoke of these events receives.
#[derive(Debug, Clone, Serialize)]
pub struct DispatchResponse<T: Serialize = Object> {
    /// Becomes the Dify end user of the runs; `""` is the anonymous one.
    pub user_id: Cow<'static, str>,
    /// Event `identity.name`s; never `null`. A name the provider does not declare makes Dify
    /// refuse the whole dispatch (§5.1).
    pub events: Vec<Cow<'static, str>>,
    /// Hex of the raw HTTP/1.1 response ([`HttpResponse::to_hex`]); answers that never change can
    /// be encoded once and borrowed.
    pub response: Cow<'static, str>,
    /// Sent as `{}` when None: Dify wants an object (§3.2).
    #[serde(serialize_with = "payload_or_empty")]
    pub payload: Option<T>,
}

fn payload_or_empty<S: serde::Serializer, T: Serialize>(payload: &Option<T>, serializer: S) -> Result<S::Ok, S::Error> {
    match payload {
        Some(payload) => payload.serialize(serializer),
        None => Object::new().serialize(serializer),
    }
}

impl<T: Serialize> DispatchResponse<T> {
    /// Fires `events` with `payload`, answering the sender `response`.
    pub fn fire(events: Vec<Cow<'static, str>>, payload: T, response: &HttpResponse) -> Self {
        DispatchResponse {
            user_id: Cow::Borrowed(""),
            events,
            response: Cow::Owned(response.to_hex()),
            payload: Some(payload),
        }
    }

    /// Fires nothing, answering the sender `response` (a rejection, a duplicate, a ping).
    pub fn answer(response: &HttpResponse) -> Self {
        DispatchResponse {
            user_id: Cow::Borrowed(""),
            events: Vec::new(),
            response: Cow::Owned(response.to_hex()),
            payload: None,
        }
    }
}

/// `invoke_trigger_event` (triggers.md §4.2): one dispatched event, for one workflow's node.
#[derive(Debug, Deserialize)]
pub struct InvokeRequest<'a, P: DeserializeOwned + Default = Object> {
    #[serde(borrow, default)]
    pub provider: Cow<'a, str>,
    /// The event's name, one of the dispatch's `events`; `""` when absent.
    #[serde(borrow, default)]
    pub event: Cow<'a, str>,
    /// The `user_id` the dispatch returned.
    #[serde(default, deserialize_with = "or_default")]
    pub user_id: String,
    #[serde(default, deserialize_with = "or_default")]
    pub subscription: Subscription<P>,
    /// The node's parameters: constants only; an unset one is absent.
    #[serde(default, deserialize_with = "object_or_null")]
    pub parameters: Object,
    /// The dispatch's `payload` (`{}` if none).
    #[serde(default, deserialize_with = "object_or_null")]
    pub payload: Object,
    /// The stored webhook (hex), for a payload that lacks what invoke needs.
    #[serde(borrow, default)]
    pub raw_http_request: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "object_or_null")]
    pub credentials: Object,
    #[serde(default, deserialize_with = "or_default")]
    pub credential_type: CredentialType,
}

/// `invoke_trigger_event`'s answer (triggers.md §4.2): the workflow's variables, or "ignore this
/// event for this workflow" (§5.3).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InvokeResponse {
    /// Never `null`: the run's inputs and the trigger node's outputs.
    pub variables: Object,
    pub cancelled: bool,
}

impl InvokeResponse {
    /// Runs the workflow with `variables`.
    pub fn variables(variables: Object) -> Self {
        InvokeResponse { variables, cancelled: false }
    }

    /// Ignores the event for this workflow (`variables` `{}`).
    pub fn cancelled() -> Self {
        InvokeResponse { variables: Object::new(), cancelled: true }
    }
}

/// `validate_trigger_credentials` (triggers.md §4.3): the API-key credentials typed into the form.
#[derive(Debug, Default, Deserialize)]
pub struct CredentialsRequest {
    #[serde(default)]
    pub provider: String,
    #[serde(default, deserialize_with = "object_or_null")]
    pub credentials: Object,
}

/// `subscribe_trigger` (triggers.md §4.4): create the upstream webhook for a new subscription.
#[derive(Debug, Default, Deserialize)]
pub struct SubscribeRequest {
    #[serde(default)]
    pub provider: String,
    /// Dify's callback URL for the subscription; `""` when absent.
    #[serde(default, deserialize_with = "or_default")]
    pub endpoint: String,
    /// The constructor's parameters.
    #[serde(default, deserialize_with = "object_or_null")]
    pub parameters: Object,
    #[serde(default, deserialize_with = "object_or_null")]
    pub credentials: Object,
    #[serde(default, deserialize_with = "or_default")]
    pub credential_type: CredentialType,
    #[serde(default, deserialize_with = "or_default")]
    pub user_id: String,
}

/// `unsubscribe_trigger` and `refresh_trigger` (triggers.md §4.5, §4.6): a stored subscription and
/// its credentials.
#[derive(Debug, Deserialize)]
pub struct StoredRequest<P: DeserializeOwned + Default = Object> {
    #[serde(default)]
    pub provider: String,
    #[serde(default, deserialize_with = "or_default")]
    pub subscription: Subscription<P>,
    #[serde(default, deserialize_with = "object_or_null")]
    pub credentials: Object,
    #[serde(default, deserialize_with = "or_default")]
    pub credential_type: CredentialType,
    #[serde(default, deserialize_with = "or_default")]
    pub user_id: String,
}

/// `unsubscribe_trigger`'s result, which Dify reads under the key `subscription` (§4.5). On delete
/// a failure is only logged; on rebuild `success: false` aborts with `message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unsubscribed {
    pub success: bool,
    pub message: String,
}

/// `fetch_parameter_options` (triggers.md §4.8, plugin-kinds.md §9): the options of one
/// `dynamic-select` parameter.
#[derive(Debug, Default, Deserialize)]
pub struct OptionsRequest {
    #[serde(default)]
    pub provider: String,
    /// `"provider"` for a subscription constructor parameter, else the event (or tool) name.
    #[serde(default, deserialize_with = "or_default")]
    pub provider_action: String,
    #[serde(default, deserialize_with = "or_default")]
    pub parameter: String,
    #[serde(default, deserialize_with = "object_or_null")]
    pub credentials: Object,
    #[serde(default, deserialize_with = "or_default")]
    pub credential_type: CredentialType,
}

/// One option of a dynamic select (plugin-kinds.md §9): `value` non-empty, `label.en_US` required
/// (the daemon validates both).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParameterOption {
    pub value: String,
    /// An I18n object: `{"en_US": …}` at least.
    pub label: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
}

impl ParameterOption {
    /// An option labelled `label` in English.
    pub fn new(value: impl Into<String>, label: impl Into<String>) -> Self {
        ParameterOption { value: value.into(), label: serde_json::json!({"en_US": label.into()}), icon: None }
    }
}

/// An event's handler: the node's invoke turned into variables (or `cancelled`), synchronously, as
/// the Python SDK's `Event._on_event` is.
pub type EventHandler<P> = Box<dyn Fn(&InvokeRequest<'_, P>) -> Result<InvokeResponse, ErrorData> + Send + Sync>;

/// Routing of `invoke_trigger_event` by event name (`identity.name` of each event YAML): a
/// provider's [`TriggerProvider::invoke`] hands its request to [`Events::invoke`].
pub struct Events<P: DeserializeOwned + Default = Object> {
    handlers: std::collections::HashMap<String, EventHandler<P>>,
}

impl<P: DeserializeOwned + Default> Default for Events<P> {
    fn default() -> Self {
        Events { handlers: std::collections::HashMap::new() }
    }
}

impl<P: DeserializeOwned + Default> Events<P> {
    pub fn new() -> Self {
        Events::default()
    }

    /// Handles the event `name`.
    #[must_use]
    pub fn on(
        mut self,
        name: &str,
        handler: impl Fn(&InvokeRequest<'_, P>) -> Result<InvokeResponse, ErrorData> + Send + Sync + 'static,
    ) -> Self {
        self.handlers.insert(name.to_owned(), Box::new(handler));
        self
    }

    /// Runs the handler of `request.event`.
    ///
    /// Errors: the handler's; `TriggerError` for an event without a handler (Dify only invokes
    /// the events a dispatch named, so that is a dispatch naming an undeclared event).
    pub fn invoke(&self, request: &InvokeRequest<'_, P>) -> Result<InvokeResponse, ErrorData> {
        match self.handlers.get(request.event.as_ref()) {
            Some(handler) => handler(request),
            None => Err(ErrorData::new(
                "TriggerError",
                format!("event `{}` has no handler in this provider", crate::wire::truncate(&request.event, 128)),
            )),
        }
    }

    /// Checks that every event of the trigger providers in `declaration` has a handler, and every
    /// handler an event (run it in a test, or at start-up).
    ///
    /// Errors: [`Mismatch`] listing each difference.
    pub fn check(&self, declaration: &Declaration) -> Result<(), Mismatch> {
        let declared: Vec<String> = declaration
            .providers_of(ProviderKind::Trigger)
            .flat_map(|p| p["events"].as_array().cloned().unwrap_or_default())
            .filter_map(|e| e.pointer("/identity/name").and_then(Value::as_str).map(str::to_owned))
            .collect();
        let mut problems: Vec<String> = declared
            .iter()
            .filter(|name| !self.handlers.contains_key(*name))
            .map(|name| format!("event {name} is declared but has no handler"))
            .collect();
        let mut extra: Vec<String> = self
            .handlers
            .keys()
            .filter(|name| !declared.contains(name))
            .map(|name| format!("event {name} has a handler but is not declared"))
            .collect();
        extra.sort();
        problems.extend(extra);
        if problems.is_empty() { Ok(()) } else { Err(Mismatch(problems)) }
    }
}

/// A request that could not be read into its action's type. Neither form quotes the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A field the action needs is absent or null.
    #[error("{action} request is missing {field}")]
    MissingField { action: Action, field: &'static str },
    /// The request `data` does not have the action's shape: only the position is reported.
    #[error("{action} request has a field of the wrong type (JSON line {line}, column {column})")]
    WrongShape { action: Action, line: usize, column: usize },
    /// No `action`, or one no trigger answers.
    #[error("unknown action {0:?}")]
    UnknownAction(String),
}

impl RequestError {
    /// The Python SDK's class name Dify maps this error by (triggers.md §5.4): a dispatch's is
    /// `TriggerDispatchError` (the sender gets a 400), the others' `TriggerError`.
    pub fn error_type(&self) -> &'static str {
        match self {
            RequestError::MissingField { action: Action::DispatchTriggerEvent, .. }
            | RequestError::WrongShape { action: Action::DispatchTriggerEvent, .. } => "TriggerDispatchError",
            RequestError::UnknownAction(_) => "NotImplementedError",
            _ => "TriggerError",
        }
    }
}

impl From<RequestError> for ErrorData {
    fn from(err: RequestError) -> Self {
        ErrorData::new(err.error_type(), err.to_string())
    }
}

/// One trigger request, typed by its action: what [`TriggerCall::parse`] reads from a
/// [`Request`] in one pass over its `data`.
#[derive(Debug)]
pub enum TriggerCall<'a, P: DeserializeOwned + Default = Object> {
    Dispatch(DispatchRequest<'a, P>),
    Invoke(InvokeRequest<'a, P>),
    ValidateCredentials(CredentialsRequest),
    Subscribe(SubscribeRequest),
    Unsubscribe(StoredRequest<P>),
    Refresh(StoredRequest<P>),
    ParameterOptions(OptionsRequest),
    AuthorizationUrl(AuthorizationUrlRequest),
    OAuthCredentials(CallbackRequest<'a>),
    RefreshCredentials(RefreshCredentialsRequest),
}

impl<'a, P: DeserializeOwned + Default> TriggerCall<'a, P> {
    /// Reads `request` as the action it names.
    ///
    /// Errors: [`RequestError`]: no action or one a trigger does not answer, a missing
    /// `raw_http_request` (dispatch), or `data` of the wrong shape (its position only).
    pub fn parse(request: &'a Request) -> Result<Self, RequestError> {
        let Some(action) = request.action() else { return Err(RequestError::UnknownAction(String::new())) };
        let shape = |err: serde_json::Error| RequestError::WrongShape {
            action: action.clone(),
            line: err.line(),
            column: err.column(),
        };
        // The two actions of every webhook, read without serde scanning their hex where they can be.
        let fast = match action {
            Action::DispatchTriggerEvent => without_raw_request(request, dispatch_from).map(TriggerCall::Dispatch),
            Action::InvokeTriggerEvent => without_raw_request(request, invoke_from).map(TriggerCall::Invoke),
            _ => None,
        };
        if let Some(call) = fast {
            return Ok(call);
        }
        Ok(match action {
            Action::DispatchTriggerEvent => {
                #[derive(Deserialize)]
                struct Probe<'b> {
                    #[serde(borrow, default)]
                    raw_http_request: Option<Cow<'b, str>>,
                }
                match request.parse::<DispatchRequest<'a, P>>() {
                    Ok(dispatch) => TriggerCall::Dispatch(dispatch),
                    // Absent and null are the same missing field; anything else is a wrong shape.
                    Err(err) => match request.parse::<Probe<'_>>() {
                        Ok(Probe { raw_http_request: None }) => {
                            return Err(RequestError::MissingField {
                                action: action.clone(),
                                field: "raw_http_request",
                            });
                        }
                        _ => return Err(shape(err)),
                    },
                }
            }
            Action::InvokeTriggerEvent => TriggerCall::Invoke(request.parse().map_err(shape)?),
            Action::ValidateTriggerCredentials => TriggerCall::ValidateCredentials(request.parse().map_err(shape)?),
            Action::SubscribeTrigger => TriggerCall::Subscribe(request.parse().map_err(shape)?),
            Action::UnsubscribeTrigger => TriggerCall::Unsubscribe(request.parse().map_err(shape)?),
            Action::RefreshTrigger => TriggerCall::Refresh(request.parse().map_err(shape)?),
            Action::FetchParameterOptions => TriggerCall::ParameterOptions(request.parse().map_err(shape)?),
            Action::GetAuthorizationUrl => TriggerCall::AuthorizationUrl(request.parse().map_err(shape)?),
            Action::GetCredentials => TriggerCall::OAuthCredentials(request.parse().map_err(shape)?),
            Action::RefreshCredentials => TriggerCall::RefreshCredentials(request.parse().map_err(shape)?),
            other => return Err(RequestError::UnknownAction(other.as_str().to_owned())),
        })
    }

    /// The provider the request names (`""` when absent).
    pub fn provider(&self) -> &str {
        match self {
            TriggerCall::Dispatch(r) => &r.provider,
            TriggerCall::Invoke(r) => &r.provider,
            TriggerCall::ValidateCredentials(r) => &r.provider,
            TriggerCall::Subscribe(r) => &r.provider,
            TriggerCall::Unsubscribe(r) | TriggerCall::Refresh(r) => &r.provider,
            TriggerCall::ParameterOptions(r) => &r.provider,
            TriggerCall::AuthorizationUrl(r) => &r.provider,
            TriggerCall::OAuthCredentials(r) => &r.provider,
            TriggerCall::RefreshCredentials(r) => &r.provider,
        }
    }
}

/// The webhook's hex is most of a dispatch or invoke line (twice the raw request), and serde would
/// scan it byte by byte only to hand it back as it is. When `raw_http_request` is a plain string
/// (no escape, no control character; [`crate::inbound::plain_string_member`]) of some length, the
/// rest of `data` is read without it and the hex is borrowed from the line as it stands: the
/// request read is the one serde would read from the whole `data`. Anything else, and any error
/// (whose position must be the one in the whole `data`), takes the ordinary path.
fn without_raw_request<'a, R>(request: &'a Request, typed: impl FnOnce(&str, &'a str) -> Option<R>) -> Option<R> {
    const WORTH_IT: usize = 256;
    let data = request.data();
    let hex = crate::inbound::plain_string_member(data, "raw_http_request").filter(|r| r.len() >= WORTH_IT)?;
    let mut rest = String::with_capacity(data.len() - hex.len());
    rest.push_str(&data[..hex.start]);
    rest.push_str(&data[hex.end..]);
    typed(&rest, &data[hex])
}

fn dispatch_from<'a, P: DeserializeOwned + Default>(rest: &str, hex: &'a str) -> Option<DispatchRequest<'a, P>> {
    let read: DispatchRequest<'_, P> = serde_json::from_str(rest).ok()?;
    Some(DispatchRequest {
        provider: Cow::Owned(read.provider.into_owned()),
        subscription: read.subscription,
        raw_http_request: Cow::Borrowed(hex),
        credentials: read.credentials,
        credential_type: read.credential_type,
    })
}

fn invoke_from<'a, P: DeserializeOwned + Default>(rest: &str, hex: &'a str) -> Option<InvokeRequest<'a, P>> {
    let read: InvokeRequest<'_, P> = serde_json::from_str(rest).ok()?;
    Some(InvokeRequest {
        provider: Cow::Owned(read.provider.into_owned()),
        event: Cow::Owned(read.event.into_owned()),
        user_id: read.user_id,
        subscription: read.subscription,
        parameters: read.parameters,
        payload: read.payload,
        raw_http_request: Some(Cow::Borrowed(hex)),
        credentials: read.credentials,
        credential_type: read.credential_type,
    })
}

fn not_served(what: &str) -> ErrorData {
    ErrorData::new("NotImplementedError", format!("this trigger provider has no {what}"))
}

/// A trigger provider: one method per action (see the module's table). `dispatch` and `invoke`
/// are required; the constructor's actions (credentials, subscribe, unsubscribe, refresh), dynamic
/// options and OAuth default to a `NotImplementedError` (Dify calls them only for what the
/// provider's YAML declares: a `subscription_constructor`, `dynamic-select` parameters, an
/// `oauth_schema`).
///
/// Every method gets the [`Session`], for storage and other backwards calls. The runtime sends the
/// answer as the action's one `stream` chunk; an `Err` is sent as the session's `error`.
pub trait TriggerProvider: Send + Sync + 'static {
    /// The subscription's `properties`, typed (use [`Object`] to keep them as JSON). Must read any
    /// object Dify may store; it is decoded from a JSON object, `{}` when Dify sends none.
    type Properties: DeserializeOwned + Serialize + Default + Send + Sync;
    /// What dispatch hands every invoke (`payload`): any JSON object.
    type Payload: Serialize + Send;

    fn dispatch(
        &self,
        request: DispatchRequest<'_, Self::Properties>,
        session: &Session,
    ) -> impl Future<Output = Result<DispatchResponse<Self::Payload>, ErrorData>> + Send;

    fn invoke(
        &self,
        request: InvokeRequest<'_, Self::Properties>,
        session: &Session,
    ) -> impl Future<Output = Result<InvokeResponse, ErrorData>> + Send;

    /// Checks API-key credentials: `Ok` is `{"result":true}`; refuse with
    /// `TriggerProviderCredentialValidationError` and a message the UI shows.
    fn validate_credentials(
        &self,
        request: CredentialsRequest,
        session: &Session,
    ) -> impl Future<Output = Result<(), ErrorData>> + Send {
        let _ = (request, session);
        async { Err(not_served("subscription constructor")) }
    }

    /// Creates the upstream webhook; the subscription Dify stores (§4.4).
    fn subscribe(
        &self,
        request: SubscribeRequest,
        session: &Session,
    ) -> impl Future<Output = Result<Subscription<Self::Properties>, ErrorData>> + Send {
        let _ = (request, session);
        async { Err(not_served("subscription constructor")) }
    }

    /// Deletes the upstream webhook (§4.5).
    fn unsubscribe(
        &self,
        request: StoredRequest<Self::Properties>,
        session: &Session,
    ) -> impl Future<Output = Result<Unsubscribed, ErrorData>> + Send {
        let _ = (request, session);
        async { Err(not_served("subscription constructor")) }
    }

    /// Renews or repairs a subscription; Dify keeps only the answer's `properties` and
    /// `expires_at` (§4.6).
    fn refresh(
        &self,
        request: StoredRequest<Self::Properties>,
        session: &Session,
    ) -> impl Future<Output = Result<Subscription<Self::Properties>, ErrorData>> + Send {
        let _ = (request, session);
        async { Err(not_served("subscription constructor")) }
    }

    /// The options of a `dynamic-select` parameter (§4.8).
    fn parameter_options(
        &self,
        request: OptionsRequest,
        session: &Session,
    ) -> impl Future<Output = Result<Vec<ParameterOption>, ErrorData>> + Send {
        let _ = (request, session);
        async { Err(ErrorData::new("ValueError", "Cannot find the target to fetch parameter options")) }
    }

    /// OAuth (§4.7, plugin-kinds.md §8): the provider's authorization URL.
    fn oauth_authorization_url(
        &self,
        request: AuthorizationUrlRequest,
        session: &Session,
    ) -> impl Future<Output = Result<String, ErrorData>> + Send {
        let _ = (request, session);
        async { Err(crate::oauth::not_supported()) }
    }

    /// OAuth: the credentials from the callback request.
    fn oauth_credentials(
        &self,
        request: CallbackRequest<'_>,
        session: &Session,
    ) -> impl Future<Output = Result<OAuthCredentials, ErrorData>> + Send {
        let _ = (request, session);
        async { Err(crate::oauth::not_supported()) }
    }

    /// OAuth: refreshed credentials.
    fn oauth_refresh_credentials(
        &self,
        request: RefreshCredentialsRequest,
        session: &Session,
    ) -> impl Future<Output = Result<OAuthCredentials, ErrorData>> + Send {
        let _ = (request, session);
        async { Err(crate::oauth::not_supported()) }
    }
}

/// `{"subscription": …}`: how subscribe, refresh and unsubscribe answer.
#[derive(Serialize)]
struct UnderSubscription<T> {
    subscription: T,
}

/// Runs one typed call on `provider` and encodes its answer.
///
/// Errors: the provider's own, or an `InternalError` when the answer cannot be encoded.
pub async fn answer<T: TriggerProvider>(
    provider: &T,
    call: TriggerCall<'_, T::Properties>,
    session: &Session,
) -> Reply {
    // The futures that may call out are boxed: they can be large, and every session's future (which
    // the runtime allocates and moves) would otherwise carry the largest of them.
    match call {
        TriggerCall::Dispatch(request) => reply(&provider.dispatch(request, session).await?),
        TriggerCall::Invoke(request) => reply(&Box::pin(provider.invoke(request, session)).await?),
        TriggerCall::ValidateCredentials(request) => {
            Box::pin(provider.validate_credentials(request, session)).await?;
            reply(&serde_json::json!({"result": true}))
        }
        TriggerCall::Subscribe(request) => {
            let subscription = Box::pin(provider.subscribe(request, session)).await?;
            reply(&UnderSubscription { subscription })
        }
        TriggerCall::Unsubscribe(request) => {
            reply(&UnderSubscription { subscription: Box::pin(provider.unsubscribe(request, session)).await? })
        }
        TriggerCall::Refresh(request) => {
            reply(&UnderSubscription { subscription: Box::pin(provider.refresh(request, session)).await? })
        }
        TriggerCall::ParameterOptions(request) => {
            let options = Box::pin(provider.parameter_options(request, session)).await?;
            reply(&serde_json::json!({ "options": options }))
        }
        TriggerCall::AuthorizationUrl(request) => {
            let url = Box::pin(provider.oauth_authorization_url(request, session)).await?;
            reply(&serde_json::json!({ "authorization_url": url }))
        }
        TriggerCall::OAuthCredentials(request) => reply(&Box::pin(provider.oauth_credentials(request, session)).await?),
        TriggerCall::RefreshCredentials(request) => {
            reply(&Box::pin(provider.oauth_refresh_credentials(request, session)).await?)
        }
    }
}

/// A [`Plugin`] serving one trigger provider, the only kind in its plugin (plugin-kinds.md §1.4).
/// A request naming another provider is answered `ValueError` (`Provider x not found`, as the
/// Python SDK does); one naming none goes to this provider.
pub struct TriggerPlugin<T> {
    name: String,
    provider: T,
}

impl<T: TriggerProvider> TriggerPlugin<T> {
    /// Serves `provider` under its `identity.name`.
    pub fn new(name: impl Into<String>, provider: T) -> Self {
        TriggerPlugin { name: name.into(), provider }
    }

    /// The provider served.
    pub fn provider(&self) -> &T {
        &self.provider
    }

    /// Reads and runs one request.
    ///
    /// Errors: the request's ([`RequestError`]) or the provider's.
    pub async fn serve(&self, request: &Request, session: &Session) -> Reply {
        let call = TriggerCall::parse(request)?;
        let named = call.provider();
        if !named.is_empty() && named != self.name {
            return Err(ErrorData::new(
                "ValueError",
                format!("Provider `{}` not found", crate::wire::truncate(named, 128)),
            ));
        }
        answer(&self.provider, call, session).await
    }
}

impl<T: TriggerProvider> Plugin for TriggerPlugin<T> {
    async fn handle(&self, request: Request, session: &Session) -> Reply {
        self.serve(&request, session).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(data: Value) -> Request {
        Request::from_data(&data)
    }

    #[test]
    fn a_subscription_reads_leniently() {
        let s: Subscription = serde_json::from_value(json!({"properties": null, "parameters": null})).unwrap();
        assert_eq!(s, Subscription::default());
        assert_eq!(s.expires_at, -1);
        let s: Subscription =
            serde_json::from_value(json!({"endpoint": "https://d/t/1", "expires_at": 5, "properties": {"a": 1}}))
                .unwrap();
        assert_eq!((s.endpoint.as_str(), s.expires_at, &s.properties["a"]), ("https://d/t/1", 5, &json!(1)));
        // A key given twice counts once, the last, whatever the properties' type.
        let s: Subscription = serde_json::from_str(r#"{"properties":{"a":1,"a":2}}"#).unwrap();
        assert_eq!(s.properties["a"], json!(2));
        // Serialised whole, parameters never null.
        assert_eq!(
            serde_json::to_value(Subscription::<Object>::default()).unwrap(),
            json!({"endpoint": "", "expires_at": -1, "parameters": {}, "properties": {}})
        );
    }

    #[test]
    fn a_long_raw_request_is_read_as_serde_reads_the_whole_request() {
        let hex = "50".repeat(400);
        let subscription = json!({"endpoint": "e", "properties": {"webhook_secret": "whsec_x", "k": [1, {"a": "}"}]}});
        let dispatch = request(json!({"action": "dispatch_trigger_event", "provider": "p\u{e9}",
            "raw_http_request": hex, "subscription": subscription, "credentials": {"c": 1}, "type": "trigger"}));
        let invoke = request(json!({"action": "invoke_trigger_event", "provider": "p", "event": "e1",
            "raw_http_request": hex, "subscription": subscription, "payload": {"event": {"x": "y"}},
            "parameters": {"p": true}, "user_id": "u", "credential_type": "oauth2"}));
        let fast = |r: &Request| format!("{:?}", TriggerCall::<Object>::parse(r).unwrap());
        assert!(crate::inbound::plain_string_member(dispatch.data(), "raw_http_request").is_some());
        assert_eq!(
            fast(&dispatch),
            format!("{:?}", TriggerCall::<Object>::Dispatch(dispatch.parse().unwrap())),
            "the same request, whichever way it is read"
        );
        assert_eq!(fast(&invoke), format!("{:?}", TriggerCall::<Object>::Invoke(invoke.parse().unwrap())));
        // What the whole request refuses is refused, with the position in the whole request: a
        // field of the wrong type after the hex, a second raw_http_request.
        let credentials =
            format!(r#"{{"action":"dispatch_trigger_event","raw_http_request":"{hex}","credentials":5}}"#);
        let twice =
            format!(r#"{{"action":"dispatch_trigger_event","raw_http_request":"{hex}","raw_http_request":"00"}}"#);
        for text in [credentials, twice] {
            // The request as the line carries it (a Value would keep only one of two keys).
            let line = format!(r#"{{"session_id":"s","event":"request","data":{text}}}"#);
            let crate::inbound::Inbound::Request { request: wrong, .. } = crate::inbound::classify(line.into_bytes())
            else {
                panic!("not a request")
            };
            let whole = wrong.parse::<DispatchRequest<'_>>().unwrap_err();
            match TriggerCall::<Object>::parse(&wrong) {
                Err(RequestError::WrongShape { column, .. }) => assert_eq!(column, whole.column()),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn calls_are_typed_by_action() {
        let r = request(
            json!({"action": "dispatch_trigger_event", "provider": "p", "raw_http_request": "00", "credentials": null, "credential_type": "api-key"}),
        );
        let TriggerCall::Dispatch(d) = TriggerCall::<Object>::parse(&r).unwrap() else { panic!() };
        assert_eq!(
            (d.provider.as_ref(), d.raw_http_request.as_ref(), d.credential_type),
            ("p", "00", CredentialType::ApiKey)
        );
        assert!(matches!(d.raw_http_request, Cow::Borrowed(_)), "the webhook is not copied");
        let r = request(json!({"action": "invoke_trigger_event", "event": "e", "credential_type": "something-new"}));
        let TriggerCall::Invoke(i) = TriggerCall::<Object>::parse(&r).unwrap() else { panic!() };
        assert_eq!((i.event.as_ref(), i.credential_type, i.payload.len()), ("e", CredentialType::Unauthorized, 0));
        let r =
            request(json!({"action": "refresh_trigger", "subscription": {"endpoint": "x", "properties": {"k": "v"}}}));
        let TriggerCall::Refresh(s) = TriggerCall::<Object>::parse(&r).unwrap() else { panic!() };
        assert_eq!(s.subscription.properties["k"], json!("v"));
    }

    #[test]
    fn bad_requests_name_the_field_or_position_only() {
        for missing in [
            json!({"action": "dispatch_trigger_event"}),
            json!({"action": "dispatch_trigger_event", "raw_http_request": null}),
        ] {
            let err = TriggerCall::<Object>::parse(&request(missing)).unwrap_err();
            assert_eq!(err.to_string(), "dispatch_trigger_event request is missing raw_http_request");
            assert_eq!(err.error_type(), "TriggerDispatchError");
        }
        let secret = "whsec_do-not-echo";
        let err = TriggerCall::<Object>::parse(&request(json!({"action": "subscribe_trigger", "credentials": secret})))
            .unwrap_err();
        assert!(matches!(err, RequestError::WrongShape { .. }));
        assert!(!err.to_string().contains(secret), "{err}");
        assert_eq!(err.error_type(), "TriggerError");
        let err = TriggerCall::<Object>::parse(&request(json!({"action": "invoke_tool"}))).unwrap_err();
        assert_eq!(err.error_type(), "NotImplementedError");
    }

    #[test]
    fn events_route_by_name_and_check_against_the_declaration() {
        let events = Events::<Object>::new()
            .on("ping", |r| Ok(InvokeResponse::variables(r.payload.clone())))
            .on("pong", |_| Ok(InvokeResponse::cancelled()));
        let invoke = |event: &str| {
            let line = json!({"action": "invoke_trigger_event", "event": event, "payload": {"a": 1}}).to_string();
            let request: InvokeRequest<'_> = serde_json::from_str(&line).unwrap();
            events.invoke(&request)
        };
        assert_eq!(invoke("ping").unwrap(), InvokeResponse::variables(json!({"a": 1}).as_object().unwrap().clone()));
        assert!(invoke("pong").unwrap().cancelled);
        assert_eq!(invoke("other").unwrap_err().message, "event `other` has no handler in this provider");
        let declaration = Declaration::new(json!({})).with_provider(
            ProviderKind::Trigger,
            json!({"events": [{"identity": {"name": "ping"}}, {"identity": {"name": "missing"}}]}),
        );
        assert_eq!(
            events.check(&declaration).unwrap_err().0,
            ["event missing is declared but has no handler", "event pong has a handler but is not declared"]
        );
    }

    #[test]
    fn answers_have_dify_shapes() {
        let fired = DispatchResponse::fire(vec!["ping".into()], json!({"a": 1}), &HttpResponse::json(200, &b"{}"[..]));
        let v = serde_json::to_value(&fired).unwrap();
        assert_eq!(
            (v["user_id"].clone(), v["events"].clone(), v["payload"].clone()),
            (json!(""), json!(["ping"]), json!({"a": 1}))
        );
        let quiet =
            serde_json::to_value(DispatchResponse::<Object>::answer(&HttpResponse::json(401, &b"{}"[..]))).unwrap();
        assert_eq!((quiet["events"].clone(), quiet["payload"].clone()), (json!([]), json!({})));
        assert_eq!(
            serde_json::to_value(InvokeResponse::cancelled()).unwrap(),
            json!({"variables": {}, "cancelled": true})
        );
        assert_eq!(
            serde_json::to_value(ParameterOption::new("v", "V")).unwrap(),
            json!({"value": "v", "label": {"en_US": "V"}})
        );
    }
}
