//! The audio codecs a leg can use, behind one encoder and one decoder type.

use crate::opus::{OpusDecoder, OpusEncoder};
use crate::{g711, g722};

/// A leg's audio codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioCodec {
    Pcmu,
    Pcma,
    G722,
    /// Mono at 48 kHz (RFC 7587).
    Opus,
}

impl AudioCodec {
    /// The rate of its PCM.
    pub fn pcm_rate(self) -> u32 {
        match self {
            AudioCodec::Pcmu | AudioCodec::Pcma => 8000,
            AudioCodec::G722 => 16000,
            AudioCodec::Opus => 48000,
        }
    }

    /// The RTP clock rate (8000 for G.722 too, RFC 3551 §4.5.2; 48000 for Opus, RFC 7587).
    pub fn rtp_clock(self) -> u32 {
        match self {
            AudioCodec::Opus => 48000,
            _ => 8000,
        }
    }

    /// RTP timestamp units in a 20 ms packet.
    pub fn frame_ticks(self) -> u32 {
        self.rtp_clock() / 50
    }

    /// Sample codecs (G.711, G.722: a fixed 8 bits per RTP clock tick) can be cut and joined
    /// at any 10 ms boundary, so their packets may carry 10, 20, 30 or 40 ms. Opus frames are
    /// whole packets.
    pub fn splits(self) -> bool {
        !matches!(self, AudioCodec::Opus)
    }

    /// Payload bytes per 10 ms of a sample codec.
    pub fn bytes_per_10ms(self) -> usize {
        80
    }

    /// The RFC 3551 static payload type; Opus has none (a dynamic one, 96 here, by convention
    /// of tests: the real one comes from SDP).
    pub fn static_payload_type(self) -> u8 {
        match self {
            AudioCodec::Pcmu => 0,
            AudioCodec::Pcma => 8,
            AudioCodec::G722 => 9,
            AudioCodec::Opus => 96,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AudioCodec::Pcmu => "PCMU",
            AudioCodec::Pcma => "PCMA",
            AudioCodec::G722 => "G722",
            AudioCodec::Opus => "opus",
        }
    }
}

/// An encoder with its state.
#[derive(Debug, Clone)]
pub enum Encoder {
    G711(g711::Law),
    /// Boxed: G.711 legs need not carry G.722's state.
    G722(Box<g722::Encoder>),
    Opus(OpusEncoder),
}

impl Encoder {
    pub fn new(codec: AudioCodec) -> Encoder {
        match codec {
            AudioCodec::Pcmu => Encoder::G711(g711::Law::Ulaw),
            AudioCodec::Pcma => Encoder::G711(g711::Law::Alaw),
            AudioCodec::G722 => Encoder::G722(Box::new(g722::Encoder::new())),
            AudioCodec::Opus => Encoder::Opus(OpusEncoder::new()),
        }
    }

    /// Encodes one frame at the codec's PCM rate; returns the bytes written.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> usize {
        match self {
            Encoder::G711(law) => {
                g711::encode(*law, pcm, out);
                pcm.len().min(out.len())
            }
            Encoder::G722(e) => e.encode(pcm, out),
            Encoder::Opus(e) => e.encode(pcm, out),
        }
    }
}

/// A decoder with its state.
#[derive(Debug, Clone)]
pub enum Decoder {
    G711(g711::Law),
    G722(Box<g722::Decoder>),
    Opus(OpusDecoder),
}

impl Decoder {
    pub fn new(codec: AudioCodec) -> Decoder {
        match codec {
            AudioCodec::Pcmu => Decoder::G711(g711::Law::Ulaw),
            AudioCodec::Pcma => Decoder::G711(g711::Law::Alaw),
            AudioCodec::G722 => Decoder::G722(Box::new(g722::Decoder::new())),
            AudioCodec::Opus => Decoder::Opus(OpusDecoder::new()),
        }
    }

    /// Decodes one frame into PCM at the codec's rate; returns the samples written.
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> usize {
        match self {
            Decoder::G711(law) => {
                g711::decode(*law, payload, out);
                payload.len().min(out.len())
            }
            Decoder::G722(d) => d.decode(payload, out),
            Decoder::Opus(d) => d.decode(payload, out),
        }
    }

    /// Times libopus ran for this leg (0 for the sample codecs, which cost next to nothing).
    pub fn runs(&self) -> u64 {
        match self {
            Decoder::Opus(d) => d.runs,
            _ => 0,
        }
    }

    /// Fills `out` for a lost frame; true when the codec did it (Opus: FEC from `next`, or its
    /// own concealment). Other codecs leave concealment to the caller.
    pub fn conceal(&mut self, next: Option<&[u8]>, out: &mut [i16]) -> bool {
        match self {
            Decoder::Opus(d) => d.conceal(next, out) > 0,
            _ => false,
        }
    }
}
