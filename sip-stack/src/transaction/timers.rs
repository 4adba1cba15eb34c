//! The timers of RFC 3261 §17 (Table 4) and RFC 6026, and a per-transaction table of them.

use std::time::{Duration, Instant};

/// Timer base values (RFC 3261 §17.1.1.1, Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// Round-trip estimate: 500 ms.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses: 4 s.
    pub t2: Duration,
    /// Maximum time a message stays in the network: 5 s.
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> TimerConfig {
        TimerConfig { t1: Duration::from_millis(500), t2: Duration::from_secs(4), t4: Duration::from_secs(5) }
    }
}

impl TimerConfig {
    /// 64·T1: Timers B, F, H, J (unreliable), L, M.
    pub fn transaction_timeout(&self) -> Duration {
        self.t1 * 64
    }
}

/// The named timers. Each transaction uses the ones of its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// INVITE request retransmit (client, unreliable).
    A,
    /// INVITE transaction timeout (client).
    B,
    /// Wait time for response retransmits (client INVITE, Completed).
    D,
    /// Non-INVITE request retransmit (client, unreliable).
    E,
    /// Non-INVITE transaction timeout (client).
    F,
    /// INVITE final response retransmit (server, unreliable).
    G,
    /// Wait time for ACK receipt (server INVITE).
    H,
    /// Wait time for ACK retransmits (server INVITE, Confirmed).
    I,
    /// Wait time for non-INVITE request retransmits (server).
    J,
    /// Wait time for response retransmits (client non-INVITE, Completed).
    K,
    /// Wait time for INVITE retransmits after a 2xx (server, RFC 6026 Accepted).
    L,
    /// Wait time for 2xx retransmits (client, RFC 6026 Accepted).
    M,
}

const TIMER_COUNT: usize = 12;

impl Timer {
    fn slot(self) -> usize {
        self as usize
    }

    const ALL: [Timer; TIMER_COUNT] = [
        Timer::A,
        Timer::B,
        Timer::D,
        Timer::E,
        Timer::F,
        Timer::G,
        Timer::H,
        Timer::I,
        Timer::J,
        Timer::K,
        Timer::L,
        Timer::M,
    ];
}

/// The armed timers of one transaction; the next deadline is the earliest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimerTable {
    slots: [Option<Instant>; TIMER_COUNT],
}

impl TimerTable {
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.slots[timer.slot()] = Some(at);
    }

    pub fn clear(&mut self, timer: Timer) {
        self.slots[timer.slot()] = None;
    }

    pub fn clear_all(&mut self) {
        self.slots = Default::default();
    }

    pub fn deadline(&self, timer: Timer) -> Option<Instant> {
        self.slots[timer.slot()]
    }

    /// The earliest armed timer.
    pub fn next(&self) -> Option<(Instant, Timer)> {
        Timer::ALL.iter().filter_map(|&t| self.slots[t.slot()].map(|at| (at, t))).min()
    }

    /// Disarms and returns the earliest timer due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let (at, timer) = self.next()?;
        if at <= now {
            self.clear(timer);
            Some(timer)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods)] // the origin of virtual time
    fn table_pops_in_deadline_order() {
        let t0 = Instant::now();
        let mut table = TimerTable::default();
        table.set(Timer::B, t0 + Duration::from_secs(32));
        table.set(Timer::A, t0 + Duration::from_millis(500));
        assert_eq!(table.next(), Some((t0 + Duration::from_millis(500), Timer::A)));
        assert_eq!(table.pop_due(t0), None);
        assert_eq!(table.pop_due(t0 + Duration::from_secs(40)), Some(Timer::A));
        assert_eq!(table.pop_due(t0 + Duration::from_secs(40)), Some(Timer::B));
        assert_eq!(table.pop_due(t0 + Duration::from_secs(40)), None);
    }
}
