/*!
The `.difypkg` of any plugin on this crate (feature `package`; daemon-protocol.md §8): the plugin
directory's declarations checked by [`crate::build`]'s rules, its assets and docs, a `main.py`
launcher (the daemon runs every plugin as `python -m main`; [`launcher`] execs the bundled native
binary), the binaries as `bin/<binary>-linux-<arch>`, zipped the way the daemon reads packages (file
entries only, deflated, fixed timestamps: the same inputs give the same bytes), with the daemon's
checksum and unique identifier.

[`bundle`] does it all from a directory; `cargo run -p dify-plugin --features package --bin
dify-plugin-package -- <plugin dir> --binary amd64=<path> --out <file>` is the same as a command.
[`crate::sign`] signs a package for daemons that verify signatures (`--sign <key.pem>`).
*/

use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

use crate::build::{self, BuildError};

/// The daemon's default `MAX_PLUGIN_PACKAGE_SIZE`, which bounds the sum of uncompressed sizes.
pub const MAX_UNCOMPRESSED_SIZE: u64 = 50 * 1024 * 1024;

/// Architectures the daemon's manifests name (`meta.arch`), as they appear in binary names.
pub const ARCHES: [&str; 2] = ["amd64", "arm64"];

/// Docs shipped when the plugin directory has them (the plugin page and its privacy policy).
const DOCS: [&str; 2] = ["README.md", "PRIVACY.md"];

/// Why a package could not be built or read. Each names the file, entry or field.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("{file}: {source}")]
    Io { file: PathBuf, source: std::io::Error },
    #[error("zip: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("the package would hold {total} bytes uncompressed, over the daemon's limit of {limit} bytes")]
    TooLarge { total: u64, limit: u64 },
    #[error("manifest.yaml has no usable identity: {0}")]
    NoIdentity(String),
    #[error("manifest {field} {value:?} must be {rule}")]
    Identity { field: &'static str, value: String, rule: &'static str },
    #[error("package entry {name} {problem}")]
    Entry { name: String, problem: &'static str },
    #[error("the package has no {0}")]
    MissingEntry(&'static str),
    #[error("arch {0:?} is not one of amd64, arm64")]
    Arch(String),
    /// A binary that cannot run on the architecture it is packaged for.
    #[error("the {arch} binary {problem}")]
    Binary { arch: String, problem: String },
    /// RSA key generation or encoding.
    #[error("key: {0}")]
    Key(String),
    /// A PEM text that holds no key of the expected kind.
    #[error("key: expected {0}")]
    KeyFormat(&'static str),
    /// A package without a signature comment.
    #[error("the package is not signed (its zip comment holds no signature)")]
    Unsigned,
    /// A signature that does not verify with the key.
    #[error("the signature does not match this key and these contents")]
    BadSignature,
}

/// One file of the package: its path inside the zip (`/`-separated) and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub data: Vec<u8>,
}

impl Entry {
    pub fn new(name: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        Entry { name: name.into(), data: data.into() }
    }
}

/// The daemon's package checksum (daemon-protocol.md §8.2):
/// `hex(sha256(concat over names sorted bytewise of sha256(name) ‖ sha256(content)))`.
pub fn checksum(entries: &[Entry]) -> String {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    let mut outer = Sha256::new();
    for entry in sorted {
        outer.update(Sha256::digest(entry.name.as_bytes()));
        outer.update(Sha256::digest(&entry.data));
    }
    hex::encode(outer.finalize())
}

/// `author/name:version` from a manifest, checked against the rules the daemon applies at upload
/// (daemon-protocol.md §8.2, §8.4), so a bad identifier fails at packaging time.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Identity {
    pub author: String,
    pub name: String,
    pub version: String,
}

impl Identity {
    /// Reads and checks the identity of `manifest.yaml`'s text.
    ///
    /// Errors: [`PackageError::NoIdentity`] (not YAML, or a field missing), [`PackageError::Identity`].
    pub fn from_manifest(yaml: &str) -> Result<Self, PackageError> {
        let identity: Identity = serde_yaml::from_str(yaml).map_err(|err| PackageError::NoIdentity(err.to_string()))?;
        let refuse = |field, value: &str, rule| Err(PackageError::Identity { field, value: value.to_owned(), rule });
        if !is_identifier(&identity.author, 64) {
            return refuse("author", &identity.author, "1-64 of a-z 0-9 _ -");
        }
        if !is_identifier(&identity.name, 128) {
            return refuse("name", &identity.name, "1-128 of a-z 0-9 _ -");
        }
        if !is_version(&identity.version) {
            return refuse("version", &identity.version, "a version like 1.2.3 or 1.2.3-beta");
        }
        Ok(identity)
    }

    /// `author/name:version@checksum`, the daemon's plugin unique identifier.
    pub fn unique_identifier(&self, checksum: &str) -> String {
        format!("{}/{}:{}@{checksum}", self.author, self.name, self.version)
    }

    /// `name-version`, the conventional package file stem.
    pub fn file_stem(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }
}

fn is_identifier(text: &str, max: usize) -> bool {
    (1..=max).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// `^\d{1,4}(\.\d{1,4}){2}(-\w{1,16})?$`, the packager's rule (stricter than the upload regex).
fn is_version(text: &str) -> bool {
    let (numbers, suffix) = match text.split_once('-') {
        Some((numbers, suffix)) => (numbers, Some(suffix)),
        None => (text, None),
    };
    let parts: Vec<&str> = numbers.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|part| (1..=4).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit()))
        && suffix.is_none_or(|suffix| {
            (1..=16).contains(&suffix.len()) && suffix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

/// The sum the daemon compares with its size limit.
pub fn uncompressed_size(entries: &[Entry]) -> u64 {
    entries.iter().map(|entry| entry.data.len() as u64).sum()
}

fn check_size(total: u64) -> Result<(), PackageError> {
    if total > MAX_UNCOMPRESSED_SIZE {
        Err(PackageError::TooLarge { total, limit: MAX_UNCOMPRESSED_SIZE })
    } else {
        Ok(())
    }
}

/// Zips `entries` in order, with `comment` as the archive comment (where a signature goes).
///
/// Errors: over [`MAX_UNCOMPRESSED_SIZE`], or the zip writer's.
pub fn write(entries: &[Entry], comment: Option<&str>) -> Result<Vec<u8>, PackageError> {
    check_size(uncompressed_size(entries))?;
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for entry in entries {
        // Mode bits are ignored by the daemon (it extracts 0644) but kept for people who unzip.
        let mode = if entry.name.starts_with("bin/") { 0o755 } else { 0o644 };
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .last_modified_time(DateTime::default())
            .unix_permissions(mode);
        zip.start_file(entry.name.as_str(), options)?;
        zip.write_all(&entry.data).map_err(zip::result::ZipError::Io)?;
    }
    if let Some(comment) = comment {
        zip.set_comment(comment);
    }
    Ok(zip.finish()?.into_inner())
}

/// Reads every entry in central-directory order (the order the daemon's verifier hashes them
/// in), and the archive comment. Refuses what the daemon would refuse: directory entries, paths
/// that leave the package, more than the size limit.
///
/// Errors: not a zip, or one of those.
pub fn read(bytes: &[u8]) -> Result<(Vec<Entry>, String), PackageError> {
    let mut zip = ZipArchive::new(Cursor::new(bytes))?;
    let comment = String::from_utf8_lossy(zip.comment()).into_owned();
    let mut entries = Vec::with_capacity(zip.len());
    let mut total = 0u64;
    for index in 0..zip.len() {
        let mut file = zip.by_index(index)?;
        let name = file.name().to_owned();
        if file.is_dir() {
            return Err(PackageError::Entry { name, problem: "is a directory entry, which the daemon cannot read" });
        }
        if file.enclosed_name().is_none() {
            return Err(PackageError::Entry { name, problem: "points outside the package" });
        }
        total += file.size();
        check_size(total)?;
        let mut data = Vec::with_capacity(usize::try_from(file.size()).unwrap_or(0));
        file.read_to_end(&mut data).map_err(zip::result::ZipError::Io)?;
        entries.push(Entry { name, data });
    }
    Ok((entries, comment))
}

/// Each entry's Unix mode bits (0 when the zip records none), in central-directory order.
///
/// Errors: not a zip.
pub fn modes(bytes: &[u8]) -> Result<Vec<(String, u32)>, PackageError> {
    let mut zip = ZipArchive::new(Cursor::new(bytes))?;
    (0..zip.len())
        .map(|i| zip.by_index(i).map(|f| (f.name().to_owned(), f.unix_mode().unwrap_or(0))).map_err(PackageError::from))
        .collect()
}

/// ELF `e_machine` of x86-64 (amd64).
pub const EM_X86_64: u16 = 62;
/// ELF `e_machine` of AArch64 (arm64).
pub const EM_AARCH64: u16 = 183;
const PT_INTERP: u32 = 3;
const ELF_HEADER_LEN: usize = 64;

/// What a binary's ELF header says: its machine, and whether a program header asks for a dynamic
/// loader (`PT_INTERP`; static and static-pie musl builds have none). Only those fields are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elf {
    pub machine: u16,
    pub dynamic: bool,
}

impl Elf {
    /// Reads the header of a 64-bit little-endian ELF file.
    ///
    /// Errors: what it is not, in words for the person packaging ("is not an ELF executable", …).
    pub fn read(bytes: &[u8]) -> Result<Elf, &'static str> {
        if bytes.len() < ELF_HEADER_LEN || &bytes[..4] != b"\x7fELF" {
            return Err("is not an ELF executable");
        }
        if bytes[4] != 2 || bytes[5] != 1 {
            return Err("is not a 64-bit little-endian ELF executable");
        }
        let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        let mut u64_bytes = [0u8; 8];
        u64_bytes.copy_from_slice(&bytes[32..40]);
        let table = u64::from_le_bytes(u64_bytes);
        let (entry_len, count) = (u64::from(u16_at(54)), u64::from(u16_at(56)));
        let mut dynamic = false;
        for index in 0..count {
            let offset = table.checked_add(index * entry_len).and_then(|at| usize::try_from(at).ok());
            let Some(offset) = offset.filter(|&at| at.checked_add(4).is_some_and(|end| end <= bytes.len())) else {
                return Err("has a truncated program header table");
            };
            let kind = u32::from_le_bytes([bytes[offset], bytes[offset + 1], bytes[offset + 2], bytes[offset + 3]]);
            dynamic |= kind == PT_INTERP;
        }
        Ok(Elf { machine: u16_at(18), dynamic })
    }
}

/// The ELF machine of an architecture name of the manifest (`amd64`, `arm64`).
pub fn arch_machine(arch: &str) -> Option<u16> {
    match arch {
        "amd64" => Some(EM_X86_64),
        "arm64" => Some(EM_AARCH64),
        _ => None,
    }
}

/// `bin/<binary>-linux-<arch>`: where the package carries the binary for `arch` and [`launcher`]
/// looks for it.
pub fn binary_entry(binary: &str, arch: &str) -> String {
    format!("bin/{binary}-linux-{arch}")
}

/// The `main.py` the daemon runs (`python -m main`): it execs `bin/<binary>-linux-<arch>` for this
/// machine, restoring the exec bit the daemon's extraction drops, with a memory-file fallback for a
/// noexec package directory. Local and remote modes; serverless is refused with a clear message.
pub fn launcher(binary: &str) -> String {
    include_str!("../launcher/main.py").replace("@BINARY@", binary)
}

/// A built package, in memory.
#[derive(Debug, Clone)]
pub struct Package {
    /// The zip.
    pub bytes: Vec<u8>,
    pub identity: Identity,
    /// The daemon's checksum of the entries ([`checksum`]).
    pub checksum: String,
    /// Entry names, in order.
    pub names: Vec<String>,
    /// Bytes of all entries, uncompressed.
    pub uncompressed: u64,
    /// What is packaged but will not run everywhere the manifest says (a dynamically linked
    /// binary, an architecture of `meta.arch` without a binary).
    pub warnings: Vec<String>,
}

impl Package {
    /// Zips `entries` and describes the result.
    ///
    /// Errors: no `manifest.yaml` entry, a bad identity, too large.
    pub fn from_entries(entries: &[Entry]) -> Result<Self, PackageError> {
        let manifest =
            entries.iter().find(|e| e.name == "manifest.yaml").ok_or(PackageError::MissingEntry("manifest.yaml"))?;
        let identity = Identity::from_manifest(&String::from_utf8_lossy(&manifest.data))?;
        let bytes = write(entries, None)?;
        Ok(Package {
            bytes,
            identity,
            checksum: checksum(entries),
            names: entries.iter().map(|e| e.name.clone()).collect(),
            uncompressed: uncompressed_size(entries),
            warnings: Vec::new(),
        })
    }

    /// `author/name:version@checksum`.
    pub fn unique_identifier(&self) -> String {
        self.identity.unique_identifier(&self.checksum)
    }
}

/// The files of the plugin at `plugin_dir` that a package carries, checked by the daemon's rules
/// ([`build::load`]): `manifest.yaml`, every provider, tool, endpoint and event file it lists,
/// everything under `_assets/`, the docs present ([`DOCS`]), `requirements.txt` (an empty one when
/// there is none: the daemon installs it into the plugin's venv), and `main.py` (the directory's own,
/// else [`launcher`] for `binary`).
///
/// Errors: the declarations' problems, every one ([`BuildError`]), or a file that cannot be read.
pub fn plugin_files(plugin_dir: &Path, binary: &str) -> Result<Vec<Entry>, PackageError> {
    if binary.is_empty()
        || !binary.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        || binary.starts_with('.')
    {
        return Err(PackageError::Entry {
            name: binary.to_owned(),
            problem: "is not a binary name (a-z A-Z 0-9 _ - .)",
        });
    }
    let loaded = build::load(plugin_dir)?;
    let read = |path: &Path| std::fs::read(path).map_err(|source| PackageError::Io { file: path.to_owned(), source });
    let mut entries = Vec::new();
    for file in &loaded.files {
        let Ok(relative) = file.strip_prefix(plugin_dir) else {
            return Err(PackageError::Entry {
                name: file.display().to_string(),
                problem: "is outside the plugin directory",
            });
        };
        let name = relative.to_string_lossy().replace('\\', "/");
        if relative.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return Err(PackageError::Entry { name, problem: "points outside the plugin directory" });
        }
        if !entries.iter().any(|e: &Entry| e.name == name) {
            entries.push(Entry::new(name, read(file)?));
        }
    }
    for asset in &loaded.declaration.assets {
        entries.push(Entry::new(format!("_assets/{}", asset.name), asset.bytes.to_vec()));
    }
    for doc in DOCS {
        let path = plugin_dir.join(doc);
        if path.is_file() {
            entries.push(Entry::new(doc, read(&path)?));
        }
    }
    let requirements = plugin_dir.join("requirements.txt");
    let requirements = if requirements.is_file() {
        read(&requirements)?
    } else {
        b"# A native plugin: nothing to install. main.py runs the binary in bin/.\n".to_vec()
    };
    entries.push(Entry::new("requirements.txt", requirements));
    let main = plugin_dir.join("main.py");
    let main = if main.is_file() { read(&main)? } else { launcher(binary).into_bytes() };
    entries.push(Entry::new("main.py", main));
    Ok(entries)
}

/// The package of the plugin at `plugin_dir` with its native binaries: [`plugin_files`], then each
/// `(arch, bytes)` as [`binary_entry`]. The daemon runs what it finds; build the binaries for the
/// machines the manifest's `meta.arch` names (static musl builds run on any Linux).
///
/// Errors: an arch other than amd64/arm64, and those of [`plugin_files`] and [`Package::from_entries`].
pub fn bundle(plugin_dir: &Path, binary: &str, binaries: &[(&str, Vec<u8>)]) -> Result<Package, PackageError> {
    let mut entries = plugin_files(plugin_dir, binary)?;
    let mut warnings = Vec::new();
    for (arch, bytes) in binaries {
        let machine = arch_machine(arch).ok_or_else(|| PackageError::Arch((*arch).to_owned()))?;
        let refuse = |problem: String| PackageError::Binary { arch: (*arch).to_owned(), problem };
        let elf = Elf::read(bytes).map_err(|problem| refuse(problem.to_owned()))?;
        if elf.machine != machine {
            let found = match elf.machine {
                EM_X86_64 => "amd64 (x86_64)".to_owned(),
                EM_AARCH64 => "arm64 (aarch64)".to_owned(),
                other => format!("ELF machine {other}"),
            };
            return Err(refuse(format!("is built for {found}, not {arch}")));
        }
        if elf.dynamic {
            warnings.push(format!(
                "the {arch} binary is dynamically linked: it runs only where its libraries are (build for the *-linux-musl target to run anywhere)"
            ));
        }
        entries.push(Entry::new(binary_entry(binary, arch), bytes.clone()));
    }
    let mut package = Package::from_entries(&entries)?;
    let manifest = entries.iter().find(|e| e.name == "manifest.yaml").map(|e| e.data.as_slice()).unwrap_or_default();
    let declared: Vec<String> = serde_yaml::from_slice::<serde_json::Value>(manifest)
        .ok()
        .and_then(|m| m.pointer("/meta/arch").and_then(|a| a.as_array()).cloned())
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    for arch in declared.iter().filter(|a| !binaries.iter().any(|(b, _)| b == a)) {
        warnings.push(format!("manifest.yaml lists arch {arch} (meta.arch) but no {arch} binary is packaged"));
    }
    package.warnings = warnings;
    Ok(package)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, data: &[u8]) -> Entry {
        Entry::new(name, data.to_vec())
    }

    /// Expected values computed independently with Python's hashlib:
    /// `sha256(b"".join(sha256(k) + sha256(v) for k in sorted(entries))).hexdigest()`.
    #[test]
    fn checksum_matches_hand_computed_vectors() {
        assert_eq!(checksum(&[]), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        let entries = [entry("b/x.yaml", b"2"), entry("a.txt", b"1"), entry("B", b"")];
        assert_eq!(checksum(&entries), "1462526de6e82c5b19b249d4434ebf5b75b4670c72d4122df3312f2100e1b650");
    }

    #[test]
    fn checksum_ignores_entry_order_but_not_names_or_content() {
        let entries = [entry("b/x.yaml", b"2"), entry("a.txt", b"1"), entry("B", b"")];
        let reordered = [entries[2].clone(), entries[0].clone(), entries[1].clone()];
        assert_eq!(checksum(&entries), checksum(&reordered));
        let renamed = [entry("b/x.yml", b"2"), entry("a.txt", b"1"), entry("B", b"")];
        assert_ne!(checksum(&entries), checksum(&renamed));
        let changed = [entry("b/x.yaml", b"3"), entry("a.txt", b"1"), entry("B", b"")];
        assert_ne!(checksum(&entries), checksum(&changed));
    }

    #[test]
    fn identity_rules_are_the_daemons() {
        let manifest = |author: &str, name: &str, version: &str| {
            Identity::from_manifest(&format!("author: {author}\nname: {name}\nversion: '{version}'\n"))
        };
        let identity = manifest("a-b_9", "x", "1.2.3").unwrap();
        assert_eq!(identity.unique_identifier("ab12"), "a-b_9/x:1.2.3@ab12");
        assert_eq!(identity.file_stem(), "x-1.2.3");
        assert!(manifest("a", "x", "10.20.3000-rc_1").is_ok());
        for (author, name, version) in [
            ("Upper", "x", "1.2.3"),
            ("a", "has space", "1.2.3"),
            ("a", "x", "1.2"),
            ("a", "x", "1.2.3.4"),
            ("a", "x", "1.2.x"),
            ("a", "x", "12345.0.0"),
            ("a", "x", "1.2.3-"),
            ("a", "x", "1.2.3-beta.1"),
        ] {
            assert!(manifest(author, name, version).is_err(), "{author} {name} {version} accepted");
        }
        assert!(matches!(Identity::from_manifest("name: x\nversion: 1.2.3\n"), Err(PackageError::NoIdentity(_))));
    }

    #[test]
    fn zip_round_trips_file_entries_in_order_with_a_comment() {
        let entries = vec![Entry::new("z.txt", "last name, first entry"), Entry::new("a/b.yaml", "x: 1\n")];
        let bytes = write(&entries, Some(r#"{"signature":"c2ln","time":1}"#)).unwrap();
        let (read_back, comment) = read(&bytes).unwrap();
        assert_eq!(read_back, entries);
        assert_eq!(comment, r#"{"signature":"c2ln","time":1}"#);
        assert_eq!(write(&entries, Some(r#"{"signature":"c2ln","time":1}"#)).unwrap(), bytes, "not reproducible");
    }

    #[test]
    fn size_limit_is_the_daemons() {
        assert!(check_size(MAX_UNCOMPRESSED_SIZE).is_ok());
        let err = check_size(MAX_UNCOMPRESSED_SIZE + 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the package would hold 52428801 bytes uncompressed, over the daemon's limit of 52428800 bytes"
        );
        let over = vec![Entry::new("a", vec![0u8; MAX_UNCOMPRESSED_SIZE as usize]), Entry::new("b", "x")];
        assert!(
            matches!(write(&over, None), Err(PackageError::TooLarge { total, .. }) if total == MAX_UNCOMPRESSED_SIZE + 1)
        );
    }

    /// A minimal ELF file with `machine` and program headers of the given types (3: `PT_INTERP`).
    fn fake_elf(machine: u16, program_headers: &[u32]) -> Vec<u8> {
        let mut bytes = vec![0u8; ELF_HEADER_LEN];
        bytes[..4].copy_from_slice(b"\x7fELF");
        bytes[4] = 2;
        bytes[5] = 1;
        bytes[18..20].copy_from_slice(&machine.to_le_bytes());
        bytes[32..40].copy_from_slice(&(ELF_HEADER_LEN as u64).to_le_bytes());
        bytes[54..56].copy_from_slice(&56u16.to_le_bytes());
        bytes[56..58].copy_from_slice(&(program_headers.len() as u16).to_le_bytes());
        for kind in program_headers {
            let mut entry = vec![0u8; 56];
            entry[..4].copy_from_slice(&kind.to_le_bytes());
            bytes.extend(entry);
        }
        bytes
    }

    #[test]
    fn binaries_are_checked_against_their_arch() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/echo_trigger");
        let swapped = bundle(&dir, "echo", &[("amd64", fake_elf(EM_AARCH64, &[1]))]).unwrap_err();
        assert_eq!(swapped.to_string(), "the amd64 binary is built for arm64 (aarch64), not amd64");
        let not_elf = bundle(&dir, "echo", &[("arm64", b"#!/bin/sh\n".to_vec())]).unwrap_err();
        assert_eq!(not_elf.to_string(), "the arm64 binary is not an ELF executable");
        let dynamic = bundle(&dir, "echo", &[("amd64", fake_elf(EM_X86_64, &[6, 3, 1]))]).unwrap();
        assert_eq!(dynamic.warnings.len(), 2, "{:?}", dynamic.warnings);
        assert!(dynamic.warnings[0].contains("dynamically linked"), "{:?}", dynamic.warnings);
        assert!(dynamic.warnings[1].contains("arch arm64"), "{:?}", dynamic.warnings);
        let both = bundle(&dir, "echo", &[("amd64", fake_elf(EM_X86_64, &[1])), ("arm64", fake_elf(EM_AARCH64, &[]))]);
        assert!(both.unwrap().warnings.is_empty());
    }

    #[test]
    fn an_example_is_bundled_with_its_declarations_launcher_and_binary() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/echo_trigger");
        let binary = fake_elf(EM_X86_64, &[1]);
        let package = bundle(&dir, "echo_trigger", &[("amd64", binary.clone())]).unwrap();
        assert_eq!(
            package.names,
            [
                "manifest.yaml",
                "provider/echo.yaml",
                "events/ping.yaml",
                "_assets/icon.svg",
                "requirements.txt",
                "main.py",
                "bin/echo_trigger-linux-amd64"
            ]
        );
        let (entries, comment) = read(&package.bytes).unwrap();
        assert_eq!(comment, "");
        assert_eq!(checksum(&entries), package.checksum);
        let main = &entries.iter().find(|e| e.name == "main.py").unwrap().data;
        assert!(String::from_utf8_lossy(main).contains("BINARY = \"echo_trigger\""));
        assert!(package.unique_identifier().starts_with("langgenius/echo_trigger:0.0.1@"));
        // The same inputs give the same bytes.
        assert_eq!(bundle(&dir, "echo_trigger", &[("amd64", binary)]).unwrap().bytes, package.bytes);
        assert!(matches!(bundle(&dir, "echo_trigger", &[("x86", Vec::new())]), Err(PackageError::Arch(_))));
        for bad in ["../evil", "a\"b", "", ".hidden"] {
            assert!(matches!(bundle(&dir, bad, &[]), Err(PackageError::Entry { .. })), "{bad:?}");
        }
        let modes = modes(&package.bytes).unwrap();
        assert_eq!(modes.last().unwrap(), &("bin/echo_trigger-linux-amd64".to_owned(), 0o100755));
    }

    #[test]
    fn directory_entries_are_refused_on_read() {
        let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
        zip.add_directory("events/", SimpleFileOptions::default()).unwrap();
        let bytes = zip.finish().unwrap().into_inner();
        let err = read(&bytes).unwrap_err();
        assert!(err.to_string().contains("events/ is a directory entry"), "{err}");
    }
}
