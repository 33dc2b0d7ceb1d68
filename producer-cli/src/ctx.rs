//! What every command needs from the settings, and the Redis connections built from them.

use std::time::Duration;

use anyhow::Context as _;
use envshare::QueueName;
use envshare::config::Settings;
use envshare::store::conn::{self, ConnectOptions};
use envshare::store::{Keys, Queue, QueueSettings};

use crate::fail::redis_unreachable;

/// How long to wait for Redis to answer a connection attempt before saying it is unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The settings the commands use.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The Redis URL (may hold a password: shown only through `envshare::config::redact_url`).
    pub redis_url: String,
    /// `ENVSHARE_REDIS_CLUSTER`: Redis Cluster even without a `redis+cluster://` URL.
    pub redis_cluster: bool,
    /// The queue's name.
    pub queue: QueueName,
    /// The queue's keys.
    pub keys: Keys,
    /// Default appids per job.
    pub chunk_size: usize,
    /// The queue's own settings (dedupe window, events length, …).
    pub queue_settings: QueueSettings,
    /// Every setting (the WeChat client and token for `--skip-bound`).
    pub settings: Settings,
}

impl Ctx {
    /// What the commands need from `settings`.
    pub fn new(settings: &Settings) -> Self {
        Self {
            redis_url: settings.redis_connect_url(),
            redis_cluster: settings.redis_cluster,
            queue: settings.queue.clone(),
            keys: Keys::new(&settings.queue),
            chunk_size: settings.chunk_size.max(1),
            queue_settings: QueueSettings::from(settings),
            settings: settings.clone(),
        }
    }

    /// Connects to the queue (loads its scripts), saying how to fix an unreachable Redis.
    pub async fn queue(&self) -> anyhow::Result<Queue> {
        // The queue's connection manager retries a refused connection for seconds; a plain
        // connection first fails fast and names the real cause.
        self.check_redis().await?;
        let connect = Queue::connect_with(
            &self.redis_url,
            self.redis_cluster,
            &self.queue,
            self.queue_settings.clone(),
        );
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(queue) => queue.with_context(|| redis_unreachable(&self.redis_url)),
            Err(_) => Err(anyhow::anyhow!(
                "no answer within {} s",
                CONNECT_TIMEOUT.as_secs()
            ))
            .with_context(|| redis_unreachable(&self.redis_url)),
        }
    }

    /// Checks that the queue's Redis (or Redis Cluster) answers, failing at once with a message
    /// that names the real cause.
    pub async fn check_redis(&self) -> anyhow::Result<()> {
        // No retries: a refused connection fails at once and names the real cause.
        let options = ConnectOptions {
            connection_timeout: CONNECT_TIMEOUT,
            response_timeout: Some(Duration::from_secs(30)),
            retries: 0,
        };
        conn::connect_and_ping(&self.redis_url, self.redis_cluster, options)
            .await
            .with_context(|| redis_unreachable(&self.redis_url))?;
        Ok(())
    }
}
