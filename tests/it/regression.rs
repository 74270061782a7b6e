//! Regression tests, named after the issue and item that found them (`i8_1_3`: issue #8, §1 item 3).
//! Each failed on the build before its fix: run them against another build with
//! `OPENAI_TRIGGER_TEST_BINARY=<path> cargo test -p openai-trigger --test it regression`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

use serde_json::json;

use crate::support::*;

/// The body from the issue: pretty-printed, and a number beyond f64.
const PRETTY_1E400: &str = "{\n  \"id\": \"evt_5f0c2a9e7d4b4c1e8a6f3b2d1c0e9f8a\",\n  \"object\": \"event\",\n  \"created_at\": 1e400,\n  \"type\": \"batch.completed\",\n  \"data\": {\"id\": \"batch_5f0c2a9e7d4b4c1e8a6f3b2d1c0e9f8b\"}\n}";

/// #8 §1.1: a verified delivery crashed dispatch (a panic re-serialising the pretty body), and its
/// retry, same webhook-id, was then dropped as a duplicate: the event was lost. Now the body is
/// checked once by the rules the echo must meet (400, a specific reason), and an id is used up only
/// by a delivery that fired and was answered 200.
#[test]
fn i8_1_1_a_verified_delivery_that_fails_never_uses_up_its_webhook_id() {
    let mut plugin = Plugin::start();
    let now = unix_now();
    let bad = RawRequest::signed(SECRET, "wh_i8_1_1", now, PRETTY_1E400);
    let first = plugin.dispatch(&bad, SECRET, ENDPOINT);
    assert_eq!(first.rejection(), (400, "invalid_event".to_owned()), "{:?}", first.http);
    assert!(first.http.json()["message"].as_str().unwrap().contains("a number beyond a 64-bit float"));
    // The same delivery again: not a duplicate; the same answer.
    assert_eq!(plugin.dispatch(&bad, SECRET, ENDPOINT).rejection(), (400, "invalid_event".to_owned()));
    // The same webhook-id with a body that can be carried (pretty-printed too): it fires.
    let good = PRETTY_1E400.replace("1e400", "1765432100");
    let retried = plugin.dispatch(&RawRequest::signed(SECRET, "wh_i8_1_1", now, good.as_str()), SECRET, ENDPOINT);
    assert_eq!(retried.events, ["batch_completed", "any_event"]);
    assert_eq!(retried.payload["event"]["created_at"], 1765432100);
    // …and only now is it a duplicate.
    let again = plugin.dispatch(&RawRequest::signed(SECRET, "wh_i8_1_1", now, good.as_str()), SECRET, ENDPOINT);
    assert_eq!((again.http.status, again.http.json()["status"].clone()), (200, json!("duplicate")));
    assert!(plugin.transcript.lines.iter().all(|l| !l.contains("InternalError")));
}

/// #8 §1.2: a body nested 50 000 levels deep was accepted and echoed into a line the daemon (Go stops
/// at 10 000) and Dify (Python near 1 000) cannot read, so the request hung. Now: 400, at depth 64.
#[test]
fn i8_1_2_deep_nesting_is_refused_with_400() {
    let mut plugin = Plugin::start();
    let now = unix_now();
    let deep = format!(
        "{{\"id\":\"evt_deep\",\"object\":\"event\",\"created_at\":1,\"type\":\"batch.completed\",\"data\":{}1{}}}",
        "{\"a\":".repeat(50_000),
        "}".repeat(50_000)
    );
    let answer = plugin.dispatch(&RawRequest::signed(SECRET, "wh_i8_1_2", now, deep), SECRET, ENDPOINT);
    assert_eq!(answer.rejection(), (400, "invalid_event".to_owned()));
    assert_eq!(answer.http.json()["message"], "body nests deeper than 64 levels");
    let at_limit = format!(
        "{{\"id\":\"evt_64\",\"object\":\"event\",\"created_at\":1,\"type\":\"batch.completed\",\"data\":{}1{}}}",
        "{\"a\":".repeat(63),
        "}".repeat(63)
    );
    let answer = plugin.dispatch(&RawRequest::signed(SECRET, "wh_i8_1_2b", now, at_limit), SECRET, ENDPOINT);
    assert_eq!(answer.events, ["batch_completed", "any_event"], "64 levels are fine");
}

/// #8 §1.3: a header continued on the next line (obs-fold) was silently dropped, so a valid
/// signature on the continuation was never seen (401). Now folds are unfolded (RFC 9112 §5.2), with
/// a space or a tab; and other field-syntax violations are a 400 that names the rule, not a 401.
#[test]
fn i8_1_3_folded_signature_lines_are_read_and_field_syntax_errors_are_400() {
    let mut plugin = Plugin::start();
    let now = unix_now();
    for (n, fold) in [" ", "\t", " \t "].iter().enumerate() {
        let id = format!("wh_i8_1_3_{n}");
        let body = event_body("batch.completed", &format!("evt_fold_{n}"), now, &json!({"id": "batch_fold"}));
        let valid = sign(SECRET, &id, &now.to_string(), body.as_bytes());
        let raw = RawRequest::signed(SECRET, &id, now, body.as_str())
            .set("Webhook-Signature", &format!("v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n{fold}{valid}"));
        let answer = plugin.dispatch(&raw, SECRET, ENDPOINT);
        assert_eq!(answer.events, ["batch_completed", "any_event"], "fold {fold:?}: {:?}", answer.http);
    }
    let body = event_body("batch.completed", "evt_syntax", now, &json!({"id": "b"}));
    let raw = RawRequest::signed(SECRET, "wh_i8_1_3_syntax", now, body.as_str());
    let spaced = String::from_utf8(raw.bytes()).unwrap().replace("Webhook-Signature:", "Webhook-Signature :");
    let answer = plugin.dispatch_data(&dispatch_data(spaced.as_bytes(), SECRET, ENDPOINT));
    assert_eq!(answer.rejection(), (400, "malformed_request".to_owned()));
    assert!(
        answer.http.json()["message"]
            .as_str()
            .unwrap()
            .contains("whitespace between the field name and the colon (RFC 9112 §5.1)")
    );
}

/// #8 §1.4: two subscriptions that both arrive without an endpoint shared one replay scope, so a
/// delivery to the second was a "duplicate" of the first. Now the scope falls back to a digest of
/// the subscription's secrets.
#[test]
fn i8_1_4_subscriptions_without_an_endpoint_keep_separate_replay_memories() {
    let mut plugin = Plugin::start();
    let now = unix_now();
    let body = event_body("batch.completed", "evt_scope", now, &json!({"id": "b"}));
    for secret in [SECRET, OTHER_SECRET] {
        let answer = plugin.dispatch(&RawRequest::signed(secret, "wh_i8_1_4", now, body.as_str()), secret, "");
        assert_eq!(answer.events, ["batch_completed", "any_event"], "with {secret:.12}…");
    }
    let again = plugin.dispatch(&RawRequest::signed(SECRET, "wh_i8_1_4", now, body.as_str()), SECRET, "");
    assert_eq!(again.http.json()["status"], "duplicate", "the same subscription still remembers");
}

/// #8 §1.5: `send` panicked when OPENAI_WEBHOOK_SECRET held two secrets (the rotation form `dev`
/// documents for the same variable). Now it signs with both, as OpenAI does during a rotation.
#[test]
fn i8_1_5_send_accepts_the_rotation_form_of_the_secret() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let receiver = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            head.push(line.trim_end().to_owned());
        }
        let length: usize = head
            .iter()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.parse().unwrap()))
            .unwrap();
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let mut stream = stream;
        stream
            .write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}",
            )
            .unwrap();
        (head, body)
    });
    let output = command(&["send", "batch.completed", "--url", &url])
        .env("OPENAI_WEBHOOK_SECRET", format!("{SECRET} {OTHER_SECRET}"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let (head, body) = receiver.join().unwrap();
    let header = |name: &str| {
        head.iter()
            .find_map(|l| l.split_once(": ").filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.to_owned()))
            .unwrap()
    };
    let (id, timestamp) = (header("webhook-id"), header("webhook-timestamp"));
    let signatures: Vec<String> = header("webhook-signature").split(' ').map(str::to_owned).collect();
    assert_eq!(signatures, [sign(SECRET, &id, &timestamp, &body), sign(OTHER_SECRET, &id, &timestamp, &body)]);
}
