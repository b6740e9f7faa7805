//! The gateway's configuration loader (`Config::from_yaml`) on arbitrary text: never panics.
//! The file is the operator's, but it is reread on every change (`routes.rs`), so a half
//! written or corrupted file must be refused, never crash the gateway.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::MAX_INPUT;
use portcullis_gateway::config::Config;

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    if let Ok(text) = std::str::from_utf8(data) {
        // Refused or accepted, either is fine: only a panic is a finding.
        let verdict = Config::from_yaml(text);
        std::hint::black_box(&verdict);
    }
});
