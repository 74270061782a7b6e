//! Safety: misalignment alerts (`safety.alert.created`, `safety.org_alert.created`) carry an alert
//! id; enforcement notices (`safety.warning_issued`, `safety.deactivation_issued`) carry a case id.

use super::Skip;
use serde_json::{Map, Value};

/// What a safety event's `data.id` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SafetySubject {
    /// An alert: `alert_id`.
    Alert,
    /// An enforcement case: `case_id`.
    Case,
}

pub(super) fn variables(
    subject: SafetySubject,
    data: &Map<String, Value>,
    vars: &mut Map<String, Value>,
) -> Result<(), Skip> {
    let key = match subject {
        SafetySubject::Alert => "alert_id",
        SafetySubject::Case => "case_id",
    };
    super::put(vars, key, super::text(data, "id"));
    Ok(())
}
