//! What the sandbox does: latency, faults, tokens, rejections, quota. Changeable at runtime
//! through [`SandboxHandle::configure`](super::SandboxHandle::configure).

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

/// Delay added before every answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Latency {
    /// Answer at once.
    #[default]
    None,
    /// Always this long.
    Fixed(Duration),
    /// Uniformly between the two bounds (inclusive).
    Uniform(Duration, Duration),
}

impl Latency {
    pub(crate) fn sample(self) -> Duration {
        match self {
            Latency::None => Duration::ZERO,
            Latency::Fixed(d) => d,
            Latency::Uniform(lo, hi) if hi > lo => {
                let nanos = rand::rng().random_range(lo.as_nanos() as u64..=hi.as_nanos() as u64);
                Duration::from_nanos(nanos)
            }
            Latency::Uniform(lo, _) => lo,
        }
    }
}

/// A misbehaviour the sandbox can inject into one call.
///
/// `Errcode` and `HttpStatus` are answered before the request is processed (nothing changes).
/// `Hang`, `Reset`, `MalformedJson` and `OversizedBody` process the request first (bindings,
/// counters and token use all happen) and then garble the answer: they are the cases where the
/// caller cannot know whether WeChat applied the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer `{"errcode":N,"errmsg":…}` with HTTP 200.
    Errcode(i64),
    /// Answer with this HTTP status and a plain-text body.
    HttpStatus(u16),
    /// Hold the request for [`SandboxConfig::hang`], then answer normally.
    Hang,
    /// Send the headers and part of the body, then abort the connection.
    Reset,
    /// Answer HTTP 200 with truncated JSON.
    MalformedJson,
    /// Answer HTTP 200 with an endless chunked body (no Content-Length).
    OversizedBody,
}

impl Fault {
    /// -1, "system busy".
    pub const BUSY: Fault = Fault::Errcode(-1);
    /// -1000, "system error".
    pub const SYSTEM_ERROR: Fault = Fault::Errcode(-1000);
}

/// Decides whether an appid is refused in `err_list` (beyond [`SandboxConfig::rejected_appids`]).
#[derive(Clone)]
pub struct AppidRule(Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl AppidRule {
    /// Any predicate.
    pub fn new(f: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Refuses appids ending with `suffix` (e.g. `"bad"`: `wx0000000000000bad` is a valid appid).
    pub fn suffix(suffix: &str) -> Self {
        let suffix = suffix.to_owned();
        Self::new(move |appid| appid.ends_with(&suffix))
    }

    pub(crate) fn matches(&self, appid: &str) -> bool {
        (self.0)(appid)
    }
}

impl fmt::Debug for AppidRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppidRule(..)")
    }
}

/// Where and how the sandbox pushes encrypted messages (WXBizMsgCrypt) to a callback URL: a new
/// verify ticket every `period` (the first at start) and on `api_start_push_ticket`, and the
/// authorization events [`SandboxHandle::send_authorization`](super::SandboxHandle::send_authorization)
/// sends. Messages are addressed to [`SandboxConfig::component_appid`]. `Debug` hides the token
/// and the key.
#[derive(Clone)]
pub struct CallbackPush {
    /// The URL pushed to, e.g. `http://127.0.0.1:8080/wechat/callback`.
    pub url: String,
    /// The message-check Token (`ENVSHARE_CALLBACK_TOKEN` of the receiver).
    pub token: String,
    /// The 43-character EncodingAESKey (`ENVSHARE_CALLBACK_AES_KEY` of the receiver).
    pub aes_key: String,
    /// How often a new ticket is pushed; `None`: only on `api_start_push_ticket` and
    /// [`SandboxHandle::push_ticket`](super::SandboxHandle::push_ticket).
    pub period: Option<Duration>,
}

impl CallbackPush {
    /// The Token the sandbox and the demo use.
    pub const TOKEN: &'static str = "sandbox-callback-token";
    /// The EncodingAESKey the sandbox and the demo use (43 base64 characters).
    pub const AES_KEY: &'static str = "c2FuZGJveC1jYWxsYmFjay1lbmNvZGluZy1hZXNrZXk";

    /// Pushes to `url` with [`CallbackPush::TOKEN`] and [`CallbackPush::AES_KEY`], a ticket
    /// every `period`.
    pub fn new(url: impl Into<String>, period: Option<Duration>) -> Self {
        Self {
            url: url.into(),
            token: Self::TOKEN.into(),
            aes_key: Self::AES_KEY.into(),
            period,
        }
    }
}

impl fmt::Debug for CallbackPush {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackPush")
            .field("url", &self.url)
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

/// Behaviour of a sandbox. [`Default`] is a well-behaved WeChat with zero latency.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where to listen; port 0 picks a free port. Default `127.0.0.1:0`.
    pub addr: SocketAddr,
    /// Delay before every answer.
    pub latency: Latency,
    /// Faults drawn at random, each with its probability (0.0–1.0, summed over the list), on the
    /// three `componenttcb` endpoints. Scripted faults ([`SandboxHandle::script`](super::SandboxHandle::script))
    /// take precedence.
    pub random_faults: Vec<(Fault, f64)>,
    /// How long [`Fault::Hang`] holds a request. Default 30 s (longer than any test's client
    /// timeout); shutdown ends it early.
    pub hang: Duration,
    /// The component appid `api_component_token` accepts (else errcode 40013).
    pub component_appid: String,
    /// The secret it accepts (else 40125; empty: 41004).
    pub component_secret: String,
    /// A `component_verify_ticket` always accepted; tickets pushed to [`SandboxConfig::callback`]
    /// are accepted too (else 61005, ticket expired).
    pub verify_ticket: String,
    /// Tokens that are always valid (fixed-token mode); never expired or superseded.
    pub static_tokens: Vec<String>,
    /// Lifetime of an issued token, also sent as `expires_in` (then 42001). Default 7200 s.
    pub token_ttl: Duration,
    /// An issued token expires after this many calls (then 42001). Default none.
    pub token_max_calls: Option<u64>,
    /// Appids refused in `err_list`.
    pub rejected_appids: HashSet<String>,
    /// Appids refused in `err_list` by rule.
    pub reject_if: Option<AppidRule>,
    /// Calls of the `componenttcb` endpoints allowed before 45009; `None` is unlimited. Reset
    /// with [`SandboxHandle::reset_quota`](super::SandboxHandle::reset_quota).
    pub daily_quota: Option<u64>,
    /// Pushes to a platform's callback URL, as WeChat pushes verify tickets and authorization
    /// events to the authorization event URL. `None` (the default): no pushes.
    pub callback: Option<CallbackPush>,
    /// Keep the log of share calls ([`SandboxHandle::share_log`](super::SandboxHandle::share_log)).
    /// Turn off for long benchmarks. Default on.
    pub record_share_log: bool,
}

impl SandboxConfig {
    /// Default component appid.
    pub const COMPONENT_APPID: &'static str = "wx00000000000000c0";
    /// Default component secret.
    pub const COMPONENT_SECRET: &'static str = "sandbox-component-secret";
    /// Default verify ticket.
    pub const VERIFY_TICKET: &'static str = "sandbox-verify-ticket";

    /// Realistic misbehaviour for the demo: 20–200 ms latency, about 5 % errcode -1 and 1 %
    /// HTTP 502 on share calls, tokens that expire after 300 calls, and appids ending in `bad`
    /// refused.
    pub fn demo() -> Self {
        Self {
            latency: Latency::Uniform(Duration::from_millis(20), Duration::from_millis(200)),
            random_faults: vec![(Fault::BUSY, 0.05), (Fault::HttpStatus(502), 0.01)],
            token_max_calls: Some(300),
            reject_if: Some(AppidRule::suffix("bad")),
            ..Self::default()
        }
    }

    pub(crate) fn rejects(&self, appid: &str) -> bool {
        self.rejected_appids.contains(appid)
            || self.reject_if.as_ref().is_some_and(|r| r.matches(appid))
    }
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            latency: Latency::None,
            random_faults: Vec::new(),
            hang: Duration::from_secs(30),
            component_appid: Self::COMPONENT_APPID.into(),
            component_secret: Self::COMPONENT_SECRET.into(),
            verify_ticket: Self::VERIFY_TICKET.into(),
            static_tokens: Vec::new(),
            token_ttl: Duration::from_secs(7200),
            token_max_calls: None,
            rejected_appids: HashSet::new(),
            reject_if: None,
            daily_quota: None,
            callback: None,
            record_share_log: true,
        }
    }
}
