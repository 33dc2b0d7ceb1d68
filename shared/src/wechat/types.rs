//! Request and response bodies, as WeChat documents them for batchshareenv and the component token endpoints.
//!
//! Responses are lenient where WeChat is: every list defaults to empty when absent, unknown
//! fields are ignored, and `errcode`/`errmsg` are read by the client before these types (so a
//! successful response type has no errcode field).

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// `source_type` 1: a cloud hosting environment.
pub(crate) const SOURCE_TYPE_CLOUD_HOSTING: u8 = 1;

/// `errcode` and `errmsg`, present (or defaulted) in every answer.
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope {
    #[serde(default)]
    pub errcode: i64,
    #[serde(default)]
    pub errmsg: String,
}

/// Body of `batchshareenv` and `batchunshareenv`.
#[derive(Debug, Serialize)]
pub(crate) struct ShareRequest<'a> {
    pub data: [ShareItem<'a>; 1],
    pub source_type: u8,
}

/// One `{env, appids}` item of [`ShareRequest`].
#[derive(Debug, Serialize)]
pub(crate) struct ShareItem<'a> {
    pub env: &'a str,
    pub appids: Vec<&'a str>,
}

/// Body of `batchgetenvid`.
#[derive(Debug, Serialize)]
pub(crate) struct GetEnvIdsRequest<'a> {
    pub appids: Vec<&'a str>,
    pub source_type: u8,
}

/// Body of `quota/get`.
#[derive(Debug, Serialize)]
pub(crate) struct QuotaRequest<'a> {
    pub cgi_path: &'a str,
}

/// Body of `api_component_token`; holds the secret and ticket only while the request is built.
#[derive(Serialize)]
pub(crate) struct ComponentTokenRequest<'a> {
    pub component_appid: &'a str,
    pub component_appsecret: &'a str,
    pub component_verify_ticket: &'a str,
}

/// Body of `api_start_push_ticket`; holds the secret only while the request is built.
#[derive(Serialize)]
pub(crate) struct StartPushTicketRequest<'a> {
    pub component_appid: &'a str,
    pub component_secret: &'a str,
}

/// Answer of `api_start_push_ticket` when errcode is 0 (nothing but the envelope).
#[derive(Deserialize)]
pub(crate) struct StartPushTicketResponse {}

/// Answer of `api_component_token` when errcode is 0.
#[derive(Deserialize)]
pub(crate) struct ComponentTokenResponse {
    pub component_access_token: String,
    pub expires_in: u64,
}

/// A per-appid failure from `err_list`. WeChat may leave any field out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ItemError {
    /// The env of the failed item (absent in `batchgetenvid` answers).
    #[serde(default)]
    pub env: String,
    /// The Mini Program that failed.
    #[serde(default)]
    pub appid: String,
    /// Why, in WeChat's words.
    #[serde(default)]
    pub errmsg: String,
    /// A per-item errcode, if WeChat sends one (undocumented).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errcode: Option<i64>,
}

/// A confirmation link from `msg_info_list`: the Mini Program's administrator must open it
/// before the binding takes effect.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct MsgInfo {
    /// The Mini Program to confirm.
    #[serde(default)]
    pub appid: String,
    /// The URL its administrator opens.
    #[serde(default)]
    pub url: String,
}

/// Answer of `batchshareenv` / `batchunshareenv` with errcode 0. errcode 0 does not mean every
/// appid succeeded: look at `err_list`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ShareResponse {
    /// Appids WeChat refused.
    #[serde(default)]
    pub err_list: Vec<ItemError>,
    /// Confirmation links for accepted appids.
    #[serde(default)]
    pub msg_info_list: Vec<MsgInfo>,
}

impl ShareResponse {
    /// The `msg_info_list` URL for `appid`, if WeChat sent one.
    pub fn confirm_url(&self, appid: &str) -> Option<&str> {
        self.msg_info_list
            .iter()
            .find(|m| m.appid == appid)
            .map(|m| m.url.as_str())
    }

    /// The `err_list` entry for `appid`, if WeChat refused it.
    pub fn error_for(&self, appid: &str) -> Option<&ItemError> {
        self.err_list.iter().find(|e| e.appid == appid)
    }
}

/// One Mini Program and the envs it is bound to (confirmed bindings only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct EnvRelation {
    /// The Mini Program.
    #[serde(default)]
    pub appid: String,
    /// The envs it uses.
    #[serde(default)]
    pub env_list: Vec<String>,
}

/// Answer of `batchgetenvid` with errcode 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct EnvIdsResponse {
    /// One entry per appid WeChat answered for.
    #[serde(default)]
    pub relation_data: Vec<EnvRelation>,
    /// Appids WeChat refused.
    #[serde(default)]
    pub err_list: Vec<ItemError>,
}

impl EnvIdsResponse {
    /// The envs `appid` is bound to (empty if WeChat did not answer for it).
    pub fn envs_of(&self, appid: &str) -> &[String] {
        self.relation_data
            .iter()
            .find(|r| r.appid == appid)
            .map_or(&[], |r| r.env_list.as_slice())
    }
}

/// Daily quota of one API, from `quota/get`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Quota {
    /// Calls allowed per day.
    #[serde(default)]
    pub daily_limit: i64,
    /// Calls made today.
    #[serde(default)]
    pub used: i64,
    /// Calls left today.
    #[serde(default)]
    pub remain: i64,
}

/// Answer of `quota/get` with errcode 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct QuotaResponse {
    /// The quota of the requested `cgi_path`.
    #[serde(default)]
    pub quota: Quota,
}

/// A fresh `component_access_token`. Debug output redacts the token.
#[derive(Debug, Clone)]
pub struct ComponentToken {
    /// The token, to be passed to the other calls.
    pub token: SecretString,
    /// How long WeChat says it lives (usually 7200 s).
    pub expires_in: Duration,
}
