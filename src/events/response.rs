//! Responses API background responses: `response.completed|cancelled|failed|incomplete`.

use super::Skip;
use serde_json::{Map, Value};

pub(super) fn variables(data: &Map<String, Value>, vars: &mut Map<String, Value>) -> Result<(), Skip> {
    super::put(vars, "response_id", super::text(data, "id"));
    Ok(())
}
