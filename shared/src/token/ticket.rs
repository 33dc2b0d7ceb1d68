//! Asking WeChat to push a verify ticket (`api_start_push_ticket`), at most once per
//! [`TICKET_REQUEST_INTERVAL`] across every worker and `envshare ticket request`.
//!
//! WeChat pushes a `component_verify_ticket` to the platform's callback URL every 10 minutes
//! once pushing is started; a ticket lives 12 hours. When none is stored, or the stored one is
//! older than that, asking for a push is the way to get one without an operator. The claim is a
//! Redis key set with `SET NX PX` for the interval, so one caller per interval makes the call,
//! whatever the number of processes; the claim is kept when the call fails, so a failing call is
//! not repeated by every worker.

use std::time::Duration;

use secrecy::SecretString;

use crate::store::{StoreError, TokenStore};
use crate::wechat::{WechatClient, WechatError};

/// At most one `api_start_push_ticket` call per this interval, across all processes.
pub const TICKET_REQUEST_INTERVAL: Duration = Duration::from_secs(600);

/// A verify ticket lives this long after WeChat pushed it.
pub const TICKET_LIFE: Duration = Duration::from_secs(12 * 3600);

/// What [`request_ticket_push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketPush {
    /// This caller asked WeChat; the ticket arrives at the callback URL.
    Requested,
    /// Somebody asked less than [`TICKET_REQUEST_INTERVAL`] ago; nothing was sent.
    Skipped {
        /// How long until the next ask is allowed (ms), when known.
        retry_in_ms: Option<u64>,
    },
}

/// Why no push could be asked for.
#[derive(Debug, thiserror::Error)]
pub enum TicketPushError {
    /// Redis failed (nothing was sent). Retryable.
    #[error("claiming the ticket request in Redis failed")]
    Redis(#[source] StoreError),
    /// WeChat refused or could not be reached. The claim stands: the next ask is allowed after
    /// the interval.
    #[error("api_start_push_ticket failed")]
    Wechat(#[source] WechatError),
}

/// Asks WeChat to push a verify ticket for platform `component_appid`, unless somebody did
/// within [`TICKET_REQUEST_INTERVAL`].
pub async fn request_ticket_push(
    store: &TokenStore,
    client: &WechatClient,
    component_appid: &str,
    secret: &SecretString,
) -> Result<TicketPush, TicketPushError> {
    let owner = format!("{:032x}", rand::random::<u128>());
    let interval_ms = TICKET_REQUEST_INTERVAL.as_millis() as u64;
    let claimed = store
        .claim_ticket_request(&owner, interval_ms)
        .await
        .map_err(TicketPushError::Redis)?;
    if !claimed {
        let retry_in_ms = store
            .ticket_request_wait_ms()
            .await
            .map_err(TicketPushError::Redis)?;
        return Ok(TicketPush::Skipped { retry_in_ms });
    }
    client
        .start_push_ticket(component_appid, secret)
        .await
        .map_err(TicketPushError::Wechat)?;
    Ok(TicketPush::Requested)
}

/// Whether a ticket stored at `set_at_ms` (when known) is past its life at `now_ms`. A ticket
/// of unknown age is not: it was stored by an older version and is tried as it is.
pub fn ticket_is_old(set_at_ms: Option<u64>, now_ms: u64) -> bool {
    set_at_ms.is_some_and(|s| now_ms.saturating_sub(s) >= TICKET_LIFE.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_is_old_after_twelve_hours() {
        let h = 3_600_000;
        assert!(!ticket_is_old(Some(0), 12 * h - 1));
        assert!(ticket_is_old(Some(0), 12 * h));
        assert!(!ticket_is_old(None, 100 * h));
        assert!(
            !ticket_is_old(Some(5 * h), 2 * h),
            "a clock step back is not age"
        );
    }
}
