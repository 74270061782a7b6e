//! `any_event`: every verified delivery, including types this release does not know.

use serde_json::{Map, Value};

use super::{Parameter, ParameterKind, Parameters, Skip};

const EVENT_TYPES: Parameter = Parameter { name: "event_types", kind: ParameterKind::KnownTypes { multiple: true } };
pub(super) const PARAMETERS: &[Parameter] = &[EVENT_TYPES];

pub(super) fn variables(
    openai_type: &str,
    data: &Map<String, Value>,
    parameters: &Parameters,
    vars: &mut Map<String, Value>,
) -> Result<(), Skip> {
    let wanted = EVENT_TYPES.choices_in(parameters);
    if !wanted.is_empty() && !wanted.contains(&openai_type) {
        return Err(Skip::TypeNotChosen { openai_type: openai_type.to_owned() });
    }
    super::put(vars, "resource_id", super::text(data, "id"));
    Ok(())
}
