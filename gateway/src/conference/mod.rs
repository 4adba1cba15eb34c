//! Call control: where a SIP INVITE, or a browser's join, becomes a participant of a room.
//!
//! One [`core::Core`] holds every call, dialog and trunk and the transaction layer under them;
//! it does no I/O and reads no clock, so its tests run in virtual time. [`shell::run`] is the
//! task around it. What happens to a call, by file:
//! - [`invite`]: who calls and which room the number leads to (look-ups that run as tasks);
//! - [`calls`]: the answer and the leg started (`calls/admission.rs`), the PIN prompt and the
//!   mix (`calls/events.rs`, with [`ivr`]), requests in the dialog, session timers, hold and
//!   codec changes (`calls/in_dialog.rs`), the end and its record (`calls/teardown.rs`);
//! - [`dialout`]: calls out of a room (`POST /api/v1/conferences/{room}/calls`);
//! - [`browsers`]: browsers' legs, joined through [`crate::http::join`].
//!
//! Every deadline (a call's timers, a call out's ring timeout) sits in a `schedule`, so
//! [`core::Core::poll_timeout`] does not look at every call.
//!
//! A room's media (the mix, every leg's RTP) lives in [`crate::media`]; call control starts,
//! changes and ends legs there with [`crate::media::MediaCommand`]s.

mod browsers;
mod calls;
pub mod core;
mod dialout;
mod invite;
pub mod ivr;
mod schedule;
pub mod shell;

pub use calls::leg_config;
pub use shell::{run, MediaParts};
