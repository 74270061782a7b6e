/*!
Command line: parse once with clap, then run one command. `serve` (the default) is what the Dify
plugin daemon starts; `remote` registers with a daemon's debugging port; `demo`, `dev` and `send`
are for trying it locally. Release tooling (package, sign) lives in `cargo xtask`, not here: the
binary that is tested is the binary that is shipped.
*/

use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use dify_plugin::{InstallMethod, RemoteConfig, RunError, ServeOptions};

use crate::declarations;
use crate::provider::OpenAiTrigger;

/// The plugin's version: the crate's, which the manifest and the wheel carry too (a tidy test holds them equal).
pub const VERSION_NUMBER: &str = env!("CARGO_PKG_VERSION");

/// `--version`: the crate version and the digest of the declarations embedded in this binary
/// (`cargo xtask package` reads it to refuse binaries built from other declarations).
const VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (declarations sha256:", env!("OPENAI_TRIGGER_DECLARATIONS_SHA256"), ")");

#[derive(Debug, Parser)]
#[command(name = "openai-trigger", version = VERSION, about = "Dify trigger plugin for OpenAI webhooks, as one native binary")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Speak the Dify plugin protocol on stdin/stdout (what the plugin daemon runs; the default).
    /// With INSTALL_METHOD=remote (environment or ./.env), connect to a daemon's debugging port instead.
    Serve,
    /// Connect to a Dify plugin daemon's remote-debugging port, register, and serve there.
    Remote {
        /// The daemon's debugging address, host:port (Dify shows it next to the key).
        #[arg(long, env = "REMOTE_INSTALL_URL")]
        url: String,
        /// The debugging key from Dify's plugin page.
        #[arg(long, env = "REMOTE_INSTALL_KEY", hide_env_values = true)]
        key: String,
    },
    /// Play Dify locally: send a signed sample of every OpenAI event (and some bad ones) through
    /// the plugin over the real stdio protocol, and print what each produced.
    Demo,
    /// Run a local HTTP endpoint that plays Dify for real webhooks and prints each run's variables
    /// as JSON lines.
    Dev {
        /// The endpoint's signing secret(s), whsec_… (several separated by spaces or commas).
        #[arg(long, env = "OPENAI_WEBHOOK_SECRET", hide_env_values = true)]
        secret: String,
        /// Port to listen on.
        #[arg(long, default_value_t = 8787)]
        port: u16,
        /// Address to listen on. Keep it on loopback unless a tunnel needs more.
        #[arg(long, default_value = "127.0.0.1")]
        bind: IpAddr,
    },
    /// Sign and POST a realistic sample OpenAI event to a URL (for example `dev`'s endpoint).
    Send {
        /// OpenAI event type, e.g. batch.completed (unknown types get a generic payload).
        event_type: String,
        /// Where to POST, e.g. http://127.0.0.1:8787/ (plain HTTP).
        #[arg(long)]
        url: String,
        /// Signing secret, whsec_….
        #[arg(long, env = "OPENAI_WEBHOOK_SECRET", hide_env_values = true)]
        secret: String,
        /// The webhook-id header; a fresh one by default (repeat one to see duplicate handling).
        #[arg(long)]
        webhook_id: Option<String>,
        /// Sign with a timestamp this many seconds in the past (over 300 is rejected as stale).
        #[arg(long, default_value_t = 0)]
        age: i64,
    },
}

pub fn main() -> ExitCode {
    crate::launcher::remove_copy();
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    // Decided before logging starts: under the daemon (stdio) the default level is quieter.
    let method = match command {
        Command::Serve => match InstallMethod::from_env(std::path::Path::new("."), |name| std::env::var(name).ok()) {
            Ok(method) => Some(method),
            Err(err) => {
                eprintln!("openai-trigger: {err}");
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    init_logging(matches!(method, Some(InstallMethod::Local)));
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("openai-trigger: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<ExitCode, RunError> = runtime.block_on(async {
        match command {
            Command::Serve => {
                let method = method.unwrap_or(InstallMethod::Local);
                serve(method).await.map(|()| ExitCode::SUCCESS)
            }
            Command::Remote { url, key } => {
                let config = RemoteConfig::new(&url, &key)?;
                serve(InstallMethod::Remote(config)).await.map(|()| ExitCode::SUCCESS)
            }
            Command::Demo => Ok(crate::demo::run().await?),
            Command::Dev { secret, port, bind } => Ok(crate::dev::serve(&secret, bind, port).await?),
            Command::Send { event_type, url, secret, webhook_id, age } => {
                Ok(crate::dev::send(&event_type, &url, &secret, webhook_id, age).await?)
            }
        }
    });
    // Sessions may still hold blocking reads of stdin; do not wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(code) => code,
        Err(RunError::Io(err)) if err.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("openai-trigger: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the plugin the way `method` asks, until the daemon stops it.
async fn serve(method: InstallMethod) -> Result<(), RunError> {
    let plugin = Arc::new(OpenAiTrigger::with_system_clock().with_api_budget(api_budget()));
    dify_plugin::run_as(method, plugin, &declarations::declaration(), ServeOptions::default()).await
}

/// `OPENAI_TRIGGER_API_TIMEOUT`: seconds one action may spend on OpenAI's API (fetching an event's
/// details, creating or checking an endpoint), 1–120 (default 20). A value outside that is
/// reported and the default used.
fn api_budget() -> std::time::Duration {
    let default = crate::provider::DEFAULT_API_BUDGET;
    match std::env::var("OPENAI_TRIGGER_API_TIMEOUT") {
        Err(_) => default,
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(seconds @ 1..=120) => std::time::Duration::from_secs(seconds),
            _ => {
                tracing::warn!(
                    "OPENAI_TRIGGER_API_TIMEOUT={:?} is not 1-120 seconds; using {} s",
                    dify_plugin::wire::truncate(&text, 16),
                    default.as_secs()
                );
                default
            }
        },
    }
}

/// Logs go to stderr, never stdout (stdout is the protocol). `OPENAI_TRIGGER_LOG` sets the level;
/// under the daemon the default is `warn`, because the daemon records every stderr line as a warning.
fn init_logging(under_daemon: bool) {
    let level = std::env::var("OPENAI_TRIGGER_LOG").ok().and_then(|v| v.parse::<tracing::Level>().ok());
    let level = level.unwrap_or(if under_daemon { tracing::Level::WARN } else { tracing::Level::INFO });
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .with_max_level(level)
        .try_init();
}
