//! An SDP offer from anyone: parsing and answering it never panics, and an answer we make is
//! SDP we can parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip_stack::sdp::sdes::{Key, Srtp, KEY_LEN};
use sip_stack::sdp::{answer, parse, Direction, LocalAudio, G722, OPUS, PCMU};

fuzz_target!(|data: &[u8]| {
    let Ok(offer) = parse(data) else { return };
    let local = LocalAudio {
        address: [127, 0, 0, 1].into(),
        port: 20000,
        codecs: vec![OPUS, G722, PCMU],
        ptime: 20,
        direction: Direction::SendRecv,
        // SDES crypto lines are read too.
        srtp: Srtp::Optional(Key([1; KEY_LEN])),
    };
    if let Ok((ours, _)) = answer(&offer, &local, 1, 1) {
        parse(ours.to_string().as_bytes()).expect("our answer parses");
    }
});
