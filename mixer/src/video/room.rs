//! One room's video, sans IO: every leg's RTP in, one composed picture, one shared encode,
//! and each viewer's RTP out.
//!
//! A leg that sends us video has its packets put in order ([`Reorder`]), rebuilt into access
//! units ([`Depacketizer`]) and decoded ([`H264Decoder`]); its last picture stays until the
//! next. At each frame of the room's rate the pictures are laid out on the canvas
//! ([`Compositor`]: the active speaker first for the layouts that show one large, join order
//! otherwise) and the canvas is encoded once. Every viewer gets that one bitstream: per viewer
//! there is only the RTP header (its SSRC, sequence numbers and timestamps) and the sending;
//! payloads are split once per packetization mode, and the encoder keeps every NAL unit within
//! the MTU, so receivers in mode 0 decode the same stream as those in mode 1.
//!
//! Keyframes: a viewer's PLI or FIR, a SIP INFO `picture_fast_update` passed in, a new viewer
//! and a layout change ask the shared encoder, through one [`KeyframeGate`]. A source whose
//! decoder needs a keyframe (it joined, lost a packet, sent what does not decode) is asked by
//! PLI, else FIR, else by an event for call control to send SIP INFO, at most once per
//! [`VideoRoomConfig::ask_interval`]. NACKs are answered from each viewer's [`SendHistory`].
//!
//! Time is an input (`now`), and so is the wall clock for sender reports (`ntp`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc_shared::marshal::{Marshal, MarshalSize};
use rtcp::receiver_report::ReceiverReport;

mod tier;

use self::tier::Tier;
pub use self::tier::{TierConfig, VideoCodecKind, ViewerLimits, MAX_TIERS};
use super::compose::{Compositor, Fit, Layout, Tile};
use super::feedback::{fir, pli, FeedbackReader, VideoFeedback};
use super::frame::{Frame, Yuv};
use super::h264::{H264Decoder, VideoCodecError};
use super::h264_rtp::{AccessUnit, Depacketizer, PacketizationMode};
use super::history::SendHistory;
use super::keyframes::KeyframeAsker;
use super::reorder::Reorder;
use super::speaker::{SpeakerPolicy, SpeakerSelector};
use super::vp8::Vp8Decoder;
use super::vp8_rtp::{self, Vp8Frame};
use crate::rtcp_session::{self, RtcpSession, SendingStats};
use crate::rtp_stream::RtpReceiver;

/// The RTP clock of video.
const CLOCK: u64 = 90_000;
/// How often each leg sends its RTCP report.
const RTCP_INTERVAL: Duration = Duration::from_secs(1);
/// Packets kept per viewer for NACKs: about a second of 720p.
const HISTORY: usize = 512;
/// How long a gap in a source's packets is waited for, and how many packets may wait.
const REORDER_WAIT: Duration = Duration::from_millis(40);
const REORDER_CAPACITY: usize = 512;
/// The largest source picture decoded and shown, in macroblocks (1920×1088).
const MAX_SOURCE_MACROBLOCKS: usize = 8160;
/// A viewer whose reports say it lost more than this share of our packets moves to the lower
/// tier, and stays there this long after its last lossy report.
const LOSSY_FRACTION: f64 = 0.10;
const LOSSY_HOLD: Duration = Duration::from_secs(10);

/// A leg of a room's video, named by the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VideoLegId(pub u32);

/// The feedback a leg negotiated (`a=rtcp-fb`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeedbackSupport {
    pub nack: bool,
    pub pli: bool,
    pub fir: bool,
}

/// How one leg's video looks on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoLegConfig {
    pub codec: VideoCodecKind,
    /// The payload type both ways.
    pub payload_type: u8,
    /// H.264's packetization mode.
    pub mode: PacketizationMode,
    pub feedback: FeedbackSupport,
    /// We send it the room's picture / it sends us its camera.
    pub send: bool,
    pub receive: bool,
    /// Ours towards it; should be random (RFC 3550 §5.1).
    pub ssrc: u32,
    pub first_seq: u16,
    pub first_timestamp: u32,
    /// What it takes at most, as its SDP says.
    pub limits: ViewerLimits,
    /// The far end is a conference focus (RFC 4579 `isfocus`: an MCU, a room on another
    /// gateway): what it sends is its room's picture, and it is sent ours without its own
    /// tile, so that no picture comes back to where it came from. That costs one compose and
    /// one encode of its own.
    pub cascade: bool,
}

/// A room's picture and its encoding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoRoomConfig {
    pub width: usize,
    pub height: usize,
    pub frame_rate: u32,
    pub bitrate_bps: u32,
    pub layout: Layout,
    pub fit: Fit,
    pub background: Yuv,
    /// The fewest time between two keyframes made on request.
    pub keyframe_interval: Duration,
    /// How often a source that owes us a keyframe is asked again.
    pub ask_interval: Duration,
    /// The largest RTP payload.
    pub mtu: usize,
    /// Participants without a camera (phones, browsers without video, a camera stopped by
    /// re-INVITE) get a tile with their name; else only cameras get tiles.
    pub name_tiles: bool,
    /// Names drawn on the tiles of cameras too.
    pub show_names: bool,
    /// The tier for viewers that cannot take the canvas (its size, rate or bitrate), lose
    /// packets, or ask for less.
    pub low_tier: Option<TierConfig>,
}

/// What goes to a leg's peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram<'a> {
    Rtp(&'a [u8]),
    Rtcp(&'a [u8]),
}

/// What the room needs of call control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoRoomEvent {
    /// Ask this source for a keyframe by SIP INFO (RFC 5168): it negotiated neither PLI nor FIR.
    KeyframeByInfo { leg: VideoLegId },
}

/// One leg's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VideoLegStats {
    /// Of its last decoded picture.
    pub width: usize,
    pub height: usize,
    pub frames_decoded: u64,
    /// Access units that did not decode, or were too large to show.
    pub undecodable: u64,
    pub packets_received: u64,
    /// Given up as lost after waiting, and dropped as late or duplicate.
    pub packets_lost: u64,
    pub packets_late: u64,
    /// Keyframes we asked of it, and it asked of us.
    pub keyframes_asked: u64,
    pub keyframe_requests: u64,
    pub packets_sent: u64,
    pub retransmitted: u64,
    /// What it said it takes at most (REMB or TMMBR).
    pub max_bitrate_bps: Option<u64>,
    pub video_muted: bool,
    /// The tier it is sent (0: the canvas).
    pub tier: usize,
}

/// The room's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VideoRoomStats {
    pub pictures: u64,
    /// Encoder runs, all tiers together and per tier.
    pub encodes: u64,
    pub encodes_per_tier: [u64; MAX_TIERS],
    pub keyframes: u64,
    pub keyframe_requests: u64,
    pub encode_errors: u64,
    /// Viewers moved from a tier to another.
    pub tier_changes: u64,
    /// Encodes of cascades' own pictures (in `encodes` too).
    pub cascade_encodes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum VideoRoomError {
    #[error(transparent)]
    Codec(#[from] VideoCodecError),
    #[error("a canvas of {width}×{height} at {frame_rate} frames a second cannot be encoded")]
    Canvas { width: usize, height: usize, frame_rate: u32 },
}

/// What a viewer's history keeps of a packet sent: enough to write it again.
#[derive(Debug, Clone)]
struct Sent {
    timestamp: u32,
    marker: bool,
    payload: Bytes,
}

/// A packet waiting in a source's reorder buffer.
#[derive(Debug)]
struct Arrived {
    timestamp: u32,
    marker: bool,
    payload: Bytes,
}

struct VideoLeg {
    config: VideoLegConfig,
    name: String,
    // Receiving.
    receiver: RtpReceiver,
    reorder: Reorder<Arrived>,
    source: Source,
    /// A decode failed: nothing but a keyframe is decoded until one comes.
    decoder_broken: bool,
    picture: Frame,
    has_picture: bool,
    asker: KeyframeAsker,
    fir_sequence: u8,
    remote_ssrc: Option<u32>,
    // Sending.
    seq: u16,
    octets: u64,
    history: SendHistory<Sent>,
    reader: FeedbackReader,
    rtcp: RtcpSession,
    next_rtcp: Option<Instant>,
    talking: bool,
    /// Its tier, and until when its loss keeps it low.
    tier: usize,
    /// A cascade's own picture (the room without its tile) and its encoding.
    own: Option<Box<Own>>,
    lossy_until: Option<Instant>,
    stats: VideoLegStats,
}

/// A camera's packets back into pictures, in its codec.
enum Source {
    H264 { depacketizer: Depacketizer, decoder: Option<H264Decoder> },
    Vp8 { depacketizer: vp8_rtp::Depacketizer, decoder: Option<Vp8Decoder> },
}

impl Source {
    fn new(codec: VideoCodecKind) -> Source {
        match codec {
            VideoCodecKind::H264 => Source::H264 { depacketizer: Depacketizer::new(), decoder: None },
            VideoCodecKind::Vp8 => {
                Source::Vp8 { depacketizer: vp8_rtp::Depacketizer::default(), decoder: None }
            }
        }
    }

    fn needs_keyframe(&self) -> bool {
        match self {
            Source::H264 { depacketizer, .. } => depacketizer.needs_keyframe(),
            Source::Vp8 { depacketizer, .. } => depacketizer.needs_keyframe(),
        }
    }

    /// Decodes one picture into `frame`; true when it completed one.
    fn decode(&mut self, data: &[u8], frame: &mut Frame) -> Result<bool, VideoCodecError> {
        match self {
            Source::H264 { decoder, .. } => {
                let decoder = match decoder {
                    Some(decoder) => decoder,
                    None => decoder.insert(H264Decoder::new()?),
                };
                decoder.decode_into(data, frame)
            }
            Source::Vp8 { decoder, .. } => {
                let decoder = match decoder {
                    Some(decoder) => decoder,
                    None => decoder.insert(Vp8Decoder::new()?),
                };
                decoder.decode_into(data, frame)
            }
        }
    }
}

/// A cascade leg's picture: the room without the leg's own tile.
struct Own {
    compositor: Compositor,
    tier: Tier,
}

/// One room's video; see the module's documentation.
pub struct VideoRoom {
    config: VideoRoomConfig,
    legs: Vec<(VideoLegId, VideoLeg)>,
    next_id: u32,
    layout: Layout,
    compositor: Compositor,
    /// The canvas's tier first.
    tiers: Vec<Tier>,
    speaker: SpeakerSelector<VideoLegId>,
    /// Shown first in place of the active speaker, while set.
    presenter: Option<VideoLegId>,
    frame_interval: Duration,
    /// The first frame's time, the RTP timestamps' origin.
    origin: Option<Instant>,
    next_frame: Option<Instant>,
    /// A picture composed and not yet encoded, with its time.
    composed: Option<Instant>,
    units: Vec<AccessUnit>,
    frames: Vec<Vp8Frame>,
    feedback: Vec<VideoFeedback>,
    buffer: Vec<u8>,
    events: VecDeque<VideoRoomEvent>,
    stats: VideoRoomStats,
}

impl std::fmt::Debug for VideoRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VideoRoom({} legs, {:?})", self.legs.len(), self.compositor)
    }
}

impl VideoRoom {
    pub fn new(config: VideoRoomConfig) -> Result<VideoRoom, VideoRoomError> {
        let (w, h, fps) = (config.width & !1, config.height & !1, config.frame_rate);
        if w < 16 || h < 16 || w > 1920 || h > 1088 || !(1..=60).contains(&fps) {
            return Err(VideoRoomError::Canvas {
                width: config.width,
                height: config.height,
                frame_rate: fps,
            });
        }
        let main = TierConfig { width: w, height: h, frame_rate: fps, bitrate_bps: config.bitrate_bps };
        let mut tiers = Vec::with_capacity(MAX_TIERS);
        // Per codec, the canvas's tier first: one encode per (codec, size) with viewers.
        for codec in VideoCodecKind::ALL {
            for tier in std::iter::once(main).chain(config.low_tier) {
                let (tw, th, tfps) = (tier.width & !1, tier.height & !1, tier.frame_rate);
                if tw < 16 || th < 16 || tw > w || th > h || !(1..=fps).contains(&tfps) {
                    return Err(VideoRoomError::Canvas {
                        width: tier.width,
                        height: tier.height,
                        frame_rate: tfps,
                    });
                }
                let tier = TierConfig { width: tw, height: th, ..tier };
                let (background, interval, mtu) = (config.background, config.keyframe_interval, config.mtu);
                tiers.push(Tier::new(tier, codec, (w, h), background, interval, mtu));
            }
        }
        Ok(VideoRoom {
            compositor: Compositor::new(w, h, config.background, config.fit),
            layout: config.layout,
            tiers,
            speaker: SpeakerSelector::new(SpeakerPolicy::default()),
            presenter: None,
            frame_interval: Duration::from_secs(1) / fps,
            config,
            legs: Vec::new(),
            next_id: 0,
            origin: None,
            next_frame: None,
            composed: None,
            units: Vec::new(),
            frames: Vec::new(),
            feedback: Vec::new(),
            buffer: vec![0; 1500],
            events: VecDeque::new(),
            stats: VideoRoomStats::default(),
        })
    }

    /// A cascade's own picture: the canvas's size, rate and bitrate.
    fn own_picture(&self, codec: VideoCodecKind) -> Own {
        let c = &self.config;
        let main = self.tiers[0].config;
        let canvas = (main.width, main.height);
        Own {
            compositor: Compositor::new(main.width, main.height, c.background, c.fit),
            tier: Tier::new(main, codec, canvas, c.background, c.keyframe_interval, c.mtu),
        }
    }

    /// Asks a viewer's encoder for a keyframe: its own picture's, or its tier's.
    fn ask_keyframe_for(&mut self, index: usize) {
        let (_, leg) = &mut self.legs[index];
        match &mut leg.own {
            Some(own) => own.tier.gate.request(),
            None => self.tiers[leg.tier].gate.request(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.legs.is_empty()
    }

    /// Whether anyone is sent the room's picture: without viewers nothing is composed.
    fn has_viewers(&self) -> bool {
        self.legs.iter().any(|(_, l)| l.config.send)
    }

    /// A participant: a video leg, or with neither `send` nor `receive` one without video,
    /// shown by its name. `name` is what its tile says.
    pub fn add_leg(&mut self, config: VideoLegConfig, name: &str) -> VideoLegId {
        let id = VideoLegId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1);
        let tier = self.tier_for(config.codec, &config.limits, false);
        let own = (config.cascade && config.send).then(|| Box::new(self.own_picture(config.codec)));
        if config.send && own.is_none() {
            // A new viewer starts at a keyframe (an own picture's first one is).
            self.tiers[tier].gate.request();
        }
        let mut asker = KeyframeAsker::new(self.config.ask_interval);
        asker.set_needed(config.receive);
        let leg = VideoLeg {
            config,
            name: name.chars().filter(|c| !c.is_control()).take(super::text::MAX_CHARS + 1).collect(),
            receiver: RtpReceiver::new(CLOCK as u32),
            reorder: Reorder::new(REORDER_WAIT, REORDER_CAPACITY),
            source: Source::new(config.codec),
            decoder_broken: false,
            picture: Frame::filled(0, 0, self.config.background),
            has_picture: false,
            asker,
            fir_sequence: 0,
            remote_ssrc: None,
            seq: config.first_seq,
            octets: 0,
            history: SendHistory::new(HISTORY),
            reader: FeedbackReader::default(),
            rtcp: RtcpSession::new(),
            next_rtcp: None,
            talking: false,
            tier,
            own,
            lossy_until: None,
            stats: VideoLegStats::default(),
        };
        self.legs.push((id, leg));
        id
    }

    pub fn remove_leg(&mut self, id: VideoLegId) {
        self.legs.retain(|(leg, _)| *leg != id);
        self.speaker.remove(&id);
        if self.presenter == Some(id) {
            self.presenter = None;
        }
    }

    /// A participant shown first (large in the speaker layouts) whoever talks; `None` gives
    /// the place back to the active speaker.
    pub fn set_presenter(&mut self, presenter: Option<VideoLegId>) {
        let presenter = presenter.filter(|p| self.legs.iter().any(|(id, _)| id == p));
        if presenter != self.presenter {
            self.presenter = presenter;
            self.tiers.iter_mut().for_each(|t| t.gate.request());
        }
    }

    /// A new direction or packetization after a re-INVITE; the leg's streams go on.
    pub fn update_leg(&mut self, id: VideoLegId, config: VideoLegConfig) {
        let Some(index) = self.legs.iter().position(|(leg, _)| *leg == id) else { return };
        let (_, leg) = &self.legs[index];
        let new_codec = config.codec != leg.config.codec;
        let wants_own = config.cascade && config.send;
        // A picture of its own is made only when it had none, or had one in the other codec.
        let own = (wants_own && (leg.own.is_none() || new_codec)).then(|| self.own_picture(config.codec));
        let (_, leg) = &mut self.legs[index];
        let starts_sending = config.send && !leg.config.send;
        leg.config = VideoLegConfig {
            ssrc: leg.config.ssrc,
            first_seq: leg.config.first_seq,
            first_timestamp: leg.config.first_timestamp,
            ..config
        };
        if new_codec {
            // Another codec both ways: its camera starts over, and it joins that codec's tier.
            leg.source = Source::new(config.codec);
            leg.decoder_broken = false;
            leg.has_picture = false;
            leg.tier = usize::MAX;
        }
        if !config.receive {
            leg.has_picture = false;
        }
        if !wants_own {
            leg.own = None;
        } else if let Some(own) = own {
            leg.own = Some(Box::new(own));
        }
        // Its codec or limits may be others now.
        let moved = self.retier(index);
        if starts_sending && !moved {
            self.ask_keyframe_for(index);
        }
    }

    /// The first tier a viewer with `limits` takes (the last when it takes none); past the
    /// first when it is `lossy`.
    fn tier_for(&self, codec: VideoCodecKind, limits: &ViewerLimits, lossy: bool) -> usize {
        let of_codec: Vec<usize> = (0..self.tiers.len()).filter(|&i| self.tiers[i].codec == codec).collect();
        let skip = usize::from(lossy && of_codec.len() > 1);
        let last = of_codec.last().copied().unwrap_or(0);
        of_codec.into_iter().skip(skip).find(|&i| self.tiers[i].config.fits(limits)).unwrap_or(last)
    }

    /// Moves a viewer to the tier its codec, its limits, its bitrate requests and its loss
    /// (until [`VideoRoom::loss_expired`] clears it) call for; true when it moved, its new
    /// tier then asked for a keyframe.
    fn retier(&mut self, index: usize) -> bool {
        let (_, leg) = &self.legs[index];
        if leg.own.is_some() {
            return false;
        }
        let mut limits = leg.config.limits;
        if let Some(asked) = leg.stats.max_bitrate_bps {
            limits.max_bitrate_bps = Some(limits.max_bitrate_bps.map_or(asked, |sdp| sdp.min(asked)));
        }
        let tier = self.tier_for(leg.config.codec, &limits, leg.lossy_until.is_some());
        let (_, leg) = &mut self.legs[index];
        if tier == leg.tier {
            return false;
        }
        // A first placement (after a codec change) is not a move between tiers.
        if leg.tier != usize::MAX {
            self.stats.tier_changes += 1;
        }
        leg.tier = tier;
        self.tiers[tier].gate.request();
        true
    }

    fn leg_mut(&mut self, id: VideoLegId) -> Option<&mut VideoLeg> {
        self.legs.iter_mut().find(|(leg, _)| *leg == id).map(|(_, leg)| leg)
    }

    pub fn set_layout(&mut self, layout: Layout) {
        if layout != self.layout {
            self.layout = layout;
            self.tiers.iter_mut().for_each(|t| t.gate.request());
            for (_, leg) in &mut self.legs {
                if let Some(own) = &mut leg.own {
                    own.tier.gate.request();
                }
            }
        }
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Voice activity from the audio mix, for the layouts that show the speaker large.
    pub fn set_talking(&mut self, id: VideoLegId, talking: bool) {
        if let Some(leg) = self.leg_mut(id) {
            leg.talking = talking;
        }
    }

    /// A leg's camera hidden (its tile shows the background) or shown again.
    pub fn set_video_muted(&mut self, id: VideoLegId, muted: bool) {
        if let Some(leg) = self.leg_mut(id) {
            leg.stats.video_muted = muted;
        }
    }

    /// A viewer asked for a keyframe outside RTCP (SIP INFO `picture_fast_update`).
    pub fn keyframe_requested(&mut self, id: VideoLegId) {
        if let Some(index) = self.legs.iter().position(|(leg, _)| *leg == id) {
            self.legs[index].1.stats.keyframe_requests += 1;
            self.ask_keyframe_for(index);
        }
    }

    /// One RTP packet from a leg, arriving at `now`; the pictures it completes are decoded.
    pub fn receive_rtp(&mut self, now: Instant, id: VideoLegId, packet: &rtp::Packet) {
        let Some(leg) = self.legs.iter_mut().find(|(leg, _)| *leg == id).map(|(_, leg)| leg) else { return };
        if !leg.config.receive || packet.header.payload_type != leg.config.payload_type {
            return;
        }
        leg.stats.packets_received += 1;
        leg.remote_ssrc = Some(packet.header.ssrc);
        leg.receiver.receive(now, &packet.header);
        let arrived = Arrived {
            timestamp: packet.header.timestamp,
            marker: packet.header.marker,
            payload: packet.payload.clone(),
        };
        leg.reorder.push(now, packet.header.sequence_number, arrived);
        drain(now, leg, &mut self.units, &mut self.frames);
    }

    /// One RTCP datagram (already unprotected) from a leg: its reports, keyframe requests,
    /// NACKs (answered at once through `out`) and bitrate limits.
    pub fn receive_rtcp(
        &mut self,
        now: Instant,
        id: VideoLegId,
        datagram: &[u8],
        mut out: impl FnMut(Datagram<'_>),
    ) {
        let Some(packets) = rtcp_session::decode(datagram) else { return };
        let Some(index) = self.legs.iter().position(|(leg, _)| *leg == id) else { return };
        let (_, leg) = &mut self.legs[index];
        leg.rtcp.receive(now, &packets, leg.config.ssrc);
        if leg.rtcp.remote.is_some_and(|r| r.fraction_lost > LOSSY_FRACTION) {
            leg.lossy_until = Some(now + LOSSY_HOLD);
        }
        self.feedback.clear();
        leg.reader.read(&packets, leg.config.ssrc, &mut self.feedback);
        for feedback in &self.feedback {
            match *feedback {
                VideoFeedback::KeyframeRequest => {
                    leg.stats.keyframe_requests += 1;
                    self.stats.keyframe_requests += 1;
                    match &mut leg.own {
                        Some(own) => own.tier.gate.request(),
                        None => self.tiers[leg.tier].gate.request(),
                    }
                }
                VideoFeedback::Nack(seq) if leg.config.feedback.nack => {
                    if let Some(sent) = leg.history.get(seq).cloned() {
                        let header = rtp_header(&leg.config, seq, sent.timestamp, sent.marker);
                        if let Some(n) = write_rtp(&mut self.buffer, &header, &sent.payload) {
                            leg.stats.retransmitted += 1;
                            out(Datagram::Rtp(&self.buffer[..n]));
                        }
                    }
                }
                VideoFeedback::Nack(_) => {}
                VideoFeedback::MaxBitrate(bps) => leg.stats.max_bitrate_bps = Some(bps),
            }
        }
        self.retier(index);
    }

    /// When [`VideoRoom::tick`] is due next.
    pub fn poll_timeout(&self, now: Instant) -> Instant {
        let mut next = self.next_frame.unwrap_or(now);
        for (_, leg) in &self.legs {
            let at = [leg.reorder.poll_timeout(), leg.asker.poll_timeout(now), leg.next_rtcp];
            for at in at.into_iter().flatten() {
                next = next.min(at);
            }
        }
        next
    }

    /// Housekeeping at `now`: packets given up waiting for, keyframes asked of sources, RTCP
    /// reports (`ntp`, the wall clock, goes in sender reports). Each leg's datagrams go
    /// through `out`.
    pub fn tick(&mut self, now: Instant, ntp: u64, mut out: impl FnMut(VideoLegId, Datagram<'_>)) {
        self.loss_expired(now);
        let origin = *self.origin.get_or_insert(now);
        for (id, leg) in &mut self.legs {
            drain(now, leg, &mut self.units, &mut self.frames);
            let needed = leg.config.receive && (leg.source.needs_keyframe() || leg.decoder_broken);
            leg.asker.set_needed(needed);
            if leg.asker.ask_now(now) {
                ask_keyframe(*id, leg, &mut self.events, &mut out);
            }
            let has_video = leg.config.send || leg.config.receive;
            if has_video && leg.next_rtcp.is_none_or(|at| now >= at) {
                leg.next_rtcp = Some(now + RTCP_INTERVAL);
                let elapsed = now.saturating_duration_since(origin);
                let rtp_time = leg.config.first_timestamp.wrapping_add(ticks_90k(elapsed));
                let sending = SendingStats {
                    ssrc: leg.config.ssrc,
                    packets: leg.stats.packets_sent,
                    octets: leg.octets,
                    rtp_time,
                };
                let receiving = leg.remote_ssrc.map(|_| leg.receiver.stats());
                let report = leg.rtcp.report(now, ntp, sending, receiving.as_ref());
                if let Some(bytes) = rtcp_session::encode(&[report]) {
                    out(*id, Datagram::Rtcp(&bytes));
                }
            }
        }
    }

    /// Viewers whose loss kept them in a lower tier are looked at again once it is past.
    fn loss_expired(&mut self, now: Instant) {
        for index in 0..self.legs.len() {
            let leg = &mut self.legs[index].1;
            if leg.lossy_until.is_some_and(|until| now >= until) {
                leg.lossy_until = None;
                self.retier(index);
            }
        }
    }

    /// Whether a picture is due at `now` (call [`VideoRoom::compose`] then).
    pub fn frame_due(&self, now: Instant) -> bool {
        self.next_frame.is_none_or(|at| now >= at)
    }

    /// Lays the sources' last pictures out on the canvas, when a picture is due.
    pub fn compose(&mut self, now: Instant) {
        if !self.frame_due(now) {
            return;
        }
        let next = self.next_frame.map_or(now, |at| at + self.frame_interval);
        // Behind by more than a frame: the next one is a whole interval away, not a burst.
        self.next_frame = Some(if next <= now { now + self.frame_interval } else { next });
        if !self.has_viewers() {
            return;
        }
        let (name_tiles, show_names, layout) = (self.config.name_tiles, self.config.show_names, self.layout);
        let talking = self.legs.iter().find(|(_, l)| l.talking && tiled(l, name_tiles)).map(|(id, _)| *id);
        let speaker = self.speaker.update(now, talking).copied();
        let speaker = self.presenter.or(speaker);
        let look = Look { layout, speaker, name_tiles, show_names };
        if self.legs.iter().any(|(_, l)| l.config.send && l.own.is_none()) {
            let tiles = tiles_of(&self.legs, look, None);
            if let Err(e) = self.compositor.compose_named(layout, &tiles) {
                // Sources are our own decodes, cut to even sizes: a failure is a bug, not input.
                debug_assert!(false, "{e}");
            }
        }
        for index in 0..self.legs.len() {
            let Some(mut own) = self.legs[index].1.own.take() else { continue };
            let tiles = tiles_of(&self.legs, look, Some(self.legs[index].0));
            if let Err(e) = own.compositor.compose_named(layout, &tiles) {
                debug_assert!(false, "{e}");
            }
            drop(tiles);
            self.legs[index].1.own = Some(own);
        }
        self.stats.pictures += 1;
        self.composed = Some(now);
    }

    /// Encodes the picture composed last once per tier that has viewers and is due, and
    /// sends each viewer its tier's.
    pub fn encode(&mut self, mut out: impl FnMut(VideoLegId, Datagram<'_>)) {
        let Some(at) = self.composed.take() else { return };
        let origin = *self.origin.get_or_insert(at);
        let elapsed = at.saturating_duration_since(origin);
        let canvas = self.compositor.canvas();
        for (t, tier) in self.tiers.iter_mut().enumerate() {
            let viewers =
                || self.legs.iter().filter(|(_, l)| l.config.send && l.tier == t && l.own.is_none());
            if viewers().next().is_none() {
                tier.idle();
                continue;
            }
            let modes = [0, 1].map(|set| viewers().any(|(_, l)| payload_set(&l.config) == set));
            let (encodes, keyframes) = (tier.encodes, tier.keyframes);
            match tier.encode(at, elapsed.as_millis() as u64, canvas, modes) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => {
                    self.stats.encode_errors += 1;
                    continue;
                }
            }
            self.stats.encodes += tier.encodes - encodes;
            self.stats.encodes_per_tier[t] += tier.encodes - encodes;
            self.stats.keyframes += tier.keyframes - keyframes;
            let timestamp = ticks_90k(elapsed);
            for (id, leg) in
                self.legs.iter_mut().filter(|(_, l)| l.config.send && l.tier == t && l.own.is_none())
            {
                let payloads = &tier.payloads[payload_set(&leg.config)];
                send_picture(*id, leg, payloads, timestamp, &mut self.buffer, &mut out);
            }
        }
        for (id, leg) in &mut self.legs {
            let Some(own) = &mut leg.own else { continue };
            let set = payload_set(&leg.config);
            let modes = [set == 0, set == 1];
            let (encodes, keyframes) = (own.tier.encodes, own.tier.keyframes);
            match own.tier.encode(at, elapsed.as_millis() as u64, own.compositor.canvas(), modes) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => {
                    self.stats.encode_errors += 1;
                    continue;
                }
            }
            self.stats.encodes += own.tier.encodes - encodes;
            self.stats.cascade_encodes += own.tier.encodes - encodes;
            self.stats.keyframes += own.tier.keyframes - keyframes;
            let payloads = std::mem::take(&mut own.tier.payloads[set]);
            send_picture(*id, leg, &payloads, ticks_90k(elapsed), &mut self.buffer, &mut out);
            if let Some(own) = &mut leg.own {
                own.tier.payloads[set] = payloads;
            }
        }
    }

    pub fn poll_event(&mut self) -> Option<VideoRoomEvent> {
        self.events.pop_front()
    }

    pub fn leg_stats(&self, id: VideoLegId) -> Option<VideoLegStats> {
        self.legs.iter().find(|(leg, _)| *leg == id).map(|(_, leg)| {
            let mut stats = leg.stats;
            stats.packets_lost = leg.reorder.lost;
            stats.packets_late = leg.reorder.late;
            stats.keyframes_asked = leg.asker.asked;
            stats.tier = leg.tier;
            stats
        })
    }

    pub fn stats(&self) -> VideoRoomStats {
        self.stats
    }
}

/// What decides the tiles of a picture.
#[derive(Debug, Clone, Copy)]
struct Look {
    layout: Layout,
    speaker: Option<VideoLegId>,
    name_tiles: bool,
    show_names: bool,
}

/// Whether a leg has a tile: a camera, or anyone when names have tiles.
fn tiled(leg: &VideoLeg, name_tiles: bool) -> bool {
    leg.config.receive || name_tiles
}

/// The tiles of a picture in their order (the speaker first for the layouts that show one
/// large, join order otherwise), without `exclude`'s.
fn tiles_of(legs: &[(VideoLegId, VideoLeg)], look: Look, exclude: Option<VideoLegId>) -> Vec<Tile<'_>> {
    let speaker_first = matches!(look.layout, Layout::Speaker | Layout::SpeakerStrip);
    let speaker = look.speaker.filter(|s| Some(*s) != exclude);
    let shown = |id: VideoLegId, leg: &VideoLeg| tiled(leg, look.name_tiles) && Some(id) != exclude;
    let mut order: Vec<&VideoLeg> = Vec::with_capacity(legs.len());
    if speaker_first {
        order.extend(legs.iter().filter(|(id, l)| Some(*id) == speaker && shown(*id, l)).map(|(_, l)| l));
    }
    for (id, leg) in legs {
        if shown(*id, leg) && !(speaker_first && Some(*id) == speaker) {
            order.push(leg);
        }
    }
    order
        .iter()
        .map(|l| {
            let picture = shows(l).then_some(&l.picture);
            // A tile without a picture always says whose it is.
            let name = if look.show_names || picture.is_none() { l.name.as_str() } else { "" };
            Tile { picture, name }
        })
        .collect()
}

/// One encoded picture's payloads to a viewer, each with its own header, kept for its NACKs.
fn send_picture(
    id: VideoLegId,
    leg: &mut VideoLeg,
    payloads: &[Bytes],
    timestamp: u32,
    buffer: &mut [u8],
    out: &mut impl FnMut(VideoLegId, Datagram<'_>),
) {
    let timestamp = leg.config.first_timestamp.wrapping_add(timestamp);
    for (n, payload) in payloads.iter().enumerate() {
        let marker = n + 1 == payloads.len();
        let header = rtp_header(&leg.config, leg.seq, timestamp, marker);
        let Some(len) = write_rtp(buffer, &header, payload) else { continue };
        leg.history.push(leg.seq, Sent { timestamp, marker, payload: payload.clone() });
        leg.seq = leg.seq.wrapping_add(1);
        leg.stats.packets_sent += 1;
        leg.octets += payload.len() as u64;
        out(id, Datagram::Rtp(&buffer[..len]));
    }
}

/// Which of a tier's payload sets a viewer takes: H.264's in its packetization mode (0 or 1),
/// VP8's (in both).
fn payload_set(config: &VideoLegConfig) -> usize {
    usize::from(config.codec == VideoCodecKind::Vp8 || config.mode == PacketizationMode::NonInterleaved)
}

/// Whether a leg's tile shows its picture.
fn shows(leg: &VideoLeg) -> bool {
    leg.config.receive && leg.has_picture && !leg.stats.video_muted
}

/// Releases what a source's reorder buffer has in order, depacketizes and decodes it.
fn drain(now: Instant, leg: &mut VideoLeg, units: &mut Vec<AccessUnit>, frames: &mut Vec<Vp8Frame>) {
    while let Some((seq, packet)) = leg.reorder.pop(now) {
        let (timestamp, marker, payload) = (packet.timestamp, packet.marker, &packet.payload);
        match &mut leg.source {
            Source::H264 { depacketizer, .. } => depacketizer.push(seq, timestamp, marker, payload, units),
            Source::Vp8 { depacketizer, .. } => depacketizer.push(seq, timestamp, marker, payload, frames),
        }
    }
    let pictures =
        units.drain(..).map(|u| (u.data, u.keyframe)).chain(frames.drain(..).map(|f| (f.data, f.keyframe)));
    for (data, keyframe) in pictures {
        if leg.decoder_broken && !keyframe {
            continue;
        }
        match leg.source.decode(&data, &mut leg.picture) {
            Ok(true) if leg.picture.width * leg.picture.height <= MAX_SOURCE_MACROBLOCKS * 256 => {
                leg.decoder_broken = false;
                leg.has_picture = leg.picture.width >= 2 && leg.picture.height >= 2;
                leg.stats.frames_decoded += 1;
                (leg.stats.width, leg.stats.height) = (leg.picture.width, leg.picture.height);
            }
            Ok(true) => {
                leg.stats.undecodable += 1;
                leg.has_picture = false;
            }
            Ok(false) => {}
            Err(_) => {
                leg.stats.undecodable += 1;
                leg.decoder_broken = true;
            }
        }
    }
}

/// Asks a source for a keyframe the way it negotiated: PLI, else FIR (after a receiver
/// report: RFC 4585 §3.1 feedback goes in a compound packet), else SIP INFO.
fn ask_keyframe(
    id: VideoLegId,
    leg: &mut VideoLeg,
    events: &mut VecDeque<VideoRoomEvent>,
    out: &mut impl FnMut(VideoLegId, Datagram<'_>),
) {
    let fb = leg.config.feedback;
    let (Some(source), true) = (leg.remote_ssrc, fb.pli || fb.fir) else {
        if !(fb.pli || fb.fir) {
            events.push_back(VideoRoomEvent::KeyframeByInfo { leg: id });
        }
        return;
    };
    let ours = leg.config.ssrc;
    let request = if fb.pli {
        pli(ours, source)
    } else {
        leg.fir_sequence = leg.fir_sequence.wrapping_add(1);
        fir(ours, source, leg.fir_sequence)
    };
    let report: Box<dyn rtcp::packet::Packet> = Box::new(ReceiverReport { ssrc: ours, ..Default::default() });
    if let Some(bytes) = rtcp_session::encode(&[report, request]) {
        out(id, Datagram::Rtcp(&bytes));
    }
}

fn rtp_header(config: &VideoLegConfig, seq: u16, timestamp: u32, marker: bool) -> rtp::header::Header {
    rtp::header::Header {
        version: 2,
        marker,
        payload_type: config.payload_type,
        sequence_number: seq,
        timestamp,
        ssrc: config.ssrc,
        ..Default::default()
    }
}

/// Writes an RTP packet into `buffer`; its length, or `None` when it does not fit.
fn write_rtp(buffer: &mut [u8], header: &rtp::header::Header, payload: &[u8]) -> Option<usize> {
    let head = header.marshal_size();
    let end = head + payload.len();
    if end > buffer.len() {
        return None;
    }
    header.marshal_to(&mut buffer[..head]).ok()?;
    buffer[head..end].copy_from_slice(payload);
    Some(end)
}

/// A duration in 90 kHz RTP ticks, wrapping as RTP timestamps do.
fn ticks_90k(elapsed: Duration) -> u32 {
    (elapsed.as_micros() as u64 * CLOCK / 1_000_000) as u32
}

#[cfg(test)]
mod tests;
