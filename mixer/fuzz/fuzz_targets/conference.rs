//! Datagrams from the network into a conference: RTP (G.711 with RFC 4733 events and in-band
//! DTMF, Opus, hostile sequence numbers and timestamps for the jitter buffer) and RTCP, with
//! virtual time passing and the mix ticking between them. Nothing may panic, and what goes out
//! must marshal.
//!
//! Input: records of `[control, length, bytes…]`; `control` picks the leg (bit 0), RTP or
//! RTCP (bit 1) and how many 2 ms steps pass first (bits 2-7). An input ends after
//! [`MAX_TICKS`] ticks of the mix: each encodes Opus, and without a bound a long input of short
//! records ran thousands of them, a few inputs a second. The jitter buffer's horizon is well
//! inside it.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use mixer::codec::AudioCodec;
use mixer::conference::{Conference, LegConfig};
use rtc_shared::marshal::{Marshal, Unmarshal};

/// Mix ticks (20 ms each) one input may run: two seconds of virtual time.
const MAX_TICKS: u32 = 100;

fn leg(codec: AudioCodec, payload_type: u8) -> LegConfig {
    LegConfig {
        codec,
        payload_type,
        telephone_event: Some(101),
        inband_dtmf: true,
        ptime: 20,
        ssrc: 0x1234,
        first_seq: 65_530,
        first_timestamp: u32::MAX - 500,
        // Levels (RFC 6464) under id 1, in whatever extension the input carries.
        audio_level: Some(1),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut conference = Conference::new(16_000);
    let legs = [conference.add_leg(leg(AudioCodec::Pcmu, 0)), conference.add_leg(leg(AudioCodec::Opus, 111))];
    let start = Instant::now();
    let mut now = start;
    let mut next_tick = start + Duration::from_millis(20);
    let mut rest = data;
    let mut out = vec![0u8; 2048];
    let mut ticks = 0;
    while let [control, length, tail @ ..] = rest {
        let take = usize::from(*length).min(tail.len());
        let (datagram, after) = tail.split_at(take);
        rest = after;
        now += Duration::from_millis(2 * u64::from(control >> 2));
        while next_tick <= now {
            ticks += 1;
            if ticks > MAX_TICKS {
                return;
            }
            next_tick += Duration::from_millis(20);
            conference.tick(|_, packet| {
                packet.marshal_to(&mut out).expect("our packets marshal");
            });
            while conference.poll_event().is_some() {}
        }
        let leg = legs[usize::from(control & 1)];
        if control & 2 != 0 {
            conference.receive_rtcp(now, leg, datagram);
            let _ = conference.rtcp_report(leg, now, 0);
        } else {
            let mut bytes = datagram;
            if let Ok(packet) = rtp::Packet::unmarshal(&mut bytes) {
                conference.receive(now, leg, &packet);
            }
        }
    }
    for id in legs {
        let _ = conference.stats(id);
    }
});
