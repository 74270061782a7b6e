//! API-key subscriptions and enriched events against the mock OpenAI API on 127.0.0.1
//! (`crates/openai-mock`): what the plugin sends (method, path, query, headers, body) and what it
//! makes of every answer, including OpenAI's errors, rate limits, slow and malformed answers.

use std::time::{Duration, Instant};

use openai_mock::{ADMIN_KEY, Fault, MockOpenAi, READ_ONLY_KEY, Recorded, VALID_KEY, ids};
use serde_json::{Map, Value, json};

use crate::support::*;

fn mock() -> MockOpenAi {
    MockOpenAi::start().expect("start the mock OpenAI API")
}

fn credentials(mock: &MockOpenAi) -> Value {
    json!({"api_key": VALID_KEY, "base_url": mock.base_url()})
}

fn action(name: &str) -> Value {
    json!({"action": name, "type": "trigger", "user_id": "acct-1", "provider": PROVIDER})
}

fn validate(plugin: &mut Plugin, credentials: Value) -> Result<Value, Value> {
    let mut data = action("validate_trigger_credentials");
    data["credentials"] = credentials;
    plugin.call(&data)
}

fn subscribe(plugin: &mut Plugin, credentials: &Value, endpoint: &str, parameters: Value) -> Result<Value, Value> {
    let mut data = action("subscribe_trigger");
    data["endpoint"] = json!(endpoint);
    data["parameters"] = parameters;
    data["credentials"] = credentials.clone();
    data["credential_type"] = json!("api-key");
    plugin.call(&data)
}

/// The subscription object Dify would store from a subscribe answer.
fn stored(answer: &Value) -> Value {
    let mut subscription = answer["subscription"].clone();
    assert!(subscription.is_object(), "{answer}");
    subscription["expires_at"] = json!(unix_now() - 1);
    subscription
}

fn stored_action(plugin: &mut Plugin, name: &str, subscription: &Value, credentials: &Value) -> Value {
    let mut data = action(name);
    data["subscription"] = subscription.clone();
    data["credentials"] = credentials.clone();
    data["credential_type"] = json!("api-key");
    plugin.call(&data).unwrap_or_else(|error| panic!("{name} answered an error: {error}"))
}

/// Requests to the API (not the admin routes), as method + path.
fn calls(requests: &[Recorded]) -> Vec<String> {
    requests.iter().map(|r| format!("{} {}", r.method, r.path)).collect()
}

fn properties(answer: &Value) -> &Map<String, Value> {
    answer["subscription"]["properties"].as_object().expect("properties is an object")
}

fn secret_of(answer: &Value) -> String {
    properties(answer)["webhook_secret"].as_str().unwrap().to_owned()
}

fn assert_about(value: &Value, want: i64) {
    let got = value.as_i64().unwrap_or_else(|| panic!("{value} is not a whole number"));
    assert!((got - want).abs() <= 120, "{got} is not about {want}");
}

/// A verified delivery of `openai_type` to a subscription, as dispatch answers it.
fn deliver(plugin: &mut Plugin, subscription: &Value, secret: &str, openai_type: &str, id: &str) -> Dispatched {
    let body = event_body(openai_type, &format!("evt_{id}"), unix_now(), &json!({"id": "obj_1"}));
    let raw = RawRequest::signed(secret, id, unix_now(), body);
    let mut data = dispatch_data(&raw.bytes(), secret, ENDPOINT);
    data["subscription"] = subscription.clone();
    plugin.dispatch_data(&data)
}

fn no_key_anywhere(text: &str) {
    for fragment in [VALID_KEY, READ_ONLY_KEY, "sk-tes", "mock-full", "0123456789abcdef"] {
        assert!(!text.contains(fragment), "{fragment:?} leaked into {text}");
    }
}

// ---------------------------------------------------------------------------------------------
// validate_trigger_credentials

#[test]
fn validate_makes_one_cheap_call_with_the_key_and_headers() {
    let mock = mock();
    let mut plugin = Plugin::start();
    let mut with_headers = credentials(&mock);
    with_headers["organization"] = json!(openai_mock::ORGANIZATION);
    with_headers["project"] = json!(openai_mock::PROJECT);
    assert_eq!(validate(&mut plugin, with_headers).unwrap(), json!({"result": true}));
    let requests = mock.requests();
    assert_eq!(calls(&requests), ["GET /v1/webhook_endpoints"]);
    let request = &requests[0];
    assert_eq!(request.query, "limit=1");
    assert_eq!(request.header("authorization"), Some(format!("Bearer {VALID_KEY}").as_str()));
    assert_eq!(request.header("openai-organization"), Some(openai_mock::ORGANIZATION));
    assert_eq!(request.header("openai-project"), Some(openai_mock::PROJECT));
    assert!(request.header("user-agent").unwrap().starts_with("openai-trigger/"));
    assert_eq!(request.body, "");
    // Without the optional fields, no such headers.
    assert_eq!(validate(&mut plugin, credentials(&mock)).unwrap(), json!({"result": true}));
    let second = &mock.requests()[1];
    assert_eq!((second.header("openai-organization"), second.header("openai-project")), (None, None));
}

#[test]
fn validate_relays_openai_refusals_with_the_key_masked() {
    let mock = mock();
    let mut plugin = Plugin::start();
    let wrong = json!({"api_key": "sk-test-wrong-key-0123456789abcdef", "base_url": mock.base_url()});
    let error = validate(&mut plugin, wrong).unwrap_err();
    assert_eq!(error["error_type"], "TriggerProviderCredentialValidationError");
    let message = error["message"].as_str().unwrap();
    assert!(message.starts_with("OpenAI refused this API key: Incorrect API key provided: sk-…"), "{message}");
    assert!(message.contains("(401)"), "{message}");
    no_key_anywhere(message);

    let mut other_org = credentials(&mock);
    other_org["organization"] = json!("org-someone-else");
    let error = validate(&mut plugin, other_org).unwrap_err();
    assert!(error["message"].as_str().unwrap().contains("OpenAI-Organization header should match"), "{error}");
    no_key_anywhere(&plugin.stderr());
}

#[test]
fn validate_says_plainly_when_openai_cannot_be_reached_or_is_slow() {
    let mock = mock();
    let mut plugin = Plugin::start_with(&[("OPENAI_TRIGGER_API_TIMEOUT", "2")]);
    // Nothing listens on port 9 of loopback.
    let error = validate(&mut plugin, json!({"api_key": VALID_KEY, "base_url": "http://127.0.0.1:9/v1"})).unwrap_err();
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("could not check the key: could not reach OpenAI at http://127.0.0.1:9/v1"),
        "{message}"
    );

    mock.add_fault(Fault { path_prefix: "/v1/webhook_endpoints".into(), delay_ms: 5_000, ..Fault::default() });
    let error = validate(&mut plugin, credentials(&mock)).unwrap_err();
    assert_eq!(error["message"], "could not check the key: no answer from OpenAI within 2 s", "{error}");
    // The budget bounds the call: the one attempt used it up, none followed.
    assert_eq!(calls(&mock.requests()), ["GET /v1/webhook_endpoints"], "one attempt, no retry past the budget");

    mock.clear_faults();
    mock.add_fault(Fault { path_prefix: "/v1/webhook_endpoints".into(), malformed: true, ..Fault::default() });
    let error = validate(&mut plugin, credentials(&mock)).unwrap_err();
    assert!(error["message"].as_str().unwrap().contains("malformed"), "{error}");
}

#[test]
fn validate_refuses_unsafe_base_urls_without_sending_the_key() {
    let mock = mock();
    let mut plugin = Plugin::start();
    for (base_url, expected) in [
        ("http://api.example.com/v1", "base_url must be https://"),
        ("https://user:pass@api.example.com/v1", "user name, password"),
        ("not a url", "base_url is not an https:// URL"),
    ] {
        let error = validate(&mut plugin, json!({"api_key": VALID_KEY, "base_url": base_url})).unwrap_err();
        assert!(error["message"].as_str().unwrap().contains(expected), "{base_url}: {error}");
    }
    assert!(mock.requests().is_empty());
}

// ---------------------------------------------------------------------------------------------
// subscribe_trigger

#[test]
fn subscribe_creates_the_endpoint_and_dispatch_verifies_with_its_secret() {
    let mock = mock();
    let mut plugin = Plugin::start();
    let parameters = json!({"events": ["batch.completed", "response_completed"], "rotate_secret_days": 0});
    let answer = subscribe(&mut plugin, &credentials(&mock), ENDPOINT, parameters).unwrap();

    let requests = mock.requests();
    assert_eq!(calls(&requests), ["GET /v1/webhook_endpoints", "POST /v1/webhook_endpoints"]);
    assert_eq!(requests[0].query, "limit=100", "looks for an endpoint already delivering to the URL");
    let create = &requests[1];
    assert_eq!(create.header("content-type"), Some("application/json"));
    assert_eq!(
        create.json(),
        json!({
            "name": "Dify dify.test · subscription 5b0e7a52-4f0c-4d7e-9a43-2f6d1c8b9e10",
            "url": ENDPOINT,
            "event_types": ["batch.completed", "response.completed"],
        })
    );

    let endpoints = mock.endpoints();
    assert_eq!(endpoints.len(), 1);
    let subscription = &answer["subscription"];
    assert_eq!(subscription["endpoint"], ENDPOINT);
    assert_eq!(
        subscription["parameters"],
        json!({"events": ["batch.completed", "response.completed"], "rotate_secret_days": 0})
    );
    assert_about(&subscription["expires_at"], unix_now() + 86_400);
    let props = properties(&answer);
    assert_eq!(props["webhook_secret"], endpoints[0]["signing_secret"]);
    assert_eq!(props["endpoint_id"], endpoints[0]["id"]);
    assert_eq!(props["subscribed_event_types"], "batch.completed,response.completed");
    assert_about(&props["secret_created_at"], unix_now());
    assert_eq!(props["previous_secret_expires_at"], 0);

    // Dispatch verifies with the stored secret and fires only the subscribed types.
    let stored = stored(&answer);
    let secret = secret_of(&answer);
    let fired = deliver(&mut plugin, &stored, &secret, "batch.completed", "wh_sub_1");
    assert_eq!((fired.http.status, fired.events.clone()), (200, vec!["batch_completed".into(), "any_event".into()]));
    let ignored = deliver(&mut plugin, &stored, &secret, "fine_tuning.job.succeeded", "wh_sub_2");
    assert_eq!(ignored.http.status, 200);
    assert!(ignored.events.is_empty());
    assert_eq!(ignored.http.json(), json!({"status": "ignored", "reason": "event type not subscribed"}));
    // A manual subscription with the same secret fires every type.
    let manual = deliver(&mut plugin, &subscription_value(&secret), &secret, "fine_tuning.job.succeeded", "wh_sub_3");
    assert_eq!(manual.events, ["fine_tuning_job_succeeded", "any_event"]);
    no_key_anywhere(&answer.to_string());
    no_key_anywhere(&plugin.stderr());
}

fn subscription_value(secret: &str) -> Value {
    subscription(secret, ENDPOINT)
}

#[test]
fn subscribe_without_types_takes_what_the_project_offers_or_the_built_in_list() {
    let mock = mock();
    let mut plugin = Plugin::start();
    let answer = subscribe(&mut plugin, &credentials(&mock), ENDPOINT, json!({})).unwrap();
    assert_eq!(answer["subscription"]["parameters"], json!({"events": [], "rotate_secret_days": 0}));
    let requests = mock.requests();
    assert!(calls(&requests).contains(&"GET /v1/webhook_event_types".to_owned()), "{:?}", calls(&requests));
    let created = requests.iter().find(|r| r.method == "POST").unwrap().json();
    // What the project offers, less the types of the APIs OpenAI shut down (Evals, Videos).
    let offered: Vec<&str> = openai_mock::SUBSCRIBABLE_TYPES
        .iter()
        .copied()
        .filter(|t| !t.starts_with("eval.run.") && !t.starts_with("video."))
        .collect();
    assert_eq!(offered.len(), 24);
    assert_eq!(created["event_types"], json!(offered));

    // GET /webhook_event_types failing: the built-in list (the same 29 types, less the same 5).
    let other = MockOpenAi::start().unwrap();
    other.add_fault(Fault { path_prefix: "/v1/webhook_event_types".into(), status: Some(404), ..Fault::default() });
    subscribe(&mut plugin, &credentials(&other), ENDPOINT, json!({"events": []})).unwrap();
    let created = other.requests().into_iter().find(|r| r.method == "POST").unwrap().json();
    let mut types: Vec<String> =
        created["event_types"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect();
    let mut want: Vec<String> = offered.iter().map(|t| (*t).to_owned()).collect();
    types.sort();
    want.sort();
    assert_eq!(types, want);

    // Asked for by name, a shut-down type is subscribed all the same.
    subscribe(&mut plugin, &credentials(&other), ENDPOINT, json!({"events": ["eval.run.failed", "batch.failed"]}))
        .unwrap();
    // (The endpoint for this URL exists: it is updated with the types, then its secret rotated.)
    let updated = other.requests().into_iter().rev().find(|r| r.method == "POST" && r.json()["event_types"].is_array());
    assert_eq!(updated.unwrap().json()["event_types"], json!(["eval.run.failed", "batch.failed"]));
}

#[test]
fn subscribe_refuses_what_openai_cannot_deliver_to_before_calling_it() {
    let mock = mock();
    let mut plugin = Plugin::start();
    for endpoint in ["http://localhost/triggers/plugin/5b0e7a52", "https://192.168.1.4/triggers/plugin/5b0e7a52"] {
        let error = subscribe(&mut plugin, &credentials(&mock), endpoint, json!({})).unwrap_err();
        assert_eq!(error["error_type"], "SubscriptionError");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("TRIGGER_URL") && message.contains(endpoint), "{message}");
    }
    let error =
        subscribe(&mut plugin, &credentials(&mock), ENDPOINT, json!({"events": ["live.call.incoming"]})).unwrap_err();
    assert!(error["message"].as_str().unwrap().contains("manual subscription"), "{error}");
    assert!(mock.requests().is_empty(), "nothing reached OpenAI: {:?}", calls(&mock.requests()));
}

#[test]
fn subscribe_relays_openai_errors() {
    let mock = mock();
    let mut plugin = Plugin::start();
    let read_only = json!({"api_key": READ_ONLY_KEY, "base_url": mock.base_url()});
    let error = subscribe(&mut plugin, &read_only, ENDPOINT, json!({"events": ["batch.completed"]})).unwrap_err();
    assert_eq!(error["error_type"], "SubscriptionError");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("OpenAI refused to create the webhook endpoint: You have insufficient permissions"),
        "{message}"
    );
    assert!(message.contains("api.webhooks.write") && message.contains("(401)"), "{message}");
    no_key_anywhere(message);
    let error =
        subscribe(&mut plugin, &credentials(&mock), ENDPOINT, json!({"events": ["batch.exploded"]})).unwrap_err();
    assert!(error["message"].as_str().unwrap().contains("Invalid event type: 'batch.exploded'"), "{error}");
    assert!(mock.endpoints().is_empty());
}

#[test]
fn subscribing_the_same_callback_again_adopts_its_endpoint() {
    let mock = mock();
    let mut plugin = Plugin::start();
    let first = subscribe(&mut plugin, &credentials(&mock), ENDPOINT, json!({"events": ["batch.completed"]})).unwrap();
    mock.clear_requests();
    let second = subscribe(&mut plugin, &credentials(&mock), ENDPOINT, json!({"events": ["batch.failed"]})).unwrap();
    let endpoints = mock.endpoints();
    assert_eq!(endpoints.len(), 1, "no second endpoint for the same URL");
    let id = endpoints[0]["id"].as_str().unwrap();
    assert_eq!(
        calls(&mock.requests()),
        [
            "GET /v1/webhook_endpoints".to_owned(),
            format!("POST /v1/webhook_endpoints/{id}"),
            format!("POST /v1/webhook_endpoints/{id}/rotate_secret"),
        ]
    );
    assert_eq!(mock.requests()[2].json(), json!({"keep_old_secret_active_for_24_hours": false}));
    assert_eq!(endpoints[0]["event_types"], json!(["batch.failed"]));
    assert_ne!(secret_of(&first), secret_of(&second));
    assert_eq!(secret_of(&second), endpoints[0]["signing_secret"].as_str().unwrap());
}

// ---------------------------------------------------------------------------------------------
// unsubscribe_trigger

#[test]
fn unsubscribe_deletes_the_endpoint_and_already_gone_is_success() {
    let mock = mock();
    let mut plugin = Plugin::start();
    let creds = credentials(&mock);
    let answer = subscribe(&mut plugin, &creds, ENDPOINT, json!({})).unwrap();
    let id = properties(&answer)["endpoint_id"].as_str().unwrap().to_owned();
    let subscription = stored(&answer);
    mock.clear_requests();

    let result = stored_action(&mut plugin, "unsubscribe_trigger", &subscription, &creds);
    assert_eq!(
        result,
        json!({"subscription": {"success": true, "message": format!("deleted OpenAI webhook endpoint {id}")}})
    );
    assert_eq!(calls(&mock.requests()), [format!("DELETE /v1/webhook_endpoints/{id}")]);
    assert!(mock.endpoints().is_empty());

    let again = stored_action(&mut plugin, "unsubscribe_trigger", &subscription, &creds);
    assert_eq!(again["subscription"]["success"], true);
    assert_eq!(again["subscription"]["message"], format!("OpenAI webhook endpoint {id} was already deleted"));

    mock.add_fault(Fault { path_prefix: "/v1/webhook_endpoints/".into(), status: Some(400), ..Fault::default() });
    let refused = stored_action(&mut plugin, "unsubscribe_trigger", &subscription, &creds);
    assert_eq!(refused["subscription"]["success"], false);
    assert!(refused["subscription"]["message"].as_str().unwrap().contains("(400)"), "{refused}");
}

// ---------------------------------------------------------------------------------------------
// refresh_trigger

#[test]
fn refresh_leaves_a_healthy_endpoint_alone_and_puts_back_what_changed() {
    let mock = mock();
    let mut plugin = Plugin::start();
    let creds = credentials(&mock);
    let answer =
        subscribe(&mut plugin, &creds, ENDPOINT, json!({"events": ["batch.completed", "batch.failed"]})).unwrap();
    let id = properties(&answer)["endpoint_id"].as_str().unwrap().to_owned();
    let subscription = stored(&answer);
    mock.clear_requests();

    let healthy = stored_action(&mut plugin, "refresh_trigger", &subscription, &creds);
    assert_eq!(calls(&mock.requests()), [format!("GET /v1/webhook_endpoints/{id}")]);
    assert_eq!(healthy["subscription"]["properties"], subscription["properties"]);
    assert_eq!(healthy["subscription"]["parameters"], subscription["parameters"]);
    assert_eq!(healthy["subscription"]["endpoint"], ENDPOINT);
    assert_about(&healthy["subscription"]["expires_at"], unix_now() + 86_400);

    // Someone changed the URL and the types in OpenAI's dashboard.
    assert!(mock.tamper(&id, Some("https://elsewhere.example.com/hook"), Some(&["response.completed"])));
    mock.clear_requests();
    let repaired = stored_action(&mut plugin, "refresh_trigger", &subscription, &creds);
    let requests = mock.requests();
    assert_eq!(
        calls(&requests),
        [format!("GET /v1/webhook_endpoints/{id}"), format!("POST /v1/webhook_endpoints/{id}")]
    );
    assert_eq!(requests[1].json(), json!({"url": ENDPOINT, "event_types": ["batch.completed", "batch.failed"]}));
    let endpoint = &mock.endpoints()[0];
    assert_eq!(
        (endpoint["url"].as_str(), endpoint["event_types"].clone()),
        (Some(ENDPOINT), json!(["batch.completed", "batch.failed"]))
    );
    assert_eq!(repaired["subscription"]["properties"], subscription["properties"], "same endpoint, same secret");
}

#[test]
fn refresh_creates_a_deleted_endpoint_again_with_a_new_secret() {
    let mock = mock();
    let mut plugin = Plugin::start();
    let creds = credentials(&mock);
    let answer = subscribe(&mut plugin, &creds, ENDPOINT, json!({"events": ["batch.completed"]})).unwrap();
    let old_id = properties(&answer)["endpoint_id"].as_str().unwrap().to_owned();
    let old_secret = secret_of(&answer);
    assert!(mock.remove_endpoint(&old_id));
    mock.clear_requests();

    let refreshed = stored_action(&mut plugin, "refresh_trigger", &stored(&answer), &creds);
    let requests = mock.requests();
    assert_eq!(
        calls(&requests),
        [
            format!("GET /v1/webhook_endpoints/{old_id}"),
            "GET /v1/webhook_endpoints".to_owned(),
            "POST /v1/webhook_endpoints".to_owned()
        ]
    );
    assert_eq!(requests[2].json()["event_types"], json!(["batch.completed"]));
    let props = refreshed["subscription"]["properties"].as_object().unwrap();
    let endpoint = &mock.endpoints()[0];
    assert_eq!(props["endpoint_id"], endpoint["id"]);
    assert_ne!(props["endpoint_id"].as_str(), Some(old_id.as_str()));
    assert_eq!(props["webhook_secret"], endpoint["signing_secret"]);
    assert_about(&refreshed["subscription"]["expires_at"], unix_now() + 86_400);

    // Deliveries signed with the new secret verify; the old secret no longer does.
    let new_subscription = stored(&refreshed);
    let new_secret = props["webhook_secret"].as_str().unwrap();
    let fired = deliver(&mut plugin, &new_subscription, new_secret, "batch.completed", "wh_new_1");
    assert_eq!(fired.events, ["batch_completed", "any_event"]);
    let old = deliver(&mut plugin, &new_subscription, &old_secret, "batch.completed", "wh_old_1");
    assert_eq!(old.http.status, 401);
}

#[test]
fn refresh_never_fails_a_subscription_for_a_passing_fault() {
    let mock = mock();
    let mut plugin = Plugin::start();
    let creds = credentials(&mock);
    let answer = subscribe(&mut plugin, &creds, ENDPOINT, json!({})).unwrap();
    let subscription = stored(&answer);
    mock.clear_requests();
    // 503 on every attempt, with Retry-After 0 so the retries do not wait.
    mock.add_fault(Fault {
        path_prefix: "/v1/webhook_endpoints/".into(),
        status: Some(503),
        retry_after: Some("0".into()),
        ..Fault::default()
    });
    let postponed = stored_action(&mut plugin, "refresh_trigger", &subscription, &creds);
    assert_eq!(mock.requests().len(), 4, "a GET is retried: {:?}", calls(&mock.requests()));
    assert_eq!(postponed["subscription"]["properties"], subscription["properties"]);
    assert_about(&postponed["subscription"]["expires_at"], unix_now() + 3600);

    // Network down, and a key OpenAI no longer accepts: the same.
    let down = json!({"api_key": VALID_KEY, "base_url": "http://127.0.0.1:9/v1"});
    let postponed = stored_action(&mut plugin, "refresh_trigger", &subscription, &down);
    assert_about(&postponed["subscription"]["expires_at"], unix_now() + 3600);
    mock.clear_faults();
    let revoked = json!({"api_key": "sk-revoked-0000", "base_url": mock.base_url()});
    let postponed = stored_action(&mut plugin, "refresh_trigger", &subscription, &revoked);
    assert_eq!(postponed["subscription"]["properties"], subscription["properties"]);
    assert_about(&postponed["subscription"]["expires_at"], unix_now() + 3600);
    assert!(mock.endpoints().len() == 1, "nothing was created or deleted");
    no_key_anywhere(&plugin.stderr());
}

#[test]
fn refresh_rotates_the_secret_when_due_and_keeps_the_old_one_for_a_day() {
    let mock = mock();
    let mut plugin = Plugin::start();
    let creds = credentials(&mock);
    let answer =
        subscribe(&mut plugin, &creds, ENDPOINT, json!({"events": ["batch.completed"], "rotate_secret_days": 7}))
            .unwrap();
    assert_eq!(answer["subscription"]["parameters"]["rotate_secret_days"], 7);
    let id = properties(&answer)["endpoint_id"].as_str().unwrap().to_owned();
    let old_secret = secret_of(&answer);

    // Not due yet: nothing rotates.
    let mut subscription = stored(&answer);
    mock.clear_requests();
    stored_action(&mut plugin, "refresh_trigger", &subscription, &creds);
    assert_eq!(calls(&mock.requests()), [format!("GET /v1/webhook_endpoints/{id}")]);

    // Eight days later.
    subscription["properties"]["secret_created_at"] = json!(unix_now() - 8 * 86_400);
    mock.clear_requests();
    let rotated = stored_action(&mut plugin, "refresh_trigger", &subscription, &creds);
    let requests = mock.requests();
    assert_eq!(
        calls(&requests),
        [format!("GET /v1/webhook_endpoints/{id}"), format!("POST /v1/webhook_endpoints/{id}/rotate_secret")]
    );
    assert_eq!(requests[1].json(), json!({"keep_old_secret_active_for_24_hours": true}));
    let endpoint = &mock.endpoints()[0];
    let new_secret = endpoint["signing_secret"].as_str().unwrap().to_owned();
    assert_eq!(endpoint["old_secret"], old_secret.as_str());
    let props = rotated["subscription"]["properties"].as_object().unwrap();
    assert_eq!(props["webhook_secret"], format!("{new_secret} {old_secret}"));
    assert_about(&props["previous_secret_expires_at"], unix_now() + 86_400);
    assert_about(&props["secret_created_at"], unix_now());
    assert!(rotated["subscription"]["expires_at"].as_i64() <= props["previous_secret_expires_at"].as_i64());

    // During the overlap, deliveries signed with either secret verify.
    let overlap = stored(&rotated);
    for (secret, id) in [(&new_secret, "wh_rot_new"), (&old_secret, "wh_rot_old")] {
        let fired = deliver(&mut plugin, &overlap, secret, "batch.completed", id);
        assert_eq!(fired.http.status, 200, "{id}");
    }

    // A day later the old secret is dropped.
    let mut later = overlap.clone();
    later["properties"]["previous_secret_expires_at"] = json!(unix_now() - 1);
    let cleaned = stored_action(&mut plugin, "refresh_trigger", &later, &creds);
    assert_eq!(cleaned["subscription"]["properties"]["webhook_secret"], new_secret.as_str());
    assert_eq!(cleaned["subscription"]["properties"]["previous_secret_expires_at"], 0);
}

// ---------------------------------------------------------------------------------------------
// fetch_parameter_options

fn options(plugin: &mut Plugin, provider_action: &str, parameter: &str, credentials: Value) -> Result<Value, Value> {
    plugin.call(&json!({
        "action": "fetch_parameter_options", "type": "dynamic_parameter", "user_id": "acct-1", "provider": PROVIDER,
        "provider_action": provider_action, "parameter": parameter, "credentials": credentials,
    }))
}

#[test]
fn dynamic_options_list_the_projects_event_types_and_evals() {
    let mock = mock();
    let mut plugin = Plugin::start();
    let listed = options(&mut plugin, "provider", "events", credentials(&mock)).unwrap();
    let listed = listed["options"].as_array().unwrap();
    assert_eq!(listed.len(), openai_mock::SUBSCRIBABLE_TYPES.len());
    let batch = listed.iter().find(|o| o["value"] == "batch.completed").unwrap();
    assert_eq!(batch["label"]["en_US"], "Batch Completed (batch.completed)");
    assert_eq!(batch["label"]["ja_JP"], "バッチ完了 (batch.completed)");
    let video = listed.iter().find(|o| o["value"] == "video.completed").unwrap();
    assert_eq!(video["label"], json!({"en_US": "video.completed"}), "a type this release does not declare");
    assert_eq!(calls(&mock.requests()), ["GET /v1/webhook_event_types"]);
    // No key yet (or OpenAI failing): the built-in list.
    let fallback = options(&mut plugin, "provider", "events", json!({})).unwrap();
    let fallback: Vec<&str> =
        fallback["options"].as_array().unwrap().iter().map(|o| o["value"].as_str().unwrap()).collect();
    assert_eq!(fallback, openai_mock::SUBSCRIBABLE_TYPES, "OpenAI's 29, in its order");

    // The Evals API is gone: nothing to list, and no call to it.
    mock.clear_requests();
    let evals = options(&mut plugin, "eval_run_succeeded", "eval_id", credentials(&mock)).unwrap();
    assert_eq!(evals, json!({"options": []}));
    assert!(mock.requests().is_empty(), "{:?}", calls(&mock.requests()));
    assert_eq!(options(&mut plugin, "eval_run_failed", "eval_id", json!({})).unwrap(), json!({"options": []}));
    let error = options(&mut plugin, "batch_completed", "eval_id", credentials(&mock)).unwrap_err();
    assert_eq!(error["error_type"], "TriggerError");
}

// ---------------------------------------------------------------------------------------------
// Enriched events

/// Invokes `event` for a delivery about `object_id`, with the constructor's credentials.
fn invoke_about(
    plugin: &mut Plugin,
    event: &str,
    openai_type: &str,
    object_id: &str,
    parameters: Value,
    credentials: &Value,
) -> Invoked {
    let body = event_body(openai_type, "evt_enrich", 1_760_000_100, &json!({"id": object_id}));
    let payload = json!({"webhook_id": "wh_enrich", "webhook_timestamp": 1_760_000_101,
        "event": serde_json::from_str::<Value>(&body).unwrap()});
    let mut data = invoke_data(event, b"", &payload, &parameters);
    data["credentials"] = credentials.clone();
    data["credential_type"] = json!("api-key");
    plugin.invoke_data(&data)
}

#[test]
fn response_events_carry_the_response_and_its_assembled_text() {
    let mock = mock();
    let mut plugin = Plugin::start();
    let invoked = invoke_about(
        &mut plugin,
        "response_completed",
        "response.completed",
        ids::RESPONSE_COMPLETED,
        json!({}),
        &credentials(&mock),
    );
    let vars = &invoked.variables;
    assert_eq!(vars["details_fetched"], true);
    assert_eq!(vars["details_error"], "");
    assert_eq!(vars["status"], "completed");
    assert_eq!(vars["model"], "gpt-4.1-2025-04-14");
    assert_eq!(vars["output_text"], "The capital of France is Paris.\nAnything else?");
    assert_eq!(vars["usage"]["total_tokens"], 123);
    assert_eq!(vars["metadata"], json!({"order_id": "42"}));
    assert_eq!((vars["error"].clone(), vars["incomplete_details"].clone()), (json!({}), json!({})));
    assert_eq!(vars["response"]["id"], ids::RESPONSE_COMPLETED);
    assert_eq!(vars["response_id"], ids::RESPONSE_COMPLETED, "the plain variables stay");
    let requests = mock.requests();
    assert_eq!(calls(&requests), [format!("GET /v1/responses/{}", ids::RESPONSE_COMPLETED)]);
    assert_eq!(requests[0].header("authorization"), Some(format!("Bearer {VALID_KEY}").as_str()));

    let incomplete = invoke_about(
        &mut plugin,
        "response_incomplete",
        "response.incomplete",
        ids::RESPONSE_INCOMPLETE,
        json!({}),
        &credentials(&mock),
    );
    assert_eq!(incomplete.variables["incomplete_details"], json!({"reason": "max_output_tokens"}));
    assert_eq!(incomplete.variables["output_text"], "Once upon a");
    let failed = invoke_about(
        &mut plugin,
        "response_failed",
        "response.failed",
        ids::RESPONSE_FAILED,
        json!({}),
        &credentials(&mock),
    );
    assert_eq!(failed.variables["error"]["code"], "server_error");
    assert_eq!(failed.variables["usage"], json!({}), "null becomes the empty object");
}

#[test]
fn a_manual_subscription_enriches_with_its_optional_key() {
    let mock = mock();
    let mut plugin = Plugin::start();
    let body = event_body("fine_tuning.job.succeeded", "evt_ft", 1_760_000_100, &json!({"id": ids::FINE_TUNING_JOB}));
    let payload =
        json!({"webhook_id": "wh_ft", "webhook_timestamp": 1, "event": serde_json::from_str::<Value>(&body).unwrap()});
    let mut data = invoke_data("fine_tuning_job_succeeded", b"", &payload, &json!({}));
    data["subscription"]["properties"]["api_key"] = json!(VALID_KEY);
    data["subscription"]["properties"]["base_url"] = json!(mock.base_url());
    let vars = plugin.invoke_data(&data).variables;
    assert_eq!(vars["details_fetched"], true, "{vars:?}");
    assert_eq!(vars["fine_tuned_model"], "ft:gpt-4o-mini-2024-07-18:mock-org:capitals:AbC123xy");
    assert_eq!(vars["trained_tokens"], 5768);
    assert_eq!(vars["job"]["status"], "succeeded");
    assert_eq!(vars["error"], json!({}));
}

#[test]
fn fetch_details_off_makes_no_call_and_no_key_says_so() {
    let mock = mock();
    let mut plugin = Plugin::start();
    let off = invoke_about(
        &mut plugin,
        "batch_completed",
        "batch.completed",
        ids::BATCH_COMPLETED,
        json!({"fetch_details": false}),
        &credentials(&mock),
    );
    assert_eq!(
        (off.variables["details_fetched"].clone(), off.variables["details_error"].clone()),
        (json!(false), json!(""))
    );
    assert_eq!(off.variables["status"], "");
    assert!(mock.requests().is_empty());
    let keyless =
        invoke_about(&mut plugin, "batch_completed", "batch.completed", ids::BATCH_COMPLETED, json!({}), &json!({}));
    assert_eq!(keyless.variables["details_error"], openai_trigger::enrich::NO_KEY_MESSAGE);
    assert_eq!(keyless.variables["batch_id"], ids::BATCH_COMPLETED);
}

#[test]
fn batches_carry_their_counts_and_optionally_their_output_lines() {
    let mock = mock();
    let mut plugin = Plugin::start();
    let creds = credentials(&mock);
    let plain =
        invoke_about(&mut plugin, "batch_completed", "batch.completed", ids::BATCH_COMPLETED, json!({}), &creds)
            .variables;
    assert_eq!(plain["request_counts"], json!({"total": 4, "completed": 3, "failed": 1}));
    assert_eq!(plain["output_file_id"], ids::BATCH_OUTPUT_FILE);
    assert_eq!(plain["error_file_id"], ids::BATCH_ERROR_FILE);
    assert_eq!(plain["endpoint"], "/v1/chat/completions");
    assert_eq!(plain["output_lines"], json!([]), "not downloaded unless asked");
    assert_eq!(calls(&mock.requests()), [format!("GET /v1/batches/{}", ids::BATCH_COMPLETED)]);

    let downloaded = invoke_about(
        &mut plugin,
        "batch_completed",
        "batch.completed",
        ids::BATCH_COMPLETED,
        json!({"download_output": true}),
        &creds,
    )
    .variables;
    let lines = downloaded["output_lines"].as_array().unwrap();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["custom_id"], "request-1");
    assert_eq!(lines[2]["response"]["body"]["choices"][0]["message"]["content"], "Madrid");
    assert_eq!(downloaded["output_truncated"], false);
    assert!(calls(&mock.requests()).contains(&format!("GET /v1/files/{}/content", ids::BATCH_OUTPUT_FILE)));

    // A big output file and a small cap: whole lines only, and the cut is reported.
    let line = |i: usize| {
        format!(
            "{{\"id\": \"batch_req_{i:04}\", \"custom_id\": \"c{i:04}\", \"response\": {{\"status_code\": 200, \"body\": {{\"pad\": \"{}\"}}}}}}\n",
            "x".repeat(60)
        )
    };
    let content: String = (0..200).map(line).collect();
    mock.insert("files", json!({"id": "file-big", "content": content}));
    mock.insert(
        "batches",
        json!({"id": "batch_big", "object": "batch", "status": "completed", "output_file_id": "file-big",
        "request_counts": {"total": 200, "completed": 200, "failed": 0}}),
    );
    let capped = invoke_about(
        &mut plugin,
        "batch_completed",
        "batch.completed",
        "batch_big",
        json!({"download_output": "true", "output_max_bytes": 2048}),
        &creds,
    )
    .variables;
    let lines = capped["output_lines"].as_array().unwrap();
    assert_eq!(lines.len(), 2048 / line(0).len());
    assert_eq!(capped["output_truncated"], true);
    assert!(lines.iter().all(|l| l.get("invalid_line").is_none()), "no partial line is kept");
}

/// The Evals API was shut down on 2026-11-30 (openai-webhooks.md §1.2): an eval run still fires,
/// its details are never asked for, and `details_error` says why, key or not, eval_id or not.
#[test]
fn eval_runs_fire_without_a_call_to_the_shut_down_evals_api() {
    let mock = mock();
    let mut plugin = Plugin::start();
    for (parameters, credentials) in [
        (json!({}), credentials(&mock)),
        (json!({"eval_id": ids::OTHER_EVAL}), credentials(&mock)),
        (json!({"eval_id": ".."}), credentials(&mock)),
        (json!({}), json!({})),
    ] {
        let vars = invoke_about(
            &mut plugin,
            "eval_run_succeeded",
            "eval.run.succeeded",
            ids::EVAL_RUN,
            parameters,
            &credentials,
        )
        .variables;
        assert_eq!(vars["details_fetched"], false);
        assert_eq!(vars["details_error"], openai_trigger::enrich::EVALS_SHUT_DOWN_MESSAGE);
        assert_eq!(vars["eval_run_id"], ids::EVAL_RUN);
        assert_eq!((vars["run"].clone(), vars["result_counts"].clone()), (json!({}), json!({})));
    }
    let off = invoke_about(
        &mut plugin,
        "eval_run_failed",
        "eval.run.failed",
        ids::EVAL_RUN,
        json!({"fetch_details": false}),
        &credentials(&mock),
    );
    assert_eq!(off.variables["details_error"], "", "not asked for: nothing to explain");
    assert!(mock.requests().is_empty(), "{:?}", calls(&mock.requests()));
}

/// Health alert notifications are read with the organization Admin API key only
/// (openai-webhooks.md §4): from the constructor's credentials or a manual subscription's
/// properties; a project key is never tried, and without the admin key `details_error` says so.
#[test]
fn health_alerts_are_fetched_with_the_admin_key_only() {
    let mock = mock();
    let mut plugin = Plugin::start();
    let mut creds = credentials(&mock);
    creds["admin_api_key"] = json!(ADMIN_KEY);
    for (event, openai_type, id, alert_type) in [
        ("health_alert_triggered", "health.alert.triggered", ids::HEALTH_ALERT_TRIGGERED, "triggered"),
        ("health_alert_resolved", "health.alert.resolved", ids::HEALTH_ALERT_RESOLVED, "resolved"),
    ] {
        mock.clear_requests();
        let vars = invoke_about(&mut plugin, event, openai_type, id, json!({}), &creds).variables;
        let alert = openai_mock::health_alert(id, alert_type);
        assert_eq!(
            (vars["details_fetched"].clone(), vars["details_error"].clone()),
            (json!(true), json!("")),
            "{vars:?}"
        );
        assert_eq!(vars["alert_id"], id);
        assert_eq!(vars["alert_rule_id"], ids::HEALTH_ALERT_RULE);
        for field in ["occurred_at", "window", "dimensions", "measurement"] {
            assert_eq!(vars[field], alert[field], "{field}");
        }
        assert_eq!(vars["alert"], alert);
        let requests = mock.requests();
        assert_eq!(calls(&requests), [format!("GET /v1/organization/health/alerts/{id}")]);
        assert_eq!(requests[0].header("authorization"), Some(format!("Bearer {ADMIN_KEY}").as_str()));
        assert_eq!(requests[0].header("openai-project"), None, "an Admin key acts for the organization");
    }

    // A manual subscription's optional admin key.
    mock.clear_requests();
    let body =
        event_body("health.alert.triggered", "evt_h", 1_760_000_400, &json!({"id": ids::HEALTH_ALERT_TRIGGERED}));
    let payload =
        json!({"webhook_id": "wh_h", "webhook_timestamp": 1, "event": serde_json::from_str::<Value>(&body).unwrap()});
    let mut data = invoke_data("health_alert_triggered", b"", &payload, &json!({}));
    data["subscription"]["properties"]["admin_api_key"] = json!(ADMIN_KEY);
    data["subscription"]["properties"]["base_url"] = json!(mock.base_url());
    let vars = plugin.invoke_data(&data).variables;
    assert_eq!(vars["details_fetched"], true, "{vars:?}");

    // The project key alone: no call, and the missing key named.
    mock.clear_requests();
    let vars = invoke_about(
        &mut plugin,
        "health_alert_triggered",
        "health.alert.triggered",
        ids::HEALTH_ALERT_TRIGGERED,
        json!({}),
        &credentials(&mock),
    )
    .variables;
    assert_eq!(vars["details_error"], openai_trigger::enrich::NO_ADMIN_KEY_MESSAGE);
    assert_eq!(vars["alert_id"], ids::HEALTH_ALERT_TRIGGERED);
    assert!(mock.requests().is_empty(), "{:?}", calls(&mock.requests()));

    // A project key pasted as the admin key: refused by its shape, never sent.
    let mut wrong = credentials(&mock);
    wrong["admin_api_key"] = json!(VALID_KEY);
    let vars = invoke_about(
        &mut plugin,
        "health_alert_resolved",
        "health.alert.resolved",
        ids::HEALTH_ALERT_RESOLVED,
        json!({}),
        &wrong,
    )
    .variables;
    assert!(vars["details_error"].as_str().unwrap().contains("sk-admin-"), "{vars:?}");
    assert!(mock.requests().is_empty(), "{:?}", calls(&mock.requests()));
    no_key_anywhere(&plugin.stderr());
}

/// The optional Admin API key is checked when the credentials are saved: one page of alert rules.
#[test]
fn validate_checks_the_admin_key_when_given() {
    let mock = mock();
    let mut plugin = Plugin::start();
    let mut creds = credentials(&mock);
    creds["admin_api_key"] = json!(ADMIN_KEY);
    assert_eq!(validate(&mut plugin, creds.clone()).unwrap(), json!({"result": true}));
    let requests = mock.requests();
    assert_eq!(calls(&requests), ["GET /v1/webhook_endpoints", "GET /v1/organization/health/alert_rules"]);
    assert_eq!(requests[1].header("authorization"), Some(format!("Bearer {ADMIN_KEY}").as_str()));
    assert_eq!(requests[1].query_param("limit").as_deref(), Some("1"));

    // A project key in the admin field: refused by its shape before any call.
    mock.clear_requests();
    creds["admin_api_key"] = json!(READ_ONLY_KEY);
    let error = validate(&mut plugin, creds.clone()).unwrap_err();
    assert_eq!(error["error_type"], "TriggerProviderCredentialValidationError");
    assert!(error["message"].as_str().unwrap().contains("sk-admin-"), "{error}");
    assert!(mock.requests().is_empty());

    // An admin key OpenAI refuses: its message, the key masked.
    let other = MockOpenAi::start().unwrap();
    other.add_fault(Fault { path_prefix: "/v1/organization/health".into(), status: Some(401), ..Fault::default() });
    let mut creds = credentials(&other);
    creds["admin_api_key"] = json!(ADMIN_KEY);
    let error = validate(&mut plugin, creds).unwrap_err();
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("Admin API key"), "{message}");
    no_key_anywhere(message);
    assert!(!message.contains(ADMIN_KEY));
}

#[test]
fn safety_alerts_and_cases_carry_their_documented_fields() {
    let mock = mock();
    let mut plugin = Plugin::start();
    let creds = credentials(&mock);
    let alert =
        invoke_about(&mut plugin, "safety_alert_created", "safety.alert.created", ids::SAFETY_ALERT, json!({}), &creds)
            .variables;
    assert_eq!(alert["error_type"], "potentially_unintended_data_transfer");
    assert_eq!(alert["request_paused"], true);
    assert_eq!(alert["response_id"], "resp_mock_alert");
    assert_eq!(alert["alert"]["id"], ids::SAFETY_ALERT);
    let case = invoke_about(
        &mut plugin,
        "safety_warning_issued",
        "safety.warning_issued",
        ids::SAFETY_CASE,
        json!({}),
        &creds,
    )
    .variables;
    assert_eq!(case["entity_identifier"], "user-8841");
    assert_eq!(case["notice"], json!({"type": "warning"}));
    assert_eq!(case["case_id"], ids::SAFETY_CASE);
}

#[test]
fn enrichment_failures_are_explained_and_never_fail_the_run() {
    let mock = mock();
    let mut plugin = Plugin::start_with(&[("OPENAI_TRIGGER_API_TIMEOUT", "3")]);
    let creds = credentials(&mock);
    let run = |plugin: &mut Plugin, id: &str| {
        let invoked = invoke_about(plugin, "response_completed", "response.completed", id, json!({}), &creds);
        assert!(!invoked.cancelled);
        assert_eq!(invoked.variables["response_id"], id, "the plain variables are delivered");
        assert_eq!(invoked.variables["details_fetched"], false);
        invoked.variables["details_error"].as_str().unwrap().to_owned()
    };
    // A test event names an object that does not exist.
    let error = run(&mut plugin, "resp_test_event");
    assert!(error.starts_with("not found (404): No response found with id 'resp_test_event'."), "{error}");
    // A key without access.
    let revoked = json!({"api_key": "sk-revoked-0123456789", "base_url": mock.base_url()});
    let invoked = invoke_about(
        &mut plugin,
        "response_completed",
        "response.completed",
        ids::RESPONSE_COMPLETED,
        json!({}),
        &revoked,
    );
    let error = invoked.variables["details_error"].as_str().unwrap();
    assert!(error.starts_with("permission denied (401): Incorrect API key provided: sk-…"), "{error}");
    // Rate-limited past the budget: no 60-second wait, an explanation.
    mock.add_fault(Fault {
        path_prefix: "/v1/responses/".into(),
        status: Some(429),
        retry_after: Some("60".into()),
        ..Fault::default()
    });
    mock.clear_requests();
    let error = run(&mut plugin, ids::RESPONSE_COMPLETED);
    assert!(
        error.starts_with("OpenAI rate-limited the call (429) after 1 attempt(s) (Retry-After 60 s is past"),
        "{error}"
    );
    // No wait for the 60 s: the one refused attempt, and no retry.
    assert_eq!(
        calls(&mock.requests()),
        [format!("GET /v1/responses/{}", ids::RESPONSE_COMPLETED)],
        "one attempt, no retry after a Retry-After past the budget"
    );
    mock.clear_faults();
    // Malformed JSON.
    mock.add_fault(Fault { path_prefix: "/v1/responses/".into(), malformed: true, ..Fault::default() });
    let error = run(&mut plugin, ids::RESPONSE_COMPLETED);
    assert!(error.starts_with("OpenAI's answer was malformed"), "{error}");
    mock.clear_faults();
    // Slower than the budget.
    mock.add_fault(Fault { path_prefix: "/v1/responses/".into(), delay_ms: 10_000, ..Fault::default() });
    mock.clear_requests();
    let error = run(&mut plugin, ids::RESPONSE_COMPLETED);
    assert_eq!(error, "no answer from OpenAI within 3 s");
    // The budget bounds the call: the one attempt used it up, none followed.
    assert_eq!(
        calls(&mock.requests()),
        [format!("GET /v1/responses/{}", ids::RESPONSE_COMPLETED)],
        "one attempt, no retry past the budget"
    );
    mock.clear_faults();
    no_key_anywhere(&plugin.stderr());
}

#[test]
fn rate_limits_are_retried_as_retry_after_says() {
    let mock = mock();
    let mut plugin = Plugin::start_with(&[("OPENAI_TRIGGER_LOG", "debug")]);
    mock.add_fault(Fault {
        path_prefix: "/v1/responses/".into(),
        status: Some(429),
        retry_after: Some("1".into()),
        times: Some(2),
        ..Fault::default()
    });
    let invoked = invoke_about(
        &mut plugin,
        "response_completed",
        "response.completed",
        ids::RESPONSE_COMPLETED,
        json!({}),
        &credentials(&mock),
    );
    assert_eq!(invoked.variables["details_fetched"], true);
    assert_eq!(mock.requests().len(), 3);
    // Each retry waited what Retry-After said (the plugin logs every retry decision at debug level).
    let stderr = plugin.stderr();
    let waits: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("retrying an OpenAI call"))
        .map(|line| line.split_whitespace().find(|field| field.starts_with("wait_ms=")).unwrap_or(line))
        .collect();
    assert_eq!(waits, ["wait_ms=1000", "wait_ms=1000"], "waited the two Retry-After seconds: {stderr}");
}

/// Hundreds of dispatches complete while every enrichment call hangs: a slow OpenAI delays only
/// the invokes waiting for it.
#[test]
fn a_hanging_openai_does_not_delay_other_sessions() {
    let mock = mock();
    let mut plugin = Plugin::start();
    mock.add_fault(Fault { path_prefix: "/v1/responses/".into(), hold: true, ..Fault::default() });
    let mut invokes = Vec::new();
    for i in 0..40 {
        let body = event_body(
            "response.completed",
            &format!("evt_h{i}"),
            1_760_000_100,
            &json!({"id": ids::RESPONSE_COMPLETED}),
        );
        let payload = json!({"webhook_id": format!("wh_h{i}"), "webhook_timestamp": 1, "event": serde_json::from_str::<Value>(&body).unwrap()});
        let mut data = invoke_data("response_completed", b"", &payload, &json!({}));
        data["credentials"] = credentials(&mock);
        let id = plugin.fresh_session();
        plugin.request(&id, &data);
        invokes.push(id);
    }
    let deadline = Instant::now() + WAIT;
    while mock.held() < invokes.len() {
        assert!(
            Instant::now() < deadline,
            "only {} of {} enrichment calls reached the mock",
            mock.held(),
            invokes.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut dispatches = Vec::new();
    for i in 0..400 {
        let raw = RawRequest::signed(
            SECRET,
            &format!("wh_fast_{i}"),
            unix_now(),
            event_body("batch.completed", &format!("evt_f{i}"), 1, &json!({"id": "batch_1"})),
        );
        let id = plugin.fresh_session();
        plugin.request(&id, &dispatch_data(&raw.bytes(), SECRET, ENDPOINT));
        dispatches.push(id);
    }
    plugin.wait_for_sessions(&dispatches);
    for id in &dispatches {
        let dispatched = Dispatched::from_chunk(plugin.transcript.result(id).clone().unwrap());
        assert_eq!(dispatched.events, ["batch_completed", "any_event"], "{id}");
    }
    assert!(invokes.iter().all(|id| !plugin.transcript.answered(id)), "the invokes are still waiting on OpenAI");
    assert_eq!(mock.held(), invokes.len());
    mock.release();
    plugin.wait_for_sessions(&invokes);
    for id in &invokes {
        let invoked = Invoked::from_chunk(plugin.transcript.result(id).clone().unwrap());
        assert_eq!(invoked.variables["output_text"], "The capital of France is Paris.\nAnything else?", "{id}");
    }
}

/// The proxy variables the daemon passes are honoured: with HTTP_PROXY set, calls to a plain-http
/// base URL go through the proxy (here the mock itself, which answers absolute-form requests).
#[test]
fn outbound_calls_go_through_the_configured_proxy() {
    let mock = mock();
    let proxy = format!("http://{}", mock.addr());
    let mut plugin = Plugin::start_with(&[
        ("HTTP_PROXY", proxy.as_str()),
        ("http_proxy", proxy.as_str()),
        ("NO_PROXY", ""),
        ("no_proxy", ""),
    ]);
    // localhost:9 has no server: only a proxy can answer this.
    let result = validate(&mut plugin, json!({"api_key": VALID_KEY, "base_url": "http://localhost:9/v1"}));
    assert_eq!(result.unwrap(), json!({"result": true}));
    let requests = mock.requests();
    assert_eq!(calls(&requests), ["GET /v1/webhook_endpoints"]);
    assert_eq!(requests[0].header("host"), Some("localhost:9"), "the request was for the base URL's host");
}

// ---------------------------------------------------------------------------------------------
// What an adversarial review found (each failed before its fix).

#[test]
fn an_absurd_retry_after_ms_is_a_long_wait_not_a_crash() {
    let mock = mock();
    let mut plugin = Plugin::start();
    mock.add_fault(Fault {
        path_prefix: "/v1/responses/".into(),
        status: Some(429),
        retry_after_ms: Some("1e30".into()),
        ..Fault::default()
    });
    let invoked = invoke_about(
        &mut plugin,
        "response_completed",
        "response.completed",
        ids::RESPONSE_COMPLETED,
        json!({}),
        &credentials(&mock),
    );
    let error = invoked.variables["details_error"].as_str().unwrap();
    assert!(error.starts_with("OpenAI rate-limited the call (429) after 1 attempt(s)"), "{error}");
}

#[test]
fn object_ids_cannot_steer_the_request_path() {
    let mock = mock();
    let mut plugin = Plugin::start();
    for id in
        ["%2e%2e\\organization\\audit_logs", ".\t.", "../../organization/audit_logs", "resp_1?x=1", &"r".repeat(200)]
    {
        let invoked =
            invoke_about(&mut plugin, "response_completed", "response.completed", id, json!({}), &credentials(&mock));
        assert_eq!(invoked.variables["details_error"], "the event names no usable object id", "{id:?}");
    }
    let alert = invoke_about(
        &mut plugin,
        "health_alert_triggered",
        "health.alert.triggered",
        "../../organization/audit_logs",
        json!({}),
        &json!({"admin_api_key": ADMIN_KEY, "base_url": mock.base_url()}),
    );
    assert_eq!(alert.variables["details_error"], "the event names no usable object id");
    assert!(mock.requests().is_empty(), "{:?}", calls(&mock.requests()));
}

#[test]
fn a_key_pasted_into_base_url_is_not_echoed() {
    let mock = mock();
    let mut plugin = Plugin::start();
    let body = event_body("batch.completed", "evt_b", 1, &json!({"id": ids::BATCH_COMPLETED}));
    let payload =
        json!({"webhook_id": "wh_b", "webhook_timestamp": 1, "event": serde_json::from_str::<Value>(&body).unwrap()});
    let mut data = invoke_data("batch_completed", b"", &payload, &json!({}));
    data["subscription"]["properties"]["api_key"] = json!("x");
    data["subscription"]["properties"]["base_url"] = json!("sk-proj-ABCDEFGHIJ");
    let vars = plugin.invoke_data(&data).variables;
    let error = vars["details_error"].as_str().unwrap();
    assert!(error.starts_with("base_url is not an https:// URL"), "{error}");
    assert!(!error.contains("ABCDEF"), "{error}");
    assert!(mock.requests().is_empty());
}

#[test]
fn a_download_cap_equal_to_the_json_limit_still_truncates() {
    let mock = mock();
    let mut plugin = Plugin::start();
    let line = format!("{{\"id\": \"r\", \"pad\": \"{}\"}}\n", "x".repeat(1000));
    let content: String = std::iter::repeat_n(line.as_str(), 2100).collect();
    mock.insert("files", json!({"id": "file-2mib", "content": content}));
    mock.insert(
        "batches",
        json!({"id": "batch_2mib", "object": "batch", "status": "completed", "output_file_id": "file-2mib"}),
    );
    let vars = invoke_about(
        &mut plugin,
        "batch_completed",
        "batch.completed",
        "batch_2mib",
        json!({"download_output": true, "output_max_bytes": openai_trigger::openai::MAX_JSON_BYTES}),
        &credentials(&mock),
    )
    .variables;
    assert_eq!(vars["details_error"], "", "{vars:?}");
    assert_eq!(vars["output_truncated"], true);
    assert_eq!(vars["output_lines"].as_array().unwrap().len(), openai_trigger::openai::MAX_JSON_BYTES / line.len());
}

#[test]
fn an_expired_old_secret_is_dropped_whatever_openai_answers() {
    let mock = mock();
    let mut plugin = Plugin::start();
    let creds = credentials(&mock);
    let answer = subscribe(&mut plugin, &creds, ENDPOINT, json!({"events": ["batch.completed"]})).unwrap();
    let new_secret = secret_of(&answer);
    let mut subscription = stored(&answer);
    subscription["properties"]["webhook_secret"] = json!(format!("{new_secret} {OTHER_SECRET}"));
    subscription["properties"]["previous_secret_expires_at"] = json!(unix_now() - 1);
    // Dispatch stops accepting the old secret at its expiry, before any refresh.
    let old = deliver(&mut plugin, &subscription, OTHER_SECRET, "batch.completed", "wh_expired_old");
    assert_eq!(old.http.status, 401);
    assert_eq!(deliver(&mut plugin, &subscription, &new_secret, "batch.completed", "wh_expired_new").http.status, 200);
    // Refresh drops it even when OpenAI refuses the key.
    let revoked = json!({"api_key": "sk-revoked-0000", "base_url": mock.base_url()});
    let refreshed = stored_action(&mut plugin, "refresh_trigger", &subscription, &revoked);
    assert_eq!(refreshed["subscription"]["properties"]["webhook_secret"], new_secret.as_str());
    assert_eq!(refreshed["subscription"]["properties"]["previous_secret_expires_at"], 0);
}

#[test]
fn unsubscribe_with_a_revoked_key_leaves_the_endpoint_and_lets_dify_rebuild() {
    let mock = mock();
    let mut plugin = Plugin::start();
    let answer = subscribe(&mut plugin, &credentials(&mock), ENDPOINT, json!({})).unwrap();
    let id = properties(&answer)["endpoint_id"].as_str().unwrap().to_owned();
    let revoked = json!({"api_key": "sk-revoked-0000", "base_url": mock.base_url()});
    let result = stored_action(&mut plugin, "unsubscribe_trigger", &stored(&answer), &revoked);
    assert_eq!(result["subscription"]["success"], true, "{result}");
    let message = result["subscription"]["message"].as_str().unwrap();
    assert!(message.contains(&id) && message.contains("left in place") && message.contains("(401)"), "{message}");
    assert_eq!(mock.endpoints().len(), 1);
    // The rebuild's subscribe, with a working key, adopts it: still one endpoint.
    subscribe(&mut plugin, &credentials(&mock), ENDPOINT, json!({})).unwrap();
    assert_eq!(mock.endpoints().len(), 1);
}

#[test]
fn refresh_adopts_an_endpoint_that_already_delivers_to_the_url() {
    let mock = mock();
    let mut plugin = Plugin::start();
    let creds = credentials(&mock);
    let first = subscribe(&mut plugin, &creds, ENDPOINT, json!({"events": ["batch.completed"]})).unwrap();
    let first_id = properties(&first)["endpoint_id"].as_str().unwrap().to_owned();
    // The stored endpoint is gone, but another one (say, from a lost refresh answer) delivers there.
    assert!(mock.remove_endpoint(&first_id));
    let other = subscribe(&mut plugin, &creds, ENDPOINT, json!({"events": ["batch.completed"]})).unwrap();
    let other_id = properties(&other)["endpoint_id"].as_str().unwrap().to_owned();
    let refreshed = stored_action(&mut plugin, "refresh_trigger", &stored(&first), &creds);
    assert_eq!(refreshed["subscription"]["properties"]["endpoint_id"], other_id.as_str());
    assert_eq!(mock.endpoints().len(), 1, "no second endpoint for the same URL");
    assert_eq!(refreshed["subscription"]["properties"]["webhook_secret"], mock.endpoints()[0]["signing_secret"]);
}
