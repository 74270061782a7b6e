/*!
Routing by name (issue #19 item 2): a [`Router`] is a [`Plugin`] built like an axum router — one
handler per tool (`provider`, `tool`), per provider's credential check, per endpoint (method, path
pattern) — that picks the handler from each request and answers what has no handler the way the
daemon and Dify expect (plugin-kinds.md §1.1, §2.2, §3.2, §12):

| request | without a handler |
|---|---|
| `invoke_tool` for an unknown provider or tool | error `ValueError` ``Tool `t` not found for provider `p` `` (the Python SDK's) |
| `validate_tool_credentials` | `{"result":true}` for a provider with tools; `ValueError` for an unknown one |
| `get_tool_runtime_parameters` | the tool's declared `parameters` (or `[]` without a declaration); the Python SDK never answers it |
| `invoke_endpoint` with no matching path | a `404` response; a path matched with another method: `405` with `Allow` |
| a trigger action for another provider than the [`trigger`](Router::trigger)'s | error `ValueError` ``Provider `p` not found`` |
| `fetch_parameter_options` with no trigger or tool handler for it | error `ValueError` `Cannot find the target to fetch parameter options` (§9) |
| an `oauth` action for a provider without OAuth | error `ValueError` (§8.1) |
| any other action | the fallback [`Plugin`], else `NotImplementedError` |

Tool handlers are `async fn(ToolRequest, ToolOutput) -> Result<Vec<ToolMessage>, ErrorData>`:
they may stream messages as they go through [`ToolOutput::send`] and return the rest; each
message becomes one `stream` line (a blob several `blob_chunk` lines), and a message too long for
one line is an `OutputTooLargeError`, never dropped. With a [`Declaration`] attached
([`Router::declaration`]), missing required parameters are refused before the handler runs
(`ToolParameterValidationError`).

Endpoint handlers are `async fn(EndpointRequest, Session) -> Result<EndpointResponse, ErrorData>`;
an `Err` becomes a `500` response, as in the Python SDK.
*/

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::action::Action;
use crate::declaration::{Declaration, Mismatch, ProviderKind};
use crate::endpoint::{BODY_CHUNK, Body, EndpointRequest, EndpointResponse, PathPattern, body_chunk, head_chunk};
use crate::oauth::OAuthProvider;
use crate::session::{Plugin, Reply, Request, Session, StreamError};
use crate::tool::{Credentials, ToolMessage, ToolRequest};
use crate::trigger::{OptionsRequest, ParameterOption, TriggerPlugin, TriggerProvider};
use crate::wire::ErrorData;

/// A boxed future, as the handler traits return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A tool's handler: any `Fn(ToolRequest, ToolOutput) -> impl Future<Output = Result<Vec<ToolMessage>, ErrorData>>`.
pub trait ToolHandler: Send + Sync + 'static {
    fn call(&self, request: ToolRequest, out: ToolOutput) -> BoxFuture<'static, Result<Vec<ToolMessage>, ErrorData>>;
}

impl<F, Fut> ToolHandler for F
where
    F: Fn(ToolRequest, ToolOutput) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<ToolMessage>, ErrorData>> + Send + 'static,
{
    fn call(&self, request: ToolRequest, out: ToolOutput) -> BoxFuture<'static, Result<Vec<ToolMessage>, ErrorData>> {
        Box::pin(self(request, out))
    }
}

/// A provider's credential check: `Ok(())` is `{"result":true}`; an `Err` is sent as the
/// session's error (use `ToolProviderCredentialValidationError`, §2.2).
pub trait CredentialsHandler: Send + Sync + 'static {
    fn call(&self, credentials: Credentials, session: Session) -> BoxFuture<'static, Result<(), ErrorData>>;
}

impl<F, Fut> CredentialsHandler for F
where
    F: Fn(Credentials, Session) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), ErrorData>> + Send + 'static,
{
    fn call(&self, credentials: Credentials, session: Session) -> BoxFuture<'static, Result<(), ErrorData>> {
        Box::pin(self(credentials, session))
    }
}

/// A tool's runtime parameters (`get_tool_runtime_parameters`): the `ToolParameter` objects.
pub trait RuntimeParametersHandler: Send + Sync + 'static {
    fn call(&self, credentials: Credentials, session: Session) -> BoxFuture<'static, Result<Vec<Value>, ErrorData>>;
}

impl<F, Fut> RuntimeParametersHandler for F
where
    F: Fn(Credentials, Session) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<Value>, ErrorData>> + Send + 'static,
{
    fn call(&self, credentials: Credentials, session: Session) -> BoxFuture<'static, Result<Vec<Value>, ErrorData>> {
        Box::pin(self(credentials, session))
    }
}

/// An endpoint's handler.
pub trait EndpointHandler: Send + Sync + 'static {
    fn call(
        &self,
        request: EndpointRequest,
        session: Session,
    ) -> BoxFuture<'static, Result<EndpointResponse, ErrorData>>;
}

impl<F, Fut> EndpointHandler for F
where
    F: Fn(EndpointRequest, Session) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<EndpointResponse, ErrorData>> + Send + 'static,
{
    fn call(
        &self,
        request: EndpointRequest,
        session: Session,
    ) -> BoxFuture<'static, Result<EndpointResponse, ErrorData>> {
        Box::pin(self(request, session))
    }
}

/// A `dynamic-select` tool parameter's options (`fetch_parameter_options`, plugin-kinds.md §9).
pub trait OptionsHandler: Send + Sync + 'static {
    fn call(
        &self,
        request: OptionsRequest,
        session: Session,
    ) -> BoxFuture<'static, Result<Vec<ParameterOption>, ErrorData>>;
}

impl<F, Fut> OptionsHandler for F
where
    F: Fn(OptionsRequest, Session) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<ParameterOption>, ErrorData>> + Send + 'static,
{
    fn call(
        &self,
        request: OptionsRequest,
        session: Session,
    ) -> BoxFuture<'static, Result<Vec<ParameterOption>, ErrorData>> {
        Box::pin(self(request, session))
    }
}

/// [`OAuthProvider`] made object-safe.
pub(crate) trait DynOAuth: Send + Sync + 'static {
    fn serve<'a>(&'a self, request: &'a Request, session: &'a Session) -> BoxFuture<'a, Reply>;
}

impl<O: OAuthProvider> DynOAuth for O {
    fn serve<'a>(&'a self, request: &'a Request, session: &'a Session) -> BoxFuture<'a, Reply> {
        Box::pin(async move {
            let shape = |err: serde_json::Error| {
                ErrorData::new(
                    "ValueError",
                    format!(
                        "the OAuth request has a field of the wrong type (JSON line {}, column {})",
                        err.line(),
                        err.column()
                    ),
                )
            };
            match request.action() {
                Some(Action::GetAuthorizationUrl) => {
                    let url = self.authorization_url(request.parse().map_err(shape)?, session).await?;
                    crate::session::reply(&json!({ "authorization_url": url }))
                }
                Some(Action::GetCredentials) => {
                    crate::session::reply(&self.credentials(request.parse().map_err(shape)?, session).await?)
                }
                _ => crate::session::reply(&self.refresh_credentials(request.parse().map_err(shape)?, session).await?),
            }
        })
    }
}

/// A [`TriggerPlugin`] made object-safe.
trait DynTrigger: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn serve<'a>(&'a self, request: &'a Request, session: &'a Session) -> BoxFuture<'a, Reply>;
}

impl<T: TriggerProvider> DynTrigger for (String, TriggerPlugin<T>) {
    fn name(&self) -> &str {
        &self.0
    }

    fn serve<'a>(&'a self, request: &'a Request, session: &'a Session) -> BoxFuture<'a, Reply> {
        Box::pin(self.1.serve(request, session))
    }
}

/// [`Plugin`] made object-safe, for the fallback.
trait DynPlugin: Send + Sync + 'static {
    fn handle<'a>(&'a self, request: Request, session: &'a Session) -> BoxFuture<'a, Reply>;
}

impl<P: Plugin> DynPlugin for P {
    fn handle<'a>(&'a self, request: Request, session: &'a Session) -> BoxFuture<'a, Reply> {
        Box::pin(Plugin::handle(self, request, session))
    }
}

/// Where a tool handler streams its messages as it goes.
#[derive(Debug, Clone)]
pub struct ToolOutput {
    session: Session,
}

impl ToolOutput {
    /// Sends `message` now (a blob as its chunks).
    ///
    /// Errors: `OutputTooLargeError` when one chunk would pass the line limit (a text or JSON
    /// message of about 4 MiB: split it or send a blob), or when the output is closed.
    pub async fn send(&self, message: ToolMessage) -> Result<(), ErrorData> {
        send_chunks(&self.session, message.chunks()).await.map_err(ErrorData::from)
    }

    /// The session, for backwards calls and storage.
    pub fn session(&self) -> &Session {
        &self.session
    }
}

async fn send_chunks(session: &Session, chunks: Vec<String>) -> Result<(), StreamError> {
    for chunk in chunks {
        let raw = RawValue::from_string(chunk).map_err(|_| StreamError::Closed)?;
        session.stream(&raw).await?;
    }
    Ok(())
}

struct EndpointRoute {
    method: String,
    pattern: PathPattern,
    handler: Arc<dyn EndpointHandler>,
}

/// A [`Plugin`] that routes each request to the handler registered for its name.
#[derive(Default)]
pub struct Router {
    tools: HashMap<(String, String), Arc<dyn ToolHandler>>,
    credentials: HashMap<String, Arc<dyn CredentialsHandler>>,
    runtime_parameters: HashMap<(String, String), Arc<dyn RuntimeParametersHandler>>,
    endpoints: Vec<EndpointRoute>,
    trigger: Option<Box<dyn DynTrigger>>,
    oauth: HashMap<String, Box<dyn DynOAuth>>,
    options: HashMap<(String, String), Arc<dyn OptionsHandler>>,
    declaration: Option<Declaration>,
    fallback: Option<Box<dyn DynPlugin>>,
}

/// A route that cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("endpoint path {path:?}: {rule}")]
    BadPath { path: String, rule: crate::endpoint::PatternError },
    #[error("endpoint method {0:?} is not one of GET POST PUT DELETE (plugin-kinds.md §3.1)")]
    BadMethod(String),
}

impl Router {
    pub fn new() -> Self {
        Router::default()
    }

    /// Handles `invoke_tool` for `tool` of `provider` (their `identity.name`s).
    #[must_use]
    pub fn tool(mut self, provider: &str, tool: &str, handler: impl ToolHandler) -> Self {
        self.tools.insert((provider.to_owned(), tool.to_owned()), Arc::new(handler));
        self
    }

    /// Handles `validate_tool_credentials` for `provider`.
    #[must_use]
    pub fn tool_credentials(mut self, provider: &str, handler: impl CredentialsHandler) -> Self {
        self.credentials.insert(provider.to_owned(), Arc::new(handler));
        self
    }

    /// Handles `get_tool_runtime_parameters` for `tool` of `provider` (declare it with
    /// `has_runtime_parameters: true`).
    #[must_use]
    pub fn tool_runtime_parameters(
        mut self,
        provider: &str,
        tool: &str,
        handler: impl RuntimeParametersHandler,
    ) -> Self {
        self.runtime_parameters.insert((provider.to_owned(), tool.to_owned()), Arc::new(handler));
        self
    }

    /// Handles `invoke_endpoint` for `method` (upper case) on `path` (Werkzeug syntax,
    /// [`PathPattern`]). The first registered match wins.
    ///
    /// Errors: a bad path pattern or a method the daemon does not route.
    pub fn endpoint(mut self, method: &str, path: &str, handler: impl EndpointHandler) -> Result<Self, RouteError> {
        if !crate::validate::ENDPOINT_METHODS.contains(&method) {
            return Err(RouteError::BadMethod(method.to_owned()));
        }
        let pattern = PathPattern::parse(path).map_err(|rule| RouteError::BadPath { path: path.to_owned(), rule })?;
        self.endpoints.push(EndpointRoute { method: method.to_owned(), pattern, handler: Arc::new(handler) });
        Ok(self)
    }

    /// Serves the trigger actions, and the OAuth and dynamic-option actions naming `name`, with
    /// `provider` (a trigger is the only kind in its plugin, plugin-kinds.md §1.4).
    #[must_use]
    pub fn trigger(mut self, name: &str, provider: impl TriggerProvider) -> Self {
        self.trigger = Some(Box::new((name.to_owned(), TriggerPlugin::new(name, provider))));
        self
    }

    /// Serves the `oauth` actions for tool (or datasource) `provider` (plugin-kinds.md §8).
    #[must_use]
    pub fn oauth(mut self, provider: &str, handler: impl OAuthProvider) -> Self {
        self.oauth.insert(provider.to_owned(), Box::new(handler));
        self
    }

    /// Handles `fetch_parameter_options` for the `dynamic-select` parameters of `tool` of
    /// `provider` (plugin-kinds.md §9; the request's `provider_action` is the tool's name).
    #[must_use]
    pub fn tool_parameter_options(mut self, provider: &str, tool: &str, handler: impl OptionsHandler) -> Self {
        self.options.insert((provider.to_owned(), tool.to_owned()), Arc::new(handler));
        self
    }

    /// Serves every other action with `plugin`.
    #[must_use]
    pub fn fallback(mut self, plugin: impl Plugin) -> Self {
        self.fallback = Some(Box::new(plugin));
        self
    }

    /// Attaches the plugin's declaration: required tool parameters are then checked before a
    /// handler runs, and `get_tool_runtime_parameters` answers the declared parameters by default.
    #[must_use]
    pub fn declaration(mut self, declaration: Declaration) -> Self {
        self.declaration = Some(declaration);
        self
    }

    /// Checks that every declared tool and endpoint has a handler and every handler a declaration
    /// (run it in a test, or at start-up).
    ///
    /// Errors: [`Mismatch`] listing each difference.
    pub fn check(&self, declaration: &Declaration) -> Result<(), Mismatch> {
        let mut problems = Vec::new();
        let mut declared_tools = Vec::new();
        for provider in declaration.providers_of(ProviderKind::Tool) {
            let provider_name = provider.pointer("/identity/name").and_then(Value::as_str).unwrap_or_default();
            for tool in provider["tools"].as_array().into_iter().flatten() {
                let name = tool.pointer("/identity/name").and_then(Value::as_str).unwrap_or_default();
                declared_tools.push((provider_name.to_owned(), name.to_owned()));
            }
        }
        for key in &declared_tools {
            if !self.tools.contains_key(key) {
                problems.push(format!("tool {}/{} is declared but has no handler", key.0, key.1));
            }
        }
        for key in self.tools.keys() {
            if !declared_tools.contains(key) {
                problems.push(format!("tool {}/{} has a handler but is not declared", key.0, key.1));
            }
        }
        let mut declared_endpoints = Vec::new();
        for group in declaration.providers_of(ProviderKind::Endpoint) {
            for endpoint in group["endpoints"].as_array().into_iter().flatten() {
                let method = endpoint["method"].as_str().unwrap_or_default();
                let path = endpoint["path"].as_str().unwrap_or_default();
                declared_endpoints.push((method.to_owned(), path.to_owned()));
            }
        }
        for (method, path) in &declared_endpoints {
            if !self.endpoints.iter().any(|r| &r.method == method && r.pattern.rule() == path) {
                problems.push(format!("endpoint {method} {path} is declared but has no handler"));
            }
        }
        for route in &self.endpoints {
            if !declared_endpoints.iter().any(|(m, p)| m == &route.method && p == route.pattern.rule()) {
                problems.push(format!(
                    "endpoint {} {} has a handler but is not declared",
                    route.method,
                    route.pattern.rule()
                ));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(Mismatch(problems)) }
    }

    fn declared_tool(&self, provider: &str, tool: &str) -> Option<&Value> {
        let declaration = self.declaration.as_ref()?;
        declaration
            .providers_of(ProviderKind::Tool)
            .filter(|p| p.pointer("/identity/name").and_then(Value::as_str) == Some(provider))
            .flat_map(|p| p["tools"].as_array().into_iter().flatten())
            .find(|t| t.pointer("/identity/name").and_then(Value::as_str) == Some(tool))
    }

    /// The trigger, when the request names it (or names no provider).
    fn trigger_for(&self, provider: &str) -> Option<&dyn DynTrigger> {
        self.trigger.as_deref().filter(|t| provider.is_empty() || t.name() == provider)
    }

    async fn parameter_options(&self, request: &Request, session: &Session) -> Reply {
        let options: OptionsRequest = request.parse().map_err(|err| {
            ErrorData::new(
                "ValueError",
                format!(
                    "fetch_parameter_options request has a field of the wrong type (JSON line {}, column {})",
                    err.line(),
                    err.column()
                ),
            )
        })?;
        if let Some(trigger) = self.trigger_for(&options.provider) {
            return trigger.serve(request, session).await;
        }
        let key = (options.provider.clone(), options.provider_action.clone());
        match self.options.get(&key).cloned() {
            Some(handler) => {
                let options = handler.call(options, session.clone()).await?;
                crate::session::reply(&json!({ "options": options }))
            }
            None => Err(ErrorData::new("ValueError", "Cannot find the target to fetch parameter options")),
        }
    }

    async fn oauth_action(&self, request: &Request, session: &Session) -> Reply {
        #[derive(serde::Deserialize)]
        struct Named {
            #[serde(default)]
            provider: String,
        }
        let provider = request.parse::<Named>().map(|n| n.provider).unwrap_or_default();
        if let Some(trigger) = self.trigger_for(&provider) {
            return trigger.serve(request, session).await;
        }
        match self.oauth.get(&provider) {
            Some(oauth) => oauth.serve(request, session).await,
            None => Err(ErrorData::new(
                "ValueError",
                format!("Provider `{}` does not support OAuth", crate::wire::truncate(&provider, 128)),
            )),
        }
    }

    fn has_provider(&self, provider: &str) -> bool {
        self.tools.keys().any(|(p, _)| p == provider) || self.credentials.contains_key(provider)
    }

    async fn invoke_tool(&self, data: &Value, session: &Session) -> Reply {
        let request = ToolRequest::from_data(data)?;
        let key = (request.provider.clone(), request.tool.clone());
        let Some(handler) = self.tools.get(&key).cloned() else {
            return Err(not_found(&request.provider, Some(&request.tool), self.has_provider(&request.provider)));
        };
        if let Some(declared) = self.declared_tool(&request.provider, &request.tool) {
            for parameter in declared["parameters"].as_array().into_iter().flatten() {
                let name = parameter["name"].as_str().unwrap_or_default();
                if parameter["required"].as_bool() == Some(true) && request.parameters.get(name).is_none() {
                    return Err(ErrorData::new(
                        "ToolParameterValidationError",
                        format!("missing required parameter `{name}` of tool `{}`", request.tool),
                    ));
                }
            }
        }
        let out = ToolOutput { session: session.clone() };
        let messages = handler.call(request, out).await?;
        for message in messages {
            send_chunks(session, message.chunks()).await?;
        }
        session.mark_streamed();
        crate::session::reply(&Value::Null)
    }

    async fn validate_credentials(&self, data: &Value, session: &Session) -> Reply {
        let provider = data["provider"].as_str().unwrap_or_default();
        let credentials = Credentials::from_data(data)?;
        match self.credentials.get(provider).cloned() {
            Some(handler) => handler.call(credentials, session.clone()).await?,
            None if self.has_provider(provider) => {}
            None => return Err(not_found(provider, None, false)),
        }
        crate::session::reply(&json!({"result": true}))
    }

    async fn runtime_parameters(&self, data: &Value, session: &Session) -> Reply {
        let provider = data["provider"].as_str().unwrap_or_default();
        let tool = data["tool"].as_str().unwrap_or_default();
        let key = (provider.to_owned(), tool.to_owned());
        let parameters = match self.runtime_parameters.get(&key).cloned() {
            Some(handler) => handler.call(Credentials::from_data(data)?, session.clone()).await?,
            None if self.tools.contains_key(&key) => {
                self.declared_tool(provider, tool).and_then(|t| t["parameters"].as_array().cloned()).unwrap_or_default()
            }
            None => return Err(not_found(provider, Some(tool), self.has_provider(provider))),
        };
        crate::session::reply(&json!({"parameters": parameters}))
    }

    async fn invoke_endpoint(&self, data: &Value, session: &Session) -> Reply {
        let mut request =
            EndpointRequest::from_data(data).map_err(|err| ErrorData::new("InvalidRequestError", err.to_string()))?;
        let mut allowed = Vec::new();
        let mut found = None;
        for route in &self.endpoints {
            if let Some(params) = route.pattern.matches(&request.path) {
                if route.method == request.method {
                    found = Some((route.handler.clone(), params));
                    break;
                }
                allowed.push(route.method.clone());
            }
        }
        let response = match found {
            Some((handler, params)) => {
                request.params = params;
                handler.call(request, session.clone()).await.unwrap_or_else(|err| EndpointResponse::from_error(&err))
            }
            None if allowed.is_empty() => EndpointResponse::text(404, "Not Found"),
            None => EndpointResponse::text(405, "Method Not Allowed").header("Allow", allowed.join(", ")),
        };
        if let Some(first_result) = send_response(session, response).await? {
            tokio::time::sleep_until(first_result + ENDPOINT_END_GRACE).await;
        }
        session.mark_streamed();
        crate::session::reply(&Value::Null)
    }
}

/// How long `end` is held back after the first `result` chunk of an endpoint response that has
/// more `result` chunks after it.
///
/// The daemon (`io_tunnel/endpoint_service.go InvokeEndpoint` @ bdb5642a) reads chunks up to the
/// first one with `result`, starts copying the rest into the HTTP body, and then closes that body at
/// once if the plugin's session is already closed (`if resp.IsClosed() { response.Close() }`);
/// every later piece is then dropped silently (`Stream.Write` on a closed stream). A plugin that
/// answers fast, so that all its chunks and `end` are in before that check, loses everything after
/// the first `result` chunk: the real daemon answered `GET /duck/app-42` of the neko example with
/// an empty body (tests/conformance/test_sdk_examples.py). Holding `end` until the daemon has
/// passed that check keeps the body whole; a response sent in one chunk is not delayed.
pub const ENDPOINT_END_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

/// Writes `response` as endpoint chunks: status, headers and the first body piece, then the
/// rest one `result` chunk per piece (daemon-protocol.md §2.3 note E). Returns when the first
/// `result` chunk was sent if more followed it ([`ENDPOINT_END_GRACE`]).
async fn send_response(
    session: &Session,
    response: EndpointResponse,
) -> Result<Option<tokio::time::Instant>, StreamError> {
    let EndpointResponse { status, headers, body } = response;
    match body {
        Body::Full(bytes) => {
            let mut pieces = bytes.chunks(BODY_CHUNK);
            let first = pieces.next().unwrap_or_default();
            send_chunks(session, vec![head_chunk(status, &headers, first)]).await?;
            let sent = tokio::time::Instant::now();
            let rest: Vec<String> = pieces.map(body_chunk).collect();
            let more = !rest.is_empty();
            send_chunks(session, rest).await?;
            Ok(more.then_some(sent))
        }
        Body::Stream(mut receiver) => {
            send_chunks(session, vec![head_chunk(status, &headers, &[])]).await?;
            let sent = tokio::time::Instant::now();
            let mut more = false;
            while let Some(piece) = receiver.recv().await {
                more = true;
                send_chunks(session, piece.chunks(BODY_CHUNK).map(body_chunk).collect()).await?;
            }
            Ok(more.then_some(sent))
        }
    }
}

fn not_found(provider: &str, tool: Option<&str>, provider_known: bool) -> ErrorData {
    let message = match tool {
        Some(tool) if provider_known => format!("Tool `{tool}` not found for provider `{provider}`"),
        _ => format!("Provider `{provider}` not found"),
    };
    ErrorData::new("ValueError", message)
}

impl Plugin for Router {
    async fn handle(&self, request: Request, session: &Session) -> Reply {
        let action = request.action().cloned();
        let trigger_action = matches!(
            action,
            Some(
                Action::DispatchTriggerEvent
                    | Action::InvokeTriggerEvent
                    | Action::ValidateTriggerCredentials
                    | Action::SubscribeTrigger
                    | Action::UnsubscribeTrigger
                    | Action::RefreshTrigger
            )
        );
        if let (true, Some(trigger)) = (trigger_action, self.trigger.as_deref()) {
            // The trigger itself answers a request naming another provider.
            return trigger.serve(&request, session).await;
        }
        match action {
            Some(Action::FetchParameterOptions) if self.trigger.is_some() || !self.options.is_empty() => {
                return self.parameter_options(&request, session).await;
            }
            Some(Action::GetAuthorizationUrl | Action::GetCredentials | Action::RefreshCredentials)
                if self.trigger.is_some() || !self.oauth.is_empty() =>
            {
                return self.oauth_action(&request, session).await;
            }
            _ => {}
        }
        let routed = matches!(
            action,
            Some(
                Action::InvokeTool
                    | Action::ValidateToolCredentials
                    | Action::GetToolRuntimeParameters
                    | Action::InvokeEndpoint
            )
        );
        if !routed {
            return match &self.fallback {
                Some(fallback) => fallback.handle(request, session).await,
                None => Err(ErrorData::new(
                    "NotImplementedError",
                    format!("action {} is not served by this plugin", action.as_ref().map_or("(none)", Action::as_str)),
                )),
            };
        }
        let data: Value = request.parse().map_err(|err| ErrorData::new("InvalidRequestError", err.to_string()))?;
        match action {
            Some(Action::InvokeTool) => self.invoke_tool(&data, session).await,
            Some(Action::ValidateToolCredentials) => self.validate_credentials(&data, session).await,
            Some(Action::GetToolRuntimeParameters) => self.runtime_parameters(&data, session).await,
            _ => self.invoke_endpoint(&data, session).await,
        }
    }
}
