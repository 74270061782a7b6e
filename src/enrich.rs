/*!
Enrichment: the object an event is about, fetched from OpenAI in `invoke_trigger_event` and added
to the workflow variables (openai-webhooks.md §4). Dispatch never calls OpenAI, so enrichment never
delays the answer to OpenAI or other deliveries.

Each enrichable family has a `fetch_details` node parameter (default on) and a fixed set of
variables ([`variables_of`]), always present with empty values ("", 0, false, {}, []) so a
workflow can reference them whatever happened. `details_fetched` says whether they hold OpenAI's
answer; `details_error` says why not (no key, 404 for test events, 401/403, 429 after retries,
timeout, a malformed or oversized answer). A failure never fails the run: the plain variables are
delivered either way. One invoke spends at most its budget on OpenAI (20 s by default,
`OPENAI_TRIGGER_API_TIMEOUT`).
*/

use serde_json::{Map, Value, json};

use crate::events::details::{
    DEFAULT_OUTPUT_BYTES, DOWNLOAD_OUTPUT, FETCH_DETAILS, MAX_OUTPUT_BYTES, MIN_OUTPUT_BYTES, OUTPUT_MAX_BYTES,
};
use crate::events::{Enrichment, Family, Parameter, ParameterKind, Parameters};

pub use crate::events::details::parameters_of;
use crate::openai::{Account, ApiError, Budget, OpenAi, is_safe_id};

/// `details_error` when no key is available.
pub const NO_KEY_MESSAGE: &str = "no OpenAI API key: add one to this subscription (manual subscriptions have an optional API key field) to receive details";

/// Output files downloaded at once, across all sessions.
const MAX_CONCURRENT_DOWNLOADS: usize = 4;
static DOWNLOADS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT_DOWNLOADS);

/// `details_error` of a health alert without an organization Admin API key.
pub const NO_ADMIN_KEY_MESSAGE: &str = "no organization Admin API key: health alert details need one (sk-admin-…; OpenAI refuses project keys for GET /v1/organization/health/alerts): add it to this subscription's Admin API key field";

/// `details_error` of every eval run: the API is gone (openai-webhooks.md §1.2), so no call is made.
pub const EVALS_SHUT_DOWN_MESSAGE: &str =
    "OpenAI shut down the Evals API on 2026-11-30: an eval run's details can no longer be fetched";

/// The JSON type of an added variable, as its `output_schema` declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarType {
    String,
    Integer,
    Boolean,
    Object,
    Array,
}

impl VarType {
    pub fn schema_type(self) -> &'static str {
        match self {
            VarType::String => "string",
            VarType::Integer => "integer",
            VarType::Boolean => "boolean",
            VarType::Object => "object",
            VarType::Array => "array",
        }
    }

    /// The value a variable of this type has when there is nothing to put in it.
    pub fn empty(self) -> Value {
        match self {
            VarType::String => json!(""),
            VarType::Integer => json!(0),
            VarType::Boolean => json!(false),
            VarType::Object => json!({}),
            VarType::Array => json!([]),
        }
    }
}

use VarType::{Array, Boolean, Integer, Object, String as Str};

const COMMON: &[(&str, VarType)] = &[("details_fetched", Boolean), ("details_error", Str)];
const RESPONSE: &[(&str, VarType)] = &[
    ("status", Str),
    ("model", Str),
    ("output_text", Str),
    ("usage", Object),
    ("metadata", Object),
    ("error", Object),
    ("incomplete_details", Object),
    ("response", Object),
];
const BATCH: &[(&str, VarType)] = &[
    ("status", Str),
    ("request_counts", Object),
    ("output_file_id", Str),
    ("error_file_id", Str),
    ("endpoint", Str),
    ("metadata", Object),
    ("batch", Object),
    ("output_lines", Array),
    ("output_truncated", Boolean),
];
const FINE_TUNING: &[(&str, VarType)] = &[
    ("status", Str),
    ("fine_tuned_model", Str),
    ("model", Str),
    ("trained_tokens", Integer),
    ("error", Object),
    ("job", Object),
];
const EVAL: &[(&str, VarType)] = &[
    ("status", Str),
    ("report_url", Str),
    ("result_counts", Object),
    ("per_testing_criteria_results", Array),
    ("eval_id", Str),
    ("error", Object),
    ("run", Object),
];
const ALERT: &[(&str, VarType)] = &[
    ("error_type", Str),
    ("reason", Str),
    ("model", Str),
    ("request_id", Str),
    ("response_id", Str),
    ("request_paused", Boolean),
    ("detailed_explanation", Str),
    ("alert", Object),
];
const CASE: &[(&str, VarType)] = &[("entity_identifier", Str), ("reason", Str), ("notice", Object), ("case", Object)];
const HEALTH_ALERT: &[(&str, VarType)] = &[
    ("alert_rule_id", Str),
    ("occurred_at", Integer),
    ("window", Object),
    ("dimensions", Object),
    ("measurement", Object),
    ("alert", Object),
];

/// The variables enrichment adds to `family`'s events (the common two first); empty when the
/// family is not enrichable.
pub fn variables_of(family: Family) -> Vec<(&'static str, VarType)> {
    let specific = match family.enrichment() {
        None => return Vec::new(),
        Some(Enrichment::Response) => RESPONSE,
        Some(Enrichment::Batch) => BATCH,
        Some(Enrichment::FineTuningJob) => FINE_TUNING,
        Some(Enrichment::EvalRun) => EVAL,
        Some(Enrichment::SafetyAlert) => ALERT,
        Some(Enrichment::SafetyCase) => CASE,
        Some(Enrichment::HealthAlert) => HEALTH_ALERT,
    };
    COMMON.iter().chain(specific).copied().collect()
}

/// Whether `family`'s events fetch details.
pub fn is_enrichable(family: Family) -> bool {
    family.enrichment().is_some()
}

/// What the key for enrichment comes from.
#[derive(Debug)]
pub enum KeySource {
    Found(Account),
    /// No key: `details_error` is this message.
    Missing(&'static str),
    Invalid(String),
}

/// Adds `family`'s detail variables for the object `data.id` names to `vars`.
pub async fn add_details(
    api: &OpenAi,
    key: &KeySource,
    family: Family,
    data: &Map<String, Value>,
    parameters: &Parameters,
    budget: &Budget,
    vars: &mut Map<String, Value>,
) {
    let declared = variables_of(family);
    for (name, kind) in &declared {
        vars.insert((*name).to_owned(), kind.empty());
    }
    let Some(enrichment) = family.enrichment() else { return };
    if !flag(parameters, &FETCH_DETAILS) {
        return;
    }
    if enrichment == Enrichment::EvalRun {
        vars.insert("details_error".into(), json!(EVALS_SHUT_DOWN_MESSAGE));
        return;
    }
    let account = match key {
        KeySource::Found(account) => account,
        KeySource::Missing(message) => {
            vars.insert("details_error".into(), json!(message));
            return;
        }
        KeySource::Invalid(reason) => {
            vars.insert("details_error".into(), json!(reason));
            return;
        }
    };
    let id = data.get("id").and_then(Value::as_str).unwrap_or_default();
    if !is_safe_id(id) {
        vars.insert("details_error".into(), json!("the event names no usable object id"));
        return;
    }
    let fetched = match enrichment {
        Enrichment::Response => response(api, account, id, budget).await,
        Enrichment::Batch => batch(api, account, id, parameters, budget).await,
        Enrichment::FineTuningJob => {
            fetch_into(api, account, &format!("fine_tuning/jobs/{id}"), "job", FINE_TUNING, budget).await
        }
        // Answered above, without a call.
        Enrichment::EvalRun => return,
        Enrichment::SafetyAlert => {
            fetch_into(api, account, &format!("safety/alerts/{id}"), "alert", ALERT, budget).await
        }
        Enrichment::SafetyCase => fetch_into(api, account, &format!("safety/cases/{id}"), "case", CASE, budget).await,
        Enrichment::HealthAlert => {
            let path = format!("organization/health/alerts/{id}");
            fetch_into(api, account, &path, "alert", HEALTH_ALERT, budget).await
        }
    };
    match fetched {
        Ok(details) => {
            for (name, value) in details {
                vars.insert(name, value);
            }
            vars.insert("details_fetched".into(), json!(true));
        }
        Err(reason) => {
            tracing::info!(family = ?family, "event details not fetched: {reason}");
            vars.insert("details_error".into(), json!(reason.to_string()));
        }
    }
}

/// A boolean node parameter: true/false, "true"/"false", or its default when unset.
fn flag(parameters: &Parameters, parameter: &Parameter) -> bool {
    let default = matches!(parameter.kind, ParameterKind::Boolean { default: true });
    match parameters.get(parameter.name) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => default,
        },
        Some(Value::Number(n)) => n.as_f64().is_some_and(|n| n != 0.0),
        _ => default,
    }
}

fn output_cap(parameters: &Parameters) -> usize {
    let asked = match parameters.get(OUTPUT_MAX_BYTES.name) {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match asked {
        Some(n) if n.is_finite() && n > 0.0 => (n as usize).clamp(MIN_OUTPUT_BYTES, MAX_OUTPUT_BYTES),
        _ => DEFAULT_OUTPUT_BYTES,
    }
}

type Details = Vec<(String, Value)>;

/// Why the details are missing: the text of `details_error` (never a key, never a body).
#[derive(Debug, thiserror::Error)]
enum DetailsError {
    /// The call for the object itself failed.
    #[error("{}", .0.summary())]
    Api(ApiError),
    /// The process is shutting down while the batch output waited for a download slot.
    #[error("the batch was fetched, but downloads are shut down")]
    DownloadsClosed,
    /// The batch's output file could not be read.
    #[error("the batch was fetched, but its output file was not: {}", .0.summary())]
    OutputFile(ApiError),
}

/// The named fields of `object` (null → the type's empty value), plus the whole object as `whole`.
fn pick(object: &Value, whole: &str, fields: &[(&str, VarType)]) -> Details {
    let mut out = Vec::new();
    for (name, kind) in fields {
        if *name == whole {
            out.push((whole.to_owned(), object.clone()));
            continue;
        }
        let value = match object.get(*name) {
            Some(value) if json_type_matches(value, *kind) => value.clone(),
            _ => kind.empty(),
        };
        out.push(((*name).to_owned(), value));
    }
    out
}

fn json_type_matches(value: &Value, kind: VarType) -> bool {
    match kind {
        Str => value.is_string(),
        Integer => value.is_i64() || value.is_u64(),
        Boolean => value.is_boolean(),
        Object => value.is_object(),
        Array => value.is_array(),
    }
}

async fn fetch_into(
    api: &OpenAi,
    account: &Account,
    path: &str,
    whole: &str,
    fields: &[(&str, VarType)],
    budget: &Budget,
) -> Result<Details, DetailsError> {
    let object = api.get(account, path, &[], budget).await.map_err(DetailsError::Api)?;
    Ok(pick(&object, whole, fields))
}

async fn response(api: &OpenAi, account: &Account, id: &str, budget: &Budget) -> Result<Details, DetailsError> {
    let object = api.get(account, &format!("responses/{id}"), &[], budget).await.map_err(DetailsError::Api)?;
    let mut details = pick(&object, "response", RESPONSE);
    for (name, value) in &mut details {
        if name == "output_text" {
            *value = Value::String(output_text(&object));
        }
    }
    Ok(details)
}

/// The text of a response: the `text` of every `output_text` part of every `message` item in
/// `output[]`, in order (the SDKs' `output_text` convenience; the API has no such field).
pub fn output_text(response: &Value) -> String {
    let mut text = String::new();
    let items = response.get("output").and_then(Value::as_array).into_iter().flatten();
    for item in items.filter(|item| item.get("type").and_then(Value::as_str) == Some("message")) {
        let parts = item.get("content").and_then(Value::as_array).into_iter().flatten();
        for part in parts.filter(|part| part.get("type").and_then(Value::as_str) == Some("output_text")) {
            if let Some(piece) = part.get("text").and_then(Value::as_str) {
                text.push_str(piece);
            }
        }
    }
    text
}

async fn batch(
    api: &OpenAi,
    account: &Account,
    id: &str,
    parameters: &Parameters,
    budget: &Budget,
) -> Result<Details, DetailsError> {
    let object = api.get(account, &format!("batches/{id}"), &[], budget).await.map_err(DetailsError::Api)?;
    let mut details = pick(&object, "batch", BATCH);
    let file = object.get("output_file_id").and_then(Value::as_str).filter(|f| is_safe_id(f));
    if flag(parameters, &DOWNLOAD_OUTPUT) {
        if let Some(file) = file {
            let cap = output_cap(parameters);
            // Output files are the one large thing read: a few at a time bounds the memory of many
            // invokes at once (each holds its file's bytes and their JSON).
            let Ok(_permit) = DOWNLOADS.acquire().await else {
                return Err(DetailsError::DownloadsClosed);
            };
            let (bytes, cut) = api
                .download(account, &format!("files/{file}/content"), cap, budget)
                .await
                .map_err(DetailsError::OutputFile)?;
            let mut lines = Some(jsonl_lines(&bytes, cut));
            drop(bytes);
            for (name, value) in &mut details {
                match name.as_str() {
                    "output_lines" => *value = Value::Array(lines.take().unwrap_or_default()),
                    "output_truncated" => *value = Value::Bool(cut),
                    _ => {}
                }
            }
        }
    }
    Ok(details)
}

/// The complete lines of a JSONL file as objects; a line that is not a JSON object is kept as
/// `{"invalid_line": text}`. When `cut`, the last (partial) line is dropped.
pub fn jsonl_lines(bytes: &[u8], cut: bool) -> Vec<Value> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines: Vec<&str> = text.split('\n').collect();
    if cut || text.ends_with('\n') {
        lines.pop();
    }
    lines
        .into_iter()
        .map(|line| line.trim_end_matches('\r'))
        .filter(|line| !line.trim().is_empty())
        .map(|line| match serde_json::from_str::<Value>(line) {
            Ok(object @ Value::Object(_)) => object,
            _ => json!({"invalid_line": dify_plugin::wire::truncate(line, 1000)}),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::SafetySubject;

    #[test]
    fn output_text_joins_output_text_parts_of_messages_in_order() {
        let response = json!({"output": [
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "no"}]},
            {"type": "message", "content": [
                {"type": "output_text", "text": "Hello"},
                {"type": "refusal", "refusal": "no"},
                {"type": "output_text", "text": ", world"}]},
            {"type": "function_call", "arguments": "{}"},
            {"type": "message", "content": [{"type": "output_text", "text": "!"}]}
        ]});
        assert_eq!(output_text(&response), "Hello, world!");
        assert_eq!(output_text(&json!({"output": null})), "");
        assert_eq!(output_text(&json!({})), "");
    }

    #[test]
    fn jsonl_lines_keep_whole_lines_only() {
        let text = b"{\"a\":1}\n{\"b\":2}\nnot json\n{\"c\":";
        assert_eq!(
            jsonl_lines(text, true),
            vec![json!({"a": 1}), json!({"b": 2}), json!({"invalid_line": "not json"})]
        );
        assert_eq!(jsonl_lines(b"{\"a\":1}\r\n{\"b\":2}", false), vec![json!({"a": 1}), json!({"b": 2})]);
        assert_eq!(jsonl_lines(b"", false), Vec::<Value>::new());
    }

    #[test]
    fn pick_keeps_declared_types() {
        let object =
            json!({"status": "completed", "model": null, "usage": {"total_tokens": 3}, "error": null, "metadata": "x"});
        let details: Map<String, Value> = pick(&object, "response", RESPONSE).into_iter().collect();
        assert_eq!(details["status"], "completed");
        assert_eq!(details["model"], "");
        assert_eq!(details["usage"], json!({"total_tokens": 3}));
        assert_eq!(details["error"], json!({}));
        assert_eq!(details["metadata"], json!({}));
        assert_eq!(details["response"], object);
    }

    #[test]
    fn flags_and_caps_read_loose_values() {
        let params = |v: Value| v.as_object().cloned().unwrap();
        assert!(flag(&params(json!({})), &FETCH_DETAILS));
        assert!(!flag(&params(json!({"fetch_details": false})), &FETCH_DETAILS));
        assert!(!flag(&params(json!({"fetch_details": "false"})), &FETCH_DETAILS));
        assert!(!flag(&params(json!({})), &DOWNLOAD_OUTPUT));
        assert!(flag(&params(json!({"download_output": "true"})), &DOWNLOAD_OUTPUT));
        assert_eq!(output_cap(&params(json!({}))), DEFAULT_OUTPUT_BYTES);
        assert_eq!(output_cap(&params(json!({"output_max_bytes": 10}))), MIN_OUTPUT_BYTES);
        assert_eq!(output_cap(&params(json!({"output_max_bytes": 1e12}))), MAX_OUTPUT_BYTES);
        assert_eq!(output_cap(&params(json!({"output_max_bytes": "2048"}))), 2048);
    }

    #[test]
    fn every_enrichable_family_reads_fetch_details() {
        for family in [
            Family::Response,
            Family::Batch,
            Family::FineTuning,
            Family::Eval,
            Family::Safety(SafetySubject::Case),
            Family::Health,
        ] {
            assert!(is_enrichable(family));
            assert_eq!(parameters_of(family)[0], FETCH_DETAILS);
            assert_eq!(variables_of(family)[0].0, "details_fetched");
        }
        assert!(!is_enrichable(Family::Any));
    }
}
