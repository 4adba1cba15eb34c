//! The active speaker, for layouts that show one large: taken from the audio mixer's voice
//! activity, with hold times so that the picture does not flicker between people.
//!
//! Someone becomes the speaker after talking for [`SpeakerPolicy::take_after`] without a
//! break longer than [`SpeakerPolicy::gap`] (a cough or a "yes" does not take the floor), and
//! only once the current speaker has held it for [`SpeakerPolicy::min_hold`] or has been quiet
//! for [`SpeakerPolicy::hangover`]. Nobody talking leaves the last speaker on screen.

use std::time::{Duration, Instant};

/// The hold times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeakerPolicy {
    pub take_after: Duration,
    pub gap: Duration,
    pub min_hold: Duration,
    pub hangover: Duration,
}

impl Default for SpeakerPolicy {
    fn default() -> SpeakerPolicy {
        SpeakerPolicy {
            take_after: Duration::from_millis(700),
            gap: Duration::from_millis(300),
            min_hold: Duration::from_secs(2),
            hangover: Duration::from_millis(1500),
        }
    }
}

/// Picks the speaker of one room; `P` names a participant.
#[derive(Debug, Clone)]
pub struct SpeakerSelector<P> {
    policy: SpeakerPolicy,
    current: Option<Current<P>>,
    /// Who is talking towards the floor: since when, and when last heard.
    candidate: Option<(P, Instant, Instant)>,
    /// Times the speaker changed.
    pub switches: u64,
}

#[derive(Debug, Clone)]
struct Current<P> {
    who: P,
    since: Instant,
    last_heard: Instant,
}

impl<P: Clone + PartialEq> SpeakerSelector<P> {
    pub fn new(policy: SpeakerPolicy) -> SpeakerSelector<P> {
        SpeakerSelector { policy, current: None, candidate: None, switches: 0 }
    }

    /// The speaker after a tick at `now` in which `loudest` talked loudest (none when nobody
    /// talked).
    pub fn update(&mut self, now: Instant, loudest: Option<P>) -> Option<&P> {
        let p = self.policy;
        match (&mut self.current, loudest) {
            (_, None) => {}
            (Some(current), Some(who)) if current.who == who => {
                current.last_heard = now;
                self.candidate = None;
            }
            (_, Some(who)) => {
                let fresh = match &self.candidate {
                    Some((c, _, heard)) => *c != who || now.saturating_duration_since(*heard) > p.gap,
                    None => true,
                };
                if fresh {
                    self.candidate = Some((who, now, now));
                } else if let Some(candidate) = &mut self.candidate {
                    candidate.2 = now;
                }
            }
        }
        if let Some((who, since, _)) = self.candidate.clone() {
            let long_enough = now.saturating_duration_since(since) >= p.take_after;
            let floor_free = self.current.as_ref().is_none_or(|c| {
                now.saturating_duration_since(c.since) >= p.min_hold
                    || now.saturating_duration_since(c.last_heard) >= p.hangover
            });
            // The first talker of a room takes the floor at once.
            if (long_enough && floor_free) || self.current.is_none() {
                self.current = Some(Current { who, since: now, last_heard: now });
                self.candidate = None;
                self.switches += 1;
            }
        }
        self.current.as_ref().map(|c| &c.who)
    }

    /// A participant left: it stops being the speaker or a candidate.
    pub fn remove(&mut self, who: &P) {
        if self.current.as_ref().is_some_and(|c| c.who == *who) {
            self.current = None;
        }
        if self.candidate.as_ref().is_some_and(|c| c.0 == *who) {
            self.candidate = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs 20 ms ticks from `from_ms` to `to_ms` with `who` talking; returns the speaker
    /// after each tick.
    fn talk(
        s: &mut SpeakerSelector<u32>,
        start: Instant,
        from_ms: u64,
        to_ms: u64,
        who: Option<u32>,
    ) -> Vec<Option<u32>> {
        (from_ms..to_ms)
            .step_by(20)
            .map(|ms| s.update(start + Duration::from_millis(ms), who).copied())
            .collect()
    }

    #[test]
    fn the_floor_changes_only_after_steady_talk_and_a_fair_hold() {
        #[allow(clippy::disallowed_methods)] // the origin of virtual time
        let start = Instant::now();
        let mut s = SpeakerSelector::new(SpeakerPolicy::default());
        // The first talker takes the floor at once.
        assert_eq!(talk(&mut s, start, 0, 20, Some(1)), [Some(1)]);
        talk(&mut s, start, 20, 1000, Some(1));
        // Two interrupts of 200 ms do not take it.
        talk(&mut s, start, 1000, 1200, Some(2));
        talk(&mut s, start, 1200, 1400, Some(1));
        assert_eq!(talk(&mut s, start, 1400, 1600, Some(2)).last(), Some(&Some(1)));
        // 2 talks on: after 700 ms of it, and past 1's two-second hold, 2 takes the floor.
        let after = talk(&mut s, start, 1600, 3000, Some(2));
        let switched_at = after.iter().position(|w| *w == Some(2)).unwrap() as u64 * 20 + 1600;
        assert_eq!(switched_at, 2100, "700 ms after 2 began again at 1400");
        // Silence keeps the last speaker.
        assert_eq!(talk(&mut s, start, 3000, 8000, None).last(), Some(&Some(2)));
        assert_eq!(s.switches, 2);
    }

    #[test]
    fn a_new_speaker_cannot_be_displaced_before_its_hold_unless_it_fell_quiet() {
        #[allow(clippy::disallowed_methods)]
        let start = Instant::now();
        let mut s = SpeakerSelector::new(SpeakerPolicy::default());
        talk(&mut s, start, 0, 100, Some(1));
        // 3 talks steadily from 100 ms: it would wait for 1's two-second hold, but 1 has been
        // quiet for its 1.5 s hangover first: 1,500 ms after its last tick, at 80 ms.
        let after = talk(&mut s, start, 100, 2500, Some(3));
        let switched_at = after.iter().position(|w| *w == Some(3)).unwrap() as u64 * 20 + 100;
        assert_eq!(switched_at, 1580);
        s.remove(&3);
        assert_eq!(s.update(start + Duration::from_millis(2600), None), None);
    }
}
