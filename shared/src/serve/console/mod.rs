//! The web console of `envshare serve`: server-rendered HTML at `/` over the same store calls
//! as the CLI (`status`, `batch`, `dead`, `job`, `find`, `pause`), one CSS file and one small
//! script (the live event feed's `EventSource`), both served from the binary.
//!
//! - Sign-in ([`auth`]): the API token once, then a signed HttpOnly, SameSite=Strict cookie;
//!   every state-changing form carries a CSRF token (403 without it, nothing changes).
//! - Every console response carries a Content-Security-Policy without inline script
//!   (`script-src 'self'`) and `frame-ancestors 'none'`, `X-Content-Type-Options: nosniff`,
//!   `Referrer-Policy: no-referrer`, `X-Frame-Options: DENY` and `Cache-Control: no-store`.
//! - Pages read a page of rows at a time (batches 50, results 100, dead jobs 50), so they stay
//!   fast with thousands of batches and 100,000-appid batches; the CSV download streams.
//!
//! No secret (API token, access token, ticket, app secret) is ever read by a page: the token and
//! the ticket show as their expiry and age.

mod auth;
mod events;
mod pages;
mod view;

use axum::Router;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::ServeParts;
use crate::config::Settings;

/// The console's policy: scripts, styles and connections from this origin only, no inline
/// script or style, no framing, forms post only here.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; \
    frame-ancestors 'none'";

/// What the console needs from the settings, fixed at start.
pub(crate) struct Console {
    auth: auth::Auth,
    /// `ENVSHARE_RATE_LIMIT` (calls per second, all workers), if set.
    rate_limit: Option<f64>,
    /// Where workers take the token from (`component`, `fixed`, `redis`, `http`, `none`).
    token_source: &'static str,
}

impl Console {
    /// The console of `settings` (its sign-in key derives from `ENVSHARE_API_TOKEN`).
    pub(crate) fn new(settings: &Settings) -> Self {
        Self {
            auth: auth::Auth::new(settings.api_token.as_ref()),
            rate_limit: settings.rate_limit_per_sec(),
            token_source: settings.token_mode().name(),
        }
    }
}

/// The console's routes, every response with the security headers.
pub(super) fn routes() -> Router<ServeParts> {
    Router::new()
        .route("/", get(pages::overview))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/pause", post(pages::pause))
        .route("/resume", post(pages::resume))
        .route("/batches", get(pages::batches))
        .route("/batches/{id}", get(pages::batch))
        .route("/batches/{id}/results.csv", get(pages::batch_csv))
        .route("/dead", get(pages::dead))
        .route("/dead/retry", post(pages::dead_retry))
        .route("/dead/purge", post(pages::dead_purge))
        .route("/jobs/{id}", get(pages::job))
        .route("/lookup", get(pages::lookup))
        .route("/events", get(events::page))
        .route("/events/stream", get(events::stream))
        .route("/assets/console.css", get(css))
        .route("/assets/console.js", get(js))
        .layer(axum::middleware::map_response(security_headers))
}

async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

async fn css() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    )
}

async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    )
}
