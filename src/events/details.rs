//! The node parameters of enrichment (fetching the object an event is about): declared here, with
//! the event table, so the families can name them without the table depending on the fetching code.

use super::{Enrichment, Family, Parameter, ParameterKind};

/// `fetch_details`: fetch the object the event is about (boolean, default on).
pub const FETCH_DETAILS: Parameter =
    Parameter { name: "fetch_details", kind: ParameterKind::Boolean { default: true } };
/// `download_output` (batches): read the output file's JSONL lines (boolean, default off).
pub const DOWNLOAD_OUTPUT: Parameter =
    Parameter { name: "download_output", kind: ParameterKind::Boolean { default: false } };
/// `output_max_bytes` (batches): how much of the output file to read, in bytes.
pub const OUTPUT_MAX_BYTES: Parameter = Parameter {
    name: "output_max_bytes",
    kind: ParameterKind::Number {
        default: DEFAULT_OUTPUT_BYTES as i64,
        min: MIN_OUTPUT_BYTES as i64,
        max: MAX_OUTPUT_BYTES as i64,
    },
};
/// Name of the eval events' `eval_id` parameter.
pub const EVAL_ID: &str = "eval_id";
/// `eval_id` (eval runs): the eval the run belongs to; a dynamic select of the project's evals.
pub const EVAL_ID_PARAMETER: Parameter = Parameter { name: EVAL_ID, kind: ParameterKind::DynamicSelect };

pub const DEFAULT_OUTPUT_BYTES: usize = 1024 * 1024;
pub const MIN_OUTPUT_BYTES: usize = 1024;
/// The invoke answer is one line under 4 MiB: the output lines must leave room for the rest.
pub const MAX_OUTPUT_BYTES: usize = 3 * 1024 * 1024;

/// The node parameters enrichment reads for `family`.
pub fn parameters_of(family: Family) -> &'static [Parameter] {
    match family.enrichment() {
        None => &[],
        Some(
            Enrichment::Response
            | Enrichment::FineTuningJob
            | Enrichment::SafetyAlert
            | Enrichment::SafetyCase
            | Enrichment::HealthAlert,
        ) => &[FETCH_DETAILS],
        Some(Enrichment::Batch) => &[FETCH_DETAILS, DOWNLOAD_OUTPUT, OUTPUT_MAX_BYTES],
        Some(Enrichment::EvalRun) => &[FETCH_DETAILS, EVAL_ID_PARAMETER],
    }
}
