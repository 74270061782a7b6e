//! Fine-tuning jobs: `fine_tuning.job.succeeded|failed|cancelled`.

use serde_json::{Map, Value};

pub(super) fn variables(data: &Map<String, Value>, vars: &mut Map<String, Value>) -> Result<(), String> {
    super::put(vars, "fine_tuning_job_id", super::text(data, "id"));
    Ok(())
}
