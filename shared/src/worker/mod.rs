//! The worker service (`envshare-worker`): runs share jobs from the queue with apalis, serves
//! `/metrics`, `/healthz` and `/readyz`, and shuts down gracefully.
//!
//! ```no_run
//! # async fn demo(settings: envshare::config::Settings) -> Result<(), Box<dyn std::error::Error>> {
//! let app = envshare::worker::Application::build(settings).await?;
//! app.run_until_stopped(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! - [`Application::build`] connects to Redis (failing fast with the redacted URL and how to fix
//!   it), builds the token provider of the configured mode, the rate limiter and the WeChat
//!   client, and binds `ENVSHARE_HTTP_ADDR`.
//! - [`Application::run_until_stopped`] runs jobs until `shutdown` completes, then stops
//!   claiming, lets running jobs finish within `ENVSHARE_SHUTDOWN_TIMEOUT_MS`, releases whatever
//!   is still held (back to ready, attempt refunded) and returns.
//!
//! The handler and its error policy are in [`share_handler`]'s module; the metrics in
//! `metrics.rs`; the HTTP endpoints in `http.rs`.

mod backend;
mod handler;
pub(crate) mod http;
pub(crate) mod metrics;
mod webhooks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use apalis_core::worker::builder::WorkerBuilder;
use tracing::{info, warn};

pub use backend::{
    AckLayer, AckService, BackendCounters, BackendHandle, BackendSettings, JobOutcome, LeaseInfo,
    RedisBackend, RetryPolicy,
};
use handler::ShareParts;
pub use handler::{ShareContext, share_handler};
pub use webhooks::{Deliverer, DelivererHandle, WebhookCounters, WebhookSettings};

use crate::config::{Settings, TokenMode};
use crate::confirm::{BindingChecker, ConfirmSettings, Watcher};
use crate::store::{Queue, QueueSettings, StoreError, WorkerId};
use crate::throttle::RateLimiter;
use crate::token::provider_from_settings;
use crate::wechat::{ClientBuildError, WechatClient};

/// Knobs that are not operator settings: defaults for production, shorter values for tests and
/// the demo.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// How long a token misconfiguration (61004, 61005/61006, bad secret, no ticket) pauses the
    /// queue before the next job tries the token again, overriding `ENVSHARE_TOKEN_RECHECK_MS`
    /// (tests go below its 1 s floor). Default `None`.
    pub misconfig_recheck: Option<Duration>,
    /// Pause this long after 45009 instead of until the next quota reset (`ENVSHARE_QUOTA_RESET`).
    /// Default `None`.
    pub quota_pause: Option<Duration>,
    /// How long a job waits (attempt refunded) when no token or rate limit slot could be had for
    /// a passing reason. Default 2 s (jittered down to half).
    pub token_retry: Duration,
    /// This process's worker id. Default [`WorkerId::generate`].
    pub worker_id: Option<WorkerId>,
    /// Empty-queue poll interval. Default 50 ms.
    pub idle_poll: Duration,
    /// How often the confirmation watcher looks for new events and due checks when idle.
    /// Default 1 s.
    pub confirm_poll: Duration,
    /// How long a claimed confirmation check is held before another watcher may redo it.
    /// Default 60 s.
    pub confirm_lease: Duration,
    /// Events delivered to a dead watcher and not taken in for this long are taken over.
    /// Default 60 s.
    pub confirm_claim_idle: Duration,
    /// How long a claimed webhook delivery is held before another worker may try it. Default
    /// `None`: `ENVSHARE_WEBHOOK_TIMEOUT_MS` plus 5 s.
    pub webhook_lease: Option<Duration>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            misconfig_recheck: None,
            quota_pause: None,
            token_retry: Duration::from_secs(2),
            worker_id: None,
            idle_poll: Duration::from_millis(50),
            confirm_poll: Duration::from_secs(1),
            confirm_lease: Duration::from_secs(60),
            confirm_claim_idle: Duration::from_secs(60),
            webhook_lease: None,
        }
    }
}

/// Why the worker could not start. Every message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// No token mode is configured.
    #[error(
        "no WeChat access token is configured: set ENVSHARE_COMPONENT_APPID and \
         ENVSHARE_COMPONENT_APPSECRET (component mode: the token is fetched with the verify \
         ticket stored by `envshare ticket set`), ENVSHARE_ACCESS_TOKEN (a fixed token), or \
         ENVSHARE_TOKEN_SOURCE=redis|http with its settings (a token service of the platform; \
         docs/wechat-platform.md)"
    )]
    NoTokenMode,
    /// `ENVSHARE_WECHAT_BASE_URL` or the request timeout is unusable.
    #[error("unusable ENVSHARE_WECHAT_BASE_URL")]
    WechatClient(#[source] ClientBuildError),
    /// Redis is unreachable (or refused the scripts).
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
    /// The webhook HTTP client could not be built.
    #[error("cannot build the webhook HTTP client (check ENVSHARE_WEBHOOK_URLS)")]
    WebhookClient(#[source] reqwest::Error),
    /// The HTTP address could not be bound.
    #[error(
        "cannot listen on ENVSHARE_HTTP_ADDR={addr}. Pick a free address (port 0 \
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
    /// Whether the settings are at fault (the binary exits 2), rather than the environment
    /// (Redis down, port taken: exit 1). Never retryable as is.
    pub fn is_bad_settings(&self) -> bool {
        matches!(
            self,
            StartupError::NoTokenMode
                | StartupError::WechatClient(_)
                | StartupError::WebhookClient(_)
        )
    }
}

/// Why a running worker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The apalis worker failed.
    #[error("running the worker failed: {0}")]
    Worker(String),
    /// Giving held jobs back at shutdown failed; they return to ready when their leases expire
    /// (retryable by waiting).
    #[error("releasing held jobs at shutdown failed (they are re-run after their lease expires)")]
    Release(#[source] StoreError),
}

/// What a run did, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunReport {
    /// Jobs claimed.
    pub claimed: u64,
    /// Outcomes written.
    pub acked: u64,
    /// Jobs handed back at shutdown because they did not finish within the timeout.
    pub released: usize,
}

/// A built worker, ready to run.
pub struct Application {
    queue: Queue,
    ctx: Arc<ShareContext>,
    backend: RedisBackend,
    listener: tokio::net::TcpListener,
    http_addr: SocketAddr,
    registry: Arc<metrics::MetricsRegistry>,
    shutdown_timeout: Duration,
    watcher: Watcher,
    deliverer: Option<Deliverer>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("queue", &self.queue)
            .field("http_addr", &self.http_addr)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Builds the worker from `settings` with the default [`WorkerOptions`].
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Self::build_with(settings, WorkerOptions::default()).await
    }

    /// Builds the worker from `settings` and `options`.
    pub async fn build_with(
        settings: Settings,
        options: WorkerOptions,
    ) -> Result<Self, StartupError> {
        // Cheap checks first, so a bad setting is reported without touching the network.
        if matches!(settings.token_mode(), TokenMode::None) {
            return Err(StartupError::NoTokenMode);
        }
        let client = WechatClient::from_settings(&settings).map_err(StartupError::WechatClient)?;

        let queue = Queue::connect_with(
            &settings.redis_connect_url(),
            settings.redis_cluster,
            &settings.queue,
            QueueSettings::from(&settings),
        )
        .await
        .map_err(|source| StartupError::Redis {
            url: settings.redis_url_redacted(),
            source,
        })?;
        let conn = queue.connection();
        let keys = queue.keys().clone();

        let tokens = provider_from_settings(&settings, conn.clone(), &keys, client.clone())
            .ok_or(StartupError::NoTokenMode)?;
        let limiter = Arc::new(RateLimiter::new(conn, &keys, settings.rate_limit));

        let backend_settings = BackendSettings {
            idle_poll: options.idle_poll,
            ..BackendSettings::from(&settings)
        };
        let worker_id = options.worker_id.unwrap_or_else(WorkerId::generate);
        let backend = RedisBackend::new(queue.clone(), worker_id.clone(), backend_settings);
        let registry = Arc::new(metrics::MetricsRegistry::new(
            tokens.clone(),
            limiter.clone(),
            backend.handle(),
        ));
        let checker = BindingChecker::new(
            client.clone(),
            tokens.clone(),
            limiter.clone(),
            settings.confirm_batch,
        );
        let ctx = Arc::new(ShareContext::new(ShareParts {
            queue: queue.clone(),
            client,
            tokens,
            limiter,
            metrics: registry.metrics.clone(),
            checker: checker.clone(),
            quota_reset: settings.quota_reset,
            quota_pause: options.quota_pause,
            misconfig_recheck: options.misconfig_recheck.unwrap_or(settings.token_recheck),
            token_retry: options.token_retry,
            max_attempts: settings.max_attempts,
        }));
        let watcher = Watcher::new(
            queue.clone(),
            checker,
            ConfirmSettings {
                lease: options.confirm_lease,
                poll: options.confirm_poll,
                claim_idle: options.confirm_claim_idle,
                ..ConfirmSettings::from(&settings)
            },
            worker_id.to_string(),
            registry.metrics.confirm.clone(),
        );
        // Before any job runs, so the group exists before the first share.accepted is written
        // by this process (it starts at the stream's beginning anyway).
        watcher
            .ensure_group()
            .await
            .map_err(|source| StartupError::Redis {
                url: settings.redis_url_redacted(),
                source,
            })?;

        let deliverer = match WebhookSettings::from_settings(&settings) {
            Some(mut ws) => {
                if let Some(lease) = options.webhook_lease {
                    ws.lease = lease;
                }
                let d = Deliverer::new(
                    queue.clone(),
                    ws,
                    worker_id.to_string(),
                    registry.metrics.webhooks.clone(),
                )
                .map_err(StartupError::WebhookClient)?;
                d.prepare().await.map_err(|source| StartupError::Redis {
                    url: settings.redis_url_redacted(),
                    source,
                })?;
                Some(d)
            }
            None => None,
        };

        let listener = tokio::net::TcpListener::bind(settings.http_addr)
            .await
            .map_err(|source| StartupError::Bind {
                addr: settings.http_addr,
                source,
            })?;
        let http_addr = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: settings.http_addr,
            source,
        })?;
        Ok(Self {
            queue,
            ctx,
            backend,
            listener,
            http_addr,
            registry,
            shutdown_timeout: settings.shutdown_timeout,
            watcher,
            deliverer,
        })
    }

    /// The address `/metrics`, `/healthz` and `/readyz` are served on (the bound port when
    /// `ENVSHARE_HTTP_ADDR` asked for port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The queue this worker runs.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// The backend's handle: worker id, counters, held leases.
    pub fn handle(&self) -> BackendHandle {
        self.backend.handle()
    }

    /// Runs jobs until `shutdown` completes, then shuts down gracefully (see the module docs).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<RunReport, RunError> {
        let Application {
            queue,
            ctx,
            backend,
            listener,
            http_addr,
            registry,
            shutdown_timeout,
            watcher,
            deliverer,
        } = self;
        let watcher = watcher.start();
        let deliverer = deliverer.map(Deliverer::start);
        let handle = backend.handle();
        let worker_id = handle.worker_id().clone();

        let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
        let router = http::router(http::HttpState {
            queue: queue.clone(),
            ctx: ctx.clone(),
            registry,
        });
        let http_task = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = http_stop_rx.await;
                })
                .await;
            if let Err(e) = served {
                warn!(error = %e, "the HTTP endpoint stopped");
            }
        });

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let worker = WorkerBuilder::new(format!("envshare-worker-{worker_id}"))
            .backend(backend)
            .data(ctx)
            .build(share_handler);
        let mut run = Box::pin(worker.run_until(async move {
            let _ = stop_rx.await;
            Ok::<(), std::io::Error>(())
        }));
        info!(worker_id = %worker_id, %http_addr, queue = %queue.keys().prefix(), "worker started");

        let mut released = 0;
        tokio::select! {
            result = &mut run => {
                // The worker only ends by itself on an error.
                let _ = http_stop_tx.send(());
                let _ = http_task.await;
                watcher.shutdown().await;
                if let Some(d) = deliverer {
                    d.shutdown().await;
                }
                result.map_err(|e| RunError::Worker(e.to_string()))?;
                return Ok(report(&handle, 0));
            }
            () = shutdown => {}
        }
        let running = handle.held();
        info!(
            running,
            timeout_ms = shutdown_timeout.as_millis() as u64,
            "shutting down: no new jobs; waiting for running jobs"
        );
        // Stop claiming, then let apalis drain the running jobs; claimed jobs that never started
        // are released by the backend on close.
        handle.stop_fetching();
        let _ = stop_tx.send(());
        match tokio::time::timeout(shutdown_timeout, &mut run).await {
            Ok(result) => {
                if let Err(e) = result {
                    warn!(error = %e, "the worker reported an error while stopping");
                }
            }
            Err(_) => {
                // Dropping the worker cancels the jobs still running; their leases go back.
                drop(run);
                released = handle.release_held().await.map_err(RunError::Release)?;
                warn!(
                    released,
                    "shutdown timeout reached: released the unfinished jobs back to ready"
                );
                if let Err(e) = queue.deregister_worker(&worker_id).await {
                    warn!(error = %e, "deregistering the worker failed");
                }
            }
        }
        watcher.shutdown().await;
        if let Some(d) = deliverer {
            d.shutdown().await;
        }
        let _ = http_stop_tx.send(());
        let _ = http_task.await;
        let report = report(&handle, released);
        info!(
            claimed = report.claimed,
            acked = report.acked,
            released,
            "worker stopped"
        );
        Ok(report)
    }
}

fn report(handle: &BackendHandle, released: usize) -> RunReport {
    let c = handle.counters();
    RunReport {
        claimed: c.claimed.load(Ordering::Relaxed),
        acked: c.acked.load(Ordering::Relaxed),
        released,
    }
}
