//! Socket tasks: UDP readers and TCP connections feed the core through one channel; the core
//! sends through [`Transports`] without waiting.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use sip_stack::framing::{Frame, StreamFramer};
use sip_stack::transport::{ConnectionId, Peer, Transmit, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};

use crate::state::Shared;

/// What socket tasks hand to the core.
#[derive(Debug)]
pub enum Inbound {
    /// A datagram on UDP socket number `socket`.
    Datagram {
        socket: usize,
        src: SocketAddr,
        bytes: Bytes,
    },
    /// A whole message framed from a stream.
    Stream {
        conn: ConnectionId,
        src: SocketAddr,
        bytes: Bytes,
    },
    /// A CRLFCRLF keep-alive (RFC 5626 §4.4.1), answered in order with what precedes it.
    Ping {
        conn: ConnectionId,
    },
    Connected {
        conn: ConnectionId,
        writer: mpsc::Sender<Bytes>,
    },
    Closed {
        conn: ConnectionId,
    },
}

/// The core's way out: UDP sockets by index, TCP connections by id.
pub struct Transports {
    udp: Vec<Arc<UdpSocket>>,
    streams: HashMap<ConnectionId, mpsc::Sender<Bytes>>,
}

impl Transports {
    pub fn new(udp: Vec<Arc<UdpSocket>>) -> Transports {
        Transports { udp, streams: HashMap::new() }
    }

    /// The address of the first UDP listener: where trunk REGISTERs are sent from.
    pub fn udp_local_addr(&self) -> Option<SocketAddr> {
        self.udp.first().and_then(|s| s.local_addr().ok())
    }

    pub fn connected(&mut self, conn: ConnectionId, writer: mpsc::Sender<Bytes>) {
        self.streams.insert(conn, writer);
    }

    pub fn closed(&mut self, conn: ConnectionId) {
        self.streams.remove(&conn);
    }

    /// Answers a keep-alive ping on its connection.
    pub fn pong(&self, conn: ConnectionId) {
        if let Some(w) = self.streams.get(&conn) {
            let _ = w.try_send(Bytes::from_static(sip_stack::framing::PONG));
        }
    }

    /// Sends without waiting: a full socket buffer or connection queue drops the message, which
    /// SIP's retransmissions (UDP) or the peer's timeouts (TCP) recover from.
    pub fn send(&self, t: &Transmit) {
        match t.to.transport {
            Transport::Udp => {
                let index = t.to.connection.map_or(0, |c| c.0 as usize);
                let Some(socket) = self.udp.get(index).or_else(|| self.udp.first()) else {
                    tracing::warn!(to = %t.to.addr, "no UDP socket to send from");
                    return;
                };
                if let Err(e) = socket.try_send_to(&t.bytes, t.to.addr) {
                    tracing::warn!(to = %t.to.addr, error = %e, "UDP send failed");
                }
            }
            Transport::Tcp | Transport::Tls => {
                let writer = t.to.connection.and_then(|c| self.streams.get(&c));
                match writer {
                    Some(w) => {
                        if w.try_send(t.bytes.clone()).is_err() {
                            tracing::warn!(to = %t.to.addr, "TCP connection queue full or closed");
                        }
                    }
                    None => tracing::warn!(to = %t.to.addr, "no open connection to send on"),
                }
            }
        }
    }
}

/// The peer a message from a UDP socket came from.
pub fn udp_peer(socket: usize, src: SocketAddr) -> Peer {
    Peer { transport: Transport::Udp, addr: src, connection: Some(ConnectionId(socket as u64)) }
}

/// Resolves when the core has closed the transports.
async fn closed(mut closing: watch::Receiver<bool>) {
    let _ = closing.wait_for(|c| *c).await;
}

pub async fn read_udp(
    index: usize,
    socket: Arc<UdpSocket>,
    tx: mpsc::Sender<Inbound>,
    closing: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 65_535];
    let done = closed(closing);
    tokio::pin!(done);
    loop {
        let (len, src) = tokio::select! {
            _ = &mut done => return,
            received = socket.recv_from(&mut buf) => match received {
                Ok(r) => r,
                // ICMP port unreachable from an earlier send shows up here on some systems.
                Err(e) => {
                    tracing::debug!(error = %e, "UDP receive error");
                    continue;
                }
            },
        };
        // CRLF keep-alives on UDP: nothing to do.
        if buf[..len].iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
            continue;
        }
        let bytes = Bytes::copy_from_slice(&buf[..len]);
        if tx.send(Inbound::Datagram { socket: index, src, bytes }).await.is_err() {
            return;
        }
    }
}

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

pub async fn accept_tcp(
    listener: TcpListener,
    tx: mpsc::Sender<Inbound>,
    shared: Arc<Shared>,
    closing: watch::Receiver<bool>,
) {
    // No new connections once shutdown begins.
    let shutdown = shared.shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let (stream, src) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "TCP accept failed");
                    continue;
                }
            },
        };
        let conn = ConnectionId(NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed));
        tokio::spawn(serve_connection(stream, src, conn, tx.clone(), shared.clone(), closing.clone()));
    }
}

async fn serve_connection(
    stream: TcpStream,
    src: SocketAddr,
    conn: ConnectionId,
    tx: mpsc::Sender<Inbound>,
    shared: Arc<Shared>,
    closing: watch::Receiver<bool>,
) {
    shared.metrics.tcp_connections.inc();
    let (mut reader, mut writer) = stream.into_split();
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(256);
    let write_task = tokio::spawn(async move {
        while let Some(bytes) = out_rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    if tx.send(Inbound::Connected { conn, writer: out_tx.clone() }).await.is_ok() {
        read_frames(&mut reader, src, conn, &tx, closing).await;
    }
    let _ = tx.send(Inbound::Closed { conn }).await;
    drop(out_tx);
    write_task.abort();
    shared.metrics.tcp_connections.dec();
}

async fn read_frames(
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    src: SocketAddr,
    conn: ConnectionId,
    tx: &mpsc::Sender<Inbound>,
    closing: watch::Receiver<bool>,
) {
    let done = closed(closing);
    tokio::pin!(done);
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; 16_384];
    loop {
        let n = tokio::select! {
            _ = &mut done => return,
            read = reader.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
        };
        framer.push(&buf[..n]);
        loop {
            match framer.next_frame() {
                Ok(None) => break,
                Ok(Some(Frame::Ping)) => {
                    if tx.send(Inbound::Ping { conn }).await.is_err() {
                        return;
                    }
                }
                Ok(Some(Frame::Message(bytes))) => {
                    if tx.send(Inbound::Stream { conn, src, bytes }).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    // Without a usable length there is no next message to find.
                    tracing::debug!(%src, error = %e, "closing unframeable TCP stream");
                    return;
                }
            }
        }
    }
}
