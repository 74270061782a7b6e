/*!
Remote debugging: connect to a Dify plugin daemon's debugging port over TCP, register a
[`Declaration`], then speak the same session protocol as over stdio (daemon-protocol.md §6).

Registration is `handshake` (the key), `manifest_declaration`, the providers (`trigger_declaration`,
`tool_declaration`, …), one `asset_chunk` per 8 KiB of each asset, then `end`. The daemon
acknowledges nothing; a rejection is one plain-text line and a close, which ends [`run`] with the
daemon's reason. A first connection that cannot be made is retried briefly, then reported with what
to check; once a connection has been made, a drop is retried with backoff and re-registered. The
backoff (1 s doubling to 30 s, starting over after each accepted registration), the first
connection's window (7 s) and the other waits are [`RemoteTiming`], settable from the environment.

Each reconnect decision is logged at debug level with its exact delay and retry number
(`reconnecting in 1000 ms (retry 1 since the last registration, after a registered connection
closed)`); people see a warning with the cause. The key is never logged.
*/

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::declaration::{Declaration, ProviderKind};
use crate::serve::{ServeOptions, serve};
use crate::session::Plugin;

/// The SDK's defaults when only part of the address is given (§5 settings table).
const DEFAULT_HOST: &str = "localhost";
const DEFAULT_PORT: u16 = 5003;
/// Raw bytes per `asset_chunk`, as the SDK sends them.
const ASSET_CHUNK: usize = 8192;
/// The largest value of a timing setting: one hour, in milliseconds.
const MAX_SETTING_MS: u64 = 3_600_000;

/// The environment settings of [`RemoteTiming`], all in milliseconds (read by
/// [`InstallMethod::from_env`] and [`RemoteTiming::from_env`]).
pub const TIMING_SETTINGS: [&str; 6] = [
    "REMOTE_INSTALL_BACKOFF_INITIAL_MS",
    "REMOTE_INSTALL_BACKOFF_MAX_MS",
    "REMOTE_INSTALL_FIRST_CONNECT_WINDOW_MS",
    "REMOTE_INSTALL_CONNECT_TIMEOUT_MS",
    "REMOTE_INSTALL_REJECTION_WINDOW_MS",
    "REMOTE_INSTALL_REASON_TIMEOUT_MS",
];

/// The delays between connection attempts: `initial`, doubling up to `max`, starting over at
/// `initial` after each accepted registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay before the first retry, and the first after each accepted registration.
    /// `REMOTE_INSTALL_BACKOFF_INITIAL_MS`, milliseconds, 1–3600000 (default 1000).
    pub initial: Duration,
    /// The longest delay. `REMOTE_INSTALL_BACKOFF_MAX_MS`, milliseconds, 1–3600000, at least the
    /// initial delay (default 30000, or the initial delay when that is longer and this is unset).
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(30) }
    }
}

impl Backoff {
    /// The delay before retry `retry` (1 = the first since the start or the last accepted
    /// registration): `initial · 2^(retry − 1)`, at most `max`.
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// Every wait of the remote transport. The defaults are what the Python SDK's users know; tests
/// and impatient developers shrink them through the environment (milliseconds, see
/// [`TIMING_SETTINGS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteTiming {
    /// Between connection attempts.
    pub backoff: Backoff,
    /// How long the first connection is retried (with [`Backoff`]) before [`run`] gives up with
    /// [`RemoteError::Unreachable`]: retries continue while their delays add up to at most this.
    /// With the default backoff, retries after 1, 2 and 4 s: four attempts.
    /// `REMOTE_INSTALL_FIRST_CONNECT_WINDOW_MS`, milliseconds, 0–3600000 (default 7000; 0 means
    /// one attempt).
    pub first_connect_window: Duration,
    /// One TCP connect attempt may take this long (an unroutable address would otherwise hang for
    /// minutes). `REMOTE_INSTALL_CONNECT_TIMEOUT_MS`, milliseconds, 1–3600000 (default 5000).
    pub connect_timeout: Duration,
    /// How long to wait after `end` for a rejection line before treating silence as acceptance
    /// (a request arriving first is acceptance at once).
    /// `REMOTE_INSTALL_REJECTION_WINDOW_MS`, milliseconds, 1–3600000 (default 1500).
    pub rejection_window: Duration,
    /// Once a rejection has started arriving, how long to wait for the rest of its line.
    /// `REMOTE_INSTALL_REASON_TIMEOUT_MS`, milliseconds, 1–3600000 (default 2000).
    pub reason_timeout: Duration,
}

impl Default for RemoteTiming {
    fn default() -> Self {
        RemoteTiming {
            backoff: Backoff::default(),
            first_connect_window: Duration::from_secs(7),
            connect_timeout: Duration::from_secs(5),
            rejection_window: Duration::from_millis(1500),
            reason_timeout: Duration::from_secs(2),
        }
    }
}

impl RemoteTiming {
    /// The defaults, each replaced by its setting in `env` when set ([`TIMING_SETTINGS`];
    /// surrounding blanks ignored, empty is unset).
    ///
    /// Errors: a value that is not a whole number of milliseconds in its range, or a maximum
    /// backoff below the initial one.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| env(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let millis = |name: &'static str, min: u64| -> Result<Option<Duration>, ConfigError> {
            let Some(text) = get(name) else { return Ok(None) };
            match text.parse::<u64>() {
                Ok(ms) if (min..=MAX_SETTING_MS).contains(&ms) => Ok(Some(Duration::from_millis(ms))),
                _ => Err(ConfigError::BadMillis { name, value: text, min, max: MAX_SETTING_MS }),
            }
        };
        let mut timing = RemoteTiming::default();
        let [initial, max, window, connect, rejection, reason] = TIMING_SETTINGS;
        if let Some(value) = millis(initial, 1)? {
            timing.backoff.initial = value;
        }
        match millis(max, 1)? {
            Some(value) if value < timing.backoff.initial => {
                return Err(ConfigError::BackoffMaxBelowInitial {
                    max: value.as_millis() as u64,
                    initial: timing.backoff.initial.as_millis() as u64,
                });
            }
            Some(value) => timing.backoff.max = value,
            None => timing.backoff.max = timing.backoff.max.max(timing.backoff.initial),
        }
        if let Some(value) = millis(window, 0)? {
            timing.first_connect_window = value;
        }
        if let Some(value) = millis(connect, 1)? {
            timing.connect_timeout = value;
        }
        if let Some(value) = millis(rejection, 1)? {
            timing.rejection_window = value;
        }
        if let Some(value) = millis(reason, 1)? {
            timing.reason_timeout = value;
        }
        Ok(timing)
    }

    /// The delays before the first connection's retries: the backoff's, while they add up to at
    /// most [`first_connect_window`](Self::first_connect_window). With the defaults 1, 2 and 4 s.
    pub fn first_connect_delays(&self) -> impl Iterator<Item = Duration> + use<> {
        let (backoff, window) = (self.backoff, self.first_connect_window);
        let mut waited = Duration::ZERO;
        (1..=u32::MAX).map(move |retry| backoff.delay(retry)).take_while(move |delay| {
            waited = waited.saturating_add(*delay);
            waited <= window
        })
    }
}

/// Where and how to register: the daemon's debugging address and the key from Dify's plugin page.
#[derive(Clone)]
pub struct RemoteConfig {
    pub host: String,
    pub port: u16,
    key: String,
    /// Backoff, first-connection window and the other waits.
    pub timing: RemoteTiming,
}

impl std::fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RemoteConfig {{ host: {:?}, port: {}, key: [REDACTED], timing: {:?} }}",
            self.host, self.port, self.timing
        )
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
    #[error("{name} {value:?} is not a whole number of milliseconds from {min} to {max}")]
    BadMillis { name: &'static str, value: String, min: u64, max: u64 },
    #[error("REMOTE_INSTALL_BACKOFF_MAX_MS ({max} ms) is below REMOTE_INSTALL_BACKOFF_INITIAL_MS ({initial} ms)")]
    BackoffMaxBelowInitial { max: u64, initial: u64 },
}

impl RemoteConfig {
    /// From a `--url`-style address (`host:port`, `tcp://host:port`, `[v6]:port`) and a key, with
    /// the default [`RemoteTiming`] ([`with_timing`](Self::with_timing) changes it).
    pub fn new(url: &str, key: &str) -> Result<Self, ConfigError> {
        let (host, port) = parse_address("--url", url)?;
        if key.trim().is_empty() {
            return Err(ConfigError::MissingKey { name: "--key" });
        }
        Ok(RemoteConfig { host, port, key: key.trim().to_owned(), timing: RemoteTiming::default() })
    }

    /// This configuration with `timing` (for example [`RemoteTiming::from_env`]).
    #[must_use]
    pub fn with_timing(mut self, timing: RemoteTiming) -> Self {
        self.timing = timing;
        self
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
        (&self.host, self.port, &self.key, self.timing) == (&other.host, other.port, &other.key, other.timing)
    }
}
impl Eq for RemoteConfig {}

impl InstallMethod {
    /// Reads `INSTALL_METHOD` and its settings from `env`, falling back to a `.env` file in `dir`
    /// (the environment wins, as in the SDK): `REMOTE_INSTALL_URL` or `REMOTE_INSTALL_HOST`/`_PORT`,
    /// `REMOTE_INSTALL_KEY` and the timing settings ([`TIMING_SETTINGS`], [`RemoteTiming`]) for
    /// `remote`; `SERVERLESS_HOST`/`_PORT` (or `AWS_LAMBDA_PORT`) for the serverless ones. Unset
    /// means `local`; an unknown value is an error, not a silent default.
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
                let timing = RemoteTiming::from_env(get)?;
                Ok(InstallMethod::Remote(RemoteConfig { host, port, key, timing }))
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

/// A plugin's own settings: the process environment first, then the `.env` file of the plugin's
/// folder (the working directory the daemon starts it in). Since daemon PR #799 a locally
/// installed plugin gets only an allow-listed environment (`PATH`, `HOME`, locale, temp dirs,
/// `TZ`, CA bundle, proxies, `INSTALL_METHOD=local`; daemon-protocol.md §1.1), so a setting of
/// the plugin's own reaches it through `.env` there, as remote debugging's do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    dotenv: Vec<(String, String)>,
}

impl Settings {
    /// Reads `dir/.env` (absent: no file settings).
    ///
    /// Errors: [`ConfigError::DotEnv`] when the file exists but cannot be read or parsed.
    pub fn load(dir: &Path) -> Result<Settings, ConfigError> {
        Ok(Settings { dotenv: read_dotenv(&dir.join(".env"))? })
    }

    /// `name`'s value: the environment's when it is set, else the `.env` file's (its last line for
    /// `name`), else None.
    pub fn get(&self, name: &str) -> Option<String> {
        self.get_with(name, |name| std::env::var(name).ok())
    }

    /// [`get`](Self::get) with `env` standing for the process environment.
    pub fn get_with(&self, name: &str, env: impl Fn(&str) -> Option<String>) -> Option<String> {
        env(name).or_else(|| self.dotenv.iter().rev().find(|(key, _)| key == name).map(|(_, value)| value.clone()))
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

/// The registration lines, in the order the daemon requires (§6.3), each ending in `\n`: the
/// handshake, the manifest, one `<kind>_declaration` per kind present (in [`ProviderKind::ALL`]
/// order, each an array of that kind's providers; plugin-kinds.md §11), the assets, `end`.
///
/// [`ProviderKind::ALL`]: crate::ProviderKind::ALL
pub fn registration_lines(declaration: &Declaration, key: &str) -> Vec<Vec<u8>> {
    let message = |kind: &str, data: Value| {
        let mut line = serde_json::to_vec(&json!({"type": kind, "data": data})).unwrap_or_default();
        line.push(b'\n');
        line
    };
    let mut lines =
        vec![message("handshake", json!({"key": key})), message("manifest_declaration", declaration.manifest.clone())];
    for kind in declaration.kinds() {
        let providers = declaration
            .providers_of(kind)
            .map(|provider| provider_on_the_wire(kind, provider, &declaration.manifest))
            .collect();
        lines.push(message(kind.registration_type(), Value::Array(providers)));
    }
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

/// A provider as remote registration must send it. The daemon validates each provider when it
/// arrives, before it fills in defaults from the manifest at `end` (`FillInDefaultValues`), so a
/// tool or trigger provider without `identity.description` — optional in a package — is rejected
/// (`Key: 'ToolProviderDeclaration.Identity.Description.EnUS' … 'required' tag`, seen with the
/// duck_tools example): it gets the manifest's `description` here, as the daemon would give it. Tool
/// providers also get their credentials in the shape the daemon's JSON decoder reads
/// ([`tool_provider_on_the_wire`]).
fn provider_on_the_wire(kind: ProviderKind, provider: &Value, manifest: &Value) -> Value {
    let mut provider = match kind {
        ProviderKind::Tool => tool_provider_on_the_wire(provider),
        _ => provider.clone(),
    };
    if matches!(kind, ProviderKind::Tool | ProviderKind::Trigger) {
        let described =
            provider.pointer("/identity/description/en_US").and_then(Value::as_str).is_some_and(|d| !d.is_empty());
        if let (false, Some(identity), Some(description)) =
            (described, provider.get_mut("identity").and_then(Value::as_object_mut), manifest.get("description"))
        {
            identity.insert("description".to_owned(), description.clone());
        }
    }
    provider
}

/// A tool provider as remote registration must send it: its credentials as a `credentials_schema`
/// **array** with each item's `name`, never absent. The daemon's JSON decoder
/// (`ToolProviderDeclaration.UnmarshalJSON`, unlike its YAML one) rejects a provider with neither
/// `credentials_schema` nor `credentials_for_provider` (`tools register failed, invalid tools
/// declaration: failed to unmarshal credentials_schema as array: unexpected end of JSON input`),
/// and turns the map form `credentials_for_provider: {key: {…}}` into configs whose `name` is
/// empty, in random order (both seen against the real daemon, tests/conformance/test_sdk_examples.py).
/// So a map becomes a list (keys in the map's order, `name` filled in from the key when missing),
/// `credentials_for_provider` is dropped, and no credentials at all become `[]`.
fn tool_provider_on_the_wire(provider: &Value) -> Value {
    let mut provider = provider.clone();
    let Some(object) = provider.as_object_mut() else {
        return provider;
    };
    let given = match object.get("credentials_schema") {
        Some(Value::Null) | None => None,
        Some(Value::Array(items)) if items.is_empty() => None,
        Some(schema) => Some(schema.clone()),
    };
    let for_provider = object.remove("credentials_for_provider");
    let schema = given.or(for_provider).unwrap_or(Value::Null);
    let list = match schema {
        Value::Object(map) => map
            .into_iter()
            .map(|(key, mut config)| {
                if let Some(config) = config.as_object_mut() {
                    if config.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
                        config.insert("name".to_owned(), Value::String(key));
                    }
                }
                config
            })
            .collect(),
        Value::Array(items) => items,
        _ => Vec::new(),
    };
    object.insert("credentials_schema".to_owned(), Value::Array(list));
    provider
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
    /// The first connection could not be made within [`RemoteTiming::first_connect_window`].
    #[error(
        "cannot reach the daemon's debugging port at {address} after {attempts} attempt(s): {source}. Check that the \
         address is the debugging host and port Dify shows under Plugins → Debug, that the daemon runs with \
         PLUGIN_REMOTE_INSTALLING_ENABLED=true, and that no firewall or container network is in the way"
    )]
    Unreachable { address: String, attempts: u32, source: io::Error },
}

/// Connects, registers and serves until the daemon rejects the registration or the first
/// connection cannot be made (after the retries [`RemoteTiming::first_connect_window`] allows,
/// 7 s by default); once a connection has been made, a drop is retried forever with
/// [`RemoteTiming::backoff`], which starts over after each accepted registration.
pub async fn run<P: Plugin>(
    config: RemoteConfig,
    declaration: &Declaration,
    plugin: Arc<P>,
    options: ServeOptions,
) -> Result<(), RemoteError> {
    let lines = registration_lines(declaration, &config.key);
    let address = config.address();
    let timing = config.timing;
    // Retries since the start or the last accepted registration: retry n waits backoff.delay(n).
    let mut retry: u32 = 0;
    // Once a connection has been made, the daemon exists: from then on a failure is a drop to ride
    // out, not a wrong address to report.
    let mut ever_connected = false;
    let mut first_delays = timing.first_connect_delays();
    let mut first_waited = Duration::ZERO;
    loop {
        let stream = match connect(&config).await {
            Ok(stream) => stream,
            Err(source) if !ever_connected => {
                retry = retry.saturating_add(1);
                let Some(delay) = first_delays.next() else {
                    tracing::debug!(
                        "giving up on the first connection to {address} after {retry} attempt(s): retry {retry} in {} ms \
                         would pass the first connection's {} ms window",
                        timing.backoff.delay(retry).as_millis(),
                        timing.first_connect_window.as_millis()
                    );
                    return Err(RemoteError::Unreachable { address, attempts: retry, source });
                };
                first_waited = first_waited.saturating_add(delay);
                tracing::warn!("cannot reach {address} ({source}); trying again in {}", human(delay));
                tracing::debug!(
                    "connecting again in {} ms (retry {retry}; {} ms of the first connection's {} ms window used)",
                    delay.as_millis(),
                    first_waited.as_millis(),
                    timing.first_connect_window.as_millis()
                );
                tokio::time::sleep(delay).await;
                continue;
            }
            Err(source) => {
                retry = retry.saturating_add(1);
                let delay = timing.backoff.delay(retry);
                tracing::warn!("cannot reach {address} ({source}); retrying in {}", human(delay));
                reconnect_after(delay, retry, "a failed connection attempt").await;
                continue;
            }
        };
        ever_connected = true;
        let (registered, error) = match session(stream, &config, &lines, plugin.clone(), options.clone()).await {
            Outcome::Rejected(reason) if speaks_http(&reason) => {
                return Err(RemoteError::NotDebuggingPort { address });
            }
            Outcome::Rejected(reason) => return Err(RemoteError::Rejected { address, reason }),
            Outcome::Dropped { registered, error } => (registered, error),
        };
        // A connection that got registered was healthy: start the backoff over.
        retry = if registered { 1 } else { retry.saturating_add(1) };
        let delay = timing.backoff.delay(retry);
        let error = error.map(|err| format!(" ({err})")).unwrap_or_default();
        tracing::warn!("connection to {address} closed; reconnecting in {}{error}", human(delay));
        let cause =
            if registered { "a registered connection closed" } else { "a connection closed before registration" };
        reconnect_after(delay, retry, cause).await;
    }
}

/// Logs a reconnect decision at debug level, then waits it out.
async fn reconnect_after(delay: Duration, retry: u32, cause: &str) {
    tracing::debug!(
        "reconnecting in {} ms (retry {retry} since the last registration, after {cause})",
        delay.as_millis()
    );
    tokio::time::sleep(delay).await;
}

/// A delay for people: whole seconds as `N s`, anything else as `N ms`.
fn human(delay: Duration) -> String {
    let ms = delay.as_millis();
    if ms % 1000 == 0 { format!("{} s", ms / 1000) } else { format!("{ms} ms") }
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
    /// The connection closed, or failed with `error`; `registered` when the daemon had accepted
    /// us and we served.
    Dropped { registered: bool, error: Option<io::Error> },
}

/// What happened first while the registration was being written.
enum Early {
    /// All of it was written (or the write failed).
    Written(io::Result<()>),
    /// The daemon said something (its first byte) or closed (`None`).
    Readable(io::Result<Option<u8>>),
}

/// One TCP connection to the debugging port, bounded by [`RemoteTiming::connect_timeout`].
async fn connect(config: &RemoteConfig) -> io::Result<TcpStream> {
    let timeout = config.timing.connect_timeout;
    let connect = TcpStream::connect((config.host.as_str(), config.port));
    let stream = tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {}", human(timeout))))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Registers over `stream` and serves until the connection ends.
async fn session<P: Plugin>(
    stream: TcpStream,
    config: &RemoteConfig,
    lines: &[Vec<u8>],
    plugin: Arc<P>,
    options: ServeOptions,
) -> Outcome {
    let unregistered = |err: io::Error| Outcome::Dropped { registered: false, error: Some(err) };
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::with_capacity(64 * 1024, read);
    // The daemon may answer while the registration is still being written (it rejects a bad key
    // right after the handshake, then closes, which breaks our remaining writes): watch the read
    // side meanwhile, so its reason is read rather than lost to a broken pipe.
    let answered_early = {
        let registration = async {
            for line in lines {
                write.write_all(line).await?;
            }
            write.flush().await
        };
        tokio::pin!(registration);
        let early = tokio::select! {
            written = &mut registration => Early::Written(written),
            peeked = read.fill_buf() => Early::Readable(peeked.map(|bytes| bytes.first().copied())),
        };
        match early {
            Early::Written(Ok(())) => false,
            // A broken write: a rejection may be waiting to be read.
            Early::Written(Err(err)) => match tokio::time::timeout(config.timing.reason_timeout, read.fill_buf()).await
            {
                Ok(Ok(bytes)) if bytes.first().is_some_and(|&first| first != b'{') => true,
                _ => return unregistered(err),
            },
            Early::Readable(Ok(None)) => return Outcome::Dropped { registered: false, error: None },
            Early::Readable(Ok(Some(b'{'))) => match registration.await {
                // A request before the registration ended: finish writing it; it is accepted.
                Ok(()) => false,
                Err(err) => return unregistered(err),
            },
            Early::Readable(Ok(Some(_))) => true,
            Early::Readable(Err(err)) => return unregistered(err),
        }
    };
    // Success is silent; a rejection is a plain-text line followed by a close (§6.4). Peek
    // without consuming, so a request that arrives first is left for the session loop.
    let peeked = if answered_early {
        Ok(read.fill_buf().await)
    } else {
        tokio::time::timeout(config.timing.rejection_window, read.fill_buf()).await
    };
    match peeked {
        // A real rejection always comes with its reason line; a bare close is the daemon going away.
        Ok(Ok([])) => return Outcome::Dropped { registered: false, error: None },
        Ok(Ok(bytes)) if !bytes.starts_with(b"{") => {
            let mut reason = Vec::new();
            let _ = tokio::time::timeout(config.timing.reason_timeout, read.read_until(b'\n', &mut reason)).await;
            let reason = String::from_utf8_lossy(&reason);
            return Outcome::Rejected(reason.trim().chars().take(500).collect());
        }
        Ok(Ok(_)) | Err(_) => {}
        Ok(Err(err)) => return unregistered(err),
    }
    tracing::info!("registered with the daemon at {}; serving", config.address());
    let error = serve(read, write, plugin, options, std::future::pending()).await.err();
    Outcome::Dropped { registered: true, error }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::declaration::Asset;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn settings_come_from_the_environment_then_the_plugin_folders_env_file() {
        let dir = std::env::temp_dir().join(format!("dify-plugin-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(Settings::load(&dir).unwrap(), Settings::default(), "no .env: no file settings");
        std::fs::write(dir.join(".env"), "# plugin settings\nPLUGIN_LOG=debug\nPLUGIN_WORKERS=2\nPLUGIN_WORKERS=4\n")
            .unwrap();
        let settings = Settings::load(&dir).unwrap();
        let none = |_: &str| None;
        assert_eq!(settings.get_with("PLUGIN_LOG", none).as_deref(), Some("debug"));
        assert_eq!(settings.get_with("PLUGIN_WORKERS", none).as_deref(), Some("4"), "the last line wins");
        assert_eq!(settings.get_with("PLUGIN_ABSENT", none), None);
        let env = |name: &str| (name == "PLUGIN_LOG").then(|| "warn".to_owned());
        assert_eq!(settings.get_with("PLUGIN_LOG", env).as_deref(), Some("warn"), "the environment wins");
        std::fs::write(dir.join(".env"), "NOT A LINE\n").unwrap();
        assert!(matches!(Settings::load(&dir), Err(ConfigError::DotEnv { .. })));
        let _ = std::fs::remove_dir_all(&dir);
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
        assert_eq!(config.timing, RemoteTiming::default());
        // The timing settings come from `.env` too, and the environment wins there as well.
        std::fs::write(
            dir.join(".env"),
            "INSTALL_METHOD=remote\nREMOTE_INSTALL_KEY=k\nREMOTE_INSTALL_BACKOFF_INITIAL_MS=25\nREMOTE_INSTALL_FIRST_CONNECT_WINDOW_MS=100\n",
        )
        .unwrap();
        let InstallMethod::Remote(config) =
            InstallMethod::from_env(&dir, env_of(&[("REMOTE_INSTALL_FIRST_CONNECT_WINDOW_MS", "75")])).unwrap()
        else {
            panic!("remote expected")
        };
        assert_eq!(config.timing.backoff.initial, Duration::from_millis(25));
        assert_eq!(config.timing.first_connect_window, Duration::from_millis(75));
        assert_eq!(
            InstallMethod::from_env(&dir, env_of(&[("REMOTE_INSTALL_BACKOFF_MAX_MS", "1")])).unwrap_err(),
            ConfigError::BackoffMaxBelowInitial { max: 1, initial: 25 }
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_backoff_doubles_to_its_cap() {
        let backoff = Backoff::default();
        let delays: Vec<u64> = (1..=7).map(|retry| backoff.delay(retry).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff.delay(0), Duration::from_secs(1), "retry 0 is treated as the first");
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(30), "no overflow");
        let tiny = Backoff { initial: Duration::from_millis(20), max: Duration::from_millis(100) };
        let delays: Vec<u128> = (1..=4).map(|retry| tiny.delay(retry).as_millis()).collect();
        assert_eq!(delays, [20, 40, 80, 100]);
    }

    #[test]
    fn the_first_connection_is_retried_within_its_window() {
        let ms = |timing: &RemoteTiming| timing.first_connect_delays().map(|d| d.as_millis()).collect::<Vec<_>>();
        // The defaults: retries after 1, 2 and 4 s (7 s), then the error; four attempts in all.
        assert_eq!(ms(&RemoteTiming::default()), [1000, 2000, 4000]);
        let mut timing = RemoteTiming {
            backoff: Backoff { initial: Duration::from_millis(20), max: Duration::from_secs(30) },
            first_connect_window: Duration::from_millis(140),
            ..RemoteTiming::default()
        };
        assert_eq!(ms(&timing), [20, 40, 80]);
        timing.first_connect_window = Duration::from_millis(139);
        assert_eq!(ms(&timing), [20, 40]);
        timing.first_connect_window = Duration::ZERO;
        assert!(ms(&timing).is_empty(), "a zero window is one attempt");
        // A capped backoff keeps retrying at the cap until the window is used up.
        timing.backoff.max = Duration::from_millis(40);
        timing.first_connect_window = Duration::from_millis(150);
        assert_eq!(ms(&timing), [20, 40, 40, 40]);
    }

    #[test]
    fn timing_comes_from_the_environment_in_milliseconds() {
        assert_eq!(RemoteTiming::from_env(env_of(&[])).unwrap(), RemoteTiming::default());
        let timing = RemoteTiming::from_env(env_of(&[
            ("REMOTE_INSTALL_BACKOFF_INITIAL_MS", " 20 "),
            ("REMOTE_INSTALL_BACKOFF_MAX_MS", "400"),
            ("REMOTE_INSTALL_FIRST_CONNECT_WINDOW_MS", "0"),
            ("REMOTE_INSTALL_CONNECT_TIMEOUT_MS", "250"),
            ("REMOTE_INSTALL_REJECTION_WINDOW_MS", "30"),
            ("REMOTE_INSTALL_REASON_TIMEOUT_MS", "40"),
        ]))
        .unwrap();
        let ms = Duration::from_millis;
        assert_eq!(
            timing,
            RemoteTiming {
                backoff: Backoff { initial: ms(20), max: ms(400) },
                first_connect_window: ms(0),
                connect_timeout: ms(250),
                rejection_window: ms(30),
                reason_timeout: ms(40),
            }
        );
        // An initial delay above the default cap raises the cap when the cap is not set.
        let timing = RemoteTiming::from_env(env_of(&[("REMOTE_INSTALL_BACKOFF_INITIAL_MS", "60000")])).unwrap();
        assert_eq!(timing.backoff, Backoff { initial: ms(60_000), max: ms(60_000) });
        // Empty is unset.
        assert_eq!(
            RemoteTiming::from_env(env_of(&[("REMOTE_INSTALL_BACKOFF_INITIAL_MS", "  ")])).unwrap(),
            RemoteTiming::default()
        );
        for (name, value) in [
            ("REMOTE_INSTALL_BACKOFF_INITIAL_MS", "0"),
            ("REMOTE_INSTALL_BACKOFF_INITIAL_MS", "1.5"),
            ("REMOTE_INSTALL_BACKOFF_MAX_MS", "-1"),
            ("REMOTE_INSTALL_FIRST_CONNECT_WINDOW_MS", "7s"),
            ("REMOTE_INSTALL_CONNECT_TIMEOUT_MS", "3600001"),
            ("REMOTE_INSTALL_REJECTION_WINDOW_MS", "0"),
            ("REMOTE_INSTALL_REASON_TIMEOUT_MS", "soon"),
        ] {
            let env = move |n: &str| (n == name).then(|| value.to_owned());
            let err = RemoteTiming::from_env(env).unwrap_err();
            assert!(matches!(&err, ConfigError::BadMillis { name: got, .. } if *got == name), "{name}={value}: {err}");
            assert!(err.to_string().starts_with(&format!("{name} {value:?} is not a whole number of milliseconds")));
        }
        let err = RemoteTiming::from_env(env_of(&[
            ("REMOTE_INSTALL_BACKOFF_INITIAL_MS", "500"),
            ("REMOTE_INSTALL_BACKOFF_MAX_MS", "100"),
        ]))
        .unwrap_err();
        assert_eq!(err, ConfigError::BackoffMaxBelowInitial { max: 100, initial: 500 });
    }

    struct Silent;
    impl Plugin for Silent {
        async fn handle(&self, _: crate::session::Request, _: &crate::session::Session) -> crate::session::Reply {
            crate::reply(&json!({}))
        }
    }

    /// The daemon rejects a bad key right after the handshake and closes with the rest of the
    /// registration unread (a reset): the reason is still what `run` reports, however much of the
    /// registration was left to write (here far more than any socket buffer holds).
    #[tokio::test]
    async fn a_rejection_while_the_registration_is_written_is_read_not_lost() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = listener.local_addr().unwrap().to_string();
        let daemon = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut stream = BufReader::new(stream);
            let mut handshake = String::new();
            stream.read_line(&mut handshake).await.unwrap();
            assert!(handshake.contains("handshake"), "{handshake}");
            stream.get_mut().write_all(b"handshake failed, invalid key\n").await.unwrap();
        });
        let declaration = Declaration {
            manifest: json!({"name": "p"}),
            providers: vec![(ProviderKind::Trigger, json!({"identity": {"name": "p"}}))],
            assets: vec![Asset { name: "big.bin".into(), bytes: vec![7u8; 16 << 20].into() }],
        };
        let config = RemoteConfig::new(&url, "bad-key").unwrap();
        let ran = run(config, &declaration, Arc::new(Silent), ServeOptions::default());
        // A guard against hanging (a lost reason means reconnecting forever), not a measurement.
        let result = tokio::time::timeout(Duration::from_secs(60), ran).await.expect("run returned");
        daemon.await.unwrap();
        match result {
            Err(RemoteError::Rejected { reason, .. }) => assert_eq!(reason, "handshake failed, invalid key"),
            other => panic!("expected the rejection, got {other:?}"),
        }
    }

    #[test]
    fn registration_order_and_shapes() {
        let declaration = Declaration {
            manifest: json!({"name": "p"}),
            providers: vec![(ProviderKind::Trigger, json!({"identity": {"name": "p"}, "events": []}))],
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

    #[test]
    fn registration_sends_one_message_per_kind_in_the_daemons_order() {
        let declaration = Declaration::new(json!({"name": "p"}))
            .with_provider(ProviderKind::Endpoint, json!({"settings": [], "endpoints": []}))
            .with_provider(ProviderKind::Tool, json!({"identity": {"name": "t"}, "tools": []}));
        let lines = registration_lines(&declaration, "k");
        let parsed: Vec<Value> = lines.iter().map(|l| serde_json::from_slice(l).unwrap()).collect();
        let kinds: Vec<&str> = parsed.iter().map(|m| m["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["handshake", "manifest_declaration", "tool_declaration", "endpoint_declaration", "end"]);
        assert_eq!(parsed[2]["data"], json!([{"identity": {"name": "t"}, "tools": [], "credentials_schema": []}]));
        assert_eq!(parsed[3]["data"], json!([{"settings": [], "endpoints": []}]));
    }

    #[test]
    fn tool_credentials_are_sent_as_a_named_list() {
        let config = |label: &str| json!({"type": "secret-input", "required": true, "label": {"en_US": label}});
        let with_map = json!({"identity": {"name": "t"}, "tools": [],
            "credentials_for_provider": {"b_key": config("B"), "a_key": config("A")}});
        let with_list = json!({"identity": {"name": "t"}, "tools": [],
            "credentials_schema": [{"name": "k", "type": "text-input"}]});
        let without = json!({"identity": {"name": "t"}, "tools": [], "credentials_schema": null});
        let declaration = Declaration::new(json!({"name": "p"}))
            .with_provider(ProviderKind::Tool, with_map)
            .with_provider(ProviderKind::Tool, with_list)
            .with_provider(ProviderKind::Tool, without);
        let lines = registration_lines(&declaration, "k");
        let tools: Value = serde_json::from_slice(&lines[2]).unwrap();
        let sent = &tools["data"];
        let mut a = config("A");
        a["name"] = json!("a_key");
        let mut b = config("B");
        b["name"] = json!("b_key");
        assert_eq!(sent[0]["credentials_schema"], json!([a, b]));
        assert!(sent[0].get("credentials_for_provider").is_none());
        assert_eq!(sent[1]["credentials_schema"], json!([{"name": "k", "type": "text-input"}]));
        assert_eq!(sent[2]["credentials_schema"], json!([]));
        // The declaration itself is untouched (the router and the build checks read the YAML's shape).
        assert!(declaration.providers[0].1.get("credentials_for_provider").is_some());
    }

    #[test]
    fn a_provider_without_description_gets_the_manifests() {
        let manifest = json!({"name": "p", "description": {"en_US": "from the manifest"}});
        let declaration = Declaration::new(manifest)
            .with_provider(ProviderKind::Tool, json!({"identity": {"name": "t"}, "tools": []}))
            .with_provider(ProviderKind::Tool, json!({"identity": {"name": "u", "description": {"en_US": "own"}}}))
            .with_provider(ProviderKind::Endpoint, json!({"settings": [], "endpoints": []}))
            .with_provider(ProviderKind::Trigger, json!({"identity": {"name": "g", "description": {"en_US": ""}}}));
        let lines = registration_lines(&declaration, "k");
        let sent: Vec<Value> = lines.iter().map(|l| serde_json::from_slice(l).unwrap()).collect();
        assert_eq!(sent[2]["data"][0]["identity"]["description"], json!({"en_US": "from the manifest"}));
        assert_eq!(sent[2]["data"][1]["identity"]["description"], json!({"en_US": "own"}));
        assert_eq!(sent[3]["data"][0], json!({"settings": [], "endpoints": []}));
        assert_eq!(sent[4]["data"][0]["identity"]["description"], json!({"en_US": "from the manifest"}));
    }
}
