//! The WeChat third-party platform API: a client, its wire types and the errcode table.
//!
//! - [`WechatClient`] owns one `reqwest::Client` and calls the five WeChat endpoints envshare needs.
//!   Bodies are read with a [`MAX_RESPONSE_BYTES`] cap; redirects are never followed.
//! - Every failure is a [`WechatError`] that names the endpoint, knows its [`ErrorClass`]
//!   ([`WechatError::class`]) and whether the request may have been applied
//!   ([`WechatError::outcome_unknown`]).
//! - [`classify`] is the errcode table (docs/reliability.md), in one `match`.
//! - [`crypt`] is WeChat's message encryption (WXBizMsgCrypt) and [`callback`] the XML of the
//!   pushes to the platform's authorization event URL.
//!
//! The access token travels as a query parameter, so no error, Debug output or log line of this
//! module contains a URL: reqwest errors are stripped of theirs, and the tracing spans record
//! only the endpoint, the env and counts.

pub mod callback;
mod client;
pub mod crypt;
mod error;
mod types;

pub use client::{ClientBuildError, MAX_RESPONSE_BYTES, WechatClient};
pub use error::{Endpoint, ErrorClass, WechatError, classify, is_token_config_error};
pub use types::{
    ComponentToken, EnvIdsResponse, EnvRelation, ItemError, MsgInfo, Quota, QuotaResponse,
    ShareResponse,
};
