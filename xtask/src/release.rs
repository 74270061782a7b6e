//! `cargo xtask release`: everything a release needs, from one command.
//!
//! 1. The wheels (`wheels.rs`) and the static binaries inside them, each checked and run.
//! 2. `dist/openai_trigger-<v>.difypkg`, the Marketplace package: no executable; requirements.txt
//!    pins the wheel. The publisher's repository and contact (from `publisher.yaml`, the one place
//!    they live) go into its manifest and READMEs.
//! 3. `dist/openai_trigger-<v>-offline.difypkg`: the same plus the binaries, for air-gapped
//!    self-hosted installs (its requirements.txt installs nothing).
//! 4. `dist/marketplace-pr.md`, the PR body the submission needs.
//! 5. Proof: a loopback package index standing in for PyPI (`dist/pypi/`); the offline package run
//!    as the daemon runs it; the Marketplace package installed from that index into a fresh venv
//!    and run in local mode and in serverless mode (Flask in front of the binary); and
//!    `marketplace-check` with the install test.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use serde::Deserialize;

use crate::console::say;
use crate::error::{AtPath, Error, Result};
use crate::package::{self, archive::PluginFiles};
use crate::{index, marketplace, paths, smoke, static_build, wheels};

/// Who publishes the plugin (`publisher.yaml`).
#[derive(Debug, Deserialize)]
pub(crate) struct Publisher {
    pub(crate) repo: String,
    pub(crate) contact: String,
}

impl Publisher {
    pub(crate) fn load(path: &Path) -> Result<Publisher> {
        let text = std::fs::read_to_string(path).at(path)?;
        serde_yaml::from_str(&text).map_err(|source| Error::Yaml { file: path.display().to_string(), source })
    }

    /// The example values shipped in `publisher.yaml`, which must never reach the Marketplace.
    pub(crate) fn is_example(&self) -> bool {
        let repo = self.repo.to_ascii_lowercase();
        let contact = self.contact.to_ascii_lowercase();
        repo.contains("/example/")
            || repo.contains("example.")
            || contact.ends_with("@example.com")
            || contact.ends_with("@example.org")
    }
}

/// Writes the publisher into the package's files: `repo` and `contact` appended to manifest.yaml
/// (which must not carry them itself), `{{repository}}` replaced in the READMEs.
pub(crate) fn personalize(files: &PluginFiles, publisher: &Publisher) -> Result<PluginFiles> {
    let mut entries = Vec::with_capacity(files.entries.len());
    for entry in &files.entries {
        let mut entry = entry.clone();
        if entry.name == "manifest.yaml" {
            let text = String::from_utf8_lossy(&entry.data).into_owned();
            if text.lines().any(|l| l.starts_with("repo:") || l.starts_with("contact:")) {
                return Err(Error::PublisherInManifest);
            }
            let mut text = text.trim_end().to_owned();
            text.push_str(&format!(
                "\n# From publisher.yaml, written by cargo xtask release.\nrepo: {}\ncontact: {}\n",
                publisher.repo, publisher.contact
            ));
            entry.data = text.into_bytes();
        } else if entry.name == "README.md" || (entry.name.starts_with("readme/") && entry.name.ends_with(".md")) {
            let text = String::from_utf8_lossy(&entry.data).replace("{{repository}}", &publisher.repo);
            entry.data = text.into_bytes();
        }
        entries.push(entry);
    }
    Ok(PluginFiles { entries, declaration_digest: files.declaration_digest.clone() })
}

/// The offline package's requirements.txt: it carries its binaries, so there is nothing to install
/// (and no network to install from).
const OFFLINE_REQUIREMENTS: &str =
    "# The self-contained package: its binaries are inside (bin/); nothing to install.\n";

fn with_offline_requirements(files: &PluginFiles) -> PluginFiles {
    let mut files = files.clone();
    for entry in &mut files.entries {
        if entry.name == "requirements.txt" {
            entry.data = OFFLINE_REQUIREMENTS.as_bytes().to_vec();
        }
    }
    files
}

/// The requirements.txt of the Marketplace package, after checking it pins this version's wheel.
fn requirements(files: &PluginFiles, version: &str) -> Result<String> {
    let text = files
        .entries
        .iter()
        .find(|e| e.name == "requirements.txt")
        .map(|e| String::from_utf8_lossy(&e.data).into_owned())
        .unwrap_or_default();
    let pin = format!("{}=={version}", wheels::DIST_NAME);
    if !text.lines().any(|l| l.split(" #").next().unwrap_or_default().trim() == pin) {
        return Err(Error::UnpinnedWheel { pin });
    }
    Ok(text)
}

/// `cargo xtask release`.
pub(crate) fn release(publisher: &Path, allow_example: bool) -> Result<ExitCode> {
    let started = Instant::now();
    let publisher = Publisher::load(publisher)?;
    if publisher.is_example() && !allow_example {
        return Err(Error::ExamplePublisher { repo: publisher.repo, contact: publisher.contact });
    }
    let version = openai_trigger::cli::VERSION_NUMBER;
    let dist = paths::dist_dir();
    let static_build::Built { binaries: (amd64, arm64), wheels } = static_build::build_static()?;
    let built = started.elapsed();

    let source = package::archive::plugin_files(&paths::plugin_dir())?;
    let requirements = requirements(&source, version)?;
    let files = personalize(&source, &publisher)?;
    let marketplace = package::build(&files, None)?;
    let marketplace_path = dist.join(format!("{}.difypkg", marketplace.identity.file_stem()));
    package::write_package(&marketplace_path, &marketplace)?;
    let offline = package::build(&with_offline_requirements(&files), Some((amd64, arm64)))?;
    let offline_path = dist.join(format!("{}-offline.difypkg", offline.identity.file_stem()));
    package::write_package(&offline_path, &offline)?;

    let capabilities = marketplace::capabilities(&files.entries);
    let pr_body = pr_body(&publisher, version, &wheels, &capabilities, allow_example && publisher.is_example());
    let pr_path = dist.join("marketplace-pr.md");
    std::fs::write(&pr_path, &pr_body).at(&pr_path)?;
    say(&format!("wrote {} (the submission's PR body)", pr_path.display()));

    let wheel_paths: Vec<PathBuf> = wheels.iter().map(|w| w.path.clone()).collect();
    let index_root = dist.join("pypi");
    index::build(
        &index_root,
        &wheel_paths,
        &index::other_requirements(&requirements, wheels::DIST_NAME),
        &index::pythons(),
        &paths::pip_cache(),
    )?;
    let server = index::Server::start(&index_root, 0)?;
    say(&format!("==> package index (standing in for PyPI): {} serving {}", server.url, index_root.display()));

    smoke::extracted_package(&offline_path)?;
    let measured = smoke::marketplace_package(&marketplace_path, &server.url)?;
    let checked = marketplace::check(&marketplace_path, Some(&server.url), Some(&pr_body))?;
    drop(server);

    say("");
    say(&format!(
        "release {version} ({:.0} s; wheels and binaries {:.0} s)",
        started.elapsed().as_secs_f64(),
        built.as_secs_f64()
    ));
    for wheel in &wheels {
        say(&format!("  {:<80} {:>9} bytes", wheel.path.display(), file_size(&wheel.path)));
    }
    for (path, package) in [(&marketplace_path, &marketplace), (&offline_path, &offline)] {
        say(&format!("  {:<80} {:>9} bytes  {}", path.display(), package.bytes.len(), package.unique_identifier()));
    }
    say(&format!("  {}", pr_path.display()));
    say(&measured);
    if checked { Ok(ExitCode::SUCCESS) } else { Ok(ExitCode::FAILURE) }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The PR body for dify-plugins, filled in (the template's headings; risk High: a binary runs).
fn pr_body(
    publisher: &Publisher,
    version: &str,
    wheels: &[wheels::Wheel],
    capabilities: &std::collections::BTreeSet<&str>,
    example: bool,
) -> String {
    let wheel_files: Vec<String> =
        wheels.iter().filter_map(|w| w.path.file_name().map(|n| format!("`{}`", n.to_string_lossy()))).collect();
    let warning = if example {
        "> **Not for submission**: built with `--example-publisher`; the repository and contact are example values.\n\n"
    } else {
        ""
    };
    format!(
        "{warning}# Plugin Submission\n\n\
## Plugin information\n\n\
- **Author**: hookwright\n\
- **Plugin name**: openai_trigger\n\
- **Version**: {version}\n\
- **Source repository**: {repo}\n\
- **Contact**: {contact}\n\n\
## Submission type\n\n\
- [x] New plugin\n\
- [ ] Version update\n\n\
## What changed\n\n\
OpenAI Trigger starts Dify workflows from OpenAI webhooks (background responses, batches, fine-tuning jobs, \
evals, incoming SIP calls, safety notices, Agents API sessions and environments), verifying every delivery's \
Standard Webhooks signature and dropping retried duplicates.\n\n\
## Risk level\n\n\
- [ ] Low risk\n\
- [ ] Medium risk\n\
- [x] High risk\n\n\
## Required checks\n\n\
- [x] The package does not contain executables or bundled binaries, or I explained why they are required below.\n\
- [x] `README.md` is in English, explains setup and usage, and links the source repository.\n\
- [x] `PRIVACY.md` says what data the plugin handles.\n\
- [x] Every dependency in `requirements.txt` is pinned.\n\n\
## Security and privacy notes\n\n\
- **A native binary runs, from a pinned wheel.** The plugin is written in Rust. The package itself holds no \
executable; `requirements.txt` pins the wheel `{dist}=={version}` ({wheel_files}), which pip/uv install into the \
plugin's venv like any compiled dependency. Each wheel holds one statically linked Linux executable \
(`<venv>/bin/openai-trigger`, x86_64 or aarch64) built from the source repository above with maturin's `bin` \
bindings; nothing is downloaded at run time.\n\
- **`main.py` uses `os.execv`** to replace the Python process with that executable (same PID, same stdin/stdout), \
and in serverless mode `serverless.py` starts it with `subprocess.Popen` on a private loopback port behind a Flask \
app. Detected capabilities: {capabilities}. These are the only processes started and the only files opened.\n\
- **Network**: the binary answers Dify only. Webhook deliveries are verified with the subscription's signing \
secret (HMAC-SHA256) before anything else; secrets and webhook bodies are never logged or echoed. \
`manifest.network.domains` lists api.openai.com.\n\
- **Input constraints**: webhook bodies are limited to 1 MiB and JSON depth is bounded; every request is \
validated and answered with a specific status.\n\n\
## Local validation\n\n\
`cargo xtask release` built the wheels and both packages, installed this package from a package index on \
127.0.0.1 into a fresh venv, ran it in local and serverless mode, and ran `cargo xtask marketplace-check` \
(the toolkit's rules and the install test) with no errors.\n\n\
## Reviewer notes\n\n\
The wheel's binary is the plugin; the repository's README explains how to rebuild it and compare checksums.\n",
        repo = publisher.repo,
        contact = publisher.contact,
        dist = wheels::DIST_NAME,
        wheel_files = wheel_files.join(", "),
        capabilities = if capabilities.is_empty() {
            "none".to_owned()
        } else {
            capabilities.iter().copied().collect::<Vec<_>>().join(", ")
        },
    )
}
