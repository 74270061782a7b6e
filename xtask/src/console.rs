//! xtask's output for the person running it.

/// One line of output for the person running the command.
#[expect(clippy::disallowed_methods, reason = "xtask's report to the person running it")]
pub(crate) fn say(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}
