//! A package index on loopback, standing in for PyPI: the wheels we build plus every other
//! requirement of the Marketplace package (downloaded from PyPI once, into a cache), laid out as a
//! PEP 503 "simple" index (`simple/<normalized-name>/<files>`) and served by `python3 -m
//! http.server` on 127.0.0.1, exactly the directory listing pip and uv read. Used by the install
//! smoke test, `marketplace-check --install-test` and the real daemon (its `PIP_MIRROR_URL`).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cmd::{self, run};
use crate::console::say;
use crate::error::{AtPath, Error, Result};

/// PEP 503 name normalisation.
pub(crate) fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut dash = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            dash = true;
        } else {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The project name of a wheel or sdist file name (`Flask-3.1.3-py3-none-any.whl` → `flask`).
fn project_of(file: &str) -> String {
    normalize(file.split('-').next().unwrap_or(file))
}

/// Builds the index directory at `root`: our wheels, and the distributions pip downloads for
/// `requirements` (with their dependencies) for each Python in `pythons`, cached in `cache`.
pub(crate) fn build(
    root: &Path,
    wheels: &[PathBuf],
    requirements: &[String],
    pythons: &[PathBuf],
    cache: &Path,
) -> Result<()> {
    let _ = std::fs::remove_dir_all(root);
    std::fs::create_dir_all(cache).at(cache)?;
    if !requirements.is_empty() {
        for python in pythons {
            say(&format!(
                "==> pip download {} (for {}, cached in {})",
                requirements.join(" "),
                python.display(),
                cache.display()
            ));
            run(Command::new(python)
                .args(["-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest"])
                .arg(cache)
                .args(requirements))?;
        }
    }
    let mut files: Vec<PathBuf> = wheels.to_vec();
    for entry in std::fs::read_dir(cache).at(cache)? {
        let path = entry.at(cache)?.path();
        if path.extension().is_some_and(|e| e == "whl") {
            files.push(path);
        }
    }
    for file in files {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let dir = root.join("simple").join(project_of(&name));
        std::fs::create_dir_all(&dir).at(&dir)?;
        let to = dir.join(&name);
        std::fs::copy(&file, &to).map_err(|source| Error::Copy { from: file.clone(), to, source })?;
    }
    Ok(())
}

/// A running loopback index; stopped when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) url: String,
}

impl Server {
    /// Serves `root` on 127.0.0.1:`port` (0 = any free port).
    pub(crate) fn start(root: &Path, port: u16) -> Result<Server> {
        let port = if port == 0 { free_port()? } else { port };
        let mut child = cmd::spawn(
            Command::new("python3")
                .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory"])
                .arg(root)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::IndexNotListening { port });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Server { child, url: format!("http://127.0.0.1:{port}/simple") })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port free on 127.0.0.1 (the system's pick; free when this returns).
pub(crate) fn free_port() -> Result<u16> {
    let network = |source| Error::Network { address: "127.0.0.1:0".to_owned(), source };
    Ok(std::net::TcpListener::bind("127.0.0.1:0").map_err(network)?.local_addr().map_err(network)?.port())
}

/// The requirement lines of a requirements.txt other than `name` (ours comes from our own build).
pub(crate) fn other_requirements(requirements: &str, ours: &str) -> Vec<String> {
    requirements
        .lines()
        .map(|line| line.split(" #").next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with('-'))
        .filter(|line| {
            let name: String =
                line.chars().take_while(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.')).collect();
            normalize(&name) != normalize(ours)
        })
        .map(str::to_owned)
        .collect()
}

/// The Python interpreters to prepare the index for: a CPython 3.12 (what the daemon's venvs and
/// the Marketplace use) when one is found, and `python3`.
pub(crate) fn pythons() -> Vec<PathBuf> {
    let mut found = vec![PathBuf::from("python3")];
    if let Some(py312) = python312() {
        found.push(py312);
    }
    found
}

/// A CPython 3.12: $OPENAI_TRIGGER_PYTHON312, python3.12 on PATH, or pyenv's.
pub(crate) fn python312() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(path) = std::env::var_os("OPENAI_TRIGGER_PYTHON312") {
        candidates.push(path.into());
    }
    candidates.push("python3.12".into());
    if let Some(home) = std::env::var_os("HOME") {
        if let Ok(entries) = std::fs::read_dir(Path::new(&home).join(".pyenv/versions")) {
            let mut versions: Vec<PathBuf> = entries.filter_map(std::result::Result::ok).map(|e| e.path()).collect();
            versions.sort();
            for version in versions.into_iter().rev() {
                if version.file_name().is_some_and(|n| n.to_string_lossy().starts_with("3.12.")) {
                    candidates.push(version.join("bin/python3.12"));
                }
            }
        }
    }
    candidates.into_iter().find(|python| {
        Command::new(python)
            .args(["-c", "import sys, venv; sys.exit(0 if sys.version_info[:2] == (3, 12) else 1)"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalise_as_pep_503_says() {
        assert_eq!(normalize("Flask"), "flask");
        assert_eq!(normalize("hookwright_openai_trigger"), "hookwright-openai-trigger");
        assert_eq!(normalize("a.-_B"), "a-b");
        assert_eq!(project_of("MarkupSafe-3.0.2-cp312-cp312-manylinux_2_17_x86_64.whl"), "markupsafe");
    }

    #[test]
    fn other_requirements_leave_ours_and_comments_out() {
        let text =
            "# pins\nhookwright-openai-trigger==0.1.0\nflask==3.1.3  # front\n\n--find-links x\nrequests==2.34.2\n";
        assert_eq!(other_requirements(text, "hookwright_openai_trigger"), ["flask==3.1.3", "requests==2.34.2"]);
    }
}
