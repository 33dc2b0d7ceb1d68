//! `envshare serve`: runs [`envshare::serve::Application`] until SIGTERM or SIGINT.

use anyhow::Context as _;
use envshare::config::Settings;
use envshare::serve::Application;

use crate::cli::ServeArgs;
use crate::fail::BadInput;

/// Builds the server from the settings (and `--addr`), then serves until a stop signal.
pub async fn run(mut settings: Settings, args: ServeArgs) -> anyhow::Result<()> {
    if let Some(addr) = args.addr {
        settings.serve_addr = addr;
    }
    // Installed before start-up, so an early SIGTERM still stops cleanly.
    let shutdown = shutdown_signal().context("installing the SIGTERM/SIGINT handlers failed")?;
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) if e.is_bad_settings() => {
            return Err(anyhow::Error::new(BadInput(e.to_string())));
        }
        Err(e) => return Err(anyhow::Error::new(e).context("starting envshare serve failed")),
    };
    eprintln!("envshare serve: listening on http://{}", app.addr());
    app.run_until_stopped(shutdown)
        .await
        .context("serving HTTP failed")
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
