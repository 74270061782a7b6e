#![allow(clippy::print_stdout, reason = "a test tool that announces its address on stdout")]

//! Runs the mock OpenAI API on 127.0.0.1 until stdin closes (or the process is killed).
//!
//! Usage: `openai-mock [PORT]` (0 or none: a free port). The first stdout line is the base URL,
//! `http://127.0.0.1:<port>/v1`; the admin routes are under `http://127.0.0.1:<port>/_mock/`.

use std::io::Read;

fn main() -> std::io::Result<()> {
    let port = match std::env::args().nth(1) {
        None => 0,
        Some(text) => text.parse::<u16>().map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("port must be 0-65535, not {text:?}"))
        })?,
    };
    let mock = openai_mock::MockOpenAi::start_on(port)?;
    println!("{}", mock.base_url());
    // Serve until whoever started us closes our stdin.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    Ok(())
}
