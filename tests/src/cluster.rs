//! [`TestCluster`]: a private three-node Redis Cluster.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use envshare::sandbox::{LocalRedis, LocalRedisOptions};

use crate::fixtures::free_port;
use crate::process::spawn_tied_to_process;
use crate::redis::START_TIMEOUT;

/// How long `redis-cli --cluster create` and the cluster's own agreement on `cluster_state:ok`
/// may take.
const CLUSTER_START_TIMEOUT: Duration = Duration::from_secs(20);

/// Bus ports tried per node before giving up: the bus port, like the client port, is released
/// before `redis-server` binds it.
const BUS_PORT_TRIES: usize = 5;

/// A private Redis Cluster of three masters (no replicas) on free ports, in a temporary
/// directory, without persistence. Every node is killed and the directory removed on `Drop`
/// (and on Linux the nodes also die with the test process).
///
/// Needs `redis-server` (7.0 or later, for `--cluster-port`) and `redis-cli` on `PATH`;
/// [`TestCluster::start`] panics with a message saying so when they are missing. A test is
/// never skipped.
pub struct TestCluster {
    ports: Vec<u16>,
    /// Declared before `dir`, so the nodes are killed before their directory is removed.
    nodes: Vec<LocalRedis>,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("ports", &self.ports)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl TestCluster {
    /// Starts three nodes, joins them with `redis-cli --cluster create … --cluster-replicas 0`
    /// and waits until every node reports `cluster_state:ok`. Blocking: from async code, call
    /// it through `tokio::task::spawn_blocking`.
    pub fn start() -> TestCluster {
        match Self::try_start() {
            Ok(cluster) => cluster,
            Err(e) => panic!(
                "the Redis Cluster test needs a local cluster and could not start one: {e}.\n  \
                 Install redis-server (7.0 or later) and redis-cli so they are on PATH \
                 (Debian/Ubuntu: `apt-get install -y redis-server redis-tools`, macOS: \
                 `brew install redis`)."
            ),
        }
    }

    fn try_start() -> Result<TestCluster, String> {
        LocalRedis::find().ok_or("redis-server is not on PATH")?;
        let cli = find_program("redis-cli").ok_or("redis-cli is not on PATH")?;
        let dir = tempfile::Builder::new()
            .prefix("envshare-test-cluster-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        let mut cluster = TestCluster {
            ports: Vec::new(),
            nodes: Vec::new(),
            dir,
        };
        for i in 0..3 {
            let node = cluster.start_node(i)?;
            cluster.ports.push(node.port());
            cluster.nodes.push(node);
        }
        let mut create = Command::new(&cli);
        create.arg("--cluster").arg("create");
        for port in &cluster.ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", cli.display()))?;
        if !out.status.success() {
            return Err(format!(
                "`redis-cli --cluster create` failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let deadline = Instant::now() + CLUSTER_START_TIMEOUT;
        for &port in &cluster.ports {
            loop {
                let info = Command::new(&cli)
                    .args(["-p", &port.to_string(), "cluster", "info"])
                    .stdin(Stdio::null())
                    .output()
                    .map_err(|e| format!("cannot run {}: {e}", cli.display()))?;
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(format!(
                        "node 127.0.0.1:{port} did not reach cluster_state:ok within \
                         {CLUSTER_START_TIMEOUT:?}"
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(cluster)
    }

    /// Starts cluster-enabled node `i` in a directory of its own, on a free client port and a
    /// free bus port ([`LocalRedis`] retries client ports; a bus port taken in between is
    /// retried here).
    fn start_node(&self, i: usize) -> Result<LocalRedis, String> {
        let mut last = String::new();
        for _ in 0..BUS_PORT_TRIES {
            let bus = free_port();
            let options = LocalRedisOptions {
                appendfsync: None,
                extra_args: ["--cluster-enabled", "yes", "--cluster-port"]
                    .iter()
                    .map(|s| (*s).to_owned())
                    .chain([bus.to_string()])
                    .collect(),
                start_timeout: START_TIMEOUT,
                spawn: Some(spawn_tied_to_process),
                dir: Some(self.dir.path().join(format!("node-{i}"))),
            };
            match LocalRedis::start_with(options) {
                Ok(node) => return Ok(node),
                Err(e) => last = format!("cluster node {i}: {e}"),
            }
        }
        Err(last)
    }

    /// The client ports of the three nodes.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`: every node as a seed.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// `redis://127.0.0.1:P` for node `i` alone (a seed for `ENVSHARE_REDIS_CLUSTER=1`).
    pub fn node_url(&self, i: usize) -> String {
        self.nodes[i].url().to_owned()
    }
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
