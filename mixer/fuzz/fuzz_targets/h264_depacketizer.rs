//! H.264 RTP payloads from anyone: the depacketizer never panics, never holds more than its
//! bound, and whatever it hands on is Annex B starting with a NAL unit it was sent. (A NAL
//! unit's own bytes may hold what looks like a start code: hostile input need not keep H.264's
//! emulation prevention, and the decoder is the one to refuse it.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use mixer::video::h264_rtp::{Depacketizer, MAX_ACCESS_UNIT};

fuzz_target!(|data: &[u8]| {
    let mut d = Depacketizer::new();
    let mut out = Vec::new();
    // Each packet: a flags byte (marker, sequence gap, timestamp step), a length byte, the payload.
    let (mut seq, mut ts, mut rest) = (0u16, 0u32, data);
    while let [flags, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        seq = seq.wrapping_add(1 + u16::from(flags & 0x02 != 0));
        ts = ts.wrapping_add(u32::from(flags >> 4) * 3000);
        d.push(seq, ts, flags & 0x01 != 0, payload, &mut out);
        rest = tail;
    }
    for au in &out {
        assert!(au.data.len() <= MAX_ACCESS_UNIT);
        assert!(au.data.starts_with(&[0, 0, 0, 1]));
        assert_eq!(au.data.get(4).map(|header| header & 0x80), Some(0));
    }
});
