//! The HTTP server: health, metrics, the REST API ([`crate::api`]) and the join page
//! ([`join`]); over TLS when `[http]` names a certificate (browsers give a page its
//! microphone only over HTTPS, or from localhost).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::{IncomingStream, Listener};
use axum::{Json, Router};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use self::deadlines::WithDeadlines;
use crate::api::{authorize, bearer, same_secret, Access, ApiError};
use crate::config::HttpConfig;
use crate::signalling::sip::tls::{self, TlsError};
use crate::state::Shared;

mod deadlines;
pub mod join;

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshakes under way at once.
const MAX_HANDSHAKES: usize = 256;
/// Handshaken connections waiting for the server to take them.
const READY_QUEUE: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot listen for HTTP on {addr}: {error}")]
    Socket { addr: SocketAddr, error: std::io::Error },
    #[error("HTTPS: {0}")]
    Tls(#[from] TlsError),
}

/// The bound listener, plain or TLS.
pub struct HttpListener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
}

pub async fn bind(config: &HttpConfig) -> Result<HttpListener, BindError> {
    let tls = match (&config.tls_certificate, &config.tls_private_key) {
        (Some(certificate), Some(key)) => {
            Some(tls::acceptor(("http.tls_certificate", certificate), ("http.tls_private_key", key))?)
        }
        _ => None,
    };
    let addr = config.listen;
    let tcp = TcpListener::bind(addr).await.map_err(|error| BindError::Socket { addr, error })?;
    Ok(HttpListener { tcp, tls })
}

/// The address a request came from: the TCP peer, or for a trusted proxy the last
/// `X-Forwarded-For` entry it added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client(pub SocketAddr);

impl Connected<IncomingStream<'_, WithDeadlines<TcpListener>>> for Client {
    fn connect_info(stream: IncomingStream<'_, WithDeadlines<TcpListener>>) -> Client {
        Client(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, WithDeadlines<TlsListener>>> for Client {
    fn connect_info(stream: IncomingStream<'_, WithDeadlines<TlsListener>>) -> Client {
        Client(*stream.remote_addr())
    }
}

impl Client {
    /// Who is behind `self`: a trusted proxy's forwarded address, or `self`.
    pub fn behind(self, trusted_proxies: &[IpAddr], headers: &HeaderMap) -> SocketAddr {
        if !trusted_proxies.contains(&self.0.ip()) {
            return self.0;
        }
        // The proxy appends the address it saw: the last entry is the one it vouches for.
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .last()
            .and_then(|ip| ip.trim().parse::<IpAddr>().ok());
        forwarded.map_or(self.0, |ip| SocketAddr::new(ip, 0))
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/trunks", get(trunks))
        .merge(crate::api::router());
    if shared.config.webrtc.enabled {
        router = router.merge(crate::http::join::router());
    }
    router.with_state(shared)
}

/// Serves until shutdown begins.
pub async fn serve(listener: HttpListener, shared: Arc<Shared>) {
    let HttpListener { tcp, tls } = listener;
    let proxies = shared.config.http.trusted_proxies.clone();
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Ok(addr) = tcp.local_addr() {
        tracing::info!(%addr, scheme, "HTTP listening");
    }
    let result = match tls {
        None => serve_on(WithDeadlines::new(tcp, proxies), shared).await,
        Some(acceptor) => {
            serve_on(WithDeadlines::new(TlsListener::start(tcp, acceptor), proxies), shared).await
        }
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

async fn serve_on<L>(listener: L, shared: Arc<Shared>) -> std::io::Result<()>
where
    L: Listener<Addr = SocketAddr>,
    for<'a> Client: Connected<IncomingStream<'a, L>>,
{
    let shutdown = shared.shutdown_signal();
    // The WebSocket counts wrong PINs against the page's address.
    let service = router(shared).into_make_service_with_connect_info::<Client>();
    axum::serve(listener, service).with_graceful_shutdown(shutdown).await
}

/// TLS connections, handshaken concurrently (a slow client holds up no one) and handed to
/// the server when ready.
struct TlsListener {
    local: std::io::Result<SocketAddr>,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    fn start(tcp: TcpListener, acceptor: TlsAcceptor) -> TlsListener {
        let local = tcp.local_addr();
        let (ready_tx, ready) = mpsc::channel(READY_QUEUE);
        let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of descriptors, most likely: give the server a moment.
                        tracing::warn!(error = %e, "HTTPS accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                // Handshakes cost CPU and a task each: past the bound a new one is closed.
                let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                    tracing::debug!(%peer, "too many HTTPS handshakes at once: closed");
                    continue;
                };
                let (acceptor, ready) = (acceptor.clone(), ready_tx.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = ready.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "HTTPS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "HTTPS handshake timed out"),
                    }
                });
                if ready_tx.is_closed() {
                    break;
                }
            }
        });
        TlsListener { local, ready }
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop only ends once the server is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match &self.local {
            Ok(addr) => Ok(*addr),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        }
    }
}

/// 200 when the gateway takes calls and its database answers; 503 otherwise.
async fn healthz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let database = match shared.storage.ping().await {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("error: {e}"),
    };
    let healthy = database == "ok" && !shared.is_draining();
    let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if healthy { "ok" } else if shared.is_draining() { "draining" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "database": database,
    });
    (status, Json(body))
}

/// Every registering trunk's state.
async fn trunks(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&shared, &headers, Access::Read)?;
    Ok(Json(shared.trunk_views()))
}

/// Open unless `http.metrics_token` is set; then that token or the admin token.
async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(token) = &shared.config.http.metrics_token {
        let given = bearer(&headers).unwrap_or("");
        let admin = shared.config.http.api_token.as_deref().is_some_and(|t| same_secret(given, t));
        if !admin && !same_secret(given, token) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "metrics need a token\n",
            )
                .into_response();
        }
    }
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        shared.metrics.encode(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trusted_proxy_names_the_browser_and_others_cannot() {
        let proxy: SocketAddr = "10.0.0.2:40000".parse().unwrap();
        let trusted: Vec<IpAddr> = vec!["10.0.0.2".parse().unwrap()];
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", "198.51.100.9, 192.0.2.44".parse().unwrap());
        // The proxy appended the last entry; the first is whatever the browser claimed.
        assert_eq!(Client(proxy).behind(&trusted, &headers).ip().to_string(), "192.0.2.44");
        let stranger: SocketAddr = "203.0.113.5:5555".parse().unwrap();
        assert_eq!(Client(stranger).behind(&trusted, &headers), stranger, "not a trusted proxy");
        assert_eq!(Client(proxy).behind(&trusted, &HeaderMap::new()), proxy, "no header");
        headers.append("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(Client(proxy).behind(&trusted, &headers), proxy, "unparsable: the proxy itself");
    }
}
