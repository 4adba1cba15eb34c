//! Browsers: the JSON messages of the join page's WebSocket ([`signal`]) and the peer connection
//! each browser gets ([`peer`]), whose audio is a leg of the room's mix like a phone's. The
//! WebSocket itself is served in [`crate::http::join`].

pub mod peer;
pub mod signal;
