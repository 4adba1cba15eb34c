//! A TCP stream in arbitrary chunks: framing never panics and never yields more bytes than
//! it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip_stack::framing::{Frame, StreamFramer};

fuzz_target!(|data: &[u8]| {
    let mut framer = StreamFramer::new();
    let mut taken = 0;
    // The first byte picks the chunk size, so reads split messages anywhere.
    let chunk = usize::from(data.first().copied().unwrap_or(1)).max(1);
    for piece in data.chunks(chunk) {
        framer.push(piece);
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::Message(m))) => taken += m.len(),
                Ok(Some(Frame::Ping)) => taken += 4,
                Ok(None) | Err(_) => break,
            }
        }
    }
    assert!(taken <= data.len());
});
