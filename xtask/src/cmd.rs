//! Running the tools a release needs (cargo, rustup, pip, maturin, apt-get).

use std::io;
use std::process::Command;

/// Runs `command` with inherited output; a non-zero exit is an error naming it.
pub(crate) fn run(command: &mut Command) -> io::Result<()> {
    let status = command.status().map_err(|err| io::Error::new(err.kind(), format!("{command:?}: {err}")))?;
    if status.success() { Ok(()) } else { Err(io::Error::other(format!("{command:?} failed: {status}"))) }
}
