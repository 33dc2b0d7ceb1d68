//! What the `redis` and `http` token sources share: reading a token value another program wrote,
//! and recognising a token WeChat already rejected (by its SHA-256, so the rejected value itself
//! is not kept around longer than needed).

use std::collections::VecDeque;
use std::sync::Mutex;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// The longest token accepted. WeChat's are about 150 characters.
const MAX_TOKEN_LEN: usize = 2048;

/// How many rejected tokens are remembered.
const REJECTED_KEPT: usize = 8;

/// The SHA-256 of `token`, lowercase hex: what a token service gets as `?stale=` after WeChat
/// rejected `token` (`http` token source).
pub fn sha256_hex(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut hex = String::with_capacity(64);
    for b in digest {
        use std::fmt::Write as _;
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// The tokens WeChat rejected lately (40014, 42001, …), by hash.
#[derive(Default)]
pub(crate) struct Rejected {
    hashes: Mutex<VecDeque<String>>,
}

impl Rejected {
    /// Remembers that WeChat rejected `token`; returns its hash.
    pub(crate) fn add(&self, token: &SecretString) -> String {
        let hash = sha256_hex(token.expose_secret());
        let mut hashes = self.hashes.lock().unwrap_or_else(|e| e.into_inner());
        if !hashes.contains(&hash) {
            if hashes.len() >= REJECTED_KEPT {
                hashes.pop_front();
            }
            hashes.push_back(hash.clone());
        }
        hash
    }

    /// Whether `token` is one WeChat rejected.
    pub(crate) fn contains(&self, token: &SecretString) -> bool {
        let hashes = self.hashes.lock().unwrap_or_else(|e| e.into_inner());
        !hashes.is_empty() && hashes.contains(&sha256_hex(token.expose_secret()))
    }
}

/// A token value as a token service or an SDK wrote it.
pub(crate) struct ParsedToken {
    pub(crate) token: SecretString,
    /// When the value says the token expires (Unix ms), if it says.
    pub(crate) expires_at_ms: Option<u64>,
}

/// Why a stored value is not a token. Messages describe the shape, never the content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseError {
    /// Not UTF-8 text (e.g. a Java-serialized object).
    #[error(
        "the value is not text (a Java-serialized object? configure the SDK's Redis template \
         with a string serializer)"
    )]
    NotText,
    /// Empty, or only whitespace.
    #[error("the value is empty")]
    Empty,
    /// A JSON object without a `component_access_token` string.
    #[error("the value is a JSON object without a `component_access_token` string")]
    NoTokenField,
    /// JSON that does not parse, or is neither a string nor an object.
    #[error("the value looks like JSON but is not a JSON string or object")]
    BadJson,
    /// Whitespace or control characters inside, or far too long.
    #[error(
        "the value is not a token (whitespace or control characters inside, or longer than {MAX_TOKEN_LEN} characters)"
    )]
    NotAToken,
}

/// Reads a token from the value another program stored. Accepted shapes:
///
/// - the token as plain text (WxJava's `RedisTemplate`/Jedis/Redisson storages);
/// - a JSON string holding it, `"TOKEN"` (silenceper/wechat's Redis cache, which JSON-encodes
///   every value);
/// - a JSON object with `component_access_token`, and optionally `expires_at` (Unix seconds or
///   milliseconds); a JSON string holding such an object is read the same way.
///
/// `now_ms` dates nothing here: expiry comes from `expires_at` only (the caller adds the key's
/// own TTL).
pub(crate) fn parse_token_value(raw: &[u8]) -> Result<ParsedToken, ParseError> {
    let text = std::str::from_utf8(raw).map_err(|_| ParseError::NotText)?;
    let text = text.trim();
    if text.is_empty() {
        return Err(ParseError::Empty);
    }
    if text.starts_with('"') {
        let inner: String = serde_json::from_str(text).map_err(|_| ParseError::BadJson)?;
        let inner = inner.trim();
        if inner.starts_with('{') {
            return parse_object(inner);
        }
        return plain(inner);
    }
    if text.starts_with('{') {
        return parse_object(text);
    }
    plain(text)
}

fn plain(text: &str) -> Result<ParsedToken, ParseError> {
    if text.is_empty() {
        return Err(ParseError::Empty);
    }
    if text.chars().count() > MAX_TOKEN_LEN
        || text.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ParseError::NotAToken);
    }
    Ok(ParsedToken {
        token: SecretString::from(text.to_owned()),
        expires_at_ms: None,
    })
}

fn parse_object(text: &str) -> Result<ParsedToken, ParseError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| ParseError::BadJson)?;
    let obj = value.as_object().ok_or(ParseError::BadJson)?;
    let token = obj
        .get("component_access_token")
        .and_then(serde_json::Value::as_str)
        .ok_or(ParseError::NoTokenField)?;
    let mut parsed = plain(token.trim())?;
    parsed.expires_at_ms = obj
        .get("expires_at")
        .and_then(serde_json::Value::as_u64)
        // Seconds until the year 33658; anything larger is milliseconds.
        .map(|n| if n < 1_000_000_000_000 { n * 1000 } else { n });
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(raw: &str) -> String {
        parse_token_value(raw.as_bytes())
            .map(|p| p.token.expose_secret().to_owned())
            .unwrap_or_else(|e| panic!("{raw:?}: {e}"))
    }

    #[test]
    fn the_three_encodings_give_the_same_token() {
        assert_eq!(token("tok-ABC_123"), "tok-ABC_123");
        assert_eq!(token("\"tok-ABC_123\""), "tok-ABC_123");
        assert_eq!(
            token(r#"{"component_access_token":"tok-ABC_123","expires_in":7200}"#),
            "tok-ABC_123"
        );
        assert_eq!(
            token(r#""{\"component_access_token\":\"tok-ABC_123\"}""#),
            "tok-ABC_123"
        );
        // A trailing newline from a shell `SET` is not part of the token.
        assert_eq!(token("tok-ABC_123\n"), "tok-ABC_123");
    }

    #[test]
    fn expires_at_is_read_in_seconds_or_milliseconds() {
        let p = parse_token_value(br#"{"component_access_token":"t","expires_at":1700000000}"#)
            .unwrap();
        assert_eq!(p.expires_at_ms, Some(1_700_000_000_000));
        let p = parse_token_value(br#"{"component_access_token":"t","expires_at":1700000000123}"#)
            .unwrap();
        assert_eq!(p.expires_at_ms, Some(1_700_000_000_123));
        assert_eq!(parse_token_value(b"t").unwrap().expires_at_ms, None);
    }

    #[test]
    fn values_that_are_not_tokens_are_refused_without_echoing_them() {
        let cases: [(&[u8], ParseError); 6] = [
            (b"\xac\xed\x00\x05t\x00\x03abc", ParseError::NotText),
            (b"  ", ParseError::Empty),
            (
                br#"{"access_token":"SECRETVALUE"}"#,
                ParseError::NoTokenField,
            ),
            (
                br#"{"component_access_token":"SECRETVALUE""#,
                ParseError::BadJson,
            ),
            (b"SECRET VALUE", ParseError::NotAToken),
            (br#""""#, ParseError::Empty),
        ];
        for (raw, want) in cases {
            let err = parse_token_value(raw).err().unwrap();
            assert_eq!(err, want, "{raw:?}");
            assert!(!err.to_string().contains("SECRET"), "{err}");
        }
    }

    #[test]
    fn a_rejected_token_is_recognised_by_its_hash() {
        let r = Rejected::default();
        let a = SecretString::from("token-a");
        let b = SecretString::from("token-b");
        assert!(!r.contains(&a));
        let hash = r.add(&a);
        assert_eq!(hash, sha256_hex("token-a"));
        assert_eq!(hash.len(), 64);
        assert!(r.contains(&a));
        assert!(!r.contains(&b));
        for i in 0..REJECTED_KEPT {
            r.add(&SecretString::from(format!("other-{i}")));
        }
        assert!(!r.contains(&a), "only the latest rejections are kept");
    }

    #[test]
    fn sha256_hex_matches_a_known_vector() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
