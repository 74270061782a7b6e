//! The event catalogue: every declared event, its OpenAI type, its YAML and the family that turns
//! a verified delivery into workflow variables. One module per OpenAI event family.
//!
//! The table is the join between declarations and code: each row embeds its YAML at build time
//! (a missing file fails the build), and the tidy test in `tests/it/declarations.rs` checks the
//! reverse (every YAML file and every provider entry has a row).

mod agent;
mod any;
mod batch;
mod call;
mod eval;
mod fine_tuning;
mod response;
mod safety;

use serde_json::{Map, Value};

/// Name of the catch-all event that fires for every verified delivery.
pub const ANY_EVENT: &str = "any_event";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Response,
    Batch,
    FineTuning,
    Eval,
    Call,
    Safety,
    Agent,
    Any,
}

#[derive(Debug)]
pub struct EventSpec {
    /// Dify event name: the OpenAI type with `.` replaced by `_` (the Python plugin's names).
    pub name: &'static str,
    /// The OpenAI `type` this event fires for; None for [`ANY_EVENT`].
    pub openai_type: Option<&'static str>,
    pub family: Family,
    /// Path inside the plugin package, as listed in `provider/openai_trigger.yaml`.
    pub path: &'static str,
    pub yaml: &'static str,
}

macro_rules! events {
    ($( $family:ident $dir:literal $name:literal $openai:expr ;)*) => {
        pub static EVENTS: &[EventSpec] = &[$(
            EventSpec {
                name: $name,
                openai_type: $openai,
                family: Family::$family,
                path: concat!("events/", $dir, "/", $name, ".yaml"),
                yaml: include_str!(concat!("../../events/", $dir, "/", $name, ".yaml")),
            },
        )*];
    };
}

events! {
    Response "response" "response_completed" Some("response.completed");
    Response "response" "response_cancelled" Some("response.cancelled");
    Response "response" "response_failed" Some("response.failed");
    Response "response" "response_incomplete" Some("response.incomplete");
    Batch "batch" "batch_completed" Some("batch.completed");
    Batch "batch" "batch_cancelled" Some("batch.cancelled");
    Batch "batch" "batch_expired" Some("batch.expired");
    Batch "batch" "batch_failed" Some("batch.failed");
    FineTuning "fine_tuning" "fine_tuning_job_succeeded" Some("fine_tuning.job.succeeded");
    FineTuning "fine_tuning" "fine_tuning_job_failed" Some("fine_tuning.job.failed");
    FineTuning "fine_tuning" "fine_tuning_job_cancelled" Some("fine_tuning.job.cancelled");
    Eval "eval" "eval_run_succeeded" Some("eval.run.succeeded");
    Eval "eval" "eval_run_failed" Some("eval.run.failed");
    Eval "eval" "eval_run_canceled" Some("eval.run.canceled");
    Call "call" "realtime_call_incoming" Some("realtime.call.incoming");
    Call "call" "live_transport_incoming" Some("live.transport.incoming");
    Call "call" "live_call_incoming" Some("live.call.incoming");
    Safety "safety" "safety_alert_created" Some("safety.alert.created");
    Safety "safety" "safety_org_alert_created" Some("safety.org_alert.created");
    Safety "safety" "safety_warning_issued" Some("safety.warning_issued");
    Safety "safety" "safety_deactivation_issued" Some("safety.deactivation_issued");
    Agent "agent" "agent_session_created" Some("agent.session.created");
    Agent "agent" "agent_session_action_required" Some("agent.session.action_required");
    Agent "agent" "agent_session_in_progress" Some("agent.session.in_progress");
    Agent "agent" "agent_session_idle" Some("agent.session.idle");
    Agent "agent" "agent_session_failed" Some("agent.session.failed");
    Agent "agent" "agent_environment_ready" Some("agent.environment.ready");
    Agent "agent" "agent_environment_failed" Some("agent.environment.failed");
    Agent "agent" "agent_environment_suspended" Some("agent.environment.suspended");
    Agent "agent" "agent_environment_expired" Some("agent.environment.expired");
    Any "any" "any_event" None;
}

pub fn by_name(name: &str) -> Option<&'static EventSpec> {
    EVENTS.iter().find(|spec| spec.name == name)
}

pub fn by_openai_type(openai_type: &str) -> Option<&'static EventSpec> {
    EVENTS.iter().find(|spec| spec.openai_type == Some(openai_type))
}

/// The OpenAI types this release knows, in declaration order.
pub fn known_openai_types() -> impl Iterator<Item = &'static str> {
    EVENTS.iter().filter_map(|spec| spec.openai_type)
}

/// Event names a verified delivery of `openai_type` fires: its own event (when known) and
/// [`ANY_EVENT`]. Never an undeclared name, so Dify never answers 400 (triggers.md §8 W2).
pub fn names_for(openai_type: &str) -> Vec<&'static str> {
    match by_openai_type(openai_type) {
        Some(spec) => vec![spec.name, ANY_EVENT],
        None => vec![ANY_EVENT],
    }
}

/// One verified delivery as the invoke step sees it.
#[derive(Debug)]
pub struct Delivery<'a> {
    /// The OpenAI event object (`id`, `object`, `created_at`, `type`, `data`).
    pub event: &'a Map<String, Value>,
    pub webhook_id: &'a str,
    pub webhook_timestamp: i64,
}

impl Delivery<'_> {
    pub fn openai_type(&self) -> &str {
        self.event.get("type").and_then(Value::as_str).unwrap_or("")
    }

    fn data(&self) -> &Map<String, Value> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        self.event.get("data").and_then(Value::as_object).unwrap_or_else(|| EMPTY.get_or_init(Map::new))
    }
}

/// What invoke answers: run the workflow with these variables, or skip it for this reason.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Fire(Map<String, Value>),
    Ignore(String),
}

/// A workflow node's filter values (`parameters`); unset ones are absent or null.
pub type Parameters = Map<String, Value>;

/// Builds the variables of `spec` for `delivery`, applying the node's filters.
pub fn variables(spec: &EventSpec, delivery: &Delivery<'_>, parameters: &Parameters) -> Outcome {
    let actual = delivery.openai_type();
    if let Some(expected) = spec.openai_type {
        if actual != expected {
            return Outcome::Ignore(format!("delivery is {actual:?}, not {expected:?}"));
        }
    }
    let mut vars = envelope(delivery);
    let data = delivery.data();
    let verdict = match spec.family {
        Family::Response => response::variables(data, &mut vars),
        Family::Batch => batch::variables(data, &mut vars),
        Family::FineTuning => fine_tuning::variables(data, &mut vars),
        Family::Eval => eval::variables(data, &mut vars),
        Family::Call => call::variables(actual, data, parameters, &mut vars),
        Family::Safety => safety::variables(actual, data, &mut vars),
        Family::Agent => agent::variables(actual, data, parameters, &mut vars),
        Family::Any => any::variables(actual, data, parameters, &mut vars),
    };
    match verdict {
        Ok(()) => Outcome::Fire(vars),
        Err(reason) => Outcome::Ignore(reason),
    }
}

/// The envelope exactly as the Python plugin exposed it, plus the flattened conveniences.
fn envelope(delivery: &Delivery<'_>) -> Map<String, Value> {
    let event = delivery.event;
    let mut vars = Map::new();
    let id = text(event, "id");
    let openai_type = text(event, "type");
    vars.insert("id".into(), Value::String(id.clone()));
    vars.insert("object".into(), event.get("object").cloned().unwrap_or_else(|| "event".into()));
    vars.insert("created_at".into(), event.get("created_at").cloned().unwrap_or(Value::from(0)));
    vars.insert("type".into(), Value::String(openai_type.clone()));
    vars.insert("data".into(), Value::Object(delivery.data().clone()));
    vars.insert("event_id".into(), Value::String(id));
    vars.insert("event_type".into(), Value::String(openai_type));
    vars.insert("webhook_id".into(), Value::String(delivery.webhook_id.to_owned()));
    vars.insert("webhook_timestamp".into(), Value::from(delivery.webhook_timestamp));
    vars
}

/// A string field, or "" when OpenAI omitted it (variables keep one type per name).
pub(crate) fn text(object: &Map<String, Value>, key: &str) -> String {
    object.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
}

pub(crate) fn put(vars: &mut Map<String, Value>, key: &str, value: String) {
    vars.insert(key.to_owned(), Value::String(value));
}

/// A text filter parameter; None when unset or blank.
pub(crate) fn text_parameter<'a>(parameters: &'a Parameters, name: &str) -> Option<&'a str> {
    parameters.get(name).and_then(Value::as_str).map(str::trim).filter(|value| !value.is_empty())
}

/// A select parameter, single or multiple; empty when unset.
pub(crate) fn choice_parameter<'a>(parameters: &'a Parameters, name: &str) -> Vec<&'a str> {
    match parameters.get(name) {
        Some(Value::String(one)) => one.split(',').map(str::trim).filter(|v| !v.is_empty()).collect(),
        Some(Value::Array(many)) => {
            many.iter().filter_map(Value::as_str).map(str::trim).filter(|v| !v.is_empty()).collect()
        }
        _ => Vec::new(),
    }
}
