//! RTP ports from the configured range: an even port for RTP and the odd one above it for
//! RTCP (RFC 3550 §11), handed out round-robin so a port just freed is not reused at once
//! (late packets of the old call would land in the new one).

use std::net::{IpAddr, SocketAddr, UdpSocket};

#[derive(Debug, thiserror::Error)]
#[error("no free RTP port pair in {min}-{max} on {address}")]
pub struct PortsExhausted {
    address: IpAddr,
    min: u16,
    max: u16,
}

/// A bound RTP/RTCP socket pair.
#[derive(Debug)]
pub struct PortPair {
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
    pub port: u16,
}

#[derive(Debug)]
pub struct Ports {
    address: IpAddr,
    /// First and last even port that can start a pair.
    first: u16,
    last: u16,
    next: u16,
}

impl Ports {
    /// `min` is rounded up to even; a pair needs `port + 1 <= max`.
    pub fn new(address: IpAddr, min: u16, max: u16) -> Ports {
        let first = min + (min & 1);
        let last = if max & 1 == 1 { max - 1 } else { max.saturating_sub(2) };
        Ports { address, first, last: last.max(first), next: first }
    }

    /// Binds the next free pair, trying each pair of the range at most once.
    pub fn allocate(&mut self) -> Result<PortPair, PortsExhausted> {
        self.allocate_free_on(&[])
    }

    /// The next pair whose RTP port is free on each of `also` too (a browser's peer connection
    /// binds it there once the pair is closed).
    pub fn allocate_free_on(&mut self, also: &[IpAddr]) -> Result<PortPair, PortsExhausted> {
        let pairs = usize::from((self.last - self.first) / 2) + 1;
        for _ in 0..pairs {
            let port = self.next;
            self.next = if port >= self.last { self.first } else { port + 2 };
            let Ok(rtp) = UdpSocket::bind(SocketAddr::new(self.address, port)) else { continue };
            let Ok(rtcp) = UdpSocket::bind(SocketAddr::new(self.address, port + 1)) else { continue };
            let elsewhere = also.iter().filter(|ip| **ip != self.address);
            if elsewhere.map(|ip| UdpSocket::bind(SocketAddr::new(*ip, port))).any(|s| s.is_err()) {
                continue;
            }
            return Ok(PortPair { rtp, rtcp, port });
        }
        Err(PortsExhausted { address: self.address, min: self.first, max: self.last + 1 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_even_odd_round_robin_and_skip_ports_in_use() {
        let localhost: IpAddr = [127, 0, 0, 1].into();
        // Find a small free stretch to work in.
        let base = (0..200)
            .map(|i| 41000 + i * 8)
            .find(|&b| (b..b + 6).all(|p| UdpSocket::bind((localhost, p)).is_ok()))
            .expect("a free range");
        let mut ports = Ports::new(localhost, base + 1, base + 5);
        let a = ports.allocate().unwrap();
        assert_eq!(a.port, base + 2, "min rounded up to even");
        assert_eq!(a.rtcp.local_addr().unwrap().port(), base + 3);
        let b = ports.allocate().unwrap();
        assert_eq!(b.port, base + 4);
        assert!(ports.allocate().is_err(), "both pairs in use");
        drop(a);
        assert_eq!(ports.allocate().unwrap().port, base + 2, "freed pair reused after wrapping");
    }

    #[test]
    fn a_port_taken_on_another_address_is_skipped() {
        let (one, two): (IpAddr, IpAddr) = ([127, 0, 0, 1].into(), [127, 0, 0, 2].into());
        let base = (0..200)
            .map(|i| 43000 + i * 8)
            .find(|&b| {
                (b..b + 4).all(|p| UdpSocket::bind((one, p)).is_ok() && UdpSocket::bind((two, p)).is_ok())
            })
            .expect("a free range");
        let mut ports = Ports::new(one, base, base + 3);
        let _taken = UdpSocket::bind((two, base)).unwrap();
        assert_eq!(ports.allocate_free_on(&[one, two]).unwrap().port, base + 2);
        assert_eq!(ports.allocate().unwrap().port, base, "free on the pool's own address");
    }
}
