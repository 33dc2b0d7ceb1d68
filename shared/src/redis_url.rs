//! Redis URLs: a single server, or the seed nodes of a Redis Cluster (`redis+cluster://`, or any
//! `redis://` URL with `ENVSHARE_REDIS_CLUSTER=1`). Pure parsing, used by the settings (to reject
//! a bad URL when they load) and by the storage layer's connections.

use redis::{ErrorKind, RedisError};

/// The URL scheme that selects cluster mode.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";
/// The URL scheme that selects cluster mode over TLS.
pub const CLUSTER_TLS_SCHEME: &str = "rediss+cluster://";

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
