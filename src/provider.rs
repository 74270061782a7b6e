//! The OpenAI trigger provider: the six trigger actions (triggers.md §4) behind the protocol's
//! [`Handler`]. Dispatch verifies and routes a webhook and answers the sender; invoke turns one
//! routed event into workflow variables. Nothing here does IO: the clock is injected.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::dedupe::ReplayGuard;
use crate::error::PluginError;
use crate::events::{self, Delivery, Outcome};
use crate::protocol::{ErrorData, Handler, Session, truncate};
use crate::raw_http::{HttpRequest, HttpResponse};
use crate::signature::{self, SecretSet, WebhookHeaders};

/// Provider name as declared in `provider/openai_trigger.yaml`.
pub const PROVIDER: &str = "openai_trigger";
/// OpenAI's payloads are thin (a few hundred bytes); anything near this is not an OpenAI event,
/// and it keeps the dispatch line (which echoes the body) far below the daemon's 5 MiB limit.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub struct OpenAiTrigger {
    replay: ReplayGuard,
    clock: Clock,
}

impl OpenAiTrigger {
    pub fn new(clock: Clock) -> Self {
        OpenAiTrigger { replay: ReplayGuard::default(), clock }
    }

    pub fn with_system_clock() -> Self {
        Self::new(Arc::new(unix_now))
    }

    /// Runs one action on its request `data` object.
    pub fn handle_action(&self, data: &str) -> Result<Box<RawValue>, PluginError> {
        let header: ActionHeader = decode("request", data)?;
        match header.action.as_str() {
            "dispatch_trigger_event" => to_raw(&self.dispatch(decode(&header.action, data)?)),
            "invoke_trigger_event" => to_raw(&invoke(decode(&header.action, data)?)?),
            "validate_trigger_credentials" | "subscribe_trigger" | "unsubscribe_trigger" | "refresh_trigger" => {
                Err(PluginError::ManualSubscriptionOnly { action: header.action })
            }
            _ => Err(PluginError::UnknownAction { action: header.action }),
        }
    }

    fn dispatch(&self, request: DispatchRequest<'_>) -> DispatchResponse<'static> {
        let secret_text = request
            .subscription
            .as_ref()
            .and_then(|s| s.properties.as_ref())
            .and_then(|p| p.get("webhook_secret"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let scope = request.subscription.as_ref().and_then(|s| s.endpoint.as_deref()).unwrap_or("");
        let verdict = self.check(&request.raw_http_request, secret_text, scope);
        if let Rejection { status, code, .. } = &verdict.response {
            tracing::info!(status, code, "rejected a webhook delivery");
        }
        verdict.into_response()
    }

    fn check(&self, raw_hex: &str, secret_text: &str, scope: &str) -> Verdict {
        let request = match HttpRequest::from_hex(raw_hex) {
            Ok(request) => request,
            Err(err) => return Verdict::reject(400, "malformed_request", err.to_string()),
        };
        // Methods are case-sensitive (RFC 9110 §9.1): "post" is not POST.
        if request.method != "POST" {
            return Verdict::reject(
                405,
                "method_not_allowed",
                format!("OpenAI webhooks are POST requests, not {}", truncate(&request.method, 16)),
            );
        }
        let secrets = match SecretSet::parse(secret_text) {
            Ok(secrets) => secrets,
            Err(err) => {
                let hint = "paste the whsec_ signing secret from OpenAI into this subscription's settings";
                return Verdict::reject(401, err.code(), format!("{err}: {hint}"));
            }
        };
        let body = request.body();
        if body.len() > MAX_BODY_BYTES {
            return Verdict::reject(
                413,
                "payload_too_large",
                format!("body of {} bytes is over the {} byte limit", body.len(), MAX_BODY_BYTES),
            );
        }
        let headers = WebhookHeaders {
            id: request.header_str(signature::HEADER_ID),
            timestamp: request.header_str(signature::HEADER_TIMESTAMP),
            signature: request.header_str(signature::HEADER_SIGNATURE),
        };
        let now = (self.clock)();
        let verified = match signature::verify(&secrets, headers, body, now) {
            Ok(verified) => verified,
            Err(err) => return Verdict::reject(401, err.code(), err.to_string()),
        };
        let Some(openai_type) = event_type(body) else {
            return Verdict::reject(
                400,
                "invalid_event",
                "body is not a JSON object with a string \"type\"".to_owned(),
            );
        };
        if !self.replay.first_sighting(scope, &verified.webhook_id, now) {
            return Verdict { events: Vec::new(), payload: None, response: Answer::Duplicate };
        }
        let payload = Payload {
            webhook_id: verified.webhook_id,
            webhook_timestamp: verified.timestamp,
            event: single_line_json(body),
        };
        Verdict { events: events::names_for(&openai_type), payload: Some(payload), response: Answer::Accepted }
    }
}

impl Handler for OpenAiTrigger {
    async fn handle(&self, session: Session) -> Result<Box<RawValue>, ErrorData> {
        self.handle_action(session.data.get()).map_err(ErrorData::from)
    }
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[derive(Deserialize)]
struct ActionHeader {
    action: String,
}

#[derive(Deserialize)]
struct DispatchRequest<'a> {
    #[serde(default)]
    subscription: Option<Subscription>,
    #[serde(borrow)]
    raw_http_request: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Subscription {
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    properties: Option<Map<String, Value>>,
}

/// `{"user_id","events","response","payload"}`; `events` is never null (triggers.md §4.1).
#[derive(Serialize)]
struct DispatchResponse<'a> {
    user_id: &'a str,
    events: Vec<&'static str>,
    response: String,
    /// `{}` when nothing fires: Dify expects an object, never null (triggers.md §3.2).
    #[serde(serialize_with = "object_or_empty")]
    payload: Option<Payload>,
}

fn object_or_empty<S: serde::Serializer>(payload: &Option<Payload>, serializer: S) -> Result<S::Ok, S::Error> {
    match payload {
        Some(payload) => payload.serialize(serializer),
        None => serde_json::Map::new().serialize(serializer),
    }
}

/// What invoke needs, decided once at dispatch: the body is embedded as raw JSON, not re-encoded.
#[derive(Serialize)]
struct Payload {
    webhook_id: String,
    webhook_timestamp: i64,
    event: Box<RawValue>,
}

struct Verdict {
    events: Vec<&'static str>,
    payload: Option<Payload>,
    response: Answer,
}

enum Answer {
    Accepted,
    Duplicate,
    Rejection { status: u16, code: &'static str, message: String },
}
use Answer::Rejection;

impl Verdict {
    fn reject(status: u16, code: &'static str, message: String) -> Self {
        Verdict { events: Vec::new(), payload: None, response: Rejection { status, code, message } }
    }

    fn into_response(self) -> DispatchResponse<'static> {
        let http = match &self.response {
            Answer::Accepted => HttpResponse::json(200, &br#"{"status":"ok"}"#[..]),
            Answer::Duplicate => HttpResponse::json(200, &br#"{"status":"duplicate"}"#[..]),
            Rejection { status, code, message } => {
                let body = serde_json::json!({"status": "rejected", "error": code, "message": message});
                let response = HttpResponse::json(*status, serde_json::to_vec(&body).expect("json"));
                if *status == 405 { response.with_header("Allow", "POST") } else { response }
            }
        };
        DispatchResponse { user_id: "", events: self.events, response: http.to_hex(), payload: self.payload }
    }
}

/// The `type` of a JSON object body; None for anything else.
fn event_type(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "type")]
        kind: Option<Value>,
    }
    // A struct also deserialises from a JSON array, so insist on an object first.
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    match serde_json::from_slice::<Probe>(body).ok()?.kind? {
        Value::String(kind) if !kind.is_empty() => Some(kind),
        _ => None,
    }
}

/// The body as raw JSON for the payload. A pretty-printed body carries newlines, which would break
/// the one-line framing, so only then is it compacted (JSON strings cannot hold raw newlines).
fn single_line_json(body: &[u8]) -> Box<RawValue> {
    let text = std::str::from_utf8(body).expect("verified bodies are UTF-8");
    if !text.contains(['\n', '\r']) {
        if let Ok(raw) = RawValue::from_string(text.trim().to_owned()) {
            return raw;
        }
    }
    let value: Value = serde_json::from_str(text).expect("event_type parsed it already");
    serde_json::value::to_raw_value(&value).expect("json")
}

#[derive(Deserialize)]
struct InvokeRequest {
    event: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(default)]
    payload: Option<Map<String, Value>>,
    #[serde(default)]
    raw_http_request: Option<String>,
}

#[derive(Serialize)]
struct InvokeResponse {
    variables: Map<String, Value>,
    cancelled: bool,
}

fn invoke(request: InvokeRequest) -> Result<InvokeResponse, PluginError> {
    let spec =
        events::by_name(&request.event).ok_or_else(|| PluginError::UnknownEvent { event: request.event.clone() })?;
    let payload = request.payload.unwrap_or_default();
    let raw = request.raw_http_request.as_deref().and_then(|hex| HttpRequest::from_hex(hex).ok());
    let header = |name: &str| raw.as_ref().and_then(|r| r.header_str(name)).map(str::to_owned);

    // Our dispatch wraps the event; a payload stored by the Python plugin is the bare event; as a
    // last resort the stored request's body is read again.
    let from_body;
    let event = match payload.get("event") {
        Some(Value::Object(event)) => event,
        _ if payload.get("type").is_some_and(Value::is_string) => &payload,
        _ => {
            from_body = raw.as_ref().and_then(|r| serde_json::from_slice::<Map<String, Value>>(r.body()).ok());
            match &from_body {
                Some(event) => event,
                None => return Ok(cancelled(&request.event, "payload holds no OpenAI event")),
            }
        }
    };
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
    let delivery = Delivery { event, webhook_id: &webhook_id, webhook_timestamp };
    let parameters = request.parameters.unwrap_or_default();
    Ok(match events::variables(spec, &delivery, &parameters) {
        Outcome::Fire(variables) => InvokeResponse { variables, cancelled: false },
        Outcome::Ignore(reason) => cancelled(&request.event, &reason),
    })
}

fn cancelled(event: &str, reason: &str) -> InvokeResponse {
    tracing::info!(event, reason, "event ignored for this workflow");
    InvokeResponse { variables: Map::new(), cancelled: true }
}

fn decode<'a, T: Deserialize<'a>>(what: &str, data: &'a str) -> Result<T, PluginError> {
    serde_json::from_str(data).map_err(|err| PluginError::bad_request(what, &err))
}

fn to_raw<T: Serialize>(value: &T) -> Result<Box<RawValue>, PluginError> {
    Ok(serde_json::value::to_raw_value(value).expect("response types always serialise"))
}
