//! A sans-IO SIP stack.
//!
//! Nothing in this crate opens a socket, reads a clock or draws a random number: callers hand in
//! bytes, source addresses and the time, and take out bytes to send. The gateway owns the sockets.
//!
//! - [`message`]: the parsing edge. Bytes from the network become a [`message::Inbound`] whose
//!   transaction-identifying headers are already typed, or a [`message::ParseError`] from which
//!   [`message::bad_request`] builds the `400` when enough of the request survived to route it.
//! - [`dialog`]: dialogs, 2xx retransmission, glare and session timers (RFC 3261 §12-14,
//!   RFC 4028).
//! - [`digest`]: digest authentication hashes (RFC 7616).
//! - [`framing`]: splitting a TCP byte stream into messages (RFC 3261 §18.3) and keep-alives
//!   (RFC 5626 §4.4.1).
//! - [`name_addr`]: From, To, Contact and Route values with quoted parameters (RFC 3261 §25.1).
//! - [`registrar`]: REGISTER processing against a binding store (RFC 3261 §10.3).
//! - [`registration`]: the registration client for trunks and MCUs (RFC 3261 §10.2).
//! - [`response`]: building a response to a request (RFC 3261 §8.2.6).
//! - [`rng`]: the seeded generator for tags, branches and jitter.
//! - [`sdp`]: SDP offer/answer for audio (RFC 3264) on sdp-types.
//! - [`sim`]: a seeded lossy network for scenario tests in virtual time.
//! - [`transaction`]: client and server transactions with their timers (RFC 3261 §17,
//!   RFC 6026).
//! - [`transport`]: transports, peers and transmits.
//! - [`via`]: `received`/`rport` (RFC 3581) and where a response goes (RFC 3261 §18.2.2).

pub mod dialog;
pub mod digest;
pub mod framing;
pub mod message;
pub mod name_addr;
pub mod registrar;
pub mod registration;
pub mod request;
pub mod response;
pub mod rng;
mod salvage;
pub mod sdp;
pub mod sim;
pub mod transaction;
pub mod transport;
pub mod via;

pub use rsip;
