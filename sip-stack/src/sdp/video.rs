//! Video in offer/answer: H.264 (RFC 6184) and VP8 (RFC 7741), with what travels beside them:
//! RTCP feedback (`a=rtcp-fb`, RFC 4585 and RFC 5104; REMB), bandwidth (`b=AS`, and `b=TIAS`
//! of RFC 3890) and content (`a=content`, RFC 4796).
//!
//! An answer keeps one codec: the first of ours the offer has whose parameters we can keep to.
//! For H.264 that means a profile we decode (Constrained Baseline or Baseline; the answer
//! names the offer's profile, RFC 6184 §8.2.2), the offer's packetization mode (1 before 0 when
//! both are offered), and a level: ours when both sides allow level asymmetry, else the lower
//! of the two. What the peer can receive (its level with `max-fs`, `max-mbps`, `max-br`, its
//! bandwidth) is kept in the [`VideoStream`] for the encoder that serves it.

use std::net::SocketAddr;

use sdp_types::{Attribute, Bandwidth, Media, Session};

use super::sdes::{Crypto, Srtp, SrtpKeys};
use super::{attr, direction_of, formats, remote_address, Direction, SdpError};

/// A video codec we can use, before its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoKind {
    H264,
    Vp8,
}

impl VideoKind {
    fn name(self) -> &'static str {
        match self {
            VideoKind::H264 => "H264",
            VideoKind::Vp8 => "VP8",
        }
    }
}

/// The RTP clock of every video codec here.
pub const VIDEO_CLOCK: u32 = 90_000;

/// Payload types of our offers: H.264 in packetization mode 1 and 0, and VP8.
pub const H264_MODE1_PT: u8 = 97;
pub const H264_MODE0_PT: u8 = 98;
pub const VP8_PT: u8 = 96;

/// An H.264 profile (RFC 6184 §8.1: `profile_idc` with the constraint flags of `profile-iop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H264Profile {
    ConstrainedBaseline,
    Baseline,
    Main,
    High,
    /// Any other; kept as written.
    Other {
        idc: u8,
        iop: u8,
    },
}

impl H264Profile {
    /// Reads `profile_idc` and `profile-iop` as RFC 6184 Table 5 groups them: a stream that
    /// obeys the Constrained Baseline constraints counts as such whatever its `profile_idc`.
    fn classify(idc: u8, iop: u8) -> H264Profile {
        // Constraint flags, most significant bit first: constraint_set0 … constraint_set5.
        let (cs0, cs1, cs2, cs3) = (iop & 0x80 != 0, iop & 0x40 != 0, iop & 0x20 != 0, iop & 0x10 != 0);
        match idc {
            0x42 if cs1 => H264Profile::ConstrainedBaseline,
            0x42 => H264Profile::Baseline,
            0x4D if cs0 && !cs2 && !cs3 => H264Profile::ConstrainedBaseline,
            0x4D if !cs2 && !cs3 => H264Profile::Main,
            0x58 if cs0 && cs1 => H264Profile::ConstrainedBaseline,
            0x58 if cs0 => H264Profile::Baseline,
            0x64 if iop == 0 => H264Profile::High,
            _ => H264Profile::Other { idc, iop },
        }
    }

    /// Whether our decoder takes it, and our encoder's stream (Constrained Baseline) is one
    /// a receiver of it decodes.
    fn ours(self) -> bool {
        matches!(self, H264Profile::ConstrainedBaseline | H264Profile::Baseline)
    }
}

/// H.264 as one side declares it in an `a=fmtp` line (RFC 6184 §8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H264 {
    pub profile: H264Profile,
    /// The two profile bytes as written, which an answer repeats.
    pub profile_idc: u8,
    pub profile_iop: u8,
    /// `level_idc` (31 for level 3.1); level 1b is 9.
    pub level_idc: u8,
    /// 0: one NAL unit a packet; 1: also STAP-A and FU-A (non-interleaved).
    pub packetization_mode: u8,
    pub level_asymmetry_allowed: bool,
    /// Frame size in macroblocks, macroblocks a second, and kbit/s (×1000 bit/s for VCL at
    /// Baseline), each above what the level allows.
    pub max_fs: Option<u32>,
    pub max_mbps: Option<u32>,
    pub max_br: Option<u32>,
}

impl H264 {
    /// Reads an `a=fmtp` value; what it leaves out takes RFC 6184's defaults (Baseline at
    /// level 1, packetization mode 0). `None` for a value no peer should send.
    pub fn parse(fmtp: Option<&str>) -> Option<H264> {
        let mut h264 = H264 {
            profile: H264Profile::Baseline,
            profile_idc: 0x42,
            profile_iop: 0x00,
            level_idc: 10,
            packetization_mode: 0,
            level_asymmetry_allowed: false,
            max_fs: None,
            max_mbps: None,
            max_br: None,
        };
        for (key, value) in fmtp.into_iter().flat_map(params) {
            match key.to_ascii_lowercase().as_str() {
                "profile-level-id" => {
                    let bytes = u32::from_str_radix(value, 16).ok().filter(|_| value.len() == 6)?;
                    let [_, idc, iop, level] = bytes.to_be_bytes();
                    h264.profile_idc = idc;
                    h264.profile_iop = iop;
                    // Level 1b in the Baseline family: level_idc 11 with constraint_set3.
                    let baseline_family = matches!(idc, 0x42 | 0x4D | 0x58);
                    h264.level_idc =
                        if level == 11 && baseline_family && iop & 0x10 != 0 { 9 } else { level };
                }
                "packetization-mode" => h264.packetization_mode = value.parse().ok().filter(|m| *m <= 2)?,
                "level-asymmetry-allowed" => h264.level_asymmetry_allowed = value == "1",
                "max-fs" => h264.max_fs = value.parse().ok(),
                "max-mbps" => h264.max_mbps = value.parse().ok(),
                "max-br" => h264.max_br = value.parse().ok(),
                _ => {}
            }
        }
        h264.profile = H264Profile::classify(h264.profile_idc, h264.profile_iop);
        Some(h264)
    }

    /// The largest frame, in 16×16 macroblocks, this side takes: its level's, or `max-fs`.
    pub fn max_frame_macroblocks(&self) -> u32 {
        let (fs, _) = level_limits(self.level_idc);
        self.max_fs.map_or(fs, |m| m.max(fs))
    }

    /// The most macroblocks a second this side takes: its level's, or `max-mbps`.
    pub fn max_macroblocks_per_second(&self) -> u32 {
        let (_, mbps) = level_limits(self.level_idc);
        self.max_mbps.map_or(mbps, |m| m.max(mbps))
    }

    /// The `a=fmtp` value: the profile bytes, the level, the mode, and the extras that differ
    /// from the defaults.
    fn fmtp(&self) -> String {
        // Level 1b goes back as RFC 6184 writes it for the Baseline family.
        let (iop, level) = match self.level_idc {
            9 => (self.profile_iop | 0x10, 11),
            level => (self.profile_iop, level),
        };
        let mut out = format!(
            "profile-level-id={:02x}{iop:02x}{level:02x};packetization-mode={}",
            self.profile_idc, self.packetization_mode
        );
        if self.level_asymmetry_allowed {
            out.push_str(";level-asymmetry-allowed=1");
        }
        for (name, value) in [("max-fs", self.max_fs), ("max-mbps", self.max_mbps), ("max-br", self.max_br)] {
            if let Some(value) = value {
                out.push_str(&format!(";{name}={value}"));
            }
        }
        out
    }
}

/// A level's largest frame (macroblocks) and macroblock rate (H.264 Table A-1).
fn level_limits(level_idc: u8) -> (u32, u32) {
    match level_idc {
        0..=10 => (99, 1_485),
        11 => (396, 3_000),
        12 => (396, 6_000),
        13 | 20 => (396, 11_880),
        21 => (792, 19_800),
        22 => (1_620, 20_250),
        30 => (1_620, 40_500),
        31 => (3_600, 108_000),
        32 => (5_120, 216_000),
        40 | 41 => (8_192, 245_760),
        42 => (8_704, 522_240),
        50 => (22_080, 589_824),
        51 => (36_864, 983_040),
        _ => (36_864, 2_073_600),
    }
}

/// VP8 as one side declares it (RFC 7741 §6.1): the largest frame in macroblocks and the most
/// frames a second it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp8 {
    pub max_fs: Option<u32>,
    pub max_fr: Option<u32>,
}

impl Vp8 {
    pub fn parse(fmtp: Option<&str>) -> Vp8 {
        let mut vp8 = Vp8::default();
        for (key, value) in fmtp.into_iter().flat_map(params) {
            match key.to_ascii_lowercase().as_str() {
                "max-fs" => vp8.max_fs = value.parse().ok(),
                "max-fr" => vp8.max_fr = value.parse().ok(),
                _ => {}
            }
        }
        vp8
    }

    fn fmtp(&self) -> Option<String> {
        let parts: Vec<String> = [("max-fr", self.max_fr), ("max-fs", self.max_fs)]
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| format!("{name}={v}")))
            .collect();
        (!parts.is_empty()).then(|| parts.join(";"))
    }
}

/// `key=value` pairs of an `a=fmtp` value, separated by `;`.
fn params(fmtp: &str) -> impl Iterator<Item = (&str, &str)> {
    fmtp.split(';').filter_map(|p| {
        let (key, value) = p.split_once('=')?;
        Some((key.trim(), value.trim()))
    })
}

/// A codec with the parameters one side declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    H264(H264),
    Vp8(Vp8),
}

impl VideoCodec {
    pub fn kind(&self) -> VideoKind {
        match self {
            VideoCodec::H264(_) => VideoKind::H264,
            VideoCodec::Vp8(_) => VideoKind::Vp8,
        }
    }
}

/// The RTCP feedback both sides agreed to on the stream (RFC 4585 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Feedback {
    /// Generic NACK: retransmission of lost packets from a send history.
    pub nack: bool,
    /// Picture Loss Indication: a keyframe asked for.
    pub pli: bool,
    /// Full Intra Request (RFC 5104 §3.5.1).
    pub fir: bool,
    /// Receiver-estimated maximum bitrate (draft-alvestrand-rmcat-remb).
    pub remb: bool,
    /// Temporary maximum media bitrate request (RFC 5104 §3.5.4).
    pub tmmbr: bool,
}

impl Feedback {
    /// Everything the gateway can act on.
    pub const ALL: Feedback = Feedback { nack: true, pli: true, fir: true, remb: true, tmmbr: true };

    /// The feedback `a=rtcp-fb` lines give payload type `pt` (or `*`).
    fn offered(media: &Media, pt: u8) -> Feedback {
        let mut feedback = Feedback::default();
        for value in attr(media, "rtcp-fb").flatten() {
            let mut words = value.split_whitespace();
            let applies = words.next().is_some_and(|p| p == "*" || p.parse::<u8>().ok() == Some(pt));
            if !applies {
                continue;
            }
            let kind = words.next().unwrap_or("").to_ascii_lowercase();
            let param = words.next().map(str::to_ascii_lowercase);
            match (kind.as_str(), param.as_deref()) {
                ("nack", None) => feedback.nack = true,
                ("nack", Some("pli")) => feedback.pli = true,
                ("ccm", Some("fir")) => feedback.fir = true,
                ("ccm", Some("tmmbr")) => feedback.tmmbr = true,
                ("goog-remb", None) => feedback.remb = true,
                _ => {}
            }
        }
        feedback
    }

    fn and(self, other: Feedback) -> Feedback {
        Feedback {
            nack: self.nack && other.nack,
            pli: self.pli && other.pli,
            fir: self.fir && other.fir,
            remb: self.remb && other.remb,
            tmmbr: self.tmmbr && other.tmmbr,
        }
    }

    /// `a=rtcp-fb` lines for payload type `pt` (`*`: every one of the m-line).
    fn attributes(self, pt: impl std::fmt::Display) -> Vec<Attribute> {
        [
            (self.nack, "nack"),
            (self.pli, "nack pli"),
            (self.fir, "ccm fir"),
            (self.tmmbr, "ccm tmmbr"),
            (self.remb, "goog-remb"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, what)| Attribute::with_value("rtcp-fb", format!("{pt} {what}")))
        .collect()
    }
}

/// Our side of the video stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalVideo {
    pub port: u16,
    /// In order of preference.
    pub codecs: Vec<VideoKind>,
    /// The H.264 level we decode (31: 1280×720 at 30 frames a second).
    pub h264_level_idc: u8,
    /// The largest frame (macroblocks) and frame rate we decode, for VP8.
    pub max_fs: u32,
    pub max_fr: u32,
    /// What we ask peers to send at most, in kbit/s (`b=AS`; `b=TIAS` in bit/s).
    pub max_receive_kbps: u32,
    pub direction: Direction,
    pub feedback: Feedback,
    pub srtp: Srtp,
}

/// What offer/answer settled for a video stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoStream {
    /// Index of the m-line.
    pub mline: usize,
    /// Where to send RTP; `None` while held with `c=0.0.0.0`.
    pub remote: Option<SocketAddr>,
    /// The codec with the parameters the peer declared: what it can receive.
    pub codec: VideoCodec,
    pub payload_type: u8,
    /// From our point of view.
    pub direction: Direction,
    pub feedback: Feedback,
    /// The most the peer takes, in bit/s (`b=TIAS`, else `b=AS`, else H.264's `max-br`).
    pub max_send_bps: Option<u64>,
    /// `a=content` (RFC 4796): `main` for the camera; `slides` for a presentation.
    pub content: Option<String>,
    pub rtcp_mux: bool,
    pub srtp: Option<SrtpKeys>,
}

/// Whether the offer's video m-line is the one we take: the main picture, not slides.
pub fn is_main_video(m: &Media) -> bool {
    m.media.eq_ignore_ascii_case("video")
        && attr(m, "content").flatten().all(|c| c.split(',').any(|c| c.trim().eq_ignore_ascii_case("main")))
}

/// The offer's codecs for this m-line we can take, in our order: (our kind, pt, its codec).
fn acceptable(m: &Media, local: &LocalVideo) -> Vec<(u8, VideoCodec)> {
    let offered = formats(m);
    let mut out = Vec::new();
    for kind in &local.codecs {
        let mut of_kind: Vec<(u8, VideoCodec)> = offered
            .iter()
            .filter(|(_, name, clock, ..)| name.eq_ignore_ascii_case(kind.name()) && *clock == VIDEO_CLOCK)
            .filter_map(|(pt, _, _, _, fmtp)| {
                let codec = match kind {
                    VideoKind::H264 => VideoCodec::H264(H264::parse(fmtp.as_deref())?),
                    VideoKind::Vp8 => VideoCodec::Vp8(Vp8::parse(fmtp.as_deref())),
                };
                match codec {
                    VideoCodec::H264(h) if !h.profile.ours() || h.packetization_mode > 1 => None,
                    codec => Some((*pt, codec)),
                }
            })
            .collect();
        // Packetization mode 1 before 0: fewer packets for a large frame.
        of_kind.sort_by_key(|(_, c)| match c {
            VideoCodec::H264(h) => u8::from(h.packetization_mode != 1),
            VideoCodec::Vp8(_) => 0,
        });
        out.extend(of_kind);
    }
    out
}

/// The peer's bandwidth limit for a stream: `b=TIAS` (bit/s), else `b=AS` (kbit/s), at the
/// media level or else the session's.
fn bandwidth(m: &Media, session: &Session) -> Option<u64> {
    let find = |lines: &[Bandwidth]| {
        let of = |kind: &str| lines.iter().find(|b| b.bwtype.eq_ignore_ascii_case(kind)).map(|b| b.bandwidth);
        of("TIAS").or_else(|| of("AS").map(|kbps| kbps.saturating_mul(1000)))
    };
    find(&m.bandwidths).or_else(|| find(&session.bandwidths)).filter(|&bps| bps > 0)
}

/// Negotiates one offered video m-line; `Ok(None)` when no codec of it suits us.
pub(super) fn negotiate(
    offer: &Session,
    m: &Media,
    mline: usize,
    local: &LocalVideo,
) -> Result<Option<VideoStream>, SdpError> {
    let Some(&(payload_type, codec)) = acceptable(m, local).first() else { return Ok(None) };
    let remote = remote_address(m, offer, mline)?;
    let peer = direction_of(m, offer);
    let peer_view = if remote.is_none() && peer == Direction::SendRecv { Direction::SendOnly } else { peer };
    let max_br = match codec {
        VideoCodec::H264(h) => h.max_br.map(|kbps| u64::from(kbps) * 1000),
        VideoCodec::Vp8(_) => None,
    };
    Ok(Some(VideoStream {
        mline,
        remote,
        codec,
        payload_type,
        direction: local.direction.intersect(peer_view.reversed()),
        feedback: Feedback::offered(m, payload_type).and(local.feedback),
        max_send_bps: bandwidth(m, offer).or(max_br),
        content: attr(m, "content").flatten().next().map(str::to_string),
        rtcp_mux: attr(m, "rtcp-mux").next().is_some(),
        srtp: None,
    }))
}

/// Our codec parameters in answer to the peer's `codec`: the profile it named, the level by
/// RFC 6184 §8.2.2, our own receive limits.
fn answered_codec(codec: VideoCodec, local: &LocalVideo) -> VideoCodec {
    match codec {
        VideoCodec::H264(theirs) => {
            let asymmetric = theirs.level_asymmetry_allowed;
            let level_idc =
                if asymmetric { local.h264_level_idc } else { theirs.level_idc.min(local.h264_level_idc) };
            VideoCodec::H264(H264 {
                level_idc,
                level_asymmetry_allowed: asymmetric,
                max_fs: None,
                max_mbps: None,
                max_br: None,
                ..theirs
            })
        }
        VideoCodec::Vp8(_) => VideoCodec::Vp8(Vp8 { max_fs: Some(local.max_fs), max_fr: Some(local.max_fr) }),
    }
}

fn rtpmap_and_fmtp(pt: u8, codec: &VideoCodec) -> Vec<Attribute> {
    let name = codec.kind().name();
    let mut out = vec![Attribute::with_value("rtpmap", format!("{pt} {name}/{VIDEO_CLOCK}"))];
    let fmtp = match codec {
        VideoCodec::H264(h) => Some(h.fmtp()),
        VideoCodec::Vp8(v) => v.fmtp(),
    };
    if let Some(fmtp) = fmtp {
        out.push(Attribute::with_value("fmtp", format!("{pt} {fmtp}")));
    }
    out
}

fn our_bandwidths(local: &LocalVideo) -> Vec<Bandwidth> {
    vec![
        Bandwidth { bwtype: "AS".into(), bandwidth: u64::from(local.max_receive_kbps) },
        Bandwidth { bwtype: "TIAS".into(), bandwidth: u64::from(local.max_receive_kbps) * 1000 },
    ]
}

/// The answer's m-line for a negotiated stream, in the offer's profile (and with our crypto
/// line when it is SRTP).
pub(super) fn answer_media(
    local: &LocalVideo,
    stream: &VideoStream,
    offered: &Media,
    crypto: Option<Crypto>,
) -> Media {
    stream_media(local, stream, offered.proto.clone(), crypto)
}

/// A re-offer's m-line for the stream in force (a session refresh, or the 2xx to an offerless
/// re-INVITE): its payload type and codec, its feedback, its transport, with the key we send
/// with when it is SRTP (RFC 3264 §8: a re-offer keeps the session's streams as they are).
pub fn reoffer_media(local: &LocalVideo, stream: &VideoStream) -> Media {
    let crypto = stream.srtp.map(|keys| Crypto { tag: 1, suite: keys.suite, key: keys.local });
    let proto = if crypto.is_some() { "RTP/SAVP" } else { "RTP/AVP" };
    stream_media(local, stream, proto.into(), crypto)
}

fn stream_media(local: &LocalVideo, stream: &VideoStream, proto: String, crypto: Option<Crypto>) -> Media {
    let pt = stream.payload_type;
    let mut media = Media::new(
        sdp_types::MediaType::Video,
        local.port,
        sdp_types::TransportProto::RtpAvp,
        pt.to_string(),
    );
    media.proto = proto;
    media.bandwidths = our_bandwidths(local);
    media.attributes = rtpmap_and_fmtp(pt, &answered_codec(stream.codec, local));
    media.attributes.extend(stream.feedback.attributes(pt));
    if let Some(content) = &stream.content {
        media.attributes.push(Attribute::with_value("content", content.clone()));
    }
    media.attributes.push(Attribute::new(stream.direction.token()));
    if stream.rtcp_mux {
        media.attributes.push(Attribute::new("rtcp-mux"));
    }
    if let Some(crypto) = crypto {
        media.attributes.push(Attribute::with_value("crypto", crypto.value()));
    }
    media
}

/// Whether an offer has a video stream [`super::answer_av`] would look at: the moment to
/// set ports aside for it.
pub fn offers_video(offer: &Session) -> bool {
    offer.medias.iter().any(|m| m.port != 0 && is_main_video(m))
}

/// Our offer's video m-line: each codec of ours (H.264 in packetization mode 1 and then 0,
/// Constrained Baseline at our level with asymmetry allowed; VP8 with our limits), the
/// feedback we act on, our bandwidth, `a=content:main`.
pub fn offer_media(local: &LocalVideo, crypto: Option<Crypto>) -> Media {
    let mut codecs: Vec<(u8, VideoCodec)> = Vec::new();
    for kind in &local.codecs {
        match kind {
            VideoKind::H264 => {
                for (pt, packetization_mode) in [(H264_MODE1_PT, 1), (H264_MODE0_PT, 0)] {
                    codecs.push((
                        pt,
                        VideoCodec::H264(H264 {
                            profile: H264Profile::ConstrainedBaseline,
                            profile_idc: 0x42,
                            profile_iop: 0xE0,
                            level_idc: local.h264_level_idc,
                            packetization_mode,
                            level_asymmetry_allowed: true,
                            max_fs: None,
                            max_mbps: None,
                            max_br: None,
                        }),
                    ));
                }
            }
            VideoKind::Vp8 => codecs.push((
                VP8_PT,
                VideoCodec::Vp8(Vp8 { max_fs: Some(local.max_fs), max_fr: Some(local.max_fr) }),
            )),
        }
    }
    let fmt = codecs.iter().map(|(pt, _)| pt.to_string()).collect::<Vec<_>>().join(" ");
    let mut media =
        Media::new(sdp_types::MediaType::Video, local.port, sdp_types::TransportProto::RtpAvp, fmt);
    // `b=AS` only, and one set of `a=rtcp-fb:*` lines: a request over 1300 bytes would have to
    // leave a UDP trunk for TCP (RFC 3261 §18.1.1), which not every carrier takes.
    media.bandwidths = our_bandwidths(local).into_iter().filter(|b| b.bwtype == "AS").collect();
    for (pt, codec) in &codecs {
        media.attributes.extend(rtpmap_and_fmtp(*pt, codec));
    }
    media.attributes.extend(local.feedback.attributes("*"));
    media.attributes.push(Attribute::with_value("content", "main"));
    media.attributes.push(Attribute::new(local.direction.token()));
    media.attributes.push(Attribute::new("rtcp-mux"));
    if let Some(ours) = crypto {
        media.proto = "RTP/SAVP".into();
        media.attributes.push(Attribute::with_value("crypto", ours.value()));
    }
    media
}

/// Reads the peer's answer for the video m-line of our offer: `Ok(None)` when it refused the
/// stream (port 0) or kept no codec of ours.
pub fn read_answer(
    offer: &Session,
    answer: &Session,
    mline: usize,
    local: &LocalVideo,
) -> Result<Option<VideoStream>, SdpError> {
    let Some(m) = answer.medias.get(mline).filter(|m| m.port != 0 && m.media.eq_ignore_ascii_case("video"))
    else {
        return Ok(None);
    };
    let Some(offered) = offer.medias.get(mline) else { return Ok(None) };
    let Some(mut stream) = negotiate(answer, m, mline, local)? else { return Ok(None) };
    stream.srtp = super::answered_keys(offered, m, mline)?;
    Ok(Some(stream))
}
