//! Every Redis key envshare uses, built here and nowhere else.
//!
//! All keys of one queue share the hash tag `{QUEUE}`, so a queue lives in one Redis Cluster slot
//! and every Lua script may touch all of them. Lua scripts that need a per-batch key receive
//! [`Keys::prefix`] and append the suffix documented on [`Keys::batch`].

use crate::ids::{BatchId, QueueName};

/// The key names of one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// The keys of queue `queue`: `envshare:{QUEUE}:…`.
    pub fn new(queue: &QueueName) -> Self {
        Self {
            prefix: format!("envshare:{{{queue}}}:"),
        }
    }

    /// `envshare:{QUEUE}:`, the prefix every key of the queue starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The queue's name (`QUEUE` in `envshare:{QUEUE}:`).
    pub fn queue_name(&self) -> &str {
        self.prefix
            .strip_prefix("envshare:{")
            .and_then(|s| s.strip_suffix("}:"))
            .unwrap_or(&self.prefix)
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// Hash: job id → job payload (JSON).
    pub fn jobs(&self) -> String {
        self.key("jobs")
    }
    /// Sorted set: job id → time it became ready (ms); claimed lowest score first.
    pub fn ready(&self) -> String {
        self.key("ready")
    }
    /// Sorted set: job id → run-at time (ms) of a job waiting for a retry or a delayed start.
    pub fn scheduled(&self) -> String {
        self.key("scheduled")
    }
    /// Sorted set: job id → lease deadline (ms) of a running job.
    pub fn running(&self) -> String {
        self.key("running")
    }
    /// Hash: job id → per-job state (attempts, fencing token, lease owner).
    pub fn state(&self) -> String {
        self.key("state")
    }
    /// String: the last fencing token handed out (INCRBY).
    pub fn fence_seq(&self) -> String {
        self.key("fence")
    }
    /// Sorted set: job id → time it died (ms).
    pub fn dead(&self) -> String {
        self.key("dead")
    }
    /// Hash: job id → why it died (JSON: reason, errcode, errmsg, attempts).
    pub fn dead_info(&self) -> String {
        self.key("dead:info")
    }
    /// Stream: the result events (docs/events.md).
    pub fn events(&self) -> String {
        self.key("events")
    }
    /// Hash: counters and state of one batch. Lua scripts build it as `prefix .. "batch:" .. id`.
    pub fn batch(&self, batch: &BatchId) -> String {
        self.key(&format!("batch:{batch}"))
    }
    /// Hash: the per-appid result rows of one batch, `env/appid` → row (lua/prelude.lua
    /// documents the row and the keys beside it, which Lua builds as `prefix .. "results:" ..
    /// id` plus a suffix).
    pub fn results(&self, batch: &BatchId) -> String {
        self.key(&format!("results:{batch}"))
    }
    /// Bitmap: the row numbers of `batch` in state `state` (`pending`, `accepted`, …).
    pub fn results_state(&self, batch: &BatchId, state: &str) -> String {
        self.key(&format!("results:{batch}:{state}"))
    }
    /// Sorted set: batch id → creation time (ms), to list batches.
    pub fn batches(&self) -> String {
        self.key("batches")
    }
    /// Sorted set: `env/appid` → end of its dedupe window (ms).
    pub fn dedupe(&self) -> String {
        self.key("dedupe")
    }
    /// Hash: the queue-wide pause (`until` ms, `reason`), e.g. after 45009.
    pub fn pause(&self) -> String {
        self.key("pause")
    }
    /// Sorted set: worker id → last heartbeat (ms).
    pub fn workers(&self) -> String {
        self.key("workers")
    }
    /// Hash: queue-wide counters (retries, token refreshes, …) for status and the demo summary.
    pub fn stats(&self) -> String {
        self.key("stats")
    }
    /// String: the cached component access token with its expiry (JSON).
    pub fn token(&self) -> String {
        self.key("token")
    }
    /// String: the single-flight lock for fetching a new token (value: owner id, with expiry).
    pub fn token_lock(&self) -> String {
        self.key("token:lock")
    }
    /// Hash: the component verify ticket (`ticket`) and when it was set (`set_at` ms).
    pub fn ticket(&self) -> String {
        self.key("ticket")
    }
    /// String: held for 10 minutes after a worker or `envshare ticket request` asked WeChat to
    /// push a verify ticket (`SET NX PX`), so all of them together ask at most that often.
    pub fn ticket_request(&self) -> String {
        self.key("ticket:request")
    }
    /// String: the answer of one enqueue slice (JSON), kept an hour, so a slice re-sent after a
    /// lost reply is applied once.
    pub fn enqueue_receipt(&self, slice: &str) -> String {
        self.key(&format!("receipt:{slice}"))
    }
    /// String: the GCRA theoretical arrival time (ms) of the global rate limit.
    pub fn rate(&self) -> String {
        self.key("rate")
    }
    /// Pub/sub channel: a message is published whenever jobs become ready (enqueue, release,
    /// reap, dead retry, resume), so idle workers can wake up instead of polling.
    pub fn wake(&self) -> String {
        self.key("wake")
    }

    /// Sorted set: confirmation schedule entry id (the `share.accepted` event id) → time of its
    /// next `batchgetenvid` check (ms); a claimed entry's score is its lease deadline.
    pub fn confirm(&self) -> String {
        self.key("confirm")
    }
    /// Hash: confirmation entry id → JSON `{env, appid, batch_id, job_id, accepted_at, checks}`.
    pub fn confirm_info(&self) -> String {
        self.key("confirm:info")
    }
    /// Hash: confirmation entry id → fencing token of the watcher that claimed it.
    pub fn confirm_lease(&self) -> String {
        self.key("confirm:lease")
    }
    /// String: the last confirmation fencing token handed out (INCR).
    pub fn confirm_fence(&self) -> String {
        self.key("confirm:fence")
    }
    /// String: how many jobs had been completed by workers that leave confirmation scheduling
    /// to the stream intake (stats `completed` − `completed_direct`) when the intake last had
    /// read the whole events stream (`confirm_follow.lua`).
    pub fn confirm_caught_up(&self) -> String {
        self.key("confirm:caught_up")
    }
    /// String: where the next sweep of batches completed by workers of earlier versions starts
    /// (a rank in [`Keys::batches`]; `confirm_follow.lua`).
    pub fn confirm_sweep(&self) -> String {
        self.key("confirm:sweep")
    }

    /// String: the last webhook delivery fencing token handed out (INCR).
    pub fn webhook_fence(&self) -> String {
        self.key("webhook:fence")
    }
    /// Hash: webhook endpoint id → its URL (password hidden), written by each worker at start.
    pub fn webhook_endpoints(&self) -> String {
        self.key("webhook:endpoints")
    }
    /// Hash: webhook endpoint id → JSON `{at_ms, error}` of the endpoint's last failed attempt.
    pub fn webhook_errors(&self) -> String {
        self.key("webhook:errors")
    }
    /// The keys of one webhook endpoint, in the order `lua/webhook_lib.lua` documents:
    /// `webhook:EP:due` (zset: event id → next attempt ms, or lease deadline while claimed),
    /// `webhook:EP:info` (hash: event id → delivery record JSON with the body),
    /// `webhook:EP:lease` (hash: event id → fencing token of its claim),
    /// `webhook:EP:dead` (zset: event id → when it was given up, ms) and
    /// `webhook:EP:pending` (zset: event id → when its event was written, ms; undelivered and
    /// not dead).
    pub fn webhook_endpoint(&self, endpoint: &str) -> [String; 5] {
        ["due", "info", "lease", "dead", "pending"]
            .map(|part| self.key(&format!("webhook:{endpoint}:{part}")))
    }
    /// String: the `msg_signature` of the WeChat callback push that used nonce `nonce`, kept for
    /// the replay window. `nonce` is checked by the caller (`[A-Za-z0-9_-]`, at most 64).
    pub fn callback_nonce(&self, nonce: &str) -> String {
        self.key(&format!("callback:nonce:{nonce}"))
    }
    /// String: marks the `app.*` event `id` as written, so a re-sent push adds no second one.
    pub fn callback_seen(&self, id: &str) -> String {
        self.key(&format!("callback:seen:{id}"))
    }

    /// String: the first answer to a `POST /api/v1/batches` with an `Idempotency-Key` whose
    /// SHA-256 is `key_hash` (hex, so any key the client sends makes a safe key name).
    pub fn idempotency(&self, key_hash: &str) -> String {
        self.key(&format!("idempotency:{key_hash}"))
    }

    /// The KEYS every queue Lua script receives, in the order `lua/lib.lua` documents.
    pub fn script_keys(&self) -> [String; 17] {
        [
            self.jobs(),
            self.ready(),
            self.scheduled(),
            self.running(),
            self.state(),
            self.fence_seq(),
            self.dead(),
            self.dead_info(),
            self.events(),
            self.dedupe(),
            self.pause(),
            self.workers(),
            self.stats(),
            self.batches(),
            self.wake(),
            self.confirm(),
            self.confirm_info(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_queue_shares_one_hash_tag() {
        let q = QueueName::parse("share").unwrap();
        let k = Keys::new(&q);
        let b = BatchId::parse("b-1").unwrap();
        for key in [
            k.jobs(),
            k.ready(),
            k.scheduled(),
            k.running(),
            k.state(),
            k.fence_seq(),
            k.dead(),
            k.dead_info(),
            k.events(),
            k.batch(&b),
            k.results(&b),
            k.results_state(&b, "pending"),
            k.batches(),
            k.dedupe(),
            k.pause(),
            k.workers(),
            k.stats(),
            k.token(),
            k.token_lock(),
            k.ticket(),
            k.ticket_request(),
            k.rate(),
            k.wake(),
            k.confirm(),
            k.confirm_info(),
            k.confirm_lease(),
            k.confirm_fence(),
            k.confirm_caught_up(),
            k.confirm_sweep(),
            k.webhook_fence(),
            k.webhook_endpoints(),
            k.webhook_errors(),
            k.callback_nonce("123"),
            k.callback_seen("app.x"),
            k.idempotency("00ff"),
        ]
        .into_iter()
        .chain(k.webhook_endpoint("0123456789abcdef"))
        {
            assert!(key.starts_with("envshare:{share}:"), "{key}");
        }
        assert_eq!(k.events(), "envshare:{share}:events");
        assert_eq!(k.queue_name(), "share");
    }
}
