//! DTMF: RFC 4733 telephone-events in and out, and in-band tone detection.
//!
//! - [`EventReceiver`] turns telephone-event payloads into digits: one digit per event,
//!   recognised by its RTP timestamp, with or without the marker bit, however many updates and
//!   end-packet retransmissions arrive (RFC 4733 §2.5.1).
//! - [`EventSender`] plays a digit as event packets: a first packet with the marker, updates
//!   every frame with a growing duration, and the end packet three times (§2.5.1.4).
//! - [`ToneDetector`] finds DTMF tone pairs in 8 kHz audio with Goertzel filters, for callers
//!   whose network strips telephone-events. A digit needs both tones, each group's tone clearly
//!   above the other frequencies of its group, a twist within limits, and 40 ms of presence
//!   followed by a pause before the next (ITU-T Q.24 timing).

use crate::tone::goertzel_power;

/// The 16 events 0-15 as characters: 0-9, *, #, A-D (RFC 4733 §3.2).
pub fn event_char(event: u8) -> Option<char> {
    "0123456789*#ABCD".chars().nth(usize::from(event))
}

pub fn char_event(digit: char) -> Option<u8> {
    "0123456789*#ABCD".find(digit.to_ascii_uppercase()).map(|i| i as u8)
}

/// One telephone-event report (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventReport {
    pub event: u8,
    pub end: bool,
    /// Power level, 0 to -63 dBm0 (stored positive).
    pub volume: u8,
    /// In timestamp units since the event's start.
    pub duration: u16,
}

impl EventReport {
    pub fn parse(payload: &[u8]) -> Option<EventReport> {
        let b = payload.get(..4)?;
        Some(EventReport {
            event: b[0],
            end: b[1] & 0x80 != 0,
            volume: b[1] & 0x3f,
            duration: u16::from_be_bytes([b[2], b[3]]),
        })
    }

    pub fn to_bytes(self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [self.event, (u8::from(self.end) << 7) | (self.volume & 0x3f), d[0], d[1]]
    }
}

/// Digits from telephone-event packets.
#[derive(Debug, Clone, Default)]
pub struct EventReceiver {
    /// RTP timestamp of the event last reported.
    current: Option<u32>,
}

impl EventReceiver {
    /// A telephone-event packet: returns the digit when it starts a new event.
    pub fn receive(&mut self, timestamp: u32, payload: &[u8]) -> Option<char> {
        let report = EventReport::parse(payload)?;
        // Every packet of one event carries the event's start timestamp; a new timestamp is a
        // new event whether or not its marker survived.
        if self.current == Some(timestamp) {
            return None;
        }
        self.current = Some(timestamp);
        event_char(report.event)
    }
}

/// Sends one digit as telephone-event packets, one per frame tick.
#[derive(Debug, Clone)]
pub struct EventSender {
    event: u8,
    start: u32,
    /// Timestamp units per tick, and in the whole tone.
    step: u16,
    length: u16,
    elapsed: u16,
    end_sent: u8,
}

/// A packet to send: payload, the event's start timestamp, marker.
pub type EventPacket = ([u8; 4], u32, bool);

impl EventSender {
    /// `digit` starting at RTP timestamp `start`, lasting `length` timestamp units, one packet
    /// per `step` units.
    pub fn new(digit: char, start: u32, step: u16, length: u16) -> Option<EventSender> {
        Some(EventSender { event: char_event(digit)?, start, step, length, elapsed: 0, end_sent: 0 })
    }

    /// The next packet, or `None` when the event is complete.
    pub fn next_packet(&mut self) -> Option<EventPacket> {
        if self.end_sent >= 3 {
            return None;
        }
        let marker = self.elapsed == 0;
        self.elapsed = self.elapsed.saturating_add(self.step).min(self.length);
        let end = self.elapsed >= self.length;
        if end {
            self.end_sent += 1;
        }
        let report = EventReport { event: self.event, end, volume: 10, duration: self.elapsed };
        Some((report.to_bytes(), self.start, marker))
    }
}

const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
const COLUMNS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYS: [[char; 4]; 4] =
    [['1', '2', '3', 'A'], ['4', '5', '6', 'B'], ['7', '8', '9', 'C'], ['*', '0', '#', 'D']];

/// In-band DTMF detection on 8 kHz audio, frame by frame (20 ms frames).
#[derive(Debug, Clone, Default)]
pub struct ToneDetector {
    /// The key seen in the previous frame, and for how many frames in a row.
    candidate: Option<char>,
    frames: u32,
    /// The last digit reported is still sounding.
    reported: Option<char>,
}

/// Minimum power of each tone (mean square): about -30 dBm0.
const MIN_TONE_POWER: f64 = 2.0e4;
/// Largest power difference between the two tones, dB (Q.24 twist, both directions).
const MAX_TWIST_DB: f64 = 8.0;
/// Each tone must beat the others of its group by this much, dB.
const GROUP_MARGIN_DB: f64 = 10.0;
/// The two tones must hold this share of the frame's power. A 20 ms Goertzel bin loses up to
/// 3 dB on a tone 1.5 % off its nominal frequency (Q.24 asks that such tones still count).
const MIN_TONE_SHARE: f64 = 0.5;

impl ToneDetector {
    pub fn new() -> ToneDetector {
        ToneDetector::default()
    }

    /// Which key one frame holds, if any.
    fn key_of(frame: &[i16]) -> Option<char> {
        let row: Vec<f64> = ROWS.iter().map(|&f| goertzel_power(frame, 8000, f)).collect();
        let col: Vec<f64> = COLUMNS.iter().map(|&f| goertzel_power(frame, 8000, f)).collect();
        let best = |p: &[f64]| -> Option<(usize, f64)> {
            let (i, &max) = p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))?;
            let margin = p
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .all(|(_, &o)| max > o * 10f64.powf(GROUP_MARGIN_DB / 10.0));
            (max >= MIN_TONE_POWER && margin).then_some((i, max))
        };
        let (r, rp) = best(&row)?;
        let (c, cp) = best(&col)?;
        if (10.0 * (rp / cp).log10()).abs() > MAX_TWIST_DB {
            return None;
        }
        let total = crate::tone::power(frame);
        ((rp + cp) >= MIN_TONE_SHARE * total).then_some(KEYS[r][c])
    }

    /// One 20 ms frame at 8 kHz: returns a digit when one has been present for 40 ms, once per
    /// keypress.
    pub fn process(&mut self, frame: &[i16]) -> Option<char> {
        let key = ToneDetector::key_of(frame);
        if key.is_some() && key == self.candidate {
            self.frames += 1;
        } else {
            self.candidate = key;
            self.frames = u32::from(key.is_some());
        }
        match key {
            None => {
                self.reported = None;
                None
            }
            Some(k) if self.frames >= 2 && self.reported != Some(k) => {
                self.reported = Some(k);
                Some(k)
            }
            Some(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone::Sine;

    fn key_frames(digit: char, ms: usize, detune: f64, low_db: f64) -> Vec<i16> {
        let (r, c) = (0..16).map(|i| (i / 4, i % 4)).find(|&(r, c)| KEYS[r][c] == digit).unwrap();
        let mut pcm = vec![0i16; ms * 8];
        let low_amp = 0.2 * 10f64.powf(low_db / 20.0);
        Sine::new(8000, ROWS[r] * (1.0 + detune), low_amp).fill(&mut pcm);
        Sine::new(8000, COLUMNS[c] * (1.0 + detune), 0.2).add_to(&mut pcm);
        pcm
    }

    fn detect(pcm: &[i16]) -> String {
        let mut d = ToneDetector::new();
        pcm.chunks(160).filter_map(|f| d.process(f)).collect()
    }

    fn keyed(digits: &str, tone_ms: usize, gap_ms: usize, detune: f64, low_db: f64) -> Vec<i16> {
        let mut pcm = Vec::new();
        for d in digits.chars() {
            pcm.extend(key_frames(d, tone_ms, detune, low_db));
            pcm.extend(vec![0i16; gap_ms * 8]);
        }
        pcm
    }

    #[test]
    fn every_key_is_detected_once() {
        assert_eq!(detect(&keyed("0123456789*#ABCD", 100, 60, 0.0, 0.0)), "0123456789*#ABCD");
        // A long press is still one digit.
        assert_eq!(detect(&keyed("55", 400, 60, 0.0, 0.0)), "55");
    }

    #[test]
    fn q24_tolerances() {
        // ±1.5 % frequency deviation and up to 6 dB twist are accepted.
        assert_eq!(detect(&keyed("4321#", 80, 60, 0.015, 0.0)), "4321#");
        assert_eq!(detect(&keyed("4321#", 80, 60, -0.015, 0.0)), "4321#");
        assert_eq!(detect(&keyed("987", 80, 60, 0.0, -6.0)), "987");
        // Too short (20 ms) or too much twist (12 dB) is not a digit.
        assert_eq!(detect(&keyed("1", 20, 60, 0.0, 0.0)), "");
        assert_eq!(detect(&keyed("1", 100, 60, 0.0, -12.0)), "");
    }

    #[test]
    fn single_tones_and_chords_are_not_digits() {
        let mut tone = vec![0i16; 8000];
        Sine::new(8000, 697.0, 0.3).fill(&mut tone);
        assert_eq!(detect(&tone), "");
        let mut chord = vec![0i16; 8000];
        Sine::new(8000, 440.0, 0.2).fill(&mut chord);
        Sine::new(8000, 554.0, 0.2).add_to(&mut chord);
        Sine::new(8000, 1209.0, 0.05).add_to(&mut chord);
        assert_eq!(detect(&chord), "");
    }

    #[test]
    fn rfc4733_events_give_one_digit_each() {
        let mut rx = EventReceiver::default();
        let mut digits = String::new();
        // "4", "#", "4": updates, end packets three times, no marker on the second event.
        for (ts, event, end) in [
            (1000, 4, false),
            (1000, 4, false),
            (1000, 4, true),
            (1000, 4, true),
            (1000, 4, true),
            (2600, 11, false),
            (2600, 11, true),
            (2600, 11, true),
            (4200, 4, true),
        ] {
            let payload = EventReport { event, end, volume: 10, duration: 400 }.to_bytes();
            digits.extend(rx.receive(ts, &payload));
        }
        assert_eq!(digits, "4#4");
        assert_eq!(rx.receive(9000, &[1, 2]), None, "short payloads are ignored");
    }

    #[test]
    fn the_sender_follows_rfc4733_and_the_receiver_understands_it() {
        let mut tx = EventSender::new('7', 5000, 160, 800).unwrap();
        let packets: Vec<EventPacket> = std::iter::from_fn(|| tx.next_packet()).collect();
        // 800 units in steps of 160: 5 packets, the last one ending; then two more ends.
        assert_eq!(packets.len(), 7);
        assert!(packets[0].2 && packets[1..].iter().all(|p| !p.2), "marker on the first only");
        let reports: Vec<EventReport> = packets.iter().map(|p| EventReport::parse(&p.0).unwrap()).collect();
        assert_eq!(
            reports.iter().map(|r| r.duration).collect::<Vec<_>>(),
            [160, 320, 480, 640, 800, 800, 800]
        );
        assert_eq!(reports.iter().filter(|r| r.end).count(), 3);
        assert!(packets.iter().all(|p| p.1 == 5000));
        let mut rx = EventReceiver::default();
        let heard: String = packets.iter().filter_map(|p| rx.receive(p.1, &p.0)).collect();
        assert_eq!(heard, "7");
        assert!(EventSender::new('x', 0, 160, 800).is_none());
    }
}
