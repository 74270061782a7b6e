//! Safety: misalignment alerts (`safety.alert.created`, `safety.org_alert.created`) carry an alert
//! id; enforcement notices (`safety.warning_issued`, `safety.deactivation_issued`) carry a case id.

use serde_json::{Map, Value};

pub(super) fn variables(
    openai_type: &str,
    data: &Map<String, Value>,
    vars: &mut Map<String, Value>,
) -> Result<(), String> {
    let key = if openai_type.ends_with("alert.created") { "alert_id" } else { "case_id" };
    super::put(vars, key, super::text(data, "id"));
    Ok(())
}
