//! An adaptive jitter buffer for one leg.
//!
//! Packets go in with their arrival time ([`JitterBuffer::push`]); the mixer takes one frame out
//! per tick ([`JitterBuffer::pop_due`]). The buffer follows the spread of the packets' transit
//! delay over the last [`WINDOW`] packets: its target is that spread plus a safety margin,
//! between [`MIN_DELAY`] and [`MAX_DELAY`]. When the delay held is below target (packets came
//! late) it stalls one tick, growing by a frame; when it is above target by more than a frame
//! it skips one, draining. A missing frame that is due is reported as lost, for concealment.
//!
//! Payloads live in a ring of reused buffers: nothing is allocated per packet once the ring has
//! seen its largest payload.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Packets whose transit delays set the target.
pub const WINDOW: usize = 100;
pub const MIN_DELAY: Duration = Duration::from_millis(20);
pub const MAX_DELAY: Duration = Duration::from_millis(300);
/// Added to the measured spread.
const MARGIN: Duration = Duration::from_millis(10);
/// Frames the ring holds (at 20 ms, 1.28 s).
const CAPACITY: usize = 64;

/// What the buffer gives for a tick.
#[derive(Debug, PartialEq, Eq)]
pub enum Playout<'a> {
    /// The frame due now, with the audio level its packet carried (RFC 6464, in −dBov).
    Frame { timestamp: u32, payload: &'a [u8], level: Option<u8> },
    /// The frame due now never arrived: conceal it. `next` is the following frame when it is
    /// already here (Opus can rebuild a lost frame from the next packet's FEC data).
    Lost { timestamp: u32, next: Option<&'a [u8]> },
    /// Playout is held back one tick to grow the delay (or has not started): play silence or
    /// concealment, and nothing is consumed.
    Wait,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    pub received: u64,
    pub played: u64,
    pub lost: u64,
    /// Arrived after their time: discarded.
    pub late: u64,
    pub duplicates: u64,
    /// Ticks spent growing the delay, and frames skipped to drain it.
    pub stalls: u64,
    pub skips: u64,
}

#[derive(Debug, Clone, Default)]
struct Slot {
    /// Extended timestamp of the frame held, if any.
    timestamp: Option<i64>,
    payload: Vec<u8>,
    level: Option<u8>,
}

#[derive(Debug, Clone)]
pub struct JitterBuffer {
    clock_rate: u32,
    frame_ts: i64,
    slots: Vec<Slot>,
    /// Extended timestamp of the next frame to play; `None` before the first packet.
    next: Option<i64>,
    /// Highest extended timestamp seen, for unwrapping.
    highest: Option<i64>,
    /// Transit delays (arrival − media time) of the last [`WINDOW`] packets, in microseconds:
    /// their least and greatest, kept in O(1) a packet.
    transits: SlidingRange,
    origin: Option<Instant>,
    target: Duration,
    stats: JitterStats,
}

impl JitterBuffer {
    /// A buffer for frames of `frame` at `clock_rate`.
    pub fn new(clock_rate: u32, frame: Duration) -> JitterBuffer {
        JitterBuffer {
            clock_rate,
            frame_ts: (u64::from(clock_rate) * frame.as_micros() as u64 / 1_000_000) as i64,
            slots: vec![Slot::default(); CAPACITY],
            next: None,
            highest: None,
            transits: SlidingRange::default(),
            origin: None,
            target: MIN_DELAY + MARGIN,
            stats: JitterStats::default(),
        }
    }

    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// The delay the buffer aims for.
    pub fn target_delay(&self) -> Duration {
        self.target
    }

    /// The delay held now: media buffered ahead of the playout point.
    pub fn buffered(&self) -> Duration {
        match (self.next, self.highest) {
            (Some(next), Some(highest)) if highest >= next => {
                self.ts_to_duration(highest - next + self.frame_ts)
            }
            _ => Duration::ZERO,
        }
    }

    fn ts_to_duration(&self, ts: i64) -> Duration {
        Duration::from_micros((ts.max(0) as u64) * 1_000_000 / u64::from(self.clock_rate))
    }

    /// Unwraps a 32-bit RTP timestamp next to the highest one seen.
    fn extend(&self, timestamp: u32) -> i64 {
        match self.highest {
            None => i64::from(timestamp),
            Some(highest) => {
                let delta = timestamp.wrapping_sub(highest as u32) as i32;
                highest + i64::from(delta)
            }
        }
    }

    /// A packet arrived at `now`, with the audio level it carried, if any.
    pub fn push(&mut self, now: Instant, timestamp: u32, payload: &[u8], level: Option<u8>) {
        let ts = self.extend(timestamp);
        self.stats.received += 1;
        self.record_transit(now, ts);
        self.highest = Some(self.highest.map_or(ts, |h| h.max(ts)));
        if let Some(next) = self.next {
            if ts < next {
                self.stats.late += 1;
                return;
            }
            if ts >= next + self.frame_ts * CAPACITY as i64 {
                // Far ahead (a timestamp jump, or a long gap): start over from this packet.
                self.restart(ts);
            }
        }
        let index = self.index(ts);
        let slot = &mut self.slots[index];
        if slot.timestamp == Some(ts) {
            self.stats.duplicates += 1;
            return;
        }
        slot.timestamp = Some(ts);
        slot.level = level;
        slot.payload.clear();
        slot.payload.extend_from_slice(payload);
    }

    fn restart(&mut self, ts: i64) {
        for slot in &mut self.slots {
            slot.timestamp = None;
        }
        self.next = None;
        self.highest = Some(ts);
        self.transits = SlidingRange::default();
        self.origin = None;
    }

    fn index(&self, ts: i64) -> usize {
        (ts.div_euclid(self.frame_ts.max(1))).rem_euclid(CAPACITY as i64) as usize
    }

    fn record_transit(&mut self, now: Instant, ts: i64) {
        let origin = *self.origin.get_or_insert(now);
        let arrival = (now - origin).as_micros() as i64;
        let media = ts * 1_000_000 / i64::from(self.clock_rate);
        let transit = arrival - media;
        let (min, max) = self.transits.push(transit);
        let spread = Duration::from_micros((max - min).max(0) as u64);
        self.target = (spread + MARGIN).clamp(MIN_DELAY, MAX_DELAY);
    }

    /// The frame to play at this tick.
    pub fn pop_due(&mut self) -> Playout<'_> {
        let Some(next) = self.next.or_else(|| self.first_ready()) else { return Playout::Wait };
        if self.next.is_none() {
            self.next = Some(next);
        }
        let held = self.buffered();
        // Too little held: packets are arriving later than the buffer allows. Grow by a tick.
        let have_next = self.slots[self.index(next)].timestamp == Some(next);
        if !have_next && held < self.target {
            self.stats.stalls += 1;
            return Playout::Wait;
        }
        // Too much held: drain a frame.
        let frame = self.ts_to_duration(self.frame_ts);
        let mut next = next;
        if held > self.target + frame * 2 {
            let i = self.index(next);
            self.slots[i].timestamp = None;
            next += self.frame_ts;
            self.stats.skips += 1;
        }
        self.next = Some(next + self.frame_ts);
        let i = self.index(next);
        let timestamp = next as u32;
        if self.slots[i].timestamp == Some(next) {
            self.slots[i].timestamp = None;
            self.stats.played += 1;
            Playout::Frame { timestamp, payload: &self.slots[i].payload, level: self.slots[i].level }
        } else {
            self.stats.lost += 1;
            let j = self.index(next + self.frame_ts);
            let following = (self.slots[j].timestamp == Some(next + self.frame_ts))
                .then(|| self.slots[j].payload.as_slice());
            Playout::Lost { timestamp, next: following }
        }
    }

    /// Before playout starts: the first frame, once enough is buffered to cover the target.
    fn first_ready(&self) -> Option<i64> {
        let highest = self.highest?;
        let earliest = self.slots.iter().filter_map(|s| s.timestamp).min()?;
        let held = self.ts_to_duration(highest - earliest + self.frame_ts);
        (held >= self.target).then_some(earliest)
    }
}

/// The least and greatest of the last [`WINDOW`] values pushed: two monotonic queues, so each
/// push costs O(1) amortized instead of a scan of the window.
#[derive(Debug, Clone, Default)]
struct SlidingRange {
    /// Values pushed so far; each queue entry is (its number, the value).
    count: u64,
    /// Increasing values: the front is the least in the window.
    lows: VecDeque<(u64, i64)>,
    /// Decreasing values: the front is the greatest in the window.
    highs: VecDeque<(u64, i64)>,
}

impl SlidingRange {
    /// Adds `value`; the window's least and greatest, `value` included.
    fn push(&mut self, value: i64) -> (i64, i64) {
        let n = self.count;
        self.count += 1;
        while self.lows.back().is_some_and(|&(_, v)| v >= value) {
            self.lows.pop_back();
        }
        while self.highs.back().is_some_and(|&(_, v)| v <= value) {
            self.highs.pop_back();
        }
        self.lows.push_back((n, value));
        self.highs.push_back((n, value));
        let oldest = (n + 1).saturating_sub(WINDOW as u64);
        for queue in [&mut self.lows, &mut self.highs] {
            while queue.front().is_some_and(|&(i, _)| i < oldest) {
                queue.pop_front();
            }
        }
        (self.lows.front().map_or(value, |e| e.1), self.highs.front().map_or(value, |e| e.1))
    }
}

#[cfg(test)]
mod tests;
