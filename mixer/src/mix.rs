//! The N−1 conference mix.
//!
//! Every contributor's frame is summed once into an `i32` total. A talker hears the total minus
//! its own contribution; everyone who contributed nothing hears the total itself, so all silent
//! listeners share one mix (and one encode per codec). Each output is clipped once, after the
//! subtraction: never per addition, so loud talkers never wrap around and never clip each
//! other's contributions away.

/// Sums frames of one conference tick.
#[derive(Debug, Clone)]
pub struct MixBus {
    total: Vec<i32>,
    contributors: usize,
}

impl MixBus {
    /// A bus for frames of `frame_len` samples.
    pub fn new(frame_len: usize) -> MixBus {
        MixBus { total: vec![0; frame_len], contributors: 0 }
    }

    pub fn frame_len(&self) -> usize {
        self.total.len()
    }

    /// Starts a tick.
    pub fn clear(&mut self) {
        self.total.fill(0);
        self.contributors = 0;
    }

    /// Adds one contributor's frame (`frame_len` samples; a shorter frame counts as padded
    /// with silence).
    pub fn add(&mut self, frame: &[i16]) {
        for (t, &s) in self.total.iter_mut().zip(frame) {
            *t += i32::from(s);
        }
        self.contributors += 1;
    }

    /// How many frames were added this tick.
    pub fn contributors(&self) -> usize {
        self.contributors
    }

    /// The mix for listeners who contributed nothing: the whole total, clipped.
    pub fn shared_mix(&self, out: &mut [i16]) {
        for (o, &t) in out.iter_mut().zip(&self.total) {
            *o = clip(t);
        }
    }

    /// The mix for a contributor: the total minus its own frame, clipped once.
    pub fn mix_without(&self, own: &[i16], out: &mut [i16]) {
        for (i, o) in out.iter_mut().enumerate() {
            let own = own.get(i).copied().map_or(0, i32::from);
            *o = clip(self.total[i] - own);
        }
    }
}

fn clip(v: i32) -> i16 {
    v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::tone::{tone_share_db, Sine};

    const N: usize = 160;

    /// Each participant's heard mix: total minus own for contributors.
    fn heard(frames: &[Vec<i16>]) -> Vec<Vec<i16>> {
        let mut bus = MixBus::new(N);
        bus.clear();
        for f in frames {
            bus.add(f);
        }
        frames
            .iter()
            .map(|own| {
                let mut out = vec![0; N];
                bus.mix_without(own, &mut out);
                out
            })
            .collect()
    }

    #[test]
    fn everyone_hears_the_others_tones_and_never_their_own() {
        let freqs = [400.0, 700.0, 1100.0, 1700.0];
        let frames: Vec<Vec<i16>> = freqs
            .iter()
            .map(|&f| {
                let mut v = vec![0i16; 800];
                Sine::new(8000, f, 0.2).fill(&mut v);
                v
            })
            .collect();
        let mut bus = MixBus::new(800);
        bus.clear();
        for f in &frames {
            bus.add(f);
        }
        for (me, own) in frames.iter().enumerate() {
            let mut out = vec![0i16; 800];
            bus.mix_without(own, &mut out);
            for (other, &f) in freqs.iter().enumerate() {
                let share = tone_share_db(&out, 8000, f);
                if other == me {
                    assert!(share < -40.0, "participant {me} hears itself at {share:.1} dB");
                } else {
                    assert!(share > -6.0, "participant {me} misses {f} Hz ({share:.1} dB)");
                }
            }
        }
        // A listener who said nothing hears all four.
        let mut shared = vec![0i16; 800];
        bus.shared_mix(&mut shared);
        for &f in &freqs {
            assert!(tone_share_db(&shared, 8000, f) > -7.0);
        }
    }

    fn frame() -> impl Strategy<Value = Vec<i16>> {
        proptest::collection::vec(any::<i16>(), N)
    }

    proptest! {
        #[test]
        fn order_of_contributors_does_not_matter(frames in proptest::collection::vec(frame(), 1..8)) {
            let forward = heard(&frames);
            let mut reversed_frames = frames.clone();
            reversed_frames.reverse();
            let mut backward = heard(&reversed_frames);
            backward.reverse();
            prop_assert_eq!(forward, backward);
        }

        #[test]
        fn silence_is_the_identity(own in frame(), others in proptest::collection::vec(frame(), 0..4)) {
            // Adding silent contributors changes nothing anyone hears.
            let mut with_silence = others.clone();
            with_silence.push(vec![0; N]);
            with_silence.push(vec![0; N]);
            let mut a = others.clone();
            a.push(own.clone());
            let mut b = with_silence;
            b.push(own);
            prop_assert_eq!(heard(&a).pop(), heard(&b).pop());
        }

        #[test]
        fn loud_inputs_clip_and_never_wrap(frames in proptest::collection::vec(frame(), 1..12)) {
            let mut bus = MixBus::new(N);
            bus.clear();
            for f in &frames {
                bus.add(f);
            }
            let mut out = vec![0; N];
            bus.shared_mix(&mut out);
            for i in 0..N {
                let exact: i32 = frames.iter().map(|f| i32::from(f[i])).sum();
                // Same sign as the exact sum (no wrap-around), and exact where it fits.
                prop_assert_eq!(i32::from(out[i]), exact.clamp(-32768, 32767));
            }
        }

        #[test]
        fn a_lone_talker_hears_silence(own in frame()) {
            prop_assert_eq!(heard(std::slice::from_ref(&own)), vec![vec![0i16; N]]);
        }
    }
}
