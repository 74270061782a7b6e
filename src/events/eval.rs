//! Evals: `eval.run.succeeded|failed|canceled` (one "l", as OpenAI spells it).

use super::Skip;
use serde_json::{Map, Value};

pub(super) fn variables(data: &Map<String, Value>, vars: &mut Map<String, Value>) -> Result<(), Skip> {
    super::put(vars, "eval_run_id", super::text(data, "id"));
    Ok(())
}
