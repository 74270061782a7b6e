//! The `.difypkg` the Dify plugin daemon installs, and its signature (daemon-protocol.md §8).
//!
//! - [`archive`]: the package's entries (the plugin directory's files and the static binaries) and
//!   the zip around them.
//! - the daemon's package checksum, the plugin's identity and the zip itself come from
//!   [`dify_plugin::package`], which any plugin on the runtime packages with.
//! - `dify_plugin::sign`: RSA key pairs and the daemon's signature scheme.
//! - [`elf`]: a check that each binary is a static build for its architecture, and the declaration
//!   digest it embeds.
//!
//! Everything above is pure; the `*_command` functions here do the file IO and the printing.

pub(crate) mod archive;
pub(crate) mod elf;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) use archive::Entry;
pub(crate) use dify_plugin::package::{Identity, checksum};
pub(crate) use dify_plugin::sign::{self, Category};
pub(crate) use elf::Arch;

use crate::console::say;
use crate::error::{AtPath, Error, Result};

/// A built package, in memory.
#[derive(Debug)]
pub(crate) struct Package {
    pub(crate) bytes: Vec<u8>,
    pub(crate) identity: Identity,
    pub(crate) checksum: String,
    pub(crate) entries: usize,
    pub(crate) uncompressed: u64,
}

impl Package {
    fn new(bytes: Vec<u8>, entries: &[Entry], identity: Identity) -> Self {
        let uncompressed = dify_plugin::package::uncompressed_size(entries);
        Package { bytes, identity, checksum: checksum(entries), entries: entries.len(), uncompressed }
    }

    pub(crate) fn unique_identifier(&self) -> String {
        self.identity.unique_identifier(&self.checksum)
    }

    /// Describes an already-zipped package (signed or not) from its bytes.
    pub(crate) fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        let (entries, _comment) = archive::read(&bytes)?;
        let manifest = entries.iter().find(|entry| entry.name == "manifest.yaml");
        let manifest = manifest.ok_or(Error::MissingEntry("manifest.yaml"))?;
        let identity = Identity::from_manifest(&String::from_utf8_lossy(&manifest.data))?;
        Ok(Package::new(bytes, &entries, identity))
    }
}

/// Builds the package from the plugin's files and, for the self-contained (offline) package, the
/// two binaries, refusing anything but static builds of the right architectures built from these
/// very declarations.
pub(crate) fn build(files: &archive::PluginFiles, binaries: Option<(Vec<u8>, Vec<u8>)>) -> Result<Package> {
    if let Some((amd64, arm64)) = &binaries {
        for (arch, bytes) in [(Arch::Amd64, amd64), (Arch::Arm64, arm64)] {
            elf::check_static(&format!("the {arch} binary"), arch, bytes)?;
            match elf::declaration_digest(bytes) {
                Some(embedded) if embedded == files.declaration_digest => {}
                embedded => {
                    return Err(Error::StaleBinary {
                        arch: arch.as_str(),
                        embedded: embedded.unwrap_or_else(|| "no declaration digest".into()),
                        files: files.declaration_digest.clone(),
                    });
                }
            }
        }
    }
    let manifest =
        files.entries.iter().find(|e| e.name == "manifest.yaml").map(|e| e.data.as_slice()).unwrap_or_default();
    let identity = Identity::from_manifest(&String::from_utf8_lossy(manifest))?;
    let entries = archive::contents(files, binaries);
    let bytes = archive::write(&entries, None)?;
    Ok(Package::new(bytes, &entries, identity))
}

/// Writes `package` to `out` and prints what it is.
pub(crate) fn write_package(out: &Path, package: &Package) -> Result<()> {
    write_file(out, &package.bytes)?;
    report(out, package);
    Ok(())
}

/// `cargo xtask keygen`: writes `<name>.private.pem` (mode 0600) and `<name>.public.pem`,
/// refusing to overwrite either.
pub(crate) fn keygen_command(name: &Path, bits: usize) -> Result<ExitCode> {
    let private_path = with_suffix(name, ".private.pem");
    let public_path = with_suffix(name, ".public.pem");
    for path in [&private_path, &public_path] {
        if path.exists() {
            return Err(Error::Exists { path: path.clone() });
        }
    }
    let key = sign::generate_key(bits)?;
    let (private, public) = sign::key_pems(&key)?;
    create_new(&private_path, private.as_bytes(), 0o600)?;
    create_new(&public_path, public.as_bytes(), 0o644)?;
    say(&format!("private key: {} (keep it secret; mode 0600)", private_path.display()));
    say(&format!(
        "public key:  {} (give it to the daemon: THIRD_PARTY_SIGNATURE_VERIFICATION_PUBLIC_KEYS)",
        public_path.display()
    ));
    Ok(ExitCode::SUCCESS)
}

/// `cargo xtask sign`: writes the signed package (by default `<package>.signed.difypkg`) and
/// prints its new unique identifier (signing changes the checksum) on the last line.
pub(crate) fn sign_command(package: &Path, key: &Path, category: Category, out: Option<&Path>) -> Result<ExitCode> {
    let key = sign::private_key_from_pem(&fs::read_to_string(key).at(key)?)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let signed = sign::sign(&fs::read(package).at(package)?, &key, category, now)?;
    let signed = Package::from_bytes(signed)?;
    let out = match out {
        Some(out) => out.to_owned(),
        None => {
            let name = package.file_name().map(|name| name.to_string_lossy()).unwrap_or_default();
            let stem = name.strip_suffix(".difypkg").unwrap_or(&name);
            package.with_file_name(format!("{stem}.signed.difypkg"))
        }
    };
    write_file(&out, &signed.bytes)?;
    report(&out, &signed);
    Ok(ExitCode::SUCCESS)
}

/// `cargo xtask verify`: checks a signed package against a public key, as the daemon's verifier does.
pub(crate) fn verify_command(package: &Path, key: &Path) -> Result<ExitCode> {
    let key = sign::public_key_from_pem(&fs::read_to_string(key).at(key)?)?;
    let verified = sign::verify(&fs::read(package).at(package)?, &key)?;
    say(&format!(
        "{}: signature valid (signed at {}, category {})",
        package.display(),
        verified.time,
        verified.category.as_deref().unwrap_or("none: the daemon reads it as langgenius")
    ));
    Ok(ExitCode::SUCCESS)
}

fn report(path: &Path, package: &Package) {
    say(&format!(
        "wrote {}: {} bytes ({} entries, {} bytes uncompressed)",
        path.display(),
        package.bytes.len(),
        package.entries,
        package.uncompressed
    ));
    say(&package.unique_identifier());
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        fs::create_dir_all(parent).at(parent)?;
    }
    fs::write(path, bytes).at(path)
}

fn create_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let write = || OpenOptions::new().write(true).create_new(true).mode(mode).open(path)?.write_all(bytes);
    write().at(path)
}

fn with_suffix(name: &Path, suffix: &str) -> PathBuf {
    let mut path = name.as_os_str().to_owned();
    path.push(suffix);
    PathBuf::from(path)
}
