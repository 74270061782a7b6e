//! Incoming SIP calls: `realtime.call.incoming` (Realtime API, `call_id`) and the Live API's
//! `live.transport.incoming` / deprecated `live.call.incoming` (`session_id`), and the Live API's
//! `live.transport.connected` (a WebRTC session connected: `session_id` and `type`, no SIP headers,
//! so the same variables with empty SIP fields and the same node filters).
//!
//! `sip_headers` arrives as an ordered list of `{name, value}`; workflows get it as an object too.
//! Repeated headers are joined with ", " (SIP, like HTTP, allows that for list-valued headers),
//! and From/To are also found by their compact forms `f` / `t` (RFC 3261 §7.3.3).

use serde_json::{Map, Value};

use super::{Parameter, Parameters, Skip, put, text};

/// Which SIP event a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `realtime.call.incoming`: `data.call_id`.
    Realtime,
    /// `live.transport.incoming` and `live.transport.connected`: `data.session_id` and the
    /// transport `data.type`.
    LiveTransport,
    /// `live.call.incoming` (deprecated by OpenAI): `data.session_id`.
    LiveCall,
}

const FROM_CONTAINS: Parameter = Parameter::text("from_contains");
const TO_CONTAINS: Parameter = Parameter::text("to_contains");
pub(super) const PARAMETERS: &[Parameter] = &[FROM_CONTAINS, TO_CONTAINS];

pub(super) fn variables(
    call: Call,
    data: &Map<String, Value>,
    parameters: &Parameters,
    vars: &mut Map<String, Value>,
) -> Result<(), Skip> {
    let headers = sip_headers(data);
    let sip_from = header(&headers, "from", "f");
    let sip_to = header(&headers, "to", "t");
    for (parameter, value, header_name) in [(FROM_CONTAINS, &sip_from, "From"), (TO_CONTAINS, &sip_to, "To")] {
        if let Some(wanted) = parameter.text_in(parameters) {
            if !value.to_lowercase().contains(&wanted.to_lowercase()) {
                return Err(Skip::SipHeader { header: header_name, parameter: parameter.name });
            }
        }
    }
    match call {
        Call::Realtime => put(vars, "call_id", text(data, "call_id")),
        Call::LiveTransport | Call::LiveCall => put(vars, "session_id", text(data, "session_id")),
    }
    if call == Call::LiveTransport {
        put(vars, "transport_type", text(data, "type"));
    }
    put(vars, "sip_from", sip_from);
    put(vars, "sip_to", sip_to);
    vars.insert("sip_headers".into(), Value::Object(headers));
    put(vars, "sip_media_security", text(data, "sip_media_security"));
    Ok(())
}

fn sip_headers(data: &Map<String, Value>) -> Map<String, Value> {
    let mut joined: Map<String, Value> = Map::new();
    let entries = data.get("sip_headers").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for entry in entries.iter().filter_map(Value::as_object) {
        let (Some(name), Some(value)) =
            (entry.get("name").and_then(Value::as_str), entry.get("value").and_then(Value::as_str))
        else {
            continue;
        };
        // The first spelling of a name wins, so `Via` and `via` land in one entry.
        let existing = joined.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned();
        match existing {
            Some(key) => {
                if let Some(Value::String(previous)) = joined.get_mut(&key) {
                    previous.push_str(", ");
                    previous.push_str(value);
                }
            }
            None => {
                joined.insert(name.to_owned(), Value::String(value.to_owned()));
            }
        }
    }
    joined
}

fn header(headers: &Map<String, Value>, name: &str, compact: &str) -> String {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .or_else(|| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(compact)))
        .and_then(|(_, v)| v.as_str())
        .unwrap_or_default()
        .to_owned()
}
