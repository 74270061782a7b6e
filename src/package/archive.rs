//! What goes into the package, and the zip that carries it (daemon-protocol.md §8.1).
//!
//! The declarations are the ones compiled into this binary ([`crate::declarations`],
//! [`crate::events::EVENTS`]), so a package always carries exactly what `serve` answers with.
//! The zip holds file entries only (a directory entry makes the daemon's upload fail), deflated,
//! with a fixed timestamp so the same inputs give the same bytes. No IO here beyond memory.

use std::io::{Cursor, Read, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

use super::Error;
use super::elf::Arch;
use crate::declarations::{ASSETS, MANIFEST_PATH, MANIFEST_YAML, PROVIDER_PATH, PROVIDER_YAML};
use crate::events::EVENTS;

/// The daemon's default `MAX_PLUGIN_PACKAGE_SIZE`, which bounds the sum of uncompressed sizes.
pub const MAX_UNCOMPRESSED_SIZE: u64 = 50 * 1024 * 1024;

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

/// Files shipped beside the declarations and the icons, embedded at build time.
const FIXED_FILES: [(&str, &[u8]); 4] = [
    ("README.md", include_bytes!("../../README.md")),
    ("PRIVACY.md", include_bytes!("../../PRIVACY.md")),
    // Empty on purpose: the daemon insists on a dependency file and installs nothing from it.
    ("requirements.txt", include_bytes!("../../requirements.txt")),
    // The launcher the daemon runs as `python -m main`; it execs the binary below.
    ("main.py", include_bytes!("../../main.py")),
];

/// `bin/openai-trigger-linux-<arch>`, the name `main.py` looks for.
pub fn binary_path(arch: Arch) -> String {
    format!("bin/openai-trigger-linux-{arch}")
}

/// Every entry of the package, in the order they are written.
pub fn contents(amd64: Vec<u8>, arm64: Vec<u8>) -> Vec<Entry> {
    let mut entries = vec![Entry::new(MANIFEST_PATH, MANIFEST_YAML), Entry::new(PROVIDER_PATH, PROVIDER_YAML)];
    entries.extend(EVENTS.iter().map(|spec| Entry::new(spec.path, spec.yaml)));
    // The same icon bytes remote registration sends, under `_assets/` as the daemon expects.
    entries.extend(ASSETS.iter().map(|(name, data)| Entry::new(format!("_assets/{name}"), *data)));
    entries.extend(FIXED_FILES.iter().map(|(name, data)| Entry::new(*name, *data)));
    entries.push(Entry::new(binary_path(Arch::Amd64), amd64));
    entries.push(Entry::new(binary_path(Arch::Arm64), arm64));
    entries
}

/// The sum the daemon compares with its size limit.
pub fn uncompressed_size(entries: &[Entry]) -> u64 {
    entries.iter().map(|entry| entry.data.len() as u64).sum()
}

fn check_size(total: u64) -> Result<(), Error> {
    if total > MAX_UNCOMPRESSED_SIZE { Err(Error::TooLarge { total }) } else { Ok(()) }
}

/// Zips `entries` in order, with `comment` as the archive comment (where a signature goes).
pub fn write(entries: &[Entry], comment: Option<&str>) -> Result<Vec<u8>, Error> {
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
pub fn read(bytes: &[u8]) -> Result<(Vec<Entry>, String), Error> {
    let mut zip = ZipArchive::new(Cursor::new(bytes))?;
    let comment = String::from_utf8_lossy(zip.comment()).into_owned();
    let mut entries = Vec::with_capacity(zip.len());
    let mut total = 0u64;
    for index in 0..zip.len() {
        let mut file = zip.by_index(index)?;
        let name = file.name().to_owned();
        if file.is_dir() {
            return Err(Error::Entry { name, problem: "is a directory entry, which the daemon cannot read" });
        }
        if file.enclosed_name().is_none() {
            return Err(Error::Entry { name, problem: "points outside the package" });
        }
        total += file.size();
        check_size(total)?;
        let mut data = Vec::with_capacity(usize::try_from(file.size()).unwrap_or(0));
        file.read_to_end(&mut data).map_err(zip::result::ZipError::Io)?;
        entries.push(Entry { name, data });
    }
    Ok((entries, comment))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|entry| entry.name.as_str()).collect()
    }

    #[test]
    fn contents_are_the_embedded_declarations_and_the_launcher() {
        let entries = contents(b"amd".to_vec(), b"arm".to_vec());
        let names = names(&entries);
        assert_eq!(names[..2], ["manifest.yaml", "provider/openai_trigger.yaml"]);
        assert_eq!(names.len(), 2 + EVENTS.len() + ASSETS.len() + FIXED_FILES.len() + 2);
        for spec in EVENTS {
            let entry = entries.iter().find(|entry| entry.name == spec.path).expect(spec.path);
            assert_eq!(entry.data, spec.yaml.as_bytes());
        }
        assert_eq!(names[names.len() - 2..], ["bin/openai-trigger-linux-amd64", "bin/openai-trigger-linux-arm64"]);
        assert_eq!(entries[entries.len() - 1].data, b"arm");
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "duplicate entry names");
    }

    /// The manifest and provider name their icons; the daemon refuses a package whose `_assets`
    /// lacks one. `main.py` must find the binaries under the names written here.
    #[test]
    fn referenced_files_are_shipped() {
        let entries = contents(Vec::new(), Vec::new());
        let has = |name: &str| entries.iter().any(|entry| entry.name == name);
        let manifest = crate::declarations::manifest().unwrap();
        let provider = crate::declarations::yaml_to_json(PROVIDER_PATH, PROVIDER_YAML).unwrap();
        for icon in [&manifest["icon"], &manifest["icon_dark"], &provider["identity"]["icon"]]
            .into_iter()
            .chain([&provider["identity"]["icon_dark"]])
        {
            let icon = icon.as_str().expect("icon names are strings");
            assert!(has(&format!("_assets/{icon}")), "icon {icon} is not in _assets");
        }
        assert!(has(manifest["privacy"].as_str().unwrap()));
        let entrypoint = manifest["meta"]["runner"]["entrypoint"].as_str().unwrap();
        assert!(has(&format!("{entrypoint}.py")));
        let shim = std::str::from_utf8(&entries.iter().find(|entry| entry.name == "main.py").unwrap().data).unwrap();
        assert!(shim.contains("\"openai-trigger-linux-\""));
        for arch in manifest["meta"]["arch"].as_array().unwrap() {
            assert!(has(&format!("bin/openai-trigger-linux-{}", arch.as_str().unwrap())));
        }
        let requirements = &entries.iter().find(|entry| entry.name == "requirements.txt").unwrap().data;
        assert!(requirements.is_empty(), "requirements.txt must stay empty: the daemon would install it");
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
        assert!(matches!(write(&over, None), Err(Error::TooLarge { total }) if total == MAX_UNCOMPRESSED_SIZE + 1));
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
