//! An SDP offer from anyone: parsing and answering it never panics, and an answer we make is
//! SDP we can parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip_stack::sdp::{answer, parse, Direction, LocalAudio, G722, OPUS, PCMU};

fuzz_target!(|data: &[u8]| {
    let Ok(offer) = parse(data) else { return };
    let local = LocalAudio {
        address: [127, 0, 0, 1].into(),
        port: 20000,
        codecs: vec![OPUS, G722, PCMU],
        ptime: 20,
        direction: Direction::SendRecv,
    };
    if let Ok((ours, _)) = answer(&offer, &local, 1, 1) {
        parse(ours.to_string().as_bytes()).expect("our answer parses");
    }
});
