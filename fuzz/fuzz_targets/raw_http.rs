//! The raw HTTP/1.1 request parser, from bytes and from hex (with a small body cap, so the early
//! 413 path is exercised). No input may panic; a parsed request's parts must be consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use dify_plugin::raw_http::HttpRequest;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = HttpRequest::parse(data.to_vec()) {
        assert!(request.body().len() <= data.len());
        for name in ["webhook-id", "webhook-signature", "content-length"] {
            let _ = request.header_values(name).count();
            let _ = request.header_str(name);
        }
    }
    let _ = HttpRequest::from_hex(&hex::encode(data), 256);
    let _ = HttpRequest::from_hex(&String::from_utf8_lossy(data), 256);
});
