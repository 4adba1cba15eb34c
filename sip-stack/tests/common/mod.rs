//! Two transaction layers joined by a simulated lossy network, run in virtual time.

#![allow(clippy::disallowed_methods)] // Instant::now() once per run, as the origin of virtual time.
#![allow(dead_code)] // each test file uses part of it

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sip_stack::message::{parse, Inbound};
use sip_stack::sim::{Conditions, Network};
use sip_stack::transaction::{TimerConfig, TransactionLayer};
use sip_stack::transport::Peer;

pub const A: &str = "10.0.0.1:5060";
pub const B: &str = "10.0.0.2:5060";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// 20 % loss, 5 % duplication, 10-150 ms delay (so reordering).
pub fn lossy() -> Conditions {
    Conditions {
        loss: 0.2,
        duplication: 0.05,
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(150),
    }
}

pub struct Harness {
    pub t0: Instant,
    pub now: Instant,
    pub net: Network,
    /// The endpoints at [`A`] and [`B`].
    pub a: TransactionLayer,
    pub b: TransactionLayer,
}

impl Harness {
    pub fn new(seed: u64, conditions: Conditions) -> Harness {
        let t0 = Instant::now();
        Harness {
            t0,
            now: t0,
            net: Network::new(seed, conditions),
            a: TransactionLayer::new(TimerConfig::default()),
            b: TransactionLayer::new(TimerConfig::default()),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// Puts both layers' transmits on the network and delivers one datagram if one is due.
    /// Returns false when nothing was delivered.
    pub fn step_network(&mut self) -> bool {
        while let Some(t) = self.a.poll_transmit() {
            self.net.send(self.now, addr(A), t.to.addr, t.bytes);
        }
        while let Some(t) = self.b.poll_transmit() {
            self.net.send(self.now, addr(B), t.to.addr, t.bytes);
        }
        let Some((from, to, bytes)) = self.net.deliver(self.now) else { return false };
        let layer = if to == addr(B) { &mut self.b } else { &mut self.a };
        match parse(&bytes).expect("the stack sends valid SIP") {
            Inbound::Request(r) => layer.handle_request(self.now, r, Peer::udp(from)),
            Inbound::Response(r) => layer.handle_response(self.now, r),
        }
        true
    }

    /// Advances time to the earliest of the network, both layers and `others`, and runs the
    /// layers' timers. Returns false when nothing is scheduled.
    pub fn advance(&mut self, others: &[Option<Instant>]) -> bool {
        let next = [self.net.next_arrival(), self.a.poll_timeout(), self.b.poll_timeout()]
            .into_iter()
            .chain(others.iter().copied())
            .flatten()
            .min();
        let Some(next) = next else { return false };
        self.now = next.max(self.now);
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
        true
    }
}
