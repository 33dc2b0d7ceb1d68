//! Progress output on stderr: an indicatif bar on a terminal, a plain line now and then
//! otherwise (logs, CI), nothing with `--json`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often plain progress lines are printed at most.
const PLAIN_EVERY: Duration = Duration::from_secs(2);

/// Where progress goes.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    terminal: bool,
    quiet: bool,
}

impl Progress {
    /// Progress on stderr; `quiet` (for `--json`) prints nothing but errors.
    pub fn new(quiet: bool) -> Self {
        Self {
            terminal: !quiet && std::io::stderr().is_terminal(),
            quiet,
        }
    }

    /// A byte-counting bar for reading `total` bytes; hidden when not on a terminal.
    pub fn bytes(&self, label: &'static str, total: u64) -> ProgressBar {
        if !self.terminal {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(label);
        bar
    }

    /// A bar counting `total` items (jobs of a batch); hidden when not on a terminal.
    pub fn items(&self, label: &'static str, total: u64) -> ProgressBar {
        if !self.terminal {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(label);
        bar
    }

    /// A line of progress on stderr (always, unless quiet).
    pub fn note(&self, line: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", line.as_ref());
        }
    }

    /// Whether a bar is drawn (else plain lines are printed).
    pub fn is_terminal(&self) -> bool {
        self.terminal
    }

    /// A throttle for plain progress lines.
    pub fn ticker(&self) -> Ticker {
        Ticker {
            enabled: !self.quiet && !self.terminal,
            last: Instant::now(),
        }
    }
}

/// Says when the next plain progress line is due.
#[derive(Debug)]
pub struct Ticker {
    enabled: bool,
    last: Instant,
}

impl Ticker {
    /// Prints `line()` if plain lines are on and the last one is at least two seconds old.
    pub fn tick(&mut self, line: impl FnOnce() -> String) {
        if self.enabled && self.last.elapsed() >= PLAIN_EVERY {
            self.last = Instant::now();
            eprintln!("{}", line());
        }
    }
}
