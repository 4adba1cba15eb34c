//! One participant's media inside a conference: RTP in, jitter buffer, decoding with
//! concealment, voice activity and gain, and RTP out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::{AudioCodec, Decoder, Encoder};
use crate::dtmf::{EventReceiver, ToneDetector};
use crate::jitter::{JitterBuffer, Playout};
use crate::resample::Resampler;
use crate::rtcp_session::{self, RtcpSession, SendingStats};
use crate::rtp_stream::{Received, RtpReceiver, RtpSender};
use crate::tone::power;

/// How a leg's RTP looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegConfig {
    pub codec: AudioCodec,
    /// The payload type the codec travels under (from SDP).
    pub payload_type: u8,
    /// The telephone-event payload type, when negotiated.
    pub telephone_event: Option<u8>,
    /// Listen for DTMF tones in the audio too (for networks that strip events).
    pub inband_dtmf: bool,
    /// Milliseconds of audio per packet we send (RFC 4566 `a=ptime` of the peer): 10, 20, 30
    /// or 40 for G.711 and G.722; Opus always sends 20. What the peer sends may differ: any
    /// multiple of 10 ms is taken.
    pub ptime: u32,
    /// Our sending SSRC, first sequence number and timestamp: random per RFC 3550 §5.1.
    pub ssrc: u32,
    pub first_seq: u16,
    pub first_timestamp: u32,
    /// The id of the RTP header extension carrying the sender's audio level (RFC 6464), when
    /// negotiated: frames it marks as quieter than [`QUIET_DBOV`] are not decoded.
    pub audio_level: Option<u8>,
}

/// Voice activity: energy above an adaptive noise floor, with a hangover so pauses between
/// words do not end a talk spurt.
#[derive(Debug, Clone)]
pub(crate) struct Vad {
    noise_floor_db: f64,
    above: u32,
    hangover: u32,
    pub talking: bool,
    pub level_db: f64,
}

/// Frames above the threshold before talking starts, and below it before it stops (300 ms).
const ONSET_FRAMES: u32 = 2;
const HANGOVER_FRAMES: u32 = 15;

impl Vad {
    fn new() -> Vad {
        Vad { noise_floor_db: -60.0, above: 0, hangover: 0, talking: false, level_db: -96.0 }
    }

    /// Updates with one frame; returns Some(talking) when it changes.
    fn update(&mut self, frame: &[i16]) -> Option<bool> {
        let level = 10.0 * (power(frame) / (32768.0 * 32768.0)).max(1e-10).log10();
        self.level_db = level;
        let threshold = (self.noise_floor_db + 9.0).max(-50.0);
        let before = self.talking;
        if level > threshold {
            self.above += 1;
            if self.above >= ONSET_FRAMES {
                self.talking = true;
                self.hangover = HANGOVER_FRAMES;
            }
        } else {
            self.above = 0;
            self.hangover = self.hangover.saturating_sub(1);
            if self.hangover == 0 {
                self.talking = false;
            }
        }
        // The floor drops at once to quieter frames and creeps up slowly outside speech.
        if level < self.noise_floor_db {
            self.noise_floor_db = level.max(-90.0);
        } else if !self.talking {
            self.noise_floor_db += 0.05;
        }
        (self.talking != before).then_some(self.talking)
    }
}

/// Automatic gain: brings a talker's speech level toward the target, slowly, within bounds,
/// so a quiet phone is not lost next to a loud one.
#[derive(Debug, Clone)]
pub(crate) struct Agc {
    speech_db: Option<f64>,
    gain_db: f64,
}

const AGC_TARGET_DB: f64 = -20.0;
const AGC_MIN_DB: f64 = -6.0;
const AGC_MAX_DB: f64 = 15.0;

impl Agc {
    fn new() -> Agc {
        Agc { speech_db: None, gain_db: 0.0 }
    }

    /// Learns from a talking frame at `level_db` and applies the gain to `frame`.
    fn apply(&mut self, level_db: f64, frame: &mut [i16]) {
        let speech = self.speech_db.map_or(level_db, |s| s + 0.05 * (level_db - s));
        self.speech_db = Some(speech);
        let wanted = (AGC_TARGET_DB - speech).clamp(AGC_MIN_DB, AGC_MAX_DB);
        self.gain_db += (wanted - self.gain_db).clamp(-0.5, 0.5);
        if self.gain_db.abs() < 0.05 {
            return;
        }
        let g = 10f64.powf(self.gain_db / 20.0) as f32;
        for s in frame {
            *s = (f32::from(*s) * g).round().clamp(-32768.0, 32767.0) as i16;
        }
    }

    pub fn gain_db(&self) -> f64 {
        self.gain_db
    }
}

/// A clip being played, and how far.
#[derive(Debug, Clone)]
pub(crate) struct Prompt {
    pub samples: Arc<[i16]>,
    pub position: usize,
}

impl Prompt {
    /// Adds the next `out.len()` samples into `out`; returns false once finished.
    pub fn mix_into(&mut self, out: &mut [i16]) -> bool {
        let rest = &self.samples[self.position.min(self.samples.len())..];
        for (o, &s) in out.iter_mut().zip(rest) {
            *o = (i32::from(*o) + i32::from(s)).clamp(-32768, 32767) as i16;
        }
        self.position += out.len();
        self.position < self.samples.len()
    }
}

/// An Opus packet this short carries no audio: the encoder's DTX frame (libopus: "2 bytes or
/// less ... does not need to be transmitted"), which senders still send now and then.
const OPUS_DTX: usize = 2;

/// Frames whose sender measured them at this many dB below overload or quieter (RFC 6464
/// levels run 0 to 127, loudest first) are taken for silence without decoding: the voice
/// detector never starts a talk spurt below −50 dB, so such a frame would be mixed, if at all,
/// only in a spurt's 300 ms hangover, where silence stands in for it.
pub const QUIET_DBOV: u8 = 55;

/// The audio level (−dBov) a packet's header extension `id` carries (RFC 6464 §3: one byte,
/// the voice-activity flag above 7 bits of level), in the one- or two-byte form.
fn audio_level(header: &rtp::Header, id: u8) -> Option<u8> {
    header.get_extension(id)?.first().map(|b| b & 0x7f)
}

/// The jitter buffer's frame: 10 ms pieces for sample codecs, whole 20 ms packets for Opus.
fn jitter_frame(codec: AudioCodec) -> Duration {
    Duration::from_millis(if codec.splits() { 10 } else { 20 })
}

/// What receiving a packet produced.
pub(crate) enum Heard {
    Nothing,
    Digit(char),
}

pub(crate) struct Leg {
    pub config: LegConfig,
    receiver: RtpReceiver,
    jitter: JitterBuffer,
    decoder: Decoder,
    /// Its own encoder, used while it hears a mix of its own.
    pub encoder: Encoder,
    pub sender: RtpSender,
    /// Encoded audio waiting to fill a packet longer than 20 ms.
    outgoing: Vec<u8>,
    events: EventReceiver,
    inband: Option<ToneDetector>,
    up: Resampler,
    pub down: Resampler,
    codec_pcm: Vec<i16>,
    /// Room for the longest packet a decoder may produce (Opus: 120 ms at 48 kHz).
    decoded: Vec<i16>,
    /// This tick's frame at the conference rate, after gain (valid when it contributes).
    pub pcm: Vec<i16>,
    concealed: u32,
    /// The peer is in DTX (RFC 7587 §3.1.3): its last frame was a DTX one, and until the next
    /// real one a missing frame is silence that nothing decodes or conceals.
    dtx: bool,
    /// The last frame was not decoded for its audio level ([`QUIET_DBOV`]); it is kept in
    /// `skipped`, and decoded (output unused) before the next loud one so that the decoder
    /// picks up the stream where it is — its prediction and overlap — not where it left off.
    quiet: bool,
    skipped: Vec<u8>,
    quiet_frames: u64,
    pub vad: Vad,
    pub agc: Agc,
    pub muted: bool,
    pub deaf: bool,
    pub prompt: Option<Prompt>,
    /// Last tick it heard its own mix (not the shared one).
    pub personal: bool,
    /// It contributed to this tick's mix.
    pub contributes: bool,
    pub on_hold: bool,
    rtcp: RtcpSession,
}

impl Leg {
    pub fn new(config: LegConfig, conference_rate: u32) -> Leg {
        let codec = config.codec;
        let rate = codec.pcm_rate();
        Leg {
            receiver: RtpReceiver::new(codec.rtp_clock()),
            jitter: JitterBuffer::new(codec.rtp_clock(), jitter_frame(codec)),
            decoder: Decoder::new(codec),
            encoder: Encoder::new(codec),
            sender: RtpSender::new(
                config.ssrc,
                config.payload_type,
                config.first_seq,
                config.first_timestamp,
            ),
            outgoing: Vec::with_capacity(640),
            events: EventReceiver::default(),
            inband: (config.inband_dtmf && rate == 8000).then(ToneDetector::new),
            up: Resampler::new(rate, conference_rate),
            down: Resampler::new(conference_rate, rate),
            codec_pcm: vec![0; rate as usize / 50],
            decoded: vec![0; if codec == AudioCodec::Opus { 5760 } else { rate as usize / 50 }],
            pcm: vec![0; conference_rate as usize / 50],
            concealed: 0,
            dtx: false,
            quiet: false,
            skipped: Vec::new(),
            quiet_frames: 0,
            vad: Vad::new(),
            agc: Agc::new(),
            muted: false,
            deaf: false,
            prompt: None,
            personal: false,
            contributes: false,
            on_hold: false,
            rtcp: RtcpSession::new(),
            config,
        }
    }

    /// A packet from the network.
    pub fn receive(&mut self, now: Instant, packet: &rtp::Packet) -> Heard {
        let h = &packet.header;
        match self.receiver.receive(now, h) {
            Received::Accept { .. } => {}
            Received::NewSource { .. } => {
                self.jitter =
                    JitterBuffer::new(self.config.codec.rtp_clock(), jitter_frame(self.config.codec))
            }
            Received::Probation | Received::Discard => return Heard::Nothing,
        }
        if Some(h.payload_type) == self.config.telephone_event {
            return self.events.receive(h.timestamp, &packet.payload).map_or(Heard::Nothing, Heard::Digit);
        }
        // Empty payloads are keep-alives; other payload types (comfort noise, …) are not audio.
        if h.payload_type == self.config.payload_type && !packet.payload.is_empty() {
            let level = self.config.audio_level.and_then(|id| audio_level(h, id));
            let codec = self.config.codec;
            if codec.splits() {
                // Into 10 ms pieces, whatever the packet's length.
                let piece = codec.bytes_per_10ms();
                let ticks = codec.rtp_clock() / 100;
                for (i, chunk) in packet.payload.chunks(piece).enumerate() {
                    let timestamp = h.timestamp.wrapping_add(i as u32 * ticks);
                    self.jitter.push(now, timestamp, chunk, level);
                }
            } else {
                self.jitter.push(now, h.timestamp, &packet.payload, level);
            }
        }
        Heard::Nothing
    }

    /// Takes this tick's 20 ms from the jitter buffer into `codec_pcm` (two 10 ms pieces for
    /// sample codecs), concealing what is lost. Returns an in-band digit if one completed.
    pub fn pull(&mut self) -> Option<char> {
        let pieces = if self.config.codec.splits() { 2 } else { 1 };
        let len = self.codec_pcm.len() / pieces;
        for piece in 0..pieces {
            let out = piece * len..(piece + 1) * len;
            match self.jitter.pop_due() {
                Playout::Frame { payload, .. }
                    if self.config.codec == AudioCodec::Opus && payload.len() <= OPUS_DTX =>
                {
                    self.dtx = true;
                    self.quiet = false;
                    self.codec_pcm[out].fill(0);
                    self.concealed = 0;
                }
                // Tones for the in-band detector are decoded whatever their level.
                Playout::Frame { payload, level: Some(level), .. }
                    if level >= QUIET_DBOV && self.inband.is_none() =>
                {
                    self.quiet = true;
                    self.skipped.clear();
                    self.skipped.extend_from_slice(payload);
                    self.quiet_frames += 1;
                    self.codec_pcm[out].fill(0);
                    self.concealed = 0;
                }
                Playout::Frame { payload, .. } => {
                    self.dtx = false;
                    if std::mem::take(&mut self.quiet) {
                        self.decoder.decode(&self.skipped, &mut self.decoded);
                    }
                    // An Opus packet longer than 20 ms keeps its first 20 ms.
                    let n = self.decoder.decode(payload, &mut self.decoded).min(len);
                    self.codec_pcm[out.start..out.start + n].copy_from_slice(&self.decoded[..n]);
                    self.codec_pcm[out.start + n..out.end].fill(0);
                    self.concealed = 0;
                }
                Playout::Lost { .. } if self.dtx || self.quiet => self.codec_pcm[out].fill(0),
                // Opus rebuilds a lost frame from the next packet's FEC data, or conceals it.
                Playout::Lost { next, .. }
                    if self.decoder.conceal(next, &mut self.codec_pcm[out.clone()]) =>
                {
                    self.concealed += 1;
                }
                // Playout held back: the whole tick waits (nothing was consumed).
                Playout::Wait if piece == 0 => {
                    self.conceal_by_fading(0..self.codec_pcm.len());
                    break;
                }
                Playout::Lost { .. } | Playout::Wait => self.conceal_by_fading(out),
            }
        }
        self.inband.as_mut().and_then(|d| d.process(&self.codec_pcm))
    }

    /// Concealment: the audio just before `range` again at half the level, for up to 60 ms;
    /// then silence.
    fn conceal_by_fading(&mut self, range: std::ops::Range<usize>) {
        let whole = self.codec_pcm.len();
        let len = range.len();
        // Counted in 10 ms pieces.
        self.concealed += (len * 2 / whole).max(1) as u32;
        if self.concealed > 6 {
            self.codec_pcm[range].fill(0);
            return;
        }
        // The piece before: earlier in this frame, or the end of the last one (still here).
        for i in range {
            let source = (i + whole - len) % whole;
            self.codec_pcm[i] = self.codec_pcm[source] / 2;
        }
    }

    /// Voice activity on the frame just pulled: Some(talking) when it changes.
    pub fn detect_voice(&mut self) -> Option<bool> {
        self.vad.update(&self.codec_pcm)
    }

    /// Brings the frame to the conference rate and applies gain, ready to mix.
    pub fn prepare_contribution(&mut self) {
        let n = self.up.process(&self.codec_pcm, &mut self.pcm);
        self.pcm[n..].fill(0);
        self.agc.apply(self.vad.level_db, &mut self.pcm);
    }

    /// Hands this tick's 20 ms payload to the packetizer; `send` gets the packets due by the
    /// leg's ptime: two of 10 ms, one of 20, one of 30 at two ticks out of three, or one of 40
    /// every second tick.
    pub fn packetize(&mut self, payload: Bytes, mut send: impl FnMut(rtp::Packet)) {
        let codec = self.config.codec;
        let ptime = self.config.ptime;
        if !codec.splits() || !matches!(ptime, 10 | 30 | 40) {
            send(self.sender.packet(payload, codec.frame_ticks()));
            return;
        }
        self.outgoing.extend_from_slice(&payload);
        let bytes = codec.bytes_per_10ms() * ptime as usize / 10;
        let ticks = codec.rtp_clock() / 100 * ptime / 10;
        while self.outgoing.len() >= bytes {
            let chunk = Bytes::copy_from_slice(&self.outgoing[..bytes]);
            self.outgoing.drain(..bytes);
            send(self.sender.packet(chunk, ticks));
        }
    }

    /// A tick sent nothing (on hold): the clock runs on over it and anything not yet sent.
    pub fn skip_tick(&mut self) {
        let codec = self.config.codec;
        let pending = (self.outgoing.len() / codec.bytes_per_10ms()) as u32 * (codec.rtp_clock() / 100);
        self.outgoing.clear();
        self.sender.skip(codec.frame_ticks() + pending);
    }

    /// Our RTCP report (SR, or RR while on hold), as one datagram.
    pub fn rtcp_report(&mut self, now: Instant, ntp: u64) -> Option<Bytes> {
        let sending = SendingStats {
            ssrc: self.sender.ssrc(),
            packets: self.sender.packets,
            octets: self.sender.octets,
            rtp_time: self.sender.timestamp(),
        };
        let receiving = self.receiver.stats();
        let receiving = (receiving.received > 0).then_some(receiving);
        let report = self.rtcp.report(now, ntp, sending, receiving.as_ref());
        rtcp_session::encode(&[report])
    }

    /// The peer's RTCP datagram; false when it is not RTCP.
    pub fn receive_rtcp(&mut self, now: Instant, datagram: &[u8]) -> bool {
        match rtcp_session::decode(datagram) {
            Some(packets) => {
                self.rtcp.receive(now, &packets, self.sender.ssrc());
                true
            }
            None => false,
        }
    }

    pub fn stats(&self) -> LegStats {
        let r = self.receiver.stats();
        let j = self.jitter.stats();
        LegStats {
            codec: self.config.codec,
            received: r.received,
            lost: r.lost,
            jitter_ms: r.jitter_ms,
            concealed: j.lost,
            decoder_runs: self.decoder.runs(),
            quiet_frames: self.quiet_frames,
            late: j.late,
            buffer_ms: self.jitter.target_delay().as_millis() as u32,
            sent: self.sender.packets,
            talking: self.vad.talking,
            level_db: self.vad.level_db,
            gain_db: self.agc.gain_db(),
            muted: self.muted,
            deaf: self.deaf,
            on_hold: self.on_hold,
            rtt_ms: self.rtcp.rtt.map(|r| r.as_secs_f64() * 1000.0),
            remote_fraction_lost: self.rtcp.remote.map(|r| r.fraction_lost),
        }
    }
}

/// A leg's figures for the API and metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LegStats {
    pub codec: AudioCodec,
    pub received: u64,
    pub lost: u64,
    pub jitter_ms: f64,
    pub concealed: u64,
    /// Times the codec's decoder ran (decode, FEC or concealment; Opus only): a leg in DTX
    /// costs none.
    pub decoder_runs: u64,
    /// Frames not decoded because their packets' audio level said silence ([`QUIET_DBOV`]),
    /// as the jitter buffer holds them: 20 ms for Opus, 10 ms for G.711 and G.722.
    pub quiet_frames: u64,
    pub late: u64,
    pub buffer_ms: u32,
    pub sent: u64,
    pub talking: bool,
    pub level_db: f64,
    pub gain_db: f64,
    pub muted: bool,
    pub deaf: bool,
    pub on_hold: bool,
    /// Round-trip time from RTCP (RFC 3550 §6.4.1), once measured.
    pub rtt_ms: Option<f64>,
    /// The share of our packets the peer reported lost in its last report.
    pub remote_fraction_lost: Option<f64>,
}
