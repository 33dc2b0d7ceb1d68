//! Errors a person can act on, and the exit codes: 0 ok, 2 bad input or usage,
//! 1 anything else.

use std::fmt;

use envshare::import::ImportError;

/// Bad input or usage: the command exits with status 2. The message says what and how to fix.
#[derive(Debug)]
pub struct BadInput(pub String);

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// Returns early with a [`BadInput`] error.
macro_rules! bad_input {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::fail::BadInput(format!($($arg)*))))
    };
}
pub(crate) use bad_input;

/// The exit status for an error: 2 when any cause is bad input, 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    let bad = err.chain().any(|e| {
        e.is::<BadInput>()
            || e.is::<envshare::IdError>()
            || e.is::<envshare::config::ConfigError>()
            || e.downcast_ref::<ImportError>()
                .is_some_and(|e| !matches!(e, ImportError::Io(_)))
            || e.downcast_ref::<envshare::telemetry::TelemetryError>()
                .is_some_and(|e| {
                    matches!(
                        e,
                        envshare::telemetry::TelemetryError::BadFilter { .. }
                            | envshare::telemetry::TelemetryError::BadTraceSettings(_)
                    )
                })
    });
    if bad { 2 } else { 1 }
}

/// Prints `error: …` and each cause on its own line to stderr.
pub fn report(err: &anyhow::Error) {
    let mut out = format!("error: {err}");
    let mut last = err.to_string();
    for cause in err.chain().skip(1) {
        // Some errors (redis's I/O errors) repeat their source's message: print it once.
        let text = cause.to_string();
        if text != last {
            out.push_str(&format!("\n  caused by: {text}"));
        }
        last = text;
    }
    eprintln!("{out}");
}

/// The message for a Redis that cannot be reached.
pub fn redis_unreachable(url: &str) -> String {
    let tls = if url.starts_with("rediss") {
        "; over TLS the server's certificate must chain to a trusted CA and name the URL's host: \
         set SSL_CERT_FILE to a PEM file with your CA (docs/configuration.md, Redis over TLS)"
    } else {
        ""
    };
    format!(
        "cannot reach Redis at {}: start it (e.g. `redis-server`), or point ENVSHARE_REDIS_URL \
         (or redis_url in --config FILE) at a running Redis{tls}",
        envshare::config::redact_url(url)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_reaches_a_message() {
        let msg = redis_unreachable("redis://:hunter2@h:1");
        assert!(
            !msg.contains("hunter2") && msg.contains("ENVSHARE_REDIS_URL"),
            "{msg}"
        );
    }

    #[test]
    fn bad_input_anywhere_in_the_chain_exits_2() {
        let e = anyhow::Error::new(BadInput("x".into())).context("outer");
        assert_eq!(exit_code(&e), 2);
        assert_eq!(exit_code(&anyhow::anyhow!("redis down")), 1);
        let io = ImportError::Io(std::io::Error::other("disk"));
        assert_eq!(exit_code(&anyhow::Error::new(io)), 1);
        let empty = ImportError::Empty("", "rows");
        assert_eq!(exit_code(&anyhow::Error::new(empty)), 2);
    }
}
