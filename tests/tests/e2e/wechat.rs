//! Tests: wechat.
