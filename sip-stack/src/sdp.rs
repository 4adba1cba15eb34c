//! SDP offer/answer (RFC 3264) for audio, on `sdp-types`.
//!
//! [`answer`] answers an offer with our codec preferences: the first of our codecs the offer
//! has, under the offerer's payload type (§6.1), `telephone-event` when offered (RFC 4733),
//! the direction mirrored (§6.1: sendonly ↔ recvonly), `rtcp-mux` echoed (RFC 5761), every other
//! stream refused with port 0 (§6). [`offer`] builds our offer and [`read_answer`] reads what
//! the peer chose. A stream held with `c=0.0.0.0` (RFC 2543 style) counts as sendonly.
//! `RTP/SAVP` offers are answered with SRTP keyed by SDES ([`sdes`]) when [`LocalAudio::srtp`]
//! allows it. [`answer_av`] also answers the offer's main video stream ([`video`]).

pub mod sdes;
pub mod video;

use std::net::{IpAddr, SocketAddr};

use sdes::{Crypto, Srtp, SrtpKeys};
use video::{LocalVideo, VideoStream};

/// The SDP session type offers and answers are made of.
pub use sdp_types::Session;
use sdp_types::{Attribute, Connection, Media, Origin, Time};

/// An audio codec we can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    /// The rtpmap encoding name.
    pub name: &'static str,
    pub clock_rate: u32,
    pub channels: u8,
    /// The RFC 3551 static payload type, if it has one.
    pub static_pt: Option<u8>,
    /// The payload type we offer it with when it has no static one.
    pub dynamic_pt: u8,
}

pub const PCMU: Codec =
    Codec { name: "PCMU", clock_rate: 8000, channels: 1, static_pt: Some(0), dynamic_pt: 0 };
pub const PCMA: Codec =
    Codec { name: "PCMA", clock_rate: 8000, channels: 1, static_pt: Some(8), dynamic_pt: 8 };
/// G.722: RTP clock 8000 although it samples at 16 kHz (RFC 3551 §4.5.2).
pub const G722: Codec =
    Codec { name: "G722", clock_rate: 8000, channels: 1, static_pt: Some(9), dynamic_pt: 9 };
pub const OPUS: Codec =
    Codec { name: "opus", clock_rate: 48000, channels: 2, static_pt: None, dynamic_pt: 111 };
/// RFC 4733 DTMF events at 8 kHz.
pub const TELEPHONE_EVENT: Codec =
    Codec { name: "telephone-event", clock_rate: 8000, channels: 1, static_pt: None, dynamic_pt: 101 };

impl Codec {
    /// The payload type we offer it under: its static type, else its dynamic one.
    pub fn payload_type(&self) -> u8 {
        self.static_pt.unwrap_or(self.dynamic_pt)
    }

    fn rtpmap(&self) -> String {
        if self.channels > 1 {
            format!("{} {}/{}/{}", self.payload_type(), self.name, self.clock_rate, self.channels)
        } else {
            format!("{} {}/{}", self.payload_type(), self.name, self.clock_rate)
        }
    }
}

/// Media direction from one side's point of view (RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// As SDP writes it (`a=sendrecv`).
    pub fn token(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The other side's view of the same stream.
    pub fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            other => other,
        }
    }

    /// What both sides allow: `self` as we want it, `peer` as the peer wants it from our view.
    fn intersect(self, peer: Direction) -> Direction {
        let send = self.sends() && peer.sends();
        let recv = self.receives() && peer.receives();
        match (send, recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// Our side of the audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAudio {
    pub address: IpAddr,
    pub port: u16,
    /// In order of preference.
    pub codecs: Vec<Codec>,
    pub ptime: u32,
    pub direction: Direction,
    /// SRTP taken in answers (our own offers are plain `RTP/AVP`).
    pub srtp: Srtp,
}

/// What offer/answer settled for the audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioStream {
    /// Index of the m-line.
    pub mline: usize,
    /// Where to send RTP; `None` while held with `c=0.0.0.0` or port 0.
    pub remote: Option<SocketAddr>,
    pub codec: Codec,
    /// The payload type the codec travels under in this session.
    pub payload_type: u8,
    pub fmtp: Option<String>,
    /// The payload type of telephone-event, when both sides have it.
    pub telephone_event: Option<u8>,
    /// From our point of view.
    pub direction: Direction,
    pub ptime: Option<u32>,
    pub rtcp_mux: bool,
    /// SRTP keys, when the stream is `RTP/SAVP`.
    pub srtp: Option<SrtpKeys>,
    /// The header extension id under which the peer sends each packet's audio level
    /// (RFC 6464), when it offered to.
    pub audio_level: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP does not parse: {0}")]
    Parse(String),
    #[error("no audio stream in the offer")]
    NoAudio,
    /// Answer with 488 Not Acceptable Here.
    #[error("no codec in common on m-line {mline}")]
    NoCommonCodec { mline: usize },
    #[error("the answer has {got} m-lines for an offer of {expected}")]
    MlineCount { expected: usize, got: usize },
    #[error("bad connection address on m-line {mline}")]
    BadConnection { mline: usize },
    /// Answer with 488: SRTP offered where it is off, plain RTP where it is required, or no
    /// `a=crypto` line we can keep to.
    #[error("m-line {mline}: {proto} is not acceptable here (SRTP policy or crypto suites)")]
    Srtp { mline: usize, proto: String },
}

pub fn parse(body: &[u8]) -> Result<Session, SdpError> {
    Session::parse(body).map_err(|e| SdpError::Parse(e.to_string()))
}

fn attr<'a>(media: &'a Media, name: &str) -> impl Iterator<Item = Option<&'a str>> + 'a {
    let name = name.to_string();
    media
        .attributes
        .iter()
        .filter(move |a| a.attribute.eq_ignore_ascii_case(&name))
        .map(|a| a.value.as_deref())
}

/// The payload types of an m-line with what they name: (pt, name, clock, channels, fmtp).
fn formats(media: &Media) -> Vec<(u8, String, u32, u8, Option<String>)> {
    media
        .fmt
        .split_whitespace()
        .filter_map(|f| f.parse::<u8>().ok())
        .filter_map(|pt| {
            let rtpmap = attr(media, "rtpmap").flatten().find_map(|v| {
                let (p, rest) = v.split_once(' ')?;
                (p.trim().parse::<u8>().ok()? == pt).then(|| rest.trim().to_string())
            });
            let fmtp = attr(media, "fmtp").flatten().find_map(|v| {
                let (p, rest) = v.split_once(' ')?;
                (p.trim().parse::<u8>().ok()? == pt).then(|| rest.trim().to_string())
            });
            let (name, clock, channels) = match rtpmap {
                Some(map) => {
                    let mut parts = map.split('/');
                    let name = parts.next()?.to_string();
                    let clock = parts.next()?.parse().ok()?;
                    let channels = parts.next().and_then(|c| c.parse().ok()).unwrap_or(1);
                    (name, clock, channels)
                }
                // RFC 3551 static types named without rtpmap.
                None => match pt {
                    0 => ("PCMU".into(), 8000, 1),
                    8 => ("PCMA".into(), 8000, 1),
                    9 => ("G722".into(), 8000, 1),
                    _ => return None,
                },
            };
            Some((pt, name, clock, channels, fmtp))
        })
        .collect()
}

fn codec_matches(codec: &Codec, name: &str, clock: u32, channels: u8) -> bool {
    codec.name.eq_ignore_ascii_case(name)
        && codec.clock_rate == clock
        && (codec.channels == channels || codec.channels == 1 && channels == 1)
}

/// `sendrecv`, `sendonly`, `recvonly` or `inactive` (RFC 3264 §5.1), any case.
fn direction_token(token: &str) -> Option<Direction> {
    match token.to_ascii_lowercase().as_str() {
        "sendrecv" => Some(Direction::SendRecv),
        "sendonly" => Some(Direction::SendOnly),
        "recvonly" => Some(Direction::RecvOnly),
        "inactive" => Some(Direction::Inactive),
        _ => None,
    }
}

fn direction_of(media: &Media, session: &Session) -> Direction {
    let pick = |attrs: &[Attribute]| attrs.iter().find_map(|a| direction_token(&a.attribute));
    pick(&media.attributes).or_else(|| pick(&session.attributes)).unwrap_or(Direction::SendRecv)
}

/// The peer's RTP address for an m-line; `Ok(None)` when held (`c=0.0.0.0`) or refused (port 0).
fn remote_address(media: &Media, session: &Session, mline: usize) -> Result<Option<SocketAddr>, SdpError> {
    let connection =
        media.connections.first().or(session.connection.as_ref()).ok_or(SdpError::BadConnection { mline })?;
    let address = connection.connection_address.split('/').next().unwrap_or("");
    let ip: IpAddr = address.parse().map_err(|_| SdpError::BadConnection { mline })?;
    if ip.is_unspecified() || media.port == 0 {
        return Ok(None);
    }
    Ok(Some(SocketAddr::new(ip, media.port)))
}

fn new_session(local: &LocalAudio, session_id: u64, version: u64) -> Session {
    // No username: sdp-types writes it as `-` (RFC 8866 §5.2).
    let origin = Origin::with_ip_addr(session_id, version, local.address);
    let mut session = Session::new(origin, "-");
    session.connection = Some(Connection::from_ip_addr(local.address));
    session.times.push(Time::new(0, 0));
    session
}

/// RFC 6464's RTP header extension: the sender's audio level in each packet.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// The id and direction an m-line gives the extension `uri` (RFC 8285 §8:
/// `a=extmap:<id>[/<direction>] <uri> [attributes]`), ids 1–255 but the one-byte form's
/// reserved 15; the direction is from the writer's side.
fn extmap(media: &Media, uri: &str) -> Option<(u8, Direction)> {
    attr(media, "extmap").flatten().find_map(|value| {
        let mut parts = value.split_whitespace();
        let key = parts.next()?;
        let (id, direction) = key.split_once('/').unwrap_or((key, "sendrecv"));
        if !parts.next()?.eq_ignore_ascii_case(uri) {
            return None;
        }
        let id = id.parse::<u8>().ok().filter(|&id| id != 0 && id != 15)?;
        Some((id, direction_token(direction)?))
    })
}

/// The audio-level extension's id in an answer we gave (written by another stack, as a
/// browser's is), when the answer keeps it for packets coming to us.
pub fn answered_audio_level(answer: &Session) -> Option<u8> {
    let m = answer.medias.iter().find(|m| m.media.eq_ignore_ascii_case("audio") && m.port != 0)?;
    extmap(m, AUDIO_LEVEL_URI).filter(|(_, d)| d.receives()).map(|(id, _)| id)
}

/// Tag of the one `a=crypto` line our offers carry when SRTP is required.
const OFFER_CRYPTO_TAG: u32 = 1;

/// Our offer: every codec in preference order, telephone-event, ptime, direction, rtcp-mux;
/// `RTP/SAVP` with our key when SRTP is required, else plain `RTP/AVP`.
pub fn offer(local: &LocalAudio, session_id: u64, version: u64) -> Session {
    let crypto = match local.srtp {
        Srtp::Required(key) => {
            Some(Crypto { tag: OFFER_CRYPTO_TAG, suite: sdes::Suite::AesCm128HmacSha1_80, key })
        }
        Srtp::Off | Srtp::Optional(_) => None,
    };
    offer_with(local, crypto, session_id, version)
}

/// A re-offer within a session (a refresh, or an offerless re-INVITE's 2xx) that keeps the
/// stream's transport: `RTP/SAVP` with the suite and the key we send with when it is SRTP.
pub fn reoffer(local: &LocalAudio, current: &AudioStream, session_id: u64, version: u64) -> Session {
    let crypto =
        current.srtp.map(|keys| Crypto { tag: OFFER_CRYPTO_TAG, suite: keys.suite, key: keys.local });
    offer_with(local, crypto, session_id, version)
}

/// The media types of a session's m-lines, in order: what every later offer in it keeps
/// (RFC 3264 §8: m-lines are never removed; a stream not in use stays on port 0).
pub fn mline_kinds(session: &Session) -> Vec<String> {
    session.medias.iter().map(|m| m.media.clone()).collect()
}

/// [`reoffer`] of a session whose m-lines were `kinds`: the audio stream in force at its
/// index, the video stream in force (with its side) at its own, every other line on port 0.
pub fn reoffer_av(
    local: &LocalAudio,
    current: &AudioStream,
    video: Option<(&LocalVideo, &VideoStream)>,
    kinds: &[String],
    session_id: u64,
    version: u64,
) -> Session {
    let mut session = reoffer(local, current, session_id, version);
    let Some(audio) = session.medias.pop() else { return session };
    let lines = kinds.len().max(current.mline + 1);
    session.medias = (0..lines)
        .map(|i| match video {
            _ if i == current.mline => audio.clone(),
            Some((local, stream)) if i == stream.mline => video::reoffer_media(local, stream),
            _ => {
                let kind = kinds.get(i).cloned().unwrap_or_else(|| "audio".into());
                let mut unused =
                    Media::new(sdp_types::MediaType::Audio, 0, sdp_types::TransportProto::RtpAvp, "0");
                unused.media = kind;
                unused
            }
        })
        .collect();
    session
}

fn offer_with(local: &LocalAudio, crypto: Option<Crypto>, session_id: u64, version: u64) -> Session {
    let mut session = new_session(local, session_id, version);
    let mut codecs: Vec<Codec> = local.codecs.clone();
    if !codecs.contains(&TELEPHONE_EVENT) {
        codecs.push(TELEPHONE_EVENT);
    }
    let fmt = codecs.iter().map(|c| c.payload_type().to_string()).collect::<Vec<_>>().join(" ");
    let mut media =
        Media::new(sdp_types::MediaType::Audio, local.port, sdp_types::TransportProto::RtpAvp, fmt);
    for c in &codecs {
        media.attributes.push(Attribute::with_value("rtpmap", c.rtpmap()));
        if *c == TELEPHONE_EVENT {
            media.attributes.push(Attribute::with_value("fmtp", format!("{} 0-16", c.payload_type())));
        }
        if *c == OPUS {
            media
                .attributes
                .push(Attribute::with_value("fmtp", format!("{} useinbandfec=1", c.payload_type())));
        }
    }
    media.attributes.push(Attribute::with_value("ptime", local.ptime));
    media.attributes.push(Attribute::new(local.direction.token()));
    media.attributes.push(Attribute::new("rtcp-mux"));
    if let Some(ours) = crypto {
        media.proto = "RTP/SAVP".into();
        media.attributes.push(Attribute::with_value("crypto", ours.value()));
    }
    session.medias.push(media);
    session
}

/// Answers `offer`: the negotiated audio stream and the answer to send, or why not (488).
/// Video is refused (port 0).
pub fn answer(
    offer: &Session,
    local: &LocalAudio,
    session_id: u64,
    version: u64,
) -> Result<(Session, AudioStream), SdpError> {
    answer_av(offer, local, None, session_id, version).map(|(session, audio, _)| (session, audio))
}

/// The transport of an offered m-line under an SRTP policy: the crypto lines (theirs, ours)
/// when it is SRTP we take, and whether the stream may be taken at all.
fn transport(m: &Media, srtp: Srtp) -> (Option<(Crypto, Crypto)>, bool) {
    let (plain, secure) = profile(m);
    // RFC 4568 §7.1.2: an RTP/SAVP stream is answered with one of its crypto lines.
    let crypto = match (secure, srtp.key()) {
        (true, Some(key)) => sdes_answer(m, key),
        _ => None,
    };
    let allowed = match srtp {
        Srtp::Required(_) => crypto.is_some(),
        Srtp::Optional(_) => plain || crypto.is_some(),
        Srtp::Off => plain,
    };
    (crypto, allowed)
}

/// Whether an m-line is plain RTP (`RTP/AVP`), and whether it is SRTP (`RTP/SAVP(F)`).
fn profile(m: &Media) -> (bool, bool) {
    let plain = m.proto.eq_ignore_ascii_case("RTP/AVP");
    (plain, m.proto.eq_ignore_ascii_case("RTP/SAVP") || m.proto.eq_ignore_ascii_case("RTP/SAVPF"))
}

/// The keys of an SRTP stream both sides agreed to: their crypto line and our key.
fn agreed_keys(crypto: Option<&(Crypto, Crypto)>, srtp: Srtp) -> Option<SrtpKeys> {
    crypto.zip(srtp.key()).map(|((theirs, _), key)| SrtpKeys {
        suite: theirs.suite,
        remote: theirs.key,
        local: key,
    })
}

/// [`answer`], with the offer's first main video stream answered by `video` when it has a
/// codec in common (a call whose peer offers none stays an audio call: its video m-line
/// gets port 0).
pub fn answer_av(
    offer: &Session,
    local: &LocalAudio,
    video: Option<&LocalVideo>,
    session_id: u64,
    version: u64,
) -> Result<(Session, AudioStream, Option<VideoStream>), SdpError> {
    let mut answer = new_session(local, session_id, version);
    let mut chosen: Option<AudioStream> = None;
    let mut chosen_video: Option<VideoStream> = None;
    let mut audio_seen = None;
    let mut srtp_refused = None;
    for (mline, m) in offer.medias.iter().enumerate() {
        let audio = m.media.eq_ignore_ascii_case("audio");
        let (plain, secure) = profile(m);
        let (crypto, allowed) = transport(m, local.srtp);
        if let Some(video) =
            video.filter(|_| chosen_video.is_none() && m.port != 0 && video::is_main_video(m))
        {
            let (crypto, allowed) = transport(m, video.srtp);
            // A video line we cannot read is refused; the call goes on with its audio.
            let negotiated =
                if allowed { video::negotiate(offer, m, mline, video).ok().flatten() } else { None };
            if let Some(mut stream) = negotiated {
                stream.srtp = agreed_keys(crypto.as_ref(), video.srtp);
                answer.medias.push(video::answer_media(video, &stream, m, crypto.map(|(_, ours)| ours)));
                chosen_video = Some(stream);
                continue;
            }
        }
        if audio {
            audio_seen.get_or_insert(mline);
            if !allowed && (plain || secure) && m.port != 0 {
                srtp_refused.get_or_insert((mline, m.proto.clone()));
            }
        }
        let usable = chosen.is_none() && audio && allowed && m.port != 0;
        let negotiated = if usable { negotiate(offer, m, mline, local)? } else { None };
        match negotiated {
            Some(mut stream) => {
                stream.srtp = agreed_keys(crypto.as_ref(), local.srtp);
                answer.medias.push(answer_media(local, &stream, m, crypto.map(|(_, ours)| ours)));
                chosen = Some(stream);
            }
            None => {
                // §6: a refused stream keeps its m-line with port 0.
                let fmt = m.fmt.split_whitespace().next().unwrap_or("0").to_string();
                answer.medias.push(Media {
                    port: 0,
                    fmt,
                    attributes: Vec::new(),
                    connections: Vec::new(),
                    ..m.clone()
                });
            }
        }
    }
    match (chosen, srtp_refused, audio_seen) {
        (Some(stream), ..) => Ok((answer, stream, chosen_video)),
        (None, Some((mline, proto)), _) => Err(SdpError::Srtp { mline, proto }),
        (None, None, Some(mline)) => Err(SdpError::NoCommonCodec { mline }),
        (None, None, None) => Err(SdpError::NoAudio),
    }
}

/// The offer's first `a=crypto` line we can keep to, and ours in answer: same tag and suite,
/// our key.
fn sdes_answer(m: &Media, key: sdes::Key) -> Option<(Crypto, Crypto)> {
    let theirs = attr(m, "crypto").flatten().find_map(|value| Crypto::parse(value).ok())?;
    let ours = Crypto { key, ..theirs.clone() };
    Some((theirs, ours))
}

/// What the offer's first audio stream settles to with our codecs, whatever its transport
/// (WebRTC's `UDP/TLS/RTP/SAVPF` too): for a caller whose answer another stack writes.
pub fn choose(offer: &Session, local: &LocalAudio) -> Result<AudioStream, SdpError> {
    let (mline, m) = offer
        .medias
        .iter()
        .enumerate()
        .find(|(_, m)| m.media.eq_ignore_ascii_case("audio") && m.port != 0)
        .ok_or(SdpError::NoAudio)?;
    negotiate(offer, m, mline, local)?.ok_or(SdpError::NoCommonCodec { mline })
}

/// Picks our first preferred codec the m-line offers; `Ok(None)` when there is none.
fn negotiate(
    offer: &Session,
    m: &Media,
    mline: usize,
    local: &LocalAudio,
) -> Result<Option<AudioStream>, SdpError> {
    let offered = formats(m);
    let pick = local.codecs.iter().find_map(|codec| {
        offered
            .iter()
            .find(|(_, name, clock, ch, _)| codec_matches(codec, name, *clock, *ch))
            .map(|f| (*codec, f.clone()))
    });
    let Some((codec, (payload_type, _, _, _, fmtp))) = pick else {
        return Err(SdpError::NoCommonCodec { mline });
    };
    let telephone_event = offered
        .iter()
        .filter(|(_, name, ..)| name.eq_ignore_ascii_case("telephone-event"))
        .min_by_key(|(_, _, clock, ..)| clock.abs_diff(codec.clock_rate))
        .map(|f| f.0);
    let peer = direction_of(m, offer);
    let held = remote_address(m, offer, mline)?.is_none();
    // The peer's sendonly is our recvonly; c=0.0.0.0 is the old way of saying sendonly.
    let peer_view = if held && peer == Direction::SendRecv { Direction::SendOnly } else { peer }.reversed();
    Ok(Some(AudioStream {
        mline,
        remote: remote_address(m, offer, mline)?,
        codec,
        payload_type,
        fmtp,
        telephone_event,
        direction: local.direction.intersect(peer_view),
        ptime: attr(m, "ptime").flatten().find_map(|v| v.trim().parse().ok()),
        rtcp_mux: attr(m, "rtcp-mux").next().is_some(),
        srtp: None,
        // What the peer will send: its sendrecv or sendonly.
        audio_level: extmap(m, AUDIO_LEVEL_URI).filter(|(_, d)| d.sends()).map(|(id, _)| id),
    }))
}

fn answer_media(local: &LocalAudio, stream: &AudioStream, offered: &Media, crypto: Option<Crypto>) -> Media {
    let mut fmt = vec![stream.payload_type.to_string()];
    let mut media =
        Media::new(sdp_types::MediaType::Audio, local.port, sdp_types::TransportProto::RtpAvp, "");
    // The offer's profile (RFC 3264 §6): RTP/AVP, or RTP/SAVP(F) with its crypto line.
    media.proto = offered.proto.clone();
    let mut rtpmap = Codec { static_pt: Some(stream.payload_type), ..stream.codec }.rtpmap();
    if stream.codec.channels > 1 {
        rtpmap = format!(
            "{} {}/{}/{}",
            stream.payload_type, stream.codec.name, stream.codec.clock_rate, stream.codec.channels
        );
    }
    media.attributes.push(Attribute::with_value("rtpmap", rtpmap));
    if let Some(fmtp) = &stream.fmtp {
        media.attributes.push(Attribute::with_value("fmtp", format!("{} {fmtp}", stream.payload_type)));
    }
    if let Some(te) = stream.telephone_event {
        fmt.push(te.to_string());
        let clock = formats(offered).iter().find(|f| f.0 == te).map_or(8000, |f| f.2);
        media.attributes.push(Attribute::with_value("rtpmap", format!("{te} telephone-event/{clock}")));
        media.attributes.push(Attribute::with_value("fmtp", format!("{te} 0-16")));
    }
    media.fmt = fmt.join(" ");
    media.attributes.push(Attribute::with_value("ptime", stream.ptime.unwrap_or(local.ptime)));
    media.attributes.push(Attribute::new(stream.direction.token()));
    if stream.rtcp_mux {
        media.attributes.push(Attribute::new("rtcp-mux"));
    }
    if let Some(crypto) = crypto {
        media.attributes.push(Attribute::with_value("crypto", crypto.value()));
    }
    // RFC 8285 §7: the offer's id; we only read the levels, and send none.
    if let Some(id) = stream.audio_level {
        media.attributes.push(Attribute::with_value("extmap", format!("{id}/recvonly {AUDIO_LEVEL_URI}")));
    }
    media
}

/// Reads the peer's answer to our `offer`.
pub fn read_answer(offer: &Session, answer: &Session, local: &LocalAudio) -> Result<AudioStream, SdpError> {
    // RFC 3264 §6 wants every offered m-line answered. An answer that leaves off lines after
    // the audio's (an audio-only far end ignoring our video) is read as refusing them; one
    // with lines we never offered is not ours.
    if answer.medias.len() > offer.medias.len() {
        return Err(SdpError::MlineCount { expected: offer.medias.len(), got: answer.medias.len() });
    }
    let (mline, m) = answer
        .medias
        .iter()
        .enumerate()
        .find(|(_, m)| m.media.eq_ignore_ascii_case("audio") && m.port != 0)
        .ok_or(SdpError::NoAudio)?;
    let mut stream = negotiate(answer, m, mline, local)?.ok_or(SdpError::NoCommonCodec { mline })?;
    // Our offers ask for no header extension, so an answer may not add one (RFC 8285 §7).
    stream.audio_level = None;
    stream.srtp = answered_keys(&offer.medias[mline], m, mline)?;
    // The answerer lists what it will send first; honour its order over ours.
    if let Some((pt, name, clock, ch, fmtp)) = formats(m).into_iter().next() {
        if let Some(codec) = local.codecs.iter().find(|c| codec_matches(c, &name, clock, ch)) {
            stream.codec = *codec;
            stream.payload_type = pt;
            stream.fmtp = fmtp;
        }
    }
    Ok(stream)
}

/// The SRTP keys of an answered m-line `m` to our `offered` one. After an RTP/SAVP offer, the
/// answer's crypto line names our tag and suite, and its key; after a plain one, the answer is
/// plain too (RFC 3264 §6: the offer's profile).
fn answered_keys(offered: &Media, m: &Media, mline: usize) -> Result<Option<SrtpKeys>, SdpError> {
    let srtp_error = || SdpError::Srtp { mline, proto: m.proto.clone() };
    if !offered.proto.eq_ignore_ascii_case("RTP/SAVP") {
        return if m.proto.eq_ignore_ascii_case(&offered.proto) { Ok(None) } else { Err(srtp_error()) };
    }
    let ours =
        attr(offered, "crypto").flatten().find_map(|v| Crypto::parse(v).ok()).ok_or_else(srtp_error)?;
    let theirs = attr(m, "crypto")
        .flatten()
        .filter_map(|v| Crypto::parse(v).ok())
        .find(|c| c.tag == ours.tag && c.suite == ours.suite)
        .filter(|_| m.proto.eq_ignore_ascii_case("RTP/SAVP"))
        .ok_or_else(srtp_error)?;
    Ok(Some(SrtpKeys { suite: ours.suite, remote: theirs.key, local: ours.key }))
}

#[cfg(test)]
mod tests;
