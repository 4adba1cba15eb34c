//! G.722 (ITU-T G.722, 64 kbit/s mode): 16 kHz wideband speech in 8 bits per sample pair.
//!
//! The transmit quadrature mirror filter splits each pair of 16 kHz samples into a lower and
//! a higher sub-band sample at 8 kHz; the lower band is coded with 6-bit ADPCM, the higher with
//! 2-bit ADPCM, each with an adaptive quantizer scale and a pole-zero predictor; the receive QMF
//! joins the bands again. Names of the steps (INVQAL, LOGSCL, UPPOL2, …) are the standard's
//! block names. Encoder and decoder keep all state in fixed arrays: nothing is allocated.

/// QMF coefficients h(0), h(2), …, h(22); the odd ones are the same in reverse (symmetry).
const QMF: [i32; 12] = [3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11];

/// Lower band: quantizer decision levels (Q6), codes for negative and positive differences.
const Q6: [i32; 32] = [
    0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940, 1023, 1121,
    1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919, 0, 0,
];
const ILN: [i32; 32] = [
    0, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8,
    7, 6, 5, 4, 0,
];
const ILP: [i32; 32] = [
    0, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39, 38, 37,
    36, 35, 34, 33, 32, 0,
];
/// Lower band: 6-bit inverse quantizer outputs (decoder, 64 kbit/s).
const QM6: [i32; 64] = [
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232, -9360,
    -8576, -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776, -2400, -2032, -1688,
    -1360, -1040, -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280, 11192, 10232, 9360, 8576, 7856,
    7192, 6576, 6000, 5456, 4944, 4464, 4008, 3576, 3168, 2776, 2400, 2032, 1688, 1360, 1040, 728, 432, 136,
    -432, -136,
];
/// Lower band: 4-bit inverse quantizer outputs (for the predictor), log-scale adaptation.
const QM4: [i32; 16] =
    [0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584, 1200, 0];
const RL42: [i32; 16] = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];
const WL: [i32; 8] = [-60, -30, 58, 172, 334, 538, 1198, 3042];
/// 2048·2^(i/32): scale factor mantissas.
const ILB: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834, 2896,
    2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];
/// Higher band: inverse quantizer, codes, log-scale adaptation.
const QM2: [i32; 4] = [-7408, -1616, 7408, 1616];
const IHN: [i32; 3] = [0, 1, 0];
const IHP: [i32; 3] = [0, 3, 2];
const RH2: [i32; 4] = [2, 1, 2, 1];
const WH: [i32; 3] = [0, -214, 798];

/// One step of either quadrature mirror filter: shifts two samples into the 24-sample history
/// and returns the sums over its even and odd positions.
fn qmf(x: &mut [i32; 24], first: i32, second: i32) -> (i32, i32) {
    x.copy_within(2.., 0);
    x[22] = first;
    x[23] = second;
    let (mut even, mut odd) = (0i32, 0i32);
    for i in 0..12 {
        even += x[2 * i] * QMF[i];
        odd += x[2 * i + 1] * QMF[11 - i];
    }
    (even, odd)
}

fn sat(v: i32) -> i32 {
    v.clamp(-32768, 32767)
}

/// The adaptive predictor and quantizer scale of one sub-band.
#[derive(Debug, Clone, Copy, Default)]
struct Band {
    /// Predicted signal, its pole and zero parts.
    s: i32,
    sp: i32,
    sz: i32,
    /// Reconstructed signal, partial reconstruction, quantized differences (newest first).
    r: [i32; 3],
    p: [i32; 3],
    d: [i32; 7],
    /// Pole and zero predictor coefficients, and their next values.
    a: [i32; 3],
    ap: [i32; 3],
    b: [i32; 7],
    bp: [i32; 7],
    sg: [i32; 7],
    /// Log scale factor and scale factor.
    nb: i32,
    det: i32,
}

impl Band {
    fn new(det: i32) -> Band {
        Band { det, ..Band::default() }
    }

    /// Block 4: reconstruct, adapt the predictor, predict the next sample.
    fn update(&mut self, d: i32) {
        // RECONS, PARREC
        self.d[0] = d;
        self.r[0] = sat(self.s + d);
        self.p[0] = sat(self.sz + d);
        // UPPOL2
        for i in 0..3 {
            self.sg[i] = self.p[i] >> 15;
        }
        let wd1 = sat(self.a[1] << 2);
        let wd2 = if self.sg[0] == self.sg[1] { -wd1 } else { wd1 }.min(32767);
        let mut wd3 = (wd2 >> 7) + if self.sg[0] == self.sg[2] { 128 } else { -128 };
        wd3 += (self.a[2] * 32512) >> 15;
        self.ap[2] = wd3.clamp(-12288, 12288);
        // UPPOL1
        self.sg[0] = self.p[0] >> 15;
        self.sg[1] = self.p[1] >> 15;
        let wd1 = if self.sg[0] == self.sg[1] { 192 } else { -192 };
        let wd2 = (self.a[1] * 32640) >> 15;
        let limit = sat(15360 - self.ap[2]);
        self.ap[1] = sat(wd1 + wd2).clamp(-limit, limit);
        // UPZERO
        let step = if d == 0 { 0 } else { 128 };
        self.sg[0] = d >> 15;
        for i in 1..7 {
            self.sg[i] = self.d[i] >> 15;
            let wd2 = if self.sg[i] == self.sg[0] { step } else { -step };
            let wd3 = (self.b[i] * 32640) >> 15;
            self.bp[i] = sat(wd2 + wd3);
        }
        // DELAYA
        for i in (1..7).rev() {
            self.d[i] = self.d[i - 1];
            self.b[i] = self.bp[i];
        }
        for i in (1..3).rev() {
            self.r[i] = self.r[i - 1];
            self.p[i] = self.p[i - 1];
            self.a[i] = self.ap[i];
        }
        // FILTEP
        let wd1 = (self.a[1] * sat(self.r[1] + self.r[1])) >> 15;
        let wd2 = (self.a[2] * sat(self.r[2] + self.r[2])) >> 15;
        self.sp = sat(wd1 + wd2);
        // FILTEZ
        let mut sz = 0;
        for i in (1..7).rev() {
            sz += (self.b[i] * sat(self.d[i] + self.d[i])) >> 15;
        }
        self.sz = sat(sz);
        // PREDIC
        self.s = sat(self.sp + self.sz);
    }

    /// LOGSCL + SCALEL (lower band) or LOGSCH + SCALEH (higher band).
    fn adapt_scale(&mut self, weight: i32, ceiling: i32, shift_base: i32) {
        self.nb = (((self.nb * 127) >> 7) + weight).clamp(0, ceiling);
        let mantissa = ILB[((self.nb >> 6) & 31) as usize];
        let shift = shift_base - (self.nb >> 11);
        let scaled = if shift < 0 { mantissa << -shift } else { mantissa >> shift };
        self.det = scaled << 2;
    }

    fn adapt_low(&mut self, ril: usize) {
        self.adapt_scale(WL[RL42[ril] as usize], 18432, 8);
    }

    fn adapt_high(&mut self, ihigh: usize) {
        self.adapt_scale(WH[RH2[ihigh] as usize], 22528, 10);
    }
}

/// Samples per byte pair: G.722 codes two 16 kHz samples into one byte.
#[derive(Debug, Clone)]
pub struct Encoder {
    x: [i32; 24],
    low: Band,
    high: Band,
}

impl Default for Encoder {
    fn default() -> Encoder {
        Encoder { x: [0; 24], low: Band::new(32), high: Band::new(8) }
    }
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// Encodes 16 kHz samples (an even number) into `out` (half as many bytes); returns the
    /// number of bytes written.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> usize {
        let mut written = 0;
        for (pair, o) in pcm.chunks_exact(2).zip(out.iter_mut()) {
            // Transmit QMF.
            let (sum_odd, sum_even) = qmf(&mut self.x, i32::from(pair[0]), i32::from(pair[1]));
            let xlow = (sum_even + sum_odd) >> 14;
            let xhigh = (sum_even - sum_odd) >> 14;

            // Lower band: quantize the prediction error (6 bits).
            let el = sat(xlow - self.low.s);
            let magnitude = if el >= 0 { el } else { -(el + 1) };
            let mut i = 1;
            while i < 30 && magnitude >= (Q6[i] * self.low.det) >> 12 {
                i += 1;
            }
            let ilow = if el < 0 { ILN[i] } else { ILP[i] };
            // INVQAL, LOGSCL, SCALEL, block 4.
            let ril = (ilow >> 2) as usize;
            let dlow = (self.low.det * QM4[ril]) >> 15;
            self.low.adapt_low(ril);
            self.low.update(dlow);

            // Higher band (2 bits).
            let eh = sat(xhigh - self.high.s);
            let magnitude = if eh >= 0 { eh } else { -(eh + 1) };
            let mih = if magnitude >= (564 * self.high.det) >> 12 { 2 } else { 1 };
            let ihigh = if eh < 0 { IHN[mih] } else { IHP[mih] } as usize;
            let dhigh = (self.high.det * QM2[ihigh]) >> 15;
            self.high.adapt_high(ihigh);
            self.high.update(dhigh);

            *o = ((ihigh as i32) << 6 | ilow) as u8;
            written += 1;
        }
        written
    }
}

#[derive(Debug, Clone)]
pub struct Decoder {
    x: [i32; 24],
    low: Band,
    high: Band,
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder { x: [0; 24], low: Band::new(32), high: Band::new(8) }
    }
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Decodes bytes into 16 kHz samples (two per byte); returns the number of samples written.
    pub fn decode(&mut self, bytes: &[u8], out: &mut [i16]) -> usize {
        let mut written = 0;
        for (&code, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
            let code = i32::from(code);
            let ilow = (code & 0x3f) as usize;
            let ihigh = ((code >> 6) & 0x03) as usize;
            // Lower band: INVQBL (6-bit output), INVQAL (4-bit, for the predictor).
            let rlow = (self.low.s + ((self.low.det * QM6[ilow]) >> 15)).clamp(-16384, 16383);
            let ril = ilow >> 2;
            let dlow = (self.low.det * QM4[ril]) >> 15;
            self.low.adapt_low(ril);
            self.low.update(dlow);
            // Higher band.
            let dhigh = (self.high.det * QM2[ihigh]) >> 15;
            let rhigh = (dhigh + self.high.s).clamp(-16384, 16383);
            self.high.adapt_high(ihigh);
            self.high.update(dhigh);
            // Receive QMF.
            let (even, odd) = qmf(&mut self.x, rlow + rhigh, rlow - rhigh);
            // The odd-phase sum is the earlier of the two output samples.
            pair[0] = sat(odd >> 11) as i16;
            pair[1] = sat(even >> 11) as i16;
            written += 2;
        }
        written
    }
}

/// The encoder and decoder together delay the signal by this many 16 kHz samples (the two
/// 24-tap QMFs).
pub const CODEC_DELAY: usize = 22;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone::{snr_db, Sine};

    fn round_trip(freq: f64, amplitude: f64) -> f64 {
        let mut pcm = vec![0i16; 16000];
        Sine::new(16000, freq, amplitude).fill(&mut pcm);
        let (mut enc, mut dec) = (Encoder::new(), Decoder::new());
        let mut coded = vec![0u8; pcm.len() / 2];
        let mut back = vec![0i16; pcm.len()];
        // In 20 ms frames, as on the wire.
        for (frame, (c, b)) in pcm.chunks(320).zip(coded.chunks_mut(160).zip(back.chunks_mut(320))) {
            assert_eq!(enc.encode(frame, c), 160);
            assert_eq!(dec.decode(c, b), 320);
        }
        let d = best_delay(&pcm, &back);
        snr_db(&pcm[4000..12000], &back[4000 + d..12000 + d])
    }

    /// The delay (0-64 samples) that best aligns `b` with `a`.
    pub(crate) fn best_delay(a: &[i16], b: &[i16]) -> usize {
        (0..64)
            .max_by_key(|&d| {
                let c: i64 = a[4000..8000]
                    .iter()
                    .zip(&b[4000 + d..8000 + d])
                    .map(|(&x, &y)| i64::from(x) * i64::from(y))
                    .sum();
                c
            })
            .unwrap()
    }

    #[test]
    fn tones_round_trip_with_wideband_quality() {
        for freq in [300.0, 1000.0, 3000.0, 6000.0] {
            let snr = round_trip(freq, 0.3);
            assert!(snr > 20.0, "{freq} Hz: SNR {snr:.1} dB");
        }
    }

    #[test]
    fn the_delay_is_the_qmf_delay() {
        let mut pcm = vec![0i16; 16000];
        Sine::new(16000, 1000.0, 0.3).fill(&mut pcm);
        let (mut enc, mut dec) = (Encoder::new(), Decoder::new());
        let mut coded = vec![0u8; 8000];
        let mut back = vec![0i16; 16000];
        enc.encode(&pcm, &mut coded);
        dec.decode(&coded, &mut back);
        let d = best_delay(&pcm, &back);
        // A 1 kHz tone repeats every 16 samples: the delay is known modulo that.
        assert_eq!(d % 16, CODEC_DELAY % 16, "delay {d}");
    }

    #[test]
    fn silence_stays_silent_and_extremes_do_not_overflow() {
        let (mut enc, mut dec) = (Encoder::new(), Decoder::new());
        let (mut coded, mut back) = (vec![0u8; 160], vec![0i16; 320]);
        enc.encode(&[0; 320], &mut coded);
        dec.decode(&coded, &mut back);
        assert!(back.iter().all(|s| s.abs() < 8), "{back:?}");
        let loud: Vec<i16> = (0..3200).map(|i| if i % 7 < 3 { i16::MAX } else { i16::MIN }).collect();
        let mut coded = vec![0u8; 1600];
        let mut back = vec![0i16; 3200];
        enc.encode(&loud, &mut coded);
        dec.decode(&coded, &mut back);
    }
}
