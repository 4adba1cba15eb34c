//! A small deterministic generator for tags, branches, Call-IDs and jitter.
//!
//! Randomness is an input of the stack: the caller seeds it (from the OS in production, from a
//! constant in tests), and the same seed gives the same identifiers and schedules. Values that
//! must resist guessing (digest nonces) are HMAC-signed with a secret, not drawn from here.

/// SplitMix64: tiny, fast, and good enough for identifiers and jitter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// 16 hex digits.
    pub fn token(&mut self) -> String {
        format!("{:016x}", self.next_u64())
    }

    /// A Via branch with the RFC 3261 magic cookie (§8.1.1.7).
    pub fn branch(&mut self) -> String {
        format!("{}{}", crate::transaction::MAGIC_COOKIE, self.token())
    }

    /// A float in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        assert_eq!(a.token(), b.token());
        assert!(a.branch().starts_with("z9hG4bK"));
        let u = a.unit();
        assert!((0.0..1.0).contains(&u));
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }
}
