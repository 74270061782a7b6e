/*!
Outbound calls to the OpenAI API: the webhook endpoint API the subscription constructor uses
(openai-webhooks.md §3.2) and the object lookups that enrich events (§4).

One [`OpenAi`] client per process: HTTP/1.1 with keep-alive over rustls (ring; the system's roots,
or Mozilla's when the system has none), the proxy variables the daemon passes (`HTTPS_PROXY`,
`HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`), no redirects (a key is never sent anywhere but the base
URL). Each call runs inside a [`Budget`]: every attempt is bounded by what is left of it, and
the faults OpenAI's own SDKs retry ([`ApiError::is_transient`]: 408, 409, 429, 5xx, timeouts and
connection faults; a `POST` only when OpenAI refused it before doing anything) are sent again after
waiting as `Retry-After` / `retry-after-ms` say, or backing off exponentially, but never past the
budget.

The API key is never logged, never part of an error, and any key-like text OpenAI quotes back
(`Incorrect API key provided: sk-…`) is masked before it goes anywhere ([`redact`]).
*/

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use reqwest::{Method, StatusCode, Url};
use serde_json::{Map, Value};
use thiserror::Error;
use tokio::sync::OnceCell;
use tokio::time::Instant;

/// The credential and subscription field of the optional organization Admin API key.
pub const ADMIN_API_KEY: &str = "admin_api_key";
/// Where OpenAI's API lives unless an account says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// One attempt never waits longer than this for an answer.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per call, the first included.
const MAX_ATTEMPTS: u32 = 4;
/// Largest JSON answer read (OpenAI's objects are kilobytes; a response with large outputs may be
/// more). Bigger answers are [`ApiError::TooLarge`], never buffered.
pub const MAX_JSON_BYTES: usize = 1536 * 1024;

/// The credentials and address of one OpenAI project. `Debug` never shows the key.
#[derive(Clone)]
pub struct Account {
    key: String,
    organization: Option<String>,
    project: Option<String>,
    base: Url,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("organization", &self.organization)
            .field("project", &self.project)
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// Why an account's settings cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AccountError {
    #[error("base_url is not an https:// URL (for example https://api.openai.com/v1)")]
    InvalidBaseUrl,
    #[error("base_url must not point at a link-local address (cloud metadata services live there)")]
    LinkLocalBaseUrl,
    #[error(
        "base_url must be https:// (plain http:// only to this machine, 127.0.0.1 or localhost): the API key would \
         cross the network in clear text"
    )]
    InsecureBaseUrl,
    #[error("base_url must not carry a user name, password, query or fragment")]
    BaseUrlExtras,
    #[error("the OpenAI API key is not a plain token (it contains spaces or control characters)")]
    MalformedKey,
    #[error("the Admin API key is not an organization Admin API key (those begin with sk-admin-)")]
    NotAdminKey,
}

impl Account {
    /// The account described by `settings` (the constructor's credentials, or a manual
    /// subscription's properties): `api_key`, optional `organization`, `project` and `base_url`.
    /// None when there is no non-blank `api_key`.
    pub fn from_settings(settings: &Map<String, Value>) -> Result<Option<Account>, AccountError> {
        let field = |name: &str| settings.get(name).and_then(Value::as_str);
        Account::from_fields(field("api_key"), field("organization"), field("project"), field("base_url"))
    }

    /// The organization Admin API account of `settings` (openai-webhooks.md §4: only it may read
    /// health alerts): `admin_api_key` (`sk-admin-…`), with the settings' `organization` and
    /// `base_url`; never their `project` (an Admin key acts for the organization). None without one.
    pub fn admin_from_settings(settings: &Map<String, Value>) -> Result<Option<Account>, AccountError> {
        let field = |name: &str| settings.get(name).and_then(Value::as_str);
        Account::admin_from_fields(field(ADMIN_API_KEY), field("organization"), field("base_url"))
    }

    /// The Admin API account of these values; see [`Account::admin_from_settings`].
    pub fn admin_from_fields(
        admin_api_key: Option<&str>,
        organization: Option<&str>,
        base_url: Option<&str>,
    ) -> Result<Option<Account>, AccountError> {
        let account = Account::from_fields(admin_api_key, organization, None, base_url)?;
        match account {
            Some(account) if !account.key.starts_with("sk-admin-") => Err(AccountError::NotAdminKey),
            other => Ok(other),
        }
    }

    /// The account of these settings' values (each trimmed; blank is absent). None without a key.
    pub fn from_fields(
        api_key: Option<&str>,
        organization: Option<&str>,
        project: Option<&str>,
        base_url: Option<&str>,
    ) -> Result<Option<Account>, AccountError> {
        let clean = |value: Option<&str>| value.map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        let Some(key) = clean(api_key) else { return Ok(None) };
        if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(AccountError::MalformedKey);
        }
        let base = parse_base_url(clean(base_url).as_deref().unwrap_or(DEFAULT_BASE_URL))?;
        Ok(Some(Account { key, organization: clean(organization), project: clean(project), base }))
    }

    /// The API's base URL, e.g. `https://api.openai.com/v1` (for messages).
    pub fn base_url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url, ApiError> {
        let text = format!("{}/{}", self.base_url(), path.trim_start_matches('/'));
        let mut url =
            Url::parse(&text).map_err(|_| ApiError::Malformed { detail: "could not build the URL".into() })?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// Masks this account's key, and anything that looks like a key, in `text`.
    pub fn redact(&self, text: &str) -> String {
        redact(&text.replace(&self.key, "sk-…"))
    }
}

/// https anywhere; http only to this machine (tests, a local gateway); nothing that could carry
/// extra credentials.
fn parse_base_url(text: &str) -> Result<Url, AccountError> {
    let url = Url::parse(text).map_err(|_| AccountError::InvalidBaseUrl)?;
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() || url.fragment().is_some() {
        return Err(AccountError::BaseUrlExtras);
    }
    let host = url.host_str().unwrap_or("").trim_start_matches('[').trim_end_matches(']');
    let link_local = match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_link_local(),
        Ok(IpAddr::V6(ip)) => {
            (ip.segments()[0] & 0xffc0) == 0xfe80 || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
        }
        Err(_) => false,
    };
    if link_local {
        return Err(AccountError::LinkLocalBaseUrl);
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if url.host_str().is_some_and(is_loopback_host) => Ok(url),
        "http" => Err(AccountError::InsecureBaseUrl),
        _ => Err(AccountError::InvalidBaseUrl),
    }
}

/// `localhost`, `*.localhost`, 127.0.0.0/8 or ::1.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.eq_ignore_ascii_case("localhost") || bare.to_ascii_lowercase().ends_with(".localhost") {
        return true;
    }
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether `id` can go into a URL path as it is: 1–128 ASCII letters, digits, `_` or `-`, as
/// OpenAI's ids are (`resp_…`, `batch_…`, `ftjob-…`, `file-…`, `whe_…`). Anything else (`/`, `%2e`,
/// `\`, spaces, Unicode) could change which path is called.
pub fn is_safe_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Masks every `sk-…` token in `text` (OpenAI quotes a wrong key's start and end in its 401).
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("sk-") {
        let boundary = rest[..at].chars().next_back().is_none_or(|c| !c.is_ascii_alphanumeric());
        out.push_str(&rest[..at]);
        let after = &rest[at + 3..];
        let token_len = after.find(|c: char| !(c.is_ascii_alphanumeric() || "-_*.".contains(c))).unwrap_or(after.len());
        // A trailing full stop ends the sentence, not the key.
        let token_len = if after[..token_len].ends_with('.') { token_len - 1 } else { token_len };
        if boundary && token_len > 0 {
            out.push_str("sk-…");
        } else {
            out.push_str(&rest[at..at + 3 + token_len]);
        }
        rest = &after[token_len..];
    }
    out.push_str(rest);
    out
}

/// Why a call failed. Messages never contain the key or a body we sent.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// OpenAI answered with an error status; `message` is OpenAI's own, with keys masked.
    #[error("OpenAI answered {status}: {message}")]
    Status { status: u16, message: String, code: Option<String> },
    /// Still 429 after the retries the budget allowed.
    #[error("OpenAI rate-limited the call (429) after {attempts} attempt(s){}: {message}", retry_note(*.retry_after))]
    RateLimited { attempts: u32, retry_after: Option<u64>, message: String },
    /// No answer within the time left.
    #[error("no answer from OpenAI within {seconds} s")]
    Timeout { seconds: u64 },
    /// The connection failed (DNS, refused, TLS, proxy).
    #[error("could not reach OpenAI at {base_url}: {detail}")]
    Network { base_url: String, detail: String },
    /// The answer is not the JSON the call documents.
    #[error("OpenAI's answer was malformed: {detail}")]
    Malformed { detail: String },
    /// The answer is larger than this call reads.
    #[error("OpenAI's answer is larger than {limit} bytes")]
    TooLarge { limit: usize },
}

fn retry_note(retry_after: Option<u64>) -> String {
    match retry_after {
        Some(seconds) => format!(" (Retry-After {seconds} s is past this call's time budget)"),
        None => String::new(),
    }
}

impl ApiError {
    /// The HTTP status OpenAI answered, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            ApiError::RateLimited { .. } => Some(429),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// The retry policy, OpenAI's own (its SDKs retry exactly these): a fault that may pass when
    /// the call is sent again. 408 (the request timed out), 409 (a lock timed out), 429 (rate
    /// limited), 5xx, no answer in time, no connection. Any other status is OpenAI's answer to this
    /// request and would be the same again; a garbled or oversized answer is a 2xx, done.
    ///
    /// [`OpenAi`]'s calls send a transient fault again within their [`Budget`], after the wait
    /// `Retry-After` / `retry-after-ms` asks for, or 0.5 s, 1 s, 2 s… with jitter; at most
    /// four attempts, and none whose wait would pass the budget. A `POST` is sent again only
    /// after 408, 409 or 429, which say it was not carried out ([`Self::was_not_carried_out`]): a
    /// 5xx or a timeout may come after the endpoint was created or its secret rotated, and doing
    /// that twice would leave a second endpoint firing every event twice, or a lost secret.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Status { status, .. } => matches!(*status, 408 | 409 | 429) || *status >= 500,
            ApiError::RateLimited { .. } | ApiError::Timeout { .. } | ApiError::Network { .. } => true,
            ApiError::Malformed { .. } | ApiError::TooLarge { .. } => false,
        }
    }

    /// OpenAI refused the request before doing any of it (408, 409, 429): sending it again
    /// cannot do its work twice.
    pub fn was_not_carried_out(&self) -> bool {
        matches!(self, ApiError::Status { status: 408 | 409 | 429, .. } | ApiError::RateLimited { .. })
    }

    /// One short line for a workflow variable (`details_error`): what happened and what to do.
    pub fn summary(&self) -> String {
        match self {
            ApiError::Status { status: 404, message, .. } => {
                format!("not found (404): {message} (test events name objects that do not exist)")
            }
            ApiError::Status { status: status @ (401 | 403), message, .. } => {
                format!("permission denied ({status}): {message}")
            }
            other => other.to_string(),
        }
    }
}

/// The time one action may spend on OpenAI, all attempts and waits included, measured on the
/// monotonic clock from when it is made; and the action's `now`, from which the wall-clock times
/// OpenAI sends (a `Retry-After` date) are measured.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    started: Instant,
    deadline: Instant,
    total: Duration,
    now: i64,
}

impl Budget {
    /// `total` from now on, for the action that started at `now` (Unix seconds).
    pub fn new(total: Duration, now: i64) -> Self {
        let started = Instant::now();
        Budget { started, deadline: started + total, total, now }
    }

    /// Unix seconds now: the action's `now` and the time since.
    fn unix_now(&self) -> i64 {
        self.now.saturating_add(i64::try_from(self.started.elapsed().as_secs()).unwrap_or(i64::MAX))
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    fn timeout(&self) -> ApiError {
        ApiError::Timeout { seconds: self.total.as_secs().max(1) }
    }
}

/// The process's OpenAI client, built on first use (building reads the system's root certificates).
#[derive(Default)]
pub struct OpenAi {
    http: OnceCell<Result<reqwest::Client, ClientError>>,
}

impl std::fmt::Debug for OpenAi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAi").finish_non_exhaustive()
    }
}

impl OpenAi {
    async fn client(&self) -> Result<&reqwest::Client, ApiError> {
        let built = self
            .http
            .get_or_init(|| async {
                match tokio::task::spawn_blocking(build_client).await {
                    Ok(result) => result,
                    Err(err) => Err(ClientError::Builder { detail: err.to_string() }),
                }
            })
            .await;
        built.as_ref().map_err(|err| ApiError::Network { base_url: String::new(), detail: err.to_string() })
    }

    /// `GET` `path` and decode the JSON object it answers.
    pub async fn get(
        &self,
        account: &Account,
        path: &str,
        query: &[(&str, &str)],
        budget: &Budget,
    ) -> Result<Value, ApiError> {
        self.json(account, Method::GET, path, query, None, budget).await
    }

    /// `POST` `body` to `path` and decode the JSON object it answers.
    pub async fn post(&self, account: &Account, path: &str, body: &Value, budget: &Budget) -> Result<Value, ApiError> {
        self.json(account, Method::POST, path, &[], Some(body), budget).await
    }

    pub async fn delete(&self, account: &Account, path: &str, budget: &Budget) -> Result<Value, ApiError> {
        self.json(account, Method::DELETE, path, &[], None, budget).await
    }

    async fn json(
        &self,
        account: &Account,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        budget: &Budget,
    ) -> Result<Value, ApiError> {
        let (bytes, cut) = self.call(account, method, path, query, body, budget, MAX_JSON_BYTES).await?;
        if cut {
            return Err(ApiError::TooLarge { limit: MAX_JSON_BYTES });
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(value @ Value::Object(_)) => Ok(value),
            Ok(_) => Err(ApiError::Malformed { detail: "expected a JSON object".into() }),
            Err(err) => Err(ApiError::Malformed { detail: format!("not JSON ({err})") }),
        }
    }

    /// `GET` `path` and read at most `limit` bytes of its body: the bytes, and whether more followed.
    pub async fn download(
        &self,
        account: &Account,
        path: &str,
        limit: usize,
        budget: &Budget,
    ) -> Result<(Vec<u8>, bool), ApiError> {
        self.call(account, Method::GET, path, &[], None, budget, limit).await
    }

    /// One call with its retries (the policy is [`ApiError::is_transient`]'s). Answers the body: at
    /// most `limit` bytes, and whether it was cut.
    #[allow(clippy::too_many_arguments, reason = "one private helper behind the public verbs")]
    async fn call(
        &self,
        account: &Account,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        budget: &Budget,
        limit: usize,
    ) -> Result<(Vec<u8>, bool), ApiError> {
        let client = self.client().await?;
        let url = account.url(path, query)?;
        // A POST that reached OpenAI may have taken effect: only a refusal before any work makes
        // it safe to send again.
        let idempotent = method != Method::POST;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let left = budget.remaining();
            if left.is_zero() {
                return Err(budget.timeout());
            }
            let mut request = client
                .request(method.clone(), url.clone())
                .timeout(left.min(ATTEMPT_TIMEOUT))
                .bearer_auth(&account.key)
                .header("Accept", "application/json");
            if let Some(organization) = &account.organization {
                request = request.header("OpenAI-Organization", organization);
            }
            if let Some(project) = &account.project {
                request = request.header("OpenAI-Project", project);
            }
            if let Some(body) = body {
                request = request.header("Content-Type", "application/json").body(body.to_string());
            }
            let outcome = match request.send().await {
                Ok(response) => read(account, response, limit, budget.unix_now()).await,
                Err(err) => Err(transport_error(account, &err, budget)),
            };
            let (error, wait) = match outcome {
                Ok(Answer::Body(bytes, cut)) => return Ok((bytes, cut)),
                Ok(Answer::Refused { error, retry_after }) => (error, retry_after),
                Err(error) => (error, None),
            };
            let retryable = error.is_transient() && (idempotent || error.was_not_carried_out());
            if !retryable || attempt >= MAX_ATTEMPTS {
                return Err(finish(error, attempt, None));
            }
            let wait = wait.unwrap_or_else(|| backoff(attempt));
            if wait >= budget.remaining() {
                let retry_after = wait.as_secs_f64().ceil() as u64;
                return Err(finish(error, attempt, Some(retry_after)));
            }
            tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, path, "retrying an OpenAI call");
            tokio::time::sleep(wait).await;
        }
    }
}

/// A 429 that is final becomes [`ApiError::RateLimited`].
fn finish(error: ApiError, attempts: u32, retry_after: Option<u64>) -> ApiError {
    match error {
        ApiError::Status { status: 429, message, .. } => ApiError::RateLimited { attempts, retry_after, message },
        other => other,
    }
}

/// 0.5 s, 1 s, 2 s … capped at 8 s, with up to 25 % jitter so callers do not retry in step.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(500u64.saturating_mul(1 << (attempt - 1).min(4))).min(Duration::from_secs(8));
    // A randomly keyed hash (std seeds its keys from the OS): random enough, and no clock read.
    let random = RandomState::new().hash_one(attempt) % 250;
    base + base.mul_f64(f64::from(u32::try_from(random).unwrap_or(0)) / 1000.0)
}

enum Answer {
    Body(Vec<u8>, bool),
    Refused { error: ApiError, retry_after: Option<Duration> },
}

/// The answer; `now` (Unix seconds) measures a `Retry-After` date.
async fn read(account: &Account, mut response: reqwest::Response, limit: usize, now: i64) -> Result<Answer, ApiError> {
    let status = response.status();
    let retry_after = if status.is_success() { None } else { retry_after(response.headers(), now) };
    let read_limit = if status.is_success() { limit } else { 64 * 1024 };
    let mut bytes = Vec::new();
    let mut cut = false;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = read_limit.saturating_sub(bytes.len());
                if chunk.len() > room {
                    bytes.extend_from_slice(&chunk[..room]);
                    cut = true;
                    break;
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(err) if err.is_timeout() => return Err(ApiError::Timeout { seconds: ATTEMPT_TIMEOUT.as_secs() }),
            Err(err) => {
                return Err(ApiError::Network {
                    base_url: account.base_url().into(),
                    detail: account.redact(&chain(&err)),
                });
            }
        }
    }
    if status.is_success() {
        return Ok(Answer::Body(bytes, cut));
    }
    Ok(Answer::Refused { error: status_error(account, status, &bytes), retry_after })
}

/// OpenAI's error body `{"error":{"message","type","param","code"}}`, or the status alone.
fn status_error(account: &Account, status: StatusCode, body: &[u8]) -> ApiError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(|m| dify_plugin::wire::truncate(&account.redact(m), 600).to_owned())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    let code = error.and_then(|e| e.get("code")).and_then(Value::as_str).map(str::to_owned);
    ApiError::Status { status: status.as_u16(), message, code }
}

/// `retry-after-ms` (OpenAI's, milliseconds) or `Retry-After` (seconds, or an HTTP date: from `now`,
/// Unix seconds).
fn retry_after(headers: &reqwest::header::HeaderMap, now: i64) -> Option<Duration> {
    if let Some(ms) =
        headers.get("retry-after-ms").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<f64>().ok())
    {
        // A hostile or broken gateway may send anything: an absurd value is a long wait, never a panic.
        return Some(Duration::try_from_secs_f64(ms / 1000.0).unwrap_or(Duration::MAX));
    }
    let text = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    if text.parse::<f64>().is_ok() {
        return None;
    }
    let date = httpdate::parse_http_date(text).ok()?;
    let at = date.duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)).unwrap_or(0);
    Some(Duration::from_secs(u64::try_from(at.saturating_sub(now)).unwrap_or(0)))
}

fn transport_error(account: &Account, err: &reqwest::Error, budget: &Budget) -> ApiError {
    if err.is_timeout() {
        if budget.remaining().is_zero() {
            return budget.timeout();
        }
        return ApiError::Timeout { seconds: ATTEMPT_TIMEOUT.as_secs() };
    }
    ApiError::Network { base_url: account.base_url().into(), detail: account.redact(&chain(err)) }
}

/// An error with its causes ("error sending request: connection refused"), without the URL
/// reqwest adds (the base URL is reported on its own).
fn chain(err: &reqwest::Error) -> String {
    let text = err.to_string();
    let head = match text.find(" for url (") {
        Some(at) => text[..at].to_owned(),
        None => text,
    };
    let mut parts = vec![head];
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let text = cause.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// Why the process's HTTP client could not be built (kept, so every later call says the same).
#[derive(Debug, Error)]
enum ClientError {
    #[error("TLS setup failed: {detail}")]
    Tls { detail: String },
    #[error("the HTTP client could not be built: {detail}")]
    Builder { detail: String },
}

fn build_client() -> Result<reqwest::Client, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        // A scratch container or a serverless image without a CA bundle: Mozilla's roots.
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| ClientError::Tls { detail: err.to_string() })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("openai-trigger/", env!("CARGO_PKG_VERSION"), " (Dify plugin)"))
        .build()
        .map_err(|err| ClientError::Builder { detail: chain(&err) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn accounts_need_a_key_and_a_safe_base_url() {
        assert!(Account::from_settings(&settings(json!({}))).unwrap().is_none());
        assert!(Account::from_settings(&settings(json!({"api_key": "  "}))).unwrap().is_none());
        let account = Account::from_settings(&settings(json!({"api_key": "sk-abc"}))).unwrap().unwrap();
        assert_eq!(account.base_url(), DEFAULT_BASE_URL);
        for ok in [
            "https://gateway.example.com/openai/v1/",
            "http://127.0.0.1:9/v1",
            "http://localhost:8080/v1",
            "http://[::1]:1/v1",
        ] {
            let account = Account::from_settings(&settings(json!({"api_key": "sk-abc", "base_url": ok}))).unwrap();
            assert!(account.is_some(), "{ok}");
        }
        let cases = [
            ("http://gateway.example.com/v1", AccountError::InsecureBaseUrl),
            ("http://10.0.0.8/v1", AccountError::InsecureBaseUrl),
            ("https://user:pw@api.example.com/v1", AccountError::BaseUrlExtras),
            ("https://api.example.com/v1?key=1", AccountError::BaseUrlExtras),
            ("ftp://api.example.com", AccountError::InvalidBaseUrl),
            ("api.openai.com", AccountError::InvalidBaseUrl),
            ("https://169.254.169.254/latest", AccountError::LinkLocalBaseUrl),
            ("https://[fe80::1]/v1", AccountError::LinkLocalBaseUrl),
        ];
        for (base, want) in cases {
            let got = Account::from_settings(&settings(json!({"api_key": "sk-abc", "base_url": base})));
            assert_eq!(got.unwrap_err(), want, "{base}");
        }
        assert_eq!(
            Account::from_settings(&settings(json!({"api_key": "sk-a b"}))).unwrap_err(),
            AccountError::MalformedKey
        );
    }

    #[test]
    fn debug_never_shows_the_key() {
        let account = Account::from_settings(&settings(json!({"api_key": "sk-secret-value"}))).unwrap().unwrap();
        assert!(!format!("{account:?}").contains("secret-value"));
    }

    #[test]
    fn keys_are_masked_in_quoted_text() {
        assert_eq!(
            redact("Incorrect API key provided: sk-proj-****abcd. You can find your API key at https://x."),
            "Incorrect API key provided: sk-…. You can find your API key at https://x."
        );
        assert_eq!(redact("task-1 and risk-free"), "task-1 and risk-free");
        assert_eq!(redact("key sk-abc_DEF-123"), "key sk-…");
        assert_eq!(redact("sk-"), "sk-");
        let account = Account::from_settings(&settings(json!({"api_key": "plainsecret"}))).unwrap().unwrap();
        assert_eq!(account.redact("you sent plainsecret"), "you sent sk-…");
    }

    #[test]
    fn retry_after_reads_seconds_milliseconds_and_dates() {
        const NOW: i64 = 1_765_432_100; // Thu, 11 Dec 2025 05:48:20 GMT
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&headers, NOW), Some(Duration::from_secs(7)));
        headers.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after(&headers, NOW), Some(Duration::from_millis(250)));
        let mut dated = reqwest::header::HeaderMap::new();
        dated.insert("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&dated, NOW), Some(Duration::ZERO));
        // A date is measured from the action's injected `now`, not from the system clock.
        let mut soon = reqwest::header::HeaderMap::new();
        soon.insert("retry-after", "Thu, 11 Dec 2025 05:48:50 GMT".parse().unwrap());
        assert_eq!(retry_after(&soon, NOW), Some(Duration::from_secs(30)));
        assert_eq!(retry_after(&soon, NOW + 60), Some(Duration::ZERO));
        let mut junk = reqwest::header::HeaderMap::new();
        junk.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&junk, NOW), None);
        for absurd in ["1e30", "1e400", "-5", "NaN", "inf"] {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert("retry-after-ms", absurd.parse().unwrap());
            let _ = retry_after(&headers, NOW); // never a panic
        }
        let mut huge = reqwest::header::HeaderMap::new();
        huge.insert("retry-after-ms", "1e30".parse().unwrap());
        assert_eq!(retry_after(&huge, NOW), Some(Duration::MAX));
    }

    #[test]
    fn the_retry_policy_is_openais() {
        let status = |status: u16| ApiError::Status { status, message: String::new(), code: None };
        for transient in [408, 409, 429, 500, 502, 503, 504, 599] {
            assert!(status(transient).is_transient(), "{transient}");
        }
        for final_answer in [400, 401, 403, 404, 410, 422] {
            assert!(!status(final_answer).is_transient(), "{final_answer}");
        }
        assert!(ApiError::Timeout { seconds: 1 }.is_transient());
        assert!(ApiError::Network { base_url: String::new(), detail: String::new() }.is_transient());
        assert!(!ApiError::Malformed { detail: String::new() }.is_transient());
        assert!(!ApiError::TooLarge { limit: 1 }.is_transient());
        // What a POST may be sent again after: only refusals that did nothing.
        for refused in [408, 409, 429] {
            assert!(status(refused).was_not_carried_out(), "{refused}");
        }
        assert!(!status(500).was_not_carried_out());
        assert!(!ApiError::Timeout { seconds: 1 }.was_not_carried_out());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) >= Duration::from_millis(500) && backoff(1) < Duration::from_millis(700));
        assert!(backoff(2) >= Duration::from_secs(1));
        assert!(backoff(30) <= Duration::from_secs(10));
    }

    #[test]
    fn only_plain_ids_go_into_paths() {
        for good in ["resp_123", "batch_abc", "ftjob-AbC", "file-9", "whe_1", "C-83cb61bc3953"] {
            assert!(is_safe_id(good), "{good}");
        }
        let long = "a".repeat(129);
        for bad in ["", "..", "a/b", "%2e%2e", "a\\b", ".\t.", "a?b", "a#b", "ünï", long.as_str()] {
            assert!(!is_safe_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn loopback_hosts() {
        for host in ["localhost", "LOCALHOST", "api.localhost", "127.0.0.1", "127.9.9.9", "[::1]", "::1"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["example.com", "10.0.0.1", "localhost.example.com", "0.0.0.0"] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
