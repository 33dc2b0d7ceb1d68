//! Result events (their schema: docs/events.md) and the Redis Stream consumer.
//!
//! The queue's ack scripts append events to `envshare:{QUEUE}:events` in the same script as the
//! state change (outbox), so an event exists exactly when its state change happened. Each entry
//! has two fields: `type` and `event` (the JSON of [`Event`]). Delivery to consumers is at least
//! once; [`Event::id`] is stable, so consumers dedupe by it.

use serde::{Deserialize, Serialize};

use crate::ids::{AppId, BatchId, EnvId, JobId};

/// The event format version written in `v`.
pub const EVENT_VERSION: u32 = 1;

/// One result event, as written to the stream.
///
/// Serialized field order is `v`, `id`, `at`, `type`, then the fields of the kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Format version, [`EVENT_VERSION`].
    pub v: u32,
    /// Stable id: `{job_id}.{gen}.{appid}` for share events (`.bound` / `.unconfirmed` appended
    /// for confirmation events), `batch.{batch_id}.completed`, `batch.{batch_id}.confirmed`,
    /// `app.{appid}.{info_type}.{create_time}` for `app.*` events.
    pub id: String,
    /// When the state change happened, ISO-8601 UTC.
    pub at: String,
    /// What happened; serialized as `type` plus the fields of the variant.
    #[serde(flatten)]
    pub kind: EventKind,
    /// The OpenTelemetry trace (32 lowercase hex digits) of the import that enqueued the job
    /// (of the batch for `batch.*` events); absent when that import exported no traces.
    /// Serialized last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// The kinds of events and their fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum EventKind {
    /// WeChat took the share request for this appid.
    #[serde(rename = "share.accepted")]
    ShareAccepted {
        /// The job that carried the appid.
        job_id: JobId,
        /// The job's batch.
        batch_id: BatchId,
        /// The shared environment.
        env: EnvId,
        /// The Mini Program.
        appid: AppId,
        /// The URL the Mini Program's administrator opens to confirm (from `msg_info_list`).
        confirm_url: Option<String>,
        /// Tries made so far, this one included.
        attempts: u32,
    },
    /// The share failed for this appid and will not be tried again.
    #[serde(rename = "share.failed")]
    ShareFailed {
        /// The job that carried the appid.
        job_id: JobId,
        /// The job's batch.
        batch_id: BatchId,
        /// The shared environment.
        env: EnvId,
        /// The Mini Program.
        appid: AppId,
        /// Always null for a failure; kept so every share event has the same fields.
        #[serde(default)]
        confirm_url: Option<String>,
        /// Tries made, the last one included.
        attempts: u32,
        /// WeChat's errcode, if WeChat answered.
        errcode: Option<i64>,
        /// WeChat's errmsg or a description of the failure.
        errmsg: String,
        /// Why the share failed.
        reason: FailReason,
    },
    /// WeChat removed the binding of `env` for this appid (`envshare unshare`, `envshare sync
    /// --prune`).
    #[serde(rename = "share.unshared")]
    ShareUnshared {
        /// The job that carried the appid.
        job_id: JobId,
        /// The job's batch.
        batch_id: BatchId,
        /// The environment no longer shared.
        env: EnvId,
        /// The Mini Program.
        appid: AppId,
        /// Tries made so far, this one included.
        attempts: u32,
    },
    /// Every job of the batch has ended; emitted once per batch.
    #[serde(rename = "batch.completed")]
    BatchCompleted {
        /// The batch.
        batch_id: BatchId,
        /// Appids enqueued in the batch.
        total: u64,
        /// Appids accepted.
        accepted: u64,
        /// Appids failed.
        failed: u64,
    },
    /// `batchgetenvid` lists `env` for `appid`: the administrator confirmed, the binding is live.
    #[serde(rename = "share.bound")]
    ShareBound {
        /// The job that carried the appid.
        job_id: JobId,
        /// The job's batch.
        batch_id: BatchId,
        /// The shared environment.
        env: EnvId,
        /// The Mini Program.
        appid: AppId,
        /// When the share was accepted, ISO-8601 UTC.
        accepted_at: String,
        /// Seconds from acceptance to the check that saw the binding (ms precision).
        confirm_seconds: f64,
        /// `batchgetenvid` checks made, this one included.
        checks: u32,
    },
    /// The confirmation window ended without the binding showing up.
    #[serde(rename = "share.unconfirmed")]
    ShareUnconfirmed {
        /// The job that carried the appid.
        job_id: JobId,
        /// The job's batch.
        batch_id: BatchId,
        /// The shared environment.
        env: EnvId,
        /// The Mini Program.
        appid: AppId,
        /// When the share was accepted, ISO-8601 UTC.
        accepted_at: String,
        /// The window (`ENVSHARE_CONFIRM_WINDOW`) in seconds.
        window_seconds: f64,
        /// `batchgetenvid` checks made.
        checks: u32,
    },
    /// The batch completed and every accepted appid is bound or unconfirmed; emitted once.
    #[serde(rename = "batch.confirmed")]
    BatchConfirmed {
        /// The batch.
        batch_id: BatchId,
        /// Appids accepted.
        accepted: u64,
        /// Appids bound.
        bound: u64,
        /// Appids unconfirmed.
        unconfirmed: u64,
    },
    /// A Mini Program authorized the platform (the open platform's `authorized` push).
    #[serde(rename = "app.authorized")]
    AppAuthorized {
        /// The Mini Program.
        appid: AppId,
    },
    /// A Mini Program changed the permissions it granted the platform (`updateauthorized`).
    #[serde(rename = "app.authorization_updated")]
    AppAuthorizationUpdated {
        /// The Mini Program.
        appid: AppId,
    },
    /// A Mini Program revoked the platform's authorization (`unauthorized`).
    #[serde(rename = "app.unauthorized")]
    AppUnauthorized {
        /// The Mini Program.
        appid: AppId,
    },
    /// A type this version does not know (written by a newer version); consumers skip it.
    #[serde(other)]
    Unknown,
}

impl EventKind {
    /// Whether this is one of the confirmation events (`share.bound`, `share.unconfirmed`,
    /// `batch.confirmed`), written by the confirmation watcher rather than the queue.
    pub fn is_confirmation(&self) -> bool {
        matches!(
            self,
            EventKind::ShareBound { .. }
                | EventKind::ShareUnconfirmed { .. }
                | EventKind::BatchConfirmed { .. }
        )
    }

    /// The `type` string (`share.accepted`, …); `unknown` for [`EventKind::Unknown`].
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::ShareAccepted { .. } => "share.accepted",
            EventKind::ShareFailed { .. } => "share.failed",
            EventKind::ShareUnshared { .. } => "share.unshared",
            EventKind::BatchCompleted { .. } => "batch.completed",
            EventKind::ShareBound { .. } => "share.bound",
            EventKind::ShareUnconfirmed { .. } => "share.unconfirmed",
            EventKind::BatchConfirmed { .. } => "batch.confirmed",
            EventKind::AppAuthorized { .. } => "app.authorized",
            EventKind::AppAuthorizationUpdated { .. } => "app.authorization_updated",
            EventKind::AppUnauthorized { .. } => "app.unauthorized",
            EventKind::Unknown => "unknown",
        }
    }
}

/// Why a share failed (`reason` of `share.failed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailReason {
    /// WeChat listed the appid in `err_list`.
    Rejected,
    /// WeChat answered with a permanent errcode.
    PermanentError,
    /// Transient failures until the last attempt.
    RetriesExhausted,
    /// The worker holding the job stopped renewing its lease, until the last attempt.
    LeaseExpired,
    /// An operator cancelled the batch before the job ran (`envshare batch cancel`).
    Cancelled,
}

impl FailReason {
    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::Rejected => "rejected",
            FailReason::PermanentError => "permanent_error",
            FailReason::RetriesExhausted => "retries_exhausted",
            FailReason::LeaseExpired => "lease_expired",
            FailReason::Cancelled => "cancelled",
        }
    }
}

impl Event {
    /// The stable id of a share event: `{job_id}.{gen}.{appid}`.
    pub fn share_id(job: &JobId, gen_: u32, appid: &AppId) -> String {
        format!("{job}.{gen_}.{appid}")
    }

    /// The stable id of a batch's completion: `batch.{batch_id}.completed`.
    pub fn batch_completed_id(batch: &BatchId) -> String {
        format!("batch.{batch}.completed")
    }

    /// The stable id of an `app.*` event: `app.{appid}.{info_type}.{create_time}`, from the
    /// push itself (its `InfoType` and WeChat's `CreateTime` in seconds), so a re-sent push has
    /// the same id.
    pub fn app_id(appid: &AppId, info_type: &str, create_time: u64) -> String {
        format!("app.{appid}.{info_type}.{create_time}")
    }

    /// The `type` field.
    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }

    /// The JSON written to the stream's `event` field.
    pub fn to_json(&self) -> String {
        // Serializing plain strings and integers cannot fail.
        serde_json::to_string(self).expect("an Event always serializes")
    }
}

/// Why a stream entry is not an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The entry has no `event` field.
    #[error("no `event` field")]
    NoEventField,
    /// The `event` field is not the JSON of an [`Event`].
    #[error("{0}")]
    Json(String),
}

impl Event {
    /// The event in the fields of a stream entry (`type`, T, `event`, JSON, …).
    pub fn from_entry_fields(fields: &[String]) -> Result<Event, EntryError> {
        let json = fields
            .chunks(2)
            .find(|kv| kv.len() == 2 && kv[0] == "event")
            .map(|kv| kv[1].as_str())
            .ok_or(EntryError::NoEventField)?;
        serde_json::from_str(json).map_err(|e| EntryError::Json(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted() -> Event {
        let job = JobId::parse("01JOB").unwrap();
        let appid = AppId::parse("wx0123456789abcdef").unwrap();
        Event {
            v: EVENT_VERSION,
            id: Event::share_id(&job, 0, &appid),
            at: "2026-11-30T02:00:00.000Z".into(),
            kind: EventKind::ShareAccepted {
                job_id: job,
                batch_id: BatchId::parse("b-1").unwrap(),
                env: EnvId::parse("prod-1a2b").unwrap(),
                appid,
                confirm_url: None,
                attempts: 1,
            },
            trace_id: None,
        }
    }

    #[test]
    fn an_accepted_event_has_exactly_the_documented_fields() {
        let v: serde_json::Value = serde_json::from_str(&accepted().to_json()).unwrap();
        let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "appid",
                "at",
                "attempts",
                "batch_id",
                "confirm_url",
                "env",
                "id",
                "job_id",
                "type",
                "v"
            ]
        );
        assert_eq!(v["type"], "share.accepted");
        assert_eq!(v["id"], "01JOB.0.wx0123456789abcdef");
        assert!(v["confirm_url"].is_null());
    }

    #[test]
    fn a_failed_event_round_trips_with_its_reason() {
        let e = Event {
            v: 1,
            id: "j.1.wx0123456789abcdef".into(),
            at: "x".into(),
            kind: EventKind::ShareFailed {
                job_id: JobId::parse("j").unwrap(),
                batch_id: BatchId::parse("b").unwrap(),
                env: EnvId::parse("e").unwrap(),
                appid: AppId::parse("wx0123456789abcdef").unwrap(),
                confirm_url: None,
                attempts: 3,
                errcode: Some(-1),
                errmsg: "system busy".into(),
                reason: FailReason::RetriesExhausted,
            },
            trace_id: None,
        };
        let json = e.to_json();
        assert!(json.contains("\"reason\":\"retries_exhausted\""), "{json}");
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e);
    }

    #[test]
    fn a_batch_completed_event_parses_from_lua_style_json() {
        let json = r#"{"failed":1,"type":"batch.completed","total":3,"v":1,"at":"t","accepted":2,"id":"batch.b-1.completed","batch_id":"b-1"}"#;
        let e: Event = serde_json::from_str(json).unwrap();
        assert_eq!(
            e.kind,
            EventKind::BatchCompleted {
                batch_id: BatchId::parse("b-1").unwrap(),
                total: 3,
                accepted: 2,
                failed: 1
            }
        );
    }

    #[test]
    fn an_app_event_has_the_common_fields_and_the_appid() {
        let appid = AppId::parse("wx0123456789abcdef").unwrap();
        let e = Event {
            v: EVENT_VERSION,
            id: Event::app_id(&appid, "authorized", 1_764_745_200),
            at: "2026-12-03T07:00:00.000Z".into(),
            kind: EventKind::AppAuthorized { appid },
            trace_id: None,
        };
        assert_eq!(
            e.to_json(),
            r#"{"v":1,"id":"app.wx0123456789abcdef.authorized.1764745200","at":"2026-12-03T07:00:00.000Z","type":"app.authorized","appid":"wx0123456789abcdef"}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&e.to_json()).unwrap(), e);
    }

    #[test]
    fn an_unknown_type_parses_as_unknown() {
        let e: Event = serde_json::from_str(
            r#"{"v":1,"id":"x","at":"t","type":"share.revoked","appid":"wx"}"#,
        )
        .unwrap();
        assert_eq!(e.kind, EventKind::Unknown);
    }
}
