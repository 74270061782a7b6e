/*!
`dispatch_trigger_event` (triggers.md §4.1): verify a webhook, route it, answer the sender, without
IO and without waiting, except for the daemon's storage, where the shared replay memory looks up and
records a delivery new to this process (one `get`, then one `set` if it is new there too:
[`crate::shared_dedupe`]).

Hex → [`HttpRequest`] → method and encoding checks → [`SecretSet::parse`] of the subscription's live
secrets → [`signature::verify`] → the body check → the replay memory → the subscription's types →
[`Verdict`], answered once: the HTTP response as hex, and a payload that embeds the body as raw JSON.
*/

use std::borrow::Cow;
use std::sync::LazyLock;

use dify_plugin::Session;
use dify_plugin::trigger::{DispatchRequest, DispatchResponse, Subscription};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::body::{self, BodyError};
use crate::dedupe::{Claim, ReplayGuard, Sighting};
use crate::events;
use crate::shared_dedupe::{Shared, SharedReplay, Trouble};
use crate::signature::{self, SecretError, SecretSet, VerifyError, WebhookHeaders};
use crate::subscription::SubscriptionProperties;
use dify_plugin::raw_http::{self, HttpRequest, HttpResponse};

/// OpenAI's payloads are thin (a few hundred bytes); anything near this is not an OpenAI event,
/// and it keeps the dispatch line (which echoes the body) far below the daemon's 5 MiB limit.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Dispatch with the process's replay memory, at the dispatch's `now` (Unix seconds, read once
/// from the provider's clock): what the signature's freshness, a rotation's old secret and the
/// replay memory are judged by.
pub(crate) struct Dispatcher<'a> {
    pub(crate) replay: &'a ReplayGuard,
    pub(crate) shared: &'a SharedReplay,
    pub(crate) now: i64,
}

/// The dispatch request, typed by the runtime, with this plugin's subscription properties.
type Request<'r> = DispatchRequest<'r, SubscriptionProperties>;

impl<'a> Dispatcher<'a> {
    /// `dispatch_trigger_event` on the process's memory alone, synchronously: no IO, no waiting.
    pub(crate) fn dispatch(&self, request: &Request<'_>) -> Response {
        self.verdict(&request.raw_http_request, &request.subscription).into_response()
    }

    /// `dispatch_trigger_event` with the shared replay memory: a delivery new to this process is
    /// looked up in (and recorded to) the daemon's storage before it fires (`crate::shared_dedupe`).
    pub(crate) async fn dispatch_shared(&self, request: &Request<'_>, session: &Session) -> Response {
        let verdict = match self.verdict(&request.raw_http_request, &request.subscription) {
            Verdict::Accepted { events, payload, claim } => {
                let shared = if self.shared.is_paused(self.now) {
                    Shared::Unavailable(Trouble::Paused)
                } else {
                    Box::pin(self.shared.check_and_record(session, &claim.key(), self.now)).await
                };
                match shared {
                    Shared::Recorded | Shared::Unavailable(_) => Verdict::Accepted { events, payload, claim },
                    Shared::Seen => {
                        // Learnt from storage: the next copy is answered from memory.
                        claim.confirm();
                        Verdict::Duplicate
                    }
                }
            }
            other => other,
        };
        verdict.into_response()
    }

    fn verdict(&self, raw_hex: &str, subscription: &Subscription<SubscriptionProperties>) -> Verdict<'a> {
        let properties = &subscription.properties;
        let endpoint = subscription.endpoint.as_str();
        let subscribed = properties.subscribed_types();
        let verdict = self.check(raw_hex, properties.live_secrets(self.now), endpoint, subscribed.as_deref());
        if let Verdict::Rejected(rejection) = &verdict {
            tracing::info!(status = rejection.status(), code = rejection.code(), "rejected a webhook delivery");
        }
        verdict
    }

    /// Decides what a delivery is: accepted (with the events it fires), a duplicate, one being
    /// processed right now, or rejected. `endpoint` is the subscription's callback URL, which keeps
    /// subscriptions apart in the replay memory (a digest of the secrets does where it is empty).
    /// A subscription that fires only the OpenAI types `subscribed` (a constructor subscription;
    /// None: every type) answers the others as not subscribed.
    fn check(&self, raw_hex: &str, secret_text: &str, endpoint: &str, subscribed: Option<&[&str]>) -> Verdict<'a> {
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
        let verified = match signature::verify(&secrets, headers, request.body(), self.now) {
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
        match self.replay.claim(&scope, &verified.webhook_id, self.now) {
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

/// `{"user_id","events","response","payload"}`; `events` is never null, `payload` `{}` when
/// nothing fires (triggers.md §4.1).
pub(crate) type Response = DispatchResponse<Payload>;

/// What invoke needs, decided once at dispatch: the body is embedded as raw JSON, not re-encoded.
#[derive(Serialize, Debug)]
pub struct Payload {
    webhook_id: String,
    webhook_timestamp: i64,
    event: Box<RawValue>,
}

/// What dispatch decided about one delivery.
#[derive(Debug)]
pub(crate) enum Verdict<'a> {
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
pub(crate) enum Rejection {
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
    pub(crate) fn status(&self) -> u16 {
        match self {
            Rejection::MalformedRequest(_) | Rejection::InvalidEvent(_) | Rejection::ConflictingHeader { .. } => 400,
            Rejection::MethodNotAllowed { .. } => 405,
            Rejection::UnsupportedEncoding { .. } => 415,
            Rejection::Secret(_) | Rejection::Signature(_) => 401,
            Rejection::PayloadTooLarge { .. } => 413,
        }
    }

    /// The `error` code in the response body.
    pub(crate) fn code(&self) -> &'static str {
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
    pub(crate) fn message(&self) -> String {
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
    fn into_response(self) -> Response {
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
        let (events, payload, response): (Vec<Cow<'static, str>>, Option<Payload>, Cow<'static, str>) = match self {
            Verdict::Accepted { events, payload, claim } => {
                claim.confirm();
                (events.into_iter().map(Cow::Borrowed).collect(), Some(payload), Cow::Borrowed(OK.as_str()))
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
        DispatchResponse { user_id: Cow::Borrowed(""), events, response, payload }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::{DEMO_SECRET, SignedDelivery, sample_body};
    use dify_plugin::Request;
    use dify_plugin::host::trigger;
    use dify_plugin::trigger::TriggerCall;
    use serde_json::{Value, json};

    const NOW: i64 = 1_765_432_100;
    const PROVIDER: &str = "openai_trigger";
    const ENDPOINT: &str = "https://dify.test/triggers/plugin/unit";
    /// Another valid secret (the old one of a rotation).
    const OLD_SECRET: &str = "whsec_b2xkLXNlY3JldC1vZi1hLXJvdGF0aW9uLTAwMDE=";

    struct Answer {
        events: Vec<String>,
        status: u16,
        error: Option<String>,
    }

    /// Dispatches one `batch.completed` delivery signed with `secret` at `signed_at`, to a
    /// subscription with `properties`, at the injected `now`.
    fn dispatch(guard: &ReplayGuard, now: i64, secret: &str, signed_at: i64, id: &str, properties: Value) -> Answer {
        let delivery = SignedDelivery::new(secret, id, signed_at, sample_body("batch.completed", "evt_1", signed_at));
        let subscription = trigger::subscription(ENDPOINT, properties);
        let data = trigger::dispatch(PROVIDER, &delivery.raw_request("/t"), &subscription);
        let shared = SharedReplay::default();
        let dispatcher = Dispatcher { replay: guard, shared: &shared, now };
        let request = Request::from_data(&data);
        let Ok(TriggerCall::Dispatch(typed)) = TriggerCall::parse(&request) else { panic!("a dispatch request") };
        let answer = serde_json::to_value(dispatcher.dispatch(&typed)).unwrap();
        let (status, error) = status_and_error(answer["response"].as_str().unwrap());
        let events = answer["events"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_owned()).collect();
        Answer { events, status, error }
    }

    /// The status and `error` code of a hex HTTP response.
    fn status_and_error(hex: &str) -> (u16, Option<String>) {
        let text = String::from_utf8(hex::decode(hex).unwrap()).unwrap();
        let status = text.split(' ').nth(1).unwrap().parse().unwrap();
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        let error = serde_json::from_str::<Value>(body).ok().and_then(|b| b["error"].as_str().map(str::to_owned));
        (status, error)
    }

    #[test]
    fn the_injected_now_judges_a_deliverys_age() {
        let guard = ReplayGuard::default();
        let props = json!({"webhook_secret": DEMO_SECRET});
        // Signed now by the injected clock: fresh, whatever the system clock says.
        let fresh = dispatch(&guard, NOW, DEMO_SECRET, NOW, "wh_fresh", props.clone());
        assert_eq!((fresh.status, fresh.events), (200, vec!["batch_completed".to_owned(), "any_event".to_owned()]));
        // The same signing time, judged an hour later, or an hour earlier.
        let stale = dispatch(&guard, NOW + 3600, DEMO_SECRET, NOW, "wh_stale", props.clone());
        assert_eq!((stale.status, stale.error.as_deref()), (401, Some("timestamp_too_old")));
        assert!(stale.events.is_empty());
        let early = dispatch(&guard, NOW - 3600, DEMO_SECRET, NOW, "wh_early", props);
        assert_eq!((early.status, early.error.as_deref()), (401, Some("timestamp_too_new")));
    }

    #[test]
    fn a_rotations_old_secret_stops_verifying_when_the_injected_now_passes_its_expiry() {
        let guard = ReplayGuard::default();
        let expiry = NOW + 600;
        let props = json!({
            "webhook_secret": format!("{DEMO_SECRET} {OLD_SECRET}"),
            "endpoint_id": "whe_1",
            "subscribed_event_types": "batch.completed",
            "secret_created_at": NOW - 86_000,
            "previous_secret_expires_at": expiry,
        });
        let before = dispatch(&guard, expiry - 1, OLD_SECRET, expiry - 1, "wh_old_1", props.clone());
        assert_eq!(before.status, 200, "the old secret verifies during the overlap");
        let after = dispatch(&guard, expiry, OLD_SECRET, expiry, "wh_old_2", props.clone());
        assert_eq!((after.status, after.error.as_deref()), (401, Some("no_matching_signature")));
        let current = dispatch(&guard, expiry, DEMO_SECRET, expiry, "wh_new", props);
        assert_eq!(current.status, 200, "the current secret goes on verifying");
    }

    #[test]
    fn a_wrongly_typed_secret_is_no_secret_configured() {
        let guard = ReplayGuard::default();
        for wrong in [json!(12345), json!(true), json!([DEMO_SECRET]), Value::Null] {
            let answer = dispatch(&guard, NOW, DEMO_SECRET, NOW, "wh_typed", json!({"webhook_secret": wrong}));
            assert_eq!((answer.status, answer.error.as_deref()), (401, Some("no_secret_configured")), "{wrong}");
        }
    }

    #[test]
    fn a_non_string_endpoint_id_still_makes_a_constructor_subscription() {
        // As before the typed properties: the key being there is what counts, so the stored types
        // filter and the old secret expires.
        let guard = ReplayGuard::default();
        for (n, wrong) in [json!(7), Value::Null, json!({"id": "whe_1"})].into_iter().enumerate() {
            let filtered = json!({
                "webhook_secret": DEMO_SECRET,
                "endpoint_id": wrong,
                "subscribed_event_types": "response.completed",
            });
            let answer = dispatch(&guard, NOW, DEMO_SECRET, NOW, &format!("wh_filtered_{n}"), filtered);
            assert_eq!((answer.status, answer.events.len()), (200, 0), "{wrong}: not subscribed, ignored");
            let rotated = json!({
                "webhook_secret": format!("{DEMO_SECRET} {OLD_SECRET}"),
                "endpoint_id": wrong,
                "previous_secret_expires_at": NOW,
            });
            let answer = dispatch(&guard, NOW, OLD_SECRET, NOW, &format!("wh_rotated_{n}"), rotated);
            assert_eq!(answer.status, 401, "{wrong}: the old secret expired");
        }
        // Without the key, a manual subscription: every type, every secret.
        let manual = json!({"webhook_secret": DEMO_SECRET, "subscribed_event_types": "response.completed"});
        assert_eq!(dispatch(&guard, NOW, DEMO_SECRET, NOW, "wh_manual", manual).events.len(), 2);
    }

    #[test]
    fn numeric_strings_are_times_too() {
        let guard = ReplayGuard::default();
        let props = json!({
            "webhook_secret": format!("{DEMO_SECRET} {OLD_SECRET}"),
            "endpoint_id": "whe_1",
            "previous_secret_expires_at": format!(" {NOW} "),
        });
        assert_eq!(dispatch(&guard, NOW - 1, OLD_SECRET, NOW - 1, "wh_str_1", props.clone()).status, 200);
        assert_eq!(dispatch(&guard, NOW, OLD_SECRET, NOW, "wh_str_2", props).status, 401);
    }
}
