//! The console's layout and small formatting helpers (maud templates: every value is escaped).

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::auth::CSRF_FIELD;

/// Which navigation entry a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Nav {
    Overview,
    Batches,
    Dead,
    Events,
    Lookup,
    None,
}

/// A whole page: head, navigation (with the sign-out form when `csrf` is given), `body`.
/// `refresh_s` reloads the page every so many seconds (a batch still running).
pub(super) fn page(
    title: &str,
    nav: Nav,
    csrf: Option<&str>,
    refresh_s: Option<u32>,
    body: Markup,
) -> Markup {
    let item = |n: Nav, href: &str, label: &str| {
        html! { a href=(href) aria-current=[(n == nav).then_some("page")] { (label) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(s) = refresh_s { meta http-equiv="refresh" content=(s); }
                title { (title) " · envshare" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body {
                header {
                    nav {
                        strong { "envshare" }
                        @if csrf.is_some() {
                            (item(Nav::Overview, "/", "Overview"))
                            (item(Nav::Batches, "/batches", "Batches"))
                            (item(Nav::Dead, "/dead", "Dead jobs"))
                            (item(Nav::Events, "/events", "Events"))
                            form.lookup method="get" action="/lookup" {
                                input type="search" name="q" placeholder="job id or appid"
                                    aria-label="job id or appid"
                                    class=[(nav == Nav::Lookup).then_some("current")];
                            }
                        }
                        @if let Some(t) = csrf {
                            form.logout method="post" action="/logout" {
                                (csrf_input(t))
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// The hidden CSRF field of a state-changing form.
pub(super) fn csrf_input(token: &str) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(token); }
}

/// `ms` since the epoch as RFC 3339 UTC, without milliseconds.
pub(super) fn time(ms: u64) -> String {
    crate::clock::iso8601_seconds(ms)
}

/// A duration in ms as `42s`, `3m05s`, `2h10m`, `3d04h`.
pub(super) fn span(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// `n` with thousands separators (`100,000`).
pub(super) fn num(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A progress bar of `done` out of `total`, with its percentage.
pub(super) fn progress(done: u64, total: u64) -> Markup {
    let pct = (done * 100).checked_div(total).unwrap_or(100);
    html! {
        span.progress {
            progress value=(done) max=(total.max(1)) {}
            " " span.pct { (pct) " %" }
        }
    }
}

/// A form field's value in a query string (percent-encoded).
pub(super) fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Text shown as-is inside `<code>`: already escaped by maud, spelled out for readers.
pub(super) fn code(s: &str) -> Markup {
    html! { code { (s) } }
}

/// A non-breaking dash for empty cells.
pub(super) fn dash() -> Markup {
    PreEscaped("&ndash;".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_spans_and_queries_read_well() {
        assert_eq!(num(100_000), "100,000");
        assert_eq!(num(999), "999");
        assert_eq!(num(1_000), "1,000");
        assert_eq!(span(185_000), "3m05s");
        assert_eq!(span(90_000_000), "1d01h");
        assert_eq!(enc("a b&c"), "a%20b%26c");
        assert_eq!(time(1_764_460_800_123), "2025-11-30T00:00:00Z");
    }

    #[test]
    fn values_are_escaped() {
        let m = page("<x>", Nav::None, Some("t\"k"), None, code("<script>"));
        let s = m.into_string();
        assert!(!s.contains("<script>alert") && s.contains("&lt;script&gt;"));
        assert!(s.contains("&lt;x&gt;") && s.contains("t&quot;k"));
    }
}
