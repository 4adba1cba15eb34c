//! VP8 over RTP (RFC 7741): frames to payloads and back.
//!
//! Each payload starts with the payload descriptor (§4.2). [`Packetizer`] writes the short form
//! we need: the extension byte with a 15-bit picture ID, `S` on a frame's first packet,
//! partition index 0. [`Depacketizer`] reads any valid descriptor, rebuilds frames in sequence
//! order (a frame starts at `S` with partition 0 and ends at the marker bit or a new
//! timestamp), and after a loss hands on nothing until the next keyframe, as the H.264 one
//! does. Frames are bounded by [`MAX_FRAME`].

use bytes::Bytes;

/// The largest frame rebuilt.
pub const MAX_FRAME: usize = 2 * 1024 * 1024;

/// Splits VP8 frames into payloads of at most `mtu` bytes.
#[derive(Debug, Clone, Copy)]
pub struct Packetizer {
    pub mtu: usize,
    /// The next frame's picture ID (15 bits).
    pub picture_id: u16,
}

impl Packetizer {
    /// Appends the payloads of one frame to `out`; the last is sent with the marker bit.
    pub fn packetize(&mut self, frame: &[u8], out: &mut Vec<Bytes>) {
        const DESCRIPTOR: usize = 4;
        let room = self.mtu.saturating_sub(DESCRIPTOR).max(1);
        let id = self.picture_id & 0x7FFF;
        for (i, chunk) in frame.chunks(room).enumerate() {
            let mut payload = Vec::with_capacity(DESCRIPTOR + chunk.len());
            // X, S on the first; I with M (15-bit picture ID).
            payload.push(0x80 | if i == 0 { 0x10 } else { 0 });
            payload.push(0x80);
            payload.push(0x80 | (id >> 8) as u8);
            payload.push(id as u8);
            payload.extend_from_slice(chunk);
            out.push(Bytes::from(payload));
        }
        self.picture_id = (id + 1) & 0x7FFF;
    }
}

/// A payload's descriptor, read: where the frame data starts, and whether it begins a frame.
fn descriptor(payload: &[u8]) -> Option<(usize, bool)> {
    let first = *payload.first()?;
    let (x, s, pid) = (first & 0x80 != 0, first & 0x10 != 0, first & 0x07);
    let mut at = 1;
    if x {
        let ext = *payload.get(at)?;
        at += 1;
        if ext & 0x80 != 0 {
            // Picture ID: 7 bits, or 15 with M.
            let m = payload.get(at)? & 0x80 != 0;
            at += if m { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            at += 1; // TL0PICIDX
        }
        if ext & 0x30 != 0 {
            at += 1; // TID/Y/KEYIDX
        }
    }
    (at < payload.len()).then_some((at, s && pid == 0))
}

/// A rebuilt frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vp8Frame {
    pub timestamp: u32,
    pub data: Vec<u8>,
    pub keyframe: bool,
}

/// Whether a frame's data is a keyframe: the inverse key frame flag of its first byte (RFC
/// 6386 §9.1) clear.
pub fn is_keyframe(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 0x01 == 0)
}

/// Rebuilds a leg's VP8 frames.
#[derive(Debug)]
pub struct Depacketizer {
    building: Option<(u32, Vec<u8>, bool)>,
    last_seq: Option<u16>,
    awaiting_keyframe: bool,
    /// Frames dropped: cut by a loss, malformed, too large, or before a keyframe.
    pub dropped: u64,
}

impl Default for Depacketizer {
    fn default() -> Depacketizer {
        Depacketizer { building: None, last_seq: None, awaiting_keyframe: true, dropped: 0 }
    }
}

impl Depacketizer {
    /// Whether the leg's next decodable frame must be a keyframe.
    pub fn needs_keyframe(&self) -> bool {
        self.awaiting_keyframe
    }

    /// Takes one packet in sequence order; appends to `out` the frames it completes.
    pub fn push(&mut self, seq: u16, timestamp: u32, marker: bool, payload: &[u8], out: &mut Vec<Vp8Frame>) {
        let gap = self.last_seq.is_some_and(|last| seq != last.wrapping_add(1));
        self.last_seq = Some(seq);
        if self.building.as_ref().is_some_and(|(ts, ..)| *ts != timestamp) {
            self.finish(out);
        }
        let parsed = descriptor(payload);
        if gap {
            self.spoil();
        }
        match parsed {
            Some((at, true)) => {
                // A new frame: whatever was being built without its end is lost.
                if self.building.is_some() {
                    self.spoil();
                }
                self.building = Some((timestamp, payload[at..].to_vec(), true));
            }
            Some((at, false)) => match &mut self.building {
                Some((_, data, whole)) if *whole => {
                    data.extend_from_slice(&payload[at..]);
                    if data.len() > MAX_FRAME {
                        *whole = false;
                        *data = Vec::new();
                    }
                }
                Some(_) => {}
                // The middle of a frame whose start we never had.
                None => self.building = Some((timestamp, Vec::new(), false)),
            },
            None => self.spoil(),
        }
        if marker {
            self.finish(out);
        }
    }

    /// The frame being built is lost.
    fn spoil(&mut self) {
        if let Some((_, data, whole)) = &mut self.building {
            *whole = false;
            data.clear();
        }
        self.awaiting_keyframe = true;
    }

    fn finish(&mut self, out: &mut Vec<Vp8Frame>) {
        let Some((timestamp, data, whole)) = self.building.take() else { return };
        if !whole || data.is_empty() {
            self.dropped += 1;
            self.awaiting_keyframe = true;
            return;
        }
        let keyframe = is_keyframe(&data);
        if self.awaiting_keyframe && !keyframe {
            self.dropped += 1;
            return;
        }
        self.awaiting_keyframe = false;
        out.push(Vp8Frame { timestamp, data, keyframe });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame of `len` bytes; a keyframe when `key`.
    fn frame(len: usize, key: bool) -> Vec<u8> {
        let mut f: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        f[0] = if key { 0x10 } else { 0x11 };
        f
    }

    #[test]
    fn frames_come_back_whole_and_a_loss_waits_for_a_keyframe() {
        let mut p = Packetizer { mtu: 1200, picture_id: 0x7FFE };
        let (key, delta) = (frame(5000, true), frame(2500, false));
        let mut d = Depacketizer::default();
        let mut out = Vec::new();
        let mut seq = 10u16;
        let mut send =
            |d: &mut Depacketizer, f: &[u8], ts: u32, skip: Option<usize>, out: &mut Vec<Vp8Frame>| {
                let mut payloads = Vec::new();
                p.packetize(f, &mut payloads);
                assert!(payloads.iter().all(|p| p.len() <= 1200));
                for (i, payload) in payloads.iter().enumerate() {
                    if Some(i) != skip {
                        d.push(seq.wrapping_add(i as u16), ts, i + 1 == payloads.len(), payload, out);
                    }
                }
                seq = seq.wrapping_add(payloads.len() as u16);
            };
        send(&mut d, &delta, 0, None, &mut out);
        assert!(out.is_empty() && d.needs_keyframe(), "no keyframe yet");
        send(&mut d, &key, 3000, None, &mut out);
        send(&mut d, &delta, 6000, None, &mut out);
        assert_eq!(
            out.iter().map(|f| (f.data.len(), f.keyframe)).collect::<Vec<_>>(),
            [(5000, true), (2500, false)]
        );
        assert_eq!(out[0].data, key);
        send(&mut d, &delta, 9000, Some(1), &mut out);
        send(&mut d, &delta, 12000, None, &mut out);
        assert_eq!((out.len(), d.dropped), (2, 3));
        send(&mut d, &key, 15000, None, &mut out);
        assert_eq!(out.len(), 3);
        // The picture ID wrapped at 15 bits.
        assert_eq!(p.picture_id, 4);
    }

    #[test]
    fn descriptors_of_every_shape_are_read_and_broken_ones_dropped() {
        // X with I (7-bit), L, T/K; S, PID 0.
        assert_eq!(descriptor(&[0x90, 0xF0, 0x05, 0x01, 0x02, 0xAA]), Some((5, true)));
        // No extension, not a start.
        assert_eq!(descriptor(&[0x00, 0xAA]), Some((1, false)));
        // S but partition 1: not a frame's start.
        assert_eq!(descriptor(&[0x11, 0xAA]), Some((1, false)));
        for broken in [&[][..], &[0x80], &[0x80, 0x80], &[0x80, 0x80, 0x80, 0x01], &[0x90]] {
            assert_eq!(descriptor(broken), None, "{broken:?}");
        }
        let mut d = Depacketizer::default();
        let mut out = Vec::new();
        for (i, payload) in [&[0x90u8, 0x80][..], &[0x10], &[0x00, 0x01]].iter().enumerate() {
            d.push(i as u16, i as u32, true, payload, &mut out);
        }
        assert!(out.is_empty());
    }

    #[test]
    fn a_frame_that_never_ends_is_bounded() {
        let mut d = Depacketizer::default();
        let mut out = Vec::new();
        d.push(0, 0, false, &[0x10, 0x10, 1, 2], &mut out);
        let mut middle = vec![0x00];
        middle.extend_from_slice(&[9u8; 1400]);
        for seq in 1..2000u16 {
            d.push(seq, 0, false, &middle, &mut out);
            let held = d.building.as_ref().map_or(0, |(_, data, _)| data.len());
            assert!(held <= MAX_FRAME + 1400, "{held}");
        }
        d.push(2000, 0, true, &middle, &mut out);
        assert!(out.is_empty());
    }
}
