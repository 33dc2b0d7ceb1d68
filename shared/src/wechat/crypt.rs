//! WeChat's message encryption (WXBizMsgCrypt), as the open platform uses it for the messages it
//! pushes to a third-party platform's callback URL.
//!
//! - Signature: the lowercase hex SHA-1 of the four strings token, `timestamp`, `nonce` and the
//!   `Encrypt` text, sorted byte-wise and concatenated. It is compared in constant time.
//! - Key: the 43-character EncodingAESKey plus `=`, base64-decoded: 32 bytes. AES-256-CBC with
//!   the first 16 bytes of the key as IV; PKCS#7 padding to a multiple of 32 bytes (pad bytes
//!   1 to 32).
//! - Plaintext: 16 random bytes, the length `L` of the message (4 bytes, big-endian), `L` bytes
//!   of XML, then the appid of the receiver, which must be the platform's own.
//!
//! Nothing here logs, and no error or `Debug` output holds the token, the key or a plaintext.

use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

type Decryptor = cbc::Decryptor<aes::Aes256>;
type Encryptor = cbc::Encryptor<aes::Aes256>;

/// Characters in an EncodingAESKey.
pub const AES_KEY_CHARS: usize = 43;

/// The padding block: WeChat pads to a multiple of 32 bytes, not AES's 16.
const PAD_BLOCK: usize = 32;

/// Bytes before the message: 16 random bytes and the 4-byte length.
const HEADER: usize = 20;

/// Why an EncodingAESKey is unusable. Never shows the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not 43 characters.
    #[error(
        "is {0} characters long; the EncodingAESKey from the WeChat Open Platform console has \
         exactly 43 (letters and digits)"
    )]
    Length(usize),
    /// Not base64 (letters, digits, `+`, `/`).
    #[error(
        "is not base64: the EncodingAESKey from the WeChat Open Platform console is 43 letters \
         and digits"
    )]
    NotBase64,
}

/// Parses an EncodingAESKey into the 32-byte AES key.
pub fn parse_aes_key(encoding_aes_key: &str) -> Result<[u8; 32], KeyError> {
    let chars = encoding_aes_key.chars().count();
    if chars != AES_KEY_CHARS {
        return Err(KeyError::Length(chars));
    }
    let mut padded = String::with_capacity(AES_KEY_CHARS + 1);
    padded.push_str(encoding_aes_key);
    padded.push('=');
    // The last character carries 2 unused bits; WeChat's keys may set them, so decode leniently.
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    let bytes = engine
        .decode(padded.as_bytes())
        .map_err(|_| KeyError::NotBase64)?;
    bytes.try_into().map_err(|_| KeyError::NotBase64)
}

/// Why an `Encrypt` text could not be decrypted. The names are the `reason` labels of the
/// rejection metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    /// The text is not base64.
    #[error("the encrypted text is not base64")]
    BadBase64,
    /// The ciphertext is empty or not a whole number of AES blocks.
    #[error("the ciphertext is not a whole number of 16-byte blocks")]
    BadLength,
    /// The padding is not PKCS#7 to 32 bytes (wrong key, or corrupt data).
    #[error("the decrypted padding is invalid (wrong EncodingAESKey, or corrupt data)")]
    BadPadding,
    /// The length prefix points past the end of the plaintext.
    #[error("the message length prefix is truncated or points past the end")]
    Truncated,
    /// The message is addressed to another appid.
    #[error("the message is addressed to another appid than ENVSHARE_COMPONENT_APPID")]
    WrongAppid,
}

impl DecryptError {
    /// A short snake_case name, for metric labels and logs.
    pub fn reason(self) -> &'static str {
        match self {
            DecryptError::BadBase64 => "bad_base64",
            DecryptError::BadLength => "bad_length",
            DecryptError::BadPadding => "bad_padding",
            DecryptError::Truncated => "truncated",
            DecryptError::WrongAppid => "wrong_appid",
        }
    }
}

/// The platform's message crypto: its Token, its EncodingAESKey and its appid (the receiver every
/// message must name). `Debug` shows the appid only.
#[derive(Clone)]
pub struct MsgCrypt {
    token: SecretString,
    key: [u8; 32],
    appid: String,
}

impl std::fmt::Debug for MsgCrypt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MsgCrypt")
            .field("appid", &self.appid)
            .finish_non_exhaustive()
    }
}

impl MsgCrypt {
    /// The crypto of platform `appid` with the message-check `token` and `encoding_aes_key`.
    pub fn new(
        token: SecretString,
        encoding_aes_key: &str,
        appid: impl Into<String>,
    ) -> Result<Self, KeyError> {
        Ok(Self {
            token,
            key: parse_aes_key(encoding_aes_key)?,
            appid: appid.into(),
        })
    }

    /// The appid messages must be addressed to.
    pub fn appid(&self) -> &str {
        &self.appid
    }

    /// `msg_signature` for these values: hex SHA-1 of the sorted, concatenated four strings.
    pub fn signature(&self, timestamp: &str, nonce: &str, encrypt: &str) -> String {
        let mut parts = [self.token.expose_secret(), timestamp, nonce, encrypt];
        parts.sort_unstable();
        let mut sha = Sha1::new();
        for p in parts {
            sha.update(p.as_bytes());
        }
        let digest = sha.finalize();
        let mut hex = String::with_capacity(40);
        for b in digest {
            hex.push(char::from(HEX[usize::from(b >> 4)]));
            hex.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        hex
    }

    /// Whether `signature` is the one of these values, compared in constant time (upper-case hex
    /// is accepted).
    pub fn verify(&self, timestamp: &str, nonce: &str, encrypt: &str, signature: &str) -> bool {
        let expected = self.signature(timestamp, nonce, encrypt);
        let given = signature.to_ascii_lowercase();
        expected.as_bytes().ct_eq(given.as_bytes()).into()
    }

    /// Decrypts an `Encrypt` text into the message XML (bytes, not yet checked as UTF-8),
    /// checking padding, length and the receiving appid.
    pub fn decrypt(&self, encrypt: &str) -> Result<Vec<u8>, DecryptError> {
        let mut buf = STANDARD
            .decode(encrypt.trim().as_bytes())
            .map_err(|_| DecryptError::BadBase64)?;
        if buf.is_empty() || buf.len() % 16 != 0 {
            return Err(DecryptError::BadLength);
        }
        let iv: [u8; 16] = self.key[..16].try_into().expect("a 32-byte key");
        let plain = Decryptor::new(&self.key.into(), &iv.into())
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .map_err(|_| DecryptError::BadLength)?;
        let pad = usize::from(*plain.last().ok_or(DecryptError::BadPadding)?);
        if pad == 0 || pad > PAD_BLOCK || pad > plain.len() {
            return Err(DecryptError::BadPadding);
        }
        let (content, padding) = plain.split_at(plain.len() - pad);
        if padding.iter().any(|&b| usize::from(b) != pad) {
            return Err(DecryptError::BadPadding);
        }
        if content.len() < HEADER {
            return Err(DecryptError::Truncated);
        }
        let len = u32::from_be_bytes(content[16..HEADER].try_into().expect("4 bytes")) as usize;
        let rest = &content[HEADER..];
        if len > rest.len() {
            return Err(DecryptError::Truncated);
        }
        let (xml, receiver) = rest.split_at(len);
        if receiver.ct_eq(self.appid.as_bytes()).into() {
            Ok(xml.to_vec())
        } else {
            Err(DecryptError::WrongAppid)
        }
    }

    /// Encrypts `xml` for this platform with the 16 bytes `random` in front (what WeChat does
    /// when it pushes a message), as the base64 `Encrypt` text.
    pub fn encrypt_with(&self, xml: &[u8], random: [u8; 16]) -> String {
        let mut buf = Vec::with_capacity(HEADER + xml.len() + self.appid.len() + PAD_BLOCK);
        buf.extend_from_slice(&random);
        buf.extend_from_slice(&(xml.len() as u32).to_be_bytes());
        buf.extend_from_slice(xml);
        buf.extend_from_slice(self.appid.as_bytes());
        let pad = PAD_BLOCK - buf.len() % PAD_BLOCK;
        buf.resize(buf.len() + pad, pad as u8);
        let iv: [u8; 16] = self.key[..16].try_into().expect("a 32-byte key");
        let len = buf.len();
        let cipher = Encryptor::new(&self.key.into(), &iv.into())
            .encrypt_padded_mut::<NoPadding>(&mut buf, len)
            .expect("the buffer is padded to whole blocks");
        STANDARD.encode(cipher)
    }

    /// [`encrypt_with`](Self::encrypt_with) 16 random bytes.
    pub fn encrypt(&self, xml: &[u8]) -> String {
        self.encrypt_with(xml, rand::random())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// WeChat's official WXBizMsgCrypt sample (Java `WXBizMsgCryptTest`): key, token, appid, the
    /// 16 "random" bytes and the expected ciphertext of "我是中文abcd123".
    const SAMPLE_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const SAMPLE_TOKEN: &str = "pamtest";
    const SAMPLE_APPID: &str = "wxb11529c136998cb6";
    const SAMPLE_RANDOM: &[u8; 16] = b"aaaabbbbccccdddd";
    const SAMPLE_MSG: &str = "我是中文abcd123";
    const SAMPLE_ENCRYPTED: &str =
        "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg==";

    /// WeChat's official sample (C# `Sample.cs`): a signed, encrypted push with its
    /// msg_signature, timestamp and nonce.
    const SIGNED_TOKEN: &str = "QDG6eK";
    const SIGNED_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
    const SIGNED_APPID: &str = "wx5823bf96d3bd56c7";
    const SIGNED_SIGNATURE: &str = "477715d11cdb4164915debcba66cb864d751f3e6";
    const SIGNED_TIMESTAMP: &str = "1409659813";
    const SIGNED_NONCE: &str = "1372623149";
    const SIGNED_ENCRYPT: &str = "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==";

    fn sample() -> MsgCrypt {
        MsgCrypt::new(SAMPLE_TOKEN.into(), SAMPLE_KEY, SAMPLE_APPID).unwrap()
    }

    fn signed() -> MsgCrypt {
        MsgCrypt::new(SIGNED_TOKEN.into(), SIGNED_KEY, SIGNED_APPID).unwrap()
    }

    #[test]
    fn the_official_sample_encrypts_to_the_official_ciphertext() {
        let out = sample().encrypt_with(SAMPLE_MSG.as_bytes(), *SAMPLE_RANDOM);
        assert_eq!(out, SAMPLE_ENCRYPTED);
    }

    #[test]
    fn the_official_sample_ciphertext_decrypts_to_the_message() {
        let xml = sample().decrypt(SAMPLE_ENCRYPTED).unwrap();
        assert_eq!(std::str::from_utf8(&xml).unwrap(), SAMPLE_MSG);
    }

    #[test]
    fn the_official_signed_push_verifies_and_decrypts() {
        let c = signed();
        assert_eq!(
            c.signature(SIGNED_TIMESTAMP, SIGNED_NONCE, SIGNED_ENCRYPT),
            SIGNED_SIGNATURE
        );
        assert!(c.verify(
            SIGNED_TIMESTAMP,
            SIGNED_NONCE,
            SIGNED_ENCRYPT,
            SIGNED_SIGNATURE
        ));
        let xml = String::from_utf8(c.decrypt(SIGNED_ENCRYPT).unwrap()).unwrap();
        assert!(xml.starts_with("<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]>"));
        assert!(xml.contains("<CreateTime>1409659813</CreateTime>"), "{xml}");
    }

    #[test]
    fn a_changed_value_fails_the_signature() {
        let c = signed();
        assert!(!c.verify("1409659814", SIGNED_NONCE, SIGNED_ENCRYPT, SIGNED_SIGNATURE));
        assert!(!c.verify(SIGNED_TIMESTAMP, SIGNED_NONCE, SIGNED_ENCRYPT, ""));
        let other = MsgCrypt::new("other".into(), SIGNED_KEY, SIGNED_APPID).unwrap();
        assert!(!other.verify(
            SIGNED_TIMESTAMP,
            SIGNED_NONCE,
            SIGNED_ENCRYPT,
            SIGNED_SIGNATURE
        ));
    }

    #[test]
    fn another_receiver_is_refused() {
        let c = MsgCrypt::new(SIGNED_TOKEN.into(), SIGNED_KEY, "wx0000000000000001").unwrap();
        assert_eq!(c.decrypt(SIGNED_ENCRYPT), Err(DecryptError::WrongAppid));
    }

    #[test]
    fn each_kind_of_bad_ciphertext_has_its_error() {
        let c = sample();
        assert_eq!(c.decrypt("not base64 !"), Err(DecryptError::BadBase64));
        assert_eq!(c.decrypt(""), Err(DecryptError::BadLength));
        assert_eq!(
            c.decrypt(&STANDARD.encode([0u8; 15])),
            Err(DecryptError::BadLength)
        );
        // Whole blocks, but random content: the padding byte is almost never valid with all
        // its copies; with a wrong key the sample never is.
        let wrong_key = MsgCrypt::new(SAMPLE_TOKEN.into(), SIGNED_KEY, SAMPLE_APPID).unwrap();
        assert_eq!(
            wrong_key.decrypt(SAMPLE_ENCRYPTED),
            Err(DecryptError::BadPadding)
        );
    }

    #[test]
    fn a_length_prefix_past_the_end_is_truncated() {
        let c = sample();
        // A plaintext of 16 bytes + length 1000 + 4 bytes, padded by hand.
        let mut plain = vec![b'r'; 16];
        plain.extend_from_slice(&1000u32.to_be_bytes());
        plain.extend_from_slice(b"<xm>");
        let pad = PAD_BLOCK - plain.len() % PAD_BLOCK;
        plain.resize(plain.len() + pad, pad as u8);
        let len = plain.len();
        let key = parse_aes_key(SAMPLE_KEY).unwrap();
        let iv: [u8; 16] = key[..16].try_into().unwrap();
        let cipher = Encryptor::new(&key.into(), &iv.into())
            .encrypt_padded_mut::<NoPadding>(&mut plain, len)
            .unwrap()
            .to_vec();
        assert_eq!(
            c.decrypt(&STANDARD.encode(&cipher)),
            Err(DecryptError::Truncated)
        );
        // Padding that leaves fewer than 20 bytes.
        let mut short = vec![b'r'; 10];
        short.resize(32, 22);
        let cipher = Encryptor::new(&key.into(), &iv.into())
            .encrypt_padded_mut::<NoPadding>(&mut short, 32)
            .unwrap()
            .to_vec();
        assert_eq!(
            c.decrypt(&STANDARD.encode(&cipher)),
            Err(DecryptError::Truncated)
        );
    }

    #[test]
    fn a_bad_key_is_refused_without_showing_it() {
        assert_eq!(parse_aes_key("short"), Err(KeyError::Length(5)));
        let bad = "abcdefghijklmnopqrstuvwxyz0123456789ABCDE!G";
        assert_eq!(parse_aes_key(bad), Err(KeyError::NotBase64));
        let msg = KeyError::NotBase64.to_string();
        assert!(!msg.contains(bad));
        let debug = format!("{:?}", sample());
        assert!(
            !debug.contains(SAMPLE_TOKEN) && !debug.contains(SAMPLE_KEY),
            "{debug}"
        );
    }

    proptest! {
        #[test]
        fn random_text_never_panics_the_decryptor(text in ".{0,300}") {
            let _ = sample().decrypt(&text);
        }

        #[test]
        fn random_bytes_never_panic_the_decryptor(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let c = sample();
            let _ = c.decrypt(&STANDARD.encode(&bytes));
            // Whole blocks always reach the padding and length checks.
            let blocks = bytes.len() / 16 * 16;
            let _ = c.decrypt(&STANDARD.encode(&bytes[..blocks]));
        }

        /// The settings accept any 43 characters of the base64 alphabet as the key; each must
        /// decode.
        #[test]
        fn every_43_base64_characters_are_a_key(key in "[A-Za-z0-9+/]{43}") {
            prop_assert!(parse_aes_key(&key).is_ok());
        }

        #[test]
        fn whatever_is_encrypted_decrypts_back(xml in proptest::collection::vec(any::<u8>(), 0..300), random in any::<[u8; 16]>()) {
            let c = sample();
            prop_assert_eq!(c.decrypt(&c.encrypt_with(&xml, random)).unwrap(), xml);
        }
    }
}
