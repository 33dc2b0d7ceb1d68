//! The confirmation schedule: which accepted shares are waiting for their administrator's
//! confirmation, and when each is checked next.
//!
//! Keys: `confirm` (zset: entry id → next check, or lease deadline while claimed),
//! `confirm:info` (hash: entry id → details JSON, [`ConfirmInfo`]), `confirm:lease` (hash:
//! entry id → fencing token of its claim), `confirm:fence` (the last token). An entry is added
//! by complete.lua in the step that accepts the share (`lease.rs`). The scripts here change
//! them, each with its events in the same step: claim (lease due entries), settle (bound /
//! unconfirmed / check again), and for `share.accepted` events of workers of earlier versions,
//! which did not schedule their own entries, follow (is there anything to read?) and intake
//! (schedule the entries read from the stream and ack them).

use std::sync::LazyLock;

use redis::{Script, ScriptInvocation};
use serde::{Deserialize, Serialize};

use super::stream::entry_id;
use super::{Queue, StoreError};
use crate::clock::iso8601;
use crate::ids::{AppId, BatchId, EnvId, JobId};

struct Scripts {
    follow: Script,
    intake: Script,
    claim: Script,
    settle: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    follow: lua!(confirm "confirm_follow.lua"),
    intake: lua!(confirm "confirm_intake.lua"),
    claim: lua!(confirm "confirm_claim.lua"),
    settle: lua!(confirm "confirm_settle.lua"),
});

/// One schedule entry's details (`confirm:info`), written when the share is accepted and
/// rewritten after each check.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ConfirmInfo {
    /// The environment shared.
    pub env: EnvId,
    /// The Mini Program.
    pub appid: AppId,
    /// The share's batch.
    pub batch_id: BatchId,
    /// The share job.
    pub job_id: JobId,
    /// When the share was accepted (ms).
    pub accepted_at: u64,
    /// Checks made so far.
    pub checks: u32,
    /// The trace id of the `share.accepted` event, carried by the confirmation events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// One stream entry given to [`Queue::confirm_intake`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Intake<'a> {
    /// A `share.accepted`: schedule its first check.
    Accepted {
        /// The stream entry id (acked).
        entry_id: &'a str,
        /// The event's stable id, which becomes the schedule entry's id.
        event_id: &'a str,
        /// When to check first (ms).
        due_ms: u64,
        /// The entry's details (JSON).
        info: String,
        /// The share's batch and its pair, `env/appid` (its result row: an entry whose row is
        /// bound or unconfirmed already was scheduled and settled, and is not added again).
        batch_id: &'a str,
        /// See `batch_id`.
        pair: String,
    },
    /// A `batch.completed`: the batch may be confirmed already.
    Completed {
        /// The stream entry id (acked).
        entry_id: &'a str,
        /// The batch.
        batch_id: &'a str,
    },
    /// Anything else: only acked.
    Skip {
        /// The stream entry id (acked).
        entry_id: &'a str,
    },
}

impl<'a> Intake<'a> {
    /// The stream entry id.
    fn entry_id(&self) -> &'a str {
        match self {
            Intake::Accepted { entry_id, .. }
            | Intake::Completed { entry_id, .. }
            | Intake::Skip { entry_id } => entry_id,
        }
    }
}

/// The least and the greatest stream entry id of `entries` (compared as numbers), the range of
/// the intake script's `XPENDING`: found here, where it costs next to nothing, rather than by
/// parsing ids in Lua.
fn id_range<'a>(entries: &[Intake<'a>]) -> (&'a str, &'a str) {
    let ids = entries.iter().map(Intake::entry_id);
    let first = ids
        .clone()
        .min_by_key(|id| entry_id(id))
        .unwrap_or_default();
    let last = ids.max_by_key(|id| entry_id(id)).unwrap_or_default();
    (first, last)
}

/// What became of one claimed entry, for [`Queue::confirm_settle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Settle<'a> {
    /// Bound: emit `event` (a `share.bound` JSON), count it in `batch`, and mark the pair's
    /// result row bound.
    Bound {
        /// The entry's batch.
        batch_id: &'a str,
        /// The pair, `env/appid` (its result row).
        pair: String,
        /// The event JSON.
        event: String,
    },
    /// Not confirmed within the window: emit `event` (a `share.unconfirmed` JSON) and mark the
    /// pair's result row unconfirmed.
    Unconfirmed {
        /// The entry's batch.
        batch_id: &'a str,
        /// The pair, `env/appid` (its result row).
        pair: String,
        /// The event JSON.
        event: String,
    },
    /// Check again at `at_ms`, with these details (JSON).
    Later {
        /// When (ms).
        at_ms: u64,
        /// The entry's details (JSON).
        info: String,
    },
}

/// What [`Queue::confirm_settle`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Settled {
    /// Decisions applied.
    pub applied: u64,
    /// Decisions dropped because their lease had expired (another watcher holds the entry).
    pub stale: u64,
    /// Batches that became confirmed (`batch.confirmed` emitted).
    pub confirmed: Vec<String>,
}

impl Queue {
    fn confirm_invocation(&self, script: &'static Script, now: u64) -> ScriptInvocation<'static> {
        let k = self.keys();
        let mut inv = script.prepare_invoke();
        inv.key(k.events())
            .key(k.confirm())
            .key(k.confirm_info())
            .key(k.confirm_lease())
            .key(k.confirm_fence())
            .key(k.stats())
            .key(k.confirm_caught_up())
            .key(k.batches())
            .key(k.confirm_sweep());
        inv.arg(now)
            .arg(iso8601(now))
            .arg(k.prefix())
            .arg(self.settings().events_maxlen.max(1));
        inv
    }

    /// Whether the stream intake has anything to do: `false` when no worker of an earlier
    /// version (one that leaves confirmation scheduling to the intake) wrote events since the
    /// intake last had read the whole stream; then `group` is moved to the end of the stream in
    /// the same step (created there if missing), so nothing is read for nothing. When workers
    /// of earlier versions have written to this queue, that step also sweeps a slice of the
    /// batches on record for completed ones with every accepted appid settled (an earlier
    /// worker's bury, reap or cancel completes a batch without checking) and confirms them.
    /// Returns whether to read, and the batches the sweep confirmed.
    pub(crate) async fn confirm_must_read(
        &self,
        group: &str,
    ) -> Result<(bool, Vec<String>), StoreError> {
        let mut inv = self.confirm_invocation(&SCRIPTS.follow, self.now_ms());
        inv.arg(group);
        let (nothing, confirmed): (u8, Vec<String>) = inv
            .invoke_async(&mut self.connection())
            .await
            .map_err(StoreError::redis("confirm follow"))?;
        Ok((nothing == 0, confirmed))
    }

    /// Schedules the `Accepted` entries and acks every entry still pending for `consumer` of
    /// `group`, in one script (entries in stream order, at most 1,000). Returns the entries
    /// added to the schedule and the batches confirmed now.
    pub(crate) async fn confirm_intake(
        &self,
        group: &str,
        consumer: &str,
        entries: &[Intake<'_>],
    ) -> Result<(u64, Vec<String>), StoreError> {
        if entries.is_empty() {
            return Ok((0, Vec::new()));
        }
        let (first, last) = id_range(entries);
        let mut inv = self.confirm_invocation(&SCRIPTS.intake, self.now_ms());
        inv.arg(group)
            .arg(consumer)
            .arg(entries.len())
            .arg(first)
            .arg(last);
        for e in entries {
            match e {
                Intake::Accepted {
                    entry_id,
                    event_id,
                    due_ms,
                    info,
                    batch_id,
                    pair,
                } => {
                    inv.arg(*entry_id)
                        .arg("a")
                        .arg(*event_id)
                        .arg(*due_ms)
                        .arg(info)
                        .arg(*batch_id)
                        .arg(pair);
                }
                Intake::Completed { entry_id, batch_id } => {
                    inv.arg(*entry_id).arg("c").arg(*batch_id);
                }
                Intake::Skip { entry_id } => {
                    inv.arg(*entry_id).arg("-");
                }
            }
        }
        inv.invoke_async(&mut self.connection())
            .await
            .map_err(StoreError::redis("confirm intake"))
    }

    /// Leases up to `slice` due entries for `lease_ms`. Returns the claim's fencing token and
    /// the (entry id, details JSON) pairs.
    pub(crate) async fn confirm_claim(
        &self,
        lease_ms: u64,
        slice: usize,
    ) -> Result<(String, Vec<(String, String)>), StoreError> {
        let mut inv = self.confirm_invocation(&SCRIPTS.claim, self.now_ms());
        inv.arg(lease_ms).arg(slice);
        let reply: Vec<String> = inv
            .invoke_async(&mut self.connection())
            .await
            .map_err(StoreError::redis("confirm claim"))?;
        let mut it = reply.into_iter();
        let fence = it.next().unwrap_or_default();
        let mut claimed = Vec::new();
        while let (Some(id), Some(raw)) = (it.next(), it.next()) {
            claimed.push((id, raw));
        }
        Ok((fence, claimed))
    }

    /// Applies the decisions on entries claimed with `fence`, at time `now` (ms).
    pub(crate) async fn confirm_settle(
        &self,
        fence: &str,
        now: u64,
        decisions: &[(String, Settle<'_>)],
    ) -> Result<Settled, StoreError> {
        let mut inv = self.confirm_invocation(&SCRIPTS.settle, now);
        inv.arg(fence).arg(decisions.len());
        for (id, d) in decisions {
            inv.arg(id);
            match d {
                Settle::Bound {
                    batch_id,
                    pair,
                    event,
                } => {
                    inv.arg("b").arg(*batch_id).arg(pair).arg(event);
                }
                Settle::Unconfirmed {
                    batch_id,
                    pair,
                    event,
                } => {
                    inv.arg("u").arg(*batch_id).arg(pair).arg(event);
                }
                Settle::Later { at_ms, info } => {
                    inv.arg("r").arg(*at_ms).arg(info);
                }
            }
        }
        let (applied, stale, confirmed): (u64, u64, Vec<String>) = inv
            .invoke_async(&mut self.connection())
            .await
            .map_err(StoreError::redis("confirm settle"))?;
        Ok(Settled {
            applied,
            stale,
            confirmed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_intake_range_compares_entry_ids_as_numbers_in_any_order() {
        let entries = [
            Intake::Skip { entry_id: "1000-2" },
            Intake::Completed {
                entry_id: "999-7",
                batch_id: "b",
            },
            Intake::Skip {
                entry_id: "1000-10",
            },
            Intake::Skip { entry_id: "1000-9" },
        ];
        // As strings, "1000-10" < "1000-2" < "999-7".
        assert_eq!(id_range(&entries), ("999-7", "1000-10"));
        assert_eq!(id_range(&entries[..1]), ("1000-2", "1000-2"));
    }
}
