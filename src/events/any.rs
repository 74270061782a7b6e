//! `any_event`: every verified delivery, including types this release does not know.

use serde_json::{Map, Value};

use super::Parameters;

pub(super) fn variables(
    openai_type: &str,
    data: &Map<String, Value>,
    parameters: &Parameters,
    vars: &mut Map<String, Value>,
) -> Result<(), String> {
    let wanted = super::choice_parameter(parameters, "event_types");
    if !wanted.is_empty() && !wanted.contains(&openai_type) {
        return Err(format!("event_types does not include {openai_type:?}"));
    }
    super::put(vars, "resource_id", super::text(data, "id"));
    Ok(())
}
