/*!
What a subscription stores in `properties` (triggers.md §4: Dify keeps them, decrypts the
`secret-input` ones, and sends them with every dispatch, invoke, unsubscribe and refresh), read once
per request into one [`SubscriptionProperties`] that dispatch, invoke and the subscription
constructor share, and written by the constructor's subscribe and refresh.

| Key | Written by | Value |
| --- | --- | --- |
| `webhook_secret` | the user (manual), the constructor | the endpoint's signing secret; during a rotation's overlap, the new one then the old one, space-separated |
| `endpoint_id` | the constructor | OpenAI's `whe_…` id: the key being there marks a constructor subscription |
| `subscribed_event_types` | the constructor | the OpenAI types the endpoint subscribes to, comma-separated (`batch.completed,response.failed`): dispatch fires only these |
| `secret_created_at` | the constructor | when the current secret was issued (Unix seconds) |
| `previous_secret_expires_at` | the constructor | when the old secret stops being valid (0: no old secret kept) |
| `api_key`, `organization`, `project`, `base_url` | the user (manual, optional) | the OpenAI account invoke fetches details with |
| `admin_api_key` | the user (manual, optional) | the organization Admin API key (`sk-admin-…`) health alert details need |

Reading is lenient, exactly as the readers before this type were: a property of the wrong type
never fails a request, it reads as absent:

- `webhook_secret`: a string; anything else is no secret (dispatch answers 401 `no_secret_configured`).
- `endpoint_id`: the key being there, whatever it holds (`null` included), marks a constructor
  subscription (its old secret expires, its types filter); a value that is not a string reads as
  `""`, which unsubscribe and refresh treat as no endpoint to manage.
- `subscribed_event_types`, `api_key`, `admin_api_key`, `organization`, `project`, `base_url`: strings; anything else
  is absent (every type fires; no account).
- the times: a JSON number (a fraction cut toward zero) or a string holding a whole number
  (`" 1700000000 "`); anything else is absent, which reads as 0.
- keys this plugin does not know are kept and written back as they came.

`properties` itself may be `null` (Dify's empty map, daemon-protocol.md §2.3): no property. Not an
object at all is a request of the wrong shape, as before. A key given twice counts once, the last
one: the runtime reads `properties` as a JSON object first ([`dify_plugin::trigger::Subscription`]).
*/

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::openai::{Account, AccountError};

/// A subscription's stored properties (see the module documentation). Read by hand (below), in one
/// pass over the object: serde's `flatten` would first copy every key and value into a buffer of its
/// own, and dispatch and invoke read these on every webhook.
#[derive(Serialize, Debug, Default, Clone, PartialEq, Eq)]
pub struct SubscriptionProperties {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) webhook_secret: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) endpoint_id: Option<String>,
    /// Comma-separated, as Dify stores it; [`Self::subscribed_types`] reads it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) subscribed_event_types: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) secret_created_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) previous_secret_expires_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) api_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) admin_api_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) organization: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) project: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) base_url: Option<String>,
    /// Keys this plugin does not read, kept as they came.
    #[serde(flatten)]
    pub(crate) other: Map<String, Value>,
}

/// The lenient reading of the module documentation, key by key; a key given twice counts once, the
/// last, as in a JSON object read as a map.
impl<'de> Deserialize<'de> for SubscriptionProperties {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Properties;
        impl<'de> serde::de::Visitor<'de> for Properties {
            type Value = SubscriptionProperties;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object of subscription properties")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut p = SubscriptionProperties::default();
                while let Some(key) = map.next_key::<String>()? {
                    let value: Value = map.next_value()?;
                    match key.as_str() {
                        "webhook_secret" => p.webhook_secret = text(value).unwrap_or_default(),
                        // There, whatever it holds: a non-string reads as "".
                        "endpoint_id" => p.endpoint_id = Some(text(value).unwrap_or_default()),
                        "subscribed_event_types" => p.subscribed_event_types = text(value),
                        "secret_created_at" => p.secret_created_at = number(value),
                        "previous_secret_expires_at" => p.previous_secret_expires_at = number(value),
                        "api_key" => p.api_key = text(value),
                        "admin_api_key" => p.admin_api_key = text(value),
                        "organization" => p.organization = text(value),
                        "project" => p.project = text(value),
                        "base_url" => p.base_url = text(value),
                        _ => {
                            p.other.insert(key, value);
                        }
                    }
                }
                Ok(p)
            }
        }
        deserializer.deserialize_map(Properties)
    }
}

/// A string; anything else is absent.
fn text(value: Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text),
        _ => None,
    }
}

/// A JSON number (a fraction cut toward zero, saturating) or a string holding a whole number.
fn number(value: Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl SubscriptionProperties {
    /// A subscription whose OpenAI endpoint this plugin manages (made by the constructor): the
    /// `endpoint_id` key is there, whatever it holds.
    pub(crate) fn is_managed(&self) -> bool {
        self.endpoint_id.is_some()
    }

    /// The id of the endpoint to call OpenAI about: `endpoint_id` trimmed, when not empty.
    pub(crate) fn endpoint(&self) -> Option<&str> {
        self.endpoint_id.as_deref().map(str::trim).filter(|id| !id.is_empty())
    }

    /// The current secret: the first of `webhook_secret`.
    pub(crate) fn current_secret(&self) -> Option<&str> {
        self.webhook_secret.split_whitespace().next()
    }

    /// The secrets dispatch verifies with at `now`: `webhook_secret`, but only its first (current)
    /// secret once a rotation's old one has expired, even if no refresh has dropped it yet.
    pub(crate) fn live_secrets(&self, now: i64) -> &str {
        let expiry = self.previous_secret_expires_at.unwrap_or(0);
        if self.is_managed() && expiry > 0 && now >= expiry {
            return self.current_secret().unwrap_or("");
        }
        &self.webhook_secret
    }

    /// The event types a subscription's dispatch fires: those a constructor subscribed to; None
    /// (all) for manual subscriptions, and when no type is stored.
    pub(crate) fn subscribed_types(&self) -> Option<Vec<&str>> {
        if !self.is_managed() {
            return None;
        }
        let list = self.subscribed_event_types.as_deref()?;
        let types: Vec<&str> = list.split(',').map(str::trim).filter(|t| !t.is_empty()).collect();
        (!types.is_empty()).then_some(types)
    }

    /// Stores `types` as Dify keeps them: comma-separated.
    pub(crate) fn set_event_types(&mut self, types: &[String]) {
        self.subscribed_event_types = Some(types.join(","));
    }

    /// The OpenAI account a manual subscription gives for enrichment (None without an `api_key`).
    pub(crate) fn account(&self) -> Result<Option<Account>, AccountError> {
        Account::from_fields(
            self.api_key.as_deref(),
            self.organization.as_deref(),
            self.project.as_deref(),
            self.base_url.as_deref(),
        )
    }

    /// The organization Admin API account a manual subscription gives for health alert details
    /// (None without an `admin_api_key`).
    pub(crate) fn admin_account(&self) -> Result<Option<Account>, AccountError> {
        Account::admin_from_fields(
            self.admin_api_key.as_deref(),
            self.organization.as_deref(),
            self.base_url.as_deref(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// As the runtime types it for every trigger action.
    type Subscription = dify_plugin::trigger::Subscription<SubscriptionProperties>;

    /// As a dispatch or invoke request carries them.
    fn read(properties: Value) -> SubscriptionProperties {
        let subscription: Subscription =
            serde_json::from_value(json!({"endpoint": "https://dify.test/t", "properties": properties})).unwrap();
        subscription.properties
    }

    #[test]
    fn only_constructor_subscriptions_filter_types() {
        assert_eq!(read(json!({"webhook_secret": "whsec_x"})).subscribed_types(), None);
        assert_eq!(
            read(json!({"endpoint_id": "whe_1", "subscribed_event_types": "batch.completed,response.failed"}))
                .subscribed_types(),
            Some(vec!["batch.completed", "response.failed"])
        );
        assert_eq!(read(json!({"endpoint_id": "whe_1", "subscribed_event_types": ""})).subscribed_types(), None);
        assert_eq!(
            read(json!({"endpoint_id": "whe_1", "subscribed_event_types": " a , ,b "})).subscribed_types(),
            Some(vec!["a", "b"])
        );
    }

    #[test]
    fn an_old_secret_lives_until_it_expires() {
        let properties =
            read(json!({"webhook_secret": "new old", "endpoint_id": "whe_1", "previous_secret_expires_at": 1000}));
        assert_eq!(properties.live_secrets(999), "new old");
        assert_eq!(properties.live_secrets(1000), "new");
        // 0 is no expiry; a manual subscription's secrets are all live whatever it stores.
        assert_eq!(read(json!({"webhook_secret": "a b", "endpoint_id": "whe_1"})).live_secrets(5000), "a b");
        assert_eq!(read(json!({"webhook_secret": "a b", "previous_secret_expires_at": 1})).live_secrets(5000), "a b");
    }

    #[test]
    fn a_wrongly_typed_secret_is_no_secret() {
        for wrong in [json!(12345), json!(true), json!(["whsec_x"]), json!({"a": 1}), Value::Null] {
            let properties = read(json!({"webhook_secret": wrong}));
            assert_eq!(properties.live_secrets(0), "", "{wrong}");
            assert_eq!(properties.current_secret(), None);
        }
    }

    #[test]
    fn endpoint_id_of_any_value_marks_a_constructor_subscription() {
        for wrong in [json!(7), Value::Null, json!(["whe_1"]), json!("  ")] {
            let properties = read(json!({
                "webhook_secret": "new old",
                "endpoint_id": wrong,
                "subscribed_event_types": "batch.completed",
                "previous_secret_expires_at": 10,
            }));
            assert!(properties.is_managed(), "{wrong}");
            assert_eq!(properties.endpoint(), None, "{wrong}: no id to call OpenAI with");
            assert_eq!(properties.live_secrets(10), "new", "{wrong}");
            assert_eq!(properties.subscribed_types(), Some(vec!["batch.completed"]), "{wrong}");
        }
        let absent = read(json!({"webhook_secret": "new old", "previous_secret_expires_at": 10}));
        assert!(!absent.is_managed());
        assert_eq!(read(json!({"endpoint_id": " whe_1 "})).endpoint(), Some("whe_1"));
    }

    #[test]
    fn times_are_numbers_or_numeric_strings() {
        let cases = [
            (json!(1_700_000_000), Some(1_700_000_000)),
            (json!(" 1700000000 "), Some(1_700_000_000)),
            (json!(-5), Some(-5)),
            (json!(1.9), Some(1)),
            (json!(1e30), Some(i64::MAX)),
            (json!("1.5"), None),
            (json!("soon"), None),
            (json!(true), None),
            (Value::Null, None),
            (json!([1]), None),
        ];
        for (stored, want) in cases {
            let properties = read(json!({"secret_created_at": stored, "previous_secret_expires_at": stored}));
            assert_eq!(properties.secret_created_at, want, "{stored}");
            assert_eq!(properties.previous_secret_expires_at, want, "{stored}");
        }
    }

    #[test]
    fn other_wrong_types_read_as_absent() {
        let properties = read(json!({
            "endpoint_id": "whe_1",
            "subscribed_event_types": ["batch.completed"],
            "api_key": 5,
            "base_url": {"url": "x"},
        }));
        assert_eq!(properties.subscribed_types(), None, "every type fires, as before");
        assert_eq!((properties.api_key, properties.base_url), (None, None));
        let manual = read(json!({"api_key": 5, "base_url": "not a url"}));
        assert!(manual.account().unwrap().is_none(), "no key, so the base URL is not even looked at");
        let keyed = read(json!({"api_key": " sk-abc ", "organization": 3, "project": "proj_1"}));
        assert!(keyed.account().unwrap().is_some());
        assert!(read(json!({"api_key": "sk-abc", "base_url": "http://example.com"})).account().is_err());
    }

    #[test]
    fn properties_are_an_object_or_null() {
        assert_eq!(read(Value::Null), SubscriptionProperties::default());
        assert_eq!(read(json!({})), SubscriptionProperties::default());
        for wrong in [json!("whsec_x"), json!(["whsec_x", "whe_1"]), json!(5)] {
            let parsed = serde_json::from_value::<Subscription>(json!({"properties": wrong}));
            assert!(parsed.is_err(), "{wrong}");
        }
        // A key given twice: the last one, as a JSON object has it.
        let text = r#"{"properties": {"webhook_secret": "first", "webhook_secret": "last"}}"#;
        let subscription: Subscription = serde_json::from_str(text).unwrap();
        assert_eq!(subscription.properties.webhook_secret, "last");
    }

    #[test]
    fn unknown_keys_are_written_back_and_types_as_dify_stores_them() {
        let mut properties = read(json!({"webhook_secret": "whsec_x", "endpoint_id": "whe_1", "note": {"kept": [1]}}));
        properties.set_event_types(&["batch.completed".into(), "response.failed".into()]);
        properties.secret_created_at = Some(1000);
        properties.previous_secret_expires_at = Some(0);
        assert_eq!(
            serde_json::to_value(&properties).unwrap(),
            json!({
                "webhook_secret": "whsec_x",
                "endpoint_id": "whe_1",
                "subscribed_event_types": "batch.completed,response.failed",
                "secret_created_at": 1000,
                "previous_secret_expires_at": 0,
                "note": {"kept": [1]},
            })
        );
        // A manual subscription goes back exactly as it came.
        let manual = json!({"webhook_secret": "whsec_x", "api_key": "sk-1", "base_url": "https://gw.example.com/v1"});
        assert_eq!(serde_json::to_value(read(manual.clone())).unwrap(), manual);
    }
}
