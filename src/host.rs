//! A stand-in for Dify's side of the protocol: spawns the plugin binary over pipes, writes request
//! lines and matches `stream`/`error`/`end` answers by session. `demo` and `dev` use it to play
//! Dify for real, through the same stdio protocol the daemon speaks.

use std::collections::HashMap;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{Mutex, oneshot, watch};

use crate::protocol::ErrorData;

type Waiters = Arc<std::sync::Mutex<HashMap<String, Pending>>>;

struct Pending {
    result: Option<Result<Value, ErrorData>>,
    done: oneshot::Sender<Result<Value, ErrorData>>,
}

pub struct PluginProcess {
    child: Child,
    stdin: Mutex<Option<ChildStdin>>,
    waiters: Waiters,
    next_session: AtomicU64,
    heartbeats: watch::Receiver<u64>,
}

impl PluginProcess {
    /// Starts `exe serve` and waits for its first heartbeat (the daemon's readiness signal).
    pub async fn spawn(exe: &Path) -> std::io::Result<Self> {
        let mut child = Command::new(exe)
            .arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .env_remove(crate::cli::LAUNCHER_COPY_VAR)
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().expect("piped");
        let stdin = child.stdin.take();
        let waiters: Waiters = Arc::default();
        let (beat_tx, mut heartbeats) = watch::channel(0u64);
        tokio::spawn(read_answers(BufReader::new(stdout), waiters.clone(), beat_tx));
        tokio::time::timeout(Duration::from_secs(10), heartbeats.wait_for(|count| *count > 0))
            .await
            .map_err(|_| std::io::Error::other("plugin sent no heartbeat within 10 s"))?
            .map_err(|_| std::io::Error::other("plugin exited before its first heartbeat"))?;
        Ok(PluginProcess { child, stdin: Mutex::new(stdin), waiters, next_session: AtomicU64::new(1), heartbeats })
    }

    pub fn heartbeats_seen(&self) -> u64 {
        *self.heartbeats.borrow()
    }

    /// Runs one request session; `data` is the request's `data` object.
    pub async fn call(&self, data: Value) -> std::io::Result<Result<Value, ErrorData>> {
        let session_id = format!("host-{}", self.next_session.fetch_add(1, Ordering::Relaxed));
        let (done, answer) = oneshot::channel();
        // Registered before writing, so a fast answer cannot arrive unmatched.
        self.waiters.lock().expect("waiters").insert(session_id.clone(), Pending { result: None, done });
        let line = json!({"session_id": session_id, "conversation_id": null, "message_id": null, "app_id": null,
            "endpoint_id": null, "context": null, "event": "request", "data": data});
        let mut bytes = serde_json::to_vec(&line)?;
        bytes.push(b'\n');
        {
            let mut stdin = self.stdin.lock().await;
            let pipe = stdin.as_mut().ok_or_else(|| std::io::Error::other("plugin input already closed"))?;
            pipe.write_all(&bytes).await?;
            pipe.flush().await?;
        }
        match tokio::time::timeout(Duration::from_secs(30), answer).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_)) => Err(std::io::Error::other("plugin exited without ending the session")),
            Err(_) => Err(std::io::Error::other("no answer within 30 s")),
        }
    }

    /// Closes the plugin's input and waits for it to exit, as the daemon's graceful stop does.
    pub async fn close(mut self) -> std::io::Result<ExitStatus> {
        drop(self.stdin.lock().await.take());
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .map_err(|_| std::io::Error::other("plugin did not exit within 30 s of EOF"))?
    }
}

async fn read_answers<R: tokio::io::AsyncBufRead + Unpin>(
    mut stdout: R,
    waiters: Waiters,
    heartbeats: watch::Sender<u64>,
) {
    let mut line = String::new();
    loop {
        line.clear();
        match stdout.read_line(&mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        match message["event"].as_str() {
            Some("heartbeat") => heartbeats.send_modify(|count| *count += 1),
            Some("session") => {
                let Some(session_id) = message["session_id"].as_str() else {
                    continue;
                };
                let mut waiters = waiters.lock().expect("waiters");
                let data = &message["data"];
                match data["type"].as_str() {
                    Some("stream") => {
                        if let Some(pending) = waiters.get_mut(session_id) {
                            pending.result.get_or_insert(Ok(data["data"].clone()));
                        }
                    }
                    Some("error") => {
                        if let Some(pending) = waiters.get_mut(session_id) {
                            let error = serde_json::from_value(data["data"].clone())
                                .unwrap_or_else(|_| ErrorData::new("MalformedError", data["data"].to_string()));
                            pending.result = Some(Err(error));
                        }
                    }
                    Some("end") => {
                        if let Some(pending) = waiters.remove(session_id) {
                            let result = pending.result.unwrap_or_else(|| {
                                Err(ErrorData::new("EmptySession", "session ended without a result"))
                            });
                            let _ = pending.done.send(result);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

/// The `data` of a `dispatch_trigger_event` request, as the daemon sends it (triggers.md §4.1).
pub fn dispatch_request(raw_request: &[u8], secret: &str, endpoint: &str) -> Value {
    json!({
        "action": "dispatch_trigger_event", "type": "trigger", "user_id": "", "provider": crate::provider::PROVIDER,
        "credentials": {}, "credential_type": "unauthorized",
        "subscription": subscription(secret, endpoint),
        "raw_http_request": hex::encode(raw_request),
    })
}

/// The `data` of an `invoke_trigger_event` request (triggers.md §4.2).
pub fn invoke_request(
    event: &str,
    raw_request: &[u8],
    payload: &Value,
    parameters: &Value,
    secret: &str,
    endpoint: &str,
) -> Value {
    json!({
        "action": "invoke_trigger_event", "type": "trigger", "user_id": "", "provider": crate::provider::PROVIDER,
        "event": event, "credentials": {}, "credential_type": "unauthorized",
        "subscription": subscription(secret, endpoint),
        "raw_http_request": hex::encode(raw_request),
        "parameters": parameters, "payload": payload,
    })
}

fn subscription(secret: &str, endpoint: &str) -> Value {
    json!({"endpoint": endpoint, "expires_at": -1, "parameters": {}, "properties": {"webhook_secret": secret}})
}
