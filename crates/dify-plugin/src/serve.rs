/*!
The session loop, transport-agnostic: reads newline-delimited JSON from any `AsyncBufRead`, runs
each `request` through a [`Plugin`] as its own task (on a current-thread runtime, one that finishes
without waiting runs to its end on the reader and never needs a task), routes `backwards_response`
events to the session that asked, and writes through one writer task that owns the output. A
heartbeat task feeds the same writer, so request work never delays it (daemon-protocol.md §2.4, §3,
§12).

Per session the output is exactly one `stream` chunk or one `error`, then exactly one `end` —
also when the handler panics (`InternalError`) or overruns the deadline (`TimeoutError`).

Memory is bounded in aggregate, not only per line: a line is at most
[`MAX_INBOUND_LINE`](crate::framing::MAX_INBOUND_LINE); requests in flight hold at most
[`ServeOptions::max_request_bytes`] (the reader waits for room, which is back-pressure on the
pipe); queued output holds at most [`ServeOptions::max_queued_output`].
*/

use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::backwards::{Channel, Pending};
use crate::framing;
use crate::inbound::{Inbound, classify};
use crate::outbox::{Outbox, Outgoing};
use crate::session::{Plugin, Reply, Request, Session};
use crate::wire::{self, ErrorData};

/// Limits and rhythms of [`serve`]. The defaults suit the Dify daemon; tests shorten them.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Heartbeat period. The SDK sends one every 10 s; the daemon's limits are 120 s locally and
    /// 60 s remotely (daemon-protocol.md §3).
    pub heartbeat_interval: Duration,
    /// Sessions in flight at once; further requests wait in the pipe (back-pressure).
    pub max_in_flight: usize,
    /// Bytes of request lines held by sessions in flight at once. A line longer than this runs
    /// alone. Default 128 MiB.
    pub max_request_bytes: usize,
    /// Bytes of output waiting for the writer. Default 32 MiB (eight lines of the 4 MiB maximum).
    pub max_queued_output: usize,
    /// A session still running after this is answered `TimeoutError`, well before the daemon's
    /// own `PLUGIN_MAX_EXECUTION_TIMEOUT` (600 s) would leave its caller hanging (§5).
    pub session_deadline: Duration,
    /// At the end of the input (or at shutdown), how long in-flight sessions may take to finish.
    pub drain_timeout: Duration,
    /// How long a backwards call waits for the daemon's answer by default (§4.1; the SDK waits 250 s).
    pub backwards_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            heartbeat_interval: Duration::from_secs(10),
            max_in_flight: 1024,
            max_request_bytes: 128 << 20,
            max_queued_output: 32 << 20,
            session_deadline: Duration::from_secs(300),
            drain_timeout: Duration::from_secs(30),
            backwards_timeout: Duration::from_secs(60),
        }
    }
}

/// Why [`serve`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeEnd {
    /// The input ended; in-flight sessions were answered (or the drain timed out).
    InputClosed,
    /// The shutdown future completed; in-flight sessions were answered (or the drain timed out).
    Shutdown,
    /// The output broke (the daemon is gone); nothing more could be delivered.
    OutputClosed,
}

/// Speaks the protocol on `input`/`output` until the input ends, `shutdown` completes or the
/// output breaks. The first heartbeat is queued before anything is read (readiness, §1.4).
///
/// Errors: only the output's own IO errors other than a broken pipe (which is
/// [`ServeEnd::OutputClosed`]); bad input is answered or logged, never fatal.
pub async fn serve<R, W, P>(
    input: R,
    output: W,
    plugin: Arc<P>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> io::Result<ServeEnd>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
    P: Plugin,
{
    let (out, lines) = Outbox::new(options.max_queued_output);
    let (broken_tx, broken) = watch::channel(false);
    let writer = tokio::spawn(write_lines(output, lines, broken_tx));
    let _ = out.send_now(wire::HEARTBEAT_LINE.to_vec());
    let heartbeat = tokio::spawn(heartbeat(out.clone(), options.heartbeat_interval));
    let pending = Arc::new(Pending::default());
    let loop_ = Loop {
        out: out.clone(),
        pending: pending.clone(),
        live: Arc::default(),
        sessions: Arc::new(Semaphore::new(options.max_in_flight)),
        bytes: Arc::new(Semaphore::new(options.max_request_bytes)),
        options,
        inline_first_poll: tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::CurrentThread,
    };
    let mut end = loop_.read_requests(input, plugin, broken.clone(), shutdown).await;

    // The daemon can no longer answer backwards calls once its side of the input is gone.
    pending.close();
    if end != ServeEnd::OutputClosed {
        // Finish what is in flight: `slim` closes stdin right after its one request (§5).
        let all = u32::try_from(loop_.options.max_in_flight).unwrap_or(u32::MAX);
        let drained = loop_.sessions.acquire_many(all);
        let mut broken = broken.clone();
        tokio::select! {
            result = tokio::time::timeout(loop_.options.drain_timeout, drained) => if result.is_err() {
                tracing::warn!("exiting with sessions still running after {:?}", loop_.options.drain_timeout);
            },
            _ = broken.wait_for(|b| *b) => end = ServeEnd::OutputClosed,
        }
    }
    heartbeat.abort();
    drop(out);
    drop(loop_);
    // Session tasks still running past the drain hold their own outbox clones; do not wait for them.
    match tokio::time::timeout(Duration::from_secs(5), writer).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(err))) if err.kind() == io::ErrorKind::BrokenPipe => end = ServeEnd::OutputClosed,
        Ok(Ok(Err(err))) => return Err(err),
        Ok(Err(join)) => return Err(io::Error::other(join)),
        Err(_) => tracing::warn!("output did not drain within 5 s"),
    }
    Ok(end)
}

struct Loop {
    out: Outbox,
    pending: Arc<Pending>,
    /// Session ids in flight.
    live: Arc<std::sync::Mutex<std::collections::HashSet<Arc<str>>>>,
    sessions: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    options: ServeOptions,
    /// Poll each session once on the reader before giving it a task (current-thread runtimes only:
    /// on several threads, a task of its own lets another thread run it).
    inline_first_poll: bool,
}

impl Loop {
    async fn read_requests<R: AsyncBufRead + Unpin, P: Plugin>(
        &self,
        mut input: R,
        plugin: Arc<P>,
        mut broken: watch::Receiver<bool>,
        shutdown: impl Future<Output = ()>,
    ) -> ServeEnd {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            // The frame first: a line already buffered is taken without polling the other two
            // (tokio's cooperative budget still makes the read yield now and then, so they are
            // seen under any flood of input).
            let frame = tokio::select! {
                biased;
                frame = framing::read_frame(&mut input, framing::MAX_INBOUND_LINE) => frame,
                _ = broken.wait_for(|b| *b) => return ServeEnd::OutputClosed,
                _ = &mut shutdown => return ServeEnd::Shutdown,
            };
            let line = match frame {
                Ok(framing::Frame::Line(line)) => line,
                Ok(framing::Frame::Oversized(len)) => {
                    self.log(
                        "warn",
                        &format!(
                            "dropped an input line of {len} bytes: over the {} MiB limit",
                            framing::MAX_INBOUND_LINE >> 20
                        ),
                    )
                    .await;
                    continue;
                }
                Ok(framing::Frame::Eof) => return ServeEnd::InputClosed,
                Err(err) => {
                    tracing::warn!("stopped reading input: {err}");
                    return ServeEnd::InputClosed;
                }
            };
            let Some((session_id, request)) = self.route(line).await else { continue };
            // Wait for room: a session slot and the request's bytes (a longer line than the whole
            // budget waits for every other session, then runs alone).
            let weight = u32::try_from(request.size()).unwrap_or(u32::MAX).clamp(1, self.bytes_capacity());
            let permits = async {
                let slot = self.sessions.clone().acquire_owned().await;
                let bytes = self.bytes.clone().acquire_many_owned(weight).await;
                (slot, bytes)
            };
            // Room is the common case: taken without a future or a look at `broken`.
            let (slot, bytes) = match self.try_permits(weight) {
                Some(permits) => permits,
                None => {
                    let (slot, bytes) = tokio::select! {
                        permits = permits => permits,
                        _ = broken.wait_for(|b| *b) => return ServeEnd::OutputClosed,
                    };
                    let (Ok(slot), Ok(bytes)) = (slot, bytes) else { return ServeEnd::InputClosed };
                    (slot, bytes)
                }
            };
            let session = Session::new(
                session_id.clone(),
                self.out.clone(),
                Channel::Stream(self.pending.clone()),
                self.options.backwards_timeout,
            );
            let plugin = plugin.clone();
            let deadline = self.options.session_deadline;
            let live = self.live.clone();
            let mut task = Box::pin(async move {
                run_session(&*plugin, request, session, deadline).await;
                live.lock().unwrap_or_else(|p| p.into_inner()).remove(&session_id);
                drop((slot, bytes));
            });
            // On one thread, a session that finishes without waiting (most of a trigger's: verify,
            // route, answer) runs to its end right here, which spares it a task of its own: the
            // spawn, a trip through the run queue and the task's teardown. Polled with a no-op
            // waker: whatever it waits on is polled again, with the task's waker, once spawned.
            if self.inline_first_poll {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                // The handler's own panics are caught inside (`run_session`); this guards the reader
                // against anything else, as a task of its own would have been guarded.
                match std::panic::catch_unwind(AssertUnwindSafe(|| task.as_mut().poll(&mut cx))) {
                    Ok(Poll::Ready(())) => continue,
                    Ok(Poll::Pending) => {}
                    Err(_) => {
                        tracing::error!("a session failed outside its handler; its id stays taken");
                        continue;
                    }
                }
            }
            tokio::spawn(task);
        }
    }

    /// A session slot and `weight` bytes of the budget, if both are free now.
    fn try_permits(&self, weight: u32) -> Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
        let slot = self.sessions.clone().try_acquire_owned().ok()?;
        let bytes = self.bytes.clone().try_acquire_many_owned(weight).ok()?;
        Some((slot, bytes))
    }

    fn bytes_capacity(&self) -> u32 {
        u32::try_from(self.options.max_request_bytes).unwrap_or(u32::MAX).max(1)
    }

    /// Decides what one input line is: a request to run (returned), a backwards answer (routed),
    /// or something to answer or log and forget.
    async fn route(&self, line: Vec<u8>) -> Option<(Arc<str>, Request)> {
        match classify(line) {
            Inbound::Request { session_id, request } => {
                // The daemon's ids are unique (§2.2); a second request under an id still in flight
                // would have its answer mixed into the first one's, so it is refused unanswered.
                if !self.live.lock().unwrap_or_else(|p| p.into_inner()).insert(session_id.clone()) {
                    self.log(
                        "warn",
                        &format!(
                            "ignored a request whose session_id {:?} is already in flight",
                            wire::truncate(&session_id, 64)
                        ),
                    )
                    .await;
                    return None;
                }
                Some((session_id, request))
            }
            Inbound::BackwardsResponse(response) => {
                if !self.pending.deliver(response) {
                    self.log("warn", "ignored a backwards_response: no backwards request with its id is pending").await;
                }
                None
            }
            Inbound::Refused { session_id, error } => {
                // A refusal under an id still in flight would end that session with the wrong answer.
                if self.live.lock().unwrap_or_else(|p| p.into_inner()).contains(&session_id) {
                    self.log(
                        "warn",
                        &format!(
                            "ignored a malformed message whose session_id {:?} is in flight",
                            wire::truncate(&session_id, 64)
                        ),
                    )
                    .await;
                    return None;
                }
                finish(&self.out, &session_id, Err(error)).await;
                None
            }
            Inbound::Ignored(unusable) => {
                self.log("warn", &unusable.log_message()).await;
                None
            }
        }
    }

    async fn log(&self, level: &str, message: &str) {
        tracing::debug!("{message}");
        let _ = self.out.send(wire::log_line(level, message, wire::unix_time())).await;
    }
}

/// Runs one session to its single result and `end`.
pub(crate) async fn run_session<P: Plugin + ?Sized>(
    plugin: &P,
    request: Request,
    session: Session,
    deadline: Duration,
) {
    let result = if request.action().is_none() {
        Err(ErrorData::new("InvalidRequestError", "request data has no string \"action\""))
    } else {
        let work = CatchUnwind(Box::pin(plugin.handle(request, &session)));
        match tokio::time::timeout(deadline, work).await {
            Ok(Ok(result)) => result,
            Ok(Err(())) => Err(ErrorData::new("InternalError", "the plugin failed while handling this request")),
            Err(_) => Err(ErrorData::new("TimeoutError", format!("no result within {} s", deadline.as_secs()))),
        }
    };
    if result.is_ok() && session.is_streamed() {
        let _ = session.outbox().send(wire::end_line(session.id())).await;
    } else {
        finish(session.outbox(), session.id(), result).await;
    }
}

/// Writes the session's single result and its `end`.
pub(crate) async fn finish(out: &Outbox, session_id: &str, result: Reply) {
    let first = match result {
        Ok(chunk) => {
            let line = wire::stream_line(session_id, &chunk);
            if line.len() < wire::MAX_OUTBOUND_LINE {
                line
            } else {
                let message = format!(
                    "result of {} bytes is over the {} MiB line limit",
                    line.len(),
                    wire::MAX_OUTBOUND_LINE >> 20
                );
                wire::error_line(session_id, &ErrorData::new("OutputTooLargeError", message))
            }
        }
        Err(error) => wire::error_line(session_id, &error.bounded()),
    };
    // A closed outbox means the output is gone; there is nobody left to tell.
    let _ = out.send_two(first, wire::end_line(session_id)).await;
}

/// Turns a panic while polling the handler's future into `Err(())`. The future is dropped right
/// after and never polled again, so no state it broke is observed: that is why `AssertUnwindSafe`
/// holds. Boxing makes it `Unpin`, so no pin projection (and no `unsafe`) is needed.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, ()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.get_mut().0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}

async fn heartbeat(out: Outbox, every: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if out.send_now(wire::HEARTBEAT_LINE.to_vec()).is_err() {
            return;
        }
    }
}

/// The single owner of the output. Writes whatever is queued, then flushes once the queue is empty,
/// so a burst of answers costs one write.
pub(crate) async fn write_lines<W: AsyncWrite + Unpin>(
    output: W,
    mut lines: mpsc::UnboundedReceiver<Outgoing>,
    broken: watch::Sender<bool>,
) -> io::Result<()> {
    let mut output = BufWriter::with_capacity(64 * 1024, output);
    let result = async {
        while let Some(first) = lines.recv().await {
            write_outgoing(&mut output, &first).await?;
            drop(first);
            while let Ok(next) = lines.try_recv() {
                write_outgoing(&mut output, &next).await?;
            }
            output.flush().await?;
        }
        output.flush().await
    }
    .await;
    if result.is_err() {
        let _ = broken.send(true);
    }
    result
}

async fn write_outgoing<W: AsyncWrite + Unpin>(output: &mut W, outgoing: &Outgoing) -> io::Result<()> {
    write_one(output, &outgoing.line).await?;
    match &outgoing.then {
        Some(then) => write_one(output, then).await,
        None => Ok(()),
    }
}

async fn write_one<W: AsyncWrite + Unpin>(output: &mut W, line: &[u8]) -> io::Result<()> {
    // Last line of defence; sessions already replace oversized chunks with an error.
    if line.len() >= wire::MAX_OUTBOUND_LINE || memchr::memchr(b'\n', line).is_some() {
        tracing::error!("refused to write a malformed output line of {} bytes", line.len());
        return Ok(());
    }
    output.write_all(line).await?;
    output.write_all(b"\n").await
}
