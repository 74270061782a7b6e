//! The package checksum and the plugin's unique identifier, computed exactly as the daemon does
//! (daemon-protocol.md §8.2): the checksum names the daemon's working directory and is part of
//! the identifier Dify shows, so printing it lets a release be matched to an installation. No IO.

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::Entry;
use crate::error::{Error, Result};

/// `hex(sha256(concat over names sorted bytewise of sha256(name) ‖ sha256(content)))`.
pub(crate) fn checksum(entries: &[Entry]) -> String {
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
pub(crate) struct Identity {
    pub(crate) author: String,
    pub(crate) name: String,
    pub(crate) version: String,
}

impl Identity {
    pub(crate) fn from_manifest(yaml: &str) -> Result<Self> {
        let identity: Identity = serde_yaml::from_str(yaml).map_err(Error::NoIdentity)?;
        let refuse = |field, value: &str, rule| Err(Error::Identity { field, value: value.to_owned(), rule });
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
    pub(crate) fn unique_identifier(&self, checksum: &str) -> String {
        format!("{}/{}:{}@{checksum}", self.author, self.name, self.version)
    }

    /// `name-version`, the conventional package file stem.
    pub(crate) fn file_stem(&self) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, data: &[u8]) -> Entry {
        Entry { name: name.to_owned(), data: data.to_vec() }
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
    fn identity_comes_from_the_manifest() {
        let identity = Identity::from_manifest(
            &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../manifest.yaml")).unwrap(),
        )
        .unwrap();
        assert_eq!(identity.author, "hookwright");
        assert_eq!(identity.name, "openai_trigger");
        assert_eq!(identity.unique_identifier("ab12"), format!("hookwright/openai_trigger:{}@ab12", identity.version));
        assert_eq!(identity.file_stem(), format!("openai_trigger-{}", identity.version));
    }

    #[test]
    fn identity_rules_are_the_daemons() {
        let manifest = |author: &str, name: &str, version: &str| {
            Identity::from_manifest(&format!("author: {author}\nname: {name}\nversion: '{version}'\n"))
        };
        assert!(manifest("a-b_9", "x", "1.2.3").is_ok());
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
        assert!(Identity::from_manifest("name: x\nversion: 1.2.3\n").is_err());
    }
}
