//! Logging and tracing set-up shared by the binaries: one `tracing` subscriber writing to stderr,
//! filtered by `ENVSHARE_LOG` and formatted as text or JSON (`ENVSHARE_LOG_FORMAT`), and, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, an
//! OpenTelemetry layer exporting spans over OTLP/HTTP (protobuf).
//!
//! Traces follow a job across processes: the producer's span context travels in the job's
//! payload as a W3C `traceparent` ([`current_traceparent`]), and the worker's attempt span takes
//! it as its parent ([`set_remote_parent`]). With tracing off nothing is exported, no
//! `traceparent` is written and the checks cost one atomic load.
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
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::Targets;
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
    /// The OpenTelemetry settings ask for something envshare does not do.
    #[error("setting up traces: {0}")]
    BadTraceSettings(String),
    /// The OTLP exporter could not be built (its HTTP client, a malformed endpoint).
    #[error("setting up traces: the OTLP exporter could not be built: {0}")]
    Exporter(String),
}

/// Whether spans are exported (set once by [`init`]). Read before any work for traces, so
/// tracing off costs one relaxed load.
static TRACING: AtomicBool = AtomicBool::new(false);

/// Whether this process exports traces (`OTEL_EXPORTER_OTLP_ENDPOINT` was set at start-up).
pub fn tracing_enabled() -> bool {
    TRACING.load(Ordering::Relaxed)
}

/// Whether the OpenTelemetry variables ask for traces, read through `var` (the process
/// environment in [`init`]): `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
/// `OTEL_EXPORTER_OTLP_ENDPOINT` set and not empty, unless `OTEL_SDK_DISABLED=true` or
/// `OTEL_TRACES_EXPORTER=none`. Only OTLP over HTTP with protobuf is spoken: an
/// `OTEL_EXPORTER_OTLP_PROTOCOL` / `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` other than
/// `http/protobuf` is an error, and so is an `OTEL_TRACES_EXPORTER` other than `otlp`/`none`.
pub fn traces_requested(var: impl Fn(&str) -> Option<String>) -> Result<bool, TelemetryError> {
    let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(false);
    }
    match set("OTEL_TRACES_EXPORTER").map(|v| v.trim().to_ascii_lowercase()) {
        Some(v) if v == "none" => return Ok(false),
        None => {}
        Some(v) if v == "otlp" => {}
        Some(v) => {
            return Err(TelemetryError::BadTraceSettings(format!(
                "OTEL_TRACES_EXPORTER={:?} is not supported: use `otlp` (or `none` to turn traces off)",
                v.chars().take(40).collect::<String>()
            )));
        }
    }
    let wanted = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
        || set("OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
    if wanted {
        for name in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(p) = set(name)
                && p.trim() != "http/protobuf"
            {
                return Err(TelemetryError::BadTraceSettings(format!(
                    "{name}={:?} is not supported: envshare exports OTLP over HTTP with protobuf \
                     (`http/protobuf`); point OTEL_EXPORTER_OTLP_ENDPOINT at the collector's \
                     OTLP/HTTP port (usually 4318)",
                    p.chars().take(40).collect::<String>()
                )));
            }
        }
    }
    Ok(wanted)
}

/// What [`init`] returns: keep it alive for the life of the process. Dropping it (or
/// [`Telemetry::shutdown`]) exports the spans still buffered, so a short command such as
/// `envshare import` loses none.
#[must_use = "dropping the guard at once stops the trace export"]
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn traces_enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the buffered spans and stops the exporter (waits at most the exporter's timeout,
    /// `OTEL_EXPORTER_OTLP_TIMEOUT`, 10 s by default). Idempotent.
    pub fn shutdown(&mut self) {
        if let Some(provider) = self.provider.take() {
            TRACING.store(false, Ordering::Relaxed);
            if let Err(e) = provider.shutdown() {
                // The subscriber is still installed, but the exporter is gone: say it on stderr.
                eprintln!("envshare: exporting the last spans failed: {e}");
            }
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The tracer provider exporting to the OTLP endpoint of the environment, with `service.name`
/// from `OTEL_SERVICE_NAME` or `service`.
fn tracer_provider(service: &str) -> Result<SdkTracerProvider, TelemetryError> {
    // The exporter reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS and _TIMEOUT itself.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| service.to_owned());
    // OTEL_RESOURCE_ATTRIBUTES is read by the resource builder; OTEL_TRACES_SAMPLER(_ARG) by
    // the provider's default configuration.
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(name)
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The W3C `traceparent` of the current span (`00-{trace id}-{span id}-{flags}`), or `None`
/// when tracing is off or no span is being traced. Written into the jobs an enqueue creates.
pub fn current_traceparent() -> Option<String> {
    if !tracing_enabled() {
        return None;
    }
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

/// The trace id (32 lowercase hex digits) of the current span, or `None` when tracing is off.
pub fn current_trace_id() -> Option<String> {
    current_traceparent().map(|tp| tp[3..35].to_owned())
}

/// The trace id (32 lowercase hex digits) of a W3C `traceparent`, if it is well formed.
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    parse_traceparent(traceparent).map(|_| &traceparent[3..35])
}

/// Parses a W3C `traceparent` (version `00`): trace id, span id, flags. All-zero ids, other
/// versions and malformed values are refused.
fn parse_traceparent(tp: &str) -> Option<(TraceId, SpanId, TraceFlags)> {
    let b = tp.as_bytes();
    if b.len() != 55 || &tp[..3] != "00-" || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let hex = |s: &str| {
        s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    };
    let (trace, span, flags) = (&tp[3..35], &tp[36..52], &tp[53..55]);
    if !(hex(trace) && hex(span) && hex(flags)) {
        return None;
    }
    let trace = TraceId::from_hex(trace).ok()?;
    let span = SpanId::from_hex(span).ok()?;
    let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()?);
    (trace != TraceId::INVALID && span != SpanId::INVALID).then_some((trace, span, flags))
}

/// Makes the span that `traceparent` names (another process's, e.g. the import that enqueued
/// a job) the parent of `span`. Call before `span` is first entered. Does nothing when tracing
/// is off or `traceparent` is absent or malformed.
pub fn set_remote_parent(span: &tracing::Span, traceparent: Option<&str>) {
    if !tracing_enabled() {
        return;
    }
    let Some((trace, id, flags)) = traceparent.and_then(parse_traceparent) else {
        return;
    };
    let sc = SpanContext::new(trace, id, flags, true, TraceState::default());
    let cx = opentelemetry::Context::new().with_remote_span_context(sc);
    // Fails only without the OpenTelemetry layer, which tracing_enabled() rules out.
    let _ = span.set_parent(cx);
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
/// output goes to stderr in `format`. Call once, early in `main`, and keep the returned guard
/// until the process ends.
///
/// Text lines are coloured only when stderr is a terminal and `NO_COLOR` is unset or empty
/// (see [`use_colour`]); JSON lines are never coloured.
///
/// When the OpenTelemetry variables ask for traces ([`traces_requested`]), envshare's spans at
/// level INFO and above are also exported over OTLP/HTTP, as service `service` unless
/// `OTEL_SERVICE_NAME` names another; `ENVSHARE_LOG` filters only the log lines.
pub fn init(log: &str, format: LogFormat, service: &str) -> Result<Telemetry, TelemetryError> {
    let filter = parse_filter(log)?;
    let provider = if traces_requested(|name| std::env::var(name).ok())? {
        Some(tracer_provider(service)?)
    } else {
        None
    };
    // Only envshare's own spans (the binaries' targets start with `envshare` too): no spans of
    // the libraries underneath, whatever ENVSHARE_LOG says.
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("envshare"))
            .with_threads(false)
            .with_filter(Targets::new().with_target("envshare", tracing::Level::INFO))
    });
    let registry = tracing_subscriber::registry().with(otel);
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
                        .with_writer(std::io::stderr)
                        .with_filter(filter),
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
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .try_init(),
    };
    result.map_err(|_| TelemetryError::AlreadyInitialized)?;
    TRACING.store(provider.is_some(), Ordering::Relaxed);
    Ok(Telemetry { provider })
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

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn traces_are_off_unless_an_otlp_endpoint_is_set() {
        assert!(!traces_requested(env(&[])).unwrap());
        assert!(!traces_requested(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])).unwrap());
        assert!(
            traces_requested(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")])).unwrap()
        );
        assert!(
            traces_requested(env(&[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://c:4318/v1/traces"
            )]))
            .unwrap()
        );
        let on = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
        assert!(!traces_requested(env(&[on, ("OTEL_SDK_DISABLED", "TRUE")])).unwrap());
        assert!(!traces_requested(env(&[on, ("OTEL_TRACES_EXPORTER", "none")])).unwrap());
        assert!(traces_requested(env(&[on, ("OTEL_TRACES_EXPORTER", "otlp")])).unwrap());
        assert!(
            traces_requested(env(&[on, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")])).unwrap()
        );
    }

    #[test]
    fn an_unsupported_protocol_or_exporter_is_refused_with_the_fix() {
        let on = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317");
        let err = traces_requested(env(&[on, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("OTEL_EXPORTER_OTLP_PROTOCOL=\"grpc\"") && err.contains("4318"),
            "{err}"
        );
        let err = traces_requested(env(&[on, ("OTEL_TRACES_EXPORTER", "zipkin")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("use `otlp`"), "{err}");
        // Without an endpoint the protocol does not matter: traces stay off.
        assert!(!traces_requested(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])).unwrap());
    }

    #[test]
    fn traceparents_parse_strictly() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id_of(tp), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        let (trace, span, flags) = parse_traceparent(tp).unwrap();
        assert_eq!(trace.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span.to_string(), "00f067aa0ba902b7");
        assert!(flags.is_sampled());
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        ] {
            assert_eq!(trace_id_of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn with_tracing_off_no_traceparent_is_made() {
        // No OpenTelemetry layer in unit tests: the enqueue writes no `tp` field.
        let span = tracing::info_span!("x");
        let _in = span.enter();
        assert_eq!(current_traceparent(), None);
        assert_eq!(current_trace_id(), None);
    }

    #[test]
    fn init_with_a_bad_filter_fails_before_installing_anything() {
        // Only the failing path is tested here: a global subscriber installed by a unit test
        // would change logging for every other test in this binary.
        assert!(matches!(
            init("=", LogFormat::Json, "envshare"),
            Err(TelemetryError::BadFilter { .. })
        ));
    }
}
