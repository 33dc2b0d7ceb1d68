//! The Redis side of the WeChat callback (`envshare serve`): each verified push is applied by one
//! script, `lua/callback_apply.lua`, that also remembers the push's nonce for the replay window.
//!
//! Keys (from [`Keys`](super::Keys)): `callback:nonce:NONCE` holds the `msg_signature` of the
//! push that used the nonce; `callback:seen:ID` marks an `app.*` event as written; the ticket
//! hash gets `create_time` (WeChat's `CreateTime` of the stored ticket) besides `ticket` and
//! `set_at`; `stats` counts `callback_tickets`, `callback_app_events`, `callback_repeats`,
//! `callback_stale_tickets`, `callback_ignored` and `callback_rejected`.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::{Queue, StoreError};

static APPLY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/callback_apply.lua")));

/// The nonce and signature of a verified push, and how long the nonce is remembered.
#[derive(Debug, Clone, Copy)]
pub struct Replay<'a> {
    /// The `nonce` query parameter (checked by the caller: `[A-Za-z0-9_-]`, 1 to 64).
    pub nonce: &'a str,
    /// The `msg_signature` query parameter.
    pub signature: &'a str,
    /// How long the nonce is remembered.
    pub ttl: Duration,
}

/// What a verified push writes.
#[derive(Debug, Clone, Copy)]
pub enum CallbackWrite<'a> {
    /// Store `ticket` (WeChat's `CreateTime` `create_time`, Unix seconds) unless the stored
    /// ticket is as new or newer.
    Ticket {
        /// The verify ticket.
        ticket: &'a str,
        /// Its `CreateTime`.
        create_time: u64,
    },
    /// Append an event to the stream unless its id was written within `seen_ttl`.
    Event {
        /// The stable event id.
        id: &'a str,
        /// The event type (the entry's `type` field).
        kind: &'a str,
        /// The event JSON (the entry's `event` field).
        json: &'a str,
        /// How long the id is remembered.
        seen_ttl: Duration,
    },
    /// Nothing but a count in `stats` under `counter`.
    Ignore {
        /// The `stats` field to increment.
        counter: &'a str,
    },
}

/// What [`Queue::callback_apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Written (ticket stored, event appended, ignored push counted).
    Applied,
    /// The same push (same nonce and signature), or the same ticket or event again: nothing
    /// written.
    Repeat,
    /// A ticket no newer than the stored one: the stored ticket stays.
    NotNewer,
    /// The nonce was used by another push within the replay window: nothing written.
    NonceReused,
}

impl Queue {
    /// Applies a verified push and remembers its nonce, in one script (see the module docs).
    pub async fn callback_apply(
        &self,
        replay: Replay<'_>,
        write: CallbackWrite<'_>,
    ) -> Result<Applied, StoreError> {
        let op = "apply callback";
        let k = &self.keys;
        let seen_key = match write {
            CallbackWrite::Event { id, .. } => k.callback_seen(id),
            // Unused by the script, but in the queue's slot like every key it gets.
            _ => k.callback_seen(""),
        };
        let mut inv = APPLY.prepare_invoke();
        inv.key(k.ticket())
            .key(k.callback_nonce(replay.nonce))
            .key(seen_key)
            .key(k.stats())
            .key(k.events())
            .arg(replay.signature)
            .arg((replay.ttl.as_millis() as u64).max(1));
        match write {
            CallbackWrite::Ticket {
                ticket,
                create_time,
            } => {
                inv.arg("ticket")
                    .arg(ticket)
                    .arg(create_time)
                    .arg(self.now_ms());
            }
            CallbackWrite::Event {
                kind,
                json,
                seen_ttl,
                ..
            } => {
                inv.arg("event")
                    .arg(kind)
                    .arg(json)
                    .arg((seen_ttl.as_millis() as u64).max(1))
                    .arg(self.settings.events_maxlen.max(1));
            }
            CallbackWrite::Ignore { counter } => {
                inv.arg("ignore").arg(counter);
            }
        }
        let code: i64 = self.run(op, &inv).await?;
        match code {
            1 => Ok(Applied::Applied),
            2 => Ok(Applied::Repeat),
            3 => Ok(Applied::NotNewer),
            -1 => Ok(Applied::NonceReused),
            other => Err(StoreError::reply(op, format!("unexpected answer {other}"))),
        }
    }

    /// Whether the `app.*` event `id` was written within its seen window.
    pub async fn callback_seen(&self, id: &str) -> Result<bool, StoreError> {
        redis::cmd("EXISTS")
            .arg(self.keys.callback_seen(id))
            .query_async(&mut self.connection())
            .await
            .map_err(StoreError::redis("read callback event id"))
    }
}
