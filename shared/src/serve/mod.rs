//! `envshare serve`: the producer's HTTP face. Stateless (all state is in Redis), so any number of
//! replicas may run behind a load balancer.
//!
//! ```no_run
//! # async fn demo(settings: envshare::config::Settings) -> Result<(), Box<dyn std::error::Error>> {
//! let app = envshare::serve::Application::build(settings).await?;
//! app.run_until_stopped(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! The router is built from parts ([`router`]): each part is a module with a `routes()` function
//! that returns an `axum::Router<ServeParts>`; [`router`] merges them and wraps them in the
//! request metrics. Today's parts:
//!
//! - `health`: `/healthz`, `/readyz` (Redis answers `PING`), `/metrics` (Prometheus);
//! - `api`: the JSON API under `/api/v1` (bearer token `ENVSHARE_API_TOKEN`) and its OpenAPI
//!   document at `/api/v1/openapi.json` (docs/api.md);
//! - `callback`: `POST /wechat/callback`, the open platform's authorization event URL (verify
//!   tickets and authorization changes; mounted when `ENVSHARE_CALLBACK_TOKEN` and
//!   `ENVSHARE_CALLBACK_AES_KEY` are set);
//! - `console`: the web console at `/` (HTML pages, its assets and its event feed).
//!
//! Every request is counted by route, method and status, and timed by route
//! (`envshare_http_requests_total`, `envshare_http_request_duration_seconds`).

mod api;
mod callback;
mod console;
mod health;
mod metrics;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tracing::{info, warn};

pub use api::{MAX_BODY_BYTES as API_MAX_BODY_BYTES, openapi_document};
pub use callback::{MAX_BODY_BYTES, TIMESTAMP_WINDOW};

use crate::config::Settings;
use crate::ids::EnvId;
use crate::store::{Queue, QueueSettings, StoreError};
use crate::wechat::crypt::{KeyError, MsgCrypt};

/// Why `envshare serve` could not start. Every message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A non-loopback address without `ENVSHARE_API_TOKEN`.
    #[error(
        "refusing to listen on {addr} without ENVSHARE_API_TOKEN: set ENVSHARE_API_TOKEN (the \
         bearer token of the API) to listen on a non-loopback address, or listen on a loopback \
         address (127.0.0.1:PORT) behind a proxy"
    )]
    Unprotected {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The callback is configured but the platform's appid is not.
    #[error(
        "the WeChat callback needs ENVSHARE_COMPONENT_APPID (every pushed message names the \
         platform that receives it): set it with ENVSHARE_COMPONENT_APPSECRET, or unset \
         ENVSHARE_CALLBACK_TOKEN and ENVSHARE_CALLBACK_AES_KEY"
    )]
    NoComponentAppid,
    /// `ENVSHARE_CALLBACK_AES_KEY` is unusable (settings built without the loader's check).
    #[error("ENVSHARE_CALLBACK_AES_KEY {0}")]
    AesKey(#[source] KeyError),
    /// Redis is unreachable.
    #[error(
        "cannot use Redis at {url}. Start Redis there, or set ENVSHARE_REDIS_URL \
         (or REDIS_URL) to a reachable server, e.g. redis://:PASSWORD@host:6379/0"
    )]
    Redis {
        /// The URL, password redacted.
        url: String,
        /// What failed.
        #[source]
        source: StoreError,
    },
    /// The address could not be bound.
    #[error(
        "cannot listen on ENVSHARE_SERVE_ADDR={addr} (or --addr). Pick a free address (port 0 \
         picks any free port)"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl StartupError {
    /// Whether the settings are at fault (the binary exits 2), rather than the environment.
    pub fn is_bad_settings(&self) -> bool {
        matches!(
            self,
            StartupError::Unprotected { .. }
                | StartupError::NoComponentAppid
                | StartupError::AesKey(_)
        )
    }
}

/// What every route of `envshare serve` shares: the queue, the metrics and the configured parts.
/// Cheap to clone.
#[derive(Clone)]
pub struct ServeParts {
    queue: Queue,
    metrics: Arc<metrics::ServeMetrics>,
    callback: Option<Arc<callback::Callback>>,
    settings: Arc<Settings>,
    /// Turns true when the server stops, so endless responses (the API's event stream) end.
    stopping: Arc<tokio::sync::watch::Sender<bool>>,
    console: Arc<console::Console>,
}

impl std::fmt::Debug for ServeParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeParts")
            .field("queue", &self.queue)
            .field("callback", &self.callback.is_some())
            .finish_non_exhaustive()
    }
}

impl ServeParts {
    /// The parts `settings` configure, on `queue` (whose clock the callback's timestamp check
    /// reads).
    pub fn new(queue: Queue, settings: &Settings) -> Result<Self, StartupError> {
        let callback = match (&settings.callback_token, &settings.callback_aes_key) {
            (Some(token), Some(key)) => {
                let appid = settings
                    .component_appid
                    .as_ref()
                    .ok_or(StartupError::NoComponentAppid)?;
                let crypt = MsgCrypt::new(
                    token.clone(),
                    secrecy::ExposeSecret::expose_secret(key),
                    appid.as_str(),
                )
                .map_err(StartupError::AesKey)?;
                Some(Arc::new(callback::Callback::new(
                    crypt,
                    settings.auto_share_envs.clone(),
                    settings.chunk_size,
                )))
            }
            _ => None,
        };
        Ok(Self {
            queue,
            metrics: Arc::new(metrics::ServeMetrics::new()),
            callback,
            settings: Arc::new(settings.clone()),
            stopping: Arc::new(tokio::sync::watch::channel(false).0),
            console: Arc::new(console::Console::new(settings)),
        })
    }

    /// Whether `POST /wechat/callback` is served.
    pub fn has_callback(&self) -> bool {
        self.callback.is_some()
    }

    /// The envs shared with every Mini Program that authorizes the platform.
    pub fn auto_share_envs(&self) -> &[EnvId] {
        self.callback.as_ref().map_or(&[], |c| c.auto_share_envs())
    }
}

/// The router of `envshare serve`: every part's routes, with request metrics around them.
pub fn router(parts: ServeParts) -> Router {
    let mut app = health::routes()
        .merge(api::routes())
        .merge(console::routes());
    if parts.callback.is_some() {
        app = app.merge(callback::routes());
    }
    app.layer(axum::middleware::from_fn_with_state(
        parts.clone(),
        metrics::track,
    ))
    .with_state(parts)
}

/// A built `envshare serve`, bound and ready to run.
pub struct Application {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    parts: ServeParts,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("addr", &self.addr)
            .field("parts", &self.parts)
            .finish()
    }
}

impl Application {
    /// Checks the settings, connects to Redis and binds `ENVSHARE_SERVE_ADDR`.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let addr = settings.serve_addr;
        if settings.api_token.is_none() && !addr.ip().is_loopback() {
            return Err(StartupError::Unprotected { addr });
        }
        let redis = |source| StartupError::Redis {
            url: settings.redis_url_redacted(),
            source,
        };
        let queue = Queue::connect_with(
            &settings.redis_url,
            settings.redis_cluster,
            &settings.queue,
            QueueSettings::from(&settings),
        )
        .await
        .map_err(redis)?;
        let parts = ServeParts::new(queue, &settings)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { addr, source })?;
        Ok(Self {
            listener,
            addr,
            parts,
        })
    }

    /// The bound address (the real port when port 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The parts the routes share.
    pub fn parts(&self) -> &ServeParts {
        &self.parts
    }

    /// Serves until `shutdown` completes, then stops accepting, lets open requests finish (at
    /// most [`DRAIN_TIMEOUT`]) and returns.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Application {
            listener,
            addr,
            parts,
        } = self;
        let callback = parts.has_callback();
        let auto_share = parts.auto_share_envs().len();
        let queue = parts.queue.keys().prefix().to_owned();
        info!(%addr, queue, callback, auto_share_envs = auto_share, "envshare serve listening");
        if !callback {
            info!(
                "the WeChat callback is off: set ENVSHARE_CALLBACK_TOKEN and \
                 ENVSHARE_CALLBACK_AES_KEY to receive verify tickets and authorization events"
            );
        }
        let stopping_tx = Arc::clone(&parts.stopping);
        let mut stopping = stopping_tx.subscribe();
        let app = router(parts);
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            shutdown.await;
            stopping_tx.send_replace(true);
        });
        tokio::select! {
            served = server.into_future() => served?,
            () = async {
                let _ = stopping.wait_for(|s| *s).await;
                tokio::time::sleep(DRAIN_TIMEOUT).await;
            } => warn!(
                drain_timeout_s = DRAIN_TIMEOUT.as_secs(),
                "open requests did not finish in time; stopping anyway"
            ),
        }
        info!("envshare serve stopped");
        Ok(())
    }
}

/// How long the binary waits for open requests after a stop signal before it exits anyway.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
