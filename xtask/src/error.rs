//! xtask's one error type. Each variant names what failed (the command, the file, the package
//! entry, the contestant) and why; `main` prints it after `xtask: ` and exits 1.
//!
//! A leaf module: it names no other module of xtask, so every module can use it.

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

/// What `cargo xtask` failed at.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    // Tools and processes.
    /// A tool or process that could not be started.
    #[error("cannot start {command}: {source}")]
    Start {
        command: String,
        #[source]
        source: io::Error,
    },
    /// IO with a running process: its pipes, waiting for it.
    #[error("{command}: {source}")]
    Child {
        command: String,
        #[source]
        source: io::Error,
    },
    /// A process started without the pipe it was given.
    #[error("{command}: no {pipe} pipe")]
    NoPipe { command: String, pipe: &'static str },
    /// A tool that ran and exited unsuccessfully.
    #[error("{command} failed: {status}")]
    Failed { command: String, status: ExitStatus },
    /// A module the Marketplace's install-test script imports from the plugin's venv.
    #[error("the workflow's test script imports {module} from this venv: {source}")]
    MissingImport {
        module: &'static str,
        #[source]
        source: Box<Error>,
    },
    /// A tool that ran and exited unsuccessfully, with the last line it wrote to stderr.
    #[error("{command} failed ({status}): {stderr}")]
    FailedSaying { command: String, status: ExitStatus, stderr: String },
    /// The tokio runtime a smoke session runs on.
    #[error("cannot start a tokio runtime: {0}")]
    Runtime(#[source] io::Error),
    /// A connection on loopback (a free port, the package index, the serverless front).
    #[error("{address}: {source}")]
    Network {
        address: String,
        #[source]
        source: io::Error,
    },

    // Files.
    /// A file or directory that cannot be read, written, created or listed.
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file that cannot be copied.
    #[error("cannot copy {} to {}: {source}", from.display(), to.display())]
    Copy {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file `keygen` refuses to overwrite.
    #[error("{} already exists", path.display())]
    Exists { path: PathBuf },
    /// A YAML file that does not parse (or not into what it must hold).
    #[error("{file} is not valid YAML: {source}")]
    Yaml {
        file: String,
        #[source]
        source: serde_yaml::Error,
    },
    /// A directory that cannot go on `PATH`.
    #[error("cannot put {} first on PATH: {source}", dir.display())]
    SearchPath {
        dir: PathBuf,
        #[source]
        source: std::env::JoinPathsError,
    },

    // The package: its declarations, binaries, zip and signature.
    /// A declaration file that does not say what packaging needs.
    #[error("{file}: {problem}")]
    Declaration { file: String, problem: &'static str },
    /// The package's identity, zip, size or entries (`dify_plugin::package`).
    #[error(transparent)]
    Package(#[from] dify_plugin::package::PackageError),
    /// A binary that is not a static ELF executable for its architecture (`binary` names it).
    #[error("{binary} {problem}")]
    Binary { binary: String, problem: String },
    /// A binary built from other declarations than the ones being packaged.
    #[error(
        "the {arch} binary was built from other declarations (it embeds {embedded}, the plugin directory gives {files}): \
         rebuild it (cargo xtask build-static) before packaging"
    )]
    StaleBinary { arch: &'static str, embedded: String, files: String },
    /// A package without a file it must hold.
    #[error("the package has no {0}")]
    MissingEntry(&'static str),
    #[error("zip: {0}")]
    Zip(#[from] zip::result::ZipError),
    /// The signing time.
    #[error("the system clock is before 1970: {0}")]
    Clock(#[from] std::time::SystemTimeError),

    // Releases.
    /// `release` without `--example-publisher` on publisher.yaml's example values.
    #[error(
        "publisher.yaml holds example values (repo {repo}, contact {contact}): put the real repository and contact \
         there before a release, or pass --example-publisher for a test build that must not be published"
    )]
    ExamplePublisher { repo: String, contact: String },
    #[error("manifest.yaml must not set repo or contact: they come from publisher.yaml")]
    PublisherInManifest,
    #[error("requirements.txt must pin the wheel of this version: {pin}")]
    UnpinnedWheel { pin: String },
    /// maturin's output directory after a build, for one architecture.
    #[error("expected one {arch} wheel in {}, found {found:?}", dir.display())]
    WheelCount { arch: &'static str, dir: PathBuf, found: Vec<PathBuf> },
    #[error("{} holds no {entry}", wheel.display())]
    NotInWheel { wheel: PathBuf, entry: String },
    /// A Python file of the `openai` wheel that does not say what `openai-drift` reads there.
    #[error("{file} (openai wheel): {problem}")]
    WheelSource { file: String, problem: String },
    #[error("the package index did not listen on 127.0.0.1:{port} within 10 s")]
    IndexNotListening { port: u16 },

    // Smoke tests of what was built.
    #[error("smoke session with {program}: expected [batch_completed, any_event], got {answer}")]
    SmokeAnswer { program: String, answer: String },
    #[error("smoke session with {program}: the plugin exited with {status} on EOF")]
    SmokeExit { program: String, status: ExitStatus },
    /// `python -m main` in serverless mode (Flask in front of the binary).
    #[error("serverless: {problem}")]
    Serverless { problem: String },

    // Benchmarks and the soak.
    #[error("{} not found: the yardstick lives in ../shared/bench", manifest.display())]
    NoYardstick { manifest: PathBuf },
    /// A benchmark contestant that did not do what every run needs.
    #[error("{contestant}: {problem}")]
    Contestant { contestant: &'static str, problem: String },
    #[error("soak: the binary gave no answer within {seconds} s")]
    SoakStalled { seconds: u64 },
}

/// xtask's result.
pub(crate) type Result<T> = std::result::Result<T, Error>;

/// `.at(path)` on the result of a file operation: its error becomes [`Error::File`], naming `path`.
pub(crate) trait AtPath<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> AtPath<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|source| Error::File { path: path.to_owned(), source })
    }
}
