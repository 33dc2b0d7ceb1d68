//! One Redis connection type for a single server and for Redis Cluster.
//!
//! [`RedisConn`] is either a [`ConnectionManager`] (one server, reconnects by itself) or the
//! redis crate's async [`ClusterConnection`] (discovers the cluster from any node, follows
//! `MOVED`/`ASK`, reconnects by itself). Both are cheap to clone and multiplex concurrent
//! commands on their connections; everything in envshare that talks to Redis takes this type.
//!
//! # Choosing cluster mode
//!
//! Cluster mode is on when `ENVSHARE_REDIS_CLUSTER=1` ([`Settings::redis_cluster`]) **or** when
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
//! script and pipeline of the queue runs on one node (DESIGN.md §4).
//!
//! [`Settings::redis_cluster`]: crate::config::Settings::redis_cluster

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Value};

/// The URL scheme that selects cluster mode.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";
/// The URL scheme that selects cluster mode over TLS.
pub const CLUSTER_TLS_SCHEME: &str = "rediss+cluster://";

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

/// Where a URL points: one server, or the seed nodes of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// A single server, by its URL (given as is).
    Single(String),
    /// A cluster, by the URLs of its seed nodes (`redis://…` or `rediss://…`, each carrying the
    /// user name, password and path of the original URL).
    Cluster(Vec<String>),
}

/// Whether `url` selects cluster mode by its scheme (`redis+cluster://`, `rediss+cluster://`).
pub fn is_cluster_url(url: &str) -> bool {
    url.starts_with(CLUSTER_SCHEME) || url.starts_with(CLUSTER_TLS_SCHEME)
}

fn invalid(detail: &'static str) -> RedisError {
    RedisError::from((ErrorKind::InvalidClientConfig, detail))
}

/// Reads `url` as a single server or as the seed nodes of a cluster: cluster when `cluster` is
/// set or the scheme is `redis+cluster://`; a comma-separated node list is allowed only then.
///
/// Errors never quote the URL, which may hold a password.
pub fn parse_target(url: &str, cluster: bool) -> Result<RedisTarget, RedisError> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) {
        ("redis://", rest)
    } else if let Some(rest) = url.strip_prefix(CLUSTER_TLS_SCHEME) {
        ("rediss://", rest)
    } else if cluster {
        match url.find("://") {
            Some(i) if matches!(&url[..i], "redis" | "rediss") => (&url[..i + 3], &url[i + 3..]),
            _ => {
                return Err(invalid(
                    "a cluster URL must start with redis+cluster://, redis:// or rediss://",
                ));
            }
        }
    } else {
        if url.contains(',') {
            return Err(invalid(
                "a list of nodes needs cluster mode (redis+cluster:// or ENVSHARE_REDIS_CLUSTER=1)",
            ));
        }
        return Ok(RedisTarget::Single(url.to_owned()));
    };
    // rest = [userinfo@]node[,node…][/path][?query]; userinfo may itself hold '@' or ','
    // (passwords), so the node list starts after the LAST '@' before the path.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let nodes: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .map(|host| {
            if host.is_empty() {
                Err(invalid("empty node in the cluster URL's node list"))
            } else {
                Ok(format!("{scheme}{userinfo}{host}{tail}"))
            }
        })
        .collect::<Result<_, _>>()?;
    // Each node URL must parse on its own; this builds no connection.
    for node in &nodes {
        redis::IntoConnectionInfo::into_connection_info(node.as_str())
            .map_err(|_| invalid("a node of the cluster URL is not a Redis URL"))?;
    }
    Ok(RedisTarget::Cluster(nodes))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(url: &str, cluster: bool) -> Vec<String> {
        match parse_target(url, cluster).unwrap() {
            RedisTarget::Cluster(n) => n,
            RedisTarget::Single(u) => panic!("expected a cluster, got {u}"),
        }
    }

    #[test]
    fn a_plain_url_without_the_flag_is_one_server() {
        assert_eq!(
            parse_target("redis://127.0.0.1:6379/2", false).unwrap(),
            RedisTarget::Single("redis://127.0.0.1:6379/2".into())
        );
        assert!(!is_cluster_url("redis://127.0.0.1:6379"));
    }

    #[test]
    fn the_cluster_scheme_lists_every_node_with_the_credentials() {
        assert!(is_cluster_url("redis+cluster://a:1"));
        assert_eq!(
            nodes("redis+cluster://u:p@127.0.0.1:7000,127.0.0.1:7001", false),
            ["redis://u:p@127.0.0.1:7000", "redis://u:p@127.0.0.1:7001"]
        );
    }

    // A rediss:// node is only a valid Redis URL in a build with TLS.
    #[cfg(feature = "tls")]
    #[test]
    fn the_tls_cluster_scheme_lists_every_node_with_the_credentials() {
        assert_eq!(
            nodes("rediss+cluster://:pw@h1:1, h2:2/0", false),
            ["rediss://:pw@h1:1/0", "rediss://:pw@h2:2/0"]
        );
    }

    #[test]
    fn the_cluster_flag_turns_a_plain_url_into_a_seed_node() {
        assert_eq!(
            nodes("redis://127.0.0.1:7000", true),
            ["redis://127.0.0.1:7000"]
        );
        assert_eq!(
            nodes("redis://a:1,b:2", true),
            ["redis://a:1", "redis://b:2"]
        );
    }

    #[test]
    fn a_password_with_an_at_sign_or_comma_stays_whole() {
        assert_eq!(
            nodes("redis+cluster://:p@s,s@h1:1,h2:2", false),
            ["redis://:p@s,s@h1:1", "redis://:p@s,s@h2:2"]
        );
    }

    #[test]
    fn bad_cluster_urls_are_rejected_without_quoting_them() {
        for (url, cluster) in [
            ("redis+cluster://", false),
            ("redis+cluster://a:1,,b:2", false),
            ("redis://:secretpw@a:1,b:2", false),
            ("unix:///tmp/redis.sock", true),
            ("redis+cluster://:secretpw@a:notaport", false),
        ] {
            let err = parse_target(url, cluster).unwrap_err();
            assert!(!err.to_string().contains("secretpw"), "{err}");
        }
    }
}
