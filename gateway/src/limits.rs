//! Per-source bounds: what one address may hold open at once (join pages, connections) and how
//! fast it may send (SIP requests).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Gives back the memory of a table that grew for a peak of traffic once three quarters of it
/// stand empty (a map never shrinks by itself). It halves at most once per halving of the
/// entries, so the rehash is paid for by the removals that made room.
pub fn shrink_sparse<K: Hash + Eq, V, S: BuildHasher>(map: &mut HashMap<K, V, S>) {
    if map.capacity() > 64 && map.len() < map.capacity() / 4 {
        map.shrink_to(map.len() * 2);
    }
}

/// [`shrink_sparse`] for a set.
pub fn shrink_sparse_set<K: Hash + Eq>(set: &mut HashSet<K>) {
    if set.capacity() > 64 && set.len() < set.capacity() / 4 {
        set.shrink_to(set.len() * 2);
    }
}

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
                shrink_sparse(&mut counts);
            }
        }
    }
}

/// Addresses a [`RateLimit`] tracks at most; past it, new addresses go untracked (a flood of
/// forged sources must not grow memory, nor lock out everyone new).
const MAX_TRACKED: usize = 65_536;

/// A token bucket per key, a source address by default (what Kamailio's pike module does):
/// `per_sec` a second, bursts of twice that. Time is an input.
#[derive(Debug)]
pub struct RateLimit<K = IpAddr> {
    per_sec: f64,
    burst: f64,
    buckets: HashMap<K, Bucket>,
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

impl RateLimit<IpAddr> {
    /// `per_sec` 0 allows everything.
    pub fn new(per_sec: u32) -> RateLimit {
        RateLimit::with_burst(f64::from(per_sec), f64::from(per_sec) * 2.0)
    }
}

impl<K: std::hash::Hash + Eq + Clone> RateLimit<K> {
    /// `per_sec` tokens a second up to `burst`; `per_sec` 0 allows everything.
    pub fn with_burst(per_sec: f64, burst: f64) -> RateLimit<K> {
        RateLimit { per_sec, burst, buckets: HashMap::new(), next_sweep: None }
    }

    /// Whether `key` has a token now, without taking it.
    pub fn has_token(&mut self, now: Instant, key: &K) -> bool {
        if self.per_sec == 0.0 {
            return true;
        }
        self.sweep(now);
        let (per_sec, burst) = (self.per_sec, self.burst);
        self.buckets.get(key).is_none_or(|b| {
            (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_sec).min(burst) >= 1.0
        })
    }

    /// Takes a token from `key` whether or not it has one (down to none): for counting
    /// failures, which must not be refused themselves.
    pub fn take(&mut self, now: Instant, key: K) {
        if self.per_sec == 0.0 || (self.buckets.len() >= MAX_TRACKED && !self.buckets.contains_key(&key)) {
            return;
        }
        let (per_sec, burst) = (self.per_sec, self.burst);
        let bucket = self.buckets.entry(key).or_insert(Bucket { tokens: burst, at: now, refused: 0 });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = ((bucket.tokens + elapsed * per_sec).min(burst) - 1.0).max(0.0);
        bucket.at = now;
    }

    pub fn check(&mut self, now: Instant, ip: K) -> Rate {
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
        shrink_sparse(&mut self.buckets);
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

/// Digest authentication failures (an unknown user, a wrong password) throttled per source
/// address and per user: each failure takes a token, a bucket refills over a minute, and while
/// one is empty attempts from that address, or for that user, are refused before any look-up —
/// correct or not, so guessing stays slow even from many addresses. A phone caught in an attack
/// on its account gets in once a token is back.
#[derive(Debug)]
pub struct AuthThrottle {
    sources: RateLimit<IpAddr>,
    users: RateLimit<String>,
}

/// Whose failures an attempt is refused for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    Source,
    User,
}

impl AuthThrottle {
    /// `per_source` and `per_user` failures a minute (and in a burst); 0: not throttled.
    pub fn new(per_source: u32, per_user: u32) -> AuthThrottle {
        let (source, user) = (f64::from(per_source), f64::from(per_user));
        AuthThrottle {
            sources: RateLimit::with_burst(source / 60.0, source),
            users: RateLimit::with_burst(user / 60.0, user),
        }
    }

    pub fn refused(&mut self, now: Instant, source: IpAddr, user: &str) -> Option<Throttled> {
        if !self.sources.has_token(now, &source) {
            return Some(Throttled::Source);
        }
        (!self.users.has_token(now, &user.to_string())).then_some(Throttled::User)
    }

    /// A failure from `source`; `user` when the account exists (a wrong password). Names that
    /// exist nowhere count against the source only, so they cannot fill the table.
    pub fn failed(&mut self, now: Instant, source: IpAddr, user: Option<&str>) {
        self.sources.take(now, source);
        if let Some(user) = user {
            self.users.take(now, user.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_source_gets_its_rate_and_others_are_not_held_back() {
        #[allow(clippy::disallowed_methods)] // the origin of virtual time
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
    fn digest_failures_are_throttled_per_source_and_per_user() {
        #[allow(clippy::disallowed_methods)] // the origin of virtual time
        let t0 = Instant::now();
        let mut throttle = AuthThrottle::new(3, 5);
        let guesser: IpAddr = "198.51.100.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(throttle.refused(t0, guesser, "alice"), None);
            throttle.failed(t0, guesser, Some("alice"));
        }
        assert_eq!(throttle.refused(t0, guesser, "bob"), Some(Throttled::Source));
        // Others guessing alice's password: two more failures empty her bucket too.
        for host in 2..4u8 {
            let other = IpAddr::from([198, 51, 100, host]);
            throttle.failed(t0, other, Some("alice"));
        }
        let phone: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(throttle.refused(t0, phone, "alice"), Some(Throttled::User));
        assert_eq!(throttle.refused(t0, phone, "carol"), None);
        // A minute later a fifth of the burst is back: her phone gets in.
        assert_eq!(throttle.refused(t0 + Duration::from_secs(13), phone, "alice"), None);
        assert_eq!(AuthThrottle::new(0, 0).refused(t0, guesser, "alice"), None, "0 is no limit");
        // Unknown names count against their source only.
        let mut throttle = AuthThrottle::new(100, 1);
        throttle.failed(t0, guesser, None);
        assert_eq!(throttle.refused(t0, phone, "nobody"), None);
    }

    #[test]
    fn the_first_refusal_is_told_apart_for_logging() {
        #[allow(clippy::disallowed_methods)] // the origin of virtual time
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
    fn a_table_grown_for_a_peak_gives_its_memory_back_as_it_empties() {
        let mut map: HashMap<u32, [u8; 64]> = (0..10_000).map(|k| (k, [0; 64])).collect();
        let peak = map.capacity();
        let mut shrinks = 0;
        for k in 0..10_000 {
            map.remove(&k);
            let before = map.capacity();
            shrink_sparse(&mut map);
            shrinks += usize::from(map.capacity() < before);
            assert!(map.capacity() >= map.len());
        }
        assert!(peak >= 10_000);
        assert!(map.capacity() <= 64, "{} slots left of {peak}", map.capacity());
        // Halving each time: a handful of rehashes for 10,000 removals.
        assert!((2..=10).contains(&shrinks), "{shrinks} rehashes");
        let mut small: HashMap<u32, u32> = (0..40).map(|k| (k, k)).collect();
        small.clear();
        let kept = small.capacity();
        shrink_sparse(&mut small);
        assert_eq!(small.capacity(), kept, "a small table keeps its room");
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
