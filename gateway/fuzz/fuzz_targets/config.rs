//! Any config file: a typed config or an error naming the key, never a panic.
#![no_main]

use std::path::Path;

use gateway::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = Config::parse(text, Path::new("fuzz.toml")) {
            let _ = e.to_string();
        }
    }
});
