//! The share handler: one `batchshareenv` call per job, its answer classified as the table
//! below says.
//!
//! Order of one attempt: a local pause check (another job of this process already hit the quota
//! or a token misconfiguration) → a rate limit slot → a token → the call → the outcome:
//!
//! | answer | outcome |
//! |---|---|
//! | errcode 0 | `Done`: one result per appid of the job (see below) |
//! | -1, -1000, HTTP 5xx, timeout, transport, unparsable | `Transient` (backoff in Redis) |
//! | token errcode (40014, 42001, 40001, 41001) | invalidate that token, take the fresh one, call again in this attempt; a second token error is `Transient` |
//! | 45009 | pause the queue until the quota resets; `Defer` (attempt refunded) |
//! | any other errcode | `Permanent` |
//! | token misconfiguration (61004, 61005/61006, bad secret, no ticket) | pause the queue for a short re-check interval; `Defer` |
//!
//! Per appid of an errcode-0 answer: listed in `err_list` → `Rejected` with its errmsg; else
//! `Accepted` with its `msg_info_list` URL, or with no URL when WeChat sent none. An appid
//! WeChat mentions in neither list is counted as accepted without a URL: errcode 0 means the
//! request was processed, and only `err_list` says an appid was refused. Marking it failed
//! would make operators re-send a share WeChat may well have applied.
//!
//! Unknown outcome: every attempt after the first may follow a share WeChat applied without us
//! seeing the answer (a timeout or reset mid-response, or a worker that died mid-call and was
//! reaped). So such an attempt first asks `batchgetenvid` which appids are already bound to the
//! env; those are not sent again (they end `Accepted` without a URL, and the confirmation
//! watcher sees them bound at its first check), the rest are shared as usual. A failed check is
//! handled like a failed call (45009 pauses, a token misconfiguration pauses, anything else is
//! transient): nothing is re-sent without knowing. See docs/confirmation.md.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use apalis_core::task::data::Data;
use rand::Rng;
use tracing::field::Empty;
use tracing::{Instrument as _, debug, error, info, info_span, warn};

use super::metrics::Metrics;
use super::{JobOutcome, LeaseInfo};
use crate::clock::iso8601;
use crate::confirm::{BindingChecker, CheckError};
use crate::ids::AppId;
use crate::schedule::{QuotaReset, next_quota_reset};
use crate::store::{AppResult, JobOp, Queue, ShareJob};
use crate::throttle::RateLimiter;
use crate::token::{AccessToken, TokenError, TokenProvider};
use crate::wechat::{ErrorClass, ShareResponse, WechatClient, WechatError};

/// Everything the handler needs, shared by every job of one worker process (an
/// `Arc<ShareContext>` added with `WorkerBuilder::data`).
pub struct ShareContext {
    pub(crate) queue: Queue,
    pub(crate) client: WechatClient,
    pub(crate) tokens: Arc<dyn TokenProvider>,
    pub(crate) limiter: Arc<RateLimiter>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) quota_reset: QuotaReset,
    /// Tests: pause this long after 45009 instead of until the next quota reset.
    pub(crate) quota_pause: Option<Duration>,
    /// How long a token misconfiguration pauses the queue before a job tries again.
    pub(crate) misconfig_recheck: Duration,
    /// How long a job waits after a passing token or rate-limit failure (never calls WeChat).
    pub(crate) token_retry: Duration,
    pub(crate) max_attempts: u32,
    /// Asks `batchgetenvid` before re-sending after an unknown outcome.
    checker: BindingChecker,
    /// The latest pause this process knows of (ms): jobs already claimed skip the call until
    /// then, so no call goes out after a 45009 from this process.
    paused_until: AtomicU64,
    /// When this process last asked Redis whether the pause still holds (ms).
    pause_checked_at: AtomicU64,
    /// End of the misconfiguration pause that was logged last: one error line per pause.
    misconfig_logged_until: AtomicU64,
    /// A misconfiguration was seen and no token has worked since.
    misconfigured: AtomicBool,
}

impl std::fmt::Debug for ShareContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareContext")
            .field("queue", &self.queue)
            .field("quota_reset", &self.quota_reset)
            .field("misconfig_recheck", &self.misconfig_recheck)
            .finish_non_exhaustive()
    }
}

/// The handler the worker runs for every claimed job.
///
/// Each attempt runs in one `share_job` span (its fields also label the attempt's log lines).
/// When traces are exported, the span is a child of the span that enqueued the job (the job's
/// `traceparent`: an import), so an import and every attempt of its jobs, with their WeChat
/// calls, form one trace; the span ends with the attempt's outcome.
pub async fn share_handler(
    job: ShareJob,
    lease: Data<LeaseInfo>,
    ctx: Data<Arc<ShareContext>>,
) -> JobOutcome {
    let span = info_span!(
        "share_job",
        otel.kind = "consumer",
        otel.name = if job.op == JobOp::Unshare { "unshare attempt" } else { "share attempt" },
        otel.status_code = Empty,
        job_id = %job.id,
        batch_id = %job.batch,
        env = %job.env,
        appids = job.appids.len(),
        attempt = lease.attempt,
        outcome = Empty,
    );
    crate::telemetry::set_remote_parent(&span, job.traceparent.as_deref());
    let outcome = ctx.run(&job, lease.attempt).instrument(span.clone()).await;
    span.record("outcome", outcome_label(&outcome));
    if !matches!(outcome, JobOutcome::Done(_) | JobOutcome::Defer { .. }) {
        span.record("otel.status_code", "ERROR");
    }
    ctx.record(&outcome, lease.attempt);
    outcome
}

/// The attempt's outcome as the `outcome` attribute of its span: `done`, `transient`,
/// `permanent` or `deferred` (the labels of the jobs metric).
fn outcome_label(outcome: &JobOutcome) -> &'static str {
    match outcome {
        JobOutcome::Done(_) => "done",
        JobOutcome::Transient { .. } => "transient",
        JobOutcome::Permanent { .. } => "permanent",
        JobOutcome::Defer { .. } => "deferred",
    }
}

/// A job that met a queue-wide pause: it goes back with its attempt refunded, due again in at most
/// a second. While the pause holds, claims are refused, so it waits in `ready` without running;
/// when the pause ends early (`envshare ticket set`, `Queue::resume`) it runs at once instead of
/// at the pause's planned end.
fn wait_out_pause(now: u64, until: u64) -> JobOutcome {
    JobOutcome::Defer {
        until_ms: until.min(now + 1_000),
    }
}

/// What one call ended with.
enum Call {
    Answered(ShareResponse),
    Failed(WechatError),
}

/// What a [`ShareContext`] is built from.
pub(crate) struct ShareParts {
    pub(crate) queue: Queue,
    pub(crate) client: WechatClient,
    pub(crate) tokens: Arc<dyn TokenProvider>,
    pub(crate) limiter: Arc<RateLimiter>,
    pub(crate) metrics: Arc<Metrics>,
    /// Asks `batchgetenvid` before re-sending after an unknown outcome.
    pub(crate) checker: BindingChecker,
    /// `ENVSHARE_QUOTA_RESET`.
    pub(crate) quota_reset: QuotaReset,
    /// Tests: pause this long after 45009 instead of until the next quota reset.
    pub(crate) quota_pause: Option<Duration>,
    /// How long a token misconfiguration pauses the queue before a job tries again.
    pub(crate) misconfig_recheck: Duration,
    /// How long a job waits after a passing token or rate-limit failure.
    pub(crate) token_retry: Duration,
    /// `ENVSHARE_MAX_ATTEMPTS`.
    pub(crate) max_attempts: u32,
}

impl ShareContext {
    pub(crate) fn new(parts: ShareParts) -> Self {
        let ShareParts {
            queue,
            client,
            tokens,
            limiter,
            metrics,
            checker,
            quota_reset,
            quota_pause,
            misconfig_recheck,
            token_retry,
            max_attempts,
        } = parts;
        Self {
            checker,
            queue,
            client,
            tokens,
            limiter,
            metrics,
            quota_reset,
            quota_pause,
            misconfig_recheck,
            token_retry,
            max_attempts,
            paused_until: AtomicU64::new(0),
            pause_checked_at: AtomicU64::new(0),
            misconfig_logged_until: AtomicU64::new(0),
            misconfigured: AtomicBool::new(false),
        }
    }

    /// Whether the last token request failed for misconfiguration (for `/readyz`).
    pub(crate) fn is_misconfigured(&self) -> bool {
        self.misconfigured.load(Ordering::Relaxed)
    }

    fn record(&self, outcome: &JobOutcome, attempt: u32) {
        match outcome {
            JobOutcome::Done(results) => {
                let rejected = results
                    .iter()
                    .filter(|r| matches!(r, AppResult::Rejected { .. }))
                    .count() as u64;
                self.metrics
                    .appids(results.len() as u64 - rejected, rejected);
                self.metrics.job("done");
            }
            JobOutcome::Transient { errcode, errmsg } => {
                self.metrics.job("transient");
                if attempt < self.max_attempts {
                    self.metrics.retry();
                    debug!(?errcode, %errmsg, "transient failure; retry scheduled");
                } else {
                    warn!(?errcode, %errmsg, "transient failure on the last attempt; job is dead");
                }
            }
            JobOutcome::Permanent { errcode, errmsg } => {
                self.metrics.job("permanent");
                warn!(?errcode, %errmsg, "permanent failure; job is dead");
            }
            JobOutcome::Defer { until_ms } => {
                self.metrics.job("deferred");
                debug!(until_ms, "job deferred (attempt refunded)");
            }
        }
    }

    async fn run(&self, job: &ShareJob, attempt: u32) -> JobOutcome {
        let now = self.queue.now_ms();
        let paused = self.paused_until.load(Ordering::Relaxed);
        if paused > now && !self.pause_lifted(now).await {
            return wait_out_pause(now, paused);
        }
        if attempt <= 1 {
            return self.share(job).await;
        }
        if job.op == JobOp::Unshare {
            return self.unshare_again(job).await;
        }
        // An earlier attempt's outcome is unknown: skip what WeChat already bound.
        self.metrics.confirm.resend_checks.inc();
        let bound = match self.checker.bound_to(&job.env, &job.appids).await {
            Ok(bound) => bound,
            Err(e) => return self.check_failed(e).await,
        };
        if bound.is_empty() {
            return self.share(job).await;
        }
        self.metrics
            .confirm
            .resend_skipped
            .inc_by(bound.len() as u64);
        info!(
            skipped = bound.len(),
            "appids already bound after an unknown outcome are not sent again"
        );
        self.send_some(job, |a| !bound.contains(a)).await
    }

    /// Sends `job` for the appids `send` picks; the others count as done already (accepted,
    /// or unshared for an unshare) without a call. One result per appid, in job order.
    async fn send_some(&self, job: &ShareJob, send: impl Fn(&AppId) -> bool) -> JobOutcome {
        let rest: Vec<AppId> = job.appids.iter().filter(|a| send(a)).cloned().collect();
        let outcome = if rest.is_empty() {
            JobOutcome::Done(Vec::new())
        } else if rest.len() == job.appids.len() {
            return self.share(job).await;
        } else {
            let sub = ShareJob {
                appids: rest,
                ..job.clone()
            };
            self.share(&sub).await
        };
        match outcome {
            JobOutcome::Done(results) => {
                let mut results = results.into_iter();
                let merged = job
                    .appids
                    .iter()
                    .map(|appid| {
                        if send(appid) {
                            results.next().expect("one result per sent appid")
                        } else {
                            AppResult::Accepted {
                                appid: appid.clone(),
                                confirm_url: None,
                            }
                        }
                    })
                    .collect();
                JobOutcome::Done(merged)
            }
            other => other,
        }
    }

    /// The outcome when the `batchgetenvid` check before a re-send failed.
    async fn check_failed(&self, e: CheckError) -> JobOutcome {
        match e {
            CheckError::Throttle(e) => {
                warn!(error = %e, "rate limit unavailable; job deferred");
                self.defer_briefly()
            }
            CheckError::Token(e @ TokenError::Misconfigured { .. }) => {
                self.pause_misconfigured(&e).await
            }
            CheckError::Token(e) => {
                warn!(error = %e, "no access token for now; job deferred");
                self.defer_briefly()
            }
            CheckError::Wechat(e) if e.class() == ErrorClass::Quota => self.pause_quota(&e).await,
            CheckError::Wechat(e) => transient(&e),
        }
    }

    /// A later attempt of an unshare whose earlier outcome is unknown: appids no longer bound
    /// to the env are unshared already; only the others are sent again.
    async fn unshare_again(&self, job: &ShareJob) -> JobOutcome {
        self.metrics.confirm.resend_checks.inc();
        let bound = match self.checker.bound_to(&job.env, &job.appids).await {
            Ok(bound) => bound,
            Err(e) => return self.check_failed(e).await,
        };
        self.send_some(job, |a| bound.contains(a)).await
    }

    /// One share (or unshare) attempt for `job`'s appids: rate limit slot, token, call,
    /// outcome.
    async fn share(&self, job: &ShareJob) -> JobOutcome {
        if let Err(e) = self.limiter.acquire().await {
            // No call was made: the job's attempt is not spent on Redis trouble.
            warn!(error = %e, "rate limit unavailable; job deferred");
            return self.defer_briefly();
        }
        let token = match self.token().await {
            Ok(t) => t,
            Err(outcome) => return outcome,
        };
        let first = self.call(&token, job).await;
        let failed = match first {
            Call::Answered(r) => return done(job, &r),
            Call::Failed(e) if e.class() == ErrorClass::Token => e,
            Call::Failed(e) => return self.classify(e).await,
        };

        // Token error: drop the failed token (only if it is still the cached one), take the
        // fresh one and call again in this same attempt.
        if let Err(e) = self.tokens.invalidate(&token).await {
            warn!(error = %e, "invalidating the rejected token failed");
        }
        let fresh = match self.token().await {
            Ok(t) => t,
            Err(outcome) => return outcome,
        };
        if fresh.expose() == token.expose() {
            // Fixed mode (or a token service that has not refreshed yet): calling again with the
            // same token cannot help, so the error counts as transient.
            return transient(&failed);
        }
        self.metrics.token_retry();
        match self.call(&fresh, job).await {
            Call::Answered(r) => done(job, &r),
            // A second token error in one attempt is transient: retried later with backoff.
            Call::Failed(e) if e.class() == ErrorClass::Token => transient(&e),
            Call::Failed(e) => self.classify(e).await,
        }
    }

    async fn call(&self, token: &AccessToken, job: &ShareJob) -> Call {
        let started = Instant::now();
        let result = match job.op {
            JobOp::Share => {
                self.client
                    .share_env(token.secret(), &job.env, &job.appids)
                    .await
            }
            JobOp::Unshare => {
                self.client
                    .unshare_env(token.secret(), &job.env, &job.appids)
                    .await
            }
        };
        self.metrics.call(&result, started.elapsed());
        match result {
            Ok(r) => Call::Answered(r),
            Err(e) => Call::Failed(e),
        }
    }

    /// A token, or the outcome for a job that cannot get one.
    async fn token(&self) -> Result<AccessToken, JobOutcome> {
        match self.tokens.token().await {
            Ok(t) => {
                if self.misconfigured.swap(false, Ordering::Relaxed) {
                    info!("a component access token was obtained again; workers resume");
                }
                Ok(t)
            }
            Err(e @ TokenError::Misconfigured { .. }) => Err(self.pause_misconfigured(&e).await),
            Err(e) => {
                // WeChat's token endpoint busy, a wait for another process's fetch timed out, or
                // Redis: the share call was never made, so no attempt is spent.
                warn!(error = %e, "no access token for now; job deferred");
                Err(self.defer_briefly())
            }
        }
    }

    fn defer_briefly(&self) -> JobOutcome {
        let ceiling = self.token_retry.as_millis().max(1) as u64;
        let jitter = rand::rng().random_range(ceiling / 2..=ceiling);
        JobOutcome::Defer {
            until_ms: self.queue.now_ms() + jitter,
        }
    }

    async fn classify(&self, e: WechatError) -> JobOutcome {
        match e.class() {
            ErrorClass::Quota => self.pause_quota(&e).await,
            ErrorClass::Permanent => JobOutcome::Permanent {
                errcode: e.errcode(),
                errmsg: errmsg(&e),
            },
            // Ok never comes as an error; Token here is handled by the caller.
            ErrorClass::Transient | ErrorClass::Token | ErrorClass::Ok => transient(&e),
        }
    }

    /// Whether the queue-wide pause this process is honouring was lifted in Redis (e.g. by
    /// `envshare ticket set` after a ticket misconfiguration). Asked at most once a second, so a
    /// fixed ticket takes effect at once rather than at the end of the re-check interval.
    async fn pause_lifted(&self, now: u64) -> bool {
        let last = self.pause_checked_at.load(Ordering::Relaxed);
        if now < last + 1_000
            || self
                .pause_checked_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        match self.queue.pause_in_force().await {
            Ok(None) => {
                self.paused_until.store(0, Ordering::Relaxed);
                info!("the queue pause was lifted; calling WeChat again");
                true
            }
            Ok(Some(_)) => false,
            Err(e) => {
                debug!(error = %e, "reading the queue pause failed; still waiting");
                false
            }
        }
    }

    /// 45009: nobody calls until the quota resets; the job waits with its attempt refunded.
    async fn pause_quota(&self, e: &WechatError) -> JobOutcome {
        let now = self.queue.now_ms();
        let until = match self.quota_pause {
            Some(d) => now + d.as_millis() as u64,
            None => next_quota_reset(now, self.quota_reset),
        };
        let first = self.paused_until.fetch_max(until, Ordering::Relaxed) < now;
        let reason = format!(
            "WeChat daily quota spent (45009: {}); calls resume at {} (ENVSHARE_QUOTA_RESET {} \
             Asia/Shanghai)",
            errmsg(e),
            iso8601(until),
            self.quota_reset
        );
        if let Err(err) = self.queue.pause_until(until, &reason).await {
            warn!(error = %err, "writing the quota pause failed; this process still waits");
        }
        if first {
            self.metrics.pause("quota");
            warn!(until_ms = until, %reason, "queue paused");
        }
        wait_out_pause(now, until)
    }

    /// Token misconfiguration: a short pause, one loud line per pause, nothing burned.
    async fn pause_misconfigured(&self, e: &TokenError) -> JobOutcome {
        self.misconfigured.store(true, Ordering::Relaxed);
        let now = self.queue.now_ms();
        let until = now + self.misconfig_recheck.as_millis() as u64;
        self.paused_until.fetch_max(until, Ordering::Relaxed);
        // The message names the fix and never the secret, the ticket or a token.
        let reason = e.to_string();
        if let Err(err) = self.queue.pause_until(until, &reason).await {
            warn!(error = %err, "writing the pause failed; this process still waits");
        }
        // A ticket pushed while this pause was being written found no pause to lift: look
        // for it now (the writer of the ticket looks for the pause after its write, so one of
        // the two sees the other).
        let replaced = self.tokens.ticket_replaced().await.unwrap_or_else(|err| {
            warn!(error = %err, "could not tell whether a new verify ticket arrived meanwhile; the pause holds until the next re-check");
            false
        });
        if replaced {
            match crate::token::lift_ticket_pause(&self.queue).await {
                Ok(_) => {
                    self.paused_until.store(0, Ordering::Relaxed);
                    info!("a new verify ticket arrived while the queue was being paused; resumed");
                    return self.defer_briefly();
                }
                Err(err) => {
                    warn!(error = %err, "lifting the pause for the new ticket failed; this process still waits");
                }
            }
        }
        let logged = self.misconfig_logged_until.load(Ordering::Relaxed);
        if logged <= now
            && self
                .misconfig_logged_until
                .compare_exchange(logged, until, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.metrics.pause("token_config");
            error!(
                recheck_in_ms = self.misconfig_recheck.as_millis() as u64,
                "{reason}; every worker is paused and retries by itself"
            );
        }
        wait_out_pause(now, until)
    }
}

fn errmsg(e: &WechatError) -> String {
    match e {
        WechatError::Api { errmsg, .. } if !errmsg.is_empty() => errmsg.clone(),
        // Messages of WechatError never carry a URL or the token.
        other => other.to_string(),
    }
}

fn transient(e: &WechatError) -> JobOutcome {
    JobOutcome::Transient {
        errcode: e.errcode(),
        errmsg: errmsg(e),
    }
}

/// One result per appid of the job (see the module docs for appids WeChat does not mention).
fn done(job: &ShareJob, r: &ShareResponse) -> JobOutcome {
    let results = job
        .appids
        .iter()
        .map(|appid| match r.error_for(appid.as_str()) {
            Some(item) => AppResult::Rejected {
                appid: appid.clone(),
                errcode: item.errcode,
                errmsg: if item.errmsg.is_empty() {
                    "refused by WeChat in err_list (no errmsg given)".to_owned()
                } else {
                    item.errmsg.clone()
                },
            },
            None => AppResult::Accepted {
                appid: appid.clone(),
                confirm_url: r
                    .confirm_url(appid.as_str())
                    .filter(|u| !u.is_empty())
                    .map(str::to_owned),
            },
        })
        .collect();
    JobOutcome::Done(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{AppId, BatchId, EnvId, JobId};
    use crate::wechat::{ItemError, MsgInfo};

    fn job(appids: &[&str]) -> ShareJob {
        ShareJob {
            id: JobId::generate(),
            env: EnvId::parse("prod-1").unwrap(),
            appids: appids.iter().map(|a| AppId::parse(a).unwrap()).collect(),
            batch: BatchId::generate(),
            r#gen: 0,
            op: JobOp::Share,
            row: Some(0),
            job_index: Some(0),
            traceparent: None,
        }
    }

    const A: &str = "wx000000000000000a";
    const B: &str = "wx000000000000000b";
    const C: &str = "wx000000000000000c";

    #[test]
    fn an_ok_answer_gives_one_result_per_appid_in_job_order() {
        let r = ShareResponse {
            err_list: vec![ItemError {
                env: "prod-1".into(),
                appid: B.into(),
                errmsg: "appid not authorized".into(),
                errcode: None,
            }],
            msg_info_list: vec![MsgInfo {
                appid: A.into(),
                url: "https://confirm/a".into(),
            }],
        };
        let JobOutcome::Done(results) = done(&job(&[A, B, C]), &r) else {
            panic!("not done");
        };
        assert_eq!(results.len(), 3);
        assert!(
            matches!(&results[0], AppResult::Accepted { confirm_url: Some(u), .. } if u == "https://confirm/a")
        );
        assert!(
            matches!(&results[1], AppResult::Rejected { errmsg, .. } if errmsg == "appid not authorized")
        );
        // Mentioned in neither list: accepted without a URL.
        assert!(matches!(
            &results[2],
            AppResult::Accepted {
                confirm_url: None,
                ..
            }
        ));
    }

    #[test]
    fn a_rejection_without_errmsg_still_says_why() {
        let r = ShareResponse {
            err_list: vec![ItemError {
                env: String::new(),
                appid: A.into(),
                errmsg: String::new(),
                errcode: Some(-1),
            }],
            msg_info_list: vec![],
        };
        let JobOutcome::Done(results) = done(&job(&[A]), &r) else {
            panic!("not done");
        };
        assert!(
            matches!(&results[0], AppResult::Rejected { errmsg, errcode: Some(-1), .. } if errmsg.contains("err_list"))
        );
    }
}
