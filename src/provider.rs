/*!
The OpenAI trigger provider: the trigger actions (triggers.md §4) as a [`dify_plugin::Plugin`].
Dispatch verifies and routes a webhook and answers the sender, without IO and without waiting;
invoke turns one routed event into workflow variables and, where the node asks for it, adds the
object the event is about from OpenAI ([`crate::enrich`]); the constructor actions create, check
and delete the OpenAI webhook endpoint of API-key subscriptions ([`crate::constructor`]).
*/

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use dify_plugin::{Action, ErrorData, Plugin, Reply, Request, Session};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::body::{self, BodyError};
use crate::constructor::{self, Constructor};
use crate::dedupe::{Claim, ReplayGuard, Sighting};
use crate::enrich::{self, KeySource};
use crate::error::PluginError;
use crate::events::{self, Delivery, Outcome};
use crate::openai::{Account, Budget, OpenAi};
use crate::raw_http::{self, HttpRequest, HttpResponse};
use crate::shared_dedupe::{Shared, SharedReplay};
use crate::signature::{self, SecretError, SecretSet, VerifyError, WebhookHeaders};

/// Provider name as declared in `provider/openai_trigger.yaml`.
pub const PROVIDER: &str = "openai_trigger";
/// OpenAI's payloads are thin (a few hundred bytes); anything near this is not an OpenAI event,
/// and it keeps the dispatch line (which echoes the body) far below the daemon's 5 MiB limit.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// What one action may spend on OpenAI (an invoke fetching details, a subscribe, a refresh…), all
/// attempts and waits included, unless `OPENAI_TRIGGER_API_TIMEOUT` says otherwise. Well inside the
/// daemon's own timeout.
pub const DEFAULT_API_BUDGET: Duration = Duration::from_secs(20);
/// An invoke answer larger than this drops the whole fetched objects (the line limit is 4 MiB).
const MAX_VARIABLES_BYTES: usize = 3584 * 1024;

/// Seconds since the Unix epoch; injected so tests control time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The provider: its replay memory (in process, and shared through the daemon's storage), its
/// clock and its OpenAI client.
pub struct OpenAiTrigger {
    replay: ReplayGuard,
    shared: SharedReplay,
    clock: Clock,
    api: OpenAi,
    api_budget: Duration,
}

impl OpenAiTrigger {
    pub fn new(clock: Clock) -> Self {
        OpenAiTrigger {
            replay: ReplayGuard::default(),
            shared: SharedReplay::default(),
            clock,
            api: OpenAi::default(),
            api_budget: DEFAULT_API_BUDGET,
        }
    }

    pub fn with_system_clock() -> Self {
        Self::new(Arc::new(unix_now))
    }

    /// The time one action may spend on OpenAI (all retries and waits included).
    pub fn with_api_budget(mut self, budget: Duration) -> Self {
        self.api_budget = budget;
        self
    }

    /// Runs one action without a daemon to call back (no shared replay memory): the reply chunk,
    /// or why there is none.
    pub async fn handle_request(&self, request: &Request) -> Result<Box<RawValue>, PluginError> {
        self.handle_in(request, None).await
    }

    /// Runs one action in `session`, whose storage holds the replay memory shared by every process.
    pub async fn handle_in(&self, request: &Request, session: Option<&Session>) -> Result<Box<RawValue>, PluginError> {
        let Some(action) = request.action() else {
            return Err(PluginError::MissingField { action: Action::Other(String::new()), field: "action" });
        };
        let constructor = Constructor { api: &self.api, now: (self.clock)(), budget: self.api_budget };
        let shape = |err: serde_json::Error| PluginError::wrong_shape(action, &err);
        // The actions that may call OpenAI or the daemon are boxed: their futures are large, and
        // every session's future (which the runtime allocates and moves) would otherwise carry them.
        match action {
            Action::DispatchTriggerEvent => match session {
                Some(session) => self.dispatch_shared(request, session).await,
                None => self.dispatch_request(request),
            },
            Action::InvokeTriggerEvent => {
                let data: InvokeRequest<'_> = request.parse().map_err(shape)?;
                to_raw(&Box::pin(self.invoke(data)).await?)
            }
            Action::ValidateTriggerCredentials => {
                to_raw(&Box::pin(constructor.validate(request.parse().map_err(shape)?)).await?)
            }
            Action::SubscribeTrigger => {
                to_raw(&Box::pin(constructor.subscribe(request.parse().map_err(shape)?)).await?)
            }
            Action::UnsubscribeTrigger => {
                let data = request.parse().map_err(shape)?;
                to_raw(&UnsubscribeResponse { subscription: Box::pin(constructor.unsubscribe(data)).await })
            }
            Action::RefreshTrigger => to_raw(&Box::pin(constructor.refresh(request.parse().map_err(shape)?)).await?),
            Action::FetchParameterOptions => {
                to_raw(&Box::pin(constructor.options(request.parse().map_err(shape)?)).await?)
            }
            other => Err(PluginError::UnknownAction { action: other.as_str().to_owned() }),
        }
    }

    /// `dispatch_trigger_event` alone, synchronously: it does no IO and never waits.
    pub fn dispatch_request(&self, request: &Request) -> Result<Box<RawValue>, PluginError> {
        let action = Action::DispatchTriggerEvent;
        let data: DispatchRequest<'_> = request.parse().map_err(|err| PluginError::wrong_shape(&action, &err))?;
        let raw = data.raw_http_request.ok_or(PluginError::MissingField { action, field: "raw_http_request" })?;
        let subscription = data.subscription.unwrap_or_default();
        to_raw(&self.dispatch(&raw, &subscription))
    }

    /// `dispatch_trigger_event` with the shared replay memory: a delivery new to this process is
    /// looked up in (and recorded to) the daemon's storage before it fires (`crate::shared_dedupe`).
    async fn dispatch_shared(&self, request: &Request, session: &Session) -> Result<Box<RawValue>, PluginError> {
        let action = Action::DispatchTriggerEvent;
        let data: DispatchRequest<'_> = request.parse().map_err(|err| PluginError::wrong_shape(&action, &err))?;
        let raw = data.raw_http_request.ok_or(PluginError::MissingField { action, field: "raw_http_request" })?;
        let subscription = data.subscription.unwrap_or_default();
        let verdict = self.verdict(&raw, &subscription);
        let verdict = match verdict {
            Verdict::Accepted { events, payload, claim } => {
                let now = (self.clock)();
                let shared = if self.shared.is_paused(now) {
                    Shared::Unavailable("paused after trouble".into())
                } else {
                    Box::pin(self.shared.check_and_record(session, &claim.key(), now)).await
                };
                match shared {
                    Shared::Recorded | Shared::Unavailable(_) => Verdict::Accepted { events, payload, claim },
                    Shared::Seen => {
                        // Learnt from storage: the next copy is answered from memory.
                        claim.confirm();
                        Verdict::Duplicate
                    }
                    Shared::Lost => Verdict::InProgress,
                }
            }
            other => other,
        };
        to_raw(&verdict.into_response())
    }

    fn dispatch(&self, raw_hex: &str, subscription: &Subscription) -> DispatchResponse {
        self.verdict(raw_hex, subscription).into_response()
    }

    fn verdict(&self, raw_hex: &str, subscription: &Subscription) -> Verdict<'_> {
        let secret_text = constructor::live_secrets(&subscription.properties, (self.clock)());
        let endpoint = subscription.endpoint.as_deref().unwrap_or("");
        let subscribed = constructor::subscribed_types(&subscription.properties);
        let verdict = self.check_subscribed(raw_hex, secret_text, endpoint, subscribed.as_deref());
        if let Verdict::Rejected(rejection) = &verdict {
            tracing::info!(status = rejection.status(), code = rejection.code(), "rejected a webhook delivery");
        }
        verdict
    }

    /// Decides what a delivery is: accepted (with the events it fires), a duplicate, one being
    /// processed right now, or rejected. `endpoint` is the subscription's callback URL, which keeps
    /// subscriptions apart in the replay memory (a digest of the secrets does where it is empty).
    pub fn check(&self, raw_hex: &str, secret_text: &str, endpoint: &str) -> Verdict<'_> {
        self.check_subscribed(raw_hex, secret_text, endpoint, None)
    }

    /// [`check`](Self::check) for a subscription that fires only the OpenAI types `subscribed`
    /// (a constructor subscription; None: every type).
    pub fn check_subscribed(
        &self,
        raw_hex: &str,
        secret_text: &str,
        endpoint: &str,
        subscribed: Option<&[&str]>,
    ) -> Verdict<'_> {
        let request = match HttpRequest::from_hex(raw_hex, MAX_BODY_BYTES) {
            Ok(request) => request,
            Err(raw_http::Error::BodyTooLarge { bytes, .. }) => {
                return Verdict::Rejected(Rejection::PayloadTooLarge { bytes });
            }
            Err(err) => return Verdict::Rejected(Rejection::MalformedRequest(err)),
        };
        // Methods are case-sensitive (RFC 9110 §9.1): "post" is not POST.
        if request.method() != "POST" {
            return Verdict::Rejected(Rejection::MethodNotAllowed { method: request.method().to_owned() });
        }
        if let Some(coding) = request.header_values("content-encoding").find(|c| !c.eq_ignore_ascii_case("identity")) {
            return Verdict::Rejected(Rejection::UnsupportedEncoding {
                field: "Content-Encoding",
                coding: coding.to_owned(),
            });
        }
        // Dify de-chunks bodies and may keep the header (triggers.md §3.3); any other coding would
        // leave bytes we cannot read.
        if let Some(coding) = request.header_values("transfer-encoding").find(|c| !c.eq_ignore_ascii_case("chunked")) {
            return Verdict::Rejected(Rejection::UnsupportedEncoding {
                field: "Transfer-Encoding",
                coding: coding.to_owned(),
            });
        }
        let secrets = match SecretSet::parse(secret_text) {
            Ok(secrets) => secrets,
            Err(err) => return Verdict::Rejected(Rejection::Secret(err)),
        };
        let id = match single_value(&request, signature::HEADER_ID) {
            Ok(id) => id,
            Err(rejection) => return Verdict::Rejected(rejection),
        };
        let timestamp = match single_value(&request, signature::HEADER_TIMESTAMP) {
            Ok(timestamp) => timestamp,
            Err(rejection) => return Verdict::Rejected(rejection),
        };
        // Several signature lines are several candidates: each must still match on its own.
        let signatures = request.header_values(signature::HEADER_SIGNATURE).collect::<Vec<_>>().join(" ");
        let headers =
            WebhookHeaders { id, timestamp, signature: (!signatures.is_empty()).then_some(signatures.as_str()) };
        let now = (self.clock)();
        let verified = match signature::verify(&secrets, headers, request.body(), now) {
            Ok(verified) => verified,
            Err(err) => return Verdict::Rejected(Rejection::Signature(err)),
        };
        let Ok(text) = std::str::from_utf8(request.body()) else {
            return Verdict::Rejected(Rejection::Signature(VerifyError::InvalidPayload));
        };
        let event = match body::check(text) {
            Ok(event) => event,
            Err(err) => return Verdict::Rejected(Rejection::InvalidEvent(err)),
        };
        let scope =
            if endpoint.is_empty() { format!("secrets:{}", secrets.scope_digest()) } else { endpoint.to_owned() };
        match self.replay.claim(&scope, &verified.webhook_id, now) {
            Sighting::Duplicate => Verdict::Duplicate,
            Sighting::InProgress => Verdict::InProgress,
            Sighting::New(claim) if subscribed.is_some_and(|types| !types.contains(&event.openai_type.as_str())) => {
                Verdict::NotSubscribed { claim }
            }
            Sighting::New(claim) => {
                let payload = Payload {
                    webhook_id: verified.webhook_id,
                    webhook_timestamp: verified.timestamp,
                    event: event.json,
                };
                Verdict::Accepted { events: events::names_for(&event.openai_type), payload, claim }
            }
        }
    }
}

/// The one value of a singleton header: absent is None (the signature check reports it); two lines
/// that disagree are refused, since which one the sender meant cannot be known.
fn single_value<'a>(request: &'a HttpRequest, name: &'static str) -> Result<Option<&'a str>, Rejection> {
    let mut values = request.header_values(name);
    let first = values.next();
    if values.any(|other| Some(other) != first) {
        return Err(Rejection::ConflictingHeader { name });
    }
    Ok(first)
}

impl Plugin for OpenAiTrigger {
    async fn handle(&self, request: Request, session: &Session) -> Reply {
        self.handle_in(&request, Some(session)).await.map_err(ErrorData::from)
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[derive(Deserialize)]
struct DispatchRequest<'a> {
    #[serde(default)]
    subscription: Option<Subscription>,
    #[serde(borrow, default)]
    raw_http_request: Option<Cow<'a, str>>,
}

/// The part of a subscription dispatch reads (triggers.md §4: endpoint and decrypted properties).
#[derive(Deserialize, Default)]
struct Subscription {
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default, deserialize_with = "object_or_null")]
    properties: Map<String, Value>,
}

/// Dify may send `null` for an empty map (daemon-protocol.md §2.3): treat it as `{}`.
fn object_or_null<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Map<String, Value>, D::Error> {
    Ok(Option::<Map<String, Value>>::deserialize(deserializer)?.unwrap_or_default())
}

/// `{"user_id","events","response","payload"}`; `events` is never null (triggers.md §4.1).
#[derive(Serialize)]
struct DispatchResponse {
    user_id: &'static str,
    events: Vec<&'static str>,
    response: Cow<'static, str>,
    /// `{}` when nothing fires: Dify expects an object, never null (triggers.md §3.2).
    #[serde(serialize_with = "object_or_empty")]
    payload: Option<Payload>,
}

fn object_or_empty<S: serde::Serializer>(payload: &Option<Payload>, serializer: S) -> Result<S::Ok, S::Error> {
    match payload {
        Some(payload) => payload.serialize(serializer),
        None => Map::new().serialize(serializer),
    }
}

/// What invoke needs, decided once at dispatch: the body is embedded as raw JSON, not re-encoded.
#[derive(Serialize, Debug)]
pub struct Payload {
    webhook_id: String,
    webhook_timestamp: i64,
    event: Box<RawValue>,
}

/// What dispatch decided about one delivery.
#[derive(Debug)]
pub enum Verdict<'a> {
    /// Verified and new: these events fire with this payload; the sender gets 200 `ok`. The claim
    /// on its id is confirmed once that answer is built.
    Accepted { events: Vec<&'static str>, payload: Payload, claim: Claim<'a> },
    /// Verified, but of a type this subscription did not subscribe to: nothing fires; 200 `ignored`.
    NotSubscribed { claim: Claim<'a> },
    /// Verified, but this `webhook-id` was already accepted: nothing fires; 200 `duplicate`.
    Duplicate,
    /// Verified, and the same `webhook-id` is being processed right now: nothing fires; 409, so the
    /// sender retries (a duplicate answer could lose the event if that other attempt fails).
    InProgress,
    /// Not accepted: nothing fires; the sender gets the rejection's status.
    Rejected(Rejection),
}

/// Why a delivery was refused; each has its HTTP status and its `error` code for the sender.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejection {
    MalformedRequest(raw_http::Error),
    MethodNotAllowed { method: String },
    UnsupportedEncoding { field: &'static str, coding: String },
    ConflictingHeader { name: &'static str },
    Secret(SecretError),
    PayloadTooLarge { bytes: usize },
    Signature(VerifyError),
    InvalidEvent(BodyError),
}

impl Rejection {
    pub fn status(&self) -> u16 {
        match self {
            Rejection::MalformedRequest(_) | Rejection::InvalidEvent(_) | Rejection::ConflictingHeader { .. } => 400,
            Rejection::MethodNotAllowed { .. } => 405,
            Rejection::UnsupportedEncoding { .. } => 415,
            Rejection::Secret(_) | Rejection::Signature(_) => 401,
            Rejection::PayloadTooLarge { .. } => 413,
        }
    }

    /// The `error` code in the response body.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::MalformedRequest(_) => "malformed_request",
            Rejection::MethodNotAllowed { .. } => "method_not_allowed",
            Rejection::UnsupportedEncoding { .. } => "unsupported_encoding",
            Rejection::ConflictingHeader { .. } => "conflicting_header",
            Rejection::Secret(err) => err.code(),
            Rejection::PayloadTooLarge { .. } => "payload_too_large",
            Rejection::Signature(err) => err.code(),
            Rejection::InvalidEvent(_) => "invalid_event",
        }
    }

    /// The human message: names the failed check, never the secret, the signature or the body.
    pub fn message(&self) -> String {
        match self {
            Rejection::MalformedRequest(err) => err.to_string(),
            Rejection::MethodNotAllowed { method } => {
                format!("OpenAI webhooks are POST requests, not {}", dify_plugin::wire::truncate(method, 16))
            }
            Rejection::Secret(err) => {
                format!("{err}: paste the whsec_ signing secret from OpenAI into this subscription's settings")
            }
            Rejection::PayloadTooLarge { bytes } => {
                format!("body of {bytes} bytes is over the {MAX_BODY_BYTES} byte limit")
            }
            Rejection::Signature(err) => err.to_string(),
            Rejection::InvalidEvent(err) => err.to_string(),
            Rejection::UnsupportedEncoding { field, coding } => {
                format!("{field} {} is not supported: send the body unencoded", dify_plugin::wire::truncate(coding, 32))
            }
            Rejection::ConflictingHeader { name } => format!("several {name} header lines with different values"),
        }
    }
}

impl Verdict<'_> {
    fn into_response(self) -> DispatchResponse {
        // The answers that do not depend on the delivery are encoded once.
        static OK: LazyLock<String> = LazyLock::new(|| HttpResponse::json(200, &br#"{"status":"ok"}"#[..]).to_hex());
        static IGNORED: LazyLock<String> = LazyLock::new(|| {
            HttpResponse::json(200, &br#"{"status":"ignored","reason":"event type not subscribed"}"#[..]).to_hex()
        });
        static DUPLICATE: LazyLock<String> =
            LazyLock::new(|| HttpResponse::json(200, &br#"{"status":"duplicate"}"#[..]).to_hex());
        static IN_PROGRESS: LazyLock<String> = LazyLock::new(|| {
            let body = br#"{"status":"retry","error":"delivery_in_progress","message":"this webhook-id is being processed; retry later"}"#;
            HttpResponse::json(409, &body[..]).with_header("Retry-After", "5").to_hex()
        });
        let (events, payload, response): (Vec<&'static str>, Option<Payload>, Cow<'static, str>) = match self {
            Verdict::Accepted { events, payload, claim } => {
                claim.confirm();
                (events, Some(payload), Cow::Borrowed(OK.as_str()))
            }
            Verdict::NotSubscribed { claim } => {
                claim.confirm();
                (Vec::new(), None, Cow::Borrowed(IGNORED.as_str()))
            }
            Verdict::Duplicate => (Vec::new(), None, Cow::Borrowed(DUPLICATE.as_str())),
            Verdict::InProgress => (Vec::new(), None, Cow::Borrowed(IN_PROGRESS.as_str())),
            Verdict::Rejected(rejection) => {
                let body = serde_json::json!({"status": "rejected", "error": rejection.code(), "message": rejection.message()});
                let response = HttpResponse::json(rejection.status(), body.to_string().into_bytes());
                let response = if rejection.status() == 405 { response.with_header("Allow", "POST") } else { response };
                (Vec::new(), None, Cow::Owned(response.to_hex()))
            }
        };
        DispatchResponse { user_id: "", events, response, payload }
    }
}

#[derive(Deserialize)]
struct InvokeRequest<'a> {
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(default)]
    payload: Option<Map<String, Value>>,
    /// Read only when the payload lacks what invoke needs (a payload stored by another plugin).
    #[serde(borrow, default)]
    raw_http_request: Option<Cow<'a, str>>,
    #[serde(default)]
    subscription: Option<Subscription>,
    #[serde(default, deserialize_with = "object_or_null")]
    credentials: Map<String, Value>,
}

/// `unsubscribe_trigger`'s answer: the result under `subscription` (triggers.md §4.5).
#[derive(Serialize)]
struct UnsubscribeResponse {
    subscription: constructor::Unsubscribed,
}

#[derive(Serialize)]
struct InvokeResponse {
    variables: Map<String, Value>,
    cancelled: bool,
}

impl OpenAiTrigger {
    async fn invoke(&self, request: InvokeRequest<'_>) -> Result<InvokeResponse, PluginError> {
        let name =
            request.event.ok_or(PluginError::MissingField { action: Action::InvokeTriggerEvent, field: "event" })?;
        let spec = events::by_name(&name).ok_or_else(|| PluginError::UnknownEvent { event: name.clone() })?;
        let mut payload = request.payload.unwrap_or_default();
        // Our dispatch's payload carries everything; the stored request is decoded only for a
        // payload from elsewhere (the Python plugin's, or none).
        let complete = matches!(payload.get("event"), Some(Value::Object(_)))
            && payload.get("webhook_id").is_some_and(Value::is_string)
            && payload.get("webhook_timestamp").is_some_and(Value::is_i64);
        let raw = if complete {
            None
        } else {
            request.raw_http_request.as_deref().and_then(|hex| HttpRequest::from_hex(hex, MAX_BODY_BYTES).ok())
        };
        let header = |name: &str| raw.as_ref().and_then(|r| r.header_str(name)).map(str::to_owned);
        let webhook_id = payload
            .get("webhook_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| header(signature::HEADER_ID))
            .unwrap_or_default();
        let webhook_timestamp = payload
            .get("webhook_timestamp")
            .and_then(Value::as_i64)
            .or_else(|| header(signature::HEADER_TIMESTAMP).and_then(|t| t.parse().ok()))
            .unwrap_or(0);

        // Our dispatch wraps the event; a payload stored by the Python plugin is the bare event; as a
        // last resort the stored request's body is read again. The event is owned from here on.
        let mut event: Map<String, Value> = match payload.remove("event") {
            Some(Value::Object(event)) => event,
            _ if payload.get("type").is_some_and(Value::is_string) => payload,
            _ => match raw.as_ref().and_then(|r| serde_json::from_slice::<Map<String, Value>>(r.body()).ok()) {
                Some(event) => event,
                None => return Ok(cancelled(&name, "payload holds no OpenAI event")),
            },
        };
        let delivery = Delivery { event: &event, webhook_id: &webhook_id, webhook_timestamp };
        let parameters = request.parameters.unwrap_or_default();
        let mut variables = match events::variables_without_data(spec, &delivery, &parameters) {
            Outcome::Fire(variables) => variables,
            Outcome::Ignore(reason) => return Ok(cancelled(&name, &reason)),
        };
        if enrich::is_enrichable(spec.family) {
            let properties = request.subscription.map(|s| s.properties).unwrap_or_default();
            let key = key_source(&request.credentials, &properties);
            let empty = Map::new();
            let data = event.get("data").and_then(Value::as_object).unwrap_or(&empty);
            let budget = Budget::new(self.api_budget);
            enrich::add_details(&self.api, &key, spec.family, data, &parameters, &budget, &mut variables).await;
        }
        // `data` moves from the event into the variables: no copy of what may be most of the body.
        let data = match event.remove("data") {
            Some(Value::Object(data)) => data,
            _ => Map::new(),
        };
        variables.insert("data".into(), Value::Object(data));
        // Only fetched objects can be large; plain variables are bounded by the body's 1 MiB.
        if variables.get("details_fetched") == Some(&Value::Bool(true)) {
            fit_line(&mut variables);
        }
        Ok(InvokeResponse { variables, cancelled: false })
    }
}

/// The key enrichment uses: the constructor's credentials, else a manual subscription's optional
/// `api_key` property.
fn key_source(credentials: &Map<String, Value>, properties: &Map<String, Value>) -> KeySource {
    for settings in [credentials, properties] {
        match Account::from_settings(settings) {
            Ok(Some(account)) => return KeySource::Found(account),
            Ok(None) => {}
            Err(err) => return KeySource::Invalid(err.to_string()),
        }
    }
    KeySource::Missing
}

/// Keeps the invoke answer under the line limit: past [`MAX_VARIABLES_BYTES`] the whole fetched
/// objects and downloaded lines go (their summary fields stay), and `details_error` says so.
fn fit_line(variables: &mut Map<String, Value>) {
    let size = serde_json::to_string(variables).map(|text| text.len()).unwrap_or(usize::MAX);
    if size <= MAX_VARIABLES_BYTES {
        return;
    }
    for key in ["response", "batch", "job", "run", "alert", "case", "output_lines", "output_text"] {
        if let Some(value) = variables.get_mut(key) {
            *value = match value {
                Value::Array(_) => Value::Array(Vec::new()),
                Value::String(_) => Value::String(String::new()),
                _ => Value::Object(Map::new()),
            };
        }
    }
    if variables.contains_key("output_truncated") {
        variables.insert("output_truncated".into(), Value::Bool(true));
    }
    variables.insert(
        "details_error".into(),
        Value::String(format!("the details were {size} bytes, over the {MAX_VARIABLES_BYTES} bytes one run can carry; the whole objects were left out")),
    );
}

fn cancelled(event: &str, reason: &str) -> InvokeResponse {
    tracing::info!(event, reason, "event ignored for this workflow");
    InvokeResponse { variables: Map::new(), cancelled: true }
}

fn to_raw<T: Serialize>(value: &T) -> Result<Box<RawValue>, PluginError> {
    // Our response types have string keys only: this cannot fail, and if it did it would be an
    // error answer, not a panic.
    serde_json::value::to_raw_value(value).map_err(|err| PluginError::Encoding { detail: err.to_string() })
}
