//! The HTTP server: health, metrics and the REST API ([`crate::api`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;

use crate::state::Shared;

#[derive(Debug, thiserror::Error)]
#[error("cannot listen for HTTP on {addr}: {error}")]
pub struct BindError {
    addr: SocketAddr,
    error: std::io::Error,
}

pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|error| BindError { addr, error })
}

pub fn router(shared: Arc<Shared>) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/trunks", get(trunks))
        .merge(crate::api::router());
    if shared.config.webrtc.enabled {
        router = router.merge(crate::webrtc::router());
    }
    router.with_state(shared)
}

/// Serves until shutdown begins.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "HTTP listening");
    }
    let shutdown = shared.shutdown_signal();
    // The WebSocket counts wrong PINs against the page's address.
    let service = router(shared).into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, service).with_graceful_shutdown(shutdown).await {
        tracing::error!(error = %e, "HTTP server failed");
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
async fn trunks(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    Json(shared.trunk_views())
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        shared.metrics.encode(),
    )
}
