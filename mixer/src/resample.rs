//! Sample-rate conversion between the rates the mixer meets (8, 16 and 48 kHz), by a polyphase
//! FIR filter: conceptually upsample by L (zero stuffing), low-pass, keep every M-th sample, but
//! computing only the outputs that are kept and skipping the stuffed zeros.
//!
//! The low-pass is a Kaiser-windowed sinc designed at construction: pass-band up to 85 % of the
//! lower Nyquist frequency, stop-band from the lower Nyquist frequency, at least 70 dB down, so
//! nothing aliases into the band a listener hears. Frames are processed without allocating.

use std::f64::consts::PI;

/// Stop-band attenuation the filter is designed for, dB.
const STOPBAND_DB: f64 = 70.0;
/// Pass-band edge as a fraction of the lower Nyquist frequency.
const PASSBAND: f64 = 0.85;

/// Converts a stream of frames from one rate to another.
#[derive(Debug, Clone)]
pub struct Resampler {
    up: usize,
    down: usize,
    /// Taps per phase.
    taps: usize,
    /// `up` phases of `taps` coefficients each; phase p holds h[p + k·up] for k in 0..taps.
    coeffs: Vec<f32>,
    /// The last `taps - 1` input samples, then the current frame.
    buffer: Vec<f32>,
    /// Position of the next output in the upsampled timeline, relative to the current frame.
    position: usize,
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Zeroth-order modified Bessel function of the first kind, by its power series.
fn bessel_i0(x: f64) -> f64 {
    let (mut sum, mut term, mut k) = (1.0, 1.0, 1.0);
    while term > 1e-12 * sum {
        term *= (x / (2.0 * k)).powi(2);
        sum += term;
        k += 1.0;
    }
    sum
}

impl Resampler {
    pub fn new(from: u32, to: u32) -> Resampler {
        let g = gcd(from as usize, to as usize);
        let (up, down) = (to as usize / g, from as usize / g);
        if up == down {
            // Same rate: a copy, no filter and no delay.
            return Resampler { up: 1, down: 1, taps: 1, coeffs: vec![1.0], buffer: Vec::new(), position: 0 };
        }
        let rate_up = f64::from(from) * up as f64;
        let nyquist = f64::from(from.min(to)) / 2.0;
        let (pass, stop) = (PASSBAND * nyquist, nyquist);
        // Kaiser's formulas (Oppenheim & Schafer §7.5.3).
        let beta = 0.1102 * (STOPBAND_DB - 8.7);
        let transition = 2.0 * PI * (stop - pass) / rate_up;
        let length = ((STOPBAND_DB - 8.0) / (2.285 * transition)).ceil() as usize + 1;
        let taps = length.div_ceil(up).max(1);
        let total = taps * up;
        let cutoff = (pass + stop) / 2.0 / rate_up; // cycles per upsampled sample
        let centre = (total - 1) as f64 / 2.0;
        let i0_beta = bessel_i0(beta);
        let h: Vec<f64> = (0..total)
            .map(|n| {
                let x = n as f64 - centre;
                let sinc = if x == 0.0 { 2.0 * cutoff } else { (2.0 * PI * cutoff * x).sin() / (PI * x) };
                let r = 2.0 * n as f64 / (total - 1).max(1) as f64 - 1.0;
                let window = bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / i0_beta;
                // Zero stuffing divides the signal's level by `up`; the gain puts it back.
                sinc * window * up as f64
            })
            .collect();
        let mut coeffs = vec![0.0f32; total];
        for p in 0..up {
            for k in 0..taps {
                coeffs[p * taps + k] = h[p + k * up] as f32;
            }
        }
        Resampler { up, down, taps, coeffs, buffer: vec![0.0; taps - 1], position: 0 }
    }

    /// Output samples for `input_len` input samples, when the ratio divides evenly (20 ms
    /// frames at 8, 16 and 48 kHz always do).
    pub fn output_len(&self, input_len: usize) -> usize {
        (input_len * self.up - self.position).div_ceil(self.down)
    }

    /// Converts one frame, writing [`Resampler::output_len`] samples into `out`.
    pub fn process(&mut self, input: &[i16], out: &mut [i16]) -> usize {
        let history = self.taps - 1;
        self.buffer.truncate(history);
        self.buffer.extend(input.iter().map(|&s| f32::from(s)));
        let span = input.len() * self.up;
        let mut written = 0;
        while self.position < span && written < out.len() {
            let index = self.position / self.up; // newest input sample that contributes
            let phase = self.position % self.up;
            let newest = history + index;
            let c = &self.coeffs[phase * self.taps..(phase + 1) * self.taps];
            let mut acc = 0.0f32;
            for (k, &coeff) in c.iter().enumerate() {
                acc += coeff * self.buffer[newest - k];
            }
            out[written] = acc.round().clamp(-32768.0, 32767.0) as i16;
            written += 1;
            self.position += self.down;
        }
        self.position -= span.min(self.position);
        // Keep the last `history` samples for the next frame.
        let len = self.buffer.len();
        self.buffer.copy_within(len - history.., 0);
        written
    }

    /// The filter's delay in output samples (for aligning signals).
    pub fn delay(&self) -> usize {
        if self.taps == 1 {
            0
        } else {
            (self.taps * self.up) / 2 / self.down
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone::{goertzel_power, power, Sine};

    /// Runs `seconds` of a tone at `freq` through a `from` → `to` resampler in 20 ms frames and
    /// returns the output after the filter has settled.
    fn convert(from: u32, to: u32, freq: f64) -> Vec<i16> {
        let mut r = Resampler::new(from, to);
        let mut sine = Sine::new(from, freq, 0.5);
        let (n_in, n_out) = (from as usize / 50, to as usize / 50);
        let mut out = Vec::new();
        let (mut frame, mut converted) = (vec![0i16; n_in], vec![0i16; n_out]);
        for _ in 0..25 {
            sine.fill(&mut frame);
            assert_eq!(r.output_len(n_in), n_out);
            assert_eq!(r.process(&frame, &mut converted), n_out);
            out.extend_from_slice(&converted);
        }
        out.split_off(out.len() / 2)
    }

    fn db(x: f64) -> f64 {
        10.0 * x.log10()
    }

    #[test]
    fn pass_band_tones_keep_their_level() {
        for (from, to) in
            [(8000, 16000), (16000, 8000), (8000, 48000), (48000, 8000), (16000, 48000), (48000, 16000)]
        {
            let out = convert(from, to, 1000.0);
            let input_power = 0.5f64.powi(2) * 32767f64.powi(2) / 2.0;
            let gain = db(goertzel_power(&out, to, 1000.0) / input_power);
            assert!(gain.abs() < 0.2, "{from}->{to}: 1 kHz at {gain:.2} dB");
        }
    }

    #[test]
    fn downsampling_keeps_out_what_would_alias() {
        // 4.5 kHz cannot exist at 8 kHz; it would fold to 3.5 kHz. It must be gone by 60 dB.
        for from in [16000, 48000] {
            let out = convert(from, 8000, 4500.0);
            let input_power = 0.5f64.powi(2) * 32767f64.powi(2) / 2.0;
            let leak = db(power(&out).max(1e-9) / input_power);
            assert!(leak < -60.0, "{from}->8000: 4.5 kHz leaks at {leak:.1} dB");
        }
        let out = convert(48000, 16000, 9000.0);
        let leak = db(power(&out).max(1e-9) / (0.125 * 32767f64.powi(2)));
        assert!(leak < -60.0, "48000->16000: 9 kHz leaks at {leak:.1} dB");
    }

    #[test]
    fn upsampling_leaves_no_images() {
        // A 1 kHz tone upsampled from 8 kHz images at 7 and 9 kHz without the filter.
        let out = convert(8000, 48000, 1000.0);
        let total = power(&out);
        for image in [7000.0, 9000.0, 15000.0, 17000.0] {
            let level = db(goertzel_power(&out, 48000, image) / total);
            assert!(level < -60.0, "image at {image} Hz: {level:.1} dB");
        }
    }

    #[test]
    fn same_rate_is_a_copy() {
        let mut r = Resampler::new(16000, 16000);
        let input: Vec<i16> = (0..320).map(|i| (i * 37 % 2000) as i16 - 1000).collect();
        let mut out = vec![0i16; 320];
        assert_eq!(r.process(&input, &mut out), 320);
        assert_eq!(out, input);
        assert_eq!(r.delay(), 0);
    }
}
