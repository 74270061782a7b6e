/*!
The event catalogue: every declared event, its OpenAI type, its declaration and the family that
turns a verified delivery into workflow variables. One module per OpenAI event family.

The table is the join between declarations and code. Each row embeds its declaration (converted
from `events/<family>/<name>.yaml` by `build.rs`; a missing file fails the build), names the
[`Family`] whose code builds its variables, and that family names the node [`Parameter`]s it reads.
The tidy tests in `tests/it/declarations.rs` check the reverse: every YAML file and provider entry
has a row, and every parameter the YAML declares (name, type, options) is one the code reads.
*/

mod agent;
mod any;
mod batch;
mod call;
pub mod details;
mod eval;
mod fine_tuning;
mod health;
mod params;
mod response;
mod safety;

use serde_json::{Map, Value};

pub use agent::AgentSession;
pub use call::Call;
pub use params::{Parameter, ParameterKind, Parameters};
pub use safety::SafetySubject;

/// Name of the catch-all event that fires for every verified delivery.
pub const ANY_EVENT: &str = "any_event";

/// The code that builds an event's variables; variants carry what differs between rows of one
/// family, so no code compares OpenAI type strings to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Response,
    Batch,
    FineTuning,
    Eval,
    Call(Call),
    Safety(SafetySubject),
    Health,
    AgentSession(AgentSession),
    AgentEnvironment,
    Any,
}

/// The object an enrichable event is about, which invoke fetches from OpenAI
/// (openai-webhooks.md §4). Every enrichable family maps to one, in [`Family::enrichment`] alone;
/// enrichment and its node parameters match on this exhaustively, so a new family or object is a
/// compile error until each place has decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enrichment {
    /// `GET /v1/responses/{id}`.
    Response,
    /// `GET /v1/batches/{id}` (and optionally its output file).
    Batch,
    /// `GET /v1/fine_tuning/jobs/{id}`.
    FineTuningJob,
    /// An eval run: OpenAI shut the Evals API down on 2026-11-30 (openai-webhooks.md §1.2), so
    /// nothing is fetched and `details_error` says why.
    EvalRun,
    /// `GET /v1/safety/alerts/{id}`.
    SafetyAlert,
    /// `GET /v1/safety/cases/{id}`.
    SafetyCase,
    /// `GET /v1/organization/health/alerts/{id}`, with an organization Admin API key only
    /// (openai-webhooks.md §4).
    HealthAlert,
}

impl Family {
    /// What invoke fetches for this family's events; None: nothing (no object to fetch).
    pub fn enrichment(self) -> Option<Enrichment> {
        match self {
            Family::Response => Some(Enrichment::Response),
            Family::Batch => Some(Enrichment::Batch),
            Family::FineTuning => Some(Enrichment::FineTuningJob),
            Family::Eval => Some(Enrichment::EvalRun),
            Family::Safety(SafetySubject::Alert) => Some(Enrichment::SafetyAlert),
            Family::Safety(SafetySubject::Case) => Some(Enrichment::SafetyCase),
            Family::Health => Some(Enrichment::HealthAlert),
            Family::Call(_) | Family::AgentSession(_) | Family::AgentEnvironment | Family::Any => None,
        }
    }

    /// The node parameters this family's code reads, as the event YAML must declare them.
    pub fn parameters(self) -> &'static [Parameter] {
        match self {
            Family::Call(_) => call::PARAMETERS,
            Family::AgentSession(session) => agent::parameters(session),
            Family::Any => any::PARAMETERS,
            Family::Response
            | Family::Batch
            | Family::FineTuning
            | Family::Eval
            | Family::Safety(_)
            | Family::Health => details::parameters_of(self),
            Family::AgentEnvironment => &[],
        }
    }
}

/// One declared event.
#[derive(Debug)]
pub struct EventSpec {
    /// Dify event name: the OpenAI type with `.` replaced by `_` (the Python plugin's names).
    pub name: &'static str,
    /// The OpenAI `type` this event fires for; None for [`ANY_EVENT`].
    pub openai_type: Option<&'static str>,
    pub family: Family,
    /// Path inside the plugin package, as listed in the provider YAML.
    pub path: &'static str,
    /// The declaration as JSON (converted from the YAML at build time).
    pub json: &'static str,
}

macro_rules! events {
    ($( $family:expr, $dir:literal $name:literal $openai:expr ;)*) => {
        /// Every declared event, in the provider's order.
        pub static EVENTS: &[EventSpec] = &[$(
            EventSpec {
                name: $name,
                openai_type: $openai,
                family: $family,
                path: concat!("events/", $dir, "/", $name, ".yaml"),
                json: include_str!(concat!(env!("OUT_DIR"), "/events/", $dir, "/", $name, ".json")),
            },
        )*];
    };
}

events! {
    Family::Response, "response" "response_completed" Some("response.completed");
    Family::Response, "response" "response_cancelled" Some("response.cancelled");
    Family::Response, "response" "response_failed" Some("response.failed");
    Family::Response, "response" "response_incomplete" Some("response.incomplete");
    Family::Batch, "batch" "batch_completed" Some("batch.completed");
    Family::Batch, "batch" "batch_cancelled" Some("batch.cancelled");
    Family::Batch, "batch" "batch_expired" Some("batch.expired");
    Family::Batch, "batch" "batch_failed" Some("batch.failed");
    Family::FineTuning, "fine_tuning" "fine_tuning_job_succeeded" Some("fine_tuning.job.succeeded");
    Family::FineTuning, "fine_tuning" "fine_tuning_job_failed" Some("fine_tuning.job.failed");
    Family::FineTuning, "fine_tuning" "fine_tuning_job_cancelled" Some("fine_tuning.job.cancelled");
    Family::Eval, "eval" "eval_run_succeeded" Some("eval.run.succeeded");
    Family::Eval, "eval" "eval_run_failed" Some("eval.run.failed");
    Family::Eval, "eval" "eval_run_canceled" Some("eval.run.canceled");
    Family::Call(Call::Realtime), "call" "realtime_call_incoming" Some("realtime.call.incoming");
    Family::Call(Call::LiveTransport), "call" "live_transport_incoming" Some("live.transport.incoming");
    Family::Call(Call::LiveTransport), "call" "live_transport_connected" Some("live.transport.connected");
    Family::Call(Call::LiveCall), "call" "live_call_incoming" Some("live.call.incoming");
    Family::Safety(SafetySubject::Alert), "safety" "safety_alert_created" Some("safety.alert.created");
    Family::Safety(SafetySubject::Alert), "safety" "safety_org_alert_created" Some("safety.org_alert.created");
    Family::Safety(SafetySubject::Case), "safety" "safety_warning_issued" Some("safety.warning_issued");
    Family::Safety(SafetySubject::Case), "safety" "safety_deactivation_issued" Some("safety.deactivation_issued");
    Family::Health, "health" "health_alert_triggered" Some("health.alert.triggered");
    Family::Health, "health" "health_alert_resolved" Some("health.alert.resolved");
    Family::AgentSession(AgentSession::Created), "agent" "agent_session_created" Some("agent.session.created");
    Family::AgentSession(AgentSession::ActionRequired), "agent" "agent_session_action_required" Some("agent.session.action_required");
    Family::AgentSession(AgentSession::Running), "agent" "agent_session_in_progress" Some("agent.session.in_progress");
    Family::AgentSession(AgentSession::Running), "agent" "agent_session_idle" Some("agent.session.idle");
    Family::AgentSession(AgentSession::Running), "agent" "agent_session_failed" Some("agent.session.failed");
    Family::AgentEnvironment, "agent" "agent_environment_ready" Some("agent.environment.ready");
    Family::AgentEnvironment, "agent" "agent_environment_failed" Some("agent.environment.failed");
    Family::AgentEnvironment, "agent" "agent_environment_suspended" Some("agent.environment.suspended");
    Family::AgentEnvironment, "agent" "agent_environment_expired" Some("agent.environment.expired");
    Family::Any, "any" "any_event" None;
}

/// The event named `name`.
pub fn by_name(name: &str) -> Option<&'static EventSpec> {
    EVENTS.iter().find(|spec| spec.name == name)
}

/// The event that fires for OpenAI type `openai_type`.
pub fn by_openai_type(openai_type: &str) -> Option<&'static EventSpec> {
    EVENTS.iter().find(|spec| spec.openai_type == Some(openai_type))
}

/// The event's `identity.label` (an I18n object) from its declaration.
pub fn label(spec: &EventSpec) -> Option<Value> {
    let declaration: Value = serde_json::from_str(spec.json).ok()?;
    declaration.get("identity")?.get("label").cloned()
}

/// The OpenAI types this release knows, in declaration order.
pub fn known_openai_types() -> impl Iterator<Item = &'static str> {
    EVENTS.iter().filter_map(|spec| spec.openai_type)
}

/// Event names a verified delivery of `openai_type` fires: its own event (when known) and
/// [`ANY_EVENT`]. Never an undeclared name, so Dify never answers 400 (triggers.md §5.1).
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
    /// The delivery's OpenAI `type` ("" when absent).
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
    Ignore(Skip),
}

/// Why a workflow node does not run for a delivery (invoke answers `cancelled: true`,
/// triggers.md §4.5). The messages name the node's filter, never a value from the webhook body
/// (they reach the logs), except the OpenAI event type, which is not content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    /// The payload Dify passed back holds no OpenAI event object (not one dispatch made).
    #[error("the payload holds no OpenAI event")]
    NoEvent,
    /// The node's event declares another OpenAI type than the delivery's.
    #[error("the delivery is {actual:?}, the event is {expected:?}")]
    OtherType { actual: String, expected: &'static str },
    /// `any_event`'s `event_types` filter does not list the delivery's type.
    #[error("event_types does not include {openai_type:?}")]
    TypeNotChosen { openai_type: String },
    /// A SIP call's From/To header does not contain the node's text.
    #[error("SIP {header} does not contain the node's {parameter}")]
    SipHeader { header: &'static str, parameter: &'static str },
    /// An agent session's `environment_type` is not one the node chose.
    #[error("the session's environment_type is not one of the node's choices")]
    EnvironmentType {
        /// The delivery's value (kept for tests, left out of the message).
        actual: String,
    },
}

/// Builds the variables of `spec` for `delivery`, applying the node's filters (`parameters`), all
/// but `data`: the caller owns the event and moves its `data` in afterwards instead of copying it
/// (it can be most of the event).
pub fn variables_without_data(spec: &EventSpec, delivery: &Delivery<'_>, parameters: &Parameters) -> Outcome {
    let actual = delivery.openai_type();
    if let Some(expected) = spec.openai_type {
        if actual != expected {
            return Outcome::Ignore(Skip::OtherType { actual: actual.to_owned(), expected });
        }
    }
    let mut vars = envelope(delivery);
    let data = delivery.data();
    let verdict = match spec.family {
        Family::Response => response::variables(data, &mut vars),
        Family::Batch => batch::variables(data, &mut vars),
        Family::FineTuning => fine_tuning::variables(data, &mut vars),
        Family::Eval => eval::variables(data, &mut vars),
        Family::Call(call) => call::variables(call, data, parameters, &mut vars),
        Family::Safety(subject) => safety::variables(subject, data, &mut vars),
        Family::Health => health::variables(data, &mut vars),
        Family::AgentSession(session) => agent::session_variables(session, data, parameters, &mut vars),
        Family::AgentEnvironment => agent::environment_variables(data, &mut vars),
        Family::Any => any::variables(actual, data, parameters, &mut vars),
    };
    match verdict {
        Ok(()) => Outcome::Fire(vars),
        Err(reason) => Outcome::Ignore(reason),
    }
}

/// The envelope exactly as the Python plugin exposed it (less `data`, which the callers add), plus
/// the flattened conveniences.
fn envelope(delivery: &Delivery<'_>) -> Map<String, Value> {
    let event = delivery.event;
    let mut vars = Map::new();
    let id = text(event, "id");
    let openai_type = text(event, "type");
    vars.insert("id".into(), Value::String(id.clone()));
    vars.insert("object".into(), event.get("object").cloned().unwrap_or_else(|| "event".into()));
    vars.insert("created_at".into(), event.get("created_at").cloned().unwrap_or(Value::from(0)));
    vars.insert("type".into(), Value::String(openai_type.clone()));
    vars.insert("event_id".into(), Value::String(id));
    vars.insert("event_type".into(), Value::String(openai_type));
    vars.insert("webhook_id".into(), Value::String(delivery.webhook_id.to_owned()));
    vars.insert("webhook_timestamp".into(), Value::from(delivery.webhook_timestamp));
    vars
}

/// A string field, or "" when OpenAI omitted it (variables keep one type per name).
fn text(object: &Map<String, Value>, key: &str) -> String {
    object.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
}

fn put(vars: &mut Map<String, Value>, key: &str, value: String) {
    vars.insert(key.to_owned(), Value::String(value));
}
