/*!
The serverless transport: the protocol as an HTTP server, the contract Dify's serverless runtime
(Dify Cloud) uses with the Python SDK (daemon-protocol.md §7; marketplace.md §3).

- `POST /invoke` (any query string, e.g. `?action=…`): the body is one request envelope, exactly a
  stdin line of the local runtime. The answer is `200` with that session's messages as
  newline-delimited JSON (not SSE `data:` lines, whatever `Accept` says: the daemon splits on
  newlines), streamed as they are written, ending with the session's `end`. A body that is not a
  request envelope is answered `400`, a body over the cap `413`, each with the JSON the daemon reads
  from a failed invocation, `{"errorType","errorMessage"}`.
- `GET /health`: `200 OK`.
- Anything else: `404` (the Marketplace's install test accepts 404 for `GET /`).

Sessions run exactly as over stdio ([`serve`](crate::serve())'s session code), with the same
deadline, in-flight bounds and panic handling. A client that disconnects mid-stream only loses its
own answer. Backwards calls are not available here: the SDK makes them over a separate HTTP
transaction to `DIFY_PLUGIN_DAEMON_URL`, which this transport does not implement, so
[`Session::invoke`](crate::Session::invoke) answers [`BackwardsError::Unavailable`](crate::BackwardsError::Unavailable).
*/

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::{Method, Request as HttpRequest, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};

use crate::backwards::Channel;
use crate::inbound::{Inbound, classify};
use crate::outbox::{Outbox, Outgoing};
use crate::serve::{ServeOptions, run_session};
use crate::session::{Plugin, Request, Session};

/// Largest `/invoke` body accepted. The daemon sends at most 5 MiB (`MAX_SERVERLESS_REQUEST_BYTES`, §7).
pub const MAX_INVOKE_BODY: usize = 16 << 20;

/// Why the backwards channel is closed in this transport.
const NO_BACKWARDS: &str = "Dify's serverless runtime does not route backwards calls (storage, models, tools, apps) to a plugin served over HTTP; they work under the daemon (local) and over remote debugging";

/// Serves the contract on `host:port` until `shutdown` completes, then stops accepting and returns
/// (answers in flight finish on their own tasks). `lambda` selects the `aws_lambda` variant,
/// which uses the same routes here.
///
/// Errors: the listener cannot be bound.
pub async fn serve_http<P: Plugin>(
    host: &str,
    port: u16,
    lambda: bool,
    plugin: Arc<P>,
    options: ServeOptions,
) -> io::Result<()> {
    let listener = TcpListener::bind((host, port)).await?;
    tracing::info!(
        "serverless ({}) on http://{}",
        if lambda { "aws_lambda" } else { "serverless" },
        listener.local_addr()?
    );
    serve_listener(listener, plugin, options, crate::stdio::terminated()).await
}

/// [`serve_http`] on a bound listener (tests bind port 0).
pub async fn serve_listener<P: Plugin>(
    listener: TcpListener,
    plugin: Arc<P>,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    let shared = Arc::new(Shared {
        plugin,
        sessions: Arc::new(Semaphore::new(options.max_in_flight)),
        bytes: Arc::new(Semaphore::new(options.max_request_bytes)),
        options,
    });
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors and the like: wait a little rather than spin.
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| answer(shared.clone(), request));
            if let Err(err) =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await
            {
                tracing::debug!("serverless connection ended: {err}");
            }
        });
    }
}

struct Shared<P> {
    plugin: Arc<P>,
    sessions: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    options: ServeOptions,
}

type AnswerBody = http_body_util::Either<Full<Bytes>, SessionBody>;

async fn answer<P: Plugin>(
    shared: Arc<Shared<P>>,
    request: HttpRequest<Incoming>,
) -> Result<Response<AnswerBody>, Infallible> {
    let path = request.uri().path();
    Ok(match (request.method(), path) {
        (&Method::GET, "/health") => text(StatusCode::OK, "OK"),
        (&Method::POST, "/invoke") => invoke(shared, request).await,
        (_, "/invoke" | "/health") => {
            refusal(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "POST /invoke, GET /health")
        }
        _ => refusal(StatusCode::NOT_FOUND, "NotFound", "the routes are POST /invoke and GET /health"),
    })
}

async fn invoke<P: Plugin>(shared: Arc<Shared<P>>, request: HttpRequest<Incoming>) -> Response<AnswerBody> {
    let body = match Limited::new(request.into_body(), MAX_INVOKE_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLarge",
                &format!("request body over {} MiB", MAX_INVOKE_BODY >> 20),
            );
        }
        Err(_) => return refusal(StatusCode::BAD_REQUEST, "InvalidRequest", "request body could not be read"),
    };
    let (session_id, request) = match parse_envelope(body.to_vec()) {
        Ok(parsed) => parsed,
        Err(reason) => return refusal(StatusCode::BAD_REQUEST, "InvalidRequest", &reason.to_string()),
    };
    let weight = u32::try_from(request.size())
        .unwrap_or(u32::MAX)
        .clamp(1, u32::try_from(shared.options.max_request_bytes).unwrap_or(u32::MAX).max(1));
    let (Ok(slot), Ok(bytes)) =
        (shared.sessions.clone().acquire_owned().await, shared.bytes.clone().acquire_many_owned(weight).await)
    else {
        return refusal(StatusCode::SERVICE_UNAVAILABLE, "ShuttingDown", "the plugin is shutting down");
    };
    let (out, lines) = Outbox::new(shared.options.max_queued_output);
    let session = Session::new(session_id, out, Channel::Unavailable(NO_BACKWARDS), shared.options.backwards_timeout);
    let deadline = shared.options.session_deadline;
    let plugin = shared.plugin.clone();
    tokio::spawn(async move {
        run_session(&*plugin, request, session, deadline).await;
        drop((slot, bytes));
    });
    let mut response = Response::new(AnswerBody::Right(SessionBody { lines }));
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/event-stream"));
    response.headers_mut().insert(hyper::header::CACHE_CONTROL, hyper::header::HeaderValue::from_static("no-cache"));
    response
}

/// Why a POST body is not a request envelope (no input is quoted back).
#[derive(Debug, thiserror::Error)]
enum NotAnEnvelope {
    /// A request the session loop would answer with an error: its message.
    #[error("{0}")]
    Refused(String),
    #[error("a backwards_response is not a request")]
    BackwardsResponse,
    #[error("{0}")]
    Unusable(crate::inbound::Unusable),
}

/// A request envelope, or why it is not one.
fn parse_envelope(body: Vec<u8>) -> Result<(Arc<str>, Request), NotAnEnvelope> {
    match classify(body) {
        Inbound::Request { session_id, request } => Ok((session_id, request)),
        Inbound::Refused { error, .. } => Err(NotAnEnvelope::Refused(error.message)),
        Inbound::BackwardsResponse(_) => Err(NotAnEnvelope::BackwardsResponse),
        Inbound::Ignored(unusable) => Err(NotAnEnvelope::Unusable(unusable)),
    }
}

/// An answer that is not a session: the JSON the daemon reads from a failed invocation,
/// `{"errorType","errorMessage"}` (daemon `serverless_runtime/io.go`).
fn refusal(status: StatusCode, error_type: &str, message: &str) -> Response<AnswerBody> {
    let body = serde_json::json!({"errorType": error_type, "errorMessage": message}).to_string();
    let mut response = text(status, &body);
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    response
}

fn text(status: StatusCode, body: &str) -> Response<AnswerBody> {
    let mut response = Response::new(AnswerBody::Left(Full::new(Bytes::copy_from_slice(body.as_bytes()))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// The session's lines as a streamed HTTP body; it ends when the session's last sender is gone
/// (after its `end`).
pub struct SessionBody {
    lines: mpsc::UnboundedReceiver<Outgoing>,
}

impl Body for SessionBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut().lines.poll_recv(cx) {
            Poll::Ready(Some(outgoing)) => {
                let mut line = outgoing.line;
                line.push(b'\n');
                if let Some(then) = &outgoing.then {
                    line.extend_from_slice(then);
                    line.push(b'\n');
                }
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(line)))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
