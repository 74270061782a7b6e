//! The binary as Python platform wheels, built with maturin's `bin` bindings
//! (`packaging/pypi/pyproject.toml`): one wheel per architecture, each holding only the static musl
//! binary as `<name>-<version>.data/scripts/openai-trigger`, tagged both manylinux2014 and
//! musllinux_1_2 (one static binary serves both C libraries), so pip/uv install it into a venv's
//! `bin/` on any Linux x86_64 or aarch64.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd::{self, run};
use crate::console::say;
use crate::error::{AtPath, Error, Result};
use crate::package::{self, Arch};
use crate::paths;

/// The PyPI distribution name (packaging/pypi/pyproject.toml).
pub(crate) const DIST_NAME: &str = "hookwright-openai-trigger";
/// maturin, pinned; installed with its `zig` extra into a private venv.
const MATURIN: &str = "maturin[zig]==1.16.0";

/// One built wheel and the binary inside it.
pub(crate) struct Wheel {
    pub(crate) path: PathBuf,
    pub(crate) arch: Arch,
    pub(crate) binary: Vec<u8>,
}

/// The wheel's file-name prefix: the distribution name with `-` → `_` (PEP 427).
pub(crate) fn file_prefix(version: &str) -> String {
    format!("{}-{version}-", DIST_NAME.replace('-', "_"))
}

/// maturin's private venv.
fn venv() -> PathBuf {
    paths::tools_dir().join("venv")
}

/// maturin from a private venv, installed (from PyPI) when missing or of another version.
fn maturin() -> Result<PathBuf> {
    let venv = venv();
    let maturin = venv.join("bin/maturin");
    let wanted = MATURIN.rsplit("==").next().unwrap_or_default();
    let installed = Command::new(&maturin).arg("--version").output().ok().filter(|o| o.status.success());
    // The `zig` extra (the `ziglang` package) belongs to the check: a venv with maturin alone cannot
    // cross-link the musl binaries.
    let has_zig =
        || Command::new(venv.join("bin/python")).args(["-c", "import ziglang"]).status().is_ok_and(|s| s.success());
    if installed.is_some_and(|o| String::from_utf8_lossy(&o.stdout).contains(wanted)) && has_zig() {
        return Ok(maturin);
    }
    say(&format!("==> installing {MATURIN} into {}", venv.display()));
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(venv.join("bin/python")).args(["-m", "pip", "install", "--quiet", MATURIN]))?;
    Ok(maturin)
}

/// `PATH` with the directory holding `maturin` (its venv's `bin`) first.
fn venv_path() -> Result<std::ffi::OsString> {
    let bin = venv().join("bin");
    let rest = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(&rest)))
        .map_err(|source| Error::SearchPath { dir: bin, source })
}

/// Builds both wheels into `out` and returns them with their binaries.
pub(crate) fn build(out: &Path, version: &str) -> Result<Vec<Wheel>> {
    install_targets()?;
    let maturin = maturin()?;
    std::fs::create_dir_all(out).at(out)?;
    let project = paths::workspace_root().join("packaging/pypi");
    let mut wheels = Vec::new();
    for arch in Arch::ALL {
        for stale in wheel_files(out, version, arch)? {
            std::fs::remove_file(&stale).at(&stale)?;
        }
        say(&format!("==> maturin build --release --target {} --zig (wheel for {arch})", target(arch)));
        // maturin finds zig through cargo-zigbuild, which runs `python3 -m ziglang` from PATH (or a `zig`
        // on PATH): the venv's `bin` first, so it is the venv's Python with the `ziglang` package that
        // the `zig` extra installed, never whatever a machine happens to have installed globally.
        run(cmd::clean_env(&mut Command::new(&maturin))
            .env("PATH", venv_path()?)
            .current_dir(&project)
            .args(["build", "--release", "--locked", "--zig", "--target", target(arch)])
            .args(["--compatibility", "pypi", "manylinux2014", "musllinux_1_2"])
            .arg("--out")
            .arg(out))?;
        let found = wheel_files(out, version, arch)?;
        let [path] = found.as_slice() else {
            return Err(Error::WheelCount { arch: arch.as_str(), dir: out.to_owned(), found });
        };
        let binary = binary_in(path, version)?;
        wheels.push(Wheel { path: path.clone(), arch, binary });
    }
    Ok(wheels)
}

fn arch_suffix(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "x86_64.whl",
        Arch::Arm64 => "aarch64.whl",
    }
}

fn wheel_files(dir: &Path, version: &str, arch: Arch) -> Result<Vec<PathBuf>> {
    let prefix = file_prefix(version);
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let path = entry.at(dir)?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with(&prefix) && name.ends_with(arch_suffix(arch)) {
            found.push(path);
        }
    }
    Ok(found)
}

/// The executable inside a wheel (`<dist>-<version>.data/scripts/openai-trigger`).
pub(crate) fn binary_in(wheel: &Path, version: &str) -> Result<Vec<u8>> {
    let (entries, _) = package::archive::read(&std::fs::read(wheel).at(wheel)?)?;
    let wanted = format!("{}-{version}.data/scripts/openai-trigger", DIST_NAME.replace('-', "_"));
    match entries.into_iter().find(|entry| entry.name == wanted) {
        Some(entry) => Ok(entry.data),
        None => Err(Error::NotInWheel { wheel: wheel.to_owned(), entry: wanted }),
    }
}

/// The Rust target triple of `arch`.
pub(crate) fn target(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "x86_64-unknown-linux-musl",
        Arch::Arm64 => "aarch64-unknown-linux-musl",
    }
}

/// The two musl targets, through rustup, when missing.
pub(crate) fn install_targets() -> Result<()> {
    let listed = cmd::output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    let installed = String::from_utf8_lossy(&listed.stdout).into_owned();
    for arch in Arch::ALL {
        if !installed.lines().any(|line| line.trim() == target(arch)) {
            say(&format!("==> rustup target add {}", target(arch)));
            run(Command::new("rustup").args(["target", "add", target(arch)]))?;
        }
    }
    Ok(())
}
