//! The packets a video stream sent lately, by sequence number: what a receiver's NACK
//! (RFC 4585 §6.2.1) is answered from. A fixed ring, so its memory does not grow with traffic.
//! What is kept of a packet is the caller's choice: a shared payload with the header fields
//! to write again costs no copy.

/// The last `N` packets sent (a power of two), each with its sequence number.
#[derive(Debug, Clone)]
pub struct SendHistory<T> {
    slots: Vec<Option<(u16, T)>>,
}

impl<T: Clone> SendHistory<T> {
    /// Room for `packets` packets, rounded up to a power of two (at most 32,768: half the
    /// sequence space, so that a number cannot mean two packets).
    pub fn new(packets: usize) -> SendHistory<T> {
        let n = packets.clamp(1, 1 << 15).next_power_of_two();
        SendHistory { slots: vec![None; n] }
    }

    /// Keeps a packet sent with sequence number `seq`.
    pub fn push(&mut self, seq: u16, packet: T) {
        let n = self.slots.len();
        self.slots[usize::from(seq) & (n - 1)] = Some((seq, packet));
    }

    /// The packet sent as `seq`, while it is kept.
    pub fn get(&self, seq: u16) -> Option<&T> {
        let n = self.slots.len();
        match &self.slots[usize::from(seq) & (n - 1)] {
            Some((kept, packet)) if *kept == seq => Some(packet),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn recent_packets_are_found_and_older_ones_are_gone_across_the_wrap() {
        let mut h = SendHistory::new(100);
        for seq in 65_000u16..=65_535 {
            h.push(seq, Bytes::from(seq.to_be_bytes().to_vec()));
        }
        for seq in 0u16..100 {
            h.push(seq, Bytes::from(seq.to_be_bytes().to_vec()));
        }
        // 128 slots: the last 128 packets sent.
        assert_eq!(h.get(99).map(|b| b.to_vec()), Some(99u16.to_be_bytes().to_vec()));
        assert!(h.get(65_508).is_some());
        assert!(h.get(65_507).is_none(), "overwritten");
        assert!(h.get(200).is_none(), "never sent");
    }
}
