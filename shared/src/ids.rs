//! Domain identifiers. Each one is validated once, at the edge, and cannot hold an invalid value.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string was rejected as an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {why}")]
pub struct IdError {
    kind: &'static str,
    value: String,
    why: &'static str,
}

impl IdError {
    fn new(kind: &'static str, value: &str, why: &'static str) -> Self {
        // Cap the echoed value: a bad row may be a whole line of garbage.
        let value: String = value.chars().take(80).collect();
        Self { kind, value, why }
    }

    /// What was wrong, without the value (e.g. `must be "wx" followed by 16 lowercase hex digits`).
    pub fn reason(&self) -> &'static str {
        self.why
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $check:expr, $pattern:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Validates `s` and wraps it.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                let check: fn(&str) -> Result<(), &'static str> = $check;
                check(s).map_err(|why| IdError::new($kind, s, why))?;
                Ok(Self(s.to_owned()))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(&s).map(|_| Self(s))
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }

        // The API's OpenAPI document: a string of the identifier's shape.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some($pattern))
                    .description(Some(concat!("A ", $kind, ": ", $pattern)))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

fn check_appid(s: &str) -> Result<(), &'static str> {
    let hex = s.strip_prefix("wx").ok_or("must start with \"wx\"")?;
    if hex.len() != 16 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err("must be \"wx\" followed by 16 lowercase hex digits");
    }
    Ok(())
}

/// `[A-Za-z0-9_-]`, 1 to `max` characters.
fn check_token(s: &str, max: usize, extra: &[u8]) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("must not be empty");
    }
    if s.len() > max {
        return Err("is too long");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || extra.contains(&b))
    {
        return Err("contains a character outside the allowed set");
    }
    Ok(())
}

fn check_env(s: &str) -> Result<(), &'static str> {
    check_token(s, 64, &[]).map_err(|_| "must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'")
}

fn check_job(s: &str) -> Result<(), &'static str> {
    check_token(s, 64, &[]).map_err(|_| "must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'")
}

fn check_batch(s: &str) -> Result<(), &'static str> {
    check_token(s, 64, b".")
        .map_err(|_| "must be 1 to 64 characters of A-Z, a-z, 0-9, '_', '-' or '.'")
}

fn check_queue(s: &str) -> Result<(), &'static str> {
    // No braces or colons: the name sits inside the Redis Cluster hash tag `{QUEUE}`.
    check_token(s, 64, &[]).map_err(|_| "must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'")
}

id_type!(
    /// A Mini Program's appid: `wx` followed by 16 lowercase hex digits.
    AppId,
    "appid",
    check_appid,
    "^wx[0-9a-f]{16}$"
);

impl AppId {
    /// The 16 hex digits after `wx` (what the enqueue script takes: it writes the `wx` back).
    pub fn hex(&self) -> &str {
        &self.as_str()[2..]
    }
}
id_type!(
    /// A cloud environment id: 1 to 64 of `[A-Za-z0-9_-]`.
    EnvId,
    "env",
    check_env,
    "^[A-Za-z0-9_-]{1,64}$"
);
id_type!(
    /// A job's id in the queue: 1 to 64 of `[A-Za-z0-9_-]`; generated ids are ULIDs.
    JobId,
    "job id",
    check_job,
    "^[A-Za-z0-9_-]{1,64}$"
);
id_type!(
    /// A batch (one import): 1 to 64 of `[A-Za-z0-9_.-]`; generated ids are `b-` + a ULID.
    BatchId,
    "batch id",
    check_batch,
    "^[A-Za-z0-9_.-]{1,64}$"
);
id_type!(
    /// A queue's name, the `QUEUE` in `envshare:{QUEUE}:…`: 1 to 64 of `[A-Za-z0-9_-]`.
    QueueName,
    "queue name",
    check_queue,
    "^[A-Za-z0-9_-]{1,64}$"
);

impl JobId {
    /// A new, time-ordered, unique job id (a ULID).
    pub fn generate() -> Self {
        Self(ulid::Ulid::new().to_string())
    }

    /// When a generated id was made (ms since the epoch): the time a ULID carries in its first
    /// 10 characters. `None` for an id that is not a ULID.
    pub fn created_ms(&self) -> Option<u64> {
        // A ULID's 26 characters hold 130 bits, its value 128: the first is at most '7'.
        if self.0.as_bytes().first().is_none_or(|c| *c > b'7') {
            return None;
        }
        ulid::Ulid::from_string(&self.0)
            .ok()
            .map(|u| u.timestamp_ms())
    }
}

impl BatchId {
    /// A new, time-ordered, unique batch id (`b-` + a ULID).
    pub fn generate() -> Self {
        Self(format!("b-{}", ulid::Ulid::new()))
    }
}

impl Default for QueueName {
    fn default() -> Self {
        Self("share".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_appid_is_wx_and_16_lowercase_hex_digits() {
        assert!(AppId::parse("wx0123456789abcdef").is_ok());
        for bad in [
            "",
            "wx",
            "wx0123456789ABCDEF",
            "wx0123456789abcde",
            "wx0123456789abcdef0",
            "wy0123456789abcdef",
            "wx0123456789abcdeg",
            " wx0123456789abcdef",
        ] {
            let err = AppId::parse(bad).unwrap_err();
            assert!(err.to_string().contains("appid"), "{err}");
        }
    }

    #[test]
    fn an_env_is_1_to_64_safe_characters() {
        assert!(EnvId::parse("prod-1a2b").is_ok());
        assert!(EnvId::parse(&"e".repeat(64)).is_ok());
        assert!(EnvId::parse(&"e".repeat(65)).is_err());
        assert!(EnvId::parse("").is_err());
        assert!(EnvId::parse("a b").is_err());
        assert!(EnvId::parse("a:b").is_err());
    }

    #[test]
    fn a_queue_name_cannot_break_the_hash_tag() {
        assert!(QueueName::parse("share").is_ok());
        assert!(QueueName::parse("a}b").is_err());
        assert!(QueueName::parse("a{b").is_err());
        assert!(QueueName::parse("a:b").is_err());
    }

    #[test]
    fn serde_validates_on_the_way_in() {
        let ok: AppId = serde_json::from_str("\"wx0123456789abcdef\"").unwrap();
        assert_eq!(ok.as_str(), "wx0123456789abcdef");
        let err = serde_json::from_str::<AppId>("\"wxNOPE\"").unwrap_err();
        assert!(err.to_string().contains("appid"));
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            "\"wx0123456789abcdef\""
        );
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = JobId::generate();
        let b = JobId::generate();
        assert_ne!(a, b);
        assert!(JobId::parse(a.as_str()).is_ok());
        assert!(BatchId::parse(BatchId::generate().as_str()).is_ok());
    }

    #[test]
    fn a_generated_job_id_tells_when_it_was_created() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let id = JobId::generate();
        let ms = id.created_ms().unwrap();
        assert!(ms.abs_diff(now) < 60_000, "{id}: {ms} vs {now}");
        let known = |s: &str| JobId::parse(s).unwrap().created_ms();
        // 2026-12-03T09:47:11.131Z
        assert_eq!(known("01M8XMSZCVFYYVYHAZMR7ZRYVY"), Some(1_796_291_231_131));
        assert_eq!(known("01m8xmszcvfyyvyhazmr7zryvy"), Some(1_796_291_231_131));
        assert_eq!(known("not-a-ulid"), None);
        assert_eq!(known("ZZZZZZZZZZZZZZZZZZZZZZZZZZ"), None);
    }

    #[test]
    fn an_error_echoes_at_most_80_characters() {
        let long = "x".repeat(10_000);
        assert!(EnvId::parse(&long).unwrap_err().to_string().len() < 200);
    }

    proptest! {
        #[test]
        fn every_valid_appid_round_trips(hex in "[0-9a-f]{16}") {
            let s = format!("wx{hex}");
            let id = AppId::parse(&s).unwrap();
            prop_assert_eq!(id.to_string(), s);
        }

        #[test]
        fn parse_never_panics_and_accepts_only_the_alphabet(s in "\\PC{0,80}") {
            let ok = EnvId::parse(&s).is_ok();
            let expected = !s.is_empty() && s.len() <= 64
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            prop_assert_eq!(ok, expected);
            let _ = AppId::parse(&s);
            let _ = BatchId::parse(&s);
        }
    }
}
