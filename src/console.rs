//! Output for people: the human commands (`demo`, `dev`, `send`) print here. It is the only writer
//! to stdout besides the runtime's protocol writer, and it refuses to write once this process
//! serves the protocol on stdout (`dify_plugin::stdio::is_serving`), so it can never corrupt it.

use std::io::Write;

/// Writes one line of human output to stdout. A no-op (logged) while the protocol owns stdout.
#[expect(clippy::disallowed_methods, reason = "the human commands' output; guarded against the protocol")]
pub(crate) fn say(text: &str) {
    if dify_plugin::stdio::is_serving() {
        tracing::error!("refused to print to stdout while serving the protocol on it");
        return;
    }
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
}

/// The width lines for people are fitted to: `COLUMNS` when set (shells export it), else the
/// terminal's width when stdout is one, else 80; at least 60, at most 400.
pub(crate) fn output_width() -> usize {
    let from_env = std::env::var("COLUMNS").ok().and_then(|c| c.trim().parse::<usize>().ok());
    // terminal_size() asks stdout's terminal and answers None for a pipe or a file.
    let from_terminal = || terminal_size::terminal_size().map(|(width, _)| usize::from(width.0));
    from_env.or_else(from_terminal).unwrap_or(80).clamp(60, 400)
}

/// `line` cut to `width` characters, with `…` where it was cut.
pub(crate) fn fit(line: &str, width: usize) -> String {
    if line.chars().count() <= width {
        return line.to_owned();
    }
    format!("{}…", dify_plugin::wire::truncate(line, width.saturating_sub(1)))
}
