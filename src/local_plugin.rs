//! The plugin as `demo` and `dev` run it: this very binary started as `serve` over pipes with an
//! in-memory plugin storage, the way the daemon runs it, and the few variables a person reads to
//! see that each event was understood. Both commands use it; neither depends on the other.

use serde_json::Value;

use dify_plugin::host::{MemoryStorage, PluginProcess, StorageMode};

use crate::console::fit;

/// Starts this very binary as `serve` over pipes, as the daemon would, with an in-memory plugin
/// storage (the daemon's, for the shared replay memory) sized as the manifest asks.
pub(crate) async fn spawn_plugin(exe: &std::path::Path) -> std::io::Result<PluginProcess> {
    let mut command = tokio::process::Command::new(exe);
    command.arg("serve").env_remove(crate::launcher::COPY_VAR);
    let storage = MemoryStorage::with_quota(crate::shared_dedupe::MANIFEST_STORAGE_BYTES);
    PluginProcess::spawn(command, StorageMode::Memory(storage)).await
}

/// The family-specific variables, which show each event was understood.
pub(crate) fn key_variables(variables: &Value, wide: bool) -> String {
    const KEYS: &[&str] = &[
        "response_id",
        "batch_id",
        "fine_tuning_job_id",
        "eval_run_id",
        "call_id",
        "session_id",
        "sip_from",
        "alert_id",
        "case_id",
        "agent_session_id",
        "environment_type",
        "required_action_type",
        "environment_id",
    ];
    let parts: Vec<String> = KEYS
        .iter()
        .filter_map(|key| {
            variables
                .get(*key)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(|v| if wide { format!("{key}={v}") } else { format!("{key}={}", fit(v, 16)) })
        })
        .collect();
    parts.join(" ")
}
