//! Many sessions on one process, written back to back without waiting, as the daemon multiplexes
//! every tenant over one pipe (daemon-protocol.md §5).

use serde_json::{Value, json};

use openai_trigger::events::{self, ANY_EVENT};
use openai_trigger::samples::sample_data;

use crate::support::*;

/// What one session must answer.
enum Expect {
    Fired(&'static str),
    Rejected(u16, &'static str),
    /// One of a pair of deliveries sharing a webhook-id: fired or duplicate, decided afterwards.
    Pair(&'static str, usize),
    Invoked {
        event_id: String,
    },
    Cancelled,
    Error(&'static str),
}

#[test]
fn twelve_hundred_interleaved_sessions_are_each_answered_once() {
    const SESSIONS: usize = 1200; // Over the plugin's 1024 in-flight slots, so back-pressure is exercised.
    let types: Vec<&str> = events::known_openai_types().collect();
    let now = unix_now();
    let rotation = format!("{OTHER_SECRET} {SECRET}");
    let mut input = String::new();
    let mut expected = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        let openai_type = types[i % types.len()];
        let name = events::by_openai_type(openai_type).unwrap().name;
        let event_id = format!("evt_conc_{i:05}");
        let body = event_body(openai_type, &event_id, now, &sample_data(openai_type));
        let signed = |secret: &str, webhook_id: &str| RawRequest::signed(secret, webhook_id, now, body.clone());
        let (data, expect) = match i % 9 {
            0 => (dispatch_data(&signed(SECRET, &format!("wh_c{i}")).bytes(), SECRET, ENDPOINT), Expect::Fired(name)),
            1 => (
                dispatch_data(&signed(SECRET, &format!("wh_c{i}")).bytes(), OTHER_SECRET, ENDPOINT),
                Expect::Rejected(401, "no_matching_signature"),
            ),
            2 => (
                dispatch_data(&signed(OTHER_SECRET, &format!("wh_c{i}")).bytes(), &rotation, OTHER_ENDPOINT),
                Expect::Fired(name),
            ),
            3 | 4 => {
                // Two deliveries of one message: exactly one may fire, whichever runs first.
                let pair = i / 9;
                let raw = signed(SECRET, &format!("wh_pair_{pair}"));
                (dispatch_data(&raw.bytes(), SECRET, ENDPOINT), Expect::Pair(name, pair))
            }
            5 => {
                let payload = json!({"webhook_id": format!("wh_c{i}"), "webhook_timestamp": now,
                    "event": serde_json::from_str::<Value>(&body).unwrap()});
                (invoke_data(name, &signed(SECRET, "wh_x").bytes(), &payload, &json!({})), Expect::Invoked { event_id })
            }
            6 => {
                // A delivery of another type never fires this event.
                let other = events::by_openai_type(types[(i + 1) % types.len()]).unwrap().name;
                let payload = json!({"webhook_id": "wh_x", "webhook_timestamp": now,
                    "event": serde_json::from_str::<Value>(&body).unwrap()});
                (invoke_data(other, b"", &payload, &json!({})), Expect::Cancelled)
            }
            7 => (
                json!({"action": "frobnicate", "type": "trigger", "user_id": ""}),
                Expect::Error("NotImplementedError"),
            ),
            _ => (
                json!({"action": "subscribe_trigger", "type": "trigger", "user_id": "", "provider": PROVIDER,
                    "credentials": null, "subscription": subscription(SECRET, ENDPOINT)}),
                Expect::Error("SubscriptionError"),
            ),
        };
        let id = format!("conc-{i:05}");
        input.push_str(&request_line(&id, &data));
        input.push('\n');
        expected.push((id, expect));
    }

    let mut plugin = Plugin::start();
    plugin.send_raw(input.as_bytes());
    let status = plugin.finish();
    assert!(status.success(), "{status:?}; stderr: {}", plugin.stderr());

    let mut answered = plugin.transcript.session_ids();
    answered.sort();
    let mut sent: Vec<String> = expected.iter().map(|(id, _)| id.clone()).collect();
    sent.sort();
    assert_eq!(answered, sent, "every session answered, and no other");

    let mut pairs: std::collections::HashMap<usize, Vec<bool>> = Default::default();
    for (id, expect) in &expected {
        let result = plugin.transcript.result(id);
        match expect {
            Expect::Fired(name) => {
                let dispatched = Dispatched::from_chunk(result.clone().unwrap());
                assert_eq!(dispatched.events, [*name, ANY_EVENT], "{id}");
                assert_eq!(dispatched.http.status, 200, "{id}");
            }
            Expect::Rejected(status, code) => {
                let dispatched = Dispatched::from_chunk(result.clone().unwrap());
                assert_eq!(dispatched.rejection(), (*status, (*code).to_owned()), "{id}");
                assert!(dispatched.events.is_empty(), "{id}");
            }
            Expect::Pair(name, pair) => {
                let dispatched = Dispatched::from_chunk(result.clone().unwrap());
                let fired = !dispatched.events.is_empty();
                if fired {
                    assert_eq!(dispatched.http.status, 200, "{id}");
                    assert_eq!(dispatched.events, [*name, ANY_EVENT], "{id}");
                } else if dispatched.http.status == 409 {
                    // Both copies were in flight at once (two worker threads): the later one is
                    // told to retry while the first is being answered (#8 §2, claims).
                    assert_eq!(dispatched.http.json()["error"], "delivery_in_progress", "{id}");
                    assert_eq!(dispatched.http.header("retry-after"), Some("5"), "{id}");
                } else {
                    assert_eq!(dispatched.http.status, 200, "{id}");
                    assert_eq!(dispatched.http.json(), json!({"status": "duplicate"}), "{id}");
                }
                pairs.entry(*pair).or_default().push(fired);
            }
            Expect::Invoked { event_id } => {
                let invoked = Invoked::from_chunk(result.clone().unwrap());
                assert!(!invoked.cancelled, "{id}");
                assert_eq!(invoked.variables["event_id"], event_id.as_str(), "{id}");
            }
            Expect::Cancelled => assert!(Invoked::from_chunk(result.clone().unwrap()).cancelled, "{id}"),
            Expect::Error(error_type) => {
                let error = result.clone().expect_err("an error");
                assert_eq!(error["error_type"], *error_type, "{id}");
            }
        }
    }
    for (pair, fired) in pairs {
        assert_eq!(fired.len(), 2, "pair {pair}");
        assert_eq!(fired.iter().filter(|f| **f).count(), 1, "exactly one delivery of wh_pair_{pair} fires");
    }
}
