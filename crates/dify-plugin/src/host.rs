/*!
Dify's side of the protocol, for tests, demos and local development: spawns a plugin binary over
pipes as the daemon does (`INSTALL_METHOD=local`), writes request lines, matches `stream`/`error`/
`end` answers by session, and answers the plugin's backwards `storage` calls from a
[`MemoryStorage`] the way the daemon would (daemon-protocol.md §4.2), so storage-backed behaviour
can be exercised without a daemon. Two hosts sharing one `MemoryStorage` behave like two daemon
nodes sharing one database.
*/

use std::collections::HashMap;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{Mutex as AsyncMutex, mpsc, oneshot, watch};

use crate::wire::ErrorData;

/// How long [`PluginProcess::call`] waits for a session's `end` by default.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Key-value storage answering backwards `storage` calls, as the daemon's persistence does
/// (daemon-protocol.md §4.2): the same key rules, a missing key's `get` is an error, and with a quota
/// a `set` that would take the stored bytes past it is refused with the daemon's message.
#[derive(Clone, Default)]
pub struct MemoryStorage {
    values: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    quota: Option<usize>,
    /// Every call answered, in the order the values saw them, when [`recording`](Self::recording).
    calls: Option<Arc<Mutex<Vec<StorageCall>>>>,
}

/// One storage call as the storage answered it (see [`MemoryStorage::recording`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageCall {
    /// `get`, `set`, `exist`, `del` (or whatever the request said).
    pub opt: String,
    pub key: String,
}

impl MemoryStorage {
    pub fn new() -> Self {
        MemoryStorage::default()
    }

    /// A storage that holds at most `bytes` of values (the manifest's `permission.storage.size`).
    pub fn with_quota(bytes: usize) -> Self {
        MemoryStorage { quota: Some(bytes), ..MemoryStorage::default() }
    }

    /// This storage, recording every call it answers from now on, in order ([`calls`](Self::calls)).
    /// Clones made afterwards share the record.
    pub fn recording(mut self) -> Self {
        self.calls = Some(Arc::default());
        self
    }

    /// The calls answered so far, oldest first; empty unless [`recording`](Self::recording).
    pub fn calls(&self) -> Vec<StorageCall> {
        self.calls.as_ref().map(|calls| calls.lock().unwrap_or_else(|p| p.into_inner()).clone()).unwrap_or_default()
    }

    /// Bytes of all values stored (what the daemon counts against the quota).
    pub fn bytes(&self) -> usize {
        self.values.lock().unwrap_or_else(|p| p.into_inner()).values().map(Vec::len).sum()
    }

    /// The value under `key`, as stored.
    pub fn value(&self, key: &str) -> Option<Vec<u8>> {
        self.values.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }

    /// Stores `value` under `key` directly (e.g. to plant a garbled value).
    pub fn put(&self, key: &str, value: &[u8]) {
        self.values.lock().unwrap_or_else(|p| p.into_inner()).insert(key.to_owned(), value.to_vec());
    }

    /// Removes `key` directly (as a storage wiped behind the plugin's back would).
    pub fn remove(&self, key: &str) {
        self.values.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    /// Number of keys stored.
    pub fn len(&self) -> usize {
        self.values.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every key, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.values.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Answers one storage request the way the daemon does: `Ok(data)` or its refusal, worded as
    /// the daemon words it (daemon-protocol.md §4.2).
    pub fn answer(&self, request: &Value) -> Result<Value, StorageRefusal> {
        // Under the values' lock, so the record's order is the order the values saw.
        let mut values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(calls) = &self.calls {
            let opt = request["opt"].as_str().unwrap_or_default().to_owned();
            let key = request["key"].as_str().unwrap_or_default().to_owned();
            calls.lock().unwrap_or_else(|p| p.into_inner()).push(StorageCall { opt, key });
        }
        let key = request["key"].as_str().filter(|k| !k.is_empty()).ok_or(StorageRefusal::new("key is required"))?;
        if key.len() > 256 || key.contains("..") || key.contains("//") || key.contains('\\') {
            return Err(StorageRefusal::new("invalid key"));
        }
        match request["opt"].as_str() {
            Some("exist") => {
                Ok(json!({"data": values.contains_key(key), "exist_num": i32::from(values.contains_key(key))}))
            }
            Some("get") => match values.get(key) {
                Some(value) => Ok(json!({"data": hex::encode(value)})),
                None => Err(StorageRefusal::new(
                    "load data failed, please check if the key is correct or you have not set it",
                )),
            },
            Some("set") => {
                let value = request["value"]
                    .as_str()
                    .and_then(|v| hex::decode(v).ok())
                    .ok_or(StorageRefusal::new("decode data failed"))?;
                if let Some(quota) = self.quota {
                    let others: usize = values.iter().filter(|(k, _)| k.as_str() != key).map(|(_, v)| v.len()).sum();
                    if others + value.len() > quota {
                        return Err(StorageRefusal::new(
                            "save data failed: allocated size is greater than max storage size",
                        ));
                    }
                }
                values.insert(key.to_owned(), value);
                Ok(json!({"data": "ok"}))
            }
            Some("del") => {
                let deleted = values.remove(key).is_some();
                Ok(json!({"data": "ok", "deleted_num": i32::from(deleted)}))
            }
            _ => Err(StorageRefusal::new("invalid opt")),
        }
    }
}

/// The daemon's refusal of a storage request: its message, as the daemon words it (§4.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StorageRefusal {
    pub message: String,
}

impl StorageRefusal {
    /// A refusal with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        StorageRefusal { message: message.into() }
    }
}

/// What the host does with the plugin's backwards `storage` calls.
#[derive(Clone, Default)]
pub enum StorageMode {
    /// Answers them from this storage.
    Memory(MemoryStorage),
    /// Answers every call with the daemon's permission error (a manifest without storage).
    #[default]
    Denied,
    /// Never answers (a daemon too old or too busy to).
    Silent,
    /// Answers from this storage, each answer `delay` late (a slow database or object store).
    Slow(MemoryStorage, Duration),
    /// Answers every storage call with this error message (the storage backend is down).
    Failing(String),
    /// Answers every storage call with a `response` whose data does not have the documented shape.
    Garbled,
}

type Waiters = Arc<Mutex<HashMap<String, Pending>>>;

struct Pending {
    result: Option<Result<Value, ErrorData>>,
    done: oneshot::Sender<Result<Value, ErrorData>>,
}

/// A plugin process driven over its stdio, as the daemon drives it.
pub struct PluginProcess {
    child: Child,
    stdin: Arc<AsyncMutex<Option<ChildStdin>>>,
    waiters: Waiters,
    next_session: AtomicU64,
    heartbeats: watch::Receiver<u64>,
    backwards_calls: Arc<AtomicU64>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

/// The most stderr kept (the first bytes; the daemon records stderr lines as warnings).
const MAX_STDERR: usize = 1 << 20;

impl PluginProcess {
    /// Starts `command` with piped stdio and `INSTALL_METHOD=local`, and waits for its first
    /// heartbeat (the daemon's readiness signal, §1.4). stderr is collected ([`stderr`](Self::stderr)).
    ///
    /// Errors: the spawn error, or no heartbeat within 10 s, or an exit before one.
    pub async fn spawn(mut command: Command, storage: StorageMode) -> std::io::Result<Self> {
        command
            .env("INSTALL_METHOD", "local")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout pipe"))?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(mut pipe) = child.stderr.take() {
            let sink = stderr.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut kept = sink.lock().unwrap_or_else(|p| p.into_inner());
                    let room = MAX_STDERR.saturating_sub(kept.len()).min(n);
                    kept.extend_from_slice(&buf[..room]);
                }
            });
        }
        let stdin = Arc::new(AsyncMutex::new(child.stdin.take()));
        let waiters: Waiters = Arc::default();
        let (beat_tx, mut heartbeats) = watch::channel(0u64);
        let backwards_calls = Arc::new(AtomicU64::new(0));
        let (invokes, invoke_rx) = mpsc::unbounded_channel();
        tokio::spawn(answer_backwards(invoke_rx, stdin.clone(), storage, backwards_calls.clone()));
        tokio::spawn(read_answers(BufReader::new(stdout), waiters.clone(), beat_tx, invokes));
        tokio::time::timeout(Duration::from_secs(10), heartbeats.wait_for(|count| *count > 0))
            .await
            .map_err(|_| std::io::Error::other("plugin sent no heartbeat within 10 s"))?
            .map_err(|_| std::io::Error::other("plugin exited before its first heartbeat"))?;
        Ok(PluginProcess {
            child,
            stdin,
            waiters,
            next_session: AtomicU64::new(1),
            heartbeats,
            backwards_calls,
            stderr,
        })
    }

    /// What the plugin wrote to stderr so far (its first MiB).
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    /// Heartbeats received so far.
    pub fn heartbeats_seen(&self) -> u64 {
        *self.heartbeats.borrow()
    }

    /// Backwards calls the plugin made so far.
    pub fn backwards_calls(&self) -> u64 {
        self.backwards_calls.load(Ordering::Relaxed)
    }

    /// The plugin's process id.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Runs one request session with `data` as the request's `data` object; the result is its
    /// `stream` chunk or its `error`. Errors: the pipe broke, or no `end` within [`CALL_TIMEOUT`].
    pub async fn call(&self, data: Value) -> std::io::Result<Result<Value, ErrorData>> {
        let session_id = format!("host-{}", self.next_session.fetch_add(1, Ordering::Relaxed));
        let (done, answer) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(session_id.clone(), Pending { result: None, done });
        let mut line = serde_json::to_vec(&json!({
            "session_id": session_id, "conversation_id": null, "message_id": null, "app_id": null,
            "endpoint_id": null, "context": null, "event": "request", "data": data,
        }))?;
        line.push(b'\n');
        write_line(&self.stdin, &line).await?;
        match tokio::time::timeout(CALL_TIMEOUT, answer).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_)) => Err(std::io::Error::other("plugin output ended before the session did")),
            Err(_) => {
                self.waiters.lock().unwrap_or_else(|p| p.into_inner()).remove(&session_id);
                Err(std::io::Error::other(format!("no answer within {} s", CALL_TIMEOUT.as_secs())))
            }
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

async fn write_line(stdin: &AsyncMutex<Option<ChildStdin>>, line: &[u8]) -> std::io::Result<()> {
    let mut stdin = stdin.lock().await;
    let pipe = stdin.as_mut().ok_or_else(|| std::io::Error::other("plugin input already closed"))?;
    pipe.write_all(line).await?;
    pipe.flush().await
}

/// One backwards call seen on the plugin's output: its session, its id, its type and request.
struct Invoke {
    session_id: String,
    id: String,
    kind: String,
    request: Value,
}

async fn answer_backwards(
    mut invokes: mpsc::UnboundedReceiver<Invoke>,
    stdin: Arc<AsyncMutex<Option<ChildStdin>>>,
    storage: StorageMode,
    calls: Arc<AtomicU64>,
) {
    while let Some(invoke) = invokes.recv().await {
        calls.fetch_add(1, Ordering::Relaxed);
        let end = ("end", String::new(), Value::Null);
        let answers: Vec<(&str, String, Value)> = match (&storage, invoke.kind.as_str()) {
            (StorageMode::Silent, _) => continue,
            (StorageMode::Memory(store), "storage") => match store.answer(&invoke.request) {
                Ok(data) => vec![("response", "struct".to_owned(), data), end],
                Err(refusal) => vec![("error", refusal.message, Value::Null), end],
            },
            (StorageMode::Slow(store, delay), "storage") => {
                // Answered later on its own task, so one slow answer does not hold up the others.
                let (store, delay, stdin) = (store.clone(), *delay, stdin.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let answers = match store.answer(&invoke.request) {
                        Ok(data) => vec![("response", "struct".to_owned(), data), ("end", String::new(), Value::Null)],
                        Err(refusal) => {
                            vec![("error", refusal.message, Value::Null), ("end", String::new(), Value::Null)]
                        }
                    };
                    let _ = send_answers(&stdin, &invoke, answers).await;
                });
                continue;
            }
            (StorageMode::Failing(message), "storage") => vec![("error", message.clone(), Value::Null), end],
            (StorageMode::Garbled, "storage") => {
                vec![("response", "struct".to_owned(), json!({"data": ["not", "a", "value"], "exist_num": "x"})), end]
            }
            (_, kind) => {
                let message = format!("permission denied, you need to enable {kind} access in plugin manifest");
                vec![("error", message, Value::Null), end]
            }
        };
        if send_answers(&stdin, &invoke, answers).await.is_err() {
            return;
        }
    }
}

/// Writes the `backwards_response` events of one call.
async fn send_answers(
    stdin: &Arc<AsyncMutex<Option<ChildStdin>>>,
    invoke: &Invoke,
    answers: Vec<(&str, String, Value)>,
) -> std::io::Result<()> {
    for (event, message, data) in answers {
        let line = json!({
            "session_id": invoke.session_id, "conversation_id": null, "message_id": null, "app_id": null,
            "endpoint_id": null, "context": null, "event": "backwards_response",
            "data": {"backwards_request_id": invoke.id, "event": event, "message": message, "data": data},
        });
        let mut bytes = line.to_string().into_bytes();
        bytes.push(b'\n');
        write_line(stdin, &bytes).await?;
    }
    Ok(())
}

async fn read_answers<R: tokio::io::AsyncBufRead + Unpin>(
    mut stdout: R,
    waiters: Waiters,
    heartbeats: watch::Sender<u64>,
    invokes: mpsc::UnboundedSender<Invoke>,
) {
    let mut line = String::new();
    loop {
        line.clear();
        match stdout.read_line(&mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let Ok(message) = serde_json::from_str::<Value>(&line) else { continue };
        match message["event"].as_str() {
            Some("heartbeat") => heartbeats.send_modify(|count| *count += 1),
            Some("session") => {
                let Some(session_id) = message["session_id"].as_str() else { continue };
                let data = &message["data"];
                if data["type"] == "invoke" {
                    let invoke = &data["data"];
                    let _ = invokes.send(Invoke {
                        session_id: session_id.to_owned(),
                        id: invoke["backwards_request_id"].as_str().unwrap_or_default().to_owned(),
                        kind: invoke["type"].as_str().unwrap_or_default().to_owned(),
                        request: invoke["request"].clone(),
                    });
                    continue;
                }
                let mut waiters = waiters.lock().unwrap_or_else(|p| p.into_inner());
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

/// The `data` of requests for the trigger actions, as the daemon sends them (triggers.md §4).
pub mod trigger {
    use serde_json::{Value, json};

    /// A subscription object: `{"endpoint","expires_at","parameters","properties"}` (triggers.md §4).
    pub fn subscription(endpoint: &str, properties: Value) -> Value {
        json!({"endpoint": endpoint, "expires_at": -1, "parameters": {}, "properties": properties})
    }

    /// `dispatch_trigger_event` for one raw HTTP request (triggers.md §4.1).
    pub fn dispatch(provider: &str, raw_request: &[u8], subscription: &Value) -> Value {
        json!({
            "action": "dispatch_trigger_event", "type": "trigger", "user_id": "", "provider": provider,
            "credentials": {}, "credential_type": "unauthorized", "subscription": subscription,
            "raw_http_request": hex::encode(raw_request),
        })
    }

    /// `invoke_trigger_event` of one fired event with a workflow node's `parameters` (triggers.md §4.2).
    pub fn invoke(
        provider: &str,
        event: &str,
        raw_request: &[u8],
        payload: &Value,
        parameters: &Value,
        subscription: &Value,
    ) -> Value {
        json!({
            "action": "invoke_trigger_event", "type": "trigger", "user_id": "", "provider": provider,
            "event": event, "credentials": {}, "credential_type": "unauthorized", "subscription": subscription,
            "raw_http_request": hex::encode(raw_request), "parameters": parameters, "payload": payload,
        })
    }
}
