//! Tests: Redis over TLS (`rediss://`). A throwaway CA and server certificate made with the
//! `openssl` command, a `redis-server` that listens on its TLS port only (`--port 0`), and the
//! real `envshare` and `envshare-worker` binaries trusting the CA through `SSL_CERT_FILE`.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use envshare::sandbox::{Sandbox, SandboxConfig};
use envshare::wechat::Endpoint;
use envshare_tests::{ChildProcess, appid, bin_path, free_port, unique_queue};

const TOKEN: &str = "static-token-tls-9a8b";
const WAIT: Duration = Duration::from_secs(30);

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("the TLS test needs the openssl command (apt-get install openssl): {e}")
        });
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.crt`) and a server certificate for 127.0.0.1 and localhost signed by it
/// (`server.crt`, `server.key`), valid for a day, P-256 keys.
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "1",
        "-subj",
        "/CN=envshare test CA",
    ];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req", "-subj", "/CN=localhost"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    );
}

/// `redis-server` on a TLS port only.
fn start_tls_redis(dir: &Path, port: u16) -> ChildProcess {
    let path = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let port_s = port.to_string();
    let args = [
        "--port",
        "0",
        "--tls-port",
        &port_s,
        "--bind",
        "127.0.0.1",
        "--tls-cert-file",
        &path("server.crt"),
        "--tls-key-file",
        &path("server.key"),
        "--tls-ca-cert-file",
        &path("ca.crt"),
        "--tls-auth-clients",
        "no",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        &path(""),
    ];
    let server = ChildProcess::spawn(Path::new("redis-server"), &args, &[]);
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "redis-server --tls-port never listened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

/// Runs `envshare ARGS` to its end with `env`; returns (success, stdout, stderr).
async fn cli(args: &[&str], env: &[(&str, String)]) -> (bool, String, String) {
    let mut child = ChildProcess::spawn(&bin_path("envshare"), args, env);
    let status = child.wait_exit(WAIT).await;
    if status.is_none() {
        child.kill9();
    }
    let (out, err) = child.output();
    (status.is_some_and(|s| s.success()), out, err)
}

#[tokio::test]
async fn enqueue_and_a_worker_run_end_to_end_over_rediss_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let port = free_port();
    let mut server = start_tls_redis(dir.path(), port);
    let ca: PathBuf = dir.path().join("ca.crt");
    let queue = unique_queue("tls");
    let url = format!("rediss://127.0.0.1:{port}");
    let base = vec![
        ("ENVSHARE_REDIS_URL", url.clone()),
        ("ENVSHARE_QUEUE", queue.as_str().to_owned()),
    ];
    let mut trusted = base.clone();
    trusted.push(("SSL_CERT_FILE", ca.to_string_lossy().into_owned()));
    let (a1, a2) = (appid(0x71), appid(0x72));
    let enqueue = [
        "enqueue",
        "--env",
        "prod-tls",
        "--appid",
        a1.as_str(),
        "--appid",
        a2.as_str(),
    ];

    // Without the CA, the server's certificate is refused: TLS really verifies.
    let (ok, out, err) = cli(&enqueue, &base).await;
    assert!(!ok, "an untrusted certificate must fail:\n{out}\n{err}");
    assert!(
        err.contains("invalid peer certificate") && err.contains("SSL_CERT_FILE"),
        "the error names the certificate problem and the fix:\n{err}"
    );
    // A plain redis:// URL cannot talk to a TLS-only server either.
    let mut plain = trusted.clone();
    plain[0].1 = format!("redis://127.0.0.1:{port}");
    assert!(
        !cli(&["status"], &plain).await.0,
        "plain TCP to the TLS port"
    );

    let (ok, out, err) = cli(&enqueue, &trusted).await;
    assert!(ok, "enqueue over rediss://:\n{out}\n{err}");

    let sandbox = Sandbox::start(SandboxConfig {
        static_tokens: vec![TOKEN.into()],
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let mut worker_env = trusted.clone();
    worker_env.extend([
        ("ENVSHARE_WECHAT_BASE_URL", sandbox.url().to_owned()),
        ("ENVSHARE_ACCESS_TOKEN", TOKEN.to_owned()),
        ("ENVSHARE_HTTP_ADDR", format!("127.0.0.1:{}", free_port())),
    ]);
    let mut worker = ChildProcess::spawn(&bin_path("envshare-worker"), &[], &worker_env);

    let (ok, out, err) = cli(
        &["events", "tail", "--from-start", "--json", "--count", "3"],
        &trusted,
    )
    .await;
    worker.sigterm();
    let exit = worker.wait_exit(WAIT).await;
    let (_, worker_log) = worker.output();
    assert!(
        ok,
        "events tail over rediss://:\n{out}\n{err}\n{worker_log}"
    );
    assert!(exit.is_some_and(|s| s.success()), "{worker_log}");
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let accepted: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "share.accepted")
        .filter_map(|e| e["appid"].as_str())
        .collect();
    assert_eq!(accepted.len(), 2, "{out}");
    assert!(accepted.contains(&a1.as_str()) && accepted.contains(&a2.as_str()));
    assert!(
        events.iter().any(|e| e["type"] == "batch.completed"),
        "{out}"
    );
    assert!(sandbox.calls(Endpoint::ShareEnv) >= 1);

    let (ok, out, err) = cli(&["status", "--json"], &trusted).await;
    assert!(ok, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["ready"], 0, "{out}");
    server.kill9();
}
