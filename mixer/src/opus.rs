//! Opus (RFC 6716, RTP per RFC 7587) through libopus, mono at 48 kHz.
//!
//! libopus keeps each encoder and decoder state in one position-independent block that "can be
//! freely copied" (opus.h): the states here own such a block, so they are `Clone` like the other
//! codecs' states. That matters to the conference, where a listener who starts talking takes a
//! copy of the shared encoder to continue the stream it was decoding.
//!
//! The encoder runs in VoIP mode with in-band FEC, so a peer can rebuild a lost packet from the
//! next one; the decoder uses the next packet's FEC data when a packet is lost and that one is
//! already here, and libopus's concealment otherwise (which is also how silence during the
//! peer's DTX is played out).

use std::os::raw::c_int;

use audiopus_sys as ffi;

/// Samples per channel in a 20 ms frame at 48 kHz.
pub const FRAME: usize = 960;
pub const RATE: u32 = 48_000;
/// Encoder bitrate: wideband speech with FEC headroom.
const BITRATE: i32 = 32_000;
/// The loss the encoder plans its FEC for, in percent.
const EXPECTED_LOSS_PERCENT: i32 = 10;

/// A state block with the alignment libopus's structs need.
#[derive(Clone)]
struct State(Vec<u128>);

impl State {
    fn new(bytes: c_int) -> State {
        let bytes = usize::try_from(bytes).unwrap_or(0);
        State(vec![0; bytes.div_ceil(16)])
    }

    fn ptr<T>(&mut self) -> *mut T {
        self.0.as_mut_ptr().cast()
    }
}

#[derive(Clone)]
pub struct OpusEncoder {
    state: State,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpusEncoder")
    }
}

impl Default for OpusEncoder {
    fn default() -> OpusEncoder {
        OpusEncoder::new()
    }
}

impl OpusEncoder {
    pub fn new() -> OpusEncoder {
        // SAFETY: libopus sizes the state for one channel; init writes only within it.
        unsafe {
            let mut state = State::new(ffi::opus_encoder_get_size(1));
            let st = state.ptr::<ffi::OpusEncoder>();
            let init = ffi::opus_encoder_init(st, RATE as i32, 1, ffi::OPUS_APPLICATION_VOIP);
            // Valid constant arguments: init cannot fail but for a broken libopus.
            assert_eq!(init, ffi::OPUS_OK, "opus_encoder_init");
            ffi::opus_encoder_ctl(st, ffi::OPUS_SET_BITRATE_REQUEST, BITRATE);
            ffi::opus_encoder_ctl(st, ffi::OPUS_SET_INBAND_FEC_REQUEST, 1 as c_int);
            ffi::opus_encoder_ctl(st, ffi::OPUS_SET_PACKET_LOSS_PERC_REQUEST, EXPECTED_LOSS_PERCENT);
            ffi::opus_encoder_ctl(st, ffi::OPUS_SET_COMPLEXITY_REQUEST, 5 as c_int);
            OpusEncoder { state }
        }
    }

    /// Encodes one 20 ms frame (960 samples); returns the bytes written (0 on error).
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> usize {
        if pcm.len() < FRAME {
            return 0;
        }
        // SAFETY: pcm holds FRAME samples, out is writable for its length.
        let n = unsafe {
            ffi::opus_encode(
                self.state.ptr(),
                pcm.as_ptr(),
                FRAME as c_int,
                out.as_mut_ptr(),
                out.len().min(1500) as i32,
            )
        };
        usize::try_from(n).unwrap_or(0)
    }
}

#[derive(Clone)]
pub struct OpusDecoder {
    state: State,
    /// Calls into libopus so far.
    pub runs: u64,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpusDecoder")
    }
}

impl Default for OpusDecoder {
    fn default() -> OpusDecoder {
        OpusDecoder::new()
    }
}

impl OpusDecoder {
    pub fn new() -> OpusDecoder {
        // SAFETY: as for the encoder.
        unsafe {
            let mut state = State::new(ffi::opus_decoder_get_size(1));
            let init = ffi::opus_decoder_init(state.ptr(), RATE as i32, 1);
            assert_eq!(init, ffi::OPUS_OK, "opus_decoder_init");
            OpusDecoder { state, runs: 0 }
        }
    }

    /// Decodes a packet into `out` (at least 960 samples for 20 ms; up to 5760 for the longest
    /// packets); returns the samples written. A broken packet decodes as a lost one.
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> usize {
        let n = self.run(Some(payload), out, out.len(), false);
        if n == 0 {
            let frame = FRAME.min(out.len());
            return self.conceal(None, &mut out[..frame]);
        }
        n
    }

    /// Fills `out` (a multiple of 2.5 ms) for a lost packet: from `next`'s FEC data when the
    /// following packet is here, by libopus's concealment otherwise.
    pub fn conceal(&mut self, next: Option<&[u8]>, out: &mut [i16]) -> usize {
        let len = out.len();
        let n = match next {
            Some(next) if !next.is_empty() => self.run(Some(next), out, len, true),
            _ => 0,
        };
        if n > 0 {
            return n;
        }
        self.run(None, out, len, false)
    }

    fn run(&mut self, payload: Option<&[u8]>, out: &mut [i16], frame: usize, fec: bool) -> usize {
        self.runs += 1;
        let (data, len) = match payload {
            Some(p) => (p.as_ptr(), p.len() as i32),
            None => (std::ptr::null(), 0),
        };
        // SAFETY: data is valid for len bytes (or null for concealment); out holds frame
        // samples of one channel.
        let n = unsafe {
            ffi::opus_decode(self.state.ptr(), data, len, out.as_mut_ptr(), frame as c_int, c_int::from(fec))
        };
        usize::try_from(n).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone::{snr_db, tone_share_db, Sine};

    fn tone(frames: usize) -> Vec<i16> {
        let mut pcm = vec![0i16; FRAME * frames];
        Sine::new(RATE, 440.0, 0.3).fill(&mut pcm);
        pcm
    }

    /// Opus delays by its lookahead: the delay (in samples) at which the decoded signal best
    /// matches the input over frames 10..20, and the SNR there.
    fn alignment(pcm: &[i16], decoded: &[i16]) -> (usize, f64) {
        (0..1000)
            .map(|d| (d, snr_db(&pcm[FRAME * 10..FRAME * 20], &decoded[FRAME * 10 + d..FRAME * 20 + d])))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap()
    }

    fn encode_all(pcm: &[i16]) -> Vec<Vec<u8>> {
        let mut encoder = OpusEncoder::new();
        let mut out = [0u8; 1500];
        pcm.chunks(FRAME)
            .map(|frame| {
                let n = encoder.encode(frame, &mut out);
                assert!(n > 0);
                out[..n].to_vec()
            })
            .collect()
    }

    #[test]
    fn a_tone_round_trips_with_bounded_distortion() {
        let pcm = tone(50);
        let packets = encode_all(&pcm);
        let mut decoder = OpusDecoder::new();
        let mut decoded = Vec::new();
        let mut frame = vec![0i16; 5760];
        for p in &packets {
            let n = decoder.decode(p, &mut frame);
            assert_eq!(n, FRAME);
            decoded.extend_from_slice(&frame[..n]);
        }
        let (delay, snr) = alignment(&pcm, &decoded);
        assert!(snr > 15.0, "SNR {snr:.1} dB at a delay of {delay}");
        assert!(tone_share_db(&decoded[FRAME * 10..], RATE, 440.0) > -1.0);
    }

    #[test]
    fn fec_rebuilds_a_single_lost_packet_better_than_concealment() {
        let pcm = tone(60);
        let packets = encode_all(&pcm);
        let lost = 30;
        let run = |use_fec: bool| {
            let mut decoder = OpusDecoder::new();
            let mut frame = vec![0i16; 5760];
            let mut decoded = Vec::new();
            for (i, p) in packets.iter().enumerate() {
                let n = if i == lost {
                    let next = use_fec.then(|| packets[i + 1].as_slice());
                    decoder.conceal(next, &mut frame[..FRAME])
                } else {
                    decoder.decode(p, &mut frame)
                };
                assert_eq!(n, FRAME, "frame {i}");
                decoded.extend_from_slice(&frame[..n]);
            }
            decoded
        };
        let (with_fec, plc) = (run(true), run(false));
        let (delay, _) = alignment(&pcm, &with_fec);
        let window = |d: &[i16]| d[FRAME * lost + delay..FRAME * (lost + 1) + delay].to_vec();
        let reference = &pcm[FRAME * lost..FRAME * (lost + 1)];
        let fec_snr = snr_db(reference, &window(&with_fec));
        let plc_snr = snr_db(reference, &window(&plc));
        assert!(fec_snr > 8.0, "FEC frame SNR {fec_snr:.1} dB");
        assert!(fec_snr > plc_snr, "FEC {fec_snr:.1} dB vs concealment {plc_snr:.1} dB");
    }

    #[test]
    fn states_copy_and_continue_identically() {
        let pcm = tone(20);
        let mut a = OpusEncoder::new();
        let mut out = [0u8; 1500];
        for frame in pcm[..FRAME * 10].chunks(FRAME) {
            a.encode(frame, &mut out);
        }
        let mut b = a.clone();
        let mut out_b = [0u8; 1500];
        for frame in pcm[FRAME * 10..].chunks(FRAME) {
            let na = a.encode(frame, &mut out);
            let nb = b.encode(frame, &mut out_b);
            assert_eq!(out[..na], out_b[..nb], "a copied encoder continues bit for bit");
        }
    }

    #[test]
    fn garbage_decodes_as_loss_without_panicking() {
        let mut decoder = OpusDecoder::new();
        let mut frame = vec![0i16; 5760];
        for garbage in [&[][..], &[0xff; 3][..], &[0x0b, 0xff, 0xff, 0xff][..]] {
            let n = decoder.decode(garbage, &mut frame);
            assert!(n <= 5760);
        }
    }
}
