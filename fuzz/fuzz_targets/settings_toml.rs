//! The settings parser on arbitrary text as the `--config` file: no panic; a rejection has a
//! message beyond its prefix and each invalid value names its key.
#![no_main]

use envshare::config::Settings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Settings::from_sources(Vec::new(), Some(text)) {
        assert!(e.to_string().len() > "loading settings: ".len());
        for s in e.setting_errors() {
            assert!(s.to_string().contains(s.key));
        }
    }
});
