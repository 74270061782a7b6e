/*!
Backwards invocation: a session calling back into Dify (daemon-protocol.md §4). The session writes
an `invoke` message with a fresh `backwards_request_id`; the daemon answers on the same
`session_id` with `backwards_response` events (`response`* then `end`, or `error` then `end`),
which the reader routes here by id. The waiter is registered before the `invoke` is written, so
an answer can never arrive before anyone listens (the SDK's race, §4.1), and every wait has a
timeout.

[`Storage`] wraps the `storage` type (§4.2): values are bytes, hex-encoded on the wire.
*/

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use crate::outbox::Outbox;
use crate::wire::{self, BackwardsResponse};

/// Why a backwards call gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackwardsError {
    /// The daemon answered with an `error` event; this is its message.
    #[error("the daemon answered with an error: {0}")]
    Daemon(String),
    /// No `end` within the timeout.
    #[error("no answer from the daemon within {0:?}")]
    Timeout(Duration),
    /// The connection to the daemon ended (or the session's output closed) before the answer.
    #[error("the connection to the daemon closed before it answered")]
    Closed,
    /// The answer did not have the shape the call expects.
    #[error("the daemon's answer is malformed: {0}")]
    Malformed(String),
    /// This transport cannot call back into Dify (an in-process host without a daemon side).
    #[error("backwards calls are not available here: {0}")]
    Unavailable(&'static str),
}

/// One storage request (daemon-protocol.md §4.2), serialised straight into its line.
#[derive(Serialize)]
struct StorageRequest<'a> {
    opt: &'static str,
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
}

/// Events of one pending call; a hostile or broken daemon cannot queue more than this.
const MAX_EVENTS_PER_CALL: usize = 256;

/// The pending backwards calls of one connection, by `backwards_request_id`.
#[derive(Default)]
pub(crate) struct Pending {
    waiters: Mutex<HashMap<String, mpsc::Sender<BackwardsResponse>>>,
    next: AtomicU64,
    closed: std::sync::atomic::AtomicBool,
}

impl Pending {
    /// Routes one `backwards_response` to its waiter; false when nobody waits for that id.
    pub(crate) fn deliver(&self, response: BackwardsResponse) -> bool {
        let waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        match waiters.get(&response.backwards_request_id) {
            Some(waiter) => waiter.try_send(response).is_ok(),
            None => false,
        }
    }

    /// Fails every pending and future call with `Closed` (the connection ended).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.waiters.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn register(&self) -> Option<(String, mpsc::Receiver<BackwardsResponse>)> {
        if self.closed.load(Ordering::SeqCst) {
            return None;
        }
        let id = format!("{:016x}{:016x}", std::process::id(), self.next.fetch_add(1, Ordering::Relaxed));
        let (sender, receiver) = mpsc::channel(MAX_EVENTS_PER_CALL);
        self.waiters.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone(), sender);
        Some((id, receiver))
    }

    fn forget(&self, id: &str) {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

/// How a session reaches Dify.
#[derive(Clone)]
pub(crate) enum Channel {
    /// Over the same stream as the session (stdio, TCP).
    Stream(Arc<Pending>),
    /// Not at all, for this reason.
    Unavailable(&'static str),
}

impl Channel {
    pub(crate) async fn invoke(
        &self,
        session_id: &str,
        out: &Outbox,
        kind: &str,
        request: &RawValue,
        timeout: Duration,
    ) -> Result<Vec<Value>, BackwardsError> {
        let pending = match self {
            Channel::Stream(pending) => pending,
            Channel::Unavailable(why) => return Err(BackwardsError::Unavailable(why)),
        };
        let (id, mut events) = pending.register().ok_or(BackwardsError::Closed)?;
        struct Forget<'a>(&'a Pending, &'a str);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                self.0.forget(self.1);
            }
        }
        let _forget = Forget(pending, &id);
        out.send(wire::invoke_line(session_id, kind, &id, request)).await.map_err(|_| BackwardsError::Closed)?;
        let collect = async {
            let mut responses = Vec::new();
            while let Some(event) = events.recv().await {
                match event.event.as_str() {
                    "response" => responses.push(event.data.unwrap_or(Value::Null)),
                    "error" => {
                        let message = event.message.unwrap_or_default();
                        return Err(BackwardsError::Daemon(wire::truncate(&message, 500).to_owned()));
                    }
                    "end" => return Ok(responses),
                    other => {
                        return Err(BackwardsError::Malformed(format!(
                            "unknown backwards event {:?}",
                            wire::truncate(other, 32)
                        )));
                    }
                }
            }
            Err(BackwardsError::Closed)
        };
        match tokio::time::timeout(timeout, collect).await {
            Ok(result) => result,
            Err(_) => Err(BackwardsError::Timeout(timeout)),
        }
    }
}

/// What a session lends a backwards call: its id, its output and its channel to Dify.
pub(crate) struct Invoker<'a> {
    pub(crate) session_id: &'a str,
    pub(crate) out: &'a Outbox,
    pub(crate) channel: &'a Channel,
    pub(crate) default_timeout: Duration,
}

impl Invoker<'_> {
    pub(crate) async fn invoke(
        &self,
        kind: &str,
        request: &RawValue,
        timeout: Option<Duration>,
    ) -> Result<Vec<Value>, BackwardsError> {
        let timeout = timeout.unwrap_or(self.default_timeout);
        self.channel.invoke(self.session_id, self.out, kind, request, timeout).await
    }
}

/// The plugin's key-value storage through the daemon (daemon-protocol.md §4.2). Keys are at most
/// 256 characters, without `..`, `//` or `\`; `/` makes sub-objects. Values are bytes. The
/// storage has no atomic set-if-absent.
pub struct Storage<'a> {
    invoker: Invoker<'a>,
    timeout: Option<Duration>,
}

#[derive(Deserialize)]
struct DataField<T> {
    data: T,
}

impl<'a> Storage<'a> {
    pub(crate) fn new(invoker: Invoker<'a>) -> Self {
        Storage { invoker, timeout: None }
    }

    /// Every call of this handle waits at most `timeout` (instead of the runtime's default).
    pub fn within(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Whether `key` exists.
    pub async fn exist(&self, key: &str) -> Result<bool, BackwardsError> {
        let DataField { data } = self.call(&StorageRequest { opt: "exist", key, value: None }).await?;
        Ok(data)
    }

    /// Stores `value` under `key` (replacing any value).
    pub async fn set(&self, key: &str, value: &[u8]) -> Result<(), BackwardsError> {
        let value = faster_hex::hex_string(value);
        let DataField::<String> { data } = self.call(&StorageRequest { opt: "set", key, value: Some(&value) }).await?;
        if data == "ok" { Ok(()) } else { Err(BackwardsError::Malformed(format!("set answered {:?}", data))) }
    }

    /// The value under `key`. A missing key is an error answer from the daemon
    /// ([`BackwardsError::Daemon`]); use [`exist`](Self::exist) to ask first.
    pub async fn get(&self, key: &str) -> Result<Vec<u8>, BackwardsError> {
        let DataField::<String> { data } = self.call(&StorageRequest { opt: "get", key, value: None }).await?;
        let not_hex = || BackwardsError::Malformed("get answered a value that is not hex".into());
        if data.len() % 2 != 0 {
            return Err(not_hex());
        }
        // One SIMD pass (values are up to a bucket of the dedupe table, read on every delivery).
        let mut bytes = vec![0; data.len() / 2];
        faster_hex::hex_decode(data.as_bytes(), &mut bytes).map_err(|_| not_hex())?;
        Ok(bytes)
    }

    /// Deletes `key`.
    pub async fn del(&self, key: &str) -> Result<(), BackwardsError> {
        let _: DataField<Value> = self.call(&StorageRequest { opt: "del", key, value: None }).await?;
        Ok(())
    }

    async fn call<T: for<'de> Deserialize<'de>>(&self, request: &StorageRequest<'_>) -> Result<T, BackwardsError> {
        let request = serde_json::value::to_raw_value(request).map_err(|e| BackwardsError::Malformed(e.to_string()))?;
        let responses = self.invoker.invoke("storage", &request, self.timeout).await?;
        let last = responses.into_iter().last().ok_or_else(|| BackwardsError::Malformed("no response".into()))?;
        serde_json::from_value(last).map_err(|_| BackwardsError::Malformed("unexpected storage answer".into()))
    }
}
