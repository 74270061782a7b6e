/*!
What one input line is, decided by a pure function ([`classify`]) that both transports use: a
request to run, a backwards answer to route, an envelope to refuse with an error (it has a session
to answer), or a line to ignore with a log (it has none). Public so other transports and the fuzzer
can use exactly the rules the session loop applies (daemon-protocol.md §1.2, §2.2, §2.6).
*/

use std::borrow::Cow;
use std::ops::Range;
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
    let scanned = match scan(&text) {
        Some(envelope) => Ok(envelope),
        // Whatever the scan does not take is decided by serde, so its diagnostics stay exact.
        None => serde_json::from_str::<wire::Inbound<'_>>(&text).map(|inbound| Envelope {
            session_id: inbound.session_id,
            event: inbound.event,
            data: inbound.data.map(|raw| offset_in(&text, raw.get())),
        }),
    };
    let (session_id, event, data) = match scanned {
        Ok(envelope) => (
            envelope.session_id.map(|id| Arc::<str>::from(id.as_ref())),
            envelope.event.map(|e| e.into_owned()),
            envelope.data,
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

/// The envelope's three fields.
struct Envelope<'a> {
    session_id: Option<Cow<'a, str>>,
    event: Option<Cow<'a, str>>,
    data: Option<Range<usize>>,
}

/// One structural pass over an envelope line (issue #19: one pass per line). `data` is delimited,
/// not validated: its handler's typed parse is the one full pass over it, and the bulk of a line is
/// its strings (a webhook's hex), which this skips with `memchr` instead of decoding. `session_id`
/// and `event` are decoded; any other key's value is checked by serde as before. None for anything
/// unusual (a key with an escape, a key given twice, a value that is not where it should be, text
/// after the object): the caller then lets serde decide, so every refusal reads as it always did.
/// A `data` that is delimited but invalid inside now reaches its handler, which answers the session
/// an error instead of leaving it unanswered.
fn scan(text: &str) -> Option<Envelope<'_>> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    let mut envelope = Envelope { session_id: None, event: None, data: None };
    let (mut seen_id, mut seen_event, mut seen_data) = (false, false, false);
    if b.get(i) == Some(&b'}') {
        return (skip_ws(b, i + 1) == b.len()).then_some(envelope);
    }
    loop {
        let (key, Range { start, end }) = member_at(b, i)?;
        let value = &text[start..end];
        match key {
            b"session_id" if !seen_id => {
                seen_id = true;
                envelope.session_id = serde_json::from_str::<Option<Cow<'_, str>>>(value).ok()?;
            }
            b"event" if !seen_event => {
                seen_event = true;
                envelope.event = serde_json::from_str::<Option<Cow<'_, str>>>(value).ok()?;
            }
            b"data" if !seen_data => {
                seen_data = true;
                // `null` is no data, as serde reads an Option.
                envelope.data = (value != "null").then_some(start..end);
            }
            b"session_id" | b"event" | b"data" => return None,
            _ => {
                serde_json::from_str::<serde::de::IgnoredAny>(value).ok()?;
            }
        }
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return (skip_ws(b, i + 1) == b.len()).then_some(envelope),
            _ => return None,
        }
    }
}

/// The contents of the string value of the first member `name` of the JSON object `text`, when it
/// holds a string with no escape and no control character and no key before it has an escape;
/// None otherwise. Members before it are delimited as [`scan`] delimits them, not validated, and
/// nothing after it is looked at: the caller has serde read the whole object with this value
/// emptied, which finds a second `name`, or anything else wrong, as it would in the whole text.
pub(crate) fn plain_string_member(text: &str, name: &str) -> Option<Range<usize>> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    loop {
        let (key, Range { start, end }) = member_at(b, i)?;
        if key == name.as_bytes() {
            if b[start] != b'"' {
                return None;
            }
            let contents = start + 1..end - 1;
            let value = &b[contents.clone()];
            // Without an early exit, so that it runs in vector registers.
            let control = value.iter().fold(false, |seen, &c| seen | (c < 0x20));
            return (!control && memchr::memchr(b'\\', value).is_none()).then_some(contents);
        }
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            _ => return None,
        }
    }
}

/// The object member whose key starts at `i` (its opening quote): the key and its value's range.
/// None when it is not delimited as expected or its key has an escape (which could spell any
/// name): the caller then leaves the text to serde.
fn member_at(b: &[u8], i: usize) -> Option<(&[u8], Range<usize>)> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let key_end = string_end(b, i + 1)?;
    let key = &b[i + 1..key_end - 1];
    if memchr::memchr(b'\\', key).is_some() {
        return None;
    }
    let colon = skip_ws(b, key_end);
    if b.get(colon) != Some(&b':') {
        return None;
    }
    let start = skip_ws(b, colon + 1);
    let end = value_end(b, start)?;
    Some((key, start..end))
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The index after the closing quote of the string whose contents start at `i`.
fn string_end(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        i += memchr::memchr2(b'"', b'\\', &b[i..])?;
        if b[i] == b'"' {
            return Some(i + 1);
        }
        i += 2;
        if i > b.len() {
            return None;
        }
    }
}

/// The index after the value starting at `i`: a string, an object or array (brackets counted
/// outside strings, not matched by kind: the typed parse checks), or a scalar up to a delimiter.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => string_end(b, i + 1),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j + 1)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let len = b[i..].iter().position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'));
            Some(i + len.unwrap_or(b.len() - i))
        }
    }
}

/// The byte range of `part` inside `whole` (`part` is a sub-slice of it).
fn offset_in(whole: &str, part: &str) -> std::ops::Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize).min(whole.len());
    start..(start + part.len()).min(whole.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What serde reads from an envelope: (session_id, event, data text).
    fn by_serde(text: &str) -> Option<(Option<String>, Option<String>, Option<String>)> {
        let inbound = serde_json::from_str::<wire::Inbound<'_>>(text).ok()?;
        Some((
            inbound.session_id.map(|s| s.into_owned()),
            inbound.event.map(|s| s.into_owned()),
            inbound.data.map(|d| d.get().to_owned()),
        ))
    }

    fn by_scan(text: &str) -> Option<(Option<String>, Option<String>, Option<String>)> {
        let envelope = scan(text)?;
        Some((
            envelope.session_id.map(|s| s.into_owned()),
            envelope.event.map(|s| s.into_owned()),
            envelope.data.map(|r| text[r].to_owned()),
        ))
    }

    #[test]
    fn the_scan_reads_what_serde_reads_or_leaves_the_line_to_it() {
        let lines = [
            r#"{"session_id":"s","event":"request","data":{"action":"x","raw_http_request":"00ff"}}"#,
            r#" { "data" : { "a" : [1, {"b": "}]\"{"}], "c": null } , "event":"request" , "session_id" : "s\u00e9" } "#,
            r#"{"session_id":"s","event":"request","data":{"nested":{"deep":[[["x"]]]},"s":"a\\\"b"},"other":[1,2,{"x":"y"}]}"#,
            r#"{"session_id":"s","event":"backwards_response","data":{"backwards_request_id":"1","event":"end"}}"#,
            r#"{"session_id":null,"event":"request","data":null}"#,
            r#"{"session_id":"s","event":"request","data":[1,2]}"#,
            r#"{"session_id":"s","data":{}}"#,
            r#"{}"#,
            r#"{"session_id":"a","session_id":"b","data":{}}"#,
            r#"{"sess\u0069on_id":"s","event":"request","data":{}}"#,
            r#"{"session_id":7,"event":"request","data":{}}"#,
            r#"{"session_id":"s","event":"request","data":{}} trailing"#,
            r#"{"session_id":"s","event":"request","data":{"#,
            r#"{"session_id":"s","event":"req"#,
            r#"{"session_id":"s","other":tru,"data":{}}"#,
            r#"{"session_id":"s","event":"request","data":{}"#,
        ];
        for line in lines {
            // Whatever the scan takes, serde reads the same; except that the scan does not
            // validate inside `data` (none of these is invalid there).
            if let Some(scanned) = by_scan(line) {
                assert_eq!(Some(scanned), by_serde(line), "{line}");
            }
        }
        // The ones the scan must take (the daemon's lines), and the ones it must leave to serde.
        assert!(by_scan(lines[0]).is_some() && by_scan(lines[1]).is_some() && by_scan(lines[2]).is_some());
        for refused in &lines[8..] {
            assert!(by_scan(refused).is_none(), "{refused}");
        }
    }

    #[test]
    fn a_plain_string_member_is_found_only_when_serde_would_read_it_as_is() {
        let text = r#"{"a":1,"raw":"00ff","b":{"raw":"x"}}"#;
        assert_eq!(plain_string_member(text, "raw").map(|r| &text[r]), Some("00ff"));
        assert_eq!(plain_string_member(r#" { "raw" : "" } "#, "raw").map(|r| r.len()), Some(0));
        // A second one, and what follows the first, are left to serde (the caller's test).
        assert!(plain_string_member(r#"{"raw":"00","raw":"11"} x"#, "raw").is_some());
        for refused in [
            r#"{"a":1}"#,
            r#"{"raw":"0\u0030"}"#,
            "{\"raw\":\"0\u{1}0\"}",
            r#"{"raw":7}"#,
            r#"{"r\u0061w":"00"}"#,
            r#"{"raw":"00"#,
            r#"["raw","00"]"#,
        ] {
            assert_eq!(plain_string_member(refused, "raw"), None, "{refused}");
        }
    }

    #[test]
    fn data_that_is_delimited_but_invalid_reaches_its_handler() {
        let line = br#"{"session_id":"s","event":"request","data":{"action":"x",}}"#.to_vec();
        match classify(line) {
            Inbound::Request { session_id, request } => {
                assert_eq!(&*session_id, "s");
                assert!(request.parse::<serde_json::Value>().is_err(), "its typed parse refuses it");
            }
            other => panic!("{other:?}"),
        }
    }
}
