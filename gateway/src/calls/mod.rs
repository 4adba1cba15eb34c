//! Call control's vocabulary shared by the SIP core and the REST API: why calls end, what the
//! API sees of live conferences, and what it may ask of a participant. The IVR's PIN logic is
//! in [`ivr`].

pub mod ivr;

use serde::Serialize;
use tokio::sync::oneshot;

use crate::media::ParticipantId;

/// Why a call ended, as written in its record and counted in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The phone hung up.
    Normal,
    RtpTimeout,
    PinFailed,
    SessionExpired,
    /// Our 2xx was never acknowledged.
    NoAck,
    Kicked,
    Shutdown,
    /// The SDP answer in the ACK (after our offer) was missing or unusable.
    BadSdp,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Normal => "normal",
            Cause::RtpTimeout => "rtp-timeout",
            Cause::PinFailed => "wrong-pin",
            Cause::SessionExpired => "session-expired",
            Cause::NoAck => "no-ack",
            Cause::Kicked => "kicked",
            Cause::Shutdown => "shutdown",
            Cause::BadSdp => "bad-sdp",
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
    pub codec: &'static str,
    /// False while still in the IVR.
    pub joined: bool,
    pub moderator: bool,
    pub talking: bool,
    pub muted: bool,
    pub deaf: bool,
    pub on_hold: bool,
    /// Share of the participant's packets lost on the way in (0-1).
    pub packet_loss: f64,
    pub jitter_ms: f64,
    pub started_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConferenceView {
    pub room: String,
    pub participants: Vec<ParticipantView>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParticipantAction {
    Mute(bool),
    Deaf(bool),
    Kick,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("no such participant in this room")]
    NoSuchParticipant,
    #[error("the gateway is shutting down")]
    Unavailable,
}

/// What the API asks of call control.
#[derive(Debug)]
pub enum Control {
    Conferences(oneshot::Sender<Vec<ConferenceView>>),
    Participant {
        room: String,
        id: ParticipantId,
        action: ParticipantAction,
        /// The participant after the action; `None` once kicked.
        reply: oneshot::Sender<Result<Option<ParticipantView>, ControlError>>,
    },
}
