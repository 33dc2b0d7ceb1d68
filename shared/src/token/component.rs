//! Component mode: the platform's `component_access_token`, cached in Redis, fetched by one
//! process at a time.
//!
//! Redis (through [`TokenStore`]): `token` holds the JSON
//! `{"token","expires_at","fetched_at","generation"}` with a TTL equal to the token's life;
//! `token:lock` is the fetch lock (`SET NX PX` with a random owner, released by its owner only);
//! `ticket` is the verify ticket hash (fields `ticket`, `set_at`); `stats` counts
//! `token_refreshes`, which doubles as the generation number; `ticket:request` is the 10-minute
//! claim on asking WeChat for a ticket push, made when no ticket is stored, the stored one is
//! older than 12 h, or WeChat rejects it (see [`super::ticket`]).
//!
//! A call to [`token`](TokenProvider::token):
//!
//! 1. returns the in-process copy if it was read from Redis less than
//!    [`local_ttl`](ComponentTokenSettings::local_ttl) ago and is not due for refresh (saves a
//!    GET per WeChat call; another process's refresh is seen within `local_ttl`, and a token
//!    error re-reads at once through `invalidate`);
//! 2. else reads Redis; a token not due for refresh is returned;
//! 3. else refreshes: within the process one task at a time (the others wait for its result,
//!    success or error); across processes whoever takes the lock re-checks the cache and fetches,
//!    and the others keep using the old token if it is still valid, or poll the cache until the
//!    new token appears.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::ticket::{TicketPush, TicketPushError, request_ticket_push, ticket_is_old};
use super::{
    AccessToken, TokenCounters, TokenError, TokenMode, TokenProvider, TokenStatus,
    misconfiguration_hint, missing_ticket_hint,
};
use crate::clock::{Clock, SystemClock};
use crate::store::conn::RedisConn;
use crate::store::{Keys, TokenStore};
use crate::wechat::{WechatClient, WechatError};

/// Timing of the component token cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentTokenSettings {
    /// Refresh this long before WeChat's expiry (`ENVSHARE_TOKEN_REFRESH_AHEAD_MS`, default
    /// 10 min). Capped at half the token's life, so a short-lived token is not refreshed on
    /// every call.
    pub refresh_ahead: Duration,
    /// How long the in-process copy is used without reading Redis (default 1 s).
    pub local_ttl: Duration,
    /// Expiry of the fetch lock, so a fetcher that dies does not block the others for long.
    /// Must exceed the WeChat request timeout (default 15 s; the timeout defaults to 10 s).
    pub lock_ttl: Duration,
    /// How long a call waits for another process's fetch before it gives up with a transient
    /// error (default 20 s: longer than `lock_ttl`, so a dead fetcher's lock expires first and a
    /// waiter takes over).
    pub wait_timeout: Duration,
    /// Pause between two reads of the cache while waiting (default 50 ms).
    pub poll_interval: Duration,
}

impl Default for ComponentTokenSettings {
    fn default() -> Self {
        Self {
            refresh_ahead: Duration::from_secs(600),
            local_ttl: Duration::from_secs(1),
            lock_ttl: Duration::from_secs(15),
            wait_timeout: Duration::from_secs(20),
            poll_interval: Duration::from_millis(50),
        }
    }
}

impl ComponentTokenSettings {
    /// The settings for `settings`: `ENVSHARE_TOKEN_REFRESH_AHEAD_MS`, and a lock that outlives
    /// one WeChat request (`ENVSHARE_REQUEST_TIMEOUT_MS` + 5 s) with a wait 5 s longer still.
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        let lock_ttl = settings.request_timeout + Duration::from_secs(5);
        Self {
            refresh_ahead: settings.token_refresh_ahead,
            lock_ttl,
            wait_timeout: lock_ttl + Duration::from_secs(5),
            ..Self::default()
        }
    }
}

/// A token as WeChat handed it out.
pub(crate) struct FetchedToken {
    pub(crate) token: SecretString,
    pub(crate) expires_in: Duration,
}

/// Why WeChat gave no token.
pub(crate) enum FetchError {
    /// WeChat answered with an errcode.
    Api { errcode: i64, errmsg: String },
    /// Anything else (transport, HTTP status, unparsable body), already free of secrets.
    Other(String),
}

/// Fetches a token from WeChat for a verify ticket. The WeChat client implements it; it is a
/// seam so the lock and cache logic does not depend on how the HTTP call is made.
pub(crate) trait Fetch: Send + Sync {
    fn fetch<'a>(
        &'a self,
        ticket: &'a SecretString,
    ) -> BoxFuture<'a, Result<FetchedToken, FetchError>>;

    /// Asks WeChat to push a verify ticket (single-flight across processes through `store`).
    fn request_push<'a>(
        &'a self,
        store: &'a TokenStore,
    ) -> BoxFuture<'a, Result<TicketPush, TicketPushError>>;
}

/// The production fetcher: `api_component_token` with the platform's appid and secret.
struct WechatFetch {
    client: WechatClient,
    component_appid: String,
    secret: SecretString,
}

impl Fetch for WechatFetch {
    fn fetch<'a>(
        &'a self,
        ticket: &'a SecretString,
    ) -> BoxFuture<'a, Result<FetchedToken, FetchError>> {
        Box::pin(async move {
            match self
                .client
                .component_token(&self.component_appid, &self.secret, ticket)
                .await
            {
                Ok(t) => Ok(FetchedToken {
                    token: t.token,
                    expires_in: t.expires_in,
                }),
                Err(WechatError::Api {
                    errcode, errmsg, ..
                }) => Err(FetchError::Api { errcode, errmsg }),
                // WechatError's messages carry no URL, body or secret.
                Err(e) => Err(FetchError::Other(e.to_string())),
            }
        })
    }

    fn request_push<'a>(
        &'a self,
        store: &'a TokenStore,
    ) -> BoxFuture<'a, Result<TicketPush, TicketPushError>> {
        Box::pin(request_ticket_push(
            store,
            &self.client,
            &self.component_appid,
            &self.secret,
        ))
    }
}

/// The JSON stored under the `token` key.
#[derive(Serialize, Deserialize)]
struct Cached {
    token: String,
    expires_at: u64,
    fetched_at: u64,
    /// Absent only in the prefix handed to `store.lua`, which appends it.
    #[serde(default, skip_serializing)]
    generation: u64,
}

#[derive(Default)]
struct Counters {
    refreshes: AtomicU64,
    waits: AtomicU64,
    fetch_errors: AtomicU64,
    misconfigured: AtomicU64,
    invalidations: AtomicU64,
    /// Shared with the background task that asks for a ticket push.
    ticket_requests: Arc<AtomicU64>,
}

struct Local {
    token: AccessToken,
    /// When it was read from Redis (clock ms).
    read_at_ms: u64,
}

/// The outcome of the last in-process refresh, shared with the tasks that waited for it.
struct Flight {
    epoch: u64,
    last_error: Option<TokenError>,
}

/// Component mode (see the [`token`](crate::token) module documentation).
pub struct ComponentTokenProvider {
    store: TokenStore,
    component_appid: String,
    fetcher: Arc<dyn Fetch>,
    settings: ComponentTokenSettings,
    local: Mutex<Option<Local>>,
    flight: tokio::sync::Mutex<Flight>,
    /// A copy of `flight.epoch` readable without the lock.
    epoch: AtomicU64,
    counters: Counters,
    clock: Arc<dyn Clock>,
    /// The verify ticket behind the last misconfiguration, if it was a ticket problem: what
    /// [`TokenProvider::ticket_replaced`] compares the stored ticket with. Never printed.
    rejected: Mutex<Option<Rejected>>,
}

/// The verify ticket a token fetch failed for.
enum Rejected {
    /// No ticket was stored.
    Missing,
    /// WeChat rejected this one (61005 expired, 61006 invalid).
    Ticket(SecretString),
}

impl std::fmt::Debug for ComponentTokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentTokenProvider")
            .field("component_appid", &self.component_appid)
            .field("store", &self.store)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn duration_ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

impl ComponentTokenProvider {
    /// A provider for third-party platform `component_appid` with app secret `secret`, fetching
    /// through `client`, caching under `keys` (the queue's `token`, `token:lock`, `ticket` and
    /// `stats` keys) on `conn`.
    pub fn new(
        conn: impl Into<RedisConn>,
        keys: &Keys,
        client: WechatClient,
        component_appid: impl Into<String>,
        secret: SecretString,
        settings: ComponentTokenSettings,
    ) -> Self {
        let component_appid = component_appid.into();
        let fetcher = Arc::new(WechatFetch {
            client,
            component_appid: component_appid.clone(),
            secret,
        });
        Self::with_fetcher(conn, keys, component_appid, fetcher, settings)
    }

    pub(crate) fn with_fetcher(
        conn: impl Into<RedisConn>,
        keys: &Keys,
        component_appid: impl Into<String>,
        fetcher: Arc<dyn Fetch>,
        settings: ComponentTokenSettings,
    ) -> Self {
        Self {
            store: TokenStore::new(conn, keys),
            component_appid: component_appid.into(),
            fetcher,
            settings,
            local: Mutex::new(None),
            flight: tokio::sync::Mutex::new(Flight {
                epoch: 0,
                last_error: None,
            }),
            epoch: AtomicU64::new(0),
            counters: Counters::default(),
            clock: Arc::new(SystemClock),
            rejected: Mutex::new(None),
        }
    }

    /// Reads time from `clock` instead of the system clock: token ages, expiry and the
    /// in-process copy's age (tests move a [`ManualClock`](crate::clock::ManualClock)). Waits
    /// for another process's fetch stay in real time.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// When `t` is due for refresh: `refresh_ahead` before expiry, but no earlier than halfway
    /// through its life.
    fn refresh_at(&self, t: &AccessToken) -> u64 {
        let expires = t.expires_at_ms().unwrap_or(u64::MAX);
        let half_life = t.fetched_at_ms() + expires.saturating_sub(t.fetched_at_ms()) / 2;
        expires
            .saturating_sub(duration_ms(self.settings.refresh_ahead))
            .max(half_life)
    }

    fn is_fresh(&self, t: &AccessToken, now: u64) -> bool {
        now < self.refresh_at(t)
    }

    fn is_valid(t: &AccessToken, now: u64) -> bool {
        t.expires_at_ms().is_some_and(|e| now < e)
    }

    fn local_get(&self, max_age: Option<Duration>) -> Option<AccessToken> {
        let local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        let l = local.as_ref()?;
        if max_age.is_some_and(|age| self.now_ms().saturating_sub(l.read_at_ms) >= duration_ms(age))
        {
            return None;
        }
        Some(l.token.clone())
    }

    fn local_set(&self, token: Option<&AccessToken>) {
        let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        *local = token.map(|t| Local {
            token: t.clone(),
            read_at_ms: self.now_ms(),
        });
    }

    async fn read_cached(&self) -> Result<Option<AccessToken>, TokenError> {
        let raw = self
            .store
            .read_token()
            .await
            .map_err(TokenError::redis("reading the cached component token"))?;
        let Some(raw) = raw else { return Ok(None) };
        match serde_json::from_str::<Cached>(&raw) {
            Ok(c) => Ok(Some(AccessToken::component(
                SecretString::from(c.token),
                c.generation,
                c.fetched_at,
                c.expires_at,
            ))),
            Err(e) => {
                // Treated as absent: the next fetch overwrites it. serde's message names the
                // position, never the content.
                tracing::warn!(key = %self.store.token_key(), error = %e, "unreadable cached token ignored");
                Ok(None)
            }
        }
    }

    async fn try_lock(&self, owner: &str) -> Result<bool, TokenError> {
        self.store
            .try_lock(owner, duration_ms(self.settings.lock_ttl))
            .await
            .map_err(TokenError::redis("taking the token fetch lock"))
    }

    async fn unlock(&self, owner: &str) {
        if let Err(e) = self.store.unlock(owner).await {
            // The lock expires by itself; waiting out its TTL is the only cost.
            tracing::warn!(error = %e, "could not release the token fetch lock");
        }
    }

    async fn read_ticket(&self) -> Result<Option<(SecretString, Option<u64>)>, TokenError> {
        let ticket = self
            .store
            .read_ticket_with_time()
            .await
            .map_err(TokenError::redis("reading the component verify ticket"))?;
        Ok(ticket
            .filter(|t| !t.ticket.trim().is_empty())
            .map(|t| (SecretString::from(t.ticket), t.set_at_ms)))
    }

    /// Asks WeChat to push a verify ticket, unless some process did within the last 10
    /// minutes. In the background: the token fetch goes on at once (holding the fetch lock), and
    /// failures are logged, never returned.
    fn request_ticket_push(&self, why: &'static str) {
        let fetcher = self.fetcher.clone();
        let store = self.store.clone();
        let requests = self.counters.ticket_requests.clone();
        tokio::spawn(async move {
            match fetcher.request_push(&store).await {
                Ok(TicketPush::Requested) => {
                    requests.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        why,
                        "asked WeChat to push a component_verify_ticket (api_start_push_ticket); \
                         it arrives at the platform's callback URL"
                    );
                }
                Ok(TicketPush::Skipped { .. }) => {
                    tracing::debug!(
                        why,
                        "a ticket push was asked for within the last 10 minutes"
                    );
                }
                Err(e) => {
                    let source = std::error::Error::source(&e).map(ToString::to_string);
                    tracing::warn!(why, error = %e, source, "could not ask WeChat to push a ticket");
                }
            }
        });
    }

    /// The refresh of one process, done by one task at a time; the tasks that queued behind it
    /// take its result instead of refreshing again.
    async fn refresh(
        &self,
        cached: Option<AccessToken>,
        seen_epoch: u64,
    ) -> Result<AccessToken, TokenError> {
        let mut flight = self.flight.lock().await;
        if flight.epoch != seen_epoch {
            if let Some(e) = &flight.last_error {
                return Err(e.clone());
            }
            if let Some(t) = self.local_get(None) {
                return Ok(t);
            }
        }
        let result = self.refresh_across_processes(cached).await;
        flight.epoch += 1;
        flight.last_error = result.as_ref().err().cloned();
        self.epoch.store(flight.epoch, Ordering::Release);
        result
    }

    async fn refresh_across_processes(
        &self,
        cached: Option<AccessToken>,
    ) -> Result<AccessToken, TokenError> {
        let deadline = Instant::now() + self.settings.wait_timeout;
        let mut waited = false;
        loop {
            let owner = format!("{:032x}", rand::random::<u128>());
            if self.try_lock(&owner).await? {
                let result = self.fetch_locked(&owner).await;
                if result.is_err() {
                    self.unlock(&owner).await;
                }
                return result;
            }
            // Another process is fetching. A token that is due for refresh but still valid
            // serves until the new one lands.
            if let Some(t) = cached.as_ref().filter(|t| Self::is_valid(t, self.now_ms())) {
                return Ok(t.clone());
            }
            if !waited {
                waited = true;
                self.counters.waits.fetch_add(1, Ordering::Relaxed);
            }
            loop {
                tokio::time::sleep(self.settings.poll_interval).await;
                if let Some(t) = self.read_cached().await?
                    && self.is_fresh(&t, self.now_ms())
                {
                    self.local_set(Some(&t));
                    return Ok(t);
                }
                if Instant::now() >= deadline {
                    return Err(TokenError::Transient {
                        operation: "waiting for another process to fetch the component token",
                        message: format!("no new token within {:?}", self.settings.wait_timeout),
                    });
                }
                let locked = self
                    .store
                    .is_locked()
                    .await
                    .map_err(TokenError::redis("checking the token fetch lock"))?;
                if !locked {
                    // The fetcher gave up (or died) without storing a token: try to take over.
                    break;
                }
            }
        }
    }

    /// Holding the lock: re-check the cache, fetch, store (which releases the lock).
    async fn fetch_locked(&self, owner: &str) -> Result<AccessToken, TokenError> {
        // Another process may have stored a token between our read and our lock.
        if let Some(t) = self.read_cached().await?
            && self.is_fresh(&t, self.now_ms())
        {
            self.unlock(owner).await;
            self.local_set(Some(&t));
            return Ok(t);
        }
        let Some((ticket, set_at)) = self.read_ticket().await? else {
            self.set_rejected(Some(Rejected::Missing));
            self.request_ticket_push("no verify ticket is stored");
            self.counters.fetch_errors.fetch_add(1, Ordering::Relaxed);
            self.counters.misconfigured.fetch_add(1, Ordering::Relaxed);
            return Err(TokenError::Misconfigured {
                errcode: None,
                hint: missing_ticket_hint(&self.component_appid, self.store.ticket_key()),
            });
        };
        if ticket_is_old(set_at, self.now_ms()) {
            self.request_ticket_push("the stored verify ticket is older than 12 h");
        }
        let fetched = match self.fetcher.fetch(&ticket).await {
            Ok(f) => f,
            Err(e) => {
                if matches!(
                    e,
                    FetchError::Api {
                        errcode: 61005 | 61006,
                        ..
                    }
                ) {
                    self.set_rejected(Some(Rejected::Ticket(ticket.clone())));
                    self.request_ticket_push("WeChat rejected the verify ticket");
                } else {
                    self.set_rejected(None);
                }
                self.counters.fetch_errors.fetch_add(1, Ordering::Relaxed);
                return Err(self.fetch_error(e));
            }
        };
        self.set_rejected(None);
        let fetched_at = self.now_ms();
        let life = duration_ms(fetched.expires_in).max(1);
        let expires_at = fetched_at + life;
        let mut prefix = serde_json::to_string(&Cached {
            token: fetched.token.expose_secret().to_owned(),
            expires_at,
            fetched_at,
            generation: 0,
        })
        .map_err(|e| TokenError::Transient {
            operation: "encoding the component token for the cache",
            message: e.to_string(),
        })?;
        // `{"token":…,"fetched_at":N}` → `{"token":…,"fetched_at":N,"generation":` + N + `}`.
        prefix.pop();
        prefix.push_str(",\"generation\":");
        let generation = self
            .store
            .store_token(owner, &prefix, life)
            .await
            .map_err(TokenError::redis("storing the component token"))?;
        if generation == 0 {
            // The lock expired during the fetch and may be someone else's now: their token
            // (fetched later, so the valid one) must not be overwritten. Ours serves this call.
            tracing::warn!(
                lock_ttl = ?self.settings.lock_ttl,
                "the token fetch outlived its lock; the fetched token was not cached"
            );
        } else {
            self.counters.refreshes.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                generation,
                expires_at,
                "fetched a new component access token"
            );
        }
        let token = AccessToken::component(fetched.token, generation, fetched_at, expires_at);
        if generation != 0 {
            self.local_set(Some(&token));
        }
        Ok(token)
    }

    fn set_rejected(&self, rejected: Option<Rejected>) {
        *self.rejected.lock().unwrap_or_else(|e| e.into_inner()) = rejected;
    }

    async fn ticket_replaced_impl(&self) -> Result<bool, TokenError> {
        // The rejected ticket (`None`: none was stored), copied out of the lock.
        let rejected: Option<SecretString> =
            match &*self.rejected.lock().unwrap_or_else(|e| e.into_inner()) {
                None => return Ok(false),
                Some(Rejected::Missing) => None,
                Some(Rejected::Ticket(t)) => Some(t.clone()),
            };
        Ok(match (rejected, self.read_ticket().await?) {
            (None, stored) => stored.is_some(),
            (Some(old), Some((new, _))) => old.expose_secret() != new.expose_secret(),
            (Some(_), None) => false,
        })
    }

    fn fetch_error(&self, e: FetchError) -> TokenError {
        match e {
            FetchError::Api { errcode, errmsg } => {
                match misconfiguration_hint(errcode, &self.component_appid) {
                    Some(hint) => {
                        self.counters.misconfigured.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(errcode, %hint, "component token fetch rejected");
                        TokenError::Misconfigured {
                            errcode: Some(errcode),
                            hint,
                        }
                    }
                    None => TokenError::Transient {
                        operation: "fetching the component access token",
                        message: format!("WeChat answered errcode {errcode} ({errmsg})"),
                    },
                }
            }
            FetchError::Other(message) => TokenError::Transient {
                operation: "fetching the component access token",
                message,
            },
        }
    }

    async fn token_impl(&self) -> Result<AccessToken, TokenError> {
        let seen_epoch = self.epoch.load(Ordering::Acquire);
        let now = self.now_ms();
        if let Some(t) = self.local_get(Some(self.settings.local_ttl))
            && self.is_fresh(&t, now)
        {
            return Ok(t);
        }
        let cached = self.read_cached().await?;
        if let Some(t) = &cached
            && self.is_fresh(t, now)
        {
            self.local_set(Some(t));
            return Ok(t.clone());
        }
        self.refresh(cached, seen_epoch).await
    }

    async fn invalidate_impl(&self, failed: &AccessToken) -> Result<bool, TokenError> {
        // Whatever Redis holds, this process must not hand out `failed` again.
        {
            let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
            if local.as_ref().is_some_and(|l| {
                l.token.generation() == failed.generation()
                    && l.token.fetched_at_ms() == failed.fetched_at_ms()
            }) {
                *local = None;
            }
        }
        let deleted = self
            .store
            .invalidate_token(failed.generation(), failed.fetched_at_ms())
            .await
            .map_err(TokenError::redis("invalidating the cached component token"))?;
        if deleted {
            self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                generation = failed.generation(),
                "WeChat rejected the cached token; dropped it"
            );
        }
        Ok(deleted)
    }

    async fn status_impl(&self) -> Result<TokenStatus, TokenError> {
        let cached = self.read_cached().await?;
        let now = self.now_ms();
        let cached = cached.filter(|t| Self::is_valid(t, now));
        Ok(TokenStatus {
            mode: TokenMode::Component,
            cached: cached.is_some(),
            generation: cached.as_ref().map(AccessToken::generation),
            fetched_at_ms: cached.as_ref().map(AccessToken::fetched_at_ms),
            expires_at_ms: cached.as_ref().and_then(AccessToken::expires_at_ms),
        })
    }
}

impl TokenProvider for ComponentTokenProvider {
    fn token(&self) -> BoxFuture<'_, Result<AccessToken, TokenError>> {
        Box::pin(self.token_impl())
    }

    fn invalidate<'a>(
        &'a self,
        failed: &'a AccessToken,
    ) -> BoxFuture<'a, Result<bool, TokenError>> {
        Box::pin(self.invalidate_impl(failed))
    }

    fn status(&self) -> BoxFuture<'_, Result<TokenStatus, TokenError>> {
        Box::pin(self.status_impl())
    }

    fn ticket_replaced(&self) -> BoxFuture<'_, Result<bool, TokenError>> {
        Box::pin(self.ticket_replaced_impl())
    }

    fn counters(&self) -> TokenCounters {
        let c = &self.counters;
        TokenCounters {
            refreshes: c.refreshes.load(Ordering::Relaxed),
            waits: c.waits.load(Ordering::Relaxed),
            fetch_errors: c.fetch_errors.load(Ordering::Relaxed),
            misconfigured: c.misconfigured.load(Ordering::Relaxed),
            invalidations: c.invalidations.load(Ordering::Relaxed),
            ticket_requests: c.ticket_requests.load(Ordering::Relaxed),
        }
    }
}
