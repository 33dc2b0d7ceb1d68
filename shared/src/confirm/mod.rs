//! Confirmation tracking (docs/confirmation.md): after `share.accepted`, ask `batchgetenvid` on a
//! schedule whether the Mini Program's administrator confirmed the binding, and emit
//! `share.bound` or, when the window ends first, `share.unconfirmed`; `batch.confirmed` once a
//! completed batch has every accepted appid settled.
//!
//! An accepted appid enters the durable schedule (`confirm` zset + `confirm:info` hash, keyed by
//! its `share.accepted` event's stable id) in the script that accepts the share and writes that
//! event (`store/lua/complete.lua`): no event is read back for it, and none can be missed, even
//! when the events stream is trimmed. Every worker process runs one [`Watcher`], a background
//! loop in two steps:
//!
//! 1. **Intake**, for events of workers of earlier versions, which did not schedule their own
//!    entries: while such events may be unread (`store/lua/confirm_follow.lua`), read the
//!    events stream as a member of the consumer group [`CONFIRM_GROUP`] and, per
//!    `share.accepted`, add the entry in the same script that XACKs the event
//!    (`store/lua/confirm_intake.lua`; an entry already scheduled is not added again). A crash
//!    before that script leaves the event pending; entries idle longer than
//!    [`ConfirmSettings::claim_idle`] are taken over with XAUTOCLAIM by any watcher. Otherwise
//!    the group is only moved to the end of the stream.
//! 2. **Checks**: lease the due entries in bounded slices (`store/lua/confirm_claim.lua`, score =
//!    lease deadline, one fencing token), group them into `batchgetenvid` calls of up to
//!    [`ConfirmSettings::batch`] appids through the global rate limit and the shared token, and
//!    apply each call's outcome in one fenced script (`store/lua/confirm_settle.lua`). A watcher
//!    that dies mid-check loses nothing: the lease expires and another watcher checks again.
//!
//! `batch.confirmed` is emitted where its condition can become true: when a batch completes
//! (the queue's scripts) and when a check settles.

mod checker;
mod events;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

pub use checker::{BindingChecker, CheckError};
pub use events::read_confirmations;

use crate::clock::iso8601;
use crate::config::Settings;
use crate::events::{Event, EventKind};
use crate::ids::{AppId, BatchId};
use crate::schedule::{ConfirmSchedule, DEFAULT_CONFIRM_BATCH};
use crate::store::confirm::{ConfirmInfo as Info, Intake, Settle, Settled};
use crate::store::stream::{RawEntry, entry_id};
use crate::store::{Queue, StartFrom, StoreError, row_field};

/// The consumer group the watchers read the events stream with.
pub const CONFIRM_GROUP: &str = "envshare-confirm";

/// Stream entries read per intake call.
const READ_COUNT: usize = 200;
/// The longest idle sleep of the watcher, in multiples of [`ConfirmSettings::poll`].
pub const IDLE_BACKOFF: u32 = 8;
/// Schedule entries leased per claim.
const CLAIM_SLICE: usize = 500;
/// How often a watcher reads the intake lag (two `XINFO` calls).
const LAG_CHECK_EVERY: Duration = Duration::from_secs(5);

/// Settings of the confirmation watcher.
#[derive(Debug, Clone)]
pub struct ConfirmSettings {
    /// `ENVSHARE_CONFIRM_SCHEDULE`: when entries are checked.
    pub schedule: ConfirmSchedule,
    /// `ENVSHARE_CONFIRM_WINDOW`: how long after acceptance a binding may still be confirmed.
    pub window: Duration,
    /// `ENVSHARE_CONFIRM_BATCH`: appids per `batchgetenvid` call.
    pub batch: usize,
    /// How long a claimed entry is held before another watcher may check it.
    pub lease: Duration,
    /// How long the loop sleeps when there is nothing to do. Rounds that keep finding nothing
    /// sleep longer, doubling up to [`IDLE_BACKOFF`] times this, so an idle fleet costs Redis
    /// next to nothing; the first round that finds work returns to this.
    pub poll: Duration,
    /// Stream entries delivered to a consumer and not acked for this long are taken over.
    pub claim_idle: Duration,
}

impl Default for ConfirmSettings {
    fn default() -> Self {
        Self {
            schedule: ConfirmSchedule::default(),
            window: Duration::from_secs(7 * 86_400),
            batch: DEFAULT_CONFIRM_BATCH,
            lease: Duration::from_secs(60),
            poll: Duration::from_secs(1),
            claim_idle: Duration::from_secs(60),
        }
    }
}

impl From<&Settings> for ConfirmSettings {
    /// `ENVSHARE_CONFIRM_SCHEDULE`, `ENVSHARE_CONFIRM_WINDOW` and `ENVSHARE_CONFIRM_BATCH`; the
    /// lease, poll and claim timings keep their defaults.
    fn from(settings: &Settings) -> Self {
        Self {
            schedule: settings.confirm_schedule.clone(),
            window: settings.confirm_window,
            batch: settings.confirm_batch,
            ..Self::default()
        }
    }
}

/// The watcher's and the handler's confirmation counters (Prometheus counters, cheap clones).
#[derive(Debug, Clone, Default)]
pub struct ConfirmCounters {
    /// `batchgetenvid` calls made by the watcher.
    pub checks: Counter,
    /// `share.bound` events emitted.
    pub bound: Counter,
    /// `share.unconfirmed` events emitted.
    pub unconfirmed: Counter,
    /// `batchgetenvid` calls made before re-sending a share whose earlier outcome is unknown.
    pub resend_checks: Counter,
    /// Appids not re-sent because they were already bound.
    pub resend_skipped: Counter,
    /// Events not yet read by [`CONFIRM_GROUP`] at the last look (-1: Redis cannot tell).
    pub intake_lag: Gauge,
    /// Times the stream was found trimmed past events the group had not read.
    pub intake_trimmed: Counter,
}

impl ConfirmCounters {
    /// Registers the counters (`confirm_checks`, `confirm_bound`, …) in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "confirm_checks",
            "batchgetenvid calls made to check confirmations",
            self.checks.clone(),
        );
        registry.register(
            "confirm_bound",
            "share.bound events emitted by this process",
            self.bound.clone(),
        );
        registry.register(
            "confirm_unconfirmed",
            "share.unconfirmed events emitted by this process",
            self.unconfirmed.clone(),
        );
        registry.register(
            "resend_checks",
            "batchgetenvid calls before re-sending a share whose earlier outcome is unknown",
            self.resend_checks.clone(),
        );
        registry.register(
            "resend_skipped",
            "Appids not re-sent because batchgetenvid showed them bound already",
            self.resend_skipped.clone(),
        );
        registry.register(
            "confirm_intake_lag",
            "Events the confirmation watchers have not read yet (-1: unknown, e.g. after a trim)",
            self.intake_lag.clone(),
        );
        registry.register(
            "confirm_intake_trimmed",
            "Times the events stream was found trimmed past events the watchers had not read \
             (those appids are not tracked: raise ENVSHARE_EVENTS_MAXLEN)",
            self.intake_trimmed.clone(),
        );
    }
}

/// How far the confirmation intake ([`CONFIRM_GROUP`]) is behind the events stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntakeLag {
    /// Events not yet delivered to the group; `None` when Redis cannot tell (after a trim past
    /// the group's position).
    pub lag: Option<u64>,
    /// The stream's `MAXLEN` trim removed events the group had not read: their `share.accepted`
    /// appids get no `share.bound` / `share.unconfirmed`, and their batches no
    /// `batch.confirmed`.
    pub trimmed_unread: bool,
}

/// Reads [`IntakeLag`] from `XINFO STREAM` and `XINFO GROUPS` (Redis 7). Entries ever removed
/// from the stream are `entries-added - length`, all older than `recorded-first-entry-id` (a
/// `MAXLEN` trim removes the oldest). The group's `entries-read` is its position in everything
/// ever added: below the removed count, it had not read them all. A group still before the first
/// entry with fewer entries read than removed (or an unknown count: a group created at `0` that
/// has read nothing since) is behind the trim. Once it reads past the first entry, what was lost
/// can no longer be told. `None` when the stream or the group does not exist.
pub async fn intake_lag(queue: &Queue) -> Result<Option<IntakeLag>, StoreError> {
    let Some(g) = queue.group_info(CONFIRM_GROUP).await? else {
        return Ok(None);
    };
    let removed = g
        .entries_added
        .unwrap_or(0)
        .saturating_sub(g.length.unwrap_or(0));
    let delivered = entry_id(&g.last_delivered_id);
    let first = entry_id(&g.first_entry_id);
    let trimmed_unread =
        removed > 0 && delivered < first && g.entries_read.is_none_or(|read| read < removed);
    Ok(Some(IntakeLag {
        lag: g.lag,
        trimmed_unread,
    }))
}

/// What a watcher did in one round, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Stream entries read.
    pub read: usize,
    /// Entries added to the schedule.
    pub scheduled: u64,
    /// Entries checked.
    pub checked: usize,
}

/// The confirmation watcher of one process.
pub struct Watcher {
    queue: Queue,
    checker: BindingChecker,
    settings: ConfirmSettings,
    consumer: String,
    counters: ConfirmCounters,
    last_autoclaim: Option<Instant>,
    /// When the last follow check found nothing to read (`None`: the next round checks).
    following_since: Option<Instant>,
    last_lag_check: Option<Instant>,
    /// Whether the last lag check found events trimmed unread (warn once per occurrence).
    behind_trim: bool,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("queue", &self.queue)
            .field("consumer", &self.consumer)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A running watcher; [`WatcherHandle::shutdown`] stops it.
#[derive(Debug)]
pub struct WatcherHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl WatcherHandle {
    /// Stops the loop after the step in progress (a check in flight is settled; claimed entries
    /// not checked yet are given back) and waits for it.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

/// The ms part of a stream entry id (`1764460800000-0`).
fn entry_ms(id: &str) -> u64 {
    entry_id(id).0
}

impl Watcher {
    /// A watcher of `queue`'s events, member `consumer` of [`CONFIRM_GROUP`].
    pub fn new(
        queue: Queue,
        checker: BindingChecker,
        settings: ConfirmSettings,
        consumer: impl Into<String>,
        counters: ConfirmCounters,
    ) -> Self {
        Self {
            queue,
            checker,
            settings,
            consumer: consumer.into(),
            counters,
            last_autoclaim: None,
            following_since: None,
            last_lag_check: None,
            behind_trim: false,
        }
    }

    /// Creates the consumer group if it does not exist, from the start of the stream, so no
    /// `share.accepted` written before the first watcher started is missed.
    pub async fn ensure_group(&self) -> Result<(), StoreError> {
        self.queue
            .create_group(CONFIRM_GROUP, StartFrom::Beginning)
            .await
    }

    /// Starts the loop on the current runtime.
    pub fn start(mut self) -> WatcherHandle {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            info!(consumer = %self.consumer, "confirmation watcher started");
            let poll = self.settings.poll;
            let mut wait = poll;
            loop {
                if *stopped.borrow() {
                    break;
                }
                let (busy, idle) = match self.round(&stopped).await {
                    Ok(r) => (
                        r.read >= READ_COUNT || r.checked >= CLAIM_SLICE,
                        r.read == 0 && r.checked == 0,
                    ),
                    Err(e) => {
                        warn!(error = %e, "confirmation watcher round failed; retrying");
                        (false, false)
                    }
                };
                wait = if idle {
                    (wait * 2).min(poll * IDLE_BACKOFF)
                } else {
                    poll
                };
                if !busy {
                    tokio::select! {
                        _ = stopped.changed() => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
            self.leave().await;
            info!(consumer = %self.consumer, "confirmation watcher stopped");
        });
        WatcherHandle { stop, task }
    }

    /// One round: intake of events of workers of earlier versions, if any can be unread (new
    /// events, then stale ones of dead consumers), then due checks.
    pub async fn round(&mut self, stop: &watch::Receiver<bool>) -> Result<RoundReport, StoreError> {
        let mut report = RoundReport::default();
        if self.must_read().await? {
            let entries = match self.read_new().await {
                Err(StoreError::NoGroup { .. }) => {
                    self.ensure_group().await?;
                    self.read_new().await?
                }
                r => r?,
            };
            report.read = entries.len();
            report.scheduled += self.intake(entries).await?;
        }
        let idle = self.settings.claim_idle;
        if self.last_autoclaim.is_none_or(|t| t.elapsed() >= idle / 2) {
            self.last_autoclaim = Some(Instant::now());
            let stale = self.autoclaim().await?;
            if !stale.is_empty() {
                debug!(entries = stale.len(), "took over stale confirmation events");
            }
            report.scheduled += self.intake(stale).await?;
        }
        report.checked = self.check_due(stop).await?;
        if self
            .last_lag_check
            .is_none_or(|t| t.elapsed() >= LAG_CHECK_EVERY)
        {
            self.last_lag_check = Some(Instant::now());
            // A gauge is not worth failing the round for.
            if let Err(e) = self.check_lag().await {
                debug!(error = %e, "reading the confirmation intake lag failed");
            }
        }
        Ok(report)
    }

    /// Whether the stream intake runs this round. Once a check finds nothing to read (no
    /// worker of an earlier version wrote since the intake caught up), the next is made only
    /// after [`ConfirmSettings::claim_idle`] / 2 (30 s by default) or half the first check's
    /// offset if that is shorter, so an idle watcher's round stays one small script call and an
    /// earlier worker's events, which wait that long at most, are still scheduled before their
    /// first check falls due. While there is something to read, every round checks (and reads).
    async fn must_read(&mut self) -> Result<bool, StoreError> {
        let first = self.settings.schedule.first_within(self.settings.window);
        let every = (self.settings.claim_idle / 2).min(first / 2);
        if self.following_since.is_some_and(|t| t.elapsed() < every) {
            return Ok(false);
        }
        let (read, confirmed) = self.queue.confirm_must_read(CONFIRM_GROUP).await?;
        for batch in confirmed {
            info!(batch_id = %batch, "batch confirmed (completed by a worker of an earlier version)");
        }
        self.following_since = (!read).then(Instant::now);
        Ok(read)
    }

    /// Updates the intake-lag gauge (0 while nothing needs reading), and warns once when the
    /// stream was trimmed past events no watcher had read.
    async fn check_lag(&mut self) -> Result<(), StoreError> {
        if self.following_since.is_some() {
            // Nothing needs reading: the events since the group was last moved to the end of
            // the stream were scheduled by the acks that wrote them.
            self.counters.intake_lag.set(0);
            self.behind_trim = false;
            return Ok(());
        }
        let Some(l) = intake_lag(&self.queue).await? else {
            return Ok(());
        };
        self.counters
            .intake_lag
            .set(l.lag.map_or(-1, |n| n.min(i64::MAX as u64) as i64));
        if l.trimmed_unread && !self.behind_trim {
            self.counters.intake_trimmed.inc();
            warn!(
                events_maxlen = self.queue.settings().events_maxlen,
                "the events stream was trimmed past share.accepted events the confirmation \
                 watchers had not read: those appids get no share.bound or share.unconfirmed and \
                 their batches no batch.confirmed; raise ENVSHARE_EVENTS_MAXLEN or run more workers"
            );
        }
        self.behind_trim = l.trimmed_unread;
        Ok(())
    }

    async fn read_new(&self) -> Result<Vec<RawEntry>, StoreError> {
        self.queue
            .read_group(CONFIRM_GROUP, &self.consumer, READ_COUNT)
            .await
    }

    async fn autoclaim(&self) -> Result<Vec<RawEntry>, StoreError> {
        self.queue
            .autoclaim(
                CONFIRM_GROUP,
                &self.consumer,
                self.settings.claim_idle,
                READ_COUNT,
            )
            .await
    }

    /// Schedules the `share.accepted` entries and acks everything (one script).
    async fn intake(&self, entries: Vec<RawEntry>) -> Result<u64, StoreError> {
        if entries.is_empty() {
            return Ok(0);
        }
        let first = self
            .settings
            .schedule
            .first_within(self.settings.window)
            .as_millis() as u64;
        let events: Vec<Option<Event>> = entries
            .iter()
            .map(|e| match Event::from_entry_fields(&e.fields) {
                Ok(event) => Some(event),
                Err(err) => {
                    warn!(entry_id = %e.id, error = %err, "skipping a malformed event");
                    None
                }
            })
            .collect();
        let items: Vec<Intake<'_>> = entries
            .iter()
            .zip(&events)
            .map(
                |(entry, event)| match event.as_ref().map(|e| (&e.id, &e.kind)) {
                    Some((
                        id,
                        EventKind::ShareAccepted {
                            job_id,
                            batch_id,
                            env,
                            appid,
                            ..
                        },
                    )) => {
                        let accepted_at = entry_ms(&entry.id);
                        let info = Info {
                            env: env.clone(),
                            appid: appid.clone(),
                            batch_id: batch_id.clone(),
                            job_id: job_id.clone(),
                            accepted_at,
                            checks: 0,
                            trace_id: event.as_ref().and_then(|e| e.trace_id.clone()),
                        };
                        Intake::Accepted {
                            entry_id: &entry.id,
                            event_id: id,
                            due_ms: accepted_at + first,
                            info: serde_json::to_string(&info).expect("Info serializes"),
                            batch_id: batch_id.as_str(),
                            pair: row_field(env, appid),
                        }
                    }
                    Some((_, EventKind::BatchCompleted { batch_id, .. })) => Intake::Completed {
                        entry_id: &entry.id,
                        batch_id: batch_id.as_str(),
                    },
                    _ => Intake::Skip {
                        entry_id: &entry.id,
                    },
                },
            )
            .collect();
        let (added, confirmed) = self
            .queue
            .confirm_intake(CONFIRM_GROUP, &self.consumer, &items)
            .await?;
        for batch in confirmed {
            info!(batch_id = %batch, "batch confirmed");
        }
        Ok(added)
    }

    /// Leases due entries and checks them, one `batchgetenvid` call per group of appids.
    async fn check_due(&self, stop: &watch::Receiver<bool>) -> Result<usize, StoreError> {
        let (fence, raw) = self
            .queue
            .confirm_claim(self.settings.lease.as_millis() as u64, CLAIM_SLICE)
            .await?;
        let mut claimed: Vec<(String, Info)> = Vec::new();
        for (id, raw) in raw {
            match serde_json::from_str::<Info>(&raw) {
                Ok(info) => claimed.push((id, info)),
                Err(e) => warn!(entry = %id, error = %e, "malformed confirmation entry"),
            }
        }
        if claimed.is_empty() {
            return Ok(0);
        }
        // Entries of one appid (several envs or batches) share one slot of a call.
        let mut by_appid: Vec<(AppId, Vec<usize>)> = Vec::new();
        let mut index: HashMap<AppId, usize> = HashMap::new();
        for (i, (_, info)) in claimed.iter().enumerate() {
            let slot = *index.entry(info.appid.clone()).or_insert_with(|| {
                by_appid.push((info.appid.clone(), Vec::new()));
                by_appid.len() - 1
            });
            by_appid[slot].1.push(i);
        }
        let total = claimed.len();
        for group in by_appid.chunks(self.checker.batch()) {
            let members: Vec<usize> = group.iter().flat_map(|(_, m)| m.iter().copied()).collect();
            if *stop.borrow() {
                // Shutting down: give the unchecked entries back for the next watcher.
                self.release(&fence, &claimed, &members).await?;
                continue;
            }
            let appids: Vec<AppId> = group.iter().map(|(a, _)| a.clone()).collect();
            self.counters.checks.inc();
            match self.checker.get_env_ids(&appids).await {
                Ok(answer) => {
                    let now = self.queue.now_ms();
                    let decisions: Vec<(String, Decision)> = members
                        .iter()
                        .map(|&i| {
                            let (id, info) = &claimed[i];
                            let bound = answer
                                .envs_of(info.appid.as_str())
                                .iter()
                                .any(|e| e == info.env.as_str());
                            (id.clone(), self.decide(id, info, bound, now))
                        })
                        .collect();
                    self.settle(&fence, now, decisions).await?;
                }
                Err(e) => {
                    // The entries stay leased; they are checked again when the lease expires.
                    warn!(error = %e, appids = appids.len(), "confirmation check failed; will retry after the lease");
                }
            }
        }
        Ok(total)
    }

    fn decide(&self, id: &str, info: &Info, bound: bool, now: u64) -> Decision {
        let checks = info.checks + 1;
        let window = self.settings.window.as_millis() as u64;
        let common = |kind| Event {
            v: 1,
            id: String::new(),
            at: iso8601(now),
            kind,
            trace_id: info.trace_id.clone(),
        };
        if bound {
            let mut e = common(EventKind::ShareBound {
                job_id: info.job_id.clone(),
                batch_id: info.batch_id.clone(),
                env: info.env.clone(),
                appid: info.appid.clone(),
                accepted_at: iso8601(info.accepted_at),
                confirm_seconds: now.saturating_sub(info.accepted_at) as f64 / 1000.0,
                checks,
            });
            e.id = format!("{id}.bound");
            return Decision::Bound(info.batch_id.clone(), e);
        }
        let elapsed = now.saturating_sub(info.accepted_at);
        if elapsed >= window {
            let mut e = common(EventKind::ShareUnconfirmed {
                job_id: info.job_id.clone(),
                batch_id: info.batch_id.clone(),
                env: info.env.clone(),
                appid: info.appid.clone(),
                accepted_at: iso8601(info.accepted_at),
                window_seconds: window as f64 / 1000.0,
                checks,
            });
            e.id = format!("{id}.unconfirmed");
            return Decision::Unconfirmed(info.batch_id.clone(), e);
        }
        // The last check falls exactly on the window's end.
        let next = info.accepted_at + self.settings.schedule.next_after(elapsed).min(window);
        Decision::Later(
            next,
            Info {
                checks,
                ..info.clone()
            },
        )
    }

    async fn release(
        &self,
        fence: &str,
        claimed: &[(String, Info)],
        members: &[usize],
    ) -> Result<(), StoreError> {
        let now = self.queue.now_ms();
        let decisions = members
            .iter()
            .map(|&i| {
                let (id, info) = &claimed[i];
                (id.clone(), Decision::Later(now, info.clone()))
            })
            .collect();
        self.settle(fence, now, decisions).await
    }

    async fn settle(
        &self,
        fence: &str,
        now: u64,
        decisions: Vec<(String, Decision)>,
    ) -> Result<(), StoreError> {
        let (mut bound, mut unconfirmed) = (0, 0);
        let items: Vec<(String, Settle<'_>)> = decisions
            .iter()
            .map(|(id, d)| {
                let item = match d {
                    Decision::Bound(batch, e) => {
                        bound += 1;
                        Settle::Bound {
                            batch_id: batch.as_str(),
                            pair: pair_of(e),
                            event: e.to_json(),
                        }
                    }
                    Decision::Unconfirmed(batch, e) => {
                        unconfirmed += 1;
                        Settle::Unconfirmed {
                            batch_id: batch.as_str(),
                            pair: pair_of(e),
                            event: e.to_json(),
                        }
                    }
                    Decision::Later(at, info) => Settle::Later {
                        at_ms: *at,
                        info: serde_json::to_string(info).expect("Info serializes"),
                    },
                };
                (id.clone(), item)
            })
            .collect();
        let Settled {
            applied,
            stale,
            confirmed,
        } = self.queue.confirm_settle(fence, now, &items).await?;
        if stale > 0 {
            warn!(
                stale,
                applied, "confirmation leases expired mid-check; their results were dropped"
            );
        } else {
            // Counted only when every decision was applied, so the counters match the events.
            self.counters.bound.inc_by(bound);
            self.counters.unconfirmed.inc_by(unconfirmed);
        }
        for batch in confirmed {
            info!(batch_id = %batch, "batch confirmed");
        }
        Ok(())
    }

    /// Leaves the group if nothing is pending for this consumer, so restarts do not pile up
    /// consumers. Pending entries stay for XAUTOCLAIM.
    async fn leave(&self) {
        if let Err(e) = self.queue.leave_group(CONFIRM_GROUP, &self.consumer).await {
            debug!(error = %e, "leaving the confirmation group failed; its consumer entry stays");
        }
    }
}

/// The outcome of one entry's check.
enum Decision {
    Bound(BatchId, Event),
    Unconfirmed(BatchId, Event),
    /// Check again at this time (ms), with these details.
    Later(u64, Info),
}

/// The `env/appid` of a confirmation event (its pair's result row).
fn pair_of(e: &Event) -> String {
    match &e.kind {
        EventKind::ShareBound { env, appid, .. }
        | EventKind::ShareUnconfirmed { env, appid, .. } => row_field(env, appid),
        _ => String::new(),
    }
}
