//! Smoke tests of what was built, through a real serve session played the way the daemon plays it
//! (`dify_plugin::host`): a signed `batch.completed` dispatched must fire `[batch_completed, any_event]`.

use std::path::Path;

use dify_plugin::host::{MemoryStorage, PluginProcess, StorageMode, trigger};
use openai_trigger::provider::{PROVIDER, unix_now};
use openai_trigger::samples::{DEMO_SECRET, SignedDelivery, sample_body};
use serde_json::json;

use crate::console::say;
use crate::error::{AtPath, Error, Result};
use crate::package::{self, Entry};
use crate::{cmd, index};

/// Starts `command` (which must serve the protocol on stdio) and runs one dispatch through it.
pub(crate) fn one_session(command: tokio::process::Command) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(Error::Runtime)?;
    runtime.block_on(async {
        let storage = MemoryStorage::with_quota(openai_trigger::shared_dedupe::MANIFEST_STORAGE_BYTES);
        let program = command.as_std().get_program().to_string_lossy().into_owned();
        let session = |source| Error::Child { command: format!("smoke session with {program}"), source };
        let plugin = PluginProcess::spawn(command, StorageMode::Memory(storage))
            .await
            .map_err(|source| Error::Start { command: program.clone(), source })?;
        let now = unix_now();
        let delivery =
            SignedDelivery::new(DEMO_SECRET, "wh_smoke_1", now, sample_body("batch.completed", "evt_smoke", now));
        let subscription = trigger::subscription(
            "https://dify.localhost/triggers/plugin/smoke",
            json!({"webhook_secret": DEMO_SECRET}),
        );
        let answer = plugin
            .call(trigger::dispatch(PROVIDER, &delivery.raw_request("/t"), &subscription))
            .await
            .map_err(session)?;
        let events = answer.as_ref().ok().map(|chunk| chunk["events"].clone());
        if events != Some(json!(["batch_completed", "any_event"])) {
            return Err(Error::SmokeAnswer { program: program.clone(), answer: format!("{answer:?}") });
        }
        let status = plugin.close().await.map_err(session)?;
        if !status.success() {
            return Err(Error::SmokeExit { program: program.clone(), status });
        }
        Ok(())
    })
}

/// Extracts `package` as the daemon does (every file 0644, directories created) into a temporary
/// directory and runs `python3 -m main` there through [`one_session`].
pub(crate) fn extracted_package(package: &Path) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("xtask-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (entries, _) = package::archive::read(&std::fs::read(package).at(package)?)?;
    extract(&entries, &dir, Some(0o644))?;
    say(&format!("==> smoke test: python3 -m main in {} (extracted like the daemon does)", dir.display()));
    let mut command = tokio::process::Command::new("python3");
    command.args(["-m", "main"]).current_dir(&dir);
    let result = one_session(command);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Installs the Marketplace package's requirements from `index` into a fresh venv (as the daemon and
/// Dify Cloud install them from PyPI), then runs it: one session in local mode, then serverless mode
/// (`python -m main` with INSTALL_METHOD=serverless: Flask in front of the binary) answering a
/// dispatch through `POST /invoke` and `GET /health`, then SIGTERM. Returns what it measured.
pub(crate) fn marketplace_package(package: &Path, index: &str) -> Result<String> {
    let dir = std::env::temp_dir().join(format!("xtask-marketplace-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (entries, _) = package::archive::read(&std::fs::read(package).at(package)?)?;
    let plugin = dir.join("plugin");
    extract(&entries, &plugin, None)?;
    let venv = dir.join("venv");
    let python = index::python312().unwrap_or_else(|| "python3".into());
    say(&format!("==> smoke test: {} in a fresh venv, requirements from {index}", package.display()));
    let started = std::time::Instant::now();
    cmd::run(std::process::Command::new(&python).args(["-m", "venv"]).arg(&venv))?;
    cmd::run(
        std::process::Command::new(venv.join("bin/python"))
            .args(["-m", "pip", "install", "--quiet", "--index-url", index, "-r"])
            .arg(plugin.join("requirements.txt")),
    )?;
    let installed = started.elapsed();
    let mut local = tokio::process::Command::new(venv.join("bin/python"));
    local.args(["-m", "main"]).current_dir(&plugin);
    one_session(local)?;
    let serverless = serverless_session(&venv, &plugin);
    let _ = std::fs::remove_dir_all(&dir);
    let serverless = serverless?;
    Ok(format!(
        "  Marketplace package: requirements installed in {:.1} s; local mode answered; {serverless}",
        installed.as_secs_f64()
    ))
}

/// Writes `entries` under `dir`, directories created, each file with `mode` when given.
fn extract(entries: &[Entry], dir: &Path, mode: Option<u32>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in entries {
        let path = dir.join(&entry.name);
        let parent = path.parent().unwrap_or(dir);
        std::fs::create_dir_all(parent).at(parent)?;
        std::fs::write(&path, &entry.data).at(&path)?;
        if let Some(mode) = mode {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).at(&path)?;
        }
    }
    Ok(())
}

/// `python -m main` in serverless mode on a free loopback port: cold start to the Flask banner and
/// to `/health`, one dispatch through `POST /invoke`, memory of the front and the binary.
fn serverless_session(venv: &Path, plugin: &Path) -> Result<String> {
    use std::io::{BufRead, BufReader, Read, Write};
    let port = index::free_port()?;
    let address = format!("127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let mut command = std::process::Command::new(venv.join("bin/python"));
    command
        .args(["-m", "main"])
        .current_dir(plugin)
        .env("INSTALL_METHOD", "serverless")
        .env("SERVERLESS_HOST", "127.0.0.1")
        .env("SERVERLESS_PORT", port.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd::spawn(&mut command)?;
    let described = cmd::describe(&command);
    let stdout = child.stdout.take().ok_or_else(|| Error::NoPipe { command: described.clone(), pipe: "stdout" })?;
    let (tx, banner) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(std::result::Result::ok) {
            if line.contains("Serving Flask app") {
                let _ = tx.send(());
            }
        }
    });
    let result = (|| -> Result<String> {
        banner.recv_timeout(std::time::Duration::from_secs(20)).map_err(|_| Error::Serverless {
            problem: "no stdout line containing \"Serving Flask app\" within 20 s".to_owned(),
        })?;
        let to_banner = started.elapsed();
        let request = |method: &str, path: &str, body: &[u8]| -> Result<(u16, Vec<u8>)> {
            let network = |source| Error::Network { address: address.clone(), source };
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(network)?;
            write!(
                stream,
                "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .map_err(network)?;
            stream.write_all(body).map_err(network)?;
            let mut response = Vec::new();
            stream.read_to_end(&mut response).map_err(network)?;
            let split = response.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| Error::Serverless {
                problem: format!("{method} {path} answered without an HTTP head"),
            })? + 4;
            let status =
                String::from_utf8_lossy(&response[..split]).split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            Ok((status, response[split..].to_vec()))
        };
        let mut health = request("GET", "/health", b"");
        while !matches!(&health, Ok((200, _))) && started.elapsed() < std::time::Duration::from_secs(20) {
            std::thread::sleep(std::time::Duration::from_millis(20));
            health = request("GET", "/health", b"");
        }
        let to_health = started.elapsed();
        match &health {
            Ok((200, body)) if body.ends_with(b"OK") => {}
            Ok((status, body)) => {
                return Err(Error::Serverless {
                    problem: format!("GET /health answered {status}: {}", String::from_utf8_lossy(body)),
                });
            }
            Err(err) => return Err(Error::Serverless { problem: format!("GET /health: {err}") }),
        }
        let now = unix_now();
        let delivery = SignedDelivery::new(
            DEMO_SECRET,
            "wh_serverless_1",
            now,
            sample_body("batch.completed", "evt_serverless", now),
        );
        let subscription = trigger::subscription(
            "https://dify.localhost/triggers/plugin/smoke",
            json!({"webhook_secret": DEMO_SECRET}),
        );
        let envelope = json!({"session_id": "serverless-smoke", "event": "request", "data": trigger::dispatch(PROVIDER, &delivery.raw_request("/t"), &subscription)});
        let sent = std::time::Instant::now();
        let (status, body) = request("POST", "/invoke", envelope.to_string().as_bytes())?;
        let round_trip = sent.elapsed();
        let text = String::from_utf8_lossy(&body).into_owned();
        let chunked_ok = text.contains("\"type\":\"stream\"")
            && text.contains("[\"batch_completed\",\"any_event\"]")
            && text.contains("\"type\":\"end\"");
        if status != 200 || !chunked_ok {
            let shown: String = text.chars().take(400).collect();
            return Err(Error::Serverless { problem: format!("POST /invoke answered {status}: {shown}") });
        }
        let rss = process_tree_rss_kib(child.id());
        Ok(format!(
            "serverless mode: Flask banner after {:.0} ms, /health OK after {:.0} ms, one dispatch through /invoke {:.1} ms, RSS {:.1} MiB (Flask front and binary)",
            to_banner.as_secs_f64() * 1e3,
            to_health.as_secs_f64() * 1e3,
            round_trip.as_secs_f64() * 1e3,
            rss as f64 / 1024.0
        ))
    })();
    let _ = std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().map_err(|source| Error::Child { command: described.clone(), source })?.is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            return Err(Error::Serverless { problem: "python -m main did not exit within 10 s of SIGTERM".to_owned() });
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    result
}

/// VmRSS of `pid` and its children, in KiB.
fn process_tree_rss_kib(pid: u32) -> u64 {
    let rss = |pid: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    rss(&pid.to_string()) + children.split_whitespace().map(rss).sum::<u64>()
}
