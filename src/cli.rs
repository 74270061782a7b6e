//! Command line: parse once with clap, then run one command. `serve` (the default) is what the
//! Dify plugin daemon starts; `remote` registers with a daemon's debugging port; `demo`, `dev` and
//! `send` are for trying it locally; `package`, `keygen` and `sign` (feature `tools`) build and
//! sign the installable `.difypkg`.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::protocol::{self, ServeEnd, ServeOptions};
use crate::provider::OpenAiTrigger;
use crate::remote::RemoteConfig;

#[derive(Debug, Parser)]
#[command(name = "openai-trigger", version, about = "Dify trigger plugin for OpenAI webhooks, as one native binary")]
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
    /// Build the installable .difypkg around two static binaries (scripts/build-static.sh) and
    /// print its unique identifier, author/name:version@checksum.
    #[cfg(feature = "tools")]
    Package {
        /// Static x86_64 Linux build, e.g. dist/bin/openai-trigger-linux-amd64.
        #[arg(long, value_name = "PATH")]
        amd64: std::path::PathBuf,
        /// Static aarch64 Linux build, e.g. dist/bin/openai-trigger-linux-arm64.
        #[arg(long, value_name = "PATH")]
        arm64: std::path::PathBuf,
        /// Where to write the package [default: dist/<name>-<version>.difypkg].
        #[arg(long, value_name = "PATH")]
        out: Option<std::path::PathBuf>,
    },
    /// Generate an RSA key pair for `sign`: NAME.private.pem (mode 0600) and NAME.public.pem.
    #[cfg(feature = "tools")]
    Keygen {
        /// Path and name of the key files, without the .private.pem / .public.pem suffix.
        #[arg(long, value_name = "NAME")]
        out: std::path::PathBuf,
        /// Key size in bits.
        #[arg(
            long,
            default_value_t = crate::package::sign::KEY_BITS,
            value_parser = clap::value_parser!(u16).range(2048..)
        )]
        bits: u16,
    },
    /// Sign a package for daemons that trust your public key (THIRD_PARTY_SIGNATURE_VERIFICATION_*)
    /// and print its new unique identifier.
    #[cfg(feature = "tools")]
    Sign {
        /// The .difypkg to sign.
        package: std::path::PathBuf,
        /// Private key in PEM, e.g. from `keygen`.
        #[arg(long, value_name = "PRIVATE_PEM")]
        key: std::path::PathBuf,
        /// Category written to .verification.dify.json.
        #[arg(long, value_enum, default_value_t = crate::package::Category::Community)]
        category: crate::package::Category,
        /// Where to write the signed package [default: <package>.signed.difypkg].
        #[arg(long, value_name = "PATH")]
        out: Option<std::path::PathBuf>,
    },
}

pub fn main() -> ExitCode {
    remove_launcher_copy();
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    // Decided before logging starts: under the daemon (stdio) the default level is quieter.
    let remote = match command {
        Command::Serve => match RemoteConfig::from_env(Path::new("."), |name| std::env::var(name).ok()) {
            Ok(remote) => remote,
            Err(err) => {
                eprintln!("openai-trigger: {err}");
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    init_logging(matches!(command, Command::Serve) && remote.is_none());
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("openai-trigger: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Serve => match remote {
                Some(config) => crate::remote::run(config, Arc::new(OpenAiTrigger::with_system_clock())).await,
                None => serve_stdio().await,
            },
            Command::Remote { url, key } => match RemoteConfig::new(&url, &key) {
                Ok(config) => crate::remote::run(config, Arc::new(OpenAiTrigger::with_system_clock())).await,
                Err(err) => Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, err.to_string())),
            },
            Command::Demo => crate::demo::run().await,
            Command::Dev { secret, port, bind } => crate::dev::serve(&secret, bind, port).await,
            Command::Send { event_type, url, secret, webhook_id, age } => {
                crate::dev::send(&event_type, &url, &secret, webhook_id, age).await
            }
            #[cfg(feature = "tools")]
            Command::Package { amd64, arm64, out } => crate::package::package_command(&amd64, &arm64, out.as_deref()),
            #[cfg(feature = "tools")]
            Command::Keygen { out, bits } => crate::package::keygen_command(&out, bits.into()),
            #[cfg(feature = "tools")]
            Command::Sign { package, key, category, out } => {
                crate::package::sign_command(&package, &key, category, out.as_deref())
            }
        }
    });
    // Sessions may still hold blocking reads of stdin; do not wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(code) => code,
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("openai-trigger: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The protocol on stdin/stdout. (`INSTALL_METHOD=remote` in the environment or `./.env` selects
/// remote debugging instead, as the SDK does; `main` decides that before logging starts.)
async fn serve_stdio() -> std::io::Result<ExitCode> {
    let plugin = Arc::new(OpenAiTrigger::with_system_clock());
    let (input, output) = stdio_pipes();
    let input = tokio::io::BufReader::with_capacity(64 * 1024, input);
    let end = protocol::serve(input, output, plugin, ServeOptions::default()).await?;
    if end == ServeEnd::OutputClosed {
        tracing::info!("stdout closed: the daemon is gone");
    }
    Ok(ExitCode::SUCCESS)
}

type Input = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
type Output = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

/// The daemon gives us pipes. tokio's `stdin()`/`stdout()` serve any file by handing every read
/// and write to a blocking thread; a pipe can instead be polled by the reactor directly, which
/// takes that hand-off out of each request's round trip. Anything else (a terminal, a file)
/// keeps the portable path.
fn stdio_pipes() -> (Input, Output) {
    use std::os::fd::AsFd;
    use tokio::net::unix::pipe;
    let input: Input = match std::io::stdin().as_fd().try_clone_to_owned().and_then(pipe::Receiver::from_owned_fd) {
        Ok(pipe) => Box::new(pipe),
        Err(_) => Box::new(tokio::io::stdin()),
    };
    let output: Output = match std::io::stdout().as_fd().try_clone_to_owned().and_then(pipe::Sender::from_owned_fd) {
        Ok(pipe) => Box::new(pipe),
        Err(_) => Box::new(tokio::io::stdout()),
    };
    (input, output)
}

/// Logs go to stderr, never stdout (stdout is the protocol). `OPENAI_TRIGGER_LOG` sets the level;
/// under the daemon the default is `warn`, because the daemon records every stderr line as a warning.
fn init_logging(serving: bool) {
    let level = std::env::var("OPENAI_TRIGGER_LOG").ok().and_then(|v| v.parse::<tracing::Level>().ok());
    let level = level.unwrap_or(if serving { tracing::Level::WARN } else { tracing::Level::INFO });
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .with_max_level(level)
        .try_init();
}

/// When the plugin directory is mounted `noexec`, `main.py` runs a temporary copy of this binary
/// and names it in `OPENAI_TRIGGER_UNLINK`; remove it now that it is running (Linux keeps the
/// running image). Only a path that is this very executable is removed, so the variable can never
/// be used to delete anything else.
fn remove_launcher_copy() {
    use std::os::unix::fs::MetadataExt;
    let Some(path) = std::env::var_os(LAUNCHER_COPY_VAR) else { return };
    let (Ok(copy), Ok(running)) = (std::fs::metadata(&path), std::fs::metadata("/proc/self/exe")) else { return };
    if copy.dev() == running.dev() && copy.ino() == running.ino() {
        let _ = std::fs::remove_file(&path);
    }
}

/// Set by `main.py` (see [`remove_launcher_copy`]); children must not inherit it.
pub const LAUNCHER_COPY_VAR: &str = "OPENAI_TRIGGER_UNLINK";

/// Writes one line of human output to stdout (the commands other than `serve`).
pub(crate) fn say(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
}
