//! The typed trigger layer in process: every action of a [`TriggerProvider`] with a subscription
//! constructor, dynamic options and OAuth, served alone ([`TriggerPlugin`]) and through a
//! [`Router`] (beside a tool provider's OAuth and dynamic options), with the answers' exact shapes
//! (triggers.md §4, plugin-kinds.md §8–§9) and the errors for what is not served.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    reason = "tests, benchmarks and examples fail loudly"
)]

use dify_plugin::oauth::{AuthorizationUrlRequest, CallbackRequest, OAuthCredentials};
use dify_plugin::raw_http::HttpResponse;
use dify_plugin::trigger::{
    CredentialType, CredentialsRequest, DispatchRequest, DispatchResponse, InvokeRequest, InvokeResponse, Object,
    OptionsRequest, ParameterOption, StoredRequest, SubscribeRequest, Subscription, Unsubscribed,
};
use dify_plugin::{ErrorData, OAuthProvider, Plugin, Request, Router, Session, TriggerPlugin, TriggerProvider};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct Hook {
    #[serde(default)]
    hook_id: String,
    #[serde(default)]
    secret: String,
}

/// A constructor-backed provider: subscribe creates hook `h-<n>`, refresh rotates its secret.
struct Hooks;

impl TriggerProvider for Hooks {
    type Properties = Hook;
    type Payload = Object;

    async fn dispatch(&self, request: DispatchRequest<'_, Hook>, _: &Session) -> Result<DispatchResponse, ErrorData> {
        let http = request.http_request(1024).map_err(|e| ErrorData::new("TriggerDispatchError", e.to_string()))?;
        let mut payload = Object::new();
        payload.insert("hook".into(), json!(request.subscription.properties.hook_id));
        payload.insert("kind".into(), json!(http.header_str("x-kind").unwrap_or("none")));
        Ok(DispatchResponse::fire(vec!["fired".into()], payload, &HttpResponse::json(202, &b"{}"[..])))
    }

    async fn invoke(&self, request: InvokeRequest<'_, Hook>, _: &Session) -> Result<InvokeResponse, ErrorData> {
        assert_eq!(request.credential_type, CredentialType::ApiKey);
        Ok(InvokeResponse::variables(request.payload))
    }

    async fn validate_credentials(&self, request: CredentialsRequest, _: &Session) -> Result<(), ErrorData> {
        match request.credentials.get("api_key").and_then(Value::as_str) {
            Some("good") => Ok(()),
            _ => Err(ErrorData::new("TriggerProviderCredentialValidationError", "the API key is refused")),
        }
    }

    async fn subscribe(&self, request: SubscribeRequest, _: &Session) -> Result<Subscription<Hook>, ErrorData> {
        Ok(Subscription {
            endpoint: request.endpoint,
            expires_at: 1_000,
            parameters: request.parameters,
            properties: Hook { hook_id: "h-1".into(), secret: "s-1".into() },
        })
    }

    async fn unsubscribe(&self, request: StoredRequest<Hook>, _: &Session) -> Result<Unsubscribed, ErrorData> {
        Ok(Unsubscribed { success: true, message: format!("deleted {}", request.subscription.properties.hook_id) })
    }

    async fn refresh(&self, request: StoredRequest<Hook>, _: &Session) -> Result<Subscription<Hook>, ErrorData> {
        let mut subscription = request.subscription;
        subscription.properties.secret.push('+');
        subscription.expires_at += 86_400;
        Ok(subscription)
    }

    async fn parameter_options(&self, request: OptionsRequest, _: &Session) -> Result<Vec<ParameterOption>, ErrorData> {
        match (request.provider_action.as_str(), request.parameter.as_str()) {
            ("provider", "repo") => Ok(vec![ParameterOption::new("r1", "Repo one")]),
            _ => Err(ErrorData::new("ValueError", "Cannot find the target to fetch parameter options")),
        }
    }

    async fn oauth_authorization_url(
        &self,
        request: AuthorizationUrlRequest,
        _: &Session,
    ) -> Result<String, ErrorData> {
        let client = request.system_credentials.get("client_id").and_then(Value::as_str).unwrap_or_default();
        Ok(format!("https://auth.test/authorize?client_id={client}&redirect_uri={}", request.redirect_uri))
    }
}

/// A tool provider's OAuth: the callback's `code` becomes the access token.
struct ToolOAuth;

impl OAuthProvider for ToolOAuth {
    async fn authorization_url(&self, request: AuthorizationUrlRequest, _: &Session) -> Result<String, ErrorData> {
        Ok(format!("https://tool.test/auth?redirect_uri={}", request.redirect_uri))
    }

    async fn credentials(&self, request: CallbackRequest<'_>, _: &Session) -> Result<OAuthCredentials, ErrorData> {
        let query = request.query().map_err(|e| ErrorData::new("ToolProviderOAuthError", e.to_string()))?;
        let code = query.iter().find(|(k, _)| k == "code").map(|(_, v)| v.clone()).unwrap_or_default();
        let mut credentials = Object::new();
        credentials.insert("access_token".into(), json!(format!("token-for-{code}")));
        Ok(OAuthCredentials::new(credentials, 2_000))
    }
}

async fn call(plugin: &impl Plugin, data: Value) -> Result<Value, ErrorData> {
    plugin
        .handle(Request::from_data(&data), &Session::detached())
        .await
        .map(|raw| serde_json::from_str(raw.get()).unwrap())
}

fn stored() -> Value {
    json!({"endpoint": "https://d/t/1", "expires_at": 5, "parameters": null, "properties": {"hook_id": "h-1", "secret": "s"}})
}

#[tokio::test]
async fn every_trigger_action_is_typed_and_answered_in_difys_shape() {
    let plugin = TriggerPlugin::new("hooks", Hooks);
    let raw = hex::encode("POST /t HTTP/1.1\r\nX-Kind: push\r\n\r\n{}");
    let dispatch = json!({"action": "dispatch_trigger_event", "provider": "hooks", "raw_http_request": raw, "subscription": stored(), "credentials": null});
    let answer = call(&plugin, dispatch).await.unwrap();
    assert_eq!(answer["events"], json!(["fired"]));
    assert_eq!(answer["payload"], json!({"hook": "h-1", "kind": "push"}));
    assert!(hex::decode(answer["response"].as_str().unwrap()).unwrap().starts_with(b"HTTP/1.1 202 Accepted\r\n"));

    let invoke = json!({"action": "invoke_trigger_event", "provider": "hooks", "event": "fired", "payload": {"a": 1}, "credential_type": "api-key"});
    assert_eq!(call(&plugin, invoke).await.unwrap(), json!({"variables": {"a": 1}, "cancelled": false}));

    let good =
        json!({"action": "validate_trigger_credentials", "provider": "hooks", "credentials": {"api_key": "good"}});
    assert_eq!(call(&plugin, good).await.unwrap(), json!({"result": true}));
    let bad = json!({"action": "validate_trigger_credentials", "provider": "hooks", "credentials": {"api_key": "bad"}});
    assert_eq!(call(&plugin, bad).await.unwrap_err().error_type, "TriggerProviderCredentialValidationError");

    let subscribe = json!({"action": "subscribe_trigger", "provider": "hooks", "endpoint": "https://d/t/2", "parameters": {"repo": "r1"}, "credentials": {}, "credential_type": "api-key"});
    assert_eq!(
        call(&plugin, subscribe).await.unwrap(),
        json!({"subscription": {"expires_at": 1000, "endpoint": "https://d/t/2", "parameters": {"repo": "r1"}, "properties": {"hook_id": "h-1", "secret": "s-1"}}})
    );
    let refresh = json!({"action": "refresh_trigger", "provider": "hooks", "subscription": stored()});
    let refreshed = call(&plugin, refresh).await.unwrap();
    assert_eq!(refreshed["subscription"]["properties"]["secret"], "s+");
    assert_eq!(refreshed["subscription"]["expires_at"], 86_405);
    assert_eq!(refreshed["subscription"]["parameters"], json!({}), "never null (triggers.md §4.6)");
    let unsubscribe = json!({"action": "unsubscribe_trigger", "provider": "hooks", "subscription": stored()});
    assert_eq!(
        call(&plugin, unsubscribe).await.unwrap(),
        json!({"subscription": {"success": true, "message": "deleted h-1"}})
    );
    let options = json!({"action": "fetch_parameter_options", "provider": "hooks", "provider_action": "provider", "parameter": "repo", "credentials": {}});
    assert_eq!(
        call(&plugin, options).await.unwrap(),
        json!({"options": [{"value": "r1", "label": {"en_US": "Repo one"}}]})
    );
    let url = json!({"action": "get_authorization_url", "provider": "hooks", "redirect_uri": "https://d/cb", "system_credentials": {"client_id": "x"}});
    assert_eq!(
        call(&plugin, url).await.unwrap(),
        json!({"authorization_url": "https://auth.test/authorize?client_id=x&redirect_uri=https://d/cb"})
    );
    // What the provider does not implement.
    let callback = json!({"action": "get_credentials", "provider": "hooks", "raw_http_request": ""});
    assert_eq!(call(&plugin, callback).await.unwrap_err().error_type, "ValueError");
    let other = json!({"action": "refresh_trigger", "provider": "github"});
    let err = call(&plugin, other).await.unwrap_err();
    assert_eq!((err.error_type.as_str(), err.message.as_str()), ("ValueError", "Provider `github` not found"));
    let tool = json!({"action": "invoke_tool", "provider": "hooks"});
    assert_eq!(call(&plugin, tool).await.unwrap_err().error_type, "NotImplementedError");
}

#[tokio::test]
async fn a_router_sends_trigger_oauth_and_options_actions_to_their_providers() {
    let plugin = Router::new().oauth("github_tools", ToolOAuth).tool_parameter_options(
        "github_tools",
        "list_issues",
        |request: OptionsRequest, _: Session| async move {
            Ok(vec![ParameterOption::new(format!("{}-1", request.parameter), "First")])
        },
    );
    let url = json!({"action": "get_authorization_url", "provider": "github_tools", "redirect_uri": "https://d/cb"});
    assert_eq!(
        call(&plugin, url).await.unwrap(),
        json!({"authorization_url": "https://tool.test/auth?redirect_uri=https://d/cb"})
    );
    let callback = hex::encode("GET /cb?code=abc&state=s HTTP/1.1\r\nHost: d\r\n\r\n");
    let credentials = json!({"action": "get_credentials", "provider": "github_tools", "raw_http_request": callback});
    assert_eq!(
        call(&plugin, credentials).await.unwrap(),
        json!({"credentials": {"access_token": "token-for-abc"}, "expires_at": 2000})
    );
    let refresh =
        json!({"action": "refresh_credentials", "provider": "github_tools", "credentials": {"access_token": "t"}});
    assert_eq!(call(&plugin, refresh).await.unwrap(), json!({"credentials": {"access_token": "t"}, "expires_at": -1}));
    let no_oauth = json!({"action": "get_authorization_url", "provider": "slack"});
    let err = call(&plugin, no_oauth).await.unwrap_err();
    assert_eq!(
        (err.error_type.as_str(), err.message.as_str()),
        ("ValueError", "Provider `slack` does not support OAuth")
    );
    let options = json!({"action": "fetch_parameter_options", "provider": "github_tools", "provider_action": "list_issues", "parameter": "repo", "credentials": {}});
    assert_eq!(
        call(&plugin, options).await.unwrap(),
        json!({"options": [{"value": "repo-1", "label": {"en_US": "First"}}]})
    );
    let unknown = json!({"action": "fetch_parameter_options", "provider": "github_tools", "provider_action": "other", "parameter": "repo"});
    assert_eq!(call(&plugin, unknown).await.unwrap_err().message, "Cannot find the target to fetch parameter options");

    // A router with a trigger: its actions, and OAuth naming it, go to the trigger.
    let plugin = Router::new().trigger("hooks", Hooks);
    let refresh = json!({"action": "refresh_trigger", "provider": "hooks", "subscription": stored()});
    assert_eq!(call(&plugin, refresh).await.unwrap()["subscription"]["properties"]["secret"], "s+");
    let url = json!({"action": "get_authorization_url", "provider": "hooks", "system_credentials": {"client_id": "y"}});
    assert!(call(&plugin, url).await.unwrap()["authorization_url"].as_str().unwrap().contains("client_id=y"));
    let elsewhere = json!({"action": "dispatch_trigger_event", "provider": "other", "raw_http_request": "00"});
    assert_eq!(call(&plugin, elsewhere).await.unwrap_err().message, "Provider `other` not found");
}
