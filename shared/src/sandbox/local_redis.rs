//! A private, throwaway `redis-server` for the demo (feature `sandbox`).
//!
//! [`LocalRedis::start`] runs `redis-server` from `PATH` on a free port of 127.0.0.1, in a
//! temporary directory of its own, without persistence (`--save '' --appendonly no`), and waits
//! until it answers `PING`. Dropping the [`LocalRedis`] kills the server and removes the
//! directory, so nothing outlives the demo.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a new server may take to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Ports tried before giving up: a free port is released before `redis-server` binds it, so
/// another process may take it in between.
const PORT_TRIES: usize = 5;

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
    /// `redis-server` could not be run, exited or did not answer in time.
    #[error("starting a private Redis failed: {binary}: {detail}")]
    Start {
        /// The executable.
        binary: PathBuf,
        /// What went wrong, with the end of the server's log.
        detail: String,
    },
}

/// A running private `redis-server`; killed, and its directory removed, on drop.
#[derive(Debug)]
pub struct LocalRedis {
    child: Child,
    dir: PathBuf,
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

    /// Starts `redis-server` from `PATH` and waits (blocking, up to 10 s) until it answers
    /// `PING`. From async code, call it on a blocking thread (`spawn_blocking`).
    pub fn start() -> Result<Self, LocalRedisError> {
        let binary = Self::find().ok_or(LocalRedisError::NotInstalled)?;
        let dir = temp_dir().map_err(LocalRedisError::TempDir)?;
        let mut last = None;
        for _ in 0..PORT_TRIES {
            let port = match free_port() {
                Ok(p) => p,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(LocalRedisError::NoPort(e));
                }
            };
            match spawn(&binary, &dir, port) {
                Ok(child) => {
                    return Ok(Self {
                        child,
                        dir,
                        port,
                        url: format!("redis://127.0.0.1:{port}"),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        Err(last.unwrap_or_else(|| LocalRedisError::Start {
            binary,
            detail: "no attempt made".into(),
        }))
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        // Nothing is persisted, so there is nothing to flush: SIGKILL is the quickest stop.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spawn(binary: &Path, dir: &Path, port: u16) -> Result<Child, LocalRedisError> {
    let failed = |detail: String| LocalRedisError::Start {
        binary: binary.to_owned(),
        detail,
    };
    let log = dir.join("redis.log");
    let mut child = Command::new(binary)
        .arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1", "--daemonize", "no"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| failed(format!("cannot run it: {e}")))?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(failed(format!(
                "it exited with {status} on port {port}; its log:\n{}",
                tail(&log)
            )));
        }
        if pong(port) {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed(format!(
                "no PING answer on port {port} within {} s; its log:\n{}",
                START_TIMEOUT.as_secs(),
                tail(&log)
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a Redis on `port` answers `PING` with `+PONG`.
fn pong(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
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

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
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

    #[test]
    fn a_private_redis_answers_and_is_gone_after_drop() {
        // Like the rest of the tests, this needs redis-server on PATH and says so if it is not.
        let redis = LocalRedis::start().unwrap_or_else(|e| {
            panic!("{e} (install it: apt-get install redis-server / brew install redis)")
        });
        let port = redis.port();
        assert!(pong(port), "it answers PING");
        let dir = redis.dir.clone();
        assert!(dir.is_dir());
        drop(redis);
        assert!(!pong(port), "it is stopped");
        assert!(!dir.exists(), "its directory is removed");
    }
}
