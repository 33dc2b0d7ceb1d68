//! Token sources beside an existing token service (docs/wechat-platform.md, "Running beside an
//! existing token service"): `redis` mode reads the key the platform's SDK writes, `http` mode
//! asks a token service, neither ever calls `api_component_token`; and the verify ticket push
//! request (`envshare ticket request`, and the workers' own) is made at most once per 10 minutes.
//!
//! The sandbox stands in for WeChat, the test for the platform's SDK: it takes tokens from
//! [`SandboxHandle::issue_token`](envshare::sandbox::SandboxHandle::issue_token) (no HTTP call,
//! so the sandbox's `api_component_token` counter stays at what envshare did) and writes them
//! under the SDK's key.

use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use envshare::events::EventKind;
use envshare::sandbox::{SandboxConfig, SandboxHandle};
use envshare::store::ExternalTokenKey;
use envshare::store::conn::RedisConn;
use envshare::token::{
    ExternalTokenSettings, RedisTokenProvider, TicketPush, TokenError, TokenMode, TokenProvider,
    sha256_hex,
};
use envshare::wechat::{Endpoint, WechatClient};
use envshare::worker::WorkerOptions;
use envshare_tests::{ChildProcess, TestRedis, TestStack, appid, bin_path, wait_until};

/// This file's appids (see `appid`).
const APPID_BASE: u64 = 0x70_0000;
const WAIT: Duration = Duration::from_secs(30);

/// The key WxJava's Redis config storage writes, with a key prefix of this test's own.
fn wxjava_key(stack: &TestStack) -> String {
    format!(
        "{}:wechat_component_access_token:{}",
        stack.name(),
        SandboxConfig::COMPONENT_APPID
    )
}

async fn sdk_key(key: &str) -> ExternalTokenKey {
    let conn: RedisConn = TestRedis::shared().connection_manager().await.into();
    ExternalTokenKey::new(conn, key)
}

/// The attempts of every accepted share so far.
async fn accepted_attempts(stack: &TestStack) -> Vec<u32> {
    stack
        .events()
        .await
        .iter()
        .filter_map(|e| match e {
            EventKind::ShareAccepted { attempts, .. } => Some(*attempts),
            _ => None,
        })
        .collect()
}

/// Accepted share events so far.
async fn accepted(stack: &TestStack) -> usize {
    stack
        .events()
        .await
        .iter()
        .filter(|e| matches!(e, EventKind::ShareAccepted { .. }))
        .count()
}

async fn wait_accepted(stack: &TestStack, n: usize) {
    let ok = wait_until(WAIT, || async { accepted(stack).await >= n }).await;
    assert!(
        ok,
        "expected {n} accepted shares: {:?}",
        stack.events().await
    );
}

/// The environment of a real worker on `stack`'s queue, plus `extra`.
fn worker_env(stack: &TestStack, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("ENVSHARE_REDIS_URL", TestRedis::shared().url().to_owned()),
        ("ENVSHARE_QUEUE", stack.name().to_string()),
        ("ENVSHARE_WECHAT_BASE_URL", stack.sandbox.url().to_owned()),
        ("ENVSHARE_HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("ENVSHARE_BACKOFF_BASE_MS", "20".to_owned()),
        ("ENVSHARE_BACKOFF_MAX_MS", "100".to_owned()),
        // Everything a worker logs, so a token in any line would show.
        ("ENVSHARE_LOG", "trace".to_owned()),
    ];
    env.extend(extra.iter().cloned());
    env
}

/// Stops `child` with SIGTERM and returns its stdout and stderr together.
async fn stop(mut child: ChildProcess) -> String {
    child.sigterm();
    let status = child.wait_exit(WAIT).await.expect("the worker exits");
    let (stdout, stderr) = child.output();
    assert_eq!(status.code(), Some(0), "stderr:\n{stderr}");
    format!("{stdout}\n{stderr}")
}

fn assert_absent(log: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!log.contains(s), "the log holds a secret ({s}):\n{log}");
    }
}

/// Sandbox calls that were answered 42001 cannot be seen directly; what can: share calls beyond
/// the jobs, i.e. retries after a token error.
fn share_calls(sandbox: &SandboxHandle) -> u64 {
    sandbox.calls(Endpoint::ShareEnv)
}

#[tokio::test]
async fn a_redis_mode_worker_shares_with_the_sdk_token_and_picks_up_its_rotation() {
    let stack = TestStack::start("tokensrc-redis", SandboxConfig::default(), |_| {}).await;
    let key_name = wxjava_key(&stack);
    let key = sdk_key(&key_name).await;
    // WxJava: the token as plain text, TTL expires_in - 200 s.
    let first = stack.sandbox.issue_token();
    key.write(&first, Some(7_000_000)).await.unwrap();
    stack
        .enqueue(
            "prod-tokensrc",
            &[vec![appid(APPID_BASE + 1)], vec![appid(APPID_BASE + 2)]],
        )
        .await;
    let env = worker_env(
        &stack,
        &[
            ("ENVSHARE_TOKEN_SOURCE", "redis".to_owned()),
            ("ENVSHARE_TOKEN_REDIS_KEY", key_name.clone()),
        ],
    );
    let child = ChildProcess::spawn(&bin_path("envshare-worker"), &[], &env);
    wait_accepted(&stack, 2).await;
    assert_eq!(share_calls(&stack.sandbox), 2);

    // WeChat expires the token (42001); the platform's service replaces it 1.5 s later, this
    // time the way silenceper/wechat writes it (a JSON string).
    stack.sandbox.expire_tokens();
    stack
        .enqueue("prod-tokensrc", &[vec![appid(APPID_BASE + 3)]])
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = stack.sandbox.issue_token();
    assert_ne!(first, second);
    key.write(&format!("\"{second}\""), Some(5_700_000))
        .await
        .unwrap();
    wait_accepted(&stack, 3).await;

    // The rejected call and its repeat with the rotated token, in one attempt.
    assert_eq!(share_calls(&stack.sandbox), 4);
    assert_eq!(accepted_attempts(&stack).await, [1, 1, 1]);
    assert_eq!(stack.sandbox.calls(Endpoint::ComponentToken), 0);
    assert_eq!(stack.sandbox.token_fetches(), 0);
    let failed = stack
        .events()
        .await
        .iter()
        .filter(|e| matches!(e, EventKind::ShareFailed { .. }))
        .count();
    assert_eq!(failed, 0);
    let log = stop(child).await;
    assert_absent(&log, &[&first, &second]);
}

/// A token service for the `http` source: checks the bearer token, hands out its current token,
/// and on `?stale=` naming the current token moves on to the next one.
#[derive(Clone)]
struct TokenService {
    current: Arc<Mutex<String>>,
    next: Arc<Mutex<Option<String>>>,
    /// The `stale` parameter of every request (`None` for a plain `GET`).
    requests: Arc<Mutex<Vec<Option<String>>>>,
    auth: &'static str,
}

async fn serve_token(
    State(s): State<TokenService>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let stale = q.get("stale").cloned();
    let bearer = format!("Bearer {}", s.auth);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(bearer.as_str()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    s.requests.lock().unwrap().push(stale.clone());
    let mut current = s.current.lock().unwrap();
    if stale.as_deref() == Some(sha256_hex(&current).as_str())
        && let Some(next) = s.next.lock().unwrap().take()
    {
        *current = next;
    }
    axum::Json(serde_json::json!({"component_access_token": *current, "expires_in": 7200}))
        .into_response()
}

async fn start_token_service(service: TokenService) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/component-token", axum::routing::get(serve_token))
        .with_state(service);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/component-token")
}

#[tokio::test]
async fn an_http_mode_worker_asks_again_with_stale_after_a_token_error() {
    let stack = TestStack::start("tokensrc-http", SandboxConfig::default(), |_| {}).await;
    let first = stack.sandbox.issue_token();
    let service = TokenService {
        current: Arc::new(Mutex::new(first.clone())),
        next: Arc::new(Mutex::new(None)),
        requests: Arc::new(Mutex::new(Vec::new())),
        auth: "bearer-tokensrc-5e1f",
    };
    let url = start_token_service(service.clone()).await;
    stack
        .enqueue("prod-tokensrc", &[vec![appid(APPID_BASE + 11)]])
        .await;
    let env = worker_env(
        &stack,
        &[
            ("ENVSHARE_TOKEN_SOURCE", "http".to_owned()),
            ("ENVSHARE_TOKEN_URL", url),
            ("ENVSHARE_TOKEN_URL_AUTH", service.auth.to_owned()),
        ],
    );
    let child = ChildProcess::spawn(&bin_path("envshare-worker"), &[], &env);
    wait_accepted(&stack, 1).await;
    assert_eq!(*service.requests.lock().unwrap(), vec![None]);

    // Some other fetcher of the platform got a new token: WeChat answers 40014 to the old one,
    // and the service hands out the new one only when told the old one is stale.
    let second = stack.sandbox.issue_token();
    *service.next.lock().unwrap() = Some(second.clone());
    stack
        .enqueue("prod-tokensrc", &[vec![appid(APPID_BASE + 12)]])
        .await;
    wait_accepted(&stack, 2).await;
    assert_eq!(*service.current.lock().unwrap(), second);
    assert_eq!(
        *service.requests.lock().unwrap(),
        vec![None, Some(sha256_hex(&first))],
        "one plain GET, then one with ?stale= naming the rejected token"
    );
    assert_eq!(share_calls(&stack.sandbox), 3);
    assert_eq!(accepted_attempts(&stack).await, [1, 1]);
    assert_eq!(stack.sandbox.calls(Endpoint::ComponentToken), 0);
    let log = stop(child).await;
    assert_absent(&log, &[&first, &second, service.auth]);
}

/// A `redis` source reading `key` on the shared Redis, with quick polls.
async fn provider(key: &ExternalTokenKey, stale_wait: Duration) -> RedisTokenProvider {
    let settings = ExternalTokenSettings {
        stale_wait,
        first_poll: Duration::from_millis(20),
        max_poll: Duration::from_millis(100),
        ..ExternalTokenSettings::default()
    };
    let conn: RedisConn = TestRedis::shared().connection_manager().await.into();
    RedisTokenProvider::new(conn, key.key(), settings)
}

fn now_ms() -> u64 {
    use envshare::clock::Clock as _;
    envshare::clock::SystemClock.now_ms()
}

#[tokio::test]
async fn the_redis_source_reads_plain_json_string_and_json_object_values() {
    let name = format!(
        "{}:component_access_token_{}",
        envshare_tests::unique_queue("tokensrc-enc"),
        SandboxConfig::COMPONENT_APPID
    );
    let key = sdk_key(&name).await;
    let cases = [
        ("tok-plain-1", "tok-plain-1".to_owned()),
        ("tok-json-2", "\"tok-json-2\"".to_owned()),
        (
            "tok-object-3",
            r#"{"component_access_token":"tok-object-3","expires_in":7200}"#.to_owned(),
        ),
    ];
    for (want, stored) in cases {
        key.write(&stored, Some(60_000)).await.unwrap();
        // A fresh provider each time: no in-process copy.
        let p = provider(&key, Duration::from_millis(300)).await;
        let t = p.token().await.unwrap();
        assert_eq!(t.expose(), want, "{stored}");
        let left = t.expires_at_ms().unwrap() - now_ms();
        assert!(
            (50_000..=60_000).contains(&left),
            "expiry from the TTL: {left}"
        );
        let st = p.status().await.unwrap();
        assert_eq!(st.mode, TokenMode::Redis);
        assert!(st.cached);
    }
    // An object's own expiry wins when it is earlier than the key's TTL.
    let soon = now_ms() / 1000 + 30;
    key.write(
        &format!(r#"{{"component_access_token":"tok-obj-exp","expires_at":{soon}}}"#),
        Some(60_000),
    )
    .await
    .unwrap();
    let t = provider(&key, Duration::from_millis(300))
        .await
        .token()
        .await
        .unwrap();
    assert_eq!(t.expires_at_ms(), Some(soon * 1000));

    // Unreadable values and a missing key are misconfiguration that names the key, never the
    // value.
    key.write("{\"access_token\":\"LEAK-me-1\"}", None)
        .await
        .unwrap();
    match provider(&key, Duration::from_millis(300))
        .await
        .token()
        .await
    {
        Err(TokenError::Misconfigured { hint, .. }) => {
            assert!(hint.contains(&name), "{hint}");
            assert!(hint.contains("component_access_token"), "{hint}");
            assert!(!hint.contains("LEAK-me-1"), "{hint}");
        }
        other => panic!("expected a misconfiguration, got {other:?}"),
    }
    let missing = sdk_key(&format!("{name}:missing")).await;
    match provider(&missing, Duration::from_millis(300))
        .await
        .token()
        .await
    {
        Err(TokenError::Misconfigured { hint, .. }) => {
            assert!(hint.contains("ENVSHARE_TOKEN_REDIS_KEY"), "{hint}");
            assert!(hint.contains(&format!("{name}:missing")), "{hint}");
        }
        other => panic!("expected a misconfiguration, got {other:?}"),
    }
}

#[tokio::test]
async fn after_a_rejection_the_redis_source_waits_for_a_new_value_and_gives_up_in_time() {
    let name = format!(
        "{}:sdk-token",
        envshare_tests::unique_queue("tokensrc-wait")
    );
    let key = sdk_key(&name).await;
    key.write("tok-old-1", Some(60_000)).await.unwrap();
    let p = provider(&key, Duration::from_millis(800)).await;
    let old = p.token().await.unwrap();
    assert!(p.invalidate(&old).await.unwrap());

    // Nobody replaces it: a transient error after the bounded wait, not before.
    let started = Instant::now();
    let err = p.token().await.expect_err("still the rejected token");
    assert!(matches!(err, TokenError::Transient { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    assert!(!err.to_string().contains("tok-old-1"), "{err}");

    // The platform's service deletes and rewrites the key meanwhile: the new value is taken.
    let writer = {
        let key = key.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            // Gone for a moment (expired), as while the service replaces it.
            key.write("tok-old-1", Some(1)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(150)).await;
            key.write("tok-new-2", Some(60_000)).await.unwrap();
        })
    };
    let fresh = p.token().await.expect("the rotated token");
    assert_eq!(fresh.expose(), "tok-new-2");
    writer.await.unwrap();
    assert_eq!(p.counters().invalidations, 1);
}

/// Runs `envshare ARGS` with `env` (and PATH only).
fn envshare(args: &[&str], env: &[(&str, String)]) -> Output {
    Command::new(bin_path("envshare"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .expect("envshare runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_request_calls_wechat_once_per_ten_minutes_however_many_ask() {
    let stack = TestStack::start("tokensrc-ticket", SandboxConfig::default(), |_| {}).await;
    let env = vec![
        ("ENVSHARE_REDIS_URL", TestRedis::shared().url().to_owned()),
        ("ENVSHARE_QUEUE", stack.name().to_string()),
        ("ENVSHARE_WECHAT_BASE_URL", stack.sandbox.url().to_owned()),
        (
            "ENVSHARE_COMPONENT_APPID",
            SandboxConfig::COMPONENT_APPID.to_owned(),
        ),
        (
            "ENVSHARE_COMPONENT_APPSECRET",
            SandboxConfig::COMPONENT_SECRET.to_owned(),
        ),
    ];
    // Two operators at once.
    let (a, b) = tokio::join!(
        tokio::task::spawn_blocking({
            let env = env.clone();
            move || envshare(&["ticket", "request"], &env)
        }),
        tokio::task::spawn_blocking({
            let env = env.clone();
            move || envshare(&["ticket", "request"], &env)
        }),
    );
    let outs = [a.unwrap(), b.unwrap()];
    let stdouts: Vec<String> = outs
        .iter()
        .map(|o| {
            assert!(
                o.status.success(),
                "stderr: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            String::from_utf8_lossy(&o.stdout).into_owned()
        })
        .collect();
    assert_eq!(stack.sandbox.calls(Endpoint::StartPushTicket), 1);
    assert_eq!(
        stdouts
            .iter()
            .filter(|s| s.contains("asked WeChat"))
            .count(),
        1,
        "{stdouts:?}"
    );
    assert_eq!(
        stdouts
            .iter()
            .filter(|s| s.contains("already asked"))
            .count(),
        1,
        "{stdouts:?}"
    );
    for o in &outs {
        assert!(!String::from_utf8_lossy(&o.stdout).contains(SandboxConfig::COMPONENT_SECRET));
        assert!(!String::from_utf8_lossy(&o.stderr).contains(SandboxConfig::COMPONENT_SECRET));
    }

    // The library call of the workers shares the claim.
    let client = WechatClient::new(stack.sandbox.url(), Duration::from_secs(5)).unwrap();
    let again = envshare::token::request_ticket_push(
        &stack.queue.token_store(),
        &client,
        SandboxConfig::COMPONENT_APPID,
        &SandboxConfig::COMPONENT_SECRET.into(),
    )
    .await
    .unwrap();
    match again {
        TicketPush::Skipped { retry_in_ms } => {
            let ms = retry_in_ms.expect("the claim has a TTL");
            assert!(ms > 590_000 && ms <= 600_000, "{ms}");
        }
        TicketPush::Requested => panic!("a second request within 10 minutes"),
    }
    assert_eq!(stack.sandbox.calls(Endpoint::StartPushTicket), 1);

    // Without the credentials: bad input, exit 2, naming the settings.
    let out = envshare(&["ticket", "request"], &env[..3]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ENVSHARE_COMPONENT_APPSECRET"), "{stderr}");
}

#[tokio::test]
async fn a_component_worker_asks_for_a_ticket_push_once_when_none_is_stored() {
    let stack = TestStack::start("tokensrc-push", SandboxConfig::default(), |s| {
        s.access_token = None;
        s.component_appid = Some(envshare::AppId::parse(SandboxConfig::COMPONENT_APPID).unwrap());
        s.component_appsecret = Some(SandboxConfig::COMPONENT_SECRET.into());
    })
    .await;
    stack
        .enqueue("prod-tokensrc", &[vec![appid(APPID_BASE + 21)]])
        .await;
    let options = WorkerOptions {
        misconfig_recheck: Some(Duration::from_millis(200)),
        ..WorkerOptions::default()
    };
    let worker = stack.worker_with(stack.settings.clone(), options).await;
    assert!(stack.wait_paused("component_verify_ticket", WAIT).await);
    let asked = wait_until(WAIT, || async {
        stack.sandbox.calls(Endpoint::StartPushTicket) == 1
    })
    .await;
    assert!(asked, "the worker asked WeChat to push a ticket");
    // Several re-checks later, still one request.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(stack.sandbox.calls(Endpoint::StartPushTicket), 1);

    // The ticket arrives (as the callback stores it): the worker shares.
    stack.set_ticket(SandboxConfig::VERIFY_TICKET).await;
    wait_accepted(&stack, 1).await;
    assert_eq!(stack.sandbox.calls(Endpoint::StartPushTicket), 1);
    worker.stop().await;
}

#[tokio::test]
async fn a_component_worker_asks_for_a_push_when_the_stored_ticket_is_older_than_12_hours() {
    let stack = TestStack::start("tokensrc-old", SandboxConfig::default(), |s| {
        s.access_token = None;
        s.component_appid = Some(envshare::AppId::parse(SandboxConfig::COMPONENT_APPID).unwrap());
        s.component_appsecret = Some(SandboxConfig::COMPONENT_SECRET.into());
    })
    .await;
    let thirteen_hours_ago = stack.queue.now_ms() - 13 * 3_600_000;
    stack
        .queue
        .token_store()
        .set_ticket(SandboxConfig::VERIFY_TICKET, thirteen_hours_ago)
        .await
        .unwrap();
    stack
        .enqueue("prod-tokensrc", &[vec![appid(APPID_BASE + 31)]])
        .await;
    let worker = stack.worker().await;
    // The ticket still works at WeChat here, so the share goes on; the push was asked for.
    wait_accepted(&stack, 1).await;
    let asked = wait_until(WAIT, || async {
        stack.sandbox.calls(Endpoint::StartPushTicket) == 1
    })
    .await;
    assert!(asked, "the worker asked WeChat to push a ticket");
    assert_eq!(stack.sandbox.token_fetches(), 1);
    worker.stop().await;
}

#[tokio::test]
async fn status_shows_the_token_source_and_expiry_and_a_bad_source_stops_the_worker() {
    let stack = TestStack::start("tokensrc-status", SandboxConfig::default(), |_| {}).await;
    let key_name = wxjava_key(&stack);
    let token = stack.sandbox.issue_token();
    sdk_key(&key_name)
        .await
        .write(&token, Some(3_600_000))
        .await
        .unwrap();
    let env = vec![
        ("ENVSHARE_REDIS_URL", TestRedis::shared().url().to_owned()),
        ("ENVSHARE_QUEUE", stack.name().to_string()),
        ("ENVSHARE_TOKEN_SOURCE", "redis".to_owned()),
        ("ENVSHARE_TOKEN_REDIS_KEY", key_name.clone()),
    ];
    let out = tokio::task::spawn_blocking({
        let env = env.clone();
        move || envshare(&["status"], &env)
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("token (redis): present, expires in"),
        "{stdout}"
    );
    assert!(!stdout.contains(&token), "{stdout}");
    let out = tokio::task::spawn_blocking({
        let env = env.clone();
        move || envshare(&["status", "--json"], &env)
    })
    .await
    .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["token"]["source"], "redis");
    let left = json["token"]["expires_in_ms"].as_u64().unwrap();
    assert!((3_500_000..=3_600_000).contains(&left), "{json}");

    // redis without its key: the worker refuses to start, naming the settings, exit 2.
    let mut child = ChildProcess::spawn(
        &bin_path("envshare-worker"),
        &[],
        &[
            ("ENVSHARE_REDIS_URL", TestRedis::shared().url().to_owned()),
            ("ENVSHARE_TOKEN_SOURCE", "redis".to_owned()),
        ],
    );
    let status = child.wait_exit(WAIT).await.expect("exits at once");
    let (_, stderr) = child.output();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("ENVSHARE_TOKEN_SOURCE"), "{stderr}");
    assert!(stderr.contains("ENVSHARE_TOKEN_REDIS_KEY"), "{stderr}");
}

#[tokio::test]
async fn the_redis_source_reads_a_key_on_its_own_redis_url() {
    let name = format!("{}:sdk-token", envshare_tests::unique_queue("tokensrc-url"));
    sdk_key(&name)
        .await
        .write("tok-elsewhere-1", Some(60_000))
        .await
        .unwrap();
    let p = RedisTokenProvider::on_url(
        TestRedis::shared().url(),
        name.clone(),
        ExternalTokenSettings::default(),
    );
    assert_eq!(p.token().await.unwrap().expose(), "tok-elsewhere-1");

    // An unreachable Redis is transient, and the message hides the URL's password.
    let port = envshare_tests::free_port();
    let p = RedisTokenProvider::on_url(
        format!("redis://:pw-unreachable-9@127.0.0.1:{port}"),
        name,
        ExternalTokenSettings::default(),
    );
    let err = p.token().await.expect_err("nothing listens there");
    assert!(err.is_retryable(), "{err:?}");
    assert!(
        err.to_string().contains("ENVSHARE_TOKEN_REDIS_URL"),
        "{err}"
    );
    assert!(
        !format!("{err} {err:?}").contains("pw-unreachable-9"),
        "{err:?}"
    );
}

#[tokio::test]
async fn http_source_errors_name_the_status_never_the_body() {
    use envshare::token::HttpTokenProvider;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route(
            "/unauthorized",
            axum::routing::get(|| async { (StatusCode::UNAUTHORIZED, "tok-LEAK-401") }),
        )
        .route(
            "/broken",
            axum::routing::get(|| async { (StatusCode::BAD_GATEWAY, "tok-LEAK-502") }),
        )
        .route(
            "/not-the-json",
            axum::routing::get(|| async { r#"{"access_token":"tok-LEAK-json"}"# }),
        )
        .route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                r#"{"component_access_token":"tok-LEAK-slow","expires_in":7200}"#
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let settings = ExternalTokenSettings {
        request_timeout: Duration::from_millis(300),
        ..ExternalTokenSettings::default()
    };
    let ask = |path: &str| {
        HttpTokenProvider::new(
            &format!("{base}{path}?secret-query=q-LEAK"),
            Some("bearer-LEAK".into()),
            settings.clone(),
        )
        .unwrap()
    };
    let cases = [
        ("/unauthorized", "HTTP 401", false),
        ("/broken", "HTTP 502", true),
        ("/not-the-json", "lacks component_access_token", true),
        ("/slow", "no answer", true),
    ];
    for (path, says, retryable) in cases {
        let err = ask(path).token().await.expect_err(path);
        let text = format!("{err} {err:?}");
        assert!(text.contains(says), "{path}: {text}");
        assert_eq!(err.is_retryable(), retryable, "{path}: {text}");
        assert!(!text.contains("LEAK"), "{path}: {text}");
    }
    let err = ask("/unauthorized").token().await.unwrap_err();
    assert!(err.to_string().contains("ENVSHARE_TOKEN_URL_AUTH"), "{err}");
}
