//! Console sign-in: the API token once, then a signed session cookie; CSRF tokens bound to it.
//!
//! Nothing is stored on the server, so every replica of `envshare serve` accepts the cookie any
//! other one issued. The cookie is `EXPIRY.NONCE.MAC`: `EXPIRY` in unix seconds, `NONCE` 16
//! random bytes (hex), `MAC` the HMAC-SHA256 of both under a key derived from the API token.
//! Changing `ENVSHARE_API_TOKEN` therefore signs every session out. A form's CSRF token is the
//! HMAC of the session's nonce under the same key: the server recomputes it, and a form posted
//! without it (or with another session's) is refused with 403.
//!
//! Without `ENVSHARE_API_TOKEN` (serve then listens on loopback only) the key is random per
//! process and `/login` hands a session out without asking: the console is as open as the
//! loopback address, and its forms still carry CSRF tokens.

use axum::extract::FromRequestParts;
use axum::http::header::COOKIE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::serve::ServeParts;

/// The session cookie's name.
pub(super) const COOKIE_NAME: &str = "envshare_session";
/// How long a session lasts (12 h); then the token is asked again.
pub(super) const SESSION_SECS: u64 = 12 * 3600;
/// The form field that carries the CSRF token.
pub(super) const CSRF_FIELD: &str = "csrf";

type HmacSha256 = Hmac<Sha256>;

/// The console's signing key and, when configured, the hash of the API token.
pub(super) struct Auth {
    key: [u8; 32],
    /// SHA-256 of the API token: compared in constant time, whatever the length typed.
    token_hash: Option<[u8; 32]>,
}

impl Auth {
    /// Keys derived from `token`, or random ones (open console) without it.
    pub(super) fn new(token: Option<&SecretString>) -> Self {
        match token {
            Some(t) => {
                let t = t.expose_secret().as_bytes();
                let mut mac = HmacSha256::new_from_slice(b"envshare console session v1")
                    .expect("HMAC takes any key length");
                mac.update(t);
                Self {
                    key: mac.finalize().into_bytes().into(),
                    token_hash: Some(Sha256::digest(t).into()),
                }
            }
            None => {
                let mut key = [0; 32];
                rand::rng().fill_bytes(&mut key);
                Self {
                    key,
                    token_hash: None,
                }
            }
        }
    }

    /// No API token is configured: `/login` signs anyone in.
    pub(super) fn is_open(&self) -> bool {
        self.token_hash.is_none()
    }

    /// Whether `given` is the API token (constant time).
    pub(super) fn token_matches(&self, given: &str) -> bool {
        match &self.token_hash {
            Some(h) => {
                let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
                bool::from(given.ct_eq(h))
            }
            None => true,
        }
    }

    fn mac(&self, parts: &[&str]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        for p in parts {
            mac.update(p.as_bytes());
            mac.update(b"|");
        }
        mac
    }

    /// A new session cookie value, valid until `now_s + SESSION_SECS`.
    pub(super) fn issue(&self, now_s: u64) -> String {
        let mut nonce = [0u8; 16];
        rand::rng().fill_bytes(&mut nonce);
        let exp = (now_s + SESSION_SECS).to_string();
        let nonce = hex::encode(nonce);
        let mac = hex::encode(self.mac(&["s", &exp, &nonce]).finalize().into_bytes());
        format!("{exp}.{nonce}.{mac}")
    }

    /// The nonce of a valid, unexpired session cookie value.
    pub(super) fn verify<'a>(&self, value: &'a str, now_s: u64) -> Option<&'a str> {
        let mut it = value.splitn(3, '.');
        let (exp, nonce, mac) = (it.next()?, it.next()?, it.next()?);
        let mac = hex::decode(mac).ok()?;
        self.mac(&["s", exp, nonce]).verify_slice(&mac).ok()?;
        (exp.parse::<u64>().ok()? > now_s).then_some(nonce)
    }

    /// The CSRF token of the session with `nonce`.
    pub(super) fn csrf(&self, nonce: &str) -> String {
        hex::encode(self.mac(&["c", nonce]).finalize().into_bytes())
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the request reached the proxy in front of serve over https (`X-Forwarded-Proto`, set
/// by ingress controllers and most proxies); the cookie is then marked `Secure`.
fn behind_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').next().unwrap_or("").trim() == "https")
}

/// The `Set-Cookie` header of a session (`value`), or of its removal (`None`).
pub(super) fn set_cookie(headers: &HeaderMap, value: Option<&str>) -> HeaderValue {
    let secure = if behind_https(headers) {
        "; Secure"
    } else {
        ""
    };
    let v = match value {
        Some(v) => format!(
            "{COOKIE_NAME}={v}; Path=/; Max-Age={SESSION_SECS}; HttpOnly; SameSite=Strict{secure}"
        ),
        None => format!("{COOKIE_NAME}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{secure}"),
    };
    HeaderValue::from_str(&v).expect("a cookie of ASCII")
}

/// A signed-in console user: the extractor every console page takes. Without a valid session
/// the request is sent to `/login`.
pub(super) struct Session {
    /// The CSRF token every form of this session carries.
    pub(super) csrf: String,
}

impl Session {
    /// Whether `form` carries this session's CSRF token (constant time).
    pub(super) fn csrf_ok(&self, form: &[(String, String)]) -> bool {
        form.iter()
            .find(|(k, _)| k == CSRF_FIELD)
            .is_some_and(|(_, v)| bool::from(v.as_bytes().ct_eq(self.csrf.as_bytes())))
    }
}

impl FromRequestParts<ServeParts> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ServeParts,
    ) -> Result<Self, Self::Rejection> {
        let auth = &state.console.auth;
        let now_s = state.queue.now_ms() / 1000;
        match cookie(&parts.headers, COOKIE_NAME).and_then(|c| auth.verify(c, now_s)) {
            Some(nonce) => Ok(Session {
                csrf: auth.csrf(nonce),
            }),
            None => Err(Redirect::to("/login").into_response()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(Some(&SecretString::from("s3cret-token")))
    }

    #[test]
    fn a_session_verifies_until_it_expires_and_not_after_any_change() {
        let a = auth();
        let c = a.issue(1_000);
        let nonce = a.verify(&c, 1_000).expect("fresh session");
        assert_eq!(nonce.len(), 32);
        assert!(a.verify(&c, 1_000 + SESSION_SECS).is_none(), "expired");
        let (exp, rest) = c.split_once('.').unwrap();
        let later = format!("{}.{rest}", exp.parse::<u64>().unwrap() + 1);
        assert!(a.verify(&later, 1_000).is_none(), "expiry moved");
        assert!(a.verify("garbage", 1_000).is_none());
        let other = Auth::new(Some(&SecretString::from("another-token")));
        assert!(other.verify(&c, 1_000).is_none(), "another token's key");
    }

    #[test]
    fn the_token_is_compared_whole_and_csrf_tokens_differ_per_session() {
        let a = auth();
        assert!(a.token_matches("s3cret-token"));
        assert!(!a.token_matches("s3cret-toke"));
        assert!(!a.token_matches(""));
        assert!(!a.is_open());
        let n1 = a.verify(&a.issue(0), 0).unwrap().to_owned();
        let n2 = a.verify(&a.issue(0), 0).unwrap().to_owned();
        assert_ne!(a.csrf(&n1), a.csrf(&n2));
        let s = Session { csrf: a.csrf(&n1) };
        assert!(s.csrf_ok(&[("csrf".into(), a.csrf(&n1))]));
        assert!(!s.csrf_ok(&[("csrf".into(), a.csrf(&n2))]));
        assert!(!s.csrf_ok(&[]));
        assert!(Auth::new(None).is_open());
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_behind_https() {
        let mut h = HeaderMap::new();
        let c = set_cookie(&h, Some("v"));
        let c = c.to_str().unwrap();
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && !c.contains("Secure"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(set_cookie(&h, None).to_str().unwrap().ends_with("; Secure"));
        h.insert(
            COOKIE,
            HeaderValue::from_static("a=1; envshare_session=xyz"),
        );
        assert_eq!(cookie(&h, COOKIE_NAME), Some("xyz"));
    }
}
