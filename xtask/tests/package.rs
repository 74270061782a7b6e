//! Release tooling through the real `cargo xtask` binary: `package`, `keygen`, `sign`, and the
//! `main.py` launcher the daemon runs. Each result is checked by an independent implementation: Python's
//! zipfile and hashlib for the archive and its checksum, the openssl CLI for the signature.
//!
//! The launcher tests that need an unexecutable package directory build one in a private mount
//! namespace (`unshare`), so nothing leaks onto the host; they fail, not skip, if they cannot.

#![allow(unreachable_pub, reason = "a test crate")]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_xtask");
/// The Dify plugin directory: the package's files.
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;

/// Lists a zip the way Go's archive/zip sees it (central-directory order) and computes the
/// daemon's checksum (daemon-protocol.md §8.2) on its own.
const PY_LIST_ZIP: &str = r#"
import hashlib, json, sys, zipfile
sha = lambda data: hashlib.sha256(data).digest()
with zipfile.ZipFile(sys.argv[1]) as z:
    entries = [(info, b"" if info.is_dir() else z.read(info)) for info in z.infolist()]
    files = {info.filename: data for info, data in entries}
    print(json.dumps({
        "comment": z.comment.decode(),
        "entries": [{"name": info.filename, "dir": info.is_dir(), "method": info.compress_type,
                     "sha256": hashlib.sha256(data).hexdigest()} for info, data in entries],
        "checksum": hashlib.sha256(b"".join(sha(n.encode()) + sha(files[n]) for n in sorted(files))).hexdigest(),
    }))
"#;

/// Writes the daemon's signed data (daemon-protocol.md §8.3) and the decoded signature to files.
const PY_SIGNED_DATA: &str = r#"
import base64, hashlib, json, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    comment = json.loads(z.comment)
    data = b"".join(hashlib.sha256(z.read(info)).digest() for info in z.infolist())
data += str(comment["time"]).encode()
open(sys.argv[2], "wb").write(data)
open(sys.argv[3], "wb").write(base64.b64decode(comment["signature"], validate=True))
"#;

/// Copies a zip with one byte of one entry flipped, keeping the comment (the signature).
const PY_TAMPER: &str = r#"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as src, zipfile.ZipFile(sys.argv[2], "w", zipfile.ZIP_DEFLATED) as dst:
    for info in src.infolist():
        data = src.read(info)
        if info.filename == sys.argv[3]:
            data = bytes([data[0] ^ 1]) + data[1:]
        dst.writestr(info, data)
    dst.comment = src.comment
"#;

/// Stands in for the native binary: reports how it was started, and deletes its temporary copy as
/// the real binary is expected to.
const FAKE_BINARY: &str = r#"#!/bin/sh
printf 'pid=%s\n' "$$"
printf 'exe=%s\n' "$0"
printf 'args=%s\n' "$*"
printf 'unlink=%s\n' "${OPENAI_TRIGGER_UNLINK-<unset>}"
printf 'stdin=%s\n' "$(cat)"
if [ -n "${OPENAI_TRIGGER_UNLINK-}" ]; then rm -f "$OPENAI_TRIGGER_UNLINK"; fi
"#;

/// A 64-bit little-endian ELF header for `machine` with the given program header types, followed by
/// the declaration digest a real build embeds (`declarations sha256:<hex>`, from `--version`).
fn fake_elf(machine: u16, program_headers: &[u32]) -> Vec<u8> {
    fake_elf_with_digest(machine, program_headers, openai_trigger::declarations::DIGEST)
}

fn fake_elf_with_digest(machine: u16, program_headers: &[u32], digest: &str) -> Vec<u8> {
    let mut bytes = vec![0u8; 64];
    bytes[..4].copy_from_slice(b"\x7fELF");
    bytes[4] = 2; // ELFCLASS64
    bytes[5] = 1; // little-endian
    bytes[6] = 1; // version
    bytes[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    bytes[18..20].copy_from_slice(&machine.to_le_bytes());
    bytes[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    bytes[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    bytes[56..58].copy_from_slice(&(program_headers.len() as u16).to_le_bytes());
    for kind in program_headers {
        let mut header = vec![0u8; 56];
        header[..4].copy_from_slice(&kind.to_le_bytes());
        bytes.extend_from_slice(&header);
    }
    bytes.extend_from_slice(format!("openai-trigger 0.1.0 (declarations sha256:{digest})").as_bytes());
    bytes
}

/// A directory under the system temp dir, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(label: &str) -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("openai-trigger-it-{label}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Scratch(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn run(command: &mut Command) -> Output {
    let output = command.stdin(Stdio::null()).output().unwrap_or_else(|err| panic!("{command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn python(script: &str, args: &[&Path]) -> String {
    stdout(&run(Command::new("python3").arg("-c").arg(script).args(args)))
}

fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or_default()
}

/// Writes fake static binaries and runs `package`; returns the package path and its printed
/// unique identifier.
fn package_in(scratch: &Scratch) -> (PathBuf, String) {
    let amd64 = scratch.join("amd64");
    let arm64 = scratch.join("arm64");
    fs::write(&amd64, fake_elf(EM_X86_64, &[PT_LOAD])).unwrap();
    fs::write(&arm64, fake_elf(EM_AARCH64, &[PT_LOAD])).unwrap();
    let out = scratch.join("out/plugin.difypkg");
    let output = run(Command::new(EXE)
        .arg("package")
        .arg("--amd64")
        .arg(&amd64)
        .arg("--arm64")
        .arg(&arm64)
        .arg("--out")
        .arg(&out)
        .arg("--no-smoke"));
    (out, last_line(&stdout(&output)).to_owned())
}

fn list_zip(path: &Path) -> Value {
    serde_json::from_str(&python(PY_LIST_ZIP, &[path])).unwrap()
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

fn manifest_version() -> String {
    let manifest: Value =
        serde_yaml::from_str(&fs::read_to_string(Path::new(ROOT).join("manifest.yaml")).unwrap()).unwrap();
    manifest["version"].as_str().unwrap().to_owned()
}

/// Every file the package must carry, found on disk (not through the crate's event table), with
/// the bytes it must hold.
fn expected_files(amd64: &[u8], arm64: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let root = Path::new(ROOT);
    let mut files = BTreeMap::new();
    // (the file in the repository, its name in the package): the package's README.md is the
    // repository's PLUGIN_README.md (the repository's own README.md is the developers' page).
    for (source, name) in [
        ("manifest.yaml", "manifest.yaml"),
        ("provider/openai_trigger.yaml", "provider/openai_trigger.yaml"),
        ("_assets/icon.svg", "_assets/icon.svg"),
        ("_assets/icon-dark.svg", "_assets/icon-dark.svg"),
        ("PLUGIN_README.md", "README.md"),
        ("PRIVACY.md", "PRIVACY.md"),
        ("requirements.txt", "requirements.txt"),
        ("main.py", "main.py"),
        ("serverless.py", "serverless.py"),
    ] {
        files.insert(name.to_owned(), fs::read(root.join(source)).unwrap());
    }
    for family in fs::read_dir(root.join("events")).unwrap() {
        let family = family.unwrap();
        for event in fs::read_dir(family.path()).unwrap() {
            let event = event.unwrap().path();
            if event.extension().is_some_and(|ext| ext == "yaml") {
                let name = event.strip_prefix(root).unwrap().to_str().unwrap().to_owned();
                files.insert(name, fs::read(&event).unwrap());
            }
        }
    }
    // The user guide's translations (Marketplace layout: readme/README_<locale>.md).
    for translation in fs::read_dir(root.join("readme")).unwrap() {
        let path = translation.unwrap().path();
        let name = path.strip_prefix(root).unwrap().to_str().unwrap().to_owned();
        files.insert(name, fs::read(&path).unwrap());
    }
    files.insert("bin/openai-trigger-linux-amd64".to_owned(), amd64.to_vec());
    files.insert("bin/openai-trigger-linux-arm64".to_owned(), arm64.to_vec());
    files
}

#[test]
fn package_holds_exactly_the_plugin_files_as_deflated_file_entries() {
    let scratch = Scratch::new("entries");
    let (path, _) = package_in(&scratch);
    let listing = list_zip(&path);
    let entries = listing["entries"].as_array().unwrap();
    for entry in entries {
        assert_eq!(entry["dir"], false, "directory entry {}", entry["name"]);
        assert_eq!(entry["method"], 8, "{} is not deflated", entry["name"]);
    }
    assert_eq!(entries[0]["name"], "manifest.yaml");
    let expected = expected_files(&fake_elf(EM_X86_64, &[PT_LOAD]), &fake_elf(EM_AARCH64, &[PT_LOAD]));
    let found: BTreeMap<String, String> = entries
        .iter()
        .map(|entry| (entry["name"].as_str().unwrap().to_owned(), entry["sha256"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(found.len(), entries.len(), "duplicate entries");
    let expected: BTreeMap<String, String> =
        expected.iter().map(|(name, data)| (name.clone(), sha256_hex(data))).collect();
    assert_eq!(found, expected);
    assert_eq!(listing["comment"], "");
}

#[test]
fn packaged_manifest_is_the_embedded_one() {
    let scratch = Scratch::new("manifest");
    let (path, _) = package_in(&scratch);
    let script = "import sys, zipfile; sys.stdout.write(zipfile.ZipFile(sys.argv[1]).read('manifest.yaml').decode())";
    assert_eq!(python(script, &[&path]), fs::read_to_string(Path::new(ROOT).join("manifest.yaml")).unwrap());
}

#[test]
fn printed_identity_matches_an_independent_checksum() {
    let scratch = Scratch::new("checksum");
    let (path, identity) = package_in(&scratch);
    let checksum = list_zip(&path)["checksum"].as_str().unwrap().to_owned();
    assert_eq!(identity, format!("hookwright/openai_trigger:{}@{checksum}", manifest_version()));
    assert_eq!(checksum.len(), 64);
    assert!(checksum.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
}

#[test]
fn package_defaults_to_dist_name_version() {
    let scratch = Scratch::new("default-out");
    fs::write(scratch.join("a"), fake_elf(EM_X86_64, &[])).unwrap();
    fs::write(scratch.join("b"), fake_elf(EM_AARCH64, &[])).unwrap();
    let output = run(Command::new(EXE).current_dir(&scratch.0).env("DIST_DIR", scratch.join("dist")).args([
        "package",
        "--amd64",
        "a",
        "--arm64",
        "b",
        "--no-smoke",
    ]));
    let path = scratch.join(&format!("dist/openai_trigger-{}.difypkg", manifest_version()));
    assert!(path.is_file(), "{} missing; stdout: {}", path.display(), stdout(&output));
    assert!(stdout(&output).starts_with(&format!("wrote {}: ", path.display())), "{}", stdout(&output));
}

#[test]
fn package_refuses_wrong_dynamic_or_oversized_binaries() {
    let scratch = Scratch::new("refuse");
    let refuse = |amd64: Vec<u8>, arm64: Vec<u8>, message: &str| {
        fs::write(scratch.join("amd64"), amd64).unwrap();
        fs::write(scratch.join("arm64"), arm64).unwrap();
        let out = scratch.join("refused.difypkg");
        let output = Command::new(EXE)
            .arg("package")
            .args(["--amd64".as_ref(), scratch.join("amd64").as_os_str()])
            .args(["--arm64".as_ref(), scratch.join("arm64").as_os_str()])
            .arg("--out")
            .arg(&out)
            .arg("--no-smoke")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "accepted; wanted {message:?}");
        assert!(stderr.contains(message), "stderr {stderr:?} lacks {message:?}");
        assert!(output.stdout.is_empty());
        assert!(!out.exists(), "a refused package was written");
    };
    let good_amd64 = || fake_elf(EM_X86_64, &[PT_LOAD]);
    let good_arm64 = || fake_elf(EM_AARCH64, &[PT_LOAD]);
    refuse(good_arm64(), good_amd64(), "the amd64 binary is built for arm64 (aarch64), not amd64");
    refuse(good_amd64(), fake_elf(EM_AARCH64, &[PT_LOAD, PT_INTERP]), "the arm64 binary is dynamically linked");
    refuse(good_amd64(), b"#!/bin/sh\n".to_vec(), "the arm64 binary is not an ELF executable");
    // Built from other declarations (`--skip-build` after the YAML changed, say).
    refuse(
        good_amd64(),
        fake_elf_with_digest(EM_AARCH64, &[PT_LOAD], &"0".repeat(64)),
        "the arm64 binary was built from other declarations",
    );
    refuse(
        fake_elf_with_digest(EM_X86_64, &[PT_LOAD], "none"),
        good_arm64(),
        "the amd64 binary was built from other declarations",
    );
    let mut big = good_amd64();
    big.resize(50 * 1024 * 1024, 0);
    refuse(big, good_arm64(), "over the daemon's limit of 52428800 bytes");
}

/// Python interpreters to run the launcher under: each of 3.11 and 3.12 that is installed, or
/// at least `python3`.
fn pythons() -> Vec<String> {
    let mut found = BTreeMap::new();
    for name in ["python3", "python3.11", "python3.12"] {
        let version = Command::new(name).args(["-c", "import sys; print(sys.version_info[:2])"]).output();
        if let Some(output) = version.ok().filter(|output| output.status.success()) {
            found.entry(stdout(&output)).or_insert_with(|| name.to_owned());
        }
    }
    assert!(!found.is_empty(), "no python3 on PATH: the launcher cannot be tested");
    found.into_values().collect()
}

/// A package directory as the daemon leaves it: the launcher and a fake binary per arch, all 0644.
fn plugin_dir(dir: &Path) {
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::copy(Path::new(ROOT).join("main.py"), dir.join("main.py")).unwrap();
    for arch in ["amd64", "arm64"] {
        let path = dir.join(format!("bin/openai-trigger-linux-{arch}"));
        fs::write(&path, FAKE_BINARY).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    }
}

/// The fake binary's report, `key=value` per line.
fn report(text: &str) -> BTreeMap<String, String> {
    text.lines().filter_map(|line| line.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

#[test]
fn launcher_execs_the_binary_in_place_with_stdio_inherited() {
    let scratch = Scratch::new("launch");
    plugin_dir(&scratch.0);
    for python in pythons() {
        let mut child = Command::new(&python)
            .arg(scratch.join("main.py"))
            .args(["one", "two"])
            .env("OPENAI_TRIGGER_UNLINK", "/inherited/path/must/not/be/passed/on")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"hello from the daemon").unwrap();
        let pid = child.id().to_string();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{python}: {output:?}");
        assert_eq!(String::from_utf8_lossy(&output.stderr), "", "{python} wrote to stderr");
        let report = report(&stdout(&output));
        let arch = if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" };
        let binary = scratch.join(&format!("bin/openai-trigger-linux-{arch}"));
        assert_eq!(report["pid"], pid, "{python}: not exec'd in place (another process ran the binary)");
        assert_eq!(report["exe"], binary.to_str().unwrap(), "{python}");
        assert_eq!(report["args"], "one two", "{python}");
        assert_eq!(report["unlink"], "<unset>", "{python}");
        assert_eq!(report["stdin"], "hello from the daemon", "{python}");
        assert_eq!(fs::metadata(&binary).unwrap().permissions().mode() & 0o777, 0o755);
    }
}

/// Runs `script` with sh in a private mount namespace (root, or an unprivileged user namespace),
/// with `$SCRATCH` set. Panics with the reason if the namespace cannot be made.
fn in_mount_namespace(scratch: &Scratch, script: &str) -> Output {
    let uid = stdout(&run(Command::new("id").arg("-u")));
    let flags = if uid.trim() == "0" { "-m" } else { "-rm" };
    let probe = Command::new("unshare").args([flags, "true"]).output();
    match probe {
        Ok(output) if output.status.success() => {}
        other => panic!(
            "cannot create a mount namespace (unshare {flags}), which this test needs to make a noexec package \
             directory; run it as root or allow unprivileged user namespaces: {other:?}"
        ),
    }
    let script = format!("set -eu\n{PRECONDITIONS}\n{script}");
    Command::new("unshare")
        .args([flags, "sh", "-c", &script])
        .env("SCRATCH", &scratch.0)
        .env_remove("OPENAI_TRIGGER_UNLINK")
        .env_remove("TMPDIR")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Shell helpers for the namespace scripts: `must_exec DIR` and `must_not_exec DIR` prove that
/// the mount options the test relies on are really in force.
const PRECONDITIONS: &str = r#"
probe() { cp /bin/true "$1/.exec-probe" && chmod 755 "$1/.exec-probe"; "$1/.exec-probe" 2>/dev/null; r=$?; rm -f "$1/.exec-probe"; return $r; }
must_exec() { probe "$1" || { echo "PRECONDITION: cannot exec in $1" >&2; exit 90; }; }
must_not_exec() { if probe "$1"; then echo "PRECONDITION: $1 is not noexec" >&2; exit 91; fi; }
"#;

fn check_namespace_run(output: &Output) -> BTreeMap<String, String> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("PRECONDITION"), "{stderr}");
    assert!(output.status.success(), "status {}; stderr: {stderr}; stdout: {}", output.status, stdout(output));
    let report = report(&stdout(output));
    let wrapper = stderr.lines().find_map(|line| line.strip_prefix("wrapper=")).expect("wrapper pid");
    assert_eq!(report["pid"], wrapper, "not exec'd in place");
    assert_eq!(report["stdin"], "hello", "stdin not inherited");
    report
}

#[test]
fn launcher_runs_a_temp_copy_when_the_package_dir_is_noexec() {
    let scratch = Scratch::new("noexec");
    plugin_dir(&scratch.join("staged"));
    fs::create_dir_all(scratch.join("tmp")).unwrap();
    let output = in_mount_namespace(
        &scratch,
        r#"
        mkdir -p "$SCRATCH/plugin"
        mount -t tmpfs -o noexec tmpfs "$SCRATCH/plugin"
        cp -r "$SCRATCH/staged/." "$SCRATCH/plugin/"
        must_not_exec "$SCRATCH/plugin"
        must_exec "$SCRATCH/tmp"
        echo "wrapper=$$" >&2
        printf hello > "$SCRATCH/stdin"
        TMPDIR="$SCRATCH/tmp" exec python3 "$SCRATCH/plugin/main.py" < "$SCRATCH/stdin"
        "#,
    );
    let report = check_namespace_run(&output);
    let copy = &report["unlink"];
    assert_eq!(&report["exe"], copy, "the copy ran, and its path was passed for unlinking");
    assert!(copy.starts_with(scratch.join("tmp/openai-trigger-").to_str().unwrap()), "{copy}");
    assert_eq!(fs::read_dir(scratch.join("tmp")).unwrap().count(), 0, "temporary copies left behind");
}

#[test]
fn launcher_falls_back_to_memfd_when_every_temp_dir_is_noexec() {
    let scratch = Scratch::new("memfd");
    plugin_dir(&scratch.join("staged"));
    let output = in_mount_namespace(
        &scratch,
        r#"
        for dir in /tmp /dev/shm; do mount --bind "$dir" "$dir"; mount -o remount,bind,noexec "$dir"; done
        mkdir -p "$SCRATCH/plugin"
        mount -t tmpfs -o noexec tmpfs "$SCRATCH/plugin"
        cp -r "$SCRATCH/staged/." "$SCRATCH/plugin/"
        mkdir "$SCRATCH/plugin/tmp"
        for dir in "$SCRATCH/plugin" /tmp /dev/shm; do must_not_exec "$dir"; done
        echo "wrapper=$$" >&2
        printf hello > "$SCRATCH/stdin"
        TMPDIR="$SCRATCH/plugin/tmp" exec python3 "$SCRATCH/plugin/main.py" < "$SCRATCH/stdin"
        "#,
    );
    let report = check_namespace_run(&output);
    assert!(report["exe"].starts_with("/proc/self/fd/"), "{report:?}");
    assert_eq!(report["unlink"], "<unset>");
}

/// The Marketplace package: pip/uv installed the wheel, so the binary is `<venv>/bin/openai-trigger`;
/// it is exec'd as it is, with no exec-bit dance and no copy.
#[test]
fn launcher_execs_the_wheel_binary_from_the_venv() {
    let scratch = Scratch::new("wheel");
    let venv = scratch.join("venv");
    run(Command::new("python3").args(["-m", "venv", "--without-pip"]).arg(&venv));
    let installed = venv.join("bin/openai-trigger");
    fs::write(&installed, FAKE_BINARY).unwrap();
    fs::set_permissions(&installed, fs::Permissions::from_mode(0o755)).unwrap();
    let plugin = scratch.join("plugin");
    fs::create_dir_all(&plugin).unwrap();
    fs::copy(Path::new(ROOT).join("main.py"), plugin.join("main.py")).unwrap();
    let mut child = Command::new(venv.join("bin/python"))
        .args(["-m", "main", "serve"])
        .current_dir(&plugin)
        .env_remove("INSTALL_METHOD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"from the daemon").unwrap();
    let pid = child.id().to_string();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let report = report(&stdout(&output));
    assert_eq!(report["pid"], pid, "exec'd in place");
    assert_eq!(report["exe"], installed.to_str().unwrap());
    assert_eq!(report["args"], "serve");
    assert_eq!(report["unlink"], "<unset>");
    assert_eq!(report["stdin"], "from the daemon");

    // A wheel for another machine is refused with what to do, before any exec.
    let other = if cfg!(target_arch = "aarch64") { EM_X86_64 } else { EM_AARCH64 };
    fs::write(&installed, fake_elf(other, &[PT_LOAD])).unwrap();
    let output = Command::new(venv.join("bin/python"))
        .args(["-m", "main"])
        .current_dir(&plugin)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is not a Linux")
            && stderr.contains("reinstall the plugin so that pip/uv picks the wheel for this machine"),
        "{stderr}"
    );
}

#[test]
fn launcher_fails_clearly_without_touching_stdout() {
    let scratch = Scratch::new("launch-fail");
    plugin_dir(&scratch.0);
    let main = scratch.join("main.py");
    let riscv = format!(
        "import platform, runpy; platform.machine = lambda: 'riscv64'; runpy.run_path({:?}, run_name='__main__')",
        main.to_str().unwrap()
    );
    let unsupported = Command::new("python3").args(["-c", &riscv]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(unsupported.status.code(), Some(1));
    assert!(unsupported.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&unsupported.stderr);
    assert!(stderr.contains("unsupported machine 'riscv64'"), "{stderr}");

    fs::remove_dir_all(scratch.join("bin")).unwrap();
    let missing = Command::new("python3").arg(&main).stdin(Stdio::null()).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(missing.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.starts_with("openai-trigger launcher: "), "{stderr}");
    assert!(stderr.contains("openai-trigger-linux-") && stderr.contains("is missing"), "{stderr}");
}

fn openssl_verify(public_key: &Path, package: &Path, scratch: &Scratch) -> Output {
    let data = scratch.join("signed-data.bin");
    let signature = scratch.join("signature.bin");
    python(PY_SIGNED_DATA, &[package, &data, &signature]);
    Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(public_key)
        .arg("-signature")
        .arg(&signature)
        .arg(&data)
        .output()
        .expect("the openssl CLI is needed to check signatures independently")
}

#[test]
fn signed_package_verifies_with_openssl_and_tampering_breaks_it() {
    let scratch = Scratch::new("sign");
    let (package, unsigned_identity) = package_in(&scratch);
    // 2048 bits: a 4096-bit key takes minutes in a debug build; the scheme is the same.
    let keys = scratch.join("release");
    run(Command::new(EXE).args(["keygen", "--bits", "2048", "--out"]).arg(&keys));
    let private = scratch.join("release.private.pem");
    let public = scratch.join("release.public.pem");
    assert_eq!(fs::metadata(&private).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(fs::read_to_string(&private).unwrap().starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
    assert!(fs::read_to_string(&public).unwrap().starts_with("-----BEGIN RSA PUBLIC KEY-----\n"));
    let again = Command::new(EXE).args(["keygen", "--bits", "2048", "--out"]).arg(&keys).output().unwrap();
    assert!(!again.status.success(), "keygen overwrote an existing key");

    let before = unix_now();
    let output = run(Command::new(EXE).arg("sign").arg(&package).arg("--key").arg(&private));
    let signed = scratch.join("out/plugin.signed.difypkg");
    assert!(signed.is_file());

    let listing = list_zip(&signed);
    let names: Vec<&str> = listing["entries"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    let unsigned_listing = list_zip(&package);
    let unsigned_names: Vec<&str> =
        unsigned_listing["entries"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names[..names.len() - 1], unsigned_names[..], "entries reordered or changed");
    assert_eq!(names.last(), Some(&".verification.dify.json"));
    let script =
        "import sys, zipfile; sys.stdout.write(zipfile.ZipFile(sys.argv[1]).read('.verification.dify.json').decode())";
    assert_eq!(python(script, &[&signed]), r#"{"authorized_category":"community"}"#);
    let comment: Value = serde_json::from_str(listing["comment"].as_str().unwrap()).unwrap();
    assert_eq!(comment.as_object().unwrap().len(), 2, "{comment}");
    let time = comment["time"].as_i64().unwrap();
    assert!((before..=unix_now()).contains(&time), "time {time}");
    let identity = last_line(&stdout(&output)).to_owned();
    assert_eq!(
        identity,
        format!("hookwright/openai_trigger:{}@{}", manifest_version(), listing["checksum"].as_str().unwrap())
    );
    assert_ne!(identity, unsigned_identity, "signing must change the checksum");

    let verified = openssl_verify(&public, &signed, &scratch);
    assert!(verified.status.success(), "openssl rejected the signature: {verified:?}");
    assert_eq!(String::from_utf8_lossy(&verified.stdout).trim(), "Verified OK");

    let tampered = scratch.join("tampered.difypkg");
    python(PY_TAMPER, &[&signed, &tampered, Path::new("provider/openai_trigger.yaml")]);
    let rejected = openssl_verify(&public, &tampered, &scratch);
    assert!(!rejected.status.success(), "a tampered package still verified");

    // A second key from openssl, in PKCS#8 as `openssl genpkey` writes it, which `sign` also takes.
    let other = scratch.join("other.pem");
    let other_public = scratch.join("other.public.pem");
    run(Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
        .arg(&other));
    assert!(fs::read_to_string(&other).unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));
    run(Command::new("openssl")
        .arg("rsa")
        .arg("-in")
        .arg(&other)
        .arg("-RSAPublicKey_out")
        .arg("-out")
        .arg(&other_public));
    let partner = scratch.join("partner.difypkg");
    run(Command::new(EXE)
        .arg("sign")
        .arg(&signed)
        .arg("--key")
        .arg(&other)
        .args(["--category", "partner", "--out"])
        .arg(&partner));
    assert!(!openssl_verify(&public, &partner, &scratch).status.success(), "verified with the wrong key");
    assert!(openssl_verify(&other_public, &partner, &scratch).status.success());
    assert_eq!(
        python(script, &[&partner]),
        r#"{"authorized_category":"partner"}"#,
        "re-signing keeps one verification file"
    );
}

#[test]
fn keygen_defaults_to_4096_bits() {
    let help = stdout(&run(Command::new(EXE).args(["keygen", "--help"])));
    assert!(help.contains("[default: 4096]"), "{help}");
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The Marketplace build refuses publisher.yaml's example values unless told this is a test build,
/// before it builds anything.
#[test]
fn release_refuses_example_publisher_values() {
    let output = Command::new(EXE).args(["release"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("publisher.yaml holds example values") && stderr.contains("--example-publisher"),
        "{stderr}"
    );
    let scratch = Scratch::new("publisher");
    let missing = scratch.join("nope.yaml");
    let output = Command::new(EXE).args(["release", "--publisher"]).arg(&missing).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("nope.yaml"));
}
