//! The HTTP plumbing every route shares: the journaled request ([`Recorded`]) and the answers,
//! with OpenAI's error body.

use std::collections::BTreeMap;

use http_body_util::Full;
use hyper::Response;
use hyper::StatusCode;
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One request as the mock received it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recorded {
    pub method: String,
    /// Path without the query, e.g. `/v1/webhook_endpoints/whe_1`.
    pub path: String,
    /// The raw query string ("" when none).
    pub query: String,
    /// Header names lowercased; repeated headers joined with ", ".
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    /// The body as JSON (Null when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The value of query parameter `name`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').filter_map(|pair| pair.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v.into())
    }
}

pub(crate) type Answer = Response<Full<Bytes>>;

pub(crate) fn answer(status: u16, body: &Value) -> Answer {
    raw(status, "application/json", body.to_string().into_bytes())
}

pub(crate) fn raw(status: u16, content_type: &str, body: Vec<u8>) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert("content-type", value);
    }
    if let Ok(value) = format!("req_mock_{status}").parse() {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// OpenAI's error body.
pub fn error_body(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

pub(crate) fn error(status: u16, message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Answer {
    answer(status, &error_body(message, kind, param, code))
}

pub(crate) fn invalid(message: &str, param: &str) -> Answer {
    error(400, message, "invalid_request_error", Some(param), None)
}
