//! Webhooks (docs/webhooks.md): the `Envshare-Signature` scheme, endpoint ids, delivery records
//! and the operator's view of the delivery schedule (`envshare webhooks status|dead`).
//!
//! The delivery loop that runs in every worker is `worker::webhooks`; this module holds what the
//! worker, the command line and receivers written in Rust share.
//!
//! # Signature
//!
//! `Envshare-Signature: t=UNIX_SECONDS,v1=HEX[,v1=HEX]`, where each HEX is the lower-case hex
//! HMAC-SHA256, keyed with a secret, of the ASCII decimal `t`, a `.`, and the request body's
//! bytes. One `v1` per secret: the current one (`ENVSHARE_WEBHOOK_SECRET`) first, then, during a
//! rotation, the previous one (`ENVSHARE_WEBHOOK_SECRET_PREVIOUS`). A receiver accepts the
//! delivery when any `v1` matches its secret.

use std::fmt;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::{Queue, StoreError, WebhookEndpointStats};

/// The consumer group the workers read the events stream with for webhooks.
pub const WEBHOOK_GROUP: &str = "envshare-webhooks";

/// The header with the event's stable id.
pub const HEADER_EVENT_ID: &str = "Envshare-Event-Id";
/// The header with the event's type.
pub const HEADER_EVENT_TYPE: &str = "Envshare-Event-Type";
/// The header with the signature.
pub const HEADER_SIGNATURE: &str = "Envshare-Signature";

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256(secret, "T.BODY") as lower-case hex.
pub fn sign(secret: &[u8], t: u64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The `Envshare-Signature` value for `body` at time `t` (Unix seconds): one `v1=` per secret,
/// in the order given.
pub fn signature_header<S: AsRef<[u8]>>(secrets: &[S], t: u64, body: &[u8]) -> String {
    let mut out = format!("t={t}");
    for s in secrets {
        out.push_str(",v1=");
        out.push_str(&sign(s.as_ref(), t, body));
    }
    out
}

/// A parsed `Envshare-Signature` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    /// The signing time (Unix seconds).
    pub t: u64,
    /// The `v1` signatures (hex), in header order.
    pub v1: Vec<String>,
}

/// Why a signature header was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The header is not `t=SECONDS,v1=HEX…`.
    #[error("malformed signature header: {0}; expected t=UNIX_SECONDS,v1=HEX[,v1=HEX]")]
    Malformed(&'static str),
    /// No `v1` value matches the secret.
    #[error("no v1 signature matches the secret (wrong secret, or the body was changed)")]
    Mismatch,
    /// The signature is older (or further in the future) than the tolerance.
    #[error("the signature time t={t} is {age_s} s away from now, beyond the tolerance")]
    Expired {
        /// The header's `t`.
        t: u64,
        /// How far from now (seconds).
        age_s: u64,
    },
}

impl SignatureHeader {
    /// Parses `t=…,v1=…[,v1=…]` (other `key=value` items are ignored, for later schemes).
    pub fn parse(header: &str) -> Result<Self, VerifyError> {
        let mut t = None;
        let mut v1 = Vec::new();
        for item in header.trim().split(',') {
            let Some((k, v)) = item.trim().split_once('=') else {
                return Err(VerifyError::Malformed("an item is not key=value"));
            };
            match k {
                "t" => {
                    if t.is_some() {
                        return Err(VerifyError::Malformed("t is given twice"));
                    }
                    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(VerifyError::Malformed("t is not Unix seconds"));
                    }
                    t = Some(
                        v.parse()
                            .map_err(|_| VerifyError::Malformed("t is too large"))?,
                    );
                }
                "v1" => {
                    if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(VerifyError::Malformed("a v1 is not 64 hex digits"));
                    }
                    v1.push(v.to_ascii_lowercase());
                }
                _ => {}
            }
        }
        let t = t.ok_or(VerifyError::Malformed("no t"))?;
        if v1.is_empty() {
            return Err(VerifyError::Malformed("no v1"));
        }
        Ok(Self { t, v1 })
    }

    /// Whether a `v1` matches `secret` for `body` (constant-time comparison per value).
    pub fn matches(&self, secret: &[u8], body: &[u8]) -> bool {
        let t = self.t.to_string();
        self.v1.iter().any(|v| {
            let Ok(bytes) = hex::decode(v) else {
                return false;
            };
            let mut mac = HmacSha256::new_from_slice(secret).expect("any key length");
            mac.update(t.as_bytes());
            mac.update(b".");
            mac.update(body);
            // verify_slice compares in constant time.
            mac.verify_slice(&bytes).is_ok()
        })
    }
}

/// Verifies `header` for `body` with `secret`; with `tolerance_s`, also that `t` is within that
/// many seconds of `now_s`. Returns the parsed header.
pub fn verify(
    header: &str,
    body: &[u8],
    secret: &[u8],
    tolerance_s: Option<u64>,
    now_s: u64,
) -> Result<SignatureHeader, VerifyError> {
    let h = SignatureHeader::parse(header)?;
    if !h.matches(secret, body) {
        return Err(VerifyError::Mismatch);
    }
    if let Some(tol) = tolerance_s {
        let age_s = now_s.abs_diff(h.t);
        if age_s > tol {
            return Err(VerifyError::Expired { t: h.t, age_s });
        }
    }
    Ok(h)
}

/// The stable id of an endpoint: the first 16 hex digits of SHA-256 of its URL. It names the
/// endpoint's keys and its metrics label, so a URL (which may hold a token) is never a label.
pub fn endpoint_id(url: &str) -> String {
    let digest = Sha256::digest(url.as_bytes());
    hex::encode(&digest[..8])
}

/// One delivery of one event to one endpoint, as stored in the schedule.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// The event's type.
    #[serde(rename = "type")]
    pub kind: String,
    /// When the delivery was scheduled (the event written, or a dead retry; ms): the max age
    /// counts from here.
    pub first_ms: u64,
    /// Attempts made so far.
    pub attempts: u32,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the last attempt was made (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ms: Option<u64>,
    /// The request body: the event JSON exactly as on the stream.
    pub body: String,
}

impl fmt::Debug for DeliveryRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveryRecord")
            .field("kind", &self.kind)
            .field("first_ms", &self.first_ms)
            .field("attempts", &self.attempts)
            .field("error", &self.error)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl DeliveryRecord {
    /// The record as stored (JSON).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a record serializes")
    }
}

/// The last failed attempt of an endpoint (`webhook:errors`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    /// When (ms).
    pub at_ms: u64,
    /// What happened (`HTTP 500`, `timeout after 10000 ms`, `connection refused`, …).
    pub error: String,
}

/// One endpoint as `envshare webhooks status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointStatus {
    /// The endpoint id.
    pub endpoint: String,
    /// Its URL (password hidden).
    pub url: String,
    /// Deliveries not yet made and not dead.
    pub backlog: u64,
    /// Attempts in flight.
    pub in_flight: u64,
    /// Dead deliveries.
    pub dead: u64,
    /// Age of the oldest undelivered event (ms), `None` when the backlog is empty.
    pub oldest_undelivered_ms: Option<u64>,
    /// The last failed attempt.
    pub last_error: Option<LastError>,
}

impl EndpointStatus {
    fn from_stats(s: WebhookEndpointStats, now_ms: u64) -> Self {
        Self {
            endpoint: s.endpoint,
            url: s.url,
            backlog: s.backlog,
            in_flight: s.in_flight,
            dead: s.dead,
            oldest_undelivered_ms: s.oldest_ms.map(|ms| now_ms.saturating_sub(ms)),
            last_error: s.last_error.and_then(|raw| serde_json::from_str(&raw).ok()),
        }
    }
}

/// Every registered endpoint's status, sorted by endpoint id.
pub async fn status(queue: &Queue) -> Result<Vec<EndpointStatus>, StoreError> {
    let now = queue.now_ms();
    let mut out = Vec::new();
    for (id, _url) in queue.webhook_endpoints().await? {
        let stats = queue.webhook_stats(&id).await?;
        out.push(EndpointStatus::from_stats(stats, now));
    }
    Ok(out)
}

/// A dead delivery as `envshare webhooks dead list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadDelivery {
    /// The endpoint id.
    pub endpoint: String,
    /// The event id.
    pub event_id: String,
    /// The event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Attempts made.
    pub attempts: u32,
    /// When it was given up (ms).
    pub died_ms: u64,
    /// Why the last attempt failed.
    pub error: Option<String>,
}

/// Dead deliveries of every endpoint (or of `only`), up to `limit` per endpoint.
pub async fn dead_list(
    queue: &Queue,
    only: Option<&str>,
    limit: usize,
) -> Result<Vec<DeadDelivery>, StoreError> {
    let mut out = Vec::new();
    for (ep, _) in queue.webhook_endpoints().await? {
        if only.is_some_and(|o| o != ep) {
            continue;
        }
        for (id, died_ms, raw) in queue.webhook_dead(&ep, limit).await? {
            let record = raw.and_then(|r| serde_json::from_str::<DeliveryRecord>(&r).ok());
            out.push(DeadDelivery {
                endpoint: ep.clone(),
                event_id: id,
                kind: record.as_ref().map(|r| r.kind.clone()).unwrap_or_default(),
                attempts: record.as_ref().map_or(0, |r| r.attempts),
                died_ms,
                error: record.and_then(|r| r.error),
            });
        }
    }
    Ok(out)
}

/// Schedules dead deliveries again, due now, attempts reset and the max age counted from now:
/// every dead delivery of every endpoint (or of `only`), or just the event ids in `ids`.
/// Returns how many were revived.
pub async fn dead_retry(
    queue: &Queue,
    only: Option<&str>,
    ids: &[String],
) -> Result<u64, StoreError> {
    let now = queue.now_ms();
    let mut revived = 0;
    for (ep, _) in queue.webhook_endpoints().await? {
        if only.is_some_and(|o| o != ep) {
            continue;
        }
        let dead = queue.webhook_dead(&ep, usize::MAX / 2).await?;
        let entries: Vec<(String, String)> = dead
            .into_iter()
            .filter(|(id, _, _)| ids.is_empty() || ids.contains(id))
            .filter_map(|(id, _, raw)| {
                let mut r: DeliveryRecord = serde_json::from_str(&raw?).ok()?;
                r.attempts = 0;
                r.first_ms = now;
                Some((id, r.to_json()))
            })
            .collect();
        revived += queue.webhook_revive(&ep, &entries).await?;
    }
    Ok(revived)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_t_dot_body() {
        // Computed independently: Python's hmac.new(b"whsec_test", b'1700000000.{"a":1}',
        // hashlib.sha256).hexdigest().
        let sig = sign(b"whsec_test", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(
            sig,
            "38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
        );
        let header = signature_header(&["whsec_test"], 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(header, format!("t=1700000000,v1={sig}"));
        let h = verify(&header, br#"{"a":1}"#, b"whsec_test", None, 0).unwrap();
        assert_eq!(h.t, 1_700_000_000);
        assert_eq!(
            verify(&header, br#"{"a":2}"#, b"whsec_test", None, 0),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&header, br#"{"a":1}"#, b"other", None, 0),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn during_a_rotation_either_secret_verifies() {
        let header = signature_header(&["new", "old"], 5, b"body");
        assert_eq!(header.matches(",v1=").count(), 2);
        assert!(verify(&header, b"body", b"new", None, 5).is_ok());
        assert!(verify(&header, b"body", b"old", None, 5).is_ok());
        assert!(verify(&header, b"body", b"neither", None, 5).is_err());
    }

    #[test]
    fn malformed_headers_and_old_signatures_are_rejected() {
        for bad in ["", "t=1", "v1=00", "t=x,v1=ab", "t=1,v1=zz", "garbage"] {
            assert!(
                matches!(SignatureHeader::parse(bad), Err(VerifyError::Malformed(_))),
                "{bad:?}"
            );
        }
        let header = signature_header(&["s"], 1000, b"b");
        assert_eq!(
            verify(&header, b"b", b"s", Some(300), 1400),
            Err(VerifyError::Expired {
                t: 1000,
                age_s: 400
            })
        );
        assert!(verify(&header, b"b", b"s", Some(300), 1200).is_ok());
    }

    #[test]
    fn endpoint_ids_are_stable_and_distinct() {
        let a = endpoint_id("https://a.example/hook");
        assert_eq!(a, endpoint_id("https://a.example/hook"));
        assert_ne!(a, endpoint_id("https://b.example/hook"));
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn a_record_keeps_the_body_byte_for_byte() {
        let body =
            r#"{"v":1,"id":"x","type":"share.accepted","url":"https://a/b\u00e9","n":"\u2028"}"#;
        let r = DeliveryRecord {
            kind: "share.accepted".into(),
            first_ms: 1,
            attempts: 2,
            error: Some("HTTP 500".into()),
            last_ms: None,
            body: body.into(),
        };
        let back: DeliveryRecord = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(back.body.as_bytes(), body.as_bytes());
    }
}
