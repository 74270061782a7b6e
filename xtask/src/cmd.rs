//! Running the tools a release needs (cargo, rustup, pip, maturin, apt-get), with errors that name
//! the command.

use std::process::{Child, Command, Output};

use crate::error::{Error, Result};

/// The command line as errors show it.
pub(crate) fn describe(command: &Command) -> String {
    format!("{command:?}")
}

/// Runs `command` with inherited output; a non-zero exit is an error naming it.
pub(crate) fn run(command: &mut Command) -> Result<()> {
    let status = command.status().map_err(|source| Error::Start { command: describe(command), source })?;
    if status.success() { Ok(()) } else { Err(Error::Failed { command: describe(command), status }) }
}

/// Runs `command` and collects its output, whatever its exit status.
pub(crate) fn output(command: &mut Command) -> Result<Output> {
    command.output().map_err(|source| Error::Start { command: describe(command), source })
}

/// Starts `command`.
pub(crate) fn spawn(command: &mut Command) -> Result<Child> {
    command.spawn().map_err(|source| Error::Start { command: describe(command), source })
}

/// `cargo`, for a build nested in `cargo xtask`, in a [`clean_env`].
pub(crate) fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    clean_env(&mut command);
    command
}

/// Removes the variables `cargo run` set for xtask itself from a command that runs cargo (cargo,
/// maturin). Build scripts track some of them (ring's tracks `CARGO_MANIFEST_DIR`), so inheriting
/// them would rebuild the TLS stack on every switch between `cargo build` and `cargo xtask`.
pub(crate) fn clean_env(command: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("CARGO_PKG_")
            || matches!(
                name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            )
        {
            command.env_remove(name);
        }
    }
    command
}
