//! Tests: worker. The shared component token (`envshare::token`) and the global rate limit
//! (`envshare::throttle`) against a real Redis and the sandbox over real HTTP.
//!
//! Token tests are named `token_…`, rate limit tests `rate_limit_…`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use envshare::clock::{Clock, ManualClock, SystemClock};
use envshare::sandbox::{Latency, Sandbox, SandboxConfig, SandboxHandle};
use envshare::store::{Keys, TokenStore};
use envshare::throttle::RateLimiter;
use envshare::token::{
    self, AccessToken, ComponentTokenProvider, ComponentTokenSettings, TokenError, TokenProvider,
};
use envshare::wechat::WechatClient;
use envshare_tests::{TestRedis, unique_queue};
use redis::aio::ConnectionManager;
use secrecy::SecretString;

/// Recognisable credentials: the leak checks search every message for them.
const SECRET: &str = "secret-LEAKCHECK-0c1d2e3f";
const TICKET: &str = "ticket-LEAKCHECK-9a8b7c6d";
const WRONG_TICKET: &str = "ticket-LEAKCHECK-stale-11";

/// A sandbox, a fresh queue's keys and a Redis connection for one token test.
struct TokenStack {
    sandbox: SandboxHandle,
    keys: Keys,
    conn: ConnectionManager,
}

impl TokenStack {
    async fn start(name: &str, config: SandboxConfig) -> Self {
        let sandbox = Sandbox::start(SandboxConfig {
            component_secret: SECRET.into(),
            verify_ticket: TICKET.into(),
            ..config
        })
        .await
        .expect("sandbox starts");
        let keys = Keys::new(&unique_queue(name));
        let conn = TestRedis::shared().connection_manager().await;
        Self {
            sandbox,
            keys,
            conn,
        }
    }

    async fn set_ticket(&self, ticket: &str) {
        TokenStore::new(self.conn.clone(), &self.keys)
            .set_ticket(ticket, SystemClock.now_ms())
            .await
            .unwrap();
    }

    fn provider_with(
        &self,
        secret: &str,
        settings: ComponentTokenSettings,
    ) -> Arc<ComponentTokenProvider> {
        let client =
            WechatClient::new(self.sandbox.url(), Duration::from_secs(5)).expect("client builds");
        Arc::new(ComponentTokenProvider::new(
            self.conn.clone(),
            &self.keys,
            client,
            SandboxConfig::COMPONENT_APPID,
            SecretString::from(secret),
            settings,
        ))
    }

    /// A provider that reads time from `clock`.
    fn provider_with_clock(
        &self,
        settings: ComponentTokenSettings,
        clock: ManualClock,
    ) -> Arc<ComponentTokenProvider> {
        let client =
            WechatClient::new(self.sandbox.url(), Duration::from_secs(5)).expect("client builds");
        Arc::new(
            ComponentTokenProvider::new(
                self.conn.clone(),
                &self.keys,
                client,
                SandboxConfig::COMPONENT_APPID,
                SecretString::from(SECRET),
                settings,
            )
            .with_clock(Arc::new(clock)),
        )
    }

    fn provider(&self) -> Arc<ComponentTokenProvider> {
        self.provider_with(SECRET, ComponentTokenSettings::default())
    }

    async fn stat(&self, field: &str) -> u64 {
        let mut conn = self.conn.clone();
        let v: Option<u64> = redis::cmd("HGET")
            .arg(self.keys.stats())
            .arg(field)
            .query_async(&mut conn)
            .await
            .unwrap();
        v.unwrap_or(0)
    }
}

fn assert_no_secret(text: &str, token: Option<&AccessToken>) {
    for s in [SECRET, TICKET, WRONG_TICKET] {
        assert!(!text.contains(s), "a secret leaked into: {text}");
    }
    if let Some(t) = token {
        assert!(!text.contains(t.expose()), "the token leaked into: {text}");
    }
}

#[tokio::test]
async fn token_cached_in_redis_is_shared_by_two_providers() {
    let s = TokenStack::start("token-shared", SandboxConfig::default()).await;
    s.set_ticket(TICKET).await;
    let (a, b) = (s.provider(), s.provider());

    let ta = a.token().await.unwrap();
    let tb = b.token().await.unwrap();

    assert_eq!(ta.expose(), tb.expose());
    assert_eq!(s.sandbox.current_token().as_deref(), Some(ta.expose()));
    assert_eq!(s.sandbox.token_fetches(), 1);
    assert_eq!(ta.generation(), 1);
    assert_eq!(s.stat("token_refreshes").await, 1);
    assert_eq!((a.counters().refreshes, b.counters().refreshes), (1, 0));
    let status = b.status().await.unwrap();
    assert!(status.cached);
    assert_eq!(status.expires_at_ms, ta.expires_at_ms());
    assert_no_secret(&format!("{ta:?} {status:?} {a:?}"), Some(&ta));
}

#[tokio::test]
async fn token_32_concurrent_calls_across_two_providers_fetch_once() {
    // A slow token endpoint keeps the fetch in flight while every other call arrives.
    let s = TokenStack::start(
        "token-stampede",
        SandboxConfig {
            latency: Latency::Fixed(Duration::from_millis(300)),
            ..SandboxConfig::default()
        },
    )
    .await;
    s.set_ticket(TICKET).await;
    let providers = [s.provider(), s.provider()];

    let calls: Vec<_> = (0..32)
        .map(|i| {
            let p = providers[i % 2].clone();
            tokio::spawn(async move { p.token().await })
        })
        .collect();
    let mut tokens = Vec::new();
    for c in calls {
        tokens.push(c.await.unwrap().expect("every call gets a token"));
    }

    assert_eq!(
        s.sandbox.token_fetches(),
        1,
        "exactly one fetch for 32 calls"
    );
    assert!(tokens.iter().all(|t| t.expose() == tokens[0].expose()));
    assert_eq!(s.stat("token_refreshes").await, 1);
    let [a, b] = providers.map(|p| p.counters());
    assert_eq!(a.refreshes + b.refreshes, 1);
    assert_eq!(
        a.waits + b.waits,
        1,
        "the provider that did not fetch waited once (its other calls queued in-process)"
    );
}

#[tokio::test]
async fn token_invalidate_with_a_stale_token_keeps_the_newer_one() {
    let s = TokenStack::start("token-stale-invalidate", SandboxConfig::default()).await;
    s.set_ticket(TICKET).await;
    let (a, b) = (s.provider(), s.provider());

    let old = a.token().await.unwrap();
    let old_on_b = b.token().await.unwrap();
    assert!(
        a.invalidate(&old).await.unwrap(),
        "the cached token was the failed one"
    );
    let new = a.token().await.unwrap();
    assert_ne!(new.expose(), old.expose());
    assert_eq!(s.sandbox.token_fetches(), 2);

    // b reports its stale copy late: the newer token must survive.
    assert!(!b.invalidate(&old_on_b).await.unwrap());
    let seen_by_b = b.token().await.unwrap();
    assert_eq!(seen_by_b.expose(), new.expose());
    assert_eq!(
        s.sandbox.token_fetches(),
        2,
        "no fetch after a stale invalidate"
    );
}

#[tokio::test]
async fn token_invalidate_then_token_from_every_worker_fetches_once() {
    let s = TokenStack::start(
        "token-invalidate-refetch",
        SandboxConfig {
            latency: Latency::Fixed(Duration::from_millis(100)),
            ..SandboxConfig::default()
        },
    )
    .await;
    s.set_ticket(TICKET).await;
    let providers = [s.provider(), s.provider()];
    let old = providers[0].token().await.unwrap();
    let _ = providers[1].token().await.unwrap();
    assert_eq!(s.sandbox.token_fetches(), 1);

    // Every worker gets a token error for the same token at about the same time (WeChat said
    // 42001): all invalidate, then all ask again.
    let calls: Vec<_> = (0..16)
        .map(|i| {
            let p = providers[i % 2].clone();
            let old = old.clone();
            tokio::spawn(async move {
                p.invalidate(&old).await.unwrap();
                p.token().await.unwrap()
            })
        })
        .collect();
    let mut fresh = Vec::new();
    for c in calls {
        fresh.push(c.await.unwrap());
    }

    assert_eq!(
        s.sandbox.token_fetches(),
        2,
        "one new fetch for every worker"
    );
    assert!(fresh.iter().all(|t| t.expose() == fresh[0].expose()));
    assert_ne!(fresh[0].expose(), old.expose());
    assert_eq!(
        providers[0].counters().invalidations + providers[1].counters().invalidations,
        1,
        "only the first invalidate deleted the token"
    );
}

#[tokio::test]
async fn token_is_refreshed_ahead_of_expiry() {
    // A 4 s token refreshed 1.5 s ahead: due at 2.5 s, while it is still valid.
    let s = TokenStack::start(
        "token-refresh-ahead",
        SandboxConfig {
            token_ttl: Duration::from_secs(4),
            ..SandboxConfig::default()
        },
    )
    .await;
    s.set_ticket(TICKET).await;
    let clock = ManualClock::starting_now();
    let p = s.provider_with_clock(
        ComponentTokenSettings {
            refresh_ahead: Duration::from_millis(1500),
            local_ttl: Duration::from_millis(100),
            ..ComponentTokenSettings::default()
        },
        clock.clone(),
    );

    let first = p.token().await.unwrap();
    let expires_at = first.expires_at_ms().unwrap();
    assert_eq!(
        first.fetched_at_ms(),
        clock.now_ms(),
        "timed by the provider's clock"
    );
    assert_eq!(expires_at - first.fetched_at_ms(), 4000);
    clock.advance(Duration::from_millis(2499));
    assert_eq!(p.token().await.unwrap().expose(), first.expose());
    assert_eq!(
        s.sandbox.token_fetches(),
        1,
        "not due yet 1 ms before 2.5 s"
    );

    clock.advance(Duration::from_millis(1));
    let second = p.token().await.unwrap();
    assert_ne!(second.expose(), first.expose(), "refreshed at 2.5 s");
    assert_eq!(s.sandbox.token_fetches(), 2);
    assert!(
        second.fetched_at_ms() < expires_at,
        "the refresh happened before the old token expired"
    );
    assert_eq!(second.generation(), first.generation() + 1);
}

fn misconfigured(result: Result<AccessToken, TokenError>) -> (Option<i64>, String) {
    match result {
        Err(e @ TokenError::Misconfigured { .. }) => {
            assert!(!e.is_retryable());
            let message = e.to_string();
            let debug = format!("{e:?}");
            assert_no_secret(&message, None);
            assert_no_secret(&debug, None);
            let TokenError::Misconfigured { errcode, .. } = e else {
                unreachable!()
            };
            (errcode, message)
        }
        other => panic!("expected Misconfigured, got {other:?}"),
    }
}

#[tokio::test]
async fn token_missing_or_wrong_ticket_is_misconfigured_until_the_right_ticket_is_stored() {
    let s = TokenStack::start("token-ticket", SandboxConfig::default()).await;
    let p = s.provider();

    // No ticket stored at all: WeChat is not even asked.
    let (errcode, message) = misconfigured(p.token().await);
    assert_eq!(errcode, None);
    assert!(message.contains("envshare ticket set"), "{message}");
    assert!(message.contains(&s.keys.ticket()), "{message}");
    assert_eq!(s.sandbox.token_fetches(), 0);
    // What a worker that just paused for it asks: has a ticket arrived since?
    assert!(!p.ticket_replaced().await.unwrap(), "nothing stored yet");

    // An expired ticket: WeChat answers 61005.
    s.set_ticket(WRONG_TICKET).await;
    assert!(p.ticket_replaced().await.unwrap(), "a ticket arrived");
    let (errcode, message) = misconfigured(p.token().await);
    assert_eq!(errcode, Some(61005));
    assert!(message.contains("61005"), "{message}");
    assert!(message.contains("component_verify_ticket"), "{message}");
    assert!(message.contains("envshare ticket set"), "{message}");
    assert_eq!(s.sandbox.token_fetches(), 0);
    let c = p.counters();
    assert_eq!((c.fetch_errors, c.misconfigured, c.refreshes), (2, 2, 0));
    assert!(
        !p.ticket_replaced().await.unwrap(),
        "still the rejected ticket"
    );
    s.set_ticket(WRONG_TICKET).await;
    assert!(
        !p.ticket_replaced().await.unwrap(),
        "the same ticket stored again is not a new one"
    );

    // The fetch lock was released on failure: the next call after the fix fetches at once.
    s.set_ticket(TICKET).await;
    assert!(
        p.ticket_replaced().await.unwrap(),
        "a different ticket arrived"
    );
    let t = p.token().await.expect("works again with the right ticket");
    assert_eq!(s.sandbox.current_token().as_deref(), Some(t.expose()));
    assert_eq!(s.sandbox.token_fetches(), 1);
    assert!(
        !p.ticket_replaced().await.unwrap(),
        "no misconfiguration to end once a token is fetched"
    );
}

#[tokio::test]
async fn token_bad_secret_is_misconfigured_with_an_actionable_message() {
    let s = TokenStack::start("token-bad-secret", SandboxConfig::default()).await;
    s.set_ticket(TICKET).await;
    let p = s.provider_with(
        "secret-LEAKCHECK-wrong-77",
        ComponentTokenSettings::default(),
    );

    let (errcode, message) = misconfigured(p.token().await);
    assert_eq!(errcode, Some(40125));
    s.set_ticket("ticket-LEAKCHECK-other-22").await;
    assert!(
        !p.ticket_replaced().await.unwrap(),
        "a new ticket does not fix a wrong secret"
    );
    assert!(
        message.contains("ENVSHARE_COMPONENT_APPSECRET"),
        "{message}"
    );
    assert!(!message.contains("secret-LEAKCHECK-wrong-77"), "{message}");
    assert_eq!(s.sandbox.token_fetches(), 0);
}

#[tokio::test]
async fn token_transient_fetch_error_is_retryable_and_not_misconfigured() {
    let s = TokenStack::start("token-transient", SandboxConfig::default()).await;
    s.set_ticket(TICKET).await;
    s.sandbox.script(
        envshare::wechat::Endpoint::ComponentToken,
        [Some(envshare::sandbox::Fault::BUSY)],
    );
    let p = s.provider();

    let err = p.token().await.expect_err("WeChat was busy");
    assert!(err.is_retryable(), "{err}");
    assert!(matches!(err, TokenError::Transient { .. }), "{err:?}");
    assert_no_secret(&err.to_string(), None);
    // The lock was released: the next call fetches.
    assert!(p.token().await.is_ok());
    assert_eq!(s.sandbox.token_fetches(), 1);
}

/// Takes slots from `limiter` with `tasks` concurrent callers until `until`, returning the
/// instants at which a slot was granted.
async fn drain_slots(limiter: Arc<RateLimiter>, tasks: usize, until: Instant) -> Vec<Instant> {
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let mut granted = Vec::new();
                loop {
                    limiter.acquire().await.unwrap();
                    let now = Instant::now();
                    if now >= until {
                        return granted;
                    }
                    granted.push(now);
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all
}

#[tokio::test]
async fn rate_limit_of_20_per_second_holds_across_two_limiters() {
    let redis = TestRedis::shared();
    let keys = Keys::new(&unique_queue("rate-limit-20"));
    let a = Arc::new(RateLimiter::new(
        redis.connection_manager().await,
        &keys,
        20.0,
    ));
    let b = Arc::new(RateLimiter::new(
        redis.connection_manager().await,
        &keys,
        20.0,
    ));

    let start = Instant::now();
    let until = start + Duration::from_secs(2);
    let (ga, gb) = tokio::join!(
        drain_slots(a.clone(), 4, until),
        drain_slots(b.clone(), 4, until)
    );
    let elapsed = start.elapsed().as_secs_f64().min(2.0);

    let total = ga.len() + gb.len();
    let rate = total as f64 / elapsed;
    eprintln!(
        "rate limit 20/s over {elapsed:.2} s: {total} slots ({} + {}), {rate:.2}/s",
        ga.len(),
        gb.len()
    );
    assert!((18.0..=22.0).contains(&rate), "measured {rate:.2}/s");
    assert!(!ga.is_empty() && !gb.is_empty(), "both limiters got slots");

    // Smooth, not bursty: no two grants closer than half an interval in any 250 ms window.
    let mut all: Vec<Instant> = ga.into_iter().chain(gb).collect();
    all.sort();
    let max_in_window = all
        .iter()
        .map(|t| {
            all.iter()
                .filter(|u| **u >= *t && **u < *t + Duration::from_millis(250))
                .count()
        })
        .max()
        .unwrap();
    assert!(
        max_in_window <= 7,
        "{max_in_window} grants within 250 ms (expected about 5)"
    );
    assert!(a.counters().throttled + b.counters().throttled > 0);
}

#[tokio::test]
async fn rate_limit_of_zero_makes_no_redis_call() {
    let redis = TestRedis::private();
    let keys = Keys::new(&unique_queue("rate-limit-0"));
    let unlimited = RateLimiter::new(redis.connection_manager().await, &keys, 0.0);
    let limited = RateLimiter::new(redis.connection_manager().await, &keys, 1000.0);
    assert!(!unlimited.is_limited());
    // With Redis gone, any Redis call would fail.
    redis.kill();
    assert!(
        limited.acquire().await.is_err(),
        "control: a limited acquire needs Redis"
    );

    let start = Instant::now();
    for _ in 0..1000 {
        assert_eq!(unlimited.acquire().await.unwrap(), Duration::ZERO);
    }
    assert!(start.elapsed() < Duration::from_millis(200));
    assert_eq!(unlimited.counters().acquired, 1000);
}

#[tokio::test]
async fn token_provider_from_settings_follows_the_configured_mode() {
    let s = TokenStack::start("token-from-settings", SandboxConfig::default()).await;
    s.set_ticket(TICKET).await;
    let client = || WechatClient::new(s.sandbox.url(), Duration::from_secs(5)).unwrap();
    let mut settings = envshare::config::Settings::defaults();

    settings.access_token = Some(SecretString::from("fixed-LEAKCHECK-1"));
    let fixed = token::provider_from_settings(&settings, s.conn.clone(), &s.keys, client())
        .expect("fixed mode");
    assert_eq!(fixed.token().await.unwrap().expose(), "fixed-LEAKCHECK-1");
    assert_eq!(fixed.status().await.unwrap().mode, token::TokenMode::Fixed);

    settings.access_token = None;
    assert!(
        token::provider_from_settings(&settings, s.conn.clone(), &s.keys, client()).is_none(),
        "no token settings, no provider"
    );

    settings.component_appid =
        Some(envshare::AppId::parse(SandboxConfig::COMPONENT_APPID).unwrap());
    settings.component_appsecret = Some(SecretString::from(SECRET));
    let component = token::provider_from_settings(&settings, s.conn.clone(), &s.keys, client())
        .expect("component mode");
    let t = component.token().await.unwrap();
    assert_eq!(s.sandbox.current_token().as_deref(), Some(t.expose()));
    assert_eq!(
        component.status().await.unwrap().mode,
        token::TokenMode::Component
    );
}

#[tokio::test]
async fn token_waiters_take_over_a_lock_left_by_a_dead_fetcher() {
    let s = TokenStack::start("token-dead-fetcher", SandboxConfig::default()).await;
    s.set_ticket(TICKET).await;
    // A fetcher took the lock and died: nobody releases it; it expires after 600 ms.
    let mut conn = s.conn.clone();
    let () = redis::cmd("SET")
        .arg(s.keys.token_lock())
        .arg("dead-owner")
        .arg("PX")
        .arg(600)
        .query_async(&mut conn)
        .await
        .unwrap();
    let p = s.provider();

    let start = Instant::now();
    let t = p
        .token()
        .await
        .expect("a waiter takes over once the lock expires");
    let waited = start.elapsed();

    assert!(
        waited >= Duration::from_millis(500),
        "waited only {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "waited {waited:?}");
    assert_eq!(s.sandbox.current_token().as_deref(), Some(t.expose()));
    assert_eq!(s.sandbox.token_fetches(), 1);
    assert_eq!((p.counters().waits, p.counters().refreshes), (1, 1));
}

#[tokio::test]
async fn token_wait_for_a_stuck_fetcher_ends_with_a_transient_error() {
    let s = TokenStack::start("token-stuck-fetcher", SandboxConfig::default()).await;
    s.set_ticket(TICKET).await;
    let mut conn = s.conn.clone();
    let () = redis::cmd("SET")
        .arg(s.keys.token_lock())
        .arg("stuck-owner")
        .arg("PX")
        .arg(10_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    let p = s.provider_with(
        SECRET,
        ComponentTokenSettings {
            wait_timeout: Duration::from_millis(300),
            ..ComponentTokenSettings::default()
        },
    );

    let err = p.token().await.expect_err("no token within the wait");
    assert!(matches!(err, TokenError::Transient { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(
        s.sandbox.token_fetches(),
        0,
        "a waiter never fetches beside the owner"
    );
}
