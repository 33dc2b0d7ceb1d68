//! The sandbox's pushes to a callback URL, as WeChat pushes to a platform's authorization event
//! URL: each message encrypted and signed (WXBizMsgCrypt) with the receiver's Token and
//! EncodingAESKey, posted with `timestamp`, `nonce`, `encrypt_type=aes` and `msg_signature`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;

use super::Shared;
use super::config::CallbackPush;
use crate::wechat::callback::{authorization_xml, envelope_xml, ticket_xml};
use crate::wechat::crypt::MsgCrypt;

/// What the callback answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The body (`success` when the push was taken).
    pub body: String,
}

impl PushAnswer {
    /// Whether the receiver answered `200 success`.
    pub fn is_success(&self) -> bool {
        self.status == 200 && self.body == "success"
    }
}

/// Why a push could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// [`SandboxConfig::callback`](super::SandboxConfig::callback) is not set.
    #[error("sandbox: no callback is configured to push to")]
    NotConfigured,
    /// The configured EncodingAESKey is unusable.
    #[error("sandbox: the callback's EncodingAESKey {0}")]
    Key(#[from] crate::wechat::crypt::KeyError),
    /// The POST failed.
    #[error("sandbox: pushing to the callback failed: {0}")]
    Http(String),
}

/// An authorization change the sandbox can push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationChange {
    /// `authorized`.
    Authorized,
    /// `updateauthorized`.
    Updated,
    /// `unauthorized`.
    Unauthorized,
}

impl AuthorizationChange {
    /// The `InfoType`.
    pub fn info_type(self) -> &'static str {
        match self {
            AuthorizationChange::Authorized => "authorized",
            AuthorizationChange::Updated => "updateauthorized",
            AuthorizationChange::Unauthorized => "unauthorized",
        }
    }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The callback configuration and the platform's appid, read under the lock.
fn target(shared: &Shared) -> Result<(CallbackPush, String), PushError> {
    let state = shared.lock();
    let push = state
        .config
        .callback
        .clone()
        .ok_or(PushError::NotConfigured)?;
    Ok((push, state.config.component_appid.clone()))
}

/// Encrypts, signs and posts `xml` (a message for the configured platform).
pub(super) async fn push_xml(shared: &Shared, xml: &str) -> Result<PushAnswer, PushError> {
    let (target, appid) = target(shared)?;
    let crypt = MsgCrypt::new(
        target.token.as_str().into(),
        &target.aes_key,
        appid.as_str(),
    )?;
    let encrypt = crypt.encrypt(xml.as_bytes());
    let timestamp = now_s().to_string();
    let nonce = rand::rng()
        .random_range(100_000_000u32..4_000_000_000)
        .to_string();
    let signature = crypt.signature(&timestamp, &nonce, &encrypt);
    let answer = shared
        .http
        .post(&target.url)
        .query(&[
            ("timestamp", timestamp.as_str()),
            ("nonce", nonce.as_str()),
            ("encrypt_type", "aes"),
            ("msg_signature", signature.as_str()),
        ])
        .header("content-type", "text/xml")
        .body(envelope_xml(&appid, &encrypt))
        .send()
        .await
        .map_err(|e| PushError::Http(e.without_url().to_string()))?;
    let status = answer.status().as_u16();
    let body = answer
        .text()
        .await
        .map_err(|e| PushError::Http(e.without_url().to_string()))?;
    Ok(PushAnswer { status, body })
}

/// Makes a new verify ticket (accepted by `api_component_token` from now on) and pushes it.
pub(super) async fn push_ticket(shared: &Shared) -> Result<PushAnswer, PushError> {
    let (_, appid) = target(shared)?;
    let ticket = shared.lock().new_ticket();
    push_xml(shared, &ticket_xml(&appid, now_s(), &ticket)).await
}

/// Pushes an authorization change of the Mini Program `authorizer`.
pub(super) async fn push_authorization(
    shared: &Shared,
    change: AuthorizationChange,
    authorizer: &str,
) -> Result<PushAnswer, PushError> {
    let (_, appid) = target(shared)?;
    let xml = authorization_xml(&appid, now_s(), change.info_type(), authorizer);
    push_xml(shared, &xml).await
}

/// Pushes a ticket every `period`, the first at once, until the sandbox stops. A failed push is
/// logged and tried again at the next period, as WeChat does.
pub(super) async fn every(shared: std::sync::Arc<Shared>, period: Duration) {
    let mut stop = shared.shutdown.subscribe();
    loop {
        match push_ticket(&shared).await {
            Ok(a) if a.is_success() => {}
            Ok(a) => {
                tracing::warn!(status = a.status, body = %a.body, "sandbox: the callback refused a pushed ticket")
            }
            Err(e) => tracing::warn!(error = %e, "sandbox: pushing a ticket failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}
