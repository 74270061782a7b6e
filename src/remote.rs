//! Remote debugging: connect to a Dify plugin daemon's debugging port over TCP, register, then
//! speak the same session protocol as over stdio (daemon-protocol.md §6).
//!
//! Registration is `handshake` (the key), `manifest_declaration`, `trigger_declaration` (the
//! provider with every event inlined), one `asset_chunk` per icon piece, then `end` — all built
//! from the same embedded YAML as the package. The daemon acknowledges nothing; a rejection is one
//! plain-text line and a close, which we report and exit on. A dropped connection is retried with
//! backoff, re-registering each time.

use std::io;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::declarations;
use crate::protocol::{self, Handler, ServeOptions};

/// The SDK's defaults when only part of the address is given (§5 settings table).
const DEFAULT_HOST: &str = "localhost";
const DEFAULT_PORT: u16 = 5003;
/// Raw bytes per `asset_chunk`, as the SDK sends them.
const ASSET_CHUNK: usize = 8192;
/// How long to wait after `end` for a rejection line before treating silence as acceptance.
const REJECTION_WINDOW: Duration = Duration::from_millis(1500);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct RemoteConfig {
    pub host: String,
    pub port: u16,
    key: String,
}

impl std::fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteConfig {{ host: {:?}, port: {}, key: [REDACTED] }}", self.host, self.port)
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("REMOTE_INSTALL_KEY is not set (copy the debugging key from Dify's plugin page)")]
    MissingKey,
    #[error("{name} {value:?} is not host:port")]
    BadAddress { name: &'static str, value: String },
    #[error("cannot read .env: {0}")]
    DotEnv(String),
}

impl RemoteConfig {
    pub fn new(url: &str, key: &str) -> Result<Self, ConfigError> {
        let (host, port) =
            parse_address(url).ok_or_else(|| ConfigError::BadAddress { name: "--url", value: url.to_owned() })?;
        if key.trim().is_empty() {
            return Err(ConfigError::MissingKey);
        }
        Ok(RemoteConfig { host, port, key: key.trim().to_owned() })
    }

    /// Reads `INSTALL_METHOD`, `REMOTE_INSTALL_URL` or `REMOTE_INSTALL_HOST`/`_PORT`, and
    /// `REMOTE_INSTALL_KEY` from the environment, falling back to a `.env` file in `dir` (the
    /// environment wins, as in the SDK). None unless `INSTALL_METHOD` is `remote`.
    pub fn from_env(dir: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let dotenv = read_dotenv(&dir.join(".env"))?;
        let get = |name: &str| env(name).or_else(|| dotenv.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()));
        if !get("INSTALL_METHOD").is_some_and(|m| m.trim().eq_ignore_ascii_case("remote")) {
            return Ok(None);
        }
        let key = get("REMOTE_INSTALL_KEY").filter(|k| !k.trim().is_empty()).ok_or(ConfigError::MissingKey)?;
        let (host, port) = match get("REMOTE_INSTALL_URL").filter(|u| !u.trim().is_empty()) {
            Some(url) => {
                parse_address(&url).ok_or(ConfigError::BadAddress { name: "REMOTE_INSTALL_URL", value: url })?
            }
            None => {
                let host = get("REMOTE_INSTALL_HOST")
                    .filter(|h| !h.trim().is_empty())
                    .unwrap_or_else(|| DEFAULT_HOST.to_owned());
                let port = match get("REMOTE_INSTALL_PORT") {
                    Some(port) => port
                        .trim()
                        .parse()
                        .map_err(|_| ConfigError::BadAddress { name: "REMOTE_INSTALL_PORT", value: port })?,
                    None => DEFAULT_PORT,
                };
                (host.trim().to_owned(), port)
            }
        };
        Ok(Some(RemoteConfig { host, port, key: key.trim().to_owned() }))
    }
}

fn read_dotenv(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    match dotenvy::from_path_iter(path) {
        Ok(items) => items.collect::<Result<Vec<_>, _>>().map_err(|err| ConfigError::DotEnv(err.to_string())),
        Err(dotenvy::Error::Io(err)) if err.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => Err(ConfigError::DotEnv(err.to_string())),
    }
}

/// `host:port`, `tcp://host:port` or `[v6]:port`.
fn parse_address(text: &str) -> Option<(String, u16)> {
    let text = text.trim();
    let text = text.strip_prefix("tcp://").unwrap_or(text).trim_end_matches('/');
    let (host, port) = text.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_owned(), port.parse().ok()?))
}

/// The registration lines, in the order the daemon requires (§6.3).
pub fn registration_lines(key: &str) -> Result<Vec<Vec<u8>>, declarations::Error> {
    let message = |kind: &str, data: Value| {
        let mut line = serde_json::to_vec(&json!({"type": kind, "data": data})).expect("json");
        line.push(b'\n');
        line
    };
    let mut lines = vec![
        message("handshake", json!({"key": key})),
        message("manifest_declaration", declarations::manifest()?),
        message("trigger_declaration", json!([declarations::provider_with_events()?])),
    ];
    for (filename, bytes) in declarations::ASSETS {
        let chunks: Vec<&[u8]> = bytes.chunks(ASSET_CHUNK).collect();
        for (index, chunk) in chunks.iter().enumerate() {
            let data = base64::engine::general_purpose::STANDARD.encode(chunk);
            lines.push(message(
                "asset_chunk",
                json!({"filename": filename, "data": data, "end": index + 1 == chunks.len()}),
            ));
        }
    }
    lines.push(message("end", json!({})));
    Ok(lines)
}

/// How one connection ended.
enum Session {
    /// The daemon refused the registration and said why.
    Rejected(String),
    /// The connection dropped; `registered` when the daemon had accepted us and we served.
    Dropped { registered: bool },
}

/// Connects, registers and serves, reconnecting with backoff until rejected.
pub async fn run<H: Handler>(config: RemoteConfig, handler: Arc<H>) -> io::Result<ExitCode> {
    let lines =
        registration_lines(&config.key).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err.to_string()))?;
    let mut backoff = FIRST_BACKOFF;
    loop {
        match connect_once(&config, &lines, handler.clone()).await {
            Ok(Session::Rejected(reason)) => {
                tracing::error!("the daemon at {}:{} rejected the registration: {reason}", config.host, config.port);
                return Ok(ExitCode::FAILURE);
            }
            Ok(Session::Dropped { registered }) => {
                // A connection that got registered was healthy: start the backoff over.
                if registered {
                    backoff = FIRST_BACKOFF;
                }
                tracing::warn!(
                    "connection to {}:{} closed; reconnecting in {} s",
                    config.host,
                    config.port,
                    backoff.as_secs()
                );
            }
            Err(err) => {
                tracing::warn!(
                    "cannot reach {}:{} ({err}); retrying in {} s",
                    config.host,
                    config.port,
                    backoff.as_secs()
                );
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn connect_once<H: Handler>(config: &RemoteConfig, lines: &[Vec<u8>], handler: Arc<H>) -> io::Result<Session> {
    let stream = TcpStream::connect((config.host.as_str(), config.port)).await?;
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    for line in lines {
        write.write_all(line).await?;
    }
    write.flush().await?;
    let mut read = BufReader::with_capacity(64 * 1024, read);
    // Success is silent; a rejection is a plain-text line followed by a close (§6.4). Peek
    // without consuming, so a request that arrives first is left for the session loop.
    match tokio::time::timeout(REJECTION_WINDOW, read.fill_buf()).await {
        // A real rejection always comes with its reason line; a bare close is the daemon going away.
        Ok(Ok([])) => return Ok(Session::Dropped { registered: false }),
        Ok(Ok(bytes)) if !bytes.starts_with(b"{") => {
            let mut reason = String::new();
            read.read_line(&mut reason).await?;
            return Ok(Session::Rejected(reason.trim().chars().take(500).collect()));
        }
        Ok(Ok(_)) | Err(_) => {}
        Ok(Err(err)) => return Err(err),
    }
    tracing::info!("registered with the daemon at {}:{}; serving", config.host, config.port);
    let options = ServeOptions { heartbeat_interval: Duration::from_secs(10), ..ServeOptions::default() };
    protocol::serve(read, write, handler, options).await?;
    Ok(Session::Dropped { registered: true })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_address("127.0.0.1:5003"), Some(("127.0.0.1".into(), 5003)));
        assert_eq!(parse_address("tcp://debug.example:15003/"), Some(("debug.example".into(), 15003)));
        assert_eq!(parse_address("[::1]:5003"), Some(("::1".into(), 5003)));
        assert_eq!(parse_address("nohost"), None);
        assert_eq!(parse_address(":5003"), None);
    }

    #[test]
    fn env_selects_remote_mode() {
        let dir = std::env::temp_dir().join(format!("ot-remote-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(RemoteConfig::from_env(&dir, env_of(&[("INSTALL_METHOD", "local")])).unwrap().is_none());
        let config = RemoteConfig::from_env(
            &dir,
            env_of(&[
                ("INSTALL_METHOD", "remote"),
                ("REMOTE_INSTALL_URL", "127.0.0.1:15003"),
                ("REMOTE_INSTALL_KEY", "k-1"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!((config.host.as_str(), config.port), ("127.0.0.1", 15003));
        assert!(!format!("{config:?}").contains("k-1"));
        assert_eq!(
            RemoteConfig::from_env(&dir, env_of(&[("INSTALL_METHOD", "remote")])).unwrap_err(),
            ConfigError::MissingKey
        );

        std::fs::write(dir.join(".env"), "# dev settings\nINSTALL_METHOD=remote\nREMOTE_INSTALL_HOST=10.9.8.7\nREMOTE_INSTALL_PORT=5004\nREMOTE_INSTALL_KEY=\"from-file\"\n").unwrap();
        let config = RemoteConfig::from_env(&dir, env_of(&[("REMOTE_INSTALL_PORT", "6000")])).unwrap().unwrap();
        assert_eq!((config.host.as_str(), config.port, config.key.as_str()), ("10.9.8.7", 6000, "from-file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn registration_order_and_shapes() {
        let lines = registration_lines("key-1").unwrap();
        let kinds: Vec<String> = lines
            .iter()
            .map(|l| serde_json::from_slice::<Value>(l).unwrap()["type"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(kinds.first().map(String::as_str), Some("handshake"));
        assert_eq!(&kinds[1..3], ["manifest_declaration", "trigger_declaration"]);
        assert_eq!(kinds.last().map(String::as_str), Some("end"));
        assert!(kinds[3..kinds.len() - 1].iter().all(|k| k == "asset_chunk"));
        let trigger: Value = serde_json::from_slice(&lines[2]).unwrap();
        assert_eq!(trigger["data"][0]["identity"]["name"], crate::provider::PROVIDER);
        assert_eq!(trigger["data"][0]["events"].as_array().unwrap().len(), crate::events::EVENTS.len());
        for line in &lines {
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1, "one line per message");
        }
    }
}
