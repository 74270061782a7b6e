/*!
What one input line is, decided by a pure function ([`classify`]) that both transports use: a
request to run, a backwards answer to route, an envelope to refuse with an error (it has a session
to answer), or a line to ignore with a log (it has none). Public so other transports and the fuzzer
can use exactly the rules the session loop applies (daemon-protocol.md §1.2, §2.2, §2.6).
*/

use std::sync::Arc;

use crate::session::Request;
use crate::wire::{self, BackwardsResponse, ErrorData};

/// One classified input line.
#[derive(Debug)]
pub enum Inbound {
    /// `event: request` with a session id and a `data` object.
    Request { session_id: Arc<str>, request: Request },
    /// `event: backwards_response`, for the pending call its id names.
    BackwardsResponse(BackwardsResponse),
    /// An envelope with a session id that cannot run: answer this error, then `end`.
    Refused { session_id: Arc<str>, error: ErrorData },
    /// Not a message we can answer: log it and go on.
    Ignored(Unusable),
}

/// Why a line is not a message. Neither form quotes the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    NotObject { len: usize },
    NotUtf8 { len: usize },
    NotMessage { len: usize, category: serde_json::error::Category, line: usize, column: usize },
    NoSessionId { event: String },
    MalformedBackwards,
}

impl Unusable {
    /// The `log` the session loop writes for it.
    pub fn log_message(&self) -> String {
        match self {
            Unusable::NotObject { len } => format!("ignored an input line that is not a JSON object ({len} bytes)"),
            Unusable::NotUtf8 { len } => format!("ignored an input line that is not UTF-8 ({len} bytes)"),
            Unusable::NotMessage { len, category, line, column } => format!(
                "ignored an input line that is not a protocol message ({len} bytes; {category:?} at line {line}, column {column})"
            ),
            Unusable::NoSessionId { event } => {
                format!("ignored a message without a session_id (event {:?})", wire::truncate(event, 64))
            }
            Unusable::MalformedBackwards => "ignored a backwards_response without a well-formed data object".to_owned(),
        }
    }
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::NotObject { .. } => f.write_str("body is not a JSON object"),
            Unusable::NotUtf8 { .. } => f.write_str("body is not UTF-8"),
            Unusable::NotMessage { line, column, .. } => {
                write!(
                    f,
                    "body is not a request envelope (invalid JSON or a field of the wrong type at line {line}, column {column})"
                )
            }
            Unusable::NoSessionId { .. } => f.write_str("envelope has no session_id"),
            Unusable::MalformedBackwards => f.write_str("a backwards_response is not a request"),
        }
    }
}

/// Classifies one input line (without its `\n`). Never quotes the line in what it returns.
pub fn classify(line: Vec<u8>) -> Inbound {
    let len = line.len();
    // Only objects are messages: serde would also fill a struct from a JSON array, by position.
    if line.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Inbound::Ignored(Unusable::NotObject { len });
    }
    let Ok(text) = String::from_utf8(line) else {
        return Inbound::Ignored(Unusable::NotUtf8 { len });
    };
    let (session_id, event, data) = match serde_json::from_str::<wire::Inbound<'_>>(&text) {
        Ok(inbound) => (
            inbound.session_id.map(|id| Arc::<str>::from(id.as_ref())),
            inbound.event.map(|e| e.into_owned()),
            inbound.data.map(|raw| offset_in(&text, raw.get())),
        ),
        // serde's position only, never its text: it can quote the input.
        Err(err) => {
            return Inbound::Ignored(Unusable::NotMessage {
                len,
                category: err.classify(),
                line: err.line(),
                column: err.column(),
            });
        }
    };
    let event = event.unwrap_or_default();
    let Some(session_id) = session_id.filter(|id| !id.is_empty()) else {
        return Inbound::Ignored(Unusable::NoSessionId { event });
    };
    match event.as_str() {
        "request" => match data {
            Some(range) if text[range.clone()].starts_with('{') => {
                Inbound::Request { session_id, request: Request::new(text, range) }
            }
            _ => Inbound::Refused {
                session_id,
                error: ErrorData::new("InvalidRequestError", "request has no data object"),
            },
        },
        "backwards_response" => {
            match data.and_then(|range| serde_json::from_str::<BackwardsResponse>(&text[range]).ok()) {
                Some(response) => Inbound::BackwardsResponse(response),
                None => Inbound::Ignored(Unusable::MalformedBackwards),
            }
        }
        other => {
            let message = format!(
                "unknown event {:?}: expected \"request\" or \"backwards_response\"",
                wire::truncate(other, 64)
            );
            Inbound::Refused { session_id, error: ErrorData::new("UnknownEventError", message) }
        }
    }
}

/// The byte range of `part` inside `whole` (`part` is a sub-slice of it).
fn offset_in(whole: &str, part: &str) -> std::ops::Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize).min(whole.len());
    start..(start + part.len()).min(whole.len())
}
