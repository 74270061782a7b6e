//! The provider in process, on an injected clock: an API-key subscription's life (subscribe,
//! refresh, rotation, the old secret's day of overlap, its expiry) and the deliveries it verifies,
//! days apart in a few milliseconds, against the mock OpenAI API on loopback. Every time the
//! provider decides by is the clock's, so the answers are checked to the second.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use dify_plugin::Request;
use openai_mock::{MockOpenAi, VALID_KEY, ids};
use openai_trigger::provider::{Clock, OpenAiTrigger};
use serde_json::{Value, json};

use crate::support::*;

/// 2030-03-17 17:46:40 UTC: far from the system clock, so nothing passes by reading it.
const T0: i64 = 1_900_000_000;
const DAY: i64 = 86_400;

/// The provider with a clock the test moves.
struct Provider {
    trigger: OpenAiTrigger,
    now: Arc<AtomicI64>,
    runtime: tokio::runtime::Runtime,
}

impl Provider {
    fn new() -> Provider {
        let now = Arc::new(AtomicI64::new(T0));
        let read = now.clone();
        let clock: Clock = Arc::new(move || read.load(Ordering::SeqCst));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Provider { trigger: OpenAiTrigger::new(clock), now, runtime }
    }

    fn set_now(&self, now: i64) {
        self.now.store(now, Ordering::SeqCst);
    }

    fn call(&self, data: &Value) -> Result<Value, String> {
        let request = Request::from_data(data);
        let answer = self.runtime.block_on(self.trigger.handle_request(&request));
        answer.map(|raw| serde_json::from_str(raw.get()).unwrap()).map_err(|err| err.to_string())
    }

    /// What the daemon stores from an answer: the subscription object.
    fn stored(&self, data: &Value) -> Value {
        let answer = self.call(data).unwrap_or_else(|err| panic!("{}: {err}", data["action"]));
        answer["subscription"].clone()
    }

    /// The HTTP status dispatch answers a delivery signed with `secret` at the clock's now.
    fn deliver(&self, subscription: &Value, secret: &str, webhook_id: &str) -> (u16, Vec<String>) {
        let now = self.now.load(Ordering::SeqCst);
        let body =
            event_body("batch.completed", &format!("evt_{webhook_id}"), now, &json!({"id": ids::BATCH_COMPLETED}));
        let raw = RawRequest::signed(secret, webhook_id, now, body);
        let mut data = dispatch_data(&raw.bytes(), secret, ENDPOINT);
        data["subscription"] = subscription.clone();
        let answer = self.call(&data).unwrap();
        let http = HttpAnswer::decode(answer["response"].as_str().unwrap());
        let events = answer["events"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_owned()).collect();
        (http.status, events)
    }
}

fn action(name: &str, mock: &MockOpenAi) -> Value {
    json!({
        "action": name, "type": "trigger", "user_id": "acct-1", "provider": PROVIDER,
        "credentials": {"api_key": VALID_KEY, "base_url": mock.base_url()}, "credential_type": "api-key",
    })
}

fn with_subscription(name: &str, mock: &MockOpenAi, subscription: &Value) -> Value {
    let mut data = action(name, mock);
    data["subscription"] = subscription.clone();
    data
}

fn property(subscription: &Value, name: &str) -> Value {
    subscription["properties"][name].clone()
}

fn secrets(subscription: &Value) -> Vec<String> {
    property(subscription, "webhook_secret").as_str().unwrap().split(' ').map(str::to_owned).collect()
}

#[test]
fn a_subscriptions_life_runs_on_the_injected_clock() {
    let mock = MockOpenAi::start().unwrap();
    let provider = Provider::new();

    // Subscribe at T0, rotating every 7 days.
    let mut subscribe = action("subscribe_trigger", &mock);
    subscribe["endpoint"] = json!(ENDPOINT);
    subscribe["parameters"] = json!({"events": ["batch.completed"], "rotate_secret_days": 7});
    let subscribed = provider.stored(&subscribe);
    assert_eq!(property(&subscribed, "secret_created_at"), T0);
    assert_eq!(property(&subscribed, "previous_secret_expires_at"), 0);
    assert_eq!(subscribed["expires_at"], T0 + DAY, "refresh runs a day later");
    let [first] = secrets(&subscribed).try_into().unwrap();
    assert_eq!(
        provider.deliver(&subscribed, &first, "wh_t0"),
        (200, vec!["batch_completed".into(), "any_event".into()])
    );

    // A day on: checked, not rotated, next check a day later again.
    provider.set_now(T0 + DAY);
    let checked = provider.stored(&with_subscription("refresh_trigger", &mock, &subscribed));
    assert_eq!(secrets(&checked), std::slice::from_ref(&first));
    assert_eq!(checked["expires_at"], T0 + 2 * DAY);

    // Six days on, the next check is the rotation's due time, not a day later.
    provider.set_now(T0 + 6 * DAY + 3_600);
    let before_due = provider.stored(&with_subscription("refresh_trigger", &mock, &checked));
    assert_eq!(secrets(&before_due), std::slice::from_ref(&first));
    assert_eq!(before_due["expires_at"], T0 + 7 * DAY);

    // Due: a new secret, the old one kept for exactly 24 h from now.
    let rotated_at = T0 + 7 * DAY;
    provider.set_now(rotated_at);
    let rotated = provider.stored(&with_subscription("refresh_trigger", &mock, &before_due));
    let [second, old] = secrets(&rotated).try_into().unwrap();
    assert_eq!(old, first);
    assert_ne!(second, first);
    assert_eq!(property(&rotated, "secret_created_at"), rotated_at);
    assert_eq!(property(&rotated, "previous_secret_expires_at"), rotated_at + DAY);
    assert_eq!(rotated["expires_at"], rotated_at + DAY, "the next check is the old secret's expiry");

    // During the overlap both secrets verify; one second before its expiry the old one still does.
    provider.set_now(rotated_at + DAY - 1);
    assert_eq!(provider.deliver(&rotated, &first, "wh_old_in_overlap").0, 200);
    assert_eq!(provider.deliver(&rotated, &second, "wh_new_in_overlap").0, 200);

    // At its expiry the old secret stops verifying, even before refresh drops it…
    provider.set_now(rotated_at + DAY);
    assert_eq!(provider.deliver(&rotated, &first, "wh_old_expired").0, 401);
    assert_eq!(provider.deliver(&rotated, &second, "wh_new_after").0, 200);
    // …and refresh drops it.
    let cleaned = provider.stored(&with_subscription("refresh_trigger", &mock, &rotated));
    assert_eq!(secrets(&cleaned), [second]);
    assert_eq!(property(&cleaned, "previous_secret_expires_at"), 0);
    assert_eq!(cleaned["expires_at"], rotated_at + 2 * DAY);
}

#[test]
fn deliveries_are_judged_by_the_injected_clock_and_remembered_for_72_hours() {
    let provider = Provider::new();
    let subscription = subscription(SECRET, ENDPOINT);
    assert_eq!(provider.deliver(&subscription, SECRET, "wh_replayed").0, 200);
    // The same webhook-id, signed again, an hour and then 71 hours later: a duplicate (200, no event).
    for later in [3_600, 71 * 3_600] {
        provider.set_now(T0 + later);
        assert_eq!(provider.deliver(&subscription, SECRET, "wh_replayed"), (200, vec![]), "{later} s later");
    }
    // Past OpenAI's 72-hour retry horizon the memory has let it go: it fires again.
    provider.set_now(T0 + 72 * 3_600 + 1);
    assert_eq!(provider.deliver(&subscription, SECRET, "wh_replayed").0, 200);
    let fired_again = provider.deliver(&subscription, SECRET, "wh_other");
    assert_eq!(fired_again.1, ["batch_completed", "any_event"]);
}

#[test]
fn invoke_enriches_in_process_through_the_same_client() {
    let mock = MockOpenAi::start().unwrap();
    let provider = Provider::new();
    let body = event_body("response.completed", "evt_enrich", T0, &json!({"id": ids::RESPONSE_COMPLETED}));
    let event: Value = serde_json::from_str(&body).unwrap();
    let payload = json!({"webhook_id": "wh_enrich", "webhook_timestamp": T0, "event": event});
    let mut data = invoke_data("response_completed", b"", &payload, &json!({}));
    data["credentials"] = json!({"api_key": VALID_KEY, "base_url": mock.base_url()});
    data["credential_type"] = json!("api-key");
    let answer = provider.call(&data).unwrap();
    let variables = &answer["variables"];
    assert_eq!(answer["cancelled"], false);
    assert_eq!((variables["details_fetched"].clone(), variables["details_error"].clone()), (json!(true), json!("")));
    assert_eq!(variables["output_text"], "The capital of France is Paris.\nAnything else?");
    assert_eq!(variables["webhook_timestamp"], T0);
    let calls: Vec<String> = mock.requests().iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    assert_eq!(calls, [format!("GET /v1/responses/{}", ids::RESPONSE_COMPLETED)]);
}
