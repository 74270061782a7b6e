/*!
Typed endpoints (plugin-kinds.md §3): the daemon's `invoke_endpoint` request as an
[`EndpointRequest`] (method, path, query, headers, body, the instance's settings, the path's
variables) and the answer as an [`EndpointResponse`] (status, headers, a whole or streamed body),
written as the chunks the daemon expects (daemon-protocol.md §2.3 note E).

`raw_http_request` is the hex of the request Go's `http.Request.Write` produced: request line,
headers, a blank line, the body (possibly chunked). It is parsed leniently (§2.3 "Raw HTTP
encoding"): the head ends at the first `\r\n\r\n` (or `\n\n`), header names are matched without
regard to case. [`PathPattern`] is the Werkzeug rule syntax the Python SDK routes on
(`/duck/<app_id>`, `<int:n>`, `<path:rest>`).
*/

use serde::ser::{SerializeMap, Serializer};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::wire::ErrorData;

/// Raw body bytes per `result` chunk: 1 MiB, 2 MiB as hex, well under the 4 MiB line cap.
pub const BODY_CHUNK: usize = 1 << 20;

/// Why a `raw_http_request` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpParseError {
    #[error("raw_http_request is not hex")]
    NotHex,
    #[error("the request has no request line")]
    NoRequestLine,
    #[error("the request line {0:?} is not `METHOD target HTTP/x`")]
    BadRequestLine(String),
    #[error("the chunked body is malformed")]
    BadChunkedBody,
}

/// One HTTP request to a plugin endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRequest {
    /// Upper case, as sent (`GET`, `POST`, …).
    pub method: String,
    /// The path after `/e/{hook_id}`, percent-decoded, without the query (`/duck/abc`).
    pub path: String,
    /// The query pairs in order, percent-decoded (`+` is a space).
    pub query: Vec<(String, String)>,
    /// The headers in order, as sent (names keep their case; look them up with [`header`](Self::header)).
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked when it came with `Transfer-Encoding: chunked`.
    pub body: Vec<u8>,
    /// The endpoint instance's settings, decrypted (plugin-kinds.md §3.2).
    pub settings: Map<String, Value>,
    /// The variables of the matched path pattern (`app_id` of `/duck/<app_id>`).
    pub params: Vec<(String, String)>,
}

impl EndpointRequest {
    /// Parses the bytes of a raw HTTP/1.x request (already hex-decoded).
    ///
    /// Errors: no request line, a request line without three parts, a malformed chunked body.
    pub fn parse_raw(raw: &[u8]) -> Result<Self, HttpParseError> {
        let (head, body) = match find(raw, b"\r\n\r\n") {
            Some(at) => (&raw[..at], &raw[at + 4..]),
            None => match find(raw, b"\n\n") {
                Some(at) => (&raw[..at], &raw[at + 2..]),
                None => (raw, &[][..]),
            },
        };
        let head = String::from_utf8_lossy(head);
        let mut lines = head.split('\n').map(|l| l.trim_end_matches('\r'));
        let request_line = lines.next().filter(|l| !l.is_empty()).ok_or(HttpParseError::NoRequestLine)?;
        let mut parts = request_line.split(' ').filter(|p| !p.is_empty());
        let (Some(method), Some(target), Some(_version)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(HttpParseError::BadRequestLine(crate::wire::truncate(request_line, 200).to_owned()));
        };
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.starts_with([' ', '\t']) {
                // obs-fold: a continuation of the previous header's value.
                if let Some((_, value)) = headers.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                continue;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let chunked = headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked"));
        let body = if chunked { dechunk(body)? } else { body.to_vec() };
        Ok(EndpointRequest {
            method: method.to_owned(),
            path: percent_decode(path, false),
            query: parse_query(query),
            headers,
            body,
            settings: Map::new(),
            params: Vec::new(),
        })
    }

    /// From an `invoke_endpoint` request's `data` (`raw_http_request` hex, `settings`).
    ///
    /// Errors: a missing or non-hex `raw_http_request`, or what [`parse_raw`](Self::parse_raw) refuses.
    pub fn from_data(data: &Value) -> Result<Self, HttpParseError> {
        let hex = data.get("raw_http_request").and_then(Value::as_str).ok_or(HttpParseError::NotHex)?;
        let raw = hex::decode(hex).map_err(|_| HttpParseError::NotHex)?;
        let mut request = EndpointRequest::parse_raw(&raw)?;
        if let Some(Value::Object(settings)) = data.get("settings") {
            request.settings = settings.clone();
        }
        Ok(request)
    }

    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The first query value of `name`.
    pub fn query_value(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The path variable `name` of the matched pattern.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The setting `name` as a string, if it is one.
    pub fn setting(&self, name: &str) -> Option<&str> {
        self.settings.get(name).and_then(Value::as_str)
    }

    /// The body decoded as JSON into `T`.
    ///
    /// Errors: the body is not JSON of that shape.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// A query string's pairs in order, percent-decoded (`+` is a space).
pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, HttpParseError> {
    let mut out = Vec::with_capacity(body.len());
    loop {
        let line_end = find(body, b"\r\n").ok_or(HttpParseError::BadChunkedBody)?;
        let size_text = std::str::from_utf8(&body[..line_end]).map_err(|_| HttpParseError::BadChunkedBody)?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| HttpParseError::BadChunkedBody)?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = body.get(..size).ok_or(HttpParseError::BadChunkedBody)?;
        out.extend_from_slice(chunk);
        body = body.get(size + 2..).ok_or(HttpParseError::BadChunkedBody)?;
    }
}

fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// A path rule in Werkzeug syntax (plugin-kinds.md §3.1): literal segments and variables
/// `<name>` / `<string:name>` (one segment), `<int:name>` (digits), `<path:name>` (the rest,
/// slashes included; last only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    rule: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Var { name: String, kind: VarKind },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VarKind {
    String,
    Int,
    Path,
}

/// Why an endpoint path rule cannot be a [`PathPattern`] (the rule it breaks).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("must start with '/'")]
    NoLeadingSlash,
    #[error("segment {segment:?}: a variable is a whole <segment>")]
    PartialSegment { segment: String },
    #[error("converter {converter:?} is not string, int or path")]
    Converter { converter: String },
    #[error("variable name {name:?} must be letters, digits and _")]
    VariableName { name: String },
    #[error("a <path:…> variable must be the last segment")]
    PathNotLast,
}

impl PathPattern {
    /// Parses `rule`.
    ///
    /// Errors (as the rule broken): not starting with `/`, an unclosed `<`, an unknown converter,
    /// a variable that is not a whole segment, a `path` variable before the end.
    pub fn parse(rule: &str) -> Result<Self, PatternError> {
        let Some(rest) = rule.strip_prefix('/') else { return Err(PatternError::NoLeadingSlash) };
        let mut segments = Vec::new();
        let parts: Vec<&str> = if rest.is_empty() { Vec::new() } else { rest.split('/').collect() };
        for (i, part) in parts.iter().enumerate() {
            if let Some(inner) = part.strip_prefix('<') {
                let inner = inner
                    .strip_suffix('>')
                    .ok_or_else(|| PatternError::PartialSegment { segment: (*part).to_owned() })?;
                let (kind, name) = match inner.split_once(':') {
                    None => (VarKind::String, inner),
                    Some(("string", name)) => (VarKind::String, name),
                    Some(("int", name)) => (VarKind::Int, name),
                    Some(("path", name)) => (VarKind::Path, name),
                    Some((other, _)) => return Err(PatternError::Converter { converter: other.to_owned() }),
                };
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(PatternError::VariableName { name: name.to_owned() });
                }
                if kind == VarKind::Path && i + 1 != parts.len() {
                    return Err(PatternError::PathNotLast);
                }
                segments.push(Segment::Var { name: name.to_owned(), kind });
            } else if part.contains(['<', '>']) {
                return Err(PatternError::PartialSegment { segment: (*part).to_owned() });
            } else {
                segments.push(Segment::Literal((*part).to_owned()));
            }
        }
        Ok(PathPattern { rule: rule.to_owned(), segments })
    }

    /// The rule as written.
    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// The variables when `path` matches (a trailing `/` is ignored), else None.
    pub fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let path = path.strip_prefix('/')?;
        let path = path.strip_suffix('/').unwrap_or(path);
        if self.segments.is_empty() {
            return path.is_empty().then(Vec::new);
        }
        let mut rest = Some(path);
        let mut vars = Vec::new();
        for segment in &self.segments {
            let current = rest?;
            if let Segment::Var { name, kind: VarKind::Path } = segment {
                if current.is_empty() {
                    return None;
                }
                vars.push((name.clone(), current.to_owned()));
                return Some(vars);
            }
            let (part, tail) = match current.split_once('/') {
                Some((part, tail)) => (part, Some(tail)),
                None => (current, None),
            };
            match segment {
                Segment::Literal(literal) if literal == part => {}
                Segment::Var { name, kind: VarKind::String } if !part.is_empty() => {
                    vars.push((name.clone(), part.to_owned()))
                }
                Segment::Var { name, kind: VarKind::Int }
                    if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    vars.push((name.clone(), part.to_owned()))
                }
                _ => return None,
            }
            rest = tail;
        }
        rest.is_none().then_some(vars)
    }
}

/// The body of an [`EndpointResponse`].
#[derive(Debug)]
pub enum Body {
    /// The whole body, sent in `result` chunks of at most [`BODY_CHUNK`] bytes.
    Full(Vec<u8>),
    /// Pieces sent as they arrive, one `result` chunk each (a piece over [`BODY_CHUNK`] is split),
    /// until every sender is dropped.
    Stream(mpsc::Receiver<Vec<u8>>),
}

/// The answer to an endpoint request: status, single-valued headers (the daemon keeps one value
/// per name, §2.3 note E), body.
#[derive(Debug)]
pub struct EndpointResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl EndpointResponse {
    /// `status` with no headers and an empty body.
    pub fn new(status: u16) -> Self {
        EndpointResponse { status, headers: Vec::new(), body: Body::Full(Vec::new()) }
    }

    /// `status` with `Content-Type: text/plain; charset=utf-8` and `text`.
    pub fn text(status: u16, text: impl Into<String>) -> Self {
        EndpointResponse::new(status).header("Content-Type", "text/plain; charset=utf-8").body(text.into().into_bytes())
    }

    /// `status` with `Content-Type: application/json` and `value` serialised.
    pub fn json(status: u16, value: &impl serde::Serialize) -> Self {
        let body = serde_json::to_vec(value).unwrap_or_default();
        EndpointResponse::new(status).header("Content-Type", "application/json").body(body)
    }

    /// `status` with a streamed body, and the sender its pieces go through; the body ends when
    /// the last sender is dropped. `capacity` pieces may wait (back-pressure beyond that).
    pub fn stream(status: u16, capacity: usize) -> (Self, mpsc::Sender<Vec<u8>>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (EndpointResponse { status, headers: Vec::new(), body: Body::Stream(rx) }, tx)
    }

    /// Sets header `name` (replacing one of the same name, any case).
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        self.headers.push((name, value.into()));
        self
    }

    /// Sets the whole body.
    #[must_use]
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Full(body.into());
        self
    }

    /// The response the Python SDK sends for an error in a handler: 500 with the message.
    pub fn from_error(error: &ErrorData) -> Self {
        EndpointResponse::text(500, error.message.clone())
    }
}

/// The first chunk: `{"status":…,"headers":{…},"result":"<hex>"}` (status always present: the
/// daemon defaults to 100 without it; `result` always present, so the head is sent at once).
pub(crate) fn head_chunk(status: u16, headers: &[(String, String)], first: &[u8]) -> String {
    struct Headers<'a>(&'a [(String, String)]);
    impl serde::Serialize for Headers<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(Some(self.0.len()))?;
            for (n, v) in self.0 {
                map.serialize_entry(n, v)?;
            }
            map.end()
        }
    }
    #[derive(serde::Serialize)]
    struct Head<'a> {
        status: u16,
        headers: Headers<'a>,
        result: String,
    }
    serde_json::to_string(&Head { status, headers: Headers(headers), result: hex::encode(first) }).unwrap_or_default()
}

/// A body chunk: `{"result":"<hex>"}`.
pub(crate) fn body_chunk(piece: &[u8]) -> String {
    format!(r#"{{"result":"{}"}}"#, hex::encode(piece))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_go_writes() {
        let raw = b"POST /duck/abc%20d?x=1&y=a+b&z HTTP/1.1\r\nHost: dify.test\r\nContent-Length: 2\r\nDify-Hook-Id: h1\r\n\r\nhi";
        let request = EndpointRequest::parse_raw(raw).unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/duck/abc d");
        assert_eq!(request.query, [("x".into(), "1".into()), ("y".into(), "a b".into()), ("z".into(), String::new())]);
        assert_eq!(request.header("dify-hook-id"), Some("h1"));
        assert_eq!(request.body, b"hi");
    }

    #[test]
    fn chunked_bodies_and_bare_newlines() {
        let raw = b"PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n";
        assert_eq!(EndpointRequest::parse_raw(raw).unwrap().body, b"abcde");
        let raw = b"GET / HTTP/1.1\nHost: a\n\nbody";
        assert_eq!(EndpointRequest::parse_raw(raw).unwrap().body, b"body");
        assert_eq!(EndpointRequest::parse_raw(b"").unwrap_err(), HttpParseError::NoRequestLine);
        assert!(matches!(EndpointRequest::parse_raw(b"GET\r\n\r\n"), Err(HttpParseError::BadRequestLine(_))));
        let bad = b"PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert_eq!(EndpointRequest::parse_raw(bad).unwrap_err(), HttpParseError::BadChunkedBody);
    }

    #[test]
    fn path_patterns() {
        let duck = PathPattern::parse("/duck/<app_id>").unwrap();
        assert_eq!(duck.matches("/duck/abc"), Some(vec![("app_id".into(), "abc".into())]));
        assert_eq!(duck.matches("/duck/abc/"), Some(vec![("app_id".into(), "abc".into())]));
        assert_eq!(duck.matches("/duck"), None);
        assert_eq!(duck.matches("/duck/a/b"), None);
        let int = PathPattern::parse("/n/<int:n>").unwrap();
        assert_eq!(int.matches("/n/12"), Some(vec![("n".into(), "12".into())]));
        assert_eq!(int.matches("/n/x"), None);
        let path = PathPattern::parse("/files/<path:rest>").unwrap();
        assert_eq!(path.matches("/files/a/b.txt"), Some(vec![("rest".into(), "a/b.txt".into())]));
        assert_eq!(PathPattern::parse("/").unwrap().matches("/"), Some(vec![]));
        assert_eq!(PathPattern::parse("/").unwrap().matches("/x"), None);
        assert_eq!(PathPattern::parse("/a").unwrap().matches("/a"), Some(vec![]));
        assert_eq!(PathPattern::parse("x").unwrap_err(), PatternError::NoLeadingSlash);
        assert_eq!(
            PathPattern::parse("/<float:x>").unwrap_err(),
            PatternError::Converter { converter: "float".into() }
        );
        assert_eq!(PathPattern::parse("/<path:a>/b").unwrap_err(), PatternError::PathNotLast);
        assert_eq!(PathPattern::parse("/a<b>").unwrap_err(), PatternError::PartialSegment { segment: "a<b>".into() });
    }

    #[test]
    fn response_chunks() {
        let headers = vec![("Content-Type".to_owned(), "text/html".to_owned())];
        assert_eq!(
            head_chunk(200, &headers, b"ok"),
            r#"{"status":200,"headers":{"Content-Type":"text/html"},"result":"6f6b"}"#
        );
        assert_eq!(body_chunk(b"ok"), r#"{"result":"6f6b"}"#);
    }
}
