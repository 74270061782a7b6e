//! The table of hostile input (#8 §2): every layer — stdin lines, the raw HTTP request, the
//! signature, the payload (each payload also pretty-printed) — with the exact outcome of each row:
//! the log, the error type, or the HTTP status and `error` code the sender gets, or the events that
//! fire. After every row the session must have ended (the transcript checks that for every line)
//! and a canary delivery must still fire: the process keeps serving.
//!
//! Then the privacy scan (#8 §5): everything the plugin wrote over the whole table — stdout (results,
//! errors, logs, the HTTP responses inside them) and stderr at debug level — is searched for every
//! configured secret and for the text of every refused body, and none is found.

use serde_json::{Value, json};

use crate::support::*;

/// Refused bodies carry this, so the scan can tell if any were echoed.
const MARK: &str = "BODYTEXT-must-never-be-echoed";
/// A secret only rejection rows use (the canary uses SECRET).
const LEAKY: &str = "whsec_bGVha3ktc2VjcmV0LWZvci1wcml2YWN5LXNjYW4tMDE=";

enum Input {
    /// One raw stdin line (sent with a newline).
    Line(Vec<u8>),
    /// One raw stdin line that opens this session, whose result the row expects.
    SessionLine(&'static str, Vec<u8>),
    /// A request's `data`, in a fresh session.
    Data(Value),
    /// A raw HTTP request dispatched for a subscription with this secret (and the table's endpoint).
    Http(Vec<u8>, String),
}

enum Expect {
    /// A `log` line containing this.
    Log(&'static str),
    /// Nothing at all (blank lines).
    Silence,
    /// An `error` result of this type whose message contains this.
    Error(&'static str, &'static str),
    /// A dispatch answered with this status and `error` code, nothing fired.
    Http(u16, &'static str),
    /// A dispatch that fires these events.
    Fires(&'static [&'static str]),
    /// An invoke answered `cancelled: true`.
    Cancelled,
}

struct Row {
    name: String,
    input: Input,
    expect: Expect,
}

fn row(name: impl Into<String>, input: Input, expect: Expect) -> Row {
    Row { name: name.into(), input, expect }
}

fn line(text: &str) -> Input {
    Input::Line(text.as_bytes().to_vec())
}

fn session_line(session_id: &'static str, text: &str) -> Input {
    Input::SessionLine(session_id, text.as_bytes().to_vec())
}

/// A signed delivery of `body` (which is refused unless the row says otherwise).
fn signed(n: usize, body: &str) -> RawRequest {
    RawRequest::signed(LEAKY, &format!("wh_hostile_{n}"), unix_now(), body)
}

/// A valid event body carrying the privacy marker.
fn marked(n: usize, openai_type: &str) -> String {
    event_body(openai_type, &format!("evt_hostile_{n}"), unix_now(), &json!({"id": "batch_1", "note": MARK}))
}

/// A valid event body without the marker (for rows that fire, whose body is echoed by design).
fn plain(n: usize, openai_type: &str) -> String {
    event_body(openai_type, &format!("evt_plain_{n}"), unix_now(), &json!({"id": "batch_1"}))
}

fn raw_with(request: &RawRequest, edit: impl Fn(String) -> String) -> Vec<u8> {
    let bytes = request.bytes();
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let mut head = edit(String::from_utf8(bytes[..split].to_vec()).unwrap()).into_bytes();
    head.extend_from_slice(&bytes[split..]);
    head
}

/// A pretty-printed form of a body: line breaks and indentation between tokens (bodies here have no
/// commas or braces inside strings).
fn pretty(body: &str) -> String {
    body.replace('{', "{\n  ").replace(',', ",\n  ").replace('}', "\n}")
}

fn dispatch_hex(hex_text: &str, secret: &str) -> Value {
    let mut data = dispatch_data(b"", secret, ENDPOINT);
    data["raw_http_request"] = json!(hex_text);
    data
}

fn rows() -> Vec<Row> {
    let mut rows = Vec::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };

    // ---- stdin lines
    rows.push(row("line: not JSON", line("hello"), Expect::Log("not a JSON object (5 bytes)")));
    rows.push(row("line: a JSON array", line(r#"["s","request",{}]"#), Expect::Log("not a JSON object")));
    rows.push(row("line: null", line("null"), Expect::Log("not a JSON object")));
    rows.push(row("line: a number", line("42"), Expect::Log("not a JSON object")));
    rows.push(row("line: a string", line(r#""text""#), Expect::Log("not a JSON object")));
    rows.push(row(
        "line: truncated JSON",
        line(r#"{"session_id":"t","event":"req"#),
        Expect::Log("not a protocol message"),
    ));
    rows.push(row(
        "line: invalid UTF-8",
        Input::Line(b"{\"session_id\":\"\xff\xfe\"}".to_vec()),
        Expect::Log("not UTF-8"),
    ));
    rows.push(row(
        "line: no session_id",
        line(r#"{"event":"request","data":{"action":"x"}}"#),
        Expect::Log("without a session_id"),
    ));
    rows.push(row(
        "line: session_id null",
        line(r#"{"session_id":null,"event":"request","data":{}}"#),
        Expect::Log("without a session_id"),
    ));
    rows.push(row(
        "line: session_id empty",
        line(r#"{"session_id":"","event":"request","data":{}}"#),
        Expect::Log("without a session_id"),
    ));
    rows.push(row(
        "line: session_id a number",
        line(r#"{"session_id":7,"event":"request","data":{}}"#),
        Expect::Log("not a protocol message"),
    ));
    rows.push(row(
        "line: data missing",
        session_line("d1", r#"{"session_id":"d1","event":"request"}"#),
        Expect::Error("InvalidRequestError", "no data object"),
    ));
    rows.push(row(
        "line: data null",
        session_line("d2", r#"{"session_id":"d2","event":"request","data":null}"#),
        Expect::Error("InvalidRequestError", "no data object"),
    ));
    rows.push(row(
        "line: data an array",
        session_line("d3", r#"{"session_id":"d3","event":"request","data":[1]}"#),
        Expect::Error("InvalidRequestError", "no data object"),
    ));
    rows.push(row(
        "line: event missing",
        session_line("d4", r#"{"session_id":"d4","data":{}}"#),
        Expect::Error("UnknownEventError", "unknown event \"\""),
    ));
    rows.push(row(
        "line: unknown event",
        session_line("d5", r#"{"session_id":"d5","event":"cancel","data":{}}"#),
        Expect::Error("UnknownEventError", "\"cancel\""),
    ));
    let deep = format!(r#"{{"session_id":"d6","event":"request","data":{}1{}}}"#, "[".repeat(300), "]".repeat(300));
    rows.push(row(
        "line: data nested 300 deep",
        Input::SessionLine("d6", deep.into_bytes()),
        Expect::Error("InvalidRequestError", "no data object"),
    ));
    let deep = format!(
        r#"{{"session_id":"d7","event":"request","data":{{"action":"dispatch_trigger_event","raw_http_request":"","d":{}1{}}}}}"#,
        "[".repeat(300),
        "]".repeat(300)
    );
    // Unknown fields are skipped without recursion: the dispatch goes on (and its empty request is refused).
    rows.push(row(
        "line: a dispatch with a field nested 300 deep",
        Input::SessionLine("d7", deep.into_bytes()),
        Expect::Http(400, "malformed_request"),
    ));
    let deep = format!(r#"{{"session_id":"d8","event":{}1{}}}"#, "[".repeat(300), "]".repeat(300));
    rows.push(row(
        "line: an envelope field nested 300 deep",
        Input::Line(deep.into_bytes()),
        Expect::Log("not a protocol message"),
    ));
    rows.push(row("line: backwards answer for nobody", line(r#"{"session_id":"b1","event":"backwards_response","data":{"backwards_request_id":"none","event":"end","message":"","data":null}}"#), Expect::Log("no backwards request with its id is pending")));
    rows.push(row(
        "line: backwards answer malformed",
        line(r#"{"session_id":"b2","event":"backwards_response","data":[1]}"#),
        Expect::Log("without a well-formed data object"),
    ));
    rows.push(row("line: blank lines and CRLF", Input::Line(b"\r\n\n\r".to_vec()), Expect::Silence));
    rows.push(row("line: only spaces", line("   "), Expect::Log("not a JSON object (3 bytes)")));
    let huge = {
        let mut line = br#"{"session_id":"huge","event":"request","data":{"action":"x","pad":""#.to_vec();
        line.resize(65 * 1024 * 1024, b'a');
        line.extend_from_slice(br#""}}"#);
        line
    };
    rows.push(row("line: 65 MiB", Input::Line(huge), Expect::Log("over the 64 MiB limit")));

    // ---- request data
    rows.push(row(
        "data: no action",
        Input::Data(json!({"type": "trigger"})),
        Expect::Error("InvalidRequestError", "no string \"action\""),
    ));
    rows.push(row(
        "data: action a number",
        Input::Data(json!({"action": 7})),
        Expect::Error("InvalidRequestError", "no string \"action\""),
    ));
    rows.push(row(
        "data: unknown action",
        Input::Data(json!({"action": "launch_rocket"})),
        Expect::Error("NotImplementedError", "launch_rocket"),
    ));
    rows.push(row(
        "data: dispatch without raw_http_request",
        Input::Data(json!({"action": "dispatch_trigger_event"})),
        Expect::Error("TriggerDispatchError", "missing raw_http_request"),
    ));
    rows.push(row(
        "data: raw_http_request a number",
        Input::Data(json!({"action": "dispatch_trigger_event", "raw_http_request": 5})),
        Expect::Error("TriggerDispatchError", "wrong type"),
    ));
    rows.push(row(
        "data: subscription a string",
        Input::Data(json!({"action": "dispatch_trigger_event", "raw_http_request": "", "subscription": LEAKY})),
        Expect::Error("TriggerDispatchError", "wrong type"),
    ));
    let good = plain(next(), "batch.completed");
    let mut nulls =
        dispatch_data(&RawRequest::signed(SECRET, "wh_nulls", unix_now(), good.as_str()).bytes(), SECRET, ENDPOINT);
    nulls["credentials"] = Value::Null;
    nulls["subscription"] = Value::Null;
    rows.push(row(
        "data: credentials and subscription null",
        Input::Data(nulls),
        Expect::Http(401, "no_secret_configured"),
    ));
    let mut props =
        dispatch_data(&RawRequest::signed(SECRET, "wh_props", unix_now(), good.as_str()).bytes(), SECRET, ENDPOINT);
    props["subscription"]["properties"] = Value::Null;
    rows.push(row("data: properties null", Input::Data(props), Expect::Http(401, "no_secret_configured")));
    let mut invoke = invoke_data("batch_completed", b"", &Value::Null, &Value::Null);
    invoke["raw_http_request"] = Value::Null;
    rows.push(row("data: invoke with null payload, parameters and request", Input::Data(invoke), Expect::Cancelled));
    rows.push(row(
        "data: invoke without event",
        Input::Data(json!({"action": "invoke_trigger_event"})),
        Expect::Error("TriggerError", "missing event"),
    ));
    rows.push(row(
        "data: invoke of an undeclared event",
        Input::Data(invoke_data("nope", b"", &json!({}), &json!({}))),
        Expect::Error("TriggerError", "not declared"),
    ));

    // ---- the raw HTTP request
    rows.push(row("http: not hex", Input::Data(dispatch_hex("zz", LEAKY)), Expect::Http(400, "malformed_request")));
    rows.push(row(
        "http: odd-length hex",
        Input::Data(dispatch_hex("abc", LEAKY)),
        Expect::Http(400, "malformed_request"),
    ));
    let base = signed(next(), &marked(0, "batch.completed"));
    let bytes = base.bytes();
    rows.push(row(
        "http: truncated mid-head",
        Input::Http(bytes[..40].to_vec(), LEAKY.to_owned()),
        Expect::Http(400, "malformed_request"),
    ));
    rows.push(row(
        "http: no blank line",
        Input::Http(raw_with(&base, |h| h.trim_end().to_owned()), LEAKY.to_owned()),
        Expect::Http(400, "malformed_request"),
    ));
    rows.push(row(
        "http: Content-Length not a number",
        Input::Http(raw_with(&base, |h| h.replacen("Content-Length: ", "Content-Length: x", 1)), LEAKY.to_owned()),
        Expect::Http(400, "malformed_request"),
    ));
    rows.push(row(
        "http: conflicting Content-Length",
        Input::Http(raw_with(&base, |h| h.replacen("Host:", "Content-Length: 1\r\nHost:", 1)), LEAKY.to_owned()),
        Expect::Http(400, "malformed_request"),
    ));
    rows.push(row(
        "http: whitespace before a colon",
        Input::Http(raw_with(&base, |h| h.replacen("Webhook-Id:", "Webhook-Id :", 1)), LEAKY.to_owned()),
        Expect::Http(400, "malformed_request"),
    ));
    rows.push(row(
        "http: a field line without a colon",
        Input::Http(raw_with(&base, |h| h.replacen("Host:", "Broken line\r\nHost:", 1)), LEAKY.to_owned()),
        Expect::Http(400, "malformed_request"),
    ));
    rows.push(row(
        "http: a field name that is not a token",
        Input::Http(raw_with(&base, |h| h.replacen("Host:", "Bad(Name): x\r\nHost:", 1)), LEAKY.to_owned()),
        Expect::Http(400, "malformed_request"),
    ));
    rows.push(row(
        "http: NUL in a field value",
        Input::Http(raw_with(&base, |h| h.replacen("Host: dify.test", "Host: dify\0test", 1)), LEAKY.to_owned()),
        Expect::Http(400, "malformed_request"),
    ));
    rows.push(row(
        "http: HTTP/2.0 request line",
        Input::Http(raw_with(&base, |h| h.replacen("HTTP/1.1", "HTTP/2.0", 1)), LEAKY.to_owned()),
        Expect::Http(400, "malformed_request"),
    ));
    rows.push(row(
        "http: 129 header lines",
        Input::Http(
            raw_with(&base, |h| h.replacen("Host:", &format!("{}Host:", "X-Pad: y\r\n".repeat(129)), 1)),
            LEAKY.to_owned(),
        ),
        Expect::Http(400, "malformed_request"),
    ));
    rows.push(row(
        "http: head over 64 KiB",
        Input::Http(
            raw_with(&base, |h| h.replacen("Host: dify.test", &format!("Host: {}", "h".repeat(70_000)), 1)),
            LEAKY.to_owned(),
        ),
        Expect::Http(400, "malformed_request"),
    ));
    rows.push(row(
        "http: lower-case method",
        Input::Http(base.clone().method("post").bytes(), LEAKY.to_owned()),
        Expect::Http(405, "method_not_allowed"),
    ));
    rows.push(row(
        "http: GET",
        Input::Http(base.clone().method("GET").bytes(), LEAKY.to_owned()),
        Expect::Http(405, "method_not_allowed"),
    ));
    rows.push(row(
        "http: Content-Encoding gzip",
        Input::Http(base.clone().set("Content-Encoding", "gzip").bytes(), LEAKY.to_owned()),
        Expect::Http(415, "unsupported_encoding"),
    ));
    rows.push(row(
        "http: Transfer-Encoding gzip",
        Input::Http(base.clone().set("Transfer-Encoding", "gzip").bytes(), LEAKY.to_owned()),
        Expect::Http(415, "unsupported_encoding"),
    ));
    rows.push(row(
        "http: two different webhook-id lines",
        Input::Http(raw_with(&base, |h| h.replacen("Host:", "webhook-id: wh_other\r\nHost:", 1)), LEAKY.to_owned()),
        Expect::Http(400, "conflicting_header"),
    ));
    let big = format!(r#"{{"type":"batch.completed","pad":"{}","m":"{MARK}"}}"#, "p".repeat(1024 * 1024));
    rows.push(row(
        "http: body over 1 MiB",
        Input::Http(signed(next(), &big).bytes(), LEAKY.to_owned()),
        Expect::Http(413, "payload_too_large"),
    ));
    // …and the lenient ones, which fire.
    let fires: &[&str] = &["batch_completed", "any_event"];
    let ok = |n: usize| RawRequest::signed(SECRET, &format!("wh_ok_{n}"), unix_now(), plain(n, "batch.completed"));
    rows.push(row(
        "http: Content-Length disagreeing with the body",
        Input::Http(ok(next()).set("Content-Length", "3").bytes(), SECRET.to_owned()),
        Expect::Fires(fires),
    ));
    rows.push(row(
        "http: stale Transfer-Encoding chunked",
        Input::Http(ok(next()).set("Transfer-Encoding", "chunked").bytes(), SECRET.to_owned()),
        Expect::Fires(fires),
    ));
    rows.push(row(
        "http: Content-Encoding identity",
        Input::Http(ok(next()).set("Content-Encoding", "identity").bytes(), SECRET.to_owned()),
        Expect::Fires(fires),
    ));
    let same = ok(next());
    let repeated = raw_with(&same, |h| {
        h.replacen("Host:", &format!("webhook-id: {}\r\nHost:", same.header("Webhook-Id").unwrap()), 1)
    });
    rows.push(row("http: the same webhook-id twice", Input::Http(repeated, SECRET.to_owned()), Expect::Fires(fires)));
    let two = ok(next());
    let lines = raw_with(&two, |h| {
        h.replacen("Host:", "Webhook-Signature: v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\nHost:", 1)
    });
    rows.push(row(
        "http: a bad and a good signature line",
        Input::Http(lines, SECRET.to_owned()),
        Expect::Fires(fires),
    ));
    rows.push(row(
        "http: names in lower case",
        Input::Http(raw_with(&ok(next()), |h| h.replace("Webhook-", "webhook-")), SECRET.to_owned()),
        Expect::Fires(fires),
    ));
    rows.push(row(
        "http: names in upper case",
        Input::Http(
            raw_with(&ok(next()), |h| {
                h.replace("Webhook-Id", "WEBHOOK-ID").replace("Webhook-Timestamp", "WEBHOOK-TIMESTAMP")
            }),
            SECRET.to_owned(),
        ),
        Expect::Fires(fires),
    ));
    let fold = |n: usize, ws: &str| {
        let r = ok(n);
        let sig = r.header("Webhook-Signature").unwrap().to_owned();
        raw_with(&r, move |h| {
            h.replace(&format!("Webhook-Signature: {sig}"), &format!("Webhook-Signature: v1,bm90LWl0\r\n{ws}{sig}"))
        })
    };
    rows.push(row(
        "http: obs-fold with a space",
        Input::Http(fold(next(), " "), SECRET.to_owned()),
        Expect::Fires(fires),
    ));
    rows.push(row(
        "http: obs-fold with a tab",
        Input::Http(fold(next(), "\t"), SECRET.to_owned()),
        Expect::Fires(fires),
    ));
    rows.push(row(
        "http: non-ASCII field value",
        Input::Http(ok(next()).set("User-Agent", "Agënt/1 ✓").bytes(), SECRET.to_owned()),
        Expect::Fires(fires),
    ));
    rows.push(row(
        "http: bare LF line ends",
        Input::Http(raw_with(&ok(next()), |h| h.replace("\r\n", "\n")), SECRET.to_owned()),
        Expect::Fires(fires),
    ));
    rows.push(row(
        "http: upper-case hex",
        Input::Data(dispatch_hex(&hex::encode_upper(ok(next()).bytes()), SECRET)),
        Expect::Fires(fires),
    ));
    rows.push(row(
        "http: non-UTF-8 webhook-id",
        Input::Http(signed(next(), &marked(1, "batch.completed")).bytes().replace_id(), LEAKY.to_owned()),
        Expect::Http(401, "missing_header"),
    ));

    // ---- signatures (the vectors cover every case of openai-webhooks.md §2; these go end to end)
    let body = marked(2, "batch.completed");
    rows.push(row(
        "sig: no webhook-id",
        Input::Http(signed(next(), &body).without("Webhook-Id").bytes(), LEAKY.to_owned()),
        Expect::Http(401, "missing_header"),
    ));
    rows.push(row(
        "sig: no webhook-timestamp",
        Input::Http(signed(next(), &body).without("Webhook-Timestamp").bytes(), LEAKY.to_owned()),
        Expect::Http(401, "missing_header"),
    ));
    rows.push(row(
        "sig: no webhook-signature",
        Input::Http(signed(next(), &body).without("Webhook-Signature").bytes(), LEAKY.to_owned()),
        Expect::Http(401, "missing_header"),
    ));
    rows.push(row(
        "sig: empty webhook-signature",
        Input::Http(signed(next(), &body).set("Webhook-Signature", "").bytes(), LEAKY.to_owned()),
        Expect::Http(401, "missing_header"),
    ));
    rows.push(row(
        "sig: timestamp not a number",
        Input::Http(signed(next(), &body).set("Webhook-Timestamp", "12a").bytes(), LEAKY.to_owned()),
        Expect::Http(401, "invalid_timestamp"),
    ));
    rows.push(row(
        "sig: negative timestamp",
        Input::Http(signed(next(), &body).set("Webhook-Timestamp", "-5").bytes(), LEAKY.to_owned()),
        Expect::Http(401, "invalid_timestamp"),
    ));
    rows.push(row(
        "sig: 400 s old",
        Input::Http(RawRequest::signed(LEAKY, "wh_old", unix_now() - 400, body.as_str()).bytes(), LEAKY.to_owned()),
        Expect::Http(401, "timestamp_too_old"),
    ));
    rows.push(row(
        "sig: 400 s ahead",
        Input::Http(RawRequest::signed(LEAKY, "wh_new", unix_now() + 400, body.as_str()).bytes(), LEAKY.to_owned()),
        Expect::Http(401, "timestamp_too_new"),
    ));
    rows.push(row(
        "sig: another secret",
        Input::Http(RawRequest::signed(OTHER_SECRET, "wh_other", unix_now(), body.as_str()).bytes(), LEAKY.to_owned()),
        Expect::Http(401, "no_matching_signature"),
    ));
    let v1a = signed(next(), &body);
    let v1a_sig = v1a.header("Webhook-Signature").unwrap().replacen("v1,", "v1a,", 1);
    rows.push(row(
        "sig: only a v1a entry",
        Input::Http(v1a.clone().set("Webhook-Signature", &v1a_sig).bytes(), LEAKY.to_owned()),
        Expect::Http(401, "no_matching_signature"),
    ));
    rows.push(row(
        "sig: tampered body",
        Input::Http(signed(next(), &body).body(body.replace("batch_1", "batch_2")).bytes(), LEAKY.to_owned()),
        Expect::Http(401, "no_matching_signature"),
    ));
    rows.push(row(
        "sig: body not UTF-8",
        Input::Http(
            RawRequest::signed(LEAKY, "wh_utf8", unix_now(), b"{\"type\":\"x\",\"m\":\"\xff\"}".to_vec()).bytes(),
            LEAKY.to_owned(),
        ),
        Expect::Http(401, "invalid_payload"),
    ));
    rows.push(row(
        "sig: no secret configured",
        Input::Http(signed(next(), &body).bytes(), String::new()),
        Expect::Http(401, "no_secret_configured"),
    ));
    rows.push(row(
        "sig: secret pasted with its v1 label",
        Input::Http(signed(next(), &body).bytes(), format!("v1,{LEAKY}")),
        Expect::Http(401, "invalid_secret"),
    ));
    rows.push(row(
        "sig: secret too short",
        Input::Http(signed(next(), &body).bytes(), "whsec_c2hvcnQ=".to_owned()),
        Expect::Http(401, "invalid_secret"),
    ));
    rows.push(row(
        "sig: secret not base64",
        Input::Http(signed(next(), &body).bytes(), "whsec_!!not-base64!!".to_owned()),
        Expect::Http(401, "invalid_secret"),
    ));
    let junk_first = ok(next());
    let valid = junk_first.header("Webhook-Signature").unwrap().to_owned();
    rows.push(row(
        "sig: junk, tabs and spaces around the valid entry",
        Input::Http(
            junk_first.clone().set("Webhook-Signature", &format!("garbage \t v1a,xyz   {valid} v2,abc")).bytes(),
            SECRET.to_owned(),
        ),
        Expect::Fires(fires),
    ));
    rows.push(row(
        "sig: rotation, signed with the second secret",
        Input::Http(
            RawRequest::signed(SECRET, "wh_rot", unix_now(), plain(next(), "batch.completed")).bytes(),
            format!("{OTHER_SECRET}, {SECRET}"),
        ),
        Expect::Fires(fires),
    ));

    // ---- payloads, each compact and pretty-printed
    let payloads: Vec<(&str, String, Expect, Expect)> = vec![
        (
            "an array",
            format!(r#"["batch.completed","{MARK}"]"#),
            Expect::Http(400, "invalid_event"),
            Expect::Http(400, "invalid_event"),
        ),
        ("a string", format!(r#""{MARK}""#), Expect::Http(400, "invalid_event"), Expect::Http(400, "invalid_event")),
        (
            "type a number",
            format!(r#"{{"type":5,"m":"{MARK}"}}"#),
            Expect::Http(400, "invalid_event"),
            Expect::Http(400, "invalid_event"),
        ),
        (
            "no type",
            format!(r#"{{"id":"evt","m":"{MARK}"}}"#),
            Expect::Http(400, "invalid_event"),
            Expect::Http(400, "invalid_event"),
        ),
        (
            "empty type",
            format!(r#"{{"type":"","m":"{MARK}"}}"#),
            Expect::Http(400, "invalid_event"),
            Expect::Http(400, "invalid_event"),
        ),
        (
            "a number beyond f64",
            format!(r#"{{"type":"batch.completed","n":1e400,"m":"{MARK}"}}"#),
            Expect::Http(400, "invalid_event"),
            Expect::Http(400, "invalid_event"),
        ),
        (
            "a lone surrogate",
            format!(r#"{{"type":"batch.completed","s":"\ud800","m":"{MARK}"}}"#),
            Expect::Http(400, "invalid_event"),
            Expect::Http(400, "invalid_event"),
        ),
        (
            "a byte-order mark",
            format!("\u{feff}{{\"type\":\"batch.completed\",\"m\":\"{MARK}\"}}"),
            Expect::Http(400, "invalid_event"),
            Expect::Http(400, "invalid_event"),
        ),
        (
            "65 levels deep",
            format!(r#"{{"type":"batch.completed","m":"{MARK}","d":{}1{}}}"#, "[".repeat(64), "]".repeat(64)),
            Expect::Http(400, "invalid_event"),
            Expect::Http(400, "invalid_event"),
        ),
        (
            "trailing garbage",
            format!(r#"{{"type":"batch.completed","m":"{MARK}"}} x"#),
            Expect::Http(400, "invalid_event"),
            Expect::Http(400, "invalid_event"),
        ),
        ("empty", String::new(), Expect::Http(400, "invalid_event"), Expect::Http(400, "invalid_event")),
        (
            "an unknown type",
            r#"{"type":"video.completed","data":{"id":"video_1"}}"#.to_owned(),
            Expect::Fires(&["any_event"]),
            Expect::Fires(&["any_event"]),
        ),
        (
            "a number beyond i64",
            r#"{"type":"batch.completed","n":100000000000000000000,"data":{"id":"b"}}"#.to_owned(),
            Expect::Fires(fires),
            Expect::Fires(fires),
        ),
        (
            "a duplicate type key (the last wins)",
            r#"{"type":"video.completed","type":"batch.completed","data":{"id":"b"}}"#.to_owned(),
            Expect::Fires(fires),
            Expect::Fires(fires),
        ),
        (
            "64 levels deep",
            format!(r#"{{"type":"batch.completed","d":{}1{}}}"#, "[".repeat(63), "]".repeat(63)),
            Expect::Fires(fires),
            Expect::Fires(fires),
        ),
    ];
    for (name, payload, compact, pretty_expect) in payloads {
        let secret = if matches!(compact, Expect::Fires(_)) { SECRET } else { LEAKY };
        let (a, b) = (next(), next());
        rows.push(row(
            format!("payload: {name}"),
            Input::Http(
                RawRequest::signed(secret, &format!("wh_p_{a}"), unix_now(), payload.as_str()).bytes(),
                secret.to_owned(),
            ),
            compact,
        ));
        rows.push(row(
            format!("payload: {name}, pretty-printed"),
            Input::Http(
                RawRequest::signed(secret, &format!("wh_p_{b}"), unix_now(), pretty(&payload)).bytes(),
                secret.to_owned(),
            ),
            pretty_expect,
        ));
    }
    rows
}

/// `webhook-id` made not UTF-8 (a Latin-1 byte), so it cannot be read.
trait ReplaceId {
    fn replace_id(self) -> Vec<u8>;
}

impl ReplaceId for Vec<u8> {
    fn replace_id(self) -> Vec<u8> {
        let needle = b"Webhook-Id: wh_";
        let at = self.windows(needle.len()).position(|w| w == needle).unwrap() + needle.len();
        let mut out = self;
        out[at] = 0xe9;
        out
    }
}

/// A row's check: on failure, the reason (every row is checked; the test reports all that failed).
type Check = Result<(), String>;

fn ensure(ok: bool, reason: impl FnOnce() -> String) -> Check {
    if ok { Ok(()) } else { Err(reason()) }
}

#[test]
fn hostile_input_table() {
    let rows = rows();
    assert!(rows.len() >= 80, "the table has {} rows", rows.len());
    let mut plugin = Plugin::start_with(&[("OPENAI_TRIGGER_LOG", "debug")]);
    let mut canaries = 0;
    let mut failures: Vec<String> = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let logs_before = plugin.transcript.logs.len();
        let answered = match &row.input {
            Input::Line(bytes) => {
                let mut bytes = bytes.clone();
                bytes.push(b'\n');
                plugin.send_raw(&bytes);
                Ok(())
            }
            Input::SessionLine(session_id, bytes) => {
                let mut bytes = bytes.clone();
                bytes.push(b'\n');
                plugin.send_raw(&bytes);
                plugin.wait_for_sessions(&[(*session_id).to_owned()]);
                check_result(&row.expect, plugin.transcript.result(session_id).clone())
            }
            Input::Data(data) => check_result(&row.expect, plugin.call(data)),
            Input::Http(raw, secret) => check_result(&row.expect, plugin.call(&dispatch_data(raw, secret, ENDPOINT))),
        };
        // The canary: a fresh delivery must fire, right after the row.
        canaries += 1;
        let canary = RawRequest::signed(
            SECRET,
            &format!("wh_canary_{index}"),
            unix_now(),
            plain(100_000 + index, "batch.completed"),
        );
        let answer = plugin.dispatch(&canary, SECRET, ENDPOINT);
        let canary_fired = ensure(answer.events == ["batch_completed", "any_event"], || {
            format!("the next delivery after it did not fire: {:?}", answer.events)
        });
        let logs = &plugin.transcript.logs[logs_before..];
        let logged = match &row.expect {
            Expect::Log(text) => {
                ensure(logs.iter().any(|l| l["data"]["message"].as_str().is_some_and(|m| m.contains(text))), || {
                    format!("expected a log containing {text:?}, got {logs:?}")
                })
            }
            Expect::Silence => ensure(logs.is_empty(), || format!("expected no output, got {logs:?}")),
            _ => Ok(()),
        };
        for failure in [answered, canary_fired, logged].into_iter().filter_map(Result::err) {
            failures.push(format!("row {index} {:?}: {failure}", row.name));
        }
    }
    assert!(failures.is_empty(), "{} failure(s) in {} rows:\n{}", failures.len(), rows.len(), failures.join("\n"));
    assert!(plugin.finish().success(), "exit 0 at the end of the input");

    // The privacy scan over everything the plugin wrote.
    let stderr = plugin.stderr();
    let mut everything: Vec<String> = plugin.transcript.lines.clone();
    for line in &plugin.transcript.lines {
        // The HTTP responses are inside the results, as hex: decode them too.
        if let Ok(value) = serde_json::from_str::<Value>(line) {
            if let Some(hex_text) = value["data"]["data"]["response"].as_str() {
                everything.push(String::from_utf8_lossy(&hex::decode(hex_text).unwrap_or_default()).into_owned());
            }
        }
    }
    everything.push(stderr.clone());
    let needles: Vec<&str> = vec![
        MARK,
        LEAKY,
        LEAKY.trim_start_matches("whsec_"),
        SECRET,
        SECRET.trim_start_matches("whsec_"),
        OTHER_SECRET.trim_start_matches("whsec_"),
        "!!not-base64!!",
    ];
    for needle in needles {
        let found: Vec<&String> = everything.iter().filter(|text| text.contains(needle)).collect();
        assert!(found.is_empty(), "{needle:.16}… appears in what the plugin wrote: {:.300}", found[0]);
    }
    assert!(!stderr.is_empty(), "the debug log was written (the scan covered it)");
    assert_eq!(canaries, rows.len());
}

fn check_result(expect: &Expect, result: Result<Value, Value>) -> Check {
    match (expect, result) {
        (Expect::Error(error_type, text), Err(error)) => {
            ensure(error["error_type"] == *error_type, || format!("error type: {error}"))?;
            ensure(error["message"].as_str().unwrap_or_default().contains(text), || format!("message: {error}"))
        }
        (Expect::Http(status, code), Ok(chunk)) => {
            let answer = Dispatched::from_chunk(chunk);
            let got = answer.rejection();
            ensure(got == (*status, (*code).to_owned()), || {
                format!("got {got:?}, expected ({status}, {code:?}): {}", String::from_utf8_lossy(&answer.http.body))
            })?;
            ensure(answer.events.is_empty(), || format!("fired {:?}", answer.events))
        }
        (Expect::Fires(events), Ok(chunk)) => {
            let answer = Dispatched::from_chunk(chunk);
            ensure(answer.events == *events && answer.http.status == 200, || {
                format!(
                    "fired {:?} with {}, expected {events:?} with 200: {}",
                    answer.events,
                    answer.http.status,
                    String::from_utf8_lossy(&answer.http.body)
                )
            })
        }
        (Expect::Cancelled, Ok(chunk)) => ensure(Invoked::from_chunk(chunk).cancelled, || "not cancelled".to_owned()),
        (expect, result) => Err(format!("unexpected result {result:?} for {}", describe(expect))),
    }
}

fn describe(expect: &Expect) -> &'static str {
    match expect {
        Expect::Log(_) => "a log",
        Expect::Silence => "silence",
        Expect::Error(..) => "an error",
        Expect::Http(..) => "a rejection",
        Expect::Fires(_) => "events",
        Expect::Cancelled => "a cancelled invoke",
    }
}
