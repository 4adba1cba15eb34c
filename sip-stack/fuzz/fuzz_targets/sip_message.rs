//! Any bytes from the network: parse, answer with 400 if possible, and a message that parses
//! must print and parse back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip_stack::message::{bad_request, parse, request_bytes, response_bytes, Inbound};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(first) => {
            let printed = match &first {
                Inbound::Request(r) => request_bytes(&r.request),
                Inbound::Response(r) => response_bytes(&r.response),
            };
            // What we print, we must read back the same.
            if let Ok(second) = parse(&printed) {
                assert_eq!(first, second);
            }
        }
        Err(e) => {
            if let Some(reply) = bad_request(data, &e, "tag", "fuzz", "INVITE, BYE") {
                // Our own 400 is always a message we can parse.
                let _ = parse(&reply);
            }
        }
    }
});
