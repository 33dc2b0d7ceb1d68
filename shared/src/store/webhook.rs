//! The webhook delivery schedule: which events still have to be POSTed to which endpoint, and
//! when each is tried next.
//!
//! Keys (see [`Keys::webhook_endpoint`](super::Keys::webhook_endpoint)): per endpoint a `due`
//! zset (event id → next attempt, or lease deadline while claimed), an `info` hash (event id →
//! delivery record JSON, with the event body as written on the stream), a `lease` hash (event id
//! → fencing token of its claim), a `dead` zset and a `pending` zset (event id → when the event
//! was written, for the oldest undelivered age); queue-wide `webhook:fence`,
//! `webhook:endpoints` and `webhook:errors`. Four scripts change them: intake (schedule events
//! read from the stream for every endpoint and ack them), claim (lease due deliveries of one
//! endpoint), settle (delivered / retry at / dead, fenced) and revive (dead → due).

use std::sync::LazyLock;

use redis::{Script, ScriptInvocation};

use super::{Queue, StoreError};
use crate::clock::iso8601;

struct Scripts {
    intake: Script,
    claim: Script,
    settle: Script,
    revive: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    intake: lua!(webhook "webhook_intake.lua"),
    claim: lua!(webhook "webhook_claim.lua"),
    settle: lua!(webhook "webhook_settle.lua"),
    revive: lua!(webhook "webhook_revive.lua"),
});

/// One stream entry given to [`Queue::webhook_intake`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookIntake<'a> {
    /// The stream entry id (acked).
    pub entry_id: &'a str,
    /// The event's stable id, which names its deliveries; `None` to only ack the entry (a
    /// malformed one).
    pub event_id: Option<&'a str>,
    /// When the event was written (ms).
    pub written_ms: u64,
    /// The delivery record (JSON).
    pub record: String,
}

/// What became of one delivery attempt, for [`Queue::webhook_settle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookSettle {
    /// A 2xx answer: the record is removed.
    Delivered,
    /// Try again at `at_ms`, with this updated record.
    Retry {
        /// When (ms).
        at_ms: u64,
        /// The record (JSON).
        record: String,
    },
    /// Given up (max age or attempts): the record moves to the dead set.
    Dead {
        /// The record (JSON).
        record: String,
    },
}

/// One endpoint's figures, read with O(1) commands (plus one `ZRANGE … 0 0`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookEndpointStats {
    /// The endpoint id.
    pub endpoint: String,
    /// Its URL (password hidden), as the workers registered it; empty when unknown.
    pub url: String,
    /// Deliveries not yet made and not dead.
    pub backlog: u64,
    /// Deliveries being attempted right now (claimed).
    pub in_flight: u64,
    /// Dead deliveries.
    pub dead: u64,
    /// When the oldest undelivered event was written (ms).
    pub oldest_ms: Option<u64>,
    /// The last failed attempt: JSON `{at_ms, error}`.
    pub last_error: Option<String>,
}

impl Queue {
    fn webhook_invocation(
        &self,
        script: &'static Script,
        endpoints: &[&str],
        now: u64,
    ) -> ScriptInvocation<'static> {
        let k = self.keys();
        let mut inv = script.prepare_invoke();
        inv.key(k.events())
            .key(k.webhook_fence())
            .key(k.webhook_endpoints())
            .key(k.webhook_errors());
        for ep in endpoints {
            for key in k.webhook_endpoint(ep) {
                inv.key(key);
            }
        }
        inv.arg(now)
            .arg(iso8601(now))
            .arg(k.prefix())
            .arg(self.settings().events_maxlen.max(1));
        inv
    }

    /// Registers endpoint ids and their (password-hidden) URLs for `envshare webhooks status`.
    pub async fn webhook_register(&self, endpoints: &[(String, String)]) -> Result<(), StoreError> {
        if endpoints.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("HSET");
        cmd.arg(self.keys().webhook_endpoints());
        for (id, url) in endpoints {
            cmd.arg(id).arg(url);
        }
        cmd.query_async::<()>(&mut self.connection())
            .await
            .map_err(StoreError::redis("webhook register"))
    }

    /// Schedules every entry with an event id for each of `endpoints` and acks every entry for
    /// `group`, in one script. Returns the deliveries scheduled.
    pub async fn webhook_intake(
        &self,
        group: &str,
        endpoints: &[&str],
        entries: &[WebhookIntake<'_>],
    ) -> Result<u64, StoreError> {
        if entries.is_empty() {
            return Ok(0);
        }
        let mut inv = self.webhook_invocation(&SCRIPTS.intake, endpoints, self.now_ms());
        inv.arg(group).arg(endpoints.len()).arg(entries.len());
        for e in entries {
            inv.arg(e.entry_id)
                .arg(e.event_id.unwrap_or(""))
                .arg(e.written_ms)
                .arg(&e.record);
        }
        inv.invoke_async(&mut self.connection())
            .await
            .map_err(StoreError::redis("webhook intake"))
    }

    /// Leases up to `max` due deliveries of `endpoint` for `lease_ms`. Returns the claim's
    /// fencing token and the (event id, record JSON) pairs.
    pub async fn webhook_claim(
        &self,
        endpoint: &str,
        lease_ms: u64,
        max: usize,
    ) -> Result<(String, Vec<(String, String)>), StoreError> {
        let mut inv = self.webhook_invocation(&SCRIPTS.claim, &[endpoint], self.now_ms());
        inv.arg(lease_ms).arg(max.clamp(1, 1000));
        let reply: Vec<String> = inv
            .invoke_async(&mut self.connection())
            .await
            .map_err(StoreError::redis("webhook claim"))?;
        let mut it = reply.into_iter();
        let fence = it.next().unwrap_or_default();
        let mut claimed = Vec::new();
        while let (Some(id), Some(raw)) = (it.next(), it.next()) {
            claimed.push((id, raw));
        }
        Ok((fence, claimed))
    }

    /// Applies the outcomes of attempts on `endpoint`: (event id, fence of its claim, outcome).
    /// `last_error` (JSON) becomes the endpoint's last error. Returns (applied, stale).
    pub async fn webhook_settle(
        &self,
        endpoint: &str,
        last_error: Option<&str>,
        outcomes: &[(String, String, WebhookSettle)],
    ) -> Result<(u64, u64), StoreError> {
        let mut inv = self.webhook_invocation(&SCRIPTS.settle, &[endpoint], self.now_ms());
        inv.arg(endpoint)
            .arg(last_error.unwrap_or(""))
            .arg(outcomes.len());
        for (id, fence, outcome) in outcomes {
            inv.arg(id).arg(fence);
            match outcome {
                WebhookSettle::Delivered => inv.arg("d").arg(""),
                WebhookSettle::Retry { at_ms, record } => {
                    inv.arg("r").arg(format!("{at_ms} {record}"))
                }
                WebhookSettle::Dead { record } => inv.arg("x").arg(record),
            };
        }
        inv.invoke_async(&mut self.connection())
            .await
            .map_err(StoreError::redis("webhook settle"))
    }

    /// Sends dead deliveries of `endpoint` again: (event id, reset record JSON). Ids that are not
    /// dead are skipped. Returns how many were revived.
    pub async fn webhook_revive(
        &self,
        endpoint: &str,
        entries: &[(String, String)],
    ) -> Result<u64, StoreError> {
        let mut revived = 0;
        for slice in entries.chunks(super::ADMIN_SLICE) {
            let mut inv = self.webhook_invocation(&SCRIPTS.revive, &[endpoint], self.now_ms());
            inv.arg(slice.len());
            for (id, record) in slice {
                inv.arg(id).arg(record);
            }
            let n: u64 = inv
                .invoke_async(&mut self.connection())
                .await
                .map_err(StoreError::redis("webhook revive"))?;
            revived += n;
        }
        Ok(revived)
    }

    /// The endpoints the workers registered: (id, URL), sorted by id.
    pub async fn webhook_endpoints(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut all: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(self.keys().webhook_endpoints())
            .query_async(&mut self.connection())
            .await
            .map_err(StoreError::redis("webhook endpoints"))?;
        all.sort();
        Ok(all)
    }

    /// One endpoint's backlog, in-flight and dead counts, oldest undelivered event and last
    /// error, in one round trip.
    pub async fn webhook_stats(&self, endpoint: &str) -> Result<WebhookEndpointStats, StoreError> {
        let k = self.keys();
        let [_due, _info, lease, dead, pending] = k.webhook_endpoint(endpoint);
        #[allow(clippy::type_complexity)]
        let (backlog, in_flight, dead_n, oldest, url, error): (
            u64,
            u64,
            u64,
            Vec<(String, u64)>,
            Option<String>,
            Option<String>,
        ) = redis::pipe()
            .cmd("ZCARD")
            .arg(&pending)
            .cmd("HLEN")
            .arg(&lease)
            .cmd("ZCARD")
            .arg(&dead)
            .cmd("ZRANGE")
            .arg(&pending)
            .arg(0)
            .arg(0)
            .arg("WITHSCORES")
            .cmd("HGET")
            .arg(k.webhook_endpoints())
            .arg(endpoint)
            .cmd("HGET")
            .arg(k.webhook_errors())
            .arg(endpoint)
            .query_async(&mut self.connection())
            .await
            .map_err(StoreError::redis("webhook stats"))?;
        Ok(WebhookEndpointStats {
            endpoint: endpoint.to_owned(),
            url: url.unwrap_or_default(),
            backlog,
            in_flight,
            dead: dead_n,
            oldest_ms: oldest.first().map(|(_, ms)| *ms),
            last_error: error,
        })
    }

    /// Dead deliveries of `endpoint`, oldest death first: (event id, died ms, record JSON), up
    /// to `limit`.
    pub async fn webhook_dead(
        &self,
        endpoint: &str,
        limit: usize,
    ) -> Result<Vec<(String, u64, Option<String>)>, StoreError> {
        let [_due, info, _lease, dead, _pending] = self.keys().webhook_endpoint(endpoint);
        let mut conn = self.connection();
        let ids: Vec<(String, u64)> = redis::cmd("ZRANGE")
            .arg(&dead)
            .arg(0)
            .arg(limit.max(1) as i64 - 1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .map_err(StoreError::redis("webhook dead list"))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(super::ADMIN_SLICE) {
            let records: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(&info)
                .arg(chunk.iter().map(|(id, _)| id).collect::<Vec<_>>())
                .query_async(&mut conn)
                .await
                .map_err(StoreError::redis("webhook dead list"))?;
            for ((id, ms), record) in chunk.iter().zip(records) {
                out.push((id.clone(), *ms, record));
            }
        }
        Ok(out)
    }
}
