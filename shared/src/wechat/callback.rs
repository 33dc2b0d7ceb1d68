//! The XML of the open platform's pushes to the authorization event URL: the envelope
//! (`<xml><AppId>…</AppId><Encrypt>…</Encrypt></xml>`) and the decrypted message (`AppId`,
//! `CreateTime`, `InfoType` and the fields of its type), parsed with quick-xml's serde support;
//! and the same XML written, for the sandbox that plays WeChat.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::ids::AppId;

/// Why a body or a decrypted message is not what the open platform sends. Never quotes the
/// content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// Not UTF-8, not XML, or XML without the expected shape.
    #[error("not the expected XML: {0}")]
    NotXml(String),
    /// A required element is missing or empty.
    #[error("the XML has no <{0}>")]
    Missing(&'static str),
    /// An element has an unusable value.
    #[error("<{0}> is not valid")]
    Invalid(&'static str),
}

/// The body of a push: the encrypted message and, usually, the platform's appid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// `<AppId>` (or `<ToUserName>` in other WeChat pushes), when present.
    pub appid: Option<String>,
    /// `<Encrypt>`: the base64 ciphertext the signature covers.
    pub encrypt: String,
}

#[derive(Deserialize)]
struct EnvelopeXml {
    #[serde(rename = "AppId")]
    appid: Option<String>,
    #[serde(rename = "ToUserName")]
    to_user: Option<String>,
    #[serde(rename = "Encrypt")]
    encrypt: Option<String>,
}

/// Parses a push's body.
pub fn parse_envelope(body: &[u8]) -> Result<Envelope, XmlError> {
    let text = std::str::from_utf8(body).map_err(|_| XmlError::NotXml("not UTF-8".into()))?;
    let xml: EnvelopeXml = quick_xml::de::from_str(text).map_err(describe)?;
    let encrypt = xml
        .encrypt
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .ok_or(XmlError::Missing("Encrypt"))?;
    Ok(Envelope {
        appid: xml.appid.or(xml.to_user),
        encrypt,
    })
}

/// quick-xml's error without any of the input.
fn describe(e: quick_xml::DeError) -> XmlError {
    use quick_xml::DeError;
    let what = match e {
        DeError::Custom(_) => "unexpected content",
        DeError::InvalidXml(_) => "malformed XML",
        DeError::UnexpectedEof => "unexpected end of input",
        _ => "unexpected structure",
    };
    XmlError::NotXml(what.into())
}

/// What a decrypted push says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackKind {
    /// `component_verify_ticket`: the ticket (kept secret).
    VerifyTicket(SecretTicket),
    /// `authorized`: a Mini Program authorized the platform.
    Authorized(AppId),
    /// `updateauthorized`: it changed the permissions it granted.
    AuthorizationUpdated(AppId),
    /// `unauthorized`: it revoked the authorization.
    Unauthorized(AppId),
    /// Any other `InfoType` (kept for the counters; cut to 64 characters).
    Other(String),
}

/// A verify ticket: `Debug` never shows it; equality compares the value.
#[derive(Clone)]
pub struct SecretTicket(pub SecretString);

impl std::fmt::Debug for SecretTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretTicket([REDACTED])")
    }
}

impl PartialEq for SecretTicket {
    fn eq(&self, other: &Self) -> bool {
        self.0.expose_secret() == other.0.expose_secret()
    }
}

impl Eq for SecretTicket {}

impl CallbackKind {
    /// The `InfoType` it came with.
    pub fn info_type(&self) -> &str {
        match self {
            CallbackKind::VerifyTicket(_) => "component_verify_ticket",
            CallbackKind::Authorized(_) => "authorized",
            CallbackKind::AuthorizationUpdated(_) => "updateauthorized",
            CallbackKind::Unauthorized(_) => "unauthorized",
            CallbackKind::Other(t) => t,
        }
    }
}

/// A decrypted push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackMessage {
    /// `<AppId>`: the platform the message is for.
    pub appid: Option<String>,
    /// `<CreateTime>`: Unix seconds, WeChat's clock.
    pub create_time: u64,
    /// `<InfoType>` and its fields.
    pub kind: CallbackKind,
}

#[derive(Deserialize)]
struct MessageXml {
    #[serde(rename = "AppId")]
    appid: Option<String>,
    #[serde(rename = "CreateTime")]
    create_time: Option<String>,
    #[serde(rename = "InfoType")]
    info_type: Option<String>,
    #[serde(rename = "ComponentVerifyTicket")]
    ticket: Option<String>,
    #[serde(rename = "AuthorizerAppid")]
    authorizer: Option<String>,
}

/// The longest verify ticket accepted (WeChat's are about 100 characters).
const MAX_TICKET: usize = 4096;

/// Parses a decrypted push.
pub fn parse_message(xml: &[u8]) -> Result<CallbackMessage, XmlError> {
    let text = std::str::from_utf8(xml).map_err(|_| XmlError::NotXml("not UTF-8".into()))?;
    let m: MessageXml = quick_xml::de::from_str(text).map_err(describe)?;
    let nonempty = |v: Option<String>, name| {
        v.map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .ok_or(XmlError::Missing(name))
    };
    let create_time = nonempty(m.create_time, "CreateTime")?
        .parse::<u64>()
        .map_err(|_| XmlError::Invalid("CreateTime"))?;
    let info_type = nonempty(m.info_type, "InfoType")?;
    let authorizer = |v: Option<String>| -> Result<AppId, XmlError> {
        AppId::parse(&nonempty(v, "AuthorizerAppid")?)
            .map_err(|_| XmlError::Invalid("AuthorizerAppid"))
    };
    let kind = match info_type.as_str() {
        "component_verify_ticket" => {
            let ticket = nonempty(m.ticket, "ComponentVerifyTicket")?;
            if ticket.len() > MAX_TICKET || ticket.chars().any(char::is_control) {
                return Err(XmlError::Invalid("ComponentVerifyTicket"));
            }
            CallbackKind::VerifyTicket(SecretTicket(SecretString::from(ticket)))
        }
        "authorized" => CallbackKind::Authorized(authorizer(m.authorizer)?),
        "updateauthorized" => CallbackKind::AuthorizationUpdated(authorizer(m.authorizer)?),
        "unauthorized" => CallbackKind::Unauthorized(authorizer(m.authorizer)?),
        other => CallbackKind::Other(other.chars().take(64).collect()),
    };
    Ok(CallbackMessage {
        appid: m.appid,
        create_time,
        kind,
    })
}

/// `<![CDATA[text]]>`, splitting any `]]>` inside so the section cannot end early.
fn cdata(text: &str) -> String {
    format!("<![CDATA[{}]]>", text.replace("]]>", "]]]]><![CDATA[>"))
}

/// The body WeChat posts: the envelope around `encrypt`.
pub fn envelope_xml(appid: &str, encrypt: &str) -> String {
    format!(
        "<xml><AppId>{}</AppId><Encrypt>{}</Encrypt></xml>",
        cdata(appid),
        cdata(encrypt)
    )
}

/// A `component_verify_ticket` message.
pub fn ticket_xml(component_appid: &str, create_time: u64, ticket: &str) -> String {
    format!(
        "<xml><AppId>{}</AppId><CreateTime>{create_time}</CreateTime><InfoType>{}</InfoType>\
         <ComponentVerifyTicket>{}</ComponentVerifyTicket></xml>",
        cdata(component_appid),
        cdata("component_verify_ticket"),
        cdata(ticket)
    )
}

/// An `authorized`, `updateauthorized` or `unauthorized` message (`info_type`) for the Mini
/// Program `authorizer`.
pub fn authorization_xml(
    component_appid: &str,
    create_time: u64,
    info_type: &str,
    authorizer: &str,
) -> String {
    let code = if info_type == "unauthorized" {
        String::new()
    } else {
        format!(
            "<AuthorizationCode>{}</AuthorizationCode>\
             <AuthorizationCodeExpiredTime>{}</AuthorizationCodeExpiredTime>\
             <PreAuthCode>{}</PreAuthCode>",
            cdata(&format!("queryauthcode@@@sandbox-{create_time}")),
            create_time + 3600,
            cdata(&format!("preauthcode@@@sandbox-{create_time}"))
        )
    };
    format!(
        "<xml><AppId>{}</AppId><CreateTime>{create_time}</CreateTime><InfoType>{}</InfoType>\
         <AuthorizerAppid>{}</AuthorizerAppid>{code}</xml>",
        cdata(component_appid),
        cdata(info_type),
        cdata(authorizer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_parses_with_cdata_and_without() {
        let e = parse_envelope(envelope_xml("wx00000000000000c0", "abc+/=").as_bytes()).unwrap();
        assert_eq!(e.appid.as_deref(), Some("wx00000000000000c0"));
        assert_eq!(e.encrypt, "abc+/=");
        let e = parse_envelope(
            b"<xml>\n <ToUserName>wx1</ToUserName>\n <Encrypt>QUJD</Encrypt>\n</xml>",
        )
        .unwrap();
        assert_eq!(e.appid.as_deref(), Some("wx1"));
        assert_eq!(e.encrypt, "QUJD");
    }

    #[test]
    fn a_body_that_is_not_the_envelope_is_refused() {
        for body in [
            &b"not xml at all"[..],
            b"<xml><Encrypt>abc</xml>",
            b"<xml><AppId>x</AppId></xml>",
            b"<xml><Encrypt></Encrypt></xml>",
            b"\xff\xfe<xml/>",
            b"",
        ] {
            assert!(parse_envelope(body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn a_ticket_message_parses_and_hides_the_ticket() {
        let xml = ticket_xml("wx00000000000000c0", 1_700_000_000, "ticket@@@T-123");
        let m = parse_message(xml.as_bytes()).unwrap();
        assert_eq!(m.create_time, 1_700_000_000);
        assert_eq!(m.appid.as_deref(), Some("wx00000000000000c0"));
        match &m.kind {
            CallbackKind::VerifyTicket(t) => assert_eq!(t.0.expose_secret(), "ticket@@@T-123"),
            other => panic!("{other:?}"),
        }
        assert!(!format!("{m:?}").contains("T-123"));
    }

    #[test]
    fn authorization_messages_name_the_mini_program() {
        let appid = "wx0123456789abcdef";
        for (info, ctor) in [
            (
                "authorized",
                CallbackKind::Authorized as fn(AppId) -> CallbackKind,
            ),
            ("updateauthorized", CallbackKind::AuthorizationUpdated),
            ("unauthorized", CallbackKind::Unauthorized),
        ] {
            let m =
                parse_message(authorization_xml("wx00000000000000c0", 5, info, appid).as_bytes())
                    .unwrap();
            assert_eq!(m.kind, ctor(AppId::parse(appid).unwrap()));
            assert_eq!(m.kind.info_type(), info);
        }
    }

    #[test]
    fn an_unknown_info_type_is_other_and_bad_fields_are_errors() {
        let m = parse_message(
            b"<xml><AppId>wx1</AppId><CreateTime>7</CreateTime><InfoType>notify_third_fasteregister</InfoType></xml>",
        )
        .unwrap();
        assert_eq!(
            m.kind,
            CallbackKind::Other("notify_third_fasteregister".into())
        );
        assert_eq!(
            parse_message(b"<xml><InfoType>authorized</InfoType></xml>"),
            Err(XmlError::Missing("CreateTime"))
        );
        assert_eq!(
            parse_message(b"<xml><CreateTime>x</CreateTime><InfoType>a</InfoType></xml>"),
            Err(XmlError::Invalid("CreateTime"))
        );
        assert_eq!(
            parse_message(
                b"<xml><CreateTime>1</CreateTime><InfoType>authorized</InfoType><AuthorizerAppid>nope</AuthorizerAppid></xml>"
            ),
            Err(XmlError::Invalid("AuthorizerAppid"))
        );
    }

    #[test]
    fn cdata_survives_its_own_terminator() {
        let e = parse_envelope(envelope_xml("a]]>b", "x").as_bytes()).unwrap();
        assert_eq!(e.appid.as_deref(), Some("a]]>b"));
    }
}
