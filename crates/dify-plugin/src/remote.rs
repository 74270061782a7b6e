/*!
Remote debugging: connect to a Dify plugin daemon's debugging port over TCP, register a
[`Declaration`], then speak the same session protocol as over stdio (daemon-protocol.md §6).

Registration is `handshake` (the key), `manifest_declaration`, the providers (`trigger_declaration`,
`tool_declaration`, …), one `asset_chunk` per 8 KiB of each asset, then `end`. The daemon
acknowledges nothing; a rejection is one plain-text line and a close, which ends [`run`] with the
daemon's reason. A first connection that cannot be made is retried briefly, then reported with what
to check; once a connection has been made, a drop is retried with backoff (1 s doubling to 30 s,
starting over after each accepted registration) and re-registered.
*/

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::declaration::Declaration;
use crate::serve::{ServeOptions, serve};
use crate::session::Plugin;

/// The SDK's defaults when only part of the address is given (§5 settings table).
const DEFAULT_HOST: &str = "localhost";
const DEFAULT_PORT: u16 = 5003;
/// Raw bytes per `asset_chunk`, as the SDK sends them.
const ASSET_CHUNK: usize = 8192;
/// How long to wait after `end` for a rejection line before treating silence as acceptance.
const REJECTION_WINDOW: Duration = Duration::from_millis(1500);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The first connection is tried at these delays, then given up with a diagnosis.
const FIRST_CONNECT_RETRIES: [Duration; 3] = [Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(4)];
/// One TCP connect attempt may take this long (an unroutable address would otherwise hang for minutes).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how to register: the daemon's debugging address and the key from Dify's plugin page.
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

/// A remote-debugging setting that cannot be used. Messages name the setting and how to fix it.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{name} is not set: copy the debugging key from Dify (Plugins → Debug)")]
    MissingKey { name: &'static str },
    #[error(
        "{name} {value:?} is an HTTP URL, but the debugging port speaks plain TCP: give host:port as Dify shows it \
         under Plugins → Debug (for example localhost:5003)"
    )]
    HttpUrl { name: &'static str, value: String },
    #[error("{name} {value:?} is not host:port (for example localhost:5003, tcp://localhost:5003 or [::1]:5003)")]
    BadAddress { name: &'static str, value: String },
    #[error("{name} {value:?} is not a port number (1–65535)")]
    BadPort { name: &'static str, value: String },
    #[error("INSTALL_METHOD {value:?} is not one of local, remote, serverless, aws_lambda")]
    BadInstallMethod { value: String },
    #[error("cannot read {path}: {detail}")]
    DotEnv { path: String, detail: String },
}

impl RemoteConfig {
    /// From a `--url`-style address (`host:port`, `tcp://host:port`, `[v6]:port`) and a key.
    pub fn new(url: &str, key: &str) -> Result<Self, ConfigError> {
        let (host, port) = parse_address("--url", url)?;
        if key.trim().is_empty() {
            return Err(ConfigError::MissingKey { name: "--key" });
        }
        Ok(RemoteConfig { host, port, key: key.trim().to_owned() })
    }

    /// `host:port`, for messages.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// How the SDK decides to run (`INSTALL_METHOD`, daemon-protocol.md §5): stdio under the daemon,
/// TCP for remote debugging, HTTP for serverless hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallMethod {
    Local,
    Remote(RemoteConfig),
    /// `serverless` (Dify's serverless runtime) or `aws_lambda`: HTTP on this address.
    Serverless {
        host: String,
        port: u16,
        lambda: bool,
    },
}

impl PartialEq for RemoteConfig {
    fn eq(&self, other: &Self) -> bool {
        (&self.host, self.port, &self.key) == (&other.host, other.port, &other.key)
    }
}
impl Eq for RemoteConfig {}

impl InstallMethod {
    /// Reads `INSTALL_METHOD` and its settings from `env`, falling back to a `.env` file in `dir`
    /// (the environment wins, as in the SDK): `REMOTE_INSTALL_URL` or `REMOTE_INSTALL_HOST`/`_PORT`
    /// and `REMOTE_INSTALL_KEY` for `remote`; `SERVERLESS_HOST`/`_PORT` (or `AWS_LAMBDA_PORT`) for
    /// the serverless ones. Unset means `local`; an unknown value is an error, not a silent default.
    pub fn from_env(dir: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let dotenv = read_dotenv(&dir.join(".env"))?;
        let get = |name: &str| {
            env(name)
                .or_else(|| dotenv.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let method = get("INSTALL_METHOD").unwrap_or_else(|| "local".into());
        match method.to_ascii_lowercase().as_str() {
            "local" => Ok(InstallMethod::Local),
            "remote" => {
                let key = get("REMOTE_INSTALL_KEY").ok_or(ConfigError::MissingKey { name: "REMOTE_INSTALL_KEY" })?;
                let (host, port) = match get("REMOTE_INSTALL_URL") {
                    Some(url) => parse_address("REMOTE_INSTALL_URL", &url)?,
                    None => {
                        let host = get("REMOTE_INSTALL_HOST").unwrap_or_else(|| DEFAULT_HOST.to_owned());
                        let port = match get("REMOTE_INSTALL_PORT") {
                            Some(port) => parse_port("REMOTE_INSTALL_PORT", &port)?,
                            None => DEFAULT_PORT,
                        };
                        (host, port)
                    }
                };
                Ok(InstallMethod::Remote(RemoteConfig { host, port, key }))
            }
            lambda @ ("serverless" | "aws_lambda") => {
                let lambda = lambda == "aws_lambda";
                let host = get("SERVERLESS_HOST").unwrap_or_else(|| "0.0.0.0".into());
                let port_var = if lambda { "AWS_LAMBDA_PORT" } else { "SERVERLESS_PORT" };
                let port = match get(port_var) {
                    Some(port) => parse_port(port_var, &port)?,
                    None => 8080,
                };
                Ok(InstallMethod::Serverless { host, port, lambda })
            }
            _ => Err(ConfigError::BadInstallMethod { value: method }),
        }
    }
}

fn read_dotenv(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let fail = |detail: String| ConfigError::DotEnv { path: path.display().to_string(), detail };
    match dotenvy::from_path_iter(path) {
        Ok(items) => items.collect::<Result<Vec<_>, _>>().map_err(|err| fail(err.to_string())),
        Err(dotenvy::Error::Io(err)) if err.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => Err(fail(err.to_string())),
    }
}

fn parse_port(name: &'static str, text: &str) -> Result<u16, ConfigError> {
    match text.trim().parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(ConfigError::BadPort { name, value: text.to_owned() }),
    }
}

/// `host:port`, `tcp://host:port` or `[v6]:port`.
fn parse_address(name: &'static str, text: &str) -> Result<(String, u16), ConfigError> {
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Err(ConfigError::HttpUrl { name, value: text.to_owned() });
    }
    let bad = || ConfigError::BadAddress { name, value: text.to_owned() };
    let rest = trimmed.strip_prefix("tcp://").unwrap_or(trimmed).trim_end_matches('/');
    if rest.contains("://") || rest.contains('/') {
        return Err(bad());
    }
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']').ok_or_else(bad)?,
        None if host.contains(':') => return Err(bad()),
        None => host,
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok((host.to_owned(), parse_port(name, port)?))
}

/// The registration lines, in the order the daemon requires (§6.3), each ending in `\n`.
pub fn registration_lines(declaration: &Declaration, key: &str) -> Vec<Vec<u8>> {
    let message = |kind: &str, data: Value| {
        let mut line = serde_json::to_vec(&json!({"type": kind, "data": data})).unwrap_or_default();
        line.push(b'\n');
        line
    };
    let mut lines = vec![
        message("handshake", json!({"key": key})),
        message("manifest_declaration", declaration.manifest.clone()),
        message(declaration.kind.registration_type(), Value::Array(declaration.providers.clone())),
    ];
    for asset in &declaration.assets {
        let chunks: Vec<&[u8]> = asset.bytes.chunks(ASSET_CHUNK).collect();
        for (index, chunk) in chunks.iter().enumerate() {
            let data = base64::engine::general_purpose::STANDARD.encode(chunk);
            lines.push(message(
                "asset_chunk",
                json!({"filename": asset.name, "data": data, "end": index + 1 == chunks.len()}),
            ));
        }
    }
    lines.push(message("end", json!({})));
    lines
}

/// Why [`run`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The daemon refused the registration; its reason (a plain-text line, §6.4).
    #[error("the daemon at {address} rejected the registration: {reason}")]
    Rejected { address: String, reason: String },
    /// What answered speaks HTTP: a web port, not the daemon's debugging port.
    #[error(
        "{address} answered like a web server, not like the daemon's debugging port: use the debugging host and \
         port Dify shows under Plugins → Debug (5003 by default), not Dify's web address"
    )]
    NotDebuggingPort { address: String },
    /// The first connection could not be made.
    #[error(
        "cannot reach the daemon's debugging port at {address}: {source}. Check that the address is the debugging \
         host and port Dify shows under Plugins → Debug, that the daemon runs with PLUGIN_REMOTE_INSTALLING_ENABLED=true, \
         and that no firewall or container network is in the way"
    )]
    Unreachable { address: String, source: io::Error },
}

/// Connects, registers and serves until the daemon rejects the registration or the first
/// connection cannot be made (after a few tries over 7 s); once a connection has been made, a drop
/// is retried forever with backoff.
pub async fn run<P: Plugin>(
    config: RemoteConfig,
    declaration: &Declaration,
    plugin: Arc<P>,
    options: ServeOptions,
) -> Result<(), RemoteError> {
    let lines = registration_lines(declaration, &config.key);
    let address = config.address();
    let mut backoff = FIRST_BACKOFF;
    // Once a connection has been made, the daemon exists: from then on a failure is a drop to ride
    // out, not a wrong address to report.
    let mut ever_connected = false;
    let mut first_tries = FIRST_CONNECT_RETRIES.iter();
    loop {
        match connect_once(&config, &lines, plugin.clone(), options.clone()).await {
            Ok(Outcome::Rejected(reason)) if speaks_http(&reason) => {
                return Err(RemoteError::NotDebuggingPort { address });
            }
            Ok(Outcome::Rejected(reason)) => return Err(RemoteError::Rejected { address, reason }),
            Ok(Outcome::Dropped { registered }) => {
                ever_connected = true;
                // A connection that got registered was healthy: start the backoff over.
                if registered {
                    backoff = FIRST_BACKOFF;
                }
                tracing::warn!("connection to {address} closed; reconnecting in {} s", backoff.as_secs());
            }
            Err(source) if !ever_connected => match first_tries.next() {
                Some(delay) => {
                    tracing::warn!("cannot reach {address} ({source}); trying again in {} s", delay.as_secs());
                    tokio::time::sleep(*delay).await;
                    continue;
                }
                None => return Err(RemoteError::Unreachable { address, source }),
            },
            Err(source) => {
                tracing::warn!("cannot reach {address} ({source}); retrying in {} s", backoff.as_secs());
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Whether a rejection is an HTTP server's answer (a status line or an HTML page).
fn speaks_http(reason: &str) -> bool {
    let start = reason.trim_start().get(..16).unwrap_or(reason).to_ascii_lowercase();
    start.starts_with("http/") || start.starts_with("<!doctype") || start.starts_with("<html")
}

/// How one connection ended.
enum Outcome {
    /// The daemon refused the registration and said why.
    Rejected(String),
    /// The connection dropped; `registered` when the daemon had accepted us and we served.
    Dropped { registered: bool },
}

async fn connect_once<P: Plugin>(
    config: &RemoteConfig,
    lines: &[Vec<u8>],
    plugin: Arc<P>,
    options: ServeOptions,
) -> io::Result<Outcome> {
    let connect = TcpStream::connect((config.host.as_str(), config.port));
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect).await.map_err(|_| {
        io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))
    })??;
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
        Ok(Ok([])) => return Ok(Outcome::Dropped { registered: false }),
        Ok(Ok(bytes)) if !bytes.starts_with(b"{") => {
            let mut reason = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(2), read.read_until(b'\n', &mut reason)).await;
            let reason = String::from_utf8_lossy(&reason);
            return Ok(Outcome::Rejected(reason.trim().chars().take(500).collect()));
        }
        Ok(Ok(_)) | Err(_) => {}
        Ok(Err(err)) => return Err(err),
    }
    tracing::info!("registered with the daemon at {}; serving", config.address());
    serve(read, write, plugin, options, std::future::pending()).await?;
    Ok(Outcome::Dropped { registered: true })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::declaration::{Asset, ProviderKind};

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn addresses() {
        let ok = |text: &str| parse_address("--url", text);
        assert_eq!(ok("127.0.0.1:5003"), Ok(("127.0.0.1".into(), 5003)));
        assert_eq!(ok("tcp://debug.example:15003/"), Ok(("debug.example".into(), 15003)));
        assert_eq!(ok("[::1]:5003"), Ok(("::1".into(), 5003)));
        assert!(matches!(ok("http://127.0.0.1:5003"), Err(ConfigError::HttpUrl { .. })));
        assert!(matches!(ok("HTTPS://x:1"), Err(ConfigError::HttpUrl { .. })));
        for bad in ["nohost", ":5003", "::1:5003", "host:port", "host:0", "host:70000", "a b:1", "ws://x:1", "x:1/path"]
        {
            assert!(ok(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn env_selects_the_install_method() {
        let dir = std::env::temp_dir().join(format!("dify-plugin-remote-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(InstallMethod::from_env(&dir, env_of(&[])).unwrap(), InstallMethod::Local);
        assert_eq!(
            InstallMethod::from_env(&dir, env_of(&[("INSTALL_METHOD", "local")])).unwrap(),
            InstallMethod::Local
        );
        assert_eq!(
            InstallMethod::from_env(&dir, env_of(&[("INSTALL_METHOD", "lcoal")])).unwrap_err(),
            ConfigError::BadInstallMethod { value: "lcoal".into() }
        );
        let InstallMethod::Remote(config) = InstallMethod::from_env(
            &dir,
            env_of(&[
                ("INSTALL_METHOD", "remote"),
                ("REMOTE_INSTALL_URL", "127.0.0.1:15003"),
                ("REMOTE_INSTALL_KEY", "k-1"),
            ]),
        )
        .unwrap() else {
            panic!("remote expected")
        };
        assert_eq!((config.host.as_str(), config.port), ("127.0.0.1", 15003));
        assert!(!format!("{config:?}").contains("k-1"));
        assert_eq!(
            InstallMethod::from_env(&dir, env_of(&[("INSTALL_METHOD", "remote")])).unwrap_err(),
            ConfigError::MissingKey { name: "REMOTE_INSTALL_KEY" }
        );
        assert_eq!(
            InstallMethod::from_env(&dir, env_of(&[("INSTALL_METHOD", "serverless"), ("SERVERLESS_PORT", "9090")]))
                .unwrap(),
            InstallMethod::Serverless { host: "0.0.0.0".into(), port: 9090, lambda: false }
        );

        std::fs::write(dir.join(".env"), "# dev settings\nINSTALL_METHOD=remote\nREMOTE_INSTALL_HOST=10.9.8.7\nREMOTE_INSTALL_PORT=5004\nREMOTE_INSTALL_KEY=\"from-file\"\n").unwrap();
        let InstallMethod::Remote(config) =
            InstallMethod::from_env(&dir, env_of(&[("REMOTE_INSTALL_PORT", "6000")])).unwrap()
        else {
            panic!("remote expected")
        };
        assert_eq!((config.host.as_str(), config.port, config.key.as_str()), ("10.9.8.7", 6000, "from-file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn registration_order_and_shapes() {
        let declaration = Declaration {
            manifest: json!({"name": "p"}),
            kind: ProviderKind::Trigger,
            providers: vec![json!({"identity": {"name": "p"}, "events": []})],
            assets: vec![Asset { name: "icon.svg".into(), bytes: vec![7u8; ASSET_CHUNK + 1].into() }],
        };
        let lines = registration_lines(&declaration, "key-1");
        let parsed: Vec<Value> = lines.iter().map(|l| serde_json::from_slice(l).unwrap()).collect();
        let kinds: Vec<&str> = parsed.iter().map(|m| m["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            ["handshake", "manifest_declaration", "trigger_declaration", "asset_chunk", "asset_chunk", "end"]
        );
        assert_eq!(parsed[0]["data"]["key"], "key-1");
        assert_eq!(parsed[2]["data"][0]["identity"]["name"], "p");
        assert_eq!((parsed[3]["data"]["end"].as_bool(), parsed[4]["data"]["end"].as_bool()), (Some(false), Some(true)));
        for line in &lines {
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1, "one line per message");
        }
    }
}
