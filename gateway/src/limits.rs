//! Per-source bounds on what one address may hold open at once (join pages, connections).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Counts what each address holds; an address holds at most `max` at once. The map holds only
/// addresses with something open, so it is bounded by the total the caller allows.
#[derive(Debug)]
pub struct SourceSlots {
    max: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One slot held by an address, given back when dropped.
#[derive(Debug)]
pub struct SourceSlot {
    slots: Arc<SourceSlots>,
    ip: IpAddr,
}

impl SourceSlots {
    pub fn new(max: usize) -> Arc<SourceSlots> {
        Arc::new(SourceSlots { max, counts: Mutex::new(HashMap::new()) })
    }

    /// A slot for `ip`, or `None` when it holds `max` already.
    pub fn try_take(self: &Arc<Self>, ip: IpAddr) -> Option<SourceSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(SourceSlot { slots: self.clone(), ip })
    }

    /// Slots `ip` holds now.
    pub fn held(&self, ip: IpAddr) -> usize {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut counts = self.slots.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_holds_at_most_max_and_gets_slots_back() {
        let slots = SourceSlots::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = slots.try_take(a).unwrap();
        let _second = slots.try_take(a).unwrap();
        assert!(slots.try_take(a).is_none());
        assert!(slots.try_take(b).is_some(), "another address is not held back");
        drop(first);
        assert_eq!(slots.held(a), 1);
        assert!(slots.try_take(a).is_some());
        assert_eq!(slots.held(b), 0, "a dropped slot leaves no entry");
    }
}
