//! `envshare-worker`: runs share jobs from the Redis queue.
//!
//! This binary only parses arguments, loads settings, starts logging and runs
//! [`envshare::worker::Application`]. Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT),
//! 2 for bad settings, 1 for anything else; errors print their cause chain.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use envshare::config::Settings;
use envshare::worker::Application;

/// What `--version` prints after the name: the package version and the commit the binary was
/// built from (`0.1.0 (0123456789ab 2026-12-03)`; see build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("ENVSHARE_COMMIT"),
    ")"
);

/// Runs envshare's share jobs. Settings come from ENVSHARE_* variables and, optionally, a TOML
/// file (see docs/configuration.md).
#[derive(Debug, Parser)]
#[command(name = "envshare-worker", version = VERSION, about)]
struct Args {
    /// A TOML file with settings (lower-case names without the ENVSHARE_ prefix); the
    /// environment overrides it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// An error with the exit code it calls for.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            code: 1,
            error: e.into(),
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { code, error }) => {
            eprintln!("envshare-worker: error: {error:#}");
            ExitCode::from(code)
        }
    }
}

fn run(args: Args) -> Result<(), Failure> {
    let settings = Settings::load(args.config.as_deref()).map_err(|e| Failure {
        code: 2,
        error: e.into(),
    })?;
    // Kept to the end of `run`: dropping it exports the spans still buffered.
    let _telemetry =
        envshare::telemetry::init(&settings.log, settings.log_format, "envshare-worker").map_err(
            |e| Failure {
                code: 2,
                error: e.into(),
            },
        )?;
    for var in settings.unknown_env_vars() {
        tracing::warn!(variable = %var, "unknown ENVSHARE_ variable ignored (a typo?)");
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        // Handlers are installed before start-up, so an early SIGTERM still shuts down cleanly.
        let shutdown = shutdown_signal().context("installing the SIGTERM/SIGINT handlers")?;
        let app = Application::build(settings).await.map_err(|e| Failure {
            code: if e.is_bad_settings() { 2 } else { 1 },
            error: anyhow::Error::new(e).context("starting the worker"),
        })?;
        app.run_until_stopped(shutdown)
            .await
            .context("running the worker")?;
        Ok(())
    })
}

/// A future that completes on the first SIGTERM or SIGINT; the handlers are installed at once.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutdown requested");
    })
}
