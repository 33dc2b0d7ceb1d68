//! The operator's views of a queue, shared by the command line (`envshare batch`, `status`,
//! `pause`, `resume`) and the HTTP API of `envshare serve`, so both answer the same thing:
//!
//! - [`BatchView`]: one batch's progress, phase, confirmation counters and per-state counts;
//! - [`Status`]: counts per state, workers, pause, token expiry and ticket age (never their
//!   values), and optionally one batch;
//! - [`pause`] and [`resume`]: the queue-wide pause, with the reason checked as the command line
//!   checks `--reason`.
//!
//! Everything is read with O(1) commands and per-batch bitmaps; nothing scans keys.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::Settings;
use crate::ids::BatchId;
use crate::store::{BatchProgress, Pause, Queue, QueueStats, RowState, StoreError};

/// `ms` as RFC 3339 UTC to the second (`2026-12-03T09:28:31Z`); `-` for 0 (unknown).
pub fn seconds(ms: u64) -> String {
    if ms == 0 {
        return "-".to_owned();
    }
    crate::clock::iso8601_seconds(ms)
}

/// One batch as `envshare batch list|show --json` and `GET /api/v1/batches[/{id}]` show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BatchView {
    /// Progress counters from the batch's hash.
    #[serde(flatten)]
    pub progress: BatchProgress,
    /// When the batch was created (RFC 3339).
    pub created_at: String,
    /// `enqueuing`, `running`, `completed`, `confirmed` or `cancelled`.
    pub phase: &'static str,
    /// Appids neither accepted nor failed yet.
    pub pending: u64,
    /// Accepted appids whose binding was confirmed.
    pub bound: u64,
    /// Accepted appids whose confirmation window ended first.
    pub unconfirmed: u64,
    /// Appids per result state; `None` for a batch enqueued before per-appid results existed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results: Option<BTreeMap<RowState, u64>>,
}

impl BatchView {
    /// The view of batch `id`, whose progress `p` was just read.
    pub async fn read(queue: &Queue, id: &BatchId, p: BatchProgress) -> Result<Self, StoreError> {
        let c = queue.batch_confirmation(id).await?;
        let counts = queue.results_counts(id).await?;
        let results = (counts.values().sum::<u64>() > 0).then_some(counts);
        let cancelled = results
            .as_ref()
            .and_then(|c| c.get(&RowState::Cancelled))
            .is_some_and(|n| *n > 0);
        Ok(Self {
            created_at: seconds(p.created_at_ms),
            phase: p.phase(c.confirmed, cancelled),
            pending: p.pending(),
            bound: c.bound,
            unconfirmed: c.unconfirmed,
            results,
            progress: p,
        })
    }

    /// The view of batch `id`; `None` if the queue has no such batch.
    pub async fn get(queue: &Queue, id: &BatchId) -> Result<Option<Self>, StoreError> {
        match queue.batch(id).await? {
            Some(p) => Ok(Some(Self::read(queue, id, p).await?)),
            None => Ok(None),
        }
    }

    /// The batches on record, newest first, `limit` from `offset`. A batch whose record expired
    /// between the two reads is left out.
    pub async fn list(queue: &Queue, offset: usize, limit: usize) -> Result<Vec<Self>, StoreError> {
        let ids = queue.list_batches(offset, limit).await?;
        let mut views = Vec::with_capacity(ids.len());
        for id in &ids {
            if let Some(v) = Self::get(queue, id).await? {
                views.push(v);
            }
        }
        Ok(views)
    }

    /// The batch id as text.
    pub fn id(&self) -> String {
        self.progress
            .id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
    }
}

/// A verify ticket lives 12 hours.
pub const TICKET_LIFE_MS: u64 = 12 * 3600 * 1000;

/// What `envshare status --json` and `GET /api/v1/status` show.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// The queue's name.
    pub queue: String,
    /// Counts per state, workers, pause, counters.
    #[serde(flatten)]
    pub stats: QueueStats,
    /// The token, without its value.
    pub token: TokenInfo,
    /// The verify ticket, without its value.
    pub ticket: TicketInfo,
    /// The batch asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchInfo>,
    /// When this was read (the queue's clock, ms), for the ages printed.
    #[serde(skip)]
    pub read_at_ms: u64,
}

/// The token, without its value.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    /// Where workers take it from: `component`, `fixed`, `redis`, `http`, or `none`.
    pub source: &'static str,
    /// A token is cached in Redis (`component`), or present at the source (`redis`, `http`).
    pub cached: bool,
    /// Time until it expires (ms), when cached with an expiry.
    pub expires_in_ms: Option<u64>,
    /// Why the source could not be read (`redis`, `http`), if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The verify ticket, without its value.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TicketInfo {
    /// A ticket is stored.
    pub stored: bool,
    /// When it was stored (ms since the epoch).
    pub set_at_ms: Option<u64>,
    /// Its age (ms).
    pub age_ms: Option<u64>,
}

/// One batch's progress within [`Status`].
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BatchInfo {
    /// Progress counters.
    #[serde(flatten)]
    pub progress: BatchProgress,
    /// Appids neither accepted nor failed yet.
    pub pending: u64,
    /// Accepted appids whose binding `batchgetenvid` showed confirmed (`share.bound`).
    pub bound: u64,
    /// Accepted appids whose confirmation window ended first (`share.unconfirmed`).
    pub unconfirmed: u64,
    /// Accepted appids still being checked.
    pub awaiting_confirmation: u64,
    /// `batch.confirmed` was emitted.
    pub confirmed: bool,
}

impl BatchInfo {
    async fn read(
        queue: &Queue,
        id: &BatchId,
        progress: BatchProgress,
    ) -> Result<Self, StoreError> {
        let pending = progress.pending();
        let c = queue.batch_confirmation(id).await?;
        let (bound, unconfirmed, confirmed) = (c.bound, c.unconfirmed, c.confirmed);
        Ok(Self {
            pending,
            bound,
            unconfirmed,
            awaiting_confirmation: progress.accepted.saturating_sub(bound + unconfirmed),
            confirmed,
            progress,
        })
    }
}

/// Why [`status`] could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Redis failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The queue has no such batch.
    #[error("the queue has no batch {0}")]
    UnknownBatch(BatchId),
}

/// The token of a `redis` or `http` source, asked from the source itself.
async fn external_token(settings: &Settings, queue: &Queue, source: &'static str) -> TokenInfo {
    let status = async {
        let client =
            crate::wechat::WechatClient::from_settings(settings).map_err(|e| e.to_string())?;
        let provider =
            crate::token::provider_for(settings, queue.connection(), queue.keys(), client)
                .map_err(|e| e.to_string())?;
        provider.status().await.map_err(|e| e.to_string())
    };
    match status.await {
        Ok(st) => TokenInfo {
            source,
            cached: st.cached,
            expires_in_ms: st.expires_at_ms.map(|e| e.saturating_sub(queue.now_ms())),
            error: None,
        },
        Err(error) => TokenInfo {
            source,
            cached: false,
            expires_in_ms: None,
            error: Some(error),
        },
    }
}

/// The queue's status (and batch `batch`'s, if given). The token and the ticket are never read:
/// only the token key's time to live and the ticket's `set_at` (or, for a `redis` or `http`
/// token source, the source's own answer about its token).
pub async fn status(
    settings: &Settings,
    queue: &Queue,
    batch: Option<&BatchId>,
) -> Result<Status, StatusError> {
    let stats = queue.stats().await?;
    let meta = queue.token_store().meta().await?;
    let source = settings.token_mode().name();
    let token = match source {
        "redis" | "http" => external_token(settings, queue, source).await,
        _ => TokenInfo {
            source,
            cached: meta.token_cached,
            expires_in_ms: meta.token_ttl_ms,
            error: None,
        },
    };
    let ticket = TicketInfo {
        stored: meta.ticket_stored,
        set_at_ms: meta.ticket_set_at_ms,
        age_ms: meta
            .ticket_set_at_ms
            .map(|s| queue.now_ms().saturating_sub(s)),
    };
    let batch = match batch {
        None => None,
        Some(id) => match queue.batch(id).await? {
            Some(p) => Some(BatchInfo::read(queue, id, p).await?),
            None => return Err(StatusError::UnknownBatch(id.clone())),
        },
    };
    Ok(Status {
        queue: queue.keys().queue_name().to_owned(),
        stats,
        token,
        ticket,
        batch,
        read_at_ms: queue.now_ms(),
    })
}

/// The end of a pause "until resumed" (far beyond any automatic pause).
pub const UNTIL_RESUMED_MS: u64 = crate::schedule::PAUSE_UNTIL_RESUMED_MS;

/// The reason stored when none is given.
pub const DEFAULT_REASON: &str = "paused by an operator (envshare pause)";

/// The longest pause reason accepted, in characters.
pub const MAX_REASON_LEN: usize = crate::schedule::MAX_PAUSE_REASON_LEN;

/// A pause as `pause`/`resume` report it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PauseView {
    /// End of the pause (ms since the epoch).
    pub until_ms: u64,
    /// The pause lasts until resumed (`until_ms` is [`UNTIL_RESUMED_MS`]).
    pub until_resumed: bool,
    /// Why.
    pub reason: String,
}

impl PauseView {
    /// The view of a stored pause.
    pub fn of(p: &Pause) -> Self {
        Self {
            until_ms: p.until_ms,
            until_resumed: p.until_ms >= UNTIL_RESUMED_MS,
            reason: p.reason.clone(),
        }
    }
}

/// What [`pause`] did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PauseReport {
    /// The queue's name.
    pub queue: String,
    /// The pause asked for.
    pub requested: PauseView,
    /// The pause in force after the call (a longer one already in force is kept).
    pub paused: Option<PauseView>,
    /// A longer pause was already in force and was kept as it was.
    pub kept_longer: bool,
}

/// What [`resume`] did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ResumeReport {
    /// The queue's name.
    pub queue: String,
    /// The pause that was lifted, if there was one.
    pub lifted: Option<PauseView>,
}

/// A pause reason that cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReasonError {
    /// Empty or blank.
    #[error("the reason is empty: say why the queue is paused")]
    Empty,
    /// Too long, or with a control character (a line break included).
    #[error(
        "the reason must be one line of at most {MAX_REASON_LEN} characters without control \
         characters"
    )]
    Shape,
}

/// The reason to store: `reason` trimmed, or [`DEFAULT_REASON`] without one.
pub fn check_reason(reason: Option<&str>) -> Result<String, ReasonError> {
    match reason.map(str::trim) {
        None => Ok(DEFAULT_REASON.to_owned()),
        Some("") => Err(ReasonError::Empty),
        Some(r) if !crate::schedule::pause_reason_ok(r) => Err(ReasonError::Shape),
        Some(r) => Ok(r.to_owned()),
    }
}

pub use crate::schedule::pause_end;

/// Pauses the queue until `until_ms` with `reason` (checked with [`check_reason`] by the
/// caller). Pausing never shortens a longer pause already in force.
pub async fn pause(
    queue: &Queue,
    until_ms: u64,
    reason: String,
) -> Result<PauseReport, StoreError> {
    queue.pause_until(until_ms, &reason).await?;
    let in_force = queue.pause_in_force().await?;
    let kept_longer = in_force.as_ref().is_some_and(|p| p.until_ms > until_ms);
    Ok(PauseReport {
        queue: queue.keys().queue_name().to_owned(),
        requested: PauseView {
            until_ms,
            until_resumed: until_ms >= UNTIL_RESUMED_MS,
            reason,
        },
        paused: in_force.as_ref().map(PauseView::of),
        kept_longer,
    })
}

/// Ends the pause in force, whoever set it; reports the pause lifted.
pub async fn resume(queue: &Queue) -> Result<ResumeReport, StoreError> {
    let before = queue.pause_in_force().await?;
    queue.resume().await?;
    Ok(ResumeReport {
        queue: queue.keys().queue_name().to_owned(),
        lifted: before.as_ref().map(PauseView::of),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_resumed_is_exact_in_lua_and_far_beyond_any_automatic_pause() {
        assert_eq!(seconds(UNTIL_RESUMED_MS), "9999-12-31T23:59:59Z");
        assert_eq!(
            pause_end(1, Some(std::time::Duration::MAX)),
            UNTIL_RESUMED_MS
        );
        assert_eq!(pause_end(1, None), UNTIL_RESUMED_MS);
        assert_eq!(
            pause_end(1_000, Some(std::time::Duration::from_secs(60))),
            61_000
        );
    }

    #[test]
    fn a_reason_is_one_trimmed_line() {
        assert_eq!(check_reason(None).unwrap(), DEFAULT_REASON);
        assert_eq!(check_reason(Some("  quota  ")).unwrap(), "quota");
        assert_eq!(check_reason(Some(" ")), Err(ReasonError::Empty));
        assert_eq!(check_reason(Some("a\nb")), Err(ReasonError::Shape));
        assert_eq!(
            check_reason(Some(&"x".repeat(MAX_REASON_LEN + 1))),
            Err(ReasonError::Shape)
        );
    }
}
