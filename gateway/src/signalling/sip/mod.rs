//! SIP on the wire: the listeners and connections ([`transport`], [`tls`]), the registrar for
//! desk phones ([`register`], with digest [`auth`]), and the trunks the gateway registers to
//! and pings ([`trunks`]). Call control ([`crate::conference`]) reads what arrives and decides
//! what to send.

pub mod auth;
pub mod register;
pub(crate) mod tls;
pub mod transport;
pub mod trunks;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::config::{SipConfig, TrunkConfig, TrunkTransport};
use crate::dns;
use crate::state::Shared;

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot listen for SIP on {transport} {addr}: {error}")]
    Socket { transport: &'static str, addr: SocketAddr, error: std::io::Error },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// Bound SIP sockets, not yet serving. Binding first means an address in use stops start-up
/// with the address named.
pub struct Listeners {
    udp: Vec<UdpSocket>,
    tcp: Vec<TcpListener>,
    tls: Vec<TcpListener>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
}

impl Listeners {
    pub async fn bind(config: &SipConfig) -> Result<Listeners, BindError> {
        let (udp, tcp) = (&config.udp, &config.tcp);
        let mut listeners = Listeners { udp: Vec::new(), tcp: Vec::new(), tls: Vec::new(), acceptor: None };
        if !config.tls.is_empty() {
            // Validated: both files are given when there is a TLS listener.
            let (cert, key) = (config.tls_certificate.as_deref(), config.tls_private_key.as_deref());
            if let (Some(cert), Some(key)) = (cert, key) {
                listeners.acceptor =
                    Some(tls::acceptor(("sip.tls_certificate", cert), ("sip.tls_private_key", key))?);
            }
        }
        for &addr in &config.tls {
            let listener = TcpListener::bind(addr).await.map_err(|error| BindError::Socket {
                transport: "tls",
                addr,
                error,
            })?;
            listeners.tls.push(listener);
        }
        for &addr in udp {
            let socket = UdpSocket::bind(addr).await.map_err(|error| BindError::Socket {
                transport: "udp",
                addr,
                error,
            })?;
            listeners.udp.push(socket);
        }
        for &addr in tcp {
            let listener = TcpListener::bind(addr).await.map_err(|error| BindError::Socket {
                transport: "tcp",
                addr,
                error,
            })?;
            listeners.tcp.push(listener);
        }
        Ok(listeners)
    }

    /// Starts the socket tasks; they run until call control closes them ([`SipIo::close`]).
    pub fn serve(self, shared: &Arc<Shared>, tasks: &mut JoinSet<()>) -> SipIo {
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
            tasks.spawn(transport::accept_streams(
                listener,
                None,
                tx.clone(),
                shared.clone(),
                closing.clone(),
            ));
        }
        if let Some(acceptor) = self.acceptor {
            for listener in self.tls {
                if let Ok(addr) = listener.local_addr() {
                    tracing::info!(%addr, "SIP listening on TLS");
                }
                tasks.spawn(transport::accept_streams(
                    listener,
                    Some(acceptor.clone()),
                    tx.clone(),
                    shared.clone(),
                    closing.clone(),
                ));
            }
        }
        let transports = transport::Transports::new(sockets, tx.clone(), shared.clone(), closing.clone());
        SipIo { transports, inbound: rx, close }
    }
}

/// The serving SIP sockets, as call control uses them: messages come in on `inbound`, go out
/// through `transports`; `close` stops the socket tasks.
pub struct SipIo {
    pub transports: transport::Transports,
    pub inbound: mpsc::Receiver<transport::Inbound>,
    pub close: watch::Sender<bool>,
}

/// A To tag: 64 random bits (RFC 3261 §19.3 asks for at least 32).
pub fn new_tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// TLS trunks: the trust anchors and name each one's server certificate is checked against.
pub fn add_tls_trunks(trunks: &[TrunkConfig], names: &dns::Names, transports: &mut transport::Transports) {
    for trunk in trunks.iter().filter(|t| t.transport == TrunkTransport::Tls) {
        let proxy = trunk.proxy.uri();
        let (Some(addr), Some(name)) =
            (names.address(proxy), tls::server_name(&proxy.host_with_port.host.to_string()))
        else {
            tracing::error!(trunk = %trunk.name, "TLS trunk without an address or server name");
            continue;
        };
        match tls::connector(trunk.tls_ca_file.as_deref()) {
            Ok(connector) => transports.add_tls_peer(addr, connector, name),
            Err(e) => tracing::error!(trunk = %trunk.name, error = %e, "TLS trunk unusable"),
        }
    }
}
