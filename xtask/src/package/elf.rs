//! A look at a binary's ELF header before it goes into the package, so that a swapped
//! `--amd64`/`--arm64`, a macOS build or a glibc-linked build fails here rather than at the
//! daemon. Only the fields that decide that are read: class, byte order, machine, and whether a
//! program header asks for a dynamic loader (`PT_INTERP`). Static and static-pie musl builds have
//! none. No IO here.

use std::fmt;

use crate::error::{Error, Result};

/// The two architectures the package ships (`meta.arch` in the manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    pub(crate) const ALL: [Arch; 2] = [Arch::Amd64, Arch::Arm64];

    /// The name the manifest, the binary's file name and the shim use.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    fn machine(self) -> u16 {
        match self {
            Arch::Amd64 => EM_X86_64,
            Arch::Arm64 => EM_AARCH64,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

use dify_plugin::package::{EM_AARCH64, EM_X86_64, Elf};

#[cfg(test)]
const HEADER_LEN: usize = 64;
#[cfg(test)]
const PT_INTERP: u32 = 3;

/// Checks that `bytes` is a 64-bit little-endian ELF executable for `arch` that needs no dynamic
/// loader. The error names the binary as `binary` ("the amd64 binary", a path) and says what is
/// wrong, in words meant for the person running `package`.
pub(crate) fn check_static(binary: &str, arch: Arch, bytes: &[u8]) -> Result<()> {
    match problem(arch, bytes) {
        None => Ok(()),
        Some(problem) => Err(Error::Binary { binary: binary.to_owned(), problem }),
    }
}

/// What keeps `bytes` from being a static ELF executable for `arch`, if anything (the header is
/// read by `dify_plugin::package::Elf`, which every plugin's packaging shares).
fn problem(arch: Arch, bytes: &[u8]) -> Option<String> {
    let elf = match Elf::read(bytes) {
        Ok(elf) => elf,
        Err("is not an ELF executable") => {
            return Some("is not an ELF executable (build it with cargo xtask build-static)".to_owned());
        }
        Err(problem) => return Some(problem.to_owned()),
    };
    if elf.machine != arch.machine() {
        let found = match elf.machine {
            EM_X86_64 => "amd64 (x86_64)".to_owned(),
            EM_AARCH64 => "arm64 (aarch64)".to_owned(),
            other => format!("ELF machine {other}"),
        };
        return Some(format!("is built for {found}, not {arch}"));
    }
    if elf.dynamic {
        return Some(
            "is dynamically linked (it asks for an ELF interpreter); the package needs a static musl \
             build: run cargo xtask build-static"
                .to_owned(),
        );
    }
    None
}

/// A minimal ELF file with the given machine (62 x86_64, 183 aarch64) and program header types
/// (3 is `PT_INTERP`), which `package` takes in place of a real binary. For tests, here and in
/// `tests/it/package.rs`.
#[doc(hidden)]
#[cfg(test)]
pub(crate) fn fake_elf(machine: u16, program_headers: &[u32]) -> Vec<u8> {
    const ENTRY_LEN: u16 = 56;
    let mut bytes = vec![0u8; HEADER_LEN];
    bytes[..4].copy_from_slice(b"\x7fELF");
    bytes[4] = 2;
    bytes[5] = 1;
    bytes[18..20].copy_from_slice(&machine.to_le_bytes());
    bytes[32..40].copy_from_slice(&(HEADER_LEN as u64).to_le_bytes());
    bytes[54..56].copy_from_slice(&ENTRY_LEN.to_le_bytes());
    bytes[56..58].copy_from_slice(&(program_headers.len() as u16).to_le_bytes());
    for kind in program_headers {
        let mut entry = vec![0u8; usize::from(ENTRY_LEN)];
        entry[..4].copy_from_slice(&kind.to_le_bytes());
        bytes.extend(entry);
    }
    bytes
}

/// The declaration digest a binary embeds in its `--version` text (`declarations sha256:<64 hex>`),
/// readable without running it (the arm64 binary may not run here).
pub(crate) fn declaration_digest(bytes: &[u8]) -> Option<String> {
    const MARKER: &[u8] = b"declarations sha256:";
    let at = bytes.windows(MARKER.len()).position(|window| window == MARKER)? + MARKER.len();
    let digest = bytes.get(at..at + 64)?;
    digest.iter().all(|b| b.is_ascii_hexdigit()).then(|| String::from_utf8_lossy(digest).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PT_LOAD: u32 = 1;

    #[track_caller]
    fn check(arch: Arch, bytes: &[u8], expect: std::result::Result<(), &str>) {
        let got = check_static("the binary", arch, bytes);
        match expect {
            Ok(()) => assert!(got.is_ok(), "{got:?}"),
            Err(fragment) => {
                let message = got.expect_err("should be refused").to_string();
                assert!(message.starts_with("the binary "), "{message:?}");
                assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
            }
        }
    }

    #[test]
    fn static_binaries_of_the_right_arch_pass() {
        check(Arch::Amd64, &fake_elf(EM_X86_64, &[PT_LOAD, PT_LOAD]), Ok(()));
        check(Arch::Arm64, &fake_elf(EM_AARCH64, &[PT_LOAD]), Ok(()));
        check(Arch::Arm64, &fake_elf(EM_AARCH64, &[]), Ok(()));
    }

    #[test]
    fn wrong_or_dynamic_binaries_are_refused() {
        check(Arch::Arm64, &fake_elf(EM_X86_64, &[PT_LOAD]), Err("built for amd64 (x86_64), not arm64"));
        check(Arch::Amd64, &fake_elf(EM_AARCH64, &[PT_LOAD]), Err("built for arm64 (aarch64), not amd64"));
        check(Arch::Amd64, &fake_elf(40, &[]), Err("ELF machine 40"));
        check(Arch::Amd64, &fake_elf(EM_X86_64, &[PT_LOAD, PT_INTERP]), Err("dynamically linked"));
        check(Arch::Amd64, b"#!/bin/sh\necho not a binary\n", Err("not an ELF"));
        let mut big_endian = fake_elf(EM_X86_64, &[]);
        big_endian[5] = 2;
        check(Arch::Amd64, &big_endian, Err("64-bit little-endian"));
        let mut truncated = fake_elf(EM_X86_64, &[PT_LOAD]);
        truncated.truncate(HEADER_LEN + 2);
        check(Arch::Amd64, &truncated, Err("truncated program header"));
    }

    /// The binary running these tests is a real ELF file; on a build host it is normally
    /// dynamically linked (gnu target), which the check must notice.
    #[test]
    fn the_test_binary_itself_is_recognised() {
        let bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let arch = if cfg!(target_arch = "aarch64") { Arch::Arm64 } else { Arch::Amd64 };
        let result = check_static("the test binary", arch, &bytes);
        if cfg!(all(target_env = "gnu", not(target_feature = "crt-static"))) {
            assert!(result.unwrap_err().to_string().contains("dynamically linked"));
        } else {
            assert!(result.is_ok(), "{result:?}");
        }
    }
}
