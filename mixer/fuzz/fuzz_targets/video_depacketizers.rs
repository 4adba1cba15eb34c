//! Video RTP payloads from anyone, fed to the H.264 and the VP8 depacketizer alike: neither
//! panics nor holds more than its bound, what they hand on starts as it should (Annex B with a
//! valid NAL header; a non-empty frame), and the first thing handed on after a loss is a
//! keyframe. (A NAL unit's own bytes may hold what looks like a start code: hostile input need
//! not keep H.264's emulation prevention, and the decoder is the one to refuse it.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use mixer::video::{h264_rtp, vp8_rtp};

fuzz_target!(|data: &[u8]| {
    let mut h264 = h264_rtp::Depacketizer::new();
    let mut vp8 = vp8_rtp::Depacketizer::default();
    let (mut units, mut frames) = (Vec::new(), Vec::new());
    // Each packet: a flags byte (marker, sequence gap, timestamp step), a length byte, the payload.
    let (mut seq, mut ts, mut rest) = (0u16, 0u32, data);
    while let [flags, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        seq = seq.wrapping_add(1 + u16::from(flags & 0x02 != 0));
        ts = ts.wrapping_add(u32::from(flags >> 4) * 3000);
        let marker = flags & 0x01 != 0;
        let (waiting, before) = (h264.needs_keyframe(), units.len());
        h264.push(seq, ts, marker, payload, &mut units);
        if let (true, Some(first)) = (waiting, units.get(before)) {
            assert!(first.keyframe);
        }
        let (waiting, before) = (vp8.needs_keyframe(), frames.len());
        vp8.push(seq, ts, marker, payload, &mut frames);
        if let (true, Some(first)) = (waiting, frames.get(before)) {
            assert!(first.keyframe);
        }
        rest = tail;
    }
    for au in &units {
        assert!(au.data.len() <= h264_rtp::MAX_ACCESS_UNIT);
        assert!(au.data.starts_with(&[0, 0, 0, 1]));
        assert_eq!(au.data.get(4).map(|header| header & 0x80), Some(0));
    }
    assert!(frames.iter().all(|f| f.data.len() <= vp8_rtp::MAX_FRAME && !f.data.is_empty()));
});
