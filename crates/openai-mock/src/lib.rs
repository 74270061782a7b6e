/*!
A mock of the OpenAI API, as far as openai-trigger calls it, served over HTTP/1.1 on 127.0.0.1.
Tests start it in process ([`MockOpenAi::start`]); the conformance suite runs the `openai-mock`
binary and drives it through its `/_mock/…` admin routes.

What it serves (paths under `/v1`, shapes as documented by OpenAI; openai-webhooks.md §3.2, §4):

| Call | Answer |
| --- | --- |
| `GET /webhook_event_types` | `{"object":"list","data":[…the types of [`SUBSCRIBABLE_TYPES`]…]}` |
| `POST /webhook_endpoints` `{name,url,event_types}` | the endpoint with `signing_secret` (400 for a non-https URL, an empty or unknown type, a name outside 1–256 chars) |
| `GET /webhook_endpoints?after=&limit=` | cursor page `{object,data,first_id,last_id,has_more}`, newest first; `limit` 1–100 |
| `GET /webhook_endpoints/{id}` | the endpoint with `signing_secret_hint` only |
| `POST /webhook_endpoints/{id}` `{name?,url?,event_types?}` | updated; `event_types` replaces the set, needs one entry |
| `DELETE /webhook_endpoints/{id}` | `{id,deleted:true,object:"webhook_endpoint.deleted"}` |
| `POST /webhook_endpoints/{id}/rotate_secret` `{keep_old_secret_active_for_24_hours?}` | the endpoint with its new `signing_secret` |
| `GET /responses/{id}`, `/batches/{id}`, `/fine_tuning/jobs/{id}`, `/evals/{eval_id}/runs/{run_id}`, `/safety/alerts/{id}`, `/safety/cases/{id}` | the stored object |
| `GET /files/{id}/content` | the stored file's bytes (JSONL) |
| `GET /evals?order=&limit=&after=` | cursor page of evals |
| `GET /organization/health/alerts/{id}`, `/organization/projects/{project_id}/health/alerts/{id}` | the stored health alert notification ([`health_alert`]); [`ADMIN_KEY`] only |
| `GET /organization/health/alert_rules` | one page holding [`health_alert_rule`]; [`ADMIN_KEY`] only |

Errors use OpenAI's body, `{"error":{"message","type","param","code"}}`: 401 without a key or
with an unknown one (the message quotes the key masked, as OpenAI does), 401 "insufficient
permissions" for [`READ_ONLY_KEY`] on writes, 403 "insufficient permissions"
([`ADMIN_KEY_REQUIRED`]) for a project key on the `/organization/…` routes, 403
([`PROJECT_KEY_REQUIRED`]) for [`ADMIN_KEY`] on every other route, 401 for a mismatched
`OpenAI-Organization` or `OpenAI-Project`, 404 for unknown ids and paths, 400 for invalid
arguments.

Every request is journaled (method, path, query, headers, body) for tests to assert what the
plugin sent. [`Fault`]s make chosen requests fail, answer slowly, answer malformed JSON, or hang
until released.

The model routes an OpenAI-compatible model provider calls (`/models`, `/chat/completions` with
streaming and tool calls, `/embeddings`, `/rerank`, `/audio/speech`, `/audio/transcriptions`,
`/moderations`) are in [`models`], with their shapes, units (tokens are whitespace-separated words)
and the error models `mock-rate-limited` (429) and `mock-unavailable` (503). They are journaled and
take [`Fault`]s like every other route.
*/

#![allow(clippy::result_large_err, reason = "a refusal is the answer to send; a test tool, not a hot path")]

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::Notify;

mod http;
pub mod models;

use http::{Answer, answer, error, invalid, raw};
pub use http::{Recorded, error_body};

/// A key with every permission the plugin needs.
pub const VALID_KEY: &str = "sk-test-mock-full-access-0123456789abcdef";
/// A restricted key that may read but not manage webhook endpoints.
pub const READ_ONLY_KEY: &str = "sk-test-mock-read-only-0123456789abcdef";
/// An organization Admin API key (`sk-admin-…`): only for the `/organization/…` routes (health
/// alerts), which refuse the project keys above; every other route refuses it.
pub const ADMIN_KEY: &str = "sk-admin-mock-org-admin-0123456789abcdef";
/// The message of the 403 a project key gets on an `/organization/…` route. OpenAI documents
/// neither the status nor the text for health alerts (openai-webhooks.md §1.2: "whether a project
/// key is actually rejected is unconfirmed"); this is the answer observed for project keys on other
/// organization endpoints (403, "insufficient permissions … Missing scopes: api.management.read"),
/// in OpenAI's usual error object, like the mock's other refusals.
pub const ADMIN_KEY_REQUIRED: &str = "You have insufficient permissions for this operation. Missing scopes: api.management.read. Check that you have the correct role in your organization (Reader, Writer, Owner) and project (Member, Owner), and if you're using a restricted API key, that it has the necessary scopes.";
/// The message of the 403 [`ADMIN_KEY`] gets outside the `/organization/…` routes (Admin API keys
/// cannot call the project APIs; OpenAI's exact answer is not documented).
pub const PROJECT_KEY_REQUIRED: &str = "Admin API keys can only be used with the organization administration endpoints (/v1/organization/...). Use a project API key for this request.";
/// The kind ([`MockOpenAi::insert`], `POST /_mock/objects/{kind}`) health alerts are stored under.
pub const HEALTH_ALERTS: &str = "health_alerts";
/// The organization and project the keys belong to.
pub const ORGANIZATION: &str = "org-mock0123456789";
pub const PROJECT: &str = "proj_mock0123456789";

/// The types a project can subscribe to through the API, in the SDK's order (openai-python
/// 3.63.0 `webhook_create_params.py`, openai-webhooks.md §3.2): health alerts first. Not `live.*`,
/// `safety.org_alert.created`, `safety.warning_issued` or `safety.deactivation_issued`, which the
/// dashboard configures.
pub const SUBSCRIBABLE_TYPES: &[&str] = &[
    "health.alert.triggered",
    "health.alert.resolved",
    "batch.completed",
    "batch.failed",
    "batch.expired",
    "batch.cancelled",
    "response.completed",
    "response.failed",
    "response.cancelled",
    "response.incomplete",
    "eval.run.succeeded",
    "eval.run.failed",
    "eval.run.canceled",
    "fine_tuning.job.succeeded",
    "fine_tuning.job.failed",
    "fine_tuning.job.cancelled",
    "realtime.call.incoming",
    "video.completed",
    "video.failed",
    "agent.environment.ready",
    "agent.environment.failed",
    "agent.environment.suspended",
    "agent.environment.expired",
    "agent.session.created",
    "agent.session.action_required",
    "agent.session.in_progress",
    "agent.session.idle",
    "agent.session.failed",
    "safety.alert.created",
];

/// Ids of the objects every mock starts with (see [`fixtures`]).
pub mod ids {
    pub const RESPONSE_COMPLETED: &str = "resp_mock_completed";
    pub const RESPONSE_INCOMPLETE: &str = "resp_mock_incomplete";
    pub const RESPONSE_FAILED: &str = "resp_mock_failed";
    pub const BATCH_COMPLETED: &str = "batch_mock_completed";
    pub const BATCH_OUTPUT_FILE: &str = "file-mock-batch-output";
    pub const BATCH_ERROR_FILE: &str = "file-mock-batch-errors";
    pub const FINE_TUNING_JOB: &str = "ftjob-mock-succeeded";
    pub const EVAL: &str = "eval_mock_second";
    pub const OTHER_EVAL: &str = "eval_mock_first";
    pub const EVAL_RUN: &str = "evalrun_mock_succeeded";
    pub const SAFETY_ALERT: &str = "alert_mock_0001";
    pub const SAFETY_CASE: &str = "case_mock_0001";
    /// A health alert notification of type "triggered" and its recovery ("resolved"), both of
    /// [`HEALTH_ALERT_RULE`].
    pub const HEALTH_ALERT_TRIGGERED: &str = "healthalert_mock_triggered";
    pub const HEALTH_ALERT_RESOLVED: &str = "healthalert_mock_resolved";
    pub const HEALTH_ALERT_RULE: &str = "alertrule_mock_0001";
}

/// Makes matching requests misbehave. The first fault whose method and path prefix match applies,
/// `times` times (forever when None).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Fault {
    /// Only this method (any when None).
    #[serde(default)]
    pub method: Option<String>,
    /// Paths starting with this, e.g. `/v1/responses/`.
    pub path_prefix: String,
    /// Answer with this status and OpenAI's error body (or `body`), instead of the real answer.
    #[serde(default)]
    pub status: Option<u16>,
    /// The body to send with `status`, verbatim.
    #[serde(default)]
    pub body: Option<String>,
    /// A `Retry-After` header value.
    #[serde(default)]
    pub retry_after: Option<String>,
    /// A `retry-after-ms` header value (OpenAI's own, in milliseconds).
    #[serde(default)]
    pub retry_after_ms: Option<String>,
    /// Wait this long before answering.
    #[serde(default)]
    pub delay_ms: u64,
    /// Hold the request until [`MockOpenAi::release`] (then answer normally).
    #[serde(default)]
    pub hold: bool,
    /// Answer 200 with a body that is not JSON.
    #[serde(default)]
    pub malformed: bool,
    #[serde(default)]
    pub times: Option<u32>,
}

#[derive(Debug, Clone)]
struct Endpoint {
    id: String,
    name: String,
    url: String,
    event_types: Vec<String>,
    created_at: i64,
    updated_at: i64,
    secret: String,
    /// The previous secret while it stays valid (rotation with keep_old_secret_active_for_24_hours).
    old_secret: Option<String>,
}

impl Endpoint {
    fn hint(&self) -> String {
        let tail: String = self.secret.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
        format!("whsec_****{tail}")
    }

    fn to_json(&self, with_secret: bool) -> Value {
        let mut object = json!({
            "id": self.id,
            "object": "webhook_endpoint",
            "name": self.name,
            "url": self.url,
            "event_types": self.event_types,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "signing_secret_hint": self.hint(),
        });
        if with_secret {
            object["signing_secret"] = Value::String(self.secret.clone());
        }
        object
    }
}

#[derive(Default)]
struct State {
    journal: Vec<Recorded>,
    faults: Vec<Fault>,
    /// Newest last.
    endpoints: Vec<Endpoint>,
    /// kind ("responses", "batches", "fine_tuning_jobs", "evals", "eval_runs", "safety_alerts",
    /// "safety_cases", "health_alerts", "files") → id → object (files: {"content": text}).
    objects: HashMap<String, BTreeMap<String, Value>>,
    /// Evals, newest first (the list order).
    eval_order: Vec<String>,
    counter: u64,
    clock: i64,
    held: usize,
}

/// A running mock. Dropping it stops the server.
pub struct MockOpenAi {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    release: Arc<Notify>,
    _runtime: Option<std::thread::JoinHandle<()>>,
    stop: Arc<Notify>,
}

impl MockOpenAi {
    /// Starts a mock on 127.0.0.1 (an ephemeral port) on its own thread, seeded with [`fixtures`].
    pub fn start() -> std::io::Result<MockOpenAi> {
        Self::start_on(0)
    }

    /// Like [`start`](Self::start), on `port` (0 = any free one).
    pub fn start_on(port: u16) -> std::io::Result<MockOpenAi> {
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let state = Arc::new(Mutex::new(State { clock: 1_760_000_000, ..State::default() }));
        seed(&mut lock(&state));
        let release = Arc::new(Notify::new());
        let stop = Arc::new(Notify::new());
        let (shared, release2, stop2) = (state.clone(), release.clone(), stop.clone());
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let thread = std::thread::Builder::new().name("openai-mock".into()).spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::from_std(std_listener) else { return };
                loop {
                    let accepted = tokio::select! {
                        accepted = listener.accept() => accepted,
                        () = stop2.notified() => return,
                    };
                    let Ok((stream, _)) = accepted else { continue };
                    let (state, release) = (shared.clone(), release2.clone());
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request| {
                            let (state, release) = (state.clone(), release.clone());
                            async move { Ok::<_, Infallible>(handle(request, state, release).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        })?;
        Ok(MockOpenAi { addr, state, release, _runtime: Some(thread), stop })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>/v1`, what the plugin's `base_url` should be.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request received so far (admin routes excluded), oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).journal.clone()
    }

    /// Forgets the journal.
    pub fn clear_requests(&self) {
        lock(&self.state).journal.clear();
    }

    pub fn add_fault(&self, fault: Fault) {
        lock(&self.state).faults.push(fault);
    }

    pub fn clear_faults(&self) {
        lock(&self.state).faults.clear();
    }

    /// Lets every held request go on (and requests that arrive later are held again only by a
    /// fault that is still active).
    pub fn release(&self) {
        let mut state = lock(&self.state);
        state.faults.retain(|fault| !fault.hold);
        drop(state);
        self.release.notify_waiters();
    }

    /// Requests waiting on a `hold` fault right now.
    pub fn held(&self) -> usize {
        lock(&self.state).held
    }

    /// Stores `object` under `kind` (see [`State`]: "responses", "batches", …, "files" with
    /// `{"content": …}`), replacing one with the same `id`.
    pub fn insert(&self, kind: &str, object: Value) {
        insert_object(&mut lock(&self.state), kind, object);
    }

    /// Stores a health alert notification (e.g. one made with [`health_alert`]) for
    /// `GET /organization/health/alerts/{id}`, replacing one with the same `id`. The binary's
    /// equivalent is `POST /_mock/objects/health_alerts`.
    pub fn insert_health_alert(&self, alert: Value) {
        self.insert(HEALTH_ALERTS, alert);
    }

    /// Every webhook endpoint, newest first, with its secrets (`signing_secret`, `old_secret`).
    pub fn endpoints(&self) -> Vec<Value> {
        endpoints_admin(&lock(&self.state))
    }

    /// Changes an endpoint behind the plugin's back (as a user in the dashboard would).
    pub fn tamper(&self, id: &str, url: Option<&str>, event_types: Option<&[&str]>) -> bool {
        let mut state = lock(&self.state);
        let Some(endpoint) = state.endpoints.iter_mut().find(|e| e.id == id) else { return false };
        if let Some(url) = url {
            endpoint.url = url.to_owned();
        }
        if let Some(types) = event_types {
            endpoint.event_types = types.iter().map(|t| (*t).to_owned()).collect();
        }
        true
    }

    /// Deletes an endpoint behind the plugin's back.
    pub fn remove_endpoint(&self, id: &str) -> bool {
        let mut state = lock(&self.state);
        let before = state.endpoints.len();
        state.endpoints.retain(|e| e.id != id);
        state.endpoints.len() != before
    }
}

impl Drop for MockOpenAi {
    fn drop(&mut self) {
        self.release.notify_waiters();
        self.stop.notify_one();
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn endpoints_admin(state: &State) -> Vec<Value> {
    state
        .endpoints
        .iter()
        .rev()
        .map(|e| {
            let mut object = e.to_json(true);
            object["old_secret"] = e.old_secret.clone().map(Value::String).unwrap_or(Value::Null);
            object
        })
        .collect()
}

fn insert_object(state: &mut State, kind: &str, object: Value) {
    let id = object.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    if kind == "evals" && !state.eval_order.contains(&id) {
        state.eval_order.insert(0, id.clone());
    }
    state.objects.entry(kind.to_owned()).or_default().insert(id, object);
}

fn not_found(what: &str, id: &str) -> Answer {
    error(404, &format!("No {what} found with id '{id}'."), "invalid_request_error", None, None)
}

async fn handle(request: Request<Incoming>, state: Arc<Mutex<State>>, release: Arc<Notify>) -> Answer {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let mut headers = BTreeMap::new();
    for (name, value) in request.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|existing: &mut String| {
                existing.push_str(", ");
                existing.push_str(&value);
            })
            .or_insert(value);
    }
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return error(400, "could not read the body", "invalid_request_error", None, None),
    };
    let bytes = body;
    let body = String::from_utf8_lossy(&bytes).into_owned();

    if let Some(admin) = path.strip_prefix("/_mock") {
        return admin_route(&method, admin, &body, &state, &release);
    }

    let recorded = Recorded { method: method.to_string(), path: path.clone(), query, headers, body };
    let fault = {
        let mut guard = lock(&state);
        guard.journal.push(recorded.clone());
        take_fault(&mut guard, method.as_str(), &path)
    };
    if let Some(fault) = fault {
        if fault.hold {
            let notified = release.notified();
            lock(&state).held += 1;
            notified.await;
            lock(&state).held -= 1;
        }
        if fault.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
        }
        if fault.malformed {
            return raw(200, "application/json", b"{\"id\": \"truncated".to_vec());
        }
        if let Some(status) = fault.status {
            let body = fault.body.clone().unwrap_or_else(|| default_error(status).to_string());
            let mut response = raw(status, "application/json", body.into_bytes());
            if let Some(value) = fault.retry_after.as_deref().and_then(|v| v.parse().ok()) {
                response.headers_mut().insert("retry-after", value);
            }
            if let Some(value) = fault.retry_after_ms.as_deref().and_then(|v| v.parse().ok()) {
                response.headers_mut().insert("retry-after-ms", value);
            }
            return response;
        }
    }
    if let Some(model_path) = path.strip_prefix("/v1").filter(|p| models::serves(method.as_str(), p)) {
        if let Err(refused) = authenticate(&recorded, false, false) {
            return refused;
        }
        return models::route(model_path, &recorded, &bytes);
    }
    let mut guard = lock(&state);
    api_route(&mut guard, &recorded)
}

fn default_error(status: u16) -> Value {
    match status {
        429 => error_body(
            "Rate limit reached for requests. Please try again in 1s.",
            "requests",
            None,
            Some("rate_limit_exceeded"),
        ),
        500 => error_body(
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
            None,
        ),
        502 | 503 => {
            error_body("The engine is currently overloaded, please try again later.", "server_error", None, None)
        }
        _ => error_body("mock fault", "invalid_request_error", None, None),
    }
}

fn take_fault(state: &mut State, method: &str, path: &str) -> Option<Fault> {
    let index = state.faults.iter().position(|fault| {
        fault.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method)) && path.starts_with(&fault.path_prefix)
    })?;
    let fault = state.faults[index].clone();
    if let Some(times) = state.faults[index].times.as_mut() {
        *times = times.saturating_sub(1);
        if *times == 0 {
            state.faults.remove(index);
        }
    }
    Some(fault)
}

fn admin_route(method: &Method, path: &str, body: &str, state: &Arc<Mutex<State>>, release: &Notify) -> Answer {
    let mut guard = lock(state);
    match (method.as_str(), path) {
        ("GET", "/requests") => answer(200, &serde_json::to_value(&guard.journal).unwrap_or(Value::Null)),
        ("DELETE", "/requests") => {
            guard.journal.clear();
            answer(200, &json!({"cleared": true}))
        }
        ("POST", "/faults") => match serde_json::from_str::<Fault>(body) {
            Ok(fault) => {
                guard.faults.push(fault);
                answer(200, &json!({"faults": guard.faults.len()}))
            }
            Err(err) => error(400, &format!("fault: {err}"), "invalid_request_error", None, None),
        },
        ("DELETE", "/faults") => {
            guard.faults.clear();
            answer(200, &json!({"faults": 0}))
        }
        ("POST", "/release") => {
            guard.faults.retain(|fault| !fault.hold);
            drop(guard);
            release.notify_waiters();
            answer(200, &json!({"released": true}))
        }
        ("GET", "/webhook_endpoints") => answer(200, &Value::Array(endpoints_admin(&guard))),
        _ => {
            if let Some(kind) = path.strip_prefix("/objects/") {
                if method == Method::POST {
                    return match serde_json::from_str::<Value>(body) {
                        Ok(object) if object.get("id").is_some_and(Value::is_string) => {
                            insert_object(&mut guard, kind, object);
                            answer(200, &json!({"stored": true}))
                        }
                        _ => error(400, "an object with a string id", "invalid_request_error", None, None),
                    };
                }
            }
            if let Some(rest) = path.strip_prefix("/webhook_endpoints/") {
                let id = rest.to_owned();
                if method == Method::DELETE {
                    guard.endpoints.retain(|e| e.id != id);
                    return answer(200, &json!({"deleted": true}));
                }
                if method == Method::POST {
                    let change: Value = serde_json::from_str(body).unwrap_or(Value::Null);
                    let Some(endpoint) = guard.endpoints.iter_mut().find(|e| e.id == id) else {
                        return not_found("webhook endpoint", &id);
                    };
                    if let Some(url) = change.get("url").and_then(Value::as_str) {
                        endpoint.url = url.to_owned();
                    }
                    if let Some(types) = change.get("event_types").and_then(Value::as_array) {
                        endpoint.event_types = types.iter().filter_map(Value::as_str).map(str::to_owned).collect();
                    }
                    return answer(200, &endpoint.to_json(true));
                }
            }
            error(404, &format!("no admin route {method} {path}"), "invalid_request_error", None, None)
        }
    }
}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    /// [`VALID_KEY`]: every project call.
    Project,
    /// [`READ_ONLY_KEY`]: project reads only.
    ReadOnly,
    /// [`ADMIN_KEY`]: the `/organization/…` routes only.
    Admin,
}

fn key_kind(key: &str) -> Option<KeyKind> {
    match key {
        VALID_KEY => Some(KeyKind::Project),
        READ_ONLY_KEY => Some(KeyKind::ReadOnly),
        ADMIN_KEY => Some(KeyKind::Admin),
        _ => None,
    }
}

/// Checks the key and the organization/project headers like OpenAI: Err is the 401/403 to send.
/// `organization` is true for the `/organization/…` (Admin API) routes.
fn authenticate(request: &Recorded, write: bool, organization: bool) -> Result<(), Answer> {
    let Some(authorization) = request.header("authorization") else {
        return Err(error(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (i.e. YOUR_KEY) when using HTTP Basic Auth. You can obtain an API key from https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            None,
        ));
    };
    let key = authorization.strip_prefix("Bearer ").unwrap_or("");
    let Some(kind) = key_kind(key) else {
        return Err(error(
            401,
            &format!(
                "Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.",
                mask(key)
            ),
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        ));
    };
    if let Some(header) = request.header("openai-organization") {
        if header != ORGANIZATION {
            return Err(error(
                401,
                "OpenAI-Organization header should match organization for API key",
                "invalid_request_error",
                None,
                Some("mismatched_organization"),
            ));
        }
    }
    if let Some(project) = request.header("openai-project") {
        if project != PROJECT {
            return Err(error(
                401,
                "OpenAI-Project header should match project for API key",
                "invalid_request_error",
                None,
                Some("mismatched_project"),
            ));
        }
    }
    if organization && kind != KeyKind::Admin {
        return Err(error(403, ADMIN_KEY_REQUIRED, "invalid_request_error", None, None));
    }
    if !organization && kind == KeyKind::Admin {
        return Err(error(403, PROJECT_KEY_REQUIRED, "invalid_request_error", None, None));
    }
    if write && kind == KeyKind::ReadOnly {
        return Err(error(
            401,
            "You have insufficient permissions for this operation. Missing scopes: api.webhooks.write. Check that you have the correct role in your organization (Reader, Writer, Owner) and project (Member, Owner), and if you're using a restricted API key, that it has the necessary scopes.",
            "invalid_request_error",
            None,
            None,
        ));
    }
    Ok(())
}

/// OpenAI's way of quoting a wrong key: its start and its last four characters.
fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

fn api_route(state: &mut State, request: &Recorded) -> Answer {
    let Some(path) = request.path.strip_prefix("/v1") else {
        return error(
            404,
            &format!("Invalid URL ({} {})", request.method, request.path),
            "invalid_request_error",
            None,
            None,
        );
    };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = request.method.as_str();
    let write = method != "GET";
    let organization = segments.first() == Some(&"organization");
    if let Err(refused) = authenticate(request, write, organization) {
        return refused;
    }
    state.clock += 1;
    match (method, segments.as_slice()) {
        ("GET", ["webhook_event_types"]) => answer(200, &json!({"object": "list", "data": SUBSCRIBABLE_TYPES})),
        ("POST", ["webhook_endpoints"]) => create_endpoint(state, request),
        ("GET", ["webhook_endpoints"]) => list_endpoints(state, request),
        ("GET", ["webhook_endpoints", id]) => match state.endpoints.iter().find(|e| e.id == *id) {
            Some(endpoint) => answer(200, &endpoint.to_json(false)),
            None => not_found("webhook endpoint", id),
        },
        ("POST", ["webhook_endpoints", id]) => update_endpoint(state, id, request),
        ("DELETE", ["webhook_endpoints", id]) => {
            let before = state.endpoints.len();
            state.endpoints.retain(|e| e.id != *id);
            if state.endpoints.len() == before {
                return not_found("webhook endpoint", id);
            }
            answer(200, &json!({"id": id, "deleted": true, "object": "webhook_endpoint.deleted"}))
        }
        ("POST", ["webhook_endpoints", id, "rotate_secret"]) => rotate(state, id, request),
        ("GET", ["responses", id]) => stored(state, "responses", "response", id),
        ("GET", ["batches", id]) => stored(state, "batches", "batch", id),
        ("GET", ["fine_tuning", "jobs", id]) => stored(state, "fine_tuning_jobs", "fine-tuning job", id),
        ("GET", ["safety", "alerts", id]) => stored(state, "safety_alerts", "safety alert", id),
        ("GET", ["safety", "cases", id]) => stored(state, "safety_cases", "safety case", id),
        ("GET", ["files", id, "content"]) => match state.objects.get("files").and_then(|files| files.get(*id)) {
            Some(file) => raw(
                200,
                "application/octet-stream",
                file.get("content").and_then(Value::as_str).unwrap_or("").as_bytes().to_vec(),
            ),
            None => not_found("file", id),
        },
        ("GET", ["organization", "health", "alerts", id]) => stored(state, HEALTH_ALERTS, "health alert", id),
        // A token page (openai-python 3.63.0 `pagination.py` SyncTokenPage: data, has_more, next).
        ("GET", ["organization", "health", "alert_rules"]) => {
            answer(200, &json!({"object": "list", "data": [health_alert_rule()], "has_more": false, "next": null}))
        }
        ("GET", ["organization", "projects", project_id, "health", "alerts", id]) => {
            project_health_alert(state, project_id, id)
        }
        ("GET", ["evals"]) => list_evals(state, request),
        ("GET", ["evals", eval_id, "runs", run_id]) => {
            if !state.objects.get("evals").is_some_and(|evals| evals.contains_key(*eval_id)) {
                return not_found("eval", eval_id);
            }
            match state.objects.get("eval_runs").and_then(|runs| runs.get(*run_id)) {
                Some(run) if run.get("eval_id").and_then(Value::as_str) == Some(eval_id) => answer(200, run),
                _ => not_found("eval run", run_id),
            }
        }
        _ => error(
            404,
            &format!("Invalid URL ({} {})", request.method, request.path),
            "invalid_request_error",
            None,
            None,
        ),
    }
}

fn stored(state: &State, kind: &str, what: &str, id: &str) -> Answer {
    match state.objects.get(kind).and_then(|objects| objects.get(id)) {
        Some(object) => answer(200, object),
        None => not_found(what, id),
    }
}

/// A health alert through its project's route: only the project's own notifications
/// (`dimensions.project_id`), "a retained notification owned by this project" (openai-python 3.63.0
/// `admin/organization/projects/health/alerts.py`).
fn project_health_alert(state: &State, project_id: &str, id: &str) -> Answer {
    if project_id != PROJECT {
        return not_found("project", project_id);
    }
    let alert = state.objects.get(HEALTH_ALERTS).and_then(|alerts| alerts.get(id));
    match alert {
        Some(alert) if alert["dimensions"]["project_id"].as_str() == Some(project_id) => answer(200, alert),
        _ => not_found("health alert", id),
    }
}

fn next_id(state: &mut State, prefix: &str) -> String {
    state.counter += 1;
    let digest = Sha256::digest(format!("{prefix}{}", state.counter).as_bytes());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

fn new_secret(state: &mut State) -> String {
    state.counter += 1;
    let digest = Sha256::digest(format!("secret{}", state.counter).as_bytes());
    format!("whsec_{}", BASE64.encode(digest))
}

fn check_url(url: &str) -> Result<(), Answer> {
    if !url.starts_with("https://") {
        return Err(invalid("Invalid URL: the webhook URL must start with https://.", "url"));
    }
    if url.len() > 2048 {
        return Err(invalid("Invalid URL: the webhook URL must be at most 2048 characters.", "url"));
    }
    Ok(())
}

fn check_types(value: &Value) -> Result<Vec<String>, Answer> {
    let Some(types) = value.as_array() else {
        return Err(invalid("event_types must be an array of strings.", "event_types"));
    };
    if types.is_empty() {
        return Err(invalid("event_types must contain at least one event type.", "event_types"));
    }
    let mut out = Vec::new();
    for item in types {
        let Some(name) = item.as_str() else {
            return Err(invalid("event_types must be an array of strings.", "event_types"));
        };
        if !SUBSCRIBABLE_TYPES.contains(&name) {
            return Err(invalid(&format!("Invalid event type: '{name}'."), "event_types"));
        }
        if !out.iter().any(|t| t == name) {
            out.push(name.to_owned());
        }
    }
    Ok(out)
}

fn create_endpoint(state: &mut State, request: &Recorded) -> Answer {
    let body = request.json();
    let Some(object) = body.as_object() else {
        return invalid("We could not parse the JSON body of your request.", "body");
    };
    let name = object.get("name").and_then(Value::as_str).unwrap_or("");
    if name.is_empty() || name.chars().count() > 256 {
        return invalid("name must be between 1 and 256 characters.", "name");
    }
    let Some(url) = object.get("url").and_then(Value::as_str) else {
        return invalid("Missing required parameter: 'url'.", "url");
    };
    if let Err(refused) = check_url(url) {
        return refused;
    }
    let types = match check_types(object.get("event_types").unwrap_or(&Value::Null)) {
        Ok(types) => types,
        Err(refused) => return refused,
    };
    let id = next_id(state, "whe_");
    let secret = new_secret(state);
    let endpoint = Endpoint {
        id,
        name: name.to_owned(),
        url: url.to_owned(),
        event_types: types,
        created_at: state.clock,
        updated_at: state.clock,
        secret,
        old_secret: None,
    };
    let answer_body = endpoint.to_json(true);
    state.endpoints.push(endpoint);
    answer(200, &answer_body)
}

fn list_endpoints(state: &State, request: &Recorded) -> Answer {
    let limit = match request.query_param("limit").map(|l| l.parse::<usize>()) {
        None => 20,
        Some(Ok(limit)) if (1..=100).contains(&limit) => limit,
        Some(_) => return invalid("limit must be an integer between 1 and 100.", "limit"),
    };
    let newest_first: Vec<&Endpoint> = state.endpoints.iter().rev().collect();
    let start = match request.query_param("after") {
        Some(after) => match newest_first.iter().position(|e| e.id == after) {
            Some(index) => index + 1,
            None => return invalid(&format!("No webhook endpoint found with id '{after}'."), "after"),
        },
        None => 0,
    };
    let page: Vec<Value> = newest_first.iter().skip(start).take(limit).map(|e| e.to_json(false)).collect();
    let has_more = newest_first.len() > start + page.len();
    answer(200, &page_body(page, has_more))
}

fn page_body(page: Vec<Value>, has_more: bool) -> Value {
    let first = page.first().and_then(|e| e.get("id")).cloned().unwrap_or(Value::Null);
    let last = page.last().and_then(|e| e.get("id")).cloned().unwrap_or(Value::Null);
    json!({"object": "list", "data": page, "first_id": first, "last_id": last, "has_more": has_more})
}

fn update_endpoint(state: &mut State, id: &str, request: &Recorded) -> Answer {
    let body = request.json();
    let Some(change) = body.as_object() else {
        return invalid("We could not parse the JSON body of your request.", "body");
    };
    let types = match change.get("event_types") {
        Some(value) => match check_types(value) {
            Ok(types) => Some(types),
            Err(refused) => return refused,
        },
        None => None,
    };
    if let Some(url) = change.get("url").and_then(Value::as_str) {
        if let Err(refused) = check_url(url) {
            return refused;
        }
    }
    let clock = state.clock;
    let Some(endpoint) = state.endpoints.iter_mut().find(|e| e.id == id) else {
        return not_found("webhook endpoint", id);
    };
    if let Some(name) = change.get("name").and_then(Value::as_str) {
        endpoint.name = name.to_owned();
    }
    if let Some(url) = change.get("url").and_then(Value::as_str) {
        endpoint.url = url.to_owned();
    }
    if let Some(types) = types {
        endpoint.event_types = types;
    }
    endpoint.updated_at = clock;
    answer(200, &endpoint.to_json(false))
}

fn rotate(state: &mut State, id: &str, request: &Recorded) -> Answer {
    let keep = request.json().get("keep_old_secret_active_for_24_hours").and_then(Value::as_bool).unwrap_or(false);
    let secret = new_secret(state);
    let clock = state.clock;
    let Some(endpoint) = state.endpoints.iter_mut().find(|e| e.id == id) else {
        return not_found("webhook endpoint", id);
    };
    let old = std::mem::replace(&mut endpoint.secret, secret);
    endpoint.old_secret = keep.then_some(old);
    endpoint.updated_at = clock;
    answer(200, &endpoint.to_json(true))
}

fn list_evals(state: &State, request: &Recorded) -> Answer {
    let limit = match request.query_param("limit").map(|l| l.parse::<usize>()) {
        None => 20,
        Some(Ok(limit)) if (1..=100).contains(&limit) => limit,
        Some(_) => return invalid("limit must be an integer between 1 and 100.", "limit"),
    };
    let mut ids: Vec<&String> = state.eval_order.iter().collect();
    if request.query_param("order").as_deref() == Some("asc") {
        ids.reverse();
    }
    let start = match request.query_param("after") {
        Some(after) => ids.iter().position(|id| **id == after).map_or(ids.len(), |i| i + 1),
        None => 0,
    };
    let evals = state.objects.get("evals");
    let page: Vec<Value> =
        ids.iter().skip(start).take(limit).filter_map(|id| evals.and_then(|e| e.get(*id)).cloned()).collect();
    let has_more = ids.len() > start + page.len();
    answer(200, &page_body(page, has_more))
}

/// A health alert notification as `GET /organization/health/alerts/{id}` returns it (openai-python
/// 3.63.0 `types/admin/organization/health/health_alert.py`, openai-webhooks.md §4): an error-rate
/// rule ([`ids::HEALTH_ALERT_RULE`]) on HTTP 500s of `gpt-5.5` in [`PROJECT`]. `alert_type` is
/// "triggered" (the rate above the threshold) or "resolved" (back below it). Tests change fields as
/// they need, then store it with [`MockOpenAi::insert_health_alert`].
pub fn health_alert(id: &str, alert_type: &str) -> Value {
    let (occurred_at, error_count, request_count): (i64, i64, i64) =
        if alert_type == "resolved" { (1_760_003_600, 12, 3_000) } else { (1_760_000_300, 420, 5_000) };
    json!({
        "id": id,
        "object": "health.alert",
        "type": alert_type,
        "alert_rule_id": ids::HEALTH_ALERT_RULE,
        "created_at": occurred_at + 4,
        "occurred_at": occurred_at,
        "window": {"started_at": occurred_at - 300, "ended_at": occurred_at},
        "dimensions": {"model": "gpt-5.5", "project_id": PROJECT, "service_tier": "default", "http_status": 500},
        "measurement": {
            "type": "error_rate",
            "error_count": error_count,
            "request_count": request_count,
            "value": error_count as f64 / request_count as f64,
            "threshold": 0.05
        }
    })
}

/// The one health alert rule the mock's organization has (openai-python 3.63.0
/// `types/admin/organization/health/health_alert_rule.py`): error rate of 5xx answers over 5 %
/// across 5 minutes, webhook notifications on.
pub fn health_alert_rule() -> Value {
    json!({
        "id": ids::HEALTH_ALERT_RULE,
        "object": "health.alert_rule",
        "name": "5xx error rate",
        "organization_id": ORGANIZATION,
        "enabled": true,
        "version": 1,
        "created_at": 1_759_990_000,
        "updated_at": 1_759_990_000,
        "condition": {"type": "error_rate", "status_class": "5xx", "threshold": 0.05, "window_seconds": 300},
        "filters": {"models": [], "observability_tags": [], "project_ids": [PROJECT], "service_tiers": []},
        "notifications": {
            "email": {"addresses": [], "enabled": false, "org_owners": true, "project_owners": false},
            "webhook": {"enabled": true}
        }
    })
}

/// The objects a mock starts with: one of each kind the plugin enriches, with realistic fields.
pub fn fixtures() -> Vec<(&'static str, Value)> {
    let output_lines = [
        json!({"id": "batch_req_1", "custom_id": "request-1", "response": {"status_code": 200, "request_id": "req_1", "body": {"id": "chatcmpl-1", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris"}, "finish_reason": "stop"}]}}, "error": null}),
        json!({"id": "batch_req_2", "custom_id": "request-2", "response": {"status_code": 200, "request_id": "req_2", "body": {"id": "chatcmpl-2", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Berlin"}, "finish_reason": "stop"}]}}, "error": null}),
        json!({"id": "batch_req_3", "custom_id": "request-3", "response": {"status_code": 200, "request_id": "req_3", "body": {"id": "chatcmpl-3", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Madrid"}, "finish_reason": "stop"}]}}, "error": null}),
    ];
    let content: String = output_lines.iter().map(|line| format!("{line}\n")).collect();
    vec![
        (
            "responses",
            json!({
                "id": ids::RESPONSE_COMPLETED, "object": "response", "created_at": 1_760_000_000, "status": "completed",
                "background": true, "completed_at": 1_760_000_042, "error": null, "incomplete_details": null,
                "instructions": "Answer briefly.", "max_output_tokens": null, "model": "gpt-4.1-2025-04-14",
                "output": [
                    {"type": "reasoning", "id": "rs_1", "summary": []},
                    {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant", "content": [
                        {"type": "output_text", "text": "The capital of France ", "annotations": []},
                        {"type": "refusal", "refusal": "not part of the text"},
                        {"type": "output_text", "text": "is Paris.", "annotations": []}
                    ]},
                    {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "lookup", "arguments": "{}"},
                    {"type": "message", "id": "msg_2", "status": "completed", "role": "assistant", "content": [
                        {"type": "output_text", "text": "\nAnything else?", "annotations": []}
                    ]}
                ],
                "parallel_tool_calls": true, "previous_response_id": null, "temperature": 1.0, "top_p": 1.0,
                "usage": {"input_tokens": 36, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 87, "output_tokens_details": {"reasoning_tokens": 64}, "total_tokens": 123},
                "metadata": {"order_id": "42"}
            }),
        ),
        (
            "responses",
            json!({
                "id": ids::RESPONSE_INCOMPLETE, "object": "response", "created_at": 1_760_000_100, "status": "incomplete",
                "background": true, "error": null, "incomplete_details": {"reason": "max_output_tokens"},
                "model": "gpt-4.1-2025-04-14",
                "output": [{"type": "message", "id": "msg_3", "status": "incomplete", "role": "assistant", "content": [
                    {"type": "output_text", "text": "Once upon a", "annotations": []}]}],
                "usage": {"input_tokens": 10, "output_tokens": 16, "total_tokens": 26}, "metadata": {}
            }),
        ),
        (
            "responses",
            json!({
                "id": ids::RESPONSE_FAILED, "object": "response", "created_at": 1_760_000_200, "status": "failed",
                "background": true, "error": {"code": "server_error", "message": "The model failed to generate a response."},
                "incomplete_details": null, "model": "gpt-4.1-2025-04-14", "output": [], "usage": null, "metadata": {}
            }),
        ),
        (
            "batches",
            json!({
                "id": ids::BATCH_COMPLETED, "object": "batch", "endpoint": "/v1/chat/completions", "errors": null,
                "input_file_id": "file-mock-batch-input", "completion_window": "24h", "status": "completed",
                "output_file_id": ids::BATCH_OUTPUT_FILE, "error_file_id": ids::BATCH_ERROR_FILE,
                "created_at": 1_760_000_000, "in_progress_at": 1_760_000_010, "expires_at": 1_760_086_400,
                "finalizing_at": 1_760_000_500, "completed_at": 1_760_000_600, "failed_at": null, "expired_at": null,
                "cancelling_at": null, "cancelled_at": null,
                "request_counts": {"total": 4, "completed": 3, "failed": 1},
                "model": "gpt-4o-mini-2024-07-18", "metadata": {"job": "nightly-capitals"}
            }),
        ),
        ("files", json!({"id": ids::BATCH_OUTPUT_FILE, "content": content})),
        (
            "files",
            json!({"id": ids::BATCH_ERROR_FILE, "content": "{\"id\": \"batch_req_4\", \"custom_id\": \"request-4\", \"response\": null, \"error\": {\"code\": \"invalid_request\", \"message\": \"bad\"}}\n"}),
        ),
        (
            "fine_tuning_jobs",
            json!({
                "object": "fine_tuning.job", "id": ids::FINE_TUNING_JOB, "model": "gpt-4o-mini-2024-07-18",
                "created_at": 1_760_000_000, "finished_at": 1_760_003_600,
                "fine_tuned_model": "ft:gpt-4o-mini-2024-07-18:mock-org:capitals:AbC123xy",
                "organization_id": ORGANIZATION, "result_files": ["file-mock-ft-metrics"], "status": "succeeded",
                "validation_file": null, "training_file": "file-mock-ft-train", "trained_tokens": 5768,
                "hyperparameters": {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 1.8},
                "error": null, "method": {"type": "supervised"}, "metadata": {"team": "geo"}, "seed": 42
            }),
        ),
        (
            "evals",
            json!({
                "object": "eval", "id": ids::OTHER_EVAL, "name": "Capitals (v1)", "created_at": 1_759_000_000,
                "data_source_config": {"type": "custom", "schema": {}}, "testing_criteria": [], "metadata": null
            }),
        ),
        (
            "evals",
            json!({
                "object": "eval", "id": ids::EVAL, "name": "Capitals (v2)", "created_at": 1_759_500_000,
                "data_source_config": {"type": "custom", "schema": {}}, "testing_criteria": [], "metadata": null
            }),
        ),
        (
            "eval_runs",
            json!({
                "object": "eval.run", "id": ids::EVAL_RUN, "eval_id": ids::OTHER_EVAL, "name": "nightly",
                "report_url": format!("https://platform.openai.com/evaluation/evals/{}?run_id={}", ids::OTHER_EVAL, ids::EVAL_RUN),
                "status": "completed", "model": "o3-mini", "created_at": 1_760_000_000,
                "result_counts": {"total": 10, "errored": 0, "failed": 2, "passed": 8},
                "per_model_usage": [{"model_name": "o3-mini", "invocation_count": 10, "prompt_tokens": 500, "completion_tokens": 300, "total_tokens": 800, "cached_tokens": 0}],
                "per_testing_criteria_results": [{"testing_criteria": "exact-match", "passed": 8, "failed": 2}],
                "data_source": {"type": "jsonl"}, "metadata": {}, "error": null
            }),
        ),
        (
            "safety_alerts",
            json!({
                "id": ids::SAFETY_ALERT, "object": "safety.alert", "created_at": 1_760_000_000,
                "error_type": "potentially_unintended_data_transfer",
                "reason": "The agent tried to upload a customer list to an unknown host.",
                "model": "computer-use-preview", "request_id": "req_mock_alert", "response_id": "resp_mock_alert",
                "request_paused": true, "detailed_explanation": "The destination was not in the allow list."
            }),
        ),
        (
            "safety_cases",
            json!({
                "id": ids::SAFETY_CASE, "object": "safety.case", "created_at": 1_760_000_000,
                "entity_identifier": "user-8841", "reason": "Repeated attempts to generate disallowed content.",
                "notice": {"type": "warning"}
            }),
        ),
        (HEALTH_ALERTS, health_alert(ids::HEALTH_ALERT_TRIGGERED, "triggered")),
        (HEALTH_ALERTS, health_alert(ids::HEALTH_ALERT_RESOLVED, "resolved")),
    ]
}

fn seed(state: &mut State) {
    // Insert evals oldest first so the list comes out newest first.
    for (kind, object) in fixtures() {
        insert_object(state, kind, object);
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use super::*;

    /// One HTTP/1.1 request to the mock; the status and the body as JSON (Null when not JSON).
    fn call(mock: &MockOpenAi, method: &str, path: &str, key: Option<&str>, body: Option<&Value>) -> (u16, Value) {
        let mut stream = TcpStream::connect(mock.addr()).unwrap();
        let auth = key.map(|key| format!("Authorization: Bearer {key}\r\n")).unwrap_or_default();
        let body = body.map(Value::to_string).unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        let status = text.split(' ').nth(1).unwrap().parse().unwrap();
        let (_, answer) = text.split_once("\r\n\r\n").unwrap();
        (status, serde_json::from_str(answer).unwrap_or(Value::Null))
    }

    fn get(mock: &MockOpenAi, path: &str, key: Option<&str>) -> (u16, Value) {
        call(mock, "GET", path, key, None)
    }

    fn alert_path(id: &str) -> String {
        format!("/v1/organization/health/alerts/{id}")
    }

    #[test]
    fn the_alert_rules_page_is_for_admin_keys_only() {
        let mock = MockOpenAi::start().unwrap();
        let (status, page) = get(&mock, "/v1/organization/health/alert_rules?limit=1", Some(ADMIN_KEY));
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["data"], json!([health_alert_rule()]));
        assert_eq!(page["has_more"], false);
        let (status, refused) = get(&mock, "/v1/organization/health/alert_rules", Some(VALID_KEY));
        assert_eq!((status, refused["error"]["message"].as_str()), (403, Some(ADMIN_KEY_REQUIRED)));
    }

    #[test]
    fn an_admin_key_gets_the_health_alert_and_the_request_is_recorded() {
        let mock = MockOpenAi::start().unwrap();
        let (status, body) = get(&mock, &alert_path(ids::HEALTH_ALERT_TRIGGERED), Some(ADMIN_KEY));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, health_alert(ids::HEALTH_ALERT_TRIGGERED, "triggered"));
        assert_eq!(body["object"], "health.alert");
        assert_eq!(body["type"], "triggered");
        assert_eq!(body["alert_rule_id"], ids::HEALTH_ALERT_RULE);
        assert_eq!(body["measurement"]["type"], "error_rate");
        assert!(body["measurement"]["value"].as_f64().unwrap() > body["measurement"]["threshold"].as_f64().unwrap());
        let (status, resolved) = get(&mock, &alert_path(ids::HEALTH_ALERT_RESOLVED), Some(ADMIN_KEY));
        assert_eq!(status, 200);
        assert_eq!(resolved["type"], "resolved");
        assert_eq!(resolved["alert_rule_id"], body["alert_rule_id"]);
        assert!(resolved["measurement"]["value"].as_f64().unwrap() < 0.05);

        let requests = mock.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].method, "GET");
        assert_eq!(requests[0].path, alert_path(ids::HEALTH_ALERT_TRIGGERED));
        assert_eq!(requests[0].header("Authorization"), Some(format!("Bearer {ADMIN_KEY}").as_str()));
    }

    #[test]
    fn tests_seed_their_own_health_alerts() {
        let mock = MockOpenAi::start().unwrap();
        let mut alert = health_alert("healthalert_test_1", "triggered");
        alert["measurement"] = json!({
            "type": "rate_limit_utilization", "metric": "tpm", "consecutive_minutes": 3,
            "rate_limit_scope": "gpt-5.5", "value": 0.97, "threshold": 0.9
        });
        mock.insert_health_alert(alert.clone());
        assert_eq!(get(&mock, &alert_path("healthalert_test_1"), Some(ADMIN_KEY)), (200, alert));

        // The binary's way: the admin route, under the same kind.
        let seeded = health_alert("healthalert_test_2", "resolved");
        assert_eq!(call(&mock, "POST", "/_mock/objects/health_alerts", None, Some(&seeded)).0, 200);
        assert_eq!(get(&mock, &alert_path("healthalert_test_2"), Some(ADMIN_KEY)), (200, seeded));
        // Admin routes are not journaled.
        assert_eq!(mock.requests().len(), 2);
    }

    #[test]
    fn project_keys_are_refused_on_health_alerts() {
        let mock = MockOpenAi::start().unwrap();
        for key in [VALID_KEY, READ_ONLY_KEY] {
            let (status, body) = get(&mock, &alert_path(ids::HEALTH_ALERT_TRIGGERED), Some(key));
            assert_eq!(status, 403, "{key}: {body}");
            assert_eq!(body, error_body(ADMIN_KEY_REQUIRED, "invalid_request_error", None, None));
            assert!(body["error"]["message"].as_str().unwrap().contains("insufficient permissions"));
        }
        // An unknown key (whatever its prefix) is a wrong key, and no key is no key: both 401.
        let (status, body) = get(&mock, &alert_path(ids::HEALTH_ALERT_TRIGGERED), Some("sk-proj-abcdefghijklmnop"));
        assert_eq!(status, 401);
        assert_eq!(body["error"]["code"], "invalid_api_key");
        assert!(!body.to_string().contains("sk-proj-abcdefghijklmnop"), "the key is masked: {body}");
        let (status, body) = get(&mock, &alert_path(ids::HEALTH_ALERT_TRIGGERED), None);
        assert_eq!(status, 401);
        assert!(body["error"]["message"].as_str().unwrap().starts_with("You didn't provide an API key"));
        // The refusals are recorded like every request.
        assert_eq!(mock.requests().len(), 4);
    }

    #[test]
    fn an_unknown_health_alert_is_404() {
        let mock = MockOpenAi::start().unwrap();
        let (status, body) = get(&mock, &alert_path("healthalert_nope"), Some(ADMIN_KEY));
        assert_eq!(status, 404);
        assert_eq!(
            body,
            error_body("No health alert found with id 'healthalert_nope'.", "invalid_request_error", None, None)
        );
        // The key is checked first: a project key learns nothing about which ids exist.
        assert_eq!(get(&mock, &alert_path("healthalert_nope"), Some(VALID_KEY)).0, 403);
    }

    #[test]
    fn the_project_route_serves_the_projects_own_alerts() {
        let mock = MockOpenAi::start().unwrap();
        let path = |project: &str, id: &str| format!("/v1/organization/projects/{project}/health/alerts/{id}");
        let (status, body) = get(&mock, &path(PROJECT, ids::HEALTH_ALERT_TRIGGERED), Some(ADMIN_KEY));
        assert_eq!((status, body), (200, health_alert(ids::HEALTH_ALERT_TRIGGERED, "triggered")));
        assert_eq!(get(&mock, &path("proj_other", ids::HEALTH_ALERT_TRIGGERED), Some(ADMIN_KEY)).0, 404);
        let mut elsewhere = health_alert("healthalert_other_project", "triggered");
        elsewhere["dimensions"]["project_id"] = json!("proj_other");
        mock.insert_health_alert(elsewhere);
        assert_eq!(get(&mock, &path(PROJECT, "healthalert_other_project"), Some(ADMIN_KEY)).0, 404);
        assert_eq!(get(&mock, &path(PROJECT, ids::HEALTH_ALERT_TRIGGERED), Some(VALID_KEY)).0, 403);
    }

    #[test]
    fn the_admin_key_is_refused_outside_the_organization_routes() {
        let mock = MockOpenAi::start().unwrap();
        let (status, body) = get(&mock, &format!("/v1/safety/alerts/{}", ids::SAFETY_ALERT), Some(ADMIN_KEY));
        assert_eq!(status, 403);
        assert_eq!(body, error_body(PROJECT_KEY_REQUIRED, "invalid_request_error", None, None));
        assert_eq!(get(&mock, "/v1/webhook_event_types", Some(ADMIN_KEY)).0, 403);
        // The project keys keep working there.
        assert_eq!(get(&mock, &format!("/v1/safety/alerts/{}", ids::SAFETY_ALERT), Some(VALID_KEY)).0, 200);
    }

    #[test]
    fn the_subscribable_types_are_listed_and_accepted() {
        let mock = MockOpenAi::start().unwrap();
        assert_eq!(SUBSCRIBABLE_TYPES.len(), 29);
        assert_eq!(SUBSCRIBABLE_TYPES[..2], ["health.alert.triggered", "health.alert.resolved"]);
        let unique: std::collections::BTreeSet<&str> = SUBSCRIBABLE_TYPES.iter().copied().collect();
        assert_eq!(unique.len(), 29);
        let (status, listed) = get(&mock, "/v1/webhook_event_types", Some(VALID_KEY));
        assert_eq!(status, 200);
        assert_eq!(listed, json!({"object": "list", "data": SUBSCRIBABLE_TYPES}));

        let create = |types: Value| {
            let body =
                json!({"name": "dify", "url": "https://dify.example.com/triggers/plugin/x", "event_types": types});
            call(&mock, "POST", "/v1/webhook_endpoints", Some(VALID_KEY), Some(&body))
        };
        let (status, created) = create(json!(["batch.completed", "response.completed"]));
        assert_eq!(status, 200, "{created}");
        assert_eq!(created["event_types"], json!(["batch.completed", "response.completed"]));
        let (status, created) = create(json!(SUBSCRIBABLE_TYPES));
        assert_eq!((status, created["event_types"].as_array().unwrap().len()), (200, 29));
        for manual in ["live.transport.connected", "live.transport.incoming", "safety.warning_issued"] {
            let (status, refused) = create(json!([manual]));
            assert_eq!(status, 400, "{manual}");
            assert_eq!(refused["error"]["message"], format!("Invalid event type: '{manual}'."));
        }
    }
}
