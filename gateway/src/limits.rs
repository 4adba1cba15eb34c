//! Per-source bounds: what one address may hold open at once (join pages, connections) and how
//! fast it may send (SIP requests).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Counts what each address holds; an address holds at most `max` at once. The map holds only
/// addresses with something open, so it is bounded by the total the caller allows.
#[derive(Debug)]
pub struct SourceSlots {
    max: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One slot held by an address, given back when dropped.
#[derive(Debug)]
pub struct SourceSlot {
    slots: Arc<SourceSlots>,
    ip: IpAddr,
}

impl SourceSlots {
    pub fn new(max: usize) -> Arc<SourceSlots> {
        Arc::new(SourceSlots { max, counts: Mutex::new(HashMap::new()) })
    }

    /// A slot for `ip`, or `None` when it holds `max` already.
    pub fn try_take(self: &Arc<Self>, ip: IpAddr) -> Option<SourceSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(SourceSlot { slots: self.clone(), ip })
    }

    /// Slots `ip` holds now.
    pub fn held(&self, ip: IpAddr) -> usize {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut counts = self.slots.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Addresses a [`RateLimit`] tracks at most; past it, new addresses go untracked (a flood of
/// forged sources must not grow memory, nor lock out everyone new).
const MAX_TRACKED: usize = 65_536;

/// A token bucket per source address (what Kamailio's pike module does): `per_sec` requests a
/// second, bursts of twice that. Time is an input.
#[derive(Debug)]
pub struct RateLimit {
    per_sec: f64,
    burst: f64,
    buckets: HashMap<IpAddr, Bucket>,
    next_sweep: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    /// Refused since the last log line about this address.
    refused: u64,
}

/// What a [`RateLimit`] says of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    Allowed,
    /// Over the rate; `first` for the first refusal since the address was last within it.
    Refused {
        first: bool,
    },
}

impl RateLimit {
    /// `per_sec` 0 allows everything.
    pub fn new(per_sec: u32) -> RateLimit {
        let per_sec = f64::from(per_sec);
        RateLimit { per_sec, burst: per_sec * 2.0, buckets: HashMap::new(), next_sweep: None }
    }

    pub fn check(&mut self, now: Instant, ip: IpAddr) -> Rate {
        if self.per_sec == 0.0 {
            return Rate::Allowed;
        }
        self.sweep(now);
        if self.buckets.len() >= MAX_TRACKED && !self.buckets.contains_key(&ip) {
            return Rate::Allowed;
        }
        let (per_sec, burst) = (self.per_sec, self.burst);
        let bucket = self.buckets.entry(ip).or_insert(Bucket { tokens: burst, at: now, refused: 0 });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_sec).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            bucket.refused = 0;
            return Rate::Allowed;
        }
        bucket.refused += 1;
        Rate::Refused { first: bucket.refused == 1 }
    }

    /// Every ten seconds, forgets the addresses whose buckets have filled up again.
    fn sweep(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|at| now < at) {
            return;
        }
        self.next_sweep = Some(now + Duration::from_secs(10));
        let (per_sec, burst) = (self.per_sec, self.burst);
        self.buckets
            .retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_sec < burst);
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_source_gets_its_rate_and_others_are_not_held_back() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(10);
        let flood: IpAddr = "192.0.2.66".parse().unwrap();
        let phone: IpAddr = "192.0.2.7".parse().unwrap();
        let allowed = (0..100).filter(|_| limit.check(t0, flood) == Rate::Allowed).count();
        assert_eq!(allowed, 20, "a burst of twice the rate");
        assert_eq!(limit.check(t0, flood), Rate::Refused { first: false });
        assert_eq!(limit.check(t0, phone), Rate::Allowed);
        // A second later, ten more.
        let later = t0 + Duration::from_secs(1);
        let allowed = (0..100).filter(|_| limit.check(later, flood) == Rate::Allowed).count();
        assert_eq!(allowed, 10);
        // Quiet for long enough, the address is forgotten.
        let quiet = t0 + Duration::from_secs(30);
        limit.check(quiet, phone);
        assert_eq!(limit.tracked(), 1, "only the address just seen");
        assert_eq!(RateLimit::new(0).check(t0, flood), Rate::Allowed, "0 is no limit");
    }

    #[test]
    fn the_first_refusal_is_told_apart_for_logging() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(1);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        limit.check(t0, ip);
        limit.check(t0, ip);
        assert_eq!(limit.check(t0, ip), Rate::Refused { first: true });
        assert_eq!(limit.check(t0, ip), Rate::Refused { first: false });
        assert_eq!(limit.check(t0 + Duration::from_secs(2), ip), Rate::Allowed);
        assert_eq!(limit.check(t0 + Duration::from_secs(2), ip), Rate::Allowed);
        assert_eq!(limit.check(t0 + Duration::from_secs(2), ip), Rate::Refused { first: true });
    }

    #[test]
    fn each_address_holds_at_most_max_and_gets_slots_back() {
        let slots = SourceSlots::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = slots.try_take(a).unwrap();
        let _second = slots.try_take(a).unwrap();
        assert!(slots.try_take(a).is_none());
        assert!(slots.try_take(b).is_some(), "another address is not held back");
        drop(first);
        assert_eq!(slots.held(a), 1);
        assert!(slots.try_take(a).is_some());
        assert_eq!(slots.held(b), 0, "a dropped slot leaves no entry");
    }
}
