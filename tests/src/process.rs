//! Child processes of the tests: the workspace's binaries ([`bin_path`], [`ChildProcess`]) and
//! the spawner that ties every child's life to the test process.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use crate::fixtures::lock;

/// Spawns `cmd` so that, on Linux, the child gets SIGKILL when the test process dies.
///
/// `PR_SET_PDEATHSIG` fires when the spawning *thread* exits, not the process, and libtest runs
/// each test on a thread of its own. So every child is spawned from one thread that lives as long
/// as the process.
pub(crate) fn spawn_tied_to_process(cmd: Command) -> std::io::Result<Child> {
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
#[allow(unsafe_code)]
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

/// Runs `envshare ARGS` on queue `queue` of the shared test Redis, with `env` on top (the
/// sandbox's URL, a token, …), to the end, on a blocking thread so that servers running in the
/// test (the sandbox) keep answering. `REDIS_URL` and `ENVSHARE_CHUNK_SIZE` from the test's own
/// environment are removed, stdin is empty, and the CLI logs at `warn`.
pub async fn run_envshare(
    queue: &str,
    args: &[&str],
    env: &[(&str, String)],
) -> std::process::Output {
    let mut cmd = Command::new(bin_path("envshare"));
    cmd.args(args)
        .env_remove("REDIS_URL")
        .env_remove("ENVSHARE_CHUNK_SIZE")
        .env("ENVSHARE_REDIS_URL", crate::TestRedis::shared().url())
        .env("ENVSHARE_QUEUE", queue)
        .env("ENVSHARE_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null());
    tokio::task::spawn_blocking(move || cmd.output().expect("envshare runs"))
        .await
        .expect("the envshare runner thread")
}

/// The path of the workspace binary `name` (`envshare-worker`, `envshare`), freshly built in
/// the profile the tests run in.
///
/// The binary lives next to this test executable's directory (`target/<profile>/NAME`, the test
/// being `target/<profile>/deps/e2e-…`). `cargo test -p envshare-tests` does not build other
/// packages' binaries, so when the tests run under cargo (`CARGO` is set) the first call per
/// name runs `cargo build --profile <profile> --bin NAME` (the `debug` directory is the `dev`
/// profile; `CARGO_TARGET_DIR` is passed on), which is a quick no-op when it is up to date;
/// otherwise the binary must already be there. Panics, saying how to build it, when it is
/// missing.
pub fn bin_path(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable is in target/<profile>/deps/");
    let profile = profile_of(dir);
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let mut built = lock(&BUILT);
    if !built.iter().any(|b| b == name) {
        if let Ok(cargo) = std::env::var("CARGO") {
            let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
            // Without the variables cargo set for this test (CARGO_MANIFEST_DIR, CARGO_PKG_*,
            // …): ring's build script reruns when they change, which would rebuild ring and
            // everything above it here, and again at the next `cargo test`.
            let mut build = Command::new(cargo);
            for (key, _) in std::env::vars_os() {
                let key = key.to_string_lossy();
                if key.starts_with("CARGO_PKG_")
                    || key.starts_with("CARGO_MANIFEST_")
                    || matches!(
                        key.as_ref(),
                        "CARGO_CRATE_NAME"
                            | "CARGO_PRIMARY_PACKAGE"
                            | "CARGO_TARGET_TMPDIR"
                            | "OUT_DIR"
                    )
                {
                    build.env_remove(key.as_ref());
                }
            }
            let status = build
                .args(["build", "-q", "--profile", &profile, "--bin", name])
                .args(["--manifest-path", manifest])
                .status()
                .unwrap_or_else(|e| {
                    panic!("running cargo build --profile {profile} --bin {name}: {e}")
                });
            assert!(
                status.success(),
                "cargo build --profile {profile} --bin {name} failed"
            );
        }
        built.push(name.to_owned());
    }
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build --profile {profile} --bin {name}`",
        path.display()
    );
    path
}

/// The cargo profile whose output directory is `dir` (`target/<dir>`): the directory's name,
/// except that the `dev` profile's directory is called `debug`.
fn profile_of(dir: &Path) -> String {
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_owned(),
        Some(other) => other.to_owned(),
    }
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
    #[allow(unsafe_code)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_is_read_from_the_output_directory() {
        assert_eq!(profile_of(Path::new("/w/target/debug")), "dev");
        assert_eq!(profile_of(Path::new("/w/target/release")), "release");
        assert_eq!(profile_of(Path::new("/tmp/tgt/ci")), "ci");
    }
}
