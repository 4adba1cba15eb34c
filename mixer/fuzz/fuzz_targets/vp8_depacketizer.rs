//! VP8 RTP payloads from anyone: the depacketizer never panics, never holds more than its
//! bound, and a frame it hands on after a loss is a keyframe.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mixer::video::vp8_rtp::{Depacketizer, MAX_FRAME};

fuzz_target!(|data: &[u8]| {
    let mut d = Depacketizer::default();
    let mut out = Vec::new();
    // Each packet: a flags byte (marker, sequence gap, timestamp step), a length byte, the payload.
    let (mut seq, mut ts, mut rest) = (0u16, 0u32, data);
    while let [flags, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        seq = seq.wrapping_add(1 + u16::from(flags & 0x02 != 0));
        ts = ts.wrapping_add(u32::from(flags >> 4) * 3000);
        let before = out.len();
        let waiting = d.needs_keyframe();
        d.push(seq, ts, flags & 0x01 != 0, payload, &mut out);
        if waiting {
            if let Some(first) = out.get(before) {
                assert!(first.keyframe);
            }
        }
        rest = tail;
    }
    assert!(out.iter().all(|f| f.data.len() <= MAX_FRAME && !f.data.is_empty()));
});
