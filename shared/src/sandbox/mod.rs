//! A fake WeChat API for tests, the demo and benchmarks (feature `sandbox`).
//!
//! It speaks WeChat's wire format (the request and response types of [`crate::wechat`]) on the same paths as WeChat, so a
//! [`WechatClient`](crate::wechat::WechatClient) pointed at [`SandboxHandle::url`] cannot tell
//! the difference, and it misbehaves on demand:
//!
//! - latency ([`Latency`]) and faults ([`Fault`]) drawn at random per call
//!   ([`SandboxConfig::random_faults`]) or scripted call by call ([`SandboxHandle::script`]);
//! - tokens: `api_component_token` checks appid, secret and ticket (40013 / 41004 / 40125 /
//!   61005), and each fetch supersedes the previous token (40014 afterwards); tokens expire after
//!   a duration or a number of calls, or on [`SandboxHandle::expire_tokens`] (42001); static
//!   tokens ([`SandboxConfig::static_tokens`]) are always valid; no token is 41001, an unknown
//!   one 40001;
//! - appids refused in `err_list` ([`SandboxConfig::rejected_appids`], [`AppidRule`]); every
//!   accepted appid gets a `msg_info_list` URL `{url}/confirm/{env}/{appid}`, which confirms the
//!   binding when opened (as [`SandboxHandle::confirm`] does);
//! - 45009 once [`SandboxConfig::daily_quota`] calls of the `componenttcb` endpoints are spent;
//! - bindings remembered, `batchgetenvid` lists confirmed ones only, `batchunshareenv` removes;
//! - `api_start_push_ticket` checks appid and secret; [`SandboxHandle::calls`] counts it;
//! - counters and the share log for assertions;
//! - pushes to a callback URL ([`SandboxConfig::callback`]), encrypted and signed as WeChat's:
//!   a new verify ticket every period and on `api_start_push_ticket` (`api_component_token`
//!   accepts the pushed tickets), and authorization events on demand
//!   ([`SandboxHandle::send_authorization`]).
//!
//! Every answer carries an undocumented `sandbox_request_id` field and leaves empty lists out,
//! so every test exercises "unknown fields are ignored" and "absent lists are empty".
//!
//! State sits behind one `std::sync::Mutex`, held only for the bookkeeping of a call (never
//! across an await), so the sandbox answers thousands of calls per second with zero latency.

mod config;
mod local_redis;
mod push;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use config::{AppidRule, CallbackPush, Fault, Latency, SandboxConfig};
pub use local_redis::{LocalRedis, LocalRedisError, LocalRedisOptions, SpawnFn};
pub use push::{AuthorizationChange, PushAnswer, PushError};
pub use state::{Binding, ShareCall};

use crate::wechat::Endpoint;
use state::State;

/// Why the sandbox could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The listening address could not be bound.
    #[error("sandbox: could not listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("sandbox: server failed")]
    Serve(#[source] std::io::Error),
}

struct Shared {
    base_url: String,
    /// For pushes to the callback.
    http: reqwest::Client,
    state: Mutex<State>,
    shutdown: watch::Sender<bool>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain counters behind: keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Entry point: `Sandbox::start(config)`.
#[derive(Debug)]
pub struct Sandbox;

impl Sandbox {
    /// Binds [`SandboxConfig::addr`] (a free port by default), starts serving on the current
    /// tokio runtime and returns at once.
    pub async fn start(config: SandboxConfig) -> Result<SandboxHandle, SandboxError> {
        let addr = config.addr;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| SandboxError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| SandboxError::Bind { addr, source })?;
        let (shutdown, _) = watch::channel(false);
        let period = config.callback.as_ref().and_then(|c| c.period);
        let shared = Arc::new(Shared {
            base_url: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            state: Mutex::new(State::new(config)),
            shutdown,
        });
        if let Some(period) = period {
            tokio::spawn(push::every(shared.clone(), period));
        }
        let app = router(shared.clone());
        let mut stop = shared.shutdown.subscribe();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                })
                .await
                .map_err(SandboxError::Serve)
        });
        Ok(SandboxHandle {
            shared,
            addr,
            task: Some(task),
        })
    }
}

/// A running sandbox. Dropping it stops the server (without waiting); prefer
/// [`SandboxHandle::shutdown`]. Share it between tasks behind an `Arc`.
pub struct SandboxHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: Option<JoinHandle<Result<(), SandboxError>>>,
}

impl std::fmt::Debug for SandboxHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxHandle")
            .field("url", &self.shared.base_url)
            .finish_non_exhaustive()
    }
}

impl SandboxHandle {
    /// The base URL to give a [`WechatClient`](crate::wechat::WechatClient), e.g.
    /// `http://127.0.0.1:41234`.
    pub fn url(&self) -> &str {
        &self.shared.base_url
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes the configuration of the running sandbox; the next call sees the change.
    /// (`addr` is ignored once started.)
    pub fn configure(&self, change: impl FnOnce(&mut SandboxConfig)) {
        change(&mut self.shared.lock().config);
    }

    /// Appends steps to `endpoint`'s script, consumed one per call: `Some(fault)` injects it,
    /// `None` lets that call behave normally. A scripted call draws no random fault.
    pub fn script(&self, endpoint: Endpoint, steps: impl IntoIterator<Item = Option<Fault>>) {
        self.shared.lock().script(endpoint, steps);
    }

    /// Expires every issued token (static tokens stay valid): the next call with one gets 42001.
    pub fn expire_tokens(&self) {
        self.shared.lock().expire_tokens();
    }

    /// Starts a new quota day: calls until the next 45009 are counted from zero.
    pub fn reset_quota(&self) {
        self.shared.lock().reset_quota();
    }

    /// Marks the binding of `env` to `appid` confirmed; `false` if there is no such binding.
    pub fn confirm(&self, env: &str, appid: &str) -> bool {
        self.shared.lock().confirm(env, appid)
    }

    /// Confirms every pending binding; returns how many were pending.
    pub fn confirm_all(&self) -> usize {
        self.shared.lock().confirm_all()
    }

    /// Every remembered binding, sorted.
    pub fn bindings(&self) -> Vec<Binding> {
        self.shared.lock().bindings()
    }

    /// Calls received on `endpoint`, faulted ones included.
    pub fn calls(&self, endpoint: Endpoint) -> u64 {
        self.shared.lock().calls(endpoint)
    }

    /// How many processed share calls contained `appid`.
    pub fn share_calls_for(&self, appid: &str) -> u64 {
        self.shared.lock().share_calls_for(appid)
    }

    /// Tokens issued by `api_component_token` (refused fetches not counted; see
    /// [`SandboxHandle::calls`] for all of them).
    pub fn token_fetches(&self) -> u64 {
        self.shared.lock().token_fetches()
    }

    /// Issues a token as the platform's own token service would get it from
    /// `api_component_token` (superseding every other issued token), without a call:
    /// [`token_fetches`](Self::token_fetches) and [`calls`](Self::calls) do not count it. Tests
    /// write it where the platform's SDK would, to check that envshare never fetches one itself.
    pub fn issue_token(&self) -> String {
        self.shared.lock().issue_external_token()
    }

    /// The most recently issued token, if any.
    pub fn current_token(&self) -> Option<String> {
        self.shared.lock().current_token()
    }

    /// Every processed share call, in order (see [`SandboxConfig::record_share_log`]).
    pub fn share_log(&self) -> Vec<ShareCall> {
        self.shared.lock().share_log()
    }

    /// Makes a new verify ticket (accepted by `api_component_token` from now on) and pushes it to
    /// the callback, as WeChat does every 10 minutes; returns the callback's answer.
    pub async fn push_ticket(&self) -> Result<PushAnswer, PushError> {
        push::push_ticket(&self.shared).await
    }

    /// Pushes an authorization change of the Mini Program `appid` to the callback.
    pub async fn send_authorization(
        &self,
        change: AuthorizationChange,
        appid: &str,
    ) -> Result<PushAnswer, PushError> {
        push::push_authorization(&self.shared, change, appid).await
    }

    /// Encrypts, signs and pushes any message XML to the callback (a push of a type WeChat may
    /// add, for tests).
    pub async fn push_message(&self, xml: &str) -> Result<PushAnswer, PushError> {
        push::push_xml(&self.shared, xml).await
    }

    /// Verify tickets made for pushes so far (periodic, `api_start_push_ticket`,
    /// [`push_ticket`](Self::push_ticket)).
    pub fn tickets_pushed(&self) -> u64 {
        self.shared.lock().tickets_pushed()
    }

    /// Forgets every pushed ticket: `api_component_token` answers 61005 to them, until the next
    /// push.
    pub fn expire_tickets(&self) {
        self.shared.lock().expire_tickets();
    }

    /// Stops accepting, ends hung requests, and waits (up to 5 s) for open requests to finish.
    pub async fn shutdown(mut self) -> Result<(), SandboxError> {
        self.shared.shutdown.send_replace(true);
        let Some(mut task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(Duration::from_secs(5), &mut task).await {
            Ok(Ok(result)) => result,
            Ok(Err(_joined)) => Ok(()),
            Err(_elapsed) => {
                warn!(url = %self.shared.base_url, "sandbox: connections still open after 5 s, aborting");
                task.abort();
                Ok(())
            }
        }
    }
}

impl Drop for SandboxHandle {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
    }
}

/// Runs a sandbox on `addr` until Ctrl-C or SIGTERM (for `envshare sandbox` and the demo).
pub async fn run_standalone(addr: SocketAddr, config: SandboxConfig) -> Result<(), SandboxError> {
    let handle = Sandbox::start(SandboxConfig { addr, ..config }).await?;
    info!(url = %handle.url(), "sandbox WeChat API listening");
    shutdown_signal().await;
    info!("sandbox stopping");
    handle.shutdown().await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    access_token: Option<String>,
}

fn router(shared: Arc<Shared>) -> Router {
    let mut app = Router::new();
    for endpoint in Endpoint::ALL {
        app = app.route(
            &format!("/{}", endpoint.path()),
            post(
                move |AxumState(s): AxumState<Arc<Shared>>,
                      Query(q): Query<TokenQuery>,
                      body: Bytes| { api(s, endpoint, q.access_token, body) },
            ),
        );
    }
    app.route("/confirm/{env}/{appid}", any(confirm))
        .with_state(shared)
}

async fn confirm(
    AxumState(s): AxumState<Arc<Shared>>,
    Path((env, appid)): Path<(String, String)>,
) -> Response {
    if s.lock().confirm(&env, &appid) {
        (StatusCode::OK, "confirmed\n").into_response()
    } else {
        (StatusCode::NOT_FOUND, "no such binding\n").into_response()
    }
}

async fn api(s: Arc<Shared>, endpoint: Endpoint, token: Option<String>, body: Bytes) -> Response {
    let plan = s.lock().begin(endpoint);
    if !plan.latency.is_zero() {
        tokio::time::sleep(plan.latency).await;
    }
    match plan.fault {
        Some(Fault::Errcode(errcode)) => {
            let answer = serde_json::json!({"errcode": errcode, "errmsg": format!("sandbox: injected errcode {errcode}")});
            return json(&answer);
        }
        Some(Fault::HttpStatus(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (
                status,
                format!("sandbox: injected HTTP {}\n", status.as_u16()),
            )
                .into_response();
        }
        _ => {}
    }
    let answer = s
        .lock()
        .process(endpoint, token.as_deref(), &body, &s.base_url);
    if endpoint == Endpoint::StartPushTicket && answer["errcode"] == 0 {
        // WeChat answers at once and pushes the ticket a moment later.
        let shared = s.clone();
        tokio::spawn(async move {
            if let Err(e) = push::push_ticket(&shared).await {
                warn!(error = %e, "sandbox: pushing a ticket after api_start_push_ticket failed");
            }
        });
    }
    match plan.fault {
        Some(Fault::Hang) => {
            let mut stop = s.shutdown.subscribe();
            tokio::select! {
                () = tokio::time::sleep(plan.hang) => json(&answer),
                _ = stop.wait_for(|stopped| *stopped) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
            }
        }
        Some(Fault::Reset) => {
            // Headers and the start of the body go out, then the stream fails: hyper aborts the
            // connection mid-body, which the client sees as a reset while reading. The pause
            // lets the head be flushed first (an error polled at once would abort before it).
            use futures::StreamExt;
            let head =
                futures::stream::iter([Ok(Bytes::from_static(b"{\"errcode\":0,\"errmsg\":"))]);
            let reset = futures::stream::once(async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "sandbox: injected reset",
                ))
            });
            json_body(Body::from_stream(head.chain(reset)))
        }
        Some(Fault::MalformedJson) => json_body(Body::from(
            r#"{"errcode":0,"errmsg":"ok","err_list":[{"appid":"#,
        )),
        Some(Fault::OversizedBody) => {
            // Endless JSON whitespace, chunked: only a client that caps its read ever returns.
            static PAD: [u8; 64 * 1024] = [b' '; 64 * 1024];
            let pad =
                futures::stream::repeat_with(|| Ok::<_, std::io::Error>(Bytes::from_static(&PAD)));
            json_body(Body::from_stream(pad))
        }
        Some(Fault::Errcode(_) | Fault::HttpStatus(_)) | None => json(&answer),
    }
}

fn json(answer: &serde_json::Value) -> Response {
    json_body(Body::from(answer.to_string()))
}

fn json_body(body: Body) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}
