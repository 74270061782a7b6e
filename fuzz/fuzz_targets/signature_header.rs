//! Standard Webhooks verification with fuzzed secrets and headers: the input is split on `\n` into
//! the secret text, webhook-id, webhook-timestamp, webhook-signature and the body. No input may
//! panic, and whatever secrets parse, a delivery they sign must verify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use openai_trigger::signature::{self, SecretSet, WebhookHeaders};

const NOW: i64 = 1_765_432_100;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(5, '\n');
    let (secret, id, timestamp, signature_header, body) =
        (parts.next().unwrap_or(""), parts.next(), parts.next(), parts.next(), parts.next().unwrap_or(""));
    let Ok(secrets) = SecretSet::parse(secret) else { return };
    let headers = WebhookHeaders { id, timestamp, signature: signature_header };
    let _ = signature::verify(&secrets, headers, body.as_bytes(), NOW);
    // Round trip: signed with these secrets, it verifies.
    let id = id.filter(|i| !i.trim().is_empty()).unwrap_or("wh_fuzz").trim();
    let stamp = NOW.to_string();
    let signed = secrets.sign(id, &stamp, body.as_bytes());
    let headers = WebhookHeaders { id: Some(id), timestamp: Some(&stamp), signature: Some(&signed) };
    assert!(signature::verify(&secrets, headers, body.as_bytes(), NOW).is_ok());
});
