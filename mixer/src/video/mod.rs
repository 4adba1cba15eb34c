//! Video: pictures, H.264 over RTP, H.264 encoding and decoding, and a room's composed
//! picture.
//!
//! - [`compose`]: layouts (speaker, grids, speaker with filmstrip) and scaling into tiles.
//! - [`feedback`]: RTCP PLI, FIR, NACK, REMB and TMMBR read for a stream we send, and PLI and
//!   FIR made to ask a source.
//! - [`frame`]: I420 pictures and BT.601 colours.
//! - [`h264`]: the shared encoder and a leg's decoder (OpenH264).
//! - [`h264_rtp`]: access units to RTP payloads (packetization modes 0 and 1) and back, with
//!   loss turning into a wait for a keyframe.
//! - [`history`]: the packets sent lately, for NACKs.
//! - [`keyframes`]: keyframe requests coalesced per shared encoder, and asked of sources.
//! - [`reorder`]: a source's packets put back in order, a gap waited for briefly.
//! - [`room`]: one room's video: legs in, one picture composed and encoded, viewers out.
//! - [`speaker`]: the active speaker from voice activity, with hold times.
//! - [`text`]: names drawn on tiles from bitmap glyphs.
//! - [`vp8`]: VP8 encoding and decoding (libvpx).
//! - [`vp8_rtp`]: VP8 frames to RTP payloads and back (RFC 7741).

pub mod compose;
pub mod feedback;
pub mod frame;
pub mod h264;
pub mod h264_rtp;
pub mod history;
pub mod keyframes;
pub mod reorder;
pub mod room;
pub mod speaker;
pub mod text;
pub mod vp8;
pub mod vp8_rtp;
