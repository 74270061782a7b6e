/*!
The subscription constructor: API-key subscriptions whose OpenAI webhook endpoint the plugin
creates, checks, repairs, rotates and deletes itself (triggers.md §4.3–§4.6, §4.8, §5.5–§5.6;
openai-webhooks.md §3.2).

A constructor subscription stores `webhook_secret`, `endpoint_id`, `subscribed_event_types`,
`secret_created_at` and `previous_secret_expires_at` in its properties, the one
[`SubscriptionProperties`] dispatch reads too (see [`crate::subscription`] for what each holds). Dify
encrypts `webhook_secret`, declared `secret-input` in `subscription_schema`, so dispatch verifies
exactly as for manual ones.

Refresh: subscribe answers `expires_at` [`REFRESH_PERIOD`] ahead, so Dify calls `refresh_trigger`
about daily (its beat runs every minute and refreshes what has expired, §4.6). Refresh puts back the
URL and types when they changed on OpenAI's side, creates the endpoint again when it was deleted
(storing the new secret), rotates the secret when the subscription asked for it, and drops an old
secret once its 24 hours are over. A fault that may pass (network, timeout, 429, 5xx) or a refused
key never fails the subscription: the properties stay as they are and refresh runs again in
[`RETRY_PERIOD`].
*/

use std::time::Duration;

use dify_plugin::trigger::{
    CredentialsRequest, OptionsRequest, ParameterOption, StoredRequest, SubscribeRequest, Subscription, Unsubscribed,
};
use serde_json::{Map, Value, json};
use thiserror::Error;

use crate::error::PluginError;
use crate::events;
use crate::openai::{Account, ApiError, Budget, OpenAi, is_loopback_host, is_safe_id};
use crate::subscription::SubscriptionProperties;

/// A subscription as subscribe and refresh answer it, with this plugin's properties.
pub type Stored = Subscription<SubscriptionProperties>;

/// How far ahead a healthy subscription's `expires_at` is: refresh checks the endpoint this often.
pub const REFRESH_PERIOD: i64 = 24 * 3600;
/// After a fault, refresh runs again this soon.
pub const RETRY_PERIOD: i64 = 3600;
/// How long OpenAI keeps an old secret valid after a rotation with the overlap asked for.
pub const ROTATION_OVERLAP: i64 = 24 * 3600;
/// The most days between rotations a subscription may ask for.
pub const MAX_ROTATION_DAYS: i64 = 365;

/// Constructor parameter names (`subscription_constructor.parameters`).
pub mod parameter {
    pub const EVENTS: &str = "events";
    pub const ROTATE_SECRET_DAYS: &str = "rotate_secret_days";
}

/// Types OpenAI delivers only to endpoints configured in its dashboard (the Live API's SIP calls,
/// organization-level safety notices): a constructor cannot subscribe to them.
pub const MANUAL_ONLY_TYPES: &[&str] = &[
    "live.transport.incoming",
    "live.transport.connected",
    "live.call.incoming",
    "safety.org_alert.created",
    "safety.warning_issued",
    "safety.deactivation_issued",
];

/// The types a project can subscribe to through the API, when `GET /webhook_event_types` cannot be
/// asked: the `event_types` enum of `POST /v1/webhook_endpoints`, 29 values in OpenAI's order
/// (openai-webhooks.md §3.2, openai-python 3.63.0 `webhook_create_params.py`). The video types
/// are undeclared (the Videos API shut down on 2026-09-24) and fire `any_event`.
pub const SUBSCRIBABLE_TYPES: [&str; 29] = [
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

/// The built-in list of subscribable types ([`SUBSCRIBABLE_TYPES`]), for when OpenAI cannot be asked.
pub fn fallback_types() -> Vec<&'static str> {
    SUBSCRIBABLE_TYPES.to_vec()
}

/// Types whose API OpenAI has shut down (openai-webhooks.md §1.2): a subscription left on "every
/// type" does not take them; the user may still pick them.
pub fn is_shut_down(openai_type: &str) -> bool {
    openai_type.starts_with("eval.run.") || openai_type.starts_with("video.")
}

/// The constructor actions, with the process's OpenAI client, the action's `now` (Unix seconds,
/// read once from the provider's clock), and what one action may spend on OpenAI.
pub struct Constructor<'a> {
    pub api: &'a OpenAi,
    pub now: i64,
    pub budget: Duration,
}

fn account_of(credentials: &Map<String, Value>) -> Result<Option<Account>, crate::openai::AccountError> {
    Account::from_settings(credentials)
}

impl Constructor<'_> {
    /// `validate_trigger_credentials`: one cheap authenticated call. Errors are
    /// `TriggerProviderCredentialValidationError`s the UI shows as they are.
    pub async fn validate(&self, request: CredentialsRequest) -> Result<(), PluginError> {
        let rejected = |message: String| PluginError::CredentialsRejected { message };
        let account = account_of(&request.credentials).map_err(|err| rejected(err.to_string()))?.ok_or_else(|| {
            rejected("api_key is required: an OpenAI API key of the project that owns the webhooks".into())
        })?;
        let budget = Budget::new(self.budget, self.now);
        let admin = Account::admin_from_settings(&request.credentials).map_err(|err| rejected(err.to_string()))?;
        match self.api.get(&account, "webhook_endpoints", &[("limit", "1")], &budget).await {
            Ok(_) => match admin {
                Some(admin) => self.validate_admin(&admin, &budget).await,
                None => Ok(()),
            },
            Err(err @ ApiError::Status { status: 401 | 403, .. }) => {
                Err(rejected(format!("OpenAI refused this API key: {}", err_message(&err))))
            }
            Err(err @ ApiError::Status { status: 404, .. }) => {
                Err(rejected(format!("{} has no webhook endpoint API ({err}); check base_url", account.base_url())))
            }
            Err(err) => Err(rejected(format!("could not check the key: {err}"))),
        }
    }

    /// The optional Admin API key, checked with the cheapest call it exists for: one health alert
    /// rule (openai-webhooks.md §4).
    async fn validate_admin(&self, admin: &Account, budget: &Budget) -> Result<(), PluginError> {
        let rejected = |message: String| PluginError::CredentialsRejected { message };
        match self.api.get(admin, "organization/health/alert_rules", &[("limit", "1")], budget).await {
            Ok(_) => Ok(()),
            Err(err @ ApiError::Status { status: 401 | 403, .. }) => Err(rejected(format!(
                "OpenAI refused the Admin API key (health alert details need an organization Admin API key): {}",
                err_message(&err)
            ))),
            Err(err) => Err(rejected(format!("could not check the Admin API key: {err}"))),
        }
    }

    /// `subscribe_trigger`: creates (or adopts) the endpoint for Dify's callback URL and answers the
    /// subscription with its secret. Errors are `SubscriptionError`s carrying OpenAI's message.
    pub async fn subscribe(&self, request: SubscribeRequest) -> Result<Stored, PluginError> {
        let failed = |message: String| PluginError::Subscription { message };
        let account = account_of(&request.credentials)
            .map_err(|err| failed(err.to_string()))?
            .ok_or_else(|| failed("api_key is required to create the OpenAI webhook endpoint".into()))?;
        let callback = request.endpoint;
        let setup = |err: SetupError| failed(err.to_string());
        check_callback(&callback).map_err(setup)?;
        let parameters = request.parameters;
        let requested = requested_types(&parameters).map_err(setup)?;
        let rotate_days = rotation_days(&parameters).map_err(setup)?;
        let budget = Budget::new(self.budget, self.now);
        let types = if requested.is_empty() { self.default_types(&account, &budget).await } else { requested.clone() };

        // A subscription built again (Dify's rebuild, or a retry after a lost answer) must not
        // leave a second endpoint delivering to the same URL: ensure_endpoint adopts one that does.
        let (id, secret) = self.ensure_endpoint(&account, &callback, &types, &budget).await.map_err(setup)?;

        let mut properties = SubscriptionProperties {
            webhook_secret: secret,
            endpoint_id: Some(id.clone()),
            secret_created_at: Some(self.now),
            previous_secret_expires_at: Some(0),
            ..SubscriptionProperties::default()
        };
        properties.set_event_types(&types);
        let mut echoed = Map::new();
        echoed.insert(parameter::EVENTS.into(), json!(requested));
        echoed.insert(parameter::ROTATE_SECRET_DAYS.into(), Value::from(rotate_days));
        tracing::info!(endpoint_id = %id, types = types.len(), "created the OpenAI webhook endpoint");
        Ok(Stored {
            expires_at: self.next_check(&properties, rotate_days),
            endpoint: callback,
            parameters: echoed,
            properties,
        })
    }

    /// `unsubscribe_trigger`: deletes the endpoint; one already gone counts as deleted. A key that
    /// cannot delete it (missing, revoked, without the permission) leaves the endpoint in place and
    /// still answers success, naming it: failing would make Dify refuse to rebuild the subscription
    /// (triggers.md §4.5), the very edit that gives it a working key, and the rebuild's subscribe
    /// adopts the endpoint left behind.
    pub async fn unsubscribe(&self, request: StoredRequest<SubscriptionProperties>) -> Unsubscribed {
        let properties = request.subscription.properties;
        let Some(id) = properties.endpoint().map(str::to_owned) else {
            return Unsubscribed {
                success: true,
                message: "no OpenAI webhook endpoint is managed by this subscription; nothing to delete".into(),
            };
        };
        if !is_safe_id(&id) {
            return left_behind("(unknown)", "its endpoint_id is not an OpenAI endpoint id");
        }
        let account = match account_of(&request.credentials) {
            Ok(Some(account)) => account,
            Ok(None) => return left_behind(&id, "the subscription has no API key"),
            Err(err) => return left_behind(&id, &err.to_string()),
        };
        let budget = Budget::new(self.budget, self.now);
        match self.api.delete(&account, &format!("webhook_endpoints/{id}"), &budget).await {
            Ok(_) => Unsubscribed { success: true, message: format!("deleted OpenAI webhook endpoint {id}") },
            Err(err) if err.is_not_found() => {
                Unsubscribed { success: true, message: format!("OpenAI webhook endpoint {id} was already deleted") }
            }
            Err(err @ ApiError::Status { status: 401 | 403, .. }) => left_behind(&id, &err_message(&err)),
            Err(err) => Unsubscribed {
                success: false,
                message: format!("could not delete OpenAI webhook endpoint {id}: {}", err_message(&err)),
            },
        }
    }

    /// `refresh_trigger`: checks and repairs the endpoint, rotates or retires secrets, and says
    /// when to look again. Never an error for a fault that may pass (see the module docs).
    pub async fn refresh(&self, request: StoredRequest<SubscriptionProperties>) -> Result<Stored, PluginError> {
        let subscription = request.subscription;
        let callback = subscription.endpoint;
        let parameters = subscription.parameters;
        let mut properties = subscription.properties;
        let answer = |expires_at: i64, properties: SubscriptionProperties| Stored {
            expires_at,
            endpoint: callback.clone(),
            parameters: parameters.clone(),
            properties,
        };
        let Some(id) = properties.endpoint().map(str::to_owned) else {
            // Not ours to manage (a manual subscription): never refresh it again.
            return Ok(answer(-1, properties));
        };
        let rotate_days = rotation_days(&parameters).unwrap_or(0);
        let later = |reason: &str, properties: SubscriptionProperties| {
            tracing::warn!(endpoint_id = %id, "refresh postponed by {} s: {reason}", RETRY_PERIOD);
            answer(self.now + RETRY_PERIOD, properties)
        };
        // An old secret past its 24 hours is valid nowhere: keep only the current one, whatever
        // happens with OpenAI below.
        let previous_expiry = properties.previous_secret_expires_at.unwrap_or(0);
        if previous_expiry > 0 && self.now >= previous_expiry {
            if let Some(current) = properties.current_secret().map(str::to_owned) {
                properties.webhook_secret = current;
            }
            properties.previous_secret_expires_at = Some(0);
        }
        if !is_safe_id(&id) {
            return Ok(later("its endpoint_id is not an OpenAI endpoint id", properties));
        }
        let account = match account_of(&request.credentials) {
            Ok(Some(account)) => account,
            Ok(None) => return Ok(later("the subscription has no API key", properties)),
            Err(err) => return Ok(later(&err.to_string(), properties)),
        };
        let budget = Budget::new(self.budget, self.now);
        let mut types: Vec<String> =
            properties.subscribed_types().unwrap_or_default().into_iter().map(str::to_owned).collect();
        if types.is_empty() {
            types = self.default_types(&account, &budget).await;
            properties.set_event_types(&types);
        }

        match self.api.get(&account, &format!("webhook_endpoints/{id}"), &[], &budget).await {
            Ok(endpoint) => {
                let url = endpoint.get("url").and_then(Value::as_str).unwrap_or_default();
                let mut have: Vec<&str> = string_list(endpoint.get("event_types"));
                let mut want: Vec<&str> = types.iter().map(String::as_str).collect();
                have.sort_unstable();
                have.dedup();
                want.sort_unstable();
                want.dedup();
                if url != callback || have != want {
                    let change = json!({"url": callback, "event_types": types});
                    if let Err(err) =
                        self.api.post(&account, &format!("webhook_endpoints/{id}"), &change, &budget).await
                    {
                        return Ok(later(&format!("could not put back the URL and types: {err}"), properties));
                    }
                    tracing::info!(endpoint_id = %id, "put back the endpoint's URL and event types changed on OpenAI's side");
                }
            }
            Err(err) if err.is_not_found() => {
                let (new_id, secret) = match self.ensure_endpoint(&account, &callback, &types, &budget).await {
                    Ok(endpoint) => endpoint,
                    Err(reason) => return Ok(later(&format!("the endpoint was deleted; {reason}"), properties)),
                };
                tracing::info!(old = %id, endpoint_id = %new_id, "replaced the endpoint deleted on OpenAI's side");
                properties.endpoint_id = Some(new_id);
                properties.webhook_secret = secret;
                properties.secret_created_at = Some(self.now);
                properties.previous_secret_expires_at = Some(0);
                let next = self.next_check(&properties, rotate_days);
                return Ok(answer(next, properties));
            }
            Err(err) => return Ok(later(&err.to_string(), properties)),
        }

        if rotate_days > 0 && self.now >= properties.secret_created_at.unwrap_or(0).saturating_add(rotate_days * 86_400)
        {
            let rotate = json!({"keep_old_secret_active_for_24_hours": true});
            match self.api.post(&account, &format!("webhook_endpoints/{id}/rotate_secret"), &rotate, &budget).await {
                Ok(rotated) => match endpoint_secret(&rotated) {
                    Ok((_, secret)) => {
                        let both = match properties.current_secret() {
                            Some(old) => format!("{secret} {old}"),
                            None => secret,
                        };
                        properties.webhook_secret = both;
                        properties.secret_created_at = Some(self.now);
                        properties.previous_secret_expires_at = Some(self.now + ROTATION_OVERLAP);
                        tracing::info!(endpoint_id = %id, "rotated the signing secret; the old one stays valid for 24 h");
                    }
                    Err(_) => return Ok(later("OpenAI's rotate answer had no signing_secret", properties)),
                },
                Err(err) => return Ok(later(&format!("could not rotate the signing secret: {err}"), properties)),
            }
        }
        let next = self.next_check(&properties, rotate_days);
        Ok(answer(next, properties))
    }

    /// `fetch_parameter_options` (§4.8): the constructor's `events`, and the eval events' `eval_id`.
    pub async fn options(&self, request: OptionsRequest) -> Result<Vec<ParameterOption>, PluginError> {
        let action = request.provider_action;
        let parameter_name = request.parameter;
        let account = account_of(&request.credentials).ok().flatten();
        let budget = Budget::new(self.budget, self.now);
        let options = match (action.as_str(), parameter_name.as_str()) {
            ("provider", parameter::EVENTS) => {
                let types = match &account {
                    Some(account) => self.available_types(account, &budget).await.0,
                    None => fallback_types().into_iter().map(str::to_owned).collect(),
                };
                types.iter().map(|t| type_option(t)).collect::<Vec<_>>()
            }
            // The Evals API was shut down on 2026-11-30 (openai-webhooks.md §1.2): no eval to list,
            // and no call to a route that is gone. The parameter stays so saved nodes keep loading.
            (event, events::details::EVAL_ID)
                if events::by_name(event).is_some_and(|s| s.family == events::Family::Eval) =>
            {
                Vec::new()
            }
            _ => {
                return Err(PluginError::UnknownParameter {
                    action: dify_plugin::wire::truncate(&action, 64).into(),
                    parameter: dify_plugin::wire::truncate(&parameter_name, 64).into(),
                });
            }
        };
        Ok(options)
    }

    /// The types a subscription takes when the user picks none: what the project offers, less the
    /// types of APIs OpenAI has shut down.
    async fn default_types(&self, account: &Account, budget: &Budget) -> Vec<String> {
        let (mut types, _) = self.available_types(account, budget).await;
        types.retain(|t| !is_shut_down(t));
        types
    }

    /// The types this project may subscribe to, and whether OpenAI said so (else the fallback).
    async fn available_types(&self, account: &Account, budget: &Budget) -> (Vec<String>, bool) {
        match self.api.get(account, "webhook_event_types", &[], budget).await {
            Ok(list) => {
                let types: Vec<String> =
                    string_list(list.get("data")).into_iter().filter(|t| is_event_type(t)).map(str::to_owned).collect();
                if !types.is_empty() {
                    return (types, true);
                }
                tracing::warn!("GET /webhook_event_types listed no types; using the built-in list");
            }
            Err(err) => tracing::warn!("GET /webhook_event_types failed ({err}); using the built-in list"),
        }
        (fallback_types().into_iter().map(str::to_owned).collect(), false)
    }

    /// The endpoint already delivering to `url`, from the first five pages of the list (newest
    /// first). Errors: the list call failed (then creating could leave a second endpoint).
    async fn find_by_url(&self, account: &Account, url: &str, budget: &Budget) -> Result<Option<String>, ApiError> {
        let mut after: Option<String> = None;
        for _ in 0..5 {
            let mut query = vec![("limit", "100")];
            if let Some(after) = after.as_deref() {
                query.push(("after", after));
            }
            let page = self.api.get(account, "webhook_endpoints", &query, budget).await?;
            let data = page.get("data").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            if let Some(found) = data.iter().find(|e| e.get("url").and_then(Value::as_str) == Some(url)) {
                return Ok(found.get("id").and_then(Value::as_str).filter(|id| is_safe_id(id)).map(str::to_owned));
            }
            if page.get("has_more").and_then(Value::as_bool) != Some(true) {
                return Ok(None);
            }
            after = page.get("last_id").and_then(Value::as_str).filter(|id| is_safe_id(id)).map(str::to_owned);
            if after.is_none() {
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// An endpoint delivering `types` to `callback`, with a secret we know: the one already
    /// delivering there (updated, its secret rotated without overlap, since nobody holds the old
    /// one), or a new one. Answers its id and secret.
    async fn ensure_endpoint(
        &self,
        account: &Account,
        callback: &str,
        types: &[String],
        budget: &Budget,
    ) -> Result<(String, String), SetupError> {
        let name = endpoint_name(callback);
        let existing = self
            .find_by_url(account, callback, budget)
            .await
            .map_err(|err| SetupError::Lookup { detail: err_message(&err) })?;
        let answer = match existing {
            Some(id) => {
                let update = json!({"name": name, "url": callback, "event_types": types});
                self.api
                    .post(account, &format!("webhook_endpoints/{id}"), &update, budget)
                    .await
                    .map_err(|err| SetupError::Update { id: id.clone(), detail: err_message(&err) })?;
                let rotate = json!({"keep_old_secret_active_for_24_hours": false});
                self.api.post(account, &format!("webhook_endpoints/{id}/rotate_secret"), &rotate, budget).await
            }
            None => {
                let body = json!({"name": name, "url": callback, "event_types": types});
                self.api.post(account, "webhook_endpoints", &body, budget).await
            }
        }
        .map_err(|err| SetupError::Create { detail: err_message(&err) })?;
        endpoint_secret(&answer)
    }

    /// When refresh should run next: a day ahead, or sooner when an old secret expires or a
    /// rotation falls due before that.
    fn next_check(&self, properties: &SubscriptionProperties, rotate_days: i64) -> i64 {
        let mut next = self.now + REFRESH_PERIOD;
        let previous_expiry = properties.previous_secret_expires_at.unwrap_or(0);
        if previous_expiry > 0 {
            next = next.min(previous_expiry);
        }
        if rotate_days > 0 {
            next = next.min(properties.secret_created_at.unwrap_or(0).saturating_add(rotate_days * 86_400));
        }
        next.max(self.now + 60)
    }
}

/// `unsubscribe_trigger` when the key cannot delete the endpoint: done on Dify's side, with the
/// endpoint to delete by hand named.
fn left_behind(id: &str, reason: &str) -> Unsubscribed {
    Unsubscribed {
        success: true,
        message: format!(
            "OpenAI webhook endpoint {id} was left in place ({reason}); delete it in OpenAI's dashboard (Settings → \
             Project → Webhooks) if nothing uses it"
        ),
    }
}

/// OpenAI's message of a refusal, or the whole error for other faults.
fn err_message(err: &ApiError) -> String {
    match err {
        ApiError::Status { status, message, .. } => format!("{message} ({status})"),
        other => other.to_string(),
    }
}

/// Why a subscription cannot be set up; the message is what the user reads in Dify, with the fix.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SetupError {
    #[error("Dify sent no usable callback URL ({url:?}). {CALLBACK_FIX}")]
    NoCallback { url: String },
    #[error("Dify's callback URL {url} cannot receive OpenAI webhooks: {reason}. {CALLBACK_FIX}")]
    Unreachable { url: String, reason: &'static str },
    #[error(
        "{openai_type} cannot be subscribed through the API: OpenAI delivers it only to endpoints created in its \
         dashboard. Create a manual subscription for it"
    )]
    ManualOnly { openai_type: String },
    #[error("{given:?} is not an OpenAI event type")]
    NotAnEventType { given: String },
    #[error("rotate_secret_days must be a whole number from 0 (never) to {MAX_ROTATION_DAYS}")]
    RotationDays,
    #[error("could not look for an endpoint already delivering to this URL: {detail}")]
    Lookup { detail: String },
    #[error("OpenAI refused to update the existing endpoint {id}: {detail}")]
    Update { id: String, detail: String },
    #[error("OpenAI refused to create the webhook endpoint: {detail}")]
    Create { detail: String },
    #[error("OpenAI's answer carried no endpoint id or signing_secret")]
    NoSecret,
}

const CALLBACK_FIX: &str = "Set TRIGGER_URL in Dify's environment (docker/.env; a local Dify has http://localhost) to \
                            the public https:// address of this Dify, restart Dify, then create the subscription \
                            again. A manual subscription works behind a tunnel too";

/// Dify's callback URL must be one OpenAI can deliver to: https, and a public host name.
pub fn check_callback(url: &str) -> Result<(), SetupError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|_| SetupError::NoCallback { url: dify_plugin::wire::truncate(url, 80).to_owned() })?;
    let host = parsed.host_str().unwrap_or("");
    let reason = if parsed.scheme() != "https" {
        Some("OpenAI only delivers to https:// URLs")
    } else if host.is_empty() || is_loopback_host(host) {
        Some("it points at this machine")
    } else if is_private(host) {
        Some("it is a private address OpenAI cannot reach")
    } else if !host.contains('.') && !host.contains(':') {
        Some("a host name without a domain is not reachable from the internet")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(SetupError::Unreachable { url: url.to_owned(), reason }),
        None => Ok(()),
    }
}

fn is_private(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if [".local", ".internal", ".lan", ".home.arpa"].iter().any(|suffix| bare.to_ascii_lowercase().ends_with(suffix)) {
        return true;
    }
    match bare.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            ip.is_private()
                || ip.is_link_local()
                || ip.is_unspecified()
                || (ip.octets()[0] == 100 && (ip.octets()[1] & 0xc0) == 64)
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            ip.is_unspecified() || (ip.segments()[0] & 0xfe00) == 0xfc00 || (ip.segments()[0] & 0xffc0) == 0xfe80
        }
        Err(_) => false,
    }
}

/// The `events` parameter as OpenAI types: a list or a comma-separated string, Dify event names
/// accepted for their type, duplicates dropped. Empty means "every type available".
fn requested_types(parameters: &Map<String, Value>) -> Result<Vec<String>, SetupError> {
    let raw: Vec<&str> = match parameters.get(parameter::EVENTS) {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(list)) => list.split(',').collect(),
        _ => Vec::new(),
    };
    let mut types: Vec<String> = Vec::new();
    for item in raw.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
        let openai_type = match events::by_name(item).and_then(|spec| spec.openai_type) {
            Some(known) => known,
            None => item,
        };
        if openai_type == events::ANY_EVENT {
            continue;
        }
        if MANUAL_ONLY_TYPES.contains(&openai_type) {
            return Err(SetupError::ManualOnly { openai_type: openai_type.to_owned() });
        }
        if !is_event_type(openai_type) {
            return Err(SetupError::NotAnEventType { given: dify_plugin::wire::truncate(openai_type, 64).to_owned() });
        }
        if !types.iter().any(|t| t == openai_type) {
            types.push(openai_type.to_owned());
        }
    }
    Ok(types)
}

/// `rotate_secret_days`: 0 (never) to [`MAX_ROTATION_DAYS`]; a number or a numeric string.
fn rotation_days(parameters: &Map<String, Value>) -> Result<i64, SetupError> {
    let days = match parameters.get(parameter::ROTATE_SECRET_DAYS) {
        None | Some(Value::Null) => return Ok(0),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(0),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    match days {
        Some(days) if days.fract() == 0.0 && (0.0..=MAX_ROTATION_DAYS as f64).contains(&days) => Ok(days as i64),
        _ => Err(SetupError::RotationDays),
    }
}

/// "Dify dify.example.com · subscription 3f8e2c1a-…": which Dify and which subscription, ≤ 256 chars.
fn endpoint_name(callback: &str) -> String {
    let parsed = reqwest::Url::parse(callback).ok();
    let host = parsed.as_ref().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
    let id = callback.rsplit('/').find(|s| !s.is_empty()).unwrap_or("");
    let name = format!("Dify {host} · subscription {id}");
    name.chars().take(256).collect()
}

/// The `id` and `signing_secret` of a create or rotate answer.
fn endpoint_secret(answer: &Value) -> Result<(String, String), SetupError> {
    let id = answer.get("id").and_then(Value::as_str).filter(|id| !id.is_empty());
    let secret = answer.get("signing_secret").and_then(Value::as_str).filter(|s| !s.is_empty());
    match (id, secret) {
        (Some(id), Some(secret)) => Ok((id.to_owned(), secret.to_owned())),
        _ => Err(SetupError::NoSecret),
    }
}

fn type_option(openai_type: &str) -> ParameterOption {
    let label = match events::by_openai_type(openai_type).and_then(events::label) {
        Some(Value::Object(languages)) => {
            let mut out = Map::new();
            for (language, text) in languages {
                if let Some(text) = text.as_str() {
                    out.insert(language, Value::String(format!("{text} ({openai_type})")));
                }
            }
            Value::Object(out)
        }
        _ => json!({ "en_US": openai_type }),
    };
    ParameterOption { value: openai_type.to_owned(), label, icon: None }
}

/// An OpenAI event type as the API spells them: `batch.completed`, `fine_tuning.job.succeeded`.
fn is_event_type(text: &str) -> bool {
    (1..=127).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_')
}

fn string_list(value: Option<&Value>) -> Vec<&str> {
    value.and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn the_fallback_is_openais_29_subscribable_types_in_its_order() {
        let types = fallback_types();
        assert_eq!(types.len(), 29);
        assert_eq!(types[..2], ["health.alert.triggered", "health.alert.resolved"], "the new two come first");
        let mut unique = types.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 29, "no type twice");
        for manual in MANUAL_ONLY_TYPES {
            assert!(!types.contains(manual), "{manual}");
        }
        // Every declared type is either subscribable or dashboard-only; what is neither is a type
        // OpenAI added that this list lacks (cargo xtask openai-drift says which).
        for declared in events::known_openai_types() {
            assert!(types.contains(&declared) || MANUAL_ONLY_TYPES.contains(&declared), "{declared}");
        }
        let undeclared: Vec<&str> = types.iter().copied().filter(|t| events::by_openai_type(t).is_none()).collect();
        assert_eq!(undeclared, ["video.completed", "video.failed"], "only the shut-down Videos API is undeclared");
        assert!(types.iter().filter(|t| is_shut_down(t)).eq(
            ["eval.run.succeeded", "eval.run.failed", "eval.run.canceled", "video.completed", "video.failed"].iter()
        ));
    }

    #[test]
    fn callback_urls_must_be_public_https() {
        check_callback("https://dify.example.com/triggers/plugin/3f8e2c1a").unwrap();
        check_callback("https://203.0.113.7/triggers/plugin/x").unwrap();
        for (url, why) in [
            ("http://localhost/triggers/plugin/x", "https://"),
            ("http://dify.example.com/triggers/plugin/x", "https://"),
            ("https://localhost/triggers/plugin/x", "this machine"),
            ("https://127.0.0.1:5001/triggers/plugin/x", "this machine"),
            ("https://192.168.1.20/triggers/plugin/x", "private"),
            ("https://10.1.2.3/x", "private"),
            ("https://[fd00::1]/x", "private"),
            ("https://dify.local/x", "private"),
            ("https://api/triggers/plugin/x", "domain"),
            ("3f8e2c1a-7b4d-4e9f", "no usable"),
        ] {
            let err = check_callback(url).unwrap_err().to_string();
            assert!(err.contains(why), "{url}: {err}");
            assert!(err.contains("TRIGGER_URL"), "{url}: {err}");
        }
    }

    #[test]
    fn requested_types_accept_types_names_and_strings() {
        assert_eq!(requested_types(&params(json!({}))).unwrap(), Vec::<String>::new());
        assert_eq!(
            requested_types(&params(
                json!({"events": ["batch.completed", "batch_completed", "response_failed", "any_event"]})
            ))
            .unwrap(),
            vec!["batch.completed", "response.failed"]
        );
        assert_eq!(
            requested_types(&params(json!({"events": "video.completed, batch.failed"}))).unwrap(),
            vec!["video.completed", "batch.failed"]
        );
        assert_eq!(
            requested_types(&params(json!({"events": ["safety.warning_issued"]}))),
            Err(SetupError::ManualOnly { openai_type: "safety.warning_issued".into() })
        );
        assert_eq!(
            requested_types(&params(json!({"events": ["Batch Completed!"]}))),
            Err(SetupError::NotAnEventType { given: "Batch Completed!".into() })
        );
    }

    #[test]
    fn rotation_days_are_bounded_whole_numbers() {
        assert_eq!(rotation_days(&params(json!({}))), Ok(0));
        assert_eq!(rotation_days(&params(json!({"rotate_secret_days": 30}))), Ok(30));
        assert_eq!(rotation_days(&params(json!({"rotate_secret_days": "7"}))), Ok(7));
        assert_eq!(rotation_days(&params(json!({"rotate_secret_days": ""}))), Ok(0));
        for bad in [json!(-1), json!(1.5), json!(366), json!("soon"), json!([1])] {
            assert_eq!(rotation_days(&params(json!({"rotate_secret_days": bad}))), Err(SetupError::RotationDays));
        }
    }

    #[test]
    fn endpoint_names_say_which_dify_and_subscription() {
        assert_eq!(
            endpoint_name("https://dify.example.com/triggers/plugin/3f8e2c1a-7b4d"),
            "Dify dify.example.com · subscription 3f8e2c1a-7b4d"
        );
        assert!(endpoint_name(&format!("https://{}.example.com/x", "a".repeat(300))).chars().count() <= 256);
    }

    fn stored(value: Value) -> SubscriptionProperties {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn next_check_is_a_day_or_sooner() {
        let api = OpenAi::default();
        let c = Constructor { api: &api, now: 1_000_000, budget: Duration::from_secs(1) };
        let mut props = stored(json!({"secret_created_at": 1_000_000, "previous_secret_expires_at": 0}));
        assert_eq!(c.next_check(&props, 0), 1_000_000 + REFRESH_PERIOD);
        props.previous_secret_expires_at = Some(1_000_000 + 3600);
        assert_eq!(c.next_check(&props, 0), 1_000_000 + 3600);
        let props = stored(json!({"secret_created_at": 1_000_000 - 86_400 * 7 + 600}));
        assert_eq!(c.next_check(&props, 7), 1_000_000 + 600);
        let overdue = stored(json!({"secret_created_at": 0}));
        assert_eq!(c.next_check(&overdue, 1), 1_000_000 + 60);
        // Numeric strings count, as Dify may hand them back.
        assert_eq!(c.next_check(&stored(json!({"previous_secret_expires_at": "1003600"})), 0), 1_000_000 + 3600);
    }
}
