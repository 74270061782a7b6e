//! The stdin side of the runtime: newline framing (a small cap, so oversized lines are exercised)
//! and the classification of every line into request / backwards answer / refusal / ignore. No input
//! may panic; a request's action and data must be readable.
#![no_main]

use dify_plugin::framing::{Frame, read_frame};
use dify_plugin::inbound::{Inbound, classify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    runtime.block_on(async {
        let mut reader = tokio::io::BufReader::with_capacity(64, data);
        loop {
            match read_frame(&mut reader, 4096).await {
                Ok(Frame::Line(line)) => {
                    if let Inbound::Request { request, .. } = classify(line) {
                        let _ = request.action();
                        let _ = request.parse::<serde_json::Value>();
                    }
                }
                Ok(Frame::Oversized(_)) => {}
                Ok(Frame::Eof) | Err(_) => break,
            }
        }
    });
});
