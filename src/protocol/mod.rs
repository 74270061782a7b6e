//! The Dify plugin daemon protocol, transport side: framing, sessions, heartbeats, shutdown.
//!
//! This module knows nothing about OpenAI or triggers. It reads newline-delimited JSON requests,
//! runs each one as its own task through a [`Handler`], and writes exactly one `stream` chunk or
//! one `error`, then exactly one `end`, per session (daemon-protocol.md §2.4, §12). One writer task
//! owns the output; a heartbeat task feeds the same queue, so request work never delays it.
//!
//! [`serve`] is generic over `AsyncBufRead`/`AsyncWrite`, so stdio, a TCP socket and in-memory
//! pipes in tests all run the same code.

pub mod framing;
pub mod wire;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::value::RawValue;
use tokio::io::{AsyncBufRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{Semaphore, mpsc, watch};

pub use wire::ErrorData;

/// One request session handed to a [`Handler`].
#[derive(Debug)]
pub struct Session {
    pub id: String,
    /// The request's `data` object, still raw: the handler extracts its own typed view.
    pub data: Box<RawValue>,
}

/// What a plugin implements: one call per request session. The result becomes exactly one
/// `stream` chunk (Ok) or one `error` message (Err); the protocol layer adds the `end`.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, session: Session) -> impl Future<Output = Result<Box<RawValue>, ErrorData>> + Send;
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The SDK's default is 10 s; the daemon's limits are 120 s locally and 60 s remotely (§3).
    pub heartbeat_interval: Duration,
    /// Sessions in flight at once; further requests wait in the pipe (back-pressure).
    pub max_in_flight: usize,
    /// A session still running after this gets an error, well before the daemon's own 600 s
    /// `PLUGIN_MAX_EXECUTION_TIMEOUT` would leave the caller hanging (§5).
    pub session_deadline: Duration,
    /// At EOF, how long in-flight sessions may take to finish before we exit anyway.
    pub drain_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            heartbeat_interval: Duration::from_secs(10),
            max_in_flight: 1024,
            session_deadline: Duration::from_secs(300),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Why [`serve`] returned.
#[derive(Debug, PartialEq, Eq)]
pub enum ServeEnd {
    /// The input ended; every in-flight session was answered (or the drain timed out).
    InputClosed,
    /// The output broke (the daemon is gone); nothing more could be delivered.
    OutputClosed,
}

/// Speaks the protocol until the input ends or the output breaks.
pub async fn serve<R, W, H>(mut input: R, output: W, handler: Arc<H>, options: ServeOptions) -> io::Result<ServeEnd>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let (out, out_rx) = mpsc::channel::<Vec<u8>>(4096);
    let (broken_tx, mut broken_rx) = watch::channel(false);
    let writer = tokio::spawn(write_lines(output, out_rx, broken_tx));
    // Readiness is the first heartbeat (§1.4): queue it before reading anything, so even a
    // session that ends at once has sent it.
    let _ = out.send(wire::HEARTBEAT_LINE.to_vec()).await;
    let heartbeat = tokio::spawn(heartbeat(out.clone(), options.heartbeat_interval));
    let slots = Arc::new(Semaphore::new(options.max_in_flight));

    let mut end = ServeEnd::InputClosed;
    loop {
        let frame = tokio::select! {
            frame = framing::read_frame(&mut input, framing::MAX_INBOUND_LINE) => frame,
            _ = broken_rx.wait_for(|broken| *broken) => { end = ServeEnd::OutputClosed; break; }
        };
        let line = match frame {
            Ok(framing::Frame::Line(line)) => line,
            Ok(framing::Frame::Oversized(len)) => {
                send_log(
                    &out,
                    "warn",
                    &format!(
                        "dropped an input line of {len} bytes: over the {} MiB limit",
                        framing::MAX_INBOUND_LINE >> 20
                    ),
                )
                .await;
                continue;
            }
            Ok(framing::Frame::Eof) => break,
            Err(err) => {
                tracing::warn!("stopped reading input: {err}");
                break;
            }
        };
        let Some((session_id, data)) = route(&out, &line).await else {
            continue;
        };
        drop(line);
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("semaphore is never closed"),
            _ = broken_rx.wait_for(|broken| *broken) => { end = ServeEnd::OutputClosed; break; }
        };
        let session = Session { id: session_id, data };
        let out = out.clone();
        let handler = handler.clone();
        let deadline = options.session_deadline;
        tokio::spawn(async move {
            run_session(handler, session, &out, deadline).await;
            drop(permit);
        });
    }

    if end == ServeEnd::InputClosed {
        // Finish what is in flight: `slim` closes stdin right after its one request (§5).
        let all = u32::try_from(options.max_in_flight).unwrap_or(u32::MAX);
        if tokio::time::timeout(options.drain_timeout, slots.acquire_many(all)).await.is_err() {
            tracing::warn!("exiting with sessions still running after {:?}", options.drain_timeout);
        }
    }
    heartbeat.abort();
    drop(out);
    // Every sender is gone once the session tasks have finished; the writer then flushes and ends.
    match tokio::time::timeout(Duration::from_secs(5), writer).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(err))) if err.kind() == io::ErrorKind::BrokenPipe => end = ServeEnd::OutputClosed,
        Ok(Ok(Err(err))) => return Err(err),
        Ok(Err(join)) => return Err(io::Error::other(join)),
        Err(_) => tracing::warn!("output did not drain within 5 s"),
    }
    Ok(end)
}

/// Decides what one input line is. Returns the session to run, or None after answering it.
async fn route(out: &mpsc::Sender<Vec<u8>>, line: &[u8]) -> Option<(String, Box<RawValue>)> {
    // Only objects are messages: serde would also fill a struct from a JSON array, by position.
    if line.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        send_log(out, "warn", &format!("ignored an input line that is not a JSON object ({} bytes)", line.len())).await;
        return None;
    }
    let inbound: wire::Inbound = match serde_json::from_slice(line) {
        Ok(inbound) => inbound,
        Err(err) => {
            send_log(
                out,
                "warn",
                &format!("ignored an input line that is not a protocol message ({} bytes): {err}", line.len()),
            )
            .await;
            return None;
        }
    };
    let event = inbound.event.as_deref().unwrap_or("");
    let Some(session_id) = inbound.session_id.filter(|id| !id.is_empty()) else {
        send_log(out, "warn", &format!("ignored a message without a session_id (event {:?})", truncate(event, 64)))
            .await;
        return None;
    };
    match event {
        "request" => match inbound.data {
            Some(data) if data.get().starts_with('{') => Some((session_id, data)),
            _ => {
                let error = ErrorData::new("InvalidRequestError", "request has no data object");
                finish(out, &session_id, Err(error)).await;
                None
            }
        },
        "backwards_response" => {
            // This plugin never invokes the daemon, so there is no waiter to wake.
            send_log(out, "warn", "ignored a backwards_response: no backwards request is pending").await;
            None
        }
        other => {
            let message =
                format!("unknown event {:?}: expected \"request\" or \"backwards_response\"", truncate(other, 64));
            finish(out, &session_id, Err(ErrorData::new("UnknownEventError", message))).await;
            None
        }
    }
}

async fn run_session<H: Handler>(handler: Arc<H>, session: Session, out: &mpsc::Sender<Vec<u8>>, deadline: Duration) {
    let id = session.id.clone();
    // A nested task turns a panic into a JoinError instead of a silent, never-ending session.
    let mut work = tokio::spawn(async move { handler.handle(session).await });
    let result = tokio::select! {
        joined = &mut work => match joined {
            Ok(result) => result,
            Err(join) if join.is_panic() => Err(ErrorData::new("InternalError", "the plugin failed while handling this request")),
            Err(_) => Err(ErrorData::new("InternalError", "the request was cancelled")),
        },
        _ = tokio::time::sleep(deadline) => {
            work.abort();
            Err(ErrorData::new("TimeoutError", format!("no result within {} s", deadline.as_secs())))
        }
    };
    finish(out, &id, result).await;
}

/// Writes the session's single result and its `end`.
async fn finish(out: &mpsc::Sender<Vec<u8>>, session_id: &str, result: Result<Box<RawValue>, ErrorData>) {
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
        Err(mut error) => {
            while error.args.len() > wire::MAX_ERROR_ARGS {
                let last = error.args.keys().next_back().cloned().expect("non-empty");
                error.args.remove(&last);
            }
            wire::error_line(session_id, &error)
        }
    };
    // A closed queue means the output is gone; there is nobody left to tell.
    let _ = out.send(first).await;
    let _ = out.send(wire::end_line(session_id)).await;
}

async fn send_log(out: &mpsc::Sender<Vec<u8>>, level: &str, message: &str) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let _ = out.send(wire::log_line(level, message, now)).await;
}

async fn heartbeat(out: mpsc::Sender<Vec<u8>>, every: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if out.send(wire::HEARTBEAT_LINE.to_vec()).await.is_err() {
            return;
        }
    }
}

/// The single owner of the output. Batches queued lines and flushes when the queue is empty.
async fn write_lines<W: AsyncWrite + Unpin>(
    output: W,
    mut lines: mpsc::Receiver<Vec<u8>>,
    broken: watch::Sender<bool>,
) -> io::Result<()> {
    let mut output = BufWriter::with_capacity(64 * 1024, output);
    let result = async {
        while let Some(line) = lines.recv().await {
            write_one(&mut output, &line).await?;
            while let Ok(line) = lines.try_recv() {
                write_one(&mut output, &line).await?;
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

async fn write_one<W: AsyncWrite + Unpin>(output: &mut W, line: &[u8]) -> io::Result<()> {
    // Last line of defence; sessions already replace oversized chunks with an error.
    if line.len() >= wire::MAX_OUTBOUND_LINE || line.contains(&b'\n') {
        tracing::error!("refused to write a malformed output line of {} bytes", line.len());
        return Ok(());
    }
    output.write_all(line).await?;
    output.write_all(b"\n").await
}

/// At most `max` characters of `text`, cut on a character boundary (for quoting input in messages).
pub(crate) fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}
