//! The raw HTTP/1.1 request Dify hands a trigger as hex, and the raw response it wants back
//! (triggers.md §3.3–§3.4). Parsing is lenient where Dify is inconsistent (header casing, a stale
//! `Transfer-Encoding` next to a de-chunked body, bare `\n` line ends) and exact where it matters:
//! the body is the bytes after the head, untouched, because signatures are computed over them.

use thiserror::Error;

/// Header lines we keep; Dify adds a dozen at most, and the rest are ignored rather than fatal.
const MAX_HEADERS: usize = 128;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum Error {
    #[error("raw_http_request is not valid hex")]
    Hex,
    #[error("request has no blank line between head and body")]
    NoHead,
    #[error("request head is not HTTP/1.x: {0}")]
    Head(&'static str),
}

#[derive(Debug, Clone)]
pub struct Header {
    pub name: String,
    pub value: Vec<u8>,
}

/// A parsed request. The body is a view into the decoded bytes, never copied.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    pub target: String,
    pub headers: Vec<Header>,
    bytes: Vec<u8>,
    body_start: usize,
}

impl HttpRequest {
    pub fn from_hex(hex_text: &str) -> Result<Self, Error> {
        let bytes = hex::decode(hex_text.trim()).map_err(|_| Error::Hex)?;
        Self::parse(bytes)
    }

    pub fn parse(bytes: Vec<u8>) -> Result<Self, Error> {
        let mut slots = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut slots);
        let mut config = httparse::ParserConfig::default();
        config.allow_multiple_spaces_in_request_line_delimiters(true);
        config.ignore_invalid_headers_in_requests(true);
        // httparse stops at the first blank line (CRLF or bare LF) and reports where the body starts.
        let body_start = match config.parse_request(&mut request, &bytes) {
            Ok(httparse::Status::Complete(head_len)) => head_len,
            Ok(httparse::Status::Partial) => return Err(Error::NoHead),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Error::Head("more than 128 header lines"));
            }
            Err(err) => return Err(Error::Head(describe(err))),
        };
        let method = request.method.unwrap_or_default().to_owned();
        let target = request.path.unwrap_or_default().to_owned();
        let headers =
            request.headers.iter().map(|h| Header { name: h.name.to_owned(), value: h.value.to_vec() }).collect();
        Ok(HttpRequest { method, target, headers, bytes, body_start })
    }

    /// The first value of a header, looked up case-insensitively. Repeated lines are never
    /// joined: for signature headers that would forge a different value (signature-vectors.json).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_slice())
    }

    /// The header as trimmed text; None when absent, empty or not UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        let value = std::str::from_utf8(self.header(name)?).ok()?.trim();
        (!value.is_empty()).then_some(value)
    }

    pub fn body(&self) -> &[u8] {
        &self.bytes[self.body_start..]
    }
}

/// Where the body starts: after the earliest blank line, CRLF or bare LF.
fn find_body_start(bytes: &[u8]) -> Option<usize> {
    let crlf = find(bytes, b"\r\n\r\n").map(|at| at + 4);
    let lf = find(bytes, b"\n\n").map(|at| at + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn describe(err: httparse::Error) -> &'static str {
    match err {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid method or token",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

/// A response for the webhook sender, serialised the way Dify's API parses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        HttpResponse { status, headers: vec![("Content-Type", "application/json".to_owned())], body: body.into() }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// `HTTP/1.1 <code> <reason>`, the headers, an exact `Content-Length`, a blank line, the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.body.len());
        out.extend_from_slice(format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status)).as_bytes());
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes());
        out.extend_from_slice(&self.body);
        out
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.to_bytes())
    }

    /// Parses what [`to_bytes`](Self::to_bytes) produced (used by the local Dify stand-ins).
    pub fn from_hex(hex_text: &str) -> Option<ParsedResponse> {
        let bytes = hex::decode(hex_text).ok()?;
        let body_start = find_body_start(&bytes)?;
        let head = std::str::from_utf8(&bytes[..body_start]).ok()?;
        let mut lines = head.lines();
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers =
            lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned())).collect();
        Some(ParsedResponse { status, headers, body: bytes[body_start..].to_vec() })
    }
}

/// A response read back from hex: status, headers in order, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        500 => "Internal Server Error",
        _ => "Unknown",
    }
}

/// Serialises a request the way Dify's API does (request line, `Name: value` lines, blank line,
/// raw body). Used by the local Dify stand-ins and tests.
pub fn serialize_request(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\n").into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! req {
        ($name:ident, $bytes:expr, |$r:ident| $body:block) => {
            #[test]
            fn $name() {
                let $r = HttpRequest::parse($bytes.to_vec()).expect("parses");
                $body
            }
        };
    }

    req!(crlf_request, b"POST /triggers/plugin/x HTTP/1.1\r\nHost: a\r\nWebhook-Id: wh_1\r\n\r\n{\"a\":1}", |r| {
        assert_eq!(r.method, "POST");
        assert_eq!(r.target, "/triggers/plugin/x");
        assert_eq!(r.header_str("webhook-id"), Some("wh_1"));
        assert_eq!(r.header_str("WEBHOOK-ID"), Some("wh_1"));
        assert_eq!(r.body(), b"{\"a\":1}");
    });

    req!(bare_lf_request, b"POST / HTTP/1.1\nX-A: 1\n\nbody\r\n\r\nmore", |r| {
        // The head ends at the first blank line even when the body has CRLF pairs of its own.
        assert_eq!(r.header_str("x-a"), Some("1"));
        assert_eq!(r.body(), b"body\r\n\r\nmore");
    });

    req!(
        body_bytes_are_exact,
        b"POST / HTTP/1.1\r\nContent-Length: 999\r\nTransfer-Encoding: chunked\r\n\r\n {\n\"x\" : 1 }\r\n",
        |r| {
            assert_eq!(r.body(), b" {\n\"x\" : 1 }\r\n");
        }
    );

    req!(first_of_duplicate_headers, b"POST / HTTP/1.1\r\nwebhook-id: one\r\nWebhook-Id: two\r\n\r\n", |r| {
        assert_eq!(r.header_str("webhook-id"), Some("one"));
    });

    req!(
        underscore_and_invalid_header_lines_are_tolerated,
        b"POST / HTTP/1.1\r\nX_Under: 1\r\nbad header line\r\nOk: yes\r\n\r\n",
        |r| {
            assert_eq!(r.header_str("x_under"), Some("1"));
            assert_eq!(r.header_str("ok"), Some("yes"));
        }
    );

    req!(empty_header_value_is_absent, b"POST / HTTP/1.1\r\nwebhook-signature:   \r\n\r\n", |r| {
        assert_eq!(r.header_str("webhook-signature"), None);
    });

    #[test]
    fn rejects_garbage() {
        assert_eq!(HttpRequest::from_hex("zz").unwrap_err(), Error::Hex);
        assert_eq!(HttpRequest::parse(b"POST / HTTP/1.1\r\nA: b".to_vec()).unwrap_err(), Error::NoHead);
        assert!(matches!(HttpRequest::parse(b"no head here\r\n\r\n".to_vec()), Err(Error::Head(_))));
        assert!(matches!(HttpRequest::parse(b"\x00\x01 / HTTP/1.1\r\n\r\n".to_vec()), Err(Error::Head(_))));
        let many = format!("POST / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(200));
        assert_eq!(HttpRequest::parse(many.into_bytes()).unwrap_err(), Error::Head("more than 128 header lines"));
    }

    #[test]
    fn response_matches_sdk_bytes() {
        // The SDK's ack, hex from triggers.md §3.4, but with our compact body.
        let response = HttpResponse::json(200, br#"{"status": "ok"}"#.to_vec());
        assert_eq!(
            response.to_hex(),
            "485454502f312e3120323030204f4b0d0a436f6e74656e742d547970653a206170706c69636174696f6e2f6a736f6e0d0a436f6e74656e742d4c656e6774683a2031360d0a0d0a7b22737461747573223a20226f6b227d"
        );
        let parsed = HttpResponse::from_hex(&response.to_hex()).unwrap();
        assert_eq!(parsed.status, 200);
        assert!(parsed.headers.contains(&("Content-Length".to_owned(), "16".to_owned())));
        assert_eq!(parsed.body, br#"{"status": "ok"}"#);
    }
}
