/*!
Release tooling, in the rust-analyzer manner: `cargo xtask <command>` (the alias is in
`.cargo/config.toml`). Nothing here ships: the plugin binary carries no packaging code.

- `release`: the wheels, the Marketplace package, the offline package and the PR body, all proven.
- `marketplace-check`: every rule of the Dify Marketplace on a built package.
- `build-static`: the wheels and the two static musl binaries in them, checked and smoke-tested.
- `package`: the self-contained `.difypkg` alone (static binaries inside), smoke-tested.
- `soak`: a long mixed load on the release binary, answers and resources checked.
- `bench`: the plugin against the Python SDK plugin, the naive yardstick and `cat`, in one run.
- `bench-examples`: each SDK example beside its twin on the Python SDK: start-up, RSS, CPU, density.
- `bench-daemon`: both plugins installed as packages in the real Dify plugin daemon, through its routes
  (`tests/conformance/bench.sh`).
- `keygen`, `sign`, `verify`: RSA keys and the daemon's third-party package signature.
- `openai-drift`: OpenAI's webhook event types (the newest `openai` wheel) against the plugin's.

This file only parses the command line and dispatches. What the commands share has a module of its
own: `paths` (where things are), `console` (output), `cmd` (running tools), `error` (the one error
type); no module imports from the crate root (`xtask/tests/tidy.rs` checks).
*/

mod bench;
mod bench_examples;
mod cmd;
mod console;
mod drift;
mod error;
mod index;
mod marketplace;
mod offline;
mod package;
mod paths;
mod release;
mod smoke;
mod soak;
mod static_build;
mod wheels;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Release tooling for openai-trigger", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Who vouches for the plugin (`.verification.dify.json`), as the command line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CategoryArg {
    Community,
    Partner,
    Langgenius,
}

impl From<CategoryArg> for package::Category {
    fn from(arg: CategoryArg) -> Self {
        match arg {
            CategoryArg::Community => package::Category::Community,
            CategoryArg::Partner => package::Category::Partner,
            CategoryArg::Langgenius => package::Category::Langgenius,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build everything a release needs: the wheels (maturin, manylinux2014 + musllinux_1_2, x86_64 and
    /// aarch64), dist/<name>-<version>.difypkg for the Marketplace (no executable; requirements.txt
    /// pins the wheel), dist/<name>-<version>-offline.difypkg (binaries inside), dist/marketplace-pr.md;
    /// then prove them: a package index on loopback, the packages run in local and serverless mode,
    /// and marketplace-check with the install test.
    Release {
        /// The publisher's repository and contact [default: publisher.yaml in the workspace].
        #[arg(long, value_name = "FILE")]
        publisher: Option<PathBuf>,
        /// Accept the example values of publisher.yaml (tests and CI; the result is not publishable).
        #[arg(long)]
        example_publisher: bool,
    },
    /// Apply every rule of the Dify Marketplace (marketplace.md §2) to a built package; exits 1 on any
    /// error. With --wheels or --index, also run its install test exactly as the Marketplace does.
    MarketplaceCheck {
        /// The .difypkg to check.
        package: PathBuf,
        /// A package index (simple API) that serves the package's requirements, e.g. http://127.0.0.1:8000/simple.
        #[arg(long, value_name = "URL", conflicts_with = "wheels")]
        index: Option<String>,
        /// Serve an index on loopback from these wheels plus the other requirements (downloaded from PyPI).
        #[arg(long, value_name = "DIR")]
        wheels: Option<PathBuf>,
        /// The submission's PR body, checked as the Marketplace's PR checks do.
        #[arg(long, value_name = "FILE")]
        pr_body: Option<PathBuf>,
    },
    /// Build the wheels (dist/wheels) and the static binaries in them, copied to
    /// dist/bin/openai-trigger-linux-{amd64,arm64} (musl, via maturin with zig; installs the rustup
    /// targets and maturin when missing); check they are static and run a serve session with each (the
    /// foreign one under qemu-user).
    BuildStatic,
    /// Build the self-contained package dist/<name>-<version>.difypkg (the static binaries inside),
    /// then smoke-test it the way the daemon runs it: extracted 0644, `python3 -m main`, one
    /// webhook through a real session. Prints its unique identifier last.
    Package {
        /// Reuse dist/bin/ from an earlier build-static (refused when built from other declarations).
        #[arg(long, conflicts_with_all = ["amd64", "arm64"])]
        skip_build: bool,
        /// Package this x86_64 binary instead of building one (with --arm64).
        #[arg(long, value_name = "PATH", requires = "arm64")]
        amd64: Option<PathBuf>,
        /// Package this aarch64 binary instead of building one (with --amd64).
        #[arg(long, value_name = "PATH", requires = "amd64")]
        arm64: Option<PathBuf>,
        /// Where to write it [default: $DIST_DIR/<name>-<version>.difypkg; DIST_DIR defaults to dist/].
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
        /// Do not run the extracted package (binaries that cannot serve, e.g. in tests).
        #[arg(long)]
        no_smoke: bool,
    },
    /// Drive the release binary with a long mixed load over stdio (see xtask/src/soak.rs): every
    /// answer checked, RSS flat after warm-up, descriptors and threads constant, exit 0 at EOF.
    Soak {
        /// How many requests (CI runs 300 000; the documented long run is 1 000 000).
        #[arg(long, default_value_t = 1_000_000)]
        requests: u64,
        /// How many requests may wait for their answer at once.
        #[arg(long, default_value_t = 256)]
        in_flight: u64,
        /// The binary to drive [default: a fresh `cargo build --release -p openai-trigger`].
        #[arg(long, value_name = "PATH")]
        binary: Option<PathBuf>,
    },
    /// Benchmark the plugin side by side with the Python SDK plugin (bench/python-sdk-plugin), the
    /// naive native yardstick (../shared/bench/naive-plugin) and the pipe floor (`cat`), interleaved
    /// run by run; prints medians and the targets as ratios, writes target/bench/latest.json.
    Bench {
        /// Runs of every contestant (the report shows medians).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// One short run (a smoke test of the benchmark, not figures to quote).
        #[arg(long)]
        quick: bool,
        /// Also drive our plugin through 1 000 000 pairs and sample its RSS.
        #[arg(long)]
        million: bool,
        /// Only these contestants (repeatable): ours (storage granted, the headline), ours_refused
        /// (storage refused), naive, python, cat.
        #[arg(long, value_name = "NAME")]
        only: Vec<String>,
        /// Our binary [default: a fresh `cargo build --release -p openai-trigger`].
        #[arg(long, value_name = "PATH")]
        binary: Option<PathBuf>,
        /// Only the warm-up and the CPU phase: CPU per pair at 64 in flight (user and system
        /// apart) and peak RSS, in seconds instead of minutes.
        #[arg(long)]
        cpu_only: bool,
    },
    /// Each SDK example (crates/dify-plugin/examples) beside the same plugin on the official Python SDK
    /// (bench/python-sdk-examples), over stdio: start-up to the first heartbeat, RSS idle and after 10,000
    /// requests, CPU per request, and how many of ours fit in one Python plugin's memory;
    /// writes target/bench/examples-latest.json.
    BenchExamples {
        /// Only these examples (repeatable), e.g. --only openai_compat --only site_crawl.
        #[arg(long, value_name = "NAME")]
        only: Vec<String>,
        /// Requests per contestant.
        #[arg(long, default_value_t = bench_examples::REQUESTS)]
        requests: usize,
        /// Use the binaries already in target/release (examples, openai-mock) instead of building them.
        #[arg(long)]
        no_build: bool,
    },
    /// End-to-end benchmark through the real Dify plugin daemon: ours and the Python SDK plugin installed
    /// as packages in one daemon (PostgreSQL, Redis, storage live), at 1, 8 and 64 concurrent, interleaved;
    /// runs `bash tests/conformance/bench.sh` (as root; setup, packages, services on ports of its own,
    /// stopped at the end) and writes target/bench/daemon.json.
    BenchDaemon {
        /// Passed to tests/conformance/bench_daemon.py, e.g. --pairs 600 --levels 1,8,64.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Generate an RSA key pair for `sign`: NAME.private.pem (mode 0600) and NAME.public.pem.
    Keygen {
        /// Path and name of the key files, without the .private.pem / .public.pem suffix.
        #[arg(long, value_name = "NAME")]
        out: PathBuf,
        /// Key size in bits.
        #[arg(long, default_value_t = dify_plugin::sign::KEY_BITS, value_parser = clap::value_parser!(u16).range(2048..))]
        bits: u16,
    },
    /// Sign a package for daemons that trust your public key (THIRD_PARTY_SIGNATURE_VERIFICATION_*)
    /// and print its new unique identifier.
    Sign {
        /// The .difypkg to sign.
        package: PathBuf,
        /// Private key in PEM, e.g. from `keygen`.
        #[arg(long, value_name = "PRIVATE_PEM")]
        key: PathBuf,
        /// Category written to .verification.dify.json.
        #[arg(long, value_enum, default_value_t = CategoryArg::Community)]
        category: CategoryArg,
        /// Where to write the signed package [default: <package>.signed.difypkg].
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
    /// Check a signed package's signature against a public key, as the daemon's verifier does.
    Verify {
        /// The signed .difypkg.
        package: PathBuf,
        /// Public key in PEM (PKCS#1 `RSA PUBLIC KEY`, as `keygen` writes it).
        #[arg(long, value_name = "PUBLIC_PEM")]
        key: PathBuf,
    },
    /// Compare OpenAI's webhook event types with the plugin's: downloads the newest `openai` wheel
    /// from PyPI (pip, into target/, removed afterwards), reads its `UnwrapWebhookEvent` union and
    /// the webhook_endpoints event enum, and prints the types the plugin lacks, the ones it declares
    /// that OpenAI no longer lists, and how the enum differs from the plugin's fallback list. Exits 1
    /// when a type is missing.
    OpenaiDrift {
        /// Read this openai release instead of the newest (e.g. 3.63.0).
        #[arg(long, value_name = "V", conflicts_with = "wheel")]
        version: Option<String>,
        /// Read this openai wheel file instead of downloading one (offline).
        #[arg(long, value_name = "PATH")]
        wheel: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Release { publisher, example_publisher } => release::release(
            &publisher.unwrap_or_else(|| paths::workspace_root().join("publisher.yaml")),
            example_publisher,
        ),
        Command::MarketplaceCheck { package, index, wheels, pr_body } => {
            marketplace::check_command(&package, index, wheels.as_deref(), pr_body.as_deref())
        }
        Command::BuildStatic => static_build::build_static().map(|_| ExitCode::SUCCESS),
        Command::Package { skip_build, amd64, arm64, out, no_smoke } => {
            let binaries = match (amd64, arm64) {
                (Some(amd64), Some(arm64)) => offline::Binaries::Given(amd64, arm64),
                _ if skip_build => offline::Binaries::Built,
                _ => offline::Binaries::Build,
            };
            offline::package_command(binaries, out.as_deref(), !no_smoke)
        }
        Command::Soak { requests, in_flight, binary } => soak::soak(requests, in_flight.max(1), binary.as_deref()),
        Command::Bench { runs, quick, million, only, binary, cpu_only } => {
            bench::bench(&paths::workspace_root(), &bench::Options { runs, quick, million, only, binary, cpu_only })
        }
        Command::BenchExamples { only, requests, no_build } => bench_examples::bench_examples(
            &paths::workspace_root(),
            &bench_examples::Options { only, requests, no_build },
        ),
        // clean_env: bench.sh runs `cargo xtask release`, which must not inherit this `cargo run`'s variables
        Command::BenchDaemon { args } => cmd::run(
            cmd::clean_env(&mut std::process::Command::new("bash"))
                .arg(paths::workspace_root().join("tests/conformance/bench.sh"))
                .args(&args),
        )
        .map(|()| ExitCode::SUCCESS),
        Command::Keygen { out, bits } => package::keygen_command(&out, bits.into()),
        Command::Sign { package, key, category, out } => {
            package::sign_command(&package, &key, category.into(), out.as_deref())
        }
        Command::Verify { package, key } => package::verify_command(&package, &key),
        Command::OpenaiDrift { version, wheel } => drift::drift_command(version.as_deref(), wheel.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: {err}");
            ExitCode::FAILURE
        }
    }
}
