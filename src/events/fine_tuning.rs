//! Fine-tuning jobs: `fine_tuning.job.succeeded|failed|cancelled`.

use super::Skip;
use serde_json::{Map, Value};

pub(super) fn variables(data: &Map<String, Value>, vars: &mut Map<String, Value>) -> Result<(), Skip> {
    super::put(vars, "fine_tuning_job_id", super::text(data, "id"));
    Ok(())
}
