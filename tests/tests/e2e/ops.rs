//! Tests: what an operator's platform sees of a worker. `/readyz` while the queue is paused and
//! while Redis is down, next to `/metrics`, which must stay scrapeable in both cases.

use std::time::Duration;

use envshare::AppId;
use envshare::sandbox::SandboxConfig;
use envshare::worker::WorkerOptions;
use envshare_tests::{TestRedis, TestStack, appid, wait_until};
use secrecy::SecretString;
use serde_json::Value;

const TOKEN: &str = "static-token-ops-1a2b";
const SECRET: &str = "secret-ops-3c4d";
const TICKET: &str = "ticket-ops-5e6f";
const WAIT: Duration = Duration::from_secs(20);

async fn start_stack(prefix: &str) -> TestStack {
    let config = SandboxConfig {
        static_tokens: vec![TOKEN.into()],
        component_secret: SECRET.into(),
        verify_ticket: TICKET.into(),
        ..SandboxConfig::default()
    };
    TestStack::start(prefix, config, |_| {}).await
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.expect("GET answers");
    let status = r.status().as_u16();
    (status, r.text().await.expect("a body"))
}

/// `/readyz` as (status, JSON body).
async fn readyz(base: &str) -> (u16, Value) {
    let (status, body) = get(&format!("{base}/readyz")).await;
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, json)
}

fn detail<'a>(body: &'a Value, check: &str) -> &'a str {
    body["checks"][check]["detail"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_quota_pause_keeps_the_worker_ready_and_scrapeable_and_readyz_says_paused() {
    let stack = start_stack("ops-readyz-quota").await;
    let worker = stack.worker().await;
    let base = format!("http://{}", worker.http_addr());

    let (status, body) = readyz(&base).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(detail(&body, "pause"), "not paused", "{body}");

    let until = stack.queue.now_ms() + 3_600_000;
    stack
        .queue
        .pause_until(until, "45009 daily quota spent")
        .await
        .unwrap();
    let (status, body) = readyz(&base).await;
    assert_eq!(
        status, 200,
        "a pause must not make the worker unready: {body}"
    );
    assert_eq!(body["ready"], true, "{body}");
    assert_eq!(body["checks"]["pause"]["ok"], true, "{body}");
    let pause = detail(&body, "pause");
    assert!(
        pause.starts_with("paused: 45009 daily quota spent (for ") && pause.ends_with(" s more)"),
        "{body}"
    );
    let (status, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("\nenvshare_queue_paused 1\n"),
        "the pause is visible to Prometheus:\n{metrics}"
    );

    stack.queue.resume().await.unwrap();
    let (status, body) = readyz(&base).await;
    assert_eq!(
        (status, detail(&body, "pause")),
        (200, "not paused"),
        "{body}"
    );
    worker.stop().await;
}

#[tokio::test]
async fn a_ticket_pause_keeps_the_worker_ready_with_the_reason_in_readyz() {
    let mut stack = start_stack("ops-readyz-ticket").await;
    stack.settings.access_token = None;
    stack.settings.component_appid = Some(AppId::parse(SandboxConfig::COMPONENT_APPID).unwrap());
    stack.settings.component_appsecret = Some(SecretString::from(SECRET));
    stack.set_ticket("ticket-ops-wrong").await;
    let options = WorkerOptions {
        misconfig_recheck: Some(Duration::from_secs(60)),
        ..WorkerOptions::default()
    };
    let worker = stack.worker_with(stack.settings.clone(), options).await;
    stack.enqueue("prod-ops", &[vec![appid(1)]]).await;
    assert!(stack.wait_paused("61005", WAIT).await, "the ticket pauses");

    let base = format!("http://{}", worker.http_addr());
    let (status, body) = readyz(&base).await;
    assert_eq!(status, 200, "{body}");
    assert!(detail(&body, "token").starts_with("paused: "), "{body}");
    assert!(detail(&body, "pause").contains("61005"), "{body}");
    assert!(!body.to_string().contains(SECRET), "{body}");
    let (status, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("\nenvshare_queue_paused 1\n"), "{metrics}");
    worker.stop().await;
}

#[tokio::test]
async fn redis_down_makes_the_worker_unready_but_metrics_still_answer() {
    let redis = TestRedis::private();
    let mut stack = start_stack("ops-readyz-down").await;
    stack.settings.redis_url = redis.url().to_owned();
    let worker = stack.worker().await;
    let base = format!("http://{}", worker.http_addr());
    assert_eq!(readyz(&base).await.0, 200);

    redis.kill();
    assert!(
        wait_until(WAIT, || async { readyz(&base).await.0 == 503 }).await,
        "not ready while Redis is down"
    );
    let (_, body) = readyz(&base).await;
    assert_eq!(body["checks"]["redis"]["ok"], false, "{body}");
    let (status, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200, "metrics answer without Redis");
    assert!(metrics.contains("envshare_redis_errors_total"), "{metrics}");

    redis.restart();
    assert!(
        wait_until(WAIT, || async { readyz(&base).await.0 == 200 }).await,
        "ready again once Redis is back"
    );
    worker.stop().await;
}
