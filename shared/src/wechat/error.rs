//! Typed errors of the WeChat client and the errcode table.

use std::fmt;
use std::time::Duration;

/// One WeChat API endpoint the client calls. Errors name it so a log line says which call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// `componenttcb/batchshareenv`: share an env with Mini Programs.
    ShareEnv,
    /// `componenttcb/batchgetenvid`: read back which envs Mini Programs are bound to.
    GetEnvIds,
    /// `componenttcb/batchunshareenv`: undo a share.
    UnshareEnv,
    /// `cgi-bin/openapi/quota/get`: the daily quota of one API.
    Quota,
    /// `cgi-bin/component/api_component_token`: fetch a `component_access_token`.
    ComponentToken,
    /// `cgi-bin/component/api_start_push_ticket`: ask WeChat to push a verify ticket to the
    /// platform's authorization event URL now.
    StartPushTicket,
}

impl Endpoint {
    /// Every endpoint, in declaration order.
    pub const ALL: [Endpoint; 6] = [
        Endpoint::ShareEnv,
        Endpoint::GetEnvIds,
        Endpoint::UnshareEnv,
        Endpoint::Quota,
        Endpoint::ComponentToken,
        Endpoint::StartPushTicket,
    ];

    /// The path below the base URL, without a leading slash (e.g. `componenttcb/batchshareenv`).
    pub const fn path(self) -> &'static str {
        match self {
            Endpoint::ShareEnv => "componenttcb/batchshareenv",
            Endpoint::GetEnvIds => "componenttcb/batchgetenvid",
            Endpoint::UnshareEnv => "componenttcb/batchunshareenv",
            Endpoint::Quota => "cgi-bin/openapi/quota/get",
            Endpoint::ComponentToken => "cgi-bin/component/api_component_token",
            Endpoint::StartPushTicket => "cgi-bin/component/api_start_push_ticket",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

/// What an outcome means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// errcode 0: the call was processed (per-appid failures may still be in `err_list`).
    Ok,
    /// Try again later with backoff: WeChat was busy, or the transport failed.
    Transient,
    /// The access token is invalid or expired: refresh it once and call again.
    Token,
    /// Retrying cannot help: the job is dead.
    Permanent,
    /// The daily quota is spent: pause every worker until it resets.
    Quota,
}

impl ErrorClass {
    /// Lower-case name, for logs and metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Ok => "ok",
            ErrorClass::Transient => "transient",
            ErrorClass::Token => "token",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Quota => "quota",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classifies a WeChat `errcode`: the errcode table, in one place.
///
/// Transport outcomes (HTTP status, timeout, connection errors, unparsable bodies) have no
/// errcode; [`WechatError::class`] classifies them [`ErrorClass::Transient`].
pub const fn classify(errcode: i64) -> ErrorClass {
    match errcode {
        0 => ErrorClass::Ok,
        // -1: system busy; -1000: system error. Both are WeChat saying "not now".
        -1 | -1000 => ErrorClass::Transient,
        // 40014 invalid token, 42001 token expired, 40001 invalid credential, 41001 token missing.
        40014 | 42001 | 40001 | 41001 => ErrorClass::Token,
        40097 | 40101 | 43002 | 44002 | 47001 | 85088 => ErrorClass::Permanent,
        45009 => ErrorClass::Quota,
        // Unknown codes are dead at once: retrying what we do not understand only makes a storm.
        _ => ErrorClass::Permanent,
    }
}

/// Whether an errcode from `api_component_token` is a configuration problem (IP whitelist,
/// ticket, secret) rather than a passing failure. The token owner must not loop on these: an
/// operator has to fix the setup.
pub const fn is_token_config_error(errcode: i64) -> bool {
    // 61004 IP not whitelisted; 61005/61006 ticket expired/invalid; 40001/40125/41004 bad or
    // missing secret.
    matches!(errcode, 61004 | 61005 | 61006 | 40001 | 40125 | 41004)
}

/// A failed WeChat API call. Every variant names the endpoint; none carries the URL or the
/// access token (the token is a query parameter, so reqwest errors are stripped of their URL).
#[derive(Debug, thiserror::Error)]
pub enum WechatError {
    /// WeChat answered with a non-zero `errcode`.
    #[error("{endpoint}: WeChat answered errcode {errcode} ({errmsg})")]
    Api {
        /// The call that failed.
        endpoint: Endpoint,
        /// WeChat's error code; see [`classify`].
        errcode: i64,
        /// WeChat's message, as sent.
        errmsg: String,
    },
    /// The HTTP status was not 2xx (a gateway error, or a redirect, which the client never
    /// follows because a redirect would carry the token elsewhere).
    #[error("{endpoint}: HTTP status {status}")]
    HttpStatus {
        /// The call that failed.
        endpoint: Endpoint,
        /// The status code.
        status: u16,
    },
    /// No complete answer within the request timeout, after the request may have been sent.
    #[error("{endpoint}: no complete answer within {timeout:?}")]
    Timeout {
        /// The call that failed.
        endpoint: Endpoint,
        /// The client's request timeout.
        timeout: Duration,
    },
    /// The connection could not be established (refused, DNS, TLS, connect timeout): the
    /// request never reached WeChat.
    #[error("{endpoint}: could not connect")]
    Connect {
        /// The call that failed.
        endpoint: Endpoint,
        /// The transport error, without its URL.
        #[source]
        source: reqwest::Error,
    },
    /// The request failed after the connection was established, before a response arrived
    /// (e.g. the peer closed the connection).
    #[error("{endpoint}: the request failed before a response arrived")]
    Send {
        /// The call that failed.
        endpoint: Endpoint,
        /// The transport error, without its URL.
        #[source]
        source: reqwest::Error,
    },
    /// The connection failed while the response body was read (reset mid-response).
    #[error("{endpoint}: the connection failed while reading the response")]
    Body {
        /// The call that failed.
        endpoint: Endpoint,
        /// The transport error, without its URL.
        #[source]
        source: reqwest::Error,
    },
    /// The body is not the JSON WeChat documents.
    #[error("{endpoint}: unparsable response body")]
    Decode {
        /// The call that failed.
        endpoint: Endpoint,
        /// What serde_json found wrong.
        #[source]
        source: serde_json::Error,
    },
    /// The body is larger than [`MAX_RESPONSE_BYTES`](super::MAX_RESPONSE_BYTES); reading
    /// stopped at the limit.
    #[error("{endpoint}: response body larger than {limit} bytes")]
    TooLarge {
        /// The call that failed.
        endpoint: Endpoint,
        /// The limit in bytes.
        limit: usize,
    },
}

impl WechatError {
    /// The endpoint whose call failed.
    pub fn endpoint(&self) -> Endpoint {
        match self {
            WechatError::Api { endpoint, .. }
            | WechatError::HttpStatus { endpoint, .. }
            | WechatError::Timeout { endpoint, .. }
            | WechatError::Connect { endpoint, .. }
            | WechatError::Send { endpoint, .. }
            | WechatError::Body { endpoint, .. }
            | WechatError::Decode { endpoint, .. }
            | WechatError::TooLarge { endpoint, .. } => *endpoint,
        }
    }

    /// WeChat's errcode, if WeChat answered with one.
    pub fn errcode(&self) -> Option<i64> {
        match self {
            WechatError::Api { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }

    /// The class of this error: [`classify`] for an errcode, otherwise
    /// [`ErrorClass::Transient`] for every transport outcome.
    pub fn class(&self) -> ErrorClass {
        match self {
            WechatError::Api { errcode, .. } => classify(*errcode),
            _ => ErrorClass::Transient,
        }
    }

    /// Whether the request may have reached WeChat and been applied although no answer was
    /// read: a timeout, a failure after sending, a reset mid-response, a 5xx, or a body that
    /// could not be read whole. `false` when WeChat answered with an errcode, when the
    /// connection was never established, and for statuses other than 5xx.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            WechatError::Api { .. } | WechatError::Connect { .. } => false,
            WechatError::HttpStatus { status, .. } => *status >= 500,
            WechatError::Timeout { .. }
            | WechatError::Send { .. }
            | WechatError::Body { .. }
            | WechatError::Decode { .. }
            | WechatError::TooLarge { .. } => true,
        }
    }

    /// Whether this is a token fetch errcode that means the setup is wrong
    /// (see [`is_token_config_error`]).
    pub fn is_token_config_error(&self) -> bool {
        matches!(self, WechatError::Api { endpoint: Endpoint::ComponentToken, errcode, .. }
            if is_token_config_error(*errcode))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test per row of the errcode table.

    #[test]
    fn errcode_zero_is_ok() {
        assert_eq!(classify(0), ErrorClass::Ok);
    }

    #[test]
    fn system_busy_and_system_error_are_transient() {
        assert_eq!(classify(-1), ErrorClass::Transient);
        assert_eq!(classify(-1000), ErrorClass::Transient);
    }

    #[test]
    fn transport_failures_are_transient() {
        let errors = [
            WechatError::HttpStatus {
                endpoint: Endpoint::ShareEnv,
                status: 502,
            },
            WechatError::Timeout {
                endpoint: Endpoint::ShareEnv,
                timeout: Duration::from_secs(1),
            },
            WechatError::TooLarge {
                endpoint: Endpoint::ShareEnv,
                limit: 1,
            },
            WechatError::Decode {
                endpoint: Endpoint::ShareEnv,
                source: serde_json::from_str::<u8>("{").unwrap_err(),
            },
        ];
        for e in errors {
            assert_eq!(e.class(), ErrorClass::Transient, "{e}");
        }
    }

    #[test]
    fn token_errcodes_are_token_errors() {
        for code in [40014, 42001, 40001, 41001] {
            assert_eq!(classify(code), ErrorClass::Token, "{code}");
        }
    }

    #[test]
    fn listed_permanent_errcodes_are_permanent() {
        for code in [40097, 40101, 43002, 44002, 47001, 85088] {
            assert_eq!(classify(code), ErrorClass::Permanent, "{code}");
        }
    }

    #[test]
    fn quota_spent_is_quota() {
        assert_eq!(classify(45009), ErrorClass::Quota);
    }

    #[test]
    fn unknown_errcodes_are_permanent() {
        for code in [1, -2, 40002, 61005, 99999, i64::MAX, i64::MIN] {
            assert_eq!(classify(code), ErrorClass::Permanent, "{code}");
        }
    }

    #[test]
    fn an_api_error_takes_the_class_of_its_errcode() {
        let e = WechatError::Api {
            endpoint: Endpoint::ShareEnv,
            errcode: 42001,
            errmsg: "x".into(),
        };
        assert_eq!(e.class(), ErrorClass::Token);
        assert_eq!(e.errcode(), Some(42001));
        assert!(!e.outcome_unknown());
    }

    #[test]
    fn token_config_errors_are_recognised_only_for_the_token_endpoint() {
        for code in [61004, 61005, 61006, 40001, 40125, 41004] {
            assert!(is_token_config_error(code), "{code}");
        }
        for code in [0, -1, 42001, 40014, 45009] {
            assert!(!is_token_config_error(code), "{code}");
        }
        let fetch = WechatError::Api {
            endpoint: Endpoint::ComponentToken,
            errcode: 61005,
            errmsg: "ticket expired".into(),
        };
        assert!(fetch.is_token_config_error());
        let share = WechatError::Api {
            endpoint: Endpoint::ShareEnv,
            errcode: 40001,
            errmsg: "x".into(),
        };
        assert!(!share.is_token_config_error());
    }

    #[test]
    fn only_answers_that_may_have_been_applied_are_outcome_unknown() {
        let five = WechatError::HttpStatus {
            endpoint: Endpoint::ShareEnv,
            status: 503,
        };
        let four = WechatError::HttpStatus {
            endpoint: Endpoint::ShareEnv,
            status: 404,
        };
        let timeout = WechatError::Timeout {
            endpoint: Endpoint::ShareEnv,
            timeout: Duration::ZERO,
        };
        assert!(five.outcome_unknown());
        assert!(!four.outcome_unknown());
        assert!(timeout.outcome_unknown());
    }
}
