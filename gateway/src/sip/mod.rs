//! SIP in the gateway: sockets ([`transport`]), the core task that owns the transaction layer
//! ([`core`]), and the handlers it dispatches to.

mod auth;
mod calls;
pub mod core;
mod dialout;
mod invite;
mod register;
pub mod transport;
pub mod trunks;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::state::Shared;

#[derive(Debug, thiserror::Error)]
#[error("cannot listen for SIP on {transport} {addr}: {error}")]
pub struct BindError {
    transport: &'static str,
    addr: SocketAddr,
    error: std::io::Error,
}

/// Bound SIP sockets, not yet serving. Binding first means an address in use stops start-up
/// with the address named.
pub struct Listeners {
    udp: Vec<UdpSocket>,
    tcp: Vec<TcpListener>,
}

impl Listeners {
    pub async fn bind(udp: &[SocketAddr], tcp: &[SocketAddr]) -> Result<Listeners, BindError> {
        let mut listeners = Listeners { udp: Vec::new(), tcp: Vec::new() };
        for &addr in udp {
            let socket =
                UdpSocket::bind(addr).await.map_err(|error| BindError { transport: "udp", addr, error })?;
            listeners.udp.push(socket);
        }
        for &addr in tcp {
            let listener =
                TcpListener::bind(addr).await.map_err(|error| BindError { transport: "tcp", addr, error })?;
            listeners.tcp.push(listener);
        }
        Ok(listeners)
    }

    /// Starts the socket tasks and the core; they stop when shutdown begins.
    pub fn serve(self, shared: &Arc<Shared>, media: core::MediaParts, tasks: &mut JoinSet<()>) {
        let (tx, rx) = mpsc::channel(4096);
        // Sockets keep reading until the core is done (it un-registers trunks after the
        // shutdown signal and needs their answers); the core closes them when it exits.
        let (close, closing) = watch::channel(false);
        let mut sockets = Vec::new();
        for (index, socket) in self.udp.into_iter().enumerate() {
            if let Ok(addr) = socket.local_addr() {
                tracing::info!(%addr, "SIP listening on UDP");
            }
            let socket = Arc::new(socket);
            sockets.push(socket.clone());
            tasks.spawn(transport::read_udp(index, socket, tx.clone(), closing.clone()));
        }
        for listener in self.tcp {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "SIP listening on TCP");
            }
            tasks.spawn(transport::accept_tcp(listener, tx.clone(), shared.clone(), closing.clone()));
        }
        let transports = transport::Transports::new(sockets, tx.clone(), shared.clone(), closing.clone());
        tasks.spawn(core::run(shared.clone(), transports, rx, close, media));
    }
}
