//! The wire to phones, trunks, MCUs and browsers: what arrives is parsed and bounded here and
//! handed to call control ([`crate::conference`]) as inputs.

pub mod sip;
pub mod webrtc;
