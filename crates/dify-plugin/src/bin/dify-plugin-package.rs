//! `dify-plugin-package`: the `.difypkg` of a plugin built on `dify-plugin` (feature `package`).
//!
//! ```text
//! dify-plugin-package <plugin dir> --binary amd64=<path> [--binary arm64=<path>] [--name <binary name>] [--out <file>]
//!                     [--sign <private key.pem> [--category community|partner|langgenius]]
//! dify-plugin-package --keygen <name>     # writes <name>.private.pem (0600) and <name>.public.pem
//! ```
//!
//! Checks the plugin's YAML by the daemon's rules, bundles the declarations, assets, docs, a
//! `main.py` launcher and the binaries, and prints the unique identifier the daemon will show.
//! The binary name defaults to the manifest's `name`; the output to `<name>-<version>.difypkg`.
//! With `--sign`, the package is signed for daemons that verify third-party signatures
//! (`dify_plugin::sign`; the public key goes to `THIRD_PARTY_SIGNATURE_VERIFICATION_PUBLIC_KEYS`).
#![allow(clippy::print_stdout, reason = "a command's report goes to its stdout")]

use std::path::PathBuf;
use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!(
        "usage: dify-plugin-package <plugin dir> --binary <amd64|arm64>=<path> [--binary …] [--name <binary name>] [--out <file>] [--sign <key.pem> [--category community|partner|langgenius]]\n       dify-plugin-package --keygen <name>"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    if std::env::args().nth(1).as_deref() == Some("--keygen") {
        let Some(name) = std::env::args().nth(2) else { return usage() };
        return match keygen(&name) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("dify-plugin-package: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let mut dir = None;
    let mut binaries: Vec<(String, PathBuf)> = Vec::new();
    let mut name = None;
    let mut out = None;
    let mut sign = None;
    let mut category = dify_plugin::sign::Category::Community;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--binary" => match args.next().as_deref().and_then(|v| v.split_once('=')) {
                Some((arch, path)) => binaries.push((arch.to_owned(), PathBuf::from(path))),
                None => return usage(),
            },
            "--name" => name = args.next(),
            "--out" => out = args.next().map(PathBuf::from),
            "--sign" => sign = args.next().map(PathBuf::from),
            "--category" => {
                category = match args.next().as_deref() {
                    Some("community") => dify_plugin::sign::Category::Community,
                    Some("partner") => dify_plugin::sign::Category::Partner,
                    Some("langgenius") => dify_plugin::sign::Category::Langgenius,
                    _ => return usage(),
                }
            }
            "-h" | "--help" => {
                usage();
                return ExitCode::SUCCESS;
            }
            _ if dir.is_none() && !arg.starts_with('-') => dir = Some(PathBuf::from(arg)),
            _ => return usage(),
        }
    }
    let Some(dir) = dir else { return usage() };
    if binaries.is_empty() {
        return usage();
    }
    match run(&dir, &binaries, name, out, sign.map(|key| (key, category))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("dify-plugin-package: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    dir: &std::path::Path,
    binaries: &[(String, PathBuf)],
    name: Option<String>,
    out: Option<PathBuf>,
    sign: Option<(PathBuf, dify_plugin::sign::Category)>,
) -> Result<(), Box<dyn std::error::Error>> {
    let manifest = std::fs::read_to_string(dir.join("manifest.yaml"))
        .map_err(|err| format!("{}: {err}", dir.join("manifest.yaml").display()))?;
    let identity = dify_plugin::package::Identity::from_manifest(&manifest)?;
    let name = name.unwrap_or_else(|| identity.name.clone());
    let mut loaded = Vec::new();
    for (arch, path) in binaries {
        let bytes = std::fs::read(path).map_err(|err| format!("{}: {err}", path.display()))?;
        loaded.push((arch.as_str(), bytes));
    }
    let mut package = dify_plugin::package::bundle(dir, &name, &loaded)?;
    if let Some((key, category)) = sign {
        let pem = std::fs::read_to_string(&key).map_err(|err| format!("{}: {err}", key.display()))?;
        let key = dify_plugin::sign::private_key_from_pem(&pem)?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
        let signed = dify_plugin::sign::sign(&package.bytes, &key, category, now)?;
        let (entries, _) = dify_plugin::package::read(&signed)?;
        package =
            dify_plugin::package::Package { bytes: signed, ..dify_plugin::package::Package::from_entries(&entries)? };
    }
    let out = out.unwrap_or_else(|| PathBuf::from(format!("{}.difypkg", identity.file_stem())));
    for warning in &package.warnings {
        eprintln!("dify-plugin-package: warning: {warning}");
    }
    std::fs::write(&out, &package.bytes).map_err(|err| format!("{}: {err}", out.display()))?;
    println!(
        "{}: {} entries, {} bytes uncompressed, {} bytes\n  unique identifier {}",
        out.display(),
        package.names.len(),
        package.uncompressed,
        package.bytes.len(),
        package.unique_identifier()
    );
    Ok(())
}

/// Writes `<name>.private.pem` (mode 0600, never over an existing file) and `<name>.public.pem`.
fn keygen(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key = dify_plugin::sign::generate_key(usize::from(dify_plugin::sign::KEY_BITS))?;
    let (private, public) = dify_plugin::sign::key_pems(&key)?;
    for (path, text, mode) in
        [(format!("{name}.private.pem"), private, 0o600), (format!("{name}.public.pem"), public, 0o644)]
    {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(|err| format!("{path}: {err}"))?;
        file.write_all(text.as_bytes()).map_err(|err| format!("{path}: {err}"))?;
        println!("wrote {path}");
    }
    println!("give {name}.public.pem to the daemon: THIRD_PARTY_SIGNATURE_VERIFICATION_PUBLIC_KEYS");
    Ok(())
}
