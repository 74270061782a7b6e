//! `signature-vectors.json` (copied from the spec into `tests/fixtures/`): every entry of
//! `vectors` and `divergences` through `signature::verify`, then through the binary's dispatch.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use openai_trigger::signature::{self, SecretSet, VerifyError, WebhookHeaders};

use crate::support::*;

const VECTORS: &str = include_str!("../fixtures/signature-vectors.json");

#[derive(Deserialize)]
struct File {
    vectors: Vec<Vector>,
    divergences: Vec<Vector>,
}

#[derive(Deserialize, Clone)]
struct Vector {
    id: String,
    secret: String,
    body: Option<String>,
    body_base64: Option<String>,
    body_len_bytes: usize,
    body_sha256: String,
    headers: Map<String, Value>,
    now: i64,
    expected: Expected,
}

#[derive(Deserialize, Clone)]
struct Expected {
    outcome: String,
    error: Option<String>,
    header: Option<String>,
}

fn all_vectors() -> Vec<Vector> {
    let file: File = serde_json::from_str(VECTORS).expect("the vectors file parses");
    assert_eq!((file.vectors.len(), file.divergences.len()), (63, 9), "the spec's 63 vectors and 9 divergences");
    file.vectors.into_iter().chain(file.divergences).collect()
}

impl Vector {
    /// The exact body bytes, checked against the vector's length and digest first.
    fn body(&self) -> Vec<u8> {
        let body = match (&self.body, &self.body_base64) {
            (Some(text), _) => text.as_bytes().to_vec(),
            (None, Some(encoded)) => base64::engine::general_purpose::STANDARD.decode(encoded).expect("body_base64"),
            (None, None) => panic!("{}: no body", self.id),
        };
        assert_eq!(body.len(), self.body_len_bytes, "{}: body length", self.id);
        assert_eq!(hex::encode(Sha256::digest(&body)), self.body_sha256, "{}: body digest", self.id);
        body
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str().expect("text"))
    }
}

/// The verdict as the vectors spell it: Ok, or (error category, missing header name).
fn verdict(vector: &Vector, body: &[u8]) -> Result<(), (String, Option<String>)> {
    let secrets = SecretSet::parse(&vector.secret).map_err(|err| (err.code().to_owned(), None))?;
    // `WebhookHeaders` holds trimmed text, None when absent or empty, as `HttpRequest::header_str` gives it.
    let text = |name| vector.header(name).map(str::trim).filter(|value| !value.is_empty());
    let headers = WebhookHeaders {
        id: text(signature::HEADER_ID),
        timestamp: text(signature::HEADER_TIMESTAMP),
        signature: text(signature::HEADER_SIGNATURE),
    };
    match signature::verify(&secrets, headers, body, vector.now) {
        Ok(verified) => {
            assert_eq!(Some(verified.webhook_id.as_str()), headers.id, "{}: verified id", vector.id);
            assert_eq!(Some(verified.timestamp.to_string().as_str()), headers.timestamp, "{}: verified ts", vector.id);
            Ok(())
        }
        Err(err) => {
            let header = match err {
                VerifyError::MissingHeader(name) => Some(name.to_owned()),
                _ => None,
            };
            Err((err.code().to_owned(), header))
        }
    }
}

#[test]
fn every_vector_and_divergence_verifies_as_expected() {
    let mut problems = Vec::new();
    for vector in all_vectors() {
        let body = vector.body();
        let got = verdict(&vector, &body);
        let expected = &vector.expected;
        match (&got, expected.outcome.as_str()) {
            (Ok(()), "ok") => {}
            (Err((code, header)), "reject") => {
                if Some(code) != expected.error.as_ref() {
                    problems.push(format!("{}: error {code}, expected {:?}", vector.id, expected.error));
                }
                if expected.header.is_some() && header != &expected.header {
                    problems.push(format!("{}: missing {header:?}, expected {:?}", vector.id, expected.header));
                }
            }
            _ => problems.push(format!("{}: got {got:?}, expected {}", vector.id, expected.outcome)),
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Standard Webhooks secrets as the tests decode them: prefix optional, padding optional.
fn key(secret: &str) -> Option<Vec<u8>> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let secret = secret.trim();
    LENIENT.decode(secret.strip_prefix("whsec_").unwrap_or(secret)).ok().filter(|key| !key.is_empty())
}

fn hmac_b64(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The vector moved to the present: the plugin reads the real clock, so a numeric timestamp keeps
/// its offset from the vector's `now` relative to our now, and every `v1` entry that was valid is
/// re-signed for the new timestamp. Header names, spacing, other entries and the body stay as they
/// are. None for vectors whose offset sits within 2 s of the 300 s bound (clock-sensitive).
fn rebased(vector: &Vector, body: &[u8], now: i64) -> Option<Vec<(String, String)>> {
    let mut headers: Vec<(String, String)> =
        vector.headers.iter().map(|(name, value)| (name.clone(), value.as_str().unwrap().to_owned())).collect();
    let old_ts = vector.header(signature::HEADER_TIMESTAMP).map(str::to_owned);
    let Some(ts) =
        old_ts.as_deref().filter(|t| t.bytes().all(|b| b.is_ascii_digit())).and_then(|t| t.parse::<i64>().ok())
    else {
        return Some(headers);
    };
    let offset = ts - vector.now;
    if (offset.abs() - 300).abs() <= 2 {
        return None;
    }
    let new_ts = (now + offset).to_string();
    let id = vector.header(signature::HEADER_ID).unwrap_or_default().trim().to_owned();
    let key = key(&vector.secret);
    for (name, value) in headers.iter_mut() {
        if name.eq_ignore_ascii_case(signature::HEADER_TIMESTAMP) {
            *value = new_ts.clone();
        } else if name.eq_ignore_ascii_case(signature::HEADER_SIGNATURE) {
            if let Some(key) = &key {
                let old = hmac_b64(key, &id, old_ts.as_deref().unwrap().trim(), body);
                *value = value.replace(&old, &hmac_b64(key, &id, &new_ts, body));
            }
        }
    }
    Some(headers)
}

/// Does this verified body make an event (a JSON object with a non-empty string `type`)?
fn is_event(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).ok().is_some_and(|v| v["type"].as_str().is_some_and(|t| !t.is_empty()))
}

#[test]
fn vectors_end_to_end_through_dispatch() {
    let mut plugin = Plugin::start();
    let now = unix_now();
    let mut problems = Vec::new();
    let mut sent = 0;
    for vector in all_vectors() {
        let body = vector.body();
        let Some(headers) = rebased(&vector, &body, now) else {
            continue;
        };
        let mut raw = RawRequest {
            method: "POST".into(),
            target: TARGET.into(),
            headers: vec![("Host".into(), "dify.test".into()), ("Content-Type".into(), "application/json".into())],
            body: body.clone(),
        };
        raw.headers.extend(headers);
        // One subscription per vector, so vectors sharing a msg_id are not duplicates of each other.
        let endpoint = format!("https://dify.test/triggers/plugin/{}", vector.id);
        let dispatched = plugin.dispatch(&raw, &vector.secret, &endpoint);
        let (status, error) = dispatched.rejection();
        let expected = match (vector.expected.outcome.as_str(), is_event(&body)) {
            ("ok", true) => (200, String::new()),
            ("ok", false) => (400, "invalid_event".to_owned()),
            _ => (401, vector.expected.error.clone().unwrap_or_default()),
        };
        if (status, &error) != (expected.0, &expected.1) {
            problems.push(format!("{}: HTTP {status} {error}, expected {} {}", vector.id, expected.0, expected.1));
        }
        if let Some(header) = &vector.expected.header {
            let message = dispatched.http.json()["message"].as_str().unwrap_or_default().to_owned();
            if !message.contains(header.as_str()) {
                problems.push(format!("{}: message {message:?} does not name {header}", vector.id));
            }
        }
        sent += 1;
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(sent >= 64, "only {sent} vectors could be sent end to end");
    assert!(plugin.finish().success());
}
