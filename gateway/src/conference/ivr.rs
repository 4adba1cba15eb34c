//! PIN entry: digits in, a decision out. Time is an input.
//!
//! [`PinEntry`] collects digits until `#` (or until the longest PIN is reached), compares them
//! with the room's PIN and moderator PIN, and counts wrong attempts; silence longer than the
//! digit timeout counts as a wrong attempt too. [`PinGuard`] remembers wrong PINs per source
//! address, so guessing PINs from one place gets slow.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::ids::TrunkName;
use crate::limits::shrink_sparse;

/// What a digit (or the timeout) led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinStep {
    /// Keep collecting.
    More,
    /// Wrong PIN; `left` attempts remain.
    Wrong { left: u32 },
    /// Wrong PIN and no attempts left: goodbye.
    Failed,
    /// The PIN (or the moderator PIN) is right.
    Accepted { moderator: bool },
}

#[derive(Debug, Clone)]
pub struct PinEntry {
    pin: Option<String>,
    moderator_pin: Option<String>,
    digits: String,
    attempts_left: u32,
    digit_timeout: Duration,
    deadline: Instant,
}

impl PinEntry {
    pub fn new(
        now: Instant,
        pin: Option<String>,
        moderator_pin: Option<String>,
        attempts: u32,
        digit_timeout: Duration,
    ) -> PinEntry {
        PinEntry {
            pin,
            moderator_pin,
            digits: String::new(),
            attempts_left: attempts,
            digit_timeout,
            deadline: now + digit_timeout,
        }
    }

    fn longest(&self) -> usize {
        self.pin.iter().chain(&self.moderator_pin).map(String::len).max().unwrap_or(0)
    }

    /// Restarts the digit timer, for instance when a prompt finished playing.
    pub fn restart_timer(&mut self, now: Instant) {
        self.deadline = now + self.digit_timeout;
    }

    pub fn digit(&mut self, now: Instant, digit: char) -> PinStep {
        self.deadline = now + self.digit_timeout;
        match digit {
            '#' => self.complete(),
            // `*` starts over, as on most bridges.
            '*' => {
                self.digits.clear();
                PinStep::More
            }
            d if d.is_ascii_digit() => {
                self.digits.push(d);
                // `#` (or the digit timeout) ends an attempt; a digit beyond the longest PIN
                // ends it at once, wrong whatever follows.
                if self.digits.len() > self.longest() {
                    self.complete()
                } else {
                    PinStep::More
                }
            }
            _ => PinStep::More,
        }
    }

    pub fn poll_timeout(&self) -> Instant {
        self.deadline
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Option<PinStep> {
        (now >= self.deadline).then(|| {
            self.deadline = now + self.digit_timeout;
            self.complete()
        })
    }

    fn complete(&mut self) -> PinStep {
        let entered = std::mem::take(&mut self.digits);
        if let Some(moderator) = check_pin(self.pin.as_deref(), self.moderator_pin.as_deref(), &entered) {
            return PinStep::Accepted { moderator };
        }
        self.attempts_left = self.attempts_left.saturating_sub(1);
        match self.attempts_left {
            0 => PinStep::Failed,
            left => PinStep::Wrong { left },
        }
    }
}

/// Who is guessing: a caller's address, or for calls through a trunk (which all come from the
/// carrier's few addresses) the trunk and the caller ID, so one PSTN caller cannot lock out a
/// whole carrier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PinSource {
    Address(IpAddr),
    Caller { trunk: TrunkName, caller: String },
}

/// Why PIN entry is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinBlock {
    /// This source used up its wrong PINs.
    Source,
    /// The room had too many wrong PINs from everyone together: someone is guessing from many
    /// addresses. The room refuses PIN callers (a lock, never a leak) until the window passes.
    Room,
}

/// Sources and rooms tracked at most; past it, the oldest are forgotten first.
const MAX_TRACKED: usize = 65_536;

/// Wrong PINs per source and per room, each within a window counted from its last failure.
#[derive(Debug)]
pub struct PinGuard {
    limit: u32,
    /// 0: rooms are not limited as a whole.
    room_limit: u32,
    window: Duration,
    sources: HashMap<PinSource, (u32, Instant)>,
    rooms: HashMap<String, (u32, Instant)>,
    next_sweep: Option<Instant>,
}

impl PinGuard {
    pub fn new(limit: u32, room_limit: u32, window: Duration) -> PinGuard {
        PinGuard {
            limit,
            room_limit,
            window,
            sources: HashMap::new(),
            rooms: HashMap::new(),
            next_sweep: None,
        }
    }

    /// Whether `source` may try PINs for `room` now.
    pub fn blocked(&mut self, now: Instant, source: &PinSource, room: &str) -> Option<PinBlock> {
        self.forget_old(now);
        // Each entry's own age decides, not the last sweep: a block ends exactly a window
        // after the last wrong PIN.
        let window = self.window;
        let over = |&(count, last): &(u32, Instant), limit: u32| {
            count >= limit && now.saturating_duration_since(last) < window
        };
        if self.sources.get(source).is_some_and(|e| over(e, self.limit)) {
            return Some(PinBlock::Source);
        }
        let room_full = self.rooms.get(room).is_some_and(|e| over(e, self.room_limit));
        (self.room_limit > 0 && room_full).then_some(PinBlock::Room)
    }

    pub fn failure(&mut self, now: Instant, source: PinSource, room: &str) {
        self.forget_old(now);
        let count = |map_len: usize| map_len < MAX_TRACKED;
        if count(self.sources.len()) || self.sources.contains_key(&source) {
            let entry = self.sources.entry(source).or_insert((0, now));
            *entry = (entry.0 + 1, now);
        }
        if count(self.rooms.len()) || self.rooms.contains_key(room) {
            let entry = self.rooms.entry(room.to_string()).or_insert((0, now));
            *entry = (entry.0 + 1, now);
        }
    }

    /// At most once a second: entries whose window has passed go.
    fn forget_old(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|at| now < at) {
            return;
        }
        self.next_sweep = Some(now + Duration::from_secs(1));
        let window = self.window;
        self.sources.retain(|_, &mut (_, last)| now.saturating_duration_since(last) < window);
        self.rooms.retain(|_, &mut (_, last)| now.saturating_duration_since(last) < window);
        shrink_sparse(&mut self.sources);
        shrink_sparse(&mut self.rooms);
    }
}

/// Whether `entered` opens a room: `Some(true)` as moderator, `Some(false)` as participant.
pub fn check_pin(pin: Option<&str>, moderator_pin: Option<&str>, entered: &str) -> Option<bool> {
    if moderator_pin == Some(entered) {
        Some(true)
    } else if pin == Some(entered) {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)] // the origin of virtual time
    fn t0() -> Instant {
        Instant::now()
    }

    fn entry(t0: Instant) -> PinEntry {
        PinEntry::new(t0, Some("4321".into()), Some("9999".into()), 3, Duration::from_secs(10))
    }

    fn enter(e: &mut PinEntry, now: Instant, digits: &str) -> PinStep {
        let mut last = PinStep::More;
        for d in digits.chars() {
            last = e.digit(now, d);
        }
        last
    }

    #[test]
    fn right_pin_joins_and_moderator_pin_marks_moderator() {
        let t0 = t0();
        assert_eq!(enter(&mut entry(t0), t0, "4321#"), PinStep::Accepted { moderator: false });
        assert_eq!(enter(&mut entry(t0), t0, "9999#"), PinStep::Accepted { moderator: true });
        assert_eq!(enter(&mut entry(t0), t0, "12*4321#"), PinStep::Accepted { moderator: false });
    }

    #[test]
    fn three_wrong_attempts_fail_and_a_right_second_one_joins() {
        let t0 = t0();
        let mut e = entry(t0);
        assert_eq!(enter(&mut e, t0, "1111#"), PinStep::Wrong { left: 2 });
        assert_eq!(enter(&mut e, t0, "4321#"), PinStep::Accepted { moderator: false });

        let mut e = entry(t0);
        assert_eq!(enter(&mut e, t0, "1#"), PinStep::Wrong { left: 2 });
        assert_eq!(enter(&mut e, t0, "12345"), PinStep::Wrong { left: 1 }, "longer than any PIN");
        assert_eq!(enter(&mut e, t0, "#"), PinStep::Failed, "an empty PIN is wrong too");
    }

    #[test]
    fn silence_counts_as_a_wrong_attempt_after_the_digit_timeout() {
        let t0 = t0();
        let mut e = entry(t0);
        assert_eq!(e.poll_timeout(), t0 + Duration::from_secs(10));
        assert_eq!(e.handle_timeout(t0 + Duration::from_secs(9)), None);
        e.digit(t0 + Duration::from_secs(9), '4');
        assert_eq!(e.handle_timeout(t0 + Duration::from_secs(18)), None, "a digit restarts the timer");
        assert_eq!(e.handle_timeout(t0 + Duration::from_secs(19)), Some(PinStep::Wrong { left: 2 }));
        assert_eq!(e.poll_timeout(), t0 + Duration::from_secs(29));
    }

    #[test]
    fn a_source_is_blocked_after_the_limit_until_the_window_passes() {
        let t0 = t0();
        let ip = PinSource::Address([192, 0, 2, 1].into());
        let other = PinSource::Address([192, 0, 2, 2].into());
        let mut guard = PinGuard::new(3, 0, Duration::from_secs(600));
        for i in 0..3 {
            assert_eq!(guard.blocked(t0, &ip, "1000"), None);
            guard.failure(t0 + Duration::from_secs(i), ip.clone(), "1000");
        }
        assert_eq!(guard.blocked(t0 + Duration::from_secs(10), &ip, "2000"), Some(PinBlock::Source));
        assert_eq!(guard.blocked(t0 + Duration::from_secs(10), &other, "1000"), None);
        assert_eq!(
            guard.blocked(t0 + Duration::from_secs(602), &ip, "1000"),
            None,
            "the window is counted from the last failure"
        );
    }

    #[test]
    fn callers_through_a_trunk_are_told_apart_by_caller_id() {
        let t0 = t0();
        let caller = |id: &str| PinSource::Caller { trunk: "carrier".into(), caller: id.into() };
        let mut guard = PinGuard::new(2, 0, Duration::from_secs(600));
        guard.failure(t0, caller("+15550001"), "1000");
        guard.failure(t0, caller("+15550001"), "1000");
        assert_eq!(guard.blocked(t0, &caller("+15550001"), "1000"), Some(PinBlock::Source));
        assert_eq!(guard.blocked(t0, &caller("+15550002"), "1000"), None, "the carrier's other callers");
    }

    #[test]
    fn a_room_guessed_at_from_many_addresses_locks_until_the_window_passes() {
        let t0 = t0();
        let mut guard = PinGuard::new(10, 5, Duration::from_secs(600));
        for host in 1..=5u8 {
            guard.failure(t0, PinSource::Address([198, 51, 100, host].into()), "1000");
        }
        let newcomer = PinSource::Address([203, 0, 113, 9].into());
        assert_eq!(guard.blocked(t0, &newcomer, "1000"), Some(PinBlock::Room));
        assert_eq!(guard.blocked(t0, &newcomer, "2000"), None, "other rooms are not touched");
        assert_eq!(guard.blocked(t0 + Duration::from_secs(601), &newcomer, "1000"), None);
    }
}
