//! Organization health alerts: `health.alert.triggered` and `health.alert.resolved`
//! (openai-webhooks.md §1.3). The webhook names only the alert notification (`data.id`); the rule,
//! window, dimensions and measurement come from enrichment with an organization Admin API key.

use serde_json::{Map, Value};

use super::{Skip, put, text};

pub(super) fn variables(data: &Map<String, Value>, vars: &mut Map<String, Value>) -> Result<(), Skip> {
    put(vars, "alert_id", text(data, "id"));
    Ok(())
}
