//! A leg's receive path without codecs, fast enough for long campaigns: RTP header checks and
//! statistics (RFC 3550 A.1, A.8), the jitter buffer's timestamp arithmetic, RFC 4733 events,
//! and RTCP parsing with report bookkeeping. Hostile sequence numbers, timestamps, SSRCs and
//! arrival times; nothing may panic, and playout never hands out more than was pushed.
//!
//! Input: records of `[control, length, bytes…]`; bit 0 of `control` picks RTCP, the other
//! bits how many milliseconds pass first.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use mixer::dtmf::{EventReceiver, EventReport};
use mixer::jitter::{JitterBuffer, Playout};
use mixer::rtcp_session::{decode, RtcpSession};
use mixer::rtp_stream::{Received, RtpReceiver};
use rtc_shared::marshal::Unmarshal;

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let mut now = start;
    let mut receiver = RtpReceiver::new(8000);
    let mut jitter = JitterBuffer::new(8000, Duration::from_millis(20));
    let mut events = EventReceiver::default();
    let mut rtcp = RtcpSession::new();
    let mut next_tick = start;
    let mut rest = data;
    while let [control, length, tail @ ..] = rest {
        let take = usize::from(*length).min(tail.len());
        let (datagram, after) = tail.split_at(take);
        rest = after;
        now += Duration::from_millis(u64::from(control >> 1));
        while next_tick <= now {
            next_tick += Duration::from_millis(20);
            match jitter.pop_due() {
                Playout::Frame { payload, .. } => assert!(payload.len() <= 255),
                Playout::Lost { next, .. } => assert!(next.is_none_or(|p| p.len() <= 255)),
                Playout::Wait => {}
            }
        }
        if control & 1 == 1 {
            if let Some(packets) = decode(datagram) {
                rtcp.receive(now, &packets, 0x1234);
            }
            continue;
        }
        let mut bytes = datagram;
        let Ok(packet) = rtp::Packet::unmarshal(&mut bytes) else { continue };
        match receiver.receive(now, &packet.header) {
            Received::Accept { .. } | Received::NewSource { .. } => {}
            _ => continue,
        }
        if packet.header.payload_type == 101 {
            let _ = EventReport::parse(&packet.payload);
            let _ = events.receive(packet.header.timestamp, &packet.payload);
        } else {
            let level = packet.header.get_extension(1).and_then(|e| e.first().copied());
            jitter.push(now, packet.header.timestamp, &packet.payload, level);
        }
    }
    let _ = (receiver.stats(), jitter.stats(), jitter.buffered());
});
