//! The gateway: SIP call control, conferences, storage and the HTTP API around the `sip-stack`
//! and `mixer` crates. This is the only crate with sockets, tasks and clocks.

pub mod api;
pub mod app;
pub mod calls;
pub mod cli;
pub mod clock;
pub mod config;
pub mod http;
pub mod limits;
pub mod media;
pub mod memory;
pub mod metrics;
pub mod sip;
pub mod state;
pub mod storage;
pub mod webrtc;
