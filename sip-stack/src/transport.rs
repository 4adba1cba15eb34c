//! Transport-level types shared by the layers: which transport, where a message goes or came
//! from. The stack never touches sockets; the caller maps these to its own.

use std::net::SocketAddr;

/// A SIP transport (RFC 3261 §18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// Reliable transports get no retransmissions and zero-length wait timers (§17).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The token in a Via sent-protocol (`SIP/2.0/UDP`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// The URI parameter naming it in a Contact or Route (none for UDP, the default).
    pub fn uri_param(self) -> &'static str {
        match self {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
            Transport::Tls => ";transport=tls",
        }
    }
}

/// The caller's handle for a stream connection, so responses go back on it (§18.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

/// Where a message came from or goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
    /// For stream transports: the connection to use, when one exists.
    pub connection: Option<ConnectionId>,
}

impl Peer {
    pub fn udp(addr: SocketAddr) -> Peer {
        Peer { transport: Transport::Udp, addr, connection: None }
    }
}

/// Bytes to send, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: Peer,
    pub bytes: bytes::Bytes,
}
