//! Batch API: `batch.completed|cancelled|expired|failed`.

use super::Skip;
use serde_json::{Map, Value};

pub(super) fn variables(data: &Map<String, Value>, vars: &mut Map<String, Value>) -> Result<(), Skip> {
    super::put(vars, "batch_id", super::text(data, "id"));
    Ok(())
}
