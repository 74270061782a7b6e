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
    /// This transport cannot call back into Dify (serverless, a detached session).
    #[error("backwards calls are not available here: {0}")]
    Unavailable(&'static str),
    /// The daemon sent more than this many events before the caller read them.
    #[error("the daemon sent more than {0} events of one call before they were read")]
    Overflow(usize),
    /// The request's line would be `bytes` long, over [`wire::MAX_OUTBOUND_LINE`]: it was not
    /// sent (the daemon kills a plugin that writes a line over 5 MiB, daemon-protocol.md §1.2).
    #[error("a backwards request of {bytes} bytes is over the {} MiB line limit", wire::MAX_OUTBOUND_LINE >> 20)]
    TooLarge { bytes: usize },
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
/// Calls left before their `end` that are remembered, so that the rest of their events is taken
/// in silence (the oldest are forgotten first).
const MAX_ABANDONED: usize = 1024;

/// The pending backwards calls of one connection, by `backwards_request_id`.
#[derive(Default)]
pub(crate) struct Pending {
    waiters: Mutex<HashMap<String, mpsc::Sender<BackwardsResponse>>>,
    /// Calls whose events came faster than they were read, past [`MAX_EVENTS_PER_CALL`]: they
    /// fail with [`BackwardsError::Overflow`] instead of silently missing an event.
    overflowed: Mutex<std::collections::HashSet<String>>,
    /// Calls whose caller stopped listening before their `end`: after an `error` (which the daemon
    /// always follows with `end`, daemon-protocol.md §4.1), a timeout, or a dropped stream. Their
    /// later events are expected, not a daemon's mistake to log.
    abandoned: Mutex<Abandoned>,
    next: AtomicU64,
    closed: std::sync::atomic::AtomicBool,
}

impl Pending {
    /// Routes one `backwards_response` to its waiter; false when nobody waits for that id.
    pub(crate) fn deliver(&self, response: BackwardsResponse) -> bool {
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        let Some(waiter) = waiters.get(&response.backwards_request_id) else {
            // Still under the waiters' lock, as `forget` is: a call is always in one or the other.
            return self.abandoned.lock().unwrap_or_else(|p| p.into_inner()).take(&response);
        };
        match waiter.try_send(response) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(response)) => {
                // Dropping the sender ends the caller's stream once it has read what is queued;
                // the mark makes that end an Overflow error, not a silent gap.
                let id = response.backwards_request_id;
                waiters.remove(&id);
                self.overflowed.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
                false
            }
            // The caller is leaving (its stream is dropped, its registration not yet): abandoned.
            Err(mpsc::error::TrySendError::Closed(_)) => true,
        }
    }

    fn take_overflow(&self, id: &str) -> bool {
        self.overflowed.lock().unwrap_or_else(|p| p.into_inner()).remove(id)
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
        // `{pid:016x}{counter:016x}`, without the formatter's digit-by-digit padding.
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&u64::from(std::process::id()).to_be_bytes());
        raw[8..].copy_from_slice(&self.next.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        let id = crate::raw_http::encode_hex(&raw);
        let (sender, receiver) = mpsc::channel(MAX_EVENTS_PER_CALL);
        self.waiters.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone(), sender);
        Some((id, receiver))
    }

    /// The call is over for its caller; `ended` when its `end` came.
    fn forget(&self, id: &str, ended: bool) {
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        // Moved to `abandoned` under the waiters' lock: an answer delivered meanwhile finds it in
        // one of the two (the lock order is always waiters, then abandoned).
        if waiters.remove(id).is_some() && !ended {
            self.abandoned.lock().unwrap_or_else(|p| p.into_inner()).add(id);
        }
        drop(waiters);
        self.overflowed.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

/// Ids of abandoned calls, at most [`MAX_ABANDONED`], oldest first out.
#[derive(Default)]
struct Abandoned {
    ids: std::collections::HashSet<String>,
    order: std::collections::VecDeque<String>,
}

impl Abandoned {
    fn add(&mut self, id: &str) {
        if self.order.len() >= MAX_ABANDONED {
            if let Some(oldest) = self.order.pop_front() {
                self.ids.remove(&oldest);
            }
        }
        self.ids.insert(id.to_owned());
        self.order.push_back(id.to_owned());
    }

    /// Whether `response` belongs to an abandoned call (its `end` closes the call for good).
    fn take(&mut self, response: &BackwardsResponse) -> bool {
        let id = &response.backwards_request_id;
        if !self.ids.contains(id) {
            return false;
        }
        if response.event == "end" {
            self.ids.remove(id);
        }
        true
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
    /// Writes the `invoke` and returns its events as they come, until `deadline`.
    pub(crate) async fn open(
        &self,
        session_id: &str,
        out: &Outbox,
        kind: &str,
        request: Body<'_>,
        deadline: tokio::time::Instant,
    ) -> Result<BackwardsStream, BackwardsError> {
        let pending = match self {
            Channel::Stream(pending) => pending,
            Channel::Unavailable(why) => return Err(BackwardsError::Unavailable(why)),
        };
        let (id, events) = pending.register().ok_or(BackwardsError::Closed)?;
        // Registered before the invoke is written: an answer can never arrive before anyone listens.
        let registration = Registration { pending: pending.clone(), id, ended: false };
        let line = match request {
            Body::Raw(request) => wire::invoke_line(session_id, kind, &registration.id, request),
            Body::Trusted(request) => wire::invoke_line_trusted(session_id, kind, &registration.id, request),
        };
        // Refused here, not dropped by the writer's last check: the caller would wait its whole
        // timeout for an answer to a request that never left.
        if line.len() >= wire::MAX_OUTBOUND_LINE {
            return Err(BackwardsError::TooLarge { bytes: line.len() });
        }
        out.send(line).await.map_err(|_| BackwardsError::Closed)?;
        Ok(BackwardsStream { events, registration, deadline, timeout_error: BackwardsError::Closed, done: false })
    }
}

/// A backwards request: JSON from the caller, or JSON the runtime wrote itself.
#[derive(Clone, Copy)]
pub(crate) enum Body<'a> {
    Raw(&'a RawValue),
    Trusted(&'a [u8]),
}

/// Forgets its call when dropped (answered, failed, timed out or abandoned).
struct Registration {
    pending: Arc<Pending>,
    id: String,
    /// The call's `end` came.
    ended: bool,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.pending.forget(&self.id, self.ended);
    }
}

/// The `response` events of one backwards call, as the daemon sends them (an LLM's chunks, an
/// app's events, a tool's messages): read them with [`next`](Self::next) as they arrive, or
/// [`collect`](Self::collect) them. The whole call has one deadline.
pub struct BackwardsStream {
    events: mpsc::Receiver<BackwardsResponse>,
    registration: Registration,
    deadline: tokio::time::Instant,
    timeout_error: BackwardsError,
    done: bool,
}

impl std::fmt::Debug for BackwardsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackwardsStream").field("id", &self.registration.id).field("done", &self.done).finish()
    }
}

impl BackwardsStream {
    /// The next `response` event's `data`; None after `end`.
    ///
    /// Errors (each ends the stream): [`BackwardsError::Daemon`] (the daemon's `error`: a missing
    /// permission, an invalid request, the model's failure), `Timeout` at the call's deadline,
    /// `Closed` when the connection ends first, `Overflow` when more than 256 events were queued
    /// unread, `Malformed` for an unknown event.
    pub async fn next(&mut self) -> Option<Result<Value, BackwardsError>> {
        if self.done {
            return None;
        }
        let event = match tokio::time::timeout_at(self.deadline, self.events.recv()).await {
            Err(_) => Err(std::mem::replace(&mut self.timeout_error, BackwardsError::Closed)),
            Ok(None) if self.registration.pending.take_overflow(&self.registration.id) => {
                Err(BackwardsError::Overflow(MAX_EVENTS_PER_CALL))
            }
            Ok(None) => Err(BackwardsError::Closed),
            Ok(Some(event)) => match event.event.as_str() {
                "response" => return Some(Ok(event.data.unwrap_or(Value::Null))),
                "end" => {
                    self.done = true;
                    self.registration.ended = true;
                    return None;
                }
                "error" => {
                    let message = event.message.unwrap_or_default();
                    Err(BackwardsError::Daemon(wire::truncate(&message, 500).to_owned()))
                }
                other => {
                    Err(BackwardsError::Malformed(format!("unknown backwards event {:?}", wire::truncate(other, 32))))
                }
            },
        };
        self.done = true;
        Some(event)
    }

    /// Every `response` event's `data`, in order, once the daemon sends `end`.
    ///
    /// Errors: as [`next`](Self::next).
    pub async fn collect(mut self) -> Result<Vec<Value>, BackwardsError> {
        let mut responses = Vec::new();
        while let Some(event) = self.next().await {
            responses.push(event?);
        }
        Ok(responses)
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
        self.open(kind, Body::Raw(request), timeout).await?.collect().await
    }

    pub(crate) async fn open(
        &self,
        kind: &str,
        request: Body<'_>,
        timeout: Option<Duration>,
    ) -> Result<BackwardsStream, BackwardsError> {
        let timeout = timeout.unwrap_or(self.default_timeout);
        // A huge timeout (Duration::MAX) means no deadline in practice, not an overflow.
        let now = tokio::time::Instant::now();
        let deadline = now.checked_add(timeout).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400));
        let mut stream = self.channel.open(self.session_id, self.out, kind, request, deadline).await?;
        stream.timeout_error = BackwardsError::Timeout(timeout);
        Ok(stream)
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
        // Written by hand, the hex straight into the request: it needs no escaping, and serde
        // would scan each of its bytes (a dedupe bucket is ~2 KB of hex on every new delivery).
        let mut request = Vec::with_capacity(value.len() * 2 + key.len() + 48);
        request.extend_from_slice(br#"{"opt":"set","key":"#);
        serde_json::to_writer(&mut request, key).map_err(|e| BackwardsError::Malformed(e.to_string()))?;
        request.extend_from_slice(br#","value":""#);
        let start = request.len();
        request.resize(start + value.len() * 2, 0);
        faster_hex::hex_encode(value, &mut request[start..]).map_err(|e| BackwardsError::Malformed(e.to_string()))?;
        request.extend_from_slice(br#""}"#);
        let responses = self.invoker.open("storage", Body::Trusted(&request), self.timeout).await?.collect().await?;
        let DataField::<String> { data } = decode_last(responses)?;
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
        decode_last(responses)
    }
}

fn decode_last<T: for<'de> Deserialize<'de>>(responses: Vec<Value>) -> Result<T, BackwardsError> {
    let last = responses.into_iter().last().ok_or_else(|| BackwardsError::Malformed("no response".into()))?;
    serde_json::from_value(last).map_err(|_| BackwardsError::Malformed("unexpected storage answer".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, event: &str, n: u64) -> BackwardsResponse {
        serde_json::from_value(serde_json::json!({"backwards_request_id": id, "event": event, "data": n})).unwrap()
    }

    /// A registered call, as `Channel::open` makes one (without writing its request): its id and
    /// its stream, which times out with `timeout_error` 5 s from now.
    fn call(pending: &Arc<Pending>, timeout_error: BackwardsError) -> (String, BackwardsStream) {
        let (id, events) = pending.register().unwrap();
        let registration = Registration { pending: pending.clone(), id: id.clone(), ended: false };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        (id, BackwardsStream { events, registration, deadline, timeout_error, done: false })
    }

    /// Events that come faster than they are read past the bound end the call with an error: the
    /// caller never sees a stream with a silent gap.
    #[tokio::test]
    async fn an_overflow_is_an_error_not_a_gap() {
        let pending = Arc::new(Pending::default());
        let (id, mut stream) = call(&pending, BackwardsError::Closed);
        for n in 0..MAX_EVENTS_PER_CALL as u64 {
            assert!(pending.deliver(event(&id, "response", n)));
        }
        assert!(!pending.deliver(event(&id, "response", 999)), "one too many");
        assert!(!pending.deliver(event(&id, "end", 0)), "the call is over");
        for n in 0..MAX_EVENTS_PER_CALL as u64 {
            assert_eq!(stream.next().await.unwrap().unwrap(), serde_json::json!(n));
        }
        assert_eq!(stream.next().await.unwrap().unwrap_err(), BackwardsError::Overflow(MAX_EVENTS_PER_CALL));
        assert!(stream.next().await.is_none());
        drop(stream);
        assert!(pending.overflowed.lock().unwrap().is_empty(), "forgotten with its call");
    }

    /// The daemon follows an `error` with `end` (daemon-protocol.md §4.1); the caller has its error
    /// at the first, and the second is expected, not something to log as a stray answer.
    #[tokio::test]
    async fn the_end_after_an_error_is_taken_in_silence() {
        let pending = Arc::new(Pending::default());
        let (id, stream) = call(&pending, BackwardsError::Closed);
        assert!(pending.deliver(event(&id, "error", 0)));
        assert!(matches!(stream.collect().await, Err(BackwardsError::Daemon(_))));
        assert!(pending.deliver(event(&id, "end", 0)), "expected: taken");
        assert!(!pending.deliver(event(&id, "end", 0)), "a second end is a stray");
        assert!(!pending.deliver(event("never-asked", "end", 0)), "and so is an id nobody asked for");
        // A call that ended normally leaves nothing behind.
        let (id, stream) = call(&pending, BackwardsError::Closed);
        assert!(pending.deliver(event(&id, "end", 0)));
        assert!(stream.collect().await.unwrap().is_empty());
        assert!(!pending.deliver(event(&id, "end", 0)));
        // At most MAX_ABANDONED are remembered.
        for n in 0..MAX_ABANDONED + 10 {
            pending.abandoned.lock().unwrap().add(&format!("a{n}"));
        }
        let abandoned = pending.abandoned.lock().unwrap();
        assert!(abandoned.ids.len() <= MAX_ABANDONED && abandoned.order.len() <= MAX_ABANDONED);
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_covers_the_whole_call() {
        let pending = Arc::new(Pending::default());
        let (id, mut stream) = call(&pending, BackwardsError::Timeout(Duration::from_secs(5)));
        assert!(pending.deliver(event(&id, "response", 1)));
        assert_eq!(stream.next().await.unwrap().unwrap(), serde_json::json!(1));
        assert_eq!(stream.next().await.unwrap().unwrap_err(), BackwardsError::Timeout(Duration::from_secs(5)));
        assert!(stream.next().await.is_none());
    }

    /// A request too long for one line is refused at once, not dropped by the writer while its
    /// caller waits the whole timeout for an answer.
    #[tokio::test]
    async fn a_request_over_the_line_limit_is_refused_at_once() {
        let pending = Arc::new(Pending::default());
        let channel = Channel::Stream(pending.clone());
        let (out, mut lines) = Outbox::new(1 << 20);
        let big = serde_json::value::to_raw_value(&"x".repeat(wire::MAX_OUTBOUND_LINE)).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let refused = channel.open("s1", &out, "llm", Body::Raw(&big), deadline).await.unwrap_err();
        assert!(
            matches!(refused, BackwardsError::TooLarge { bytes } if bytes > wire::MAX_OUTBOUND_LINE),
            "{refused:?}"
        );
        assert!(lines.try_recv().is_err(), "nothing was queued");
        assert!(pending.waiters.lock().unwrap().is_empty(), "and nothing waits");
    }
}
