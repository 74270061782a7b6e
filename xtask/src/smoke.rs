//! Smoke tests of what was built, through a real serve session played the way the daemon plays it
//! (`dify_plugin::host`): a signed `batch.completed` dispatched must fire `[batch_completed, any_event]`.

use std::io;
use std::path::Path;

use dify_plugin::host::{MemoryStorage, PluginProcess, StorageMode, trigger};
use openai_trigger::provider::{PROVIDER, unix_now};
use openai_trigger::samples::{DEMO_SECRET, SignedDelivery, sample_body};
use serde_json::json;

/// Starts `command` (which must serve the protocol on stdio) and runs one dispatch through it.
pub(crate) fn one_session(command: tokio::process::Command) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let storage = MemoryStorage::with_quota(openai_trigger::shared_dedupe::MANIFEST_STORAGE_BYTES);
        let program = command.as_std().get_program().to_string_lossy().into_owned();
        let plugin = PluginProcess::spawn(command, StorageMode::Memory(storage))
            .await
            .map_err(|err| io::Error::new(err.kind(), format!("cannot start {program}: {err}")))?;
        let now = unix_now();
        let delivery =
            SignedDelivery::new(DEMO_SECRET, "wh_smoke_1", now, sample_body("batch.completed", "evt_smoke", now));
        let subscription = trigger::subscription(
            "https://dify.localhost/triggers/plugin/smoke",
            json!({"webhook_secret": DEMO_SECRET}),
        );
        let answer = plugin.call(trigger::dispatch(PROVIDER, &delivery.raw_request("/t"), &subscription)).await?;
        let events = answer.as_ref().ok().map(|chunk| chunk["events"].clone());
        if events != Some(json!(["batch_completed", "any_event"])) {
            return Err(io::Error::other(format!(
                "smoke session: expected [batch_completed, any_event], got {answer:?}"
            )));
        }
        let status = plugin.close().await?;
        if !status.success() {
            return Err(io::Error::other(format!("smoke session: the plugin exited with {status} on EOF")));
        }
        Ok(())
    })
}

/// Extracts `package` as the daemon does (every file 0644, directories created) into a temporary
/// directory and runs `python3 -m main` there through [`one_session`].
pub(crate) fn extracted_package(package: &Path) -> io::Result<()> {
    let dir = std::env::temp_dir().join(format!("xtask-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (entries, _) = crate::package::archive::read(&crate::package::read(package)?).map_err(io::Error::other)?;
    for entry in entries {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(&entry.name);
        std::fs::create_dir_all(path.parent().unwrap_or(&dir))?;
        std::fs::write(&path, &entry.data)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    }
    crate::say(&format!("==> smoke test: python3 -m main in {} (extracted like the daemon does)", dir.display()));
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
pub(crate) fn marketplace_package(package: &Path, index: &str) -> io::Result<String> {
    let dir = std::env::temp_dir().join(format!("xtask-marketplace-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (entries, _) = crate::package::archive::read(&crate::package::read(package)?).map_err(io::Error::other)?;
    let plugin = dir.join("plugin");
    for entry in &entries {
        let path = plugin.join(&entry.name);
        std::fs::create_dir_all(path.parent().unwrap_or(&plugin))?;
        std::fs::write(&path, &entry.data)?;
    }
    let venv = dir.join("venv");
    let python = crate::index::python312().unwrap_or_else(|| "python3".into());
    crate::say(&format!("==> smoke test: {} in a fresh venv, requirements from {index}", package.display()));
    let started = std::time::Instant::now();
    crate::cmd::run(std::process::Command::new(&python).args(["-m", "venv"]).arg(&venv))?;
    crate::cmd::run(
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

/// `python -m main` in serverless mode on a free loopback port: cold start to the Flask banner and
/// to `/health`, one dispatch through `POST /invoke`, memory of the front and the binary.
fn serverless_session(venv: &Path, plugin: &Path) -> io::Result<String> {
    use std::io::{BufRead, BufReader, Read, Write};
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let started = std::time::Instant::now();
    let mut child = std::process::Command::new(venv.join("bin/python"))
        .args(["-m", "main"])
        .current_dir(plugin)
        .env("INSTALL_METHOD", "serverless")
        .env("SERVERLESS_HOST", "127.0.0.1")
        .env("SERVERLESS_PORT", port.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| io::Error::other("no stdout"))?;
    let (tx, banner) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("Serving Flask app") {
                let _ = tx.send(());
            }
        }
    });
    let result = (|| -> io::Result<String> {
        banner
            .recv_timeout(std::time::Duration::from_secs(20))
            .map_err(|_| io::Error::other("serverless: no Flask banner within 20 s"))?;
        let to_banner = started.elapsed();
        let request = |method: &str, path: &str, body: &[u8]| -> io::Result<(u16, Vec<u8>)> {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
            write!(
                stream,
                "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            stream.write_all(body)?;
            let mut response = Vec::new();
            stream.read_to_end(&mut response)?;
            let split =
                response.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| io::Error::other("no HTTP head"))? + 4;
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
        if !matches!(&health, Ok((200, body)) if body.ends_with(b"OK")) {
            return Err(io::Error::other(format!("serverless: GET /health answered {health:?}")));
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
            return Err(io::Error::other(format!(
                "serverless: POST /invoke answered {status}: {}",
                &text[..text.len().min(400)]
            )));
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
    while child.try_wait()?.is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            return Err(io::Error::other("serverless: python -m main did not exit within 10 s of SIGTERM"));
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
