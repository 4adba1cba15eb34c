//! SRTP and SRTCP from the network: forgeries are dropped, never a panic; and a packet the
//! peer protects comes back byte for byte.
#![no_main]

use gateway::media::srtp::Srtp;
use libfuzzer_sys::fuzz_target;
use sip_stack::sdp::sdes::{Key, SrtpKeys, Suite};

fuzz_target!(|data: &[u8]| {
    let (ours, theirs) = (Key([7; 30]), Key([9; 30]));
    let suite = match data.first() {
        Some(b) if b & 1 == 1 => Suite::AesCm128HmacSha1_32,
        _ => Suite::AesCm128HmacSha1_80,
    };
    let Ok(mut us) = Srtp::new(SrtpKeys { suite, remote: theirs, local: ours }) else { return };
    let Ok(mut peer) = Srtp::new(SrtpKeys { suite, remote: ours, local: theirs }) else { return };
    // Forged or damaged input is dropped.
    let _ = us.unprotect_rtp(data);
    let _ = us.unprotect_rtcp(data);
    // A well-formed packet from the peer round-trips.
    if data.len() >= 12 {
        let mut plain = data.to_vec();
        // Version 2, no padding, extension or CSRCs: a plain 12-byte header and a payload.
        plain[0] = 0x80;
        if let Some(protected) = peer.protect_rtp(&plain) {
            if let Some(back) = us.unprotect_rtp(&protected) {
                assert_eq!(&back[..], &plain[..]);
            }
        }
    }
});
