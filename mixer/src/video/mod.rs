//! Video: H.264 over RTP, and (next) decoding, composing and encoding a room's picture.
//!
//! - [`h264_rtp`]: access units to RTP payloads (packetization modes 0 and 1) and back, with
//!   loss turning into a wait for a keyframe.

pub mod h264_rtp;
