//! `cargo xtask package`: the self-contained (offline) package, the static binaries inside, written
//! and smoke-tested the way the daemon runs it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::console::say;
use crate::error::{AtPath, Result};
use crate::{package, paths, smoke, static_build};

/// Which binaries go into the self-contained package.
pub(crate) enum Binaries {
    /// Build them now (`cargo xtask build-static`).
    Build,
    /// The ones an earlier build-static left in dist/bin.
    Built,
    /// These files: (amd64, arm64).
    Given(PathBuf, PathBuf),
}

/// `cargo xtask package`.
pub(crate) fn package_command(binaries: Binaries, out: Option<&Path>, smoke: bool) -> Result<ExitCode> {
    let binaries = match binaries {
        Binaries::Build => static_build::build_static()?.binaries,
        Binaries::Built => static_build::built_binaries()?,
        Binaries::Given(amd64, arm64) => (std::fs::read(&amd64).at(&amd64)?, std::fs::read(&arm64).at(&arm64)?),
    };
    let files = package::archive::plugin_files(&paths::plugin_dir())?;
    let package = package::build(&files, Some(binaries))?;
    let out = match out {
        Some(out) => out.to_owned(),
        None => paths::dist_dir().join(format!("{}.difypkg", package.identity.file_stem())),
    };
    package::write_package(&out, &package)?;
    if smoke {
        smoke::extracted_package(&out)?;
    }
    say(&package.unique_identifier());
    Ok(ExitCode::SUCCESS)
}
