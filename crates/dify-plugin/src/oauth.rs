/*!
OAuth for tool, trigger and datasource providers (plugin-kinds.md §8, triggers.md §4.7): the three
`oauth` actions typed, and the [`OAuthProvider`] trait a tool provider implements
([`Router::oauth`](crate::Router::oauth)); a trigger provider answers them through its
[`TriggerProvider`](crate::trigger::TriggerProvider) `oauth_*` methods.

| action | request | answer |
|---|---|---|
| `get_authorization_url` | [`AuthorizationUrlRequest`] | `{"authorization_url": …}` |
| `get_credentials` | [`CallbackRequest`] (the OAuth callback as raw HTTP) | [`OAuthCredentials`] |
| `refresh_credentials` | [`RefreshCredentialsRequest`] | [`OAuthCredentials`] |

Return **all** the keys of `oauth_schema.credentials_schema` (refresh tokens included): Dify stores
them and sends them back as `credentials` with `credential_type: oauth2`. `expires_at` is Unix
seconds, `-1` for never; it is always sent as an integer (Go reads `null` as 0: expired, §8.2).
*/

use std::borrow::Cow;
use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::lenient::{Object, object_or_null, or_default as text_or_null};
use crate::raw_http::{self, HttpRequest};
use crate::session::Session;
use crate::wire::ErrorData;

/// `get_authorization_url`: where to send the user.
#[derive(Debug, Default, Deserialize)]
pub struct AuthorizationUrlRequest {
    #[serde(default)]
    pub provider: String,
    /// The callback Dify serves (`…/console/api/oauth/plugin/<provider>/<kind>/callback`).
    #[serde(default, deserialize_with = "text_or_null")]
    pub redirect_uri: String,
    /// The `oauth_schema.client_schema` values (`client_id`, `client_secret`, …).
    #[serde(default, deserialize_with = "object_or_null")]
    pub system_credentials: Object,
}

/// `get_credentials`: the OAuth callback request (its query has `code` and `state`) to exchange
/// for credentials.
#[derive(Debug, Deserialize)]
pub struct CallbackRequest<'a> {
    #[serde(default)]
    pub provider: String,
    #[serde(default, deserialize_with = "text_or_null")]
    pub redirect_uri: String,
    #[serde(default, deserialize_with = "object_or_null")]
    pub system_credentials: Object,
    /// Hex of the raw callback request; read it with [`http_request`](Self::http_request) or
    /// [`query`](Self::query).
    #[serde(borrow, default)]
    pub raw_http_request: Cow<'a, str>,
}

/// Largest callback body read (a callback carries its data in the query).
const MAX_CALLBACK_BODY: usize = 64 * 1024;

impl CallbackRequest<'_> {
    /// The callback request, parsed.
    ///
    /// Errors: [`raw_http::Error`] (bad hex, a malformed head, a body over 64 KiB).
    pub fn http_request(&self) -> Result<HttpRequest, raw_http::Error> {
        HttpRequest::from_hex(&self.raw_http_request, MAX_CALLBACK_BODY)
    }

    /// The callback's query pairs, percent-decoded (`+` is a space), in order.
    ///
    /// Errors: as [`http_request`](Self::http_request).
    pub fn query(&self) -> Result<Vec<(String, String)>, raw_http::Error> {
        let request = self.http_request()?;
        let query = request.target().split_once('?').map_or("", |(_, q)| q);
        Ok(crate::endpoint::parse_query(query))
    }
}

/// `refresh_credentials`: new credentials for stored ones.
#[derive(Debug, Default, Deserialize)]
pub struct RefreshCredentialsRequest {
    #[serde(default)]
    pub provider: String,
    #[serde(default, deserialize_with = "text_or_null")]
    pub redirect_uri: String,
    #[serde(default, deserialize_with = "object_or_null")]
    pub system_credentials: Object,
    /// The stored OAuth credentials.
    #[serde(default, deserialize_with = "object_or_null")]
    pub credentials: Object,
}

/// Credentials from `get_credentials` or `refresh_credentials`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OAuthCredentials {
    /// `get_credentials` only: e.g. a datasource's `{"name", "avatar_url"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Object>,
    pub credentials: Object,
    /// Unix seconds; `-1`: never.
    pub expires_at: i64,
}

impl OAuthCredentials {
    /// `credentials` that expire at `expires_at` (Unix seconds, `-1` for never).
    pub fn new(credentials: Object, expires_at: i64) -> Self {
        OAuthCredentials { metadata: None, credentials, expires_at }
    }
}

pub(crate) fn not_supported() -> ErrorData {
    ErrorData::new("ValueError", "this provider does not support OAuth")
}

/// A tool (or datasource) provider's OAuth (plugin-kinds.md §8); errors are best sent as
/// `ToolProviderOAuthError` with a message the user can act on.
pub trait OAuthProvider: Send + Sync + 'static {
    /// The authorization URL, with the `redirect_uri` and the client id of `system_credentials`.
    fn authorization_url(
        &self,
        request: AuthorizationUrlRequest,
        session: &Session,
    ) -> impl Future<Output = Result<String, ErrorData>> + Send;

    /// Exchanges the callback's `code` for credentials.
    fn credentials(
        &self,
        request: CallbackRequest<'_>,
        session: &Session,
    ) -> impl Future<Output = Result<OAuthCredentials, ErrorData>> + Send;

    /// Refreshes stored credentials; by default they are returned as they are, never expiring.
    fn refresh_credentials(
        &self,
        request: RefreshCredentialsRequest,
        session: &Session,
    ) -> impl Future<Output = Result<OAuthCredentials, ErrorData>> + Send {
        let _ = session;
        async move { Ok(OAuthCredentials::new(request.credentials, -1)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_callbacks_query_is_read() {
        let raw = hex::encode("GET /callback?code=a%2Fb&state=s+1 HTTP/1.1\r\nHost: x\r\n\r\n");
        let text = json!({"provider": "p", "raw_http_request": raw, "system_credentials": null}).to_string();
        let request: CallbackRequest<'_> = serde_json::from_str(&text).unwrap();
        assert_eq!(request.query().unwrap(), vec![("code".into(), "a/b".into()), ("state".into(), "s 1".into())]);
        let bad: CallbackRequest<'_> = serde_json::from_str(r#"{"raw_http_request": "zz"}"#).unwrap();
        assert_eq!(bad.query().unwrap_err(), raw_http::Error::Hex);
    }

    #[test]
    fn credentials_always_carry_an_integer_expiry() {
        let v = serde_json::to_value(OAuthCredentials::new(Object::new(), -1)).unwrap();
        assert_eq!(v, json!({"credentials": {}, "expires_at": -1}));
    }
}
