//! A private, throwaway `redis-server` (feature `sandbox`): for the demo, and for tests that
//! kill, stop and restart their Redis.
//!
//! [`LocalRedis::start`] runs `redis-server` from `PATH` on a free port of 127.0.0.1, in a
//! temporary directory of its own, without persistence (`--save '' --appendonly no`), and waits
//! (up to 10 s) until it answers `PING`. [`LocalRedis::start_with`] takes [`LocalRedisOptions`]:
//! AOF persistence, extra arguments, another start timeout, a data directory chosen by the
//! caller, and the function that spawns the process.
//!
//! A free port is released before `redis-server` binds it, so another process may take it in
//! between; a server is only taken for ours when the `process_id` it reports in `INFO server`
//! is our child's. Otherwise the next port is tried.
//!
//! Dropping the [`LocalRedis`] kills the server (SIGKILL) and removes the temporary directory it
//! created (a directory given in [`LocalRedisOptions::dir`] is left in place), so nothing
//! outlives the demo.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a new server may take to answer `PING`, by default.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`LocalRedis::stop`] waits for the server to exit before it kills it.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Ports tried before giving up: a free port is released before `redis-server` binds it, so
/// another process may take it in between.
const PORT_TRIES: usize = 5;

/// Lines of the server's log quoted in an error.
const LOG_TAIL: usize = 20;

/// Spawns a prepared `redis-server` command; see [`LocalRedisOptions::spawn`].
pub type SpawnFn = fn(Command) -> std::io::Result<Child>;

/// How [`LocalRedis::start_with`] runs the server. The [`Default`] is what
/// [`LocalRedis::start`] uses: no persistence, no extra arguments, 10 s to answer `PING`, a
/// temporary directory, spawned with [`Command::spawn`].
#[derive(Debug, Clone)]
pub struct LocalRedisOptions {
    /// `None`: no persistence (`--appendonly no`). `Some(policy)`: AOF on with
    /// `--appendfsync policy` (`always`, `everysec` or `no`), so data written before
    /// [`LocalRedis::kill`] comes back with [`LocalRedis::restart`]. RDB snapshots are off
    /// either way (`--save ''`).
    pub appendfsync: Option<&'static str>,
    /// More `redis-server` arguments, appended after the ones `LocalRedis` sets (port, bind,
    /// directory, log file, persistence), e.g. `--cluster-enabled yes`.
    pub extra_args: Vec<String>,
    /// How long the server may take to answer `PING` after a start or a restart (an AOF replay
    /// included: a `-LOADING` reply counts as not ready yet).
    pub start_timeout: Duration,
    /// Spawns the prepared command (stdio already set to null). `None`: [`Command::spawn`].
    /// Tests pass a spawner that ties the server's life to the test process.
    pub spawn: Option<SpawnFn>,
    /// The data directory (created if missing, left in place on drop). `None`: a new temporary
    /// directory, removed on drop. The log is `redis.log` in it.
    pub dir: Option<PathBuf>,
}

impl Default for LocalRedisOptions {
    fn default() -> Self {
        Self {
            appendfsync: None,
            extra_args: Vec::new(),
            start_timeout: START_TIMEOUT,
            spawn: None,
            dir: None,
        }
    }
}

/// Why a private `redis-server` could not be started. None is retryable as is: each needs
/// Redis installed or the machine fixed.
#[derive(Debug, thiserror::Error)]
pub enum LocalRedisError {
    /// No `redis-server` executable on `PATH`.
    #[error("starting a private Redis failed: redis-server is not on PATH")]
    NotInstalled,
    /// The temporary directory could not be created.
    #[error("starting a private Redis failed: cannot create a temporary directory")]
    TempDir(#[source] std::io::Error),
    /// No free port could be found.
    #[error("starting a private Redis failed: cannot find a free port on 127.0.0.1")]
    NoPort(#[source] std::io::Error),
    /// `redis-server` could not be run, exited, did not answer in time, or another process
    /// answered on its port.
    #[error("starting a private Redis failed: {binary}: {detail}")]
    Start {
        /// The executable.
        binary: PathBuf,
        /// What went wrong, with the end of the server's log.
        detail: String,
    },
}

/// A private `redis-server`; killed, and its temporary directory removed, on drop.
#[derive(Debug)]
pub struct LocalRedis {
    binary: PathBuf,
    options: LocalRedisOptions,
    /// `None` after [`kill`](Self::kill) or [`stop`](Self::stop).
    child: Option<Child>,
    dir: PathBuf,
    /// Whether `dir` was created here (then it is removed on drop).
    owns_dir: bool,
    port: u16,
    url: String,
}

impl LocalRedis {
    /// The `redis-server` executable on `PATH`, if any.
    pub fn find() -> Option<PathBuf> {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join("redis-server"))
            .find(|p| is_executable(p))
    }

    /// Starts `redis-server` from `PATH` without persistence and waits (blocking, up to 10 s)
    /// until it answers `PING`. From async code, call it on a blocking thread
    /// (`spawn_blocking`).
    pub fn start() -> Result<Self, LocalRedisError> {
        Self::start_with(LocalRedisOptions::default())
    }

    /// Starts `redis-server` from `PATH` as `options` say and waits (blocking, up to
    /// [`LocalRedisOptions::start_timeout`]) until it answers `PING`.
    pub fn start_with(options: LocalRedisOptions) -> Result<Self, LocalRedisError> {
        let binary = Self::find().ok_or(LocalRedisError::NotInstalled)?;
        let (dir, owns_dir) = match &options.dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(LocalRedisError::TempDir)?;
                (dir.clone(), false)
            }
            None => (temp_dir().map_err(LocalRedisError::TempDir)?, true),
        };
        let mut redis = Self {
            binary,
            options,
            child: None,
            dir,
            owns_dir,
            port: 0,
            url: String::new(),
        };
        let mut last = None;
        for _ in 0..PORT_TRIES {
            redis.port = match free_port() {
                Ok(p) => p,
                // Drop removes the directory.
                Err(e) => return Err(LocalRedisError::NoPort(e)),
            };
            redis.url = format!("redis://127.0.0.1:{}", redis.port);
            match redis.spawn_and_wait() {
                Ok(()) => return Ok(redis),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| redis.failed("no attempt made".into())))
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The port it listens on (kept across [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its data directory, which holds the AOF and `redis.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's process id; `None` once it was killed or stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it answers `PING` now (a short, blocking check).
    pub fn is_up(&self) -> bool {
        Self::answers_ping(self.port, Duration::from_millis(500))
    }

    /// Whether a Redis on 127.0.0.1:`port` answers `PING` with `+PONG` within `timeout` (a
    /// server still loading its data answers `-LOADING`: not yet).
    pub fn answers_ping(port: u16, timeout: Duration) -> bool {
        ping(port, timeout) == PingReply::Pong
    }

    /// Kills the server at once with SIGKILL, as a crash would, and waits until it is gone. The
    /// data directory stays: with AOF on, what was written comes back with
    /// [`restart`](Self::restart).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server gracefully (`SHUTDOWN NOSAVE`: the AOF, if on, is already written) and
    /// waits for it to exit; kills it if it still runs after 10 s.
    pub fn stop(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        if let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) {
            let _ = s.write_all(b"SHUTDOWN NOSAVE\r\n");
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    /// Starts the server again on the same port with the same directory (killing it first if
    /// it still runs), and waits until it answers `PING`, its AOF replayed.
    ///
    /// Fails if it does not come up in time, or if another process took the port meanwhile.
    pub fn restart(&mut self) -> Result<(), LocalRedisError> {
        self.kill();
        self.spawn_and_wait()
    }

    fn failed(&self, detail: String) -> LocalRedisError {
        LocalRedisError::Start {
            binary: self.binary.clone(),
            detail,
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    /// Runs the server on `self.port` and waits until it answers `PING` and reports our own
    /// process id. On failure it is killed and the error quotes its log.
    fn spawn_and_wait(&mut self) -> Result<(), LocalRedisError> {
        let port = self.port;
        let log = self.log_path();
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--daemonize", "no", "--save", ""])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log);
        match self.options.appendfsync {
            None => cmd.args(["--appendonly", "no"]),
            Some(policy) => cmd.args(["--appendonly", "yes", "--appendfsync", policy]),
        };
        cmd.args(&self.options.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let spawned = match self.options.spawn {
            Some(spawn) => spawn(cmd),
            None => cmd.spawn(),
        };
        let child = spawned.map_err(|e| self.failed(format!("cannot run it: {e}")))?;
        let pid = child.id();
        let child = self.child.insert(child);
        let timeout = self.options.start_timeout;
        let deadline = Instant::now() + timeout;
        let result = loop {
            if ping(port, Duration::from_millis(300)) == PingReply::Pong {
                // Another process may have taken the port between free_port() and the bind:
                // then the PONG came from that server, not ours. Only our own process id will do.
                break match server_pid(port) {
                    Some(p) if p == pid => Ok(()),
                    other => Err(format!(
                        "the server answering on port {port} is not ours (process id \
                         {other:?}, ours {pid})"
                    )),
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                break Err(format!("it exited with {status} on port {port}"));
            }
            if Instant::now() >= deadline {
                break Err(format!("no PING answer on port {port} within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        result.map_err(|e| {
            self.kill();
            self.failed(format!("{e}; its log:\n{}", tail(&log, LOG_TAIL)))
        })
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        // SIGKILL is the quickest stop; whatever AOF there is lives in the directory, which is
        // removed too when it is ours.
        self.kill();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
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

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// A new directory under the system's temporary directory, private to this process.
fn temp_dir() -> std::io::Result<PathBuf> {
    let base = std::env::temp_dir();
    let mut last = None;
    for _ in 0..8 {
        let dir = base.join(format!(
            "envshare-redis-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no directory name left")))
}

fn tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Like the rest of the tests, these need redis-server on PATH and say so if it is not.
    fn started(options: LocalRedisOptions) -> LocalRedis {
        LocalRedis::start_with(options).unwrap_or_else(|e| {
            panic!("{e} (install it: apt-get install redis-server / brew install redis)")
        })
    }

    /// Sends one inline command and returns the reply (one read: short replies only).
    fn command(port: u16, line: &str) -> String {
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).expect("a reply");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn a_private_redis_answers_and_is_gone_after_drop() {
        let redis = LocalRedis::start().unwrap_or_else(|e| {
            panic!("{e} (install it: apt-get install redis-server / brew install redis)")
        });
        let port = redis.port();
        assert!(pong(port), "it answers PING");
        assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}"));
        assert_eq!(
            server_pid(port),
            redis.pid(),
            "the server answering is ours"
        );
        assert!(
            command(port, "CONFIG GET appendonly").ends_with("\r\nno\r\n"),
            "no persistence"
        );
        let dir = redis.dir().to_owned();
        assert!(dir.is_dir());
        drop(redis);
        assert!(!pong(port), "it is stopped");
        assert!(!dir.exists(), "its directory is removed");
    }

    fn pong(port: u16) -> bool {
        LocalRedis::answers_ping(port, Duration::from_millis(500))
    }

    #[test]
    fn with_aof_a_killed_server_restarts_on_its_port_with_its_data() {
        let mut redis = started(LocalRedisOptions {
            appendfsync: Some("always"),
            start_timeout: Duration::from_secs(20),
            ..LocalRedisOptions::default()
        });
        let (port, first_pid) = (redis.port(), redis.pid());
        assert_eq!(command(port, "SET k v"), "+OK\r\n");
        redis.kill();
        assert_eq!(redis.pid(), None);
        assert!(!redis.is_up(), "killed");
        assert!(
            redis.dir().join("redis.log").exists(),
            "the directory stays"
        );
        redis.restart().expect("it restarts");
        assert_eq!(redis.port(), port, "same port");
        assert_ne!(redis.pid(), first_pid, "a new process");
        assert_eq!(server_pid(port), redis.pid());
        assert_eq!(
            command(port, "GET k"),
            "$1\r\nv\r\n",
            "the write survived the kill"
        );

        redis.stop();
        assert_eq!(redis.pid(), None);
        assert!(!redis.is_up(), "stopped");
        redis.restart().expect("it restarts after a stop");
        assert_eq!(command(port, "GET k"), "$1\r\nv\r\n", "and after a stop");
    }

    #[test]
    fn a_given_directory_and_extra_arguments_are_used_and_the_directory_kept() {
        let base = temp_dir().expect("a temporary directory");
        let dir = base.join("node");
        let redis = started(LocalRedisOptions {
            extra_args: vec!["--databases".into(), "3".into()],
            dir: Some(dir.clone()),
            ..LocalRedisOptions::default()
        });
        assert_eq!(redis.dir(), dir);
        assert_eq!(command(redis.port(), "SELECT 2"), "+OK\r\n");
        assert!(command(redis.port(), "SELECT 3").starts_with("-ERR"));
        drop(redis);
        assert!(
            dir.join("redis.log").exists(),
            "a given directory is left in place"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_server_still_loading_its_data_is_not_ready() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf);
            s.write_all(b"-LOADING Redis is loading the dataset in memory\r\n")
                .unwrap();
        });
        assert_eq!(ping(port, Duration::from_secs(2)), PingReply::NotReady);
        server.join().unwrap();
        assert_eq!(ping(port, Duration::from_millis(200)), PingReply::Down);
    }

    #[test]
    fn a_restart_onto_a_port_another_server_took_fails() {
        let mut ours = started(LocalRedisOptions::default());
        ours.kill();
        let mut thief = Command::new(LocalRedis::find().expect("redis-server"))
            .arg("--port")
            .arg(ours.port().to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("a second redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pong(ours.port()) {
            assert!(Instant::now() < deadline, "the other server answers");
            std::thread::sleep(Duration::from_millis(10));
        }
        let result = ours.restart();
        let _ = thief.kill();
        let _ = thief.wait();
        assert!(
            matches!(result, Err(LocalRedisError::Start { .. })),
            "another process's server is not taken for ours: {result:?}"
        );
        assert_eq!(ours.pid(), None, "our failed server is not left running");
    }
}
