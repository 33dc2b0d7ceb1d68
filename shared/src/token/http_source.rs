//! `http` mode: the token a token service hands out (`GET ENVSHARE_TOKEN_URL`).
//!
//! The service answers `{"component_access_token": "…", "expires_in": N}` (seconds), with
//! `Authorization: Bearer ENVSHARE_TOKEN_URL_AUTH` when that is set. The answer is kept in the
//! process until shortly before it expires (a minute, or half its life when that is shorter).
//! After WeChat rejected a token, the next request carries `?stale=<sha256 hex of that token>`
//! so the service knows to refresh rather than hand out the same one. One request at a time per
//! process: concurrent callers wait for it and share its answer.
//!
//! Errors name the HTTP status or what was wrong with the answer, never the body (it may hold a
//! token) nor the URL's query.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};

use super::external::{Rejected, parse_token_value};
use super::redis_source::ExternalTokenSettings;
use super::{AccessToken, TokenCounters, TokenError, TokenMode, TokenProvider, TokenStatus};
use crate::clock::{Clock, SystemClock};

/// The largest answer read from the token service.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How long before its expiry a token is asked for again (at most half its life).
const RENEW_AHEAD_MS: u64 = 60_000;

/// The `http` token source. See the [module documentation](self).
pub struct HttpTokenProvider {
    http: reqwest::Client,
    url: reqwest::Url,
    auth: Option<SecretString>,
    settings: ExternalTokenSettings,
    /// The token and when to ask again (Unix ms).
    cached: Mutex<Option<(AccessToken, u64)>>,
    /// The hash of the last token WeChat rejected, sent once as `?stale=`.
    stale: Mutex<Option<String>>,
    rejected: Rejected,
    flight: tokio::sync::Mutex<()>,
    counters: Counters,
    clock: Arc<dyn Clock>,
}

#[derive(Default)]
struct Counters {
    fetches: AtomicU64,
    errors: AtomicU64,
    misconfigured: AtomicU64,
    invalidations: AtomicU64,
}

impl std::fmt::Debug for HttpTokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTokenProvider")
            .field("url", &self.url_shown())
            .finish_non_exhaustive()
    }
}

/// Why an [`HttpTokenProvider`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpSourceError {
    /// `ENVSHARE_TOKEN_URL` is not an http(s) URL.
    #[error("ENVSHARE_TOKEN_URL is not an http(s) URL")]
    Url,
    /// reqwest could not build its client.
    #[error("could not build the HTTP client for ENVSHARE_TOKEN_URL")]
    Client(#[source] reqwest::Error),
}

/// The answer of the token service.
#[derive(serde::Deserialize)]
struct Answer {
    component_access_token: Option<String>,
    expires_in: Option<u64>,
}

impl HttpTokenProvider {
    /// A source asking `url` (with bearer `auth`, if any).
    pub fn new(
        url: &str,
        auth: Option<SecretString>,
        settings: ExternalTokenSettings,
    ) -> Result<Self, HttpSourceError> {
        let url = reqwest::Url::parse(url).map_err(|_| HttpSourceError::Url)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpSourceError::Url);
        }
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout)
            // A redirect could carry the bearer token to another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("envshare/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(HttpSourceError::Client)?;
        Ok(Self {
            http,
            url,
            auth,
            settings,
            cached: Mutex::new(None),
            stale: Mutex::new(None),
            rejected: Rejected::default(),
            flight: tokio::sync::Mutex::new(()),
            counters: Counters::default(),
            clock: Arc::new(SystemClock),
        })
    }

    /// Reads time from `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The URL without its query or user info, for messages.
    fn url_shown(&self) -> String {
        let mut u = self.url.clone();
        u.set_query(None);
        let _ = u.set_password(None);
        let _ = u.set_username("");
        u.to_string()
    }

    fn cached(&self, now: u64) -> Option<AccessToken> {
        let cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        cached
            .as_ref()
            .filter(|(t, renew_at)| now < *renew_at && !self.rejected.contains(t.secret()))
            .map(|(t, _)| t.clone())
    }

    fn fail(&self, misconfigured: bool, message: String) -> TokenError {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        if misconfigured {
            self.counters.misconfigured.fetch_add(1, Ordering::Relaxed);
            TokenError::Misconfigured {
                errcode: None,
                hint: message,
            }
        } else {
            TokenError::Transient {
                operation: "getting the token from ENVSHARE_TOKEN_URL",
                message,
            }
        }
    }

    /// One `GET`, with `?stale=` when a rejected token is pending.
    async fn fetch(&self) -> Result<AccessToken, TokenError> {
        let stale = self.stale.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut url = self.url.clone();
        if let Some(hash) = &stale {
            url.query_pairs_mut().append_pair("stale", hash);
        }
        let mut request = self.http.get(url);
        if let Some(auth) = &self.auth {
            request = request.bearer_auth(auth.expose_secret());
        }
        self.counters.fetches.fetch_add(1, Ordering::Relaxed);
        let shown = self.url_shown();
        let mut response = request.send().await.map_err(|e| {
            let e = e.without_url();
            let what = if e.is_timeout() {
                format!(
                    "no answer from {shown} within {:?}",
                    self.settings.request_timeout
                )
            } else if e.is_connect() {
                format!("cannot connect to {shown}")
            } else {
                format!("request to {shown} failed")
            };
            self.fail(false, what)
        })?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(self.fail(
                true,
                format!(
                    "the token service {shown} refused envshare (HTTP {}): set \
                     ENVSHARE_TOKEN_URL_AUTH to the bearer token it expects; workers resume by \
                     themselves once it accepts",
                    status.as_u16()
                ),
            ));
        }
        if !status.is_success() {
            return Err(self.fail(
                false,
                format!(
                    "the token service {shown} answered HTTP {}",
                    status.as_u16()
                ),
            ));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
        {
            return Err(self.fail(false, format!("the answer of {shown} is too large")));
        }
        let mut body = Vec::new();
        loop {
            let chunk = response
                .chunk()
                .await
                .map_err(|_| self.fail(false, format!("reading the answer of {shown} failed")))?;
            let Some(chunk) = chunk else { break };
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(self.fail(false, format!("the answer of {shown} is too large")));
            }
            body.extend_from_slice(&chunk);
        }
        let answer: Answer = serde_json::from_slice(&body).map_err(|_| {
            self.fail(
                false,
                format!(
                    "the answer of {shown} is not the expected JSON \
                     {{\"component_access_token\",\"expires_in\"}}"
                ),
            )
        })?;
        let (Some(token), Some(expires_in)) = (answer.component_access_token, answer.expires_in)
        else {
            return Err(self.fail(
                false,
                format!(
                    "the answer of {shown} lacks component_access_token or expires_in \
                     (expected {{\"component_access_token\",\"expires_in\"}})"
                ),
            ));
        };
        let parsed = parse_token_value(token.as_bytes()).map_err(|e| {
            self.fail(
                false,
                format!("the component_access_token of {shown} is not a token: {e}"),
            )
        })?;
        if self.rejected.contains(&parsed.token) {
            return Err(self.fail(
                false,
                format!(
                    "{shown} handed out the token WeChat just rejected{}",
                    if stale.is_some() {
                        " although it was told with ?stale="
                    } else {
                        ""
                    }
                ),
            ));
        }
        // The service heard about the rejected token and answered with another one.
        if stale.is_some() {
            *self.stale.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        let now = self.clock.now_ms();
        let life = expires_in.saturating_mul(1000).max(1);
        let expires_at = now + life;
        let renew_at = expires_at - RENEW_AHEAD_MS.min(life / 2);
        let token = AccessToken::external(parsed.token, now, Some(expires_at));
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = Some((token.clone(), renew_at));
        Ok(token)
    }

    async fn token_impl(&self) -> Result<AccessToken, TokenError> {
        if let Some(t) = self.cached(self.clock.now_ms()) {
            return Ok(t);
        }
        let _flight = self.flight.lock().await;
        // Whoever held the flight before may have fetched already.
        if let Some(t) = self.cached(self.clock.now_ms()) {
            return Ok(t);
        }
        self.fetch().await
    }

    fn invalidate_impl(&self, failed: &AccessToken) -> bool {
        let hash = self.rejected.add(failed.secret());
        *self.stale.lock().unwrap_or_else(|e| e.into_inner()) = Some(hash);
        self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            url = %self.url_shown(),
            "WeChat rejected the token from the token service; asking it again with ?stale="
        );
        true
    }

    async fn status_impl(&self) -> Result<TokenStatus, TokenError> {
        let t = self.token_impl().await?;
        Ok(TokenStatus {
            mode: TokenMode::Http,
            cached: true,
            generation: None,
            fetched_at_ms: Some(t.fetched_at_ms()),
            expires_at_ms: t.expires_at_ms(),
        })
    }
}

impl TokenProvider for HttpTokenProvider {
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
            refreshes: c.fetches.load(Ordering::Relaxed),
            waits: 0,
            fetch_errors: c.errors.load(Ordering::Relaxed),
            misconfigured: c.misconfigured.load(Ordering::Relaxed),
            invalidations: c.invalidations.load(Ordering::Relaxed),
            ticket_requests: 0,
        }
    }
}
