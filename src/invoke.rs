/*!
`invoke_trigger_event` (triggers.md §4.2): one routed event → the workflow variables its event
declares (or `cancelled: true` when a node's filter or the type does not match), and, for the
families that have them, the object the event is about, fetched from OpenAI within the action's
budget ([`crate::enrich`]).
*/

use std::time::Duration;

use dify_plugin::Action;
use dify_plugin::raw_http::HttpRequest;
use dify_plugin::trigger::{InvokeRequest, InvokeResponse};
use serde_json::{Map, Value};

use crate::dispatch::MAX_BODY_BYTES;
use crate::enrich::{self, KeySource};
use crate::error::PluginError;
use crate::events::{self, Delivery, Enrichment, Outcome};
use crate::openai::{Account, Budget, OpenAi};
use crate::signature;
use crate::subscription::SubscriptionProperties;

/// An invoke answer larger than this drops the whole fetched objects (the line limit is 4 MiB).
const MAX_VARIABLES_BYTES: usize = 3584 * 1024;

/// Invoke with the process's OpenAI client, the action's `now` (Unix seconds, read once from the
/// provider's clock) and what it may spend on OpenAI.
pub(crate) struct Invoker<'a> {
    pub(crate) api: &'a OpenAi,
    pub(crate) now: i64,
    pub(crate) budget: Duration,
}

impl Invoker<'_> {
    pub(crate) async fn invoke(
        &self,
        request: InvokeRequest<'_, SubscriptionProperties>,
    ) -> Result<InvokeResponse, PluginError> {
        if request.event.is_empty() {
            return Err(PluginError::MissingField { action: Action::InvokeTriggerEvent, field: "event" });
        }
        let name = request.event.into_owned();
        let spec = events::by_name(&name).ok_or_else(|| PluginError::UnknownEvent { event: name.clone() })?;
        let mut payload = request.payload;
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
                None => return Ok(cancelled(&name, &events::Skip::NoEvent)),
            },
        };
        let delivery = Delivery { event: &event, webhook_id: &webhook_id, webhook_timestamp };
        let parameters = request.parameters;
        let mut variables = match events::variables_without_data(spec, &delivery, &parameters) {
            Outcome::Fire(variables) => variables,
            Outcome::Ignore(reason) => return Ok(cancelled(&name, &reason)),
        };
        if enrich::is_enrichable(spec.family) {
            let properties = request.subscription.properties;
            let key = key_source(spec.family.enrichment(), &request.credentials, &properties);
            let empty = Map::new();
            let data = event.get("data").and_then(Value::as_object).unwrap_or(&empty);
            let budget = Budget::new(self.budget, self.now);
            enrich::add_details(self.api, &key, spec.family, data, &parameters, &budget, &mut variables).await;
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
        Ok(InvokeResponse::variables(variables))
    }
}

/// The key enrichment uses: the constructor's credentials, else a manual subscription's optional
/// properties; `api_key` for project objects, `admin_api_key` for health alerts (only an
/// organization Admin API key may read them, openai-webhooks.md §4).
fn key_source(
    enrichment: Option<Enrichment>,
    credentials: &Map<String, Value>,
    properties: &SubscriptionProperties,
) -> KeySource {
    let (found, missing) = if enrichment == Some(Enrichment::HealthAlert) {
        let found = match Account::admin_from_settings(credentials) {
            Ok(None) => properties.admin_account(),
            other => other,
        };
        (found, enrich::NO_ADMIN_KEY_MESSAGE)
    } else {
        let found = match Account::from_settings(credentials) {
            Ok(None) => properties.account(),
            other => other,
        };
        (found, enrich::NO_KEY_MESSAGE)
    };
    match found {
        Ok(Some(account)) => KeySource::Found(account),
        Ok(None) => KeySource::Missing(missing),
        Err(err) => KeySource::Invalid(err.to_string()),
    }
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

fn cancelled(event: &str, reason: &events::Skip) -> InvokeResponse {
    tracing::info!(event, %reason, "event ignored for this workflow");
    InvokeResponse::cancelled()
}
