//! The settings parser on an arbitrary environment, one `NAME=VALUE` a line: no panic; each
//! invalid value names its variable; a secret's value is never kept in an error.
#![no_main]

use envshare::config::Settings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let vars: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    if let Err(e) = Settings::from_sources(vars, None) {
        assert!(e.to_string().len() > "loading settings: ".len());
        for s in e.setting_errors() {
            assert!(s.to_string().contains(&s.variable));
            if matches!(s.key, "component_appsecret" | "access_token") {
                assert!(s.value.is_none());
            }
        }
    }
});
