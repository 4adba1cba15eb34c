//! Media source security: which remote address a leg's RTP and RTCP may come from.
//!
//! A leg that answers whoever sent last can be taken over: a stranger who sends a few packets
//! to its port is mixed into the room and receives the room's audio. [`SourceGuard`] learns the
//! peer once and then holds it, as Asterisk's `strictrtp` and rtpengine's strict source do:
//! - at the start, a packet from the address the SDP named is taken at once; from anywhere
//!   else (a phone behind NAT) only after a *probation* run of packets from one address, of one
//!   SSRC, with consecutive sequence numbers (RFC 3550 §A.1's idea of a valid source);
//! - once learnt, packets from any other address are dropped and counted;
//! - another address replaces the learnt one only after the learnt one has been silent for
//!   [`SourcePolicy::relearn_after`], never while the call is on hold, and only with the learnt
//!   stream's own SSRC and a probation run (a phone whose NAT binding changed keeps its SSRC;
//!   a stranger does not know it unless he can read the stream anyway);
//! - a packet from the SDP's address always wins at once, so a stranger who raced the phone
//!   to the port loses it to the phone's first packet;
//! - RTCP is taken only from the learnt address, the port above it, or where the SDP said.
//!
//! On SRTP legs the caller feeds only packets that authenticated, so nobody without the key
//! can be learnt. Time is an input.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How strict a guard is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourcePolicy {
    /// False: follow the latest sender (symmetric RTP without protection).
    pub strict: bool,
    /// Consecutive packets of one SSRC a new address must send before it is learnt.
    pub probation: u16,
    /// How long the learnt address must be silent before another may replace it.
    pub relearn_after: Duration,
}

impl Default for SourcePolicy {
    fn default() -> SourcePolicy {
        SourcePolicy { strict: true, probation: 4, relearn_after: Duration::from_secs(2) }
    }
}

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// From the learnt source: use it.
    Accept,
    /// From a source learnt by this packet: use it, and send to it from now on.
    Learned,
    /// From elsewhere: drop it.
    Drop,
}

/// A newcomer serving its probation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Candidate {
    source: SocketAddr,
    ssrc: u32,
    next_seq: u16,
    run: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing learnt yet; `expected` is the SDP's address.
    Learning { expected: Option<SocketAddr>, candidate: Option<Candidate> },
    /// `source` is the peer, sending `ssrc`; `last_seen` its latest packet.
    Locked { source: SocketAddr, ssrc: u32, last_seen: Instant, candidate: Option<Candidate> },
}

/// One leg's source guard.
#[derive(Debug, Clone)]
pub struct SourceGuard {
    policy: SourcePolicy,
    state: State,
    /// The address the SDP named: its packets are always taken.
    expected: Option<SocketAddr>,
    /// On hold: the phone may be silent for long, so nobody new is learnt.
    held: bool,
    foreign: u64,
}

impl SourceGuard {
    /// A guard for a leg whose SDP named `expected` (None: no usable address, or on hold).
    pub fn new(policy: SourcePolicy, expected: Option<SocketAddr>) -> SourceGuard {
        SourceGuard {
            policy,
            state: State::Learning { expected, candidate: None },
            expected,
            held: false,
            foreign: 0,
        }
    }

    /// The SDP now names `expected` (a re-INVITE that moved the media): learn again, taking a
    /// packet from there at once. The same address as before changes nothing.
    pub fn expect(&mut self, expected: SocketAddr) {
        if self.expected == Some(expected) {
            return;
        }
        self.expected = Some(expected);
        match self.state {
            State::Locked { source, .. } if source == expected => {}
            _ => self.state = State::Learning { expected: Some(expected), candidate: None },
        }
    }

    /// The call went on hold (or came back): while held, nobody new is learnt.
    pub fn set_held(&mut self, held: bool) {
        self.held = held;
    }

    /// The learnt source, if any.
    pub fn source(&self) -> Option<SocketAddr> {
        match self.state {
            State::Locked { source, .. } => Some(source),
            State::Learning { .. } => None,
        }
    }

    /// Packets dropped because they came from somewhere else.
    pub fn foreign_packets(&self) -> u64 {
        self.foreign
    }

    /// An RTP packet (already authenticated on SRTP legs) from `from`.
    pub fn check_rtp(&mut self, now: Instant, from: SocketAddr, ssrc: u32, seq: u16) -> Verdict {
        let locked = State::Locked { source: from, ssrc, last_seen: now, candidate: None };
        if !self.policy.strict {
            let same = matches!(self.state, State::Locked { source, .. } if source == from);
            self.state = locked;
            return if same { Verdict::Accept } else { Verdict::Learned };
        }
        let probation = self.policy.probation.max(1);
        let (expected, held, relearn_after) = (self.expected, self.held, self.policy.relearn_after);
        match &mut self.state {
            State::Learning { expected, candidate } => {
                if *expected == Some(from) || serve(candidate, from, ssrc, seq, probation) {
                    self.state = locked;
                    return Verdict::Learned;
                }
                Verdict::Drop
            }
            State::Locked { source, ssrc: locked_ssrc, last_seen, candidate } => {
                if *source == from {
                    // The peer may change its SSRC (a new stream after a re-INVITE).
                    (*locked_ssrc, *last_seen, *candidate) = (ssrc, now, None);
                    return Verdict::Accept;
                }
                if expected == Some(from) {
                    self.state = locked;
                    return Verdict::Learned;
                }
                let silent = now.saturating_duration_since(*last_seen) >= relearn_after;
                let may_move = silent && !held && ssrc == *locked_ssrc;
                if may_move && serve(candidate, from, ssrc, seq, probation) {
                    self.state = locked;
                    return Verdict::Learned;
                }
                if !may_move {
                    *candidate = None;
                }
                self.foreign += 1;
                Verdict::Drop
            }
        }
    }

    /// An RTCP packet from `from`: taken from the learnt address or the port above it (RFC 3550
    /// §11), or from `sdp_rtcp`, the address the SDP named for RTCP; before learning, from the
    /// SDP's RTP address or the port above it. RTCP from a NAT that does not keep ports in
    /// pairs is dropped: that costs statistics only, never audio.
    pub fn check_rtcp(&mut self, from: SocketAddr, sdp_rtcp: Option<SocketAddr>) -> bool {
        let beside = |rtp: SocketAddr| {
            rtp == from || (rtp.ip() == from.ip() && rtp.port().checked_add(1) == Some(from.port()))
        };
        let allowed = !self.policy.strict
            || sdp_rtcp == Some(from)
            || match self.state {
                State::Locked { source, .. } => beside(source),
                State::Learning { expected, .. } => expected.is_some_and(beside),
            };
        if !allowed {
            self.foreign += 1;
        }
        allowed
    }
}

/// Counts `from`'s packet toward its probation; true when the run is long enough.
fn serve(candidate: &mut Option<Candidate>, from: SocketAddr, ssrc: u32, seq: u16, probation: u16) -> bool {
    let run = match candidate {
        Some(c) if c.source == from && c.ssrc == ssrc && c.next_seq == seq => c.run + 1,
        _ => 1,
    };
    *candidate = Some(Candidate { source: from, ssrc, next_seq: seq.wrapping_add(1), run });
    run >= probation
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[allow(clippy::disallowed_methods)] // the origin of virtual time
    fn origin() -> Instant {
        Instant::now()
    }

    const PHONE: &str = "192.0.2.10:4000";
    const ROGUE: &str = "203.0.113.66:5555";

    #[test]
    fn the_sdp_address_is_taken_at_once_and_others_are_dropped() {
        let t0 = origin();
        let mut g = SourceGuard::new(SourcePolicy::default(), Some(addr(PHONE)));
        assert_eq!(g.check_rtp(t0, addr(PHONE), 7, 100), Verdict::Learned);
        assert_eq!(g.source(), Some(addr(PHONE)));
        for seq in 0..50 {
            let at = t0 + Duration::from_millis(20 * u64::from(seq));
            assert_eq!(g.check_rtp(at, addr(ROGUE), 99, seq), Verdict::Drop);
            assert_eq!(g.check_rtp(at, addr(PHONE), 7, 101 + seq), Verdict::Accept);
        }
        assert_eq!(g.foreign_packets(), 50);
        assert!(g.check_rtcp(addr("192.0.2.10:4001"), None), "RTCP from the port above RTP's");
        assert!(g.check_rtcp(addr(PHONE), None), "RTCP beside RTP on one port");
        assert!(!g.check_rtcp(addr("203.0.113.66:5556"), None));
        assert!(!g.check_rtcp(addr("192.0.2.10:5001"), None), "another port of the phone's host");
        assert!(g.check_rtcp(addr("192.0.2.10:5001"), Some(addr("192.0.2.10:5001"))), "a=rtcp said so");
        assert_eq!(g.foreign_packets(), 52);
    }

    #[test]
    fn behind_nat_a_run_of_sequential_packets_is_learnt() {
        let t0 = origin();
        let nat = addr("198.51.100.7:31000");
        let mut g = SourceGuard::new(SourcePolicy::default(), Some(addr("10.0.0.5:4000")));
        assert_eq!(g.check_rtp(t0, nat, 1, 10), Verdict::Drop);
        assert_eq!(g.check_rtp(t0, nat, 1, 11), Verdict::Drop);
        // A gap in the sequence starts the run again.
        assert_eq!(g.check_rtp(t0, nat, 1, 13), Verdict::Drop);
        assert_eq!(g.check_rtp(t0, nat, 1, 14), Verdict::Drop);
        assert_eq!(g.check_rtp(t0, nat, 1, 15), Verdict::Drop);
        assert_eq!(g.check_rtp(t0, nat, 1, 16), Verdict::Learned);
        assert_eq!(g.check_rtp(t0, nat, 1, 17), Verdict::Accept);
        assert!(!g.check_rtcp(addr("10.0.0.5:4001"), None), "the SDP's address is not the learnt one");
        assert!(g.check_rtcp(addr("198.51.100.7:31001"), None));
    }

    #[test]
    fn sequence_numbers_wrap_within_a_run() {
        let t0 = origin();
        let mut g = SourceGuard::new(SourcePolicy::default(), None);
        let from = addr(PHONE);
        let verdicts: Vec<Verdict> =
            [65534, 65535, 0, 1].iter().map(|&s| g.check_rtp(t0, from, 3, s)).collect();
        assert_eq!(verdicts, [Verdict::Drop, Verdict::Drop, Verdict::Drop, Verdict::Learned]);
    }

    #[test]
    fn two_senders_interleaved_at_the_start_learn_nobody_until_one_runs_alone() {
        let t0 = origin();
        let mut g = SourceGuard::new(SourcePolicy::default(), None);
        for seq in 0..20 {
            assert_eq!(g.check_rtp(t0, addr(PHONE), 1, seq), Verdict::Drop);
            assert_eq!(g.check_rtp(t0, addr(ROGUE), 2, seq), Verdict::Drop);
        }
        assert_eq!(g.source(), None);
    }

    #[test]
    fn a_stranger_never_takes_over_while_the_phone_talks() {
        let t0 = origin();
        let mut g = SourceGuard::new(SourcePolicy::default(), Some(addr(PHONE)));
        g.check_rtp(t0, addr(PHONE), 7, 0);
        // Ten packets per phone packet, in perfect sequence, for a minute.
        for i in 0..3000u16 {
            let at = t0 + Duration::from_millis(20 * u64::from(i));
            for k in 0..10 {
                assert_eq!(g.check_rtp(at, addr(ROGUE), 9, i * 10 + k), Verdict::Drop);
            }
            assert_eq!(g.check_rtp(at, addr(PHONE), 7, i + 1), Verdict::Accept);
        }
        assert_eq!(g.source(), Some(addr(PHONE)));
    }

    #[test]
    fn a_phone_that_moves_is_followed_after_the_old_address_falls_silent() {
        let t0 = origin();
        let policy = SourcePolicy::default();
        // Behind NAT: the SDP names a private address; the binding's address is learnt.
        let mut g = SourceGuard::new(policy, Some(addr("10.0.0.5:4000")));
        let old = addr("198.51.100.7:31000");
        for seq in 0..4 {
            g.check_rtp(t0, old, 7, seq);
        }
        let moved = addr("198.51.100.7:31888");
        // Too early: the old address spoke 1 s ago.
        let early = t0 + Duration::from_secs(1);
        for seq in 4..=10 {
            assert_eq!(g.check_rtp(early, moved, 7, seq), Verdict::Drop);
        }
        let late = t0 + policy.relearn_after;
        let verdicts: Vec<Verdict> = (11..=14).map(|s| g.check_rtp(late, moved, 7, s)).collect();
        assert_eq!(verdicts, [Verdict::Drop, Verdict::Drop, Verdict::Drop, Verdict::Learned]);
        assert_eq!(g.check_rtp(late, old, 7, 15), Verdict::Drop, "the old address is foreign now");
    }

    #[test]
    fn a_stranger_cannot_take_over_a_silent_or_held_call() {
        let t0 = origin();
        let nat = addr("198.51.100.7:31000");
        let mut g = SourceGuard::new(SourcePolicy::default(), Some(addr("10.0.0.5:4000")));
        for seq in 0..4 {
            g.check_rtp(t0, nat, 7, seq);
        }
        assert_eq!(g.source(), Some(nat));
        // The phone falls silent (VAD) for ten seconds: a stranger's own stream is not taken.
        let later = t0 + Duration::from_secs(10);
        for seq in 0..50 {
            assert_eq!(g.check_rtp(later, addr(ROGUE), 99, seq), Verdict::Drop);
        }
        // On hold, not even a stream with the phone's SSRC is.
        g.set_held(true);
        for seq in 100..150 {
            assert_eq!(g.check_rtp(later, addr(ROGUE), 7, seq), Verdict::Drop);
        }
        g.set_held(false);
        assert_eq!(g.check_rtp(later, nat, 7, 4), Verdict::Accept, "the phone resumes");
    }

    #[test]
    fn the_sdp_address_wins_back_a_port_a_stranger_raced_for() {
        let t0 = origin();
        let mut g = SourceGuard::new(SourcePolicy::default(), Some(addr(PHONE)));
        for seq in 0..4 {
            g.check_rtp(t0, addr(ROGUE), 99, seq);
        }
        assert_eq!(g.source(), Some(addr(ROGUE)), "the stranger was first");
        assert_eq!(g.check_rtp(t0, addr(PHONE), 7, 0), Verdict::Learned);
        assert_eq!(g.check_rtp(t0, addr(ROGUE), 99, 4), Verdict::Drop);
    }

    #[test]
    fn a_re_invite_to_a_new_address_is_taken_at_once() {
        let t0 = origin();
        let mut g = SourceGuard::new(SourcePolicy::default(), Some(addr(PHONE)));
        g.check_rtp(t0, addr(PHONE), 7, 0);
        g.expect(addr(PHONE));
        assert_eq!(g.source(), Some(addr(PHONE)), "the same address keeps what was learnt");
        let moved = addr("192.0.2.11:4000");
        g.expect(moved);
        assert_eq!(g.check_rtp(t0, moved, 8, 500), Verdict::Learned);
    }

    #[test]
    fn without_strictness_the_latest_sender_is_followed() {
        let t0 = origin();
        let policy = SourcePolicy { strict: false, ..SourcePolicy::default() };
        let mut g = SourceGuard::new(policy, Some(addr(PHONE)));
        assert_eq!(g.check_rtp(t0, addr(ROGUE), 1, 0), Verdict::Learned);
        assert_eq!(g.check_rtp(t0, addr(ROGUE), 1, 1), Verdict::Accept);
        assert_eq!(g.check_rtp(t0, addr(PHONE), 2, 0), Verdict::Learned);
        assert!(g.check_rtcp(addr(ROGUE), None));
    }
}
