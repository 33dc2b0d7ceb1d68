//! `batchgetenvid` calls through the global rate limit and the shared token, with the handler's
//! token policy: on a token error, invalidate that token, take the fresh one, call once more.

use std::collections::HashSet;
use std::sync::Arc;

use crate::ids::{AppId, EnvId};
use crate::throttle::{RateLimiter, ThrottleError};
use crate::token::{TokenError, TokenProvider};
use crate::wechat::{EnvIdsResponse, ErrorClass, WechatClient, WechatError};

/// Why a binding check failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// No rate limit slot (Redis failed). Retryable.
    #[error("checking bindings: no rate limit slot (transient, retry later)")]
    Throttle(#[source] ThrottleError),
    /// No access token. Retryable unless misconfigured.
    #[error("checking bindings: no access token")]
    Token(#[source] TokenError),
    /// `batchgetenvid` failed. Retryable when the error is transient, a token error or 45009.
    #[error("checking bindings: batchgetenvid failed")]
    Wechat(#[source] WechatError),
}

impl CheckError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            CheckError::Throttle(_) => true,
            CheckError::Token(e) => e.is_retryable(),
            CheckError::Wechat(e) => !matches!(e.class(), ErrorClass::Permanent),
        }
    }
}

/// Asks WeChat which envs appids are bound to (confirmed bindings only). Cheap to clone.
#[derive(Clone)]
pub struct BindingChecker {
    client: WechatClient,
    tokens: Arc<dyn TokenProvider>,
    limiter: Arc<RateLimiter>,
    batch: usize,
}

impl std::fmt::Debug for BindingChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BindingChecker")
            .field("base_url", &self.client.base_url())
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

impl BindingChecker {
    /// A checker that sends at most `batch` appids per call (at least 1).
    pub fn new(
        client: WechatClient,
        tokens: Arc<dyn TokenProvider>,
        limiter: Arc<RateLimiter>,
        batch: usize,
    ) -> Self {
        Self {
            client,
            tokens,
            limiter,
            batch: batch.max(1),
        }
    }

    /// Appids per call.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// One `batchgetenvid` call for `appids` (the caller keeps it within [`Self::batch`]): a rate
    /// limit slot, a token, the call, and once more with a fresh token after a token error.
    pub async fn get_env_ids(&self, appids: &[AppId]) -> Result<EnvIdsResponse, CheckError> {
        self.limiter.acquire().await.map_err(CheckError::Throttle)?;
        let token = self.tokens.token().await.map_err(CheckError::Token)?;
        let failed = match self.client.get_env_ids(token.secret(), appids).await {
            Ok(r) => return Ok(r),
            Err(e) if e.class() == ErrorClass::Token => e,
            Err(e) => return Err(CheckError::Wechat(e)),
        };
        // The token was refused: drop it only if it is still the cached one, and call again.
        let _ = self.tokens.invalidate(&token).await;
        let fresh = self.tokens.token().await.map_err(CheckError::Token)?;
        if fresh.expose() == token.expose() {
            return Err(CheckError::Wechat(failed));
        }
        self.client
            .get_env_ids(fresh.secret(), appids)
            .await
            .map_err(CheckError::Wechat)
    }

    /// The appids of `appids` whose confirmed bindings include `env`, in calls of at most
    /// [`Self::batch`] appids.
    pub async fn bound_to(
        &self,
        env: &EnvId,
        appids: &[AppId],
    ) -> Result<HashSet<AppId>, CheckError> {
        let mut bound = HashSet::new();
        for part in appids.chunks(self.batch) {
            let answer = self.get_env_ids(part).await?;
            bound.extend(
                part.iter()
                    .filter(|a| answer.envs_of(a.as_str()).iter().any(|e| e == env.as_str()))
                    .cloned(),
            );
        }
        Ok(bound)
    }
}
