//! H.264 over RTP (RFC 6184), non-interleaved: access units to payloads and back.
//!
//! [`Packetizer`] splits an access unit's NAL units into payloads of at most the MTU: each NAL
//! unit alone (§5.6) when it fits, in FU-A fragments (§5.8) when it does not and the receiver
//! took packetization mode 1; in mode 0 a NAL unit must fit, and one that does not is refused
//! (the encoder keeps its slices within the MTU for such receivers).
//!
//! [`Depacketizer`] rebuilds access units from a leg's packets in sequence order: single NAL
//! units, STAP-A aggregates (§5.7.1) and FU-A fragments, as Annex B bytes a decoder takes. An
//! access unit ends at the marker bit or when the timestamp moves on. A packet lost inside one
//! spoils it, and from then on only a keyframe (an IDR picture) is handed on: the frames after a
//! loss refer to what was lost. Every byte is hostile: lengths are checked, and an access unit
//! that grows past [`MAX_ACCESS_UNIT`] is dropped.

use bytes::Bytes;

/// NAL unit types (H.264 Table 7-1; RFC 6184 Table 1).
const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_STAP_A: u8 = 24;
const NAL_FU_A: u8 = 28;

/// The Annex B start code written before each NAL unit.
const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// The largest access unit rebuilt: a 1080p IDR picture at a high bitrate fits with room.
pub const MAX_ACCESS_UNIT: usize = 2 * 1024 * 1024;

/// What the receiver negotiated (`packetization-mode`, RFC 6184 §8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketizationMode {
    /// Mode 0: one NAL unit a packet.
    SingleNal,
    /// Mode 1: also FU-A (and STAP-A, which we read but do not send).
    NonInterleaved,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketizeError {
    #[error("a NAL unit of {len} bytes does not fit an MTU of {mtu} in packetization mode 0")]
    TooLarge { len: usize, mtu: usize },
    #[error("an MTU of {mtu} bytes leaves no room for a fragment")]
    MtuTooSmall { mtu: usize },
}

/// Splits access units into RTP payloads for one class of receivers.
#[derive(Debug, Clone, Copy)]
pub struct Packetizer {
    pub mode: PacketizationMode,
    /// The largest payload, RTP header excluded.
    pub mtu: usize,
}

impl Packetizer {
    /// Appends the payloads of one access unit (its NAL units without start codes) to `out`;
    /// the last one is the one to send with the marker bit.
    pub fn packetize<'a>(
        &self,
        nals: impl IntoIterator<Item = &'a [u8]>,
        out: &mut Vec<Bytes>,
    ) -> Result<(), PacketizeError> {
        let first = out.len();
        for nal in nals.into_iter().filter(|n| !n.is_empty()) {
            if nal.len() <= self.mtu {
                out.push(Bytes::copy_from_slice(nal));
                continue;
            }
            if self.mode == PacketizationMode::SingleNal {
                out.truncate(first);
                return Err(PacketizeError::TooLarge { len: nal.len(), mtu: self.mtu });
            }
            // FU-A (§5.8): the NAL header's F and NRI in the indicator, its type in the FU
            // header; the header byte itself is not repeated.
            let room = self.mtu.saturating_sub(2);
            if room == 0 {
                out.truncate(first);
                return Err(PacketizeError::MtuTooSmall { mtu: self.mtu });
            }
            let (header, body) = (nal[0], &nal[1..]);
            let count = body.len().div_ceil(room);
            for (i, chunk) in body.chunks(room).enumerate() {
                let mut fu = Vec::with_capacity(2 + chunk.len());
                let start = if i == 0 { 0x80 } else { 0 };
                let end = if i + 1 == count { 0x40 } else { 0 };
                fu.push((header & 0xE0) | NAL_FU_A);
                fu.push(start | end | (header & 0x1F));
                fu.extend_from_slice(chunk);
                out.push(Bytes::from(fu));
            }
        }
        Ok(())
    }
}

/// The NAL units of an Annex B byte stream (start codes of three or four bytes), without them.
pub fn annex_b_nals(stream: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = stream;
    std::iter::from_fn(move || loop {
        let start = find_start_code(rest)?;
        rest = &rest[start.1..];
        let end = find_start_code(rest).map_or(rest.len(), |(at, _)| at);
        let nal = &rest[..end];
        rest = &rest[end..];
        // Trailing zero bytes before the next start code belong to no NAL unit.
        let trimmed = nal.iter().rposition(|&b| b != 0).map_or(&nal[..0], |last| &nal[..=last]);
        if !trimmed.is_empty() {
            return Some(trimmed);
        }
        if rest.is_empty() {
            return None;
        }
    })
}

/// Where the next `00 00 01` starts, and where what follows it starts.
fn find_start_code(bytes: &[u8]) -> Option<(usize, usize)> {
    let at = bytes.windows(3).position(|w| w == [0, 0, 1])?;
    Some((at, at + 3))
}

/// A rebuilt access unit: one picture's NAL units as Annex B bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    pub timestamp: u32,
    pub data: Vec<u8>,
    /// Holds an IDR picture: decodable without what came before.
    pub keyframe: bool,
}

/// Rebuilds a leg's access units; see the module's documentation.
#[derive(Debug, Default)]
pub struct Depacketizer {
    /// The access unit being built, and its timestamp.
    building: Option<Building>,
    /// Sequence number of the last packet taken.
    last_seq: Option<u16>,
    /// Set by a loss; cleared by the next whole keyframe.
    awaiting_keyframe: bool,
    /// Access units dropped: spoiled by a loss, too large, malformed, or waiting for a keyframe.
    pub dropped: u64,
}

#[derive(Debug)]
struct Building {
    timestamp: u32,
    data: Vec<u8>,
    keyframe: bool,
    /// A loss or a malformed payload spoilt it.
    spoilt: bool,
    /// Within an FU-A: the fragments so far belong to one NAL unit.
    in_fragment: bool,
}

impl Depacketizer {
    /// A new leg's depacketizer waits for a keyframe before it hands anything on.
    pub fn new() -> Depacketizer {
        Depacketizer { awaiting_keyframe: true, ..Depacketizer::default() }
    }

    /// Whether the leg's next decodable picture must be a keyframe: the moment to ask its
    /// sender for one (PLI, FIR or SIP INFO), rate-limited by the caller.
    pub fn needs_keyframe(&self) -> bool {
        self.awaiting_keyframe
    }

    /// Takes one packet, in sequence order (the caller reorders); appends to `out` the access
    /// units it completes.
    pub fn push(
        &mut self,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
        out: &mut Vec<AccessUnit>,
    ) {
        let gap = self.last_seq.is_some_and(|last| seq != last.wrapping_add(1));
        self.last_seq = Some(seq);
        if self.building.as_ref().is_some_and(|b| b.timestamp != timestamp) {
            // The timestamp moved on without a marker: the previous one ends here.
            self.finish(out);
        }
        let building = self.building.get_or_insert_with(|| Building {
            timestamp,
            data: Vec::new(),
            keyframe: false,
            spoilt: false,
            in_fragment: false,
        });
        if gap {
            building.spoilt = true;
            self.awaiting_keyframe = true;
        }
        if !building.spoilt && add_payload(building, payload).is_err() {
            building.spoilt = true;
        }
        if building.data.len() > MAX_ACCESS_UNIT {
            building.spoilt = true;
            building.data = Vec::new();
        }
        if marker {
            self.finish(out);
        }
    }

    fn finish(&mut self, out: &mut Vec<AccessUnit>) {
        let Some(b) = self.building.take() else { return };
        let usable = !b.spoilt && !b.in_fragment && !b.data.is_empty();
        if !usable {
            self.dropped += 1;
            self.awaiting_keyframe = true;
            return;
        }
        if self.awaiting_keyframe && !b.keyframe {
            self.dropped += 1;
            return;
        }
        self.awaiting_keyframe = false;
        out.push(AccessUnit { timestamp: b.timestamp, data: b.data, keyframe: b.keyframe });
    }
}

/// Something in a payload that RFC 6184 does not allow.
#[derive(Debug)]
struct Malformed;

/// Adds one payload's NAL units to the access unit.
fn add_payload(b: &mut Building, payload: &[u8]) -> Result<(), Malformed> {
    let (&header, rest) = payload.split_first().ok_or(Malformed)?;
    // The forbidden_zero_bit set marks a NAL unit with errors (§5.3).
    if header & 0x80 != 0 {
        return Err(Malformed);
    }
    match header & 0x1F {
        0 | 30 | 31 | 25..=27 | 29 => Err(Malformed),
        NAL_STAP_A => {
            if b.in_fragment {
                return Err(Malformed);
            }
            let mut rest = rest;
            while !rest.is_empty() {
                let (size, tail) = rest.split_at_checked(2).ok_or(Malformed)?;
                let size = usize::from(u16::from_be_bytes([size[0], size[1]]));
                let (nal, tail) = tail.split_at_checked(size).ok_or(Malformed)?;
                add_nal(b, nal)?;
                rest = tail;
            }
            Ok(())
        }
        NAL_FU_A => {
            let (&fu, body) = rest.split_first().ok_or(Malformed)?;
            let (start, end, kind) = (fu & 0x80 != 0, fu & 0x40 != 0, fu & 0x1F);
            // A fragment of an aggregate or of a fragment, or both ends at once (§5.8).
            if matches!(kind, 0 | NAL_STAP_A..=31) || (start && end) || start == b.in_fragment {
                return Err(Malformed);
            }
            if start {
                b.data.extend_from_slice(&START_CODE);
                b.data.push((header & 0xE0) | kind);
                b.keyframe |= kind == NAL_IDR;
                b.in_fragment = true;
            }
            b.data.extend_from_slice(body);
            if end {
                b.in_fragment = false;
            }
            Ok(())
        }
        _ if b.in_fragment => Err(Malformed),
        _ => add_nal(b, payload),
    }
}

fn add_nal(b: &mut Building, nal: &[u8]) -> Result<(), Malformed> {
    let &header = nal.first().ok_or(Malformed)?;
    let kind = header & 0x1F;
    if header & 0x80 != 0 || matches!(kind, 0 | NAL_STAP_A..=31) {
        return Err(Malformed);
    }
    b.keyframe |= kind == NAL_IDR;
    b.data.extend_from_slice(&START_CODE);
    b.data.extend_from_slice(nal);
    Ok(())
}

/// Whether an access unit starts with parameter sets (SPS): what a decoder joining the stream
/// needs besides the IDR slices.
pub fn has_parameter_sets(au: &[u8]) -> bool {
    annex_b_nals(au).any(|nal| nal[0] & 0x1F == NAL_SPS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An SPS, a PPS and an IDR slice of `idr_len` bytes.
    fn keyframe(idr_len: usize) -> Vec<Vec<u8>> {
        let mut idr = vec![0x65];
        idr.extend((0..idr_len - 1).map(|i| (i % 251) as u8 | 1));
        vec![vec![0x67, 0x42, 0xE0, 0x1F], vec![0x68, 0xCE, 0x3C, 0x80], idr]
    }

    fn annex_b(nals: &[Vec<u8>]) -> Vec<u8> {
        nals.iter().flat_map(|n| START_CODE.iter().copied().chain(n.iter().copied())).collect()
    }

    /// Feeds payloads as packets from `seq`, the last with the marker.
    fn feed(d: &mut Depacketizer, seq: u16, ts: u32, payloads: &[Bytes], out: &mut Vec<AccessUnit>) {
        for (i, p) in payloads.iter().enumerate() {
            d.push(seq.wrapping_add(i as u16), ts, i + 1 == payloads.len(), p, out);
        }
    }

    #[test]
    fn an_access_unit_comes_back_whole_in_both_modes() {
        for (mode, idr_len) in
            [(PacketizationMode::NonInterleaved, 5000), (PacketizationMode::SingleNal, 900)]
        {
            let nals = keyframe(idr_len);
            let p = Packetizer { mode, mtu: 1200 };
            let mut payloads = Vec::new();
            p.packetize(nals.iter().map(Vec::as_slice), &mut payloads).unwrap();
            assert!(payloads.iter().all(|p| p.len() <= 1200), "{mode:?}");
            let expected = if mode == PacketizationMode::SingleNal { 3 } else { 2 + 5 };
            assert_eq!(payloads.len(), expected, "{mode:?}");
            let mut d = Depacketizer::new();
            let mut out = Vec::new();
            feed(&mut d, 65534, 3000, &payloads, &mut out);
            assert_eq!(out, [AccessUnit { timestamp: 3000, data: annex_b(&nals), keyframe: true }]);
            assert!(!d.needs_keyframe() && has_parameter_sets(&out[0].data));
        }
    }

    #[test]
    fn mode_0_refuses_a_nal_unit_past_the_mtu_and_sends_nothing_of_its_access_unit() {
        let p = Packetizer { mode: PacketizationMode::SingleNal, mtu: 1200 };
        let mut payloads = vec![Bytes::from_static(b"earlier")];
        let err = p.packetize(keyframe(1500).iter().map(Vec::as_slice), &mut payloads).unwrap_err();
        assert_eq!(err, PacketizeError::TooLarge { len: 1500, mtu: 1200 });
        assert_eq!(payloads.len(), 1);
    }

    #[test]
    fn a_loss_spoils_its_access_unit_and_only_a_keyframe_is_handed_on_after_it() {
        let p = Packetizer { mode: PacketizationMode::NonInterleaved, mtu: 1000 };
        let mut key = Vec::new();
        p.packetize(keyframe(4000).iter().map(Vec::as_slice), &mut key).unwrap();
        let mut delta = Vec::new();
        p.packetize([&[0x41u8; 3000][..]], &mut delta).unwrap();
        let mut d = Depacketizer::new();
        let mut out = Vec::new();
        let mut seq = 1u16;
        let mut send = |d: &mut Depacketizer,
                        payloads: &[Bytes],
                        ts: u32,
                        skip: Option<usize>,
                        out: &mut Vec<AccessUnit>| {
            for (i, payload) in payloads.iter().enumerate() {
                if Some(i) != skip {
                    d.push(seq.wrapping_add(i as u16), ts, i + 1 == payloads.len(), payload, out);
                }
            }
            seq = seq.wrapping_add(payloads.len() as u16);
        };
        // A delta picture first: nothing to decode it against yet.
        send(&mut d, &delta, 0, None, &mut out);
        assert!(out.is_empty() && d.needs_keyframe());
        send(&mut d, &key, 3000, None, &mut out);
        assert_eq!(out.len(), 1);
        assert!(!d.needs_keyframe());
        // One fragment of the next delta picture lost: it is dropped.
        send(&mut d, &delta, 6000, Some(1), &mut out);
        assert_eq!(out.len(), 1);
        assert!(d.needs_keyframe());
        // A whole delta picture after the loss still refers to it: dropped too.
        send(&mut d, &delta, 9000, None, &mut out);
        assert_eq!((out.len(), d.dropped), (1, 3));
        send(&mut d, &key, 12000, None, &mut out);
        assert_eq!(out.len(), 2);
        assert!(!d.needs_keyframe());
    }

    #[test]
    fn a_stap_a_is_read_and_a_missing_marker_ends_at_the_next_timestamp() {
        let sps = [0x67, 0x42, 0xE0, 0x1F];
        let pps = [0x68, 0xCE, 0x3C, 0x80];
        let mut stap = vec![0x78];
        for nal in [&sps[..], &pps[..]] {
            stap.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            stap.extend_from_slice(nal);
        }
        let mut d = Depacketizer::new();
        let mut out = Vec::new();
        d.push(1, 90, false, &stap, &mut out);
        d.push(2, 90, false, &[0x65, 0x88, 0x84], &mut out);
        // No marker on the last packet: the next timestamp closes it.
        d.push(3, 180, true, &[0x41, 0x9A, 0x02], &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].data, annex_b(&[sps.to_vec(), pps.to_vec(), vec![0x65, 0x88, 0x84]]));
        assert!(out[0].keyframe && !out[1].keyframe);
    }

    #[test]
    fn malformed_payloads_are_dropped_without_a_panic() {
        let bad: [&[u8]; 10] = [
            &[],
            &[0x78, 0x00],             // STAP-A cut in its length
            &[0x78, 0x00, 0x05, 0x65], // STAP-A claiming more than it has
            &[0x78, 0x00, 0x01, 0x65, 0x00],
            &[0x7C],             // FU-A without its header
            &[0x7C, 0x05, 0xAA], // FU-A middle with no start
            &[0x7C, 0xC5, 0xAA], // start and end at once
            &[0x7C, 0x98, 0xAA], // a fragmented STAP-A
            &[0xE5, 0x01],       // forbidden bit
            &[0x1E, 0x01],       // a reserved type
        ];
        let mut d = Depacketizer::new();
        let mut out = Vec::new();
        for (i, payload) in bad.iter().enumerate() {
            d.push(i as u16, i as u32, true, payload, &mut out);
        }
        assert!(out.is_empty());
        assert_eq!(d.dropped, bad.len() as u64);
    }

    #[test]
    fn an_access_unit_that_never_ends_is_bounded() {
        let mut d = Depacketizer::new();
        let mut out = Vec::new();
        d.push(0, 0, false, &[0x7C, 0x85, 1, 2, 3], &mut out);
        let body = vec![7u8; 1400];
        let mut fu = vec![0x7C, 0x05];
        fu.extend_from_slice(&body);
        for seq in 1..2000u16 {
            d.push(seq, 0, false, &fu, &mut out);
            let held = d.building.as_ref().map_or(0, |b| b.data.len());
            assert!(held <= MAX_ACCESS_UNIT + 1500, "{held}");
        }
        d.push(2000, 0, true, &[0x7C, 0x45, 9], &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn annex_b_streams_split_into_nal_units() {
        let stream = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 0, 1, 0x65, 4];
        let nals: Vec<&[u8]> = annex_b_nals(&stream).collect();
        assert_eq!(nals, [&[0x67, 1, 2][..], &[0x68, 3], &[0x65, 4]]);
        assert_eq!(annex_b_nals(&[1, 2, 3]).count(), 0);
    }
}
