//! Authorization and WWW-Authenticate values from anyone: parsing and verifying never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip_stack::digest::{Challenge, DigestClient, DigestResponse, DigestServer};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Challenge::parse(text);
    let mut client = DigestClient::default();
    let _ = client.on_challenges([text]);
    if let Ok(response) = DigestResponse::parse(text) {
        let mut server = DigestServer::new("fuzz", [1; 32], 300);
        let _ = server.verify(1000, "REGISTER", &response, "00000000000000000000000000000000");
    }
});
