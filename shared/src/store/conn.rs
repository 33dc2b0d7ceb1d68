//! One Redis connection type for a single server and for Redis Cluster.
//!
//! [`RedisConn`] is either a [`ConnectionManager`] (one server, reconnects by itself) or the
//! redis crate's async [`ClusterConnection`] (discovers the cluster from any node, follows
//! `MOVED`/`ASK`, reconnects by itself). Both are cheap to clone and multiplex concurrent
//! commands on their connections; everything in envshare that talks to Redis takes this type.
//!
//! # Choosing cluster mode
//!
//! Cluster mode is on when `ENVSHARE_REDIS_CLUSTER=1` (`Settings::redis_cluster`) **or** when
//! the URL has the scheme `redis+cluster://` (`rediss+cluster://` for TLS). The authority of the
//! URL may list several nodes, separated by commas:
//!
//! ```text
//! redis+cluster://127.0.0.1:7000
//! redis+cluster://:password@10.0.0.1:6379,10.0.0.2:6379,10.0.0.3:6379
//! redis://10.0.0.1:6379            (with ENVSHARE_REDIS_CLUSTER=1)
//! ```
//!
//! One reachable node is enough: the client reads the slot map from it and connects to the
//! others. More nodes only help when some are down at start. The user name and password apply
//! to every node; Redis Cluster has only database 0.
//!
//! Every key of a queue carries the hash tag `{QUEUE}`, so one queue lives in one slot and every
//! script and pipeline of the queue runs on one node. The URL forms are read by
//! [`crate::redis_url`].
//!
//! # Sentinel
//!
//! A `redis+sentinel://` URL (built from `ENVSHARE_REDIS_SENTINELS` and
//! `ENVSHARE_REDIS_SENTINEL_MASTER` by [`Settings::redis_connect_url`](crate::config::Settings::redis_connect_url))
//! gives a [`SentinelConn`]: it asks the Sentinels, in order, for the master's address
//! (`SENTINEL get-master-addr-by-name`) and holds a [`ConnectionManager`] to it. A command that
//! fails for the connection (refused, dropped, timed out) or because the server is no longer a
//! writable master (`READONLY`, `MASTERDOWN`) makes it ask again, at most every
//! [`REDISCOVER_EVERY`]; when the answer is a new address, later commands go there. The failed
//! command itself returns its error: every caller already retries Redis errors.
//!

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

use crate::redis_url::{RedisTarget, SentinelTarget, parse_host_port, parse_target};

/// A connection to a single Redis server or to a Redis Cluster (see the
/// [module documentation](self)). Cheap to clone: clones share the underlying connections.
#[derive(Clone)]
pub enum RedisConn {
    /// One server, through a connection manager that reconnects after errors.
    Single(ConnectionManager),
    /// A Redis Cluster, through the redis crate's async cluster client.
    Cluster(ClusterConnection),
    /// The master of a Sentinel-monitored group, followed across failovers.
    Sentinel(SentinelConn),
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connections hold the URL (and its password): show only the mode.
        match self {
            RedisConn::Single(_) => f.write_str("RedisConn::Single"),
            RedisConn::Cluster(_) => f.write_str("RedisConn::Cluster"),
            RedisConn::Sentinel(_) => f.write_str("RedisConn::Sentinel"),
        }
    }
}

impl RedisConn {
    /// Whether this is a cluster connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisConn::Cluster(_))
    }
}

impl From<ConnectionManager> for RedisConn {
    fn from(conn: ConnectionManager) -> Self {
        RedisConn::Single(conn)
    }
}

impl From<ClusterConnection> for RedisConn {
    fn from(conn: ClusterConnection) -> Self {
        RedisConn::Cluster(conn)
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
            RedisConn::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(cmd, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            RedisConn::Sentinel(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
            RedisConn::Sentinel(c) => c.get_db(),
        }
    }
}

/// How often a [`SentinelConn`] may ask the Sentinels again after errors.
pub const REDISCOVER_EVERY: Duration = Duration::from_millis(250);

/// A connection to the master of a Sentinel-monitored group that follows failovers (see the
/// [module documentation](self)). Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct SentinelConn {
    inner: Arc<SentinelInner>,
}

struct SentinelInner {
    target: SentinelTarget,
    options: ConnectOptions,
    /// The master's address and the connection to it.
    current: RwLock<(String, u16, ConnectionManager)>,
    /// When the Sentinels were last asked; held while asking (one question at a time).
    asked: tokio::sync::Mutex<Option<Instant>>,
    db: i64,
}

impl SentinelConn {
    /// Asks the Sentinels for the master and connects to it.
    pub async fn connect(
        target: SentinelTarget,
        options: ConnectOptions,
    ) -> Result<SentinelConn, RedisError> {
        let (host, port) = master_address(&target, &options).await?;
        let manager = master_manager(&target, &host, port, &options).await?;
        let db = manager.get_db();
        Ok(SentinelConn {
            inner: Arc::new(SentinelInner {
                target,
                options,
                current: RwLock::new((host, port, manager)),
                asked: tokio::sync::Mutex::new(Some(Instant::now())),
                db,
            }),
        })
    }

    /// The master's address as last learned from the Sentinels.
    pub fn master_address(&self) -> (String, u16) {
        let current = self.inner.current.read().unwrap_or_else(|e| e.into_inner());
        (current.0.clone(), current.1)
    }

    /// A client for the master as last learned from the Sentinels (for connections of its own,
    /// such as a pub/sub subscription).
    pub fn master_client(&self) -> Result<redis::Client, RedisError> {
        let (host, port) = self.master_address();
        redis::Client::open(self.inner.target.master_url(&host, port).as_str())
    }

    fn manager(&self) -> ConnectionManager {
        self.inner
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .2
            .clone()
    }

    /// After an error that may mean a failover: asks the Sentinels again (unless another
    /// command is asking, or they were asked within [`REDISCOVER_EVERY`]) and moves to the
    /// master they name if it is a new one.
    async fn after_error(&self, error: &RedisError) {
        if !points_to_failover(error) {
            return;
        }
        let Ok(mut asked) = self.inner.asked.try_lock() else {
            return;
        };
        if asked.is_some_and(|t| t.elapsed() < REDISCOVER_EVERY) {
            return;
        }
        *asked = Some(Instant::now());
        let options = ConnectOptions {
            retries: 0,
            ..self.inner.options
        };
        let Ok((host, port)) = master_address(&self.inner.target, &options).await else {
            return;
        };
        if self.master_address() == (host.clone(), port) {
            return;
        }
        match master_manager(&self.inner.target, &host, port, &options).await {
            Ok(manager) => {
                tracing::warn!(master = %self.inner.target.master, %host, port,
                    "Sentinel names a new Redis master: switching to it");
                *self
                    .inner
                    .current
                    .write()
                    .unwrap_or_else(|e| e.into_inner()) = (host, port, manager);
            }
            Err(e) => tracing::debug!(error = %e, "the new Redis master is not reachable yet"),
        }
    }
}

/// Errors after which the master may have moved: the connection failed, or the server is no
/// longer a writable master.
fn points_to_failover(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || matches!(e.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
}

impl ConnectionLike for SentinelConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let result = self.manager().req_packed_command(cmd).await;
            if let Err(e) = &result {
                self.after_error(e).await;
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let result = self.manager().req_packed_commands(cmd, offset, count).await;
            if let Err(e) = &result {
                self.after_error(e).await;
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.db
    }
}

/// Asks each Sentinel in turn for the master's address; the first answer wins.
async fn master_address(
    target: &SentinelTarget,
    options: &ConnectOptions,
) -> Result<(String, u16), RedisError> {
    let mut last = None;
    for sentinel in &target.sentinels {
        let answer = async {
            let client = redis::Client::open(target.sentinel_url(sentinel).as_str())?;
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(options.connection_timeout))
                .set_response_timeout(Some(options.connection_timeout));
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let addr: Option<(String, String)> = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&target.master)
                .query_async(&mut conn)
                .await?;
            Ok::<_, RedisError>(addr)
        }
        .await;
        match answer {
            Ok(Some((host, port))) => {
                if let Some((_, port)) = parse_host_port(&format!("{host}:{port}")) {
                    return Ok((host, port));
                }
            }
            Ok(None) => {
                last = Some(RedisError::from((
                    redis::ErrorKind::InvalidClientConfig,
                    "the Sentinels do not know this master (ENVSHARE_REDIS_SENTINEL_MASTER)",
                )));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        RedisError::from((redis::ErrorKind::InvalidClientConfig, "no Sentinel given"))
    }))
}

async fn master_manager(
    target: &SentinelTarget,
    host: &str,
    port: u16,
    options: &ConnectOptions,
) -> Result<ConnectionManager, RedisError> {
    let client = redis::Client::open(target.master_url(host, port).as_str())?;
    // Few, short reconnection attempts: while a dead master's manager retries, every command
    // waits for it, and only a failed command makes the Sentinels be asked again.
    let config = manager_config(&ConnectOptions {
        retries: options.retries.min(1),
        ..*options
    })
    .set_max_delay(REDISCOVER_EVERY);
    ConnectionManager::new_with_config(client, config).await
}

fn manager_config(options: &ConnectOptions) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(options.connection_timeout))
        .set_response_timeout(options.response_timeout)
        .set_number_of_retries(options.retries)
}

/// Timeouts and retries of a connection. `Default` gives the queue's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectOptions {
    /// How long one connection attempt to one server may take.
    pub connection_timeout: Duration,
    /// How long a command may wait for its answer; `None` for connections that run blocking
    /// commands (`XREADGROUP … BLOCK`), which legitimately wait.
    pub response_timeout: Option<Duration>,
    /// Connection attempts after the first one fails (single server: at start and after
    /// errors; cluster: per node connection).
    pub retries: usize,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            connection_timeout: Duration::from_secs(2),
            response_timeout: Some(Duration::from_secs(5)),
            retries: 6,
        }
    }
}

/// Connects with the [default options](ConnectOptions::default) (the queue's timeouts).
pub async fn connect(url: &str, cluster: bool) -> Result<RedisConn, RedisError> {
    connect_with(url, cluster, ConnectOptions::default()).await
}

/// Connects to the server or cluster `url` points to (see [`parse_target`]).
///
/// A cluster connection reads the slot map before it returns, so an unreachable or unready
/// cluster fails here.
pub async fn connect_with(
    url: &str,
    cluster: bool,
    options: ConnectOptions,
) -> Result<RedisConn, RedisError> {
    match parse_target(url, cluster)? {
        RedisTarget::Single(url) => {
            let client = redis::Client::open(url.as_str())?;
            Ok(RedisConn::Single(
                ConnectionManager::new_with_config(client, manager_config(&options)).await?,
            ))
        }
        RedisTarget::Sentinel(target) => Ok(RedisConn::Sentinel(
            SentinelConn::connect(target, options).await?,
        )),
        RedisTarget::Cluster(nodes) => {
            let mut builder = ClusterClientBuilder::new(nodes)
                .connection_timeout(options.connection_timeout)
                .retries(options.retries as u32);
            if let Some(timeout) = options.response_timeout {
                builder = builder.response_timeout(timeout);
            }
            let client = builder.build()?;
            Ok(RedisConn::Cluster(client.get_async_connection().await?))
        }
    }
}

/// [`connect_with`], then `PING`: some URL forms connect lazily, and only an answer proves that
/// Redis is there.
pub async fn connect_and_ping(
    url: &str,
    cluster: bool,
    options: ConnectOptions,
) -> Result<RedisConn, RedisError> {
    let mut conn = connect_with(url, cluster, options).await?;
    redis::cmd("PING").query_async::<()>(&mut conn).await?;
    Ok(conn)
}
