//! The six trigger actions through the real binary (triggers.md §4), with exact response shapes:
//! dispatch of every event type and every way a delivery can be refused, then invoke of every
//! event checked against the `output_schema` its YAML declares.

use std::path::Path;

use serde_json::{Map, Value, json};

use openai_trigger::enrich;
use openai_trigger::events::{self, ANY_EVENT, EVENTS, Enrichment};
use openai_trigger::samples::sample_data;

use crate::support::*;

/// The ack of an accepted delivery, byte for byte.
fn ok_bytes() -> Vec<u8> {
    HttpAnswer::expected_bytes("200 OK", &[], br#"{"status":"ok"}"#)
}

fn duplicate_bytes() -> Vec<u8> {
    HttpAnswer::expected_bytes("200 OK", &[], br#"{"status":"duplicate"}"#)
}

/// A signed delivery of `openai_type` with the realistic sample data; returns it and its body.
fn delivery(openai_type: &str, tag: &str, now: i64) -> (RawRequest, Value) {
    let body = event_body(openai_type, &format!("evt_{tag}"), now - 3, &sample_data(openai_type));
    let value: Value = serde_json::from_str(&body).unwrap();
    (RawRequest::signed(SECRET, &format!("wh_{tag}"), now, body), value)
}

fn output_schema(event: &str) -> Value {
    let spec = events::by_name(event).unwrap_or_else(|| panic!("{event} is in the event table"));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(spec.path);
    let yaml: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).expect("event YAML on disk")).unwrap();
    yaml["output_schema"].clone()
}

/// Variables must be exactly the top-level properties of the event's `output_schema`: every
/// `required` one present, nothing undeclared (the editor only offers declared ones, triggers.md
/// §5.2), each of its declared JSON type, nested objects and arrays checked the same way.
fn assert_matches_output_schema(event: &str, variables: &Map<String, Value>) {
    let schema = output_schema(event);
    let declared: Vec<&String> = schema["properties"].as_object().expect("output_schema.properties").keys().collect();
    let mut problems = Vec::new();
    for name in variables.keys() {
        if !declared.contains(&name) {
            problems.push(format!("variable {name} is not declared"));
        }
    }
    conforms(&schema, &Value::Object(variables.clone()), event, &mut problems);
    assert!(problems.is_empty(), "{event}: {problems:#?}\nvariables: {variables:#?}");
}

fn conforms(schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
    let types: Vec<&str> = match &schema["type"] {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() && !types.iter().any(|t| has_type(t, value)) {
        problems.push(format!("{at} should be {types:?}, is {value}"));
        return;
    }
    if let Value::Object(object) = value {
        for required in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !object.contains_key(required) {
                problems.push(format!("{at}.{required} is required but missing"));
            }
        }
        for (key, item) in object {
            let declared = &schema["properties"][key];
            if declared.is_object() {
                conforms(declared, item, &format!("{at}.{key}"), problems);
            } else if schema["additionalProperties"].is_object() {
                conforms(&schema["additionalProperties"], item, &format!("{at}.{key}"), problems);
            }
        }
    }
    if let (Value::Array(items), Value::Object(_)) = (value, &schema["items"]) {
        for (index, item) in items.iter().enumerate() {
            conforms(&schema["items"], item, &format!("{at}[{index}]"), problems);
        }
    }
}

fn has_type(json_type: &str, value: &Value) -> bool {
    match json_type {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "null" => value.is_null(),
        _ => false,
    }
}

/// SIP headers as an object, repeated names joined with ", " (first spelling wins).
fn joined_sip_headers(data: &Value) -> Map<String, Value> {
    let mut joined: Map<String, Value> = Map::new();
    for header in data["sip_headers"].as_array().into_iter().flatten() {
        let (name, value) = (header["name"].as_str().unwrap(), header["value"].as_str().unwrap());
        match joined.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned() {
            Some(key) => {
                let previous = joined[&key].as_str().unwrap().to_owned();
                joined.insert(key, json!(format!("{previous}, {value}")));
            }
            None => {
                joined.insert(name.to_owned(), json!(value));
            }
        }
    }
    joined
}

/// The value each family-specific variable must have for a delivery of `openai_type` with `data`.
fn expected_variable(openai_type: &str, name: &str, data: &Value) -> Value {
    let text = |v: &Value| json!(v.as_str().unwrap_or_default());
    let header = |wanted: &str| {
        let headers = joined_sip_headers(data);
        json!(headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(wanted)).map(|(_, v)| v.clone()).unwrap_or(json!("")))
    };
    // Enrichment without a key: every detail variable empty, and details_error says why.
    let family = openai_trigger::events::by_openai_type(openai_type).map(|spec| spec.family);
    let added = family.map(openai_trigger::enrich::variables_of).unwrap_or_default();
    if name == "details_error" && !added.is_empty() {
        return json!(match family.and_then(|f| f.enrichment()) {
            Some(Enrichment::EvalRun) => enrich::EVALS_SHUT_DOWN_MESSAGE,
            Some(Enrichment::HealthAlert) => enrich::NO_ADMIN_KEY_MESSAGE,
            _ => enrich::NO_KEY_MESSAGE,
        });
    }
    if let Some((_, kind)) = added.iter().find(|(added, _)| *added == name) {
        return kind.empty();
    }
    match name {
        "response_id" | "batch_id" | "fine_tuning_job_id" | "eval_run_id" | "alert_id" | "case_id"
        | "agent_session_id" | "resource_id" => text(&data["id"]),
        "environment_id" if openai_type.starts_with("agent.environment.") => text(&data["id"]),
        "environment_id" => text(&data["environment_id"]),
        "environment_type" => text(&data["environment_type"]),
        "connect_remote_url" => text(&data["connect"]["remote_url"]),
        "required_action_type" => text(&data["required_action"]["type"]),
        "call_id" => text(&data["call_id"]),
        "session_id" => text(&data["session_id"]),
        "transport_type" => text(&data["type"]),
        "sip_media_security" => text(&data["sip_media_security"]),
        "sip_from" => header("from"),
        "sip_to" => header("to"),
        "sip_headers" => Value::Object(joined_sip_headers(data)),
        other => panic!("no expectation for variable {other} of {openai_type}"),
    }
}

/// The envelope variables every event carries, and the family ones, against the delivery.
fn assert_variables(event: &str, variables: &Map<String, Value>, body: &Value, webhook_id: &str, timestamp: i64) {
    assert_matches_output_schema(event, variables);
    let common = json!({
        "id": body["id"], "object": "event", "created_at": body["created_at"], "type": body["type"],
        "data": body["data"], "event_id": body["id"], "event_type": body["type"],
        "webhook_id": webhook_id, "webhook_timestamp": timestamp,
    });
    for (name, value) in common.as_object().unwrap() {
        assert_eq!(&variables[name], value, "{event}: variable {name}");
    }
    let openai_type = body["type"].as_str().unwrap();
    for (name, value) in variables.iter().filter(|(name, _)| !common.as_object().unwrap().contains_key(*name)) {
        assert_eq!(value, &expected_variable(openai_type, name, &body["data"]), "{event}: variable {name}");
    }
}

#[test]
fn every_event_type_dispatches_and_every_event_invokes_as_declared() {
    let mut plugin = Plugin::start();
    let now = unix_now();
    let mut covered = 0;
    for spec in EVENTS.iter().filter(|spec| spec.openai_type.is_some()) {
        let openai_type = spec.openai_type.unwrap();
        let (raw, body) = delivery(openai_type, spec.name, now);
        let dispatched = plugin.dispatch(&raw, SECRET, ENDPOINT);
        assert_eq!(dispatched.events, [spec.name, ANY_EVENT], "{openai_type}");
        assert_eq!(dispatched.http.raw, ok_bytes(), "{openai_type}: the ack");
        let webhook_id = format!("wh_{}", spec.name);
        assert_eq!(
            dispatched.payload,
            json!({"webhook_id": webhook_id, "webhook_timestamp": now, "event": body}),
            "{openai_type}: the payload"
        );
        for event in &dispatched.events {
            let invoked = plugin.invoke(event, &raw.bytes(), &dispatched.payload, &json!({}));
            assert!(!invoked.cancelled, "{event} for {openai_type}");
            assert_variables(event, &invoked.variables, &body, &webhook_id, now);
        }
        covered += 1;
    }
    assert_eq!(covered, EVENTS.len() - 1, "every event but any_event has an OpenAI type");
    assert!(plugin.finish().success());
}

#[test]
fn unknown_type_fires_only_any_event() {
    let mut plugin = Plugin::start();
    let now = unix_now();
    let (raw, body) = delivery("video.completed", "video", now);
    let dispatched = plugin.dispatch(&raw, SECRET, ENDPOINT);
    assert_eq!(dispatched.events, [ANY_EVENT]);
    assert_eq!(dispatched.http.raw, ok_bytes());
    let invoked = plugin.invoke(ANY_EVENT, &raw.bytes(), &dispatched.payload, &json!({}));
    assert!(!invoked.cancelled);
    assert_variables(ANY_EVENT, &invoked.variables, &body, "wh_video", now);
}

/// The daemon omits `credential_type` and may send `credentials: null`, `parameters: null`,
/// `subscription.parameters: null` (daemon-protocol.md §2.3, triggers.md §4.2).
#[test]
fn daemon_nulls_and_omitted_fields_are_accepted() {
    let mut plugin = Plugin::start();
    let now = unix_now();
    let (raw, body) = delivery("batch.completed", "nulls", now);
    let mut data = dispatch_data(&raw.bytes(), SECRET, ENDPOINT);
    data["credentials"] = Value::Null;
    data["subscription"]["parameters"] = Value::Null;
    let dispatched = plugin.dispatch_data(&data);
    assert_eq!(dispatched.events, ["batch_completed", ANY_EVENT]);
    for event in ["batch_completed", ANY_EVENT] {
        let mut data = invoke_data(event, &raw.bytes(), &dispatched.payload, &Value::Null);
        data["credentials"] = Value::Null;
        data["subscription"]["parameters"] = Value::Null;
        let invoked = plugin.invoke_data(&data);
        assert!(!invoked.cancelled, "{event}");
        assert_variables(event, &invoked.variables, &body, "wh_nulls", now);
        // And with `parameters` left out altogether.
        let mut data = invoke_data(event, &raw.bytes(), &dispatched.payload, &json!({}));
        data.as_object_mut().unwrap().remove("parameters");
        assert!(!plugin.invoke_data(&data).cancelled, "{event} without parameters");
    }
}

/// One row per refused delivery: what the sender must get back.
struct Refusal {
    label: &'static str,
    data: Value,
    status: u16,
    error: &'static str,
}

#[test]
fn refused_deliveries_get_the_right_status_and_leak_nothing() {
    let now = unix_now();
    let marker = "evt_body_marker_7f3a";
    let body = event_body("batch.completed", marker, now, &json!({"id": "batch_marker"}));
    let good = RawRequest::signed(SECRET, "wh_refused", now, body.clone());
    let signed = |body: &str| RawRequest::signed(SECRET, "wh_refused", now, body.to_owned());
    let with = |raw: &RawRequest, secret: &str| dispatch_data(&raw.bytes(), secret, ENDPOINT);
    let with_subscription = |subscription: Value| {
        let mut data = dispatch_data(&good.bytes(), SECRET, ENDPOINT);
        data["subscription"] = subscription;
        data
    };
    let with_hex = |hex_text: &str| {
        let mut data = dispatch_data(&good.bytes(), SECRET, ENDPOINT);
        data["raw_http_request"] = json!(hex_text);
        data
    };
    let big = format!(r#"{{"type":"batch.completed","pad":"{}"}}"#, "p".repeat(1024 * 1024));
    let refusal = |label, data, status, error| Refusal { label, data, status, error };
    let cases = vec![
        refusal(
            "no secret property",
            with_subscription(json!({"endpoint": ENDPOINT, "expires_at": -1,
            "parameters": {}, "properties": {}})),
            401,
            "no_secret_configured",
        ),
        refusal("empty secret", with(&good, ""), 401, "no_secret_configured"),
        refusal("blank secret", with(&good, " \n, "), 401, "no_secret_configured"),
        refusal(
            "null properties",
            with_subscription(json!({"endpoint": ENDPOINT, "expires_at": -1,
            "parameters": {}, "properties": null})),
            401,
            "no_secret_configured",
        ),
        refusal("null subscription", with_subscription(Value::Null), 401, "no_secret_configured"),
        refusal("secret not base64", with(&good, "whsec_!!not*base64!!"), 401, "invalid_secret"),
        refusal("secret empty after prefix", with(&good, "whsec_"), 401, "invalid_secret"),
        refusal("second secret invalid", with(&good, &format!("{SECRET} whsec_%%%")), 401, "invalid_secret"),
        refusal("signature label pasted with the secret", with(&good, &format!("v1,{SECRET}")), 401, "invalid_secret"),
        refusal("secret too short to be a key", with(&good, "whsec_c2hvcnQ="), 401, "invalid_secret"),
        refusal("no webhook-id", with(&good.clone().without("webhook-id"), SECRET), 401, "missing_header"),
        refusal(
            "no webhook-timestamp",
            with(&good.clone().without("webhook-timestamp"), SECRET),
            401,
            "missing_header",
        ),
        refusal(
            "no webhook-signature",
            with(&good.clone().without("webhook-signature"), SECRET),
            401,
            "missing_header",
        ),
        refusal(
            "empty webhook-signature",
            with(&good.clone().set("Webhook-Signature", "  "), SECRET),
            401,
            "missing_header",
        ),
        refusal("signed with another key", with(&good, OTHER_SECRET), 401, "no_matching_signature"),
        refusal(
            "garbage signature",
            with(&good.clone().set("webhook-signature", "v1,AAAA"), SECRET),
            401,
            "no_matching_signature",
        ),
        refusal(
            "signature of v1a only",
            with(
                &good
                    .clone()
                    .set("webhook-signature", &good.header("webhook-signature").unwrap().replacen("v1,", "v1a,", 1)),
                SECRET,
            ),
            401,
            "no_matching_signature",
        ),
        refusal(
            "stale",
            with(&RawRequest::signed(SECRET, "wh_refused", now - 400, body.clone()), SECRET),
            401,
            "timestamp_too_old",
        ),
        refusal(
            "future",
            with(&RawRequest::signed(SECRET, "wh_refused", now + 400, body.clone()), SECRET),
            401,
            "timestamp_too_new",
        ),
        refusal(
            "timestamp not digits",
            with(&good.clone().set("webhook-timestamp", &format!("{now}.5")), SECRET),
            401,
            "invalid_timestamp",
        ),
        refusal(
            "tampered body",
            with(&good.clone().body(body.replace("batch_marker", "batch_other")), SECRET),
            401,
            "no_matching_signature",
        ),
        refusal("body not JSON", with(&signed("not json at all"), SECRET), 400, "invalid_event"),
        refusal("body empty", with(&signed(""), SECRET), 400, "invalid_event"),
        refusal("body is an array", with(&signed(r#"[{"type":"batch.completed"}]"#), SECRET), 400, "invalid_event"),
        refusal("no type", with(&signed(r#"{"id":"evt_1","data":{}}"#), SECRET), 400, "invalid_event"),
        refusal("numeric type", with(&signed(r#"{"type":42}"#), SECRET), 400, "invalid_event"),
        refusal("empty type", with(&signed(r#"{"type":""}"#), SECRET), 400, "invalid_event"),
        refusal("GET", with(&good.clone().method("GET"), SECRET), 405, "method_not_allowed"),
        refusal("PUT", with(&good.clone().method("PUT"), SECRET), 405, "method_not_allowed"),
        refusal("lower-case post", with(&good.clone().method("post"), SECRET), 405, "method_not_allowed"),
        refusal("body over 1 MiB", with(&signed(&big), SECRET), 413, "payload_too_large"),
        refusal("hex with a non-hex digit", with_hex("zz"), 400, "malformed_request"),
        refusal("hex of odd length", with_hex("504f5"), 400, "malformed_request"),
        refusal("hex of no HTTP head", with_hex(&hex::encode("POST / HTTP/1.1\r\nHost: a")), 400, "malformed_request"),
        refusal("hex of garbage", with_hex(&hex::encode("\u{1}\u{2} nothing\r\n\r\n{}")), 400, "malformed_request"),
    ];

    // The most verbose logging, so stderr is checked for leaks too.
    let mut plugin = Plugin::start_with(&[("OPENAI_TRIGGER_LOG", "trace")]);
    let key = SECRET.strip_prefix("whsec_").unwrap();
    let mut problems = Vec::new();
    for case in &cases {
        let dispatched = plugin.dispatch_data(&case.data);
        let (status, error) = dispatched.rejection();
        if (status, error.as_str()) != (case.status, case.error) {
            problems.push(format!("{}: got {status} {error}, expected {} {}", case.label, case.status, case.error));
        }
        if !dispatched.events.is_empty() || dispatched.payload != json!({}) {
            problems.push(format!("{}: a refused delivery fired {:?}", case.label, dispatched.chunk));
        }
        let answer = dispatched.http.json();
        let keys: Vec<&String> = answer.as_object().unwrap().keys().collect();
        if keys != ["error", "message", "status"] || answer["status"] != "rejected" {
            problems.push(format!("{}: response body {answer}", case.label));
        }
        let text = String::from_utf8_lossy(&dispatched.http.raw);
        if text.contains(key) || text.contains(marker) || text.contains("pppppppp") {
            problems.push(format!("{}: the response echoes the secret or the body: {text}", case.label));
        }
        if case.status == 405 && dispatched.http.header("allow") != Some("POST") {
            problems.push(format!("{}: 405 without Allow: POST", case.label));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    // The missing header is named; the 405 is byte-exact.
    let missing = plugin.dispatch_data(&with(&good.clone().without("webhook-timestamp"), SECRET));
    assert_eq!(missing.http.json()["message"], "missing header webhook-timestamp");
    let get = plugin.dispatch_data(&with(&good.clone().method("GET"), SECRET));
    let body =
        br#"{"error":"method_not_allowed","message":"OpenAI webhooks are POST requests, not GET","status":"rejected"}"#;
    assert_eq!(
        String::from_utf8_lossy(&get.http.raw),
        String::from_utf8_lossy(&HttpAnswer::expected_bytes("405 Method Not Allowed", &[("Allow", "POST")], body))
    );
    assert!(plugin.finish().success());
    let stderr = plugin.stderr();
    assert!(stderr.contains("rejected a webhook delivery"), "trace logging is on: {stderr}");
    assert!(!stderr.contains(key) && !stderr.contains(marker), "stderr shows the secret or the body:\n{stderr}");
}

#[test]
fn duplicate_webhook_id_is_acknowledged_without_firing() {
    let mut plugin = Plugin::start();
    let now = unix_now();
    let (raw, _) = delivery("batch.failed", "dup", now);
    let first = plugin.dispatch(&raw, SECRET, ENDPOINT);
    assert_eq!(first.events, ["batch_failed", ANY_EVENT]);
    // OpenAI's retry: same webhook-id, fresh timestamp and signature.
    let (retry, _) = delivery("batch.failed", "dup", now + 1);
    let second = plugin.dispatch(&retry, SECRET, ENDPOINT);
    assert!(second.events.is_empty());
    assert_eq!(second.http.raw, duplicate_bytes());
    assert_eq!(second.payload, json!({}));
    // The same id for another subscription is another message.
    let elsewhere = plugin.dispatch(&retry, SECRET, OTHER_ENDPOINT);
    assert_eq!(elsewhere.events, ["batch_failed", ANY_EVENT]);
    assert_eq!(elsewhere.http.raw, ok_bytes());
}

/// A refused delivery must not mark its webhook-id as seen, or a forger could suppress the real one.
#[test]
fn refused_deliveries_do_not_count_as_seen() {
    let mut plugin = Plugin::start();
    let now = unix_now();
    let (raw, _) = delivery("eval.run.failed", "forged", now);
    let forged = raw.clone().set("webhook-signature", &sign(OTHER_SECRET, "wh_forged", &now.to_string(), &raw.body));
    assert_eq!(plugin.dispatch(&forged, SECRET, ENDPOINT).http.status, 401);
    let stale = delivery("eval.run.failed", "forged", now - 1000).0;
    assert_eq!(plugin.dispatch(&stale, SECRET, ENDPOINT).http.status, 401);
    let real = plugin.dispatch(&raw, SECRET, ENDPOINT);
    assert_eq!(real.events, ["eval_run_failed", ANY_EVENT]);
}

/// A pretty-printed body is verified over its exact bytes and still travels on one line.
#[test]
fn pretty_printed_body_yields_a_single_line_stream() {
    let mut plugin = Plugin::start();
    let now = unix_now();
    let event = json!({"id": "evt_pretty", "object": "event", "created_at": now, "type": "response.completed",
        "data": {"id": "resp_pretty", "note": "line\nbreak in a string"}});
    let body = format!("{}\r\n", serde_json::to_string_pretty(&event).unwrap());
    assert!(body.contains('\n'));
    let raw = RawRequest::signed(SECRET, "wh_pretty", now, body);
    // The harness fails on any output line that is not one JSON object.
    let dispatched = plugin.dispatch(&raw, SECRET, ENDPOINT);
    assert_eq!(dispatched.events, ["response_completed", ANY_EVENT]);
    assert_eq!(dispatched.payload["event"], event);
    let invoked = plugin.invoke("response_completed", &raw.bytes(), &dispatched.payload, &json!({}));
    assert_variables("response_completed", &invoked.variables, &event, "wh_pretty", now);
}

#[test]
fn header_names_are_case_insensitive_and_rotation_accepts_either_secret() {
    let mut plugin = Plugin::start();
    let now = unix_now();
    let body = event_body("batch.expired", "evt_case", now, &json!({"id": "batch_case"}));
    let signature = sign(SECRET, "wh_case", &now.to_string(), body.as_bytes());
    let raw = RawRequest::signed(SECRET, "wh_case", now, body.clone())
        .without("Webhook-Id")
        .without("Webhook-Timestamp")
        .without("Webhook-Signature")
        .set("WEBHOOK-ID", "wh_case")
        .set("webhook-TIMESTAMP", &now.to_string())
        .set("wEbHoOk-SiGnAtUrE", &signature);
    let rotation = format!("{OTHER_SECRET},\n{SECRET}");
    assert_eq!(plugin.dispatch(&raw, &rotation, ENDPOINT).events, ["batch_expired", ANY_EVENT]);
    // Two signatures in the header, as OpenAI sends during a rotation with overlap.
    let ts = now.to_string();
    let both = format!(
        "{} {}",
        sign(OTHER_SECRET, "wh_case2", &ts, body.as_bytes()),
        sign(SECRET, "wh_case2", &ts, body.as_bytes())
    );
    let raw = RawRequest::signed(SECRET, "wh_case2", now, body).set("webhook-signature", &both);
    assert_eq!(plugin.dispatch(&raw, SECRET, ENDPOINT).events, ["batch_expired", ANY_EVENT]);
}

#[test]
fn invoke_of_another_type_is_cancelled() {
    let mut plugin = Plugin::start();
    let now = unix_now();
    let (raw, _) = delivery("response.failed", "mismatch", now);
    let dispatched = plugin.dispatch(&raw, SECRET, ENDPOINT);
    for event in ["response_completed", "batch_failed", "realtime_call_incoming", "agent_session_created"] {
        assert!(plugin.invoke(event, &raw.bytes(), &dispatched.payload, &json!({})).cancelled, "{event}");
    }
}

#[test]
fn invoke_of_an_undeclared_event_is_an_error() {
    let mut plugin = Plugin::start();
    let error = plugin.call(&invoke_data("nope", b"", &json!({}), &json!({}))).unwrap_err();
    assert_eq!(error["error_type"], "TriggerError");
    assert_eq!(error["message"], r#"event "nope" is not declared by this provider"#);
}

#[test]
fn call_filters_match_case_insensitively() {
    let mut plugin = Plugin::start();
    let now = unix_now();
    for (openai_type, event) in [
        ("realtime.call.incoming", "realtime_call_incoming"),
        ("live.transport.incoming", "live_transport_incoming"),
        ("live.call.incoming", "live_call_incoming"),
    ] {
        let (raw, _) = delivery(openai_type, event, now);
        let dispatched = plugin.dispatch(&raw, SECRET, ENDPOINT);
        // From: "Alice" <sip:+14155550123@sip.example.com>;tag=…  To: <sip:+18005550100@sip.api.openai.com>
        for (parameters, cancelled) in [
            (json!({}), false),
            (json!({"from_contains": null, "to_contains": null}), false),
            (json!({"from_contains": "ALICE"}), false),
            (json!({"from_contains": "+1415555"}), false),
            (json!({"from_contains": "+44"}), true),
            (json!({"to_contains": "SIP.API.OPENAI.COM"}), false),
            (json!({"to_contains": "+1800555"}), false),
            (json!({"to_contains": "+1888"}), true),
            (json!({"from_contains": "alice", "to_contains": "+1888"}), true),
            (json!({"from_contains": "   ", "to_contains": ""}), false),
        ] {
            let invoked = plugin.invoke(event, &raw.bytes(), &dispatched.payload, &parameters);
            assert_eq!(invoked.cancelled, cancelled, "{event} with {parameters}");
        }
    }
}

#[test]
fn environment_type_filter_selects_agent_sessions() {
    let mut plugin = Plugin::start();
    let now = unix_now();
    // The samples: created is self_hosted, the other session events openai_hosted.
    let (raw, _) = delivery("agent.session.in_progress", "agent_env", now);
    let dispatched = plugin.dispatch(&raw, SECRET, ENDPOINT);
    for (parameters, cancelled) in [
        (json!({}), false),
        (json!({"environment_type": null}), false),
        (json!({"environment_type": []}), false),
        (json!({"environment_type": "openai_hosted"}), false),
        (json!({"environment_type": ["self_hosted", "openai_hosted"]}), false),
        (json!({"environment_type": "self_hosted,openai_hosted"}), false),
        (json!({"environment_type": "self_hosted"}), true),
        (json!({"environment_type": ["none"]}), true),
    ] {
        let invoked = plugin.invoke("agent_session_in_progress", &raw.bytes(), &dispatched.payload, &parameters);
        assert_eq!(invoked.cancelled, cancelled, "{parameters}");
    }
    let (raw, _) = delivery("agent.session.created", "agent_created", now);
    let dispatched = plugin.dispatch(&raw, SECRET, ENDPOINT);
    let invoked =
        plugin.invoke("agent_session_created", &raw.bytes(), &dispatched.payload, &json!({"environment_type": "none"}));
    assert!(invoked.cancelled);
}

#[test]
fn any_event_types_filter_includes_unknown_types() {
    let mut plugin = Plugin::start();
    let now = unix_now();
    let (batch, _) = delivery("batch.completed", "any_batch", now);
    let (video, _) = delivery("video.completed", "any_video", now);
    let batch_payload = plugin.dispatch(&batch, SECRET, ENDPOINT).payload;
    let video_payload = plugin.dispatch(&video, SECRET, ENDPOINT).payload;
    for (payload, raw, parameters, cancelled) in [
        (&batch_payload, &batch, json!({}), false),
        (&batch_payload, &batch, json!({"event_types": []}), false),
        (&batch_payload, &batch, json!({"event_types": null}), false),
        (&batch_payload, &batch, json!({"event_types": ["batch.completed"]}), false),
        (&batch_payload, &batch, json!({"event_types": ["response.completed", "batch.completed"]}), false),
        (&batch_payload, &batch, json!({"event_types": "batch.completed"}), false),
        (&batch_payload, &batch, json!({"event_types": ["batch.failed"]}), true),
        (&video_payload, &video, json!({}), false),
        (&video_payload, &video, json!({"event_types": ["video.completed"]}), false),
        (&video_payload, &video, json!({"event_types": ["batch.completed"]}), true),
    ] {
        let invoked = plugin.invoke(ANY_EVENT, &raw.bytes(), payload, &parameters);
        assert_eq!(invoked.cancelled, cancelled, "{} with {parameters}", payload["event"]["type"]);
    }
}

/// Payloads stored by the Python plugin hold the bare event; webhook id and timestamp then come
/// from the stored request's headers.
#[test]
fn python_plugin_payload_shape_still_invokes() {
    let mut plugin = Plugin::start();
    let now = unix_now();
    let (raw, body) = delivery("fine_tuning.job.succeeded", "python", now);
    for event in ["fine_tuning_job_succeeded", ANY_EVENT] {
        let invoked = plugin.invoke(event, &raw.bytes(), &body, &json!({}));
        assert!(!invoked.cancelled, "{event}");
        assert_variables(event, &invoked.variables, &body, "wh_python", now);
    }
}

/// Without a payload, invoke reads the event from the stored request's body.
#[test]
fn missing_payload_falls_back_to_the_raw_request_body() {
    let mut plugin = Plugin::start();
    let now = unix_now();
    let (raw, body) = delivery("safety.alert.created", "fallback", now);
    for payload in [Some(json!({})), Some(Value::Null), None] {
        for event in ["safety_alert_created", ANY_EVENT] {
            let mut data = invoke_data(event, &raw.bytes(), &json!({}), &json!({}));
            match &payload {
                Some(payload) => data["payload"] = payload.clone(),
                None => drop(data.as_object_mut().unwrap().remove("payload")),
            }
            let invoked = plugin.invoke_data(&data);
            assert!(!invoked.cancelled, "{event} with payload {payload:?}");
            assert_variables(event, &invoked.variables, &body, "wh_fallback", now);
        }
    }
    // Neither a payload nor a readable body: nothing to run the workflow with.
    let invoked = plugin.invoke("safety_alert_created", b"", &json!({}), &json!({}));
    assert!(invoked.cancelled);
}

/// Constructor actions without an API key say what is missing, and never reach for the network:
/// validate and subscribe need the key; a subscription that manages no endpoint (a manual one)
/// has nothing to delete and is never refreshed again (triggers.md §4.3–4.6).
#[test]
fn constructor_actions_without_a_key_say_what_is_missing() {
    let base = |action: &str| json!({"action": action, "type": "trigger", "user_id": "acct-1", "provider": PROVIDER});
    let mut plugin = Plugin::start();

    let mut validate = base("validate_trigger_credentials");
    validate["credentials"] = json!({"api_key": "  "});
    let error = plugin.call(&validate).unwrap_err();
    assert_eq!(error["error_type"], "TriggerProviderCredentialValidationError");
    assert!(error["message"].as_str().unwrap().starts_with("api_key is required"), "{error}");

    let mut subscribe = base("subscribe_trigger");
    subscribe["endpoint"] = json!(ENDPOINT);
    subscribe["parameters"] = json!({});
    subscribe["credentials"] = Value::Null;
    subscribe["credential_type"] = json!("api-key");
    let error = plugin.call(&subscribe).unwrap_err();
    assert_eq!(error["error_type"], "SubscriptionError");
    assert!(error["message"].as_str().unwrap().contains("api_key is required"), "{error}");

    let mut unsubscribe = base("unsubscribe_trigger");
    unsubscribe["subscription"] = subscription(SECRET, ENDPOINT);
    unsubscribe["credentials"] = json!({});
    let result = plugin.call(&unsubscribe).unwrap();
    assert_eq!(result["subscription"]["success"], true, "{result}");
    assert!(result["subscription"]["message"].as_str().unwrap().contains("nothing to delete"));

    let mut refresh = base("refresh_trigger");
    refresh["subscription"] = subscription(SECRET, ENDPOINT);
    refresh["credentials"] = json!({});
    let result = plugin.call(&refresh).unwrap();
    assert_eq!(result["subscription"]["expires_at"], -1, "{result}");
    assert_eq!(result["subscription"]["properties"]["webhook_secret"], SECRET);
    assert_eq!(result["subscription"]["parameters"], json!({}), "parameters are never null");
    assert!(!result.to_string().contains("sk-"), "{result}");
}

/// Malformed action data is reported by field position, never by quoting the value.
#[test]
fn malformed_action_data_does_not_echo_values() {
    let mut plugin = Plugin::start();
    let mut misplaced = dispatch_data(b"", SECRET, ENDPOINT);
    misplaced["subscription"] = json!(SECRET);
    let mut numeric = dispatch_data(b"", SECRET, ENDPOINT);
    numeric["raw_http_request"] = json!(12345);
    let mut invoke = invoke_data("batch_completed", b"", &json!({}), &json!({}));
    invoke["payload"] = json!(SECRET);
    invoke["event"] = json!(["batch_completed"]);
    for (data, error_type) in
        [(misplaced, "TriggerDispatchError"), (numeric, "TriggerDispatchError"), (invoke, "TriggerError")]
    {
        let error = plugin.call(&data).unwrap_err();
        assert_eq!(error["error_type"], error_type, "{error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("request has a field of the wrong type (JSON line 1, column "), "{message}");
        assert!(!message.contains(SECRET.strip_prefix("whsec_").unwrap()), "{message}");
    }
    let mut missing = dispatch_data(b"", SECRET, ENDPOINT);
    missing.as_object_mut().unwrap().remove("raw_http_request");
    let error = plugin.call(&missing).unwrap_err();
    assert_eq!(error["error_type"], "TriggerDispatchError");
    assert_eq!(error["message"], "dispatch_trigger_event request is missing raw_http_request", "{error}");
}

/// Dify's serialisation is not always tidy (triggers.md §3.3): a stale Transfer-Encoding next to a
/// de-chunked body, a wrong Content-Length, bare LF line ends, a query string, upper-case hex.
#[test]
fn lenient_raw_http_requests_still_verify() {
    let mut plugin = Plugin::start();
    let now = unix_now();
    let mut cases: Vec<(&str, Vec<u8>, String)> = Vec::new();
    let (raw, _) = delivery("batch.cancelled", "lenient_te", now);
    let raw = raw.set("Transfer-Encoding", "chunked").set("Content-Length", "99999");
    cases.push(("stale framing headers", raw.bytes(), hex::encode(raw.bytes())));
    let (raw, _) = delivery("batch.cancelled", "lenient_lf", now);
    let lf = String::from_utf8(raw.bytes()).unwrap().replacen("\r\n\r\n", "\n\n", 1);
    let (head, body) = lf.split_once("\n\n").unwrap();
    let bare = format!("{}\n\n{body}", head.replace("\r\n", "\n")).into_bytes();
    cases.push(("bare LF head", bare.clone(), hex::encode(&bare)));
    let (mut raw, _) = delivery("batch.cancelled", "lenient_query", now);
    raw.target = format!("{TARGET}?source=openai&attempt=2");
    let raw = raw.set("X_Forwarded_Proto", "https");
    cases.push(("query string and odd header", raw.bytes(), hex::encode(raw.bytes())));
    let (raw, _) = delivery("batch.cancelled", "lenient_upper", now);
    cases.push(("upper-case hex", raw.bytes(), hex::encode_upper(raw.bytes())));
    for (label, bytes, hex_text) in cases {
        let mut data = dispatch_data(&bytes, SECRET, ENDPOINT);
        data["raw_http_request"] = json!(hex_text);
        let dispatched = plugin.dispatch_data(&data);
        assert_eq!(dispatched.events, ["batch_cancelled", ANY_EVENT], "{label}: {:?}", dispatched.http.json());
    }
    for method in ["HEAD", "OPTIONS", "DELETE", "PATCH"] {
        let (raw, _) = delivery("batch.cancelled", &format!("lenient_{method}"), now);
        let status = plugin.dispatch(&raw.method(method), SECRET, ENDPOINT).http.status;
        assert_eq!(status, 405, "{method}");
    }
}
