//! The inspector: counts, batch progress, job lookup, dead jobs (list, retry, purge).
//!
//! Every count comes from an O(1) or O(log n) command (ZCARD, HLEN, ZCOUNT, XLEN); nothing
//! scans keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::types::{Payload, StateRecord};
use super::{ADMIN_SLICE, Queue, SCRIPTS, ShareJob, StoreError};
use crate::events::FailReason;
use crate::ids::{BatchId, JobId};

/// Live workers are those seen within this many lease periods.
const LIVE_LEASES: u64 = 3;

/// Counts and health of a queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct QueueStats {
    /// Jobs waiting to be claimed.
    pub ready: u64,
    /// Jobs waiting for a retry time or a delayed start.
    pub scheduled: u64,
    /// Jobs leased to workers.
    pub running: u64,
    /// Dead jobs.
    pub dead: u64,
    /// Payloads stored (ready + scheduled + running + dead).
    pub jobs: u64,
    /// Age of the oldest ready job (ms), if any.
    pub oldest_ready_age_ms: Option<u64>,
    /// Workers seen within three lease periods.
    pub live_workers: u64,
    /// The pause in force, if any.
    pub paused: Option<Pause>,
    /// Queue-wide counters (`enqueued`, `claimed`, `completed`, `retries`, `dead`, `reaped`, …).
    pub counters: BTreeMap<String, i64>,
    /// Entries in the events stream.
    pub events: u64,
}

/// A pause of claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Pause {
    /// End of the pause (ms).
    pub until_ms: u64,
    /// Why.
    pub reason: String,
}

/// Progress of one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BatchProgress {
    /// The batch.
    pub id: Option<BatchId>,
    /// Jobs enqueued.
    pub jobs: u64,
    /// Appids enqueued.
    pub appids: u64,
    /// Jobs ended (done or dead).
    pub done_jobs: u64,
    /// Appids accepted.
    pub accepted: u64,
    /// Appids failed.
    pub failed: u64,
    /// The producer added every job.
    pub sealed: bool,
    /// `batch.completed` was emitted.
    pub completed: bool,
    /// When the batch was created (ms).
    pub created_at_ms: u64,
}

impl BatchProgress {
    /// Appids neither accepted nor failed yet.
    pub fn pending(&self) -> u64 {
        self.appids.saturating_sub(self.accepted + self.failed)
    }

    /// Where the batch is, in one word: `enqueuing`, `running`, `completed`, `confirmed` (every
    /// accepted appid bound or unconfirmed: `confirmed` from [`Queue::batch_confirmation`]), or
    /// `cancelled` (completed with cancelled appids). The CLI and the console say the same.
    pub fn phase(&self, confirmed: bool, cancelled: bool) -> &'static str {
        match (self.sealed, self.completed, confirmed) {
            (false, false, _) => "enqueuing",
            (_, false, _) => "running",
            _ if cancelled => "cancelled",
            (_, true, false) => "completed",
            (_, true, true) => "confirmed",
        }
    }
}

/// Where a job is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobState {
    /// Waiting to be claimed since `since_ms`.
    Ready {
        /// When it became ready (ms).
        since_ms: u64,
    },
    /// Waiting until `run_at_ms`.
    Scheduled {
        /// Run-at time (ms).
        run_at_ms: u64,
    },
    /// Leased.
    Running {
        /// Lease deadline (ms).
        deadline_ms: u64,
        /// Current fencing token.
        fence: u64,
        /// The worker holding it.
        worker: String,
    },
    /// Dead.
    Dead {
        /// When it died (ms).
        died_at_ms: u64,
    },
}

/// Why a job died, as recorded in `dead:info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeadInfo {
    /// Why.
    pub reason: FailReason,
    /// WeChat's errcode, if any.
    pub errcode: Option<i64>,
    /// What failed.
    pub errmsg: String,
    /// Tries made.
    pub attempts: u32,
    /// When (ms).
    pub at: u64,
}

/// A job looked up by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct JobInfo {
    /// The job.
    pub job: ShareJob,
    /// Where it is; `None` if it was between states (should not happen: read atomically).
    pub state: Option<JobState>,
    /// Tries counted so far.
    pub attempts: u32,
    /// When it was enqueued (ms).
    pub created_at_ms: u64,
    /// Why it died, if dead.
    pub dead: Option<DeadInfo>,
}

/// A dead job, for listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DeadJob {
    /// The job id.
    pub id: JobId,
    /// When it died (ms).
    pub died_at_ms: u64,
    /// Why.
    pub reason: Option<FailReason>,
    /// WeChat's errcode, if any.
    pub errcode: Option<i64>,
    /// What failed.
    pub errmsg: String,
    /// Tries made.
    pub attempts: u32,
    /// The job (env, appids, batch), if its payload is still there.
    pub job: Option<ShareJob>,
}

/// Which dead jobs an admin operation applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadSelection {
    /// These jobs (ids that are not dead are ignored).
    Ids(Vec<JobId>),
    /// Every dead job (in slices of 1,000).
    All,
}

fn num(v: Option<&String>) -> u64 {
    v.and_then(|s| s.parse().ok()).unwrap_or(0)
}

impl Queue {
    /// Counts per state, oldest ready age, live workers, pause and counters, in one round trip.
    pub async fn stats(&self) -> Result<QueueStats, StoreError> {
        let k = &self.keys;
        let now = self.clock.now_ms();
        let live_since = now.saturating_sub(LIVE_LEASES * self.settings.lease.as_millis() as u64);
        let mut pipe = redis::pipe();
        pipe.cmd("ZCARD").arg(k.ready());
        pipe.cmd("ZCARD").arg(k.scheduled());
        // Below +inf: the set's pin member (lua/lib.lua, pin_state) is no lease.
        pipe.cmd("ZCOUNT").arg(k.running()).arg("-inf").arg("(+inf");
        pipe.cmd("ZCARD").arg(k.dead());
        pipe.cmd("HLEN").arg(k.jobs());
        pipe.cmd("ZRANGE")
            .arg(k.ready())
            .arg(0)
            .arg(0)
            .arg("WITHSCORES");
        pipe.cmd("ZCOUNT")
            .arg(k.workers())
            .arg(live_since)
            .arg("+inf");
        pipe.cmd("HMGET").arg(k.pause()).arg("until").arg("reason");
        pipe.cmd("HGETALL").arg(k.stats());
        pipe.cmd("XLEN").arg(k.events());
        #[allow(clippy::type_complexity)]
        let (ready, scheduled, running, dead, jobs, oldest, live, pause, counters, events): (
            u64,
            u64,
            u64,
            u64,
            u64,
            Vec<(String, f64)>,
            u64,
            (Option<u64>, Option<String>),
            BTreeMap<String, i64>,
            u64,
        ) = pipe
            .query_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::redis("stats"))?;
        Ok(QueueStats {
            ready,
            scheduled,
            running,
            dead,
            jobs,
            oldest_ready_age_ms: oldest
                .first()
                .map(|(_, score)| now.saturating_sub(*score as u64)),
            live_workers: live,
            paused: match pause {
                (Some(until_ms), reason) if until_ms > now => Some(Pause {
                    until_ms,
                    reason: reason.unwrap_or_default(),
                }),
                _ => None,
            },
            counters,
            events,
        })
    }

    /// The pause in force now, if any (one HMGET).
    pub async fn pause_in_force(&self) -> Result<Option<Pause>, StoreError> {
        let now = self.clock.now_ms();
        let (until, reason): (Option<u64>, Option<String>) = redis::cmd("HMGET")
            .arg(self.keys.pause())
            .arg("until")
            .arg("reason")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::redis("pause"))?;
        Ok(match until {
            Some(until_ms) if until_ms > now => Some(Pause {
                until_ms,
                reason: reason.unwrap_or_default(),
            }),
            _ => None,
        })
    }

    /// Progress of batch `id`, or `None` if no such batch.
    pub async fn batch(&self, id: &BatchId) -> Result<Option<BatchProgress>, StoreError> {
        let h: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(self.keys.batch(id))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::redis("batch"))?;
        if h.is_empty() {
            return Ok(None);
        }
        Ok(Some(BatchProgress {
            id: Some(id.clone()),
            jobs: num(h.get("jobs")),
            appids: num(h.get("appids")),
            done_jobs: num(h.get("done_jobs")),
            accepted: num(h.get("accepted")),
            failed: num(h.get("failed")),
            sealed: h.get("sealed").is_some_and(|v| v == "1"),
            completed: h.get("completed").is_some_and(|v| v == "1"),
            created_at_ms: num(h.get("created_at")),
        }))
    }

    /// Batch ids on record, newest first, `limit` from `offset`. A batch whose record expired
    /// (`ENVSHARE_RESULTS_TTL` after it completed) is dropped from the list as it is met, so a
    /// page shorter than `limit` is the last one.
    pub async fn list_batches(
        &self,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<BatchId>, StoreError> {
        let op = "list batches";
        if limit == 0 {
            return Ok(Vec::new());
        }
        loop {
            let ids: Vec<String> = redis::cmd("ZREVRANGE")
                .arg(self.keys.batches())
                .arg(offset)
                .arg(offset + limit - 1)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(StoreError::redis(op))?;
            let ids: Vec<BatchId> = super::parse_ids(op, ids)?;
            if ids.is_empty() {
                return Ok(ids);
            }
            let mut pipe = redis::pipe();
            for id in &ids {
                pipe.cmd("EXISTS").arg(self.keys.batch(id));
            }
            let exists: Vec<bool> = pipe
                .query_async(&mut self.conn.clone())
                .await
                .map_err(StoreError::redis(op))?;
            let gone: Vec<&str> = ids
                .iter()
                .zip(&exists)
                .filter(|(_, e)| !**e)
                .map(|(id, _)| id.as_str())
                .collect();
            if gone.is_empty() {
                return Ok(ids);
            }
            // Expired: forget them and read the page again (each round removes at least one).
            let _: () = redis::cmd("ZREM")
                .arg(self.keys.batches())
                .arg(gone)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(StoreError::redis(op))?;
        }
    }

    /// A job by id: payload, state, attempts, dead info. `None` once it is done (finished jobs
    /// are removed; the events stream is the record) or purged.
    pub async fn job(&self, id: &JobId) -> Result<Option<JobInfo>, StoreError> {
        let op = "job";
        let k = &self.keys;
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("HGET").arg(k.jobs()).arg(id.as_str());
        pipe.cmd("HGET").arg(k.state()).arg(id.as_str());
        for z in [k.ready(), k.scheduled(), k.running(), k.dead()] {
            pipe.cmd("ZSCORE").arg(z).arg(id.as_str());
        }
        pipe.cmd("HGET").arg(k.dead_info()).arg(id.as_str());
        #[allow(clippy::type_complexity)]
        let (payload, state, ready, sched, running, dead, info): (
            Option<String>,
            Option<String>,
            Option<f64>,
            Option<f64>,
            Option<f64>,
            Option<f64>,
            Option<String>,
        ) = pipe
            .query_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::redis(op))?;
        let Some(payload) = payload else {
            return Ok(None);
        };
        let p = Payload::parse(op, id, &payload)?;
        let created_at_ms = p.created_at;
        let rec = StateRecord::parse(state.as_deref());
        let dead_info =
            match info {
                Some(raw) => Some(serde_json::from_str::<DeadInfo>(&raw).map_err(|e| {
                    StoreError::Malformed {
                        op,
                        what: format!("dead info of job {id}"),
                        detail: e.to_string(),
                    }
                })?),
                None => None,
            };
        let state = match (ready, sched, running, dead) {
            (Some(s), ..) => Some(JobState::Ready { since_ms: s as u64 }),
            (_, Some(s), ..) => Some(JobState::Scheduled {
                run_at_ms: s as u64,
            }),
            (_, _, Some(s), _) => Some(JobState::Running {
                deadline_ms: s as u64,
                fence: rec.fence.unwrap_or(0),
                worker: rec.worker,
            }),
            (.., Some(s)) => Some(JobState::Dead {
                died_at_ms: s as u64,
            }),
            _ => None,
        };
        let attempts = dead_info.as_ref().map_or(rec.attempts, |d| d.attempts);
        Ok(Some(JobInfo {
            job: p.into_job(id.clone(), rec.r#gen),
            state,
            attempts,
            created_at_ms,
            dead: dead_info,
        }))
    }

    /// Dead jobs, newest first, `limit` from `offset`.
    pub async fn dead_list(&self, offset: usize, limit: usize) -> Result<Vec<DeadJob>, StoreError> {
        let op = "dead list";
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let page: Vec<(String, f64)> = redis::cmd("ZREVRANGE")
            .arg(self.keys.dead())
            .arg(offset)
            .arg(offset + limit.min(ADMIN_SLICE) - 1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .map_err(StoreError::redis(op))?;
        if page.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = page.iter().map(|(id, _)| id.as_str()).collect();
        // One HMGET reply each: dead info, payload, state record (the generation).
        type Column = Vec<Option<String>>;
        let (infos, payloads, states): (Column, Column, Column) = redis::pipe()
            .cmd("HMGET")
            .arg(self.keys.dead_info())
            .arg(&ids)
            .cmd("HMGET")
            .arg(self.keys.jobs())
            .arg(&ids)
            .cmd("HMGET")
            .arg(self.keys.state())
            .arg(&ids)
            .query_async(&mut conn)
            .await
            .map_err(StoreError::redis(op))?;
        let mut out = Vec::with_capacity(page.len());
        let rows = page.into_iter().zip(infos).zip(payloads).zip(states);
        for ((((id, died), info), payload), state) in rows {
            let id = JobId::parse(&id).map_err(|e| StoreError::reply(op, e))?;
            let info: Option<DeadInfo> = info.and_then(|raw| serde_json::from_str(&raw).ok());
            // A dead job past generation 0 keeps its generation in its state record.
            let r#gen = StateRecord::parse(state.as_deref()).r#gen;
            let job = match payload {
                Some(raw) => Some(Payload::parse(op, &id, &raw)?.into_job(id.clone(), r#gen)),
                None => None,
            };
            out.push(DeadJob {
                id,
                died_at_ms: died as u64,
                reason: info.as_ref().map(|i| i.reason),
                errcode: info.as_ref().and_then(|i| i.errcode),
                errmsg: info.as_ref().map(|i| i.errmsg.clone()).unwrap_or_default(),
                attempts: info.as_ref().map_or(0, |i| i.attempts),
                job,
            });
        }
        Ok(out)
    }

    /// Gives dead jobs another run: gen += 1 (new event ids), attempts reset, back to ready.
    /// Returns how many were moved. A batch that already emitted `batch.completed` does not
    /// emit it again.
    pub async fn dead_retry(&self, ids: DeadSelection) -> Result<usize, StoreError> {
        self.dead_apply("dead retry", ids, true).await
    }

    /// Deletes dead jobs for good. Returns how many were purged.
    pub async fn dead_purge(&self, ids: DeadSelection) -> Result<usize, StoreError> {
        self.dead_apply("dead purge", ids, false).await
    }

    async fn dead_apply(
        &self,
        op: &'static str,
        sel: DeadSelection,
        retry: bool,
    ) -> Result<usize, StoreError> {
        let run = |ids: Vec<String>| async move {
            let now = self.clock.now_ms();
            let mut inv = if retry {
                let mut inv = self.invocation(&SCRIPTS.dead_retry, now);
                inv.arg(self.settings.dedupe_window.as_millis() as u64);
                inv
            } else {
                self.invocation(&SCRIPTS.dead_purge, now)
            };
            inv.arg(ids);
            self.run::<usize>(op, &inv).await
        };
        let mut total = 0;
        match sel {
            DeadSelection::Ids(ids) => {
                let mut ids: Vec<String> = ids.into_iter().map(|i| i.as_str().to_owned()).collect();
                ids.sort();
                ids.dedup();
                for part in ids.chunks(ADMIN_SLICE) {
                    total += run(part.to_vec()).await?;
                }
            }
            DeadSelection::All => {
                // Bounded by the count at the start, so jobs dying meanwhile cannot keep the
                // loop going forever.
                let mut conn = self.conn.clone();
                let mut budget: usize = redis::cmd("ZCARD")
                    .arg(self.keys.dead())
                    .query_async(&mut conn)
                    .await
                    .map_err(StoreError::redis(op))?;
                while budget > 0 {
                    let ids: Vec<String> = redis::cmd("ZRANGE")
                        .arg(self.keys.dead())
                        .arg(0)
                        .arg(budget.min(ADMIN_SLICE) - 1)
                        .query_async(&mut conn)
                        .await
                        .map_err(StoreError::redis(op))?;
                    if ids.is_empty() {
                        break;
                    }
                    budget = budget.saturating_sub(ids.len());
                    total += run(ids).await?;
                }
            }
        }
        Ok(total)
    }
}
