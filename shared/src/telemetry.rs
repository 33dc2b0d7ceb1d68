//! Logging set-up shared by the binaries: one `tracing` subscriber writing to stderr, filtered by
//! `ENVSHARE_LOG` and formatted as text or JSON (`ENVSHARE_LOG_FORMAT`).
//!
//! Logs go to stderr so that a command's stdout stays machine-readable (`--json` output, the
//! benchmark's last JSON line).
//!
//! Text lines are coloured only when stderr is a terminal and `NO_COLOR` is unset or empty
//! (<https://no-color.org>): `envshare-worker 2> worker.log`, a pipe or a container's log
//! collector get plain text. JSON lines never carry colour codes.

use std::ffi::OsStr;
use std::fmt;
use std::io::IsTerminal as _;
use std::str::FromStr;
use std::sync::Once;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    /// The setting's spelling: `text` or `json`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A log format other than `text` or `json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log format {0:?}: expected `text` or `json`")]
pub struct UnknownLogFormat(String);

impl FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(UnknownLogFormat(other.chars().take(40).collect())),
        }
    }
}

/// Why logging could not be set up. Neither case is retryable: both are fixed by the caller.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The filter (the value of `ENVSHARE_LOG`) does not parse.
    #[error("setting up logging: ENVSHARE_LOG={filter:?} is not a valid tracing filter: {reason}")]
    BadFilter {
        /// The rejected filter.
        filter: String,
        /// The parser's explanation.
        reason: String,
    },
    /// A global subscriber was installed before (`init` runs once per process).
    #[error("setting up logging: a global tracing subscriber is already installed")]
    AlreadyInitialized,
}

/// Parses a tracing filter such as `info`, `envshare=debug,apalis=warn`.
pub fn parse_filter(log: &str) -> Result<EnvFilter, TelemetryError> {
    // tracing-subscriber's directive parser panics on some non-ASCII input (it slices at byte
    // offsets), and target, span and level names are ASCII anyway.
    if !log.is_ascii() {
        return Err(TelemetryError::BadFilter {
            filter: log.chars().take(200).collect(),
            reason: "only ASCII is allowed (e.g. `info` or `info,envshare=debug`)".to_owned(),
        });
    }
    EnvFilter::try_new(log).map_err(|e| TelemetryError::BadFilter {
        filter: log.chars().take(200).collect(),
        reason: e.to_string(),
    })
}

/// Whether log lines written to a stream get ANSI colours: only when the stream is a terminal
/// and `no_color` (the value of `NO_COLOR`) is unset or empty. Any non-empty value, even `0`,
/// turns colour off, as <https://no-color.org> asks.
pub fn use_colour(is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// Installs the process-wide subscriber: `log` is a tracing filter (the value of `ENVSHARE_LOG`),
/// output goes to stderr in `format`. Call once, early in `main`.
///
/// Text lines are coloured only when stderr is a terminal and `NO_COLOR` is unset or empty
/// (see [`use_colour`]); JSON lines are never coloured.
pub fn init(log: &str, format: LogFormat) -> Result<(), TelemetryError> {
    let filter = parse_filter(log)?;
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Text => {
            let colour = use_colour(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            );
            registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_ansi(colour)
                        .with_writer(std::io::stderr),
                )
                .try_init()
        }
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    // One plain object per line, whatever the destination.
                    .with_ansi(false)
                    // Span fields (job_id, batch_id, attempt) at the top of each line, where log
                    // queries look for them.
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    result.map_err(|_| TelemetryError::AlreadyInitialized)
}

/// Turns on logging in tests when `TEST_LOG` is set (its value is the filter; `1` or `true` mean
/// `debug`). Output goes through the test harness's capture, so it shows only for failing tests
/// (or with `--nocapture`). Safe to call from every test: only the first call acts.
pub fn init_for_tests() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Ok(value) = std::env::var("TEST_LOG") else {
            return;
        };
        let filter = match value.as_str() {
            "" | "1" | "true" => "debug",
            other => other,
        };
        let Ok(filter) = parse_filter(filter) else {
            eprintln!("TEST_LOG={value:?} is not a valid tracing filter; test logging stays off");
            return;
        };
        // Another test framework may have installed a subscriber first; theirs wins.
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(tracing_subscriber::fmt::layer().with_test_writer())
            .try_init();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_formats_parse_from_their_setting_spelling() {
        assert_eq!("text".parse::<LogFormat>().unwrap(), LogFormat::Text);
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert_eq!(LogFormat::default(), LogFormat::Text);
        let err = "JSON".parse::<LogFormat>().unwrap_err().to_string();
        assert!(err.contains("expected `text` or `json`"), "{err}");
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(false, None), "a file, a pipe, a log collector");
        assert!(!use_colour(false, Some(OsStr::new(""))));
        for value in ["1", "0", "true", "no"] {
            assert!(
                !use_colour(true, Some(OsStr::new(value))),
                "NO_COLOR={value}"
            );
        }
    }

    #[test]
    fn a_bad_filter_is_reported_with_the_variable_name() {
        let err = parse_filter("envshare=loud").unwrap_err().to_string();
        assert!(err.contains("ENVSHARE_LOG=\"envshare=loud\""), "{err}");
        assert!(parse_filter("info,envshare=debug").is_ok());
    }

    #[test]
    fn a_non_ascii_filter_is_refused_instead_of_panicking() {
        // The input the 100,000-case settings property found: it panicked inside
        // tracing-subscriber before this check.
        let err = parse_filter("\u{b}A\u{a1}=").unwrap_err().to_string();
        assert!(
            err.contains("ENVSHARE_LOG") && err.contains("ASCII"),
            "{err}"
        );
    }

    #[test]
    fn init_with_a_bad_filter_fails_before_installing_anything() {
        // Only the failing path is tested here: a global subscriber installed by a unit test
        // would change logging for every other test in this binary.
        assert!(matches!(
            init("=", LogFormat::Json),
            Err(TelemetryError::BadFilter { .. })
        ));
    }
}
