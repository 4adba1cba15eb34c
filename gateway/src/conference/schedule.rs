//! Deadlines by key, earliest first: what [`super::core::Core::poll_timeout`] reads instead of a
//! scan of every call.
//!
//! Setting a key's deadline and taking the ones due cost O(log n). A heap entry stands only
//! while it is still its key's deadline; entries a later change made stale are dropped as they
//! surface, and the heap is rebuilt when they outnumber the live ones, so it stays bounded by
//! the number of keys.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;
use std::time::Instant;

use crate::limits::shrink_sparse;

/// Stale entries tolerated beyond twice the live ones before the heap is rebuilt.
const SLACK: usize = 64;

#[derive(Debug)]
pub struct Schedule<K> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
    current: HashMap<K, Instant>,
}

impl<K> Default for Schedule<K> {
    fn default() -> Self {
        Schedule { heap: BinaryHeap::new(), current: HashMap::new() }
    }
}

impl<K: Copy + Ord + Hash> Schedule<K> {
    /// `key`'s deadline from now on; `None` takes it off the schedule.
    pub fn set(&mut self, key: K, at: Option<Instant>) {
        match at {
            Some(at) if self.current.get(&key) != Some(&at) => {
                self.current.insert(key, at);
                self.heap.push(Reverse((at, key)));
                if self.heap.len() > 2 * self.current.len() + SLACK {
                    self.rebuild();
                }
            }
            Some(_) => {}
            None => {
                self.current.remove(&key);
            }
        }
    }

    /// The earliest deadline.
    pub fn next(&mut self) -> Option<Instant> {
        self.drop_stale();
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// The keys whose deadline has come by `now`, earliest first, taken off the schedule.
    pub fn due(&mut self, now: Instant) -> Vec<K> {
        let mut due = Vec::new();
        while self.next().is_some_and(|at| at <= now) {
            let Some(Reverse((_, key))) = self.heap.pop() else { break };
            self.current.remove(&key);
            due.push(key);
        }
        due
    }

    /// Gives back what the tables grew to for a peak.
    pub fn compact(&mut self) {
        shrink_sparse(&mut self.current);
        if self.heap.capacity() > 4 * self.heap.len() + SLACK {
            self.rebuild();
        }
    }

    fn drop_stale(&mut self) {
        while let Some(&Reverse((at, key))) = self.heap.peek() {
            if self.current.get(&key) == Some(&at) {
                break;
            }
            self.heap.pop();
        }
    }

    fn rebuild(&mut self) {
        self.heap = self.current.iter().map(|(key, at)| Reverse((*at, *key))).collect();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn keys_come_due_in_deadline_order_and_a_moved_deadline_counts_once() {
        #[allow(clippy::disallowed_methods)] // the origin of virtual time
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut schedule = Schedule::default();
        schedule.set(1u32, Some(s(5)));
        schedule.set(2, Some(s(3)));
        schedule.set(3, Some(s(4)));
        schedule.set(2, Some(s(9)));
        schedule.set(3, None);
        assert_eq!(schedule.next(), Some(s(5)));
        assert_eq!(schedule.due(s(4)), Vec::<u32>::new());
        assert_eq!(schedule.due(s(9)), vec![1, 2]);
        assert_eq!(schedule.next(), None);
    }

    #[test]
    fn a_deadline_moved_many_times_leaves_the_heap_bounded() {
        #[allow(clippy::disallowed_methods)] // the origin of virtual time
        let t0 = Instant::now();
        let mut schedule = Schedule::default();
        for n in 0..10_000u64 {
            schedule.set(7u32, Some(t0 + Duration::from_millis(10_000 - n)));
        }
        assert!(schedule.heap.len() <= 2 + SLACK, "{}", schedule.heap.len());
        assert_eq!(schedule.due(t0 + Duration::from_secs(60)), vec![7]);
    }
}
