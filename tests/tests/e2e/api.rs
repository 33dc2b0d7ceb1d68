//! The JSON API of `envshare serve` (`/api/v1`): an in-process `serve::Application` on a test
//! stack (real Redis, the sandbox as WeChat, in-process workers where jobs must finish), driven
//! over HTTP. Tokens, every bad pair listed, idempotency, the body cap, results equal to
//! `envshare batch results` byte for byte, 404s, dead jobs, the pause, Server-Sent Events,
//! metrics by route template and the OpenAPI document.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Output;
use std::time::Duration;

use envshare::events::FailReason;
use envshare::sandbox::SandboxConfig;
use envshare::serve::Application;
use envshare::store::{Ack, Claim, Outcome, WorkerId};
use envshare::{AppId, BatchId};
use envshare_tests::{TestStack, appid, run_envshare, wait_until};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The fixed WeChat token the sandbox accepts.
const WECHAT_TOKEN: &str = "api-static-token";
/// The API's bearer token in these tests.
const API_TOKEN: &str = "api-test-token-0123456789";
/// This file's appids: `appid(BASE + i)`.
const BASE: u64 = 0x0b_0000;
const ENV: &str = "prod-api";
const WAIT: Duration = Duration::from_secs(30);

/// An in-process `envshare serve` with an API token on a test stack.
struct Api {
    stack: TestStack,
    base: String,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Api {
    async fn start(prefix: &str, config: SandboxConfig) -> Api {
        let config = SandboxConfig {
            static_tokens: vec![WECHAT_TOKEN.into()],
            ..config
        };
        let stack = TestStack::start(prefix, config, |s| {
            s.api_token = Some(SecretString::from(API_TOKEN));
            s.serve_addr = "127.0.0.1:0".parse().unwrap();
        })
        .await;
        let app = Application::build(stack.settings.clone())
            .await
            .expect("serve starts");
        let base = format!("http://{}", app.addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Api {
            stack,
            base,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(API_TOKEN)
    }

    fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(path))
            .bearer_auth(API_TOKEN)
            .json(body)
    }

    /// Sends `req`; the status and the JSON body.
    async fn send(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let r = req.send().await.expect("serve answers");
        let status = r.status();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text}"));
        (status, body)
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(15), self.task).await;
    }
}

fn ids(from: u64, n: u64) -> Vec<AppId> {
    (from..from + n).map(|i| appid(BASE + i)).collect()
}

fn pairs(appids: &[AppId]) -> Value {
    Value::Array(
        appids
            .iter()
            .map(|a| json!({"env": ENV, "appid": a.as_str()}))
            .collect(),
    )
}

/// `envshare ARGS` on the stack's queue, off the runtime's threads.
async fn envshare(s: &TestStack, args: &[&str]) -> Output {
    run_envshare(s.name().as_str(), args, &[]).await
}

async fn wait_completed(s: &TestStack, batch: &str) {
    let id = BatchId::parse(batch).unwrap();
    let done = wait_until(WAIT, || async {
        s.queue
            .batch(&id)
            .await
            .unwrap()
            .is_some_and(|p| p.completed)
    })
    .await;
    assert!(done, "batch {batch} did not complete");
}

/// The message every 401 carries, and nothing else.
fn assert_unauthorized(status: StatusCode, body: &Value, what: &str) {
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
    assert_eq!(
        body,
        &json!({"error": {"code": "unauthorized",
            "message": "send the API token as `Authorization: Bearer TOKEN`"}}),
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_a_missing_or_wrong_token_with_a_401_that_reveals_nothing() {
    let api = Api::start("api-auth", SandboxConfig::default()).await;
    let batch = json!({"batch": "b-auth", "pairs": pairs(&ids(0, 3))});
    let routes: [(&str, &str); 14] = [
        ("POST", "/api/v1/batches"),
        ("GET", "/api/v1/batches"),
        ("GET", "/api/v1/batches/b-auth"),
        ("GET", "/api/v1/batches/b-auth/results?format=csv"),
        ("GET", "/api/v1/jobs/01ABCDEF"),
        ("GET", "/api/v1/appids/wx0000000000000001"),
        ("GET", "/api/v1/dead"),
        ("POST", "/api/v1/dead/retry"),
        ("POST", "/api/v1/dead/purge"),
        ("POST", "/api/v1/pause"),
        ("POST", "/api/v1/resume"),
        ("GET", "/api/v1/status"),
        ("GET", "/api/v1/events"),
        ("GET", "/api/v1/no-such-route"),
    ];
    for (method, path) in routes {
        for auth in [None, Some("Bearer wrong-token"), Some(API_TOKEN)] {
            let mut req = match method {
                "POST" => api.http.post(api.url(path)).json(&batch),
                _ => api.http.get(api.url(path)),
            };
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            let (status, body) = Api::send(req).await;
            assert_unauthorized(status, &body, &format!("{method} {path} with {auth:?}"));
        }
    }
    // Nothing was enqueued or paused by any of them.
    let stats = api.stack.queue.stats().await.unwrap();
    assert_eq!((stats.jobs, &stats.paused), (0, &None), "{stats:?}");
    assert!(
        api.stack
            .queue
            .list_batches(0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // With the token, the same request is answered.
    let (status, body) = Api::send(api.post("/api/v1/batches", &batch)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // The OpenAPI document needs no token and holds no secret.
    let doc = api
        .http
        .get(api.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(doc.status(), StatusCode::OK);
    assert!(!doc.text().await.unwrap().contains(API_TOKEN));
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_bad_pairs_is_a_422_listing_every_one_and_enqueues_nothing() {
    let api = Api::start("api-422", SandboxConfig::default()).await;
    let good = ids(0x10, 2);
    let body = json!({"batch": "b-bad", "pairs": [
        {"env": ENV, "appid": good[0].as_str()},
        {"env": ENV, "appid": "wx12"},
        {"env": ENV, "appid": good[1].as_str()},
        {"env": "has space", "appid": good[0].as_str()},
        {"env": 7, "appid": good[0].as_str()},
        "not an object",
        {"env": ENV},
    ]});
    let (status, b) = Api::send(api.post("/api/v1/batches", &body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["code"], "invalid_pairs", "{b}");
    let errors = b["error"]["errors"].as_array().unwrap();
    let indexes: Vec<u64> = errors
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, [1, 3, 4, 5, 6], "{b}");
    let reasons: Vec<&str> = errors
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons[0].contains("\"wx12\"") && reasons[0].contains("16 lowercase hex"),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("has space"), "{reasons:?}");
    assert!(reasons[2].contains("env must be a string"), "{reasons:?}");
    assert!(reasons[3].contains("must be an object"), "{reasons:?}");
    assert!(reasons[4].contains("no \"appid\""), "{reasons:?}");

    // JSON that is not the schema: a 422 naming the field.
    for (body, field) in [
        (json!({"pairs": "x"}), "pairs"),
        (
            json!({"pairs": pairs(&good), "chunk_size": "ten"}),
            "chunk_size",
        ),
        (
            json!({"pairs": pairs(&good), "chunk_size": 0}),
            "chunk_size",
        ),
        (
            json!({"pairs": pairs(&good), "batch": "no spaces allowed"}),
            "batch",
        ),
        (json!({"pairs": pairs(&good), "extra": 1}), "extra"),
        (json!({"pairs": []}), "pairs"),
        (json!({}), "pairs"),
        (json!([1, 2]), "body"),
    ] {
        let (status, b) = Api::send(api.post("/api/v1/batches", &body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {b}");
        assert_eq!(b["error"]["code"], "invalid_body", "{b}");
        let named = b["error"]["field"].as_str().unwrap();
        assert!(
            named == field || b["error"]["message"].as_str().unwrap().contains(field),
            "{body}: expected {field}, got {b}"
        );
    }
    let r = api
        .http
        .post(api.url("/api/v1/batches"))
        .bearer_auth(API_TOKEN)
        .header("content-type", "application/json")
        .body("{\"pairs\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = api
        .http
        .post(api.url("/api/v1/batches"))
        .bearer_auth(API_TOKEN)
        .header("content-type", "text/csv")
        .body("env,appid\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let stats = api.stack.queue.stats().await.unwrap();
    assert_eq!(stats.jobs, 0, "nothing enqueued: {stats:?}");
    assert!(
        api.stack
            .queue
            .list_batches(0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_replays_the_first_answer_and_enqueues_nothing_more() {
    let api = Api::start("api-idem", SandboxConfig::default()).await;
    let body = json!({"batch": "b-idem", "chunk_size": 4, "pairs": pairs(&ids(0x20, 10))});
    let first = api
        .post("/api/v1/batches", &body)
        .header("Idempotency-Key", "key-1")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    assert_eq!(
        first.headers()["location"].to_str().unwrap(),
        "/api/v1/batches/b-idem"
    );
    let first: Value = first.json().await.unwrap();
    assert_eq!(
        (first["jobs"].as_u64(), first["appids"].as_u64()),
        (Some(3), Some(10))
    );
    let enqueued = |s: &envshare::store::QueueStats| s.counters.get("enqueued").copied();
    let before = api.stack.queue.stats().await.unwrap();
    assert_eq!(before.jobs, 3);

    for _ in 0..2 {
        let again = api
            .post("/api/v1/batches", &body)
            .header("Idempotency-Key", "key-1")
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::CREATED);
        assert_eq!(again.headers()["idempotency-replayed"], "true");
        let again: Value = again.json().await.unwrap();
        assert_eq!(again, first, "the first answer, word for word");
    }
    let after = api.stack.queue.stats().await.unwrap();
    assert_eq!((after.jobs, enqueued(&after)), (3, enqueued(&before)));

    // The same key with another body: refused, nothing enqueued.
    let other = json!({"batch": "b-idem-2", "pairs": pairs(&ids(0x40, 2))});
    let (status, b) = Api::send(
        api.post("/api/v1/batches", &other)
            .header("Idempotency-Key", "key-1"),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{b}");
    assert_eq!(b["error"]["code"], "idempotency_key_reused", "{b}");
    assert_eq!(api.stack.queue.stats().await.unwrap().jobs, 3);
    // A 422 is an answer too: replayed as it was.
    let bad = json!({"pairs": [{"env": ENV, "appid": "nope"}]});
    let (s1, b1) = Api::send(
        api.post("/api/v1/batches", &bad)
            .header("Idempotency-Key", "key-2"),
    )
    .await;
    let (s2, b2) = Api::send(
        api.post("/api/v1/batches", &bad)
            .header("Idempotency-Key", "key-2"),
    )
    .await;
    assert_eq!(
        (s1, s2),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            StatusCode::UNPROCESSABLE_ENTITY
        )
    );
    assert_eq!(b1, b2);
    // A key that is not one.
    let (status, b) = Api::send(
        api.post("/api/v1/batches", &other)
            .header("Idempotency-Key", "x".repeat(300)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"]["field"], "Idempotency-Key", "{b}");
    assert_eq!(api.stack.queue.stats().await.unwrap().jobs, 3);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_idempotency_key_sent_at_once_enqueues_the_batch_once() {
    let api = Api::start("api-idem-race", SandboxConfig::default()).await;
    // Big enough that the first request is still being answered when the others arrive.
    let body = json!({"batch": "b-race", "chunk_size": 10, "pairs": pairs(&ids(0x1000, 3000))});
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..8 {
        sends.spawn(
            api.post("/api/v1/batches", &body)
                .header("Idempotency-Key", "race-key")
                .send(),
        );
    }
    let mut first = Vec::new();
    let mut replayed = Vec::new();
    while let Some(r) = sends.join_next().await {
        let r = r.unwrap().expect("serve answers");
        let status = r.status();
        let replay = r.headers().contains_key("idempotency-replayed");
        let b: Value = r.json().await.unwrap();
        match (status, replay) {
            (StatusCode::CREATED, false) => first.push(b),
            (StatusCode::CREATED, true) => replayed.push(b),
            (StatusCode::CONFLICT, _) => {
                assert_eq!(b["error"]["code"], "idempotency_key_in_use", "{b}")
            }
            _ => panic!("{status}: {b}"),
        }
    }
    assert_eq!(first.len(), 1, "exactly one request enqueues: {first:?}");
    let first = first.remove(0);
    assert_eq!(
        (first["jobs"].as_u64(), first["appids"].as_u64()),
        (Some(300), Some(3000))
    );
    assert!(replayed.iter().all(|b| *b == first), "{replayed:?}");
    let stats = api.stack.queue.stats().await.unwrap();
    assert_eq!(stats.jobs, 300, "the batch once, not once per request");
    assert_eq!(stats.counters.get("enqueued").copied(), Some(300));
    // Once answered, the key replays the one answer.
    let again = api
        .post("/api/v1/batches", &body)
        .header("Idempotency-Key", "race-key")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    api.stop().await;
}

/// Sends a request head, then reads whatever the server answers before any body byte is sent.
fn raw_answer(addr: &str, head: &str) -> String {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(head.as_bytes()).unwrap();
    let mut buf = [0u8; 4096];
    let n = tcp.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mb_body_is_refused_with_413_before_it_is_read() {
    let api = Api::start("api-413", SandboxConfig::default()).await;
    let addr = api.base.trim_start_matches("http://").to_owned();
    let head = format!(
        "POST /api/v1/batches HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {API_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        50 * 1024 * 1024
    );
    let a = addr.clone();
    // Not one byte of the body is sent: the answer comes from the header alone.
    let answer = tokio::task::spawn_blocking(move || raw_answer(&a, &head))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"body_too_large\""), "{answer}");
    // Without a token the same request is a 401, not a 413.
    let head = format!(
        "POST /api/v1/batches HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        50 * 1024 * 1024
    );
    let a = addr.clone();
    let answer = tokio::task::spawn_blocking(move || raw_answer(&a, &head))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");

    // A chunked body (no Content-Length) is cut off once it passes the cap.
    let a = addr.clone();
    let answer = tokio::task::spawn_blocking(move || chunked_answer(&a, 40))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(api.stack.queue.stats().await.unwrap().jobs, 0);
    api.stop().await;
}

/// Sends `mib` MiB of spaces as a chunked body (stopping when the server stops reading), then
/// reads the answer.
fn chunked_answer(addr: &str, mib: usize) -> String {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /api/v1/batches HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {API_TOKEN}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b' '; 1024 * 1024];
    for _ in 0..mib {
        let sent = tcp
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .and_then(|()| tcp.write_all(&chunk))
            .and_then(|()| tcp.write_all(b"\r\n"));
        if sent.is_err() {
            break;
        }
    }
    let _ = tcp.write_all(b"0\r\n\r\n");
    let mut buf = [0u8; 4096];
    let n = tcp.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_as_csv_and_jsonl_equal_envshare_batch_results_byte_for_byte() {
    let mut appids = ids(0x30, 25);
    appids.sort();
    let rejected = appids[3].clone();
    let config = SandboxConfig {
        rejected_appids: [rejected.to_string()].into(),
        ..SandboxConfig::default()
    };
    let api = Api::start("api-results", config).await;
    let worker = api.stack.worker().await;
    let body = json!({"batch": "b-api-results", "chunk_size": 7, "pairs": pairs(&appids)});
    let (status, b) = Api::send(api.post("/api/v1/batches", &body)).await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    wait_completed(&api.stack, "b-api-results").await;

    for (format, args) in [
        ("csv", vec!["batch", "results", "b-api-results"]),
        (
            "jsonl",
            vec!["batch", "results", "b-api-results", "--format", "jsonl"],
        ),
        (
            "csv&state=failed",
            vec!["batch", "results", "b-api-results", "--state", "failed"],
        ),
    ] {
        let r = api
            .get(&format!(
                "/api/v1/batches/b-api-results/results?format={format}"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let served = r.bytes().await.unwrap();
        let cli = envshare(&api.stack, &args).await;
        assert!(cli.status.success(), "{cli:?}");
        assert_eq!(
            String::from_utf8_lossy(&served),
            String::from_utf8_lossy(&cli.stdout),
            "{format}"
        );
    }
    let r = api
        .get("/api/v1/batches/b-api-results/results?format=csv&state=failed")
        .send()
        .await
        .unwrap();
    let failed = r.text().await.unwrap();
    assert_eq!(failed.lines().count(), 2, "{failed}");
    assert!(failed.contains(rejected.as_str()), "{failed}");

    // JSON pages with a cursor walk every row once.
    let mut cursor: Option<u64> = Some(0);
    let mut seen = Vec::new();
    while let Some(c) = cursor {
        let (status, page) = Api::send(api.get(&format!(
            "/api/v1/batches/b-api-results/results?limit=10&cursor={c}"
        )))
        .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let rows = page["rows"].as_array().unwrap();
        assert!(rows.len() <= 10);
        seen.extend(rows.iter().map(|r| r["appid"].as_str().unwrap().to_owned()));
        cursor = page["next_cursor"].as_u64();
    }
    seen.sort();
    let want: Vec<String> = appids.iter().map(ToString::to_string).collect();
    assert_eq!(seen, want);

    // The batch, and the list, as `batch show --json` and `batch list --json` say.
    let (_, shown) = Api::send(api.get("/api/v1/batches/b-api-results")).await;
    let cli: Value = serde_json::from_slice(
        &envshare(&api.stack, &["batch", "show", "b-api-results", "--json"])
            .await
            .stdout,
    )
    .unwrap();
    assert_eq!(shown, cli);
    assert_eq!(
        (shown["accepted"].as_u64(), shown["failed"].as_u64()),
        (Some(24), Some(1))
    );
    let (_, list) = Api::send(api.get("/api/v1/batches?limit=5")).await;
    assert_eq!(list["batches"][0]["id"], "b-api-results", "{list}");
    assert!(list.get("next_offset").is_none(), "{list}");
    // One appid's shares.
    let (status, found) = Api::send(api.get(&format!("/api/v1/appids/{}", appids[0]))).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["shares"][0]["state"], "accepted", "{found}");
    assert_eq!(found["shares"][0]["batch_id"], "b-api-results", "{found}");
    worker.stop().await;
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_are_json_404s_and_malformed_ones_422s_never_500s() {
    let api = Api::start("api-404", SandboxConfig::default()).await;
    for path in [
        "/api/v1/batches/b-no-such-batch",
        "/api/v1/batches/b-no-such-batch/results",
        "/api/v1/batches/b-no-such-batch/results?format=csv",
        "/api/v1/jobs/01NOSUCHJOB0000000000000000",
        "/api/v1/appids/wx00000000000000ff",
        "/api/v1/status?batch=b-no-such-batch",
        "/api/v1/nothing/here",
    ] {
        let (status, b) = Api::send(api.get(path)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {b}");
        assert_eq!(b["error"]["code"], "not_found", "{path}: {b}");
    }
    for (path, field) in [
        ("/api/v1/batches/bad%20id", "id"),
        ("/api/v1/jobs/bad%20id", "id"),
        ("/api/v1/appids/wx12", "appid"),
        ("/api/v1/batches?limit=0", "limit"),
        ("/api/v1/batches?limit=many", "limit"),
        ("/api/v1/dead?offset=-1", "offset"),
        ("/api/v1/status?batch=a%20b", "batch"),
        ("/api/v1/events?from=yesterday", "from"),
    ] {
        let (status, b) = Api::send(api.get(path)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {b}");
        assert_eq!(b["error"]["field"], field, "{path}: {b}");
    }
    // A batch that exists, asked for a format or a state that does not.
    let (status, _) = Api::send(api.post(
        "/api/v1/batches",
        &json!({"batch": "b-404", "pairs": pairs(&ids(0x50, 1))}),
    ))
    .await;
    assert_eq!(status, StatusCode::CREATED);
    for (q, field) in [("format=xml", "format"), ("state=done", "state")] {
        let (status, b) = Api::send(api.get(&format!("/api/v1/batches/b-404/results?{q}"))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{q}: {b}");
        assert_eq!(b["error"]["field"], field, "{b}");
    }
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_jobs_are_listed_retried_and_purged() {
    let api = Api::start("api-dead", SandboxConfig::default()).await;
    let (status, _) = Api::send(api.post(
        "/api/v1/batches",
        &json!({"batch": "b-dead", "chunk_size": 2, "pairs": pairs(&ids(0x60, 4))}),
    ))
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let bury = || async {
        let Claim::Jobs(leases) = api
            .stack
            .queue
            .claim(&WorkerId::new("w-api"), 10)
            .await
            .unwrap()
        else {
            panic!("not paused")
        };
        let outcome = Outcome::Dead {
            reason: FailReason::PermanentError,
            errcode: Some(40097),
            errmsg: "invalid args".into(),
        };
        let n = leases.len();
        let acks = leases
            .into_iter()
            .map(|l| Ack::new(l, outcome.clone()))
            .collect();
        api.stack.queue.complete(acks).await.unwrap();
        n
    };
    assert_eq!(bury().await, 2);
    let (status, dead) = Api::send(api.get("/api/v1/dead")).await;
    assert_eq!(status, StatusCode::OK, "{dead}");
    let jobs = dead["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{dead}");
    assert_eq!(jobs[0]["errcode"], 40097, "{dead}");
    let first = jobs[0]["id"].as_str().unwrap().to_owned();
    let (_, job) = Api::send(api.get(&format!("/api/v1/jobs/{first}"))).await;
    assert_eq!(job["state"]["state"], "dead", "{job}");

    // Retry one by id: it is ready again, and no longer dead.
    let (status, out) = Api::send(api.post(
        "/api/v1/dead/retry",
        &json!({"ids": [first, "01NOTDEAD000000000000000000"]}),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out, json!({"count": 1, "not_dead": 1}));
    let (_, job) = Api::send(api.get(&format!("/api/v1/jobs/{first}"))).await;
    assert_eq!(job["state"]["state"], "ready", "{job}");
    assert_eq!(api.stack.queue.stats().await.unwrap().dead, 1);

    // It dies again; purge them all.
    assert_eq!(bury().await, 1);
    let (status, out) = Api::send(api.post("/api/v1/dead/purge", &json!({"all": true}))).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["count"], 2, "{out}");
    let (_, dead) = Api::send(api.get("/api/v1/dead")).await;
    assert_eq!(dead["jobs"].as_array().unwrap().len(), 0, "{dead}");
    // Purged, it is gone from the queue; its batch's results still tell how it ended.
    let (status, job) = Api::send(api.get(&format!("/api/v1/jobs/{first}"))).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["id"], first.as_str(), "{job}");
    assert!(job.get("job").is_none(), "the finished shape: {job}");
    let rows = job["rows"].as_array().unwrap();
    assert!(!rows.is_empty(), "{job}");
    for r in rows {
        assert_eq!(
            (&r["state"], &r["errcode"]),
            (&json!("failed"), &json!(40097)),
            "{r}"
        );
    }

    for (body, field) in [
        (json!({"ids": []}), "ids"),
        (json!({}), "ids"),
        (json!({"ids": ["bad id"]}), "ids[0]"),
        (json!({"ids": ["x"], "all": true}), "all"),
    ] {
        let (status, b) = Api::send(api.post("/api/v1/dead/retry", &body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {b}");
        assert_eq!(b["error"]["field"], field, "{b}");
    }
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_with_a_reason_as_the_command_line_does() {
    let api = Api::start("api-pause", SandboxConfig::default()).await;
    let (status, out) = Api::send(api.post(
        "/api/v1/pause",
        &json!({"reason": "  WeChat maintenance window  "}),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(
        out["paused"]["reason"], "WeChat maintenance window",
        "{out}"
    );
    assert_eq!(out["paused"]["until_resumed"], true, "{out}");
    let paused = api.stack.queue.pause_in_force().await.unwrap().unwrap();
    assert_eq!(paused.reason, "WeChat maintenance window");
    let (_, st) = Api::send(api.get("/api/v1/status")).await;
    assert_eq!(st["paused"]["reason"], "WeChat maintenance window", "{st}");
    // `envshare status` sees the same pause.
    let cli: Value =
        serde_json::from_slice(&envshare(&api.stack, &["status", "--json"]).await.stdout).unwrap();
    assert_eq!(cli["paused"], st["paused"]);

    let (status, out) = Api::send(api.post("/api/v1/resume", &json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(
        out["lifted"]["reason"], "WeChat maintenance window",
        "{out}"
    );
    assert!(api.stack.queue.pause_in_force().await.unwrap().is_none());

    // A pause with an end.
    let until = envshare::clock::iso8601(api.stack.queue.now_ms() + 3_600_000);
    let (status, out) = Api::send(api.post(
        "/api/v1/pause",
        &json!({"reason": "an hour", "until": until}),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["paused"]["until_resumed"], false, "{out}");
    let (_, _) = Api::send(api.post("/api/v1/resume", &json!({}))).await;

    for (body, field) in [
        (json!({"reason": "a\nb"}), "reason"),
        (json!({"reason": " "}), "reason"),
        (json!({}), "reason"),
        (json!({"reason": "x", "until": "tomorrow"}), "until"),
    ] {
        let (status, b) = Api::send(api.post("/api/v1/pause", &body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {b}");
        assert_eq!(b["error"]["field"], field, "{b}");
    }
    assert!(api.stack.queue.pause_in_force().await.unwrap().is_none());
    // An end already past pauses nothing.
    let (status, out) = Api::send(api.post(
        "/api/v1/pause",
        &json!({"reason": "x", "until": "2001-01-01T00:00:00Z"}),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert!(out["paused"].is_null(), "{out}");
    assert!(api.stack.queue.pause_in_force().await.unwrap().is_none());
    api.stop().await;
}

/// Reads SSE messages from `r` until `n` have come (or the time is up): `(id, event, data)`.
async fn sse_messages(r: &mut reqwest::Response, n: usize) -> Vec<(String, String, Value)> {
    let mut buf = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while out.len() < n {
        let chunk = tokio::time::timeout_at(deadline, r.chunk())
            .await
            .expect("events come in time")
            .unwrap()
            .expect("the stream stays open");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let msg: String = buf.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (String::new(), String::new(), String::new());
            for line in msg.lines() {
                if let Some(v) = line.strip_prefix("id: ").or(line.strip_prefix("id:")) {
                    id = v.to_owned();
                } else if let Some(v) = line.strip_prefix("event: ").or(line.strip_prefix("event:"))
                {
                    event = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ").or(line.strip_prefix("data:")) {
                    data.push_str(v);
                }
            }
            if !id.is_empty() {
                out.push((id, event, serde_json::from_str(&data).unwrap()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_delivers_events_and_resumes_after_last_event_id() {
    let api = Api::start("api-sse", SandboxConfig::default()).await;
    let mut live = api.get("/api/v1/events").send().await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(live.headers()["content-type"], "text/event-stream");
    let worker = api.stack.worker().await;
    let (status, _) = Api::send(api.post(
        "/api/v1/batches",
        &json!({"batch": "b-sse", "chunk_size": 1, "pairs": pairs(&ids(0x70, 3))}),
    ))
    .await;
    assert_eq!(status, StatusCode::CREATED);
    // Three accepted appids and the batch's completion, in stream order.
    let got = sse_messages(&mut live, 4).await;
    let types: Vec<&str> = got.iter().map(|(_, t, _)| t.as_str()).collect();
    assert_eq!(
        types.iter().filter(|t| **t == "share.accepted").count(),
        3,
        "{types:?}"
    );
    assert!(types.contains(&"batch.completed"), "{types:?}");
    for (_, t, data) in &got {
        assert_eq!(data["type"], t.as_str());
        assert_eq!(data["batch_id"], "b-sse");
    }
    drop(live);

    // Reconnecting after the first event gets the rest, starting with the second.
    let mut resumed = api
        .get("/api/v1/events")
        .header("Last-Event-ID", &got[0].0)
        .send()
        .await
        .unwrap();
    let again = sse_messages(&mut resumed, 3).await;
    let ids_again: Vec<&str> = again.iter().map(|(id, _, _)| id.as_str()).collect();
    let ids_first: Vec<&str> = got[1..].iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids_again, ids_first);
    drop(resumed);

    let (status, b) = Api::send(
        api.get("/api/v1/events")
            .header("Last-Event-ID", "yesterday"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{b}");
    worker.stop().await;
    // An open stream does not hold the server up when it stops.
    let _open = api.get("/api/v1/events").send().await.unwrap();
    let started = std::time::Instant::now();
    api.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_requests_are_counted_by_route_template_and_the_openapi_document_lists_every_route() {
    let api = Api::start("api-metrics", SandboxConfig::default()).await;
    for id in ["b-one", "b-two", "b-three"] {
        let (status, _) = Api::send(api.get(&format!("/api/v1/batches/{id}"))).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let metrics = api
        .http
        .get(api.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("envshare_http_requests_total")
                && l.contains("route=\"/api/v1/batches/{id}\"")
                && l.contains("status=\"404\"")
        })
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(line.ends_with(" 3"), "{line}");
    assert!(!metrics.contains("b-one"), "raw ids make no series");

    let doc: Value = api
        .http
        .get(api.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/batches", "post"),
        ("/api/v1/batches", "get"),
        ("/api/v1/batches/{id}", "get"),
        ("/api/v1/batches/{id}/results", "get"),
        ("/api/v1/jobs/{id}", "get"),
        ("/api/v1/appids/{appid}", "get"),
        ("/api/v1/dead", "get"),
        ("/api/v1/dead/retry", "post"),
        ("/api/v1/dead/purge", "post"),
        ("/api/v1/pause", "post"),
        ("/api/v1/resume", "post"),
        ("/api/v1/status", "get"),
        ("/api/v1/events", "get"),
    ] {
        assert!(paths[path].get(method).is_some(), "{method} {path} missing");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    api.stop().await;
}
