//! What goes into the package, and the zip that carries it (daemon-protocol.md §8.1).
//!
//! The plugin's files come from the repository root (the Dify plugin directory): the manifest, the provider and every event
//! file it lists, the icons, the docs, `requirements.txt` and the `main.py` launcher; the offline
//! package adds the two static binaries. The zip holds file entries only (a directory entry makes
//! the daemon's upload fail), deflated, with a fixed timestamp so the same inputs give the same bytes.

use std::path::Path;

use super::elf::Arch;
use crate::error::{AtPath, Error, Result};

pub(crate) use dify_plugin::package::Entry;
/// The files of the plugin directory that form a package, and the digest of its declarations.
#[derive(Debug, Clone)]
pub(crate) struct PluginFiles {
    pub(crate) entries: Vec<Entry>,
    /// `openai_trigger::digest::declaration_digest` of the manifest, provider and event files:
    /// what a binary built from these files embeds.
    pub(crate) declaration_digest: String,
}

/// Files shipped beside the declarations, each as (its file in the repository, its name in the
/// package): the docs, the dependency file, the launcher and its serverless front. The package's
/// `README.md` (the plugin page Dify and the Marketplace show) is `PLUGIN_README.md` here, because
/// the repository's own `README.md` is the developers' page.
const DOCS: [(&str, &str); 5] = [
    ("PRIVACY.md", "PRIVACY.md"),
    ("requirements.txt", "requirements.txt"),
    ("main.py", "main.py"),
    ("serverless.py", "serverless.py"),
    ("PLUGIN_README.md", "README.md"),
];

/// Reads the package's files from `root` (the repository root): `manifest.yaml`, the provider
/// it names, every event that provider lists, everything under `_assets/` and `readme/`, and
/// [`DOCS`]. Errors name the missing or unreadable file.
pub(crate) fn plugin_files(root: &Path) -> Result<PluginFiles> {
    let read = |path: &str| {
        let path = root.join(path);
        std::fs::read(&path).at(&path)
    };
    let yaml = |path: &str, bytes: &[u8]| {
        serde_yaml::from_slice::<serde_json::Value>(bytes)
            .map_err(|source| Error::Yaml { file: path.to_owned(), source })
    };
    let manifest = read("manifest.yaml")?;
    let manifest_value = yaml("manifest.yaml", &manifest)?;
    let provider_path = manifest_value["plugins"]["triggers"][0]
        .as_str()
        .ok_or(Error::Declaration { file: "manifest.yaml".to_owned(), problem: "plugins.triggers[0] is not a path" })?
        .to_owned();
    let provider = read(&provider_path)?;
    let provider_value = yaml(&provider_path, &provider)?;
    let mut declarations = vec![("manifest.yaml".to_owned(), manifest), (provider_path.clone(), provider)];
    for event in provider_value["events"].as_array().into_iter().flatten() {
        let path = event.as_str().ok_or_else(|| Error::Declaration {
            file: provider_path.clone(),
            problem: "events entries must be paths",
        })?;
        declarations.push((path.to_owned(), read(path)?));
    }
    let declaration_digest = openai_trigger::digest::declaration_digest(&declarations);
    let mut entries: Vec<Entry> = declarations.into_iter().map(|(name, data)| Entry::new(name, data)).collect();
    for dir in ["_assets", "readme"] {
        let mut names: Vec<String> = match std::fs::read_dir(root.join(dir)) {
            Ok(listing) => listing
                .filter_map(std::result::Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| !name.starts_with('.'))
                .collect(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && dir == "readme" => Vec::new(),
            Err(source) => return Err(Error::File { path: root.join(dir), source }),
        };
        names.sort();
        for name in names {
            let path = format!("{dir}/{name}");
            entries.push(Entry::new(path.clone(), read(&path)?));
        }
    }
    for (source, name) in DOCS {
        entries.push(Entry::new(name, read(source)?));
    }
    Ok(PluginFiles { entries, declaration_digest })
}

/// `bin/openai-trigger-linux-<arch>`, the name `main.py` looks for.
pub(crate) fn binary_path(arch: Arch) -> String {
    format!("bin/openai-trigger-linux-{arch}")
}

/// Every entry of the package: the plugin's files, then the binaries when given.
pub(crate) fn contents(files: &PluginFiles, binaries: Option<(Vec<u8>, Vec<u8>)>) -> Vec<Entry> {
    let mut entries = files.entries.clone();
    if let Some((amd64, arm64)) = binaries {
        entries.push(Entry::new(binary_path(Arch::Amd64), amd64));
        entries.push(Entry::new(binary_path(Arch::Arm64), arm64));
    }
    entries
}

/// Zips `entries` in order, with `comment` as the archive comment ([`dify_plugin::package::write`]).
pub(crate) fn write(entries: &[Entry], comment: Option<&str>) -> Result<Vec<u8>> {
    Ok(dify_plugin::package::write(entries, comment)?)
}

/// Each entry's Unix mode bits ([`dify_plugin::package::modes`]).
pub(crate) fn modes(bytes: &[u8]) -> Result<Vec<(String, u32)>> {
    Ok(dify_plugin::package::modes(bytes)?)
}

/// Every entry and the archive comment, refusing what the daemon refuses ([`dify_plugin::package::read`]).
pub(crate) fn read(bytes: &[u8]) -> Result<(Vec<Entry>, String)> {
    Ok(dify_plugin::package::read(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|entry| entry.name.as_str()).collect()
    }

    fn plugin_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    #[test]
    fn contents_are_the_plugin_files_and_the_binaries() {
        let files = plugin_files(&plugin_dir()).unwrap();
        let entries = contents(&files, Some((b"amd".to_vec(), b"arm".to_vec())));
        let names = names(&entries);
        assert_eq!(names[..2], ["manifest.yaml", "provider/openai_trigger.yaml"]);
        for spec in openai_trigger::events::EVENTS {
            assert!(names.contains(&spec.path), "{} missing", spec.path);
        }
        assert_eq!(names[names.len() - 2..], ["bin/openai-trigger-linux-amd64", "bin/openai-trigger-linux-arm64"]);
        assert_eq!(entries[entries.len() - 1].data, b"arm");
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "duplicate entry names");
        assert_eq!(
            files.declaration_digest,
            openai_trigger::declarations::DIGEST,
            "the digest this xtask was built with"
        );
    }

    /// daemon PR #801 (daemon-protocol.md §8.4): a provider config field may carry
    /// `reset_on_change`. A provider that uses it is packaged and passes the Marketplace rules like
    /// any other, the field kept as written.
    #[test]
    fn a_provider_with_reset_on_change_is_packaged_as_written() {
        let dir = std::env::temp_dir().join(format!("xtask-reset-on-change-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let copy = |relative: &str| {
            let target = dir.join(relative);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(plugin_dir().join(relative), &target).unwrap();
        };
        for relative in
            ["manifest.yaml", "PRIVACY.md", "requirements.txt", "main.py", "serverless.py", "PLUGIN_README.md"]
        {
            copy(relative);
        }
        for spec in openai_trigger::events::EVENTS {
            copy(spec.path);
        }
        for asset in std::fs::read_dir(plugin_dir().join("_assets")).unwrap() {
            copy(&format!("_assets/{}", asset.unwrap().file_name().to_string_lossy()));
        }
        let provider = std::fs::read_to_string(plugin_dir().join("provider/openai_trigger.yaml")).unwrap();
        let field = "  - name: organization\n";
        assert!(provider.contains(field));
        let marked = provider.replacen(field, &format!("{field}    reset_on_change: [api_key, base_url]\n"), 1);
        std::fs::create_dir_all(dir.join("provider")).unwrap();
        std::fs::write(dir.join("provider/openai_trigger.yaml"), &marked).unwrap();

        let files = plugin_files(&dir).unwrap();
        let entries = contents(&files, None);
        let shipped = entries.iter().find(|e| e.name == "provider/openai_trigger.yaml").unwrap();
        let value: serde_json::Value = serde_yaml::from_slice(&shipped.data).unwrap();
        let organization = &value["subscription_schema"][3];
        assert_eq!(
            (organization["name"].as_str(), &organization["reset_on_change"]),
            (Some("organization"), &serde_json::json!(["api_key", "base_url"]))
        );
        // The same verdict as the unmarked repository files (which lack only what publisher.yaml adds
        // at release time: repo, contact and the README's repository link).
        let marked_report = crate::marketplace::check_entries(&entries, &[], 1000);
        let plain = contents(&plugin_files(&plugin_dir()).unwrap(), None);
        let plain_report = crate::marketplace::check_entries(&plain, &[], 1000);
        assert_eq!(marked_report.errors, plain_report.errors);
        assert_eq!(marked_report.warnings.len(), plain_report.warnings.len(), "{:?}", marked_report.warnings);
        assert_ne!(files.declaration_digest, openai_trigger::declarations::DIGEST, "the declarations did change");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The manifest and provider name their icons; the daemon refuses a package whose `_assets`
    /// lacks one. `main.py` must find the binaries under the names written here.
    #[test]
    fn referenced_files_are_shipped() {
        let files = plugin_files(&plugin_dir()).unwrap();
        let entries = contents(&files, Some((Vec::new(), Vec::new())));
        let has = |name: &str| entries.iter().any(|entry| entry.name == name);
        let manifest = openai_trigger::declarations::manifest();
        let provider: serde_json::Value = serde_json::from_str(openai_trigger::declarations::PROVIDER_JSON).unwrap();
        for icon in [
            &manifest["icon"],
            &manifest["icon_dark"],
            &provider["identity"]["icon"],
            &provider["identity"]["icon_dark"],
        ] {
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
    }
}
