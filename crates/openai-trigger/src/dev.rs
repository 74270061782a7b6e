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

use crate::console::say;
use crate::provider::PROVIDER;
use crate::raw_http::{HttpResponse, ParsedResponse, serialize_request};
use crate::samples::{SignedDelivery, sample_body};
use crate::signature::SecretSet;

/// Twice the plugin's own body limit, so the plugin (not this stand-in) decides on large bodies.
const MAX_REQUEST_BODY: usize = 2 * crate::provider::MAX_BODY_BYTES;

pub(crate) async fn serve(secret: &str, bind: IpAddr, port: u16) -> std::io::Result<ExitCode> {
    if let Err(err) = SecretSet::parse(secret) {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("--secret: {err}")));
    }
    let plugin = Arc::new(crate::demo::spawn_plugin(&std::env::current_exe()?).await?);
    let listener = TcpListener::bind(SocketAddr::new(bind, port)).await?;
    let address = listener.local_addr()?;
    let endpoint = format!("http://{address}/");
    tracing::info!(
        "playing Dify at {endpoint}: point OpenAI (through a tunnel) or `openai-trigger send` here; Ctrl-C stops"
    );
    let secret: Arc<str> = Arc::from(secret);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        };
        let (plugin, secret, endpoint) = (plugin.clone(), secret.clone(), endpoint.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                handle(plugin.clone(), secret.clone(), endpoint.clone(), request)
            });
            if let Err(err) =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await
            {
                tracing::debug!("connection ended: {err}");
            }
        });
    }
}

async fn handle(
    plugin: Arc<PluginProcess>,
    secret: Arc<str>,
    endpoint: String,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
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

    let subscription = trigger::subscription(&endpoint, json!({"webhook_secret": &*secret}));
    let dispatched = match plugin.call(trigger::dispatch(PROVIDER, &raw, &subscription)).await {
        Ok(Ok(dispatched)) => dispatched,
        Ok(Err(error)) => {
            say(&json!({"dispatch_error": error}).to_string());
            return Ok(plain(StatusCode::BAD_REQUEST, "Endpoint processing failed"));
        }
        Err(err) => {
            tracing::error!("plugin unavailable: {err}");
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
            Ok(Ok(result)) => {
                json!({"event": event, "cancelled": result["cancelled"], "variables": result["variables"]})
            }
            Ok(Err(error)) => json!({"event": event, "error": error}),
            Err(err) => json!({"event": event, "error": err.to_string()}),
        };
        say(&line.to_string());
    }
    let Some(ParsedResponse { status, headers, body }) =
        HttpResponse::from_hex(dispatched["response"].as_str().unwrap_or(""))
    else {
        return Ok(plain(StatusCode::BAD_REQUEST, "plugin response is not a raw HTTP response"));
    };
    if fired.is_empty() {
        say(&json!({"events": [], "status": status, "response": String::from_utf8_lossy(&body)}).to_string());
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

pub(crate) async fn send(
    event_type: &str,
    url: &str,
    secret: &str,
    webhook_id: Option<String>,
    age: i64,
) -> std::io::Result<ExitCode> {
    let invalid = |message: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, message);
    let uri: hyper::Uri = url.parse().map_err(|err| invalid(format!("--url {url:?}: {err}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(invalid(format!("--url must be a plain http:// URL (got {url:?}); use a tunnel's local side")));
    }
    let secrets = SecretSet::parse(secret).map_err(|err| invalid(format!("--secret: {err}")))?;
    let host = uri.host().ok_or_else(|| invalid("--url has no host".into()))?.trim_matches(['[', ']']).to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let now = crate::provider::unix_now();
    let nonce = format!("{:x}{:x}", now, std::process::id());
    let webhook_id = webhook_id.unwrap_or_else(|| format!("wh_{nonce}"));
    let body = sample_body(event_type, &format!("evt_{nonce}"), now - age);
    let delivery = SignedDelivery::signed(&secrets, &webhook_id, now - age, body);

    let stream = TcpStream::connect((host.as_str(), port)).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method("POST")
        .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header("Host", uri.authority().map(|a| a.as_str()).unwrap_or(""));
    for (name, value) in delivery.headers() {
        request = request.header(name, value);
    }
    let request = request.body(Full::new(Bytes::from(delivery.body.clone()))).map_err(std::io::Error::other)?;
    let response = sender.send_request(request).await.map_err(std::io::Error::other)?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(std::io::Error::other)?.to_bytes();
    say(&json!({"sent": event_type, "webhook_id": webhook_id, "status": status.as_u16(), "response": String::from_utf8_lossy(&body)}).to_string());
    Ok(if status.is_success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
