//! One end-to-end stack for the tests: the shared Redis, the WeChat sandbox over real HTTP, a
//! queue of the test's own, and in-process workers (`envshare::worker::Application`) started on
//! demand.

use std::net::SocketAddr;
use std::time::Duration;

use envshare::config::Settings;
use envshare::events::EventKind;
use envshare::sandbox::{Sandbox, SandboxConfig, SandboxHandle};
use envshare::store::read_all;
use envshare::store::{EnqueueOptions, NewJob, Queue, QueueSettings, QueueStats};
use envshare::wechat::Endpoint;
use envshare::worker::{Application, RunError, RunReport, WorkerOptions};
use envshare::{AppId, BatchId, EnvId, JobId, QueueName};
use secrecy::SecretString;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{TestRedis, unique_queue, wait_until};

/// Redis + sandbox + a queue named for this test, and worker settings pointing at them.
///
/// `settings` is public so a test can change it before starting a worker; every worker started
/// with [`worker`](Self::worker) takes a copy of it at that moment.
pub struct TestStack {
    /// The sandbox standing in for WeChat.
    pub sandbox: SandboxHandle,
    /// The test's queue, connected to the shared Redis.
    pub queue: Queue,
    /// Settings for workers started from this stack.
    pub settings: Settings,
}

impl std::fmt::Debug for TestStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestStack")
            .field("queue", &self.settings.queue.as_str())
            .field("sandbox", &self.sandbox.url())
            .finish_non_exhaustive()
    }
}

impl TestStack {
    /// Starts the sandbox with `config`, takes a queue name from `prefix`, and builds settings
    /// for a quick test run, then lets `tweak` change them.
    ///
    /// The defaults: the first of `config.static_tokens` as the access token (none if it is
    /// empty), concurrency 8, 5 attempts, backoff 20 ms to 100 ms, request and shutdown timeouts
    /// of 5 s, the HTTP endpoint on a free port.
    pub async fn start(
        prefix: &str,
        config: SandboxConfig,
        tweak: impl FnOnce(&mut Settings),
    ) -> TestStack {
        envshare::telemetry::init_for_tests();
        let token = config.static_tokens.first().cloned();
        let sandbox = Sandbox::start(config).await.expect("sandbox starts");
        let name = unique_queue(prefix);
        let redis = TestRedis::shared();
        let mut settings = Settings::defaults();
        settings.redis_url = redis.url().to_owned();
        settings.queue = name.clone();
        settings.wechat_base_url = sandbox.url().to_owned();
        settings.access_token = token.map(SecretString::from);
        settings.concurrency = 8;
        settings.max_attempts = 5;
        settings.backoff_base = Duration::from_millis(20);
        settings.backoff_max = Duration::from_millis(100);
        settings.request_timeout = Duration::from_secs(5);
        settings.shutdown_timeout = Duration::from_secs(5);
        settings.http_addr = "127.0.0.1:0".parse().expect("a socket address");
        tweak(&mut settings);
        let queue = Queue::connect(redis.url(), &name, QueueSettings::default())
            .await
            .expect("queue connects");
        TestStack {
            sandbox,
            queue,
            settings,
        }
    }

    /// The test's queue name.
    pub fn name(&self) -> &QueueName {
        &self.settings.queue
    }

    /// Starts a worker with the stack's settings and default options.
    pub async fn worker(&self) -> RunningWorker {
        self.worker_with(self.settings.clone(), WorkerOptions::default())
            .await
    }

    /// Starts a worker with these settings and options.
    pub async fn worker_with(&self, settings: Settings, options: WorkerOptions) -> RunningWorker {
        let app = Application::build_with(settings, options)
            .await
            .expect("worker builds");
        let http = app.http_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        RunningWorker {
            stop: Some(stop),
            task,
            http,
        }
    }

    /// Enqueues one job per slice of `jobs` for environment `env`, as one sealed batch (forced,
    /// so a repeated appid is not skipped).
    pub async fn enqueue(&self, env: &str, jobs: &[Vec<AppId>]) -> (BatchId, Vec<JobId>) {
        let batch = BatchId::generate();
        let env = EnvId::parse(env).expect("a valid env id");
        let new = jobs
            .iter()
            .map(|appids| NewJob {
                op: envshare::store::JobOp::Share,
                env: env.clone(),
                appids: appids.clone(),
                batch: batch.clone(),
                run_at_ms: None,
            })
            .collect();
        let report = self
            .queue
            .enqueue(
                new,
                EnqueueOptions {
                    force: true,
                    seal: true,
                },
            )
            .await
            .expect("enqueue");
        (batch, report.job_ids)
    }

    /// Stores the component verify ticket, as `envshare ticket set` does.
    pub async fn set_ticket(&self, ticket: &str) {
        envshare::token::store_ticket(&self.queue, &ticket.into())
            .await
            .expect("storing the ticket");
    }

    /// Every event in the queue's stream so far, oldest first.
    pub async fn events(&self) -> Vec<EventKind> {
        let mut conn = TestRedis::shared().conn().await;
        read_all(&mut conn, self.queue.keys())
            .await
            .expect("events")
            .into_iter()
            .map(|e| e.event.kind)
            .collect()
    }

    /// Waits until `n` share events (accepted or failed) are in the stream, and returns them;
    /// panics if fewer came within `timeout`.
    pub async fn share_events(&self, n: usize, timeout: Duration) -> Vec<EventKind> {
        let ok = wait_until(timeout, || async {
            self.events().await.iter().filter(|e| is_share(e)).count() >= n
        })
        .await;
        let events: Vec<EventKind> = self.events().await.into_iter().filter(is_share).collect();
        assert!(
            ok,
            "expected {n} share events, got {}: {events:?}",
            events.len()
        );
        events
    }

    /// The queue's counters.
    pub async fn stats(&self) -> QueueStats {
        self.queue.stats().await.expect("stats")
    }

    /// Waits until the queue is paused with a reason containing `needle` (an errcode, say);
    /// `false` if it is not within `timeout`.
    #[must_use = "assert on the result: false means the queue never paused so"]
    pub async fn wait_paused(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || async {
            self.stats()
                .await
                .paused
                .is_some_and(|p| p.reason.contains(needle))
        })
        .await
    }

    /// How many share calls the sandbox has answered.
    pub fn share_calls(&self) -> u64 {
        self.sandbox.calls(Endpoint::ShareEnv)
    }
}

/// Whether `e` is a share event: the final word on one appid (accepted or failed).
pub fn is_share(e: &EventKind) -> bool {
    matches!(
        e,
        EventKind::ShareAccepted { .. } | EventKind::ShareFailed { .. }
    )
}

/// A worker running in-process, from [`TestStack::worker`].
pub struct RunningWorker {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<RunReport, RunError>>,
    http: SocketAddr,
}

impl std::fmt::Debug for RunningWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningWorker")
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

impl RunningWorker {
    /// The address of its HTTP endpoint (`/healthz`, `/readyz`, `/metrics`).
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// Asks it to stop and waits for its report; panics if it does not stop cleanly.
    pub async fn stop(mut self) -> RunReport {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task
            .await
            .expect("worker task")
            .expect("worker stops cleanly")
    }
}
