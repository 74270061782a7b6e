//! Wire shapes of the Dify plugin daemon protocol (daemon-protocol.md §2): serde only, no IO.
//!
//! Inbound lines are decoded into [`Inbound`] with the request `data` kept as raw JSON, so each
//! handler extracts only what it needs. Outbound lines are built by the small constructors at the
//! bottom; a stream chunk is embedded as raw JSON and never re-serialised.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Longest stdout line we ever write. The daemon kills a plugin whose line exceeds 5 MiB
/// (daemon-protocol.md §1.2); 4 MiB leaves room for the envelope and the daemon's own headroom.
pub const MAX_OUTBOUND_LINE: usize = 4 * 1024 * 1024;

/// At most this many keys in `error.args`, or the daemon silently drops the error (§2.1).
pub const MAX_ERROR_ARGS: usize = 10;

/// One daemon → plugin line. The daemon adds keys over time, so unknown ones are ignored.
#[derive(Debug, Deserialize)]
pub struct Inbound {
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub data: Option<Box<RawValue>>,
}

/// The `data` of an `error` session message. `args` is an object with at most ten keys.
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
}

#[derive(Serialize)]
struct Envelope<'a, D: Serialize> {
    event: &'static str,
    session_id: Option<&'a str>,
    data: D,
}

#[derive(Serialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
enum SessionMessage<'a> {
    Stream(&'a RawValue),
    End(Empty),
    Error(&'a ErrorData),
}

/// Serialises as `{}`: the daemon requires `end` to carry an object, never `null` (§2.1).
#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct LogData<'a> {
    level: &'a str,
    message: &'a str,
    timestamp: f64,
}

/// `{"event":"heartbeat","session_id":null,"data":{}}`, byte for byte what the SDK sends.
pub const HEARTBEAT_LINE: &[u8] = br#"{"event":"heartbeat","session_id":null,"data":{}}"#;

fn to_line<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising our own types into a Vec cannot fail: every map key is a string.
    serde_json::to_vec(value).expect("wire types always serialise")
}

pub fn stream_line(session_id: &str, chunk: &RawValue) -> Vec<u8> {
    to_line(&Envelope { event: "session", session_id: Some(session_id), data: SessionMessage::Stream(chunk) })
}

pub fn end_line(session_id: &str) -> Vec<u8> {
    to_line(&Envelope { event: "session", session_id: Some(session_id), data: SessionMessage::End(Empty {}) })
}

pub fn error_line(session_id: &str, error: &ErrorData) -> Vec<u8> {
    to_line(&Envelope { event: "session", session_id: Some(session_id), data: SessionMessage::Error(error) })
}

pub fn log_line(level: &str, message: &str, timestamp: f64) -> Vec<u8> {
    to_line(&Envelope { event: "log", session_id: None, data: LogData { level, message, timestamp } })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn stream_embeds_chunk_verbatim() {
        let line = stream_line("s-1", &raw(r#"{"result":true}"#));
        assert_eq!(
            String::from_utf8(line).unwrap(),
            r#"{"event":"session","session_id":"s-1","data":{"type":"stream","data":{"result":true}}}"#
        );
    }

    #[test]
    fn end_carries_empty_object() {
        assert_eq!(
            String::from_utf8(end_line("s-1")).unwrap(),
            r#"{"event":"session","session_id":"s-1","data":{"type":"end","data":{}}}"#
        );
    }

    #[test]
    fn error_has_type_message_args() {
        let line = error_line("s-3", &ErrorData::new("RuntimeError", "boom"));
        assert_eq!(
            String::from_utf8(line).unwrap(),
            r#"{"event":"session","session_id":"s-3","data":{"type":"error","data":{"error_type":"RuntimeError","message":"boom","args":{}}}}"#
        );
    }

    #[test]
    fn log_line_shape() {
        assert_eq!(
            String::from_utf8(log_line("warn", "x", 1.5)).unwrap(),
            r#"{"event":"log","session_id":null,"data":{"level":"warn","message":"x","timestamp":1.5}}"#
        );
    }

    #[test]
    fn inbound_ignores_unknown_keys() {
        let line =
            r#"{"session_id":"a","conversation_id":null,"tenant_id":"t","event":"request","data":{"action":"x"}}"#;
        let inbound: Inbound = serde_json::from_str(line).unwrap();
        assert_eq!(inbound.session_id.as_deref(), Some("a"));
        assert_eq!(inbound.event.as_deref(), Some("request"));
        assert_eq!(inbound.data.unwrap().get(), r#"{"action":"x"}"#);
    }
}
