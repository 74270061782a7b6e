#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a build script fails the build by panicking"
)]

//! Turns the plugin's declarations (`manifest.yaml`, the provider and every event YAML it
//! lists) into JSON once, at build time, so nothing parses YAML at run time; and computes the digest
//! that ties this binary to those files (`src/digest.rs`).
//!
//! Output in `$OUT_DIR`: `manifest.json`, `provider.json`, `events/<family>/<name>.json`; and the
//! `OPENAI_TRIGGER_DECLARATIONS_SHA256` compile-time variable. A file that is missing or not valid
//! YAML fails the build, naming it.

use std::fs;
use std::path::{Path, PathBuf};

#[path = "src/digest.rs"]
#[allow(unreachable_pub, reason = "shared with the library, where it is public")]
mod digest;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    println!("cargo:rerun-if-changed={}", root.join("manifest.yaml").display());
    println!("cargo:rerun-if-changed={}", root.join("provider").display());
    println!("cargo:rerun-if-changed={}", root.join("events").display());

    let mut files = Vec::new();
    let manifest = convert(&root, "manifest.yaml", &out, &mut files);
    let provider_path = manifest["plugins"]["triggers"][0]
        .as_str()
        .unwrap_or_else(|| fail("manifest.yaml: plugins.triggers[0] is not a path"))
        .to_owned();
    let provider = convert(&root, &provider_path, &out, &mut files);
    fs::rename(out.join(json_name(&provider_path)), out.join("provider.json")).expect("rename provider.json");
    let events = provider["events"].as_array().unwrap_or_else(|| fail(&format!("{provider_path}: no events list")));
    for event in events {
        let path = event.as_str().unwrap_or_else(|| fail(&format!("{provider_path}: events entries must be paths")));
        println!("cargo:rerun-if-changed={}", root.join(path).display());
        convert(&root, path, &out, &mut files);
    }
    println!("cargo:rustc-env=OPENAI_TRIGGER_DECLARATIONS_SHA256={}", digest::declaration_digest(&files));
}

/// Reads `root/path` as YAML, writes it as JSON to `out/<path with .json>`, records the YAML bytes.
fn convert(root: &Path, path: &str, out: &Path, files: &mut Vec<(String, Vec<u8>)>) -> serde_json::Value {
    let bytes = fs::read(root.join(path)).unwrap_or_else(|err| fail(&format!("{path}: {err}")));
    let value: serde_json::Value =
        serde_yaml::from_slice(&bytes).unwrap_or_else(|err| fail(&format!("{path} is not valid YAML: {err}")));
    let target = out.join(json_name(path));
    fs::create_dir_all(target.parent().expect("a parent")).expect("create the output directory");
    fs::write(&target, serde_json::to_vec(&value).expect("JSON")).expect("write JSON");
    files.push((path.to_owned(), bytes));
    value
}

fn json_name(path: &str) -> String {
    format!("{}.json", path.strip_suffix(".yaml").unwrap_or(path))
}

fn fail(message: &str) -> ! {
    panic!("declarations: {message}")
}
