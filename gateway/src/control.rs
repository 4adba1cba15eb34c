//! Call control's vocabulary shared by the SIP core and the REST API: why calls end, what the
//! API sees of live conferences, and what it may ask of a participant. The IVR's PIN logic is
//! in [`ivr`].

use mixer::conference::{LegConfig, LegStats};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::ids::{RoomNumber, TrunkName};
use crate::media::{ParticipantId, Wire};
use crate::storage::Room;

/// Why a call ended, as written in its record and counted in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The phone hung up.
    Normal,
    RtpTimeout,
    /// On hold longer than `rtp.hold_timeout_secs`.
    HoldTimeout,
    PinFailed,
    SessionExpired,
    /// Our 2xx was never acknowledged.
    NoAck,
    Kicked,
    Shutdown,
    /// The SDP answer in the ACK (after our offer) was missing or unusable.
    BadSdp,
    /// A browser's WebSocket closed without a goodbye, or its peer connection failed.
    ConnectionLost,
    /// The browser's peer connection could not be set up here (no socket on the address).
    MediaUnavailable,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Normal => "normal",
            Cause::RtpTimeout => "rtp-timeout",
            Cause::HoldTimeout => "hold-timeout",
            Cause::PinFailed => "wrong-pin",
            Cause::SessionExpired => "session-expired",
            Cause::NoAck => "no-ack",
            Cause::Kicked => "kicked",
            Cause::Shutdown => "shutdown",
            Cause::BadSdp => "bad-sdp",
            Cause::ConnectionLost => "connection-lost",
            Cause::MediaUnavailable => "media-unavailable",
        }
    }
}

/// A participant as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParticipantView {
    pub id: ParticipantId,
    pub display_name: String,
    /// The authenticated SIP user.
    pub user: String,
    /// `inbound` (the phone called) or `outbound` (dialled out from the API).
    pub direction: &'static str,
    /// `pin` (in the IVR), `joined`, or for calls out not yet answered: `calling`, `ringing`,
    /// `early` (the far end's early media plays into the room), `cancelling`.
    pub state: &'static str,
    pub started_at_ms: i64,
    #[serde(flatten)]
    pub flags: ParticipantFlags,
    #[serde(flatten)]
    pub media: MediaView,
}

/// Where a participant stands in the mix.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ParticipantFlags {
    /// False while still in the IVR or not yet answered.
    pub joined: bool,
    pub moderator: bool,
    pub talking: bool,
    pub muted: bool,
    pub deaf: bool,
    pub on_hold: bool,
    /// Its camera hidden from the room's picture (its tile is empty).
    pub video_muted: bool,
}

/// A participant's media: codec, encryption and what its packets went through.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MediaView {
    pub codec: &'static str,
    /// Media encrypted: SRTP keyed by SDES for a phone, DTLS-SRTP for a browser.
    pub encrypted: bool,
    /// Share of the participant's packets lost on the way in (0-1).
    pub packet_loss: f64,
    pub jitter_ms: f64,
    /// RTP/RTCP packets dropped for coming from another address than the learnt source.
    pub foreign_packets: u64,
    /// Frames not decoded because the sender marked them as silence (RFC 6464 audio level):
    /// 20 ms each for Opus, 10 ms for G.711 and G.722.
    pub quiet_frames: u64,
    /// The participant's video, when it has some.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<Box<VideoView>>,
}

/// A participant's video as the API shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VideoView {
    pub codec: &'static str,
    pub packetization_mode: u8,
    /// What we send it and it sends us: `sendrecv`, `sendonly`, `recvonly`, `inactive`.
    pub direction: &'static str,
    /// Of its camera, as last decoded.
    pub width: usize,
    pub height: usize,
    /// Pictures of its camera decoded a second, over the last second.
    pub fps: f64,
    pub frames_decoded: u64,
    /// Share of its video packets lost on the way in (0-1).
    pub packet_loss: f64,
    /// Keyframes we asked of its camera, and it asked of the room's picture.
    pub keyframes_asked: u64,
    pub keyframe_requests: u64,
    pub packets_sent: u64,
    pub retransmitted: u64,
    /// The most it said it takes (REMB or TMMBR), bit/s.
    pub max_bitrate_bps: Option<u64>,
    /// The encoding it is sent: 0 the room's canvas, 1 the low tier.
    pub tier: usize,
}

impl MediaView {
    /// From the media worker's last report on the leg, if any.
    pub fn new(
        codec: &'static str,
        encrypted: bool,
        stats: Option<&LegStats>,
        foreign_packets: u64,
    ) -> MediaView {
        let (received, lost) = stats.map_or((0, 0), |s| (s.received, s.lost));
        MediaView {
            codec,
            encrypted,
            packet_loss: if received + lost == 0 { 0.0 } else { lost as f64 / (received + lost) as f64 },
            jitter_ms: stats.map_or(0.0, |s| s.jitter_ms),
            foreign_packets,
            quiet_frames: stats.map_or(0, |s| s.quiet_frames),
            video: None,
        }
    }
}

/// A trunk's state as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrunkView {
    pub name: TrunkName,
    pub state: &'static str,
    /// The last error, or why the credentials were refused.
    pub detail: Option<String>,
    pub registered_until_ms: Option<i64>,
    pub next_refresh_ms: Option<i64>,
    pub next_attempt_ms: Option<i64>,
    /// Successful REGISTERs since start (the first one and every refresh).
    pub registrations: u64,
    pub contact: String,
    /// Whether the last OPTIONS ping was answered (`None` without pings, or before the first).
    pub reachable: Option<bool>,
    /// Round trip of the last answered ping.
    pub options_rtt_ms: Option<u64>,
}

impl TrunkView {
    pub fn new(name: &str, state: &'static str, contact: String) -> TrunkView {
        TrunkView {
            name: name.into(),
            state,
            detail: None,
            registered_until_ms: None,
            next_refresh_ms: None,
            next_attempt_ms: None,
            registrations: 0,
            contact,
            reachable: None,
            options_rtt_ms: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConferenceView {
    pub room: RoomNumber,
    /// The layout of the room's picture, when video is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layout: Option<crate::config::VideoLayout>,
    /// Who the `presenter` layout shows large.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presenter: Option<ParticipantId>,
    pub participants: Vec<ParticipantView>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParticipantAction {
    Mute(bool),
    Deaf(bool),
    /// Its camera hidden from (or shown again in) the room's picture.
    VideoMute(bool),
    Kick,
}

/// A call out of a room, from the API.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialRequest {
    /// A SIP URI (`sip:2000@192.0.2.7:5060`), or a phone number when `trunk` is given.
    pub to: String,
    /// The `[[trunk]]` to call through (its proxy, its From user, its credentials).
    pub trunk: Option<TrunkName>,
    /// Seconds to ring before giving up with CANCEL (default 60).
    pub ring_timeout_secs: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("no such participant in this room")]
    NoSuchParticipant,
    #[error("{0}")]
    BadTarget(String),
    #[error("no free RTP port")]
    NoPorts,
    #[error("the gateway is shutting down")]
    Unavailable,
    #[error("no conference in this room")]
    NoSuchConference,
    #[error("video is off in this gateway's config")]
    VideoOff,
}

/// What the API asks of call control.
#[derive(Debug)]
pub enum Control {
    Conferences(oneshot::Sender<Vec<ConferenceView>>),
    /// Call out of `room`; the reply is the new participant's id.
    Dial {
        room: Room,
        request: DialRequest,
        /// Where a URI dialled directly by name resolved to (the API resolves it).
        next_hop: Option<std::net::SocketAddr>,
        reply: oneshot::Sender<Result<ParticipantId, ControlError>>,
    },
    Participant {
        room: RoomNumber,
        id: ParticipantId,
        action: ParticipantAction,
        /// The participant after the action; `None` once kicked.
        reply: oneshot::Sender<Result<Option<ParticipantView>, ControlError>>,
    },
    /// The layout of a live conference's picture.
    Layout {
        room: RoomNumber,
        layout: crate::config::VideoLayout,
        /// For the `presenter` layout: who is shown large.
        presenter: Option<ParticipantId>,
        reply: oneshot::Sender<Result<ConferenceView, ControlError>>,
    },
    /// A browser asks to join (before its peer connection exists).
    BrowserJoin {
        request: Box<BrowserJoin>,
        reply: oneshot::Sender<Result<BrowserAdmitted, JoinRefused>>,
    },
    /// The browser's peer connection is negotiated: its leg, ready for the mix.
    BrowserMedia {
        id: ParticipantId,
        config: LegConfig,
        wire: Wire,
    },
    /// ICE and DTLS are up: the browser joins the mix (tone, prompt, "joined").
    BrowserConnected {
        id: ParticipantId,
    },
    /// The browser left, or its connection failed.
    BrowserLeave {
        id: ParticipantId,
        cause: Cause,
    },
    /// `SIGHUP`: the trunks and prompts of the config file, read again and checked.
    Reload {
        trunks: Vec<crate::config::TrunkConfig>,
        /// What their proxies' names resolved to.
        names: crate::dns::Names,
        prompts: crate::media::prompts::Prompts,
    },
}

/// A browser's join request, PIN unchecked.
#[derive(Debug)]
pub struct BrowserJoin {
    pub room: Room,
    pub pin: Option<String>,
    pub display_name: String,
    /// The WebSocket's peer: wrong PINs count against its address.
    pub source: std::net::SocketAddr,
    /// Told why, when call control ends the leg (kick, RTP timeout, shutdown).
    pub ended: oneshot::Sender<Cause>,
}

/// A browser let in: its participant id, and the UDP port its peer connection binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrowserAdmitted {
    pub id: ParticipantId,
    pub port: u16,
    pub moderator: bool,
}

/// Why a browser may not join; the page shows each differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefused {
    #[error("wrong PIN")]
    WrongPin,
    #[error("the room is full")]
    RoomFull,
    #[error("too many wrong PINs from this address; try again later")]
    Blocked,
    #[error("no free media port")]
    NoPorts,
    #[error("the gateway is shutting down")]
    Unavailable,
}

impl JoinRefused {
    /// The code the page's messages (and the calls metric) use.
    pub fn code(self) -> &'static str {
        match self {
            JoinRefused::WrongPin => "wrong-pin",
            JoinRefused::RoomFull => "room-full",
            JoinRefused::Blocked => "blocked",
            JoinRefused::NoPorts => "no-ports",
            JoinRefused::Unavailable => "unavailable",
        }
    }
}

/// What the pages of a room are told as it changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum RoomEvent {
    /// Joined, or changed (talking, muted, …).
    Participant {
        room: RoomNumber,
        participant: ParticipantView,
    },
    Left {
        room: RoomNumber,
        id: ParticipantId,
    },
}

impl RoomEvent {
    pub fn room(&self) -> &RoomNumber {
        match self {
            RoomEvent::Participant { room, .. } | RoomEvent::Left { room, .. } => room,
        }
    }
}
