//! The media engine: turns each participant's audio into PCM, mixes a conference, and turns the
//! mix back into audio for each participant.
//!
//! Pure and deterministic: no sockets, clocks or threads; the gateway feeds packets and the time.
//!
//! - [`codec`]: the audio codecs behind one encoder and decoder type.
//! - [`conference`]: the 20 ms tick: legs in, one mix, shared encodes, packets out.
//! - [`dtmf`]: RFC 4733 telephone-events in and out, in-band DTMF detection.
//! - [`g711`]: G.711 µ-law and A-law (ITU-T G.711).
//! - [`g722`]: G.722 wideband ADPCM (ITU-T G.722, 64 kbit/s).
//! - [`jitter`]: the adaptive jitter buffer of a leg.
//! - [`opus`]: Opus through libopus, with FEC, concealment and copyable states.
//! - [`mix`]: the N−1 conference mix: one i32 sum, each talker hears the total minus itself,
//!   every silent listener the same shared mix; clipped once per output frame.
//! - [`resample`]: 8/16/48 kHz conversion by a polyphase Kaiser-windowed FIR (≥ 70 dB
//!   stop-band).
//! - [`rtcp_session`]: RTCP sender and receiver reports, loss and round-trip time (RFC 3550 §6.4).
//! - [`rtp_stream`]: RTP receive checks and statistics (RFC 3550 A.1, A.8) and sending.
//! - [`source`]: which address a leg's RTP and RTCP may come from (strict source learning).
//! - [`tone`]: tone generation (join/leave tones, test signals) and Goertzel detection.
//! - [`video`]: H.264 over RTP (RFC 6184).

pub mod codec;
pub mod conference;
pub mod dtmf;
pub mod g711;
pub mod g722;
pub mod jitter;
pub mod mix;
pub mod opus;
pub mod resample;
pub mod rtcp_session;
pub mod rtp_stream;
pub mod source;
pub mod tone;
pub mod video;
