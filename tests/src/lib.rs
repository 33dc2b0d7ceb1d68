//! envshare's test harness: a real Redis for every test, and small helpers.
//!
//! # Where Redis comes from
//!
//! [`TestRedis::shared`] picks the first of these that is available:
//!
//! 1. `ENVSHARE_TEST_REDIS_URL`, if set: an existing server (each test still uses its own queue
//!    name from [`unique_queue`], so tests sharing it do not collide);
//! 2. a private `redis-server` from `PATH`, spawned on a free port in a temporary directory with
//!    AOF on;
//! 3. a Redis container through testcontainers (needs a running Docker daemon);
//! 4. otherwise it panics with a message saying how to get Redis. A test is never skipped.
//!
//! `ENVSHARE_TEST_REDIS=process` or `=container` forces step 2 or 3 (to test the harness itself).
//!
//! [`TestRedis::private`] always starts a server of its own (step 2, else 3) so a fault test can
//! [`kill`](TestRedis::kill), [`restart`](TestRedis::restart) or [`stop`](TestRedis::stop) it.
//!
//! # Lifetimes
//!
//! Each `#[tokio::test]` has its own runtime, but the shared server lives for the whole test
//! process, so nothing here depends on a tokio runtime: servers are spawned with
//! `std::process` (or testcontainers' blocking runner, which owns its runtime). A private server
//! is killed and its directory removed on `Drop`. The shared server is a `static`, which Rust
//! never drops, so an `atexit` hook kills it when the test binary exits; on Linux every
//! `redis-server` is also started with `PR_SET_PDEATHSIG`, so it dies with the test process even
//! when that process is killed. No `redis-server` outlives the tests.
//!
//! # End-to-end stack
//!
//! [`TestStack::start`] adds the sandbox, a queue of the test's own and in-process workers on
//! top of the shared Redis; [`bin_path`] and [`ChildProcess`] run the real binaries.

#![deny(missing_docs)]

mod stack;

pub use stack::{RunningWorker, TestStack, is_share};

use std::future::Future;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, mpsc};
use std::time::{Duration, Instant};

use envshare::QueueName;
use testcontainers::core::IntoContainerPort;
use testcontainers::runners::SyncRunner;
use testcontainers::{Container, GenericImage, ImageExt};

/// Environment variable naming an existing Redis for the tests.
pub const TEST_REDIS_URL_VAR: &str = "ENVSHARE_TEST_REDIS_URL";
/// Environment variable forcing one way of starting Redis: `process` or `container`.
pub const TEST_REDIS_MODE_VAR: &str = "ENVSHARE_TEST_REDIS";

/// How long a freshly spawned server may take to answer `PING` (an AOF replay included).
const START_TIMEOUT: Duration = Duration::from_secs(20);
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
    Process(Mutex<ServerProcess>),
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
    /// Tests sharing it must keep to their own keys: take a queue name from [`unique_queue`].
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
            match find_redis_server() {
                Some(binary) => match ServerProcess::start(binary, appendfsync) {
                    Ok(server) => return TestRedis::from_process(server),
                    // A redis-server that is present but fails is a broken machine, not a reason
                    // to quietly try something else.
                    Err(e) => panic!("could not start redis-server for the tests: {e}"),
                },
                None => problems.push("redis-server is not on PATH".to_owned()),
            }
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

    fn from_process(server: ServerProcess) -> TestRedis {
        TestRedis {
            url: format!("redis://127.0.0.1:{}", server.port),
            port: server.port,
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
            Backend::Process(server) => {
                let mut server = lock(server);
                server.kill();
                server
                    .spawn_and_wait()
                    .unwrap_or_else(|e| panic!("could not restart redis-server: {e}"));
            }
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
                    wait_for_ping(self.port, START_TIMEOUT, || Ok(()))
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
            _ => ping(self.port, Duration::from_millis(500)) == PingReply::Pong,
        }
    }

    /// The server's data directory (a `redis-server` child only).
    pub fn data_dir(&self) -> Option<PathBuf> {
        match &self.backend {
            Backend::Process(server) => Some(lock(server).dir.path().to_owned()),
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
                let _ = std::fs::remove_dir_all(server.dir.path());
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock leaves the server usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn mode_from_env() -> Mode {
    match std::env::var(TEST_REDIS_MODE_VAR).as_deref() {
        Ok("process") => Mode::Process,
        Ok("container") => Mode::Container,
        Ok("") | Err(_) => Mode::Any,
        Ok(other) => panic!("{TEST_REDIS_MODE_VAR}={other:?}: expected `process` or `container`"),
    }
}

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

/// A child `redis-server`: its directory, port and process.
struct ServerProcess {
    binary: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    appendfsync: &'static str,
    child: Option<Child>,
}

impl ServerProcess {
    fn start(binary: PathBuf, appendfsync: &'static str) -> Result<ServerProcess, String> {
        let dir = tempfile::Builder::new()
            .prefix("envshare-test-redis-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        let mut server = ServerProcess {
            binary,
            dir,
            port: 0,
            appendfsync,
            child: None,
        };
        // free_port() releases the port before redis-server binds it, so another process can
        // take it in between: try a few ports before giving up.
        let mut last = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.spawn_and_wait() {
                Ok(()) => return Ok(server),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let dir = self
            .dir
            .path()
            .to_str()
            .ok_or("temporary directory is not UTF-8")?;
        let log = self.log_path();
        let mut cmd = Command::new(&self.binary);
        cmd.args(["--port", &port, "--bind", "127.0.0.1", "--dir", dir])
            .args(["--appendonly", "yes", "--appendfsync", self.appendfsync])
            .args(["--save", "", "--daemonize", "no"])
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = spawn_tied_to_process(cmd)
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        let child = self.child.as_mut().expect("just set");
        let result = wait_for_ping(self.port, START_TIMEOUT, || match child.try_wait() {
            Ok(Some(status)) => Err(format!("redis-server exited with {status}")),
            _ => Ok(()),
        });
        // Another process may have taken the port between free_port() and the bind: then the
        // PONG came from that server, not ours. Only our own process id will do.
        let pid = child.id();
        let result = result.and_then(|()| match server_pid(self.port) {
            Some(p) if p == pid => Ok(()),
            other => Err(format!(
                "the server answering on the port is not ours (process id {other:?}, ours {pid})"
            )),
        });
        if let Err(e) = result {
            self.kill();
            return Err(format!(
                "redis-server on port {}: {e}; its log:\n{}",
                self.port,
                tail(&log, 20)
            ));
        }
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        if let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) {
            let _ = s.write_all(b"SHUTDOWN NOSAVE\r\n");
        }
        let child = self.child.as_mut().expect("checked above");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }
}

/// Spawns `cmd` so that, on Linux, the child gets SIGKILL when the test process dies.
///
/// `PR_SET_PDEATHSIG` fires when the spawning *thread* exits, not the process, and libtest runs
/// each test on a thread of its own. So every child is spawned from one thread that lives as long
/// as the process.
fn spawn_tied_to_process(cmd: Command) -> std::io::Result<Child> {
    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("test-redis-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    set_parent_death_signal(&mut cmd);
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("cannot start the redis-server spawner thread");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    lock(spawner)
        .send((cmd, reply_tx))
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?
}

#[cfg(target_os = "linux")]
fn set_parent_death_signal(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only calls prctl, which is
    // async-signal-safe, and reads errno.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn set_parent_death_signal(_cmd: &mut Command) {
    // Elsewhere only Drop and the exit hook clean up; a test process killed with SIGKILL can
    // leave its shared redis-server behind.
}

fn find_redis_server() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

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
    wait_for_ping(port, START_TIMEOUT, || Ok(()))?;
    Ok((container, port))
}

#[derive(PartialEq, Eq)]
enum PingReply {
    Pong,
    /// Up but not ready, e.g. `-LOADING` while replaying the AOF.
    NotReady,
    Down,
}

fn ping(port: u16, timeout: Duration) -> PingReply {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, timeout) else {
        return PingReply::Down;
    };
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    if s.write_all(b"PING\r\n").is_err() {
        return PingReply::Down;
    }
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) if buf[..n].starts_with(b"+PONG") => PingReply::Pong,
        Ok(n) if n > 0 => PingReply::NotReady,
        _ => PingReply::Down,
    }
}

/// The `process_id` that the server on `port` reports in `INFO server`.
fn server_pid(port: u16) -> Option<u32> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let timeout = Duration::from_millis(500);
    let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.write_all(b"INFO server\r\n").ok()?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&reply);
        if let Some(line) = text
            .lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .filter(|_| text.contains("\r\nprocess_id:") && text.contains("\r\nrun_id:"))
        {
            return line.trim().parse().ok();
        }
    }
    None
}

/// Polls `PING` until `+PONG`; `alive` reports a server that has already died.
fn wait_for_ping(
    port: u16,
    timeout: Duration,
    mut alive: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if ping(port, Duration::from_millis(300)) == PingReply::Pong {
            return Ok(());
        }
        alive()?;
        if Instant::now() >= deadline {
            return Err(format!("no answer to PING within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it; it is released on
/// return, so bind it soon).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind 127.0.0.1:0 to find a free port")
}

/// A queue name no other test in any process uses: `prefix` (cut to 40 characters), a counter
/// and random hex, e.g. `retry-3-9f2c41d07a`.
///
/// Panics if `prefix` has characters a [`QueueName`] does not allow.
pub fn unique_queue(prefix: &str) -> QueueName {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let prefix: String = prefix.chars().take(40).collect();
    let name = format!(
        "{prefix}-{n}-{:010x}",
        rand::random::<u64>() & 0xff_ffff_ffff
    );
    QueueName::parse(&name).unwrap_or_else(|e| panic!("unique_queue({prefix:?}): {e}"))
}

/// Polls `cond` every 20 ms until it returns true (then `true`) or `timeout` passes (then
/// `false`; `cond` is checked one last time at the deadline).
///
/// Use as `assert!(wait_until(Duration::from_secs(5), || async { … }).await, "what was awaited")`.
#[must_use = "assert on the result: false means the condition never held"]
pub async fn wait_until<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The path of the workspace binary `name` (`envshare-worker`, `envshare`), freshly built.
///
/// The binary lives next to this test executable's directory (`target/<profile>/NAME`, the test
/// being `target/<profile>/deps/e2e-…`). `cargo test -p envshare-tests` does not build other
/// packages' binaries, so when the tests run under cargo (`CARGO` is set) the first call per
/// name runs `cargo build --bin NAME`, which is a quick no-op when it is up to date; otherwise
/// the binary must already be there. Panics, saying how to build it, when it is missing.
pub fn bin_path(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable is in target/<profile>/deps/");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let mut built = lock(&BUILT);
    if !built.iter().any(|b| b == name) {
        if let Ok(cargo) = std::env::var("CARGO") {
            let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
            let status = Command::new(cargo)
                .args(["build", "-q", "--bin", name, "--manifest-path", manifest])
                .status()
                .unwrap_or_else(|e| panic!("running cargo build --bin {name}: {e}"));
            assert!(status.success(), "cargo build --bin {name} failed");
        }
        built.push(name.to_owned());
    }
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build --bin {name}`",
        path.display()
    );
    path
}

/// A child process of the tests (a real `envshare-worker` or `envshare`), with its stdout and
/// stderr collected from the start (a full pipe would block the child's logging, and with it
/// the whole process).
///
/// It is spawned with an empty environment plus `PATH` and the variables given, so nothing from
/// the caller's environment redirects it; on Linux it gets SIGKILL if the test process dies.
/// Dropping it kills it.
pub struct ChildProcess {
    name: String,
    child: Child,
    status: Option<std::process::ExitStatus>,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl std::fmt::Debug for ChildProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildProcess")
            .field("name", &self.name)
            .field("pid", &self.child.id())
            .field("status", &self.status)
            .finish()
    }
}

impl ChildProcess {
    /// Starts `bin` with `args` and the environment variables `env` (and `PATH`). Panics if it
    /// cannot be started.
    pub fn spawn(bin: &Path, args: &[&str], env: &[(&str, String)]) -> ChildProcess {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = spawn_tied_to_process(cmd)
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let collect = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                String::from_utf8_lossy(&bytes).into_owned()
            })
        };
        let stdout = collect(Box::new(child.stdout.take().expect("stdout is piped")));
        let stderr = collect(Box::new(child.stderr.take().expect("stderr is piped")));
        ChildProcess {
            name: bin
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            child,
            status: None,
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running (not yet exited).
    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    fn try_status(&mut self) -> Option<std::process::ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("waiting for a child process");
        }
        self.status
    }

    /// Kills it at once with SIGKILL, as a crash would, and waits until it is gone.
    pub fn kill9(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            self.status = Some(
                self.child
                    .wait()
                    .expect("waiting for a killed child process"),
            );
        }
    }

    /// Sends SIGTERM (a graceful stop request); does not wait.
    pub fn sigterm(&self) {
        // SAFETY: kill(2) with a valid signal on the pid of our own child, which we have not
        // reaped yet (so the pid cannot belong to another process).
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "SIGTERM to {} failed", self.name);
    }

    /// Waits up to `timeout` for it to exit; `None` if it still runs then (it is left running).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Everything it wrote to stdout and stderr. Waits for it to exit (kill it first to stop it).
    pub fn output(&mut self) -> (String, String) {
        if self.status.is_none() {
            self.status = Some(self.child.wait().expect("waiting for a child process"));
        }
        let join = |h: Option<std::thread::JoinHandle<String>>| {
            h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
        };
        (join(self.stdout.take()), join(self.stderr.take()))
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How long `redis-cli --cluster create` and the cluster's own agreement on `cluster_state:ok`
/// may take.
const CLUSTER_START_TIMEOUT: Duration = Duration::from_secs(20);

/// A private Redis Cluster of three masters (no replicas) on free ports, in a temporary
/// directory, without persistence. Every node is killed and the directory removed on `Drop`
/// (and on Linux the nodes also die with the test process).
///
/// Needs `redis-server` (7.0 or later, for `--cluster-port`) and `redis-cli` on `PATH`;
/// [`TestCluster::start`] panics with a message saying so when they are missing. A test is
/// never skipped.
pub struct TestCluster {
    ports: Vec<u16>,
    children: Vec<Child>,
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
        let server = find_redis_server().ok_or("redis-server is not on PATH")?;
        let cli = find_program("redis-cli").ok_or("redis-cli is not on PATH")?;
        let dir = tempfile::Builder::new()
            .prefix("envshare-test-cluster-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        let mut cluster = TestCluster {
            ports: Vec::new(),
            children: Vec::new(),
            dir,
        };
        for _ in 0..3 {
            cluster.spawn_node(&server)?;
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

    /// Starts one cluster-enabled node on a free port (client and bus port both picked free,
    /// retried a few times in case another process takes a port in between).
    fn spawn_node(&mut self, server: &Path) -> Result<(), String> {
        let dir = self
            .dir
            .path()
            .to_str()
            .ok_or("temporary directory is not UTF-8")?
            .to_owned();
        let mut last = String::new();
        for _ in 0..5 {
            let (port, bus) = (free_port(), free_port());
            if port == bus {
                continue;
            }
            let log = self.dir.path().join(format!("node-{port}.log"));
            let mut cmd = Command::new(server);
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus.to_string(),
                ])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--dir", &dir, "--save", "", "--appendonly", "no"])
                .args(["--daemonize", "no", "--logfile"])
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut child = spawn_tied_to_process(cmd)
                .map_err(|e| format!("cannot run {}: {e}", server.display()))?;
            let ready = wait_for_ping(port, START_TIMEOUT, || match child.try_wait() {
                Ok(Some(status)) => Err(format!("redis-server exited with {status}")),
                _ => Ok(()),
            });
            match ready {
                Ok(()) => {
                    self.ports.push(port);
                    self.children.push(child);
                    return Ok(());
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = format!(
                        "cluster node on port {port}: {e}; its log:\n{}",
                        tail(&log, 20)
                    );
                }
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
        format!("redis://127.0.0.1:{}", self.ports[i])
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}
