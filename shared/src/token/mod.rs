//! The access token every WeChat call needs, behind one [`TokenProvider`] trait.
//!
//! Four sources (`ENVSHARE_TOKEN_SOURCE`):
//!
//! - [`FixedTokenProvider`] (`ENVSHARE_ACCESS_TOKEN`): a token given as is (tests).
//!   Invalidating it does nothing, so a token error counts as transient (retried with backoff).
//! - [`RedisTokenProvider`] (`redis`): the token the platform's own SDK keeps under a Redis key;
//!   after a token error the key is re-read until it changes. envshare never fetches.
//! - [`HttpTokenProvider`] (`http`): the token a token service hands out over HTTP; after a
//!   token error it is asked again with `?stale=<sha256 of the rejected token>`.
//! - [`ComponentTokenProvider`] (`ENVSHARE_COMPONENT_APPID` + `ENVSHARE_COMPONENT_APPSECRET` + the
//!   verify ticket in Redis): the platform's `component_access_token`, cached in Redis for every
//!   worker and fetched by one process at a time, because WeChat invalidates the previous token
//!   on every fetch and a stampede of fetches would leave every worker with a dead token.
//!
//! The token value never reaches a log line, an error or a `Debug` output: it lives in a
//! [`SecretString`] and [`AccessToken::expose`] is called only where the HTTP request is built.

mod component;
mod external;
mod http_source;
mod redis_source;
mod ticket;

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};

use crate::config::{Settings, TokenMode as ConfigTokenMode};
use crate::store::Keys;
use crate::store::conn::RedisConn;
use crate::wechat::WechatClient;

pub use component::{ComponentTokenProvider, ComponentTokenSettings};
pub use external::sha256_hex;
pub use http_source::{HttpSourceError, HttpTokenProvider};
pub use redis_source::{ExternalTokenSettings, RedisTokenProvider};
pub use ticket::{
    TICKET_LIFE, TICKET_REQUEST_INTERVAL, TicketPush, TicketPushError, request_ticket_push,
    ticket_is_old,
};

/// An access token for WeChat calls, with where it came from.
///
/// `Debug` shows everything but the value; there is no `Display`.
#[derive(Clone)]
pub struct AccessToken {
    value: SecretString,
    generation: u64,
    fetched_at_ms: u64,
    expires_at_ms: Option<u64>,
}

impl AccessToken {
    /// A token that is not managed by envshare (fixed mode): no generation, no known expiry.
    pub fn fixed(value: SecretString) -> Self {
        Self {
            value,
            generation: 0,
            fetched_at_ms: 0,
            expires_at_ms: None,
        }
    }

    pub(crate) fn component(
        value: SecretString,
        generation: u64,
        fetched_at_ms: u64,
        expires_at_ms: u64,
    ) -> Self {
        Self {
            value,
            generation,
            fetched_at_ms,
            expires_at_ms: Some(expires_at_ms),
        }
    }

    /// A token from another program (`redis` or `http` source), read at `read_at_ms`, with
    /// its expiry when known.
    pub(crate) fn external(
        value: SecretString,
        read_at_ms: u64,
        expires_at_ms: Option<u64>,
    ) -> Self {
        Self {
            value,
            generation: 0,
            fetched_at_ms: read_at_ms,
            expires_at_ms,
        }
    }

    /// The token itself. Call only where the request URL is built, and never log the result.
    pub fn expose(&self) -> &str {
        self.value.expose_secret()
    }

    /// The token as a secret, for clients that take one (e.g. [`crate::wechat::WechatClient`]).
    pub fn secret(&self) -> &SecretString {
        &self.value
    }

    /// Which refresh produced this token (the `token_refreshes` counter after it; 0 in fixed
    /// mode, or when the fetcher lost its lock before storing it).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// When the token was fetched (Unix ms; 0 in fixed mode).
    pub fn fetched_at_ms(&self) -> u64 {
        self.fetched_at_ms
    }

    /// When WeChat said the token expires (Unix ms); `None` in fixed mode.
    pub fn expires_at_ms(&self) -> Option<u64> {
        self.expires_at_ms
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("value", &"[redacted]")
            .field("generation", &self.generation)
            .field("fetched_at_ms", &self.fetched_at_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// Why no token could be had. Messages never contain the secret, the ticket or a token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// WeChat refused the platform's credentials (IP whitelist, verify ticket, app secret), or no
    /// verify ticket is stored. Not retryable until an operator fixes the setup: pause, do not
    /// burn attempts, and try again later (a fresh ticket makes it work without a restart).
    #[error(
        "cannot get a component access token (configuration problem, not retryable until fixed): {hint}"
    )]
    Misconfigured {
        /// WeChat's errcode; `None` when no verify ticket is stored at all.
        errcode: Option<i64>,
        /// What is wrong and how to fix it.
        hint: String,
    },
    /// The token fetch failed in a way that may pass (WeChat busy, transport error, a wait for
    /// another process's fetch that timed out). Retryable.
    #[error("{operation} failed (transient, retry later): {message}")]
    Transient {
        /// What was being done.
        operation: &'static str,
        /// What went wrong.
        message: String,
    },
    /// Redis failed. Retryable.
    #[error("{operation} failed on Redis (transient, retry later)")]
    Redis {
        /// What was being done.
        operation: &'static str,
        /// The Redis error.
        #[source]
        source: crate::store::StoreError,
    },
}

impl TokenError {
    /// Whether trying again later may succeed without an operator's help.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, TokenError::Misconfigured { .. })
    }

    pub(crate) fn redis(operation: &'static str) -> impl FnOnce(crate::store::StoreError) -> Self {
        move |source| TokenError::Redis { operation, source }
    }
}

/// The hint for a token-fetch errcode that means the platform is misconfigured (IP whitelist,
/// app secret, verify ticket), or `None` if the errcode is not one of them.
pub fn misconfiguration_hint(errcode: i64, component_appid: &str) -> Option<String> {
    let hint = match errcode {
        61004 => format!(
            "WeChat refused the token request from this host's IP address (61004: IP not \
             whitelisted). Add every worker host's egress IP to the whitelist of third-party \
             platform {component_appid} in the WeChat Open Platform console; workers resume by \
             themselves once it is accepted."
        ),
        61005 => "WeChat rejected the component_verify_ticket (61005: ticket expired; a ticket \
             lives 12 h). Store a fresh ticket with `envshare ticket set TICKET` (WeChat pushes \
             one to the platform's callback URL every 10 minutes; workers ask for a push \
             themselves, or run `envshare ticket request`); workers resume by themselves."
            .to_owned(),
        61006 => format!(
            "WeChat rejected the component_verify_ticket (61006: ticket invalid). Store the \
             latest ticket pushed for platform {component_appid} with `envshare ticket set \
             TICKET`; workers resume by themselves."
        ),
        40001 | 40125 => format!(
            "WeChat rejected the app secret of platform {component_appid} ({errcode}: invalid \
             appsecret). Set ENVSHARE_COMPONENT_APPSECRET to the current secret from the WeChat \
             Open Platform console (it changes when reset there) and restart the workers."
        ),
        41004 => format!(
            "WeChat received no app secret for platform {component_appid} (41004: appsecret \
             missing). Set ENVSHARE_COMPONENT_APPSECRET and restart the workers."
        ),
        _ => return None,
    };
    Some(hint)
}

/// What the reason of a pause caused by a ticket problem tells the operator to run: only such a
/// pause is lifted by storing a ticket; a bad secret, the IP whitelist or the daily quota are not
/// fixed by a new ticket.
pub const TICKET_FIX: &str = "envshare ticket set";

/// Stores the component verify ticket in `queue`'s Redis (field `ticket`, with `set_at` from the
/// queue's clock), then lifts a pause that was waiting for a ticket, so workers resume at once
/// instead of at their next re-check. Returns the pause lifted, if any.
pub async fn store_ticket(
    queue: &crate::store::Queue,
    ticket: &SecretString,
) -> Result<Option<crate::store::Pause>, crate::store::StoreError> {
    queue
        .token_store()
        .set_ticket(ticket.expose_secret(), queue.now_ms())
        .await?;
    lift_ticket_pause(queue).await
}

/// Lifts the queue's pause if it is waiting for a verify ticket (its reason names
/// [`TICKET_FIX`]); any other pause (manual, quota, another misconfiguration) stays. Returns the
/// pause lifted, if any.
///
/// Whoever stores a ticket calls it after the store, and a worker that paused for a rejected
/// ticket checks for a newer ticket after writing its pause: whichever of the two writes lands
/// second, its writer sees the other, so a ticket that arrives while a worker is pausing never
/// leaves the pause standing until the re-check.
pub async fn lift_ticket_pause(
    queue: &crate::store::Queue,
) -> Result<Option<crate::store::Pause>, crate::store::StoreError> {
    let pause = queue.pause_in_force().await?;
    match pause.filter(|p| p.reason.contains(TICKET_FIX)) {
        Some(p) => {
            queue.resume().await?;
            Ok(Some(p))
        }
        None => Ok(None),
    }
}

/// The hint when no verify ticket is stored in Redis.
pub(crate) fn missing_ticket_hint(component_appid: &str, ticket_key: &str) -> String {
    format!(
        "no component_verify_ticket is stored for platform {component_appid} (Redis hash \
         {ticket_key}, field `ticket`). WeChat pushes a ticket to the platform's callback URL \
         every 10 minutes (workers ask for a push themselves, at most every 10 minutes; \
         `envshare ticket request` asks at once): store it with `envshare ticket set TICKET`; \
         workers resume by themselves."
    )
}

/// Which kind of token a provider hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenMode {
    /// `ENVSHARE_ACCESS_TOKEN`: a token managed elsewhere.
    Fixed,
    /// The platform's `component_access_token`, cached in Redis.
    Component,
    /// Read from the platform SDK's Redis key.
    Redis,
    /// Asked from a token service over HTTP.
    Http,
}

impl TokenMode {
    /// The `ENVSHARE_TOKEN_SOURCE` value of this mode.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenMode::Fixed => "fixed",
            TokenMode::Component => "component",
            TokenMode::Redis => "redis",
            TokenMode::Http => "http",
        }
    }
}

/// What `envshare status` and `/readyz` may show about the token (never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenStatus {
    /// The provider's mode.
    pub mode: TokenMode,
    /// Whether a usable token is cached (always true in fixed mode).
    pub cached: bool,
    /// The cached token's generation, if any.
    pub generation: Option<u64>,
    /// When the cached token was fetched (Unix ms), if any.
    pub fetched_at_ms: Option<u64>,
    /// When the cached token expires (Unix ms), if known.
    pub expires_at_ms: Option<u64>,
}

/// Counters of one provider instance since it was created, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounters {
    /// Tokens this process fetched from WeChat and stored.
    pub refreshes: u64,
    /// Calls that waited for another process's fetch instead of fetching.
    pub waits: u64,
    /// Failed fetches (any cause, misconfiguration included).
    pub fetch_errors: u64,
    /// Failed fetches that were misconfiguration (a subset of `fetch_errors`).
    pub misconfigured: u64,
    /// `invalidate` calls that deleted the cached token (`redis`/`http`: that marked a token
    /// rejected).
    pub invalidations: u64,
    /// `api_start_push_ticket` calls this process made (component mode).
    pub ticket_requests: u64,
}

/// Hands out the access token for WeChat calls. Object safe: hold it as
/// `Arc<dyn TokenProvider>`.
pub trait TokenProvider: Send + Sync {
    /// A token believed valid.
    fn token(&self) -> BoxFuture<'_, Result<AccessToken, TokenError>>;

    /// Reports that WeChat rejected `failed` (40014, 42001, 40001, 41001). The cached token is
    /// dropped only if it is still `failed`, so a worker with a stale token cannot throw away the
    /// newer one. Returns whether it was dropped; the next [`token`](Self::token) call fetches or
    /// reads the newer token.
    fn invalidate<'a>(&'a self, failed: &'a AccessToken)
    -> BoxFuture<'a, Result<bool, TokenError>>;

    /// What is known about the current token, for status pages.
    fn status(&self) -> BoxFuture<'_, Result<TokenStatus, TokenError>>;

    /// Whether the verify ticket behind this provider's last [`TokenError::Misconfigured`] (a
    /// ticket WeChat rejected, or none stored) has been replaced in Redis since: a new ticket
    /// arrived, so a pause written for the old one must not stand. Modes without a verify
    /// ticket answer `false`.
    fn ticket_replaced(&self) -> BoxFuture<'_, Result<bool, TokenError>> {
        Box::pin(async { Ok(false) })
    }

    /// Counters of this instance, for metrics.
    fn counters(&self) -> TokenCounters;
}

/// Why the provider the settings ask for could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// No token source is configured.
    #[error("no token source is configured")]
    NoSource,
    /// `ENVSHARE_TOKEN_URL` is unusable.
    #[error(transparent)]
    Http(#[from] HttpSourceError),
}

/// The provider `settings` ask for (`ENVSHARE_TOKEN_SOURCE`, or the mode inferred from
/// `ENVSHARE_ACCESS_TOKEN` / the component credentials). `conn` is the queue's Redis (the token
/// cache in component mode, the SDK's key in redis mode unless `ENVSHARE_TOKEN_REDIS_URL` is
/// set); `client` serves component mode only.
pub fn provider_for(
    settings: &Settings,
    conn: impl Into<RedisConn>,
    keys: &Keys,
    client: WechatClient,
) -> Result<Arc<dyn TokenProvider>, ProviderError> {
    let external = ExternalTokenSettings::from_settings(settings);
    Ok(match settings.token_mode() {
        ConfigTokenMode::Redis {
            key,
            url: Some(url),
        } => Arc::new(RedisTokenProvider::on_url(url, key, external)),
        ConfigTokenMode::Redis { key, url: None } => {
            Arc::new(RedisTokenProvider::new(conn, key, external))
        }
        ConfigTokenMode::Http { url, auth } => {
            Arc::new(HttpTokenProvider::new(&url, auth, external)?)
        }
        ConfigTokenMode::Fixed(token) => Arc::new(FixedTokenProvider::new(token)),
        ConfigTokenMode::Component { appid, secret } => Arc::new(ComponentTokenProvider::new(
            conn,
            keys,
            client,
            appid.as_ref(),
            secret,
            ComponentTokenSettings::from_settings(settings),
        )),
        ConfigTokenMode::None => return Err(ProviderError::NoSource),
    })
}

/// [`provider_for`], or `None` when no token source is configured or it cannot be built (an
/// unusable `ENVSHARE_TOKEN_URL`; [`provider_for`] says why).
pub fn provider_from_settings(
    settings: &Settings,
    conn: impl Into<RedisConn>,
    keys: &Keys,
    client: WechatClient,
) -> Option<Arc<dyn TokenProvider>> {
    provider_for(settings, conn, keys, client).ok()
}

/// Fixed mode: always the configured token (`ENVSHARE_ACCESS_TOKEN`).
pub struct FixedTokenProvider {
    token: AccessToken,
}

impl FixedTokenProvider {
    /// A provider that always returns `token`.
    pub fn new(token: SecretString) -> Self {
        Self {
            token: AccessToken::fixed(token),
        }
    }
}

impl fmt::Debug for FixedTokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedTokenProvider").finish_non_exhaustive()
    }
}

impl TokenProvider for FixedTokenProvider {
    fn token(&self) -> BoxFuture<'_, Result<AccessToken, TokenError>> {
        Box::pin(async move { Ok(self.token.clone()) })
    }

    fn invalidate<'a>(
        &'a self,
        _failed: &'a AccessToken,
    ) -> BoxFuture<'a, Result<bool, TokenError>> {
        // Nothing to refresh: the token is managed elsewhere.
        Box::pin(async { Ok(false) })
    }

    fn status(&self) -> BoxFuture<'_, Result<TokenStatus, TokenError>> {
        Box::pin(async {
            Ok(TokenStatus {
                mode: TokenMode::Fixed,
                cached: true,
                generation: None,
                fetched_at_ms: None,
                expires_at_ms: None,
            })
        })
    }

    fn counters(&self) -> TokenCounters {
        TokenCounters::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_access_token_debug_output_hides_the_value() {
        let t = AccessToken::component(SecretString::from("tok-SECRET-123"), 3, 10, 20);
        let debug = format!("{t:?}");
        assert!(!debug.contains("SECRET"), "{debug}");
        assert!(debug.contains("generation: 3"), "{debug}");
        assert_eq!(t.expose(), "tok-SECRET-123");
    }

    #[test]
    fn every_configuration_errcode_has_a_hint_and_others_do_not() {
        for code in [61004, 61005, 61006, 40001, 40125, 41004] {
            let hint = misconfiguration_hint(code, "wx0123456789abcdef").unwrap();
            assert!(hint.contains(&code.to_string()), "{hint}");
            assert!(crate::wechat::is_token_config_error(code), "{code}");
        }
        for code in [-1, 0, 40014, 42001, 45009, 61007] {
            assert!(misconfiguration_hint(code, "wx0123456789abcdef").is_none());
        }
    }

    #[test]
    fn a_ticket_problem_tells_the_operator_to_store_a_fresh_ticket() {
        let err = TokenError::Misconfigured {
            errcode: Some(61005),
            hint: misconfiguration_hint(61005, "wx0123456789abcdef").unwrap(),
        };
        let msg = err.to_string();
        assert!(msg.contains("envshare ticket set"), "{msg}");
        assert!(!err.is_retryable());
    }

    #[tokio::test]
    async fn the_fixed_provider_returns_its_token_and_ignores_invalidation() {
        let p = FixedTokenProvider::new(SecretString::from("fixed-token"));
        let t = p.token().await.unwrap();
        assert_eq!(t.expose(), "fixed-token");
        assert!(!p.invalidate(&t).await.unwrap());
        assert_eq!(p.token().await.unwrap().expose(), "fixed-token");
        assert_eq!(p.status().await.unwrap().mode, TokenMode::Fixed);
    }
}
