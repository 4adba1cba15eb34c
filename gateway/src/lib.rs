//! The gateway: SIP call control, conferences, storage and the HTTP API around the `sip-stack`
//! and `mixer` crates. This is the only crate with sockets, tasks and clocks.
//!
//! Its parts, each depending only on those below it:
//! - [`http`]: the HTTP listener: the [`api`], metrics, and the page browsers join from
//!   ([`http::join`], whose WebSocket speaks for a browser to call control).
//! - [`api`]: the REST API: rooms, users, conferences and calls out.
//! - [`conference`]: call control. One core ([`conference::core`]) turns SIP requests and
//!   browser joins into participants of a room: admission, the PIN prompt, the answer, in-dialog
//!   requests, session timers, calls out, and the end with its record.
//! - [`signalling`]: the wire: SIP sockets, TLS, trunk registration and the registrar
//!   ([`signalling::sip`]); a browser's peer connection and join messages ([`signalling::webrtc`]).
//! - [`media`]: the media worker that owns every room's mix and every leg's RTP.
//! - [`storage`]: SQLite or PostgreSQL: rooms, users, bindings, call records.
//!
//! Beside them: [`control`] (the messages the API and pages send call control, and the views
//! it answers with), [`state`] (the handles every part shares), [`config`], [`dns`], [`clock`],
//! [`limits`], [`metrics`] and [`memory`].

pub mod api;
pub mod app;
pub mod cli;
pub mod clock;
pub mod conference;
pub mod config;
pub mod control;
pub mod dns;
pub mod http;
pub mod ids;
pub mod limits;
pub mod media;
pub mod memory;
pub mod metrics;
pub mod signalling;
pub mod state;
pub mod storage;
