//! The WebRTC bridge's page: browsers join rooms from a page the HTTP server serves. The page
//! talks to [`session`] over a WebSocket (the messages of [`crate::signalling::webrtc::signal`]);
//! each browser gets one peer connection ([`crate::signalling::webrtc::peer`]) whose audio is a
//! leg of the room's mix, like a phone's.

mod session;

use std::sync::Arc;

use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;

use crate::state::Shared;

/// The page and its WebSocket; plain files built into the binary (no CDN: it works on a
/// network without the internet).
pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/", get(page))
        .route("/join/{room}", get(page))
        .route("/join.js", get(script))
        .route("/join.css", get(style))
        .route("/ws", get(session::upgrade))
}

async fn page() -> impl IntoResponse {
    Html(include_str!("../../../web/index.html"))
}

async fn script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("../../../web/join.js"))
}

async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../../../web/join.css"))
}
