//! Tones: a sine generator (join and leave tones, test signals) and the Goertzel filter that
//! measures how much of a signal's power sits at one frequency (tone checks, in-band DTMF).

use std::f64::consts::PI;

/// A sine wave at a fixed frequency and amplitude, generated frame by frame without gaps.
#[derive(Debug, Clone)]
pub struct Sine {
    step: f64,
    phase: f64,
    amplitude: f64,
}

impl Sine {
    /// `amplitude` is a fraction of full scale (0.0-1.0).
    pub fn new(rate: u32, frequency: f64, amplitude: f64) -> Sine {
        Sine {
            step: 2.0 * PI * frequency / f64::from(rate),
            phase: 0.0,
            amplitude: amplitude.clamp(0.0, 1.0) * 32_767.0,
        }
    }

    /// Writes the next `out.len()` samples.
    pub fn fill(&mut self, out: &mut [i16]) {
        for s in out {
            *s = self.next_sample() as i16;
        }
    }

    /// Adds the next `out.len()` samples to `out`, saturating.
    pub fn add_to(&mut self, out: &mut [i16]) {
        for s in out {
            let v = self.next_sample();
            *s = (i32::from(*s) + v).clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
        }
    }

    fn next_sample(&mut self) -> i32 {
        let v = (self.phase.sin() * self.amplitude).round() as i32;
        self.phase += self.step;
        if self.phase > 2.0 * PI {
            self.phase -= 2.0 * PI;
        }
        v
    }
}

/// Power of `samples` at `frequency` (Goertzel), normalised so a full-block sine of amplitude A
/// gives about A²/4·N² before the 1/N² scaling: returns mean-square units comparable with
/// [`power`].
pub fn goertzel_power(samples: &[i16], rate: u32, frequency: f64) -> f64 {
    let n = samples.len() as f64;
    if samples.is_empty() {
        return 0.0;
    }
    let coeff = 2.0 * (2.0 * PI * frequency / f64::from(rate)).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let magnitude_sq = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    // A sine of amplitude A gives |X|² ≈ (A·N/2)²; its mean square is A²/2.
    2.0 * magnitude_sq / (n * n)
}

/// Mean square of `samples`.
pub fn power(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / samples.len() as f64
}

/// How much of `samples`' power is at `frequency`, in dB relative to the total (0 dB: all of it).
pub fn tone_share_db(samples: &[i16], rate: u32, frequency: f64) -> f64 {
    let total = power(samples);
    if total == 0.0 {
        return f64::NEG_INFINITY;
    }
    10.0 * (goertzel_power(samples, rate, frequency) / total).log10()
}

/// Signal-to-noise ratio of `decoded` against `reference`, in dB.
pub fn snr_db(reference: &[i16], decoded: &[i16]) -> f64 {
    let signal = power(reference);
    let noise: f64 = reference
        .iter()
        .zip(decoded)
        .map(|(&a, &b)| {
            let d = f64::from(a) - f64::from(b);
            d * d
        })
        .sum::<f64>()
        / reference.len().max(1) as f64;
    10.0 * (signal / noise.max(f64::MIN_POSITIVE)).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goertzel_finds_the_tone_and_not_others() {
        let mut pcm = vec![0i16; 800]; // 100 ms at 8 kHz
        Sine::new(8000, 440.0, 0.3).fill(&mut pcm);
        assert!(tone_share_db(&pcm, 8000, 440.0).abs() < 0.5, "{}", tone_share_db(&pcm, 8000, 440.0));
        assert!(tone_share_db(&pcm, 8000, 1000.0) < -40.0, "{}", tone_share_db(&pcm, 8000, 1000.0));
        let mut two = vec![0i16; 800];
        Sine::new(8000, 440.0, 0.2).fill(&mut two);
        Sine::new(8000, 1000.0, 0.2).add_to(&mut two);
        let (a, b) = (tone_share_db(&two, 8000, 440.0), tone_share_db(&two, 8000, 1000.0));
        assert!((a + 3.0).abs() < 0.5 && (b + 3.0).abs() < 0.5, "{a} {b}");
        assert_eq!(tone_share_db(&[0; 100], 8000, 440.0), f64::NEG_INFINITY);
    }

    #[test]
    fn frames_join_without_a_phase_jump() {
        let mut sine = Sine::new(8000, 1000.0, 0.5);
        let mut whole = vec![0i16; 320];
        let mut sine2 = sine.clone();
        sine.fill(&mut whole);
        let (mut a, mut b) = (vec![0i16; 160], vec![0i16; 160]);
        sine2.fill(&mut a);
        sine2.fill(&mut b);
        assert_eq!([a, b].concat(), whole);
    }
}
