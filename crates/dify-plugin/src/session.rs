/*!
What a plugin sees of one request: the [`Request`] (its action and raw `data`) and the
[`Session`] it runs in, through which it can stream extra chunks, log, and call back into Dify
([`Session::invoke`], [`Session::storage`]). The [`Plugin`] trait is the one thing a plugin
implements.
*/

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::action::Action;
use crate::backwards::{BackwardsError, BackwardsStream, Body, Channel, Invoker, Storage};
use crate::invocation::{Invocation, TypedStream};
use crate::outbox::{Closed, Outbox};
use crate::wire::{self, ErrorData};

/// The result of one request: one `stream` chunk (Ok) or one `error` message (Err). The runtime
/// adds the session's `end` either way (daemon-protocol.md §2.4).
pub type Reply = Result<Box<RawValue>, ErrorData>;

/// What a plugin implements: one call per request session, run concurrently with the others.
///
/// A panic inside `handle` is caught and answered as an `InternalError`; a call still running at
/// the session deadline is answered as a `TimeoutError` and dropped. Either way the session ends
/// and the other sessions go on.
pub trait Plugin: Send + Sync + 'static {
    fn handle(&self, request: Request, session: &Session) -> impl Future<Output = Reply> + Send;
}

/// One request from the daemon: its action, parsed once, and its `data` object, kept as the JSON
/// text it arrived in (the line is not copied).
#[derive(Debug)]
pub struct Request {
    line: String,
    data: Range<usize>,
    action: Option<Action>,
}

impl Request {
    /// `data` must be a range of `line` holding a JSON object.
    pub(crate) fn new(line: String, data: Range<usize>) -> Self {
        let action = crate::action::action_of(&line[data.clone()]);
        Request { line, data, action }
    }

    /// A request built from a `data` object, for tests and in-process hosts.
    pub fn from_data(data: &serde_json::Value) -> Self {
        let line = data.to_string();
        let len = line.len();
        Request::new(line, 0..len)
    }

    /// `data.action`; None when the request has no string `action`.
    pub fn action(&self) -> Option<&Action> {
        self.action.as_ref()
    }

    /// The request's `data` object as JSON text.
    pub fn data(&self) -> &str {
        &self.line[self.data.clone()]
    }

    /// Decodes `data` into `T`, borrowing strings from it where `T` allows.
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.data())
    }

    /// Bytes this request holds in memory (counted against the runtime's in-flight budget).
    pub(crate) fn size(&self) -> usize {
        self.line.len()
    }
}

const DETACHED: &str = "this session has no daemon behind it (Session::detached)";

/// The session a request runs in. Cheap to clone; every clone speaks for the same session.
#[derive(Clone)]
pub struct Session {
    id: Arc<str>,
    out: Outbox,
    backwards: Channel,
    backwards_timeout: Duration,
    /// Set when every chunk went through [`Session::stream`] (the router's tools and endpoints):
    /// the handler's return value is then not a chunk, and only `end` follows.
    streamed: Arc<AtomicBool>,
}

/// Why [`Session::stream`] did not send a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The output is gone (the daemon disconnected).
    #[error("the session's output is closed")]
    Closed,
    /// The chunk's line would be `bytes` long, over [`wire::MAX_OUTBOUND_LINE`]: the daemon kills a
    /// plugin that writes a line over 5 MiB (daemon-protocol.md §1.2). Split it.
    #[error("a stream chunk of {bytes} bytes is over the {} MiB line limit", wire::MAX_OUTBOUND_LINE >> 20)]
    TooLarge { bytes: usize },
}

impl From<Closed> for StreamError {
    fn from(_: Closed) -> Self {
        StreamError::Closed
    }
}

impl From<StreamError> for ErrorData {
    fn from(err: StreamError) -> Self {
        ErrorData::new("OutputTooLargeError", err.to_string())
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(id: Arc<str>, out: Outbox, backwards: Channel, backwards_timeout: Duration) -> Self {
        Session { id, out, backwards, backwards_timeout, streamed: Arc::new(AtomicBool::new(false)) }
    }

    /// A session with no daemon behind it, for running a plugin's actions in process (tests,
    /// benchmarks, local tools): [`stream`](Self::stream) and [`log`](Self::log) go nowhere,
    /// backwards calls fail with [`BackwardsError::Unavailable`].
    pub fn detached() -> Self {
        let (out, _) = Outbox::new(1);
        Session::new(Arc::from("detached"), out, Channel::Unavailable(DETACHED), Duration::ZERO)
    }

    /// Whether backwards calls can reach Dify from this session (not in a [`detached`](Self::detached)
    /// one, nor on the serverless transport): a plugin can skip what needs them instead of waiting
    /// for the error.
    pub fn can_call_back(&self) -> bool {
        !matches!(self.backwards, Channel::Unavailable(_))
    }

    /// Marks the session's output as complete: the handler's reply is ignored, only `end` follows.
    pub(crate) fn mark_streamed(&self) {
        self.streamed.store(true, Ordering::Release);
    }

    pub(crate) fn is_streamed(&self) -> bool {
        self.streamed.load(Ordering::Acquire)
    }

    /// The daemon's `session_id`.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn outbox(&self) -> &Outbox {
        &self.out
    }

    /// Sends one `stream` chunk before the final one (tools stream many; a trigger action sends
    /// exactly one, its reply).
    ///
    /// Errors: [`StreamError::TooLarge`] (nothing sent) when the chunk's line would pass
    /// [`wire::MAX_OUTBOUND_LINE`] — split it; [`StreamError::Closed`] when the output is gone.
    pub async fn stream(&self, chunk: &RawValue) -> Result<(), StreamError> {
        let line = wire::stream_line(&self.id, chunk);
        if line.len() >= wire::MAX_OUTBOUND_LINE {
            return Err(StreamError::TooLarge { bytes: line.len() });
        }
        Ok(self.out.send(line).await?)
    }

    /// Calls back into Dify (daemon-protocol.md §4.1): `kind` is the backwards type (`storage`,
    /// `tool`, `llm`, …) and `request` its request object. Returns the `data` of every `response`
    /// event, in order, once the daemon sends `end`. Waits at most the runtime's backwards timeout
    /// (`ServeOptions::backwards_timeout`); other sessions are not affected by the wait.
    ///
    /// Errors: [`BackwardsError::Daemon`] when the daemon answers `error` (missing permission,
    /// invalid request, a storage failure), `Timeout`, `Closed` when the connection ends first, and
    /// `Unavailable` where this transport has no backwards channel.
    pub async fn invoke(&self, kind: &str, request: &RawValue) -> Result<Vec<serde_json::Value>, BackwardsError> {
        self.invoke_within(kind, request, self.backwards_timeout).await
    }

    /// [`invoke`](Self::invoke) with its own timeout.
    pub async fn invoke_within(
        &self,
        kind: &str,
        request: &RawValue,
        timeout: Duration,
    ) -> Result<Vec<serde_json::Value>, BackwardsError> {
        self.invoker().invoke(kind, request, Some(timeout)).await
    }

    /// Calls back into Dify and returns the `response` events as they arrive (an LLM's chunks, an
    /// app's events), with the runtime's backwards timeout for the whole call.
    ///
    /// Errors: as [`invoke`](Self::invoke), from this call or from the stream.
    pub async fn invoke_stream(&self, kind: &str, request: &RawValue) -> Result<BackwardsStream, BackwardsError> {
        self.invoker().open(kind, Body::Raw(request), None).await
    }

    /// [`invoke_stream`](Self::invoke_stream) with its own timeout for the whole call.
    pub async fn invoke_stream_within(
        &self,
        kind: &str,
        request: &RawValue,
        timeout: Duration,
    ) -> Result<BackwardsStream, BackwardsError> {
        self.invoker().open(kind, Body::Raw(request), Some(timeout)).await
    }

    /// A typed backwards call with one answer ([`crate::invocation`]: a summary, a moderation
    /// verdict, an upload URL, …): the last `response` event, decoded.
    ///
    /// Errors: as [`invoke`](Self::invoke); [`BackwardsError::Malformed`] for no answer or one of
    /// another shape.
    pub async fn call<I: Invocation>(&self, invocation: &I) -> Result<I::Response, BackwardsError> {
        let request = encode(invocation)?;
        let last = self.invoker().invoke(I::KIND, &request, None).await?.into_iter().last();
        let last = last.ok_or_else(|| BackwardsError::Malformed(format!("{} answered nothing", I::KIND)))?;
        serde_json::from_value(last)
            .map_err(|err| BackwardsError::Malformed(format!("unexpected {} answer: {err}", I::KIND)))
    }

    /// A typed backwards call whose events stream ([`crate::invocation`]: an LLM, a tool, an app).
    ///
    /// Errors: as [`invoke_stream`](Self::invoke_stream).
    pub async fn call_stream<I: Invocation>(&self, invocation: &I) -> Result<TypedStream<I::Response>, BackwardsError> {
        self.call_stream_within(invocation, self.backwards_timeout).await
    }

    /// [`call_stream`](Self::call_stream) with its own timeout for the whole call (an LLM's long
    /// answer may need more than the default).
    pub async fn call_stream_within<I: Invocation>(
        &self,
        invocation: &I,
        timeout: Duration,
    ) -> Result<TypedStream<I::Response>, BackwardsError> {
        let request = encode(invocation)?;
        let inner = self.invoker().open(I::KIND, Body::Raw(&request), Some(timeout)).await?;
        Ok(TypedStream { inner, marker: std::marker::PhantomData })
    }

    fn invoker(&self) -> Invoker<'_> {
        Invoker {
            session_id: &self.id,
            out: &self.out,
            channel: &self.backwards,
            default_timeout: self.backwards_timeout,
        }
    }

    /// The plugin's persistent key-value storage (daemon-protocol.md §4.2), scoped by Dify to the
    /// tenant and plugin. Needs `resource.permission.storage` in the manifest.
    pub fn storage(&self) -> Storage<'_> {
        Storage::new(self.invoker())
    }

    /// Sends a `log` event (the daemon records it; remote runtimes ignore it).
    pub async fn log(&self, level: &str, message: &str) {
        let _ = self.out.send(wire::log_line(level, wire::truncate(message, 2000), wire::unix_time())).await;
    }
}

fn encode<I: Invocation>(invocation: &I) -> Result<Box<RawValue>, BackwardsError> {
    serde_json::value::to_raw_value(invocation)
        .map_err(|err| BackwardsError::Malformed(format!("cannot encode the {} request: {err}", I::KIND)))
}

/// Serializes `value` as a reply chunk.
///
/// Errors: an `InternalError` when `value` cannot be serialised (a map with non-string keys).
pub fn reply<T: serde::Serialize>(value: &T) -> Reply {
    serde_json::value::to_raw_value(value)
        .map_err(|err| ErrorData::new("InternalError", format!("cannot encode the result: {err}")))
}
