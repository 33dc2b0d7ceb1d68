//! [`TestRedis`]: the Redis behind every test, an external server, a `redis-server` child
//! ([`LocalRedis`]) or a container.

use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use envshare::sandbox::{LocalRedis, LocalRedisOptions};
use testcontainers::core::IntoContainerPort;
use testcontainers::runners::SyncRunner;
use testcontainers::{Container, GenericImage, ImageExt};

use crate::fixtures::{free_port, lock};
use crate::process::spawn_tied_to_process;

/// Environment variable naming an existing Redis for the tests.
pub const TEST_REDIS_URL_VAR: &str = "ENVSHARE_TEST_REDIS_URL";
/// Environment variable forcing one way of starting Redis: `process` or `container`.
pub const TEST_REDIS_MODE_VAR: &str = "ENVSHARE_TEST_REDIS";

/// How long a freshly spawned server may take to answer `PING` (an AOF replay included).
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Image used when Redis comes from a container; the same major version as production.
const REDIS_IMAGE: (&str, &str) = ("redis", "7-alpine");

const HOW_TO_GET_REDIS: &str = "the tests need a real Redis and found none. Do one of:\n  \
     - install redis-server so it is on PATH (Debian/Ubuntu: `apt-get install -y redis-server`, \
     macOS: `brew install redis`);\n  \
     - point the tests at a running server: `export ENVSHARE_TEST_REDIS_URL=redis://127.0.0.1:6379` \
     (tests use their own queue names there and delete nothing else);\n  \
     - start Docker, so the tests can run a `redis:7-alpine` container through testcontainers.";

/// A Redis server for tests: an external one, a child `redis-server`, or a container.
///
/// See the [crate documentation](crate) for where it comes from and how long it lives.
pub struct TestRedis {
    url: String,
    port: u16,
    backend: Backend,
}

enum Backend {
    /// `ENVSHARE_TEST_REDIS_URL`: not ours to kill.
    External,
    /// A `redis-server` child process.
    Process(Mutex<LocalRedis>),
    /// A container with a fixed host port, so a restart keeps the URL. Boxed: the container
    /// handle is large and this variant is the rare one.
    Container(Box<Mutex<Option<Container<GenericImage>>>>),
}

impl std::fmt::Debug for TestRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.backend {
            Backend::External => "external",
            Backend::Process(_) => "redis-server",
            Backend::Container(_) => "container",
        };
        f.debug_struct("TestRedis")
            .field("kind", &kind)
            .field("port", &self.port)
            .finish()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Any,
    Process,
    Container,
}

impl TestRedis {
    /// The Redis shared by every test in this process, started on first use.
    ///
    /// Tests sharing it must keep to their own keys: take a queue name from
    /// [`unique_queue`](crate::unique_queue).
    pub fn shared() -> &'static TestRedis {
        SHARED.get_or_init(|| {
            let redis = match std::env::var(TEST_REDIS_URL_VAR) {
                Ok(url) if !url.trim().is_empty() => TestRedis::external(url.trim()),
                _ => TestRedis::start(mode_from_env(), "everysec"),
            };
            register_exit_hook();
            redis
        })
    }

    /// A Redis of this test's own (a `redis-server` from `PATH`, else a container), for tests
    /// that kill or restart it. AOF is on with `appendfsync always`, so every acknowledged write
    /// survives [`kill`](Self::kill). Killed and removed on `Drop`.
    ///
    /// `ENVSHARE_TEST_REDIS_URL` is ignored here: an external server cannot be killed.
    pub fn private() -> TestRedis {
        TestRedis::start(mode_from_env(), "always")
    }

    fn external(url: &str) -> TestRedis {
        let client = redis::Client::open(url).unwrap_or_else(|e| {
            panic!("{TEST_REDIS_URL_VAR}={url:?} is not a valid Redis URL: {e}")
        });
        let port = match client.get_connection_info().addr() {
            redis::ConnectionAddr::Tcp(_, port) => *port,
            redis::ConnectionAddr::TcpTls { port, .. } => *port,
            _ => 0,
        };
        TestRedis {
            url: url.to_owned(),
            port,
            backend: Backend::External,
        }
    }

    fn start(mode: Mode, appendfsync: &'static str) -> TestRedis {
        let mut problems = Vec::new();
        if mode != Mode::Container {
            if LocalRedis::find().is_some() {
                let options = LocalRedisOptions {
                    appendfsync: Some(appendfsync),
                    start_timeout: START_TIMEOUT,
                    spawn: Some(spawn_tied_to_process),
                    ..LocalRedisOptions::default()
                };
                match LocalRedis::start_with(options) {
                    Ok(server) => return TestRedis::from_process(server),
                    // A redis-server that is present but fails is a broken machine, not a reason
                    // to quietly try something else.
                    Err(e) => panic!("could not start redis-server for the tests: {e}"),
                }
            }
            problems.push("redis-server is not on PATH".to_owned());
        }
        if mode != Mode::Process {
            match off_runtime(|| start_container(appendfsync)) {
                Ok((container, port)) => {
                    return TestRedis {
                        url: format!("redis://127.0.0.1:{port}"),
                        port,
                        backend: Backend::Container(Box::new(Mutex::new(Some(container)))),
                    };
                }
                Err(e) => problems.push(format!("no Redis container: {e}")),
            }
        }
        panic!("{HOW_TO_GET_REDIS}\n(tried: {})", problems.join("; "));
    }

    fn from_process(server: LocalRedis) -> TestRedis {
        TestRedis {
            url: server.url().to_owned(),
            port: server.port(),
            backend: Backend::Process(Mutex::new(server)),
        }
    }

    /// The server's URL, e.g. `redis://127.0.0.1:41234`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's TCP port on 127.0.0.1 (for an external URL, the port in it).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A `redis::Client` for this server.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url.as_str()).expect("the harness builds valid Redis URLs")
    }

    /// A new multiplexed connection, driven by the current tokio runtime.
    ///
    /// Panics if the server does not answer: a test cannot go on without it.
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        self.client()
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("could not connect to the test Redis at {}: {e}", self.url))
    }

    /// A new `ConnectionManager` (reconnects by itself), driven by the current tokio runtime.
    pub async fn connection_manager(&self) -> redis::aio::ConnectionManager {
        self.client()
            .get_connection_manager()
            .await
            .unwrap_or_else(|e| panic!("could not connect to the test Redis at {}: {e}", self.url))
    }

    /// Every entry of the stream `key`, raw, as any consumer reads it: `(entry id, fields)`
    /// (for the events stream the fields are `type`, T, `event`, JSON).
    pub async fn stream_entries(&self, key: &str) -> Vec<(String, Vec<String>)> {
        redis::cmd("XRANGE")
            .arg(key)
            .arg("-")
            .arg("+")
            .query_async(&mut self.conn().await)
            .await
            .unwrap_or_else(|e| panic!("XRANGE {key}: {e}"))
    }

    /// Kills the server at once with SIGKILL, as a crash would. Data acknowledged before the
    /// kill is in the AOF and comes back with [`restart`](Self::restart).
    ///
    /// Panics on an external server.
    pub fn kill(&self) {
        match &self.backend {
            Backend::Process(server) => lock(server).kill(),
            Backend::Container(container) => {
                if let Some(c) = lock(container).as_ref() {
                    // A zero timeout makes Docker send SIGKILL straight away.
                    off_runtime(|| c.stop_with_timeout(Some(0)))
                        .unwrap_or_else(|e| panic!("could not kill the Redis container: {e}"));
                }
            }
            Backend::External => panic!("kill() needs TestRedis::private(), not an external Redis"),
        }
    }

    /// Stops the server gracefully (`SHUTDOWN NOSAVE`; the AOF is already on disk), and waits for
    /// it to exit. [`restart`](Self::restart) brings it back.
    ///
    /// Panics on an external server.
    pub fn stop(&self) {
        match &self.backend {
            Backend::Process(server) => lock(server).stop(),
            Backend::Container(container) => {
                if let Some(c) = lock(container).as_ref() {
                    off_runtime(|| c.stop())
                        .unwrap_or_else(|e| panic!("could not stop the Redis container: {e}"));
                }
            }
            Backend::External => panic!("stop() needs TestRedis::private(), not an external Redis"),
        }
    }

    /// Starts the server again on the same port with the same data directory (killing it first
    /// if it still runs), and waits until it answers `PING`, its AOF replayed.
    ///
    /// Panics on an external server.
    pub fn restart(&self) {
        match &self.backend {
            Backend::Process(server) => lock(server)
                .restart()
                .unwrap_or_else(|e| panic!("could not restart redis-server: {e}")),
            Backend::Container(container) => {
                let guard = lock(container);
                if let Some(c) = guard.as_ref() {
                    off_runtime(|| {
                        if c.is_running().unwrap_or(false) {
                            let _ = c.stop_with_timeout(Some(0));
                        }
                        c.start()
                    })
                    .unwrap_or_else(|e| panic!("could not restart the Redis container: {e}"));
                    wait_for_ping(self.port)
                        .unwrap_or_else(|e| panic!("restarted Redis container: {e}"));
                }
            }
            Backend::External => {
                panic!("restart() needs TestRedis::private(), not an external Redis")
            }
        }
    }

    /// Whether the server answers `PING` now (a short, blocking check).
    pub fn is_up(&self) -> bool {
        match self.backend {
            Backend::External => true,
            _ => LocalRedis::answers_ping(self.port, Duration::from_millis(500)),
        }
    }

    /// The server's data directory (a `redis-server` child only).
    pub fn data_dir(&self) -> Option<std::path::PathBuf> {
        match &self.backend {
            Backend::Process(server) => Some(lock(server).dir().to_owned()),
            _ => None,
        }
    }

    /// Kills the server and removes its files. Used by `Drop` and by the exit hook.
    fn shut_down(&self) {
        match &self.backend {
            Backend::External => {}
            Backend::Process(server) => {
                // try_lock: at process exit a lock still held would hang the exit; leaking the
                // server (PDEATHSIG still kills it on Linux) is the lesser harm.
                let mut server = match server.try_lock() {
                    Ok(guard) => guard,
                    Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                    Err(std::sync::TryLockError::WouldBlock) => return,
                };
                server.kill();
                // The directory is the one LocalRedis created for it (no `dir` option).
                let _ = std::fs::remove_dir_all(server.dir());
            }
            Backend::Container(container) => {
                let taken = match container.try_lock() {
                    Ok(mut c) => c.take(),
                    Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().take(),
                    Err(_) => None,
                };
                if let Some(c) = taken {
                    // Outside any runtime the CLI is the dependable way to remove it at exit.
                    let _ = Command::new("docker")
                        .args(["rm", "--force", "--volumes", c.id()])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                    std::mem::forget(c);
                }
            }
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if let Backend::Container(container) = &mut self.backend {
            // testcontainers' own Drop stops and removes it.
            let taken = match container.get_mut() {
                Ok(c) => c.take(),
                Err(p) => p.into_inner().take(),
            };
            off_runtime(move || drop(taken));
            return;
        }
        self.shut_down();
    }
}

/// Runs `f` on a thread of its own. testcontainers' blocking API calls `block_on`, which panics
/// inside a tokio runtime, and most callers here are `#[tokio::test]`s.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

fn mode_from_env() -> Mode {
    match std::env::var(TEST_REDIS_MODE_VAR).as_deref() {
        Ok("process") => Mode::Process,
        Ok("container") => Mode::Container,
        Ok("") | Err(_) => Mode::Any,
        Ok(other) => panic!("{TEST_REDIS_MODE_VAR}={other:?}: expected `process` or `container`"),
    }
}

#[allow(unsafe_code)]
fn register_exit_hook() {
    extern "C" fn kill_shared_redis() {
        // Runs after main returns; the test harness has finished every test by then.
        if let Some(redis) = SHARED.get() {
            redis.shut_down();
        }
    }
    // SAFETY: `atexit` only records a function pointer; the function is `extern "C"`, takes no
    // arguments and does not unwind (shut_down ignores every error).
    unsafe {
        libc::atexit(kill_shared_redis);
    }
}

/// The server behind [`TestRedis::shared`]; a `static`, so never dropped (see the exit hook).
static SHARED: OnceLock<TestRedis> = OnceLock::new();

fn start_container(appendfsync: &'static str) -> Result<(Container<GenericImage>, u16), String> {
    // A fixed host port (not Docker's random one) so a restarted container keeps its URL.
    let port = free_port();
    let container = GenericImage::new(REDIS_IMAGE.0, REDIS_IMAGE.1)
        .with_exposed_port(6379.tcp())
        .with_mapped_port(port, 6379.tcp())
        .with_cmd([
            "redis-server",
            "--appendonly",
            "yes",
            "--appendfsync",
            appendfsync,
            "--save",
            "",
            "--protected-mode",
            "no",
        ])
        .with_startup_timeout(Duration::from_secs(120))
        .start()
        .map_err(|e| e.to_string())?;
    wait_for_ping(port)?;
    Ok((container, port))
}

/// Polls `PING` on a container's port until `+PONG` (a `-LOADING` reply is not ready yet).
fn wait_for_ping(port: u16) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if LocalRedis::answers_ping(port, Duration::from_millis(300)) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("no answer to PING within {START_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
