//! Any text a join page (or anyone reaching `/ws`) sends: parsed at the edge or refused with a
//! reason, never a panic; what parses passed every field limit.
#![no_main]

use gateway::signalling::webrtc::signal::ClientMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ClientMessage::parse(text);
    }
});
