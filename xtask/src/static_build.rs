//! The two static Linux binaries, built once, as wheels (`wheels.rs`, maturin with zig as C
//! toolchain and linker: no cross gcc or musl-gcc needed), and copied out of them for the
//! self-contained package:
//!   dist/bin/openai-trigger-linux-amd64   x86_64-unknown-linux-musl
//!   dist/bin/openai-trigger-linux-arm64   aarch64-unknown-linux-musl
//! Installs what is missing: the rustup targets, maturin (PyPI, with zig), and qemu-user-static
//! (Debian) to run the foreign one. Each binary must be a static ELF for its architecture and answer
//! a real serve session before it is accepted.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd::run;
use crate::console::say;
use crate::error::{AtPath, Result};
use crate::package::elf::{self, Arch};
use crate::{paths, smoke, wheels};

/// Where the binary for `arch` is left.
pub(crate) fn binary_path(arch: Arch) -> PathBuf {
    paths::dist_dir().join("bin").join(format!("openai-trigger-linux-{arch}"))
}

/// The binaries of an earlier build: (amd64, arm64).
pub(crate) fn built_binaries() -> Result<(Vec<u8>, Vec<u8>)> {
    let read = |arch| {
        let path = binary_path(arch);
        std::fs::read(&path).at(&path)
    };
    Ok((read(Arch::Amd64)?, read(Arch::Arm64)?))
}

/// What [`build_static`] made.
pub(crate) struct Built {
    /// (amd64, arm64).
    pub(crate) binaries: (Vec<u8>, Vec<u8>),
    pub(crate) wheels: Vec<wheels::Wheel>,
}

/// Builds the wheels, copies their binaries to dist/bin, checks and smoke-tests both.
pub(crate) fn build_static() -> Result<Built> {
    let wheels = wheels::build(&paths::dist_dir().join("wheels"), openai_trigger::cli::VERSION_NUMBER)?;
    let bin = paths::dist_dir().join("bin");
    std::fs::create_dir_all(&bin).at(&bin)?;
    for wheel in &wheels {
        write_executable(&binary_path(wheel.arch), &wheel.binary)?;
    }
    let (amd64, arm64) = built_binaries()?;
    install_qemu()?;
    for (arch, bytes) in [(Arch::Amd64, &amd64), (Arch::Arm64, &arm64)] {
        check_binary(arch, bytes)?;
    }
    Ok(Built { binaries: (amd64, arm64), wheels })
}

/// Writes `bytes` to `path` with mode 0755. `fs::write` alone keeps the mode of a file that was
/// already there, so a first build on a clean clone would leave 0644 and fail to run.
fn write_executable(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, bytes).at(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).at(path)
}

/// A static ELF for `arch` that answers a serve session (natively or under qemu-user).
pub(crate) fn check_binary(arch: Arch, bytes: &[u8]) -> Result<()> {
    let path = binary_path(arch);
    elf::check_static(&path.display().to_string(), arch, bytes)?;
    let runner = if arch == native_arch() { None } else { Some(qemu(arch)) };
    say(&format!("==> serve session: {}{}", runner.map(|q| format!("{q} ")).unwrap_or_default(), path.display()));
    let mut command = match runner {
        Some(qemu) => {
            let mut command = tokio::process::Command::new(qemu);
            command.arg(&path);
            command
        }
        None => tokio::process::Command::new(&path),
    };
    command.arg("serve");
    smoke::one_session(command)?;
    say(&format!("{:<44} {:>10} bytes, static {arch}", path.display(), bytes.len()));
    Ok(())
}

fn native_arch() -> Arch {
    if cfg!(target_arch = "aarch64") { Arch::Arm64 } else { Arch::Amd64 }
}

fn qemu(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "qemu-x86_64-static",
        Arch::Arm64 => "qemu-aarch64-static",
    }
}

fn install_qemu() -> Result<()> {
    let foreign = qemu(if native_arch() == Arch::Amd64 { Arch::Arm64 } else { Arch::Amd64 });
    if Command::new(foreign).arg("--version").output().is_err() {
        say("==> apt-get install qemu-user-static (to run the foreign binary)");
        run(Command::new("apt-get").args(["update", "-q"]))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends", "qemu-user-static"])
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    /// The binaries must be executable on a clean clone, where dist/bin does not exist yet (the
    /// CI failure of 2026-11-29: `fs::write` made them 0644 and the serve session could not start).
    #[test]
    fn a_new_binary_is_written_executable_and_an_old_one_made_so() {
        let dir = std::env::temp_dir().join(format!("ot-xtask-exec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("openai-trigger-linux-amd64");
        let _ = std::fs::remove_file(&path);
        super::write_executable(&path, b"\x7fELF").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o755);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        super::write_executable(&path, b"\x7fELF again").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o755);
        assert_eq!(std::fs::read(&path).unwrap(), b"\x7fELF again");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
