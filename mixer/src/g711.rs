//! G.711 (ITU-T G.711, 1988): 8-bit logarithmic companding of 16-bit linear PCM, µ-law (North
//! America, Japan) and A-law (elsewhere).
//!
//! Encoding follows the standard's segment rule: find the segment (exponent) of the biased
//! magnitude, keep four mantissa bits, complement the bits as the law requires. Decoding goes
//! through 256-entry tables built at compile time from the same rule, so the hot path is a
//! lookup.

/// µ-law bias added before the segment search (G.711 §2, 0x84 = 132 on the 16-bit scale).
const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32_635;

/// Encodes one 16-bit sample to µ-law.
pub fn ulaw_encode(sample: i16) -> u8 {
    let sample = i32::from(sample);
    let sign = if sample < 0 { 0x80 } else { 0 };
    let magnitude = sample.abs().min(ULAW_CLIP) + ULAW_BIAS;
    // Segment: position of the highest set bit above bit 7, 0-7.
    let exponent = (31 - (magnitude as u32).leading_zeros() as i32 - 7).clamp(0, 7);
    let mantissa = (magnitude >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

const fn ulaw_decode_const(byte: u8) -> i16 {
    let b = !byte;
    let sign = b & 0x80;
    let exponent = ((b >> 4) & 0x07) as i32;
    let mantissa = (b & 0x0f) as i32;
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    if sign != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// Encodes one 16-bit sample to A-law.
pub fn alaw_encode(sample: i16) -> u8 {
    // A-law works on 13 bits: drop the 3 low bits of the 16-bit sample.
    let sample = i32::from(sample) >> 3;
    let (sign, magnitude) = if sample >= 0 { (0x80, sample) } else { (0x00, -sample - 1) };
    let magnitude = magnitude.min(0x0fff);
    let code = if magnitude < 32 {
        (magnitude >> 1) as u8
    } else {
        let exponent = 31 - (magnitude as u32).leading_zeros() as i32 - 4;
        let mantissa = (magnitude >> exponent) & 0x0f;
        ((exponent as u8) << 4) | mantissa as u8
    };
    // Even bits are inverted on the line (G.711 Table 1a).
    (sign | code) ^ 0x55
}

const fn alaw_decode_const(byte: u8) -> i16 {
    let b = byte ^ 0x55;
    let sign = b & 0x80;
    let exponent = ((b >> 4) & 0x07) as i32;
    let mantissa = (b & 0x0f) as i32;
    let magnitude =
        if exponent == 0 { (mantissa << 4) + 8 } else { ((mantissa << 4) + 0x108) << (exponent - 1) };
    if sign != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

/// Builds a 256-entry decode table from a `const fn` (const fns cannot take function pointers).
macro_rules! decode_table {
    ($decode:ident) => {{
        let mut t = [0i16; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = $decode(i as u8);
            i += 1;
        }
        t
    }};
}

static ULAW_TABLE: [i16; 256] = decode_table!(ulaw_decode_const);
static ALAW_TABLE: [i16; 256] = decode_table!(alaw_decode_const);

pub fn ulaw_decode(byte: u8) -> i16 {
    ULAW_TABLE[byte as usize]
}

pub fn alaw_decode(byte: u8) -> i16 {
    ALAW_TABLE[byte as usize]
}

/// Which law.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    /// PCMU, RTP payload type 0.
    Ulaw,
    /// PCMA, RTP payload type 8.
    Alaw,
}

/// Encodes `pcm` into `out` (same length).
pub fn encode(law: Law, pcm: &[i16], out: &mut [u8]) {
    let f = match law {
        Law::Ulaw => ulaw_encode,
        Law::Alaw => alaw_encode,
    };
    for (o, s) in out.iter_mut().zip(pcm) {
        *o = f(*s);
    }
}

/// Decodes `bytes` into `out` (same length).
pub fn decode(law: Law, bytes: &[u8], out: &mut [i16]) {
    let t = match law {
        Law::Ulaw => &ULAW_TABLE,
        Law::Alaw => &ALAW_TABLE,
    };
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = t[*b as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone::{snr_db, Sine};

    #[test]
    fn silence_and_extremes_encode_as_the_standard_says() {
        // µ-law zero is 0xFF (all ones after complement), A-law zero is 0xD5.
        assert_eq!(ulaw_encode(0), 0xff);
        assert_eq!(alaw_encode(0), 0xd5);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(alaw_encode(i16::MAX), 0xaa);
        assert_eq!(alaw_encode(i16::MIN), 0x2a);
        assert_eq!(ulaw_decode(0xff), 0);
        assert_eq!(ulaw_decode(0x80), 32_124);
        assert_eq!(alaw_decode(0xaa), 32_256);
        assert_eq!(alaw_decode(0xd5), 8);
    }

    #[test]
    fn every_code_decodes_and_re_encodes_to_itself() {
        for byte in 0..=255u8 {
            // µ-law's negative zero (0x7f) decodes to 0, which encodes as positive zero.
            if byte != 0x7f {
                assert_eq!(ulaw_encode(ulaw_decode(byte)), byte, "µ-law {byte:#04x}");
            }
            assert_eq!(alaw_encode(alaw_decode(byte)), byte, "A-law {byte:#04x}");
        }
    }

    #[test]
    fn decoding_is_monotonic() {
        let mut u: Vec<i16> = (0..=255u8).map(ulaw_decode).collect();
        let mut a: Vec<i16> = (0..=255u8).map(alaw_decode).collect();
        u.sort_unstable();
        a.sort_unstable();
        u.dedup();
        a.dedup();
        assert_eq!(u.len(), 255, "µ-law has +0 and -0");
        assert_eq!(a.len(), 256);
    }

    #[test]
    fn a_tone_survives_with_g711_snr() {
        for law in [Law::Ulaw, Law::Alaw] {
            let mut tone = Sine::new(8000, 1004.0, 0.5);
            let mut pcm = vec![0i16; 8000];
            tone.fill(&mut pcm);
            let mut coded = vec![0u8; pcm.len()];
            let mut back = vec![0i16; pcm.len()];
            encode(law, &pcm, &mut coded);
            decode(law, &coded, &mut back);
            // G.711 gives about 38 dB SNR for a loud tone (6 dB per bit, 4 mantissa bits + sign
            // + segment gain).
            let snr = snr_db(&pcm, &back);
            assert!(snr > 33.0, "{law:?}: SNR {snr:.1} dB");
        }
    }
}
