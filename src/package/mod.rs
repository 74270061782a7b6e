//! Release tooling: the `package`, `keygen` and `sign` commands, which build the `.difypkg` the
//! Dify plugin daemon installs and sign it for daemons that trust our key (daemon-protocol.md §8).
//!
//! - [`archive`]: the package's entries (the embedded declarations, icons, docs, the `main.py`
//!   launcher and the two static binaries) and the zip around them.
//! - [`checksum`]: the daemon's package checksum and the plugin's unique identifier.
//! - [`sign`]: RSA key pairs and the daemon's signature scheme.
//! - [`elf`]: a check that each binary is a static build for its architecture.
//!
//! Everything above is pure; the `*_command` functions here do the file IO and the printing.
//! Compiled only with the `tools` feature (on by default): the binaries inside the package are
//! built without it, since `serve` needs none of this.

#![cfg(feature = "tools")]

pub mod archive;
pub mod checksum;
pub mod elf;
pub mod sign;

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use thiserror::Error;

pub use archive::{Entry, MAX_UNCOMPRESSED_SIZE};
pub use checksum::{Identity, checksum};
pub use elf::Arch;
pub use sign::Category;

use crate::cli::say;

#[derive(Debug, Error)]
pub enum Error {
    #[error("the {arch} binary {problem}")]
    Binary { arch: Arch, problem: String },
    #[error("{0}")]
    Manifest(String),
    #[error(
        "the package would hold {total} bytes uncompressed, over the daemon's limit of {limit} bytes",
        limit = MAX_UNCOMPRESSED_SIZE
    )]
    TooLarge { total: u64 },
    #[error("package entry {name} {problem}")]
    Entry { name: String, problem: &'static str },
    #[error("zip: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("key: {0}")]
    Key(String),
    #[error("the package is not signed (its zip comment holds no signature)")]
    Unsigned,
    #[error("the signature does not match this key and these contents")]
    BadSignature,
}

/// A built package, in memory.
#[derive(Debug)]
pub struct Package {
    pub bytes: Vec<u8>,
    pub identity: Identity,
    pub checksum: String,
    pub entries: usize,
    pub uncompressed: u64,
}

impl Package {
    fn new(bytes: Vec<u8>, entries: &[Entry], identity: Identity) -> Self {
        let uncompressed = archive::uncompressed_size(entries);
        Package { bytes, identity, checksum: checksum(entries), entries: entries.len(), uncompressed }
    }

    pub fn unique_identifier(&self) -> String {
        self.identity.unique_identifier(&self.checksum)
    }

    /// Describes an already-zipped package (signed or not) from its bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, Error> {
        let (entries, _comment) = archive::read(&bytes)?;
        let manifest = entries.iter().find(|entry| entry.name == crate::declarations::MANIFEST_PATH);
        let manifest = manifest.ok_or_else(|| Error::Manifest("the package has no manifest.yaml".to_owned()))?;
        let identity = Identity::from_manifest(&String::from_utf8_lossy(&manifest.data)).map_err(Error::Manifest)?;
        Ok(Package::new(bytes, &entries, identity))
    }
}

/// Builds the package around the two binaries, refusing anything but static builds of the
/// right architectures.
pub fn build(amd64: Vec<u8>, arm64: Vec<u8>) -> Result<Package, Error> {
    for (arch, bytes) in [(Arch::Amd64, &amd64), (Arch::Arm64, &arm64)] {
        elf::check_static(arch, bytes).map_err(|problem| Error::Binary { arch, problem })?;
    }
    let identity = Identity::from_manifest(crate::declarations::MANIFEST_YAML).map_err(Error::Manifest)?;
    let entries = archive::contents(amd64, arm64);
    let bytes = archive::write(&entries, None)?;
    Ok(Package::new(bytes, &entries, identity))
}

/// `openai-trigger package`: writes the package (by default `dist/<name>-<version>.difypkg`) and
/// prints its unique identifier on the last line.
pub fn package_command(amd64: &Path, arm64: &Path, out: Option<&Path>) -> io::Result<ExitCode> {
    let package = build(read(amd64)?, read(arm64)?).map_err(io::Error::other)?;
    let out = match out {
        Some(out) => out.to_owned(),
        None => Path::new("dist").join(format!("{}.difypkg", package.identity.file_stem())),
    };
    write_file(&out, &package.bytes)?;
    report(&out, &package);
    Ok(ExitCode::SUCCESS)
}

/// `openai-trigger keygen`: writes `<name>.private.pem` (mode 0600) and `<name>.public.pem`,
/// refusing to overwrite either.
pub fn keygen_command(name: &Path, bits: usize) -> io::Result<ExitCode> {
    let private_path = with_suffix(name, ".private.pem");
    let public_path = with_suffix(name, ".public.pem");
    for path in [&private_path, &public_path] {
        if path.exists() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} already exists", path.display())));
        }
    }
    let key = sign::generate_key(bits).map_err(io::Error::other)?;
    let (private, public) = sign::key_pems(&key).map_err(io::Error::other)?;
    create_new(&private_path, private.as_bytes(), 0o600)?;
    create_new(&public_path, public.as_bytes(), 0o644)?;
    say(&format!("private key: {} (keep it secret; mode 0600)", private_path.display()));
    say(&format!(
        "public key:  {} (give it to the daemon: THIRD_PARTY_SIGNATURE_VERIFICATION_PUBLIC_KEYS)",
        public_path.display()
    ));
    Ok(ExitCode::SUCCESS)
}

/// `openai-trigger sign`: writes the signed package (by default `<package>.signed.difypkg`) and
/// prints its new unique identifier (signing changes the checksum) on the last line.
pub fn sign_command(package: &Path, key: &Path, category: Category, out: Option<&Path>) -> io::Result<ExitCode> {
    let key = fs::read_to_string(key).map_err(|err| with_path(err, key))?;
    let key = sign::private_key_from_pem(&key).map_err(io::Error::other)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(io::Error::other)?.as_secs();
    let signed = sign::sign(&read(package)?, &key, category, now).map_err(io::Error::other)?;
    let signed = Package::from_bytes(signed).map_err(io::Error::other)?;
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

fn read(path: &Path) -> io::Result<Vec<u8>> {
    fs::read(path).map_err(|err| with_path(err, path))
}

fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|err| with_path(err, parent))?;
    }
    fs::write(path, bytes).map_err(|err| with_path(err, path))
}

fn create_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let write = || OpenOptions::new().write(true).create_new(true).mode(mode).open(path)?.write_all(bytes);
    write().map_err(|err| with_path(err, path))
}

fn with_suffix(name: &Path, suffix: &str) -> PathBuf {
    let mut path = name.as_os_str().to_owned();
    path.push(suffix);
    PathBuf::from(path)
}

fn with_path(err: io::Error, path: &Path) -> io::Error {
    io::Error::new(err.kind(), format!("{}: {err}", path.display()))
}
