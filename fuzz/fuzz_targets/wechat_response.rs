//! The WeChat response types (`serde_json`, as the client reads a body) on arbitrary bytes: no
//! panic; an error has a message; an answer that parses survives a round trip unchanged.
#![no_main]

use envshare::wechat::{EnvIdsResponse, QuotaResponse, ShareResponse};
use libfuzzer_sys::fuzz_target;

macro_rules! check {
    ($t:ty, $data:expr) => {
        match serde_json::from_slice::<$t>($data) {
            Ok(parsed) => {
                let again: $t = serde_json::from_value(serde_json::to_value(&parsed).unwrap())
                    .expect("a parsed answer parses again");
                assert_eq!(again, parsed);
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    };
}

fuzz_target!(|data: &[u8]| {
    check!(ShareResponse, data);
    check!(EnvIdsResponse, data);
    check!(QuotaResponse, data);
    if let Ok(r) = serde_json::from_slice::<ShareResponse>(data) {
        let _ = r.confirm_url("wx0123456789abcdef");
        let _ = r.error_for("wx0123456789abcdef");
    }
});
