//! Webhooks (docs/webhooks.md) end to end: the real `envshare-worker` and `envshare` binaries as
//! child processes, a private `redis-server`, the sandbox as WeChat, and webhook receivers
//! written here with axum (or a raw socket, to reset connections), plus the receiver examples
//! of `examples/` run as child processes.
//!
//! - faults: endpoints answering 500, 404, never, 200 after 30 s, resetting the connection, or
//!   redirecting, each with the exact number of attempts and the final state; a dead delivery
//!   re-sent with `envshare webhooks dead retry`; `envshare webhooks verify` on a real delivery;
//! - bad settings: an invalid URL or a missing secret stop the worker with exit 2;
//! - receivers: `examples/webhook_receiver.py` and `examples/webhook_receiver.js` verify every
//!   delivery of a run (one with the current secret, one with the previous: a rotation);
//! - `examples/redis_consumer.py` (redis-py) reads the events with a consumer group, takes over
//!   a crashed consumer's entries with XAUTOCLAIM and dedupes by event id;
//! - many events to three endpoints (healthy, failing 30 % at random, down at first) with two
//!   workers, one killed with SIGKILL again and again: every event delivered to every endpoint
//!   with a valid signature; duplicates counted and reported.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use envshare::sandbox::{Sandbox, SandboxConfig, SandboxHandle};
use envshare::store::{EnqueueOptions, EventReader, NewJob, Queue, QueueSettings, StartFrom};
use envshare::webhook::{endpoint_id, verify};
use envshare::{BatchId, EnvId, QueueName};
use envshare_tests::{
    ChildProcess, TestRedis, appid, bin_path, free_port, unique_queue, wait_until,
};
use serde_json::Value;
use tokio::io::AsyncReadExt as _;

const ENV: &str = "prod-hooks";
const SECRET: &str = "whsec-test-current-7f3a";
const PREVIOUS: &str = "whsec-test-previous-19c2";
const TOKEN: &str = "static-token-webhooks";
/// Appids of this file: `appid(BASE + i)`.
const BASE: u64 = 0x7e_0000;

// ---- a receiver with one behaviour per path ----

/// One request a test receiver got.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    id: String,
    kind: String,
    signature: String,
    body: Vec<u8>,
    /// What it answered (0: no answer, the connection was dropped or timed out).
    status: u16,
    /// When it arrived.
    at: Instant,
}

#[derive(Clone, Default)]
struct Hits(Arc<Mutex<Vec<Hit>>>);

impl Hits {
    fn push(&self, hit: Hit) {
        self.0.lock().unwrap().push(hit);
    }
    fn all(&self) -> Vec<Hit> {
        self.0.lock().unwrap().clone()
    }
    fn on(&self, path: &str) -> Vec<Hit> {
        self.all().into_iter().filter(|h| h.path == path).collect()
    }
    /// Requests per event id on `path`.
    fn per_event(&self, path: &str) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for h in self.on(path) {
            *out.entry(h.id).or_default() += 1;
        }
        out
    }
}

#[derive(Clone)]
struct HookState {
    hits: Hits,
    /// `/toggle` answers 500 until this is set, then 200.
    toggle_ok: Arc<AtomicBool>,
    /// How often `/flaky` answers 500.
    flaky_rate: f64,
}

fn header_str(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn hook(
    State(st): State<HookState>,
    UrlPath(path): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let status = match path.as_str() {
        "ok" | "redirected" | "down" => 200,
        "500" => 500,
        "404" => 404,
        "redirect" => 302,
        "hang" | "slow200" => 0,
        "toggle" if st.toggle_ok.load(Ordering::SeqCst) => 200,
        "toggle" => 500,
        "flaky" if rand::random::<f64>() < st.flaky_rate => 500,
        "flaky" => 200,
        _ => 410,
    };
    st.hits.push(Hit {
        path: path.clone(),
        id: header_str(&headers, "envshare-event-id"),
        kind: header_str(&headers, "envshare-event-type"),
        signature: header_str(&headers, "envshare-signature"),
        body: body.to_vec(),
        status,
        at: Instant::now(),
    });
    match path.as_str() {
        "hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
        "slow200" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::OK.into_response()
        }
        "redirect" => (StatusCode::FOUND, [(header::LOCATION, "/hook/redirected")]).into_response(),
        _ => StatusCode::from_u16(status).unwrap().into_response(),
    }
}

/// Serves the test receiver on `addr` (port 0: any); returns the bound address.
async fn serve_hooks(addr: SocketAddr, st: HookState) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind receiver");
    let bound = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/hook/{path}", post(hook))
        .with_state(st);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    bound
}

/// A receiver that reads each request's head and resets the connection (RST, no answer).
async fn serve_resets(hits: Hits) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let hits = hits.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                let id = head
                    .lines()
                    .find_map(|l| l.strip_prefix("envshare-event-id:"))
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                hits.push(Hit {
                    path: "reset".into(),
                    id,
                    kind: String::new(),
                    signature: String::new(),
                    body: Vec::new(),
                    status: 0,
                    at: Instant::now(),
                });
                // SO_LINGER 0: close() sends RST instead of FIN.
                let std = stream.into_std().unwrap();
                socket_linger_zero(&std);
                drop(std);
            });
        }
    });
    addr
}

#[allow(unsafe_code)]
fn socket_linger_zero(stream: &std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a properly sized, initialised linger struct.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt(SO_LINGER)");
}

// ---- the stack ----

async fn sandbox() -> SandboxHandle {
    Sandbox::start(SandboxConfig {
        static_tokens: vec![TOKEN.into()],
        record_share_log: false,
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox starts")
}

async fn connect(redis: &TestRedis, name: &QueueName) -> Queue {
    Queue::connect(redis.url(), name, QueueSettings::default())
        .await
        .expect("queue connects")
}

/// `jobs` jobs of `per_job` appids each in one sealed batch: `jobs * per_job` share.accepted
/// and one batch.completed once a worker runs them.
async fn enqueue(queue: &Queue, jobs: u64, per_job: u64, first: u64) -> BatchId {
    let batch = BatchId::generate();
    let new = (0..jobs)
        .map(|j| NewJob {
            op: envshare::store::JobOp::Share,
            env: EnvId::parse(ENV).unwrap(),
            appids: (0..per_job)
                .map(|k| appid(BASE + first + j * per_job + k))
                .collect(),
            batch: batch.clone(),
            run_at_ms: None,
        })
        .collect();
    queue
        .enqueue(
            new,
            EnqueueOptions {
                force: true,
                seal: true,
            },
        )
        .await
        .expect("enqueue");
    batch
}

/// The settings every worker of these tests gets; `extra` adds or overrides.
fn worker_env(
    redis: &TestRedis,
    queue: &QueueName,
    sandbox: &SandboxHandle,
    extra: &[(&str, String)],
) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&'static str, String)> = vec![
        ("ENVSHARE_REDIS_URL", redis.url().to_owned()),
        ("ENVSHARE_QUEUE", queue.as_str().to_owned()),
        ("ENVSHARE_HTTP_ADDR", format!("127.0.0.1:{}", free_port())),
        ("ENVSHARE_WECHAT_BASE_URL", sandbox.url().to_owned()),
        ("ENVSHARE_ACCESS_TOKEN", TOKEN.to_owned()),
        ("ENVSHARE_CONCURRENCY", "16".into()),
        ("ENVSHARE_CONFIRM_SCHEDULE", "1h".into()),
        ("ENVSHARE_SHUTDOWN_TIMEOUT_MS", "3000".into()),
        ("ENVSHARE_WEBHOOK_SECRET", SECRET.into()),
        ("ENVSHARE_WEBHOOK_BACKOFF_BASE_MS", "10".into()),
        ("ENVSHARE_WEBHOOK_BACKOFF_MAX_MS", "50".into()),
        ("ENVSHARE_LOG", "info".into()),
    ];
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        let key: &'static str = Box::leak(k.to_string().into_boxed_str());
        env.push((key, v.clone()));
    }
    env
}

fn spawn_worker(env: &[(&'static str, String)]) -> ChildProcess {
    ChildProcess::spawn(&bin_path("envshare-worker"), &[], env)
}

/// Runs `envshare ARGS` against the queue and returns its output.
fn cli(redis: &TestRedis, queue: &QueueName, args: &[&str]) -> Output {
    Command::new(bin_path("envshare"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ENVSHARE_REDIS_URL", redis.url())
        .env("ENVSHARE_QUEUE", queue.as_str())
        .args(args)
        .output()
        .expect("envshare runs")
}

fn cli_json(redis: &TestRedis, queue: &QueueName, args: &[&str]) -> Value {
    let out = cli(redis, queue, args);
    assert!(
        out.status.success(),
        "envshare {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// Every event in the stream: event id → JSON exactly as stored.
async fn stream_events(redis: &TestRedis, queue: &Queue) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (_, fields) in redis.stream_entries(&queue.keys().events()).await {
        let json = fields
            .chunks(2)
            .find(|p| p[0] == "event")
            .map(|p| p[1].clone())
            .expect("an event field");
        let v: Value = serde_json::from_str(&json).unwrap();
        out.insert(v["id"].as_str().unwrap().to_owned(), json);
    }
    out
}

fn endpoint<'a>(status: &'a Value, id: &str) -> &'a Value {
    status
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["endpoint"] == id)
        .unwrap_or_else(|| panic!("endpoint {id} in {status}"))
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

// ---- faults ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_endpoint_fault_ends_with_the_exact_attempts_and_final_state() {
    const ATTEMPTS: usize = 3;
    let redis = TestRedis::private();
    let sandbox = sandbox().await;
    let hits = Hits::default();
    let toggle_ok = Arc::new(AtomicBool::new(false));
    let addr = serve_hooks(
        "127.0.0.1:0".parse().unwrap(),
        HookState {
            hits: hits.clone(),
            toggle_ok: toggle_ok.clone(),
            flaky_rate: 0.0,
        },
    )
    .await;
    let reset_addr = serve_resets(hits.clone()).await;
    let url = |p: &str| format!("http://{addr}/hook/{p}");
    let faulty = ["500", "404", "hang", "slow200", "redirect", "toggle"];
    let mut urls: Vec<String> = faulty.iter().map(|p| url(p)).collect();
    urls.push(format!("http://{reset_addr}/hook/reset"));
    urls.push(url("ok"));
    let id_of = |u: &str| endpoint_id(reqwest::Url::parse(u).unwrap().as_str());
    let ids: HashMap<String, String> = faulty
        .iter()
        .map(|p| p.to_string())
        .chain(["reset".to_owned(), "ok".to_owned()])
        .zip(urls.iter().map(|u| id_of(u)))
        .collect();

    let name = unique_queue("hooks-faults");
    let queue = connect(&redis, &name).await;
    enqueue(&queue, 1, 1, 0).await;
    let started = Instant::now();
    let env = worker_env(
        &redis,
        &name,
        &sandbox,
        &[
            ("ENVSHARE_WEBHOOK_URLS", urls.join(",")),
            ("ENVSHARE_WEBHOOK_MAX_ATTEMPTS", ATTEMPTS.to_string()),
            ("ENVSHARE_WEBHOOK_TIMEOUT_MS", "300".into()),
        ],
    );
    let http = env
        .iter()
        .find(|(k, _)| *k == "ENVSHARE_HTTP_ADDR")
        .map(|(_, v)| v.clone())
        .unwrap();
    let mut worker = spawn_worker(&env);

    // share.accepted and batch.completed.
    let events = 2;
    let all_dead = wait_until(Duration::from_secs(30), || async {
        let s = cli_json(&redis, &name, &["webhooks", "status", "--json"]);
        // Until the worker has registered every endpoint, there is nothing to look at.
        let registered = s.as_array().map_or(0, Vec::len);
        if registered < ids.len() {
            return false;
        }
        faulty
            .iter()
            .map(|p| p.to_string())
            .chain(["reset".to_owned()])
            .all(|p| endpoint(&s, &ids[&p])["dead"] == events)
            && endpoint(&s, &ids["ok"])["backlog"] == 0
            && s.as_array().unwrap().iter().all(|e| e["in_flight"] == 0)
    })
    .await;
    let status = cli_json(&redis, &name, &["webhooks", "status", "--json"]);
    assert!(all_dead, "not every faulty delivery ended dead: {status:#}");
    eprintln!("faults: every delivery ended in {:?}", started.elapsed());

    let stream = stream_events(&redis, &queue).await;
    assert_eq!(stream.len(), events, "{stream:?}");
    // The healthy endpoint: each event once, never held up by the others.
    let ok = hits.per_event("ok");
    assert_eq!(
        ok.keys().collect::<Vec<_>>(),
        stream.keys().collect::<Vec<_>>()
    );
    assert!(ok.values().all(|&n| n == 1), "{ok:?}");
    // Every faulty endpoint: exactly ATTEMPTS attempts per event, then dead, backlog empty.
    for p in faulty
        .iter()
        .map(|p| p.to_string())
        .chain(["reset".to_owned()])
    {
        let per = hits.per_event(&p);
        assert_eq!(per.len(), events, "{p}: {per:?}");
        assert!(per.values().all(|&n| n == ATTEMPTS), "{p}: {per:?}");
        let e = endpoint(&status, &ids[&p]);
        assert_eq!(e["backlog"], 0, "{p}: {e}");
        assert_eq!(e["dead"], events, "{p}: {e}");
        let error = e["last_error"]["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let expected = match p.as_str() {
            "500" | "toggle" => "HTTP 500",
            "404" => "HTTP 404",
            "hang" | "slow200" => "timeout after 300 ms",
            "redirect" => "HTTP 302 redirect to \"/hook/redirected\" (redirects are not followed)",
            "reset" => "",
            _ => unreachable!(),
        };
        assert!(error.starts_with(expected), "{p}: last error {error:?}");
        if p == "reset" {
            assert!(
                error.contains("request failed") || error.contains("connect failed"),
                "{p}: {error:?}"
            );
        }
    }
    // The endpoints that never answer did not hold the healthy one up: it had every event before
    // their last attempts (each of which waits out the 300 ms timeout first).
    let last_ok = hits.on("ok").iter().map(|h| h.at).max().unwrap();
    for slow in ["hang", "slow200"] {
        let last = hits.on(slow).iter().map(|h| h.at).max().unwrap();
        assert!(last_ok < last, "the healthy endpoint waited for {slow}");
    }
    // Redirects are not followed.
    assert!(hits.on("redirected").is_empty());

    // dead list: every dead delivery with its attempts and error.
    let dead = cli_json(&redis, &name, &["webhooks", "dead", "list", "--json"]);
    let dead = dead.as_array().unwrap();
    assert_eq!(dead.len(), 7 * events, "{dead:#?}");
    assert!(dead.iter().all(|d| d["attempts"] == ATTEMPTS as u64));
    let table = cli(&redis, &name, &["webhooks", "dead", "list"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("endpoint "), "{text}");
    assert_eq!(text.lines().count(), 1 + 7 * events, "{text}");

    // The endpoint is fixed; its dead deliveries are sent again and delivered.
    toggle_ok.store(true, Ordering::SeqCst);
    let retried = cli_json(
        &redis,
        &name,
        &[
            "webhooks",
            "dead",
            "retry",
            "--all",
            "--endpoint",
            &ids["toggle"],
            "--json",
        ],
    );
    assert_eq!(retried["revived"], events);
    assert!(
        wait_until(Duration::from_secs(10), || async {
            let s = cli_json(&redis, &name, &["webhooks", "status", "--json"]);
            let e = endpoint(&s, &ids["toggle"]);
            e["dead"] == 0 && e["backlog"] == 0
        })
        .await,
        "re-sent deliveries were not delivered"
    );
    let per = hits.per_event("toggle");
    assert!(per.values().all(|&n| n == ATTEMPTS + 1), "{per:?}");
    // An unknown endpoint is bad input.
    let out = cli(
        &redis,
        &name,
        &["webhooks", "dead", "retry", "--all", "--endpoint", "nope"],
    );
    assert_eq!(out.status.code(), Some(2));

    // Bodies are the stream's events byte for byte, with valid signatures that
    // `envshare webhooks verify` accepts.
    let delivered = hits.on("ok");
    for h in &delivered {
        assert_eq!(h.body, stream[&h.id].as_bytes(), "body of {}", h.id);
        let v: Value = serde_json::from_slice(&h.body).unwrap();
        assert_eq!(h.kind, v["type"].as_str().unwrap());
        assert!(verify(&h.signature, &h.body, SECRET.as_bytes(), Some(300), now_s()).is_ok());
    }
    let dir = tempfile::tempdir().unwrap();
    let body_file = dir.path().join("body.json");
    std::fs::write(&body_file, &delivered[0].body).unwrap();
    let body_arg = body_file.to_str().unwrap();
    let sig = delivered[0].signature.as_str();
    let verify_cli = |secret: &str, header: &str| {
        cli(
            &redis,
            &name,
            &[
                "webhooks", "verify", "--secret", secret, "--header", header, body_arg,
            ],
        )
    };
    let good = verify_cli(SECRET, sig);
    assert_eq!(good.status.code(), Some(0), "{good:?}");
    assert!(String::from_utf8_lossy(&good.stdout).starts_with("valid"));
    assert_eq!(verify_cli("wrong-secret", sig).status.code(), Some(1));
    assert_eq!(verify_cli(SECRET, "t=1,v1=zz").status.code(), Some(2));

    // Metrics: delivered, failed attempts, latency, backlog, per endpoint id.
    let metrics = reqwest::get(format!("http://{http}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = |name: &str, ep: &str| {
        let prefix = format!("{name}{{endpoint=\"{}\"}} ", ids[ep]);
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("{prefix} in /metrics:\n{metrics}"))
            .to_owned()
    };
    assert_eq!(line("envshare_webhook_delivered_total", "ok"), "2");
    assert_eq!(line("envshare_webhook_delivered_total", "toggle"), "2");
    assert_eq!(
        line("envshare_webhook_failed_attempts_total", "toggle"),
        "6"
    );
    assert_eq!(line("envshare_webhook_failed_attempts_total", "404"), "6");
    assert_eq!(line("envshare_webhook_dead_total", "404"), "2");
    assert_eq!(
        line("envshare_webhook_attempt_duration_seconds_count", "500"),
        "6"
    );
    assert!(
        wait_until(Duration::from_secs(5), || async {
            let m = reqwest::get(format!("http://{http}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            m.contains(&format!(
                "envshare_webhook_backlog{{endpoint=\"{}\"}} 0",
                ids["ok"]
            ))
        })
        .await
    );
    worker.sigterm();
    let status = worker.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(0));
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---- bad settings ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_url_or_a_missing_secret_stops_the_worker_with_exit_2() {
    let redis = TestRedis::shared();
    let sandbox = sandbox().await;
    let name = unique_queue("hooks-bad");
    let cases: [(&[(&str, String)], &str); 3] = [
        (
            &[("ENVSHARE_WEBHOOK_URLS", "ftp://hooks.example/in".into())],
            "ENVSHARE_WEBHOOK_URLS",
        ),
        (
            &[(
                "ENVSHARE_WEBHOOK_URLS",
                "https://ok.example/in,not a url".into(),
            )],
            "ENVSHARE_WEBHOOK_URLS",
        ),
        (
            &[
                ("ENVSHARE_WEBHOOK_URLS", "https://ok.example/in".into()),
                ("ENVSHARE_WEBHOOK_SECRET", String::new()),
            ],
            "ENVSHARE_WEBHOOK_SECRET",
        ),
    ];
    for (extra, named) in cases {
        let mut env = worker_env(redis, &name, &sandbox, extra);
        // An empty value means "not set" here.
        env.retain(|(_, v)| !v.is_empty());
        let mut w = spawn_worker(&env);
        let status = w.wait_exit(Duration::from_secs(10)).await.expect("exits");
        let (_, stderr) = w.output();
        assert_eq!(status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(named), "{extra:?}: {stderr}");
        assert!(!stderr.contains(SECRET), "{stderr}");
    }
}

// ---- receiver examples ----

/// Starts an example receiver on a free port; waits until it accepts connections.
async fn spawn_receiver(
    program: &str,
    script: &str,
    secret: &str,
    out: &Path,
) -> (ChildProcess, u16) {
    let port = free_port();
    let script = examples_dir().join(script);
    let port_s = port.to_string();
    let child = ChildProcess::spawn(
        Path::new(program),
        &[
            script.to_str().unwrap(),
            "--port",
            &port_s,
            "--secret",
            secret,
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    let up = wait_until(Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    assert!(up, "{script:?} did not start listening");
    (child, port)
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_and_node_receiver_examples_verify_every_delivery_across_a_rotation() {
    let redis = TestRedis::private();
    let sandbox = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let py_out = dir.path().join("python.jsonl");
    let js_out = dir.path().join("node.jsonl");
    // Mid-rotation: the Python receiver already has the new secret, the Node one still the old.
    let (mut py, py_port) = spawn_receiver("python3", "webhook_receiver.py", SECRET, &py_out).await;
    let (mut js, js_port) = spawn_receiver("node", "webhook_receiver.js", PREVIOUS, &js_out).await;

    let name = unique_queue("hooks-examples");
    let queue = connect(&redis, &name).await;
    enqueue(&queue, 10, 2, 0).await;
    let events = 21;
    let mut worker = spawn_worker(&worker_env(
        &redis,
        &name,
        &sandbox,
        &[
            (
                "ENVSHARE_WEBHOOK_URLS",
                format!("http://127.0.0.1:{py_port}/hook,http://127.0.0.1:{js_port}/hook"),
            ),
            ("ENVSHARE_WEBHOOK_SECRET_PREVIOUS", PREVIOUS.into()),
        ],
    ));
    let done = wait_until(Duration::from_secs(30), || async {
        read_jsonl(&py_out).len() >= events && read_jsonl(&js_out).len() >= events
    })
    .await;
    worker.sigterm();
    let _ = worker.wait_exit(Duration::from_secs(20)).await;
    py.kill9();
    js.kill9();
    assert!(
        done,
        "python recorded {}, node {} of {events}",
        read_jsonl(&py_out).len(),
        read_jsonl(&js_out).len()
    );
    let stream = stream_events(&redis, &queue).await;
    assert_eq!(stream.len(), events);
    for (who, out) in [("python", &py_out), ("node", &js_out)] {
        let lines = read_jsonl(out);
        let mut seen = BTreeSet::new();
        for l in &lines {
            assert_eq!(l["valid"], true, "{who}: {l}");
            let id = l["id"].as_str().unwrap();
            assert_eq!(
                l["body"].as_str().unwrap(),
                stream[id],
                "{who}: body of {id}"
            );
            let v: Value = serde_json::from_str(&stream[id]).unwrap();
            assert_eq!(l["type"], v["type"], "{who}");
            seen.insert(id.to_owned());
        }
        assert_eq!(seen.len(), events, "{who}: every event verified");
    }
}

// ---- a Redis consumer in Python ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_py_consumer_example_reads_every_event_once_and_takes_over_stale_entries() {
    let redis = TestRedis::private();
    let sandbox = sandbox().await;
    let name = unique_queue("hooks-redispy");
    let queue = connect(&redis, &name).await;
    enqueue(&queue, 15, 2, 0).await;
    let events = 31;
    let mut worker = spawn_worker(&worker_env(&redis, &name, &sandbox, &[]));
    assert!(
        wait_until(Duration::from_secs(30), || async {
            stream_events(&redis, &queue).await.len() >= events
        })
        .await,
        "the worker did not write the events"
    );
    worker.sigterm();
    let _ = worker.wait_exit(Duration::from_secs(20)).await;

    // A consumer of the group reads 5 entries and "crashes" without acking them.
    let group = "billing";
    let mut crashed = EventReader::connect(
        redis.url(),
        queue.keys(),
        group,
        "crashed-1",
        StartFrom::Beginning,
    )
    .await
    .unwrap();
    let taken = crashed.read(5, Duration::from_millis(100)).await.unwrap();
    assert_eq!(taken.len(), 5);
    drop(crashed);

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("handled.jsonl");
    let run = |consumer: &str, extra: &[&str]| {
        let mut args = vec![
            examples_dir()
                .join("redis_consumer.py")
                .to_str()
                .unwrap()
                .to_owned(),
            "--url".into(),
            redis.url().to_owned(),
            "--queue".into(),
            name.as_str().to_owned(),
            "--group".into(),
            group.into(),
            "--consumer".into(),
            consumer.into(),
            "--out".into(),
            out.to_str().unwrap().to_owned(),
            "--min-idle-ms".into(),
            "50".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Command::new("python3")
            .args(&args)
            .output()
            .expect("python3 runs")
    };
    std::thread::sleep(Duration::from_millis(100));
    let first = run(
        "py-1",
        &["--count", &events.to_string(), "--idle-exit", "10"],
    );
    assert!(
        first.status.success(),
        "redis_consumer.py failed (is redis-py installed? `python3 -m pip install redis`): {}",
        String::from_utf8_lossy(&first.stderr)
    );
    let handled = read_jsonl(&out);
    let stream = stream_events(&redis, &queue).await;
    let ids: BTreeSet<String> = handled
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(handled.len(), events, "each event handled once");
    assert_eq!(ids, stream.keys().cloned().collect::<BTreeSet<_>>());
    // The crashed consumer's entries were taken over: nothing is pending any more.
    let mut conn = redis.conn().await;
    let pending: (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
        .arg(queue.keys().events())
        .arg(group)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(pending.0, 0, "entries left pending");

    // The group replays the whole stream: every event is a duplicate by id, and only acked.
    let _: () = redis::cmd("XGROUP")
        .arg("SETID")
        .arg(queue.keys().events())
        .arg(group)
        .arg("0")
        .query_async(&mut conn)
        .await
        .unwrap();
    let second = run("py-2", &["--idle-exit", "1.5"]);
    assert!(second.status.success());
    let summary: Value =
        serde_json::from_str(String::from_utf8_lossy(&second.stdout).trim()).unwrap();
    assert_eq!(summary["handled"], 0, "replayed events were handled again");
    assert_eq!(read_jsonl(&out).len(), events);
}

// ---- many events, three endpoints, workers killed ----

/// Many events to a healthy endpoint, one failing 30 % of requests at random and one down for
/// the first seconds, with two workers of which one is killed with SIGKILL several times: every
/// event is delivered to every endpoint with a valid signature. Duplicates (an event answered
/// 2xx more than once by one endpoint: an attempt in flight when its worker died) are counted
/// and bounded by kills × in-flight attempts.
///
/// `ENVSHARE_TEST_WEBHOOK_EVENTS` sets the number of share events (default 2,000; the full-scale
/// run is 10,000, see BENCHMARKS.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_events_reach_three_endpoints_through_failures_outages_and_kill_9() {
    let pairs: u64 = std::env::var("ENVSHARE_TEST_WEBHOOK_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    const KILLS: usize = 5;
    const CONCURRENCY: usize = 16;
    const DOWN_FOR: Duration = Duration::from_secs(8);
    let started = Instant::now();
    let redis = TestRedis::private();
    let sandbox = sandbox().await;
    let hits = Hits::default();
    let st = HookState {
        hits: hits.clone(),
        toggle_ok: Arc::new(AtomicBool::new(true)),
        flaky_rate: 0.3,
    };
    let addr = serve_hooks("127.0.0.1:0".parse().unwrap(), st.clone()).await;
    let down_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let urls = [
        format!("http://{addr}/hook/ok"),
        format!("http://{addr}/hook/flaky"),
        format!("http://{down_addr}/hook/down"),
    ];

    let name = unique_queue("hooks-scale");
    let queue = connect(&redis, &name).await;
    enqueue(&queue, pairs / 2, 2, 0).await;
    let events = pairs as usize + 1;
    let env = |_: usize| {
        worker_env(
            &redis,
            &name,
            &sandbox,
            &[
                ("ENVSHARE_WEBHOOK_URLS", urls.join(",")),
                ("ENVSHARE_WEBHOOK_TIMEOUT_MS", "1000".into()),
                ("ENVSHARE_WEBHOOK_CONCURRENCY", CONCURRENCY.to_string()),
                ("ENVSHARE_WEBHOOK_BACKOFF_MAX_MS", "500".into()),
                ("ENVSHARE_LEASE_MS", "3000".into()),
            ],
        )
    };
    let steady = spawn_worker(&env(0));
    let mut victim = spawn_worker(&env(1));
    let down_st = st.clone();
    let down = tokio::spawn(async move {
        tokio::time::sleep(DOWN_FOR).await;
        serve_hooks(down_addr, down_st).await;
    });

    let delivered_everywhere = |hits: &Hits| {
        let mut ok: HashMap<&'static str, BTreeSet<String>> = HashMap::new();
        for h in hits.all() {
            if h.status == 200 {
                let key = match h.path.as_str() {
                    "ok" => "ok",
                    "flaky" => "flaky",
                    _ => "down",
                };
                ok.entry(key).or_default().insert(h.id);
            }
        }
        ["ok", "flaky", "down"]
            .iter()
            .map(|k| ok.get(k).map_or(0, BTreeSet::len))
            .collect::<Vec<_>>()
    };
    let mut kills = 0;
    // Generous: the test asserts delivery, not speed (BENCHMARKS.md measures that).
    let deadline = Instant::now() + Duration::from_secs(60) + Duration::from_millis(30 * pairs);
    loop {
        let counts = delivered_everywhere(&hits);
        if counts.iter().all(|&n| n >= events) || Instant::now() >= deadline {
            break;
        }
        if kills < KILLS {
            tokio::time::sleep(Duration::from_millis(2500)).await;
            victim.kill9();
            kills += 1;
            victim = spawn_worker(&env(1 + kills));
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    down.await.unwrap();
    let elapsed = started.elapsed();
    let stream = stream_events(&redis, &queue).await;
    let counts = delivered_everywhere(&hits);
    assert_eq!(stream.len(), events, "events in the stream");
    assert!(
        counts.iter().all(|&n| n == events),
        "delivered (ok, flaky, down) = {counts:?} of {events} after {elapsed:?}"
    );

    // Every 2xx delivery: the stream's event byte for byte, a valid signature.
    let mut dupes: BTreeMap<&str, usize> = BTreeMap::new();
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    let all = hits.all();
    for h in all.iter().filter(|h| h.status == 200) {
        assert_eq!(
            h.body,
            stream[&h.id].as_bytes(),
            "body of {} at {}",
            h.id,
            h.path
        );
        // Signed when sent; the run is short, so a day's tolerance only rules out garbage.
        assert!(
            verify(
                &h.signature,
                &h.body,
                SECRET.as_bytes(),
                Some(86_400),
                now_s()
            )
            .is_ok(),
            "signature of {} at {}",
            h.id,
            h.path
        );
        if !seen.insert((h.path.clone(), h.id.clone())) {
            *dupes
                .entry(match h.path.as_str() {
                    "ok" => "ok",
                    "flaky" => "flaky",
                    _ => "down",
                })
                .or_default() += 1;
        }
    }
    let failed = all.iter().filter(|h| h.status != 200).count();
    let total_dupes: usize = dupes.values().sum();
    eprintln!(
        "webhooks at scale: {events} events x 3 endpoints delivered in {elapsed:.1?} with {kills} \
         SIGKILLs; {} requests, {failed} answered non-2xx; duplicates {dupes:?} ({total_dupes})",
        all.len()
    );
    // A duplicate is an attempt in flight (or answered, not yet settled) when its worker died.
    let bound = kills * CONCURRENCY * 3;
    assert!(total_dupes <= bound, "{total_dupes} duplicates > {bound}");

    let status = cli_json(&redis, &name, &["webhooks", "status", "--json"]);
    for e in status.as_array().unwrap() {
        assert_eq!(e["backlog"], 0, "{e}");
        assert_eq!(e["dead"], 0, "{e}");
    }
    drop(steady);
    drop(victim);
}

// ---- Redis restart ----

/// Redis killed (SIGKILL) and restarted from its AOF mid-run, with deliveries scheduled, leased
/// and dead-ahead: the worker carries on by itself and every event reaches both endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_survive_a_redis_kill_and_restart() {
    let redis = TestRedis::private();
    let sandbox = sandbox().await;
    let hits = Hits::default();
    let toggle_ok = Arc::new(AtomicBool::new(false));
    let addr = serve_hooks(
        "127.0.0.1:0".parse().unwrap(),
        HookState {
            hits: hits.clone(),
            toggle_ok: toggle_ok.clone(),
            flaky_rate: 0.0,
        },
    )
    .await;
    let name = unique_queue("hooks-restart");
    let queue = connect(&redis, &name).await;
    enqueue(&queue, 300, 1, 0).await;
    let events = 301;
    let mut worker = spawn_worker(&worker_env(
        &redis,
        &name,
        &sandbox,
        &[
            (
                "ENVSHARE_WEBHOOK_URLS",
                format!("http://{addr}/hook/ok,http://{addr}/hook/toggle"),
            ),
            ("ENVSHARE_WEBHOOK_TIMEOUT_MS", "1000".into()),
            ("ENVSHARE_WEBHOOK_BACKOFF_MAX_MS", "300".into()),
        ],
    ));
    let ok_ids = |hits: &Hits, path: &str| {
        hits.on(path)
            .into_iter()
            .filter(|h| h.status == 200)
            .map(|h| h.id)
            .collect::<BTreeSet<_>>()
    };
    assert!(
        wait_until(Duration::from_secs(30), || async {
            ok_ids(&hits, "ok").len() >= 50 && !hits.on("toggle").is_empty()
        })
        .await,
        "deliveries did not start"
    );
    tokio::task::block_in_place(|| redis.kill());
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| redis.restart());
    toggle_ok.store(true, Ordering::SeqCst);
    let done = wait_until(Duration::from_secs(60), || async {
        ok_ids(&hits, "ok").len() >= events && ok_ids(&hits, "toggle").len() >= events
    })
    .await;
    worker.sigterm();
    let exit = worker.wait_exit(Duration::from_secs(20)).await;
    let stream = stream_events(&redis, &queue).await;
    assert!(
        done,
        "after the restart: ok {} and toggle {} of {events} delivered",
        ok_ids(&hits, "ok").len(),
        ok_ids(&hits, "toggle").len()
    );
    assert_eq!(stream.len(), events);
    let want: BTreeSet<String> = stream.keys().cloned().collect();
    assert_eq!(ok_ids(&hits, "ok"), want);
    assert_eq!(ok_ids(&hits, "toggle"), want);
    assert_eq!(exit.and_then(|s| s.code()), Some(0));
}
