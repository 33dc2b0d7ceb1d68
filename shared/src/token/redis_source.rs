//! `redis` mode: the token the platform's own SDK keeps under a Redis key
//! (`ENVSHARE_TOKEN_REDIS_KEY`, on `ENVSHARE_TOKEN_REDIS_URL` or the queue's Redis).
//!
//! envshare only reads the key (`GET` + `PTTL`, through
//! [`ExternalTokenKey`](crate::store::ExternalTokenKey)) and never calls
//! `api_component_token`: WeChat lets one server own the token, and a fetch by envshare would
//! invalidate the platform's. The value may be plain text, a JSON string or a JSON object (see
//! [`parse_token_value`]); its expiry is the key's TTL (or the object's `expires_at`).
//!
//! A call to [`token`](TokenProvider::token) uses the in-process copy for up to
//! [`local_ttl`](ExternalTokenSettings::local_ttl), then reads the key again. After WeChat
//! rejected a token ([`invalidate`](TokenProvider::invalidate)), the key is re-read with a
//! growing pause until it holds another value, for at most
//! [`stale_wait`](ExternalTokenSettings::stale_wait); then the call fails as transient (the job
//! is deferred, no attempt spent). A missing or unreadable key is a misconfiguration: the queue
//! pauses for the re-check interval, with a message that names the key.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::OnceCell;

use super::external::{ParseError, Rejected, parse_token_value};
use super::{AccessToken, TokenCounters, TokenError, TokenMode, TokenProvider, TokenStatus};
use crate::clock::{Clock, SystemClock};
use crate::store::ExternalTokenKey;
use crate::store::conn::RedisConn;

/// Timing of the `redis` and `http` token sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalTokenSettings {
    /// How long the in-process copy is used before the source is asked again (default 1 s for
    /// `redis`; `http` asks again only near the token's expiry).
    pub local_ttl: Duration,
    /// After WeChat rejected a token, how long to wait for the source to hand out another one
    /// before the call fails as transient (default 30 s).
    pub stale_wait: Duration,
    /// The first pause between two reads while waiting; it doubles up to `max_poll` (default
    /// 100 ms).
    pub first_poll: Duration,
    /// The longest pause between two reads while waiting (default 2 s).
    pub max_poll: Duration,
    /// One HTTP request to the token service, connect to last byte (`http` only; default
    /// `ENVSHARE_REQUEST_TIMEOUT_MS`).
    pub request_timeout: Duration,
}

impl Default for ExternalTokenSettings {
    fn default() -> Self {
        Self {
            local_ttl: Duration::from_secs(1),
            stale_wait: Duration::from_secs(30),
            first_poll: Duration::from_millis(100),
            max_poll: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl ExternalTokenSettings {
    /// The defaults, with the request timeout of `settings`.
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        Self {
            request_timeout: settings.request_timeout,
            ..Self::default()
        }
    }
}

/// Where the key lives: on a connection we have, or behind a URL connected to on first use.
enum KeySource {
    Ready(ExternalTokenKey),
    Lazy {
        url: String,
        key: String,
        cell: OnceCell<ExternalTokenKey>,
    },
}

/// The `redis` token source. See the [module documentation](self).
pub struct RedisTokenProvider {
    source: KeySource,
    settings: ExternalTokenSettings,
    local: Mutex<Option<(AccessToken, u64)>>,
    rejected: Rejected,
    counters: Counters,
    clock: Arc<dyn Clock>,
}

#[derive(Default)]
struct Counters {
    /// New token values picked up from the key.
    picked_up: AtomicU64,
    waits: AtomicU64,
    errors: AtomicU64,
    misconfigured: AtomicU64,
    invalidations: AtomicU64,
}

impl std::fmt::Debug for RedisTokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTokenProvider")
            .field("key", &self.key_name())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The kind of a connection error, without its text (which may quote the URL).
fn redis_error_kind(e: &redis::RedisError) -> String {
    format!("{:?}", e.kind())
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

impl RedisTokenProvider {
    /// Reads `key` on `conn` (the queue's Redis).
    pub fn new(
        conn: impl Into<RedisConn>,
        key: impl Into<String>,
        settings: ExternalTokenSettings,
    ) -> Self {
        Self::with_source(KeySource::Ready(ExternalTokenKey::new(conn, key)), settings)
    }

    /// Reads `key` on the Redis at `url`, connected to on first use (a failed connection is a
    /// transient error of that call, tried again by the next).
    pub fn on_url(
        url: impl Into<String>,
        key: impl Into<String>,
        settings: ExternalTokenSettings,
    ) -> Self {
        Self::with_source(
            KeySource::Lazy {
                url: url.into(),
                key: key.into(),
                cell: OnceCell::new(),
            },
            settings,
        )
    }

    fn with_source(source: KeySource, settings: ExternalTokenSettings) -> Self {
        Self {
            source,
            settings,
            local: Mutex::new(None),
            rejected: Rejected::default(),
            counters: Counters::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Reads time from `clock` instead of the system clock (expiry and the in-process copy's
    /// age); waits stay in real time.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn key_name(&self) -> &str {
        match &self.source {
            KeySource::Ready(k) => k.key(),
            KeySource::Lazy { key, .. } => key,
        }
    }

    async fn key(&self) -> Result<&ExternalTokenKey, TokenError> {
        match &self.source {
            KeySource::Ready(k) => Ok(k),
            KeySource::Lazy { url, key, cell } => {
                cell.get_or_try_init(|| async {
                    let cluster = crate::redis_url::is_cluster_url(url);
                    let options = crate::store::conn::ConnectOptions {
                        connection_timeout: Duration::from_secs(5),
                        response_timeout: Some(Duration::from_secs(10)),
                        retries: 1,
                    };
                    let conn = crate::store::conn::connect_with(url, cluster, options)
                        .await
                        .map_err(|e| TokenError::Transient {
                            operation: "connecting to ENVSHARE_TOKEN_REDIS_URL",
                            message: format!(
                                "{} ({})",
                                crate::config::redact_url(url),
                                redis_error_kind(&e)
                            ),
                        })?;
                    Ok(ExternalTokenKey::new(conn, key.clone()))
                })
                .await
            }
        }
    }

    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    fn misconfigured(&self, hint: String) -> TokenError {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        self.counters.misconfigured.fetch_add(1, Ordering::Relaxed);
        TokenError::Misconfigured {
            errcode: None,
            hint,
        }
    }

    /// One read of the key: `Ok(None)` when it does not exist.
    async fn read(&self) -> Result<Option<Result<AccessToken, ParseError>>, TokenError> {
        let key = self.key().await?;
        let value = key.read().await.map_err(|source| {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            TokenError::Redis {
                operation: "reading the platform's token key (ENVSHARE_TOKEN_REDIS_KEY)",
                source,
            }
        })?;
        let Some(value) = value else { return Ok(None) };
        let now = self.now_ms();
        Ok(Some(parse_token_value(&value.raw).map(|p| {
            let from_ttl = value.ttl_ms.map(|t| now + t);
            let expires_at = match (from_ttl, p.expires_at_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            AccessToken::external(p.token, now, expires_at)
        })))
    }

    fn missing_hint(&self) -> String {
        format!(
            "no token under the Redis key {key} (ENVSHARE_TOKEN_REDIS_KEY{on}). In redis mode the \
             platform's own token service writes it: check that the key name matches the SDK's \
             (e.g. wechat_component_access_token:APPID for WxJava, component_access_token_APPID \
             for silenceper/wechat, with the SDK's key prefix if one is set) and that the service \
             keeps the token fresh; workers resume by themselves once it is there",
            key = self.key_name(),
            on = match &self.source {
                KeySource::Ready(_) => ", on the queue's Redis".to_owned(),
                KeySource::Lazy { url, .. } => format!(" on {}", crate::config::redact_url(url)),
            }
        )
    }

    fn unreadable_hint(&self, e: &ParseError) -> String {
        format!(
            "the Redis key {key} (ENVSHARE_TOKEN_REDIS_KEY) holds no token envshare can read: \
             {e}. Expected the token as plain text, as a JSON string, or as a JSON object with \
             `component_access_token`",
            key = self.key_name()
        )
    }

    async fn token_impl(&self) -> Result<AccessToken, TokenError> {
        let now = self.now_ms();
        {
            let local = self.local.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((t, read_at)) = local.as_ref()
                && now.saturating_sub(*read_at) < ms(self.settings.local_ttl)
                && t.expires_at_ms().is_none_or(|e| now < e)
                && !self.rejected.contains(t.secret())
            {
                return Ok(t.clone());
            }
        }
        let started = Instant::now();
        let mut pause = self.settings.first_poll;
        let mut waited = false;
        loop {
            let now = self.now_ms();
            let usable = match self.read().await? {
                Some(Ok(t))
                    if !self.rejected.contains(t.secret())
                        && t.expires_at_ms().is_none_or(|e| now < e) =>
                {
                    Some(t)
                }
                // Rejected or expired: the platform's service has not refreshed it yet.
                Some(Ok(_)) => None,
                Some(Err(e)) => return Err(self.misconfigured(self.unreadable_hint(&e))),
                // Gone while waiting for a new value: the service may be replacing it.
                None if waited => None,
                None => return Err(self.misconfigured(self.missing_hint())),
            };
            if let Some(t) = usable {
                let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
                let new = local
                    .as_ref()
                    .is_none_or(|(old, _)| old.expose() != t.expose());
                if new {
                    self.counters.picked_up.fetch_add(1, Ordering::Relaxed);
                }
                *local = Some((t.clone(), now));
                return Ok(t);
            }
            if !waited {
                waited = true;
                self.counters.waits.fetch_add(1, Ordering::Relaxed);
            }
            if started.elapsed() + pause > self.settings.stale_wait {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                return Err(TokenError::Transient {
                    operation: "waiting for the platform's token service to refresh the token",
                    message: format!(
                        "the Redis key {} still holds a token WeChat rejected (or an expired one, \
                         or none) after {:?}; envshare never fetches one itself in redis mode",
                        self.key_name(),
                        self.settings.stale_wait
                    ),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(self.settings.max_poll);
        }
    }

    fn invalidate_impl(&self, failed: &AccessToken) -> bool {
        self.rejected.add(failed.secret());
        let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        if local
            .as_ref()
            .is_some_and(|(t, _)| self.rejected.contains(t.secret()))
        {
            *local = None;
        }
        self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            key = %self.key_name(),
            "WeChat rejected the token from the platform's key; waiting for the platform's service \
             to replace it"
        );
        true
    }

    async fn status_impl(&self) -> Result<TokenStatus, TokenError> {
        let now = self.now_ms();
        let token = match self.read().await? {
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => return Err(self.misconfigured(self.unreadable_hint(&e))),
            None => None,
        };
        let token = token.filter(|t| t.expires_at_ms().is_none_or(|e| now < e));
        Ok(TokenStatus {
            mode: TokenMode::Redis,
            cached: token.is_some(),
            generation: None,
            fetched_at_ms: token.as_ref().map(AccessToken::fetched_at_ms),
            expires_at_ms: token.as_ref().and_then(AccessToken::expires_at_ms),
        })
    }
}

impl TokenProvider for RedisTokenProvider {
    fn token(&self) -> BoxFuture<'_, Result<AccessToken, TokenError>> {
        Box::pin(self.token_impl())
    }

    fn invalidate<'a>(
        &'a self,
        failed: &'a AccessToken,
    ) -> BoxFuture<'a, Result<bool, TokenError>> {
        Box::pin(async move { Ok(self.invalidate_impl(failed)) })
    }

    fn status(&self) -> BoxFuture<'_, Result<TokenStatus, TokenError>> {
        Box::pin(self.status_impl())
    }

    fn counters(&self) -> TokenCounters {
        let c = &self.counters;
        TokenCounters {
            refreshes: c.picked_up.load(Ordering::Relaxed),
            waits: c.waits.load(Ordering::Relaxed),
            fetch_errors: c.errors.load(Ordering::Relaxed),
            misconfigured: c.misconfigured.load(Ordering::Relaxed),
            invalidations: c.invalidations.load(Ordering::Relaxed),
            ticket_requests: 0,
        }
    }
}
