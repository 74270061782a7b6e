/*!
A native runtime for Dify plugins: the plugin daemon's protocol, so a plugin written in Rust can run
where Dify runs Python plugins.

You implement [`Plugin`] — one `handle` call per request session — and hand it to [`run`], which
speaks the protocol the way `INSTALL_METHOD` asks: on stdin/stdout under the daemon (`local`), over
TCP to a daemon's debugging port (`remote`), or as an HTTP server (`serverless`, `aws_lambda`). The
runtime frames lines, runs sessions concurrently, sends heartbeats, writes exactly one result and
one `end` per session (also after a panic or at the deadline), routes backwards calls
([`Session::invoke`], [`Session::storage`]) and bounds memory. It knows nothing about any particular
plugin. `examples/echo_trigger.rs` is a complete trigger plugin; the crate README walks through it.

Specs cited as `§n` are sections of `daemon-protocol.md` (the wire protocol) and, for triggers,
`triggers.md`, in the steering repository's `shared/spec/`.

# Layout
- [`wire`]: the JSON shapes of every line, in both directions, and the limits the daemon imposes.
- [`framing`]: newline framing with a hard cap per line.
- [`action`](Action): the request actions, parsed once.
- [`Plugin`], [`Request`], [`Session`]: what a plugin implements and sees.
- [`inbound`]: what one input line is (a pure function both transports use).
- `serve`: the transport-agnostic session loop ([`serve()`]), heartbeats, the single writer.
- [`backwards`]: calls back into Dify, streamed ([`BackwardsStream`]) or collected, and [`Storage`];
  [`invocation`]: every backwards type of the daemon, typed ([`Session::call`], [`Session::call_stream`]).
- [`stdio`], [`remote`], [`serverless`]: the three transports; [`InstallMethod`] picks one.
- [`declaration`]: a plugin's manifest and providers (of one or several kinds) as data, for
  remote registration; [`include_declaration!`] loads what a build script embedded.
- `build` (feature `build`, for build scripts): loads the package's YAML, checks it by the
  daemon's rules ([`validate`]) and embeds it.
- `package` (feature `package`, for release tooling): the `.difypkg` of any plugin on this crate.
- [`endpoint`]: typed endpoint requests and responses, Werkzeug-style path patterns.
- [`tool`]: typed tool requests (credentials, parameters, files) and message builders.
- [`trigger`]: typed trigger actions and the [`TriggerProvider`] trait ([`TriggerPlugin`]
  serves one); [`raw_http`]: the raw HTTP requests and responses Dify exchanges with triggers.
- [`oauth`]: the OAuth actions of tool, trigger and datasource providers.
- [`model`]: typed model providers (every model type), served by [`model::ModelPlugin`].
- [`agent`]: typed agent strategies, served by [`agent::AgentPlugin`].
- [`datasource`]: typed datasources (website crawl, online document, online drive), served by
  [`datasource::DatasourcePlugin`].
- [`Router`]: a [`Plugin`] that routes by provider/tool, by endpoint method/path, and to a trigger
  provider.
- `host` (feature `host`): Dify's side of the protocol, for tests, demos and local development;
  not compiled into a plugin that does not ask for it.

Logs go through `tracing` (to stderr: the daemon records stderr lines as warnings, §1.3).
*/

// The README's code is compiled with the crate's doctests, so the page a stranger starts from
// cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod action;
pub mod agent;
pub mod backwards;
#[cfg(feature = "build")]
pub mod build;
pub mod datasource;
pub mod declaration;
pub mod endpoint;
pub mod framing;
#[cfg(feature = "host")]
pub mod host;
pub mod inbound;
pub mod invocation;
mod lenient;
pub mod model;
pub mod oauth;
mod outbox;
#[cfg(feature = "package")]
pub mod package;
pub mod raw_http;
pub mod remote;
mod router;
mod serve;
pub mod serverless;
mod session;
#[cfg(feature = "package")]
pub mod sign;
pub mod stdio;
pub mod tool;
pub mod trigger;
pub mod validate;
pub mod wire;

use std::path::Path;
use std::sync::Arc;

pub use action::Action;
pub use backwards::{BackwardsError, BackwardsStream, Storage};
pub use declaration::{Asset, Declaration, EmbeddedError, Mismatch, ProviderKind};
pub use oauth::OAuthProvider;
pub use outbox::Closed;
pub use remote::{Backoff, ConfigError, InstallMethod, RemoteConfig, RemoteError, RemoteTiming, Settings};
pub use router::{
    BoxFuture, CredentialsHandler, ENDPOINT_END_GRACE, EndpointHandler, OptionsHandler, RouteError, Router,
    RuntimeParametersHandler, ToolHandler, ToolOutput,
};
pub use serve::{ServeEnd, ServeOptions, serve};
pub use session::{Plugin, Reply, Request, Session, StreamError, reply};
pub use trigger::{TriggerPlugin, TriggerProvider};
pub use wire::ErrorData;

/// Why [`run`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Runs `plugin` the way the environment asks (`INSTALL_METHOD` and its settings, from the
/// environment or a `.env` file in the working directory, [`InstallMethod::from_env`]), until the
/// daemon stops it. `declaration` builds what remote debugging registers; it is called only in
/// that mode (a plugin started by the daemon never needs its declaration in memory).
///
/// Errors: a bad setting, a rejected or impossible remote registration, or the transport's IO errors.
pub async fn run<P: Plugin>(
    plugin: Arc<P>,
    declaration: impl FnOnce() -> Declaration,
    options: ServeOptions,
) -> Result<(), RunError> {
    let method = InstallMethod::from_env(Path::new("."), |name| std::env::var(name).ok())?;
    run_as(method, plugin, declaration, options).await
}

/// [`run`] with the install method given.
pub async fn run_as<P: Plugin>(
    method: InstallMethod,
    plugin: Arc<P>,
    declaration: impl FnOnce() -> Declaration,
    options: ServeOptions,
) -> Result<(), RunError> {
    match method {
        InstallMethod::Local => {
            stdio::serve_stdio(plugin, options).await?;
        }
        InstallMethod::Remote(config) => remote::run(config, &declaration(), plugin, options).await?,
        InstallMethod::Serverless { host, port, lambda } => {
            serverless::serve_http(&host, port, lambda, plugin, options).await?;
        }
    }
    Ok(())
}
