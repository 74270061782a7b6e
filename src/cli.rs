/*!
Command line: parse once with clap, then run one command. `serve` (the default) is what the Dify
plugin daemon starts; `remote` registers with a daemon's debugging port; `demo`, `dev` and `send`
are for trying it locally. Release tooling (package, sign) lives in `cargo xtask`, not here: the
binary that is tested is the binary that is shipped.
*/

use std::io::IsTerminal;
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use dify_plugin::{InstallMethod, RemoteConfig, RunError, ServeOptions, Settings};

use crate::declarations;
use crate::provider::OpenAiTrigger;

/// The plugin's version: the crate's, which the manifest and the wheel carry too (a tidy test holds them equal).
pub const VERSION_NUMBER: &str = env!("CARGO_PKG_VERSION");

/// `--version`: the crate version and the digest of the declarations embedded in this binary
/// (`cargo xtask package` reads it to refuse binaries built from other declarations).
const VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (declarations sha256:", env!("OPENAI_TRIGGER_DECLARATIONS_SHA256"), ")");

/// The top-level help's closing part: what a person most likely wants, and every setting read
/// from the environment.
const AFTER_HELP: &str = "\
Examples:
  openai-trigger demo          every OpenAI event through the plugin, no setup
  openai-trigger dev           a local endpoint for webhooks (prints a secret)
  openai-trigger send batch.completed --secret whsec_...
                               post a signed sample to it (another terminal)

Environment, or ./.env (the plugin folder's: since daemon PR #799 a plugin
gets only PATH, HOME, locale, proxies and INSTALL_METHOD from the daemon):
  INSTALL_METHOD              local (default), remote, serverless, aws_lambda
  REMOTE_INSTALL_URL          remote debugging address, host:port
                              (or REMOTE_INSTALL_HOST and REMOTE_INSTALL_PORT)
  REMOTE_INSTALL_KEY          remote debugging key
  OPENAI_WEBHOOK_SECRET       signing secret(s) for dev and send
  OPENAI_TRIGGER_LOG          error, warn, info, debug or trace (default warn
                              under the daemon, else info); logs go to stderr
  OPENAI_TRIGGER_API_TIMEOUT  seconds one action may spend on OpenAI's API,
                              1-120 (default 20)
  OPENAI_TRIGGER_WORKERS      worker threads, 1-64 (default 1, the fastest)";

#[derive(Debug, Parser)]
#[command(
    name = "openai-trigger",
    version = VERSION,
    about = "Dify trigger plugin for OpenAI webhooks, as one native binary",
    long_about = "Dify trigger plugin for OpenAI webhooks, as one native binary.\n\n\
        With no command it serves the Dify plugin protocol on stdin/stdout: that is how Dify's plugin daemon \
        runs it. People usually want demo, dev or send.",
    after_help = AFTER_HELP,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the Dify plugin protocol on stdin/stdout (what the plugin daemon runs; the default).
    ///
    /// With INSTALL_METHOD=remote (environment or ./.env) it connects to a daemon's debugging port
    /// instead, and with serverless or aws_lambda it serves HTTP.
    #[command(after_help = "Example (what the daemon does):\n  INSTALL_METHOD=local openai-trigger serve")]
    Serve,
    /// Connect to a Dify plugin daemon's remote-debugging port, register, and serve there.
    #[command(after_help = "Example (Dify shows the address and the key under Plugins → Debug):\n  \
        openai-trigger remote --url debug.example.com:5003 --key 6b5c…")]
    Remote {
        /// The daemon's debugging address: host:port or tcp://host:port (not http://).
        #[arg(long, env = "REMOTE_INSTALL_URL", hide_env_values = true)]
        url: String,
        /// The debugging key from Dify's plugin page.
        #[arg(long, env = "REMOTE_INSTALL_KEY", hide_env_values = true)]
        key: String,
    },
    /// Play Dify locally: send a signed sample of every OpenAI event (and some bad ones) through
    /// the plugin over the real stdio protocol, and print what each produced.
    #[command(after_help = "Examples:\n  openai-trigger demo\n  openai-trigger demo --wide   (every key variable)")]
    Demo {
        /// Show each event's key variables in full, whatever the terminal's width.
        #[arg(long)]
        wide: bool,
    },
    /// Run a local HTTP endpoint that plays Dify for real webhooks and prints each run's variables
    /// as JSON lines.
    #[command(after_help = "Examples:\n  openai-trigger dev                       (prints a fresh test secret)\n  \
        openai-trigger dev --secret whsec_… --port 9000\n\
        Then, in another terminal:\n  openai-trigger send batch.completed --secret whsec_…")]
    Dev {
        /// The endpoint's signing secret(s), whsec_… (several separated by spaces or commas).
        /// Without it, a fresh test secret is made and printed.
        #[arg(long, env = "OPENAI_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// Port to listen on.
        #[arg(long, default_value_t = 8787)]
        port: u16,
        /// Address to listen on. Keep it on loopback unless a tunnel needs more.
        #[arg(long, default_value = "127.0.0.1")]
        bind: IpAddr,
        /// Print every run's variables as JSON lines instead of one line for people.
        #[arg(long)]
        json: bool,
    },
    /// Sign and POST a realistic sample OpenAI event to a URL (by default `dev`'s endpoint).
    #[command(after_long_help = send_help(), after_help = "Event types: see --help. Example:\n  \
        openai-trigger send batch.completed --secret whsec_…")]
    Send {
        /// The event type: OpenAI's (batch.completed) or the Dify event's name (batch_completed).
        event_type: String,
        /// Where to POST (plain http://, e.g. `dev`'s endpoint or a tunnel's local side).
        #[arg(long, default_value = crate::dev::DEFAULT_URL)]
        url: String,
        /// Signing secret, whsec_… (the one `dev` printed).
        #[arg(long, env = "OPENAI_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// The webhook-id header; a fresh one by default (repeat one to see duplicate handling).
        #[arg(long)]
        webhook_id: Option<String>,
        /// Sign with a timestamp this many seconds in the past (over 300 is rejected as stale;
        /// negative: in the future).
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        age: i64,
        /// Send a type this release does not know (it fires only any_event).
        #[arg(long)]
        any_type: bool,
        /// Print the answer as one JSON object instead of a line of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a fresh test signing secret (whsec_…, 32 random bytes) for dev and send.
    #[command(after_help = "Example:\n  openai-trigger dev --secret \"$(openai-trigger secret)\"")]
    Secret,
}

/// `send --help`: every type it knows, as OpenAI names them and as Dify's events are named.
fn send_help() -> String {
    let mut text = String::from("Event types (OpenAI type → Dify event):\n");
    for openai_type in crate::events::known_openai_types() {
        let name = crate::events::by_openai_type(openai_type).map(|spec| spec.name).unwrap_or("");
        text.push_str(&format!("  {openai_type:<36} {name}\n"));
    }
    text.push_str(
        "Any other type needs --any-type (it fires only any_event).\n\nExamples:\n  \
         openai-trigger send batch.completed --secret whsec_…\n  \
         openai-trigger send batch.completed --secret whsec_… --webhook-id wh_1\n      \
         (twice: the second is a duplicate)\n  \
         openai-trigger send batch.completed --secret whsec_… --age 600\n      \
         (stale: rejected)",
    );
    text
}

pub fn main() -> ExitCode {
    crate::launcher::remove_copy();
    // Help fits the terminal; with none (a pipe, a file) and no COLUMNS, it fits 80 columns.
    let mut command = Cli::command();
    if std::env::var_os("COLUMNS").is_none() && terminal_size::terminal_size().is_none() {
        command = command.term_width(80);
    }
    let cli = Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|err| err.exit());
    let command = cli.command.unwrap_or(Command::Serve);
    // The plugin's own settings: the environment, then the plugin folder's `.env` (the daemon
    // passes only an allow-listed environment since its PR #799, daemon-protocol.md §1.1).
    let settings = match Settings::load(std::path::Path::new(".")) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("openai-trigger: {err}");
            return ExitCode::FAILURE;
        }
    };
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
    init_logging(&settings, matches!(method, Some(InstallMethod::Local)));
    if matches!(method, Some(InstallMethod::Local)) && std::io::stdin().is_terminal() {
        eprintln!(
            "openai-trigger: serving the Dify plugin protocol on stdin/stdout, as Dify's\n\
             plugin daemon runs it (a heartbeat line every 10 s; Ctrl-D or Ctrl-C ends it).\n\
             To try the plugin yourself: `openai-trigger demo`, `openai-trigger dev`,\n\
             or `openai-trigger --help`."
        );
    }
    if let Command::Secret = command {
        return match crate::dev::fresh_secret() {
            Ok(secret) => {
                crate::console::say(&secret);
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("openai-trigger: cannot read random bytes from /dev/urandom: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match runtime_builder(&settings).enable_all().build() {
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
                serve(method, &settings).await.map(|()| ExitCode::SUCCESS)
            }
            Command::Remote { url, key } => {
                // The timing settings (back-off, windows) come from the environment here too.
                let timing = dify_plugin::RemoteTiming::from_env(|name| std::env::var(name).ok())?;
                let config = RemoteConfig::new(&url, &key)?.with_timing(timing);
                serve(InstallMethod::Remote(config), &settings).await.map(|()| ExitCode::SUCCESS)
            }
            Command::Demo { wide } => Ok(crate::demo::run(wide).await?),
            Command::Dev { secret, port, bind, json } => Ok(crate::dev::serve(secret, bind, port, json).await?),
            Command::Send { event_type, url, secret, webhook_id, age, any_type, json } => {
                let secret = secret.filter(|s| !s.trim().is_empty()).ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "send needs the endpoint's signing secret: --secret whsec_… (the one `openai-trigger dev` \
                         printed) or OPENAI_WEBHOOK_SECRET; `openai-trigger secret` makes a new one",
                    )
                })?;
                let options = crate::dev::SendOptions { webhook_id, age, any_type, json };
                Ok(crate::dev::send(&event_type, &url, &secret, options).await?)
            }
            Command::Secret => Ok(ExitCode::SUCCESS),
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
async fn serve(method: InstallMethod, settings: &Settings) -> Result<(), RunError> {
    let plugin = Arc::new(OpenAiTrigger::with_system_clock().with_api_budget(api_budget(settings)).plugin());
    dify_plugin::run_as(method, plugin, declarations::declaration, ServeOptions::default()).await
}

/// `OPENAI_TRIGGER_API_TIMEOUT`: seconds one action may spend on OpenAI's API (fetching an event's
/// details, creating or checking an endpoint), 1–120 (default 20).
fn api_budget(settings: &Settings) -> std::time::Duration {
    let default = crate::provider::DEFAULT_API_BUDGET;
    number_setting(settings, "OPENAI_TRIGGER_API_TIMEOUT", 1..=120, &format!("{} s", default.as_secs()))
        .map_or(default, std::time::Duration::from_secs)
}

/// A number from the setting `name` (the environment, then `.env`): `None` when it is unset; when
/// it is set to anything outside `range`, reported (the setting, its value, and `instead`, what is
/// used) and `None`.
fn number_setting(settings: &Settings, name: &str, range: std::ops::RangeInclusive<u64>, instead: &str) -> Option<u64> {
    let text = settings.get(name)?;
    match text.trim().parse::<u64>() {
        Ok(number) if range.contains(&number) => Some(number),
        _ => {
            tracing::warn!(
                "{name}={:?} is not {}-{}; using {instead}",
                dify_plugin::wire::truncate(&text, 16),
                range.start(),
                range.end()
            );
            None
        }
    }
}

/// Logs go to stderr, never stdout (stdout is the protocol). `OPENAI_TRIGGER_LOG` sets the level;
/// under the daemon the default is `warn`, because the daemon records every stderr line as a warning.
/// A value that is not a level is reported (once, on stderr) and the default used.
fn init_logging(settings: &Settings, under_daemon: bool) {
    let default = if under_daemon { tracing::Level::WARN } else { tracing::Level::INFO };
    let level = match settings.get("OPENAI_TRIGGER_LOG") {
        None => default,
        Some(text) => text.trim().parse::<tracing::Level>().unwrap_or_else(|_| {
            eprintln!(
                "openai-trigger: OPENAI_TRIGGER_LOG={:?} is not one of error, warn, info, debug, trace; using {}",
                dify_plugin::wire::truncate(&text, 16),
                default.as_str().to_ascii_lowercase()
            );
            default
        }),
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .with_max_level(level)
        .try_init();
}

/// The async runtime: one thread by default (the fastest under the daemon: no cross-thread
/// wake-ups), `OPENAI_TRIGGER_WORKERS=N` for N worker threads (1-64). Another value is reported
/// and one thread used.
fn runtime_builder(settings: &Settings) -> tokio::runtime::Builder {
    match number_setting(settings, "OPENAI_TRIGGER_WORKERS", 1..=64, "one thread") {
        Some(workers @ 2..) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(workers as usize);
            builder
        }
        _ => tokio::runtime::Builder::new_current_thread(),
    }
}
