//! Redis URLs: a single server, the seed nodes of a Redis Cluster (`redis+cluster://`, or any
//! `redis://` URL with `ENVSHARE_REDIS_CLUSTER=1`), or a master found through Sentinel
//! (`redis+sentinel://`, or `ENVSHARE_REDIS_SENTINELS`). Pure parsing, used by the settings (to
//! reject a bad URL when they load) and by the storage layer's connections.

use redis::{ErrorKind, RedisError};

/// The URL scheme that selects cluster mode.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";
/// The URL scheme that selects cluster mode over TLS.
pub const CLUSTER_TLS_SCHEME: &str = "rediss+cluster://";

/// The URL scheme that finds the master through Sentinel:
/// `redis+sentinel://[[user]:password@]sentinel:port[,sentinel:port…]/MASTER[/DB]`.
pub const SENTINEL_SCHEME: &str = "redis+sentinel://";
/// [`SENTINEL_SCHEME`] with TLS to the master and to the Sentinels.
pub const SENTINEL_TLS_SCHEME: &str = "rediss+sentinel://";

/// Whether `url` finds its master through Sentinel (`redis+sentinel://`, `rediss+sentinel://`).
pub fn is_sentinel_url(url: &str) -> bool {
    url.starts_with(SENTINEL_SCHEME) || url.starts_with(SENTINEL_TLS_SCHEME)
}

/// A master found through Sentinel: the Sentinels to ask, the master's name, and what the master
/// URL carries besides its address (user, password, database, TLS).
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelTarget {
    /// The Sentinels, as `host:port`.
    pub sentinels: Vec<String>,
    /// The monitored master's name (`SENTINEL get-master-addr-by-name NAME`).
    pub master: String,
    scheme: &'static str,
    userinfo: String,
    db: String,
}

impl std::fmt::Debug for SentinelTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The userinfo may hold a password.
        f.debug_struct("SentinelTarget")
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .field("tls", &(self.scheme == "rediss://"))
            .finish_non_exhaustive()
    }
}

impl SentinelTarget {
    /// The URL of the master at `host:port`, with the user, password, database and TLS.
    pub fn master_url(&self, host: &str, port: u16) -> String {
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        format!("{}{}{host}:{port}/{}", self.scheme, self.userinfo, self.db)
    }

    /// The URL of a Sentinel (`host:port`): the same TLS mode, no credentials.
    pub fn sentinel_url(&self, sentinel: &str) -> String {
        format!("{}{sentinel}", self.scheme)
    }
}

/// The `redis+sentinel://` URL for the settings `ENVSHARE_REDIS_SENTINELS` (`sentinels`) and
/// `ENVSHARE_REDIS_SENTINEL_MASTER` (`master`), taking user, password, database and TLS from
/// `redis_url` (`ENVSHARE_REDIS_URL`; its host is not used).
pub fn sentinel_url(redis_url: &str, sentinels: &[String], master: &str) -> String {
    let (scheme, rest) = match redis_url.strip_prefix("rediss://") {
        Some(rest) => (SENTINEL_TLS_SCHEME, rest),
        None => (
            SENTINEL_SCHEME,
            redis_url.split_once("://").map_or("", |(_, r)| r),
        ),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let userinfo = authority.rfind('@').map_or("", |at| &authority[..=at]);
    let db = tail
        .strip_prefix('/')
        .map(|t| t.split(['?', '#']).next().unwrap_or(""))
        .filter(|d| !d.is_empty())
        .unwrap_or("0");
    format!("{scheme}{userinfo}{}/{master}/{db}", sentinels.join(","))
}

/// Reads a `redis+sentinel://` or `rediss+sentinel://` URL. Errors never quote the URL.
pub fn parse_sentinel(url: &str) -> Result<SentinelTarget, RedisError> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix(SENTINEL_SCHEME) {
        ("redis://", rest)
    } else if let Some(rest) = url.strip_prefix(SENTINEL_TLS_SCHEME) {
        ("rediss://", rest)
    } else {
        return Err(invalid("a Sentinel URL starts with redis+sentinel://"));
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let sentinels: Vec<String> = hosts.split(',').map(|h| h.trim().to_owned()).collect();
    for s in &sentinels {
        parse_host_port(s).ok_or_else(|| invalid("a Sentinel must be host:port"))?;
    }
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let master = parts.next().unwrap_or("").to_owned();
    if master.is_empty() {
        return Err(invalid(
            "a Sentinel URL needs the master's name: redis+sentinel://host:port/MASTER",
        ));
    }
    let db = parts.next().filter(|d| !d.is_empty()).unwrap_or("0");
    if db.parse::<u16>().is_err() {
        return Err(invalid("the database of a Sentinel URL must be a number"));
    }
    Ok(SentinelTarget {
        sentinels,
        master,
        scheme,
        userinfo: userinfo.to_owned(),
        db: db.to_owned(),
    })
}

/// `host:port` with a non-empty host and a port above 0.
pub fn parse_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|&p| p > 0)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty() && !host.contains(['/', '@', ','])).then_some((host, port))
}

/// Where a URL points: one server, the seed nodes of a cluster, or a master behind Sentinels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// A master found through Sentinel.
    Sentinel(SentinelTarget),
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
    if is_sentinel_url(url) {
        return parse_sentinel(url).map(RedisTarget::Sentinel);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(url: &str, cluster: bool) -> Vec<String> {
        match parse_target(url, cluster).unwrap() {
            RedisTarget::Cluster(n) => n,
            other => panic!("expected a cluster, got {other:?}"),
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
    fn sentinel_settings_make_a_sentinel_url_with_the_credentials_and_db() {
        let sentinels = ["10.0.0.1:26379".to_owned(), "10.0.0.2:26379".to_owned()];
        let url = sentinel_url("redis://:pw@ignored:6379/3", &sentinels, "mymaster");
        assert_eq!(
            url,
            "redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26379/mymaster/3"
        );
        let t = parse_sentinel(&url).unwrap();
        assert_eq!(t.sentinels, sentinels);
        assert_eq!(t.master, "mymaster");
        assert_eq!(
            t.master_url("10.0.0.9", 6380),
            "redis://:pw@10.0.0.9:6380/3"
        );
        assert_eq!(t.sentinel_url("10.0.0.1:26379"), "redis://10.0.0.1:26379");
        assert!(!format!("{t:?}").contains("pw"));
        let tls = sentinel_url("rediss://h", &sentinels[..1], "m");
        assert_eq!(tls, "rediss+sentinel://10.0.0.1:26379/m/0");
        assert!(matches!(
            parse_target(&tls, false).unwrap(),
            RedisTarget::Sentinel(_)
        ));
    }

    #[test]
    fn bad_sentinel_urls_are_rejected_without_quoting_them() {
        for url in [
            "redis+sentinel://:secretpw@h:1",
            "redis+sentinel://:secretpw@h/m",
            "redis+sentinel://:secretpw@h:0/m",
            "redis+sentinel://:secretpw@h:1,/m",
            "redis+sentinel://:secretpw@h:1/m/x",
        ] {
            let err = parse_sentinel(url).unwrap_err();
            assert!(!err.to_string().contains("secretpw"), "{err}");
        }
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
