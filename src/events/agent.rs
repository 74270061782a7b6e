//! Agents API: sessions (`agent.session.*`) and environments (`agent.environment.*`).

use serde_json::{Map, Value};

use super::{Parameter, ParameterKind, Parameters, Skip, put, text};

/// Which session event a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentSession {
    /// `agent.session.created`: also `connect.remote_url`.
    Created,
    /// `agent.session.action_required`: `required_action.type`, no environment filter.
    ActionRequired,
    /// `in_progress`, `idle`, `failed`.
    Running,
}

const ENVIRONMENT_TYPE: Parameter = Parameter {
    name: "environment_type",
    kind: ParameterKind::Select { options: &["none", "openai_hosted", "self_hosted"], multiple: false },
};

pub(super) fn parameters(session: AgentSession) -> &'static [Parameter] {
    match session {
        AgentSession::ActionRequired => &[],
        AgentSession::Created | AgentSession::Running => &[ENVIRONMENT_TYPE],
    }
}

pub(super) fn session_variables(
    session: AgentSession,
    data: &Map<String, Value>,
    parameters: &Parameters,
    vars: &mut Map<String, Value>,
) -> Result<(), Skip> {
    put(vars, "agent_session_id", text(data, "id"));
    if session == AgentSession::ActionRequired {
        let action = data.get("required_action").and_then(Value::as_object);
        put(vars, "required_action_type", action.map(|a| text(a, "type")).unwrap_or_default());
        return Ok(());
    }
    let environment_type = text(data, "environment_type");
    let wanted = ENVIRONMENT_TYPE.choices_in(parameters);
    if !wanted.is_empty() && !wanted.contains(&environment_type.as_str()) {
        return Err(Skip::EnvironmentType { actual: environment_type });
    }
    put(vars, "environment_type", environment_type);
    put(vars, "environment_id", text(data, "environment_id"));
    if session == AgentSession::Created {
        let connect = data.get("connect").and_then(Value::as_object);
        put(vars, "connect_remote_url", connect.map(|c| text(c, "remote_url")).unwrap_or_default());
    }
    Ok(())
}

pub(super) fn environment_variables(data: &Map<String, Value>, vars: &mut Map<String, Value>) -> Result<(), Skip> {
    put(vars, "environment_id", text(data, "id"));
    Ok(())
}
