//! Agents API: sessions (`agent.session.*`) and environments (`agent.environment.*`).

use serde_json::{Map, Value};

use super::{Parameters, put, text};

pub(super) fn variables(
    openai_type: &str,
    data: &Map<String, Value>,
    parameters: &Parameters,
    vars: &mut Map<String, Value>,
) -> Result<(), String> {
    if openai_type.starts_with("agent.environment.") {
        put(vars, "environment_id", text(data, "id"));
        return Ok(());
    }
    put(vars, "agent_session_id", text(data, "id"));
    if openai_type == "agent.session.action_required" {
        let action = data.get("required_action").and_then(Value::as_object);
        put(vars, "required_action_type", action.map(|a| text(a, "type")).unwrap_or_default());
        return Ok(());
    }
    let environment_type = text(data, "environment_type");
    let wanted = super::choice_parameter(parameters, "environment_type");
    if !wanted.is_empty() && !wanted.contains(&environment_type.as_str()) {
        return Err(format!("environment_type is {environment_type:?}, the node wants {wanted:?}"));
    }
    put(vars, "environment_type", environment_type);
    put(vars, "environment_id", text(data, "environment_id"));
    if openai_type == "agent.session.created" {
        let connect = data.get("connect").and_then(Value::as_object);
        put(vars, "connect_remote_url", connect.map(|c| text(c, "remote_url")).unwrap_or_default());
    }
    Ok(())
}
