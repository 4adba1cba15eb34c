//! Socket tasks: UDP readers and stream connections (TCP, accepted or opened by us) feed the
//! core through one channel; the core sends through [`Transports`] without waiting. A request
//! to a peer over TCP reuses the connection already open to it (RFC 3261 §18.1.1), or opens
//! one: the message waits in the connection's queue while it connects.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sip_stack::framing::{Frame, StreamFramer};
use sip_stack::transport::{ConnectionId, Peer, Transmit, Transport};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::limits::shrink_sparse;
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
        transport: Transport,
        src: SocketAddr,
        bytes: Bytes,
    },
    /// A CRLFCRLF keep-alive (RFC 5626 §4.4.1), answered in order with what precedes it.
    Ping {
        conn: ConnectionId,
    },
    /// A connection we accepted.
    Connected {
        conn: ConnectionId,
        transport: Transport,
        peer: SocketAddr,
        writer: mpsc::Sender<Bytes>,
    },
    /// A TCP connection we opened could not be: what went over it only for its size goes
    /// over UDP (RFC 3261 §18.1.1).
    Refused {
        addr: SocketAddr,
    },
    Closed {
        conn: ConnectionId,
    },
}

/// After a failed accept the loop waits this long, doubling up to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A stream connection as the core sees it.
struct Stream {
    writer: mpsc::Sender<Bytes>,
    key: (Transport, SocketAddr),
}

/// The core's way out: UDP sockets by index, stream connections by id and by peer.
pub struct Transports {
    udp: Vec<Arc<UdpSocket>>,
    streams: HashMap<ConnectionId, Stream>,
    /// The connection to use for a peer: the last one opened or accepted.
    by_peer: HashMap<(Transport, SocketAddr), ConnectionId>,
    /// For connections we open: their messages go to the core like accepted ones'.
    inbound: mpsc::Sender<Inbound>,
    shared: Arc<Shared>,
    closing: watch::Receiver<bool>,
    /// How to open TLS to a peer: trust anchors and the name its certificate must carry.
    tls_peers: HashMap<SocketAddr, (TlsConnector, ServerName<'static>)>,
}

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl Transports {
    pub fn new(
        udp: Vec<Arc<UdpSocket>>,
        inbound: mpsc::Sender<Inbound>,
        shared: Arc<Shared>,
        closing: watch::Receiver<bool>,
    ) -> Transports {
        Transports {
            udp,
            streams: HashMap::new(),
            by_peer: HashMap::new(),
            inbound,
            shared,
            closing,
            tls_peers: HashMap::new(),
        }
    }

    /// TLS connections to `addr` check its certificate with `connector` against `name`.
    pub fn add_tls_peer(&mut self, addr: SocketAddr, connector: TlsConnector, name: ServerName<'static>) {
        self.tls_peers.insert(addr, (connector, name));
    }

    /// The address of the first UDP listener: where trunk REGISTERs are sent from.
    pub fn udp_local_addr(&self) -> Option<SocketAddr> {
        self.udp.first().and_then(|s| s.local_addr().ok())
    }

    pub fn connected(
        &mut self,
        conn: ConnectionId,
        transport: Transport,
        peer: SocketAddr,
        writer: mpsc::Sender<Bytes>,
    ) {
        let key = (transport, peer);
        self.streams.insert(conn, Stream { writer, key });
        self.by_peer.insert(key, conn);
    }

    pub fn closed(&mut self, conn: ConnectionId) {
        if let Some(stream) = self.streams.remove(&conn) {
            if self.by_peer.get(&stream.key) == Some(&conn) {
                self.by_peer.remove(&stream.key);
            }
            shrink_sparse(&mut self.streams);
            shrink_sparse(&mut self.by_peer);
        }
    }

    /// Answers a keep-alive ping on its connection.
    pub fn pong(&self, conn: ConnectionId) {
        if let Some(s) = self.streams.get(&conn) {
            let _ = s.writer.try_send(Bytes::from_static(sip_stack::framing::PONG));
        }
    }

    /// The connection for `peer`: the one named, else the one open to its address, else a new
    /// one (opened in the background; its queue holds what is sent meanwhile).
    fn stream_for(&mut self, peer: Peer) -> &Stream {
        let key = (peer.transport, peer.addr);
        let named = peer.connection.filter(|c| self.streams.contains_key(c));
        let conn = match named.or_else(|| self.by_peer.get(&key).copied()) {
            Some(conn) => conn,
            None => {
                let conn = ConnectionId(NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed));
                let (writer, queue) = mpsc::channel::<Bytes>(256);
                tracing::debug!(to = %peer.addr, transport = ?peer.transport, "opening a connection");
                let tls = match peer.transport {
                    Transport::Tls => Some(self.tls_peers.get(&peer.addr).cloned().unwrap_or_else(|| {
                        // A peer no trunk names: the public PKI, and its IP address as the name.
                        let connector = super::tls::connector(None).expect("the built-in roots load");
                        (connector, ServerName::IpAddress(peer.addr.ip().into()))
                    })),
                    _ => None,
                };
                tokio::spawn(open_connection(
                    peer.addr,
                    tls,
                    conn,
                    queue,
                    self.inbound.clone(),
                    self.shared.clone(),
                    self.closing.clone(),
                ));
                self.streams.insert(conn, Stream { writer, key });
                self.by_peer.insert(key, conn);
                conn
            }
        };
        &self.streams[&conn]
    }

    /// Sends without waiting: a full socket buffer or connection queue drops the message, which
    /// SIP's retransmissions (UDP) or the peer's timeouts (TCP) recover from.
    pub fn send(&mut self, t: &Transmit) {
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
                let stream = self.stream_for(t.to);
                if stream.writer.try_send(t.bytes.clone()).is_err() {
                    tracing::warn!(to = %t.to.addr, "TCP connection queue full or closed");
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

/// Accepts SIP connections (over TLS with `tls`) until shutdown begins: at most
/// `limits.connections` open at once and `limits.connections_per_source` from one address;
/// past either, a new connection is closed at once. When accepting fails (out of file
/// descriptors, most likely) the loop backs off instead of spinning.
pub async fn accept_streams(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    tx: mpsc::Sender<Inbound>,
    shared: Arc<Shared>,
    closing: watch::Receiver<bool>,
) {
    // No new connections once shutdown begins.
    let shutdown = shared.shutdown_signal();
    tokio::pin!(shutdown);
    let mut backoff = ACCEPT_BACKOFF_FIRST;
    loop {
        let (stream, src) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "TCP accept failed");
                    tokio::select! {
                        _ = &mut shutdown => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            },
        };
        backoff = ACCEPT_BACKOFF_FIRST;
        let Some(slot) = shared.sip_connections_by_source.try_take(src.ip()) else {
            tracing::debug!(%src, "too many SIP connections from one address: closed");
            shared.metrics.sip.connections_refused.inc();
            continue;
        };
        let Ok(permit) = shared.sip_connections.clone().try_acquire_owned() else {
            tracing::warn!(%src, "SIP connection limit reached: closed");
            shared.metrics.sip.connections_refused.inc();
            continue;
        };
        let conn = ConnectionId(NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed));
        let (tls, tx, shared, closing) = (tls.clone(), tx.clone(), shared.clone(), closing.clone());
        tokio::spawn(async move {
            // Held for the connection's life.
            let _held = (slot, permit);
            let Some(acceptor) = tls else {
                return serve_connection(stream, src, conn, Transport::Tcp, tx, shared, closing).await;
            };
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    serve_connection(stream, src, conn, Transport::Tls, tx, shared, closing).await
                }
                Ok(Err(e)) => tracing::debug!(%src, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%src, "TLS handshake timed out"),
            }
        });
    }
}

/// An accepted connection: announced to the core, served, and its end reported.
async fn serve_connection<S: AsyncRead + AsyncWrite + Send + 'static>(
    stream: S,
    src: SocketAddr,
    conn: ConnectionId,
    transport: Transport,
    tx: mpsc::Sender<Inbound>,
    shared: Arc<Shared>,
    closing: watch::Receiver<bool>,
) {
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(256);
    let connected = Inbound::Connected { conn, transport, peer: src, writer: out_tx };
    let limits = &shared.config.limits;
    let timeouts = Some(Timeouts {
        idle: Duration::from_secs(limits.connection_idle_secs),
        message: Duration::from_secs(limits.message_secs),
    });
    if tx.send(connected).await.is_ok() {
        run_stream(stream, src, conn, transport, out_rx, &tx, &shared, closing, timeouts).await;
    }
    let _ = tx.send(Inbound::Closed { conn }).await;
}

/// A connection we open to `addr` (over TLS with `tls`); `queue` already holds what the core
/// sent to it.
async fn open_connection(
    addr: SocketAddr,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    conn: ConnectionId,
    queue: mpsc::Receiver<Bytes>,
    tx: mpsc::Sender<Inbound>,
    shared: Arc<Shared>,
    closing: watch::Receiver<bool>,
) {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => match tls {
            None => {
                tracing::debug!(to = %addr, "TCP connection open");
                run_stream(stream, addr, conn, Transport::Tcp, queue, &tx, &shared, closing, None).await;
            }
            Some((connector, name)) => {
                let handshake =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, stream)).await;
                match handshake {
                    Ok(Ok(stream)) => {
                        tracing::debug!(to = %addr, "TLS connection open");
                        run_stream(stream, addr, conn, Transport::Tls, queue, &tx, &shared, closing, None)
                            .await;
                    }
                    Ok(Err(e)) => tracing::warn!(to = %addr, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::warn!(to = %addr, "TLS handshake timed out"),
                }
            }
        },
        Ok(Err(e)) => {
            tracing::warn!(to = %addr, error = %e, "TCP connection failed");
            if tls.is_none() {
                let _ = tx.send(Inbound::Refused { addr }).await;
            }
        }
        Err(_) => {
            tracing::warn!(to = %addr, "TCP connection timed out");
            if tls.is_none() {
                let _ = tx.send(Inbound::Refused { addr }).await;
            }
        }
    }
    let _ = tx.send(Inbound::Closed { conn }).await;
}

/// How long an accepted connection may stay silent, and take to finish a message. Connections
/// we open (to trunks, which may send their calls back over them) have none.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    idle: Duration,
    message: Duration,
}

/// Writes the queue to the stream and frames what comes back, until either side closes.
#[allow(clippy::too_many_arguments)]
async fn run_stream<S: AsyncRead + AsyncWrite + Send + 'static>(
    stream: S,
    src: SocketAddr,
    conn: ConnectionId,
    transport: Transport,
    mut queue: mpsc::Receiver<Bytes>,
    tx: &mpsc::Sender<Inbound>,
    shared: &Shared,
    closing: watch::Receiver<bool>,
    timeouts: Option<Timeouts>,
) {
    shared.metrics.sip.tcp_connections.inc();
    let (mut reader, mut writer) = tokio::io::split(stream);
    let write_task = tokio::spawn(async move {
        while let Some(bytes) = queue.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    read_frames(&mut reader, src, conn, transport, tx, closing, timeouts).await;
    write_task.abort();
    shared.metrics.sip.tcp_connections.dec();
}

async fn read_frames(
    reader: &mut (impl AsyncRead + Unpin),
    src: SocketAddr,
    conn: ConnectionId,
    transport: Transport,
    tx: &mpsc::Sender<Inbound>,
    closing: watch::Receiver<bool>,
    timeouts: Option<Timeouts>,
) {
    let done = closed(closing);
    tokio::pin!(done);
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; 16_384];
    let mut last_read = tokio::time::Instant::now();
    // When the bytes of a message not yet complete began to arrive.
    let mut partial_since: Option<tokio::time::Instant> = None;
    loop {
        let deadline = timeouts.map(|t| {
            let idle = last_read + t.idle;
            partial_since.map_or(idle, |since| idle.min(since + t.message))
        });
        let expired = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let n = tokio::select! {
            _ = &mut done => return,
            _ = expired => {
                tracing::debug!(%src, partial = partial_since.is_some(), "closing a silent or slow SIP connection");
                return;
            }
            read = reader.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
        };
        last_read = tokio::time::Instant::now();
        framer.push(&buf[..n]);
        let mut completed = false;
        loop {
            match framer.next_frame() {
                Ok(None) => break,
                Ok(Some(Frame::Ping)) => {
                    if tx.send(Inbound::Ping { conn }).await.is_err() {
                        return;
                    }
                }
                Ok(Some(Frame::Message(bytes))) => {
                    completed = true;
                    if tx.send(Inbound::Stream { conn, transport, src, bytes }).await.is_err() {
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
        // What is left is the start of a message that began in this read if one completed
        // in it (a busy stream never ends a read on a boundary), else the same as before.
        partial_since = match (framer.pending(), partial_since) {
            (0, _) => None,
            (_, Some(since)) if !completed => Some(since),
            _ => Some(last_read),
        };
    }
}
