//! Output for people: the human commands (`demo`, `dev`, `send`) print here. It is the only writer
//! to stdout besides the runtime's protocol writer, and it refuses to write once this process
//! serves the protocol on stdout (`dify_plugin::stdio::is_serving`), so it can never corrupt it.

use std::io::Write;

/// Writes one line of human output to stdout. A no-op (logged) while the protocol owns stdout.
#[expect(clippy::disallowed_methods, reason = "the human commands' output; guarded against the protocol")]
pub fn say(text: &str) {
    if dify_plugin::stdio::is_serving() {
        tracing::error!("refused to print to stdout while serving the protocol on it");
        return;
    }
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
}
