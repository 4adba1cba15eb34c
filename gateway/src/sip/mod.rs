//! The SIP transports: UDP sockets and TCP listeners, feeding [`handler`].
//!
//! Sockets are bound before anything is spawned, so an address in use stops start-up with the
//! address named.

mod handler;

use std::net::SocketAddr;
use std::sync::Arc;

use sip_stack::framing::{Frame, StreamFramer, PONG};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

use crate::metrics::Transport;
use crate::state::Shared;

#[derive(Debug, thiserror::Error)]
#[error("cannot listen for SIP on {transport} {addr}: {error}")]
pub struct BindError {
    transport: &'static str,
    addr: SocketAddr,
    error: std::io::Error,
}

/// Bound SIP sockets, not yet serving.
pub struct Listeners {
    udp: Vec<UdpSocket>,
    tcp: Vec<TcpListener>,
}

impl Listeners {
    pub async fn bind(udp: &[SocketAddr], tcp: &[SocketAddr]) -> Result<Listeners, BindError> {
        let mut listeners = Listeners { udp: Vec::new(), tcp: Vec::new() };
        for &addr in udp {
            let socket = UdpSocket::bind(addr)
                .await
                .map_err(|error| BindError { transport: "udp", addr, error })?;
            listeners.udp.push(socket);
        }
        for &addr in tcp {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|error| BindError { transport: "tcp", addr, error })?;
            listeners.tcp.push(listener);
        }
        Ok(listeners)
    }

    /// Serves every socket until shutdown begins.
    pub fn serve(self, shared: &Arc<Shared>, tasks: &mut JoinSet<()>) {
        for socket in self.udp {
            if let Ok(addr) = socket.local_addr() {
                tracing::info!(%addr, "SIP listening on UDP");
            }
            tasks.spawn(serve_udp(socket, shared.clone()));
        }
        for listener in self.tcp {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "SIP listening on TCP");
            }
            tasks.spawn(serve_tcp(listener, shared.clone()));
        }
    }
}

async fn serve_udp(socket: UdpSocket, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 65_535];
    let shutdown = shared.shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let (len, src) = tokio::select! {
            _ = &mut shutdown => return,
            received = socket.recv_from(&mut buf) => match received {
                Ok(r) => r,
                // ICMP port unreachable from an earlier send shows up here on some systems.
                Err(e) => {
                    tracing::debug!(error = %e, "UDP receive error");
                    continue;
                }
            },
        };
        // Keep-alives on UDP (RFC 5626 §4.4.2 uses STUN; plain CRLF is common): ignore.
        if buf[..len].iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
            continue;
        }
        if let Some(reply) = handler::handle(&shared, Transport::Udp, src, &buf[..len]) {
            if let Err(e) = socket.send_to(&reply.bytes, reply.to).await {
                tracing::warn!(to = %reply.to, error = %e, "UDP send failed");
            }
        }
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
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
        tokio::spawn(serve_connection(stream, src, shared.clone()));
    }
}

async fn serve_connection(mut stream: TcpStream, src: SocketAddr, shared: Arc<Shared>) {
    shared.metrics.tcp_connections.inc();
    let shutdown = shared.shutdown_signal();
    tokio::pin!(shutdown);
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; 16_384];
    'read: loop {
        let n = tokio::select! {
            _ = &mut shutdown => break,
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
        };
        framer.push(&buf[..n]);
        loop {
            let reply = match framer.next_frame() {
                Ok(None) => break,
                Ok(Some(Frame::Ping)) => PONG.to_vec(),
                Ok(Some(Frame::Message(bytes))) => {
                    match handler::handle(&shared, Transport::Tcp, src, &bytes) {
                        Some(reply) => reply.bytes,
                        None => continue,
                    }
                }
                Err(e) => {
                    // Without a usable length there is no next message to find.
                    tracing::debug!(%src, error = %e, "closing unframeable TCP stream");
                    break 'read;
                }
            };
            if stream.write_all(&reply).await.is_err() {
                break 'read;
            }
        }
    }
    shared.metrics.tcp_connections.dec();
}
