//! `openai-trigger demo`: plays Dify against the real plugin process over stdio, with nothing
//! configured. Each case is checked against what it should produce, so the demo doubles as a
//! smoke test: it exits non-zero if any case misbehaves.

use std::process::ExitCode;

use serde_json::{Value, json};

use dify_plugin::host::{PluginProcess, trigger};

use crate::console::{fit, output_width, say};
use crate::events::{self, ANY_EVENT};
use crate::local_plugin::{key_variables, spawn_plugin};
use crate::provider::{PROVIDER, unix_now};
use crate::samples::{DEMO_SECRET, SignedDelivery, sample_body};
use dify_plugin::raw_http::HttpResponse;

const ENDPOINT: &str = "https://dify.localhost/triggers/plugin/6f1d2c3b-4a5e-4f60-8a9b-0c1d2e3f4a5b";
const TARGET: &str = "/triggers/plugin/6f1d2c3b-4a5e-4f60-8a9b-0c1d2e3f4a5b";

struct Case {
    label: String,
    delivery: SignedDelivery,
    secret: String,
    parameters: Value,
    expect_status: u16,
    expect_events: Vec<&'static str>,
    /// For rejections: the `error` code in the response body.
    expect_error: Option<&'static str>,
    expect_cancelled: bool,
}

/// Runs every case and prints one row each, fitted to `width` columns unless `wide`.
pub(crate) async fn run(wide: bool) -> std::io::Result<ExitCode> {
    let width = if wide { usize::MAX } else { output_width() };
    let exe = std::env::current_exe()?;
    let started = std::time::Instant::now();
    let plugin = spawn_plugin(&exe).await?;
    let ready_ms = started.elapsed().as_secs_f64() * 1000.0;
    let now = unix_now();

    let mut cases = Vec::new();
    for (index, openai_type) in events::known_openai_types().enumerate() {
        let body = sample_body(openai_type, &format!("evt_demo{index:02}"), now - 5);
        let Some(name) = events::by_openai_type(openai_type).map(|spec| spec.name) else { continue };
        cases.push(accepted(
            openai_type.to_owned(),
            SignedDelivery::new(DEMO_SECRET, &format!("wh_demo_{index:02}"), now, body),
            vec![name, ANY_EVENT],
        ));
    }
    let call = |id: &str| {
        SignedDelivery::new(DEMO_SECRET, id, now, sample_body("realtime.call.incoming", "evt_demo_call", now))
    };
    cases.push(Case {
        parameters: json!({"to_contains": "+1800555"}),
        ..accepted("call, To contains +1800555".into(), call("wh_demo_f1"), vec!["realtime_call_incoming", ANY_EVENT])
    });
    cases.push(Case {
        parameters: json!({"from_contains": "+44"}),
        expect_cancelled: true,
        ..accepted("call, From contains +44".into(), call("wh_demo_f2"), vec!["realtime_call_incoming", ANY_EVENT])
    });
    let unknown =
        SignedDelivery::new(DEMO_SECRET, "wh_demo_unknown", now, sample_body("video.completed", "evt_demo_video", now));
    cases.push(accepted("unknown type video.completed".into(), unknown, vec![ANY_EVENT]));
    let rotated =
        SignedDelivery::new(DEMO_SECRET, "wh_demo_rotation", now, sample_body("batch.completed", "evt_demo_rot", now));
    cases.push(Case {
        secret: format!("whsec_b2xkLXNlY3JldC1iZWZvcmUtdGhlLXJvdGF0aW9uIQ== {DEMO_SECRET}"),
        ..accepted("secret rotation (two secrets)".into(), rotated, vec!["batch_completed", ANY_EVENT])
    });

    let mut tampered =
        SignedDelivery::new(DEMO_SECRET, "wh_demo_tampered", now, sample_body("batch.completed", "evt_demo_t", now));
    tampered.body = tampered.body.iter().map(|&b| if b == b'6' { b'7' } else { b }).collect();
    cases.push(rejected("tampered body", tampered, 401, "no_matching_signature"));
    let stale = SignedDelivery::new(
        DEMO_SECRET,
        "wh_demo_stale",
        now - 600,
        sample_body("batch.completed", "evt_demo_s", now - 600),
    );
    cases.push(rejected("stale timestamp (10 min old)", stale, 401, "timestamp_too_old"));
    let unsigned =
        SignedDelivery::new(DEMO_SECRET, "wh_demo_nosecret", now, sample_body("batch.completed", "evt_demo_n", now));
    cases.push(Case {
        secret: String::new(),
        ..rejected("no secret configured", unsigned, 401, "no_secret_configured")
    });
    let first =
        SignedDelivery::new(DEMO_SECRET, "wh_demo_00", now, sample_body("response.completed", "evt_demo00", now - 5));
    cases.push(Case { expect_events: vec![], ..accepted("duplicate of the first delivery".into(), first, vec![]) });

    say(&format!("openai-trigger demo: {} signed deliveries, passed to the plugin as Dify does", cases.len()));
    say(&format!("(plugin ready in {ready_ms:.1} ms; every accepted delivery also fires any_event)\n"));
    say(&fit(&format!("{:<LABEL$} {:>4}  {}", "DELIVERY", "HTTP", "WHAT HAPPENED"), width));
    let mut failures = 0;
    for case in &cases {
        match run_case(&plugin, case, wide).await {
            Ok(row) => {
                say(&fit(&format!("{:<LABEL$} {:>4}  {}", case.label, row.status, row.outcome), width));
                if let Some(detail) = row.detail {
                    say(&fit(&format!("{:<INDENT$}{detail}", ""), width));
                }
            }
            Err(problem) => {
                failures += 1;
                say(&fit(&format!("{:<LABEL$} UNEXPECTED: {problem}", case.label), width.max(120)));
            }
        }
    }
    let heartbeats = plugin.heartbeats_seen();
    let status = plugin.close().await?;
    let ending = if status.success() {
        "exited cleanly when its input closed".to_owned()
    } else {
        format!("ended badly when its input closed ({status})")
    };
    say(&format!(
        "\n{} deliveries: {} as expected, {failures} unexpected. The plugin sent {heartbeats} heartbeat(s)\nand {ending}.",
        cases.len(),
        cases.len() - failures,
    ));
    say("\nNext, real webhooks on this machine:");
    say("  openai-trigger dev                                  (prints a test secret)");
    say("  openai-trigger send batch.completed --secret <it>   (in another terminal)");
    Ok(if failures == 0 && status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn accepted(label: String, delivery: SignedDelivery, events: Vec<&'static str>) -> Case {
    Case {
        label,
        delivery,
        secret: DEMO_SECRET.to_owned(),
        parameters: json!({}),
        expect_status: 200,
        expect_events: events,
        expect_error: None,
        expect_cancelled: false,
    }
}

fn rejected(label: &str, delivery: SignedDelivery, status: u16, error: &'static str) -> Case {
    Case { expect_status: status, expect_error: Some(error), ..accepted(label.to_owned(), delivery, vec![]) }
}

/// One row of the table: the HTTP status, what happened, and (for runs) the key variables.
struct Row {
    status: u16,
    outcome: String,
    detail: Option<String>,
}

/// The label column's width; the detail line starts under the outcome.
const LABEL: usize = 32;
const INDENT: usize = LABEL + 7;

/// How a demo case did not go as the case expects (the row says "UNEXPECTED: …").
#[derive(Debug, thiserror::Error)]
enum Unexpected {
    #[error("{0}")]
    Host(#[from] std::io::Error),
    #[error("{action} error {error_type}: {message}")]
    Error { action: &'static str, error_type: String, message: String },
    #[error("the answer is malformed: {0}")]
    Malformed(&'static str),
    #[error("got HTTP {status} {fired:?}, expected {expected_status} {expected_events:?}")]
    Verdict { status: u16, fired: Vec<String>, expected_status: u16, expected_events: Vec<&'static str> },
    #[error("got error {got}, expected {expected}")]
    ErrorCode { got: Value, expected: &'static str },
    #[error("{event} cancelled={cancelled}, expected {}", !cancelled)]
    Cancelled { event: String, cancelled: bool },
    #[error("any_event was cancelled")]
    AnyEventCancelled,
}

async fn run_case(plugin: &PluginProcess, case: &Case, wide: bool) -> Result<Row, Unexpected> {
    let raw = case.delivery.raw_request(TARGET);
    let subscription = trigger::subscription(ENDPOINT, json!({"webhook_secret": case.secret}));
    let dispatched = plugin
        .call(trigger::dispatch(PROVIDER, &raw, &subscription))
        .await?
        .map_err(|e| Unexpected::Error { action: "dispatch", error_type: e.error_type, message: e.message })?;
    let parsed = HttpResponse::from_hex(dispatched["response"].as_str().unwrap_or(""))
        .ok_or(Unexpected::Malformed("unparsable response hex"))?;
    let (status, body) = (parsed.status, parsed.body);
    let fired: Vec<String> = dispatched["events"]
        .as_array()
        .ok_or(Unexpected::Malformed("events is not a list"))?
        .iter()
        .filter_map(|e| e.as_str().map(str::to_owned))
        .collect();
    let body: Value = serde_json::from_slice(&body).map_err(|_| Unexpected::Malformed("response body is not JSON"))?;
    if status != case.expect_status || fired != case.expect_events {
        return Err(Unexpected::Verdict {
            status,
            fired,
            expected_status: case.expect_status,
            expected_events: case.expect_events.clone(),
        });
    }
    if let Some(code) = case.expect_error {
        if body["error"] != code {
            return Err(Unexpected::ErrorCode { got: body["error"].clone(), expected: code });
        }
        return Ok(Row { status, outcome: format!("rejected: {code}"), detail: None });
    }
    let mut shown = Vec::new();
    for event in &fired {
        let invoked = plugin
            .call(trigger::invoke(PROVIDER, event, &raw, &dispatched["payload"], &case.parameters, &subscription))
            .await?
            .map_err(|e| Unexpected::Error { action: "invoke", error_type: e.error_type, message: e.message })?;
        let cancelled = invoked["cancelled"].as_bool().ok_or(Unexpected::Malformed("cancelled is not a bool"))?;
        if event != ANY_EVENT {
            if cancelled != case.expect_cancelled {
                return Err(Unexpected::Cancelled { event: event.clone(), cancelled });
            }
            shown.push(if cancelled {
                "the node's filter did not match: run skipped".to_owned()
            } else {
                key_variables(&invoked["variables"], wide)
            });
        } else if cancelled {
            return Err(Unexpected::AnyEventCancelled);
        }
    }
    let own: Vec<&str> = fired.iter().map(String::as_str).filter(|e| *e != ANY_EVENT).collect();
    let row = match (fired.is_empty(), own.is_empty()) {
        (true, _) => {
            Row { status, outcome: format!("nothing fired: {}", body["status"].as_str().unwrap_or("")), detail: None }
        }
        (false, true) => Row {
            status,
            outcome: "fires any_event only".to_owned(),
            detail: Some(format!("event_type={}", body_type(case))),
        },
        (false, false) if case.expect_cancelled => Row {
            status,
            outcome: "run skipped: node filter did not match".to_owned(),
            detail: Some(format!(
                "{} with filter {}",
                own.first().unwrap_or(&""),
                case.parameters
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )),
        },
        (false, false) => Row { status, outcome: format!("fires {}", own.join(", ")), detail: Some(shown.join("; ")) },
    };
    Ok(row)
}

fn body_type(case: &Case) -> String {
    serde_json::from_slice::<Value>(&case.delivery.body)
        .ok()
        .and_then(|v| v["type"].as_str().map(str::to_owned))
        .unwrap_or_default()
}
