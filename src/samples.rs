//! Realistic OpenAI deliveries (shapes from openai-webhooks.md §1.3) and the signing that goes
//! with them: used by `demo`, `send` and the tests. The ids are fictitious.

use serde_json::{Value, json};

use crate::signature::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, SecretSet};

/// The demo's signing secret: base64 of 32 fixed bytes. Not a secret anyone uses for real.
pub const DEMO_SECRET: &str = "whsec_ZGVtby1vbmx5LW9wZW5haS10cmlnZ2VyLWtleS0wMSE=";

/// The `data` object OpenAI sends for `openai_type`; an id-only object for types it does not know.
pub fn sample_data(openai_type: &str) -> Value {
    let sip_headers = json!([
        {"name": "From", "value": "\"Alice\" <sip:+14155550123@sip.example.com>;tag=9fxced76sl"},
        {"name": "To", "value": "<sip:+18005550100@sip.api.openai.com>"},
        {"name": "Call-ID", "value": "3848276298220188511@sip.example.com"},
        {"name": "Via", "value": "SIP/2.0/TLS 198.51.100.7:5061;branch=z9hG4bK776asdhds"},
        {"name": "Via", "value": "SIP/2.0/TLS 203.0.113.9:5061;branch=z9hG4bKnashds8"},
        {"name": "CSeq", "value": "851287 INVITE"}
    ]);
    let family = openai_type.rsplit_once('.').map(|(family, _)| family).unwrap_or(openai_type);
    match family {
        "response" => json!({"id": "resp_68abf1b4e2d881909f1a3c5e7a9b1d3f0c2e4a6b8d0f1e2d"}),
        "batch" => json!({"id": "batch_68abe9f0a1b2819087c6d5e4f3a2b1c0"}),
        "fine_tuning.job" => json!({"id": "ftjob-fpbNQ3H1GrMehXRf8cO97xTN"}),
        "eval.run" => json!({"id": "evalrun_67abd54d60ec8190832b46859da808f7"}),
        "realtime.call" => {
            json!({"call_id": "rtc_479a275623b54bdb9b6fbae2f7cbd408", "sip_headers": sip_headers, "sip_media_security": "srtp"})
        }
        // A WebRTC session: no SIP headers (openai-webhooks.md §1.3).
        "live.transport" if openai_type == "live.transport.connected" => {
            json!({"session_id": "live_6b12e84e9f1d8190a3b5c7d9e1f3a5b7", "type": "webrtc"})
        }
        "live.transport" => {
            json!({"type": "sip", "session_id": "live_68ac1effc0d18190a2b4c6d8e0f2a4b6", "sip_headers": sip_headers, "sip_media_security": "srtp"})
        }
        "live.call" => {
            json!({"session_id": "rtc_479a275623b54bdb9b6fbae2f7cbd408", "sip_headers": sip_headers})
        }
        "safety.alert" | "safety.org_alert" => {
            json!({"id": "salert_68ac3c3fa1b2819083c4d5e6f7a8b9c0"})
        }
        "safety" => json!({"id": "C-7Hq2Lm9x"}),
        "health.alert" => match openai_type {
            "health.alert.resolved" => json!({"id": "healthalert_6b0fe7df4d2e8190b3c5d7e9f1a3b5c7"}),
            _ => json!({"id": "healthalert_6b0fe15e3c1d8190a2b4c6d8e0f2a4b6"}),
        },
        "agent.session" => match openai_type {
            "agent.session.created" => json!({
                "id": "sess_68ac6194a1b28190c3d4e5f6a7b8c9d0", "environment_type": "self_hosted",
                "environment_id": "ccarenv_68ac6190e1f2819083a4b5c6d7e8f9a0",
                "connect": {"remote_url": "https://agents.example.com/v1/agents/api"}
            }),
            "agent.session.action_required" => {
                json!({"id": "sess_68ac6194a1b28190c3d4e5f6a7b8c9d0", "required_action": {"type": "function_call"}})
            }
            _ => {
                json!({"id": "sess_68ac6194a1b28190c3d4e5f6a7b8c9d0", "environment_type": "openai_hosted", "environment_id": "ccarenv_68ac6190e1f2819083a4b5c6d7e8f9a0"})
            }
        },
        "agent.environment" => json!({"id": "ccarenv_68ac76d0b1c28190a3b4c5d6e7f8a9b0"}),
        _ => json!({"id": "obj_68ac2a10b2c38190e4f6a8b0c2d4e6f8"}),
    }
}

/// A whole event body, compact, as OpenAI sends it.
pub fn sample_body(openai_type: &str, event_id: &str, created_at: i64) -> String {
    json!({"id": event_id, "object": "event", "created_at": created_at, "type": openai_type, "data": sample_data(openai_type)}).to_string()
}

/// A webhook request as Dify's API forwards it (title-cased headers, raw body; triggers.md §3.3).
pub struct SignedDelivery {
    pub webhook_id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: Vec<u8>,
}

impl SignedDelivery {
    /// Signed with `secret`, one or several (`whsec_…`, separated by spaces, commas or new lines:
    /// one `v1` entry each, as OpenAI signs during a rotation). A secret that does not parse signs
    /// nothing (an empty `v1,`), which any receiver rejects: this never panics.
    pub fn new(secret: &str, webhook_id: &str, timestamp: i64, body: impl Into<Vec<u8>>) -> Self {
        match SecretSet::parse(secret) {
            Ok(secrets) => Self::signed(&secrets, webhook_id, timestamp, body),
            Err(_) => SignedDelivery {
                webhook_id: webhook_id.to_owned(),
                timestamp: timestamp.to_string(),
                signature: "v1,".to_owned(),
                body: body.into(),
            },
        }
    }

    /// Signed with every secret of `secrets`.
    pub fn signed(secrets: &SecretSet, webhook_id: &str, timestamp: i64, body: impl Into<Vec<u8>>) -> Self {
        let body = body.into();
        let timestamp = timestamp.to_string();
        let signature = secrets.sign(webhook_id, &timestamp, &body);
        SignedDelivery { webhook_id: webhook_id.to_owned(), timestamp, signature, body }
    }

    pub fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("Content-Type", "application/json".to_owned()),
            ("Content-Length", self.body.len().to_string()),
            ("User-Agent", "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)".to_owned()),
            (title(HEADER_ID), self.webhook_id.clone()),
            (title(HEADER_TIMESTAMP), self.timestamp.clone()),
            (title(HEADER_SIGNATURE), self.signature.clone()),
        ]
    }

    /// The raw HTTP/1.1 request bytes for `target`.
    pub fn raw_request(&self, target: &str) -> Vec<u8> {
        let headers = self.headers();
        let pairs: Vec<(&str, &str)> =
            std::iter::once(("Host", "dify.localhost")).chain(headers.iter().map(|(n, v)| (*n, v.as_str()))).collect();
        dify_plugin::raw_http::serialize_request("POST", target, &pairs, &self.body)
    }
}

fn title(header: &'static str) -> &'static str {
    match header {
        HEADER_ID => "Webhook-Id",
        HEADER_TIMESTAMP => "Webhook-Timestamp",
        _ => "Webhook-Signature",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events;

    #[test]
    fn every_known_type_has_a_specific_sample() {
        for openai_type in events::known_openai_types() {
            let data = sample_data(openai_type);
            assert_ne!(
                data["id"], "obj_68ac2a10b2c38190e4f6a8b0c2d4e6f8",
                "{openai_type} fell through to the generic sample"
            );
        }
    }
}
