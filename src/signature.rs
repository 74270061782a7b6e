//! Standard Webhooks signature verification, as OpenAI uses it (openai-webhooks.md §2).
//!
//! The rules are those of `signature-vectors.json` `recommended_policy`, including its divergence
//! choices: secrets with or without `whsec_` and with or without padding; the timestamp header text
//! must be ASCII digits and is signed verbatim; ±300 s inclusive; signature entries split on runs of
//! ASCII whitespace, malformed or non-`v1` entries skipped; comparison in constant time. No IO: the
//! caller passes the clock in.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use thiserror::Error;

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";
/// Seconds either side of now that a delivery timestamp may be (openai-webhooks.md §2.5).
pub const TOLERANCE_SECONDS: i64 = 300;

/// Secrets: standard alphabet, padding optional, trailing bits tolerated (users paste what they get).
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);
/// OpenAI's keys are 32 bytes and Standard Webhooks asks for 24–64; the shortest key in the
/// published test vectors is 23. Anything under 16 is a paste mistake, not a key.
const MIN_KEY_BYTES: usize = 16;
/// Signatures: only the canonical padded form OpenAI sends; anything else is no match.
const SIGNATURE_BASE64: GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SecretError {
    #[error("no signing secret is configured")]
    Missing,
    #[error(
        "signing secret #{position} is not a whsec_ signing secret: after whsec_ comes base64 (letters, digits, + and /), \
         and this is not base64. Copy the secret OpenAI shows for the webhook endpoint"
    )]
    NotBase64 { position: usize },
    #[error(
        "signing secret #{position} does not start with whsec_: copy the whole secret OpenAI shows for the webhook \
         endpoint (whsec_ and about 44 letters and digits)"
    )]
    NoPrefix { position: usize },
    #[error("signing secret #{position} is empty after its whsec_ prefix")]
    Empty { position: usize },
    #[error("signing secret #{position} is a signature's \"v1\" label: paste only the whsec_… secret")]
    SignatureLabel { position: usize },
    #[error(
        "signing secret #{position} is too short: OpenAI's signing secrets are whsec_ followed by base64 of 32 random \
         bytes, and this one decodes to only {bytes} bytes. Copy the secret OpenAI shows for the webhook endpoint"
    )]
    TooShort { position: usize, bytes: usize },
}

impl SecretError {
    pub fn code(&self) -> &'static str {
        match self {
            SecretError::Missing => "no_secret_configured",
            SecretError::NotBase64 { .. }
            | SecretError::Empty { .. }
            | SecretError::SignatureLabel { .. }
            | SecretError::TooShort { .. }
            | SecretError::NoPrefix { .. } => "invalid_secret",
        }
    }
}

/// Why a delivery was rejected. Messages name the check, never the secret, body or signature.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum VerifyError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("webhook-timestamp is not a whole number of seconds")]
    InvalidTimestamp,
    #[error("webhook-timestamp is more than 300 s in the past")]
    TimestampTooOld,
    #[error("webhook-timestamp is more than 300 s in the future")]
    TimestampTooNew,
    #[error("body is not valid UTF-8")]
    InvalidPayload,
    #[error("no v1 signature in webhook-signature matches a configured signing secret")]
    NoMatchingSignature,
}

impl VerifyError {
    /// The category names of `signature-vectors.json`.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::MissingHeader(_) => "missing_header",
            VerifyError::InvalidTimestamp => "invalid_timestamp",
            VerifyError::TimestampTooOld => "timestamp_too_old",
            VerifyError::TimestampTooNew => "timestamp_too_new",
            VerifyError::InvalidPayload => "invalid_payload",
            VerifyError::NoMatchingSignature => "no_matching_signature",
        }
    }
}

/// One HMAC key. `Debug` never shows it.
#[derive(Clone)]
pub struct SigningSecret {
    key: Vec<u8>,
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret([REDACTED])")
    }
}

impl SigningSecret {
    /// `whsec_<base64>` or bare `<base64>` (Standard Webhooks semantics, never the raw text).
    pub fn parse(text: &str, position: usize) -> Result<Self, SecretError> {
        let encoded = text.trim();
        // `v1,whsec_…` pasted from a signature header splits into "v1" and the secret.
        if matches!(encoded, "v1" | "v1a") {
            return Err(SecretError::SignatureLabel { position });
        }
        let prefixed = encoded.strip_prefix("whsec_");
        // A bare base64 key is accepted (Standard Webhooks allows it); when it is not one, the
        // likelier mistake is a missing prefix, and that is what the error says.
        let not_a_key =
            |error: SecretError| if prefixed.is_some() { error } else { SecretError::NoPrefix { position } };
        let key = SECRET_BASE64
            .decode(prefixed.unwrap_or(encoded))
            .map_err(|_| not_a_key(SecretError::NotBase64 { position }))?;
        if key.is_empty() {
            return Err(SecretError::Empty { position });
        }
        if key.len() < MIN_KEY_BYTES {
            return Err(not_a_key(SecretError::TooShort { position, bytes: key.len() }));
        }
        Ok(SigningSecret { key })
    }

    pub fn from_key(key: Vec<u8>) -> Self {
        SigningSecret { key }
    }

    /// HMAC takes keys of any length, so this is never None in practice; if it were, the secret
    /// would match nothing (and sign nothing), which fails safe.
    fn mac(&self) -> Option<Hmac<Sha256>> {
        Hmac::<Sha256>::new_from_slice(&self.key).ok()
    }

    /// `v1,<base64>` for the given message: what OpenAI puts in `webhook-signature`.
    pub fn sign(&self, msg_id: &str, timestamp: &str, body: &[u8]) -> String {
        let Some(mut mac) = self.mac() else { return "v1,".to_owned() };
        feed(&mut mac, msg_id, timestamp, body);
        format!("v1,{}", SIGNATURE_BASE64.encode(mac.finalize().into_bytes()))
    }
}

/// Every secret configured for a subscription: one, or several during a rotation.
#[derive(Debug, Clone)]
pub struct SecretSet(Vec<SigningSecret>);

impl SecretSet {
    /// Secrets separated by spaces, commas or new lines (base64 contains none of them).
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let secrets = text
            .split(|c: char| c == ',' || c.is_ascii_whitespace())
            .filter(|part| !part.is_empty())
            .enumerate()
            .map(|(index, part)| SigningSecret::parse(part, index + 1))
            .collect::<Result<Vec<_>, _>>()?;
        if secrets.is_empty() {
            return Err(SecretError::Missing);
        }
        Ok(SecretSet(secrets))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A `webhook-signature` value with one `v1` entry per secret, space-separated, as OpenAI sends
    /// during a rotation.
    pub fn sign(&self, msg_id: &str, timestamp: &str, body: &[u8]) -> String {
        self.0.iter().map(|secret| secret.sign(msg_id, timestamp, body)).collect::<Vec<_>>().join(" ")
    }

    /// A digest of the keys (order-independent), to tell subscriptions apart where nothing else
    /// can (a subscription without an endpoint). The keys cannot be recovered from it.
    pub fn scope_digest(&self) -> String {
        let mut keys: Vec<[u8; 32]> = self.0.iter().map(|secret| Sha256::digest(&secret.key).into()).collect();
        keys.sort_unstable();
        let mut all = Sha256::new();
        all.update(b"openai-trigger secrets scope");
        for key in keys {
            all.update(key);
        }
        hex::encode(&all.finalize()[..16])
    }
}

/// The three Standard Webhooks headers, as trimmed text (None when absent or empty).
#[derive(Debug, Clone, Copy, Default)]
pub struct WebhookHeaders<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// A verified delivery's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub webhook_id: String,
    pub timestamp: i64,
}

/// Checks, in the order every reference library uses: headers, timestamp format, replay window,
/// body encoding, then the HMAC against every secret and every `v1` entry.
pub fn verify(
    secrets: &SecretSet,
    headers: WebhookHeaders<'_>,
    body: &[u8],
    now: i64,
) -> Result<Verified, VerifyError> {
    let id = headers.id.ok_or(VerifyError::MissingHeader(HEADER_ID))?;
    let timestamp_text = headers.timestamp.ok_or(VerifyError::MissingHeader(HEADER_TIMESTAMP))?;
    let signature = headers.signature.ok_or(VerifyError::MissingHeader(HEADER_SIGNATURE))?;

    if !timestamp_text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::InvalidTimestamp);
    }
    let timestamp: i64 = timestamp_text.parse().map_err(|_| VerifyError::InvalidTimestamp)?;
    if now.saturating_sub(timestamp) > TOLERANCE_SECONDS {
        return Err(VerifyError::TimestampTooOld);
    }
    if timestamp.saturating_sub(now) > TOLERANCE_SECONDS {
        return Err(VerifyError::TimestampTooNew);
    }
    if std::str::from_utf8(body).is_err() {
        return Err(VerifyError::InvalidPayload);
    }

    let candidates: Vec<Vec<u8>> = signature
        .split(|c: char| c.is_ascii_whitespace())
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .filter_map(|(_, encoded)| SIGNATURE_BASE64.decode(encoded).ok())
        .collect();
    for secret in &secrets.0 {
        let Some(mut mac) = secret.mac() else { continue };
        feed(&mut mac, id, timestamp_text, body);
        for candidate in &candidates {
            // verify_slice compares in constant time.
            if mac.clone().verify_slice(candidate).is_ok() {
                return Ok(Verified { webhook_id: id.to_owned(), timestamp });
            }
        }
    }
    Err(VerifyError::NoMatchingSignature)
}

fn feed(mac: &mut Hmac<Sha256>, msg_id: &str, timestamp: &str, body: &[u8]) {
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24+Aj40c=";
    const ID: &str = "wh_685c059ae39c8190af8c71ed1022a24d";
    const TS: &str = "1750861210";
    const BODY: &str = r#"{"id": "evt_685c059ae3a481909bdc86819b066fb6", "object": "event", "created_at": 1750861210, "type": "response.completed", "data": {"id": "resp_123"}}"#;
    const SIG: &str = "v1,gUAg4R2hWouRZqRQG4uJypNS8YK885G838+EHb4nKBY=";

    fn headers<'a>(sig: &'a str, ts: &'a str) -> WebhookHeaders<'a> {
        WebhookHeaders { id: Some(ID), timestamp: Some(ts), signature: Some(sig) }
    }

    #[test]
    fn signs_the_openai_sdk_vector() {
        let secret = SigningSecret::parse(SECRET, 1).unwrap();
        assert_eq!(secret.sign(ID, TS, BODY.as_bytes()), SIG);
        let set = SecretSet::parse(SECRET).unwrap();
        assert_eq!(verify(&set, headers(SIG, TS), BODY.as_bytes(), 1750861210).unwrap().webhook_id, ID);
    }

    #[test]
    fn window_is_inclusive_both_ways() {
        let set = SecretSet::parse(SECRET).unwrap();
        assert!(verify(&set, headers(SIG, TS), BODY.as_bytes(), 1750861210 + 300).is_ok());
        assert!(verify(&set, headers(SIG, TS), BODY.as_bytes(), 1750861210 - 300).is_ok());
        assert_eq!(
            verify(&set, headers(SIG, TS), BODY.as_bytes(), 1750861210 + 301),
            Err(VerifyError::TimestampTooOld)
        );
        assert_eq!(
            verify(&set, headers(SIG, TS), BODY.as_bytes(), 1750861210 - 301),
            Err(VerifyError::TimestampTooNew)
        );
    }

    #[test]
    fn rotation_accepts_either_secret() {
        let other = "whsec_Dh65IUrBp8gT8chQAOVAloTbbUlXSO3TEj+iLt7VKgI=";
        for text in [format!("{other} {SECRET}"), format!("{SECRET},{other}"), format!("\n{other}\n\n{SECRET}\n")] {
            let set = SecretSet::parse(&text).unwrap();
            assert_eq!(set.len(), 2);
            assert!(verify(&set, headers(SIG, TS), BODY.as_bytes(), 1750861210).is_ok());
        }
        let only_other = SecretSet::parse(other).unwrap();
        assert_eq!(
            verify(&only_other, headers(SIG, TS), BODY.as_bytes(), 1750861210),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn secret_errors_name_position_not_value() {
        assert_eq!(SecretSet::parse("  ,\n").unwrap_err(), SecretError::Missing);
        let err = SecretSet::parse(&format!("{SECRET} whsec_!!!")).unwrap_err();
        assert_eq!(err, SecretError::NotBase64 { position: 2 });
        assert!(!err.to_string().contains("!!!"));
        assert_eq!(SecretSet::parse("whsec_").unwrap_err(), SecretError::Empty { position: 1 });
        assert_eq!(SecretSet::parse(&format!("v1,{SECRET}")).unwrap_err(), SecretError::SignatureLabel { position: 1 });
        assert_eq!(SecretSet::parse("whsec_c2hvcnQ=").unwrap_err(), SecretError::TooShort { position: 1, bytes: 5 });
    }

    #[test]
    fn debug_redacts_keys() {
        let set = SecretSet::parse(SECRET).unwrap();
        assert_eq!(format!("{set:?}"), "SecretSet([SigningSecret([REDACTED])])");
    }
}
