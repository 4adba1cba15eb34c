//! The RTP side of a leg (RFC 3550): what arrives, checked and counted, and what is sent,
//! numbered and timestamped. Packets are the project's one RTP type, `rtp::Packet`.

use std::time::Instant;

use bytes::Bytes;
use rtp::{Header, Packet};

/// RFC 3550 A.1: packets in sequence before a new source is believed.
const MIN_SEQUENTIAL: u32 = 2;
/// A jump larger than this is a restart, not loss.
const MAX_DROPOUT: u32 = 3000;
/// Older by at most this much: a late or duplicate packet.
const MAX_MISORDER: u32 = 100;
const SEQ_MOD: u32 = 1 << 16;

/// What [`RtpReceiver::receive`] made of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// In sequence (or reordered within bounds): play it. `extended_seq` counts wraps.
    Accept { extended_seq: u64 },
    /// The first packets of a new source (or of one that restarted its sequence): the leg
    /// should reset its jitter buffer; the packet is accepted.
    NewSource { ssrc: u32, extended_seq: u64 },
    /// Still proving itself in sequence (RFC 3550 A.1 probation): dropped.
    Probation,
    /// A very late, duplicate or wildly out-of-range packet: dropped.
    Discard,
}

/// Reception statistics (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReceptionStats {
    pub ssrc: u32,
    /// Highest extended sequence number received.
    pub highest_seq: u64,
    pub received: u64,
    pub expected: u64,
    /// Cumulative lost (expected − received, not below zero).
    pub lost: u64,
    /// Interarrival jitter, in timestamp units and in milliseconds.
    pub jitter: f64,
    pub jitter_ms: f64,
}

/// The receive side of one stream.
#[derive(Debug, Clone)]
pub struct RtpReceiver {
    clock_rate: u32,
    ssrc: Option<u32>,
    max_seq: u16,
    cycles: u64,
    base_seq: u64,
    bad_seq: u32,
    probation: u32,
    received: u64,
    jitter: f64,
    last_transit: Option<i64>,
    origin: Option<Instant>,
}

impl RtpReceiver {
    pub fn new(clock_rate: u32) -> RtpReceiver {
        RtpReceiver {
            clock_rate,
            ssrc: None,
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: SEQ_MOD + 1,
            probation: MIN_SEQUENTIAL,
            received: 0,
            jitter: 0.0,
            last_transit: None,
            origin: None,
        }
    }

    fn init(&mut self, seq: u16) {
        self.base_seq = u64::from(seq);
        self.max_seq = seq;
        self.bad_seq = SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.jitter = 0.0;
        self.last_transit = None;
    }

    fn extended(&self) -> u64 {
        self.cycles + u64::from(self.max_seq)
    }

    /// Checks a packet's header at its arrival time `now`.
    pub fn receive(&mut self, now: Instant, header: &Header) -> Received {
        let seq = header.sequence_number;
        if self.ssrc != Some(header.ssrc) {
            // A new (or changed) source starts on probation.
            self.ssrc = Some(header.ssrc);
            self.init(seq);
            self.max_seq = seq.wrapping_sub(1);
            self.probation = MIN_SEQUENTIAL;
        }
        let udelta = u32::from(seq.wrapping_sub(self.max_seq));
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init(seq);
                    self.count(now, header);
                    return Received::NewSource { ssrc: header.ssrc, extended_seq: self.extended() };
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return Received::Probation;
        }
        if udelta < MAX_DROPOUT {
            // In order, possibly with a gap.
            if seq < self.max_seq {
                self.cycles += u64::from(SEQ_MOD);
            }
            self.max_seq = seq;
        } else if udelta <= SEQ_MOD - MAX_MISORDER {
            // A big jump: believe it only when the next packet follows it (a restarted sender).
            if u32::from(seq) == self.bad_seq {
                self.init(seq);
                self.count(now, header);
                return Received::NewSource { ssrc: header.ssrc, extended_seq: self.extended() };
            }
            self.bad_seq = (u32::from(seq) + 1) & (SEQ_MOD - 1);
            return Received::Discard;
        } else {
            // Reordered or duplicate, within MAX_MISORDER behind: accepted for the jitter buffer
            // to place or drop; its extended number is behind the highest.
            self.count(now, header);
            let behind = u64::from(SEQ_MOD - udelta);
            return Received::Accept { extended_seq: self.extended().saturating_sub(behind) };
        }
        self.count(now, header);
        Received::Accept { extended_seq: self.extended() }
    }

    /// RFC 3550 A.8: interarrival jitter from transit-time differences.
    fn count(&mut self, now: Instant, header: &Header) {
        self.received += 1;
        let origin = *self.origin.get_or_insert(now);
        let arrival = ((now - origin).as_micros() as i128 * i128::from(self.clock_rate) / 1_000_000) as i64;
        let transit = arrival - i64::from(header.timestamp);
        if let Some(last) = self.last_transit {
            // Timestamps wrap at 2^32: take the difference modulo that.
            let d = (transit - last) as i32;
            self.jitter += (f64::from(d.unsigned_abs()) - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    pub fn stats(&self) -> ReceptionStats {
        let highest = self.extended();
        let expected =
            if self.ssrc.is_some() && self.probation == 0 { highest - self.base_seq + 1 } else { 0 };
        ReceptionStats {
            ssrc: self.ssrc.unwrap_or(0),
            highest_seq: highest,
            received: self.received,
            expected,
            lost: expected.saturating_sub(self.received),
            jitter: self.jitter,
            jitter_ms: self.jitter * 1000.0 / f64::from(self.clock_rate),
        }
    }
}

/// The send side of one stream.
#[derive(Debug, Clone)]
pub struct RtpSender {
    ssrc: u32,
    payload_type: u8,
    seq: u16,
    timestamp: u32,
    /// The last frame was sent (not silence): the next one continues the talk spurt.
    talking: bool,
    pub packets: u64,
    pub octets: u64,
}

impl RtpSender {
    /// `ssrc`, first sequence number and first timestamp should be random (RFC 3550 §5.1).
    pub fn new(ssrc: u32, payload_type: u8, first_seq: u16, first_timestamp: u32) -> RtpSender {
        RtpSender {
            ssrc,
            payload_type,
            seq: first_seq,
            timestamp: first_timestamp,
            talking: false,
            packets: 0,
            octets: 0,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The timestamp the next packet will carry.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    pub fn set_payload_type(&mut self, payload_type: u8) {
        self.payload_type = payload_type;
    }

    /// A packet carrying `samples` samples of `payload`; the marker starts a talk spurt
    /// (RFC 3551 §4.1).
    pub fn packet(&mut self, payload: Bytes, samples: u32) -> Packet {
        let header = Header {
            version: 2,
            marker: !self.talking,
            payload_type: self.payload_type,
            sequence_number: self.seq,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
            ..Header::default()
        };
        self.talking = true;
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(samples);
        self.packets += 1;
        self.octets += payload.len() as u64;
        Packet { header, payload }
    }

    /// `samples` of silence not sent (DTX): the clock runs on, the next packet is marked.
    pub fn skip(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
        self.talking = false;
    }

    /// An event packet (RFC 4733) with its own timestamp and marker, numbered in sequence.
    pub fn event_packet(&mut self, payload_type: u8, timestamp: u32, marker: bool, payload: Bytes) -> Packet {
        let header = Header {
            version: 2,
            marker,
            payload_type,
            sequence_number: self.seq,
            timestamp,
            ssrc: self.ssrc,
            ..Header::default()
        };
        self.seq = self.seq.wrapping_add(1);
        self.packets += 1;
        self.octets += payload.len() as u64;
        Packet { header, payload }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rtc_shared::marshal::{Marshal, Unmarshal};

    use super::*;

    #[allow(clippy::disallowed_methods)] // the origin of virtual time
    fn t0() -> Instant {
        Instant::now()
    }

    fn header(ssrc: u32, seq: u16, ts: u32) -> Header {
        Header { version: 2, payload_type: 0, sequence_number: seq, timestamp: ts, ssrc, ..Header::default() }
    }

    #[test]
    fn a_new_source_is_accepted_after_probation_and_wraps_count() {
        let t0 = t0();
        let mut rx = RtpReceiver::new(8000);
        let start = 65_530u16;
        assert_eq!(rx.receive(t0, &header(7, start, 0)), Received::Probation);
        let second = rx.receive(t0 + Duration::from_millis(20), &header(7, start.wrapping_add(1), 160));
        assert!(matches!(second, Received::NewSource { ssrc: 7, .. }));
        let mut last = 0;
        for i in 2..20u16 {
            match rx.receive(
                t0 + Duration::from_millis(20 * u64::from(i)),
                &header(7, start.wrapping_add(i), 160 * u32::from(i)),
            ) {
                Received::Accept { extended_seq } => last = extended_seq,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(last, 65_536 + 13, "the sequence wrapped once");
        let s = rx.stats();
        assert_eq!((s.received, s.expected, s.lost), (19, 19, 0));
        assert!(s.jitter < 0.5, "perfectly timed packets: jitter {}", s.jitter);
    }

    #[test]
    fn loss_reordering_and_restarts() {
        let t0 = t0();
        let mut rx = RtpReceiver::new(8000);
        for seq in [100u16, 101, 102, 104, 103, 107, 105] {
            rx.receive(t0, &header(1, seq, u32::from(seq) * 160));
        }
        let s = rx.stats();
        // 101..=107 expected after probation (100 was probation), 106 missing.
        assert_eq!((s.expected, s.received, s.lost), (7, 6, 1));
        // A jump of 20000 is discarded once, believed when followed.
        assert_eq!(rx.receive(t0, &header(1, 20_000, 0)), Received::Discard);
        assert!(matches!(rx.receive(t0, &header(1, 20_001, 160)), Received::NewSource { .. }));
        // A different SSRC starts over.
        assert_eq!(rx.receive(t0, &header(2, 5, 0)), Received::Probation);
    }

    #[test]
    fn jitter_follows_rfc_3550() {
        let t0 = t0();
        let mut rx = RtpReceiver::new(8000);
        // Alternate 10 ms early and late around a 20 ms cadence: |D| = 160 timestamp units.
        for i in 0..400u32 {
            let offset = if i % 2 == 0 { 0 } else { 10 };
            let at = t0 + Duration::from_millis(u64::from(20 * i + offset));
            rx.receive(at, &header(9, i as u16, 160 * i));
        }
        let j = rx.stats().jitter;
        assert!((j - 80.0).abs() < 2.0, "J converges to |D|=80 for ±5 ms…: {j}");
        assert!((rx.stats().jitter_ms - 10.0).abs() < 0.3);
    }

    #[test]
    fn sender_numbers_marks_and_serialises() {
        let mut tx = RtpSender::new(0xdead_beef, 0, 65_535, 4_294_967_200);
        let first = tx.packet(Bytes::from_static(&[0xff; 160]), 160);
        let second = tx.packet(Bytes::from_static(&[0xff; 160]), 160);
        assert!(first.header.marker && !second.header.marker);
        assert_eq!(
            (second.header.sequence_number, second.header.timestamp),
            (0, 4_294_967_200u32.wrapping_add(160))
        );
        tx.skip(160 * 10);
        let after_silence = tx.packet(Bytes::from_static(&[0xff; 160]), 160);
        assert!(after_silence.header.marker);
        assert_eq!(after_silence.header.timestamp, 4_294_967_200u32.wrapping_add(160 * 12));
        let wire = after_silence.marshal().unwrap();
        assert_eq!(wire.len(), 12 + 160);
        let parsed = Packet::unmarshal(&mut wire.freeze()).unwrap();
        assert_eq!(parsed.header.version, 2);
        assert_eq!(parsed, after_silence);
    }
}
