/*!
Wire shapes of the Dify plugin daemon protocol (daemon-protocol.md §2): serde only, no IO.

Inbound lines decode into [`Inbound`] with `data` kept as raw JSON, so a request's payload is
parsed once, by the handler that knows its shape. Outbound lines are built by the constructors at
the bottom; a stream chunk is embedded as raw JSON and never re-serialised.
*/

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Longest line we ever write. The daemon kills a plugin whose stdout line exceeds 5 MiB
/// (daemon-protocol.md §1.2); 4 MiB leaves room for its own headroom.
pub const MAX_OUTBOUND_LINE: usize = 4 * 1024 * 1024;

/// At most this many keys in `error.args`, or the daemon silently drops the error (§2.1).
pub const MAX_ERROR_ARGS: usize = 10;

/// Longest `error.message` we send, in characters: it reaches the Dify UI and logs.
pub const MAX_ERROR_MESSAGE: usize = 2000;

/// `{"event":"heartbeat","session_id":null,"data":{}}`, byte for byte what the SDK sends (§2.1).
pub const HEARTBEAT_LINE: &[u8] = br#"{"event":"heartbeat","session_id":null,"data":{}}"#;

/// One daemon → plugin line (§2.2). The daemon adds keys over time, so unknown ones are ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct Inbound<'a> {
    #[serde(default, borrow)]
    pub session_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    pub event: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    pub data: Option<&'a RawValue>,
}

/// The `data` of a `backwards_response` (§4.1): `event` is `response`, `error` or `end`.
#[derive(Debug, Deserialize)]
pub struct BackwardsResponse {
    pub backwards_request_id: String,
    pub event: String,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub data: Option<serde_json::Value>,
}

/// The `data` of an `error` session message: `{"error_type", "message", "args"}` (§2.5).
///
/// `error_type` reuses the Python SDK's exception class names, which Dify's API maps to its own
/// errors (triggers.md §5.4). `args` holds at most [`MAX_ERROR_ARGS`] keys when sent: the
/// runtime drops the excess, since the daemon would otherwise ignore the whole error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorData {
    pub error_type: String,
    pub message: String,
    pub args: serde_json::Map<String, serde_json::Value>,
}

impl ErrorData {
    pub fn new(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorData { error_type: error_type.into(), message: message.into(), args: serde_json::Map::new() }
    }

    /// Makes the error safe to send: at most [`MAX_ERROR_ARGS`] args (the last ones in key order
    /// go) and a message of at most [`MAX_ERROR_MESSAGE`] characters.
    pub(crate) fn bounded(mut self) -> Self {
        while self.args.len() > MAX_ERROR_ARGS {
            let Some(last) = self.args.keys().next_back().cloned() else { break };
            self.args.remove(&last);
        }
        if let Some((cut, _)) = self.message.char_indices().nth(MAX_ERROR_MESSAGE) {
            self.message.truncate(cut);
            self.message.push('…');
        }
        self
    }
}

impl std::fmt::Display for ErrorData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

impl std::error::Error for ErrorData {}

#[derive(Serialize)]
struct Envelope<'a, D: Serialize> {
    event: &'static str,
    session_id: Option<&'a str>,
    data: D,
}

#[derive(Serialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
enum SessionMessage<'a> {
    Error(&'a ErrorData),
    Invoke(Invoke<'a>),
}

#[derive(Serialize)]
struct Invoke<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    backwards_request_id: &'a str,
    request: &'a RawValue,
}

#[derive(Serialize)]
struct LogData<'a> {
    level: &'a str,
    message: &'a str,
    timestamp: f64,
}

fn to_line<T: Serialize>(value: &T) -> Vec<u8> {
    to_line_sized(value, 128)
}

/// [`to_line`] into a buffer of `capacity` bytes: a line that carries a chunk or a request is
/// written without growing (and copying) its buffer on the way.
fn to_line_sized<T: Serialize>(value: &T, capacity: usize) -> Vec<u8> {
    let mut line = Vec::with_capacity(capacity);
    // Our own types with string keys only: serialising into a Vec cannot fail.
    if serde_json::to_writer(&mut line, value).is_err() {
        line.clear();
    }
    line
}

/// Bytes of an envelope around a payload, besides the payload and the session id (and one `\n`).
const ENVELOPE_BYTES: usize = 160;

/// `{"event":"session","session_id":S,"data":{"type":"stream","data":<chunk>}}`.
pub fn stream_line(session_id: &str, chunk: &RawValue) -> Vec<u8> {
    // Two of every session's lines: written directly, in the key order serde writes `Envelope` in
    // (tests hold them to it), the chunk copied once.
    let mut line = Vec::with_capacity(chunk.get().len() + session_id.len() + ENVELOPE_BYTES);
    session_head(&mut line, session_id);
    line.extend_from_slice(br#"{"type":"stream","data":"#);
    line.extend_from_slice(chunk.get().as_bytes());
    line.extend_from_slice(b"}}");
    line
}

/// `{"event":"session","session_id":S,"data":{"type":"end","data":{}}}`.
pub fn end_line(session_id: &str) -> Vec<u8> {
    let mut line = Vec::with_capacity(session_id.len() + ENVELOPE_BYTES);
    session_head(&mut line, session_id);
    // `data` an object, never `null`: the daemon requires it (§2.1).
    line.extend_from_slice(br#"{"type":"end","data":{}}}"#);
    line
}

/// `{"event":"session","session_id":S,"data":`, the start of every line a session writes by hand.
fn session_head(line: &mut Vec<u8>, session_id: &str) {
    line.extend_from_slice(br#"{"event":"session","session_id":"#);
    json_string(line, session_id);
    line.extend_from_slice(br#","data":"#);
}

/// `value` as a JSON string (quoted and escaped).
fn json_string(line: &mut Vec<u8>, value: &str) {
    // A string into a Vec: serde cannot fail here.
    if serde_json::to_writer(&mut *line, value).is_err() {
        line.extend_from_slice(b"\"\"");
    }
}

/// `{"event":"session","session_id":S,"data":{"type":"error","data":{…}}}`.
pub fn error_line(session_id: &str, error: &ErrorData) -> Vec<u8> {
    to_line(&Envelope { event: "session", session_id: Some(session_id), data: SessionMessage::Error(error) })
}

/// A backwards invocation (§4.1): `{"type":"invoke","data":{"type","backwards_request_id","request"}}`.
pub fn invoke_line(session_id: &str, kind: &str, backwards_request_id: &str, request: &RawValue) -> Vec<u8> {
    let capacity = request.get().len() + session_id.len() + backwards_request_id.len() + ENVELOPE_BYTES;
    let invoke = Invoke { kind, backwards_request_id, request };
    to_line_sized(
        &Envelope { event: "session", session_id: Some(session_id), data: SessionMessage::Invoke(invoke) },
        capacity,
    )
}

/// [`invoke_line`] with a request the runtime wrote itself (`request` is JSON by construction: the
/// storage `set` of a hex value, which serde would scan byte by byte for characters to escape).
pub(crate) fn invoke_line_trusted(session_id: &str, kind: &str, backwards_request_id: &str, request: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(request.len() + session_id.len() + backwards_request_id.len() + ENVELOPE_BYTES);
    session_head(&mut line, session_id);
    line.extend_from_slice(br#"{"type":"invoke","data":{"type":"#);
    json_string(&mut line, kind);
    line.extend_from_slice(br#","backwards_request_id":"#);
    json_string(&mut line, backwards_request_id);
    line.extend_from_slice(br#","request":"#);
    line.extend_from_slice(request);
    line.extend_from_slice(b"}}}");
    line
}

/// `{"event":"log","session_id":null,"data":{"level","message","timestamp"}}` (§2.1).
pub fn log_line(level: &str, message: &str, timestamp: f64) -> Vec<u8> {
    to_line(&Envelope { event: "log", session_id: None, data: LogData { level, message, timestamp } })
}

/// Seconds since the Unix epoch, with fractions: the `timestamp` of `log` events.
pub(crate) fn unix_time() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// At most `max` characters of `text`, cut on a character boundary (for quoting input in messages).
pub fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    fn text(line: Vec<u8>) -> String {
        String::from_utf8(line).unwrap()
    }

    #[test]
    fn session_lines_are_the_envelope_whatever_the_id() {
        for id in ["s-1", "", "quote\"and\\back", "tab\tnew\nline\u{1}", "é✓"] {
            let envelope =
                |data: serde_json::Value| serde_json::json!({"event": "session", "session_id": id, "data": data});
            let stream: serde_json::Value = serde_json::from_slice(&stream_line(id, &raw(r#"{"a":[1,"x"]}"#))).unwrap();
            assert_eq!(stream, envelope(serde_json::json!({"type": "stream", "data": {"a": [1, "x"]}})), "{id:?}");
            let end: serde_json::Value = serde_json::from_slice(&end_line(id)).unwrap();
            assert_eq!(end, envelope(serde_json::json!({"type": "end", "data": {}})), "{id:?}");
            assert!(!stream_line(id, &raw("{}")).contains(&b'\n') && !end_line(id).contains(&b'\n'));
        }
    }

    #[test]
    fn stream_embeds_chunk_verbatim() {
        assert_eq!(
            text(stream_line("s-1", &raw(r#"{"result":true}"#))),
            r#"{"event":"session","session_id":"s-1","data":{"type":"stream","data":{"result":true}}}"#
        );
    }

    #[test]
    fn end_carries_empty_object() {
        assert_eq!(text(end_line("s-1")), r#"{"event":"session","session_id":"s-1","data":{"type":"end","data":{}}}"#);
    }

    #[test]
    fn error_has_type_message_args() {
        assert_eq!(
            text(error_line("s-3", &ErrorData::new("RuntimeError", "boom"))),
            r#"{"event":"session","session_id":"s-3","data":{"type":"error","data":{"error_type":"RuntimeError","message":"boom","args":{}}}}"#
        );
    }

    #[test]
    fn a_trusted_invoke_line_is_the_serialised_one() {
        let request = r#"{"opt":"set","key":"dedupe/v1/0a\"x","value":"00ff"}"#;
        assert_eq!(
            text(invoke_line_trusted("s\"1", "storage", "b-7", request.as_bytes())),
            text(invoke_line("s\"1", "storage", "b-7", &raw(request)))
        );
    }

    #[test]
    fn invoke_shape() {
        assert_eq!(
            text(invoke_line("s-4", "storage", "b-1", &raw(r#"{"opt":"exist","key":"k1"}"#))),
            r#"{"event":"session","session_id":"s-4","data":{"type":"invoke","data":{"type":"storage","backwards_request_id":"b-1","request":{"opt":"exist","key":"k1"}}}}"#
        );
    }

    #[test]
    fn log_line_shape() {
        assert_eq!(
            text(log_line("warn", "x", 1.5)),
            r#"{"event":"log","session_id":null,"data":{"level":"warn","message":"x","timestamp":1.5}}"#
        );
    }

    #[test]
    fn inbound_ignores_unknown_keys() {
        let line =
            r#"{"session_id":"a","conversation_id":null,"tenant_id":"t","event":"request","data":{"action":"x"}}"#;
        let inbound: Inbound<'_> = serde_json::from_str(line).unwrap();
        assert_eq!(inbound.session_id.as_deref(), Some("a"));
        assert_eq!(inbound.event.as_deref(), Some("request"));
        assert_eq!(inbound.data.unwrap().get(), r#"{"action":"x"}"#);
    }

    #[test]
    fn bounded_error_keeps_ten_args_and_a_short_message() {
        let mut error = ErrorData::new("E", "m".repeat(5000));
        for i in 0..15 {
            error.args.insert(format!("k{i:02}"), i.into());
        }
        let error = error.bounded();
        assert_eq!(error.args.len(), MAX_ERROR_ARGS);
        assert!(error.args.contains_key("k00") && !error.args.contains_key("k14"));
        assert_eq!(error.message.chars().count(), MAX_ERROR_MESSAGE + 1);
    }
}
