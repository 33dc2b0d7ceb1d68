//! Settings from the environment and an optional TOML file (docs/configuration.md).
//!
//! Every setting has an environment variable `ENVSHARE_NAME` and a file key `name` (lower case,
//! no prefix). The environment overrides the file; the file overrides the defaults. Every value
//! is validated when the settings are loaded, and all bad values are reported at once, each
//! naming the variable, the value (never a secret's), the problem and what is allowed. A key in
//! the file that is not a setting is an error, so a typo cannot be silently ignored.
//!
//! Environment variables that start with `ENVSHARE_` but name no setting are not an error (other
//! tools, e.g. the test harness's `ENVSHARE_TEST_REDIS_URL`, share the prefix); they are listed
//! by [`Settings::unknown_env_vars`] so a binary can warn about them.
//!
//! Every setting is one row of the `settings!` table below (its field, type, default, file key,
//! how its value may be shown, and its parser); the struct, the defaults, the loading, the list
//! of keys and `Debug` are generated from it. A new setting is a new row, plus its row in
//! docs/configuration.md (a test checks that the two agree).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;

use crate::ids::{AppId, EnvId, QueueName};
use crate::schedule::{ConfirmSchedule, DEFAULT_CONFIRM_BATCH, QuotaReset, parse_duration};
use crate::telemetry::LogFormat;

/// Prefix of every environment variable envshare reads (besides `REDIS_URL`).
pub const ENV_PREFIX: &str = "ENVSHARE_";

/// The generic variable used when `ENVSHARE_REDIS_URL` is not set.
const REDIS_URL_FALLBACK: &str = "REDIS_URL";

/// How workers get the WeChat `component_access_token`.
#[derive(Debug, Clone)]
pub enum TokenMode {
    /// A token given as-is (`ENVSHARE_ACCESS_TOKEN`): tests, or an external token service.
    Fixed(SecretString),
    /// The platform's own credentials (`ENVSHARE_COMPONENT_APPID` and `_APPSECRET`): envshare
    /// fetches and refreshes the token with the pushed `component_verify_ticket`.
    Component {
        /// The third-party platform's appid.
        appid: AppId,
        /// The platform's app secret.
        secret: SecretString,
    },
    /// `ENVSHARE_TOKEN_SOURCE=redis`: the token the platform's own SDK keeps under a Redis key.
    Redis {
        /// `ENVSHARE_TOKEN_REDIS_KEY`.
        key: String,
        /// `ENVSHARE_TOKEN_REDIS_URL`, or `None` for the queue's Redis.
        url: Option<String>,
    },
    /// `ENVSHARE_TOKEN_SOURCE=http`: the token a token service hands out over HTTP.
    Http {
        /// `ENVSHARE_TOKEN_URL`.
        url: String,
        /// `ENVSHARE_TOKEN_URL_AUTH`: the bearer token for it, if any.
        auth: Option<SecretString>,
    },
    /// Neither is configured; the producer needs no token, a worker cannot run.
    None,
}

/// `ENVSHARE_TOKEN_SOURCE`: where workers take the access token from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// envshare fetches it with the component credentials and the verify ticket.
    Component,
    /// `ENVSHARE_ACCESS_TOKEN`, as given.
    Fixed,
    /// The key the platform's SDK writes (`ENVSHARE_TOKEN_REDIS_KEY`).
    Redis,
    /// A token service (`ENVSHARE_TOKEN_URL`).
    Http,
}

impl TokenSource {
    /// The setting's value for this source.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenSource::Component => "component",
            TokenSource::Fixed => "fixed",
            TokenSource::Redis => "redis",
            TokenSource::Http => "http",
        }
    }

    fn parse(s: &str) -> Result<Self, Problem> {
        match s {
            "component" => Ok(TokenSource::Component),
            "fixed" => Ok(TokenSource::Fixed),
            "redis" => Ok(TokenSource::Redis),
            "http" => Ok(TokenSource::Http),
            _ => Err(Problem::new(
                "not a token source",
                "component, fixed, redis or http",
            )),
        }
    }
}

/// How a setting's value may be shown in `Debug` output and in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shown {
    /// As it is.
    Plain,
    /// Never: `[REDACTED]` in `Debug`, left out of errors. The field is an
    /// `Option<SecretString>`.
    Secret,
    /// With the password of the URL replaced by `***`.
    UrlPassword,
}

/// A field's value as `Debug` may show it (see [`Shown`]).
macro_rules! shown {
    (Plain, $value:expr) => {
        &$value
    };
    (Secret, $value:expr) => {
        &$value.as_ref().map(|_: &SecretString| "[REDACTED]")
    };
    (UrlPassword, $value:expr) => {
        &RedactUrl::redacted(&$value)
    };
}

/// A URL setting (required or optional) with its password hidden, for `Debug`.
trait RedactUrl {
    type Shown: fmt::Debug;
    fn redacted(&self) -> Self::Shown;
}

impl RedactUrl for String {
    type Shown = String;
    fn redacted(&self) -> String {
        redact_url(self)
    }
}

impl RedactUrl for Option<String> {
    type Shown = Option<String>;
    fn redacted(&self) -> Option<String> {
        self.as_deref().map(redact_url)
    }
}

/// The table of settings. Each row: the field's docs, `field: Type = default`, then the file key
/// (the variable is `ENVSHARE_` + the key in upper case), how the value may be shown, and the
/// parser from the raw text (never empty) to the field's type.
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])*
        $field:ident: $ty:ty = $default:expr,
            key $key:literal, $shown:ident, parse $parse:expr;
    )*) => {
        /// All settings, validated. Fields are public so tests can start from
        /// [`Settings::defaults`] and change what they need; values built that way are not
        /// re-validated.
        ///
        /// `Debug` shows no secret, and hides the password of the Redis URL.
        #[derive(Clone)]
        pub struct Settings {
            $( $(#[doc = $doc])* pub $field: $ty, )*
            unknown_env_vars: Vec<String>,
        }

        /// Every setting's file key and how its value may be shown, in table order.
        const KEYS: &[(&str, Shown)] = &[$( ($key, Shown::$shown), )*];

        impl Settings {
            /// The settings with nothing configured: every default of docs/configuration.md.
            pub fn defaults() -> Self {
                Settings {
                    $( $field: $default, )*
                    unknown_env_vars: Vec::new(),
                }
            }

            /// Every setting from its raw value, or its default; bad values are collected in
            /// `c`.
            fn parse_each(c: &mut Checker<'_>, unknown_env_vars: Vec<String>) -> Self {
                Settings {
                    $( $field: c.get($key, Shown::$shown, $parse).unwrap_or_else(|| $default), )*
                    unknown_env_vars,
                }
            }
        }

        impl fmt::Debug for Settings {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut d = f.debug_struct("Settings");
                $( d.field(stringify!($field), shown!($shown, self.$field)); )*
                d.finish()
            }
        }
    };
}

settings! {
    /// `ENVSHARE_REDIS_URL`, else `REDIS_URL`. May hold a password: log it with
    /// [`Settings::redis_url_redacted`].
    redis_url: String = "redis://127.0.0.1:6379".to_owned(),
        key "redis_url", UrlPassword, parse parse_redis_url;
    /// `ENVSHARE_REDIS_CLUSTER`: connect with the cluster client.
    redis_cluster: bool = false,
        key "redis_cluster", Plain, parse parse_bool;
    /// `ENVSHARE_REDIS_SENTINELS`: the Sentinels (`host:port`, comma-separated). When set, the
    /// master comes from them and `ENVSHARE_REDIS_URL` gives only user, password, db and TLS.
    redis_sentinels: Vec<String> = Vec::new(),
        key "redis_sentinels", Plain, parse parse_sentinels;
    /// `ENVSHARE_REDIS_SENTINEL_MASTER`: the monitored master's name.
    redis_sentinel_master: String = "mymaster".to_owned(),
        key "redis_sentinel_master", Plain, parse parse_master_name;
    /// `ENVSHARE_REDIS_WAIT_REPLICAS`: after each acknowledged write batch (an enqueue, a
    /// worker's outcomes), `WAIT` until this many replicas have it; 0 = don't.
    redis_wait_replicas: u32 = 0,
        key "redis_wait_replicas", Plain, parse |s| int_in(s, 0, 100).map(|n| n as u32);
    /// `ENVSHARE_QUEUE`: the `QUEUE` in `envshare:{QUEUE}:…`.
    queue: QueueName = QueueName::default(),
        key "queue", Plain, parse |s| {
            QueueName::parse(s).map_err(|e| Problem::new(e.reason(), "a queue name"))
        };
    /// `ENVSHARE_WECHAT_BASE_URL`, without a trailing slash.
    wechat_base_url: String = "https://api.weixin.qq.com".to_owned(),
        key "wechat_base_url", Plain, parse parse_base_url;
    /// `ENVSHARE_COMPONENT_APPID`.
    component_appid: Option<AppId> = None,
        key "component_appid", Plain, parse |s| {
            AppId::parse(s)
                .map(Some)
                .map_err(|e| Problem::new(e.reason(), "the platform's appid"))
        };
    /// `ENVSHARE_COMPONENT_APPSECRET`.
    component_appsecret: Option<SecretString> = None,
        key "component_appsecret", Secret, parse |s| parse_secret(s).map(Some);
    /// `ENVSHARE_ACCESS_TOKEN`.
    access_token: Option<SecretString> = None,
        key "access_token", Secret, parse |s| parse_secret(s).map(Some);
    /// `ENVSHARE_TOKEN_SOURCE`: `component`, `fixed`, `redis` or `http`; unset, it follows from
    /// the other token settings (component credentials → component, `ACCESS_TOKEN` → fixed).
    token_source: Option<TokenSource> = None,
        key "token_source", Plain, parse |s| TokenSource::parse(s).map(Some);
    /// `ENVSHARE_TOKEN_REDIS_KEY`: in `redis` mode, the key the platform's SDK keeps the
    /// `component_access_token` under.
    token_redis_key: Option<String> = None,
        key "token_redis_key", Plain, parse |s| parse_redis_key(s).map(Some);
    /// `ENVSHARE_TOKEN_REDIS_URL`: in `redis` mode, the Redis holding that key; unset, the
    /// queue's Redis.
    token_redis_url: Option<String> = None,
        key "token_redis_url", UrlPassword, parse |s| parse_redis_url(s).map(Some);
    /// `ENVSHARE_TOKEN_URL`: in `http` mode, the token service's URL (`GET` answers
    /// `{"component_access_token","expires_in"}`).
    token_url: Option<String> = None,
        key "token_url", UrlPassword, parse |s| parse_token_url(s).map(Some);
    /// `ENVSHARE_TOKEN_URL_AUTH`: in `http` mode, the bearer token sent to the token service.
    token_url_auth: Option<SecretString> = None,
        key "token_url_auth", Secret, parse |s| parse_secret(s).map(Some);
    /// `ENVSHARE_TOKEN_REFRESH_AHEAD_MS`: refresh the component token this long before it expires.
    token_refresh_ahead: Duration = Duration::from_millis(600_000),
        // A component token lives 7200 s; refreshing more than an hour early would fetch
        // tokens all the time.
        key "token_refresh_ahead_ms", Plain, parse ms(0, 3_600_000);
    /// `ENVSHARE_TOKEN_RECHECK_MS`: after a token misconfiguration (IP not whitelisted, bad
    /// secret, expired or missing ticket) pauses the queue, how long until a job tries the
    /// token again. A new ticket stored with `envshare ticket set` ends the pause at once.
    token_recheck: Duration = Duration::from_millis(30_000),
        key "token_recheck_ms", Plain, parse ms(1_000, 3_600_000);
    /// `ENVSHARE_CONCURRENCY`: jobs one worker process runs at once.
    concurrency: usize = 32,
        key "concurrency", Plain, parse |s| int_in(s, 1, 10_000).map(|n| n as usize);
    /// `ENVSHARE_MAX_ATTEMPTS`: tries in all, the first included.
    max_attempts: u32 = 10,
        key "max_attempts", Plain, parse |s| int_in(s, 1, 1_000).map(|n| n as u32);
    /// `ENVSHARE_BACKOFF_BASE_MS`.
    backoff_base: Duration = Duration::from_millis(1_000),
        key "backoff_base_ms", Plain, parse ms(1, 86_400_000);
    /// `ENVSHARE_BACKOFF_MAX_MS`: the cap of one retry delay.
    backoff_max: Duration = Duration::from_millis(600_000),
        key "backoff_max_ms", Plain, parse ms(1, 7 * 86_400_000);
    /// `ENVSHARE_LEASE_MS`: how long a claimed job stays leased without a heartbeat.
    lease: Duration = Duration::from_millis(30_000),
        key "lease_ms", Plain, parse ms(100, 86_400_000);
    /// `ENVSHARE_RATE_LIMIT`: calls per second, all workers together; 0 means no limit.
    rate_limit: f64 = 0.0,
        key "rate_limit", Plain, parse parse_rate;
    /// `ENVSHARE_CHUNK_SIZE`: appids per job.
    chunk_size: usize = 10,
        key "chunk_size", Plain, parse |s| int_in(s, 1, 1_000).map(|n| n as usize);
    /// `ENVSHARE_REQUEST_TIMEOUT_MS`: one WeChat HTTP call, connect to last byte.
    request_timeout: Duration = Duration::from_millis(10_000),
        key "request_timeout_ms", Plain, parse ms(1, 600_000);
    /// `ENVSHARE_QUOTA_RESET`: when a spent daily quota (45009) comes back.
    quota_reset: QuotaReset = QuotaReset::default(),
        key "quota_reset", Plain, parse |s| {
            QuotaReset::parse(s).map_err(|p| Problem::new(p, "HH:MM from 00:00 to 23:59, UTC+8"))
        };
    /// `ENVSHARE_EVENTS_MAXLEN`: the events stream is trimmed to about this many entries.
    events_maxlen: u64 = 1_000_000,
        key "events_maxlen", Plain, parse |s| int_in(s, 1, 1_000_000_000);
    /// `ENVSHARE_DEDUPE_WINDOW_MS`: an (env, appid) pair enqueued again within this window is
    /// skipped; zero turns deduplication off.
    dedupe_window: Duration = Duration::from_millis(86_400_000),
        key "dedupe_window_ms", Plain, parse ms(0, 30 * 86_400_000);
    /// `ENVSHARE_RESULTS_TTL`: how long a batch's record and per-appid result rows are kept
    /// once the batch completes.
    results_ttl: Duration = Duration::from_secs(30 * 86_400),
        key "results_ttl", Plain, parse parse_results_ttl;
    /// `ENVSHARE_SHUTDOWN_TIMEOUT_MS`: on SIGTERM, how long running jobs may take to finish
    /// before they are released back to the queue.
    shutdown_timeout: Duration = Duration::from_millis(30_000),
        key "shutdown_timeout_ms", Plain, parse ms(0, 3_600_000);
    /// `ENVSHARE_CONFIRM_SCHEDULE`: when `batchgetenvid` checks an accepted share's binding.
    confirm_schedule: ConfirmSchedule = ConfirmSchedule::default(),
        key "confirm_schedule", Plain, parse |s| {
            ConfirmSchedule::parse(s).map_err(|p| {
                Problem::new(
                    p,
                    "increasing offsets from acceptance, optionally ending with `every \
                     DURATION`, e.g. 60s,5m,15m,1h,every 6h (units ms, s, m, h, d)",
                )
            })
        };
    /// `ENVSHARE_CONFIRM_WINDOW`: after this long from acceptance, `share.unconfirmed`.
    confirm_window: Duration = Duration::from_secs(7 * 86_400),
        key "confirm_window", Plain, parse parse_confirm_window;
    /// `ENVSHARE_CONFIRM_BATCH`: appids per `batchgetenvid` call.
    confirm_batch: usize = DEFAULT_CONFIRM_BATCH,
        key "confirm_batch", Plain, parse |s| int_in(s, 1, 1_000).map(|n| n as usize);
    /// `ENVSHARE_HTTP_ADDR`: the worker's /metrics, /healthz and /readyz.
    http_addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 9464)),
        key "http_addr", Plain, parse |s| {
            s.parse::<SocketAddr>().map_err(|_| {
                Problem::new(
                    "not an IP address and port",
                    "e.g. 127.0.0.1:9464 or 0.0.0.0:9464",
                )
            })
        };
    /// `ENVSHARE_SERVE_ADDR`: where `envshare serve` listens (the callback, health, metrics).
    serve_addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080)),
        key "serve_addr", Plain, parse |s| {
            s.parse::<SocketAddr>().map_err(|_| {
                Problem::new(
                    "not an IP address and port",
                    "e.g. 127.0.0.1:8080 or 0.0.0.0:8080",
                )
            })
        };
    /// `ENVSHARE_API_TOKEN`: the bearer token of `envshare serve`; without it, `serve` listens
    /// on loopback addresses only.
    api_token: Option<SecretString> = None,
        key "api_token", Secret, parse |s| parse_api_token(s).map(Some);
    /// `ENVSHARE_CALLBACK_TOKEN`: the message-check Token set on the open platform.
    callback_token: Option<SecretString> = None,
        key "callback_token", Secret, parse |s| parse_secret(s).map(Some);
    /// `ENVSHARE_CALLBACK_AES_KEY`: the 43-character EncodingAESKey set on the open platform.
    callback_aes_key: Option<SecretString> = None,
        key "callback_aes_key", Secret, parse |s| {
            let key = parse_secret(s)?;
            check_aes_key(s)?;
            Ok(Some(key))
        };
    /// `ENVSHARE_AUTO_SHARE_ENVS`: envs shared with every Mini Program that authorizes the
    /// platform (comma-separated); empty: none.
    auto_share_envs: Vec<EnvId> = Vec::new(),
        key "auto_share_envs", Plain, parse parse_env_list;
    /// `ENVSHARE_LOG`: a tracing filter.
    log: String = "info".to_owned(),
        key "log", Plain, parse parse_log_filter;
    /// `ENVSHARE_LOG_FORMAT`.
    log_format: LogFormat = LogFormat::Text,
        key "log_format", Plain, parse |s| {
            s.parse::<LogFormat>()
                .map_err(|_| Problem::new("not a log format", "text or json"))
        };
    /// `ENVSHARE_WEBHOOK_URLS`: comma-separated http(s) URLs every event is POSTed to; none by
    /// default (no webhook deliveries).
    webhook_urls: WebhookUrls = WebhookUrls::default(),
        key "webhook_urls", Plain, parse parse_webhook_urls;
    /// `ENVSHARE_WEBHOOK_SECRET`: the key of the `Envshare-Signature` HMAC; required with
    /// `ENVSHARE_WEBHOOK_URLS`.
    webhook_secret: Option<SecretString> = None,
        key "webhook_secret", Secret, parse |s| parse_webhook_secret(s).map(Some);
    /// `ENVSHARE_WEBHOOK_SECRET_PREVIOUS`: during a secret rotation, the old secret; deliveries
    /// then carry a second `v1=` signature made with it.
    webhook_secret_previous: Option<SecretString> = None,
        key "webhook_secret_previous", Secret, parse |s| parse_webhook_secret(s).map(Some);
    /// `ENVSHARE_WEBHOOK_MAX_AGE_MS`: how long after its event a delivery is retried before it
    /// is given up (dead).
    webhook_max_age: Duration = Duration::from_millis(3 * 86_400_000),
        key "webhook_max_age_ms", Plain, parse ms(100, 30 * 86_400_000);
    /// `ENVSHARE_WEBHOOK_MAX_ATTEMPTS`: attempts per delivery in all before it is given up; 0
    /// means only the max age limits them.
    webhook_max_attempts: u32 = 0,
        key "webhook_max_attempts", Plain, parse |s| int_in(s, 0, 100_000).map(|n| n as u32);
    /// `ENVSHARE_WEBHOOK_BACKOFF_BASE_MS`: the first retry's upper bound (full jitter).
    webhook_backoff_base: Duration = Duration::from_millis(1_000),
        key "webhook_backoff_base_ms", Plain, parse ms(1, 86_400_000);
    /// `ENVSHARE_WEBHOOK_BACKOFF_MAX_MS`: the cap of one retry delay.
    webhook_backoff_max: Duration = Duration::from_millis(3_600_000),
        key "webhook_backoff_max_ms", Plain, parse ms(1, 7 * 86_400_000);
    /// `ENVSHARE_WEBHOOK_TIMEOUT_MS`: one delivery attempt, connect to the end of the answer.
    webhook_timeout: Duration = Duration::from_millis(10_000),
        key "webhook_timeout_ms", Plain, parse ms(1, 600_000);
    /// `ENVSHARE_WEBHOOK_CONCURRENCY`: attempts in flight at once per endpoint, per worker
    /// process.
    webhook_concurrency: usize = 16,
        key "webhook_concurrency", Plain, parse |s| int_in(s, 1, 1_000).map(|n| n as usize);
}

impl Default for Settings {
    fn default() -> Self {
        Self::defaults()
    }
}

impl Settings {
    /// The URL to connect with: `ENVSHARE_REDIS_URL`, or, when `ENVSHARE_REDIS_SENTINELS` is
    /// set, a `redis+sentinel://` URL naming the Sentinels and `ENVSHARE_REDIS_SENTINEL_MASTER`
    /// with the user, password, database and TLS of `ENVSHARE_REDIS_URL`. May hold a password.
    pub fn redis_connect_url(&self) -> String {
        if self.redis_sentinels.is_empty() {
            self.redis_url.clone()
        } else {
            crate::redis_url::sentinel_url(
                &self.redis_url,
                &self.redis_sentinels,
                &self.redis_sentinel_master,
            )
        }
    }

    /// Loads the settings from the process environment and, if given, the TOML file at
    /// `config_path` (the `--config` flag).
    pub fn load(config_path: Option<&Path>) -> Result<Self, ConfigError> {
        let toml = match config_path {
            Some(path) => {
                Some(
                    std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
                        path: path.to_owned(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        let env = std::env::vars_os().filter_map(|(k, v)| {
            let k = k.into_string().ok()?;
            // A non-UTF-8 value gets U+FFFD, which every non-secret check then rejects.
            (k.starts_with(ENV_PREFIX) || k == REDIS_URL_FALLBACK)
                .then(|| (k, v.to_string_lossy().into_owned()))
        });
        Self::from_sources(env, toml.as_deref()).map_err(|e| e.in_file(config_path))
    }

    /// Builds the settings from `env` (name, value pairs; only `ENVSHARE_*` and `REDIS_URL` are
    /// read) over the TOML text `toml`. The process environment is not touched, so this is what
    /// tests call.
    pub fn from_sources(
        env: impl IntoIterator<Item = (String, String)>,
        toml: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let mut raw: BTreeMap<&'static str, Raw> = BTreeMap::new();
        if let Some(text) = toml {
            read_toml(text, &mut raw)?;
        }
        let unknown_env_vars = read_env(env, &mut raw);

        let mut c = Checker {
            raw: &raw,
            errors: Vec::new(),
        };
        let settings = Settings::parse_each(&mut c, unknown_env_vars);
        settings.check_together(&mut c);
        if c.errors.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigError::Invalid {
                file: None,
                errors: c.errors,
            })
        }
    }

    /// The rules that involve several settings.
    fn check_together(&self, c: &mut Checker<'_>) {
        if self.backoff_base > self.backoff_max {
            c.cross(
                &["backoff_base_ms", "backoff_max_ms"],
                "the base delay is larger than the cap; expected BACKOFF_BASE_MS <= BACKOFF_MAX_MS",
            );
        }
        // A key that failed its own check is reported once, by that check.
        match (&self.callback_token, &self.callback_aes_key) {
            (Some(_), None) if !c.raw.contains_key("callback_aes_key") => c.cross(
                &["callback_token"],
                "is set without ENVSHARE_CALLBACK_AES_KEY; set both (the Token and the \
                 EncodingAESKey of the open platform's message settings), or neither",
            ),
            (None, Some(_)) if !c.raw.contains_key("callback_token") => c.cross(
                &["callback_aes_key"],
                "is set without ENVSHARE_CALLBACK_TOKEN; set both (the Token and the \
                 EncodingAESKey of the open platform's message settings), or neither",
            ),
            _ => {}
        }
        if !self.webhook_urls.is_empty() && self.webhook_secret.is_none() {
            c.cross(
                &["webhook_urls"],
                "is set without ENVSHARE_WEBHOOK_SECRET: deliveries must be signed; set \
                 ENVSHARE_WEBHOOK_SECRET to a random string the receivers also know",
            );
        }
        if self.webhook_secret_previous.is_some() && self.webhook_secret.is_none() {
            c.cross(
                &["webhook_secret_previous"],
                "is set without ENVSHARE_WEBHOOK_SECRET; the previous secret only signs beside \
                 the current one during a rotation",
            );
        }
        if self.webhook_backoff_base > self.webhook_backoff_max {
            c.cross(
                &["webhook_backoff_base_ms", "webhook_backoff_max_ms"],
                "the base delay is larger than the cap; expected WEBHOOK_BACKOFF_BASE_MS <= \
                 WEBHOOK_BACKOFF_MAX_MS",
            );
        }
        match self.token_source {
            None => self.check_inferred_token_mode(c),
            Some(source) => self.check_token_source(source, c),
        }
    }

    /// Without `TOKEN_SOURCE`: exactly today's two modes, inferred from what is set.
    fn check_inferred_token_mode(&self, c: &mut Checker<'_>) {
        for (key, source) in [
            ("token_redis_key", "redis"),
            ("token_redis_url", "redis"),
            ("token_url", "http"),
            ("token_url_auth", "http"),
        ] {
            if c.raw.contains_key(key) {
                let problem = format!(
                    "is set but ENVSHARE_TOKEN_SOURCE is not; set ENVSHARE_TOKEN_SOURCE={source} \
                     to take the token from there"
                );
                c.cross(&[key], &problem);
            }
        }
        match (
            &self.access_token,
            &self.component_appid,
            &self.component_appsecret,
        ) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => c.cross(
                &["access_token", "component_appid", "component_appsecret"],
                "two token modes are configured; choose one: ENVSHARE_ACCESS_TOKEN (a fixed \
                 token) or ENVSHARE_COMPONENT_APPID with ENVSHARE_COMPONENT_APPSECRET, or set \
                 ENVSHARE_TOKEN_SOURCE",
            ),
            (None, Some(_), None) => c.cross(
                &["component_appid"],
                "is set without ENVSHARE_COMPONENT_APPSECRET; set both, or neither",
            ),
            (None, None, Some(_)) => c.cross(
                &["component_appsecret"],
                "is set without ENVSHARE_COMPONENT_APPID; set both, or neither",
            ),
            _ => {}
        }
    }

    /// With `TOKEN_SOURCE`: the source's own settings are required, and the settings of the
    /// other sources must not be set (they would be ignored). The component credentials are
    /// allowed with every source: `envshare ticket request` and the callback use them too.
    fn check_token_source(&self, source: TokenSource, c: &mut Checker<'_>) {
        let (required, needs): (&[&'static str], &str) = match source {
            TokenSource::Component => (
                &["component_appid", "component_appsecret"],
                "ENVSHARE_COMPONENT_APPID and ENVSHARE_COMPONENT_APPSECRET",
            ),
            TokenSource::Fixed => (&["access_token"], "ENVSHARE_ACCESS_TOKEN"),
            TokenSource::Redis => (&["token_redis_key"], "ENVSHARE_TOKEN_REDIS_KEY"),
            TokenSource::Http => (&["token_url"], "ENVSHARE_TOKEN_URL"),
        };
        if required.iter().any(|k| !c.raw.contains_key(k)) {
            let problem = format!("is {} but {needs} is not set; set it", source.as_str());
            c.cross(&["token_source"], &problem);
        }
        let own: &[&str] = match source {
            TokenSource::Component => &[],
            TokenSource::Fixed => &["access_token"],
            TokenSource::Redis => &["token_redis_key", "token_redis_url"],
            TokenSource::Http => &["token_url", "token_url_auth"],
        };
        for key in [
            "access_token",
            "token_redis_key",
            "token_redis_url",
            "token_url",
            "token_url_auth",
        ] {
            if !own.contains(&key) && c.raw.contains_key(key) {
                let problem = format!(
                    "is set but ENVSHARE_TOKEN_SOURCE={} does not use it; remove it, or choose \
                     the source it belongs to",
                    source.as_str()
                );
                c.cross(&[key], &problem);
            }
        }
        if self.component_appsecret.is_some() && self.component_appid.is_none() {
            c.cross(
                &["component_appsecret"],
                "is set without ENVSHARE_COMPONENT_APPID; set both, or neither",
            );
        }
    }

    /// How workers get the access token, from `ACCESS_TOKEN` or `COMPONENT_APPID`/`_APPSECRET`
    /// (loading rejects both at once).
    pub fn token_mode(&self) -> TokenMode {
        match self.token_source {
            Some(TokenSource::Redis) => {
                if let Some(key) = &self.token_redis_key {
                    return TokenMode::Redis {
                        key: key.clone(),
                        url: self.token_redis_url.clone(),
                    };
                }
                return TokenMode::None;
            }
            Some(TokenSource::Http) => {
                if let Some(url) = &self.token_url {
                    return TokenMode::Http {
                        url: url.clone(),
                        auth: self.token_url_auth.clone(),
                    };
                }
                return TokenMode::None;
            }
            Some(TokenSource::Fixed) => {
                return match &self.access_token {
                    Some(token) => TokenMode::Fixed(token.clone()),
                    None => TokenMode::None,
                };
            }
            Some(TokenSource::Component) => {
                return match (&self.component_appid, &self.component_appsecret) {
                    (Some(appid), Some(secret)) => TokenMode::Component {
                        appid: appid.clone(),
                        secret: secret.clone(),
                    },
                    _ => TokenMode::None,
                };
            }
            None => {}
        }
        match (
            &self.access_token,
            &self.component_appid,
            &self.component_appsecret,
        ) {
            (Some(token), _, _) => TokenMode::Fixed(token.clone()),
            (None, Some(appid), Some(secret)) => TokenMode::Component {
                appid: appid.clone(),
                secret: secret.clone(),
            },
            _ => TokenMode::None,
        }
    }

    /// The Redis URL with any password replaced by `***`, for logs and messages.
    pub fn redis_url_redacted(&self) -> String {
        redact_url(&self.redis_url)
    }

    /// The rate limit in calls per second, or `None` for no limit.
    pub fn rate_limit_per_sec(&self) -> Option<f64> {
        (self.rate_limit > 0.0).then_some(self.rate_limit)
    }

    /// `ENVSHARE_*` environment variables that name no setting (sorted), for a warning: they are
    /// probably typos. Variables of envshare's tests (`ENVSHARE_TEST_*`) and of its build
    /// (`ENVSHARE_BUILD_COMMIT`) are not listed.
    pub fn unknown_env_vars(&self) -> &[String] {
        &self.unknown_env_vars
    }
}

/// Reads the settings' variables of `env` into `raw` (over the file's values), and returns the
/// `ENVSHARE_*` variables that name no setting, sorted.
fn read_env(
    env: impl IntoIterator<Item = (String, String)>,
    raw: &mut BTreeMap<&'static str, Raw>,
) -> Vec<String> {
    let mut unknown_env_vars = Vec::new();
    let mut generic_redis_url = None;
    for (name, value) in env {
        if name == REDIS_URL_FALLBACK {
            generic_redis_url = Some(value);
            continue;
        }
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let lower = rest.to_ascii_lowercase();
        match KEYS
            .iter()
            .find(|(k, _)| *k == lower && rest == k.to_ascii_uppercase())
        {
            Some((key, _)) => {
                raw.insert(key, Raw::env(name, value));
            }
            // The test harness's own variables share the prefix, and so does the build's
            // ENVSHARE_BUILD_COMMIT (read by build.rs, not at run time).
            None if rest.starts_with("TEST_") || rest == "BUILD_COMMIT" => {}
            None => unknown_env_vars.push(name),
        }
    }
    // REDIS_URL is an environment variable too, so it beats the file like any other; it only
    // yields to the more specific ENVSHARE_REDIS_URL.
    if let Some(value) = generic_redis_url {
        let from_env = raw.get("redis_url").is_some_and(|r| r.is_env());
        if !from_env {
            raw.insert("redis_url", Raw::env(REDIS_URL_FALLBACK.to_owned(), value));
        }
    }
    unknown_env_vars.sort();
    unknown_env_vars
}

/// Why the settings could not be loaded. Never retryable: the operator must fix the
/// configuration and start again.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The `--config` file could not be read.
    #[error("loading settings: cannot read config file {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML, or a value in it is not a single value.
    #[error("loading settings: config file{}: {message}", file_suffix(file))]
    BadFile {
        /// The file, when loaded from one.
        file: Option<PathBuf>,
        /// What is wrong, with a line number when TOML gives one.
        message: String,
    },
    /// The config file has keys that are not settings.
    #[error(
        "loading settings: config file{} has unknown keys: {}",
        file_suffix(file),
        keys.iter().map(|k| k.to_string()).collect::<Vec<_>>().join("; ")
    )]
    UnknownKeys {
        /// The file, when loaded from one.
        file: Option<PathBuf>,
        /// Each unknown key, with a suggestion.
        keys: Vec<UnknownKey>,
    },
    /// One or more values are invalid.
    #[error("loading settings: {}", invalid_message(file, errors))]
    Invalid {
        /// The file, when loaded from one.
        file: Option<PathBuf>,
        /// Every invalid value.
        errors: Vec<SettingError>,
    },
}

impl ConfigError {
    /// Always false: configuration errors are fixed by the operator, not by trying again.
    pub fn is_retryable(&self) -> bool {
        false
    }

    /// The invalid values, if that is the error.
    pub fn setting_errors(&self) -> &[SettingError] {
        match self {
            ConfigError::Invalid { errors, .. } => errors,
            _ => &[],
        }
    }

    fn in_file(self, path: Option<&Path>) -> Self {
        let path = path.map(Path::to_owned);
        match self {
            ConfigError::BadFile { message, .. } => ConfigError::BadFile {
                file: path,
                message,
            },
            ConfigError::UnknownKeys { keys, .. } => ConfigError::UnknownKeys { file: path, keys },
            ConfigError::Invalid { errors, .. } => ConfigError::Invalid { file: path, errors },
            other => other,
        }
    }
}

fn file_suffix(file: &Option<PathBuf>) -> String {
    file.as_ref()
        .map(|p| format!(" {}", p.display()))
        .unwrap_or_default()
}

fn invalid_message(file: &Option<PathBuf>, errors: &[SettingError]) -> String {
    let mut out = match errors {
        [one] => one.to_string(),
        many => {
            let lines: Vec<String> = many.iter().map(|e| format!("\n  - {e}")).collect();
            format!("{} invalid values:{}", many.len(), lines.concat())
        }
    };
    if let Some(path) = file
        && errors.iter().any(|e| e.from_file)
    {
        out.push_str(&format!("\n(`key = …` values are from {})", path.display()));
    }
    out
}

/// A key in the config file that is not a setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    /// The key as written.
    pub key: String,
    /// The setting it most likely meant.
    pub suggestion: Option<&'static str>,
}

impl fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", self.key)?;
        if let Some(s) = self.suggestion {
            write!(f, " (did you mean `{s}`?)")?;
        }
        Ok(())
    }
}

/// One invalid setting: which, the value (unless secret), the problem and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    /// The variable, e.g. `ENVSHARE_CONCURRENCY` (for a value from the file, its key's variable).
    pub variable: String,
    /// The file key, e.g. `concurrency`.
    pub key: &'static str,
    /// The rejected value, cut to 80 characters; `None` for secrets and for rules that involve
    /// several settings.
    pub value: Option<String>,
    /// Whether the value came from the config file (else the environment).
    pub from_file: bool,
    /// What is wrong with it.
    pub problem: String,
    /// What is allowed (empty when the problem says it).
    pub expected: String,
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.value, self.from_file) {
            (Some(v), false) => write!(f, "{}={v:?}", self.variable)?,
            (Some(v), true) => write!(f, "{} = {v:?} (config file)", self.key)?,
            (None, false) => write!(f, "{}", self.variable)?,
            (None, true) => write!(f, "{} (config file)", self.key)?,
        }
        write!(f, ": {}", self.problem)?;
        if !self.expected.is_empty() {
            write!(f, "; expected {}", self.expected)?;
        }
        Ok(())
    }
}

/// A raw value and where it came from.
struct Raw {
    value: String,
    /// The environment variable's name, or `None` for the config file.
    env_var: Option<String>,
}

impl Raw {
    fn env(name: String, value: String) -> Self {
        Raw {
            value,
            env_var: Some(name),
        }
    }

    fn is_env(&self) -> bool {
        self.env_var.is_some()
    }
}

struct Problem {
    problem: String,
    expected: String,
}

impl Problem {
    fn new(problem: impl Into<String>, expected: impl Into<String>) -> Self {
        Problem {
            problem: problem.into(),
            expected: expected.into(),
        }
    }
}

/// Parses each setting from its raw value, collecting every error.
struct Checker<'a> {
    raw: &'a BTreeMap<&'static str, Raw>,
    errors: Vec<SettingError>,
}

impl Checker<'_> {
    /// The value of `key` parsed, or `None` when it is not set or is bad (then the error is
    /// recorded, the value shown as `shown` allows).
    fn get<T>(
        &mut self,
        key: &'static str,
        shown: Shown,
        parse: impl FnOnce(&str) -> Result<T, Problem>,
    ) -> Option<T> {
        let raw = self.raw.get(key)?;
        let result = if raw.value.is_empty() {
            Err(Problem::new(
                "is empty",
                "a value, or leave the setting out to use its default",
            ))
        } else {
            parse(&raw.value)
        };
        match result {
            Ok(v) => Some(v),
            Err(p) => {
                let value = match shown {
                    Shown::Plain => Some(raw.value.clone()),
                    // A secret is never echoed; a Redis URL only without its password.
                    Shown::Secret => None,
                    Shown::UrlPassword => Some(redact_url(&raw.value)),
                };
                self.errors.push(SettingError {
                    variable: raw.env_var.clone().unwrap_or_else(|| env_name(key)),
                    key,
                    value: value.map(|v| v.chars().take(80).collect()),
                    from_file: !raw.is_env(),
                    problem: p.problem,
                    expected: p.expected,
                });
                None
            }
        }
    }

    /// An error about several settings together, reported against the first one that is set.
    fn cross(&mut self, keys: &[&'static str], problem: &str) {
        let key = keys
            .iter()
            .copied()
            .find(|k| self.raw.contains_key(k))
            .unwrap_or(keys[0]);
        let raw = self.raw.get(key);
        self.errors.push(SettingError {
            variable: raw
                .and_then(|r| r.env_var.clone())
                .unwrap_or_else(|| env_name(key)),
            key,
            value: None,
            from_file: raw.is_some_and(|r| !r.is_env()),
            problem: problem.to_owned(),
            expected: String::new(),
        });
    }
}

fn is_secret(key: &str) -> bool {
    KEYS.iter()
        .any(|&(k, shown)| k == key && shown == Shown::Secret)
}

fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase())
}

fn read_toml(text: &str, raw: &mut BTreeMap<&'static str, Raw>) -> Result<(), ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::BadFile {
            file: None,
            // TOML's message quotes the offending line, which could hold a secret: keep only the
            // description and the position.
            message: format!(
                "not valid TOML{}: {}",
                e.span()
                    .map(|s| format!(" at line {}", line_of(text, s.start)))
                    .unwrap_or_default(),
                e.message()
            ),
        })?;
    let mut unknown = Vec::new();
    for (key, value) in table {
        let Some((known, _)) = KEYS.iter().find(|(k, _)| *k == key) else {
            unknown.push(UnknownKey {
                suggestion: suggest(&key),
                key,
            });
            continue;
        };
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(x) => x.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(ConfigError::BadFile {
                    file: None,
                    message: format!(
                        "`{key}` is a {}; expected a single string, number or boolean",
                        other.type_str()
                    ),
                });
            }
        };
        raw.insert(
            known,
            Raw {
                value: text,
                env_var: None,
            },
        );
    }
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(ConfigError::UnknownKeys {
            file: None,
            keys: unknown,
        })
    }
}

fn line_of(text: &str, byte: usize) -> usize {
    text.as_bytes()[..byte.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The known key closest to `key`: the same after lower-casing and stripping the prefix, or at
/// most two edits away.
fn suggest(key: &str) -> Option<&'static str> {
    let lower = key.to_ascii_lowercase();
    let bare = lower.strip_prefix("envshare_").unwrap_or(&lower);
    KEYS.iter()
        .map(|&(k, _)| (k, strsim::levenshtein(bare, k)))
        .filter(|&(_, d)| d <= 2)
        .min_by_key(|&(_, d)| d)
        .map(|(k, _)| k)
}

/// A whole number of milliseconds from `min` to `max`, as a duration.
fn ms(min: u64, max: u64) -> impl Fn(&str) -> Result<Duration, Problem> {
    move |s| int_in(s, min, max).map(Duration::from_millis)
}

fn int_in(s: &str, min: u64, max: u64) -> Result<u64, Problem> {
    let expected = || format!("{min} to {max}");
    let n: u64 = s
        .parse()
        .map_err(|_| Problem::new("not a whole number", expected()))?;
    if n < min || n > max {
        return Err(Problem::new("out of range", expected()));
    }
    Ok(n)
}

fn parse_bool(s: &str) -> Result<bool, Problem> {
    match s {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(Problem::new("not a boolean", "true, false, 1 or 0")),
    }
}

fn parse_rate(s: &str) -> Result<f64, Problem> {
    const EXPECTED: &str = "calls per second from 0 (no limit) to 100000, e.g. 50 or 0.5";
    let x: f64 = s
        .parse()
        .map_err(|_| Problem::new("not a number", EXPECTED))?;
    if !x.is_finite() || !(0.0..=100_000.0).contains(&x) {
        return Err(Problem::new("out of range", EXPECTED));
    }
    Ok(x)
}

/// An EncodingAESKey: 43 characters of the base64 alphabet, which with a trailing `=` always
/// decode to the 32-byte AES key (the callback decodes it at start).
fn check_aes_key(s: &str) -> Result<(), Problem> {
    const EXPECTED: &str = "the EncodingAESKey exactly as the open platform console shows it";
    let chars = s.chars().count();
    if chars != 43 {
        return Err(Problem::new(
            format!(
                "is {chars} characters long; the EncodingAESKey has exactly 43 (letters and digits)"
            ),
            EXPECTED,
        ));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    {
        return Err(Problem::new(
            "is not base64: the EncodingAESKey is 43 letters and digits",
            EXPECTED,
        ));
    }
    Ok(())
}

/// Comma-separated env ids (spaces around them ignored; no duplicates).
fn parse_env_list(s: &str) -> Result<Vec<EnvId>, Problem> {
    const EXPECTED: &str = "env ids separated by commas, e.g. prod-1a2b,staging-3c4d";
    let mut envs: Vec<EnvId> = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let env = EnvId::parse(part)
            .map_err(|e| Problem::new(format!("{part:?}: {}", e.reason()), EXPECTED))?;
        if !envs.contains(&env) {
            envs.push(env);
        }
    }
    Ok(envs)
}

fn parse_secret(s: &str) -> Result<SecretString, Problem> {
    // A trailing newline from `$(cat file)` is the usual way a secret goes wrong; say so without
    // showing it.
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Problem::new(
            "contains whitespace or control characters (a trailing newline?)",
            "the secret exactly as WeChat issued it",
        ));
    }
    Ok(SecretString::from(s))
}

/// The fewest characters an API token may have: it guards enqueueing, dead-job purges and the
/// console, and nothing limits how often it is guessed.
const MIN_API_TOKEN_CHARS: usize = 20;

fn parse_api_token(s: &str) -> Result<SecretString, Problem> {
    let token = parse_secret(s)?;
    let n = s.chars().count();
    if n < MIN_API_TOKEN_CHARS {
        return Err(Problem::new(
            format!("is {n} characters: too short to guard the API and the console"),
            format!(
                "at least {MIN_API_TOKEN_CHARS} characters, e.g. the output of \
                 `openssl rand -hex 32`"
            ),
        ));
    }
    Ok(token)
}

fn parse_sentinels(s: &str) -> Result<Vec<String>, Problem> {
    const EXPECTED: &str = "comma-separated host:port of the Sentinels, e.g. \
                            10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379";
    let list: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    if list
        .iter()
        .any(|p| crate::redis_url::parse_host_port(p).is_none())
    {
        return Err(Problem::new("not a list of host:port", EXPECTED));
    }
    Ok(list)
}

fn parse_master_name(s: &str) -> Result<String, Problem> {
    if s.is_empty()
        || s.chars()
            .any(|c| c.is_whitespace() || c == '/' || c.is_control())
    {
        return Err(Problem::new(
            "not a master name",
            "the name in the Sentinels' `sentinel monitor NAME …` line, e.g. mymaster",
        ));
    }
    Ok(s.to_owned())
}

fn parse_redis_url(s: &str) -> Result<String, Problem> {
    use redis::IntoConnectionInfo;
    const EXPECTED: &str = "redis://[[user]:password@]host[:port][/db], rediss://… (TLS), \
                            unix:///path/to/redis.sock, or \
                            redis+cluster://[[user]:password@]host:port[,host:port…]";
    if s.starts_with("rediss://") && !cfg!(feature = "tls") {
        return Err(Problem::new(
            "is a TLS URL but envshare was built without the `tls` feature",
            "a redis:// URL, or a build with the default features (they include `tls`)",
        ));
    }
    if crate::redis_url::is_sentinel_url(s) {
        return crate::redis_url::parse_sentinel(s)
            .map(|_| s.to_owned())
            .map_err(|_| {
                Problem::new(
                    "not a Sentinel URL",
                    "redis+sentinel://[[user]:password@]host:port[,host:port…]/MASTER[/db]",
                )
            });
    }
    // A redis+cluster:// URL or a node list (for ENVSHARE_REDIS_CLUSTER) is read as cluster
    // seed nodes; see crate::redis_url.
    if crate::redis_url::is_cluster_url(s) || s.contains(',') {
        return crate::redis_url::parse_target(s, true)
            .map(|_| s.to_owned())
            .map_err(|_| Problem::new("not a Redis Cluster URL", EXPECTED));
    }
    // Parsing builds no connection; the error text is not shown because it may quote the URL.
    s.into_connection_info()
        .map(|_| s.to_owned())
        .map_err(|_| Problem::new("not a Redis URL", EXPECTED))
}

fn parse_redis_key(s: &str) -> Result<String, Problem> {
    const EXPECTED: &str = "the key name exactly as the platform's SDK writes it, e.g. \
                            wechat_component_access_token:wx0123456789abcdef";
    if s.len() > 1024 {
        return Err(Problem::new("is longer than 1024 bytes", EXPECTED));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Problem::new(
            "contains whitespace or control characters",
            EXPECTED,
        ));
    }
    Ok(s.to_owned())
}

fn parse_token_url(s: &str) -> Result<String, Problem> {
    const EXPECTED: &str = "an http:// or https:// URL without fragment, e.g. \
                            https://tokens.internal/component-token";
    let url = reqwest::Url::parse(s).map_err(|_| Problem::new("not a URL", EXPECTED))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(Problem::new("not an http(s) URL", EXPECTED));
    }
    if url.fragment().is_some() {
        return Err(Problem::new("has a fragment", EXPECTED));
    }
    Ok(s.to_owned())
}

fn parse_base_url(s: &str) -> Result<String, Problem> {
    const EXPECTED: &str = "an http:// or https:// URL without query or fragment, e.g. \
                            https://api.weixin.qq.com";
    let url = reqwest::Url::parse(s).map_err(|_| Problem::new("not a URL", EXPECTED))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(Problem::new("not an http(s) URL", EXPECTED));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Problem::new("has a query or fragment", EXPECTED));
    }
    // Trailing slashes would double up when paths are appended.
    Ok(s.trim_end_matches('/').to_owned())
}

/// The webhook endpoints (`ENVSHARE_WEBHOOK_URLS`): http(s) URLs, in the order given. `Debug`
/// hides URL passwords.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct WebhookUrls(Vec<reqwest::Url>);

impl WebhookUrls {
    /// The URLs.
    pub fn urls(&self) -> &[reqwest::Url] {
        &self.0
    }

    /// Whether none is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for WebhookUrls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|u| redact_url(u.as_str())))
            .finish()
    }
}

fn parse_webhook_urls(s: &str) -> Result<WebhookUrls, Problem> {
    const EXPECTED: &str = "comma-separated http:// or https:// URLs, e.g. \
                            https://hooks.example.com/envshare,http://10.0.0.5:8080/in";
    let mut urls: Vec<reqwest::Url> = Vec::new();
    for (i, item) in s.split(',').map(str::trim).enumerate() {
        let n = i + 1;
        if item.is_empty() {
            return Err(Problem::new(format!("URL {n} is empty"), EXPECTED));
        }
        let url = reqwest::Url::parse(item)
            .map_err(|_| Problem::new(format!("URL {n} is not a URL"), EXPECTED))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(Problem::new(
                format!("URL {n} is not an http(s) URL"),
                EXPECTED,
            ));
        }
        if url.fragment().is_some() {
            return Err(Problem::new(format!("URL {n} has a fragment"), EXPECTED));
        }
        if urls.contains(&url) {
            return Err(Problem::new(format!("URL {n} is listed twice"), EXPECTED));
        }
        urls.push(url);
    }
    Ok(WebhookUrls(urls))
}

fn parse_webhook_secret(s: &str) -> Result<SecretString, Problem> {
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Problem::new(
            "contains whitespace or control characters (a trailing newline?)",
            "the shared secret exactly as the receivers know it",
        ));
    }
    Ok(SecretString::from(s))
}

fn parse_confirm_window(s: &str) -> Result<Duration, Problem> {
    let d =
        parse_duration(s).map_err(|p| Problem::new(p, "a duration such as 7d, 48h or 1500ms"))?;
    if d.is_zero() || d > Duration::from_secs(365 * 86_400) {
        return Err(Problem::new("out of range", "above 0 and at most 365d"));
    }
    Ok(d)
}

fn parse_results_ttl(s: &str) -> Result<Duration, Problem> {
    let d = parse_duration(s).map_err(|p| Problem::new(p, "a duration such as 30d or 12h"))?;
    if d < Duration::from_secs(60) || d > Duration::from_secs(3650 * 86_400) {
        return Err(Problem::new(
            "out of range",
            "at least 1m and at most 3650d",
        ));
    }
    Ok(d)
}

fn parse_log_filter(s: &str) -> Result<String, Problem> {
    crate::telemetry::parse_filter(s)
        .map(|_| s.to_owned())
        .map_err(|_| {
            Problem::new(
                "not a valid tracing filter",
                "a level (error, warn, info, debug, trace) or target=level pairs separated by \
                 commas, e.g. info,envshare=debug",
            )
        })
}

/// `s` with the password of its userinfo (`scheme://user:PASSWORD@host`) replaced by `***`; a
/// userinfo without a colon is replaced whole, since Redis URLs are often written with the
/// password alone.
pub fn redact_url(s: &str) -> String {
    let Some(scheme_end) = s.find("://").map(|i| i + 3) else {
        return s.to_owned();
    };
    let rest = &s[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return s.to_owned();
    };
    let userinfo = &rest[..at];
    let kept = match userinfo.find(':') {
        Some(colon) => format!("{}:***", &userinfo[..colon]),
        None => "***".to_owned(),
    };
    format!("{}{kept}{}", &s[..scheme_end], &rest[at..])
}

impl SettingError {
    /// Whether this error is about a secret (its value is never shown).
    pub fn is_secret(&self) -> bool {
        is_secret(self.key)
    }
}

impl TokenMode {
    /// A short name for messages: `fixed`, `component`, `redis`, `http` or `none`.
    pub fn name(&self) -> &'static str {
        match self {
            TokenMode::Fixed(_) => "fixed",
            TokenMode::Component { .. } => "component",
            TokenMode::Redis { .. } => "redis",
            TokenMode::Http { .. } => "http",
            TokenMode::None => "none",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use secrecy::ExposeSecret;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load(pairs: &[(&str, &str)], toml: Option<&str>) -> Result<Settings, ConfigError> {
        Settings::from_sources(env(pairs), toml)
    }

    fn one_error(pairs: &[(&str, &str)], toml: Option<&str>) -> String {
        let err = load(pairs, toml).unwrap_err();
        assert_eq!(err.setting_errors().len(), 1, "{err}");
        err.to_string()
    }

    #[test]
    fn nothing_configured_gives_the_documented_defaults() {
        let s = load(&[], None).unwrap();
        assert_eq!(s.redis_url, "redis://127.0.0.1:6379");
        assert!(!s.redis_cluster);
        assert_eq!(s.queue.as_str(), "share");
        assert_eq!(s.wechat_base_url, "https://api.weixin.qq.com");
        assert!(matches!(s.token_mode(), TokenMode::None));
        assert_eq!(s.concurrency, 32);
        assert_eq!(s.max_attempts, 10);
        assert_eq!(s.backoff_base, Duration::from_secs(1));
        assert_eq!(s.backoff_max, Duration::from_secs(600));
        assert_eq!(s.lease, Duration::from_secs(30));
        assert_eq!(s.rate_limit_per_sec(), None);
        assert_eq!(s.chunk_size, 10);
        assert_eq!(s.request_timeout, Duration::from_secs(10));
        assert_eq!(s.http_addr.to_string(), "127.0.0.1:9464");
        assert_eq!(s.log, "info");
        assert_eq!(s.log_format, LogFormat::Text);
        assert_eq!(s.events_maxlen, 1_000_000);
        assert_eq!(s.dedupe_window, Duration::from_secs(86_400));
        assert_eq!(s.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(s.quota_reset.to_string(), "00:00");
        assert_eq!(s.token_refresh_ahead, Duration::from_secs(600));
        assert_eq!(format!("{s:?}"), format!("{:?}", Settings::defaults()));
    }

    #[test]
    fn every_setting_is_read_from_its_variable() {
        let s = load(
            &[
                ("ENVSHARE_REDIS_URL", "redis://10.0.0.1:7000/2"),
                ("ENVSHARE_REDIS_CLUSTER", "true"),
                ("ENVSHARE_QUEUE", "bulk"),
                ("ENVSHARE_WECHAT_BASE_URL", "http://127.0.0.1:8080/"),
                ("ENVSHARE_ACCESS_TOKEN", "tok-123"),
                ("ENVSHARE_TOKEN_REFRESH_AHEAD_MS", "5000"),
                ("ENVSHARE_TOKEN_RECHECK_MS", "4000"),
                ("ENVSHARE_CONCURRENCY", "64"),
                ("ENVSHARE_MAX_ATTEMPTS", "3"),
                ("ENVSHARE_BACKOFF_BASE_MS", "10"),
                ("ENVSHARE_BACKOFF_MAX_MS", "100"),
                ("ENVSHARE_LEASE_MS", "5000"),
                ("ENVSHARE_RATE_LIMIT", "0.5"),
                ("ENVSHARE_CHUNK_SIZE", "50"),
                ("ENVSHARE_REQUEST_TIMEOUT_MS", "250"),
                ("ENVSHARE_QUOTA_RESET", "07:30"),
                ("ENVSHARE_EVENTS_MAXLEN", "5000"),
                ("ENVSHARE_DEDUPE_WINDOW_MS", "0"),
                ("ENVSHARE_SHUTDOWN_TIMEOUT_MS", "1500"),
                ("ENVSHARE_HTTP_ADDR", "0.0.0.0:9000"),
                ("ENVSHARE_LOG", "warn,envshare=debug"),
                ("ENVSHARE_LOG_FORMAT", "json"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(s.redis_url, "redis://10.0.0.1:7000/2");
        assert!(s.redis_cluster);
        assert_eq!(s.queue.as_str(), "bulk");
        assert_eq!(
            s.wechat_base_url, "http://127.0.0.1:8080",
            "trailing slash dropped"
        );
        match s.token_mode() {
            TokenMode::Fixed(t) => assert_eq!(t.expose_secret(), "tok-123"),
            other => panic!("expected a fixed token, got {}", other.name()),
        }
        assert_eq!(s.token_refresh_ahead, Duration::from_millis(5000));
        assert_eq!(s.token_recheck, Duration::from_millis(4000));
        assert_eq!(s.concurrency, 64);
        assert_eq!(s.max_attempts, 3);
        assert_eq!(s.backoff_base, Duration::from_millis(10));
        assert_eq!(s.backoff_max, Duration::from_millis(100));
        assert_eq!(s.lease, Duration::from_millis(5000));
        assert_eq!(s.rate_limit_per_sec(), Some(0.5));
        assert_eq!(s.chunk_size, 50);
        assert_eq!(s.request_timeout, Duration::from_millis(250));
        assert_eq!((s.quota_reset.hour(), s.quota_reset.minute()), (7, 30));
        assert_eq!(s.events_maxlen, 5000);
        assert_eq!(s.dedupe_window, Duration::ZERO);
        assert_eq!(s.shutdown_timeout, Duration::from_millis(1500));
        assert_eq!(s.http_addr.to_string(), "0.0.0.0:9000");
        assert_eq!(s.log, "warn,envshare=debug");
        assert_eq!(s.log_format, LogFormat::Json);
    }

    #[test]
    fn the_file_sets_values_and_the_environment_overrides_it() {
        let toml = r#"
            redis_url = "redis://file:6379"
            concurrency = 64
            rate_limit = 2.5
            redis_cluster = true
            log_format = "json"
        "#;
        let s = load(&[("ENVSHARE_CONCURRENCY", "8")], Some(toml)).unwrap();
        assert_eq!(s.concurrency, 8, "environment beats file");
        assert_eq!(s.redis_url, "redis://file:6379");
        assert_eq!(s.rate_limit, 2.5);
        assert!(s.redis_cluster);
        assert_eq!(s.log_format, LogFormat::Json);
    }

    #[test]
    fn redis_url_falls_back_to_the_generic_variable() {
        let s = load(&[("REDIS_URL", "redis://generic:1")], None).unwrap();
        assert_eq!(s.redis_url, "redis://generic:1");

        let both = [
            ("REDIS_URL", "redis://generic:1"),
            ("ENVSHARE_REDIS_URL", "redis://specific:2"),
        ];
        assert_eq!(load(&both, None).unwrap().redis_url, "redis://specific:2");
        // Order of the pairs must not matter.
        let reversed = [both[1], both[0]];
        assert_eq!(
            load(&reversed, None).unwrap().redis_url,
            "redis://specific:2"
        );

        let file = Some("redis_url = \"redis://file:3\"");
        assert_eq!(
            load(&[("REDIS_URL", "redis://generic:1")], file)
                .unwrap()
                .redis_url,
            "redis://generic:1",
            "REDIS_URL is the environment, which beats the file"
        );
    }

    #[test]
    fn a_bad_number_names_the_variable_the_value_and_the_range() {
        let msg = one_error(&[("ENVSHARE_CONCURRENCY", "abc")], None);
        assert!(
            msg.contains(r#"ENVSHARE_CONCURRENCY="abc": not a whole number; expected 1 to 10000"#),
            "{msg}"
        );
        let msg = one_error(&[("ENVSHARE_CONCURRENCY", "0")], None);
        assert!(msg.contains("out of range; expected 1 to 10000"), "{msg}");
        let msg = one_error(&[("ENVSHARE_LEASE_MS", "-5")], None);
        assert!(
            msg.contains("ENVSHARE_LEASE_MS=\"-5\": not a whole number"),
            "{msg}"
        );
        let msg = one_error(&[("ENVSHARE_MAX_ATTEMPTS", "2.5")], None);
        assert!(msg.contains("ENVSHARE_MAX_ATTEMPTS"), "{msg}");
    }

    #[test]
    fn each_kind_of_bad_value_is_rejected_with_what_is_allowed() {
        let cases = [
            ("ENVSHARE_RATE_LIMIT", "-1", "calls per second"),
            ("ENVSHARE_RATE_LIMIT", "NaN", "calls per second"),
            ("ENVSHARE_RATE_LIMIT", "fast", "not a number"),
            (
                "ENVSHARE_REDIS_CLUSTER",
                "yes please",
                "true, false, 1 or 0",
            ),
            ("ENVSHARE_QUEUE", "a:b", "queue name"),
            ("ENVSHARE_COMPONENT_APPID", "wxNOTHEX", "\"wx\""),
            ("ENVSHARE_WECHAT_BASE_URL", "ftp://x", "http"),
            ("ENVSHARE_WECHAT_BASE_URL", "http://x/?a=1", "query"),
            ("ENVSHARE_REDIS_URL", "http://x", "redis://"),
            (
                "ENVSHARE_HTTP_ADDR",
                "localhost:9464",
                "IP address and port",
            ),
            ("ENVSHARE_LOG", "envshare=shouting", "tracing filter"),
            ("ENVSHARE_LOG_FORMAT", "yaml", "text or json"),
            ("ENVSHARE_QUOTA_RESET", "24:00", "HH:MM"),
            ("ENVSHARE_QUOTA_RESET", "7:30", "HH:MM"),
            ("ENVSHARE_CHUNK_SIZE", "100000", "1 to 1000"),
            ("ENVSHARE_REQUEST_TIMEOUT_MS", "", "is empty"),
        ];
        for (var, value, hint) in cases {
            let err = load(&[(var, value)], None).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(var), "{var}={value:?}: {msg}");
            assert!(msg.contains(hint), "{var}={value:?}: {msg} lacks {hint:?}");
            assert!(!err.is_retryable());
        }
    }

    #[test]
    fn all_bad_values_are_reported_at_once() {
        let err = load(
            &[
                ("ENVSHARE_CONCURRENCY", "x"),
                ("ENVSHARE_CHUNK_SIZE", "y"),
                ("ENVSHARE_LOG_FORMAT", "z"),
            ],
            None,
        )
        .unwrap_err();
        assert_eq!(err.setting_errors().len(), 3);
        let msg = err.to_string();
        assert!(msg.contains("3 invalid values"), "{msg}");
    }

    #[test]
    fn a_bad_value_in_the_file_names_the_key() {
        let msg = one_error(&[], Some("concurrency = \"many\""));
        assert!(
            msg.contains(r#"concurrency = "many" (config file): not a whole number"#),
            "{msg}"
        );
    }

    #[test]
    fn backoff_base_above_its_cap_is_rejected() {
        let msg = one_error(
            &[
                ("ENVSHARE_BACKOFF_BASE_MS", "5000"),
                ("ENVSHARE_BACKOFF_MAX_MS", "1000"),
            ],
            None,
        );
        assert!(msg.contains("BACKOFF_BASE_MS <= BACKOFF_MAX_MS"), "{msg}");
    }

    #[test]
    fn the_component_credentials_give_component_token_mode() {
        let s = load(
            &[
                ("ENVSHARE_COMPONENT_APPID", "wx0123456789abcdef"),
                ("ENVSHARE_COMPONENT_APPSECRET", "s3cr3t"),
            ],
            None,
        )
        .unwrap();
        match s.token_mode() {
            TokenMode::Component { appid, secret } => {
                assert_eq!(appid.as_str(), "wx0123456789abcdef");
                assert_eq!(secret.expose_secret(), "s3cr3t");
            }
            other => panic!("expected component mode, got {}", other.name()),
        }
    }

    #[test]
    fn both_token_modes_at_once_is_an_error_that_says_to_choose() {
        let msg = one_error(
            &[
                ("ENVSHARE_ACCESS_TOKEN", "tok"),
                ("ENVSHARE_COMPONENT_APPID", "wx0123456789abcdef"),
                ("ENVSHARE_COMPONENT_APPSECRET", "s3cr3t"),
            ],
            None,
        );
        assert!(msg.contains("choose one"), "{msg}");
        assert!(!msg.contains("tok\"") && !msg.contains("s3cr3t"), "{msg}");
    }

    #[test]
    fn token_sources_take_their_own_settings() {
        let s = load(
            &[
                ("ENVSHARE_TOKEN_SOURCE", "redis"),
                (
                    "ENVSHARE_TOKEN_REDIS_KEY",
                    "wechat_component_access_token:wx0123456789abcdef",
                ),
            ],
            None,
        )
        .unwrap();
        match s.token_mode() {
            TokenMode::Redis { key, url } => {
                assert_eq!(key, "wechat_component_access_token:wx0123456789abcdef");
                assert_eq!(url, None);
            }
            other => panic!("expected redis mode, got {}", other.name()),
        }
        let s = load(
            &[
                ("ENVSHARE_TOKEN_SOURCE", "http"),
                ("ENVSHARE_TOKEN_URL", "http://tokens.internal/component"),
                ("ENVSHARE_TOKEN_URL_AUTH", "bearer-value-9"),
                // The credentials stay allowed: ticket request and the callback use them.
                ("ENVSHARE_COMPONENT_APPID", "wx0123456789abcdef"),
                ("ENVSHARE_COMPONENT_APPSECRET", "s3cr3t"),
            ],
            None,
        )
        .unwrap();
        match s.token_mode() {
            TokenMode::Http { url, auth } => {
                assert_eq!(url, "http://tokens.internal/component");
                assert_eq!(auth.unwrap().expose_secret(), "bearer-value-9");
            }
            other => panic!("expected http mode, got {}", other.name()),
        }
        assert!(!format!("{s:?}").contains("bearer-value-9"));
        let s = load(
            &[
                ("ENVSHARE_TOKEN_SOURCE", "fixed"),
                ("ENVSHARE_ACCESS_TOKEN", "tok"),
                ("ENVSHARE_COMPONENT_APPID", "wx0123456789abcdef"),
                ("ENVSHARE_COMPONENT_APPSECRET", "s3cr3t"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(s.token_mode().name(), "fixed");
    }

    #[test]
    fn a_token_source_without_its_settings_is_an_error_naming_them() {
        let msg = one_error(&[("ENVSHARE_TOKEN_SOURCE", "redis")], None);
        assert!(msg.contains("ENVSHARE_TOKEN_SOURCE"), "{msg}");
        assert!(msg.contains("ENVSHARE_TOKEN_REDIS_KEY is not set"), "{msg}");
        let msg = one_error(&[("ENVSHARE_TOKEN_SOURCE", "http")], None);
        assert!(msg.contains("ENVSHARE_TOKEN_URL is not set"), "{msg}");
        let msg = one_error(
            &[
                ("ENVSHARE_TOKEN_SOURCE", "component"),
                ("ENVSHARE_COMPONENT_APPID", "wx0123456789abcdef"),
            ],
            None,
        );
        assert!(msg.contains("ENVSHARE_COMPONENT_APPSECRET"), "{msg}");
        let msg = one_error(&[("ENVSHARE_TOKEN_SOURCE", "vault")], None);
        assert!(msg.contains("component, fixed, redis or http"), "{msg}");
    }

    #[test]
    fn a_token_source_with_another_sources_settings_is_an_error_naming_them() {
        let msg = one_error(
            &[
                ("ENVSHARE_TOKEN_SOURCE", "redis"),
                ("ENVSHARE_TOKEN_REDIS_KEY", "k"),
                ("ENVSHARE_ACCESS_TOKEN", "tok-secret-77"),
            ],
            None,
        );
        assert!(msg.contains("ENVSHARE_ACCESS_TOKEN"), "{msg}");
        assert!(msg.contains("ENVSHARE_TOKEN_SOURCE=redis"), "{msg}");
        assert!(!msg.contains("tok-secret-77"), "{msg}");
        let msg = one_error(
            &[
                ("ENVSHARE_TOKEN_SOURCE", "http"),
                ("ENVSHARE_TOKEN_URL", "https://t.example/x"),
                ("ENVSHARE_TOKEN_REDIS_KEY", "k"),
            ],
            None,
        );
        assert!(msg.contains("ENVSHARE_TOKEN_REDIS_KEY"), "{msg}");
        // Without a source, a redis or http setting asks for one.
        let msg = one_error(
            &[
                ("ENVSHARE_ACCESS_TOKEN", "tok"),
                ("ENVSHARE_TOKEN_URL", "https://t.example/x"),
            ],
            None,
        );
        assert!(msg.contains("set ENVSHARE_TOKEN_SOURCE=http"), "{msg}");
    }

    #[test]
    fn the_token_redis_url_is_shown_without_its_password() {
        let s = load(
            &[
                ("ENVSHARE_TOKEN_SOURCE", "redis"),
                ("ENVSHARE_TOKEN_REDIS_KEY", "k"),
                (
                    "ENVSHARE_TOKEN_REDIS_URL",
                    "redis://:pw-hunter3@sdk-redis:6379/2",
                ),
            ],
            None,
        )
        .unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains("pw-hunter3"), "{debug}");
        assert!(debug.contains("sdk-redis"), "{debug}");
    }

    #[test]
    fn half_of_the_component_credentials_is_an_error() {
        let msg = one_error(&[("ENVSHARE_COMPONENT_APPID", "wx0123456789abcdef")], None);
        assert!(
            msg.contains("without ENVSHARE_COMPONENT_APPSECRET"),
            "{msg}"
        );
        let msg = one_error(&[("ENVSHARE_COMPONENT_APPSECRET", "s3cr3t")], None);
        assert!(msg.contains("without ENVSHARE_COMPONENT_APPID"), "{msg}");
        assert!(!msg.contains("s3cr3t"), "{msg}");
    }

    #[test]
    fn a_bad_secret_is_reported_without_its_value() {
        let msg = one_error(&[("ENVSHARE_ACCESS_TOKEN", "tok-with-newline\n")], None);
        assert!(
            msg.contains("ENVSHARE_ACCESS_TOKEN: contains whitespace"),
            "{msg}"
        );
        assert!(!msg.contains("tok-with-newline"), "{msg}");
    }

    #[test]
    fn debug_shows_no_secret_and_no_redis_password() {
        let s = load(
            &[
                ("ENVSHARE_REDIS_URL", "redis://user:hunter2@redis:6379/0"),
                ("ENVSHARE_COMPONENT_APPID", "wx0123456789abcdef"),
                ("ENVSHARE_COMPONENT_APPSECRET", "appsecret-value"),
            ],
            None,
        )
        .unwrap();
        let debug = format!("{s:?} {:?}", s.token_mode());
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains("appsecret-value"), "{debug}");
        assert!(debug.contains("redis://user:***@redis:6379/0"), "{debug}");

        let s = load(&[("ENVSHARE_ACCESS_TOKEN", "fixed-token-value")], None).unwrap();
        let debug = format!("{s:?} {:?}", s.token_mode());
        assert!(!debug.contains("fixed-token-value"), "{debug}");
    }

    #[test]
    fn a_bad_redis_url_is_echoed_without_its_password() {
        let msg = one_error(
            &[("ENVSHARE_REDIS_URL", "redis://:hunter2@host:notaport")],
            None,
        );
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(msg.contains("ENVSHARE_REDIS_URL"), "{msg}");
    }

    #[test]
    fn redact_url_hides_only_the_password() {
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(redact_url("redis://:pw@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redact_url("redis://u:pw@h"), "redis://u:***@h");
        assert_eq!(redact_url("redis://pw@h"), "redis://***@h");
        assert_eq!(redact_url("redis://u:p@w@h"), "redis://u:***@h");
        assert_eq!(redact_url("redis://h/0?x=a@b"), "redis://h/0?x=a@b");
    }

    #[test]
    fn an_unknown_key_in_the_file_is_an_error_naming_it() {
        let err = load(&[], Some("concurency = 4\nqueue = \"q\"")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`concurency`"), "{msg}");
        assert!(msg.contains("did you mean `concurrency`?"), "{msg}");

        let msg = load(&[], Some("ENVSHARE_LEASE_MS = 4"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("did you mean `lease_ms`?"), "{msg}");
    }

    #[test]
    fn a_file_that_is_not_toml_is_an_error_with_a_line_number() {
        let msg = load(&[], Some("queue = \"a\"\naccess_token = \n"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("not valid TOML at line 2"), "{msg}");
        let msg = load(&[], Some("queue = [\"a\"]")).unwrap_err().to_string();
        assert!(msg.contains("`queue` is a array"), "{msg}");
    }

    #[test]
    fn unknown_envshare_variables_are_listed_not_fatal() {
        let s = load(
            &[
                ("ENVSHARE_CONCURENCY", "4"),
                ("ENVSHARE_TEST_REDIS_URL", "redis://x"),
                ("ENVSHARE_BUILD_COMMIT", "0123456789ab"),
                ("ENVSHARE_concurrency", "4"),
                ("PATH", "/bin"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(
            s.unknown_env_vars(),
            ["ENVSHARE_CONCURENCY", "ENVSHARE_concurrency"]
        );
        assert_eq!(s.concurrency, 32);
    }

    #[test]
    fn the_callback_settings_are_checked_without_showing_them() {
        let key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
        let s = load(
            &[
                ("ENVSHARE_CALLBACK_TOKEN", "cb-token-value"),
                ("ENVSHARE_CALLBACK_AES_KEY", key),
                (
                    "ENVSHARE_AUTO_SHARE_ENVS",
                    "prod-1a2b, staging-3c4d,prod-1a2b",
                ),
                ("ENVSHARE_SERVE_ADDR", "0.0.0.0:8443"),
                ("ENVSHARE_API_TOKEN", "api-token-value-long-enough"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(
            s.auto_share_envs
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>(),
            ["prod-1a2b", "staging-3c4d"]
        );
        assert_eq!(s.serve_addr.to_string(), "0.0.0.0:8443");
        let debug = format!("{s:?}");
        for secret in ["cb-token-value", key, "api-token-value-long-enough"] {
            assert!(!debug.contains(secret), "{debug}");
        }

        let short = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEF";
        let msg = one_error(
            &[
                ("ENVSHARE_CALLBACK_TOKEN", "t"),
                ("ENVSHARE_CALLBACK_AES_KEY", short),
            ],
            None,
        );
        assert!(msg.contains("ENVSHARE_CALLBACK_AES_KEY"), "{msg}");
        assert!(msg.contains("42 characters") && msg.contains("43"), "{msg}");
        assert!(!msg.contains(short), "{msg}");
        let bad = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEF!";
        let msg = one_error(
            &[
                ("ENVSHARE_CALLBACK_TOKEN", "t"),
                ("ENVSHARE_CALLBACK_AES_KEY", bad),
            ],
            None,
        );
        assert!(msg.contains("not base64"), "{msg}");
        assert!(!msg.contains(bad), "{msg}");

        let msg = one_error(&[("ENVSHARE_CALLBACK_TOKEN", "t")], None);
        assert!(msg.contains("without ENVSHARE_CALLBACK_AES_KEY"), "{msg}");
        let msg = one_error(&[("ENVSHARE_CALLBACK_AES_KEY", key)], None);
        assert!(msg.contains("without ENVSHARE_CALLBACK_TOKEN"), "{msg}");
        let msg = one_error(&[("ENVSHARE_AUTO_SHARE_ENVS", "ok-env,bad env")], None);
        assert!(
            msg.contains("ENVSHARE_AUTO_SHARE_ENVS") && msg.contains("bad env"),
            "{msg}"
        );
    }

    /// The settings table of docs/configuration.md: (variable, documented default) per row.
    fn documented_settings() -> Vec<(String, Option<String>)> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
        let text = std::fs::read_to_string(path).expect("reading docs/configuration.md");
        let first_code = |cell: &str| cell.split('`').nth(1).map(str::to_owned);
        text.lines()
            .filter(|line| line.starts_with("| `ENVSHARE_"))
            .map(|line| {
                let cells: Vec<&str> = line.split('|').collect();
                (
                    first_code(cells[1]).expect("a variable"),
                    first_code(cells[2]),
                )
            })
            .collect()
    }

    #[test]
    fn the_docs_list_every_setting_with_its_default() {
        let documented = documented_settings();
        let names: Vec<&str> = documented.iter().map(|(v, _)| v.as_str()).collect();
        let keys: Vec<String> = KEYS.iter().map(|&(k, _)| env_name(k)).collect();
        assert_eq!(
            names, keys,
            "docs/configuration.md lists the settings in table order"
        );
        let defaults = format!("{:?}", Settings::defaults());
        for (var, default) in documented {
            let Some(default) = default else { continue };
            let s = load(&[(&var, &default)], None).unwrap();
            assert_eq!(
                format!("{s:?}"),
                defaults,
                "{var}: documented default {default:?}"
            );
        }
    }

    #[test]
    fn an_api_token_needs_twenty_characters_and_a_short_one_is_not_shown() {
        let e = one_error(&[("ENVSHARE_API_TOKEN", "hunter2hunter2")], None);
        assert!(
            e.contains("ENVSHARE_API_TOKEN") && e.contains("is 14 characters"),
            "{e}"
        );
        assert!(e.contains("openssl rand -hex 32"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let s = load(&[("ENVSHARE_API_TOKEN", "twenty-characters-ok")], None).unwrap();
        assert!(s.api_token.is_some());
    }

    #[test]
    fn webhook_urls_must_be_http_and_need_a_secret() {
        let e = one_error(
            &[
                (
                    "ENVSHARE_WEBHOOK_URLS",
                    "https://a.example/h,ftp://b.example/h",
                ),
                ("ENVSHARE_WEBHOOK_SECRET", "s3cret"),
            ],
            None,
        );
        assert!(e.contains("ENVSHARE_WEBHOOK_URLS"), "{e}");
        assert!(e.contains("URL 2 is not an http(s) URL"), "{e}");
        let e = one_error(&[("ENVSHARE_WEBHOOK_URLS", "not a url")], None);
        assert!(e.contains("ENVSHARE_WEBHOOK_URLS"), "{e}");
        let e = one_error(&[("ENVSHARE_WEBHOOK_URLS", "https://a.example/h")], None);
        assert!(
            e.contains("ENVSHARE_WEBHOOK_URLS") && e.contains("ENVSHARE_WEBHOOK_SECRET"),
            "{e}"
        );
        let e = one_error(&[("ENVSHARE_WEBHOOK_SECRET_PREVIOUS", "old")], None);
        assert!(e.contains("ENVSHARE_WEBHOOK_SECRET_PREVIOUS"), "{e}");
        let s = load(
            &[
                (
                    "ENVSHARE_WEBHOOK_URLS",
                    "https://u:pw@a.example/h, http://127.0.0.1:8080/in",
                ),
                ("ENVSHARE_WEBHOOK_SECRET", "topsecretvalue"),
                ("ENVSHARE_WEBHOOK_SECRET_PREVIOUS", "oldsecretvalue"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(s.webhook_urls.urls().len(), 2);
        let debug = format!("{s:?}");
        assert!(!debug.contains("topsecretvalue") && !debug.contains("oldsecretvalue"));
        assert!(!debug.contains(":pw@"), "{debug}");
    }

    proptest! {
        #[test]
        fn arbitrary_values_never_panic(
            values in proptest::collection::vec(any::<String>(), KEYS.len()),
        ) {
            let pairs: Vec<(String, String)> = KEYS
                .iter()
                .zip(values)
                .map(|(&(k, _), v)| (env_name(k), v))
                .collect();
            let _ = Settings::from_sources(pairs, None).map_err(|e| e.to_string());
        }

        #[test]
        fn arbitrary_files_never_panic(text in ".{0,200}") {
            let _ = Settings::from_sources(Vec::new(), Some(&text)).map_err(|e| e.to_string());
        }

        #[test]
        fn secrets_never_reach_errors_or_debug(
            secret in "[A-Za-z0-9]{12,30}",
            other in any::<String>(),
        ) {
            let cases = [
                vec![("ENVSHARE_ACCESS_TOKEN", format!("{secret} "))],
                vec![("ENVSHARE_ACCESS_TOKEN", secret.clone()),
                     ("ENVSHARE_COMPONENT_APPSECRET", secret.clone())],
                vec![("ENVSHARE_COMPONENT_APPSECRET", secret.clone()),
                     ("ENVSHARE_CONCURRENCY", other.clone())],
            ];
            for pairs in cases {
                let pairs: Vec<(String, String)> =
                    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                let text = match Settings::from_sources(pairs, None) {
                    Ok(s) => format!("{s:?} {:?}", s.token_mode()),
                    Err(e) => format!("{e} {e:?}"),
                };
                prop_assert!(!text.contains(&secret), "{}", text);
            }
        }
    }
}
