//! A seeded simulated network for scenario tests in virtual time: datagrams are lost, duplicated,
//! delayed and so reordered, all decided by the seed, so a failing run can be replayed exactly.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::rng::Rng;

/// How the network misbehaves.
#[derive(Debug, Clone, Copy)]
pub struct Conditions {
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a delivered datagram arrives twice.
    pub duplication: f64,
    /// One-way delay is uniform in this range; the spread reorders datagrams.
    pub min_delay: Duration,
    pub max_delay: Duration,
}

/// A datagram in flight: arrival time, send order (to break ties), from, to, bytes.
type InFlight = Reverse<(Instant, u64, SocketAddr, SocketAddr, Bytes)>;

/// Datagrams in flight, delivered in order of arrival time.
pub struct Network {
    rng: Rng,
    conditions: Conditions,
    in_flight: BinaryHeap<InFlight>,
    sequence: u64,
    pub sent: u64,
    pub lost: u64,
}

impl Network {
    pub fn new(seed: u64, conditions: Conditions) -> Network {
        Network {
            rng: Rng::new(seed),
            conditions,
            in_flight: BinaryHeap::new(),
            sequence: 0,
            sent: 0,
            lost: 0,
        }
    }

    /// Sends a datagram from `from` to `to` at `now`.
    pub fn send(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, bytes: Bytes) {
        self.sent += 1;
        if self.rng.unit() < self.conditions.loss {
            self.lost += 1;
            return;
        }
        let copies = if self.rng.unit() < self.conditions.duplication { 2 } else { 1 };
        for _ in 0..copies {
            let spread = self.conditions.max_delay.saturating_sub(self.conditions.min_delay);
            let delay = self.conditions.min_delay + spread.mul_f64(self.rng.unit());
            self.sequence += 1;
            self.in_flight.push(Reverse((now + delay, self.sequence, from, to, bytes.clone())));
        }
    }

    /// When the next datagram arrives.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.peek().map(|Reverse((at, ..))| *at)
    }

    /// The next datagram due by `now`: (from, to, bytes).
    pub fn deliver(&mut self, now: Instant) -> Option<(SocketAddr, SocketAddr, Bytes)> {
        if self.next_arrival()? > now {
            return None;
        }
        let Reverse((_, _, from, to, bytes)) = self.in_flight.pop()?;
        Some((from, to, bytes))
    }
}
