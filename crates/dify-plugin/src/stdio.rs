/*!
The local transport: the protocol on stdin/stdout, as the daemon runs a plugin (daemon-protocol.md
§1). This module holds the process's only protocol handle on stdout.

The daemon gives us pipes. tokio's `stdin()`/`stdout()` serve any file by handing every read and
write to a blocking thread; a pipe can instead be polled by the reactor directly, which takes that
hand-off out of each request's round trip. Anything else (a terminal, a file) keeps the portable path.
*/

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::serve::{ServeEnd, ServeOptions, serve};
use crate::session::Plugin;

type Input = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
type Output = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

static SERVING: AtomicBool = AtomicBool::new(false);

/// True once this process serves the protocol on stdout: nothing else may write there then.
pub fn is_serving() -> bool {
    SERVING.load(Ordering::SeqCst)
}

/// Serves the protocol on stdin/stdout until stdin ends, SIGTERM or SIGINT arrives (then in-flight
/// sessions are finished within `options.drain_timeout` and output is flushed), or stdout breaks.
///
/// Errors: stdout's IO errors other than a broken pipe.
pub async fn serve_stdio<P: Plugin>(plugin: Arc<P>, options: ServeOptions) -> io::Result<ServeEnd> {
    SERVING.store(true, Ordering::SeqCst);
    let (input, output) = pipes();
    let input = tokio::io::BufReader::with_capacity(64 * 1024, input);
    let end = serve(input, output, plugin, options, terminated()).await?;
    match end {
        ServeEnd::OutputClosed => tracing::info!("stdout closed: the daemon is gone"),
        ServeEnd::Shutdown => tracing::info!("stopped on a signal after finishing in-flight sessions"),
        ServeEnd::InputClosed => {}
    }
    Ok(end)
}

/// Completes on SIGTERM or SIGINT (never, where those cannot be watched).
pub async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[expect(clippy::disallowed_methods, reason = "the protocol writer: the one owner of stdout")]
fn pipes() -> (Input, Output) {
    use std::os::fd::AsFd;
    use tokio::net::unix::pipe;
    let input: Input = match io::stdin().as_fd().try_clone_to_owned().and_then(pipe::Receiver::from_owned_fd) {
        Ok(pipe) => Box::new(pipe),
        Err(_) => Box::new(tokio::io::stdin()),
    };
    let output: Output = match io::stdout().as_fd().try_clone_to_owned().and_then(pipe::Sender::from_owned_fd) {
        Ok(pipe) => Box::new(pipe),
        Err(_) => Box::new(tokio::io::stdout()),
    };
    (input, output)
}
