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

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

use crate::redis_url::{RedisTarget, parse_target};

/// A connection to a single Redis server or to a Redis Cluster (see the
/// [module documentation](self)). Cheap to clone: clones share the underlying connections.
#[derive(Clone)]
pub enum RedisConn {
    /// One server, through a connection manager that reconnects after errors.
    Single(ConnectionManager),
    /// A Redis Cluster, through the redis crate's async cluster client.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connections hold the URL (and its password): show only the mode.
        match self {
            RedisConn::Single(_) => f.write_str("RedisConn::Single"),
            RedisConn::Cluster(_) => f.write_str("RedisConn::Cluster"),
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
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
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
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(options.connection_timeout))
                .set_response_timeout(options.response_timeout)
                .set_number_of_retries(options.retries);
            Ok(RedisConn::Single(
                ConnectionManager::new_with_config(client, config).await?,
            ))
        }
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
