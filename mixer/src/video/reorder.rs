//! A video leg's packets put back in sequence order before depacketizing.
//!
//! A picture is many packets, and one out of order would spoil it as surely as one lost, so
//! packets wait here until the next in sequence has come. A missing one is waited for at most
//! [`Reorder::max_wait`] (counted from the arrival of the packet after it), or until
//! [`Reorder::capacity`] packets wait behind it; then it counts as lost and the depacketizer
//! sees the gap. Sequence numbers are extended past their 16-bit wrap against the highest
//! seen; a packet more than [`MAX_JUMP`] away restarts the sequence (a new source, or a
//! sender that restarted), and one already released is dropped as late or duplicate.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A jump of more sequence numbers than this starts the sequence anew.
pub const MAX_JUMP: u64 = 3000;

/// Packets of one stream waiting for those before them.
#[derive(Debug)]
pub struct Reorder<T> {
    pub max_wait: Duration,
    pub capacity: usize,
    waiting: BTreeMap<u64, (Instant, T)>,
    /// The extended number of the next packet to release.
    next: Option<u64>,
    /// The highest extended number seen.
    highest: Option<u64>,
    /// Packets dropped as late or duplicate, and numbers given up as lost.
    pub late: u64,
    pub lost: u64,
}

impl<T> Reorder<T> {
    pub fn new(max_wait: Duration, capacity: usize) -> Reorder<T> {
        Reorder {
            max_wait,
            capacity: capacity.max(1),
            waiting: BTreeMap::new(),
            next: None,
            highest: None,
            late: 0,
            lost: 0,
        }
    }

    /// `seq` past the 16-bit wrap, nearest the highest number seen.
    fn extend(&self, seq: u16) -> u64 {
        let Some(highest) = self.highest else { return u64::from(seq) + (1 << 16) };
        let base = highest & !0xFFFF;
        let candidates = [base.wrapping_sub(1 << 16), base, base + (1 << 16)];
        candidates
            .into_iter()
            .map(|b| b.wrapping_add(u64::from(seq)))
            .min_by_key(|&c| c.abs_diff(highest))
            .unwrap_or(u64::from(seq))
    }

    /// Takes a packet that arrived at `now`.
    pub fn push(&mut self, now: Instant, seq: u16, item: T) {
        let mut extended = self.extend(seq);
        if self.highest.is_some_and(|h| extended.abs_diff(h) > MAX_JUMP) {
            // Not this stream's neighbourhood: start again from this packet.
            self.lost += self.waiting.len() as u64;
            self.waiting.clear();
            self.next = None;
            self.highest = None;
            extended = self.extend(seq);
        }
        if self.next.is_some_and(|next| extended < next) || self.waiting.contains_key(&extended) {
            self.late += 1;
            return;
        }
        self.next.get_or_insert(extended);
        self.highest = Some(self.highest.map_or(extended, |h| h.max(extended)));
        self.waiting.insert(extended, (now, item));
    }

    /// The next packet to depacketize at `now`, with its sequence number: in order, or past
    /// a gap waited for long enough.
    pub fn pop(&mut self, now: Instant) -> Option<(u16, T)> {
        let next = self.next?;
        let (&first, &(arrived, _)) = self.waiting.first_key_value()?;
        let give_up =
            self.waiting.len() > self.capacity || now.saturating_duration_since(arrived) >= self.max_wait;
        if first != next && !give_up {
            return None;
        }
        self.lost += first - next;
        let (_, item) = self.waiting.remove(&first)?;
        self.next = Some(first + 1);
        Some((first as u16, item))
    }

    /// When a packet waiting behind a gap is to be released anyway.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let (&first, (arrived, _)) = self.waiting.first_key_value()?;
        (Some(first) != self.next).then_some(*arrived + self.max_wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)] // the origin of virtual time
    fn t0() -> Instant {
        Instant::now()
    }

    fn drain(r: &mut Reorder<u16>, now: Instant) -> Vec<u16> {
        std::iter::from_fn(|| {
            r.pop(now).map(|(seq, item)| {
                assert_eq!(seq, item);
                seq
            })
        })
        .collect()
    }

    #[test]
    fn packets_come_out_in_order_across_the_wrap() {
        let t = t0();
        let mut r = Reorder::new(Duration::from_millis(40), 64);
        for seq in [65_534u16, 0, 65_535, 2, 1] {
            r.push(t, seq, seq);
        }
        assert_eq!(drain(&mut r, t), vec![65_534, 65_535, 0, 1, 2]);
        assert_eq!((r.lost, r.late), (0, 0));
    }

    #[test]
    fn a_gap_is_waited_for_then_given_up_as_lost() {
        let t = t0();
        let mut r = Reorder::new(Duration::from_millis(40), 64);
        r.push(t, 10, 10);
        r.push(t, 12, 12);
        assert_eq!(drain(&mut r, t), vec![10], "11 is awaited");
        assert_eq!(r.poll_timeout(), Some(t + Duration::from_millis(40)));
        assert_eq!(drain(&mut r, t + Duration::from_millis(39)), Vec::<u16>::new());
        assert_eq!(drain(&mut r, t + Duration::from_millis(40)), vec![12]);
        assert_eq!(r.lost, 1);
        // 11 arriving now is late, and dropped.
        r.push(t + Duration::from_millis(41), 11, 11);
        assert_eq!(drain(&mut r, t + Duration::from_millis(41)), Vec::<u16>::new());
        assert_eq!(r.late, 1);
    }

    #[test]
    fn a_full_buffer_gives_up_at_once_and_duplicates_are_dropped() {
        let t = t0();
        let mut r = Reorder::new(Duration::from_secs(10), 4);
        r.push(t, 0, 0);
        assert_eq!(drain(&mut r, t), vec![0]);
        for seq in 2..=6 {
            r.push(t, seq, seq);
        }
        r.push(t, 6, 6);
        assert_eq!(r.late, 1, "a duplicate");
        assert_eq!(drain(&mut r, t), vec![2, 3, 4, 5, 6], "five wait behind the gap, more than four");
        assert_eq!(r.lost, 1);
    }

    #[test]
    fn a_far_jump_restarts_the_sequence() {
        let t = t0();
        let mut r = Reorder::new(Duration::from_millis(40), 64);
        r.push(t, 100, 100);
        assert_eq!(drain(&mut r, t), vec![100]);
        r.push(t, 30_000, 30_000);
        r.push(t, 30_001, 30_001);
        assert_eq!(drain(&mut r, t), vec![30_000, 30_001]);
    }
}
