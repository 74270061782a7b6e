/*!
The raw HTTP/1.1 request Dify hands a trigger as hex, and the raw response it wants back
(triggers.md §3.3–§3.4).

Parsing is lenient where Dify is inconsistent and exact where it matters:
- the body is the bytes after the head, untouched (signatures are computed over them); a
  `Content-Length` that disagrees with it, and a stale `Transfer-Encoding: chunked` next to a body
  Dify already de-chunked, are tolerated (the signature decides), but a `Content-Length` that is not
  a number, or two that differ, is refused (RFC 9112 §6.3);
- bare LF line ends are accepted (RFC 9112 §2.2);
- obsolete line folding (a field line continued on the next line starting with SP or HTAB) is
  replaced by one space before the value is read, as RFC 9112 §5.2 allows a server to do: a
  signature on the continuation line is seen;
- every other field-syntax rule of RFC 9112 §5 is enforced, and a request that breaks one is refused
  with the rule named ([`Error::Field`]): a field line without a colon, whitespace between the field
  name and the colon (§5.1), a field name that is not a token (§5.1), a control character in a field
  value (§5.5);
- a body over the caller's cap is refused from the hex's length alone, before it is decoded.

The request line and the head's final structure are then read by `httparse`, strictly.
*/

use thiserror::Error;

/// Header lines we accept; Dify adds a dozen at most.
const MAX_HEADERS: usize = 128;
/// Longest request head (request line and field lines) we decode.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Why a raw request was refused. `Display` names the rule, never quotes the input.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Error {
    #[error("raw_http_request is not valid hex")]
    Hex,
    #[error("request has no blank line between head and body")]
    NoHead,
    #[error("request head is over {} KiB", MAX_HEAD_BYTES / 1024)]
    HeadTooLarge,
    #[error("request head is not HTTP/1.x: {0}")]
    Head(&'static str),
    #[error("field line {line}: {rule}")]
    Field { line: usize, rule: FieldRule },
    #[error("body of {bytes} bytes is over the {limit} byte limit")]
    BodyTooLarge { bytes: usize, limit: usize },
}

/// A broken field-syntax rule of RFC 9112 §5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldRule {
    NoColon,
    SpaceBeforeColon,
    NameNotToken,
    ControlInValue,
    ConflictingContentLength,
    BadContentLength,
}

impl std::fmt::Display for FieldRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FieldRule::NoColon => "a field line without a colon (RFC 9112 §5)",
            FieldRule::SpaceBeforeColon => "whitespace between the field name and the colon (RFC 9112 §5.1)",
            FieldRule::NameNotToken => "a field name that is not a token (RFC 9110 §5.1)",
            FieldRule::ControlInValue => "a control character in a field value (RFC 9110 §5.5)",
            FieldRule::ConflictingContentLength => "Content-Length fields that disagree (RFC 9112 §6.3)",
            FieldRule::BadContentLength => "a Content-Length that is not a number (RFC 9110 §8.6)",
        })
    }
}

/// One field line: where its name (as sent) and its value (trimmed, folds replaced by a space)
/// are in the request's head.
#[derive(Debug, Clone)]
struct Header {
    name: std::ops::Range<usize>,
    value: std::ops::Range<usize>,
}

/// A parsed request. Method, target and fields are views into the head, the body a view into the
/// decoded bytes: parsing copies nothing per field.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// The head as checked (folds unfolded, CRLF line ends); fields point into it.
    head: Vec<u8>,
    method: std::ops::Range<usize>,
    target: std::ops::Range<usize>,
    headers: Vec<Header>,
    bytes: Vec<u8>,
    body_start: usize,
}

impl HttpRequest {
    /// Decodes and parses `hex_text`, refusing a body over `max_body` bytes before decoding it.
    pub fn from_hex(hex_text: &str, max_body: usize) -> Result<Self, Error> {
        let hex_text = hex_text.trim().as_bytes();
        if hex_text.len() % 2 != 0 {
            return Err(Error::Hex);
        }
        // Decode the head first: the body's size is then known from the hex's length, before the
        // body is decoded. The head ends at the first blank line (CRLF CRLF, or LF LF), within the
        // first MAX_HEAD_BYTES + 4 bytes. That region is decoded in one SIMD pass (for a request
        // that is not too large it is needed anyway); bad hex there is found again by the
        // byte-by-byte loop, so the error is the one that loop reports.
        let total = hex_text.len() / 2;
        let first = total.min(MAX_HEAD_BYTES + 4);
        let mut bytes = vec![0; first];
        let head_len = if faster_hex::hex_decode(&hex_text[..first * 2], &mut bytes).is_ok() {
            head_end(&bytes)
        } else {
            bytes.clear();
            let mut found = None;
            for pair in hex_text.chunks_exact(2).take(first) {
                let byte = decode_pair(pair)?;
                bytes.push(byte);
                if byte == b'\n' && (bytes.ends_with(b"\r\n\r\n") || bytes.ends_with(b"\n\n")) {
                    found = Some(bytes.len());
                    break;
                }
            }
            found
        };
        let head_len = match head_len {
            Some(len) => len,
            None if total > MAX_HEAD_BYTES => return Err(Error::HeadTooLarge),
            None => return Err(Error::NoHead),
        };
        let body_len = total - head_len;
        if body_len > max_body {
            return Err(Error::BodyTooLarge { bytes: body_len, limit: max_body });
        }
        // Whatever of the body the first pass did not cover (or all of it, after the slow path).
        let decoded = bytes.len();
        bytes.resize(total, 0);
        faster_hex::hex_decode(&hex_text[decoded * 2..], &mut bytes[decoded..]).map_err(|_| Error::Hex)?;
        Self::parse_with_head(bytes, head_len)
    }

    /// Parses raw request bytes (no size limit on the body).
    pub fn parse(bytes: Vec<u8>) -> Result<Self, Error> {
        let head_len = head_end(&bytes[..bytes.len().min(MAX_HEAD_BYTES + 4)])
            .ok_or(if bytes.len() > MAX_HEAD_BYTES { Error::HeadTooLarge } else { Error::NoHead })?;
        Self::parse_with_head(bytes, head_len)
    }

    fn parse_with_head(bytes: Vec<u8>, head_len: usize) -> Result<Self, Error> {
        let head = unfold_and_check(&bytes[..head_len])?;
        // Slots httparse writes before it reads them: not zeroed first (4 KiB per request).
        let mut slots = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut []);
        let mut config = httparse::ParserConfig::default();
        config.allow_multiple_spaces_in_request_line_delimiters(true);
        match config.parse_request_with_uninit_headers(&mut request, &head, &mut slots) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(Error::NoHead),
            Err(httparse::Error::TooManyHeaders) => return Err(Error::Head("more than 128 header lines")),
            Err(err) => return Err(Error::Head(describe(err))),
        }
        let range = |part: &[u8]| {
            let start = part.as_ptr() as usize - head.as_ptr() as usize;
            start..start + part.len()
        };
        let method = request.method.map(|m| range(m.as_bytes())).unwrap_or(0..0);
        let target = request.path.map(|p| range(p.as_bytes())).unwrap_or(0..0);
        let headers: Vec<Header> =
            request.headers.iter().map(|h| Header { name: range(h.name.as_bytes()), value: range(h.value) }).collect();
        let parsed = HttpRequest { method, target, headers, bytes, body_start: head_len, head: Vec::new() };
        let parsed = HttpRequest { head, ..parsed };
        check_content_length(&parsed)?;
        Ok(parsed)
    }

    /// The request method, as sent (methods are case-sensitive, RFC 9110 §9.1).
    pub fn method(&self) -> &str {
        std::str::from_utf8(&self.head[self.method.clone()]).unwrap_or_default()
    }

    /// The request target, as sent.
    pub fn target(&self) -> &str {
        std::str::from_utf8(&self.head[self.target.clone()]).unwrap_or_default()
    }

    /// Every field line, in order: its name as sent and its value.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers
            .iter()
            .map(|h| (std::str::from_utf8(&self.head[h.name.clone()]).unwrap_or_default(), &self.head[h.value.clone()]))
    }

    /// The values of the field lines named `name` (case-insensitively), in order. Names are compared
    /// as bytes: they are tokens (checked when parsed), so no UTF-8 check is needed per lookup.
    fn values_of<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]> {
        self.headers
            .iter()
            .filter(move |h| self.head[h.name.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| &self.head[h.value.clone()])
    }

    /// The first value of a header, looked up case-insensitively.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.values_of(name).next()
    }

    /// Every non-empty value of a header, as trimmed text, in order (non-UTF-8 values skipped).
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.values_of(name)
            .filter_map(|value| std::str::from_utf8(value).ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
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

fn decode_pair(pair: &[u8]) -> Result<u8, Error> {
    fn nibble(c: u8) -> Result<u8, Error> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(Error::Hex),
        }
    }
    Ok(nibble(pair[0])? << 4 | nibble(pair[1])?)
}

/// Lowercase hex of `bytes` (SIMD where the CPU has it).
pub fn encode_hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    if faster_hex::hex_encode(bytes, &mut out).is_err() {
        return hex::encode(bytes);
    }
    String::from_utf8(out).unwrap_or_else(|_| hex::encode(bytes))
}

/// Where the body starts: after the earliest blank line, CRLF or bare LF.
fn head_end(bytes: &[u8]) -> Option<usize> {
    let crlf = memchr::memmem::find(bytes, b"\r\n\r\n").map(|at| at + 4);
    // An LF LF that ends after the CRLF CRLF cannot be first: search only up to it.
    let lf = memchr::memmem::find(&bytes[..crlf.unwrap_or(bytes.len())], b"\n\n").map(|at| at + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The head with obs-fold replaced by one space and CRLF line ends, after checking every field
/// line's syntax. One buffer, written once (a fold rewrites the end of the line before it).
fn unfold_and_check(head: &[u8]) -> Result<Vec<u8>, Error> {
    // The common head (every line ends in CRLF, no line folded) already reads as it should: only
    // its field lines are checked, each found with memchr.
    if is_canonical(head) {
        for (index, line) in crlf_lines(head).enumerate().skip(1) {
            if !line.is_empty() {
                check_field_line(index, line)?;
            }
        }
        return Ok(head.to_vec());
    }
    unfold_and_check_any(head)
}

/// [`unfold_and_check`] for any head.
fn unfold_and_check_any(head: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(head.len() + 16);
    // Start of the line last written (its CRLF included), and how many lines were written.
    let mut last_start = 0;
    let mut count = 0usize;
    for raw in head.split(|&b| b == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if count > 1 && matches!(line.first(), Some(b' ' | b'\t')) {
            // obs-fold: the previous field line continues here (RFC 9112 §5.2).
            out.truncate(out.len() - 2);
            while out.len() > last_start && matches!(out.last(), Some(b' ' | b'\t')) {
                out.pop();
            }
            out.push(b' ');
            out.extend(line.iter().skip_while(|b| matches!(b, b' ' | b'\t')));
            out.extend_from_slice(b"\r\n");
            continue;
        }
        last_start = out.len();
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        count += 1;
    }
    // The split ends with the blank line's pieces; keep exactly one terminating blank line.
    while out.ends_with(b"\r\n\r\n\r\n") {
        out.truncate(out.len() - 2);
    }
    // Check each field line as it now reads (after unfolding).
    for (index, line) in out.split(|&b| b == b'\n').enumerate().skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.is_empty() {
            check_field_line(index, line)?;
        }
    }
    Ok(out)
}

/// Every line of `head` ends in CRLF, none is folded (starts with a space or a tab after the
/// request line), and it ends with exactly one blank line.
fn is_canonical(head: &[u8]) -> bool {
    let mut previous = 0;
    for at in memchr::memchr_iter(b'\n', head) {
        if at == 0 || head[at - 1] != b'\r' || (previous > 0 && matches!(head[previous], b' ' | b'\t')) {
            return false;
        }
        previous = at + 1;
    }
    previous == head.len() && head.ends_with(b"\r\n\r\n") && !head[..head.len() - 2].ends_with(b"\r\n\r\n")
}

/// The lines of a canonical head, without their CRLF.
fn crlf_lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    memchr::memchr_iter(b'\n', head).map(move |at| {
        let line = &head[start..at - 1];
        start = at + 1;
        line
    })
}

fn check_field_line(line_number: usize, line: &[u8]) -> Result<(), Error> {
    let fail = |rule| Err(Error::Field { line: line_number, rule });
    let Some(colon) = memchr::memchr(b':', line) else { return fail(FieldRule::NoColon) };
    let name = &line[..colon];
    if name.last().is_some_and(|b| matches!(b, b' ' | b'\t')) {
        return fail(FieldRule::SpaceBeforeColon);
    }
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return fail(FieldRule::NameNotToken);
    }
    if line[colon + 1..].iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return fail(FieldRule::ControlInValue);
    }
    Ok(())
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn check_content_length(request: &HttpRequest) -> Result<(), Error> {
    let mut seen: Option<&[u8]> = None;
    for (index, (name, value)) in request.fields().enumerate() {
        if !name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        let value = value.trim_ascii();
        // RFC 9112 §6.3 also allows a comma list of identical values.
        let mut parts = value.split(|&b| b == b',').map(<[u8]>::trim_ascii);
        let first = parts.next().unwrap_or_default();
        if first.is_empty() || !first.iter().all(u8::is_ascii_digit) {
            return Err(Error::Field { line: index + 1, rule: FieldRule::BadContentLength });
        }
        if parts.any(|p| p != first) || seen.is_some_and(|s| s != first) {
            return Err(Error::Field { line: index + 1, rule: FieldRule::ConflictingContentLength });
        }
        seen = Some(first);
    }
    Ok(())
}

fn describe(err: httparse::Error) -> &'static str {
    match err {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid method or request target",
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
        encode_hex(&self.to_bytes())
    }

    /// Parses what [`to_bytes`](Self::to_bytes) produced (used by the local Dify stand-ins).
    pub fn from_hex(hex_text: &str) -> Option<ParsedResponse> {
        let bytes = hex::decode(hex_text).ok()?;
        let body_start = head_end(&bytes)?;
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
        409 => "Conflict",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
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

    fn parse(bytes: &[u8]) -> Result<HttpRequest, Error> {
        HttpRequest::parse(bytes.to_vec())
    }

    macro_rules! req {
        ($name:ident, $bytes:expr, |$r:ident| $body:block) => {
            #[test]
            fn $name() {
                let $r = parse($bytes).expect("parses");
                $body
            }
        };
    }

    #[test]
    fn a_canonical_head_reads_as_the_general_path_reads_it() {
        let heads: [&[u8]; 9] = [
            b"POST /t HTTP/1.1\r\nHost: a\r\nWebhook-Id: wh_1\r\n\r\n",
            b"POST /t HTTP/1.1\r\n\r\n",
            b"POST /t HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"POST /t HTTP/1.1\r\nName : x\r\n\r\n",
            b"POST /t HTTP/1.1\r\nNoColon\r\n\r\n",
            b"POST /t HTTP/1.1\r\nA: x\x01y\r\n\r\n",
            b"POST /t HTTP/1.1\r\nA: x\ry\r\nB: \x7f\r\n\r\n",
            b"POST /t HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n",
            b"POST /t HTTP/1.1\nA: 1\r\n\r\n",
        ];
        for head in heads {
            assert_eq!(unfold_and_check(head), unfold_and_check_any(head), "{:?}", String::from_utf8_lossy(head));
        }
        assert!(is_canonical(heads[0]) && is_canonical(heads[2]) && is_canonical(heads[6]));
        assert!(!is_canonical(heads[7]) && !is_canonical(heads[8]), "folds and bare LF take the general path");
    }

    req!(crlf_request, b"POST /triggers/plugin/x HTTP/1.1\r\nHost: a\r\nWebhook-Id: wh_1\r\n\r\n{\"a\":1}", |r| {
        assert_eq!(r.method(), "POST");
        assert_eq!(r.target(), "/triggers/plugin/x");
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

    req!(repeated_headers_keep_every_value, b"POST / HTTP/1.1\r\nwebhook-id: one\r\nWebhook-Id: two\r\n\r\n", |r| {
        assert_eq!(r.header_str("webhook-id"), Some("one"));
        assert_eq!(r.header_values("WEBHOOK-ID").collect::<Vec<_>>(), ["one", "two"]);
    });

    req!(underscore_names_are_tokens, b"POST / HTTP/1.1\r\nX_Under: 1\r\nOk: yes\r\n\r\n", |r| {
        assert_eq!(r.header_str("x_under"), Some("1"));
        assert_eq!(r.header_str("ok"), Some("yes"));
    });

    req!(empty_header_value_is_absent, b"POST / HTTP/1.1\r\nwebhook-signature:   \r\n\r\n", |r| {
        assert_eq!(r.header_str("webhook-signature"), None);
    });

    req!(
        obs_fold_with_space_and_tab_becomes_one_space,
        b"POST / HTTP/1.1\r\nWebhook-Signature: v1,AAAA=  \r\n v1,BBBB=\r\n\t\tv1,CCCC=\r\nX: y\r\n\r\nbody",
        |r| {
            assert_eq!(r.header_str("webhook-signature"), Some("v1,AAAA= v1,BBBB= v1,CCCC="));
            assert_eq!(r.header_str("x"), Some("y"));
            assert_eq!(r.body(), b"body");
        }
    );

    #[test]
    fn field_syntax_rules_are_named() {
        let rule = |bytes: &[u8]| match parse(bytes) {
            Err(Error::Field { rule, .. }) => Some(rule),
            other => panic!("{other:?}"),
        };
        assert_eq!(rule(b"POST / HTTP/1.1\r\nno colon here\r\n\r\n"), Some(FieldRule::NoColon));
        assert_eq!(rule(b"POST / HTTP/1.1\r\nWebhook-Id : x\r\n\r\n"), Some(FieldRule::SpaceBeforeColon));
        assert_eq!(rule(b"POST / HTTP/1.1\r\nBad(Name): x\r\n\r\n"), Some(FieldRule::NameNotToken));
        assert_eq!(rule(b"POST / HTTP/1.1\r\nX: a\x00b\r\n\r\n"), Some(FieldRule::ControlInValue));
        assert_eq!(rule(b"POST / HTTP/1.1\r\nX: a\rb\r\n\r\n"), Some(FieldRule::ControlInValue));
        assert_eq!(
            rule(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            Some(FieldRule::ConflictingContentLength)
        );
        assert_eq!(rule(b"POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n"), Some(FieldRule::ConflictingContentLength));
        assert_eq!(rule(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), Some(FieldRule::BadContentLength));
        assert!(parse(b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n").is_ok());
        let message = Error::Field { line: 2, rule: FieldRule::SpaceBeforeColon }.to_string();
        assert_eq!(message, "field line 2: whitespace between the field name and the colon (RFC 9112 §5.1)");
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(HttpRequest::from_hex("zz", 10).unwrap_err(), Error::Hex);
        assert_eq!(HttpRequest::from_hex("abc", 10).unwrap_err(), Error::Hex);
        assert_eq!(parse(b"POST / HTTP/1.1\r\nA: b").unwrap_err(), Error::NoHead);
        assert!(matches!(parse(b"no head here\r\n\r\n"), Err(Error::Head(_))));
        assert!(matches!(parse(b"\x00\x01 / HTTP/1.1\r\n\r\n"), Err(Error::Head(_))));
        let many = format!("POST / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(200));
        assert_eq!(parse(many.as_bytes()).unwrap_err(), Error::Head("more than 128 header lines"));
        let huge = format!("POST / HTTP/1.1\r\nA: {}\r\n\r\n", "b".repeat(MAX_HEAD_BYTES));
        assert_eq!(HttpRequest::from_hex(&hex::encode(huge), 10).unwrap_err(), Error::HeadTooLarge);
    }

    #[test]
    fn an_oversized_body_is_refused_before_it_is_decoded() {
        let head = hex::encode(b"POST / HTTP/1.1\r\nA: b\r\n\r\n");
        // Not even hex after the head: refused on length alone.
        let text = format!("{head}{}", "zz".repeat(101));
        assert_eq!(HttpRequest::from_hex(&text, 100).unwrap_err(), Error::BodyTooLarge { bytes: 101, limit: 100 });
        assert_eq!(HttpRequest::from_hex(&format!("{head}{}", "7a".repeat(100)), 100).unwrap().body().len(), 100);
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
