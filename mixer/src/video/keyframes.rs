//! Keyframes on request, without letting one receiver flood the others.
//!
//! A viewer asks the shared encoder of its class for a keyframe (RTCP PLI or FIR, SIP INFO
//! `picture_fast_update`, or by joining). Every viewer of the class gets the keyframe, and
//! keyframes cost several times a delta picture, so [`KeyframeGate`] serves the first request
//! at the next picture and folds every request within [`KeyframeGate::min_interval`] after it
//! into one more keyframe at the end of that interval: any number of requests costs at most
//! one keyframe per interval, and none waits longer than one.
//!
//! The other way, [`KeyframeAsker`] asks a source for a keyframe when its decoder needs one
//! (it joined, it lost a packet, the layout changed), again at most once per interval, and
//! asks again while none has come.

use std::time::{Duration, Instant};

/// Coalesces viewers' keyframe requests for one shared encoder.
#[derive(Debug, Clone)]
pub struct KeyframeGate {
    pub min_interval: Duration,
    /// When the last keyframe was made.
    last: Option<Instant>,
    /// A request is waiting.
    pending: bool,
    /// Requests taken, and keyframes they caused.
    pub requests: u64,
    pub keyframes: u64,
}

impl KeyframeGate {
    pub fn new(min_interval: Duration) -> KeyframeGate {
        KeyframeGate { min_interval, last: None, pending: false, requests: 0, keyframes: 0 }
    }

    /// A viewer asked for a keyframe.
    pub fn request(&mut self) {
        self.requests += 1;
        self.pending = true;
    }

    /// Whether the picture encoded `now` is to be a keyframe.
    pub fn keyframe_now(&mut self, now: Instant) -> bool {
        let allowed = self.last.is_none_or(|last| now.saturating_duration_since(last) >= self.min_interval);
        if !(self.pending && allowed) {
            return false;
        }
        self.pending = false;
        self.last = Some(now);
        self.keyframes += 1;
        true
    }

    /// The encoder made a keyframe of its own (its first picture, a scene change): it
    /// answers what is waiting too.
    pub fn made_keyframe(&mut self, now: Instant) {
        self.pending = false;
        self.last = Some(now);
    }
}

/// Asks one source for keyframes while its decoder needs one.
#[derive(Debug, Clone)]
pub struct KeyframeAsker {
    pub min_interval: Duration,
    last_asked: Option<Instant>,
    needed: bool,
    pub asked: u64,
}

impl KeyframeAsker {
    pub fn new(min_interval: Duration) -> KeyframeAsker {
        KeyframeAsker { min_interval, last_asked: None, needed: false, asked: 0 }
    }

    /// The decoder needs a keyframe (or has one again: `false`).
    pub fn set_needed(&mut self, needed: bool) {
        self.needed = needed;
    }

    /// Whether to send the source a request `now` (PLI or FIR where it negotiated them, else
    /// SIP INFO).
    pub fn ask_now(&mut self, now: Instant) -> bool {
        let allowed =
            self.last_asked.is_none_or(|last| now.saturating_duration_since(last) >= self.min_interval);
        if !(self.needed && allowed) {
            return false;
        }
        self.last_asked = Some(now);
        self.asked += 1;
        true
    }

    /// When to call [`KeyframeAsker::ask_now`] next (`now` when it is due already), if a
    /// keyframe is still needed.
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        match (self.needed, self.last_asked) {
            (false, _) => None,
            (true, Some(last)) => Some((last + self.min_interval).max(now)),
            (true, None) => Some(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hundred_requests_in_a_second_make_at_most_one_keyframe_per_interval() {
        #[allow(clippy::disallowed_methods)] // the origin of virtual time
        let start = Instant::now();
        let mut gate = KeyframeGate::new(Duration::from_millis(500));
        let mut keyframes = Vec::new();
        // 30 pictures a second for two seconds; a request every 10 ms during the first second.
        for ms in 0..2000u64 {
            let now = start + Duration::from_millis(ms);
            if ms < 1000 && ms % 10 == 0 {
                gate.request();
            }
            if ms % 33 == 0 && gate.keyframe_now(now) {
                keyframes.push(ms);
            }
        }
        assert_eq!(gate.requests, 100);
        // At 0 ms, then the first pictures 500 ms after each: bounded, none late by more.
        assert_eq!(keyframes, [0, 528, 1056]);
        assert!(keyframes.windows(2).all(|w| w[1] - w[0] >= 500));
    }

    #[test]
    fn a_lone_request_is_served_at_the_next_picture_and_an_own_keyframe_answers_it() {
        #[allow(clippy::disallowed_methods)]
        let start = Instant::now();
        let mut gate = KeyframeGate::new(Duration::from_millis(500));
        assert!(!gate.keyframe_now(start), "nothing asked");
        gate.request();
        assert!(gate.keyframe_now(start + Duration::from_millis(5)));
        gate.request();
        gate.made_keyframe(start + Duration::from_millis(600));
        assert!(!gate.keyframe_now(start + Duration::from_millis(1200)), "answered by the encoder's own");
    }

    #[test]
    fn a_source_is_asked_again_while_no_keyframe_comes_and_not_after() {
        #[allow(clippy::disallowed_methods)]
        let start = Instant::now();
        let mut asker = KeyframeAsker::new(Duration::from_millis(300));
        assert!(asker.poll_timeout(start).is_none());
        asker.set_needed(true);
        assert_eq!(asker.poll_timeout(start), Some(start));
        let asked: Vec<u64> =
            (0..1000u64).step_by(20).filter(|&ms| asker.ask_now(start + Duration::from_millis(ms))).collect();
        assert_eq!(asked, [0, 300, 600, 900]);
        assert_eq!(
            asker.poll_timeout(start + Duration::from_millis(1000)),
            Some(start + Duration::from_millis(1200))
        );
        asker.set_needed(false);
        assert!(!asker.ask_now(start + Duration::from_millis(5000)));
        assert!(asker.poll_timeout(start).is_none());
    }
}
