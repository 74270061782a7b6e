//! `openai-trigger dev` and `send`: a local HTTP endpoint that plays Dify for real webhooks, and a
//! client that signs and posts a sample. `dev` runs the plugin binary as a child over the stdio
//! protocol, exactly as the daemon would, then invokes every fired event and prints the variables.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

use dify_plugin::host::{PluginProcess, trigger};

use crate::console::{fit, output_width, say};
use crate::provider::PROVIDER;
use crate::samples::{SignedDelivery, sample_body};
use crate::signature::SecretSet;
use dify_plugin::raw_http::{HttpResponse, ParsedResponse, serialize_request};

/// Twice the plugin's own body limit, so the plugin (not this stand-in) decides on large bodies.
const MAX_REQUEST_BODY: usize = 2 * crate::provider::MAX_BODY_BYTES;

/// `send`'s default `--url`: `dev`'s default endpoint.
pub(crate) const DEFAULT_URL: &str = "http://127.0.0.1:8787/";

/// A fresh test signing secret: `whsec_` and the base64 of 32 bytes from the OS's random source,
/// shaped like OpenAI's.
pub(crate) fn fresh_secret() -> std::io::Result<String> {
    use base64::Engine;
    use std::io::Read;
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    Ok(format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(key)))
}

pub(crate) async fn serve(secret: Option<String>, bind: IpAddr, port: u16, json: bool) -> std::io::Result<ExitCode> {
    let mut generated = false;
    // An empty OPENAI_WEBHOOK_SECRET is no secret: make one, as without it.
    let secret = match secret.filter(|secret| !secret.trim().is_empty()) {
        Some(secret) => {
            if let Err(err) = SecretSet::parse(&secret) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("--secret: {err} (for local tests, `openai-trigger secret` makes one)"),
                ));
            }
            secret
        }
        None => {
            generated = true;
            fresh_secret()?
        }
    };
    let listener = TcpListener::bind(SocketAddr::new(bind, port)).await.map_err(|err| {
        let hint = match err.kind() {
            std::io::ErrorKind::AddrInUse => {
                "another program (perhaps another `openai-trigger dev`) listens there; pick a free port with --port"
            }
            std::io::ErrorKind::PermissionDenied => "ports below 1024 need privileges; pick one above with --port",
            std::io::ErrorKind::AddrNotAvailable => "this machine has no such address; --bind 127.0.0.1 is the usual",
            _ => "check --bind and --port",
        };
        std::io::Error::new(err.kind(), format!("cannot listen on {}: {err}; {hint}", SocketAddr::new(bind, port)))
    })?;
    let plugin = crate::local_plugin::spawn_plugin(&std::env::current_exe()?).await?;
    let address = listener.local_addr()?;
    let endpoint = format!("http://{address}/");
    if generated {
        say(&format!("No --secret given: using a fresh test secret, {secret}"));
    }
    say(&format!("Playing Dify at {endpoint} (Ctrl-C stops). In another terminal:"));
    say(&format!(
        "  openai-trigger send batch.completed --url {endpoint} --secret {}",
        secret.split(|c: char| c == ',' || c.is_whitespace()).find(|s| !s.is_empty()).unwrap_or("whsec_…")
    ));
    say(if json {
        "Each delivery prints one JSON line per workflow run (its variables), or one for a rejection."
    } else {
        "Each delivery prints one line per workflow run (--json: every variable, as JSON lines)."
    });
    let context =
        Arc::new(Context { plugin, secret, endpoint, gone: tokio::sync::Notify::new(), json, width: output_width() });
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        // At most MAX_CONNECTIONS at once: further clients wait in the listen backlog instead of
        // exhausting file descriptors.
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit.map_err(std::io::Error::other)?,
            _ = context.gone.notified() => return Err(plugin_gone()),
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // A failed accept (out of descriptors, a reset before accept) ends that client only.
                Err(err) => {
                    tracing::warn!("cannot accept a connection on {address}: {err}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = context.gone.notified() => return Err(plugin_gone()),
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        };
        let context = context.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |request| handle(context.clone(), request));
            // A client that never finishes its head is dropped, so idle connections cannot pile up.
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(err) = connection.await {
                tracing::debug!("connection ended: {err}");
            }
        });
    }
}

/// Connections `dev` serves at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 256;
/// How long a client may take to send a request's head.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long `send` waits for the whole exchange.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

fn plugin_gone() -> std::io::Error {
    std::io::Error::other("the plugin process `dev` runs has ended; start `openai-trigger dev` again")
}

/// What every request of one `dev` needs.
struct Context {
    plugin: PluginProcess,
    secret: String,
    endpoint: String,
    /// Notified when the plugin process is gone.
    gone: tokio::sync::Notify,
    /// JSON lines instead of lines for people.
    json: bool,
    /// What lines for people are fitted to (read once).
    width: usize,
}

async fn handle(context: Arc<Context>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let Context { plugin, secret, endpoint, gone, json, width } = &*context;
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(plain(StatusCode::PAYLOAD_TOO_LARGE, "body too large")),
    };
    let target = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_owned();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let pairs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let raw = serialize_request(parts.method.as_str(), &target, &pairs, &body);
    // For the lines people read: which delivery this is.
    let delivery = format!(
        "{} {}",
        serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|event| event["type"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "(no type)".to_owned()),
        parts.headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("(no webhook-id)")
    );

    let subscription = trigger::subscription(endpoint, json!({"webhook_secret": secret}));
    let dispatched = match plugin.call(trigger::dispatch(PROVIDER, &raw, &subscription)).await {
        Ok(Ok(dispatched)) => dispatched,
        Ok(Err(error)) => {
            say(&if *json {
                json!({"dispatch_error": error}).to_string()
            } else {
                format!("{delivery} → plugin error {}: {}", error.error_type, error.message)
            });
            return Ok(plain(StatusCode::BAD_REQUEST, "Endpoint processing failed"));
        }
        Err(err) => {
            tracing::error!("plugin unavailable: {err}");
            gone.notify_one();
            return Ok(plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error"));
        }
    };
    let fired: Vec<String> =
        dispatched["events"].as_array().into_iter().flatten().filter_map(|e| e.as_str().map(str::to_owned)).collect();
    for event in &fired {
        let line = match plugin
            .call(trigger::invoke(PROVIDER, event, &raw, &dispatched["payload"], &json!({}), &subscription))
            .await
        {
            Ok(Ok(result)) if *json => {
                json!({"event": event, "cancelled": result["cancelled"], "variables": result["variables"]}).to_string()
            }
            Ok(Ok(result)) if result["cancelled"] == true => format!("{delivery} → {event}: skipped"),
            Ok(Ok(result)) => {
                let count = result["variables"].as_object().map_or(0, |v| v.len());
                let keys = crate::local_plugin::key_variables(&result["variables"], false);
                fit(&format!("{delivery} → {event} runs, {count} variables: {keys}"), *width)
            }
            Ok(Err(error)) if *json => json!({"event": event, "error": error}).to_string(),
            Ok(Err(error)) => format!("{delivery} → {event}: plugin error {}: {}", error.error_type, error.message),
            Err(err) if *json => json!({"event": event, "error": err.to_string()}).to_string(),
            Err(err) => format!("{delivery} → {event}: {err}"),
        };
        say(&line);
    }
    let Some(ParsedResponse { status, headers, body }) =
        HttpResponse::from_hex(dispatched["response"].as_str().unwrap_or(""))
    else {
        return Ok(plain(StatusCode::BAD_REQUEST, "plugin response is not a raw HTTP response"));
    };
    if fired.is_empty() {
        let response = serde_json::from_slice::<serde_json::Value>(&body)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned().into());
        say(&if *json {
            json!({"events": [], "status": status, "response": response}).to_string()
        } else {
            let what = response["error"].as_str().or(response["status"].as_str()).unwrap_or("");
            fit(&format!("{delivery} → {status}, nothing runs: {what}"), *width)
        });
    }
    let mut response = Response::builder().status(status);
    for (name, value) in headers.iter().filter(|(name, _)| !name.eq_ignore_ascii_case("content-length")) {
        response = response.header(name, value);
    }
    Ok(response
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| plain(StatusCode::BAD_GATEWAY, "bad plugin response")))
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}

/// `send`'s options besides the type, the URL and the secret.
pub(crate) struct SendOptions {
    pub(crate) webhook_id: Option<String>,
    /// Seconds in the past (negative: the future).
    pub(crate) age: i64,
    /// Allow a type this release does not know.
    pub(crate) any_type: bool,
    /// One JSON object instead of a line of text.
    pub(crate) json: bool,
}

/// `send` was given a type this release does not know (and no `--any-type`).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown event type {typed:?}: {}`openai-trigger send --help` lists the known types; \
     --any-type sends it anyway (it fires only any_event)",
    suggestion.map(|known| format!("did you mean {known}? ")).unwrap_or_default()
)]
pub(crate) struct UnknownEventType {
    typed: String,
    /// The nearest known OpenAI type, when it is near enough to be a typo.
    suggestion: Option<&'static str>,
}

/// The OpenAI type `send` posts for what the user typed: an OpenAI type, or a Dify event name.
/// Anything else is refused with the nearest known type, unless `any_type`.
pub(crate) fn resolve_type(typed: &str, any_type: bool) -> Result<String, UnknownEventType> {
    if crate::events::by_openai_type(typed).is_some() {
        return Ok(typed.to_owned());
    }
    if let Some(openai_type) = crate::events::by_name(typed).and_then(|spec| spec.openai_type) {
        return Ok(openai_type.to_owned());
    }
    if any_type {
        return Ok(typed.to_owned());
    }
    let normalized = typed.trim().to_ascii_lowercase().replace(['_', '-', ' '], ".");
    let nearest = crate::events::known_openai_types().min_by_key(|known| strsim::levenshtein(&normalized, known));
    let suggestion = nearest.filter(|known| strsim::levenshtein(&normalized, known) <= 2 + known.len() / 10);
    Err(UnknownEventType { typed: typed.to_owned(), suggestion })
}

pub(crate) async fn send(event_type: &str, url: &str, secret: &str, options: SendOptions) -> std::io::Result<ExitCode> {
    let invalid = |message: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, message);
    let event_type = resolve_type(event_type, options.any_type).map_err(|err| invalid(err.to_string()))?;
    let uri: hyper::Uri = url.parse().map_err(|err| invalid(format!("--url {url:?} is not a URL: {err}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(invalid(format!(
            "--url must be a plain http:// URL, like {DEFAULT_URL} (got {url:?}); for a public https:// endpoint, \
             send to its local side"
        )));
    }
    let secrets = SecretSet::parse(secret).map_err(|err| {
        invalid(format!("--secret: {err} (for local tests: the secret `openai-trigger dev` printed)"))
    })?;
    let authority = uri.authority().ok_or_else(|| invalid(format!("--url {url:?} has no host")))?;
    if authority.as_str().contains('@') {
        return Err(invalid("--url must not carry a user or password (user:pw@…)".into()));
    }
    let host = authority.host().trim_matches(['[', ']']).to_owned();
    // A port that is not 1-65535 is an error, never a silent port 80.
    // The port as written (after an IPv6 literal's `]`): the URI type drops one that is not a
    // u16, and it must be an error then, never a silent port 80.
    let after_host = authority.as_str().rsplit_once(']').map_or(authority.as_str(), |(_, rest)| rest);
    let port = match after_host.rsplit_once(':') {
        None => 80,
        Some((_, text)) => match text.parse::<u16>() {
            Ok(number) if number > 0 => number,
            _ => return Err(invalid(format!("--url port {text} is not 1-65535"))),
        },
    };
    let now = crate::provider::unix_now();
    let nonce = format!("{:x}{:x}", now, std::process::id());
    let webhook_id = options.webhook_id.unwrap_or_else(|| format!("wh_{nonce}"));
    if webhook_id.is_empty() || !webhook_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid("--webhook-id must be printable ASCII without spaces, like wh_123".into()));
    }
    let signed_at = now.checked_sub(options.age).filter(|t| *t > 0).ok_or_else(|| {
        invalid(format!("--age {} puts the timestamp before 1970; stale is anything over 300", options.age))
    })?;
    let body = sample_body(&event_type, &format!("evt_{nonce}"), signed_at);
    let delivery = SignedDelivery::signed(&secrets, &webhook_id, signed_at, body);

    let unreachable = |err: &dyn std::fmt::Display| {
        std::io::Error::other(format!(
            "cannot send to {url} ({host}:{port}): {err}. Is `openai-trigger dev` running there? Start it in another \
             terminal, or pass the --url it printed"
        ))
    };
    let exchange = async {
        let stream = TcpStream::connect((host.as_str(), port)).await.map_err(|err| unreachable(&err))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|err| unreachable(&err))?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method("POST")
            .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
            .header("Host", authority.as_str());
        for (name, value) in delivery.headers() {
            request = request.header(name, value);
        }
        let request = request.body(Full::new(Bytes::from(delivery.body.clone()))).map_err(std::io::Error::other)?;
        let response = sender.send_request(request).await.map_err(|err| unreachable(&err))?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|err| unreachable(&err))?.to_bytes();
        Ok::<_, std::io::Error>((status, body))
    };
    let (status, body) = tokio::time::timeout(SEND_TIMEOUT, exchange)
        .await
        .map_err(|_| unreachable(&format!("no answer within {} s", SEND_TIMEOUT.as_secs())))??;
    let answer: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    if options.json {
        let response = answer.clone().unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned().into());
        say(&json!({"sent": event_type, "webhook_id": webhook_id, "status": status.as_u16(), "response": response})
            .to_string());
    } else {
        say(&send_summary(&event_type, &webhook_id, status, answer.as_ref(), &body));
    }
    Ok(if status.is_success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// One line for a person: what was sent, the status, and what it means.
fn send_summary(
    event_type: &str,
    webhook_id: &str,
    status: StatusCode,
    answer: Option<&serde_json::Value>,
    body: &[u8],
) -> String {
    let field = |key: &str| answer.and_then(|a| a[key].as_str()).unwrap_or("");
    let meaning = match (status.as_u16(), field("status")) {
        (200, "ok") => "accepted; its events fired (see dev's output)".to_owned(),
        (200, "duplicate") => "a duplicate of a delivery already accepted: nothing fired".to_owned(),
        (200, "ignored") => "ignored: the subscription did not choose this type".to_owned(),
        (_, "rejected") => format!("rejected, {}: {}", field("error"), field("message")),
        _ if answer.is_some() => format!("{}: {}", field("error"), field("message")),
        _ => dify_plugin::wire::truncate(&String::from_utf8_lossy(body), 200).to_owned(),
    };
    let reason = status.canonical_reason().unwrap_or("");
    format!("{event_type} (webhook-id {webhook_id}) → {} {reason}: {meaning}", status.as_u16())
}
